//! At-least-once sending over `IngestService.Ingest`: events go out in requests of
//! `batch_size`, up to `max_in_flight` requests unanswered at once. A request is done
//! only when its acknowledgement arrives; if the stream breaks (platform restarting,
//! staging unavailable) the sender reconnects and resends every unanswered request in
//! order. The platform absorbs the repeats by event_id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::ingest_service_client::IngestServiceClient;
use hospital_proto::ingest::{IngestRequest, IngestResponse, Rejection};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, Clone)]
pub struct SenderOptions {
    pub endpoint: String,
    pub batch_size: usize,
    pub max_in_flight: usize,
    /// Give up after this many consecutive failed attempts (0 = never retry).
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Events per second to send at (None: as fast as acks allow).
    pub rate: Option<f64>,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50051".into(),
            batch_size: 500,
            max_in_flight: 8,
            max_retries: 20,
            retry_backoff: Duration::from_millis(500),
            rate: None,
        }
    }
}

/// What a send achieved.
#[derive(Debug, Default, Clone)]
pub struct SendReport {
    pub requests: usize,
    pub committed: usize,
    pub rejections: Vec<Rejection>,
    /// Times the stream broke and unanswered requests were resent.
    pub reconnects: u32,
    pub elapsed: Duration,
    /// Time from sending each request to its acknowledgement, in send order.
    pub ack_latencies: Vec<Duration>,
    pub last_position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("gave up after {attempts} attempts; last error: {status}")]
    GaveUp { attempts: u32, status: tonic::Status },
    #[error("request rejected: {0}")]
    Rejected(tonic::Status),
}

/// Sends `events` and waits until every one is acknowledged (committed or rejected).
/// `on_ack` is called for every acknowledgement (progress bars, tests).
pub async fn send_events(
    events: Vec<ClinicalEvent>,
    opts: &SenderOptions,
    on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    let (tx, rx) = mpsc::channel(opts.max_in_flight.max(1));
    let feed = feed(events.into_iter(), opts.batch_size, Pace::FullSpeed, tx);
    let (_, report) = tokio::join!(feed, send_batches(rx, opts, on_ack));
    report
}

/// How [`feed`] releases events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the sender takes them, in requests of `batch_size`.
    FullSpeed,
    /// Each event when the wall clock reaches its `occurred_at` (events already in the
    /// past go at once); a request holds what is due, at most `batch_size`, and goes
    /// out within [`LIVE_FLUSH`] of its first event.
    WallClock,
}

/// Longest time a due event waits for others to share its request in [`Pace::WallClock`].
pub const LIVE_FLUSH: Duration = Duration::from_millis(200);

