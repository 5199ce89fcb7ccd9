//! A reference data directory -> canonical `ReferenceData` events: `drugs.csv`,
//! `payers.csv` and `wards.csv`, each optional, which the warehouse keeps as `dim_drug`,
//! `dim_payer` and the ward level of `dim_location`.
//!
//! Owns the files' columns and their ids; follows [`crate::table`]'s reading rules
//! (columns by header name, every column read is required, a bad row is one
//! [`ReferenceError`] naming file, line and column while the other rows still map).
//! Validation stays at the platform's ingest door. The shipped catalogue
//! (`platform/sources/reference/`, see its README) is such a directory.
//!
//! Columns (values that must not be empty in bold):
//! - `drugs.csv`: **code**, **code_system** (`RxNorm`, `NDC`...), **name**, drug_class,
//!   form, strength.
//! - `payers.csv`: **code**, **name**, payer_type (`public`, `private`, `self-pay`).
//! - `wards.csv`: **department_code**, department_name, **ward_code**, ward_name,
//!   **bed_count** (a whole number).
//!
//! Rules:
//! - Event ids: `reference/drugs/<code_system>/<code>`, `reference/payers/<code>`,
//!   `reference/wards/<department_code>/<ward_code>`, so loading the same files again is
//!   absorbed by the warehouse's dedup; a changed row in a later file version gets the
//!   same id and so must be loaded under a new [`Options::occurred_at`] to replace the
//!   first (the warehouse keeps the latest reference row by time).
//! - A key written twice in one file is a bad row (naming the line it repeats): two
//!   rows for one drug would leave the warehouse to pick one.
//! - Everything is timed at [`Options::occurred_at`] (default the Unix epoch): a
//!   catalogue has no event time, and any dated reference data (the simulator's, a
//!   hospital feed's) then wins over it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item, ClinicalEvent};
use prost_types::Timestamp;

use crate::table::{self, Row};

/// Why a file or a row could not be mapped.
pub type ReferenceError = crate::table::TableError;

/// The files of a reference directory, in the order [`Catalogue::read_all`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferenceFile {
    Drugs,
    Payers,
    Wards,
}

impl ReferenceFile {
    pub const ALL: [Self; 3] = [Self::Drugs, Self::Payers, Self::Wards];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Drugs => "drugs.csv",
            Self::Payers => "payers.csv",
            Self::Wards => "wards.csv",
        }
    }

    /// The columns the mapping reads; a header without one of them is refused.
    pub fn required_columns(self) -> &'static [&'static str] {
        match self {
            Self::Drugs => &["code", "code_system", "name", "drug_class", "form", "strength"],
            Self::Payers => &["code", "name", "payer_type"],
            Self::Wards => &[
                "department_code",
                "department_name",
                "ward_code",
                "ward_name",
                "bed_count",
            ],
        }
    }

    /// The column a repeated key is reported on.
    fn key_column(self) -> &'static str {
        match self {
            Self::Drugs | Self::Payers => "code",
            Self::Wards => "ward_code",
        }
    }
}

/// Options of the mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The events' `source_system`.
    pub source_system: String,
    /// `occurred_at` of every event.
    pub occurred_at: Timestamp,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source_system: "reference".to_owned(),
            occurred_at: Timestamp { seconds: 0, nanos: 0 },
        }
    }
}

fn event(id: String, item: Item, opts: &Options) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id,
        source_system: opts.source_system.clone(),
        occurred_at: Some(opts.occurred_at),
        patient: None,
        payload: Some(Payload::ReferenceData(pb::ReferenceData { item: Some(item) })),
    }
}

/// drugs.csv row -> (key, `ReferenceData::Drug`).
pub fn drug(row: &Row<'_>, opts: &Options) -> Result<(String, ClinicalEvent), ReferenceError> {
    let code = row.req("code")?;
    let system = row.req("code_system")?;
    let key = format!("{system}/{code}");
    let drug = pb::Drug {
        code: code.to_owned(),
        code_system: system.to_owned(),
        name: row.req("name")?.to_owned(),
        drug_class: row.opt("drug_class").unwrap_or_default().to_owned(),
        form: row.opt("form").unwrap_or_default().to_owned(),
        strength: row.opt("strength").unwrap_or_default().to_owned(),
    };
    let e = event(format!("reference/drugs/{key}"), Item::Drug(drug), opts);
    Ok((key, e))
}

/// payers.csv row -> (key, `ReferenceData::Payer`).
pub fn payer(row: &Row<'_>, opts: &Options) -> Result<(String, ClinicalEvent), ReferenceError> {
    let code = row.req("code")?;
    let payer = pb::Payer {
        code: code.to_owned(),
        name: row.req("name")?.to_owned(),
        payer_type: row.opt("payer_type").unwrap_or_default().to_owned(),
    };
    let e = event(format!("reference/payers/{code}"), Item::Payer(payer), opts);
    Ok((code.to_owned(), e))
}

