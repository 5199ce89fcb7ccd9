//! Live scoring against real servers: the sidecar follows the platform's change feed,
//! scores each new vital-signs set and discharge, and writes the scores back through
//! ingest. Held as properties across the parts that hold the same truth:
//! - every event read is scored or skipped with a reason, every score sent is staged
//!   (or a duplicate of a replay), and the warehouse holds each scored event once, also
//!   when live scoring is killed mid-stream and restarted;
//! - each live score equals the model's score of the offline point-in-time vector of the
//!   same event, recomputed later when more (and later-arriving) facts are in;
//! - the platform's audited risk alerts are exactly the staged scores flagged `alert`.

mod common;

use std::time::Duration;

use common::*;
use hospital_ml::live::{self, LiveOptions};
use hospital_proto::ml as pb;
use hospital_proto::ml::feature_store_service_client::FeatureStoreServiceClient;
use hospital_proto::ml::model_service_client::ModelServiceClient;
use hospital_proto::ml::risk_service_client::RiskServiceClient;

fn n(ch: &hospital_testkit::ClickHouseServer, sql: &str) -> u64 {
    ch.query(sql)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}"))
}

/// The highest staged position of the kinds live scoring reads.
fn last_scorable(ch: &hospital_testkit::ClickHouseServer) -> u64 {
    n(
        ch,
        "SELECT max(position) FROM staging.events WHERE kind IN ('vital_signs', 'discharge')",
    )
}

