//! MIMIC-III demo -> ClinicalEvent mapping over the real tables (shared/data/mimic3_demo):
//! event counts against counts taken here with the csv crate, the date shift, the ICU
//! stays against the mapped admissions and transfers, every coded diagnosis and
//! procedure against its row, and the errors of broken copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{reference_data::Item, ClinicalEvent, CodeSystem, DiagnosisRole};
use hospital_sources::mimic::{Export, MimicError, MimicFile, Options};
use time::macros::format_description;
use time::PrimitiveDateTime;

const WEEK: i64 = 7 * 24 * 3600;

fn export_dir() -> PathBuf {
    let base = hospital_testkit::shared_data("");
    let dir = base.join("mimic3_demo");
    assert!(
        dir.join("PATIENTS.csv").is_file() && dir.join("CHARTEVENTS_VITALS.csv.gz").is_file(),
        "MIMIC-III demo data not found at {}. Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
        dir.display()
    );
    dir
}

/// Every row of a file as column name -> value, read independently of the module.
fn rows(dir: &Path, file: &str) -> Vec<HashMap<String, String>> {
    let input: Box<dyn std::io::Read> = if file.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(dir.join(file)).unwrap(),
        ))
    } else {
        Box::new(std::fs::File::open(dir.join(file)).unwrap())
    };
    let mut reader = csv::Reader::from_reader(input);
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

fn raw_seconds(v: &str) -> Option<i64> {
    PrimitiveDateTime::parse(v, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
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
        Payload::Admission(_) => "admission",
        Payload::Discharge(_) => "discharge",
        Payload::Transfer(_) => "transfer",
        Payload::MedicationOrder(_) => "medication",
        Payload::VitalSigns(_) => "vitals",
        Payload::ReferenceData(_) => "drug",
        Payload::Diagnosis(_) => "diagnosis",
        Payload::Procedure(_) => "procedure",
        other => panic!("unexpected payload {other:?}"),
    }
}

/// The numeric vital-sign ITEMIDs (HR, RR, SpO2, systolic and diastolic BP, temperature).
const VITAL_ITEMS: [&str; 24] = [
    "211", "220045", "618", "615", "220210", "224690", "646", "220277", "51", "442", "455", "6701", "220179", "220050",
    "8368", "8440", "8441", "8555", "220180", "220051", "678", "223761", "676", "223762",
];
const GCS_COMPONENTS: [&str; 3] = ["220739", "223900", "223901"];
const O2_DEVICE: [&str; 2] = ["467", "226732"];
const FIO2: [&str; 3] = ["190", "3420", "223835"];
const O2_FLOW: [&str; 3] = ["470", "471", "223834"];

/// A chart row's FiO2 as a percentage (fractions scaled), when it is a reading (21-100).
fn fio2_percent(r: &HashMap<String, String>) -> Option<f64> {
    let v: f64 = r["VALUENUM"].parse().ok()?;
    let pct = if v <= 1.0 { v * 100.0 } else { v };
    let pct = (pct * 10.0).round() / 10.0;
    (21.0..=100.0).contains(&pct).then_some(pct)
}

/// Chart rows (ERROR=1 left out) grouped by (SUBJECT_ID, HADM_ID, CHARTTIME), read here
/// without the module.
fn chart_sets(dir: &Path) -> BTreeMap<(String, String, String), Vec<HashMap<String, String>>> {
    let mut sets: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for r in rows(dir, "CHARTEVENTS_VITALS.csv.gz") {
        if r["ERROR"] != "1" {
            let key = (r["SUBJECT_ID"].clone(), r["HADM_ID"].clone(), r["CHARTTIME"].clone());
            sets.entry(key).or_default().push(r);
        }
    }
    sets
}

