//! The in-process bus of committed events: the staging writer publishes every flush
//! after its insert returned; real-time readers follow it. Publishing never waits: the
//! bus keeps the last `capacity` flushes, and a reader that falls further behind is told
//! so (and catches up from staging, see [`super::follow`]).

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::staging::{CommitSink, StagedEvent};

/// The rows of one group commit, in position order.
#[derive(Debug)]
pub struct Committed {
    pub rows: Vec<StagedEvent>,
}

impl Committed {
    pub fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|r| r.position)
    }
}

/// Sender side of the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Committed>>,
}

impl Bus {
    /// `capacity` flushes are kept for slow readers (each flush is up to
    /// `staging.flush_rows` events).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes a committed flush; never waits, and drops it when nobody listens.
    pub fn publish(&self, committed: Committed) {
        if self.tx.receiver_count() > 0 && !committed.rows.is_empty() {
            let _ = self.tx.send(Arc::new(committed));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.tx.subscribe()
    }
}

impl CommitSink for Bus {
    fn committed(&self, rows: Vec<StagedEvent>) {
        self.publish(Committed { rows });
    }
}
