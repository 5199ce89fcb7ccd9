//! Shared helpers of the platform's integration tests: a real ClickHouse server per
//! test (hospital-testkit), the platform in-process on 127.0.0.1:0 or as a real process,
//! and small query helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hospital_platform::config::{ClickHouseConfig, Config};
use hospital_platform::realtime::bus::Bus;
use hospital_platform::server::{self, Platform};
use hospital_platform::staging::{StagedEvent, StagingWriter, WriterHandle, WriterOptions};
use hospital_platform::{db, schema};
use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::ingest_service_client::IngestServiceClient;
use hospital_proto::ingest::{IngestRequest, IngestResponse};
use hospital_testkit::ClickHouseServer;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Wall-clock seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    hospital_platform::now_ms() / 1000
}

/// `days` of a simulated hospital seeing `ed_arrivals_per_day` (and planned admissions in
/// the default proportion), from a fixed Monday in the past, so that nothing lies in the
/// future; its systems are named `<prefix>-adt`, `<prefix>-eobs`, ...
pub fn simulated(days: i64, ed_arrivals_per_day: f64, seed: u64, prefix: &str) -> Vec<ClinicalEvent> {
    use hospital_client::simulate::{SimOptions, Simulator};
    let defaults = SimOptions::default();
    let start = defaults.start_secs;
    Simulator::new(SimOptions {
        seed,
        start_secs: start,
        end_secs: Some(start + days * 86_400),
        ed_arrivals_per_day,
        electives_per_weekday: defaults.electives_per_weekday * ed_arrivals_per_day / defaults.ed_arrivals_per_day,
        source_prefix: prefix.into(),
        warm_up_days: 0,
    })
    .collect()
}

pub fn clickhouse() -> ClickHouseServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    ClickHouseServer::start().expect("start a ClickHouse server (is clickhouse-server installed?)")
}

/// Configuration for a test platform: ephemeral port, no schedule, small flushes.
pub fn config(ch: &ClickHouseServer) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.shutdown_grace_ms = 5_000;
    c.clickhouse.url = ch.url();
    c.clickhouse.timeout_ms = 5_000;
    c.batch.interval_secs = 0;
    c.staging.flush_interval_ms = 20;
    c.state.dir = state_dir(ch);
    c
}

/// The platform's local state directory for a test server: beside the ClickHouse data,
/// so a platform restarted on the same server finds it, and it goes with the server.
pub fn state_dir(ch: &ClickHouseServer) -> std::path::PathBuf {
    ch.data_dir().join("platform-state")
}

pub async fn start_platform(ch: &ClickHouseServer) -> Platform {
    server::start(config(ch)).await.expect("platform starts")
}

