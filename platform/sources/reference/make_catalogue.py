#!/usr/bin/env python3
"""Writes drugs.csv and payers.csv of this folder from the Synthea CSV export in
shared/data/synthea_csv and the codes of the simulator's formulary (clients/rust/src/simulate/hospital.rs).

The CSVs are the artefact; this script says how they were made, and a re-run gives the
same files. Usage: python3 make_catalogue.py [SYNTHEA_CSV_DIR]
(default ../../../../shared/data/synthea_csv, i.e. shared/ beside the checkout).
"""

import csv
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYNTHEA = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "../../../../shared/data/synthea_csv"

# Pharmacological class by ingredient, assigned by hand (first match wins, so
# combinations with an opioid are listed before plain acetaminophen).
CLASSES = [
    ("hydrocodone", "opioid analgesic"),
    ("oxycodone", "opioid analgesic"),
    ("acetaminophen", "analgesic"),
    ("ibuprofen", "NSAID"),
    ("naproxen", "NSAID"),
    ("enoxaparin", "anticoagulant"),
    ("clopidogrel", "antiplatelet"),
    ("insulin", "insulin"),
    ("atorvastatin", "statin"),
    ("simvastatin", "statin"),
    ("lisinopril", "ACE inhibitor"),
    ("captopril", "ACE inhibitor"),
    ("amlodipine", "calcium channel blocker"),
    ("hydrochlorothiazide", "thiazide diuretic"),
    ("furosemide", "loop diuretic"),
    ("metoprolol", "beta blocker"),
    ("nitroglycerin", "nitrate"),
    ("amoxicillin", "antibiotic"),
    ("piperacillin", "antibiotic"),
    ("albuterol", "bronchodilator"),
    ("fluticasone", "inhaled corticosteroid"),
    ("epinephrine", "sympathomimetic"),
    ("loratadine", "antihistamine"),
    ("fexofenadine", "antihistamine"),
    ("diphenhydramine", "antihistamine"),
    ("astemizole", "antihistamine"),
    ("terfenadine", "antihistamine"),
    ("ferrous sulfate", "iron supplement"),
    ("medroxyprogesterone", "hormonal contraceptive"),
    # Jolivette is norethindrone; NuvaRing is etonogestrel and ethinyl estradiol.
    ("jolivette", "hormonal contraceptive"),
    ("nuvaring", "hormonal contraceptive"),
]

# The simulator's formulary (clients/rust/src/simulate/hospital.rs FORMULARY) where it
# is not in the CSV export: two codes from the Synthea FHIR bundles in
# shared/data/synthea_fhir_r4 and piperacillin-tazobactam, not checked against RxNorm.
SIMULATOR_DRUGS = [
    ("1719286", "10 ML Furosemide 10 MG/ML Injection"),
    ("866414", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]"),
    ("1659149", "piperacillin 4000 MG / tazobactam 500 MG Injection"),
]

# Descriptions the strength/form rule below cannot read: (strength, form).
IRREGULAR = {
    "Jolivette 28 Day Pack": ("", "Pack"),
    "NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring": ("0.12/0.015 MG per 24HR", "Vaginal Ring"),
}

# The simulator's payers (clients/rust/src/simulate/hospital.rs PAYERS).
SIMULATOR_PAYERS = [
    ("NHS", "National Health Service", "public"),
    ("MEDICARE", "Medicare", "public"),
    ("AETNA", "Aetna", "private"),
    ("SELF", "Self-pay", "self-pay"),
]

NUMBER = r"\d+(?:\.\d+)?"
UNIT = r"(?:MG|MCG|UNT|MEQ|ML|ACTUAT|%)"
# 325 MG, 100 MG/ML, 0.044 MG/ACTUAT, 40 MG/0.4ML, 100 UNT/ML
STRENGTH = re.compile(rf"\b{NUMBER} {UNIT}(?:/(?:{NUMBER} ?)?{UNIT})?(?=\s|$)")
# A leading quantity: "0.4 ML Enoxaparin...", "120 ACTUAT Fluticasone..."
QUANTITY = re.compile(rf"^{NUMBER} (?:ML|ACTUAT) ")


def strength_and_form(description):
    """RxNorm-style "Ingredient 325 MG [/ Ingredient 7.5 MG] Dose Form [Brand]"."""
    if description in IRREGULAR:
        return IRREGULAR[description]
    text = re.sub(r"\s*\[[^\]]*\]$", "", description)  # brand: "[Tylenol]"
    text = re.sub(r"^NDA\d+ ", "", text)  # Synthea's application number prefix
    text = QUANTITY.sub("", text)
    matches = list(STRENGTH.finditer(text))
    if not matches:
        raise SystemExit(f"no strength in {description!r}: add it to IRREGULAR")
    strength = " / ".join(m.group(0) for m in matches)
    form = text[matches[-1].end():].strip()
    if not form:
        raise SystemExit(f"no dose form in {description!r}: add it to IRREGULAR")
    return strength, form


def drug_class(name):
    lower = name.lower()
    for ingredient, cls in CLASSES:
        if ingredient in lower:
            return cls
    raise SystemExit(f"no class for {name!r}: add its ingredient to CLASSES")


def main():
    drugs = {}
    with open(SYNTHEA / "medications.csv", newline="") as f:
        for row in csv.DictReader(f):
            names = drugs.setdefault(row["CODE"], {})
            names[row["DESCRIPTION"]] = names.get(row["DESCRIPTION"], 0) + 1
    for code, names in drugs.items():
        if len(names) > 1:
            raise SystemExit(f"RxNorm {code} has several descriptions in the export: {names}")
    rows = {code: next(iter(names)) for code, names in drugs.items()}
    for code, name in SIMULATOR_DRUGS:
        rows.setdefault(code, name)
    with open(HERE / "drugs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["code", "code_system", "name", "drug_class", "form", "strength"])
        for code, name in sorted(rows.items(), key=lambda kv: (kv[1].lower(), kv[0])):
            strength, form = strength_and_form(name)
            w.writerow([code, "RxNorm", name, drug_class(name), form, strength])

    payers = []
    with open(SYNTHEA / "payers.csv", newline="") as f:
        for row in csv.DictReader(f):
            # As hospital_sources::synthea::payer types them.
            name = row["NAME"]
            if name in ("Medicare", "Medicaid", "Dual Eligible"):
                kind = "public"
            elif name == "NO_INSURANCE":
                kind = "self-pay"
            else:
                kind = "private"
            payers.append((row["Id"], name, kind))
    payers += SIMULATOR_PAYERS
    with open(HERE / "payers.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["code", "name", "payer_type"])
        w.writerows(payers)
    print(f"{len(rows)} drugs, {len(payers)} payers")


if __name__ == "__main__":
    main()
