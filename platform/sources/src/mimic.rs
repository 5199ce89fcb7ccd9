//! MIMIC-III (demo v1.4) CSV tables -> canonical `ClinicalEvent`s: patients, admissions
//! and discharges, transfers, coded diagnoses and procedures, the drug catalogue and
//! prescriptions, and charted vital signs.
//!
//! Follows [`crate::synthea`] and reads through [`crate::table`]: columns found by
//! header name (case-insensitive), every column the mapping reads is required
//! ([`MimicError::MissingColumn`] refuses the file), a bad row is one [`MimicError`]
//! naming file, 1-based line (header = line 1) and column, and the other rows still
//! map. Validation stays at the platform's ingest door.
//!
//! Rules:
//! - Dates: MIMIC shifts every patient into 2100-2210. Each patient's whole timeline is
//!   moved back by a whole number of weeks (weekdays and intervals kept):
//!   `shift_weeks = ceil((latest - anchor) / 1 week)` (0 if already before), where
//!   `latest` is the patient's latest mapped time (ADMISSIONS.DISCHTIME, PATIENTS.DOD,
//!   transfer, prescription and chart times), so every mapped time, `deceased_at` and
//!   `ends_at` included, lands on or before [`Options::anchor`]. (Eight demo patients
//!   have chart or prescription times after their last discharge and DOD; using only
//!   DISCHTIME would push those into the future.) Unparseable times are left out of
//!   `latest` and reported by their own rows.
//! - Birth dates: MIMIC puts the DOB of patients over 89 about 300 years before
//!   admission; a shifted DOB before 1900-01-01 is omitted and counted
//!   ([`Summary::birth_dates_omitted`]).
//! - PATIENTS -> `PatientRegistered` (MRN = SUBJECT_ID, sex from GENDER, `deceased_at`
//!   from DOD) at the patient's first ADMITTIME minus one minute.
//! - ADMISSIONS -> `Admission` at ADMITTIME (inpatient; department = CURR_CAREUNIT of
//!   the admission's first TRANSFERS row in file order, or `WARD`; ward `W<CURR_WARDID>`)
//!   and `Discharge` at DISCHTIME: DECEASED when HOSPITAL_EXPIRE_FLAG=1 or DEATHTIME is
//!   set, else DISCHARGE_LOCATION `HOME*` -> HOME, SNF/REHAB/ICF/LONG TERM CARE/HOSPICE
//!   -> CARE_FACILITY, `DISCH-TRAN*` -> TRANSFERRED, anything else -> OTHER.
//! - TRANSFERS rows with EVENTTYPE `transfer` -> `Transfer` at INTIME (PREV_* -> from,
//!   CURR_* -> to). `admit`/`discharge` rows are the admission and discharge themselves.
//!   ICU stays (ICUSTAYS.csv) are not separate events: they are the moves into ICU care
//!   units that the admissions and transfers already carry.
//! - DIAGNOSES_ICD -> `Diagnosis`: code ICD9_CODE in ICD-9-CM as MIMIC writes it (no
//!   dot, V and E codes included: the ingest door adds the dot and checks the shape),
//!   `encounter_id` HADM_ID, rank SEQ_NUM, role principal for SEQ_NUM 1 else secondary,
//!   no clinical status. The table has no time: the codes are assigned from the record
//!   after the stay, so a diagnosis is timed at its admission's DISCHTIME (shifted like
//!   every other time). That is when it became known, never before: a point-in-time
//!   join cannot see a stay's diagnoses while the stay runs.
//! - PROCEDURES_ICD -> `ProcedurePerformed`: ICD-9-CM volume 3 code ICD9_CODE, rank
//!   SEQ_NUM (1 the principal procedure), `encounter_id` HADM_ID, no end, no performer.
//!   The demo's table has no time either (the full database's PROCEDUREEVENTS_MV has
//!   times but not these codes), and the procedure happened somewhere between ADMITTIME
//!   and DISCHTIME. Timed at DISCHTIME, like the diagnoses coded with it: ADMITTIME
//!   would put every procedure of a stay at its first minute, before it was done, and
//!   leak it into features taken during the stay; DISCHTIME is late but never early.
//! - Both: display = LONG_TITLE of D_ICD_DIAGNOSES.csv / D_ICD_PROCEDURES.csv when that
//!   dictionary is in the directory (the demo has neither: display empty). Rows with an
//!   empty ICD9_CODE code nothing (MIMIC's schema lets both ICD9_CODE and SEQ_NUM be
//!   null) and are skipped and counted. A code with an empty or non-positive SEQ_NUM, or
//!   a HADM_ID that is not an admission of the same SUBJECT_ID in ADMISSIONS.csv (with
//!   a readable DISCHTIME), is a bad row.
//! - PRESCRIPTIONS -> `MedicationOrder` at STARTDATE (`ends_at` ENDDATE); drug code NDC,
//!   or FORMULARY_DRUG_CD when NDC is 0 or empty, or when both are empty a local code of
//!   the normalised DRUG name (code system [`DRUG_NAME`], see [`drug_name_code`]); never
//!   an empty code (a row with no name either is a bad row); dose DOSE_VAL_RX when
//!   numeric, else 0.
//! - PRESCRIPTIONS is also the drug catalogue: before the orders, one
//!   `ReferenceData::Drug` per distinct drug code the orders use, in order of first use:
//!   code system [`NDC`], [`FORMULARY`] or [`DRUG_NAME`] (as the order's code was chosen), name DRUG,
//!   strength PROD_STRENGTH, form FORM_UNIT_DISP, no class. Rows of one code spell it
//!   differently (DRUG "Metoprolol" and "Metoprolol Tartrate" for one NDC): the most
//!   frequent (DRUG, PROD_STRENGTH, FORM_UNIT_DISP) wins, ties to the first written.
//!   Timed at [`Options::reference_data_at`] (default the Unix epoch), so the warehouse
//!   names the drugs instead of inferring placeholders from the orders.
//! - CHARTEVENTS_VITALS.csv.gz -> one `VitalSigns` per (SUBJECT_ID, HADM_ID, CHARTTIME),
//!   ITEMIDs mapped by [`chart_item`]: heart and respiratory rate, SpO2, systolic and
//!   diastolic BP, temperature as observations; GCS (the total, else the three
//!   components summed) as `consciousness` by [`consciousness_from_gcs`]; oxygen
//!   device, FiO2 and O2 flow as `supplemental_oxygen` (see `ChartSet::finish`). When
//!   two ITEMIDs give one LOINC at the same time, the rank of [`chart_item`] picks one
//!   (the cuff BP over the arterial line) and the other row is superseded, counted by
//!   reason. Rows with ERROR=1, another ITEMID, an empty value or a value off its scale,
//!   and GCS components without the other two, are skipped and counted by reason. Every
//!   row is in [`Summary::balance`].
//! - Event ids: `mimic/patients/<ROW_ID>`, `mimic/admissions/<ROW_ID>/admission` and
//!   `/discharge`, `mimic/transfers/<ROW_ID>`, `mimic/diagnoses_icd/<ROW_ID>`,
//!   `mimic/procedures_icd/<ROW_ID>`, `mimic/drugs/<code system>/<code>`,
//!   `mimic/prescriptions/<ROW_ID>`,
//!   `mimic/chartevents/<SUBJECT_ID>/<HADM_ID>/<raw CHARTTIME>` (raw, so ids do not
//!   depend on the anchor).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hospital_proto::events::{
    self as pb, clinical_event::Payload, reference_data::Item, AdministrativeSex, AdmissionType, ClinicalEvent,
    CodeSystem, Consciousness, DiagnosisRole, DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;
