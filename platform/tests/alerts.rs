//! NEWS2 alerting on real data and against a real ClickHouse.
//!
//! - The MIMIC-III demo ICU vitals (`shared/data/mimic3_demo/CHARTEVENTS_VITALS.csv.gz`,
//!   ODbL v1.0) mapped to LOINC as a source adapter would, grouped into one vital-signs
//!   set per (patient, chart time), fed through [`AlertState`] and checked against a
//!   small reference implementation of the chart written here from DOMAIN.md.
//! - The audit table: alerts written once, a replay adds no row, and a state loaded from
//!   the warehouse raises nothing when the same events are applied again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;

use hospital_platform::realtime::alerts::{alert_id, AlertAudit, AlertState};
use hospital_platform::realtime::census::PatientLocation;
use hospital_platform::realtime::news2::loinc;
use hospital_proto::events::{self as pb, clinical_event::Payload};
use hospital_proto::realtime::{Alert, AlertKind, RiskBand};
use prost_types::Timestamp;

const HOUR_MS: i64 = 3_600_000;
const AUTHORITY: &str = "mimic3-demo";
const SOURCE: &str = "mimic3-chartevents";

// ---------------------------------------------------------------------------------
// The MIMIC-III demo vitals, as a source adapter would read them.

/// The five NEWS2 rows MIMIC charts, in chart order, with their LOINC code and unit.
const ROWS: [(&str, &str); 5] = [
    (loinc::RESPIRATORY_RATE, "/min"),
    (loinc::SPO2_PULSE_OXIMETRY, "%"),
    (loinc::SYSTOLIC_BP, "mm[Hg]"),
    (loinc::HEART_RATE, "/min"),
    (loinc::BODY_TEMPERATURE, "Cel"),
];
const RR: usize = 0;
const SPO2: usize = 1;
const SBP: usize = 2;
const PULSE: usize = 3;
const TEMP: usize = 4;

/// ITEMID -> (row, value in the canonical unit), per shared/data/README.md.
fn map_item(item: u32, value: f64) -> Option<(usize, f64)> {
    Some(match item {
        618 | 615 | 220210 | 224690 => (RR, value),
        646 | 220277 => (SPO2, value),
        51 | 455 | 220179 | 220050 => (SBP, value),
        211 | 220045 => (PULSE, value),
        678 | 223761 => (TEMP, (value - 32.0) * 5.0 / 9.0),
        676 | 223762 => (TEMP, value),
        _ => return None,
    })
}

/// One charted set: a patient's values at one chart time (the first row of each
/// parameter in file order, when a time charts one twice, e.g. arterial and cuff BP).
#[derive(Debug, Clone)]
struct ChartSet {
    subject: String,
    at_ms: i64,
    charttime: String,
    values: [Option<f64>; 5],
}

fn data_dir() -> PathBuf {
    match std::env::var_os("HOSPITAL_SHARED_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` -> ms since the epoch (MIMIC times are shifted, zone-less).
fn charttime_ms(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap_or_else(|_| panic!("bad CHARTTIME {s:?}"));
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000
}

/// Every set, ordered by patient then time.
fn load_mimic_sets() -> (Vec<ChartSet>, usize) {
    let path = data_dir().join("mimic3_demo/CHARTEVENTS_VITALS.csv.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "the MIMIC-III demo vitals are required at {} ({e}); set HOSPITAL_SHARED_DATA to the shared data folder",
            path.display()
        )
    });
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip CHARTEVENTS_VITALS.csv.gz");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("CSV header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in {headers:?}"))
    };
    let (subject, item, charttime, valuenum, error) = (
        col("SUBJECT_ID"),
        col("ITEMID"),
        col("CHARTTIME"),
        col("VALUENUM"),
        col("ERROR"),
    );
    let mut sets: BTreeMap<(u64, String), [Option<f64>; 5]> = BTreeMap::new();
    let mut rows_used = 0;
    for record in reader.records() {
        let r = record.expect("CSV record");
        if r[error].trim() == "1" {
            continue; // charted in error
        }
        let (Ok(value), Ok(itemid)) = (r[valuenum].trim().parse::<f64>(), r[item].parse::<u32>()) else {
            continue;
        };
        let Some((row, value)) = map_item(itemid, value) else {
            continue;
        };
        let subject_id: u64 = r[subject].parse().expect("SUBJECT_ID");
        let slot = &mut sets.entry((subject_id, r[charttime].to_string())).or_default()[row];
        if slot.is_none() {
            *slot = Some(value);
        }
        rows_used += 1;
    }
    let mut out: Vec<ChartSet> = sets
        .into_iter()
        .map(|((s, t), values)| ChartSet {
            subject: s.to_string(),
            at_ms: charttime_ms(&t),
            charttime: t,
            values,
        })
        .collect();
    out.sort_by_key(|s| (s.subject.parse::<u64>().unwrap(), s.at_ms));
    (out, rows_used)
}

