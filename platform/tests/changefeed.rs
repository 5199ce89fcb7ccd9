//! The change feed over real gRPC against a real ClickHouse: resume after a position
//! with no gap and no repeat (also across a platform restart), live delivery, filters,
//! a stalled subscriber that does not hold up ingest and catches up from staging, a
//! position past the end refused, and catch-up reads bounded to their own rows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hospital_platform::realtime::bus::Bus;
use hospital_platform::realtime::follow::{CatchUpStats, Follower, CATCH_UP_CHUNK};
use hospital_platform::staging::StagedEvent;
use hospital_platform::{db, server};
use hospital_proto::events::ClinicalEvent;
use hospital_proto::realtime::change_feed_service_client::ChangeFeedServiceClient;
use hospital_proto::realtime::{ChangeEvent, SubscribeRequest};
use tonic::Code;

async fn send(addr: std::net::SocketAddr, evs: Vec<ClinicalEvent>) {
    let n = evs.len();
    let report = send_through_sender(addr, evs, 200).await;
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
    // The history came from staging (the new process's bus never carried it), in
    // chunks of positions.
    let catch_up = platform.change_feed_catch_up();
    assert_eq!(catch_up.rows(), expected_history.len() as u64);
    assert!(catch_up.chunks() >= (expected_history.len() as u64).div_ceil(CATCH_UP_CHUNK));

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
    // A small HTTP/2 window: the client buffers little of what the subscriber does not
    // read, so the follower's queue fills and it falls behind the bus (with the default
    // 2 MiB window the client could hold every event below).
    let channel = tonic::transport::Endpoint::from_shared(endpoint(platform.local_addr()))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let mut feed = ChangeFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();

    // The subscriber reads nothing while thousands of events are ingested (more than
    // its queue, the server's send buffer and the window hold): every one is
    // acknowledged (ingest is not held up).
    let evs = simulated(4, 80.0, 4, "ehr-a");
    let n = evs.len();
    assert!(n > 5_000, "{n}");
    send(platform.local_addr(), evs).await;

    // Then it reads: everything, in order, once.
    let got = take(&mut feed, n).await;
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        staged_positions(&ch, 0)
    );
    // It fell behind the bus and caught up from staging: the part of the feed it missed
    // on the bus was read back in position ranges.
    let catch_up = platform.change_feed_catch_up();
    assert!(catch_up.lagged() >= 1, "the subscriber fell behind the bus");
    assert!(catch_up.chunks() >= 1 && catch_up.rows() > 0, "{catch_up:?}");
    assert!(catch_up.rows() <= n as u64, "{catch_up:?}");
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
    // A later event of the same patient, sent after the period: the next one the
    // patient's feed must deliver.
    let mut marker = evs
        .iter()
        .rfind(|e| e.patient.as_ref().is_some_and(|p| p.mrn == mrn))
        .unwrap()
        .clone();
    marker.event_id = "marker-after-the-period".into();
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
    // Nothing else was delivered for that patient: the next event is the marker.
    send(platform.local_addr(), vec![marker]).await;
    let next = take(&mut feed, 1).await;
    assert_eq!(next[0].event.as_ref().unwrap().event_id, "marker-after-the-period");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_the_end_is_out_of_range() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let client = || async {
        ChangeFeedServiceClient::new(
            hospital_client::connect(&endpoint(platform.local_addr()))
                .await
                .unwrap(),
        )
    };

    // Nothing staged yet: the end is 0.
    let status = client()
        .await
        .subscribe(SubscribeRequest {
            after_position: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("committed position is 0"),
        "{}",
        status.message()
    );

    send(platform.local_addr(), simulated(1, 5.0, 6, "ehr-a")).await;
    let end = *staged_positions(&ch, 0).last().unwrap();
    let status = client()
        .await
        .subscribe(SubscribeRequest {
            after_position: end + 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains(&format!("committed position is {end}")),
        "{}",
        status.message()
    );

    // At the end exactly: nothing to catch up, then live events right after it.
    let mut feed = subscribe(
        platform.local_addr(),
        SubscribeRequest {
            after_position: end,
            ..Default::default()
        },
    )
    .await;
    let live = simulated(1, 5.0, 7, "ehr-b");
    let live_n = live.len();
    send(platform.local_addr(), live).await;
    let got = take(&mut feed, live_n).await;
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        staged_positions(&ch, end)
    );
    platform.shutdown().await.unwrap();
}

/// A staged row at `position` (the follower does not decode payloads).
fn row(position: u64) -> StagedEvent {
    StagedEvent {
        position,
        event_id: format!("e{position}"),
        source_system: "bench".into(),
        kind: "vital_signs".into(),
        patient_mrn: format!("MRN{}", position % 100),
        patient_authority: "HOSP".into(),
        occurred_at_ms: 1_600_000_000_000,
        received_at_ms: 1_600_000_000_000,
        payload: vec![],
        raw: vec![],
    }
}

/// Catch-up reads a position range per chunk: with ClickHouse refusing any query that
/// reads more than a few chunks' worth of rows, a follower still reads 115k rows from
/// position 0, over a gap of failed-insert positions and up to a committed position
/// past the last row. (`position > 0 ORDER BY position LIMIT n` reads every row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_reads_only_each_chunks_rows() {
    let h = StagingHarness::start().await;
    let staging = db::client_for(&h.cfg, "staging");
    let positions: Vec<u64> = (1..=60_000).chain(85_001..=140_000).collect();
    for part in positions.chunks(20_000) {
        let mut insert = staging.insert::<StagedEvent>("events").await.unwrap();
        for &p in part {
            insert.write(&row(p)).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    let committed = 140_005;
    let limit = 5 * CATCH_UP_CHUNK;
    let limited = staging.clone().with_setting("max_rows_to_read", limit.to_string());
    // The old query shape is refused under the limit.
    let old = limited
        .query("SELECT ?fields FROM events WHERE position > ? ORDER BY position LIMIT ?")
        .bind(0u64)
        .bind(CATCH_UP_CHUNK)
        .fetch_all::<StagedEvent>()
        .await;
    assert!(old.is_err(), "an open-ended read is over the limit");

    let bus = Bus::new(1);
    let (_committed_tx, committed_rx) = tokio::sync::watch::channel(committed);
    let stats = Arc::new(CatchUpStats::default());
    let mut follower = Follower::new(&bus, limited, committed_rx, 0).with_stats(stats.clone());
    drop(bus); // no live flushes: the follower ends after catching up
    let mut got = Vec::with_capacity(positions.len());
    while let Some(r) = follower.next().await.expect("every catch-up read within the limit") {
        got.push(r.position);
    }
    assert_eq!(got, positions);
    assert_eq!(follower.position(), committed, "the trailing gap is passed");
    assert_eq!(stats.rows(), positions.len() as u64);
    assert_eq!(stats.chunks(), committed.div_ceil(CATCH_UP_CHUNK));
}
