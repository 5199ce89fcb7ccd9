//! The simulated hospital's fixed data: wards and beds, the presenting problems patients
//! arrive with (each with its ward, diagnosis, length of stay and drugs), the formulary,
//! the laboratory panels, the charge master and the payer mix.
//!
//! Codes are real where a real code system exists: ICD-10 diagnoses, LOINC results with
//! the UCUM units the platform expects, RxNorm drugs (codes and names as they appear in
//! the Synthea export in `../shared/data`, plus amoxicillin and piperacillin-tazobactam),
//! CPT/HCPCS and UB-04 revenue codes for charges. Prices are illustrative.

/// What kind of care a ward gives; decides the bed-day charge and how often vital signs
/// are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WardKind {
    /// Acute medical unit: short stays, then home or a specialty ward.
    Assessment,
    General,
    Intensive,
}

pub struct WardSpec {
    pub department: &'static str,
    pub department_name: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    pub beds: u32,
    pub kind: WardKind,
}

const fn ward(
    department: &'static str,
    department_name: &'static str,
    code: &'static str,
    name: &'static str,
    beds: u32,
    kind: WardKind,
) -> WardSpec {
    WardSpec {
        department,
        department_name,
        code,
        name,
        beds,
        kind,
    }
}

/// Inpatient wards (176 beds). The emergency department is not a ward: its patients are
/// in the census's ED list, not in beds.
#[rustfmt::skip]
pub const WARDS: &[WardSpec] = &[
    ward("MED", "Medicine", "AMU", "Acute Medical Unit", 30, WardKind::Assessment),
    ward("MED", "Medicine", "W10", "Ward 10 Respiratory", 28, WardKind::General),
    ward("MED", "Medicine", "W11", "Ward 11 Cardiology", 24, WardKind::General),
    ward("MED", "Medicine", "W12", "Ward 12 Elderly Care", 30, WardKind::General),
    ward("SUR", "Surgery", "W20", "Ward 20 General Surgery", 28, WardKind::General),
    ward("SUR", "Surgery", "W21", "Ward 21 Orthopaedics", 24, WardKind::General),
    ward("CC", "Critical Care", "ICU", "Intensive Care Unit", 12, WardKind::Intensive),
];

/// Index of the ICU in [`WARDS`].
pub const ICU: usize = 6;
/// Index of the acute medical unit in [`WARDS`].
pub const AMU: usize = 0;
/// Department code of the emergency department.
pub const ED_DEPARTMENT: &str = "EM";

/// A drug of the formulary and how it is usually prescribed.
pub struct Drug {
    pub rxnorm: &'static str,
    pub name: &'static str,
    pub class: &'static str,
    pub dose: f64,
    pub unit: &'static str,
    pub route: &'static str,
    pub frequency: Frequency,
    /// Course length in days (the order's `ends_at`); 0 = until discharge.
    pub days: u32,
    /// Price of one administered dose, pence.
    pub price_minor: i64,
}

/// Standard ward round administration times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Once,
    Daily,
    TwiceDaily,
    ThreeTimesDaily,
    FourTimesDaily,
    AtNight,
}

impl Frequency {
    pub fn code(self) -> &'static str {
        match self {
            Frequency::Once => "STAT",
            Frequency::Daily => "OD",
            Frequency::TwiceDaily => "BD",
            Frequency::ThreeTimesDaily => "TDS",
            Frequency::FourTimesDaily => "QDS",
            Frequency::AtNight => "ON",
        }
    }

    /// Hours of the day doses are given at.
    pub fn hours(self) -> &'static [i64] {
        match self {
            Frequency::Once => &[],
            Frequency::Daily => &[8],
            Frequency::TwiceDaily => &[8, 20],
            Frequency::ThreeTimesDaily => &[8, 14, 22],
            Frequency::FourTimesDaily => &[6, 12, 18, 22],
            Frequency::AtNight => &[22],
        }
    }
}

use Frequency::*;

// One row of a table below: positional, like the table's columns.
#[allow(clippy::too_many_arguments)]
const fn drug(
    rxnorm: &'static str,
    name: &'static str,
    class: &'static str,
    dose: f64,
    unit: &'static str,
    route: &'static str,
    frequency: Frequency,
    days: u32,
    price_minor: i64,
) -> Drug {
    Drug {
        rxnorm,
        name,
        class,
        dose,
        unit,
        route,
        frequency,
        days,
        price_minor,
    }
}

