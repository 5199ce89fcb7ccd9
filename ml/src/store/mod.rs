//! Training sets as Lance datasets.
//!
//! A [`TrainingSetStore`] keeps each training set as the Lance dataset
//! `<root>/<name>.lance`. Every build of a set is one [`write`](TrainingSetStore::write),
//! which commits one new Lance version (the first write creates the dataset, later ones
//! overwrite it); earlier versions stay readable by number, from Rust
//! ([`open`](TrainingSetStore::open)) and from Python (`lance.dataset(path, version=n)`).
//!
//! A set's [`SetMetadata`] (feature spec, label definition, warehouse watermark, cutoff
//! range, creation time, row count) is stored as JSON in the Lance schema metadata under
//! [`METADATA_KEY`], so each version carries its own and pylance sees it as
//! `ds.schema.metadata[b"hospital.training_set"]`.
//!
//! Writes stream: batches go to Lance as they come and are counted on the way; the set is
//! never held in memory. A write becomes visible only when it commits, so a reader of
//! version N reads on, unaffected, while version N+1 is written.

mod error;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema as ArrowSchema, SchemaRef};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use lance::dataset::transaction::Operation;
use lance::dataset::{CommitBuilder, InsertBuilder, WriteMode, WriteParams};
use lance::deps::datafusion::error::DataFusionError;
use lance::deps::datafusion::execution::SendableRecordBatchStream;
use lance::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use lance::Dataset;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::{Result, StoreError};

/// The key of the Lance schema metadata entry holding a version's [`SetMetadata`] as JSON.
pub const METADATA_KEY: &str = "hospital.training_set";

/// One feature of a training set: its column name and how it is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// The column holding the feature (f64 or f32, NaN when missing).
    pub name: String,
    /// How the feature is computed (for example `"heart_rate max 6h"`).
    pub definition: String,
}

/// The label of a training set: its column name and definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSpec {
    /// The column holding the label (bool).
    pub name: String,
    /// What the label means (for example `"death or ICU admission within 24 h"`).
    pub definition: String,
}

/// The range of cutoffs of a training set's rows, in ms since the epoch, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoffRange {
    /// The earliest cutoff.
    pub from_ms: i64,
    /// The latest cutoff.
    pub to_ms: i64,
}

/// What a training set version was built from; stored with each version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMetadata {
    /// The features, in column order of the model's input.
    pub features: Vec<FeatureSpec>,
    /// The label.
    pub label: LabelSpec,
    /// The warehouse watermark: the staging position the set was built at.
    pub watermark: u64,
    /// The range of cutoffs of the rows.
    pub cutoff: CutoffRange,
    /// When the build started, in ms since the epoch.
    pub created_at_ms: i64,
    /// The number of rows. Filled in by [`TrainingSetStore::write`], which counts the
    /// rows as they stream; whatever the caller puts here is ignored.
    #[serde(default)]
    pub rows: u64,
}

/// A committed version of a training set, as returned by a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVersion {
    /// The training set.
    pub name: String,
    /// The Lance version written.
    pub version: u64,
    /// The rows written.
    pub rows: u64,
}

/// One version in a training set's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The Lance version.
    pub version: u64,
    /// When it was committed.
    pub timestamp: OffsetDateTime,
    /// Its rows.
    pub rows: u64,
}

/// Feature columns read as a matrix, with the label column beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledMatrix {
    /// The feature columns, in the matrix's column order.
    pub columns: Vec<String>,
    /// One row per training row; a null feature is NaN.
    pub x: Array2<f64>,
    /// The label of each row.
    pub y: Array1<bool>,
}

/// Training sets kept as Lance datasets under one directory.
#[derive(Debug, Clone)]
pub struct TrainingSetStore {
    root: PathBuf,
}

