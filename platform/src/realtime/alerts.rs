//! NEWS2 alerting: per patient, the latest value of each NEWS2 parameter, the SpO2 scale
//! and age, scored with [`news2::score`] on every vital-signs set; an [`Alert`] when the
//! patient enters a band that needs a response or the band rises; and the audit of every
//! alert in `warehouse.news2_alerts` ([`AlertAudit`]).
//!
//! Owns: the alerting rules and the audit table. Must not: read staging, decide where a
//! patient is (the census does; the caller passes the location in) or change the chart
//! arithmetic (that is [`news2`]).
//!
//! Rules (the same live and when the state is rebuilt after a restart, so a rebuilt
//! process equals one that never stopped; `platform/tests/one_truth.rs` holds them equal
//! over generated event sequences with restarts):
//! - Each patient's score is taken as of their newest vital-signs set (`observed_at`
//!   never moves backwards). Charting is partial: each set is merged over the latest
//!   values, parameter by parameter, by (occurred_at, staging position), so a set older
//!   than the newest value of a parameter never replaces it. SpO2 and the oxygen flag
//!   travel together, as in [`Parameters::updated_with`]. A value taken more than 24 h
//!   before the patient's newest set does not count, so a late set that brings an
//!   expired value brings nothing back; every set (late ones too) is rescored.
//! - SpO2 scale 2 is sticky: a set saying scale 2 keeps the patient on it until a newer
//!   set (by occurred_at, then position) says scale 1; unspecified keeps the current
//!   scale; every patient starts on scale 1.
//! - NEWS2 is not validated under 16 (RCP 2017): such patients are not scored nor alerted,
//!   and [`AlertState::applicability`] flags them. Unknown age is scored.
//! - Bands needing a response are low-medium, medium and high. Entering one from low or
//!   from no score raises [`AlertKind::Alert`]; a rise within them raises
//!   [`AlertKind::Escalation`]; an unchanged or falling band raises nothing but is
//!   remembered, so a later rise alerts again. A band scored as of more than 24 h before
//!   the new score is no longer the patient's band (a readmission alerts afresh).
//! - Only events committed to staging count, once each (first commit wins there). An
//!   event alerts only above the highest audited position (older ones were alerted
//!   before a restart).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use hospital_proto::events::{self as pb, clinical_event::Payload};
use hospital_proto::realtime::{self as rt, AlertKind, PatientScore};
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::census::PatientLocation;
use super::news2::{self, Acvpu, NotApplicable, Parameter, Parameters, RiskBand, Spo2Scale};
use crate::error::Result;
use crate::staging::fill_batch;
use crate::stamp::{self, Keep, Stamp};
use crate::warehouse::{census, keys, vitals};

/// Where the patient is when an alert is raised (the census's view of the patient).
pub type AlertLocation = PatientLocation;

/// How long a charted value counts towards the score.
pub const VALUE_TTL_MS: i64 = 24 * 3_600_000;

/// The audit table, in the `warehouse` database.
pub const AUDIT_TABLE: &str = "news2_alerts";

/// Namespace of alert ids (UUID v5 of source system and source event id).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x7a2e_51c4_0b9d_4f63_a8e1_3c5f_92d0_6b17);
/// Separates the parts of a natural key; cannot occur in validated ids.
const SEP: char = '\u{1f}';

/// RCP 2017 Chart 3, the clinical response to each band that needs one.
const RESPONSE_LOW_MEDIUM: &str = "urgent ward-based review by a clinician: at least hourly observations";
const RESPONSE_MEDIUM: &str = "urgent response: registered nurse to inform the medical team immediately; \
     urgent assessment by a clinician with core competencies in acute illness; at least hourly observations";
const RESPONSE_HIGH: &str = "emergency response: immediate assessment by a clinical team with critical-care \
     competencies, usually with transfer to a higher level of care; continuous monitoring of vital signs";

/// A value and when it was charted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Stamped<T> {
    stamp: Stamp,
    value: T,
}

/// Keeps `value` in `slot` unless the slot holds a newer one ([`stamp::wins`], the
/// platform's one order of facts).
fn merge<T>(slot: &mut Option<Stamped<T>>, stamp: Stamp, value: Option<T>) {
    if let Some(value) = value {
        if slot.as_ref().is_none_or(|s| stamp::wins(stamp, s.stamp, Keep::Latest)) {
            *slot = Some(Stamped { stamp, value });
        }
    }
}

/// The latest value of each NEWS2 row, each with its own time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LatestValues {
    respiration_rate: Option<Stamped<f64>>,
    /// SpO2 and the oxygen status it was measured under: one slot, see the module doc.
    oxygenation: Option<Stamped<(Option<f64>, Option<bool>)>>,
    systolic_bp: Option<Stamped<f64>>,
    pulse: Option<Stamped<f64>>,
    consciousness: Option<Stamped<Acvpu>>,
    temperature: Option<Stamped<f64>>,
}

impl LatestValues {
    fn merge(&mut self, stamp: Stamp, p: &Parameters) {
        merge(&mut self.respiration_rate, stamp, p.respiration_rate);
        let oxygenation =
            (p.spo2.is_some() || p.supplemental_oxygen.is_some()).then_some((p.spo2, p.supplemental_oxygen));
        merge(&mut self.oxygenation, stamp, oxygenation);
        merge(&mut self.systolic_bp, stamp, p.systolic_bp);
        merge(&mut self.pulse, stamp, p.pulse);
        merge(&mut self.consciousness, stamp, p.consciousness);
        merge(&mut self.temperature, stamp, p.temperature);
    }

    /// The values that count at `at_ms`: charted at most [`VALUE_TTL_MS`] before it.
    fn as_of(&self, at_ms: i64) -> Parameters {
        fn live<T: Copy>(slot: &Option<Stamped<T>>, at_ms: i64) -> Option<T> {
            slot.filter(|s| at_ms - s.stamp.at_ms <= VALUE_TTL_MS).map(|s| s.value)
        }
        let (spo2, supplemental_oxygen) = live(&self.oxygenation, at_ms).unwrap_or_default();
        Parameters {
            respiration_rate: live(&self.respiration_rate, at_ms),
            spo2,
            supplemental_oxygen,
            systolic_bp: live(&self.systolic_bp, at_ms),
            pulse: live(&self.pulse, at_ms),
            consciousness: live(&self.consciousness, at_ms),
            temperature: live(&self.temperature, at_ms),
        }
    }
}

