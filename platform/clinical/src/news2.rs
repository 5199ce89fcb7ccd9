//! The National Early Warning Score 2 (NEWS2), as published by the Royal College of
//! Physicians in *National Early Warning Score (NEWS) 2: Standardising the assessment of
//! acute-illness severity in the NHS* (RCP, London, December 2017), Chart 1 (the scoring
//! system), Chart 2 (thresholds and triggers) and Chart 3 (clinical response). The chart
//! as we keep it is in `DOMAIN.md`, section "NEWS2".
//!
//! This module owns the arithmetic of the chart and nothing else: [`score`] maps one
//! patient's latest [`Parameters`] to a [`News2`] (sub-scores, total, risk band, minimum
//! monitoring frequency). It does no I/O, keeps no state and never guesses a clinical
//! fact it was not given: SpO2 scale 2 is a per-patient prescription passed in by the
//! caller, missing parameters are reported rather than assumed normal, and
//! [`applicability`] lets the caller flag patients NEWS2 is not validated for (under 16,
//! pregnancy) instead of scoring them silently.
//!
//! Values between the chart's bands (35.05 °C, 90.5 /min) are first rounded to the
//! chart's precision (whole numbers; temperature to one decimal), half away from zero;
//! see [`round_half_away`].

use hospital_proto::events::{Consciousness, VitalSigns};
use serde::{Deserialize, Serialize};

/// The LOINC codes (and canonical UCUM units, as ingest normalises them) read by
/// [`Parameters::from_vital_signs`].
pub mod loinc {
    /// Respiratory rate, `/min`.
    pub const RESPIRATORY_RATE: &str = "9279-1";
    /// Oxygen saturation by pulse oximetry (SpO2), `%`. Preferred over [`SAO2_ARTERIAL`].
    pub const SPO2_PULSE_OXIMETRY: &str = "59408-5";
    /// Oxygen saturation in arterial blood (SaO2), `%`. Used when no SpO2 was charted.
    pub const SAO2_ARTERIAL: &str = "2708-6";
    /// Systolic blood pressure, `mm[Hg]`.
    pub const SYSTOLIC_BP: &str = "8480-6";
    /// Heart rate, `/min`.
    pub const HEART_RATE: &str = "8867-4";
    /// Body temperature, `Cel`. Preferred over [`ORAL_TEMPERATURE`].
    pub const BODY_TEMPERATURE: &str = "8310-5";
    /// Oral temperature, `Cel`. Used when no body temperature was charted.
    pub const ORAL_TEMPERATURE: &str = "8331-1";

    pub(super) const PER_MIN: &str = "/min";
    pub(super) const PERCENT: &str = "%";
    pub(super) const MM_HG: &str = "mm[Hg]";
    pub(super) const CELSIUS: &str = "Cel";
}

/// The NEWS2 ceiling: 3 + 3 + 2 + 3 + 3 + 3 + 3.
pub const MAX_TOTAL: u8 = 20;

/// The youngest age, in whole years, for which NEWS2 is validated.
pub const MIN_AGE_YEARS: u32 = 16;

/// Which SpO2 row of the chart to score with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Spo2Scale {
    /// The default for every patient.
    #[default]
    Scale1,
    /// Only for a patient with a prescribed 88-92% saturation target (typically
    /// hypercapnic respiratory failure), as documented by a clinician. A per-patient
    /// flag supplied by the caller; never inferred from the observations.
    Scale2,
}

/// Level of consciousness on the ACVPU scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Acvpu {
    /// Alert.
    Alert,
    /// New confusion (new-onset or worsening disorientation or delirium).
    NewConfusion,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

impl Acvpu {
    /// The ACVPU level of a wire value; `None` for unspecified.
    pub fn from_proto(c: Consciousness) -> Option<Self> {
        match c {
            Consciousness::Unspecified => None,
            Consciousness::Alert => Some(Self::Alert),
            Consciousness::NewConfusion => Some(Self::NewConfusion),
            Consciousness::Voice => Some(Self::Voice),
            Consciousness::Pain => Some(Self::Pain),
            Consciousness::Unresponsive => Some(Self::Unresponsive),
        }
    }
}

/// One of the seven rows of the NEWS2 chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Parameter {
    /// Respiration rate, breaths per minute.
    RespirationRate,
    /// Oxygen saturation, %.
    Spo2,
    /// Air or supplemental oxygen.
    SupplementalOxygen,
    /// Systolic blood pressure, mmHg.
    SystolicBp,
    /// Pulse, beats per minute.
    Pulse,
    /// Level of consciousness (ACVPU).
    Consciousness,
    /// Temperature, °C.
    Temperature,
}

impl Parameter {
    /// Every row, in chart order.
    pub const ALL: [Parameter; 7] = [
        Parameter::RespirationRate,
        Parameter::Spo2,
        Parameter::SupplementalOxygen,
        Parameter::SystolicBp,
        Parameter::Pulse,
        Parameter::Consciousness,
        Parameter::Temperature,
    ];
}

/// The seven NEWS2 inputs, each `None` when not charted. Numbers are in the canonical
/// units ingest normalises to (`/min`, `%`, `mm[Hg]`, `Cel`); a non-finite number counts
/// as not charted.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Parameters {
    /// Breaths per minute.
    pub respiration_rate: Option<f64>,
    /// Oxygen saturation, %.
    pub spo2: Option<f64>,
    /// Whether the patient was on supplemental oxygen when `spo2` was measured.
    pub supplemental_oxygen: Option<bool>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: Option<f64>,
    /// Beats per minute.
    pub pulse: Option<f64>,
    /// ACVPU level of consciousness.
    pub consciousness: Option<Acvpu>,
    /// Temperature, °C.
    pub temperature: Option<f64>,
}

