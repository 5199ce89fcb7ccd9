//! `hospital`: command-line client of the hospital data platform.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hospital_client::generate::{generate, GeneratorOptions};
use hospital_client::sender::{send_events, SenderOptions};
use hospital_proto::batch::batch_service_client::BatchServiceClient;
use hospital_proto::batch::{GetWarehouseStatusRequest, RunWarehouseLoadRequest};
use indicatif::{ProgressBar, ProgressStyle};

// glibc malloc spent a quarter of the ingest path's CPU under contention (perf, 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hospital", version, about = "Client of the hospital data platform")]
struct Cli {
    /// Platform gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "HOSPITAL_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a deterministic synthetic hospital period and stream it to the platform.
    Generate {
        #[arg(long, default_value_t = 200)]
        patients: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Events per IngestRequest.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Requests in flight on the stream.
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
        #[arg(long, default_value = "sim-ehr")]
        source_system: String,
    },
    /// Warehouse loads (staging -> warehouse).
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Run an incremental warehouse load now and follow its progress.
    Run {
        /// Reprocess all of staging (idempotent: changes nothing already correct).
        #[arg(long)]
        full: bool,
    },
    /// Show the watermark, the staged position and row counts.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Generate {
            patients,
            seed,
            batch_size,
            in_flight,
            source_system,
        } => {
            let events = generate(&GeneratorOptions {
                seed,
                patients,
                source_system,
                ..Default::default()
            });
            let total = events.len() as u64;
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events  {per_sec}  {msg}",
                )
                .context("progress template")?,
            );
            let mut rejected = 0usize;
            let opts = SenderOptions {
                endpoint: cli.endpoint.clone(),
                batch_size,
                max_in_flight: in_flight,
                ..Default::default()
            };
            let report = send_events(events, &opts, |ack| {
                rejected += ack.rejections.len();
                bar.inc((ack.committed_event_ids.len() + ack.rejections.len()) as u64);
                bar.set_message(format!("{rejected} rejected"));
            })
            .await?;
            bar.finish();
            println!(
                "sent {} events in {} requests over {:.1?}: {} committed (staging position {}), {} rejected, {} reconnects",
                total,
                report.requests,
                report.elapsed,
                report.committed,
                report.last_position,
                report.rejections.len(),
                report.reconnects
            );
            for r in report.rejections.iter().take(20) {
                for v in &r.violations {
                    println!("  rejected {:?}: {}: {}", r.event_id, v.field, v.description);
                }
            }
        }
        Command::Batch { command } => {
            let channel = hospital_client::connect(&cli.endpoint)
                .await
                .with_context(|| format!("connect to {}", cli.endpoint))?;
            let mut client = BatchServiceClient::new(channel);
            match command {
                BatchCommand::Run { full } => {
                    let mut stream = client
                        .run_warehouse_load(RunWarehouseLoadRequest { full_reload: full })
                        .await?
                        .into_inner();
                    while let Some(p) = stream.message().await? {
                        println!(
                            "[{}] {:<16} positions {}..{}  read {:>8}  written {:>8}  {}",
                            p.run_id,
                            p.stage,
                            p.from_position,
                            p.to_position,
                            p.staged_events_read,
                            p.rows_written,
                            p.message
                        );
                    }
                }
                BatchCommand::Status => {
                    let s = client
                        .get_warehouse_status(GetWarehouseStatusRequest {})
                        .await?
                        .into_inner();
                    println!(
                        "watermark {}  staged position {}  last run {}",
                        s.watermark, s.staged_position, s.last_run_id
                    );
                    let mut tables: Vec<_> = s.table_rows.into_iter().collect();
                    tables.sort();
                    for (table, rows) in tables {
                        println!("  {table:<28} {rows:>10}");
                    }
                }
            }
        }
    }
    Ok(())
}
