//! Synthea CSV export -> canonical `ClinicalEvent`s: patients, payers, encounters,
//! observations and medications.
//!
//! Owns which Synthea column feeds which event field, and a small streaming reader over
//! an export directory ([`Export`], [`Events`]). The mapping functions ([`patient`],
//! [`payer`], [`encounter`], [`observation`], [`vital_set`], [`medication`]) are pure;
//! the reader is the only part that touches files. Validation (ranges, future dates,
//! required event fields) stays at the platform's ingest door, as for every source.
//!
//! Rules:
//! - Columns are found by header name (case-insensitive), so reordered or added columns
//!   do no harm. Every column the mapping reads is required: a header without it fails
//!   the whole file with [`SyntheaError::MissingColumn`] (Synthea's columns have changed
//!   between versions; a silently empty field would be worse). Values may be empty
//!   where the event does not need them.
//! - A bad row (unparseable date or number, unknown code) is one [`SyntheaError`] naming
//!   file, line (1-based, the header is line 1) and column; the other rows still map.
//! - `event_id` = `<file stem>/<Id>` (`patients/<Id>`, `payers/<Id>`), with a suffix
//!   where one row gives several events (`encounters/<Id>/admission`, `/discharge`).
//!   Files without an `Id` column use a row key: medications
//!   `medications/<PATIENT>/<ENCOUNTER>/<CODE>/<START>`, observations
//!   `observations/<PATIENT>/<ENCOUNTER>/<DATE>/<CODE>` and
//!   `observations/<PATIENT>/<ENCOUNTER>/<DATE>/vital-signs`. A key seen again in the
//!   same file gets `#2`, `#3`... in file order, so a re-read of the same export gives
//!   the same ids (and the warehouse's dedup absorbs it).
//! - Patients: `PATIENT`/`Id` is the MRN, assigning authority `synthea` (options). A
//!   `PatientRegistered` is timed at the birth date, 00:00 UTC: Synthea has no
//!   registration date, and the birth date is the one deterministic time that is never
//!   in the future. (A patient born before 1900 is rejected by the platform, as it
//!   should be.) `DEATHDATE` is a plain date -> `deceased_at` at 00:00 UTC.
//! - Payers have no date: `ReferenceData` is timed at [`Options::reference_data_at`]
//!   (default the Unix epoch).
//! - Encounters: `ENCOUNTERCLASS` inpatient -> inpatient, emergency -> emergency,
//!   ambulatory/wellness/outpatient/urgentcare -> outpatient; any other class is a bad
//!   row, not a guess. `REASONCODE` (SNOMED CT in Synthea, not ICD-10) becomes the
//!   admitting diagnosis; `ORGANIZATION` the department code; `PROVIDER` the attending.
//!   A `Discharge` (disposition unspecified) follows at `STOP` when there is one.
//! - Observations: numeric rows with a vital-sign LOINC ([`VITAL_SIGN_CODES`]) are
//!   grouped by (`PATIENT`, `ENCOUNTER`, `DATE`) into one `VitalSigns` set; other
//!   numeric rows and text rows become `LabResult`s. Rows whose code is not a LOINC code
//!   (Synthea's QALY, DALY and QOLS, simulation outputs, not observations of the
//!   patient) are skipped and counted. Vital sets are emitted when the file ends, in
//!   key order; only the vital rows are held in memory, every other row streams.
//! - Medications: one `MedicationOrder` at `START` (`STOP` -> `ends_at`), `CODE` is
//!   RxNorm. No dose, route or frequency: the export does not have them.
//! - claims.csv is not mapped: it carries no charge amounts (only outstanding balances,
//!   `OUTSTANDING1/2/P`, all zero in practice); the amounts are in
//!   claims_transactions.csv (`TYPE` = CHARGE, `AMOUNT`, `UNITAMOUNT`, `UNITS`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hospital_proto::events::{
    self as pb, clinical_event::Payload, reference_data::Item, AdministrativeSex, AdmissionType, ClinicalEvent,
    DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// LOINC codes that make up a set of vital signs: heart rate, respiratory rate, systolic
