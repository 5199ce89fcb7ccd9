//! Splitting an input into messages: one MLLP frame, or a file of bare messages and/or
//! FHS/BHS ... BTS/FTS envelopes.
//!
//! Rules:
//! - A message runs from its MSH to the next MSH, FHS, BHS, BTS, FTS or the end.
//! - BTS-1 must equal the messages counted since the BHS (or since the previous BTS or
//!   the start); FTS-1 must equal the batches in the file, where a run of bare messages
//!   not inside a BHS counts as one batch. Empty counts are not checked.
//! - FHS while a file is open, or BHS while a batch is open, is an error; the message it
//!   cut into is reported failed (its end is uncertain), not delivered truncated.
//! - Segments outside any message are reported as one error per run.
//! - A bad message never stops the ones after it.

use super::error::{ErrorKind, Location, ParseError};
use super::message::{lines, Message, ParseOptions};

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Parses one message (an MLLP frame's payload). Anything but exactly one message is an
/// error: segments before the MSH, a second MSH, or batch/file headers and trailers.
pub fn parse_message_with(bytes: &[u8], options: ParseOptions) -> Result<Message, ParseError> {
    Message::build(strip_bom(bytes), 1, options)
}

struct Splitter<'a> {
    bytes: &'a [u8],
    options: ParseOptions,
    items: Vec<Result<Message, ParseError>>,
    /// Open message: (byte start, byte end, first line).
    current: Option<(usize, usize, usize)>,
    messages: usize,
    /// Run of segments outside any message: (first line, first id, count).
    orphans: Option<(usize, String, usize)>,
    file_open: bool,
    batch_open: bool,
    bare_batch_open: bool,
    batch_messages: u64,
    file_batches: u64,
}

impl<'a> Splitter<'a> {
    fn flush_message(&mut self) {
        if let Some((start, end, line)) = self.current.take() {
            let index = self.messages;
            self.messages += 1;
            let result = Message::build(&self.bytes[start..end], line, self.options).map_err(|e| e.at_message(index));
            self.items.push(result);
        }
    }

    fn flush_orphans(&mut self) {
        if let Some((line, first, count)) = self.orphans.take() {
            let location = Location {
                line: Some(line),
                segment: Some(first.clone()),
                ..Location::default()
            };
            self.items
                .push(Err(ParseError::new(ErrorKind::NoMsh { first, count }, location)));
        }
    }

    /// A header where one is already open: fail the message it cut into, if any.
    fn misplaced(&mut self, segment: &str, line: usize, reason: &'static str) {
        self.flush_orphans();
        let message = self.current.take().map(|_| {
            self.messages += 1;
            self.messages - 1
        });
        let location = Location {
            message,
            line: Some(line),
            segment: Some(segment.to_owned()),
            ..Location::default()
        };
        let kind = ErrorKind::UnexpectedSegment {
            segment: segment.to_owned(),
            reason,
        };
        self.items.push(Err(ParseError::new(kind, location)));
    }

    fn check_count(&mut self, seg: &[u8], line: usize, trailer: &'static str, counted: &'static str, actual: u64) {
        let Some(&sep) = seg.get(3) else { return };
        let Some(value) = seg.split(|&b| b == sep).nth(1) else {
            return;
        };
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let location = Location {
            line: Some(line),
            segment: Some(trailer.to_owned()),
            field: Some(1),
            ..Location::default()
        };
        let kind = match value.parse::<u64>() {
            Ok(declared) if value.bytes().all(|b| b.is_ascii_digit()) => {
                if declared == actual {
                    return;
                }
                ErrorKind::TrailerCountMismatch {
                    trailer,
                    counted,
                    declared,
                    actual,
                }
            }
            _ => ErrorKind::BadTrailerCount {
                trailer,
                value: value.to_owned(),
            },
        };
        self.items.push(Err(ParseError::new(kind, location)));
    }

