//! From forecasts to staffing: the census of a ward at the start of every shift of the next
//! days, its interval, the nurses it needs at a patient-to-nurse ratio, and the probability
//! that it exceeds the ward's beds.
//!
//! # Method
//!
//! Time is in hours from `now`, the moment the current inpatients were counted. The
//! census of a shift is the number of patients in the ward at the shift's start. It is
//! the sum of independent parts, whose distribution is computed exactly (no Monte Carlo):
//!
//! - **Current inpatients.** A patient admitted `a` hours ago is still there `t` hours
//!   from now with the conditional survival of the ward's empirical length of stay `L`
//!   (the list of past stays): `P(L > a + t | L > a) = S(a + t) / S(a)`, `S(x) = P(L > x)`
//!   (a stay of exactly `a + t` hours has ended). A patient who has already stayed longer
//!   than every recorded stay is kept (probability 1): the history says nothing about
//!   them, and keeping them errs on the side of staffing. Their count is Poisson-binomial
//!   (exact dynamic programme).
//! - **New admissions.** Day `d`'s admissions arrive spread over its hours by
//!   `arrival_profile` (uniform by default), with the forecast mean `m` and variance `v`.
//!   If `v <= m` their number is Poisson; otherwise negative binomial with the same mean
//!   and variance (a Poisson whose rate is Gamma distributed, the over-dispersion a
//!   forecast's interval carries). Each admission is counted at time `t` if it arrived
//!   after `now` and before `t` and is still there, with probability `pi_d(t)` = the mean
//!   over its arrival time of `S(t - arrival)`, computed exactly from the empirical
//!   distribution (`integral of S over [x0, x1] = E[min(L, x1)] - E[min(L, x0)]`).
//!   Thinning keeps the family: a Poisson(m) thins to Poisson(m pi), a negative binomial
//!   with shape `r` to one with the same `r` and mean `m pi`. Days are independent;
//!   the Poisson days add into one Poisson, negative binomial days are convolved.
//!
//! The census distribution is the convolution of these parts. From it: the expected
//! census, the interval (the `(1 - interval) / 2` and `(1 + interval) / 2` quantiles), the
//! nurses `ceil(census / patients_per_nurse)` at the expected and at the upper census,
//! and `P(census > beds)`, the probability that more patients than beds need one.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// A ward's empirical length-of-stay distribution, in hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LosDistribution {
    sorted: Vec<f64>,
    /// `cumulative[i]` = sum of the `i` shortest stays.
    cumulative: Vec<f64>,
}

impl LosDistribution {
    /// From past stays in hours (each finite and non-negative; at least one).
    pub fn from_stays(hours: &[f64]) -> Result<Self, ModelError> {
        if hours.is_empty() {
            return Err(ModelError::InvalidInput(
                "a length-of-stay distribution needs at least one past stay".into(),
            ));
        }
        if let Some(bad) = hours.iter().find(|h| !(h.is_finite() && **h >= 0.0)) {
            return Err(ModelError::InvalidInput(format!(
                "a stay must be a finite, non-negative number of hours, got {bad}"
            )));
        }
        let mut sorted = hours.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut cumulative = Vec::with_capacity(sorted.len() + 1);
        let mut acc = 0.0;
        cumulative.push(acc);
        for s in &sorted {
            acc += s;
            cumulative.push(acc);
        }
        Ok(Self { sorted, cumulative })
    }

    /// `S(t) = P(L > t)`.
    pub fn survival(&self, t: f64) -> f64 {
        let ended = self.sorted.partition_point(|&s| s <= t);
        (self.sorted.len() - ended) as f64 / self.sorted.len() as f64
    }

    /// `P(L > stayed + ahead | L > stayed)`; 1 when no past stay was longer than `stayed`.
    pub fn stay_probability(&self, stayed: f64, ahead: f64) -> f64 {
        let s = self.survival(stayed);
        if s <= 0.0 {
            1.0
        } else {
            self.survival(stayed + ahead) / s
        }
    }

    /// `E[min(L, x)]` (0 for `x <= 0`): the integral of `S` over `[0, x]`.
    fn mean_min(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        let below = self.sorted.partition_point(|&s| s <= x);
        let n = self.sorted.len();
        (self.cumulative[below] + x * (n - below) as f64) / n as f64
    }
}

/// Forecast admissions of one day.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyAdmissions {
    pub mean: f64,
    /// Poisson when `variance <= mean`, negative binomial above.
    pub variance: f64,
}

