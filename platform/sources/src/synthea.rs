//! Synthea CSV export -> canonical `ClinicalEvent`s: patients, payers, encounters,
//! conditions, procedures, observations, medications and charge lines.
//!
//! Owns which Synthea column feeds which event field, and a small streaming reader over
//! an export directory ([`Export`], [`Events`]). The mapping functions ([`patient`],
//! [`payer`], [`encounter`], [`condition`], [`procedure`], [`observation`],
//! [`vital_set`], [`medication`], [`charge`]) are pure; the reader is the only part that touches files. Validation (ranges, future
//! dates, required event fields) stays at the platform's ingest door, as for every
//! source. Header and row reading are [`crate::table`]'s.
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
//!   `medications/<PATIENT>/<ENCOUNTER>/<CODE>/<START>`, conditions and procedures
//!   `conditions/...` and `procedures/...` with the same key, observations
//!   `observations/<PATIENT>/<ENCOUNTER>/<DATE>/<CODE>` and
//!   `observations/<PATIENT>/<ENCOUNTER>/<DATE>/vital-signs`; charge lines
//!   `claims_transactions/<ID>`. A key seen again in the
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
//! - Conditions -> `Diagnosis` at `START` (the onset; a plain date, so 00:00 UTC): code
//!   `CODE` in SNOMED CT, display `DESCRIPTION`, `encounter_id` `ENCOUNTER`. `STOP` set:
//!   `abated_at` = `STOP` and clinical status resolved; else active. No `recorded_at`
//!   (the export has no recorded date) and no rank. Role: unspecified, as
//!   [`crate::fhir`] maps Synthea's FHIR Conditions (an encounter, no category), so one
//!   Synthea condition is one warehouse row whichever export it came from. Synthea
//!   states no role: `ENCOUNTER` is where the condition was first recorded, and a
//!   chronic condition or a social finding ("Full-time employment") recorded there
//!   stays open for years, more a problem-list entry than that encounter's diagnosis.
//!   A condition without `ENCOUNTER` is a problem-list entry (as in FHIR), the only
//!   role that needs no encounter.
//! - Procedures -> `ProcedurePerformed` at `START`, `ended_at` = `STOP`, code `CODE` in
//!   SNOMED CT, display `DESCRIPTION`, `encounter_id` `ENCOUNTER`, unranked, no
//!   performer (procedures.csv has no provider). Synthea v3 layout: v2's `DATE` column
//!   is refused as a missing `START`.
//! - Codes are sent as the export labels them (SNOMED CT; Synthea v3.0 has no `SYSTEM`
//!   column, and a later export's is ignored like any extra column). Whether a code has
//!   a SNOMED CT concept id's shape is the ingest door's check, not this module's: a
//!   Synthea module that writes a LOINC code as SNOMED CT (one does, in the FHIR
//!   export) is rejected there by event and field, the same way from CSV as from FHIR,
//!   rather than dropped here into a skip count.
//! - Observations: numeric rows with a vital-sign LOINC ([`VITAL_SIGN_CODES`]) are
//!   grouped by (`PATIENT`, `ENCOUNTER`, `DATE`) into one `VitalSigns` set; other
//!   numeric rows and text rows become `LabResult`s. Rows whose code is not a LOINC code
//!   (Synthea's QALY, DALY and QOLS, simulation outputs, not observations of the
//!   patient) are skipped and counted. Vital sets are emitted when the file ends, in
//!   key order; only the vital rows are held in memory, every other row streams.
//! - Medications: one `MedicationOrder` at `START` (`STOP` -> `ends_at`), `CODE` is
//!   RxNorm. No dose, route or frequency: the export does not have them.
//! - Charges: each claims_transactions.csv row with `TYPE` = CHARGE is one `ChargeLine`
//!   at `FROMDATE`: `charge_id` = `ID`, patient `PATIENTID`, encounter `APPOINTMENTID`
//!   (the encounter's `Id`, as in claims.csv), code `PROCEDURECODE` (SNOMED CT for
//!   procedures and encounters, RxNorm for medications, CVX for immunizations),
//!   description `NOTES` (else the code), quantity `UNITS`, `unit_price_minor` =
//!   `UNITAMOUNT` in cents, currency USD. PAYMENT, TRANSFERIN and TRANSFEROUT rows move
//!   money already charged: skipped and counted.
//! - A charge's payer is its claim's primary payer: claims.csv `PRIMARYPATIENTINSURANCEID`
//!   (a payers.csv `Id`; `0` means no insurance: the export's `NO_INSURANCE` payer, as
//!   encounters.csv gives those encounters). The transactions' own
//!   `PATIENTINSURANCEID` is not a payer (it holds the patient's id). claims.csv is read
//!   first into a claim -> payer map ([`ClaimPayers`], about one claim id per claim);
//!   the transactions stream. A charge whose `CLAIMID` is not in claims.csv is a bad
//!   row. claims.csv's other columns are not mapped: it has no amounts (only
//!   outstanding balances, all zero in practice).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use hospital_proto::events::{
    self as pb, clinical_event::Payload, reference_data::Item, AdministrativeSex, AdmissionType, ClinicalEvent,
    CodeSystem, ConditionStatus, DiagnosisRole, DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::table::{self, csv_error};

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
    Conditions,
    Procedures,
    Observations,
    Medications,
    ClaimsTransactions,
}

