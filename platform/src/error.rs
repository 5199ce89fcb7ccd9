//! The platform's error type, and the one place where errors become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field of a request that failed validation, named by its path
/// (e.g. `events[3].vital_signs.observations[0].unit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (not one event of it: those are rejections).
    #[error("invalid request: {message}")]
    InvalidArgument {
        message: String,
        violations: Vec<Violation>,
    },
    /// ClickHouse could not be reached or refused the write; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A change-feed subscription asked to start after a position that is not
    /// committed (yet): `end` is the last committed position.
    #[error("position {requested} is past the end of the change feed ({end})")]
    PositionPastEnd { requested: u64, end: u64 },
    /// The server is shutting down; retry against another instance or later.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The server is shutting down; the message says what the caller should do.
    #[error("{0}")]
    Closing(String),
    /// A subscriber fell behind the fan-out; the message says how to catch up.
    #[error("{0}")]
    FellBehind(String),
    /// Stored data could not be read back as what was written.
    #[error("data loss: {0}")]
    DataLoss(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<clickhouse::error::Error> for Error {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as Ch;
        match e {
            Ch::Network(_) | Ch::TimedOut => Error::Unavailable(e.to_string()),
            Ch::BadResponse(text) => match clickhouse_failure(&text) {
                Retry::Later => Error::Unavailable(format!("ClickHouse: {}", bounded(&text, MAX_MESSAGE_BYTES))),
                Retry::Never => Error::Internal(format!("ClickHouse: {}", bounded(&text, MAX_MESSAGE_BYTES))),
            },
            other => Error::Internal(format!("clickhouse: {other}")),
        }
    }
}

/// Whether a caller may retry after a ClickHouse server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The server is overloaded, restarting, out of memory or lost a replica: UNAVAILABLE.
    Later,
    /// The platform sent something the server can never accept (a query, schema or
    /// credentials problem): retrying cannot help, INTERNAL.
    Never,
}

/// ClickHouse exception codes (`ErrorCodes.cpp`) that say "not now" rather than "never".
/// Every other exception answered by the server is transient too unless it is listed in
/// [`CLICKHOUSE_PERMANENT`]: ingest is idempotent, so a retry is always safe.
pub const CLICKHOUSE_TRANSIENT: &[(u32, &str)] = &[
    (159, "TIMEOUT_EXCEEDED"),
    (160, "TOO_SLOW"),
    (202, "TOO_MANY_SIMULTANEOUS_QUERIES"),
    (203, "NO_FREE_CONNECTION"),
    (209, "SOCKET_TIMEOUT"),
    (210, "NETWORK_ERROR"),
    (236, "ABORTED"),
    (241, "MEMORY_LIMIT_EXCEEDED"),
    (242, "TABLE_IS_READ_ONLY"),
    (252, "TOO_MANY_PARTS"),
    (285, "TOO_FEW_LIVE_REPLICAS"),
    (319, "UNKNOWN_STATUS_OF_INSERT"),
    (394, "QUERY_WAS_CANCELLED"),
    (425, "SYSTEM_ERROR"),
    (999, "KEEPER_EXCEPTION"),
];

/// ClickHouse exception codes that mean the platform's query, schema, data or
/// credentials are wrong: a bug or a misconfiguration, never fixed by retrying.
pub const CLICKHOUSE_PERMANENT: &[(u32, &str)] = &[
    (6, "CANNOT_PARSE_TEXT"),
    (16, "NO_SUCH_COLUMN_IN_TABLE"),
    (26, "CANNOT_PARSE_QUOTED_STRING"),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
    (33, "CANNOT_READ_ALL_DATA"),
    (36, "BAD_ARGUMENTS"),
    (38, "CANNOT_PARSE_DATE"),
    (41, "CANNOT_PARSE_DATETIME"),
    (43, "ILLEGAL_TYPE_OF_ARGUMENT"),
    (44, "ILLEGAL_COLUMN"),
    (46, "UNKNOWN_FUNCTION"),
    (47, "UNKNOWN_IDENTIFIER"),
    (48, "NOT_IMPLEMENTED"),
    (53, "TYPE_MISMATCH"),
    (60, "UNKNOWN_TABLE"),
    (62, "SYNTAX_ERROR"),
    (69, "ARGUMENT_OUT_OF_BOUND"),
    (70, "CANNOT_CONVERT_TYPE"),
    (73, "UNKNOWN_FORMAT"),
    (81, "UNKNOWN_DATABASE"),
    (117, "INCORRECT_DATA"),
    (158, "TOO_MANY_ROWS"),
    (164, "READONLY"),
    (192, "UNKNOWN_USER"),
    (193, "WRONG_PASSWORD"),
    (194, "REQUIRED_PASSWORD"),
    (195, "IP_ADDRESS_NOT_ALLOWED"),
    (497, "ACCESS_DENIED"),
    (516, "AUTHENTICATION_FAILED"),
];