/// What a set of chart rows says: (has a numeric vital, GCS total to score, oxygen status).
fn set_content(rows: &[HashMap<String, String>]) -> (bool, Option<u32>, Option<bool>) {
    let item = |r: &HashMap<String, String>| r["ITEMID"].clone();
    let vital = rows
        .iter()
        .any(|r| VITAL_ITEMS.contains(&item(r).as_str()) && !r["VALUENUM"].is_empty());
    let num = |id: &str| -> Option<u32> {
        rows.iter()
            .find(|r| r["ITEMID"] == id)
            .and_then(|r| r["VALUENUM"].parse::<f64>().ok())
            .map(|v| v as u32)
    };
    let gcs = num("198").filter(|t| (3..=15).contains(t)).or_else(|| {
        let parts: Vec<u32> = GCS_COMPONENTS.iter().filter_map(|id| num(id)).collect();
        (parts.len() == 3).then(|| parts.iter().sum())
    });
    let mut evidence = Vec::new();
    for r in rows {
        let id = item(r);
        if O2_DEVICE.contains(&id.as_str()) && !r["VALUE"].is_empty() {
            evidence.push(r["VALUE"] != "None");
        } else if FIO2.contains(&id.as_str()) {
            evidence.extend(fio2_percent(r).map(|p| p > 21.0));
        } else if O2_FLOW.contains(&id.as_str()) {
            evidence.extend(r["VALUENUM"].parse::<f64>().ok().filter(|v| *v >= 0.0).map(|v| v > 0.0));
        }
    }
    let oxygen = (!evidence.is_empty()).then(|| evidence.contains(&true));
    (vital, gcs, oxygen)
}

#[test]
fn counts_match_the_files() {
    let dir = export_dir();
    let events = read_all(&dir);
    let mut by_kind = BTreeMap::<&str, usize>::new();
    for e in &events {
        *by_kind.entry(kind(e)).or_default() += 1;
    }
    let transfers = rows(&dir, "TRANSFERS.csv")
        .iter()
        .filter(|r| r["EVENTTYPE"] == "transfer")
        .count();
    let prescriptions = rows(&dir, "PRESCRIPTIONS.csv");
    let bad_dates = prescriptions
        .iter()
        .filter(|r| {
            raw_seconds(&r["STARTDATE"]).is_none() || (!r["ENDDATE"].is_empty() && raw_seconds(&r["ENDDATE"]).is_none())
        })
        .count();
    // A set is made when any of its rows maps.
    let sets: BTreeSet<_> = chart_sets(&dir)
        .into_iter()
        .filter(|(_, rows)| {
            let (vital, gcs, oxygen) = set_content(rows);
            vital || gcs.is_some() || oxygen.is_some()
        })
        .map(|(key, _)| key)
        .collect();
    assert_eq!(by_kind["patient"], 100);
    assert_eq!(by_kind["admission"], 129);
    assert_eq!(by_kind["discharge"], 129);
    assert_eq!(transfers, 266);
    assert_eq!(by_kind["transfer"], transfers);
    assert_eq!(bad_dates, 0);
    assert_eq!(by_kind["medication"], prescriptions.len() - bad_dates);
    assert_eq!(by_kind["vitals"], sets.len());
    let codes: BTreeSet<String> = prescriptions.iter().filter_map(drug_code).map(|(_, c)| c).collect();
    assert_eq!(by_kind["drug"], codes.len());
    // One event per coded row; the demo has no row without a code.
    let coded = |file: &str| rows(&dir, file).iter().filter(|r| !r["ICD9_CODE"].is_empty()).count();
    let (diagnoses, procedures) = (coded("DIAGNOSES_ICD.csv"), coded("PROCEDURES_ICD.csv"));
    println!("MIMIC demo: {diagnoses} coded diagnoses, {procedures} coded procedures");
    assert_eq!(
        (diagnoses, procedures),
        (
            rows(&dir, "DIAGNOSES_ICD.csv").len(),
            rows(&dir, "PROCEDURES_ICD.csv").len()
        )
    );
    assert_eq!((diagnoses, procedures), (1761, 506));
    assert_eq!((by_kind["diagnosis"], by_kind["procedure"]), (diagnoses, procedures));
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
}

#[test]
fn every_time_is_between_1900_and_the_anchor() {
    let dir = export_dir();
    let anchor = Options::default().anchor.unix_timestamp();
    let y1900 = time::macros::datetime!(1900-01-01 0:00 UTC).unix_timestamp();
    let mut summary_omitted = 0;
    let mut events = Vec::new();
    let summary = Export::new(&dir, Options::default())
        .read_all(|e| events.push(e))
        .unwrap();
    for e in &events {
        let t = e.occurred_at.unwrap().seconds;
        assert!((y1900..=anchor).contains(&t), "{} at {t}", e.event_id);
        match e.payload.as_ref().unwrap() {
            Payload::PatientRegistered(p) => {
                assert!(p.deceased_at.unwrap().seconds <= anchor, "{}", e.event_id);
                match &p.birth_date {
                    Some(d) => assert!(d.year >= 1900),
                    None => summary_omitted += 1,
                }
            }
            Payload::MedicationOrder(m) => {
                if let Some(end) = m.ends_at {
                    assert!(end.seconds <= anchor, "{}", e.event_id);
                }
            }
            _ => {}
        }
    }
    assert_eq!(summary.birth_dates_omitted, summary_omitted);
    // Patients over 89 (DOB ~300 years before admission).
    assert!(summary_omitted > 0);
    // Each patient's latest time lands in the week before the anchor.
    assert!(summary.shift_weeks.values().all(|w| *w > 0));
}

