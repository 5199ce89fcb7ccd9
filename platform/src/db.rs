//! ClickHouse clients, built one way for the whole platform.
//!
//! RowBinary without schema validation (`with_validation(false)`) and a database per
//! client with bare table names: both verified against ClickHouse 18.16.1, which has
//! no `RowBinaryWithNamesAndTypes` input and no server-side parameters.

use std::time::Duration;

use clickhouse::{Client, Compression, RowOwned, RowRead, RowWrite};
use serde::ser::SerializeTuple;
use serde::Serialize;

use crate::config::ClickHouseConfig;
use crate::error::Result;

/// A client with no default database, for DDL and cross-database queries.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(&cfg.password)
        .with_compression(Compression::Lz4)
        .with_validation(false)
}

/// A client addressing tables of `database` by bare name.
pub fn client_for(cfg: &ClickHouseConfig, database: &str) -> Client {
    client(cfg).with_database(database)
}

pub fn timeout(cfg: &ClickHouseConfig) -> Duration {
    Duration::from_millis(cfg.timeout_ms)
}

/// The platform's ClickHouse clients, built once from configuration (at the composition
/// root, `server::start`) and handed to each stage, so no stage reads the configuration
/// of its storage itself and a test can hand a stage a client with its own settings.
#[derive(Clone)]
pub struct Databases {
    /// No default database: DDL and cross-database queries.
    pub admin: Client,
    pub staging: Client,
    pub warehouse: Client,
    /// The configured round-trip timeout.
    pub timeout: Duration,
}

impl Databases {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        Self {
            admin: client(cfg),
            staging: client_for(cfg, "staging"),
            warehouse: client_for(cfg, "warehouse"),
            timeout: timeout(cfg),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