/// Classifies the text of a ClickHouse error answer: `Code: N, e.displayText() = ...`
/// (18.16), `Code: N. DB::Exception: ...` (current), a bare exception code (from the
/// `X-ClickHouse-Exception-Code` header), or `503 Service Unavailable` (no exception:
/// a proxy or a server still starting).
pub fn clickhouse_failure(text: &str) -> Retry {
    let text = text.trim();
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let exception = match text.strip_prefix("Code: ") {
        Some(rest) => digits(rest),
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => {
            // An HTTP status without an exception: 5xx is the server's state, 4xx ours.
            return match digits(text) {
                Some(status) if (500..600).contains(&status) => Retry::Later,
                _ => Retry::Never,
            };
        }
    };
    match exception {
        Some(code) if CLICKHOUSE_PERMANENT.iter().any(|(c, _)| *c == code) => Retry::Never,
        _ => Retry::Later,
    }
}

/// Longest message put in a status (it travels in a response header).
const MAX_MESSAGE_BYTES: usize = 1024;
/// Longest field path or description of one violation in a status or a rejection.
pub const MAX_VIOLATION_BYTES: usize = 512;
/// Budget of the encoded `google.rpc.BadRequest` details (also a header): violations
/// beyond it are counted, not listed, so that no client's header limit is exceeded.
const MAX_DETAILS_BYTES: usize = 4096;
/// How much of a bad value is quoted back to its sender.
pub const QUOTE_PREFIX_CHARS: usize = 64;

/// A value echoed back to its sender, quoted: whole when short, else its first
/// [`QUOTE_PREFIX_CHARS`] characters and its length (`"abc..."... (5242880 bytes)`), so
/// that an answer never grows with what it quotes.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_PREFIX_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &value[..cut], value.len()),
    }
}

/// Longest identifier echoed as it is (ids are valid up to 128 bytes).
const MAX_ECHOED_ID_BYTES: usize = 128;

/// An identifier echoed in an answer (e.g. a rejection's `event_id`): as it is when it
/// could be valid, else its first [`QUOTE_PREFIX_CHARS`] characters and its length.
pub fn echo(id: &str) -> String {
    match id.char_indices().nth(QUOTE_PREFIX_CHARS) {
        Some((cut, _)) if id.len() > MAX_ECHOED_ID_BYTES => format!("{}... ({} bytes)", &id[..cut], id.len()),
        _ => id.to_string(),
    }
}

/// `text` as it is when it fits in `max` bytes, else cut at a character boundary with
/// its full length noted.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let note = format!("... ({} bytes)", text.len());
    let mut cut = max.saturating_sub(note.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{note}", &text[..cut])
}