#[test]
fn admission_is_shifted_by_whole_weeks() {
    let dir = export_dir();
    let events = read_all(&dir);
    let by_id: HashMap<&str, &ClinicalEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let first = &rows(&dir, "ADMISSIONS.csv")[0];
    assert_eq!(first["HADM_ID"], "142345");
    let e = by_id[format!("mimic/admissions/{}/admission", first["ROW_ID"]).as_str()];
    let diff = raw_seconds(&first["ADMITTIME"]).unwrap() - e.occurred_at.unwrap().seconds;
    assert!(diff > 0 && diff % WEEK == 0, "shift {diff} s is not whole weeks");
    let Payload::Admission(a) = e.payload.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(a.encounter_id, "142345");
    assert_eq!(a.location.as_ref().unwrap().department_code, "MICU");
    assert_eq!(a.location.as_ref().unwrap().ward_code, "W52");
    assert_eq!(e.patient.as_ref().unwrap().mrn, "10006");
}

/// ICU stays are not events of their own: each should be a move into its FIRST_CAREUNIT
/// that the admissions and transfers already carry. A stay that starts with the
/// admission matches the Admission's department (its time is ADMITTIME, not the ICU
/// INTIME, a minute or so later); a stay that starts later matches a Transfer into the
/// unit at exactly the shifted INTIME.
#[test]
fn icu_stays_are_admissions_or_transfers_into_icu() {
    let dir = export_dir();
    let events = read_all(&dir);
    let stays = rows(&dir, "ICUSTAYS.csv");
    let ids: BTreeSet<&str> = stays.iter().map(|r| r["ICUSTAY_ID"].as_str()).collect();
    assert_eq!(ids.len(), 136);

    let raw_admit: HashMap<String, i64> = rows(&dir, "ADMISSIONS.csv")
        .iter()
        .map(|r| (r["HADM_ID"].clone(), raw_seconds(&r["ADMITTIME"]).unwrap()))
        .collect();
    let mut admissions = HashMap::new();
    let mut transfers = BTreeSet::new();
    for e in &events {
        let at = e.occurred_at.unwrap().seconds;
        match e.payload.as_ref().unwrap() {
            Payload::Admission(a) => {
                admissions.insert(
                    a.encounter_id.clone(),
                    (at, a.location.clone().unwrap().department_code),
                );
            }
            Payload::Transfer(t) => {
                transfers.insert((t.encounter_id.clone(), at, t.to.clone().unwrap().department_code));
            }
            _ => {}
        }
    }
    let (mut by_admission, mut by_transfer, mut unmatched) = (0, 0, 0);
    for s in &stays {
        let hadm = s["HADM_ID"].as_str();
        let (admit_at, department) = &admissions[hadm];
        let shift = raw_admit[hadm] - admit_at;
        let intime = raw_seconds(&s["INTIME"]).unwrap() - shift;
        if transfers.contains(&(hadm.to_owned(), intime, s["FIRST_CAREUNIT"].clone())) {
            by_transfer += 1;
        } else if department == &s["FIRST_CAREUNIT"] {
            by_admission += 1;
        } else {
            unmatched += 1;
        }
    }
    println!("ICU stays: {by_admission} by admission, {by_transfer} by transfer, {unmatched} unmatched");
    // All 136 match: 86 stays begin with the admission (its first TRANSFERS row is the
    // ICU), 50 begin with a transfer into the unit.
    assert_eq!((by_admission, by_transfer, unmatched), (86, 50, 0));
}

