//! One chunk of a warehouse load: read staged events (from, to], decode them (rows
//! that do not decode go to `load_errors`), drop duplicates, then write dimensions,
//! facts and the registry, in an order that makes a crash at any point safe to redo:
//! every write is keyed (ReplacingMergeTree) and every merge is idempotent, and the
//! registry is written last, so a redone chunk finds its events registered at their
//! own positions (or not at all) and loads them again.
//!
//! Owns: the order of stages within a chunk. Must not: move the watermark (the run
//! does, after the chunk returns) or hold more than one chunk in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use clickhouse::Client;
use tracing::Instrument;
use uuid::Uuid;

use super::dedup::{first_in_chunk, not_loaded_before};
use super::progress::Progress;
use super::transform::{self, ChunkPlan, Decoded, StagedPayload};
use crate::error::{Error, Result};
use crate::now_ms;
use crate::warehouse::bookkeeping::{self, EventKey, LoadError};
use crate::warehouse::encounter::{self, EncounterState};
use crate::warehouse::icu;
use crate::warehouse::patient::{self, DimPatient};
use crate::warehouse::reference::{self, Scd1Row};
use crate::warehouse::{calendar, Version};

pub(crate) struct Clients {
    pub staging: Client,
    pub warehouse: Client,
    /// Longest time one stage of a chunk may take.
    pub stage_timeout: Duration,
}

