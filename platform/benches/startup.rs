//! Start-up benchmark: what the platform's start-up and `GetWarehouseStatus` cost after
//! a day and after a year of the simulated hospital. For each period: simulate it
//! (`hospital_client::simulate`, after two warm-up weeks so that the wards are full),
//! stage every event straight into `staging.events` (the staging writer's rows, made by
//! `ingest::prepare`), run the warehouse load, then time each part of a start-up as
//! `server::start` runs it (schema migrate on a current schema, the staging writer's
//! index of committed keys, the census load, the NEWS2 state load) and the status, each
//! with the rows ClickHouse read for it (`system.query_log`, the clients log their
//! queries), ClickHouse's peak memory per query, and the peak memory of the platform process started on it.
//!
//! Run: `cargo bench -p hospital-platform --bench startup` (BENCH_DAYS=1,365 by default;
//! BENCH_DAYS=1,30 for a quick run). Starts its own ClickHouse server (hospital-testkit)
//! per period in a temp directory.

#[allow(dead_code)] // not every bench uses every helper
mod common;
use common::{now_secs, vm_hwm_kib};

use std::future::Future;
use std::time::{Duration, Instant};

use clickhouse::Client;
use hospital_client::simulate::{SimOptions, Simulator};
use hospital_platform::batch::WarehouseLoader;
use hospital_platform::config::{ClickHouseConfig, Config};
use hospital_platform::ingest::{self, IngestOptions};
use hospital_platform::realtime::alerts::AlertState;
use hospital_platform::realtime::bus::Bus;
use hospital_platform::realtime::census::CensusState;
use hospital_platform::realtime::snapshot::Snapshot;
use hospital_platform::staging::{StagedEvent, StagingWriter, WriterOptions};
use hospital_platform::warehouse::bookkeeping::{self, PIPELINE};
use hospital_platform::{db, schema};
use hospital_proto::ingest::IngestRequest;
use hospital_proto::realtime::census_service_client::CensusServiceClient;
use hospital_proto::realtime::GetCensusRequest;
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Staged rows inserted per insert.
const STAGE_BATCH: usize = 50_000;

fn main() {
    let days: Vec<i64> = std::env::var("BENCH_DAYS")
        .unwrap_or_else(|_| "1,365".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .filter(|d| *d > 0)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let mut version = String::new();
    for d in days {
        let (v, r) = rt.block_on(period(d));
        version = v;
        rows.extend(r);
    }
    println!("\nstart-up benchmark: the simulated hospital (90 ED arrivals a day, two warm-up weeks), staged and loaded into the warehouse, then each start-up part timed on its own");
    println!("ClickHouse {} (hospital-testkit temp server)\n", version.trim());
    println!("| period | staged events | part | ms | queries | rows read | MiB read | ClickHouse peak MiB | platform peak MiB |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let log = r.log.map_or_else(
            || "- | - | - | -".to_string(),
            |l| {
                format!(
                    "{} | {} | {:.1} | {:.1}",
                    l.queries,
                    l.read_rows,
                    l.read_bytes as f64 / MIB,
                    l.memory_max as f64 / MIB
                )
            },
        );
        let peak = r
            .peak_kib
            .map_or("-".to_string(), |k| format!("{:.0}", k as f64 / 1024.0));
        println!(
            "| {} | {} | {} | {:.1} | {log} | {peak} |",
            r.period,
            r.events,
            r.part,
            r.elapsed.as_secs_f64() * 1000.0,
        );
    }
    println!("\nEach part runs alone, in this process, with clients that log their queries: rows read, MiB read and ClickHouse peak are the sum, sum and maximum over the part's queries in system.query_log. 'whole start-up' is the hospital-platform binary started on the loaded warehouse, timed until it answers GetCensus; platform peak MiB is its VmHWM then.");
}

const MIB: f64 = 1024.0 * 1024.0;

struct Row {
    period: String,
    events: usize,
    part: &'static str,
    elapsed: Duration,
    log: Option<Logged>,
    peak_kib: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, clickhouse::Row, Deserialize)]
struct Logged {
    queries: u64,
    read_rows: u64,
    read_bytes: u64,
    memory_max: u64,
}

/// The queries logged since `from` (ClickHouse's clock, seconds; only the clients under
/// test log theirs).
async fn logged(admin: &Client, from: u32) -> Logged {
    admin.query("SYSTEM FLUSH LOGS").execute().await.unwrap();
    admin
        .query(
            "SELECT count() AS n, sum(read_rows) AS r, sum(read_bytes) AS b, max(memory_usage) AS m \
             FROM system.query_log WHERE toUInt8(type) = 2 AND query_start_time >= toDateTime(?)",
        )
        .bind(from)
        .fetch_one()
        .await
        .unwrap()
}

