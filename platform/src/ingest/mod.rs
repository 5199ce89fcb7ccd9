//! Ingest: the door of the platform. Turns an `IngestRequest` into staged rows (valid
//! events, validated and normalised) and rejections (invalid events, each with every
//! violation named by field), and builds the acknowledgement once the rows are durable.
//!
//! Owns: what is accepted and in which canonical form. Must not: write to storage
//! itself (the staging writer does) or answer before the commit.

pub mod codes;
pub mod units;
pub mod validate;

use hospital_proto::ingest as pb;
use prost::Message;

use crate::error::{bounded, echo, quote, Error, Result, Violation, MAX_VIOLATION_BYTES};
use crate::now_ms;
use crate::staging::{CommitInfo, StagedEvent};
pub use validate::{kind_of, validate, Limits, ValidEvent, KINDS};

/// Longest `request_id` accepted (it is echoed in the acknowledgement).
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// Limits of the door, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    pub max_events_per_request: usize,
    pub max_future_ms: i64,
}

/// A request split into rows to stage and the acknowledgement that waits for them.
#[derive(Debug)]
pub struct Prepared {
    pub rows: Vec<StagedEvent>,
    pub ack: PendingAck,
}

/// What a request's answer will say, once its rows are durable.
#[derive(Debug)]
pub struct PendingAck {
    pub request_id: String,
    /// The event id of each row, in row order.
    pub event_ids: Vec<String>,
    /// The index in the request of each row, in row order.
    pub indexes: Vec<u32>,
    pub rejections: Vec<pb::Rejection>,
    pub warnings: Vec<pb::Warning>,
}

impl PendingAck {
    /// The acknowledgement, to be sent only once `commit` says the rows are durable.
    /// A row that duplicates an earlier commit is durable through that first copy: it is
    /// among the committed ids and named in `duplicates`.
    pub fn acknowledge(self, commit: CommitInfo) -> pb::IngestResponse {
        let duplicates = commit
            .duplicates
            .iter()
            .filter_map(|d| {
                Some(pb::Duplicate {
                    index: *self.indexes.get(d.row)?,
                    event_id: self.event_ids.get(d.row)?.clone(),
                    first_position: d.first_position,
                    content_differs: d.content_differs,
                })
            })
            .collect();
        pb::IngestResponse {
            request_id: self.request_id,
            committed_event_ids: self.event_ids,
            rejections: self.rejections,
            committed_position: commit.last_position,
            duplicates,
            warnings: self.warnings,
        }
    }

    /// For a unary call in which nothing was valid: one INVALID_ARGUMENT naming every
    /// violation as `events[i].field`.
    pub fn all_rejected_error(&self) -> Error {
        let violations: Vec<Violation> = self
            .rejections
            .iter()
            .flat_map(|r| {
                r.violations.iter().map(move |v| {
                    Violation::new(
                        format!("events[{}].{}", r.index, v.field),
                        format!("event {:?}: {}", r.event_id, v.description),
                    )
                })
            })
            .collect();
        // The first few violations go into the message too, for clients that do not
        // decode status details.
        let summary: Vec<String> = violations
            .iter()
            .take(3)
            .map(|v: &Violation| format!("{}: {}", v.field, v.description))
            .collect();
        let more = violations.len().saturating_sub(3);
        Error::InvalidArgument {
            message: format!(
                "all {} events were rejected: {}{}",
                self.rejections.len(),
                summary.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
            violations,
        }
    }
}

/// Validates every event of `req`. Fails as a whole only when the request itself is
/// unacceptable (too many events); invalid events become rejections.
pub fn prepare(req: pb::IngestRequest, opts: &IngestOptions) -> Result<Prepared> {
    // The request id is echoed in the answer: it must stay small.
    if req.request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(Error::bad_field(
            format!(
                "request_id {} is longer than {MAX_REQUEST_ID_BYTES} bytes",
                quote(&req.request_id)
            ),
            "request_id",
            format!("at most {MAX_REQUEST_ID_BYTES} bytes, got {}", req.request_id.len()),
        ));
    }
    if req.events.len() > opts.max_events_per_request {
        return Err(Error::InvalidArgument {
            message: format!(
                "request {} carries {} events; at most {} per request",
                quote(&req.request_id),
                req.events.len(),
                opts.max_events_per_request
            ),
            violations: vec![Violation::new(
                "events",
                format!("at most {} events per request", opts.max_events_per_request),
            )],
        });
    }
    let now = now_ms();
    let limits = Limits {
        now_ms: now,
        max_future_ms: opts.max_future_ms,
    };
    let mut rows = Vec::with_capacity(req.events.len());
    let mut indexes = Vec::with_capacity(req.events.len());
    let mut rejections = Vec::new();
    let mut warnings = Vec::new();
    for (index, event) in req.events.into_iter().enumerate() {
        let raw = event.encode_to_vec();
        let event_id = event.event_id.clone();
        match validate(event, &limits) {
            Ok(mut valid) => {
                warnings.extend(valid.warnings.drain(..).map(|w| pb::Warning {
                    index: index as u32,
                    event_id: valid.event.event_id.clone(),
                    field: w.field,
                    description: w.description,
                }));
                indexes.push(index as u32);
                rows.push(staged_row(valid, raw, now));
            }
            // What is echoed is bounded: an acknowledgement must always fit.
            Err(violations) => rejections.push(pb::Rejection {
                index: index as u32,
                event_id: echo(&event_id),
                violations: violations
                    .into_iter()
                    .map(|v| pb::FieldViolation {
                        field: bounded(&v.field, MAX_VIOLATION_BYTES),
                        description: bounded(&v.description, MAX_VIOLATION_BYTES),
                    })
                    .collect(),
            }),
        }
    }
    Ok(Prepared {
        ack: PendingAck {
            request_id: req.request_id,
            event_ids: rows.iter().map(|r| r.event_id.clone()).collect(),
            indexes,
            rejections,
            warnings,
        },
        rows,
    })
}

fn staged_row(valid: ValidEvent, raw: Vec<u8>, received_at_ms: i64) -> StagedEvent {
    let ValidEvent {
        kind,
        occurred_at_ms,
        event,
        ..
    } = valid;
    let (patient_mrn, patient_authority) = event
        .patient
        .as_ref()
        .map(|p| (p.mrn.clone(), p.assigning_authority.clone()))
        .unwrap_or_default();
    StagedEvent {
        position: 0,
        event_id: event.event_id.clone(),
        source_system: event.source_system.clone(),
        kind: kind.to_string(),
        patient_mrn,
        patient_authority,
        occurred_at_ms,
        received_at_ms,
        payload: event.encode_to_vec(),
        raw,
    }
}
