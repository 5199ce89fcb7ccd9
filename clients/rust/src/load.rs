//! `hospital load`: historical loads from files through the platform's gRPC ingest (the
//! same door as live feeds). A source adapter turns files into canonical events; what it
//! cannot map is reported with its place (file, message, resource) and reason; the rest
//! is streamed with at-least-once delivery. A second load of the same files adds nothing:
//! event ids are deterministic and the warehouse absorbs repeats.
//!
//! Each source reads into a sink ([`read`]), so events can go out while the files are
//! read (see `checkpoint::load_resumable`); the `Extract` functions ([`hl7`],
//! [`synthea`], ...) collect them instead, for tests and small loads. The mapping order
//! is deterministic (sorted files, file order within), which is what lets an
//! interrupted load resume after a count of events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hospital_proto::events::ClinicalEvent;

/// The formats `hospital load` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Fhir,
    Hl7,
    Mimic,
    Synthea,
    Reference,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Fhir => "fhir",
            Source::Hl7 => "hl7",
            Source::Mimic => "mimic",
            Source::Synthea => "synthea",
            Source::Reference => "reference",
        }
    }
}

/// What could not be read, by place and reason, and what was deliberately not loaded.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// "place: reason" for every record that did not map.
    pub problems: Vec<String>,
    /// Records seen but deliberately not loaded (e.g. an unsupported message type), by kind.
    pub skipped: BTreeMap<String, usize>,
}

/// A failure that stops a whole read (a missing file or column, an unreadable file).
pub type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// Reads `path` as `source`, handing each event to `sink` in a deterministic order.
pub fn read(source: Source, path: &Path, sink: &mut dyn FnMut(ClinicalEvent)) -> Result<Report, ReadError> {
    Ok(match source {
        Source::Fhir => fhir_to(path, sink)?,
        Source::Hl7 => hl7_to(path, sink)?,
        Source::Mimic => mimic_to(path, sink)?,
        Source::Synthea => synthea_to(path, sink)?,
        Source::Reference => reference_to(path, sink)?,
    })
}

/// Events read from files, and what could not be read, by reason.
#[derive(Debug, Default)]
pub struct Extract {
    pub events: Vec<ClinicalEvent>,
    /// "place: reason" for every record that did not map.
    pub problems: Vec<String>,
    /// Records seen but deliberately not loaded (e.g. an unsupported message type), by kind.
    pub skipped: BTreeMap<String, usize>,
}

impl Extract {
    fn collect<E>(f: impl FnOnce(&mut dyn FnMut(ClinicalEvent)) -> Result<Report, E>) -> Result<Self, E> {
        let mut events = Vec::new();
        let report = f(&mut |e| events.push(e))?;
        Ok(Extract {
            events,
            problems: report.problems,
            skipped: report.skipped,
        })
    }
}

/// [`hl7_to`], collected.
pub fn hl7(path: &Path) -> std::io::Result<Extract> {
    Extract::collect(|sink| hl7_to(path, sink))
}

/// [`synthea_to`], collected.
pub fn synthea(dir: &Path) -> Result<Extract, hospital_sources::synthea::SyntheaError> {
    Extract::collect(|sink| synthea_to(dir, sink))
}

/// [`fhir_to`], collected.
pub fn fhir(path: &Path) -> std::io::Result<Extract> {
    Extract::collect(|sink| fhir_to(path, sink))
}

/// [`mimic_to`], collected.
pub fn mimic(dir: &Path) -> Result<Extract, hospital_sources::mimic::MimicError> {
    Extract::collect(|sink| mimic_to(dir, sink))
}

/// [`reference_to`], collected.
pub fn reference(dir: &Path) -> Result<Extract, hospital_sources::reference::ReferenceError> {
    Extract::collect(|sink| reference_to(dir, sink))
}

