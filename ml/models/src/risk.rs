//! A binary risk model: deterioration within 24 h, readmission within 30 days.
//!
//! The model is an L2-penalised logistic regression on standardised features, with
//! missing values imputed, class weights, Platt calibration on a held-out slice and
//! per-feature contributions for explanations.
//!
//! # What is fitted
//!
//! Rows arrive in time order. The last `calibration_fraction` of them is the
//! calibration slice; the rows before it are the fit slice. On the fit slice:
//!
//! - each feature's mean and standard deviation (population, missing values ignored);
//! - features are standardised, `(x - mean) / std`, and a missing value (`NaN` or any
//!   non-finite input) becomes 0, which is imputing the training mean;
//! - the coefficients minimise the weighted mean log loss plus an L2 penalty on the
//!   coefficients (not the intercept):
//!
//!   `f(β, b) = (1/W) Σ wᵢ [log(1 + e^zᵢ) - yᵢ zᵢ] + (l2/2) ‖β‖²`, `zᵢ = xᵢ·β + b`,
//!   `W = Σ wᵢ`.
//!
//!   With [`ClassWeight::Balanced`] a positive row weighs `n_neg / n_pos` and a negative
//!   row 1. The penalty is per unit of weight, so `l2` means the same at any row count.
//!
//! On the calibration slice, Platt scaling: `P(y) = σ(a·z + b)` with `(a, b)` fitted by
//! unweighted maximum likelihood on the uncalibrated logit `z`. It undoes the prevalence
//! shift that the class weights put into the raw probability.
//!
//! # scikit-learn equivalent
//!
//! scikit-learn's `LogisticRegression(solver="lbfgs", C=C, class_weight={0: 1, 1:
//! n_neg/n_pos})` minimises `(1/S) Σ sᵢ loss_i + 1/(2·C·S) ‖β‖²` where `S` is the sum of
//! its sample weights (`sklearn/linear_model/_logistic.py`: `l2_reg_strength = 1.0 / (C *
//! sw_sum)`). With the same weights `S = W`, so the two objectives are the same function
//! when **`C = 1 / (l2 · W)`**; `W = 2·n_neg` when balanced, `n_fit` otherwise.
//! `ml/parity/parity.py` fits it that way on the same rows.
//!
//! # Why not `linfa_logistic::LogisticRegression`
//!
//! linfa-logistic 0.8 has no sample weights, so class weights would need the positive
//! rows repeated (a rounded weight, and up to `n_neg/n_pos` times the rows in memory). It
//! is also slow for a reason that has nothing to do with Rust (measured by
//! `benches/risk_fit.rs`, findings from its source):
//!
//! 1. its loss is a **sum** over rows, yet the gradient tolerance (default `1e-4`) is an
//!    absolute bound on the L2 norm of that sum's gradient: at 20 000 rows it is 20 000
//!    times tighter than scikit-learn's `gtol=1e-4` on the mean loss, so L-BFGS never
//!    converges and runs to `max_iterations`;
//! 2. argmin's More-Thuente line search calls `cost` and `gradient` separately at every
//!    trial point and L-BFGS calls `gradient` again at the accepted point; linfa computes
//!    `X·w` afresh in each (three matrix passes per trial plus two after), where scipy's
//!    L-BFGS-B asks one fused loss-and-gradient (two passes);
//! 3. without BLAS, `x.t().dot(&r)` in ndarray is one strided dot product per column,
//!    walking the whole row-major matrix once per feature.
//!
//! So this module keeps linfa's solver (argmin's L-BFGS with More-Thuente, memory 10) but
//! hands it its own objective: weighted, on the mean scale (tolerances mean what
//! scikit-learn's mean), loss and gradient fused into one pass over contiguous rows, and
//! the last evaluation cached so the repeated `gradient` calls cost nothing. The intercept
//! starts at the logit of the weighted prevalence.

use std::cell::{Cell, RefCell};

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// How the classes are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassWeight {
    /// Every row weighs 1.
    None,
    /// A positive row weighs `n_neg / n_pos` (of the fit slice), a negative row 1.
    Balanced,
}

