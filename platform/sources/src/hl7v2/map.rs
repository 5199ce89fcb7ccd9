//! HL7 v2 -> canonical `ClinicalEvent`s: ADT (A01-A04, A08, A28, A31) with the diagnoses
//! (DG1) and procedures (PR1) they carry, ORU^R01, and the pharmacy messages RDE (encoded
//! order), RDS (dispense) and RAS (administration).
//!
//! Owns which HL7 field feeds which event field. Pure: no I/O, no clock, no validation
//! beyond what mapping needs (ranges, units, code shapes and required event fields are
//! the ingest door's job, so HL7 events pass the same checks as every other source).
//!
//! Rules:
//! - `event_id` = `<sending facility>|<MSH-10>`, with `-<n>` (1-based) appended when one
//!   message makes several events, so a resend of the same message yields the same ids
//!   and is absorbed by the warehouse's dedup. Diagnoses and procedures come last and
//!   number on from the message's other events; a lone first event keeps its bare id
//!   (an A01 with two DG1 makes `F|C`, `F|C-2`, `F|C-3`), so ids staged before DG1/PR1
//!   were mapped stay the same and a re-load is absorbed, not counted twice.
//! - `source_system` = MSH-3 (sending application), else the sending facility.
//! - Patient: the PID-3 repetition whose identifier type (CX-5) is `MR`, else the first;
//!   assigning authority is CX-4 (its namespace id).
//! - `occurred_at`: EVN-2 (else EVN-6) for ADT; OBX-14 (else OBR-7) for results; ORC-9
//!   (date/time of transaction) of the order's ORC for orders; RXD-3 (date/time
//!   dispensed), else ORC-9, for dispenses; else MSH-7. Administrations need RXA-3 (start
//!   of administration): the time a dose was given is the fact itself, never guessed.
//! - Results (ORU^R01): each OBX with a numeric value (NM, SN) or a text value (ST, TX,
//!   FT; coded CE, CWE, CNE) is one result: vital-sign LOINC codes with a number join the
//!   OBR group's `VitalSigns`, everything else is a `LabResult` with `value` (a number)
//!   or `value_text` plus, for a coded value, `value_code` and `value_code_system`.
//!   Text results are clinical data (an organism, "Positive"): never dropped. Other value
//!   types (RP, ED, ...) and empty values make no event.
//! - Missing data that an event cannot do without is a [`MapError`] naming the HL7 field;
//!   [`MapError::error_code`] is its HL7 table 0357 code for the ACK's ERR segment.
//! - One ACK answers one message, and AA means all of it is staged (DOMAIN.md): a message
//!   is mapped whole or not at all. A segment that cannot be mapped (a DG1 without its
//!   code, a PR1 without its time) fails the message (AE naming the field), as an event
//!   rejected at the door does; dropping it and answering AA would lose it silently.
//!
//! Pharmacy (RDE^O11/O25 and RDS^O13, RAS^O17, and their 2.3 form with trigger O01):
//! - Each ORC opens an order group; RDE makes one `MedicationOrder` per group (its RXE),
//!   RDS one `MedicationDispense` per RXD, RAS one `MedicationAdministration` per RXA. A
//!   group without its RXE/RXD/RXA is an error naming the segment.
//! - Order id: ORC-2 (placer order number, EI.1), else ORC-3 (filler), else the
//!   prescription number (RXE-15, RXD-7), so dispenses and administrations point at the
//!   order the prescriber's system knows. Encounter: PV1-19 (optional, as for results).
//! - Drug: RXE-2 / RXD-2 / RXA-5 (CWE). Code = CWE.1 and name = CWE.2 (else the original
//!   text CWE.9), as sent in whatever coding system CWE.3 names (NDC in the samples,
//!   RxNorm, or a local formulary; the system itself is not kept), except that an RxNorm
//!   alternate (CWE.4-6 with system `RXNORM`) wins over a non-RxNorm primary, as the FHIR
//!   mapping prefers RxNorm.
//! - Dose: RXE-3 (give amount, minimum) in RXE-5; RXD-4 (actual dispense amount) in
//!   RXD-5; RXA-6 (administered amount) in RXA-7. A strict HL7 NM number. A unit is the
//!   CWE.1 code when CWE.3 is a units system (UCUM, ISO+, ANS+), else its text CWE.2
//!   (`385055001^Tablet^SCT` is "Tablet"), else CWE.1. RXE-5 and RXD-5 are required with
//!   an amount; RXA-7 may be left out when the product implies it (HL7: conditional), and
//!   then the unit is UCUM's unity `1` (one tablet, one puff), as in the FHIR mapping.
//! - Route: RXR-1 (code, else text) of the RXR after the RXD/RXA, else the one after the
//!   RXE (the encoded order), else the one after RXO (the order as written).
//! - Order timing: the TQ1 after the RXE, else RXE-1 (TQ, before 2.5), else the TQ1 after
//!   the ORC. Frequency = the repeat pattern code (TQ1-3 RPT.1, RXE-1 TQ.2), `starts_at` /
//!   `ends_at` = TQ1-7 / TQ1-8 (RXE-1 TQ.4 / TQ.5).
//! - An RXA with completion status (RXA-20) RE (refused) or NA (not administered), or
//!   action code (RXA-21) D (deleted), records no dose given and makes no event; a RAS
//!   with nothing else is an error naming RXA-20.
//!
//! Diagnoses and procedures (every DG1 and PR1 of an ADT message taken, one event each,
//! in segment order):
//! - Code: CWE.1 in the system CWE.3 names; when CWE.3 is local or unknown and the
//!   alternate (CWE.4 in CWE.6) is in a system the platform knows, the alternate. Without
//!   CWE.3, the deprecated coding method (DG1-2 / PR1-2), else local. Codes pass as sent;
//!   the door checks their shape and writes them canonically (`71596` -> `715.96`).
//!   Name: CWE.2 (CWE.5 for the alternate), else DG1-4 / PR1-4, else CWE.9.
//! - Systems (HL7 table 0396, any case): I10 / ICD10 -> ICD-10 (WHO and national
//!   modifications: the table's and the FHIR converter's reading; ICD-10-CM is I10C),
//!   I10C / ICD10CM -> ICD-10-CM, I9 / I9C -> ICD-9-CM (the platform has no WHO ICD-9),
//!   I9CDX (diagnoses) and I9CP (procedures) -> ICD-9-CM, SCT / SCT2 / SNM / SNM3 ->
//!   SNOMED CT (a pre-CT SNOMED code then fails the door's shape check), C4 / CPT -> CPT,
//!   HCPCS -> HCPCS, I10P -> ICD-10-PCS; L, LOCAL and 99zzz -> local. A diagnosis takes
//!   the ICD-10, ICD-10-CM, ICD-9-CM, SNOMED CT and local systems, a procedure the
//!   ICD-10-PCS, CPT, HCPCS, ICD-9-CM, SNOMED CT and local ones. Any other system is an
//!   error naming DG1-3 / PR1-3: filing a code of a terminology the platform does not
//!   know as local would hide it from every join by code.
//! - Diagnosis: encounter = PV1-19, required as for admissions (only a problem-list entry
//!   stands outside an encounter, and a DG1 is not one). Role from DG1-6 (table 0052): A
//!   admitting, W working, F final -> principal when DG1-15 (priority, table 0359) is 1,
//!   else secondary; anything else -> encounter (role not said). rank = DG1-15 (0 or
//!   empty: not ranked). occurred_at = DG1-5 (diagnosis date/time), else DG1-19, else the
//!   message's event time. recorded_at = DG1-19 (attestation) unless it lies before
//!   DG1-5: an attestation cannot precede the diagnosis it signs, so such a value is not
//!   this record's and is left out. DG1 says nothing of the clinical status.
//! - Procedure: occurred_at = PR1-5 (required: when it was done is the fact itself);
//!   ended_at = PR1-5 + PR1-7 (procedure minutes) when sent; rank = PR1-14 (priority,
//!   table 0418); performer = PR1-11 (surgeon) XCN.1, else PR1-12 (procedure
//!   practitioner); encounter = PV1-19 when sent (a procedure may stand outside one).
//! - A DG1-21 / PR1-20 action code D (delete) makes no event, as for RXA-21: the events
//!   have no tombstone yet, so a delete of a diagnosis staged earlier is not applied.

