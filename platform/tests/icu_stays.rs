//! ICU stays (`warehouse.fact_icu_stay`) from the MIMIC-III demo, loaded through the
//! running platform as `hospital load mimic` does, against MIMIC's own ICUSTAYS.csv
//! (read here independently): the same 136 stays, per admission, at the same times up
//! to what the mapped events carry; built incrementally (transfers loaded after the
//! admissions reshape the stays of the first load) and idempotently (a second
//! load of the files and a full reload write nothing).

mod common;

use std::collections::BTreeMap;

use common::*;
use hospital_client::load;
use hospital_proto::events::ClinicalEvent;

const WEEK_SECS: i64 = 7 * 86_400;

async fn send(addr: std::net::SocketAddr, events: Vec<ClinicalEvent>) {
    send_through_sender(addr, events, 500).await;
}

/// Rows of a CSV file as header -> value maps.
fn csv_rows(path: &std::path::Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers.iter().cloned().zip(r.iter().map(str::to_owned)).collect()
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) -> seconds since the epoch.
fn secs(t: &str) -> i64 {
    let n = |a: usize, b: usize| t[a..b].parse::<i64>().unwrap_or_else(|_| panic!("time {t:?}"));
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

#[derive(Debug, Clone, PartialEq)]
struct Stay {
    intime: i64,
    outtime: i64,
    opened_by: String,
    closed_by: String,
    segments: u64,
}

/// Live stays per encounter (HADM_ID), in intime order.
fn stays(ch: &hospital_testkit::ClickHouseServer) -> BTreeMap<String, Vec<Stay>> {
    let out = ch
        .query(
            "SELECT encounter_id, intDiv(intime_ms, 1000), intDiv(ifNull(outtime_ms, -1000), 1000), \
             source_event_ids[1], source_event_ids[length(source_event_ids)], segments \
             FROM warehouse.fact_icu_stay FINAL WHERE is_deleted = 0 ORDER BY encounter_id, intime_ms",
        )
        .unwrap();
    let mut by: BTreeMap<String, Vec<Stay>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        by.entry(f[0].to_owned()).or_default().push(Stay {
            intime: f[1].parse().unwrap(),
            outtime: f[2].parse().unwrap(),
            opened_by: f[3].to_owned(),
            closed_by: f[4].to_owned(),
            segments: f[5].parse().unwrap(),
        });
    }
    by
}

