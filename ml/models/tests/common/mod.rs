//! Synthetic risk data with a known logistic truth, shared by the tests and the bench.
#![allow(dead_code)]

use ndarray::{Array1, Array2};

/// SplitMix64: a small deterministic generator, so the data is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

pub struct Synthetic {
    /// Raw features (vital-sign-like offsets and scales), `NaN` where missing.
    pub x: Array2<f64>,
    pub y: Array1<bool>,
    /// The true logit of each row (from the complete, unmissing values).
    pub true_logit: Vec<f64>,
    pub names: Vec<String>,
}

/// `n` rows of `d` features. Features come in correlated groups of five; the first ten
/// carry signal (true coefficients on the standardised scale below), the rest are noise;
/// every third feature is missing in 10% of rows. `intercept` sets the prevalence (-2.9:
/// about 8%); rows from `drift_from` on have `drift` added to their true logit.
pub fn synthetic(n: usize, d: usize, seed: u64, intercept: f64, drift_from: usize, drift: f64) -> Synthetic {
    const BETA: [f64; 10] = [0.9, -0.7, 0.6, 0.5, -0.4, 0.35, 0.3, -0.25, 0.2, 0.15];
    let mut rng = Rng::new(seed);
    let mut x = Array2::zeros((n, d));
    let mut y = Array1::from_elem(n, false);
    let mut true_logit = Vec::with_capacity(n);
    let groups = d.div_ceil(5);
    for i in 0..n {
        let common: Vec<f64> = (0..groups).map(|_| rng.normal()).collect();
        let mut z = intercept + if i >= drift_from { drift } else { 0.0 };
        for j in 0..d {
            // Standardised value with correlation 0.36 inside a group.
            let s = 0.6 * common[j / 5] + 0.8 * rng.normal();
            if j < BETA.len() {
                z += BETA[j] * s;
            }
            let (mean, scale) = (20.0 + 10.0 * (j % 7) as f64, 1.0 + 3.0 * (j % 5) as f64);
            let missing = j % 3 == 0 && rng.uniform() < 0.1;
            x[[i, j]] = if missing { f64::NAN } else { mean + scale * s };
        }
        y[i] = rng.uniform() < sigmoid(z);
        true_logit.push(z);
    }
    Synthetic {
        x,
        y,
        true_logit,
        names: (0..d).map(|j| format!("f{j:02}")).collect(),
    }
}

/// Rows `r` of a matrix or vector (ndarray's `s!` trips the workspace's
/// `forbid(unsafe_code)`).
pub fn rows<S, D>(a: &ndarray::ArrayBase<S, D>, r: impl Into<ndarray::Slice>) -> ndarray::ArrayView<'_, S::Elem, D>
where
    S: ndarray::Data,
    D: ndarray::Dimension,
{
    a.slice_axis(ndarray::Axis(0), r.into())
}
