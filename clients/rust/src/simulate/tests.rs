use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

fn run(days: i64, seed: u64) -> (Vec<pb::ClinicalEvent>, SimStats) {
    let start = SimOptions::default().start_secs;
    let mut sim = Simulator::new(SimOptions {
        seed,
        end_secs: Some(start + days * DAY),
        ..Default::default()
    });
    let events: Vec<_> = sim.by_ref().collect();
    (events, sim.stats())
}

fn at(e: &pb::ClinicalEvent) -> i64 {
    e.occurred_at.as_ref().expect("occurred_at").seconds
}

#[test]
fn same_seed_same_events_other_seed_other_events() {
    let (a, _) = run(3, 42);
    let (b, _) = run(3, 42);
    assert_eq!(a, b);
    let (c, _) = run(3, 7);
    assert_ne!(a, c);
    // Another start gives other ids, so two periods never collide in the platform.
    let mut later = Simulator::new(SimOptions {
        start_secs: SimOptions::default().start_secs + 7 * DAY,
        end_secs: None,
        ..Default::default()
    });
    let ids: HashSet<_> = a.iter().map(|e| e.event_id.clone()).collect();
    assert!(later
        .by_ref()
        .take(5_000)
        .filter(|e| !matches!(e.payload, Some(Payload::ReferenceData(_))))
        .all(|e| !ids.contains(&e.event_id)));
}

#[test]
fn events_are_in_time_order_inside_the_period_with_unique_ids() {
    let (events, stats) = run(7, 42);
    let start = SimOptions::default().start_secs;
    let end = start + 7 * DAY;
    // In time order, but for operations, sent when they end with their start time.
    let timeline: Vec<_> = events
        .iter()
        .filter(|e| !matches!(e.payload, Some(Payload::Procedure(_))))
        .collect();
    assert!(timeline.windows(2).all(|w| at(w[0]) <= at(w[1])));
    assert!(events.iter().all(|e| (start..end).contains(&at(e))));
    let ids: HashSet<_> = events.iter().map(|e| (&e.source_system, &e.event_id)).collect();
    assert_eq!(ids.len(), events.len());
    assert_eq!(stats.events, events.len() as u64);
    let sources: HashSet<_> = events.iter().map(|e| e.source_system.clone()).collect();
    let known: HashSet<_> = Simulator::source_systems("sim").into_iter().collect();
    assert!(sources.is_subset(&known), "{sources:?}");
    assert_eq!(sources.len(), known.len(), "every system sends something");
}

#[test]
fn stats_agree_with_the_events_and_every_encounter_is_accounted_for() {
    let (events, stats) = run(28, 42);
    let kinds = count_by_kind(&events);
    assert_eq!(kinds["ed_arrival"], stats.ed_arrivals);
    assert_eq!(
        kinds["admission"],
        stats.emergency_admissions + stats.elective_admissions
    );
    assert_eq!(kinds["discharge"], stats.discharges);
    assert_eq!(kinds.get("transfer").copied().unwrap_or(0), stats.transfers);
    assert_eq!(
        stats.ed_arrivals + stats.elective_admissions,
        stats.discharges + stats.in_hospital_at_end
    );
    // Every kind of event a hospital's systems send is there (risk scores come from the
    // ML sidecar).
    for kind in hospital_proto::EVENT_KINDS.iter().filter(|k| **k != "risk_score") {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind} in {kinds:?}");
    }
    // Four realistic weeks at 90 ED arrivals a day: busy wards, some boarding,
    // deteriorations, ICU admissions and deaths.
    let per_day = stats.ed_arrivals as f64 / 28.0;
    assert!((80.0..100.0).contains(&per_day), "{per_day} ED arrivals a day");
    assert!(stats.max_occupied_beds > 120, "{stats:?}");
    assert!(
        stats.deteriorations > 10 && stats.icu_admissions > 0 && stats.deaths > 0,
        "{stats:?}"
    );
    assert!(stats.elective_admissions > 60 && stats.boarded > 0, "{stats:?}");
}