/// What one chunk did.
#[derive(Debug, Default)]
pub(crate) struct ChunkOutcome {
    pub read: u64,
    /// Position of the last staged row read (None: nothing staged in the range).
    pub last_position: Option<u64>,
    pub loaded: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub rows: Vec<(&'static str, u64)>,
}

impl ChunkOutcome {
    fn wrote(&mut self, progress: &mut Progress, table: &'static str, rows: u64) {
        self.rows.push((table, rows));
        progress.written += rows;
    }
}

/// Loads staged events with `from < position <= to`, at most `limit` of them.
pub(crate) async fn load_chunk(
    clients: &Clients,
    from: u64,
    to: u64,
    limit: u64,
    version: Version,
    run_id: &str,
    progress: &mut Progress,
) -> Result<ChunkOutcome> {
    let span = tracing::info_span!("chunk", from, to, version);
    load_chunk_inner(clients, from, to, limit, version, run_id, progress)
        .instrument(span)
        .await
}

async fn load_chunk_inner(
    clients: &Clients,
    from: u64,
    to: u64,
    limit: u64,
    version: Version,
    run_id: &str,
    progress: &mut Progress,
) -> Result<ChunkOutcome> {
    let wh = &clients.warehouse;
    let limit_each = clients.stage_timeout;
    let mut out = ChunkOutcome::default();

    let rows: Vec<StagedPayload> = bounded(
        limit_each,
        "read_staging",
        clients
            .staging
            .query("SELECT ?fields FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?")
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(),
    )
    .await?;
    out.read = rows.len() as u64;
    out.last_position = rows.last().map(|r| r.position);
    progress.read += out.read;
    let chunk_to = out.last_position.unwrap_or(to);
    progress.stage("read_staging", format!("{} staged events", out.read), from, chunk_to);
    if rows.is_empty() {
        return Ok(out);
    }

    // Decode before dedup: a corrupt copy must not shadow a good resend of the event.
    let mut decoded: Vec<Decoded> = Vec::with_capacity(rows.len());
    let mut errors: Vec<LoadError> = Vec::new();
    for row in &rows {
        match transform::decode(row) {
            Ok(d) => decoded.push(d),
            Err(error) => {
                tracing::error!(position = row.position, source_system = %row.source_system,
                    event_id = %row.event_id, kind = %row.kind, %error, "staged event cannot be loaded");
                errors.push(LoadError {
                    position: row.position,
                    source_system: row.source_system.clone(),
                    event_id: row.event_id.clone(),
                    kind: row.kind.clone(),
                    error,
                    run_id: run_id.to_string(),
                    recorded_at_ms: now_ms(),
                });
            }
        }
    }
    drop(rows);
    out.errors = errors.len() as u64;
    let n = bounded(limit_each, "decode", bookkeeping::write_errors(wh, &errors)).await?;
    out.wrote(progress, bookkeeping::ERRORS_TABLE, n);
    progress.stage(
        "decode",
        format!("{} decoded, {} load errors", decoded.len(), errors.len()),
        from,
        chunk_to,
    );

    let (first, repeats) = first_in_chunk(&decoded);
    let keys: Vec<EventKey> = first
        .iter()
        .map(|&i| (decoded[i].source_system.clone(), decoded[i].event_id.clone()))
        .collect();
    let registered = bounded(limit_each, "dedup", bookkeeping::registered_positions(wh, &keys)).await?;
    let (keep, loaded_before) = not_loaded_before(&decoded, first, &registered);
    out.duplicates = repeats + loaded_before;
    out.loaded = keep.len() as u64;
    let decoded: Vec<Decoded> = {
        let mut all: Vec<Option<Decoded>> = decoded.into_iter().map(Some).collect();
        keep.into_iter().filter_map(|i| all[i].take()).collect()
    };
    progress.stage(
        "dedup",
        format!("{repeats} repeated in chunk, {loaded_before} loaded before"),
        from,
        chunk_to,
    );

    let mut plan = transform::plan(&decoded, version);
    drop(decoded);

    let n = bounded(limit_each, "dim_patient", load_patients(wh, &plan, version)).await?;
    out.wrote(progress, patient::DIM_TABLE, n);
    progress.stage("dim_patient", format!("{n} patient versions written"), from, chunk_to);

    let n = bounded(limit_each, "dim_location", load_locations(wh, &plan, version)).await?;
    out.wrote(progress, reference::LOCATION_TABLE, n);
    progress.stage("dim_location", format!("{n} locations written"), from, chunk_to);

    let drugs = std::mem::take(&mut plan.drugs);
    let n = bounded(limit_each, "dim_drug", async {
        let stored = reference::drugs_of(wh, &codes(&drugs)).await?;
        reference::write_drugs(wh, &reference::scd1_merge(stored, drugs, version)).await
    })
    .await?;
    out.wrote(progress, reference::DRUG_TABLE, n);
    progress.stage("dim_drug", format!("{n} drugs written"), from, chunk_to);

    let payers = std::mem::take(&mut plan.payers);
    let n = bounded(limit_each, "dim_payer", async {
        let stored = reference::payers_of(wh, &codes(&payers)).await?;
        reference::write_payers(wh, &reference::scd1_merge(stored, payers, version)).await
    })
    .await?;
    out.wrote(progress, reference::PAYER_TABLE, n);
    progress.stage("dim_payer", format!("{n} payers written"), from, chunk_to);

    for (table, n) in bounded(limit_each, "facts", plan.facts.write(wh)).await? {
        out.wrote(progress, table, n);
        progress.stage(table, format!("{n} rows written"), from, chunk_to);
    }

    let (n, encounter_dates) = bounded(limit_each, encounter::TABLE, load_encounters(wh, &plan, version)).await?;
    out.wrote(progress, encounter::TABLE, n);
    progress.stage(encounter::TABLE, format!("{n} encounters written"), from, chunk_to);

    plan.date_keys.extend(encounter_dates);
    let (n, stay_dates) = bounded(limit_each, icu::TABLE, load_icu_stays(wh, &plan, version)).await?;
    out.wrote(progress, icu::TABLE, n);
    progress.stage(icu::TABLE, format!("{n} ICU stays written"), from, chunk_to);
    plan.date_keys.extend(stay_dates);
    let n = bounded(limit_each, calendar::TABLE, calendar::write(wh, &plan.date_keys)).await?;
    out.wrote(progress, calendar::TABLE, n);
    progress.stage(calendar::TABLE, format!("{n} dates written"), from, chunk_to);

    // Last: an event counts as loaded once everything it feeds is written.
    let n = bounded(limit_each, "register", bookkeeping::register(wh, &plan.registry)).await?;
    out.wrote(progress, bookkeeping::REGISTRY_TABLE, n);
    progress.stage("register", format!("{n} events registered"), from, chunk_to);
    Ok(out)
}

/// Runs one stage with a time limit: a ClickHouse that stops answering fails the run
/// (retryable, the chunk is redone) instead of holding the load lock forever.
pub(crate) async fn bounded<T, E>(limit: Duration, stage: &str, work: impl Future<Output = Result<T, E>>) -> Result<T>
where
    Error: From<E>,
{
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Unavailable(format!(
            "warehouse load stage {stage} took longer than {} ms",
            limit.as_millis()
        ))),
    }
}

fn codes<T: Scd1Row>(rows: &[T]) -> Vec<String> {
    let set: BTreeSet<String> = rows.iter().map(|r| r.code().to_string()).collect();
    set.into_iter().collect()
}

