//! HL7 DTM / TS date-times: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`.
//!
//! Rule for a missing offset: the value is read in the configured default offset, which
//! is UTC unless the caller sets [`super::ParseOptions::default_offset`]. Missing
//! trailing parts take their first value (month 1, day 1, 00:00:00); [`Dtm::precision`]
//! says how much was sent so a birth date is not mistaken for midnight.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// How much of a DTM value was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds with a fraction.
    Fraction,
}

/// A parsed DTM value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtm {
    /// The instant, in UTC.
    pub utc: OffsetDateTime,
    /// How much of the value was sent.
    pub precision: Precision,
    /// The offset written in the value, `None` when the default was assumed.
    pub offset: Option<UtcOffset>,
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a DTM value; the error is a short reason.
pub fn parse_dtm(value: &str, default_offset: UtcOffset) -> Result<Dtm, &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    if !value.is_ascii() {
        return Err("non-ASCII characters");
    }
    let (main, offset_str) = match value.find(['+', '-']) {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    let (digits, fraction) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected digits YYYY[MM[DD[HH[MM[SS]]]]]");
    }
    let precision = match digits.len() {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 => Precision::Hour,
        12 => Precision::Minute,
        14 => Precision::Second,
        _ => return Err("date/time part must have 4, 6, 8, 10, 12 or 14 digits"),
    };
    let part = |from: usize, to: usize, default: u32| digits.get(from..to).and_then(num).unwrap_or(default);
    let year = part(0, 4, 0);
    let month = part(4, 6, 1);
    let day = part(6, 8, 1);
    let hour = part(8, 10, 0);
    let minute = part(10, 12, 0);
    let second = part(12, 14, 0);
    let (nanos, precision) = match fraction {
        None => (0, precision),
        Some(_) if precision != Precision::Second => return Err("fraction of a second without seconds"),
        Some(f) if f.is_empty() || f.len() > 9 || num(f).is_none() => {
            return Err("fraction of a second must be 1 to 9 digits")
        }
        Some(f) => {
            let scaled = f
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(9)
                .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
            (scaled, Precision::Fraction)
        }
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or("month out of range")?;
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    let day = u8::try_from(day).map_err(|_| "day out of range")?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| "no such calendar date")?;
    let to_u8 = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
    let time = Time::from_hms_nano(to_u8(hour), to_u8(minute), to_u8(second), nanos)
        .map_err(|_| "time of day out of range")?;
    let offset = match offset_str {
        None => None,
        Some(o) => {
            let (sign, hhmm) = o.split_at(1);
            if hhmm.len() != 4 {
                return Err("offset must be +ZZZZ or -ZZZZ");
            }
            let (h, m) = (
                num(&hhmm[..2]).ok_or("bad offset")?,
                num(&hhmm[2..]).ok_or("bad offset")?,
            );
            if h > 23 || m > 59 {
                return Err("offset out of range");
            }
            let (h, m) = (to_u8(h) as i8, to_u8(m) as i8);
            let (h, m) = if sign == "-" { (-h, -m) } else { (h, m) };
            Some(UtcOffset::from_hms(h, m, 0).map_err(|_| "offset out of range")?)
        }
    };
    let utc = PrimitiveDateTime::new(date, time)
        .assume_offset(offset.unwrap_or(default_offset))
        .checked_to_offset(UtcOffset::UTC)
        .ok_or("instant out of the supported range")?;
    Ok(Dtm { utc, precision, offset })
}

#[cfg(test)]
mod tests {
    use time::macros::{datetime, offset};

    use super::*;

    fn utc(s: &str) -> OffsetDateTime {
        parse_dtm(s, UtcOffset::UTC).unwrap().utc
    }

    #[test]
    fn parses_every_precision() {
        assert_eq!(utc("2024"), datetime!(2024-01-01 0:00 UTC));
        assert_eq!(utc("202402"), datetime!(2024-02-01 0:00 UTC));
        assert_eq!(utc("20240229"), datetime!(2024-02-29 0:00 UTC));
        assert_eq!(utc("2024022913"), datetime!(2024-02-29 13:00 UTC));
        assert_eq!(utc("202402291345"), datetime!(2024-02-29 13:45 UTC));
        assert_eq!(utc("20240229134559"), datetime!(2024-02-29 13:45:59 UTC));
        assert_eq!(utc("20240229134559.1"), datetime!(2024-02-29 13:45:59.1 UTC));
        assert_eq!(utc("20150624084727.655"), datetime!(2015-06-24 08:47:27.655 UTC));
        assert_eq!(parse_dtm("20240229", UtcOffset::UTC).unwrap().precision, Precision::Day);
        assert_eq!(
            parse_dtm("20240229134559.1234", UtcOffset::UTC).unwrap().precision,
            Precision::Fraction
        );
    }

    #[test]
    fn applies_written_offsets() {
        // The MSH-7 of the FHIR-Converter ADT samples: 1989-08-18 11:26 at +02:15.
        let d = parse_dtm("198908181126+0215", UtcOffset::UTC).unwrap();
        assert_eq!(d.utc, datetime!(1989-08-18 09:11 UTC));
        assert_eq!(d.offset, Some(offset!(+2:15)));
        assert_eq!(d.precision, Precision::Minute);
        assert_eq!(utc("20150624084727.655-0500"), datetime!(2015-06-24 13:47:27.655 UTC));
        assert_eq!(utc("2024-0000"), datetime!(2024-01-01 0:00 UTC));
    }

    #[test]
    fn missing_offset_is_utc_unless_configured() {
        let d = parse_dtm("200202150930", UtcOffset::UTC).unwrap();
        assert_eq!(d.utc, datetime!(2002-02-15 09:30 UTC));
        assert_eq!(d.offset, None);
        let d = parse_dtm("200202150930", offset!(+1)).unwrap();
        assert_eq!(d.utc, datetime!(2002-02-15 08:30 UTC));
        // A written offset wins over the default.
        let d = parse_dtm("200202150930+0000", offset!(+1)).unwrap();
        assert_eq!(d.utc, datetime!(2002-02-15 09:30 UTC));
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "",
            "20",
            "2024021",
            "20241301",
            "20230229",
            "20240230",
            "2024022924",
            "202402291360",
            "20240229135960",
            "2024022913.5",
            "20240229134559.",
            "20240229134559.1234567890",
            "20240229+02",
            "20240229+2400",
            "20240229+0160",
            "2024022x",
            "２０２４",
            "20240229 1200",
            "99991231235959-2359",
        ] {
            assert!(parse_dtm(bad, UtcOffset::UTC).is_err(), "{bad:?} should be rejected");
        }
    }
}
