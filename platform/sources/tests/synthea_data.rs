//! Synthea CSV -> ClinicalEvent mapping over the real export (shared/data/synthea_csv):
//! event counts against row counts taken here with the csv crate, spot checks of mapped
//! values against the files (every condition and procedure row), and the errors of
//! broken copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{
    AdministrativeSex, ClinicalEvent, CodeSystem, ConditionStatus, DiagnosisRole, EncounterClass,
};
use hospital_sources::synthea::{ClaimPayers, Events, Export, Options, SyntheaError, SyntheaFile};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn export_dir() -> PathBuf {
    let base = hospital_testkit::shared_data("");
    let dir = base.join("synthea_csv");
    assert!(
        dir.join("patients.csv").is_file(),
        "Synthea test data not found at {}. Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
        dir.display()
    );
    dir
}

/// Every row of a file as column name -> value, read independently of the module.
fn rows(dir: &Path, file: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(dir.join(file)).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .map(str::to_owned)
                .zip(r.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn seconds(iso: &str) -> i64 {
    OffsetDateTime::parse(iso, &Rfc3339).unwrap().unix_timestamp()
}

fn read_all(dir: &Path) -> Vec<ClinicalEvent> {
    let mut events = Vec::new();
    let summary = Export::new(dir, Options::default())
        .read_all(|e| events.push(e))
        .unwrap();
    assert_eq!(summary.errors, []);
    events
}

fn kind(e: &ClinicalEvent) -> &'static str {
    match e.payload.as_ref().unwrap() {
        Payload::PatientRegistered(_) => "patient",
        Payload::ReferenceData(_) => "payer",
        Payload::Admission(_) => "admission",
        Payload::Discharge(_) => "discharge",
        Payload::VitalSigns(_) => "vitals",
        Payload::LabResult(_) => "lab",
        Payload::MedicationOrder(_) => "medication",
        Payload::ChargeLine(_) => "charge",
        Payload::Diagnosis(_) => "diagnosis",
        Payload::Procedure(_) => "procedure",
        other => panic!("unexpected payload {other:?}"),
    }
}

const VITALS: [&str; 9] = [
    "8867-4", "9279-1", "8480-6", "8462-4", "8310-5", "29463-7", "8302-2", "39156-5", "59408-5",
];

#[test]
fn counts_match_the_files() {
    let dir = export_dir();
    let events = read_all(&dir);
    let mut by_kind = BTreeMap::<&str, usize>::new();
    for e in &events {
        *by_kind.entry(kind(e)).or_default() += 1;
        assert_eq!(e.source_system, "synthea");
        assert!(e.occurred_at.is_some(), "{}", e.event_id);
    }

    let patients = rows(&dir, "patients.csv");
    assert_eq!(patients.len(), 27, "the README's 27 patients");
    let payers = rows(&dir, "payers.csv");
    let encounters = rows(&dir, "encounters.csv");
    let with_stop = encounters.iter().filter(|r| !r["STOP"].is_empty()).count();
    let medications = rows(&dir, "medications.csv");
    let conditions = rows(&dir, "conditions.csv");
    let procedures = rows(&dir, "procedures.csv");
    let charges = rows(&dir, "claims_transactions.csv")
        .iter()
        .filter(|r| r["TYPE"] == "CHARGE")
        .count();
    // Observations: vital sets are distinct (patient, encounter, date) among numeric rows
    // with a vital-sign code; labs are the other rows with a LOINC code (digits, dash,
    // check digit), numeric or text.
    let observations = rows(&dir, "observations.csv");
    let is_vital = |r: &HashMap<String, String>| VITALS.contains(&r["CODE"].as_str()) && r["TYPE"] == "numeric";
    let vital_sets: BTreeSet<_> = observations
        .iter()
        .filter(|r| is_vital(r))
        .map(|r| (&r["PATIENT"], &r["ENCOUNTER"], &r["DATE"]))
        .collect();
    let loinc = |c: &str| c.chars().next().is_some_and(|ch| ch.is_ascii_digit()) && c.contains('-');
    let labs = observations
        .iter()
        .filter(|r| loinc(&r["CODE"]) && !is_vital(r))
        .count();

    let expected = BTreeMap::from([
        ("patient", patients.len()),
        ("payer", payers.len()),
        ("admission", encounters.len()),
        ("discharge", with_stop),
        ("vitals", vital_sets.len()),
        ("lab", labs),
        ("medication", medications.len()),
        ("charge", charges),
        ("diagnosis", conditions.len()),
        ("procedure", procedures.len()),
    ]);
    println!("Synthea CSV events by kind: {by_kind:?}");
    assert_eq!(by_kind, expected);
    // The snapshot as described in its SOURCE.md (990 observation rows, 75 of them
    // QALY/DALY/QOLS without a LOINC code).
    assert_eq!(
        expected,
        BTreeMap::from([
            ("patient", 27),
            ("payer", 10),
            ("admission", 604),
            ("discharge", 604),
            ("vitals", 28),
            ("lab", 727),
            ("medication", 663),
            ("charge", 1545),
            ("diagnosis", 438),
            ("procedure", 249),
        ])
    );

    // Ids are unique and a second read gives the same ones.
    let ids: Vec<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    let again: Vec<_> = read_all(&dir).into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, again);
}

