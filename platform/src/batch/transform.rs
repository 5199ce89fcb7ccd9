//! Turns the deduplicated, decoded events of one chunk into warehouse rows and
//! dimension candidates: one pass, in staging order, no I/O.
//!
//! Owns: the mapping from canonical `ClinicalEvent`s to warehouse rows (which field
//! goes where, enum labels, surrogate keys, date keys). Must not: read or write
//! ClickHouse, or apply the dimension rules (the warehouse modules do).

use std::collections::{BTreeMap, BTreeSet};

use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use prost::Message;
use uuid::Uuid;

use super::dedup::Keyed;
use crate::warehouse::bookkeeping::RegistryEntry;
use crate::warehouse::calendar::date_key;
use crate::warehouse::encounter::{EncounterEvent, Stamp};
use crate::warehouse::facts::{
    charge_amount_minor, EventFacts, FactBedStatus, FactCharge, FactDiagnosis, FactLabResult, FactMedication,
    FactProcedure, FactRiskScore, FactTransfer, FactVitalSign, FactVitalSignSet,
};
use crate::warehouse::keys::patient_key;
use crate::warehouse::patient::{DemographicEvent, PatientIdentity, SourceRef};
use crate::warehouse::reference::codes;
use crate::warehouse::reference::{DimDrug, DimPayer, LocationCodes, Provenance, WardRef};
use crate::warehouse::vitals::spo2_scale_label;
use crate::warehouse::{label, Version};

/// The columns of `staging.events` a load reads (not `raw`: the canonical payload is
/// what the warehouse is built from).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct StagedPayload {
    pub position: u64,
    pub event_id: String,
    pub source_system: String,
    pub kind: String,
    pub occurred_at_ms: i64,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Keyed for Decoded {
    fn position(&self) -> u64 {
        self.position
    }
    fn source_system(&self) -> &str {
        &self.source_system
    }
    fn event_id(&self) -> &str {
        &self.event_id
    }
}

/// A staged event whose payload decoded into something loadable.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub position: u64,
    pub source_system: String,
    pub event_id: String,
    pub kind: String,
    pub occurred_at_ms: i64,
    pub patient: Option<(Uuid, pb::PatientRef)>,
    pub payload: Payload,
}

/// Decodes a staged payload. An error means the row cannot be loaded (data loss for
/// that row); the message says why.
pub fn decode(row: &StagedPayload) -> Result<Decoded, String> {
    let event =
        pb::ClinicalEvent::decode(row.payload.as_slice()).map_err(|e| format!("payload does not decode: {e}"))?;
    let payload = event.payload.ok_or("payload has no event kind set")?;
    let needs_patient = !matches!(payload, Payload::BedStatus(_) | Payload::ReferenceData(_));
    let patient = match event.patient {
        Some(p) if !p.mrn.is_empty() => Some((patient_key(&p.assigning_authority, &p.mrn), p)),
        _ if needs_patient => return Err(format!("{} event without a patient", row.kind)),
        _ => None,
    };
    let encounter_id = match &payload {
        Payload::Admission(a) => Some(&a.encounter_id),
        Payload::Transfer(t) => Some(&t.encounter_id),
        Payload::Discharge(d) => Some(&d.encounter_id),
        Payload::EdArrival(a) => Some(&a.encounter_id),
        Payload::EdTriage(t) => Some(&t.encounter_id),
        _ => None,
    };
    if encounter_id.is_some_and(|id| id.is_empty()) {
        return Err(format!("{} event without an encounter_id", row.kind));
    }
    let occurred_at_ms = event.occurred_at.as_ref().map_or(row.occurred_at_ms, timestamp_ms);
    Ok(Decoded {
        position: row.position,
        source_system: row.source_system.clone(),
        event_id: row.event_id.clone(),
        kind: row.kind.clone(),
        occurred_at_ms,
        patient,
        payload,
    })
}

fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
}

/// Everything one chunk contributes to the warehouse.
#[derive(Debug, Default)]
pub struct ChunkPlan {
    /// Patients referred to by the chunk, with their first reference.
    pub identities: BTreeMap<Uuid, PatientIdentity>,
    pub referenced: BTreeMap<Uuid, SourceRef>,
    pub demographics: Vec<DemographicEvent>,
    /// Encounter events grouped by encounter, in staging order.
    pub encounters: BTreeMap<String, Vec<(Stamp, Uuid, EncounterEvent)>>,
    pub ward_refs: Vec<WardRef>,
    pub seen_locations: Vec<(LocationCodes, Provenance)>,
    pub drugs: Vec<DimDrug>,
    pub payers: Vec<DimPayer>,
    pub facts: EventFacts,
    pub date_keys: BTreeSet<u32>,
    pub registry: Vec<RegistryEntry>,
}

