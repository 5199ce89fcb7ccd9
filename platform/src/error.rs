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
            other => Error::Internal(format!("clickhouse: {other}")),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { message, violations } => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::Unavailable(m) => Status::unavailable(format!("staging zone unavailable: {m}")),
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
            Error::DataLoss(m) => Status::data_loss(m),
            Error::Internal(m) => Status::internal(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
