//! The feature store's one code path: a patient's facts ([`History`], fetched by
//! [`extract`]) and the features computed from them as of a point ([`AsOf`]), the same
//! function for training sets and for live scoring.
//!
//! Point in time: a fact counts as of `(at_ms, position)` only if it **occurred** at or
//! before `at_ms` and **arrived** (was committed to staging) at or before `position`. A
//! late fact (a lab resulted before the cutoff but sent after it) never reaches back into
//! a row whose cutoff came before its arrival. Labels ([`labels`]) look only after the
//! cutoff.

pub mod extract;
pub mod labels;

use hospital_clinical::care_unit::is_icu_code;
use hospital_clinical::news2::{self, Acvpu, Parameters, Spo2Scale};
use hospital_ml_models::metrics::charlson_from_icd;

/// A point in time and in staging: facts that occurred by `at_ms` and arrived by
/// `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    pub at_ms: i64,
    pub position: u64,
}

impl AsOf {
    fn sees(&self, at_ms: i64, position: u64) -> bool {
        at_ms <= self.at_ms && position <= self.position
    }
}

/// One numeric fact: a vital-sign reading or a lab result.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub code: String,
    pub value: f64,
    pub at_ms: i64,
    pub position: u64,
}

/// A vital-signs set's NEWS2 inputs other than its readings, as charted.
#[derive(Debug, Clone, PartialEq)]
pub struct VitalSet {
    pub source_event_id: String,
    pub encounter_id: String,
    pub at_ms: i64,
    pub position: u64,
    /// "alert", "new_confusion", "voice", "pain", "unresponsive" or "" (not charted).
    pub consciousness: String,
    pub supplemental_oxygen: Option<bool>,
    /// "scale_1", "scale_2" or "" (not stated).
    pub spo2_scale: String,
}

/// A transfer: (at, position, department, ward).
pub type Transfer = (i64, u64, String, String);

/// An encounter as the warehouse holds it, with when each part arrived.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Encounter {
    pub encounter_id: String,
    pub encounter_class: String,
    pub admission_type: String,
    pub admitted_at_ms: Option<i64>,
    pub admission_position: u64,
    pub admission_ward: String,
    pub admission_department: String,
    pub discharged_at_ms: Option<i64>,
    pub discharge_position: u64,
    pub discharge_disposition: String,
    pub ed_arrival_at_ms: Option<i64>,
    pub ed_arrival_position: u64,
    pub transfers: Vec<Transfer>,
}

/// A coded diagnosis and when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub code: String,
    pub at_ms: i64,
    pub position: u64,
}

/// Everything the features of one patient are computed from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Birth date as (year, month, day), if known.
    pub birth: Option<(i32, u32, u32)>,
    pub sex: String,
    pub deceased_at_ms: Option<i64>,
    pub vitals: Vec<Reading>,
    pub sets: Vec<VitalSet>,
    pub labs: Vec<Reading>,
    pub encounters: Vec<Encounter>,
    pub diagnoses: Vec<Diagnosis>,
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The vital signs aggregated, by LOINC code.
pub const VITALS: &[(&str, &str)] = &[
    ("rr", "9279-1"),
    ("spo2", "59408-5"),
    ("sbp", "8480-6"),
    ("hr", "8867-4"),
    ("temp", "8310-5"),
];
/// Aggregation windows, in hours before the point.
pub const WINDOWS_H: &[i64] = &[1, 6, 24];
const AGGREGATES: &[&str] = &["last", "min", "max", "mean", "slope"];
/// The labs taken as their latest value within [`LAB_WINDOW_H`], by LOINC code.
pub const LABS: &[(&str, &str)] = &[
    ("lactate", "2524-7"),
    ("creatinine", "2160-0"),
    ("wbc", "6690-2"),
    ("hemoglobin", "718-7"),
    ("platelets", "777-3"),
    ("potassium", "2823-3"),
    ("sodium", "2951-2"),
    ("bilirubin", "1975-2"),
    ("urea_nitrogen", "3094-0"),
    ("glucose", "2345-7"),
];
pub const LAB_WINDOW_H: i64 = 72;

/// A feature's name and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDef {
    pub name: String,
    pub description: String,
}

