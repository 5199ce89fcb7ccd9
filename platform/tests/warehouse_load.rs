//! The batch stage against a real ClickHouse (hospital-testkit): staging -> warehouse
//! with duplicates, out-of-order and late events, a corrupt payload, replays, a full
//! reload, a simulated crash (watermark and registry lost), and an incremental load.

mod common;

use common::{staged, StagingHarness};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hospital_platform::batch::{RunSummary, WarehouseLoader};
use hospital_platform::db;
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{self as pb, reference_data::Item, ClinicalEvent};
use tokio::sync::mpsc;

/// 2024-03-01T08:00:00Z.
const T0: i64 = 1_709_280_000;
const MIN: i64 = 60;
const HOUR: i64 = 3_600;

// ---------------------------------------------------------------------------------
// Hand-built canonical events

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn ev(source: &str, id: impl Into<String>, at: i64, mrn: Option<&str>, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id.into(),
        source_system: source.into(),
        occurred_at: Some(ts(at)),
        patient: mrn.map(|m| pb::PatientRef {
            mrn: m.into(),
            assigning_authority: "city-hospital".into(),
        }),
        payload: Some(payload),
    }
}

fn loc(dept: &str, ward: &str, bed: &str) -> Option<pb::Location> {
    Some(pb::Location {
        department_code: dept.into(),
        ward_code: ward.into(),
        bed_code: bed.into(),
    })
}

fn demographics(family: &str, postal: &str) -> pb::PatientDemographics {
    pb::PatientDemographics {
        given_name: "Alex".into(),
        family_name: family.into(),
        birth_date: Some(pb::Date {
            year: 1948,
            month: 5,
            day: 17,
        }),
        sex: pb::AdministrativeSex::Female as i32,
        postal_code: postal.into(),
        deceased_at: None,
    }
}

fn reference(id: &str, at: i64, item: Item) -> ClinicalEvent {
    ev(
        "ref-data",
        id,
        at,
        None,
        Payload::ReferenceData(pb::ReferenceData { item: Some(item) }),
    )
}

fn drug(code: &str, name: &str) -> Item {
    Item::Drug(pb::Drug {
        code: code.into(),
        code_system: "rxnorm".into(),
        name: name.into(),
        drug_class: "analgesic".into(),
        form: "tablet".into(),
        strength: "500 mg".into(),
    })
}

/// What the test staged, to compute expected counts from.
#[derive(Default)]
struct Expect {
    patients: BTreeSet<String>,
    registered: BTreeSet<String>,
    encounters: BTreeSet<String>,
    transfers: u64,
    vital_rows: u64,
    labs: u64,
    meds: u64,
    charges: u64,
    charge_total: i64,
    bed_status: u64,
    fact_dates: BTreeSet<String>,
}

impl Expect {
    fn fact_date(&mut self, at: i64) {
        let days = at.div_euclid(86_400);
        self.fact_dates.insert(days.to_string());
    }
}

