//! The real-time processor: follows committed events (from the warehouse watermark at
//! start-up, then live from the bus) and keeps the live census and the NEWS2 alert state
//! current; publishes census changes and alerts to subscribers and alerts to the audit
//! table. One task owns the writes; RPC readers take a read lock.
//!
//! Start-up rebuild: the census and alert state are loaded from the warehouse as of its
//! load watermark, then every staged event after the watermark is replayed through the
//! same code, so a restart shows the same census. Alerts already audited before a restart
//! are not raised again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hospital_proto::events::{ClinicalEvent, PatientRef};
use hospital_proto::realtime::{Alert, CensusUpdate};
use prost::Message;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::alerts::{AlertAudit, AlertState};
use super::bus::Bus;
use super::census::{CensusState, PatientLocation};
use super::follow::Follower;
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

/// Rebuilds the state from the warehouse and starts following staging.
pub async fn start(
    databases: &Databases,
    bus: &Bus,
    committed: watch::Receiver<u64>,
    shutdown: CancellationToken,
) -> Result<(Realtime, JoinHandle<()>)> {
    let warehouse = databases.warehouse.clone();
    let (census, watermark) = CensusState::load(&warehouse).await?;
    let alerts = AlertState::load(&warehouse).await?;
    let follower = Follower::new(bus, databases.staging.clone(), committed, watermark);
    let audit = AlertAudit::start(warehouse.clone());
    let realtime = Realtime {
        state: Arc::new(RwLock::new(State { census, alerts })),
        alerts: broadcast::channel(FANOUT_CAPACITY).0,
        census: broadcast::channel(FANOUT_CAPACITY).0,
        undecodable: Arc::default(),
    };
    tracing::info!(
        watermark,
        "real-time state rebuilt from the warehouse; replaying staging after it"
    );
    let task = tokio::spawn(run(realtime.clone(), follower, audit, warehouse, shutdown));
    Ok((realtime, task))
}

async fn run(
    rt: Realtime,
    mut follower: Follower,
    audit: AlertAudit,
    warehouse: clickhouse::Client,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
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
            let updates = state.census.apply(row.position, &event);
            let location = event.patient.as_ref().and_then(|p| state.census.location_of(p));
            let alert = state.alerts.apply(row.position, &event, location.as_ref());
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
    audit.shutdown().await;
}
