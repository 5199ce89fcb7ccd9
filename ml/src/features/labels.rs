//! Training rows: which (patient, point) rows a task has, and their labels, which look
//! only at what happened after the point.
//!
//! - Deterioration within 24 h: one row per vital-signs set taken during an inpatient
//!   encounter while the patient was not in an ICU (as seen at the set); positive when
//!   an ICU stay starts, or the patient dies, in the 24 h after the set.
//! - Readmission within 30 days: one row per inpatient discharge alive; positive when
//!   an inpatient admission of the patient starts in the 30 days after it.
//!
//! A row whose label window reaches past the newest fact of the extract (`horizon_ms`)
//! is left out: its outcome is not known yet (counted as censored).

use super::{charlson_at, current_encounter, ed_visits, features, location_at, AsOf, History, DAY, HOUR};
use hospital_ml_models::metrics::lace_index;

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Deterioration24h,
    Readmission30d,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Deterioration24h => "deterioration_24h",
            Task::Readmission30d => "readmission_30d",
        }
    }

    pub fn label_definition(self) -> &'static str {
        match self {
            Task::Deterioration24h => {
                "positive when an ICU stay starts or the patient dies within 24 h after a vital-signs set taken on a \
                 non-ICU location of an inpatient encounter; rows whose 24 h are not yet observed are left out"
            }
            Task::Readmission30d => {
                "positive when an inpatient admission starts within 30 days after an inpatient discharge alive; rows \
                 whose 30 days are not yet observed are left out"
            }
        }
    }

    /// The baseline each report puts the model beside, and its alerting threshold.
    pub fn baseline(self) -> (&'static str, f64) {
        match self {
            Task::Deterioration24h => ("NEWS2 total (alert at >= 5)", 5.0),
            Task::Readmission30d => ("LACE index (high at >= 10)", 10.0),
        }
    }
}

/// One training row before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub entity: String,
    pub at: AsOf,
    pub label: bool,
    /// The baseline's score for the row (NEWS2 total, or LACE).
    pub baseline: f64,
    /// Hours of observation the row stands for (to the next row of the patient, at most
    /// 24), for alerts per 100 patient-days.
    pub exposure_hours: f64,
    pub features: Vec<f64>,
}

/// What building rows for one patient found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub rows: u64,
    /// Candidate points left out because their label window is not observed yet.
    pub censored: u64,
    /// Candidate points left out because they are outside [from, to).
    pub out_of_range: u64,
    /// Vital-signs sets left out because the patient was in an ICU or not admitted.
    pub not_on_a_ward: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, o: Self) {
        self.rows += o.rows;
        self.censored += o.censored;
        self.out_of_range += o.out_of_range;
        self.not_on_a_ward += o.not_on_a_ward;
    }
}

/// The inpatient encounter a deterioration point `at` is on, when the patient is on a
/// non-ICU location of one (as seen at `at`): the rule for training rows and for live
/// scoring alike.
pub fn ward_encounter(h: &History, at: AsOf) -> Option<&super::Encounter> {
    current_encounter(h, at)
        .filter(|e| e.encounter_class == "inpatient")
        .filter(|e| {
            let (d, w) = location_at(e, at);
            !super::is_icu(&d, &w)
        })
}

/// The readmission point of an encounter, with its admission time: its discharge, when
/// it is an inpatient encounter discharged alive (training rows and live scoring alike).
pub fn discharge_point(e: &super::Encounter) -> Option<(AsOf, i64)> {
    if e.encounter_class != "inpatient" || e.discharge_disposition == "deceased" {
        return None;
    }
    let (Some(discharged), Some(admitted)) = (e.discharged_at_ms, e.admitted_at_ms) else {
        return None;
    };
    Some((
        AsOf {
            at_ms: discharged,
            position: e.discharge_position,
        },
        admitted,
    ))
}

