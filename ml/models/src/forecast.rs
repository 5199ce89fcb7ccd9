//! Daily demand forecast (ED arrivals, or admissions to one department), 1 to 14 days
//! ahead, with prediction intervals (80% by default).
//!
//! # Method
//!
//! **Direct multi-horizon ridge regression on the level-normalised series.** For every
//! horizon `h` in `1..=max_horizon` one ridge regression (linfa-elasticnet with
//! `l1_ratio = 0`, features standardised with their training mean and deviation) predicts
//! the ratio `y[T - 1 + h] / L(T)`, where `T` is the forecast origin (the number of days
//! observed, so day `T - 1` is the last one known) and `L(T)` is the mean of the last
//! `level_window` (28) observed days. No forecast feeds another one, so there is no
//! recursive error. The features, all known at the origin:
//!
//! - the ratios to `L` of the means of the last 7, 91 and 364 days (`extra_windows`), of
//!   the last observed day, of the last observed day with the target's weekday, and of the
//!   last `same_weekday_weeks` (4) days with the target's weekday;
//! - the target day's weekday (6 indicators, Monday is the reference);
//! - annual seasonality of the target day: `fourier_terms` (3) sine/cosine pairs of the
//!   day of the year;
//! - holidays of the target day, the ones the UIHC ED data set itself flags (Christmas,
//!   the day after, New Year's Eve, New Year's Day, Thanksgiving, the day after, July 4th):
//!   they are known years ahead and the ED is markedly quieter or busier on them;
//! - Saturday and Sunday times the first annual pair (`weekend_season`): the weekend dip
//!   changes with the season.
//!
//! The ridge is solved by linfa-elasticnet on the standardised features rotated onto the
//! eigenvectors of `X'X` (the same solution: an L2 penalty is rotation invariant) so that its coordinate
//! descent converges in one sweep.
//!
//! Modelling the ratio makes the weekday and seasonal effects multiplicative, so one model
//! serves a small ward and a large ED, and a level shift moves every forecast with it.
//! The forecast is `L(T) * ratio`, floored at 0.
//!
//! Optionally (`median_correction`, off by default: it did not help on the UIHC
//! validation split) the point forecast is shifted by the median calibration residual.
//!
//! **Intervals** are empirical quantiles of out-of-sample residuals, per horizon, in ratio
//! units (so they scale with the level). [`Forecaster::fit`] first fits the same models on
//! the series without its last `calibration_fraction` (25%) of days, forecasts those days
//! from every origin in them, and keeps the `(1 - coverage) / 2` and `(1 + coverage) / 2`
//! quantiles of `(y - forecast) / L` per horizon; it then refits on the whole series. The
//! residuals are never in-sample, so the intervals are not too narrow.
//!
//! **Missing days** are `NaN` in [`DailySeries::values`]: means skip them, training rows
//! whose target is missing are dropped.
//!
//! # Evaluation
//!
//! [`backtest`] refits at each of the weekly origins over the last `test_fraction` of the
//! days (on the days before the origin) and forecasts from them, and reports the MASE per horizon against the weekly seasonal
//! naive forecast (the last observed day with the same weekday) on the same origins, and
//! the interval coverage. See [`Backtest`] for the exact MASE definition.
//!
//! On the UIHC ED daily arrivals (last 20% of 1735 days, 48 weekly origins; options chosen
//! on a validation split inside the first 80%): MASE 0.714 at 1-7 days, 0.716 at 8-14,
//! 0.715 overall against 0.995 for the seasonal naive; 80% interval coverage 0.815.

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_elasticnet::ElasticNet;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// One value per consecutive day. `NaN` marks a missing day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailySeries {
    /// The day of `values[0]`, in days since 1970-01-01.
    pub first_day: i64,
    pub values: Vec<f64>,
}

impl DailySeries {
    pub fn new(first_day: i64, values: Vec<f64>) -> Self {
        Self { first_day, values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The first `len` days.
    pub fn prefix(&self, len: usize) -> DailySeries {
        DailySeries {
            first_day: self.first_day,
            values: self.values[..len.min(self.values.len())].to_vec(),
        }
    }
}

/// The forecaster's hyperparameters, checked by [`ForecastOptions::check`] before fitting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastOptions {
    /// The longest horizon, in days (one model per horizon).
    pub max_horizon: usize,
    /// The window of the level `L` every feature and target is divided by, in days.
    pub level_window: usize,
    /// Other trailing-mean windows, as ratios to `L`.
    pub extra_windows: Vec<usize>,
    /// How many past weeks the same-weekday mean covers.
    pub same_weekday_weeks: usize,
    /// Sine/cosine pairs of the annual cycle (0: none).
    pub fourier_terms: usize,
    /// Holiday indicators (see the module documentation).
    pub holidays: bool,
    /// Ridge penalty (linfa-elasticnet's `alpha`, on standardised features).
    pub penalty: f64,
    /// Nominal coverage of the prediction interval.
    pub coverage: f64,
    /// Share of the fitting days held out to measure the interval residuals.
    pub calibration_fraction: f64,
    /// Fewest training rows a horizon's regression accepts.
    pub min_rows: usize,
    /// Shift the point forecast by the median of the calibration residuals, making it a
    /// median forecast (what minimises the absolute error) rather than a mean.
    pub median_correction: bool,
    /// Weekday-by-season interactions: the Saturday and Sunday indicators times the first
    /// annual sine/cosine pair.
    pub weekend_season: bool,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        Self {
            max_horizon: 14,
            level_window: 28,
            extra_windows: vec![7, 91, 364],
            same_weekday_weeks: 4,
            fourier_terms: 3,
            holidays: true,
            penalty: 0.01,
            coverage: 0.8,
            calibration_fraction: 0.25,
            min_rows: 56,
            median_correction: false,
            weekend_season: true,
        }
    }
}

