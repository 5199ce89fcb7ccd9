//! When a fact happened, as every rule of the platform orders facts about the same
//! thing (an encounter's location, a bed's state, a NEWS2 parameter): by `occurred_at`,
//! then by staging position (commit order) to break ties. The warehouse load, the live
//! census and the NEWS2 state all choose between two facts with [`wins`], so a state
//! rebuilt from the warehouse and one built live choose alike.

/// occurred_at (ms since the epoch), then staging position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub at_ms: i64,
    pub position: u64,
}

/// Which fact a slot keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first by (time, position): an admission, an ED arrival, a first triage.
    Earliest,
    /// The last by (time, position): a location, a discharge, a bed state, a reading.
    Latest,
}

/// Whether a fact stamped `candidate` replaces one stamped `current` in a slot that
/// keeps `keep`. Equal stamps (the same fact again) never replace.
pub fn wins(candidate: Stamp, current: Stamp, keep: Keep) -> bool {
    match keep {
        Keep::Earliest => candidate < current,
        Keep::Latest => candidate > current,
    }
}

/// Keeps `value` in `slot` if the slot is empty or `stamp` [`wins`] over its stamp.
pub fn keep<T>(slot: &mut Option<(Stamp, T)>, stamp: Stamp, value: T, keep: Keep) {
    if slot.as_ref().is_none_or(|(current, _)| wins(stamp, *current, keep)) {
        *slot = Some((stamp, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_first_then_position_and_a_repeat_never_replaces() {
        let s = |at_ms, position| Stamp { at_ms, position };
        // A later time wins over a higher position.
        assert!(wins(s(2, 1), s(1, 9), Keep::Latest));
        assert!(!wins(s(1, 9), s(2, 1), Keep::Latest));
        // Same time: the later commit.
        assert!(wins(s(1, 2), s(1, 1), Keep::Latest));
        assert!(wins(s(1, 1), s(1, 2), Keep::Earliest));
        // The same fact again changes nothing.
        assert!(!wins(s(1, 1), s(1, 1), Keep::Latest));
        assert!(!wins(s(1, 1), s(1, 1), Keep::Earliest));

        let mut slot = None;
        keep(&mut slot, s(5, 1), "a", Keep::Earliest);
        keep(&mut slot, s(7, 2), "b", Keep::Earliest);
        keep(&mut slot, s(3, 3), "c", Keep::Earliest);
        assert_eq!(slot, Some((s(3, 3), "c")));
    }
}
