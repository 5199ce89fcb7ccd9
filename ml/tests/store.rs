//! The training-set store on real Lance datasets in a temporary directory.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::{stream, Stream, StreamExt, TryStreamExt};
use hospital_ml::store::{
    CutoffRange, FeatureSpec, LabelSpec, SetMetadata, StoreError, TrainingSet, TrainingSetStore, METADATA_KEY,
};
use tokio_stream::wrappers::ReceiverStream;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("heart_rate_max_6h", DataType::Float64, true),
        Field::new("lactate_last", DataType::Float32, true),
        Field::new("deteriorated_24h", DataType::Boolean, false),
    ]))
}

/// Rows `start..start + n`: heart rate is NaN on every 7th row and null on every 11th,
/// lactate is `id / 10`, the label is true on every 3rd row.
fn batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let heart_rate: Float64Array = ids
        .iter()
        .map(|&id| match id {
            id if id % 11 == 0 => None,
            id if id % 7 == 0 => Some(f64::NAN),
            id => Some(60.0 + (id % 50) as f64),
        })
        .collect();
    let lactate: Float32Array = ids.iter().map(|&id| Some(id as f32 / 10.0)).collect();
    let label: BooleanArray = ids.iter().map(|&id| Some(id % 3 == 0)).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(heart_rate),
            Arc::new(lactate),
            Arc::new(label),
        ],
    )
    .expect("batch")
}

/// `total` rows from id `start` in batches of `size`, each made only when asked for.
fn batches(
    start: i64,
    total: usize,
    size: usize,
) -> impl Stream<Item = Result<RecordBatch, Infallible>> + Send + 'static {
    stream::iter((0..total).step_by(size)).map(move |offset| Ok(batch(start + offset as i64, size.min(total - offset))))
}

fn meta(watermark: u64) -> SetMetadata {
    SetMetadata {
        features: vec![
            FeatureSpec {
                name: "heart_rate_max_6h".into(),
                definition: "max heart rate over 6 h before the cutoff".into(),
            },
            FeatureSpec {
                name: "lactate_last".into(),
                definition: "latest lactate before the cutoff".into(),
            },
        ],
        label: LabelSpec {
            name: "deteriorated_24h".into(),
            definition: "death or ICU admission within 24 h after the cutoff".into(),
        },
        watermark,
        cutoff: CutoffRange {
            from_ms: 1_700_000_000_000,
            to_ms: 1_700_086_400_000 + watermark as i64,
        },
        created_at_ms: 1_700_100_000_000 + watermark as i64,
        // Ignored: the write counts the rows.
        rows: 12_345,
    }
}