impl ForecastOptions {
    /// Rejects options outside their domain.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |what: &str| Err(ModelError::InvalidInput(what.to_string()));
        if !(1..=366).contains(&self.max_horizon) {
            return bad("max_horizon must be in 1..=366");
        }
        if self.level_window == 0 || self.extra_windows.contains(&0) {
            return bad("windows must be at least one day");
        }
        if self.same_weekday_weeks == 0 {
            return bad("same_weekday_weeks must be at least 1");
        }
        if !(self.penalty.is_finite() && self.penalty > 0.0) {
            return bad("penalty must be finite and positive");
        }
        if !(self.coverage > 0.0 && self.coverage < 1.0) {
            return bad("coverage must be in (0, 1)");
        }
        if !(self.calibration_fraction > 0.0 && self.calibration_fraction < 0.9) {
            return bad("calibration_fraction must be in (0, 0.9)");
        }
        if self.min_rows < 2 {
            return bad("min_rows must be at least 2");
        }
        Ok(())
    }

    /// Days of history the features need before a training origin.
    fn history_needed(&self) -> usize {
        let longest = self.extra_windows.iter().copied().max().unwrap_or(0);
        longest.max(self.level_window).max(7 * (self.same_weekday_weeks + 1))
    }

    fn n_features(&self) -> usize {
        self.extra_windows.len()
            + 3
            + 6
            + 2 * self.fourier_terms
            + if self.holidays { 7 } else { 0 }
            + if self.weekend_season && self.fourier_terms > 0 {
                4
            } else {
                0
            }
    }
}

/// One day's forecast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Days after the last day of the history (1 = the next day).
    pub ahead: u32,
    pub mean: f64,
    /// Bounds of the prediction interval (80% with the default options).
    pub lower: f64,
    pub upper: f64,
}

/// One horizon's regression and residual quantiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct HorizonModel {
    x_mean: Vec<f64>,
    x_scale: Vec<f64>,
    coef: Vec<f64>,
    intercept: f64,
    /// Added to the regression's ratio: the median calibration residual, or 0.
    shift: f64,
    /// Residual quantiles, `(y - mean) / L`, of the shifted forecast.
    lower_q: f64,
    upper_q: f64,
}

impl HorizonModel {
    fn predict_ratio(&self, x: &[f64]) -> f64 {
        let mut acc = self.intercept + self.shift;
        for (j, v) in x.iter().enumerate() {
            acc += self.coef[j] * (v - self.x_mean[j]) / self.x_scale[j];
        }
        acc
    }
}

/// A fitted forecaster: one regression per horizon. Serialisable, so the model registry
/// stores it as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    options: ForecastOptions,
    horizons: Vec<HorizonModel>,
}

