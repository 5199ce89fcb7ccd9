//! Fit time, AUROC and peak memory of the risk model against linfa-logistic as shipped
//! and scikit-learn's lbfgs, on the same synthetic rows. Prints one markdown table.
//!
//! `cargo bench -p hospital-ml-models --bench risk_fit` (needs `python3` with
//! scikit-learn for the scikit-learn row: `pip install scikit-learn`).
//!
//! 20 000 rows x 30 features with a known logistic truth (about 8% positive, 10% missing
//! in every third feature): the first 16 000 train (the last 20% of them calibrate), the
//! last 4 000 test. Every fit is on the same 12 800 standardised fit rows with balanced
//! class weights and the same L2 (risk.rs's `l2 = 1e-4`, scikit-learn's `C = 1/(l2 W)`,
//! linfa's `alpha = l2 W`). linfa-logistic has no sample weights, so its rows repeat each
//! positive `round(n_neg/n_pos)` times. Times are the median of several fits, one
//! thread (the Python side runs with one BLAS thread too).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{rows, synthetic};
use hospital_ml_models::metrics::auroc;
use hospital_ml_models::risk::{fit, RiskModel, TrainOptions};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, Axis};

const N: usize = 20_000;
const D: usize = 30;
const TRAIN: usize = 16_000;
const L2: f64 = 1e-4;

fn vmhwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |kb| format!("{:.0} MB", kb as f64 / 1024.0))
}

struct Row {
    name: String,
    iterations: String,
    time: Option<Duration>,
    auroc: f64,
    peak: String,
    max_coef_diff: Option<f64>,
}

fn main() {
    let data = synthetic(N, D, 42, -2.9, usize::MAX, 0.0);
    let (x_train, y_train) = (rows(&data.x, ..TRAIN), rows(&data.y, ..TRAIN));
    let (x_test, y_test) = (rows(&data.x, TRAIN..), rows(&data.y, TRAIN..).to_vec());
    let opts = TrainOptions {
        l2: L2,
        ..TrainOptions::default()
    };

    // The rows for scikit-learn, split as risk.rs splits them.
    let n_fit = TRAIN - (TRAIN as f64 * opts.calibration_fraction).floor() as usize;
    let csv_path = std::env::temp_dir().join(format!("risk_parity_{}.csv", std::process::id()));
    write_csv(&csv_path, &data.x, &data.y, &data.names, n_fit).expect("write the rows");

    let mut table = Vec::new();

    // risk.rs.
    let mut times = Vec::new();
    let mut model = None;
    for _ in 0..7 {
        let start = Instant::now();
        let m = fit(x_train, y_train, &data.names, &opts).expect("fit");
        times.push(start.elapsed());
        model = Some(m);
    }
    let model: RiskModel = model.expect("fitted");
    let probs: Vec<f64> = model.score_rows(x_test).iter().map(|s| s.probability).collect();
    table.push(Row {
        name: "risk.rs (argmin L-BFGS, fused weighted objective)".into(),
        iterations: format!("{} ({} passes)", model.training.iterations, model.training.evaluations),
        time: Some(median(times)),
        auroc: auroc(&probs, &y_test),
        peak: mb(vmhwm_kb()),
        max_coef_diff: None,
    });

    // linfa-logistic as shipped, on the same standardised rows, positives repeated.
    let x_fit = model.standardise_rows(rows(&data.x, ..n_fit));
    let y_fit = rows(&data.y, ..n_fit).to_vec();
    let x_test_std = model.standardise_rows(x_test);
    let repeat = model.training.positive_weight.round() as usize;
    let (x_over, y_over) = oversample(&x_fit, &y_fit, repeat);
    let alpha = L2 * x_over.nrows() as f64;
    for (name, tolerance) in [
        ("linfa-logistic 0.8, defaults (gradient tol 1e-4 on a sum)", 1e-4),
        (
            "linfa-logistic 0.8, gradient tol 1e-4 x rows",
            1e-4 * x_over.nrows() as f64,
        ),
    ] {
        let dataset = Dataset::new(x_over.clone(), y_over.clone());
        let mut times = Vec::new();
        let mut fitted = None;
        for _ in 0..3 {
            let start = Instant::now();
            let f = LogisticRegression::default()
                .alpha(alpha)
                .max_iterations(100)
                .gradient_tolerance(tolerance)
                .fit(&dataset)
                .expect("linfa fit");
            times.push(start.elapsed());
            fitted = Some(f);
        }
        let fitted = fitted.expect("fitted");
        let mut p = fitted.predict_probabilities(&x_test_std).to_vec();
        // linfa's probability is of its "positive" label, whichever class that is.
        if !fitted.labels().pos.class {
            p.iter_mut().for_each(|v| *v = 1.0 - *v);
        }
        table.push(Row {
            name: format!("{name}, positives x{repeat}"),
            iterations: "not exposed".into(),
            time: Some(median(times)),
            auroc: auroc(&p, &y_test),
            peak: mb(vmhwm_kb()),
            max_coef_diff: None,
        });
    }

    // scikit-learn, at its default tolerance and then converged hard (parity of the
    // objective: the coefficients should then agree to many digits).
    let sklearn_auroc = sklearn_row(&csv_path, &[], &model, &mut table);
    let tight = TrainOptions {
        tolerance: 1e-9,
        max_iterations: 1_000,
        ..opts.clone()
    };
    let tight_model = fit(x_train, y_train, &data.names, &tight).expect("fit");
    let probs: Vec<f64> = tight_model.score_rows(x_test).iter().map(|s| s.probability).collect();
    table.push(Row {
        name: "risk.rs, tolerance 1e-9".into(),
        iterations: tight_model.training.iterations.to_string(),
        time: None,
        auroc: auroc(&probs, &y_test),
        peak: String::new(),
        max_coef_diff: None,
    });
    sklearn_row(
        &csv_path,
        &["--tol", "1e-9", "--max-iter", "1000", "--repeat", "1"],
        &tight_model,
        &mut table,
    );
    let _ = std::fs::remove_file(&csv_path);

    let oracle = auroc(&data.true_logit[TRAIN..], &y_test);
    println!(
        "\nrisk fit: {N} rows x {D} features, fit {n_fit} / calibrate {} / test {}, \
         {} fit positives, test AUROC of the true logit {oracle:.4}\n",
        TRAIN - n_fit,
        N - TRAIN,
        model.training.fit_positives
    );
    println!("| fit | iterations | fit time | test AUROC | AUROC - scikit-learn | max abs coef diff vs scikit-learn | peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &table {
        let delta = sklearn_auroc.map_or("?".into(), |s| format!("{:+.4}", r.auroc - s));
        let coef = r
            .max_coef_diff
            .map_or(String::new(), |d| format!("{d:.1e} (vs the risk.rs row above)"));
        println!(
            "| {} | {} | {} | {:.4} | {} | {} | {} |",
            r.name,
            r.iterations,
            r.time
                .map_or("-".into(), |t| format!("{:.1} ms", t.as_secs_f64() * 1e3)),
            r.auroc,
            delta,
            coef,
            r.peak
        );
    }
    println!("\nPeak RSS is the process high-water mark after that row (cumulative for the Rust rows; the Python row is its own interpreter).");
}

