//! Drift of live features and scores against the training set, per model version.
//!
//! At training the registry keeps a [`Reference`]: the score deciles of the training
//! rows and each feature's share of missing values (the mean and deviation are the
//! model's own standardisation). Live scoring accumulates, per model version, what it
//! scored ([`Accum`]: a score histogram over the reference deciles, and per feature the
//! sum, sum of squares and count of present values). The accumulators are saved with
//! the live feed position, so a replayed batch is never counted twice.
//!
//! Reported ([`report`]): the population stability index of the scores (PSI over the
//! ten training deciles; < 0.1 stable, 0.1-0.25 moderate, > 0.25 a significant shift,
//! the usual reading), and per feature the shift of the live mean in training standard
//! deviations and the missing shares, largest shift first.

use serde::{Deserialize, Serialize};

/// What the training rows looked like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The nine inner decile edges of the training rows' probabilities.
    pub score_edges: Vec<f64>,
    pub score_mean: f64,
    /// Share of training rows missing each feature.
    pub missing: Vec<f64>,
    pub rows: u64,
}

/// The nine inner decile edges of `values`.
fn deciles(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return Vec::new();
    }
    (1..10)
        .map(|k| sorted[((sorted.len() * k) / 10).min(sorted.len() - 1)])
        .collect()
}

impl Reference {
    /// From the training rows' probabilities and feature matrix (NaN = missing).
    pub fn new(probs: &[f64], x: ndarray::ArrayView2<f64>) -> Self {
        let rows = x.nrows().max(1) as f64;
        Self {
            score_edges: deciles(probs),
            score_mean: probs.iter().sum::<f64>() / probs.len().max(1) as f64,
            missing: x
                .columns()
                .into_iter()
                .map(|c| c.iter().filter(|v| v.is_nan()).count() as f64 / rows)
                .collect(),
            rows: x.nrows() as u64,
        }
    }

    fn bin(&self, p: f64) -> usize {
        self.score_edges.partition_point(|e| *e < p)
    }
}

/// What live scoring saw for one model version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accum {
    pub rows: u64,
    pub score_sum: f64,
    /// Rows per reference decile (10 bins).
    pub score_bins: Vec<u64>,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
    pub present: Vec<u64>,
}

impl Accum {
    pub fn add(&mut self, reference: &Reference, probability: f64, values: &[f64]) {
        if self.sum.len() != values.len() {
            self.sum = vec![0.0; values.len()];
            self.sum_sq = vec![0.0; values.len()];
            self.present = vec![0; values.len()];
        }
        if self.score_bins.len() != 10 {
            self.score_bins = vec![0; 10];
        }
        self.rows += 1;
        self.score_sum += probability;
        self.score_bins[reference.bin(probability).min(9)] += 1;
        for (j, v) in values.iter().enumerate() {
            if v.is_finite() {
                self.sum[j] += v;
                self.sum_sq[j] += v * v;
                self.present[j] += 1;
            }
        }
    }
}

/// One feature's drift.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    pub feature: String,
    pub train_mean: f64,
    pub live_mean: f64,
    /// (live mean - training mean) / training standard deviation; NaN when no live value.
    pub shift_sd: f64,
    pub train_missing: f64,
    pub live_missing: f64,
}

/// A model version's drift.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub live_rows: u64,
    pub score_psi: f64,
    pub train_score_mean: f64,
    pub live_score_mean: f64,
    pub features: Vec<FeatureDrift>,
}

/// PSI of live bin counts against ten equal training bins; empty bins count as 1e-4.
pub fn psi(bins: &[u64]) -> f64 {
    let n: u64 = bins.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    let expected = 1.0 / bins.len() as f64;
    bins.iter()
        .map(|b| {
            let actual = (*b as f64 / n as f64).max(1e-4);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

/// The drift of a model (names, means, deviations) given its reference and what live
/// scoring saw.
pub fn report(names: &[String], means: &[f64], stds: &[f64], reference: &Reference, live: &Accum) -> Report {
    let mut features: Vec<FeatureDrift> = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let present = live.present.get(j).copied().unwrap_or(0);
            let live_mean = if present > 0 {
                live.sum[j] / present as f64
            } else {
                f64::NAN
            };
            FeatureDrift {
                feature: name.clone(),
                train_mean: means[j],
                live_mean,
                shift_sd: (live_mean - means[j]) / stds[j].max(1e-12),
                train_missing: reference.missing.get(j).copied().unwrap_or(f64::NAN),
                live_missing: if live.rows > 0 {
                    1.0 - present as f64 / live.rows as f64
                } else {
                    f64::NAN
                },
            }
        })
        .collect();
    features.sort_by(|a, b| {
        let key = |f: &FeatureDrift| if f.shift_sd.is_nan() { -1.0 } else { f.shift_sd.abs() };
        key(b).total_cmp(&key(a))
    });
    Report {
        live_rows: live.rows,
        score_psi: psi(&live.score_bins),
        train_score_mean: reference.score_mean,
        live_score_mean: if live.rows > 0 {
            live.score_sum / live.rows as f64
        } else {
            f64::NAN
        },
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_distribution_itself_is_stable_and_a_shift_is_not() {
        let probs: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let x = ndarray::Array2::from_shape_fn(
            (1000, 2),
            |(i, j)| if j == 1 && i % 4 == 0 { f64::NAN } else { i as f64 },
        );
        let r = Reference::new(&probs, x.view());
        assert_eq!(r.score_edges.len(), 9);
        assert_eq!(r.missing, vec![0.0, 0.25]);
        let mut same = Accum::default();
        for (i, p) in probs.iter().enumerate() {
            same.add(&r, *p, &[i as f64, 1.0]);
        }
        assert!(psi(&same.score_bins) < 1e-3, "{:?}", same.score_bins);
        let mut high = Accum::default();
        for p in &probs {
            high.add(&r, 0.5 + p / 2.0, &[f64::NAN, 1.0]);
        }
        assert!(psi(&high.score_bins) > 0.25);
        let names = vec!["a".to_string(), "b".to_string()];
        let rep = report(&names, &[500.0, 0.0], &[10.0, 1.0], &r, &high);
        assert_eq!(rep.features[0].feature, "b", "largest shift first");
        assert_eq!(rep.features[0].shift_sd, 1.0);
        assert_eq!(rep.features[1].live_missing, 1.0);
        assert!(rep.features[1].live_mean.is_nan());
    }
}
