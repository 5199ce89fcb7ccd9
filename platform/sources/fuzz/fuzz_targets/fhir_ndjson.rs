//! FHIR R4 bulk-export NDJSON bytes -> Mapper::add_ndjson + finish.
//! The body is `hospital_sources::fuzzing::fhir_ndjson`, shared with the stable regression test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hospital_sources::fuzzing::fhir_ndjson(data));
