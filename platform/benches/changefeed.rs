//! Change-feed catch-up benchmark: BENCH_EVENTS events (1M by default) staged straight
//! into `staging.events` with the `clickhouse` crate, then BENCH_SUBSCRIBERS (10)
//! subscribers catching up from position 0 at once over gRPC. Prints each subscriber's
//! throughput, the rows ClickHouse read per catch-up chunk and its memory per chunk
//! (from `system.query_log`), next to the baseline measured in the same run: one query
//! of the old shape (`position > 0 ORDER BY position LIMIT n`, which ClickHouse 18.16
//! answers by reading every row after the position), and peak memory.
//!
//! Run: `cargo bench -p hospital-platform --bench changefeed` (BENCH_EVENTS=20000 for a
//! quick run). Starts its own ClickHouse server (hospital-testkit) in a temp directory;
//! the change feed is served in this process, with its staging client logging queries.

#[allow(dead_code)] // not every bench uses every helper
mod common;
use common::{now_secs, vm_hwm_kib};

use std::sync::Arc;
use std::time::{Duration, Instant};

use hospital_platform::config::ClickHouseConfig;
use hospital_platform::realtime::bus::Bus;
use hospital_platform::realtime::changefeed::ChangeFeedApi;
use hospital_platform::realtime::follow::CATCH_UP_CHUNK;
use hospital_platform::staging::StagedEvent;
use hospital_platform::{db, schema};
use hospital_proto::events::{self as pb, clinical_event::Payload};
use hospital_proto::realtime::change_feed_service_client::ChangeFeedServiceClient;
use hospital_proto::realtime::change_feed_service_server::ChangeFeedServiceServer;
use hospital_proto::realtime::SubscribeRequest;
use prost::Message;
use prost_types::Timestamp;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows per direct insert while staging.
const INSERT_ROWS: usize = 100_000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let n = env_or("BENCH_EVENTS", 1_000_000) as u64;
    let subscribers = env_or("BENCH_SUBSCRIBERS", 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, subscribers));
}

