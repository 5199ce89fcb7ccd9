//! `fact_icu_stay`: ICU stays derived from an encounter's movements, one row per stay
//! (`migrations/warehouse/0005_lab_text_icu_stays.sql`).
//!
//! An encounter's movements are its admission (at the admission time, to the admission
//! location) and its transfers (each at its time, to its destination); each location is
//! held until the next movement, the last one until the discharge (open while the
//! patient is in hospital). Consecutive ICU locations, and a return to an ICU within
//! [`RETURN_WINDOW_MS`] (24 hours) of leaving one, make one stay: MIMIC-III's ICUSTAYS
//! rule. Stays are recomputed whole for every encounter a load touches, so arrival order
//! does not matter; a stay that no longer exists (a late transfer merged it into
//! another) gets a tombstone.
//!
//! Which location is an ICU: [`is_icu`], a rule on codes (the reference data has no ward
//! type). Owns: that rule, the merge rule and the table. Must not: decode events.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Client;
use hospital_clinical::care_unit::is_icu_code;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::date_key;
use super::encounter::EncounterRow;
use super::reference::LocationCodes;
use super::{fetch_by_keys, insert_rows, Version};
use crate::error::Result;

pub const TABLE: &str = "fact_icu_stay";

/// A return to an ICU within this long of leaving one continues the same stay.
pub const RETURN_WINDOW_MS: i64 = 24 * 3_600_000;

const MS_PER_HOUR: f64 = 3_600_000.0;

/// Whether a location is an intensive care unit: its department or ward code is one
/// ([`is_icu_code`]).
pub fn is_icu(location: &LocationCodes) -> bool {
    icu_code(location).is_some()
}

/// The code that makes `location` an ICU: the department's, else the ward's.
fn icu_code(location: &LocationCodes) -> Option<&str> {
    [&location.department_code, &location.ward_code]
        .into_iter()
        .find(|c| is_icu_code(c))
        .map(String::as_str)
}

/// One movement of an encounter: from `at_ms` the patient is at `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub at_ms: i64,
    pub position: u64,
    pub event_id: String,
    pub to: LocationCodes,
}

/// A transfer as `fact_transfer` holds it, reduced to a movement.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct TransferMove {
    pub encounter_id: String,
    pub transferred_at_ms: i64,
    pub source_position: u64,
    pub source_event_id: String,
    pub to_department_code: String,
    pub to_ward_code: String,
    pub to_bed_code: String,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct IcuStayRow {
    pub encounter_id: String,
    /// `<encounter_id>/<event id of the movement that opened the stay>`.
    pub icu_stay_id: String,
    pub date_key: u32,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub first_care_unit: String,
    pub last_care_unit: String,
    pub first_ward_code: String,
    pub last_ward_code: String,
    pub care_units: Vec<String>,
    pub intime_ms: i64,
    pub outtime_ms: Option<i64>,
    pub length_of_stay_hours: Option<f64>,
    pub icu_hours: Option<f64>,
    pub segments: u32,
    pub source_event_ids: Vec<String>,
    pub is_deleted: bool,
    pub version: Version,
}

impl IcuStayRow {
    fn same_content(&self, other: &Self) -> bool {
        let strip = |r: &Self| Self {
            version: 0,
            ..r.clone()
        };
        strip(self) == strip(other)
    }
}

/// The movements of an encounter: its admission (when it has a location) and transfers.
/// An admission registered after a transfer of the encounter (MIMIC's elective surgery
/// patients: ADMITTIME after the move out of the operating room) is no movement: the
/// transfers say where the patient was, and the admission location is the first one.
pub fn movements(encounter: &EncounterRow, transfers: &[TransferMove]) -> Vec<Movement> {
    let mut out = Vec::with_capacity(transfers.len() + 1);
    let admission = LocationCodes::new(
        &encounter.admission_department_code,
        &encounter.admission_ward_code,
        &encounter.admission_bed_code,
    );
    let first_transfer = transfers.iter().map(|t| t.transferred_at_ms).min();
    let admitted = encounter
        .admitted_at_ms
        .filter(|at| first_transfer.is_none_or(|t| t >= *at));
    if let (Some(at_ms), false) = (admitted, admission.is_empty()) {
        out.push(Movement {
            at_ms,
            position: encounter.admission_position,
            event_id: encounter.admission_event_id.clone(),
            to: admission,
        });
    }
    out.extend(transfers.iter().map(|t| Movement {
        at_ms: t.transferred_at_ms,
        position: t.source_position,
        event_id: t.source_event_id.clone(),
        to: LocationCodes::new(&t.to_department_code, &t.to_ward_code, &t.to_bed_code),
    }));
    out.sort_by_key(|m| (m.at_ms, m.position));
    out
}

