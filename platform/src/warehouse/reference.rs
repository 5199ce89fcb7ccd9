//! SCD type 1 dimensions: `dim_location`, `dim_drug`, `dim_payer`.
//!
//! Rule for all three: a row from reference data beats an inferred row (a code seen in
//! a fact before any reference named it); among reference rows the latest by
//! occurred_at wins, ties broken by staging position; an inferred row never replaces
//! an existing row. The rule depends only on the rows, not on arrival order.
//!
//! Owns: these tables and the SCD1 rule. Must not: decode events.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use super::keys::location_key;
use super::{fetch_by_keys, insert_rows, Version};
use crate::error::Result;

pub const LOCATION_TABLE: &str = "dim_location";
pub const DRUG_TABLE: &str = "dim_drug";
pub const PAYER_TABLE: &str = "dim_payer";

/// Where a reference or inferred row came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub at_ms: i64,
    pub position: u64,
    pub source_system: String,
    pub event_id: String,
}

/// The SCD1 precedence of a row: higher wins.
fn rank(is_inferred: bool, at_ms: i64, position: u64) -> (bool, i64, u64) {
    if is_inferred {
        (false, i64::MIN, 0)
    } else {
        (true, at_ms, position)
    }
}

/// A row of `dim_drug`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DimDrug {
    pub drug_code: String,
    pub code_system: String,
    pub name: String,
    pub drug_class: String,
    pub form: String,
    pub strength: String,
    pub is_inferred: bool,
    pub ref_at_ms: i64,
    pub ref_position: u64,
    pub source_system: String,
    pub source_event_id: String,
    pub version: Version,
}

/// A row of `dim_payer`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DimPayer {
    pub payer_code: String,
    pub name: String,
    pub payer_type: String,
    pub is_inferred: bool,
    pub ref_at_ms: i64,
    pub ref_position: u64,
    pub source_system: String,
    pub source_event_id: String,
    pub version: Version,
}

/// A row of an SCD1 dimension keyed by one code.
pub trait Scd1Row: Clone + PartialEq {
    fn code(&self) -> &str;
    fn rank(&self) -> (bool, i64, u64);
    fn with_version(self, version: Version) -> Self;
}

impl Scd1Row for DimDrug {
    fn code(&self) -> &str {
        &self.drug_code
    }
    fn rank(&self) -> (bool, i64, u64) {
        rank(self.is_inferred, self.ref_at_ms, self.ref_position)
    }
    fn with_version(self, version: Version) -> Self {
        Self { version, ..self }
    }
}

impl Scd1Row for DimPayer {
    fn code(&self) -> &str {
        &self.payer_code
    }
    fn rank(&self) -> (bool, i64, u64) {
        rank(self.is_inferred, self.ref_at_ms, self.ref_position)
    }
    fn with_version(self, version: Version) -> Self {
        Self { version, ..self }
    }
}

/// Applies `candidates` (in staging order) to the `stored` rows of their codes; returns
/// the rows to write: winners that differ from what is stored, with `version`.
pub fn scd1_merge<T: Scd1Row>(stored: Vec<T>, candidates: Vec<T>, version: Version) -> Vec<T> {
    let before: BTreeMap<String, T> = stored.into_iter().map(|r| (r.code().to_string(), r)).collect();
    let mut after = before.clone();
    for c in candidates {
        match after.get(c.code()) {
            Some(current) if c.rank() <= current.rank() => {}
            _ => {
                after.insert(c.code().to_string(), c);
            }
        }
    }
    after
        .into_iter()
        .filter(|(code, row)| before.get(code).is_none_or(|b| !same_ignoring_version(b, row)))
        .map(|(_, row)| row.with_version(version))
        .collect()
}

fn same_ignoring_version<T: Scd1Row>(a: &T, b: &T) -> bool {
    a.clone().with_version(0) == b.clone().with_version(0)
}

pub async fn drugs_of(client: &Client, codes: &[String]) -> Result<Vec<DimDrug>> {
    fetch_by_keys(client, "SELECT ?fields FROM dim_drug FINAL WHERE drug_code IN ?", codes).await
}

