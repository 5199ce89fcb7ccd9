//! ClickHouse clients, built one way for the whole platform.
//!
//! RowBinary without schema validation (`with_validation(false)`) and a database per
//! client with bare table names: both verified against ClickHouse 18.16.1, which has
//! no `RowBinaryWithNamesAndTypes` input and no server-side parameters.

use std::time::Duration;

use clickhouse::{Client, Compression};

use crate::config::ClickHouseConfig;

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