/// The ICU stays of one encounter from its movements and its discharge (time, event id).
pub fn stays(
    encounter_id: &str,
    patient_key: Uuid,
    movements: &[Movement],
    discharge: Option<(i64, &str)>,
    version: Version,
) -> Vec<IcuStayRow> {
    let mut out: Vec<IcuStayRow> = Vec::new();
    for (i, m) in movements.iter().enumerate() {
        let Some(unit) = icu_code(&m.to) else { continue };
        // Held until the next movement, else the discharge (never before it began).
        let (end, closed_by) = match movements.get(i + 1) {
            Some(next) => (Some(next.at_ms), Some(next.event_id.as_str())),
            None => match discharge {
                Some((at, id)) => (Some(at.max(m.at_ms)), Some(id)),
                None => (None, None),
            },
        };
        let continues = out
            .last()
            .and_then(|s| s.outtime_ms)
            .is_some_and(|out_ms| m.at_ms - out_ms <= RETURN_WINDOW_MS);
        if continues {
            let Some(stay) = out.last_mut() else { continue };
            // From one ICU straight to another, this movement closed the last segment.
            if stay.source_event_ids.last() != Some(&m.event_id) {
                stay.source_event_ids.push(m.event_id.clone());
            }
            if stay.care_units.last().is_none_or(|u| u != unit) {
                stay.care_units.push(unit.to_string());
            }
            stay.last_care_unit = unit.to_string();
            stay.last_ward_code = m.to.ward_code.clone();
            stay.segments += 1;
            stay.outtime_ms = end;
            stay.icu_hours = match (stay.icu_hours, end) {
                (Some(h), Some(e)) => Some(h + (e - m.at_ms) as f64 / MS_PER_HOUR),
                _ => None,
            };
        } else {
            out.push(IcuStayRow {
                encounter_id: encounter_id.to_string(),
                icu_stay_id: format!("{encounter_id}/{}", m.event_id),
                date_key: date_key(m.at_ms),
                patient_key,
                first_care_unit: unit.to_string(),
                last_care_unit: unit.to_string(),
                first_ward_code: m.to.ward_code.clone(),
                last_ward_code: m.to.ward_code.clone(),
                care_units: vec![unit.to_string()],
                intime_ms: m.at_ms,
                outtime_ms: end,
                length_of_stay_hours: None,
                icu_hours: end.map(|e| (e - m.at_ms) as f64 / MS_PER_HOUR),
                segments: 1,
                source_event_ids: vec![m.event_id.clone()],
                is_deleted: false,
                version,
            });
        }
        if let (Some(stay), Some(id)) = (out.last_mut(), closed_by) {
            stay.source_event_ids.push(id.to_string());
        }
    }
    for stay in &mut out {
        stay.length_of_stay_hours = stay.outtime_ms.map(|o| (o - stay.intime_ms) as f64 / MS_PER_HOUR);
    }
    out
}

/// The rows to write so that the stored stays of `encounters` become `computed`: new
/// and changed stays, and a tombstone for each stored stay not computed any more.
pub fn diff(stored: &[IcuStayRow], computed: Vec<IcuStayRow>, version: Version) -> Vec<IcuStayRow> {
    let before: BTreeMap<(&str, &str), &IcuStayRow> = stored
        .iter()
        .map(|r| ((r.encounter_id.as_str(), r.icu_stay_id.as_str()), r))
        .collect();
    let now: BTreeSet<(String, String)> = computed
        .iter()
        .map(|r| (r.encounter_id.clone(), r.icu_stay_id.clone()))
        .collect();
    let mut out: Vec<IcuStayRow> = stored
        .iter()
        .filter(|r| !now.contains(&(r.encounter_id.clone(), r.icu_stay_id.clone())))
        .map(|r| IcuStayRow {
            is_deleted: true,
            version,
            ..r.clone()
        })
        .collect();
    out.extend(computed.into_iter().filter(|r| {
        before
            .get(&(r.encounter_id.as_str(), r.icu_stay_id.as_str()))
            .is_none_or(|b| !b.same_content(r))
    }));
    out
}

/// The transfers of `encounter_ids` in `fact_transfer`.
pub async fn transfers_of(client: &Client, encounter_ids: &[String]) -> Result<Vec<TransferMove>> {
    fetch_by_keys(
        client,
        "SELECT ?fields FROM fact_transfer FINAL WHERE encounter_id IN ? AND is_deleted = 0",
        encounter_ids,
    )
    .await
}

