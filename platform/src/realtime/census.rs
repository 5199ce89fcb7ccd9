//! The live census: occupancy per ward and department and the ED waiting list, kept
//! event by event from committed canonical events and rebuilt at start-up from the
//! warehouse ([`CensusState::load`], then the staging events after its watermark). The
//! warehouse reads are [`crate::warehouse::census`]'s; this module keeps the rules.
//!
//! Owns: the bed manager's rules (who occupies which bed, which beds are blocked, who
//! waits in the ED) and the census messages. Must not: read staging, write anywhere, or
//! keep history; [`CensusState`] is plain data and does no I/O besides `load`.
//!
//! An encounter's milestones are merged by the warehouse's own encounter merge
//! ([`crate::warehouse::encounter::EncounterState`], events read by
//! [`EncounterEvent::from_payload`]), and every choice between two facts uses the
//! platform's one order ([`crate::stamp`]), so a state loaded from the warehouse and one
//! built from every event agree:
//! - an encounter's location is its latest admission (with a location) or transfer by
//!   `occurred_at`, ties by staging position: an older move never moves it back;
//! - admission and ED arrival are the earliest, triage the first (initial assessment);
//! - a discharge closes the encounter whatever the order: it leaves a tombstone so a
//!   late admission, transfer or ED event of that encounter does not reopen it;
//! - a bed's state and a ward's reference data are the latest by `occurred_at`;
//! - encounter events without a patient (MRN) or encounter id are ignored, as the
//!   warehouse load rejects them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clickhouse::Client;
use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item, BedState};
use hospital_proto::realtime::{self as rt, census_update::Update};

use crate::error::Result;
use crate::stamp::{self, Keep, Stamp};
use crate::warehouse::bookkeeping::{self, PIPELINE};
use crate::warehouse::census as warehouse_census;
use crate::warehouse::encounter::{EncounterEvent, EncounterState, Stamp as EncounterStamp};
use crate::warehouse::keys;
use crate::warehouse::reference::LocationCodes;

/// How long a discharge is remembered, measured back from the newest discharge seen.
/// Events of an encounter arriving later than this after its discharge are not expected;
/// the bound keeps the tombstones (and the start-up query) from growing forever.
pub const TOMBSTONE_RETENTION_MS: i64 = 30 * 24 * 3_600_000;

const MS_PER_MINUTE: i64 = 60_000;
/// Tombstones are pruned when their number passes this (then twice the number kept).
const MIN_PRUNE_AT: usize = 1_024;

/// Where a patient is now: the patient's open encounter and its location. For a patient
/// waiting in the ED (not yet placed), the department is the ED's and ward/bed are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientLocation {
    pub encounter_id: String,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
}

/// A patient by (assigning authority, MRN).
type PatientKey = (String, String);
/// A ward by (department code, ward code).
type WardKey = (String, String);

/// An open encounter: the warehouse's encounter merge ([`EncounterState`]: earliest
/// admission, ED arrival and triage, latest location) and the patient by MRN.
#[derive(Debug, Clone, Default)]
struct Encounter {
    /// The patient of the encounter's first staged event (lowest position).
    patient: Option<(u64, PatientKey)>,
    state: EncounterState,
}

impl Encounter {
    fn location(&self) -> Option<&(EncounterStamp, LocationCodes)> {
        self.state.location.as_ref()
    }

    /// Department of the earliest admission (empty if it had no location).
    fn admission_department(&self) -> Option<&str> {
        self.state
            .admission
            .as_ref()
            .map(|(_, a)| a.location.department_code.as_str())
    }

    /// When and at which department the patient arrived at the ED, if they did.
    fn ed_arrival(&self) -> Option<(&EncounterStamp, &str)> {
        self.state
            .ed_arrival
            .as_ref()
            .map(|(s, a)| (s, a.department_code.as_str()))
    }

    /// The ward and bed the encounter occupies.
    fn bed(&self) -> Option<(WardKey, String)> {
        let (_, l) = self.location()?;
        (!l.ward_code.is_empty()).then(|| ((l.department_code.clone(), l.ward_code.clone()), l.bed_code.clone()))
    }

    /// On the ED waiting list: arrived, not discharged (open), and neither admitted nor
    /// moved to a department other than the arrival's.
    fn waiting_in_ed(&self) -> bool {
        let Some((_, ed_department)) = self.ed_arrival() else {
            return false;
        };
        let elsewhere = |d: &str| !d.is_empty() && d != ed_department;
        let admitted_elsewhere = self.admission_department().is_some_and(elsewhere);
        let moved_elsewhere = self.location().is_some_and(|(_, l)| elsewhere(&l.department_code));
        !(admitted_elsewhere || moved_elsewhere)
    }

    /// Has a (non-empty) location and is not waiting in the ED.
    fn is_inpatient(&self) -> bool {
        self.location().is_some_and(|(_, l)| !l.is_empty()) && !self.waiting_in_ed()
    }
}

/// A ward's reference data (latest Ward event wins).
#[derive(Debug, Clone, PartialEq, Eq)]
struct WardInfo {
    from: Stamp,
    department_name: String,
    ward_name: String,
    bed_count: u32,
}

/// The latest state of one bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bed {
    from: Stamp,
    /// Cleaning, blocked or closed: not usable unless a patient is on it.
    blocking: bool,
}

fn blocking(state: BedState) -> bool {
    matches!(state, BedState::Cleaning | BedState::Blocked | BedState::Closed)
}

/// The warehouse's label of a bed state ("cleaning", ...), see `fact_bed_status`.
fn blocking_label(label: &str) -> bool {
    matches!(label, "cleaning" | "blocked" | "closed")
}

/// The live census. Plain data (`Send + Sync`); see the module docs for its rules.
#[derive(Debug, Clone, Default)]
pub struct CensusState {
    position: u64,
    encounters: HashMap<String, Encounter>,
    /// Discharged encounters -> discharge time (latest seen).
    tombstones: HashMap<String, i64>,
    newest_discharge_ms: Option<i64>,
    prune_at: usize,
    wards: BTreeMap<WardKey, WardInfo>,
    beds: BTreeMap<WardKey, BTreeMap<String, Bed>>,
    /// Encounters located on each ward -> their bed code (maybe empty).
    occupancy: BTreeMap<WardKey, BTreeMap<String, String>>,
    by_patient: HashMap<PatientKey, BTreeSet<String>>,
}

