//! HL7 v2 pharmacy messages -> medication events: every RDE and RDS sample of the
//! FHIR-Converter set (shared/data/hl7v2/microsoft_FHIR-Converter) with the values read
//! from the files, a cross-check against Microsoft's expected FHIR output for the same
//! files, hand-written RAS administrations (the set has none), and bad input that must
//! fail naming the HL7 field.

mod common;

use common::*;
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{ClinicalEvent, MedicationEvent, MedicationOrder};
use hospital_sources::hl7v2::map::MapError;
use serde_json::Value;
use time::macros::datetime;

fn order(e: &ClinicalEvent) -> &MedicationOrder {
    match &e.payload {
        Some(Payload::MedicationOrder(o)) => o,
        other => panic!("not a medication order: {other:?}"),
    }
}

fn dispense(e: &ClinicalEvent) -> &MedicationEvent {
    match &e.payload {
        Some(Payload::MedicationDispense(d)) => d,
        other => panic!("not a medication dispense: {other:?}"),
    }
}

fn administration(e: &ClinicalEvent) -> &MedicationEvent {
    match &e.payload {
        Some(Payload::MedicationAdministration(a)) => a,
        other => panic!("not a medication administration: {other:?}"),
    }
}

/// Every sample comes from the same made-up patient, visit and sender.
fn assert_common(name: &str, events: &[ClinicalEvent]) {
    for (i, e) in events.iter().enumerate() {
        let id = if events.len() > 1 {
            format!("GHHSFacility|MSG00001-{}", i + 1)
        } else {
            "GHHSFacility|MSG00001".to_owned()
        };
        assert_eq!(e.event_id, id, "{name}");
        assert_eq!(e.source_system, "IMMAPP", "{name}");
        let p = e.patient.as_ref().unwrap();
        assert_eq!(
            (p.mrn.as_str(), p.assigning_authority.as_str()),
            ("PATID1234", "test1"),
            "{name}"
        );
    }
}

/// The first order group of RDE-O11-01/02 and RDE-O25-01/02:
/// `ORC|NW|1163422591^EPC|||||||20191104062726+0215`, the ordered TQ1 (TID) and RXR
/// (IV^IV Infusion) under RXO, then
/// `RXE||0143963401^200 ML BAG : NICARDIPINE ...^NDC^^^^^^niCARdipine ...|5||43^mg/hr`,
/// its TQ1 `|P&Post (after)&HL70335^...|...|20191104103000+0215|20191104113000+0215|`
/// and RXR `IV^Intravenous`. PV1-19 40007716.
fn assert_nicardipine_order(name: &str, e: &ClinicalEvent) {
    let o = order(e);
    assert_eq!(o.order_id, "1163422591", "{name}");
    assert_eq!(o.encounter_id, "40007716", "{name}");
    assert_eq!(
        (o.drug_code.as_str(), o.drug_name.as_str()),
        (
            "0143963401",
            "200 ML BAG : NICARDIPINE IN NACL (ISO-OS) 40 MG/200 ML IV PGBK"
        ),
        "{name}"
    );
    assert_eq!((o.dose_value, o.dose_unit.as_str()), (5.0, "mg/hr"), "{name}");
    assert_eq!((o.route.as_str(), o.frequency.as_str()), ("IV", "P"), "{name}");
    assert_eq!(o.starts_at, ts(datetime!(2019-11-04 10:30 +02:15)), "{name}");
    assert_eq!(o.ends_at, ts(datetime!(2019-11-04 11:30 +02:15)), "{name}");
    assert_eq!(e.occurred_at, ts(datetime!(2019-11-04 06:27:26 +02:15)), "{name}");
}