use hospital_proto::events::{
    self as pb, clinical_event::Payload, AbnormalFlag, AdministrativeSex, AdmissionType, ClinicalEvent, CodeSystem,
    DiagnosisRole, DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;

use super::ack::ErrorCode;
use super::dtm::Dtm;
use super::message::{Message, Segment};

/// LOINC codes that make up a set of vital signs (heart rate, respiratory rate, SpO2,
/// systolic BP, body temperature, weight, height). Results with these codes become one
/// `VitalSigns` set per OBR group rather than lab results.
pub const VITAL_SIGN_CODES: [&str; 7] = ["8867-4", "9279-1", "59408-5", "8480-6", "8310-5", "29463-7", "8302-2"];

/// Options of the mapping.
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    /// Overrides MSH-3 as the events' `source_system` (e.g. one name per configured feed).
    pub source_system: Option<String>,
}

/// Why a message could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A message type or trigger event the platform does not take (answer AR).
    #[error(
        "unsupported message type {message_type}: supported are ADT^A01/A02/A03/A04/A08/A28/A31, ORU^R01, \
         RDE^O01/O11/O25, RDS^O01/O13 and RAS^O01/O17"
    )]
    Unsupported { message_type: String },
    /// A field the event needs is absent or empty (answer AE).
    #[error("{field} ({what}) is empty")]
    Missing { field: String, what: &'static str },
    /// A field holds a value that cannot be mapped (answer AE).
    #[error("{field} ({what}) {reason}")]
    Invalid {
        field: String,
        what: &'static str,
        reason: String,
    },
}

/// Message types the mapping takes (with some of their triggers): an unsupported
/// trigger of one of these is HL7 error 201, any other type 200.
const SUPPORTED_TYPES: [&str; 5] = ["ADT", "ORU", "RDE", "RDS", "RAS"];
/// Fields whose values come from a table (0004 patient class, 0396 coding system and
/// the deprecated coding method, 0322 completion status): a value the mapping cannot
/// take there is HL7 error 103.
const TABLE_FIELDS: [&str; 6] = ["PV1-2", "DG1-2", "DG1-3", "PR1-2", "PR1-3", "RXA-20"];

impl MapError {
    /// The HL7 field the error is about (`PV1-19`), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Unsupported { .. } => None,
            Self::Missing { field, .. } | Self::Invalid { field, .. } => Some(field),
        }
    }

    /// The HL7 table 0357 code for this error: 200 / 201 an unsupported message type /
    /// trigger event; 100 a required segment missing (segment sequence error); 101 a
    /// required field missing; 103 a value not in the table the field draws from (a
    /// patient class, a coding system, a completion status that records no dose); 102
    /// any other value that cannot be read (a date/time, a number, a priority). Never
    /// 207: a message that cannot be mapped is the sender's to fix, not an internal error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Unsupported { message_type } => {
                let ty = message_type.split('^').next().unwrap_or_default();
                if message_type.contains('^') && SUPPORTED_TYPES.contains(&ty) {
                    ErrorCode::UnsupportedEventCode
                } else {
                    ErrorCode::UnsupportedMessageType
                }
            }
            Self::Missing { field, .. } if !field.contains('-') => ErrorCode::SegmentSequence,
            Self::Missing { .. } => ErrorCode::RequiredFieldMissing,
            Self::Invalid { field, .. } if TABLE_FIELDS.contains(&field.as_str()) => ErrorCode::TableValueNotFound,
            Self::Invalid { .. } => ErrorCode::DataType,
        }
    }

    fn missing(field: impl Into<String>, what: &'static str) -> Self {
        Self::Missing {
            field: field.into(),
            what,
        }
    }

    fn invalid(field: impl Into<String>, what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            what,
            reason: reason.into(),
        }
    }
}

/// Maps one message to canonical events (at least one on success).
pub fn to_events(msg: &Message, opts: &MapOptions) -> Result<Vec<ClinicalEvent>, MapError> {
    let trigger = msg.trigger_event().unwrap_or_default();
    // The message's own events, then its diagnoses and procedures (numbered after them).
    let (payloads, coded) = match (msg.message_type(), trigger) {
        ("ADT", "A01" | "A02" | "A03" | "A04" | "A08" | "A28" | "A31") => {
            let at = adt_time(msg)?;
            (adt(msg, trigger, at)?, diagnoses_and_procedures(msg, at)?)
        }
        ("ORU", "R01") => (oru(msg)?, Vec::new()),
        ("RDE", "O01" | "O11" | "O25") => (pharmacy(msg, Pharmacy::Order)?, Vec::new()),
        ("RDS", "O01" | "O13") => (pharmacy(msg, Pharmacy::Dispense)?, Vec::new()),
        ("RAS", "O01" | "O17") => (pharmacy(msg, Pharmacy::Administration)?, Vec::new()),
        (ty, tr) => {
            return Err(MapError::Unsupported {
                message_type: if tr.is_empty() {
                    ty.to_owned()
                } else {
                    format!("{ty}^{tr}")
                },
            })
        }
    };
    let facility = sending_facility(msg);
    let source_system = match &opts.source_system {
        Some(s) => s.clone(),
        None => first_non_empty(msg, &["MSH-3-1", "MSH-3-2"]).unwrap_or_else(|| facility.clone()),
    };
    if source_system.is_empty() {
        return Err(MapError::missing("MSH-3", "sending application"));
    }
    let patient = patient(msg)?;
    let base = format!("{facility}|{}", msg.control_id());
    let lone = payloads.len() == 1;
    Ok(payloads
        .into_iter()
        .chain(coded)
        .enumerate()
        .map(|(i, (payload, occurred_at))| ClinicalEvent {
            event_id: if i == 0 && lone {
                base.clone()
            } else {
                format!("{base}-{}", i + 1)
            },
            source_system: source_system.clone(),
            occurred_at: Some(occurred_at),
            patient: Some(patient.clone()),
            payload: Some(payload),
        })
        .collect())
}

/// MSH-4 namespace id (else universal id), else MSH-3: what identifies the sender for
/// de-duplication together with MSH-10.
fn sending_facility(msg: &Message) -> String {
    first_non_empty(msg, &["MSH-4-1", "MSH-4-2", "MSH-3-1", "MSH-3-2"]).unwrap_or_default()
}

/// A non-empty value at `path`; HL7's explicit null `""` counts as empty.
fn value(msg: &Message, path: &str) -> Option<String> {
    msg.get(path).and_then(|v| clean(&v))
}

fn seg_value(seg: &Segment<'_>, path: &str) -> Option<String> {
    seg.get(path).and_then(|v| clean(&v))
}

fn clean(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v != "\"\"").then(|| v.to_owned())
}

fn first_non_empty(msg: &Message, paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| value(msg, p))
}

fn timestamp(d: Dtm) -> Timestamp {
    Timestamp {
        seconds: d.utc.unix_timestamp(),
        nanos: d.utc.nanosecond() as i32,
    }
}

/// The first date-time among `paths` that is present (HL7's explicit null `""` is not);
/// a malformed one is an error.
fn first_time(msg: &Message, paths: &[(&str, &'static str)]) -> Result<Option<Timestamp>, MapError> {
    for (path, what) in paths {
        if msg.raw(path).is_some_and(|r| r.trim() == "\"\"") {
            continue;
        }
        match msg.get_dtm(path) {
            Ok(Some(d)) => return Ok(Some(timestamp(d))),
            Ok(None) => {}
            Err(e) => {
                return Err(MapError::invalid(
                    field_name(path),
                    what,
                    format!("is not a date/time: {e}"),
                ))
            }
        }
    }
    Ok(None)
}

/// The date-time in field `field` of `seg` (e.g. OBR-7), named `name` in errors; HL7's
/// explicit empty `""` counts as absent. Reads the segment at hand (linear in the
/// number of segments, unlike a `OBR(n)-7` path that searches from the top).
fn segment_time(
    msg: &Message,
    seg: &Segment<'_>,
    field: &str,
    name: &str,
    what: &'static str,
) -> Result<Option<Timestamp>, MapError> {
    if seg.raw(field).is_some_and(|r| r.trim() == "\"\"") {
        return Ok(None);
    }
    msg.segment_dtm(seg, field)
        .map(|d| d.map(timestamp))
        .map_err(|e| MapError::invalid(name, what, format!("is not a date/time: {e}")))
}

/// `OBX(3)-14` -> `OBX-14` for messages to a sender.
fn field_name(path: &str) -> String {
    match (path.find('('), path.find(')')) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &path[..a], &path[b + 1..]),
        _ => path.to_owned(),
    }
}

