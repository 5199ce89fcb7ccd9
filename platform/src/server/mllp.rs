//! HL7 v2 over MLLP: a TCP listener that takes framed messages, maps them to canonical
//! events and sends them through the same door as gRPC (`ingest::prepare`, then the
//! staging writer's group commit), answering each message with an ACK.
//!
//! Owns framing, per-connection ordering and the ACK code chosen for each outcome. Must
//! not validate or store on its own: no side door around ingest or staging.
//!
//! ACK semantics (DOMAIN.md): AA only after the staging commit returned (AA means
//! durable); AR when the message is unacceptable (unparsable, unsupported type, too
//! big, no event in it, not MLLP framed); AE when it was understood but cannot be taken (missing data, an event rejected
//! by ingest, staging unavailable: the sender resends). MSA-2 is always the message's
//! own MSH-10. Frames of one connection are handled one at a time, in order.
//!
//! Limits (the `mllp` config section): frame size, a read timeout for a frame under
//! way, an idle timeout between frames, and a cap on concurrent connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hospital_proto::events::ClinicalEvent;
use hospital_proto::ingest::IngestRequest;
use hospital_sources::hl7v2::map::{to_events, MapError, MapOptions};
use hospital_sources::hl7v2::{ack, ack_with, parse_message, AckCode, ErrorCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::MllpConfig;
use crate::ingest::{self, IngestOptions};
use crate::staging::WriterHandle;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// How much of a refused frame, or of unframed input, is kept to build the answer.
const HEAD_BYTES: usize = 4096;
/// After its last answer, how long a connection being closed keeps reading (and
/// dropping) what the sender still sends, so that the close is not a reset that could
/// discard the answer on the sender's side.
const LINGER: Duration = Duration::from_secs(1);

/// What the decoder found in the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The bytes between 0x0B and 0x1C 0x0D.
    Message(Vec<u8>),
    /// A frame grew past the limit before its end; holds its first bytes (for a best
    /// effort control id). The connection must be closed after answering.
    TooLarge(Vec<u8>),
    /// Bytes outside a frame that are not whitespace: the sender does not speak MLLP
    /// (or lost the framing). Holds them up to the first CR, LF or 0x0B (at most
    /// [`HEAD_BYTES`]), e.g. an unframed MSH segment. The connection must be closed.
    Unframed(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: whitespace is skipped, 0x0B starts a frame, anything else is
    /// unframed input.
    Between,
    /// In a frame whose content starts at `start`.
    InFrame,
    /// In unframed input starting at `start`.
    Unframed,
    /// In the rest of a frame refused as too large: dropped up to its end.
    Skipping,
}

/// Incremental MLLP decoder: bytes in, frames out, bounded memory. Each byte is
/// examined once however the stream is cut into reads (the search resumes where it
/// stopped), so a sender that trickles a large frame costs linear time.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes before it are handed out or dropped; in a frame or unframed input, where
    /// its content starts.
    start: usize,
    /// Next byte to examine; every byte between `start` and it has been examined.
    scan: usize,
    state: State,
    max: usize,
    examined: u64,
}

