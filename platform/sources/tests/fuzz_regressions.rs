//! The fuzz targets' bodies (`hospital_sources::fuzzing`) on stable: every hand-made seed
//! and every saved regression under `platform/sources/fuzz/`, plus one named test per
//! bug the fuzzer found, so CI keeps them fixed without cargo-fuzz or nightly.

use std::path::{Path, PathBuf};

use hospital_sources::fuzzing;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 3] = [
    ("hl7v2_parse", fuzzing::hl7v2_parse),
    ("fhir_bundle", fuzzing::fhir_bundle),
    ("fhir_ndjson", fuzzing::fhir_ndjson),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(body: Body, path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    body(&bytes);
}

#[test]
fn seeds_and_regressions_replay() {
    for (target, body) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(
            !seeds.is_empty(),
            "no hand-made seeds for {target}: the replay would test nothing"
        );
        for path in seeds.iter().chain(&files(&fuzz_dir().join("regressions").join(target))) {
            replay(body, path);
        }
    }
}

#[test]
fn bodies_take_empty_and_tiny_inputs() {
    for (_, body) in TARGETS {
        for input in [
            &b""[..],
            b"\n",
            b"\xEF\xBB\xBF",
            b"FHS",
            b"MSH",
            b"MSH|^~\\&",
            b"{}",
            b"[]",
            b"\"",
            b"\xFF",
        ] {
            body(input);
        }
    }
}

/// Inputs that used to take time quadratic in their size (found by timing, outside the
/// fuzzer): 64,000 PID-3 repetitions took 17 s, thousands of OBR/OBX groups seconds per
/// MB. Now each segment and repetition is read once. The mapping must still be right:
/// the MR identifier is found among many repetitions, and every group keeps its own
/// time. (No time limit here: a slow regression shows in the fuzzer's -timeout.)
#[test]
fn many_repetitions_and_groups_map_right() {
    use hospital_proto::events::clinical_event::Payload;
    use hospital_sources::hl7v2::{map, parse_message};

    let mut adt = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A28|1|P|2.5\rEVN|A28|20240101\rPID|1||".to_vec();
    adt.extend(b"~".repeat(64_000));
    adt.extend(b"123^^^HOSP^MR\rPV1|1|I\r");
    fuzzing::hl7v2_parse(&adt);
    let msg = parse_message(&adt).expect("parses");
    let events = map::to_events(&msg, &map::MapOptions::default()).expect("maps");
    let patient = events[0].patient.as_ref().expect("patient");
    assert_eq!(
        (patient.mrn.as_str(), patient.assigning_authority.as_str()),
        ("123", "HOSP")
    );

    let mut oru =
        b"MSH|^~\\&|LAB|H|C|D|20240101||ORU^R01|2|P|2.5\rPID|1||9^^^H^MR\rPV1|1|I|||||||||||||||||V1\r".to_vec();
    for i in 0..2_000 {
        oru.extend(format!("OBR|{i}||L{i}|2345-7^Glucose^LN|||2024010{}0800\r", 1 + i % 9).bytes());
        oru.extend(format!("OBX|1|NM|2345-7^Glucose^LN||{}|mg/dL|||||F\r", 90 + i % 50).bytes());
    }
    fuzzing::hl7v2_parse(&oru);
    let msg = parse_message(&oru).expect("parses");
    let events = map::to_events(&msg, &map::MapOptions::default()).expect("maps");
    assert_eq!(events.len(), 2_000);
    let days: std::collections::BTreeSet<i64> = events
        .iter()
        .filter(|e| matches!(e.payload, Some(Payload::LabResult(_))))
        .map(|e| e.occurred_at.as_ref().unwrap().seconds / 86_400)
        .collect();
    assert_eq!(days.len(), 9, "each OBR's own OBR-7");
}
