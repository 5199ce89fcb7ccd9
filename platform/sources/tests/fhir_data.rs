//! FHIR R4 -> ClinicalEvent mapping over the real Synthea v2.4 bundles
//! (shared/data/synthea_fhir_r4/bundles): per bundle, the resources are counted here with
//! serde_json and the mapping summary must match; spot checks of mapped values against
//! the files (patients, encounters, vital signs, conditions, procedures); a truncated
//! bundle and an NDJSON export with a corrupt line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{
    AdministrativeSex, ClinicalEvent, CodeSystem, ConditionStatus, DiagnosisRole, EncounterClass,
};
use hospital_sources::fhir::{map_bundle, map_ndjson, FhirError, FhirOptions, Mapped};
use prost_types::Timestamp;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn bundle_dir() -> PathBuf {
    let base = hospital_testkit::shared_data("");
    base.join("synthea_fhir_r4/bundles")
}

/// File name -> bytes of every bundle.
fn bundles() -> BTreeMap<String, Vec<u8>> {
    let dir = bundle_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "FHIR test data not found at {} ({e}). Check out shared/data beside the repository or set HOSPITAL_SHARED_DATA.",
            dir.display()
        )
    });
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read(&path).unwrap());
        }
    }
    assert_eq!(
        out.len(),
        7,
        "5 patient bundles + hospital + practitioner in {}",
        dir.display()
    );
    out
}

fn bundle(prefix: &str) -> (String, Vec<u8>) {
    bundles()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no bundle {prefix}*"))
}

fn map(name: &str, bytes: &[u8]) -> Mapped {
    map_bundle(name, bytes, &FhirOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn resources(bytes: &[u8]) -> Vec<Value> {
    let b: Value = serde_json::from_slice(bytes).unwrap();
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn of_type<'a>(rs: &'a [Value], ty: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["resourceType"] == ty).collect()
}

fn has_category(r: &Value, code: &str) -> bool {
    r["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == code)
}

fn ts(s: &str) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(s, &Rfc3339).unwrap();
    Some(Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    })
}

fn event<'a>(m: &'a Mapped, id: &str) -> &'a ClinicalEvent {
    m.events
        .iter()
        .find(|e| e.event_id == id)
        .unwrap_or_else(|| panic!("no event {id}"))
}

/// What the summary must say for one bundle, counted from the file.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    patients: usize,
    admissions: usize,
    discharges: usize,
    vital_signs: usize,
    labs: usize,
    medication_orders: usize,
    claims: usize,
    charge_lines: usize,
    diagnoses: usize,
    procedures: usize,
    eobs_skipped: usize,
    observations_skipped: usize,
    not_mapped: usize,
    events: usize,
}

fn expected(bytes: &[u8]) -> Expected {
    let rs = resources(bytes);
    let obs = of_type(&rs, "Observation");
    let encounters = of_type(&rs, "Encounter");
    let claims = of_type(&rs, "Claim");
    let vital_signs = obs.iter().filter(|o| has_category(o, "vital-signs")).count();
    let labs = obs.iter().filter(|o| has_category(o, "laboratory")).count();
    let charge_lines: usize = claims.iter().map(|c| c["item"].as_array().map_or(0, Vec::len)).sum();
    let mapped_types = [
        "Patient",
        "Encounter",
        "Observation",
        "MedicationRequest",
        "Claim",
        "ExplanationOfBenefit",
        "Condition",
        "Procedure",
    ];
    let e = Expected {
        patients: of_type(&rs, "Patient").len(),
        admissions: encounters.len(),
        discharges: encounters.iter().filter(|e| e["period"]["end"].is_string()).count(),
        vital_signs,
        labs,
        medication_orders: of_type(&rs, "MedicationRequest").len(),
        claims: claims.len(),
        charge_lines,
        // Every Synthea Condition and Procedure is SNOMED-coded, dated, confirmed and
        // completed: each one maps. (One Procedure's "SNOMED" code is LOINC 34552-0:
        // the mapper takes it as given, the ingest door refuses it; see the platform's
        // tests/load.rs.)
        diagnoses: of_type(&rs, "Condition").len(),
        procedures: of_type(&rs, "Procedure").len(),
        // Every Synthea EOB points at the Claim in the same bundle.
        eobs_skipped: of_type(&rs, "ExplanationOfBenefit").len(),
        observations_skipped: obs.len() - vital_signs - labs,
        not_mapped: rs
            .iter()
            .filter(|r| !mapped_types.contains(&r["resourceType"].as_str().unwrap()))
            .count(),
        events: 0,
    };
    Expected {
        events: e.patients
            + e.admissions
            + e.discharges
            + e.vital_signs
            + e.labs
            + e.medication_orders
            + e.charge_lines
            + e.diagnoses
            + e.procedures,
        ..e
    }
}

