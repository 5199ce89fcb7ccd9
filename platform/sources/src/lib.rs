//! Source parsers: turn what hospital systems send into typed, located values.
//!
//! Each module owns one source format and nothing downstream of it: no network, and file
//! reading only where a format is a directory of files (`synthea::Export`, `mimic::Export`). Mapping to
//! the canonical `ClinicalEvent` is a pure function beside the parser; validation and
//! storage stay in the platform, which every source goes through.
//! Parsers never panic on input; every failure is a typed error that says where in the
//! input it happened.
//!
//! - [`balance`]: where every input record went (mapped, not mapped, skipped,
//!   superseded), the same for every source.
//! - [`hl7v2`]: HL7 v2.x messages (2.3 to 2.8), batch and file envelopes, mapping, ACKs.
//! - [`fhir`]: FHIR R4 bundles and bulk-export NDJSON, references resolved across files.
//! - [`synthea`]: a Synthea CSV export, read by header name.
//! - [`mimic`]: the MIMIC-III (demo) tables, ITEMIDs mapped to LOINC, each patient's
//!   dates shifted back by whole weeks so that they lie in the past.

pub mod balance;
pub mod fhir;
pub mod fuzzing;
pub mod hl7v2;
pub mod mimic;
pub mod reference;
pub mod synthea;
pub mod table;
