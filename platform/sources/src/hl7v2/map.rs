//! HL7 v2 -> canonical `ClinicalEvent`s: ADT (A01-A04, A08, A28, A31) and ORU^R01.
//!
//! Owns which HL7 field feeds which event field. Pure: no I/O, no clock, no validation
//! beyond what mapping needs (ranges, units and required event fields are the ingest
//! door's job, so HL7 events pass the same checks as every other source).
//!
//! Rules:
//! - `event_id` = `<sending facility>|<MSH-10>`, with `-<n>` (1-based) appended when one
//!   message makes several events, so a resend of the same message yields the same ids
//!   and is absorbed by the warehouse's dedup.
//! - `source_system` = MSH-3 (sending application), else the sending facility.
//! - Patient: the PID-3 repetition whose identifier type (CX-5) is `MR`, else the first;
//!   assigning authority is CX-4 (its namespace id).
//! - `occurred_at`: EVN-2 (else EVN-6) for ADT; OBX-14 (else OBR-7) for results; else
//!   MSH-7.
//! - Missing data that an event cannot do without is a [`MapError`] naming the HL7 field.

use hospital_proto::events::{
    self as pb, clinical_event::Payload, AbnormalFlag, AdministrativeSex, AdmissionType, ClinicalEvent,
    DischargeDisposition, EncounterClass,
};
use prost_types::Timestamp;

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
    #[error("unsupported message type {message_type}: supported are ADT^A01/A02/A03/A04/A08/A28/A31 and ORU^R01")]
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

impl MapError {
    /// The HL7 field the error is about (`PV1-19`), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Unsupported { .. } => None,
            Self::Missing { field, .. } | Self::Invalid { field, .. } => Some(field),
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
    let payloads: Vec<(Payload, Timestamp)> = match (msg.message_type(), trigger) {
        ("ADT", "A01" | "A02" | "A03" | "A04" | "A08" | "A28" | "A31") => adt(msg, trigger)?,
        ("ORU", "R01") => oru(msg)?,
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
    let several = payloads.len() > 1;
    Ok(payloads
        .into_iter()
        .enumerate()
        .map(|(i, (payload, occurred_at))| ClinicalEvent {
            event_id: if several {
                format!("{base}-{}", i + 1)
            } else {
                base.clone()
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

/// The first date-time among `paths` that is present; a malformed one is an error.
fn first_time(msg: &Message, paths: &[(&str, &'static str)]) -> Result<Option<Timestamp>, MapError> {
    for (path, what) in paths {
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
    let reps: Vec<&str> = pid.repetitions(3).collect();
    let chosen = (1..=reps.len())
        .find(|&i| seg_value(&pid, &format!("3({i})-5")).is_some_and(|t| t.eq_ignore_ascii_case("MR")))
        .or_else(|| (1..=reps.len()).find(|&i| seg_value(&pid, &format!("3({i})-1")).is_some()))
        .ok_or_else(|| MapError::missing("PID-3", "patient identifier list"))?;
    let mrn = seg_value(&pid, &format!("3({chosen})-1"))
        .ok_or_else(|| MapError::missing(format!("PID-3({chosen})-1"), "patient id of the MR identifier"))?;
    Ok(pb::PatientRef {
        mrn,
        assigning_authority: seg_value(&pid, &format!("3({chosen})-4")).unwrap_or_default(),
    })
}

fn adt(msg: &Message, trigger: &str) -> Result<Vec<(Payload, Timestamp)>, MapError> {
    let at = match first_time(msg, &[("EVN-2", "recorded date/time"), ("EVN-6", "event occurred")])? {
        Some(t) => t,
        None => message_time(msg)?,
    };
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
    let mut obr_n = 0usize;
    let mut obx_n = 0usize;
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
                obr_n += 1;
                let at = first_time(msg, &[(&format!("OBR({obr_n})-7"), "observation date/time")])?;
                let id = seg_value(&seg, "3-1")
                    .or_else(|| seg_value(&seg, "2-1"))
                    .unwrap_or_default();
                order = (id, at);
                vitals_group_at = at;
            }
            "OBX" => {
                obx_n += 1;
                let Some(n) = numeric(msg, &seg, obx_n)? else { continue };
                if n.is_loinc && VITAL_SIGN_CODES.contains(&n.code.as_str()) {
                    vitals.push(n);
                    continue;
                }
                let at =
                    n.at.or(order.1)
                        .or(msh_time)
                        .ok_or_else(|| MapError::missing("OBX-14", "date/time of the observation"))?;
                let (reference_low, reference_high) = reference_range(seg_value(&seg, "7").as_deref());
                out.push((
                    Payload::LabResult(pb::LabResult {
                        encounter_id: encounter_id.clone(),
                        order_id: order.0.clone(),
                        loinc_code: if n.is_loinc { n.code } else { String::new() },
                        display: n.display,
                        value: Some(n.value),
                        value_text: String::new(),
                        unit: n.unit,
                        reference_low,
                        reference_high,
                        abnormal_flag: abnormal_flag(seg_value(&seg, "8").as_deref()) as i32,
                        specimen_collected_at: order.1,
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
            "observation value: no OBX carries a single numeric (NM or SN) result",
        ));
    }
    Ok(out)
}

/// The OBX's numeric result, if it has one: value type NM or SN, one repetition, a
/// finite number (SN: no comparator other than `=`, no second number).
fn numeric(msg: &Message, seg: &Segment<'_>, obx_n: usize) -> Result<Option<Numeric>, MapError> {
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
    let at = first_time(msg, &[(&format!("OBX({obx_n})-14"), "date/time of the observation")])?;
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
        assert_eq!(ids, ["NORTH|C4-1", "NORTH|C4-2"]);
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
        let Some(Payload::VitalSigns(v)) = &e[1].payload else {
            panic!()
        };
        let codes: Vec<_> = v.observations.iter().map(|o| o.loinc_code.as_str()).collect();
        assert_eq!(codes, ["8867-4", "8310-5"]);
        // The set is timed by its first OBX-14.
        assert_eq!(e[1].occurred_at.unwrap().seconds, 1_709_291_700);
    }

    #[test]
    fn reference_ranges() {
        assert_eq!(reference_range(Some("70-80")), (Some(70.0), Some(80.0)));
        assert_eq!(reference_range(Some("-5--1")), (Some(-5.0), Some(-1.0)));
        assert_eq!(reference_range(Some("<5")), (None, None));
        assert_eq!(reference_range(None), (None, None));
    }
}
