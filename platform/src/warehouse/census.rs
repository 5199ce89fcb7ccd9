//! Reads of the warehouse for the real-time census, and the small current-state table
//! that keeps them cheap: wards from `dim_location`, each bed's latest state from
//! `bed_status_current` (kept here by the load, one row per bed), and in one pass over
//! `fact_encounter` the open encounters and the recent discharges, with their patients
//! from `patient_identity`. What a start-up reads grows with the hospital (beds, wards,
//! open and recently discharged encounters), not with the events loaded, except for the
//! one pass over `fact_encounter` (one row per encounter ever).
//!
//! Owns: the SQL of these reads, plain rows out, and `bed_status_current`. Must not:
//! decide who occupies what (the real-time census does, with these rows).

use std::collections::{BTreeMap, HashMap};

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::encounter::{AdmissionInfo, EdArrivalInfo, EncounterState, Stamp};
use super::facts::FactBedStatus;
use super::reference::LocationCodes;
use super::{fetch_by_keys, insert_rows, Version};
use crate::error::Result;

/// The current state of every bed (`migrations/warehouse/0006_bed_status_current.sql`).
pub const BED_CURRENT_TABLE: &str = "bed_status_current";

/// A ward's reference data, as the latest Ward event left it.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct WardRow {
    pub department_code: String,
    pub ward_code: String,
    pub department_name: String,
    pub ward_name: String,
    pub bed_count: u32,
    pub ref_at_ms: i64,
    pub ref_position: u64,
}

/// Every ward with reference data (inferred wards, seen only in events, are left out).
pub async fn wards(warehouse: &Client) -> Result<Vec<WardRow>> {
    Ok(warehouse
        .query(
            "SELECT department_code, ward_code, department_name, ward_name, bed_count, ref_at_ms, \
             ref_position FROM dim_location FINAL WHERE level = 'ward' AND is_inferred = 0",
        )
        .fetch_all()
        .await?)
}

/// The latest state of one bed: the `fact_bed_status` row with the highest
/// (occurred_at_ms, source_position) of that bed.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct BedRow {
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    /// "available", "occupied", "cleaning", "blocked", "closed".
    pub state: String,
    pub occurred_at_ms: i64,
    pub source_position: u64,
    pub version: Version,
}

impl BedRow {
    fn stamp(&self) -> (i64, u64) {
        (self.occurred_at_ms, self.source_position)
    }

    fn key(&self) -> (String, String, String) {
        (
            self.department_code.clone(),
            self.ward_code.clone(),
            self.bed_code.clone(),
        )
    }
}

// Aliases differ from column names: 18.16 substitutes an alias into every other use of
// its name. argMax over a tuple works on 18.16 and current releases. No FINAL: the
// latest by (occurred_at, position) is the same whichever versions are not merged yet.
const LATEST_BEDS: &str = "SELECT department_code, ward_code, bed_code, \
     argMax(state, (occurred_at_ms, source_position)) AS last_state, \
     max(occurred_at_ms) AS last_at, \
     argMax(source_position, (occurred_at_ms, source_position)) AS last_position, \
     max(version) AS last_version \
     FROM bed_status_current";

/// The latest state of every bed with a ward and bed code.
pub async fn current_beds(warehouse: &Client) -> Result<Vec<BedRow>> {
    Ok(warehouse
        .query(&format!("{LATEST_BEDS} GROUP BY department_code, ward_code, bed_code"))
        .fetch_all()
        .await?)
}

