//! Ingest benchmark: events per second and ack latency through the real gRPC ingest
//! path (validation, group commit, ClickHouse insert, ack) with 1 and 8 concurrent
//! streams, next to the limit measured in the same run: inserting the same staged rows
//! straight into ClickHouse with the `clickhouse` crate (1 and 8 tasks). Then the same
//! for the simulated hospital's mix of events (admissions, vitals, labs, medication,
//! charges...), streamed from the simulator through a bounded channel as it runs.
//!
//! Run: `cargo bench -p hospital-platform --bench ingest` (BENCH_EVENTS=200000 by
//! default; BENCH_FLUSH_MS overrides staging.flush_interval_ms). Starts its own ClickHouse server (hospital-testkit) in a temp directory.

mod common;
use common::{now_secs, percentile, vm_hwm_kib};

use std::time::{Duration, Instant};

use hospital_client::sender::{feed, send_batches, send_events, Pace, SenderOptions};
use hospital_client::simulate::{SimOptions, Simulator};
use hospital_platform::config::Config;
use hospital_platform::db;
use hospital_platform::ingest::{self, IngestOptions};
use hospital_platform::staging::StagedEvent;
use hospital_proto::events::{self as pb, clinical_event::Payload};
use hospital_proto::ingest::IngestRequest;
use prost_types::Timestamp;

// glibc malloc spent a quarter of the ingest path's CPU under contention (perf, 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1_000;
const IN_FLIGHT: usize = 16;

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

/// One vital-signs set per event: five LOINC observations, as a bedside monitor sends.
fn vitals(n: usize, source: &str) -> Vec<pb::ClinicalEvent> {
    let now = now_secs();
    (0..n)
        .map(|i| pb::ClinicalEvent {
            event_id: format!("{source}-{i}"),
            source_system: source.into(),
            occurred_at: Some(Timestamp {
                seconds: now - 86_400 + (i as i64 % 86_400),
                nanos: 0,
            }),
            patient: Some(pb::PatientRef {
                mrn: format!("MRN{}", i % 5_000),
                assigning_authority: "HOSP".into(),
            }),
            payload: Some(Payload::VitalSigns(pb::VitalSigns {
                encounter_id: format!("ENC{}", i % 5_000),
                observations: [
                    ("9279-1", 16.0 + (i % 5) as f64, "/min"),
                    ("59408-5", 97.0, "%"),
                    ("8480-6", 120.0, "mm[Hg]"),
                    ("8867-4", 72.0 + (i % 20) as f64, "/min"),
                    ("8310-5", 98.6, "[degF]"),
                ]
                .into_iter()
                .map(|(c, v, u)| pb::Observation {
                    loinc_code: c.into(),
                    value: v,
                    unit: u.into(),
                })
                .collect(),
                consciousness: pb::Consciousness::Alert as i32,
                supplemental_oxygen: Some(false),
                spo2_scale: pb::Spo2Scale::Spo2Scale1 as i32,
            })),
        })
        .collect()
}

struct Row {
    name: String,
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The row with the raw insert this one is compared with.
    baseline: usize,
}

/// `n` events of the simulated hospital (the 60 days before now, as many as it takes).
fn simulated(n: usize) -> impl Iterator<Item = pb::ClinicalEvent> {
    let now = now_secs();
    let start = (now - 60 * 86_400).div_euclid(86_400) * 86_400;
    Simulator::new(SimOptions {
        seed: 1,
        start_secs: start,
        end_secs: Some(now - 60),
        ..Default::default()
    })
    .take(n)
}

