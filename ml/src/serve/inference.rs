//! The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService` (KServe's
//! `grpc_predict_v2.proto`) with Triton's streaming extension `ModelStreamInfer`, so that
//! standard clients (KServe, Triton's `tritonclient`, grpcurl) work unchanged.
//!
//! Owns the wire <-> [`Tensor`] conversion, the checks of a request against a model's
//! signature, and the mapping of this service's errors to gRPC statuses ([`ServeError`],
//! the one place where they become a `Status`). It must not know how models are stored,
//! trained or promoted: it sees them only through [`ModelRepository`] and [`ServedModel`].
//!
//! Tensor contents, in and out:
//! - Inputs are read from typed `contents` (`bool`, `int` for INT32, `int64`, `fp32`,
//!   `fp64`, `bytes`) or from `raw_input_contents` (little-endian, row-major, one entry
//!   per input in request order; BYTES elements as a 4-byte little-endian length and the
//!   bytes; BOOL one byte, 0 or 1). Mixing the two in one request is rejected.
//! - Outputs are typed `contents` by default, and `raw_output_contents` when the request
//!   sent its inputs raw, or set the bool parameter `binary_data_output` (request) or
//!   `binary_data` (a requested output). Triton's own gRPC server always answers raw, and
//!   `tritonclient` reads numeric outputs only from `raw_output_contents`; it always sends
//!   raw inputs, so mirroring the request's choice keeps it working while typed clients
//!   (grpcurl with JSON, KServe's `InferResponse.from_grpc`) get readable typed contents.
//!
//! Models run inline on the request's task: the served models are small (linear models
//! over a few dozen features, microseconds per row), not worth a thread hop.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use hospital_proto::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use hospital_proto::inference::infer_parameter::ParameterChoice;
use hospital_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use hospital_proto::inference::model_infer_response::InferOutputTensor;
use hospital_proto::inference::model_metadata_response::TensorMetadata;
use hospital_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ModelStreamInferResponse, RepositoryModelLoadRequest,
    RepositoryModelLoadResponse, RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The server name in `ServerMetadata`.
pub const SERVER_NAME: &str = "hospital-ml";

/// Largest request the service decodes (tonic's default is 4 MiB; a raw batch of a few
/// thousand rows of a hundred FP64 features is already 2-3 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Responses of one `ModelStreamInfer` call computed ahead of the client reading them.
pub const DEFAULT_STREAM_BUFFER: usize = 32;

/// Where the service finds its models; the sidecar's registry implements it.
pub trait ModelRepository: Send + Sync + 'static {
    /// Whether the server can answer inference requests (models loaded).
    fn server_ready(&self) -> bool;
    /// The names of the models served.
    fn models(&self) -> Vec<String>;
    /// A model by name and version; `None` is the promoted version.
    fn model(&self, name: &str, version: Option<&str>) -> Option<Arc<dyn ServedModel>>;
}

/// One version of a model, ready to score.
pub trait ServedModel: Send + Sync {
    fn name(&self) -> &str;
    fn version(&self) -> String;
    /// The framework that made the model, for `ModelMetadata`, e.g. `linfa-logistic`.
    fn platform(&self) -> &str;
    /// The input tensors, in the order [`ServedModel::infer`] receives them.
    fn inputs(&self) -> Vec<TensorSpec>;
    fn outputs(&self) -> Vec<TensorSpec>;
    /// Scores inputs that match [`ServedModel::inputs`] (names, datatypes, shapes, in
    /// that order), giving tensors named as in [`ServedModel::outputs`].
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError>;
}