/// and diastolic blood pressure, body temperature, weight, height, BMI, SpO2.
pub const VITAL_SIGN_CODES: [&str; 9] = [
    "8867-4", "9279-1", "8480-6", "8462-4", "8310-5", "29463-7", "8302-2", "39156-5", "59408-5",
];

/// The files of an export that are mapped, in the order [`Export::read_all`] reads them
/// (reference data first, then patients before anything about them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyntheaFile {
    Payers,
    Patients,
    Encounters,
    Observations,
    Medications,
}

impl SyntheaFile {
    pub const ALL: [Self; 5] = [
        Self::Payers,
        Self::Patients,
        Self::Encounters,
        Self::Observations,
        Self::Medications,
    ];

    /// `patients.csv`, ...
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Payers => "payers.csv",
            Self::Patients => "patients.csv",
            Self::Encounters => "encounters.csv",
            Self::Observations => "observations.csv",
            Self::Medications => "medications.csv",
        }
    }

    /// The prefix of the file's event ids.
    pub fn stem(self) -> &'static str {
        self.file_name().trim_end_matches(".csv")
    }

    /// The columns the mapping reads; a header without one of them is refused.
    pub fn required_columns(self) -> &'static [&'static str] {
        match self {
            Self::Payers => &["Id", "NAME"],
            Self::Patients => &["Id", "BIRTHDATE", "DEATHDATE", "FIRST", "LAST", "GENDER", "ZIP"],
            Self::Encounters => &[
                "Id",
                "START",
                "STOP",
                "PATIENT",
                "ORGANIZATION",
                "PROVIDER",
                "PAYER",
                "ENCOUNTERCLASS",
                "REASONCODE",
            ],
            Self::Observations => &[
                "DATE",
                "PATIENT",
                "ENCOUNTER",
                "CODE",
                "DESCRIPTION",
                "VALUE",
                "UNITS",
                "TYPE",
            ],
            Self::Medications => &["START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"],
        }
    }
}

/// Options of the mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The events' `source_system`.
    pub source_system: String,
    /// Assigning authority of the patient ids (Synthea's UUIDs).
    pub assigning_authority: String,
    /// `occurred_at` of reference data (payers), which the export does not date.
    pub reference_data_at: Timestamp,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source_system: "synthea".to_owned(),
            assigning_authority: "synthea".to_owned(),
            reference_data_at: Timestamp { seconds: 0, nanos: 0 },
        }
    }
}

/// Why a file or a row could not be mapped.
pub type SyntheaError = crate::table::TableError;

/// Where each required column of a file sits in its header.
#[derive(Debug, Clone)]
pub struct Columns {
    file: SyntheaFile,
    index: HashMap<&'static str, usize>,
}

