//! The change feed over real gRPC against a real ClickHouse: resume after a position
//! with no gap and no repeat (also across a platform restart), live delivery, filters,
//! and a stalled subscriber that does not hold up ingest.

mod common;

use std::time::Duration;

use common::*;
use hospital_client::sender::{send_events, SenderOptions};
use hospital_platform::server;
use hospital_proto::events::ClinicalEvent;
use hospital_proto::realtime::change_feed_service_client::ChangeFeedServiceClient;
use hospital_proto::realtime::{ChangeEvent, SubscribeRequest};
use tonic::Code;

async fn send(addr: std::net::SocketAddr, evs: Vec<ClinicalEvent>) {
    let n = evs.len();
    let report = send_events(
        evs,
        &SenderOptions {
            endpoint: endpoint(addr),
            batch_size: 200,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.committed, n);
}

async fn subscribe(addr: std::net::SocketAddr, req: SubscribeRequest) -> tonic::Streaming<ChangeEvent> {
    ChangeFeedServiceClient::new(hospital_client::connect(&endpoint(addr)).await.unwrap())
        .subscribe(req)
        .await
        .unwrap()
        .into_inner()
}

/// Reads exactly `n` events (or fails after 30 s without one).
async fn take(stream: &mut tonic::Streaming<ChangeEvent>, n: usize) -> Vec<ChangeEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an event within 30 s")
            .expect("stream healthy")
            .expect("stream open");
        out.push(next);
    }
    out
}

fn staged_positions(ch: &hospital_testkit::ClickHouseServer, after: u64) -> Vec<u64> {
    ch.query(&format!(
        "SELECT position FROM staging.events WHERE position > {after} ORDER BY position FORMAT TabSeparated"
    ))
    .unwrap()
    .lines()
    .map(|l| l.parse().unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_position_has_no_gap_and_no_repeat_across_a_restart() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    send(platform.local_addr(), simulated(2, 10.0, 1, "ehr-a")).await;
    let staged = staged_positions(&ch, 0);

    // From the start: every staged row, in order.
    let mut feed = subscribe(platform.local_addr(), SubscribeRequest::default()).await;
    let first = take(&mut feed, staged.len()).await;
    assert_eq!(first.iter().map(|e| e.position).collect::<Vec<_>>(), staged);
    assert!(first.iter().all(|e| e.event.is_some() && !e.kind.is_empty()));
    let resume_at = first[staged.len() / 2].position;
    drop(feed);

    // More events while nobody listens, then a restart of the platform.
    send(platform.local_addr(), simulated(2, 5.0, 2, "ehr-b")).await;
    platform.shutdown().await.unwrap();
    let platform = start_platform(&ch).await;

    // Resume after the position: history from staging, then live, exactly once each.
    let mut feed = subscribe(
        platform.local_addr(),
        SubscribeRequest {
            after_position: resume_at,
            ..Default::default()
        },
    )
    .await;
    let expected_history = staged_positions(&ch, resume_at);
    let history = take(&mut feed, expected_history.len()).await;
    assert_eq!(history.iter().map(|e| e.position).collect::<Vec<_>>(), expected_history);

    let live = simulated(1, 5.0, 3, "ehr-c");
    let live_n = live.len();
    send(platform.local_addr(), live).await;
    let last = *expected_history.last().unwrap();
    let live_got = take(&mut feed, live_n).await;
    assert_eq!(
        live_got.iter().map(|e| e.position).collect::<Vec<_>>(),
        staged_positions(&ch, last),
        "live events follow history with no gap"
    );
    assert!(live_got
        .iter()
        .all(|e| e.event.as_ref().unwrap().source_system.starts_with("ehr-c-")));
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_up_ingest_and_catches_up() {
    let ch = clickhouse();
    let mut cfg = config(&ch);
    // A bus of one flush and small flushes: the stalled subscriber falls behind at once.
    cfg.realtime.bus_capacity = 1;
    cfg.staging.flush_rows = 100;
    let platform = server::start(cfg).await.unwrap();
    let mut feed = subscribe(platform.local_addr(), SubscribeRequest::default()).await;

    // The subscriber reads nothing while a few thousand events are ingested: every one
    // is acknowledged (ingest is not held up).
    let evs = simulated(3, 40.0, 4, "ehr-a");
    let n = evs.len();
    assert!(n > 2_000, "{n}");
    send(platform.local_addr(), evs).await;

    // Then it reads: everything, in order, once.
    let got = take(&mut feed, n).await;
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        staged_positions(&ch, 0)
    );
    platform.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_kind_and_patient_and_refuses_unknown_kinds() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let evs = simulated(2, 10.0, 5, "ehr-a");
    let admissions = evs
        .iter()
        .filter(|e| {
            matches!(
                e.payload,
                Some(hospital_proto::events::clinical_event::Payload::Admission(_))
            )
        })
        .count();
    assert!(admissions > 0, "the period has admissions");
    let mrn = evs.iter().find_map(|e| e.patient.as_ref()).unwrap().mrn.clone();
    let of_patient = evs
        .iter()
        .filter(|e| e.patient.as_ref().is_some_and(|p| p.mrn == mrn))
        .count();
    send(platform.local_addr(), evs).await;

    let mut feed = subscribe(
        platform.local_addr(),
        SubscribeRequest {
            kinds: vec!["admission".into()],
            ..Default::default()
        },
    )
    .await;
    let got = take(&mut feed, admissions).await;
    assert!(got.iter().all(|e| e.kind == "admission"));

    let mut feed = subscribe(
        platform.local_addr(),
        SubscribeRequest {
            patient_mrns: vec![mrn.clone()],
            ..Default::default()
        },
    )
    .await;
    let got = take(&mut feed, of_patient).await;
    assert!(got
        .iter()
        .all(|e| e.event.as_ref().unwrap().patient.as_ref().unwrap().mrn == mrn));
    // Nothing else arrives for that patient.
    assert!(tokio::time::timeout(Duration::from_millis(300), feed.message())
        .await
        .is_err());

    let status = ChangeFeedServiceClient::new(
        hospital_client::connect(&endpoint(platform.local_addr()))
            .await
            .unwrap(),
    )
    .subscribe(SubscribeRequest {
        kinds: vec!["vitals".into()],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("unknown event kind"), "{}", status.message());
    platform.shutdown().await.unwrap();
}
