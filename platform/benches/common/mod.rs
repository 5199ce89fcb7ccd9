//! What the benchmarks share: percentiles and peak memory of a process.

use std::time::Duration;

/// Wall-clock seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    hospital_platform::now_ms() / 1000
}

/// The `p` quantile (0..=1) of sorted durations, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Peak resident memory (VmHWM, KiB) of process `pid` ("self" for this one); 0 when
/// unknown.
pub fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