/// The last score of a patient, as shown by [`AlertState::scores`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastScore {
    news: news2::News2,
    observed_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PatientState {
    values: LatestValues,
    scale: Option<Stamped<Spo2Scale>>,
    /// Birth date from the latest demographics event; `None` unknown.
    birth_date: Option<Stamped<Option<BirthDate>>>,
    /// Why the patient's last set was not scored, if it was not.
    not_applicable: Option<NotApplicable>,
    /// Band of the last score, and the time it was taken as of.
    last_band: Option<(RiskBand, i64)>,
    /// Time of the patient's newest vital-signs set: scores are taken as of it.
    newest_ms: Option<i64>,
    /// Highest position applied for this patient (a repeat changes nothing).
    last_position: u64,
    last_score: Option<LastScore>,
}

impl PatientState {
    fn scale(&self) -> Spo2Scale {
        self.scale.map(|s| s.value).unwrap_or_default()
    }

    fn age_years_at(&self, at_ms: i64) -> Option<u32> {
        let (y, m, d) = self.birth_date.and_then(|b| b.value)?;
        let today = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000))
            .ok()?
            .date();
        let mut age = today.year() - y;
        if (u32::from(u8::from(today.month())), u32::from(today.day())) < (m, d) {
            age -= 1;
        }
        u32::try_from(age).ok()
    }
}

/// A birth date: (year, month, day).
type BirthDate = (i32, u32, u32);

/// A patient by (assigning authority, MRN).
type PatientId = (String, String);

/// The NEWS2 alerting state of every patient seen. Plain data: no I/O besides [`load`].
///
/// [`load`]: AlertState::load
#[derive(Debug, Clone, Default)]
pub struct AlertState {
    patients: HashMap<PatientId, PatientState>,
    audited_position: u64,
    /// Birth dates loaded from the warehouse at start-up, by patient key, for patients
    /// whose first event after the restart is a vital-signs set.
    births: HashMap<Uuid, Stamped<Option<BirthDate>>>,
    /// Patients changed since the last [`take_changes`](Self::take_changes).
    changed: HashSet<PatientId>,
}

/// A patient's state as the real-time snapshot keeps it: (key, JSON).
pub type SavedPatient = (Vec<u8>, Vec<u8>);

fn patient_id_key((authority, mrn): &PatientId) -> Vec<u8> {
    crate::staging::key(authority, mrn)
}

/// The label of a band as stored in the audit table.
pub fn band_label(band: RiskBand) -> &'static str {
    match band {
        RiskBand::Low => "low",
        RiskBand::LowMedium => "low_medium",
        RiskBand::Medium => "medium",
        RiskBand::High => "high",
    }
}

fn band_to_proto(band: RiskBand) -> rt::RiskBand {
    match band {
        RiskBand::Low => rt::RiskBand::Low,
        RiskBand::LowMedium => rt::RiskBand::LowMedium,
        RiskBand::Medium => rt::RiskBand::Medium,
        RiskBand::High => rt::RiskBand::High,
    }
}

/// The name of a NEWS2 row in alerts and scores.
pub fn parameter_name(p: Parameter) -> &'static str {
    match p {
        Parameter::RespirationRate => "respiration_rate",
        Parameter::Spo2 => "spo2",
        Parameter::SupplementalOxygen => "air_or_oxygen",
        Parameter::SystolicBp => "systolic_bp",
        Parameter::Pulse => "pulse",
        Parameter::Consciousness => "consciousness",
        Parameter::Temperature => "temperature",
    }
}

/// The clinical response (RCP 2017, Chart 3) to a band; empty for low.
pub fn response(band: RiskBand) -> &'static str {
    match band {
        RiskBand::Low => "",
        RiskBand::LowMedium => RESPONSE_LOW_MEDIUM,
        RiskBand::Medium => RESPONSE_MEDIUM,
        RiskBand::High => RESPONSE_HIGH,
    }
}

/// The alert id of a vital-signs event: UUID v5 of (source system, event id), so a
/// replayed event raises an alert with the same id (and replaces it in the audit table).
pub fn alert_id(source_system: &str, event_id: &str) -> String {
    Uuid::new_v5(&ALERT_NAMESPACE, format!("{source_system}{SEP}{event_id}").as_bytes()).to_string()
}

/// The kind of alert a band change raises, if any.
pub fn alert_kind(previous: Option<RiskBand>, band: RiskBand) -> Option<AlertKind> {
    if band == RiskBand::Low {
        return None;
    }
    match previous {
        None | Some(RiskBand::Low) => Some(AlertKind::Alert),
        Some(previous) if band > previous => Some(AlertKind::Escalation),
        Some(_) => None,
    }
}

/// The alert a `risk_score` event with `alert` set raises.
fn risk_alert(
    position: u64,
    event: &pb::ClinicalEvent,
    patient: &pb::PatientRef,
    r: &pb::RiskScore,
    location: Option<&AlertLocation>,
) -> rt::Alert {
    let (department_code, ward_code, bed_code) = match location {
        Some(l) => (l.department_code.clone(), l.ward_code.clone(), l.bed_code.clone()),
        None => (r.department_code.clone(), r.ward_code.clone(), String::new()),
    };
    rt::Alert {
        alert_id: alert_id(&event.source_system, &event.event_id),
        kind: AlertKind::Risk as i32,
        patient: Some(patient.clone()),
        encounter_id: r.encounter_id.clone(),
        department_code,
        ward_code,
        bed_code,
        source_event_id: event.event_id.clone(),
        source_system: event.source_system.clone(),
        position,
        observed_at: event.occurred_at,
        raised_at: Some(now()),
        response: format!(
            "clinical review: {} risk {:.0}% is at or above the model's threshold ({:.0}%)",
            r.model.replace('_', " "),
            r.probability * 100.0,
            r.threshold * 100.0
        ),
        model: r.model.clone(),
        model_version: r.model_version,
        probability: r.probability,
        ..Default::default()
    }
}

