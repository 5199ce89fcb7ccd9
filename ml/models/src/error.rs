//! The one error type of the models crate.

/// Why a model could not be fitted or applied (or its inputs were refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A hyperparameter is out of its range (checked before any fitting).
    #[error("invalid option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    /// The training data cannot train this model: mismatched shapes, too few rows, a
    /// single class.
    #[error("invalid training data: {0}")]
    InvalidData(String),
    /// An input value is out of its domain (negative count, NaN, empty list...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The input is valid but too short to fit the model asked for.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// The numeric solver failed.
    #[error("solver failed: {0}")]
    Solver(String),
    /// The numeric fit itself failed.
    #[error("fit failed: {0}")]
    Fit(String),
}