pub async fn payers_of(client: &Client, codes: &[String]) -> Result<Vec<DimPayer>> {
    fetch_by_keys(
        client,
        "SELECT ?fields FROM dim_payer FINAL WHERE payer_code IN ?",
        codes,
    )
    .await
}

pub async fn write_drugs(client: &Client, rows: &[DimDrug]) -> Result<u64> {
    insert_rows(client, DRUG_TABLE, rows).await
}

pub async fn write_payers(client: &Client, rows: &[DimPayer]) -> Result<u64> {
    insert_rows(client, PAYER_TABLE, rows).await
}

/// A row of `dim_location`: a department (ward and bed codes empty), a ward (bed code
/// empty) or a bed.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DimLocation {
    pub location_key: u64,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    /// "department", "ward" or "bed".
    pub level: String,
    pub department_name: String,
    pub ward_name: String,
    /// Beds of a ward, from its reference row (0 on other levels).
    pub bed_count: u32,
    /// No reference Ward event has named this location yet.
    pub is_inferred: bool,
    /// For a ward: the reference Ward event that named it (or the event that first
    /// mentioned it, while inferred). For a department or bed: the event that first
    /// mentioned it.
    pub ref_at_ms: i64,
    pub ref_position: u64,
    pub source_system: String,
    pub source_event_id: String,
    pub version: Version,
}

/// Department, ward and bed codes of a location.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocationCodes {
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
}

impl LocationCodes {
    pub fn new(department_code: &str, ward_code: &str, bed_code: &str) -> Self {
        Self {
            department_code: department_code.to_string(),
            ward_code: ward_code.to_string(),
            bed_code: bed_code.to_string(),
        }
    }

    pub fn key(&self) -> u64 {
        location_key(&self.department_code, &self.ward_code, &self.bed_code)
    }

    pub fn is_empty(&self) -> bool {
        self.department_code.is_empty() && self.ward_code.is_empty() && self.bed_code.is_empty()
    }

    fn level(&self) -> &'static str {
        if !self.bed_code.is_empty() {
            "bed"
        } else if !self.ward_code.is_empty() {
            "ward"
        } else {
            "department"
        }
    }

    /// This location and the levels above it.
    fn with_ancestors(&self) -> Vec<LocationCodes> {
        let mut out = vec![self.clone()];
        if !self.bed_code.is_empty() {
            out.push(Self::new(&self.department_code, &self.ward_code, ""));
        }
        if !self.ward_code.is_empty() {
            out.push(Self::new(&self.department_code, "", ""));
        }
        out
    }
}

impl DimLocation {
    fn codes(&self) -> LocationCodes {
        LocationCodes::new(&self.department_code, &self.ward_code, &self.bed_code)
    }

    fn inferred(codes: &LocationCodes, seen: &Provenance) -> Self {
        Self {
            location_key: codes.key(),
            department_code: codes.department_code.clone(),
            ward_code: codes.ward_code.clone(),
            bed_code: codes.bed_code.clone(),
            level: codes.level().to_string(),
            department_name: String::new(),
            ward_name: String::new(),
            bed_count: 0,
            is_inferred: true,
            ref_at_ms: seen.at_ms,
            ref_position: seen.position,
            source_system: seen.source_system.clone(),
            source_event_id: seen.event_id.clone(),
            version: 0,
        }
    }
}

/// A reference Ward event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WardRef {
    pub department_code: String,
    pub department_name: String,
    pub ward_code: String,
    pub ward_name: String,
    pub bed_count: u32,
    pub from: Provenance,
}