async fn run(n: usize) {
    let ch = hospital_testkit::ClickHouseServer::start().expect("start ClickHouse");
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.clickhouse.url = ch.url();
    cfg.batch.interval_secs = 0;
    if let Some(ms) = std::env::var("BENCH_FLUSH_MS").ok().and_then(|v| v.parse().ok()) {
        cfg.staging.flush_interval_ms = ms;
    }
    // The platform runs as its own process, so that its memory is measured alone.
    let port = hospital_testkit::free_port();
    let mut platform = std::process::Command::new(env!("CARGO_BIN_EXE_hospital-platform"))
        .env("HOSPITAL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOSPITAL__CLICKHOUSE__URL", ch.url())
        .env("HOSPITAL__BATCH__INTERVAL_SECS", "0")
        .env("HOSPITAL__STATE__DIR", ch.data_dir().join("platform-state"))
        .env(
            "HOSPITAL__STAGING__FLUSH_INTERVAL_MS",
            cfg.staging.flush_interval_ms.to_string(),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hospital-platform");
    let endpoint = format!("http://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(platform.try_wait().unwrap().is_none(), "hospital-platform exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rows = Vec::new();
    let version = ch.query("SELECT version()").unwrap_or_default();

    // Warm up connections and the table.
    send_events(vitals(2_000, "warmup"), &opts(&endpoint), |_| {})
        .await
        .unwrap();

    // 1 stream.
    let events = vitals(n, "one");
    let started = Instant::now();
    let report = send_events(events, &opts(&endpoint), |_| {}).await.unwrap();
    rows.push(Row {
        name: "gRPC ingest, 1 stream".into(),
        events: report.committed,
        elapsed: started.elapsed(),
        latencies: report.ack_latencies,
        baseline: 3,
    });

    // 8 streams.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..8 {
        let events = vitals(n / 8, &format!("eight{s}"));
        let o = opts(&endpoint);
        tasks.push(tokio::spawn(
            async move { send_events(events, &o, |_| {}).await.unwrap() },
        ));
    }
    let mut committed = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        committed += r.committed;
        latencies.extend(r.ack_latencies);
    }
    rows.push(Row {
        name: "gRPC ingest, 8 streams".into(),
        events: committed,
        elapsed: started.elapsed(),
        latencies,
        baseline: 4,
    });

    // The simulated hospital, streamed as it is simulated (bounded read-ahead).
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let producer = tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current().block_on(feed(simulated(n), BATCH, Pace::FullSpeed, tx))
    });
    let report = send_batches(rx, &opts(&endpoint), |_| {}).await.unwrap();
    producer.await.unwrap();
    let simulated_events = report.committed + report.rejections.len();
    assert!(report.rejections.is_empty(), "{:?}", &report.rejections[..1]);
    rows.push(Row {
        name: "gRPC ingest, simulated hospital, 1 stream".into(),
        events: report.committed,
        elapsed: started.elapsed(),
        latencies: report.ack_latencies,
        baseline: 5,
    });
    let platform_hwm = vm_hwm_kib(&platform.id().to_string());
    let _ = std::process::Command::new("kill")
        .arg(platform.id().to_string())
        .status();
    let _ = platform.wait();

    // The limit: the same staged rows inserted straight into ClickHouse.
    let admin = db::client(&cfg.clickhouse);
    admin
        .query("CREATE TABLE IF NOT EXISTS staging.events_raw AS staging.events")
        .execute()
        .await
        .unwrap();
    let staged = staged_rows(vitals(n, "raw"));
    let raw = db::client_for(&cfg.clickhouse, "staging");
    let started = Instant::now();
    for chunk in staged.chunks(100_000) {
        insert(&raw, chunk).await;
    }
    rows.push(Row {
        name: "raw ClickHouse insert, 1 task".into(),
        events: staged.len(),
        elapsed: started.elapsed(),
        latencies: vec![],
        baseline: 3,
    });
    let started = Instant::now();
    let per_task = staged.len().div_ceil(8);
    let mut tasks = Vec::new();
    for chunk in staged.chunks(per_task) {
        let chunk = chunk.to_vec();
        let raw = raw.clone();
        tasks.push(tokio::spawn(async move { insert(&raw, &chunk).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    rows.push(Row {
        name: "raw ClickHouse insert, 8 tasks".into(),
        events: staged.len(),
        elapsed: started.elapsed(),
        latencies: vec![],
        baseline: 4,
    });
    let staged = staged_rows(simulated(simulated_events).collect());
    let started = Instant::now();
    for chunk in staged.chunks(100_000) {
        insert(&raw, chunk).await;
    }
    rows.push(Row {
        name: "raw ClickHouse insert, simulated hospital, 1 task".into(),
        events: staged.len(),
        elapsed: started.elapsed(),
        latencies: vec![],
        baseline: 5,
    });

    let rate = |r: &Row| r.events as f64 / r.elapsed.as_secs_f64();
    println!("\ningest benchmark: {n} vital-sign events (5 observations each), requests of {BATCH}, {IN_FLIGHT} in flight per stream");
    println!(
        "ClickHouse {} (hospital-testkit temp server); staging flush {} rows / {} ms\n",
        version.trim(),
        cfg.staging.flush_rows,
        cfg.staging.flush_interval_ms
    );
    println!("| path | events | seconds | events/s | ack p50 | ack p99 | vs raw insert |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let mut l = r.latencies.clone();
        l.sort();
        let (p50, p99) = if l.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1?}", percentile(&l, 0.50)),
                format!("{:.1?}", percentile(&l, 0.99)),
            )
        };
        let baseline = rate(&rows[r.baseline]);
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {} | {:.2} |",
            r.name,
            r.events,
            r.elapsed.as_secs_f64(),
            rate(r),
            p50,
            p99,
            rate(r) / baseline
        );
    }
    println!(
        "\npeak memory (VmHWM): hospital-platform process {} MiB; ClickHouse server {} MiB; this bench process (senders + generated events) {} MiB",
        platform_hwm / 1024,
        ch.pid().map(|p| vm_hwm_kib(&p.to_string())).unwrap_or(0) / 1024,
        vm_hwm_kib("self") / 1024
    );
    println!("ack latency: time from sending a request of {BATCH} events to its ack (durably staged). 'vs raw insert' compares 1 stream with 1 task and 8 streams with 8 tasks, of the same events.");
}

fn opts(endpoint: &str) -> SenderOptions {
    SenderOptions {
        endpoint: endpoint.into(),
        batch_size: BATCH,
        max_in_flight: IN_FLIGHT,
        ..Default::default()
    }
}

fn staged_rows(events: Vec<pb::ClinicalEvent>) -> Vec<StagedEvent> {
    let o = IngestOptions {
        max_events_per_request: usize::MAX,
        max_future_ms: 300_000,
    };
    let mut rows = ingest::prepare(
        IngestRequest {
            request_id: "raw".into(),
            events,
        },
        &o,
    )
    .unwrap()
    .rows;
    for (i, r) in rows.iter_mut().enumerate() {
        r.position = i as u64 + 1;
    }
    rows
}

async fn insert(client: &clickhouse::Client, rows: &[StagedEvent]) {
    let mut ins = client.insert::<StagedEvent>("events_raw").await.unwrap();
    for r in rows {
        ins.write(r).await.unwrap();
    }
    ins.end().await.unwrap();
}