#[test]
fn summary_counts_rows_and_skips() {
    let dir = export_dir();
    let summary = Export::new(&dir, Options::default()).read_all(|_| {}).unwrap();
    let obs = summary.files[&SyntheaFile::Observations];
    assert_eq!(obs.rows, rows(&dir, "observations.csv").len() as u64);
    let no_loinc = rows(&dir, "observations.csv")
        .iter()
        .filter(|r| matches!(r["CODE"].as_str(), "QALY" | "DALY" | "QOLS"))
        .count();
    assert_eq!(obs.skipped, no_loinc as u64);
    assert_eq!(summary.files[&SyntheaFile::Patients].skipped, 0);
    // Every condition and procedure row maps: none is skipped.
    for (file, name) in [
        (SyntheaFile::Conditions, "conditions.csv"),
        (SyntheaFile::Procedures, "procedures.csv"),
    ] {
        let n = rows(&dir, name).len() as u64;
        assert_eq!(
            (
                summary.files[&file].rows,
                summary.files[&file].events,
                summary.files[&file].skipped
            ),
            (n, n, 0),
            "{name}"
        );
    }
    // Payments and transfers between payers move money already charged.
    let transactions = rows(&dir, "claims_transactions.csv");
    let tx = summary.files[&SyntheaFile::ClaimsTransactions];
    assert_eq!(tx.rows, transactions.len() as u64);
    assert_eq!(
        tx.skipped,
        transactions.iter().filter(|r| r["TYPE"] != "CHARGE").count() as u64
    );
}

