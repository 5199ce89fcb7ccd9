//! Clinical scores as pure code, shared by the platform (live NEWS2 alerts) and the ML
//! sidecar (NEWS2 features and the NEWS2 baseline), so both score a chart alike, and
//! the rule naming an ICU.

pub mod care_unit;
pub mod news2;
