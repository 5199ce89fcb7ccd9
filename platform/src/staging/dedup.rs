//! First commit wins: the index of every `(source_system, event_id)` committed to
//! staging, with the position of its first copy. The flusher consults it before each
//! insert, so a re-sent event is answered as a duplicate instead of being staged again,
//! and every reader of staging (warehouse load, real time, change feed) sees one copy.
//!
//! The index lives on local disk (`<state dir>/staging-keys.redb`, a redb B-tree keyed by
//! the exact `source_system 0x1f event_id` bytes), so a start-up costs the same after a
//! year as after a day and memory does not grow with history. It is a cache of staging,
//! never the truth:
//! - It records the highest staging position it covers and that row's key (the
//!   anchor). At start-up the anchor is checked against staging; an index that does not
//!   match (another ClickHouse, a dropped table) is discarded and rebuilt from staging.
//! - Commits between durable ones are not fsynced ([`Durability::None`]); after a crash
//!   the index covers less than staging, and start-up indexes the staging rows after
//!   the covered position.
//! - A flush whose insert failed may still have landed. Its position range is recorded
//!   as uncertain and looked up in staging again, at later flushes and at start-up,
//!   until the insert timeout has surely passed.

use std::path::Path;
use std::time::{Duration, Instant};

use clickhouse::Client;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

use super::{key, key_at, EVENTS_TABLE};
use crate::error::Result;
use crate::local::{LocalDb, Place};

/// Key bytes -> position of the first committed copy.
const FIRST: TableDefinition<&[u8], u64> = TableDefinition::new("first_position");
/// "covered" -> highest position indexed; "anchor_position" is the same, kept with:
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// "anchor" -> key bytes of the staging row at the covered position.
const ANCHOR: TableDefinition<&str, &[u8]> = TableDefinition::new("anchor");
/// First position of a failed flush -> its last position (inserts that may have landed).
const UNCERTAIN: TableDefinition<u64, u64> = TableDefinition::new("uncertain");

/// How often the index is made durable while commits go on.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Staging rows read per query while the index catches up.
const CATCH_UP_CHUNK: u64 = 200_000;

#[derive(clickhouse::Row, Deserialize)]
struct StagedKey {
    source_system: String,
    event_id: String,
    position: u64,
}

pub(super) struct CommittedKeys {
    db: LocalDb,
    covered: u64,
    last_durable: Instant,
    /// Failed flushes not yet resolved, with when they failed.
    uncertain: Vec<(u64, u64, Instant)>,
}

/// What start-up found and did, for the log and the start-up benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOpened {
    /// Keys in the index once it is current.
    pub keys: u64,
    /// The highest position staging holds (where the writer's positions continue).
    pub last_position: u64,
    /// Staging rows read to bring it up to date.
    pub rows_read: u64,
    /// Whether an index on disk was discarded (it did not match staging).
    pub rebuilt: bool,
}

impl CommittedKeys {
    /// Opens (or creates) the index in `dir` and brings it up to staging's end.
    pub(super) async fn open(dir: &Path, client: &Client) -> Result<(Self, IndexOpened)> {
        let mut keys = Self {
            db: LocalDb::open(dir, "staging-keys.redb", "staging key index").await?,
            covered: 0,
            last_durable: Instant::now(),
            uncertain: Vec::new(),
        };
        let mut opened = IndexOpened::default();
        let (covered, anchor, uncertain) = keys.db.run(read_meta).await?;
        if covered > 0 && key_at(client, covered).await?.as_deref() != Some(anchor.as_slice()) {
            tracing::warn!(
                path = %keys.db.path().display(),
                covered,
                "staging key index does not match staging (another server or a dropped table); rebuilding it"
            );
            keys.db.run(clear).await?;
            opened.rebuilt = true;
        } else {
            keys.covered = covered;
            // Failed flushes seen before the restart: their inserts are long over.
            for (first, last) in uncertain {
                opened.rows_read += keys.index_range(client, first, last).await?;
                keys.db.run(move |db, place| forget_uncertain(db, place, first)).await?;
            }
        }
        // Whatever staging holds past the covered position (commits not yet durable
        // when the process stopped, or everything when the index is new), a range of
        // positions at a time (a `position` range reads only its own granules).
        let end = max_position_from(client, keys.covered).await?;
        opened.last_position = end;
        let mut from = keys.covered;
        while from < end {
            let to = from.saturating_add(CATCH_UP_CHUNK).min(end);
            let rows = client
                .query(&format!(
                    "SELECT source_system, event_id, position FROM {EVENTS_TABLE} \
                     WHERE position > ? AND position <= ? ORDER BY position"
                ))
                .bind(from)
                .bind(to)
                .fetch_all::<StagedKey>()
                .await?;
            opened.rows_read += rows.len() as u64;
            let last = rows.last().map(|r| (r.position, key(&r.source_system, &r.event_id)));
            let mut batch: Vec<(Vec<u8>, u64)> = rows
                .into_iter()
                .map(|r| (key(&r.source_system, &r.event_id), r.position))
                .collect();
            // In key order: B-tree inserts in order touch each page once.
            batch.sort_unstable();
            keys.record(batch, last, false).await?;
            from = to;
        }
        keys.durable().await?;
        opened.keys = keys.db.run(count).await?;
        Ok((keys, opened))
    }