#[test]
fn charge_lines_carry_the_transaction_and_the_claims_primary_payer() {
    let dir = export_dir();
    let events = read_all(&dir);
    let by_id: HashMap<_, _> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let claims: HashMap<String, HashMap<String, String>> = rows(&dir, "claims.csv")
        .into_iter()
        .map(|r| (r["Id"].clone(), r))
        .collect();
    let payer_rows = rows(&dir, "payers.csv");
    let payers: BTreeSet<String> = payer_rows.iter().map(|r| r["Id"].clone()).collect();
    let no_insurance = &payer_rows.iter().find(|r| r["NAME"] == "NO_INSURANCE").unwrap()["Id"];
    let encounter_payer: HashMap<String, String> = rows(&dir, "encounters.csv")
        .into_iter()
        .map(|r| (r["Id"].clone(), r["PAYER"].clone()))
        .collect();
    let mut total_cents = 0i64;
    let (mut insured, mut uninsured) = (0, 0);
    for t in rows(&dir, "claims_transactions.csv") {
        if t["TYPE"] != "CHARGE" {
            continue;
        }
        let e = by_id[format!("claims_transactions/{}", t["ID"]).as_str()];
        let Some(Payload::ChargeLine(c)) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(e.patient.as_ref().unwrap().mrn, t["PATIENTID"]);
        assert_eq!(e.occurred_at.unwrap().seconds, seconds(&t["FROMDATE"]));
        assert_eq!(
            (c.charge_id.as_str(), c.encounter_id.as_str(), c.code.as_str()),
            (
                t["ID"].as_str(),
                t["APPOINTMENTID"].as_str(),
                t["PROCEDURECODE"].as_str()
            )
        );
        assert_eq!(c.description, t["NOTES"]);
        assert_eq!(c.quantity, t["UNITS"].parse::<f64>().unwrap());
        assert_eq!(c.currency, "USD");
        // Dollars with two decimals, as written, to cents.
        let (dollars, cents) = t["UNITAMOUNT"].split_once('.').unwrap();
        assert_eq!(
            c.unit_price_minor,
            dollars.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
        );
        total_cents += c.unit_price_minor;
        let primary = &claims[&t["CLAIMID"]]["PRIMARYPATIENTINSURANCEID"];
        if primary == "0" {
            // No insurance: the export's NO_INSURANCE payer, as encounters.csv has it.
            uninsured += 1;
            assert_eq!(&c.payer_code, no_insurance);
            assert_eq!(&encounter_payer[&c.encounter_id], no_insurance);
        } else {
            insured += 1;
            assert_eq!(&c.payer_code, primary);
            assert!(payers.contains(primary), "{primary} is a payer of payers.csv");
        }
    }
    println!(
        "{} charge lines ({insured} insured, {uninsured} without insurance), ${:.2}",
        insured + uninsured,
        total_cents as f64 / 100.0
    );
    assert!(insured > 0 && uninsured > 0);
}