#[test]
fn summary_matches_the_resources_of_every_bundle() {
    let mut totals = BTreeMap::<&str, usize>::new();
    for (name, bytes) in bundles() {
        let m = map(&name, &bytes);
        let s = &m.summary;
        assert!(s.errors.is_empty(), "{name}: {:?}", s.errors);
        assert!(s.deletes.is_empty(), "{name}");
        let want = expected(&bytes);
        let skipped_other: usize = s
            .by_type
            .iter()
            .filter(|(ty, _)| !matches!(ty.as_str(), "Observation" | "ExplanationOfBenefit"))
            .map(|(_, c)| c.skipped_total())
            .sum();
        let got = Expected {
            patients: s.events("patient_registered"),
            admissions: s.events("admission"),
            discharges: s.events("discharge"),
            vital_signs: s.events("vital_signs"),
            labs: s.events("lab_result"),
            medication_orders: s.events("medication_order"),
            claims: s.of("Claim").mapped,
            charge_lines: s.events("charge_line"),
            diagnoses: s.events("diagnosis"),
            procedures: s.events("procedure"),
            eobs_skipped: s.of("ExplanationOfBenefit").skipped_total(),
            observations_skipped: s.of("Observation").skipped_total(),
            not_mapped: skipped_other,
            events: m.events.len(),
        };
        assert_eq!(got, want, "{name}");
        assert_eq!(s.of("Encounter").mapped, want.admissions, "{name}");
        assert_eq!(s.of("Observation").mapped, want.vital_signs + want.labs, "{name}");
        assert_eq!(s.of("Condition").mapped, want.diagnoses, "{name}");
        assert_eq!(s.of("Procedure").mapped, want.procedures, "{name}");
        // Event ids are unique: a re-load is absorbed by the warehouse's dedup.
        let mut ids: Vec<&str> = m.events.iter().map(|e| e.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), m.events.len(), "{name}");
        for (k, v) in [
            ("patients", want.patients),
            ("admissions", want.admissions),
            ("discharges", want.discharges),
            ("vital_signs", want.vital_signs),
            ("labs", want.labs),
            ("medication_orders", want.medication_orders),
            ("charge_lines", want.charge_lines),
            ("diagnoses", want.diagnoses),
            ("procedures", want.procedures),
            ("events", want.events),
        ] {
            *totals.entry(k).or_default() += v;
        }
    }
    // The numbers the files hold today (pinned so a data change is noticed).
    let pinned: BTreeMap<&str, usize> = [
        ("patients", 5),
        ("admissions", 242),
        ("discharges", 242),
        ("vital_signs", 237),
        ("labs", 335),
        ("medication_orders", 50),
        ("charge_lines", 444),
        ("diagnoses", 46),
        ("procedures", 54),
        ("events", 1655),
    ]
    .into_iter()
    .collect();
    assert_eq!(totals, pinned);
}

#[test]
fn reference_bundles_are_skipped_and_counted() {
    let (name, bytes) = bundle("hospitalInformation");
    let m = map(&name, &bytes);
    assert!(m.events.is_empty());
    assert_eq!(m.summary.of("Organization").skipped["Organization is not a payer"], 102);
    let (name, bytes) = bundle("practitionerInformation");
    let m = map(&name, &bytes);
    assert!(m.events.is_empty());
    assert_eq!(m.summary.of("Practitioner").skipped_total(), 102);
}

