//! The staging zone: the durable landing table `staging.events` and the group-commit
//! writer that fills it.
//!
//! Owns: assigning staging positions and deciding when an event is durable. Must not:
//! validate or transform events (ingest does that) or read them back for processing
//! (batch does that).

mod dedup;
mod writer;

pub use dedup::IndexOpened;
pub(crate) use writer::fill_batch;

pub use writer::{CommitInfo, CommitSink, DuplicateOf, PendingCommit, StagingWriter, WriterHandle, WriterOptions};

use serde::{Deserialize, Serialize};

/// Every value of `staging.events.kind` (the payload case's name): what ingest stores
/// and what readers of staging filter on.
pub const KINDS: &[&str] = hospital_proto::EVENT_KINDS;

/// Name of the landing table inside the `staging` database.
pub const EVENTS_TABLE: &str = "events";

/// Separates source system and event id in a key; cannot occur in validated ids.
const KEY_SEP: u8 = 0x1f;

/// An event's natural key as bytes: `source_system 0x1f event_id` (what first commit
/// wins compares, and what local state anchors itself to).
pub fn key(source_system: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source_system.len() + 1 + event_id.len());
    k.extend_from_slice(source_system.as_bytes());
    k.push(KEY_SEP);
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// The key of the staged row at `position`, if staging holds one (a point read:
/// staging is ordered by position). Local state written as of a position checks it
/// against staging with this, so a copy from another server or an older staging is
/// never taken for current.
pub async fn key_at(staging: &clickhouse::Client, position: u64) -> crate::error::Result<Option<Vec<u8>>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Key {
        source_system: String,
        event_id: String,
    }
    let rows = staging
        .query(&format!(
            "SELECT source_system, event_id FROM {EVENTS_TABLE} WHERE position = ?"
        ))
        .bind(position)
        .fetch_all::<Key>()
        .await?;
    Ok(rows.first().map(|r| key(&r.source_system, &r.event_id)))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_source_and_id() {
        assert_eq!(key("ward-ehr", "obs-1"), key("ward-ehr", "obs-1"));
        assert_ne!(key("ward-ehr", "obs-1"), key("ward-ehr", "obs-2"));
        assert_ne!(key("ward-ehr", "obs-1"), key("ward-eh", "robs-1"));
        assert_ne!(key("ward-ehr", "obs-1"), key("lab", "obs-1"));
    }
}
