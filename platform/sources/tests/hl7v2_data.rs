//! The HL7 v2 parser over real, openly licensed messages (shared/data/hl7v2):
//! 139 FHIR-Converter samples (LF line endings, some with a UTF-8 BOM) and the 21
//! python-hl7 samples (CR line endings, batches, files, and six deliberately bad ones).
//!
//! The data sits beside the repository checkout (`../shared/data`); set
//! `HOSPITAL_SHARED_DATA` to the `shared/data` directory to use another copy. A missing
//! directory fails the tests: they must not pass by testing nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hospital_sources::hl7v2::{
    ack_at, parse_file, parse_file_with, AckCode, ErrorKind, Message, ParseError, ParseOptions,
};
use time::macros::{datetime, offset};

fn data_dir() -> PathBuf {
    let base = hospital_testkit::shared_data("");
    let dir = base.join("hl7v2");
    assert!(
        dir.is_dir(),
        "HL7 v2 test data not found at {}. Check out the shared data beside the repository \
         (shared/data/hl7v2) or set HOSPITAL_SHARED_DATA to the shared/data directory.",
        dir.display()
    );
    dir
}

/// Every `*.hl7` file of one set, by file name.
fn files(set: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = data_dir().join(set).join("messages");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "hl7") {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            out.insert(name, std::fs::read(&path).expect("readable file"));
        }
    }
    out
}