/// Files under `path` with one of `extensions`, or every file when `extensions` is
/// empty (`path` itself if it is a file), sorted, so that a load is deterministic.
pub fn files(path: &Path, extensions: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if extensions.is_empty()
                || p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// File name extensions HL7 v2 files carry when a directory is loaded.
const HL7_EXTENSIONS: &[&str] = &["hl7", "HL7", "er7", "txt", "msg"];

/// HL7 v2 files (single messages or batches): every message mapped to canonical events,
/// one file in memory at a time.
pub fn hl7_to(path: &Path, sink: &mut dyn FnMut(ClinicalEvent)) -> std::io::Result<Report> {
    use hospital_sources::hl7v2::{map, parse_file};
    let mut x = Report::default();
    for file in files(path, HL7_EXTENSIONS)? {
        let bytes = std::fs::read(&file)?;
        for (i, parsed) in parse_file(&bytes).into_iter().enumerate() {
            let place = format!("{} message {i}", file.display());
            match parsed {
                Err(e) => x.problems.push(format!("{place}: {e}")),
                Ok(msg) => match map::to_events(&msg, &map::MapOptions::default()) {
                    Ok(events) => events.into_iter().for_each(&mut *sink),
                    Err(map::MapError::Unsupported { message_type }) => {
                        *x.skipped.entry(format!("HL7 {message_type}")).or_default() += 1
                    }
                    Err(e) => x.problems.push(format!("{place}: {e}")),
                },
            }
        }
    }
    Ok(x)
}

/// A Synthea CSV export directory (patients, payers, encounters, conditions as
/// diagnoses, procedures, observations, medications, and the charges of
/// claims_transactions.csv with their claims' payers).
pub fn synthea_to(
    dir: &Path,
    sink: &mut dyn FnMut(ClinicalEvent),
) -> Result<Report, hospital_sources::synthea::SyntheaError> {
    use hospital_sources::synthea::{Export, Options};
    let mut x = Report::default();
    let summary = Export::new(dir, Options::default()).read_all(sink)?;
    x.problems = summary.errors.iter().map(|e| e.to_string()).collect();
    for (file, counts) in &summary.files {
        if counts.skipped > 0 {
            *x.skipped
                .entry(format!("{} rows not loaded", file.file_name()))
                .or_default() += counts.skipped as usize;
        }
    }
    Ok(x)
}

/// FHIR R4 bundles (`.json`) and bulk-export NDJSON (`.ndjson`) under `path`; references
/// resolve across files.
pub fn fhir_to(path: &Path, sink: &mut dyn FnMut(ClinicalEvent)) -> std::io::Result<Report> {
    use hospital_sources::fhir::{FhirOptions, Mapper};
    let mut mapper = Mapper::new(FhirOptions::default());
    let mut x = Report::default();
    for file in files(path, &["json", "ndjson"])? {
        let bytes = std::fs::read(&file)?;
        let name = file.display().to_string();
        if file.extension().is_some_and(|e| e == "ndjson") {
            mapper.add_ndjson(&name, &bytes);
        } else if let Err(e) = mapper.add_bundle(&name, &bytes) {
            x.problems.push(e.to_string());
        }
    }
    let mapped = mapper.finish();
    mapped.events.into_iter().for_each(&mut *sink);
    x.problems.extend(mapped.summary.errors.iter().map(|e| e.to_string()));
    for d in &mapped.summary.deletes {
        // The platform has no delete event yet: a delete is reported, not dropped.
        x.problems.push(format!(
            "{}: delete of {} not applied (no delete event yet)",
            d.input, d.url
        ));
    }
    for (resource_type, counts) in &mapped.summary.by_type {
        for (reason, n) in &counts.skipped {
            *x.skipped.entry(format!("{resource_type}: {reason}")).or_default() += n;
        }
    }
    Ok(x)
}

/// The MIMIC-III (demo) CSV tables (patients, admissions, transfers, ICD-9-CM diagnoses
/// and procedures, prescriptions with their drug catalogue, charted vital signs); each
/// patient's dates are shifted back by whole weeks so that they lie in the past (see
/// `hospital_sources::mimic`).
pub fn mimic_to(
    dir: &Path,
    sink: &mut dyn FnMut(ClinicalEvent),
) -> Result<Report, hospital_sources::mimic::MimicError> {
    use hospital_sources::mimic::{Export, Options};
    let mut x = Report::default();
    let summary = Export::new(dir, Options::default()).read_all(sink)?;
    x.problems = summary.errors.iter().map(|e| e.to_string()).collect();
    for (file, n) in &summary.skipped {
        *x.skipped
            .entry(format!("{} rows not loaded", file.file_name()))
            .or_default() += *n as usize;
    }
    if summary.birth_dates_omitted > 0 {
        *x.skipped
            .entry("birth dates before 1900 after the shift (ages over 89 are masked in MIMIC)".into())
            .or_default() += summary.birth_dates_omitted as usize;
    }
    Ok(x)
}

/// A reference data directory (`drugs.csv`, `payers.csv`, `wards.csv`, each optional),
/// such as the shipped catalogue in `platform/sources/reference`.
pub fn reference_to(
    dir: &Path,
    sink: &mut dyn FnMut(ClinicalEvent),
) -> Result<Report, hospital_sources::reference::ReferenceError> {
    use hospital_sources::reference::{Catalogue, Options};
    let mut x = Report::default();
    let summary = Catalogue::new(dir, Options::default()).read_all(sink)?;
    x.problems = summary.errors.iter().map(|e| e.to_string()).collect();
    Ok(x)
}