/// Every DIAGNOSES_ICD and PROCEDURES_ICD row against its event: the code as written
/// (the door adds the dot), rank and role from SEQ_NUM, the admission, and the time:
/// the admission's DISCHTIME shifted by the patient's weeks, i.e. the time of the
/// mapped Discharge.
#[test]
fn coded_diagnoses_and_procedures_match_their_rows() {
    let dir = export_dir();
    let events = read_all(&dir);
    let by_id: HashMap<&str, &ClinicalEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let discharged: HashMap<String, i64> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Discharge(d)) => Some((d.encounter_id.clone(), e.occurred_at.unwrap().seconds)),
            _ => None,
        })
        .collect();
    let raw_discharge: HashMap<String, i64> = rows(&dir, "ADMISSIONS.csv")
        .iter()
        .map(|r| (r["HADM_ID"].clone(), raw_seconds(&r["DISCHTIME"]).unwrap()))
        .collect();

    let mut first_letters = BTreeMap::<char, usize>::new();
    let mut principal = 0;
    for r in rows(&dir, "DIAGNOSES_ICD.csv") {
        let e = by_id[format!("mimic/diagnoses_icd/{}", r["ROW_ID"]).as_str()];
        assert_eq!(e.patient.as_ref().unwrap().mrn, r["SUBJECT_ID"]);
        let at = e.occurred_at.unwrap().seconds;
        assert_eq!(at, discharged[&r["HADM_ID"]], "{}", e.event_id);
        assert_eq!((raw_discharge[&r["HADM_ID"]] - at) % WEEK, 0);
        let Some(Payload::Diagnosis(d)) = &e.payload else {
            panic!("{e:?}")
        };
        let seq: u32 = r["SEQ_NUM"].parse().unwrap();
        let role = if seq == 1 {
            principal += 1;
            DiagnosisRole::Principal
        } else {
            DiagnosisRole::Secondary
        };
        assert_eq!(
            (d.code.as_str(), d.code_system, d.encounter_id.as_str(), d.rank, d.role),
            (
                r["ICD9_CODE"].as_str(),
                CodeSystem::Icd9Cm as i32,
                r["HADM_ID"].as_str(),
                seq,
                role as i32
            )
        );
        assert_eq!(
            (d.display.as_str(), d.clinical_status, d.abated_at, d.recorded_at),
            ("", 0, None, None),
            "no dictionary in the demo, no status, no times but the discharge"
        );
        let first = r["ICD9_CODE"].chars().next().unwrap();
        *first_letters
            .entry(if first.is_ascii_digit() { '0' } else { first })
            .or_default() += 1;
    }
    println!("DIAGNOSES_ICD: {principal} principal; codes by first character (0 = digit): {first_letters:?}");
    // One principal diagnosis per admission; V (supplementary) and E (external cause)
    // codes are mapped like the rest.
    assert_eq!(principal, 129);
    assert_eq!((first_letters[&'V'], first_letters[&'E']), (153, 47));

    let mut stays = BTreeSet::new();
    for r in rows(&dir, "PROCEDURES_ICD.csv") {
        let e = by_id[format!("mimic/procedures_icd/{}", r["ROW_ID"]).as_str()];
        assert_eq!(e.patient.as_ref().unwrap().mrn, r["SUBJECT_ID"]);
        assert_eq!(e.occurred_at.unwrap().seconds, discharged[&r["HADM_ID"]]);
        let Some(Payload::Procedure(p)) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(
            (p.code.as_str(), p.code_system, p.encounter_id.as_str(), p.rank),
            (
                r["ICD9_CODE"].as_str(),
                CodeSystem::Icd9Cm as i32,
                r["HADM_ID"].as_str(),
                r["SEQ_NUM"].parse().unwrap()
            )
        );
        assert_eq!((p.display.as_str(), p.ended_at, p.performer.as_str()), ("", None, ""));
        stays.insert(r["HADM_ID"].clone());
    }
    assert_eq!(stays.len(), 113, "113 of the 129 admissions have coded procedures");
}