fn message_time(msg: &Message) -> Result<Timestamp, MapError> {
    msg.timestamp()
        .map(timestamp)
        .ok_or_else(|| MapError::missing("MSH-7", "date/time of message"))
}

fn patient(msg: &Message) -> Result<pb::PatientRef, MapError> {
    let pid = msg
        .segment("PID")
        .ok_or_else(|| MapError::missing("PID", "patient identification segment"))?;
    // Each repetition is split once (a path per repetition would re-split the field from
    // its start every time: quadratic in the number of repetitions).
    let d = msg.delimiters();
    let component = |rep: &str, n: usize| -> Option<String> {
        let raw = rep.split(char::from(d.component)).nth(n - 1)?;
        let raw = raw.split(char::from(d.subcomponent)).next()?;
        clean(&d.unescape(raw))
    };
    let reps: Vec<&str> = pid.repetitions(3).collect();
    let chosen = reps
        .iter()
        .position(|r| component(r, 5).is_some_and(|t| t.eq_ignore_ascii_case("MR")))
        .or_else(|| reps.iter().position(|r| component(r, 1).is_some()))
        .ok_or_else(|| MapError::missing("PID-3", "patient identifier list"))?;
    let mrn = component(reps[chosen], 1)
        .ok_or_else(|| MapError::missing(format!("PID-3({})-1", chosen + 1), "patient id of the MR identifier"))?;
    Ok(pb::PatientRef {
        mrn,
        assigning_authority: component(reps[chosen], 4).unwrap_or_default(),
    })
}

/// The ADT event's time: EVN-2, else EVN-6, else MSH-7.
fn adt_time(msg: &Message) -> Result<Timestamp, MapError> {
    match first_time(msg, &[("EVN-2", "recorded date/time"), ("EVN-6", "event occurred")])? {
        Some(t) => Ok(t),
        None => message_time(msg),
    }
}

fn adt(msg: &Message, trigger: &str, at: Timestamp) -> Result<Vec<(Payload, Timestamp)>, MapError> {
    let payloads = match trigger {
        "A01" => vec![Payload::Admission(admission(msg)?)],
        "A04" => vec![
            Payload::PatientRegistered(demographics(msg)?),
            Payload::Admission(admission(msg)?),
        ],
        "A02" => vec![Payload::Transfer(pb::Transfer {
            encounter_id: visit_number(msg)?,
            from: location(msg, "PV1-6", None),
            to: Some(
                location(msg, "PV1-3", value(msg, "PV1-10"))
                    .ok_or_else(|| MapError::missing("PV1-3", "assigned patient location"))?,
            ),
        })],
        "A03" => vec![Payload::Discharge(pb::Discharge {
            encounter_id: visit_number(msg)?,
            disposition: disposition(value(msg, "PV1-36").as_deref()) as i32,
        })],
        "A28" => vec![Payload::PatientRegistered(demographics(msg)?)],
        // A08 (update patient information), A31 (update person information).
        _ => vec![Payload::PatientUpdated(demographics(msg)?)],
    };
    Ok(payloads.into_iter().map(|p| (p, at)).collect())
}

fn visit_number(msg: &Message) -> Result<String, MapError> {
    if msg.segment("PV1").is_none() {
        return Err(MapError::missing("PV1", "patient visit segment"));
    }
    value(msg, "PV1-19-1").ok_or_else(|| MapError::missing("PV1-19", "visit number"))
}

fn admission(msg: &Message) -> Result<pb::Admission, MapError> {
    let encounter_id = visit_number(msg)?;
    let class = value(msg, "PV1-2").ok_or_else(|| MapError::missing("PV1-2", "patient class"))?;
    // HL7 table 0004. P (preadmit), N (not applicable), U (unknown) and C (commercial
    // account) say nothing about the kind of encounter, so they are refused, not guessed.
    let encounter_class = match class.as_str() {
        "I" | "B" => EncounterClass::Inpatient,
        "E" => EncounterClass::Emergency,
        "O" | "R" => EncounterClass::Outpatient,
        other => {
            return Err(MapError::invalid(
                "PV1-2",
                "patient class",
                format!("{other:?} is not an encounter class (I, B, E, O, R)"),
            ))
        }
    };
    // HL7 table 0007.
    let admission_type = match value(msg, "PV1-4").as_deref() {
        Some("E" | "A") => AdmissionType::Emergency,
        Some("C" | "R") => AdmissionType::Elective,
        Some("U" | "L") => AdmissionType::Urgent,
        Some("N") => AdmissionType::Newborn,
        _ => AdmissionType::Unspecified,
    };
    let department = value(msg, "PV1-10").or_else(|| value(msg, "PV1-3-4"));
    Ok(pb::Admission {
        encounter_id,
        encounter_class: encounter_class as i32,
        admission_type: admission_type as i32,
        location: Some(
            location(msg, "PV1-3", department)
                .ok_or_else(|| MapError::missing("PV1-3", "assigned patient location"))?,
        ),
        attending_practitioner: value(msg, "PV1-7-1").unwrap_or_default(),
        ..Default::default()
    })
}

/// PL: point of care ^ room ^ bed ^ facility. Ward = point of care; bed = `room-bed`
/// (a bed label is only unique within its room), or whichever of the two was sent.
fn location(msg: &Message, field: &str, department: Option<String>) -> Option<pb::Location> {
    let ward = value(msg, &format!("{field}-1"));
    let room = value(msg, &format!("{field}-2"));
    let bed = value(msg, &format!("{field}-3"));
    let bed_code = match (room, bed) {
        (Some(r), Some(b)) => format!("{r}-{b}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => String::new(),
    };
    if ward.is_none() && bed_code.is_empty() && department.is_none() {
        return None;
    }
    Some(pb::Location {
        department_code: department.unwrap_or_default(),
        ward_code: ward.unwrap_or_default(),
        bed_code,
    })
}

/// HL7 table 0112 (discharge disposition, UB-04 codes).
fn disposition(code: Option<&str>) -> DischargeDisposition {
    match code {
        None => DischargeDisposition::Unspecified,
        Some("01" | "06") => DischargeDisposition::Home,
        Some("02" | "05" | "43" | "65" | "66") => DischargeDisposition::Transferred,
        Some("03" | "04" | "61" | "62" | "63" | "64") => DischargeDisposition::CareFacility,
        Some("07") => DischargeDisposition::LeftAgainstAdvice,
        Some("20" | "40" | "41" | "42") => DischargeDisposition::Deceased,
        Some(_) => DischargeDisposition::Other,
    }
}

fn demographics(msg: &Message) -> Result<pb::PatientDemographics, MapError> {
    let sex = match value(msg, "PID-8").as_deref() {
        Some("F") => AdministrativeSex::Female,
        Some("M") => AdministrativeSex::Male,
        Some("O" | "A") => AdministrativeSex::Other,
        Some("U" | "N") => AdministrativeSex::Unknown,
        _ => AdministrativeSex::Unspecified,
    };
    // PID-30 (death indicator) "N" wins over a stray PID-29.
    let deceased_at = if value(msg, "PID-30").as_deref() == Some("N") {
        None
    } else {
        first_time(msg, &[("PID-29", "patient death date and time")])?
    };
    Ok(pb::PatientDemographics {
        family_name: value(msg, "PID-5-1").unwrap_or_default(),
        given_name: value(msg, "PID-5-2").unwrap_or_default(),
        birth_date: birth_date(msg)?,
        sex: sex as i32,
        postal_code: value(msg, "PID-11-5").unwrap_or_default(),
        deceased_at,
    })
}

/// PID-7 as a calendar date: the digits as sent, not shifted to UTC (a birth date
/// written with an offset is still that day). Needs at least YYYYMMDD.
fn birth_date(msg: &Message) -> Result<Option<pb::Date>, MapError> {
    let Some(raw) = value(msg, "PID-7-1") else {
        return Ok(None);
    };
    msg.get_dtm("PID-7")
        .map_err(|e| MapError::invalid("PID-7", "date/time of birth", format!("is not a date: {e}")))?;
    let digits: String = raw.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 8 {
        return Ok(None);
    }
    let num = |r: std::ops::Range<usize>| digits[r].parse::<i32>().unwrap_or_default();
    Ok(Some(pb::Date {
        year: num(0..4),
        month: num(4..6),
        day: num(6..8),
    }))
}

/// The DG1 and PR1 segments of an ADT message as events, in segment order; `event_time`
/// is the ADT event's time (a diagnosis's last resort).
fn diagnoses_and_procedures(msg: &Message, event_time: Timestamp) -> Result<Vec<(Payload, Timestamp)>, MapError> {
    let deleted = |seg: &Segment<'_>, action_field: &str| {
        seg_value(seg, action_field).is_some_and(|a| a.eq_ignore_ascii_case("D"))
    };
    let mut out = Vec::new();
    for seg in msg.all_segments() {
        match seg.id() {
            "DG1" if !deleted(&seg, "21") => out.push(diagnosis(msg, &seg, event_time)?),
            "PR1" if !deleted(&seg, "20") => out.push(procedure(msg, &seg)?),
            _ => {}
        }
    }
    Ok(out)
}

