//! The live census against a real ClickHouse (hospital-testkit): a restart shows the same
//! census. Events are staged, part of them loaded into the warehouse; a census rebuilt
//! with `CensusState::load` plus the staged events after its watermark equals one that
//! applied every staged event from the start.

mod common;

use common::StagingHarness;

use std::collections::BTreeSet;

use hospital_platform::batch::WarehouseLoader;
use hospital_platform::db;
use hospital_platform::realtime::census::{CensusState, PatientLocation};
use hospital_proto::events::clinical_event::Payload;
use hospital_proto::events::{self as pb, reference_data::Item, BedState, ClinicalEvent, EncounterClass};
use hospital_proto::realtime::{Census, GetCensusRequest};
use prost::Message;
use serde::Deserialize;

/// 2024-03-01T08:00:00Z, in seconds.
const T0: i64 = 1_709_280_000;
const MIN: i64 = 60;
/// The census clock: a day after T0 (ms).
const NOW_MS: i64 = (T0 + 24 * 3_600) * 1000;

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn ev(id: &str, at: i64, mrn: Option<&str>, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: id.into(),
        source_system: "epic-adt".into(),
        occurred_at: ts(at),
        patient: mrn.map(|m| pb::PatientRef {
            mrn: m.into(),
            assigning_authority: "city-hospital".into(),
        }),
        payload: Some(payload),
    }
}

fn loc(dept: &str, ward: &str, bed: &str) -> Option<pb::Location> {
    Some(pb::Location {
        department_code: dept.into(),
        ward_code: ward.into(),
        bed_code: bed.into(),
    })
}

fn ward(id: &str, at: i64, dept: (&str, &str), ward: (&str, &str), beds: u32) -> ClinicalEvent {
    ev(
        id,
        at,
        None,
        Payload::ReferenceData(pb::ReferenceData {
            item: Some(Item::Ward(pb::Ward {
                department_code: dept.0.into(),
                department_name: dept.1.into(),
                ward_code: ward.0.into(),
                ward_name: ward.1.into(),
                bed_count: beds,
            })),
        }),
    )
}

fn admit(id: &str, at: i64, n: u32, class: EncounterClass, l: Option<pb::Location>) -> ClinicalEvent {
    ev(
        id,
        at,
        Some(&format!("MRN{n}")),
        Payload::Admission(pb::Admission {
            encounter_id: format!("ENC{n}"),
            encounter_class: class as i32,
            admission_type: pb::AdmissionType::Emergency as i32,
            location: l,
            ..Default::default()
        }),
    )
}

fn transfer(id: &str, at: i64, n: u32, to: Option<pb::Location>) -> ClinicalEvent {
    ev(
        id,
        at,
        Some(&format!("MRN{n}")),
        Payload::Transfer(pb::Transfer {
            encounter_id: format!("ENC{n}"),
            from: None,
            to,
        }),
    )
}

fn discharge(id: &str, at: i64, n: u32) -> ClinicalEvent {
    ev(
        id,
        at,
        Some(&format!("MRN{n}")),
        Payload::Discharge(pb::Discharge {
            encounter_id: format!("ENC{n}"),
            disposition: pb::DischargeDisposition::Home as i32,
        }),
    )
}

fn arrive(id: &str, at: i64, n: u32) -> ClinicalEvent {
    ev(
        id,
        at,
        Some(&format!("MRN{n}")),
        Payload::EdArrival(pb::EdArrival {
            encounter_id: format!("ENC{n}"),
            arrival_mode: pb::ArrivalMode::WalkIn as i32,
            chief_complaint: "chest pain".into(),
            department_code: "ED".into(),
        }),
    )
}

fn triage(id: &str, at: i64, n: u32, acuity: u32) -> ClinicalEvent {
    ev(
        id,
        at,
        Some(&format!("MRN{n}")),
        Payload::EdTriage(pb::EdTriage {
            encounter_id: format!("ENC{n}"),
            acuity,
        }),
    )
}

fn bed(id: &str, at: i64, l: Option<pb::Location>, state: BedState) -> ClinicalEvent {
    ev(
        id,
        at,
        None,
        Payload::BedStatus(pb::BedStatus {
            location: l,
            state: state as i32,
        }),
    )
}

