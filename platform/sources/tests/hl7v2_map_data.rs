//! HL7 v2 -> ClinicalEvent mapping over the real FHIR-Converter samples
//! (shared/data/hl7v2/microsoft_FHIR-Converter): how many of each type map, spot checks
//! of mapped values against the files, and the errors of the rest.

use std::collections::BTreeMap;

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{AbnormalFlag, AdministrativeSex, ClinicalEvent, EncounterClass};
use hospital_sources::hl7v2::map::{to_events, MapError, MapOptions};
use hospital_sources::hl7v2::{parse_file, Message};
use prost_types::Timestamp;
use time::macros::datetime;

fn messages() -> BTreeMap<String, Message> {
    let base = hospital_testkit::shared_data("");
    let dir = base.join("hl7v2/microsoft_FHIR-Converter/messages");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "HL7 v2 test data not found at {} ({e}). Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
            dir.display()
        )
    });
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "hl7") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut items = parse_file(&std::fs::read(&path).unwrap());
            assert_eq!(items.len(), 1, "{name}");
            out.insert(name, items.remove(0).expect("every sample parses"));
        }
    }
    out
}

fn map(m: &Message) -> Result<Vec<ClinicalEvent>, MapError> {
    to_events(m, &MapOptions::default())
}

fn ts(t: time::OffsetDateTime) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    })
}