/// Turns `events` (in `occurred_at` order for [`Pace::WallClock`]) into requests for
/// [`send_batches`]. Returns when the events end or the sender is gone. The channel's
/// capacity bounds what is read ahead.
pub async fn feed(
    events: impl Iterator<Item = ClinicalEvent>,
    batch_size: usize,
    pace: Pace,
    tx: mpsc::Sender<Vec<ClinicalEvent>>,
) {
    let batch_size = batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut first_at: Option<Instant> = None;
    for event in events {
        if pace == Pace::WallClock {
            let due_in = event
                .occurred_at
                .as_ref()
                .map(|t| {
                    let due = std::time::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
                    due.duration_since(std::time::SystemTime::now()).unwrap_or_default()
                })
                .unwrap_or_default();
            if !due_in.is_zero() {
                // Not due yet: what is waiting goes now, then wait for this one.
                if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
                first_at = None;
                tokio::time::sleep(due_in).await;
            }
        }
        batch.push(event);
        let first = *first_at.get_or_insert_with(Instant::now);
        let flush = batch.len() >= batch_size || (pace == Pace::WallClock && first.elapsed() >= LIVE_FLUSH);
        if flush {
            first_at = None;
            if tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
}

/// Sends every batch `source` yields, each as one request, and waits until every one is
/// acknowledged. At most `max_in_flight` requests are unanswered at once, and nothing
/// more is read from `source` meanwhile (backpressure). If the stream breaks, it
/// reconnects and resends the unanswered requests in order.
pub async fn send_batches(
    mut source: mpsc::Receiver<Vec<ClinicalEvent>>,
    opts: &SenderOptions,
    mut on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    let started = Instant::now();
    let mut state = SendState {
        pending: VecDeque::new(),
        next_request: 0,
        source_done: false,
        pacer: Pacer {
            started,
            rate: opts.rate.filter(|r| *r > 0.0),
            events: 0,
        },
    };
    let mut report = SendReport::default();
    let mut failures = 0u32;
    loop {
        let acked_before = report.ack_latencies.len();
        match attempt(&mut state, &mut source, opts, &mut report, &mut on_ack).await {
            Ok(()) => break,
            Err(status) => {
                if status.code() == tonic::Code::InvalidArgument {
                    return Err(SendError::Rejected(status));
                }
                // A stream that made progress before breaking starts the count afresh.
                if report.ack_latencies.len() > acked_before {
                    failures = 0;
                }
                failures += 1;
                if failures > opts.max_retries {
                    return Err(SendError::GaveUp {
                        attempts: failures,
                        status,
                    });
                }
                report.reconnects += 1;
                tracing::warn!(%status, unanswered = state.pending.len(), "ingest stream broke; resending unanswered requests");
                tokio::time::sleep(opts.retry_backoff).await;
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What survives a broken stream: the unanswered requests, oldest first.
struct SendState {
    pending: VecDeque<IngestRequest>,
    next_request: usize,
    source_done: bool,
    pacer: Pacer,
}

/// One stream: resends what is unanswered, then takes new requests from `source`, and
/// pops each request when its ack arrives. Ok when the source is done and everything is
/// answered; Err when the stream breaks first.
async fn attempt(
    state: &mut SendState,
    source: &mut mpsc::Receiver<Vec<ClinicalEvent>>,
    opts: &SenderOptions,
    report: &mut SendReport,
    on_ack: &mut impl FnMut(&IngestResponse),
) -> Result<(), tonic::Status> {
    let channel = crate::connect(&opts.endpoint)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect to {}: {e}", opts.endpoint)))?;
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let window = opts.max_in_flight.max(1);
    let (tx, rx) = mpsc::channel::<IngestRequest>(window);
    let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
    let mut sent = 0usize;
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let mut tx = Some(tx);
    loop {
        // Resend (or send) what is queued, up to the window.
        while sent < state.pending.len() && sent_at.len() < window {
            let Some(sender) = tx.as_ref() else { break };
            if sender.send(state.pending[sent].clone()).await.is_err() {
                break;
            }
            sent_at.push_back(Instant::now());
            sent += 1;
        }
        if state.source_done && sent == state.pending.len() {
            if state.pending.is_empty() {
                return Ok(());
            }
            // Everything is out: close our side so the server can end the stream.
            tx = None;
        }
        let room = !state.source_done && sent == state.pending.len() && sent_at.len() < window;
        tokio::select! {
            batch = source.recv(), if room => match batch {
                Some(events) => {
                    state.pacer.wait(events.len()).await;
                    state.pending.push_back(IngestRequest {
                        request_id: state.next_request.to_string(),
                        events,
                    });
                    state.next_request += 1;
                    report.requests += 1;
                }
                None => state.source_done = true,
            },
            ack = acks.message() => match ack? {
                Some(ack) => {
                    let expected = state.pending.front().map(|r| r.request_id.clone()).unwrap_or_default();
                    if ack.request_id != expected {
                        return Err(tonic::Status::internal(format!(
                            "acknowledgement for request {:?} while {expected:?} was the oldest unanswered",
                            ack.request_id
                        )));
                    }
                    state.pending.pop_front();
                    sent -= 1;
                    if let Some(t) = sent_at.pop_front() {
                        report.ack_latencies.push(t.elapsed());
                    }
                    report.committed += ack.committed_event_ids.len();
                    report.rejections.extend(ack.rejections.iter().cloned());
                    report.last_position = report.last_position.max(ack.committed_position);
                    on_ack(&ack);
                }
                None => {
                    if state.pending.is_empty() && state.source_done {
                        return Ok(());
                    }
                    return Err(tonic::Status::unavailable("stream ended with requests unanswered"));
                }
            },
        }
    }
}

/// Spreads sends over time at a fixed event rate.
struct Pacer {
    started: Instant,
    rate: Option<f64>,
    events: usize,
}

impl Pacer {
    async fn wait(&mut self, events: usize) {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.events as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        self.events += events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_from_now: f64, id: &str) -> ClinicalEvent {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + secs_from_now;
        ClinicalEvent {
            event_id: id.into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: t.floor() as i64,
                nanos: (t.fract() * 1e9) as i32,
            }),
            ..Default::default()
        }
    }

    fn ids(batch: &[ClinicalEvent]) -> Vec<&str> {
        batch.iter().map(|e| e.event_id.as_str()).collect()
    }

    /// Past events go at once; a future one is held until the wall clock reaches it.
    #[tokio::test]
    async fn wall_clock_pace_releases_events_when_due() {
        let (tx, mut rx) = mpsc::channel(4);
        let events = vec![at(-60.0, "a"), at(-30.0, "b"), at(1.2, "c"), at(1.2, "d")];
        let due = Instant::now() + Duration::from_secs_f64(1.0);
        tokio::spawn(feed(events.into_iter(), 10, Pace::WallClock, tx));
        let first = rx.recv().await.unwrap();
        // The past goes in one request, before the future one is due.
        assert_eq!(ids(&first), ["a", "b"]);
        let second = rx.recv().await.unwrap();
        assert!(Instant::now() >= due, "a future event is not sent early");
        assert_eq!(ids(&second), ["c", "d"]);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn full_speed_makes_batches_of_batch_size() {
        let (tx, mut rx) = mpsc::channel(4);
        let events: Vec<_> = (0..7).map(|i| at(3600.0, &i.to_string())).collect();
        tokio::spawn(feed(events.into_iter(), 3, Pace::FullSpeed, tx));
        let mut sizes = Vec::new();
        while let Some(b) = rx.recv().await {
            sizes.push(b.len());
        }
        assert_eq!(sizes, [3, 3, 1]);
    }
}