/// One encounter per patient: ED arrival, triage, admission, (transfer), vitals, labs,
/// medication order/dispense/administration, charges, discharge.
fn encounter_events(i: usize, start: i64, exp: &mut Expect) -> Vec<ClinicalEvent> {
    let mrn = format!("MRN{i:03}");
    let enc = format!("ENC{i:03}");
    let m = Some(mrn.as_str());
    exp.patients.insert(mrn.clone());
    exp.encounters.insert(enc.clone());
    let ward = ["W1", "W2"][i % 2];
    let mut out = vec![
        ev(
            "ed-system",
            format!("arr-{i}"),
            start,
            m,
            Payload::EdArrival(pb::EdArrival {
                encounter_id: enc.clone(),
                arrival_mode: pb::ArrivalMode::Ambulance as i32,
                chief_complaint: "shortness of breath".into(),
                department_code: "ED".into(),
            }),
        ),
        ev(
            "ed-system",
            format!("tri-{i}"),
            start + 15 * MIN,
            m,
            Payload::EdTriage(pb::EdTriage {
                encounter_id: enc.clone(),
                acuity: 2 + (i as u32 % 3),
            }),
        ),
        ev(
            "epic-adt",
            format!("adm-{i}"),
            start + 3 * HOUR,
            m,
            Payload::Admission(pb::Admission {
                encounter_id: enc.clone(),
                encounter_class: pb::EncounterClass::Inpatient as i32,
                admission_type: pb::AdmissionType::Emergency as i32,
                location: loc("MED", ward, &format!("B{}", i % 6)),
                attending_practitioner: "dr-house".into(),
                payer_code: ["SELF", "NHS", "NHS"][i % 3].into(),
                admitting_diagnosis: "J18.9".into(),
            }),
        ),
    ];
    // Every fourth encounter moves to intensive care.
    if matches!(i % 4, 0) {
        out.push(ev(
            "epic-adt",
            format!("xfer-{i}"),
            start + 20 * HOUR,
            m,
            Payload::Transfer(pb::Transfer {
                encounter_id: enc.clone(),
                from: loc("MED", ward, &format!("B{}", i % 6)),
                to: loc("ICU", "ICU1", "B1"),
            }),
        ));
        exp.transfers += 1;
        exp.fact_date(start + 20 * HOUR);
    }
    for s in 0..3 {
        let at = start + 4 * HOUR + s * 4 * HOUR;
        out.push(ev(
            "monitor",
            format!("vs-{i}-{s}"),
            at,
            m,
            Payload::VitalSigns(pb::VitalSigns {
                encounter_id: enc.clone(),
                observations: vec![
                    obs("8867-4", 80.0 + s as f64, "/min"),
                    obs("9279-1", 18.0, "/min"),
                    obs("8480-6", 120.0, "mm[Hg]"),
                    obs("8310-5", 37.1, "Cel"),
                ],
                consciousness: pb::Consciousness::Alert as i32,
                supplemental_oxygen: if s == 0 { None } else { Some(s == 2) },
                ..Default::default()
            }),
        ));
        exp.vital_rows += 4;
        exp.fact_date(at);
    }
    for l in 0..2 {
        let at = start + 5 * HOUR + l * HOUR;
        out.push(ev(
            "lab-lis",
            format!("lab-{i}-{l}"),
            at,
            m,
            Payload::LabResult(pb::LabResult {
                encounter_id: enc.clone(),
                order_id: format!("LO-{i}-{l}"),
                loinc_code: "2160-0".into(),
                display: "Creatinine".into(),
                value: Some(1.1),
                value_text: String::new(),
                unit: "mg/dL".into(),
                reference_low: Some(0.6),
                reference_high: Some(1.2),
                abnormal_flag: pb::AbnormalFlag::Normal as i32,
                specimen_collected_at: Some(ts(at - 45 * MIN)),
                ..Default::default()
            }),
        ));
        exp.labs += 1;
        exp.fact_date(at);
    }
    let drug_code = ["161", "UNLISTED-9"][i % 2];
    out.push(ev(
        "pharmacy",
        format!("mo-{i}"),
        start + 4 * HOUR,
        m,
        Payload::MedicationOrder(pb::MedicationOrder {
            order_id: format!("MO-{i}"),
            encounter_id: enc.clone(),
            drug_code: drug_code.into(),
            drug_name: "as ordered".into(),
            dose_value: 500.0,
            dose_unit: "mg".into(),
            route: "PO".into(),
            frequency: "QID".into(),
            starts_at: Some(ts(start + 4 * HOUR)),
            ends_at: None,
        }),
    ));
    for (k, payload) in [
        (
            "md",
            Payload::MedicationDispense(pb::MedicationEvent {
                order_id: format!("MO-{i}"),
                encounter_id: enc.clone(),
                drug_code: drug_code.into(),
                dose_value: 500.0,
                dose_unit: "mg".into(),
                route: "PO".into(),
            }),
        ),
        (
            "ma",
            Payload::MedicationAdministration(pb::MedicationEvent {
                order_id: format!("MO-{i}"),
                encounter_id: enc.clone(),
                drug_code: drug_code.into(),
                dose_value: 500.0,
                dose_unit: "mg".into(),
                route: "PO".into(),
            }),
        ),
    ] {
        out.push(ev("pharmacy", format!("{k}-{i}"), start + 5 * HOUR, m, payload));
    }
    exp.meds += 3;
    exp.fact_date(start + 4 * HOUR);
    exp.fact_date(start + 5 * HOUR);
    for c in 0..2i64 {
        let (quantity, price) = (1.5 + c as f64, 12_345 + c);
        out.push(ev(
            "billing",
            format!("chg-{i}-{c}"),
            start + 30 * HOUR,
            m,
            Payload::ChargeLine(pb::ChargeLine {
                charge_id: format!("C-{i}-{c}"),
                encounter_id: enc.clone(),
                code: "99223".into(),
                description: "Initial hospital care".into(),
                quantity,
                unit_price_minor: price,
                currency: "GBP".into(),
                payer_code: "NHS".into(),
            }),
        ));
        exp.charges += 1;
        exp.charge_total += (quantity * price as f64).round() as i64;
    }
    exp.fact_date(start + 30 * HOUR);
    out.push(ev(
        "epic-adt",
        format!("dis-{i}"),
        start + 3 * HOUR + 48 * HOUR,
        m,
        Payload::Discharge(pb::Discharge {
            encounter_id: enc,
            disposition: pb::DischargeDisposition::Home as i32,
        }),
    ));
    for at in [start, start + 15 * MIN, start + 3 * HOUR, start + 51 * HOUR] {
        exp.fact_date(at);
    }
    out
}