fn timestamp_ms(t: Option<&Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn timestamp_of_ms(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn subscores_map(news: &news2::News2) -> HashMap<String, u32> {
    news.subscores
        .iter()
        .filter_map(|(p, s)| s.map(|s| (parameter_name(p).to_string(), u32::from(s))))
        .collect()
}

fn missing_names(news: &news2::News2) -> Vec<String> {
    news.missing.iter().map(|p| parameter_name(*p).to_string()).collect()
}

impl AlertState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest staging position whose alert is in the audit table: events at or
    /// below it update the state but raise nothing.
    pub fn audited_position(&self) -> u64 {
        self.audited_position
    }

    /// Raises the audited position (e.g. after a restart with a state built otherwise).
    pub fn set_audited_position(&mut self, position: u64) {
        self.audited_position = self.audited_position.max(position);
    }

    /// The states of the patients changed since the last call, for the snapshot.
    pub fn take_changes(&mut self) -> std::result::Result<Vec<SavedPatient>, serde_json::Error> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|id| Some((patient_id_key(&id), self.patients.get(&id)?)))
            .map(|(k, p)| Ok((k, serde_json::to_vec(p)?)))
            .collect()
    }

    /// The state saved by [`take_changes`](Self::take_changes) over time, with the
    /// highest audited position (from the audit table).
    pub fn restore(
        saved: impl IntoIterator<Item = SavedPatient>,
        audited_position: u64,
    ) -> std::result::Result<Self, String> {
        let mut state = Self::new();
        state.audited_position = audited_position;
        for (key, json) in saved {
            let mut parts = key.splitn(2, |b| *b == 0x1f);
            let (Some(authority), Some(mrn)) = (parts.next(), parts.next()) else {
                return Err(format!("snapshot key {key:?} is not authority 0x1f mrn"));
            };
            let id = (
                String::from_utf8_lossy(authority).into_owned(),
                String::from_utf8_lossy(mrn).into_owned(),
            );
            let patient: PatientState =
                serde_json::from_slice(&json).map_err(|e| format!("snapshot of patient {id:?}: {e}"))?;
            state.patients.insert(id, patient);
        }
        Ok(state)
    }

    /// Patients with a state (scored, charted or with a known birth date).
    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// Whether NEWS2 applies to the patient as of their last vital signs (`Ok` when
    /// unknown): a patient under 16 is flagged here rather than scored.
    pub fn applicability(&self, patient: &pb::PatientRef) -> std::result::Result<(), NotApplicable> {
        match self
            .patients
            .get(&(patient.assigning_authority.clone(), patient.mrn.clone()))
        {
            Some(PatientState {
                not_applicable: Some(n),
                ..
            }) => Err(*n),
            _ => Ok(()),
        }
    }

    /// Rebuilds the state at start-up from the warehouse (a client on the `warehouse`
    /// database), by replaying what the warehouse holds through the same rules as live:
    /// - the highest audited alert position, from `news2_alerts`;
    /// - birth dates (for the under-16 rule) from the current `dim_patient` versions;
    /// - each patient's vital-signs sets within 24 h of their newest set (older values
    ///   cannot count any more), plus the newest set that stated an SpO2 scale
    ///   ([`vitals::news2_inputs`]), replayed in staging order without alerting.
    ///
    /// Replaying staging after the warehouse's load watermark then gives the state of a
    /// process that never stopped.
    pub async fn load(warehouse: &Client) -> Result<Self> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Birth {
            #[serde(with = "clickhouse::serde::uuid")]
            patient_key: Uuid,
            birth_date: String,
            valid_from_ms: i64,
        }

        let mut state = Self::new();
        state.audited_position = audited_position_in(warehouse).await?;
        let births = warehouse
            .query(
                "SELECT patient_key, birth_date, valid_from_ms FROM dim_patient FINAL \
                 WHERE is_current = 1 AND is_deleted = 0 AND birth_date != ''",
            )
            .fetch_all::<Birth>()
            .await?;
        state.births = births
            .into_iter()
            .filter_map(|b| {
                let date = parse_iso_date(&b.birth_date)?;
                Some((
                    b.patient_key,
                    Stamped {
                        stamp: Stamp {
                            at_ms: b.valid_from_ms,
                            position: 0,
                        },
                        value: Some(date),
                    },
                ))
            })
            .collect();
        // Every patient with a known birth date gets a state now, so that a snapshot
        // taken later holds them all and a start-up from it needs no warehouse read.
        let keys: Vec<Uuid> = state.births.keys().copied().collect();
        for (key, id) in census::identities(warehouse, &keys).await? {
            if let Some(birth) = state.births.get(&key).copied() {
                state.patient(id).birth_date = Some(birth);
            }
        }
        let (sets, unknown) = vitals::news2_inputs(warehouse, VALUE_TTL_MS).await?;
        for set in sets {
            let event = pb::ClinicalEvent {
                event_id: set.event_id,
                source_system: set.source_system,
                occurred_at: Some(timestamp_of_ms(set.taken_at_ms)),
                patient: Some(set.patient),
                payload: Some(Payload::VitalSigns(set.vital_signs)),
            };
            state.apply_inner(set.position, &event, None, false);
        }
        if unknown > 0 {
            tracing::warn!(
                sets = unknown,
                "vital-sign sets of patients missing from patient_identity skipped"
            );
        }
        tracing::info!(
            patients = state.patients.len(),
            audited_position = state.audited_position,
            "NEWS2 alert state loaded"
        );
        Ok(state)
    }

    /// The state of a patient, created with the birth date loaded from the warehouse at
    /// start-up (if any) when first seen.
    fn patient(&mut self, id: PatientId) -> &mut PatientState {
        if !self.changed.contains(&id) {
            self.changed.insert(id.clone());
        }
        let births = &self.births;
        self.patients
            .entry(id)
            .or_insert_with_key(|(authority, mrn)| PatientState {
                birth_date: births.get(&keys::patient_key(authority, mrn)).copied(),
                ..PatientState::default()
            })
    }

    /// Applies one committed event: demographics update the patient's age, vital signs
    /// update the parameters and may raise an alert (see the module doc). `location` is
    /// where the patient is now, if known.
    pub fn apply(
        &mut self,
        position: u64,
        event: &pb::ClinicalEvent,
        location: Option<&AlertLocation>,
    ) -> Option<rt::Alert> {
        self.apply_inner(position, event, location, true)
    }

    fn apply_inner(
        &mut self,
        position: u64,
        event: &pb::ClinicalEvent,
        location: Option<&AlertLocation>,
        may_alert: bool,
    ) -> Option<rt::Alert> {
        let patient = event.patient.as_ref().filter(|p| !p.mrn.is_empty())?;
        let stamp = Stamp {
            at_ms: timestamp_ms(event.occurred_at.as_ref()),
            position,
        };
        let id = (patient.assigning_authority.clone(), patient.mrn.clone());
        match event.payload.as_ref()? {
            Payload::PatientRegistered(d) | Payload::PatientUpdated(d) => {
                // An update is a full snapshot: no birth date means unknown.
                let birth = d
                    .birth_date
                    .as_ref()
                    .filter(|b| b.year > 0)
                    .and_then(|b| Some((b.year, u32::try_from(b.month).ok()?, u32::try_from(b.day).ok()?)));
                merge(&mut self.patient(id).birth_date, stamp, Some(birth));
                None
            }
            Payload::VitalSigns(v) => {
                let p = self.patient(id);
                if position <= p.last_position {
                    return None; // a repeat
                }
                p.last_position = position;
                p.values.merge(stamp, &Parameters::from_vital_signs(v));
                let scale = match pb::Spo2Scale::try_from(v.spo2_scale) {
                    Ok(pb::Spo2Scale::Spo2Scale1) => Some(Spo2Scale::Scale1),
                    Ok(pb::Spo2Scale::Spo2Scale2) => Some(Spo2Scale::Scale2),
                    _ => None,
                };
                merge(&mut p.scale, stamp, scale);
                // Scores are taken as of the newest set: a late set can fill or update a
                // parameter, never bring back an expired value or move the time back.
                let as_of = p.newest_ms.map_or(stamp.at_ms, |n| n.max(stamp.at_ms));
                p.newest_ms = Some(as_of);
                if let Err(n) = news2::applicability(p.age_years_at(as_of), None) {
                    p.not_applicable = Some(n);
                    p.last_score = None;
                    p.last_band = None;
                    return None;
                }
                p.not_applicable = None;
                let news = news2::score(&p.values.as_of(as_of), p.scale());
                let previous = p
                    .last_band
                    .replace((news.band, as_of))
                    .filter(|(_, at)| as_of - at <= VALUE_TTL_MS)
                    .map(|(band, _)| band);
                p.last_score = Some(LastScore {
                    news: news.clone(),
                    observed_at_ms: as_of,
                });
                let kind = alert_kind(previous, news.band)?;
                if !may_alert || position <= self.audited_position {
                    return None;
                }
                let (department_code, ward_code, bed_code, encounter_id) = match location {
                    Some(l) => (
                        l.department_code.clone(),
                        l.ward_code.clone(),
                        l.bed_code.clone(),
                        l.encounter_id.clone(),
                    ),
                    None => Default::default(),
                };
                Some(rt::Alert {
                    alert_id: alert_id(&event.source_system, &event.event_id),
                    kind: kind as i32,
                    patient: Some(patient.clone()),
                    encounter_id: if encounter_id.is_empty() {
                        v.encounter_id.clone()
                    } else {
                        encounter_id
                    },
                    department_code,
                    ward_code,
                    bed_code,
                    score: u32::from(news.total),
                    band: band_to_proto(news.band) as i32,
                    previous_band: previous.map_or(rt::RiskBand::Unspecified, band_to_proto) as i32,
                    subscores: subscores_map(&news),
                    missing_parameters: missing_names(&news),
                    source_event_id: event.event_id.clone(),
                    source_system: event.source_system.clone(),
                    position,
                    observed_at: Some(timestamp_of_ms(as_of)),
                    raised_at: Some(now()),
                    response: response(news.band).to_string(),
                    ..Default::default()
                })
            }
            Payload::RiskScore(r) => {
                // Stateless: the sidecar decides (from the encounter's previous score) and
                // says so in `alert`; the position rule below is the same as for NEWS2.
                if !r.alert || !may_alert || position <= self.audited_position {
                    return None;
                }
                Some(risk_alert(position, event, patient, r, location))
            }
            _ => None,
        }
    }

    /// The last score of each patient in the hospital now (located by `locate`) on
    /// `ward_codes` (every ward if empty); ordered by ward, bed and patient. Patients not
    /// scored (under 16, or no vital signs yet) or no longer in the hospital are left out.
    pub fn scores(
        &self,
        ward_codes: &[String],
        locate: impl Fn(&pb::PatientRef) -> Option<AlertLocation>,
    ) -> Vec<PatientScore> {
        let mut out: Vec<PatientScore> = self
            .patients
            .iter()
            .filter_map(|((authority, mrn), p)| {
                let last = p.last_score.as_ref()?;
                let patient = pb::PatientRef {
                    mrn: mrn.clone(),
                    assigning_authority: authority.clone(),
                };
                let location = locate(&patient)?;
                if !ward_codes.is_empty() && !ward_codes.contains(&location.ward_code) {
                    return None;
                }
                let (ward_code, bed_code) = (location.ward_code, location.bed_code);
                Some(PatientScore {
                    patient: Some(patient),
                    ward_code,
                    bed_code,
                    score: u32::from(last.news.total),
                    band: band_to_proto(last.news.band) as i32,
                    subscores: subscores_map(&last.news),
                    missing_parameters: missing_names(&last.news),
                    observed_at: Some(timestamp_of_ms(last.observed_at_ms)),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |s: &PatientScore| {
                let p = s.patient.clone().unwrap_or_default();
                (s.ward_code.clone(), s.bed_code.clone(), p.assigning_authority, p.mrn)
            };
            key(a).cmp(&key(b))
        });
        out
    }
}

/// The highest staging position whose alert is in the audit table (a client on the
/// `warehouse` database).
pub async fn audited_position_in(warehouse: &Client) -> Result<u64> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Audited {
        position: u64,
    }
    Ok(warehouse
        .query(&format!("SELECT max(position) AS position FROM {AUDIT_TABLE}"))
        .fetch_one::<Audited>()
        .await?
        .position)
}