impl ChunkPlan {
    /// Patients whose SCD2 history this chunk changes.
    pub fn demographic_patients(&self) -> Vec<Uuid> {
        let set: BTreeSet<Uuid> = self.demographics.iter().map(|d| d.patient_key).collect();
        set.into_iter().collect()
    }
}

/// Builds the plan of a chunk from its events, in staging order.
pub fn plan(events: &[Decoded], version: Version) -> ChunkPlan {
    let mut p = ChunkPlan::default();
    for e in events {
        add(&mut p, e, version);
    }
    p
}

fn add(p: &mut ChunkPlan, e: &Decoded, version: Version) {
    let at = e.occurred_at_ms;
    let day = date_key(at);
    let from = Provenance {
        at_ms: at,
        position: e.position,
        source_system: e.source_system.clone(),
        event_id: e.event_id.clone(),
    };
    let stamp = Stamp {
        at_ms: at,
        position: e.position,
        event_id: e.event_id.clone(),
    };
    p.registry.push(RegistryEntry::new(
        &e.source_system,
        &e.event_id,
        e.position,
        &e.kind,
        at,
    ));
    let patient = e.patient.as_ref().map(|(k, _)| *k).unwrap_or_else(Uuid::nil);
    if let Some((key, r)) = &e.patient {
        p.identities
            .entry(*key)
            .or_insert_with(|| PatientIdentity::new(*key, &r.assigning_authority, &r.mrn, e.position));
        p.referenced.entry(*key).or_insert_with(|| SourceRef {
            source_system: e.source_system.clone(),
            event_id: e.event_id.clone(),
            position: e.position,
            occurred_at_ms: at,
        });
    }
    let is_fact = !matches!(
        e.payload,
        Payload::PatientRegistered(_) | Payload::PatientUpdated(_) | Payload::ReferenceData(_)
    );
    if is_fact {
        p.date_keys.insert(day);
    }
    if let Some((id, ev)) = EncounterEvent::from_payload(&e.payload) {
        p.encounters
            .entry(id.to_string())
            .or_default()
            .push((stamp.clone(), patient, ev));
    }

    match &e.payload {
        Payload::PatientRegistered(d) | Payload::PatientUpdated(d) => {
            p.demographics.push(DemographicEvent {
                patient_key: patient,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                kind: e.kind.clone(),
                occurred_at_ms: at,
                given_name: d.given_name.clone(),
                family_name: d.family_name.clone(),
                birth_date: d
                    .birth_date
                    .as_ref()
                    .filter(|b| b.year > 0)
                    .map(|b| format!("{:04}-{:02}-{:02}", b.year, b.month, b.day))
                    .unwrap_or_default(),
                sex: label!(pb::AdministrativeSex, d.sex, "ADMINISTRATIVE_SEX"),
                postal_code: d.postal_code.clone(),
                deceased_at_ms: d.deceased_at.as_ref().map(timestamp_ms),
                version,
            });
        }
        Payload::Admission(a) => {
            let location = codes(a.location.as_ref());
            if !location.is_empty() {
                p.seen_locations.push((location.clone(), from.clone()));
            }
            if !a.payer_code.is_empty() {
                p.payers.push(inferred_payer(&a.payer_code, &from));
            }
        }
        Payload::Transfer(t) => {
            let (from_loc, to_loc) = (codes(t.from.as_ref()), codes(t.to.as_ref()));
            for l in [&from_loc, &to_loc] {
                if !l.is_empty() {
                    p.seen_locations.push((l.clone(), from.clone()));
                }
            }
            p.facts.transfers.push(FactTransfer {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                encounter_id: t.encounter_id.clone(),
                patient_key: patient,
                transferred_at_ms: at,
                from_location_key: if from_loc.is_empty() { 0 } else { from_loc.key() },
                from_department_code: from_loc.department_code,
                from_ward_code: from_loc.ward_code,
                from_bed_code: from_loc.bed_code,
                to_location_key: to_loc.key(),
                to_department_code: to_loc.department_code,
                to_ward_code: to_loc.ward_code,
                to_bed_code: to_loc.bed_code,
                is_deleted: false,
                version,
            });
        }
        Payload::Discharge(_) | Payload::EdTriage(_) => {}
        Payload::EdArrival(a) => {
            if !a.department_code.is_empty() {
                p.seen_locations
                    .push((LocationCodes::new(&a.department_code, "", ""), from.clone()));
            }
        }
        Payload::VitalSigns(v) => {
            let consciousness = label!(pb::Consciousness, v.consciousness, "CONSCIOUSNESS");
            for (i, o) in v.observations.iter().enumerate() {
                p.facts.vital_signs.push(FactVitalSign {
                    date_key: day,
                    source_system: e.source_system.clone(),
                    source_event_id: e.event_id.clone(),
                    observation_index: u16::try_from(i).unwrap_or(u16::MAX),
                    source_position: e.position,
                    patient_key: patient,
                    encounter_id: v.encounter_id.clone(),
                    taken_at_ms: at,
                    loinc_code: o.loinc_code.clone(),
                    value: o.value,
                    unit: o.unit.clone(),
                    consciousness: consciousness.clone(),
                    supplemental_oxygen: v.supplemental_oxygen,
                    is_deleted: false,
                    version,
                });
            }
            p.facts.vital_sign_sets.push(FactVitalSignSet {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                patient_key: patient,
                encounter_id: v.encounter_id.clone(),
                taken_at_ms: at,
                consciousness,
                supplemental_oxygen: v.supplemental_oxygen,
                spo2_scale: spo2_scale_label(v.spo2_scale).to_string(),
                observation_count: u16::try_from(v.observations.len()).unwrap_or(u16::MAX),
                is_deleted: false,
                version,
            });
        }
        Payload::LabResult(l) => {
            let collected = l.specimen_collected_at.as_ref().map(timestamp_ms);
            p.facts.lab_results.push(FactLabResult {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                patient_key: patient,
                encounter_id: l.encounter_id.clone(),
                order_id: l.order_id.clone(),
                loinc_code: l.loinc_code.clone(),
                display: l.display.clone(),
                value: l.value,
                value_text: l.value_text.clone(),
                value_code: l.value_code.clone(),
                value_code_system: l.value_code_system.clone(),
                unit: l.unit.clone(),
                reference_low: l.reference_low,
                reference_high: l.reference_high,
                abnormal_flag: label!(pb::AbnormalFlag, l.abnormal_flag, "ABNORMAL_FLAG"),
                resulted_at_ms: at,
                specimen_collected_at_ms: collected,
                turnaround_minutes: collected.filter(|c| *c <= at).map(|c| (at - c) as f64 / 60_000.0),
                is_deleted: false,
                version,
            });
        }
        Payload::MedicationOrder(o) => {
            p.drugs.push(inferred_drug(&o.drug_code, &o.drug_name, &from));
            p.facts.medications.push(FactMedication {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                kind: "order".into(),
                patient_key: patient,
                encounter_id: o.encounter_id.clone(),
                order_id: o.order_id.clone(),
                drug_code: o.drug_code.clone(),
                drug_name: o.drug_name.clone(),
                dose_value: o.dose_value,
                dose_unit: o.dose_unit.clone(),
                route: o.route.clone(),
                frequency: o.frequency.clone(),
                starts_at_ms: o.starts_at.as_ref().map(timestamp_ms),
                ends_at_ms: o.ends_at.as_ref().map(timestamp_ms),
                occurred_at_ms: at,
                is_deleted: false,
                version,
            });
        }
        Payload::MedicationDispense(m) | Payload::MedicationAdministration(m) => {
            let kind = if matches!(e.payload, Payload::MedicationDispense(_)) {
                "dispense"
            } else {
                "administration"
            };
            p.drugs.push(inferred_drug(&m.drug_code, "", &from));
            p.facts.medications.push(FactMedication {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                kind: kind.into(),
                patient_key: patient,
                encounter_id: m.encounter_id.clone(),
                order_id: m.order_id.clone(),
                drug_code: m.drug_code.clone(),
                drug_name: String::new(),
                dose_value: m.dose_value,
                dose_unit: m.dose_unit.clone(),
                route: m.route.clone(),
                frequency: String::new(),
                starts_at_ms: None,
                ends_at_ms: None,
                occurred_at_ms: at,
                is_deleted: false,
                version,
            });
        }
        Payload::BedStatus(b) => {
            let loc = codes(b.location.as_ref());
            if !loc.is_empty() {
                p.seen_locations.push((loc.clone(), from.clone()));
            }
            p.facts.bed_status.push(FactBedStatus {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                location_key: loc.key(),
                department_code: loc.department_code,
                ward_code: loc.ward_code,
                bed_code: loc.bed_code,
                state: label!(pb::BedState, b.state, "BED_STATE"),
                occurred_at_ms: at,
                is_deleted: false,
                version,
            });
        }
        Payload::ChargeLine(c) => {
            if !c.payer_code.is_empty() {
                p.payers.push(inferred_payer(&c.payer_code, &from));
            }
            p.facts.charges.push(FactCharge {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                charge_id: c.charge_id.clone(),
                patient_key: patient,
                encounter_id: c.encounter_id.clone(),
                code: c.code.clone(),
                description: c.description.clone(),
                quantity: c.quantity,
                unit_price_minor: c.unit_price_minor,
                amount_minor: charge_amount_minor(c.quantity, c.unit_price_minor),
                currency: c.currency.clone(),
                payer_code: c.payer_code.clone(),
                charged_at_ms: at,
                is_deleted: false,
                version,
            });
        }
        Payload::Diagnosis(d) => p.facts.diagnoses.push(FactDiagnosis {
            date_key: day,
            source_system: e.source_system.clone(),
            source_event_id: e.event_id.clone(),
            source_position: e.position,
            patient_key: patient,
            encounter_id: d.encounter_id.clone(),
            code: d.code.clone(),
            code_system: label!(pb::CodeSystem, d.code_system, "CODE_SYSTEM"),
            display: d.display.clone(),
            role: label!(pb::DiagnosisRole, d.role, "DIAGNOSIS_ROLE"),
            rank: d.rank,
            clinical_status: label!(pb::ConditionStatus, d.clinical_status, "CONDITION_STATUS"),
            onset_at_ms: at,
            recorded_at_ms: d.recorded_at.as_ref().map(timestamp_ms),
            abated_at_ms: d.abated_at.as_ref().map(timestamp_ms),
            is_deleted: false,
            version,
        }),
        Payload::Procedure(pr) => {
            let ended = pr.ended_at.as_ref().map(timestamp_ms);
            p.facts.procedures.push(FactProcedure {
                date_key: day,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                source_position: e.position,
                patient_key: patient,
                encounter_id: pr.encounter_id.clone(),
                code: pr.code.clone(),
                code_system: label!(pb::CodeSystem, pr.code_system, "CODE_SYSTEM"),
                display: pr.display.clone(),
                rank: pr.rank,
                performer: pr.performer.clone(),
                started_at_ms: at,
                ended_at_ms: ended,
                duration_minutes: ended.filter(|end| *end >= at).map(|end| (end - at) as f64 / 60_000.0),
                is_deleted: false,
                version,
            });
        }
        Payload::RiskScore(r) => p.facts.risk_scores.push(FactRiskScore {
            date_key: day,
            source_system: e.source_system.clone(),
            source_event_id: e.event_id.clone(),
            source_position: e.position,
            patient_key: patient,
            encounter_id: r.encounter_id.clone(),
            model: r.model.clone(),
            model_version: r.model_version,
            probability: r.probability,
            threshold: r.threshold,
            high: r.probability >= r.threshold,
            alert: r.alert,
            scored_event_id: r.scored_event_id.clone(),
            scored_source_system: r.scored_source_system.clone(),
            scored_position: r.scored_position,
            scored_at_ms: at,
            department_code: r.department_code.clone(),
            ward_code: r.ward_code.clone(),
            factor_names: r.top_factors.iter().map(|f| f.feature.clone()).collect(),
            factor_values: r.top_factors.iter().map(|f| f.value).collect(),
            factor_contributions: r.top_factors.iter().map(|f| f.contribution).collect(),
            is_deleted: false,
            version,
        }),
        Payload::ReferenceData(r) => match &r.item {
            Some(Item::Drug(d)) => p.drugs.push(DimDrug {
                drug_code: d.code.clone(),
                code_system: d.code_system.clone(),
                name: d.name.clone(),
                drug_class: d.drug_class.clone(),
                form: d.form.clone(),
                strength: d.strength.clone(),
                is_inferred: false,
                ref_at_ms: at,
                ref_position: e.position,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                version,
            }),
            Some(Item::Payer(py)) => p.payers.push(DimPayer {
                payer_code: py.code.clone(),
                name: py.name.clone(),
                payer_type: py.payer_type.clone(),
                is_inferred: false,
                ref_at_ms: at,
                ref_position: e.position,
                source_system: e.source_system.clone(),
                source_event_id: e.event_id.clone(),
                version,
            }),
            Some(Item::Ward(w)) => p.ward_refs.push(WardRef {
                department_code: w.department_code.clone(),
                department_name: w.department_name.clone(),
                ward_code: w.ward_code.clone(),
                ward_name: w.ward_name.clone(),
                bed_count: w.bed_count,
                from,
            }),
            None => {}
        },
    }
}

