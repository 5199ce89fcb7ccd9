//! Event facts: `fact_transfer`, `fact_vital_sign`, `fact_lab_result`,
//! `fact_medication`, `fact_charge`, `fact_bed_status`. One row per source event (per
//! observation for vital signs), keyed by (date_key, source_system, source_event_id), so
//! writing an event twice keeps one row.
//!
//! Owns: the row shapes of these tables and their writes. Must not: decode events or
//! deduplicate them (the batch stage does both).

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{insert_rows, Version};
use crate::error::Result;

pub const TRANSFER_TABLE: &str = "fact_transfer";
pub const VITAL_SIGN_TABLE: &str = "fact_vital_sign";
pub const LAB_RESULT_TABLE: &str = "fact_lab_result";
pub const MEDICATION_TABLE: &str = "fact_medication";
pub const CHARGE_TABLE: &str = "fact_charge";
pub const BED_STATUS_TABLE: &str = "fact_bed_status";

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

/// The event facts of one chunk.
#[derive(Debug, Default)]
pub struct EventFacts {
    pub transfers: Vec<FactTransfer>,
    pub vital_signs: Vec<FactVitalSign>,
    pub lab_results: Vec<FactLabResult>,
    pub medications: Vec<FactMedication>,
    pub charges: Vec<FactCharge>,
    pub bed_status: Vec<FactBedStatus>,
}

impl EventFacts {
    /// Writes every table (one insert each); returns rows written per table.
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
