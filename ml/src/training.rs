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
    let produced: anyhow::Result<()> = async {
        for slice in patients.chunks(PATIENTS_PER_SLICE) {
            let (histories, icu) = extract::histories(warehouse, slice).await?;
            let mut rows = Vec::new();
            for key in slice {
                let Some(h) = histories.get(key) else { continue };
                let starts = icu.get(key).map(Vec::as_slice).unwrap_or(&[]);
                for row in labels::rows(task, h, starts, from_ms, to_ms, horizon, &mut p.counts) {
                    rows.push((key.clone(), row));
                }
            }
            p.patients_done += slice.len() as u64;
            p.rows += rows.len() as u64;
            p.positives += rows.iter().filter(|(_, r)| r.label).count() as u64;
            if !rows.is_empty() && tx.send(batch(&schema, &rows)).await.is_err() {
                anyhow::bail!("the training-set writer stopped");
            }
            let _ = progress.try_send(p.clone());
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await?;
    produced?;
    let version = written?;
    let _ = progress.send(p.clone()).await;
    Ok(Built {
        version,
        progress: p,
        metadata,
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