fn diagnosis(msg: &Message, dg1: &Segment<'_>, event_time: Timestamp) -> Result<(Payload, Timestamp), MapError> {
    let code = coded(dg1, CodeUse::Diagnosis)?;
    let rank = priority(dg1, "15", "diagnosis priority")?;
    // HL7 table 0052.
    let role = match seg_value(dg1, "6-1").map(|t| t.to_ascii_uppercase()).as_deref() {
        Some("A") => DiagnosisRole::Admitting,
        Some("W") => DiagnosisRole::Working,
        Some("F") if rank == 1 => DiagnosisRole::Principal,
        Some("F") => DiagnosisRole::Secondary,
        _ => DiagnosisRole::Encounter,
    };
    let diagnosed_at = seg_time(msg, dg1, "5", "diagnosis date/time")?;
    let attested_at = seg_time(msg, dg1, "19", "attestation date/time")?;
    let recorded_at = attested_at.filter(|a| diagnosed_at.is_none_or(|d| !earlier(a, &d)));
    let diagnosis = pb::Diagnosis {
        encounter_id: visit_number(msg)?,
        code: code.code,
        code_system: code.system as i32,
        display: code.display,
        role: role as i32,
        rank,
        recorded_at,
        ..Default::default()
    };
    let at = diagnosed_at.or(attested_at).unwrap_or(event_time);
    Ok((Payload::Diagnosis(diagnosis), at))
}

fn procedure(msg: &Message, pr1: &Segment<'_>) -> Result<(Payload, Timestamp), MapError> {
    let code = coded(pr1, CodeUse::Procedure)?;
    let at = seg_time(msg, pr1, "5", "procedure date/time")?
        .ok_or_else(|| MapError::missing("PR1-5", "procedure date/time"))?;
    let ended_at = match seg_value(pr1, "7") {
        None => None,
        Some(raw) => {
            let minutes = hl7_number(&raw).filter(|m| *m >= 0.0).ok_or_else(|| {
                MapError::invalid(
                    "PR1-7",
                    "procedure minutes",
                    format!("{raw:?} is not a number of minutes"),
                )
            })?;
            Some(plus_minutes(at, minutes))
        }
    };
    let procedure = pb::ProcedurePerformed {
        encounter_id: value(msg, "PV1-19-1").unwrap_or_default(),
        code: code.code,
        code_system: code.system as i32,
        display: code.display,
        ended_at,
        rank: priority(pr1, "14", "procedure priority")?,
        performer: seg_value(pr1, "11-1")
            .or_else(|| seg_value(pr1, "12-1"))
            .unwrap_or_default(),
    };
    Ok((Payload::Procedure(procedure), at))
}

fn earlier(a: &Timestamp, b: &Timestamp) -> bool {
    (a.seconds, a.nanos) < (b.seconds, b.nanos)
}

/// `t` plus a non-negative number of minutes, to the nanosecond; a duration past what
/// an i64 of nanoseconds holds (292 years) saturates, and the door refuses the end.
fn plus_minutes(t: Timestamp, minutes: f64) -> Timestamp {
    const NANOS: i64 = 1_000_000_000;
    let total = (minutes * 60.0 * NANOS as f64).round() as i64;
    let nanos = i64::from(t.nanos) + total % NANOS;
    Timestamp {
        seconds: t.seconds.saturating_add(total / NANOS).saturating_add(nanos / NANOS),
        nanos: (nanos % NANOS) as i32,
    }
}

/// A priority (HL7 tables 0359 and 0418): 0 not ranked, 1 first, 2 and on; empty is 0.
fn priority(seg: &Segment<'_>, field: &str, what: &'static str) -> Result<u32, MapError> {
    let Some(raw) = seg_value(seg, field) else { return Ok(0) };
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| {
            MapError::invalid(
                format!("{}-{field}", seg.id()),
                what,
                format!("{raw:?} is not a priority (0 not ranked, 1 first, 2 and on)"),
            )
        })
}

/// What a code names, which decides the systems it may be drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeUse {
    Diagnosis,
    Procedure,
}

impl CodeUse {
    /// (segment, what its code is called, the table 0396 names taken), for errors.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Diagnosis => (
                "DG1",
                "diagnosis code",
                "I10, I10C, ICD10, ICD10CM, I9, I9C, I9CDX, SCT, SNM",
            ),
            Self::Procedure => ("PR1", "procedure code", "C4, CPT, HCPCS, I10P, I9, I9C, I9CP, SCT, SNM"),
        }
    }
}

/// A coding system's name (HL7 table 0396, any case) as the `CodeSystem` it names for
/// `code_use`; None when unknown, or not a system of that use (C4 for a diagnosis).
fn code_system(name: &str, code_use: CodeUse) -> Option<CodeSystem> {
    use CodeUse::{Diagnosis as Dx, Procedure as Px};
    let name = name.trim().to_ascii_uppercase();
    // HL7: L, or 99zzz (z alphanumeric) for a locally defined coding system.
    let local = name == "L"
        || name == "LOCAL"
        || (name.starts_with("99") && (3..=5).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric()));
    if local {
        return Some(CodeSystem::Local);
    }
    match (name.as_str(), code_use) {
        ("I10" | "ICD10", Dx) => Some(CodeSystem::Icd10),
        ("I10C" | "ICD10CM", Dx) => Some(CodeSystem::Icd10Cm),
        ("I9" | "I9C", _) | ("I9CDX", Dx) | ("I9CP", Px) => Some(CodeSystem::Icd9Cm),
        ("SCT" | "SCT2" | "SNM" | "SNM3", _) => Some(CodeSystem::SnomedCt),
        ("I10P", Px) => Some(CodeSystem::Icd10Pcs),
        ("C4" | "CPT", Px) => Some(CodeSystem::Cpt),
        ("HCPCS", Px) => Some(CodeSystem::Hcpcs),
        _ => None,
    }
}

/// A diagnosis or procedure code as sent, with its system and name.
struct Coded {
    code: String,
    system: CodeSystem,
    display: String,
}