impl Parameters {
    /// Reads one charted set of vital signs. Observations with other LOINC codes, with a
    /// unit other than the canonical one, or with a non-finite value are ignored. When a
    /// set holds both, pulse-oximetry SpO2 wins over arterial SaO2 and body temperature
    /// wins over oral temperature; otherwise the last observation of a code wins.
    pub fn from_vital_signs(v: &VitalSigns) -> Self {
        let mut p = Self {
            supplemental_oxygen: v.supplemental_oxygen,
            consciousness: Consciousness::try_from(v.consciousness)
                .ok()
                .and_then(Acvpu::from_proto),
            ..Self::default()
        };
        let (mut sao2, mut oral_temperature) = (None, None);
        for o in &v.observations {
            let (slot, unit) = match o.loinc_code.as_str() {
                loinc::RESPIRATORY_RATE => (&mut p.respiration_rate, loinc::PER_MIN),
                loinc::SPO2_PULSE_OXIMETRY => (&mut p.spo2, loinc::PERCENT),
                loinc::SAO2_ARTERIAL => (&mut sao2, loinc::PERCENT),
                loinc::SYSTOLIC_BP => (&mut p.systolic_bp, loinc::MM_HG),
                loinc::HEART_RATE => (&mut p.pulse, loinc::PER_MIN),
                loinc::BODY_TEMPERATURE => (&mut p.temperature, loinc::CELSIUS),
                loinc::ORAL_TEMPERATURE => (&mut oral_temperature, loinc::CELSIUS),
                _ => continue,
            };
            // Ingest normalises units; a value in any other unit would be scored against
            // the wrong chart row, so it is dropped (and reported missing) instead.
            if o.unit == unit && o.value.is_finite() {
                *slot = Some(o.value);
            }
        }
        p.spo2 = p.spo2.or(sao2);
        p.temperature = p.temperature.or(oral_temperature);
        p
    }

    /// This (older) set brought up to date with a `newer`, possibly partial, one: each
    /// parameter takes the newer value when the newer set has one, else keeps the older.
    ///
    /// SpO2 and supplemental oxygen travel together, because the oxygen flag describes
    /// the conditions under which that SpO2 was measured (and scale 2 scores SpO2 by it):
    /// if the newer set has either, both are taken from it, even if that leaves one
    /// unrecorded, rather than pairing a new reading with an old oxygen status.
    pub fn updated_with(&self, newer: &Self) -> Self {
        let newer_oxygenation = newer.spo2.is_some() || newer.supplemental_oxygen.is_some();
        let (spo2, supplemental_oxygen) = if newer_oxygenation {
            (newer.spo2, newer.supplemental_oxygen)
        } else {
            (self.spo2, self.supplemental_oxygen)
        };
        Self {
            respiration_rate: newer.respiration_rate.or(self.respiration_rate),
            spo2,
            supplemental_oxygen,
            systolic_bp: newer.systolic_bp.or(self.systolic_bp),
            pulse: newer.pulse.or(self.pulse),
            consciousness: newer.consciousness.or(self.consciousness),
            temperature: newer.temperature.or(self.temperature),
        }
    }

    /// The rows with no (finite) value, in chart order.
    pub fn missing(&self) -> Vec<Parameter> {
        let p = self.finite();
        let present = [
            p.respiration_rate.is_some(),
            p.spo2.is_some(),
            p.supplemental_oxygen.is_some(),
            p.systolic_bp.is_some(),
            p.pulse.is_some(),
            p.consciousness.is_some(),
            p.temperature.is_some(),
        ];
        Parameter::ALL
            .into_iter()
            .zip(present)
            .filter_map(|(param, present)| (!present).then_some(param))
            .collect()
    }

    fn finite(&self) -> Self {
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
        Self {
            respiration_rate: finite(self.respiration_rate),
            spo2: finite(self.spo2),
            systolic_bp: finite(self.systolic_bp),
            pulse: finite(self.pulse),
            temperature: finite(self.temperature),
            ..*self
        }
    }
}

/// The score of each row; `None` when the row could not be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscores {
    /// Respiration rate: 0, 1, 2 or 3.
    pub respiration_rate: Option<u8>,
    /// SpO2 on the scale used: 0-3. Also `None` on scale 2 when SpO2 is 93% or more and
    /// supplemental oxygen is not recorded, since that row then depends on it.
    pub spo2: Option<u8>,
    /// Air 0, oxygen 2.
    pub supplemental_oxygen: Option<u8>,
    /// Systolic blood pressure: 0-3.
    pub systolic_bp: Option<u8>,
    /// Pulse: 0-3.
    pub pulse: Option<u8>,
    /// Consciousness: alert 0, anything else 3.
    pub consciousness: Option<u8>,
    /// Temperature: 0-3.
    pub temperature: Option<u8>,
}

impl Subscores {
    /// The score of one row.
    pub fn get(&self, parameter: Parameter) -> Option<u8> {
        match parameter {
            Parameter::RespirationRate => self.respiration_rate,
            Parameter::Spo2 => self.spo2,
            Parameter::SupplementalOxygen => self.supplemental_oxygen,
            Parameter::SystolicBp => self.systolic_bp,
            Parameter::Pulse => self.pulse,
            Parameter::Consciousness => self.consciousness,
            Parameter::Temperature => self.temperature,
        }
    }

    /// Every row with its score, in chart order.
    pub fn iter(&self) -> impl Iterator<Item = (Parameter, Option<u8>)> + '_ {
        Parameter::ALL.into_iter().map(|p| (p, self.get(p)))
    }
}