/// Every feature, in vector order. Declared here once; [`features`] fills them in this
/// order.
pub fn feature_defs() -> Vec<FeatureDef> {
    let mut defs = Vec::new();
    let mut def = |name: String, description: String| defs.push(FeatureDef { name, description });
    for (name, code) in VITALS {
        for w in WINDOWS_H {
            for agg in AGGREGATES {
                let what = match *agg {
                    "slope" => "least-squares slope per hour of".to_string(),
                    a => a.to_string(),
                };
                def(
                    format!("{name}_{agg}_{w}h"),
                    format!("{what} LOINC {code} readings in the {w} h up to the point"),
                );
            }
        }
    }
    for w in WINDOWS_H {
        def(
            format!("news2_max_{w}h"),
            format!("highest NEWS2 total of the vital-signs sets in the {w} h up to the point (each set scored on the values current at it)"),
        );
    }
    def(
        "news2_last".into(),
        "NEWS2 total as of the point (RCP 2017, the patient's stated SpO2 scale)".into(),
    );
    def(
        "news2_sets_24h".into(),
        "vital-signs sets charted in the 24 h up to the point".into(),
    );
    def(
        "on_oxygen".into(),
        "1 when the newest charted air-or-oxygen says oxygen, 0 air".into(),
    );
    def(
        "not_alert".into(),
        "1 when the newest charted ACVPU is not alert (new confusion, voice, pain, unresponsive)".into(),
    );
    for (name, code) in LABS {
        def(
            format!("lab_{name}_last"),
            format!("latest LOINC {code} result within {LAB_WINDOW_H} h before the point"),
        );
    }
    def("age_years".into(), "age in whole years at the point".into());
    def("sex_male".into(), "1 male, 0 female, missing otherwise".into());
    def(
        "admission_emergency".into(),
        "1 when the current encounter's admission type is emergency or urgent".into(),
    );
    def(
        "hours_since_admission".into(),
        "hours from the current encounter's admission to the point".into(),
    );
    def(
        "in_icu".into(),
        "1 when the current location (admission, then transfers) is an ICU".into(),
    );
    def(
        "transfers_so_far".into(),
        "transfers in the current encounter up to the point".into(),
    );
    def(
        "prior_admissions_365d".into(),
        "inpatient admissions in the 365 days before the current one".into(),
    );
    def(
        "ed_visits_182d".into(),
        "ED arrivals in the 182 days before the point (LACE's six months)".into(),
    );
    def(
        "charlson_index".into(),
        "Charlson comorbidity index (Quan 2005 ICD coding, original weights) of the diagnoses recorded by the point"
            .into(),
    );
    defs
}

/// Whether a location is an ICU: its department's or ward's code names one (the rule
/// the warehouse's `fact_icu_stay` uses).
pub fn is_icu(department: &str, ward: &str) -> bool {
    is_icu_code(department) || is_icu_code(ward)
}

fn slope_per_hour(points: &[(i64, f64)]) -> f64 {
    if points.len() < 2 {
        return f64::NAN;
    }
    let n = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|(t, _)| *t as f64 / HOUR as f64).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return f64::NAN;
    }
    let sxy: f64 = xs.iter().zip(points).map(|(x, (_, y))| (x - mx) * (y - my)).sum();
    sxy / sxx
}

fn aggregate(points: &[(i64, f64)]) -> [f64; 5] {
    if points.is_empty() {
        return [f64::NAN; 5];
    }
    let last = points.iter().max_by_key(|(t, _)| *t).map_or(f64::NAN, |(_, v)| *v);
    let min = points.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|(_, v)| *v).fold(f64::NEG_INFINITY, f64::max);
    let mean = points.iter().map(|(_, v)| v).sum::<f64>() / points.len() as f64;
    [last, min, max, mean, slope_per_hour(points)]
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn acvpu(label: &str) -> Option<Acvpu> {
    Some(match label {
        "alert" => Acvpu::Alert,
        "new_confusion" => Acvpu::NewConfusion,
        "voice" => Acvpu::Voice,
        "pain" => Acvpu::Pain,
        "unresponsive" => Acvpu::Unresponsive,
        _ => return None,
    })
}