/// Field 3 (CWE) of a DG1 or PR1 by the module's rules: the primary coding (its system
/// in CWE.3, else field 2, the deprecated coding method, else local) or the alternate
/// (CWE.4-6), a known system before a local one.
fn coded(seg: &Segment<'_>, code_use: CodeUse) -> Result<Coded, MapError> {
    let (id, what, taken) = code_use.describe();
    let part = |n: usize| seg_value(seg, &format!("3-{n}"));
    // (code, system name and the field it came from, text) of each coding.
    let primary_system = match part(3) {
        Some(name) => Some((name, "3")),
        None => seg_value(seg, "2").map(|name| (name, "2")),
    };
    let codings = [
        (part(1), primary_system, part(2)),
        (part(4), part(6).map(|name| (name, "3")), part(5).or_else(|| part(2))),
    ];
    let resolved = |local: bool| {
        codings.iter().find_map(|(code, system, text)| {
            let system = match system {
                Some((name, _)) => code_system(name, code_use)?,
                None => CodeSystem::Local,
            };
            ((system == CodeSystem::Local) == local).then_some((code.clone()?, system, text.clone()))
        })
    };
    let Some((code, system, text)) = resolved(false).or_else(|| resolved(true)) else {
        // A code in a system the platform does not take, or no code at all.
        let unknown = codings
            .iter()
            .find_map(|(code, system, _)| code.as_ref().and(system.as_ref()));
        return Err(match unknown {
            Some((name, field)) => {
                let other = match code_use {
                    CodeUse::Diagnosis => CodeUse::Procedure,
                    CodeUse::Procedure => CodeUse::Diagnosis,
                };
                let reason = if code_system(name, other).is_some() {
                    format!(
                        "is coded in {name:?}, a system of {}s, not of {what}s",
                        other.describe().1
                    )
                } else {
                    format!(
                        "is coded in {name:?}, which is not a coding system the platform takes \
                         ({taken}; L or 99zzz for local codes)"
                    )
                };
                MapError::invalid(format!("{id}-{field}"), what, reason)
            }
            None => MapError::missing(format!("{id}-3"), what),
        });
    };
    Ok(Coded {
        code,
        system,
        display: text
            .or_else(|| seg_value(seg, "4"))
            .or_else(|| part(9))
            .unwrap_or_default(),
    })
}

/// One numeric observation read from an OBX.
struct Numeric {
    code: String,
    is_loinc: bool,
    display: String,
    value: f64,
    unit: String,
    at: Option<Timestamp>,
    segment: usize,
}

fn oru(msg: &Message) -> Result<Vec<(Payload, Timestamp)>, MapError> {
    let encounter_id = value(msg, "PV1-19-1").unwrap_or_default();
    let mut out = Vec::new();
    // (order id, OBR-7 time) of the current OBR group; OBX before any OBR have none.
    let mut order: (String, Option<Timestamp>) = (String::new(), None);
    let mut vitals: Vec<Numeric> = Vec::new();
    let mut vitals_group_at: Option<Timestamp> = None;
    let msh_time = msg.timestamp().map(timestamp);

    let flush_vitals = |vitals: &mut Vec<Numeric>,
                        group_at: Option<Timestamp>,
                        out: &mut Vec<(Payload, Timestamp)>|
     -> Result<(), MapError> {
        if vitals.is_empty() {
            return Ok(());
        }
        let at = vitals
            .iter()
            .find_map(|v| v.at)
            .or(group_at)
            .or(msh_time)
            .ok_or_else(|| {
                MapError::missing(
                    format!("OBX-14 of segment {}", vitals[0].segment),
                    "date/time of the observation",
                )
            })?;
        let observations = vitals
            .drain(..)
            .map(|v| pb::Observation {
                loinc_code: v.code,
                value: v.value,
                unit: v.unit,
            })
            .collect();
        out.push((
            Payload::VitalSigns(pb::VitalSigns {
                encounter_id: encounter_id.clone(),
                observations,
                ..Default::default()
            }),
            at,
        ));
        Ok(())
    };

    for seg in msg.all_segments() {
        match seg.id() {
            "OBR" => {
                flush_vitals(&mut vitals, vitals_group_at, &mut out)?;
                let at = segment_time(msg, &seg, "7", "OBR-7", "observation date/time")?;
                let id = seg_value(&seg, "3-1")
                    .or_else(|| seg_value(&seg, "2-1"))
                    .unwrap_or_default();
                order = (id, at);
                vitals_group_at = at;
            }
            "OBX" => {
                let (n, text) = match numeric(msg, &seg)? {
                    Some(n) => (n, None),
                    None => match text_value(msg, &seg)? {
                        Some(pair) => pair,
                        None => continue,
                    },
                };
                if text.is_none() && n.is_loinc && VITAL_SIGN_CODES.contains(&n.code.as_str()) {
                    vitals.push(n);
                    continue;
                }
                let at =
                    n.at.or(order.1)
                        .or(msh_time)
                        .ok_or_else(|| MapError::missing("OBX-14", "date/time of the observation"))?;
                let (reference_low, reference_high) = reference_range(seg_value(&seg, "7").as_deref());
                let text = text.unwrap_or_default();
                out.push((
                    Payload::LabResult(pb::LabResult {
                        encounter_id: encounter_id.clone(),
                        order_id: order.0.clone(),
                        loinc_code: if n.is_loinc { n.code } else { String::new() },
                        display: n.display,
                        value: (!n.value.is_nan()).then_some(n.value),
                        value_text: text.text,
                        unit: n.unit,
                        reference_low,
                        reference_high,
                        abnormal_flag: abnormal_flag(seg_value(&seg, "8").as_deref()) as i32,
                        specimen_collected_at: order.1,
                        value_code: text.code,
                        value_code_system: text.system,
                    }),
                    at,
                ));
            }
            _ => {}
        }
    }
    flush_vitals(&mut vitals, vitals_group_at, &mut out)?;
    if out.is_empty() {
        return Err(MapError::missing(
            "OBX-5",
            "observation value: no OBX carries a numeric (NM, SN) or text (ST, TX, FT, CE, CWE, CNE) result",
        ));
    }
    Ok(out)
}

/// A text result: the text, and for a coded value its code and coding system.
#[derive(Default)]
struct TextValue {
    text: String,
    code: String,
    system: String,
}

/// The OBX's text result, if it has one, with its observation (value NaN: no number).
/// ST, TX and FT: the text, repetitions (TX/FT lines) joined by a newline. CE, CWE and
/// CNE: the original text (CWE.9), else the text (CWE.2), else the code; code = CWE.1
/// (else the alternate CWE.4) and system = CWE.3 (else CWE.6), as sent, when there is
/// one repetition; several coded repetitions keep their texts joined by "; " and no code.
fn text_value(msg: &Message, seg: &Segment<'_>) -> Result<Option<(Numeric, Option<TextValue>)>, MapError> {
    let value_type = seg_value(seg, "2").unwrap_or_default().to_ascii_uppercase();
    let coded = matches!(value_type.as_str(), "CE" | "CWE" | "CNE");
    if !coded && !matches!(value_type.as_str(), "ST" | "TX" | "FT") {
        return Ok(None);
    }
    let reps = seg.repetitions(5).count();
    let mut texts = Vec::new();
    let mut first: Option<(String, String)> = None;
    for r in 1..=reps {
        let part = |n: usize| seg_value(seg, &format!("5({r})-{n}"));
        let text = if coded {
            let code = part(1).or_else(|| part(4));
            let system = if part(1).is_some() { part(3) } else { part(6) };
            if r == 1 {
                first = code.clone().map(|c| (c, system.unwrap_or_default()));
            }
            part(9).or_else(|| part(2)).or_else(|| part(5)).or(code)
        } else {
            seg_value(seg, &format!("5({r})"))
        };
        texts.extend(text);
    }
    if texts.is_empty() {
        return Ok(None);
    }
    let code = seg_value(seg, "3-1").ok_or_else(|| MapError::missing("OBX-3", "observation identifier"))?;
    let at = segment_time(msg, seg, "14", "OBX-14", "date/time of the observation")?;
    let (code_value, system) = match first {
        Some((c, s)) if reps == 1 => (c, s),
        _ => Default::default(),
    };
    let n = Numeric {
        is_loinc: seg_value(seg, "3-3").is_some_and(|s| s.eq_ignore_ascii_case("LN")),
        code,
        display: seg_value(seg, "3-2").unwrap_or_default(),
        value: f64::NAN,
        unit: seg_value(seg, "6-1").unwrap_or_default(),
        at,
        segment: seg.index(),
    };
    let text = TextValue {
        text: texts.join(if coded { "; " } else { "\n" }),
        code: code_value,
        system,
    };
    Ok(Some((n, Some(text))))
}