#[test]
fn spot_checks_against_the_files() {
    let dir = export_dir();
    let events = read_all(&dir);
    let by_id: HashMap<_, _> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();

    // A patient: name, birth date, sex, ZIP as written.
    let p = &rows(&dir, "patients.csv")[0];
    let e = by_id[format!("patients/{}", p["Id"]).as_str()];
    assert_eq!(e.patient.as_ref().unwrap().mrn, p["Id"]);
    assert_eq!(e.patient.as_ref().unwrap().assigning_authority, "synthea");
    let Some(Payload::PatientRegistered(d)) = &e.payload else {
        panic!()
    };
    assert_eq!(
        (d.given_name.as_str(), d.family_name.as_str()),
        (p["FIRST"].as_str(), p["LAST"].as_str())
    );
    let b = d.birth_date.unwrap();
    assert_eq!(format!("{:04}-{:02}-{:02}", b.year, b.month, b.day), p["BIRTHDATE"]);
    assert_eq!(
        e.occurred_at.unwrap().seconds,
        seconds(&format!("{}T00:00:00Z", p["BIRTHDATE"]))
    );
    let sex = if p["GENDER"] == "M" {
        AdministrativeSex::Male
    } else {
        AdministrativeSex::Female
    };
    assert_eq!(d.sex, sex as i32);
    assert_eq!(d.postal_code, p["ZIP"]);

    // A dead patient: deceased_at at the death date.
    let dead = rows(&dir, "patients.csv")
        .into_iter()
        .find(|r| !r["DEATHDATE"].is_empty())
        .expect("the export has deaths");
    let Some(Payload::PatientRegistered(d)) = &by_id[format!("patients/{}", dead["Id"]).as_str()].payload else {
        panic!()
    };
    assert_eq!(
        d.deceased_at.unwrap().seconds,
        seconds(&format!("{}T00:00:00Z", dead["DEATHDATE"]))
    );

    // An encounter of each class in the file: class, start, payer, reason, discharge.
    let encounters = rows(&dir, "encounters.csv");
    for class in ["ambulatory", "inpatient", "emergency"] {
        let r = encounters.iter().find(|r| r["ENCOUNTERCLASS"] == class).unwrap();
        let e = by_id[format!("encounters/{}/admission", r["Id"]).as_str()];
        let Some(Payload::Admission(a)) = &e.payload else {
            panic!()
        };
        let expected = match class {
            "inpatient" => EncounterClass::Inpatient,
            "emergency" => EncounterClass::Emergency,
            _ => EncounterClass::Outpatient,
        };
        assert_eq!(a.encounter_class, expected as i32, "{class}");
        assert_eq!(e.occurred_at.unwrap().seconds, seconds(&r["START"]));
        assert_eq!(a.encounter_id, r["Id"]);
        assert_eq!(a.payer_code, r["PAYER"]);
        assert_eq!(a.admitting_diagnosis, r["REASONCODE"]);
        assert_eq!(a.location.as_ref().unwrap().department_code, r["ORGANIZATION"]);
        assert_eq!(e.patient.as_ref().unwrap().mrn, r["PATIENT"]);
        let stop = by_id[format!("encounters/{}/discharge", r["Id"]).as_str()];
        assert_eq!(stop.occurred_at.unwrap().seconds, seconds(&r["STOP"]));
    }

    // One blood-pressure set: systolic and diastolic of the same (patient, encounter,
    // date) in one VitalSigns event.
    let observations = rows(&dir, "observations.csv");
    let sbp = observations.iter().find(|r| r["CODE"] == "8480-6").unwrap();
    let dbp = observations
        .iter()
        .find(|r| {
            r["CODE"] == "8462-4"
                && (&r["PATIENT"], &r["ENCOUNTER"], &r["DATE"]) == (&sbp["PATIENT"], &sbp["ENCOUNTER"], &sbp["DATE"])
        })
        .unwrap();
    let id = format!(
        "observations/{}/{}/{}/vital-signs",
        sbp["PATIENT"], sbp["ENCOUNTER"], sbp["DATE"]
    );
    let e = by_id[id.as_str()];
    assert_eq!(e.occurred_at.unwrap().seconds, seconds(&sbp["DATE"]));
    let Some(Payload::VitalSigns(v)) = &e.payload else {
        panic!()
    };
    assert_eq!(v.encounter_id, sbp["ENCOUNTER"]);
    let value = |code: &str| {
        v.observations
            .iter()
            .find(|o| o.loinc_code == code)
            .map(|o| (o.value, o.unit.clone()))
    };
    assert_eq!(
        value("8480-6"),
        Some((sbp["VALUE"].parse().unwrap(), sbp["UNITS"].clone()))
    );
    assert_eq!(
        value("8462-4"),
        Some((dbp["VALUE"].parse().unwrap(), dbp["UNITS"].clone()))
    );

    // A numeric lab with its unit, and a text result.
    let lab = observations
        .iter()
        .find(|r| r["CATEGORY"] == "laboratory" && r["TYPE"] == "numeric")
        .unwrap();
    let id = format!(
        "observations/{}/{}/{}/{}",
        lab["PATIENT"], lab["ENCOUNTER"], lab["DATE"], lab["CODE"]
    );
    let Some(Payload::LabResult(l)) = &by_id[id.as_str()].payload else {
        panic!()
    };
    assert_eq!(
        (l.value, l.unit.as_str(), l.display.as_str()),
        (
            Some(lab["VALUE"].parse().unwrap()),
            lab["UNITS"].as_str(),
            lab["DESCRIPTION"].as_str()
        )
    );
    let text = observations.iter().find(|r| r["TYPE"] == "text").unwrap();
    let id = format!(
        "observations/{}/{}/{}/{}",
        text["PATIENT"], text["ENCOUNTER"], text["DATE"], text["CODE"]
    );
    let Some(Payload::LabResult(l)) = &by_id[id.as_str()].payload else {
        panic!()
    };
    assert_eq!((l.value, l.value_text.as_str()), (None, text["VALUE"].as_str()));

    // A medication with a stop date.
    let m = rows(&dir, "medications.csv")
        .into_iter()
        .find(|r| !r["STOP"].is_empty())
        .unwrap();
    let id = format!(
        "medications/{}/{}/{}/{}",
        m["PATIENT"], m["ENCOUNTER"], m["CODE"], m["START"]
    );
    let e = by_id[id.as_str()];
    let Some(Payload::MedicationOrder(o)) = &e.payload else {
        panic!()
    };
    assert_eq!(
        (o.drug_code.as_str(), o.drug_name.as_str()),
        (m["CODE"].as_str(), m["DESCRIPTION"].as_str())
    );
    assert_eq!(o.starts_at.unwrap().seconds, seconds(&m["START"]));
    assert_eq!(o.ends_at.unwrap().seconds, seconds(&m["STOP"]));
}

