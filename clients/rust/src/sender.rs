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
    mut on_ack: impl FnMut(&IngestResponse),
) -> Result<SendReport, SendError> {
    let started = Instant::now();
    let mut pending: VecDeque<IngestRequest> = events
        .chunks(opts.batch_size.max(1))
        .enumerate()
        .map(|(i, chunk)| IngestRequest {
            request_id: i.to_string(),
            events: chunk.to_vec(),
        })
        .collect();
    let mut report = SendReport {
        requests: pending.len(),
        ..Default::default()
    };
    let mut failures = 0u32;
    let mut pacer = Pacer {
        started,
        rate: opts.rate.filter(|r| *r > 0.0),
        events: 0,
    };
    while !pending.is_empty() {
        match attempt(&mut pending, opts, &mut report, &mut on_ack, &mut pacer).await {
            Ok(()) => failures = 0,
            Err(status) => {
                if status.code() == tonic::Code::InvalidArgument {
                    return Err(SendError::Rejected(status));
                }
                failures += 1;
                if failures > opts.max_retries {
                    return Err(SendError::GaveUp {
                        attempts: failures,
                        status,
                    });
                }
                report.reconnects += 1;
                tracing::warn!(%status, unanswered = pending.len(), "ingest stream broke; resending unanswered requests");
                tokio::time::sleep(opts.retry_backoff).await;
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One stream: sends from the front of `pending`, pops each request when its ack
/// arrives. Returns Err when the stream breaks with requests still unanswered.
async fn attempt(
    pending: &mut VecDeque<IngestRequest>,
    opts: &SenderOptions,
    report: &mut SendReport,
    on_ack: &mut impl FnMut(&IngestResponse),
    pacer: &mut Pacer,
) -> Result<(), tonic::Status> {
    let channel = crate::connect(&opts.endpoint)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect to {}: {e}", opts.endpoint)))?;
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<IngestRequest>(opts.max_in_flight.max(1));
    let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
    let mut sent = 0usize;
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let mut tx = Some(tx);
    loop {
        // Keep up to max_in_flight requests unanswered.
        while sent < pending.len() && sent_at.len() < opts.max_in_flight.max(1) {
            let Some(sender) = tx.as_ref() else { break };
            pacer.wait(pending[sent].events.len()).await;
            if sender.send(pending[sent].clone()).await.is_err() {
                break;
            }
            sent_at.push_back(Instant::now());
            sent += 1;
        }
        if sent == pending.len() {
            // Everything is out: close our side so the server can end the stream.
            tx = None;
        }
        if pending.is_empty() {
            return Ok(());
        }
        match acks.message().await? {
            Some(ack) => {
                let expected = pending.front().map(|r| r.request_id.clone()).unwrap_or_default();
                if ack.request_id != expected {
                    return Err(tonic::Status::internal(format!(
                        "acknowledgement for request {:?} while {expected:?} was the oldest unanswered",
                        ack.request_id
                    )));
                }
                pending.pop_front();
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
                if pending.is_empty() {
                    return Ok(());
                }
                return Err(tonic::Status::unavailable("stream ended with requests unanswered"));
            }
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