/// The demo's tables copied into a fresh directory, `file` edited line by line.
fn broken_copy(file: &str, edit: impl Fn(usize, &str) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in MimicFile::ALL {
        std::fs::copy(export_dir().join(f.file_name()), tmp.path().join(f.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(export_dir().join(file)).unwrap();
    let out: Vec<String> = text.lines().enumerate().map(|(i, l)| edit(i + 1, l)).collect();
    std::fs::write(tmp.path().join(file), out.join("\n") + "\n").unwrap();
    tmp
}

#[test]
fn a_row_without_a_code_is_skipped_and_bad_rows_name_line_and_column() {
    // DIAGNOSES_ICD.csv: ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE.
    let tmp = broken_copy("DIAGNOSES_ICD.csv", |n, l| {
        let mut f: Vec<String> = l.split(',').map(str::to_owned).collect();
        match n {
            // No code (MIMIC allows a null ICD9_CODE and SEQ_NUM): skipped.
            5 => {
                f[3].clear();
                f[4].clear();
            }
            10 => f[3] = "x".to_owned(),
            11 => f[3].clear(),
            12 => f[2] = "999999".to_owned(),
            // 10006's admission given to patient 10011.
            13 => f[1] = "10011".to_owned(),
            _ => {}
        }
        f.join(",")
    });
    let mut events = Vec::new();
    let summary = Export::new(tmp.path(), Options::default())
        .read_all(|e| events.push(e))
        .unwrap();
    let errors: Vec<_> = summary
        .errors
        .iter()
        .map(|e| (e.file(), e.line(), e.column()))
        .collect();
    assert_eq!(
        errors,
        [
            ("DIAGNOSES_ICD.csv", Some(10), Some("SEQ_NUM")),
            ("DIAGNOSES_ICD.csv", Some(11), Some("SEQ_NUM")),
            ("DIAGNOSES_ICD.csv", Some(12), Some("HADM_ID")),
            ("DIAGNOSES_ICD.csv", Some(13), Some("HADM_ID")),
        ]
    );
    let messages: Vec<String> = summary.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "DIAGNOSES_ICD.csv line 10, column SEQ_NUM: \"x\" is not a position (1 first)",
            "DIAGNOSES_ICD.csv line 11, column SEQ_NUM: required value is empty",
            "DIAGNOSES_ICD.csv line 12, column HADM_ID: \"999999\" is not an admission of ADMISSIONS.csv with a DISCHTIME",
            "DIAGNOSES_ICD.csv line 13, column HADM_ID: \"142345\" is an admission of SUBJECT_ID 10006 in ADMISSIONS.csv",
        ]
    );
    let balance = summary.of(MimicFile::DiagnosesIcd);
    assert_eq!(
        balance.skipped,
        BTreeMap::from([("ICD9_CODE empty: codes nothing".to_owned(), 1)])
    );
    let rows = rows(&export_dir(), "DIAGNOSES_ICD.csv").len() as u64;
    assert_eq!((balance.read, balance.mapped, balance.not_mapped), (rows, rows - 5, 4));
    assert!(balance.balances(), "{balance}");
    assert_eq!(summary.events[&MimicFile::DiagnosesIcd], rows - 5);
    assert!(!events.iter().any(|e| e.event_id == "mimic/diagnoses_icd/112347"));
}

#[test]
fn code_dictionaries_name_the_codes_when_present() {
    let tmp = broken_copy("PATIENTS.csv", |_, l| l.to_owned());
    std::fs::write(
        tmp.path().join("D_ICD_DIAGNOSES.csv"),
        "ROW_ID,ICD9_CODE,SHORT_TITLE,LONG_TITLE\n\
         1,99591,Sepsis,Sepsis\n\
         2,V1582,Hx of tobacco use,Personal history of tobacco use\n\
         3,,x,y\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("D_ICD_PROCEDURES.csv"),
        "ROW_ID,ICD9_CODE,SHORT_TITLE,LONG_TITLE\n1,9671,Cont inv mec ven <96 hrs,Continuous invasive mechanical ventilation for less than 96 consecutive hours\n",
    )
    .unwrap();
    let mut events = Vec::new();
    let summary = Export::new(tmp.path(), Options::default())
        .read_all(|e| events.push(e))
        .unwrap();
    let errors: Vec<_> = summary
        .errors
        .iter()
        .map(|e| (e.file(), e.line(), e.column()))
        .collect();
    assert_eq!(errors, [("D_ICD_DIAGNOSES.csv", Some(4), Some("ICD9_CODE"))]);
    assert_eq!(
        summary.dictionaries,
        BTreeMap::from([("D_ICD_DIAGNOSES.csv", 2), ("D_ICD_PROCEDURES.csv", 1)])
    );
    let mut named = BTreeMap::<(&str, &str), usize>::new();
    for e in &events {
        let (code, display) = match &e.payload {
            Some(Payload::Diagnosis(d)) => (d.code.as_str(), d.display.as_str()),
            Some(Payload::Procedure(p)) => (p.code.as_str(), p.display.as_str()),
            _ => continue,
        };
        if !display.is_empty() {
            *named.entry((code, display)).or_default() += 1;
        }
    }
    let n = |file: &str, code: &str| {
        rows(&export_dir(), file)
            .iter()
            .filter(|r| r["ICD9_CODE"] == code)
            .count()
    };
    assert_eq!(
        named,
        BTreeMap::from([
            (("99591", "Sepsis"), n("DIAGNOSES_ICD.csv", "99591")),
            (
                ("V1582", "Personal history of tobacco use"),
                n("DIAGNOSES_ICD.csv", "V1582")
            ),
            (
                (
                    "9671",
                    "Continuous invasive mechanical ventilation for less than 96 consecutive hours"
                ),
                n("PROCEDURES_ICD.csv", "9671")
            ),
        ])
    );
    assert!(named.values().all(|n| *n > 0));
}

#[test]
fn missing_column_refuses_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("PATIENTS.csv"),
        "ROW_ID,SUBJECT_ID,GENDER,DOD\n1,2,F,\n",
    )
    .unwrap();
    let err = Export::new(tmp.path(), Options::default())
        .read_all(|_| {})
        .unwrap_err();
    assert_eq!(
        err,
        MimicError::MissingColumn {
            file: "PATIENTS.csv",
            column: "DOB"
        }
    );
}