/// Every row of conditions.csv and procedures.csv against its event: key, times, code,
/// display, encounter, status.
#[test]
fn conditions_and_procedures_match_the_files() {
    let dir = export_dir();
    let events = read_all(&dir);
    let by_id: HashMap<_, _> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    // Plain dates (conditions) are 00:00 UTC.
    let at = |v: &str| {
        if v.len() == 10 {
            seconds(&format!("{v}T00:00:00Z"))
        } else {
            seconds(v)
        }
    };
    // The ingest door takes a SNOMED CT code of 6-18 digits without a leading zero:
    // every code of this export has that shape, so none is refused (the platform's
    // tests/load.rs checks the same end to end).
    let snomed_shaped =
        |c: &str| (6..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) && !c.starts_with('0');

    let (mut resolved, mut active) = (0, 0);
    for r in rows(&dir, "conditions.csv") {
        let id = format!(
            "conditions/{}/{}/{}/{}",
            r["PATIENT"], r["ENCOUNTER"], r["CODE"], r["START"]
        );
        let e = by_id[id.as_str()];
        assert_eq!(e.patient.as_ref().unwrap().mrn, r["PATIENT"]);
        assert_eq!(e.occurred_at.unwrap().seconds, at(&r["START"]), "{id}");
        let Some(Payload::Diagnosis(d)) = &e.payload else {
            panic!("{e:?}")
        };
        assert!(snomed_shaped(&r["CODE"]), "{}", r["CODE"]);
        assert_eq!(
            (
                d.code.as_str(),
                d.code_system,
                d.display.as_str(),
                d.encounter_id.as_str()
            ),
            (
                r["CODE"].as_str(),
                CodeSystem::SnomedCt as i32,
                r["DESCRIPTION"].as_str(),
                r["ENCOUNTER"].as_str()
            )
        );
        // Every row has an encounter: no role, as FHIR gives Synthea's Conditions.
        assert_eq!(
            (d.role, d.rank, d.recorded_at),
            (DiagnosisRole::Unspecified as i32, 0, None)
        );
        if r["STOP"].is_empty() {
            active += 1;
            assert_eq!((d.clinical_status, d.abated_at), (ConditionStatus::Active as i32, None));
        } else {
            resolved += 1;
            assert_eq!(d.clinical_status, ConditionStatus::Resolved as i32);
            assert_eq!(d.abated_at.unwrap().seconds, at(&r["STOP"]));
        }
    }
    println!("conditions.csv: {resolved} resolved, {active} active");
    assert_eq!((resolved, active), (298, 140));

    let mut n = 0;
    for r in rows(&dir, "procedures.csv") {
        let id = format!(
            "procedures/{}/{}/{}/{}",
            r["PATIENT"], r["ENCOUNTER"], r["CODE"], r["START"]
        );
        let e = by_id[id.as_str()];
        assert_eq!(e.patient.as_ref().unwrap().mrn, r["PATIENT"]);
        assert_eq!(e.occurred_at.unwrap().seconds, at(&r["START"]), "{id}");
        let Some(Payload::Procedure(p)) = &e.payload else {
            panic!("{e:?}")
        };
        assert!(snomed_shaped(&r["CODE"]), "{}", r["CODE"]);
        assert_eq!(
            (
                p.code.as_str(),
                p.code_system,
                p.display.as_str(),
                p.encounter_id.as_str()
            ),
            (
                r["CODE"].as_str(),
                CodeSystem::SnomedCt as i32,
                r["DESCRIPTION"].as_str(),
                r["ENCOUNTER"].as_str()
            )
        );
        assert_eq!(p.ended_at.unwrap().seconds, at(&r["STOP"]));
        assert_eq!((p.rank, p.performer.as_str()), (0, ""));
        n += 1;
    }
    assert_eq!(n, 249);
}

