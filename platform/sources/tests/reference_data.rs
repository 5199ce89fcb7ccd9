//! Reference data directories -> ReferenceData events, over the shipped catalogue
//! (platform/sources/reference): its counts against the Synthea export it was made from
//! (shared/data/synthea_csv), read here with the csv crate, and the errors of broken
//! copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::reference_data::Item;
use hospital_proto::events::{self as pb, ClinicalEvent};
use hospital_sources::reference::{Catalogue, Options, ReferenceError, ReferenceFile, Summary};

fn catalogue_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference")
}

fn synthea_dir() -> PathBuf {
    let base = hospital_testkit::shared_data("");
    let dir = base.join("synthea_csv");
    assert!(
        dir.join("medications.csv").is_file(),
        "Synthea test data not found at {}. Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
        dir.display()
    );
    dir
}

/// One column of every row of a CSV file, read independently of the module.
fn column(path: &Path, name: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let i = reader.headers().unwrap().iter().position(|h| h == name).unwrap();
    reader.records().map(|r| r.unwrap()[i].to_owned()).collect()
}

fn read(dir: &Path) -> Result<(Vec<ClinicalEvent>, Summary), ReferenceError> {
    let mut events = Vec::new();
    let summary = Catalogue::new(dir, Options::default()).read_all(|e| events.push(e))?;
    Ok((events, summary))
}

fn items(events: &[ClinicalEvent]) -> (Vec<pb::Drug>, Vec<pb::Payer>) {
    let (mut drugs, mut payers) = (Vec::new(), Vec::new());
    for e in events {
        let Some(Payload::ReferenceData(pb::ReferenceData { item: Some(item) })) = &e.payload else {
            panic!("{e:?}")
        };
        match item {
            Item::Drug(d) => drugs.push(d.clone()),
            Item::Payer(p) => payers.push(p.clone()),
            Item::Ward(w) => panic!("the catalogue has no wards: {w:?}"),
        }
    }
    (drugs, payers)
}

#[test]
fn the_shipped_catalogue_has_every_synthea_drug_and_payer() {
    let (events, summary) = read(&catalogue_dir()).unwrap();
    assert_eq!(summary.errors, []);
    let (drugs, payers) = items(&events);
    let synthea = synthea_dir();
    let medication_codes: BTreeSet<String> = column(&synthea.join("medications.csv"), "CODE").into_iter().collect();
    let payer_ids: BTreeSet<String> = column(&synthea.join("payers.csv"), "Id").into_iter().collect();
    println!(
        "{} drugs ({} distinct RxNorm codes in Synthea's medications.csv), {} payers ({} in Synthea's payers.csv)",
        drugs.len(),
        medication_codes.len(),
        payers.len(),
        payer_ids.len()
    );
    // Synthea's 32 codes and the simulator's 3 others; Synthea's 10 payers and the
    // simulator's 4.
    assert_eq!((medication_codes.len(), drugs.len()), (32, 35));
    assert_eq!((payer_ids.len(), payers.len()), (10, 14));
    assert_eq!(
        summary.events,
        BTreeMap::from([(ReferenceFile::Drugs, 35), (ReferenceFile::Payers, 14)])
    );

    let by_code: HashMap<&str, &pb::Drug> = drugs.iter().map(|d| (d.code.as_str(), d)).collect();
    assert!(medication_codes.iter().all(|c| by_code.contains_key(c.as_str())));
    // The simulator's formulary beyond medications.csv (the simulator's own test checks
    // its every code, name and class against this catalogue).
    for code in ["1719286", "866414", "1659149"] {
        assert!(by_code.contains_key(code), "the simulator's {code}");
    }
    for d in &drugs {
        assert_eq!(d.code_system, "RxNorm");
        assert!(
            !d.name.is_empty() && !d.drug_class.is_empty() && !d.form.is_empty(),
            "{d:?}"
        );
    }
    // Names as Synthea writes them, strength and form read from them.
    let d = by_code["313782"];
    assert_eq!(
        (
            d.name.as_str(),
            d.strength.as_str(),
            d.form.as_str(),
            d.drug_class.as_str()
        ),
        ("Acetaminophen 325 MG Oral Tablet", "325 MG", "Oral Tablet", "analgesic")
    );
    let d = by_code["1049625"];
    assert_eq!(
        (d.strength.as_str(), d.form.as_str(), d.drug_class.as_str()),
        ("325 MG / 10 MG", "Oral Tablet", "opioid analgesic")
    );
    assert_eq!(by_code["314076"].drug_class, "ACE inhibitor");

    let payer_codes: BTreeSet<&str> = payers.iter().map(|p| p.code.as_str()).collect();
    assert!(payer_ids.iter().all(|id| payer_codes.contains(id.as_str())));
    for code in ["NHS", "MEDICARE", "AETNA", "SELF"] {
        assert!(payer_codes.contains(code), "the simulator's {code}");
    }
    let types: BTreeSet<&str> = payers.iter().map(|p| p.payer_type.as_str()).collect();
    assert_eq!(types, BTreeSet::from(["private", "public", "self-pay"]));

    // Ids by code, so a second load is absorbed; the same on every read.
    assert!(events.iter().any(|e| e.event_id == "reference/drugs/RxNorm/313782"));
    assert!(events.iter().any(|e| e.event_id == "reference/payers/NHS"));
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    let (again, _) = read(&catalogue_dir()).unwrap();
    assert_eq!(events, again);
}

/// A copy of the shipped `file` in a fresh directory, after `edit` (line by line).
fn broken_copy(file: &str, edit: impl Fn(usize, &str) -> String) -> tempfile::TempDir {
    let tmp = tempfile::TempDir::new().unwrap();
    let text = std::fs::read_to_string(catalogue_dir().join(file)).unwrap();
    let out: Vec<String> = text.lines().enumerate().map(|(i, l)| edit(i + 1, l)).collect();
    std::fs::write(tmp.path().join(file), out.join("\n") + "\n").unwrap();
    tmp
}

#[test]
fn a_row_without_a_name_names_file_line_and_column_and_the_rest_map() {
    // Line 5 loses its name (third column).
    let tmp = broken_copy("drugs.csv", |n, l| {
        if n == 5 {
            let mut fields: Vec<String> = l.split(',').map(str::to_owned).collect();
            fields[2] = String::new();
            fields.join(",")
        } else {
            l.to_owned()
        }
    });
    let (events, summary) = read(tmp.path()).unwrap();
    assert_eq!(summary.errors.len(), 1);
    let e = &summary.errors[0];
    assert_eq!((e.file(), e.line(), e.column()), ("drugs.csv", Some(5), Some("name")));
    assert_eq!(e.to_string(), "drugs.csv line 5, column name: required value is empty");
    assert_eq!(
        events.len(),
        34,
        "the other rows map; payers.csv is not in this directory"
    );
}

#[test]
fn a_file_missing_a_column_is_refused() {
    // payers.csv without payer_type.
    let tmp = broken_copy("payers.csv", |_, l| {
        let fields: Vec<&str> = l.split(',').collect();
        fields[..2].join(",")
    });
    let err = read(tmp.path()).unwrap_err();
    assert_eq!(
        err,
        ReferenceError::MissingColumn {
            file: "payers.csv",
            column: "payer_type"
        }
    );
}
