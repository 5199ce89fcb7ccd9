//! `hospital-clickhouse`: run a local ClickHouse server in the foreground for the demo.
//!
//! ```text
//! hospital-clickhouse --dir .hospital/clickhouse --http-port 8123 --tcp-port 9000
//! ```
//!
//! The directory (config, data, logs) is created if needed and kept, so data
//! survives restarts. Prints `clickhouse ready on http://127.0.0.1:8123` once
//! `/ping` answers, and stops the server cleanly on SIGINT, SIGTERM or SIGHUP.
//! Exits with an error if a server already answers on the HTTP port, or if the
//! server dies on its own.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use clap::Parser;
use hospital_testkit::{ClickHouseServer, ServerOptions, TestkitError};

/// Run a local ClickHouse server in the foreground (data directory kept).
#[derive(Debug, Parser)]
#[command(name = "hospital-clickhouse", version, about)]
struct Args {
    /// Server directory: generated config, data/ and log/ (created if missing, kept).
    #[arg(long, env = "HOSPITAL_CLICKHOUSE_DIR", default_value = ".hospital/clickhouse")]
    dir: PathBuf,
    /// HTTP port on 127.0.0.1 (0 picks a free port).
    #[arg(long, env = "HOSPITAL_CLICKHOUSE_HTTP_PORT", default_value_t = 8123)]
    http_port: u16,
    /// Native-protocol (TCP) port on 127.0.0.1 (0 picks a free port).
    #[arg(long, env = "HOSPITAL_CLICKHOUSE_TCP_PORT", default_value_t = 9000)]
    tcp_port: u16,
    /// ClickHouse log level (none, fatal, critical, error, warning, notice, information, debug, trace).
    #[arg(long, env = "HOSPITAL_CLICKHOUSE_LOG_LEVEL", default_value = "warning")]
    log_level: String,
    /// ClickHouse executable (default: $HOSPITAL_CLICKHOUSE_BIN, else clickhouse-server from PATH).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Seconds to wait for the server to answer /ping.
    #[arg(long, default_value_t = 30)]
    startup_timeout: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hospital-clickhouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Install the handler first, so a signal during startup also stops the server.
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;

    let mut opts = ServerOptions::default()
        .dir(&args.dir)
        .log_level(args.log_level)
        .startup_timeout(Duration::from_secs(args.startup_timeout));
    if args.http_port != 0 {
        opts = opts.http_port(args.http_port);
    }
    if args.tcp_port != 0 {
        opts = opts.tcp_port(args.tcp_port);
    }
    if let Some(binary) = args.binary {
        opts = opts.binary(binary);
    }

    let mut server = match ClickHouseServer::start_with(opts) {
        Ok(server) => server,
        Err(TestkitError::AlreadyRunning { url }) => {
            return Err(format!("a server is already answering on {url}; stop it or choose another --http-port").into())
        }
        Err(e) => return Err(e.into()),
    };
    println!("clickhouse ready on {}", server.url());
    eprintln!(
        "  native protocol on 127.0.0.1:{}, data in {} (Ctrl-C to stop)",
        server.tcp_port(),
        server.data_dir().display()
    );
    std::io::stdout().flush()?;

    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if !server.is_running() {
                    // A Ctrl-C in a terminal also reaches the server itself, which
                    // then shuts down on its own: that is not a crash.
                    if rx.recv_timeout(Duration::from_secs(1)).is_ok() {
                        break;
                    }
                    return Err(format!("clickhouse exited unexpectedly\n{}", server.log_tail()).into());
                }
            }
        }
    }
    eprintln!("stopping clickhouse ...");
    server.stop()?;
    eprintln!("clickhouse stopped");
    Ok(())
}