#[rustfmt::skip]
pub const FORMULARY: &[Drug] = &[
    drug("198440", "Acetaminophen 500 MG Oral Tablet", "analgesic", 1000.0, "mg", "PO", FourTimesDaily, 0, 12),
    drug("854235", "0.4 ML Enoxaparin sodium 100 MG/ML Prefilled Syringe", "anticoagulant", 40.0, "mg", "SC", Daily, 0, 350),
    drug("562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet", "antibiotic", 375.0, "mg", "PO", ThreeTimesDaily, 7, 45),
    drug("1659149", "piperacillin 4000 MG / tazobactam 500 MG Injection", "antibiotic", 4500.0, "mg", "IV", ThreeTimesDaily, 5, 1_450),
    drug("2123111", "NDA020503 200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "bronchodilator", 0.18, "mg", "INH", FourTimesDaily, 0, 30),
    drug("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "inhaled corticosteroid", 0.088, "mg", "INH", TwiceDaily, 0, 40),
    drug("259255", "Atorvastatin 80 MG Oral Tablet", "statin", 80.0, "mg", "PO", AtNight, 0, 20),
    drug("309362", "Clopidogrel 75 MG Oral Tablet", "antiplatelet", 75.0, "mg", "PO", Daily, 0, 25),
    drug("705129", "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray", "nitrate", 0.4, "mg", "SL", Once, 1, 60),
    drug("1719286", "10 ML Furosemide 10 MG/ML Injection", "loop diuretic", 40.0, "mg", "IV", TwiceDaily, 3, 180),
    drug("314076", "lisinopril 10 MG Oral Tablet", "ACE inhibitor", 10.0, "mg", "PO", Daily, 0, 10),
    drug("866414", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]", "beta blocker", 100.0, "mg", "PO", Daily, 0, 15),
    drug("1049625", "Acetaminophen 325 MG / Oxycodone Hydrochloride 10 MG Oral Tablet [Percocet]", "opioid analgesic", 1.0, "tablet", "PO", FourTimesDaily, 5, 55),
    drug("1870230", "NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector", "sympathomimetic", 0.3, "mg", "IM", Once, 1, 4_500),
    drug("849574", "Naproxen sodium 220 MG Oral Tablet", "NSAID", 440.0, "mg", "PO", TwiceDaily, 3, 8),
];

/// The formulary entry of an RxNorm code.
pub fn drug_by_code(rxnorm: &str) -> &'static Drug {
    FORMULARY
        .iter()
        .find(|d| d.rxnorm == rxnorm)
        .unwrap_or_else(|| panic!("{rxnorm} is not in the formulary"))
}

/// Why a patient comes in, and what follows from it.
pub struct Problem {
    pub complaint: &'static str,
    /// ICD-10 code of the admitting diagnosis.
    pub icd10: &'static str,
    /// Relative frequency among ED arrivals (electives: among elective admissions).
    pub weight: f64,
    /// Triage acuity 1..=5 is drawn from this range.
    pub acuity: (u32, u32),
    /// Chance of admission when seen in the ED.
    pub admit_share: f64,
    /// Ward the admitted patient goes to after the acute medical unit (or directly, for
    /// surgical problems).
    pub ward: usize,
    /// Whether medical admissions pass through the acute medical unit first.
    pub via_amu: bool,
    /// Median length of stay in days (log-normal, sigma 0.6).
    pub los_days: f64,
    /// Typical age range.
    pub ages: (i32, i32),
    /// RxNorm codes ordered on admission.
    pub drugs: &'static [&'static str],
    /// On a prescribed 88-92% SpO2 target (NEWS2 scale 2).
    pub spo2_scale_2: bool,
    /// Procedure done in theatre (CPT), for surgical admissions.
    pub procedure: Option<(&'static str, &'static str, i64)>,
}

// One row of a table below: positional, like the table's columns.
#[allow(clippy::too_many_arguments)]
const fn problem(
    complaint: &'static str,
    icd10: &'static str,
    weight: f64,
    acuity: (u32, u32),
    admit_share: f64,
    ward: usize,
    los_days: f64,
    ages: (i32, i32),
    drugs: &'static [&'static str],
) -> Problem {
    Problem {
        complaint,
        icd10,
        weight,
        acuity,
        admit_share,
        ward,
        via_amu: ward >= 1 && ward <= 3,
        los_days,
        ages,
        drugs,
        spo2_scale_2: false,
        procedure: None,
    }
}

const ANALGESIA: &str = "198440";
const VTE: &str = "854235";

