//! Live scoring: the sidecar follows the platform's change feed (`RealtimeService`'s
//! `ChangeFeedService.Subscribe`, vital-signs sets and discharges) from its saved
//! position, scores each new point with the promoted model of its task, and writes each
//! score back through the platform's ingest (`IngestService.IngestBatch`) as a
//! `risk_score` event, so it is staged, in the warehouse and on the feed like any other
//! fact. A high score whose encounter's previous score by the model was not high carries
//! `alert`, and the platform raises an `ALERT_KIND_RISK` alert for it.
//!
//! Features come from the one code path ([`crate::features::features`]) over the
//! warehouse's facts as of the point: `(occurred_at, position)` of the scored event.
//! Scoring an event therefore waits until the warehouse load watermark covers its
//! position (at most the platform's `batch.interval_secs` after it was staged), and the
//! live score equals the score of the offline point-in-time row of the same event, by
//! construction and by test (`ml/tests/live.rs`).
//!
//! Exactly once: a score's event id is `<model>/<scored source system>/<scored event
//! id>`, so a batch replayed after a crash is absorbed by the platform's first-commit-
//! wins. The feed position and each encounter's last high/not-high per model are saved
//! together (one file, written whole and renamed) only after the batch's scores are
//! acknowledged; a replay recomputes the same scores and the same alert flags.
//!
//! Every event read is accounted for ([`LiveStatus`]): scored, or skipped with its
//! reason; every score sent is staged, a duplicate or rejected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hospital_proto::events::{self as ev, clinical_event::Payload};
use hospital_proto::ingest::{ingest_service_client::IngestServiceClient, IngestRequest};
use hospital_proto::ml as pb;
use hospital_proto::realtime::{change_feed_service_client::ChangeFeedServiceClient, ChangeEvent, SubscribeRequest};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use crate::drift::Accum;
use crate::features::labels::{discharge_point, ward_encounter, Task};
use crate::features::{extract, features, location_at, AsOf, History};
use crate::server::Sidecar;

/// The source system of the scores the sidecar writes.
pub const SOURCE_SYSTEM: &str = "hospital-ml";
/// Factors kept with each score (the platform accepts up to 20).
pub const TOP_FACTORS: usize = 10;
/// The longest event id the platform accepts.
const MAX_EVENT_ID: usize = 128;

/// How live scoring runs.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The platform's gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub platform: String,
    /// Events scored together (one warehouse read, one ingest call).
    pub batch: usize,
    /// How long a batch waits for more events once it has one.
    pub linger: Duration,
    /// How often the warehouse watermark is checked while waiting for it.
    pub poll: Duration,
    /// At the first start (no saved state), also score the vital-signs sets of this many
    /// hours before the newest one in the warehouse (and every event after the first of
    /// them); 0 starts at the warehouse watermark.
    pub backfill_hours: u32,
}

impl LiveOptions {
    pub fn new(platform: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            batch: 256,
            linger: Duration::from_millis(200),
            poll: Duration::from_millis(250),
            backfill_hours: 0,
        }
    }
}

/// What is saved between runs (`<data_dir>/live.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Saved {
    /// The feed position done.
    position: u64,
    /// Whether each encounter in hospital's last deterioration score was high (by
    /// [`high_key`]; removed at its discharge).
    high: BTreeMap<String, bool>,
    /// What was scored, per model version ([`drift_key`]), for drift.
    #[serde(default)]
    drift: BTreeMap<String, Accum>,
}

/// The key of a model version's drift accumulator.
pub fn drift_key(task: Task, version: u64) -> String {
    format!("{}/v{version}", task.name())
}

fn high_key(model: &str, encounter: &str) -> String {
    format!("{model}\u{1f}{encounter}")
}

impl Saved {
    fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not live state", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Written whole to a temporary file, synced, then renamed over the old one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec(self)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        Ok(())
    }
}

/// Live scoring's account, shared with `RiskService.GetLiveStatus`.
#[derive(Debug, Default)]
pub struct LiveStatus {
    inner: Mutex<pb::LiveStatus>,
    drift: Mutex<BTreeMap<String, Accum>>,
}

impl LiveStatus {
    /// What live scoring has scored with a model version, as saved.
    pub fn drift(&self, task: Task, version: u64) -> Accum {
        self.drift
            .lock()
            .ok()
            .and_then(|d| d.get(&drift_key(task, version)).cloned())
            .unwrap_or_default()
    }

