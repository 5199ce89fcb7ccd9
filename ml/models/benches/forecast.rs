//! Forecaster cost on the UIHC ED daily arrivals (1735 days): fit time, forecast time per
//! call and the process's peak resident memory (VmHWM), next to the seasonal naive
//! forecast measured in the same run. Prints a markdown table.
//! `cargo bench -p hospital-ml-models --bench forecast`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use hospital_ml_models::forecast::{days_from_civil, DailySeries, ForecastOptions, Forecaster};

fn load() -> Option<DailySeries> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/timeseries/uihc_ed_arrivals_fastTS/uihc_ed_arrivals_hourly.csv");
    if !path.exists() {
        eprintln!("SKIPPED: {} is absent", path.display());
        return None;
    }
    let mut reader = csv::Reader::from_path(&path).expect("open the UIHC csv");
    let headers = reader.headers().expect("header").clone();
    let date = headers.iter().position(|h| h == "Date").expect("Date");
    let arrivals = headers.iter().position(|h| h == "Arrivals").expect("Arrivals");
    let mut by_day: BTreeMap<i64, f64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("record");
        let ymd: Vec<u32> = record[date].split('-').map(|p| p.parse().expect("date")).collect();
        let day = days_from_civil(i64::from(ymd[0]), ymd[1], ymd[2]);
        *by_day.entry(day).or_insert(0.0) += record[arrivals].parse::<f64>().expect("arrivals");
    }
    let first = *by_day.keys().next()?;
    let last = *by_day.keys().next_back()?;
    let values = (first..=last)
        .map(|d| by_day.get(&d).copied().unwrap_or(f64::NAN))
        .collect();
    Some(DailySeries::new(first, values))
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let Some(series) = load() else { return };
    let opts = ForecastOptions::default();
    let before = peak_rss_kib();

    let fits = 5;
    let start = Instant::now();
    let mut model = None;
    for _ in 0..fits {
        model = Some(Forecaster::fit(black_box(&series), &opts).expect("fit"));
    }
    let fit_ms = start.elapsed().as_secs_f64() * 1e3 / fits as f64;
    let model = model.expect("fitted");

    let calls = 2000;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(model.forecast(black_box(&series), 14));
    }
    let forecast_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;

    // Baseline: the weekly seasonal naive forecast of the same 14 days.
    let start = Instant::now();
    for _ in 0..calls {
        let v = &black_box(&series).values;
        let n = v.len();
        let f: Vec<f64> = (1..=14usize).map(|h| v[n - 1 + h - 7 * h.div_ceil(7)]).collect();
        black_box(f);
    }
    let naive_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let after = peak_rss_kib();

    let kib = |v: Option<u64>| v.map_or("n/a".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!("UIHC ED daily arrivals, {} days, 14 horizons\n", series.len());
    println!("| model | fit | forecast (14 days) per call | peak RSS (VmHWM) |");
    println!("|---|---|---|---|");
    println!(
        "| ridge per horizon (default options) | {fit_ms:.1} ms | {forecast_us:.1} us | {} (before fit: {}) |",
        kib(after),
        kib(before)
    );
    println!("| seasonal naive (weekly) | - | {naive_us:.2} us | - |");
}
