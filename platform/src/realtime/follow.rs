//! Following the staging zone in position order, with no gap and no repeat: history is
//! read from `staging.events` in ClickHouse, then live flushes come from the bus. A
//! follower that falls behind the bus (slow consumer) goes back to reading staging from
//! its last position, so it never loses an event and never holds up ingest.
//!
//! Why it is exact: the follower subscribes to the bus before it reads history, and the
//! writer publishes each flush after raising the committed position. History is read up
//! to a committed position `hi`; every flush above `hi` is still in the bus, and flushes
//! at or below `hi` that also arrive from the bus are skipped by position.
//!
//! Why each read is cheap: a catch-up read asks for a position range of at most
//! `CATCH_UP_CHUNK` positions (`position > a AND position <= b`), not "the next n rows
//! after a". `staging.events` is ordered by position, so the primary key prunes the read
//! to the range's own granules. ClickHouse 18.16 has no read-in-order optimisation: the
//! open-ended form `position > a ORDER BY position LIMIT n` reads (and sorts) every row
//! after `a`, which made a catch-up from 0 quadratic. Positions are unique, so a range of
//! n positions holds at most n rows; a range without rows (positions of failed inserts)
//! is stepped over, up to the committed position.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clickhouse::Client;
use tokio::sync::{broadcast, watch};

use super::bus::{Bus, Committed};
use crate::error::Result;
use crate::staging::{StagedEvent, EVENTS_TABLE};

/// Positions read from staging per query while catching up (so at most as many rows).
pub const CATCH_UP_CHUNK: u64 = 10_000;

/// What followers read from staging while catching up; shared by the followers of one
/// service (e.g. every change-feed subscriber), for monitoring and tests.
#[derive(Debug, Default)]
pub struct CatchUpStats {
    chunks: AtomicU64,
    rows: AtomicU64,
    lagged: AtomicU64,
}

impl CatchUpStats {
    /// Range queries against `staging.events` (one per chunk, empty ones included).
    pub fn chunks(&self) -> u64 {
        self.chunks.load(Ordering::Relaxed)
    }

    /// Rows those queries returned.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Times a follower fell behind the bus and went back to staging.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

pub struct Follower {
    bus: broadcast::Receiver<Arc<Committed>>,
    staging: Client,
    committed: watch::Receiver<u64>,
    /// Highest position delivered (or skipped as absent).
    last: u64,
    /// Upper end of the last staging read: once its rows are delivered, every position
    /// up to it is done.
    read_to: u64,
    catching_up: bool,
    buffer: VecDeque<StagedEvent>,
    stats: Arc<CatchUpStats>,
}

impl Follower {
    /// Follows from after `after_position`. `staging` addresses the `staging` database.
    pub fn new(bus: &Bus, staging: Client, committed: watch::Receiver<u64>, after_position: u64) -> Self {
        Self {
            bus: bus.subscribe(),
            staging,
            committed,
            last: after_position,
            read_to: after_position,
            catching_up: true,
            buffer: VecDeque::new(),
            stats: Arc::default(),
        }
    }

    /// Counts this follower's staging reads into `stats` (shared with others).
    pub fn with_stats(mut self, stats: Arc<CatchUpStats>) -> Self {
        self.stats = stats;
        self
    }

    /// What this follower (and those sharing its stats) read from staging.
    pub fn stats(&self) -> &Arc<CatchUpStats> {
        &self.stats
    }

    /// The next committed event after the previous one; waits for new commits. Returns
    /// None when the bus is closed (shutdown).
    pub async fn next(&mut self) -> Result<Option<StagedEvent>> {
        loop {
            if let Some(row) = self.buffer.pop_front() {
                self.last = row.position;
                return Ok(Some(row));
            }
            if self.catching_up {
                // The buffer is empty: the last read is delivered. A position in it
                // without a row belongs to a failed insert and is never delivered.
                self.last = self.last.max(self.read_to);
                let hi = *self.committed.borrow();
                if self.last < hi {
                    let to = self.last.saturating_add(CATCH_UP_CHUNK).min(hi);
                    let rows = self.read_staging(self.last, to).await?;
                    self.stats.chunks.fetch_add(1, Ordering::Relaxed);
                    self.stats.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    self.read_to = to;
                    self.buffer.extend(rows);
                    continue;
                }
                self.catching_up = false;
            }
            match self.bus.recv().await {
                Ok(committed) => {
                    let last = self.last;
                    self.buffer
                        .extend(committed.rows.iter().filter(|r| r.position > last).cloned());
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        skipped,
                        after = self.last,
                        "follower fell behind the bus; reading staging"
                    );
                    self.stats.lagged.fetch_add(1, Ordering::Relaxed);
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// The position of the last event returned.
    pub fn position(&self) -> u64 {
        self.last
    }

    /// The rows with `from < position <= to`, in position order.
    async fn read_staging(&self, from: u64, to: u64) -> Result<Vec<StagedEvent>> {
        Ok(self
            .staging
            .query(&format!(
                "SELECT ?fields FROM {EVENTS_TABLE} WHERE position > ? AND position <= ? ORDER BY position"
            ))
            .bind(from)
            .bind(to)
            .fetch_all::<StagedEvent>()
            .await?)
    }
}
