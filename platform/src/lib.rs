//! The hospital data platform: streamed ingest into a durable ClickHouse staging zone,
//! batch loads into a Kimball warehouse, served over gRPC.
//!
//! Read the modules in the order a message travels: [`ingest`] (validate, normalise)
//! -> [`staging`] (group commit, ack) -> [`batch`] (staging -> warehouse) ->
//! [`warehouse`] (the star schema's rows). [`server`] wires them to gRPC.

pub mod batch;
pub mod config;
pub mod db;
pub mod error;
pub mod ingest;
mod local;
pub mod realtime;
pub mod schema;
pub mod server;
pub mod staging;
pub mod stamp;
pub mod warehouse;

/// Wall-clock time in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
