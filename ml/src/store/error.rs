//! Errors of the training-set store, each naming the training set (and the version,
//! where there is one) it is about.

use std::path::PathBuf;

/// What can go wrong writing or reading a training set.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name cannot be a training set's: it must be a plain file name.
    #[error("invalid training set name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No training set of that name exists under the store's root.
    #[error("training set `{name}` does not exist under {}", root.display())]
    NotFound {
        /// The training set asked for.
        name: String,
        /// The store's root directory.
        root: PathBuf,
    },
    /// The training set exists but has no such version.
    #[error("training set `{name}` has no version {version} (its versions: {})", list(available))]
    VersionNotFound {
        /// The training set asked for.
        name: String,
        /// The version asked for.
        version: u64,
        /// The versions it has.
        available: Vec<u64>,
    },
    /// The metadata given to a write does not fit the schema, or a stored version's
    /// metadata is missing or unreadable.
    #[error("training set `{name}`{}: metadata: {reason}", at(*version))]
    Metadata {
        /// The training set.
        name: String,
        /// The version read, if any (none while writing).
        version: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A column asked for is missing or has a type that cannot be read as asked.
    #[error("training set `{name}` version {version}: column `{column}`: {reason}")]
    Column {
        /// The training set.
        name: String,
        /// The version read.
        version: u64,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The stream of batches given to a write failed or yielded a batch that does not
    /// match the declared schema; nothing was committed.
    #[error("training set `{name}`: the input failed after {rows} rows, nothing committed: {source}")]
    Input {
        /// The training set being written.
        name: String,
        /// Rows taken from the input before it failed.
        rows: u64,
        /// The input's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Lance failed.
    #[error("training set `{name}`{}: {action}: {source}", at(*version))]
    Lance {
        /// The training set.
        name: String,
        /// The version concerned, if known.
        version: Option<u64>,
        /// What the store was doing.
        action: &'static str,
        /// Lance's error.
        #[source]
        source: Box<lance::Error>,
    },
    /// The store's directory could not be created or listed.
    #[error("training set store {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn at(version: Option<u64>) -> String {
    version.map(|v| format!(" version {v}")).unwrap_or_default()
}

fn list(versions: &[u64]) -> String {
    if versions.is_empty() {
        return "none".to_owned();
    }
    versions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}