use time::macros::{date, datetime, format_description};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::balance::Balance;
use crate::table::{self, Columns, Row, TableError};

/// The tables that are read, in the order [`Export::read_all`] emits their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MimicFile {
    Patients,
    Admissions,
    Transfers,
    DiagnosesIcd,
    ProceduresIcd,
    Prescriptions,
    ChartEventsVitals,
}

impl MimicFile {
    pub const ALL: [Self; 7] = [
        Self::Patients,
        Self::Admissions,
        Self::Transfers,
        Self::DiagnosesIcd,
        Self::ProceduresIcd,
        Self::Prescriptions,
        Self::ChartEventsVitals,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Patients => "PATIENTS.csv",
            Self::Admissions => "ADMISSIONS.csv",
            Self::Transfers => "TRANSFERS.csv",
            Self::DiagnosesIcd => "DIAGNOSES_ICD.csv",
            Self::ProceduresIcd => "PROCEDURES_ICD.csv",
            Self::Prescriptions => "PRESCRIPTIONS.csv",
            Self::ChartEventsVitals => "CHARTEVENTS_VITALS.csv.gz",
        }
    }

    /// The columns the mapping reads; a header without one of them is refused.
    pub fn required_columns(self) -> &'static [&'static str] {
        match self {
            Self::Patients => &["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD"],
            Self::Admissions => &[
                "ROW_ID",
                "SUBJECT_ID",
                "HADM_ID",
                "ADMITTIME",
                "DISCHTIME",
                "DEATHTIME",
                "ADMISSION_TYPE",
                "DISCHARGE_LOCATION",
                "HOSPITAL_EXPIRE_FLAG",
            ],
            Self::Transfers => &[
                "ROW_ID",
                "SUBJECT_ID",
                "HADM_ID",
                "EVENTTYPE",
                "PREV_CAREUNIT",
                "CURR_CAREUNIT",
                "PREV_WARDID",
                "CURR_WARDID",
                "INTIME",
            ],
            Self::DiagnosesIcd | Self::ProceduresIcd => &["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"],
            Self::Prescriptions => &[
                "ROW_ID",
                "SUBJECT_ID",
                "HADM_ID",
                "STARTDATE",
                "ENDDATE",
                "DRUG",
                "FORMULARY_DRUG_CD",
                "NDC",
                "DOSE_VAL_RX",
                "DOSE_UNIT_RX",
                "ROUTE",
                "PROD_STRENGTH",
                "FORM_UNIT_DISP",
            ],
            Self::ChartEventsVitals => &[
                "SUBJECT_ID",
                "HADM_ID",
                "ITEMID",
                "CHARTTIME",
                "VALUE",
                "VALUENUM",
                "ERROR",
            ],
        }
    }
}

/// The ICD-9-CM diagnosis dictionary, read for display names when present.
pub const D_ICD_DIAGNOSES: &str = "D_ICD_DIAGNOSES.csv";
/// The ICD-9-CM procedure dictionary, read for display names when present.
pub const D_ICD_PROCEDURES: &str = "D_ICD_PROCEDURES.csv";
const DICTIONARY_COLUMNS: &[&str] = &["ICD9_CODE", "LONG_TITLE"];

/// Options of the mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The events' `source_system`.
    pub source_system: String,
    /// Assigning authority of the MRNs (SUBJECT_IDs).
    pub assigning_authority: String,
    /// Every patient's latest time is shifted (by whole weeks) to on or before this.
    pub anchor: OffsetDateTime,
    /// `occurred_at` of the drug catalogue taken from PRESCRIPTIONS, which is not dated.
    pub reference_data_at: Timestamp,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source_system: "mimic".to_owned(),
            assigning_authority: "mimic".to_owned(),
            anchor: datetime!(2025-01-01 0:00 UTC),
            reference_data_at: Timestamp { seconds: 0, nanos: 0 },
        }
    }
}

/// Why a file or a row could not be mapped (the same errors as the Synthea export's).
pub type MimicError = crate::table::TableError;

/// What a CHARTEVENTS ITEMID feeds in a vital-sign set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartItem {
    /// A numeric observation: LOINC, UCUM unit, and the ITEMID's rank among those of
    /// the same LOINC (0 preferred; see [`chart_item`]).
    Vital {
        loinc: &'static str,
        unit: &'static str,
        rank: u8,
    },
    /// GCS total, 3-15 (CareVue 198).
    GcsTotal,
    /// A GCS component (MetaVision): eye opening 1-4, verbal response 1-5, motor
    /// response 1-6.
    GcsEye,
    GcsVerbal,
    GcsMotor,
    /// Oxygen delivery device, a text VALUE (CareVue 467, MetaVision 226732).
    O2Device,
    /// Inspired oxygen fraction, as a fraction (0.21-1) or a percentage (21-100).
    FiO2,
    /// Oxygen flow, L/min.
    O2Flow,
}

/// ITEMID -> what it feeds; `None` for items not mapped. Where several ITEMIDs give one
/// LOINC, their rank decides which one a set keeps when more than one is charted at the
/// same time (the others are superseded, counted by reason):
/// - Blood pressure, systolic 8480-6 and diastolic 8462-4: manual cuff (442/8440), then
///   the automated cuff (NBP 455/8441, 220179/220180), then the arterial line (51/8368,
///   220050/220051), then a second arterial line (6701/8555). The cuff is preferred:
///   NEWS2's bands were set and validated on cuff readings taken at the bedside round
///   (RCP 2017), which is what a charted cuff reading is, while an arterial trace reads
///   systolic higher than the cuff and carries line artefacts (damping, flushes). The
///   arterial reading is kept whenever no cuff reading was charted at that time. Both
///   components rank the devices alike, so a set's systolic and diastolic come from the
///   same device whenever it charted both.
/// - Respiratory rate 9279-1: the rate charted by the nurse (618, 220210) before the
///   ventilator's total (615, 224690).
/// - Temperature 8310-5: Fahrenheit (678, 223761), as US nurses chart it, before Celsius
///   (676, 223762).
pub fn chart_item(item_id: &str) -> Option<ChartItem> {
    let vital = |loinc, unit, rank| ChartItem::Vital { loinc, unit, rank };
    const SBP: &str = "8480-6";
    const DBP: &str = "8462-4";
    const MMHG: &str = "mm[Hg]";
    Some(match item_id {
        "211" | "220045" => vital("8867-4", "/min", 0),
        "618" | "220210" => vital("9279-1", "/min", 0),
        "615" | "224690" => vital("9279-1", "/min", 1),
        "646" | "220277" => vital("59408-5", "%", 0),
        "442" => vital(SBP, MMHG, 0),
        "455" | "220179" => vital(SBP, MMHG, 1),
        "51" | "220050" => vital(SBP, MMHG, 2),
        "6701" => vital(SBP, MMHG, 3),
        "8440" => vital(DBP, MMHG, 0),
        "8441" | "220180" => vital(DBP, MMHG, 1),
        "8368" | "220051" => vital(DBP, MMHG, 2),
        "8555" => vital(DBP, MMHG, 3),
        "678" | "223761" => vital("8310-5", "[degF]", 0),
        "676" | "223762" => vital("8310-5", "Cel", 1),
        "198" => ChartItem::GcsTotal,
        "220739" => ChartItem::GcsEye,
        "223900" => ChartItem::GcsVerbal,
        "223901" => ChartItem::GcsMotor,
        "467" | "226732" => ChartItem::O2Device,
        "190" | "3420" | "223835" => ChartItem::FiO2,
        "470" | "471" | "223834" => ChartItem::O2Flow,
        _ => return None,
    })
}