    fn segment(&mut self, line: usize, start: usize, end: usize) {
        let seg = &self.bytes[start..end];
        let id = &seg[..seg.len().min(3)];
        match id {
            b"MSH" => {
                self.flush_orphans();
                self.flush_message();
                self.current = Some((start, end, line));
                self.batch_messages += 1;
                if !self.batch_open {
                    self.bare_batch_open = true;
                }
            }
            b"FHS" if self.file_open || self.batch_open => {
                self.misplaced("FHS", line, "a file or batch is already open (no FTS/BTS before it)");
            }
            b"BHS" if self.batch_open => {
                self.misplaced("BHS", line, "a batch is already open (no BTS before it)");
            }
            b"FHS" => {
                self.flush_orphans();
                self.flush_message();
                self.file_open = true;
                self.bare_batch_open = false;
                self.batch_messages = 0;
                self.file_batches = 0;
            }
            b"BHS" => {
                self.flush_orphans();
                self.flush_message();
                if self.bare_batch_open {
                    self.file_batches += 1;
                    self.bare_batch_open = false;
                }
                self.batch_open = true;
                self.batch_messages = 0;
            }
            b"BTS" => {
                self.flush_orphans();
                self.flush_message();
                self.check_count(seg, line, "BTS", "messages in the batch", self.batch_messages);
                self.file_batches += 1;
                self.batch_open = false;
                self.bare_batch_open = false;
                self.batch_messages = 0;
            }
            b"FTS" => {
                self.flush_orphans();
                self.flush_message();
                if self.batch_open || self.bare_batch_open {
                    self.file_batches += 1;
                }
                self.check_count(seg, line, "FTS", "batches in the file", self.file_batches);
                self.file_open = false;
                self.batch_open = false;
                self.bare_batch_open = false;
                self.batch_messages = 0;
                self.file_batches = 0;
            }
            _ => match (&mut self.current, &mut self.orphans) {
                (Some((_, msg_end, _)), _) => *msg_end = end,
                (None, Some((_, _, count))) => *count += 1,
                (None, None) => self.orphans = Some((line, String::from_utf8_lossy(id).into_owned(), 1)),
            },
        }
    }
}

