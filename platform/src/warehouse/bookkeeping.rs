//! Load bookkeeping tables: `load_watermark`, `load_runs`, `load_errors` and the
//! idempotency registry `event_registry`, plus the row counts reported by status.
//!
//! Owns: how load state is stored and read back. Must not: decide when the watermark
//! moves or which events are duplicates (the batch stage does, with these functions).

use std::collections::HashMap;

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use super::{fetch_by_keys, insert_rows, Version};
use crate::error::Result;

pub const WATERMARK_TABLE: &str = "load_watermark";
pub const RUNS_TABLE: &str = "load_runs";
pub const ERRORS_TABLE: &str = "load_errors";
pub const REGISTRY_TABLE: &str = "event_registry";

/// Name of the staging -> warehouse pipeline in `load_watermark` and `load_runs`.
pub const PIPELINE: &str = "staging_to_warehouse";

/// Where a pipeline stands: everything staged at or below `position` is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Watermark {
    pub pipeline: String,
    pub position: u64,
    pub run_id: String,
    /// Seconds since the epoch (`DateTime`).
    pub updated_at: u32,
    /// The version of the last chunk loaded; the next chunk uses a higher one.
    pub version: Version,
}

/// The watermark of `pipeline` (all zero before its first load). Reads the row with the
/// highest version, whether or not ClickHouse has merged the older ones away.
pub async fn read_watermark(client: &Client, pipeline: &str) -> Result<Watermark> {
    // Aliases differ from the column names: 18.16 substitutes an alias into every
    // other use of that name in the query (`max(version) AS version` breaks argMax).
    let w = client
        .query(
            "SELECT ? AS p, argMax(position, version) AS pos, argMax(run_id, version) AS run, \
             argMax(updated_at, version) AS at, max(version) AS ver \
             FROM load_watermark WHERE pipeline = ?",
        )
        .bind(pipeline)
        .bind(pipeline)
        .fetch_one::<Watermark>()
        .await?;
    Ok(w)
}

pub async fn write_watermark(client: &Client, watermark: &Watermark) -> Result<()> {
    insert_rows(client, WATERMARK_TABLE, std::slice::from_ref(watermark)).await?;
    Ok(())
}

/// One finished or failed run, for status and audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct LoadRun {
    pub run_id: String,
    pub pipeline: String,
    pub full_reload: bool,
    /// "ok" or "failed".
    pub status: String,
    pub message: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub from_position: u64,
    pub to_position: u64,
    pub chunks: u64,
    pub events_read: u64,
    pub events_loaded: u64,
    pub duplicates_dropped: u64,
    pub load_errors: u64,
    pub rows_written: u64,
}

pub async fn write_run(client: &Client, run: &LoadRun) -> Result<()> {
    insert_rows(client, RUNS_TABLE, std::slice::from_ref(run)).await?;
    Ok(())
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    pub finished_at_ms: i64,
}

/// The most recently finished run of `pipeline`, if any.
pub async fn last_run(client: &Client, pipeline: &str) -> Result<Option<LastRun>> {
    let run = client
        .query(
            "SELECT run_id, finished_at_ms FROM load_runs WHERE pipeline = ? \
             ORDER BY finished_at_ms DESC, run_id DESC LIMIT 1",
        )
        .bind(pipeline)
        .fetch_optional::<LastRun>()
        .await?;
    Ok(run)
}

/// A staged row that could not be loaded. Keyed by position: recording it twice
/// (a redone chunk) keeps one row.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct LoadError {
    pub position: u64,
    pub source_system: String,
    pub event_id: String,
    pub kind: String,
    pub error: String,
    pub run_id: String,
    pub recorded_at_ms: i64,
}

pub async fn write_errors(client: &Client, errors: &[LoadError]) -> Result<u64> {
    insert_rows(client, ERRORS_TABLE, errors).await
}

/// The idempotency key of an event.
pub type EventKey = (String, String);

/// `(source_system, event_id)` -> the staging position of its first copy.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub source_system: String,
    pub event_id: String,
    pub first_position: u64,
    pub kind: String,
    pub occurred_at_ms: i64,
    /// `u64::MAX - first_position`: ReplacingMergeTree keeps the highest, i.e. the
    /// lowest position.
    pub keep_rank: u64,
}

impl RegistryEntry {
    pub fn new(source_system: &str, event_id: &str, position: u64, kind: &str, occurred_at_ms: i64) -> Self {
        Self {
            source_system: source_system.to_string(),
            event_id: event_id.to_string(),
            first_position: position,
            kind: kind.to_string(),
            occurred_at_ms,
            keep_rank: u64::MAX - position,
        }
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct Registered {
    source_system: String,
    event_id: String,
    first_position: u64,
}

/// The first registered position of each of `keys` that is registered at all.
pub async fn registered_positions(client: &Client, keys: &[EventKey]) -> Result<HashMap<EventKey, u64>> {
    let rows: Vec<Registered> = fetch_by_keys(
        client,
        "SELECT source_system, event_id, min(first_position) AS first_pos \
         FROM event_registry WHERE (source_system, event_id) IN ? \
         GROUP BY source_system, event_id",
        keys,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.source_system, r.event_id), r.first_position))
        .collect())
}

pub async fn register(client: &Client, entries: &[RegistryEntry]) -> Result<u64> {
    insert_rows(client, REGISTRY_TABLE, entries).await
}

/// Tables reported by status.
pub const COUNTED_TABLES: &[&str] = &[
    "event_registry",
    "load_errors",
    "dim_patient",
    "dim_location",
    "dim_drug",
    "dim_payer",
    "dim_date",
    "fact_encounter",
    "fact_transfer",
    "fact_vital_sign",
    "fact_vital_sign_set",
    "fact_lab_result",
    "fact_medication",
    "fact_charge",
    "fact_bed_status",
    "fact_diagnosis",
    "fact_procedure",
    "fact_icu_stay",
    "bed_status_current",
];

/// Rows stored per table: the rows of its active parts, from `system.parts` (one query
/// that reads part metadata, not the tables, so it costs the same whatever their size).
/// That is the live rows plus older versions and tombstones ClickHouse has not merged
/// away yet: never fewer than the live rows, and equal to them once merges have caught
/// up. `client` must address the `warehouse` database.
pub async fn table_rows(client: &Client) -> Result<Vec<(String, u64)>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Stored {
        table: String,
        stored: u64,
    }
    let stored: HashMap<String, u64> = client
        .query(
            "SELECT table, sum(rows) AS stored FROM system.parts \
             WHERE active AND database = currentDatabase() AND table IN ? GROUP BY table",
        )
        .bind(crate::db::InList(COUNTED_TABLES))
        .fetch_all::<Stored>()
        .await?
        .into_iter()
        .map(|s| (s.table, s.stored))
        .collect();
    Ok(COUNTED_TABLES
        .iter()
        .map(|t| (t.to_string(), stored.get(*t).copied().unwrap_or(0)))
        .collect())
}