/// Round 1, loaded into the warehouse: wards, inpatients, ED patients, bed states, with
/// out-of-order events and resends.
fn round1() -> Vec<ClinicalEvent> {
    use EncounterClass::{Emergency, Inpatient};
    let mut out = vec![
        ward("ref-w1", T0 - 86_400, ("MED", "Medicine"), ("W1", "Ward One"), 10),
        ward("ref-w2", T0 - 86_400, ("MED", "Medicine"), ("W2", "Ward Two"), 6),
        ward("ref-i1", T0 - 86_400, ("ICU", "Intensive Care"), ("I1", "ICU One"), 4),
        ward("ref-maj", T0 - 86_400, ("ED", "Emergency"), ("MAJ", "Majors"), 8),
        // 1: admitted to W1, moved to W2.
        admit("adm-1", T0, 1, Inpatient, loc("MED", "W1", "B1")),
        transfer("xfer-1a", T0 + 60 * MIN, 1, loc("MED", "W2", "B1")),
        // 2: admitted and discharged.
        admit("adm-2", T0 + 10 * MIN, 2, Inpatient, loc("MED", "W1", "B2")),
        discharge("dis-2", T0 + 120 * MIN, 2),
        // 3: the discharge staged before its admission: never counted.
        discharge("dis-3", T0 + 300 * MIN, 3),
        admit("adm-3", T0, 3, Inpatient, loc("MED", "W1", "B3")),
        // 4: waiting in the ED, triaged.
        arrive("arr-4", T0 + 5 * MIN, 4),
        triage("tri-4", T0 + 15 * MIN, 4, 3),
        // 5: in an ED cubicle (emergency class, ED department): still on the list.
        arrive("arr-5", T0 + 20 * MIN, 5),
        triage("tri-5", T0 + 25 * MIN, 5, 1),
        admit("adm-5", T0 + 30 * MIN, 5, Emergency, loc("ED", "MAJ", "C1")),
        // 6: from the ED to a medical ward: leaves the list.
        arrive("arr-6", T0 + 40 * MIN, 6),
        admit("adm-6", T0 + 100 * MIN, 6, Inpatient, loc("MED", "W1", "B4")),
        // 7: ICU then W2; the older move to W1 arrives last and does not count.
        admit("adm-7", T0 + 50 * MIN, 7, Inpatient, loc("ICU", "I1", "B1")),
        transfer("xfer-7b", T0 + 200 * MIN, 7, loc("MED", "W2", "B2")),
        transfer("xfer-7a", T0 + 150 * MIN, 7, loc("MED", "W1", "B9")),
        // 8: on W1 without a bed.
        admit("adm-8", T0 + 55 * MIN, 8, Inpatient, loc("MED", "W1", "")),
        // 9: waiting, untriaged.
        arrive("arr-9", T0 + 45 * MIN, 9),
        bed("bed-w1-b7", T0, loc("MED", "W1", "B7"), BedState::Cleaning),
        bed("bed-w1-b8", T0, loc("MED", "W1", "B8"), BedState::Blocked),
        bed("bed-w1-b4", T0 + 5 * MIN, loc("MED", "W1", "B4"), BedState::Cleaning),
        bed("bed-i1-b2", T0, loc("ICU", "I1", "B2"), BedState::Closed),
        bed("bed-w2-b5", T0, loc("MED", "W2", "B5"), BedState::Available),
    ];
    // Resends, identical.
    let resends: Vec<ClinicalEvent> = out
        .iter()
        .filter(|e| ["adm-1", "arr-4", "bed-w1-b8"].contains(&e.event_id.as_str()))
        .cloned()
        .collect();
    out.extend(resends);
    out
}