/// Parses a file: bare messages, batches, or a file envelope. Returns one entry per
/// message in order, with file-level errors (misplaced headers, segments outside a
/// message, trailer count mismatches) interleaved where they occur. An empty input
/// yields a single [`ErrorKind::Empty`].
pub fn parse_file_with(bytes: &[u8], options: ParseOptions) -> Vec<Result<Message, ParseError>> {
    let bytes = strip_bom(bytes);
    let mut s = Splitter {
        bytes,
        options,
        items: Vec::new(),
        current: None,
        messages: 0,
        orphans: None,
        file_open: false,
        batch_open: false,
        bare_batch_open: false,
        batch_messages: 0,
        file_batches: 0,
    };
    let mut any = false;
    for (line, range) in lines(bytes) {
        any = true;
        s.segment(line, range.start, range.end);
    }
    s.flush_orphans();
    s.flush_message();
    if !any {
        s.items
            .push(Err(ParseError::new(ErrorKind::Empty, Location::default())));
    }
    s.items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msh(id: &str) -> String {
        format!("MSH|^~\\&|APP|FAC|RAPP|RFAC|20070101112951||ADT^A04^ADT_A01|{id}|P|2.5\rEVN|A04\rPID|1||{id}^^^100^A||DOE^{id}\r")
    }

    fn file(parts: &[&str]) -> Vec<Result<Message, ParseError>> {
        parse_file_with(parts.concat().as_bytes(), ParseOptions::default())
    }

    fn ids(items: &[Result<Message, ParseError>]) -> Vec<String> {
        items
            .iter()
            .map(|r| match r {
                Ok(m) => m.control_id().to_owned(),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn bare_messages() {
        let items = file(&[&msh("1"), &msh("2"), &msh("3")]);
        assert_eq!(ids(&items), ["1", "2", "3"]);
        let m = items[1].as_ref().unwrap();
        assert_eq!(m.get("PID-5-2").as_deref(), Some("2"));
        assert_eq!(m.all_segments().count(), 3);
        assert_eq!(m.segment("MSH").unwrap().line(), 4);
    }

    #[test]
    fn batches_and_files() {
        let bhs = "BHS|^~\\&|APP|FAC\r";
        let fhs = "FHS|^~\\&|APP|FAC\r";
        let items = file(&[
            fhs,
            bhs,
            &msh("1"),
            &msh("2"),
            "BTS|2\r",
            bhs,
            &msh("3"),
            "BTS|1\r",
            "FTS|2\r",
        ]);
        assert_eq!(ids(&items), ["1", "2", "3"]);
        // A run of bare messages inside a file is one batch.
        let items = file(&[fhs, &msh("1"), &msh("2"), "FTS|1\r"]);
        assert_eq!(ids(&items), ["1", "2"]);
        // Missing trailers are tolerated.
        let items = file(&[fhs, bhs, &msh("1")]);
        assert_eq!(ids(&items), ["1"]);
        // Empty or blank counts are not checked.
        let items = file(&[bhs, &msh("1"), "BTS|\r", "FTS\r"]);
        assert_eq!(ids(&items), ["1"]);
        // Bare message, then a batch.
        let items = file(&[&msh("1"), bhs, &msh("2"), "BTS|1\r"]);
        assert_eq!(ids(&items), ["1", "2"]);
    }

    #[test]
    fn trailer_count_mismatch() {
        let bhs = "BHS|^~\\&|APP|FAC\r";
        let items = file(&[bhs, &msh("1"), &msh("2"), "BTS|3\r"]);
        assert_eq!(items.len(), 3);
        let e = items[2].as_ref().unwrap_err();
        assert_eq!(
            *e.kind(),
            ErrorKind::TrailerCountMismatch {
                trailer: "BTS",
                counted: "messages in the batch",
                declared: 3,
                actual: 2
            }
        );
        assert_eq!((e.location().line, e.location().field), (Some(8), Some(1)));
        let items = file(&["FHS|^~\\&\r", bhs, &msh("1"), "BTS|1\r", "FTS|2\r"]);
        let e = items[1].as_ref().unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::TrailerCountMismatch {
                trailer: "FTS",
                declared: 2,
                actual: 1,
                ..
            }
        ));
        let items = file(&[bhs, &msh("1"), "BTS|one\r"]);
        assert!(matches!(
            items[1].as_ref().unwrap_err().kind(),
            ErrorKind::BadTrailerCount { trailer: "BTS", .. }
        ));
        let items = file(&[bhs, &msh("1"), "BTS|-1\r"]);
        assert!(matches!(
            items[1].as_ref().unwrap_err().kind(),
            ErrorKind::BadTrailerCount { .. }
        ));
    }

    #[test]
    fn one_bad_message_does_not_stop_the_others() {
        let bad = "MSH|^~\\&|APP|FAC|RAPP|RFAC|2007130111||ADT^A04|BAD|P|2.5\rPID|1\r";
        let items = file(&["BHS|^~\\&\r", &msh("1"), bad, &msh("3"), "BTS|3\r"]);
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[2].is_ok());
        let e = items[1].as_ref().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::BadDate { .. }));
        assert_eq!(
            (
                e.location().message,
                e.location().line,
                e.location().segment.as_deref(),
                e.location().field
            ),
            (Some(1), Some(5), Some("MSH"), Some(7))
        );
        assert_eq!(
            e.to_string(),
            "message 1, line 5, segment 1 (MSH), field 7: bad HL7 date/time \"2007130111\": month out of range"
        );
    }

    #[test]
    fn segments_outside_messages() {
        let items = file(&["BHS|^~\\&\r", "EVN|A04\rPID|1\r", "BTS|1\r"]);
        assert_eq!(items.len(), 2);
        let e = items[0].as_ref().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::NoMsh { ref first, count: 2 } if first == "EVN"));
        assert_eq!(e.location().line, Some(2));
        assert!(matches!(
            items[1].as_ref().unwrap_err().kind(),
            ErrorKind::TrailerCountMismatch {
                declared: 1,
                actual: 0,
                ..
            }
        ));
    }

    #[test]
    fn misplaced_headers_fail_the_message_they_cut() {
        let items = file(&["BHS|^~\\&\r", &msh("1"), "BHS|^~\\&\r", "PID|1\r", "BTS|1\r"]);
        assert_eq!(items.len(), 2);
        let e = items[0].as_ref().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::UnexpectedSegment { ref segment, .. } if segment == "BHS"));
        assert_eq!((e.location().message, e.location().line), (Some(0), Some(5)));
        assert!(matches!(
            items[1].as_ref().unwrap_err().kind(),
            ErrorKind::NoMsh { count: 1, .. }
        ));
        // With no message open, only the header is reported.
        let items = file(&["FHS|^~\\&\r", "FHS|^~\\&\r", &msh("1")]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap_err().location().message, None);
        assert_eq!(ids(&items[1..]), ["1"]);
    }

    #[test]
    fn empty_and_garbage_input() {
        for input in [&b""[..], b"\r\n\r\n", BOM] {
            let items = parse_file_with(input, ParseOptions::default());
            assert_eq!(items.len(), 1);
            assert_eq!(*items[0].as_ref().unwrap_err().kind(), ErrorKind::Empty);
        }
        let items = parse_file_with(b"hello\nworld\n", ParseOptions::default());
        assert!(matches!(
            items[0].as_ref().unwrap_err().kind(),
            ErrorKind::NoMsh { count: 2, .. }
        ));
    }

    #[test]
    fn single_message_rules() {
        let ok = parse_message_with(msh("1").as_bytes(), ParseOptions::default()).unwrap();
        assert_eq!(ok.control_id(), "1");
        let with_bom = [BOM, msh("2").as_bytes()].concat();
        assert_eq!(
            parse_message_with(&with_bom, ParseOptions::default())
                .unwrap()
                .control_id(),
            "2"
        );
        let two = [msh("1"), msh("2")].concat();
        let e = parse_message_with(two.as_bytes(), ParseOptions::default()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::UnexpectedSegment { ref segment, .. } if segment == "MSH"));
        assert_eq!(e.location().line, Some(4));
        let e = parse_message_with(format!("BHS|^~\\&\r{}", msh("1")).as_bytes(), ParseOptions::default()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::NoMsh { .. }));
        let e = parse_message_with(b"", ParseOptions::default()).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Empty);
    }
}