/// The staged row of a vital-signs set at `position` (five observations, as a bedside
/// monitor sends).
fn staged(position: u64, now: i64) -> StagedEvent {
    let occurred = now - 86_400 + (position as i64 % 86_400);
    let event = pb::ClinicalEvent {
        event_id: format!("bench-{position}"),
        source_system: "bench-eobs".into(),
        occurred_at: Some(Timestamp {
            seconds: occurred,
            nanos: 0,
        }),
        patient: Some(pb::PatientRef {
            mrn: format!("MRN{}", position % 5_000),
            assigning_authority: "HOSP".into(),
        }),
        payload: Some(Payload::VitalSigns(pb::VitalSigns {
            encounter_id: format!("ENC{}", position % 5_000),
            observations: [
                ("9279-1", 16.0, "/min"),
                ("59408-5", 97.0, "%"),
                ("8480-6", 120.0, "mm[Hg]"),
                ("8867-4", 72.0, "/min"),
                ("8310-5", 37.0, "Cel"),
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
    };
    let payload = event.encode_to_vec();
    StagedEvent {
        position,
        event_id: event.event_id,
        source_system: event.source_system,
        kind: "vital_signs".into(),
        patient_mrn: format!("MRN{}", position % 5_000),
        patient_authority: "HOSP".into(),
        occurred_at_ms: occurred * 1000,
        received_at_ms: now * 1000,
        raw: payload.clone(),
        payload,
    }
}

/// Stages positions 1..=n, in inserts of INSERT_ROWS rows.
async fn stage(client: &clickhouse::Client, n: u64) {
    let now = now_secs();
    let mut next = 1;
    while next <= n {
        let last = (next + INSERT_ROWS as u64 - 1).min(n);
        let mut insert = client.insert::<StagedEvent>("events").await.unwrap();
        for p in next..=last {
            insert.write(&staged(p, now)).await.unwrap();
        }
        insert.end().await.unwrap();
        next = last + 1;
    }
}

/// Read rows and memory of the finished queries whose text matches `like` (`type` is
/// UInt8 in 18.16 and an Enum8 later: 2 is QueryFinish in both).
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Logged {
    queries: u64,
    rows_avg: f64,
    rows_max: u64,
    memory_max: u64,
}

async fn logged(admin: &clickhouse::Client, like: &str, not_like: &str) -> Logged {
    admin
        .query(
            "SELECT count() AS queries, avg(read_rows) AS rows_avg, max(read_rows) AS rows_max, \
             max(memory_usage) AS memory_max FROM system.query_log \
             WHERE toUInt8(type) = 2 AND query LIKE ? AND query NOT LIKE ?",
        )
        .bind(like)
        .bind(not_like)
        .fetch_one()
        .await
        .unwrap()
}

async fn run(n: u64, subscribers: usize) {
    let ch = hospital_testkit::ClickHouseServer::start().expect("start ClickHouse");
    let cfg = ClickHouseConfig {
        url: ch.url(),
        ..ClickHouseConfig::default()
    };
    let admin = db::client(&cfg);
    schema::migrate(&admin).await.unwrap();
    let staging = db::client_for(&cfg, "staging");
    let version = ch.query("SELECT version()").unwrap_or_default();

    let started = Instant::now();
    stage(&staging, n).await;
    let staging_secs = started.elapsed().as_secs_f64();

    // The change feed, served on a real socket; its staging client logs its queries.
    let logging = staging.clone().with_setting("log_queries", "1");
    let (_committed_tx, committed) = tokio::sync::watch::channel(n);
    let bus = Bus::new(16);
    let shutdown = CancellationToken::new();
    let api = ChangeFeedApi {
        bus: bus.clone(),
        staging: logging.clone(),
        committed,
        ward_of: Arc::new(|_| None),
        shutdown: shutdown.clone(),
        catch_up: Arc::default(),
    };
    let catch_up = api.catch_up.clone();
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().unwrap();
    let stop = shutdown.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ChangeFeedServiceServer::new(api))
            .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await }),
    );

    // All subscribers catch up from 0 at once.
    let endpoint = format!("http://{addr}");
    let gate = Arc::new(tokio::sync::Barrier::new(subscribers));
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| {
            let endpoint = endpoint.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut client = ChangeFeedServiceClient::new(hospital_client::connect(&endpoint).await.unwrap());
                gate.wait().await;
                let started = Instant::now();
                let mut feed = client
                    .subscribe(SubscribeRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                let mut expected = 1;
                while expected <= n {
                    let e = feed.message().await.unwrap().expect("stream open");
                    assert_eq!(e.position, expected, "no gap, no repeat");
                    expected += 1;
                }
                started.elapsed()
            })
        })
        .collect();
    let mut elapsed: Vec<Duration> = Vec::new();
    for t in tasks {
        elapsed.push(t.await.unwrap());
    }
    shutdown.cancel();
    let _ = server.await;
    let ch_hwm_kib = ch.pid().map(|p| vm_hwm_kib(&p.to_string())).unwrap_or(0);

    // The old shape, once, for comparison.
    let _ = logging
        .query("SELECT ?fields FROM events WHERE position > ? ORDER BY position LIMIT ?")
        .bind(0u64)
        .bind(CATCH_UP_CHUNK)
        .fetch_all::<StagedEvent>()
        .await
        .unwrap();
    admin.query("SYSTEM FLUSH LOGS").execute().await.unwrap();
    let chunks = logged(&admin, "%FROM events WHERE position > % AND position <= %", "%LIMIT%").await;
    let old = logged(
        &admin,
        "%FROM events WHERE position > % ORDER BY position LIMIT %",
        "%<=%",
    )
    .await;

    println!(
        "\nchange-feed catch-up benchmark: {n} staged vital-sign events, {subscribers} subscribers from position 0 at once over gRPC"
    );
    println!(
        "ClickHouse {} (hospital-testkit temp server); catch-up chunk {CATCH_UP_CHUNK} positions; staged in {staging_secs:.1} s by direct insert\n",
        version.trim()
    );
    println!("| subscriber | events | seconds | events/s |");
    println!("|---|---:|---:|---:|");
    for (i, e) in elapsed.iter().enumerate() {
        println!(
            "| {} | {n} | {:.2} | {:.0} |",
            i + 1,
            e.as_secs_f64(),
            n as f64 / e.as_secs_f64()
        );
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("\n| query | queries | rows read per query (avg) | rows read per query (max) | ClickHouse memory per query (max) |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| catch-up chunk: position > a AND position <= b | {} | {:.0} | {} | {:.1} MiB |",
        chunks.queries,
        chunks.rows_avg,
        chunks.rows_max,
        mib(chunks.memory_max)
    );
    println!(
        "| old shape, once: position > 0 ORDER BY position LIMIT {CATCH_UP_CHUNK} | {} | {:.0} | {} | {:.1} MiB |",
        old.queries,
        old.rows_avg,
        old.rows_max,
        mib(old.memory_max)
    );
    println!(
        "\ncatch-up reads counted by the followers: {} chunks, {} rows ({} subscribers x {n})",
        catch_up.chunks(),
        catch_up.rows(),
        subscribers
    );
    println!(
        "peak memory (VmHWM): this process (change feed server + {subscribers} subscribers) {} MiB; ClickHouse server {} MiB after staging and catch-up, {} MiB after the old-shape query",
        vm_hwm_kib("self") / 1024,
        ch_hwm_kib / 1024,
        ch.pid().map(|p| vm_hwm_kib(&p.to_string())).unwrap_or(0) / 1024
    );
}