fn event_of(set: &ChartSet) -> pb::ClinicalEvent {
    pb::ClinicalEvent {
        event_id: format!("{}-{}", set.subject, set.charttime),
        source_system: SOURCE.into(),
        occurred_at: Some(Timestamp {
            seconds: set.at_ms / 1000,
            nanos: 0,
        }),
        patient: Some(pb::PatientRef {
            mrn: set.subject.clone(),
            assigning_authority: AUTHORITY.into(),
        }),
        payload: Some(Payload::VitalSigns(pb::VitalSigns {
            encounter_id: String::new(),
            observations: ROWS
                .iter()
                .zip(set.values)
                .filter_map(|((code, unit), v)| {
                    v.map(|value| pb::Observation {
                        loinc_code: (*code).into(),
                        value,
                        unit: (*unit).into(),
                    })
                })
                .collect(),
            // MIMIC's ACVPU and oxygen delivery are not in this extract: unknown.
            consciousness: pb::Consciousness::Unspecified as i32,
            supplemental_oxygen: None,
            spo2_scale: pb::Spo2Scale::Unspecified as i32,
        })),
    }
}

// ---------------------------------------------------------------------------------
// A reference implementation, straight from the chart in DOMAIN.md (scale 1; oxygen
// and consciousness unknown, so they count nothing).

fn round(v: f64, decimals: i32) -> i64 {
    let scaled = v * 10f64.powi(decimals);
    (scaled + scaled.signum() * 1e-9).round() as i64
}