impl FrameDecoder {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            scan: 0,
            state: State::Between,
            max: max_message_bytes,
            examined: 0,
        }
    }

    /// Adds bytes read from the socket; take the frames they complete with
    /// [`FrameDecoder::next_frame`] before the next push.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Whether a frame (or unframed input) has started and not ended: the connection
    /// is waiting for the rest of it, not idle.
    pub fn in_progress(&self) -> bool {
        self.state != State::Between
    }

    /// How many bytes the decoder has examined so far (a byte may be examined twice
    /// when it ends one state and starts the next, or when it is a 0x1C at the end of
    /// a read), to check that decoding stays linear in the bytes received.
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::Between => {
                    while let Some(&b) = self.buf.get(self.scan) {
                        self.examined += 1;
                        if b == START {
                            self.scan += 1;
                            self.start = self.scan;
                            self.state = State::InFrame;
                            break;
                        }
                        if !b.is_ascii_whitespace() {
                            self.start = self.scan;
                            self.state = State::Unframed;
                            break;
                        }
                        self.scan += 1;
                        self.start = self.scan;
                    }
                    if self.state == State::Between {
                        return None;
                    }
                }
                State::InFrame => {
                    let end = self.find_end();
                    let len = self.scan - self.start;
                    match end {
                        Some(end) => {
                            let frame = if end - self.start > self.max {
                                Frame::TooLarge(self.head(end))
                            } else {
                                Frame::Message(self.buf[self.start..end].to_vec())
                            };
                            self.scan = end + END.len();
                            self.start = self.scan;
                            self.state = State::Between;
                            return Some(frame);
                        }
                        None if len > self.max => {
                            let head = self.head(self.scan);
                            self.start = self.scan;
                            self.state = State::Skipping;
                            return Some(Frame::TooLarge(head));
                        }
                        None => return None,
                    }
                }
                State::Skipping => {
                    let end = self.find_end();
                    match end {
                        Some(end) => {
                            self.scan = end + END.len();
                            self.start = self.scan;
                            self.state = State::Between;
                        }
                        None => {
                            self.start = self.scan;
                            return None;
                        }
                    }
                }
                State::Unframed => {
                    while let Some(&b) = self.buf.get(self.scan) {
                        if self.scan - self.start >= HEAD_BYTES {
                            break;
                        }
                        self.examined += 1;
                        if matches!(b, b'\r' | b'\n' | START) {
                            break;
                        }
                        self.scan += 1;
                    }
                    if self.scan == self.buf.len() && self.scan - self.start < HEAD_BYTES {
                        return None;
                    }
                    let head = self.buf[self.start..self.scan].to_vec();
                    self.start = self.scan;
                    self.state = State::Between;
                    return Some(Frame::Unframed(head));
                }
            }
        }
    }

    /// Searches the unexamined bytes for 0x1C 0x0D; returns where it starts. When not
    /// found, `scan` stops at the end, or on a last 0x1C whose 0x0D may come next.
    fn find_end(&mut self) -> Option<usize> {
        while let Some(&b) = self.buf.get(self.scan) {
            self.examined += 1;
            if b == END[0] {
                match self.buf.get(self.scan + 1) {
                    None => return None,
                    Some(&next) if next == END[1] => return Some(self.scan),
                    Some(_) => {}
                }
            }
            self.scan += 1;
        }
        None
    }

    fn head(&self, end: usize) -> Vec<u8> {
        self.buf[self.start..end.min(self.start + HEAD_BYTES)].to_vec()
    }
}

/// Wraps an ACK in an MLLP frame.
pub fn frame(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 3);
    out.push(START);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&END);
    out
}

/// What a connection needs: the door's options, the staging writer and the listener's
/// limits (`config.listen` is not read here).
#[derive(Clone)]
pub(crate) struct MllpContext {
    pub writer: WriterHandle,
    pub ingest: IngestOptions,
    pub config: MllpConfig,
    pub map: MapOptions,
}

impl MllpContext {
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.config.idle_timeout_ms)
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.config.read_timeout_ms)
    }
}

/// Binds `addr` and spawns the accept loop. The task ends after `shutdown`, once every
/// connection has answered the frame it was handling. At most `max_connections` are
/// served at once: one more is closed as soon as it is accepted.
pub(crate) async fn start(
    addr: SocketAddr,
    ctx: MllpContext,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let ctx = Arc::new(ctx);
    let cap = ctx.config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(connection(stream, peer, ctx.clone(), shutdown.clone(), permit));
                        }
                        Err(_) => {
                            tracing::warn!(%peer, max_connections = cap, "MLLP connection refused: too many connections");
                            drop(stream);
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "MLLP accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
        tracing::info!("MLLP listener stopped");
    });
    Ok((local, task))
}