impl SyntheaFile {
    pub const ALL: [Self; 8] = [
        Self::Payers,
        Self::Patients,
        Self::Encounters,
        Self::Conditions,
        Self::Procedures,
        Self::Observations,
        Self::Medications,
        Self::ClaimsTransactions,
    ];

    /// `patients.csv`, ...
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Payers => "payers.csv",
            Self::Patients => "patients.csv",
            Self::Encounters => "encounters.csv",
            Self::Conditions => "conditions.csv",
            Self::Procedures => "procedures.csv",
            Self::Observations => "observations.csv",
            Self::Medications => "medications.csv",
            Self::ClaimsTransactions => "claims_transactions.csv",
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
            Self::Conditions | Self::Procedures => &["START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"],
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
            Self::ClaimsTransactions => &[
                "ID",
                "CLAIMID",
                "PATIENTID",
                "TYPE",
                "FROMDATE",
                "PROCEDURECODE",
                "UNITS",
                "NOTES",
                "UNITAMOUNT",
                "APPOINTMENTID",
            ],
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

pub use crate::table::{Columns, Row};

/// Synthea's value formats, read from a [`Row`].
trait Values {
    /// An ISO 8601 date-time with offset (`2023-01-27T16:17:47Z`), or a plain date
    /// taken as 00:00 UTC.
    fn time(&self, column: &'static str) -> Result<Option<Timestamp>, SyntheaError>;
    fn req_time(&self, column: &'static str) -> Result<Timestamp, SyntheaError>;
    fn date(&self, column: &'static str) -> Result<Date, SyntheaError>;
    fn number(&self, column: &'static str) -> Result<f64, SyntheaError>;
}

const NOT_A_TIME: &str = "is not an ISO 8601 date or date-time";

fn parse_time(v: &str) -> Option<Timestamp> {
    match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(timestamp(t)),
        Err(_) => parse_date(v).map(|d| timestamp(d.midnight().assume_utc())),
    }
}

fn parse_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|n| n.is_finite())
}

impl Values for Row<'_> {
    fn time(&self, column: &'static str) -> Result<Option<Timestamp>, SyntheaError> {
        self.parse_opt(column, parse_time, NOT_A_TIME)
    }

    fn req_time(&self, column: &'static str) -> Result<Timestamp, SyntheaError> {
        self.parse(column, parse_time, NOT_A_TIME)
    }

    fn date(&self, column: &'static str) -> Result<Date, SyntheaError> {
        self.parse(
            column,
            |v| parse_date(v).or_else(|| OffsetDateTime::parse(v, &Rfc3339).ok().map(|t| t.date())),
            "is not an ISO 8601 date",
        )
    }

