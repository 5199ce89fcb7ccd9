//! Event facts: `fact_transfer`, `fact_vital_sign`, `fact_lab_result`,
//! `fact_medication`, `fact_charge`, `fact_bed_status`, `fact_diagnosis`,
//! `fact_procedure`, `fact_vital_sign_set`, `fact_risk_score`. One row per source event (per
//! observation for vital signs, and one per set in `fact_vital_sign_set`), keyed by (date_key, source_system, source_event_id), so
//! writing an event twice keeps one row.
//!
//! Owns: the row shapes of these tables and their writes. Must not: decode events or
//! deduplicate them (the batch stage does both).

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{census, insert_rows, Version};
use crate::error::Result;

pub const TRANSFER_TABLE: &str = "fact_transfer";
pub const VITAL_SIGN_TABLE: &str = "fact_vital_sign";
pub const VITAL_SIGN_SET_TABLE: &str = "fact_vital_sign_set";
pub const LAB_RESULT_TABLE: &str = "fact_lab_result";
pub const MEDICATION_TABLE: &str = "fact_medication";
pub const CHARGE_TABLE: &str = "fact_charge";
pub const BED_STATUS_TABLE: &str = "fact_bed_status";
pub const DIAGNOSIS_TABLE: &str = "fact_diagnosis";
pub const PROCEDURE_TABLE: &str = "fact_procedure";
pub const RISK_SCORE_TABLE: &str = "fact_risk_score";

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactTransfer {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    pub encounter_id: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub transferred_at_ms: i64,
    pub from_location_key: u64,
    pub from_department_code: String,
    pub from_ward_code: String,
    pub from_bed_code: String,
    pub to_location_key: u64,
    pub to_department_code: String,
    pub to_ward_code: String,
    pub to_bed_code: String,
    pub is_deleted: bool,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactVitalSign {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    /// Index of the observation within its set.
    pub observation_index: u16,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub taken_at_ms: i64,
    pub loinc_code: String,
    /// In the canonical UCUM unit (ingest normalised it).
    pub value: f64,
    pub unit: String,
    /// ACVPU of the set ("alert", "new_confusion", ...), empty when not recorded.
    pub consciousness: String,
    /// Whether the patient was on supplemental oxygen for the set; None if not recorded.
    pub supplemental_oxygen: Option<bool>,
    pub is_deleted: bool,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactLabResult {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub order_id: String,
    pub loinc_code: String,
    pub display: String,
    pub value: Option<f64>,
    pub value_text: String,
    /// A coded result's code and coding system, as sent (`migrations/warehouse/0005`).
    pub value_code: String,
    pub value_code_system: String,
    pub unit: String,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub abnormal_flag: String,
    pub resulted_at_ms: i64,
    pub specimen_collected_at_ms: Option<i64>,
    /// Specimen collection -> result, in minutes.
    pub turnaround_minutes: Option<f64>,
    pub is_deleted: bool,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactMedication {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    /// "order", "dispense" or "administration".
    pub kind: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub order_id: String,
    pub drug_code: String,
    /// As written on the order (empty for dispenses and administrations).
    pub drug_name: String,
    pub dose_value: f64,
    pub dose_unit: String,
    pub route: String,
    pub frequency: String,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    pub occurred_at_ms: i64,
    pub is_deleted: bool,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactCharge {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    pub charge_id: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: f64,
    pub unit_price_minor: i64,
    /// `round(quantity * unit_price_minor)`, in minor units of `currency`.
    pub amount_minor: i64,
    pub currency: String,
    pub payer_code: String,
    pub charged_at_ms: i64,
    pub is_deleted: bool,
    pub version: Version,
}

/// The amount of a charge line in minor units, rounded half away from zero (a
/// fractional quantity such as 0.5 h of theatre time can give a fraction of a cent).
pub fn charge_amount_minor(quantity: f64, unit_price_minor: i64) -> i64 {
    // `as` saturates on overflow; validated quantities and prices are far from it.
    (quantity * unit_price_minor as f64).round() as i64
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactBedStatus {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    pub location_key: u64,
    pub department_code: String,
    pub ward_code: String,
    pub bed_code: String,
    /// "available", "occupied", "cleaning", "blocked", "closed".
    pub state: String,
    pub occurred_at_ms: i64,
    pub is_deleted: bool,
    pub version: Version,
}

/// A diagnosis or problem (`migrations/warehouse/0003_diagnoses_procedures.sql`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactDiagnosis {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    /// Empty for a problem-list entry outside an encounter.
    pub encounter_id: String,
    /// Canonical spelling (ICD codes upper case with their dot).
    pub code: String,
    /// "icd10_cm", "icd10", "icd9_cm", "snomed_ct", "local".
    pub code_system: String,
    pub display: String,
    /// "admitting", "working", "principal", "secondary", "encounter", "problem_list"; empty
    /// when the source did not say.
    pub role: String,
    /// 1 first listed, 0 unranked.
    pub rank: u32,
    /// "active", "recurrence", "relapse", "inactive", "remission", "resolved" or empty.
    pub clinical_status: String,
    /// The event's occurred_at: the onset, else when it was recorded.
    pub onset_at_ms: i64,
    pub recorded_at_ms: Option<i64>,
    pub abated_at_ms: Option<i64>,
    pub is_deleted: bool,
    pub version: Version,
}

/// A procedure performed (`migrations/warehouse/0003_diagnoses_procedures.sql`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactProcedure {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub code: String,
    /// "snomed_ct", "icd10_pcs", "icd9_cm", "cpt", "hcpcs", "opcs4", "local".
    pub code_system: String,
    pub display: String,
    /// 1 principal, 0 unranked.
    pub rank: u32,
    pub performer: String,
    /// The event's occurred_at.
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// Start -> end, in minutes; None without an end.
    pub duration_minutes: Option<f64>,
    pub is_deleted: bool,
    pub version: Version,
}

/// One vital-signs set: the NEWS2 inputs of the set as charted.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactVitalSignSet {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub taken_at_ms: i64,
    /// ACVPU ("alert", "new_confusion", ...), empty when not recorded.
    pub consciousness: String,
    /// Whether the patient was on supplemental oxygen; None if not recorded.
    pub supplemental_oxygen: Option<bool>,
    /// "scale_1", "scale_2", or empty when the set did not say.
    pub spo2_scale: String,
    pub observation_count: u16,
    pub is_deleted: bool,
    pub version: Version,
}

/// A model's risk score written back by the ML sidecar
/// (`migrations/warehouse/0007_risk_scores.sql`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FactRiskScore {
    pub date_key: u32,
    pub source_system: String,
    pub source_event_id: String,
    pub source_position: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub patient_key: Uuid,
    pub encounter_id: String,
    pub model: String,
    pub model_version: u64,
    pub probability: f64,
    pub threshold: f64,
    /// probability >= threshold.
    pub high: bool,
    pub alert: bool,
    pub scored_event_id: String,
    pub scored_source_system: String,
    pub scored_position: u64,
    /// The event's occurred_at: the scored event's.
    pub scored_at_ms: i64,
    pub department_code: String,
    pub ward_code: String,
    pub factor_names: Vec<String>,
    pub factor_values: Vec<f64>,
    pub factor_contributions: Vec<f64>,
    pub is_deleted: bool,
    pub version: Version,
}

/// The event facts of one chunk.
#[derive(Debug, Default)]
pub struct EventFacts {
    pub transfers: Vec<FactTransfer>,
    pub vital_signs: Vec<FactVitalSign>,
    pub vital_sign_sets: Vec<FactVitalSignSet>,
    pub lab_results: Vec<FactLabResult>,
    pub medications: Vec<FactMedication>,
    pub charges: Vec<FactCharge>,
    pub bed_status: Vec<FactBedStatus>,
    pub diagnoses: Vec<FactDiagnosis>,
    pub procedures: Vec<FactProcedure>,
    pub risk_scores: Vec<FactRiskScore>,
}

impl EventFacts {
    /// Writes every table (one insert each), then the current state of the beds whose
    /// latest state the bed-status facts change ([`census::write_current_beds`]);
    /// returns rows written per table.
    pub async fn write(&self, client: &Client) -> Result<Vec<(&'static str, u64)>> {
        Ok(vec![
            (
                TRANSFER_TABLE,
                insert_rows(client, TRANSFER_TABLE, &self.transfers).await?,
            ),
            (
                VITAL_SIGN_TABLE,
                insert_rows(client, VITAL_SIGN_TABLE, &self.vital_signs).await?,
            ),
            (
                VITAL_SIGN_SET_TABLE,
                insert_rows(client, VITAL_SIGN_SET_TABLE, &self.vital_sign_sets).await?,
            ),
            (
                LAB_RESULT_TABLE,
                insert_rows(client, LAB_RESULT_TABLE, &self.lab_results).await?,
            ),
            (
                MEDICATION_TABLE,
                insert_rows(client, MEDICATION_TABLE, &self.medications).await?,
            ),
            (CHARGE_TABLE, insert_rows(client, CHARGE_TABLE, &self.charges).await?),
            (
                BED_STATUS_TABLE,
                insert_rows(client, BED_STATUS_TABLE, &self.bed_status).await?,
            ),
            // After the facts it summarises: a crash in between is redone with them.
            (
                census::BED_CURRENT_TABLE,
                census::write_current_beds(client, &self.bed_status).await?,
            ),
            (
                DIAGNOSIS_TABLE,
                insert_rows(client, DIAGNOSIS_TABLE, &self.diagnoses).await?,
            ),
            (
                PROCEDURE_TABLE,
                insert_rows(client, PROCEDURE_TABLE, &self.procedures).await?,
            ),
            (
                RISK_SCORE_TABLE,
                insert_rows(client, RISK_SCORE_TABLE, &self.risk_scores).await?,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_amounts_round_to_minor_units() {
        assert_eq!(charge_amount_minor(3.0, 1250), 3750);
        assert_eq!(charge_amount_minor(0.5, 1999), 1000);
        assert_eq!(charge_amount_minor(1.5, -101), -152);
        assert_eq!(charge_amount_minor(0.0, 500), 0);
    }
}
