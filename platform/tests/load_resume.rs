//! A historical load interrupted half way resumes after what was acknowledged: the
//! platform process is killed mid-load (the sender gives up after `give_up_after`),
//! started again, and the same load (the `hospital load` path: read and send at once,
//! checkpointed) sends only the rest; the warehouse ends up with the files' counts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hospital_client::checkpoint::{fingerprint_inputs, load_resumable, Checkpoint, LoadError};
use hospital_client::load::Source;
use hospital_client::sender::{SendError, SenderOptions};
use hospital_testkit::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_killed_half_way_resumes_after_what_was_acknowledged() {
    let ch = clickhouse();
    let port = free_port();
    let platform = Arc::new(Mutex::new(PlatformProcess::spawn(&ch, port)));
    let addr = platform.lock().unwrap().addr;
    let data = shared_data("synthea_csv");
    let total = hospital_client::load::synthea(&data)
        .expect("synthea export")
        .events
        .len() as u64;
    let fingerprint = fingerprint_inputs(Source::Synthea, &data).unwrap();
    let dir = std::env::temp_dir().join(format!("hospital-load-resume-{}", std::process::id()));
    let path = dir.join("checkpoint");
    let opts = SenderOptions {
        endpoint: endpoint(addr),
        batch_size: 100,
        max_in_flight: 2,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        give_up_after: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    // After the kill at most the requests in flight are still answered (acks already on
    // their way): the load cannot complete before the platform is gone.
    assert!(total > 500 + 2 * 100, "{total} events");

    // First run: the platform is killed once 500 events are acknowledged (from the ack
    // callback, so the load cannot finish first).
    let (checkpoint, why) = Checkpoint::open(&path, fingerprint);
    assert_eq!((checkpoint.acknowledged, why), (0, None));
    let acked = Arc::new(Mutex::new(0usize));
    let first = tokio::spawn({
        let data = data.clone();
        let opts = opts.clone();
        let platform = platform.clone();
        let acked = acked.clone();
        async move {
            load_resumable(Source::Synthea, data, checkpoint, &opts, |ack| {
                let mut acked = acked.lock().unwrap();
                *acked += ack.committed_event_ids.len() + ack.rejections.len();
                if *acked >= 500 {
                    platform.lock().unwrap().kill();
                }
            })
            .await
        }
    });
    match first.await.unwrap() {
        Err(LoadError::Send(SendError::GaveUp { .. })) => {}
        other => panic!("the load should give up while the platform is down, got {other:?}"),
    }
    let (saved, why) = Checkpoint::open(&path, fingerprint);
    assert_eq!(why, None);
    assert!(
        saved.acknowledged > 0 && saved.acknowledged < total,
        "{} of {total}",
        saved.acknowledged
    );

    // Second run against the restarted platform: only the rest is sent.
    let platform = PlatformProcess::spawn(&ch, port);
    assert_eq!(platform.addr, addr);
    let resumed_from = saved.acknowledged;
    let outcome = load_resumable(Source::Synthea, data.clone(), saved, &opts, |_| {})
        .await
        .expect("resumed load");
    assert_eq!((outcome.events, outcome.resumed_after), (total, resumed_from));
    assert_eq!(
        (outcome.sent.committed + outcome.sent.rejections.len()) as u64,
        total - resumed_from,
        "the resumed run sends exactly the unacknowledged rest"
    );
    assert!(!path.exists(), "a completed load removes its checkpoint");

    // Nothing is missing: every event of the export is staged, and the warehouse has the
    // files' patients and encounters.
    let distinct = count(
        &ch,
        "SELECT uniqExact(source_system, event_id) FROM staging.events WHERE source_system = 'synthea'",
    );
    assert_eq!(distinct, total);
    run_warehouse_load(platform.addr, false).await;
    assert_eq!(
        count(
            &ch,
            "SELECT uniqExact(patient_key) FROM warehouse.dim_patient FINAL WHERE is_deleted = 0"
        ),
        27
    );
    assert_eq!(
        count(
            &ch,
            "SELECT count() FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
        ),
        604
    );
    let _ = std::fs::remove_dir_all(&dir);
}