/// The element types the service converts; their names are the protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int32,
    Int64,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 6] = [
        DataType::Bool,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name: `BOOL`, `INT32`, `INT64`, `FP32`, `FP64`, `BYTES`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The typed `contents` field that carries this type.
    fn contents_field(self) -> &'static str {
        match self {
            DataType::Bool => "bool_contents",
            DataType::Int32 => "int_contents",
            DataType::Int64 => "int64_contents",
            DataType::Fp32 => "fp32_contents",
            DataType::Fp64 => "fp64_contents",
            DataType::Bytes => "bytes_contents",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model's input or output: name, element type, shape (`-1`: any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// A tensor's elements, flattened row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor: its datatype is its data's ([`Tensor::datatype`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Why a model could not score a request.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The inputs are well formed but the model cannot take them (a value out of range).
    #[error("{0}")]
    InvalidInput(String),
    /// The model cannot score now; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The errors of this service; `From<ServeError> for Status` is the only place they
/// become statuses.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the inference server is not ready")]
    NotReady,
    #[error("{0}")]
    NotFound(String),
    /// A request that does not fit the model's signature; the message names the model,
    /// the tensor and the field.
    #[error("{0}")]
    Invalid(String),
    #[error("model {model:?} version {version:?}: {source}")]
    Model {
        model: String,
        version: String,
        source: InferError,
    },
    /// The model broke its own signature (an output missing or of the wrong size).
    #[error("{0}")]
    Internal(String),
    #[error("{0} is not supported by this server")]
    Unimplemented(&'static str),
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Status {
        let message = e.to_string();
        match e {
            ServeError::NotReady => Status::unavailable(message),
            ServeError::NotFound(_) => Status::not_found(message),
            ServeError::Invalid(_) => Status::invalid_argument(message),
            ServeError::Model { source, .. } => match source {
                InferError::InvalidInput(_) => Status::invalid_argument(message),
                InferError::Unavailable(_) => Status::unavailable(message),
                InferError::Internal(_) => Status::internal(message),
            },
            ServeError::Internal(_) => Status::internal(message),
            ServeError::Unimplemented(_) => Status::unimplemented(message),
        }
    }
}

/// `inference.GRPCInferenceService` over a [`ModelRepository`].
pub struct InferenceService {
    repo: Arc<dyn ModelRepository>,
    stream_buffer: usize,
}

impl InferenceService {
    pub fn new(repo: Arc<dyn ModelRepository>) -> Self {
        InferenceService {
            repo,
            stream_buffer: DEFAULT_STREAM_BUFFER,
        }
    }

    /// How many responses of one stream may wait for the client to read them.
    pub fn with_stream_buffer(mut self, responses: usize) -> Self {
        self.stream_buffer = responses.max(1);
        self
    }

    /// The tonic service, accepting requests up to [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> GrpcInferenceServiceServer<InferenceService> {
        GrpcInferenceServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type InferStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    type ModelStreamInferStream = InferStream;

    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.repo.server_ready(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        find_model(&*self.repo, &request.name, &request.version)?;
        Ok(Response::new(ModelReadyResponse {
            ready: self.repo.server_ready(),
        }))
    }

    /// No protocol extension is listed: the names Triton defines (`model_repository`,
    /// `binary_tensor_data`, `statistics`, ...) are either not served here or describe
    /// the HTTP protocol; streaming has no extension name.
    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = find_model(&*self.repo, &request.name, &request.version)?;
        let metadata = |specs: Vec<TensorSpec>| {
            specs
                .into_iter()
                .map(|s| TensorMetadata {
                    name: s.name,
                    datatype: s.datatype.as_str().into(),
                    shape: s.shape,
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: model.name().into(),
            versions: vec![model.version()],
            platform: model.platform().into(),
            inputs: metadata(model.inputs()),
            outputs: metadata(model.outputs()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        Ok(Response::new(infer(&*self.repo, request.into_inner())?))
    }

    #[tracing::instrument(skip_all)]
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.stream_buffer);
        let repo = Arc::clone(&self.repo);
        // One task per stream answers its requests one by one: responses keep request
        // order, and the bounded channel stops reading when the client stops reading.
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    next = inbound.message() => next,
                };
                let request = match next {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "inference stream ended by the client");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                // An error answers this request only; the stream goes on. The response
                // names the request (id, model) so the client can match it.
                let header = ModelInferResponse {
                    model_name: request.model_name.clone(),
                    model_version: request.model_version.clone(),
                    id: request.id.clone(),
                    ..Default::default()
                };
                let reply = match infer(&*repo, request) {
                    Ok(response) => ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(response),
                    },
                    Err(e) => ModelStreamInferResponse {
                        error_message: Status::from(e).message().to_owned(),
                        infer_response: Some(header),
                    },
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
        Err(ServeError::Unimplemented("RepositoryModelLoad (models are promoted through the registry)").into())
    }

    async fn repository_model_unload(
        &self,
        _: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Err(ServeError::Unimplemented("RepositoryModelUnload (models are promoted through the registry)").into())
    }
}

/// The model a request names; an empty version is the promoted one.
fn find_model(repo: &dyn ModelRepository, name: &str, version: &str) -> Result<Arc<dyn ServedModel>, ServeError> {
    let version = (!version.is_empty()).then_some(version);
    if let Some(model) = repo.model(name, version) {
        return Ok(model);
    }
    Err(ServeError::NotFound(match (version, repo.model(name, None)) {
        (Some(version), Some(promoted)) => format!(
            "model {name:?} has no version {version:?} (the promoted version is {:?})",
            promoted.version()
        ),
        (Some(version), None) => format!("model {name:?} version {version:?} not found"),
        (None, _) => format!("model {name:?} not found (served: {})", repo.models().join(", ")),
    }))
}

/// Checks a request against its model's signature, scores it and builds the response.
pub fn infer(repo: &dyn ModelRepository, request: ModelInferRequest) -> Result<ModelInferResponse, ServeError> {
    if !repo.server_ready() {
        return Err(ServeError::NotReady);
    }
    let model = find_model(repo, &request.model_name, &request.model_version)?;
    let model = &*model;
    let raw_out = wants_raw_output(&request);
    let outputs = requested_outputs(model, &request.outputs)?;
    let inputs = decode_inputs(model, request.inputs, request.raw_input_contents)?;
    let produced = model.infer(&inputs).map_err(|source| ServeError::Model {
        model: model.name().into(),
        version: model.version(),
        source,
    })?;
    encode_outputs(model, outputs, produced, raw_out, request.id)
}

fn is_true(parameters: &HashMap<String, InferParameter>, key: &str) -> bool {
    matches!(
        parameters.get(key).and_then(|p| p.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    )
}

fn wants_raw_output(request: &ModelInferRequest) -> bool {
    !request.raw_input_contents.is_empty()
        || is_true(&request.parameters, "binary_data_output")
        || request.outputs.iter().any(|o| is_true(&o.parameters, "binary_data"))
}

/// The outputs to answer with, in the order asked (all of them, in the model's order,
/// when none is asked).
fn requested_outputs(
    model: &dyn ServedModel,
    requested: &[InferRequestedOutputTensor],
) -> Result<Vec<TensorSpec>, ServeError> {
    let specs = model.outputs();
    if requested.is_empty() {
        return Ok(specs);
    }
    let mut chosen: Vec<TensorSpec> = Vec::with_capacity(requested.len());
    for (i, output) in requested.iter().enumerate() {
        let Some(spec) = specs.iter().find(|s| s.name == output.name) else {
            return Err(ServeError::Invalid(format!(
                "model {:?} has no output {:?} (outputs[{i}].name; outputs: {})",
                model.name(),
                output.name,
                names(&specs)
            )));
        };
        if chosen.iter().any(|c| c.name == spec.name) {
            return Err(ServeError::Invalid(format!(
                "model {:?}: output {:?} is requested twice (outputs[{i}].name)",
                model.name(),
                output.name
            )));
        }
        chosen.push(spec.clone());
    }
    Ok(chosen)
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The request's inputs as tensors, in the model's input order.
fn decode_inputs(
    model: &dyn ServedModel,
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<Vec<Tensor>, ServeError> {
    let specs = model.inputs();
    let model_name = model.name();
    let invalid = |message: String| ServeError::Invalid(format!("model {model_name:?} {message}"));
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in order",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (i, input) in inputs.into_iter().enumerate() {
        let Some(slot) = specs.iter().position(|s| s.name == input.name) else {
            return Err(invalid(format!(
                "has no input {:?} (inputs[{i}].name; inputs: {})",
                input.name,
                names(&specs)
            )));
        };
        let spec = &specs[slot];
        let here = |message: String| invalid(format!("input {:?}: {message}", spec.name));
        if slots[slot].is_some() {
            return Err(here(format!("given twice (inputs[{i}])")));
        }
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            here(format!(
                "inputs[{i}].datatype {:?} is not supported here; the model expects {}",
                input.datatype, spec.datatype
            ))
        })?;
        if datatype != spec.datatype {
            return Err(here(format!(
                "inputs[{i}].datatype is {datatype}, the model expects {}",
                spec.datatype
            )));
        }
        let shape = check_shape(&input.shape, &spec.shape).map_err(|m| here(format!("inputs[{i}].shape {m}")))?;
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| here(format!("inputs[{i}].shape {:?} is too large", input.shape)))?;
        let data = match raw.next() {
            Some(bytes) => {
                if input.contents.as_ref().is_some_and(|c| !contents_lengths(c).is_empty()) {
                    return Err(here(format!(
                        "inputs[{i}].contents is set while the request uses raw_input_contents; use one or the other"
                    )));
                }
                decode_raw(datatype, &bytes, count)
                    .map_err(|m| here(format!("raw_input_contents[{i}] {m} for shape {:?}", input.shape)))?
            }
            None => decode_typed(datatype, input.contents.unwrap_or_default(), count)
                .map_err(|m| here(format!("inputs[{i}].contents.{m} for shape {:?}", input.shape)))?,
        };
        slots[slot] = Some(Tensor {
            name: input.name,
            shape,
            data,
        });
    }
    slots
        .into_iter()
        .zip(&specs)
        .map(|(slot, spec)| slot.ok_or_else(|| invalid(format!("input {:?} is missing from inputs", spec.name))))
        .collect()
}

/// The request's shape as sizes, if it fits the spec (same rank; a spec's `-1` takes any size).
fn check_shape(shape: &[i64], spec: &[i64]) -> Result<Vec<usize>, String> {
    if shape.len() != spec.len() {
        return Err(format!(
            "{shape:?} has rank {}, the model expects {spec:?}",
            shape.len()
        ));
    }
    shape
        .iter()
        .zip(spec)
        .map(|(&d, &s)| match usize::try_from(d) {
            Ok(size) if s < 0 || s == d => Ok(size),
            Ok(_) => Err(format!("{shape:?} does not fit the model's {spec:?}")),
            Err(_) => Err(format!("{shape:?} has a negative size")),
        })
        .collect()
}

/// The non-empty typed fields of `contents`, with their element counts.
fn contents_lengths(c: &InferTensorContents) -> Vec<(&'static str, usize)> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

/// Takes the field of `contents` that carries `datatype`; the error starts with the field's name.
fn decode_typed(datatype: DataType, contents: InferTensorContents, count: usize) -> Result<TensorData, String> {
    let field = datatype.contents_field();
    if let Some((other, _)) = contents_lengths(&contents).into_iter().find(|(f, _)| *f != field) {
        return Err(format!("{other} is set, but a {datatype} tensor goes in {field}"));
    }
    let data = match datatype {
        DataType::Bool => TensorData::Bool(contents.bool_contents),
        DataType::Int32 => TensorData::I32(contents.int_contents),
        DataType::Int64 => TensorData::I64(contents.int64_contents),
        DataType::Fp32 => TensorData::F32(contents.fp32_contents),
        DataType::Fp64 => TensorData::F64(contents.fp64_contents),
        DataType::Bytes => TensorData::Bytes(contents.bytes_contents),
    };
    if data.len() != count {
        return Err(format!("{field} has {} elements, {count} needed", data.len()));
    }
    Ok(data)
}

/// Reads `count` little-endian elements of `datatype`.
fn decode_raw(datatype: DataType, bytes: &[u8], count: usize) -> Result<TensorData, String> {
    fn fixed<const N: usize, T>(bytes: &[u8], count: usize, from: fn([u8; N]) -> T) -> Result<Vec<T>, String> {
        if Some(bytes.len()) != count.checked_mul(N) {
            return Err(format!(
                "has {} bytes, {count} elements of {N} bytes needed",
                bytes.len()
            ));
        }
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                from(a)
            })
            .collect())
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            fixed::<1, u8>(bytes, count, |[b]| b)?
                .into_iter()
                .enumerate()
                .map(|(i, b)| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(format!("has byte {b} at element {i}, a BOOL is 0 or 1")),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int32 => TensorData::I32(fixed(bytes, count, i32::from_le_bytes)?),
        DataType::Int64 => TensorData::I64(fixed(bytes, count, i64::from_le_bytes)?),
        DataType::Fp32 => TensorData::F32(fixed(bytes, count, f32::from_le_bytes)?),
        DataType::Fp64 => TensorData::F64(fixed(bytes, count, f64::from_le_bytes)?),
        DataType::Bytes => {
            let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
            let mut rest = bytes;
            while !rest.is_empty() {
                let (Some(head), Some(tail)) = (rest.get(..4), rest.get(4..)) else {
                    return Err(format!("ends inside the length of element {}", out.len()));
                };
                let mut len = [0u8; 4];
                len.copy_from_slice(head);
                let len = u32::from_le_bytes(len) as usize;
                let Some(element) = tail.get(..len) else {
                    return Err(format!(
                        "element {} declares {len} bytes, {} remain",
                        out.len(),
                        tail.len()
                    ));
                };
                out.push(element.to_vec());
                rest = &tail[len..];
            }
            if out.len() != count {
                return Err(format!("holds {} BYTES elements, {count} needed", out.len()));
            }
            TensorData::Bytes(out)
        }
    })
}

