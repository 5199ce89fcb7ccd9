//! Real-time latency benchmark: from the ingest call of a deteriorating vital-signs set to
//! the NEWS2 alert arriving at a subscriber (p50/p99), while background load streams at
//! a stated rate, next to a plain gRPC round trip (grpc.health.v1 Check) on the same
//! server in the same run.
//!
//! Run: `cargo bench -p hospital-platform --bench alerts`. BENCH_RATE (events/s of
//! background load, default 2000), BENCH_PROBES (default 200), BENCH_FLUSH_MS
//! (staging.flush_interval_ms, default 100).

mod common;
use common::{now_secs, percentile, vm_hwm_kib};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hospital_client::simulate::{SimOptions, Simulator};
use hospital_proto::events::{self as pb, clinical_event::Payload};
use hospital_proto::ingest::ingest_service_client::IngestServiceClient;
use hospital_proto::ingest::IngestRequest;
use hospital_proto::realtime::alert_service_client::AlertServiceClient;
use hospital_proto::realtime::SubscribeAlertsRequest;
use prost_types::Timestamp;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One vital-signs set of the probe patient: `sick` scores 7+ (high), otherwise 0.
fn probe_set(i: usize, sick: bool) -> pb::ClinicalEvent {
    let obs = |c: &str, v: f64, u: &str| pb::Observation {
        loinc_code: c.into(),
        value: v,
        unit: u.into(),
    };
    let (rr, spo2, sbp, hr, t) = if sick {
        (28.0, 90.0, 88.0, 135.0, 39.5)
    } else {
        (16.0, 98.0, 120.0, 70.0, 37.0)
    };
    pb::ClinicalEvent {
        event_id: format!("probe-{i}"),
        source_system: "bench-probe".into(),
        occurred_at: Some(Timestamp {
            seconds: now_secs() - 1,
            nanos: 0,
        }),
        patient: Some(pb::PatientRef {
            mrn: "PROBE-1".into(),
            assigning_authority: "HOSP".into(),
        }),
        payload: Some(Payload::VitalSigns(pb::VitalSigns {
            encounter_id: "PROBE-ENC".into(),
            observations: vec![
                obs("9279-1", rr, "/min"),
                obs("59408-5", spo2, "%"),
                obs("8480-6", sbp, "mm[Hg]"),
                obs("8867-4", hr, "/min"),
                obs("8310-5", t, "Cel"),
            ],
            consciousness: pb::Consciousness::Alert as i32,
            supplemental_oxygen: Some(false),
            spo2_scale: pb::Spo2Scale::Spo2Scale1 as i32,
        })),
    }
}