impl CensusState {
    pub fn new() -> Self {
        Self {
            prune_at: MIN_PRUNE_AT,
            ..Self::default()
        }
    }

    /// The staging position the state reflects (the highest applied, or the watermark).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The ward and department codes the census knows (reference data, bed statuses,
    /// and the locations, admissions and ED arrivals of open encounters), to check
    /// request filters against. Read-only.
    pub fn known_codes(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut wards = BTreeSet::new();
        let mut departments = BTreeSet::new();
        for (d, w) in self.ward_keys() {
            wards.insert(w.clone());
            departments.insert(d.clone());
        }
        for e in self.encounters.values() {
            let located = e.location().map(|(_, l)| l.department_code.as_str());
            let arrived = e
                .admission_department()
                .into_iter()
                .chain(e.ed_arrival().map(|(_, d)| d));
            departments.extend(
                located
                    .into_iter()
                    .chain(arrived)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
            );
        }
        wards.remove("");
        departments.remove("");
        (wards, departments)
    }

    /// Rebuilds the census from the warehouse as of its load watermark, read first, so
    /// the tables hold at least everything up to it. Returns the state and the watermark;
    /// the caller then applies the staging events after it (re-applying events already
    /// loaded is harmless).
    ///
    /// `warehouse` must address the `warehouse` database (RowBinary, validation off).
    #[tracing::instrument(skip_all)]
    pub async fn load(warehouse: &Client) -> Result<(Self, u64)> {
        let watermark = bookkeeping::read_watermark(warehouse, PIPELINE).await?.position;
        let mut state = Self::new();
        state.position = watermark;

        for w in warehouse_census::wards(warehouse).await? {
            state.wards.insert(
                (w.department_code, w.ward_code),
                WardInfo {
                    from: Stamp {
                        at_ms: w.ref_at_ms,
                        position: w.ref_position,
                    },
                    department_name: w.department_name,
                    ward_name: w.ward_name,
                    bed_count: w.bed_count,
                },
            );
        }

        for b in warehouse_census::current_beds(warehouse).await? {
            state.beds.entry((b.department_code, b.ward_code)).or_default().insert(
                b.bed_code,
                Bed {
                    from: Stamp {
                        at_ms: b.occurred_at_ms,
                        position: b.source_position,
                    },
                    blocking: blocking_label(&b.state),
                },
            );
        }

        // Open encounters and the discharges within the retention of the newest one.
        let (discharged, open): (Vec<_>, Vec<_>) =
            warehouse_census::open_and_recently_discharged(warehouse, TOMBSTONE_RETENTION_MS)
                .await?
                .into_iter()
                .partition(|e| e.discharged_at_ms.is_some());
        state.newest_discharge_ms = discharged.iter().filter_map(|e| e.discharged_at_ms).max();
        state.tombstones = discharged
            .into_iter()
            .filter_map(|e| Some((e.encounter_id, e.discharged_at_ms?)))
            .collect();
        state.prune_at = MIN_PRUNE_AT.max(2 * state.tombstones.len());

        let keys: Vec<uuid::Uuid> = open.iter().map(|e| e.patient_key).collect();
        let identities = warehouse_census::identities(warehouse, &keys).await?;
        for row in open {
            let encounter = Encounter {
                patient: identities
                    .get(&row.patient_key)
                    .map(|p| (row.patient_position, p.clone())),
                state: row.to_state(),
            };
            state.insert_encounter(row.encounter_id, encounter);
        }
        tracing::info!(
            watermark,
            open_encounters = state.encounters.len(),
            wards = state.wards.len(),
            tombstones = state.tombstones.len(),
            "census loaded from the warehouse"
        );
        Ok((state, watermark))
    }

