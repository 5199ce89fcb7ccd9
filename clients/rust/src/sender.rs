//! At-least-once sending over `IngestService.Ingest`: events go out in requests of
//! `batch_size`, up to `max_in_flight` requests unanswered at once. A request is done
//! only when its acknowledgement arrives; if the stream breaks (platform restarting,
//! staging unavailable) the sender reconnects and resends every unanswered request in
//! order. The platform absorbs the repeats by event_id.
//!
//! An outage is waited out: after a transient failure (UNAVAILABLE, DEADLINE_EXCEEDED,
//! a connection that cannot be made or breaks) the sender tries again after a back-off
//! that doubles from `initial_backoff` up to `max_backoff` (with jitter), for as long as
//! it takes unless `give_up_after` is set. It says that it waits ([`Notice`]) on the
//! first failure and then every `notice_every`, not on every attempt. Any other status
//! (INVALID_ARGUMENT, INTERNAL from the platform, ...) ends the send at once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::ingest_service_client::IngestServiceClient;
use hospital_proto::ingest::{Duplicate, IngestRequest, IngestResponse, Rejection, Warning};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Called with what a sender has to say about an outage (see [`SenderOptions::on_notice`]).
pub type NoticeHook = Arc<dyn Fn(&Notice) + Send + Sync>;

#[derive(Clone)]
pub struct SenderOptions {
    pub endpoint: String,
    pub batch_size: usize,
    pub max_in_flight: usize,
    /// Wait after the first failure of an outage; doubles with every failure in a row.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Give up when the platform has been unavailable this long without an
    /// acknowledgement (None: wait until interrupted).
    pub give_up_after: Option<Duration>,
    /// How often a sender that keeps waiting says so again (after the first failure).
    pub notice_every: Duration,
    /// Where notices go; None: a `tracing` warning.
    pub on_notice: Option<NoticeHook>,
    /// Events per second to send at (None: as fast as acks allow).
    pub rate: Option<f64>,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50051".into(),
            batch_size: 500,
            max_in_flight: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            give_up_after: None,
            notice_every: Duration::from_secs(30),
            on_notice: None,
            rate: None,
        }
    }
}

impl fmt::Debug for SenderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderOptions")
            .field("endpoint", &self.endpoint)
            .field("batch_size", &self.batch_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("give_up_after", &self.give_up_after)
            .field("notice_every", &self.notice_every)
            .field("on_notice", &self.on_notice.as_ref().map(|_| "hook"))
            .field("rate", &self.rate)
            .finish()
    }
}

/// What a sender says while the platform is unavailable.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Failed attempts in a row; the sender waits and tries again.
    Waiting {
        /// The last failure.
        reason: String,
        /// Failed attempts of this outage so far.
        attempt: u32,
        /// Since the first failure of this outage.
        unavailable_for: Duration,
        next_try_in: Duration,
        /// Events of this send acknowledged so far.
        acknowledged: u64,
        /// Requests that will be sent again.
        unanswered: usize,
    },
    /// An acknowledgement came again after an outage.
    Recovered { unavailable_for: Duration, attempts: u32 },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Waiting {
                reason,
                attempt,
                unavailable_for,
                next_try_in,
                acknowledged,
                unanswered,
            } => write!(
                f,
                "platform unavailable ({reason}); waiting, attempt {attempt}, next try in {:.2} s, {acknowledged} events acknowledged so far, {unanswered} requests to resend (unavailable for {:.0} s)",
                next_try_in.as_secs_f64(),
                unavailable_for.as_secs_f64()
            ),
            Notice::Recovered {
                unavailable_for,
                attempts,
            } => write!(
                f,
                "platform available again after {:.1} s ({attempts} failed attempts); sending on",
                unavailable_for.as_secs_f64()
            ),
        }
    }
}