fn ref_row_score(row: usize, v: f64) -> u8 {
    match row {
        RR => match round(v, 0) {
            r if r <= 8 => 3,
            r if r <= 11 => 1,
            r if r <= 20 => 0,
            r if r <= 24 => 2,
            _ => 3,
        },
        SPO2 => match round(v, 0) {
            s if s <= 91 => 3,
            s if s <= 93 => 2,
            s if s <= 95 => 1,
            _ => 0,
        },
        SBP => match round(v, 0) {
            s if s <= 90 => 3,
            s if s <= 100 => 2,
            s if s <= 110 => 1,
            s if s <= 219 => 0,
            _ => 3,
        },
        PULSE => match round(v, 0) {
            p if p <= 40 => 3,
            p if p <= 50 => 1,
            p if p <= 90 => 0,
            p if p <= 110 => 1,
            p if p <= 130 => 2,
            _ => 3,
        },
        TEMP => match round(v, 1) {
            t if t <= 350 => 3,
            t if t <= 360 => 1,
            t if t <= 380 => 0,
            t if t <= 390 => 1,
            _ => 2,
        },
        _ => unreachable!(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RefBand {
    Low,
    LowMedium,
    Medium,
    High,
}

#[derive(Debug, Clone)]
struct RefScore {
    total: u32,
    band: RefBand,
    subscores: [Option<u8>; 5],
}

/// Scores every set of one patient in time order over the latest values (24 h TTL).
fn reference_scores(sets: &[ChartSet]) -> Vec<RefScore> {
    let mut latest: [Option<(i64, f64)>; 5] = [None; 5];
    sets.iter()
        .map(|s| {
            for (slot, v) in latest.iter_mut().zip(s.values) {
                if let Some(v) = v {
                    *slot = Some((s.at_ms, v));
                }
            }
            let mut subscores = [None; 5];
            for (row, slot) in latest.iter().enumerate() {
                if let Some((at, v)) = slot {
                    if s.at_ms - at <= 24 * HOUR_MS {
                        subscores[row] = Some(ref_row_score(row, *v));
                    }
                }
            }
            let total: u32 = subscores.iter().flatten().map(|s| u32::from(*s)).sum();
            let band = match total {
                7.. => RefBand::High,
                5..=6 => RefBand::Medium,
                _ if subscores.contains(&Some(3)) => RefBand::LowMedium,
                _ => RefBand::Low,
            };
            RefScore { total, band, subscores }
        })
        .collect()
}

fn wire_band(b: RefBand) -> RiskBand {
    match b {
        RefBand::Low => RiskBand::Low,
        RefBand::LowMedium => RiskBand::LowMedium,
        RefBand::Medium => RiskBand::Medium,
        RefBand::High => RiskBand::High,
    }
}

#[test]
fn mimic_demo_vitals_alert_as_the_reference_chart_says() {
    let (sets, rows_used) = load_mimic_sets();
    let mut by_patient: BTreeMap<&str, Vec<&ChartSet>> = BTreeMap::new();
    for s in &sets {
        by_patient.entry(&s.subject).or_default().push(s);
    }

    // The alerts the reference expects: (position, kind, score, band, previous band).
    let mut expected = Vec::new();
    let mut reference: HashMap<u64, (RefScore, &ChartSet)> = HashMap::new();
    let mut position = 0u64;
    for patient_sets in by_patient.values() {
        let owned: Vec<ChartSet> = patient_sets.iter().map(|s| (*s).clone()).collect();
        let mut last: Option<(RefBand, i64)> = None;
        for (s, r) in patient_sets.iter().zip(reference_scores(&owned)) {
            position += 1;
            // A band scored more than 24 h before this set is no longer the patient's.
            let previous = last.filter(|(_, at)| s.at_ms - at <= 24 * HOUR_MS).map(|(b, _)| b);
            let kind = match (previous, r.band) {
                (_, RefBand::Low) => None,
                (None | Some(RefBand::Low), _) => Some(AlertKind::Alert),
                (Some(p), b) if b > p => Some(AlertKind::Escalation),
                _ => None,
            };
            if let Some(kind) = kind {
                expected.push((
                    position,
                    kind,
                    r.total,
                    wire_band(r.band),
                    previous.map_or(RiskBand::Unspecified, wire_band),
                ));
            }
            last = Some((r.band, s.at_ms));
            reference.insert(position, (r, s));
        }
    }

    // The same sets through the alert state, in the same order.
    let mut state = AlertState::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut position = 0u64;
    for patient_sets in by_patient.values() {
        for s in patient_sets {
            position += 1;
            alerts.extend(state.apply(position, &event_of(s), None));
        }
    }
    let got: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                a.position,
                AlertKind::try_from(a.kind).unwrap(),
                a.score,
                RiskBand::try_from(a.band).unwrap(),
                RiskBand::try_from(a.previous_band).unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "number of alerts");
    assert_eq!(got, expected);

    // Every alert: score and per-row scores equal the reference; the band is never the
    // previous one; ids are those of the source events.
    let names = ["respiration_rate", "spo2", "systolic_bp", "pulse", "temperature"];
    for a in &alerts {
        let (r, s) = &reference[&a.position];
        assert_eq!(a.score, r.total);
        for (name, sub) in names.iter().zip(r.subscores) {
            assert_eq!(
                a.subscores.get(*name).copied(),
                sub.map(u32::from),
                "{name} at {}",
                a.position
            );
        }
        assert!(a.missing_parameters.contains(&"consciousness".to_string()));
        assert!(a.missing_parameters.contains(&"air_or_oxygen".to_string()));
        assert_ne!(a.band, a.previous_band, "an unchanged band never alerts");
        assert_eq!(a.alert_id, alert_id(SOURCE, &format!("{}-{}", s.subject, s.charttime)));
    }

    // Facts of the data set, computed by the reference.
    let patients = by_patient.len();
    let high_sets = reference.values().filter(|(r, _)| r.total >= 7).count();
    let medium_sets = reference.values().filter(|(r, _)| r.band == RefBand::Medium).count();
    let kinds = |k: AlertKind| alerts.iter().filter(|a| a.kind == k as i32).count();
    let (entered, escalated) = (kinds(AlertKind::Alert), kinds(AlertKind::Escalation));
    let alerted_patients = alerts
        .iter()
        .map(|a| a.patient.as_ref().unwrap().mrn.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let max = reference.values().map(|(r, _)| r.total).max().unwrap();
    println!(
        "MIMIC demo: {rows_used} rows, {} sets, {patients} patients; sets >= 7: {high_sets}, medium: {medium_sets}; \
         alerts: {entered} alert + {escalated} escalation on {alerted_patients} patients; max score {max}",
        sets.len()
    );
    assert_eq!(
        (rows_used, sets.len(), patients),
        (ROWS_USED, SETS, PATIENTS),
        "the data set changed?"
    );
    assert_eq!((high_sets, medium_sets), (HIGH_SETS, MEDIUM_SETS));
    assert_eq!(
        (entered, escalated, alerted_patients),
        (ENTERED, ESCALATED, ALERTED_PATIENTS)
    );
}

// Computed by the reference above on the demo data (v1.4): 67,644 vital-sign rows.
const ROWS_USED: usize = 67_644;
const SETS: usize = 17_573;
const PATIENTS: usize = 98;
const HIGH_SETS: usize = 1_615;
const MEDIUM_SETS: usize = 3_150;
const ENTERED: usize = 1_791;
const ESCALATED: usize = 891;
const ALERTED_PATIENTS: usize = 96;

#[test]
fn mimic_demo_sets_checked_by_hand() {
    let (sets, _) = load_mimic_sets();
    let find = |subject: &str, charttime: &str| {
        sets.iter()
            .find(|s| s.subject == subject && s.charttime == charttime)
            .unwrap_or_else(|| panic!("set {subject} {charttime} not in the data"))
    };
    // (subject, time, charted values, expected (rr, spo2, sbp, pulse, temp) scores, total, band)
    let table = [
        // RR 25 -> 3, SpO2 98 -> 0, SBP 91 -> 2, HR 104 -> 1, 37.6 C -> 0: 6, medium
        // (a single 3, but 5-6 is medium).
        (
            "10006",
            "2164-10-23 22:40:00",
            [25.0, 98.0, 91.0, 104.0, 37.6],
            [3, 0, 2, 1, 0],
            6,
            RiskBand::Medium,
        ),
        // RR 23 -> 2, SpO2 98 -> 0, SBP 114 -> 0, HR 95 -> 1, 36.4 C -> 0: 3, low.
        (
            "10006",
            "2164-10-24 01:00:00",
            [23.0, 98.0, 114.0, 95.0, 36.4],
            [2, 0, 0, 1, 0],
            3,
            RiskBand::Low,
        ),
        // RR 30 -> 3, SpO2 97 -> 0, SBP 126 -> 0, HR 157 -> 3, 37.5 C -> 0: 6, medium.
        (
            "10011",
            "2126-08-28 11:00:00",
            [30.0, 97.0, 126.0, 157.0, 37.5],
            [3, 0, 0, 3, 0],
            6,
            RiskBand::Medium,
        ),
    ];
    let names = ["respiration_rate", "spo2", "systolic_bp", "pulse", "temperature"];
    for (subject, time, values, subscores, total, band) in table {
        let set = find(subject, time);
        for (got, want) in set.values.iter().zip(values) {
            assert!((got.unwrap() - want).abs() < 0.05, "{subject} {time}: {:?}", set.values);
        }
        // Every row charted in the set itself, so it is scored on its own.
        let mut state = AlertState::new();
        state.apply(1, &event_of(set), None);
        let scores = state.scores(&[], |_| Some(PatientLocation::default()));
        let s = &scores[0];
        assert_eq!(
            (s.score, RiskBand::try_from(s.band).unwrap()),
            (total, band),
            "{subject} {time}"
        );
        for (name, want) in names.iter().zip(subscores) {
            assert_eq!(s.subscores[*name], want, "{subject} {time} {name}");
        }
        assert_eq!(s.missing_parameters, vec!["air_or_oxygen", "consciousness"]);
    }
}

// ---------------------------------------------------------------------------------
// The audit table on a real ClickHouse.

fn vitals(mrn: &str, id: &str, at_ms: i64, rr: f64, pulse: f64, sbp: f64) -> pb::ClinicalEvent {
    let obs = |code: &str, value: f64, unit: &str| pb::Observation {
        loinc_code: code.into(),
        value,
        unit: unit.into(),
    };
    pb::ClinicalEvent {
        event_id: id.into(),
        source_system: "ward-obs".into(),
        occurred_at: Some(Timestamp {
            seconds: at_ms / 1000,
            nanos: 0,
        }),
        patient: Some(pb::PatientRef {
            mrn: mrn.into(),
            assigning_authority: "hosp".into(),
        }),
        payload: Some(Payload::VitalSigns(pb::VitalSigns {
            encounter_id: format!("E-{mrn}"),
            observations: vec![
                obs(loinc::RESPIRATORY_RATE, rr, "/min"),
                obs(loinc::SPO2_PULSE_OXIMETRY, 97.0, "%"),
                obs(loinc::SYSTOLIC_BP, sbp, "mm[Hg]"),
                obs(loinc::HEART_RATE, pulse, "/min"),
                obs(loinc::BODY_TEMPERATURE, 37.0, "Cel"),
            ],
            consciousness: pb::Consciousness::Alert as i32,
            supplemental_oxygen: Some(false),
            spo2_scale: pb::Spo2Scale::Unspecified as i32,
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_is_idempotent_and_load_suppresses_replayed_alerts() {
    let ch = common::clickhouse();
    let client = clickhouse::Client::default().with_url(ch.url()).with_validation(false);
    hospital_platform::schema::migrate(&client).await.expect("migrate");
    let warehouse = client.clone().with_database("warehouse");

    let t0 = 1_700_000_000_000i64;
    let events = [
        vitals("P1", "a1", t0, 16.0, 70.0, 120.0),               // 0: low
        vitals("P1", "a2", t0 + HOUR_MS, 22.0, 115.0, 105.0),    // 2 + 2 + 1 = 5: medium, alert
        vitals("P1", "a3", t0 + 2 * HOUR_MS, 26.0, 115.0, 95.0), // 3 + 2 + 2 = 7: high, escalation
        vitals("P2", "b1", t0, 26.0, 70.0, 120.0),               // 3: low-medium, alert
        vitals("P2", "b2", t0 + HOUR_MS, 16.0, 70.0, 120.0),     // 0: low (fall)
    ];
    let mut state = AlertState::new();
    let alerts: Vec<Alert> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| state.apply(i as u64 + 1, e, None))
        .collect();
    let summary: Vec<_> = alerts.iter().map(|a| (a.position, a.score)).collect();
    assert_eq!(summary, vec![(2, 5), (3, 7), (4, 3)]);

    let audit = AlertAudit::start(warehouse.clone());
    for a in &alerts {
        audit.record(a).await;
    }
    audit.shutdown().await;
    let count = |sql: &str| common::count(&ch, sql);
    assert_eq!(count("SELECT count() FROM warehouse.news2_alerts FINAL"), 3);

    // A replay (same events, same ids, new raised_at) replaces, never adds.
    let mut replayed = AlertState::new();
    let again: Vec<Alert> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| replayed.apply(i as u64 + 1, e, None))
        .collect();
    assert_eq!(
        again.iter().map(|a| &a.alert_id).collect::<Vec<_>>(),
        alerts.iter().map(|a| &a.alert_id).collect::<Vec<_>>()
    );
    let audit = AlertAudit::start(warehouse.clone());
    for a in &again {
        audit.record(a).await;
    }
    audit.shutdown().await;
    assert_eq!(count("SELECT count() FROM warehouse.news2_alerts FINAL"), 3);
    assert_eq!(
        ch.query(
            "SELECT patient_mrn, kind, band, previous_band, score, position, arrayStringConcat(subscore_names, ',') \
             FROM warehouse.news2_alerts FINAL ORDER BY position FORMAT TabSeparated"
        )
        .unwrap(),
        "P1\talert\tmedium\tlow\t5\t2\tair_or_oxygen,consciousness,pulse,respiration_rate,spo2,systolic_bp,temperature\n\
         P1\tescalation\thigh\tmedium\t7\t3\tair_or_oxygen,consciousness,pulse,respiration_rate,spo2,systolic_bp,temperature\n\
         P2\talert\tlow_medium\t\t3\t4\tair_or_oxygen,consciousness,pulse,respiration_rate,spo2,systolic_bp,temperature\n"
    );

    // P3's vital signs are in the warehouse (loaded by the batch stage), never alerted:
    // RR 26 (3) + SpO2 93 (2) + SBP 95 (2) = 7, in two partial sets 2 h apart.
    let p3 = hospital_platform::warehouse::keys::patient_key("hosp", "P3");
    client
        .query(&format!(
            "INSERT INTO warehouse.patient_identity VALUES (toUUID('{p3}'), 'hosp', 'P3', 100, 0)"
        ))
        .execute()
        .await
        .unwrap();
    let fact = |id: &str, index: u16, position: u64, at: i64, code: &str, value: f64, unit: &str| {
        format!(
            "(20231114, 'ward-obs', '{id}', {index}, {position}, toUUID('{p3}'), 'E-P3', {at}, '{code}', {value}, \
             '{unit}', 'alert', 0, 0, 1)"
        )
    };
    let rows = [
        fact("c1", 0, 100, t0, loinc::RESPIRATORY_RATE, 26.0, "/min"),
        fact("c1", 1, 100, t0, loinc::HEART_RATE, 80.0, "/min"),
        fact("c2", 0, 101, t0 + 2 * HOUR_MS, loinc::SPO2_PULSE_OXIMETRY, 93.0, "%"),
        fact("c2", 1, 101, t0 + 2 * HOUR_MS, loinc::SYSTOLIC_BP, 95.0, "mm[Hg]"),
        fact("c2", 2, 101, t0 + 2 * HOUR_MS, loinc::BODY_TEMPERATURE, 37.0, "Cel"),
    ];
    client
        .query(&format!(
            "INSERT INTO warehouse.fact_vital_sign VALUES {}",
            rows.join(", ")
        ))
        .execute()
        .await
        .unwrap();
    // And the sets' own inputs (consciousness, air or oxygen, scale).
    client
        .query(&format!(
            "INSERT INTO warehouse.fact_vital_sign_set VALUES \
             (20231114, 'ward-obs', 'c1', 100, toUUID('{p3}'), 'E-P3', {t0}, 'alert', 0, '', 2, 0, 1), \
             (20231114, 'ward-obs', 'c2', 101, toUUID('{p3}'), 'E-P3', {}, 'alert', 0, '', 3, 0, 1)",
            t0 + 2 * HOUR_MS
        ))
        .execute()
        .await
        .unwrap();

    // After a restart: the audited position comes back, so replaying the staged events
    // (as the processor does after the warehouse watermark) raises nothing again.
    let mut loaded = AlertState::load(&warehouse).await.expect("load");
    assert_eq!(loaded.audited_position(), 4);
    for (i, e) in events.iter().enumerate() {
        assert!(loaded.apply(i as u64 + 1, e, None).is_none(), "event {i} raised again");
    }
    let p3_score = loaded
        .scores(&[], |_| Some(PatientLocation::default()))
        .into_iter()
        .find(|s| s.patient.as_ref().unwrap().mrn == "P3")
        .expect("P3 rebuilt from fact_vital_sign");
    assert_eq!((p3_score.score, p3_score.band), (7, RiskBand::High as i32));
    assert!(loaded
        .apply(102, &vitals("P3", "c3", t0 + 3 * HOUR_MS, 26.0, 80.0, 95.0), None)
        .is_none());
    // P1 is high: high again raises nothing; P2's fall to low (position 5, above the
    // audit) was replayed, so a new low-medium alerts again.
    assert!(loaded
        .apply(6, &vitals("P1", "a4", t0 + 3 * HOUR_MS, 26.0, 115.0, 95.0), None)
        .is_none());
    let a = loaded
        .apply(7, &vitals("P2", "b3", t0 + 2 * HOUR_MS, 26.0, 70.0, 120.0), None)
        .expect("P2 alerts again");
    assert_eq!(a.kind, AlertKind::Alert as i32);
}