/// `YYYY-MM-DD` (as `dim_patient.birth_date` holds it).
fn parse_iso_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut parts = s.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.get(..2)?.parse().ok()?;
    Some((y, m, d))
}

/// One row of `warehouse.news2_alerts`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AuditRow {
    pub alert_id: String,
    /// "alert", "escalation" or "risk".
    pub kind: String,
    pub patient_authority: String,
    pub patient_mrn: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    pub score: u8,
    /// [`band_label`]s.
    pub band: String,
    pub previous_band: String,
    pub subscore_names: Vec<String>,
    pub subscore_values: Vec<u8>,
    pub missing_parameters: Vec<String>,
    pub source_system: String,
    pub source_event_id: String,
    pub position: u64,
    pub observed_at_ms: i64,
    pub raised_at_ms: i64,
    pub response: String,
    /// For risk alerts: which model, its version and probability (empty / 0 otherwise).
    pub model: String,
    pub model_version: u64,
    pub probability: f64,
}

fn proto_band_label(wire: i32) -> String {
    match rt::RiskBand::try_from(wire) {
        Ok(rt::RiskBand::Low) => "low",
        Ok(rt::RiskBand::LowMedium) => "low_medium",
        Ok(rt::RiskBand::Medium) => "medium",
        Ok(rt::RiskBand::High) => "high",
        _ => "",
    }
    .to_string()
}

