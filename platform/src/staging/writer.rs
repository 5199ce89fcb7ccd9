//! Group commit: many ingest streams submit events; one writer collects them and flushes
//! to ClickHouse by rows or by time, one insert per flush; every submitter is answered
//! only after the insert containing its rows has returned.
//!
//! Two tasks: the collector fills a batch from the bounded submission queue and hands
//! it to the flusher through a queue of one, so the next batch fills while the
//! previous one is being written, and at most two batches are held in memory.
//!
//! First commit wins: before each insert the flusher looks every row up in the index of
//! committed keys ([`CommittedKeys`]); a row whose `(source_system, event_id)` was
//! committed before, or comes earlier in the same flush, is not staged but answered as a
//! duplicate of the first copy, saying whether its content differs. So staging holds one
//! copy of each event and every reader agrees on which one counts.

use std::time::{Duration, Instant};

use clickhouse::Client;
use std::collections::HashMap;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dedup::{CommittedKeys, IndexOpened};
use super::{StagedEvent, EVENTS_TABLE};
use crate::db::fetch_by_keys;
use crate::error::{Error, Result};

/// What a submitter learns once its events are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Position of the submission's first staged event (0 when none was staged).
    pub first_position: u64,
    /// Position of its last staged event; also the highest durable position at that
    /// moment (the committed position when none was staged).
    pub last_position: u64,
    /// Rows of the submission that were not staged because an earlier copy counts.
    pub duplicates: Vec<DuplicateOf>,
}

/// A submitted row whose `(source_system, event_id)` was committed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateOf {
    /// Index of the row in the submission.
    pub row: usize,
    /// Position of the copy that counts.
    pub first_position: u64,
    /// Whether this row's canonical payload differs from the first copy's.
    pub content_differs: bool,
}

/// Where committed flushes go once their insert returned (the real-time bus).
pub trait CommitSink: Send + Sync + 'static {
    /// The staged rows of one flush, in position order; must not wait.
    fn committed(&self, rows: Vec<StagedEvent>);
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
    key_index: IndexOpened,
    closing: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub flush_rows: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub insert_timeout: Duration,
    /// Where the index of committed keys is kept (`staging-keys.redb`).
    pub state_dir: std::path::PathBuf,
}

impl StagingWriter {
    /// Starts the writer; positions continue after the highest one already staged, and
    /// the keys already staged are indexed (first commit wins). Every committed flush
    /// goes to `sink` after its insert returned.
    pub async fn start(client: Client, opts: WriterOptions, sink: impl CommitSink) -> Result<Self> {
        let started = Instant::now();
        let (keys, opened) = CommittedKeys::open(&opts.state_dir, &client).await?;
        let last = opened.last_position;
        tracing::info!(
            keys = opened.keys,
            staging_rows_read = opened.rows_read,
            rebuilt = opened.rebuilt,
            ms = started.elapsed().as_millis() as u64,
            "committed event keys indexed"
        );
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
            Box::new(sink),
            keys,
        ));
        tracing::info!(last_position = last, "staging writer started");
        Ok(Self {
            key_index: opened,
            handle: WriterHandle { tx, committed },
            closing,
            tasks: vec![("staging collector", collector), ("staging flusher", flusher)],
        })
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// What opening the index of committed keys found and read at start-up.
    pub fn key_index(&self) -> IndexOpened {
        self.key_index
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
        let mut submissions = vec![first];
        fill_batch(&mut rx, &mut submissions, opts.flush_rows, deadline, |s| s.rows.len()).await;
        let batch = Batch {
            rows: submissions.iter().map(|s| s.rows.len()).sum(),
            submissions,
        };
        if batch_tx.send(batch).await.is_err() {
            return;
        }
    }
}

/// What becomes of one submitted row in a flush.
#[derive(Clone, Copy)]
enum Fate {
    Stage,
    /// A copy of a key committed before, at this position.
    Earlier(u64),
    /// A copy of the row at (submission, row) of the same flush.
    InFlush(usize, usize),
}