/// Presenting problems of emergency arrivals.
#[rustfmt::skip]
pub const ED_PROBLEMS: &[Problem] = &[
    //       complaint                   ICD-10  weight acuity  admit ward LOS  ages       drugs
    problem("shortness of breath",       "J18.9", 10.0, (2, 3), 0.50, 1, 3.0, (45, 95),  &["562251", ANALGESIA, VTE]),
    Problem {
        spo2_scale_2: true,
        ..problem("breathless, known COPD", "J44.1", 5.0, (2, 3), 0.55, 1, 3.0, (55, 92), &["2123111", "895994", VTE])
    },
    problem("chest pain",                "I21.4",  9.0, (2, 3), 0.35, 2, 2.0, (40, 90),  &["259255", "309362", "705129", "866414", VTE]),
    problem("breathless, swollen legs",  "I50.9",  4.0, (2, 3), 0.55, 2, 4.0, (60, 95),  &["1719286", "314076", VTE]),
    problem("confusion, fever",          "N39.0",  6.0, (2, 3), 0.55, 3, 3.0, (70, 100), &["562251", ANALGESIA, VTE]),
    problem("fall",                      "W19",    8.0, (3, 4), 0.25, 3, 3.0, (70, 100), &[ANALGESIA, VTE]),
    problem("weakness one side",         "I63.9",  3.0, (1, 2), 0.85, 3, 5.0, (55, 95),  &["259255", "309362", VTE]),
    problem("abdominal pain",            "K35.8",  9.0, (3, 3), 0.25, 4, 2.0, (10, 70),  &["562251", ANALGESIA, VTE]),
    problem("hip injury",                "S72.0",  2.5, (2, 3), 0.90, 5, 6.5, (65, 100), &["1049625", ANALGESIA, VTE]),
    problem("allergic reaction",         "T78.2",  2.0, (2, 2), 0.10, 1, 1.0, (5, 70),   &["1870230"]),
    problem("sprained ankle",            "S93.4", 14.0, (4, 5), 0.00, 5, 1.0, (10, 60),  &[]),
    problem("laceration",                "S61.4", 12.0, (4, 5), 0.00, 4, 1.0, (5, 70),   &[]),
    problem("back pain",                 "M54.5",  8.0, (4, 5), 0.03, 5, 1.5, (25, 75),  &["849574", ANALGESIA]),
    problem("headache",                  "R51",    6.0, (3, 5), 0.05, 3, 1.5, (18, 70),  &[ANALGESIA]),
];

/// Elective (planned surgical) admissions.
#[rustfmt::skip]
pub const ELECTIVES: &[Problem] = &[
    Problem {
        procedure: Some(("27130", "Total hip arthroplasty", 650_000)),
        ..problem("planned hip replacement", "M16.1", 1.0, (5, 5), 1.0, 5, 2.5, (55, 88), &["1049625", ANALGESIA, VTE])
    },
    Problem {
        procedure: Some(("47562", "Laparoscopic cholecystectomy", 420_000)),
        ..problem("planned cholecystectomy", "K80.2", 1.0, (5, 5), 1.0, 4, 1.0, (30, 75), &[ANALGESIA, VTE])
    },
];

/// One laboratory test: LOINC, display, UCUM unit, reference range, the healthy value
/// range a patient's baseline is drawn from, and how far illness severity (0..1) moves it.
pub struct LabTest {
    pub loinc: &'static str,
    pub display: &'static str,
    pub unit: &'static str,
    pub low: f64,
    pub high: f64,
    pub baseline: (f64, f64),
    pub per_severity: f64,
    pub decimals: i32,
}

// One row of a table below: positional, like the table's columns.
#[allow(clippy::too_many_arguments)]
const fn lab(
    loinc: &'static str,
    display: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    baseline: (f64, f64),
    per_severity: f64,
    decimals: i32,
) -> LabTest {
    LabTest {
        loinc,
        display,
        unit,
        low,
        high,
        baseline,
        per_severity,
        decimals,
    }
}

/// A panel ordered as one request, with its charge code.
pub struct Panel {
    pub code: &'static str,
    pub name: &'static str,
    pub cpt: &'static str,
    pub price_minor: i64,
    pub tests: &'static [LabTest],
}

#[rustfmt::skip]
pub const FULL_BLOOD_COUNT: Panel = Panel {
    code: "FBC",
    name: "Full blood count",
    cpt: "85025",
    price_minor: 450,
    tests: &[
        lab("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.0, (11.5, 15.5), -1.5, 1),
        lab("6690-2", "Leukocytes [#/volume] in Blood", "10*3/uL", 4.0, 11.0, (5.0, 9.0), 14.0, 1),
        lab("777-3", "Platelets [#/volume] in Blood", "10*3/uL", 150.0, 400.0, (180.0, 350.0), -60.0, 0),
    ],
};

#[rustfmt::skip]
pub const RENAL: Panel = Panel {
    code: "UE",
    name: "Urea and electrolytes",
    cpt: "80048",
    price_minor: 600,
    tests: &[
        lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135.0, 145.0, (136.0, 143.0), -4.0, 0),
        lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, (3.7, 4.8), 0.6, 1),
        lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.2, (0.7, 1.1), 1.4, 2),
        lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70.0, 140.0, (80.0, 120.0), 60.0, 0),
    ],
};

