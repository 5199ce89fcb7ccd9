//! The real-time stage: work on committed events as they arrive, rather than in batch.
//!
//! [`bus`] fans out each committed flush in process; [`follow`] reads staging in position
//! order with no gap and no repeat; [`changefeed`] delivers those events to subscribers.
//! [`news2`] is pure scoring for alerting (the National Early Warning Score 2, RCP 2017):
//! no I/O, no state, called with each patient's latest vital signs.

pub mod alerts;
pub mod bus;
pub mod census;
pub mod changefeed;
pub mod follow;
pub use hospital_clinical::news2;
pub mod processor;
pub mod snapshot;

/// For server-streaming subscribers: waits for `next`, unless the server shuts down (the
/// subscriber is told `goodbye` as UNAVAILABLE) or the subscriber went away. None means
/// stop streaming.
pub(crate) async fn next_or_stop<T, M>(
    next: impl std::future::Future<Output = T>,
    tx: &tokio::sync::mpsc::Sender<Result<M, tonic::Status>>,
    shutdown: &tokio_util::sync::CancellationToken,
    goodbye: &str,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {
            let _ = tx
                .send(Err(crate::error::Error::Closing(goodbye.to_string()).into()))
                .await;
            None
        }
        _ = tx.closed() => None,
        next = next => Some(next),
    }
}