/// The OBX's numeric result, if it has one: value type NM or SN, one repetition, a
/// finite number (SN: no comparator other than `=`, no second number).
fn numeric(msg: &Message, seg: &Segment<'_>) -> Result<Option<Numeric>, MapError> {
    let value_type = seg_value(seg, "2").unwrap_or_default();
    let Some(raw) = seg.raw("5") else { return Ok(None) };
    if raw.contains(char::from(msg.delimiters().repetition)) {
        return Ok(None);
    }
    let number = match value_type.as_str() {
        "NM" => seg_value(seg, "5"),
        "SN" => {
            let comparator = seg_value(seg, "5-1").unwrap_or_default();
            let second = seg_value(seg, "5-3").or_else(|| seg_value(seg, "5-4"));
            if !(comparator.is_empty() || comparator == "=") || second.is_some() {
                return Ok(None);
            }
            seg_value(seg, "5-2")
        }
        _ => None,
    };
    let Some(value) = number.and_then(|s| s.parse::<f64>().ok()).filter(|v| v.is_finite()) else {
        return Ok(None);
    };
    let code = seg_value(seg, "3-1").ok_or_else(|| MapError::missing("OBX-3", "observation identifier"))?;
    let at = segment_time(msg, seg, "14", "OBX-14", "date/time of the observation")?;
    Ok(Some(Numeric {
        is_loinc: seg_value(seg, "3-3").is_some_and(|s| s.eq_ignore_ascii_case("LN")),
        code,
        display: seg_value(seg, "3-2").unwrap_or_default(),
        value,
        unit: seg_value(seg, "6-1").unwrap_or_default(),
        at,
        segment: seg.index(),
    }))
}

/// OBX-7 `lo-hi` (either side may be a negative number); anything else is no range.
fn reference_range(range: Option<&str>) -> (Option<f64>, Option<f64>) {
    let Some(r) = range else { return (None, None) };
    // Split on the first '-' that is not a sign (i.e. has a digit or '.' before it).
    let bytes = r.as_bytes();
    let split = (1..bytes.len()).find(|&i| bytes[i] == b'-' && (bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.'));
    match split {
        Some(i) => match (r[..i].trim().parse::<f64>(), r[i + 1..].trim().parse::<f64>()) {
            (Ok(lo), Ok(hi)) if lo.is_finite() && hi.is_finite() => (Some(lo), Some(hi)),
            _ => (None, None),
        },
        None => (None, None),
    }
}

/// HL7 table 0078 (interpretation codes).
fn abnormal_flag(flag: Option<&str>) -> AbnormalFlag {
    match flag {
        Some("N") => AbnormalFlag::Normal,
        Some("L") => AbnormalFlag::Low,
        Some("H") => AbnormalFlag::High,
        Some("LL") => AbnormalFlag::CriticalLow,
        Some("HH") => AbnormalFlag::CriticalHigh,
        Some("A" | "AA") => AbnormalFlag::Abnormal,
        _ => AbnormalFlag::Unspecified,
    }
}

/// Which pharmacy message is being mapped, by what each order group must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pharmacy {
    /// RDE: one `MedicationOrder` per RXE.
    Order,
    /// RDS: one `MedicationDispense` per RXD.
    Dispense,
    /// RAS: one `MedicationAdministration` per RXA.
    Administration,
}

impl Pharmacy {
    /// The segment each order group must carry, and what it is called.
    fn segment(self) -> (&'static str, &'static str) {
        match self {
            Self::Order => ("RXE", "pharmacy/treatment encoded order segment"),
            Self::Dispense => ("RXD", "pharmacy/treatment dispense segment"),
            Self::Administration => ("RXA", "pharmacy/treatment administration segment"),
        }
    }

    /// The segment that makes one event each (RXD, RXA); an order makes one per group.
    fn item(self) -> Option<&'static str> {
        match self {
            Self::Order => None,
            Self::Dispense => Some("RXD"),
            Self::Administration => Some("RXA"),
        }
    }
}

/// The segments of one ORC group (RDE_O11 ORDER, RDS_O13 ORDER, RAS_O17 ORDER) that the
/// mapping reads. A TQ1 or RXR belongs to the segment it follows: ORC (order timing), RXO
/// (route as ordered), RXE (encoded timing and route) or an RXD/RXA (its own route).
struct OrderGroup<'m> {
    orc: Segment<'m>,
    timing: Option<Segment<'m>>,
    ordered_route: Option<Segment<'m>>,
    rxe: Option<Segment<'m>>,
    encoded_timing: Option<Segment<'m>>,
    encoded_route: Option<Segment<'m>>,
    /// RXD or RXA segments, each with the first RXR after it.
    items: Vec<(Segment<'m>, Option<Segment<'m>>)>,
}

fn order_groups<'m>(msg: &'m Message, kind: Pharmacy) -> Result<Vec<OrderGroup<'m>>, MapError> {
    enum After {
        Orc,
        Rxo,
        Rxe,
        Item,
    }
    let mut groups: Vec<OrderGroup<'m>> = Vec::new();
    let mut after = After::Orc;
    for seg in msg.all_segments() {
        let id = seg.id();
        if id == "ORC" {
            groups.push(OrderGroup {
                orc: seg,
                timing: None,
                ordered_route: None,
                rxe: None,
                encoded_timing: None,
                encoded_route: None,
                items: Vec::new(),
            });
            after = After::Orc;
            continue;
        }
        let Some(g) = groups.last_mut() else {
            if matches!(id, "RXO" | "RXE" | "RXD" | "RXA") {
                return Err(MapError::missing("ORC", "common order segment"));
            }
            continue;
        };
        match id {
            "RXO" => after = After::Rxo,
            "RXE" => {
                g.rxe.get_or_insert(seg);
                after = After::Rxe;
            }
            _ if Some(id) == kind.item() => {
                g.items.push((seg, None));
                after = After::Item;
            }
            "TQ1" => match after {
                After::Orc => {
                    g.timing.get_or_insert(seg);
                }
                After::Rxe => {
                    g.encoded_timing.get_or_insert(seg);
                }
                _ => {}
            },
            "RXR" => match after {
                After::Orc => {}
                After::Rxo => {
                    g.ordered_route.get_or_insert(seg);
                }
                After::Rxe => {
                    g.encoded_route.get_or_insert(seg);
                }
                After::Item => {
                    if let Some((_, route)) = g.items.last_mut() {
                        route.get_or_insert(seg);
                    }
                }
            },
            _ => {}
        }
    }
    if groups.is_empty() {
        return Err(MapError::missing("ORC", "common order segment"));
    }
    let (seg_id, what) = kind.segment();
    let complete = |g: &OrderGroup<'_>| match kind {
        Pharmacy::Order => g.rxe.is_some(),
        Pharmacy::Dispense | Pharmacy::Administration => !g.items.is_empty(),
    };
    if !groups.iter().all(complete) {
        return Err(MapError::missing(seg_id, what));
    }
    Ok(groups)
}

