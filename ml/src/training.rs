//! Builds a point-in-time training set from the warehouse into a new Lance version: a
//! slice of patients at a time ([`extract::histories`]), their rows and labels
//! ([`labels::rows`]), written as Arrow batches while the next slice is read, so memory
//! holds a slice, not the set.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use clickhouse::Client;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::features::labels::{self, RowCounts, Task};
use crate::features::{extract, feature_defs};
use crate::store::{CutoffRange, FeatureSpec, LabelSpec, SetMetadata, SetVersion, TrainingSetStore};

/// Patients read and turned into rows per step.
pub const PATIENTS_PER_SLICE: usize = 500;

/// Columns before the features.
pub const ENTITY: &str = "entity";
pub const PATIENT: &str = "patient_key";
pub const CUTOFF_MS: &str = "cutoff_ms";
pub const CUTOFF_POSITION: &str = "cutoff_position";
pub const LABEL: &str = "label";
pub const BASELINE: &str = "baseline";
pub const EXPOSURE_HOURS: &str = "exposure_hours";

/// Progress of a build, reported after every slice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub patients_done: u64,
    pub patients_total: u64,
    pub rows: u64,
    pub positives: u64,
    pub counts: RowCounts,
}

/// What a build wrote.
#[derive(Debug, Clone)]
pub struct Built {
    pub version: SetVersion,
    pub progress: Progress,
    pub metadata: SetMetadata,
    /// Where the build's time went: waiting for the warehouse's reads, computing rows,
    /// waiting for the Lance writer (queue full, then the final commit).
    pub timings: Timings,
}

/// Seconds a build spent waiting on each stage (they overlap, so they add up to at
/// most the build's time).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub reading: f64,
    pub computing: f64,
    pub writing: f64,
}

pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(ENTITY, DataType::Utf8, false),
        Field::new(PATIENT, DataType::Utf8, false),
        Field::new(CUTOFF_MS, DataType::Int64, false),
        Field::new(CUTOFF_POSITION, DataType::UInt64, false),
        Field::new(LABEL, DataType::Boolean, false),
        Field::new(BASELINE, DataType::Float64, true),
        Field::new(EXPOSURE_HOURS, DataType::Float64, false),
    ];
    for f in feature_defs() {
        fields.push(Field::new(f.name, DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}

fn batch(schema: &SchemaRef, rows: &[(String, labels::Row)]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n_features = feature_defs().len();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, r)| r.entity.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(p, _)| p.as_str()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, r)| r.at.at_ms))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, r)| r.at.position))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, r)| Some(r.label)))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, r)| r.baseline))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, r)| r.exposure_hours),
        )),
    ];
    for j in 0..n_features {
        columns.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, r)| r.features.get(j).copied().unwrap_or(f64::NAN)),
        )));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// Builds `task`'s rows with cutoffs in `[from_ms, to_ms)` from the warehouse (a client