    /// What is saved now: the position done and the drift counted up to it.
    fn saved(&self, saved: &Saved) {
        self.update(|s| s.position = saved.position);
        if let Ok(mut d) = self.drift.lock() {
            d.clone_from(&saved.drift);
        }
    }

    pub fn snapshot(&self) -> pb::LiveStatus {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut pb::LiveStatus)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }
}

/// One scored point, before it becomes an event.
#[derive(Debug, Clone)]
pub struct Scored {
    pub task: Task,
    /// The model version that scored (its reference is drift's).
    pub model: Arc<crate::registry::Registered>,
    /// The feature vector scored.
    pub values: Vec<f64>,
    pub model_version: u64,
    pub probability: f64,
    pub threshold: f64,
    pub encounter_id: String,
    pub department_code: String,
    pub ward_code: String,
    pub at: AsOf,
    pub factors: Vec<ev::RiskFactor>,
}

/// Why an event read is not scored (the keys of `LiveStatus.skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NotOnAWard,
    NotADischargeAlive,
    NoModel,
    NotInWarehouse,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NotOnAWard => "not_on_a_ward",
            Skip::NotADischargeAlive => "not_a_discharge_alive",
            Skip::NoModel => "no_model",
            Skip::NotInWarehouse => "not_in_warehouse",
        }
    }
}

/// The point a change-feed event is scored at, and its task: a vital-signs set on a
/// ward (deterioration) or an inpatient discharge alive (readmission). The rules are the
/// training rows' ([`ward_encounter`], [`discharge_point`]).
fn point(h: &History, change: &ChangeEvent) -> Result<(Task, AsOf, String, (String, String)), Skip> {
    let event = change.event.as_ref().ok_or(Skip::NotInWarehouse)?;
    match event.payload.as_ref() {
        Some(Payload::VitalSigns(_)) => {
            let set = h
                .sets
                .iter()
                .find(|s| s.position == change.position && s.source_event_id == event.event_id)
                .ok_or(Skip::NotInWarehouse)?;
            let at = AsOf {
                at_ms: set.at_ms,
                position: set.position,
            };
            let e = ward_encounter(h, at).ok_or(Skip::NotOnAWard)?;
            Ok((Task::Deterioration24h, at, e.encounter_id.clone(), location_at(e, at)))
        }
        Some(Payload::Discharge(d)) => {
            let e = h
                .encounters
                .iter()
                .find(|e| e.encounter_id == d.encounter_id && e.discharge_position == change.position)
                .ok_or(Skip::NotInWarehouse)?;
            let (at, _) = discharge_point(e).ok_or(Skip::NotADischargeAlive)?;
            Ok((Task::Readmission30d, at, e.encounter_id.clone(), location_at(e, at)))
        }
        _ => Err(Skip::NotInWarehouse),
    }
}

/// Scores one change-feed event from its patient's history with the served model.
pub fn score_event(sidecar: &Sidecar, h: &History, change: &ChangeEvent) -> Result<Scored, Skip> {
    let (task, at, encounter_id, (department_code, ward_code)) = point(h, change)?;
    let model = sidecar.registry.served(task).ok_or(Skip::NoModel)?;
    let values = features(h, at);
    let s = model.model.score(ndarray::ArrayView1::from(&values));
    let factors = s
        .by_impact()
        .into_iter()
        .take(TOP_FACTORS)
        .map(|j| ev::RiskFactor {
            feature: model.model.feature_names[j].clone(),
            value: values[j],
            contribution: s.contributions[j],
        })
        .collect();
    Ok(Scored {
        task,
        model: model.clone(),
        values,
        model_version: model.version,
        probability: s.probability,
        threshold: model.threshold,
        encounter_id,
        department_code,
        ward_code,
        at,
        factors,
    })
}

/// The event id of a score: readable when it fits, else the model and a UUID v5 of the
/// scored event's key.
pub fn score_event_id(model: &str, source_system: &str, event_id: &str) -> String {
    let readable = format!("{model}/{source_system}/{event_id}");
    if readable.len() <= MAX_EVENT_ID {
        return readable;
    }
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3b8f_0d2e_6a41_4c57_9e13_b7d4_20c6_8f95);
    let key = format!("{source_system}\u{1f}{event_id}");
    format!("{model}/{}", uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()))
}