/// Serves one connection: frames in order, one answer each. Closes it when the sender
/// does, after an oversize frame or unframed input, when a started frame is not
/// complete within `read_timeout_ms`, or when no frame starts within `idle_timeout_ms`
/// of the connection opening or of its last answer.
#[tracing::instrument(skip_all, fields(%peer))]
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<MllpContext>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let mut decoder = FrameDecoder::new(ctx.config.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let mut deadline = Instant::now() + ctx.idle_timeout();
    let mut started = false;
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = stream.read(&mut buf) => match r {
                Ok(0) => {
                    if decoder.in_progress() {
                        tracing::info!("MLLP sender closed the connection in the middle of a frame");
                    }
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "MLLP read failed");
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                if started {
                    tracing::warn!(
                        read_timeout_ms = ctx.config.read_timeout_ms,
                        "MLLP frame not complete within the read timeout; closing"
                    );
                } else {
                    tracing::info!(idle_timeout_ms = ctx.config.idle_timeout_ms, "MLLP connection idle; closing");
                }
                close(stream).await;
                return;
            }
        };
        decoder.push(&buf[..n]);
        while let Some(f) = decoder.next_frame() {
            let (reply, close_after) = match f {
                Frame::Message(bytes) => (handle(&bytes, &ctx).await, false),
                Frame::TooLarge(head) => {
                    let text = format!("message larger than {} bytes", ctx.config.max_message_bytes);
                    tracing::warn!(max = ctx.config.max_message_bytes, "MLLP frame too large; closing");
                    (unparsed_ack(&head, AckCode::AR, &text), true)
                }
                Frame::Unframed(head) => match unframed_nak(&head) {
                    Some(nak) => {
                        tracing::warn!(bytes = head.len(), "MLLP input not framed; answered AR, closing");
                        (nak, true)
                    }
                    None => {
                        tracing::warn!(bytes = head.len(), "MLLP input not framed and not HL7; closing");
                        close(stream).await;
                        return;
                    }
                },
            };
            if let Err(e) = stream.write_all(&frame(&reply)).await {
                tracing::debug!(error = %e, "MLLP write failed");
                return;
            }
            if close_after {
                close(stream).await;
                return;
            }
            // The sender had its answer: the idle clock restarts (a frame already
            // under way gets its read timeout below).
            deadline = Instant::now() + ctx.idle_timeout();
            started = false;
        }
        if decoder.in_progress() && !started {
            started = true;
            deadline = Instant::now() + ctx.read_timeout();
        }
    }
}

/// Ends a connection: no more answers, then what the sender still sends is read and
/// dropped for a moment, so that unread bytes do not turn the close into a reset.
async fn close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            _ = &mut linger => return,
            r = stream.read(&mut sink) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// The AR for unframed input when it looks like HL7 (an MSH segment, so MSA-2 can
/// name its control id); `None` for anything else (a port scan, TLS, HTTP), which
/// gets no answer.
fn unframed_nak(head: &[u8]) -> Option<String> {
    let is_msh = head.starts_with(b"MSH") && head.get(3).is_some_and(|b| b.is_ascii_punctuation());
    is_msh.then(|| {
        unparsed_ack(
            head,
            AckCode::AR,
            "input is not MLLP framed: send each message as 0x0B, message, 0x1C 0x0D",
        )
    })
}

/// One message: parse, map, ingest, commit; returns the ACK text.
async fn handle(bytes: &[u8], ctx: &MllpContext) -> String {
    let msg = match parse_message(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::info!(error = %e, "MLLP message does not parse");
            return unparsed_ack(bytes, AckCode::AR, &e.to_string());
        }
    };
    let request = match ingest_request(&msg, to_events(&msg, &ctx.map)) {
        Ok(r) => r,
        Err(ack) => return ack,
    };
    let prepared = match ingest::prepare(request, &ctx.ingest) {
        Ok(p) => p,
        Err(e) => return reply(&msg, AckCode::AE, Some(&e.to_string())),
    };
    // A message is taken whole or not at all: one rejected event refuses the message, so
    // that the sender's resend of the corrected message is not half a duplicate.
    if !prepared.ack.rejections.is_empty() {
        let reasons: Vec<String> = prepared
            .ack
            .rejections
            .iter()
            .flat_map(|r| {
                r.violations
                    .iter()
                    .map(move |v| format!("event {}: {}: {}", r.event_id, v.field, v.description))
            })
            .collect();
        // Every violation a missing field: 101; else a value the door refuses: 102.
        let all_required = prepared
            .ack
            .rejections
            .iter()
            .flat_map(|r| &r.violations)
            .all(|v| v.description.starts_with("required"));
        let code = if all_required {
            ErrorCode::RequiredFieldMissing
        } else {
            ErrorCode::DataType
        };
        return reply_with(&msg, AckCode::AE, code, &format!("rejected: {}", reasons.join("; ")));
    }
    let rows = prepared.rows.len();
    match ctx.writer.commit(prepared.rows).await {
        Ok(commit) => {
            tracing::debug!(
                rows,
                position = commit.last_position,
                control_id = msg.control_id(),
                "MLLP message staged"
            );
            reply(&msg, AckCode::AA, None)
        }
        Err(e) => {
            tracing::warn!(error = %e, control_id = msg.control_id(), "MLLP message not staged");
            reply(&msg, AckCode::AE, Some("staging unavailable, resend"))
        }
    }
}