/// The beds of `facts` whose latest state they change, merged with the stored states:
/// for each bed the fact with the highest (occurred_at, position), written with
/// `version` when it beats the stored row (or there is none). Facts without a ward or
/// bed code are left out.
pub fn merge_beds(stored: &[BedRow], facts: &[FactBedStatus], version: Version) -> Vec<BedRow> {
    let mut latest: BTreeMap<(String, String, String), BedRow> = BTreeMap::new();
    for f in facts
        .iter()
        .filter(|f| !f.is_deleted && !f.ward_code.is_empty() && !f.bed_code.is_empty())
    {
        let row = BedRow {
            department_code: f.department_code.clone(),
            ward_code: f.ward_code.clone(),
            bed_code: f.bed_code.clone(),
            state: f.state.clone(),
            occurred_at_ms: f.occurred_at_ms,
            source_position: f.source_position,
            version,
        };
        match latest.get(&row.key()) {
            Some(current) if current.stamp() >= row.stamp() => {}
            _ => {
                latest.insert(row.key(), row);
            }
        }
    }
    let stored: HashMap<(String, String, String), (i64, u64)> = stored.iter().map(|b| (b.key(), b.stamp())).collect();
    latest
        .into_values()
        .filter(|b| stored.get(&b.key()).is_none_or(|s| b.stamp() > *s))
        .collect()
}

