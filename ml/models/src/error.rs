//! The one error type of the models crate.

/// Why a model could not be trained (or its inputs were refused).
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
    /// The numeric solver failed.
    #[error("solver failed: {0}")]
    Solver(String),
}
