//! Helpers of the HL7 v2 mapping tests: the shared samples, mapping with the default
//! options, and Microsoft FHIR-Converter's expected output for the same files.

#![allow(dead_code)]

use std::path::PathBuf;

use hospital_proto::events::ClinicalEvent;
use hospital_sources::hl7v2::map::{to_events, MapError, MapOptions};
use hospital_sources::hl7v2::{parse_file, parse_message, Message};
use prost_types::Timestamp;
use serde_json::Value;
use time::OffsetDateTime;

/// `shared/data/hl7v2`.
pub fn hl7_dir() -> PathBuf {
    hospital_testkit::shared_data("hl7v2")
}

/// The one message of a sample file, `path` relative to [`hl7_dir`].
pub fn sample(path: &str) -> Message {
    let path = hl7_dir().join(path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("HL7 v2 sample {}: {e}", path.display()));
    let mut items = parse_file(&bytes);
    assert_eq!(items.len(), 1, "{}", path.display());
    items.remove(0).expect("the sample parses")
}

/// A FHIR-Converter sample message by file name.
pub fn converter(name: &str) -> Message {
    sample(&format!("microsoft_FHIR-Converter/messages/{name}"))
}

/// The resources of FHIR-Converter's expected output `name`.
pub fn expected_fhir(name: &str) -> Vec<Value> {
    let path = hl7_dir().join("microsoft_FHIR-Converter/expected_fhir_r4").join(name);
    let bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

pub fn map(m: &Message) -> Result<Vec<ClinicalEvent>, MapError> {
    to_events(m, &MapOptions::default())
}

pub fn map_text(text: &str) -> Result<Vec<ClinicalEvent>, MapError> {
    map(&parse_message(text.as_bytes()).expect("the hand-written message parses"))
}

pub fn err(text: &str) -> MapError {
    map_text(text).expect_err("the message must not map")
}

pub fn ts(t: OffsetDateTime) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    })
}

/// An RFC 3339 instant of the expected FHIR output.
pub fn instant(v: &Value) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    ts(t)
}