/// GCS total (3-15) -> ACVPU, by the GCS that Kelly, Upex and Bateman found for each
/// AVPU level (Ann Emerg Med 2004;44:108-113, "Comparison of consciousness level
/// assessment in the poisoned patient using the alert/verbal/painful/unresponsive scale
/// and the Glasgow Coma Scale": median GCS A 15, V 13, P 8, U 3): each total goes to the
/// level whose median is nearest, and 14, as near to A as to V, is not alert. So 15 ->
/// Alert, 11-14 -> Voice, 6-10 -> Pain, 3-5 -> Unresponsive. New confusion (C) is never
/// inferred: a single GCS cannot say that confusion is new. (For NEWS2 only Alert or not
/// matters: any other level scores 3.) `None` outside 3-15.
pub fn consciousness_from_gcs(total: u32) -> Option<Consciousness> {
    Some(match total {
        15 => Consciousness::Alert,
        11..=14 => Consciousness::Voice,
        6..=10 => Consciousness::Pain,
        3..=5 => Consciousness::Unresponsive,
        _ => return None,
    })
}

/// An oxygen delivery device (CHARTEVENTS VALUE) -> on supplemental oxygen: "None" and
/// room air are not, every other device is (nasal cannula, masks, endotracheal and
/// tracheostomy tubes, "Other").
pub fn device_gives_oxygen(device: &str) -> bool {
    let d = device.trim().to_ascii_lowercase();
    !matches!(d.as_str(), "none" | "room air" | "ra")
}

/// Whole weeks to move a timeline back so that `latest` lands on or before `anchor`.
pub fn shift_weeks(latest: OffsetDateTime, anchor: OffsetDateTime) -> i64 {
    let secs = (latest - anchor).whole_seconds();
    if secs <= 0 {
        0
    } else {
        (secs + WEEK - 1) / WEEK
    }
}

const WEEK: i64 = 7 * 24 * 3600;

/// One table read into memory with its header index.
struct Table {
    columns: Columns,
    rows: Vec<(u64, csv::StringRecord)>,
}

/// MIMIC's value formats, read from a [`Row`].
trait Values {
    /// `YYYY-MM-DD HH:MM:SS` (UTC), unshifted.
    fn time(&self, column: &'static str) -> Result<Option<OffsetDateTime>, MimicError>;
    fn req_time(&self, column: &'static str) -> Result<OffsetDateTime, MimicError>;
}

const NOT_A_TIME: &str = "is not a YYYY-MM-DD HH:MM:SS date-time";

impl Values for Row<'_> {
    fn time(&self, column: &'static str) -> Result<Option<OffsetDateTime>, MimicError> {
        self.parse_opt(column, parse_time, NOT_A_TIME)
    }

    fn req_time(&self, column: &'static str) -> Result<OffsetDateTime, MimicError> {
        self.parse(column, parse_time, NOT_A_TIME)
    }
}

fn parse_time(v: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(v, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

fn location(unit: Option<&str>, ward: Option<&str>) -> pb::Location {
    pb::Location {
        department_code: unit.unwrap_or("WARD").to_owned(),
        ward_code: ward.map(|w| format!("W{w}")).unwrap_or_default(),
        bed_code: String::new(),
    }
}

/// DISCHARGE_LOCATION -> disposition (death is decided before, from the flags).
pub fn disposition(discharge_location: &str) -> DischargeDisposition {
    let l = discharge_location.to_ascii_uppercase();
    if l.starts_with("HOME") {
        DischargeDisposition::Home
    } else if ["SNF", "REHAB", "ICF", "LONG TERM CARE", "HOSPICE", "SHORT TERM"]
        .iter()
        .any(|p| l.starts_with(p))
    {
        DischargeDisposition::CareFacility
    } else if l.starts_with("DISCH-TRAN") {
        DischargeDisposition::Transferred
    } else {
        DischargeDisposition::Other
    }
}

/// A MIMIC-III export directory.
#[derive(Debug, Clone)]
pub struct Export {
    dir: PathBuf,
    options: Options,
}

/// What [`Export::read_all`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Where every data row of each file went: `read` (malformed CSV records included)
    /// = mapped + not mapped (each one of [`Summary::errors`]) + skipped + superseded,
    /// each of the last two by reason. Skipped: admit/discharge TRANSFERS rows,
    /// DIAGNOSES_ICD and PROCEDURES_ICD rows with an empty ICD9_CODE, chart rows with
    /// ERROR=1, an unmapped ITEMID, an empty value, a value out of its scale, or a GCS
    /// component without the other two. Superseded: chart rows of a code already given
    /// at the same time by a preferred ITEMID (see [`chart_item`]).
    pub balance: BTreeMap<MimicFile, Balance>,
    /// Events made per file (PRESCRIPTIONS' include its drug catalogue).
    pub events: BTreeMap<MimicFile, u64>,
    /// Patients whose shifted DOB fell before 1900 (birth date left out).
    pub birth_dates_omitted: u64,
    /// The code dictionaries found (D_ICD_DIAGNOSES.csv, D_ICD_PROCEDURES.csv) with
    /// their codes; none in the demo, whose displays stay empty.
    pub dictionaries: BTreeMap<&'static str, u64>,
    /// Weeks each patient (SUBJECT_ID) was shifted back.
    pub shift_weeks: BTreeMap<String, i64>,
    /// Rows that could not be mapped, in file then line order.
    pub errors: Vec<MimicError>,
}

impl Summary {
    /// The balance of one file (empty when it was not read).
    pub fn of(&self, file: MimicFile) -> Balance {
        self.balance.get(&file).cloned().unwrap_or_default()
    }

    /// Every file's balance added up, reasons prefixed with their file name.
    pub fn total(&self) -> Balance {
        let mut total = Balance::default();
        for (file, b) in &self.balance {
            total.read += b.read;
            total.mapped += b.mapped;
            total.not_mapped += b.not_mapped;
            for (reason, n) in &b.skipped {
                total.skip(format!("{}: {reason}", file.file_name()), *n);
            }
            for (reason, n) in &b.superseded {
                total.supersede(format!("{}: {reason}", file.file_name()), *n);
            }
        }
        total
    }

    fn file(&mut self, file: MimicFile) -> &mut Balance {
        self.balance.entry(file).or_default()
    }

    /// A row of `file` that could not be mapped.
    fn error(&mut self, file: MimicFile, e: MimicError) {
        self.file(file).not_mapped += 1;
        self.errors.push(e);
    }
}

struct Ctx<'o> {
    opts: &'o Options,
    shifts: HashMap<String, i64>,
}

impl Ctx<'_> {
    fn shifted(&self, row: &Row<'_>, t: OffsetDateTime) -> Result<OffsetDateTime, MimicError> {
        let subject = row.req("SUBJECT_ID")?;
        let weeks = self
            .shifts
            .get(subject)
            .ok_or_else(|| row.bad("SUBJECT_ID", subject, "has no dated rows to anchor the date shift"))?;
        Ok(t - Duration::weeks(*weeks))
    }