fn raw_rows(ch: &hospital_testkit::ClickHouseServer) -> u64 {
    count(ch, "SELECT count() FROM warehouse.fact_icu_stay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimic_icu_stays_match_icustays_incrementally_and_idempotently() {
    let dir = shared_data("mimic3_demo");
    let extract = load::mimic(&dir).expect("the tables read");
    let is_transfer = |e: &ClinicalEvent| e.payload.as_ref().is_some_and(|p| p.kind() == "transfer");
    let (transfers, others): (Vec<_>, Vec<_>) = extract.events.iter().cloned().partition(is_transfer);

    let ch = clickhouse();
    let platform = start_platform(&ch).await;
    let addr = platform.local_addr();

    // First everything but the transfers: stays of the patients admitted straight to an
    // ICU, each to its discharge.
    send(addr, others).await;
    run_warehouse_load(addr, false).await;
    let before = stays(&ch);
    let first_pass: usize = before.values().map(Vec::len).sum();
    assert!(first_pass > 0);
    // Then the transfers: every touched stay is recomputed.
    send(addr, transfers).await;
    run_warehouse_load(addr, false).await;
    let ours = stays(&ch);

    // ICUSTAYS.csv, shifted like the adapter: each admission's own whole-week shift,
    // found from its admission time in the warehouse (and checked to be whole weeks).
    let admissions: BTreeMap<String, BTreeMap<String, String>> = csv_rows(&dir.join("ADMISSIONS.csv"))
        .into_iter()
        .map(|r| (r["HADM_ID"].clone(), r))
        .collect();
    let admitted = ch
        .query("SELECT encounter_id, intDiv(admitted_at_ms, 1000) FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0")
        .unwrap();
    let mut shift: BTreeMap<String, i64> = BTreeMap::new();
    for line in admitted.lines() {
        let (hadm, at) = line.split_once('\t').unwrap();
        let s = secs(&admissions[hadm]["ADMITTIME"]) - at.parse::<i64>().unwrap();
        assert_eq!(s % WEEK_SECS, 0, "admission {hadm} is shifted by whole weeks");
        shift.insert(hadm.to_owned(), s);
    }
    let mut expected: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let icustays = csv_rows(&dir.join("ICUSTAYS.csv"));
    for r in &icustays {
        let s = shift[&r["HADM_ID"]];
        expected
            .entry(r["HADM_ID"].clone())
            .or_default()
            .push((secs(&r["INTIME"]) - s, secs(&r["OUTTIME"]) - s));
    }
    for v in expected.values_mut() {
        v.sort();
    }

    assert_eq!(icustays.len(), 136);
    assert_eq!(ours.values().map(Vec::len).sum::<usize>(), 136);
    let counts = |m: &BTreeMap<String, Vec<_>>| m.iter().map(|(k, v)| (k.clone(), v.len())).collect::<Vec<_>>();
    let ours_counts: Vec<(String, usize)> = ours.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    assert_eq!(ours_counts, counts(&expected), "ICU stays per admission");

    // Times. A stay opened by a transfer starts at the transfer's INTIME, which is the
    // ICU stay's INTIME; one closed by a transfer out ends at its OUTTIME: exactly. The
    // adapter times an admission at ADMITTIME (its first TRANSFERS row, the ICU's,
    // starts minutes to hours later, after the ED) and a discharge at DISCHTIME (recorded
    // apart from the ICU's OUTTIME), so a stay opened by an admission starts at
    // ADMITTIME and one closed by the discharge ends at DISCHTIME.
    let (mut exact_in, mut exact_out) = (0, 0);
    for (hadm, theirs) in &expected {
        let s = shift[hadm];
        let adm = &admissions[hadm];
        for (stay, (intime, outtime)) in ours[hadm].iter().zip(theirs) {
            let want_in = if stay.opened_by.starts_with("mimic/admissions/") {
                secs(&adm["ADMITTIME"]) - s
            } else {
                *intime
            };
            let want_out = if stay.closed_by.ends_with("/discharge") {
                secs(&adm["DISCHTIME"]) - s
            } else {
                *outtime
            };
            assert_eq!((stay.intime, stay.outtime), (want_in, want_out), "{hadm}: {stay:?}");
            exact_in += usize::from(stay.intime == *intime);
            exact_out += usize::from(stay.outtime == *outtime);
            // Whichever way it was timed, the stay is the same one: it overlaps ICUSTAYS'.
            assert!(stay.intime < *outtime && *intime < stay.outtime, "{hadm}: {stay:?}");
        }
    }
    println!("ICU stays: 136, intime exact {exact_in}, outtime exact {exact_out}, first pass {first_pass}");
    // Nine returns to an ICU within 24 hours are merged into the stay they continue.
    let merged: u64 = ours.values().flatten().map(|s| s.segments).sum();
    assert!(merged > 136, "segments merged: {merged}");
    // The first pass's stays were recomputed when their transfers came (new versions of
    // the same stays; vanished stays' tombstones are covered by the unit tests).
    assert!(before.keys().all(|k| ours.contains_key(k)));
    assert!(raw_rows(&ch) > 136, "the transfers rewrote the first pass's stays");

    // A second load of the same files, then a full reload: nothing new is written.
    let rows = raw_rows(&ch);
    send(addr, extract.events.clone()).await;
    run_warehouse_load(addr, false).await;
    run_warehouse_load(addr, true).await;
    assert_eq!(raw_rows(&ch), rows, "a reload writes no ICU stay");
    assert_eq!(stays(&ch), ours);
    platform.shutdown().await.unwrap();
}
