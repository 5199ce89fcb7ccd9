//! A deterministic generator of canonical events for a small hospital: reference data
//! (wards, drugs, payers), then patients who register, arrive (through the ED or
//! electively), are admitted to a ward, have vital signs charted every few hours, labs,
//! medication orders and administrations, are sometimes transferred, are charged, and
//! are discharged. The same seed gives the same events, ids included.

use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use prost_types::Timestamp;
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub seed: u64,
    pub patients: usize,
    /// Start of the simulated period, seconds since the Unix epoch.
    pub start_secs: i64,
    pub source_system: String,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            patients: 100,
            // 2026-01-05T00:00:00Z, a Monday.
            start_secs: 1_767_571_200,
            source_system: "sim-ehr".into(),
        }
    }
}

const WARDS: &[(&str, &str, &str, &str, u32)] = &[
    ("MED", "Medicine", "AMU", "Acute Medical Unit", 28),
    ("MED", "Medicine", "W10", "Ward 10 Respiratory", 24),
    ("SUR", "Surgery", "W20", "Ward 20 General Surgery", 26),
    ("SUR", "Surgery", "ICU", "Intensive Care Unit", 12),
    ("EM", "Emergency Medicine", "ED", "Emergency Department", 30),
];
const DRUGS: &[(&str, &str, &str)] = &[
    ("197361", "Amoxicillin 500 MG Oral Capsule", "antibiotic"),
    ("313782", "Acetaminophen 500 MG Oral Tablet", "analgesic"),
    ("1807513", "Enoxaparin 40 MG/0.4ML Prefilled Syringe", "anticoagulant"),
    ("311034", "Insulin Regular 100 UNT/ML Injectable Solution", "insulin"),
    (
        "1659149",
        "Piperacillin 4000 MG / Tazobactam 500 MG Injection",
        "antibiotic",
    ),
];
const PAYERS: &[(&str, &str, &str)] = &[
    ("NHS", "National Health Service", "public"),
    ("MEDICARE", "Medicare", "public"),
    ("AETNA", "Aetna", "private"),
    ("SELF", "Self-pay", "self-pay"),
];
const GIVEN: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Eve", "Femi", "Grace", "Hugo", "Isla", "Jon", "Kemi", "Liam",
];
const FAMILY: &[&str] = &[
    "Smith", "Okafor", "Patel", "Nguyen", "Jones", "Garcia", "Kowalski", "Brown", "Ahmed", "Lee",
];

/// Generates the events of a simulated period, in the order a hospital would send them
/// (by time; reference data first).
pub fn generate(opts: &GeneratorOptions) -> Vec<pb::ClinicalEvent> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(opts.seed),
        source: opts.source_system.clone(),
        events: Vec::new(),
        seq: 0,
        seed: opts.seed,
        occupancy: HashMap::new(),
    };
    let t0 = opts.start_secs;
    for (dept, dept_name, ward, ward_name, beds) in WARDS {
        g.push(
            t0,
            None,
            Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Ward(pb::Ward {
                    department_code: dept.to_string(),
                    department_name: dept_name.to_string(),
                    ward_code: ward.to_string(),
                    ward_name: ward_name.to_string(),
                    bed_count: *beds,
                })),
            }),
        );
    }
    for (code, name, class) in DRUGS {
        g.push(
            t0,
            None,
            Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Drug(pb::Drug {
                    code: code.to_string(),
                    code_system: "RxNorm".into(),
                    name: name.to_string(),
                    drug_class: class.to_string(),
                    ..Default::default()
                })),
            }),
        );
    }
    for (code, name, kind) in PAYERS {
        g.push(
            t0,
            None,
            Payload::ReferenceData(pb::ReferenceData {
                item: Some(Item::Payer(pb::Payer {
                    code: code.to_string(),
                    name: name.to_string(),
                    payer_type: kind.to_string(),
                })),
            }),
        );
    }
    for p in 0..opts.patients {
        g.patient(p, t0);
    }
    // Stable sort: events at the same second keep their causal order.
    g.events
        .sort_by_key(|e| e.occurred_at.as_ref().map(|t| t.seconds).unwrap_or_default());
    g.events
}

struct Gen {
    rng: StdRng,
    source: String,
    events: Vec<pb::ClinicalEvent>,
    seq: u64,
    seed: u64,
    /// Bed code -> the periods it is occupied, so that no two patients share a bed.
    occupancy: HashMap<String, Vec<(i64, i64)>>,
}