impl Error {
    /// A request-level INVALID_ARGUMENT naming one field.
    pub fn bad_field(message: impl Into<String>, field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
            violations: vec![Violation::new(field, description)],
        }
    }

    /// The error a request stream ended with, as the platform answers it: a message that
    /// is not valid protobuf (tonic reports INTERNAL) is the caller's error.
    pub fn from_inbound(status: &Status) -> Option<Self> {
        let message = status.message();
        let undecodable = status.code() == Code::Internal
            && (message.starts_with("failed to decode Protobuf message") || message == "Missing request message.");
        undecodable.then(|| {
            Error::bad_field(
                format!("the request is not a valid protobuf message: {}", bounded(message, 256)),
                "request",
                "not a valid protobuf encoding of the method's request message",
            )
        })
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { message, violations } => {
                let mut details = ErrorDetails::new();
                let mut size = 0;
                for (i, v) in violations.iter().enumerate() {
                    let field = bounded(&v.field, MAX_VIOLATION_BYTES);
                    let description = bounded(&v.description, MAX_VIOLATION_BYTES);
                    size += field.len() + description.len() + 8;
                    if size > MAX_DETAILS_BYTES {
                        details.add_bad_request_violation(
                            "",
                            format!("and {} more violations, not listed", violations.len() - i),
                        );
                        break;
                    }
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, bounded(&message, MAX_MESSAGE_BYTES), details)
            }
            Error::Unavailable(m) => {
                Status::unavailable(bounded(&format!("staging zone unavailable: {m}"), MAX_MESSAGE_BYTES))
            }
            Error::PositionPastEnd { requested, end } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    "after_position",
                    format!("must be at most the committed position {end}"),
                );
                Status::with_error_details(
                    Code::OutOfRange,
                    format!(
                        "after_position {requested} is past the end of the change feed: the last committed position is {end}"
                    ),
                    details,
                )
            }
            Error::ShuttingDown => Status::unavailable("server is shutting down; resend unacknowledged requests"),
            Error::Closing(m) => Status::unavailable(bounded(&m, MAX_MESSAGE_BYTES)),
            Error::FellBehind(m) => Status::resource_exhausted(bounded(&m, MAX_MESSAGE_BYTES)),
            Error::DataLoss(m) => Status::data_loss(bounded(&m, MAX_MESSAGE_BYTES)),
            Error::Internal(m) => Status::internal(bounded(&m, MAX_MESSAGE_BYTES)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as Ch;

    fn code_of(e: Error) -> Code {
        Status::from(e).code()
    }

    #[test]
    fn clickhouse_errors_map_to_retryable_or_not() {
        let table: &[(&str, Code)] = &[
            // Answered by the server, transient: retry later.
            (
                "Code: 252, e.displayText() = DB::Exception: Too many parts (300), e.what() = DB::Exception",
                Code::Unavailable,
            ),
            (
                "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
                Code::Unavailable,
            ),
            ("Code: 159, e.displayText() = DB::Exception: Timeout exceeded", Code::Unavailable),
            ("Code: 242. DB::Exception: Table is in readonly mode", Code::Unavailable),
            ("202", Code::Unavailable),
            ("503 Service Unavailable", Code::Unavailable),
            // An exception not known to be permanent is the server's state: retry.
            ("Code: 1001. DB::Exception: std::exception", Code::Unavailable),
            // The platform's own query, schema or credentials: never retryable.
            (
                "Code: 60, e.displayText() = DB::Exception: Table staging.nope doesn't exist., e.what() = DB::Exception",
                Code::Internal,
            ),
            ("Code: 62. DB::Exception: Syntax error", Code::Internal),
            ("Code: 516. DB::Exception: default: Authentication failed", Code::Internal),
            ("Code: 193, e.displayText() = DB::Exception: Wrong password", Code::Internal),
            ("60", Code::Internal),
            ("404 Not Found", Code::Internal),
        ];
        for (text, want) in table {
            assert_eq!(code_of(Error::from(Ch::BadResponse(text.to_string()))), *want, "{text}");
        }
        assert_eq!(code_of(Error::from(Ch::TimedOut)), Code::Unavailable);
        assert_eq!(code_of(Error::from(Ch::RowNotFound)), Code::Internal);
        assert_eq!(code_of(Error::from(Ch::NotEnoughData)), Code::Internal);
        for (code, name) in CLICKHOUSE_TRANSIENT {
            assert!(
                CLICKHOUSE_PERMANENT.iter().all(|(c, _)| c != code),
                "{name} is listed both ways"
            );
            assert_eq!(
                clickhouse_failure(&format!("Code: {code}. DB::Exception: x ({name})")),
                Retry::Later
            );
        }
        for (code, name) in CLICKHOUSE_PERMANENT {
            assert_eq!(
                clickhouse_failure(&format!("Code: {code}. DB::Exception: x ({name})")),
                Retry::Never
            );
        }
    }

    #[test]
    fn quotes_are_short_whatever_they_quote() {
        assert_eq!(quote("obs-1"), "\"obs-1\"");
        let long = "x".repeat(5 * 1024 * 1024);
        let q = quote(&long);
        assert_eq!(q, format!("\"{}\"... (5242880 bytes)", "x".repeat(QUOTE_PREFIX_CHARS)));
        // Cut at a character, not inside one.
        let wide = "é".repeat(100);
        assert_eq!(
            quote(&wide),
            format!("\"{}\"... (200 bytes)", "é".repeat(QUOTE_PREFIX_CHARS))
        );
        assert_eq!(bounded("short", 10), "short");
        let b = bounded(&"é".repeat(1000), 100);
        assert!(b.len() <= 100 && b.ends_with("... (2000 bytes)"), "{b}");
    }

    #[test]
    fn a_status_never_grows_with_what_it_echoes() {
        let huge = "y".repeat(5 * 1024 * 1024);
        let violations: Vec<Violation> = (0..10_000)
            .map(|i| Violation::new(format!("events[{i}].event_id"), "z".repeat(2048 + i)))
            .collect();
        let status = Status::from(Error::InvalidArgument {
            message: huge.clone(),
            violations,
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        assert!(status.details().len() <= MAX_DETAILS_BYTES + 2 * MAX_VIOLATION_BYTES);
        let listed = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .clone();
        assert_eq!(listed[0].field, "events[0].event_id");
        let last = listed.last().unwrap();
        assert_eq!(
            last.description,
            format!("and {} more violations, not listed", 10_000 - (listed.len() - 1))
        );
        let mut headers = tonic::codegen::http::HeaderMap::new();
        status.add_header(&mut headers).expect("fits in headers");
        let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        assert!(total < 8 * 1024, "status headers of {total} bytes");
        assert!(Status::from(Error::Internal(huge.clone())).message().len() <= MAX_MESSAGE_BYTES);
        assert!(Status::from(Error::Unavailable(huge)).message().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn an_undecodable_request_is_the_callers_error() {
        let decode = Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
        let e = Error::from_inbound(&decode).expect("a decode failure");
        let status = Status::from(e);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("invalid wire type value: 7"),
            "{}",
            status.message()
        );
        assert!(Error::from_inbound(&Status::internal("Missing request message.")).is_some());
        assert!(Error::from_inbound(&Status::internal("something else")).is_none());
        assert!(Error::from_inbound(&Status::cancelled("failed to decode Protobuf message")).is_none());
    }
}