fn death_at(h: &History) -> Option<i64> {
    let discharged_dead = h
        .encounters
        .iter()
        .filter(|e| e.discharge_disposition == "deceased")
        .filter_map(|e| e.discharged_at_ms)
        .min();
    match (discharged_dead, h.deceased_at_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The rows of one patient for `task`, with cutoffs in `[from_ms, to_ms)`.
pub fn rows(
    task: Task,
    h: &History,
    icu_starts: &[i64],
    from_ms: i64,
    to_ms: i64,
    horizon_ms: i64,
    counts: &mut RowCounts,
) -> Vec<Row> {
    match task {
        Task::Deterioration24h => deterioration_rows(h, icu_starts, from_ms, to_ms, horizon_ms, counts),
        Task::Readmission30d => readmission_rows(h, from_ms, to_ms, horizon_ms, counts),
    }
}

fn deterioration_rows(
    h: &History,
    icu_starts: &[i64],
    from_ms: i64,
    to_ms: i64,
    horizon_ms: i64,
    counts: &mut RowCounts,
) -> Vec<Row> {
    let death = death_at(h);
    let mut sets: Vec<_> = h.sets.iter().collect();
    sets.sort_by_key(|s| (s.at_ms, s.position));
    let mut out = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        if set.at_ms < from_ms || set.at_ms >= to_ms {
            counts.out_of_range += 1;
            continue;
        }
        let at = AsOf {
            at_ms: set.at_ms,
            position: set.position,
        };
        if ward_encounter(h, at).is_none() {
            counts.not_on_a_ward += 1;
            continue;
        }
        let end = set.at_ms + DAY;
        if end > horizon_ms {
            counts.censored += 1;
            continue;
        }
        let label =
            icu_starts.iter().any(|t| *t > set.at_ms && *t <= end) || death.is_some_and(|d| d > set.at_ms && d <= end);
        let next = sets[i + 1..].iter().find(|s| s.at_ms > set.at_ms).map(|s| s.at_ms);
        let exposure_hours = next.map_or(24.0, |n| ((n - set.at_ms) as f64 / HOUR as f64).min(24.0));
        let features = features(h, at);
        let baseline = features[news2_last_index()];
        counts.rows += 1;
        out.push(Row {
            entity: set.source_event_id.clone(),
            at,
            label,
            baseline,
            exposure_hours,
            features,
        });
    }
    out
}

fn news2_last_index() -> usize {
    use std::sync::OnceLock;
    static INDEX: OnceLock<usize> = OnceLock::new();
    *INDEX.get_or_init(|| {
        super::feature_defs()
            .iter()
            .position(|d| d.name == "news2_last")
            .unwrap_or(0)
    })
}

fn readmission_rows(h: &History, from_ms: i64, to_ms: i64, horizon_ms: i64, counts: &mut RowCounts) -> Vec<Row> {
    let mut out = Vec::new();
    for e in &h.encounters {
        let Some((at, admitted)) = discharge_point(e) else {
            continue;
        };
        let discharged = at.at_ms;
        if discharged < from_ms || discharged >= to_ms {
            counts.out_of_range += 1;
            continue;
        }
        let end = discharged + 30 * DAY;
        if end > horizon_ms {
            counts.censored += 1;
            continue;
        }
        let label = h.encounters.iter().any(|o| {
            o.encounter_class == "inpatient"
                && o.encounter_id != e.encounter_id
                && o.admitted_at_ms.is_some_and(|a| a > discharged && a <= end)
        });
        let los_days = (discharged - admitted) as f64 / DAY as f64;
        let emergent = matches!(e.admission_type.as_str(), "emergency" | "urgent");
        let ed = u32::try_from(ed_visits(h, at, 182)).unwrap_or(u32::MAX);
        let baseline = f64::from(lace_index(los_days, emergent, charlson_at(h, at), ed));
        counts.rows += 1;
        out.push(Row {
            entity: e.encounter_id.clone(),
            at,
            label,
            baseline,
            exposure_hours: 24.0,
            features: features(h, at),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Encounter, Reading, VitalSet};
    use super::*;

    fn inpatient(id: &str, admitted: i64, position: u64, discharged: Option<(i64, u64, &str)>) -> Encounter {
        Encounter {
            encounter_id: id.into(),
            encounter_class: "inpatient".into(),
            admission_type: "emergency".into(),
            admitted_at_ms: Some(admitted),
            admission_position: position,
            admission_ward: "W1".into(),
            admission_department: "MED".into(),
            discharged_at_ms: discharged.map(|d| d.0),
            discharge_position: discharged.map_or(0, |d| d.1),
            discharge_disposition: discharged.map_or(String::new(), |d| d.2.to_string()),
            ..Default::default()
        }
    }

    fn set(id: &str, at: i64, position: u64) -> VitalSet {
        VitalSet {
            source_event_id: id.into(),
            encounter_id: "E1".into(),
            at_ms: at,
            position,
            consciousness: "alert".into(),
            supplemental_oxygen: Some(false),
            spo2_scale: String::new(),
        }
    }

    #[test]
    fn deterioration_labels_look_only_after_the_set() {
        let mut h = History {
            encounters: vec![inpatient("E1", 0, 1, None)],
            sets: vec![
                set("s1", 10 * HOUR, 2),
                set("s2", 40 * HOUR, 3),
                set("s3", 100 * HOUR, 4),
            ],
            ..Default::default()
        };
        h.vitals.push(Reading {
            code: "8867-4".into(),
            value: 120.0,
            at_ms: 10 * HOUR,
            position: 2,
        });
        // An ICU stay starts 20 h after s2 (inside its 24 h) and 50 h after s1 (outside).
        let icu = [60 * HOUR];
        let mut counts = RowCounts::default();
        let rows = rows(Task::Deterioration24h, &h, &icu, 0, i64::MAX, 110 * HOUR, &mut counts);
        let labels: Vec<(&str, bool)> = rows.iter().map(|r| (r.entity.as_str(), r.label)).collect();
        // s3's 24 h end at 124 h, past the horizon: censored.
        assert_eq!(labels, vec![("s1", false), ("s2", true)]);
        assert_eq!(counts.censored, 1);
        assert_eq!(rows[0].exposure_hours, 24.0);
    }

    #[test]
    fn readmission_within_30_days_and_lace_baseline() {
        let h = History {
            encounters: vec![
                inpatient("E1", 0, 1, Some((5 * DAY, 2, "home"))),
                inpatient("E2", 20 * DAY, 3, Some((22 * DAY, 4, "home"))),
                inpatient("E3", 60 * DAY, 5, Some((61 * DAY, 6, "deceased"))),
            ],
            ..Default::default()
        };
        let mut counts = RowCounts::default();
        let rows = rows(Task::Readmission30d, &h, &[], 0, i64::MAX, 100 * DAY, &mut counts);
        let labels: Vec<(&str, bool)> = rows.iter().map(|r| (r.entity.as_str(), r.label)).collect();
        assert_eq!(
            labels,
            vec![("E1", true), ("E2", false)],
            "a death is no discharge to follow"
        );
        // LACE of E1: 5 days -> 4, emergent -> 3, Charlson 0, no ED visits: 7.
        assert_eq!(rows[0].baseline, 7.0);
    }
}