fn obs(loinc: &str, value: f64, unit: &str) -> pb::Observation {
    pb::Observation {
        loinc_code: loinc.into(),
        value,
        unit: unit.into(),
    }
}

// ---------------------------------------------------------------------------------
// Harness

impl StagingHarness {
    fn count(&self, sql: &str) -> u64 {
        let out = self.ch.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
    }

    fn text(&self, sql: &str) -> String {
        self.ch
            .query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .trim()
            .to_string()
    }

    /// Live rows of every warehouse table.
    fn counts(&self) -> BTreeMap<&'static str, u64> {
        let live = |t: &str| format!("SELECT count() FROM warehouse.{t} FINAL WHERE is_deleted = 0");
        let all = |t: &str| format!("SELECT count() FROM warehouse.{t} FINAL");
        [
            ("dim_patient", live("dim_patient")),
            (
                "dim_patient_inferred",
                format!("{} AND is_inferred = 1", live("dim_patient")),
            ),
            (
                "dim_patient_current",
                format!("{} AND is_current = 1", live("dim_patient")),
            ),
            ("dim_location", all("dim_location")),
            ("dim_drug", all("dim_drug")),
            ("dim_payer", all("dim_payer")),
            ("dim_date", all("dim_date")),
            ("fact_encounter", live("fact_encounter")),
            ("fact_transfer", live("fact_transfer")),
            ("fact_vital_sign", live("fact_vital_sign")),
            ("fact_lab_result", live("fact_lab_result")),
            ("fact_medication", live("fact_medication")),
            ("fact_charge", live("fact_charge")),
            ("fact_bed_status", live("fact_bed_status")),
            (
                "event_registry",
                "SELECT uniqExact(source_system, event_id) FROM warehouse.event_registry".into(),
            ),
            ("load_errors", all("load_errors")),
            ("patient_identity", all("patient_identity")),
        ]
        .into_iter()
        .map(|(name, sql)| (name, self.count(&sql)))
        .collect()
    }
}

async fn run(loader: &WarehouseLoader, full_reload: bool) -> RunSummary {
    loader.run(full_reload, None).await.expect("warehouse load")
}

// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_to_warehouse_is_incremental_and_idempotent() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let h = StagingHarness::start().await;
    let mut exp = Expect::default();

    // --- round 1 ------------------------------------------------------------------
    let mut round1: Vec<ClinicalEvent> = vec![
        reference("ref-ward-1", T0 - 10 * 86_400, Item::Ward(ward("W1", "Ward One", 6))),
        reference("ref-ward-2", T0 - 10 * 86_400, Item::Ward(ward("W2", "Ward Two", 6))),
        reference("ref-drug-161-new", T0 - 86_400, drug("161", "Paracetamol")),
        // Older reference staged after the newer one: must not win.
        reference("ref-drug-161-old", T0 - 5 * 86_400, drug("161", "Acetaminophen (old)")),
        reference("ref-drug-ibu", T0 - 5 * 86_400, drug("5640", "Ibuprofen")),
        reference(
            "ref-payer-nhs",
            T0 - 5 * 86_400,
            Item::Payer(pb::Payer {
                code: "NHS".into(),
                name: "National Health Service".into(),
                payer_type: "public".into(),
            }),
        ),
    ];
    let patients = 24;
    for i in 0..patients {
        let mrn = format!("MRN{i:03}");
        round1.push(ev(
            "epic-adt",
            format!("reg-{i}"),
            T0 - 30 * 86_400 + i as i64,
            Some(&mrn),
            Payload::PatientRegistered(demographics("Original", "AB1 2CD")),
        ));
        exp.registered.insert(mrn);
    }
    // Patient 0: the third version (t0 + 20 d) now; the second (t0 + 10 d) arrives late.
    round1.push(ev(
        "epic-adt",
        "upd-0-b",
        T0 - 10 * 86_400,
        Some("MRN000"),
        Payload::PatientUpdated(demographics("Married", "ZZ9 9ZZ")),
    ));
    // Patient 1: an update that changes nothing collapses into the registration.
    round1.push(ev(
        "epic-adt",
        "upd-1",
        T0 - 20 * 86_400,
        Some("MRN001"),
        Payload::PatientUpdated(demographics("Original", "AB1 2CD")),
    ));
    let mut enc_events: Vec<ClinicalEvent> = Vec::new();
    for i in 0..patients {
        enc_events.extend(encounter_events(i, T0 + i as i64 * HOUR, &mut exp));
    }
    // Encounter 0: discharge staged before everything else of the encounter.
    let dis0 = enc_events.iter().position(|e| e.event_id == "dis-0").unwrap();
    let dis0 = enc_events.remove(dis0);
    round1.push(dis0);
    round1.extend(enc_events);
    // A patient only seen in vitals: an inferred member.
    round1.push(ev(
        "monitor",
        "vs-walkin",
        T0 + 2 * HOUR,
        Some("MRN-WALKIN"),
        Payload::VitalSigns(pb::VitalSigns {
            encounter_id: "ENC-WALKIN".into(),
            observations: vec![obs("8867-4", 101.0, "/min")],
            consciousness: pb::Consciousness::Alert as i32,
            supplemental_oxygen: None,
            ..Default::default()
        }),
    ));
    exp.patients.insert("MRN-WALKIN".into());
    exp.vital_rows += 1;
    exp.fact_date(T0 + 2 * HOUR);
    for b in 0..10 {
        let at = T0 + b * 30 * MIN;
        round1.push(ev(
            "bed-board",
            format!("bed-{b}"),
            at,
            None,
            Payload::BedStatus(pb::BedStatus {
                location: loc("MED", "W3", &format!("B{b}")),
                state: pb::BedState::Cleaning as i32,
            }),
        ));
        exp.bed_status += 1;
        exp.fact_date(at);
    }
    let unique_round1 = round1.len() as u64;

    // Resends: every 7th event again, within the same commit and in a later one.
    let resends: Vec<ClinicalEvent> = round1.iter().step_by(7).cloned().collect();
    let (first_half, second_half) = round1.split_at(round1.len() / 2);
    let mut commit_a: Vec<ClinicalEvent> = first_half.to_vec();
    commit_a.extend(resends.iter().take(5).cloned());
    h.stage(&commit_a).await;
    h.stage(second_half).await;
    // Resends with a changed payload: the first staged copy wins.
    let mut changed_resends = resends.clone();
    for e in &mut changed_resends {
        e.occurred_at = Some(ts(T0 + 999 * 86_400));
    }
    h.stage(&changed_resends).await;
    // A corrupt payload: recorded in load_errors, the rest goes on.
    let mut corrupt = staged(&round1[5]);
    corrupt.event_id = "corrupt-1".into();
    corrupt.payload = vec![0x0a, 0xff, 0xff, 0xff];
    let committed = h.stage_rows(vec![corrupt]).await;
    // The staging writer answers every resend as a duplicate of its first copy and stages
    // none of them (first commit wins), so the warehouse load finds none to drop; its
    // own dedup by (source_system, event_id) stays for staging written before that rule.
    assert_eq!(
        h.ch.query("SELECT count() FROM staging.events").unwrap().trim(),
        (unique_round1 + 1).to_string()
    );
    let dups_round1 = 0;
    let staged_round1 = unique_round1 + dups_round1 + 1;
    assert!(unique_round1 > 300, "a few hundred events: {unique_round1}");

    let loader = WarehouseLoader::new(
        &hospital_platform::db::Databases::new(&h.cfg),
        h.handle().subscribe_committed(),
        37,
    );
    let (tx, mut rx) = mpsc::channel(10_000);
    let first = loader.run(false, Some(tx)).await.expect("first load");
    assert_eq!(first.from_position, 0);
    assert_eq!(first.to_position, committed);
    assert_eq!(first.events_read, staged_round1);
    assert_eq!(first.events_loaded, unique_round1);
    assert_eq!(first.duplicates_dropped, dups_round1);
    assert_eq!(first.load_errors, 1);
    // A final full chunk is followed by an empty one that finds nothing more.
    assert_eq!(first.chunks, staged_round1 / 37 + 1);
    let mut messages = Vec::new();
    while let Ok(m) = rx.try_recv() {
        messages.push(m);
    }
    let last = messages.last().expect("progress messages");
    assert!(last.done && last.stage == "done", "{last:?}");
    assert_eq!(messages.iter().filter(|m| m.done).count(), 1);
    assert_eq!(
        messages.iter().filter(|m| m.stage == "read_staging").count() as u64,
        first.chunks,
        "one message per stage per chunk"
    );
    assert_eq!(
        messages.iter().filter(|m| m.stage == "dim_patient").count() as u64,
        staged_round1.div_ceil(37)
    );
    assert_eq!(last.staged_events_read, staged_round1);

    let counts1 = h.counts();
    let expected_patients = exp.patients.len() as u64;
    // Patient 0 has two versions so far (registration, update); patient 1 one.
    assert_eq!(counts1["dim_patient"], expected_patients + 1);
    assert_eq!(counts1["dim_patient_current"], expected_patients);
    assert_eq!(counts1["dim_patient_inferred"], 1);
    assert_eq!(counts1["patient_identity"], expected_patients);
    assert_eq!(counts1["fact_encounter"], exp.encounters.len() as u64);
    assert_eq!(counts1["fact_transfer"], exp.transfers);
    assert_eq!(counts1["fact_vital_sign"], exp.vital_rows);
    assert_eq!(counts1["fact_lab_result"], exp.labs);
    assert_eq!(counts1["fact_medication"], exp.meds);
    assert_eq!(counts1["fact_charge"], exp.charges);
    assert_eq!(counts1["fact_bed_status"], exp.bed_status);
    assert_eq!(counts1["dim_date"], exp.fact_dates.len() as u64);
    assert_eq!(counts1["event_registry"], unique_round1);
    assert_eq!(counts1["load_errors"], 1);
    // 161 and 5640 from reference data, UNLISTED-9 inferred from orders.
    assert_eq!(counts1["dim_drug"], 3);
    // NHS from reference data, SELF inferred from admissions.
    assert_eq!(counts1["dim_payer"], 2);
    // ED; MED, W1, W2 and the 6 beds admitted to (W1: B0 B2 B4, W2: B1 B3 B5); ICU,
    // ICU1, ICU1/B1 from transfers; W3 and its 10 beds from bed status.
    assert_eq!(counts1["dim_location"], 1 + 1 + 2 + 6 + 3 + 1 + 10);
    assert_eq!(
        h.count("SELECT sum(amount_minor) FROM warehouse.fact_charge FINAL WHERE is_deleted = 0") as i64,
        exp.charge_total
    );

    // Out of order: encounter 0's discharge came first; the snapshot is complete.
    assert_eq!(
        h.text(
            "SELECT encounter_class, ed_wait_minutes, ed_length_of_stay_minutes, length_of_stay_hours, \
             transfer_count, ward_code, bed_code, discharge_disposition, acuity \
             FROM warehouse.fact_encounter FINAL WHERE encounter_id = 'ENC000'"
        ),
        "inpatient\t15\t180\t48\t1\tICU1\tB1\thome\t2"
    );
    // The first staged copy wins over a resend with another time.
    assert_eq!(
        h.count("SELECT count() FROM warehouse.event_registry WHERE occurred_at_ms > 1750000000000"),
        0
    );
    assert_eq!(
        h.count("SELECT count() FROM warehouse.fact_vital_sign FINAL WHERE taken_at_ms > 1750000000000"),
        0
    );
    // SCD1: the newer drug name holds although the older reference was staged later.
    assert_eq!(
        h.text("SELECT name, is_inferred FROM warehouse.dim_drug FINAL WHERE drug_code = '161'"),
        "Paracetamol\t0"
    );
    assert_eq!(
        h.text(
            "SELECT department_code, ward_name, is_inferred FROM warehouse.dim_location FINAL \
             WHERE ward_code = 'W1' AND bed_code = 'B0'"
        ),
        "MED\tWard One\t0"
    );
    // Every fact joins to a patient version valid at its time.
    assert_eq!(
        h.count(
            "SELECT count() FROM warehouse.fact_vital_sign FINAL \
             ANY LEFT JOIN (SELECT patient_key, 1 AS found FROM warehouse.dim_patient FINAL \
             WHERE is_deleted = 0 AND is_current = 1) AS d USING patient_key WHERE found = 0"
        ),
        0
    );

    // --- replays change nothing -----------------------------------------------------
    let again = run(&loader, false).await;
    assert_eq!((again.events_read, again.chunks), (0, 0));
    assert_eq!(h.counts(), counts1);

    let reload = run(&loader, true).await;
    assert_eq!(reload.events_read, staged_round1);
    assert_eq!(reload.events_loaded, unique_round1);
    assert_eq!(reload.duplicates_dropped, dups_round1);
    assert_eq!(h.counts(), counts1);
    assert_eq!(
        reload.rows_written.get("dim_patient").copied().unwrap_or(0),
        0,
        "unchanged versions are not rewritten"
    );
    assert_eq!(reload.rows_written.get("fact_encounter").copied().unwrap_or(0), 0);

    // A crash that lost the watermark and the registry: the redo changes nothing.
    h.text(&format!(
        "INSERT INTO warehouse.load_watermark (pipeline, position, run_id, updated_at, version) \
         VALUES ('staging_to_warehouse', 0, 'crash', now(), {})",
        u64::MAX / 2
    ));
    h.text("TRUNCATE TABLE warehouse.event_registry");
    let redo = run(&loader, false).await;
    assert_eq!(redo.events_loaded, unique_round1);
    assert_eq!(h.counts(), counts1);

    // --- round 2: only the new events are added --------------------------------------
    let mut exp2 = Expect::default();
    let mut round2 = vec![
        // The late demographic version of patient 0, between registration and update.
        ev(
            "epic-adt",
            "upd-0-a",
            T0 - 20 * 86_400,
            Some("MRN000"),
            Payload::PatientUpdated(demographics("Maiden", "AB1 2CD")),
        ),
        // The walk-in registers: the inferred member becomes a real one in place.
        ev(
            "epic-adt",
            "reg-walkin",
            T0 + 3 * HOUR,
            Some("MRN-WALKIN"),
            Payload::PatientRegistered(demographics("Walker", "WK1 1AA")),
        ),
        reference("ref-drug-unlisted", T0, drug("UNLISTED-9", "Now listed")),
    ];
    round2.extend(encounter_events(100, T0 + 40 * HOUR, &mut exp2));
    // Resends: answered as duplicates by the staging writer, never staged.
    round2.extend(resends.iter().take(3).cloned());
    let good = ev(
        "bed-board",
        "bed-late",
        T0,
        None,
        Payload::BedStatus(pb::BedStatus {
            location: loc("MED", "W3", "B0"),
            state: pb::BedState::Available as i32,
        }),
    );
    h.stage_rows(vec![staged(&good)]).await;
    let committed2 = h.stage(&round2).await;
    let second = run(&loader, false).await;
    assert_eq!(second.from_position, committed);
    assert_eq!(second.to_position, committed2);
    assert_eq!(second.events_read, round2.len() as u64 - 3 + 1);
    assert_eq!(second.duplicates_dropped, 0);
    assert_eq!(second.load_errors, 0);
    assert_eq!(second.events_loaded, round2.len() as u64 - 3 + 1);

    let counts2 = h.counts();
    let mut expected2 = counts1.clone();
    // Patient 0 gains a version; the walk-in's inferred member becomes a real one in
    // place; MRN100 (never registered) is a new inferred member.
    *expected2.get_mut("dim_patient").unwrap() += 2;
    *expected2.get_mut("dim_patient_current").unwrap() += 1;
    *expected2.get_mut("patient_identity").unwrap() += 1;
    *expected2.get_mut("fact_encounter").unwrap() += 1;
    *expected2.get_mut("fact_transfer").unwrap() += exp2.transfers;
    *expected2.get_mut("fact_vital_sign").unwrap() += exp2.vital_rows;
    *expected2.get_mut("fact_lab_result").unwrap() += exp2.labs;
    *expected2.get_mut("fact_medication").unwrap() += exp2.meds;
    *expected2.get_mut("fact_charge").unwrap() += exp2.charges;
    *expected2.get_mut("fact_bed_status").unwrap() += 1;
    *expected2.get_mut("event_registry").unwrap() += round2.len() as u64 - 3 + 1;
    let new_dates = exp2.fact_dates.difference(&exp.fact_dates).count() as u64;
    *expected2.get_mut("dim_date").unwrap() += new_dates;
    assert_eq!(counts2, expected2);

    // Patient 0's history, in occurred_at order although staged out of it.
    assert_eq!(
        h.text(
            "SELECT groupArray(family_name) FROM (SELECT family_name FROM warehouse.dim_patient FINAL \
             WHERE is_deleted = 0 AND source_event_id IN ('reg-0', 'upd-0-a', 'upd-0-b') \
             ORDER BY valid_from_ms)"
        ),
        "['Original','Maiden','Married']"
    );
    assert_eq!(
        h.count(
            "SELECT count() FROM warehouse.dim_patient FINAL WHERE is_deleted = 0 \
             AND source_event_id IN ('reg-0', 'upd-0-a', 'upd-0-b') AND is_current = 1 \
             AND family_name = 'Married' AND valid_to_ms = 253402300799999"
        ),
        1
    );
    assert_eq!(
        h.text(
            "SELECT family_name, is_inferred, valid_from_ms FROM warehouse.dim_patient FINAL \
             WHERE is_deleted = 0 AND source_event_id = 'reg-walkin'"
        ),
        "Walker\t0\t-62135596800000"
    );
    assert_eq!(
        h.text("SELECT name, is_inferred FROM warehouse.dim_drug FINAL WHERE drug_code = 'UNLISTED-9'"),
        "Now listed\t0"
    );

    // Replaying round 2 changes nothing either.
    run(&loader, true).await;
    assert_eq!(h.counts(), counts2);

    // --- status ------------------------------------------------------------------------
    let status = loader.status().await.expect("status");
    assert_eq!(status.watermark, committed2);
    assert_eq!(status.staged_position, committed2);
    assert!(status.last_run_at.is_some() && !status.last_run_id.is_empty());
    // Rows stored (from system.parts, without reading the tables): after the full
    // reloads, the replaced versions not merged yet are counted too ...
    let stored = |t: &str| h.count(&format!("SELECT count() FROM warehouse.{t}"));
    assert_eq!(status.table_rows.len(), 19);
    for table in ["fact_vital_sign", "dim_patient", "event_registry", "dim_date"] {
        assert_eq!(status.table_rows[table], stored(table), "{table}");
    }
    // A replaced version not merged yet (merges stopped so that none runs meanwhile).
    h.text("SYSTEM STOP MERGES warehouse.fact_vital_sign");
    h.text("INSERT INTO warehouse.fact_vital_sign SELECT * FROM warehouse.fact_vital_sign FINAL LIMIT 1");
    let status = loader.status().await.expect("status");
    assert_eq!(status.table_rows["fact_vital_sign"], stored("fact_vital_sign"));
    assert!(status.table_rows["fact_vital_sign"] > counts2["fact_vital_sign"]);
    h.text("SYSTEM START MERGES warehouse.fact_vital_sign");
    // ... and once merged, the live rows.
    for table in ["fact_vital_sign", "dim_patient", "fact_encounter", "dim_date"] {
        h.text(&format!("OPTIMIZE TABLE warehouse.{table} FINAL"));
    }
    let status = loader.status().await.expect("status");
    for table in ["fact_vital_sign", "dim_patient", "fact_encounter", "dim_date"] {
        assert_eq!(status.table_rows[table], counts2[table], "{table}");
    }

    // A progress receiver that went away does not fail the run.
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    h.stage(&[reference(
        "ref-payer-late",
        T0,
        Item::Payer(pb::Payer {
            code: "SELF".into(),
            name: "Self pay".into(),
            payer_type: "self-pay".into(),
        }),
    )])
    .await;
    let last = loader.run(false, Some(tx)).await.expect("load with a gone receiver");
    assert_eq!(last.events_loaded, 1);
    assert_eq!(
        h.text("SELECT name, is_inferred FROM warehouse.dim_payer FINAL WHERE payer_code = 'SELF'"),
        "Self pay\t0"
    );

    h.writer.shutdown().await;
}