/// Runs parity.py on the rows with extra `args`, appends its row (coefficients compared
/// with `model`'s) and returns its AUROC.
fn sklearn_row(csv_path: &std::path::Path, args: &[&str], model: &RiskModel, table: &mut Vec<Row>) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../parity/parity.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(csv_path)
        .args(["--l2", &L2.to_string(), "--class-weight", "balanced"])
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parity.py prints JSON");
            let coef: Vec<f64> = v["coef"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_f64()).collect())
                .unwrap_or_default();
            let diff = coef
                .iter()
                .zip(&model.coefficients)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let intercept_diff = (v["intercept"].as_f64().unwrap_or(f64::NAN) - model.intercept).abs();
            let a = v["auroc"].as_f64().unwrap_or(f64::NAN);
            table.push(Row {
                name: format!(
                    "scikit-learn {} LogisticRegression(lbfgs, C={:.4}){}",
                    v["sklearn"].as_str().unwrap_or("?"),
                    v["C"].as_f64().unwrap_or(f64::NAN),
                    if args.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", args[..2].join(" "))
                    }
                ),
                iterations: v["n_iter"].to_string(),
                time: if args.is_empty() {
                    v["fit_seconds"].as_f64().map(Duration::from_secs_f64)
                } else {
                    None
                },
                auroc: a,
                peak: mb(v["vmhwm_kb"].as_u64()),
                max_coef_diff: Some(diff.max(intercept_diff)),
            });
            Some(a)
        }
        Ok(out) => {
            eprintln!(
                "parity.py failed (pip install scikit-learn?):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("python3 not run: {e}");
            None
        }
    }
}

fn oversample(x: &Array2<f64>, y: &[bool], repeat: usize) -> (Array2<f64>, Array1<bool>) {
    let mut idx = Vec::new();
    for (i, &yi) in y.iter().enumerate() {
        let times = if yi { repeat.max(1) } else { 1 };
        idx.extend(std::iter::repeat_n(i, times));
    }
    (x.select(Axis(0), &idx), idx.iter().map(|&i| y[i]).collect())
}

fn write_csv(
    path: &std::path::Path,
    x: &Array2<f64>,
    y: &Array1<bool>,
    names: &[String],
    n_fit: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header = vec!["split".to_string(), "y".to_string()];
    header.extend(names.iter().cloned());
    w.write_record(&header)?;
    for (i, (row, &yi)) in x.outer_iter().zip(y).enumerate() {
        let split = if i < n_fit {
            "fit"
        } else if i < TRAIN {
            "calib"
        } else {
            "test"
        };
        let mut rec = vec![split.to_string(), u8::from(yi).to_string()];
        rec.extend(
            row.iter()
                .map(|v| if v.is_finite() { v.to_string() } else { String::new() }),
        );
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}