/// The code an order of this PRESCRIPTIONS row carries: the NDC unless it is 0 or empty,
/// then FORMULARY_DRUG_CD, then the DRUG name lower-cased with runs of other characters
/// as `-`; as (code system, code).
fn drug_code(r: &HashMap<String, String>) -> Option<(&'static str, String)> {
    if !r["NDC"].trim_start_matches('0').is_empty() {
        Some(("NDC", r["NDC"].clone()))
    } else if !r["FORMULARY_DRUG_CD"].is_empty() {
        Some(("MIMIC formulary", r["FORMULARY_DRUG_CD"].clone()))
    } else {
        let words: Vec<String> = r["DRUG"]
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        (!words.is_empty()).then(|| ("MIMIC drug name", words.join("-")))
    }
}

/// (DRUG, PROD_STRENGTH, FORM_UNIT_DISP).
type Spelling = (String, String, String);

/// Every drug code an order uses has one named catalogue entry before the orders, with
/// the code's most frequent spelling in PRESCRIPTIONS.
#[test]
fn prescriptions_give_a_drug_catalogue_before_the_orders() {
    let dir = export_dir();
    let events = read_all(&dir);
    let prescriptions = rows(&dir, "PRESCRIPTIONS.csv");
    let mut spellings: HashMap<(&str, String), HashMap<Spelling, usize>> = HashMap::new();
    for r in &prescriptions {
        if let Some(code) = drug_code(r) {
            *spellings
                .entry(code)
                .or_default()
                .entry((
                    r["DRUG"].clone(),
                    r["PROD_STRENGTH"].clone(),
                    r["FORM_UNIT_DISP"].clone(),
                ))
                .or_default() += 1;
        }
    }
    let first_order = events
        .iter()
        .position(|e| matches!(e.payload, Some(Payload::MedicationOrder(_))))
        .unwrap();
    let mut drugs = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some(Payload::ReferenceData(r)) = &e.payload else {
            continue;
        };
        assert!(i < first_order, "{} comes before the orders", e.event_id);
        let Some(Item::Drug(d)) = &r.item else { panic!("{r:?}") };
        assert_eq!(e.event_id, format!("mimic/drugs/{}/{}", d.code_system, d.code));
        assert!(e.patient.is_none());
        drugs.insert((d.code_system.clone(), d.code.clone()), d.clone());
    }
    let ndc = drugs.keys().filter(|(s, _)| s == "NDC").count();
    println!(
        "{} drugs: {ndc} NDC, {} MIMIC formulary",
        drugs.len(),
        drugs.len() - ndc
    );
    assert_eq!(drugs.len(), spellings.len());
    for ((system, code), counts) in &spellings {
        let d = &drugs[&(system.to_string(), code.clone())];
        let n = counts[&(d.name.clone(), d.strength.clone(), d.form.clone())];
        assert_eq!(Some(&n), counts.values().max(), "{code}: the most frequent spelling");
        assert!(!d.name.is_empty());
    }
    // Orders name the codes of the catalogue.
    for e in &events {
        if let Some(Payload::MedicationOrder(o)) = &e.payload {
            assert!(drugs.keys().any(|(_, c)| *c == o.drug_code), "{}", o.drug_code);
        }
    }
    // A code spelt two ways: "Metoprolol Tartrate" (63 rows) and "Metoprolol" (40) for
    // NDC 51079025520.
    let metoprolol = &drugs[&("NDC".to_string(), "51079025520".to_string())];
    assert_eq!(
        (
            metoprolol.name.as_str(),
            metoprolol.strength.as_str(),
            metoprolol.form.as_str()
        ),
        ("Metoprolol Tartrate", "25mg Tablet", "TAB")
    );
}

