//! HL7 paths: `PID-3`, `PID-3(2)-1`, `OBX(2)-5-1-2`, `MSH.9.2`.
//!
//! Grammar: `SEG[(occurrence)]-FIELD[(repetition)][-COMPONENT[-SUBCOMPONENT]]`, every
//! number 1-based, `-` or `.` as separator, `(n)` or `[n]` for a repetition or segment
//! occurrence. A segment-relative path (for [`super::Segment::get`]) starts at FIELD.

use std::str::FromStr;

use super::error::PathError;

/// A parsed path. Unset parts mean "the first" when reading a leaf value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Segment id; `None` for a segment-relative path.
    pub segment: Option<[u8; 3]>,
    /// 1-based occurrence of the segment in the message.
    pub occurrence: usize,
    /// 1-based field number, HL7-counted.
    pub field: usize,
    /// 1-based repetition, if addressed.
    pub repetition: Option<usize>,
    /// 1-based component, if addressed.
    pub component: Option<usize>,
    /// 1-based subcomponent, if addressed.
    pub subcomponent: Option<usize>,
}

fn index_part<'a>(text: &'a str, path: &str) -> Result<(&'a str, Option<usize>), PathError> {
    let err = |reason| PathError {
        path: path.to_owned(),
        reason,
    };
    let open = text.find(['(', '[']);
    let Some(open) = open else {
        return Ok((text, None));
    };
    let close = if text.as_bytes()[open] == b'(' { ')' } else { ']' };
    let inner = text[open + 1..]
        .strip_suffix(close)
        .ok_or_else(|| err("unclosed index"))?;
    let n = positive(inner).ok_or_else(|| err("index must be a number from 1"))?;
    Ok((&text[..open], Some(n)))
}

fn positive(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

impl Path {
    /// Parses an absolute path (with segment id).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        Self::parse_inner(path, true)
    }

    /// Parses a segment-relative path (starting at the field number).
    pub fn parse_relative(path: &str) -> Result<Self, PathError> {
        Self::parse_inner(path, false)
    }

    fn parse_inner(path: &str, with_segment: bool) -> Result<Self, PathError> {
        let err = |reason| PathError {
            path: path.to_owned(),
            reason,
        };
        let mut parts = path.split(['-', '.']);
        let (segment, occurrence) = if with_segment {
            let (id, occ) = index_part(parts.next().unwrap_or(""), path)?;
            let id: [u8; 3] = id
                .as_bytes()
                .try_into()
                .map_err(|_| err("segment id must be 3 characters"))?;
            if !id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                return Err(err("segment id must be A-Z or 0-9"));
            }
            (Some(id), occ.unwrap_or(1))
        } else {
            (None, 1)
        };
        let (field, repetition) = index_part(parts.next().ok_or_else(|| err("missing field number"))?, path)?;
        let field = positive(field).ok_or_else(|| err("field must be a number from 1"))?;
        let mut level = |name: &'static str| -> Result<Option<usize>, PathError> {
            match parts.next() {
                None => Ok(None),
                Some(p) => positive(p).map(Some).ok_or_else(|| err(name)),
            }
        };
        let component = level("component must be a number from 1")?;
        let subcomponent = level("subcomponent must be a number from 1")?;
        if parts.next().is_some() {
            return Err(err("too many parts"));
        }
        Ok(Self {
            segment,
            occurrence,
            field,
            repetition,
            component,
            subcomponent,
        })
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let p = Path::parse("PID-3(2)-1-2").unwrap();
        assert_eq!(p.segment, Some(*b"PID"));
        assert_eq!(
            (p.occurrence, p.field, p.repetition, p.component, p.subcomponent),
            (1, 3, Some(2), Some(1), Some(2))
        );
        let p = Path::parse("OBX[2].5").unwrap();
        assert_eq!((p.occurrence, p.field, p.repetition, p.component), (2, 5, None, None));
        let p = Path::parse("ZP1-1").unwrap();
        assert_eq!(p.segment, Some(*b"ZP1"));
        let p = Path::parse_relative("3(2)-1").unwrap();
        assert_eq!(
            (p.segment, p.field, p.repetition, p.component),
            (None, 3, Some(2), Some(1))
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "",
            "PID",
            "PI-3",
            "pid-3",
            "PID-0",
            "PID-x",
            "PID-3(0)",
            "PID-3(2",
            "PID-3-1-1-1",
            "PID-3--1",
            "PID(a)-3",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Path::parse_relative("PID-3").is_err());
    }
}
