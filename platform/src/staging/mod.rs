//! The staging zone: the durable landing table `staging.events` and the group-commit
//! writer that fills it.
//!
//! Owns: assigning staging positions and deciding when an event is durable. Must not:
//! validate or transform events (ingest does that) or read them back for processing
//! (batch does that).

mod dedup;
mod writer;

pub(crate) use writer::fill_batch;

pub use writer::{CommitInfo, CommitSink, DuplicateOf, PendingCommit, StagingWriter, WriterHandle, WriterOptions};

use serde::{Deserialize, Serialize};

/// Every value of `staging.events.kind` (the payload case's name): what ingest stores
/// and what readers of staging filter on.
pub const KINDS: &[&str] = hospital_proto::EVENT_KINDS;

/// Name of the landing table inside the `staging` database.
pub const EVENTS_TABLE: &str = "events";

/// One row of `staging.events`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct StagedEvent {
    /// Commit order, unique and increasing; assigned by the writer at flush time.
    pub position: u64,
    pub event_id: String,
    pub source_system: String,
    /// The payload case, e.g. "vital_signs".
    pub kind: String,
    pub patient_mrn: String,
    pub patient_authority: String,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    /// Canonical `ClinicalEvent` (validated, normalised), protobuf-encoded.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The `ClinicalEvent` as received, protobuf-encoded.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}