/// Hyperparameters of [`fit`], checked before any work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// L2 penalty per unit of row weight (see the module docs; scikit-learn's
    /// `C = 1 / (l2 · W)`). Must be finite and >= 0.
    pub l2: f64,
    /// L-BFGS iterations at most (scikit-learn's `max_iter`).
    pub max_iterations: u64,
    /// Stop when the L2 norm of the objective's gradient falls below this (the objective
    /// is on the mean scale, as scikit-learn's `tol`).
    pub tolerance: f64,
    /// Class weights (balanced by default).
    pub class_weight: ClassWeight,
    /// The last fraction of the rows (they come in time order) is held out for Platt
    /// calibration, in `[0, 1)`. 0 skips calibration (`a = 1, b = 0`).
    pub calibration_fraction: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            l2: 1e-4,
            max_iterations: 100,
            tolerance: 1e-4,
            class_weight: ClassWeight::Balanced,
            calibration_fraction: 0.2,
        }
    }
}

impl TrainOptions {
    /// Rejects out-of-range hyperparameters.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |name, reason: &str| {
            Err(ModelError::InvalidOption {
                name,
                reason: reason.to_owned(),
            })
        };
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2", "must be finite and >= 0");
        }
        if self.max_iterations == 0 {
            return bad("max_iterations", "must be at least 1");
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return bad("tolerance", "must be finite and > 0");
        }
        if !(0.0..1.0).contains(&self.calibration_fraction) {
            return bad("calibration_fraction", "must be in [0, 1)");
        }
        Ok(())
    }
}

/// How the training went: stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Rows the coefficients were fitted on (the first part).
    pub fit_rows: usize,
    /// Rows Platt scaling was fitted on (the last part).
    pub calibration_rows: usize,
    /// Positives in the fit slice.
    pub fit_positives: usize,
    /// Weight of a positive row (1 without class weights).
    pub positive_weight: f64,
    /// L-BFGS iterations.
    pub iterations: u64,
    /// Whether the solver met its tolerance before `max_iterations`.
    pub converged: bool,
    /// Passes over the fit rows (loss and gradient evaluations) the solver made.
    #[serde(default)]
    pub evaluations: u64,
    /// Platt scaling came out with a slope at or below 0, so only the class weights'
    /// prior shift was corrected (slope 1).
    #[serde(default)]
    pub platt_fallback: bool,
}

/// A fitted risk model. Serialisable so the registry can store it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskModel {
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Training mean per feature (the imputed value).
    pub means: Vec<f64>,
    /// Training standard deviation per feature (1 for a constant or always-missing one).
    pub stds: Vec<f64>,
    /// Logistic coefficients on the standardised features.
    pub coefficients: Vec<f64>,
    /// Logistic intercept.
    pub intercept: f64,
    /// Platt slope `a` in `σ(a·z + b)`.
    pub platt_a: f64,
    /// Platt intercept `b`.
    pub platt_b: f64,
    /// How the training went.
    pub training: TrainingSummary,
}

/// One row's score and its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Calibrated probability, `σ(a·logit + b)`.
    pub probability: f64,
    /// Uncalibrated probability, `σ(logit)` (inflated by class weights).
    pub raw_probability: f64,
    /// Uncalibrated logit: `intercept + Σ contributions`.
    pub logit: f64,
    /// Per feature, its term of the logit, `coefficient × standardised value`; 0 when
    /// the feature was imputed.
    pub contributions: Vec<f64>,
    /// Per feature, whether it was missing and imputed with the training mean.
    pub imputed: Vec<bool>,
}

impl Score {
    /// The features' indices, largest absolute contribution first (ties keep feature
    /// order): the order explanations are shown in.
    pub fn by_impact(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.contributions.len()).collect();
        order.sort_by(|a, b| self.contributions[*b].abs().total_cmp(&self.contributions[*a].abs()));
        order
    }
}