fn encode_raw(data: TensorData) -> Vec<u8> {
    match data {
        TensorData::Bool(v) => v.into_iter().map(u8::from).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bytes(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
            for element in v {
                // The length prefix is a u32: an element of 4 GiB or more cannot be sent
                // in a gRPC message anyway (its limit is below that).
                out.extend_from_slice(&(element.len() as u32).to_le_bytes());
                out.extend_from_slice(&element);
            }
            out
        }
    }
}

fn encode_typed(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::I32(v) => c.int_contents = v,
        TensorData::I64(v) => c.int64_contents = v,
        TensorData::F32(v) => c.fp32_contents = v,
        TensorData::F64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v,
    }
    c
}

/// Picks the requested outputs from what the model produced, checked against its signature.
fn encode_outputs(
    model: &dyn ServedModel,
    wanted: Vec<TensorSpec>,
    produced: Vec<Tensor>,
    raw: bool,
    id: String,
) -> Result<ModelInferResponse, ServeError> {
    let broken = |message: String| ServeError::Internal(format!("model {:?} {message}", model.name()));
    let mut produced: Vec<Option<Tensor>> = produced.into_iter().map(Some).collect();
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut raw_output_contents = Vec::new();
    for spec in wanted {
        let tensor = produced
            .iter_mut()
            .find(|t| t.as_ref().is_some_and(|t| t.name == spec.name))
            .and_then(Option::take)
            .ok_or_else(|| broken(format!("did not produce its output {:?}", spec.name)))?;
        if tensor.datatype() != spec.datatype {
            return Err(broken(format!(
                "produced output {:?} as {}, its signature says {}",
                spec.name,
                tensor.datatype(),
                spec.datatype
            )));
        }
        let count = tensor.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count != Some(tensor.data.len()) {
            return Err(broken(format!(
                "produced output {:?} with shape {:?} and {} elements",
                spec.name,
                tensor.shape,
                tensor.data.len()
            )));
        }
        let shape = tensor
            .shape
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| broken(format!("produced output {:?} with an oversized shape", spec.name)))?;
        let contents = if raw {
            raw_output_contents.push(encode_raw(tensor.data));
            None
        } else {
            Some(encode_typed(tensor.data))
        };
        outputs.push(InferOutputTensor {
            name: tensor.name,
            datatype: spec.datatype.as_str().into(),
            shape,
            parameters: HashMap::new(),
            contents,
        });
    }
    Ok(ModelInferResponse {
        model_name: model.name().into(),
        model_version: model.version(),
        id,
        parameters: HashMap::new(),
        outputs,
        raw_output_contents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips_every_datatype() {
        let cases = [
            TensorData::Bool(vec![true, false, true]),
            TensorData::I32(vec![-1, 0, i32::MAX]),
            TensorData::I64(vec![i64::MIN, 0, 7]),
            TensorData::F32(vec![0.5, -1.25, f32::INFINITY]),
            TensorData::F64(vec![0.1, -2.0, 1e300]),
            TensorData::Bytes(vec![b"ab".to_vec(), Vec::new(), "é".as_bytes().to_vec()]),
        ];
        for data in cases {
            let bytes = encode_raw(data.clone());
            assert_eq!(
                decode_raw(data.datatype(), &bytes, 3),
                Ok(data.clone()),
                "{:?}",
                data.datatype()
            );
            assert!(
                decode_raw(data.datatype(), &bytes, 2).is_err(),
                "{:?} with a wrong count",
                data.datatype()
            );
        }
    }

    #[test]
    fn raw_layout_is_little_endian_with_length_prefixed_bytes() {
        assert_eq!(encode_raw(TensorData::I32(vec![1, 256])), [1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            encode_raw(TensorData::Bytes(vec![b"hi".to_vec()])),
            [2, 0, 0, 0, b'h', b'i']
        );
        assert!(decode_raw(DataType::Bytes, &[5, 0, 0, 0, b'h'], 1)
            .unwrap_err()
            .contains("declares 5 bytes"));
        assert!(decode_raw(DataType::Bytes, &[1, 0], 1)
            .unwrap_err()
            .contains("inside the length"));
        assert!(decode_raw(DataType::Bool, &[2], 1).unwrap_err().contains("0 or 1"));
    }

    #[test]
    fn shapes_fit_by_rank_and_fixed_sizes() {
        assert_eq!(check_shape(&[2, 3], &[-1, 3]), Ok(vec![2, 3]));
        assert!(check_shape(&[2, 4], &[-1, 3]).is_err());
        assert!(check_shape(&[6], &[-1, 3]).is_err());
        assert!(check_shape(&[-1, 3], &[-1, 3]).is_err());
    }
}