impl TrainingSetStore {
    /// A store keeping its training sets under `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory the training sets are kept in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the Lance dataset of training set `name` (whether or not it exists).
    pub fn dataset_path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(format!("{name}.lance")))
    }

    /// Writes a new version of training set `name` from `batches`, all of `schema`, and
    /// returns it. The first write creates the set; each later one is a new version
    /// holding exactly these batches, the earlier versions staying readable.
    ///
    /// The batches are streamed to Lance as they come and counted on the way; `meta` is
    /// stored with the version, its `rows` set to that count. Every feature and the label
    /// named in `meta` must be a column of `schema`. If `batches` yields an error (or a
    /// batch of another schema), nothing is committed and the error says so.
    pub async fn write<S, E>(&self, name: &str, schema: SchemaRef, batches: S, meta: &SetMetadata) -> Result<SetVersion>
    where
        S: Stream<Item = Result<RecordBatch, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let path = self.dataset_path(name)?;
        check_metadata(name, &schema, meta)?;
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|source| StoreError::Io {
                path: self.root.clone(),
                source,
            })?;
        let uri = uri_of(name, &path)?;

        let rows = Arc::new(AtomicU64::new(0));
        let failure: Arc<Mutex<Option<Box<dyn std::error::Error + Send + Sync>>>> = Arc::default();
        let input = {
            let (rows, failure, schema) = (rows.clone(), failure.clone(), schema.clone());
            batches.map(move |item| {
                let outcome = match item {
                    Ok(batch) if batch.schema().fields() != schema.fields() => Err(format!(
                        "a batch's schema {:?} differs from the declared {:?}",
                        batch.schema().fields(),
                        schema.fields()
                    )
                    .into()),
                    Ok(batch) => Ok(batch),
                    Err(e) => Err(e.into()),
                };
                match outcome {
                    Ok(batch) => {
                        rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        Ok(batch)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if let Ok(mut slot) = failure.lock() {
                            slot.get_or_insert(e);
                        }
                        Err(DataFusionError::External(message.into()))
                    }
                }
            })
        };
        let input: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), input));

        let lance_err = |action: &'static str| {
            let failure = failure.clone();
            let rows = rows.clone();
            move |source: lance::Error| match failure.lock().ok().and_then(|mut f| f.take()) {
                Some(source) => StoreError::Input {
                    name: name.to_owned(),
                    rows: rows.load(Ordering::Relaxed),
                    source,
                },
                None => StoreError::Lance {
                    name: name.to_owned(),
                    version: None,
                    action,
                    source: Box::new(source),
                },
            }
        };

        // Overwrite creates the dataset when there is none. Auto clean-up stays off: it
        // would delete old versions, and every version must stay readable.
        let params = WriteParams {
            mode: WriteMode::Overwrite,
            skip_auto_cleanup: true,
            ..Default::default()
        };
        // Write the data files first; the row count, and so the metadata, is known only
        // at the end. It goes into the transaction's schema before the one commit.
        let mut transaction = InsertBuilder::new(uri.as_str())
            .with_params(&params)
            .execute_uncommitted_stream(input)
            .await
            .map_err(lance_err("write the data files"))?;
        let rows = rows.load(Ordering::Relaxed);
        let meta = SetMetadata { rows, ..meta.clone() };
        let json = serde_json::to_string(&meta).map_err(|e| StoreError::Metadata {
            name: name.to_owned(),
            version: None,
            reason: e.to_string(),
        })?;
        match &mut transaction.operation {
            Operation::Overwrite { schema, .. } => {
                schema.metadata.insert(METADATA_KEY.to_owned(), json);
            }
            other => {
                return Err(StoreError::Metadata {
                    name: name.to_owned(),
                    version: None,
                    reason: format!("Lance prepared a {other} instead of an overwrite"),
                })
            }
        }
        let dataset = CommitBuilder::new(uri.as_str())
            .with_skip_auto_cleanup(true)
            .execute(transaction)
            .await
            .map_err(lance_err("commit"))?;
        Ok(SetVersion {
            name: name.to_owned(),
            version: dataset.version_id(),
            rows,
        })
    }

    /// Opens training set `name` at `version`, or at its latest version when `None`.
    pub async fn open(&self, name: &str, version: Option<u64>) -> Result<TrainingSet> {
        let latest = self.open_latest(name).await?;
        let dataset = match version {
            Some(v) if v != latest.version_id() => match latest.checkout_version(v).await {
                Ok(dataset) => dataset,
                Err(source) => {
                    let available = latest
                        .versions()
                        .await
                        .map(|vs| vs.iter().map(|v| v.version).collect::<Vec<_>>())
                        .unwrap_or_default();
                    return Err(if available.contains(&v) {
                        StoreError::Lance {
                            name: name.to_owned(),
                            version: Some(v),
                            action: "open",
                            source: Box::new(source),
                        }
                    } else {
                        StoreError::VersionNotFound {
                            name: name.to_owned(),
                            version: v,
                            available,
                        }
                    });
                }
            },
            _ => latest,
        };
        let metadata = read_metadata(name, &dataset)?;
        Ok(TrainingSet {
            name: name.to_owned(),
            dataset: Arc::new(dataset),
            metadata,
        })
    }

    /// The versions of training set `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>> {
        let dataset = self.open_latest(name).await?;
        let versions = dataset.versions().await.map_err(|source| StoreError::Lance {
            name: name.to_owned(),
            version: None,
            action: "list the versions",
            source: Box::new(source),
        })?;
        versions
            .into_iter()
            .map(|v| {
                let bad = |reason: String| StoreError::Metadata {
                    name: name.to_owned(),
                    version: Some(v.version),
                    reason,
                };
                let rows = v
                    .metadata
                    .get("total_rows")
                    .ok_or_else(|| bad("the manifest has no total_rows".to_owned()))?
                    .parse::<u64>()
                    .map_err(|e| bad(format!("total_rows: {e}")))?;
                let nanos = v
                    .timestamp
                    .timestamp_nanos_opt()
                    .ok_or_else(|| bad(format!("timestamp {} out of range", v.timestamp)))?;
                let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                    .map_err(|e| bad(format!("timestamp: {e}")))?;
                Ok(VersionInfo {
                    version: v.version,
                    timestamp,
                    rows,
                })
            })
            .collect()
    }

    /// The names of the training sets in the store, sorted (none if the root does not
    /// exist yet).
    pub async fn list(&self) -> Result<Vec<String>> {
        let io = |source| StoreError::Io {
            path: self.root.clone(),
            source,
        };
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|f| f.strip_suffix(".lance"))
                .filter(|n| check_name(n).is_ok())
            else {
                continue;
            };
            if entry.file_type().await.map_err(io)?.is_dir() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn open_latest(&self, name: &str) -> Result<Dataset> {
        let path = self.dataset_path(name)?;
        let uri = uri_of(name, &path)?;
        Dataset::open(&uri).await.map_err(|source| match source {
            lance::Error::DatasetNotFound { .. } | lance::Error::NotFound { .. } => StoreError::NotFound {
                name: name.to_owned(),
                root: self.root.clone(),
            },
            source => StoreError::Lance {
                name: name.to_owned(),
                version: None,
                action: "open",
                source: Box::new(source),
            },
        })
    }
}

