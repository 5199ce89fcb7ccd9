//! HL7 v2 DG1 and PR1 -> `Diagnosis` and `ProcedurePerformed`: every sample of the shared
//! set that maps and carries them (FHIR-Converter and python-hl7) with the values read
//! from the files, a cross-check against Microsoft's expected FHIR output for the same
//! files, hand-written messages for the rules the samples do not exercise, and bad input
//! that must fail the whole message naming the HL7 field.

mod common;

use common::*;
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{ClinicalEvent, CodeSystem, Diagnosis, DiagnosisRole, ProcedurePerformed};
use serde_json::Value;
use time::macros::datetime;

fn diagnosis(e: &ClinicalEvent) -> &Diagnosis {
    match &e.payload {
        Some(Payload::Diagnosis(d)) => d,
        other => panic!("not a diagnosis: {other:?}"),
    }
}

fn procedure(e: &ClinicalEvent) -> &ProcedurePerformed {
    match &e.payload {
        Some(Payload::Procedure(p)) => p,
        other => panic!("not a procedure: {other:?}"),
    }
}

fn is_coded(e: &ClinicalEvent) -> bool {
    matches!(e.payload, Some(Payload::Diagnosis(_) | Payload::Procedure(_)))
}

fn ids(events: &[ClinicalEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

/// The GHH samples (ADT-A03-01, -A08-01, -A28-01, -A31-01) share one DG1 and one PR1:
/// DG1|1|I9|422504002^Ischemic stroke(disorder)^SCT|Stroke|20040125114025+0420|A|...|1|
///   005454^DIAG^ROBIN^B|||20200501133015+0215|DI20^...|A|...
/// PR1|1||76164006^Biopsy of colon (procedure)^SCT|Biopsy of colon, ...|200501251140+0100|
///   D^Diagnostic Procedure^HL70230|2|1210^ANES^MARK^B|||121188^Patrick^Harold^...|
///   12345689^Everyman2^...|||799008^Sigmoid colon ulcer^SCT||||PR1006||||OT^201||PR1001
#[test]
fn ghh_samples_map_their_dg1_and_pr1_after_the_adt_event() {
    for (name, first) in [
        ("ADT-A03-01.hl7", "discharge"),
        ("ADT-A08-01.hl7", "patient_updated"),
        ("ADT-A28-01.hl7", "patient_registered"),
        ("ADT-A31-01.hl7", "patient_updated"),
    ] {
        let e = map(&converter(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The ADT event keeps the bare id it had before DG1/PR1 were mapped.
        assert_eq!(
            ids(&e),
            [
                "GHHSFacility|MSG00001",
                "GHHSFacility|MSG00001-2",
                "GHHSFacility|MSG00001-3"
            ],
            "{name}"
        );
        assert_eq!(e[0].payload.as_ref().unwrap().kind(), first, "{name}");
        assert_eq!(e[1].patient, e[0].patient, "{name}");

        // CWE.3 SCT wins over the deprecated DG1-2 I9; CWE.2 over DG1-4 ("Stroke").
        let d = diagnosis(&e[1]);
        assert_eq!(
            (d.code.as_str(), d.code_system, d.display.as_str()),
            ("422504002", CodeSystem::SnomedCt as i32, "Ischemic stroke(disorder)"),
            "{name}"
        );
        assert_eq!(d.encounter_id, "40007716", "{name}");
        // DG1-6 A, DG1-15 1.
        assert_eq!((d.role, d.rank), (DiagnosisRole::Admitting as i32, 1), "{name}");
        assert_eq!(e[1].occurred_at, ts(datetime!(2004-01-25 11:40:25 +04:20)), "{name}");
        assert_eq!(d.recorded_at, ts(datetime!(2020-05-01 13:30:15 +02:15)), "{name}");
        assert_eq!((d.clinical_status, d.abated_at), (0, None), "{name}");

        let p = procedure(&e[2]);
        assert_eq!(
            (p.code.as_str(), p.code_system, p.display.as_str()),
            ("76164006", CodeSystem::SnomedCt as i32, "Biopsy of colon (procedure)"),
            "{name}"
        );
        assert_eq!(e[2].occurred_at, ts(datetime!(2005-01-25 11:40 +01:00)), "{name}");
        // PR1-7: two minutes.
        assert_eq!(p.ended_at, ts(datetime!(2005-01-25 11:42 +01:00)), "{name}");
        // PR1-11 surgeon; PR1-14 empty.
        assert_eq!(
            (p.performer.as_str(), p.rank, p.encounter_id.as_str()),
            ("121188", 0, "40007716"),
            "{name}"
        );
    }
}

#[test]
fn older_samples_map_their_dg1() {
    // ADT01-23 (2.3): DG1|1|I9|71596^OSTEOARTHROS NOS-L/LEG ^I9|OSTEOARTHROS NOS-L/LEG ||A|
    // no DG1-5, DG1-15 or DG1-19: the event time (EVN-2 20050110045502+0700), unranked.
    let e = map(&converter("ADT01-23.hl7")).unwrap();
    assert_eq!(ids(&e), ["1|599102", "1|599102-2"]);
    let d = diagnosis(&e[1]);
    assert_eq!(
        (d.code.as_str(), d.code_system, d.display.as_str()),
        ("71596", CodeSystem::Icd9Cm as i32, "OSTEOARTHROS NOS-L/LEG")
    );
    assert_eq!(
        (d.encounter_id.as_str(), d.role, d.rank, d.recorded_at),
        ("40007716", DiagnosisRole::Admitting as i32, 0, None)
    );
    assert_eq!(e[1].occurred_at, ts(datetime!(2005-01-10 04:55:02 +07:00)));
    assert_eq!(e[1].occurred_at, e[0].occurred_at);

    // python-hl7 sample_msh (2.3, no EVN): DG1|0001|I9|440.21^ATHEROSCLEROSIS W/INT
    // CLAUDCTN^I9|...|""|A|||||||.00||9 -- DG1-5 is HL7's explicit null, so MSH-7.
    let e = map(&sample("python-hl7/messages/sample_msh.hl7")).unwrap();
    assert_eq!(
        ids(&e),
        ["HNA500|Q150084616T145947960", "HNA500|Q150084616T145947960-2"]
    );
    let d = diagnosis(&e[1]);
    assert_eq!(
        (d.code.as_str(), d.code_system, d.display.as_str()),
        ("440.21", CodeSystem::Icd9Cm as i32, "ATHEROSCLEROSIS W/INT CLAUDCTN")
    );
    assert_eq!(
        (d.encounter_id.as_str(), d.role, d.rank),
        ("01", DiagnosisRole::Admitting as i32, 9)
    );
    assert_eq!(e[1].occurred_at, ts(datetime!(2013-10-17 14:00:41 UTC)));
}

/// Across every sample that maps, the events that are not diagnoses or procedures have
/// the ids the rule gave them before DG1/PR1 were mapped: bare when alone, else `-<n>`.
#[test]
fn ids_of_the_other_events_do_not_shift() {
    let dir = hl7_dir().join("microsoft_FHIR-Converter/messages");
    let mut coded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Ok(events) = map(&sample(&format!(
            "microsoft_FHIR-Converter/messages/{}",
            path.file_name().unwrap().to_string_lossy()
        ))) else {
            continue;
        };
        let (dx_px, others): (Vec<_>, Vec<_>) = events.iter().partition(|e| is_coded(e));
        let first = others[0].event_id.as_str();
        let base = if others.len() == 1 {
            first
        } else {
            first.strip_suffix("-1").unwrap()
        };
        for (i, e) in others.iter().enumerate() {
            let want = if others.len() == 1 {
                base.to_owned()
            } else {
                format!("{base}-{}", i + 1)
            };
            assert_eq!(e.event_id, want, "{}", path.display());
        }
        // Diagnoses and procedures come after them and number on.
        for (i, e) in dx_px.iter().enumerate() {
            assert_eq!(e.event_id, format!("{base}-{}", others.len() + i + 1));
        }
        assert!(events.iter().skip(others.len()).all(is_coded));
        coded += dx_px.len();
    }
    assert_eq!(coded, 9);
}

/// The same code, name, times, role, rank and surgeon as Microsoft's FHIR-Converter reads
/// from the same files: its Condition from DG1 (onsetDateTime = DG1-5, assertedDate =
/// DG1-19, Encounter.diagnosis use AD = DG1-6 A, rank = DG1-15) and its Procedure from PR1
/// (performedDateTime = PR1-5, the Surgeon performer = PR1-11). The converter does not
/// read PR1-7, so it has no end to compare.
#[test]
fn values_agree_with_the_fhir_converter() {
    for (expected, name) in [
        ("ADT_A03__ADT-A03-01-expected.json", "ADT-A03-01.hl7"),
        ("ADT_A08__ADT-A08-01-expected.json", "ADT-A08-01.hl7"),
    ] {
        let resources = expected_fhir(expected);
        let e = map(&converter(name)).unwrap();
        let (dx, px) = (&e[1], &e[2]);
        let (d, p) = (diagnosis(dx), procedure(px));

        let condition = resources
            .iter()
            .find(|r| r["resourceType"] == "Condition" && r["code"]["coding"][0]["system"] == "http://snomed.info/sct")
            .unwrap();
        let coding = &condition["code"]["coding"][0];
        assert_eq!(
            (&coding["code"], &coding["display"]),
            (&Value::from(d.code.as_str()), &Value::from(d.display.as_str())),
            "{name}"
        );
        assert_eq!(instant(&condition["onsetDateTime"]), dx.occurred_at, "{name}");
        let asserted = condition["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["url"] == "http://hl7.org/fhir/StructureDefinition/condition-assertedDate")
            .unwrap();
        assert_eq!(instant(&asserted["valueDateTime"]), d.recorded_at, "{name}");
        let encounter = resources.iter().find(|r| r["resourceType"] == "Encounter").unwrap();
        let listed = &encounter["diagnosis"][0];
        assert_eq!(
            listed["condition"]["reference"],
            format!("Condition/{}", condition["id"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(listed["use"]["coding"][0]["code"], "AD", "{name}");
        assert_eq!(d.role, DiagnosisRole::Admitting as i32, "{name}");
        assert_eq!(listed["rank"].as_u64(), Some(u64::from(d.rank)), "{name}");
        assert_eq!(encounter["identifier"][0]["value"], d.encounter_id.as_str(), "{name}");

        let fhir = resources
            .iter()
            .find(|r| r["resourceType"] == "Procedure" && r["code"]["coding"][0]["system"] == "http://snomed.info/sct")
            .unwrap();
        let coding = &fhir["code"]["coding"][0];
        assert_eq!(
            (&coding["code"], &coding["display"]),
            (&Value::from(p.code.as_str()), &Value::from(p.display.as_str())),
            "{name}"
        );
        assert_eq!(instant(&fhir["performedDateTime"]), px.occurred_at, "{name}");
        let surgeon = fhir["performer"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["function"]["text"] == "Surgeon")
            .unwrap();
        let practitioner_id = surgeon["actor"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("Practitioner/");
        let practitioner = resources.iter().find(|r| r["id"] == practitioner_id).unwrap();
        assert_eq!(practitioner["identifier"][0]["value"], p.performer.as_str(), "{name}");
    }
}

const MSH: &str = "MSH|^~\\&|WARD|NORTH|HIS|SOUTH|20240301123000||";
const PATIENT: &str = "EVN|A01|20240301120000\rPID|1||M1^^^HOSP^MR||DOE^JANE||19800102|F\r";
const PV1: &str = "PV1|1|I|W1^R2^B3||||D7|||MED|||||||||V55\r";

/// A segment with the given (field number, value) pairs, the others empty.
fn seg(id: &str, fields: &[(usize, &str)]) -> String {
    let n = fields.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut values = vec![""; n];
    for (i, v) in fields {
        values[i - 1] = v;
    }
    format!("{id}|{}\r", values.join("|"))
}

fn adt(trigger: &str, control_id: &str, body: &str) -> String {
    format!("{MSH}ADT^{trigger}|{control_id}|P|2.5\r{PATIENT}{body}")
}

fn a01(segments: &[String]) -> String {
    adt("A01", "C1", &format!("{PV1}{}", segments.concat()))
}

#[test]
fn diagnosis_role_rank_and_system_rules() {
    let text = a01(&[
        seg("DG1", &[(1, "1"), (3, "J18.9^Pneumonia^I10C"), (6, "F"), (15, "1")]),
        seg(
            "DG1",
            &[(1, "2"), (3, "E11.9^Type 2 diabetes^i10"), (6, "F"), (15, "2")],
        ),
        seg("DG1", &[(1, "3"), (3, "R07.9^Chest pain^ICD10CM"), (6, "W")]),
        seg("DG1", &[(1, "4"), (3, "233604007^Pneumonia^SNM"), (6, "a"), (15, "0")]),
        seg(
            "DG1",
            &[
                (1, "5"),
                (3, "V1582"),
                (2, "I9"),
                (4, "History of tobacco use"),
                (6, "F"),
            ],
        ),
        seg("DG1", &[(1, "6"), (3, "CP-1^Chest pain, local"), (6, "X")]),
        seg(
            "DG1",
            &[
                (1, "7"),
                (3, "L-88^Angina^99LOC^I20.9^Angina pectoris, unspecified^I10"),
            ],
        ),
        seg("DG1", &[(1, "8"), (3, "XX1^Flu^FOO^J11.1^Influenza^I10")]),
        seg("DG1", &[(1, "9"), (3, "T-1^Fever^99LOC"), (4, "Fever")]),
    ]);
    let e = map_text(&text).unwrap();
    assert_eq!(
        ids(&e),
        [
            "NORTH|C1",
            "NORTH|C1-2",
            "NORTH|C1-3",
            "NORTH|C1-4",
            "NORTH|C1-5",
            "NORTH|C1-6",
            "NORTH|C1-7",
            "NORTH|C1-8",
            "NORTH|C1-9",
            "NORTH|C1-10"
        ]
    );
    let got: Vec<(&str, i32, &str, i32, u32)> = e[1..]
        .iter()
        .map(|e| {
            let d = diagnosis(e);
            (d.code.as_str(), d.code_system, d.display.as_str(), d.role, d.rank)
        })
        .collect();
    use CodeSystem as S;
    use DiagnosisRole as R;
    assert_eq!(
        got,
        [
            // F with priority 1: principal; F otherwise: secondary.
            ("J18.9", S::Icd10Cm as i32, "Pneumonia", R::Principal as i32, 1),
            // I10 is WHO ICD-10 (table 0396), in any case.
            ("E11.9", S::Icd10 as i32, "Type 2 diabetes", R::Secondary as i32, 2),
            ("R07.9", S::Icd10Cm as i32, "Chest pain", R::Working as i32, 0),
            ("233604007", S::SnomedCt as i32, "Pneumonia", R::Admitting as i32, 0),
            // No CWE.3: the coding method DG1-2; no CWE.2: DG1-4. No priority: unranked.
            (
                "V1582",
                S::Icd9Cm as i32,
                "History of tobacco use",
                R::Secondary as i32,
                0
            ),
            // No system at all: the sender's own code. DG1-6 not A, W or F: no role said.
            ("CP-1", S::Local as i32, "Chest pain, local", R::Encounter as i32, 0),
            // A local or unknown primary gives way to a known alternate.
            (
                "I20.9",
                S::Icd10 as i32,
                "Angina pectoris, unspecified",
                R::Encounter as i32,
                0
            ),
            ("J11.1", S::Icd10 as i32, "Influenza", R::Encounter as i32, 0),
            ("T-1", S::Local as i32, "Fever", R::Encounter as i32, 0),
        ]
    );
    assert!(e[1..].iter().all(|e| diagnosis(e).encounter_id == "V55"));
}

#[test]
fn diagnosis_times() {
    let text = a01(&[
        // DG1-5 and a later DG1-19: onset and recorded.
        seg(
            "DG1",
            &[
                (1, "1"),
                (3, "J18.9^^I10"),
                (5, "20240301080000+0100"),
                (6, "A"),
                (19, "20240301090000+0100"),
            ],
        ),
        // No DG1-5: DG1-19 for both.
        seg(
            "DG1",
            &[(1, "2"), (3, "J18.9^^I10"), (6, "A"), (19, "20240301090000+0100")],
        ),
        // DG1-19 before DG1-5 cannot be this diagnosis's record: left out.
        seg(
            "DG1",
            &[
                (1, "3"),
                (3, "J18.9^^I10"),
                (5, "20240301080000+0100"),
                (6, "A"),
                (19, "20200501133015"),
            ],
        ),
        // Neither: the ADT event's time (EVN-2), nothing recorded.
        seg("DG1", &[(1, "4"), (3, "J18.9^^I10"), (5, "\"\""), (6, "A")]),
    ]);
    let e = map_text(&text).unwrap();
    let got: Vec<_> = e[1..]
        .iter()
        .map(|e| (e.occurred_at, diagnosis(e).recorded_at))
        .collect();
    let (eight, nine) = (
        ts(datetime!(2024-03-01 08:00 +01:00)),
        ts(datetime!(2024-03-01 09:00 +01:00)),
    );
    assert_eq!(
        got,
        [
            (eight, nine),
            (nine, nine),
            (eight, None),
            (ts(datetime!(2024-03-01 12:00 UTC)), None)
        ]
    );
}

#[test]
fn procedure_rules() {
    let text = adt(
        "A03",
        "C2",
        &[
            PV1.to_owned(),
            seg("DG1", &[(1, "1"), (3, "J18.9^Pneumonia^I10"), (6, "F"), (15, "1")]),
            seg(
                "PR1",
                &[
                    (1, "1"),
                    (3, "44950^Appendectomy^C4"),
                    (5, "20240301100000+0100"),
                    (7, "90"),
                    (11, "S1^Cutter^Sam"),
                    (14, "1"),
                ],
            ),
            seg(
                "PR1",
                &[
                    (1, "2"),
                    (3, "0DTJ4ZZ^Resection of appendix^I10P"),
                    (5, "20240301100000+0100"),
                    (7, "1.5"),
                    (12, "P2^Helper"),
                    (14, "2"),
                ],
            ),
            seg("PR1", &[(1, "3"), (3, "G0008^Flu shot^HCPCS"), (5, "20240301")]),
            seg(
                "PR1",
                &[
                    (1, "4"),
                    (3, "4701^^I9CP"),
                    (4, "Laparoscopic appendectomy"),
                    (5, "20240301"),
                ],
            ),
            seg("PR1", &[(1, "5"), (3, "99213^Visit^CPT"), (5, "20240301"), (20, "D")]),
            seg(
                "PR1",
                &[(1, "6"), (3, "80146002^Appendectomy^SCT"), (5, "20240301"), (20, "A")],
            ),
        ]
        .concat(),
    );
    let e = map_text(&text).unwrap();
    // The discharge, one diagnosis, five procedures (the deleted PR1 makes none).
    assert_eq!(e.len(), 7);
    assert_eq!(e[0].payload.as_ref().unwrap().kind(), "discharge");
    assert_eq!(ids(&e)[6], "NORTH|C2-7");
    let got: Vec<(&str, i32, &str, u32, &str)> = e[2..]
        .iter()
        .map(|e| {
            let p = procedure(e);
            (
                p.code.as_str(),
                p.code_system,
                p.display.as_str(),
                p.rank,
                p.performer.as_str(),
            )
        })
        .collect();
    use CodeSystem as S;
    assert_eq!(
        got,
        [
            ("44950", S::Cpt as i32, "Appendectomy", 1, "S1"),
            // No surgeon: the procedure practitioner (PR1-12).
            ("0DTJ4ZZ", S::Icd10Pcs as i32, "Resection of appendix", 2, "P2"),
            ("G0008", S::Hcpcs as i32, "Flu shot", 0, ""),
            ("4701", S::Icd9Cm as i32, "Laparoscopic appendectomy", 0, ""),
            ("80146002", S::SnomedCt as i32, "Appendectomy", 0, ""),
        ]
    );
    assert_eq!(e[2].occurred_at, ts(datetime!(2024-03-01 10:00 +01:00)));
    assert_eq!(procedure(&e[2]).ended_at, ts(datetime!(2024-03-01 11:30 +01:00)));
    assert_eq!(procedure(&e[3]).ended_at, ts(datetime!(2024-03-01 10:01:30 +01:00)));
    assert_eq!(
        (e[4].occurred_at, procedure(&e[4]).ended_at),
        (ts(datetime!(2024-03-01 00:00 UTC)), None)
    );
    assert!(e[2..].iter().all(|e| procedure(e).encounter_id == "V55"));

    // A procedure needs no encounter (A28: person information, no visit); a deleted DG1
    // makes no event and so needs none either.
    let text = adt(
        "A28",
        "C3",
        &[
            seg("DG1", &[(1, "1"), (3, "J18.9^Pneumonia^I10"), (6, "F"), (21, "D")]),
            seg("PR1", &[(1, "1"), (3, "80146002^Appendectomy^SCT"), (5, "20100301")]),
        ]
        .concat(),
    );
    let e = map_text(&text).unwrap();
    assert_eq!(ids(&e), ["NORTH|C3", "NORTH|C3-2"]);
    assert_eq!(procedure(&e[1]).encounter_id, "");
}

/// Several ADT events, then the diagnoses: an A04 (registration + admission) keeps its
/// `-1`/`-2` and the DG1 is `-3`.
#[test]
fn ids_number_on_after_several_adt_events() {
    let text = adt(
        "A04",
        "C4",
        &format!("{PV1}{}", seg("DG1", &[(1, "1"), (3, "J18.9^Pneumonia^I10"), (6, "A")])),
    );
    let e = map_text(&text).unwrap();
    assert_eq!(ids(&e), ["NORTH|C4-1", "NORTH|C4-2", "NORTH|C4-3"]);
    assert_eq!(
        [
            e[0].payload.as_ref().unwrap().kind(),
            e[1].payload.as_ref().unwrap().kind()
        ],
        ["patient_registered", "admission"]
    );
    assert_eq!(e[2].occurred_at, e[1].occurred_at);
}

/// One bad DG1 or PR1 fails the whole message (AE naming the field): AA means all of it is
/// staged, so nothing of it is mapped.
#[test]
fn bad_diagnoses_and_procedures_fail_the_message_naming_the_field() {
    let dg1 = |fields: &[(usize, &str)]| err(&a01(&[seg("DG1", fields)]));

    // No DG1-3 code (only its text).
    let e = dg1(&[(1, "1"), (3, "^Pneumonia^I10"), (4, "Pneumonia"), (6, "F")]);
    assert_eq!(e.to_string(), "DG1-3 (diagnosis code) is empty");
    assert_eq!(e.field(), Some("DG1-3"));
    let e = dg1(&[(1, "1"), (6, "F")]);
    assert_eq!(e.field(), Some("DG1-3"));

    // A coding system the platform does not take, in CWE.3 or in the coding method.
    let e = dg1(&[(1, "1"), (3, "J18.9^Pneumonia^ICD11"), (6, "F")]);
    assert_eq!(e.field(), Some("DG1-3"));
    assert_eq!(
        e.to_string(),
        "DG1-3 (diagnosis code) is coded in \"ICD11\", which is not a coding system the platform takes \
         (I10, I10C, ICD10, ICD10CM, I9, I9C, I9CDX, SCT, SNM; L or 99zzz for local codes)"
    );
    let e = dg1(&[(1, "1"), (2, "ZZ"), (3, "J18.9^Pneumonia"), (6, "F")]);
    assert_eq!(e.field(), Some("DG1-2"));
    // A procedure system for a diagnosis.
    let e = dg1(&[(1, "1"), (3, "99213^Office visit^C4"), (6, "F")]);
    assert_eq!(
        e.to_string(),
        "DG1-3 (diagnosis code) is coded in \"C4\", a system of procedure codes, not of diagnosis codes"
    );

    // Dates and priorities that are not.
    let e = dg1(&[(1, "1"), (3, "J18.9^^I10"), (5, "2024030"), (6, "F")]);
    assert_eq!(e.field(), Some("DG1-5"));
    assert!(
        e.to_string()
            .starts_with("DG1-5 (diagnosis date/time) is not a date/time"),
        "{e}"
    );
    let e = dg1(&[(1, "1"), (3, "J18.9^^I10"), (5, "20240231"), (6, "F")]);
    assert_eq!(e.field(), Some("DG1-5"));
    let e = dg1(&[(1, "1"), (3, "J18.9^^I10"), (6, "F"), (19, "yesterday")]);
    assert_eq!(e.field(), Some("DG1-19"));
    let e = dg1(&[(1, "1"), (3, "J18.9^^I10"), (6, "F"), (15, "first")]);
    assert_eq!(
        e.to_string(),
        "DG1-15 (diagnosis priority) \"first\" is not a priority (0 not ranked, 1 first, 2 and on)"
    );
    assert_eq!(dg1(&[(1, "1"), (3, "J18.9^^I10"), (15, "-1")]).field(), Some("DG1-15"));

    // A diagnosis belongs to an encounter: no PV1-19, no diagnosis (and no message).
    let no_visit = adt(
        "A08",
        "C5",
        &format!("PV1|1|I\r{}", seg("DG1", &[(1, "1"), (3, "J18.9^^I10"), (6, "F")])),
    );
    assert_eq!(err(&no_visit).to_string(), "PV1-19 (visit number) is empty");

    let pr1 = |fields: &[(usize, &str)]| err(&a01(&[seg("PR1", fields)]));
    let e = pr1(&[(1, "1"), (4, "Appendectomy"), (5, "20240301")]);
    assert_eq!(e.to_string(), "PR1-3 (procedure code) is empty");
    // When it was done is the fact itself: no PR1-5, no procedure.
    let e = pr1(&[(1, "1"), (3, "44950^Appendectomy^C4")]);
    assert_eq!(e.to_string(), "PR1-5 (procedure date/time) is empty");
    assert_eq!(
        pr1(&[(1, "1"), (3, "44950^^C4"), (5, "2024-03-01")]).field(),
        Some("PR1-5")
    );
    assert_eq!(
        pr1(&[(1, "1"), (3, "44950^^C4"), (5, "20240301"), (7, "an hour")]).to_string(),
        "PR1-7 (procedure minutes) \"an hour\" is not a number of minutes"
    );
    assert_eq!(
        pr1(&[(1, "1"), (3, "44950^^C4"), (5, "20240301"), (7, "-5")]).field(),
        Some("PR1-7")
    );
    assert_eq!(
        pr1(&[(1, "1"), (3, "44950^^C4"), (5, "20240301"), (14, "P")]).field(),
        Some("PR1-14")
    );
    // A diagnosis system for a procedure, and one the platform does not know.
    let e = pr1(&[(1, "1"), (3, "J18.9^^I10"), (5, "20240301")]);
    assert!(
        e.to_string()
            .contains("a system of diagnosis codes, not of procedure codes"),
        "{e}"
    );
    let e = pr1(&[(1, "1"), (3, "W37.1^Hip^OPCS4"), (5, "20240301")]);
    assert_eq!(e.field(), Some("PR1-3"));
    assert!(
        e.to_string().contains("C4, CPT, HCPCS, I10P, I9, I9C, I9CP, SCT, SNM"),
        "{e}"
    );

    // The good segments around a bad one do not make the message.
    let e = err(&a01(&[
        seg("DG1", &[(1, "1"), (3, "J18.9^^I10"), (6, "F")]),
        seg("DG1", &[(1, "2"), (3, "^no code"), (6, "F")]),
    ]));
    assert_eq!(e.field(), Some("DG1-3"));
}
