//! The record balance every source adapter gives: each input record (a CSV row, a FHIR
//! resource or entry, an HL7 message) is mapped, not mapped (an error names it),
//! skipped (deliberately not loaded, with its reason) or superseded (another record says
//! the same thing and was preferred, with the rule), and nothing else:
//! `read = mapped + not_mapped + skipped + superseded`.
//!
//! Owns the arithmetic and its wording; each adapter owns its own reasons.

use std::collections::BTreeMap;
use std::fmt;

/// Where the records of one input (a file, a source) went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balance {
    /// Records read, bad ones included.
    pub read: u64,
    /// Records that made (or went into) at least one event.
    pub mapped: u64,
    /// Records that could not be mapped; each is an error of the summary.
    pub not_mapped: u64,
    /// Records deliberately not loaded, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records left out because another one, preferred by a stated rule, says the same
    /// thing, by reason.
    pub superseded: BTreeMap<String, u64>,
}

impl Balance {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn superseded_total(&self) -> u64 {
        self.superseded.values().sum()
    }

    /// mapped + not mapped + skipped + superseded.
    pub fn accounted(&self) -> u64 {
        self.mapped + self.not_mapped + self.skipped_total() + self.superseded_total()
    }

    /// Whether every record read is accounted for, once.
    pub fn balances(&self) -> bool {
        self.accounted() == self.read
    }

    /// Adds `n` records skipped for `reason`.
    pub fn skip(&mut self, reason: impl Into<String>, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason.into()).or_default() += n;
        }
    }

    /// Adds `n` records superseded for `reason`.
    pub fn supersede(&mut self, reason: impl Into<String>, n: u64) {
        if n > 0 {
            *self.superseded.entry(reason.into()).or_default() += n;
        }
    }

    /// Adds another balance's counts (reasons keep their own keys).
    pub fn add(&mut self, other: &Balance) {
        self.read += other.read;
        self.mapped += other.mapped;
        self.not_mapped += other.not_mapped;
        for (reason, n) in &other.skipped {
            self.skip(reason.clone(), *n);
        }
        for (reason, n) in &other.superseded {
            self.supersede(reason.clone(), *n);
        }
    }
}

impl fmt::Display for Balance {
    /// `read 10 = mapped 6 + not mapped 1 + skipped 2 + superseded 1: balances`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} = mapped {} + not mapped {} + skipped {} + superseded {}",
            self.read,
            self.mapped,
            self.not_mapped,
            self.skipped_total(),
            self.superseded_total()
        )?;
        if self.balances() {
            write!(f, ": balances")
        } else {
            write!(f, ": DOES NOT BALANCE ({} accounted for)", self.accounted())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_only_when_every_record_is_accounted_for() {
        let mut b = Balance {
            read: 10,
            mapped: 6,
            not_mapped: 1,
            ..Default::default()
        };
        b.skip("ERROR=1", 2);
        b.skip("nothing", 0);
        assert!(!b.balances());
        assert_eq!(b.skipped.len(), 1);
        b.supersede("cuff preferred", 1);
        assert!(b.balances());
        assert_eq!(
            b.to_string(),
            "read 10 = mapped 6 + not mapped 1 + skipped 2 + superseded 1: balances"
        );
        let mut total = Balance::default();
        total.add(&b);
        total.add(&b);
        assert_eq!((total.read, total.skipped["ERROR=1"]), (20, 4));
        total.read += 1;
        assert!(total.to_string().ends_with("DOES NOT BALANCE (20 accounted for)"));
    }
}
