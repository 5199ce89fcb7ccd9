//! HL7 v2 over MLLP: a TCP listener that takes framed messages, maps them to canonical
//! events and sends them through the same door as gRPC (`ingest::prepare`, then the
//! staging writer's group commit), answering each message with an ACK.
//!
//! Owns framing, per-connection ordering and the ACK code chosen for each outcome. Must
//! not validate or store on its own: no side door around ingest or staging.
//!
//! ACK semantics (DOMAIN.md): AA only after the staging commit returned (AA means
//! durable); AR when the message is unacceptable (unparsable, unsupported type, too
//! big); AE when it was understood but cannot be taken (missing data, an event rejected
//! by ingest, staging unavailable: the sender resends). MSA-2 is always the message's
//! own MSH-10. Frames of one connection are handled one at a time, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hospital_proto::ingest::IngestRequest;
use hospital_sources::hl7v2::map::{to_events, MapError, MapOptions};
use hospital_sources::hl7v2::{ack, ack_with, parse_message, AckCode, ErrorCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::ingest::{self, IngestOptions};
use crate::staging::WriterHandle;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

/// What the decoder found in the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The bytes between 0x0B and 0x1C 0x0D.
    Message(Vec<u8>),
    /// A frame grew past the limit before its end; holds its first bytes (for a best
    /// effort control id). The connection must be closed after answering.
    TooLarge(Vec<u8>),
}

/// Incremental MLLP decoder: bytes in, frames out, bounded memory.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    in_frame: bool,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            in_frame: false,
            max: max_message_bytes,
        }
    }

    /// Adds bytes read from the socket. Bytes outside a frame (before 0x0B) are dropped.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if !self.in_frame {
            match bytes.iter().position(|&b| b == START) {
                Some(i) => {
                    bytes = &bytes[i + 1..];
                    self.in_frame = true;
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if !self.in_frame {
            return None;
        }
        match self.buf.windows(2).position(|w| w == END) {
            Some(end) if end <= self.max => {
                let rest = self.buf.split_off(end + 2);
                let mut frame = std::mem::take(&mut self.buf);
                frame.truncate(end);
                self.in_frame = false;
                // What follows the frame may hold the next one (or garbage before it).
                self.push(&rest);
                Some(Frame::Message(frame))
            }
            _ if self.buf.len() > self.max => {
                let mut head = std::mem::take(&mut self.buf);
                head.truncate(4096);
                self.in_frame = false;
                Some(Frame::TooLarge(head))
            }
            _ => None,
        }
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

/// What a connection needs: the door's options and the staging writer.
#[derive(Clone)]
pub(crate) struct MllpContext {
    pub writer: WriterHandle,
    pub ingest: IngestOptions,
    pub max_message_bytes: usize,
    pub map: MapOptions,
}

/// Binds `addr` and spawns the accept loop. The task ends after `shutdown`, once every
/// connection has answered the frame it was handling.
pub(crate) async fn start(
    addr: SocketAddr,
    ctx: MllpContext,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let ctx = Arc::new(ctx);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(connection(stream, peer, ctx.clone(), shutdown.clone()));
                    }
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

#[tracing::instrument(skip_all, fields(%peer))]
async fn connection(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<MllpContext>, shutdown: CancellationToken) {
    let mut decoder = FrameDecoder::new(ctx.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = stream.read(&mut buf) => match r {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "MLLP read failed");
                    return;
                }
            },
        };
        decoder.push(&buf[..n]);
        while let Some(f) = decoder.next_frame() {
            let (reply, close) = match f {
                Frame::Message(bytes) => (handle(&bytes, &ctx).await, false),
                Frame::TooLarge(head) => {
                    let text = format!("message larger than {} bytes", ctx.max_message_bytes);
                    tracing::warn!(max = ctx.max_message_bytes, "MLLP frame too large; closing");
                    (unparsed_ack(&head, AckCode::AR, &text), true)
                }
            };
            if let Err(e) = stream.write_all(&frame(&reply)).await {
                tracing::debug!(error = %e, "MLLP write failed");
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
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
    let events = match to_events(&msg, &ctx.map) {
        Ok(events) => events,
        Err(e @ MapError::Unsupported { .. }) => return reply_with(&msg, AckCode::AR, e.error_code(), &e.to_string()),
        Err(e) => return reply_with(&msg, AckCode::AE, e.error_code(), &e.to_string()),
    };
    let request = IngestRequest {
        request_id: format!("mllp:{}", events[0].event_id),
        events,
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
    fn garbage_before_start_is_dropped() {
        let mut d = FrameDecoder::new(1024);
        d.push(b"\r\nnoise\x1c\r");
        assert_eq!(d.next_frame(), None);
        let mut bytes = b"junk".to_vec();
        bytes.extend(msg("MSG"));
        bytes.extend(b"between");
        bytes.extend(msg("NEXT"));
        d.push(&bytes);
        assert_eq!(
            frames(&mut d),
            vec![Frame::Message(b"MSG".to_vec()), Frame::Message(b"NEXT".to_vec())]
        );
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
