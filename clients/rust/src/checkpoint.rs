//! Resumable loads: a checkpoint file records how many events of a load the platform
//! has acknowledged, so that a load stopped half way (killed, the platform down for
//! longer than the sender retries) resumes after them instead of starting again.
//!
//! Acknowledgements come back in request order, so the acknowledged events are always a
//! prefix of the load. The checkpoint is that prefix's length plus a fingerprint of the
//! input ([`fingerprint_inputs`]): the source and every file's path, size and
//! modification time, because the same files map to the same events in the same order.
//! A checkpoint whose fingerprint does not match (files changed, another source) is not
//! used. The file is replaced atomically (write, then rename) after each
//! acknowledgement and removed when the load completes, so a completed load run again
//! sends everything again (and the platform absorbs the repeats).
//!
//! Resuming is safe because sending is at-least-once: requests in flight when the load
//! stopped may have been committed without their ack arriving; they are sent again and
//! absorbed by event id.

use std::io::Write;
use std::path::{Path, PathBuf};

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::IngestResponse;
use tokio::sync::mpsc;

use crate::load::{self, ReadError, Report, Source};
use crate::sender::{send_batches, SendError, SendReport, SenderOptions};

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
                    "{} belongs to other data (the files changed?); starting from the beginning",
                    fresh.path.display()
                );
                (fresh, Some(why))
            }
            None => {
                let why = format!(
                    "{} is not a load checkpoint; starting from the beginning",
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

    /// Saves progress after `acks` acknowledged requests of `batch` events each, sent
    /// after the first `skipped` (every request but the last is full, and after the last
    /// the load is complete); a failure to save is logged and the load goes on.
    fn record(&mut self, skipped: u64, acks: u64, batch: u64) {
        if let Err(e) = self.save(skipped + acks * batch) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not save the load checkpoint");
        }
    }

    fn done(self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "could not remove the load checkpoint");
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

/// Why a load from files stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the files: {0}")]
    Read(ReadError),
    #[error("{0} (progress is kept: run the same load again to resume)")]
    Send(SendError),
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
    mut on_ack: impl FnMut(&IngestResponse),
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
    let mut acks = 0u64;
    let sent = send_batches(rx, opts, |ack| {
        acks += 1;
        checkpoint.record(skip, acks, batch as u64);
        on_ack(ack);
    })
    .await;
    let read = reader
        .await
        .map_err(|e| LoadError::Read(Box::new(e)))?
        .map_err(LoadError::Read)?;
    let sent = sent.map_err(LoadError::Send)?;
    checkpoint.done();
    Ok(LoadOutcome {
        sent,
        read: read.0,
        resumed_after: skip,
        events: read.1,
    })
}

/// Default checkpoint file of a load of `source` from `data`: under `.hospital/checkpoints`
/// of the working directory, named after the source and the data's absolute path.
pub fn default_path(source: Source, data: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let key = Fnv::new().bytes(absolute.to_string_lossy().bytes()).0;
    PathBuf::from(".hospital/checkpoints").join(format!("load-{}-{key:016x}", source.name()))
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
        assert!(why.unwrap().contains("not a load checkpoint"));
        again.finish().unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
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