/// Runs one start-up part alone in its second of ClickHouse's clock, measuring its time
/// and its logged queries.
async fn measure<T, F: Future<Output = T>>(admin: &Client, work: F) -> (T, Duration, Logged) {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let from: u32 = admin.query("SELECT toUInt32(now())").fetch_one().await.unwrap();
    let started = Instant::now();
    let out = work.await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    (out, elapsed, logged(admin, from).await)
}

/// `days` of the simulated hospital ending now, after two quiet warm-up weeks.
fn simulate(days: i64) -> impl Iterator<Item = hospital_proto::events::ClinicalEvent> {
    let now = now_secs();
    let start = (now - days * 86_400).div_euclid(86_400) * 86_400;
    Simulator::new(SimOptions {
        seed: 7,
        start_secs: start,
        end_secs: Some(now - 60),
        warm_up_days: 14,
        ..Default::default()
    })
}

/// Stages the period's events as the staging writer would (positions 1, 2, ...).
async fn stage(staging: &Client, days: i64) -> usize {
    let opts = IngestOptions {
        max_events_per_request: usize::MAX,
        max_future_ms: 300_000,
    };
    let mut events = simulate(days).peekable();
    let mut position = 0u64;
    while events.peek().is_some() {
        let batch: Vec<_> = events.by_ref().take(STAGE_BATCH).collect();
        let prepared = ingest::prepare(
            IngestRequest {
                request_id: "bench".into(),
                events: batch,
            },
            &opts,
        )
        .unwrap();
        assert!(
            prepared.ack.rejections.is_empty(),
            "{:?}",
            &prepared.ack.rejections[..1]
        );
        let mut insert = staging.insert::<StagedEvent>("events").await.unwrap();
        for mut row in prepared.rows {
            position += 1;
            row.position = position;
            insert.write(&row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    position as usize
}

async fn period(days: i64) -> (String, Vec<Row>) {
    let ch = hospital_testkit::ClickHouseServer::start().expect("start ClickHouse");
    let cfg = ClickHouseConfig {
        url: ch.url(),
        timeout_ms: 60_000,
        ..ClickHouseConfig::default()
    };
    let admin = db::client(&cfg);
    schema::migrate(&admin).await.unwrap();
    let state_dir = ch.data_dir().join("platform-state");
    let version = ch.query("SELECT version()").unwrap_or_default();
    let period = if days == 1 {
        "1 day".to_string()
    } else {
        format!("{days} days")
    };

    let started = Instant::now();
    let events = stage(&db::client_for(&cfg, "staging"), days).await;
    let staged_in = started.elapsed();
    let (_committed_tx, committed) = tokio::sync::watch::channel(events as u64);
    let loader = WarehouseLoader::new(
        &hospital_platform::db::Databases::new(&cfg),
        committed,
        Config::default().batch.chunk_events,
    );
    let started = Instant::now();
    let summary = loader.run(false, None).await.unwrap();
    eprintln!(
        "{period}: {events} events staged in {:.1?}, loaded in {:.1?} ({} loaded, {} load errors)",
        staged_in,
        started.elapsed(),
        summary.events_loaded,
        summary.load_errors
    );
    // Let ClickHouse finish merging the load's parts, as it would before a restart.
    for table in [
        "fact_encounter",
        "fact_bed_status",
        "fact_vital_sign",
        "fact_vital_sign_set",
    ] {
        admin
            .query(&format!("OPTIMIZE TABLE warehouse.{table}"))
            .execute()
            .await
            .unwrap();
    }

    // The clients of the start-up, logging their queries.
    let logging = |c: Client| c.with_setting("log_queries", "1");
    let admin_log = logging(db::client(&cfg));
    let staging_log = logging(db::client_for(&cfg, "staging"));
    let warehouse_log = logging(db::client_for(&cfg, "warehouse"));

    let mut rows = Vec::new();
    let mut push = |part, elapsed, log: Logged| {
        rows.push(Row {
            period: period.clone(),
            events,
            part,
            elapsed,
            log: Some(log),
            peak_kib: None,
        })
    };
    let (_, t, log) = measure(&admin, schema::migrate(&admin_log)).await;
    push("schema migrate", t, log);

    let opts = WriterOptions {
        flush_rows: 10_000,
        flush_interval: Duration::from_millis(50),
        queue_capacity: 16,
        insert_timeout: Duration::from_secs(60),
        state_dir: state_dir.clone(),
    };
    let (writer, t, log) = measure(
        &admin,
        StagingWriter::start(staging_log.clone(), opts.clone(), Bus::new(16)),
    )
    .await;
    push("staging key index: first start (built from staging)", t, log);
    writer.unwrap().shutdown().await;
    let (writer, t, log) = measure(&admin, StagingWriter::start(staging_log.clone(), opts, Bus::new(16))).await;
    push("staging key index: restart", t, log);
    writer.unwrap().shutdown().await;

    let (census, t, log) = measure(&admin, CensusState::load(&warehouse_log)).await;
    push("census load", t, log);
    drop(census.unwrap());

    let (alerts, t, log) = measure(&admin, AlertState::load(&warehouse_log)).await;
    push("NEWS2 load from the warehouse (no local state)", t, log);
    drop(alerts.unwrap());

    // GetWarehouseStatus: the watermark, the last run and the rows stored per table.
    let status = async {
        bookkeeping::read_watermark(&warehouse_log, PIPELINE).await.unwrap();
        bookkeeping::last_run(&warehouse_log, PIPELINE).await.unwrap();
        bookkeeping::table_rows(&warehouse_log).await.unwrap()
    };
    let (_, t, log) = measure(&admin, status).await;
    push("GetWarehouseStatus", t, log);

    // The whole start-up, as its own process so that its memory is measured alone:
    // first with no local state (the key index and the NEWS2 state built from staging
    // and the warehouse), then again on the local state the first one left at shutdown.
    let _ = std::fs::remove_dir_all(&state_dir);
    let (elapsed, peak_kib) = whole_start_up(&ch, &state_dir).await;
    rows.push(Row {
        period: period.clone(),
        events,
        part: "whole start-up, no local state (hospital-platform process)",
        elapsed,
        log: None,
        peak_kib: Some(peak_kib),
    });
    let snapshot = async {
        let store = Snapshot::open(&state_dir).await.unwrap();
        let saved = store
            .load(&staging_log)
            .await
            .unwrap()
            .expect("a snapshot saved at shutdown");
        AlertState::restore(saved.patients, 0).unwrap()
    };
    let (state, t, log) = measure(&admin, snapshot).await;
    eprintln!("{period}: the snapshot holds {} patients", state.patient_count());
    push_row(&mut rows, &period, events, "NEWS2 load from the local snapshot", t, log);
    let (elapsed, peak_kib) = whole_start_up(&ch, &state_dir).await;
    rows.push(Row {
        period: period.clone(),
        events,
        part: "whole start-up, restart on local state (hospital-platform process)",
        elapsed,
        log: None,
        peak_kib: Some(peak_kib),
    });
    (version, rows)
}

fn push_row(rows: &mut Vec<Row>, period: &str, events: usize, part: &'static str, elapsed: Duration, log: Logged) {
    rows.push(Row {
        period: period.to_string(),
        events,
        part,
        elapsed,
        log: Some(log),
        peak_kib: None,
    });
}

/// Starts the hospital-platform binary on the loaded warehouse, times it until it
/// answers GetCensus, reads its peak memory, and stops it with SIGTERM (a graceful
/// shutdown, which saves the real-time snapshot).
async fn whole_start_up(ch: &hospital_testkit::ClickHouseServer, state_dir: &std::path::Path) -> (Duration, u64) {
    let port = hospital_testkit::free_port();
    let started = Instant::now();
    let mut platform = std::process::Command::new(env!("CARGO_BIN_EXE_hospital-platform"))
        .env("HOSPITAL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOSPITAL__CLICKHOUSE__URL", ch.url())
        .env("HOSPITAL__BATCH__INTERVAL_SECS", "0")
        .env("HOSPITAL__STATE__DIR", state_dir)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hospital-platform");
    // Started when it answers a census request (the port is bound before the loads).
    loop {
        assert!(platform.try_wait().unwrap().is_none(), "hospital-platform exited");
        let answered = match CensusServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(mut c) => c.get_census(GetCensusRequest::default()).await.is_ok(),
            Err(_) => false,
        };
        if answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let peak_kib = vm_hwm_kib(&platform.id().to_string());
    let _ = std::process::Command::new("kill")
        .arg(platform.id().to_string())
        .status();
    let status = platform.wait().unwrap();
    assert!(status.success(), "hospital-platform did not stop cleanly: {status}");
    (elapsed, peak_kib)
}