/// Keeps `bed_status_current` up to date with a chunk's bed-status facts (written just
/// before): reads the stored states of those beds and writes the ones the chunk beats.
/// Idempotent: a redone chunk beats nothing it wrote before. Returns rows written.
pub async fn write_current_beds(warehouse: &Client, facts: &[FactBedStatus]) -> Result<u64> {
    let Some(version) = facts.iter().map(|f| f.version).max() else {
        return Ok(0);
    };
    let mut keys: Vec<(String, String, String)> = facts
        .iter()
        .map(|f| (f.department_code.clone(), f.ward_code.clone(), f.bed_code.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let stored: Vec<BedRow> = fetch_by_keys(
        warehouse,
        &format!(
            "{LATEST_BEDS} WHERE (department_code, ward_code, bed_code) IN ? \
             GROUP BY department_code, ward_code, bed_code"
        ),
        &keys,
    )
    .await?;
    insert_rows(warehouse, BED_CURRENT_TABLE, &merge_beds(&stored, facts, version)).await
}

/// An encounter as the census needs it: its milestones, each with when it happened and
/// the staging position of its event.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct CensusEncounterRow {
    pub encounter_id: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub patient_position: u64,
    pub admitted_at_ms: Option<i64>,
    pub admission_position: u64,
    pub admission_department_code: String,
    pub discharged_at_ms: Option<i64>,
    pub ed_arrival_at_ms: Option<i64>,
    pub ed_arrival_position: u64,
    pub ed_department_code: String,
    pub ed_triage_at_ms: Option<i64>,
    pub ed_triage_position: u64,
    pub acuity: Option<u8>,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    pub location_at_ms: Option<i64>,
    pub location_position: u64,
}

impl CensusEncounterRow {
    /// The encounter's merge state as far as the row holds it (the census's part: the
    /// milestones' times, positions and departments, the current location), to go on
    /// merging live events into with [`EncounterState::apply`].
    pub fn to_state(&self) -> EncounterState {
        let stamp = |at: Option<i64>, position: u64| {
            at.map(|at_ms| Stamp {
                at_ms,
                position,
                event_id: String::new(),
            })
        };
        EncounterState {
            encounter_id: self.encounter_id.clone(),
            patient: Some((self.patient_position, self.patient_key)),
            admission: stamp(self.admitted_at_ms, self.admission_position).map(|s| {
                (
                    s,
                    AdmissionInfo {
                        location: LocationCodes::new(&self.admission_department_code, "", ""),
                        ..AdmissionInfo::default()
                    },
                )
            }),
            discharge: None,
            ed_arrival: stamp(self.ed_arrival_at_ms, self.ed_arrival_position).map(|s| {
                (
                    s,
                    EdArrivalInfo {
                        department_code: self.ed_department_code.clone(),
                        ..EdArrivalInfo::default()
                    },
                )
            }),
            ed_triage: stamp(self.ed_triage_at_ms, self.ed_triage_position).map(|s| (s, self.acuity)),
            location: stamp(self.location_at_ms, self.location_position).map(|s| {
                (
                    s,
                    LocationCodes::new(&self.department_code, &self.ward_code, &self.bed_code),
                )
            }),
            transfers: Default::default(),
        }
    }
}

/// In one pass over `fact_encounter`: every open encounter (no discharge), and every
/// encounter discharged at most `retention_ms` before the newest discharge.
///
/// The newest discharge comes from a scan of the one column without FINAL: an
/// encounter's discharge only moves later (the latest wins) and encounters are never
/// deleted, so the maximum over every stored version is the maximum over the current ones.
pub async fn open_and_recently_discharged(warehouse: &Client, retention_ms: i64) -> Result<Vec<CensusEncounterRow>> {
    Ok(warehouse
        .query(
            "SELECT ?fields FROM fact_encounter FINAL WHERE is_deleted = 0 AND (discharged_at_ms IS NULL \
             OR discharged_at_ms >= (SELECT max(discharged_at_ms) FROM fact_encounter) - ?)",
        )
        .bind(retention_ms)
        .fetch_all()
        .await?)
}

/// (assigning authority, MRN) of each of `patient_keys` found in `patient_identity`.
pub async fn identities(warehouse: &Client, patient_keys: &[Uuid]) -> Result<HashMap<Uuid, (String, String)>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Identity {
        #[serde(with = "clickhouse::serde::uuid")]
        patient_key: Uuid,
        assigning_authority: String,
        mrn: String,
    }
    // `patient_key IN` (not toString(patient_key)) so that the key's index is used.
    let mut keys: Vec<String> = patient_keys.iter().map(Uuid::to_string).collect();
    keys.sort();
    keys.dedup();
    Ok(fetch_by_keys::<_, Identity>(
        warehouse,
        "SELECT patient_key, assigning_authority, mrn FROM patient_identity FINAL WHERE patient_key IN ?",
        &keys,
    )
    .await?
    .into_iter()
    .map(|i| (i.patient_key, (i.assigning_authority, i.mrn)))
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(bed: &str, state: &str, at: i64, position: u64) -> FactBedStatus {
        FactBedStatus {
            date_key: 20240101,
            source_system: "bms".into(),
            source_event_id: format!("b{position}"),
            source_position: position,
            location_key: 0,
            department_code: "MED".into(),
            ward_code: "W1".into(),
            bed_code: bed.into(),
            state: state.into(),
            occurred_at_ms: at,
            is_deleted: false,
            version: 9,
        }
    }

    fn stored(bed: &str, state: &str, at: i64, position: u64) -> BedRow {
        BedRow {
            department_code: "MED".into(),
            ward_code: "W1".into(),
            bed_code: bed.into(),
            state: state.into(),
            occurred_at_ms: at,
            source_position: position,
            version: 1,
        }
    }

    #[test]
    fn the_latest_by_time_then_position_wins_and_only_changes_are_written() {
        let facts = [
            fact("B1", "cleaning", 100, 20),
            fact("B1", "available", 90, 21),
            fact("B2", "blocked", 50, 22),
            fact("B2", "closed", 50, 23),
            fact("B3", "available", 10, 24),
            fact("", "closed", 10, 25),
        ];
        let rows = merge_beds(
            &[stored("B1", "occupied", 80, 5), stored("B3", "blocked", 11, 1)],
            &facts,
            9,
        );
        let got: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.bed_code.as_str(), r.state.as_str(), r.version))
            .collect();
        // B1: the later event, not the last staged; B2: the tie goes to the later position;
        // B3: an event older than the stored state changes nothing.
        assert_eq!(got, vec![("B1", "cleaning", 9), ("B2", "closed", 9)]);
        // A redone chunk beats nothing it wrote.
        assert!(merge_beds(&rows, &facts[..4], 10).is_empty());
    }
}