/// Clinical risk (RCP 2017, Chart 2) and the response it triggers (Chart 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RiskBand {
    /// Total 0-4 with no single parameter scoring 3: ward-based response.
    Low,
    /// Total 0-4 with a single parameter scoring 3: urgent ward-based response.
    LowMedium,
    /// Total 5-6: key threshold for urgent response.
    Medium,
    /// Total 7 or more: urgent or emergency response.
    High,
}

impl RiskBand {
    /// The band of a total, given whether any single parameter scored 3.
    pub fn from_total(total: u8, any_single_three: bool) -> Self {
        match total {
            7.. => Self::High,
            5..=6 => Self::Medium,
            _ if any_single_three => Self::LowMedium,
            _ => Self::Low,
        }
    }
}

/// Minimum frequency of observations (RCP 2017, Chart 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MonitoringFrequency {
    /// Total 0: at least 12-hourly.
    AtLeast12Hourly,
    /// Total 1-4: at least 4-6-hourly.
    AtLeast4To6Hourly,
    /// Total 5-6, or a single parameter scoring 3: at least hourly.
    AtLeastHourly,
    /// Total 7 or more: continuous monitoring of vital signs.
    Continuous,
}

impl MonitoringFrequency {
    /// The minimum frequency for a total and its band.
    pub fn for_score(total: u8, band: RiskBand) -> Self {
        match band {
            RiskBand::High => Self::Continuous,
            RiskBand::Medium | RiskBand::LowMedium => Self::AtLeastHourly,
            RiskBand::Low if total == 0 => Self::AtLeast12Hourly,
            RiskBand::Low => Self::AtLeast4To6Hourly,
        }
    }
}

/// A NEWS2 score. When `missing` is not empty the score is partial: `total` counts only
/// the rows present (so it is a lower bound), and the caller must show it as incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct News2 {
    /// Sum of the row scores present, `0..=20`.
    pub total: u8,
    /// The score of each row.
    pub subscores: Subscores,
    /// Clinical risk band.
    pub band: RiskBand,
    /// Rows with no value, in chart order; a full NEWS2 needs all seven.
    pub missing: Vec<Parameter>,
    /// Whether any single row scored 3 (a red score).
    pub any_single_three: bool,
    /// Minimum monitoring frequency.
    pub monitoring: MonitoringFrequency,
    /// The SpO2 scale the score was computed on.
    pub scale: Spo2Scale,
}

impl News2 {
    /// Whether all seven rows were scored.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.subscores.iter().all(|(_, s)| s.is_some())
    }
}

/// Why NEWS2 should not be used for a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NotApplicable {
    /// NEWS2 is not validated for children and young people under 16.
    #[error("NEWS2 is not validated for patients under {MIN_AGE_YEARS} (age {age_years})")]
    UnderSixteen {
        /// The patient's age in whole years.
        age_years: u32,
    },
    /// NEWS2 is not validated in pregnancy.
    #[error("NEWS2 is not validated in pregnancy")]
    Pregnant,
}

/// Whether NEWS2 applies to a patient, so that the caller can flag a score rather than
/// present it as valid. Unknown age or pregnancy status (`None`) is not a reason to
/// flag: deciding what to do about unknowns is the caller's policy. Age is checked first.
pub fn applicability(age_years: Option<u32>, pregnant: Option<bool>) -> Result<(), NotApplicable> {
    if let Some(age_years) = age_years.filter(|a| *a < MIN_AGE_YEARS) {
        return Err(NotApplicable::UnderSixteen { age_years });
    }
    if pregnant == Some(true) {
        return Err(NotApplicable::Pregnant);
    }
    Ok(())
}

/// Scores `p` on the NEWS2 chart, using SpO2 `scale` (the patient's prescription).
///
/// Every row present is scored; absent rows are listed in [`News2::missing`] and count
/// nothing. Each value is first rounded to the chart's precision (see
/// [`round_half_away`]).
pub fn score(p: &Parameters, scale: Spo2Scale) -> News2 {
    let p = p.finite();
    let subscores = Subscores {
        respiration_rate: p.respiration_rate.map(respiration_rate_score),
        spo2: p.spo2.and_then(|s| spo2_score(s, p.supplemental_oxygen, scale)),
        // On both scales: oxygen 2, air 0.
        supplemental_oxygen: p.supplemental_oxygen.map(|on_oxygen| if on_oxygen { 2 } else { 0 }),
        systolic_bp: p.systolic_bp.map(systolic_bp_score),
        pulse: p.pulse.map(pulse_score),
        consciousness: p.consciousness.map(|c| if c == Acvpu::Alert { 0 } else { 3 }),
        temperature: p.temperature.map(temperature_score),
    };
    let total = subscores.iter().filter_map(|(_, s)| s).sum();
    let any_single_three = subscores.iter().any(|(_, s)| s == Some(3));
    let band = RiskBand::from_total(total, any_single_three);
    News2 {
        total,
        subscores,
        band,
        missing: p.missing(),
        any_single_three,
        monitoring: MonitoringFrequency::for_score(total, band),
        scale,
    }
}

/// How close to a half (in units of the last kept digit) a value must be to count as
/// that half. Charted decimals such as 35.05 have no exact binary form, and a value
/// converted by ingest (°F to °C) can land a few ulps below the half it stands for; a
/// real measurement is never charted to nine more decimals than the chart uses.
const HALF_TOLERANCE: f64 = 1e-9;