/// Per bed: who is in it from when; no two encounters at once, and a bed is only
/// occupied after it was freed and cleaned.
fn assert_no_bed_holds_two_patients(events: &[pb::ClinicalEvent]) {
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut state: HashMap<String, i32> = HashMap::new();
    let mut bed_of: HashMap<String, String> = HashMap::new();
    for e in events {
        match &e.payload {
            Some(Payload::Admission(a)) => {
                let bed = a.location.as_ref().unwrap().bed_code.clone();
                assert!(
                    !holder.contains_key(&bed),
                    "{bed} taken at admission of {}",
                    a.encounter_id
                );
                holder.insert(bed.clone(), a.encounter_id.clone());
                bed_of.insert(a.encounter_id.clone(), bed);
            }
            Some(Payload::Transfer(t)) => {
                let from = t.from.as_ref().unwrap().bed_code.clone();
                let to = t.to.as_ref().unwrap().bed_code.clone();
                assert_eq!(holder.remove(&from).as_deref(), Some(t.encounter_id.as_str()));
                assert!(!holder.contains_key(&to), "{to} taken");
                holder.insert(to.clone(), t.encounter_id.clone());
                bed_of.insert(t.encounter_id.clone(), to);
            }
            Some(Payload::Discharge(d)) => {
                if let Some(bed) = bed_of.remove(&d.encounter_id) {
                    assert_eq!(holder.remove(&bed).as_deref(), Some(d.encounter_id.as_str()));
                }
            }
            Some(Payload::BedStatus(b)) => {
                let bed = b.location.as_ref().unwrap().bed_code.clone();
                let previous = state.insert(bed.clone(), b.state);
                if b.state == pb::BedState::Occupied as i32 {
                    assert!(
                        previous.is_none_or(|p| p == pb::BedState::Available as i32),
                        "{bed} occupied from state {previous:?}"
                    );
                }
            }
            _ => {}
        }
    }
}

#[test]
fn no_bed_holds_two_patients() {
    let (events, _) = run(14, 3);
    assert_no_bed_holds_two_patients(&events);
}

/// A warmed-up hospital starts full, and its go-live snapshot is whole: every patient is
/// registered and every encounter introduced (ED arrival or admission) before anything
/// refers to them; nothing before the period is sent but the snapshot's kinds.
#[test]
fn a_warmed_up_hospital_starts_full_with_a_consistent_snapshot() {
    let start = SimOptions::default().start_secs;
    let mut sim = Simulator::new(SimOptions {
        warm_up_days: 14,
        end_secs: Some(start + 3 * DAY),
        ..Default::default()
    });
    let events: Vec<_> = sim.by_ref().collect();
    let stats = sim.stats();
    assert_no_bed_holds_two_patients(&events);
    let occupied_at_start = events
        .iter()
        .take_while(|e| at(e) <= start)
        .filter(|e| matches!(&e.payload, Some(Payload::BedStatus(b)) if b.state == pb::BedState::Occupied as i32))
        .count();
    assert!(
        occupied_at_start > 120,
        "{occupied_at_start} beds occupied at the start"
    );
    let mut registered = HashSet::new();
    let mut introduced = HashSet::new();
    for e in &events {
        let encounter = match &e.payload {
            Some(Payload::PatientRegistered(_)) => {
                registered.insert(e.patient.as_ref().unwrap().mrn.clone());
                None
            }
            Some(Payload::EdArrival(a)) => {
                introduced.insert(a.encounter_id.clone());
                None
            }
            Some(Payload::Admission(a)) => {
                introduced.insert(a.encounter_id.clone());
                None
            }
            Some(Payload::EdTriage(t)) => Some(&t.encounter_id),
            Some(Payload::Transfer(t)) => Some(&t.encounter_id),
            Some(Payload::Discharge(d)) => Some(&d.encounter_id),
            Some(Payload::VitalSigns(v)) => Some(&v.encounter_id),
            Some(Payload::MedicationAdministration(m)) => Some(&m.encounter_id),
            _ => None,
        };
        if let Some(encounter) = encounter {
            assert!(
                introduced.contains(encounter),
                "{} before its encounter {encounter}",
                e.event_id
            );
        }
        if let Some(p) = &e.patient {
            assert!(
                registered.contains(&p.mrn),
                "{} before {} is registered",
                e.event_id,
                p.mrn
            );
        }
        if at(e) < start {
            assert!(
                matches!(
                    e.payload,
                    Some(
                        Payload::PatientRegistered(_)
                            | Payload::EdArrival(_)
                            | Payload::EdTriage(_)
                            | Payload::Admission(_)
                            | Payload::Transfer(_)
                            | Payload::Diagnosis(_)
                            | Payload::Procedure(_)
                            | Payload::MedicationOrder(_)
                    )
                ),
                "{e:?} sent from before the period"
            );
        }
    }
    // Counting starts at the period: discharges include patients admitted before it.
    assert!(stats.discharges > stats.ed_arrivals / 2, "{stats:?}");
}

