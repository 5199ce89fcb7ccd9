//! Following the staging zone in position order, with no gap and no repeat: history is
//! read from `staging.events` in ClickHouse, then live flushes come from the bus. A
//! follower that falls behind the bus (slow consumer) goes back to reading staging from
//! its last position, so it never loses an event and never holds up ingest.
//!
//! Why it is exact: the follower subscribes to the bus before it reads history, and the
//! writer publishes each flush after raising the committed position. History is read up
//! to a committed position `hi`; every flush above `hi` is still in the bus, and flushes
//! at or below `hi` that also arrive from the bus are skipped by position.

use std::collections::VecDeque;
use std::sync::Arc;

use clickhouse::Client;
use tokio::sync::{broadcast, watch};

use super::bus::{Bus, Committed};
use crate::error::Result;
use crate::staging::{StagedEvent, EVENTS_TABLE};

/// Rows read from staging per query while catching up.
const CATCH_UP_CHUNK: u64 = 10_000;

pub struct Follower {
    bus: broadcast::Receiver<Arc<Committed>>,
    staging: Client,
    committed: watch::Receiver<u64>,
    /// Highest position delivered (or skipped as absent).
    last: u64,
    catching_up: bool,
    buffer: VecDeque<StagedEvent>,
    /// Times the follower fell behind the bus and went back to staging.
    pub lagged: u64,
}

impl Follower {
    /// Follows from after `after_position`. `staging` addresses the `staging` database.
    pub fn new(bus: &Bus, staging: Client, committed: watch::Receiver<u64>, after_position: u64) -> Self {
        Self {
            bus: bus.subscribe(),
            staging,
            committed,
            last: after_position,
            catching_up: true,
            buffer: VecDeque::new(),
            lagged: 0,
        }
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
                let hi = *self.committed.borrow();
                if self.last < hi {
                    let rows = self.read_staging(hi).await?;
                    if (rows.len() as u64) < CATCH_UP_CHUNK {
                        // Everything up to `hi` is read; a position without a row belongs
                        // to a failed insert and is never delivered.
                        self.catching_up = false;
                        if rows.is_empty() {
                            self.last = hi;
                        }
                    }
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
                    self.lagged += 1;
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

    async fn read_staging(&self, hi: u64) -> Result<Vec<StagedEvent>> {
        Ok(self
            .staging
            .query(&format!(
                "SELECT ?fields FROM {EVENTS_TABLE} WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"
            ))
            .bind(self.last)
            .bind(hi)
            .bind(CATCH_UP_CHUNK)
            .fetch_all::<StagedEvent>()
            .await?)
    }
}
