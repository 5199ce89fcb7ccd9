//! `hospital-testkit`: a real, throw-away ClickHouse server for tests and the local demo.
//!
//! [`ClickHouseServer::start`] runs the installed ClickHouse (Debian's
//! `clickhouse-server` 18.16 on the development and CI machines, or a current
//! `clickhouse` binary) from a minimal `config.xml`/`users.xml` that it generates
//! into a new temporary directory, on free loopback ports, with all data and logs
//! in that directory. It returns once `GET /ping` answers `Ok.`; dropping the
//! server kills the process and removes the directory. Every server has its own
//! directory and ports, so tests can run in parallel.
//!
//! ```no_run
//! use hospital_testkit::ClickHouseServer;
//!
//! let mut ch = ClickHouseServer::start()?;
//! ch.query("CREATE TABLE t (id UInt32) ENGINE = MergeTree ORDER BY id")?;
//! ch.query("INSERT INTO t VALUES (1), (2)")?;
//! assert_eq!(ch.query("SELECT count() FROM t")?, "2\n");
//! ch.kill()?; // simulate a crash
//! ch.restart()?; // same ports, same data
//! assert_eq!(ch.query("SELECT count() FROM t")?, "2\n");
//! # Ok::<(), hospital_testkit::TestkitError>(())
//! ```
//!
//! Clients connect to [`ClickHouseServer::url`] (HTTP) or
//! [`ClickHouseServer::tcp_port`] (native protocol). [`ClickHouseServer::query`]
//! is a minimal synchronous HTTP/1.0 client over `std::net::TcpStream` meant for
//! test setup and assertions; it needs no async runtime.
//!
//! The executable is taken from [`ServerOptions::binary`], else from
//! `$HOSPITAL_CLICKHOUSE_BIN`, else `clickhouse-server` (or the all-in-one
//! `clickhouse`, run as `clickhouse server`) from `PATH`, `/usr/sbin` or `/usr/bin`.
//!
//! The `hospital-clickhouse` binary of this crate runs such a server in the
//! foreground on fixed ports and a kept directory, for the local demo.
//!
//! [`shared_data`] finds the shared hospital test data for every crate's tests.

mod config;
mod error;
mod http;
mod server;

pub use error::TestkitError;
pub use server::{free_port, ping, ClickHouseServer, ServerOptions, BINARY_ENV};

use std::path::PathBuf;

/// A path in the shared hospital test data (`shared/data` beside the repository
/// checkout, or `$HOSPITAL_SHARED_DATA`), e.g. `shared_data("mimic3_demo")`. Panics when
/// it is missing: a test must not pass by testing nothing.
pub fn shared_data(sub: &str) -> PathBuf {
    let root = match std::env::var_os("HOSPITAL_SHARED_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    };
    let path = root.join(sub);
    assert!(
        path.exists(),
        "{} is required: check out shared/data beside the repository or set HOSPITAL_SHARED_DATA",
        path.display()
    );
    path
}