impl Forecaster {
    /// Fits one regression per horizon on `series`, and the interval quantiles on its last
    /// `calibration_fraction` of days (see the module documentation).
    pub fn fit(series: &DailySeries, opts: &ForecastOptions) -> Result<Forecaster, ModelError> {
        opts.check()?;
        if let Some(bad) = series.values.iter().find(|v| v.is_infinite() || **v < 0.0) {
            return Err(ModelError::InvalidInput(format!(
                "daily values must be non-negative counts or NaN, got {bad}"
            )));
        }
        let n = series.len();
        let needed = opts.history_needed();
        let usable = n.saturating_sub(needed);
        let n_cal = (usable as f64 * opts.calibration_fraction).round() as usize;
        let inner_end = n - n_cal;
        if n_cal < opts.max_horizon || inner_end < needed + opts.max_horizon + opts.min_rows {
            return Err(ModelError::NotEnoughData(format!(
                "{n} days; {} needed for a {}-day horizon with {needed} days of history",
                needed
                    + ((opts.max_horizon + opts.min_rows) as f64 / (1.0 - opts.calibration_fraction)).ceil() as usize,
                opts.max_horizon
            )));
        }
        let prefix = Prefix::new(&series.values);

        // Out-of-sample residuals on the calibration days, from a fit without them.
        let inner = fit_points(series, &prefix, opts, inner_end)?;
        let mut horizons = fit_points(series, &prefix, opts, n)?;
        let mut x = vec![0.0; opts.n_features()];
        let lo_p = (1.0 - opts.coverage) / 2.0;
        for (i, model) in horizons.iter_mut().enumerate() {
            let h = i + 1;
            let mut residuals = Vec::new();
            for origin in inner_end..=(n - h) {
                let target = series.values[origin - 1 + h];
                if !target.is_finite() {
                    continue;
                }
                let Some(level) = features(series, &prefix, opts, origin, h, &mut x) else {
                    continue;
                };
                let mean = (level * inner[i].predict_ratio(&x)).max(0.0);
                residuals.push((target - mean) / level);
            }
            if residuals.is_empty() {
                return Err(ModelError::NotEnoughData(
                    "no observed day to calibrate the intervals on".into(),
                ));
            }
            residuals.sort_by(f64::total_cmp);
            let shift = if opts.median_correction {
                quantile(&residuals, 0.5)
            } else {
                0.0
            };
            model.shift = shift;
            model.lower_q = quantile(&residuals, lo_p) - shift;
            model.upper_q = quantile(&residuals, 1.0 - lo_p) - shift;
        }
        Ok(Forecaster {
            options: opts.clone(),
            horizons,
        })
    }

    pub fn options(&self) -> &ForecastOptions {
        &self.options
    }

    /// The longest horizon this forecaster predicts.
    pub fn max_horizon(&self) -> usize {
        self.horizons.len()
    }

    /// Forecasts the `horizon` days after the last day of `history` (at most
    /// [`max_horizon`](Self::max_horizon) of them). Empty when `history` has no observed
    /// day. A history shorter than the feature windows uses what it has.
    pub fn forecast(&self, history: &DailySeries, horizon: usize) -> Vec<ForecastPoint> {
        let prefix = Prefix::new(&history.values);
        let origin = history.len();
        let mut x = vec![0.0; self.options.n_features()];
        let mut out = Vec::with_capacity(horizon.min(self.horizons.len()));
        for (i, model) in self.horizons.iter().take(horizon).enumerate() {
            let h = i + 1;
            let Some(level) = features(history, &prefix, &self.options, origin, h, &mut x) else {
                return Vec::new();
            };
            let mean = (level * model.predict_ratio(&x)).max(0.0);
            out.push(ForecastPoint {
                day: history.first_day + (origin - 1 + h) as i64,
                ahead: h as u32,
                mean,
                lower: (mean + level * model.lower_q).max(0.0),
                upper: (mean + level * model.upper_q).max(0.0),
            });
        }
        out
    }
}

/// Fits the point regressions of every horizon on origins whose target lies before `end`.
fn fit_points(
    series: &DailySeries,
    prefix: &Prefix,
    opts: &ForecastOptions,
    end: usize,
) -> Result<Vec<HorizonModel>, ModelError> {
    let p = opts.n_features();
    let needed = opts.history_needed();
    let mut models = Vec::with_capacity(opts.max_horizon);
    let mut x = vec![0.0; p];
    for h in 1..=opts.max_horizon {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for origin in needed..=end.saturating_sub(h) {
            let target = series.values[origin - 1 + h];
            if !target.is_finite() {
                continue;
            }
            let Some(level) = features(series, prefix, opts, origin, h, &mut x) else {
                continue;
            };
            rows.extend_from_slice(&x);
            targets.push(target / level);
        }
        let n_rows = targets.len();
        if n_rows < opts.min_rows {
            return Err(ModelError::NotEnoughData(format!(
                "{n_rows} training rows for horizon {h}, need {}",
                opts.min_rows
            )));
        }
        let mut records = Array2::from_shape_vec((n_rows, p), rows).map_err(|e| ModelError::Fit(e.to_string()))?;
        let mut x_mean = vec![0.0; p];
        let mut x_scale = vec![1.0; p];
        for (j, mut col) in records.columns_mut().into_iter().enumerate() {
            let mean = col.sum() / n_rows as f64;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n_rows as f64;
            // A constant column (say, a holiday absent from the training days) is centred
            // to zeros and ignored by the solver.
            let scale = if var > 1e-24 { var.sqrt() } else { 1.0 };
            col.mapv_inplace(|v| (v - mean) / scale);
            x_mean[j] = mean;
            x_scale[j] = scale;
        }
        let (coef, intercept) = ridge(&records, Array1::from(targets), opts.penalty)
            .map_err(|e| ModelError::Fit(format!("horizon {h}: {e}")))?;
        models.push(HorizonModel {
            x_mean,
            x_scale,
            coef,
            intercept,
            shift: 0.0,
            lower_q: 0.0,
            upper_q: 0.0,
        });
    }
    Ok(models)
}