#[test]
fn rde_samples_make_one_order_per_order_group() {
    for name in ["RDE-O11-01.hl7", "RDE-O25-01.hl7"] {
        let e = map(&converter(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(e.len(), 1, "{name}");
        assert_common(name, &e);
        assert_nicardipine_order(name, &e[0]);
    }
    for name in ["RDE-O11-02.hl7", "RDE-O25-02.hl7"] {
        let e = map(&converter(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(e.len(), 2, "{name}");
        assert_common(name, &e);
        assert_nicardipine_order(name, &e[0]);
        // Second group: ORC|NW|1422591^EPC|||||||20221104062726+0215, RXR IO^Intraocular
        // under RXO, RXE||2669^200 ML BAG ...^NDC|8||53^mg/hr, its TQ1
        // |2|2.5^&cap|P&Post (after)&HL70335^...|...|20221104103000+0215|20221104113000+0215
        // and RXR IP^Intraperitoneal: the encoded route wins over the ordered one.
        let o = order(&e[1]);
        assert_eq!(o.order_id, "1422591", "{name}");
        assert_eq!(o.drug_code, "2669", "{name}");
        assert_eq!((o.dose_value, o.dose_unit.as_str()), (8.0, "mg/hr"), "{name}");
        assert_eq!((o.route.as_str(), o.frequency.as_str()), ("IP", "P"), "{name}");
        assert_eq!(o.starts_at, ts(datetime!(2022-11-04 10:30 +02:15)), "{name}");
        assert_eq!(o.ends_at, ts(datetime!(2022-11-04 11:30 +02:15)), "{name}");
        assert_eq!(e[1].occurred_at, ts(datetime!(2022-11-04 06:27:26 +02:15)), "{name}");
    }
}

#[test]
fn rds_samples_make_one_dispense_per_rxd() {
    // RDS-O13-01: ORC-2 1163422591, ORC-9 20191104062726+0215, then
    // RXD|1|01151327^Doxycycline^NDC|20201212|10|385055001^Tablet^SCT|...|PN12345 and
    // RXR|PO^oral^HL70162 after it (the RXR under RXO says IV).
    let doxycycline = |name: &str, e: &ClinicalEvent| {
        let d = dispense(e);
        assert_eq!(
            (d.order_id.as_str(), d.encounter_id.as_str(), d.drug_code.as_str()),
            ("1163422591", "40007716", "01151327"),
            "{name}"
        );
        assert_eq!(
            (d.dose_value, d.dose_unit.as_str(), d.route.as_str()),
            (10.0, "Tablet", "PO"),
            "{name}"
        );
        // RXD-3 has no offset: read in the default offset, UTC.
        assert_eq!(e.occurred_at, ts(datetime!(2020-12-12 00:00 UTC)), "{name}");
    };
    let e = map(&converter("RDS-O13-01.hl7")).unwrap();
    assert_eq!(e.len(), 1);
    assert_common("RDS-O13-01.hl7", &e);
    doxycycline("RDS-O13-01.hl7", &e[0]);

    // RDS-O13-02 repeats that group and adds a second one whose
    // RXD|1|308191^amoxicillin 500 MG Oral Capsule^RXNORM|20201212|10|385049006^Capsule^SCT
    // is followed by RXR|ADB^Abdomen^HL70162.
    let e = map(&converter("RDS-O13-02.hl7")).unwrap();
    assert_eq!(e.len(), 2);
    assert_common("RDS-O13-02.hl7", &e);
    doxycycline("RDS-O13-02.hl7", &e[0]);
    let d = dispense(&e[1]);
    assert_eq!((d.order_id.as_str(), d.drug_code.as_str()), ("1163422591", "308191"));
    assert_eq!(
        (d.dose_value, d.dose_unit.as_str(), d.route.as_str()),
        (10.0, "Capsule", "ADB")
    );
    assert_eq!(e[1].occurred_at, ts(datetime!(2020-12-12 00:00 UTC)));
}

/// The same drug, dose, unit, route and timing as Microsoft's FHIR-Converter reads from
/// the same files (its MedicationRequest from RXE is the `filler-order` one; its
/// MedicationDispense from RXD the one with `whenHandedOver`).
#[test]
fn values_agree_with_the_fhir_converter() {
    let resources = expected_fhir("RDE_O11__RDE-O11-01-expected.json");
    let by_id = |id: &str| {
        resources
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in the bundle"))
    };
    let medication_code = |r: &Value| {
        let id = r["medicationReference"]["reference"].as_str().unwrap();
        by_id(id.trim_start_matches("Medication/"))["code"]["coding"][0].clone()
    };
    let request = resources
        .iter()
        .find(|r| r["resourceType"] == "MedicationRequest" && r["intent"] == "filler-order")
        .unwrap();
    let e = map(&converter("RDE-O11-01.hl7")).unwrap();
    let o = order(&e[0]);
    let coding = medication_code(request);
    assert_eq!(coding["code"], o.drug_code.as_str());
    assert_eq!(coding["display"], o.drug_name.as_str());
    assert_eq!(coding["system"], "http://hl7.org/fhir/sid/ndc");
    let dosage = &request["dosageInstruction"][0];
    let dose = &dosage["doseAndRate"][0]["doseQuantity"];
    assert_eq!(
        (dose["value"].as_f64(), &dose["unit"]),
        (Some(o.dose_value), &Value::from(o.dose_unit.as_str()))
    );
    assert_eq!(dosage["route"]["coding"][0]["code"], o.route.as_str());
    assert_eq!(dosage["timing"]["code"]["coding"][0]["code"], o.frequency.as_str());
    let bounds = &dosage["timing"]["repeat"]["boundsPeriod"];
    assert_eq!(
        (instant(&bounds["start"]), instant(&bounds["end"])),
        (o.starts_at, o.ends_at)
    );
    assert_eq!(instant(&request["authoredOn"]), e[0].occurred_at);
    assert_eq!(request["identifier"][0]["value"], o.order_id.as_str());

    let resources = expected_fhir("RDS_O13__RDS-O13-01-expected.json");
    let fhir = resources
        .iter()
        .find(|r| r["resourceType"] == "MedicationDispense" && r.get("whenHandedOver").is_some())
        .unwrap();
    let e = map(&converter("RDS-O13-01.hl7")).unwrap();
    let d = dispense(&e[0]);
    let med_id = fhir["medicationReference"]["reference"].as_str().unwrap();
    let med = resources
        .iter()
        .find(|r| r["id"] == med_id.trim_start_matches("Medication/"))
        .unwrap();
    assert_eq!(med["code"]["coding"][0]["code"], d.drug_code.as_str());
    assert_eq!(fhir["quantity"]["value"].as_f64(), Some(d.dose_value));
    assert_eq!(fhir["quantity"]["unit"], d.dose_unit.as_str());
    assert_eq!(
        fhir["dosageInstruction"][0]["route"]["coding"][0]["code"],
        d.route.as_str()
    );
    assert_eq!(fhir["whenHandedOver"], "2020-12-12");
}

const MSH: &str = "MSH|^~\\&|PHARM|NORTH|HIS|SOUTH|20240301123000||";
const PATIENT: &str = "PID|1||M1^^^HOSP^MR||DOE^JANE\rPV1|1|I|W1||||||||||||||||V55\r";

fn rde(rxe: &str, tq1: &str) -> String {
    format!(
        "{MSH}RDE^O11^RDE_O11|R1|P|2.5\r{PATIENT}ORC|NW|P77|F88||||||20240301110000\r{rxe}\r{tq1}RXR|PO^Oral^HL70162\r"
    )
}

const RXE_OK: &str = "RXE||1049630^Amoxicillin 500 MG Oral Capsule^RXNORM|500||mg^milligram^UCUM";

#[test]
fn hand_written_order_reads_every_field() {
    let e = map_text(&rde(
        RXE_OK,
        "TQ1|1||Q8H&Every 8 hours&HL70335||||20240301120000|20240308120000\r",
    ))
    .unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].event_id, "NORTH|R1");
    assert_eq!(e[0].occurred_at, ts(datetime!(2024-03-01 11:00 UTC)));
    let o = order(&e[0]);
    assert_eq!(
        (
            o.order_id.as_str(),
            o.encounter_id.as_str(),
            o.drug_code.as_str(),
            o.drug_name.as_str()
        ),
        ("P77", "V55", "1049630", "Amoxicillin 500 MG Oral Capsule")
    );
    // UCUM: the code, not the text.
    assert_eq!((o.dose_value, o.dose_unit.as_str()), (500.0, "mg"));
    assert_eq!((o.route.as_str(), o.frequency.as_str()), ("PO", "Q8H"));
    assert_eq!(
        (o.starts_at, o.ends_at),
        (ts(datetime!(2024-03-01 12:00 UTC)), ts(datetime!(2024-03-08 12:00 UTC)))
    );
}

#[test]
fn order_id_and_drug_fall_back_as_documented() {
    // No placer: the filler order number; an RxNorm alternate beats a local primary code.
    let text = format!(
        "{MSH}RDE^O11|R2|P|2.5\r{PATIENT}ORC|NW||F88\rRXE||L-123^Amox 500^LOCAL^1049630^Amoxicillin 500 MG^RXNORM|1||{{CAP}}^capsule^UCUM\r"
    );
    let e = map_text(&text).unwrap();
    let o = order(&e[0]);
    assert_eq!((o.order_id.as_str(), o.drug_code.as_str()), ("F88", "1049630"));
    assert_eq!(o.drug_name, "Amoxicillin 500 MG");
    assert_eq!(o.dose_unit, "{CAP}");
    // No ORC-9: MSH-7. No timing, no route: empty.
    assert_eq!(e[0].occurred_at, ts(datetime!(2024-03-01 12:30 UTC)));
    assert_eq!((o.route.as_str(), o.frequency.as_str(), o.starts_at), ("", "", None));

    // Neither ORC-2 nor ORC-3: the prescription number RXE-15.
    let rxe_15 = format!("RXE||1049630^Amox^RXNORM{}RX-9", "|".repeat(13));
    let text = format!("{MSH}RDE^O11|R3|P|2.5\r{PATIENT}ORC|NW\r{rxe_15}\r");
    let o = map_text(&text).unwrap();
    assert_eq!(order(&o[0]).order_id, "RX-9");
    // No amount: no dose and no unit (the door takes 0 as "not given").
    assert_eq!((order(&o[0]).dose_value, order(&o[0]).dose_unit.as_str()), (0.0, ""));
}

/// HL7 2.3 has no TQ1: the timing is RXE-1 (TQ: quantity^interval^duration^start^end).
#[test]
fn version_2_3_order_reads_rxe_1_timing() {
    let text = format!(
        "{MSH}RDE^O01|R4|P|2.3\r{PATIENT}ORC|NW|P1|||||||20240301110000\r\
         RXE|1^Q6H&0600,1200,1800,2400^^20240301120000^20240303120000|00093310905^Amoxicillin^NDC|250||mg\rRXR|PO\r"
    );
    let e = map_text(&text).unwrap();
    let o = order(&e[0]);
    assert_eq!((o.frequency.as_str(), o.dose_unit.as_str()), ("Q6H", "mg"));
    assert_eq!(
        (o.starts_at, o.ends_at),
        (ts(datetime!(2024-03-01 12:00 UTC)), ts(datetime!(2024-03-03 12:00 UTC)))
    );
}

#[test]
fn bad_orders_name_the_field() {
    let e = err(&rde("RXE||||", ""));
    assert_eq!(e.to_string(), "RXE-2 (give code) is empty");
    assert_eq!(e.field(), Some("RXE-2"));

    let e = err(&rde("RXE||1049630^Amox^RXNORM|five||mg", ""));
    assert_eq!(e.field(), Some("RXE-3"));
    assert_eq!(e.to_string(), "RXE-3 (give amount - minimum) \"five\" is not a number");
    // Rust would read these; HL7 NM does not.
    for bad in ["1e3", "inf", "NaN", "1.2.3", "-"] {
        let e = err(&rde(&format!("RXE||1049630^Amox^RXNORM|{bad}||mg"), ""));
        assert_eq!(e.field(), Some("RXE-3"), "{bad}");
    }

    let e = err(&rde("RXE||1049630^Amox^RXNORM|500", ""));
    assert_eq!(e.to_string(), "RXE-5 (give units) is empty");

    let e = err(&rde(RXE_OK, "TQ1|1||Q8H||||2024-03-01\r"));
    assert_eq!(e.field(), Some("TQ1-7"));
    assert!(
        e.to_string().starts_with("TQ1-7 (start date/time) is not a date/time"),
        "{e}"
    );
    let e = err(&rde(RXE_OK, "TQ1|1||Q8H||||20240301|20241399\r"));
    assert_eq!(e.field(), Some("TQ1-8"));

    let e = err(&format!(
        "{MSH}RDE^O11|R5|P|2.3\r{PATIENT}ORC|NW|P1\rRXE|1^Q6H^^20240399|1049630^Amox^RXNORM\r"
    ));
    assert_eq!(e.field(), Some("RXE-1-4"));

    // An order group without its RXE, an RXE outside any group, no order id at all.
    let e = err(&format!(
        "{MSH}RDE^O11|R6|P|2.5\r{PATIENT}ORC|NW|P1\r{RXE_OK}\rORC|NW|P2\r"
    ));
    assert_eq!(e.to_string(), "RXE (pharmacy/treatment encoded order segment) is empty");
    let e = err(&format!("{MSH}RDE^O11|R7|P|2.5\r{PATIENT}{RXE_OK}\r"));
    assert_eq!(e.field(), Some("ORC"));
    let e = err(&format!("{MSH}RDE^O11|R8|P|2.5\r{PATIENT}ORC|NW\r{RXE_OK}\r"));
    assert_eq!(e.field(), Some("ORC-2"));
    // ORC-9 is read like every other date.
    let e = err(&format!(
        "{MSH}RDE^O11|R9|P|2.5\r{PATIENT}ORC|NW|P1|||||||2024XX\r{RXE_OK}\r"
    ));
    assert_eq!(e.field(), Some("ORC-9"));
}

#[test]
fn bad_dispenses_name_the_field() {
    let rds = |rxd: &str| format!("{MSH}RDS^O13|D1|P|2.5\r{PATIENT}ORC|RE|P1\r{rxd}\r");
    assert_eq!(
        err(&rds("RXD|1||20240301|2|TAB^tablet")).to_string(),
        "RXD-2 (dispense/give code) is empty"
    );
    assert_eq!(
        err(&rds("RXD|1|1049630^Amox^RXNORM|20240301|two|TAB")).field(),
        Some("RXD-4")
    );
    assert_eq!(err(&rds("RXD|1|1049630^Amox^RXNORM|20240301|2")).field(), Some("RXD-5"));
    assert_eq!(
        err(&rds("RXD|1|1049630^Amox^RXNORM|20240231|2|TAB")).field(),
        Some("RXD-3")
    );
    assert_eq!(err(&rds("RXE||1049630^Amox^RXNORM|1||TAB")).field(), Some("RXD"));
    // No RXD-3: ORC-9, else MSH-7.
    let e = map_text(&rds("RXD|1|1049630^Amox^RXNORM||2|TAB")).unwrap();
    assert_eq!(e[0].occurred_at, ts(datetime!(2024-03-01 12:30 UTC)));
    assert_eq!(dispense(&e[0]).dose_unit, "TAB");
}

/// RAS^O17 as the standard lays it out (no sample in the shared set): ORC, RXA (3 start
/// of administration, 5 administered code, 6 amount, 7 units, 20 completion status,
/// 21 action code), RXR after each RXA.
fn ras(rxas: &str) -> String {
    format!(
        "{MSH}RAS^O17^RAS_O17|A1|P|2.5.1\r{PATIENT}ORC|RE|P77|F88||||||20240301090000\r\
         RXE||1049630^Amox^RXNORM|500||mg^^UCUM\rRXR|PO\r{rxas}"
    )
}

/// One RXA: 3 start of administration, 5 administered code, 6 amount, 7 units,
/// 20 completion status, 21 action code.
fn rxa(n: u32, start: &str, code: &str, amount: &str, unit: &str, status: &str, action: &str) -> String {
    format!(
        "RXA|0|{n}|{start}||{code}|{amount}|{unit}{}{status}|{action}\r",
        "|".repeat(13)
    )
}

const AMOX: &str = "1049630^Amoxicillin 500 MG^RXNORM";

#[test]
fn hand_written_administrations() {
    let text = ras(&[
        rxa(1, "20240301100000+0100", AMOX, "500", "mg^milligram^UCUM", "CP", "A"),
        "RXR|PO^Oral^HL70162\r".to_owned(),
        rxa(2, "20240301180000+0100", AMOX, "500", "mg^^UCUM", "RE", ""),
        "RXR|PO\r".to_owned(),
        rxa(3, "20240302020000+0100", AMOX, "1", "", "CP", ""),
        rxa(4, "20240302100000+0100", AMOX, "500", "mg^^UCUM", "CP", "D"),
    ]
    .concat());
    let e = map_text(&text).unwrap();
    // The refused dose (RE) and the deleted record (D) make no event.
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].event_id.as_str(), e[1].event_id.as_str()),
        ("NORTH|A1-1", "NORTH|A1-2")
    );
    let a = administration(&e[0]);
    assert_eq!(
        (a.order_id.as_str(), a.encounter_id.as_str(), a.drug_code.as_str()),
        ("P77", "V55", "1049630")
    );
    assert_eq!(
        (a.dose_value, a.dose_unit.as_str(), a.route.as_str()),
        (500.0, "mg", "PO")
    );
    assert_eq!(e[0].occurred_at, ts(datetime!(2024-03-01 10:00 +01:00)));
    // No RXA-7: the product's own unit (UCUM unity); no RXR after it: the RXE's route.
    let a = administration(&e[1]);
    assert_eq!((a.dose_value, a.dose_unit.as_str(), a.route.as_str()), (1.0, "1", "PO"));
    assert_eq!(e[1].occurred_at, ts(datetime!(2024-03-02 02:00 +01:00)));
}