#[test]
fn counts_by_message_type() {
    let messages = messages();
    assert_eq!(messages.len(), 139);
    // "TYPE^TRIGGER" -> (messages mapped, events made, messages refused for missing data)
    let mut by_type = BTreeMap::<String, (usize, usize, usize)>::new();
    let mut kinds = BTreeMap::<&'static str, usize>::new();
    let mut unsupported = 0;
    for m in messages.values() {
        let key = format!("{}^{}", m.message_type(), m.trigger_event().unwrap_or_default());
        match map(m) {
            Ok(events) => {
                let entry = by_type.entry(key).or_default();
                entry.0 += 1;
                entry.1 += events.len();
                for e in &events {
                    let kind = match e.payload.as_ref().unwrap() {
                        Payload::Admission(_) => "admission",
                        Payload::Transfer(_) => "transfer",
                        Payload::Discharge(_) => "discharge",
                        Payload::PatientRegistered(_) => "patient_registered",
                        Payload::PatientUpdated(_) => "patient_updated",
                        Payload::LabResult(_) => "lab_result",
                        Payload::VitalSigns(_) => "vital_signs",
                        Payload::MedicationOrder(_) => "medication_order",
                        Payload::MedicationDispense(_) => "medication_dispense",
                        Payload::Diagnosis(_) => "diagnosis",
                        Payload::Procedure(_) => "procedure",
                        other => panic!("unexpected payload {other:?}"),
                    };
                    *kinds.entry(kind).or_default() += 1;
                }
            }
            Err(MapError::Unsupported { .. }) => unsupported += 1,
            Err(_) => by_type.entry(key).or_default().2 += 1,
        }
    }
    let want: BTreeMap<String, (usize, usize, usize)> = [
        // ADT-A01-01/02 and MDM_01 have PV1-2 = P (preadmit); ADT01-28 has no PV1-19.
        // ADT01-23: the admission and its one DG1.
        ("ADT^A01", (1, 2, 4)),
        ("ADT^A02", (2, 2, 0)),
        // The -01 samples of A03, A08, A28 and A31 carry one DG1 and one PR1 each.
        ("ADT^A03", (2, 4, 0)),
        // Registration + admission each; ADT-A04-01/02 PV1-2 = P, ADT04-251 no PV1-19.
        ("ADT^A04", (2, 4, 3)),
        ("ADT^A08", (2, 4, 0)),
        ("ADT^A28", (2, 4, 0)),
        ("ADT^A31", (2, 4, 0)),
        // LAB-ORU-1 (8 numeric OBX), LAB-ORU-2 (10), the NIST CBC (19 numeric, 6 CWE and
        // 3 TX text results), RMGEAD (1 SN); ORU-R01-01 (its one CWE result, Salmonella:
        // hl7v2_text_results checks the text results).
        ("ORU^R01", (5, 48, 0)),
        // One order per ORC/RXE group: the -01 samples have one, the -02 samples two.
        ("RDE^O11", (2, 3, 0)),
        ("RDE^O25", (2, 3, 0)),
        // One dispense per RXD: RDS-O13-01 has one, RDS-O13-02 two.
        ("RDS^O13", (2, 3, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_type, want);
    assert_eq!(unsupported, 139 - 23 - 8);
    let want_kinds: BTreeMap<&str, usize> = [
        ("admission", 3),
        ("transfer", 2),
        ("discharge", 2),
        ("patient_registered", 4),
        ("patient_updated", 4),
        ("lab_result", 48),
        ("medication_order", 6),
        ("medication_dispense", 3),
        // DG1 of ADT01-23 and of ADT-A03/A08/A28/A31-01; PR1 of the last four. The other
        // DG1/PR1 of the set ride in messages not taken (A05, BAR, DFT, ORM, REF, SIU, ...)
        // or refused (ADT-A01-01, ADT-A04-01: PV1-2 = P).
        ("diagnosis", 5),
        ("procedure", 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, want_kinds);
}

#[test]
fn spot_checks_against_the_files() {
    let messages = messages();
    let get = |name: &str| map(&messages[name]).unwrap_or_else(|e| panic!("{name}: {e}"));

    // ADT01-23: EVN-2 20050110045502+0700, PID-3 10006579^^^1^MR^1,
    // PV1|1|I|PREOP^101^1^1^^^S|3|||37^DISNEY^WALT^^^^^^AccMgr^^^^CI|||01|...|40007716^^^AccMgr^VN
    let e = get("ADT01-23.hl7");
    // The admission, then its DG1 (hl7v2_diagnoses checks the diagnosis).
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].event_id.as_str(), e[0].source_system.as_str()),
        ("1|599102", "AccMgr")
    );
    assert_eq!(e[0].occurred_at, ts(datetime!(2005-01-10 04:55:02 +07:00)));
    let p = e[0].patient.as_ref().unwrap();
    assert_eq!((p.mrn.as_str(), p.assigning_authority.as_str()), ("10006579", "1"));
    let Some(Payload::Admission(a)) = &e[0].payload else {
        panic!("{e:?}")
    };
    assert_eq!(a.encounter_id, "40007716");
    assert_eq!(a.encounter_class, EncounterClass::Inpatient as i32);
    let l = a.location.as_ref().unwrap();
    assert_eq!(
        (l.department_code.as_str(), l.ward_code.as_str(), l.bed_code.as_str()),
        ("01", "PREOP", "101-1")
    );

    // ADT-A02-01: the MR repetition of PID-3 (PATID1234, authority test1), PV1-6 prior
    // location 4 East..^136^B, PV1-3 HUH AE OMU^OMU B^Bed 03, PV1-10 SUR.
    let e = get("ADT-A02-01.hl7");
    assert_eq!(e[0].event_id, "GHHSFacility|MSG00001");
    let p = e[0].patient.as_ref().unwrap();
    assert_eq!((p.mrn.as_str(), p.assigning_authority.as_str()), ("PATID1234", "test1"));
    assert_eq!(e[0].occurred_at, ts(datetime!(2029-08-01 07:06:24 +01:15)));
    let Some(Payload::Transfer(t)) = &e[0].payload else {
        panic!("{e:?}")
    };
    assert_eq!(t.encounter_id, "40007716");
    let (from, to) = (t.from.as_ref().unwrap(), t.to.as_ref().unwrap());
    assert_eq!(
        (from.ward_code.as_str(), from.bed_code.as_str()),
        ("4 East, room 136, bed B 4E", "136-B")
    );
    assert_eq!(
        (to.department_code.as_str(), to.ward_code.as_str(), to.bed_code.as_str()),
        ("SUR", "HUH AE OMU", "OMU B-Bed 03")
    );

    // ADT04-23: two events from one message, registration first.
    let e = get("ADT04-23.hl7");
    let ids: Vec<_> = e.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "NINTENDO|Q123456789T123456789X123456-1",
            "NINTENDO|Q123456789T123456789X123456-2"
        ]
    );
    let Some(Payload::PatientRegistered(d)) = &e[0].payload else {
        panic!("{e:?}")
    };
    assert_eq!((d.family_name.as_str(), d.given_name.as_str()), ("BROS", "MARIO"));
    assert_eq!(d.sex, AdministrativeSex::Male as i32);
    let Some(Payload::Admission(a)) = &e[1].payload else {
        panic!("{e:?}")
    };
    assert_eq!(
        (a.encounter_id.as_str(), a.encounter_class),
        ("0123456789", EncounterClass::Outpatient as i32)
    );

    // ADT-A08-01: PID-5 EVERYMAN^ADAM, PID-7 198808181126+0215 (the date as sent),
    // PID-8 M, PID-11 zip 99999, PID-29/30 died 20080825111630+0115.
    let e = get("ADT-A08-01.hl7");
    let Some(Payload::PatientUpdated(d)) = &e[0].payload else {
        panic!("{e:?}")
    };
    assert_eq!((d.family_name.as_str(), d.given_name.as_str()), ("EVERYMAN", "ADAM"));
    let b = d.birth_date.as_ref().unwrap();
    assert_eq!((b.year, b.month, b.day), (1988, 8, 18));
    assert_eq!(d.postal_code, "99999");
    assert_eq!(d.deceased_at, ts(datetime!(2008-08-25 11:16:30 +01:15)));

    // LAB-ORU-1: OBX|4|NM|20570-8^HEMATOCRIT^LN||40.1|%||N|||P|||20141006083000+0700,
    // under OBR-3 82503246; empty OBX-5 (leukocytes, hemoglobin) make no event.
    let e = get("LAB-ORU-1.hl7");
    assert_eq!(e.len(), 8);
    let hct = e
        .iter()
        .find(|e| matches!(&e.payload, Some(Payload::LabResult(l)) if l.loinc_code == "20570-8"))
        .unwrap();
    assert_eq!(hct.event_id, "SomeSystem|182-2");
    assert_eq!(hct.occurred_at, ts(datetime!(2014-10-06 08:30:00 +07:00)));
    let Some(Payload::LabResult(l)) = &hct.payload else {
        unreachable!()
    };
    assert_eq!(
        (l.value, l.unit.as_str(), l.order_id.as_str()),
        (Some(40.1), "%", "82503246")
    );
    assert_eq!(l.abnormal_flag, AbnormalFlag::Normal as i32);

    // ORU-R01-RMGEAD: OBX|1|SN|1554-5^GLUCOSE^POST 12H CFST...||^182|mg/dl|70_105|H, no
    // LOINC coding system, so no loinc_code (ingest decides); OBR-7 20020215073000+0600.
    let e = get("ORU-R01-RMGEAD.hl7");
    let Some(Payload::LabResult(l)) = &e[0].payload else {
        panic!("{e:?}")
    };
    assert_eq!(
        (l.loinc_code.as_str(), l.display.as_str(), l.value),
        ("", "GLUCOSE", Some(182.0))
    );
    assert_eq!(l.abnormal_flag, AbnormalFlag::High as i32);
    assert_eq!(l.specimen_collected_at, ts(datetime!(2002-02-15 07:30:00 +06:00)));
    assert_eq!(e[0].occurred_at, l.specimen_collected_at);
}