impl Gen {
    /// A bed free over [from, to): on the preferred ward if it has one, else on another
    /// inpatient ward; when the hospital is full, a bed of the preferred ward (the
    /// overflow a bed manager would see as a double booking).
    fn book(&mut self, preferred: usize, from: i64, to: i64) -> (&'static str, &'static str, String) {
        for w in (0..4).map(|k| (preferred + k) % 4) {
            let (dept, _, ward, _, beds) = WARDS[w];
            let start = self.rng.random_range(0..beds);
            for b in (0..beds).map(|k| (start + k) % beds + 1) {
                let code = format!("{ward}-{b:02}");
                let periods = self.occupancy.entry(code.clone()).or_default();
                if periods.iter().all(|&(f, t)| to <= f || from >= t) {
                    periods.push((from, to));
                    return (dept, ward, code);
                }
            }
        }
        let (dept, _, ward, _, beds) = WARDS[preferred];
        (dept, ward, format!("{ward}-{:02}", self.rng.random_range(1..=beds)))
    }

    fn push(&mut self, at_secs: i64, mrn: Option<&str>, payload: Payload) {
        self.seq += 1;
        self.events.push(pb::ClinicalEvent {
            event_id: format!("{}-{}-{:08}", self.source, self.seed, self.seq),
            source_system: self.source.clone(),
            occurred_at: Some(Timestamp {
                seconds: at_secs,
                nanos: 0,
            }),
            patient: mrn.map(|m| pb::PatientRef {
                mrn: m.to_string(),
                assigning_authority: "HOSP".into(),
            }),
            payload: Some(payload),
        });
    }

