//! `hospital`: command-line client of the hospital data platform.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hospital_client::sender::SenderOptions;
use hospital_proto::batch::batch_service_client::BatchServiceClient;
use hospital_proto::batch::{GetWarehouseStatusRequest, RunWarehouseLoadRequest};
use hospital_proto::realtime::alert_service_client::AlertServiceClient;
use hospital_proto::realtime::census_service_client::CensusServiceClient;
use hospital_proto::realtime::change_feed_service_client::ChangeFeedServiceClient;
use hospital_proto::realtime::{
    census_update, AlertKind, Census, GetCensusRequest, GetScoresRequest, RiskBand, SubscribeAlertsRequest,
    SubscribeRequest,
};
use indicatif::{ProgressBar, ProgressStyle};

mod simulate_cmd;

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
    /// Simulate a hospital (ED arrivals with a real daily and weekly pattern, triage,
    /// admissions, beds, transfers, vital signs with deteriorations, labs, medication,
    /// charges) and stream its events to the platform: a past period at full speed, or
    /// live with --live.
    Simulate(simulate_cmd::SimulateArgs),
    /// Warehouse loads (staging -> warehouse).
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Follow alerts live: NEWS2 and model risk (all wards unless --ward/--department).
    Alerts {
        #[arg(long = "ward")]
        wards: Vec<String>,
        #[arg(long = "department")]
        departments: Vec<String>,
    },
    /// Current NEWS2 score of each patient in the hospital, highest first.
    Scores {
        #[arg(long = "ward")]
        wards: Vec<String>,
        /// Show only the N highest.
        #[arg(long)]
        top: Option<usize>,
    },
    /// Follow the ML sidecar's risk scores live (from the change feed): each scored
    /// vital-signs set or discharge with its model, probability and top factors.
    Risk {
        /// Start after this feed position (default: now, the census's position).
        #[arg(long)]
        after: Option<u64>,
        #[arg(long = "ward")]
        wards: Vec<String>,
        /// Only scores at or above the model's threshold.
        #[arg(long)]
        high: bool,
        /// Factors shown per score.
        #[arg(long, default_value_t = 3)]
        factors: usize,
    },
    /// Daily demand forecast from the ML sidecar: ED arrivals or admissions per
    /// department, 1-14 days ahead with 80% intervals.
    Forecast {
        /// ML sidecar gRPC endpoint.
        #[arg(long, env = "HOSPITAL_ML_ENDPOINT", default_value = "http://127.0.0.1:50061")]
        ml: String,
        /// ed-arrivals or admissions.
        #[arg(long, default_value = "ed-arrivals")]
        series: String,
        #[arg(long = "department")]
        departments: Vec<String>,
        #[arg(long, default_value_t = 14)]
        days: u32,
    },
    /// Staffing per ward and shift from the ML sidecar: expected census, nurses at the
    /// stated patient-to-nurse ratio, and the probability of running out of beds.
    Staffing {
        #[arg(long, env = "HOSPITAL_ML_ENDPOINT", default_value = "http://127.0.0.1:50061")]
        ml: String,
        /// Patients per nurse, e.g. 4.
        #[arg(long)]
        ratio: f64,
        #[arg(long = "ward")]
        wards: Vec<String>,
        /// Days from now, today included.
        #[arg(long, default_value_t = 2)]
        days: u32,
        /// 8-hour shifts (early, late, night) instead of 12-hour (day, night).
        #[arg(long)]
        eight_hour: bool,
    },
    /// The live census; --watch follows its changes.
    Census {
        #[arg(long)]
        watch: bool,
        #[arg(long = "department")]
        departments: Vec<String>,
    },
    /// Load files through the platform's ingest: `load fhir PATH`, `load hl7 PATH`,
    /// `load mimic DIR`, `load synthea DIR`, `load reference DIR` (drugs.csv, payers.csv,
    /// wards.csv; the shipped catalogue is platform/sources/reference).
    /// Prints progress and a summary of what was accepted and rejected and why; a second
    /// load of the same files adds nothing to the warehouse.
    Load {
        #[arg(value_enum)]
        source: hospital_client::load::Source,
        path: std::path::PathBuf,
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Where progress is kept so that an interrupted load resumes after what was
        /// acknowledged (default: .hospital/checkpoints/load-<source>-<hash of PATH>).
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// Ignore an earlier interrupted load's progress and send everything.
        #[arg(long)]
        restart: bool,
        /// Stop when the platform has been unavailable this many seconds (default: wait
        /// until interrupted; progress is kept either way).
        #[arg(long, value_name = "SECS")]
        give_up_after: Option<u64>,
    },
    /// Send HL7 v2 files (single messages or FHS/BHS batches) to an MLLP listener, one
    /// message at a time, and print each ACK.
    Hl7Send {
        /// MLLP listener address.
        #[arg(long, default_value = "127.0.0.1:2575")]
        to: String,
        files: Vec<std::path::PathBuf>,
    },
    /// Follow the change feed from after a position (0 = from the start).
    Feed {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long = "kind")]
        kinds: Vec<String>,
        #[arg(long = "ward")]
        wards: Vec<String>,
        #[arg(long = "mrn")]
        mrns: Vec<String>,
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

