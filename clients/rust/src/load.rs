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
//!
//! Nothing is dropped silently: every source gives a record balance ([`Balance`]):
//! records read = mapped + not mapped + skipped + superseded, the last two by reason,
//! and [`summary_text`] prints it with what the platform did with the events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hospital_proto::events::ClinicalEvent;
#[cfg(test)]
use hospital_proto::ingest::Rejection;

use crate::sender::SendReport;
pub use hospital_sources::balance::Balance;

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
    /// Where every record read went (its skipped reasons are the ones above).
    pub balance: Balance,
    /// What was left out of records that did map ("birth date omitted", "charge line
    /// priced 0"), by reason, with counts.
    pub notes: BTreeMap<String, usize>,
}

impl Report {
    /// Copies the balance's skip reasons into `skipped`.
    fn with_balance(mut self, balance: Balance) -> Self {
        for (reason, n) in &balance.skipped {
            *self.skipped.entry(reason.clone()).or_default() += *n as usize;
        }
        self.balance = balance;
        self
    }
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
    /// Where every record read went.
    pub balance: Balance,
    /// What was left out of records that did map, by reason.
    pub notes: BTreeMap<String, usize>,
}

impl Extract {
    fn collect<E>(f: impl FnOnce(&mut dyn FnMut(ClinicalEvent)) -> Result<Report, E>) -> Result<Self, E> {
        let mut events = Vec::new();
        let report = f(&mut |e| events.push(e))?;
        Ok(Extract {
            events,
            problems: report.problems,
            skipped: report.skipped,
            balance: report.balance,
            notes: report.notes,
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
    let mut b = Balance::default();
    for file in files(path, HL7_EXTENSIONS)? {
        let bytes = std::fs::read(&file)?;
        for (i, parsed) in parse_file(&bytes).into_iter().enumerate() {
            b.read += 1;
            let place = format!("{} message {i}", file.display());
            match parsed {
                Err(e) => {
                    b.not_mapped += 1;
                    x.problems.push(format!("{place}: {e}"));
                }
                Ok(msg) => match map::to_events(&msg, &map::MapOptions::default()) {
                    Ok(events) => {
                        b.mapped += 1;
                        events.into_iter().for_each(&mut *sink);
                    }
                    Err(map::MapError::Unsupported { message_type }) => {
                        b.skip(format!("HL7 {message_type}: message type not mapped"), 1)
                    }
                    Err(e) => {
                        b.not_mapped += 1;
                        x.problems.push(format!("{place}: {e}"));
                    }
                },
            }
        }
    }
    Ok(x.with_balance(b))
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
    // The export counts rows read, skipped and in error per file: the rest mapped.
    let mut b = Balance::default();
    for (file, counts) in &summary.files {
        let errors = summary.errors.iter().filter(|e| e.file() == file.file_name()).count() as u64;
        b.read += counts.rows;
        b.not_mapped += errors;
        b.mapped += counts.rows.saturating_sub(counts.skipped + errors);
        b.skip(
            format!("{}: rows not loaded (see hospital_sources::synthea)", file.file_name()),
            counts.skipped,
        );
    }
    // Errors of no file read (none expected) still count as records not mapped.
    b.not_mapped += summary
        .errors
        .iter()
        .filter(|e| !summary.files.keys().any(|f| f.file_name() == e.file()))
        .count() as u64;
    Ok(x.with_balance(b))
}

/// FHIR R4 bundles (`.json`) and bulk-export NDJSON (`.ndjson`) under `path`; references
/// resolve across files.
pub fn fhir_to(path: &Path, sink: &mut dyn FnMut(ClinicalEvent)) -> std::io::Result<Report> {
    use hospital_sources::fhir::{FhirOptions, Mapper};
    let mut mapper = Mapper::new(FhirOptions::default());
    let mut x = Report::default();
    let mut refused = 0;
    for file in files(path, &["json", "ndjson"])? {
        let bytes = std::fs::read(&file)?;
        let name = file.display().to_string();
        if file.extension().is_some_and(|e| e == "ndjson") {
            mapper.add_ndjson(&name, &bytes);
        } else if let Err(e) = mapper.add_bundle(&name, &bytes) {
            // A bundle refused whole is one record read and not mapped.
            refused += 1;
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
    for u in &mapped.summary.unpriced_charge_lines {
        *x.notes
            .entry(format!("charge line priced 0: {}", u.reason))
            .or_default() += 1;
    }
    let mut b = mapped.summary.balance();
    b.read += refused;
    b.not_mapped += refused;
    Ok(x.with_balance(b))
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
    if summary.birth_dates_omitted > 0 {
        x.notes.insert(
            "birth date omitted: before 1900 after the shift (ages over 89 are masked in MIMIC)".into(),
            summary.birth_dates_omitted as usize,
        );
    }
    Ok(x.with_balance(summary.total()))
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
    // One event per row mapped, one error per row not.
    let mapped: u64 = summary.events.values().sum();
    let b = Balance {
        read: mapped + summary.errors.len() as u64,
        mapped,
        not_mapped: summary.errors.len() as u64,
        ..Default::default()
    };
    Ok(x.with_balance(b))
}

/// What `hospital load` prints when a load ends: where every record of the files went
/// (read = mapped + not mapped + skipped + superseded, each with its reasons, and whether
/// it balances), then what the platform did with the events the mapped records made
/// (events = resumed + accepted + rejected, rejections by reason). A record can make
/// several events (an admission row: admission and discharge) and several records one
/// event (the chart rows of one vital-sign set), so the platform's answer is counted in
/// events.
pub fn summary_text(source: Source, read: &Report, events: u64, resumed: u64, acks: &SendReport) -> String {
    let (accepted, rejections) = (acks.committed, &acks.rejections);
    use std::fmt::Write;
    let b = &read.balance;
    let mut out = String::new();
    let _ = writeln!(out, "{} records: {b}", source.name());
    let _ = writeln!(
        out,
        "  read {}, mapped {}, not mapped {}, skipped {}, superseded {}",
        b.read,
        b.mapped,
        b.not_mapped,
        b.skipped_total(),
        b.superseded_total()
    );
    for p in read.problems.iter().take(20) {
        let _ = writeln!(out, "  not mapped: {p}");
    }
    if read.problems.len() > 20 {
        let _ = writeln!(out, "  ... and {} more not mapped", read.problems.len() - 20);
    }
    for (reason, n) in &b.skipped {
        let _ = writeln!(out, "  skipped x{n}: {reason}");
    }
    for (reason, n) in &b.superseded {
        let _ = writeln!(out, "  superseded x{n}: {reason}");
    }
    for (reason, n) in &read.notes {
        let _ = writeln!(out, "  note x{n}: {reason}");
    }
    let rejected = rejections.len() as u64;
    let sent = events.saturating_sub(resumed);
    let answered = accepted as u64 + rejected;
    let _ = write!(
        out,
        "{} events from the mapped records: {events} = {resumed} acknowledged by an earlier run + {accepted} accepted (durably staged) + {rejected} rejected",
        source.name()
    );
    if answered == sent {
        let _ = writeln!(out, ": balances");
    } else {
        let _ = writeln!(out, ": DOES NOT BALANCE ({sent} sent, {answered} answered)");
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in rejections {
        for v in &r.violations {
            *reasons.entry(format!("{}: {}", v.field, v.description)).or_default() += 1;
        }
    }
    for (reason, n) in &reasons {
        let _ = writeln!(out, "  rejected x{n}: {reason}");
    }
    if !acks.duplicates.is_empty() {
        let differing = acks.duplicates.iter().filter(|d| d.content_differs).count();
        let _ = writeln!(
            out,
            "  of the accepted, {} were already staged by an earlier copy (first commit wins); {differing} of them differ from it and were NOT applied",
            acks.duplicates.len()
        );
    }
    // Warnings by field (indexes dropped), with the first description as an example.
    let mut warnings: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for w in &acks.warnings {
        let field: String = w
            .field
            .split('[')
            .map(|part| part.split_once(']').map_or(part, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("[]");
        warnings.entry(field).or_insert((0, &w.description)).0 += 1;
    }
    for (field, (n, example)) in &warnings {
        let _ = writeln!(
            out,
            "  warning x{n}: {field} (e.g. {example}); the rest of each event was kept"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hospital_proto::ingest::FieldViolation;

    #[test]
    fn the_summary_prints_the_balance_with_its_reasons() {
        let mut balance = Balance {
            read: 7,
            mapped: 4,
            not_mapped: 1,
            ..Default::default()
        };
        balance.skip("ERROR=1: marked as charted in error", 1);
        balance.supersede("systolic BP ITEMID 51 superseded by ITEMID 455", 1);
        let report = Report {
            problems: vec!["PATIENTS.csv line 3, column DOB: required value is empty".into()],
            notes: BTreeMap::from([("birth date omitted".to_owned(), 2)]),
            ..Default::default()
        }
        .with_balance(balance);
        assert_eq!(report.skipped["ERROR=1: marked as charted in error"], 1);
        let rejection = Rejection {
            index: 0,
            event_id: "e1".into(),
            violations: vec![FieldViolation {
                field: "vital_signs.observations[0].value".into(),
                description: "out of range".into(),
            }],
        };
        let sent = SendReport {
            committed: 3,
            rejections: vec![rejection],
            duplicates: vec![hospital_proto::ingest::Duplicate {
                index: 1,
                event_id: "e2".into(),
                first_position: 7,
                content_differs: true,
            }],
            warnings: vec![hospital_proto::ingest::Warning {
                index: 2,
                event_id: "e3".into(),
                field: "vital_signs.observations[1].value".into(),
                description: "9279-1 (respiratory rate): 118 /min is outside the plausible range".into(),
            }],
            ..SendReport::default()
        };
        let text = summary_text(Source::Mimic, &report, 6, 2, &sent);
        assert_eq!(
            text,
            "mimic records: read 7 = mapped 4 + not mapped 1 + skipped 1 + superseded 1: balances\n\
             \x20 read 7, mapped 4, not mapped 1, skipped 1, superseded 1\n\
             \x20 not mapped: PATIENTS.csv line 3, column DOB: required value is empty\n\
             \x20 skipped x1: ERROR=1: marked as charted in error\n\
             \x20 superseded x1: systolic BP ITEMID 51 superseded by ITEMID 455\n\
             \x20 note x2: birth date omitted\n\
             mimic events from the mapped records: 6 = 2 acknowledged by an earlier run + 3 accepted (durably staged) + 1 rejected: balances\n\
             \x20 rejected x1: vital_signs.observations[0].value: out of range\n\
             \x20 of the accepted, 1 were already staged by an earlier copy (first commit wins); 1 of them differ from it and were NOT applied\n\
             \x20 warning x1: vital_signs.observations[].value (e.g. 9279-1 (respiratory rate): 118 /min is outside the plausible range); the rest of each event was kept\n"
        );
        // A record unaccounted for, an event unanswered: both said.
        let mut short = report.clone();
        short.balance.read += 1;
        let sent = SendReport {
            committed: 3,
            ..SendReport::default()
        };
        let text = summary_text(Source::Mimic, &short, 7, 2, &sent);
        assert!(
            text.contains("superseded 1: DOES NOT BALANCE (7 accounted for)"),
            "{text}"
        );
        assert!(
            text.contains("+ 0 rejected: DOES NOT BALANCE (5 sent, 3 answered)"),
            "{text}"
        );
    }
}