/// wards.csv row -> (key, `ReferenceData::Ward`).
pub fn ward(row: &Row<'_>, opts: &Options) -> Result<(String, ClinicalEvent), ReferenceError> {
    let department = row.req("department_code")?;
    let ward_code = row.req("ward_code")?;
    let key = format!("{department}/{ward_code}");
    let ward = pb::Ward {
        department_code: department.to_owned(),
        department_name: row.opt("department_name").unwrap_or_default().to_owned(),
        ward_code: ward_code.to_owned(),
        ward_name: row.opt("ward_name").unwrap_or_default().to_owned(),
        bed_count: row.parse("bed_count", |v| v.parse::<u32>().ok(), "is not a whole number of beds")?,
    };
    let e = event(format!("reference/wards/{key}"), Item::Ward(ward), opts);
    Ok((key, e))
}

/// A reference data directory.
#[derive(Debug, Clone)]
pub struct Catalogue {
    dir: PathBuf,
    options: Options,
}

/// What [`Catalogue::read_all`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Events made per file read (a file that is not there is not in the map).
    pub events: std::collections::BTreeMap<ReferenceFile, u64>,
    /// Rows that could not be mapped, in file then line order.
    pub errors: Vec<ReferenceError>,
}

impl Catalogue {
    pub fn new(dir: impl Into<PathBuf>, options: Options) -> Self {
        Self {
            dir: dir.into(),
            options,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every file of [`ReferenceFile::ALL`] that is there, handing each event to
    /// `sink`. Row errors are collected in the summary; a file that cannot be read or
    /// lacks a required column stops the read, and so does a directory with none of
    /// the files.
    pub fn read_all(&self, mut sink: impl FnMut(ClinicalEvent)) -> Result<Summary, ReferenceError> {
        let present: Vec<ReferenceFile> = ReferenceFile::ALL
            .into_iter()
            .filter(|f| self.dir.join(f.file_name()).exists())
            .collect();
        if present.is_empty() {
            return Err(ReferenceError::Io {
                file: "drugs.csv, payers.csv, wards.csv",
                message: format!("none of them is in {}", self.dir.display()),
            });
        }
        let mut summary = Summary::default();
        for file in present {
            let (reader, columns) = table::open(&self.dir, file.file_name(), file.required_columns())?;
            let map = match file {
                ReferenceFile::Drugs => drug,
                ReferenceFile::Payers => payer,
                ReferenceFile::Wards => ward,
            };
            let mut first_line: HashMap<String, u64> = HashMap::new();
            let mut count = 0;
            for item in table::records(file.file_name(), reader) {
                let (line, record) = match item {
                    Ok(r) => r,
                    Err(e @ ReferenceError::Io { .. }) => return Err(e),
                    Err(e) => {
                        summary.errors.push(e);
                        continue;
                    }
                };
                let row = Row::new(&columns, &record, line);
                match map(&row, &self.options) {
                    Ok((key, e)) => match first_line.get(&key) {
                        Some(first) => {
                            let column = file.key_column();
                            let value = row.opt(column).unwrap_or_default();
                            summary.errors.push(row.bad(
                                column,
                                value,
                                format!("repeats the key of line {first} ({key})"),
                            ));
                        }
                        None => {
                            first_line.insert(key, line);
                            count += 1;
                            sink(e);
                        }
                    },
                    Err(e) => summary.errors.push(e),
                }
            }
            summary.events.insert(file, count);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(tmp.path().join(name), text).unwrap();
        }
        tmp
    }

    fn read(dir: &Path) -> Result<(Vec<ClinicalEvent>, Summary), ReferenceError> {
        let mut events = Vec::new();
        let summary = Catalogue::new(dir, Options::default()).read_all(|e| events.push(e))?;
        Ok((events, summary))
    }

    #[test]
    fn wards_in_any_column_order_and_bed_counts() {
        let tmp = dir_with(&[(
            "wards.csv",
            "ward_name,bed_count,ward_code,department_code,department_name,extra\n\
             Ward A,28,WA,MED,Medicine,x\n\
             Ward B,many,WB,MED,Medicine,x\n",
        )]);
        let (events, summary) = read(tmp.path()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id, "reference/wards/MED/WA");
        let Some(Payload::ReferenceData(pb::ReferenceData {
            item: Some(Item::Ward(w)),
        })) = &events[0].payload
        else {
            panic!("{events:?}")
        };
        assert_eq!((w.ward_name.as_str(), w.bed_count), ("Ward A", 28));
        let e = &summary.errors[0];
        assert_eq!(
            (e.file(), e.line(), e.column()),
            ("wards.csv", Some(3), Some("bed_count"))
        );
        assert_eq!(
            summary.events.get(&ReferenceFile::Drugs),
            None,
            "no drugs.csv, not an error"
        );
    }

    #[test]
    fn a_repeated_key_is_a_bad_row() {
        let tmp = dir_with(&[("payers.csv", "code,name,payer_type\nP1,One,public\nP1,Again,private\n")]);
        let (events, summary) = read(tmp.path()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            summary.errors[0].to_string(),
            "payers.csv line 3, column code: \"P1\" repeats the key of line 2 (P1)"
        );
    }

    #[test]
    fn an_empty_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("none of them"), "{err}");
    }
}