fn inferred_drug(code: &str, name: &str, from: &Provenance) -> DimDrug {
    DimDrug {
        drug_code: code.to_string(),
        code_system: String::new(),
        name: name.to_string(),
        drug_class: String::new(),
        form: String::new(),
        strength: String::new(),
        is_inferred: true,
        ref_at_ms: from.at_ms,
        ref_position: from.position,
        source_system: from.source_system.clone(),
        source_event_id: from.event_id.clone(),
        version: 0,
    }
}

fn inferred_payer(code: &str, from: &Provenance) -> DimPayer {
    DimPayer {
        payer_code: code.to_string(),
        name: String::new(),
        payer_type: String::new(),
        is_inferred: true,
        ref_at_ms: from.at_ms,
        ref_position: from.position,
        source_system: from.source_system.clone(),
        source_event_id: from.event_id.clone(),
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(position: u64, event: &pb::ClinicalEvent) -> StagedPayload {
        StagedPayload {
            position,
            event_id: event.event_id.clone(),
            source_system: event.source_system.clone(),
            kind: "x".into(),
            occurred_at_ms: 0,
            payload: event.encode_to_vec(),
        }
    }

    fn event(id: &str, payload: Payload) -> pb::ClinicalEvent {
        pb::ClinicalEvent {
            event_id: id.into(),
            source_system: "ehr".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            patient: Some(pb::PatientRef {
                mrn: "M1".into(),
                assigning_authority: "hosp".into(),
            }),
            payload: Some(payload),
        }
    }

    #[test]
    fn decode_rejects_what_cannot_be_loaded() {
        let bad = StagedPayload {
            payload: vec![0xff, 0xff, 0xff],
            ..staged(1, &event("a", Payload::EdTriage(pb::EdTriage::default())))
        };
        assert!(decode(&bad).unwrap_err().contains("does not decode"));
        let mut no_payload = event("b", Payload::EdTriage(pb::EdTriage::default()));
        no_payload.payload = None;
        assert!(decode(&staged(2, &no_payload)).is_err());
        let no_encounter = event("c", Payload::EdTriage(pb::EdTriage::default()));
        assert!(decode(&staged(3, &no_encounter)).unwrap_err().contains("encounter_id"));
        let ok = decode(&staged(
            4,
            &event(
                "d",
                Payload::EdTriage(pb::EdTriage {
                    encounter_id: "E1".into(),
                    acuity: 3,
                }),
            ),
        ))
        .unwrap();
        assert_eq!(ok.occurred_at_ms, 1_700_000_000_005);
        assert_eq!(ok.patient.unwrap().0, patient_key("hosp", "M1"));
    }

    #[test]
    fn vital_sign_sets_become_one_row_per_observation() {
        let v = pb::VitalSigns {
            encounter_id: "E1".into(),
            observations: vec![
                pb::Observation {
                    loinc_code: "8867-4".into(),
                    value: 88.0,
                    unit: "/min".into(),
                },
                pb::Observation {
                    loinc_code: "8310-5".into(),
                    value: 37.2,
                    unit: "Cel".into(),
                },
            ],
            consciousness: pb::Consciousness::NewConfusion as i32,
            supplemental_oxygen: Some(true),
            spo2_scale: pb::Spo2Scale::Spo2Scale2 as i32,
        };
        let d = decode(&staged(7, &event("v", Payload::VitalSigns(v)))).unwrap();
        let plan = plan(&[d], 3);
        let rows = &plan.facts.vital_signs;
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].observation_index, rows[1].unit.as_str()), (1, "Cel"));
        assert_eq!(rows[0].consciousness, "new_confusion");
        assert_eq!(rows[0].supplemental_oxygen, Some(true));
        assert_eq!(rows[0].date_key, 20231114);
        let sets = &plan.facts.vital_sign_sets;
        assert_eq!(sets.len(), 1);
        assert_eq!(
            (
                sets[0].consciousness.as_str(),
                sets[0].supplemental_oxygen,
                sets[0].spo2_scale.as_str()
            ),
            ("new_confusion", Some(true), "scale_2")
        );
        assert_eq!(sets[0].observation_count, 2);
        assert_eq!(plan.date_keys.len(), 1);
        assert_eq!(plan.registry.len(), 1);
        assert!(plan.referenced.contains_key(&patient_key("hosp", "M1")));
    }

    #[test]
    fn charges_and_orders_infer_their_dimension_members() {
        let c = pb::ChargeLine {
            charge_id: "C1".into(),
            encounter_id: "E1".into(),
            code: "99213".into(),
            quantity: 2.0,
            unit_price_minor: 1500,
            currency: "EUR".into(),
            payer_code: "AOK".into(),
            ..Default::default()
        };
        let o = pb::MedicationOrder {
            order_id: "O1".into(),
            encounter_id: "E1".into(),
            drug_code: "161".into(),
            drug_name: "Paracetamol".into(),
            ..Default::default()
        };
        let events = [
            decode(&staged(1, &event("c", Payload::ChargeLine(c)))).unwrap(),
            decode(&staged(2, &event("o", Payload::MedicationOrder(o)))).unwrap(),
        ];
        let plan = plan(&events, 1);
        assert_eq!(plan.facts.charges[0].amount_minor, 3000);
        assert_eq!(plan.payers[0].payer_code, "AOK");
        assert!(plan.payers[0].is_inferred);
        assert_eq!(
            (plan.drugs[0].name.as_str(), plan.drugs[0].is_inferred),
            ("Paracetamol", true)
        );
        assert_eq!(plan.facts.medications[0].kind, "order");
    }

    #[test]
    fn diagnoses_and_procedures_become_one_row_each_with_labels() {
        let d = pb::Diagnosis {
            encounter_id: "E1".into(),
            code: "J18.9".into(),
            code_system: pb::CodeSystem::Icd10Cm as i32,
            display: "Pneumonia".into(),
            role: pb::DiagnosisRole::ProblemList as i32,
            rank: 0,
            clinical_status: pb::ConditionStatus::Resolved as i32,
            abated_at: Some(prost_types::Timestamp {
                seconds: 1_700_086_400,
                nanos: 0,
            }),
            recorded_at: None,
        };
        let pr = pb::ProcedurePerformed {
            encounter_id: "E1".into(),
            code: "80146002".into(),
            code_system: pb::CodeSystem::SnomedCt as i32,
            ended_at: Some(prost_types::Timestamp {
                seconds: 1_700_005_400,
                nanos: 5_000_000,
            }),
            ..Default::default()
        };
        let events = [
            decode(&staged(1, &event("d", Payload::Diagnosis(d)))).unwrap(),
            decode(&staged(2, &event("p", Payload::Procedure(pr)))).unwrap(),
        ];
        let plan = plan(&events, 4);
        let dx = &plan.facts.diagnoses[0];
        assert_eq!(
            (dx.code_system.as_str(), dx.role.as_str(), dx.clinical_status.as_str()),
            ("icd10_cm", "problem_list", "resolved")
        );
        assert_eq!(
            (dx.onset_at_ms, dx.abated_at_ms, dx.recorded_at_ms),
            (1_700_000_000_005, Some(1_700_086_400_000), None)
        );
        assert_eq!((dx.date_key, dx.source_position, dx.version), (20231114, 1, 4));
        let px = &plan.facts.procedures[0];
        assert_eq!(
            (px.code_system.as_str(), px.started_at_ms),
            ("snomed_ct", 1_700_000_000_005)
        );
        assert_eq!(px.duration_minutes, Some(90.0));
        assert_eq!(plan.date_keys.len(), 1);
        assert_eq!(plan.registry.len(), 2);
    }
}