impl From<&rt::Alert> for AuditRow {
    fn from(a: &rt::Alert) -> Self {
        let patient = a.patient.clone().unwrap_or_default();
        let subscores: BTreeMap<&String, &u32> = a.subscores.iter().collect();
        Self {
            alert_id: a.alert_id.clone(),
            kind: match AlertKind::try_from(a.kind) {
                Ok(AlertKind::Alert) => "alert",
                Ok(AlertKind::Escalation) => "escalation",
                Ok(AlertKind::Risk) => "risk",
                _ => "",
            }
            .to_string(),
            patient_key: keys::patient_key(&patient.assigning_authority, &patient.mrn),
            patient_authority: patient.assigning_authority,
            patient_mrn: patient.mrn,
            encounter_id: a.encounter_id.clone(),
            department_code: a.department_code.clone(),
            ward_code: a.ward_code.clone(),
            bed_code: a.bed_code.clone(),
            score: u8::try_from(a.score).unwrap_or(u8::MAX),
            band: proto_band_label(a.band),
            previous_band: proto_band_label(a.previous_band),
            subscore_names: subscores.keys().map(|k| (*k).clone()).collect(),
            subscore_values: subscores
                .values()
                .map(|v| u8::try_from(**v).unwrap_or(u8::MAX))
                .collect(),
            missing_parameters: a.missing_parameters.clone(),
            source_system: a.source_system.clone(),
            source_event_id: a.source_event_id.clone(),
            position: a.position,
            observed_at_ms: timestamp_ms(a.observed_at.as_ref()),
            raised_at_ms: timestamp_ms(a.raised_at.as_ref()),
            response: a.response.clone(),
            model: a.model.clone(),
            model_version: a.model_version,
            probability: a.probability,
        }
    }
}

/// Flush limits and retry policy of [`AlertAudit`].
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Alerts waiting to be written; `record` waits when the queue is full.
    pub queue: usize,
    /// Rows per insert.
    pub max_rows: usize,
    /// Longest an alert waits before its batch is written.
    pub period: Duration,
    /// First retry delay of a failed insert, doubled up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts at shutdown before giving up (with an error log).
    pub shutdown_attempts: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            queue: 10_000,
            max_rows: 1_000,
            period: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            shutdown_attempts: 5,
        }
    }
}

/// Writes alerts to `warehouse.news2_alerts` in batches (by rows or period, gathered by
/// the staging writer's rule, [`fill_batch`]; one insert per flush). A failed insert is retried with backoff and the queue fills meanwhile
/// (so [`record`](Self::record) waits): alerts are never dropped silently; at shutdown
/// the rest is written, or logged as an error if ClickHouse stays down.
pub struct AlertAudit {
    tx: mpsc::Sender<AuditRow>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Highest position queued, and highest written (in queue order).
    recorded: std::sync::atomic::AtomicU64,
    written: watch::Receiver<u64>,
}

impl AlertAudit {
    /// Starts the writer on `warehouse`, a client on the `warehouse` database.
    pub fn start(warehouse: Client) -> Self {
        Self::start_with(warehouse, AuditOptions::default())
    }

    pub fn start_with(warehouse: Client, options: AuditOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let (stop, stopped) = watch::channel(false);
        let (written_tx, written) = watch::channel(0);
        let task = tokio::spawn(run_audit(warehouse, options, rx, stopped, written_tx));
        Self {
            tx,
            stop,
            task,
            recorded: Default::default(),
            written,
        }
    }