#[test]
fn patient_values_match_the_file() {
    for prefix in ["Blaine_Schroeder", "Frances_Mann"] {
        let (name, bytes) = bundle(prefix);
        let rs = resources(&bytes);
        let p = of_type(&rs, "Patient")[0];
        let mr = p["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"]["coding"][0]["code"] == "MR")
            .unwrap();
        let m = map(&name, &bytes);
        let e = event(&m, &format!("Patient/{}", p["id"].as_str().unwrap()));
        let patient = e.patient.as_ref().unwrap();
        assert_eq!(patient.mrn, mr["value"].as_str().unwrap());
        assert_eq!(patient.assigning_authority, "http://hospital.smarthealthit.org");
        let Some(Payload::PatientRegistered(d)) = &e.payload else {
            panic!("{:?}", e.payload)
        };
        let birth: Vec<i32> = p["birthDate"]
            .as_str()
            .unwrap()
            .split('-')
            .map(|x| x.parse().unwrap())
            .collect();
        let got = d.birth_date.as_ref().unwrap();
        assert_eq!(vec![got.year, got.month, got.day], birth);
        assert_eq!(d.family_name, p["name"][0]["family"].as_str().unwrap());
        assert_eq!(d.sex, AdministrativeSex::Male as i32);
        assert_eq!(d.postal_code, p["address"][0]["postalCode"].as_str().unwrap());
        assert_eq!(d.deceased_at, p["deceasedDateTime"].as_str().and_then(ts));
        // No meta.lastUpdated in Synthea: registered at the first encounter.
        let first = of_type(&rs, "Encounter")
            .iter()
            .filter_map(|e| ts(e["period"]["start"].as_str().unwrap()))
            .min_by_key(|t| t.seconds);
        assert_eq!(e.occurred_at, first);
        // Every event about this patient carries the same reference.
        assert!(m.events.iter().all(|e| e.patient.as_ref() == Some(patient)));
    }
    assert_eq!(
        {
            let (name, bytes) = bundle("Frances_Mann");
            let m = map(&name, &bytes);
            let Some(Payload::PatientRegistered(d)) = &m.events[0].payload else {
                panic!()
            };
            d.deceased_at
        },
        ts("2018-11-29T20:27:04+00:00")
    );
}

#[test]
fn inpatient_encounter_start_and_end_match_the_file() {
    let (name, bytes) = bundle("Blaine_Schroeder");
    let rs = resources(&bytes);
    let enc = *of_type(&rs, "Encounter")
        .iter()
        .find(|e| e["class"]["code"] == "IMP")
        .unwrap();
    let id = enc["id"].as_str().unwrap();
    let m = map(&name, &bytes);
    let adm = event(&m, &format!("Encounter/{id}"));
    assert_eq!(adm.occurred_at, ts(enc["period"]["start"].as_str().unwrap()));
    let Some(Payload::Admission(a)) = &adm.payload else {
        panic!()
    };
    assert_eq!(a.encounter_id, id);
    assert_eq!(a.encounter_class, EncounterClass::Inpatient as i32);
    let provider = enc["serviceProvider"]["reference"].as_str().unwrap();
    assert_eq!(
        a.location.as_ref().unwrap().department_code,
        provider.trim_start_matches("urn:uuid:")
    );
    let dis = event(&m, &format!("Encounter/{id}#discharge"));
    assert_eq!(dis.occurred_at, ts(enc["period"]["end"].as_str().unwrap()));
    let Some(Payload::Discharge(d)) = &dis.payload else {
        panic!()
    };
    assert_eq!(d.encounter_id, id);
}