    /// Applies one committed event at staging `position`. Idempotent: applying the same
    /// event again, or one already reflected by [`Self::load`], changes nothing and
    /// returns nothing. Returns the census changes, each stamped with `position`: the
    /// full [`rt::WardCensus`] of every ward whose numbers changed, an `ed_arrival` when
    /// someone joins the ED list or their entry changes (triage), an
    /// `ed_departed_encounter_id` when someone leaves it. ED entries in updates carry
    /// `waiting_minutes = 0`: waiting time is a property of a snapshot's clock.
    pub fn apply(&mut self, position: u64, event: &pb::ClinicalEvent) -> Vec<rt::CensusUpdate> {
        self.position = self.position.max(position);
        let Some(payload) = &event.payload else {
            return Vec::new();
        };
        let stamp = Stamp {
            at_ms: event.occurred_at.as_ref().map_or(0, timestamp_ms),
            position,
        };
        let mut updates = Vec::new();
        match payload {
            Payload::Admission(_)
            | Payload::Transfer(_)
            | Payload::Discharge(_)
            | Payload::EdArrival(_)
            | Payload::EdTriage(_) => self.apply_encounter_event(stamp, event, payload, &mut updates),
            Payload::BedStatus(b) => {
                let Some(l) = b
                    .location
                    .as_ref()
                    .filter(|l| !l.ward_code.is_empty() && !l.bed_code.is_empty())
                else {
                    return Vec::new();
                };
                let ward = (l.department_code.clone(), l.ward_code.clone());
                let bed = Bed {
                    from: stamp,
                    blocking: blocking(BedState::try_from(b.state).unwrap_or_default()),
                };
                self.with_ward_updates(std::slice::from_ref(&ward), &mut updates, |s| {
                    let beds = s.beds.entry(ward.clone()).or_default();
                    if beds
                        .get(&l.bed_code)
                        .is_none_or(|current| stamp::wins(bed.from, current.from, Keep::Latest))
                    {
                        beds.insert(l.bed_code.clone(), bed);
                    }
                });
            }
            Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Ward(w)),
            }) if !w.ward_code.is_empty() => {
                let ward = (w.department_code.clone(), w.ward_code.clone());
                let info = WardInfo {
                    from: stamp,
                    department_name: w.department_name.clone(),
                    ward_name: w.ward_name.clone(),
                    bed_count: w.bed_count,
                };
                self.with_ward_updates(std::slice::from_ref(&ward), &mut updates, |s| {
                    if s.wards
                        .get(&ward)
                        .is_none_or(|current| stamp::wins(info.from, current.from, Keep::Latest))
                    {
                        s.wards.insert(ward.clone(), info);
                    }
                });
            }
            _ => {}
        }
        for u in &mut updates {
            u.position = position;
        }
        updates
    }

    fn apply_encounter_event(
        &mut self,
        stamp: Stamp,
        event: &pb::ClinicalEvent,
        payload: &Payload,
        updates: &mut Vec<rt::CensusUpdate>,
    ) {
        let encounter_id = match payload {
            Payload::Admission(a) => &a.encounter_id,
            Payload::Transfer(t) => &t.encounter_id,
            Payload::Discharge(d) => &d.encounter_id,
            Payload::EdArrival(a) => &a.encounter_id,
            Payload::EdTriage(t) => &t.encounter_id,
            _ => return,
        };
        let patient = match &event.patient {
            Some(p) if !p.mrn.is_empty() => (p.assigning_authority.clone(), p.mrn.clone()),
            _ => return,
        };
        if encounter_id.is_empty() {
            return;
        }
        if let Some(discharged) = self.tombstones.get_mut(encounter_id) {
            if matches!(payload, Payload::Discharge(_)) {
                *discharged = (*discharged).max(stamp.at_ms);
            }
            return;
        }

        let before_bed = self.encounters.get(encounter_id).and_then(Encounter::bed);
        let target_ward = match payload {
            Payload::Admission(a) => a.location.as_ref(),
            Payload::Transfer(t) => t.to.as_ref(),
            _ => None,
        }
        .filter(|l| !l.ward_code.is_empty())
        .map(|l| (l.department_code.clone(), l.ward_code.clone()));
        let affected: Vec<WardKey> = before_bed
            .iter()
            .map(|(w, _)| w.clone())
            .chain(target_ward)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ed_before = self.ed_entry(encounter_id);

        self.with_ward_updates(&affected, updates, |s| {
            if let Payload::Discharge(_) = payload {
                s.remove_encounter(encounter_id);
                s.bury(encounter_id, stamp.at_ms);
                return;
            }
            let mut e = s.take_encounter(encounter_id);
            if e.patient.as_ref().is_none_or(|(p, _)| stamp.position < *p) {
                e.patient = Some((stamp.position, patient.clone()));
            }
            // The warehouse's merge, so the census and fact_encounter agree.
            if let Some((_, merged)) = EncounterEvent::from_payload(payload) {
                let (authority, mrn) = &patient;
                let milestone = EncounterStamp {
                    at_ms: stamp.at_ms,
                    position: stamp.position,
                    event_id: event.event_id.clone(),
                };
                e.state.apply(milestone, keys::patient_key(authority, mrn), merged);
            }
            s.insert_encounter(encounter_id.clone(), e);
        });

        match (ed_before, self.ed_entry(encounter_id)) {
            (before, Some(after)) if before.as_ref() != Some(&after) => updates.push(rt::CensusUpdate {
                update: Some(Update::EdArrival(after)),
                position: 0,
            }),
            (Some(_), None) => updates.push(rt::CensusUpdate {
                update: Some(Update::EdDepartedEncounterId(encounter_id.clone())),
                position: 0,
            }),
            _ => {}
        }
    }

    /// Runs `change` and pushes a ward update for each of `wards` whose census changed.
    fn with_ward_updates(
        &mut self,
        wards: &[WardKey],
        updates: &mut Vec<rt::CensusUpdate>,
        change: impl FnOnce(&mut Self),
    ) {
        let before: Vec<rt::WardCensus> = wards.iter().map(|w| self.ward_census(w)).collect();
        change(self);
        for (w, before) in wards.iter().zip(before) {
            let after = self.ward_census(w);
            if after != before {
                updates.push(rt::CensusUpdate {
                    update: Some(Update::Ward(after)),
                    position: 0,
                });
            }
        }
    }

    /// Removes the encounter from the indexes and returns it (a new one if unknown).
    fn take_encounter(&mut self, encounter_id: &str) -> Encounter {
        self.remove_encounter(encounter_id).unwrap_or_default()
    }

    fn remove_encounter(&mut self, encounter_id: &str) -> Option<Encounter> {
        let e = self.encounters.remove(encounter_id)?;
        if let Some((ward, _)) = e.bed() {
            if let Some(on_ward) = self.occupancy.get_mut(&ward) {
                on_ward.remove(encounter_id);
                if on_ward.is_empty() {
                    self.occupancy.remove(&ward);
                }
            }
        }
        if let Some((_, p)) = &e.patient {
            if let Some(set) = self.by_patient.get_mut(p) {
                set.remove(encounter_id);
                if set.is_empty() {
                    self.by_patient.remove(p);
                }
            }
        }
        Some(e)
    }

    fn insert_encounter(&mut self, encounter_id: String, e: Encounter) {
        if let Some((ward, bed)) = e.bed() {
            self.occupancy
                .entry(ward)
                .or_default()
                .insert(encounter_id.clone(), bed);
        }
        if let Some((_, p)) = &e.patient {
            self.by_patient
                .entry(p.clone())
                .or_default()
                .insert(encounter_id.clone());
        }
        self.encounters.insert(encounter_id, e);
    }

    /// Remembers a discharge; forgets discharges older than the retention now and then.
    fn bury(&mut self, encounter_id: &str, at_ms: i64) {
        let newest = self.newest_discharge_ms.map_or(at_ms, |n| n.max(at_ms));
        self.newest_discharge_ms = Some(newest);
        let t = self.tombstones.entry(encounter_id.to_string()).or_insert(at_ms);
        *t = (*t).max(at_ms);
        if self.tombstones.len() > self.prune_at {
            let cutoff = newest.saturating_sub(TOMBSTONE_RETENTION_MS);
            self.tombstones.retain(|_, at| *at >= cutoff);
            self.prune_at = MIN_PRUNE_AT.max(2 * self.tombstones.len());
        }
    }

    /// The census of one ward. Occupied: distinct beds of open encounters on it (an
    /// encounter without a bed counts once). Blocked: beds cleaning, blocked or closed
    /// with nobody on them.
    fn ward_census(&self, ward: &WardKey) -> rt::WardCensus {
        let info = self.wards.get(ward);
        let on_ward = self.occupancy.get(ward);
        let occupied_beds: BTreeSet<&str> = on_ward
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|b| !b.is_empty())
            .map(String::as_str)
            .collect();
        let bedless = on_ward
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|b| b.is_empty())
            .count();
        let occupied = u32::try_from(occupied_beds.len() + bedless).unwrap_or(u32::MAX);
        let blocked = self.beds.get(ward).map_or(0, |beds| {
            beds.iter()
                .filter(|(code, b)| b.blocking && !occupied_beds.contains(code.as_str()))
                .count()
        });
        let blocked = u32::try_from(blocked).unwrap_or(u32::MAX);
        let beds = info.map_or(0, |i| i.bed_count);
        rt::WardCensus {
            department_code: ward.0.clone(),
            ward_code: ward.1.clone(),
            ward_name: info.map(|i| i.ward_name.clone()).unwrap_or_default(),
            beds,
            occupied,
            available: beds.saturating_sub(occupied).saturating_sub(blocked),
            blocked,
        }
    }

    /// Wards in the census: named by reference data, occupied, or with a bed status.
    fn ward_keys(&self) -> BTreeSet<&WardKey> {
        self.wards
            .keys()
            .chain(self.occupancy.keys())
            .chain(self.beds.keys())
            .collect()
    }

    /// A department's name: that of the latest Ward event of any of its wards.
    fn department_name(&self, department: &str) -> String {
        self.wards
            .iter()
            .filter(|((d, _), _)| d == department)
            .max_by_key(|(_, w)| w.from)
            .map(|(_, w)| w.department_name.clone())
            .unwrap_or_default()
    }

    fn ed_entry(&self, encounter_id: &str) -> Option<rt::EdPatient> {
        let e = self.encounters.get(encounter_id)?;
        if !e.waiting_in_ed() {
            return None;
        }
        let (arrived, _) = e.ed_arrival()?;
        Some(rt::EdPatient {
            patient: e.patient.as_ref().map(|(_, (authority, mrn))| pb::PatientRef {
                mrn: mrn.clone(),
                assigning_authority: authority.clone(),
            }),
            encounter_id: encounter_id.to_string(),
            arrived_at: Some(timestamp(arrived.at_ms)),
            acuity: e.state.ed_triage.as_ref().and_then(|(_, a)| *a).map_or(0, u32::from),
            triaged_at: e.state.ed_triage.as_ref().map(|(s, _)| timestamp(s.at_ms)),
            waiting_minutes: 0,
        })
    }

    /// The census now: wards and departments sorted by code, the ED list by acuity (1
    /// first, untriaged last) then arrival. `department_codes` filters wards and
    /// departments by their department, ED patients by the department they arrived at,
    /// and inpatients by the department they are located in; empty means all.
    pub fn snapshot(&self, req: &rt::GetCensusRequest, now_ms: i64) -> rt::Census {
        let wanted = |d: &str| req.department_codes.is_empty() || req.department_codes.iter().any(|w| w == d);
        let wards: Vec<rt::WardCensus> = self
            .ward_keys()
            .into_iter()
            .filter(|(d, _)| wanted(d))
            .map(|w| self.ward_census(w))
            .collect();
        let mut departments: BTreeMap<String, rt::DepartmentCensus> = BTreeMap::new();
        for w in &wards {
            let d = departments
                .entry(w.department_code.clone())
                .or_insert_with(|| rt::DepartmentCensus {
                    department_code: w.department_code.clone(),
                    department_name: self.department_name(&w.department_code),
                    ..Default::default()
                });
            d.beds = d.beds.saturating_add(w.beds);
            d.occupied = d.occupied.saturating_add(w.occupied);
            d.available = d.available.saturating_add(w.available);
        }
        let mut ed: Vec<(u32, i64, rt::EdPatient)> = self
            .encounters
            .iter()
            .filter(|(_, e)| e.ed_arrival().is_some_and(|(_, d)| wanted(d)))
            .filter_map(|(id, _)| self.ed_entry(id))
            .map(|mut p| {
                let arrived = p.arrived_at.as_ref().map_or(0, timestamp_ms);
                let waited = now_ms.saturating_sub(arrived).max(0) / MS_PER_MINUTE;
                p.waiting_minutes = u32::try_from(waited).unwrap_or(u32::MAX);
                let rank = if p.acuity == 0 { u32::MAX } else { p.acuity };
                (rank, arrived, p)
            })
            .collect();
        ed.sort_by(|a, b| (a.0, a.1, &a.2.encounter_id).cmp(&(b.0, b.1, &b.2.encounter_id)));
        let inpatients = self
            .encounters
            .values()
            .filter(|e| e.is_inpatient())
            .filter(|e| e.location().is_some_and(|(_, l)| wanted(&l.department_code)))
            .count();
        rt::Census {
            position: self.position,
            as_of: Some(timestamp(now_ms)),
            wards,
            departments: departments.into_values().collect(),
            ed_waiting: ed.into_iter().map(|(_, _, p)| p).collect(),
            inpatients: u32::try_from(inpatients).unwrap_or(u32::MAX),
        }
    }

    /// Where `patient` is now: the open encounter placed most recently (by the time of
    /// its location, or of its ED arrival while it has none). None if not in hospital.
    pub fn location_of(&self, patient: &pb::PatientRef) -> Option<PatientLocation> {
        let key = (patient.assigning_authority.clone(), patient.mrn.clone());
        self.by_patient
            .get(&key)?
            .iter()
            .filter_map(|id| {
                let e = self.encounters.get(id)?;
                let (stamp, l) = match (e.location(), e.ed_arrival()) {
                    (Some((s, l)), _) if !l.is_empty() => (s.order(), l.clone()),
                    (_, Some((s, d))) => (s.order(), LocationCodes::new(d, "", "")),
                    _ => return None,
                };
                Some((stamp, id, l))
            })
            .max_by_key(|(stamp, _, _)| *stamp)
            .map(|(_, id, l)| PatientLocation {
                encounter_id: id.clone(),
                department_code: l.department_code,
                ward_code: l.ward_code,
                bed_code: l.bed_code,
            })
    }
}

fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// 2024-03-01T08:00:00Z.
    const T0: i64 = 1_709_280_000_000;

    fn ts(ms: i64) -> Option<prost_types::Timestamp> {
        Some(timestamp(ms))
    }

    fn patient(mrn: &str) -> pb::PatientRef {
        pb::PatientRef {
            mrn: mrn.into(),
            assigning_authority: "city".into(),
        }
    }

    fn ev(id: &str, at: i64, mrn: Option<&str>, payload: Payload) -> pb::ClinicalEvent {
        pb::ClinicalEvent {
            event_id: id.into(),
            source_system: "adt".into(),
            occurred_at: ts(at),
            patient: mrn.map(patient),
            payload: Some(payload),
        }
    }

    fn loc(dept: &str, ward: &str, bed: &str) -> Option<pb::Location> {
        Some(pb::Location {
            department_code: dept.into(),
            ward_code: ward.into(),
            bed_code: bed.into(),
        })
    }

    fn ward_ref(id: &str, at: i64, dept: &str, ward: &str, name: &str, beds: u32) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            None,
            Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Ward(pb::Ward {
                    department_code: dept.into(),
                    department_name: format!("{dept} department"),
                    ward_code: ward.into(),
                    ward_name: name.into(),
                    bed_count: beds,
                })),
            }),
        )
    }

    fn admit(
        id: &str,
        at: i64,
        mrn: &str,
        enc: &str,
        class: pb::EncounterClass,
        l: Option<pb::Location>,
    ) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            Some(mrn),
            Payload::Admission(pb::Admission {
                encounter_id: enc.into(),
                encounter_class: class as i32,
                location: l,
                ..Default::default()
            }),
        )
    }

    fn inpatient(id: &str, at: i64, mrn: &str, enc: &str, ward: &str, bed: &str) -> pb::ClinicalEvent {
        admit(id, at, mrn, enc, pb::EncounterClass::Inpatient, loc("MED", ward, bed))
    }

    fn transfer(id: &str, at: i64, mrn: &str, enc: &str, to: Option<pb::Location>) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            Some(mrn),
            Payload::Transfer(pb::Transfer {
                encounter_id: enc.into(),
                from: None,
                to,
            }),
        )
    }

    fn discharge(id: &str, at: i64, mrn: &str, enc: &str) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            Some(mrn),
            Payload::Discharge(pb::Discharge {
                encounter_id: enc.into(),
                disposition: pb::DischargeDisposition::Home as i32,
            }),
        )
    }

    fn arrive(id: &str, at: i64, mrn: &str, enc: &str) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            Some(mrn),
            Payload::EdArrival(pb::EdArrival {
                encounter_id: enc.into(),
                department_code: "ED".into(),
                ..Default::default()
            }),
        )
    }

    fn triage(id: &str, at: i64, mrn: &str, enc: &str, acuity: u32) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            Some(mrn),
            Payload::EdTriage(pb::EdTriage {
                encounter_id: enc.into(),
                acuity,
            }),
        )
    }

    fn bed_status(id: &str, at: i64, ward: &str, bed: &str, state: BedState) -> pb::ClinicalEvent {
        ev(
            id,
            at,
            None,
            Payload::BedStatus(pb::BedStatus {
                location: loc("MED", ward, bed),
                state: state as i32,
            }),
        )
    }

    /// A state with wards MED/W1 (10 beds) and MED/W2 (4 beds).
    fn state() -> CensusState {
        let mut s = CensusState::new();
        s.apply(1, &ward_ref("w1", T0, "MED", "W1", "Ward One", 10));
        s.apply(2, &ward_ref("w2", T0, "MED", "W2", "Ward Two", 4));
        s
    }

    fn all(s: &CensusState) -> rt::Census {
        s.snapshot(&rt::GetCensusRequest::default(), T0 + 600 * MIN)
    }

    fn ward(s: &CensusState, code: &str) -> rt::WardCensus {
        all(s)
            .wards
            .into_iter()
            .find(|w| w.ward_code == code)
            .unwrap_or_else(|| panic!("no ward {code}"))
    }

    /// (occupied, available, blocked) of a ward.
    fn numbers(s: &CensusState, code: &str) -> (u32, u32, u32) {
        let w = ward(s, code);
        (w.occupied, w.available, w.blocked)
    }

    fn ward_updates(u: &[rt::CensusUpdate]) -> Vec<(String, u32)> {
        u.iter()
            .filter_map(|u| match &u.update {
                Some(Update::Ward(w)) => Some((w.ward_code.clone(), w.occupied)),
                _ => None,
            })
            .collect()
    }

    fn ed_ids(c: &rt::Census) -> Vec<&str> {
        c.ed_waiting.iter().map(|p| p.encounter_id.as_str()).collect()
    }

    #[test]
    fn census_state_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CensusState>();
    }

    #[test]
    fn reference_wards_give_names_and_beds() {
        let s = state();
        let c = all(&s);
        assert_eq!(c.wards.len(), 2);
        let w1 = &c.wards[0];
        assert_eq!(
            (
                w1.department_code.as_str(),
                w1.ward_code.as_str(),
                w1.ward_name.as_str()
            ),
            ("MED", "W1", "Ward One")
        );
        assert_eq!((w1.beds, w1.occupied, w1.available, w1.blocked), (10, 0, 10, 0));
        assert_eq!(c.departments.len(), 1);
        assert_eq!(c.departments[0].department_name, "MED department");
        assert_eq!((c.departments[0].beds, c.departments[0].available), (14, 14));
        assert_eq!(c.position, 2);
        assert_eq!(c.as_of, ts(T0 + 600 * MIN));

        // An older Ward event does not override the newer one; a newer one does.
        let mut s = s;
        assert!(s
            .apply(3, &ward_ref("w1-old", T0 - MIN, "MED", "W1", "Old", 3))
            .is_empty());
        let u = s.apply(4, &ward_ref("w1-new", T0 + MIN, "MED", "W1", "Ward 1", 12));
        assert_eq!(ward_updates(&u), vec![("W1".to_string(), 0)]);
        assert_eq!((ward(&s, "W1").ward_name.as_str(), ward(&s, "W1").beds), ("Ward 1", 12));
    }

    #[test]
    fn admission_occupies_a_bed_and_streams_the_ward() {
        let mut s = state();
        let u = s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].position, 10);
        let Some(Update::Ward(w)) = &u[0].update else {
            panic!("a ward update: {u:?}")
        };
        assert_eq!(
            (w.ward_code.as_str(), w.beds, w.occupied, w.available),
            ("W1", 10, 1, 9)
        );
        assert_eq!(numbers(&s, "W1"), (1, 9, 0));
        let c = all(&s);
        assert_eq!(c.inpatients, 1);
        assert_eq!((c.departments[0].occupied, c.departments[0].available), (1, 13));
        assert_eq!(
            s.location_of(&patient("M1")),
            Some(PatientLocation {
                encounter_id: "E1".into(),
                department_code: "MED".into(),
                ward_code: "W1".into(),
                bed_code: "B1".into(),
            })
        );
        assert_eq!(s.location_of(&patient("M2")), None);
        // Another authority's M1 is another patient.
        let other = pb::PatientRef {
            mrn: "M1".into(),
            assigning_authority: "elsewhere".into(),
        };
        assert_eq!(s.location_of(&other), None);
    }

    #[test]
    fn occupied_counts_distinct_beds_and_bedless_encounters_once() {
        let mut s = state();
        s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        // Mother and newborn in the same bed: one bed.
        s.apply(11, &inpatient("a2", T0, "M2", "E2", "W1", "B1"));
        // No bed assigned yet: counts once each.
        s.apply(12, &inpatient("a3", T0, "M3", "E3", "W1", ""));
        s.apply(13, &inpatient("a4", T0, "M4", "E4", "W1", ""));
        assert_eq!(numbers(&s, "W1"), (3, 7, 0));
        assert_eq!(all(&s).inpatients, 4);
    }

    #[test]
    fn transfer_moves_and_discharge_frees() {
        let mut s = state();
        s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        let u = s.apply(11, &transfer("t1", T0 + 60 * MIN, "M1", "E1", loc("MED", "W2", "B3")));
        assert_eq!(
            ward_updates(&u),
            vec![("W1".to_string(), 0), ("W2".to_string(), 1)],
            "both wards, in ward order"
        );
        assert!(u.iter().all(|u| u.position == 11));
        assert_eq!(numbers(&s, "W1"), (0, 10, 0));
        assert_eq!(numbers(&s, "W2"), (1, 3, 0));
        assert_eq!(s.location_of(&patient("M1")).unwrap().bed_code, "B3");

        let u = s.apply(12, &discharge("d1", T0 + 120 * MIN, "M1", "E1"));
        assert_eq!(ward_updates(&u), vec![("W2".to_string(), 0)]);
        assert_eq!(numbers(&s, "W2"), (0, 4, 0));
        assert_eq!(all(&s).inpatients, 0);
        assert_eq!(s.location_of(&patient("M1")), None);
        assert_eq!(s.position(), 12);
    }

    #[test]
    fn older_moves_do_not_move_back() {
        let mut s = state();
        s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        s.apply(11, &transfer("t2", T0 + 120 * MIN, "M1", "E1", loc("MED", "W2", "B1")));
        // A transfer that happened before the current location, staged late.
        let u = s.apply(12, &transfer("t1", T0 + 60 * MIN, "M1", "E1", loc("MED", "W1", "B5")));
        assert!(u.is_empty(), "{u:?}");
        assert_eq!(s.location_of(&patient("M1")).unwrap().ward_code, "W2");
        // A late copy of the admission (another id, same time) does not move it either.
        assert!(s
            .apply(13, &inpatient("a1-again", T0, "M1", "E1", "W1", "B1"))
            .is_empty());
        assert_eq!((numbers(&s, "W1").0, numbers(&s, "W2").0), (0, 1));
    }

    #[test]
    fn transfer_before_admission_is_kept_when_it_is_later() {
        let mut s = state();
        // The transfer arrives first; the admission (earlier in time) does not undo it.
        s.apply(10, &transfer("t1", T0 + 60 * MIN, "M1", "E1", loc("MED", "W2", "B2")));
        s.apply(11, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        assert_eq!(numbers(&s, "W2").0, 1);
        assert_eq!(numbers(&s, "W1").0, 0);
    }

    #[test]
    fn a_discharge_before_its_admission_leaves_a_tombstone() {
        let mut s = state();
        let u = s.apply(10, &discharge("d1", T0 + 600 * MIN, "M1", "E1"));
        assert!(u.is_empty());
        // The late admission, transfer and ED events of that encounter do not reopen it.
        assert!(s.apply(11, &inpatient("a1", T0, "M1", "E1", "W1", "B1")).is_empty());
        assert!(s
            .apply(12, &transfer("t1", T0 + 60 * MIN, "M1", "E1", loc("MED", "W2", "B1")))
            .is_empty());
        assert!(s.apply(13, &arrive("r1", T0 - 60 * MIN, "M1", "E1")).is_empty());
        let c = all(&s);
        assert_eq!((c.inpatients, c.ed_waiting.len()), (0, 0));
        assert_eq!((numbers(&s, "W1").0, numbers(&s, "W2").0), (0, 0));
        assert_eq!(s.location_of(&patient("M1")), None);
        assert_eq!(s.position(), 13);
    }

    #[test]
    fn applying_the_same_events_again_changes_nothing() {
        let events = vec![
            ward_ref("w3", T0, "SUR", "S1", "Surgical 1", 6),
            inpatient("a1", T0, "M1", "E1", "W1", "B1"),
            transfer("t1", T0 + 30 * MIN, "M1", "E1", loc("MED", "W2", "B2")),
            inpatient("a2", T0, "M2", "E2", "W1", "B4"),
            discharge("d2", T0 + 90 * MIN, "M2", "E2"),
            arrive("r3", T0, "M3", "E3"),
            triage("g3", T0 + 10 * MIN, "M3", "E3", 2),
            arrive("r4", T0, "M4", "E4"),
            bed_status("b1", T0, "W1", "B7", BedState::Cleaning),
        ];
        let mut s = state();
        for (i, e) in events.iter().enumerate() {
            s.apply(10 + i as u64, e);
        }
        let once = all(&s);
        // Resent later (new positions): no update, same census.
        for (i, e) in events.iter().enumerate() {
            let u = s.apply(100 + i as u64, e);
            assert!(u.is_empty(), "{} again: {u:?}", e.event_id);
        }
        // Resent at the same positions (a replay after load).
        for (i, e) in events.iter().enumerate() {
            assert!(s.apply(10 + i as u64, e).is_empty());
        }
        let twice = all(&s);
        assert_eq!(rt::Census { position: 0, ..twice }, rt::Census { position: 0, ..once });
        assert_eq!(s.position(), 108, "the position still advances");
    }

    #[test]
    fn blocked_beds_are_cleaning_blocked_or_closed_without_a_patient() {
        let mut s = state();
        let u = s.apply(10, &bed_status("b1", T0, "W1", "B1", BedState::Cleaning));
        assert_eq!(ward_updates(&u), vec![("W1".to_string(), 0)]);
        s.apply(11, &bed_status("b2", T0, "W1", "B2", BedState::Blocked));
        s.apply(12, &bed_status("b3", T0, "W1", "B3", BedState::Closed));
        s.apply(13, &bed_status("b4", T0, "W1", "B4", BedState::Available));
        s.apply(14, &bed_status("b5", T0, "W1", "B5", BedState::Occupied));
        assert_eq!(numbers(&s, "W1"), (0, 7, 3));
        // A patient put in a bed marked cleaning: occupied, no longer blocked.
        s.apply(15, &inpatient("a1", T0 + MIN, "M1", "E1", "W1", "B1"));
        assert_eq!(numbers(&s, "W1"), (1, 7, 2));
        // Bed status alone does not make a bed occupied.
        assert_eq!(ward(&s, "W1").occupied, 1);
        // An older status does not override a newer one; a newer one does.
        assert!(s
            .apply(16, &bed_status("b2-old", T0 - MIN, "W1", "B2", BedState::Available))
            .is_empty());
        s.apply(17, &bed_status("b2-new", T0 + MIN, "W1", "B2", BedState::Available));
        assert_eq!(numbers(&s, "W1"), (1, 8, 1));
        // A status with no bed is ignored.
        assert!(s
            .apply(18, &bed_status("b-none", T0, "W1", "", BedState::Closed))
            .is_empty());
    }

    #[test]
    fn available_never_goes_below_zero_and_unknown_wards_have_no_beds() {
        let mut s = state();
        for i in 0..6 {
            s.apply(
                10 + i,
                &inpatient(
                    &format!("a{i}"),
                    T0,
                    &format!("M{i}"),
                    &format!("E{i}"),
                    "W2",
                    &format!("B{i}"),
                ),
            );
        }
        s.apply(20, &bed_status("b9", T0, "W2", "B9", BedState::Closed));
        assert_eq!(numbers(&s, "W2"), (6, 0, 1));
        // A ward no reference names: listed with 0 beds while occupied.
        s.apply(
            21,
            &admit(
                "x",
                T0,
                "MX",
                "EX",
                pb::EncounterClass::Inpatient,
                loc("ICU", "I1", "B1"),
            ),
        );
        let c = all(&s);
        let i1 = c.wards.iter().find(|w| w.ward_code == "I1").unwrap();
        assert_eq!(
            (i1.beds, i1.occupied, i1.available, i1.ward_name.as_str()),
            (0, 1, 0, "")
        );
        let icu = c.departments.iter().find(|d| d.department_code == "ICU").unwrap();
        assert_eq!((icu.department_name.as_str(), icu.occupied), ("", 1));
        s.apply(22, &discharge("dx", T0 + MIN, "MX", "EX"));
        assert!(all(&s).wards.iter().all(|w| w.ward_code != "I1"), "gone when empty");
    }

    #[test]
    fn ed_list_is_ordered_by_acuity_then_arrival() {
        let mut s = state();
        let u = s.apply(10, &arrive("r1", T0, "M1", "E1"));
        assert_eq!(u.len(), 1);
        let Some(Update::EdArrival(p)) = &u[0].update else {
            panic!("{u:?}")
        };
        assert_eq!((p.encounter_id.as_str(), p.acuity, p.triaged_at), ("E1", 0, None));
        assert_eq!(p.patient, Some(patient("M1")));
        assert_eq!((u[0].position, p.arrived_at), (10, ts(T0)));

        s.apply(11, &arrive("r2", T0 + 5 * MIN, "M2", "E2"));
        s.apply(12, &arrive("r3", T0 + 10 * MIN, "M3", "E3"));
        s.apply(13, &arrive("r4", T0 + 15 * MIN, "M4", "E4"));
        s.apply(14, &arrive("r5", T0 + 1, "M5", "E5"));
        // Triage: an update with the acuity.
        let u = s.apply(15, &triage("g3", T0 + 20 * MIN, "M3", "E3", 2));
        let Some(Update::EdArrival(p)) = &u[0].update else {
            panic!("{u:?}")
        };
        assert_eq!((p.acuity, p.triaged_at), (2, ts(T0 + 20 * MIN)));
        s.apply(16, &triage("g4", T0 + 20 * MIN, "M4", "E4", 2));
        s.apply(17, &triage("g2", T0 + 20 * MIN, "M2", "E2", 4));
        // A later re-triage does not change the initial assessment.
        assert!(s.apply(18, &triage("g2b", T0 + 40 * MIN, "M2", "E2", 1)).is_empty());

        let c = s.snapshot(&rt::GetCensusRequest::default(), T0 + 90 * MIN + 30_000);
        assert_eq!(ed_ids(&c), vec!["E3", "E4", "E2", "E1", "E5"]);
        let waits: Vec<u32> = c.ed_waiting.iter().map(|p| p.waiting_minutes).collect();
        assert_eq!(waits, vec![80, 75, 85, 90, 90]);
        assert_eq!(c.inpatients, 0);
        // Waiting never goes negative for a clock behind the arrival.
        assert_eq!(
            s.snapshot(&rt::GetCensusRequest::default(), T0).ed_waiting[4].waiting_minutes,
            0
        );
        assert_eq!(
            s.location_of(&patient("M1")),
            Some(PatientLocation {
                encounter_id: "E1".into(),
                department_code: "ED".into(),
                ward_code: String::new(),
                bed_code: String::new(),
            })
        );
    }

    #[test]
    fn triage_before_arrival_is_kept() {
        let mut s = state();
        assert!(s.apply(10, &triage("g1", T0 + 10 * MIN, "M1", "E1", 3)).is_empty());
        s.apply(11, &arrive("r1", T0, "M1", "E1"));
        let c = all(&s);
        assert_eq!(
            (c.ed_waiting[0].acuity, c.ed_waiting[0].triaged_at),
            (3, ts(T0 + 10 * MIN))
        );
    }

    #[test]
    fn leaving_the_ed_list() {
        let mut s = state();
        for (i, enc) in ["E1", "E2", "E3", "E4", "E5"].iter().enumerate() {
            s.apply(10 + i as u64, &arrive(&format!("r{i}"), T0, &format!("M{i}"), enc));
        }
        // Admitted to a ward of another department: leaves, and the ward fills.
        let u = s.apply(20, &inpatient("a0", T0 + 60 * MIN, "M0", "E1", "W1", "B1"));
        assert!(u
            .iter()
            .any(|u| u.update == Some(Update::EdDepartedEncounterId("E1".into()))));
        assert_eq!(ward_updates(&u), vec![("W1".to_string(), 1)]);
        // Discharged from the ED: leaves.
        let u = s.apply(21, &discharge("d1", T0 + 60 * MIN, "M1", "E2"));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].update, Some(Update::EdDepartedEncounterId("E2".into())));
        // An emergency-class admission within the ED (an ED cubicle): still waiting.
        let u = s.apply(
            22,
            &admit(
                "a2",
                T0 + MIN,
                "M2",
                "E3",
                pb::EncounterClass::Emergency,
                loc("ED", "MAJ", "C1"),
            ),
        );
        assert_eq!(ward_updates(&u), vec![("MAJ".to_string(), 1)]);
        assert!(u
            .iter()
            .all(|u| !matches!(u.update, Some(Update::EdDepartedEncounterId(_)))));
        // ... then transferred out of the ED department: leaves.
        let u = s.apply(23, &transfer("t2", T0 + 30 * MIN, "M2", "E3", loc("MED", "W2", "B1")));
        assert!(u
            .iter()
            .any(|u| u.update == Some(Update::EdDepartedEncounterId("E3".into()))));
        // An admission with no location does not take anyone off the list.
        assert!(s
            .apply(
                24,
                &admit("a3", T0 + MIN, "M3", "E4", pb::EncounterClass::Inpatient, None)
            )
            .is_empty());
        let c = all(&s);
        assert_eq!(ed_ids(&c), vec!["E4", "E5"]);
        // Placed on the MED wards: E1 (W1) and E3 (W2); the ED cubicle is empty again.
        assert_eq!(c.inpatients, 2);
        assert_eq!((numbers(&s, "W1").0, numbers(&s, "W2").0), (1, 1));
        assert!(
            c.wards.iter().all(|w| w.ward_code != "MAJ"),
            "unnamed and empty: not listed"
        );
    }

    #[test]
    fn a_late_arrival_of_an_admitted_encounter_does_not_join_the_list() {
        let mut s = state();
        s.apply(10, &inpatient("a1", T0 + 60 * MIN, "M1", "E1", "W1", "B1"));
        assert!(s.apply(11, &arrive("r1", T0, "M1", "E1")).is_empty());
        assert!(all(&s).ed_waiting.is_empty());
    }

    #[test]
    fn snapshot_filters_by_department() {
        let mut s = state();
        s.apply(3, &ward_ref("s1", T0, "SUR", "S1", "Surgical 1", 6));
        s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        s.apply(
            11,
            &admit(
                "a2",
                T0,
                "M2",
                "E2",
                pb::EncounterClass::Inpatient,
                loc("SUR", "S1", "B1"),
            ),
        );
        s.apply(12, &arrive("r3", T0, "M3", "E3"));

        let sur = s.snapshot(
            &rt::GetCensusRequest {
                department_codes: vec!["SUR".into()],
            },
            T0,
        );
        assert_eq!(sur.wards.len(), 1);
        assert_eq!((sur.wards[0].ward_code.as_str(), sur.wards[0].occupied), ("S1", 1));
        assert_eq!(sur.departments.len(), 1);
        assert_eq!(
            (sur.departments[0].department_name.as_str(), sur.departments[0].beds),
            ("SUR department", 6)
        );
        assert_eq!((sur.inpatients, sur.ed_waiting.len()), (1, 0));

        let ed = s.snapshot(
            &rt::GetCensusRequest {
                department_codes: vec!["ED".into()],
            },
            T0,
        );
        assert_eq!((ed.wards.len(), ed.inpatients, ed_ids(&ed)), (0, 0, vec!["E3"]));

        let both = s.snapshot(
            &rt::GetCensusRequest {
                department_codes: vec!["MED".into(), "SUR".into()],
            },
            T0,
        );
        let codes: Vec<&str> = both.departments.iter().map(|d| d.department_code.as_str()).collect();
        assert_eq!(codes, vec!["MED", "SUR"]);
        assert_eq!(both.wards.len(), 3);
        assert_eq!(both.inpatients, 2);
        assert_eq!(all(&s).wards.len(), 3);
    }

    #[test]
    fn events_without_patient_or_encounter_are_ignored() {
        let mut s = state();
        let mut no_patient = inpatient("a1", T0, "M1", "E1", "W1", "B1");
        no_patient.patient = None;
        assert!(s.apply(10, &no_patient).is_empty());
        assert!(s.apply(11, &inpatient("a2", T0, "", "E2", "W1", "B1")).is_empty());
        assert!(s.apply(12, &inpatient("a3", T0, "M3", "", "W1", "B1")).is_empty());
        let mut no_payload = inpatient("a4", T0, "M4", "E4", "W1", "B1");
        no_payload.payload = None;
        assert!(s.apply(13, &no_payload).is_empty());
        assert_eq!((numbers(&s, "W1").0, s.position()), (0, 13));
    }

    #[test]
    fn location_of_prefers_the_latest_placed_encounter() {
        let mut s = state();
        s.apply(10, &inpatient("a1", T0, "M1", "E1", "W1", "B1"));
        s.apply(11, &arrive("r2", T0 + 60 * MIN, "M1", "E2"));
        assert_eq!(s.location_of(&patient("M1")).unwrap().encounter_id, "E2");
        s.apply(12, &discharge("d2", T0 + 70 * MIN, "M1", "E2"));
        assert_eq!(s.location_of(&patient("M1")).unwrap().encounter_id, "E1");
    }

    #[test]
    fn old_tombstones_are_pruned_past_the_retention() {
        let mut s = CensusState::new();
        let old = T0 - TOMBSTONE_RETENTION_MS - MIN;
        s.apply(1, &discharge("d-old", old, "M0", "OLD"));
        for i in 0..=MIN_PRUNE_AT as u64 {
            s.apply(2 + i, &discharge(&format!("d{i}"), T0, "M1", &format!("E{i}")));
        }
        assert!(!s.tombstones.contains_key("OLD"));
        assert!(s.tombstones.contains_key("E0"));
        assert_eq!(s.tombstones.len(), MIN_PRUNE_AT + 1);
    }
}
