//! Senders ride out outages and simulations resume (the `hospital simulate` path:
//! simulate, send and checkpoint at once), against a real platform and ClickHouse:
//! ClickHouse down for longer than senders used to retry (about 10 s) is waited out and
//! every event lands once; a simulation stopped half way and started again sends only
//! what was not acknowledged.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hospital_client::checkpoint::{fingerprint_simulation, simulate_resumable, Checkpoint};
use hospital_client::sender::{Notice, Pace, SenderOptions};
use hospital_client::simulate::{count_by_kind, SimOptions, Simulator};
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::ClinicalEvent;

const DAY: i64 = 86_400;

fn simulation(prefix: &str, seed: u64) -> SimOptions {
    let start = SimOptions::default().start_secs;
    SimOptions {
        seed,
        start_secs: start,
        end_secs: Some(start + 3 * DAY),
        ed_arrivals_per_day: 60.0,
        warm_up_days: 2,
        source_prefix: prefix.into(),
        ..Default::default()
    }
}

fn checkpoint_path(test: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("hospital-{test}-{}", std::process::id()))
        .join("checkpoint")
}

fn encounters(events: &[ClinicalEvent]) -> u64 {
    let ids: BTreeSet<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::EdArrival(a)) => Some(a.encounter_id.clone()),
            Some(Payload::Admission(a)) => Some(a.encounter_id.clone()),
            _ => None,
        })
        .collect();
    ids.len() as u64
}