fn risk_event(change: &ChangeEvent, s: &Scored, alert: bool) -> ev::ClinicalEvent {
    let scored = change.event.clone().unwrap_or_default();
    let model = s.task.name();
    ev::ClinicalEvent {
        event_id: score_event_id(model, &scored.source_system, &scored.event_id),
        source_system: SOURCE_SYSTEM.into(),
        occurred_at: scored.occurred_at,
        patient: scored.patient,
        payload: Some(Payload::RiskScore(ev::RiskScore {
            encounter_id: s.encounter_id.clone(),
            model: model.into(),
            model_version: s.model_version,
            probability: s.probability,
            threshold: s.threshold,
            alert,
            scored_event_id: scored.event_id,
            scored_source_system: scored.source_system,
            scored_position: change.position,
            department_code: s.department_code.clone(),
            ward_code: s.ward_code.clone(),
            top_factors: s.factors.clone(),
        })),
    }
}

/// Live scoring until the task is dropped: follows the feed, retrying after any error
/// (the platform or the warehouse away) with a back-off up to 5 s.
pub async fn run(sidecar: Arc<Sidecar>, data_dir: PathBuf, options: LiveOptions) {
    let path = data_dir.join("live.json");
    let status = sidecar.live.clone();
    status.update(|s| {
        s.enabled = true;
        s.platform = options.platform.clone();
    });
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&sidecar, &path, &options).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(error = %message, retry_in_ms = backoff.as_millis() as u64, "live scoring");
                status.update(|s| s.last_error = message);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Where live scoring starts: the saved state, else the warehouse watermark now (the
/// history before it is the training sets' business, not live scoring's), or earlier
/// by `backfill_hours` of vital-signs sets.
async fn start(sidecar: &Sidecar, path: &Path, backfill_hours: u32) -> anyhow::Result<Saved> {
    if let Some(saved) = Saved::load(path)? {
        return Ok(saved);
    }
    let watermark = extract::watermark(&sidecar.warehouse)
        .await
        .context("warehouse watermark")?;
    let position = if backfill_hours > 0 {
        let first = extract::first_set_position_within(&sidecar.warehouse, i64::from(backfill_hours) * 3_600_000)
            .await
            .context("backfill start")?;
        first.map_or(watermark, |p| watermark.min(p.saturating_sub(1)))
    } else {
        watermark
    };
    let saved = Saved {
        position,
        ..Saved::default()
    };
    saved.save(path)?;
    tracing::info!(position, watermark, backfill_hours, "live scoring starts");
    Ok(saved)
}

async fn follow(sidecar: &Sidecar, path: &Path, options: &LiveOptions) -> anyhow::Result<()> {
    let mut saved = start(sidecar, path, options.backfill_hours).await?;
    let status = &sidecar.live;
    status.saved(&saved);
    let channel = tonic::transport::Endpoint::from_shared(options.platform.clone())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to the platform at {}", options.platform))?;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut feed = ChangeFeedServiceClient::new(channel)
        .subscribe(SubscribeRequest {
            after_position: saved.position,
            kinds: vec!["vital_signs".into(), "discharge".into()],
            ward_codes: vec![],
            patient_mrns: vec![],
        })
        .await
        .context("subscribe to the change feed")?
        .into_inner();
    tracing::info!(after = saved.position, platform = %options.platform, "live scoring follows the change feed");
    loop {
        let Some(first) = feed.next().await else {
            return Ok(());
        };
        let mut batch = vec![first.context("change feed")?];
        let deadline = tokio::time::Instant::now() + options.linger;
        while batch.len() < options.batch {
            match tokio::time::timeout_at(deadline, feed.next()).await {
                Ok(Some(next)) => batch.push(next.context("change feed")?),
                Ok(None) | Err(_) => break,
            }
        }
        let done = score_batch(sidecar, &mut ingest, &saved, &batch, options).await?;
        done.save(path)?;
        saved = done;
        status.saved(&saved);
        status.update(|s| s.last_error.clear());
    }
}

/// Scores one batch and writes its scores; returns the state to save after it.
async fn score_batch(
    sidecar: &Sidecar,
    ingest: &mut IngestServiceClient<tonic::transport::Channel>,
    saved: &Saved,
    batch: &[ChangeEvent],
    options: &LiveOptions,
) -> anyhow::Result<Saved> {
    let status = &sidecar.live;
    let last = batch.last().map_or(saved.position, |c| c.position);
    // The warehouse must hold every fact up to the batch's last position.
    loop {
        let w = extract::watermark(&sidecar.warehouse)
            .await
            .context("warehouse watermark")?;
        status.update(|s| s.warehouse_watermark = w);
        if w >= last {
            break;
        }
        tokio::time::sleep(options.poll).await;
    }
    let histories = batch_histories(sidecar, batch).await?;
    let mut next = saved.clone();
    next.position = last;
    let mut events = Vec::new();
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut alerts = 0u64;
    let unknown = History::default();
    for change in batch {
        let patient = change.event.as_ref().and_then(|e| e.patient.as_ref());
        let h = patient
            .and_then(|p| histories.get(&(p.assigning_authority.clone(), p.mrn.clone())))
            .unwrap_or(&unknown);
        // A discharge ends the encounter's deterioration scoring: its entry goes, so
        // the saved state holds the encounters in hospital, not every one ever scored.
        if let Some(Payload::Discharge(d)) = change.event.as_ref().and_then(|e| e.payload.as_ref()) {
            next.high
                .remove(&high_key(Task::Deterioration24h.name(), &d.encounter_id));
        }
        match score_event(sidecar, h, change) {
            Ok(s) => {
                let high = s.probability >= s.threshold;
                // One readmission score per encounter: high is new. Deterioration: high
                // after a score that was not (or none).
                let alert = match s.task {
                    Task::Readmission30d => high,
                    Task::Deterioration24h => {
                        let key = high_key(s.task.name(), &s.encounter_id);
                        let was_high = next.high.insert(key, high).unwrap_or(false);
                        high && !was_high
                    }
                };
                alerts += u64::from(alert);
                next.drift.entry(drift_key(s.task, s.model_version)).or_default().add(
                    &s.model.reference,
                    s.probability,
                    &s.values,
                );
                events.push(risk_event(change, &s, alert));
            }
            Err(skip) => *skipped.entry(skip.reason()).or_default() += 1,
        }
    }
    let mut staged = 0u64;
    let mut duplicates = 0u64;
    let mut rejected = 0u64;
    for chunk in events.chunks(500) {
        let response = ingest
            .ingest_batch(IngestRequest {
                request_id: format!("live-{last}"),
                events: chunk.to_vec(),
            })
            .await
            .context("ingest the scores")?
            .into_inner();
        duplicates += response.duplicates.len() as u64;
        staged += (response.committed_event_ids.len() - response.duplicates.len()) as u64;
        rejected += response.rejections.len() as u64;
        for r in &response.rejections {
            let why: Vec<String> = r
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
            tracing::error!(event_id = %r.event_id, violations = %why.join("; "), "the platform rejected a score");
        }
    }
    status.update(|s| {
        s.events_read += batch.len() as u64;
        s.scored += events.len() as u64;
        for (reason, n) in &skipped {
            *s.skipped.entry((*reason).to_string()).or_default() += n;
        }
        s.staged += staged;
        s.duplicates += duplicates;
        s.rejected += rejected;
        s.alerts += alerts;
    });
    Ok(next)
}

/// The histories of the batch's patients, by (assigning authority, MRN).
async fn batch_histories(
    sidecar: &Sidecar,
    batch: &[ChangeEvent],
) -> anyhow::Result<HashMap<(String, String), History>> {
    let mut wanted: Vec<(String, String)> = batch
        .iter()
        .filter_map(|c| c.event.as_ref()?.patient.as_ref())
        .map(|p| (p.assigning_authority.clone(), p.mrn.clone()))
        .collect();
    wanted.sort();
    wanted.dedup();
    let keys = extract::patient_keys(&sidecar.warehouse, &wanted)
        .await
        .context("patient keys")?;
    let key_list: Vec<String> = keys.values().cloned().collect();
    let (mut histories, _) = extract::histories(&sidecar.warehouse, &key_list)
        .await
        .context("patient histories")?;
    Ok(keys
        .into_iter()
        .filter_map(|(id, key)| Some((id, histories.remove(&key)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_event_ids_fit_the_platform() {
        assert_eq!(
            score_event_id("deterioration_24h", "sim", "vs-1"),
            "deterioration_24h/sim/vs-1"
        );
        let long = "x".repeat(120);
        let id = score_event_id("deterioration_24h", "sim", &long);
        assert!(id.len() <= MAX_EVENT_ID, "{id}");
        assert_eq!(id, score_event_id("deterioration_24h", "sim", &long), "deterministic");
        assert_ne!(id, score_event_id("deterioration_24h", "sim2", &long));
    }

    #[test]
    fn saved_state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.json");
        assert_eq!(Saved::load(&path).unwrap(), None);
        let mut s = Saved {
            position: 42,
            ..Default::default()
        };
        s.drift.insert("deterioration_24h/v1".into(), Accum::default());
        s.high.insert(high_key("deterioration_24h", "E1"), true);
        s.save(&path).unwrap();
        assert_eq!(Saved::load(&path).unwrap(), Some(s));
    }
}