/// Every row of every table is mapped, not mapped, skipped or superseded, with a reason,
/// and the counts add up to the rows of the files.
#[test]
fn every_row_of_every_table_is_accounted_for() {
    let dir = export_dir();
    let mut events = Vec::new();
    let summary = Export::new(&dir, Options::default())
        .read_all(|e| events.push(e))
        .unwrap();
    assert_eq!(summary.errors, []);
    for file in MimicFile::ALL {
        let b = summary.of(file);
        println!("{}: {b}", file.file_name());
        for (reason, n) in &b.skipped {
            println!("  skipped x{n}: {reason}");
        }
        for (reason, n) in &b.superseded {
            println!("  superseded x{n}: {reason}");
        }
        assert_eq!(b.read, rows(&dir, file.file_name()).len() as u64, "{file:?}");
        assert!(b.balances(), "{file:?}: {b}");
        assert_eq!(b.not_mapped, 0);
    }
    let total = summary.total();
    assert!(total.balances(), "{total}");

    // Counted here from the file: ERROR=1 rows, and the times where the cuff and the
    // arterial line both gave a systolic BP (the arterial reading is superseded).
    let chart = rows(&dir, "CHARTEVENTS_VITALS.csv.gz");
    let b = summary.of(MimicFile::ChartEventsVitals);
    let in_error = chart.iter().filter(|r| r["ERROR"] == "1").count() as u64;
    assert_eq!(b.skipped["ERROR=1: marked as charted in error"], in_error);
    let empty = chart
        .iter()
        .filter(|r| r["ERROR"] != "1" && r["VALUENUM"].is_empty() && !O2_DEVICE.contains(&r["ITEMID"].as_str()))
        .count() as u64;
    assert_eq!(b.skipped["VALUENUM empty"], empty);
    let sets = chart_sets(&dir);
    let both = |cuff: &str, arterial: &str| {
        sets.values()
            .filter(|rows| {
                let has = |id: &str| rows.iter().any(|r| r["ITEMID"] == id && !r["VALUENUM"].is_empty());
                has(cuff) && has(arterial)
            })
            .count() as u64
    };
    for (cuff, arterial) in [("455", "51"), ("220179", "220050")] {
        let reason = format!("systolic BP ITEMID {arterial} superseded by ITEMID {cuff} charted at the same time");
        assert_eq!(
            b.superseded.get(&reason).copied().unwrap_or(0),
            both(cuff, arterial),
            "{reason}"
        );
        assert!(both(cuff, arterial) > 0);
    }
    assert_eq!(
        b.superseded["diastolic BP ITEMID 220051 superseded by ITEMID 220180 charted at the same time"],
        both("220180", "220051")
    );
    // The demo's ~30k rows of items the mapping did not read are now read: none is
    // skipped for its ITEMID.
    assert!(!b.skipped.keys().any(|r| r.starts_with("ITEMID")), "{:?}", b.skipped);
}

fn vital_signs(events: &[ClinicalEvent]) -> HashMap<&str, &hospital_proto::events::VitalSigns> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::VitalSigns(v)) => Some((e.event_id.as_str(), v)),
            _ => None,
        })
        .collect()
}

