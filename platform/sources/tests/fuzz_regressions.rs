//! The fuzz targets' bodies (`hospital_sources::fuzzing`) on stable: every hand-made seed
//! and every saved regression under `platform/sources/fuzz/`, plus one named test per
//! bug the fuzzer found, so CI keeps them fixed without cargo-fuzz or nightly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hospital_sources::fuzzing;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 3] = [
    ("hl7v2_parse", fuzzing::hl7v2_parse),
    ("fhir_bundle", fuzzing::fhir_bundle),
    ("fhir_ndjson", fuzzing::fhir_ndjson),
];

/// libFuzzer runs with `-timeout=10`; an input that takes a second here (a debug build,
/// inputs of a few KB) is a performance bug.
const SLOW: Duration = Duration::from_secs(1);

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
    let start = Instant::now();
    body(&bytes);
    let took = start.elapsed();
    assert!(took < SLOW, "{} took {took:?}", path.display());
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
