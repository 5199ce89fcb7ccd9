//! Demand forecasts and staffing plans from the warehouse's daily counts
//! (`ForecastService`). SQL counts events per department (or ward) and day; the models
//! are `hospital_ml_models::{forecast, staffing}`.
//!
//! - A series runs from its first day with an event to the last **complete** UTC day
//!   before "now" (the newest fact in the warehouse), days without events counted 0.
//! - The forecaster is the direct ridge regression when the series is long enough for it
//!   (about 400 days: it uses a 364-day window), else the weekly seasonal mean (at least
//!   7 days); the response names the method.
//! - Staffing per ward: current inpatients on the ward (hours since they arrived on it),
//!   arrivals to the ward per day (admissions to it and transfers into it) forecast as
//!   above, spread over the day by the ward's past arrival hours, and a length-of-stay
//!   distribution from the whole stays of inpatients discharged from the ward (the
//!   hospital's when the ward has fewer than [`MIN_WARD_STAYS`]).

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::{Client, Row};
use hospital_ml_models::forecast::{self, DailySeries, ForecastOptions, ForecastPoint, Forecaster};
use hospital_ml_models::staffing::{self, DailyAdmissions, LosDistribution, Shift, StaffingOptions, Ward};
use hospital_ml_models::ModelError;
use serde::Deserialize;

use crate::features::extract;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Weeks the seasonal mean looks back.
const SEASONAL_WEEKS: usize = 8;
/// Coverage of every interval.
pub const COVERAGE: f64 = 0.8;
/// Stays a ward needs for its own length-of-stay distribution.
pub const MIN_WARD_STAYS: usize = 30;

/// What is forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    EdArrivals,
    Admissions,
}

/// Errors of a forecast or plan: the warehouse, or the data (too little, bad request).
#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    #[error("warehouse: {0}")]
    Warehouse(#[from] clickhouse::error::Error),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Request(String),
}

/// Arrivals to wards, `(key = ward, at = ms)`: inpatient admissions to the ward and
/// transfers into it.
const WARD_ARRIVALS: &str = "SELECT admission_ward_code AS key, assumeNotNull(admitted_at_ms) AS at \
     FROM fact_encounter FINAL WHERE is_deleted = 0 AND encounter_class = 'inpatient' AND isNotNull(admitted_at_ms) \
     UNION ALL SELECT to_ward_code AS key, transferred_at_ms AS at FROM fact_transfer FINAL WHERE is_deleted = 0";

#[derive(Row, Deserialize)]
struct Count {
    key: String,
    day: i64,
    n: u64,
}

/// Daily counts per key (department or ward), as series up to `last_day` inclusive.
fn series_of(rows: Vec<Count>, last_day: i64) -> BTreeMap<String, DailySeries> {
    let mut by_key: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.day <= last_day && !r.key.is_empty()) {
        *by_key.entry(r.key).or_default().entry(r.day).or_default() += r.n;
    }
    by_key
        .into_iter()
        .filter_map(|(k, days)| {
            let first = *days.keys().next()?;
            let values = (first..=last_day)
                .map(|d| days.get(&d).copied().unwrap_or(0) as f64)
                .collect();
            Some((k, DailySeries::new(first, values)))
        })
        .collect()
}

async fn counts(client: &Client, sql: &str) -> Result<Vec<Count>, DemandError> {
    Ok(client.query(sql).fetch_all::<Count>().await?)
}

/// Daily counts of `series` per department, through the last complete day before `now_ms`.
pub async fn department_series(
    client: &Client,
    series: Series,
    now_ms: i64,
) -> Result<BTreeMap<String, DailySeries>, DemandError> {
    let sql = match series {
        Series::EdArrivals => {
            "SELECT ed_department_code AS key, toInt64(intDiv(assumeNotNull(ed_arrival_at_ms), 86400000)) AS day, \
             count() AS n FROM fact_encounter FINAL WHERE is_deleted = 0 AND isNotNull(ed_arrival_at_ms) \
             GROUP BY key, day"
        }
        Series::Admissions => {
            "SELECT admission_department_code AS key, toInt64(intDiv(assumeNotNull(admitted_at_ms), 86400000)) AS day, \
             count() AS n FROM fact_encounter FINAL WHERE is_deleted = 0 AND encounter_class = 'inpatient' \
             AND isNotNull(admitted_at_ms) GROUP BY key, day"
        }
    };
    Ok(series_of(counts(client, sql).await?, now_ms.div_euclid(DAY_MS) - 1))
}

/// A department's (or ward's) forecast and how it was made.
#[derive(Debug, Clone)]
pub struct Forecast {
    pub method: &'static str,
    pub history: DailySeries,
    pub points: Vec<ForecastPoint>,
}

