//! Fuzz bodies: what each target in `platform/sources/fuzz` runs on one input.
//!
//! They live here, not in the fuzz crate, so that `tests/fuzz_regressions.rs` replays
//! saved inputs through exactly the same code on the stable toolchain, without
//! cargo-fuzz. Each body takes arbitrary bytes, returns nothing and must not panic: a
//! panic is a bug in a parser or mapper (or a broken invariant asserted below), never a
//! property of the input. Parses nothing itself and holds no state.

use std::hint::black_box;

use time::macros::datetime;
use time::OffsetDateTime;

use crate::fhir::{FhirOptions, Mapped, Mapper};
use crate::hl7v2::{self, map, AckCode, Message};

/// A fixed clock for ACKs, so that a replayed input runs the same code every time.
const ACK_AT: OffsetDateTime = datetime!(2024-03-01 12:34:56 UTC);
/// Every default delimiter, the 2.7 truncation character and line breaks: an ACK must
/// escape them whatever delimiters the original declared.
const ACK_ID: &str = "A|1^2~3\\4&5#6";
const ERROR_TEXT: &str = "bad | input ^ ~ \\ & # \r\n next line";

/// HL7 v2: [`hl7v2::parse_file`]; for each message that parsed, [`map::to_events`], a
/// re-encode that must read back the same, and an ACK of every code that must parse and
/// answer it. When the whole input is one valid frame ([`hl7v2::parse_message`]),
/// `parse_file` must find that same message.
pub fn hl7v2_parse(data: &[u8]) {
    // No assertion on the count: an input of only envelope segments ("FHS") has no
    // message and no error, so it yields no item.
    let items = hl7v2::parse_file(data);
    for item in &items {
        match item {
            Ok(msg) => message(msg),
            Err(e) => {
                black_box(e.to_string());
            }
        }
    }
    if let Ok(single) = hl7v2::parse_message(data) {
        match items.as_slice() {
            [Ok(m)] => assert_eq!(m.to_hl7_string(), single.to_hl7_string()),
            _ => panic!("parse_message accepted an input that parse_file made {items:?} of"),
        }
    }
}

fn message(msg: &Message) {
    black_box((
        msg.message_structure(),
        msg.version_number(),
        msg.sending_application(),
        msg.processing_id(),
    ));
    for seg in msg.all_segments() {
        black_box(seg.field_count());
    }
    match map::to_events(msg, &map::MapOptions::default()) {
        Ok(events) => assert!(!events.is_empty(), "to_events succeeded with no event"),
        Err(e) => {
            black_box((e.to_string(), e.field()));
        }
    }

    let text = msg.to_hl7_string();
    let again = hl7v2::parse_message(text.as_bytes())
        .unwrap_or_else(|e| panic!("the re-encoded message does not parse: {e}\n{text:?}"));
    assert_eq!(again.to_hl7_string(), text);
    assert_eq!(again.timestamp(), msg.timestamp());

    for (code, error_text) in [
        (AckCode::AA, None),
        (AckCode::AE, Some(ERROR_TEXT)),
        (AckCode::AR, Some(ERROR_TEXT)),
    ] {
        let ack = hl7v2::ack_at(msg, code, ACK_ID, error_text, ACK_AT);
        let parsed =
            hl7v2::parse_message(ack.as_bytes()).unwrap_or_else(|e| panic!("the ACK does not parse: {e}\n{ack:?}"));
        assert_eq!(parsed.raw("MSA-2"), msg.raw("MSH-10"), "{ack:?}");
        assert_eq!(parsed.get("MSH-10").as_deref(), Some(ACK_ID), "{ack:?}");
    }
}

/// FHIR R4 Bundle: [`Mapper::add_bundle`] then [`Mapper::finish`]. A refused bundle
/// must leave the mapper empty.
pub fn fhir_bundle(data: &[u8]) {
    let mut mapper = Mapper::new(FhirOptions::default());
    match mapper.add_bundle("fuzz.json", data) {
        Ok(()) => summary_matches(&mapper.finish()),
        Err(e) => {
            black_box(e.to_string());
            assert_eq!(
                mapper.finish(),
                Mapped::default(),
                "a refused bundle left something behind"
            );
        }
    }
}

/// FHIR R4 bulk-export NDJSON: [`Mapper::add_ndjson`] then [`Mapper::finish`].
pub fn fhir_ndjson(data: &[u8]) {
    let mut mapper = Mapper::new(FhirOptions::default());
    mapper.add_ndjson("fuzz.ndjson", data);
    summary_matches(&mapper.finish());
}

/// The summary counts every event the mapping made, by kind and by resource type.
fn summary_matches(out: &Mapped) {
    let by_kind: usize = out.summary.by_event.values().sum();
    let by_type: usize = out.summary.by_type.values().map(|c| c.events).sum();
    assert_eq!((by_kind, by_type), (out.events.len(), out.events.len()));
    for e in &out.summary.errors {
        black_box(e.to_string());
    }
}
