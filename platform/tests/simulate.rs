//! The simulator end to end: ten days of the simulated hospital up to now (after a week
//! of warm-up, so it starts full with a go-live snapshot), streamed through gRPC ingest,
//! land whole in the warehouse (every event accepted at the door, every encounter,
//! charge, diagnosis, procedure and result counted), give the census the hospital's
//! state at the end, and raise NEWS2 alerts for its deteriorations.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use hospital_client::sender::{send_events, SenderOptions};
use hospital_client::simulate::{count_by_kind, SimOptions, Simulator};
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::realtime::census_service_client::CensusServiceClient;
use hospital_proto::realtime::GetCensusRequest;

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_simulated_days_land_whole_and_drive_census_and_alerts() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let now = now_secs();
    let start = (now - 10 * DAY).div_euclid(DAY) * DAY;
    let mut sim = Simulator::new(SimOptions {
        seed: 5,
        start_secs: start,
        end_secs: Some(now - 60),
        warm_up_days: 7,
        ..Default::default()
    });
    let events: Vec<_> = sim.by_ref().collect();
    let stats = sim.stats();
    let kinds = count_by_kind(&events);
    println!("{stats:?}\n{kinds:?}");

    let report = send_events(
        events.clone(),
        &SenderOptions {
            endpoint: endpoint(platform.local_addr()),
            batch_size: 2_000,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .expect("send");
    let reasons: Vec<_> = report.rejections.iter().take(5).collect();
    assert!(
        report.rejections.is_empty(),
        "{} rejected: {reasons:?}",
        report.rejections.len()
    );
    assert_eq!(report.committed, events.len());

    run_warehouse_load(platform.local_addr(), false).await;
    let n = |sql: &str| count(&ch, sql);
    let kind = |k: &str| kinds.get(k).copied().unwrap_or(0);
    let mut encounters = BTreeSet::new();
    for e in &events {
        match &e.payload {
            Some(Payload::EdArrival(a)) => encounters.insert(a.encounter_id.clone()),
            Some(Payload::Admission(a)) => encounters.insert(a.encounter_id.clone()),
            _ => false,
        };
    }
    assert_eq!(
        n("SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"),
        encounters.len() as u64
    );
    assert_eq!(
        n("SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0 AND discharged_at_ms IS NOT NULL"),
        kind("discharge")
    );
    for (table, k) in [
        ("fact_charge", "charge_line"),
        ("fact_diagnosis", "diagnosis"),
        ("fact_procedure", "procedure"),
        ("fact_lab_result", "lab_result"),
        ("fact_transfer", "transfer"),
    ] {
        assert_eq!(
            n(&format!(
                "SELECT count() FROM warehouse.{table} FINAL WHERE is_deleted = 0"
            )),
            kind(k),
            "{table}"
        );
    }
    // Registrations and address changes: one current row per simulated person.
    let people: BTreeSet<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::PatientRegistered(_)) => e.patient.as_ref().map(|p| p.mrn.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        n("SELECT uniqExact(patient_key) FROM warehouse.dim_patient FINAL WHERE is_deleted = 0"),
        people.len() as u64
    );

    // The census is the simulated hospital at the end: who is in a bed, who waits in ED.
    let mut bed_of: BTreeMap<String, String> = BTreeMap::new();
    let mut in_ed: BTreeSet<String> = BTreeSet::new();
    for e in &events {
        match &e.payload {
            Some(Payload::EdArrival(a)) => {
                in_ed.insert(a.encounter_id.clone());
            }
            Some(Payload::Admission(a)) => {
                in_ed.remove(&a.encounter_id);
                bed_of.insert(a.encounter_id.clone(), a.location.clone().unwrap_or_default().ward_code);
            }
            Some(Payload::Discharge(d)) => {
                in_ed.remove(&d.encounter_id);
                bed_of.remove(&d.encounter_id);
            }
            _ => {}
        }
    }
    assert_eq!((bed_of.len() + in_ed.len()) as u64, stats.in_hospital_at_end);
    // The census follows staging asynchronously: wait until it has seen the last ack.
    let mut census_client = CensusServiceClient::new(
        hospital_client::connect(&endpoint(platform.local_addr()))
            .await
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let census = loop {
        let c = census_client
            .get_census(GetCensusRequest::default())
            .await
            .unwrap()
            .into_inner();
        if c.position >= report.last_position {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "census stuck at position {} before {}",
            c.position,
            report.last_position
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(census.inpatients as usize, bed_of.len());
    assert_eq!(census.ed_waiting.len(), in_ed.len());

    // Deteriorations are caught: alerts are raised, for more patients than there were
    // episodes that turned out badly (ICU or death). Alerts are audited asynchronously:
    // wait for them.
    let enough = stats.icu_admissions + stats.deaths;
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerted = loop {
        let alerted = n("SELECT uniqExact(encounter_id) FROM warehouse.news2_alerts FINAL");
        if alerted >= enough && alerted > 0 {
            break alerted;
        }
        assert!(Instant::now() < deadline, "{alerted} alerted, {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "{alerted} encounters alerted; {} deterioration episodes",
        stats.deteriorations
    );
    platform.shutdown().await.expect("shutdown");
}