async fn ids(set: &TrainingSet) -> Vec<i64> {
    let batches: Vec<RecordBatch> = set
        .scan_columns(&["id"], 4096)
        .await
        .expect("scan")
        .try_collect()
        .await
        .expect("read");
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_stays_readable_by_number_with_its_own_metadata_and_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path().join("training_sets"));
    assert!(store.list().await.expect("list").is_empty());

    let v1 = store
        .write("deterioration", schema(), batches(0, 1_000, 256), &meta(10))
        .await
        .expect("write v1");
    assert_eq!((v1.name.as_str(), v1.version, v1.rows), ("deterioration", 1, 1_000));
    let v2 = store
        .write("deterioration", schema(), batches(1_000_000, 2_500, 1_000), &meta(20))
        .await
        .expect("write v2");
    assert_eq!((v2.version, v2.rows), (2, 2_500));

    let one = store.open("deterioration", Some(1)).await.expect("open v1");
    let two = store.open("deterioration", Some(2)).await.expect("open v2");
    let latest = store.open("deterioration", None).await.expect("open latest");
    assert_eq!((one.version(), two.version(), latest.version()), (1, 2, 2));
    assert_eq!(one.count_rows().await.expect("count"), 1_000);
    assert_eq!(two.count_rows().await.expect("count"), 2_500);
    assert_eq!(ids(&one).await, (0..1_000).collect::<Vec<_>>());
    assert_eq!(ids(&two).await, (1_000_000..1_002_500).collect::<Vec<_>>());

    assert_eq!(
        one.metadata(),
        &SetMetadata {
            rows: 1_000,
            ..meta(10)
        }
    );
    assert_eq!(
        two.metadata(),
        &SetMetadata {
            rows: 2_500,
            ..meta(20)
        }
    );
    assert_eq!(latest.metadata(), two.metadata());
    let schema_of_one = one.schema();
    assert_eq!(schema_of_one.fields(), schema().fields());
    assert!(schema_of_one.metadata().contains_key(METADATA_KEY));

    let versions = store.versions("deterioration").await.expect("versions");
    let listed: Vec<(u64, u64)> = versions.iter().map(|v| (v.version, v.rows)).collect();
    assert_eq!(listed, vec![(1, 1_000), (2, 2_500)]);
    assert!(versions[0].timestamp <= versions[1].timestamp);

    store
        .write("readmission", schema(), batches(0, 10, 10), &meta(1))
        .await
        .expect("write another set");
    assert_eq!(
        store.list().await.expect("list"),
        vec!["deterioration".to_owned(), "readmission".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_set_is_streamed_and_counted_and_read_back_as_a_matrix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path());
    let made = Arc::new(AtomicUsize::new(0));
    let counted = made.clone();
    let input = batches(0, 200_000, 8_192).inspect(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let written = store.write("large", schema(), input, &meta(5)).await.expect("write");
    assert_eq!(written.rows, 200_000);
    assert_eq!(made.load(Ordering::Relaxed), 200_000usize.div_ceil(8_192));

    let set = store.open("large", None).await.expect("open");
    assert_eq!(set.count_rows().await.expect("count"), 200_000);
    assert_eq!(set.metadata().rows, 200_000);

    let m = set.read_training_matrix().await.expect("matrix");
    assert_eq!(m.columns, vec!["heart_rate_max_6h", "lactate_last"]);
    assert_eq!(m.x.dim(), (200_000, 2));
    assert_eq!(m.y.len(), 200_000);
    let order = ids(&set).await;
    assert_eq!(order, (0..200_000).collect::<Vec<_>>());
    for (row, &id) in order.iter().enumerate().step_by(997) {
        let heart_rate = m.x[[row, 0]];
        match id {
            id if id % 11 == 0 || id % 7 == 0 => assert!(heart_rate.is_nan(), "row {row}"),
            id => assert_eq!(heart_rate, 60.0 + (id % 50) as f64),
        }
        assert_eq!(m.x[[row, 1]], f64::from(id as f32 / 10.0));
        assert_eq!(m.y[row], id % 3 == 0);
    }

    let err = set
        .read_matrix(&["id"], "deteriorated_24h")
        .await
        .expect_err("id is not a float");
    assert!(
        matches!(&err, StoreError::Column { name, version: 1, column, .. }
            if name == "large" && column == "id"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_version_reads_on_while_the_next_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path());
    store
        .write("live", schema(), batches(0, 50_000, 5_000), &meta(1))
        .await
        .expect("write v1");
    let one = store.open("live", Some(1)).await.expect("open v1");
    let mut reading = one.scan(1_000).await.expect("scan v1");
    let mut seen: Vec<i64> = Vec::new();
    let mut take = |b: RecordBatch| {
        let ids = b.column_by_name("id").expect("id").as_primitive::<Int64Type>();
        seen.extend(ids.values().iter().copied());
    };

    // Version 2 is fed batch by batch through a channel, so its write is in progress
    // (some batches in, the input not finished) while version 1 is being read.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, Infallible>>(1);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.write("live", schema(), ReceiverStream::new(rx), &meta(2)).await })
    };
    for i in 0..3 {
        tx.send(Ok(batch(1_000_000 + i * 4_000, 4_000))).await.expect("send");
    }
    for _ in 0..10 {
        take(reading.try_next().await.expect("read v1").expect("a batch"));
    }
    let during = store.open("live", None).await.expect("open latest during");
    assert_eq!(during.version(), 1, "an unfinished write is not visible");
    for i in 3..10 {
        tx.send(Ok(batch(1_000_000 + i * 4_000, 4_000))).await.expect("send");
    }
    drop(tx);
    let two = writer.await.expect("join").expect("write v2");
    assert_eq!((two.version, two.rows), (2, 40_000));

    while let Some(b) = reading.try_next().await.expect("read v1 after v2") {
        take(b);
    }
    assert_eq!(seen, (0..50_000).collect::<Vec<_>>());
    assert_eq!(one.count_rows().await.expect("count v1"), 50_000);
    let again = store.open("live", Some(1)).await.expect("reopen v1");
    assert_eq!(ids(&again).await, (0..50_000).collect::<Vec<_>>());
    let latest = store.open("live", None).await.expect("open latest");
    assert_eq!(latest.version(), 2);
    assert_eq!(ids(&latest).await, (1_000_000..1_040_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_version_or_set_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path());
    store
        .write("sepsis", schema(), batches(0, 10, 10), &meta(1))
        .await
        .expect("write");

    let err = store.open("sepsis", Some(7)).await.expect_err("no version 7");
    assert!(
        matches!(&err, StoreError::VersionNotFound { name, version: 7, available }
            if name == "sepsis" && available == &[1]),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`sepsis`") && message.contains("version 7"),
        "{message}"
    );

    let err = store.open("stroke", None).await.expect_err("no such set");
    assert!(
        matches!(&err, StoreError::NotFound { name, .. } if name == "stroke"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`stroke`"), "{err}");
    let err = store.versions("stroke").await.expect_err("no such set");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let err = store.open("../escape", None).await.expect_err("not a plain name");
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_input_or_a_bad_spec_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path());
    store
        .write("icu", schema(), batches(0, 100, 50), &meta(1))
        .await
        .expect("write v1");

    let failing = stream::iter(vec![
        Ok(batch(0, 500)),
        Ok(batch(500, 500)),
        Err("the warehouse went away".to_owned()),
    ]);
    let err = store
        .write("icu", schema(), failing, &meta(2))
        .await
        .expect_err("the input failed");
    assert!(
        matches!(&err, StoreError::Input { name, rows: 1_000, .. } if name == "icu"),
        "{err:?}"
    );
    assert!(err.to_string().contains("the warehouse went away"), "{err}");

    let mut unknown_feature = meta(3);
    unknown_feature.features[0].name = "respiratory_rate".into();
    let err = store
        .write("icu", schema(), batches(0, 10, 10), &unknown_feature)
        .await
        .expect_err("the feature is not a column");
    assert!(
        matches!(&err, StoreError::Metadata { name, version: None, reason }
            if name == "icu" && reason.contains("respiratory_rate")),
        "{err:?}"
    );

    let versions = store.versions("icu").await.expect("versions");
    assert_eq!(versions.len(), 1, "{versions:?}");
    let latest = store.open("icu", None).await.expect("open");
    assert_eq!((latest.version(), latest.count_rows().await.expect("count")), (1, 100));
}

/// Python reads the same versions, with their metadata, through pylance
/// (`scripts/setup.sh` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylance_reads_every_version_with_its_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TrainingSetStore::new(dir.path());
    store
        .write("pneumonia", schema(), batches(0, 3_000, 1_024), &meta(10))
        .await
        .expect("write v1");
    store
        .write("pneumonia", schema(), batches(5_000, 700, 256), &meta(20))
        .await
        .expect("write v2");
    let path = store.dataset_path("pneumonia").expect("path");

    let script = r#"
import json, sys
import lance
import pyarrow.compute as pc
out = {}
for version in (1, 2):
    ds = lance.dataset(sys.argv[1], version=version)
    table = ds.to_table(columns=["id", "lactate_last"])
    out[str(version)] = {
        "version": ds.version,
        "rows": ds.count_rows(),
        "id_sum": pc.sum(table["id"]).as_py(),
        "meta": json.loads(ds.schema.metadata[sys.argv[2].encode()]),
    }
print(json.dumps(out))
"#;
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(METADATA_KEY)
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "python could not read the set (pylance missing? run scripts/setup.sh): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    for (version, rows, ids, watermark) in [(1u64, 3_000u64, 0..3_000i64, 10u64), (2, 700, 5_000..5_700, 20)] {
        let v = &read[version.to_string()];
        assert_eq!(v["version"], version);
        assert_eq!(v["rows"], rows);
        assert_eq!(v["id_sum"], ids.sum::<i64>());
        let meta_read: SetMetadata = serde_json::from_value(v["meta"].clone()).expect("meta");
        assert_eq!(
            meta_read,
            SetMetadata {
                rows,
                ..meta(watermark)
            }
        );
    }
}