/// The ingest request for a message's mapped events, or the ACK that refuses it:
/// AR for an unsupported type or a message that maps to no event (there is nothing to
/// store, and a resend would not change that), AE for missing or invalid data.
fn ingest_request(msg: &Message, mapped: Result<Vec<ClinicalEvent>, MapError>) -> Result<IngestRequest, String> {
    match mapped {
        Ok(events) => match events.first() {
            Some(first) => Ok(IngestRequest {
                request_id: format!("mllp:{}", first.event_id),
                events,
            }),
            None => {
                tracing::info!(control_id = msg.control_id(), "MLLP message maps to no event");
                Err(reply_with(
                    msg,
                    AckCode::AR,
                    ErrorCode::SegmentSequence,
                    "nothing to map: the message carries no event",
                ))
            }
        },
        Err(e @ MapError::Unsupported { .. }) => Err(reply_with(msg, AckCode::AR, e.error_code(), &e.to_string())),
        Err(e) => Err(reply_with(msg, AckCode::AE, e.error_code(), &e.to_string())),
    }
}

fn next_ack_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START_MS: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START_MS.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    });
    format!("ACK{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn reply(msg: &Message, code: AckCode, text: Option<&str>) -> String {
    ack(msg, code, &next_ack_id(), text)
}

fn reply_with(msg: &Message, code: AckCode, error: ErrorCode, text: &str) -> String {
    ack_with(msg, code, &next_ack_id(), Some((error, text)))
}