/// Ridge regression of `y` on the standardised `x` with linfa-elasticnet (`l1_ratio = 0`).
///
/// The columns are first rotated onto the eigenvectors of `x'x` (Jacobi): the L2 penalty is
/// invariant under rotation, so the ridge solution is the same, but on orthogonal columns
/// coordinate descent converges in one sweep instead of thousands on these correlated
/// features. Returns the coefficients of the original columns and the intercept.
fn ridge(x: &Array2<f64>, y: Array1<f64>, penalty: f64) -> Result<(Vec<f64>, f64), linfa_elasticnet::ElasticNetError> {
    let p = x.ncols();
    let gram = x.t().dot(x);
    let basis = jacobi_eigenvectors(gram);
    let rotated = x.dot(&basis);
    let fitted = ElasticNet::params()
        .penalty(penalty)
        .l1_ratio(0.0)
        .with_intercept(true)
        // One sweep solves the orthogonal problem; the second confirms it. (The duality
        // gap linfa-elasticnet stops on is the objective itself when `l1_ratio` is 0, so it
        // would otherwise run all its iterations.)
        .max_iterations(2)
        .fit(&Dataset::new(rotated, y))?;
    let coef = basis.dot(fitted.hyperplane());
    debug_assert_eq!(coef.len(), p);
    Ok((coef.to_vec(), fitted.intercept()))
}

/// The eigenvectors (as columns) of a symmetric matrix, by cyclic Jacobi rotations.
fn jacobi_eigenvectors(mut a: Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    for _sweep in 0..50 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]] * a[[i, j]])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-11 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq.abs() <= 1e-14 * scale {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[[k, p]];
                    let akq = a[[k, q]];
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[[p, k]];
                    let aqk = a[[q, k]];
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[[k, p]];
                    let vkq = v[[k, q]];
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    v
}

/// Prefix sums of the observed values and of their count, for O(1) window means.
struct Prefix {
    sum: Vec<f64>,
    count: Vec<u32>,
}

impl Prefix {
    fn new(values: &[f64]) -> Self {
        let mut sum = Vec::with_capacity(values.len() + 1);
        let mut count = Vec::with_capacity(values.len() + 1);
        let (mut s, mut c) = (0.0, 0u32);
        sum.push(s);
        count.push(c);
        for v in values {
            if v.is_finite() {
                s += v;
                c += 1;
            }
            sum.push(s);
            count.push(c);
        }
        Self { sum, count }
    }

    /// Mean of the observed values among the `window` days before `end`, NaN if none.
    fn mean_before(&self, end: usize, window: usize) -> f64 {
        let start = end.saturating_sub(window);
        let c = self.count[end] - self.count[start];
        if c == 0 {
            f64::NAN
        } else {
            (self.sum[end] - self.sum[start]) / c as f64
        }
    }
}

/// Writes the features of the target `origin - 1 + h` seen from `origin` into `x` and
/// returns the level `L` (the divisor of the features and of the target), or `None` when
/// the history before `origin` has no observed day.
fn features(
    series: &DailySeries,
    prefix: &Prefix,
    opts: &ForecastOptions,
    origin: usize,
    h: usize,
    x: &mut [f64],
) -> Option<f64> {
    let raw_level = prefix.mean_before(origin, origin);
    if !raw_level.is_finite() {
        return None;
    }
    let mut level = prefix.mean_before(origin, opts.level_window);
    if !level.is_finite() {
        level = raw_level;
    }
    // An all-zero history: ratios to 1 keep every feature finite and forecast zeros.
    let level = if level > 1e-9 { level } else { 1.0 };
    let ratio = |v: f64| if v.is_finite() { v / level } else { 1.0 };
    let values = &series.values;
    let mut k = 0;
    for &w in &opts.extra_windows {
        x[k] = ratio(prefix.mean_before(origin, w));
        k += 1;
    }
    let last = values[..origin]
        .iter()
        .rev()
        .find(|v| v.is_finite())
        .copied()
        .unwrap_or(f64::NAN);
    x[k] = ratio(last);
    k += 1;
    // Same weekday as the target, most recent first: days target - 7j for j >= ceil(h / 7).
    let target = origin - 1 + h;
    let first_lag = h.div_ceil(7);
    let (mut sum, mut count, mut latest) = (0.0, 0usize, f64::NAN);
    for j in first_lag..first_lag + opts.same_weekday_weeks {
        let Some(day) = target.checked_sub(7 * j) else {
            break;
        };
        let v = values[day];
        if v.is_finite() {
            if count == 0 {
                latest = v;
            }
            sum += v;
            count += 1;
        }
    }
    x[k] = ratio(latest);
    x[k + 1] = ratio(if count > 0 { sum / count as f64 } else { f64::NAN });
    k += 2;
    let day = series.first_day + target as i64;
    let weekday = weekday(day);
    for w in 1..7 {
        x[k] = if weekday == w { 1.0 } else { 0.0 };
        k += 1;
    }
    let (year, month, dom) = civil_from_days(day);
    let year_fraction = (day - days_from_civil(year, 1, 1)) as f64 / 365.25;
    for f in 1..=opts.fourier_terms {
        let angle = 2.0 * std::f64::consts::PI * f as f64 * year_fraction;
        x[k] = angle.sin();
        x[k + 1] = angle.cos();
        k += 2;
    }
    if opts.weekend_season && opts.fourier_terms > 0 {
        let angle = 2.0 * std::f64::consts::PI * year_fraction;
        for w in [5, 6] {
            let on = if weekday == w { 1.0 } else { 0.0 };
            x[k] = on * angle.sin();
            x[k + 1] = on * angle.cos();
            k += 2;
        }
    }
    if opts.holidays {
        let thanksgiving = thanksgiving(year);
        let flags = [
            month == 12 && dom == 25,
            month == 12 && dom == 26,
            month == 12 && dom == 31,
            month == 1 && dom == 1,
            day == thanksgiving,
            day == thanksgiving + 1,
            month == 7 && dom == 4,
        ];
        for flag in flags {
            x[k] = if flag { 1.0 } else { 0.0 };
            k += 1;
        }
    }
    debug_assert_eq!(k, x.len());
    Some(level)
}