/// The rounding rule for values between the chart's bands: round to `decimals` places
/// (the chart's precision: 0 for every row but temperature, 1 for temperature), half
/// away from zero, and return the result in units of the last place (35.05 °C -> 351
/// tenths, then scored as 35.1; 90.5 /min -> 91). A value within 1e-9 (in units of the
/// last place) of a half is taken as that half, since binary floats miss most decimals.
pub fn round_half_away(value: f64, decimals: i32) -> i64 {
    let scaled = value * 10f64.powi(decimals);
    // f64::round rounds half away from zero; the nudge only moves values a hair short of
    // a half onto it. `as` saturates, so out-of-range input cannot wrap.
    (scaled + scaled.signum() * HALF_TOLERANCE).round() as i64
}

fn respiration_rate_score(rate: f64) -> u8 {
    // No low-side 2: 9-11 scores 1, 8 or less scores 3.
    match round_half_away(rate, 0) {
        ..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        25.. => 3,
    }
}

fn spo2_score(spo2: f64, on_oxygen: Option<bool>, scale: Spo2Scale) -> Option<u8> {
    let spo2 = round_half_away(spo2, 0);
    match scale {
        // Scale 1 ignores oxygen here: it is scored on its own row.
        Spo2Scale::Scale1 => Some(match spo2 {
            ..=91 => 3,
            92..=93 => 2,
            94..=95 => 1,
            96.. => 0,
        }),
        Spo2Scale::Scale2 => match (spo2, on_oxygen) {
            (..=83, _) => Some(3),
            (84..=85, _) => Some(2),
            (86..=87, _) => Some(1),
            (88..=92, _) => Some(0),
            // 93 or more: on air the target is exceeded harmlessly; on oxygen it is
            // over-oxygenation, scored on the right-hand side of the chart.
            (_, Some(false)) => Some(0),
            (93..=94, Some(true)) => Some(1),
            (95..=96, Some(true)) => Some(2),
            (_, Some(true)) => Some(3),
            // Cannot tell 0 from 1-3 without the oxygen status.
            (_, None) => None,
        },
    }
}

fn systolic_bp_score(systolic: f64) -> u8 {
    // No high-side 1 or 2: 111-219 scores 0, 220 or more scores 3.
    match round_half_away(systolic, 0) {
        ..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        220.. => 3,
    }
}

fn pulse_score(pulse: f64) -> u8 {
    // No low-side 2: 41-50 scores 1, 40 or less scores 3.
    match round_half_away(pulse, 0) {
        ..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        131.. => 3,
    }
}

