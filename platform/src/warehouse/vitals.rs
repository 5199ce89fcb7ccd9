//! Reads of the vital-signs facts for the real-time stage: each patient's NEWS2 inputs
//! as charted (observations, consciousness, air or oxygen, SpO2 scale), so the live
//! NEWS2 state can be rebuilt from the warehouse by the same rules that built it.
//!
//! Owns: the SQL over `fact_vital_sign`, `fact_vital_sign_set` and `patient_identity`
//! for that rebuild, and the scale labels stored in `fact_vital_sign_set.spo2_scale`.
//! Must not: decide what counts towards a score (the real-time stage does).

use std::collections::HashMap;

use clickhouse::Client;
use hospital_proto::events as pb;
use serde::Deserialize;
use uuid::Uuid;

use super::facts::{VITAL_SIGN_SET_TABLE, VITAL_SIGN_TABLE};
use crate::error::Result;

/// The label of a set's SpO2 scale in `fact_vital_sign_set.spo2_scale` ("" unspecified).
pub fn spo2_scale_label(raw: i32) -> &'static str {
    match pb::Spo2Scale::try_from(raw) {
        Ok(pb::Spo2Scale::Spo2Scale1) => "scale_1",
        Ok(pb::Spo2Scale::Spo2Scale2) => "scale_2",
        _ => "",
    }
}

fn spo2_scale_from_label(label: &str) -> pb::Spo2Scale {
    match label {
        "scale_1" => pb::Spo2Scale::Spo2Scale1,
        "scale_2" => pb::Spo2Scale::Spo2Scale2,
        _ => pb::Spo2Scale::Unspecified,
    }
}

/// The label of a set's consciousness (ACVPU) in the vital-sign facts ("" unspecified).
fn consciousness_from_label(label: &str) -> pb::Consciousness {
    match label {
        "alert" => pb::Consciousness::Alert,
        "new_confusion" => pb::Consciousness::NewConfusion,
        "voice" => pb::Consciousness::Voice,
        "pain" => pb::Consciousness::Pain,
        "unresponsive" => pb::Consciousness::Unresponsive,
        _ => pb::Consciousness::Unspecified,
    }
}

/// One loaded vital-signs set, rebuilt as it was charted.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartedSet {
    pub position: u64,
    pub source_system: String,
    pub event_id: String,
    pub taken_at_ms: i64,
    pub patient: pb::PatientRef,
    pub vital_signs: pb::VitalSigns,
}

/// The NEWS2 inputs a rebuild needs, for every patient with a vital-signs set:
/// - every set within `window_ms` of that patient's newest set (older values cannot
///   count towards any later score), in staging order;
/// - for each patient, the newest set that stated an SpO2 scale, at any age (the scale
///   is sticky), if it is not already among them.
///
/// Sets of patients missing from `patient_identity` are counted, not returned.
pub async fn news2_inputs(warehouse: &Client, window_ms: i64) -> Result<(Vec<ChartedSet>, usize)> {
    #[derive(clickhouse::Row, Deserialize)]
    struct SetRow {
        #[serde(with = "clickhouse::serde::uuid")]
        patient_key: Uuid,
        source_position: u64,
        source_system: String,
        source_event_id: String,
        encounter_id: String,
        taken_at_ms: i64,
        consciousness: String,
        supplemental_oxygen: Option<u8>,
        spo2_scale: String,
    }
    #[derive(clickhouse::Row, Deserialize)]
    struct ObservationRow {
        source_position: u64,
        loinc_code: String,
        value: f64,
        unit: String,
    }

    // Per patient: the newest set time, and the position of the newest set that stated
    // a scale (by time, then position). One pass over the set table, grouped by patient.
    let window_sets = format!(
        "FROM (SELECT * FROM {VITAL_SIGN_SET_TABLE} FINAL WHERE is_deleted = 0) AS s \
         ANY INNER JOIN ( \
           SELECT patient_key, max(taken_at_ms) AS newest_ms, \
             argMaxIf(source_position, (taken_at_ms, source_position), spo2_scale != '') AS scale_position \
           FROM {VITAL_SIGN_SET_TABLE} FINAL WHERE is_deleted = 0 GROUP BY patient_key \
         ) AS p USING patient_key \
         WHERE s.taken_at_ms >= p.newest_ms - ? OR s.source_position = p.scale_position"
    );
    let sets = warehouse
        .query(&format!(
            "SELECT s.patient_key, s.source_position, s.source_system, s.source_event_id, s.encounter_id, \
               s.taken_at_ms, s.consciousness, s.supplemental_oxygen, s.spo2_scale {window_sets} \
             ORDER BY s.source_position"
        ))
        .bind(window_ms)
        .fetch_all::<SetRow>()
        .await?;
    if sets.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let keys: Vec<Uuid> = sets.iter().map(|s| s.patient_key).collect();
    // The observations of those sets in one pass: fact_vital_sign is keyed by date, so a
    // lookup by position lists would scan it once per list.
    let observations: Vec<ObservationRow> = warehouse
        .query(&format!(
            "SELECT source_position, loinc_code, value, unit FROM {VITAL_SIGN_TABLE} FINAL \
             WHERE is_deleted = 0 AND source_position IN (SELECT s.source_position {window_sets}) \
             ORDER BY source_position, observation_index"
        ))
        .bind(window_ms)
        .fetch_all()
        .await?;
    let identities = super::census::identities(warehouse, &keys).await?;

    let mut by_position: HashMap<u64, Vec<pb::Observation>> = HashMap::new();
    for o in observations {
        by_position.entry(o.source_position).or_default().push(pb::Observation {
            loinc_code: o.loinc_code,
            value: o.value,
            unit: o.unit,
        });
    }
    let mut unknown = 0;
    let mut out = Vec::with_capacity(sets.len());
    for s in sets {
        let Some((authority, mrn)) = identities.get(&s.patient_key) else {
            unknown += 1;
            continue;
        };
        out.push(ChartedSet {
            position: s.source_position,
            source_system: s.source_system,
            event_id: s.source_event_id,
            taken_at_ms: s.taken_at_ms,
            patient: pb::PatientRef {
                mrn: mrn.clone(),
                assigning_authority: authority.clone(),
            },
            vital_signs: pb::VitalSigns {
                encounter_id: s.encounter_id,
                observations: by_position.remove(&s.source_position).unwrap_or_default(),
                consciousness: consciousness_from_label(&s.consciousness) as i32,
                supplemental_oxygen: s.supplemental_oxygen.map(|o| o != 0),
                spo2_scale: spo2_scale_from_label(&s.spo2_scale) as i32,
            },
        });
    }
    Ok((out, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_labels_round_trip() {
        for s in [
            pb::Spo2Scale::Unspecified,
            pb::Spo2Scale::Spo2Scale1,
            pb::Spo2Scale::Spo2Scale2,
        ] {
            assert_eq!(spo2_scale_from_label(spo2_scale_label(s as i32)), s);
        }
        assert_eq!(spo2_scale_label(pb::Spo2Scale::Spo2Scale2 as i32), "scale_2");
        assert_eq!(spo2_scale_label(99), "");
    }
}