/// NEWS2 totals of the patient's sets of the 24 h up to `at` (as seen then), each scored as of its own time
/// on the newest value of each parameter within the 24 h before it (the platform's live
/// rule), on the scale stated last.
fn news2_by_set(h: &History, at: AsOf) -> Vec<(i64, u8)> {
    let mut sets: Vec<&VitalSet> = h.sets.iter().filter(|s| at.sees(s.at_ms, s.position)).collect();
    sets.sort_by_key(|s| (s.at_ms, s.position));
    // Only the sets of the last 24 h are scored (every NEWS2 feature looks no further
    // back), and their values are at most 24 h older: readings older than 48 h never
    // count. Older sets still count for the charted consciousness, oxygen and scale.
    let vitals: Vec<&Reading> = h
        .vitals
        .iter()
        .filter(|r| at.sees(r.at_ms, r.position) && at.at_ms - r.at_ms <= 2 * DAY)
        .collect();
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        if at.at_ms - set.at_ms > DAY {
            continue;
        }
        let point = AsOf {
            at_ms: set.at_ms,
            position: at.position,
        };
        let newest = |code: &str| {
            vitals
                .iter()
                .filter(|r| r.code == code && point.sees(r.at_ms, r.position) && set.at_ms - r.at_ms <= DAY)
                .max_by_key(|r| (r.at_ms, r.position))
                .map(|r| r.value)
        };
        let charted = |f: &dyn Fn(&VitalSet) -> bool| {
            sets[..=i]
                .iter()
                .rev()
                .find(|s| f(s) && set.at_ms - s.at_ms <= DAY)
                .copied()
        };
        let consciousness = charted(&|s| acvpu(&s.consciousness).is_some()).and_then(|s| acvpu(&s.consciousness));
        let oxygen = charted(&|s| s.supplemental_oxygen.is_some()).and_then(|s| s.supplemental_oxygen);
        let scale = match sets[..=i].iter().rev().find(|s| !s.spo2_scale.is_empty()) {
            Some(s) if s.spo2_scale == "scale_2" => Spo2Scale::Scale2,
            _ => Spo2Scale::Scale1,
        };
        let p = Parameters {
            respiration_rate: newest("9279-1"),
            spo2: newest("59408-5"),
            supplemental_oxygen: oxygen,
            systolic_bp: newest("8480-6"),
            pulse: newest("8867-4"),
            consciousness,
            temperature: newest("8310-5"),
        };
        out.push((set.at_ms, news2::score(&p, scale).total));
    }
    out
}

/// The encounter the patient is in at `at`: admitted by then (as seen), not yet
/// discharged (as seen).
pub fn current_encounter(h: &History, at: AsOf) -> Option<&Encounter> {
    h.encounters
        .iter()
        .filter(|e| {
            e.admitted_at_ms.is_some_and(|a| at.sees(a, e.admission_position))
                && !e
                    .discharged_at_ms
                    .is_some_and(|d| at.sees(d, e.discharge_position) && d < at.at_ms)
        })
        .max_by_key(|e| e.admitted_at_ms)
}

/// The (department, ward) of an encounter as of `at`: the admission location, then the
/// latest transfer seen.
pub fn location_at(e: &Encounter, at: AsOf) -> (String, String) {
    e.transfers
        .iter()
        .filter(|(t, p, _, _)| at.sees(*t, *p))
        .max_by_key(|(t, p, _, _)| (*t, *p))
        .map(|(_, _, d, w)| (d.clone(), w.clone()))
        .unwrap_or_else(|| (e.admission_department.clone(), e.admission_ward.clone()))
}

fn age_at(birth: (i32, u32, u32), at_ms: i64) -> Option<f64> {
    let date = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000))
        .ok()?
        .date();
    let (y, m, d) = birth;
    let mut age = date.year() - y;
    if (u32::from(u8::from(date.month())), u32::from(date.day())) < (m, d) {
        age -= 1;
    }
    Some(f64::from(age))
}

