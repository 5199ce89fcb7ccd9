//! Diagnoses and procedures end to end, over real gRPC into a real ClickHouse
//! (hospital-testkit): the door rejects what breaks their rules by field, the change
//! feed streams them by kind, the warehouse load writes `fact_diagnosis` and
//! `fact_procedure` rows with canonical codes that join to the patient and date
//! dimensions, and a resend (also one with a changed payload) adds nothing.

mod common;

use std::time::Duration;

use common::*;
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{self as pb, ClinicalEvent};
use hospital_proto::ingest::ingest_service_client::IngestServiceClient;
use hospital_proto::realtime::change_feed_service_client::ChangeFeedServiceClient;
use hospital_proto::realtime::SubscribeRequest;
use hospital_testkit::ClickHouseServer;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn ev(id: &str, at: i64, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id.into(),
        source_system: "epic".into(),
        occurred_at: ts(at),
        patient: Some(pb::PatientRef {
            mrn: "MRN1".into(),
            assigning_authority: "city-hospital".into(),
        }),
        payload: Some(payload),
    }
}

fn dx(code: &str, system: pb::CodeSystem, role: pb::DiagnosisRole, rank: u32, encounter: &str) -> pb::Diagnosis {
    pb::Diagnosis {
        encounter_id: encounter.into(),
        code: code.into(),
        code_system: system as i32,
        display: String::new(),
        role: role as i32,
        rank,
        clinical_status: pb::ConditionStatus::Active as i32,
        abated_at: None,
        recorded_at: None,
    }
}

/// The valid events of the test (registration, admission, four diagnoses, two
/// procedures) and two invalid ones, last.
fn events(t0: i64) -> Vec<ClinicalEvent> {
    use pb::{CodeSystem as Cs, DiagnosisRole as Role};
    vec![
        ev(
            "reg-1",
            t0 - 30 * DAY,
            Payload::PatientRegistered(pb::PatientDemographics {
                family_name: "Doe".into(),
                ..Default::default()
            }),
        ),
        ev(
            "adm-1",
            t0,
            Payload::Admission(pb::Admission {
                encounter_id: "ENC1".into(),
                encounter_class: pb::EncounterClass::Inpatient as i32,
                location: Some(pb::Location {
                    department_code: "MED".into(),
                    ward_code: "W1".into(),
                    bed_code: "B1".into(),
                }),
                ..Default::default()
            }),
        ),
        // Sent undotted and lower case: stored as J18.9.
        ev(
            "dx-1",
            t0,
            Payload::Diagnosis(pb::Diagnosis {
                display: " Pneumonia, unspecified organism ".into(),
                ..dx("j189", Cs::Icd10Cm, Role::Principal, 1, "ENC1")
            }),
        ),
        // MIMIC-style ICD-9-CM: stored as 428.0.
        ev(
            "dx-2",
            t0,
            Payload::Diagnosis(dx("4280", Cs::Icd9Cm, Role::Secondary, 2, "ENC1")),
        ),
        // A problem-list entry from long ago, outside any encounter.
        ev(
            "dx-3",
            t0 - 400 * DAY,
            Payload::Diagnosis(pb::Diagnosis {
                recorded_at: ts(t0 - 399 * DAY),
                ..dx("44054006", Cs::SnomedCt, Role::ProblemList, 0, "")
            }),
        ),
        ev(
            "dx-4",
            t0 + HOUR,
            Payload::Diagnosis(pb::Diagnosis {
                clinical_status: pb::ConditionStatus::Resolved as i32,
                abated_at: ts(t0 + 3 * DAY),
                ..dx("N39.0", Cs::Icd10Cm, Role::Secondary, 3, "ENC1")
            }),
        ),
        ev(
            "px-1",
            t0 + 2 * HOUR,
            Payload::Procedure(pb::ProcedurePerformed {
                encounter_id: "ENC1".into(),
                code: "0dtj4zz".into(),
                code_system: Cs::Icd10Pcs as i32,
                display: "Resection of appendix".into(),
                ended_at: ts(t0 + 2 * HOUR + 90 * 60),
                rank: 1,
                performer: "dr-house".into(),
            }),
        ),
        ev(
            "px-2",
            t0 + 5 * HOUR,
            Payload::Procedure(pb::ProcedurePerformed {
                encounter_id: "ENC1".into(),
                code: "9671".into(),
                code_system: Cs::Icd9Cm as i32,
                ..Default::default()
            }),
        ),
        // Invalid: CPT codes procedures, not diagnoses.
        ev(
            "dx-bad",
            t0,
            Payload::Diagnosis(dx("99213", Cs::Cpt, Role::Secondary, 0, "ENC1")),
        ),
        // Invalid: ends before it starts.
        ev(
            "px-bad",
            t0 + 2 * HOUR,
            Payload::Procedure(pb::ProcedurePerformed {
                encounter_id: "ENC1".into(),
                code: "80146002".into(),
                code_system: Cs::SnomedCt as i32,
                ended_at: ts(t0),
                ..Default::default()
            }),
        ),
    ]
}