    fn number(&self, column: &'static str) -> Result<f64, SyntheaError> {
        self.parse(column, parse_number, "is not a finite number")
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

/// conditions.csv row -> `Diagnosis` at `START` (see the module doc for the role and
/// status).
pub fn condition(row: &Row<'_>, opts: &Options) -> Result<ClinicalEvent, SyntheaError> {
    let patient = row.req("PATIENT")?;
    let start_raw = row.req("START")?;
    let start = row.req_time("START")?;
    let stop = row.time("STOP")?;
    let encounter = row.opt("ENCOUNTER").unwrap_or_default();
    let code = row.req("CODE")?;
    let role = if encounter.is_empty() {
        DiagnosisRole::ProblemList
    } else {
        DiagnosisRole::Unspecified
    };
    let clinical_status = if stop.is_some() {
        ConditionStatus::Resolved
    } else {
        ConditionStatus::Active
    };
    Ok(event(
        format!("conditions/{patient}/{encounter}/{code}/{start_raw}"),
        Some(patient),
        start,
        Payload::Diagnosis(pb::Diagnosis {
            encounter_id: encounter.to_owned(),
            code: code.to_owned(),
            code_system: CodeSystem::SnomedCt as i32,
            display: row.opt("DESCRIPTION").unwrap_or_default().to_owned(),
            role: role as i32,
            rank: 0,
            clinical_status: clinical_status as i32,
            abated_at: stop,
            recorded_at: None,
        }),
        opts,
    ))
}

/// procedures.csv row -> `ProcedurePerformed` at `START` (`STOP` -> `ended_at`).
pub fn procedure(row: &Row<'_>, opts: &Options) -> Result<ClinicalEvent, SyntheaError> {
    let patient = row.req("PATIENT")?;
    let start_raw = row.req("START")?;
    let start = row.req_time("START")?;
    let encounter = row.opt("ENCOUNTER").unwrap_or_default();
    let code = row.req("CODE")?;
    Ok(event(
        format!("procedures/{patient}/{encounter}/{code}/{start_raw}"),
        Some(patient),
        start,
        Payload::Procedure(pb::ProcedurePerformed {
            encounter_id: encounter.to_owned(),
            code: code.to_owned(),
            code_system: CodeSystem::SnomedCt as i32,
            display: row.opt("DESCRIPTION").unwrap_or_default().to_owned(),
            ended_at: row.time("STOP")?,
            rank: 0,
            performer: String::new(),
        }),
        opts,
    ))
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

/// claims.csv: read only for each claim's primary payer (see [`ClaimPayers`]).
pub const CLAIMS_FILE: &str = "claims.csv";
const CLAIMS_COLUMNS: &[&str] = &["Id", "PRIMARYPATIENTINSURANCEID"];

/// Each claim's primary payer, from claims.csv (`Id` -> `PRIMARYPATIENTINSURANCEID`;
/// `0`, Synthea's "no insurance", becomes no payer). claims_transactions.csv names the
/// claim of each line but not its payer. Payer ids are held once each, so the map costs
/// about one claim id per claim.
#[derive(Debug, Clone, Default)]
pub struct ClaimPayers {
    claims: HashMap<String, u32>,
    payers: Vec<String>,
    /// The export's `NO_INSURANCE` payer, for claims whose primary payer is `0`.
    uninsured: String,
}

impl ClaimPayers {
    /// Reads claims.csv; bad rows come back beside the map (their claims stay unknown).
    pub fn read<R: Read>(input: R) -> Result<(Self, Vec<SyntheaError>), SyntheaError> {
        let (reader, columns) = table::reader(CLAIMS_FILE, CLAIMS_COLUMNS, input)?;
        Self::from_reader(reader, &columns)
    }

    fn from_reader<R: Read>(
        reader: csv::Reader<R>,
        columns: &Columns,
    ) -> Result<(Self, Vec<SyntheaError>), SyntheaError> {
        let mut out = Self::default();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut errors = Vec::new();
        for item in table::records(CLAIMS_FILE, reader) {
            let (line, record) = match item {
                Ok(r) => r,
                Err(e @ SyntheaError::Io { .. }) => return Err(e),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let row = Row::new(columns, &record, line);
            let (id, payer) = match (row.req("Id"), row.req("PRIMARYPATIENTINSURANCEID")) {
                (Ok(id), Ok(payer)) => (id, payer),
                (Err(e), _) | (_, Err(e)) => {
                    errors.push(e);
                    continue;
                }
            };
            let payer = if payer == "0" { "" } else { payer };
            let next = out.payers.len() as u32;
            let i = *index.entry(payer.to_owned()).or_insert_with(|| {
                out.payers.push(payer.to_owned());
                next
            });
            out.claims.insert(id.to_owned(), i);
        }
        Ok((out, errors))
    }

    /// The claim's primary payer (for no insurance the `NO_INSURANCE` payer when known,
    /// else empty); `None` for a claim not in claims.csv.
    pub fn get(&self, claim: &str) -> Option<&str> {
        self.claims.get(claim).map(|&i| match self.payers[i as usize].as_str() {
            "" => self.uninsured.as_str(),
            payer => payer,
        })
    }

    /// Charges of claims without insurance go to `payer` (the export's `NO_INSURANCE`
    /// payer, as encounters.csv does), not to no payer.
    pub fn with_uninsured(mut self, payer: impl Into<String>) -> Self {
        self.uninsured = payer.into();
        self
    }

    pub fn len(&self) -> usize {
        self.claims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

/// Dollars with cents (`77.49`) -> cents.
fn cents(v: &str) -> Option<i64> {
    parse_number(v)
        .filter(|d| d.abs() < 1e13)
        .map(|d| (d * 100.0).round() as i64)
}

/// claims_transactions.csv row -> a `ChargeLine` at `FROMDATE` for `TYPE` = CHARGE;
/// `None` for the other types (PAYMENT, TRANSFERIN, TRANSFEROUT move money already
/// charged).
pub fn charge(row: &Row<'_>, claims: &ClaimPayers, opts: &Options) -> Result<Option<ClinicalEvent>, SyntheaError> {
    if row.req("TYPE")? != "CHARGE" {
        return Ok(None);
    }
    let id = row.req("ID")?;
    let claim = row.req("CLAIMID")?;
    let payer = claims
        .get(claim)
        .ok_or_else(|| row.bad("CLAIMID", claim, format!("is not a claim of {CLAIMS_FILE}")))?;
    let patient = row.req("PATIENTID")?;
    let at = row.req_time("FROMDATE")?;
    let code = row.req("PROCEDURECODE")?;
    Ok(Some(event(
        format!("claims_transactions/{id}"),
        Some(patient),
        at,
        Payload::ChargeLine(pb::ChargeLine {
            charge_id: id.to_owned(),
            encounter_id: row.opt("APPOINTMENTID").unwrap_or_default().to_owned(),
            code: code.to_owned(),
            description: row.opt("NOTES").unwrap_or(code).to_owned(),
            quantity: row.number("UNITS")?,
            unit_price_minor: row.parse("UNITAMOUNT", cents, "is not an amount in dollars")?,
            currency: "USD".to_owned(),
            payer_code: payer.to_owned(),
        }),
        opts,
    )))
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
    /// claims_transactions.csv first reads claims.csv for the claims' payers (its bad
    /// rows come first from the iterator).
    pub fn events(&self, file: SyntheaFile) -> Result<Events<Box<dyn Read>>, SyntheaError> {
        let (reader, columns) = table::open(&self.dir, file.file_name(), file.required_columns())?;
        let mut events = Events::with_reader(file, reader, columns, self.options.clone());
        if file == SyntheaFile::ClaimsTransactions {
            let (reader, columns) = table::open(&self.dir, CLAIMS_FILE, CLAIMS_COLUMNS)?;
            let (mut claims, errors) = ClaimPayers::from_reader(reader, &columns)?;
            if let Some(id) = self.uninsured_payer()? {
                claims = claims.with_uninsured(id);
            }
            events.pending.extend(errors.into_iter().map(Err));
            events = events.with_claims(claims);
        }
        Ok(events)
    }

    /// The `Id` of payers.csv's `NO_INSURANCE` row, if there is one.
    fn uninsured_payer(&self) -> Result<Option<String>, SyntheaError> {
        let file = SyntheaFile::Payers.file_name();
        let (reader, columns) = table::open(&self.dir, file, &["Id", "NAME"])?;
        for (line, record) in table::records(file, reader).flatten() {
            let row = Row::new(&columns, &record, line);
            if row.opt("NAME") == Some("NO_INSURANCE") {
                return Ok(row.opt("Id").map(str::to_owned));
            }
        }
        Ok(None)
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
    /// Rows deliberately not mapped (see [`ObservationRow::Skipped`], and the
    /// transactions other than charges in claims_transactions.csv).
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
    claims: ClaimPayers,
    rows: u64,
    skipped: u64,
    done: bool,
}

impl<R: Read> Events<R> {
    /// Reads the header of `input` (the contents of `file`) and checks its columns.
    /// For claims_transactions.csv, give the claims' payers with [`Events::with_claims`]
    /// (a charge of a claim they do not hold is a bad row).
    pub fn new(file: SyntheaFile, input: R, options: Options) -> Result<Self, SyntheaError> {
        let (reader, columns) = table::reader(file.file_name(), file.required_columns(), input)?;
        Ok(Self::with_reader(file, reader, columns, options))
    }

    fn with_reader(file: SyntheaFile, reader: csv::Reader<R>, columns: Columns, options: Options) -> Self {
        Self {
            file,
            reader,
            columns,
            options,
            record: csv::StringRecord::new(),
            pending: VecDeque::new(),
            vitals: BTreeMap::new(),
            seen: HashMap::new(),
            claims: ClaimPayers::default(),
            rows: 0,
            skipped: 0,
            done: false,
        }
    }

    /// The claims whose payers charge lines carry (claims_transactions.csv only).
    pub fn with_claims(self, claims: ClaimPayers) -> Self {
        Self { claims, ..self }
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
            SyntheaFile::Conditions => {
                let e = condition(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::Procedures => {
                let e = procedure(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::Medications => {
                let e = medication(&row, opts)?;
                self.push(e);
            }
            SyntheaFile::ClaimsTransactions => match charge(&row, &self.claims, opts)? {
                Some(e) => self.push(e),
                None => self.skipped += 1,
            },
            SyntheaFile::Observations => match observation(&row, opts)? {
                ObservationRow::Vital(key, o) => self.vitals.entry(key).or_default().push(o),
                ObservationRow::Lab(e) => self.push(*e),
                ObservationRow::Skipped(_) => self.skipped += 1,
            },
        }
        Ok(())
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
                    let err = csv_error(self.file.file_name(), &e);
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
    fn conditions_and_procedures() {
        let text = "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n\
            2023-01-27,2023-02-09,P,E1,195662009,Acute viral pharyngitis (disorder)\n\
            2011-08-09,,P,E2,232353008,Perennial allergic rhinitis\n\
            2011-08-09,,P,,232353008,Perennial allergic rhinitis\n";
        let dx: Vec<_> = events(SyntheaFile::Conditions, text)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let Some(Payload::Diagnosis(d)) = e.payload else {
                    panic!("{e:?}")
                };
                (e.event_id, e.occurred_at.unwrap().seconds, d)
            })
            .collect();
        assert_eq!(dx[0].0, "conditions/P/E1/195662009/2023-01-27");
        assert_eq!(dx[0].1, 1_674_777_600, "the onset date at 00:00 UTC");
        let d = &dx[0].2;
        assert_eq!(
            (
                d.code.as_str(),
                d.code_system,
                d.display.as_str(),
                d.encounter_id.as_str()
            ),
            (
                "195662009",
                CodeSystem::SnomedCt as i32,
                "Acute viral pharyngitis (disorder)",
                "E1"
            )
        );
        assert_eq!(
            (d.role, d.rank, d.clinical_status, d.recorded_at),
            (
                DiagnosisRole::Unspecified as i32,
                0,
                ConditionStatus::Resolved as i32,
                None
            )
        );
        assert_eq!(d.abated_at.unwrap().seconds, 1_675_900_800);
        let open = &dx[1].2;
        assert_eq!(
            (open.clinical_status, open.abated_at),
            (ConditionStatus::Active as i32, None)
        );
        assert_eq!(dx[2].2.role, DiagnosisRole::ProblemList as i32, "no encounter");

        let text = "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION\n\
            2023-10-10T04:17:47Z,2023-10-10T04:32:47Z,P,E,430193006,Medication Reconciliation (procedure),735.40,,\n\
            2023-10-10T04:17:47Z,2023-10-10T04:32:47Z,P,E,430193006,Medication Reconciliation (procedure),735.40,,\n\
            2023-10-10T04:17:47Z,yesterday,P,E,430193006,Medication Reconciliation (procedure),735.40,,\n";
        let px = events(SyntheaFile::Procedures, text);
        let e = px[0].as_ref().unwrap();
        let Some(Payload::Procedure(p)) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(e.event_id, "procedures/P/E/430193006/2023-10-10T04:17:47Z");
        assert_eq!(
            (
                p.code.as_str(),
                p.code_system,
                p.display.as_str(),
                p.encounter_id.as_str(),
                p.rank
            ),
            (
                "430193006",
                CodeSystem::SnomedCt as i32,
                "Medication Reconciliation (procedure)",
                "E",
                0
            )
        );
        assert_eq!(p.ended_at.unwrap().seconds - e.occurred_at.unwrap().seconds, 15 * 60);
        assert_eq!(
            px[1].as_ref().unwrap().event_id,
            "procedures/P/E/430193006/2023-10-10T04:17:47Z#2"
        );
        let err = px[2].as_ref().unwrap_err();
        assert_eq!(
            (err.file(), err.line(), err.column()),
            ("procedures.csv", Some(4), Some("STOP"))
        );
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
