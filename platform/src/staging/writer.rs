//! Group commit: many ingest streams submit events; one writer collects them and flushes
//! to ClickHouse by rows or by time, one insert per flush; every submitter is answered
//! only after the insert containing its rows has returned.
//!
//! Two tasks: the collector fills a batch from the bounded submission queue and hands
//! it to the flusher through a queue of one, so the next batch fills while the
//! previous one is being written, and at most two batches are held in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{StagedEvent, EVENTS_TABLE};
use crate::error::{Error, Result};
use crate::realtime::bus::{Bus, Committed};

/// What a submitter learns once its events are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Position of the submission's first event (0 for an empty submission).
    pub first_position: u64,
    /// Position of its last event; also the highest durable position at that moment.
    pub last_position: u64,
}

struct Submission {
    rows: Vec<StagedEvent>,
    reply: oneshot::Sender<Result<CommitInfo>>,
}

struct Batch {
    submissions: Vec<Submission>,
    rows: usize,
}

/// A submission waiting for its group commit.
pub struct PendingCommit(oneshot::Receiver<Result<CommitInfo>>);

impl PendingCommit {
    /// Resolves once the insert holding the submission returned: Ok means durable.
    pub async fn wait(self) -> Result<CommitInfo> {
        self.0.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// Cheap, cloneable handle to submit events to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Submission>,
    committed: watch::Receiver<u64>,
}

impl WriterHandle {
    /// Queues rows for the next group commit and waits until they are durable. Waits
    /// for queue space first (backpressure). Positions in `rows` are overwritten.
    pub async fn commit(&self, rows: Vec<StagedEvent>) -> Result<CommitInfo> {
        self.submit(rows).await?.wait().await
    }

    /// Queues rows (waiting for queue space) and returns without waiting for the
    /// commit, so that one stream can have several requests in flight.
    pub async fn submit(&self, rows: Vec<StagedEvent>) -> Result<PendingCommit> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Submission { rows, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(PendingCommit(done))
    }

    /// The highest position whose insert has returned (readers may read up to it).
    pub fn committed_position(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Watch of the committed position, for readers that follow the staging zone.
    pub fn subscribe_committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }
}

/// The running writer: its handle plus the tasks to await on shutdown.
pub struct StagingWriter {
    handle: WriterHandle,
    closing: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub flush_rows: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub insert_timeout: Duration,
}

#[derive(clickhouse::Row, Deserialize)]
struct MaxPosition {
    max_position: u64,
}

impl StagingWriter {
    /// Starts the writer; positions continue after the highest one already staged.
    /// Every committed flush is published on `bus` after its insert returned.
    pub async fn start(client: Client, opts: WriterOptions, bus: Bus) -> Result<Self> {
        let last = client
            .query("SELECT max(position) AS max_position FROM events")
            .fetch_one::<MaxPosition>()
            .await?
            .max_position;
        let (tx, rx) = mpsc::channel(opts.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::channel(1);
        let (committed_tx, committed) = watch::channel(last);
        let closing = CancellationToken::new();
        let collector = tokio::spawn(collect(rx, batch_tx, opts.clone(), closing.clone()));
        let flusher = tokio::spawn(flush_loop(
            client,
            batch_rx,
            committed_tx,
            last + 1,
            opts.insert_timeout,
            bus,
        ));
        tracing::info!(last_position = last, "staging writer started");
        Ok(Self {
            handle: WriterHandle { tx, committed },
            closing,
            tasks: vec![("staging collector", collector), ("staging flusher", flusher)],
        })
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Hands the writer's tasks (collector, flusher) to a supervisor, by name. The
    /// supervisor awaits them after [`Self::shutdown`], which then no longer does.
    pub fn take_tasks(&mut self) -> Vec<(&'static str, JoinHandle<()>)> {
        std::mem::take(&mut self.tasks)
    }

    /// Stops taking submissions (later ones fail with `ShuttingDown`), flushes and
    /// answers every submission already queued, then stops.
    pub async fn shutdown(self) {
        self.closing.cancel();
        for (name, t) in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(task = name, error = %e, "staging writer task failed");
            }
        }
    }
}

async fn collect(
    mut rx: mpsc::Receiver<Submission>,
    batch_tx: mpsc::Sender<Batch>,
    opts: WriterOptions,
    closing: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = closing.cancelled(), if !rx.is_closed() => {
                // No new submissions; what is buffered is still received and flushed.
                rx.close();
                continue;
            }
            s = rx.recv() => match s {
                Some(s) => s,
                None => return,
            },
        };
        let deadline = tokio::time::Instant::now() + opts.flush_interval;
        let mut batch = Batch {
            rows: first.rows.len(),
            submissions: vec![first],
        };
        while batch.rows < opts.flush_rows {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    batch.rows += s.rows.len();
                    batch.submissions.push(s);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if batch_tx.send(batch).await.is_err() {
            return;
        }
    }
}

async fn flush_loop(
    client: Client,
    mut batches: mpsc::Receiver<Batch>,
    committed: watch::Sender<u64>,
    mut next_position: u64,
    timeout: Duration,
    bus: Bus,
) {
    while let Some(mut batch) = batches.recv().await {
        // Positions are never reused, even when an insert fails: a failed insert may
        // still have landed, and its rows must not collide with later ones.
        let first = next_position;
        let mut ranges = Vec::with_capacity(batch.submissions.len());
        for s in &mut batch.submissions {
            let start = next_position;
            for row in &mut s.rows {
                row.position = next_position;
                next_position += 1;
            }
            ranges.push((start, next_position.saturating_sub(1).max(start)));
        }
        let last = next_position - 1;
        let span = tracing::debug_span!("flush", rows = batch.rows, first, last);
        let started = Instant::now();
        let result = insert(&client, &batch, timeout).instrument(span).await;
        match result {
            Ok(()) => {
                if batch.rows > 0 {
                    // Positions only grow; send_modify avoids holding a read guard
                    // while writing (which would deadlock).
                    committed.send_modify(|c| *c = (*c).max(last));
                }
                tracing::debug!(rows = batch.rows, ms = started.elapsed().as_millis() as u64, "flushed");
                let mut published = Vec::with_capacity(batch.rows);
                for (s, (start, end)) in batch.submissions.into_iter().zip(ranges) {
                    let info = if s.rows.is_empty() {
                        let at = *committed.borrow();
                        CommitInfo {
                            first_position: 0,
                            last_position: at,
                        }
                    } else {
                        CommitInfo {
                            first_position: start,
                            last_position: end,
                        }
                    };
                    let _ = s.reply.send(Ok(info));
                    published.extend(s.rows);
                }
                // After the acks and the committed position: readers that see this flush
                // on the bus can also read it from staging.
                bus.publish(Committed { rows: published });
            }
            Err(e) => {
                tracing::warn!(rows = batch.rows, error = %e, "staging flush failed; nothing in it is acknowledged");
                let message: Arc<str> = e.to_string().into();
                for s in batch.submissions {
                    let _ = s.reply.send(Err(Error::Unavailable(message.to_string())));
                }
            }
        }
    }
}

async fn insert(client: &Client, batch: &Batch, timeout: Duration) -> Result<()> {
    if batch.rows == 0 {
        return Ok(());
    }
    let mut insert = client
        .insert::<StagedEvent>(EVENTS_TABLE)
        .await?
        .with_timeouts(Some(timeout), Some(timeout));
    for s in &batch.submissions {
        for row in &s.rows {
            insert.write(row).await?;
        }
    }
    insert.end().await?;
    Ok(())
}
