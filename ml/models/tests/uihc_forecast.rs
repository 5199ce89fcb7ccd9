//! The forecaster on the real UIHC emergency department arrivals (2013-07 to 2018-03,
//! hourly counts summed to days): weekly origins over the last 20% of days, 1-14 days
//! ahead, against the weekly seasonal naive forecast on the same origins.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hospital_ml_models::forecast::{backtest, days_from_civil, DailySeries, ForecastOptions};

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/timeseries/uihc_ed_arrivals_fastTS/uihc_ed_arrivals_hourly.csv")
}

/// Hourly arrivals summed per `Date`, as consecutive days (a day absent from the file
/// would be NaN).
fn daily_arrivals(path: &PathBuf) -> DailySeries {
    let mut reader = csv::Reader::from_path(path).expect("open the UIHC csv");
    let headers = reader.headers().expect("csv header").clone();
    let date_col = headers.iter().position(|h| h == "Date").expect("Date column");
    let arrivals_col = headers.iter().position(|h| h == "Arrivals").expect("Arrivals column");
    let mut by_day: BTreeMap<i64, f64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("csv record");
        let mut parts = record[date_col].split('-').map(|p| p.parse::<u32>().expect("date"));
        let (y, m, d) = (
            parts.next().expect("year"),
            parts.next().expect("month"),
            parts.next().expect("day"),
        );
        let day = days_from_civil(i64::from(y), m, d);
        let arrivals: f64 = record[arrivals_col].parse().expect("arrivals");
        *by_day.entry(day).or_insert(0.0) += arrivals;
    }
    let first = *by_day.keys().next().expect("at least one day");
    let last = *by_day.keys().next_back().expect("at least one day");
    let values = (first..=last)
        .map(|d| by_day.get(&d).copied().unwrap_or(f64::NAN))
        .collect();
    DailySeries::new(first, values)
}

fn load() -> Option<DailySeries> {
    let path = data_path();
    if !path.exists() {
        eprintln!(
            "SKIPPED: the UIHC ED arrivals file is absent ({}); nothing was checked",
            path.display()
        );
        return None;
    }
    Some(daily_arrivals(&path))
}

#[test]
fn uihc_daily_arrivals_beat_seasonal_naive_with_honest_intervals() {
    let Some(series) = load() else { return };
    assert_eq!(series.len(), 1735, "2013-07-01 to 2018-03-31");
    assert!(series.values.iter().all(|v| v.is_finite()));

    let bt = backtest(&series, &ForecastOptions::default(), 0.2).expect("backtest");
    println!(
        "UIHC ED daily arrivals: {} training days, {} weekly origins, MASE scale {:.2}\n{}",
        bt.train_days,
        bt.origins,
        bt.scale,
        bt.table()
    );
    assert_eq!(bt.horizons.len(), 14);
    // The target was 0.70; measured 0.715 (options chosen on the validation split only,
    // where every variant tried scored 0.717-0.733). Guard against regressions from the
    // measured figure, below the 0.73 of a plain ridge on weekday and 7/28-day means.
    assert!(bt.mase <= 0.725, "MASE {:.3} > 0.725", bt.mase);
    assert!(
        bt.mase < bt.naive_mase,
        "MASE {:.3} not below the seasonal naive's {:.3}",
        bt.mase,
        bt.naive_mase
    );
    assert!(
        (0.75..=0.85).contains(&bt.coverage),
        "80% interval coverage {:.3} outside 0.75..=0.85",
        bt.coverage
    );
}

/// Model selection on a validation split: the first 80% of the days only, its own last
/// 20% as the test part, so the real test days (the last 20%) are never looked at.
/// `cargo test --release -p hospital-ml-models --test uihc_forecast -- --ignored --nocapture`
#[test]
#[ignore = "model selection, prints a table"]
fn uihc_validation_variants() {
    use hospital_ml_models::forecast::{backtest_with, Refit};
    let Some(series) = load() else { return };
    let validation = series.prefix(series.len() - (series.len() as f64 * 0.2).round() as usize);
    let base = ForecastOptions::default();
    let variants: Vec<(&str, ForecastOptions)> = vec![
        ("default", base.clone()),
        (
            "no median",
            ForecastOptions {
                median_correction: false,
                ..base.clone()
            },
        ),
        (
            "no weekend season",
            ForecastOptions {
                weekend_season: false,
                ..base.clone()
            },
        ),
        (
            "neither",
            ForecastOptions {
                weekend_season: false,
                median_correction: false,
                ..base.clone()
            },
        ),
        (
            "windows 7,14,91,364",
            ForecastOptions {
                extra_windows: vec![7, 14, 91, 364],
                ..base.clone()
            },
        ),
        (
            "level 91",
            ForecastOptions {
                level_window: 91,
                extra_windows: vec![7, 28, 364],
                ..base.clone()
            },
        ),
        (
            "fourier 4",
            ForecastOptions {
                fourier_terms: 4,
                ..base.clone()
            },
        ),
        (
            "penalty 0.003",
            ForecastOptions {
                penalty: 0.003,
                ..base.clone()
            },
        ),
        (
            "calibration 0.35",
            ForecastOptions {
                calibration_fraction: 0.35,
                ..base.clone()
            },
        ),
    ];
    println!("| variant | refit | MASE 1-7 | MASE 8-14 | MASE | naive | coverage |\n|---|---|---|---|---|---|---|");
    for (name, opts) in variants {
        for refit in [Refit::Once, Refit::EveryOrigin] {
            let bt = backtest_with(&validation, &opts, 0.2, refit).expect("backtest");
            let (m1, _, _) = bt.summary(1..=7);
            let (m2, _, _) = bt.summary(8..=14);
            println!(
                "| {name} | {refit:?} | {m1:.3} | {m2:.3} | {:.3} | {:.3} | {:.3} |",
                bt.mase, bt.naive_mase, bt.coverage
            );
        }
    }
}
