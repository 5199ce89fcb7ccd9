//! The sidecar's feature store and risk serving against their limits, measured in the
//! same run on the same data: a ClickHouse, the platform in-process filled with
//! `SIDECAR_BENCH_DAYS` (default 14) simulated days, and the sidecar serving over TCP on
//! 127.0.0.1.
//!
//! Rows, each beside its limit:
//! - training-set build (deterioration, every patient: read the facts, compute the
//!   features of every row, write a Lance version) vs a raw select of the same facts
//!   (the build's own queries, the rows fetched as RowBinary and not decoded);
//! - streaming `RiskService.Score` of feature vectors (real rows of that set, 64 in
//!   flight) vs a tonic echo of the same messages (a `RiskService` that answers each
//!   request with the response the real service gives, prepared once);
//! - `ScoreOne` of a feature vector, one call at a time, p50/p99 vs the echo's unary
//!   round trip;
//! - `ScoreOne` of a patient reference (the patient's facts read from the warehouse and
//!   the features computed) vs the raw select of that patient's facts;
//! - the risk model's fit vs scikit-learn's lbfgs on the same Lance set version
//!   (`ml/parity/parity.py`, python3 with scikit-learn and pylance).
//!
//! Peak memory is the process's VmHWM after each row (the platform, the sidecar and the
//! clients are all in this process; ClickHouse is not).
//!
//! `cargo bench -p hospital-ml --bench sidecar` (`SIDECAR_BENCH_N` streamed requests,
//! default 20000; a tenth as many unary calls).

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::Stream;
use hospital_ml::features::extract;
use hospital_ml::features::labels::Task;
use hospital_ml::server::{serve, Sidecar};
use hospital_proto::events::ClinicalEvent;
use hospital_proto::ml as pb;
use hospital_proto::ml::risk_service_client::RiskServiceClient;
use hospital_proto::ml::risk_service_server::{RiskService, RiskServiceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

mod common;
use common::{percentile, vm_hwm_mib};

const DAY: i64 = 86_400;
const IN_FLIGHT: usize = 64;

/// The limit: answers every request with a prepared response, doing nothing else.
struct Echo(pb::ScoreResponse);

type Streamed = Pin<Box<dyn Stream<Item = Result<pb::ScoreResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RiskService for Echo {
    type ScoreStream = Streamed;

    async fn score(&self, request: Request<Streaming<pb::ScoreRequest>>) -> Result<Response<Streamed>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let prepared = self.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = input.next().await {
                let mut out = prepared.clone();
                out.request_id = r.request_id;
                if tx.send(Ok(out)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn score_one(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        let mut out = self.0.clone();
        out.request_id = request.into_inner().request_id;
        Ok(Response::new(out))
    }

    async fn get_live_status(&self, _: Request<pb::GetLiveStatusRequest>) -> Result<Response<pb::LiveStatus>, Status> {
        Ok(Response::new(pb::LiveStatus::default()))
    }
}

async fn connect(addr: SocketAddr) -> RiskServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    RiskServiceClient::new(channel)
}

async fn serve_echo(prepared: pb::ScoreResponse) -> RiskServiceClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        Server::builder()
            .add_service(RiskServiceServer::new(Echo(prepared)))
            .serve_with_incoming(incoming),
    );
    connect(addr).await
}

fn by_vector(i: usize, values: &[f64]) -> pb::ScoreRequest {
    pb::ScoreRequest {
        request_id: i.to_string(),
        task: pb::Task::Deterioration24h as i32,
        input: Some(pb::score_request::Input::Features(pb::FeatureVector {
            values: values.to_vec(),
        })),
        model_version: 0,
    }
}

/// Seconds for `n` requests (cycling through `requests`) through one `Score` stream.
async fn stream(client: &mut RiskServiceClient<Channel>, requests: &[pb::ScoreRequest], n: usize) -> f64 {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let requests = requests.to_vec();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if tx.send(requests[i % requests.len()].clone()).await.is_err() {
                return;
            }
        }
    });
    let mut answers = client.score(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut got = 0;
    while let Some(a) = answers.message().await.unwrap() {
        assert!(a.error.is_empty(), "{}", a.error);
        got += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    sender.await.unwrap();
    assert_eq!(got, n);
    seconds
}

/// Sorted latencies of `n` `ScoreOne` calls, one after the other.
async fn unary(client: &mut RiskServiceClient<Channel>, requests: &[pb::ScoreRequest], n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = requests[i % requests.len()].clone();
        let start = Instant::now();
        let a = client.score_one(r).await.unwrap().into_inner();
        out.push(start.elapsed());
        assert!(a.error.is_empty());
    }
    out.sort();
    out
}

