//! The real-time stage end to end over gRPC against a real ClickHouse: NEWS2 alerts to
//! filtered subscribers (alert, escalation, no repeat), the live census and the ED list,
//! and the same census, scores and no repeated alerts after a platform restart.

mod common;

use std::time::Duration;

use common::*;
use hospital_proto::events::{self as pb, clinical_event::Payload, reference_data::Item};
use hospital_proto::realtime::alert_service_client::AlertServiceClient;
use hospital_proto::realtime::census_service_client::CensusServiceClient;
use hospital_proto::realtime::{
    census_update, Alert, AlertKind, Census, GetCensusRequest, GetScoresRequest, RiskBand, SubscribeAlertsRequest,
};
use prost_types::Timestamp;

struct Events {
    t0: i64,
    n: usize,
}

impl Events {
    fn ev(&mut self, minutes: i64, mrn: Option<&str>, payload: Payload) -> pb::ClinicalEvent {
        self.n += 1;
        pb::ClinicalEvent {
            event_id: format!("rt-{}", self.n),
            source_system: "ward-ehr".into(),
            occurred_at: Some(Timestamp {
                seconds: self.t0 + minutes * 60,
                nanos: 0,
            }),
            patient: mrn.map(|m| pb::PatientRef {
                mrn: m.into(),
                assigning_authority: "HOSP".into(),
            }),
            payload: Some(payload),
        }
    }
}

fn ward(dept: &str, ward: &str, beds: u32) -> Payload {
    Payload::ReferenceData(pb::ReferenceData {
        item: Some(Item::Ward(pb::Ward {
            department_code: dept.into(),
            department_name: format!("{dept} department"),
            ward_code: ward.into(),
            ward_name: format!("Ward {ward}"),
            bed_count: beds,
        })),
    })
}

fn loc(dept: &str, ward: &str, bed: &str) -> Option<pb::Location> {
    Some(pb::Location {
        department_code: dept.into(),
        ward_code: ward.into(),
        bed_code: bed.into(),
    })
}

fn admit(enc: &str, dept: &str, w: &str, bed: &str) -> Payload {
    Payload::Admission(pb::Admission {
        encounter_id: enc.into(),
        encounter_class: pb::EncounterClass::Inpatient as i32,
        admission_type: pb::AdmissionType::Emergency as i32,
        location: loc(dept, w, bed),
        ..Default::default()
    })
}

/// A full set: (respiration, SpO2, systolic BP, pulse, temperature) on air, alert.
fn vitals(enc: &str, rr: f64, spo2: f64, sbp: f64, hr: f64, temp: f64) -> Payload {
    full_vital_set(enc, [rr, spo2, sbp, hr, temp], false, pb::Spo2Scale::Spo2Scale1)
}