/// Consciousness (from GCS) and supplemental oxygen (from device, FiO2, flow) are on the
/// MIMIC sets: as many as the file's rows say, and a few sets checked by hand.
#[test]
fn news2_consciousness_and_oxygen_come_from_gcs_and_oxygen_delivery() {
    use hospital_proto::events::Consciousness;
    let dir = export_dir();
    let events = read_all(&dir);
    let sets = vital_signs(&events);
    let (mut with_gcs, mut with_oxygen, mut on_oxygen) = (0, 0, 0);
    for rows in chart_sets(&dir).values() {
        let (_, gcs, oxygen) = set_content(rows);
        with_gcs += usize::from(gcs.is_some());
        with_oxygen += usize::from(oxygen.is_some());
        on_oxygen += usize::from(oxygen == Some(true));
    }
    let mapped_gcs = sets.values().filter(|v| v.consciousness != 0).count();
    let mapped_oxygen = sets.values().filter(|v| v.supplemental_oxygen.is_some()).count();
    let mapped_on = sets.values().filter(|v| v.supplemental_oxygen == Some(true)).count();
    println!(
        "MIMIC sets: {} in all, {mapped_gcs} with consciousness, {mapped_oxygen} with oxygen status ({mapped_on} on oxygen)",
        sets.len()
    );
    assert_eq!(
        (mapped_gcs, mapped_oxygen, mapped_on),
        (with_gcs, with_oxygen, on_oxygen)
    );
    assert!(mapped_gcs > 1000 && mapped_oxygen > 1000 && mapped_on < mapped_oxygen);
    let with_dbp = sets
        .values()
        .filter(|v| v.observations.iter().any(|o| o.loinc_code == "8462-4"))
        .count();
    assert!(with_dbp > 5000, "{with_dbp} sets with a diastolic BP");

    let obs = |v: &hospital_proto::events::VitalSigns| -> BTreeMap<String, f64> {
        v.observations.iter().map(|o| (o.loinc_code.clone(), o.value)).collect()
    };
    // MetaVision, ventilated: GCS eye None (1) + verbal No Response-ETT (1) + motor No
    // response (1) = 3 -> unresponsive; endotracheal tube and FiO2 100% -> on oxygen;
    // cuff 163/70 kept over the arterial 137/78; the charted RR 24 over the
    // ventilator's total 30.
    let v = sets["mimic/chartevents/40310/186361/2144-07-13T12:00:00"];
    assert_eq!(v.consciousness, Consciousness::Unresponsive as i32);
    assert_eq!(v.supplemental_oxygen, Some(true));
    assert_eq!(
        obs(v),
        BTreeMap::from([
            ("8867-4".to_owned(), 133.0),
            ("9279-1".to_owned(), 24.0),
            ("8480-6".to_owned(), 163.0),
            ("8462-4".to_owned(), 70.0),
            ("8310-5".to_owned(), 102.0),
        ])
    );
    // CareVue: GCS total 11 -> voice; device "None" -> on room air; the arterial
    // systolic (ITEMID 51) has no value, so the cuff's 114 stands, with its diastolic 65.
    let v = sets["mimic/chartevents/10011/105331/2126-08-21T15:00:00"];
    assert_eq!(v.consciousness, Consciousness::Voice as i32);
    assert_eq!(v.supplemental_oxygen, Some(false));
    let o = obs(v);
    assert_eq!((o["8480-6"], o["8462-4"], o["59408-5"]), (114.0, 65.0, 100.0));
}

/// No order and no catalogue drug has an empty code: the one demo prescription with
/// neither NDC nor FORMULARY_DRUG_CD (Tarceva) is coded by its name.
#[test]
fn no_drug_code_is_empty() {
    let dir = export_dir();
    let events = read_all(&dir);
    let mut named = Vec::new();
    for e in &events {
        match &e.payload {
            Some(Payload::MedicationOrder(o)) => {
                assert!(!o.drug_code.is_empty(), "{}", e.event_id);
                if o.drug_name == "Tarceva" {
                    named.push(o.drug_code.clone());
                }
            }
            Some(Payload::ReferenceData(r)) => {
                let Some(Item::Drug(d)) = &r.item else { panic!("{r:?}") };
                assert!(!d.code.is_empty() && !d.code_system.is_empty(), "{}", e.event_id);
            }
            _ => {}
        }
    }
    let uncoded: Vec<_> = rows(&dir, "PRESCRIPTIONS.csv")
        .into_iter()
        .filter(|r| r["NDC"].trim_start_matches('0').is_empty() && r["FORMULARY_DRUG_CD"].is_empty())
        .collect();
    assert_eq!(uncoded.len(), 1);
    assert_eq!(uncoded[0]["DRUG"], "Tarceva");
    assert!(named.contains(&"tarceva".to_owned()), "{named:?}");
    assert!(events
        .iter()
        .any(|e| e.event_id == "mimic/drugs/MIMIC drug name/tarceva"));
}
