//! Resumable loads: a checkpoint file records how many events of a load the platform
//! has acknowledged, so that a load stopped half way (killed, the platform down for
//! longer than the sender retries) resumes after them instead of starting again.
//!
//! Acknowledgements come back in request order, so the acknowledged events are always a
//! prefix of the load; the checkpoint is that prefix's length plus a fingerprint of
//! the load (FNV-1a over every event id in order), so a checkpoint is only used for the
//! very same events: files changed since, or another source, start from the beginning.
//! The file is replaced atomically (write, then rename) after each acknowledgement and
//! removed when the load completes, so a completed load run again sends everything
//! again (and the platform absorbs the repeats).
//!
//! Resuming is safe because sending is at-least-once: requests in flight when the load
//! stopped may have been committed without their ack arriving; they are sent again and
//! absorbed by event id.

use std::io::Write;
use std::path::{Path, PathBuf};

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::IngestResponse;

use crate::sender::{send_events, SendError, SendReport, SenderOptions};

/// Identity of a load: its events' ids, in order.
pub fn fingerprint(events: &[ClinicalEvent]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for e in events {
        for b in e
            .source_system
            .bytes()
            .chain([0])
            .chain(e.event_id.bytes())
            .chain([0xff])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// Progress of one load, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub fingerprint: u64,
    pub total: u64,
    /// Events acknowledged (committed or rejected), a prefix of the load.
    pub acknowledged: u64,
}

impl Checkpoint {
    /// The checkpoint at `path` for a load of `events`: the saved progress if the file
    /// belongs to these events, else a fresh start (and why the file was not used).
    pub fn open(path: impl Into<PathBuf>, events: &[ClinicalEvent]) -> (Self, Option<String>) {
        let path = path.into();
        let fresh = Checkpoint {
            fingerprint: fingerprint(events),
            total: events.len() as u64,
            acknowledged: 0,
            path,
        };
        let text = match std::fs::read_to_string(&fresh.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (fresh, None),
            Err(e) => return (fresh.clone(), Some(format!("{}: {e}", fresh.path.display()))),
        };
        match parse(&text) {
            Some((fp, total, acked)) if fp == fresh.fingerprint && total == fresh.total && acked <= total => (
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
                "fingerprint={:016x}\ntotal={}\nacknowledged={}\n",
                self.fingerprint, self.total, self.acknowledged
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
}

/// Sends the events of `checkpoint`'s load that it does not record as acknowledged,
/// saving progress after every acknowledgement; on success the checkpoint is removed.
/// A failure to save progress is logged and does not stop the load.
pub async fn send_resumable(
    events: Vec<ClinicalEvent>,
    mut checkpoint: Checkpoint,
    opts: &SenderOptions,
    mut on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    let skip = checkpoint.acknowledged as usize;
    let rest: Vec<ClinicalEvent> = events.into_iter().skip(skip).collect();
    let remaining = rest.len() as u64;
    let batch = opts.batch_size.max(1) as u64;
    let mut acks = 0u64;
    let report = send_events(rest, opts, |ack| {
        // Requests are `batch` events each, in order, and acks come in request order.
        acks += 1;
        let acknowledged = skip as u64 + (acks * batch).min(remaining);
        if let Err(e) = checkpoint.save(acknowledged) {
            tracing::warn!(path = %checkpoint.path.display(), error = %e, "could not save the load checkpoint");
        }
        on_ack(ack);
    })
    .await?;
    if let Err(e) = checkpoint.finish() {
        tracing::warn!(error = %e, "could not remove the load checkpoint");
    }
    Ok(report)
}

fn parse(text: &str) -> Option<(u64, u64, u64)> {
    let mut fp = None;
    let mut total = None;
    let mut acked = None;
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "fingerprint" => fp = u64::from_str_radix(v, 16).ok(),
            "total" => total = v.parse().ok(),
            "acknowledged" => acked = v.parse().ok(),
            _ => return None,
        }
    }
    Some((fp?, total?, acked?))
}

/// Default checkpoint file of a load of `source` from `data`: under `.hospital/checkpoints`
/// of the working directory, named after the source and the data's absolute path.
pub fn default_path(source: &str, data: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let key = absolute
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    PathBuf::from(".hospital/checkpoints").join(format!("load-{source}-{key:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(ids: &[&str]) -> Vec<ClinicalEvent> {
        ids.iter()
            .map(|id| ClinicalEvent {
                event_id: id.to_string(),
                source_system: "s".into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn saved_progress_is_used_only_for_the_same_events() {
        let dir = std::env::temp_dir().join(format!("hospital-checkpoint-{}", std::process::id()));
        let path = dir.join("cp");
        let evs = events(&["a", "b", "c"]);
        let (mut cp, why) = Checkpoint::open(&path, &evs);
        assert_eq!((cp.acknowledged, why), (0, None));
        cp.save(2).unwrap();
        let (again, why) = Checkpoint::open(&path, &evs);
        assert_eq!((again.acknowledged, again.total, why), (2, 3, None));
        // Other events (a file changed): start again, and say why.
        let (other, why) = Checkpoint::open(&path, &events(&["a", "b", "x"]));
        assert_eq!(other.acknowledged, 0);
        assert!(why.unwrap().contains("other data"));
        std::fs::write(&path, "garbage").unwrap();
        let (bad, why) = Checkpoint::open(&path, &evs);
        assert_eq!(bad.acknowledged, 0);
        assert!(why.unwrap().contains("not a load checkpoint"));
        again.finish().unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprint_depends_on_ids_and_order() {
        assert_ne!(fingerprint(&events(&["a", "b"])), fingerprint(&events(&["b", "a"])));
        assert_ne!(fingerprint(&events(&["ab"])), fingerprint(&events(&["a", "b"])));
        assert_eq!(fingerprint(&events(&["a", "b"])), fingerprint(&events(&["a", "b"])));
    }
}