async fn ingest(addr: std::net::SocketAddr, events: Vec<pb::ClinicalEvent>) {
    let n = events.len();
    let ack = ingest_client(addr)
        .await
        .ingest_batch(request("rt", &events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.committed_event_ids.len(), n, "{:?}", ack.rejections);
}

async fn next_alert(stream: &mut tonic::Streaming<Alert>) -> Alert {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an alert within 30 s")
        .unwrap()
        .expect("stream open")
}

async fn census(addr: std::net::SocketAddr) -> Census {
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    CensusServiceClient::new(channel)
        .get_census(GetCensusRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Rows in the alert audit table (every copy written, before any merge) once the row of
/// `alert_id` is there. The audit writer writes in the order alerts are raised, so every
/// alert raised before that one, a repeated one included, is written by then.
async fn audited_through(ch: &hospital_testkit::ClickHouseServer, alert_id: &str) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let sql = format!("SELECT count() FROM warehouse.news2_alerts WHERE alert_id = '{alert_id}'");
    while count(ch, &sql) == 0 {
        assert!(std::time::Instant::now() < deadline, "alert {alert_id} not audited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count(ch, "SELECT count() FROM warehouse.news2_alerts")
}

/// The census without what depends on the wall clock.
fn comparable(mut c: Census) -> Census {
    c.as_of = None;
    for p in &mut c.ed_waiting {
        p.waiting_minutes = 0;
    }
    c
}

/// Waits until the census has caught up with staging position `at`.
async fn census_at(addr: std::net::SocketAddr, at: u64) -> Census {
    for _ in 0..300 {
        let c = census(addr).await;
        if c.position >= at {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("census did not reach position {at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_census_and_scores_are_live_and_survive_a_restart() {
    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    // The wards first: a filter may only name a ward the census knows.
    let mut e = Events {
        t0: now_secs() - 6 * 3600,
        n: 0,
    };
    ingest(
        addr,
        vec![
            e.ev(0, None, ward("MED", "W10", 4)),
            e.ev(0, None, ward("SUR", "W20", 4)),
        ],
    )
    .await;
    for _ in 0..300 {
        if census(addr).await.wards.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut w10 = AlertServiceClient::new(channel.clone())
        .subscribe_alerts(SubscribeAlertsRequest {
            ward_codes: vec!["W10".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut w20 = AlertServiceClient::new(channel.clone())
        .subscribe_alerts(SubscribeAlertsRequest {
            ward_codes: vec!["W20".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = CensusServiceClient::new(channel.clone())
        .watch_census(GetCensusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(
        matches!(first.update, Some(census_update::Update::Snapshot(_))),
        "a snapshot comes first"
    );

    ingest(
        addr,
        vec![
            e.ev(1, Some("P1"), admit("E1", "MED", "W10", "W10-1")),
            e.ev(2, Some("P2"), admit("E2", "MED", "W10", "W10-2")),
            e.ev(3, Some("P3"), admit("E3", "SUR", "W20", "W20-1")),
            e.ev(
                10,
                Some("P3"),
                Payload::Transfer(pb::Transfer {
                    encounter_id: "E3".into(),
                    from: loc("SUR", "W20", "W20-1"),
                    to: loc("MED", "W10", "W10-3"),
                }),
            ),
            e.ev(
                20,
                Some("P2"),
                Payload::Discharge(pb::Discharge {
                    encounter_id: "E2".into(),
                    disposition: pb::DischargeDisposition::Home as i32,
                }),
            ),
            e.ev(
                30,
                Some("P4"),
                Payload::EdArrival(pb::EdArrival {
                    encounter_id: "E4".into(),
                    arrival_mode: pb::ArrivalMode::Ambulance as i32,
                    department_code: "EM".into(),
                    ..Default::default()
                }),
            ),
            e.ev(
                31,
                Some("P5"),
                Payload::EdArrival(pb::EdArrival {
                    encounter_id: "E5".into(),
                    arrival_mode: pb::ArrivalMode::WalkIn as i32,
                    department_code: "EM".into(),
                    ..Default::default()
                }),
            ),
            e.ev(
                40,
                Some("P5"),
                Payload::EdTriage(pb::EdTriage {
                    encounter_id: "E5".into(),
                    acuity: 2,
                }),
            ),
        ],
    )
    .await;

    // NEWS2: P1 normal (0), then high (7+), then the same band again; P3 a single 3
    // (respiration 26: low-medium), then medium.
    ingest(
        addr,
        vec![
            e.ev(60, Some("P1"), vitals("E1", 16.0, 98.0, 120.0, 70.0, 37.0)),
            e.ev(120, Some("P1"), vitals("E1", 26.0, 91.0, 95.0, 120.0, 39.2)),
            e.ev(130, Some("P1"), vitals("E1", 27.0, 90.0, 94.0, 121.0, 39.3)),
            e.ev(140, Some("P3"), vitals("E3", 26.0, 98.0, 120.0, 70.0, 37.0)),
            e.ev(150, Some("P3"), vitals("E3", 26.0, 95.0, 120.0, 95.0, 37.0)),
        ],
    )
    .await;

    let a = next_alert(&mut w10).await;
    assert_eq!(
        (
            a.patient.as_ref().unwrap().mrn.as_str(),
            a.kind,
            a.band,
            a.previous_band
        ),
        (
            "P1",
            AlertKind::Alert as i32,
            RiskBand::High as i32,
            RiskBand::Low as i32
        )
    );
    assert_eq!(
        (a.ward_code.as_str(), a.bed_code.as_str(), a.encounter_id.as_str()),
        ("W10", "W10-1", "E1")
    );
    assert!(a.score >= 7, "{a:?}");
    // The unchanged high band raised nothing: the next alert is P3's.
    let b = next_alert(&mut w10).await;
    assert_eq!(
        (b.patient.as_ref().unwrap().mrn.as_str(), b.kind, b.band),
        ("P3", AlertKind::Alert as i32, RiskBand::LowMedium as i32)
    );
    assert_eq!(b.subscores.get("respiration_rate"), Some(&3));
    assert_eq!(b.ward_code, "W10", "P3 was transferred to W10");
    let c = next_alert(&mut w10).await;
    assert_eq!(
        (
            c.patient.as_ref().unwrap().mrn.as_str(),
            c.kind,
            c.band,
            c.previous_band
        ),
        (
            "P3",
            AlertKind::Escalation as i32,
            RiskBand::Medium as i32,
            RiskBand::LowMedium as i32
        )
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), w20.message())
            .await
            .is_err(),
        "nothing for W20"
    );

    // The census.
    let last_position = c.position;
    let now = comparable(census_at(addr, last_position).await);
    let w10_census = now.wards.iter().find(|w| w.ward_code == "W10").unwrap();
    assert_eq!((w10_census.beds, w10_census.occupied, w10_census.available), (4, 2, 2));
    let w20_census = now.wards.iter().find(|w| w.ward_code == "W20").unwrap();
    assert_eq!((w20_census.beds, w20_census.occupied, w20_census.available), (4, 0, 4));
    assert_eq!(now.inpatients, 2);
    let ed: Vec<_> = now
        .ed_waiting
        .iter()
        .map(|p| (p.encounter_id.as_str(), p.acuity))
        .collect();
    assert_eq!(ed, vec![("E5", 2), ("E4", 0)], "triaged first, by acuity");

    // The census stream carried the changes after its snapshot.
    let mut saw_w10 = false;
    while !saw_w10 {
        let u = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the ward update reached the watcher within 30 s")
            .unwrap()
            .expect("watch stream open");
        if let Some(census_update::Update::Ward(w)) = u.update {
            saw_w10 |= w.ward_code == "W10" && w.occupied == 2;
        }
    }

    let scores = AlertServiceClient::new(channel.clone())
        .get_scores(GetScoresRequest {
            ward_codes: vec!["W10".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .scores;
    let bands: Vec<_> = scores
        .iter()
        .map(|s| (s.patient.as_ref().unwrap().mrn.clone(), s.band))
        .collect();
    assert_eq!(
        bands,
        vec![
            ("P1".to_string(), RiskBand::High as i32),
            ("P3".to_string(), RiskBand::Medium as i32)
        ]
    );
    // The audit writer is asynchronous: poll until the three alerts are in the table.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&ch, "SELECT count() FROM warehouse.news2_alerts FINAL") < 3 {
        assert!(std::time::Instant::now() < deadline, "alerts are audited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(&ch, "SELECT count() FROM warehouse.news2_alerts FINAL"),
        3,
        "alerts are audited, once each"
    );

    // Restart twice: once with everything still only in staging, once after a
    // warehouse load. The census, the scores and the alerts are the same each time.
    platform.shutdown().await.unwrap();
    for load_first in [false, true] {
        let platform = start_platform(&ch).await;
        let addr = platform.local_addr();
        if load_first {
            run_warehouse_load(addr, false).await;
            platform.shutdown().await.unwrap();
            continue;
        }
        let again = comparable(census_at(addr, last_position).await);
        assert_eq!(again.wards, now.wards);
        assert_eq!(again.departments, now.departments);
        assert_eq!(again.ed_waiting, now.ed_waiting);
        platform.shutdown().await.unwrap();
    }
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();
    let again = comparable(census_at(addr, last_position).await);
    assert_eq!(again.wards, now.wards, "rebuilt from the warehouse and staging");
    assert_eq!(again.ed_waiting, now.ed_waiting);
    let channel = hospital_client::connect(&endpoint(addr)).await.unwrap();
    let mut w10 = AlertServiceClient::new(channel.clone())
        .subscribe_alerts(SubscribeAlertsRequest {
            ward_codes: vec!["W10".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // P1 stays high: no alert; P1 recovers, then deteriorates again: an alert.
    ingest(
        addr,
        vec![
            e.ev(200, Some("P1"), vitals("E1", 27.0, 90.0, 94.0, 121.0, 39.3)),
            e.ev(260, Some("P1"), vitals("E1", 16.0, 98.0, 120.0, 70.0, 37.0)),
            e.ev(300, Some("P1"), vitals("E1", 26.0, 91.0, 95.0, 120.0, 39.2)),
        ],
    )
    .await;
    let d = next_alert(&mut w10).await;
    assert_eq!(
        (
            d.patient.as_ref().unwrap().mrn.as_str(),
            d.kind,
            d.previous_band,
            d.source_event_id.as_str()
        ),
        (
            "P1",
            AlertKind::Alert as i32,
            RiskBand::Low as i32,
            format!("rt-{}", e.n).as_str()
        ),
        "the first alert after the restart is the new deterioration"
    );
    assert_eq!(
        audited_through(&ch, &d.alert_id).await,
        4,
        "one new alert audited, none repeated"
    );
    platform.shutdown().await.unwrap();
}

/// Simulated deterioration reaches the alert state the way NEWS2 says it should. The
/// simulator's events, made canonical by ingest's validation (all of them valid), go
/// through the census and alert state in order. Independently, each vital-signs set is
/// scored with the platform's NEWS2 scorer: every simulated set is complete, so the set
/// alone is the patient's current score. Exactly the sets that take a patient from low
/// (or no score) into a band that needs a response raise an alert, a rise within those
/// bands an escalation, and nothing else does, so an alert never repeats while the band
/// stays high. Alerts are routed to where the patient is, and the simulator's
/// deterioration episodes show as alerts to the high band.
#[test]
fn simulated_deterioration_raises_the_alerts_news2_calls_for() {
    use hospital_client::simulate::{SimOptions, Simulator};
    use hospital_platform::ingest::{validate, Limits};
    use hospital_platform::realtime::alerts::AlertState;
    use hospital_platform::realtime::census::CensusState;
    use hospital_platform::realtime::news2::{self, Parameters, RiskBand as Band, Spo2Scale};
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn wire(band: Band) -> i32 {
        let band = match band {
            Band::Low => RiskBand::Low,
            Band::LowMedium => RiskBand::LowMedium,
            Band::Medium => RiskBand::Medium,
            Band::High => RiskBand::High,
        };
        band as i32
    }
    fn age_years(birth: &pb::Date, at_secs: i64) -> u32 {
        let today = time::OffsetDateTime::from_unix_timestamp(at_secs).unwrap().date();
        let birthday_to_come = (i32::from(u8::from(today.month())), i32::from(today.day())) < (birth.month, birth.day);
        (today.year() - birth.year - i32::from(birthday_to_come)) as u32
    }

    // A week of the default hospital (100 ED arrivals a day), from a fixed Monday.
    let start = SimOptions::default().start_secs;
    let mut sim = Simulator::new(SimOptions {
        seed: 11,
        end_secs: Some(start + 7 * 86_400),
        ..Default::default()
    });
    let limits = Limits {
        now_ms: now_secs() * 1000,
        max_future_ms: 0,
    };
    let mut events = Vec::new();
    let mut rejected = BTreeMap::new();
    for e in sim.by_ref() {
        let kind = hospital_platform::ingest::kind_of(e.payload.as_ref().unwrap());
        match validate(e, &limits) {
            Ok(valid) => events.push(valid.event),
            Err(violations) => {
                for v in violations {
                    *rejected
                        .entry(format!("{kind}: {}: {}", v.field, v.description))
                        .or_insert(0) += 1;
                }
            }
        }
    }
    assert!(rejected.is_empty(), "ingest rejects simulated events: {rejected:#?}");
    let stats = sim.stats();

    // What NEWS2 calls for, set by set: (event, encounter, location, score, band, previous
    // band, alert kind).
    type Location = (String, String, String);
    let mut birth: HashMap<String, pb::Date> = HashMap::new();
    let mut location: HashMap<String, Location> = HashMap::new();
    let mut last_band: HashMap<String, (Band, i64)> = HashMap::new();
    let mut expected = Vec::new();
    // Encounters charted low at some point, and those of them charted high later.
    let (mut was_low, mut turned_high) = (HashSet::new(), HashSet::new());
    let mut stayed_high = 0;
    for e in &events {
        let mrn = e.patient.as_ref().map(|p| p.mrn.clone()).unwrap_or_default();
        let at = e.occurred_at.unwrap().seconds;
        match e.payload.as_ref().unwrap() {
            Payload::PatientRegistered(d) | Payload::PatientUpdated(d) => {
                birth.insert(mrn, d.birth_date.unwrap());
            }
            Payload::EdArrival(a) => {
                location.insert(
                    a.encounter_id.clone(),
                    (a.department_code.clone(), String::new(), String::new()),
                );
            }
            Payload::Admission(pb::Admission {
                encounter_id,
                location: Some(l),
                ..
            })
            | Payload::Transfer(pb::Transfer {
                encounter_id,
                to: Some(l),
                ..
            }) => {
                location.insert(
                    encounter_id.clone(),
                    (l.department_code.clone(), l.ward_code.clone(), l.bed_code.clone()),
                );
            }
            Payload::VitalSigns(v) => {
                if news2::applicability(Some(age_years(&birth[&mrn], at)), None).is_err() {
                    last_band.remove(&mrn);
                    continue; // under 16: not scored, and no band
                }
                let scale = if v.spo2_scale == pb::Spo2Scale::Spo2Scale2 as i32 {
                    Spo2Scale::Scale2
                } else {
                    Spo2Scale::Scale1
                };
                let news = news2::score(&Parameters::from_vital_signs(v), scale);
                assert!(news.is_complete(), "{news:?} of {e:?}");
                match news.band {
                    Band::Low => {
                        was_low.insert(v.encounter_id.clone());
                    }
                    Band::High if was_low.contains(&v.encounter_id) => {
                        turned_high.insert(v.encounter_id.clone());
                    }
                    _ => {}
                }
                // A band scored more than 24 h earlier is no longer the patient's band.
                let previous = last_band
                    .insert(mrn.clone(), (news.band, at))
                    .filter(|(_, then)| at - then <= 24 * 3600)
                    .map(|(band, _)| band);
                stayed_high += usize::from(previous == Some(Band::High) && news.band == Band::High);
                let kind = match previous {
                    _ if news.band == Band::Low => None,
                    None | Some(Band::Low) => Some(AlertKind::Alert),
                    Some(p) if news.band > p => Some(AlertKind::Escalation),
                    Some(_) => None,
                };
                if let Some(kind) = kind {
                    expected.push((
                        e.event_id.clone(),
                        v.encounter_id.clone(),
                        location[&v.encounter_id].clone(),
                        u32::from(news.total),
                        wire(news.band),
                        previous.map_or(RiskBand::Unspecified as i32, wire),
                        kind as i32,
                    ));
                }
            }
            _ => {}
        }
    }

    let mut census = CensusState::new();
    let mut alerts = AlertState::new();
    let mut raised = Vec::new();
    for (i, e) in events.iter().enumerate() {
        census.apply(i as u64 + 1, e);
        let location = e.patient.as_ref().and_then(|p| census.location_of(p));
        raised.extend(alerts.apply(i as u64 + 1, e, location.as_ref()));
    }
    let raised: Vec<_> = raised
        .into_iter()
        .map(|a| {
            (
                a.source_event_id,
                a.encounter_id,
                (a.department_code, a.ward_code, a.bed_code),
                a.score,
                a.band,
                a.previous_band,
                a.kind,
            )
        })
        .collect();
    for (i, (got, want)) in raised.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "alert {i}");
    }
    assert_eq!(raised.len(), expected.len());
    for kind in [AlertKind::Alert, AlertKind::Escalation] {
        assert!(expected.iter().any(|a| a.6 == kind as i32), "no {kind:?}");
    }

    // The week has deterioration episodes; charts that turn from low to high (mostly
    // theirs) are about as many, each alerted at the turn; and sets that stay high, which
    // raised nothing more.
    assert!(stats.deteriorations > 10, "{stats:?}");
    assert!(
        4 * turned_high.len() >= 3 * stats.deteriorations as usize,
        "{} charts turned high for {} deterioration episodes",
        turned_high.len(),
        stats.deteriorations
    );
    assert!(stayed_high > 100, "{stayed_high}");
}