    fn event(
        &self,
        id: String,
        row: &Row<'_>,
        at: OffsetDateTime,
        payload: Payload,
    ) -> Result<ClinicalEvent, MimicError> {
        Ok(ClinicalEvent {
            event_id: id,
            source_system: self.opts.source_system.clone(),
            occurred_at: Some(timestamp(at)),
            patient: Some(pb::PatientRef {
                mrn: row.req("SUBJECT_ID")?.to_owned(),
                assigning_authority: self.opts.assigning_authority.clone(),
            }),
            payload: Some(payload),
        })
    }
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

    fn load(&self, file: MimicFile, errors: &mut Vec<MimicError>) -> Result<Table, MimicError> {
        let (reader, columns) = table::open(&self.dir, file.file_name(), file.required_columns())?;
        let mut rows = Vec::new();
        for item in table::records(file.file_name(), reader) {
            match item {
                Ok(row) => rows.push(row),
                Err(e @ MimicError::Io { .. }) => return Err(e),
                Err(e) => errors.push(e),
            }
        }
        Ok(Table { columns, rows })
    }

    /// `file`'s ICD9_CODE -> LONG_TITLE, or nothing when the directory does not hold it.
    /// Bad rows go to the summary's errors.
    fn dictionary(&self, file: &'static str, summary: &mut Summary) -> Result<Names, MimicError> {
        let mut names = HashMap::new();
        if !self.dir.join(file).is_file() {
            return Ok(names);
        }
        let (reader, columns) = table::open(&self.dir, file, DICTIONARY_COLUMNS)?;
        for item in table::records(file, reader) {
            let (line, record) = match item {
                Ok(r) => r,
                Err(e @ MimicError::Io { .. }) => return Err(e),
                Err(e) => {
                    summary.errors.push(e);
                    continue;
                }
            };
            let row = Row::new(&columns, &record, line);
            match (row.req("ICD9_CODE"), row.opt("LONG_TITLE")) {
                (Ok(code), Some(name)) => {
                    names.insert(code.to_owned(), name.to_owned());
                }
                // A code without a name names nothing.
                (Ok(_), None) => {}
                (Err(e), _) => summary.errors.push(e),
            }
        }
        summary.dictionaries.insert(file, names.len() as u64);
        Ok(names)
    }

