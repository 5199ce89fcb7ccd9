//! `fact_encounter`: an accumulating snapshot, one row per encounter, updated as its
//! milestones arrive (ED arrival, triage, admission, transfers, discharge).
//!
//! The merge is order-free and idempotent: each milestone slot keeps the event it came
//! from (time and staging position) and a fixed rule picks between candidates — the
//! earliest for admission, ED arrival and triage; the latest for discharge and current
//! location (ties: staging position); transfers are a set of positions. Merging the
//! same events in any order, any number of times, gives the same row.
//!
//! Owns: the table, the merge rule and the derived durations. Must not: decode events.

use std::collections::BTreeSet;

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::date_key;
use super::reference::{codes, LocationCodes};
use super::{fetch_by_keys, insert_rows, Version};
use crate::error::Result;
use crate::stamp::{wins, Keep};
use hospital_proto::events::{self as pb, clinical_event::Payload};

pub const TABLE: &str = "fact_encounter";

const MS_PER_MINUTE: f64 = 60_000.0;
const MS_PER_HOUR: f64 = 3_600_000.0;

/// When and from which staged event a milestone came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub at_ms: i64,
    pub position: u64,
    pub event_id: String,
}

impl Stamp {
    /// Where the milestone stands in the platform's one order of facts.
    pub fn order(&self) -> crate::stamp::Stamp {
        crate::stamp::Stamp {
            at_ms: self.at_ms,
            position: self.position,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionInfo {
    /// e.g. "inpatient", "emergency".
    pub encounter_class: String,
    pub admission_type: String,
    pub location: LocationCodes,
    pub attending_practitioner: String,
    pub admitting_diagnosis: String,
    pub payer_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdArrivalInfo {
    pub arrival_mode: String,
    pub chief_complaint: String,
    pub department_code: String,
}

/// An encounter event, reduced to what the snapshot keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncounterEvent {
    Admission(AdmissionInfo),
    Transfer { to: LocationCodes },
    Discharge { disposition: String },
    EdArrival(EdArrivalInfo),
    EdTriage { acuity: Option<u8> },
}

impl EncounterEvent {
    /// The encounter event a payload is, with its encounter id: the one reading of
    /// admissions, transfers, discharges and ED events shared by the warehouse load and
    /// the live census.
    pub fn from_payload(payload: &Payload) -> Option<(&str, EncounterEvent)> {
        Some(match payload {
            Payload::Admission(a) => (
                &a.encounter_id,
                EncounterEvent::Admission(AdmissionInfo {
                    encounter_class: label!(pb::EncounterClass, a.encounter_class, "ENCOUNTER_CLASS"),
                    admission_type: label!(pb::AdmissionType, a.admission_type, "ADMISSION_TYPE"),
                    location: codes(a.location.as_ref()),
                    attending_practitioner: a.attending_practitioner.clone(),
                    admitting_diagnosis: a.admitting_diagnosis.clone(),
                    payer_code: a.payer_code.clone(),
                }),
            ),
            Payload::Transfer(t) => (
                &t.encounter_id,
                EncounterEvent::Transfer {
                    to: codes(t.to.as_ref()),
                },
            ),
            Payload::Discharge(d) => (
                &d.encounter_id,
                EncounterEvent::Discharge {
                    disposition: label!(pb::DischargeDisposition, d.disposition, "DISCHARGE_DISPOSITION"),
                },
            ),
            Payload::EdArrival(a) => (
                &a.encounter_id,
                EncounterEvent::EdArrival(EdArrivalInfo {
                    arrival_mode: label!(pb::ArrivalMode, a.arrival_mode, "ARRIVAL_MODE"),
                    chief_complaint: a.chief_complaint.clone(),
                    department_code: a.department_code.clone(),
                }),
            ),
            Payload::EdTriage(t) => (
                &t.encounter_id,
                EncounterEvent::EdTriage {
                    acuity: u8::try_from(t.acuity).ok().filter(|a| *a > 0),
                },
            ),
            _ => return None,
        })
    }
}

/// The merged state of one encounter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncounterState {
    pub encounter_id: String,
    /// The patient of the encounter's first staged event.
    pub patient: Option<(u64, Uuid)>,
    pub admission: Option<(Stamp, AdmissionInfo)>,
    pub discharge: Option<(Stamp, String)>,
    pub ed_arrival: Option<(Stamp, EdArrivalInfo)>,
    pub ed_triage: Option<(Stamp, Option<u8>)>,
    pub location: Option<(Stamp, LocationCodes)>,
    /// Staging positions of the transfers merged in.
    pub transfers: BTreeSet<u64>,
}

/// Keeps `value` in `slot` if the slot is empty or its stamp wins by `keep`
/// ([`crate::stamp::wins`], the order the live census and NEWS2 state use too).
fn keep<T>(slot: &mut Option<(Stamp, T)>, stamp: Stamp, value: T, keep: Keep) {
    if slot
        .as_ref()
        .is_none_or(|(current, _)| wins(stamp.order(), current.order(), keep))
    {
        *slot = Some((stamp, value));
    }
}

impl EncounterState {
    pub fn new(encounter_id: impl Into<String>) -> Self {
        Self {
            encounter_id: encounter_id.into(),
            ..Self::default()
        }
    }

    /// Merges one event of this encounter.
    pub fn apply(&mut self, stamp: Stamp, patient_key: Uuid, event: EncounterEvent) {
        if self.patient.is_none_or(|(p, _)| stamp.position < p) {
            self.patient = Some((stamp.position, patient_key));
        }
        match event {
            EncounterEvent::Admission(info) => {
                if !info.location.is_empty() {
                    keep(&mut self.location, stamp.clone(), info.location.clone(), Keep::Latest);
                }
                keep(&mut self.admission, stamp, info, Keep::Earliest);
            }
            EncounterEvent::Transfer { to } => {
                self.transfers.insert(stamp.position);
                keep(&mut self.location, stamp, to, Keep::Latest);
            }
            EncounterEvent::Discharge { disposition } => keep(&mut self.discharge, stamp, disposition, Keep::Latest),
            EncounterEvent::EdArrival(info) => keep(&mut self.ed_arrival, stamp, info, Keep::Earliest),
            EncounterEvent::EdTriage { acuity } => keep(&mut self.ed_triage, stamp, acuity, Keep::Earliest),
        }
    }

    /// Rebuilds the state from a stored row (the inverse of [`Self::to_row`]).
    pub fn from_row(row: &EncounterRow) -> Self {
        let stamp = |at: Option<i64>, position: u64, event_id: &str| {
            at.map(|at_ms| Stamp {
                at_ms,
                position,
                event_id: event_id.to_string(),
            })
        };
        Self {
            encounter_id: row.encounter_id.clone(),
            patient: Some((row.patient_position, row.patient_key)),
            admission: stamp(row.admitted_at_ms, row.admission_position, &row.admission_event_id).map(|s| {
                (
                    s,
                    AdmissionInfo {
                        encounter_class: row.encounter_class.clone(),
                        admission_type: row.admission_type.clone(),
                        location: LocationCodes::new(
                            &row.admission_department_code,
                            &row.admission_ward_code,
                            &row.admission_bed_code,
                        ),
                        attending_practitioner: row.attending_practitioner.clone(),
                        admitting_diagnosis: row.admitting_diagnosis.clone(),
                        payer_code: row.payer_code.clone(),
                    },
                )
            }),
            discharge: stamp(row.discharged_at_ms, row.discharge_position, &row.discharge_event_id)
                .map(|s| (s, row.discharge_disposition.clone())),
            ed_arrival: stamp(row.ed_arrival_at_ms, row.ed_arrival_position, &row.ed_arrival_event_id).map(|s| {
                (
                    s,
                    EdArrivalInfo {
                        arrival_mode: row.ed_arrival_mode.clone(),
                        chief_complaint: row.ed_chief_complaint.clone(),
                        department_code: row.ed_department_code.clone(),
                    },
                )
            }),
            ed_triage: stamp(row.ed_triage_at_ms, row.ed_triage_position, &row.ed_triage_event_id)
                .map(|s| (s, row.acuity)),
            location: stamp(row.location_at_ms, row.location_position, &row.location_event_id).map(|s| {
                (
                    s,
                    LocationCodes::new(&row.department_code, &row.ward_code, &row.bed_code),
                )
            }),
            transfers: row.transfer_positions.iter().copied().collect(),
        }
    }

    /// The row of this state, with the derived columns computed.
    pub fn to_row(&self, version: Version) -> EncounterRow {
        let (patient_position, patient_key) = self.patient.unwrap_or((0, Uuid::nil()));
        let admitted_at_ms = self.admission.as_ref().map(|(s, _)| s.at_ms);
        let discharged_at_ms = self.discharge.as_ref().map(|(s, _)| s.at_ms);
        let ed_arrival_at_ms = self.ed_arrival.as_ref().map(|(s, _)| s.at_ms);
        let ed_triage_at_ms = self.ed_triage.as_ref().map(|(s, _)| s.at_ms);
        let admission = self.admission.as_ref().map(|(_, a)| a.clone()).unwrap_or_default();
        let encounter_class = match (&self.admission, &self.ed_arrival) {
            (Some(_), _) => admission.encounter_class.clone(),
            (None, Some(_)) => "emergency".to_string(),
            (None, None) => String::new(),
        };
        let inpatient_admission_at = admitted_at_ms.filter(|_| admission.encounter_class != "emergency");
        let ed = self.ed_arrival.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        let location = self.location.as_ref().map(|(_, l)| l.clone()).unwrap_or_default();
        let (adm, dis, arr, tri, loc) = (
            self.admission.as_ref().map(|(s, _)| s),
            self.discharge.as_ref().map(|(s, _)| s),
            self.ed_arrival.as_ref().map(|(s, _)| s),
            self.ed_triage.as_ref().map(|(s, _)| s),
            self.location.as_ref().map(|(s, _)| s),
        );
        let id = |s: Option<&Stamp>| s.map(|s| s.event_id.clone()).unwrap_or_default();
        let pos = |s: Option<&Stamp>| s.map_or(0, |s| s.position);
        EncounterRow {
            encounter_id: self.encounter_id.clone(),
            patient_key,
            patient_position,
            encounter_class,
            admission_type: admission.admission_type.clone(),
            admitted_at_ms,
            admit_date_key: admitted_at_ms.map(date_key),
            admission_department_code: admission.location.department_code.clone(),
            admission_ward_code: admission.location.ward_code.clone(),
            admission_bed_code: admission.location.bed_code.clone(),
            attending_practitioner: admission.attending_practitioner.clone(),
            admitting_diagnosis: admission.admitting_diagnosis.clone(),
            payer_code: admission.payer_code.clone(),
            admission_event_id: id(adm),
            admission_position: pos(adm),
            discharged_at_ms,
            discharge_date_key: discharged_at_ms.map(date_key),
            discharge_disposition: self.discharge.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
            discharge_event_id: id(dis),
            discharge_position: pos(dis),
            ed_arrival_at_ms,
            ed_arrival_mode: ed.arrival_mode,
            ed_chief_complaint: ed.chief_complaint,
            ed_department_code: ed.department_code,
            ed_arrival_event_id: id(arr),
            ed_arrival_position: pos(arr),
            ed_triage_at_ms,
            acuity: self.ed_triage.as_ref().and_then(|(_, a)| *a),
            ed_triage_event_id: id(tri),
            ed_triage_position: pos(tri),
            ed_wait_minutes: ed_wait_minutes(ed_arrival_at_ms, ed_triage_at_ms),
            ed_length_of_stay_minutes: ed_length_of_stay_minutes(
                ed_arrival_at_ms,
                inpatient_admission_at,
                discharged_at_ms,
            ),
            length_of_stay_hours: length_of_stay_hours(admitted_at_ms, discharged_at_ms),
            location_key: if location.is_empty() { 0 } else { location.key() },
            department_code: location.department_code,
            ward_code: location.ward_code,
            bed_code: location.bed_code,
            location_at_ms: loc.map(|s| s.at_ms),
            location_event_id: id(loc),
            location_position: pos(loc),
            transfer_count: u32::try_from(self.transfers.len()).unwrap_or(u32::MAX),
            transfer_positions: self.transfers.iter().copied().collect(),
            is_deleted: false,
            version,
        }
    }
}

/// Time to initial assessment: ED arrival -> triage, in minutes. None if either is
/// missing or triage precedes arrival (inconsistent source data).
pub fn ed_wait_minutes(arrival_ms: Option<i64>, triage_ms: Option<i64>) -> Option<f64> {
    minutes_between(arrival_ms?, triage_ms?)
}

/// Time in the ED, in minutes: arrival -> inpatient admission when the patient was
/// admitted at or after arrival, else arrival -> discharge. None while the patient is
/// still in the ED, or when the times are inconsistent.
pub fn ed_length_of_stay_minutes(
    arrival_ms: Option<i64>,
    inpatient_admission_ms: Option<i64>,
    discharge_ms: Option<i64>,
) -> Option<f64> {
    let arrival = arrival_ms?;
    match inpatient_admission_ms {
        Some(admitted) if admitted >= arrival => minutes_between(arrival, admitted),
        _ => minutes_between(arrival, discharge_ms?),
    }
}

/// Admission -> discharge, in hours. None while the patient is in hospital.
pub fn length_of_stay_hours(admitted_ms: Option<i64>, discharged_ms: Option<i64>) -> Option<f64> {
    let (a, d) = (admitted_ms?, discharged_ms?);
    (d >= a).then(|| (d - a) as f64 / MS_PER_HOUR)
}

fn minutes_between(from_ms: i64, to_ms: i64) -> Option<f64> {
    (to_ms >= from_ms).then(|| (to_ms - from_ms) as f64 / MS_PER_MINUTE)
}

/// A row of `fact_encounter`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EncounterRow {
    pub encounter_id: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub patient_position: u64,
    pub encounter_class: String,
    pub admission_type: String,
    pub admitted_at_ms: Option<i64>,
    pub admit_date_key: Option<u32>,
    pub admission_department_code: String,
    pub admission_ward_code: String,
    pub admission_bed_code: String,
    pub attending_practitioner: String,
    pub admitting_diagnosis: String,
    pub payer_code: String,
    pub admission_event_id: String,
    pub admission_position: u64,
    pub discharged_at_ms: Option<i64>,
    pub discharge_date_key: Option<u32>,
    pub discharge_disposition: String,
    pub discharge_event_id: String,
    pub discharge_position: u64,
    pub ed_arrival_at_ms: Option<i64>,
    pub ed_arrival_mode: String,
    pub ed_chief_complaint: String,
    pub ed_department_code: String,
    pub ed_arrival_event_id: String,
    pub ed_arrival_position: u64,
    pub ed_triage_at_ms: Option<i64>,
    pub acuity: Option<u8>,
    pub ed_triage_event_id: String,
    pub ed_triage_position: u64,
    pub ed_wait_minutes: Option<f64>,
    pub ed_length_of_stay_minutes: Option<f64>,
    pub length_of_stay_hours: Option<f64>,
    pub location_key: u64,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    pub location_at_ms: Option<i64>,
    pub location_event_id: String,
    pub location_position: u64,
    pub transfer_count: u32,
    pub transfer_positions: Vec<u64>,
    pub is_deleted: bool,
    pub version: Version,
}

impl EncounterRow {
    /// Same content, whatever version wrote it.
    pub fn same_content(&self, other: &Self) -> bool {
        Self {
            version: 0,
            ..self.clone()
        } == Self {
            version: 0,
            ..other.clone()
        }
    }
}

/// The live rows of `encounter_ids`.
pub async fn read(client: &Client, encounter_ids: &[String]) -> Result<Vec<EncounterRow>> {
    fetch_by_keys(
        client,
        "SELECT ?fields FROM fact_encounter FINAL WHERE encounter_id IN ? AND is_deleted = 0",
        encounter_ids,
    )
    .await
}

pub async fn write(client: &Client, rows: &[EncounterRow]) -> Result<u64> {
    insert_rows(client, TABLE, rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn stamp(at_ms: i64, position: u64) -> Stamp {
        Stamp {
            at_ms,
            position,
            event_id: format!("e{position}"),
        }
    }

    fn patient() -> Uuid {
        super::super::keys::patient_key("hosp", "1")
    }

    fn admission(class: &str, ward: &str) -> EncounterEvent {
        EncounterEvent::Admission(AdmissionInfo {
            encounter_class: class.into(),
            admission_type: "emergency".into(),
            location: LocationCodes::new("MED", ward, "B1"),
            attending_practitioner: "dr-who".into(),
            admitting_diagnosis: "J18.9".into(),
            payer_code: "NHS".into(),
        })
    }

    /// An ED visit admitted to a ward, transferred once, discharged.
    fn events() -> Vec<(Stamp, EncounterEvent)> {
        vec![
            (
                stamp(0, 10),
                EncounterEvent::EdArrival(EdArrivalInfo {
                    arrival_mode: "ambulance".into(),
                    chief_complaint: "chest pain".into(),
                    department_code: "ED".into(),
                }),
            ),
            (stamp(12 * MIN, 11), EncounterEvent::EdTriage { acuity: Some(2) }),
            (stamp(185 * MIN, 12), admission("inpatient", "W1")),
            (
                stamp(600 * MIN, 13),
                EncounterEvent::Transfer {
                    to: LocationCodes::new("MED", "W2", "B7"),
                },
            ),
            (
                stamp(185 * MIN + 72 * 60 * MIN, 14),
                EncounterEvent::Discharge {
                    disposition: "home".into(),
                },
            ),
        ]
    }

    fn merged(order: &[usize], batches: &[usize]) -> EncounterRow {
        // Applies events in `order`, storing and reloading the row after each batch
        // boundary, as chunked loads do.
        let evs = events();
        let mut state = EncounterState::new("enc-1");
        for (i, idx) in order.iter().enumerate() {
            let (s, e) = evs[*idx].clone();
            state.apply(s, patient(), e);
            if batches.contains(&i) {
                state = EncounterState::from_row(&state.to_row(1));
            }
        }
        state.to_row(1)
    }

    #[test]
    fn merge_is_independent_of_order_batching_and_repeats() {
        let expected = merged(&[0, 1, 2, 3, 4], &[]);
        // Discharge staged before admission, arrival last, split across chunks.
        assert_eq!(merged(&[4, 2, 3, 1, 0], &[0, 2]), expected);
        assert_eq!(merged(&[3, 4, 0, 2, 1], &[1, 3]), expected);
        // A redone chunk merges the same events again.
        assert_eq!(merged(&[0, 1, 2, 3, 4, 3, 4, 0], &[4]), expected);

        assert_eq!(expected.encounter_class, "inpatient");
        assert_eq!(expected.ed_wait_minutes, Some(12.0));
        assert_eq!(expected.ed_length_of_stay_minutes, Some(185.0));
        assert_eq!(expected.length_of_stay_hours, Some(72.0));
        assert_eq!(expected.transfer_count, 1);
        assert_eq!(expected.transfer_positions, vec![13]);
        assert_eq!((expected.ward_code.as_str(), expected.bed_code.as_str()), ("W2", "B7"));
        assert_eq!(expected.location_event_id, "e13");
        assert_eq!(expected.admission_ward_code, "W1");
        assert_eq!(expected.acuity, Some(2));
        assert_eq!(expected.patient_position, 10);
        assert_eq!(expected.discharge_disposition, "home");
    }

    #[test]
    fn partial_encounters() {
        // Discharge only: no durations yet.
        let mut s = EncounterState::new("e");
        s.apply(
            stamp(100 * MIN, 5),
            patient(),
            EncounterEvent::Discharge {
                disposition: "home".into(),
            },
        );
        let row = s.to_row(1);
        assert_eq!((row.admitted_at_ms, row.length_of_stay_hours), (None, None));
        assert_eq!(row.discharge_date_key, Some(19700101));
        // Then the admission arrives: LOS appears; location comes from the admission.
        s.apply(stamp(40 * MIN, 9), patient(), admission("inpatient", "W3"));
        let row = s.to_row(2);
        assert_eq!(row.length_of_stay_hours, Some(1.0));
        assert_eq!(row.ward_code, "W3");
        assert_eq!(row.patient_position, 5);
        assert_eq!(row.ed_length_of_stay_minutes, None);
    }

    #[test]
    fn ed_arithmetic() {
        assert_eq!(ed_wait_minutes(Some(0), Some(30 * MIN)), Some(30.0));
        assert_eq!(ed_wait_minutes(Some(0), Some(90_000)), Some(1.5));
        assert_eq!(ed_wait_minutes(Some(10 * MIN), Some(0)), None, "triage before arrival");
        assert_eq!(ed_wait_minutes(None, Some(0)), None);
        // Admitted from the ED: the ED stay ends at admission.
        assert_eq!(
            ed_length_of_stay_minutes(Some(0), Some(240 * MIN), Some(10_000 * MIN)),
            Some(240.0)
        );
        // Sent home from the ED: the ED stay ends at discharge.
        assert_eq!(ed_length_of_stay_minutes(Some(0), None, Some(95 * MIN)), Some(95.0));
        // Admission recorded before arrival (e.g. elective patient seen in ED): discharge.
        assert_eq!(
            ed_length_of_stay_minutes(Some(60 * MIN), Some(0), Some(120 * MIN)),
            Some(60.0)
        );
        assert_eq!(ed_length_of_stay_minutes(Some(0), None, None), None, "still in the ED");
        assert_eq!(length_of_stay_hours(Some(0), Some(36 * 60 * MIN)), Some(36.0));
        assert_eq!(length_of_stay_hours(Some(10), Some(5)), None);

        // An ED-only encounter whose "admission" is the ED registration itself: the ED
        // stay runs to discharge, not to that registration.
        let mut s = EncounterState::new("ed-only");
        s.apply(
            stamp(0, 1),
            patient(),
            EncounterEvent::EdArrival(EdArrivalInfo::default()),
        );
        s.apply(stamp(5 * MIN, 2), patient(), admission("emergency", "EDW"));
        s.apply(
            stamp(200 * MIN, 3),
            patient(),
            EncounterEvent::Discharge {
                disposition: "home".into(),
            },
        );
        assert_eq!(s.to_row(1).ed_length_of_stay_minutes, Some(200.0));
    }

    #[test]
    fn ties_and_repeated_milestones() {
        let mut s = EncounterState::new("e");
        // Two discharges: the later one wins; at the same time, the later position.
        s.apply(
            stamp(100, 5),
            patient(),
            EncounterEvent::Discharge {
                disposition: "home".into(),
            },
        );
        s.apply(
            stamp(100, 3),
            patient(),
            EncounterEvent::Discharge {
                disposition: "deceased".into(),
            },
        );
        assert_eq!(s.to_row(1).discharge_disposition, "home");
        s.apply(
            stamp(200, 1),
            patient(),
            EncounterEvent::Discharge {
                disposition: "other".into(),
            },
        );
        assert_eq!(s.to_row(1).discharge_disposition, "other");
        // Two triages: the first (initial assessment) wins.
        s.apply(stamp(50, 8), patient(), EncounterEvent::EdTriage { acuity: Some(3) });
        s.apply(stamp(40, 9), patient(), EncounterEvent::EdTriage { acuity: Some(1) });
        assert_eq!(s.to_row(1).acuity, Some(1));
    }
}