/// Group commit's gathering rule, shared by every batched writer of the platform (the
/// staging writer, the alert audit): takes items from `rx` into `batch` until their
/// weight (rows) reaches `max_weight` or `deadline` passes. Returns false once `rx` is
/// closed and empty.
pub(crate) async fn fill_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max_weight: usize,
    deadline: tokio::time::Instant,
    weight: impl Fn(&T) -> usize,
) -> bool {
    let mut total: usize = batch.iter().map(&weight).sum();
    while total < max_weight {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => {
                total += weight(&item);
                batch.push(item);
            }
            Ok(None) => return false,
            Err(_) => break,
        }
    }
    true
}

async fn flush_loop(
    client: Client,
    mut batches: mpsc::Receiver<Batch>,
    committed: watch::Sender<u64>,
    mut next_position: u64,
    timeout: Duration,
    sink: Box<dyn CommitSink>,
    mut keys: CommittedKeys,
) {
    while let Some(mut batch) = batches.recv().await {
        // A failed insert may have landed after all: index what did before deciding.
        if keys.has_uncertain() {
            if let Err(e) = keys.resolve_uncertain(&client, timeout * 2).await {
                fail(batch, &e);
                continue;
            }
        }
        // First commit wins: decide each row's fate before positions are assigned.
        let row_keys: Vec<Vec<Vec<u8>>> = batch
            .submissions
            .iter()
            .map(|s| {
                s.rows
                    .iter()
                    .map(|r| super::key(&r.source_system, &r.event_id))
                    .collect()
            })
            .collect();
        let known = match keys.first_positions(row_keys.iter().flatten().cloned().collect()).await {
            Ok(k) => k,
            Err(e) => {
                fail(batch, &e);
                continue;
            }
        };
        let mut known = known.into_iter();
        let mut new_keys: HashMap<&[u8], (usize, usize)> = HashMap::new();
        let mut fates: Vec<Vec<Fate>> = Vec::with_capacity(batch.submissions.len());
        for (si, ks) in row_keys.iter().enumerate() {
            let mut f = Vec::with_capacity(ks.len());
            for (ri, key) in ks.iter().enumerate() {
                f.push(if let Some(p) = known.next().flatten() {
                    Fate::Earlier(p)
                } else if let Some(&(a, b)) = new_keys.get(key.as_slice()) {
                    Fate::InFlush(a, b)
                } else {
                    new_keys.insert(key, (si, ri));
                    Fate::Stage
                });
            }
            fates.push(f);
        }
        let earlier = match earlier_payloads(&client, &fates).await {
            Ok(p) => p,
            Err(e) => {
                fail(batch, &e);
                continue;
            }
        };

        // Positions are never reused, even when an insert fails: a failed insert may
        // still have landed, and its rows must not collide with later ones.
        let first = next_position;
        let mut positions: Vec<Vec<u64>> = Vec::with_capacity(batch.submissions.len());
        for (s, f) in batch.submissions.iter_mut().zip(&fates) {
            let mut p = vec![0; s.rows.len()];
            for ((row, fate), slot) in s.rows.iter_mut().zip(f).zip(&mut p) {
                if matches!(fate, Fate::Stage) {
                    row.position = next_position;
                    *slot = next_position;
                    next_position += 1;
                }
            }
            positions.push(p);
        }
        let mut duplicates: Vec<Vec<DuplicateOf>> = Vec::with_capacity(batch.submissions.len());
        for (s, f) in batch.submissions.iter().zip(&fates) {
            let mut d = Vec::new();
            for (ri, fate) in f.iter().enumerate() {
                let (first_position, first_payload) = match *fate {
                    Fate::Stage => continue,
                    Fate::Earlier(p) => (p, earlier.get(&p).map(Vec::as_slice)),
                    Fate::InFlush(a, b) => (positions[a][b], Some(batch.submissions[a].rows[b].payload.as_slice())),
                };
                d.push(DuplicateOf {
                    row: ri,
                    first_position,
                    // A first copy that cannot be read back is reported as different,
                    // so the sender checks rather than assumes.
                    content_differs: first_payload != Some(s.rows[ri].payload.as_slice()),
                });
            }
            duplicates.push(d);
        }
        let mut ranges = Vec::with_capacity(batch.submissions.len());
        let mut staged_rows = 0;
        for (s, f) in batch.submissions.iter_mut().zip(&fates) {
            let mut fate = f.iter();
            s.rows.retain(|_| matches!(fate.next(), Some(Fate::Stage)));
            staged_rows += s.rows.len();
            ranges.push(s.rows.first().zip(s.rows.last()).map(|(a, b)| (a.position, b.position)));
        }
        batch.rows = staged_rows;
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
                let mut indexed: Vec<(Vec<u8>, u64)> = new_keys
                    .iter()
                    .map(|(k, &(a, b))| (k.to_vec(), positions[a][b]))
                    .collect();
                indexed.sort_unstable_by_key(|(_, p)| *p);
                let last_staged = indexed.last().cloned().map(|(k, p)| (p, k));
                let index_result = keys.committed(indexed, last_staged).await;
                tracing::debug!(rows = batch.rows, ms = started.elapsed().as_millis() as u64, "flushed");
                let mut published = Vec::with_capacity(batch.rows);
                for ((s, range), duplicates) in batch.submissions.into_iter().zip(ranges).zip(duplicates) {
                    let (first_position, last_position) = range.unwrap_or((0, *committed.borrow()));
                    let _ = s.reply.send(Ok(CommitInfo {
                        first_position,
                        last_position,
                        duplicates,
                    }));
                    published.extend(s.rows);
                }
                // After the acks and the committed position: readers that see this flush
                // can also read it from staging.
                if !published.is_empty() {
                    sink.committed(published);
                }
                if let Err(e) = index_result {
                    // The rows are staged and acknowledged, but a resend of them would
                    // no longer be recognised: stop taking events (health turns
                    // NOT_SERVING); the next start-up indexes them from staging.
                    tracing::error!(error = %e, "cannot record committed keys; the staging writer stops");
                    return;
                }
            }
            Err(e) => {
                if batch.rows > 0 {
                    if let Err(e) = keys.failed(first, last).await {
                        tracing::error!(error = %e, "cannot record a failed flush in the key index; the staging writer stops");
                        fail(batch, &e);
                        return;
                    }
                }
                fail(batch, &e)
            }
        }
    }
    if let Err(e) = keys.durable().await {
        tracing::error!(error = %e, "cannot make the staging key index durable at shutdown");
    }
}

