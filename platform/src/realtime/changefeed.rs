//! The change feed: committed events in staging order for keeping operational
//! application databases in sync. Each event carries its staging position; a subscriber
//! that reconnects with the last position it processed resumes right after it, across
//! platform restarts (history is read back from `staging.events`).
//!
//! Owns: filtering and delivery to one subscriber. Must not: block ingest. Each
//! subscriber has a bounded queue; when it is full the subscriber's follower falls
//! behind the bus and later catches up from staging, so memory stays bounded.
//!
//! A subscription must start at or before the end of the feed (the committed position):
//! a position past it is refused, not waited for, so that a subscriber holding a
//! position of another platform's staging zone is told so instead of silently missing
//! the events up to it.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use clickhouse::Client;
use hospital_proto::events::{clinical_event::Payload, ClinicalEvent, PatientRef};
use hospital_proto::realtime::change_feed_service_server::ChangeFeedService;
use hospital_proto::realtime::{ChangeEvent, SubscribeRequest};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::bus::Bus;
use super::follow::{CatchUpStats, Follower};
use super::next_or_stop;
use crate::error::{Error, Violation};
use crate::staging::{StagedEvent, KINDS};

/// Where a patient is now (ward code), for the ward filter.
pub type WardOf = Arc<dyn Fn(&PatientRef) -> Option<String> + Send + Sync>;

/// Events queued per subscriber before its follower stops reading the bus.
const SUBSCRIBER_QUEUE: usize = 256;

pub struct ChangeFeedApi {
    pub bus: Bus,
    pub staging: Client,
    pub committed: watch::Receiver<u64>,
    pub ward_of: WardOf,
    pub shutdown: CancellationToken,
    /// Staging reads of every subscriber's follower.
    pub catch_up: Arc<CatchUpStats>,
}

/// A subscriber's filters, checked once.
struct Filter {
    kinds: HashSet<String>,
    wards: HashSet<String>,
    mrns: HashSet<String>,
}

impl Filter {
    fn new(req: &SubscribeRequest) -> Result<Self, Error> {
        let unknown: Vec<Violation> = req
            .kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| !KINDS.contains(&k.as_str()))
            .map(|(i, k)| {
                Violation::new(
                    format!("kinds[{i}]"),
                    format!("unknown kind {k:?}; known: {}", KINDS.join(", ")),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidArgument {
                message: "unknown event kind in the filter".into(),
                violations: unknown,
            });
        }
        Ok(Self {
            kinds: req.kinds.iter().cloned().collect(),
            wards: req.ward_codes.iter().map(|w| w.trim().to_string()).collect(),
            mrns: req.patient_mrns.iter().map(|m| m.trim().to_string()).collect(),
        })
    }

    /// Cheap checks on the staged row, before decoding.
    fn row_matches(&self, row: &StagedEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&row.kind))
            && (self.mrns.is_empty() || self.mrns.contains(&row.patient_mrn))
    }

    fn ward_matches(&self, event: &ClinicalEvent, ward_of: &WardOf) -> bool {
        if self.wards.is_empty() {
            return true;
        }
        let own: Vec<&str> = match &event.payload {
            Some(Payload::Admission(a)) => a.location.iter().map(|l| l.ward_code.as_str()).collect(),
            Some(Payload::Transfer(t)) => t.from.iter().chain(t.to.iter()).map(|l| l.ward_code.as_str()).collect(),
            Some(Payload::BedStatus(b)) => b.location.iter().map(|l| l.ward_code.as_str()).collect(),
            _ => vec![],
        };
        own.iter().any(|w| self.wards.contains(*w))
            || event
                .patient
                .as_ref()
                .and_then(|p| ward_of(p))
                .is_some_and(|w| self.wards.contains(&w))
    }
}

type FeedStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ChangeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ChangeFeedService for ChangeFeedApi {
    type SubscribeStream = FeedStream;

    #[tracing::instrument(skip_all)]
    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let filter = Filter::new(&req)?;
        let end = *self.committed.borrow();
        if req.after_position > end {
            return Err(Error::PositionPastEnd {
                requested: req.after_position,
                end,
            }
            .into());
        }
        let mut follower = Follower::new(
            &self.bus,
            self.staging.clone(),
            self.committed.clone(),
            req.after_position,
        )
        .with_stats(self.catch_up.clone());
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let ward_of = self.ward_of.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let Some(next) = next_or_stop(
                    follower.next(),
                    &tx,
                    &shutdown,
                    "server is shutting down; resubscribe after your last position",
                )
                .await
                else {
                    return;
                };
                let row = match next {
                    Ok(Some(row)) => row,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if !filter.row_matches(&row) {
                    continue;
                }
                let event = match ClinicalEvent::decode(row.payload.as_slice()) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::from(Error::DataLoss(format!(
                                "staged event at position {} does not decode: {e}",
                                row.position
                            )))))
                            .await;
                        return;
                    }
                };
                if !filter.ward_matches(&event, &ward_of) {
                    continue;
                }
                let change = ChangeEvent {
                    position: row.position,
                    kind: row.kind,
                    event: Some(event),
                    staged_at: Some(prost_types::Timestamp {
                        seconds: row.received_at_ms.div_euclid(1000),
                        nanos: (row.received_at_ms.rem_euclid(1000) * 1_000_000) as i32,
                    }),
                };
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
