//! What the CSV table sources (Synthea, MIMIC-III, reference data) share: the error
//! type that names file, line (the header is line 1) and column; a header checked for
//! the columns a mapping reads ([`Columns`]); a row read through it ([`Row`]); and
//! opening a file (gzip by its `.gz` name) with its header checked ([`open`]).
//!
//! Owns the reading rules every table source follows: columns found by header name
//! (case-insensitive, a UTF-8 BOM and surrounding blanks ignored), extra columns
//! ignored, every column a mapping reads required, values trimmed and empty ones absent.
//! Must not: know any source's columns or value formats.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

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

/// Where each required column of a file sits in its header.
#[derive(Debug, Clone)]
pub struct Columns {
    file: &'static str,
    index: HashMap<&'static str, usize>,
}

impl Columns {
    /// Finds `required` in `header` (names compared case-insensitively, a UTF-8 BOM and
    /// surrounding blanks ignored); extra columns are ignored. The first missing one
    /// refuses the file.
    pub fn new(file: &'static str, required: &[&'static str], header: &csv::StringRecord) -> Result<Self, TableError> {
        let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('\u{feff}').trim()).collect();
        let mut index = HashMap::new();
        for &column in required {
            let i = names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(column))
                .ok_or(TableError::MissingColumn { file, column })?;
            index.insert(column, i);
        }
        Ok(Self { file, index })
    }

    /// The file these columns belong to.
    pub fn file(&self) -> &'static str {
        self.file
    }
}

/// One data row with its 1-based line number, read through its file's [`Columns`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a Columns,
    record: &'a csv::StringRecord,
    line: u64,
}

impl<'a> Row<'a> {
    pub fn new(columns: &'a Columns, record: &'a csv::StringRecord, line: u64) -> Self {
        Self { columns, record, line }
    }

    pub fn file(&self) -> &'static str {
        self.columns.file
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    /// The trimmed value of a required column; `None` when empty (or the row is short).
    /// Asking for a column that is not in the file's required list is a bug.
    pub fn opt(&self, column: &'static str) -> Option<&'a str> {
        let i = *self
            .columns
            .index
            .get(column)
            .unwrap_or_else(|| panic!("{column} is not a required column of {}", self.file()));
        self.record.get(i).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The value of `column`, or [`TableError::MissingValue`] when it is empty.
    pub fn req(&self, column: &'static str) -> Result<&'a str, TableError> {
        self.opt(column).ok_or(TableError::MissingValue {
            file: self.file(),
            line: self.line,
            column,
        })
    }

    /// [`TableError::BadValue`] for `value` of `column` on this row.
    pub fn bad(&self, column: &'static str, value: &str, reason: impl Into<String>) -> TableError {
        TableError::BadValue {
            file: self.file(),
            line: self.line,
            column,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// `column` parsed by `parse`; `None` when empty, [`TableError::BadValue`] with
    /// `reason` when `parse` refuses it.
    pub fn parse_opt<T>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
        reason: &str,
    ) -> Result<Option<T>, TableError> {
        match self.opt(column) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| self.bad(column, v, reason)),
        }
    }

    /// `column` parsed by `parse`; empty is [`TableError::MissingValue`].
    pub fn parse<T>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
        reason: &str,
    ) -> Result<T, TableError> {
        let v = self.req(column)?;
        parse(v).ok_or_else(|| self.bad(column, v, reason))
    }
}

/// A csv error of `file`: an I/O failure (nothing after it can be read) or a malformed
/// record at its line.
pub fn csv_error(file: &'static str, e: &csv::Error) -> TableError {
    match e.kind() {
        csv::ErrorKind::Io(io) => TableError::Io {
            file,
            message: io.to_string(),
        },
        _ => TableError::Csv {
            file,
            line: e.position().map_or(0, csv::Position::line),
            message: e.to_string(),
        },
    }
}

/// A csv reader over `input` (rows may be short or long: the mapping decides) with its
/// header checked for `required`.
pub fn reader<R: Read>(
    file: &'static str,
    required: &[&'static str],
    input: R,
) -> Result<(csv::Reader<R>, Columns), TableError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader.headers().map_err(|e| csv_error(file, &e))?;
    let columns = Columns::new(file, required, header)?;
    Ok((reader, columns))
}

/// Opens `file` in `dir`, decompressing it when its name ends in `.gz`, and checks its
/// header for `required`.
pub fn open(
    dir: &Path,
    file: &'static str,
    required: &[&'static str],
) -> Result<(csv::Reader<Box<dyn Read>>, Columns), TableError> {
    let path = dir.join(file);
    let f = File::open(&path).map_err(|e| TableError::Io {
        file,
        message: format!("cannot open {}: {e}", path.display()),
    })?;
    let input: Box<dyn Read> = if file.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    reader(file, required, input)
}

/// The records of `reader` with their 1-based lines. A malformed record is an `Err` and
/// the next ones follow; an I/O failure is the last item.
pub fn records<R: Read>(
    file: &'static str,
    reader: csv::Reader<R>,
) -> impl Iterator<Item = Result<(u64, csv::StringRecord), TableError>> {
    let mut records = reader.into_records();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match records.next()? {
            Ok(r) => Some(Ok((r.position().map_or(0, csv::Position::line), r))),
            Err(e) => {
                let err = csv_error(file, &e);
                done = matches!(err, TableError::Io { .. });
                Some(Err(err))
            }
        }
    })
}
