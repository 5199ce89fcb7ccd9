//! Patients: the demographic event log (`patient_demographic_events`), the identity map
//! (`patient_identity`) and the SCD type 2 dimension `dim_patient`.
//!
//! A patient's history is always rebuilt whole from their demographic events, in
//! occurred_at order (ties: staging position), so a late-arriving update lands where it
//! belongs; consecutive versions with identical attributes collapse into the earlier
//! one; the result is compared with the stored versions and only the difference is
//! written (new or changed versions, tombstones for versions that vanished).
//!
//! Owns: these tables and the history rules. Must not: decode events or decide which
//! patients a load touches.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{fetch_by_keys, insert_rows, Version, BEGINNING_OF_TIME_MS, END_OF_TIME_MS};
use crate::error::Result;

pub const DEMOGRAPHICS_TABLE: &str = "patient_demographic_events";
pub const IDENTITY_TABLE: &str = "patient_identity";
pub const DIM_TABLE: &str = "dim_patient";

/// One patient_registered / patient_updated event, as the input of history rebuilds.
/// An update is a full snapshot of the patient (FHIR update and HL7 A08 semantics).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DemographicEvent {
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    pub kind: String,
    pub occurred_at_ms: i64,
    pub given_name: String,
    pub family_name: String,
    /// ISO 8601 date, empty when unknown.
    pub birth_date: String,
    pub sex: String,
    pub postal_code: String,
    pub deceased_at_ms: Option<i64>,
    pub version: Version,
}

/// The attributes an SCD2 version tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demographics {
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub sex: String,
    pub postal_code: String,
    pub deceased_at_ms: Option<i64>,
}

impl DemographicEvent {
    fn attributes(&self) -> Demographics {
        Demographics {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            birth_date: self.birth_date.clone(),
            sex: self.sex.clone(),
            postal_code: self.postal_code.clone(),
            deceased_at_ms: self.deceased_at_ms,
        }
    }
}

/// Pseudonymous key -> identifiers; the first staged reference wins.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct PatientIdentity {
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub assigning_authority: String,
    pub mrn: String,
    pub first_position: u64,
    /// `u64::MAX - first_position`, so merges keep the first reference.
    pub keep_rank: u64,
}

impl PatientIdentity {
    pub fn new(patient_key: Uuid, assigning_authority: &str, mrn: &str, position: u64) -> Self {
        Self {
            patient_key,
            assigning_authority: assigning_authority.to_string(),
            mrn: mrn.to_string(),
            first_position: position,
            keep_rank: u64::MAX - position,
        }
    }
}

/// One version of a patient (a row of `dim_patient`).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DimPatient {
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub valid_from_ms: i64,
    pub valid_to_ms: i64,
    pub is_current: bool,
    pub is_inferred: bool,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: String,
    pub sex: String,
    pub postal_code: String,
    pub deceased_at_ms: Option<i64>,
    /// When the event that began this version happened.
    pub effective_at_ms: i64,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    pub is_deleted: bool,
    pub version: Version,
}

/// The event that first referred to a patient (for inferred members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub source_system: String,
    pub event_id: String,
    pub position: u64,
    pub occurred_at_ms: i64,
}

impl DimPatient {
    /// Kimball's inferred member: a patient seen in other events but never registered.
    /// It is the first version (valid from the beginning of time), so the first real
    /// version replaces it in place.
    pub fn inferred(patient_key: Uuid, seen_in: &SourceRef, version: Version) -> Self {
        Self {
            patient_key,
            valid_from_ms: BEGINNING_OF_TIME_MS,
            valid_to_ms: END_OF_TIME_MS,
            is_current: true,
            is_inferred: true,
            given_name: String::new(),
            family_name: String::new(),
            birth_date: String::new(),
            sex: "unknown".to_string(),
            postal_code: String::new(),
            deceased_at_ms: None,
            effective_at_ms: seen_in.occurred_at_ms,
            source_system: seen_in.source_system.clone(),
            source_event_id: seen_in.event_id.clone(),
            source_position: seen_in.position,
            is_deleted: false,
            version,
        }
    }

    fn same_content(&self, other: &Self) -> bool {
        Self {
            version: 0,
            ..self.clone()
        } == Self {
            version: 0,
            ..other.clone()
        }
    }
}