fn temperature_score(celsius: f64) -> u8 {
    // In tenths of a degree. No low-side 2, and the high side stops at 2.
    match round_half_away(celsius, 1) {
        ..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        391.. => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hospital_proto::events::Observation;

    fn only(parameter: Parameter, value: f64) -> Parameters {
        let mut p = Parameters::default();
        match parameter {
            Parameter::RespirationRate => p.respiration_rate = Some(value),
            Parameter::Spo2 => p.spo2 = Some(value),
            Parameter::SystolicBp => p.systolic_bp = Some(value),
            Parameter::Pulse => p.pulse = Some(value),
            Parameter::Temperature => p.temperature = Some(value),
            Parameter::SupplementalOxygen | Parameter::Consciousness => unreachable!("not numeric"),
        }
        p
    }

    fn full(rr: f64, spo2: f64, oxygen: bool, sbp: f64, pulse: f64, acvpu: Acvpu, temp: f64) -> Parameters {
        Parameters {
            respiration_rate: Some(rr),
            spo2: Some(spo2),
            supplemental_oxygen: Some(oxygen),
            systolic_bp: Some(sbp),
            pulse: Some(pulse),
            consciousness: Some(acvpu),
            temperature: Some(temp),
        }
    }

    fn normal() -> Parameters {
        full(16.0, 97.0, false, 120.0, 70.0, Acvpu::Alert, 37.0)
    }

    /// Checks each `(value, expected)` of one numeric row on both scales (SpO2: scale 1
    /// only; scale 2 has its own table).
    fn check_row(parameter: Parameter, table: &[(f64, u8)]) {
        let scales: &[Spo2Scale] = match parameter {
            Parameter::Spo2 => &[Spo2Scale::Scale1],
            _ => &[Spo2Scale::Scale1, Spo2Scale::Scale2],
        };
        for &(value, expected) in table {
            for &scale in scales {
                let news = score(&only(parameter, value), scale);
                assert_eq!(
                    news.subscores.get(parameter),
                    Some(expected),
                    "{parameter:?} {value} on {scale:?}"
                );
                assert_eq!(news.total, expected, "{parameter:?} {value} total");
            }
        }
    }

    #[test]
    fn respiration_rate_band_edges() {
        check_row(
            Parameter::RespirationRate,
            &[
                (0.0, 3),
                (8.0, 3),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
                (60.0, 3),
            ],
        );
    }

    #[test]
    fn spo2_scale1_band_edges_on_air_and_oxygen() {
        let table = [
            (80.0, 3),
            (91.0, 3),
            (92.0, 2),
            (93.0, 2),
            (94.0, 1),
            (95.0, 1),
            (96.0, 0),
            (100.0, 0),
        ];
        for (spo2, expected) in table {
            for oxygen in [None, Some(false), Some(true)] {
                let p = Parameters {
                    spo2: Some(spo2),
                    supplemental_oxygen: oxygen,
                    ..Parameters::default()
                };
                let news = score(&p, Spo2Scale::Scale1);
                assert_eq!(news.subscores.spo2, Some(expected), "{spo2} oxygen {oxygen:?}");
            }
        }
    }

    #[test]
    fn spo2_scale2_band_edges_on_air_and_oxygen() {
        // (SpO2, on oxygen, expected SpO2 row). The low side ignores oxygen.
        let mut table = Vec::new();
        for oxygen in [None, Some(false), Some(true)] {
            table.extend([
                (70.0, oxygen, Some(3)),
                (83.0, oxygen, Some(3)),
                (84.0, oxygen, Some(2)),
                (85.0, oxygen, Some(2)),
                (86.0, oxygen, Some(1)),
                (87.0, oxygen, Some(1)),
                (88.0, oxygen, Some(0)),
                (92.0, oxygen, Some(0)),
            ]);
        }
        table.extend([
            (93.0, Some(false), Some(0)),
            (94.0, Some(false), Some(0)),
            (95.0, Some(false), Some(0)),
            (96.0, Some(false), Some(0)),
            (97.0, Some(false), Some(0)),
            (100.0, Some(false), Some(0)),
            (93.0, Some(true), Some(1)),
            (94.0, Some(true), Some(1)),
            (95.0, Some(true), Some(2)),
            (96.0, Some(true), Some(2)),
            (97.0, Some(true), Some(3)),
            (100.0, Some(true), Some(3)),
            // Above the target with no oxygen status: not scorable.
            (93.0, None, None),
            (100.0, None, None),
        ]);
        for (spo2, oxygen, expected) in table {
            let p = Parameters {
                spo2: Some(spo2),
                supplemental_oxygen: oxygen,
                ..Parameters::default()
            };
            let news = score(&p, Spo2Scale::Scale2);
            assert_eq!(news.subscores.spo2, expected, "{spo2} oxygen {oxygen:?}");
        }
    }

    #[test]
    fn supplemental_oxygen_scores_two_on_its_own_row_on_both_scales() {
        for scale in [Spo2Scale::Scale1, Spo2Scale::Scale2] {
            for (oxygen, expected) in [(false, 0), (true, 2)] {
                let p = Parameters {
                    supplemental_oxygen: Some(oxygen),
                    ..Parameters::default()
                };
                let news = score(&p, scale);
                assert_eq!(news.subscores.supplemental_oxygen, Some(expected), "{scale:?} {oxygen}");
                assert_eq!(news.total, expected);
            }
        }
    }

    #[test]
    fn domain_example_scale2_93_percent() {
        let on = |oxygen| Parameters {
            spo2: Some(93.0),
            supplemental_oxygen: Some(oxygen),
            ..Parameters::default()
        };
        assert_eq!(score(&on(false), Spo2Scale::Scale2).total, 0);
        let news = score(&on(true), Spo2Scale::Scale2);
        assert_eq!(
            (news.subscores.spo2, news.subscores.supplemental_oxygen),
            (Some(1), Some(2))
        );
        assert_eq!(news.total, 3);
        // The same reading on scale 1: 93% scores 2, plus 2 for oxygen.
        assert_eq!(score(&on(true), Spo2Scale::Scale1).total, 4);
    }

    #[test]
    fn systolic_bp_band_edges() {
        check_row(
            Parameter::SystolicBp,
            &[
                (60.0, 3),
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
                (260.0, 3),
            ],
        );
    }

    #[test]
    fn pulse_band_edges() {
        check_row(
            Parameter::Pulse,
            &[
                (30.0, 3),
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
                (180.0, 3),
            ],
        );
    }

    #[test]
    fn consciousness_anything_but_alert_scores_three() {
        let table = [
            (Acvpu::Alert, 0),
            (Acvpu::NewConfusion, 3),
            (Acvpu::Voice, 3),
            (Acvpu::Pain, 3),
            (Acvpu::Unresponsive, 3),
        ];
        for (acvpu, expected) in table {
            let p = Parameters {
                consciousness: Some(acvpu),
                ..Parameters::default()
            };
            let news = score(&p, Spo2Scale::Scale1);
            assert_eq!(news.subscores.consciousness, Some(expected), "{acvpu:?}");
            assert_eq!(news.any_single_three, expected == 3);
        }
    }

    #[test]
    fn temperature_band_edges() {
        check_row(
            Parameter::Temperature,
            &[
                (33.0, 3),
                (35.0, 3),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
                (42.0, 2),
            ],
        );
    }

    #[test]
    fn values_between_bands_round_half_away_from_zero_to_chart_precision() {
        check_row(
            Parameter::Temperature,
            &[
                (35.05, 1),                 // -> 35.1
                (35.04, 3),                 // -> 35.0
                (35.049_999_999_999_99, 1), // a hair short of the half: the half
                (36.05, 0),                 // -> 36.1
                (36.04, 1),
                (38.05, 1), // -> 38.1
                (38.04, 0),
                (39.05, 2), // -> 39.1
                (39.04, 1),
            ],
        );
        check_row(
            Parameter::Pulse,
            &[(90.5, 1), (90.49, 0), (40.5, 1), (130.5, 3), (50.4, 1)],
        );
        check_row(
            Parameter::RespirationRate,
            &[(8.5, 1), (8.49, 3), (20.5, 2), (24.5, 3), (11.5, 0)],
        );
        check_row(Parameter::SystolicBp, &[(90.5, 2), (219.5, 3), (219.49, 0), (110.5, 0)]);
        check_row(Parameter::Spo2, &[(91.5, 2), (91.49, 3), (95.5, 0)]);
        let p = Parameters {
            spo2: Some(92.5),
            supplemental_oxygen: Some(true),
            ..Parameters::default()
        };
        assert_eq!(
            score(&p, Spo2Scale::Scale2).subscores.spo2,
            Some(1),
            "92.5 -> 93 on oxygen"
        );
    }

    #[test]
    fn round_half_away_is_symmetric_about_zero() {
        let table = [
            (0.5, 0, 1),
            (-0.5, 0, -1),
            (1.49, 0, 1),
            (-1.49, 0, -1),
            (35.05, 1, 351),
            (-35.05, 1, -351),
            (35.0, 1, 350),
            (0.0, 1, 0),
        ];
        for (value, decimals, expected) in table {
            assert_eq!(round_half_away(value, decimals), expected, "{value} to {decimals}");
        }
    }

    #[test]
    fn worst_case_totals_twenty_and_best_case_zero() {
        let worst = full(30.0, 99.0, true, 80.0, 150.0, Acvpu::Unresponsive, 34.0);
        let news = score(&worst, Spo2Scale::Scale2);
        assert_eq!(news.total, MAX_TOTAL);
        assert_eq!(news.total, 20);
        assert!(news.is_complete());
        assert_eq!(
            (news.band, news.monitoring),
            (RiskBand::High, MonitoringFrequency::Continuous)
        );
        // Scale 1 tops out at 20 too (SpO2 <= 91 scores 3).
        let worst1 = Parameters {
            spo2: Some(85.0),
            ..worst
        };
        assert_eq!(score(&worst1, Spo2Scale::Scale1).total, 20);

        let best = score(&normal(), Spo2Scale::Scale1);
        assert_eq!(best.total, 0);
        assert!(best.is_complete());
        assert_eq!(best.band, RiskBand::Low);
        assert_eq!(best.monitoring, MonitoringFrequency::AtLeast12Hourly);
    }

    #[test]
    fn total_is_the_sum_of_subscores_and_stays_in_range() {
        // One value from every band of every row, crossed.
        let rr = [5.0, 10.0, 16.0, 22.0, 30.0];
        let spo2 = [80.0, 85.0, 87.0, 90.0, 93.0, 95.0, 97.0];
        let sbp = [80.0, 95.0, 105.0, 150.0, 230.0];
        let pulse = [35.0, 45.0, 70.0, 100.0, 120.0, 140.0];
        let acvpu = [Acvpu::Alert, Acvpu::Voice];
        let temp = [34.0, 35.5, 37.0, 38.5, 40.0];
        let mut seen_max = 0;
        for scale in [Spo2Scale::Scale1, Spo2Scale::Scale2] {
            for &r in &rr {
                for &s in &spo2 {
                    for oxygen in [false, true] {
                        for &b in &sbp {
                            for &h in &pulse {
                                for &c in &acvpu {
                                    for &t in &temp {
                                        let news = score(&full(r, s, oxygen, b, h, c, t), scale);
                                        let sum: u8 = news.subscores.iter().map(|(_, s)| s.unwrap()).sum();
                                        assert_eq!(news.total, sum);
                                        assert!(news.total <= MAX_TOTAL);
                                        // The band by RCP 2017 Chart 3, from the subscores
                                        // themselves (not the scorer's own band function).
                                        let single_three = news.subscores.iter().any(|(_, s)| s == Some(3));
                                        let band = match sum {
                                            7.. => RiskBand::High,
                                            5..=6 => RiskBand::Medium,
                                            _ if single_three => RiskBand::LowMedium,
                                            _ => RiskBand::Low,
                                        };
                                        assert_eq!(news.band, band);
                                        assert_eq!(news.any_single_three, single_three);
                                        seen_max = seen_max.max(news.total);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(seen_max, MAX_TOTAL);
    }

    #[test]
    fn risk_band_and_monitoring_rules() {
        use MonitoringFrequency::{AtLeast12Hourly, AtLeast4To6Hourly, AtLeastHourly, Continuous};
        use RiskBand::{High, Low, LowMedium, Medium};
        let n = normal();
        let with = |f: fn(&mut Parameters)| {
            let mut p = n;
            f(&mut p);
            p
        };
        // (parameters, total, any single 3, band, monitoring)
        let table = [
            (n, 0, false, Low, AtLeast12Hourly),
            (with(|p| p.pulse = Some(95.0)), 1, false, Low, AtLeast4To6Hourly),
            (
                with(|p| {
                    p.respiration_rate = Some(22.0);
                    p.supplemental_oxygen = Some(true);
                }),
                4,
                false,
                Low,
                AtLeast4To6Hourly,
            ),
            (
                with(|p| p.consciousness = Some(Acvpu::NewConfusion)),
                3,
                true,
                LowMedium,
                AtLeastHourly,
            ),
            (
                with(|p| {
                    p.systolic_bp = Some(230.0);
                    p.temperature = Some(38.5);
                }),
                4,
                true,
                LowMedium,
                AtLeastHourly,
            ),
            // A single 3 with total 5 is medium, not low-medium.
            (
                with(|p| {
                    p.respiration_rate = Some(26.0);
                    p.supplemental_oxygen = Some(true);
                }),
                5,
                true,
                Medium,
                AtLeastHourly,
            ),
            (
                with(|p| {
                    p.respiration_rate = Some(22.0);
                    p.supplemental_oxygen = Some(true);
                    p.pulse = Some(120.0);
                }),
                6,
                false,
                Medium,
                AtLeastHourly,
            ),
            (
                with(|p| {
                    p.respiration_rate = Some(26.0);
                    p.supplemental_oxygen = Some(true);
                    p.pulse = Some(120.0);
                }),
                7,
                true,
                High,
                Continuous,
            ),
            (
                with(|p| {
                    p.respiration_rate = Some(22.0);
                    p.supplemental_oxygen = Some(true);
                    p.pulse = Some(120.0);
                    p.temperature = Some(38.5);
                }),
                7,
                false,
                High,
                Continuous,
            ),
        ];
        for (i, (p, total, three, band, monitoring)) in table.into_iter().enumerate() {
            let news = score(&p, Spo2Scale::Scale1);
            assert_eq!(
                (news.total, news.any_single_three, news.band, news.monitoring),
                (total, three, band, monitoring),
                "case {i}"
            );
        }
    }

    #[test]
    fn band_and_monitoring_functions_cover_every_total() {
        for total in 0..=MAX_TOTAL {
            for three in [false, true] {
                let band = RiskBand::from_total(total, three);
                let expected = match (total, three) {
                    (7.., _) => RiskBand::High,
                    (5..=6, _) => RiskBand::Medium,
                    (_, true) => RiskBand::LowMedium,
                    _ => RiskBand::Low,
                };
                assert_eq!(band, expected, "{total} {three}");
                let monitoring = MonitoringFrequency::for_score(total, band);
                let expected = match (total, three) {
                    (0, false) => MonitoringFrequency::AtLeast12Hourly,
                    (1..=4, false) => MonitoringFrequency::AtLeast4To6Hourly,
                    (0..=6, _) => MonitoringFrequency::AtLeastHourly,
                    _ => MonitoringFrequency::Continuous,
                };
                assert_eq!(monitoring, expected, "{total} {three}");
            }
        }
    }

    #[test]
    fn missing_parameters_are_reported_and_the_rest_scored() {
        let empty = score(&Parameters::default(), Spo2Scale::Scale1);
        assert_eq!(empty.missing, Parameter::ALL.to_vec());
        assert_eq!(empty.total, 0);
        assert!(!empty.is_complete());
        assert!(empty.subscores.iter().all(|(_, s)| s.is_none()));

        let partial = Parameters {
            respiration_rate: Some(26.0),
            pulse: Some(95.0),
            ..Parameters::default()
        };
        let news = score(&partial, Spo2Scale::Scale1);
        assert_eq!(news.total, 4);
        assert_eq!(news.band, RiskBand::LowMedium);
        assert_eq!(
            news.missing,
            vec![
                Parameter::Spo2,
                Parameter::SupplementalOxygen,
                Parameter::SystolicBp,
                Parameter::Consciousness,
                Parameter::Temperature,
            ]
        );
        assert!(!news.is_complete());

        // Non-finite values count as missing, not as a score.
        let nan = Parameters {
            temperature: Some(f64::NAN),
            pulse: Some(f64::INFINITY),
            ..normal()
        };
        let news = score(&nan, Spo2Scale::Scale1);
        assert_eq!(news.missing, vec![Parameter::Pulse, Parameter::Temperature]);
        assert_eq!((news.subscores.pulse, news.subscores.temperature), (None, None));
        assert_eq!(news.total, 0);

        // Scale 2 above target with no oxygen status: SpO2 unscored, oxygen missing.
        let unknown_o2 = Parameters {
            spo2: Some(98.0),
            supplemental_oxygen: None,
            ..normal()
        };
        let news = score(&unknown_o2, Spo2Scale::Scale2);
        assert_eq!(news.missing, vec![Parameter::SupplementalOxygen]);
        assert_eq!(news.subscores.spo2, None);
        assert!(!news.is_complete());
        assert_eq!(score(&normal(), Spo2Scale::Scale2).missing, vec![]);
    }

    fn obs(code: &str, value: f64, unit: &str) -> Observation {
        Observation {
            loinc_code: code.into(),
            value,
            unit: unit.into(),
        }
    }

    fn vitals(observations: Vec<Observation>, consciousness: Consciousness, oxygen: Option<bool>) -> VitalSigns {
        VitalSigns {
            encounter_id: "E1".into(),
            observations,
            consciousness: consciousness as i32,
            supplemental_oxygen: oxygen,
            ..VitalSigns::default()
        }
    }

    #[test]
    fn from_vital_signs_maps_every_parameter() {
        let v = vitals(
            vec![
                obs("9279-1", 18.0, "/min"),
                obs("59408-5", 95.0, "%"),
                obs("8480-6", 125.0, "mm[Hg]"),
                obs("8462-4", 80.0, "mm[Hg]"), // diastolic: not a NEWS2 row
                obs("8867-4", 88.0, "/min"),
                obs("8310-5", 37.2, "Cel"),
                obs("1234-5", 1.0, "/min"), // unknown code
                obs("29463-7", 70.0, "kg"),
            ],
            Consciousness::Alert,
            Some(true),
        );
        let expected = Parameters {
            respiration_rate: Some(18.0),
            spo2: Some(95.0),
            supplemental_oxygen: Some(true),
            systolic_bp: Some(125.0),
            pulse: Some(88.0),
            consciousness: Some(Acvpu::Alert),
            temperature: Some(37.2),
        };
        assert_eq!(Parameters::from_vital_signs(&v), expected);
    }

    #[test]
    fn from_vital_signs_alternative_codes_units_and_gaps() {
        // (observations, expected spo2, expected temperature)
        let table = [
            (vec![obs("2708-6", 91.0, "%")], Some(91.0), None),
            (
                vec![obs("2708-6", 91.0, "%"), obs("59408-5", 94.0, "%")],
                Some(94.0),
                None,
            ),
            (
                vec![obs("59408-5", 94.0, "%"), obs("2708-6", 91.0, "%")],
                Some(94.0),
                None,
            ),
            (vec![obs("8331-1", 38.4, "Cel")], None, Some(38.4)),
            (
                vec![obs("8331-1", 38.4, "Cel"), obs("8310-5", 37.9, "Cel")],
                None,
                Some(37.9),
            ),
            // Not in the canonical unit, or not a number: dropped.
            (
                vec![obs("8310-5", 99.5, "[degF]"), obs("59408-5", 0.95, "1")],
                None,
                None,
            ),
            (vec![obs("8310-5", f64::NAN, "Cel")], None, None),
            (vec![obs("9999-9", 37.0, "Cel")], None, None),
            (vec![], None, None),
        ];
        for (i, (observations, spo2, temperature)) in table.into_iter().enumerate() {
            let p = Parameters::from_vital_signs(&vitals(observations, Consciousness::Unspecified, None));
            assert_eq!((p.spo2, p.temperature), (spo2, temperature), "case {i}");
            assert_eq!(p.consciousness, None);
            assert_eq!(p.supplemental_oxygen, None);
        }
    }

    #[test]
    fn from_vital_signs_maps_consciousness() {
        let table = [
            (Consciousness::Unspecified as i32, None),
            (Consciousness::Alert as i32, Some(Acvpu::Alert)),
            (Consciousness::NewConfusion as i32, Some(Acvpu::NewConfusion)),
            (Consciousness::Voice as i32, Some(Acvpu::Voice)),
            (Consciousness::Pain as i32, Some(Acvpu::Pain)),
            (Consciousness::Unresponsive as i32, Some(Acvpu::Unresponsive)),
            (42, None), // a value this build does not know
        ];
        for (wire, expected) in table {
            let v = VitalSigns {
                consciousness: wire,
                ..VitalSigns::default()
            };
            assert_eq!(Parameters::from_vital_signs(&v).consciousness, expected, "{wire}");
        }
    }

    #[test]
    fn partial_sets_merge_latest_value_per_parameter() {
        let older = full(18.0, 96.0, false, 120.0, 80.0, Acvpu::Alert, 37.0);
        let table = [
            // (newer, expected merge)
            (Parameters::default(), older),
            (
                Parameters {
                    pulse: Some(115.0),
                    temperature: Some(38.6),
                    ..Parameters::default()
                },
                Parameters {
                    pulse: Some(115.0),
                    temperature: Some(38.6),
                    ..older
                },
            ),
            (
                Parameters {
                    consciousness: Some(Acvpu::Voice),
                    respiration_rate: Some(24.0),
                    systolic_bp: Some(95.0),
                    ..Parameters::default()
                },
                Parameters {
                    consciousness: Some(Acvpu::Voice),
                    respiration_rate: Some(24.0),
                    systolic_bp: Some(95.0),
                    ..older
                },
            ),
            // SpO2 and its oxygen status travel together.
            (
                Parameters {
                    spo2: Some(93.0),
                    supplemental_oxygen: Some(true),
                    ..Parameters::default()
                },
                Parameters {
                    spo2: Some(93.0),
                    supplemental_oxygen: Some(true),
                    ..older
                },
            ),
            (
                Parameters {
                    spo2: Some(93.0),
                    ..Parameters::default()
                },
                Parameters {
                    spo2: Some(93.0),
                    supplemental_oxygen: None,
                    ..older
                },
            ),
            (
                Parameters {
                    supplemental_oxygen: Some(true),
                    ..Parameters::default()
                },
                Parameters {
                    spo2: None,
                    supplemental_oxygen: Some(true),
                    ..older
                },
            ),
        ];
        for (i, (newer, expected)) in table.into_iter().enumerate() {
            assert_eq!(older.updated_with(&newer), expected, "case {i}");
        }

        // A stream of partial charts folds into the latest complete picture.
        let charts = [
            vitals(
                vec![obs("9279-1", 20.0, "/min"), obs("8867-4", 100.0, "/min")],
                Consciousness::Alert,
                None,
            ),
            vitals(vec![obs("59408-5", 95.0, "%")], Consciousness::Unspecified, Some(false)),
            vitals(
                vec![obs("8480-6", 105.0, "mm[Hg]"), obs("8310-5", 38.2, "Cel")],
                Consciousness::Unspecified,
                None,
            ),
            vitals(vec![obs("8867-4", 112.0, "/min")], Consciousness::Unspecified, None),
        ];
        let latest = charts
            .iter()
            .map(Parameters::from_vital_signs)
            .fold(Parameters::default(), |acc, p| acc.updated_with(&p));
        let news = score(&latest, Spo2Scale::Scale1);
        assert!(news.is_complete());
        // RR 0, SpO2 95 -> 1, air 0, SBP 105 -> 1, pulse 112 -> 2, alert 0, 38.2 -> 1.
        assert_eq!(news.total, 5);
        assert_eq!(news.band, RiskBand::Medium);
    }

    #[test]
    fn applicability_flags_children_and_pregnancy() {
        let table = [
            (Some(15), None, Err(NotApplicable::UnderSixteen { age_years: 15 })),
            (Some(0), Some(false), Err(NotApplicable::UnderSixteen { age_years: 0 })),
            (Some(14), Some(true), Err(NotApplicable::UnderSixteen { age_years: 14 })),
            (Some(16), None, Ok(())),
            (Some(90), Some(false), Ok(())),
            (Some(30), Some(true), Err(NotApplicable::Pregnant)),
            (None, Some(true), Err(NotApplicable::Pregnant)),
            (None, None, Ok(())),
        ];
        for (age, pregnant, expected) in table {
            assert_eq!(applicability(age, pregnant), expected, "{age:?} {pregnant:?}");
        }
        assert_eq!(
            NotApplicable::UnderSixteen { age_years: 12 }.to_string(),
            "NEWS2 is not validated for patients under 16 (age 12)"
        );
    }

    #[test]
    fn scores_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<News2>();
        assert_send_sync::<Parameters>();
    }
}