/// What a send achieved.
#[derive(Debug, Default, Clone)]
pub struct SendReport {
    pub requests: usize,
    pub committed: usize,
    /// Events of acknowledged requests (committed or rejected).
    pub acknowledged: u64,
    pub rejections: Vec<Rejection>,
    /// Committed events whose (source_system, event_id) was committed before: the first
    /// copy counts (among `committed`).
    pub duplicates: Vec<Duplicate>,
    /// Parts of committed events set aside or flagged (an implausible reading, ...).
    pub warnings: Vec<Warning>,
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
    #[error("gave up after {:.0} s unavailable ({attempts} attempts); last error: {status}", unavailable_for.as_secs_f64())]
    GaveUp {
        attempts: u32,
        unavailable_for: Duration,
        status: tonic::Status,
    },
    #[error("request rejected: {0}")]
    Rejected(tonic::Status),
    /// A failure that trying again would not mend.
    #[error("not retried: {0}")]
    Failed(tonic::Status),
}

/// Whether a failed attempt is worth another: the platform or its storage is
/// unavailable, a deadline passed, or the connection could not be made or broke (the
/// client turns those into statuses that carry the transport error as their source; a
/// status the platform sent carries none).
pub fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => true,
        Code::Unknown | Code::Internal | Code::Cancelled => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// The wait before attempt `failures + 1`: `initial` doubled for every failure after the