    fn patient(&mut self, index: usize, t0: i64) {
        let rng = &mut self.rng;
        let mrn = format!("MRN{:06}", index + 1);
        let arrive = t0 + rng.random_range(0..14 * 86_400);
        let given = GIVEN[rng.random_range(0..GIVEN.len())].to_string();
        let family = FAMILY[rng.random_range(0..FAMILY.len())].to_string();
        let demographics = pb::PatientDemographics {
            given_name: given,
            family_name: family,
            birth_date: Some(pb::Date {
                year: rng.random_range(1930..2008),
                month: rng.random_range(1..=12),
                day: rng.random_range(1..=28),
            }),
            sex: if rng.random_bool(0.5) {
                pb::AdministrativeSex::Female as i32
            } else {
                pb::AdministrativeSex::Male as i32
            },
            postal_code: format!("LS{} {}AB", rng.random_range(1..30), rng.random_range(1..9)),
            deceased_at: None,
        };
        let via_ed = rng.random_bool(0.6);
        let preferred_ward = rng.random_range(0..4);
        let transfer_ward = rng.random_bool(0.25).then(|| rng.random_range(0..4));
        let payer = PAYERS[rng.random_range(0..PAYERS.len())].0;
        // Encounter ids are unique per generated period (seed); MRNs repeat across
        // periods, as returning patients do.
        let encounter = format!("ENC{}-{:06}", self.seed, index + 1);
        let los_hours = rng.random_range(6..144);
        let ed_wait_min = rng.random_range(2..90);
        let ed_stay_min = rng.random_range(60..360);
        let m = Some(mrn.as_str());

        self.push(arrive - 60, m, Payload::PatientRegistered(demographics.clone()));
        let admit = if via_ed {
            self.push(
                arrive,
                m,
                Payload::EdArrival(pb::EdArrival {
                    encounter_id: encounter.clone(),
                    arrival_mode: pb::ArrivalMode::Ambulance as i32,
                    chief_complaint: "shortness of breath".into(),
                    department_code: "EM".into(),
                }),
            );
            let acuity = self.rng.random_range(1..=5);
            self.push(
                arrive + ed_wait_min * 60,
                m,
                Payload::EdTriage(pb::EdTriage {
                    encounter_id: encounter.clone(),
                    acuity,
                }),
            );
            arrive + ed_stay_min * 60
        } else {
            arrive
        };
        let discharge = admit + los_hours * 3600;
        let transfer_at = transfer_ward.map(|_| admit + (discharge - admit) / 3);
        let (dept, ward, bed) = self.book(preferred_ward, admit, transfer_at.unwrap_or(discharge));
        let attending = format!("DR{:03}", self.rng.random_range(1..40));
        self.push(
            admit,
            m,
            Payload::Admission(pb::Admission {
                encounter_id: encounter.clone(),
                encounter_class: pb::EncounterClass::Inpatient as i32,
                admission_type: if via_ed {
                    pb::AdmissionType::Emergency
                } else {
                    pb::AdmissionType::Elective
                } as i32,
                location: Some(pb::Location {
                    department_code: dept.into(),
                    ward_code: ward.into(),
                    bed_code: bed.clone(),
                }),
                attending_practitioner: attending,
                payer_code: payer.into(),
                admitting_diagnosis: "J18.9".into(),
            }),
        );
        self.push(
            admit,
            None,
            Payload::BedStatus(pb::BedStatus {
                location: Some(pb::Location {
                    department_code: dept.into(),
                    ward_code: ward.into(),
                    bed_code: bed.clone(),
                }),
                state: pb::BedState::Occupied as i32,
            }),
        );

        // Vital signs every 4 hours; some patients deteriorate half way through.
        let deteriorates = self.rng.random_bool(0.2);
        // About one in ten has a prescribed 88-92% SpO2 target (NEWS2 scale 2).
        let scale = if self.rng.random_bool(0.1) {
            pb::Spo2Scale::Spo2Scale2
        } else {
            pb::Spo2Scale::Spo2Scale1
        };
        let mut t = admit + 600;
        while t < discharge {
            let sick = deteriorates && t > admit + (discharge - admit) / 2;
            let vitals = self.vitals(sick, &encounter, scale);
            self.push(t, m, Payload::VitalSigns(vitals));
            t += 4 * 3600;
        }
        // Labs and medication on the first day.
        for (code, display, unit, lo, hi) in [
            ("2345-7", "Glucose", "mg/dL", 70.0, 180.0),
            ("2823-3", "Potassium", "mmol/L", 3.2, 5.4),
            ("718-7", "Hemoglobin", "g/dL", 9.0, 16.0),
        ] {
            let value = (self.rng.random_range(lo..hi) * 10.0f64).round() / 10.0;
            self.push(
                admit + 3 * 3600,
                m,
                Payload::LabResult(pb::LabResult {
                    encounter_id: encounter.clone(),
                    order_id: format!("{encounter}-LAB"),
                    loinc_code: code.into(),
                    display: display.into(),
                    value: Some(value),
                    unit: unit.into(),
                    ..Default::default()
                }),
            );
        }
        let (drug, _, _) = DRUGS[self.rng.random_range(0..DRUGS.len())];
        let order = format!("{encounter}-RX1");
        self.push(
            admit + 1800,
            m,
            Payload::MedicationOrder(pb::MedicationOrder {
                order_id: order.clone(),
                encounter_id: encounter.clone(),
                drug_code: drug.into(),
                dose_value: 500.0,
                dose_unit: "mg".into(),
                route: "PO".into(),
                frequency: "TID".into(),
                ..Default::default()
            }),
        );
        self.push(
            admit + 2400,
            m,
            Payload::MedicationDispense(pb::MedicationEvent {
                order_id: order.clone(),
                encounter_id: encounter.clone(),
                drug_code: drug.into(),
                dose_value: 500.0,
                dose_unit: "mg".into(),
                route: "PO".into(),
            }),
        );
        let mut t = admit + 3600;
        while t < discharge.min(admit + 3 * 86_400) {
            self.push(
                t,
                m,
                Payload::MedicationAdministration(pb::MedicationEvent {
                    order_id: order.clone(),
                    encounter_id: encounter.clone(),
                    drug_code: drug.into(),
                    dose_value: 500.0,
                    dose_unit: "mg".into(),
                    route: "PO".into(),
                }),
            );
            t += 8 * 3600;
        }
        if let (Some(to), Some(at)) = (transfer_ward, transfer_at) {
            let (to_dept, to_ward, to_bed) = self.book(to, at, discharge);
            self.push(
                at,
                m,
                Payload::Transfer(pb::Transfer {
                    encounter_id: encounter.clone(),
                    from: Some(pb::Location {
                        department_code: dept.into(),
                        ward_code: ward.into(),
                        bed_code: bed.clone(),
                    }),
                    to: Some(pb::Location {
                        department_code: to_dept.into(),
                        ward_code: to_ward.into(),
                        bed_code: to_bed,
                    }),
                }),
            );
        }
        if self.rng.random_bool(0.3) {
            let mut updated = demographics;
            updated.postal_code = format!("LS{} {}ZZ", self.rng.random_range(1..30), self.rng.random_range(1..9));
            self.push(admit + 7200, m, Payload::PatientUpdated(updated));
        }
        let days = ((discharge - admit) as f64 / 86_400.0).ceil().max(1.0);
        self.push(
            discharge,
            m,
            Payload::ChargeLine(pb::ChargeLine {
                charge_id: format!("{encounter}-BED"),
                encounter_id: encounter.clone(),
                code: "0110".into(),
                description: "Room and board, private".into(),
                quantity: days,
                unit_price_minor: 95_000,
                currency: "GBP".into(),
                payer_code: payer.into(),
            }),
        );
        self.push(
            discharge,
            m,
            Payload::Discharge(pb::Discharge {
                encounter_id: encounter,
                disposition: pb::DischargeDisposition::Home as i32,
            }),
        );
    }