    /// Reads the seven tables (and the code dictionaries, if present), computes each
    /// patient's week shift, then hands every event to `sink` in [`MimicFile::ALL`] order. Row errors are collected in the
    /// summary; a file that cannot be opened or lacks a required column stops the read.
    pub fn read_all(&self, mut sink: impl FnMut(ClinicalEvent)) -> Result<Summary, MimicError> {
        let mut summary = Summary::default();
        let mut csv_errors = Vec::new();
        let mut tables = Vec::new();
        for file in MimicFile::ALL {
            let before = csv_errors.len();
            let t = self.load(file, &mut csv_errors)?;
            let malformed = (csv_errors.len() - before) as u64;
            let b = summary.file(file);
            b.read = t.rows.len() as u64 + malformed;
            b.not_mapped = malformed;
            tables.push(t);
        }
        summary.errors.extend(csv_errors);
        let [patients, admissions, transfers, diagnoses, procedures, prescriptions, vitals] = &tables[..] else {
            unreachable!("seven tables")
        };
        let (patients, admissions, transfers, diagnoses, procedures, prescriptions, vitals) = (
            rows(patients),
            rows(admissions),
            rows(transfers),
            rows(diagnoses),
            rows(procedures),
            rows(prescriptions),
            rows(vitals),
        );
        let diagnosis_names = self.dictionary(D_ICD_DIAGNOSES, &mut summary)?;
        let procedure_names = self.dictionary(D_ICD_PROCEDURES, &mut summary)?;

        // Pass 1: each patient's latest time, first admission, each admission's first transfer row.
        let mut latest: HashMap<String, OffsetDateTime> = HashMap::new();
        let times: [(&[Row<'_>], &[&'static str]); 5] = [
            (&patients, &["DOD"]),
            (&admissions, &["ADMITTIME", "DISCHTIME"]),
            (&transfers, &["INTIME"]),
            (&prescriptions, &["STARTDATE", "ENDDATE"]),
            (&vitals, &["CHARTTIME"]),
        ];
        for (rows, columns) in times {
            for row in rows {
                let Some(subject) = row.opt("SUBJECT_ID") else { continue };
                for &c in columns {
                    if let Ok(Some(t)) = row.time(c) {
                        let e = latest.entry(subject.to_owned()).or_insert(t);
                        *e = (*e).max(t);
                    }
                }
            }
        }
        let shifts: HashMap<String, i64> = latest
            .iter()
            .map(|(s, t)| (s.clone(), shift_weeks(*t, self.options.anchor)))
            .collect();
        summary.shift_weeks = shifts.iter().map(|(s, w)| (s.clone(), *w)).collect();
        let mut first_admit: HashMap<&str, OffsetDateTime> = HashMap::new();
        for row in &admissions {
            if let (Some(s), Ok(Some(t))) = (row.opt("SUBJECT_ID"), row.time("ADMITTIME")) {
                let e = first_admit.entry(s).or_insert(t);
                *e = (*e).min(t);
            }
        }
        // Each admission's patient and raw DISCHTIME, which times the codes of its stay.
        let mut stays: Stays<'_> = HashMap::new();
        for row in &admissions {
            if let (Some(h), Some(s), Ok(Some(t))) = (row.opt("HADM_ID"), row.opt("SUBJECT_ID"), row.time("DISCHTIME"))
            {
                stays.insert(h, (s, t));
            }
        }
        let mut first_transfer: HashMap<&str, Row<'_>> = HashMap::new();
        for row in &transfers {
            if let Some(h) = row.opt("HADM_ID") {
                first_transfer.entry(h).or_insert(*row);
            }
        }
        let ctx = Ctx {
            opts: &self.options,
            shifts,
        };
        // The events of `rows` rows of `file` (or their error: the rows are not mapped).
        let mut emit = |file: MimicFile,
                        rows: u64,
                        summary: &mut Summary,
                        result: Result<Vec<ClinicalEvent>, MimicError>| match result {
            Ok(events) => {
                summary.file(file).mapped += rows;
                *summary.events.entry(file).or_default() += events.len() as u64;
                events.into_iter().for_each(&mut sink);
            }
            Err(e) => {
                summary.file(file).not_mapped += rows;
                summary.errors.push(e);
            }
        };

        for row in &patients {
            let r = patient(&ctx, row, &first_admit, &mut summary.birth_dates_omitted);
            emit(MimicFile::Patients, 1, &mut summary, r.map(|e| vec![e]));
        }
        for row in &admissions {
            let first = row.opt("HADM_ID").and_then(|h| first_transfer.get(h));
            emit(MimicFile::Admissions, 1, &mut summary, admission(&ctx, row, first));
        }
        for row in &transfers {
            if !row.opt("EVENTTYPE").is_some_and(|t| t.eq_ignore_ascii_case("transfer")) {
                summary.file(MimicFile::Transfers).skip(
                    "EVENTTYPE admit or discharge: the Admission and Discharge events themselves",
                    1,
                );
                continue;
            }
            emit(
                MimicFile::Transfers,
                1,
                &mut summary,
                transfer(&ctx, row).map(|e| vec![e]),
            );
        }
        let coded: [(MimicFile, &[Row<'_>], &Names, CodedMap); 2] = [
            (MimicFile::DiagnosesIcd, &diagnoses, &diagnosis_names, diagnosis),
            (MimicFile::ProceduresIcd, &procedures, &procedure_names, procedure),
        ];
        for (file, rows, names, map) in coded {
            for row in rows {
                match map(&ctx, row, &stays, names) {
                    Ok(None) => summary.file(file).skip("ICD9_CODE empty: codes nothing", 1),
                    r => emit(file, 1, &mut summary, r.map(|e| e.into_iter().collect())),
                }
            }
        }
        // The catalogue is made from the rows, not one per row: no row count of its own.
        for drug in drugs(&prescriptions, &self.options) {
            emit(MimicFile::Prescriptions, 0, &mut summary, Ok(vec![drug]));
        }
        for row in &prescriptions {
            emit(
                MimicFile::Prescriptions,
                1,
                &mut summary,
                prescription(&ctx, row).map(|e| vec![e]),
            );
        }
        // Chart sets keyed by raw (SUBJECT_ID, HADM_ID, CHARTTIME), first row of each kept
        // for the envelope.
        let chart = MimicFile::ChartEventsVitals;
        let mut sets: BTreeMap<(&str, &str, &str), ChartSet<'_>> = BTreeMap::new();
        for row in &vitals {
            match chart_row(row) {
                Err(e) => summary.error(chart, e),
                Ok(Err(reason)) => summary.file(chart).skip(reason, 1),
                Ok(Ok((t, item, value))) => {
                    let key = (
                        row.opt("SUBJECT_ID").unwrap_or_default(),
                        row.opt("HADM_ID").unwrap_or_default(),
                        row.opt("CHARTTIME").unwrap_or_default(),
                    );
                    let set = sets.entry(key).or_insert_with(|| ChartSet::new(*row, t));
                    if let Some(reason) = set.add(item, value) {
                        summary.file(chart).supersede(reason, 1);
                    }
                }
            }
        }
        for ((subject, hadm, time), set) in sets {
            let (row, t) = (set.row, set.t);
            let (vital_signs, used, skipped, superseded) = set.finish(hadm);
            summary.file(chart).skip(GCS_INCOMPLETE, skipped);
            summary.file(chart).supersede(GCS_TOTAL_PREFERRED, superseded);
            let Some(vital_signs) = vital_signs else { continue };
            let id = format!("mimic/chartevents/{subject}/{hadm}/{}", time.replace(' ', "T"));
            let r = ctx
                .shifted(&row, t)
                .and_then(|at| ctx.event(id, &row, at, Payload::VitalSigns(vital_signs)));
            emit(chart, used, &mut summary, r.map(|e| vec![e]));
        }
        summary.errors.sort_by_key(|e| {
            let file = MimicFile::ALL.iter().position(|f| f.file_name() == e.file());
            (file, e.line())
        });
        Ok(summary)
    }
}

/// HADM_ID -> (SUBJECT_ID, raw DISCHTIME) of each admission with a readable DISCHTIME.
type Stays<'a> = HashMap<&'a str, (&'a str, OffsetDateTime)>;

/// ICD9_CODE -> LONG_TITLE of a code dictionary.
type Names = HashMap<String, String>;

/// [`diagnosis`] or [`procedure`].
type CodedMap = fn(&Ctx<'_>, &Row<'_>, &Stays<'_>, &Names) -> Result<Option<ClinicalEvent>, MimicError>;

/// What DIAGNOSES_ICD and PROCEDURES_ICD rows share.
struct Coded<'a> {
    row_id: &'a str,
    hadm: &'a str,
    /// SEQ_NUM, 1 first.
    seq: u32,
    /// ICD9_CODE as written (no dot).
    code: &'a str,
    /// The stay's DISCHTIME, shifted.
    at: OffsetDateTime,
}

/// A DIAGNOSES_ICD or PROCEDURES_ICD row; `None` when it has no code.
fn coded<'a>(ctx: &Ctx<'_>, row: &Row<'a>, stays: &Stays<'_>) -> Result<Option<Coded<'a>>, MimicError> {
    let Some(code) = row.opt("ICD9_CODE") else {
        return Ok(None);
    };
    let row_id = row.req("ROW_ID")?;
    let subject = row.req("SUBJECT_ID")?;
    let hadm = row.req("HADM_ID")?;
    let seq = row.parse(
        "SEQ_NUM",
        |v| v.parse::<u32>().ok().filter(|n| *n >= 1),
        "is not a position (1 first)",
    )?;
    let admissions = MimicFile::Admissions.file_name();
    let (owner, discharged) = stays.get(hadm).ok_or_else(|| {
        row.bad(
            "HADM_ID",
            hadm,
            format!("is not an admission of {admissions} with a DISCHTIME"),
        )
    })?;
    if *owner != subject {
        return Err(row.bad(
            "HADM_ID",
            hadm,
            format!("is an admission of SUBJECT_ID {owner} in {admissions}"),
        ));
    }
    Ok(Some(Coded {
        row_id,
        hadm,
        seq,
        code,
        at: ctx.shifted(row, *discharged)?,
    }))
}

/// DIAGNOSES_ICD row -> `Diagnosis` at the stay's DISCHTIME; `None` without a code.
fn diagnosis(
    ctx: &Ctx<'_>,
    row: &Row<'_>,
    stays: &Stays<'_>,
    names: &Names,
) -> Result<Option<ClinicalEvent>, MimicError> {
    let Some(c) = coded(ctx, row, stays)? else {
        return Ok(None);
    };
    let role = if c.seq == 1 {
        DiagnosisRole::Principal
    } else {
        DiagnosisRole::Secondary
    };
    ctx.event(
        format!("mimic/diagnoses_icd/{}", c.row_id),
        row,
        c.at,
        Payload::Diagnosis(pb::Diagnosis {
            encounter_id: c.hadm.to_owned(),
            code: c.code.to_owned(),
            code_system: CodeSystem::Icd9Cm as i32,
            display: names.get(c.code).cloned().unwrap_or_default(),
            role: role as i32,
            rank: c.seq,
            ..Default::default()
        }),
    )
    .map(Some)
}

/// PROCEDURES_ICD row -> `ProcedurePerformed` at the stay's DISCHTIME; `None` without a
/// code.
fn procedure(
    ctx: &Ctx<'_>,
    row: &Row<'_>,
    stays: &Stays<'_>,
    names: &Names,
) -> Result<Option<ClinicalEvent>, MimicError> {
    let Some(c) = coded(ctx, row, stays)? else {
        return Ok(None);
    };
    ctx.event(
        format!("mimic/procedures_icd/{}", c.row_id),
        row,
        c.at,
        Payload::Procedure(pb::ProcedurePerformed {
            encounter_id: c.hadm.to_owned(),
            code: c.code.to_owned(),
            code_system: CodeSystem::Icd9Cm as i32,
            display: names.get(c.code).cloned().unwrap_or_default(),
            rank: c.seq,
            ..Default::default()
        }),
    )
    .map(Some)
}

fn rows(t: &Table) -> Vec<Row<'_>> {
    t.rows
        .iter()
        .map(|(line, record)| Row::new(&t.columns, record, *line))
        .collect()
}

