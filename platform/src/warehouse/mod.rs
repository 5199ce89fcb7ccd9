//! The warehouse star schema (`warehouse` database): one module per table group with
//! its row structs, its SQL, and the rules that decide what a row holds (SCD2 history,
//! the encounter snapshot merge, SCD1 latest-wins).
//!
//! Owns: the shape of every warehouse table (see `migrations/warehouse/`, from
//! `0001_star_schema.sql` on) and how rows are read and written.
//! Must not: read the staging zone, decode events, or decide what to load and when
//! (the [`crate::batch`] stage does that).
//!
//! Conventions shared by every table: times are Int64 ms since the epoch (UTC), dates
//! are `date_key` YYYYMMDD; rows are replaced, never updated (ReplacingMergeTree keyed by
//! the table's natural key, `version` = the load sequence of the chunk that wrote the
//! row), so reads use `FINAL`; `is_deleted = 1` marks a tombstone.

pub mod bookkeeping;
pub mod calendar;
pub mod encounter;
pub mod facts;
pub mod icu;
pub mod keys;
pub mod patient;
pub mod reference;

use clickhouse::{Client, RowOwned, RowRead, RowWrite};
use serde::ser::SerializeTuple;
use serde::Serialize;

use crate::error::Result;

/// Load sequence number of the chunk that wrote a row; a higher one replaces a lower.
pub type Version = u64;

/// Start of the first version of every SCD2 member: 0001-01-01T00:00:00Z.
pub const BEGINNING_OF_TIME_MS: i64 = -62_135_596_800_000;
/// End of the current version of every SCD2 member: 9999-12-31T23:59:59.999Z.
pub const END_OF_TIME_MS: i64 = 253_402_300_799_999;

/// Keys per lookup query. `x IN (...)` lists are inlined into the SQL text (18.16 has
/// neither server-side parameters nor `IN [array]`), so lookups are split to keep each
/// query far below `max_query_size`.
const LOOKUP_KEYS_PER_QUERY: usize = 2_000;
/// Lookup queries of one call in flight at once.
const LOOKUP_CONCURRENCY: usize = 4;
/// `max_query_size` of lookup queries: 2,000 keys of up to 2 x 128 characters exceed
/// the default 256 KiB.
const MAX_LOOKUP_QUERY_BYTES: &str = "4194304";

/// Inserts `rows` into `table` in one INSERT; returns how many rows were written.
pub(crate) async fn insert_rows<T>(client: &Client, table: &str, rows: &[T]) -> Result<u64>
where
    T: RowOwned + RowWrite,
{
    if rows.is_empty() {
        return Ok(0);
    }
    let mut insert = client.insert::<T>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(rows.len() as u64)
}

/// A list bound as a SQL tuple, `('a', 'b')`, for `x IN ?`. The `clickhouse` crate
/// binds slices as arrays, which 18.16's `IN` does not accept.
pub(crate) struct InList<'a, K>(pub &'a [K]);

impl<K: Serialize> Serialize for InList<'_, K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for k in self.0 {
            tuple.serialize_element(k)?;
        }
        tuple.end()
    }
}

/// Runs `sql`, whose one `?` is the right-hand side of an `IN`, once per slice of
/// `keys`, and concatenates the rows. No query is sent for no keys.
pub(crate) async fn fetch_by_keys<K, T>(client: &Client, sql: &str, keys: &[K]) -> Result<Vec<T>>
where
    K: Serialize + Sync,
    T: RowOwned + RowRead,
{
    let mut out = Vec::new();
    let slices: Vec<&[K]> = keys.chunks(LOOKUP_KEYS_PER_QUERY).collect();
    for group in slices.chunks(LOOKUP_CONCURRENCY) {
        let parts =
            futures::future::try_join_all(group.iter().map(|slice| fetch_slice::<K, T>(client, sql, slice))).await?;
        out.extend(parts.into_iter().flatten());
    }
    Ok(out)
}

async fn fetch_slice<K, T>(client: &Client, sql: &str, keys: &[K]) -> Result<Vec<T>>
where
    K: Serialize,
    T: RowOwned + RowRead,
{
    Ok(client
        .query(sql)
        .bind(InList(keys))
        .with_setting("max_query_size", MAX_LOOKUP_QUERY_BYTES)
        .fetch_all::<T>()
        .await?)
}

/// The label of a protobuf enum value: its name without the enum's prefix, lower
/// case (`ENCOUNTER_CLASS_DAY_CASE` -> `day_case`); empty for `*_UNSPECIFIED`.
pub fn enum_label(str_name: &str, prefix: &str) -> String {
    let label = str_name
        .strip_prefix(prefix)
        .unwrap_or(str_name)
        .trim_start_matches('_');
    if label == "UNSPECIFIED" {
        String::new()
    } else {
        label.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_labels_drop_the_prefix_and_unspecified() {
        assert_eq!(enum_label("ENCOUNTER_CLASS_DAY_CASE", "ENCOUNTER_CLASS"), "day_case");
        assert_eq!(enum_label("BED_STATE_UNSPECIFIED", "BED_STATE"), "");
    }

    #[test]
    fn in_lists_bind_as_tuples() {
        let keys = [("a".to_string(), "b".to_string())];
        let q = clickhouse::Client::default()
            .query("SELECT 1 WHERE (x, y) IN ?")
            .bind(InList(&keys[..]));
        assert_eq!(q.sql_display().to_string(), "SELECT 1 WHERE (x, y) IN (('a','b'))");
        let ids = ["p1".to_string(), "p'2".to_string()];
        let q = clickhouse::Client::default()
            .query("SELECT 1 WHERE x IN ?")
            .bind(InList(&ids[..]));
        assert_eq!(q.sql_display().to_string(), r"SELECT 1 WHERE x IN ('p1','p\'2')");
    }
}
