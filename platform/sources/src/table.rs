//! Errors of the CSV table exports (Synthea, MIMIC-III): a file, a header or a row that
//! could not be mapped, named by file, line (the header is line 1) and column.

/// Why a file or a row could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The file cannot be opened or read.
    #[error("{file}: {message}")]
    Io { file: &'static str, message: String },
    /// The header lacks a column the mapping needs: the whole file is refused.
    #[error("{file}: required column {column} is missing from the header")]
    MissingColumn { file: &'static str, column: &'static str },
    /// The CSV itself is malformed at this line.
    #[error("{file} line {line}: {message}")]
    Csv {
        file: &'static str,
        line: u64,
        message: String,
    },
    /// A value the event needs is empty.
    #[error("{file} line {line}, column {column}: required value is empty")]
    MissingValue {
        file: &'static str,
        line: u64,
        column: &'static str,
    },
    /// A value cannot be mapped.
    #[error("{file} line {line}, column {column}: {value:?} {reason}")]
    BadValue {
        file: &'static str,
        line: u64,
        column: &'static str,
        value: String,
        reason: String,
    },
}

impl TableError {
    /// The file the error is about (`patients.csv`, `ADMISSIONS.csv`).
    pub fn file(&self) -> &'static str {
        match self {
            Self::Io { file, .. }
            | Self::MissingColumn { file, .. }
            | Self::Csv { file, .. }
            | Self::MissingValue { file, .. }
            | Self::BadValue { file, .. } => file,
        }
    }

    /// The 1-based line (the header is line 1), for row errors.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Csv { line, .. } | Self::MissingValue { line, .. } | Self::BadValue { line, .. } => Some(*line),
            Self::Io { .. } | Self::MissingColumn { .. } => None,
        }
    }

    /// The column the error is about, if any.
    pub fn column(&self) -> Option<&'static str> {
        match self {
            Self::MissingColumn { column, .. } | Self::MissingValue { column, .. } | Self::BadValue { column, .. } => {
                Some(column)
            }
            Self::Io { .. } | Self::Csv { .. } => None,
        }
    }
}
