//! Progress reports of a run, sent to whoever asked for them (the RunWarehouseLoad
//! stream). Best effort: a receiver that is gone or full never slows or fails the
//! load; only the final `done` message waits for room, briefly.
//!
//! Owns: building `RunProgress` messages. Must not: influence the load.

use std::time::{Duration, SystemTime};

use hospital_proto::batch::RunProgress;
use tokio::sync::mpsc::{self, error::TrySendError};

/// How long the final message may wait for a full receiver.
const DONE_SEND_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Progress {
    tx: Option<mpsc::Sender<RunProgress>>,
    run_id: String,
    /// Staged events read so far in this run.
    pub read: u64,
    /// Warehouse rows written so far in this run.
    pub written: u64,
}

impl Progress {
    pub fn new(tx: Option<mpsc::Sender<RunProgress>>, run_id: &str) -> Self {
        Self {
            tx,
            run_id: run_id.to_string(),
            read: 0,
            written: 0,
        }
    }

    fn message(&self, stage: &str, message: String, from: u64, to: u64, done: bool) -> RunProgress {
        RunProgress {
            run_id: self.run_id.clone(),
            stage: stage.to_string(),
            message,
            staged_events_read: self.read,
            rows_written: self.written,
            from_position: from,
            to_position: to,
            done,
            at: Some(prost_types::Timestamp::from(SystemTime::now())),
        }
    }

    /// Reports a finished stage of the chunk (from, to].
    pub fn stage(&mut self, stage: &str, message: impl Into<String>, from: u64, to: u64) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(self.message(stage, message.into(), from, to, false)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::debug!(stage, "progress receiver full; message dropped"),
            Err(TrySendError::Closed(_)) => {
                tracing::debug!("progress receiver gone; the load goes on");
                self.tx = None;
            }
        }
    }

    /// Reports the end of the run (from, to].
    pub async fn done(&mut self, message: impl Into<String>, from: u64, to: u64) {
        let Some(tx) = self.tx.take() else { return };
        let msg = self.message("done", message.into(), from, to, true);
        if tx.send_timeout(msg, DONE_SEND_TIMEOUT).await.is_err() {
            tracing::debug!("final progress message not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gone_or_full_receiver_does_not_block() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut p = Progress::new(Some(tx), "r");
        p.stage("read_staging", "x", 0, 1);
        p.done("ok", 0, 1).await;

        let (tx, mut rx) = mpsc::channel(1);
        let mut p = Progress::new(Some(tx), "r");
        p.read = 5;
        p.stage("a", "first", 0, 1);
        p.stage("b", "dropped: full", 0, 1);
        let first = rx.recv().await.unwrap();
        assert_eq!(
            (first.stage.as_str(), first.staged_events_read, first.done),
            ("a", 5, false)
        );
        p.done("ok", 0, 1).await;
        assert!(rx.recv().await.unwrap().done);
    }
}