/// Rebuilds a patient's full SCD2 history from all their demographic events (in any
/// order; duplicates by source event are ignored). Events are ordered by occurred_at,
/// ties by staging position; a version starts at each event whose attributes differ from
/// the previous version's. The first version is valid from the beginning of time. No
/// events give no versions.
pub fn rebuild_history(events: &[DemographicEvent], version: Version) -> Vec<DimPatient> {
    let mut sorted: Vec<&DemographicEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.occurred_at_ms, e.source_position));
    sorted.dedup_by(|a, b| a.source_system == b.source_system && a.source_event_id == b.source_event_id);

    let mut versions: Vec<DimPatient> = Vec::new();
    let mut last: Option<Demographics> = None;
    for e in sorted {
        let attrs = e.attributes();
        if last.as_ref() == Some(&attrs) {
            continue;
        }
        let valid_from_ms = if versions.is_empty() {
            BEGINNING_OF_TIME_MS
        } else {
            e.occurred_at_ms
        };
        if let Some(prev) = versions.last_mut() {
            prev.valid_to_ms = valid_from_ms;
            prev.is_current = false;
        }
        versions.push(DimPatient {
            patient_key: e.patient_key,
            valid_from_ms,
            valid_to_ms: END_OF_TIME_MS,
            is_current: true,
            is_inferred: false,
            given_name: attrs.given_name.clone(),
            family_name: attrs.family_name.clone(),
            birth_date: attrs.birth_date.clone(),
            sex: attrs.sex.clone(),
            postal_code: attrs.postal_code.clone(),
            deceased_at_ms: attrs.deceased_at_ms,
            effective_at_ms: e.occurred_at_ms,
            source_system: e.source_system.clone(),
            source_event_id: e.source_event_id.clone(),
            source_position: e.source_position,
            is_deleted: false,
            version,
        });
        last = Some(attrs);
    }
    versions
}

/// The rows to write so that the stored live versions of one patient (`stored`, no
/// tombstones) become `rebuilt`: new or changed versions, and a tombstone for every
/// stored version whose `valid_from_ms` is not in `rebuilt`. Empty when nothing changed.
pub fn history_diff(stored: &[DimPatient], rebuilt: &[DimPatient], version: Version) -> Vec<DimPatient> {
    let by_start: HashMap<i64, &DimPatient> = stored.iter().map(|v| (v.valid_from_ms, v)).collect();
    let mut out: Vec<DimPatient> = rebuilt
        .iter()
        .filter(|v| by_start.get(&v.valid_from_ms).is_none_or(|s| !s.same_content(v)))
        .map(|v| DimPatient { version, ..v.clone() })
        .collect();
    for s in stored {
        if !rebuilt.iter().any(|v| v.valid_from_ms == s.valid_from_ms) {
            out.push(DimPatient {
                is_deleted: true,
                is_current: false,
                version,
                ..s.clone()
            });
        }
    }
    out
}

pub async fn write_demographics(client: &Client, events: &[DemographicEvent]) -> Result<u64> {
    insert_rows(client, DEMOGRAPHICS_TABLE, events).await
}

pub async fn write_identities(client: &Client, identities: &[PatientIdentity]) -> Result<u64> {
    insert_rows(client, IDENTITY_TABLE, identities).await
}

pub async fn write_versions(client: &Client, versions: &[DimPatient]) -> Result<u64> {
    insert_rows(client, DIM_TABLE, versions).await
}

fn key_strings(keys: &[Uuid]) -> Vec<String> {
    keys.iter().map(Uuid::to_string).collect()
}

/// Every demographic event of `patients`, grouped by patient.
pub async fn demographics_of(client: &Client, patients: &[Uuid]) -> Result<BTreeMap<Uuid, Vec<DemographicEvent>>> {
    let rows: Vec<DemographicEvent> = fetch_by_keys(
        client,
        "SELECT ?fields FROM patient_demographic_events FINAL WHERE patient_key IN ?",
        &key_strings(patients),
    )
    .await?;
    let mut out: BTreeMap<Uuid, Vec<DemographicEvent>> = BTreeMap::new();
    for r in rows {
        out.entry(r.patient_key).or_default().push(r);
    }
    Ok(out)
}

/// The live (not deleted) stored versions of `patients`, grouped by patient.
pub async fn versions_of(client: &Client, patients: &[Uuid]) -> Result<BTreeMap<Uuid, Vec<DimPatient>>> {
    let rows: Vec<DimPatient> = fetch_by_keys(
        client,
        "SELECT ?fields FROM dim_patient FINAL WHERE patient_key IN ? AND is_deleted = 0",
        &key_strings(patients),
    )
    .await?;
    let mut out: BTreeMap<Uuid, Vec<DimPatient>> = BTreeMap::new();
    for r in rows {
        out.entry(r.patient_key).or_default().push(r);
    }
    Ok(out)
}

#[derive(clickhouse::Row, Deserialize)]
struct KeyRow {
    #[serde(with = "clickhouse::serde::uuid")]
    patient_key: Uuid,
}