    /// Position of the first committed copy of each key, in order.
    pub(super) async fn first_positions(&self, wanted: Vec<Vec<u8>>) -> Result<Vec<Option<u64>>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .run(move |db, place| {
                let tx = db.begin_read().map_err(|e| place.error("read", e))?;
                let table = match tx.open_table(FIRST) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; wanted.len()]),
                    Err(e) => return Err(place.error("read", e)),
                };
                wanted
                    .iter()
                    .map(|k| {
                        table
                            .get(k.as_slice())
                            .map(|v| v.map(|v| v.value()))
                            .map_err(|e| place.error("read", e))
                    })
                    .collect()
            })
            .await
    }

    /// Records the keys of a flush whose insert returned; `last` is the flush's last
    /// staged row (position and key), the new covered position.
    pub(super) async fn committed(&mut self, keys: Vec<(Vec<u8>, u64)>, last: Option<(u64, Vec<u8>)>) -> Result<()> {
        let durable = self.last_durable.elapsed() >= DURABLE_EVERY;
        self.record(keys, last, durable).await
    }

    /// Records a flush whose insert failed: it may still land, so its rows are looked
    /// up in staging at later flushes until `settled_after` has passed, and at start-up.
    pub(super) async fn failed(&mut self, first: u64, last: u64) -> Result<()> {
        if first > last {
            return Ok(());
        }
        self.uncertain.push((first, last, Instant::now()));
        self.db
            .run(move |db, place| {
                let tx = write_tx(db, place, Durability::Immediate)?;
                tx.open_table(UNCERTAIN)
                    .and_then(|mut t| {
                        t.insert(first, last)?;
                        Ok(())
                    })
                    .map_err(|e| place.error("write", e))?;
                tx.commit().map_err(|e| place.error("commit", e))
            })
            .await
    }

    /// Looks up the uncertain ranges in staging again (before a flush decides fates):
    /// rows that landed after all are indexed; a range is forgotten once `settled_after`
    /// has passed since its failure.
    pub(super) async fn resolve_uncertain(&mut self, client: &Client, settled_after: Duration) -> Result<()> {
        let mut still = Vec::new();
        for (first, last, failed_at) in std::mem::take(&mut self.uncertain) {
            let settled = failed_at.elapsed() >= settled_after;
            self.index_range(client, first, last).await?;
            if settled {
                self.db.run(move |db, place| forget_uncertain(db, place, first)).await?;
            } else {
                still.push((first, last, failed_at));
            }
        }
        self.uncertain = still;
        Ok(())
    }

    pub(super) fn has_uncertain(&self) -> bool {
        !self.uncertain.is_empty()
    }

    /// Makes every commit so far durable (at shutdown).
    pub(super) async fn durable(&mut self) -> Result<()> {
        self.record(Vec::new(), None, true).await
    }

    async fn index_range(&mut self, client: &Client, first: u64, last: u64) -> Result<u64> {
        let rows = client
            .query(&format!(
                "SELECT source_system, event_id, position FROM {EVENTS_TABLE} \
                 WHERE position >= ? AND position <= ?"
            ))
            .bind(first)
            .bind(last)
            .fetch_all::<StagedKey>()
            .await?;
        let n = rows.len() as u64;
        if n > 0 {
            tracing::warn!(
                first,
                last,
                rows = n,
                "a flush reported as failed had landed; its keys are indexed"
            );
            let batch = rows
                .into_iter()
                .map(|r| (key(&r.source_system, &r.event_id), r.position))
                .collect();
            self.record(batch, None, true).await?;
        }
        Ok(n)
    }

    async fn record(&mut self, keys: Vec<(Vec<u8>, u64)>, last: Option<(u64, Vec<u8>)>, durable: bool) -> Result<()> {
        let covered = last.as_ref().map(|(p, _)| *p);
        self.db
            .run(move |db, place| {
                let level = if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                };
                let tx = write_tx(db, place, level)?;
                {
                    let mut first = tx.open_table(FIRST).map_err(|e| place.error("write", e))?;
                    for (k, position) in &keys {
                        // Staging written before this rule may hold several copies: the
                        // lowest position counts.
                        let existing = first
                            .get(k.as_slice())
                            .map_err(|e| place.error("read", e))?
                            .map(|v| v.value());
                        if existing.is_none_or(|p| *position < p) {
                            first
                                .insert(k.as_slice(), *position)
                                .map_err(|e| place.error("write", e))?;
                        }
                    }
                    if let Some((position, k)) = &last {
                        let mut meta = tx.open_table(META).map_err(|e| place.error("write", e))?;
                        let covered = meta
                            .get("covered")
                            .map_err(|e| place.error("read", e))?
                            .map_or(0, |v| v.value());
                        if *position > covered {
                            meta.insert("covered", *position).map_err(|e| place.error("write", e))?;
                            tx.open_table(ANCHOR)
                                .and_then(|mut a| {
                                    a.insert("anchor", k.as_slice())?;
                                    Ok(())
                                })
                                .map_err(|e| place.error("write", e))?;
                        }
                    }
                }
                tx.commit().map_err(|e| place.error("commit", e))
            })
            .await?;
        if let Some(c) = covered {
            self.covered = self.covered.max(c);
        }
        if durable {
            self.last_durable = Instant::now();
        }
        Ok(())
    }
}