    fn vitals(&mut self, sick: bool, encounter: &str, scale: pb::Spo2Scale) -> pb::VitalSigns {
        let r = &mut self.rng;
        let obs = |code: &str, value: f64, unit: &str| pb::Observation {
            loinc_code: code.into(),
            value,
            unit: unit.into(),
        };
        let (rr, spo2, sbp, hr, temp_f) = if sick {
            (
                r.random_range(22..30),
                r.random_range(86..93),
                r.random_range(85..105),
                r.random_range(105..135),
                r.random_range(100.5..103.0),
            )
        } else {
            (
                r.random_range(12..20),
                r.random_range(95..100),
                r.random_range(110..140),
                r.random_range(60..90),
                r.random_range(97.0..99.5),
            )
        };
        pb::VitalSigns {
            encounter_id: encounter.into(),
            observations: vec![
                obs("9279-1", rr as f64, "/min"),
                obs("59408-5", spo2 as f64, "%"),
                obs("8480-6", sbp as f64, "mm[Hg]"),
                obs("8867-4", hr as f64, "/min"),
                // Some devices chart in Fahrenheit: the platform converts at the door.
                obs("8310-5", (temp_f * 10.0f64).round() / 10.0, "[degF]"),
            ],
            consciousness: if sick && r.random_bool(0.3) {
                pb::Consciousness::NewConfusion
            } else {
                pb::Consciousness::Alert
            } as i32,
            supplemental_oxygen: Some(sick),
            spo2_scale: scale as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let opts = GeneratorOptions {
            patients: 20,
            ..Default::default()
        };
        assert_eq!(generate(&opts), generate(&opts));
        let other = generate(&GeneratorOptions {
            seed: 7,
            ..opts.clone()
        });
        assert_ne!(generate(&opts), other);
    }

    #[test]
    fn event_ids_are_unique_and_every_patient_is_discharged() {
        let events = generate(&GeneratorOptions {
            patients: 50,
            ..Default::default()
        });
        let mut ids: Vec<_> = events.iter().map(|e| e.event_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), events.len());
        let discharges = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::Discharge(_))))
            .count();
        assert_eq!(discharges, 50);
    }

    #[test]
    fn no_two_patients_share_a_bed() {
        let events = generate(&GeneratorOptions {
            patients: 150,
            ..Default::default()
        });
        // Per encounter: where it is from when, until discharge.
        let mut stays: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let mut ends: HashMap<String, i64> = HashMap::new();
        for e in &events {
            let at = e.occurred_at.as_ref().unwrap().seconds;
            match &e.payload {
                Some(Payload::Admission(a)) => stays
                    .entry(a.encounter_id.clone())
                    .or_default()
                    .push((a.location.as_ref().unwrap().bed_code.clone(), at)),
                Some(Payload::Transfer(t)) => stays
                    .entry(t.encounter_id.clone())
                    .or_default()
                    .push((t.to.as_ref().unwrap().bed_code.clone(), at)),
                Some(Payload::Discharge(d)) => {
                    ends.insert(d.encounter_id.clone(), at);
                }
                _ => {}
            }
        }
        let mut by_bed: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for (enc, moves) in &stays {
            for (i, (bed, from)) in moves.iter().enumerate() {
                let to = moves.get(i + 1).map(|m| m.1).unwrap_or(ends[enc]);
                by_bed.entry(bed.clone()).or_default().push((*from, to));
            }
        }
        for (bed, mut periods) in by_bed {
            periods.sort();
            for w in periods.windows(2) {
                assert!(w[0].1 <= w[1].0, "{bed} is double-booked: {:?}", w);
            }
        }
    }
}
