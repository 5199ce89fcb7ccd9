//! Resumable loads and simulations: a checkpoint file records how many events of a
//! run the platform has acknowledged, so that a run stopped half way (killed, the
//! platform down for longer than `--give-up-after`) resumes after them instead of
//! starting again.
//!
//! Acknowledgements come back in request order, so the acknowledged events are always a
//! prefix of the run. The checkpoint is that prefix's length plus a fingerprint of what
//! determines the events and their order: for a load from files
//! ([`fingerprint_inputs`]) the source and every file's path, size and modification
//! time; for a simulation ([`fingerprint_simulation`]) the parameters of the simulated
//! hospital. A checkpoint whose fingerprint does not match (files changed, another
//! source or seed) is not used. The file is replaced atomically (write, then rename)
//! after each acknowledgement and removed when the run completes, so a completed run
//! started again sends everything again (and the platform absorbs the repeats).
//!
//! Resuming is safe because sending is at-least-once: requests in flight when the run
//! stopped may have been committed without their ack arriving; they are sent again and
//! absorbed by event id.

use std::io::Write;
use std::path::{Path, PathBuf};

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::IngestResponse;
use tokio::sync::mpsc;

use crate::load::{self, ReadError, Report, Source};
use crate::sender::{feed, send_counted, Pace, SendError, SendReport, SenderOptions};
use crate::simulate::{SimOptions, SimStats, Simulator};

/// FNV-1a, 64 bits: stable across builds and Rust versions (unlike `DefaultHasher`).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: impl IntoIterator<Item = u8>) -> Self {
        for b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that "ab" + "c" differs from "a" + "bc".
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        self
    }
}

/// Identity of a load from files: the source, and the path (relative to `path`), size
/// and modification time of every file under `path`, in name order.
pub fn fingerprint_inputs(source: Source, path: &Path) -> std::io::Result<u64> {
    let mut h = Fnv::new().bytes(source.name().bytes());
    for f in load::files(path, &[])? {
        let meta = std::fs::metadata(&f)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        let name = f.strip_prefix(path).unwrap_or(&f).to_string_lossy().into_owned();
        h = h
            .bytes(name.into_bytes())
            .bytes(meta.len().to_le_bytes())
            .bytes(modified.as_nanos().to_le_bytes());
    }
    Ok(h.0)
}

/// Identity of a simulation: what shapes its events (seed, start, warm-up, rates, source
/// names). Not its end: the simulation does not look ahead, so a period that ends later
/// (another "up to now", or `--live`) begins with the same events, and a run can resume
/// into a longer period. Not the pace or rate either: they change when events go, not
/// which.
pub fn fingerprint_simulation(opts: &SimOptions) -> u64 {
    let SimOptions {
        seed,
        start_secs,
        end_secs: _,
        ed_arrivals_per_day,
        electives_per_weekday,
        source_prefix,
        warm_up_days,
    } = opts;
    Fnv::new()
        .bytes("simulate".bytes())
        .bytes(seed.to_le_bytes())
        .bytes(start_secs.to_le_bytes())
        .bytes(ed_arrivals_per_day.to_bits().to_le_bytes())
        .bytes(electives_per_weekday.to_bits().to_le_bytes())
        .bytes(source_prefix.bytes())
        .bytes(warm_up_days.to_le_bytes())
        .0
}

/// Progress of one load, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub fingerprint: u64,
    /// Events acknowledged (committed or rejected), a prefix of the load.
    pub acknowledged: u64,
}

impl Checkpoint {
    /// The checkpoint at `path` for a load with `fingerprint`: the saved progress if the
    /// file belongs to this load, else a fresh start (and why the file was not used).
    pub fn open(path: impl Into<PathBuf>, fingerprint: u64) -> (Self, Option<String>) {
        let fresh = Checkpoint {
            path: path.into(),
            fingerprint,
            acknowledged: 0,
        };
        let text = match std::fs::read_to_string(&fresh.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (fresh, None),
            Err(e) => {
                let why = format!("{}: {e}; starting from the beginning", fresh.path.display());
                return (fresh, Some(why));
            }
        };
        match parse(&text) {
            Some((fp, acked)) if fp == fingerprint => (
                Checkpoint {
                    acknowledged: acked,
                    ..fresh
                },
                None,
            ),
            Some(_) => {
                let why = format!(
                    "{} belongs to other data (other files, or other simulation parameters); starting from the beginning",
                    fresh.path.display()
                );
                (fresh, Some(why))
            }
            None => {
                let why = format!(
                    "{} is not a checkpoint; starting from the beginning",
                    fresh.path.display()
                );
                (fresh, Some(why))
            }
        }
    }

    /// Records `acknowledged` events durably (write to a temporary file, then rename).
    pub fn save(&mut self, acknowledged: u64) -> std::io::Result<()> {
        self.acknowledged = acknowledged;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            write!(
                f,
                "fingerprint={:016x}\nacknowledged={}\n",
                self.fingerprint, self.acknowledged
            )?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// The load is complete: the checkpoint goes.
    pub fn finish(self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Saves progress (`acknowledged` events); a failure to save is logged and the run
    /// goes on.
    fn record(&mut self, acknowledged: u64) {
        if let Err(e) = self.save(acknowledged) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not save the checkpoint");
        }
    }

    fn done(self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "could not remove the checkpoint");
        }
    }
}