fn main() {
    let days: i64 = std::env::var("SIDECAR_BENCH_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let n: usize = std::env::var("SIDECAR_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(days, n));
}

async fn run(days: i64, n: usize) {
    let ch = hospital_testkit::ClickHouseServer::start().expect("ClickHouse");
    let mut c = hospital_platform::config::Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.clickhouse.url = ch.url();
    c.batch.interval_secs = 0;
    c.ingest.max_future_secs = 400 * DAY as u64;
    c.state.dir = ch.data_dir().join("platform-state");
    let platform = hospital_platform::server::start(c).await.expect("platform starts");
    let endpoint = format!("http://{}", platform.local_addr());
    use hospital_client::simulate::{SimOptions, Simulator};
    let start = SimOptions::default().start_secs;
    let events: Vec<ClinicalEvent> = Simulator::new(SimOptions {
        seed: 7,
        start_secs: start,
        end_secs: Some(start + days * DAY),
        warm_up_days: 3,
        ..SimOptions::default()
    })
    .collect();
    let sent = events.len();
    hospital_client::sender::send_events(
        events,
        &hospital_client::sender::SenderOptions {
            endpoint: endpoint.clone(),
            batch_size: 2_000,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .expect("sent");
    {
        use hospital_proto::batch::batch_service_client::BatchServiceClient;
        let mut batch = BatchServiceClient::new(hospital_client::connect(&endpoint).await.unwrap());
        let mut progress = batch
            .run_warehouse_load(hospital_proto::batch::RunWarehouseLoadRequest { full_reload: false })
            .await
            .unwrap()
            .into_inner();
        while progress.message().await.unwrap().is_some() {}
    }

    let data = tempfile::tempdir().unwrap();
    let warehouse = hospital_ml::warehouse_client(&ch.url(), "default", "");
    let sidecar = Sidecar::open(warehouse.clone(), data.path().to_path_buf()).unwrap();

    println!("sidecar benchmark: {days} simulated days ({sent} events), {n} streamed requests");
    if cfg!(debug_assertions) {
        println!("(built with debug assertions: not an optimised build; compare rows, not absolutes)");
    }
    println!();
    println!("| row | sidecar | limit | limit is | ratio (sidecar/limit speed) | VmHWM MiB |");
    println!("|---|---:|---:|---|---:|---:|");

    // Training-set build vs the raw select of the same facts.
    let keys = extract::patients_with_encounters(&warehouse).await.unwrap();
    let t = Instant::now();
    let raw_bytes = extract::history_bytes(&warehouse, &keys).await.unwrap();
    let raw = t.elapsed().as_secs_f64();
    let (tx, mut rx) = mpsc::channel(16);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let t = Instant::now();
    let built = hospital_ml::training::build(
        &warehouse,
        &sidecar.store,
        "bench",
        Task::Deterioration24h,
        i64::MIN,
        i64::MAX,
        tx,
    )
    .await
    .unwrap();
    let build = t.elapsed().as_secs_f64();
    drain.await.unwrap();
    let t = built.timings;
    println!(
        "| training-set build ({} patients, {} rows; waited {:.2} s reading, {:.2} s computing, {:.2} s writing) | {build:.2} s | {raw:.2} s | raw select of the same facts ({:.1} MiB RowBinary) | {:.2} | {:.0} |",
        keys.len(),
        built.progress.rows,
        t.reading,
        t.computing,
        t.writing,
        raw_bytes as f64 / 1_048_576.0,
        raw / build,
        vm_hwm_mib()
    );

    let m = sidecar
        .registry
        .train(
            &sidecar.store,
            Task::Deterioration24h,
            "bench",
            Some(built.version.version),
            hospital_ml::registry::default_options(),
            &hospital_ml::registry::L2_GRID,
        )
        .await
        .unwrap();
    // The fit beside scikit-learn's on the same Lance set version, split the same way.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/parity/parity.py");
    let l2 = m.hyperparameters["l2"].as_f64().unwrap_or(f64::NAN);
    let parity = std::process::Command::new("python3")
        .arg(script)
        .arg(data.path().join("training_sets/bench.lance"))
        .args(["--version", &built.version.version.to_string(), "--l2", &l2.to_string()])
        .output();
    match parity {
        Ok(out) if out.status.success() => {
            let sk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            println!(
                "| risk fit, the same Lance set (L2 {}): linfa AUROC {:.4} vs scikit-learn {:.4} | {:.3} s | {:.3} s | scikit-learn lbfgs (median of 5; python VmHWM {:.0} MiB) | {:.2} | {:.0} |",
                l2,
                m.model_report.auroc,
                sk["auroc"].as_f64().unwrap_or(f64::NAN),
                m.fit_seconds,
                sk["fit_seconds"].as_f64().unwrap_or(f64::NAN),
                sk["vmhwm_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0,
                sk["fit_seconds"].as_f64().unwrap_or(f64::NAN) / m.fit_seconds,
                vm_hwm_mib()
            );
        }
        Ok(out) => println!(
            "| risk fit vs scikit-learn | parity.py failed: {} | | | | |",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
        Err(e) => println!("| risk fit vs scikit-learn | python3: {e} | | | | |"),
    }
    let set = sidecar.store.open("bench", Some(built.version.version)).await.unwrap();
    let matrix = set.read_training_matrix().await.unwrap();
    let requests: Vec<pb::ScoreRequest> = matrix
        .x
        .rows()
        .into_iter()
        .take(1_000)
        .enumerate()
        .map(|(i, r)| by_vector(i, &r.to_vec()))
        .collect();

    let (bound, addr) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(
        sidecar.clone(),
        "127.0.0.1:0".parse().unwrap(),
        bound,
        futures::future::pending(),
    ));
    let mut real = connect(addr.await.unwrap()).await;
    let prepared = real.score_one(requests[0].clone()).await.unwrap().into_inner();
    let mut echo = serve_echo(prepared).await;

    // Warm both, then measure.
    stream(&mut real, &requests, 1_000).await;
    stream(&mut echo, &requests, 1_000).await;
    let real_s = stream(&mut real, &requests, n).await;
    let echo_s = stream(&mut echo, &requests, n).await;
    println!(
        "| streaming Score, {} features per vector, {IN_FLIGHT} in flight | {:.0} req/s | {:.0} req/s | tonic echo of the same messages | {:.2} | {:.0} |",
        m.model.feature_names.len(),
        n as f64 / real_s,
        n as f64 / echo_s,
        echo_s / real_s,
        vm_hwm_mib()
    );

    let calls = (n / 10).max(100);
    let real_l = unary(&mut real, &requests, calls).await;
    let echo_l = unary(&mut echo, &requests, calls).await;
    println!(
        "| ScoreOne by vector, p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs | unary echo round trip | p99 {:.2}x the echo | {:.0} |",
        percentile(&real_l, 50),
        percentile(&real_l, 99),
        percentile(&echo_l, 50),
        percentile(&echo_l, 99),
        percentile(&real_l, 99) / percentile(&echo_l, 99),
        vm_hwm_mib()
    );

    // One patient by reference: the warehouse read and the features, vs the raw read.
    let ids: Vec<(String, String)> = {
        let out = ch
            .query(
                "SELECT toString(patient_key), assigning_authority, mrn FROM warehouse.patient_identity FINAL \
                 WHERE patient_key IN (SELECT patient_key FROM warehouse.fact_vital_sign_set) LIMIT 200 FORMAT TSV",
            )
            .unwrap();
        out.lines()
            .map(|l| {
                let p: Vec<&str> = l.split('\t').collect();
                (p[0].to_string(), format!("{}\t{}", p[1], p[2]))
            })
            .collect()
    };
    let patient_requests: Vec<pb::ScoreRequest> = ids
        .iter()
        .enumerate()
        .map(|(i, (_, who))| {
            let (authority, mrn) = who.split_once('\t').unwrap();
            pb::ScoreRequest {
                request_id: i.to_string(),
                task: pb::Task::Deterioration24h as i32,
                input: Some(pb::score_request::Input::Patient(pb::PatientAt {
                    patient: Some(hospital_proto::events::PatientRef {
                        mrn: mrn.into(),
                        assigning_authority: authority.into(),
                    }),
                    as_of_position: 0,
                })),
                model_version: 0,
            }
        })
        .collect();
    let by_patient = unary(&mut real, &patient_requests, calls.min(1_000)).await;
    let mut raw_one = Vec::new();
    for i in 0..calls.min(1_000) {
        let key = ids[i % ids.len()].0.clone();
        let t = Instant::now();
        extract::history_bytes(&warehouse, std::slice::from_ref(&key))
            .await
            .unwrap();
        raw_one.push(t.elapsed());
    }
    raw_one.sort();
    println!(
        "| ScoreOne by patient (warehouse read + features), p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs | raw select of the patient's facts | p99 {:.2}x the raw select | {:.0} |",
        percentile(&by_patient, 50),
        percentile(&by_patient, 99),
        percentile(&raw_one, 50),
        percentile(&raw_one, 99),
        percentile(&by_patient, 99) / percentile(&raw_one, 99),
        vm_hwm_mib()
    );
    println!();
    println!(
        "model: {} features, fit {:.3} s; goals: build >= 0.5 of the raw select, streaming >= 0.5 of the echo, \
         ScoreOne p99 <= 2x the echo",
        m.model.feature_names.len(),
        m.fit_seconds
    );
    platform.shutdown().await.unwrap();
}
