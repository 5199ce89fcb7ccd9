//! The sidecar's gRPC server: `hospital.ml.v1` (feature store, model registry, risk
//! scoring), the Open Inference Protocol v2 over the registry's promoted models, health
//! and reflection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hospital_proto::ml::{
    self as pb, feature_store_service_server as fs, forecast_service_server as fc, model_service_server as ms,
    risk_service_server as rs,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::features::labels::Task;
use crate::features::{extract, feature_defs, features, AsOf};
use crate::registry::{Registered, Registry};
use crate::serve::inference::{
    DataType, InferError, InferenceService, ModelRepository, ServedModel, Tensor, TensorData, TensorSpec,
};
use crate::store::TrainingSetStore;

/// Everything the services share.
pub struct Sidecar {
    /// A client on the `warehouse` database.
    pub warehouse: clickhouse::Client,
    pub store: TrainingSetStore,
    pub registry: Registry,
    /// Live scoring's account ([`crate::live`]).
    pub live: Arc<crate::live::LiveStatus>,
}

impl Sidecar {
    pub fn open(warehouse: clickhouse::Client, data_dir: PathBuf) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            warehouse,
            store: TrainingSetStore::new(data_dir.join("training_sets")),
            registry: Registry::open(data_dir.join("models"))?,
            live: Arc::default(),
        }))
    }

    /// A patient's feature vector as of `position` (0: the warehouse watermark) at the
    /// time of their newest vital-signs set seen then (or `at_ms` when given).
    pub async fn online_features(
        &self,
        patient: &hospital_proto::events::PatientRef,
        position: u64,
        at_ms: Option<i64>,
    ) -> Result<(Vec<f64>, AsOf), Status> {
        let key = extract::patient_key(&self.warehouse, &patient.assigning_authority, &patient.mrn)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "patient {}^{} is not in the warehouse",
                    patient.mrn, patient.assigning_authority
                ))
            })?;
        let position = if position == 0 {
            extract::watermark(&self.warehouse).await.map_err(unavailable)?
        } else {
            position
        };
        let (histories, _) = extract::histories(&self.warehouse, std::slice::from_ref(&key))
            .await
            .map_err(unavailable)?;
        let h = histories.get(&key).cloned().unwrap_or_default();
        let at_ms = match at_ms {
            Some(t) => t,
            None => h
                .sets
                .iter()
                .filter(|s| s.position <= position)
                .map(|s| s.at_ms)
                .max()
                .ok_or_else(|| Status::failed_precondition("the patient has no vital-signs set to score as of"))?,
        };
        let at = AsOf { at_ms, position };
        Ok((features(&h, at), at))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("warehouse: {e}"))
}

fn task_of(raw: i32) -> Result<Task, Status> {
    match pb::Task::try_from(raw) {
        Ok(pb::Task::Deterioration24h) => Ok(Task::Deterioration24h),
        Ok(pb::Task::Readmission30d) => Ok(Task::Readmission30d),
        _ => Err(Status::invalid_argument(
            "task: must be TASK_DETERIORATION_24H or TASK_READMISSION_30D",
        )),
    }
}

/// Version `version` of a task's model, or the served one for 0 (`none` when no version
/// is served). The served version is taken from memory, any other read from the registry.
fn model_of(
    sidecar: &Sidecar,
    task: Task,
    version: u64,
    none: impl FnOnce() -> Status,
) -> Result<Arc<Registered>, Status> {
    match sidecar.registry.served(task) {
        Some(m) if version == 0 || m.version == version => Ok(m),
        None if version == 0 => Err(none()),
        _ => sidecar
            .registry
            .load(task, version)
            .map(Arc::new)
            .map_err(|e| Status::not_found(format!("{e:#}"))),
    }
}

