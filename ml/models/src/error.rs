//! The models' one error type.

/// Why a model could not be fitted or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// An input value or option is out of its domain (negative count, NaN, empty list...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The input is valid but too short to fit the model asked for.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// The numeric fit itself failed.
    #[error("fit failed: {0}")]
    Fit(String),
}