/// first, at most `max`, then jittered down by up to a quarter (so that many senders
/// waiting out one outage do not all come back at once).
pub fn backoff(failures: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(max);
    capped.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
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
/// reconnects and resends the unanswered requests in order, waiting out an outage as
/// the options say.
pub async fn send_batches(
    source: mpsc::Receiver<Vec<ClinicalEvent>>,
    opts: &SenderOptions,
    mut on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    send_counted(source, opts, |ack, _| on_ack(ack)).await
}

/// [`send_batches`], telling `on_ack` also how many events the acknowledged request
/// held (what a checkpoint counts).
pub async fn send_counted(
    mut source: mpsc::Receiver<Vec<ClinicalEvent>>,
    opts: &SenderOptions,
    mut on_ack: impl FnMut(&IngestResponse, usize),
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
        outage: None,
    };
    let mut report = SendReport::default();
    loop {
        match attempt(&mut state, &mut source, opts, &mut report, &mut on_ack).await {
            Ok(()) => break,
            Err(status) if status.code() == tonic::Code::InvalidArgument => return Err(SendError::Rejected(status)),
            Err(status) if !retryable(&status) => return Err(SendError::Failed(status)),
            Err(status) => {
                let now = Instant::now();
                let outage = state.outage.get_or_insert(Outage {
                    since: now,
                    failures: 0,
                    noticed: None,
                });
                outage.failures += 1;
                let unavailable_for = now - outage.since;
                if opts.give_up_after.is_some_and(|limit| unavailable_for >= limit) {
                    return Err(SendError::GaveUp {
                        attempts: outage.failures,
                        unavailable_for,
                        status,
                    });
                }
                report.reconnects += 1;
                let wait = backoff(
                    outage.failures,
                    opts.initial_backoff,
                    opts.max_backoff,
                    rand::rng().random(),
                );
                tracing::debug!(%status, attempt = outage.failures, ?wait, unanswered = state.pending.len(), "ingest stream broke");
                if outage.noticed.is_none_or(|at| now - at >= opts.notice_every) {
                    outage.noticed = Some(now);
                    notify(
                        opts,
                        &Notice::Waiting {
                            reason: status.message().to_string(),
                            attempt: outage.failures,
                            unavailable_for,
                            next_try_in: wait,
                            acknowledged: report.acknowledged,
                            unanswered: state.pending.len(),
                        },
                    );
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn notify(opts: &SenderOptions, notice: &Notice) {
    match &opts.on_notice {
        Some(hook) => hook(notice),
        None => tracing::warn!("{notice}"),
    }
}

/// Failed attempts in a row, since the last acknowledgement.
struct Outage {
    since: Instant,
    failures: u32,
    /// When the last [`Notice::Waiting`] went out.
    noticed: Option<Instant>,
}

/// What survives a broken stream: the unanswered requests, oldest first.
struct SendState {
    pending: VecDeque<IngestRequest>,
    next_request: usize,
    source_done: bool,
    pacer: Pacer,
    outage: Option<Outage>,
}

/// One stream: resends what is unanswered, then takes new requests from `source`, and
/// pops each request when its ack arrives. Ok when the source is done and everything is
/// answered; Err when the stream breaks first.
async fn attempt(
    state: &mut SendState,
    source: &mut mpsc::Receiver<Vec<ClinicalEvent>>,
    opts: &SenderOptions,
    report: &mut SendReport,
    on_ack: &mut impl FnMut(&IngestResponse, usize),
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
                    let events = state.pending.pop_front().map_or(0, |r| r.events.len());
                    sent -= 1;
                    if let Some(t) = sent_at.pop_front() {
                        report.ack_latencies.push(t.elapsed());
                    }
                    if let Some(outage) = state.outage.take() {
                        notify(opts, &Notice::Recovered {
                            unavailable_for: outage.since.elapsed(),
                            attempts: outage.failures,
                        });
                    }
                    report.committed += ack.committed_event_ids.len();
                    report.acknowledged += events as u64;
                    report.rejections.extend(ack.rejections.iter().cloned());
                    report.duplicates.extend(ack.duplicates.iter().cloned());
                    report.warnings.extend(ack.warnings.iter().cloned());
                    report.last_position = report.last_position.max(ack.committed_position);
                    on_ack(&ack, events);
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

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_down() {
        let ms = Duration::from_millis;
        let waits: Vec<_> = (1..=8).map(|n| backoff(n, ms(100), ms(5_000), 0.0)).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000].map(ms),
            "doubling from the first wait, capped"
        );
        assert_eq!(backoff(1_000, ms(100), ms(5_000), 0.0), ms(5_000), "no overflow");
        assert_eq!(backoff(3, ms(100), ms(5_000), 1.0), ms(300), "at most a quarter less");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        use tonic::{Code, Status};
        assert!(retryable(&Status::unavailable("staging zone unavailable")));
        assert!(retryable(&Status::deadline_exceeded("slow")));
        for code in [
            Code::InvalidArgument,
            Code::Internal,
            Code::DataLoss,
            Code::PermissionDenied,
        ] {
            assert!(!retryable(&Status::new(code, "from the platform")), "{code:?}");
        }
        // The client's own status for a broken connection carries the transport error.
        let broken = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(retryable(&broken));
    }

    #[test]
    fn waiting_notices_say_what_the_sender_does() {
        let waiting = Notice::Waiting {
            reason: "connection refused".into(),
            attempt: 3,
            unavailable_for: Duration::from_secs(2),
            next_try_in: Duration::from_millis(400),
            acknowledged: 1_500,
            unanswered: 2,
        };
        assert_eq!(
            waiting.to_string(),
            "platform unavailable (connection refused); waiting, attempt 3, next try in 0.40 s, 1500 events acknowledged so far, 2 requests to resend (unavailable for 2 s)"
        );
    }

    /// Nothing listens: the sender keeps trying with back-off, says so once (not per
    /// attempt), and stops only at `give_up_after`.
    #[tokio::test]
    async fn an_unreachable_platform_is_waited_for_until_give_up_after() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let opts = SenderOptions {
            endpoint: format!("http://127.0.0.1:{port}"),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            give_up_after: Some(Duration::from_millis(800)),
            on_notice: Some({
                let notices = notices.clone();
                Arc::new(move |n: &Notice| notices.lock().unwrap().push(n.clone()))
            }),
            ..Default::default()
        };
        let err = send_events(vec![at(-60.0, "a")], &opts, |_| {}).await.unwrap_err();
        let SendError::GaveUp {
            attempts,
            unavailable_for,
            status,
        } = err
        else {
            panic!("expected GaveUp, got {err:?}")
        };
        assert!(attempts > 5, "{attempts} attempts");
        assert!(unavailable_for >= Duration::from_millis(800));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let notices = notices.lock().unwrap();
        assert_eq!(notices.len(), 1, "one notice for a short outage: {notices:?}");
        assert!(matches!(
            &notices[0],
            Notice::Waiting {
                attempt: 1,
                acknowledged: 0,
                ..
            }
        ));
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
