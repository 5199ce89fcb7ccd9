//! When emergency patients arrive: a non-homogeneous Poisson process whose hourly rate
//! follows a real emergency department's daily and weekly pattern.
//!
//! [`PROFILE`] is the mean number of arrivals per hour of the day for each weekday at
//! the University of Iowa Hospitals & Clinics ED, July 2013 to March 2018 (41,640 hours,
//! about 159 arrivals a day; `../shared/data/timeseries/uihc_ed_arrivals_fastTS`, GPL-3.0+
//! data, of which only these 168 means are used). The test below recomputes them from
//! the file. The simulator scales the profile to the hospital's own daily volume and
//! samples arrival times by thinning (Lewis and Shedler): candidates at the peak rate,
//! each kept with probability rate(t) / peak.

use rand::Rng;
use rand_distr::{Distribution, Exp};

/// Mean arrivals per hour; rows Monday..Sunday, columns hour 0..23 (local time = UTC
/// here).
pub const PROFILE: [[f64; 24]; 7] = [
    [
        4.36, 3.46, 2.90, 2.33, 2.09, 2.08, 2.50, 3.95, 6.89, 8.60, 9.95, 10.56, 10.55, 10.25, 10.27, 10.58, 10.54,
        10.90, 10.26, 10.02, 8.83, 7.85, 6.52, 5.15,
    ],
    [
        4.26, 3.32, 2.73, 2.37, 2.04, 2.08, 2.47, 3.41, 5.96, 7.80, 8.91, 9.58, 9.67, 9.04, 9.05, 9.64, 10.18, 10.67,
        9.78, 9.25, 8.50, 7.34, 6.37, 4.88,
    ],
    [
        4.19, 3.57, 2.91, 2.37, 2.18, 2.12, 2.48, 3.69, 5.69, 7.64, 8.28, 9.09, 8.73, 9.73, 9.26, 9.57, 9.96, 10.10,
        9.85, 9.14, 8.68, 7.44, 6.40, 5.20,
    ],
    [
        4.05, 3.25, 2.79, 2.35, 2.14, 1.93, 2.38, 3.44, 5.85, 7.36, 8.21, 9.31, 8.79, 8.85, 9.37, 9.20, 9.73, 9.57,
        9.64, 9.38, 8.24, 7.70, 5.88, 4.98,
    ],
    [
        4.32, 3.64, 3.19, 2.69, 2.06, 2.17, 2.28, 3.39, 5.36, 7.13, 8.83, 8.92, 9.22, 9.09, 9.79, 9.68, 10.40, 10.48,
        9.75, 9.43, 8.40, 7.68, 6.64, 5.88,
    ],
    [
        5.13, 4.60, 3.85, 3.12, 2.32, 2.47, 2.60, 3.33, 4.53, 6.43, 7.77, 8.36, 9.20, 9.13, 8.87, 9.09, 8.84, 9.05,
        8.58, 8.40, 8.29, 7.52, 6.62, 5.85,
    ],
    [
        5.19, 4.89, 4.07, 3.10, 2.74, 2.41, 2.60, 3.26, 4.57, 6.50, 7.94, 8.45, 9.17, 9.00, 8.93, 9.07, 9.36, 8.79,
        8.80, 8.80, 8.64, 7.58, 6.70, 5.15,
    ],
];

/// Mean arrivals per week in [`PROFILE`].
pub fn profile_weekly_total() -> f64 {
    PROFILE.iter().flatten().sum()
}

/// Weekday (0 = Monday) and hour of a Unix time.
pub fn weekday_hour(secs: i64) -> (usize, usize) {
    let days = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday (3 days after a Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let hour = (secs.rem_euclid(86_400) / 3_600) as usize;
    (weekday, hour)
}

/// Arrival process scaled to `per_day` arrivals on an average day.
pub struct Arrivals {
    scale: f64,
    peak: f64,
}

impl Arrivals {
    pub fn new(per_day: f64) -> Self {
        let scale = per_day * 7.0 / profile_weekly_total();
        let peak = PROFILE.iter().flatten().fold(0.0f64, |a, &b| a.max(b)) * scale;
        Self { scale, peak }
    }

    /// Expected arrivals per hour at `secs`.
    pub fn rate_per_hour(&self, secs: i64) -> f64 {
        let (d, h) = weekday_hour(secs);
        PROFILE[d][h] * self.scale
    }

    /// The next arrival after `after` (seconds), or None if the rate is zero.
    pub fn next(&self, after: i64, rng: &mut impl Rng) -> Option<i64> {
        if self.peak <= 0.0 {
            return None;
        }
        let gap = Exp::new(self.peak / 3_600.0).ok()?;
        let mut t = after as f64;
        loop {
            t += gap.sample(rng);
            if rng.random::<f64>() * self.peak <= self.rate_per_hour(t as i64) {
                return Some(t.ceil() as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    #[test]
    fn weekdays() {
        // 2026-01-05 was a Monday.
        assert_eq!(weekday_hour(1_767_571_200), (0, 0));
        assert_eq!(weekday_hour(1_767_571_200 + 6 * 86_400 + 13 * 3_600 + 59), (6, 13));
        assert_eq!(weekday_hour(0), (3, 0));
    }

    /// The embedded profile is the file's per-(weekday, hour) mean.
    #[test]
    fn profile_matches_the_uihc_file() {
        let dir = hospital_testkit::shared_data("");
        let path = dir.join("timeseries/uihc_ed_arrivals_fastTS/uihc_ed_arrivals_hourly.csv");
        let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (wd, hr, arrivals) = (col("Weekday"), col("Hour"), col("Arrivals"));
        let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let mut sums: HashMap<(usize, usize), (f64, f64)> = HashMap::new();
        let mut rows = 0;
        for r in reader.records() {
            let r = r.unwrap();
            let d = days.iter().position(|x| *x == &r[wd]).unwrap();
            let h: usize = r[hr].parse().unwrap();
            let e = sums.entry((d, h)).or_default();
            e.0 += r[arrivals].parse::<f64>().unwrap();
            e.1 += 1.0;
            rows += 1;
        }
        assert_eq!(rows, 41_640);
        for (d, row) in PROFILE.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                let (s, n) = sums[&(d, h)];
                assert!(
                    (s / n - v).abs() < 0.006,
                    "{} {h}:00: file {:.3}, profile {v}",
                    days[d],
                    s / n
                );
            }
        }
    }

    #[test]
    fn sampled_arrivals_follow_the_profile() {
        let a = Arrivals::new(120.0);
        let mut rng = StdRng::seed_from_u64(1);
        let start = 1_767_571_200; // a Monday
        let weeks = 20;
        let mut t = start;
        let mut by_hour = [0.0f64; 24];
        let mut n = 0.0;
        while let Some(next) = a.next(t, &mut rng) {
            if next >= start + weeks * 7 * 86_400 {
                break;
            }
            by_hour[weekday_hour(next).1] += 1.0;
            n += 1.0;
            t = next;
        }
        let per_day = n / (weeks * 7) as f64;
        assert!((per_day - 120.0).abs() < 4.0, "{per_day} a day");
        // Nights are quiet, late mornings busy, as in the profile.
        assert!(by_hour[4] * 3.0 < by_hour[11], "{by_hour:?}");
    }
}