/// Day of the week, 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// US Thanksgiving: the fourth Thursday of November.
fn thanksgiving(year: i64) -> i64 {
    let first = days_from_civil(year, 11, 1);
    let to_thursday = (3 - weekday(first)).rem_euclid(7);
    first + to_thursday + 21
}

/// Linear-interpolation quantile (type 7) of sorted values.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// One horizon's scores in a [`Backtest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HorizonScore {
    pub ahead: u32,
    /// Forecasts scored (origins whose target day is observed).
    pub n: usize,
    pub mase: f64,
    /// MASE of the weekly seasonal naive forecast on the same origins.
    pub naive_mase: f64,
    /// Share of observed days inside the prediction interval.
    pub coverage: f64,
}

/// The scores of a rolling-origin evaluation ([`backtest`]).
///
/// MASE is the mean absolute error of the forecasts divided by `scale`, the in-sample mean
/// absolute error of the one-step weekly seasonal naive forecast on the training part:
/// `scale = mean(|y[t] - y[t - 7]|)` over the training days `t >= 7` with both days
/// observed (Hyndman and Koehler's MASE with seasonal period 7). The seasonal naive
/// forecast of day `T - 1 + h` from origin `T` is the last observed day with the same
/// weekday, `y[T - 1 + h - 7 * ceil(h / 7)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    /// Days used to fit (the first ones); the rest is the test part.
    pub train_days: usize,
    /// Weekly forecast origins in the test part.
    pub origins: usize,
    pub scale: f64,
    pub horizons: Vec<HorizonScore>,
    /// Over every scored (origin, horizon).
    pub mase: f64,
    pub naive_mase: f64,
    pub coverage: f64,
}

impl Backtest {
    /// Mean MASE, seasonal-naive MASE and coverage over the horizons in `range` (1-based).
    pub fn summary(&self, range: std::ops::RangeInclusive<u32>) -> (f64, f64, f64) {
        let (mut n, mut m, mut s, mut c) = (0usize, 0.0, 0.0, 0.0);
        for hs in self.horizons.iter().filter(|hs| range.contains(&hs.ahead)) {
            n += hs.n;
            m += hs.mase * hs.n as f64;
            s += hs.naive_mase * hs.n as f64;
            c += hs.coverage * hs.n as f64;
        }
        let n = n.max(1) as f64;
        (m / n, s / n, c / n)
    }

    /// The scores as a markdown table: horizon, MASE, seasonal-naive MASE, coverage.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| horizon | n | MASE | seasonal naive MASE | interval coverage |\n|---|---|---|---|---|\n");
        for hs in &self.horizons {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.3} |\n",
                hs.ahead, hs.n, hs.mase, hs.naive_mase, hs.coverage
            ));
        }
        for (label, range) in [("1-7", 1..=7), ("8-14", 8..=14)] {
            if self.horizons.len() >= *range.end() as usize {
                let (m, s, c) = self.summary(range);
                out.push_str(&format!("| {label} | | {m:.3} | {s:.3} | {c:.3} |\n"));
            }
        }
        out.push_str(&format!(
            "| all | {} origins | {:.3} | {:.3} | {:.3} |\n",
            self.origins, self.mase, self.naive_mase, self.coverage
        ));
        out
    }
}

