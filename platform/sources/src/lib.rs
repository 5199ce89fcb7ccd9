//! Source parsers: turn what hospital systems send into typed, located values.
//!
//! Each module owns one wire format and nothing downstream of it: no I/O, no network.
//! Mapping to the canonical `ClinicalEvent` is a pure function beside the parser
//! (`hl7v2::map`); validation and storage stay in the platform.
//! Parsers never panic on input; every failure is a typed error that says where in the
//! input it happened.
//!
//! - [`hl7v2`]: HL7 v2.x messages (2.3 to 2.8), batch and file envelopes, ACKs.

pub mod hl7v2;