/// Forecasts `horizon` days after the series: the ridge when the series is long enough
/// for it, else the weekly seasonal mean.
pub fn forecast(history: DailySeries, horizon: usize) -> Result<Forecast, ModelError> {
    let options = ForecastOptions {
        coverage: COVERAGE,
        ..ForecastOptions::default()
    };
    match Forecaster::fit(&history, &options) {
        Ok(f) => {
            let points = f.forecast(&history, horizon);
            Ok(Forecast {
                method: "ridge",
                history,
                points,
            })
        }
        Err(ModelError::NotEnoughData(_)) => {
            let points = forecast::seasonal_mean(&history, horizon, SEASONAL_WEEKS, COVERAGE)?;
            Ok(Forecast {
                method: "seasonal_mean",
                history,
                points,
            })
        }
        Err(e) => Err(e),
    }
}

/// "YYYY-MM-DD" of a day since the epoch.
pub fn date_of(day: i64) -> String {
    let (y, m, d) = forecast::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The staffing plan of a set of wards.
#[derive(Debug, Clone)]
pub struct Plan {
    pub now_ms: i64,
    pub shifts: Vec<(staffing::ShiftStaffing, u32)>,
    pub notes: Vec<String>,
    /// Inpatients on each planned ward now.
    pub inpatients_now: BTreeMap<String, u32>,
}

#[derive(Row, Deserialize)]
struct Stay {
    key: String,
    hours: f64,
}

#[derive(Row, Deserialize)]
struct Beds {
    key: String,
    beds: u64,
}

/// Plans `wards` (every ward with inpatients or beds when empty) for `horizon_days`
/// from now, at `patients_per_nurse`.
pub async fn plan(
    client: &Client,
    wards: &[String],
    patients_per_nurse: f64,
    shifts: Vec<Shift>,
    horizon_days: u32,
) -> Result<Plan, DemandError> {
    if !(patients_per_nurse.is_finite() && patients_per_nurse > 0.0) {
        return Err(DemandError::Request(format!(
            "patients_per_nurse: required, a positive ratio such as 4 (got {patients_per_nurse})"
        )));
    }
    let now_ms = extract::horizon_ms(client).await?;
    if now_ms <= 0 {
        return Err(DemandError::Request(
            "the warehouse holds no encounters to plan from".into(),
        ));
    }
    let today = now_ms.div_euclid(DAY_MS);
    let current: Vec<Stay> = client
        .query(
            "SELECT ward_code AS key, (? - ifNull(location_at_ms, assumeNotNull(admitted_at_ms))) / 3600000 AS hours \
             FROM fact_encounter FINAL WHERE is_deleted = 0 AND encounter_class = 'inpatient' \
             AND isNotNull(admitted_at_ms) AND isNull(discharged_at_ms) AND ward_code != ''",
        )
        .bind(now_ms)
        .fetch_all()
        .await?;
    let past: Vec<Stay> = client
        .query(
            "SELECT ward_code AS key, assumeNotNull(length_of_stay_hours) AS hours FROM fact_encounter FINAL \
             WHERE is_deleted = 0 AND encounter_class = 'inpatient' AND isNotNull(length_of_stay_hours) \
             AND length_of_stay_hours >= 0",
        )
        .fetch_all()
        .await?;
    let beds: Vec<Beds> = client
        .query(
            "SELECT ward_code AS key, toUInt64(greatest(max(bed_count), countIf(level = 'bed'))) AS beds \
             FROM dim_location FINAL WHERE ward_code != '' GROUP BY ward_code",
        )
        .fetch_all()
        .await?;
    let arrivals_sql = format!(
        "SELECT key, toInt64(intDiv(at, 86400000)) AS day, count() AS n FROM ({WARD_ARRIVALS}) GROUP BY key, day"
    );
    let arrivals = series_of(counts(client, &arrivals_sql).await?, today - 1);
    // The hour of day in `day`: the same rows by hour, for each ward's arrival profile.
    let hours_sql = format!(
        "SELECT key, toInt64(intDiv(at % 86400000, 3600000)) AS day, count() AS n FROM ({WARD_ARRIVALS}) \
         GROUP BY key, day"
    );
    let mut profiles: BTreeMap<String, [f64; 24]> = BTreeMap::new();
    for c in counts(client, &hours_sql).await? {
        if let Ok(h) = usize::try_from(c.day) {
            if h < 24 {
                profiles.entry(c.key).or_insert([0.0; 24])[h] += c.n as f64;
            }
        }
    }

    let mut stays_by_ward: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let beds_of: BTreeMap<&str, u32> = beds
        .iter()
        .map(|b| (b.key.as_str(), u32::try_from(b.beds).unwrap_or(u32::MAX)))
        .collect();
    let known: BTreeSet<&str> = beds_of
        .iter()
        .filter(|(_, b)| **b > 0)
        .map(|(w, _)| *w)
        .chain(current.iter().map(|s| s.key.as_str()))
        .collect();
    let chosen: Vec<String> = if wards.is_empty() {
        known.iter().map(|w| w.to_string()).collect()
    } else {
        let unknown: Vec<&String> = wards.iter().filter(|w| !known.contains(w.as_str())).collect();
        if !unknown.is_empty() {
            return Err(DemandError::Request(format!(
                "ward_codes: unknown ward(s) {unknown:?}; known: {}",
                known.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
        wards.to_vec()
    };
    let all_stays: Vec<f64> = past.iter().map(|s| s.hours).collect();
    for s in &past {
        stays_by_ward.entry(&s.key).or_default().push(s.hours);
    }
    let hospital_los = LosDistribution::from_stays(&all_stays).map_err(|_| {
        DemandError::Request("no inpatient has been discharged yet: no length of stay to plan with".into())
    })?;

    let opts = StaffingOptions {
        shifts,
        now_hour: (now_ms.rem_euclid(DAY_MS)) as f64 / HOUR_MS as f64,
        horizon_days,
        arrival_profile: Vec::new(),
        interval: COVERAGE,
    };
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut inpatients_now = BTreeMap::new();
    for ward in &chosen {
        let ward_stays = stays_by_ward.get(ward.as_str()).cloned().unwrap_or_default();
        let (los, los_note) = if ward_stays.len() >= MIN_WARD_STAYS {
            (
                LosDistribution::from_stays(&ward_stays)?,
                format!("{} stays on the ward", ward_stays.len()),
            )
        } else {
            (
                hospital_los.clone(),
                format!(
                    "the hospital's {} stays (the ward has {})",
                    all_stays.len(),
                    ward_stays.len()
                ),
            )
        };
        let (admissions, method) = match arrivals.get(ward) {
            Some(history) => match forecast(history.clone(), horizon_days as usize) {
                Ok(f) => (f.points.iter().map(DailyAdmissions::from).collect(), f.method),
                Err(ModelError::NotEnoughData(_)) => {
                    (vec![DailyAdmissions::poisson(0.0); horizon_days as usize], "none")
                }
                Err(e) => return Err(e.into()),
            },
            None => (vec![DailyAdmissions::poisson(0.0); horizon_days as usize], "none"),
        };
        let profile = profiles.get(ward).filter(|p| p.iter().sum::<f64>() > 0.0);
        let beds = beds_of.get(ward.as_str()).copied().unwrap_or(0);
        let w = Ward {
            name: ward.clone(),
            beds,
            patients_per_nurse,
            current_stays_hours: current
                .iter()
                .filter(|s| &s.key == ward)
                .map(|s| s.hours.max(0.0))
                .collect(),
            los,
            admissions,
        };
        inpatients_now.insert(ward.clone(), w.current_stays_hours.len() as u32);
        let ward_opts = StaffingOptions {
            arrival_profile: profile.map(|p| p.to_vec()).unwrap_or_default(),
            ..opts.clone()
        };
        notes.push(format!(
            "{ward}: {} beds, {} inpatients now; arrivals forecast: {}; length of stay from {los_note}",
            beds,
            w.current_stays_hours.len(),
            if method == "none" {
                "none (fewer than 7 days of arrivals)".to_string()
            } else {
                method.to_string()
            }
        ));
        out.extend(staffing::plan(&[w], &ward_opts)?.into_iter().map(|s| (s, beds)));
    }
    Ok(Plan {
        now_ms,
        shifts: out,
        notes,
        inpatients_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_fill_missing_days_and_stop_at_the_last_complete_day() {
        let rows = vec![
            Count {
                key: "ED".into(),
                day: 10,
                n: 3,
            },
            Count {
                key: "ED".into(),
                day: 12,
                n: 5,
            },
            Count {
                key: "ED".into(),
                day: 14,
                n: 9,
            },
            Count {
                key: String::new(),
                day: 11,
                n: 1,
            },
        ];
        let s = series_of(rows, 13);
        assert_eq!(s.len(), 1, "an empty key is no department");
        assert_eq!(s["ED"], DailySeries::new(10, vec![3.0, 0.0, 5.0, 0.0]));
        assert_eq!(date_of(0), "1970-01-01");
    }

    #[test]
    fn short_histories_get_the_seasonal_mean() {
        let f = forecast(DailySeries::new(0, vec![10.0; 21]), 14).unwrap();
        assert_eq!(f.method, "seasonal_mean");
        assert_eq!(f.points.len(), 14);
        assert!(matches!(
            forecast(DailySeries::new(0, vec![10.0; 3]), 14),
            Err(ModelError::NotEnoughData(_))
        ));
    }
}