/// Forecasts `1..=max_horizon` days ahead from weekly origins over the last
/// `test_fraction` of `series` (the first origin forecasts the first test day; an origin is
/// used only if all its horizons fall inside the series), refitting at every origin on the
/// days before it, as a weekly retraining would ([`backtest_with`] can fit once instead).
/// No fit sees a day at or after its origin, its interval calibration included. The MASE
/// scale is always the training part's (the days before the first origin).
pub fn backtest(series: &DailySeries, opts: &ForecastOptions, test_fraction: f64) -> Result<Backtest, ModelError> {
    backtest_with(series, opts, test_fraction, Refit::EveryOrigin)
}

/// When a backtest fits its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refit {
    /// Once, on the training part.
    Once,
    /// At every origin, on every day before it (what a weekly retraining does).
    EveryOrigin,
}

/// [`backtest`] with the choice of when to refit.
pub fn backtest_with(
    series: &DailySeries,
    opts: &ForecastOptions,
    test_fraction: f64,
    refit: Refit,
) -> Result<Backtest, ModelError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(ModelError::InvalidInput("test_fraction must be in (0, 1)".into()));
    }
    let n = series.len();
    let train_days = n - (n as f64 * test_fraction).round() as usize;
    let horizon = opts.max_horizon;
    if train_days + horizon > n {
        return Err(ModelError::NotEnoughData(format!(
            "the test part of {} days is shorter than the {horizon}-day horizon",
            n - train_days
        )));
    }
    let values = &series.values;
    let (mut scale_sum, mut scale_n) = (0.0, 0usize);
    for t in 7..train_days {
        if values[t].is_finite() && values[t - 7].is_finite() {
            scale_sum += (values[t] - values[t - 7]).abs();
            scale_n += 1;
        }
    }
    let scale = scale_sum / scale_n.max(1) as f64;
    if scale.is_nan() || scale <= 0.0 {
        return Err(ModelError::InvalidInput(
            "the training part's weekly naive error is zero: MASE is undefined".into(),
        ));
    }
    let mut model = Forecaster::fit(&series.prefix(train_days), opts)?;

    let mut abs_err = vec![0.0; horizon];
    let mut naive_err = vec![0.0; horizon];
    let mut covered = vec![0usize; horizon];
    let mut count = vec![0usize; horizon];
    let mut origins = 0;
    let mut origin = train_days;
    while origin + horizon <= n {
        origins += 1;
        let history = series.prefix(origin);
        if refit == Refit::EveryOrigin && origin > train_days {
            model = Forecaster::fit(&history, opts)?;
        }
        let points = model.forecast(&history, horizon);
        for p in &points {
            let i = p.ahead as usize - 1;
            let target = origin + i;
            let actual = values[target];
            let naive = values[target - 7 * (i + 1).div_ceil(7)];
            if !actual.is_finite() || !naive.is_finite() {
                continue;
            }
            abs_err[i] += (actual - p.mean).abs();
            naive_err[i] += (actual - naive).abs();
            covered[i] += usize::from(p.lower <= actual && actual <= p.upper);
            count[i] += 1;
        }
        origin += 7;
    }
    let horizons: Vec<HorizonScore> = (0..horizon)
        .map(|i| {
            let c = count[i].max(1) as f64;
            HorizonScore {
                ahead: i as u32 + 1,
                n: count[i],
                mase: abs_err[i] / c / scale,
                naive_mase: naive_err[i] / c / scale,
                coverage: covered[i] as f64 / c,
            }
        })
        .collect();
    let total = count.iter().sum::<usize>().max(1) as f64;
    Ok(Backtest {
        train_days,
        origins,
        scale,
        mase: abs_err.iter().sum::<f64>() / total / scale,
        naive_mase: naive_err.iter().sum::<f64>() / total / scale,
        coverage: covered.iter().sum::<usize>() as f64 / total,
        horizons,
    })
}

/// The fewest observed days [`seasonal_mean`] forecasts from: one of each weekday.
pub const SEASONAL_MEAN_MIN_DAYS: usize = 7;