fn main() {
    let rate: usize = env_or("BENCH_RATE", 2_000);
    let probes: usize = env_or("BENCH_PROBES", 200);
    let flush_ms: u64 = env_or("BENCH_FLUSH_MS", 100);

    let ch = hospital_testkit::ClickHouseServer::start().expect("start ClickHouse");
    let port = hospital_testkit::free_port();
    let mut platform = std::process::Command::new(env!("CARGO_BIN_EXE_hospital-platform"))
        .env("HOSPITAL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOSPITAL__CLICKHOUSE__URL", ch.url())
        .env("HOSPITAL__BATCH__INTERVAL_SECS", "0")
        .env("HOSPITAL__STATE__DIR", ch.data_dir().join("platform-state"))
        .env("HOSPITAL__STAGING__FLUSH_INTERVAL_MS", flush_ms.to_string())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hospital-platform");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(platform.try_wait().unwrap().is_none(), "hospital-platform exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");

    let load_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load_sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Background load, open loop: a dedicated thread paces requests of rate/100 events
    // every 10 ms with std sleeps (tokio's 1 ms timer would send bursts) and hands each to
    // a runtime of its own, so a slow ack never delays the next request.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let load = {
        let endpoint = endpoint.clone();
        let stop = load_stop.clone();
        let sent = load_sent.clone();
        let handle = load_rt.handle().clone();
        std::thread::spawn(move || {
            // The simulated hospital's last year, in time order and none in the future,
            // drawn as it is sent: at about 4,000 events a day, more than a run sends.
            let now = now_secs();
            let mut events = Simulator::new(SimOptions {
                start_secs: now - 365 * 86_400,
                end_secs: Some(now),
                ..Default::default()
            });
            let client =
                handle.block_on(async { IngestServiceClient::new(hospital_client::connect(&endpoint).await.unwrap()) });
            let per_tick = (rate / 100).max(1);
            let start = Instant::now();
            for tick in 0u64.. {
                let chunk: Vec<_> = events.by_ref().take(per_tick).collect();
                if chunk.is_empty() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_millis(10 * tick);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let req = IngestRequest {
                    request_id: tick.to_string(),
                    events: chunk,
                };
                let mut client = client.clone();
                let sent = sent.clone();
                handle.spawn(async move {
                    if let Ok(ack) = client.ingest_batch(req).await {
                        sent.fetch_add(
                            ack.into_inner().committed_event_ids.len(),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                });
            }
        })
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (alert_lat, ack_lat, rtt, elapsed) = rt.block_on(async {
        let channel = hospital_client::connect(&endpoint).await.unwrap();
        // The subscriber records when each probe's alert arrives.
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let mut alerts = AlertServiceClient::new(channel.clone())
            .subscribe_alerts(SubscribeAlertsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let recorder = {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                while let Ok(Some(alert)) = alerts.message().await {
                    if alert.source_system == "bench-probe" {
                        arrivals.lock().unwrap().insert(alert.source_event_id, Instant::now());
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut ingest = IngestServiceClient::new(channel.clone());
        let mut health = HealthClient::new(channel);
        let mut sent_at = HashMap::new();
        let mut ack_lat = Vec::new();
        let mut rtt = Vec::new();
        let started = Instant::now();
        for i in 0..probes * 2 {
            // Alternate a normal set and a deteriorated one: each deteriorated set moves
            // the patient from low to high, which raises an alert.
            let sick = i % 2 == 1;
            let t0 = Instant::now();
            ingest
                .ingest_batch(IngestRequest {
                    request_id: format!("probe-{i}"),
                    events: vec![probe_set(i, sick)],
                })
                .await
                .unwrap();
            ack_lat.push(t0.elapsed());
            if sick {
                sent_at.insert(format!("probe-{i}"), t0);
            }
            let t1 = Instant::now();
            health
                .check(HealthCheckRequest { service: String::new() })
                .await
                .unwrap();
            rtt.push(t1.elapsed());
            // Let the alert arrive before the next normal set resets the band.
            let id = format!("probe-{i}");
            let wait_until = Instant::now() + Duration::from_secs(5);
            while sick && !arrivals.lock().unwrap().contains_key(&id) && Instant::now() < wait_until {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        recorder.abort();
        let arrivals = arrivals.lock().unwrap();
        let mut alert_lat: Vec<Duration> = sent_at
            .iter()
            .filter_map(|(id, t0)| arrivals.get(id).map(|t| t.duration_since(*t0)))
            .collect();
        alert_lat.sort();
        ack_lat.sort();
        rtt.sort();
        assert_eq!(alert_lat.len(), probes, "every deteriorated probe raised an alert");
        (alert_lat, ack_lat, rtt, elapsed)
    });
    load_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    load_rt.shutdown_timeout(Duration::from_secs(5));
    let load_rate = load_sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    let platform_hwm = vm_hwm_kib(&platform.id().to_string());
    let _ = std::process::Command::new("kill")
        .arg(platform.id().to_string())
        .status();
    let _ = platform.wait();

    println!("\nalert latency benchmark: {probes} deteriorating probe sets, background load target {rate} events/s (achieved {load_rate:.0}/s), staging flush interval {flush_ms} ms, ClickHouse {}", ch.query("SELECT version()").unwrap_or_default().trim());
    println!("\n| path | n | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, l) in [
        ("ingest call -> NEWS2 alert at subscriber", &alert_lat),
        ("ingest call -> ack (durably staged)", &ack_lat),
        ("plain gRPC round trip (health Check)", &rtt),
    ] {
        println!(
            "| {name} | {} | {:.1?} | {:.1?} |",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99)
        );
    }
    println!(
        "\npeak memory (VmHWM): hospital-platform process {} MiB; ClickHouse server {} MiB; this bench process (simulated load, probes, subscriber) {} MiB",
        platform_hwm / 1024,
        ch.pid().map(|p| vm_hwm_kib(&p.to_string())).unwrap_or(0) / 1024,
        vm_hwm_kib("self") / 1024
    );
    println!("The alert path is the ack path (group commit: waits for the next flush) plus the bus, the NEWS2 state and the alert stream.");
}