/// The stored (live) stays of `encounter_ids`.
pub async fn read(client: &Client, encounter_ids: &[String]) -> Result<Vec<IcuStayRow>> {
    fetch_by_keys(
        client,
        "SELECT ?fields FROM fact_icu_stay FINAL WHERE encounter_id IN ? AND is_deleted = 0",
        encounter_ids,
    )
    .await
}

pub async fn write(client: &Client, rows: &[IcuStayRow]) -> Result<u64> {
    insert_rows(client, TABLE, rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn mv(at_h: i64, position: u64, department: &str) -> Movement {
        Movement {
            at_ms: at_h * H,
            position,
            event_id: format!("e{position}"),
            to: LocationCodes::new(department, "W1", ""),
        }
    }

    fn run(movements: &[Movement], discharge_h: Option<i64>) -> Vec<IcuStayRow> {
        stays("V1", Uuid::nil(), movements, discharge_h.map(|h| (h * H, "dis")), 7)
    }

    #[test]
    fn icu_codes() {
        for icu in ["MICU", "SICU", "TSICU", "NICU", "CCU", "CSRU", "icu", "CVICU"] {
            assert!(is_icu(&LocationCodes::new(icu, "W52", "")), "{icu}");
        }
        assert!(is_icu(&LocationCodes::new("CC", "ICU", "B1")));
        for not in ["WARD", "NWARD", "MED", "", "ICUX"] {
            assert!(!is_icu(&LocationCodes::new(not, "W1", "")), "{not}");
        }
    }

    #[test]
    fn a_return_within_24_hours_is_the_same_stay() {
        // ICU 0-10, ward 10-30 (20 h), ICU 30-40, ward 40-70 (30 h), CCU 70-80, discharge.
        let m = [
            mv(0, 1, "MICU"),
            mv(10, 2, "WARD"),
            mv(30, 3, "SICU"),
            mv(40, 4, "WARD"),
            mv(70, 5, "CCU"),
        ];
        let s = run(&m, Some(80));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].intime_ms, s[0].outtime_ms), (0, Some(40 * H)));
        assert_eq!(s[0].care_units, ["MICU", "SICU"]);
        assert_eq!(
            (s[0].first_care_unit.as_str(), s[0].last_care_unit.as_str()),
            ("MICU", "SICU")
        );
        assert_eq!(s[0].segments, 2);
        assert_eq!(s[0].length_of_stay_hours, Some(40.0));
        assert_eq!(s[0].icu_hours, Some(20.0));
        assert_eq!(s[0].source_event_ids, ["e1", "e2", "e3", "e4"]);
        assert_eq!(s[0].icu_stay_id, "V1/e1");
        assert_eq!((s[1].intime_ms, s[1].outtime_ms), (70 * H, Some(80 * H)));
        assert_eq!(s[1].source_event_ids, ["e5", "dis"]);
    }

    #[test]
    fn icu_to_icu_is_one_stay_and_an_open_stay_has_no_end() {
        let m = [mv(0, 1, "WARD"), mv(5, 2, "MICU"), mv(8, 3, "CCU")];
        let s = run(&m, None);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].intime_ms, s[0].outtime_ms), (5 * H, None));
        assert_eq!(
            (s[0].segments, s[0].length_of_stay_hours, s[0].icu_hours),
            (2, None, None)
        );
        assert_eq!(s[0].care_units, ["MICU", "CCU"]);
        assert_eq!(s[0].source_event_ids, ["e2", "e3"]);
        // Exactly 24 hours away still counts as a return.
        let m = [mv(0, 1, "MICU"), mv(1, 2, "WARD"), mv(25, 3, "MICU")];
        assert_eq!(run(&m, Some(30)).len(), 1);
        let m = [mv(0, 1, "MICU"), mv(1, 2, "WARD"), mv(26, 3, "MICU")];
        assert_eq!(run(&m, Some(30)).len(), 2);
    }

    #[test]
    fn diff_writes_changes_and_tombstones_vanished_stays() {
        let m = [mv(0, 1, "MICU"), mv(1, 2, "WARD"), mv(30, 3, "MICU")];
        let stored = run(&m, Some(40));
        assert_eq!(stored.len(), 2);
        assert!(diff(&stored, run(&m, Some(40)), 8).is_empty(), "nothing changed");
        // A late transfer back to the ICU at 20 h joins the two stays.
        let late = [mv(0, 1, "MICU"), mv(1, 2, "WARD"), mv(20, 9, "MICU"), mv(30, 3, "MICU")];
        let rows = diff(&stored, run(&late, Some(40)), 8);
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .any(|r| r.is_deleted && r.icu_stay_id == "V1/e3" && r.version == 8));
        assert!(rows
            .iter()
            .any(|r| !r.is_deleted && r.icu_stay_id == "V1/e1" && r.outtime_ms == Some(40 * H)));
    }
}