fn text(ch: &ClickHouseServer, sql: &str) -> String {
    ch.query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .trim()
        .to_string()
}

fn fact_counts(ch: &ClickHouseServer) -> (u64, u64) {
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
}

async fn ingest(addr: std::net::SocketAddr, events: &[ClinicalEvent]) -> hospital_proto::ingest::IngestResponse {
    IngestServiceClient::new(hospital_client::connect(&endpoint(addr)).await.unwrap())
        .ingest_batch(request("r", events))
        .await
        .expect("ingest_batch")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnoses_and_procedures_reach_the_warehouse_once() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();
    let now = now_secs();
    // Midday ten days ago: every event of the encounter on one UTC day.
    let t0 = (now - 10 * DAY).div_euclid(DAY) * DAY + 9 * HOUR;
    let all = events(t0);
    let valid = &all[..all.len() - 2];

    // --- the door ---------------------------------------------------------------------
    let ack = ingest(addr, &all).await;
    assert_eq!(ack.committed_event_ids.len(), valid.len());
    let mut rejected: Vec<(String, Vec<String>)> = ack
        .rejections
        .iter()
        .map(|r| {
            (
                r.event_id.clone(),
                r.violations.iter().map(|v| v.field.clone()).collect(),
            )
        })
        .collect();
    rejected.sort();
    assert_eq!(
        rejected,
        vec![
            ("dx-bad".to_string(), vec!["diagnosis.code_system".to_string()]),
            ("px-bad".to_string(), vec!["procedure.ended_at".to_string()]),
        ]
    );
    assert_eq!(
        text(
            &ch,
            "SELECT kind, count() FROM staging.events WHERE kind IN ('diagnosis', 'procedure') \
             GROUP BY kind ORDER BY kind"
        ),
        "diagnosis\t4\nprocedure\t2"
    );

    // --- the change feed takes the new kinds --------------------------------------------
    let mut feed = ChangeFeedServiceClient::new(hospital_client::connect(&endpoint(addr)).await.unwrap())
        .subscribe(SubscribeRequest {
            after_position: 0,
            kinds: vec!["diagnosis".into(), "procedure".into()],
            ..Default::default()
        })
        .await
        .expect("diagnosis and procedure are known kinds")
        .into_inner();
    let mut fed = Vec::new();
    while fed.len() < 6 {
        let change = tokio::time::timeout(Duration::from_secs(30), feed.message())
            .await
            .expect("an event within 30 s")
            .expect("stream healthy")
            .expect("stream open");
        fed.push(change.event.unwrap().event_id);
    }
    assert_eq!(fed, ["dx-1", "dx-2", "dx-3", "dx-4", "px-1", "px-2"]);
    drop(feed);

    // --- the warehouse --------------------------------------------------------------------
    run_warehouse_load(addr, false).await;
    assert_eq!(fact_counts(&ch), (4, 2));
    assert_eq!(
        text(
            &ch,
            "SELECT source_event_id, code, code_system, display, role, rank, clinical_status, encounter_id \
             FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0 ORDER BY source_event_id"
        )
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>().join(" | "))
        .collect::<Vec<_>>(),
        [
            "dx-1 | J18.9 | icd10_cm | Pneumonia, unspecified organism | principal | 1 | active | ENC1",
            "dx-2 | 428.0 | icd9_cm |  | secondary | 2 | active | ENC1",
            "dx-3 | 44054006 | snomed_ct |  | problem_list | 0 | active | ",
            "dx-4 | N39.0 | icd10_cm |  | secondary | 3 | resolved | ENC1",
        ]
    );
    let ms = |secs: i64| secs * 1000;
    assert_eq!(
        text(
            &ch,
            "SELECT onset_at_ms, recorded_at_ms, abated_at_ms FROM warehouse.fact_diagnosis FINAL \
             WHERE is_deleted = 0 AND source_event_id IN ('dx-3', 'dx-4') ORDER BY source_event_id"
        ),
        format!(
            "{}\t{}\t\\N\n{}\t\\N\t{}",
            ms(t0 - 400 * DAY),
            ms(t0 - 399 * DAY),
            ms(t0 + HOUR),
            ms(t0 + 3 * DAY)
        )
    );
    assert_eq!(
        text(
            &ch,
            "SELECT source_event_id, code, code_system, rank, performer, started_at_ms, ended_at_ms, duration_minutes \
             FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0 ORDER BY source_event_id"
        ),
        format!(
            "px-1\t0DTJ4ZZ\ticd10_pcs\t1\tdr-house\t{}\t{}\t90\npx-2\t96.71\ticd9_cm\t0\t\t{}\t\\N\t\\N",
            ms(t0 + 2 * HOUR),
            ms(t0 + 2 * HOUR + 90 * 60),
            ms(t0 + 5 * HOUR)
        )
    );
    // Every row joins to the registered patient and to a date of dim_date; the problem
    // from 400 days ago has its own date.
    for table in ["fact_diagnosis", "fact_procedure"] {
        assert_eq!(
            count(
                &ch,
                &format!(
                    "SELECT count() FROM warehouse.{table} FINAL \
                     ANY LEFT JOIN (SELECT patient_key, 1 AS found FROM warehouse.dim_patient FINAL \
                     WHERE is_deleted = 0 AND is_current = 1 AND is_inferred = 0) AS d USING patient_key \
                     WHERE found = 0"
                )
            ),
            0,
            "{table} rows without their patient"
        );
        assert_eq!(
            count(
                &ch,
                &format!(
                    "SELECT count() FROM warehouse.{table} FINAL \
                     WHERE date_key NOT IN (SELECT date_key FROM warehouse.dim_date)"
                )
            ),
            0,
            "{table} rows without their date"
        );
    }
    assert_eq!(
        count(
            &ch,
            "SELECT uniqExact(date_key) FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0"
        ),
        2
    );

    // --- a resend adds nothing ----------------------------------------------------------
    let mut resend = valid.to_vec();
    // The first staged copy wins over a resend with another code.
    let Some(Payload::Diagnosis(d)) = resend[2].payload.as_mut() else {
        panic!()
    };
    d.code = "J15.9".into();
    let ack = ingest(addr, &resend).await;
    assert_eq!(ack.committed_event_ids.len(), valid.len(), "staged again");
    let status = |ch: &ClickHouseServer| {
        text(
            ch,
            "SELECT (SELECT count() FROM warehouse.fact_diagnosis FINAL WHERE is_deleted = 0), \
                    (SELECT count() FROM warehouse.fact_procedure FINAL WHERE is_deleted = 0), \
                    (SELECT count() FROM warehouse.dim_date FINAL), \
                    (SELECT groupArray(code) FROM (SELECT code FROM warehouse.fact_diagnosis FINAL \
                     WHERE is_deleted = 0 ORDER BY source_event_id))",
        )
    };
    let before = status(&ch);
    run_warehouse_load(addr, false).await;
    assert_eq!(status(&ch), before, "a resend adds nothing");
    assert!(before.ends_with("['J18.9','428.0','44054006','N39.0']"), "{before}");
    run_warehouse_load(addr, true).await;
    assert_eq!(status(&ch), before, "a full reload changes nothing");
    assert_eq!(fact_counts(&ch), (4, 2));
    platform.shutdown().await.unwrap();
}