/// The forecast for a history too short for [`Forecaster::fit`] (which needs over a year
/// for its 364-day window): each day's mean is the mean of the same weekday over the last
/// `weeks` weeks observed (as many as there are, at least one), and its interval the
/// normal one of coverage `coverage` with the variance of those same-weekday values, at
/// least the mean (Poisson), floored at 0. Missing days (NaN) are left out.
pub fn seasonal_mean(
    history: &DailySeries,
    horizon: usize,
    weeks: usize,
    coverage: f64,
) -> Result<Vec<ForecastPoint>, ModelError> {
    let n = history.len();
    if n < SEASONAL_MEAN_MIN_DAYS {
        return Err(ModelError::NotEnoughData(format!(
            "{n} days observed; a weekly seasonal mean needs at least {SEASONAL_MEAN_MIN_DAYS}"
        )));
    }
    if !(coverage > 0.0 && coverage < 1.0) || weeks == 0 {
        return Err(ModelError::InvalidInput(
            "coverage must be in (0, 1) and weeks at least 1".into(),
        ));
    }
    let z = normal_quantile((1.0 + coverage) / 2.0);
    let mut out = Vec::with_capacity(horizon);
    for h in 1..=horizon {
        let day = history.first_day + (n - 1 + h) as i64;
        // The same weekday, going back a week at a time from the newest observed one.
        let same: Vec<f64> = (1..)
            .map(|k| day - 7 * k as i64)
            .take_while(|d| *d >= history.first_day)
            .filter_map(|d| usize::try_from(d - history.first_day).ok())
            .filter(|i| *i < n)
            .map(|i| history.values[i])
            .filter(|v| v.is_finite())
            .take(weeks)
            .collect();
        if same.is_empty() {
            return Err(ModelError::NotEnoughData(format!(
                "no observed day with the weekday of day {day} in the history"
            )));
        }
        let mean = same.iter().sum::<f64>() / same.len() as f64;
        let var = if same.len() > 1 {
            same.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (same.len() - 1) as f64
        } else {
            0.0
        };
        let sd = var.max(mean).sqrt();
        out.push(ForecastPoint {
            day,
            ahead: h as u32,
            mean,
            lower: (mean - z * sd).max(0.0),
            upper: mean + z * sd,
        });
    }
    Ok(out)
}

