//! Parse errors: what went wrong and exactly where in the input.

use std::fmt;

/// Where in the input an error was found. Every part is optional because some errors
/// (an empty input) have no position, and file-level errors belong to no message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// 0-based index of the message in the file, counting every MSH (good or bad).
    pub message: Option<usize>,
    /// 1-based physical line of the input; CR, LF and CRLF each end one line.
    pub line: Option<usize>,
    /// 1-based position of the segment inside its message (MSH is 1).
    pub segment_index: Option<usize>,
    /// The segment id as found (e.g. `PID`, `BTS`).
    pub segment: Option<String>,
    /// 1-based field number, HL7-counted (MSH-1 is the field separator).
    pub field: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = self.message {
            parts.push(format!("message {m}"));
        }
        if let Some(l) = self.line {
            parts.push(format!("line {l}"));
        }
        match (&self.segment, self.segment_index) {
            (Some(s), Some(i)) => parts.push(format!("segment {i} ({s})")),
            (Some(s), None) => parts.push(format!("segment {s}")),
            (None, Some(i)) => parts.push(format!("segment {i}")),
            (None, None) => {}
        }
        if let Some(n) = self.field {
            parts.push(format!("field {n}"));
        }
        if parts.is_empty() {
            f.write_str("start of input")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input holds no segments at all.
    #[error("empty input: no segments")]
    Empty,
    /// Segments that belong to no message: nothing before them started with MSH.
    #[error("{count} segment(s) starting with {first} are not inside a message: no MSH before them")]
    NoMsh { first: String, count: usize },
    /// MSH too short to read its delimiters, or missing required fields MSH-1..MSH-12.
    #[error("MSH is too short: {fields} field(s), MSH-1 to MSH-12 are required")]
    ShortMsh { fields: usize },
    /// MSH-1 is not a usable field separator.
    #[error("bad field separator {found:?} in MSH-1: {reason}")]
    BadFieldSeparator { found: String, reason: &'static str },
    /// MSH-2 is not 4 (or, from 2.7, 5) distinct delimiter characters.
    #[error("bad encoding characters {found:?} in MSH-2: {reason}")]
    BadEncodingCharacters { found: String, reason: &'static str },
    /// A line that is not an HL7 segment (id must be 3 of A-Z/0-9, starting with a letter).
    #[error("not a segment: {found:?} does not start with a segment id and the field separator")]
    BadSegmentId { found: String },
    /// A required header field is empty.
    #[error("required field {field} is empty")]
    MissingField { field: &'static str },
    /// A value that should be an HL7 DTM/TS date-time is not one.
    #[error("bad HL7 date/time {value:?}: {reason}")]
    BadDate { value: String, reason: &'static str },
    /// FHS/BHS where one is already open, or a header/trailer inside a single message.
    #[error("unexpected {segment}: {reason}")]
    UnexpectedSegment { segment: String, reason: &'static str },
    /// BTS-1 (messages in the batch) or FTS-1 (batches in the file) does not match.
    #[error("{trailer} declares {declared} but the {counted} counted {actual}")]
    TrailerCountMismatch {
        trailer: &'static str,
        counted: &'static str,
        declared: u64,
        actual: u64,
    },
    /// BTS-1 or FTS-1 is not a whole number.
    #[error("{trailer}-1 count {value:?} is not a whole number")]
    BadTrailerCount { trailer: &'static str, value: String },
    /// Bytes that are not UTF-8 in a message whose MSH-18 declares UTF-8. (Without that
    /// declaration non-UTF-8 bytes are read as ISO-8859-1, see [`super::Charset`].)
    #[error("invalid UTF-8 at byte {offset} of the message although MSH-18 declares UTF-8")]
    InvalidUtf8 { offset: usize },
}

/// A parse failure: [`ErrorKind`] at a [`Location`]. Boxed, so `Result<Message, _>`
/// stays small on the hot path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .0.location, .0.kind)]
pub struct ParseError(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    location: Location,
    kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, location: Location) -> Self {
        Self(Box::new(Inner { location, kind }))
    }

    pub(crate) fn at_message(mut self, index: usize) -> Self {
        self.0.location.message = Some(index);
        self
    }

    /// Where it happened.
    pub fn location(&self) -> &Location {
        &self.0.location
    }

    /// What happened.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }
}

/// A path such as `PID-3(2)-1` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad HL7 path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}