/// Which of `patients` have a live first version (registered or inferred).
pub async fn existing_members(client: &Client, patients: &[Uuid]) -> Result<Vec<Uuid>> {
    let sql = format!(
        "SELECT patient_key FROM dim_patient FINAL \
         WHERE patient_key IN ? AND valid_from_ms = {BEGINNING_OF_TIME_MS} AND is_deleted = 0"
    );
    let rows: Vec<KeyRow> = fetch_by_keys(client, &sql, &key_strings(patients)).await?;
    Ok(rows.into_iter().map(|r| r.patient_key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Uuid {
        super::super::keys::patient_key("hosp", "42")
    }

    fn ev(id: &str, position: u64, at: i64, family: &str, postal: &str) -> DemographicEvent {
        DemographicEvent {
            patient_key: key(),
            source_system: "adt".into(),
            source_event_id: id.into(),
            source_position: position,
            kind: "patient_updated".into(),
            occurred_at_ms: at,
            given_name: "Ada".into(),
            family_name: family.into(),
            birth_date: "1950-02-01".into(),
            sex: "female".into(),
            postal_code: postal.into(),
            deceased_at_ms: None,
            version: 1,
        }
    }

    fn spans(h: &[DimPatient]) -> Vec<(i64, i64, bool, &str, &str)> {
        h.iter()
            .map(|v| {
                (
                    v.valid_from_ms,
                    v.valid_to_ms,
                    v.is_current,
                    v.family_name.as_str(),
                    v.source_event_id.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn history_follows_occurred_at_not_arrival() {
        let events = [ev("e1", 1, 100, "Lovelace", "N1"), ev("e3", 2, 300, "King", "N1")];
        let h = rebuild_history(&events, 1);
        assert_eq!(
            spans(&h),
            vec![
                (BEGINNING_OF_TIME_MS, 300, false, "Lovelace", "e1"),
                (300, END_OF_TIME_MS, true, "King", "e3")
            ]
        );
        assert_eq!(h[0].effective_at_ms, 100);

        // A late update (staged last, happened in between) lands in the middle.
        let late = [events[0].clone(), events[1].clone(), ev("e2", 9, 200, "Byron", "N1")];
        let h2 = rebuild_history(&late, 2);
        assert_eq!(
            spans(&h2),
            vec![
                (BEGINNING_OF_TIME_MS, 200, false, "Lovelace", "e1"),
                (200, 300, false, "Byron", "e2"),
                (300, END_OF_TIME_MS, true, "King", "e3")
            ]
        );
        // Arrival order of the input does not matter.
        let mut reversed = late.to_vec();
        reversed.reverse();
        assert_eq!(rebuild_history(&reversed, 2), h2);

        // Only the changed version and the new one are written.
        let diff = history_diff(&h, &h2, 2);
        assert_eq!(
            spans(&diff),
            vec![
                (BEGINNING_OF_TIME_MS, 200, false, "Lovelace", "e1"),
                (200, 300, false, "Byron", "e2")
            ]
        );
        assert!(diff.iter().all(|v| v.version == 2 && !v.is_deleted));
        assert!(history_diff(&h2, &rebuild_history(&late, 3), 3).is_empty());
    }

    #[test]
    fn identical_consecutive_versions_collapse_and_vanished_versions_are_tombstoned() {
        // Two versions: Lovelace until 300, King from 300.
        let stored = rebuild_history(&[ev("e1", 1, 100, "Lovelace", "N1"), ev("e3", 2, 300, "King", "N1")], 1);
        // A late event at 200 already says King: King now starts at 200, the version
        // that started at 300 vanishes.
        let all = [
            ev("e1", 1, 100, "Lovelace", "N1"),
            ev("e3", 2, 300, "King", "N1"),
            ev("e2", 5, 200, "King", "N1"),
        ];
        let h = rebuild_history(&all, 2);
        assert_eq!(
            spans(&h),
            vec![
                (BEGINNING_OF_TIME_MS, 200, false, "Lovelace", "e1"),
                (200, END_OF_TIME_MS, true, "King", "e2")
            ]
        );
        let diff = history_diff(&stored, &h, 2);
        let tomb: Vec<_> = diff.iter().filter(|v| v.is_deleted).collect();
        assert_eq!(tomb.len(), 1);
        assert_eq!((tomb[0].valid_from_ms, tomb[0].is_current), (300, false));
        assert_eq!(diff.len(), 3);
    }

    #[test]
    fn ties_are_broken_by_position_and_resends_ignored() {
        let a = ev("a", 7, 100, "Second", "N1");
        let b = ev("b", 3, 100, "First", "N1");
        let h = rebuild_history(&[a.clone(), b.clone(), b.clone()], 1);
        assert_eq!(
            spans(&h),
            vec![
                (BEGINNING_OF_TIME_MS, 100, false, "First", "b"),
                (100, END_OF_TIME_MS, true, "Second", "a")
            ]
        );
        let same = rebuild_history(&[ev("x", 1, 100, "Same", "N1"), ev("y", 2, 150, "Same", "N1")], 1);
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].source_event_id, "x");
    }

    #[test]
    fn registration_replaces_the_inferred_member_in_place() {
        let seen = SourceRef {
            source_system: "lab".into(),
            event_id: "v1".into(),
            position: 1,
            occurred_at_ms: 50,
        };
        let inferred = DimPatient::inferred(key(), &seen, 1);
        let h = rebuild_history(&[ev("e1", 4, 100, "Lovelace", "N1")], 2);
        let diff = history_diff(&[inferred], &h, 2);
        assert_eq!(diff.len(), 1);
        assert!(!diff[0].is_inferred && !diff[0].is_deleted);
        assert_eq!(diff[0].valid_from_ms, BEGINNING_OF_TIME_MS);
        assert!(rebuild_history(&[], 1).is_empty());
    }
}