#[test]
fn errors_of_the_rest_name_the_field() {
    let messages = messages();
    let err = |name: &str| map(&messages[name]).expect_err(name).to_string();
    assert_eq!(
        err("ADT-A01-01.hl7"),
        "PV1-2 (patient class) \"P\" is not an encounter class (I, B, E, O, R)"
    );
    assert_eq!(err("ADT01-28.hl7"), "PV1-19 (visit number) is empty");
    assert_eq!(err("ADT04-251.hl7"), "PV1-19 (visit number) is empty");
    // ORU-R01-01 maps now: its CWE result is a text result (hl7v2_text_results).
    assert!(matches!(
        map(&messages["SIU-S12-01.hl7"]),
        Err(MapError::Unsupported { ref message_type }) if message_type == "SIU^S12"
    ));
    assert!(matches!(
        map(&messages["VXU-V04-01.hl7"]),
        Err(MapError::Unsupported { .. })
    ));
    // A05 (pre-admit) is ADT but not taken.
    assert!(matches!(
        map(&messages["ADT-A05-01.hl7"]),
        Err(MapError::Unsupported { .. })
    ));
}

/// Mapping is deterministic: a resent message makes the same event ids.
#[test]
fn same_message_same_events() {
    for (name, m) in messages() {
        if let Ok(a) = map(&m) {
            assert_eq!(a, map(&m).unwrap(), "{name}");
        }
    }
}
