//! The risk model: fit, calibration on the last rows, explanations, imputation, storage.

mod common;

use common::{rows, synthetic, Synthetic};
use hospital_ml_models::metrics::auroc;
use hospital_ml_models::risk::{fit, ClassWeight, RiskModel, TrainOptions};
use hospital_ml_models::ModelError;
use ndarray::{Array1, Axis, Slice};

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut sum) = (0usize, 0.0);
    for x in v {
        n += 1;
        sum += x;
    }
    sum / n as f64
}

fn prevalence(y: &[bool]) -> f64 {
    mean(y.iter().map(|&v| f64::from(u8::from(v))))
}

/// Trains on the first `train` rows and returns the model with the rest as a test set.
fn train(data: &Synthetic, train: usize, opts: &TrainOptions) -> RiskModel {
    fit(rows(&data.x, ..train), rows(&data.y, ..train), &data.names, opts).unwrap()
}

#[test]
fn fits_the_truth_and_ranks_close_to_the_oracle() {
    let data = synthetic(12_000, 30, 1, -2.9, usize::MAX, 0.0);
    let model = train(&data, 9_000, &TrainOptions::default());
    assert!(model.training.converged, "{:?}", model.training);

    let test_x = rows(&data.x, 9_000..);
    let test_y: Vec<bool> = rows(&data.y, 9_000..).to_vec();
    let probs: Vec<f64> = model.score_rows(test_x).iter().map(|s| s.probability).collect();
    let model_auc = auroc(&probs, &test_y);
    let oracle_auc = auroc(&data.true_logit[9_000..], &test_y);
    assert!(
        model_auc > oracle_auc - 0.03 && model_auc > 0.7,
        "model {model_auc}, oracle {oracle_auc}"
    );
    // The strong true effects come out with their sign (features are on different raw
    // scales; the coefficients are on the standardised one).
    for (j, sign) in [(0, 1.0), (1, -1.0), (2, 1.0), (3, 1.0), (4, -1.0)] {
        assert!(model.coefficients[j] * sign > 0.1, "{j}: {:?}", model.coefficients);
    }
    for j in 12..30 {
        assert!(model.coefficients[j].abs() < 0.15, "{j}: {:?}", model.coefficients);
    }
}

