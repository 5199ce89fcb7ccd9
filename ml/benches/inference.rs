//! Open Inference Protocol v2 over gRPC: the sidecar's service against the limit of the
//! transport, measured in the same run over the same kind of socket (TCP on 127.0.0.1,
//! nodelay, one HTTP/2 connection per client).
//!
//! The limit is an echo: `GRPCInferenceService` implemented with no work at all, answering
//! each `ModelInferRequest` with the `ModelInferResponse` the real service gives for it,
//! prepared once. Both sides therefore send and receive the same messages, byte for byte,
//! through the same generated code and codec; the difference is what the service does
//! (find the model, check and decode the inputs, score, check and encode the outputs).
//!
//! Rows:
//! - stream: `ModelStreamInfer` with N requests in flight through a bounded channel,
//!   throughput in requests and rows per second;
//! - unary: `ModelInfer` one call at a time, latency p50 and p99.
//!
//! Each for one row and for a batch of 64 rows of 16 FP64 features, typed contents, and
//! the batch also as raw contents. Peak memory is the process's VmHWM after the row
//! (client and both servers are in this process, so it is the peak of everything so far).
//!
//! `cargo bench -p hospital-ml --bench inference` (`INFERENCE_BENCH_N`, default 20000
//! streamed requests, a quarter as many unary calls; `INFERENCE_BENCH_ROUNDS`, default 3).
//! A release build means lance and datafusion in release too; to measure without it, use
//! the dev profile with the serving crates optimised (tokio, h2, hyper and prost stay
//! unoptimised, so the absolute figures are low; the echo shares that handicap):
//! `cargo bench -p hospital-ml --bench inference --profile dev --config
//! 'profile.dev.package.hospital-ml.opt-level=3'` and the same for `hospital-proto`,
//! `tonic`, `tonic-prost` and `axum`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hospital_ml::serve::inference::{
    self, DataType, InferError, InferenceService, ModelRepository, ServedModel, Tensor, TensorData, TensorSpec,
};
use hospital_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use hospital_proto::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use hospital_proto::inference::model_infer_request::InferInputTensor;
use hospital_proto::inference::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

mod common;
use common::{percentile, vm_hwm_mib};

const FEATURES: usize = 16;

struct Logistic {
    weights: [f64; FEATURES],
}

impl ServedModel for Logistic {
    fn name(&self) -> &str {
        "risk"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn platform(&self) -> &str {
        "bench-logistic"
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "features".into(),
            datatype: DataType::Fp64,
            shape: vec![-1, FEATURES as i64],
        }]
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "probability".into(),
            datatype: DataType::Fp64,
            shape: vec![-1],
        }]
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        let TensorData::F64(x) = &inputs[0].data else {
            return Err(InferError::Internal("not FP64".into()));
        };
        let p: Vec<f64> = x
            .chunks_exact(FEATURES)
            .map(|row| {
                let z: f64 = row.iter().zip(&self.weights).map(|(x, w)| x * w).sum();
                1.0 / (1.0 + (-z).exp())
            })
            .collect();
        Ok(vec![Tensor {
            name: "probability".into(),
            shape: vec![p.len()],
            data: TensorData::F64(p),
        }])
    }
}

struct Repo(Arc<dyn ServedModel>);

impl ModelRepository for Repo {
    fn server_ready(&self) -> bool {
        true
    }
    fn models(&self) -> Vec<String> {
        vec!["risk".into()]
    }
    fn model(&self, name: &str, _: Option<&str>) -> Option<Arc<dyn ServedModel>> {
        (name == "risk").then(|| Arc::clone(&self.0))
    }
}

/// The limit: answers every request with a response prepared once.
struct Echo {
    response: ModelInferResponse,
}

type EchoStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    type ModelStreamInferStream = EchoStream;

    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }
    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }
    async fn model_ready(&self, _: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        Ok(Response::new(ModelReadyResponse { ready: true }))
    }
    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn model_metadata(
        &self,
        _: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let mut response = self.response.clone();
        response.id = request.into_inner().id;
        Ok(Response::new(response))
    }
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        // Same shape as the real service: one task, a bounded channel of the same size.
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(inference::DEFAULT_STREAM_BUFFER);
        let template = self.response.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let mut response = template.clone();
                response.id = request.id;
                let reply = ModelStreamInferResponse {
                    error_message: String::new(),
                    infer_response: Some(response),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn repository_model_load(
        &self,
        _: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn repository_model_unload(
        &self,
        _: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

async fn serve<S>(service: S) -> GrpcInferenceServiceClient<Channel>
where
    S: GrpcInferenceService,
{
    serve_server(GrpcInferenceServiceServer::new(service).max_decoding_message_size(inference::MAX_MESSAGE_BYTES)).await
}

async fn serve_server<S: GrpcInferenceService>(
    server: GrpcInferenceServiceServer<S>,
) -> GrpcInferenceServiceClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(Server::builder().add_service(server).serve_with_incoming(incoming));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    GrpcInferenceServiceClient::new(channel)
}

fn request(rows: usize, raw: bool) -> ModelInferRequest {
    let values: Vec<f64> = (0..rows * FEATURES)
        .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
        .collect();
    let mut input = InferInputTensor {
        name: "features".into(),
        datatype: "FP64".into(),
        shape: vec![rows as i64, FEATURES as i64],
        parameters: HashMap::new(),
        contents: None,
    };
    let mut raw_input_contents = Vec::new();
    if raw {
        raw_input_contents.push(values.iter().flat_map(|x| x.to_le_bytes()).collect());
    } else {
        input.contents = Some(InferTensorContents {
            fp64_contents: values,
            ..Default::default()
        });
    }
    ModelInferRequest {
        model_name: "risk".into(),
        id: "0".into(),
        inputs: vec![input],
        raw_input_contents,
        ..Default::default()
    }
}

/// Seconds for `n` requests through one `ModelStreamInfer`.
async fn stream(client: &mut GrpcInferenceServiceClient<Channel>, template: &ModelInferRequest, n: usize) -> f64 {
    let (tx, rx) = mpsc::channel(64);
    let template = template.clone();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let mut r = template.clone();
            r.id = i.to_string();
            if tx.send(r).await.is_err() {
                return;
            }
        }
    });
    let mut responses = client
        .model_stream_infer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0;
    while let Some(r) = responses.message().await.unwrap() {
        assert!(r.error_message.is_empty(), "{}", r.error_message);
        got += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    sender.await.unwrap();
    assert_eq!(got, n);
    seconds
}

/// Latencies of `n` `ModelInfer` calls made one after the other.
async fn unary(
    client: &mut GrpcInferenceServiceClient<Channel>,
    template: &ModelInferRequest,
    n: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let r = template.clone();
        let start = Instant::now();
        client.model_infer(r).await.unwrap();
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies
}

fn main() {
    let n: usize = std::env::var("INFERENCE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("INFERENCE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let model: Arc<dyn ServedModel> = Arc::new(Logistic {
            weights: std::array::from_fn(|i| (i as f64 - 7.5) / 10.0),
        });
        let repo: Arc<dyn ModelRepository> = Arc::new(Repo(model));
        let mut service = serve_server(InferenceService::new(Arc::clone(&repo)).into_server()).await;

        println!(
            "OIP v2 gRPC, {n} streamed requests and {} unary calls per round, median of {rounds} rounds",
            n / 4
        );
        if cfg!(debug_assertions) {
            println!("(built with debug assertions: not an optimised build; compare rows, not absolutes)");
        }
        println!();
        println!("| case | server | stream req/s | stream rows/s | unary p50 µs | unary p99 µs | VmHWM MiB |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for (label, rows, raw) in [
            ("1 row, typed", 1, false),
            ("64 rows, typed", 64, false),
            ("64 rows, raw", 64, true),
        ] {
            let template = request(rows, raw);
            // The echo answers with exactly what the service answers to this request.
            let response = inference::infer(&*repo, template.clone()).unwrap();
            let mut echo = serve(Echo { response }).await;
            // Rounds alternate between the two servers, and each figure is the median
            // over rounds, so that load from other processes hits both alike.
            let mut figures: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..rounds {
                for (i, client) in [&mut echo, &mut service].into_iter().enumerate() {
                    stream(client, &template, n / 10).await;
                    unary(client, &template, n / 40).await;
                    let seconds = stream(client, &template, n).await;
                    let latencies = unary(client, &template, n / 4).await;
                    figures[i].push([
                        n as f64 / seconds,
                        (n * rows) as f64 / seconds,
                        percentile(&latencies, 50),
                        percentile(&latencies, 99),
                    ]);
                }
            }
            for (server, runs) in ["echo (limit)", "hospital-ml"].iter().zip(&figures) {
                let median = |k: usize| {
                    let mut v: Vec<f64> = runs.iter().map(|f| f[k]).collect();
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                println!(
                    "| {label} | {server} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                    median(0),
                    median(1),
                    median(2),
                    median(3),
                    vm_hwm_mib()
                );
            }
        }
    });
}