/// Fits a [`RiskModel`] on rows in time order: the last `opts.calibration_fraction` of
/// them calibrates, the rest fit. `x` may hold `NaN` for missing values.
pub fn fit(
    x: ArrayView2<f64>,
    y: ArrayView1<bool>,
    feature_names: &[String],
    opts: &TrainOptions,
) -> Result<RiskModel, ModelError> {
    opts.check()?;
    let (n, d) = x.dim();
    if y.len() != n {
        return Err(ModelError::InvalidData(format!(
            "{n} rows of features but {} labels",
            y.len()
        )));
    }
    if feature_names.len() != d {
        return Err(ModelError::InvalidData(format!(
            "{d} feature columns but {} feature names",
            feature_names.len()
        )));
    }
    if d == 0 {
        return Err(ModelError::InvalidData("no features".into()));
    }
    // Truncation is intended: the calibration slice is the whole rows that fit in it.
    let n_cal = (n as f64 * opts.calibration_fraction).floor() as usize;
    let n_fit = n - n_cal;
    // Views by split_at: ndarray's `s!` macro trips the workspace's forbid(unsafe_code).
    let (x_fit, x_cal) = x.split_at(Axis(0), n_fit);
    let (y_fit, y_cal) = y.split_at(Axis(0), n_fit);
    let n_pos = y_fit.iter().filter(|&&v| v).count();
    if n_pos == 0 || n_pos == n_fit {
        return Err(ModelError::InvalidData(format!(
            "the fit slice ({n_fit} rows) needs both classes, has {n_pos} positives"
        )));
    }
    if n_cal > 0 {
        let cal_pos = y_cal.iter().filter(|&&v| v).count();
        if cal_pos == 0 || cal_pos == n_cal {
            return Err(ModelError::InvalidData(format!(
                "the calibration slice ({n_cal} rows) needs both classes, has {cal_pos} positives"
            )));
        }
    }

    let (means, stds) = column_moments(x_fit);
    let mut model = RiskModel {
        feature_names: feature_names.to_vec(),
        means,
        stds,
        coefficients: vec![0.0; d],
        intercept: 0.0,
        platt_a: 1.0,
        platt_b: 0.0,
        training: TrainingSummary {
            fit_rows: n_fit,
            calibration_rows: n_cal,
            fit_positives: n_pos,
            positive_weight: 1.0,
            iterations: 0,
            converged: false,
            evaluations: 0,
            platt_fallback: false,
        },
    };
    let xs = model.standardise_rows(x_fit);
    let positive_weight = match opts.class_weight {
        ClassWeight::None => 1.0,
        ClassWeight::Balanced => (n_fit - n_pos) as f64 / n_pos as f64,
    };
    let targets: Vec<f64> = y_fit.iter().map(|&v| f64::from(u8::from(v))).collect();
    let weights: Vec<f64> = y_fit.iter().map(|&v| if v { positive_weight } else { 1.0 }).collect();
    let solved = solve(xs.view(), &targets, &weights, opts)?;
    model.coefficients = solved.coefficients;
    model.intercept = solved.intercept;
    model.training.positive_weight = positive_weight;
    model.training.iterations = solved.iterations;
    model.training.converged = solved.converged;
    model.training.evaluations = solved.evaluations;

    if n_cal > 0 {
        let x_cal = model.standardise_rows(x_cal);
        let logits: Vec<f64> = x_cal.outer_iter().map(|r| model.linear(r)).collect();
        let labels: Vec<bool> = y_cal.to_vec();
        let (a, b) = logistic_1d(&logits, &labels);
        if a > 0.0 && a.is_finite() && b.is_finite() {
            model.platt_a = a;
            model.platt_b = b;
        } else {
            // A slope at or below 0 would keep or invert no ranking: the calibration
            // slice disagrees with the fit (too few positives, or drift). Correct only
            // the prior shift of the class weights instead: the weighted prevalence is
            // p_w, the slice's is p, so b = logit(p) - logit(p_w).
            let p = labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64;
            let n_pos_fit = y_fit.iter().filter(|&&v| v).count() as f64;
            let n_neg_fit = y_fit.len() as f64 - n_pos_fit;
            let p_w = positive_weight * n_pos_fit / (positive_weight * n_pos_fit + n_neg_fit);
            let logit = |q: f64| {
                let q = q.clamp(1e-6, 1.0 - 1e-6);
                (q / (1.0 - q)).ln()
            };
            model.platt_a = 1.0;
            model.platt_b = logit(p) - logit(p_w);
            model.training.platt_fallback = true;
        }
    }
    Ok(model)
}

impl RiskModel {
    /// Scores one row of raw features (in `feature_names` order; `NaN` = missing).
    ///
    /// A non-finite value counts as missing. The row should have exactly one value per
    /// feature; a shorter row has its absent features imputed (and flagged), values past
    /// the last feature are ignored.
    pub fn score(&self, x: ArrayView1<f64>) -> Score {
        let d = self.coefficients.len();
        let mut contributions = Vec::with_capacity(d);
        let mut imputed = Vec::with_capacity(d);
        for j in 0..d {
            match x.get(j).copied().filter(|v| v.is_finite()) {
                Some(v) => {
                    contributions.push(self.coefficients[j] * (v - self.means[j]) / self.stds[j]);
                    imputed.push(false);
                }
                None => {
                    contributions.push(0.0);
                    imputed.push(true);
                }
            }
        }
        let logit = self.intercept + contributions.iter().sum::<f64>();
        Score {
            probability: sigmoid(self.platt_a * logit + self.platt_b),
            raw_probability: sigmoid(logit),
            logit,
            contributions,
            imputed,
        }
    }

