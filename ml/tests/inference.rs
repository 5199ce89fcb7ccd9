//! The Open Inference Protocol v2 service over a real socket: a tonic server on
//! 127.0.0.1:0 and the generated client (and grpcurl, when installed), against two test
//! models: a logistic model with fixed coefficients (two versions, the second promoted)
//! and an identity model over every supported datatype.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hospital_ml::serve::inference::{
    DataType, InferError, InferenceService, ModelRepository, ServedModel, Tensor, TensorData, TensorSpec,
};
use hospital_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use hospital_proto::inference::infer_parameter::ParameterChoice;
use hospital_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use hospital_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, RepositoryModelLoadRequest, RepositoryModelUnloadRequest, ServerLiveRequest,
    ServerMetadataRequest, ServerReadyRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::Code;

/// p = sigmoid(w . x + b) over three features; `alert` when p >= 0.5.
struct Logistic {
    version: &'static str,
    weights: [f64; 3],
    bias: f64,
}

const V1: Logistic = Logistic {
    version: "1",
    weights: [0.1, 0.1, 0.1],
    bias: 0.0,
};
const V2: Logistic = Logistic {
    version: "2",
    weights: [0.8, -0.5, 0.25],
    bias: -0.1,
};

impl ServedModel for Logistic {
    fn name(&self) -> &str {
        "risk"
    }
    fn version(&self) -> String {
        self.version.into()
    }
    fn platform(&self) -> &str {
        "test-logistic"
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "features".into(),
            datatype: DataType::Fp64,
            shape: vec![-1, 3],
        }]
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        vec![
            TensorSpec {
                name: "probability".into(),
                datatype: DataType::Fp64,
                shape: vec![-1],
            },
            TensorSpec {
                name: "alert".into(),
                datatype: DataType::Bool,
                shape: vec![-1],
            },
        ]
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        let TensorData::F64(x) = &inputs[0].data else {
            return Err(InferError::Internal("features are not FP64".into()));
        };
        let p: Vec<f64> = x
            .chunks_exact(3)
            .map(|row| {
                let z: f64 = row.iter().zip(self.weights).map(|(x, w)| x * w).sum::<f64>() + self.bias;
                1.0 / (1.0 + (-z).exp())
            })
            .collect();
        Ok(vec![
            Tensor {
                name: "alert".into(),
                shape: vec![p.len()],
                data: TensorData::Bool(p.iter().map(|&p| p >= 0.5).collect()),
            },
            Tensor {
                name: "probability".into(),
                shape: vec![p.len()],
                data: TensorData::F64(p),
            },
        ])
    }
}

/// Gives back its inputs: one input (and output) per datatype.
struct Identity;

fn identity_specs() -> Vec<TensorSpec> {
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    vec![
        spec("b", DataType::Bool, &[-1]),
        spec("i32", DataType::Int32, &[-1]),
        spec("i64", DataType::Int64, &[-1]),
        spec("f32", DataType::Fp32, &[-1]),
        spec("f64", DataType::Fp64, &[-1, 2]),
        spec("s", DataType::Bytes, &[-1]),
    ]
}