/// Round 2, staged after the load: moves, discharges, triages of loaded encounters,
/// late events of encounters the warehouse already closed, older events that lose.
fn round2() -> Vec<ClinicalEvent> {
    use EncounterClass::Inpatient;
    vec![
        transfer("xfer-1b", T0 + 400 * MIN, 1, loc("ICU", "I1", "B3")),
        discharge("dis-8", T0 + 410 * MIN, 8),
        admit("adm-4", T0 + 420 * MIN, 4, Inpatient, loc("MED", "W1", "B5")),
        triage("tri-9", T0 + 430 * MIN, 9, 2),
        // Closed in the warehouse: the tombstones come from the load.
        transfer("xfer-3", T0 + 440 * MIN, 3, loc("MED", "W1", "B6")),
        transfer("xfer-2", T0 + 445 * MIN, 2, loc("MED", "W2", "B6")),
        // Older than the loaded location: no move back.
        transfer("xfer-7c", T0 + 180 * MIN, 7, loc("ICU", "I1", "B4")),
        // An earlier triage of 5: it becomes the initial assessment.
        triage("tri-5-early", T0 + 22 * MIN, 5, 4),
        // Older than the loaded bed state: no change; a newer one unblocks B8.
        bed(
            "bed-w1-b7-old",
            T0 - 10 * MIN,
            loc("MED", "W1", "B7"),
            BedState::Available,
        ),
        bed(
            "bed-w1-b8-free",
            T0 + 450 * MIN,
            loc("MED", "W1", "B8"),
            BedState::Available,
        ),
        ward("ref-w2-new", T0 + 460 * MIN, ("MED", "Medicine"), ("W2", "Ward 2"), 8),
        ward(
            "ref-w1-old",
            T0 - 2 * 86_400,
            ("MED", "Old Medicine"),
            ("W1", "Old name"),
            1,
        ),
        arrive("arr-10", T0 + 470 * MIN, 10),
        // Loaded events resent.
        admit("adm-6", T0 + 100 * MIN, 6, Inpatient, loc("MED", "W1", "B4")),
        bed("bed-w1-b7", T0, loc("MED", "W1", "B7"), BedState::Cleaning),
        arrive("arr-9", T0 + 45 * MIN, 9),
    ]
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct StagedPayload {
    position: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

impl StagingHarness {
    async fn load_warehouse(&self) -> u64 {
        let loader = WarehouseLoader::new(
            &db::Databases::new(&self.cfg),
            self.writer.handle().subscribe_committed(),
            10,
        );
        loader.run(false, None).await.expect("warehouse load").to_position
    }

    /// Every staged event, in staging order, as the real-time stage receives them.
    async fn staged_events(&self) -> Vec<(u64, ClinicalEvent)> {
        db::client_for(&self.cfg, "staging")
            .query("SELECT position, payload FROM events ORDER BY position")
            .fetch_all::<StagedPayload>()
            .await
            .expect("read staging")
            .into_iter()
            .map(|r| {
                (
                    r.position,
                    ClinicalEvent::decode(r.payload.as_slice()).expect("decodes"),
                )
            })
            .collect()
    }

    async fn restarted(&self) -> (CensusState, u64) {
        CensusState::load(&db::client_for(&self.cfg, "warehouse"))
            .await
            .expect("census loads")
    }
}

fn replay(mut state: CensusState, events: &[(u64, ClinicalEvent)], after: u64) -> CensusState {
    for (position, e) in events.iter().filter(|(p, _)| *p > after) {
        state.apply(*position, e);
    }
    state
}

/// The census with waiting times cleared (they depend only on the clock).
fn census(state: &CensusState, departments: &[&str]) -> Census {
    let req = GetCensusRequest {
        department_codes: departments.iter().map(|d| d.to_string()).collect(),
    };
    let mut c = state.snapshot(&req, NOW_MS);
    for p in &mut c.ed_waiting {
        p.waiting_minutes = 0;
    }
    c
}

fn locations(state: &CensusState) -> Vec<Option<PatientLocation>> {
    (1..=10)
        .map(|n| {
            state.location_of(&pb::PatientRef {
                mrn: format!("MRN{n}"),
                assigning_authority: "city-hospital".into(),
            })
        })
        .collect()
}

fn assert_same(restarted: &CensusState, fresh: &CensusState, what: &str) {
    assert_eq!(restarted.position(), fresh.position(), "{what}: position");
    for filter in [&[][..], &["MED"], &["ED", "ICU"]] {
        assert_eq!(
            census(restarted, filter),
            census(fresh, filter),
            "{what}: census of {filter:?}"
        );
    }
    assert_eq!(locations(restarted), locations(fresh), "{what}: patient locations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_shows_the_same_census() {
    let h = StagingHarness::start().await;
    let loaded_to = h.stage(&round1()).await;
    assert_eq!(h.load_warehouse().await, loaded_to);
    let last = h.stage(&round2()).await;
    let events = h.staged_events().await;
    assert_eq!(events.len() as u64, last);

    let fresh_at_watermark = replay(CensusState::new(), &events[..loaded_to as usize], 0);
    let fresh = replay(CensusState::new(), &events, 0);

    // Rebuilt from the warehouse alone: the census as of the watermark.
    let (restarted, watermark) = h.restarted().await;
    assert_eq!(watermark, loaded_to);
    assert_same(&restarted, &fresh_at_watermark, "loaded");

    // Then the staged events after the watermark: the census now.
    let restarted = replay(restarted, &events, watermark);
    assert_same(&restarted, &fresh, "loaded + replayed");
    // Replaying from earlier than the watermark (events already loaded) changes nothing.
    let (again, _) = h.restarted().await;
    let again = replay(again, &events, watermark / 2);
    assert_same(&again, &fresh, "loaded + replayed from before the watermark");

    // The census itself, so that the comparison is not between two empty states.
    let c = census(&fresh, &[]);
    assert_eq!(c.position, last);
    let wards: Vec<(&str, &str, u32, u32, u32, u32)> = c
        .wards
        .iter()
        .map(|w| {
            (
                w.ward_code.as_str(),
                w.ward_name.as_str(),
                w.beds,
                w.occupied,
                w.available,
                w.blocked,
            )
        })
        .collect();
    assert_eq!(
        wards,
        vec![
            // ED/MAJ: 5 in a cubicle.
            ("MAJ", "Majors", 8, 1, 7, 0),
            // ICU/I1: 1 on B3; B2 closed.
            ("I1", "ICU One", 4, 1, 2, 1),
            // MED/W1: 6 on B4 (marked cleaning, but occupied), 4 on B5; B7 cleaning.
            ("W1", "Ward One", 10, 2, 7, 1),
            // MED/W2: 7 on B2; renamed, 8 beds.
            ("W2", "Ward 2", 8, 1, 7, 0),
        ]
    );
    let departments: Vec<(&str, &str, u32, u32, u32)> = c
        .departments
        .iter()
        .map(|d| {
            (
                d.department_code.as_str(),
                d.department_name.as_str(),
                d.beds,
                d.occupied,
                d.available,
            )
        })
        .collect();
    assert_eq!(
        departments,
        vec![
            ("ED", "Emergency", 8, 1, 7),
            ("ICU", "Intensive Care", 4, 1, 2),
            ("MED", "Medicine", 18, 3, 14),
        ]
    );
    let ed: Vec<(&str, u32)> = c
        .ed_waiting
        .iter()
        .map(|p| (p.encounter_id.as_str(), p.acuity))
        .collect();
    assert_eq!(ed, vec![("ENC9", 2), ("ENC5", 4), ("ENC10", 0)]);
    assert_eq!(c.inpatients, 4, "1, 4, 6 and 7; 5 is still an ED patient");
    let placed: BTreeSet<String> = locations(&fresh)
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{}:{}/{}/{}",
                l.encounter_id, l.department_code, l.ward_code, l.bed_code
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            "ENC1:ICU/I1/B3",
            "ENC4:MED/W1/B5",
            "ENC5:ED/MAJ/C1",
            "ENC6:MED/W1/B4",
            "ENC7:MED/W2/B2",
            "ENC9:ED//",
            "ENC10:ED//",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );

    // After the next load, the warehouse alone gives the census now.
    assert_eq!(h.load_warehouse().await, last);
    let (reloaded, watermark) = h.restarted().await;
    assert_eq!(watermark, last);
    assert_same(&reloaded, &fresh, "reloaded");

    // The beds come from their current states (one row per bed, kept by the load), not
    // from every bed event: equal to the latest event of each bed, ...
    let latest = "SELECT department_code, ward_code, bed_code, argMax(state, (occurred_at_ms, source_position)), \
         max(occurred_at_ms), argMax(source_position, (occurred_at_ms, source_position)) FROM warehouse.{} \
         WHERE ward_code != '' AND bed_code != '' GROUP BY department_code, ward_code, bed_code \
         ORDER BY department_code, ward_code, bed_code";
    let from_facts = h.ch.query(&latest.replace("{}", "fact_bed_status FINAL")).unwrap();
    assert_eq!(
        h.ch.query(&latest.replace("{}", "bed_status_current")).unwrap(),
        from_facts
    );
    assert_eq!(from_facts.lines().count(), 5, "{from_facts}");
    // ... backfilled from the facts by the migration that adds the table, ...
    h.ch.query("DROP TABLE warehouse.bed_status_current").unwrap();
    h.ch.query("TRUNCATE TABLE warehouse.schema_migrations").unwrap();
    hospital_platform::schema::migrate(&db::client(&h.cfg))
        .await
        .expect("migrations re-apply");
    assert_eq!(
        h.ch.query(&latest.replace("{}", "bed_status_current")).unwrap(),
        from_facts
    );
    // ... and read without the bed events.
    h.ch.query("TRUNCATE TABLE warehouse.fact_bed_status").unwrap();
    let (without_facts, _) = h.restarted().await;
    assert_same(&without_facts, &fresh, "loaded without fact_bed_status");

    h.writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_warehouse_loads_an_empty_census() {
    let h = StagingHarness::start().await;
    let (state, watermark) = h.restarted().await;
    assert_eq!((watermark, state.position()), (0, 0));
    assert_eq!(census(&state, &[]), census(&CensusState::new(), &[]));
    h.writer.shutdown().await;
}