/// One version of a training set, opened for reading. It keeps reading that version
/// whatever is written after it.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    name: String,
    dataset: Arc<Dataset>,
    metadata: SetMetadata,
}

impl TrainingSet {
    /// The training set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Lance version open.
    pub fn version(&self) -> u64 {
        self.dataset.version_id()
    }

    /// The metadata stored with this version.
    pub fn metadata(&self) -> &SetMetadata {
        &self.metadata
    }

    /// The Arrow schema of this version (its metadata includes [`METADATA_KEY`]).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(ArrowSchema::from(self.dataset.schema()))
    }

    /// The number of rows of this version.
    pub async fn count_rows(&self) -> Result<u64> {
        let rows = self
            .dataset
            .count_rows(None)
            .await
            .map_err(self.lance_err("count the rows"))?;
        Ok(rows as u64)
    }

    /// Streams all columns of this version in batches of at most `batch_size` rows.
    pub async fn scan(&self, batch_size: usize) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        self.scan_inner(None, batch_size).await
    }

    /// Streams the given columns of this version, in that order, in batches of at most
    /// `batch_size` rows.
    pub async fn scan_columns(
        &self,
        columns: &[&str],
        batch_size: usize,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        for column in columns {
            self.field_type(column)?;
        }
        self.scan_inner(Some(columns), batch_size).await
    }

    /// Reads the feature and label columns named in the metadata; see
    /// [`read_matrix`](Self::read_matrix).
    pub async fn read_training_matrix(&self) -> Result<LabelledMatrix> {
        let features: Vec<&str> = self.metadata.features.iter().map(|f| f.name.as_str()).collect();
        self.read_matrix(&features, &self.metadata.label.name).await
    }

    /// Reads `features` (f64 or f32 columns; a null is NaN) as a matrix with one row per
    /// training row and one column per feature, in the order given, and the bool column
    /// `label` (no nulls) beside it.
    pub async fn read_matrix(&self, features: &[&str], label: &str) -> Result<LabelledMatrix> {
        for feature in features {
            match self.field_type(feature)? {
                DataType::Float64 | DataType::Float32 => {}
                other => return Err(self.column_err(feature, format!("{other} is not a float"))),
            }
        }
        match self.field_type(label)? {
            DataType::Boolean => {}
            other => return Err(self.column_err(label, format!("{other} is not a bool"))),
        }
        let rows = usize::try_from(self.count_rows().await?).unwrap_or(usize::MAX);
        let mut x = Vec::with_capacity(rows.saturating_mul(features.len()));
        let mut y = Vec::with_capacity(rows);
        let mut projection: Vec<&str> = Vec::with_capacity(features.len() + 1);
        for column in features.iter().copied().chain([label]) {
            if !projection.contains(&column) {
                projection.push(column);
            }
        }
        let mut batches = self.scan_inner(Some(&projection), 8192).await?;
        let mut columns: Vec<Vec<f64>> = Vec::with_capacity(features.len());
        while let Some(batch) = batches.try_next().await? {
            columns.clear();
            for feature in features {
                let values = batch
                    .column_by_name(feature)
                    .and_then(|c| float_values(c.as_ref()))
                    .ok_or_else(|| self.column_err(feature, "not a float column in a batch".to_owned()))?;
                columns.push(values);
            }
            let labels = batch
                .column_by_name(label)
                .and_then(|c| c.as_boolean_opt())
                .ok_or_else(|| self.column_err(label, "not a bool column in a batch".to_owned()))?;
            if labels.null_count() > 0 {
                return Err(self.column_err(label, "a label is null".to_owned()));
            }
            for row in 0..batch.num_rows() {
                x.extend(columns.iter().map(|c| c[row]));
                y.push(labels.value(row));
            }
        }
        let n = y.len();
        let x = Array2::from_shape_vec((n, features.len()), x)
            .map_err(|e| self.column_err(label, format!("shaping the matrix: {e}")))?;
        Ok(LabelledMatrix {
            columns: features.iter().map(|f| (*f).to_owned()).collect(),
            x,
            y: Array1::from(y),
        })
    }

    async fn scan_inner(
        &self,
        columns: Option<&[&str]>,
        batch_size: usize,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let mut scanner = self.dataset.scan();
        scanner.batch_size(batch_size.max(1));
        if let Some(columns) = columns {
            scanner
                .project(columns)
                .map_err(self.lance_err("project the columns"))?;
        }
        let stream = scanner.try_into_stream().await.map_err(self.lance_err("scan"))?;
        let (name, version) = (self.name.clone(), self.version());
        Ok(stream
            .map_err(move |source| StoreError::Lance {
                name: name.clone(),
                version: Some(version),
                action: "read a batch",
                source: Box::new(source),
            })
            .boxed())
    }

    fn field_type(&self, column: &str) -> Result<DataType> {
        self.dataset
            .schema()
            .field(column)
            .map(|f| f.data_type())
            .ok_or_else(|| self.column_err(column, "no such column".to_owned()))
    }

    fn column_err(&self, column: &str, reason: String) -> StoreError {
        StoreError::Column {
            name: self.name.clone(),
            version: self.version(),
            column: column.to_owned(),
            reason,
        }
    }

    fn lance_err(&self, action: &'static str) -> impl Fn(lance::Error) -> StoreError + '_ {
        move |source| StoreError::Lance {
            name: self.name.clone(),
            version: Some(self.version()),
            action,
            source: Box::new(source),
        }
    }
}