/// Polls `f` every 50 ms until it gives a value, for at most `secs`.
async fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_longer_than_the_old_retry_budget_is_waited_out() {
    let server = clickhouse();
    let platform = start_platform(&server).await;
    let ch = Arc::new(Mutex::new(server));
    let sim = simulation("outage", 11);
    let events: Vec<_> = Simulator::new(sim.clone()).collect();
    let total = events.len() as u64;
    let path = checkpoint_path("outage");
    let notices = Arc::new(Mutex::new(Vec::<Notice>::new()));
    let opts = SenderOptions {
        endpoint: endpoint(platform.local_addr()),
        batch_size: 200,
        max_in_flight: 2,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(250),
        notice_every: Duration::from_secs(5),
        on_notice: Some({
            let notices = notices.clone();
            Arc::new(move |n: &Notice| notices.lock().unwrap().push(n.clone()))
        }),
        ..Default::default()
    };
    // ClickHouse is killed from the ack callback once 1000 events are acknowledged, so
    // the feed cannot finish first: after the kill at most the requests in flight are
    // still answered.
    assert!(total > 1000 + 2 * 200, "{total} events");
    let (checkpoint, _) = Checkpoint::open(&path, fingerprint_simulation(&sim));
    let feed = tokio::spawn({
        let ch = ch.clone();
        let opts = opts.clone();
        let mut acked = 0usize;
        let mut killed = false;
        async move {
            simulate_resumable(
                sim,
                Pace::FullSpeed,
                checkpoint,
                &opts,
                |_| {},
                |ack| {
                    acked += ack.committed_event_ids.len() + ack.rejections.len();
                    if acked >= 1000 && !killed {
                        killed = true;
                        ch.lock().unwrap().kill().expect("kill ClickHouse");
                    }
                },
            )
            .await
        }
    });

    // The outage lasts until the sender has waited 15 s and tried more often than it
    // used to before giving up (21 attempts).
    let attempts = wait_for(120, "the sender to wait out 15 s of outage", || {
        notices.lock().unwrap().iter().rev().find_map(|n| match n {
            Notice::Waiting {
                attempt,
                unavailable_for,
                ..
            } if *unavailable_for >= Duration::from_secs(15) && *attempt > 21 => Some(*attempt),
            _ => None,
        })
    })
    .await;
    assert!(!feed.is_finished(), "the feed waits while ClickHouse is down");
    ch.lock().unwrap().restart().expect("restart ClickHouse");
    let outcome = feed.await.unwrap().expect("the feed completes after the outage");

    assert_eq!(outcome.sent.acknowledged, total, "every event acknowledged");
    assert_eq!(
        outcome.sent.committed as u64,
        total,
        "{:?}",
        outcome.sent.rejections.first()
    );
    assert!(!path.exists(), "a completed run removes its checkpoint");
    let notices = notices.lock().unwrap().clone();
    let waiting = notices.iter().filter(|n| matches!(n, Notice::Waiting { .. })).count();
    assert!(
        (1..=6).contains(&waiting),
        "a notice on the first failure and every 5 s, not one per attempt ({attempts} attempts): {notices:#?}"
    );
    assert!(matches!(notices.last(), Some(Notice::Recovered { .. })), "{notices:#?}");
    println!("{}", notices[0]);

    // Every event is staged, and lands once in the warehouse.
    let n = |sql: &str| count(&ch.lock().unwrap(), sql);
    assert_eq!(
        n("SELECT uniqExact(event_id) FROM staging.events WHERE source_system LIKE 'outage-%'"),
        total
    );
    run_warehouse_load(platform.local_addr(), false).await;
    let kinds = count_by_kind(&events);
    let kind = |k: &str| kinds.get(k).copied().unwrap_or(0);
    assert_eq!(
        n("SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"),
        encounters(&events)
    );
    for (table, k) in [
        ("fact_charge", "charge_line"),
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
    platform.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_stopped_half_way_resumes_after_what_was_acknowledged() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let sim = simulation("resume", 12);
    let events: Vec<_> = Simulator::new(sim.clone()).collect();
    let total = events.len() as u64;
    let path = checkpoint_path("simulate-resume");
    let fingerprint = fingerprint_simulation(&sim);
    let opts = SenderOptions {
        endpoint: endpoint(platform.local_addr()),
        batch_size: 200,
        max_in_flight: 2,
        ..Default::default()
    };
    assert!(total > 1000 + 2 * 200, "{total} events");

    // First run: stopped (its future dropped, as a killed process stops) once 1000
    // events are acknowledged. The ack callback raises the stop, so the run cannot end
    // first: only the requests in flight can still be answered before it is dropped.
    let (checkpoint, why) = Checkpoint::open(&path, fingerprint);
    assert_eq!((checkpoint.acknowledged, why), (0, None));
    let stop = tokio::sync::Notify::new();
    let mut acked = 0usize;
    let run = simulate_resumable(
        sim.clone(),
        Pace::FullSpeed,
        checkpoint,
        &opts,
        |_| {},
        |ack| {
            acked += ack.committed_event_ids.len() + ack.rejections.len();
            if acked >= 1000 {
                stop.notify_one();
            }
        },
    );
    tokio::select! {
        biased;
        _ = stop.notified() => {}
        done = run => panic!("the run ended before it was stopped: {done:?}"),
    }
    let (saved, why) = Checkpoint::open(&path, fingerprint);
    assert_eq!(why, None);
    assert!(
        saved.acknowledged >= 1000 && saved.acknowledged < total,
        "{} of {total}",
        saved.acknowledged
    );

    // Second run, same parameters: only the rest is sent.
    let resumed_from = saved.acknowledged;
    let outcome = simulate_resumable(sim, Pace::FullSpeed, saved, &opts, |_| {}, |_| {})
        .await
        .expect("resumed run");
    assert_eq!(outcome.resumed_after, resumed_from);
    assert_eq!(outcome.stats.events, total);
    assert_eq!(
        outcome.sent.acknowledged,
        total - resumed_from,
        "the resumed run sends exactly the unacknowledged rest"
    );
    assert_eq!(
        (outcome.sent.committed + outcome.sent.rejections.len()) as u64,
        total - resumed_from
    );
    assert!(!path.exists(), "a completed run removes its checkpoint");

    // Nothing is missing: every event of the simulation is staged.
    assert_eq!(
        count(
            &ch,
            "SELECT uniqExact(event_id) FROM staging.events WHERE source_system LIKE 'resume-%'"
        ),
        total
    );
    run_warehouse_load(platform.local_addr(), false).await;
    assert_eq!(
        count(
            &ch,
            "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
        ),
        encounters(&events)
    );
    platform.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