    /// Whether every alert queued so far is in the audit table.
    pub fn all_written(&self) -> bool {
        *self.written.borrow() >= self.recorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues one alert, waiting while the queue is full.
    pub async fn record(&self, alert: &rt::Alert) {
        self.recorded
            .fetch_max(alert.position, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(AuditRow::from(alert)).await.is_err() {
            tracing::error!(
                alert_id = alert.alert_id,
                "NEWS2 alert audit writer is gone: alert not audited"
            );
        }
    }

    /// Writes what is queued and stops; says whether every alert was written.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "NEWS2 alert audit writer failed");
        }
        *self.written.borrow() >= self.recorded.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn run_audit(
    client: Client,
    options: AuditOptions,
    mut rx: mpsc::Receiver<AuditRow>,
    mut stopped: watch::Receiver<bool>,
    written: watch::Sender<u64>,
) {
    let mut batch: Vec<AuditRow> = Vec::with_capacity(options.max_rows);
    let mut open = true;
    while open {
        // Wait for the first row, then up to `period` (or `max_rows`) for the rest.
        match rx.recv().await {
            Some(row) => batch.push(row),
            None => break,
        }
        let deadline = tokio::time::Instant::now() + options.period;
        open = fill_batch(&mut rx, &mut batch, options.max_rows, deadline, |_| 1).await;
        let last = batch.iter().map(|r| r.position).max().unwrap_or(0);
        if write_with_retry(&client, &options, &mut batch, &mut stopped).await {
            written.send_modify(|w| *w = (*w).max(last));
        }
    }
    // Closed: drain anything left and write it.
    while let Ok(row) = rx.try_recv() {
        batch.push(row);
    }
    for chunk in batch.chunks(options.max_rows) {
        let mut chunk = chunk.to_vec();
        let last = chunk.iter().map(|r| r.position).max().unwrap_or(0);
        if write_with_retry(&client, &options, &mut chunk, &mut stopped).await {
            written.send_modify(|w| *w = (*w).max(last));
        }
    }
}

/// Inserts `batch` (then clears it), retrying with backoff; forever while running, at
/// most `shutdown_attempts` times once shutdown began. Says whether it was written.
async fn write_with_retry(
    client: &Client,
    options: &AuditOptions,
    batch: &mut Vec<AuditRow>,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut backoff = options.initial_backoff;
    let mut attempts_after_stop = 0u32;
    loop {
        match crate::warehouse::insert_rows(client, AUDIT_TABLE, batch).await {
            Ok(n) => {
                tracing::debug!(rows = n, "NEWS2 alerts audited");
                batch.clear();
                return true;
            }
            Err(e) => {
                if *stopped.borrow() {
                    attempts_after_stop += 1;
                    if attempts_after_stop >= options.shutdown_attempts {
                        let ids: Vec<&str> = batch.iter().map(|r| r.alert_id.as_str()).collect();
                        tracing::error!(
                            error = %e,
                            alerts = batch.len(),
                            alert_ids = ?ids,
                            "giving up auditing NEWS2 alerts at shutdown: these alerts are NOT in news2_alerts"
                        );
                        batch.clear();
                        return false;
                    }
                }
                tracing::warn!(error = %e, rows = batch.len(), retry_in = ?backoff, "NEWS2 alert audit insert failed");
                if *stopped.borrow() {
                    tokio::time::sleep(backoff).await;
                } else {
                    // Wake early on shutdown, to switch to bounded retries.
                    let _ = tokio::time::timeout(backoff, stopped.changed()).await;
                }
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const T0_MS: i64 = 1_700_000_000_000;

    fn patient(mrn: &str) -> pb::PatientRef {
        pb::PatientRef {
            mrn: mrn.into(),
            assigning_authority: "hosp".into(),
        }
    }

    fn ts(ms: i64) -> Timestamp {
        Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: 0,
        }
    }

    fn obs(code: &str, value: f64, unit: &str) -> pb::Observation {
        pb::Observation {
            loinc_code: code.into(),
            value,
            unit: unit.into(),
        }
    }

    /// Vital signs builder: `(rr, spo2, sbp, pulse, temp)`, each optional.
    #[derive(Default, Clone)]
    struct Set {
        rr: Option<f64>,
        spo2: Option<f64>,
        oxygen: Option<bool>,
        sbp: Option<f64>,
        pulse: Option<f64>,
        acvpu: pb::Consciousness,
        temp: Option<f64>,
        scale: pb::Spo2Scale,
    }

    impl Set {
        fn normal() -> Self {
            Self {
                rr: Some(16.0),
                spo2: Some(97.0),
                oxygen: Some(false),
                sbp: Some(120.0),
                pulse: Some(70.0),
                acvpu: pb::Consciousness::Alert,
                temp: Some(37.0),
                scale: pb::Spo2Scale::Unspecified,
            }
        }

        fn event(&self, mrn: &str, id: &str, at_ms: i64) -> pb::ClinicalEvent {
            let mut observations = vec![];
            let codes = [
                (self.rr, news2::loinc::RESPIRATORY_RATE, "/min"),
                (self.spo2, news2::loinc::SPO2_PULSE_OXIMETRY, "%"),
                (self.sbp, news2::loinc::SYSTOLIC_BP, "mm[Hg]"),
                (self.pulse, news2::loinc::HEART_RATE, "/min"),
                (self.temp, news2::loinc::BODY_TEMPERATURE, "Cel"),
            ];
            for (v, code, unit) in codes {
                if let Some(v) = v {
                    observations.push(obs(code, v, unit));
                }
            }
            pb::ClinicalEvent {
                event_id: id.into(),
                source_system: "ward-obs".into(),
                occurred_at: Some(ts(at_ms)),
                patient: Some(patient(mrn)),
                payload: Some(Payload::VitalSigns(pb::VitalSigns {
                    encounter_id: format!("ENC-{mrn}"),
                    observations,
                    consciousness: self.acvpu as i32,
                    supplemental_oxygen: self.oxygen,
                    spo2_scale: self.scale as i32,
                })),
            }
        }
    }

    fn kind_band(a: &rt::Alert) -> (AlertKind, rt::RiskBand, rt::RiskBand) {
        (
            AlertKind::try_from(a.kind).unwrap(),
            rt::RiskBand::try_from(a.band).unwrap(),
            rt::RiskBand::try_from(a.previous_band).unwrap(),
        )
    }

    /// Applies each set at an hour's interval; returns what each raised.
    fn run(state: &mut AlertState, mrn: &str, sets: &[Set]) -> Vec<Option<rt::Alert>> {
        sets.iter()
            .enumerate()
            .map(|(i, s)| {
                let at = T0_MS + i as i64 * HOUR_MS;
                state.apply(i as u64 + 1, &s.event(mrn, &format!("{mrn}-{i}"), at), None)
            })
            .collect()
    }

    fn low_medium() -> Set {
        // Single 3: new confusion, total 3.
        Set {
            acvpu: pb::Consciousness::NewConfusion,
            ..Set::normal()
        }
    }
    fn medium() -> Set {
        // RR 22 (2) + pulse 115 (2) + temp 38.5 (1) = 5.
        Set {
            rr: Some(22.0),
            pulse: Some(115.0),
            temp: Some(38.5),
            ..Set::normal()
        }
    }
    fn high() -> Set {
        // RR 26 (3) + pulse 115 (2) + SBP 95 (2) = 7.
        Set {
            rr: Some(26.0),
            pulse: Some(115.0),
            sbp: Some(95.0),
            ..Set::normal()
        }
    }

    fn risk_score_event(id: &str, alert: bool) -> pb::ClinicalEvent {
        pb::ClinicalEvent {
            event_id: id.into(),
            source_system: "hospital-ml".into(),
            occurred_at: Some(ts(T0_MS)),
            patient: Some(patient("R1")),
            payload: Some(Payload::RiskScore(pb::RiskScore {
                encounter_id: "ENC-R1".into(),
                model: "deterioration_24h".into(),
                model_version: 2,
                probability: 0.41,
                threshold: 0.2,
                alert,
                ward_code: "W10".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_flagged_risk_score_raises_a_risk_alert_once() {
        let mut state = AlertState::new();
        assert!(state.apply(1, &risk_score_event("r0", false), None).is_none());
        let a = state.apply(2, &risk_score_event("r1", true), None).expect("flagged");
        assert_eq!(AlertKind::try_from(a.kind).unwrap(), AlertKind::Risk);
        assert_eq!(
            (a.model.as_str(), a.model_version, a.probability),
            ("deterioration_24h", 2, 0.41)
        );
        assert_eq!(a.ward_code, "W10", "the score's ward when the census has none");
        assert!(a.response.contains("41%"), "{}", a.response);
        let row = AuditRow::from(&a);
        assert_eq!((row.kind.as_str(), row.model.as_str()), ("risk", "deterioration_24h"));
        // At or below the audited position it was raised before a restart.
        state.set_audited_position(3);
        assert!(state.apply(3, &risk_score_event("r2", true), None).is_none());
        assert!(state.apply(4, &risk_score_event("r3", true), None).is_some());
    }

    #[test]
    fn enters_escalates_stays_falls_and_rises_again() {
        use rt::RiskBand as B;
        let mut state = AlertState::new();
        let raised = run(
            &mut state,
            "P1",
            &[
                Set::normal(), // low: nothing
                low_medium(),  // enter
                low_medium(),  // unchanged
                medium(),      // escalate
                high(),        // escalate
                high(),        // unchanged
                medium(),      // fall: nothing
                high(),        // rise again
                Set::normal(), // low
                medium(),      // enter again
            ],
        );
        let got: Vec<_> = raised.iter().map(|a| a.as_ref().map(kind_band)).collect();
        assert_eq!(
            got,
            vec![
                None,
                Some((AlertKind::Alert, B::LowMedium, B::Low)),
                None,
                Some((AlertKind::Escalation, B::Medium, B::LowMedium)),
                Some((AlertKind::Escalation, B::High, B::Medium)),
                None,
                None,
                Some((AlertKind::Escalation, B::High, B::Medium)),
                None,
                Some((AlertKind::Alert, B::Medium, B::Low)),
            ]
        );
        // From no previous score at all.
        let mut state = AlertState::new();
        let a = run(&mut state, "P2", &[high()]).remove(0).unwrap();
        assert_eq!(kind_band(&a), (AlertKind::Alert, B::High, B::Unspecified));
    }

    #[test]
    fn alerts_carry_every_field() {
        let mut state = AlertState::new();
        let location = AlertLocation {
            encounter_id: "ENC-LOC".into(),
            department_code: "MED".into(),
            ward_code: "W1".into(),
            bed_code: "B3".into(),
        };
        let event = high().event("P1", "ev-1", T0_MS);
        let a = state.apply(42, &event, Some(&location)).unwrap();
        assert_eq!(a.alert_id, alert_id("ward-obs", "ev-1"));
        assert_eq!(a.patient, Some(patient("P1")));
        assert_eq!(
            (
                a.encounter_id.as_str(),
                a.department_code.as_str(),
                a.ward_code.as_str(),
                a.bed_code.as_str()
            ),
            ("ENC-LOC", "MED", "W1", "B3")
        );
        assert_eq!(a.score, 7);
        assert_eq!(a.subscores.len(), 7);
        assert_eq!(a.subscores["respiration_rate"], 3);
        assert_eq!(a.subscores["pulse"], 2);
        assert_eq!(a.subscores["systolic_bp"], 2);
        assert_eq!(a.subscores["air_or_oxygen"], 0);
        assert!(a.missing_parameters.is_empty());
        assert_eq!(
            (a.source_system.as_str(), a.source_event_id.as_str()),
            ("ward-obs", "ev-1")
        );
        assert_eq!(a.position, 42);
        assert_eq!(a.observed_at, Some(ts(T0_MS)));
        assert!(a.raised_at.unwrap().seconds > 1_700_000_000);
        assert!(a.response.starts_with("emergency response"), "{}", a.response);
        assert!(a.response.contains("continuous monitoring"));

        // No location: the encounter of the vital signs.
        let mut state = AlertState::new();
        let a = state.apply(1, &event, None).unwrap();
        assert_eq!(a.encounter_id, "ENC-P1");
        assert_eq!(a.ward_code, "");
    }

    #[test]
    fn partial_sets_merge_over_the_latest_values() {
        let mut state = AlertState::new();
        let sets = [
            Set {
                rr: Some(22.0),
                ..Set::default()
            }, // 2, six missing
            Set {
                pulse: Some(115.0),
                ..Set::default()
            }, // 2 + 2
            Set {
                temp: Some(38.5),
                ..Set::default()
            }, // 2 + 2 + 1 = 5: medium
        ];
        let raised = run(&mut state, "P1", &sets);
        assert!(raised[0].is_none() && raised[1].is_none());
        let a = raised[2].as_ref().unwrap();
        assert_eq!((a.score, a.band), (5, rt::RiskBand::Medium as i32));
        assert_eq!(
            a.missing_parameters,
            vec!["spo2", "air_or_oxygen", "systolic_bp", "consciousness"]
        );
        assert_eq!(a.subscores.len(), 3);
    }

    #[test]
    fn values_older_than_24_hours_do_not_count() {
        let mut state = AlertState::new();
        let rr = Set {
            rr: Some(22.0),
            ..Set::default()
        };
        let pulse = Set {
            pulse: Some(115.0),
            ..Set::default()
        };
        let temp = Set {
            temp: Some(38.5),
            ..Set::default()
        };
        assert!(state.apply(1, &rr.event("P1", "a", T0_MS), None).is_none());
        assert!(state.apply(2, &pulse.event("P1", "b", T0_MS + HOUR_MS), None).is_none());
        // 24 h after the RR: it still counts (5, medium).
        let a = state
            .apply(3, &temp.event("P1", "c", T0_MS + 24 * HOUR_MS), None)
            .unwrap();
        assert_eq!(a.score, 5);
        // A minute later the RR has expired: pulse 2 + temp 1 = 3, low.
        state.apply(4, &temp.event("P1", "d", T0_MS + 24 * HOUR_MS + 60_000), None);
        let s = state.scores(&[], |_| Some(AlertLocation::default()));
        assert_eq!((s[0].score, s[0].band), (3, rt::RiskBand::Low as i32));
        assert!(s[0].missing_parameters.contains(&"respiration_rate".to_string()));
    }

    #[test]
    fn a_late_set_does_not_overwrite_newer_values() {
        let mut state = AlertState::new();
        let p = |v: f64| Set {
            pulse: Some(v),
            ..Set::default()
        };
        state.apply(1, &p(70.0).event("P1", "a", T0_MS + HOUR_MS), None);
        // Staged later, taken earlier.
        state.apply(2, &p(135.0).event("P1", "b", T0_MS), None);
        let s = state.scores(&[], |_| Some(AlertLocation::default()));
        assert_eq!(s[0].subscores["pulse"], 0);
    }

    #[test]
    fn a_late_set_brings_back_no_expired_value_and_time_never_moves_back() {
        let mut state = AlertState::new();
        // RR only, 30 h before the newest set; the newest set has no RR.
        let rr_only = Set {
            rr: Some(30.0),
            ..Set::default()
        };
        let pulse = Set {
            pulse: Some(70.0),
            ..Set::default()
        };
        assert!(state
            .apply(1, &pulse.event("P1", "now", T0_MS + 30 * HOUR_MS), None)
            .is_none());
        let late = state.apply(2, &rr_only.event("P1", "late", T0_MS), None);
        assert!(
            late.is_none(),
            "an RR from 30 h before the newest set never scores: {late:?}"
        );
        let s = state.scores(&[], |_| Some(AlertLocation::default()));
        assert!(!s[0].subscores.contains_key("respiration_rate"), "{s:?}");
        assert_eq!(s[0].observed_at, Some(ts(T0_MS + 30 * HOUR_MS)), "observed_at stays");

        // A late set within 24 h of the newest does count, scored as of the newest.
        let fill = state.apply(3, &rr_only.event("P1", "late-2", T0_MS + 20 * HOUR_MS), None);
        let fill = fill.expect("RR 30 scores 3: low-medium");
        assert_eq!(fill.observed_at, Some(ts(T0_MS + 30 * HOUR_MS)));
        assert_eq!(fill.subscores["respiration_rate"], 3);
    }

    #[test]
    fn a_band_older_than_24_hours_does_not_hold_back_a_new_alert() {
        let mut state = AlertState::new();
        let first = state.apply(1, &medium().event("P1", "a", T0_MS), None);
        assert_eq!(kind_band(&first.unwrap()).0, AlertKind::Alert);
        assert!(state
            .apply(2, &medium().event("P1", "b", T0_MS + HOUR_MS), None)
            .is_none());
        // Readmitted days later, medium again: a new alert, not silence.
        let again = state.apply(3, &medium().event("P1", "c", T0_MS + 72 * HOUR_MS), None);
        let again = again.expect("a band from three days ago is not the current band");
        assert_eq!(
            kind_band(&again),
            (AlertKind::Alert, rt::RiskBand::Medium, rt::RiskBand::Unspecified)
        );
    }

    #[test]
    fn scale_2_is_sticky_until_a_set_says_scale_1() {
        let mut state = AlertState::new();
        // SpO2 89% on air: scale 1 scores 3 (low-medium); scale 2 scores 0.
        let set = |scale| Set {
            spo2: Some(89.0),
            scale,
            ..Set::normal()
        };
        let raised = run(
            &mut state,
            "P1",
            &[
                set(pb::Spo2Scale::Spo2Scale2),
                set(pb::Spo2Scale::Unspecified),
                set(pb::Spo2Scale::Spo2Scale1),
                set(pb::Spo2Scale::Unspecified),
            ],
        );
        let got: Vec<bool> = raised.iter().map(Option::is_some).collect();
        assert_eq!(got, vec![false, false, true, false]);
        assert_eq!(raised[2].as_ref().unwrap().subscores["spo2"], 3);
        // Default: scale 1.
        let mut state = AlertState::new();
        assert!(state
            .apply(1, &set(pb::Spo2Scale::Unspecified).event("P2", "x", T0_MS), None)
            .is_some());
    }

    fn demographics(mrn: &str, year: i32, month: i32, day: i32, at_ms: i64) -> pb::ClinicalEvent {
        pb::ClinicalEvent {
            event_id: format!("demo-{mrn}-{at_ms}"),
            source_system: "pas".into(),
            occurred_at: Some(ts(at_ms)),
            patient: Some(patient(mrn)),
            payload: Some(Payload::PatientRegistered(pb::PatientDemographics {
                birth_date: Some(pb::Date { year, month, day }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn under_16_is_flagged_not_scored() {
        // T0 is 2023-11-14.
        let mut state = AlertState::new();
        state.apply(1, &demographics("CHILD", 2010, 1, 1, T0_MS - HOUR_MS), None);
        assert!(state.apply(2, &high().event("CHILD", "c1", T0_MS), None).is_none());
        assert_eq!(
            state.applicability(&patient("CHILD")),
            Err(NotApplicable::UnderSixteen { age_years: 13 })
        );
        assert!(state.scores(&[], |_| Some(AlertLocation::default())).is_empty());

        // Turns 16 the day after T0: scored from then on.
        state.apply(3, &demographics("TEEN", 2007, 11, 15, T0_MS - HOUR_MS), None);
        assert!(state.apply(4, &high().event("TEEN", "t1", T0_MS), None).is_none());
        assert!(state
            .apply(5, &high().event("TEEN", "t2", T0_MS + 24 * HOUR_MS), None)
            .is_some());
        assert_eq!(state.applicability(&patient("TEEN")), Ok(()));

        // Unknown age is scored.
        assert!(state.apply(6, &high().event("ADULT", "a1", T0_MS), None).is_some());
    }

    #[test]
    fn nothing_is_raised_at_or_below_the_audited_position_nor_for_a_repeat() {
        let mut state = AlertState::new();
        state.set_audited_position(10);
        assert!(state.apply(9, &high().event("P1", "a", T0_MS), None).is_none());
        // The state moved on: the band is remembered, so high again is unchanged.
        assert!(state
            .apply(11, &high().event("P1", "b", T0_MS + HOUR_MS), None)
            .is_none());
        assert!(state.apply(10, &medium().event("P2", "c", T0_MS), None).is_none());
        let a = state
            .apply(12, &high().event("P2", "d", T0_MS + HOUR_MS), None)
            .unwrap();
        assert_eq!(kind_band(&a).0, AlertKind::Escalation);
        // A repeated position raises nothing and changes nothing.
        assert!(state
            .apply(12, &high().event("P2", "d", T0_MS + HOUR_MS), None)
            .is_none());
        let mut fresh = AlertState::new();
        let e = high().event("P3", "e", T0_MS);
        assert!(fresh.apply(1, &e, None).is_some());
        assert!(fresh.apply(1, &e, None).is_none());
    }

    #[test]
    fn alert_ids_are_deterministic() {
        let event = high().event("P1", "ev-9", T0_MS);
        let a = AlertState::new().apply(1, &event, None).unwrap();
        let b = AlertState::new().apply(7, &event, None).unwrap();
        assert_eq!(a.alert_id, b.alert_id);
        assert_eq!(a.alert_id, alert_id("ward-obs", "ev-9"));
        assert_ne!(alert_id("ward-obs", "ev-9"), alert_id("ward-ob", "sev-9"));
        assert_ne!(alert_id("a", "1"), alert_id("b", "1"));
        assert_eq!(Uuid::parse_str(&a.alert_id).unwrap().get_version_num(), 5);
    }

    #[test]
    fn scores_filter_by_ward_and_audit_rows_keep_every_field() {
        let mut state = AlertState::new();
        run(&mut state, "P1", &[medium()]);
        run(&mut state, "P2", &[Set::normal()]);
        let locate = |p: &pb::PatientRef| {
            (p.mrn == "P1").then(|| AlertLocation {
                encounter_id: "E".into(),
                department_code: "MED".into(),
                ward_code: "W1".into(),
                bed_code: "B1".into(),
            })
        };
        assert_eq!(state.scores(&[], locate).len(), 1, "P2 is not in the hospital");
        let w1 = state.scores(&["W1".into()], locate);
        assert_eq!(w1.len(), 1);
        assert_eq!((w1[0].score, w1[0].bed_code.as_str()), (5, "B1"));
        assert!(state.scores(&["W2".into()], locate).is_empty());

        let a = AlertState::new()
            .apply(3, &high().event("P1", "x", T0_MS), None)
            .unwrap();
        let row = AuditRow::from(&a);
        assert_eq!(
            (row.kind.as_str(), row.band.as_str(), row.previous_band.as_str()),
            ("alert", "high", "")
        );
        assert_eq!(row.patient_key, keys::patient_key("hosp", "P1"));
        assert_eq!(row.subscore_names.len(), 7);
        let rr = row.subscore_names.iter().position(|n| n == "respiration_rate").unwrap();
        assert_eq!(row.subscore_values[rr], 3);
        assert_eq!(row.observed_at_ms, T0_MS);
    }

    #[test]
    fn iso_dates_parse() {
        assert_eq!(parse_iso_date("1950-03-07"), Some((1950, 3, 7)));
        assert_eq!(parse_iso_date(""), None);
    }
}
