//! The platform's local state (the staging key index and the real-time snapshot): used
//! across restarts so a start-up does not read history, caught up from staging when it
//! is behind, and never taken for current when it belongs to another staging.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use hospital_proto::events::{self as pb, clinical_event::Payload, ClinicalEvent};
use prost_types::Timestamp;

fn event(id: &str, at_secs: i64, mrn: &str, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id.into(),
        source_system: "ward-ehr".into(),
        occurred_at: Some(Timestamp {
            seconds: at_secs,
            nanos: 0,
        }),
        patient: Some(pb::PatientRef {
            mrn: mrn.into(),
            assigning_authority: "HOSP".into(),
        }),
        payload: Some(payload),
    }
}

fn admission(id: &str, at: i64, mrn: &str) -> ClinicalEvent {
    event(
        id,
        at,
        mrn,
        Payload::Admission(pb::Admission {
            encounter_id: format!("E-{mrn}"),
            encounter_class: pb::EncounterClass::Inpatient as i32,
            admission_type: pb::AdmissionType::Emergency as i32,
            location: Some(pb::Location {
                department_code: "MED".into(),
                ward_code: "W1".into(),
                bed_code: format!("B-{mrn}"),
            }),
            ..Default::default()
        }),
    )
}

fn vitals(id: &str, at: i64, mrn: &str, spo2: f64, scale: pb::Spo2Scale) -> ClinicalEvent {
    event(
        id,
        at,
        mrn,
        full_vital_set(&format!("E-{mrn}"), [16.0, spo2, 120.0, 70.0, 37.0], true, scale),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_index_is_kept_across_restarts_and_catches_up_with_staging() {
    let t = now_secs() - 3_600;
    let h = StagingHarness::start().await;
    let first = h.stage(&[admission("a1", t, "P1"), admission("a2", t, "P2")]).await;
    assert_eq!(h.writer.key_index().keys, 0, "a new index on an empty staging");

    // A restart reads nothing from staging: the index on disk covers it all.
    let h = h.restart_writer().await;
    let opened = h.writer.key_index();
    assert_eq!((opened.keys, opened.rows_read, opened.rebuilt), (2, 0, false));
    let again = h
        .handle()
        .commit(vec![staged(&admission("a2", t, "P2"))])
        .await
        .unwrap();
    assert_eq!(again.duplicates.len(), 1, "a resend after the restart is a duplicate");
    assert_eq!(again.duplicates[0].first_position, first);
    assert!(!again.duplicates[0].content_differs);

    // Rows in staging the index has not seen (as after a crash before the index was
    // made durable): the next start-up indexes exactly those.
    let mut late = staged(&admission("a3", t, "P3"));
    late.position = first + 10;
    let client = hospital_platform::db::client_for(&h.cfg, "staging");
    let mut insert = client
        .insert::<hospital_platform::staging::StagedEvent>("events")
        .await
        .unwrap();
    insert.write(&late).await.unwrap();
    insert.end().await.unwrap();
    let h = h.restart_writer().await;
    let opened = h.writer.key_index();
    assert_eq!((opened.keys, opened.rows_read, opened.rebuilt), (3, 1, false));
    let again = h
        .handle()
        .commit(vec![staged(&admission("a3", t, "P3"))])
        .await
        .unwrap();
    assert_eq!(again.duplicates.len(), 1);
    assert_eq!(again.duplicates[0].first_position, first + 10);
    h.writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_index_of_another_staging_is_discarded() {
    let t = now_secs() - 3_600;
    let h = StagingHarness::start().await;
    h.stage(&[admission("a1", t, "P1"), admission("a2", t, "P2")]).await;
    // Staging emptied behind the platform's back (a restore, a new server on the same
    // host): the index's anchor is gone, so the index must not answer duplicates.
    h.ch.query("TRUNCATE TABLE staging.events").unwrap();
    let h = h.restart_writer().await;
    let opened = h.writer.key_index();
    assert!(opened.rebuilt, "the index did not notice staging changed: {opened:?}");
    assert_eq!(opened.keys, 0);
    let info = h
        .handle()
        .commit(vec![staged(&admission("a1", t, "P1"))])
        .await
        .unwrap();
    assert!(
        info.duplicates.is_empty(),
        "an event staging no longer holds was refused"
    );
    assert_eq!(count(&h.ch, "SELECT count() FROM staging.events"), 1);
    h.writer.shutdown().await;
}

async fn scores_when(
    addr: std::net::SocketAddr,
    want: impl Fn(&BTreeMap<String, (u32, i32)>) -> bool,
) -> BTreeMap<String, (u32, i32)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = scores_of(addr).await;
        if want(&s) || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the real-time stage has applied everything up to `position`.
async fn caught_up(addr: std::net::SocketAddr, position: u64) {
    use hospital_proto::realtime::census_service_client::CensusServiceClient;
    use hospital_proto::realtime::GetCensusRequest;
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    let mut client = CensusServiceClient::new(channel);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client
        .get_census(GetCensusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .position
        < position
    {
        assert!(
            std::time::Instant::now() < deadline,
            "real time did not reach {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The NEWS2 state after a restart comes from the local snapshot: with the warehouse's
/// vital signs gone, the scores are still there; without the snapshot they are not
/// (which shows the check can tell the two apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news2_state_comes_back_from_the_local_snapshot() {
    let t = now_secs() - 3 * 3_600;
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let events = vec![
        admission("a1", t, "COPD"),
        admission("a2", t, "AIR"),
        vitals("v1", t + 600, "COPD", 97.0, pb::Spo2Scale::Spo2Scale2),
        vitals("v2", t + 600, "AIR", 95.0, pb::Spo2Scale::Spo2Scale1),
    ];
    let ack = ingest_client(platform.local_addr())
        .await
        .ingest_batch(request(1, &events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.committed_event_ids.len(), 4);
    let live = scores_when(platform.local_addr(), |s| s.len() == 2).await;
    // Scale 2, 97% on oxygen: 3 + 2 = 5, medium. Scale 1, 95% on oxygen: 1 + 2 = 3.
    assert_eq!(live["COPD"].0, 5, "{live:?}");
    assert_eq!(live["AIR"].0, 3, "{live:?}");
    run_warehouse_load(platform.local_addr(), false).await;
    platform.shutdown().await.unwrap();

    // Rebuilt from the warehouse (no local state) and stopped with nothing new: the
    // rebuilt state is saved all the same.
    std::fs::remove_dir_all(state_dir(&ch)).unwrap();
    let platform = start_platform(&ch).await;
    caught_up(platform.local_addr(), ack.committed_position).await;
    assert_eq!(
        scores_of(platform.local_addr()).await,
        live,
        "rebuilt from the warehouse"
    );
    platform.shutdown().await.unwrap();

    // The warehouse loses the vital signs; the load watermark stays, so a rebuild from
    // the warehouse would find no sets and replay nothing.
    for table in ["fact_vital_sign", "fact_vital_sign_set"] {
        ch.query(&format!("TRUNCATE TABLE warehouse.{table}")).unwrap();
    }
    let platform = start_platform(&ch).await;
    let restored = scores_when(platform.local_addr(), |s| s == &live).await;
    assert_eq!(restored, live, "scores after a restart from the snapshot");
    platform.shutdown().await.unwrap();

    std::fs::remove_dir_all(state_dir(&ch)).unwrap();
    let platform = start_platform(&ch).await;
    caught_up(platform.local_addr(), ack.committed_position).await;
    assert!(
        scores_of(platform.local_addr()).await.is_empty(),
        "without the snapshot the scores come from the (emptied) warehouse"
    );
    platform.shutdown().await.unwrap();
}