async fn status(r: &Rig) -> pb::LiveStatus {
    RiskServiceClient::new(channel(r.ml).await)
        .get_live_status(pb::GetLiveStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Loads the warehouse until live scoring has done `position`, as the platform's
/// schedule would.
async fn until_scored(r: &Rig, position: u64) -> pb::LiveStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        warehouse_load(r.platform.local_addr()).await;
        let s = status(r).await;
        if s.position >= position {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live scoring stuck at {} of {position}: {s:?}",
            s.position
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn options(r: &Rig) -> LiveOptions {
    LiveOptions {
        batch: 32,
        linger: Duration::from_millis(50),
        poll: Duration::from_millis(100),
        ..LiveOptions::new(endpoint(r.platform.local_addr()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scores_are_the_offline_scores_staged_once_through_a_restart() {
    let mut r = rig_with_later(8, 2).await;
    build(r.ml, "deterioration", pb::Task::Deterioration24h).await;
    ModelServiceClient::new(channel(r.ml).await)
        .train(pb::TrainRequest {
            task: pb::Task::Deterioration24h as i32,
            training_set: "deterioration".into(),
            training_set_version: 0,
            l2: 0.0,
        })
        .await
        .unwrap();
    let later = std::mem::take(&mut r.later);
    let half = later
        .iter()
        .position(|e| e.occurred_at.as_ref().unwrap().seconds >= later[0].occurred_at.as_ref().unwrap().seconds + DAY)
        .unwrap();
    let (day9, day10) = later.split_at(half);

    // Phase 1, uninterrupted: every event read is accounted for.
    let data = r.data.path().to_path_buf();
    let first = tokio::spawn(live::run(r.sidecar.clone(), data.clone(), options(&r)));
    // It starts at the warehouse watermark, saved before it reads anything.
    let start = loop {
        if let Ok(saved) = std::fs::read(data.join("live.json")) {
            let saved: serde_json::Value = serde_json::from_slice(&saved).unwrap();
            break saved["position"].as_u64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(last_scorable(&r.ch) <= start, "the watermark covers what the rig sent");
    send(r.platform.local_addr(), day9.to_vec()).await;
    let end = last_scorable(&r.ch);
    let s = until_scored(&r, end).await;
    let expected = n(
        &r.ch,
        &format!(
            "SELECT count() FROM staging.events WHERE kind IN ('vital_signs', 'discharge') \
             AND position > {start} AND position <= {end}"
        ),
    );
    let skipped: u64 = s.skipped.values().sum();
    assert_eq!(
        s.events_read, expected,
        "every event after the start is read once: {s:?}"
    );
    assert_eq!(s.events_read, s.scored + skipped, "read = scored + skipped: {s:?}");
    assert_eq!(s.scored, s.staged, "each score is staged: {s:?}");
    assert_eq!((s.rejected, s.duplicates), (0, 0), "{s:?}");
    assert!(s.scored > 100, "a simulated day has ward vital-signs sets: {s:?}");
    assert_eq!(
        s.skipped.get("not_in_warehouse"),
        None,
        "every event read was in the warehouse: {s:?}"
    );
    assert!(
        s.skipped.get("no_model").copied().unwrap_or(0) > 0,
        "discharges wait for a readmission model: {s:?}"
    );

    // Phase 2: killed after its first batch, restarted from its saved state.
    send(r.platform.local_addr(), day10.to_vec()).await;
    let end = last_scorable(&r.ch);
    loop {
        warehouse_load(r.platform.local_addr()).await;
        let p = status(&r).await.position;
        if p > s.position {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;
    let _second = tokio::spawn(live::run(r.sidecar.clone(), data.clone(), options(&r)));
    let s = until_scored(&r, end).await;
    assert_eq!(s.rejected, 0, "{s:?}");
    warehouse_load(r.platform.local_addr()).await;
    let facts = n(&r.ch, "SELECT count() FROM warehouse.fact_risk_score FINAL");
    let distinct = n(
        &r.ch,
        "SELECT uniqExact(scored_source_system, scored_event_id, model) FROM warehouse.fact_risk_score FINAL",
    );
    assert_eq!(facts, distinct, "no event scored twice");
    // A score the killed run sent but never heard back about comes back as a duplicate
    // in the replay: staged once either way.
    assert_eq!(
        facts,
        s.staged + s.duplicates,
        "every staged score is in the warehouse: {s:?}"
    );
    let expected = n(
        &r.ch,
        &format!(
            "SELECT count() FROM staging.events WHERE kind IN ('vital_signs', 'discharge') \
             AND position > {start} AND position <= {end}"
        ),
    );
    let skipped: u64 = s.skipped.values().sum();
    // The batch in flight at the kill is counted only when it is done, by the replay:
    // every event is counted once. Its scores that reached the platform before the kill
    // come back as duplicates.
    assert_eq!(s.events_read, expected, "{s:?}");
    assert_eq!(s.events_read, s.scored + skipped, "{s:?}");
    assert_eq!(s.scored, s.staged + s.duplicates, "{s:?}");
    assert!(s.duplicates <= options(&r).batch as u64, "{s:?}");

    // Live score == the model on the offline point-in-time vector of the same event,
    // recomputed now that later facts (and the scores themselves) are in.
    let rows =
        r.ch.query(
            "SELECT p.assigning_authority, p.mrn, f.scored_position, f.scored_at_ms, f.model_version, \
             f.probability, f.alert FROM warehouse.fact_risk_score AS f FINAL \
             ANY INNER JOIN (SELECT patient_key, assigning_authority, mrn FROM warehouse.patient_identity FINAL) AS p \
             USING patient_key ORDER BY f.scored_position FORMAT TSV",
        )
        .unwrap();
    let rows: Vec<Vec<String>> = rows
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    assert_eq!(rows.len() as u64, facts);
    let mut fs = FeatureStoreServiceClient::new(channel(r.ml).await);
    let mut risk = RiskServiceClient::new(channel(r.ml).await);
    for row in rows.iter().step_by((rows.len() / 40).max(1)) {
        let at: i64 = row[3].parse().unwrap();
        let offline = fs
            .get_online_features(pb::GetOnlineFeaturesRequest {
                patient: Some(hospital_proto::events::PatientRef {
                    assigning_authority: row[0].clone(),
                    mrn: row[1].clone(),
                }),
                as_of_position: row[2].parse().unwrap(),
                as_of: Some(prost_types::Timestamp {
                    seconds: at.div_euclid(1000),
                    nanos: (at.rem_euclid(1000) * 1_000_000) as i32,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let again = risk
            .score_one(pb::ScoreRequest {
                request_id: String::new(),
                task: pb::Task::Deterioration24h as i32,
                input: Some(pb::score_request::Input::Features(pb::FeatureVector {
                    values: offline.values,
                })),
                model_version: row[4].parse().unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        let live: f64 = row[5].parse().unwrap();
        assert!(
            (again.probability - live).abs() <= 1e-12,
            "live {live} != offline {} for {row:?}",
            again.probability
        );
    }

    // Drift counts each scored point once, through the restart too.
    let drift = ModelServiceClient::new(channel(r.ml).await)
        .get_drift(pb::GetDriftRequest {
            task: pb::Task::Deterioration24h as i32,
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        drift.live_rows,
        n(
            &r.ch,
            "SELECT count() FROM warehouse.fact_risk_score FINAL WHERE model = 'deterioration_24h'"
        ),
        "drift rows = scores in the warehouse"
    );
    assert!(drift.score_psi.is_finite() && drift.training_rows > 0, "{drift:?}");
    assert_eq!(
        drift.features.len(),
        hospital_ml::features::feature_defs().len(),
        "one row per model feature"
    );
    eprintln!(
        "drift: {} live rows, score PSI {:.3}; largest shifts: {:?}",
        drift.live_rows,
        drift.score_psi,
        &drift.features[..3]
    );

    // The platform's audited risk alerts are the staged scores flagged `alert`.
    let flagged = n(
        &r.ch,
        "SELECT count() FROM warehouse.fact_risk_score FINAL WHERE alert = 1",
    );
    assert!(flagged > 0, "two simulated days raise some risk alert");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let audited = n(
            &r.ch,
            "SELECT count() FROM warehouse.news2_alerts FINAL WHERE kind = 'risk'",
        );
        if audited == flagged {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{audited} risk alerts audited, {flagged} flagged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        n(
            &r.ch,
            "SELECT count() FROM warehouse.news2_alerts FINAL WHERE kind = 'risk' AND source_event_id NOT IN \
             (SELECT source_event_id FROM warehouse.fact_risk_score FINAL WHERE alert = 1)"
        ),
        0
    );
    r.platform.shutdown().await.unwrap();
}
