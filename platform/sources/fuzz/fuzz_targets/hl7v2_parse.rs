//! HL7 v2 file bytes -> parse_file, mapping, re-encode and ACKs of every message.
//! The body is `hospital_sources::fuzzing::hl7v2_parse`, shared with the stable regression test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hospital_sources::fuzzing::hl7v2_parse(data));