impl DailyAdmissions {
    pub fn poisson(mean: f64) -> Self {
        Self { mean, variance: mean }
    }

    /// From a forecast's mean and 80% interval: the variance of a normal with that
    /// interval (`((upper - lower) / (2 * 1.2816))^2`), at least the mean.
    pub fn from_interval80(mean: f64, lower: f64, upper: f64) -> Self {
        let sd = (upper - lower).max(0.0) / (2.0 * 1.281_551_565_5);
        Self {
            mean,
            variance: (sd * sd).max(mean),
        }
    }
}

impl From<&crate::forecast::ForecastPoint> for DailyAdmissions {
    fn from(p: &crate::forecast::ForecastPoint) -> Self {
        Self::from_interval80(p.mean, p.lower, p.upper)
    }
}

/// A shift, by the hour of the day it starts (it lasts until the next shift starts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub name: String,
    /// Hours after midnight, in `[0, 24)`.
    pub start_hour: f64,
}

impl Shift {
    pub fn new(name: &str, start_hour: f64) -> Self {
        Self {
            name: name.to_string(),
            start_hour,
        }
    }

    /// Day 07-19, night 19-07.
    pub fn twelve_hour() -> Vec<Shift> {
        vec![Shift::new("day", 7.0), Shift::new("night", 19.0)]
    }

    /// Early 07-15, late 15-23, night 23-07.
    pub fn eight_hour() -> Vec<Shift> {
        vec![
            Shift::new("early", 7.0),
            Shift::new("late", 15.0),
            Shift::new("night", 23.0),
        ]
    }
}

/// One ward's state and forecast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ward {
    pub name: String,
    pub beds: u32,
    /// The stated patient-to-nurse ratio: patients one nurse may care for.
    pub patients_per_nurse: f64,
    /// Hours since admission of each current inpatient, at `now`.
    pub current_stays_hours: Vec<f64>,
    pub los: LosDistribution,
    /// Forecast admissions to the ward per calendar day, `[0]` being today (the day of
    /// `now`; only its admissions after `now` are new).
    pub admissions: Vec<DailyAdmissions>,
}

/// Shifts and horizon of a staffing plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffingOptions {
    pub shifts: Vec<Shift>,
    /// Hours after midnight of today at which the current inpatients were counted.
    pub now_hour: f64,
    /// Days planned, today included: shifts starting before `now` are skipped.
    pub horizon_days: u32,
    /// Share of a day's admissions arriving in each of its 24 hours; uniform if empty.
    pub arrival_profile: Vec<f64>,
    /// Coverage of the census interval.
    pub interval: f64,
}

impl Default for StaffingOptions {
    fn default() -> Self {
        Self {
            shifts: Shift::twelve_hour(),
            now_hour: 7.0,
            horizon_days: 7,
            arrival_profile: Vec::new(),
            interval: 0.8,
        }
    }
}

/// The census and staffing of one ward for one shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftStaffing {
    pub ward: String,
    /// Day index, 0 = today.
    pub day: u32,
    pub shift: String,
    /// Hours from `now` to the shift's start.
    pub hours_from_now: f64,
    pub expected_census: f64,
    /// Census interval (80% by default).
    pub census_lower: u32,
    pub census_upper: u32,
    /// `ceil(expected_census / patients_per_nurse)`.
    pub nurses_expected: u32,
    /// `ceil(census_upper / patients_per_nurse)`.
    pub nurses_upper: u32,
    /// `P(census > beds)`.
    pub p_over_beds: f64,
}

/// Nurses for a census at a patient-to-nurse ratio: `ceil(census / ratio)`, with a
/// relative tolerance of 1e-9 so that float noise (8.000000000001 / 4) does not add a
/// nurse.
pub fn nurses_needed(census: f64, patients_per_nurse: f64) -> u32 {
    let exact = census / patients_per_nurse;
    (exact - 1e-9 * exact.abs().max(1.0)).ceil().max(0.0) as u32
}