impl Columns {
    /// Finds the file's required columns in `header` (names compared case-insensitively,
    /// a UTF-8 BOM and surrounding blanks ignored); extra columns are ignored.
    pub fn new(file: SyntheaFile, header: &csv::StringRecord) -> Result<Self, SyntheaError> {
        let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('\u{feff}').trim()).collect();
        let mut index = HashMap::new();
        for &column in file.required_columns() {
            let i = names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(column))
                .ok_or(SyntheaError::MissingColumn {
                    file: file.file_name(),
                    column,
                })?;
            index.insert(column, i);
        }
        Ok(Self { file, index })
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

    fn file(&self) -> &'static str {
        self.columns.file.file_name()
    }

    /// The trimmed value of a required column; `None` when empty (or the row is short).
    /// Asking for a column that is not in the file's required list is a bug.
    fn opt(&self, column: &'static str) -> Option<&'a str> {
        let i = *self
            .columns
            .index
            .get(column)
            .unwrap_or_else(|| panic!("{column} is not a required column of {}", self.file()));
        self.record.get(i).map(str::trim).filter(|v| !v.is_empty())
    }

    fn req(&self, column: &'static str) -> Result<&'a str, SyntheaError> {
        self.opt(column).ok_or(SyntheaError::MissingValue {
            file: self.file(),
            line: self.line,
            column,
        })
    }

    fn bad(&self, column: &'static str, value: &str, reason: impl Into<String>) -> SyntheaError {
        SyntheaError::BadValue {
            file: self.file(),
            line: self.line,
            column,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// An ISO 8601 date-time with offset (`2023-01-27T16:17:47Z`), or a plain date
    /// taken as 00:00 UTC.
    fn time(&self, column: &'static str) -> Result<Option<Timestamp>, SyntheaError> {
        let Some(v) = self.opt(column) else { return Ok(None) };
        if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
            return Ok(Some(timestamp(t)));
        }
        match parse_date(v) {
            Some(d) => Ok(Some(timestamp(d.midnight().assume_utc()))),
            None => Err(self.bad(column, v, "is not an ISO 8601 date or date-time")),
        }
    }

    fn req_time(&self, column: &'static str) -> Result<Timestamp, SyntheaError> {
        self.req(column)?;
        Ok(self.time(column)?.expect("value checked present"))
    }

    fn date(&self, column: &'static str) -> Result<Date, SyntheaError> {
        let v = self.req(column)?;
        parse_date(v)
            .or_else(|| OffsetDateTime::parse(v, &Rfc3339).ok().map(|t| t.date()))
            .ok_or_else(|| self.bad(column, v, "is not an ISO 8601 date"))
    }

    fn number(&self, column: &'static str) -> Result<f64, SyntheaError> {
        let v = self.req(column)?;
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| self.bad(column, v, "is not a finite number"))
    }
}

fn parse_date(v: &str) -> Option<Date> {
    Date::parse(v, format_description!("[year]-[month]-[day]")).ok()
}

fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

fn event(id: String, patient: Option<&str>, occurred_at: Timestamp, payload: Payload, opts: &Options) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id,
        source_system: opts.source_system.clone(),
        occurred_at: Some(occurred_at),
        patient: patient.map(|mrn| pb::PatientRef {
            mrn: mrn.to_owned(),
            assigning_authority: opts.assigning_authority.clone(),
        }),
        payload: Some(payload),
    }
}

/// patients.csv row -> `PatientRegistered` at the birth date.
pub fn patient(row: &Row<'_>, opts: &Options) -> Result<ClinicalEvent, SyntheaError> {
    let id = row.req("Id")?;
    let birth = row.date("BIRTHDATE")?;
    let sex = match row.opt("GENDER") {
        None => AdministrativeSex::Unspecified,
        Some("F") => AdministrativeSex::Female,
        Some("M") => AdministrativeSex::Male,
        Some(other) => return Err(row.bad("GENDER", other, "is not M or F")),
    };
    let demographics = pb::PatientDemographics {
        given_name: row.opt("FIRST").unwrap_or_default().to_owned(),
        family_name: row.opt("LAST").unwrap_or_default().to_owned(),
        birth_date: Some(pb::Date {
            year: birth.year(),
            month: i32::from(u8::from(birth.month())),
            day: i32::from(birth.day()),
        }),
        sex: sex as i32,
        postal_code: row.opt("ZIP").unwrap_or_default().to_owned(),
        deceased_at: row.time("DEATHDATE")?,
    };
    Ok(event(
        format!("patients/{id}"),
        Some(id),
        timestamp(birth.midnight().assume_utc()),
        Payload::PatientRegistered(demographics),
        opts,
    ))
}

/// payers.csv row -> `ReferenceData` payer at [`Options::reference_data_at`].
pub fn payer(row: &Row<'_>, opts: &Options) -> Result<ClinicalEvent, SyntheaError> {
    let id = row.req("Id")?;
    let name = row.req("NAME")?;
    // Synthea's public programmes and its "no insurance" pseudo-payer; the rest are
    // commercial plans.
    let payer_type = match name {
        "Medicare" | "Medicaid" | "Dual Eligible" => "public",
        "NO_INSURANCE" => "self-pay",
        _ => "private",
    };
    Ok(event(
        format!("payers/{id}"),
        None,
        opts.reference_data_at,
        Payload::ReferenceData(pb::ReferenceData {
            item: Some(Item::Payer(pb::Payer {
                code: id.to_owned(),
                name: name.to_owned(),
                payer_type: payer_type.to_owned(),
            })),
        }),
        opts,
    ))
}

