//! `hospital-platform`: the platform server. Configuration comes from defaults, an
//! optional TOML file, `HOSPITAL__SECTION__KEY` environment variables and these flags,
//! in that order.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hospital_platform::config::Config;
use tracing_subscriber::EnvFilter;

// glibc malloc spent a quarter of the ingest path's CPU under contention (perf, 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "hospital-platform",
    version,
    about = "Hospital data platform: ingest, staging, warehouse, served over gRPC"
)]
struct Cli {
    /// TOML configuration file (sections: server, ingest, clickhouse, staging, batch).
    #[arg(long, env = "HOSPITAL_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// ClickHouse HTTP URL (clickhouse.url).
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// HL7 v2 MLLP listen address, e.g. 127.0.0.1:2575 (mllp.listen; off by default).
    #[arg(long)]
    mllp_listen: Option<SocketAddr>,
    /// Seconds between scheduled warehouse loads, 0 to turn off (batch.interval_secs).
    #[arg(long)]
    batch_interval_secs: Option<u64>,
    /// Print the effective configuration as TOML (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,hyper=warn,hyper_util=warn,tower=warn")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
    }
    if let Some(url) = cli.clickhouse_url {
        config.clickhouse.url = url;
    }
    if let Some(addr) = cli.mllp_listen {
        config.mllp.listen = Some(addr);
    }
    if let Some(secs) = cli.batch_interval_secs {
        config.batch.interval_secs = secs;
    }
    config.validate()?;
    if cli.print_config {
        println!("{}", config.to_redacted_toml()?);
        return Ok(());
    }

    // Handlers first: a SIGTERM from the moment the server answers stops it gracefully.
    let signal = shutdown_signal()?;
    let platform = hospital_platform::server::start(config)
        .await
        .context("platform failed to start")?;
    let token = platform.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown signal received; finishing open requests");
        token.cancel();
    });
    platform.wait().await?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