fn pharmacy(msg: &Message, kind: Pharmacy) -> Result<Vec<(Payload, Timestamp)>, MapError> {
    let encounter_id = value(msg, "PV1-19-1").unwrap_or_default();
    // ORC-9, else MSH-7; read only where it is used (a RAS does not need it).
    let transaction_time = |g: &OrderGroup<'_>| -> Result<Timestamp, MapError> {
        match seg_time(msg, &g.orc, "9", "date/time of transaction")? {
            Some(t) => Ok(t),
            None => message_time(msg),
        }
    };
    let mut out = Vec::new();
    for g in order_groups(msg, kind)? {
        match kind {
            Pharmacy::Order => {
                let Some(rxe) = g.rxe else { continue };
                let order = medication_order(msg, &g, &rxe, encounter_id.clone())?;
                out.push((Payload::MedicationOrder(order), transaction_time(&g)?));
            }
            Pharmacy::Dispense => {
                for (rxd, route) in &g.items {
                    let (dose_value, dose_unit) = dose(
                        rxd,
                        ("4", "actual dispense amount"),
                        ("5", "actual dispense units"),
                        None,
                    )?;
                    let event = pb::MedicationEvent {
                        order_id: order_id(&g, Some((rxd, "7"))).unwrap_or_default(),
                        encounter_id: encounter_id.clone(),
                        drug_code: coded_drug(rxd, "2")
                            .code
                            .ok_or_else(|| MapError::missing("RXD-2", "dispense/give code"))?,
                        dose_value,
                        dose_unit,
                        route: route_of(&g, route.as_ref()),
                    };
                    let at = match seg_time(msg, rxd, "3", "date/time dispensed")? {
                        Some(t) => t,
                        None => transaction_time(&g)?,
                    };
                    out.push((Payload::MedicationDispense(event), at));
                }
            }
            Pharmacy::Administration => {
                for (rxa, route) in &g.items {
                    let not_given = matches!(seg_value(rxa, "20").as_deref(), Some("RE" | "NA"))
                        || seg_value(rxa, "21").as_deref() == Some("D");
                    if not_given {
                        continue;
                    }
                    let at = seg_time(msg, rxa, "3", "date/time start of administration")?
                        .ok_or_else(|| MapError::missing("RXA-3", "date/time start of administration"))?;
                    let (dose_value, dose_unit) = dose(
                        rxa,
                        ("6", "administered amount"),
                        ("7", "administered units"),
                        Some("1"),
                    )?;
                    let event = pb::MedicationEvent {
                        order_id: order_id(&g, None).unwrap_or_default(),
                        encounter_id: encounter_id.clone(),
                        drug_code: coded_drug(rxa, "5")
                            .code
                            .ok_or_else(|| MapError::missing("RXA-5", "administered code"))?,
                        dose_value,
                        dose_unit,
                        route: route_of(&g, route.as_ref()),
                    };
                    out.push((Payload::MedicationAdministration(event), at));
                }
            }
        }
    }
    if out.is_empty() {
        // Only RAS can get here: every RXA was refused, not given or deleted.
        return Err(MapError::invalid(
            "RXA-20",
            "completion status",
            "records no dose given: every RXA is RE (refused), NA (not administered) or deleted (RXA-21 D)",
        ));
    }
    Ok(out)
}

fn medication_order(
    msg: &Message,
    g: &OrderGroup<'_>,
    rxe: &Segment<'_>,
    encounter_id: String,
) -> Result<pb::MedicationOrder, MapError> {
    let drug = coded_drug(rxe, "2");
    if drug.code.is_none() && drug.name.is_none() {
        return Err(MapError::missing("RXE-2", "give code"));
    }
    let order_id = order_id(g, Some((rxe, "15"))).ok_or_else(|| {
        MapError::missing(
            "ORC-2",
            "placer order number; else ORC-3 filler order number or RXE-15 prescription number",
        )
    })?;
    let (dose_value, dose_unit) = dose(rxe, ("3", "give amount - minimum"), ("5", "give units"), None)?;
    let timing = order_timing(msg, g, rxe)?;
    Ok(pb::MedicationOrder {
        order_id,
        encounter_id,
        drug_code: drug.code.unwrap_or_default(),
        drug_name: drug.name.unwrap_or_default(),
        dose_value,
        dose_unit,
        route: route_of(g, None),
        frequency: timing.frequency,
        starts_at: timing.starts_at,
        ends_at: timing.ends_at,
    })
}

/// ORC-2.1, else ORC-3.1, else the prescription number in `fallback` (segment, field).
fn order_id(g: &OrderGroup<'_>, fallback: Option<(&Segment<'_>, &str)>) -> Option<String> {
    seg_value(&g.orc, "2-1")
        .or_else(|| seg_value(&g.orc, "3-1"))
        .or_else(|| fallback.and_then(|(seg, field)| seg_value(seg, &format!("{field}-1"))))
}

/// The date-time in `field` of this very segment (a message path with its occurrence, so
/// the message's default offset applies); errors name the field without the occurrence.
fn seg_time(msg: &Message, seg: &Segment<'_>, field: &str, what: &'static str) -> Result<Option<Timestamp>, MapError> {
    let occurrence = msg.segments(seg.id()).take_while(|s| s.index() != seg.index()).count() + 1;
    first_time(msg, &[(&format!("{}({occurrence})-{field}", seg.id()), what)])
}

/// A drug's code and name read from a CWE field.
struct Drug {
    code: Option<String>,
    name: Option<String>,
}

fn coded_drug(seg: &Segment<'_>, field: &str) -> Drug {
    let part = |n: usize| seg_value(seg, &format!("{field}-{n}"));
    let rxnorm = |n: usize| part(n).is_some_and(|s| s.eq_ignore_ascii_case("RXNORM"));
    let (code, name) = if !rxnorm(3) && rxnorm(6) && part(4).is_some() {
        (part(4), part(5).or_else(|| part(2)))
    } else {
        (part(1).or_else(|| part(4)), part(2).or_else(|| part(5)))
    };
    Drug {
        code,
        name: name.or_else(|| part(9)),
    }
}

/// A unit from a CWE field: the code in a units system, else the text, else the code.
fn coded_unit(seg: &Segment<'_>, field: &str) -> Option<String> {
    let part = |n: usize| seg_value(seg, &format!("{field}-{n}"));
    let units_system = part(3).is_some_and(|s| ["UCUM", "ISO+", "ANS+"].iter().any(|u| s.eq_ignore_ascii_case(u)));
    if units_system {
        part(1).or_else(|| part(2))
    } else {
        part(2).or_else(|| part(1))
    }
}

