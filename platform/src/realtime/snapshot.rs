//! The real-time snapshot: the NEWS2 state of every patient as of a staging position,
//! on local disk (`<state dir>/realtime.redb`), so a start-up reads one row per patient
//! and replays the few events after it instead of rebuilding from the warehouse.
//!
//! Like the staging key index it is a cache of staging, never the truth:
//! - The processor saves the patients changed since the last save, with the position
//!   they are current to and that position's event key (the anchor), in one
//!   transaction, and only once every alert raised up to that position is in the audit
//!   table (an unaudited alert is raised again by the replay after a restart, which
//!   must therefore start at or before it).
//! - At start-up the anchor is checked against staging; a snapshot that does not match
//!   (another ClickHouse, a dropped table) or cannot be read is ignored, and the state
//!   is rebuilt from the warehouse as before.

use std::path::Path;

use clickhouse::Client;
use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::alerts::SavedPatient;
use crate::error::Result;
use crate::local::LocalDb;

/// Patient key (authority 0x1f MRN) -> the patient's NEWS2 state as JSON.
const PATIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("news2_patients");
/// "covered" -> the staging position the state is current to.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// "anchor" -> the key of the staged event at the covered position.
const ANCHOR: TableDefinition<&str, &[u8]> = TableDefinition::new("anchor");

#[derive(Clone)]
pub struct Snapshot {
    db: LocalDb,
}

/// A snapshot read back: the patients' states and the position they are current to.
pub struct Saved {
    pub patients: Vec<SavedPatient>,
    pub covered: u64,
}

impl Snapshot {
    pub async fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            db: LocalDb::open(dir, "realtime.redb", "real-time snapshot").await?,
        })
    }

    /// The saved state, if there is one and its anchor matches staging.
    pub async fn load(&self, staging: &Client) -> Result<Option<Saved>> {
        let read = self
            .db
            .run(|db, place| {
                let tx = db.begin_read().map_err(|e| place.error("read", e))?;
                let covered = match tx.open_table(META) {
                    Ok(t) => t.get("covered").map_err(|e| place.error("read", e))?.map(|v| v.value()),
                    Err(redb::TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(place.error("read", e)),
                };
                let Some(covered) = covered else { return Ok(None) };
                let anchor = tx
                    .open_table(ANCHOR)
                    .and_then(|t| Ok(t.get("anchor")?.map(|v| v.value().to_vec())))
                    .map_err(|e| place.error("read", e))?;
                let table = tx.open_table(PATIENTS).map_err(|e| place.error("read", e))?;
                let mut patients = Vec::with_capacity(table.len().unwrap_or(0) as usize);
                for row in table.iter().map_err(|e| place.error("read", e))? {
                    let (k, v) = row.map_err(|e| place.error("read", e))?;
                    patients.push((k.value().to_vec(), v.value().to_vec()));
                }
                Ok(Some((covered, anchor, patients)))
            })
            .await?;
        let Some((covered, anchor, patients)) = read else {
            return Ok(None);
        };
        if anchor.is_none() || crate::staging::key_at(staging, covered).await? != anchor {
            tracing::warn!(
                path = %self.db.path().display(),
                covered,
                "real-time snapshot does not match staging (another server or a dropped table); rebuilding from the warehouse"
            );
            return Ok(None);
        }
        Ok(Some(Saved { patients, covered }))
    }

    /// Saves the patients changed since the last save, current to `covered` (the
    /// event keyed `anchor`), durably and at once.
    pub async fn save(&self, changed: Vec<SavedPatient>, covered: u64, anchor: Vec<u8>) -> Result<()> {
        self.db
            .run(move |db, place| {
                let mut tx = db.begin_write().map_err(|e| place.error("write", e))?;
                tx.set_durability(Durability::Immediate)
                    .map_err(|e| place.error("write", e))?;
                {
                    let mut patients = tx.open_table(PATIENTS).map_err(|e| place.error("write", e))?;
                    for (k, v) in &changed {
                        patients
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(|e| place.error("write", e))?;
                    }
                    tx.open_table(META)
                        .and_then(|mut m| {
                            m.insert("covered", covered)?;
                            Ok(())
                        })
                        .map_err(|e| place.error("write", e))?;
                    tx.open_table(ANCHOR)
                        .and_then(|mut a| {
                            a.insert("anchor", anchor.as_slice())?;
                            Ok(())
                        })
                        .map_err(|e| place.error("write", e))?;
                }
                tx.commit().map_err(|e| place.error("commit", e))
            })
            .await
    }

    /// Forgets everything (a rebuild from the warehouse starts a new snapshot).
    pub async fn clear(&self) -> Result<()> {
        self.db
            .run(|db, place| {
                let tx = db.begin_write().map_err(|e| place.error("write", e))?;
                let cleared = tx
                    .delete_table(PATIENTS)
                    .and_then(|_| tx.delete_table(META))
                    .and_then(|_| tx.delete_table(ANCHOR));
                cleared.map_err(|e| place.error("clear", e))?;
                tx.commit().map_err(|e| place.error("commit", e))
            })
            .await
    }
}