/// Applies Ward references and locations seen in events (both in staging order) to the
/// `stored` rows of every affected department, and returns the rows to write.
///
/// Every seen location gets a row, and so do the ward and department above it. A ward
/// takes its name and bed count from its latest Ward reference; a department takes its
/// name from the latest Ward reference of any of its wards; a bed takes both names from
/// its ward. `stored` must hold every row of the affected departments
/// ([`affected_departments`]), or names do not reach all their beds.
pub fn merge_locations(
    stored: Vec<DimLocation>,
    ward_refs: &[WardRef],
    seen: &[(LocationCodes, Provenance)],
    version: Version,
) -> Vec<DimLocation> {
    let before: BTreeMap<LocationCodes, DimLocation> = stored.into_iter().map(|r| (r.codes(), r)).collect();
    let mut rows = before.clone();

    for w in ward_refs {
        let codes = LocationCodes::new(&w.department_code, &w.ward_code, "");
        for c in codes.with_ancestors().into_iter().rev() {
            rows.entry(c.clone())
                .or_insert_with(|| DimLocation::inferred(&c, &w.from));
        }
        let ward = rows.get_mut(&codes).expect("inserted above");
        if rank(false, w.from.at_ms, w.from.position) > rank(ward.is_inferred, ward.ref_at_ms, ward.ref_position) {
            ward.department_name = w.department_name.clone();
            ward.ward_name = w.ward_name.clone();
            ward.bed_count = w.bed_count;
            ward.is_inferred = false;
            ward.ref_at_ms = w.from.at_ms;
            ward.ref_position = w.from.position;
            ward.source_system = w.from.source_system.clone();
            ward.source_event_id = w.from.event_id.clone();
        }
    }
    for (codes, from) in seen {
        for c in codes.with_ancestors().into_iter().rev() {
            rows.entry(c.clone()).or_insert_with(|| DimLocation::inferred(&c, from));
        }
    }

    // Names flow down from the ward rows that a reference named.
    let named_wards: BTreeMap<(String, String), DimLocation> = rows
        .values()
        .filter(|r| r.level == "ward" && !r.is_inferred)
        .map(|r| ((r.department_code.clone(), r.ward_code.clone()), r.clone()))
        .collect();
    let mut department_names: BTreeMap<String, ((bool, i64, u64), String)> = BTreeMap::new();
    for w in named_wards.values() {
        let r = rank(false, w.ref_at_ms, w.ref_position);
        let entry = department_names
            .entry(w.department_code.clone())
            .or_insert((r, w.department_name.clone()));
        if r > entry.0 {
            *entry = (r, w.department_name.clone());
        }
    }
    for row in rows.values_mut() {
        let ward = named_wards.get(&(row.department_code.clone(), row.ward_code.clone()));
        match row.level.as_str() {
            "bed" => {
                row.ward_name = ward.map(|w| w.ward_name.clone()).unwrap_or_default();
                row.department_name = department_names
                    .get(&row.department_code)
                    .map(|d| d.1.clone())
                    .unwrap_or_default();
                row.is_inferred = ward.is_none();
            }
            "department" => {
                row.department_name = department_names
                    .get(&row.department_code)
                    .map(|d| d.1.clone())
                    .unwrap_or_default();
                row.is_inferred = !department_names.contains_key(&row.department_code);
            }
            _ => {
                if let Some(d) = department_names.get(&row.department_code) {
                    row.department_name = d.1.clone();
                }
            }
        }
    }

    rows.into_iter()
        .filter(|(codes, row)| {
            before.get(codes).is_none_or(|b| {
                DimLocation {
                    version: 0,
                    ..b.clone()
                } != DimLocation {
                    version: 0,
                    ..row.clone()
                }
            })
        })
        .map(|(_, row)| DimLocation { version, ..row })
        .collect()
}

/// Departments whose rows a load of these references and sightings may change.
pub fn affected_departments(ward_refs: &[WardRef], seen: &[(LocationCodes, Provenance)]) -> Vec<String> {
    let set: BTreeSet<String> = ward_refs
        .iter()
        .map(|w| w.department_code.clone())
        .chain(seen.iter().map(|(c, _)| c.department_code.clone()))
        .collect();
    set.into_iter().collect()
}

pub async fn locations_of_departments(client: &Client, departments: &[String]) -> Result<Vec<DimLocation>> {
    fetch_by_keys(
        client,
        "SELECT ?fields FROM dim_location FINAL WHERE department_code IN ?",
        departments,
    )
    .await
}

pub async fn write_locations(client: &Client, rows: &[DimLocation]) -> Result<u64> {
    insert_rows(client, LOCATION_TABLE, rows).await
}