/// A dose's value and unit (no amount: 0 and no unit, the events' "no dose"). A unit is
/// required with an amount unless `implied_unit` stands in for it.
fn dose(
    seg: &Segment<'_>,
    (amount_field, amount_what): (&str, &'static str),
    (unit_field, unit_what): (&str, &'static str),
    implied_unit: Option<&str>,
) -> Result<(f64, String), MapError> {
    let name = |field: &str| format!("{}-{field}", seg.id());
    let Some(raw) = seg_value(seg, amount_field) else {
        return Ok((0.0, String::new()));
    };
    let dose_value = hl7_number(&raw)
        .ok_or_else(|| MapError::invalid(name(amount_field), amount_what, format!("{raw:?} is not a number")))?;
    let dose_unit = coded_unit(seg, unit_field)
        .or_else(|| implied_unit.map(str::to_owned))
        .ok_or_else(|| MapError::missing(name(unit_field), unit_what))?;
    Ok((dose_value, dose_unit))
}

/// An HL7 NM value: optional sign, digits, optional decimal point; no exponent, no
/// `inf`/`NaN` (which Rust's parser would take).
fn hl7_number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1;
    ok.then(|| s.parse().ok()).flatten()
}

/// RXR-1 (code, else text) of `own` (after an RXD/RXA), else of the encoding, else of the
/// order as written.
fn route_of(g: &OrderGroup<'_>, own: Option<&Segment<'_>>) -> String {
    [own, g.encoded_route.as_ref(), g.ordered_route.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|rxr| seg_value(rxr, "1-1").or_else(|| seg_value(rxr, "1-2")))
        .unwrap_or_default()
}

#[derive(Default)]
struct Timing {
    frequency: String,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
}

/// The encoded TQ1, else RXE-1 (the TQ data type before 2.5), else the order's TQ1.
fn order_timing(msg: &Message, g: &OrderGroup<'_>, rxe: &Segment<'_>) -> Result<Timing, MapError> {
    let tq1 = |tq1: &Segment<'_>| -> Result<Timing, MapError> {
        Ok(Timing {
            // RPT.1 is a CWE inside a component: its code is the first subcomponent.
            frequency: seg_value(tq1, "3-1-1")
                .or_else(|| seg_value(tq1, "3-1-2"))
                .unwrap_or_default(),
            starts_at: seg_time(msg, tq1, "7", "start date/time")?,
            ends_at: seg_time(msg, tq1, "8", "end date/time")?,
        })
    };
    if let Some(t) = &g.encoded_timing {
        return tq1(t);
    }
    if rxe.raw("1").is_some_and(|r| r != "\"\"") {
        return Ok(Timing {
            // TQ.2 interval (RI): its repeat pattern is the first subcomponent.
            frequency: seg_value(rxe, "1-2-1").unwrap_or_default(),
            starts_at: seg_time(msg, rxe, "1-4", "quantity/timing start date/time")?,
            ends_at: seg_time(msg, rxe, "1-5", "quantity/timing end date/time")?,
        });
    }
    match &g.timing {
        Some(t) => tq1(t),
        None => Ok(Timing::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7v2::parse_message;

    fn map(text: &str) -> Result<Vec<ClinicalEvent>, MapError> {
        to_events(&parse_message(text.as_bytes()).unwrap(), &MapOptions::default())
    }

    const MSH: &str = "MSH|^~\\&|WARD|NORTH|HIS|SOUTH|20240301123000||";

    #[test]
    fn admission_reads_visit_location_and_patient() {
        let text = format!(
            "{MSH}ADT^A01|C1|P|2.5\rEVN|A01|20240301120000\rPID|1||X9^^^SS~M1^^^HOSP^MR||DOE^JANE||19800102|F\rPV1|1|I|W1^R2^B3^FAC||||D7^Who|||MED|||||||||V55\r"
        );
        let e = map(&text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].event_id.as_str(), e[0].source_system.as_str()),
            ("NORTH|C1", "WARD")
        );
        let p = e[0].patient.as_ref().unwrap();
        assert_eq!((p.mrn.as_str(), p.assigning_authority.as_str()), ("M1", "HOSP"));
        assert_eq!(e[0].occurred_at.unwrap().seconds, 1_709_294_400);
        let Some(Payload::Admission(a)) = &e[0].payload else {
            panic!()
        };
        assert_eq!(a.encounter_id, "V55");
        assert_eq!(a.encounter_class, EncounterClass::Inpatient as i32);
        let loc = a.location.as_ref().unwrap();
        assert_eq!(
            (
                loc.department_code.as_str(),
                loc.ward_code.as_str(),
                loc.bed_code.as_str()
            ),
            ("MED", "W1", "R2-B3")
        );
        assert_eq!(a.attending_practitioner, "D7");
    }

    #[test]
    fn missing_visit_number_names_the_field() {
        let text = format!("{MSH}ADT^A03|C2|P|2.5\rPID|1||M1^^^H^MR\rPV1|1|I|W1\r");
        let err = map(&text).unwrap_err();
        assert_eq!(err.to_string(), "PV1-19 (visit number) is empty");
        assert_eq!(err.field(), Some("PV1-19"));
    }

    #[test]
    fn unsupported_types_are_refused() {
        let text = format!("{MSH}SIU^S12|C3|P|2.5\rPID|1||M1\r");
        assert!(matches!(map(&text), Err(MapError::Unsupported { ref message_type }) if message_type == "SIU^S12"));
    }

    #[test]
    fn results_split_into_labs_and_one_vital_set() {
        let text = format!(
            "{MSH}ORU^R01|C4|P|2.5\rPID|1||M1^^^H^MR\rOBR|1|P1|F1|X^panel|||20240301110000\r\
             OBX|1|NM|8867-4^HR^LN||88|/min\rOBX|2|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-6.1|N\r\
             OBX|3|ST|1-8^note^LN||text\rOBX|4|NM|8310-5^Temp^LN||37.2|Cel|||||F|||20240301111500\r"
        );
        let e = map(&text).unwrap();
        let ids: Vec<_> = e.iter().map(|e| e.event_id.as_str()).collect();
        // The glucose, the ST note (a text result), then the vital set.
        assert_eq!(ids, ["NORTH|C4-1", "NORTH|C4-2", "NORTH|C4-3"]);
        let Some(Payload::LabResult(note)) = &e[1].payload else {
            panic!()
        };
        assert_eq!(
            (note.loinc_code.as_str(), note.value, note.value_text.as_str()),
            ("1-8", None, "text")
        );
        let Some(Payload::LabResult(l)) = &e[0].payload else {
            panic!()
        };
        assert_eq!(
            (l.loinc_code.as_str(), l.value, l.unit.as_str()),
            ("2345-7", Some(5.4), "mmol/L")
        );
        assert_eq!((l.reference_low, l.reference_high), (Some(3.9), Some(6.1)));
        assert_eq!(
            (l.order_id.as_str(), l.abnormal_flag),
            ("F1", AbnormalFlag::Normal as i32)
        );
        let Some(Payload::VitalSigns(v)) = &e[2].payload else {
            panic!()
        };
        let codes: Vec<_> = v.observations.iter().map(|o| o.loinc_code.as_str()).collect();
        assert_eq!(codes, ["8867-4", "8310-5"]);
        // The set is timed by its first OBX-14.
        assert_eq!(e[2].occurred_at.unwrap().seconds, 1_709_291_700);
    }

    #[test]
    fn text_and_coded_results_keep_text_code_and_system() {
        let text = format!(
            "{MSH}ORU^R01|C5|P|2.5\rPID|1||M1^^^H^MR\rOBR|1|P1|F1|X^panel|||20240301110000\r\
             OBX|1|CWE|625-4^Bacteria identified^LN||27268008^Salmonella^SCT^^^^^^Salmonella species||||||F\r\
             OBX|2|TX|11156-7^Leukocyte morphology^LN||Reactive~lymphocytes||||||F\r\
             OBX|3|CWE|30400-6^Hypochromia^LN||A^Present~B^Absent||||||F\r\
             OBX|4|RP|1063-7^Image^LN||https://x^^image^PICT||||||F\r\
             OBX|5|ST|5778-6^Color^LN||\"\"||||||F\r"
        );
        let e = map(&text).unwrap();
        let labs: Vec<&pb::LabResult> = e
            .iter()
            .map(|e| match &e.payload {
                Some(Payload::LabResult(l)) => l,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(labs.len(), 3, "RP and an empty ST make no result");
        let got = |l: &pb::LabResult| {
            (
                l.value,
                l.value_text.clone(),
                l.value_code.clone(),
                l.value_code_system.clone(),
            )
        };
        assert_eq!(
            got(labs[0]),
            (None, "Salmonella species".into(), "27268008".into(), "SCT".into())
        );
        assert_eq!(
            got(labs[1]),
            (None, "Reactive\nlymphocytes".into(), "".into(), "".into())
        );
        assert_eq!(got(labs[2]), (None, "Present; Absent".into(), "".into(), "".into()));
        assert_eq!(labs[0].loinc_code, "625-4");
    }

    #[test]
    fn coding_system_names_depend_on_the_use() {
        use CodeUse::{Diagnosis as Dx, Procedure as Px};
        assert_eq!(code_system("i10", Dx), Some(CodeSystem::Icd10));
        assert_eq!(code_system(" I10C ", Dx), Some(CodeSystem::Icd10Cm));
        assert_eq!(code_system("I10", Px), None);
        assert_eq!(code_system("I10P", Px), Some(CodeSystem::Icd10Pcs));
        assert_eq!(code_system("I9CP", Dx), None);
        assert_eq!(code_system("I9CP", Px), Some(CodeSystem::Icd9Cm));
        assert_eq!(code_system("C4", Dx), None);
        for local in ["L", "local", "99Z", "99ABC"] {
            assert_eq!(code_system(local, Dx), Some(CodeSystem::Local), "{local}");
        }
        for unknown in ["99", "99ABCD", "99-X", "LN", ""] {
            assert_eq!(code_system(unknown, Px), None, "{unknown}");
        }
    }

    #[test]
    fn minutes_carry_into_seconds_and_saturate() {
        let t = Timestamp {
            seconds: 100,
            nanos: 900_000_000,
        };
        assert_eq!(
            plus_minutes(t, 0.0025),
            Timestamp {
                seconds: 101,
                nanos: 50_000_000
            }
        );
        assert_eq!(plus_minutes(t, 2.0).seconds, 220);
        assert!(plus_minutes(t, 1e300).seconds > 9_000_000_000);
    }

    #[test]
    fn reference_ranges() {
        assert_eq!(reference_range(Some("70-80")), (Some(70.0), Some(80.0)));
        assert_eq!(reference_range(Some("-5--1")), (Some(-5.0), Some(-1.0)));
        assert_eq!(reference_range(Some("<5")), (None, None));
        assert_eq!(reference_range(None), (None, None));
    }
}