fn task_to_pb(t: Task) -> pb::Task {
    match t {
        Task::Deterioration24h => pb::Task::Deterioration24h,
        Task::Readmission30d => pb::Task::Readmission30d,
    }
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn ms_of(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn quality(r: &hospital_ml_models::metrics::Report) -> pb::Quality {
    pb::Quality {
        rows: r.n as u64,
        positives: r.positives as u64,
        auroc: r.auroc,
        auprc: r.auprc,
        brier: r.brier,
        calibration_slope: r.calibration_slope,
        calibration_intercept: r.calibration_intercept,
        threshold: r.threshold,
        alerts_per_100_patient_days: r.alert_burden.alerts_per_100_patient_days,
        ppv: r.alert_burden.ppv,
        sensitivity: r.alert_burden.sensitivity,
    }
}

fn model_version(r: &Registered, task: Task, promoted: Option<u64>) -> pb::ModelVersion {
    pb::ModelVersion {
        task: task_to_pb(task) as i32,
        version: r.version,
        training_set: r.training_set.clone(),
        training_set_version: r.training_set_version,
        hyperparameters: r.hyperparameters.to_string(),
        model: Some(quality(&r.model_report)),
        baseline_name: r.baseline_name.clone(),
        baseline: Some(quality(&r.baseline_report)),
        promoted: promoted == Some(r.version),
        trained_at: Some(ts(r.trained_at_ms)),
        fit_seconds: r.fit_seconds,
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct FeatureStoreApi(pub Arc<Sidecar>);

#[tonic::async_trait]
impl fs::FeatureStoreService for FeatureStoreApi {
    async fn list_features(
        &self,
        _: Request<pb::ListFeaturesRequest>,
    ) -> Result<Response<pb::ListFeaturesResponse>, Status> {
        Ok(Response::new(pb::ListFeaturesResponse {
            features: feature_defs()
                .into_iter()
                .map(|d| pb::Feature {
                    name: d.name,
                    description: d.description,
                })
                .collect(),
        }))
    }

    type BuildTrainingSetStream = Streamed<pb::BuildTrainingSetProgress>;

    async fn build_training_set(
        &self,
        request: Request<pb::BuildTrainingSetRequest>,
    ) -> Result<Response<Self::BuildTrainingSetStream>, Status> {
        let r = request.into_inner();
        let task = task_of(r.task)?;
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Status::invalid_argument(format!(
                "name: {:?} must be letters, digits, '-' and '_'",
                r.name
            )));
        }
        let from_ms = r.from.as_ref().map_or(i64::MIN, ms_of);
        let to_ms = r.to.as_ref().map_or(i64::MAX, ms_of);
        let (tx, rx) = mpsc::channel(16);
        let (ptx, mut prx) = mpsc::channel(16);
        let sidecar = self.0.clone();
        let build = tokio::spawn(async move {
            crate::training::build(&sidecar.warehouse, &sidecar.store, &r.name, task, from_ms, to_ms, ptx).await
        });
        tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let _ = tx
                    .send(Ok(pb::BuildTrainingSetProgress {
                        phase: "rows".into(),
                        patients_done: p.patients_done,
                        patients_total: p.patients_total,
                        rows_written: p.rows,
                        result: None,
                        censored: p.counts.censored,
                        not_on_a_ward: p.counts.not_on_a_ward,
                        out_of_range: p.counts.out_of_range,
                        positives: p.positives,
                    }))
                    .await;
            }
            let last = match build.await {
                Ok(Ok(b)) => Ok(pb::BuildTrainingSetProgress {
                    phase: "done".into(),
                    patients_done: b.progress.patients_done,
                    patients_total: b.progress.patients_total,
                    rows_written: b.progress.rows,
                    censored: b.progress.counts.censored,
                    not_on_a_ward: b.progress.counts.not_on_a_ward,
                    out_of_range: b.progress.counts.out_of_range,
                    positives: b.progress.positives,
                    result: Some(pb::TrainingSetVersion {
                        name: b.version.name.clone(),
                        version: b.version.version,
                        rows: b.version.rows,
                        positives: b.progress.positives,
                        task: task_to_pb(task) as i32,
                        label_definition: b.metadata.label.definition.clone(),
                        watermark: b.metadata.watermark,
                        features: b.metadata.features.iter().map(|f| f.name.clone()).collect(),
                        created_at: Some(ts(b.metadata.created_at_ms)),
                    }),
                }),
                Ok(Err(e)) => Err(Status::unavailable(format!("training set build failed: {e:#}"))),
                Err(e) => Err(internal(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_training_sets(
        &self,
        _: Request<pb::ListTrainingSetsRequest>,
    ) -> Result<Response<pb::ListTrainingSetsResponse>, Status> {
        let store = &self.0.store;
        let mut versions = Vec::new();
        for name in store.list().await.map_err(internal)? {
            for v in store.versions(&name).await.map_err(internal)? {
                let set = store.open(&name, Some(v.version)).await.map_err(internal)?;
                let m = set.metadata();
                // The label definition starts with the task's name (see `training::build`).
                let task = [Task::Deterioration24h, Task::Readmission30d]
                    .into_iter()
                    .find(|t| m.label.definition.starts_with(&format!("{}:", t.name())))
                    .map_or(pb::Task::Unspecified, task_to_pb);
                versions.push(pb::TrainingSetVersion {
                    name: name.clone(),
                    version: v.version,
                    rows: v.rows,
                    positives: 0,
                    task: task as i32,
                    label_definition: m.label.definition.clone(),
                    watermark: m.watermark,
                    features: m.features.iter().map(|f| f.name.clone()).collect(),
                    created_at: Some(ts(m.created_at_ms)),
                });
            }
        }
        Ok(Response::new(pb::ListTrainingSetsResponse { versions }))
    }

    async fn get_online_features(
        &self,
        request: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        let r = request.into_inner();
        let patient = r
            .patient
            .filter(|p| !p.mrn.is_empty())
            .ok_or_else(|| Status::invalid_argument("patient.mrn: required"))?;
        let (values, at) = self
            .0
            .online_features(&patient, r.as_of_position, r.as_of.as_ref().map(ms_of))
            .await?;
        Ok(Response::new(pb::GetOnlineFeaturesResponse {
            names: feature_defs().into_iter().map(|d| d.name).collect(),
            values,
            as_of_position: at.position,
            as_of: Some(ts(at.at_ms)),
        }))
    }
}

pub struct ModelApi(pub Arc<Sidecar>);

#[tonic::async_trait]
impl ms::ModelService for ModelApi {
    async fn train(&self, request: Request<pb::TrainRequest>) -> Result<Response<pb::ModelVersion>, Status> {
        let r = request.into_inner();
        let task = task_of(r.task)?;
        // A stated penalty is used as it is; without one it is chosen by validation.
        let mut options = crate::registry::default_options();
        let grid: &[f64] = if r.l2 > 0.0 {
            options.l2 = r.l2;
            &[]
        } else {
            &crate::registry::L2_GRID
        };
        let set = if r.training_set.is_empty() {
            task.name().to_string()
        } else {
            r.training_set
        };
        let version = (r.training_set_version > 0).then_some(r.training_set_version);
        let registered = self
            .0
            .registry
            .train(&self.0.store, task, &set, version, options, grid)
            .await
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        let promoted = self.0.registry.promoted_version(task).map_err(internal)?;
        Ok(Response::new(model_version(&registered, task, promoted)))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let task = task_of(request.into_inner().task)?;
        let reg = &self.0.registry;
        let promoted = reg.promoted_version(task).map_err(internal)?;
        let mut versions = Vec::new();
        for v in reg.versions(task).map_err(internal)? {
            versions.push(model_version(&reg.load(task, v).map_err(internal)?, task, promoted));
        }
        Ok(Response::new(pb::ListModelsResponse { versions }))
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::ModelVersion>, Status> {
        let r = request.into_inner();
        let task = task_of(r.task)?;
        let m = self
            .0
            .registry
            .promote(task, r.version)
            .map_err(|e| Status::not_found(format!("{e:#}")))?;
        Ok(Response::new(model_version(&m, task, Some(m.version))))
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::ModelVersion>, Status> {
        let task = task_of(request.into_inner().task)?;
        let m = self
            .0
            .registry
            .rollback(task)
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        Ok(Response::new(model_version(&m, task, Some(m.version))))
    }

    async fn get_drift(&self, request: Request<pb::GetDriftRequest>) -> Result<Response<pb::Drift>, Status> {
        Ok(Response::new(self.drift(request.into_inner())?))
    }
}

impl ModelApi {
    fn drift(&self, r: pb::GetDriftRequest) -> Result<pb::Drift, Status> {
        let task = task_of(r.task)?;
        let model = model_of(&self.0, task, r.version, || {
            Status::failed_precondition(format!("no {} model is promoted", task.name()))
        })?;
        let live = self.0.live.drift(task, model.version);
        let m = &model.model;
        let rep = crate::drift::report(&m.feature_names, &m.means, &m.stds, &model.reference, &live);
        Ok(pb::Drift {
            task: task_to_pb(task) as i32,
            version: model.version,
            training_rows: model.reference.rows,
            live_rows: rep.live_rows,
            score_psi: rep.score_psi,
            train_score_mean: rep.train_score_mean,
            live_score_mean: rep.live_score_mean,
            features: rep
                .features
                .into_iter()
                .map(|f| pb::FeatureDrift {
                    feature: f.feature,
                    train_mean: f.train_mean,
                    live_mean: f.live_mean,
                    shift_sd: f.shift_sd,
                    train_missing: f.train_missing,
                    live_missing: f.live_missing,
                })
                .collect(),
        })
    }
}

pub struct RiskApi(pub Arc<Sidecar>);

impl RiskApi {
    async fn score(sidecar: &Sidecar, r: pb::ScoreRequest) -> Result<pb::ScoreResponse, Status> {
        let task = task_of(r.task)?;
        let model = model_of(sidecar, task, r.model_version, || {
            Status::unavailable(format!("no {} model is trained yet", task.name()))
        })?;
        let values = match r.input {
            Some(pb::score_request::Input::Features(f)) => {
                let d = model.model.feature_names.len();
                if f.values.len() != d {
                    return Err(Status::invalid_argument(format!(
                        "features.values: {} values, the model takes {d} (ListFeatures gives their order)",
                        f.values.len()
                    )));
                }
                f.values
            }
            Some(pb::score_request::Input::Patient(p)) => {
                let patient = p
                    .patient
                    .filter(|p| !p.mrn.is_empty())
                    .ok_or_else(|| Status::invalid_argument("patient.patient.mrn: required"))?;
                sidecar.online_features(&patient, p.as_of_position, None).await?.0
            }
            None => return Err(Status::invalid_argument("input: features or patient required")),
        };
        let s = model.model.score(ndarray::ArrayView1::from(&values));
        let contributions = s
            .by_impact()
            .into_iter()
            .map(|j| pb::Contribution {
                feature: model.model.feature_names[j].clone(),
                value: values[j],
                contribution: s.contributions[j],
                imputed: s.imputed[j],
            })
            .collect();
        Ok(pb::ScoreResponse {
            request_id: r.request_id,
            task: task_to_pb(task) as i32,
            model_version: model.version,
            probability: s.probability,
            threshold: model.threshold,
            high: s.probability >= model.threshold,
            contributions,
            error: String::new(),
        })
    }
}

#[tonic::async_trait]
impl rs::RiskService for RiskApi {
    type ScoreStream = Streamed<pb::ScoreResponse>;

    async fn score(
        &self,
        request: Request<tonic::Streaming<pb::ScoreRequest>>,
    ) -> Result<Response<Self::ScoreStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let sidecar = self.0.clone();
        tokio::spawn(async move {
            while let Some(next) = input.next().await {
                let reply = match next {
                    Ok(r) => {
                        let id = r.request_id.clone();
                        match RiskApi::score(&sidecar, r).await {
                            Ok(s) => Ok(s),
                            Err(status) => Ok(pb::ScoreResponse {
                                request_id: id,
                                error: format!("{:?}: {}", status.code(), status.message()),
                                ..Default::default()
                            }),
                        }
                    }
                    Err(status) => Err(status),
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn score_one(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        Ok(Response::new(RiskApi::score(&self.0, request.into_inner()).await?))
    }

    async fn get_live_status(
        &self,
        _request: Request<pb::GetLiveStatusRequest>,
    ) -> Result<Response<pb::LiveStatus>, Status> {
        Ok(Response::new(self.0.live.snapshot()))
    }
}

pub struct ForecastApi(pub Arc<Sidecar>);

fn demand_status(e: crate::demand::DemandError) -> Status {
    use crate::demand::DemandError;
    use hospital_ml_models::ModelError;
    match e {
        DemandError::Warehouse(e) => unavailable(e),
        DemandError::Model(ModelError::NotEnoughData(m)) => Status::failed_precondition(m),
        DemandError::Model(e) => Status::internal(e.to_string()),
        DemandError::Request(m) => Status::invalid_argument(m),
    }
}

/// 1..=14 days; 0 means `default`.
fn horizon(days: u32, default: u32, field: &str) -> Result<u32, Status> {
    match days {
        0 => Ok(default),
        1..=14 => Ok(days),
        _ => Err(Status::invalid_argument(format!("{field}: 1 to 14 days, got {days}"))),
    }
}

#[tonic::async_trait]
impl fc::ForecastService for ForecastApi {
    type ForecastStream = Streamed<pb::DepartmentForecast>;

    async fn forecast(&self, request: Request<pb::ForecastRequest>) -> Result<Response<Self::ForecastStream>, Status> {
        use crate::demand::{self, Series};
        let r = request.into_inner();
        let (series, wire) = match pb::DemandSeries::try_from(r.series) {
            Ok(pb::DemandSeries::EdArrivals) => (Series::EdArrivals, pb::DemandSeries::EdArrivals),
            Ok(pb::DemandSeries::Admissions) => (Series::Admissions, pb::DemandSeries::Admissions),
            _ => {
                return Err(Status::invalid_argument(
                    "series: DEMAND_SERIES_ED_ARRIVALS or DEMAND_SERIES_ADMISSIONS",
                ))
            }
        };
        let days = horizon(r.horizon_days, 14, "horizon_days")? as usize;
        let warehouse = &self.0.warehouse;
        let now = extract::horizon_ms(warehouse).await.map_err(unavailable)?;
        let mut all = demand::department_series(warehouse, series, now)
            .await
            .map_err(demand_status)?;
        let chosen: Vec<(String, hospital_ml_models::forecast::DailySeries)> = if r.department_codes.is_empty() {
            all.into_iter().collect()
        } else {
            let known: Vec<String> = all.keys().cloned().collect();
            r.department_codes
                .iter()
                .map(|d| {
                    all.remove(d).map(|s| (d.clone(), s)).ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "department_codes: {d:?} has no {} in the warehouse; known: {}",
                            wire.as_str_name(),
                            known.join(", ")
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for (department, history) in chosen {
                let fitted = tokio::task::spawn_blocking(move || demand::forecast(history, days)).await;
                let message = match fitted {
                    Ok(Ok(f)) => Ok(pb::DepartmentForecast {
                        department_code: department,
                        series: wire as i32,
                        method: f.method.into(),
                        history_days: f.history.len() as u32,
                        last_observed_date: demand::date_of(f.history.first_day + f.history.len() as i64 - 1),
                        points: f
                            .points
                            .iter()
                            .map(|p| pb::DemandPoint {
                                date: demand::date_of(p.day),
                                days_ahead: p.ahead,
                                mean: p.mean,
                                lower: p.lower,
                                upper: p.upper,
                            })
                            .collect(),
                    }),
                    Ok(Err(e)) => Err(demand_status(e.into())),
                    Err(e) => Err(internal(e)),
                };
                let stop = message.is_err();
                if tx.send(message).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn plan_staffing(&self, request: Request<pb::StaffingRequest>) -> Result<Response<pb::StaffingPlan>, Status> {
        use hospital_ml_models::staffing::Shift;
        let r = request.into_inner();
        let days = horizon(r.horizon_days, 3, "horizon_days")?;
        let shifts = match pb::ShiftPattern::try_from(r.shifts) {
            Ok(pb::ShiftPattern::EightHour) => Shift::eight_hour(),
            Ok(_) => Shift::twelve_hour(),
            Err(_) => return Err(Status::invalid_argument("shifts: unknown shift pattern")),
        };
        let plan = crate::demand::plan(&self.0.warehouse, &r.ward_codes, r.patients_per_nurse, shifts, days)
            .await
            .map_err(demand_status)?;
        Ok(Response::new(pb::StaffingPlan {
            as_of: Some(ts(plan.now_ms)),
            shifts: plan
                .shifts
                .iter()
                .map(|(s, beds)| pb::ShiftStaffing {
                    ward_code: s.ward.clone(),
                    starts_at: Some(ts(plan.now_ms + (s.hours_from_now * 3_600_000.0).round() as i64)),
                    shift: s.shift.clone(),
                    expected_census: s.expected_census,
                    census_lower: s.census_lower,
                    census_upper: s.census_upper,
                    nurses_expected: s.nurses_expected,
                    nurses_upper: s.nurses_upper,
                    p_over_beds: s.p_over_beds,
                    beds: *beds,
                })
                .collect(),
            notes: plan.notes,
            inpatients_now: plan.inpatients_now.into_iter().collect(),
        }))
    }
}

/// A promoted risk model as the Open Inference Protocol sees it: input `features`
/// (FP64, [rows, features]), outputs `probability` (FP64, [rows]) and `high` (BOOL).
struct Served {
    name: &'static str,
    model: Arc<Registered>,
}

impl ServedModel for Served {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> String {
        self.model.version.to_string()
    }
    fn platform(&self) -> &str {
        "linfa-logistic"
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "features".into(),
            datatype: DataType::Fp64,
            shape: vec![-1, self.model.model.feature_names.len() as i64],
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
                name: "high".into(),
                datatype: DataType::Bool,
                shape: vec![-1],
            },
        ]
    }
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
        let d = self.model.model.feature_names.len();
        let TensorData::F64(x) = &inputs[0].data else {
            return Err(InferError::Internal("features are not FP64".into()));
        };
        let p: Vec<f64> = x
            .chunks_exact(d)
            .map(|row| self.model.model.score(ndarray::ArrayView1::from(row)).probability)
            .collect();
        let high = p.iter().map(|p| *p >= self.model.threshold).collect();
        Ok(vec![
            Tensor {
                name: "probability".into(),
                shape: vec![p.len()],
                data: TensorData::F64(p),
            },
            Tensor {
                name: "high".into(),
                shape: vec![x.len() / d.max(1)],
                data: TensorData::Bool(high),
            },
        ])
    }
}

pub struct Repository(pub Arc<Sidecar>);

impl ModelRepository for Repository {
    fn server_ready(&self) -> bool {
        true
    }
    fn models(&self) -> Vec<String> {
        [Task::Deterioration24h, Task::Readmission30d]
            .into_iter()
            .filter(|t| self.0.registry.served(*t).is_some())
            .map(|t| t.name().to_string())
            .collect()
    }
    fn model(&self, name: &str, version: Option<&str>) -> Option<Arc<dyn ServedModel>> {
        let task = [Task::Deterioration24h, Task::Readmission30d]
            .into_iter()
            .find(|t| t.name() == name)?;
        let model = match version.filter(|v| !v.is_empty()) {
            None => self.0.registry.served(task)?,
            Some(v) => Arc::new(self.0.registry.load(task, v.parse().ok()?).ok()?),
        };
        Some(Arc::new(Served {
            name: task.name(),
            model,
        }))
    }
}

/// Serves every service on `listen` until `shutdown` resolves; returns the bound
/// address through `bound` as soon as it listens.
pub async fn serve(
    sidecar: Arc<Sidecar>,
    listen: SocketAddr,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<fs::FeatureStoreServiceServer<FeatureStoreApi>>()
        .await;
    reporter.set_serving::<ms::ModelServiceServer<ModelApi>>().await;
    reporter.set_serving::<rs::RiskServiceServer<RiskApi>>().await;
    reporter.set_serving::<fc::ForecastServiceServer<ForecastApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hospital_proto::ML_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(hospital_proto::INFERENCE_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hospital_proto::ML_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(hospital_proto::INFERENCE_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let _ = bound.send(addr);
    tracing::info!(%addr, "hospital-ml serving");
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(fs::FeatureStoreServiceServer::new(FeatureStoreApi(sidecar.clone())))
        .add_service(ms::ModelServiceServer::new(ModelApi(sidecar.clone())))
        .add_service(rs::RiskServiceServer::new(RiskApi(sidecar.clone())))
        .add_service(fc::ForecastServiceServer::new(ForecastApi(sidecar.clone())))
        .add_service(InferenceService::new(Arc::new(Repository(sidecar))).into_server())
        // Without TCP_NODELAY a unary answer waits on the client's delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}