/// The codes of a location as sent (an absent location has empty codes).
pub fn codes(l: Option<&hospital_proto::events::Location>) -> LocationCodes {
    l.map(|l| LocationCodes::new(&l.department_code, &l.ward_code, &l.bed_code))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(at_ms: i64, position: u64) -> Provenance {
        Provenance {
            at_ms,
            position,
            source_system: "ref".into(),
            event_id: format!("e{position}"),
        }
    }

    fn drug(code: &str, name: &str, inferred: bool, at: i64, pos: u64) -> DimDrug {
        DimDrug {
            drug_code: code.into(),
            code_system: "rxnorm".into(),
            name: name.into(),
            drug_class: String::new(),
            form: String::new(),
            strength: String::new(),
            is_inferred: inferred,
            ref_at_ms: at,
            ref_position: pos,
            source_system: "ref".into(),
            source_event_id: format!("e{pos}"),
            version: 1,
        }
    }

    #[test]
    fn latest_reference_wins_and_inferred_never_overrides() {
        // A newer reference staged before an older one: the newer stays.
        let out = scd1_merge(
            vec![],
            vec![drug("D1", "new", false, 200, 1), drug("D1", "old", false, 100, 2)],
            5,
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].name.as_str(), out[0].version), ("new", 5));
        // Inferred after a reference: nothing to write.
        assert!(scd1_merge(out.clone(), vec![drug("D1", "from order", true, 300, 3)], 6).is_empty());
        // Reference after inferred: replaces it, even if it happened earlier.
        let inferred = vec![drug("D2", "from order", true, 300, 3)];
        let out2 = scd1_merge(inferred, vec![drug("D2", "Paracetamol", false, 10, 9)], 7);
        assert_eq!((out2[0].name.as_str(), out2[0].is_inferred), ("Paracetamol", false));
        // Same timestamp: the later staging position wins; replays change nothing.
        let tie = scd1_merge(
            vec![],
            vec![drug("D3", "b", false, 1, 8), drug("D3", "a", false, 1, 4)],
            1,
        );
        assert_eq!(tie[0].name, "b");
        assert!(scd1_merge(tie.clone(), vec![drug("D3", "a", false, 1, 4)], 2).is_empty());
    }

    #[test]
    fn ward_names_reach_beds_seen_before_and_after() {
        let bed = LocationCodes::new("MED", "W1", "B1");
        let first = merge_locations(vec![], &[], &[(bed.clone(), from(10, 1))], 1);
        assert_eq!(first.len(), 3, "bed, ward and department rows");
        assert!(first.iter().all(|r| r.is_inferred && r.ward_name.is_empty()));

        let w = WardRef {
            department_code: "MED".into(),
            department_name: "Medicine".into(),
            ward_code: "W1".into(),
            ward_name: "Ward One".into(),
            bed_count: 12,
            from: from(5, 2),
        };
        let bed2 = LocationCodes::new("MED", "W1", "B2");
        let second = merge_locations(first.clone(), std::slice::from_ref(&w), &[(bed2, from(20, 3))], 2);
        assert_eq!(second.len(), 4, "all three rows renamed plus the new bed");
        assert!(second
            .iter()
            .all(|r| !r.is_inferred && r.department_name == "Medicine" && r.version == 2));
        let ward = second.iter().find(|r| r.level == "ward").unwrap();
        assert_eq!(
            (ward.ward_name.as_str(), ward.bed_count, ward.source_event_id.as_str()),
            ("Ward One", 12, "e2")
        );
        for b in second.iter().filter(|r| r.level == "bed") {
            assert_eq!(b.ward_name, "Ward One");
        }

        // Replaying the same input against the result writes nothing; an older Ward
        // event does not override the newer name.
        let mut stored: BTreeMap<LocationCodes, DimLocation> = first.into_iter().map(|r| (r.codes(), r)).collect();
        for r in second {
            stored.insert(r.codes(), r);
        }
        let stored: Vec<_> = stored.into_values().collect();
        assert!(merge_locations(
            stored.clone(),
            std::slice::from_ref(&w),
            &[(bed.clone(), from(10, 1))],
            3
        )
        .is_empty());
        let older = WardRef {
            ward_name: "Old name".into(),
            from: from(1, 9),
            ..w
        };
        assert!(merge_locations(stored, &[older], &[], 4).is_empty());
    }
}
