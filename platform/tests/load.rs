//! Historical loads from the shared data sets through the running platform (gRPC ingest,
//! staging, warehouse load), as `hospital load` does: the warehouse matches the files'
//! counts, and a second load of the same files adds nothing.

mod common;

use common::*;
use hospital_client::load::{self, Extract};

async fn send(addr: std::net::SocketAddr, extract: &Extract) -> usize {
    let report = send_all(addr, extract).await;
    assert!(
        report.rejections.is_empty(),
        "the platform rejected: {:?}",
        report.rejections.iter().take(5).collect::<Vec<_>>()
    );
    report.committed
}

async fn send_all(addr: std::net::SocketAddr, extract: &Extract) -> hospital_client::sender::SendReport {
    send_through_sender(addr, extract.events.clone(), 500).await
}

/// One column of every row of a CSV file, by header name.
fn csv_column(path: &std::path::Path, name: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let i = reader.headers().unwrap().iter().position(|h| h == name).unwrap();
    reader.records().map(|r| r.unwrap()[i].to_owned()).collect()
}

/// Rows of a query as tab-separated fields (none of the values here holds a tab).
fn query_rows(ch: &hospital_testkit::ClickHouseServer, sql: &str) -> Vec<Vec<String>> {
    let out = ch.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The extract's record balance holds, and the platform answered every event it was sent:
/// the balance of a load, as `hospital load` prints it.
fn assert_balances(name: &str, extract: &Extract, report: &hospital_client::sender::SendReport) {
    let b = &extract.balance;
    println!("{name}: records {b}");
    assert!(b.balances(), "{name}: {b}");
    assert_eq!(
        b.not_mapped,
        extract.problems.len() as u64,
        "{name}: one problem per record not mapped"
    );
    assert_eq!(
        report.committed + report.rejections.len(),
        extract.events.len(),
        "{name}: every event accepted or rejected"
    );
}

fn csv_rows(path: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_csv_loads_with_the_files_counts_and_a_second_load_adds_nothing() {
    let dir = shared_data("synthea_csv");
    let extract = load::synthea(&dir).expect("the export reads");
    assert!(extract.problems.is_empty(), "{:?}", extract.problems);
    let patients = csv_rows(&dir.join("patients.csv"));
    let encounters = csv_rows(&dir.join("encounters.csv"));
    assert_eq!(patients, 27);
    // Conditions and procedures, one event per row. The door refuses a "SNOMED CT" code
    // that is not a concept id (6-18 digits, no leading zero), as it refused the LOINC
    // code of a Synthea FHIR Procedure; which rows it will refuse is counted here from
    // the files, and the mapper does not drop them itself.
    let is_snomed =
        |c: &str| (6..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) && !c.starts_with('0');
    let snomed_rows = |file: &str| {
        let codes = csv_column(&dir.join(file), "CODE");
        let good = codes.iter().filter(|c| is_snomed(c)).count() as u64;
        (good, codes.len() as u64 - good)
    };
    let (conditions, bad_conditions) = snomed_rows("conditions.csv");
    let (procedures, bad_procedures) = snomed_rows("procedures.csv");
    let resolved = csv_column(&dir.join("conditions.csv"), "STOP")
        .iter()
        .zip(csv_column(&dir.join("conditions.csv"), "CODE"))
        .filter(|(stop, code)| !stop.is_empty() && is_snomed(code))
        .count() as u64;
    println!(
        "conditions.csv: {conditions} SNOMED-coded rows ({resolved} with a STOP), {bad_conditions} not; \
         procedures.csv: {procedures} SNOMED-coded rows, {bad_procedures} not"
    );

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let report = send_all(platform.local_addr(), &extract).await;
    let rejected = |field: &str| {
        report
            .rejections
            .iter()
            .filter(|r| r.violations.iter().map(|v| v.field.as_str()).eq([field]))
            .count() as u64
    };
    assert_eq!(
        (rejected("diagnosis.code"), rejected("procedure.code")),
        (bad_conditions, bad_procedures)
    );
    assert_eq!(
        report.rejections.len() as u64,
        bad_conditions + bad_procedures,
        "nothing else is rejected: {:?}",
        report.rejections.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(report.committed, extract.events.len() - report.rejections.len());
    assert_balances("Synthea CSV", &extract, &report);
    let file_rows: u64 = hospital_sources::synthea::SyntheaFile::ALL
        .iter()
        .map(|f| dir.join(f.file_name()))
        .filter(|p| p.is_file())
        .map(|p| csv_rows(&p))
        .sum();
    assert_eq!(
        extract.balance.read, file_rows,
        "every row of every file read is in the balance"
    );
    println!(
        "Synthea CSV: {} events, {} committed, {} rejected, skipped {:?}",
        extract.events.len(),
        report.committed,
        report.rejections.len(),
        extract.skipped
    );
    run_warehouse_load(platform.local_addr(), false).await;

    let counts = |ch: &hospital_testkit::ClickHouseServer| {
        (
            count(
                ch,
                "SELECT count() FROM warehouse.dim_patient FINAL WHERE is_deleted = 0 AND is_current = 1 AND is_inferred = 0",
            ),
            count(ch, "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0 AND discharged_at_ms IS NOT NULL",
            ),
            count(ch, "SELECT count() FROM warehouse.fact_medication FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_charge FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0"),
        )
    };
    let first = counts(&ch);
    let charges = csv_column(&dir.join("claims_transactions.csv"), "TYPE")
        .iter()
        .filter(|t| *t == "CHARGE")
        .count() as u64;
    println!(
        "claims_transactions.csv: {charges} CHARGE rows; fact_charge: {} rows",
        first.5
    );
    assert_eq!(first.5, charges, "one charge line per CHARGE transaction");
    assert_eq!(first.0, patients, "one current patient per row of patients.csv");
    assert_eq!(first.1, encounters, "one encounter per row of encounters.csv");
    assert_eq!(first.2, encounters, "every Synthea encounter has a STOP");
    assert_eq!(first.3, csv_rows(&dir.join("medications.csv")));
    assert!(first.4 > 0);
    println!("fact_diagnosis: {} rows, fact_procedure: {} rows", first.6, first.7);
    assert_eq!(
        first.6, conditions,
        "one diagnosis per SNOMED-coded row of conditions.csv"
    );
    assert_eq!(
        first.7, procedures,
        "one procedure per SNOMED-coded row of procedures.csv"
    );
    // As the mapper set them: SNOMED CT, no role (as from Synthea's FHIR), resolved when
    // the row has a STOP, else active.
    let q = |sql: &str| count(&ch, sql);
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND code_system = 'snomed_ct' AND role = '' AND rank = 0"),
        conditions
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND clinical_status = 'resolved' AND abated_at_ms IS NOT NULL"),
        resolved
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND clinical_status = 'active' AND abated_at_ms IS NULL"),
        conditions - resolved
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0 AND code_system = 'snomed_ct' AND ended_at_ms IS NOT NULL"),
        procedures
    );

    // The same files again: staged again, absorbed by the warehouse.
    send_all(platform.local_addr(), &extract).await;
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(counts(&ch), first, "a second load adds nothing");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_reference_catalogue_names_drugs_and_payers_and_a_second_load_adds_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sources/reference");
    let extract = load::reference(&dir).expect("the catalogue reads");
    assert!(extract.problems.is_empty(), "{:?}", extract.problems);
    // The catalogue's rows, read here with the csv crate: code -> (name, class, form,
    // strength) and code -> (name, payer_type).
    let file_rows = |file: &str, columns: &[&str]| -> Vec<Vec<String>> {
        let cols: Vec<Vec<String>> = columns.iter().map(|c| csv_column(&dir.join(file), c)).collect();
        let mut rows: Vec<Vec<String>> = (0..cols[0].len())
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect();
        rows.sort();
        rows
    };
    let drugs = file_rows(
        "drugs.csv",
        &["code", "code_system", "name", "drug_class", "form", "strength"],
    );
    let payers = file_rows("payers.csv", &["code", "name", "payer_type"]);
    println!("reference catalogue: {} drugs, {} payers", drugs.len(), payers.len());
    assert!(!drugs.is_empty() && !payers.is_empty());

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    assert_eq!(send(platform.local_addr(), &extract).await, drugs.len() + payers.len());
    run_warehouse_load(platform.local_addr(), false).await;

    let dims = |ch: &hospital_testkit::ClickHouseServer| {
        (
            query_rows(
                ch,
                "SELECT drug_code, code_system, name, drug_class, form, strength FROM warehouse.dim_drug FINAL \
                 WHERE is_inferred = 0 ORDER BY drug_code",
            ),
            query_rows(
                ch,
                "SELECT payer_code, name, payer_type FROM warehouse.dim_payer FINAL WHERE is_inferred = 0 ORDER BY payer_code",
            ),
            count(ch, "SELECT count() FROM warehouse.dim_drug FINAL"),
            count(ch, "SELECT count() FROM warehouse.dim_payer FINAL"),
        )
    };
    let first = dims(&ch);
    // Sorted the same way: by code, which ClickHouse and Rust order alike (ASCII).
    assert_eq!(
        first.0, drugs,
        "dim_drug holds the catalogue's drugs, named and classed"
    );
    assert_eq!(first.1, payers, "dim_payer holds the catalogue's payers");
    assert_eq!(
        (first.2, first.3),
        (drugs.len() as u64, payers.len() as u64),
        "and nothing else"
    );
    assert!(first.0.iter().all(|d| !d[2].is_empty() && !d[3].is_empty()));

    send(platform.local_addr(), &extract).await;
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(dims(&ch), first, "a second load adds nothing");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_files_load_through_the_same_door_and_report_what_did_not_map() {
    let dir = shared_data("hl7v2/microsoft_FHIR-Converter/messages");
    let extract = load::hl7(&dir).expect("the files read");
    assert!(!extract.events.is_empty());
    // Unsupported types are counted, unmappable messages are named with their file.
    assert!(extract.skipped.values().sum::<usize>() > 0);
    assert!(
        extract.problems.iter().all(|p| p.contains(".hl7 message ")),
        "{:?}",
        extract.problems
    );

    let ch = clickhouse();
    let mut cfg = config(&ch);
    // Some of the sample messages are dated years ahead.
    cfg.ingest.max_future_secs = 10 * 365 * 86_400;
    let platform = hospital_platform::server::start(cfg).await.unwrap();
    let report = send_all(platform.local_addr(), &extract).await;
    // Three events of the samples are wrong, and the door says so by event and field:
    // haemoglobin in g/mL, an OBX without a LOINC code, and a text result coded in the
    // local system "XYZ" instead of LOINC (ORU-R01-01). Every diagnosis (DG1) and
    // procedure (PR1) passes: their codes fit the systems they name.
    let mut rejected: Vec<(String, String)> = report
        .rejections
        .iter()
        .map(|r| (r.event_id.clone(), r.violations[0].field.clone()))
        .collect();
    rejected.sort();
    assert_eq!(
        rejected,
        vec![
            ("ELAB-3|CNTRL-3456".to_string(), "lab_result.loinc_code".to_string()),
            (
                "IA Public Health Lab|2.16.840.1.114222.4.3.3.5.1.2-20120314235954.325".to_string(),
                "lab_result.loinc_code".to_string()
            ),
            (
                "NIST Lab Facility|NIST-LRI-NG-002.00-2".to_string(),
                "lab_result.unit".to_string()
            ),
        ]
    );
    assert_eq!(report.committed, extract.events.len() - 3, "their neighbours commit");
    assert_balances("HL7 v2", &extract, &report);
    assert_eq!(
        extract.balance.skipped_total() as usize,
        extract.skipped.values().sum::<usize>()
    );
    assert!(extract.balance.mapped > 0);
    // The four GHH samples share MSH-4 and MSH-10 (GHHSFacility|MSG00001): first commit
    // wins, so their later copies are answered as duplicates and staged once.
    let unique: std::collections::BTreeSet<(&str, &str)> = extract
        .events
        .iter()
        .filter(|e| !rejected.iter().any(|(id, _)| *id == e.event_id))
        .map(|e| (e.source_system.as_str(), e.event_id.as_str()))
        .collect();
    assert!(unique.len() < report.committed, "the samples hold resends");
    assert_eq!(count(&ch, "SELECT count() FROM staging.events"), unique.len() as u64);
    // DG1: ADT01-23's ICD-9-CM 71596 and the stroke (SNOMED CT) of ADT-A03/A08/A28/A31-01;
    // PR1: the colon biopsy (SNOMED CT) of the same four.
    let kinds = |kind: &str| {
        let files = extract
            .events
            .iter()
            .filter(|e| e.payload.as_ref().unwrap().kind() == kind)
            .count() as u64;
        let staged = count(
            &ch,
            &format!("SELECT count() FROM staging.events WHERE kind = '{kind}'"),
        );
        (files, staged)
    };
    // Five DG1 and four PR1 in the files; the GHH copies share ids, so one each is staged.
    assert_eq!((kinds("diagnosis"), kinds("procedure")), ((5, 2), (4, 1)));
    // In the warehouse the four GHH samples are one: they share MSH-4 and MSH-10
    // (GHHSFacility|MSG00001), so their DG1 and PR1 events share ids and are absorbed as
    // resends. ICD codes are stored with their dot.
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(
        query_rows(
            &ch,
            "SELECT source_event_id, code, code_system, role, rank, encounter_id FROM warehouse.fact_diagnosis FINAL \
             WHERE is_deleted = 0 ORDER BY source_event_id",
        ),
        [
            ["1|599102-2", "715.96", "icd9_cm", "admitting", "0", "40007716"],
            [
                "GHHSFacility|MSG00001-2",
                "422504002",
                "snomed_ct",
                "admitting",
                "1",
                "40007716"
            ],
        ]
    );
    assert_eq!(
        query_rows(
            &ch,
            "SELECT source_event_id, code, code_system, performer, duration_minutes FROM warehouse.fact_procedure FINAL \
             WHERE is_deleted = 0",
        ),
        [["GHHSFacility|MSG00001-3", "76164006", "snomed_ct", "121188", "2"]]
    );
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_bundles_load_with_their_counts_and_a_second_load_adds_nothing() {
    let dir = shared_data("synthea_fhir_r4/bundles");
    let extract = load::fhir(&dir).expect("the bundles read");
    assert!(extract.problems.is_empty(), "{:?}", extract.problems);
    // Count what the files hold, independently of the mapper.
    let (mut patients, mut encounters, mut conditions, mut procedures) = (0u64, 0u64, 0u64, 0u64);
    let (mut entries, mut claimed_cents) = (0u64, 0i64);
    for file in std::fs::read_dir(&dir).unwrap() {
        let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().unwrap() {
            entries += 1;
            if entry["resource"]["resourceType"] == "Claim" {
                claimed_cents += (entry["resource"]["total"]["value"].as_f64().unwrap() * 100.0).round() as i64;
            }
            match entry["resource"]["resourceType"].as_str() {
                Some("Patient") => patients += 1,
                Some("Encounter") => encounters += 1,
                Some("Condition") => conditions += 1,
                Some("Procedure") => procedures += 1,
                _ => {}
            }
        }
    }
    assert_eq!((patients, conditions, procedures), (5, 46, 54));

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let report = send_all(platform.local_addr(), &extract).await;
    // One Synthea Procedure carries LOINC 34552-0 (an echocardiogram panel) under the
    // SNOMED CT system, and the door says so by event and field.
    let rejected: Vec<(&str, &str)> = report
        .rejections
        .iter()
        .map(|r| (r.event_id.as_str(), r.violations[0].field.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [("Procedure/65b3556c-764f-49e8-b015-77571cf06896", "procedure.code")]
    );
    assert_eq!(report.committed, extract.events.len() - 1, "its neighbours commit");
    assert_balances("FHIR", &extract, &report);
    assert_eq!(extract.balance.read, entries, "every bundle entry is in the balance");
    assert!(
        extract.notes.is_empty(),
        "every charge line priced: {:?}",
        extract.notes
    );
    run_warehouse_load(platform.local_addr(), false).await;
    let counts = |ch: &hospital_testkit::ClickHouseServer| {
        (
            count(
                ch,
                "SELECT count() FROM warehouse.dim_patient FINAL WHERE is_deleted = 0 AND is_current = 1 AND is_inferred = 0",
            ),
            count(ch, "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_charge FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0"),
            count(ch, "SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0"),
        )
    };
    let first = counts(&ch);
    assert_eq!((first.0, first.1), (patients, encounters));
    assert!(first.2 > 0, "claims become charge lines");
    // The money of the claims arrives whole: unpriced lines took it from the totals.
    assert_eq!(
        count(
            &ch,
            "SELECT toUInt64(sum(amount_minor)) FROM warehouse.fact_charge FINAL WHERE is_deleted = 0"
        ),
        claimed_cents as u64,
        "the charges add up to the Claim totals"
    );
    // Every Condition and every other Procedure passes the door and lands once.
    assert_eq!((first.3, first.4), (conditions, procedures - 1));
    send_all(platform.local_addr(), &extract).await;
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(counts(&ch), first, "a second load adds nothing");
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimic_demo_loads_with_the_tables_counts_and_a_second_load_adds_nothing() {
    let dir = shared_data("mimic3_demo");
    let extract = load::mimic(&dir).expect("the tables read");
    assert!(extract.problems.is_empty(), "{:?}", extract.problems);
    let kinds = |kind: &str| {
        extract
            .events
            .iter()
            .filter(|e| e.payload.as_ref().unwrap().kind() == kind)
            .count() as u64
    };

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let report = send_all(platform.local_addr(), &extract).await;
    // What the door refuses, one event at a time and by field: implausible charted
    // values, and prescriptions whose ENDDATE is before their STARTDATE (both occur in
    // the MIMIC demo).
    let rejected_kind = |field: &str| {
        report
            .rejections
            .iter()
            .filter(|r| r.violations.iter().any(|v| v.field.starts_with(field)))
            .count() as u64
    };
    let (bad_sets, bad_orders) = (rejected_kind("vital_signs."), rejected_kind("medication_order.ends_at"));
    // Every diagnosis and procedure passes: the undotted ICD-9-CM codes, V and E codes
    // included, have their shape.
    assert_eq!(
        bad_sets + bad_orders,
        report.rejections.len() as u64,
        "nothing else is rejected: {:?}",
        report.rejections.iter().take(3).collect::<Vec<_>>()
    );
    assert_balances("MIMIC", &extract, &report);
    // Neither loses its event any more: the implausible reading is set aside from its
    // set and the order kept without its end, each with a warning in the ack.
    let warned = |field: &str| report.warnings.iter().filter(|w| w.field.starts_with(field)).count();
    println!(
        "MIMIC: warnings {:?}",
        report.warnings.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(
        (bad_sets, bad_orders),
        (0, 0),
        "{:?}",
        report.rejections.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(
        warned("medication_order.ends_at"),
        39,
        "MIMIC's prescriptions ending before they start"
    );
    let readings: Vec<&str> = report
        .warnings
        .iter()
        .filter(|w| w.field.starts_with("vital_signs.observations"))
        .map(|w| w.description.as_str())
        .collect();
    println!("MIMIC: readings set aside {readings:?}");
    assert_eq!(
        warned("vital_signs.observations"),
        2,
        "a respiratory rate of 118 and a systolic BP of 11647"
    );
    assert!(readings.iter().any(|d| d.contains("118")), "{readings:?}");
    assert_eq!(report.warnings.len(), 39 + 2);
    let file_rows: u64 = hospital_sources::mimic::MimicFile::ALL
        .iter()
        .map(|f| {
            let path = dir.join(f.file_name());
            let input: Box<dyn std::io::Read> = if f.file_name().ends_with(".gz") {
                Box::new(flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()))
            } else {
                Box::new(std::fs::File::open(&path).unwrap())
            };
            csv::Reader::from_reader(input).records().count() as u64
        })
        .sum();
    assert_eq!(
        extract.balance.read, file_rows,
        "every row of the seven tables is in the balance"
    );
    assert!(extract.balance.superseded_total() > 0 && extract.balance.skipped_total() > 0);
    println!(
        "MIMIC: {} events, {} committed, rejected {bad_sets} vital sets and {bad_orders} orders, skipped {:?}",
        extract.events.len(),
        report.committed,
        extract.skipped
    );
    run_warehouse_load(platform.local_addr(), false).await;

    let q = |sql: &str| count(&ch, sql);
    assert_eq!(
        q("SELECT count() FROM warehouse.dim_patient FINAL WHERE is_deleted = 0 AND is_current = 1 AND is_inferred = 0"),
        100
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"),
        129
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0 AND discharged_at_ms IS NOT NULL"),
        129
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_transfer FINAL WHERE is_deleted = 0"),
        kinds("transfer")
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_medication FINAL WHERE is_deleted = 0"),
        kinds("medication_order") - bad_orders
    );
    // Entries into an ICU as the warehouse holds them: admitted straight to an ICU unit,
    // or moved into one from outside the ICUs. 136 of them start a row of ICUSTAYS.csv
    // (hospital-sources' mimic test matches every ICU stay to one); the other 9 are
    // re-entries that MIMIC counts as part of an existing ICU stay.
    let icu = "('MICU','SICU','CCU','CSRU','TSICU','NICU')";
    let icu_entries = q(&format!(
        "SELECT (SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0 AND admission_department_code IN {icu}) + \
         (SELECT count() FROM warehouse.fact_transfer FINAL WHERE is_deleted = 0 AND to_department_code IN {icu} AND from_department_code NOT IN {icu})"
    ));
    assert_eq!(icu_entries, 136 + 9);
    // The warehouse holds a set by its observations: sets of only GCS or oxygen
    // delivery have no row there.
    let rejected_ids: std::collections::HashSet<&str> = report.rejections.iter().map(|r| r.event_id.as_str()).collect();
    let accepted_sets: Vec<&hospital_proto::events::VitalSigns> = extract
        .events
        .iter()
        .filter(|e| !rejected_ids.contains(e.event_id.as_str()))
        .filter_map(|e| match &e.payload {
            Some(hospital_proto::events::clinical_event::Payload::VitalSigns(v)) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(accepted_sets.len() as u64, kinds("vital_signs") - bad_sets);
    let with_obs = |f: fn(&hospital_proto::events::VitalSigns) -> bool| {
        accepted_sets
            .iter()
            .filter(|v| !v.observations.is_empty() && f(v))
            .count() as u64
    };
    assert_eq!(
        q("SELECT uniqExact(source_event_id) FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0"),
        with_obs(|_| true)
    );
    // NEWS2's consciousness and supplemental oxygen reach the warehouse from MIMIC.
    let (conscious, oxygen) = (
        with_obs(|v| v.consciousness != 0),
        with_obs(|v| v.supplemental_oxygen.is_some()),
    );
    println!("MIMIC: warehouse sets with consciousness {conscious}, with oxygen status {oxygen}");
    assert!(conscious > 1000 && oxygen > 1000);
    assert_eq!(
        q("SELECT uniqExact(source_event_id) FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0 AND consciousness != ''"),
        conscious
    );
    assert_eq!(
        q("SELECT uniqExact(source_event_id) FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0 AND supplemental_oxygen IS NOT NULL"),
        oxygen
    );
    // Every accepted set has its row of NEWS2 inputs, those with only GCS or oxygen too.
    let every =
        |f: fn(&hospital_proto::events::VitalSigns) -> bool| accepted_sets.iter().filter(|v| f(v)).count() as u64;
    assert!(every(|v| v.observations.is_empty()) > 0, "sets of only GCS or oxygen");
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_vital_sign_set FINAL WHERE is_deleted = 0"),
        accepted_sets.len() as u64
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_vital_sign_set FINAL WHERE is_deleted = 0 AND consciousness != ''"),
        every(|v| v.consciousness != 0)
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_vital_sign_set FINAL WHERE is_deleted = 0 AND supplemental_oxygen IS NOT NULL"),
        every(|v| v.supplemental_oxygen.is_some())
    );
    // The drugs the orders use are named from PRESCRIPTIONS (the adapter's catalogue),
    // not inferred placeholders: every NDC of the file, and every code in
    // fact_medication.
    let ndcs: std::collections::BTreeSet<String> = csv_column(&dir.join("PRESCRIPTIONS.csv"), "NDC")
        .into_iter()
        .filter(|n| !n.trim_start_matches('0').is_empty())
        .collect();
    let used = "(SELECT drug_code FROM warehouse.fact_medication FINAL WHERE is_deleted = 0 AND drug_code != '')";
    let named_ndcs = q("SELECT count() FROM warehouse.dim_drug FINAL \
         WHERE code_system = 'NDC' AND is_inferred = 0 AND name != '' AND strength != ''");
    println!(
        "MIMIC: {} distinct NDCs in PRESCRIPTIONS.csv, {named_ndcs} named NDC drugs in dim_drug, {} drug codes in fact_medication",
        ndcs.len(),
        q(&format!("SELECT uniqExact(drug_code) FROM {used}"))
    );
    assert_eq!(named_ndcs, ndcs.len() as u64);
    assert_eq!(
        q(&format!(
            "SELECT count() FROM warehouse.dim_drug FINAL WHERE drug_code IN {used} AND is_inferred = 1"
        )),
        0,
        "no drug an order uses is an inferred placeholder"
    );
    assert_eq!(
        q(&format!(
            "SELECT count() FROM warehouse.dim_drug FINAL WHERE drug_code IN {used} AND is_inferred = 0 AND name != ''"
        )),
        q(&format!("SELECT uniqExact(drug_code) FROM {used}"))
    );

    // Coded diagnoses and procedures: one row per DIAGNOSES_ICD / PROCEDURES_ICD row with
    // a code (rows without one are skipped), at the discharge of their admission. The
    // door writes ICD-9-CM codes with their dot, after three characters (four for E
    // codes) of a diagnosis and two of a procedure, when the code is longer.
    let coded = |file: &str| -> Vec<(String, String)> {
        csv_column(&dir.join(file), "ICD9_CODE")
            .into_iter()
            .zip(csv_column(&dir.join(file), "SEQ_NUM"))
            .filter(|(code, _)| !code.is_empty())
            .collect()
    };
    let (dx, px) = (coded("DIAGNOSES_ICD.csv"), coded("PROCEDURES_ICD.csv"));
    let dx_dotted = dx
        .iter()
        .filter(|(c, _)| c.len() > if c.starts_with('E') { 4 } else { 3 })
        .count() as u64;
    let px_dotted = px.iter().filter(|(c, _)| c.len() > 2).count() as u64;
    let principal = dx.iter().filter(|(_, seq)| seq == "1").count() as u64;
    let (dx_n, px_n) = (dx.len() as u64, px.len() as u64);
    println!(
        "MIMIC: DIAGNOSES_ICD {dx_n} coded rows ({principal} principal, {dx_dotted} dotted), \
         PROCEDURES_ICD {px_n} coded rows ({px_dotted} dotted)"
    );
    let codes = |ch: &hospital_testkit::ClickHouseServer| {
        (
            count(
                ch,
                "SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0",
            ),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0",
            ),
        )
    };
    assert_eq!(codes(&ch), (dx_n, px_n));
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND code_system = 'icd9_cm' AND position(code, '.') > 0"),
        dx_dotted
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0 AND code_system = 'icd9_cm' AND position(code, '.') > 0"),
        px_dotted
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND role = 'principal' AND rank = 1"),
        principal
    );
    assert_eq!(
        q("SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND role = 'secondary' AND rank > 1"),
        dx_n - principal
    );
    let discharges =
        "(SELECT encounter_id, ifNull(discharged_at_ms, -1) FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0)";
    assert_eq!(
        q(&format!(
            "SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 AND (encounter_id, onset_at_ms) IN {discharges}"
        )),
        dx_n
    );
    assert_eq!(
        q(&format!(
            "SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0 AND (encounter_id, started_at_ms) IN {discharges}"
        )),
        px_n
    );

    // The same tables again: staged again, absorbed by the warehouse.
    let everything = |ch: &hospital_testkit::ClickHouseServer| {
        (
            codes(ch),
            count(
                ch,
                "SELECT count() FROM warehouse.dim_patient FINAL WHERE is_deleted = 0 AND is_current = 1",
            ),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0",
            ),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_transfer FINAL WHERE is_deleted = 0",
            ),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_medication FINAL WHERE is_deleted = 0",
            ),
            count(
                ch,
                "SELECT count() FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0",
            ),
        )
    };
    let first = everything(&ch);
    send_all(platform.local_addr(), &extract).await;
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(everything(&ch), first, "a second load adds nothing");
    platform.shutdown().await.unwrap();
}