impl ServedModel for Identity {
    fn name(&self) -> &str {
        "identity"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn platform(&self) -> &str {
        "test-identity"
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        identity_specs()
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        identity_specs()
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        Ok(inputs.to_vec())
    }
}

struct Repo {
    ready: AtomicBool,
}

impl ModelRepository for Repo {
    fn server_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    fn models(&self) -> Vec<String> {
        vec!["identity".into(), "risk".into()]
    }
    fn model(&self, name: &str, version: Option<&str>) -> Option<Arc<dyn ServedModel>> {
        match (name, version) {
            ("risk", None | Some("2")) => Some(Arc::new(V2)),
            ("risk", Some("1")) => Some(Arc::new(V1)),
            ("identity", None | Some("1")) => Some(Arc::new(Identity)),
            _ => None,
        }
    }
}

struct TestServer {
    addr: SocketAddr,
    repo: Arc<Repo>,
    client: GrpcInferenceServiceClient<Channel>,
    _stop: oneshot::Sender<()>,
}

async fn start() -> TestServer {
    let repo = Arc::new(Repo {
        ready: AtomicBool::new(true),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // grpcurl 1.8.6 speaks reflection v1alpha only.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hospital_proto::INFERENCE_FILE_DESCRIPTOR_SET)
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .add_service(InferenceService::new(repo.clone()).into_server())
        .add_service(reflection().build_v1().unwrap())
        .add_service(reflection().build_v1alpha().unwrap());
    tokio::spawn(router.serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
        let _ = stopped.await;
    }));
    let client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    TestServer {
        addr,
        repo,
        client,
        _stop: stop,
    }
}

/// The probability V2 gives a row, written out term by term.
fn expected_v2(x: [f64; 3]) -> f64 {
    let z = 0.8 * x[0] - 0.5 * x[1] + 0.25 * x[2] - 0.1;
    1.0 / (1.0 + (-z).exp())
}

const ROWS: [[f64; 3]; 3] = [[1.0, 2.0, 3.0], [2.5, 0.0, -1.0], [-3.0, 4.0, 0.5]];

fn fp64_input(name: &str, shape: &[i64], values: Vec<f64>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: shape.to_vec(),
        contents: Some(InferTensorContents {
            fp64_contents: values,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn risk_request(id: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "risk".into(),
        id: id.into(),
        inputs: vec![fp64_input("features", &[3, 3], ROWS.concat())],
        ..Default::default()
    }
}

/// The same request with its contents as `raw_input_contents`.
fn to_raw(mut request: ModelInferRequest) -> ModelInferRequest {
    for input in &mut request.inputs {
        let c = input.contents.take().unwrap();
        request.raw_input_contents.push(
            c.fp64_contents
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
    }
    request
}

fn assert_risk_v2(response: &ModelInferResponse, id: &str) {
    assert_eq!(response.model_name, "risk");
    assert_eq!(response.model_version, "2");
    assert_eq!(response.id, id);
    let names: Vec<_> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["probability", "alert"], "the model's output order");
    let expected: Vec<f64> = ROWS.iter().map(|&r| expected_v2(r)).collect();
    let (p, alert) = if response.raw_output_contents.is_empty() {
        let c = |i: usize| response.outputs[i].contents.clone().unwrap();
        (c(0).fp64_contents, c(1).bool_contents)
    } else {
        assert!(
            response.outputs.iter().all(|o| o.contents.is_none()),
            "raw or typed, not both"
        );
        let p = response.raw_output_contents[0]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let alert = response.raw_output_contents[1].iter().map(|&b| b == 1).collect();
        (p, alert)
    };
    assert_eq!(p.len(), 3);
    for (got, want) in p.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    assert_eq!(alert, expected.iter().map(|&p| p >= 0.5).collect::<Vec<_>>());
    assert_eq!(alert, [true, true, false], "the rows straddle the threshold");
    for o in &response.outputs {
        assert_eq!(o.shape, [3], "{}", o.name);
    }
    assert_eq!(response.outputs[0].datatype, "FP64");
    assert_eq!(response.outputs[1].datatype, "BOOL");
}

#[tokio::test]
async fn health_metadata_and_readiness() {
    let mut s = start().await;
    let c = &mut s.client;
    assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);

    let meta = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(meta.name, "hospital-ml");
    assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
    assert!(meta.extensions.is_empty(), "{:?}", meta.extensions);

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(c.model_ready(ready("risk", "")).await.unwrap().into_inner().ready);
    assert!(c.model_ready(ready("risk", "1")).await.unwrap().into_inner().ready);
    let err = c.model_ready(ready("sepsis", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("\"sepsis\"") && err.message().contains("risk"),
        "{}",
        err.message()
    );
    let err = c.model_ready(ready("risk", "9")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("\"9\"") && err.message().contains("promoted version is \"2\""),
        "{}",
        err.message()
    );

    let meta = |name: &str, version: &str| ModelMetadataRequest {
        name: name.into(),
        version: version.into(),
    };
    let m = c.model_metadata(meta("risk", "")).await.unwrap().into_inner();
    assert_eq!(m.name, "risk");
    assert_eq!(m.versions, ["2"], "the promoted version");
    assert_eq!(m.platform, "test-logistic");
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(
        (m.inputs[0].name.as_str(), m.inputs[0].datatype.as_str()),
        ("features", "FP64")
    );
    assert_eq!(m.inputs[0].shape, [-1, 3]);
    let outputs: Vec<_> = m
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.clone()))
        .collect();
    assert_eq!(
        outputs,
        [("probability", "FP64", vec![-1]), ("alert", "BOOL", vec![-1])]
    );
    assert_eq!(
        c.model_metadata(meta("risk", "1")).await.unwrap().into_inner().versions,
        ["1"]
    );
    assert_eq!(
        c.model_metadata(meta("nope", "")).await.unwrap_err().code(),
        Code::NotFound
    );

    let err = c
        .repository_model_load(RepositoryModelLoadRequest {
            model_name: "risk".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let err = c
        .repository_model_unload(RepositoryModelUnloadRequest {
            model_name: "risk".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // Not ready: readiness says so and inference is refused as retryable.
    s.repo.ready.store(false, Ordering::SeqCst);
    let c = &mut s.client;
    assert!(!c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    assert!(!c.model_ready(ready("risk", "")).await.unwrap().into_inner().ready);
    assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert_eq!(
        c.model_infer(risk_request("x")).await.unwrap_err().code(),
        Code::Unavailable
    );
}

#[tokio::test]
async fn infer_typed_raw_versions_and_output_subsets() {
    let mut s = start().await;
    let c = &mut s.client;

    let typed = c.model_infer(risk_request("typed")).await.unwrap().into_inner();
    assert!(typed.raw_output_contents.is_empty(), "typed in, typed out");
    assert_risk_v2(&typed, "typed");

    let raw = c.model_infer(to_raw(risk_request("raw"))).await.unwrap().into_inner();
    assert_eq!(raw.raw_output_contents.len(), 2, "raw in, raw out");
    assert_risk_v2(&raw, "raw");

    // Typed in, raw out on request (the request's parameter, or an output's).
    let mut asked = risk_request("asked");
    asked.parameters.insert(
        "binary_data_output".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
    let asked = c.model_infer(asked).await.unwrap().into_inner();
    assert_eq!(asked.raw_output_contents.len(), 2);
    assert_risk_v2(&asked, "asked");

    // A subset of the outputs, in the order asked.
    let mut subset = risk_request("subset");
    subset.outputs = vec![InferRequestedOutputTensor {
        name: "alert".into(),
        parameters: [(
            "binary_data".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        )]
        .into(),
    }];
    let subset = c.model_infer(subset).await.unwrap().into_inner();
    assert_eq!(subset.outputs.len(), 1);
    assert_eq!(subset.outputs[0].name, "alert");
    assert_eq!(subset.raw_output_contents, [vec![1u8, 1, 0]]);

    // An older version by number.
    let mut v1 = risk_request("v1");
    v1.model_version = "1".into();
    let v1 = c.model_infer(v1).await.unwrap().into_inner();
    assert_eq!(v1.model_version, "1");
    let p = &v1.outputs[0].contents.as_ref().unwrap().fp64_contents;
    let want = 1.0 / (1.0 + (-0.6f64).exp());
    assert!((p[0] - want).abs() < 1e-12, "{} vs {want}", p[0]);
}

/// Every datatype goes through the identity model typed and raw and comes back equal.
#[tokio::test]
async fn every_datatype_round_trips_typed_and_raw() {
    let mut s = start().await;
    let strings: Vec<Vec<u8>> = vec![b"NEWS2".to_vec(), Vec::new(), "séance".as_bytes().to_vec()];
    let contents = [
        InferTensorContents {
            bool_contents: vec![true, false, true],
            ..Default::default()
        },
        InferTensorContents {
            int_contents: vec![-7, 0, i32::MAX],
            ..Default::default()
        },
        InferTensorContents {
            int64_contents: vec![i64::MIN, 1, 2],
            ..Default::default()
        },
        InferTensorContents {
            fp32_contents: vec![0.5, -1.25, 3.0e38],
            ..Default::default()
        },
        InferTensorContents {
            fp64_contents: vec![0.1, -2.0, 1e300, 4.0, 5.0, 6.0],
            ..Default::default()
        },
        InferTensorContents {
            bytes_contents: strings.clone(),
            ..Default::default()
        },
    ];
    // The raw layout written out by hand, independently of the service's encoder.
    let mut bytes_raw = Vec::new();
    for s in &strings {
        bytes_raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bytes_raw.extend_from_slice(s);
    }
    let raw: Vec<Vec<u8>> = vec![
        vec![1, 0, 1],
        [-7i32, 0, i32::MAX].iter().flat_map(|x| x.to_le_bytes()).collect(),
        [i64::MIN, 1, 2].iter().flat_map(|x| x.to_le_bytes()).collect(),
        [0.5f32, -1.25, 3.0e38].iter().flat_map(|x| x.to_le_bytes()).collect(),
        [0.1f64, -2.0, 1e300, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        bytes_raw,
    ];
    let inputs: Vec<InferInputTensor> = identity_specs()
        .iter()
        .zip(&contents)
        .map(|(spec, c)| InferInputTensor {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str().into(),
            shape: if spec.name == "f64" { vec![3, 2] } else { vec![3] },
            contents: Some(c.clone()),
            ..Default::default()
        })
        .collect();
    // Inputs in another order than the model's: matched by name.
    let mut shuffled = inputs.clone();
    shuffled.reverse();
    let typed = ModelInferRequest {
        model_name: "identity".into(),
        inputs: shuffled,
        ..Default::default()
    };
    let response = s.client.model_infer(typed).await.unwrap().into_inner();
    assert!(response.raw_output_contents.is_empty());
    for ((out, spec), c) in response.outputs.iter().zip(identity_specs()).zip(&contents) {
        assert_eq!(out.name, spec.name);
        assert_eq!(out.datatype, spec.datatype.as_str());
        assert_eq!(out.contents.as_ref(), Some(c), "{}", spec.name);
    }
    assert_eq!(response.outputs[4].shape, [3, 2]);

    let raw_request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: inputs
            .into_iter()
            .map(|i| InferInputTensor { contents: None, ..i })
            .collect(),
        raw_input_contents: raw.clone(),
        ..Default::default()
    };
    let response = s.client.model_infer(raw_request).await.unwrap().into_inner();
    assert_eq!(response.raw_output_contents, raw, "raw out, byte for byte");
    assert!(response.outputs.iter().all(|o| o.contents.is_none()));
}

#[tokio::test]
async fn bad_requests_name_the_model_input_and_field() {
    let mut s = start().await;
    type Edit = fn(&mut ModelInferRequest);
    let cases: Vec<(&str, Edit, Code, &[&str])> = vec![
        (
            "rank",
            |r| r.inputs[0].shape = vec![9],
            Code::InvalidArgument,
            &["\"risk\"", "\"features\"", "inputs[0].shape", "[9]", "[-1, 3]"],
        ),
        (
            "fixed size",
            |r| r.inputs[0].shape = vec![2, 4],
            Code::InvalidArgument,
            &["\"features\"", "inputs[0].shape [2, 4]"],
        ),
        (
            "negative size",
            |r| r.inputs[0].shape = vec![-3, 3],
            Code::InvalidArgument,
            &["\"features\"", "negative"],
        ),
        (
            "element count",
            |r| r.inputs[0].shape = vec![2, 3],
            Code::InvalidArgument,
            &[
                "\"risk\"",
                "\"features\"",
                "contents.fp64_contents has 9 elements, 6 needed",
            ],
        ),
        (
            "datatype",
            |r| r.inputs[0].datatype = "FP32".into(),
            Code::InvalidArgument,
            &["\"features\"", "inputs[0].datatype is FP32", "expects FP64"],
        ),
        (
            "unknown datatype",
            |r| r.inputs[0].datatype = "FP16".into(),
            Code::InvalidArgument,
            &["\"features\"", "\"FP16\" is not supported"],
        ),
        (
            "wrong contents field",
            |r| {
                let c = r.inputs[0].contents.as_mut().unwrap();
                c.fp32_contents = c.fp64_contents.iter().map(|&x| x as f32).collect();
                c.fp64_contents.clear();
            },
            Code::InvalidArgument,
            &["\"features\"", "contents.fp32_contents is set", "fp64_contents"],
        ),
        (
            "unknown input",
            |r| r.inputs[0].name = "vitals".into(),
            Code::InvalidArgument,
            &["\"risk\"", "no input \"vitals\"", "inputs[0].name", "features"],
        ),
        (
            "missing input",
            |r| r.inputs.clear(),
            Code::InvalidArgument,
            &["\"risk\"", "\"features\" is missing"],
        ),
        (
            "input twice",
            |r| r.inputs.push(r.inputs[0].clone()),
            Code::InvalidArgument,
            &["\"features\"", "given twice (inputs[1])"],
        ),
        (
            "unknown output",
            |r| {
                r.outputs.push(InferRequestedOutputTensor {
                    name: "score".into(),
                    ..Default::default()
                })
            },
            Code::InvalidArgument,
            &[
                "\"risk\"",
                "no output \"score\"",
                "outputs[0].name",
                "probability, alert",
            ],
        ),
        (
            "raw byte count",
            |r| {
                *r = to_raw(risk_request(""));
                r.raw_input_contents[0].pop();
            },
            Code::InvalidArgument,
            &["\"features\"", "raw_input_contents[0] has 71 bytes", "9 elements"],
        ),
        (
            "raw entries",
            |r| {
                *r = to_raw(risk_request(""));
                r.raw_input_contents.push(vec![0; 8]);
            },
            Code::InvalidArgument,
            &["\"risk\"", "raw_input_contents has 2 entries for 1 inputs"],
        ),
        (
            "raw and typed",
            |r| {
                r.raw_input_contents
                    .push(ROWS.concat().iter().flat_map(|x| x.to_le_bytes()).collect())
            },
            Code::InvalidArgument,
            &["\"features\"", "inputs[0].contents is set", "raw_input_contents"],
        ),
        (
            "unknown model",
            |r| r.model_name = "sepsis".into(),
            Code::NotFound,
            &["model \"sepsis\" not found", "risk"],
        ),
        (
            "unknown version",
            |r| r.model_version = "7".into(),
            Code::NotFound,
            &["\"risk\"", "no version \"7\""],
        ),
    ];
    for (case, edit, code, parts) in cases {
        let mut request = risk_request(case);
        edit(&mut request);
        let err = s.client.model_infer(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{case}: {}", err.message());
        for part in parts {
            assert!(
                err.message().contains(part),
                "{case}: {part:?} not in {:?}",
                err.message()
            );
        }
    }
}

#[tokio::test]
async fn stream_answers_in_order_and_goes_on_after_a_bad_request() {
    let mut s = start().await;
    let mut bad_shape = risk_request("b");
    bad_shape.inputs[0].shape = vec![9];
    let mut unknown = risk_request("d");
    unknown.model_name = "sepsis".into();
    let requests = vec![
        risk_request("a"),
        bad_shape,
        to_raw(risk_request("c")),
        unknown,
        risk_request("e"),
    ];
    let (tx, rx) = mpsc::channel(2);
    let sender = tokio::spawn(async move {
        for r in requests {
            tx.send(r).await.unwrap();
        }
    });
    let mut responses = s
        .client
        .model_stream_infer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        got.push(r);
    }
    sender.await.unwrap();

    let ids: Vec<_> = got
        .iter()
        .map(|r| r.infer_response.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"], "one response per request, in order");
    for i in [0, 2, 4] {
        assert_eq!(got[i].error_message, "", "{i}");
        let response = got[i].infer_response.as_ref().unwrap();
        assert_risk_v2(response, &response.id);
    }
    assert!(
        got[1].error_message.contains("\"features\""),
        "{}",
        got[1].error_message
    );
    assert!(
        got[1].error_message.contains("inputs[0].shape [9]"),
        "{}",
        got[1].error_message
    );
    assert!(got[1].infer_response.as_ref().unwrap().outputs.is_empty());
    assert!(
        got[3].error_message.contains("model \"sepsis\" not found"),
        "{}",
        got[3].error_message
    );
    assert_eq!(got[3].infer_response.as_ref().unwrap().model_name, "sepsis");
}

/// A stream longer than every buffer on the way, read only after it is all sent:
/// the bounded channels hold the server back rather than losing or reordering anything.
#[tokio::test]
async fn long_stream_keeps_order() {
    let mut s = start().await;
    let n = 2_000;
    let (tx, rx) = mpsc::channel(8);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            tx.send(risk_request(&i.to_string())).await.unwrap();
        }
    });
    let mut responses = s
        .client
        .model_stream_infer(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut next = 0;
    while let Some(r) = responses.message().await.unwrap() {
        assert_eq!(r.error_message, "");
        assert_eq!(r.infer_response.unwrap().id, next.to_string());
        next += 1;
    }
    sender.await.unwrap();
    assert_eq!(next, n);
}

/// Runs `grpcurl -plaintext FLAGS ADDR ARGS` and gives its output.
async fn grpcurl(addr: SocketAddr, flags: &[&str], args: &[&str]) -> String {
    let out = tokio::process::Command::new("grpcurl")
        .arg("-plaintext")
        .args(flags)
        .arg(addr.to_string())
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpcurl {flags:?} {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A standard client that knows nothing of our code: grpcurl through server reflection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_describes_and_calls_through_reflection() {
    if std::process::Command::new("grpcurl").arg("-version").output().is_err() {
        eprintln!("grpcurl is not on PATH: skipping the grpcurl test");
        return;
    }
    let s = start().await;
    let listed = grpcurl(s.addr, &[], &["list"]).await;
    assert!(listed.contains("inference.GRPCInferenceService"), "{listed}");
    let described = grpcurl(s.addr, &[], &["describe", "inference.GRPCInferenceService"]).await;
    for rpc in [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
    ] {
        assert!(described.contains(&format!("rpc {rpc} ")), "{rpc} in {described}");
    }
    assert!(
        described.contains("stream .inference.ModelStreamInferResponse"),
        "{described}"
    );

    let live: serde_json::Value =
        serde_json::from_str(&grpcurl(s.addr, &[], &["inference.GRPCInferenceService/ServerLive"]).await).unwrap();
    assert_eq!(live["live"], true);

    let request = serde_json::json!({
        "model_name": "risk",
        "id": "grpcurl",
        "inputs": [{
            "name": "features",
            "datatype": "FP64",
            "shape": [1, 3],
            "contents": {"fp64_contents": ROWS[0]},
        }],
    })
    .to_string();
    let out = grpcurl(
        s.addr,
        &["-d", &request],
        &["inference.GRPCInferenceService/ModelInfer"],
    )
    .await;
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["modelName"], "risk");
    assert_eq!(response["modelVersion"], "2");
    assert_eq!(response["id"], "grpcurl");
    assert_eq!(response["outputs"][0]["name"], "probability");
    let p = response["outputs"][0]["contents"]["fp64Contents"][0].as_f64().unwrap();
    assert!((p - expected_v2(ROWS[0])).abs() < 1e-12, "{p}");
    assert_eq!(response["outputs"][1]["contents"]["boolContents"][0], true);
}