/// The standard normal quantile (Acklam's rational approximation, relative error below
/// 1.2e-9), for `p` in (0, 1).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn seasonal_mean_follows_the_weekday_and_needs_a_week() {
        // Two weeks with one busy weekday.
        let values: Vec<f64> = (0..14).map(|i| if i % 7 == 0 { 30.0 } else { 10.0 }).collect();
        let s = DailySeries::new(0, values);
        let f = seasonal_mean(&s, 8, 8, 0.8).unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(
            (f[0].day, f[0].ahead, f[0].mean),
            (14, 1, 30.0),
            "day 14 has day 7's weekday"
        );
        assert_eq!(f[1].mean, 10.0);
        assert_eq!(f[7].mean, 30.0, "a week later again");
        // Identical values: the Poisson floor keeps an interval, 1.2816 sd each side.
        let sd = 30f64.sqrt();
        assert!((f[0].upper - (30.0 + 1.281_551_565_5 * sd)).abs() < 1e-6, "{:?}", f[0]);
        assert!(f[0].lower < 30.0 && f[0].lower >= 0.0);
        assert!(matches!(
            seasonal_mean(&DailySeries::new(0, vec![1.0; 6]), 3, 8, 0.8),
            Err(ModelError::NotEnoughData(_))
        ));
        assert!((normal_quantile(0.9) - 1.281_551_565_5).abs() < 1e-8);
        assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-8);
    }

    use super::*;

    /// A small deterministic generator (SplitMix64), so the tests need no `rand`.
    struct SplitMix(u64);

    impl SplitMix {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal (Box-Muller).
        fn normal(&mut self) -> f64 {
            let u1 = self.next_f64().max(1e-12);
            let u2 = self.next_f64();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn weekly_series(days: usize, seed: u64) -> DailySeries {
        let pattern = [120.0, 110.0, 105.0, 104.0, 108.0, 90.0, 85.0];
        let mut rng = SplitMix(seed);
        let first_day = days_from_civil(2015, 1, 5); // a Monday
        let values = (0..days)
            .map(|d| (pattern[d % 7] + 8.0 * rng.normal()).max(0.0).round())
            .collect();
        DailySeries::new(first_day, values)
    }

    #[test]
    fn ridge_matches_the_normal_equations() {
        // y = 1 + 2 x0 - x1 + 0.5 x2 on correlated, centred columns.
        let mut rng = SplitMix(1);
        let n = 200;
        let mut x = Array2::<f64>::zeros((n, 3));
        for i in 0..n {
            let a = rng.normal();
            x[[i, 0]] = a;
            x[[i, 1]] = 0.9 * a + 0.1 * rng.normal();
            x[[i, 2]] = rng.normal();
        }
        for mut col in x.columns_mut() {
            let m = col.sum() / n as f64;
            col.mapv_inplace(|v| v - m);
        }
        let y = x.column(0).mapv(|v| 2.0 * v) - x.column(1) + x.column(2).mapv(|v| 0.5 * v) + 1.0;
        let (coef, intercept) = ridge(&x, y.clone(), 1e-9).unwrap();
        assert!((intercept - 1.0).abs() < 1e-9);
        for (c, want) in coef.iter().zip([2.0, -1.0, 0.5]) {
            assert!((c - want).abs() < 1e-5, "{coef:?}");
        }
        // With a penalty: (x'x + n alpha I) w = x'y.
        let alpha = 0.5;
        let (coef, _) = ridge(&x, y.clone(), alpha).unwrap();
        let w = Array1::from(coef);
        let lhs = x.t().dot(&x).dot(&w) + &w * (n as f64 * alpha);
        let rhs = x.t().dot(&(y - 1.0));
        for (l, r) in lhs.iter().zip(rhs.iter()) {
            assert!((l - r).abs() < 1e-6 * r.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn calendar_round_trips_and_knows_weekdays_and_thanksgiving() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(0), 3); // Thursday
        assert_eq!(days_from_civil(2013, 7, 1), 15_887);
        assert_eq!(weekday(days_from_civil(2013, 7, 1)), 0); // a Monday
        for d in [-1000, 0, 15_887, 17_621, 20_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(thanksgiving(2017), days_from_civil(2017, 11, 23));
        assert_eq!(thanksgiving(2013), days_from_civil(2013, 11, 28));
    }

    #[test]
    fn beats_seasonal_naive_on_a_weekly_pattern_with_noise() {
        let series = weekly_series(1100, 7);
        let bt = backtest_with(&series, &ForecastOptions::default(), 0.2, Refit::Once).unwrap();
        assert_eq!(bt.horizons.len(), 14);
        assert!(bt.mase < bt.naive_mase, "{}", bt.table());
        // Seasonal naive differences two noisy days, the model averages weeks (its floor is
        // 1/sqrt 2 of the naive's error; 30 origins make the figure noisy).
        assert!(bt.mase < 0.9, "{}", bt.table());
        assert!((0.65..=0.92).contains(&bt.coverage), "{}", bt.table());
    }

    #[test]
    fn a_constant_series_forecasts_the_constant() {
        let series = DailySeries::new(16_000, vec![42.0; 800]);
        let model = Forecaster::fit(&series, &ForecastOptions::default()).unwrap();
        let points = model.forecast(&series, 14);
        assert_eq!(points.len(), 14);
        for (i, p) in points.iter().enumerate() {
            assert_eq!(p.ahead as usize, i + 1);
            assert_eq!(p.day, 16_000 + 800 + i as i64);
            assert!((p.mean - 42.0).abs() < 1e-6, "{p:?}");
            assert!((p.lower - 42.0).abs() < 1e-6 && (p.upper - 42.0).abs() < 1e-6);
        }
    }

    #[test]
    fn the_forecast_follows_the_weekday_and_bounds_the_mean() {
        let series = weekly_series(900, 11);
        let model = Forecaster::fit(&series, &ForecastOptions::default()).unwrap();
        let points = model.forecast(&series, 20);
        assert_eq!(points.len(), 14, "capped at max_horizon");
        // Monday has the highest mean of the pattern, Sunday the lowest.
        let by_weekday = |w: i64| points.iter().find(|p| weekday(p.day) == w).unwrap();
        assert!(by_weekday(0).mean > by_weekday(6).mean + 20.0);
        for p in &points {
            assert!(p.lower < p.mean && p.mean < p.upper, "{p:?}");
        }
    }

    #[test]
    fn missing_days_are_skipped_and_bad_input_is_rejected() {
        let mut series = weekly_series(900, 3);
        for d in (100..900).step_by(37) {
            series.values[d] = f64::NAN;
        }
        let model = Forecaster::fit(&series, &ForecastOptions::default()).unwrap();
        assert!(model.forecast(&series, 14).iter().all(|p| p.mean.is_finite()));
        assert!(model.forecast(&DailySeries::new(0, vec![]), 14).is_empty());

        series.values[5] = -1.0;
        assert!(matches!(
            Forecaster::fit(&series, &ForecastOptions::default()),
            Err(ModelError::InvalidInput(_))
        ));
        let short = weekly_series(300, 3);
        assert!(matches!(
            Forecaster::fit(&short, &ForecastOptions::default()),
            Err(ModelError::NotEnoughData(_))
        ));
        let bad = ForecastOptions {
            coverage: 1.5,
            ..ForecastOptions::default()
        };
        assert!(matches!(
            Forecaster::fit(&weekly_series(900, 3), &bad),
            Err(ModelError::InvalidInput(_))
        ));
    }

    #[test]
    fn the_forecaster_round_trips_through_serde_and_is_send_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Forecaster>();
        let series = weekly_series(800, 5);
        let model = Forecaster::fit(&series, &ForecastOptions::default()).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: Forecaster = serde_json::from_str(&json).unwrap();
        for (a, b) in back.forecast(&series, 14).iter().zip(model.forecast(&series, 14)) {
            assert_eq!((a.day, a.ahead), (b.day, b.ahead));
            for (x, y) in [(a.mean, b.mean), (a.lower, b.lower), (a.upper, b.upper)] {
                assert!((x - y).abs() < 1e-9 * y.abs().max(1.0), "{a:?} vs {b:?}");
            }
        }
    }
}
