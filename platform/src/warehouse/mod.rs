//! The warehouse star schema (`warehouse` database): one module per table group with
//! its row structs, its SQL, and the rules that decide what a row holds (SCD2 history,
//! the encounter snapshot merge, SCD1 latest-wins).
//!
//! Owns: the shape of every warehouse table (see `migrations/warehouse/`, from
//! `0001_star_schema.sql` on) and how rows are read and written.
//! Must not: read the staging zone, decode events, or decide what to load and when
//! (the [`crate::batch`] stage does that).
//!
//! Conventions shared by every table: times are Int64 ms since the epoch (UTC), dates
//! are `date_key` YYYYMMDD; rows are replaced, never updated (ReplacingMergeTree keyed by
//! the table's natural key, `version` = the load sequence of the chunk that wrote the
//! row), so reads use `FINAL`; `is_deleted = 1` marks a tombstone.

/// The label of a protobuf enum field's value (`label!(pb::EncounterClass, raw,
/// "ENCOUNTER_CLASS")` -> "day_case"), empty for unknown and unspecified values.
macro_rules! label {
    ($enum:ty, $value:expr, $prefix:literal) => {
        <$enum>::try_from($value)
            .map(|e| $crate::warehouse::enum_label(e.as_str_name(), $prefix))
            .unwrap_or_default()
    };
}
pub(crate) use label;

pub mod bookkeeping;
pub mod calendar;
pub mod census;
pub mod encounter;
pub mod facts;
pub mod icu;
pub mod keys;
pub mod patient;
pub mod reference;
pub mod vitals;

pub(crate) use crate::db::{fetch_by_keys, insert_rows};

/// Load sequence number of the chunk that wrote a row; a higher one replaces a lower.
pub type Version = u64;

/// Start of the first version of every SCD2 member: 0001-01-01T00:00:00Z.
pub const BEGINNING_OF_TIME_MS: i64 = -62_135_596_800_000;
/// End of the current version of every SCD2 member: 9999-12-31T23:59:59.999Z.
pub const END_OF_TIME_MS: i64 = 253_402_300_799_999;

/// The label of a protobuf enum value: its name without the enum's prefix, lower
/// case (`ENCOUNTER_CLASS_DAY_CASE` -> `day_case`); empty for `*_UNSPECIFIED`.
pub fn enum_label(str_name: &str, prefix: &str) -> String {
    let label = str_name
        .strip_prefix(prefix)
        .unwrap_or(str_name)
        .trim_start_matches('_');
    if label == "UNSPECIFIED" {
        String::new()
    } else {
        label.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_labels_drop_the_prefix_and_unspecified() {
        assert_eq!(enum_label("ENCOUNTER_CLASS_DAY_CASE", "ENCOUNTER_CLASS"), "day_case");
        assert_eq!(enum_label("BED_STATE_UNSPECIFIED", "BED_STATE"), "");
    }
}
