//! Text results (OBX value types ST, TX, FT, CE, CWE, CNE) of the shared HL7 v2 samples
//! become lab results with a text value (and a coded value's code and system), next to
//! the numeric ones of the same message; messages that cannot be mapped name the HL7
//! table 0357 error that fits.

mod common;

use common::*;
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::LabResult;
use hospital_sources::hl7v2::map::MapError;
use hospital_sources::hl7v2::{ack_with_at, parse_message, AckCode, ErrorCode};
use time::macros::datetime;

const TEXT_TYPES: [&str; 6] = ["ST", "TX", "FT", "CE", "CWE", "CNE"];

fn labs(name: &str) -> Vec<LabResult> {
    map(&converter(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::LabResult(l)) => Some(l),
            _ => None,
        })
        .collect()
}

/// OBX segments of a file with a text value type and a value, read from the raw text.
fn text_obx_in_file(path: &std::path::Path) -> usize {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    text.split(['\r', '\n'])
        .filter(|l| l.starts_with("OBX|"))
        .filter(|l| {
            let f: Vec<&str> = l.split('|').collect();
            f.get(2).is_some_and(|t| TEXT_TYPES.contains(t)) && f.get(5).is_some_and(|v| !v.is_empty())
        })
        .count()
}

#[test]
fn every_text_result_of_the_samples_is_mapped() {
    let dir = hl7_dir().join("microsoft_FHIR-Converter/messages");
    let mut in_files = 0;
    let mut mapped = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = converter(&name);
        if (m.message_type(), m.trigger_event()) != ("ORU", Some("R01")) {
            continue;
        }
        in_files += text_obx_in_file(&path);
        mapped += labs(&name).iter().filter(|l| l.value.is_none()).count();
    }
    // The NIST CBC's 6 CWE and 3 TX results, and ORU-R01-01's CWE organism.
    assert_eq!(in_files, 10);
    assert_eq!(mapped, in_files);
}

#[test]
fn a_mixed_message_keeps_numeric_and_text_results() {
    let l = labs("LRI_2.0-NG_CBC_Typ_Message.hl7");
    let numeric = l.iter().filter(|l| l.value.is_some()).count();
    let text: Vec<&LabResult> = l.iter().filter(|l| l.value.is_none()).collect();
    assert_eq!((numeric, text.len()), (19, 9));
    assert!(text.iter().all(|l| !l.value_text.is_empty()));
    // OBX|20|CWE|38892-6^Anisocytosis...||260348001^Present ++ out of ++++^SCT^^^^^^Moderate Anisocytosis|||A
    let aniso = text.iter().find(|l| l.loinc_code == "38892-6").unwrap();
    assert_eq!(
        (
            aniso.value_text.as_str(),
            aniso.value_code.as_str(),
            aniso.value_code_system.as_str()
        ),
        ("Moderate Anisocytosis", "260348001", "SCT")
    );
    // OBX|26|TX|6742-1^Erythrocyte morphology finding...||Many spherocytes present.|||A
    let morphology = text.iter().find(|l| l.loinc_code == "6742-1").unwrap();
    assert_eq!(
        (morphology.value_text.as_str(), morphology.value_code.as_str()),
        ("Many spherocytes present.", "")
    );
    let not_detected = text.iter().filter(|l| l.value_code == "260415000").count();
    assert_eq!(not_detected, 5);
}

#[test]
fn a_coded_organism_matches_the_fhir_converter() {
    let l = labs("ORU-R01-01.hl7");
    assert_eq!(l.len(), 1, "the CWE organism; RP, ED and a repeated NM make no result");
    let expected = expected_fhir("ORU_R01__ORU-R01-01-expected.json");
    let concept = expected
        .iter()
        .find_map(|r| {
            (r["resourceType"] == "Observation" && r["valueCodeableConcept"].is_object())
                .then(|| r["valueCodeableConcept"].clone())
        })
        .expect("the converter's coded Observation");
    assert_eq!(l[0].value_text, concept["text"].as_str().unwrap());
    assert_eq!(l[0].value_code, concept["coding"][0]["code"].as_str().unwrap());
    assert_eq!(concept["coding"][0]["system"], "http://snomed.info/sct");
    assert_eq!(l[0].value_code_system, "SCT");
}

#[test]
fn unmappable_messages_name_the_table_0357_error() {
    let code = |name: &str| map(&converter(name)).expect_err(name).error_code();
    // PV1-2 "P" is not in table 0004's encounter classes.
    assert_eq!(code("ADT-A01-01.hl7"), ErrorCode::TableValueNotFound);
    assert_eq!(code("ADT01-28.hl7"), ErrorCode::RequiredFieldMissing);
    assert_eq!(code("SIU-S12-01.hl7"), ErrorCode::UnsupportedMessageType);
    assert_eq!(code("ADT-A05-01.hl7"), ErrorCode::UnsupportedEventCode);
    let missing_segment = err("MSH|^~\\&|A|F|B|G|20240301||ADT^A03|C1|P|2.5\rEVN|A03|20240301\rPID|1||M1^^^H^MR\r");
    assert_eq!(missing_segment.field(), Some("PV1"));
    assert_eq!(missing_segment.error_code(), ErrorCode::SegmentSequence);
    let bad_time = err(
        "MSH|^~\\&|A|F|B|G|20240301||ORU^R01|C2|P|2.5\rPID|1||M1^^^H^MR\rOBX|1|ST|1-8^x^LN||note||||||F|||2024-13\r",
    );
    assert!(matches!(bad_time, MapError::Invalid { .. }), "{bad_time}");
    assert_eq!(bad_time.error_code(), ErrorCode::DataType);

    // The ACK carries the code in ERR-3.
    let original = converter("ADT01-28.hl7");
    let e = map(&original).unwrap_err();
    let ack = ack_with_at(
        &original,
        AckCode::AE,
        "A1",
        Some((e.error_code(), &e.to_string())),
        datetime!(2024-01-01 0:00 UTC),
    );
    let ack = parse_message(ack.as_bytes()).unwrap();
    let err3 = if original.version_number().is_none_or(|v| v >= (2, 5)) {
        ack.get("ERR-3-1")
    } else {
        ack.get("ERR-1-4-1")
    };
    assert_eq!(err3.as_deref(), Some("101"));
}