/// An ACK for bytes that are not a message: built from their MSH line when that much
/// parses (so MSA-2 still names the control id), else a bare ACK whose MSA-2 is the
/// best guess at MSH-10.
fn unparsed_ack(bytes: &[u8], code: AckCode, text: &str) -> String {
    let start = bytes.windows(3).position(|w| w == b"MSH").unwrap_or(0);
    let line_end = bytes[start..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map_or(bytes.len(), |i| start + i);
    let msh = &bytes[start..line_end];
    if let Ok(m) = parse_message(msh) {
        return reply(&m, code, Some(text));
    }
    let line = String::from_utf8_lossy(msh);
    let sep = line.chars().nth(3).filter(|c| !c.is_alphanumeric()).unwrap_or('|');
    let control_id: String = line
        .split(sep)
        .nth(9)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && !"|^~\\&".contains(*c))
        .collect();
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() || "|^~\\&".contains(c) { ' ' } else { c })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    format!(
        "MSH|^~\\&|||||{:04}{:02}{:02}{:02}{:02}{:02}+0000||ACK|{}|P|2.5\rMSA|{}|{}\rERR|||207^Application internal error^HL70357|E||||{}\r",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        next_ack_id(),
        code.as_str(),
        control_id,
        clean
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Vec<u8> {
        frame(body)
    }

    fn frames(d: &mut FrameDecoder) -> Vec<Frame> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    #[test]
    fn frame_split_across_reads() {
        let bytes = msg("MSH|A\rPID|1\r");
        for cut in 1..bytes.len() {
            let mut d = FrameDecoder::new(1024);
            d.push(&bytes[..cut]);
            let first = frames(&mut d);
            d.push(&bytes[cut..]);
            let mut all = first;
            all.extend(frames(&mut d));
            assert_eq!(all, vec![Frame::Message(b"MSH|A\rPID|1\r".to_vec())], "cut at {cut}");
        }
    }

    #[test]
    fn two_frames_in_one_read_come_out_in_order() {
        let mut bytes = msg("ONE");
        bytes.extend(msg("TWO"));
        let mut d = FrameDecoder::new(1024);
        d.push(&bytes);
        assert_eq!(
            frames(&mut d),
            vec![Frame::Message(b"ONE".to_vec()), Frame::Message(b"TWO".to_vec())]
        );
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn whitespace_between_frames_is_skipped() {
        let mut d = FrameDecoder::new(1024);
        d.push(b"\r\n \t");
        assert_eq!(d.next_frame(), None);
        assert!(!d.in_progress(), "whitespace does not start anything");
        let mut bytes = msg("MSG");
        bytes.extend(b"\r\n");
        bytes.extend(msg("NEXT"));
        bytes.extend(b"\n");
        d.push(&bytes);
        assert_eq!(
            frames(&mut d),
            vec![Frame::Message(b"MSG".to_vec()), Frame::Message(b"NEXT".to_vec())]
        );
        assert!(!d.in_progress());
    }

    #[test]
    fn bytes_outside_a_frame_are_reported_up_to_the_line_end() {
        // An unframed HL7 message: its MSH line comes out whole, even cut across reads.
        let mut d = FrameDecoder::new(1024);
        d.push(b"\r\nMSH|^~\\&|A|F");
        assert_eq!(d.next_frame(), None);
        assert!(d.in_progress(), "unframed input runs under the read timeout");
        d.push(b"|B|G\rPID|1\r");
        assert_eq!(d.next_frame(), Some(Frame::Unframed(b"MSH|^~\\&|A|F|B|G".to_vec())));
        // Garbage right before a frame ends at its 0x0B; the frame still decodes.
        let mut d = FrameDecoder::new(1024);
        let mut bytes = b"junk".to_vec();
        bytes.extend(msg("MSG"));
        d.push(&bytes);
        assert_eq!(
            frames(&mut d),
            vec![Frame::Unframed(b"junk".to_vec()), Frame::Message(b"MSG".to_vec())]
        );
        // A stray end of frame is not whitespace either.
        let mut d = FrameDecoder::new(1024);
        d.push(b"\x1c\r");
        assert_eq!(d.next_frame(), Some(Frame::Unframed(b"\x1c".to_vec())));
        // Endless garbage without a line end is cut at HEAD_BYTES, not held.
        let mut d = FrameDecoder::new(1024);
        d.push(&vec![b'x'; HEAD_BYTES + 10]);
        assert_eq!(d.next_frame(), Some(Frame::Unframed(vec![b'x'; HEAD_BYTES])));
    }

    #[test]
    fn a_large_frame_trickled_one_byte_at_a_time_decodes_in_linear_time() {
        // Segments of 100 bytes, with 0x1C inside the content (not followed by 0x0D) to
        // exercise the end search that resumes on a pending 0x1C.
        let mut body = Vec::new();
        while body.len() < 200_000 {
            body.extend_from_slice(b"OBX|1|ST|X^Y||");
            body.extend(std::iter::repeat_n(b'v', 80));
            body.extend_from_slice(b"\x1c|\r");
        }
        let mut bytes = b"\r\n".to_vec();
        bytes.extend(frame(std::str::from_utf8(&body).unwrap()));
        bytes.extend(frame("MSH|NEXT"));
        let mut d = FrameDecoder::new(1 << 20);
        let mut out = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            out.extend(frames(&mut d));
        }
        assert_eq!(out, vec![Frame::Message(body), Frame::Message(b"MSH|NEXT".to_vec())]);
        // Each byte is examined about once; rescanning the buffer on each read would
        // examine ~n^2/2 = 2e10 bytes here.
        let n = bytes.len() as u64;
        assert!(
            d.bytes_examined() <= 2 * n,
            "{} bytes examined for {n}",
            d.bytes_examined()
        );
        assert!(d.bytes_examined() >= n);
    }

    #[test]
    fn a_message_that_maps_to_no_event_gets_ar_not_a_panic() {
        let msg = parse_message(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A08|EMPTY-1|P|2.5\r").unwrap();
        let ack = ingest_request(&msg, Ok(Vec::new())).expect_err("no request for no event");
        let ack = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(ack.get("MSA-1").as_deref(), Some("AR"));
        assert_eq!(ack.get("MSA-2").as_deref(), Some("EMPTY-1"));
        assert!(ack.get("ERR-8").unwrap().contains("nothing to map"));
        // And the ordinary cases keep their codes.
        let unsupported = MapError::Unsupported {
            message_type: "SIU^S12".into(),
        };
        let ack = ingest_request(&msg, Err(unsupported)).unwrap_err();
        assert_eq!(
            parse_message(ack.as_bytes()).unwrap().get("MSA-1").as_deref(),
            Some("AR")
        );
        let event = ClinicalEvent {
            event_id: "F|EMPTY-1".into(),
            ..Default::default()
        };
        let request = ingest_request(&msg, Ok(vec![event])).unwrap();
        assert_eq!(request.request_id, "mllp:F|EMPTY-1");
    }

    #[test]
    fn unframed_input_gets_an_ar_only_when_it_is_hl7() {
        let ack = unframed_nak(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|RAW-1|P|2.5").expect("a NAK");
        let ack = parse_message(ack.as_bytes()).unwrap();
        assert_eq!(ack.get("MSA-1").as_deref(), Some("AR"));
        assert_eq!(ack.get("MSA-2").as_deref(), Some("RAW-1"));
        assert!(ack.get("ERR-8").unwrap().contains("not MLLP framed"));
        assert_eq!(unframed_nak(b"GET / HTTP/1.1"), None);
        assert_eq!(unframed_nak(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(unframed_nak(b"MSHX"), None);
    }

    #[test]
    fn oversize_frame_is_refused_without_holding_it() {
        let mut d = FrameDecoder::new(10);
        d.push(&[START]);
        d.push(b"MSH|^~\\&|0123456789");
        match d.next_frame() {
            Some(Frame::TooLarge(head)) => assert!(head.starts_with(b"MSH")),
            other => panic!("{other:?}"),
        }
        // The rest of the refused frame is dropped, not reported as unframed; the
        // next frame decodes.
        d.push(b"more\x1c");
        assert_eq!(d.next_frame(), None);
        d.push(b"\r");
        d.push(&msg("OK"));
        assert_eq!(frames(&mut d), vec![Frame::Message(b"OK".to_vec())]);
        // Exactly at the limit is fine.
        let mut d = FrameDecoder::new(3);
        d.push(&msg("ABC"));
        assert_eq!(d.next_frame(), Some(Frame::Message(b"ABC".to_vec())));
    }

    #[test]
    fn ack_for_unparsable_bytes_names_the_control_id() {
        // A broken body after a good MSH: the ACK is built from the MSH.
        let text = unparsed_ack(
            b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|CTL-9|P|2.5\rpid|bad\r",
            AckCode::AR,
            "bad segment",
        );
        let ack = parse_message(text.as_bytes()).unwrap();
        assert_eq!(ack.get("MSA-1").as_deref(), Some("AR"));
        assert_eq!(ack.get("MSA-2").as_deref(), Some("CTL-9"));
        // A short MSH: best effort from the raw fields.
        let text = unparsed_ack(
            b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|CTL-8",
            AckCode::AR,
            "short | header",
        );
        let ack = parse_message(text.as_bytes()).unwrap();
        assert_eq!(ack.get("MSA-2").as_deref(), Some("CTL-8"));
        assert!(ack.get("ERR-8").unwrap().contains("short"));
        // No MSH at all.
        let ack = parse_message(unparsed_ack(b"garbage", AckCode::AR, "x").as_bytes()).unwrap();
        assert_eq!(ack.get("MSA-1").as_deref(), Some("AR"));
    }
}
