//! The batch stage: staging -> warehouse, incremental by watermark, idempotent.
//!
//! A run reads `staging.events` from the stored watermark (exclusive) up to the staging
//! writer's committed position (never `max(position)`: an insert may be in flight),
//! in chunks of `chunk_events` positions (a bounded position range each, so that a
//! chunk reads only its own rows). Each chunk is decoded, deduplicated by
//! `(source_system, event_id)` (first staged copy wins), written (dimensions, facts,
//! then the registry), and only then is the watermark moved past it. A crash
//! mid-chunk redoes that chunk, and every write is idempotent, so a redo, a replayed
//! run or a full reload changes no counts.
//!
//! Owns: when and in what order loads run, the watermark, run records and progress.
//! Must not: know table layouts (the [`crate::warehouse`] modules do) or write to the
//! staging zone.

mod chunk;
mod dedup;
mod progress;
mod transform;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hospital_proto::batch::{RunProgress, WarehouseStatus};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::db::Databases;
use crate::error::Result;
use crate::now_ms;
use crate::warehouse::bookkeeping::{self, LoadRun, Watermark, PIPELINE};
use chunk::{bounded, Clients};
use progress::Progress;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: String,
    pub full_reload: bool,
    /// Staging positions loaded: (from_position, to_position].
    pub from_position: u64,
    pub to_position: u64,
    pub chunks: u64,
    /// Staged rows read, including duplicates and rows that failed to load.
    pub events_read: u64,
    /// Events written to the warehouse (first copies that decoded).
    pub events_loaded: u64,
    /// Resent copies dropped (within a chunk or loaded before).
    pub duplicates_dropped: u64,
    /// Staged rows that could not be loaded (see `warehouse.load_errors`).
    pub load_errors: u64,
    /// Rows written per table. Rewrites of unchanged rows are not counted for
    /// dimensions and encounters (they are skipped); facts are rewritten on replay.
    pub rows_written: BTreeMap<String, u64>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

impl RunSummary {
    pub fn total_rows_written(&self) -> u64 {
        self.rows_written.values().sum()
    }
}

/// Runs warehouse loads, one at a time.
pub struct WarehouseLoader {
    clients: Clients,
    committed: watch::Receiver<u64>,
    chunk_events: u64,
    /// Loads run one after the other; a second caller waits for the first.
    lock: Mutex<()>,
}

impl WarehouseLoader {
    /// `committed` is the staging writer's committed position
    /// ([`crate::staging::WriterHandle::subscribe_committed`]): the upper bound of every
    /// load. `chunk_events` (at least 1) bounds the events held in memory at once.
    pub fn new(databases: &Databases, committed: watch::Receiver<u64>, chunk_events: u64) -> Self {
        Self {
            clients: Clients {
                staging: databases.staging.clone(),
                warehouse: databases.warehouse.clone(),
                stage_timeout: stage_timeout(databases.timeout),
            },
            committed,
            chunk_events: chunk_events.max(1),
            lock: Mutex::new(()),
        }
    }

    /// One incremental load (or, with `full_reload`, one from position 0: idempotent, so
    /// it only repairs). Concurrent calls run one after the other. Progress messages (one
    /// per stage per chunk, then one with `done = true`) go to `progress` if given; a
    /// receiver that went away does not fail the run.
    pub async fn run(&self, full_reload: bool, progress: Option<mpsc::Sender<RunProgress>>) -> Result<RunSummary> {
        let _one_at_a_time = self.lock.lock().await;
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut progress = Progress::new(progress, &run_id);
        let mut summary = RunSummary {
            run_id: run_id.clone(),
            full_reload,
            started_at_ms: now_ms(),
            ..RunSummary::default()
        };
        let span = tracing::info_span!("warehouse_load", run_id = %run_id, full_reload);
        let result = self
            .run_chunks(full_reload, &mut summary, &mut progress)
            .instrument(span)
            .await;
        summary.finished_at_ms = now_ms();

        let (status, message) = match &result {
            Ok(()) => (
                "ok",
                format!(
                    "{} events loaded, {} duplicates dropped, {} load errors, {} rows written",
                    summary.events_loaded,
                    summary.duplicates_dropped,
                    summary.load_errors,
                    summary.total_rows_written()
                ),
            ),
            Err(e) => ("failed", e.to_string()),
        };
        let record = LoadRun {
            run_id: run_id.clone(),
            pipeline: PIPELINE.to_string(),
            full_reload,
            status: status.to_string(),
            message: message.clone(),
            started_at_ms: summary.started_at_ms,
            finished_at_ms: summary.finished_at_ms,
            from_position: summary.from_position,
            to_position: summary.to_position,
            chunks: summary.chunks,
            events_read: summary.events_read,
            events_loaded: summary.events_loaded,
            duplicates_dropped: summary.duplicates_dropped,
            load_errors: summary.load_errors,
            rows_written: summary.total_rows_written(),
        };
        let recorded = bounded(
            self.clients.stage_timeout,
            "record_run",
            bookkeeping::write_run(&self.clients.warehouse, &record),
        )
        .await;
        match &result {
            Ok(()) => tracing::info!(run_id = %run_id, from = summary.from_position, to = summary.to_position,
                chunks = summary.chunks, %message, "warehouse load finished"),
            Err(e) => {
                tracing::warn!(run_id = %run_id, error = %e, "warehouse load failed; the next run resumes there")
            }
        }
        if let Err(e) = &recorded {
            tracing::warn!(run_id = %run_id, error = %e, "could not record the run in load_runs");
        }
        progress
            .done(
                format!("{status}: {message}"),
                summary.from_position,
                summary.to_position,
            )
            .await;
        result?;
        recorded?;
        Ok(summary)
    }