/// Writes `file` of the real export into a fresh directory after `edit` (line by line).
fn broken_copy(file: &str, edit: impl Fn(usize, &str) -> String) -> tempfile::TempDir {
    let tmp = tempfile::TempDir::new().unwrap();
    let text = std::fs::read_to_string(export_dir().join(file)).unwrap();
    let out: Vec<String> = text.lines().enumerate().map(|(i, l)| edit(i + 1, l)).collect();
    std::fs::write(tmp.path().join(file), out.join("\n") + "\n").unwrap();
    tmp
}

#[test]
fn a_missing_required_column_names_file_and_column() {
    // Drop GENDER (15th column) from every line.
    let tmp = broken_copy("patients.csv", |_, l| {
        let mut fields: Vec<&str> = l.split(',').collect();
        assert_eq!(fields.len(), 25);
        fields.remove(14);
        fields.join(",")
    });
    let err = Export::new(tmp.path(), Options::default())
        .events(SyntheaFile::Patients)
        .err()
        .expect("missing column is refused");
    assert_eq!(
        err,
        SyntheaError::MissingColumn {
            file: "patients.csv",
            column: "GENDER"
        }
    );
    assert_eq!(
        err.to_string(),
        "patients.csv: required column GENDER is missing from the header"
    );
}

#[test]
fn a_bad_date_names_line_and_column_and_the_rest_map() {
    // Line 6 (the 5th encounter) gets an impossible START.
    let tmp = broken_copy("encounters.csv", |n, l| {
        if n == 6 {
            let mut fields: Vec<String> = l.split(',').map(str::to_owned).collect();
            fields[1] = "2023-13-45T16:17:47Z".to_owned();
            fields.join(",")
        } else {
            l.to_owned()
        }
    });
    let items: Vec<_> = Export::new(tmp.path(), Options::default())
        .events(SyntheaFile::Encounters)
        .unwrap()
        .collect();
    let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].file(), errors[0].line(), errors[0].column()),
        ("encounters.csv", Some(6), Some("START"))
    );
    assert!(errors[0].to_string().contains("2023-13-45T16:17:47Z"), "{}", errors[0]);
    let encounters = rows(&export_dir(), "encounters.csv");
    let admissions = items
        .iter()
        .filter(|i| matches!(i, Ok(e) if matches!(e.payload, Some(Payload::Admission(_)))))
        .count();
    assert_eq!(admissions, encounters.len() - 1);
}

#[test]
fn a_bad_condition_row_names_line_and_column_and_the_rest_map() {
    // Line 10 loses its PATIENT (3rd column), line 20 gets an impossible STOP.
    let tmp = broken_copy("conditions.csv", |n, l| {
        let mut fields: Vec<String> = l.split(',').map(str::to_owned).collect();
        match n {
            10 => fields[2].clear(),
            20 => fields[1] = "2023-02-30".to_owned(),
            _ => {}
        }
        fields.join(",")
    });
    let items: Vec<_> = Export::new(tmp.path(), Options::default())
        .events(SyntheaFile::Conditions)
        .unwrap()
        .collect();
    let errors: Vec<_> = items
        .iter()
        .filter_map(|i| i.as_ref().err())
        .map(|e| (e.file(), e.line(), e.column()))
        .collect();
    assert_eq!(
        errors,
        [
            ("conditions.csv", Some(10), Some("PATIENT")),
            ("conditions.csv", Some(20), Some("STOP"))
        ]
    );
    let ok = items.iter().filter(|i| i.is_ok()).count();
    assert_eq!(ok, rows(&export_dir(), "conditions.csv").len() - 2);
}

#[test]
fn an_old_procedures_layout_with_date_is_refused() {
    // Synthea v2 wrote DATE where v3 writes START and STOP.
    let tmp = broken_copy("procedures.csv", |n, l| {
        if n == 1 {
            l.replacen("START,STOP,", "DATE,", 1)
        } else {
            l.split_once(',').unwrap().1.to_owned()
        }
    });
    let err = Export::new(tmp.path(), Options::default())
        .events(SyntheaFile::Procedures)
        .err()
        .expect("missing column is refused");
    assert_eq!(
        err,
        SyntheaError::MissingColumn {
            file: "procedures.csv",
            column: "START"
        }
    );
}