fn parse(text: &str) -> Option<(u64, u64)> {
    let mut fp = None;
    let mut acked = None;
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "fingerprint" => fp = u64::from_str_radix(v, 16).ok(),
            "acknowledged" => acked = v.parse().ok(),
            _ => return None,
        }
    }
    Some((fp?, acked?))
}

/// Why a resumable run stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the files: {0}")]
    Read(ReadError),
    #[error("the simulation stopped: {0}")]
    Simulation(String),
    #[error("{0} (progress is kept: run the same command again to resume)")]
    Send(SendError),
}

/// Sends what `source` yields (the events after the prefix `checkpoint` records as
/// acknowledged), saving progress after every acknowledgement.
pub async fn send_checkpointed(
    source: mpsc::Receiver<Vec<ClinicalEvent>>,
    checkpoint: &mut Checkpoint,
    opts: &SenderOptions,
    mut on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    let skip = checkpoint.acknowledged;
    let mut acknowledged = 0u64;
    send_counted(source, opts, |ack, events| {
        acknowledged += events as u64;
        checkpoint.record(skip + acknowledged);
        on_ack(ack);
    })
    .await
}

/// What a load from files did.
#[derive(Debug)]
pub struct LoadOutcome {
    pub sent: SendReport,
    pub read: Report,
    /// Events skipped because an earlier run had them acknowledged.
    pub resumed_after: u64,
    /// Events the files mapped to, the skipped ones included.
    pub events: u64,
}

/// Reads `path` as `source` and sends its events while reading, in requests of
/// `opts.batch_size` with a bounded read-ahead, skipping the prefix `checkpoint` records
/// as acknowledged and saving progress after every acknowledgement. On success the
/// checkpoint is removed.
pub async fn load_resumable(
    source: Source,
    path: PathBuf,
    mut checkpoint: Checkpoint,
    opts: &SenderOptions,
    on_ack: impl FnMut(&IngestResponse),
) -> Result<LoadOutcome, LoadError> {
    let skip = checkpoint.acknowledged;
    let batch = opts.batch_size.max(1);
    let (tx, rx) = mpsc::channel::<Vec<ClinicalEvent>>(opts.max_in_flight.max(1));
    // Mapping is blocking work: its own thread, handing over full requests.
    let reader = tokio::task::spawn_blocking(move || {
        let mut seen = 0u64;
        let mut pending = Vec::with_capacity(batch);
        let read = load::read(source, &path, &mut |e| {
            seen += 1;
            if seen <= skip || tx.is_closed() {
                return;
            }
            pending.push(e);
            if pending.len() == batch {
                let _ = tx.blocking_send(std::mem::replace(&mut pending, Vec::with_capacity(batch)));
            }
        });
        if !pending.is_empty() {
            let _ = tx.blocking_send(pending);
        }
        read.map(|r| (r, seen))
    });
    let sent = send_checkpointed(rx, &mut checkpoint, opts, on_ack)
        .await
        .map_err(LoadError::Send)?;
    let read = reader
        .await
        .map_err(|e| LoadError::Read(Box::new(e)))?
        .map_err(LoadError::Read)?;
    checkpoint.done();
    Ok(LoadOutcome {
        sent,
        read: read.0,
        resumed_after: skip,
        events: read.1,
    })
}

/// What a simulation run did.
#[derive(Debug)]
pub struct SimulateOutcome {
    pub sent: SendReport,
    /// The whole simulation's statistics, the skipped prefix included.
    pub stats: SimStats,
    /// Events skipped because an earlier run had them acknowledged.
    pub resumed_after: u64,
}

/// Runs the simulator and sends its events at `pace`, skipping the prefix `checkpoint`
/// records as acknowledged (they are simulated again, not sent) and saving progress
/// after every acknowledgement. `inspect` sees every event that goes out, on the
/// simulation's thread. On success (the period ended and all is acknowledged) the
/// checkpoint is removed; a live run only ends when it is stopped, so its checkpoint
/// stays.
pub async fn simulate_resumable(
    sim: SimOptions,
    pace: Pace,
    mut checkpoint: Checkpoint,
    opts: &SenderOptions,
    mut inspect: impl FnMut(&ClinicalEvent) + Send + 'static,
    on_ack: impl FnMut(&IngestResponse),
) -> Result<SimulateOutcome, LoadError> {
    let skip = checkpoint.acknowledged;
    let batch = opts.batch_size;
    let (tx, rx) = mpsc::channel::<Vec<ClinicalEvent>>(opts.max_in_flight.max(1));
    // The simulation is CPU work: on a blocking thread, handing batches over a bounded
    // channel (backpressure from the platform's acks reaches the simulation).
    let producer = tokio::task::spawn_blocking(move || {
        let mut simulator = Simulator::new(sim);
        let handle = tokio::runtime::Handle::current();
        let gone = tx.clone();
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let events = simulator.by_ref().skip(skip).inspect(|e| inspect(e));
        handle.block_on(async {
            // A live feed may sleep until its next event: stop as soon as the sender is gone.
            tokio::select! {
                _ = feed(events, batch, pace, tx) => {}
                _ = gone.closed() => {}
            }
        });
        simulator.stats()
    });
    let sent = send_checkpointed(rx, &mut checkpoint, opts, on_ack)
        .await
        .map_err(LoadError::Send)?;
    let stats = producer.await.map_err(|e| LoadError::Simulation(e.to_string()))?;
    checkpoint.done();
    Ok(SimulateOutcome {
        sent,
        stats,
        resumed_after: skip,
    })
}

