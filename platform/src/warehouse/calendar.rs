//! `dim_date`: one row per calendar day (UTC) that a fact touches, keyed YYYYMMDD.
//!
//! Owns: date keys and the calendar attributes. Must not: know about facts.

use std::collections::BTreeSet;

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use time::{Date, Weekday};

use super::insert_rows;
use crate::error::Result;

pub const TABLE: &str = "dim_date";

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
const MS_PER_DAY: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DimDate {
    pub date_key: u32,
    /// Days since 1970-01-01 (ClickHouse `Date`); 0 outside 1970..=2105, which the
    /// 18.16 `Date` cannot hold.
    pub date: u16,
    pub year: u16,
    pub quarter: u8,
    pub month: u8,
    pub day: u8,
    /// 1 = Monday ... 7 = Sunday.
    pub iso_weekday: u8,
    pub is_weekend: bool,
}

fn civil_date(ms: i64) -> Option<Date> {
    let days = ms.div_euclid(MS_PER_DAY);
    let julian = i32::try_from(UNIX_EPOCH_JULIAN_DAY + days).ok()?;
    Date::from_julian_day(julian).ok()
}

/// The YYYYMMDD key of the UTC day holding `ms`; 0 for a time no calendar holds.
pub fn date_key(ms: i64) -> u32 {
    civil_date(ms)
        .and_then(|d| {
            let key = d.year() * 10_000 + i32::from(u8::from(d.month())) * 100 + i32::from(d.day());
            u32::try_from(key).ok()
        })
        .unwrap_or(0)
}

impl DimDate {
    /// The calendar row of the day holding `ms`.
    pub fn of_ms(ms: i64) -> Option<Self> {
        let d = civil_date(ms)?;
        let days = ms.div_euclid(MS_PER_DAY);
        let month = u8::from(d.month());
        let weekday = d.weekday();
        Some(Self {
            date_key: date_key(ms),
            date: u16::try_from(days).unwrap_or(0),
            year: u16::try_from(d.year()).ok()?,
            quarter: (month - 1) / 3 + 1,
            month,
            day: d.day(),
            iso_weekday: weekday.number_from_monday(),
            is_weekend: matches!(weekday, Weekday::Saturday | Weekday::Sunday),
        })
    }

    /// The calendar row of a YYYYMMDD key.
    pub fn of_key(key: u32) -> Option<Self> {
        let year = i32::try_from(key / 10_000).ok()?;
        let month = time::Month::try_from(u8::try_from(key / 100 % 100).ok()?).ok()?;
        let day = u8::try_from(key % 100).ok()?;
        let d = Date::from_calendar_date(year, month, day).ok()?;
        let days = i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
        Self::of_ms(days * MS_PER_DAY)
    }
}

/// Writes the calendar rows of `keys` (rewriting a day that exists changes nothing).
pub async fn write(client: &Client, keys: &BTreeSet<u32>) -> Result<u64> {
    let rows: Vec<DimDate> = keys.iter().filter_map(|k| DimDate::of_key(*k)).collect();
    insert_rows(client, TABLE, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_attributes() {
        // 2024-03-03T23:59:59.999Z is a Sunday in Q1.
        let d = DimDate::of_ms(1_709_510_399_999).unwrap();
        assert_eq!(d.date_key, 20240303);
        assert_eq!((d.year, d.quarter, d.month, d.day), (2024, 1, 3, 3));
        assert_eq!((d.iso_weekday, d.is_weekend), (7, true));
        assert_eq!(d.date, 19785);
        assert_eq!(DimDate::of_key(20240303), Some(d));
        let mon = DimDate::of_key(20241007).unwrap();
        assert_eq!((mon.iso_weekday, mon.is_weekend, mon.quarter), (1, false, 4));
    }

    #[test]
    fn dates_before_1970_keep_their_key() {
        assert_eq!(date_key(-1), 19691231);
        let d = DimDate::of_key(19500101).unwrap();
        assert_eq!((d.date, d.year), (0, 1950));
        assert_eq!(DimDate::of_key(20230230), None);
    }
}
