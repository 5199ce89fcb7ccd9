//! The ML sidecar of the hospital data platform: a feature store on Lance, linfa models
//! for patient risk and demand, and their serving over gRPC.

pub mod demand;
pub mod drift;
pub mod features;
pub mod live;
pub mod registry;
pub mod serve;
pub mod server;
pub mod store;
pub mod training;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::features::labels::Task;

/// The ML sidecar: feature store, models and their serving.
#[derive(Debug, Parser)]
#[command(name = "hospital-ml", version)]
pub struct Cli {
    /// gRPC address (hospital.ml.v1, inference.GRPCInferenceService, health, reflection).
    #[arg(long, env = "HOSPITAL_ML_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// The warehouse's ClickHouse (read only).
    #[arg(long, env = "HOSPITAL__CLICKHOUSE__URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    #[arg(long, env = "HOSPITAL__CLICKHOUSE__USER", default_value = "default")]
    pub clickhouse_user: String,
    #[arg(
        long,
        env = "HOSPITAL__CLICKHOUSE__PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: String,
    /// Training sets (Lance) and the model registry live here.
    #[arg(long, env = "HOSPITAL_ML_DATA_DIR", default_value = ".hospital/ml")]
    pub data_dir: PathBuf,
    /// At start, for each task without a model: build its training set from everything
    /// in the warehouse, train, and promote.
    #[arg(long)]
    pub bootstrap: bool,
    /// Score live: follow this platform's change feed and write each score back through
    /// its ingest (e.g. http://127.0.0.1:50051). Without it the sidecar only serves.
    #[arg(long, env = "HOSPITAL_ML_PLATFORM")]
    pub platform: Option<String>,
    /// At the first live start (no saved position), also score the vital-signs sets of
    /// the last N hours in the warehouse; 0 starts at the warehouse watermark.
    #[arg(long, default_value_t = 0)]
    pub live_backfill_hours: u32,
}

/// A read client on the warehouse database: RowBinary without schema validation (the
/// platform's verified settings: ClickHouse 18.16 has no `RowBinaryWithNamesAndTypes`),
/// so every row struct lists its columns in SELECT order.
pub fn warehouse_client(url: &str, user: &str, password: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_user(user)
        .with_password(password)
        .with_compression(clickhouse::Compression::Lz4)
        .with_validation(false)
        .with_database("warehouse")
}

/// Builds a task's training set from everything in the warehouse and trains its first
/// model, unless one is served already.
pub async fn bootstrap(sidecar: &server::Sidecar, task: Task) -> anyhow::Result<()> {
    if sidecar.registry.served(task).is_some() {
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let built = training::build(
        &sidecar.warehouse,
        &sidecar.store,
        task.name(),
        task,
        i64::MIN,
        i64::MAX,
        tx,
    )
    .await?;
    drain.await?;
    tracing::info!(
        task = task.name(),
        rows = built.progress.rows,
        positives = built.progress.positives,
        version = built.version.version,
        "training set built"
    );
    let m = sidecar
        .registry
        .train(
            &sidecar.store,
            task,
            task.name(),
            Some(built.version.version),
            registry::default_options(),
            &registry::L2_GRID,
        )
        .await?;
    tracing::info!(
        task = task.name(),
        version = m.version,
        auroc = m.model_report.auroc,
        baseline_auroc = m.baseline_report.auroc,
        "model trained and promoted"
    );
    Ok(())
}

/// Runs the sidecar until SIGINT or SIGTERM.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let sidecar = server::Sidecar::open(
            warehouse_client(&cli.clickhouse_url, &cli.clickhouse_user, &cli.clickhouse_password),
            cli.data_dir.clone(),
        )?;
        if cli.bootstrap {
            for task in [Task::Deterioration24h, Task::Readmission30d] {
                if let Err(e) = bootstrap(&sidecar, task).await {
                    tracing::error!(
                        task = task.name(),
                        error = format!("{e:#}"),
                        "bootstrap failed; serving without it"
                    );
                }
            }
        }
        let live = cli.platform.clone().map(|platform| {
            tokio::spawn(live::run(
                sidecar.clone(),
                cli.data_dir.clone(),
                live::LiveOptions {
                    backfill_hours: cli.live_backfill_hours,
                    ..live::LiveOptions::new(platform)
                },
            ))
        });
        let (bound, _) = tokio::sync::oneshot::channel();
        let served = server::serve(sidecar, cli.listen, bound, async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        })
        .await;
        // Live state is saved after every batch; a batch cut short is scored again.
        if let Some(live) = live {
            live.abort();
        }
        served
    })
}