pub fn endpoint(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub async fn ingest_client(addr: SocketAddr) -> IngestServiceClient<Channel> {
    IngestServiceClient::new(hospital_client::connect(&endpoint(addr)).await.expect("connect"))
}

/// A sender half and an ack stream: for tests that must see every ack themselves.
pub async fn open_stream(addr: SocketAddr) -> (mpsc::Sender<IngestRequest>, tonic::Streaming<IngestResponse>) {
    let (tx, rx) = mpsc::channel(64);
    let acks = ingest_client(addr)
        .await
        .ingest(ReceiverStream::new(rx))
        .await
        .expect("open ingest stream")
        .into_inner();
    (tx, acks)
}

/// A full NEWS2 vital-signs set: respiration, SpO2, systolic BP, pulse and temperature
/// (`[rr, spo2, sbp, hr, temp]`), consciousness alert, on air or oxygen, on `scale`.
pub fn full_vital_set(
    encounter_id: &str,
    [rr, spo2, sbp, hr, temp]: [f64; 5],
    oxygen: bool,
    scale: hospital_proto::events::Spo2Scale,
) -> hospital_proto::events::clinical_event::Payload {
    use hospital_proto::events as pb;
    let o = |c: &str, v: f64, u: &str| pb::Observation {
        loinc_code: c.into(),
        value: v,
        unit: u.into(),
    };
    pb::clinical_event::Payload::VitalSigns(pb::VitalSigns {
        encounter_id: encounter_id.into(),
        observations: vec![
            o("9279-1", rr, "/min"),
            o("59408-5", spo2, "%"),
            o("8480-6", sbp, "mm[Hg]"),
            o("8867-4", hr, "/min"),
            o("8310-5", temp, "Cel"),
        ],
        consciousness: pb::Consciousness::Alert as i32,
        supplemental_oxygen: Some(oxygen),
        spo2_scale: scale as i32,
    })
}

/// Streams `events` through the CLI's at-least-once sender in requests of `batch_size`
/// and returns what it achieved once every request is answered.
pub async fn send_through_sender(
    addr: SocketAddr,
    events: Vec<ClinicalEvent>,
    batch_size: usize,
) -> hospital_client::sender::SendReport {
    hospital_client::sender::send_events(
        events,
        &hospital_client::sender::SenderOptions {
            endpoint: endpoint(addr),
            batch_size,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .expect("the sender streams every event")
}

pub fn request(id: impl ToString, events: &[ClinicalEvent]) -> IngestRequest {
    IngestRequest {
        request_id: id.to_string(),
        events: events.to_vec(),
    }
}

/// A single number from ClickHouse.
pub fn count(ch: &ClickHouseServer, sql: &str) -> u64 {
    let out = ch.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
}

/// The platform as a real process (for kill -9 tests).
pub struct PlatformProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl PlatformProcess {
    pub fn spawn(ch: &ClickHouseServer, port: u16) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hospital-platform"))
            .env("HOSPITAL__SERVER__LISTEN", addr.to_string())
            .env("HOSPITAL__CLICKHOUSE__URL", ch.url())
            .env("HOSPITAL__BATCH__INTERVAL_SECS", "0")
            .env("HOSPITAL__STATE__DIR", ch.data_dir().join("platform-state"))
            .env("HOSPITAL__STAGING__FLUSH_INTERVAL_MS", "20")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hospital-platform");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "platform did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PlatformProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real ClickHouse with the platform's schema and a running staging writer, for tests
/// of the stages behind staging (no gRPC).
pub struct StagingHarness {
    pub ch: ClickHouseServer,
    pub cfg: ClickHouseConfig,
    pub writer: StagingWriter,
}

impl StagingHarness {
    pub async fn start() -> Self {
        let ch = clickhouse();
        let cfg = ClickHouseConfig {
            url: ch.url(),
            timeout_ms: 10_000,
            ..ClickHouseConfig::default()
        };
        schema::migrate(&db::client(&cfg)).await.expect("migrations apply");
        let writer = Self::start_writer(&ch, &cfg).await;
        Self { ch, cfg, writer }
    }

    async fn start_writer(ch: &ClickHouseServer, cfg: &ClickHouseConfig) -> StagingWriter {
        StagingWriter::start(
            db::client_for(cfg, "staging"),
            WriterOptions {
                flush_rows: 10_000,
                flush_interval: Duration::from_millis(10),
                queue_capacity: 16,
                insert_timeout: Duration::from_secs(10),
                // Its own: a test may start a platform on the same server beside it.
                state_dir: ch.data_dir().join("harness-state"),
            },
            Bus::new(16),
        )
        .await
        .expect("staging writer starts")
    }

    /// Stops the writer and starts a new one on the same server and local state.
    pub async fn restart_writer(self) -> Self {
        let Self { ch, cfg, writer } = self;
        writer.shutdown().await;
        let writer = Self::start_writer(&ch, &cfg).await;
        Self { ch, cfg, writer }
    }

    pub fn handle(&self) -> WriterHandle {
        self.writer.handle()
    }

    /// Stages `events` as they are (no validation); returns the last position.
    pub async fn stage(&self, events: &[ClinicalEvent]) -> u64 {
        self.stage_rows(events.iter().map(staged).collect()).await
    }

    pub async fn stage_rows(&self, rows: Vec<StagedEvent>) -> u64 {
        self.handle().commit(rows).await.expect("commit").last_position
    }
}

/// The staging row of `e`, without validation (tests stage invalid rows too).
pub fn staged(e: &ClinicalEvent) -> StagedEvent {
    let (mrn, authority) = e
        .patient
        .as_ref()
        .map(|p| (p.mrn.clone(), p.assigning_authority.clone()))
        .unwrap_or_default();
    let occurred_at_ms = e.occurred_at.as_ref().unwrap().seconds * 1000;
    StagedEvent {
        position: 0,
        event_id: e.event_id.clone(),
        source_system: e.source_system.clone(),
        kind: hospital_platform::ingest::kind_of(e.payload.as_ref().unwrap()).into(),
        patient_mrn: mrn,
        patient_authority: authority,
        occurred_at_ms,
        received_at_ms: occurred_at_ms,
        payload: e.encode_to_vec(),
        raw: e.encode_to_vec(),
    }
}

/// The shared hospital data sets (`../shared/data` beside the checkout, or
/// `$HOSPITAL_SHARED_DATA`). Tests that need them fail when they are missing.
#[allow(unused_imports)] // not every test binary reads shared data
pub use hospital_testkit::shared_data;

/// Runs one warehouse load through `BatchService` and waits for it to finish.
pub async fn run_warehouse_load(addr: SocketAddr, full_reload: bool) {
    use hospital_proto::batch::batch_service_client::BatchServiceClient;
    use hospital_proto::batch::RunWarehouseLoadRequest;
    let mut batch = BatchServiceClient::new(hospital_client::connect(&endpoint(addr)).await.unwrap());
    let mut progress = batch
        .run_warehouse_load(RunWarehouseLoadRequest { full_reload })
        .await
        .unwrap()
        .into_inner();
    while progress.message().await.expect("warehouse load succeeds").is_some() {}
}

/// Each scored patient's (score, band) by MRN, from GetScores.
pub async fn scores_of(addr: SocketAddr) -> std::collections::BTreeMap<String, (u32, i32)> {
    use hospital_proto::realtime::alert_service_client::AlertServiceClient;
    use hospital_proto::realtime::GetScoresRequest;
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    AlertServiceClient::new(channel)
        .get_scores(GetScoresRequest::default())
        .await
        .unwrap()
        .into_inner()
        .scores
        .into_iter()
        .map(|s| (s.patient.unwrap().mrn, (s.score, s.band)))
        .collect()
}