/// The feature vector of a patient as of `at`, in [`feature_defs`] order; NaN where a
/// feature has no fact.
pub fn features(h: &History, at: AsOf) -> Vec<f64> {
    let mut v = Vec::with_capacity(128);
    for (_, code) in VITALS {
        let readings: Vec<(i64, f64)> = h
            .vitals
            .iter()
            .filter(|r| r.code == *code && at.sees(r.at_ms, r.position))
            .map(|r| (r.at_ms, r.value))
            .collect();
        for w in WINDOWS_H {
            let window: Vec<(i64, f64)> = readings
                .iter()
                .copied()
                .filter(|(t, _)| at.at_ms - t <= w * HOUR)
                .collect();
            v.extend(aggregate(&window));
        }
    }
    let scored = news2_by_set(h, at);
    for w in WINDOWS_H {
        let max = scored
            .iter()
            .filter(|(t, _)| at.at_ms - t <= w * HOUR)
            .map(|(_, s)| f64::from(*s))
            .fold(f64::NAN, f64::max);
        v.push(max);
    }
    v.push(
        scored
            .last()
            .filter(|(t, _)| at.at_ms - t <= DAY)
            .map_or(f64::NAN, |(_, s)| f64::from(*s)),
    );
    v.push(scored.iter().filter(|(t, _)| at.at_ms - t <= DAY).count() as f64);
    let newest_set = |f: &dyn Fn(&VitalSet) -> bool| {
        h.sets
            .iter()
            .filter(|s| at.sees(s.at_ms, s.position) && f(s) && at.at_ms - s.at_ms <= DAY)
            .max_by_key(|s| (s.at_ms, s.position))
    };
    v.push(
        newest_set(&|s| s.supplemental_oxygen.is_some())
            .and_then(|s| s.supplemental_oxygen)
            .map_or(f64::NAN, flag),
    );
    v.push(newest_set(&|s| acvpu(&s.consciousness).is_some()).map_or(f64::NAN, |s| flag(s.consciousness != "alert")));
    for (_, code) in LABS {
        v.push(
            h.labs
                .iter()
                .filter(|r| {
                    r.code == *code && at.sees(r.at_ms, r.position) && at.at_ms - r.at_ms <= LAB_WINDOW_H * HOUR
                })
                .max_by_key(|r| (r.at_ms, r.position))
                .map_or(f64::NAN, |r| r.value),
        );
    }
    v.push(h.birth.and_then(|b| age_at(b, at.at_ms)).unwrap_or(f64::NAN));
    v.push(match h.sex.as_str() {
        "male" => 1.0,
        "female" => 0.0,
        _ => f64::NAN,
    });
    let current = current_encounter(h, at);
    v.push(current.map_or(f64::NAN, |e| {
        flag(matches!(e.admission_type.as_str(), "emergency" | "urgent"))
    }));
    v.push(
        current
            .and_then(|e| e.admitted_at_ms)
            .map_or(f64::NAN, |a| (at.at_ms - a) as f64 / HOUR as f64),
    );
    v.push(current.map_or(f64::NAN, |e| {
        let (d, w) = location_at(e, at);
        flag(is_icu(&d, &w))
    }));
    v.push(current.map_or(f64::NAN, |e| {
        e.transfers.iter().filter(|(t, p, _, _)| at.sees(*t, *p)).count() as f64
    }));
    let admitted = current.and_then(|e| e.admitted_at_ms).unwrap_or(at.at_ms);
    v.push(
        h.encounters
            .iter()
            .filter(|e| e.encounter_class == "inpatient")
            .filter_map(|e| e.admitted_at_ms.filter(|a| at.sees(*a, e.admission_position)))
            .filter(|a| *a < admitted && admitted - a <= 365 * DAY)
            .count() as f64,
    );
    v.push(ed_visits(h, at, 182) as f64);
    v.push(f64::from(charlson_at(h, at)));
    v
}

/// ED arrivals seen as of `at` in the `days` before it.
pub fn ed_visits(h: &History, at: AsOf, days: i64) -> usize {
    h.encounters
        .iter()
        .filter_map(|e| e.ed_arrival_at_ms.filter(|t| at.sees(*t, e.ed_arrival_position)))
        .filter(|t| at.at_ms - t <= days * DAY && *t <= at.at_ms)
        .count()
}

