//! gRPC faces of the real-time stage: `AlertService` and `CensusService`. Thin: read the
//! processor's state or forward its fan-out, with filters; a subscriber that falls
//! behind the fan-out is told so (alerts) or re-sent a snapshot (census).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use hospital_proto::realtime::alert_service_server::AlertService;
use hospital_proto::realtime::census_service_server::CensusService;
use hospital_proto::realtime::{
    census_update, Alert, Census, CensusUpdate, GetCensusRequest, GetScoresRequest, GetScoresResponse,
    SubscribeAlertsRequest,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::{quote, Error, Violation};
use crate::now_ms;
use crate::realtime::next_or_stop;
use crate::realtime::processor::Realtime;

/// Messages queued per subscriber.
const SUBSCRIBER_QUEUE: usize = 256;

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Known codes listed in a filter's error, at most.
const MAX_LISTED_CODES: usize = 50;

fn poisoned() -> Status {
    Error::Internal("real-time state unavailable".into()).into()
}

/// Checks filters against the ward and department codes the live census knows: a code
/// it has never seen is answered INVALID_ARGUMENT (a typo must not look like a quiet
/// ward), each bad code a violation that lists the known ones.
fn check_filters(realtime: &Realtime, wards: &[String], departments: &[String]) -> Result<(), Status> {
    if wards.is_empty() && departments.is_empty() {
        return Ok(());
    }
    let (known_wards, known_departments) = realtime.state.read().map_err(|_| poisoned())?.census.known_codes();
    let mut violations = Vec::new();
    for (field, what, codes, known) in [
        ("ward_codes", "ward", wards, &known_wards),
        ("department_codes", "department", departments, &known_departments),
    ] {
        for (i, code) in codes.iter().enumerate().filter(|(_, c)| !known.contains(*c)) {
            let listed: Vec<&str> = known.iter().take(MAX_LISTED_CODES).map(String::as_str).collect();
            let known = match known.len() {
                0 => format!("no {what} is known yet"),
                n if n > MAX_LISTED_CODES => format!("known: {} and {} more", listed.join(", "), n - MAX_LISTED_CODES),
                _ => format!("known: {}", listed.join(", ")),
            };
            violations.push(Violation::new(
                format!("{field}[{i}]"),
                format!("unknown {what} code {}; {known}", quote(code)),
            ));
        }
    }
    if violations.is_empty() {
        return Ok(());
    }
    let summary: Vec<String> = violations.iter().map(|v| v.description.clone()).collect();
    Err(Error::InvalidArgument {
        message: format!("filter matches nothing: {}", summary.join("; ")),
        violations,
    }
    .into())
}

pub struct AlertApi {
    pub realtime: Realtime,
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl AlertService for AlertApi {
    type SubscribeAlertsStream = Stream<Alert>;

    #[tracing::instrument(skip_all)]
    async fn subscribe_alerts(
        &self,
        request: Request<SubscribeAlertsRequest>,
    ) -> Result<Response<Self::SubscribeAlertsStream>, Status> {
        let req = request.into_inner();
        check_filters(&self.realtime, &req.ward_codes, &req.department_codes)?;
        let wards: HashSet<String> = req.ward_codes.into_iter().collect();
        let departments: HashSet<String> = req.department_codes.into_iter().collect();
        let mut alerts = self.realtime.alerts.subscribe();
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let Some(next) = next_or_stop(alerts.recv(), &tx, &shutdown, "server is shutting down").await else {
                    return;
                };
                match next {
                    Ok(alert) => {
                        let wanted = (wards.is_empty() && departments.is_empty())
                            || wards.contains(&alert.ward_code)
                            || departments.contains(&alert.department_code);
                        if wanted && tx.send(Ok(Alert::clone(&alert))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let behind = Error::FellBehind(format!(
                            "subscriber fell behind by {missed} alerts; resubscribe, and read current scores with GetScores"
                        ));
                        // The subscriber may be gone already; nothing else to tell it.
                        let _ = tx.send(Err(behind.into())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_scores(&self, request: Request<GetScoresRequest>) -> Result<Response<GetScoresResponse>, Status> {
        let req = request.into_inner();
        check_filters(&self.realtime, &req.ward_codes, &[])?;
        let state = self.realtime.state.read().map_err(|_| poisoned())?;
        let scores = state.alerts.scores(&req.ward_codes, |p| state.census.location_of(p));
        Ok(Response::new(GetScoresResponse { scores }))
    }
}

pub struct CensusApi {
    pub realtime: Realtime,
    pub shutdown: CancellationToken,
}

impl CensusApi {
    fn snapshot(&self, req: &GetCensusRequest) -> Result<Census, Status> {
        check_filters(&self.realtime, &[], &req.department_codes)?;
        let state = self.realtime.state.read().map_err(|_| poisoned())?;
        Ok(state.census.snapshot(req, now_ms()))
    }
}

#[tonic::async_trait]
impl CensusService for CensusApi {
    type WatchCensusStream = Stream<CensusUpdate>;

    async fn get_census(&self, request: Request<GetCensusRequest>) -> Result<Response<Census>, Status> {
        Ok(Response::new(self.snapshot(&request.into_inner())?))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_census(
        &self,
        request: Request<GetCensusRequest>,
    ) -> Result<Response<Self::WatchCensusStream>, Status> {
        let req = request.into_inner();
        let departments: HashSet<String> = req.department_codes.iter().cloned().collect();
        // Subscribe before the snapshot: every change after it is in the channel.
        let mut updates = self.realtime.census.subscribe();
        let first = self.snapshot(&req)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let shutdown = self.shutdown.clone();
        let realtime = self.realtime.clone();
        tokio::spawn(async move {
            let mut at = first.position;
            if tx.send(Ok(snapshot_update(first))).await.is_err() {
                return;
            }
            loop {
                let Some(next) = next_or_stop(updates.recv(), &tx, &shutdown, "server is shutting down").await else {
                    return;
                };
                let update = match next {
                    Ok(u) if u.position <= at => continue,
                    Ok(u) => CensusUpdate::clone(&u),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: start again from a fresh snapshot.
                        let snapshot = match realtime.state.read() {
                            Ok(state) => state.census.snapshot(&req, now_ms()),
                            Err(_) => return,
                        };
                        at = snapshot.position;
                        if tx.send(Ok(snapshot_update(snapshot))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let wanted = departments.is_empty()
                    || match &update.update {
                        Some(census_update::Update::Ward(w)) => departments.contains(&w.department_code),
                        _ => true,
                    };
                if wanted && tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn snapshot_update(census: Census) -> CensusUpdate {
    CensusUpdate {
        position: census.position,
        update: Some(census_update::Update::Snapshot(census)),
    }
}

/// The ward-of lookup the change feed filters with.
pub fn ward_of(realtime: &Realtime) -> crate::realtime::changefeed::WardOf {
    let rt = realtime.clone();
    Arc::new(move |p| rt.location_of(p).map(|l| l.ward_code))
}