#[test]
fn contributions_and_intercept_sum_to_the_uncalibrated_logit() {
    let data = synthetic(4_000, 12, 2, -2.0, usize::MAX, 0.0);
    let model = train(&data, 3_000, &TrainOptions::default());
    for row in rows(&data.x, 3_000..3_200).outer_iter() {
        let score = model.score(row);
        let sum = model.intercept + score.contributions.iter().sum::<f64>();
        assert!((sum - score.logit).abs() < 1e-12);
        let raw_logit = (score.raw_probability / (1.0 - score.raw_probability)).ln();
        assert!((raw_logit - sum).abs() < 1e-9, "{raw_logit} vs {sum}");
        let calibrated = 1.0 / (1.0 + (-(model.platt_a * sum + model.platt_b)).exp());
        assert!((calibrated - score.probability).abs() < 1e-12);
        for (j, (c, imputed)) in score.contributions.iter().zip(&score.imputed).enumerate() {
            assert_eq!(*imputed, row[j].is_nan());
            let expected = model.coefficients[j] * (row[j] - model.means[j]) / model.stds[j];
            if !imputed {
                assert!((c - expected).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn a_missing_feature_is_imputed_with_the_training_mean_and_contributes_nothing() {
    let data = synthetic(4_000, 12, 3, -2.0, usize::MAX, 0.0);
    let model = train(&data, 4_000, &TrainOptions::default());
    // The training mean ignores the missing values of the fit slice.
    let fit_rows = model.training.fit_rows;
    let col: Vec<f64> = rows(&data.x.column(0), ..fit_rows)
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    assert!(col.len() < fit_rows, "feature 0 has missing values");
    assert!((model.means[0] - mean(col.iter().copied())).abs() < 1e-9);

    let mut row = data.x.row(0).to_owned();
    row[0] = 55.0;
    row[1] = f64::NAN;
    row[2] = f64::INFINITY;
    let missing = model.score(row.view());
    assert!(!missing.imputed[0] && missing.imputed[1] && missing.imputed[2]);
    assert_eq!(missing.contributions[1], 0.0);
    assert_eq!(missing.contributions[2], 0.0);

    let mut at_mean = row.clone();
    at_mean[1] = model.means[1];
    at_mean[2] = model.means[2];
    let at_mean = model.score(at_mean.view());
    assert!((missing.probability - at_mean.probability).abs() < 1e-12);
    assert!(!at_mean.imputed[1]);
    // A short row has its absent features imputed.
    let short = model.score(rows(&row, ..5));
    assert!(short.imputed[5..].iter().all(|&i| i));
}

#[test]
fn platt_calibration_is_fitted_on_the_last_rows() {
    // The last quarter of the training rows (the calibration slice) has a much higher
    // base rate than the rows before it. Calibrated on the last rows, the mean probability
    // there matches their prevalence, not the earlier one.
    let data = synthetic(16_000, 12, 4, -3.0, 12_000, 1.5);
    let opts = TrainOptions {
        calibration_fraction: 0.25,
        ..TrainOptions::default()
    };
    let model = train(&data, 16_000, &opts);
    assert_eq!(model.training.fit_rows, 12_000);
    assert_eq!(model.training.calibration_rows, 4_000);
    let early = prevalence(&rows(&data.y, ..12_000).to_vec());
    let late = prevalence(&rows(&data.y, 12_000..).to_vec());
    assert!(late > early + 0.05, "{early} {late}");
    let mean_prob = mean(model.score_rows(rows(&data.x, 12_000..)).iter().map(|s| s.probability));
    assert!(
        (mean_prob - late).abs() < 0.01,
        "{mean_prob} vs late {late}, early {early}"
    );
}

#[test]
fn balanced_weights_inflate_the_raw_probability_and_calibration_undoes_it() {
    let data = synthetic(12_000, 12, 5, -2.9, usize::MAX, 0.0);
    let test_x = rows(&data.x, 8_000..);
    let test_prev = prevalence(&rows(&data.y, 8_000..).to_vec());

    let balanced = train(&data, 8_000, &TrainOptions::default());
    let n_pos = balanced.training.fit_positives as f64;
    let n_neg = balanced.training.fit_rows as f64 - n_pos;
    assert!((balanced.training.positive_weight - n_neg / n_pos).abs() < 1e-12);
    let scores = balanced.score_rows(test_x);
    let raw = mean(scores.iter().map(|s| s.raw_probability));
    let calibrated = mean(scores.iter().map(|s| s.probability));
    assert!(raw > 3.0 * test_prev, "raw {raw}, prevalence {test_prev}");
    assert!((calibrated - test_prev).abs() < 0.015, "{calibrated} vs {test_prev}");

    let unweighted = train(
        &data,
        8_000,
        &TrainOptions {
            class_weight: ClassWeight::None,
            calibration_fraction: 0.0,
            ..TrainOptions::default()
        },
    );
    assert_eq!((unweighted.platt_a, unweighted.platt_b), (1.0, 0.0));
    let raw = mean(unweighted.score_rows(test_x).iter().map(|s| s.raw_probability));
    assert!((raw - test_prev).abs() < 0.015, "{raw} vs {test_prev}");
}

#[test]
fn a_model_stored_as_json_scores_the_same() {
    let data = synthetic(3_000, 8, 6, -2.0, usize::MAX, 0.0);
    let model = train(&data, 3_000, &TrainOptions::default());
    let json = serde_json::to_string(&model).unwrap();
    let back: RiskModel = serde_json::from_str(&json).unwrap();
    // serde_json without its `float_roundtrip` feature may read a float back one unit in
    // the last place off, so the comparison has a (tiny) tolerance.
    assert_eq!(back.feature_names, model.feature_names);
    assert_eq!(back.training, model.training);
    for row in data.x.outer_iter().take(50) {
        let (a, b) = (back.score(row), model.score(row));
        assert!((a.probability - b.probability).abs() < 1e-12);
        assert!((a.logit - b.logit).abs() < 1e-12);
        assert_eq!(a.imputed, b.imputed);
    }
}

#[test]
fn bad_inputs_and_options_are_refused() {
    let data = synthetic(1_000, 4, 7, -2.0, usize::MAX, 0.0);
    let opts = TrainOptions::default();
    let invalid_data =
        |r: Result<RiskModel, ModelError>| assert!(matches!(r, Err(ModelError::InvalidData(_))), "{r:?}");
    invalid_data(fit(data.x.view(), rows(&data.y, ..999), &data.names, &opts));
    invalid_data(fit(data.x.view(), data.y.view(), &data.names[..3], &opts));
    let no_positive = Array1::from_elem(1_000, false);
    invalid_data(fit(data.x.view(), no_positive.view(), &data.names, &opts));
    // Positives only in the fit slice: the calibration slice has one class.
    let mut early_only = Array1::from_elem(1_000, false);
    early_only.slice_axis_mut(Axis(0), Slice::from(..100)).fill(true);
    invalid_data(fit(data.x.view(), early_only.view(), &data.names, &opts));
    let empty = data.x.slice_axis(Axis(1), Slice::from(..0));
    invalid_data(fit(empty, data.y.view(), &[], &opts));

    for bad in [
        TrainOptions {
            l2: -1.0,
            ..opts.clone()
        },
        TrainOptions {
            l2: f64::NAN,
            ..opts.clone()
        },
        TrainOptions {
            max_iterations: 0,
            ..opts.clone()
        },
        TrainOptions {
            tolerance: 0.0,
            ..opts.clone()
        },
        TrainOptions {
            calibration_fraction: 1.0,
            ..opts.clone()
        },
    ] {
        let r = fit(data.x.view(), data.y.view(), &data.names, &bad);
        assert!(matches!(r, Err(ModelError::InvalidOption { .. })), "{bad:?}: {r:?}");
    }
}

#[test]
fn the_model_can_be_shared_between_threads() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<RiskModel>();
}

/// A calibration slice that disagrees with the fit (its outcome runs the other way)
/// must not invert the ranking: Platt's slope would be negative, so only the prior
/// shift is corrected.
#[test]
fn a_calibration_slice_that_disagrees_never_inverts_the_ranking() {
    let n = 1_000;
    let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 100) as f64 / 10.0 - 5.0).collect();
    // The fit slice (first 80%): positive when x > 3; the calibration slice: when x < -3.
    let y: Vec<bool> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| if i < n * 8 / 10 { v > 3.0 } else { v < -3.0 })
        .collect();
    let x = ndarray::Array2::from_shape_vec((n, 1), x).unwrap();
    let y = ndarray::Array1::from_vec(y);
    let model = hospital_ml_models::risk::fit(
        x.view(),
        y.view(),
        &["x".to_string()],
        &hospital_ml_models::risk::TrainOptions::default(),
    )
    .unwrap();
    assert!(model.training.platt_fallback);
    assert_eq!(model.platt_a, 1.0);
    let low = model.score(ndarray::array![-4.0].view()).probability;
    let high = model.score(ndarray::array![4.0].view()).probability;
    assert!(high > low, "the ranking of the fit is kept: {low} vs {high}");
}
