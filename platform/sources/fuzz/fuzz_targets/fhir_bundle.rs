//! FHIR R4 Bundle bytes -> Mapper::add_bundle + finish.
//! The body is `hospital_sources::fuzzing::fhir_bundle`, shared with the stable regression test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hospital_sources::fuzzing::fhir_bundle(data));
