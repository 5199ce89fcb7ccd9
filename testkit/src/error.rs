//! The crate's error type.

use std::io;
use std::time::Duration;

/// Everything that can go wrong while running a test ClickHouse server.
///
/// Startup errors carry `log_tail`: the last lines the server wrote to stderr and
/// to its error log during that start attempt, so a failing test shows why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No ClickHouse server executable was found.
    #[error(
        "no ClickHouse server executable found (install Debian's clickhouse-server or set \
         HOSPITAL_CLICKHOUSE_BIN); looked for: {searched}"
    )]
    BinaryNotFound { searched: String },

    /// The [`ServerOptions`](crate::ServerOptions) are inconsistent.
    #[error("invalid server options: {0}")]
    InvalidOptions(String),

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Something (most likely another ClickHouse) already answers on the fixed HTTP port.
    #[error("a server is already answering on {url}")]
    AlreadyRunning { url: String },

    /// The server could not bind one of its ports.
    #[error(
        "ClickHouse could not listen on 127.0.0.1 (http port {http_port}, tcp port {tcp_port}): \
         address already in use\n{log_tail}"
    )]
    AddressInUse {
        http_port: u16,
        tcp_port: u16,
        log_tail: String,
    },

    /// The server process exited before it answered `/ping`.
    #[error("ClickHouse exited during startup ({status})\n{log_tail}")]
    StartFailed { status: String, log_tail: String },

    /// The server did not answer `/ping` in time (it has been killed).
    #[error("ClickHouse did not answer /ping on port {http_port} within {waited:?}\n{log_tail}")]
    StartTimeout {
        http_port: u16,
        waited: Duration,
        log_tail: String,
    },

    /// The HTTP request itself failed (connection refused, timeout, malformed response).
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: io::Error,
    },

    /// The server answered a query with a non-200 status; `message` is its error text.
    #[error("query failed with HTTP {status}: {message}")]
    Query { status: u16, message: String },
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