/// The payloads of the first copies that rows of this flush duplicate, by position.
async fn earlier_payloads(client: &Client, fates: &[Vec<Fate>]) -> Result<HashMap<u64, Vec<u8>>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Payload {
        position: u64,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    }
    let mut wanted: Vec<u64> = fates
        .iter()
        .flatten()
        .filter_map(|f| match f {
            Fate::Earlier(p) => Some(*p),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    wanted.sort_unstable();
    wanted.dedup();
    let rows: Vec<Payload> = fetch_by_keys(
        client,
        &format!("SELECT position, payload FROM {EVENTS_TABLE} WHERE position IN ?"),
        &wanted,
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.position, r.payload)).collect())
}

fn fail(batch: Batch, e: &Error) {
    tracing::warn!(rows = batch.rows, error = %e, "staging flush failed; nothing in it is acknowledged");
    let message = e.to_string();
    for s in batch.submissions {
        let _ = s.reply.send(Err(Error::Unavailable(message.clone())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_fill_by_weight_then_by_time_and_see_the_end() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in [3, 4, 5, 6] {
            tx.send(n).await.unwrap();
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        // By weight: 3 + 4 + 5 reaches 10, the 6 waits for the next batch.
        let mut batch = Vec::new();
        assert!(fill_batch(&mut rx, &mut batch, 10, far, |n| *n).await);
        assert_eq!(batch, vec![3, 4, 5]);
        // By time: nothing more comes before the deadline.
        let mut batch = Vec::new();
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        assert!(fill_batch(&mut rx, &mut batch, 100, soon, |n| *n).await);
        assert_eq!(batch, vec![6]);
        // Closed and empty.
        drop(tx);
        let mut batch = Vec::new();
        assert!(!fill_batch(&mut rx, &mut batch, 100, far, |n| *n).await);
        assert!(batch.is_empty());
    }
}