#[test]
fn arrivals_are_busier_by_day_than_at_night() {
    let (events, _) = run(14, 42);
    let mut by_hour = [0u32; 24];
    for e in &events {
        if matches!(e.payload, Some(Payload::EdArrival(_))) {
            by_hour[arrivals::weekday_hour(at(e)).1] += 1;
        }
    }
    let night: u32 = by_hour[2..6].iter().sum();
    let day: u32 = by_hour[10..14].iter().sum();
    assert!(day > 2 * night, "{by_hour:?}");
}

/// Deterioration shows in the chart: a deteriorating patient's observations reach the
/// ranges that score 3 on a NEWS2 parameter, and become hourly.
#[test]
fn deteriorations_show_in_vital_signs() {
    let (events, stats) = run(14, 42);
    assert!(stats.deteriorations > 0);
    let mut worst: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for e in &events {
        if let Some(Payload::VitalSigns(v)) = &e.payload {
            let get = |code: &str| v.observations.iter().find(|o| o.loinc_code == code).map(|o| o.value);
            let w = worst.entry(v.encounter_id.clone()).or_insert((0.0, 100.0));
            w.0 = w.0.max(get("9279-1").unwrap());
            w.1 = w.1.min(get("59408-5").unwrap());
        }
    }
    let very_unwell = worst.values().filter(|(rr, _)| *rr >= 25.0).count();
    assert!(
        very_unwell as u64 >= stats.deteriorations / 3,
        "{very_unwell} of {stats:?}"
    );
    // Most patients stay well.
    assert!(very_unwell * 5 < worst.len(), "{very_unwell} of {}", worst.len());
}

#[test]
fn medication_follows_orders_and_charges_follow_the_stay() {
    let (events, _) = run(7, 42);
    let mut orders: HashMap<String, String> = HashMap::new();
    for e in &events {
        match &e.payload {
            Some(Payload::MedicationOrder(o)) => {
                orders.insert(o.order_id.clone(), o.drug_code.clone());
            }
            Some(Payload::MedicationAdministration(m)) | Some(Payload::MedicationDispense(m)) => {
                assert_eq!(
                    orders.get(&m.order_id),
                    Some(&m.drug_code),
                    "{} before its order",
                    m.order_id
                );
            }
            Some(Payload::ChargeLine(c)) => {
                assert!(c.unit_price_minor > 0 && c.quantity > 0.0, "{c:?}");
                assert!(PAYERS.iter().any(|p| p.0 == c.payer_code));
            }
            _ => {}
        }
    }
    // Private payers pay more for the same bed day.
    let prices: HashSet<(String, i64)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::ChargeLine(c)) if c.code == "0120" => Some((c.payer_code.clone(), c.unit_price_minor)),
            _ => None,
        })
        .collect();
    let nhs = prices.iter().find(|p| p.0 == "NHS").map(|p| p.1);
    let aetna = prices.iter().find(|p| p.0 == "AETNA").map(|p| p.1);
    assert!(nhs.unwrap() < aetna.unwrap(), "{prices:?}");
}

#[test]
fn an_open_ended_run_keeps_going() {
    let start = SimOptions::default().start_secs;
    let sim = Simulator::new(SimOptions {
        end_secs: None,
        ed_arrivals_per_day: 30.0,
        ..Default::default()
    });
    let last = sim.take_while(|e| at(e) < start + 40 * DAY).last().unwrap();
    assert!(at(&last) >= start + 39 * DAY);
}

/// Everyone sent home from the ED leaves the same day: the ED's decision is final (a
/// patient too unwell for home is admitted, not held).
#[test]
fn ed_stays_end_with_admission_or_discharge_within_a_day() {
    let (events, _) = run(14, 42);
    let mut arrived: HashMap<String, i64> = HashMap::new();
    for e in &events {
        match &e.payload {
            Some(Payload::EdArrival(a)) => {
                arrived.insert(a.encounter_id.clone(), at(e));
            }
            Some(Payload::Admission(a)) => {
                arrived.remove(&a.encounter_id);
            }
            Some(Payload::Discharge(d)) => {
                if let Some(t) = arrived.remove(&d.encounter_id) {
                    assert!(
                        at(e) - t < DAY,
                        "{} spent {} h in the ED",
                        d.encounter_id,
                        (at(e) - t) / 3600
                    );
                }
            }
            _ => {}
        }
    }
}