/// Default checkpoint file of a load of `source` from `data`: under `.hospital/checkpoints`
/// of the working directory, named after the source and the data's absolute path.
pub fn default_path(source: Source, data: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let key = Fnv::new().bytes(absolute.to_string_lossy().bytes()).0;
    PathBuf::from(".hospital/checkpoints").join(format!("load-{}-{key:016x}", source.name()))
}

/// Default checkpoint file of a simulation: one per simulated hospital (its source name
/// prefix), so that a run with other parameters replaces it instead of leaving files
/// behind.
pub fn default_simulation_path(source_prefix: &str) -> PathBuf {
    let key = Fnv::new().bytes(source_prefix.bytes()).0;
    PathBuf::from(".hospital/checkpoints").join(format!("simulate-{key:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_progress_is_used_only_for_the_same_load() {
        let dir = std::env::temp_dir().join(format!("hospital-checkpoint-{}", std::process::id()));
        let path = dir.join("cp");
        let fp = 0x5eed;
        let (mut cp, why) = Checkpoint::open(&path, fp);
        assert_eq!((cp.acknowledged, why), (0, None));
        cp.save(2).unwrap();
        let (again, why) = Checkpoint::open(&path, fp);
        assert_eq!((again.acknowledged, why), (2, None));
        // Another load (a file changed): start again, and say why.
        let (other, why) = Checkpoint::open(&path, fp + 1);
        assert_eq!(other.acknowledged, 0);
        assert!(why.unwrap().contains("other data"));
        std::fs::write(&path, "garbage").unwrap();
        let (bad, why) = Checkpoint::open(&path, fp);
        assert_eq!(bad.acknowledged, 0);
        assert!(why.unwrap().contains("not a checkpoint"));
        again.finish().unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A simulation's events do not depend on where its period ends: a shorter period's
    /// events begin a longer one's (and a live feed's), which is what lets a resumed run
    /// skip the acknowledged prefix of another "up to now" or of a live run.
    #[test]
    fn simulations_resume_across_period_ends_but_not_other_parameters() {
        let day = 86_400;
        let base = SimOptions {
            end_secs: Some(SimOptions::default().start_secs + 2 * day),
            ed_arrivals_per_day: 40.0,
            warm_up_days: 2,
            ..Default::default()
        };
        let short: Vec<_> = Simulator::new(base.clone()).collect();
        let longer = SimOptions {
            end_secs: Some(SimOptions::default().start_secs + 3 * day),
            ..base.clone()
        };
        let live = SimOptions {
            end_secs: None,
            ..base.clone()
        };
        let long: Vec<_> = Simulator::new(longer.clone()).collect();
        assert!(long.len() > short.len());
        assert_eq!(&long[..short.len()], &short[..]);
        let live_events: Vec<_> = Simulator::new(live.clone()).take(long.len()).collect();
        assert_eq!(live_events, long);
        let fp = fingerprint_simulation(&base);
        assert_eq!(fp, fingerprint_simulation(&longer));
        assert_eq!(fp, fingerprint_simulation(&live));
        for other in [
            SimOptions {
                seed: 7,
                ..base.clone()
            },
            SimOptions {
                start_secs: base.start_secs + day,
                ..base.clone()
            },
            SimOptions {
                warm_up_days: 3,
                ..base.clone()
            },
            SimOptions {
                ed_arrivals_per_day: 41.0,
                ..base.clone()
            },
            SimOptions {
                electives_per_weekday: 1.0,
                ..base.clone()
            },
            SimOptions {
                source_prefix: "other".into(),
                ..base.clone()
            },
        ] {
            assert_ne!(fp, fingerprint_simulation(&other), "{other:?}");
        }
    }

    #[test]
    fn fingerprints_depend_on_source_and_files() {
        let dir = std::env::temp_dir().join(format!("hospital-inputs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.hl7"), "MSH").unwrap();
        let one = fingerprint_inputs(Source::Hl7, &dir).unwrap();
        assert_eq!(one, fingerprint_inputs(Source::Hl7, &dir).unwrap());
        assert_ne!(one, fingerprint_inputs(Source::Fhir, &dir).unwrap());
        std::fs::write(dir.join("sub/b.hl7"), "MSH").unwrap();
        let two = fingerprint_inputs(Source::Hl7, &dir).unwrap();
        assert_ne!(one, two, "a new file");
        std::fs::write(dir.join("a.hl7"), "MSH|").unwrap();
        assert_ne!(two, fingerprint_inputs(Source::Hl7, &dir).unwrap(), "a changed file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