#[rustfmt::skip]
pub const CRP: Panel = Panel {
    code: "CRP",
    name: "C-reactive protein",
    cpt: "86140",
    price_minor: 350,
    tests: &[lab("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 0.0, 10.0, (1.0, 6.0), 220.0, 0)],
};

#[rustfmt::skip]
pub const LACTATE: Panel = Panel {
    code: "LAC",
    name: "Lactate",
    cpt: "83605",
    price_minor: 500,
    tests: &[lab("2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 0.5, 2.0, (0.7, 1.6), 4.5, 1)],
};

pub const PANELS: [&Panel; 4] = [&FULL_BLOOD_COUNT, &RENAL, &CRP, &LACTATE];

/// Payers: (code, name, type, share of patients, price multiplier on the tariff).
pub const PAYERS: &[(&str, &str, &str, f64, f64)] = &[
    ("NHS", "National Health Service", "public", 0.78, 1.0),
    ("AETNA", "Aetna", "private", 0.12, 1.35),
    ("MEDICARE", "Medicare", "public", 0.03, 1.2),
    ("SELF", "Self-pay", "self-pay", 0.07, 1.1),
];

/// ED attendance charge by triage acuity (index = acuity - 1): CPT evaluation and
/// management level, description, price in pence.
pub const ED_ATTENDANCE: [(&str, &str, i64); 5] = [
    ("99285", "Emergency department visit, level 5", 95_000),
    ("99284", "Emergency department visit, level 4", 52_000),
    ("99283", "Emergency department visit, level 3", 28_000),
    ("99282", "Emergency department visit, level 2", 15_000),
    ("99281", "Emergency department visit, level 1", 9_000),
];

/// Bed-day charges by ward kind: UB-04 revenue code, description, price per day (pence).
pub fn bed_day_charge(kind: WardKind) -> (&'static str, &'static str, i64) {
    match kind {
        WardKind::Assessment => ("0110", "Room and board, acute assessment", 60_000),
        WardKind::General => ("0120", "Room and board, semi-private", 45_000),
        WardKind::Intensive => ("0200", "Intensive care", 210_000),
    }
}

pub const GIVEN_FEMALE: &[&str] = &[
    "Ada", "Chloe", "Eve", "Grace", "Isla", "Kemi", "Maya", "Nora", "Olivia", "Priya", "Ruth", "Sofia", "Zara",
    "Aisha", "Beth", "Hannah", "Joan", "Mei", "Niamh", "Siobhan",
];
pub const GIVEN_MALE: &[&str] = &[
    "Ben", "Dev", "Femi", "Hugo", "Jon", "Liam", "Marek", "Noah", "Omar", "Pavel", "Raj", "Sam", "Tom", "Yusuf",
    "Arthur", "Connor", "Ewan", "Ibrahim", "Kwame", "Luca",
];
pub const FAMILY: &[&str] = &[
    "Smith", "Okafor", "Patel", "Nguyen", "Jones", "Garcia", "Kowalski", "Brown", "Ahmed", "Lee", "Taylor", "Wilson",
    "Khan", "Murphy", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Hughes", "Mensah", "Novak", "Singh", "Chen",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_drug_is_in_the_formulary_and_wards_are_inpatient() {
        for p in ED_PROBLEMS.iter().chain(ELECTIVES) {
            for d in p.drugs {
                drug_by_code(d);
            }
            assert!(
                p.ward < WARDS.len() && p.ward != ICU && p.ward != AMU,
                "{}",
                p.complaint
            );
            assert!((1..=5).contains(&p.acuity.0) && p.acuity.0 <= p.acuity.1);
        }
        assert_eq!(WARDS[ICU].kind, WardKind::Intensive);
        assert_eq!(WARDS[AMU].kind, WardKind::Assessment);
        let share: f64 = PAYERS.iter().map(|p| p.3).sum();
        assert!((share - 1.0).abs() < 1e-9);
    }

    /// The formulary and payers are the shipped reference catalogue's
    /// (`platform/sources/reference`), same names and classes.
    #[test]
    fn formulary_and_payers_are_in_the_reference_catalogue() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../platform/sources/reference");
        let read = |file: &str| -> Vec<csv::StringRecord> {
            let mut r = csv::Reader::from_path(dir.join(file)).unwrap();
            r.records().map(|r| r.unwrap()).collect()
        };
        let drugs = read("drugs.csv");
        for d in FORMULARY {
            let row = drugs
                .iter()
                .find(|r| &r[0] == d.rxnorm)
                .unwrap_or_else(|| panic!("{} {} not in drugs.csv", d.rxnorm, d.name));
            assert_eq!((&row[2], &row[3]), (d.name, d.class), "{}", d.rxnorm);
        }
        let payers = read("payers.csv");
        for (code, name, kind, _, _) in PAYERS {
            let row = payers
                .iter()
                .find(|r| &r[0] == *code)
                .unwrap_or_else(|| panic!("{code}"));
            assert_eq!((&row[1], &row[2]), (*name, *kind));
        }
    }
}