fn patient(
    ctx: &Ctx<'_>,
    row: &Row<'_>,
    first_admit: &HashMap<&str, OffsetDateTime>,
    omitted: &mut u64,
) -> Result<ClinicalEvent, MimicError> {
    let row_id = row.req("ROW_ID")?;
    let subject = row.req("SUBJECT_ID")?;
    let admit = *first_admit
        .get(subject)
        .ok_or_else(|| row.bad("SUBJECT_ID", subject, "has no admission to time the registration"))?;
    let at = ctx.shifted(row, admit)? - Duration::minutes(1);
    let dob = ctx.shifted(row, row.req_time("DOB")?)?.date();
    let birth_date = if dob < date!(1900 - 01 - 01) {
        *omitted += 1;
        None
    } else {
        Some(pb::Date {
            year: dob.year(),
            month: i32::from(u8::from(dob.month())),
            day: i32::from(dob.day()),
        })
    };
    let deceased_at = match row.time("DOD")? {
        Some(t) => Some(timestamp(ctx.shifted(row, t)?)),
        None => None,
    };
    let sex = match row.opt("GENDER").map(str::to_ascii_uppercase).as_deref() {
        Some("F") => AdministrativeSex::Female,
        Some("M") => AdministrativeSex::Male,
        None => AdministrativeSex::Unspecified,
        Some(_) => AdministrativeSex::Unknown,
    };
    ctx.event(
        format!("mimic/patients/{row_id}"),
        row,
        at,
        Payload::PatientRegistered(pb::PatientDemographics {
            birth_date,
            sex: sex as i32,
            deceased_at,
            ..Default::default()
        }),
    )
}

fn admission(ctx: &Ctx<'_>, row: &Row<'_>, first_transfer: Option<&Row<'_>>) -> Result<Vec<ClinicalEvent>, MimicError> {
    let row_id = row.req("ROW_ID")?;
    let hadm = row.req("HADM_ID")?;
    let admit = ctx.shifted(row, row.req_time("ADMITTIME")?)?;
    let disch = ctx.shifted(row, row.req_time("DISCHTIME")?)?;
    let kind = row.req("ADMISSION_TYPE")?;
    let admission_type = match kind.to_ascii_uppercase().as_str() {
        "EMERGENCY" => AdmissionType::Emergency,
        "ELECTIVE" => AdmissionType::Elective,
        "URGENT" => AdmissionType::Urgent,
        "NEWBORN" => AdmissionType::Newborn,
        _ => return Err(row.bad("ADMISSION_TYPE", kind, "is not EMERGENCY, ELECTIVE, URGENT or NEWBORN")),
    };
    let location = first_transfer.map_or_else(
        || location(None, None),
        |t| location(t.opt("CURR_CAREUNIT"), t.opt("CURR_WARDID")),
    );
    let died = row.opt("HOSPITAL_EXPIRE_FLAG") == Some("1") || row.time("DEATHTIME")?.is_some();
    let disposition = if died {
        DischargeDisposition::Deceased
    } else {
        disposition(row.opt("DISCHARGE_LOCATION").unwrap_or_default())
    };
    Ok(vec![
        ctx.event(
            format!("mimic/admissions/{row_id}/admission"),
            row,
            admit,
            Payload::Admission(pb::Admission {
                encounter_id: hadm.to_owned(),
                encounter_class: EncounterClass::Inpatient as i32,
                admission_type: admission_type as i32,
                location: Some(location),
                ..Default::default()
            }),
        )?,
        ctx.event(
            format!("mimic/admissions/{row_id}/discharge"),
            row,
            disch,
            Payload::Discharge(pb::Discharge {
                encounter_id: hadm.to_owned(),
                disposition: disposition as i32,
            }),
        )?,
    ])
}

fn transfer(ctx: &Ctx<'_>, row: &Row<'_>) -> Result<ClinicalEvent, MimicError> {
    let row_id = row.req("ROW_ID")?;
    let at = ctx.shifted(row, row.req_time("INTIME")?)?;
    ctx.event(
        format!("mimic/transfers/{row_id}"),
        row,
        at,
        Payload::Transfer(pb::Transfer {
            encounter_id: row.req("HADM_ID")?.to_owned(),
            from: Some(location(row.opt("PREV_CAREUNIT"), row.opt("PREV_WARDID"))),
            to: Some(location(row.opt("CURR_CAREUNIT"), row.opt("CURR_WARDID"))),
        }),
    )
}

fn prescription(ctx: &Ctx<'_>, row: &Row<'_>) -> Result<ClinicalEvent, MimicError> {
    let row_id = row.req("ROW_ID")?;
    let start = ctx.shifted(row, row.req_time("STARTDATE")?)?;
    let ends_at = match row.time("ENDDATE")? {
        Some(t) => Some(timestamp(ctx.shifted(row, t)?)),
        None => None,
    };
    let (_, drug_code) = drug_code(row).ok_or_else(|| TableError::MissingValue {
        file: row.file(),
        line: row.line(),
        column: "DRUG",
    })?;
    let dose_value = row
        .opt("DOSE_VAL_RX")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0);
    ctx.event(
        format!("mimic/prescriptions/{row_id}"),
        row,
        start,
        Payload::MedicationOrder(pb::MedicationOrder {
            order_id: row_id.to_owned(),
            encounter_id: row.opt("HADM_ID").unwrap_or_default().to_owned(),
            drug_code,
            drug_name: row.opt("DRUG").unwrap_or_default().to_owned(),
            dose_value,
            dose_unit: row.opt("DOSE_UNIT_RX").unwrap_or_default().to_owned(),
            route: row.opt("ROUTE").unwrap_or_default().to_owned(),
            frequency: String::new(),
            starts_at: Some(timestamp(start)),
            ends_at,
        }),
    )
}

/// Code system of PRESCRIPTIONS.NDC.
pub const NDC: &str = "NDC";
/// Code system of PRESCRIPTIONS.FORMULARY_DRUG_CD, the hospital's own drug codes.
pub const FORMULARY: &str = "MIMIC formulary";

/// Code system of the drugs that have neither an NDC nor a FORMULARY_DRUG_CD: a local
/// code made from the DRUG name by [`drug_name_code`].
pub const DRUG_NAME: &str = "MIMIC drug name";

/// A local drug code from a DRUG name: lower-case ASCII letters and digits, every run of
/// other characters one `-`, none at either end ("Tarceva" -> `tarceva`, "Sodium
/// Chloride 0.9%  Flush" -> `sodium-chloride-0-9-flush`). Empty when the name has no
/// letter or digit.
pub fn drug_name_code(name: &str) -> String {
    let mut code = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            code.push(c.to_ascii_lowercase());
        } else if !code.is_empty() && !code.ends_with('-') {
            code.push('-');
        }
    }
    if code.ends_with('-') {
        code.pop();
    }
    code
}

/// A prescription's (code system, drug code): the NDC, or FORMULARY_DRUG_CD when the
/// NDC is 0 or empty, or the code of the DRUG name when both are missing; `None` (a bad
/// row) when the name codes nothing either. Never an empty code.
fn drug_code(row: &Row<'_>) -> Option<(&'static str, String)> {
    match row.opt("NDC").filter(|n| !n.trim_start_matches('0').is_empty()) {
        Some(ndc) => Some((NDC, ndc.to_owned())),
        None => match row.opt("FORMULARY_DRUG_CD") {
            Some(cd) => Some((FORMULARY, cd.to_owned())),
            None => Some((DRUG_NAME, drug_name_code(row.opt("DRUG")?))).filter(|(_, c)| !c.is_empty()),
        },
    }
}

