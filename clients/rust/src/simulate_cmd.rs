//! `hospital simulate`: runs the hospital simulator and streams its events to the
//! platform, either a past period at full speed or live at the wall clock. A run keeps a
//! checkpoint, so that one stopped half way resumes after what was acknowledged.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hospital_client::checkpoint::{default_simulation_path, fingerprint_simulation, simulate_resumable, Checkpoint};
use hospital_client::sender::{Pace, SenderOptions};
use hospital_client::simulate::{count_by_kind, SimOptions, SimStats, Simulator};
use indicatif::{ProgressBar, ProgressStyle};

const DAY: i64 = 86_400;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Seed: the same seed and period give the same events, ids included.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Start the period this many days before now (at midnight UTC). Without it the
    /// period starts on a fixed date (2026-01-05), so a seed always gives the same
    /// events; with --live, it starts now.
    #[arg(long)]
    days_ago: Option<i64>,
    /// Length of the period in days (default: up to now with --days-ago, else 14).
    #[arg(long)]
    days: Option<i64>,
    /// Keep going after the period (or from now) in real time: each event is sent when
    /// the wall clock reaches it. Stop with Ctrl-C.
    #[arg(long)]
    live: bool,
    /// Emergency arrivals on an average day (the hourly and weekly pattern is a real
    /// ED's).
    #[arg(long, default_value_t = 90.0)]
    ed_arrivals_per_day: f64,
    /// Planned surgical admissions per weekday.
    #[arg(long, default_value_t = 6.0)]
    electives_per_weekday: f64,
    /// Days the hospital runs before the period without sending, so that it starts with
    /// full wards; at the start it sends a go-live snapshot (registrations, the stays of
    /// the patients in hospital, bed states). 0 starts with an empty hospital.
    #[arg(long, default_value_t = 14)]
    warm_up_days: u32,
    /// Prefix of the source system names (`sim` -> sim-adt, sim-lis, ...).
    #[arg(long, default_value = "sim")]
    source_prefix: String,
    /// Events per IngestRequest.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Requests in flight on the stream.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Send at most this many events per second (a past period at a chosen rate).
    #[arg(long)]
    rate: Option<f64>,
    /// Simulate and print what happened, without sending anything.
    #[arg(long, conflicts_with = "live")]
    dry_run: bool,
    /// Where progress is kept, so that a run stopped half way resumes after what was
    /// acknowledged when started again with the same seed, start, warm-up and rates
    /// (default: .hospital/checkpoints/simulate-<hash of the source prefix>).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Ignore an earlier run's progress and send everything.
    #[arg(long)]
    restart: bool,
    /// Stop when the platform has been unavailable this many seconds (default: wait
    /// until interrupted).
    #[arg(long, value_name = "SECS")]
    give_up_after: Option<u64>,
}