    async fn run_chunks(&self, full_reload: bool, summary: &mut RunSummary, progress: &mut Progress) -> Result<()> {
        let wh = &self.clients.warehouse;
        let upper = *self.committed.borrow();
        let limit = self.clients.stage_timeout;
        let mut watermark = bounded(limit, "read_watermark", bookkeeping::read_watermark(wh, PIPELINE)).await?;
        let from = if full_reload { 0 } else { watermark.position };
        summary.from_position = from;
        summary.to_position = from.max(upper);
        // Versions only grow, across runs and restarts: every chunk's rows replace what
        // earlier chunks wrote for the same keys.
        let mut version = micros_since_epoch().max(watermark.version + 1);

        let mut position = from;
        while position < upper {
            let to = chunk_end(position, upper, self.chunk_events);
            let outcome = chunk::load_chunk(
                &self.clients,
                position,
                to,
                self.chunk_events,
                version,
                &summary.run_id,
                progress,
            )
            .await?;
            summary.chunks += 1;
            summary.events_read += outcome.read;
            summary.events_loaded += outcome.loaded;
            summary.duplicates_dropped += outcome.duplicates;
            summary.load_errors += outcome.errors;
            for (table, n) in &outcome.rows {
                *summary.rows_written.entry(table.to_string()).or_default() += n;
            }
            // A short chunk means nothing else is staged up to `to` (positions of
            // failed staging inserts are never reused), so the watermark may jump there.
            let end = match outcome.last_position {
                Some(last) if outcome.read >= self.chunk_events => last,
                _ => to,
            };
            // A full reload re-derives rows that are already loaded: it never moves the
            // watermark back.
            watermark = Watermark {
                pipeline: PIPELINE.to_string(),
                position: end.max(watermark.position),
                run_id: summary.run_id.clone(),
                updated_at: u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX),
                version,
            };
            bounded(limit, "watermark", bookkeeping::write_watermark(wh, &watermark)).await?;
            progress.stage(
                "watermark",
                format!("watermark at {}", watermark.position),
                position,
                end,
            );
            position = end;
            version += 1;
        }
        Ok(())
    }

    /// Where the warehouse load stands.
    pub async fn status(&self) -> Result<WarehouseStatus> {
        let wh = &self.clients.warehouse;
        let limit = self.clients.stage_timeout;
        let watermark = bounded(limit, "read_watermark", bookkeeping::read_watermark(wh, PIPELINE)).await?;
        let last = bounded(limit, "last_run", bookkeeping::last_run(wh, PIPELINE)).await?;
        let table_rows = bounded(limit, "table_rows", bookkeeping::table_rows(wh))
            .await?
            .into_iter()
            .collect();
        Ok(WarehouseStatus {
            watermark: watermark.position,
            staged_position: *self.committed.borrow(),
            last_run_at: last.as_ref().map(|r| {
                let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(r.finished_at_ms).unwrap_or(0));
                prost_types::Timestamp::from(at)
            }),
            last_run_id: last.map(|r| r.run_id).unwrap_or_default(),
            table_rows,
        })
    }
}

/// The time one stage of a chunk may take: a stage makes several round trips (lookups
/// of 2,000 keys each, one insert per table), so it gets a multiple of the configured
/// round-trip timeout.
fn stage_timeout(round_trip: Duration) -> Duration {
    round_trip
        .max(Duration::from_secs(1))
        .saturating_mul(STAGE_TIMEOUT_ROUND_TRIPS)
}

/// Round-trip timeouts one chunk stage may take.
const STAGE_TIMEOUT_ROUND_TRIPS: u32 = 10;

fn micros_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs an incremental load now and then every `every` until `shutdown` (a zero
/// interval runs none). A failed run is logged and retried at the next tick. Shutdown
/// interrupts a run in progress: its current chunk is redone by the next run.
pub fn spawn_schedule(loader: Arc<WarehouseLoader>, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(
        async move {
            if every.is_zero() {
                tracing::info!("scheduled warehouse loads are off");
                return;
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        tracing::info!("shutdown during a warehouse load; the next run redoes its chunk");
                        break;
                    }
                    result = loader.run(false, None) => {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "scheduled warehouse load failed");
                        }
                    }
                }
            }
        }
        .instrument(tracing::info_span!("warehouse_schedule")),
    )
}

/// The upper end (inclusive) of the chunk after `position`: `chunk_events` positions,
/// so at most as many rows (positions are unique), and never past `upper`. A chunk is a
/// position range rather than "the next n rows": `staging.events` is ordered by
/// position, so the range prunes the read to its own granules, while ClickHouse 18.16
/// reads every row after `position` for `ORDER BY position LIMIT n` (no read in order).
fn chunk_end(position: u64, upper: u64, chunk_events: u64) -> u64 {
    position.saturating_add(chunk_events).min(upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_a_range_of_at_most_chunk_events_positions() {
        assert_eq!(chunk_end(0, 1_000_000, 10_000), 10_000);
        assert_eq!(chunk_end(995_000, 1_000_000, 10_000), 1_000_000);
        assert_eq!(chunk_end(u64::MAX - 1, u64::MAX, 10_000), u64::MAX);
    }

    #[test]
    fn loader_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WarehouseLoader>();
    }

    #[tokio::test]
    async fn a_zero_interval_schedules_nothing() {
        let (_tx, rx) = watch::channel(0);
        let loader = Arc::new(WarehouseLoader::new(
            &Databases::new(&crate::config::ClickHouseConfig::default()),
            rx,
            10,
        ));
        let handle = spawn_schedule(loader, Duration::ZERO, CancellationToken::new());
        tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