/// A float column's values as f64, nulls as NaN.
fn float_values(array: &dyn Array) -> Option<Vec<f64>> {
    let nan_if_null = |i: usize, v: f64| if array.is_null(i) { f64::NAN } else { v };
    if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        return Some(a.values().iter().enumerate().map(|(i, v)| nan_if_null(i, *v)).collect());
    }
    let a = array.as_primitive_opt::<Float32Type>()?;
    Some(
        a.values()
            .iter()
            .enumerate()
            .map(|(i, v)| nan_if_null(i, f64::from(*v)))
            .collect(),
    )
}

fn check_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(StoreError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.starts_with('.') {
        return refuse("it starts with a dot");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return refuse("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

fn check_metadata(name: &str, schema: &ArrowSchema, meta: &SetMetadata) -> Result<()> {
    let bad = |reason: String| StoreError::Metadata {
        name: name.to_owned(),
        version: None,
        reason,
    };
    let mut seen = HashSet::new();
    for feature in &meta.features {
        if !seen.insert(feature.name.as_str()) {
            return Err(bad(format!("feature `{}` is listed twice", feature.name)));
        }
        if schema.field_with_name(&feature.name).is_err() {
            return Err(bad(format!("feature `{}` is not a column of the schema", feature.name)));
        }
    }
    if schema.field_with_name(&meta.label.name).is_err() {
        return Err(bad(format!(
            "label `{}` is not a column of the schema",
            meta.label.name
        )));
    }
    if meta.cutoff.from_ms > meta.cutoff.to_ms {
        return Err(bad(format!(
            "cutoff range {}..={} is empty",
            meta.cutoff.from_ms, meta.cutoff.to_ms
        )));
    }
    Ok(())
}

fn read_metadata(name: &str, dataset: &Dataset) -> Result<SetMetadata> {
    let bad = |reason: String| StoreError::Metadata {
        name: name.to_owned(),
        version: Some(dataset.version_id()),
        reason,
    };
    let json = dataset
        .schema()
        .metadata
        .get(METADATA_KEY)
        .ok_or_else(|| bad(format!("no `{METADATA_KEY}` entry in the schema metadata")))?;
    serde_json::from_str(json).map_err(|e| bad(format!("`{METADATA_KEY}`: {e}")))
}

/// The dataset's location as Lance takes it: an absolute local path.
fn uri_of(name: &str, path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    absolute
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| StoreError::InvalidName {
            name: name.to_owned(),
            reason: "the store's path is not UTF-8",
        })
}