/// `println!` for the commands that stream: when stdout is closed (`hospital feed | head`)
/// the command ends quietly instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate_cmd::run(&cli.endpoint, args).await?,
        Command::Alerts { wards, departments } => {
            let channel = connect(&cli.endpoint).await?;
            let mut stream = AlertServiceClient::new(channel)
                .subscribe_alerts(SubscribeAlertsRequest {
                    ward_codes: wards,
                    department_codes: departments,
                })
                .await?
                .into_inner();
            out!("following alerts (Ctrl-C to stop)");
            while let Some(a) = stream.message().await? {
                let patient = a.patient.map(|p| p.mrn).unwrap_or_default();
                if a.kind == AlertKind::Risk as i32 {
                    out!(
                        "{} Risk       {:<8} ward {:<5} bed {:<8} {} v{} {:>5.1}%  {}",
                        a.raised_at.map(|t| t.to_string()).unwrap_or_default(),
                        patient,
                        a.ward_code,
                        a.bed_code,
                        a.model,
                        a.model_version,
                        a.probability * 100.0,
                        a.response
                    );
                    continue;
                }
                out!(
                    "{} {:<10} {:<8} ward {:<5} bed {:<8} NEWS2 {:>2} {:?} (was {:?})  {}",
                    a.raised_at.map(|t| t.to_string()).unwrap_or_default(),
                    format!("{:?}", AlertKind::try_from(a.kind).unwrap_or_default()),
                    patient,
                    a.ward_code,
                    a.bed_code,
                    a.score,
                    RiskBand::try_from(a.band).unwrap_or_default(),
                    RiskBand::try_from(a.previous_band).unwrap_or_default(),
                    a.response
                );
            }
        }
        Command::Scores { wards, top } => {
            let channel = connect(&cli.endpoint).await?;
            let scores = AlertServiceClient::new(channel)
                .get_scores(GetScoresRequest { ward_codes: wards })
                .await?
                .into_inner()
                .scores;
            let mut scores = scores;
            scores.sort_by_key(|s| std::cmp::Reverse(s.score));
            scores.truncate(top.unwrap_or(usize::MAX));
            for s in scores {
                out!(
                    "{:<10} ward {:<5} bed {:<8} NEWS2 {:>2} {:?}{}",
                    s.patient.map(|p| p.mrn).unwrap_or_default(),
                    s.ward_code,
                    s.bed_code,
                    s.score,
                    RiskBand::try_from(s.band).unwrap_or_default(),
                    if s.missing_parameters.is_empty() {
                        String::new()
                    } else {
                        format!("  (missing: {})", s.missing_parameters.join(", "))
                    }
                );
            }
        }
        Command::Risk {
            after,
            wards,
            high,
            factors,
        } => {
            let channel = connect(&cli.endpoint).await?;
            let after = match after {
                Some(a) => a,
                None => {
                    CensusServiceClient::new(channel.clone())
                        .get_census(GetCensusRequest::default())
                        .await?
                        .into_inner()
                        .position
                }
            };
            let mut stream = ChangeFeedServiceClient::new(channel)
                .subscribe(SubscribeRequest {
                    after_position: after,
                    kinds: vec!["risk_score".into()],
                    ward_codes: wards,
                    patient_mrns: vec![],
                })
                .await?
                .into_inner();
            out!("following risk scores after position {after} (Ctrl-C to stop)");
            while let Some(c) = stream.message().await? {
                let e = c.event.unwrap_or_default();
                let Some(hospital_proto::events::clinical_event::Payload::RiskScore(r)) = e.payload else {
                    continue;
                };
                let is_high = r.probability >= r.threshold;
                if high && !is_high {
                    continue;
                }
                let top: Vec<String> = r
                    .top_factors
                    .iter()
                    .take(factors)
                    .map(|f| format!("{} {:+.2}", f.feature, f.contribution))
                    .collect();
                out!(
                    "{} {:<10} ward {:<5} {:<17} v{:<2} {:>5.1}% {:<4}{} [{}]",
                    e.occurred_at.map(|t| t.to_string()).unwrap_or_default(),
                    e.patient.map(|p| p.mrn).unwrap_or_default(),
                    r.ward_code,
                    r.model,
                    r.model_version,
                    r.probability * 100.0,
                    if is_high { "HIGH" } else { "" },
                    if r.alert { " ALERT" } else { "" },
                    top.join(", ")
                );
            }
        }
        Command::Forecast {
            ml,
            series,
            departments,
            days,
        } => {
            use hospital_proto::ml::{forecast_service_client::ForecastServiceClient, DemandSeries, ForecastRequest};
            let series = match series.as_str() {
                "ed-arrivals" => DemandSeries::EdArrivals,
                "admissions" => DemandSeries::Admissions,
                other => anyhow::bail!("--series: ed-arrivals or admissions, got {other:?}"),
            };
            let mut stream = ForecastServiceClient::new(connect(&ml).await?)
                .forecast(ForecastRequest {
                    series: series as i32,
                    department_codes: departments,
                    horizon_days: days,
                })
                .await?
                .into_inner();
            while let Some(f) = stream.message().await? {
                out!(
                    "{} {} ({} on {} days to {}):",
                    f.department_code,
                    if series == DemandSeries::EdArrivals {
                        "ED arrivals"
                    } else {
                        "admissions"
                    },
                    f.method,
                    f.history_days,
                    f.last_observed_date
                );
                out!("  {:<10} {:>5} {:>7} {:>15}", "date", "ahead", "mean", "80% interval");
                for p in f.points {
                    out!(
                        "  {:<10} {:>5} {:>7.1} {:>7.1} - {:<7.1}",
                        p.date,
                        p.days_ahead,
                        p.mean,
                        p.lower,
                        p.upper
                    );
                }
            }
        }
        Command::Staffing {
            ml,
            ratio,
            wards,
            days,
            eight_hour,
        } => {
            use hospital_proto::ml::{forecast_service_client::ForecastServiceClient, ShiftPattern, StaffingRequest};
            let plan = ForecastServiceClient::new(connect(&ml).await?)
                .plan_staffing(StaffingRequest {
                    ward_codes: wards,
                    patients_per_nurse: ratio,
                    shifts: if eight_hour {
                        ShiftPattern::EightHour
                    } else {
                        ShiftPattern::TwelveHour
                    } as i32,
                    horizon_days: days,
                })
                .await?
                .into_inner();
            out!(
                "staffing at 1 nurse per {ratio} patients, as of {}",
                plan.as_of.map(|t| t.to_string()).unwrap_or_default()
            );
            out!(
                "{:<6} {:<20} {:<6} {:>4} {:>8} {:>9} {:>7} {:>7} {:>10}",
                "ward",
                "shift starts",
                "shift",
                "beds",
                "census",
                "80%",
                "nurses",
                "(upper)",
                "P(>beds)"
            );
            for s in plan.shifts {
                let starts = s.starts_at.map(|t| t.to_string()).unwrap_or_default();
                out!(
                    "{:<6} {:<20} {:<6} {:>4} {:>8.1} {:>4}-{:<4} {:>7} {:>7} {:>9.1}%",
                    s.ward_code,
                    starts.get(..16).unwrap_or(&starts),
                    s.shift,
                    s.beds,
                    s.expected_census,
                    s.census_lower,
                    s.census_upper,
                    s.nurses_expected,
                    s.nurses_upper,
                    s.p_over_beds * 100.0
                );
            }
            for n in plan.notes {
                out!("  {n}");
            }
        }
        Command::Census { watch, departments } => {
            let channel = connect(&cli.endpoint).await?;
            let mut client = CensusServiceClient::new(channel);
            let req = GetCensusRequest {
                department_codes: departments,
            };
            if watch {
                let mut stream = client.watch_census(req).await?.into_inner();
                while let Some(u) = stream.message().await? {
                    match u.update {
                        Some(census_update::Update::Snapshot(c)) => print_census(&c),
                        Some(census_update::Update::Ward(w)) => out!(
                            "[{}] ward {:<5} {:>3}/{:<3} occupied, {:>3} available, {:>2} blocked",
                            u.position,
                            w.ward_code,
                            w.occupied,
                            w.beds,
                            w.available,
                            w.blocked
                        ),
                        Some(census_update::Update::EdArrival(p)) => out!(
                            "[{}] ED   {} encounter {} acuity {}",
                            u.position,
                            p.patient.map(|p| p.mrn).unwrap_or_default(),
                            p.encounter_id,
                            p.acuity
                        ),
                        Some(census_update::Update::EdDepartedEncounterId(e)) => {
                            out!("[{}] ED   encounter {e} left the department", u.position)
                        }
                        None => {}
                    }
                }
            } else {
                print_census(&client.get_census(req).await?.into_inner());
            }
        }
        Command::Feed {
            after,
            kinds,
            wards,
            mrns,
        } => {
            let channel = connect(&cli.endpoint).await?;
            let mut stream = ChangeFeedServiceClient::new(channel)
                .subscribe(SubscribeRequest {
                    after_position: after,
                    kinds,
                    ward_codes: wards,
                    patient_mrns: mrns,
                })
                .await?
                .into_inner();
            while let Some(c) = stream.message().await? {
                let e = c.event.unwrap_or_default();
                out!(
                    "{:>10} {:<26} {:<12} {:<10} {}",
                    c.position,
                    c.kind,
                    e.source_system,
                    e.patient.map(|p| p.mrn).unwrap_or_default(),
                    e.event_id
                );
            }
        }
        Command::Hl7Send { to, files } => hl7_send(&to, &files).await?,
        Command::Load {
            source,
            path,
            batch_size,
            checkpoint,
            restart,
            give_up_after,
        } => {
            let checkpoint = checkpoint.unwrap_or_else(|| hospital_client::checkpoint::default_path(source, &path));
            if restart {
                let _ = std::fs::remove_file(&checkpoint);
            }
            let give_up_after = give_up_after.map(std::time::Duration::from_secs);
            load(&cli.endpoint, source, path, batch_size, checkpoint, give_up_after).await?;
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
                        out!(
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
                    out!(
                        "watermark {}  staged position {}  last run {}",
                        s.watermark,
                        s.staged_position,
                        s.last_run_id
                    );
                    let mut tables: Vec<_> = s.table_rows.into_iter().collect();
                    tables.sort();
                    out!("  rows stored per table (versions not merged away yet included):");
                    for (table, rows) in tables {
                        out!("  {table:<28} {rows:>10}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Prints a sender's notices (waiting for the platform, back again) on stderr, above
/// `bar`.
pub(crate) fn notice_above(bar: &ProgressBar) -> hospital_client::sender::NoticeHook {
    let bar = bar.clone();
    std::sync::Arc::new(move |notice| bar.suspend(|| eprintln!("{notice}")))
}

async fn connect(endpoint: &str) -> anyhow::Result<tonic::transport::Channel> {
    hospital_client::connect(endpoint)
        .await
        .with_context(|| format!("connect to {endpoint}"))
}

fn print_census(c: &Census) {
    println!("census at staging position {}: {} inpatients", c.position, c.inpatients);
    println!(
        "  {:<6} {:<6} {:<28} {:>5} {:>9} {:>10} {:>8}",
        "dept", "ward", "name", "beds", "occupied", "available", "blocked"
    );
    for w in &c.wards {
        println!(
            "  {:<6} {:<6} {:<28} {:>5} {:>9} {:>10} {:>8}",
            w.department_code, w.ward_code, w.ward_name, w.beds, w.occupied, w.available, w.blocked
        );
    }
    for d in &c.departments {
        println!(
            "  {:<6} {:<35} {:>5} {:>9} {:>10}",
            d.department_code, d.department_name, d.beds, d.occupied, d.available
        );
    }
    println!("  ED waiting: {}", c.ed_waiting.len());
    for p in &c.ed_waiting {
        println!(
            "    {:<10} encounter {:<10} acuity {} waiting {} min",
            p.patient.as_ref().map(|p| p.mrn.as_str()).unwrap_or_default(),
            p.encounter_id,
            if p.acuity == 0 {
                "-".to_string()
            } else {
                p.acuity.to_string()
            },
            p.waiting_minutes
        );
    }
}

/// Sends every message of `files` over MLLP and prints the ACK code and text of each.
async fn hl7_send(to: &str, files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(to)
        .await
        .with_context(|| format!("connect to MLLP listener {to}"))?;
    let (mut sent, mut accepted) = (0usize, 0usize);
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
        for (i, parsed) in hospital_sources::hl7v2::parse_file(&bytes).into_iter().enumerate() {
            let msg = match parsed {
                Ok(m) => m,
                Err(e) => {
                    println!("{} message {i}: not sent: {e}", file.display());
                    continue;
                }
            };
            let mut frame = vec![0x0B];
            frame.extend_from_slice(msg.to_hl7_string().as_bytes());
            frame.extend_from_slice(&[0x1C, 0x0D]);
            stream.write_all(&frame).await?;
            sent += 1;
            // Read one framed ACK.
            let mut ack = Vec::new();
            let mut byte = [0u8; 1];
            while !ack.ends_with(&[0x1C, 0x0D]) {
                if stream.read(&mut byte).await? == 0 {
                    anyhow::bail!("listener closed the connection after {sent} messages");
                }
                ack.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&ack);
            let msa = text
                .split(['\r', '\n'])
                .find(|l| l.starts_with("MSA"))
                .unwrap_or("")
                .to_string();
            let fields: Vec<&str> = msa.split('|').collect();
            let code = fields.get(1).copied().unwrap_or("?");
            accepted += usize::from(code == "AA");
            let err = text
                .split(['\r', '\n'])
                .find(|l| l.starts_with("ERR"))
                .map(|l| format!("  {l}"))
                .unwrap_or_default();
            println!(
                "{} {} {}^{} -> {code} (MSA-2 {}){err}",
                file.display(),
                msg.control_id(),
                msg.message_type(),
                msg.trigger_event().unwrap_or(""),
                fields.get(2).copied().unwrap_or("")
            );
        }
    }
    println!("{sent} messages sent, {accepted} accepted (AA)");
    Ok(())
}

/// Streams an extract to the platform with a progress bar, then prints a summary.
async fn load(
    endpoint: &str,
    source: hospital_client::load::Source,
    path: std::path::PathBuf,
    batch_size: usize,
    checkpoint: std::path::PathBuf,
    give_up_after: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    use hospital_client::checkpoint::{fingerprint_inputs, load_resumable, Checkpoint};
    let fingerprint = fingerprint_inputs(source, &path).with_context(|| format!("reading {}", path.display()))?;
    let (checkpoint, why) = Checkpoint::open(&checkpoint, fingerprint);
    if let Some(why) = why {
        println!("{why}");
    }
    let resumed = checkpoint.acknowledged;
    if resumed > 0 {
        println!(
            "resuming: {resumed} events were acknowledged by an earlier run ({}); sending the rest (--restart sends everything)",
            checkpoint.path.display()
        );
    }
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} events acknowledged  {per_sec}  {msg}")
            .context("progress template")?,
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut rejected = 0usize;
    let opts = SenderOptions {
        endpoint: endpoint.into(),
        batch_size,
        give_up_after,
        on_notice: Some(notice_above(&bar)),
        ..Default::default()
    };
    let outcome = load_resumable(source, path, checkpoint, &opts, |ack| {
        rejected += ack.rejections.len();
        bar.inc((ack.committed_event_ids.len() + ack.rejections.len()) as u64);
        bar.set_message(format!("{rejected} rejected"));
    })
    .await?;
    bar.finish();
    print!(
        "{}",
        hospital_client::load::summary_text(
            source,
            &outcome.read,
            outcome.events,
            outcome.resumed_after,
            &outcome.sent,
        )
    );
    Ok(())
}
