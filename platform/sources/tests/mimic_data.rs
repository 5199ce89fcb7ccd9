//! MIMIC-III demo -> ClinicalEvent mapping over the real tables (shared/data/mimic3_demo):
//! event counts against counts taken here with the csv crate, the date shift, and the
//! ICU stays against the mapped admissions and transfers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{reference_data::Item, ClinicalEvent};
use hospital_sources::mimic::{Export, MimicError, Options};
use time::macros::format_description;
use time::PrimitiveDateTime;

const WEEK: i64 = 7 * 24 * 3600;

fn export_dir() -> PathBuf {
    let base = std::env::var_os("HOSPITAL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
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
        other => panic!("unexpected payload {other:?}"),
    }
}

const VITAL_ITEMS: [&str; 16] = [
    "211", "220045", "618", "615", "220210", "224690", "646", "220277", "51", "455", "220179", "220050", "678",
    "223761", "676", "223762",
];

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
    let sets: BTreeSet<(String, String, String)> = rows(&dir, "CHARTEVENTS_VITALS.csv.gz")
        .into_iter()
        .filter(|r| r["ERROR"] != "1" && !r["VALUENUM"].is_empty() && VITAL_ITEMS.contains(&r["ITEMID"].as_str()))
        .map(|r| (r["SUBJECT_ID"].clone(), r["HADM_ID"].clone(), r["CHARTTIME"].clone()))
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
/// then FORMULARY_DRUG_CD; as (code system, code).
fn drug_code(r: &HashMap<String, String>) -> Option<(&'static str, String)> {
    if !r["NDC"].trim_start_matches('0').is_empty() {
        Some(("NDC", r["NDC"].clone()))
    } else if !r["FORMULARY_DRUG_CD"].is_empty() {
        Some(("MIMIC formulary", r["FORMULARY_DRUG_CD"].clone()))
    } else {
        None
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
            assert!(
                o.drug_code.is_empty() || drugs.keys().any(|(_, c)| *c == o.drug_code),
                "{}",
                o.drug_code
            );
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