/// on the `warehouse` database) into a new version of `name`; `progress` hears after
/// every slice.
pub async fn build(
    warehouse: &Client,
    store: &TrainingSetStore,
    name: &str,
    task: Task,
    from_ms: i64,
    to_ms: i64,
    progress: mpsc::Sender<Progress>,
) -> anyhow::Result<Built> {
    let watermark = extract::watermark(warehouse).await?;
    let horizon = extract::horizon_ms(warehouse).await?;
    let patients = extract::patients_with_encounters(warehouse).await?;
    let schema = schema();
    let metadata = SetMetadata {
        features: feature_defs()
            .into_iter()
            .map(|d| FeatureSpec {
                name: d.name,
                definition: d.description,
            })
            .collect(),
        label: LabelSpec {
            name: LABEL.into(),
            definition: format!("{}: {}", task.name(), task.label_definition()),
        },
        watermark,
        cutoff: CutoffRange { from_ms, to_ms },
        created_at_ms: now_ms(),
        rows: 0,
    };
    // Batches go to the writer through a queue of two: a slice is read while the one
    // before is written.
    let (tx, rx) = mpsc::channel::<Result<RecordBatch, arrow_schema::ArrowError>>(2);
    let writer = {
        let store = store.clone();
        let name = name.to_string();
        let schema = schema.clone();
        let metadata = metadata.clone();
        tokio::spawn(async move { store.write(&name, schema, ReceiverStream::new(rx), &metadata).await })
    };
    let mut p = Progress {
        patients_total: patients.len() as u64,
        ..Default::default()
    };
    // The next slice's facts are read while this slice's rows are computed (on a
    // blocking thread) and the one before is written.
    let fetch = |slice: Vec<String>| {
        let warehouse = warehouse.clone();
        tokio::spawn(async move {
            let fetched = extract::histories(&warehouse, &slice).await;
            (slice, fetched)
        })
    };
    let mut slices = patients.chunks(PATIENTS_PER_SLICE).map(<[String]>::to_vec);
    let mut timings = Timings::default();
    let produced: anyhow::Result<()> = async {
        let mut next = slices.next().map(fetch);
        while let Some(reading) = next.take() {
            let t = std::time::Instant::now();
            let (slice, fetched) = reading.await?;
            timings.reading += t.elapsed().as_secs_f64();
            next = slices.next().map(fetch);
            let (histories, icu) = fetched?;
            let patients_in_slice = slice.len() as u64;
            let t = std::time::Instant::now();
            let (rows, counts) = tokio::task::spawn_blocking(move || {
                // Two threads, each half of the slice's patients; rows stay in slice order.
                let compute = |keys: &[String]| {
                    let mut counts = RowCounts::default();
                    let mut rows = Vec::new();
                    for key in keys {
                        let Some(h) = histories.get(key) else { continue };
                        let starts = icu.get(key).map(Vec::as_slice).unwrap_or(&[]);
                        for row in labels::rows(task, h, starts, from_ms, to_ms, horizon, &mut counts) {
                            rows.push((key.clone(), row));
                        }
                    }
                    (rows, counts)
                };
                let (first, second) = slice.split_at(slice.len() / 2);
                std::thread::scope(|scope| {
                    let other = scope.spawn(|| compute(second));
                    let (mut rows, mut counts) = compute(first);
                    // A panic there fails the build (as one here would), never drops rows.
                    let (more, more_counts) = other.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                    rows.extend(more);
                    counts += more_counts;
                    (rows, counts)
                })
            })
            .await?;
            timings.computing += t.elapsed().as_secs_f64();
            p.counts += counts;
            p.patients_done += patients_in_slice;
            p.rows += rows.len() as u64;
            p.positives += rows.iter().filter(|(_, r)| r.label).count() as u64;
            let t = std::time::Instant::now();
            if !rows.is_empty() && tx.send(batch(&schema, &rows)).await.is_err() {
                anyhow::bail!("the training-set writer stopped");
            }
            timings.writing += t.elapsed().as_secs_f64();
            let _ = progress.try_send(p.clone());
        }
        Ok(())
    }
    .await;
    drop(tx);
    let t = std::time::Instant::now();
    let written = writer.await?;
    timings.writing += t.elapsed().as_secs_f64();
    produced?;
    let version = written?;
    let _ = progress.send(p.clone()).await;
    tracing::debug!(?timings, rows = p.rows, "training set built");
    Ok(Built {
        version,
        progress: p,
        metadata,
        timings,
    })
}

pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// Reads a training set version's rows that the models need besides the matrix: the
/// cutoff, the baseline score and the exposure, in row order.
pub async fn side_columns(set: &crate::store::TrainingSet) -> anyhow::Result<Vec<(i64, f64, f64)>> {
    let mut out = Vec::new();
    let mut scan = set.scan_columns(&[CUTOFF_MS, BASELINE, EXPOSURE_HOURS], 8192).await?;
    while let Some(b) = scan.next().await {
        let b = b?;
        let cut = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| anyhow::anyhow!("{CUTOFF_MS} is not Int64"))?;
        let base = b
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| anyhow::anyhow!("{BASELINE} is not Float64"))?;
        let exp = b
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| anyhow::anyhow!("{EXPOSURE_HOURS} is not Float64"))?;
        for i in 0..b.num_rows() {
            out.push((cut.value(i), base.value(i), exp.value(i)));
        }
    }
    Ok(out)
}