fn only_message(name: &str, bytes: &[u8]) -> Message {
    let mut items = parse_file(bytes);
    assert_eq!(items.len(), 1, "{name}: expected one message, got {items:?}");
    items.remove(0).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// MSH facts read the naive way (split the first line on `|`), to check the parser
/// against an independent reading.
fn naive_msh(bytes: &[u8]) -> (String, String, String, String, usize) {
    let text = std::str::from_utf8(bytes).expect("FHIR-Converter samples are UTF-8");
    let text = text.trim_start_matches('\u{feff}');
    let first = text.lines().next().expect("a first line");
    let f: Vec<&str> = first.split('|').collect();
    let comp = |i: usize, c: usize| f.get(i).and_then(|v| v.split('^').nth(c)).unwrap_or("").to_owned();
    let segments = text.split(['\r', '\n']).filter(|l| !l.is_empty()).count();
    (comp(8, 0), comp(8, 1), comp(9, 0), comp(11, 0), segments)
}

#[test]
fn fhir_converter_every_message_parses() {
    let files = files("microsoft_FHIR-Converter");
    assert_eq!(files.len(), 139, "FHIR-Converter sample count");
    let mut versions = BTreeMap::<String, usize>::new();
    let mut with_bom = 0;
    for (name, bytes) in &files {
        let m = only_message(name, bytes);
        let (ty, trigger, control, version, segments) = naive_msh(bytes);
        assert_eq!(m.message_type(), ty, "{name}");
        assert_eq!(m.trigger_event().unwrap_or(""), trigger, "{name}");
        assert_eq!(m.control_id(), control, "{name}");
        assert_eq!(m.version(), version, "{name}");
        assert_eq!(m.all_segments().count(), segments, "{name}");
        assert!(m.timestamp().is_some(), "{name}: MSH-7 present in every sample");
        *versions.entry(m.version().to_owned()).or_default() += 1;
        with_bom += usize::from(bytes.starts_with(b"\xEF\xBB\xBF"));
    }
    assert_eq!(with_bom, 27);
    let versions: Vec<(&str, usize)> = versions.iter().map(|(v, n)| (v.as_str(), *n)).collect();
    assert_eq!(
        versions,
        [
            ("2.3", 6),
            ("2.3.1", 3),
            ("2.4", 1),
            ("2.5", 2),
            ("2.5.1", 7),
            ("2.6", 8),
            ("2.8", 112)
        ]
    );
}

#[test]
fn fhir_converter_spot_checks() {
    let files = files("microsoft_FHIR-Converter");
    let get = |name: &str| only_message(name, &files[name]);

    let m = get("ADT-A01-01.hl7");
    assert_eq!(
        (m.message_type(), m.trigger_event(), m.message_structure()),
        ("ADT", Some("A01"), Some("ADT_A01"))
    );
    assert_eq!(m.control_id(), "MSG00001");
    assert_eq!(m.sending_application(), Some("ADTApp"));
    assert_eq!(m.sending_facility(), Some("GHHSFacility^2.16.840.1.122848.1.30^ISO"));
    assert_eq!(m.get("MSH-4-2").as_deref(), Some("2.16.840.1.122848.1.30"));
    assert_eq!(m.timestamp().unwrap().utc, datetime!(1989-08-18 09:11 UTC)); // 11:26 at +02:15
    assert_eq!(m.get("PID-5-1").as_deref(), Some("EVERYMAN"));
    assert_eq!(m.get("PID-5-1-5").as_deref(), Some("Aniston"));
    assert_eq!(m.get("PID-5-2").as_deref(), Some("ADAM"));
    assert_eq!(m.get("PID-5(2)-1").as_deref(), Some("Josh"));
    assert_eq!(m.get("PID-3(2)-1").as_deref(), Some("123456789"));
    assert_eq!(m.get("PID-3(2)-4").as_deref(), Some("USSSA"));
    assert_eq!(m.get("OBX-3-1").as_deref(), Some("8867-4"));
    assert_eq!(m.get("OBX-5").as_deref(), Some("60"));
    assert_eq!(m.get("OBX-5(2)").as_deref(), Some("120"));
    assert_eq!(
        m.get("PV1-14").as_deref(),
        Some("NHS Provider-General (inc.A&E-this Hosp)")
    );
    assert_eq!(m.raw("PV1-14"), Some("NHS Provider-General (inc.A\\T\\E-this Hosp)"));
    assert_eq!(m.all_segments().count(), 24);
    assert_eq!(m.segment("OBX").unwrap().line(), 14);

    let m = get("ORU-R01-01.hl7");
    assert_eq!((m.message_type(), m.trigger_event()), ("ORU", Some("R01")));
    assert_eq!(m.control_id(), "2.16.840.1.114222.4.3.3.5.1.2-20120314235954.325");
    assert_eq!(m.get("PID-5-1").as_deref(), Some("Finn"));
    let obx: Vec<_> = m.segments("OBX").collect();
    assert_eq!(obx.len(), 5);
    assert_eq!(obx[2].get("5-2").as_deref(), Some("Salmonella"));
    assert_eq!(obx[4].get("5(2)").as_deref(), Some("25"));

    let m = get("LRI_2.0-NG_CBC_Typ_Message.hl7");
    assert_eq!(m.version(), "2.5.1");
    assert_eq!(m.get("PID-5").as_deref(), Some("Jones"));
    assert_eq!(m.get("OBX(2)-3-1").as_deref(), Some("718-7"));
    assert_eq!(m.get("OBX(2)-5").as_deref(), Some("12.5"));
    assert_eq!(m.timestamp().unwrap().utc, datetime!(2011-05-31 19:05:51 UTC)); // -0500

    let m = get("VXU.hl7");
    assert_eq!(m.timestamp().unwrap().utc, datetime!(2015-06-24 13:47:27.655 UTC));
    assert_eq!(m.get("PID-5-2").as_deref(), Some("Elise"));

    // No offset in MSH-7: UTC unless a default is configured.
    let m = get("LAB-ORM-1.hl7");
    assert_eq!(m.timestamp().unwrap().utc, datetime!(2014-10-06 09:31 UTC));
    assert_eq!(m.timestamp().unwrap().offset, None);
    let local = parse_file_with(
        &files["LAB-ORM-1.hl7"],
        ParseOptions {
            default_offset: offset!(-7),
        },
    );
    assert_eq!(
        local[0].as_ref().unwrap().timestamp().unwrap().utc,
        datetime!(2014-10-06 16:31 UTC)
    );
    assert_eq!(m.get("PID-5").as_deref(), Some("DUCK"));

    // UTF-8 BOM, 2.3: no message structure in MSH-9.
    let m = get("ADT01-23.hl7");
    assert_eq!(
        (m.message_type(), m.trigger_event(), m.message_structure()),
        ("ADT", Some("A01"), None)
    );
    assert_eq!((m.control_id(), m.version()), ("599102", "2.3"));

    // File names are not a reliable source of the type.
    assert_eq!(get("OML-O21-02.hl7").trigger_event(), Some("O01"));
    assert_eq!(get("SIU_12.hl7").message_type(), "ADT");
}

/// (file, messages parsed, errors in order)
type Expected = (&'static str, usize, &'static [&'static str]);

const PYTHON_HL7: &[Expected] = &[
    ("rep_sample_hl7.hl7", 1, &[]),
    ("sample_hl7.hl7", 1, &[]),
    ("sample_msh.hl7", 1, &[]),
    ("sample_batch.hl7", 1, &[]),
    ("sample_batch1.hl7", 2, &[]),
    ("sample_batch2.hl7", 2, &[]),
    ("sample_batch3.hl7", 1, &[]),
    ("sample_batch4.hl7", 1, &[]),
    ("sample_file.hl7", 1, &[]),
    ("sample_file1.hl7", 3, &[]),
    ("sample_file2.hl7", 2, &[]),
    ("sample_file3.hl7", 1, &[]),
    ("sample_file4.hl7", 1, &[]),
    ("sample_file5.hl7", 1, &[]),
    ("sample_file6.hl7", 1, &[]),
    // BHS then segments with no MSH; BTS|1 counts a message that is not there.
    (
        "sample_bad_batch.hl7",
        0,
        &["line 2: NoMsh EVN x5", "line 7: BTS declared 1 actual 0"],
    ),
    // A second BHS inside the batch cuts message 0; the rest has no MSH.
    (
        "sample_bad_batch1.hl7",
        0,
        &["message 0 line 4: unexpected BHS", "line 5: NoMsh PID x4"],
    ),
    (
        "sample_bad_file.hl7",
        0,
        &["line 3: NoMsh EVN x5", "line 8: BTS declared 1 actual 0"],
    ),
    (
        "sample_bad_file1.hl7",
        0,
        &["message 0 line 5: unexpected BHS", "line 6: NoMsh PID x4"],
    ),
    (
        "sample_bad_file2.hl7",
        0,
        &["message 0 line 5: unexpected FHS", "line 6: NoMsh PID x4"],
    ),
    (
        "sample_bad_file3.hl7",
        0,
        &["line 2: NoMsh EVN x5", "line 7: FTS declared 1 actual 0"],
    ),
];

fn describe(e: &ParseError) -> String {
    let l = &e.location();
    let at = match l.message {
        Some(m) => format!("message {m} line {}", l.line.unwrap_or(0)),
        None => format!("line {}", l.line.unwrap_or(0)),
    };
    let what = match e.kind() {
        ErrorKind::NoMsh { first, count } => format!("NoMsh {first} x{count}"),
        ErrorKind::TrailerCountMismatch {
            trailer,
            declared,
            actual,
            ..
        } => {
            format!("{trailer} declared {declared} actual {actual}")
        }
        ErrorKind::UnexpectedSegment { segment, .. } => format!("unexpected {segment}"),
        other => format!("{other:?}"),
    };
    format!("{at}: {what}")
}

#[test]
fn python_hl7_batches_files_and_bad_input() {
    let files = files("python-hl7");
    assert_eq!(files.len(), 21, "python-hl7 sample count");
    assert_eq!(PYTHON_HL7.len(), 21);
    let mut total = 0;
    for (name, messages, errors) in PYTHON_HL7 {
        let bytes = files.get(*name).unwrap_or_else(|| panic!("missing {name}"));
        let items = parse_file(bytes);
        let ok: Vec<&Message> = items.iter().filter_map(|r| r.as_ref().ok()).collect();
        let errs: Vec<String> = items.iter().filter_map(|r| r.as_ref().err()).map(describe).collect();
        assert_eq!(ok.len(), *messages, "{name}: {errs:?}");
        assert_eq!(errs, *errors, "{name}");
        for m in ok {
            assert!(matches!(m.message_type(), "ADT" | "ORU"), "{name}");
        }
        total += messages;
    }
    assert_eq!(total, 20);
}

#[test]
fn python_hl7_spot_checks() {
    let files = files("python-hl7");

    let m = only_message("sample_hl7", &files["sample_hl7.hl7"]);
    assert_eq!(
        (m.message_type(), m.trigger_event(), m.control_id()),
        ("ORU", Some("R01"), "CNTRL-3456")
    );
    assert_eq!(m.version(), "2.4");
    assert_eq!(m.timestamp().unwrap().utc, datetime!(2002-02-15 09:30 UTC));
    assert_eq!(m.get("PID-5-1").as_deref(), Some("EVERYWOMAN"));
    assert_eq!(m.get("OBX-5-2").as_deref(), Some("182"));
    assert_eq!(m.get("OBX-6").as_deref(), Some("mg/dl"));
    assert_eq!(m.get("OBX(2)-2").as_deref(), Some("FN"));
    assert_eq!(m.get("OBX(2)-3-1").as_deref(), Some("1553-5"));
    // PID-7 "196203520" is not a date (9 digits): reported with its place when read.
    let e = m.get_dtm("PID-7").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::BadDate { ref value, .. } if value == "196203520"));
    assert_eq!(
        (e.location().line, e.location().segment.as_deref(), e.location().field),
        (Some(2), Some("PID"), Some(7))
    );

    let m = only_message("rep_sample_hl7", &files["rep_sample_hl7.hl7"]);
    assert_eq!(m.get("PID-1").as_deref(), Some("Field1"));
    assert_eq!(m.get("PID-2-2").as_deref(), Some("Component2"));
    assert_eq!(m.get("PID-3-2-2").as_deref(), Some("Sub-Component2"));
    assert_eq!(m.get("PID-4(2)").as_deref(), Some("Repeat2"));

    let m = only_message("sample_msh", &files["sample_msh.hl7"]);
    assert_eq!(
        (m.message_type(), m.trigger_event(), m.control_id()),
        ("ADT", Some("A01"), "Q150084616T145947960")
    );
    assert_eq!(m.get("PID-5-1").as_deref(), Some("RUFUSS"));
    assert_eq!(m.get("PID-4(3)-1").as_deref(), Some("Q2147670"));
    assert_eq!(m.segments("IN1").count(), 3);
    assert_eq!(m.get("PID-7").as_deref(), Some("19521129"));

    let items = parse_file(&files["sample_file1.hl7"]);
    let ids: Vec<&str> = items.iter().map(|r| r.as_ref().unwrap().control_id()).collect();
    assert_eq!(ids, ["12334456778890", "12334456778891", "12334456778890"]);
    let third = items[2].as_ref().unwrap();
    assert_eq!(third.get("PID-5").as_deref(), Some("XXXXXXXXXX"));
    assert_eq!(third.segment("MSH").unwrap().line(), 17);
}

#[test]
fn acks_answer_real_messages() {
    let files = files("python-hl7");
    let m = only_message("sample_msh", &files["sample_msh.hl7"]);
    let reply = ack_at(
        &m,
        AckCode::AE,
        "ACK0001",
        Some("IN1-3 unknown"),
        datetime!(2024-01-02 03:04:05 UTC),
    );
    assert_eq!(
        reply,
        "MSH|^~\\&|AIG||HNAM_PM|HNA500|20240102030405+0000||ACK^A01|ACK0001|P|2.3\r\
         MSA|AE|Q150084616T145947960|IN1-3 unknown\r\
         ERR|^^^207&IN1-3 unknown&HL70357\r"
    );
}

/// Cheap deterministic fuzzing over real messages: flip, drop and insert bytes, and check
/// nothing panics and every error has a location.
#[test]
fn mutated_real_messages_never_panic() {
    let mut inputs: Vec<Vec<u8>> = files("python-hl7").into_values().collect();
    inputs.extend(files("microsoft_FHIR-Converter").into_values().take(40));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = b"|^~\\&\r\nMSHBTSFTS0123456789+-.X\xC3\xFF";
    let paths = [
        "MSH-1",
        "MSH-2",
        "MSH-9-2",
        "PID-3(2)-1",
        "PID-5-1-2",
        "OBX(2)-5",
        "EVN-2",
        "ZZZ-1",
    ];
    for input in &inputs {
        for _ in 0..60 {
            let mut bytes = input.clone();
            for _ in 0..(1 + next() % 6) {
                let len = bytes.len().max(1);
                let at = usize::try_from(next()).unwrap_or(0) % len;
                let pick = interesting[usize::try_from(next()).unwrap_or(0) % interesting.len()];
                match next() % 3 {
                    0 if at < bytes.len() => bytes[at] = pick,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at.min(bytes.len()), pick),
                }
            }
            for item in parse_file(&bytes) {
                match item {
                    Ok(m) => {
                        for p in paths {
                            let _ = m.get(p);
                            let _ = m.raw(p);
                            let _ = m.get_dtm(p);
                        }
                        let _ = ack_at(&m, AckCode::AR, "X", Some("t"), datetime!(2024-01-01 0:00 UTC));
                    }
                    Err(e) => {
                        assert!(
                            *e.location() != Default::default() || *e.kind() == ErrorKind::Empty,
                            "{e:?}"
                        );
                        let _ = e.to_string();
                    }
                }
            }
        }
    }
}