pub async fn run(endpoint: &str, args: SimulateArgs) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let defaults = SimOptions::default();
    let start = match (args.days_ago, args.live) {
        (Some(days), _) => (now - days * DAY).div_euclid(DAY) * DAY,
        // Live without a past: the hospital opens now (its wards fill over the first days).
        (None, true) => now,
        (None, false) => defaults.start_secs,
    };
    let mut end = match (args.days, args.days_ago) {
        (Some(days), _) => start + days * DAY,
        (None, Some(_)) => now,
        (None, None) => start + 14 * DAY,
    };
    if !args.live && end > now {
        // Nothing is sent from the future: the platform would refuse it.
        end = now;
    }
    let opts = SimOptions {
        seed: args.seed,
        start_secs: start,
        end_secs: (!args.live).then_some(end),
        ed_arrivals_per_day: args.ed_arrivals_per_day,
        electives_per_weekday: args.electives_per_weekday,
        source_prefix: args.source_prefix,
        warm_up_days: args.warm_up_days,
    };
    anyhow::ensure!(start < end || args.live, "the period is empty (it starts after now?)");
    println!(
        "simulating from {} {} ({} ED arrivals a day, seed {})",
        date(start),
        if args.live {
            "and then live".to_string()
        } else {
            format!("to {}", date(end))
        },
        opts.ed_arrivals_per_day,
        opts.seed
    );
    if args.dry_run {
        let mut sim = Simulator::new(opts);
        let counts = count_by_kind(sim.by_ref());
        print_stats(&sim.stats());
        for (kind, n) in counts {
            println!("  {kind:<26} {n:>9}");
        }
        return Ok(());
    }
    let checkpoint_path = args
        .checkpoint
        .unwrap_or_else(|| default_simulation_path(&opts.source_prefix));
    if args.restart {
        let _ = std::fs::remove_file(&checkpoint_path);
    }
    let (checkpoint, why) = Checkpoint::open(&checkpoint_path, fingerprint_simulation(&opts));
    if let Some(why) = why {
        println!("{why}");
    }
    if checkpoint.acknowledged > 0 {
        println!(
            "resuming: the first {} events were acknowledged by an earlier run ({}); simulating them again without sending, then sending the rest (--restart sends everything)",
            checkpoint.acknowledged,
            checkpoint_path.display()
        );
    }
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} events acknowledged  {per_sec}  {msg}")
            .context("progress template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let sender = SenderOptions {
        endpoint: endpoint.into(),
        batch_size: args.batch_size,
        max_in_flight: args.in_flight,
        rate: args.rate,
        give_up_after: args.give_up_after.map(Duration::from_secs),
        on_notice: Some(crate::notice_above(&bar)),
        ..Default::default()
    };
    let pace = if args.live { Pace::WallClock } else { Pace::FullSpeed };
    let mut caught_up = false;
    let inspect = move |e: &hospital_client::proto::events::ClinicalEvent| {
        let at = e.occurred_at.as_ref().map_or(0, |t| t.seconds);
        if pace == Pace::WallClock && !caught_up && at > wall_clock_secs() {
            caught_up = true;
            println!("caught up with the wall clock: the past is sent, live from now on");
        }
    };
    let mut rejected = 0usize;
    let outcome = simulate_resumable(opts, pace, checkpoint, &sender, inspect, |ack| {
        rejected += ack.rejections.len();
        bar.inc((ack.committed_event_ids.len() + ack.rejections.len()) as u64);
        bar.set_message(format!(
            "{rejected} rejected, staging position {}",
            ack.committed_position
        ));
    })
    .await?;
    bar.finish();
    let (report, stats) = (outcome.sent, outcome.stats);
    println!(
        "simulated {} events, sent {} in {} requests over {:.1?}: {} committed (staging position {}), {} rejected, {} reconnects",
        stats.events,
        stats.events.saturating_sub(outcome.resumed_after),
        report.requests,
        report.elapsed,
        report.committed,
        report.last_position,
        report.rejections.len(),
        report.reconnects
    );
    print_stats(&stats);
    for r in report.rejections.iter().take(20) {
        for v in &r.violations {
            println!("  rejected {:?}: {}: {}", r.event_id, v.field, v.description);
        }
    }
    Ok(())
}

fn print_stats(stats: &SimStats) {
    println!(
        "simulated: {} ED arrivals ({} sent home from the ED), {} emergency and {} elective admissions ({} electives cancelled for want of a bed), {} boarded in the ED for a bed (mean {:.0} min), {} transfers, {} deteriorations, {} ICU admissions, {} deaths, {} discharges; at most {} beds occupied; {} patients in hospital at the end",
        stats.ed_arrivals,
        stats.ed_discharges,
        stats.emergency_admissions,
        stats.elective_admissions,
        stats.electives_cancelled,
        stats.boarded,
        stats.boarding_minutes as f64 / stats.boarded.max(1) as f64,
        stats.transfers,
        stats.deteriorations,
        stats.icu_admissions,
        stats.deaths,
        stats.discharges,
        stats.max_occupied_beds,
        stats.in_hospital_at_end
    );
}

fn wall_clock_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| secs.to_string())
}
