//! HL7 v2 (2.3 to 2.8): messages, batch/file envelopes and ACKs.
//!
//! Owns reading bytes into located, typed values and writing acknowledgements. Does not
//! own transport (MLLP framing, sockets) or de-duplication; those live in the adapters
//! that call it. [`map`] turns a parsed message into canonical `ClinicalEvent`s (pure).
//!
//! ```
//! use hospital_sources::hl7v2::{parse_message, ack, AckCode};
//!
//! let msg = parse_message(b"MSH|^~\\&|LAB|N|HIS|S|202403011230||ORU^R01|C42|P|2.5\rPID|1||123^^^H^MR||DOE^JANE\r").unwrap();
//! assert_eq!((msg.message_type(), msg.trigger_event(), msg.control_id()), ("ORU", Some("R01"), "C42"));
//! assert_eq!(msg.get("PID-5-2").as_deref(), Some("JANE"));
//! let reply = ack(&msg, AckCode::AA, "A1", None);
//! assert!(reply.contains("\rMSA|AA|C42\r"));
//! ```
//!
//! Decisions:
//! - Text: UTF-8 when the bytes are UTF-8; otherwise ISO-8859-1, transcoded losslessly,
//!   unless MSH-18 declares UTF-8, which makes invalid bytes an error. A UTF-8 BOM at the
//!   start is dropped.
//! - Time: DTM values without an offset are read in [`ParseOptions::default_offset`]
//!   (UTC by default) and always returned as UTC instants.
//! - Line endings: CR, LF and CRLF all end a segment; blank lines are skipped.

mod ack;
mod batch;
mod dtm;
mod encoding;
mod error;
pub mod map;
mod message;
mod path;

pub use ack::{ack, ack_at, ack_with, ack_with_at, AckCode, ErrorCode};
pub use batch::{parse_file_with, parse_message_with};
pub use dtm::{parse_dtm, Dtm, Precision};
pub use encoding::Delimiters;
pub use error::{ErrorKind, Location, ParseError, PathError};
pub use message::{Charset, Message, ParseOptions, Segment};
pub use path::Path;

/// Parses a file or byte stream of messages with default options. See [`parse_file_with`].
pub fn parse_file(bytes: &[u8]) -> Vec<Result<Message, ParseError>> {
    parse_file_with(bytes, ParseOptions::default())
}

/// Parses exactly one message with default options. See [`parse_message_with`].
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    parse_message_with(bytes, ParseOptions::default())
}