fn ward(code: &str, name: &str, beds: u32) -> pb::Ward {
    pb::Ward {
        department_code: "MED".into(),
        department_name: "Medicine".into(),
        ward_code: code.into(),
        ward_name: name.into(),
        bed_count: beds,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_lookups_of_long_keys_fit_in_queries() {
    use hospital_platform::warehouse::bookkeeping::{register, registered_positions, RegistryEntry};
    let h = StagingHarness::start().await;
    let client = db::client_for(&h.cfg, "warehouse");
    // 2,500 keys of 2 x 128 characters: far beyond the default 256 KiB max_query_size if
    // sent in one query.
    let source = "s".repeat(128);
    let entries: Vec<RegistryEntry> = (0..2_500u64)
        .map(|i| RegistryEntry::new(&source, &format!("{i:0>128}"), i + 1, "vital_signs", 0))
        .collect();
    register(&client, &entries).await.expect("register");
    let keys: Vec<(String, String)> = entries
        .iter()
        .map(|e| (e.source_system.clone(), e.event_id.clone()))
        .chain(std::iter::once((source.clone(), "not-registered".to_string())))
        .collect();
    let found = registered_positions(&client, &keys).await.expect("lookup");
    assert_eq!(found.len(), 2_500);
    assert_eq!(found[&(source.clone(), format!("{:0>128}", 41))], 42);
    h.writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_loads_until_shutdown() {
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let h = StagingHarness::start().await;
    let loader = Arc::new(WarehouseLoader::new(
        &hospital_platform::db::Databases::new(&h.cfg),
        h.handle().subscribe_committed(),
        1_000,
    ));
    let shutdown = CancellationToken::new();
    let schedule =
        hospital_platform::batch::spawn_schedule(loader.clone(), Duration::from_millis(100), shutdown.clone());
    let mut exp = Expect::default();
    let committed = h.stage(&encounter_events(7, T0, &mut exp)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = loader.status().await.expect("status");
        if status.watermark == committed {
            assert_eq!(status.table_rows["fact_vital_sign"], exp.vital_rows);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "schedule did not load: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), schedule)
        .await
        .expect("schedule stops on shutdown")
        .expect("schedule task");
    h.writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_fails_is_finished_by_the_next_run() {
    let mut h = StagingHarness::start().await;
    let loader = WarehouseLoader::new(
        &hospital_platform::db::Databases::new(&h.cfg),
        h.handle().subscribe_committed(),
        10,
    );
    let mut exp = Expect::default();
    let committed = h.stage(&encounter_events(3, T0, &mut exp)).await;

    h.ch.kill().expect("kill ClickHouse");
    let (tx, mut rx) = mpsc::channel(1_000);
    let err = loader.run(false, Some(tx)).await.expect_err("no ClickHouse, no load");
    assert!(
        matches!(err, hospital_platform::error::Error::Unavailable(_)),
        "retryable: {err}"
    );
    let mut last = None;
    while let Ok(m) = rx.try_recv() {
        last = Some(m);
    }
    let last = last.expect("a final progress message");
    assert!(last.done && last.message.starts_with("failed"), "{last:?}");

    h.ch.restart().expect("restart ClickHouse");
    let summary = run(&loader, false).await;
    assert_eq!((summary.from_position, summary.to_position), (0, committed));
    let counts = h.counts();
    assert_eq!(counts["fact_vital_sign"], exp.vital_rows);
    assert_eq!(counts["fact_encounter"], 1);
    assert_eq!(counts["dim_patient_inferred"], 1);
    h.writer.shutdown().await;
}

/// Throughput of a load with the default chunk size (run with `--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn load_throughput() {
    let h = StagingHarness::start().await;
    let mut exp = Expect::default();
    let mut events = Vec::new();
    for i in 0..4_000 {
        events.extend(encounter_events(i, T0 + i as i64 * MIN, &mut exp));
    }
    for batch in events.chunks(50_000) {
        h.stage(batch).await;
    }
    let loader = WarehouseLoader::new(
        &hospital_platform::db::Databases::new(&h.cfg),
        h.handle().subscribe_committed(),
        100_000,
    );
    let started = std::time::Instant::now();
    let first = run(&loader, false).await;
    let took = started.elapsed();
    let started = std::time::Instant::now();
    let reload = run(&loader, true).await;
    let reload_took = started.elapsed();
    println!(
        "load: {} events, {} rows in {:.2?} ({:.0} events/s); full reload {:.2?}",
        first.events_loaded,
        first.total_rows_written(),
        took,
        first.events_loaded as f64 / took.as_secs_f64(),
        reload_took
    );
    assert_eq!(reload.events_loaded, first.events_loaded);
    assert_eq!(h.counts()["fact_vital_sign"], exp.vital_rows);
    h.writer.shutdown().await;
}