    /// Scores each row of `x` (see [`RiskModel::score`]).
    pub fn score_rows(&self, x: ArrayView2<f64>) -> Vec<Score> {
        x.outer_iter().map(|row| self.score(row)).collect()
    }

    /// The standardised, imputed copy of raw rows that the coefficients apply to (row
    /// major; a missing value becomes 0).
    pub fn standardise_rows(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let d = self.means.len();
        let mut out = Array2::zeros((x.nrows(), d));
        for (mut o, row) in out.outer_iter_mut().zip(x.outer_iter()) {
            for j in 0..d.min(row.len()) {
                let v = row[j];
                if v.is_finite() {
                    o[j] = (v - self.means[j]) / self.stds[j];
                }
            }
        }
        out
    }

    /// Uncalibrated logit of one standardised row.
    fn linear(&self, xs: ArrayView1<f64>) -> f64 {
        self.intercept + xs.iter().zip(&self.coefficients).map(|(x, c)| x * c).sum::<f64>()
    }
}

/// Mean and population standard deviation of each column over its finite values; a
/// column with no finite value gets mean 0, and a constant one std 1.
fn column_moments(x: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>) {
    let d = x.ncols();
    let (mut count, mut sum) = (vec![0usize; d], vec![0.0; d]);
    for row in x.outer_iter() {
        for (j, &v) in row.iter().enumerate() {
            if v.is_finite() {
                count[j] += 1;
                sum[j] += v;
            }
        }
    }
    let means: Vec<f64> = (0..d)
        .map(|j| if count[j] > 0 { sum[j] / count[j] as f64 } else { 0.0 })
        .collect();
    let mut ss = vec![0.0; d];
    for row in x.outer_iter() {
        for (j, &v) in row.iter().enumerate() {
            if v.is_finite() {
                ss[j] += (v - means[j]) * (v - means[j]);
            }
        }
    }
    let stds = (0..d)
        .map(|j| {
            let sd = if count[j] > 0 {
                (ss[j] / count[j] as f64).sqrt()
            } else {
                0.0
            };
            if sd > 1e-12 {
                sd
            } else {
                1.0
            }
        })
        .collect();
    (means, stds)
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The weighted logistic solution on standardised rows.
struct Solved {
    coefficients: Vec<f64>,
    intercept: f64,
    iterations: u64,
    converged: bool,
    evaluations: u64,
}

/// A point, its cost and its gradient.
type Evaluated = (Array1<f64>, f64, Array1<f64>);

/// The objective of the module docs, for argmin. Parameters are `[β…, b]`.
struct WeightedLogistic<'a> {
    /// Standardised rows, standard (row-major, contiguous) layout.
    x: ArrayView2<'a, f64>,
    y: &'a [f64],
    w: &'a [f64],
    inv_w: f64,
    l2: f64,
    /// The last point evaluated, its cost and gradient: argmin asks the cost and then
    /// the gradient of the same point, and L-BFGS the gradient of the accepted point.
    last: RefCell<Option<Evaluated>>,
    /// Evaluations that were not in the cache.
    evaluations: Cell<u64>,
}

impl WeightedLogistic<'_> {
    /// Loss and gradient in one pass over the rows.
    fn evaluate(&self, p: &Array1<f64>) -> (f64, Array1<f64>) {
        if let Some((q, cost, grad)) = self.last.borrow().as_ref() {
            if q == p {
                return (*cost, grad.clone());
            }
        }
        self.evaluations.set(self.evaluations.get() + 1);
        let d = self.x.ncols();
        let p = p.as_slice().expect("an owned Array1 is contiguous");
        let (beta, b) = (&p[..d], p[d]);
        let mut grad = Array1::zeros(d + 1);
        let g = grad.as_slice_mut().expect("an owned Array1 is contiguous");
        let mut loss = 0.0;
        let mut gb = 0.0;
        for ((row, &yi), &wi) in self.x.outer_iter().zip(self.y).zip(self.w) {
            let row = row.to_slice().expect("standardised rows are row-major");
            let z = dot(row, beta) + b;
            loss += wi * (softplus(z) - yi * z);
            let r = wi * (sigmoid(z) - yi);
            gb += r;
            for (gj, xj) in g[..d].iter_mut().zip(row) {
                *gj += r * xj;
            }
        }
        let mut penalty = 0.0;
        for j in 0..d {
            g[j] = g[j] * self.inv_w + self.l2 * beta[j];
            penalty += beta[j] * beta[j];
        }
        g[d] = gb * self.inv_w;
        let cost = loss * self.inv_w + 0.5 * self.l2 * penalty;
        *self.last.borrow_mut() = Some((Array1::from(p.to_vec()), cost, grad.clone()));
        (cost, grad)
    }
}