/// encounters.csv row -> `Admission` at `START`, then `Discharge` at `STOP` if set.
pub fn encounter(row: &Row<'_>, opts: &Options) -> Result<Vec<ClinicalEvent>, SyntheaError> {
    let id = row.req("Id")?;
    let patient = row.req("PATIENT")?;
    let start = row.req_time("START")?;
    let stop = row.time("STOP")?;
    let class = row.req("ENCOUNTERCLASS")?;
    let (encounter_class, admission_type) = match class.to_ascii_lowercase().as_str() {
        "inpatient" => (EncounterClass::Inpatient, AdmissionType::Unspecified),
        "emergency" => (EncounterClass::Emergency, AdmissionType::Emergency),
        "urgentcare" => (EncounterClass::Outpatient, AdmissionType::Urgent),
        "ambulatory" | "wellness" | "outpatient" => (EncounterClass::Outpatient, AdmissionType::Unspecified),
        _ => {
            return Err(row.bad(
                "ENCOUNTERCLASS",
                class,
                "is not an encounter class (inpatient, emergency, ambulatory, wellness, outpatient, urgentcare)",
            ))
        }
    };
    let admission = pb::Admission {
        encounter_id: id.to_owned(),
        encounter_class: encounter_class as i32,
        admission_type: admission_type as i32,
        location: row.opt("ORGANIZATION").map(|org| pb::Location {
            department_code: org.to_owned(),
            ..Default::default()
        }),
        attending_practitioner: row.opt("PROVIDER").unwrap_or_default().to_owned(),
        payer_code: row.opt("PAYER").unwrap_or_default().to_owned(),
        admitting_diagnosis: row.opt("REASONCODE").unwrap_or_default().to_owned(),
    };
    let mut out = vec![event(
        format!("encounters/{id}/admission"),
        Some(patient),
        start,
        Payload::Admission(admission),
        opts,
    )];
    if let Some(stop) = stop {
        out.push(event(
            format!("encounters/{id}/discharge"),
            Some(patient),
            stop,
            Payload::Discharge(pb::Discharge {
                encounter_id: id.to_owned(),
                disposition: DischargeDisposition::Unspecified as i32,
            }),
            opts,
        ));
    }
    Ok(out)
}

/// medications.csv row -> `MedicationOrder` at `START`.
pub fn medication(row: &Row<'_>, opts: &Options) -> Result<ClinicalEvent, SyntheaError> {
    let patient = row.req("PATIENT")?;
    let start_raw = row.req("START")?;
    let start = row.req_time("START")?;
    let encounter = row.opt("ENCOUNTER").unwrap_or_default();
    let code = row.req("CODE")?;
    let key = format!("{patient}/{encounter}/{code}/{start_raw}");
    Ok(event(
        format!("medications/{key}"),
        Some(patient),
        start,
        Payload::MedicationOrder(pb::MedicationOrder {
            order_id: key,
            encounter_id: encounter.to_owned(),
            drug_code: code.to_owned(),
            drug_name: row.opt("DESCRIPTION").unwrap_or_default().to_owned(),
            starts_at: Some(start),
            ends_at: row.time("STOP")?,
            ..Default::default()
        }),
        opts,
    ))
}

/// The (patient, encounter, time) that groups vital-sign rows into one set. Ordered by
/// patient, encounter, then time, so sets come out in a deterministic order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VitalKey {
    pub patient: String,
    pub encounter: String,
    /// `(seconds, nanos)` of `DATE`.
    pub at: (i64, i32),
    /// `DATE` as written, for the event id.
    pub date: String,
}