#[test]
fn blood_pressure_panel_splits_into_systolic_and_diastolic() {
    let (name, bytes) = bundle("Blaine_Schroeder");
    let rs = resources(&bytes);
    let bp = *of_type(&rs, "Observation")
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "55284-4")
        .unwrap();
    let component = |code: &str| {
        bp["component"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"]["coding"][0]["code"] == code)
            .unwrap()["valueQuantity"]["value"]
            .as_f64()
            .unwrap()
    };
    let m = map(&name, &bytes);
    let e = event(&m, &format!("Observation/{}", bp["id"].as_str().unwrap()));
    assert_eq!(e.occurred_at, ts(bp["effectiveDateTime"].as_str().unwrap()));
    let Some(Payload::VitalSigns(v)) = &e.payload else {
        panic!()
    };
    assert_eq!(
        v.encounter_id,
        bp["encounter"]["reference"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:uuid:")
    );
    let got: BTreeMap<&str, (f64, &str)> = v
        .observations
        .iter()
        .map(|o| (o.loinc_code.as_str(), (o.value, o.unit.as_str())))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("8462-4", (component("8462-4"), "mm[Hg]")),
            ("8480-6", (component("8480-6"), "mm[Hg]"))
        ])
    );
}

#[test]
fn conditions_and_procedures_match_the_file() {
    for (name, bytes) in bundles() {
        let rs = resources(&bytes);
        let m = map(&name, &bytes);
        let encounter_of = |r: &Value| {
            r["encounter"]["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("urn:uuid:")
                .to_owned()
        };
        for c in of_type(&rs, "Condition") {
            let e = event(&m, &format!("Condition/{}", c["id"].as_str().unwrap()));
            assert_eq!(e.occurred_at, ts(c["onsetDateTime"].as_str().unwrap()), "{name}");
            let Some(Payload::Diagnosis(d)) = &e.payload else {
                panic!("{:?}", e.payload)
            };
            let coding = &c["code"]["coding"][0];
            assert_eq!(coding["system"], "http://snomed.info/sct");
            assert_eq!(d.code, coding["code"].as_str().unwrap());
            assert_eq!(d.code_system, CodeSystem::SnomedCt as i32);
            assert_eq!(d.display, coding["display"].as_str().unwrap());
            assert_eq!(d.encounter_id, encounter_of(c));
            // Synthea writes no category and links the Condition to its encounter: the
            // role is not stated.
            assert_eq!((d.role, d.rank), (DiagnosisRole::Unspecified as i32, 0));
            assert_eq!(d.recorded_at, ts(c["recordedDate"].as_str().unwrap()));
            assert_eq!(d.abated_at, c["abatementDateTime"].as_str().and_then(ts));
            let status = match c["clinicalStatus"]["coding"][0]["code"].as_str().unwrap() {
                "active" => ConditionStatus::Active,
                "resolved" => ConditionStatus::Resolved,
                other => panic!("{other}"),
            };
            assert_eq!(d.clinical_status, status as i32);
        }
        for p in of_type(&rs, "Procedure") {
            let e = event(&m, &format!("Procedure/{}", p["id"].as_str().unwrap()));
            assert_eq!(e.occurred_at, ts(p["performedPeriod"]["start"].as_str().unwrap()));
            let Some(Payload::Procedure(x)) = &e.payload else {
                panic!("{:?}", e.payload)
            };
            assert_eq!(x.code, p["code"]["coding"][0]["code"].as_str().unwrap());
            assert_eq!(x.code_system, CodeSystem::SnomedCt as i32);
            assert_eq!(x.ended_at, ts(p["performedPeriod"]["end"].as_str().unwrap()));
            assert_eq!(x.encounter_id, encounter_of(p));
        }
    }
}

#[test]
fn truncated_bundle_is_one_clear_error() {
    let (name, bytes) = bundle("Cary_O'Hara");
    let cut = &bytes[..bytes.len() / 2];
    let err = map_bundle(&name, cut, &FhirOptions::default()).unwrap_err();
    let FhirError::Json {
        input, line, column, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(input, &name);
    assert!(*line > 0 && *column > 0, "{err}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[test]
fn ndjson_with_a_corrupt_line_maps_the_rest() {
    let (name, bytes) = bundle("Laticia_Dibbert");
    let full = map(&name, &bytes);
    let rs = resources(&bytes);
    // A bulk export has relative references, not the bundle's urn:uuid fullUrls.
    let mut text = rs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for r in &rs {
        let (ty, id) = (r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        text = text.replace(&format!("\"urn:uuid:{id}\""), &format!("\"{ty}/{id}\""));
    }
    assert!(!text.contains("urn:uuid:"));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Break one vital-sign Observation in the middle of the file.
    let victim = rs
        .iter()
        .enumerate()
        .skip(rs.len() / 2)
        .find(|(_, r)| r["resourceType"] == "Observation" && has_category(r, "vital-signs"))
        .unwrap()
        .0;
    let half = lines[victim].len() / 2;
    lines[victim].truncate(half);
    let ndjson = lines.join("\n") + "\n";
    let m = map_ndjson("export.ndjson", ndjson.as_bytes(), &FhirOptions::default());
    assert_eq!(m.summary.errors.len(), 1, "{:?}", m.summary.errors);
    let FhirError::Line { input, line, .. } = &m.summary.errors[0] else {
        panic!("{}", m.summary.errors[0])
    };
    assert_eq!((input.as_str(), *line), ("export.ndjson", victim + 1));
    // The broken line is read and not mapped: the balance still holds.
    let b = m.summary.balance();
    assert_eq!((b.read, b.not_mapped), (rs.len() as u64, 1));
    assert!(b.balances(), "{b}");
    assert_eq!(m.events.len(), full.events.len() - 1);
    assert_eq!(m.summary.events("vital_signs"), full.summary.events("vital_signs") - 1);
    // Relative references resolve in NDJSON the same way urn:uuid ones do in the bundle.
    let lost = format!("Observation/{}", rs[victim]["id"].as_str().unwrap());
    let rest: Vec<&ClinicalEvent> = full.events.iter().filter(|e| e.event_id != lost).collect();
    assert_eq!(m.events.iter().collect::<Vec<_>>(), rest);
}

#[test]
fn source_system_comes_from_the_options() {
    let (name, bytes) = bundle("Bradly_Douglas");
    let opts = FhirOptions {
        source_system: "synthea-fhir".to_owned(),
    };
    let m = map_bundle(&name, &bytes, &opts).unwrap();
    assert!(m.events.iter().all(|e| e.source_system == "synthea-fhir"));
}

/// All the bundles mapped together, as `hospital load` does: every entry is accounted
/// for, and the charge lines carry the Claims' money: their amounts add up to the sum of
/// the Claim totals (read here from the JSON), every line priced by a rule.
#[test]
fn every_entry_is_accounted_for_and_charges_add_up_to_the_claim_totals() {
    let mut mapper = hospital_sources::fhir::Mapper::new(FhirOptions::default());
    let (mut entries, mut claims, mut claim_total_cents) = (0u64, 0usize, 0i64);
    for (name, bytes) in bundles() {
        mapper.add_bundle(&name, &bytes).unwrap();
        for r in resources(&bytes) {
            entries += 1;
            if r["resourceType"] == "Claim" {
                claims += 1;
                assert_eq!(r["total"]["currency"], "USD");
                claim_total_cents += (r["total"]["value"].as_f64().unwrap() * 100.0).round() as i64;
            }
        }
    }
    let m = mapper.finish();
    assert!(m.summary.errors.is_empty(), "{:?}", m.summary.errors);
    let b = m.summary.balance();
    println!("FHIR bundles: {b}");
    for (reason, n) in &b.skipped {
        println!("  skipped x{n}: {reason}");
    }
    assert_eq!(b.read, entries);
    assert!(b.balances(), "{b}");

    let mut charged = 0f64;
    let mut lines = 0;
    for e in &m.events {
        if let Some(Payload::ChargeLine(c)) = &e.payload {
            assert_eq!(c.currency, "USD", "{}", c.charge_id);
            charged += c.quantity * c.unit_price_minor as f64;
            lines += 1;
        }
    }
    println!(
        "{claims} Claims, {lines} charge lines priced by {:?}; Claim totals {claim_total_cents} cents, charged {charged}",
        m.summary.charge_prices
    );
    assert_eq!(claims, 292);
    assert_eq!(m.summary.unpriced_charge_lines, []);
    assert_eq!(charged.round() as i64, claim_total_cents);
    // All 50 pharmacy claims (one line each) and the encounter line of each of the 242
    // institutional ones take the remainder of their total.
    assert_eq!(m.summary.charge_prices[hospital_sources::fhir::PRICE_REMAINDER], 292);
}