/// (DRUG, PROD_STRENGTH, FORM_UNIT_DISP) of one drug code, each with its row count.
type Spellings<'a> = Vec<((&'a str, &'a str, &'a str), u32)>;

/// One `ReferenceData::Drug` per drug code the prescriptions use, in order of first
/// use. A code's rows can spell it differently ("Metoprolol", "Metoprolol Tartrate"):
/// the most frequent (DRUG, PROD_STRENGTH, FORM_UNIT_DISP) wins, ties to the first
/// written. Rows without a DRUG name nothing.
fn drugs(prescriptions: &[Row<'_>], opts: &Options) -> Vec<ClinicalEvent> {
    // Per (code system, code) in order of first use: its spellings in order of first
    // use, with their counts.
    let mut codes: Vec<((&str, String), Spellings<'_>)> = Vec::new();
    let mut index: HashMap<(&str, String), usize> = HashMap::new();
    for row in prescriptions {
        let (Some(code), Some(name)) = (drug_code(row), row.opt("DRUG")) else {
            continue;
        };
        let spelling = (
            name,
            row.opt("PROD_STRENGTH").unwrap_or_default(),
            row.opt("FORM_UNIT_DISP").unwrap_or_default(),
        );
        let i = *index.entry(code.clone()).or_insert_with(|| {
            codes.push((code, Vec::new()));
            codes.len() - 1
        });
        let spellings = &mut codes[i].1;
        match spellings.iter_mut().find(|(s, _)| *s == spelling) {
            Some((_, n)) => *n += 1,
            None => spellings.push((spelling, 1)),
        }
    }
    codes
        .into_iter()
        .filter_map(|((system, code), spellings)| {
            // max_by_key keeps the last of equals: reversed, the first written wins.
            let ((name, strength, form), _) = spellings.into_iter().rev().max_by_key(|(_, n)| *n)?;
            Some(ClinicalEvent {
                event_id: format!("mimic/drugs/{system}/{code}"),
                source_system: opts.source_system.clone(),
                occurred_at: Some(opts.reference_data_at),
                patient: None,
                payload: Some(Payload::ReferenceData(pb::ReferenceData {
                    item: Some(Item::Drug(pb::Drug {
                        code,
                        code_system: system.to_owned(),
                        name: name.to_owned(),
                        drug_class: String::new(),
                        form: form.to_owned(),
                        strength: strength.to_owned(),
                    })),
                })),
            })
        })
        .collect()
}

/// What one chart row gives its set.
#[derive(Debug, Clone, Copy)]
enum ChartValue {
    /// An observation and its ITEMID's rank.
    Vital(&'static str, &'static str, f64, u8),
    GcsTotal(u32),
    /// A GCS component: 0 eye, 1 verbal, 2 motor.
    Gcs(usize, u32),
    /// Whether the row says the patient is on supplemental oxygen.
    Oxygen(bool),
}

/// Skip reason of GCS components charted without the other two at the same time.
const GCS_INCOMPLETE: &str = "GCS component without the other two at the same time (no total to score)";
/// Supersede reason of GCS components charted with a GCS total at the same time.
const GCS_TOTAL_PREFERRED: &str = "GCS component superseded by the GCS total charted at the same time";

/// A chart row -> (raw time, ITEMID, value); `Ok(Err(reason))` when skipped.
fn chart_row<'a>(row: &Row<'a>) -> Result<Result<(OffsetDateTime, &'a str, ChartValue), String>, MimicError> {
    if row.opt("ERROR") == Some("1") {
        return Ok(Err("ERROR=1: marked as charted in error".to_owned()));
    }
    let item_id = row.req("ITEMID")?;
    let Some(item) = chart_item(item_id) else {
        return Ok(Err(format!("ITEMID {item_id} is not an item this mapping reads")));
    };
    row.req("SUBJECT_ID")?;
    let t = row.req_time("CHARTTIME")?;
    let value = if item == ChartItem::O2Device {
        match row.opt("VALUE") {
            Some(device) => ChartValue::Oxygen(device_gives_oxygen(device)),
            None => return Ok(Err("oxygen delivery device: VALUE empty".to_owned())),
        }
    } else {
        let Some(v) = row.opt("VALUENUM") else {
            return Ok(Err("VALUENUM empty".to_owned()));
        };
        let n = v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| row.bad("VALUENUM", v, "is not a finite number"))?;
        let scale = |max: u32, what: &str| -> Result<u32, String> {
            let whole = n.round();
            if whole == n && (1.0..=f64::from(max)).contains(&n) {
                Ok(whole as u32)
            } else {
                Err(format!("{what} outside 1-{max}"))
            }
        };
        let scored = match item {
            ChartItem::Vital { loinc, unit, rank } => Ok(ChartValue::Vital(loinc, unit, n, rank)),
            ChartItem::GcsTotal => match scale(15, "GCS total") {
                Ok(total) if total >= 3 => Ok(ChartValue::GcsTotal(total)),
                _ => Err("GCS total outside 3-15".to_owned()),
            },
            ChartItem::GcsEye => scale(4, "GCS eye opening").map(|s| ChartValue::Gcs(0, s)),
            ChartItem::GcsVerbal => scale(5, "GCS verbal response").map(|s| ChartValue::Gcs(1, s)),
            ChartItem::GcsMotor => scale(6, "GCS motor response").map(|s| ChartValue::Gcs(2, s)),
            ChartItem::FiO2 => {
                // A fraction (0.21-1) or a percentage; to a percentage at 0.1.
                let pct = (if n <= 1.0 { n * 100.0 } else { n } * 10.0).round() / 10.0;
                if (21.0..=100.0).contains(&pct) {
                    Ok(ChartValue::Oxygen(pct > 21.0))
                } else {
                    Err("FiO2 outside 21-100%: not a reading".to_owned())
                }
            }
            ChartItem::O2Flow if n < 0.0 => Err("O2 flow below 0".to_owned()),
            ChartItem::O2Flow => Ok(ChartValue::Oxygen(n > 0.0)),
            ChartItem::O2Device => unreachable!("read from VALUE above"),
        };
        match scored {
            Ok(v) => v,
            Err(reason) => return Ok(Err(reason)),
        }
    };
    Ok(Ok((t, item_id, value)))
}

/// A vital-sign set being built from the chart rows of one (SUBJECT_ID, HADM_ID,
/// CHARTTIME).
struct ChartSet<'a> {
    /// The first row, for the envelope.
    row: Row<'a>,
    /// Raw CHARTTIME.
    t: OffsetDateTime,
    /// Per LOINC: the kept (observation, rank, ITEMID).
    vitals: Vec<(pb::Observation, u8, &'a str)>,
    gcs_total: Option<u32>,
    /// Eye, verbal, motor.
    gcs: [Option<u32>; 3],
    /// Rows saying on oxygen, and off.
    oxygen: (u64, u64),
}

impl<'a> ChartSet<'a> {
    fn new(row: Row<'a>, t: OffsetDateTime) -> Self {
        Self {
            row,
            t,
            vitals: Vec::new(),
            gcs_total: None,
            gcs: [None; 3],
            oxygen: (0, 0),
        }
    }