/// The Charlson index of the diagnoses seen as of `at`.
pub fn charlson_at(h: &History, at: AsOf) -> u32 {
    let codes: Vec<&str> = h
        .diagnoses
        .iter()
        .filter(|d| at.sees(d.at_ms, d.position))
        .map(|d| d.code.as_str())
        .collect();
    charlson_from_icd(&codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(code: &str, value: f64, at_ms: i64, position: u64) -> Reading {
        Reading {
            code: code.into(),
            value,
            at_ms,
            position,
        }
    }

    fn index(name: &str) -> usize {
        feature_defs().iter().position(|d| d.name == name).unwrap()
    }

    #[test]
    fn vector_matches_the_declared_features() {
        let h = History::default();
        let v = features(
            &h,
            AsOf {
                at_ms: DAY,
                position: 1,
            },
        );
        assert_eq!(v.len(), feature_defs().len());
        let names: std::collections::HashSet<_> = feature_defs().into_iter().map(|d| d.name).collect();
        assert_eq!(names.len(), feature_defs().len(), "feature names are unique");
    }

    #[test]
    fn windows_aggregate_and_slope() {
        let h = History {
            vitals: vec![
                reading("8867-4", 80.0, 10 * HOUR, 1),
                reading("8867-4", 90.0, 11 * HOUR, 2),
                reading("8867-4", 100.0, 12 * HOUR, 3),
                reading("8867-4", 60.0, 2 * HOUR, 4),
            ],
            ..Default::default()
        };
        let v = features(
            &h,
            AsOf {
                at_ms: 12 * HOUR,
                position: 10,
            },
        );
        assert_eq!(v[index("hr_last_1h")], 100.0);
        assert_eq!(v[index("hr_min_1h")], 90.0);
        assert_eq!(v[index("hr_mean_6h")], 90.0);
        assert!((v[index("hr_slope_6h")] - 10.0).abs() < 1e-9);
        assert_eq!(v[index("hr_min_24h")], 60.0);
        assert!(v[index("rr_last_24h")].is_nan());
    }

    #[test]
    fn a_fact_counts_only_once_it_occurred_and_arrived() {
        let h = History {
            labs: vec![
                reading("2524-7", 1.0, 10 * HOUR, 5),
                // Resulted before the cutoff but committed after it (position 20).
                reading("2524-7", 6.0, 11 * HOUR, 20),
                // Committed before the cutoff but occurring after it.
                reading("2160-0", 3.0, 13 * HOUR, 6),
            ],
            ..Default::default()
        };
        let at = AsOf {
            at_ms: 12 * HOUR,
            position: 10,
        };
        let v = features(&h, at);
        assert_eq!(v[index("lab_lactate_last")], 1.0, "a late result leaked back");
        assert!(v[index("lab_creatinine_last")].is_nan(), "a future result leaked back");
        let later = features(
            &h,
            AsOf {
                at_ms: 13 * HOUR,
                position: 20,
            },
        );
        assert_eq!(later[index("lab_lactate_last")], 6.0);
        assert_eq!(later[index("lab_creatinine_last")], 3.0);
    }

    #[test]
    fn news2_of_a_set_uses_the_values_current_at_it() {
        let set = |at: i64, position: u64, scale: &str| VitalSet {
            source_event_id: format!("s{position}"),
            encounter_id: "E".into(),
            at_ms: at,
            position,
            consciousness: "alert".into(),
            supplemental_oxygen: Some(true),
            spo2_scale: scale.into(),
        };
        let mut h = History::default();
        for (code, value) in [
            ("9279-1", 16.0),
            ("59408-5", 97.0),
            ("8480-6", 120.0),
            ("8867-4", 70.0),
            ("8310-5", 37.0),
        ] {
            h.vitals.push(reading(code, value, HOUR, 1));
        }
        h.sets.push(set(HOUR, 1, "scale_2"));
        let v = features(
            &h,
            AsOf {
                at_ms: 2 * HOUR,
                position: 1,
            },
        );
        // Scale 2, 97% on oxygen: 3 (SpO2) + 2 (oxygen) = 5.
        assert_eq!(v[index("news2_last")], 5.0);
        assert_eq!(v[index("on_oxygen")], 1.0);
        assert_eq!(v[index("not_alert")], 0.0);
    }

    #[test]
    fn icu_rule_names_the_care_units() {
        assert!(is_icu("CC", "ICU"));
        assert!(is_icu("MICU", ""));
        assert!(is_icu("", "csru"));
        assert!(!is_icu("MED", "W1"));
    }
}
