//! The real-time processor: follows committed events (from the warehouse watermark at
//! start-up, then live from the bus) and keeps the live census and the NEWS2 alert state
//! current; publishes census changes and alerts to subscribers and alerts to the audit
//! table. One task owns the writes; RPC readers take a read lock.
//!
//! Start-up rebuild: the census is loaded from the warehouse as of its load watermark;
//! the NEWS2 state from the local snapshot ([`Snapshot`]) as of the position it was saved
//! at, or, when there is none that matches staging, from the warehouse as of the
//! watermark. Every staged event after the lower of the two is then replayed through the
//! same code, each state taking only the events after its own position, so a restart
//! shows the same census and scores. Alerts already audited before a restart are not
//! raised again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hospital_proto::events::{ClinicalEvent, PatientRef};
use hospital_proto::realtime::{Alert, CensusUpdate};
use prost::Message;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::alerts::{audited_position_in, AlertAudit, AlertState};
use super::bus::Bus;
use super::census::{CensusState, PatientLocation};
use super::follow::Follower;
use super::snapshot::Snapshot;
use crate::db::Databases;
use crate::error::Result;
use crate::warehouse::bookkeeping::{write_errors, LoadError};

/// Census changes and alerts kept for slow subscribers before they are told they fell
/// behind.
const FANOUT_CAPACITY: usize = 4096;

pub struct State {
    pub census: CensusState,
    pub alerts: AlertState,
}

/// Shared handle to the real-time views.
#[derive(Clone)]
pub struct Realtime {
    pub state: Arc<RwLock<State>>,
    pub alerts: broadcast::Sender<Arc<Alert>>,
    pub census: broadcast::Sender<Arc<CensusUpdate>>,
    /// Staged events skipped because their payload does not decode (each is logged with
    /// its position and recorded in `warehouse.load_errors`).
    pub undecodable: Arc<AtomicU64>,
}

impl Realtime {
    /// Where a patient is now, per the live census.
    pub fn location_of(&self, patient: &PatientRef) -> Option<PatientLocation> {
        self.state.read().ok()?.census.location_of(patient)
    }

    /// How many staged events the processor skipped because they do not decode.
    pub fn undecodable_events(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }
}

/// Where the NEWS2 state is kept between runs, and how often it is saved.
pub struct SnapshotOptions {
    pub dir: std::path::PathBuf,
    pub every: std::time::Duration,
}