    /// Adds a row's value; `Some(reason)` when the row (or the one it replaces) is
    /// superseded.
    fn add(&mut self, item_id: &'a str, value: ChartValue) -> Option<String> {
        const TWICE: &str = "the same item charted twice at the same time: the first row kept";
        match value {
            ChartValue::Vital(loinc, unit, value, rank) => {
                let obs = pb::Observation {
                    loinc_code: loinc.to_owned(),
                    value,
                    unit: unit.to_owned(),
                };
                let Some(kept) = self.vitals.iter_mut().find(|(o, ..)| o.loinc_code == loinc) else {
                    self.vitals.push((obs, rank, item_id));
                    return None;
                };
                if kept.2 == item_id {
                    return Some(TWICE.to_owned());
                }
                let (loser, winner) = if rank < kept.1 {
                    let loser = kept.2;
                    *kept = (obs, rank, item_id);
                    (loser, item_id)
                } else {
                    (item_id, kept.2)
                };
                Some(format!(
                    "{} ITEMID {loser} superseded by ITEMID {winner} charted at the same time",
                    vital_name(loinc)
                ))
            }
            ChartValue::GcsTotal(total) => {
                if self.gcs_total.is_some() {
                    return Some(TWICE.to_owned());
                }
                self.gcs_total = Some(total);
                None
            }
            ChartValue::Gcs(i, score) => {
                if self.gcs[i].is_some() {
                    return Some(TWICE.to_owned());
                }
                self.gcs[i] = Some(score);
                None
            }
            ChartValue::Oxygen(on) => {
                if on {
                    self.oxygen.0 += 1;
                } else {
                    self.oxygen.1 += 1;
                }
                None
            }
        }
    }

    /// The set's `VitalSigns` (`None` when nothing in it maps) with the rows it used,
    /// and its GCS components skipped (incomplete) and superseded (by a total).
    ///
    /// Consciousness: the GCS total, else the sum of the three components, by
    /// [`consciousness_from_gcs`]; a component without the other two scores nothing.
    /// Supplemental oxygen: any row saying on oxygen (a device other than none, FiO2
    /// above 21%, a flow above 0) makes it true; else any row saying off (device none,
    /// FiO2 21%, flow 0) false; else unset.
    fn finish(self, hadm: &str) -> (Option<pb::VitalSigns>, u64, u64, u64) {
        let components = self.gcs.iter().flatten().count() as u64;
        let (total, gcs_rows, skipped, superseded) = match (self.gcs_total, self.gcs) {
            (Some(t), _) => (Some(t), 1, 0, components),
            (None, [Some(e), Some(v), Some(m)]) => (Some(e + v + m), 3, 0, 0),
            (None, _) => (None, 0, components, 0),
        };
        let consciousness = total.and_then(consciousness_from_gcs);
        let supplemental_oxygen = match self.oxygen {
            (0, 0) => None,
            (on, _) => Some(on > 0),
        };
        let used = self.vitals.len() as u64 + gcs_rows + self.oxygen.0 + self.oxygen.1;
        if used == 0 {
            return (None, 0, skipped, superseded);
        }
        let vital_signs = pb::VitalSigns {
            encounter_id: hadm.to_owned(),
            observations: self.vitals.into_iter().map(|(o, ..)| o).collect(),
            consciousness: consciousness.map_or(0, |c| c as i32),
            supplemental_oxygen,
            ..Default::default()
        };
        (Some(vital_signs), used, skipped, superseded)
    }
}

/// The name of a vital-sign LOINC, for reasons.
fn vital_name(loinc: &str) -> &'static str {
    match loinc {
        "8867-4" => "heart rate",
        "9279-1" => "respiratory rate",
        "59408-5" => "SpO2",
        "8480-6" => "systolic BP",
        "8462-4" => "diastolic BP",
        "8310-5" => "temperature",
        _ => "vital sign",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_is_whole_weeks_and_lands_before_anchor() {
        let anchor = datetime!(2025-01-01 0:00 UTC);
        assert_eq!(shift_weeks(datetime!(2024-12-31 0:00 UTC), anchor), 0);
        assert_eq!(shift_weeks(datetime!(2025-01-01 0:00 UTC), anchor), 0);
        assert_eq!(shift_weeks(datetime!(2025-01-01 0:00:01 UTC), anchor), 1);
        assert_eq!(shift_weeks(datetime!(2025-01-08 0:00 UTC), anchor), 1);
        let latest = datetime!(2164-11-01 17:15 UTC);
        let w = shift_weeks(latest, anchor);
        let shifted = latest - Duration::weeks(w);
        assert!(shifted <= anchor && shifted > anchor - Duration::weeks(1));
        assert_eq!(shifted.weekday(), latest.weekday());
    }

    #[test]
    fn dispositions_and_items() {
        assert_eq!(disposition("HOME HEALTH CARE"), DischargeDisposition::Home);
        assert_eq!(disposition("SNF"), DischargeDisposition::CareFacility);
        assert_eq!(
            disposition("REHAB/DISTINCT PART HOSP"),
            DischargeDisposition::CareFacility
        );
        assert_eq!(
            disposition("DISCH-TRAN TO PSYCH HOSP"),
            DischargeDisposition::Transferred
        );
        assert_eq!(disposition("OTHER FACILITY"), DischargeDisposition::Other);
        let vital = |loinc, unit, rank| Some(ChartItem::Vital { loinc, unit, rank });
        assert_eq!(chart_item("220045"), vital("8867-4", "/min", 0));
        assert_eq!(chart_item("678"), vital("8310-5", "[degF]", 0));
        // The cuff before the arterial line, for both components.
        assert_eq!(chart_item("455"), vital("8480-6", "mm[Hg]", 1));
        assert_eq!(chart_item("51"), vital("8480-6", "mm[Hg]", 2));
        assert_eq!(chart_item("8441"), vital("8462-4", "mm[Hg]", 1));
        assert_eq!(chart_item("8368"), vital("8462-4", "mm[Hg]", 2));
        assert_eq!(chart_item("223900"), Some(ChartItem::GcsVerbal));
        assert_eq!(chart_item("223835"), Some(ChartItem::FiO2));
        assert_eq!(chart_item("1"), None);
    }

    #[test]
    fn gcs_to_acvpu_and_oxygen_devices() {
        let levels: Vec<Option<Consciousness>> = (2..=16).map(consciousness_from_gcs).collect();
        use Consciousness::*;
        assert_eq!(
            levels,
            [
                None,
                Some(Unresponsive),
                Some(Unresponsive),
                Some(Unresponsive),
                Some(Pain),
                Some(Pain),
                Some(Pain),
                Some(Pain),
                Some(Pain),
                Some(Voice),
                Some(Voice),
                Some(Voice),
                Some(Voice),
                Some(Alert),
                None
            ]
        );
        assert!(!device_gives_oxygen("None"));
        assert!(!device_gives_oxygen(" room air "));
        assert!(device_gives_oxygen("Nasal cannula"));
        assert!(device_gives_oxygen("Endotracheal tube"));
        assert_eq!(drug_name_code("Tarceva"), "tarceva");
        assert_eq!(
            drug_name_code(" Sodium Chloride 0.9%  Flush "),
            "sodium-chloride-0-9-flush"
        );
        assert_eq!(drug_name_code("%%"), "");
    }
}
