//! Deduplication by idempotency key `(source_system, event_id)`: the first staged copy
//! (lowest position) of an event wins, whichever chunk or run sees the others.
//!
//! Owns: the decision which staged rows of a chunk to load. Must not: read or write
//! ClickHouse (the caller looks the registry up and passes the answer in).

use std::collections::{HashMap, HashSet};

use crate::warehouse::bookkeeping::EventKey;

/// What dedup needs of a staged row.
pub trait Keyed {
    fn position(&self) -> u64;
    fn source_system(&self) -> &str;
    fn event_id(&self) -> &str;
}

/// Indices of the rows that are the first copy of their key within the chunk (rows
/// must be in position order), and how many repeats were dropped.
pub fn first_in_chunk<R: Keyed>(rows: &[R]) -> (Vec<usize>, u64) {
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(rows.len());
    let mut keep = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        if seen.insert((r.source_system(), r.event_id())) {
            keep.push(i);
        }
    }
    let dropped = (rows.len() - keep.len()) as u64;
    (keep, dropped)
}

/// Of `candidates` (indices into `rows`), those not already loaded from a lower
/// position according to `registered` (key -> first registered position), and how
/// many were dropped. A row registered at its own position is kept: that is a chunk
/// being redone after a crash, or a full reload, and loading is idempotent.
pub fn not_loaded_before<R: Keyed>(
    rows: &[R],
    candidates: Vec<usize>,
    registered: &HashMap<EventKey, u64>,
) -> (Vec<usize>, u64) {
    let before = candidates.len();
    let keep: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| {
            let r = &rows[i];
            let key = (r.source_system().to_string(), r.event_id().to_string());
            registered.get(&key).is_none_or(|&first| first >= r.position())
        })
        .collect();
    let dropped = (before - keep.len()) as u64;
    (keep, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(u64, &'static str, &'static str);

    impl Keyed for Row {
        fn position(&self) -> u64 {
            self.0
        }
        fn source_system(&self) -> &str {
            self.1
        }
        fn event_id(&self) -> &str {
            self.2
        }
    }

    fn key(s: &str, e: &str) -> EventKey {
        (s.to_string(), e.to_string())
    }

    #[test]
    fn first_copy_wins_within_a_chunk() {
        let rows = [
            Row(1, "adt", "a"),
            Row(2, "lab", "a"),
            Row(3, "adt", "a"),
            Row(4, "adt", "b"),
            Row(5, "lab", "a"),
        ];
        let (keep, dropped) = first_in_chunk(&rows);
        assert_eq!(keep, vec![0, 1, 3]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn events_loaded_from_a_lower_position_are_dropped() {
        let rows = [
            Row(10, "adt", "a"),
            Row(11, "adt", "b"),
            Row(12, "adt", "c"),
            Row(13, "adt", "d"),
        ];
        let registered: HashMap<EventKey, u64> = [
            (key("adt", "a"), 3),  // resent: loaded before
            (key("adt", "b"), 11), // this very row: a redone chunk or a full reload
            (key("adt", "c"), 40), // cannot happen in order, but the lower copy wins
        ]
        .into_iter()
        .collect();
        let (keep, dropped) = not_loaded_before(&rows, vec![0, 1, 2, 3], &registered);
        assert_eq!(keep, vec![1, 2, 3]);
        assert_eq!(dropped, 1);
    }
}