/// Dot product with four accumulators (the compiler will not reorder a float sum).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

impl CostFunction for WeightedLogistic<'_> {
    type Param = Array1<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(p).0)
    }
}

impl Gradient for WeightedLogistic<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;

    fn gradient(&self, p: &Self::Param) -> Result<Array1<f64>, argmin::core::Error> {
        Ok(self.evaluate(p).1)
    }
}

/// Minimises the weighted objective with argmin's L-BFGS (More-Thuente, memory 10).
fn solve<'a>(xs: ArrayView2<'a, f64>, y: &'a [f64], w: &'a [f64], opts: &TrainOptions) -> Result<Solved, ModelError> {
    let d = xs.ncols();
    let total: f64 = w.iter().sum();
    let weighted_pos: f64 = w.iter().zip(y).map(|(w, y)| w * y).sum::<f64>() / total;
    let mut init = Array1::zeros(d + 1);
    init[d] = (weighted_pos / (1.0 - weighted_pos)).ln();
    let problem = WeightedLogistic {
        x: xs,
        y,
        w,
        inv_w: 1.0 / total,
        l2: opts.l2,
        last: RefCell::new(None),
        evaluations: Cell::new(0),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(opts.tolerance)
        .map_err(|e| ModelError::Solver(e.to_string()))?;
    let result = Executor::new(problem, solver)
        .configure(|s| s.param(init).max_iters(opts.max_iterations))
        .timer(false)
        .run()
        .map_err(|e| ModelError::Solver(e.to_string()))?;
    let evaluations = result.problem.problem.as_ref().map_or(0, |p| p.evaluations.get());
    let state = result.state();
    let converged = matches!(state.get_termination_reason(), Some(TerminationReason::SolverConverged));
    let iterations = state.get_iter();
    let best = state
        .get_best_param()
        .ok_or_else(|| ModelError::Solver("no parameters".into()))?;
    if best.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Solver("non-finite coefficients".into()));
    }
    Ok(Solved {
        coefficients: best.iter().take(d).copied().collect(),
        intercept: best[d],
        iterations,
        converged,
        evaluations,
    })
}

/// Fits `P(label) = σ(a·s + b)` by Newton's method on the log loss (Platt scaling,
/// logistic recalibration). A tiny ridge (1e-9) keeps it finite on separable data.
pub(crate) fn logistic_1d(s: &[f64], labels: &[bool]) -> (f64, f64) {
    let (mut a, mut b) = (1.0, 0.0);
    let ridge = 1e-9;
    let nll = |a: f64, b: f64| -> f64 {
        s.iter()
            .zip(labels)
            .map(|(&x, &y)| {
                let z = a * x + b;
                softplus(z) - if y { z } else { 0.0 }
            })
            .sum::<f64>()
            + 0.5 * ridge * (a * a + b * b)
    };
    let mut f = nll(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (ridge * a, ridge * b, ridge, 0.0, ridge);
        for (&x, &y) in s.iter().zip(labels) {
            let p = sigmoid(a * x + b);
            let r = p - f64::from(u8::from(y));
            let h = p * (1.0 - p);
            ga += r * x;
            gb += r;
            haa += h * x * x;
            hab += h * x;
            hbb += h;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        // Backtracking keeps each step a descent step.
        let mut t = 1.0;
        let mut improved = false;
        while t > 1e-10 {
            let fnew = nll(a - t * da, b - t * db);
            if fnew <= f {
                a -= t * da;
                b -= t * db;
                improved = f - fnew > 1e-12 * f.abs().max(1.0);
                f = fnew;
                break;
            }
            t *= 0.5;
        }
        if !improved || (da.abs() + db.abs()) < 1e-10 {
            break;
        }
    }
    (a, b)
}