fn write_tx(db: &Database, place: &Place, durability: Durability) -> Result<redb::WriteTransaction> {
    let mut tx = db.begin_write().map_err(|e| place.error("write", e))?;
    tx.set_durability(durability).map_err(|e| place.error("write", e))?;
    Ok(tx)
}

type Meta = (u64, Vec<u8>, Vec<(u64, u64)>);

fn read_meta(db: &Database, place: &Place) -> Result<Meta> {
    let tx = db.begin_read().map_err(|e| place.error("read", e))?;
    let covered = match tx.open_table(META) {
        Ok(t) => t
            .get("covered")
            .map_err(|e| place.error("read", e))?
            .map_or(0, |v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(place.error("read", e)),
    };
    let anchor = match tx.open_table(ANCHOR) {
        Ok(t) => t
            .get("anchor")
            .map_err(|e| place.error("read", e))?
            .map(|v| v.value().to_vec())
            .unwrap_or_default(),
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(place.error("read", e)),
    };
    let uncertain = match tx.open_table(UNCERTAIN) {
        Ok(t) => t
            .iter()
            .map_err(|e| place.error("read", e))?
            .map(|r| r.map(|(a, b)| (a.value(), b.value())))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| place.error("read", e))?,
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(place.error("read", e)),
    };
    Ok((covered, anchor, uncertain))
}

fn clear(db: &Database, place: &Place) -> Result<()> {
    let tx = write_tx(db, place, Durability::Immediate)?;
    let cleared = tx
        .delete_table(FIRST)
        .and_then(|_| tx.delete_table(META))
        .and_then(|_| tx.delete_table(ANCHOR))
        .and_then(|_| tx.delete_table(UNCERTAIN));
    cleared.map_err(|e| place.error("clear", e))?;
    tx.commit().map_err(|e| place.error("commit", e))
}

fn forget_uncertain(db: &Database, place: &Place, first: u64) -> Result<()> {
    let tx = write_tx(db, place, Durability::Immediate)?;
    tx.open_table(UNCERTAIN)
        .and_then(|mut t| {
            t.remove(first)?;
            Ok(())
        })
        .map_err(|e| place.error("write", e))?;
    tx.commit().map_err(|e| place.error("commit", e))
}

fn count(db: &Database, place: &Place) -> Result<u64> {
    let tx = db.begin_read().map_err(|e| place.error("read", e))?;
    match tx.open_table(FIRST) {
        Ok(t) => t.len().map_err(|e| place.error("read", e)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(place.error("read", e)),
    }
}

/// The highest staged position at or above `from` (`from` when there is none): reads
/// only the granules from `from` on, as staging is ordered by position.
async fn max_position_from(client: &Client, from: u64) -> Result<u64> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Max {
        max_position: u64,
    }
    let max = client
        .query(&format!(
            "SELECT max(position) AS max_position FROM {EVENTS_TABLE} WHERE position >= ?"
        ))
        .bind(from)
        .fetch_one::<Max>()
        .await?
        .max_position;
    Ok(max.max(from))
}
