//! A historical load interrupted half way resumes after what was acknowledged: the
//! platform process is killed mid-load (the sender gives up), started again, and the
//! same load (the `hospital load` path: read and send at once, checkpointed) sends only
//! the rest; the warehouse ends up with the files' counts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hospital_client::checkpoint::{fingerprint_inputs, load_resumable, Checkpoint, LoadError};
use hospital_client::load::Source;
use hospital_client::sender::{SendError, SenderOptions};
use hospital_testkit::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_killed_half_way_resumes_after_what_was_acknowledged() {
    let ch = clickhouse();
    let port = free_port();
    let mut platform = PlatformProcess::spawn(&ch, port);
    let data = shared_data("synthea_csv");
    let total = hospital_client::load::synthea(&data)
        .expect("synthea export")
        .events
        .len() as u64;
    let fingerprint = fingerprint_inputs(Source::Synthea, &data).unwrap();
    let dir = std::env::temp_dir().join(format!("hospital-load-resume-{}", std::process::id()));
    let path = dir.join("checkpoint");
    let opts = SenderOptions {
        endpoint: endpoint(platform.addr),
        batch_size: 100,
        max_in_flight: 2,
        max_retries: 2,
        retry_backoff: Duration::from_millis(100),
        ..Default::default()
    };

    // First run: kill the platform once some requests are acknowledged.
    let (checkpoint, why) = Checkpoint::open(&path, fingerprint);
    assert_eq!((checkpoint.acknowledged, why), (0, None));
    let first = tokio::spawn({
        let data = data.clone();
        let opts = opts.clone();
        async move { load_resumable(Source::Synthea, data, checkpoint, &opts, |_| {}).await }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Checkpoint::open(&path, fingerprint).0.acknowledged < 500 {
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    platform.kill();
    match first.await.unwrap() {
        Err(LoadError::Send(SendError::GaveUp { .. } | SendError::Connect { .. })) => {}
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