/// The staffing of every ward for every shift starting in the next `horizon_days` days
/// (from `now`), ward by ward, in time order.
pub fn plan(wards: &[Ward], opts: &StaffingOptions) -> Result<Vec<ShiftStaffing>, ModelError> {
    let profile = check_options(opts)?;
    let mut shifts = opts.shifts.clone();
    shifts.sort_by(|a, b| a.start_hour.total_cmp(&b.start_hour));
    let mut out = Vec::new();
    for ward in wards {
        check_ward(ward, opts.horizon_days as usize)?;
        for day in 0..opts.horizon_days {
            for shift in &shifts {
                let t = f64::from(day) * 24.0 + shift.start_hour - opts.now_hour;
                if t < 0.0 {
                    continue;
                }
                let census = census_at(ward, &profile, opts.now_hour, t);
                let (lower, upper) = census.interval(opts.interval);
                out.push(ShiftStaffing {
                    ward: ward.name.clone(),
                    day,
                    shift: shift.name.clone(),
                    hours_from_now: t,
                    expected_census: census.mean,
                    census_lower: lower,
                    census_upper: upper,
                    nurses_expected: nurses_needed(census.mean, ward.patients_per_nurse),
                    nurses_upper: nurses_needed(f64::from(upper), ward.patients_per_nurse),
                    p_over_beds: census.p_above(ward.beds),
                });
            }
        }
    }
    Ok(out)
}

/// The distribution of a census.
#[derive(Clone, Debug, PartialEq)]
pub struct CensusDistribution {
    /// `pmf[k] = P(census = k)` (the tail beyond the last entry is below 1e-12).
    pub pmf: Vec<f64>,
    /// The exact mean (not the truncated pmf's).
    pub mean: f64,
}

impl CensusDistribution {
    /// Smallest `k` with `P(census <= k) >= p`.
    pub fn quantile(&self, p: f64) -> u32 {
        let mut acc = 0.0;
        for (k, q) in self.pmf.iter().enumerate() {
            acc += q;
            if acc >= p - 1e-12 {
                return k as u32;
            }
        }
        self.pmf.len().saturating_sub(1) as u32
    }

    /// The central interval of coverage `c`.
    pub fn interval(&self, c: f64) -> (u32, u32) {
        (self.quantile((1.0 - c) / 2.0), self.quantile((1.0 + c) / 2.0))
    }

    /// `P(census > k)`.
    pub fn p_above(&self, k: u32) -> f64 {
        self.pmf.iter().skip(k as usize + 1).sum::<f64>().clamp(0.0, 1.0)
    }
}

/// The census distribution of `ward` `hours_from_now` hours after `now` (see the module
/// documentation). `opts` supplies `now_hour` and the arrival profile.
pub fn census_distribution(
    ward: &Ward,
    opts: &StaffingOptions,
    hours_from_now: f64,
) -> Result<CensusDistribution, ModelError> {
    let profile = check_options(opts)?;
    if !(hours_from_now.is_finite() && hours_from_now >= 0.0) {
        return Err(ModelError::InvalidInput(
            "hours_from_now must be finite and non-negative".into(),
        ));
    }
    check_ward(ward, ((opts.now_hour + hours_from_now) / 24.0).floor() as usize + 1)?;
    Ok(census_at(ward, &profile, opts.now_hour, hours_from_now))
}

fn census_at(ward: &Ward, profile: &[f64; 24], now_hour: f64, t: f64) -> CensusDistribution {
    // Current inpatients: Poisson-binomial.
    let mut pmf = vec![1.0];
    let mut mean = 0.0;
    for &stayed in &ward.current_stays_hours {
        let p = ward.los.stay_probability(stayed, t);
        mean += p;
        let mut next = vec![0.0; pmf.len() + 1];
        for (k, q) in pmf.iter().enumerate() {
            next[k] += q * (1.0 - p);
            next[k + 1] += q * p;
        }
        pmf = next;
    }
    // New admissions, thinned by arrival before t and survival to t.
    let mut poisson_rate = 0.0;
    for (d, adm) in ward.admissions.iter().enumerate() {
        let day_start = d as f64 * 24.0 - now_hour;
        if day_start >= t {
            break;
        }
        let mut kept = 0.0;
        for (hour, share) in profile.iter().enumerate() {
            let a0 = (day_start + hour as f64).max(0.0);
            let a1 = (day_start + hour as f64 + 1.0).min(t);
            if a1 > a0 && *share > 0.0 {
                // share per hour of arrival time, times the integral of S(t - a) da.
                kept += share * (ward.los.mean_min(t - a0) - ward.los.mean_min(t - a1));
            }
        }
        let thinned = adm.mean * kept;
        mean += thinned;
        if thinned <= 0.0 {
            continue;
        }
        if adm.variance > adm.mean {
            let shape = adm.mean * adm.mean / (adm.variance - adm.mean);
            pmf = convolve(&pmf, &negative_binomial_pmf(thinned, shape));
        } else {
            poisson_rate += thinned;
        }
    }
    if poisson_rate > 0.0 {
        pmf = convolve(&pmf, &poisson_pmf(poisson_rate));
    }
    CensusDistribution { pmf, mean }
}