/// Identity map, demographic log, SCD2 rebuild of the patients with demographic events
/// in the chunk, and inferred members for the patients never registered. Returns the
/// dim_patient rows written.
async fn load_patients(wh: &Client, plan: &ChunkPlan, version: Version) -> Result<u64> {
    let identities: Vec<_> = plan.identities.values().cloned().collect();
    patient::write_identities(wh, &identities).await?;
    // The log first: the rebuild below reads it back, together with older events.
    patient::write_demographics(wh, &plan.demographics).await?;

    let changed = plan.demographic_patients();
    let events = patient::demographics_of(wh, &changed).await?;
    let stored = patient::versions_of(wh, &changed).await?;
    let mut rows: Vec<DimPatient> = Vec::new();
    for key in &changed {
        let history = patient::rebuild_history(events.get(key).map_or(&[][..], Vec::as_slice), version);
        let current = stored.get(key).map_or(&[][..], Vec::as_slice);
        rows.extend(patient::history_diff(current, &history, version));
    }

    let changed: BTreeSet<Uuid> = changed.into_iter().collect();
    let others: Vec<Uuid> = plan
        .referenced
        .keys()
        .filter(|k| !changed.contains(k))
        .copied()
        .collect();
    let existing: BTreeSet<Uuid> = patient::existing_members(wh, &others).await?.into_iter().collect();
    for key in others.iter().filter(|k| !existing.contains(k)) {
        rows.push(DimPatient::inferred(*key, &plan.referenced[key], version));
    }
    patient::write_versions(wh, &rows).await
}

async fn load_locations(wh: &Client, plan: &ChunkPlan, version: Version) -> Result<u64> {
    let departments = reference::affected_departments(&plan.ward_refs, &plan.seen_locations);
    let stored = reference::locations_of_departments(wh, &departments).await?;
    let rows = reference::merge_locations(stored, &plan.ward_refs, &plan.seen_locations, version);
    reference::write_locations(wh, &rows).await
}

/// Recomputes the ICU stays of the encounters the chunk touched, from their stored
/// snapshots (written just before) and transfers (written with the facts); writes the
/// changed stays and tombstones. Returns rows written and the dates of the stays.
async fn load_icu_stays(wh: &Client, plan: &ChunkPlan, version: Version) -> Result<(u64, BTreeSet<u32>)> {
    let ids: Vec<String> = plan.encounters.keys().cloned().collect();
    let encounters = encounter::read(wh, &ids).await?;
    let mut transfers: BTreeMap<String, Vec<icu::TransferMove>> = BTreeMap::new();
    for t in icu::transfers_of(wh, &ids).await? {
        transfers.entry(t.encounter_id.clone()).or_default().push(t);
    }
    let stored = icu::read(wh, &ids).await?;
    let mut computed = Vec::new();
    for e in &encounters {
        let moves = icu::movements(e, transfers.get(&e.encounter_id).map_or(&[][..], Vec::as_slice));
        let discharge = e.discharged_at_ms.map(|at| (at, e.discharge_event_id.as_str()));
        computed.extend(icu::stays(&e.encounter_id, e.patient_key, &moves, discharge, version));
    }
    let dates = computed.iter().map(|s| s.date_key).collect();
    let rows = icu::diff(&stored, computed, version);
    Ok((icu::write(wh, &rows).await?, dates))
}

/// Merges the chunk's encounter events into the stored snapshots; writes the ones that
/// changed. Returns rows written and the admission/discharge dates they carry.
async fn load_encounters(wh: &Client, plan: &ChunkPlan, version: Version) -> Result<(u64, BTreeSet<u32>)> {
    let ids: Vec<String> = plan.encounters.keys().cloned().collect();
    let stored: BTreeMap<String, encounter::EncounterRow> = encounter::read(wh, &ids)
        .await?
        .into_iter()
        .map(|r| (r.encounter_id.clone(), r))
        .collect();
    let mut rows = Vec::new();
    let mut dates = BTreeSet::new();
    for (id, events) in &plan.encounters {
        let before = stored.get(id);
        let mut state = before.map_or_else(|| EncounterState::new(id.clone()), EncounterState::from_row);
        for (stamp, patient_key, event) in events {
            state.apply(stamp.clone(), *patient_key, event.clone());
        }
        let row = state.to_row(version);
        if before.is_some_and(|b| b.same_content(&row)) {
            continue;
        }
        dates.extend(row.admit_date_key);
        dates.extend(row.discharge_date_key);
        rows.push(row);
    }
    let n = encounter::write(wh, &rows).await?;
    Ok((n, dates))
}