/// What one observations.csv row becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservationRow {
    /// One measurement of a vital-sign set; see [`vital_set`].
    Vital(VitalKey, pb::Observation),
    /// A lab (or survey) result, numeric or text.
    Lab(Box<ClinicalEvent>),
    /// Not mapped, with the reason.
    Skipped(&'static str),
}

/// `^\d+-\d$`: the shape of a LOINC code (with its check digit).
fn is_loinc(code: &str) -> bool {
    match code.split_once('-') {
        Some((num, check)) => {
            !num.is_empty()
                && num.bytes().all(|b| b.is_ascii_digit())
                && check.len() == 1
                && check.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// observations.csv row -> a vital-sign measurement, a lab result, or skipped.
pub fn observation(row: &Row<'_>, opts: &Options) -> Result<ObservationRow, SyntheaError> {
    let code = row.req("CODE")?;
    if !is_loinc(code) {
        return Ok(ObservationRow::Skipped("code is not LOINC (QALY, DALY, QOLS)"));
    }
    let patient = row.req("PATIENT")?;
    let date = row.req("DATE")?;
    let at = row.req_time("DATE")?;
    let encounter = row.opt("ENCOUNTER").unwrap_or_default();
    let unit = row.opt("UNITS").unwrap_or_default().to_owned();
    let ty = row.req("TYPE")?;
    let (value, value_text) = match ty {
        "numeric" => (Some(row.number("VALUE")?), String::new()),
        "text" => (None, row.req("VALUE")?.to_owned()),
        other => return Err(row.bad("TYPE", other, "is not numeric or text")),
    };
    if let (Some(value), true) = (value, VITAL_SIGN_CODES.contains(&code)) {
        return Ok(ObservationRow::Vital(
            VitalKey {
                patient: patient.to_owned(),
                encounter: encounter.to_owned(),
                at: (at.seconds, at.nanos),
                date: date.to_owned(),
            },
            pb::Observation {
                loinc_code: code.to_owned(),
                value,
                unit,
            },
        ));
    }
    Ok(ObservationRow::Lab(Box::new(event(
        format!("observations/{patient}/{encounter}/{date}/{code}"),
        Some(patient),
        at,
        Payload::LabResult(pb::LabResult {
            encounter_id: encounter.to_owned(),
            loinc_code: code.to_owned(),
            display: row.opt("DESCRIPTION").unwrap_or_default().to_owned(),
            value,
            value_text,
            unit,
            ..Default::default()
        }),
        opts,
    ))))
}

/// One `VitalSigns` event from the measurements sharing `key`, ordered as
/// [`VITAL_SIGN_CODES`] (then as read).
pub fn vital_set(key: &VitalKey, mut observations: Vec<pb::Observation>, opts: &Options) -> ClinicalEvent {
    observations.sort_by_key(|o| VITAL_SIGN_CODES.iter().position(|c| *c == o.loinc_code));
    event(
        format!(
            "observations/{}/{}/{}/vital-signs",
            key.patient, key.encounter, key.date
        ),
        Some(&key.patient),
        Timestamp {
            seconds: key.at.0,
            nanos: key.at.1,
        },
        Payload::VitalSigns(pb::VitalSigns {
            encounter_id: key.encounter.clone(),
            observations,
            ..Default::default()
        }),
        opts,
    )
}

/// A Synthea export directory.
#[derive(Debug, Clone)]
pub struct Export {
    dir: PathBuf,
    options: Options,
}

impl Export {
    pub fn new(dir: impl Into<PathBuf>, options: Options) -> Self {
        Self {
            dir: dir.into(),
            options,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens one file and checks its header; the events stream from the iterator.
    pub fn events(&self, file: SyntheaFile) -> Result<Events<File>, SyntheaError> {
        let path = self.dir.join(file.file_name());
        let f = File::open(&path).map_err(|e| SyntheaError::Io {
            file: file.file_name(),
            message: format!("cannot open {}: {e}", path.display()),
        })?;
        Events::new(file, f, self.options.clone())
    }

    /// Reads every mapped file in [`SyntheaFile::ALL`] order, handing each event to
    /// `sink`. Row errors are collected in the summary; a file that cannot be opened or
    /// lacks a required column stops the read.
    pub fn read_all(&self, mut sink: impl FnMut(ClinicalEvent)) -> Result<Summary, SyntheaError> {
        let mut summary = Summary::default();
        for file in SyntheaFile::ALL {
            let mut events = self.events(file)?;
            let mut count = 0;
            for item in events.by_ref() {
                match item {
                    Ok(e) => {
                        count += 1;
                        sink(e);
                    }
                    Err(e) => summary.errors.push(e),
                }
            }
            summary.files.insert(
                file,
                FileSummary {
                    rows: events.rows(),
                    events: count,
                    skipped: events.skipped(),
                },
            );
        }
        Ok(summary)
    }
}

/// What [`Export::read_all`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub files: BTreeMap<SyntheaFile, FileSummary>,
    /// Rows that could not be mapped, in file then line order.
    pub errors: Vec<SyntheaError>,
}

/// Per-file counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Data rows read (without the header), including bad ones.
    pub rows: u64,
    /// Events made.
    pub events: u64,
    /// Rows deliberately not mapped (see [`ObservationRow::Skipped`]).
    pub skipped: u64,
}

/// The events of one file, row by row: `Ok` events and `Err` bad rows, in file order
/// (vital-sign sets at the end of observations.csv).
pub struct Events<R: Read> {
    file: SyntheaFile,
    reader: csv::Reader<R>,
    columns: Columns,
    options: Options,
    record: csv::StringRecord,
    pending: VecDeque<Result<ClinicalEvent, SyntheaError>>,
    vitals: BTreeMap<VitalKey, Vec<pb::Observation>>,
    seen: HashMap<String, u32>,
    rows: u64,
    skipped: u64,
    done: bool,
}

impl<R: Read> Events<R> {
    /// Reads the header of `input` (the contents of `file`) and checks its columns.
    pub fn new(file: SyntheaFile, input: R, options: Options) -> Result<Self, SyntheaError> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let header = reader.headers().map_err(|e| csv_error(file, &e))?.clone();
        let columns = Columns::new(file, &header)?;
        Ok(Self {
            file,
            reader,
            columns,
            options,
            record: csv::StringRecord::new(),
            pending: VecDeque::new(),
            vitals: BTreeMap::new(),
            seen: HashMap::new(),
            rows: 0,
            skipped: 0,
            done: false,
        })
    }

    /// Data rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows deliberately not mapped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Appends `#n` to an id already made from this file (and to a medication's order
    /// id, which is the same key).
    fn push(&mut self, mut event: ClinicalEvent) {
        let n = self.seen.entry(event.event_id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let suffix = format!("#{n}");
            event.event_id.push_str(&suffix);
            if let Some(Payload::MedicationOrder(m)) = event.payload.as_mut() {
                m.order_id.push_str(&suffix);
            }
        }
        self.pending.push_back(Ok(event));
    }

    fn map_record(&mut self, line: u64) -> Result<(), SyntheaError> {
        let row = Row::new(&self.columns, &self.record, line);
        let opts = &self.options;
        match self.file {
            SyntheaFile::Payers => {
                let e = payer(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::Patients => {
                let e = patient(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::Encounters => {
                for e in encounter(&row, opts)? {
                    self.push(e);
                }
            }
            SyntheaFile::Medications => {
                let e = medication(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::Observations => match observation(&row, opts)? {
                ObservationRow::Vital(key, o) => self.vitals.entry(key).or_default().push(o),
                ObservationRow::Lab(e) => self.push(*e),
                ObservationRow::Skipped(_) => self.skipped += 1,
            },
        }
        Ok(())
    }
}

fn csv_error(file: SyntheaFile, e: &csv::Error) -> SyntheaError {
    match e.kind() {
        csv::ErrorKind::Io(io) => SyntheaError::Io {
            file: file.file_name(),
            message: io.to_string(),
        },
        _ => SyntheaError::Csv {
            file: file.file_name(),
            line: e.position().map_or(0, csv::Position::line),
            message: e.to_string(),
        },
    }
}

impl<R: Read> Iterator for Events<R> {
    type Item = Result<ClinicalEvent, SyntheaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {
                    self.rows += 1;
                    let line = self.record.position().map_or(0, csv::Position::line);
                    if let Err(e) = self.map_record(line) {
                        return Some(Err(e));
                    }
                }
                Ok(false) => {
                    self.done = true;
                    for (key, observations) in std::mem::take(&mut self.vitals) {
                        let e = vital_set(&key, observations, &self.options);
                        self.push(e);
                    }
                }
                Err(e) => {
                    let err = csv_error(self.file, &e);
                    // A read failure cannot be skipped past; a malformed record can.
                    if matches!(err, SyntheaError::Io { .. }) {
                        self.done = true;
                    } else {
                        self.rows += 1;
                    }
                    return Some(Err(err));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(file: SyntheaFile, text: &str) -> Vec<Result<ClinicalEvent, SyntheaError>> {
        Events::new(file, text.as_bytes(), Options::default())
            .unwrap()
            .collect()
    }

    #[test]
    fn loinc_shape() {
        assert!(is_loinc("8480-6"));
        assert!(is_loinc("29463-7"));
        assert!(!is_loinc("QALY"));
        assert!(!is_loinc("8480-"));
        assert!(!is_loinc("-6"));
        assert!(!is_loinc("84a0-6"));
    }

    #[test]
    fn columns_found_by_name_in_any_order() {
        let text = "EXTRA,NAME,Id\nx,Medicare,P1\n";
        let e = events(SyntheaFile::Payers, text);
        let Ok(ClinicalEvent {
            event_id,
            payload:
                Some(Payload::ReferenceData(pb::ReferenceData {
                    item: Some(Item::Payer(p)),
                })),
            ..
        }) = &e[0]
        else {
            panic!("{e:?}")
        };
        assert_eq!(event_id, "payers/P1");
        assert_eq!(
            (p.code.as_str(), p.name.as_str(), p.payer_type.as_str()),
            ("P1", "Medicare", "public")
        );
    }

    #[test]
    fn repeated_keys_get_suffixes_and_vitals_group() {
        let text = "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n\
            2024-01-01T10:00:00Z,P,E,vital-signs,8462-4,DBP,80,mm[Hg],numeric\n\
            2024-01-01T10:00:00Z,P,E,survey,1-8,Q,Yes,,text\n\
            2024-01-01T10:00:00Z,P,E,survey,1-8,Q,No,,text\n\
            2024-01-01T10:00:00Z,P,E,vital-signs,8480-6,SBP,120,mm[Hg],numeric\n\
            2024-01-01T10:00:00Z,P,,,QALY,QALY,3.0,a,numeric\n";
        let e: Vec<_> = events(SyntheaFile::Observations, text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let ids: Vec<_> = e.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "observations/P/E/2024-01-01T10:00:00Z/1-8",
                "observations/P/E/2024-01-01T10:00:00Z/1-8#2",
                "observations/P/E/2024-01-01T10:00:00Z/vital-signs",
            ]
        );
        let Some(Payload::VitalSigns(v)) = &e[2].payload else {
            panic!()
        };
        let codes: Vec<_> = v.observations.iter().map(|o| o.loinc_code.as_str()).collect();
        assert_eq!(codes, ["8480-6", "8462-4"]);
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let text = "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,REASONCODE\n\
            E1,2024-01-01T10:00:00Z,,P,O,D,Y,snf,\n\
            E2,2024-01-01T10:00:00Z,,P,O,D,Y,inpatient,\n";
        let e = events(SyntheaFile::Encounters, text);
        assert_eq!(e.len(), 2);
        let err = e[0].as_ref().unwrap_err();
        assert_eq!((err.line(), err.column()), (Some(2), Some("ENCOUNTERCLASS")));
        assert_eq!(e[1].as_ref().unwrap().event_id, "encounters/E2/admission");
    }
}