/// The NEWS2 state to start from, the staging position it is current to, and whether it
/// came from the local snapshot (else it was rebuilt from the warehouse as of
/// `watermark`, and is saved at the first chance).
async fn alert_state(databases: &Databases, snapshot: &Snapshot, watermark: u64) -> Result<(AlertState, u64, bool)> {
    let warehouse = &databases.warehouse;
    match snapshot.load(&databases.staging).await {
        Ok(Some(saved)) => {
            let patients = saved.patients.len();
            match AlertState::restore(saved.patients, audited_position_in(warehouse).await?) {
                Ok(state) => {
                    tracing::info!(
                        patients,
                        position = saved.covered,
                        "NEWS2 state loaded from the local snapshot"
                    );
                    return Ok((state, saved.covered, true));
                }
                Err(e) => tracing::warn!(error = %e, "real-time snapshot unreadable; rebuilding from the warehouse"),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "real-time snapshot unreadable; rebuilding from the warehouse"),
    }
    snapshot.clear().await?;
    Ok((AlertState::load(warehouse).await?, watermark, false))
}

/// Rebuilds the state (see the module doc) and starts following staging.
pub async fn start(
    databases: &Databases,
    bus: &Bus,
    committed: watch::Receiver<u64>,
    snapshot: SnapshotOptions,
    shutdown: CancellationToken,
) -> Result<(Realtime, JoinHandle<()>)> {
    let warehouse = databases.warehouse.clone();
    let (census, watermark) = CensusState::load(&warehouse).await?;
    let store = Snapshot::open(&snapshot.dir).await?;
    let (alerts, alerts_from, from_snapshot) = alert_state(databases, &store, watermark).await?;
    let from = Positions {
        census: watermark,
        alerts: alerts_from,
    };
    let follower = Follower::new(bus, databases.staging.clone(), committed, watermark.min(alerts_from));
    let audit = AlertAudit::start(warehouse.clone());
    let realtime = Realtime {
        state: Arc::new(RwLock::new(State { census, alerts })),
        alerts: broadcast::channel(FANOUT_CAPACITY).0,
        census: broadcast::channel(FANOUT_CAPACITY).0,
        undecodable: Arc::default(),
    };
    tracing::info!(
        census_from = from.census,
        alerts_from = from.alerts,
        "real-time state rebuilt; replaying staging after it"
    );
    // A state rebuilt from the warehouse is saved at the first tick, anchored to the
    // event at its position, even if nothing new arrives.
    let last = match (from_snapshot, alerts_from) {
        (false, p) if p > 0 => crate::staging::key_at(&databases.staging, p).await?.map(|k| (p, k)),
        _ => None,
    };
    let saver = Saver {
        store,
        every: snapshot.every,
        saved: if from_snapshot { alerts_from } else { 0 },
        last,
        broken: false,
    };
    let task = tokio::spawn(run(realtime.clone(), follower, from, audit, saver, warehouse, shutdown));
    Ok((realtime, task))
}

/// The positions the census and the NEWS2 state are current to at start-up: each takes
/// only the replayed events after its own.
#[derive(Clone, Copy)]
struct Positions {
    census: u64,
    alerts: u64,
}

/// Saves the NEWS2 state to the local snapshot.
struct Saver {
    store: Snapshot,
    every: std::time::Duration,
    /// Position of the last save.
    saved: u64,
    /// Position and key of the last event applied.
    last: Option<(u64, Vec<u8>)>,
    /// A save failed: later saves would lack its changes, so none is made (the snapshot
    /// on disk stays consistent at its older position).
    broken: bool,
}

impl Saver {
    async fn save(&mut self, rt: &Realtime, audit_complete: bool) {
        let Some((position, anchor)) = self.last.clone() else {
            return;
        };
        if self.broken || position <= self.saved || !audit_complete {
            return;
        }
        let changed = {
            let Ok(mut state) = rt.state.write() else { return };
            state.alerts.take_changes()
        };
        let result = match changed {
            Ok(changed) => self.store.save(changed, position, anchor).await,
            Err(e) => Err(crate::error::Error::Internal(format!("encode NEWS2 state: {e}"))),
        };
        match result {
            Ok(()) => self.saved = position,
            Err(e) => {
                self.broken = true;
                tracing::error!(error = %e, position, "cannot save the real-time snapshot; the next start-up replays from the last one");
            }
        }
    }
}

async fn run(
    rt: Realtime,
    mut follower: Follower,
    from: Positions,
    audit: AlertAudit,
    mut saver: Saver,
    warehouse: clickhouse::Client,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(saver.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                saver.save(&rt, audit.all_written()).await;
                continue;
            }
            next = follower.next() => next,
        };
        let row = match next {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                // ClickHouse unreachable while catching up: try again shortly.
                tracing::warn!(error = %e, position = follower.position(), "real-time follower cannot read staging");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        saver.last = Some((row.position, crate::staging::key(&row.source_system, &row.event_id)));
        let event = match ClinicalEvent::decode(row.payload.as_slice()) {
            Ok(e) => e,
            Err(e) => {
                let skipped = rt.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(position = row.position, error = %e, skipped, "staged event does not decode; skipped by real-time");
                let error = LoadError {
                    position: row.position,
                    source_system: row.source_system,
                    event_id: row.event_id,
                    kind: row.kind,
                    error: format!("real time: payload does not decode: {e}"),
                    run_id: "realtime".into(),
                    recorded_at_ms: crate::now_ms(),
                };
                if let Err(e) = write_errors(&warehouse, &[error]).await {
                    tracing::warn!(position = row.position, error = %e, "cannot record the undecodable event in load_errors");
                }
                continue;
            }
        };
        let (updates, alert) = {
            let Ok(mut state) = rt.state.write() else {
                tracing::error!("real-time state lock poisoned; stopping");
                break;
            };
            let updates = if row.position > from.census {
                state.census.apply(row.position, &event)
            } else {
                Vec::new()
            };
            let alert = if row.position > from.alerts {
                let location = event.patient.as_ref().and_then(|p| state.census.location_of(p));
                state.alerts.apply(row.position, &event, location.as_ref())
            } else {
                None
            };
            (updates, alert)
        };
        for u in updates {
            let _ = rt.census.send(Arc::new(u));
        }
        if let Some(alert) = alert {
            audit.record(&alert).await;
            let _ = rt.alerts.send(Arc::new(alert));
        }
    }
    let audit_complete = audit.shutdown().await;
    saver.save(&rt, audit_complete).await;
}