const TAIL: f64 = 1e-13;
const MAX_SUPPORT: usize = 1_000_000;

/// Poisson pmf up to where the tail is below `TAIL` (computed in logs: no underflow of
/// `exp(-rate)` at large rates).
fn poisson_pmf(rate: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut log_p = -rate;
    let mut acc = 0.0;
    let mut k = 0usize;
    loop {
        let p = log_p.exp();
        out.push(p);
        acc += p;
        if (k as f64 > rate && 1.0 - acc < TAIL) || k >= MAX_SUPPORT {
            return out;
        }
        k += 1;
        log_p += rate.ln() - (k as f64).ln();
    }
}

/// Negative binomial pmf with this mean and shape `r` (variance `mean + mean^2 / r`).
fn negative_binomial_pmf(mean: f64, shape: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut log_p = shape * (shape / (shape + mean)).ln();
    let log_q = (mean / (shape + mean)).ln();
    let mut acc = 0.0;
    let mut k = 0usize;
    loop {
        let p = log_p.exp();
        out.push(p);
        acc += p;
        if (k as f64 > mean && 1.0 - acc < TAIL) || k >= MAX_SUPPORT {
            return out;
        }
        k += 1;
        log_p += ((k as f64 - 1.0 + shape) / k as f64).ln() + log_q;
    }
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        if *x == 0.0 {
            continue;
        }
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

fn check_options(opts: &StaffingOptions) -> Result<[f64; 24], ModelError> {
    let bad = |what: String| Err(ModelError::InvalidInput(what));
    if opts.shifts.is_empty() {
        return bad("at least one shift".into());
    }
    if let Some(s) = opts
        .shifts
        .iter()
        .find(|s| !(s.start_hour >= 0.0 && s.start_hour < 24.0))
    {
        return bad(format!("shift {} starts outside [0, 24)", s.name));
    }
    if !(opts.now_hour >= 0.0 && opts.now_hour < 24.0) {
        return bad("now_hour must be in [0, 24)".into());
    }
    if opts.horizon_days == 0 {
        return bad("horizon_days must be at least 1".into());
    }
    if !(opts.interval > 0.0 && opts.interval < 1.0) {
        return bad("interval must be in (0, 1)".into());
    }
    if opts.arrival_profile.is_empty() {
        return Ok([1.0 / 24.0; 24]);
    }
    let total: f64 = opts.arrival_profile.iter().sum();
    if opts.arrival_profile.len() != 24
        || opts.arrival_profile.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        || !(total > 0.0 && total.is_finite())
    {
        return bad("arrival_profile must be empty or 24 non-negative weights, not all 0".into());
    }
    let mut profile = [0.0; 24];
    for (p, w) in profile.iter_mut().zip(&opts.arrival_profile) {
        *p = w / total;
    }
    Ok(profile)
}

/// Checks a ward whose admissions forecast must cover `days` days from today.
fn check_ward(ward: &Ward, days: usize) -> Result<(), ModelError> {
    let bad = |what: String| Err(ModelError::InvalidInput(format!("ward {}: {what}", ward.name)));
    if !(ward.patients_per_nurse.is_finite() && ward.patients_per_nurse > 0.0) {
        return bad("patients_per_nurse must be positive".into());
    }
    if let Some(h) = ward.current_stays_hours.iter().find(|h| !(h.is_finite() && **h >= 0.0)) {
        return bad(format!("hours since admission must be finite and >= 0, got {h}"));
    }
    if ward.admissions.len() < days {
        return bad(format!(
            "{} days of admissions forecast, {days} needed",
            ward.admissions.len()
        ));
    }
    if let Some(a) = ward
        .admissions
        .iter()
        .find(|a| !(a.mean.is_finite() && a.mean >= 0.0 && a.variance.is_finite() && a.variance >= 0.0))
    {
        return bad(format!("admissions forecast out of range: {a:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ward(stays: &[f64], current: Vec<f64>, admissions: Vec<DailyAdmissions>) -> Ward {
        Ward {
            name: "4W".into(),
            beds: 2,
            patients_per_nurse: 4.0,
            current_stays_hours: current,
            los: LosDistribution::from_stays(stays).unwrap(),
            admissions,
        }
    }

    #[test]
    fn deterministic_stays_without_arrivals_give_the_exact_census() {
        // Every stay lasts 48 h; patients admitted 0, 10, 30 and 47.5 h ago at 07:00.
        let w = ward(
            &[48.0, 48.0, 48.0],
            vec![0.0, 10.0, 30.0, 47.5],
            vec![DailyAdmissions::poisson(0.0); 3],
        );
        let opts = StaffingOptions {
            horizon_days: 3,
            ..StaffingOptions::default()
        };
        let plan = plan(&[w], &opts).unwrap();
        let got: Vec<(u32, &str, f64, f64)> = plan
            .iter()
            .map(|s| (s.day, s.shift.as_str(), s.hours_from_now, s.expected_census))
            .collect();
        // Present at t while stayed + t < 48.
        let want = vec![
            (0, "day", 0.0, 4.0),
            (0, "night", 12.0, 3.0),
            (1, "day", 24.0, 2.0),
            (1, "night", 36.0, 2.0),
            (2, "day", 48.0, 0.0),
            (2, "night", 60.0, 0.0),
        ];
        assert_eq!(got, want);
        for s in &plan {
            let c = s.expected_census as u32;
            assert_eq!((s.census_lower, s.census_upper), (c, c), "{s:?}");
            assert_eq!(s.p_over_beds, if c > 2 { 1.0 } else { 0.0 }, "{s:?}");
            assert_eq!(s.nurses_expected, c.div_ceil(4));
        }
    }

    #[test]
    fn bed_out_probability_is_the_binomial_tail() {
        // Half the stays end at 10 h, half at 100 h: 20 h on, each of 10 new patients
        // is still there with probability 1/2. Census ~ Binomial(10, 1/2).
        let mut w = ward(&[10.0, 100.0], vec![0.0; 10], vec![DailyAdmissions::poisson(0.0); 2]);
        w.beds = 7;
        w.patients_per_nurse = 3.0;
        let opts = StaffingOptions {
            shifts: vec![Shift::new("night", 19.0)],
            now_hour: 23.0,
            horizon_days: 2,
            ..StaffingOptions::default()
        };
        let plan = plan(&[w], &opts).unwrap();
        assert_eq!(plan.len(), 1, "today's 19:00 shift started before now");
        let s = &plan[0];
        assert_eq!(s.hours_from_now, 20.0);
        assert!((s.expected_census - 5.0).abs() < 1e-12);
        // P(X >= 8) = (C(10,8) + C(10,9) + C(10,10)) / 2^10 = 56 / 1024.
        assert!((s.p_over_beds - 56.0 / 1024.0).abs() < 1e-12, "{s:?}");
        // P(X <= 2) = 56/1024 < 0.1 <= P(X <= 3) = 176/1024; P(X <= 6) = 848/1024 < 0.9
        // <= P(X <= 7) = 968/1024.
        assert_eq!((s.census_lower, s.census_upper), (3, 7));
        assert_eq!((s.nurses_expected, s.nurses_upper), (2, 3));
    }

    #[test]
    fn nurses_round_up_but_not_on_float_noise() {
        assert_eq!(nurses_needed(8.0, 4.0), 2);
        assert_eq!(nurses_needed(8.0 + 1e-12, 4.0), 2);
        assert_eq!(nurses_needed(8.1, 4.0), 3);
        assert_eq!(nurses_needed(12.3, 4.0), 4);
        assert_eq!(nurses_needed(0.0, 4.0), 0);
        assert_eq!(nurses_needed(0.2, 4.0), 1);
        assert_eq!(nurses_needed(5.0, 2.5), 2);
    }

    #[test]
    fn arrivals_that_never_leave_make_a_poisson_census() {
        // 3 admissions a day, uniform over the day, nobody leaves within the horizon: at
        // 07:00 tomorrow (31 h after midnight today) the census is Poisson(3 + 3 * 7/24).
        let w = ward(&[1e6], vec![], vec![DailyAdmissions::poisson(3.0); 2]);
        let opts = StaffingOptions {
            now_hour: 0.0,
            ..StaffingOptions::default()
        };
        let dist = census_distribution(&w, &opts, 31.0).unwrap();
        let rate = 3.0 + 3.0 * 7.0 / 24.0;
        assert!((dist.mean - rate).abs() < 1e-12);
        let mut p = (-rate).exp();
        for k in 0..20 {
            assert!((dist.pmf[k] - p).abs() < 1e-12, "k = {k}");
            p *= rate / (k + 1) as f64;
        }
        // Over-dispersed admissions with the same mean: same mean, wider interval.
        let over = ward(
            &[1e6],
            vec![],
            vec![
                DailyAdmissions {
                    mean: 3.0,
                    variance: 9.0
                };
                2
            ],
        );
        let wide = census_distribution(&over, &opts, 31.0).unwrap();
        assert!((wide.mean - rate).abs() < 1e-12);
        assert!((wide.pmf.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let (lo, hi) = dist.interval(0.8);
        let (wlo, whi) = wide.interval(0.8);
        assert!(wlo <= lo && whi > hi, "{lo}-{hi} vs {wlo}-{whi}");
    }

    /// SplitMix64, for the Monte Carlo oracle.
    struct SplitMix(u64);

    impl SplitMix {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn poisson(&mut self, rate: f64) -> usize {
            // Knuth's multiplication method (rates here are small).
            let limit = (-rate).exp();
            let mut k = 0;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            k
        }
    }

    #[test]
    fn the_exact_census_agrees_with_a_simulation() {
        // An independent oracle: simulate the same ward patient by patient.
        let stays: Vec<f64> = (0..200).map(|i| 6.0 + (i * i % 173) as f64 * 1.3).collect();
        let current: Vec<f64> = (0..18).map(|i| i as f64 * 9.5).collect();
        let mut profile = vec![0.5; 24];
        for w in &mut profile[8..20] {
            *w = 2.0;
        }
        let admissions = vec![DailyAdmissions::poisson(6.0); 3];
        let mut w = ward(&stays, current.clone(), admissions);
        w.beds = 20;
        let opts = StaffingOptions {
            now_hour: 9.0,
            arrival_profile: profile.clone(),
            ..StaffingOptions::default()
        };
        let t = 34.0; // 19:00 tomorrow
        let exact = census_distribution(&w, &opts, t).unwrap();

        let total: f64 = profile.iter().sum();
        let mut rng = SplitMix(42);
        let runs = 40_000;
        let (mut sum, mut over) = (0.0, 0usize);
        for _ in 0..runs {
            let mut census = 0usize;
            for &stayed in &current {
                // A stay drawn from those longer than `stayed`.
                let longer: Vec<f64> = stays.iter().copied().filter(|s| *s > stayed).collect();
                let stay = if longer.is_empty() {
                    f64::INFINITY
                } else {
                    longer[(rng.uniform() * longer.len() as f64) as usize]
                };
                census += usize::from(stay > stayed + t);
            }
            for day in 0..2 {
                for (hour, weight) in profile.iter().enumerate() {
                    let rate = 6.0 * weight / total;
                    for _ in 0..rng.poisson(rate) {
                        let arrival = day as f64 * 24.0 + hour as f64 + rng.uniform() - 9.0;
                        if arrival < 0.0 || arrival >= t {
                            continue;
                        }
                        let stay = stays[(rng.uniform() * stays.len() as f64) as usize];
                        census += usize::from(stay > t - arrival);
                    }
                }
            }
            sum += census as f64;
            over += usize::from(census > 20);
        }
        let sim_mean = sum / runs as f64;
        let sim_over = over as f64 / runs as f64;
        assert!((exact.mean - sim_mean).abs() < 0.06, "{} vs {sim_mean}", exact.mean);
        let p = exact.p_above(20);
        let se = (p * (1.0 - p) / runs as f64).sqrt();
        assert!((p - sim_over).abs() < 4.0 * se + 1e-3, "{p} vs {sim_over}");
        assert!(p > 0.01 && p < 0.99, "the case should be informative: {p}");
    }

    #[test]
    fn invalid_input_is_rejected() {
        assert!(LosDistribution::from_stays(&[]).is_err());
        assert!(LosDistribution::from_stays(&[1.0, f64::NAN]).is_err());
        let w = ward(&[10.0], vec![1.0], vec![DailyAdmissions::poisson(1.0); 2]);
        let short = StaffingOptions {
            horizon_days: 3,
            ..StaffingOptions::default()
        };
        assert!(matches!(
            plan(std::slice::from_ref(&w), &short),
            Err(ModelError::InvalidInput(_))
        ));
        let bad_shift = StaffingOptions {
            shifts: vec![Shift::new("x", 24.0)],
            horizon_days: 2,
            ..StaffingOptions::default()
        };
        assert!(plan(std::slice::from_ref(&w), &bad_shift).is_err());
        let mut no_ratio = w;
        no_ratio.patients_per_nurse = 0.0;
        let ok = StaffingOptions {
            horizon_days: 2,
            ..StaffingOptions::default()
        };
        assert!(plan(&[no_ratio], &ok).is_err());
    }
}