#[test]
fn a_short_row_and_a_bad_number_are_row_errors() {
    let text = "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n\
        2024-01-01T10:00:00Z,P,E,laboratory,2345-7,Glucose,abc,mg/dL,numeric\n\
        2024-01-01T10:00:00Z,P\n\
        2024-01-01T10:00:00Z,P,E,laboratory,2345-7,Glucose,5.5,mg/dL,numeric\n";
    let items: Vec<_> = Events::new(SyntheaFile::Observations, text.as_bytes(), Options::default())
        .unwrap()
        .collect();
    assert_eq!(items.len(), 3);
    let e = items[0].as_ref().unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(2), Some("VALUE")));
    let e = items[1].as_ref().unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(3), Some("CODE")));
    assert!(items[2].is_ok());
}

#[test]
fn a_charge_with_a_bad_amount_or_an_unknown_claim_is_a_row_error() {
    let claims = "Id,PRIMARYPATIENTINSURANCEID\nC1,P1\nC2,0\n";
    let (claims, errors) = ClaimPayers::read(claims.as_bytes()).unwrap();
    assert_eq!((claims.len(), errors.len()), (2, 0));
    let header = "ID,CLAIMID,PATIENTID,TYPE,AMOUNT,FROMDATE,PROCEDURECODE,UNITS,NOTES,UNITAMOUNT,APPOINTMENTID";
    let text = format!(
        "{header}\n\
         T1,C1,PAT,CHARGE,12.5,2024-01-01T10:00:00Z,185345009,2,Visit,6.25,E1\n\
         T2,C1,PAT,PAYMENT,,2024-01-01T10:00:00Z,185345009,1,Visit,,E1\n\
         T3,C1,PAT,CHARGE,x,2024-01-01T10:00:00Z,185345009,1,Visit,six,E1\n\
         T4,C9,PAT,CHARGE,1,2024-01-01T10:00:00Z,185345009,1,Visit,1.00,E1\n\
         T5,C2,PAT,CHARGE,1,2024-01-01T10:00:00Z,140,1,,1.00,E2\n"
    );
    let items: Vec<_> = Events::new(SyntheaFile::ClaimsTransactions, text.as_bytes(), Options::default())
        .unwrap()
        .with_claims(claims)
        .collect();
    assert_eq!(items.len(), 4, "the payment is skipped");
    let Some(Payload::ChargeLine(c)) = &items[0].as_ref().unwrap().payload else {
        panic!("{items:?}")
    };
    assert_eq!(
        (c.quantity, c.unit_price_minor, c.payer_code.as_str()),
        (2.0, 625, "P1")
    );
    let e = items[1].as_ref().unwrap_err();
    assert_eq!(
        (e.file(), e.line(), e.column()),
        ("claims_transactions.csv", Some(4), Some("UNITAMOUNT"))
    );
    let e = items[2].as_ref().unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(5), Some("CLAIMID")));
    assert!(e.to_string().contains("is not a claim of claims.csv"), "{e}");
    let Some(Payload::ChargeLine(c)) = &items[3].as_ref().unwrap().payload else {
        panic!("{items:?}")
    };
    assert_eq!(
        (c.description.as_str(), c.payer_code.as_str()),
        ("140", ""),
        "no NOTES: the code; claim without insurance: no payer"
    );
}

#[test]
fn claims_transactions_without_unitamount_is_refused() {
    let tmp = broken_copy("claims_transactions.csv", |_, l| {
        let mut fields: Vec<&str> = l.split(',').collect();
        assert_eq!(fields.len(), 33);
        fields.remove(20);
        fields.join(",")
    });
    std::fs::copy(export_dir().join("claims.csv"), tmp.path().join("claims.csv")).unwrap();
    let err = Export::new(tmp.path(), Options::default())
        .events(SyntheaFile::ClaimsTransactions)
        .err()
        .expect("missing column is refused");
    assert_eq!(
        err,
        SyntheaError::MissingColumn {
            file: "claims_transactions.csv",
            column: "UNITAMOUNT"
        }
    );
}