#[test]
fn bad_administrations_name_the_field() {
    let e = err(&ras(&rxa(1, "", AMOX, "500", "mg", "", "")));
    assert_eq!(e.to_string(), "RXA-3 (date/time start of administration) is empty");
    assert_eq!(
        err(&ras(&rxa(1, "20240301100000", "^Amox", "500", "mg", "", ""))).field(),
        Some("RXA-5")
    );
    assert_eq!(
        err(&ras(&rxa(1, "20240301100000", AMOX, "5O0", "mg", "", ""))).field(),
        Some("RXA-6")
    );
    assert_eq!(
        err(&ras(&rxa(1, "2024030110000000", AMOX, "500", "mg", "", ""))).field(),
        Some("RXA-3")
    );
    let e = err(&ras(&rxa(1, "20240301100000", AMOX, "500", "mg", "NA", "")));
    assert_eq!(e.field(), Some("RXA-20"));
    assert_eq!(
        err(&ras("")).to_string(),
        "RXA (pharmacy/treatment administration segment) is empty"
    );
}

#[test]
fn other_pharmacy_messages_stay_unsupported() {
    let e = err(&format!("{MSH}RGV^O15|G1|P|2.5\r{PATIENT}ORC|NW|P1\r"));
    assert!(matches!(e, MapError::Unsupported { ref message_type } if message_type == "RGV^O15"));
    assert!(
        e.to_string().contains("RDE^O01/O11/O25, RDS^O01/O13 and RAS^O01/O17"),
        "{e}"
    );
}
