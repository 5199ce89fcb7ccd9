//! Writes 1M rows x 40 f64 features (plus a bool label) as a Lance training set and the
//! same batches as an Arrow IPC file (the physical limit: plain buffers to disk), then
//! reads both back, and prints a markdown table of rows/s, MiB/s and peak memory.
//!
//! `cargo bench -p hospital-ml --bench store`; `BENCH_ROWS=100000` for a quick run.
//! Each phase runs in a fresh child process (this binary again, with `BENCH_PHASE` set),
//! so its peak memory (VmHWM from /proc/self/status) is its own. Reads come from the page
//! cache, as they would right after a build.
//!
//! Lance's writer buffers up to 8 MiB per column before it writes a page, so a write's
//! peak grows with the number of columns, not the rows (with 40 columns about 330 MiB,
//! whatever the row count); a scan holds the pages of the fragments it reads ahead.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::{stream, TryStreamExt};
use hospital_ml::store::{CutoffRange, FeatureSpec, LabelSpec, SetMetadata, TrainingSetStore};
use lance::deps::datafusion::arrow::ipc::reader::FileReader;
use lance::deps::datafusion::arrow::ipc::writer::FileWriter;

const FEATURES: usize = 40;
const BATCH: usize = 8_192;

fn schema() -> SchemaRef {
    let mut fields: Vec<Field> = (0..FEATURES)
        .map(|i| Field::new(format!("f{i:02}"), DataType::Float64, true))
        .collect();
    fields.push(Field::new("label", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// Rows `start..start + n`, pseudo-random (xorshift) so that nothing compresses away.
fn batch(schema: &SchemaRef, start: usize, n: usize) -> RecordBatch {
    let mut state = (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut columns: Vec<ArrayRef> = (0..FEATURES)
        .map(|_| {
            let values: Float64Array = (0..n)
                .map(|_| Some((next() >> 11) as f64 / (1u64 << 53) as f64 * 100.0))
                .collect();
            Arc::new(values) as ArrayRef
        })
        .collect();
    let labels: BooleanArray = (0..n).map(|_| Some(next() % 10 == 0)).collect();
    columns.push(Arc::new(labels));
    RecordBatch::try_new(schema.clone(), columns).expect("batch")
}

fn batches(schema: &SchemaRef, rows: usize) -> impl Iterator<Item = RecordBatch> + Send + 'static {
    let schema = schema.clone();
    (0..rows)
        .step_by(BATCH)
        .map(move |start| batch(&schema, start, BATCH.min(rows - start)))
}

fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn disk_mib(path: &Path) -> f64 {
    fn bytes(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| bytes(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    bytes(path) as f64 / (1024.0 * 1024.0)
}

const PHASES: [&str; 6] = [
    "generate the batches only",
    "write Lance (TrainingSetStore::write)",
    "write Arrow IPC file",
    "read Lance (scan, 8192-row batches)",
    "read Lance into ndarray (read_training_matrix)",
    "read Arrow IPC file",
];

fn metadata() -> SetMetadata {
    SetMetadata {
        features: (0..FEATURES)
            .map(|i| FeatureSpec {
                name: format!("f{i:02}"),
                definition: "bench".into(),
            })
            .collect(),
        label: LabelSpec {
            name: "label".into(),
            definition: "bench".into(),
        },
        watermark: 1,
        cutoff: CutoffRange { from_ms: 0, to_ms: 0 },
        created_at_ms: 0,
        rows: 0,
    }
}

/// Runs phase `phase` on `rows` rows in `dir`; returns the rows it saw and what it left
/// on disk (MiB), if it wrote.
async fn run(phase: usize, rows: usize, dir: &Path) -> (usize, Option<f64>) {
    let schema = schema();
    let store = TrainingSetStore::new(dir.join("training_sets"));
    let ipc = dir.join("bench.arrow");
    match phase {
        0 => (batches(&schema, rows).map(|b| b.num_rows()).sum(), None),
        1 => {
            let input = stream::iter(batches(&schema, rows).map(Ok::<_, std::convert::Infallible>));
            let written = store
                .write("bench", schema.clone(), input, &metadata())
                .await
                .expect("write");
            let path = store.dataset_path("bench").expect("path");
            (written.rows as usize, Some(disk_mib(&path)))
        }
        2 => {
            let file = BufWriter::new(File::create(&ipc).expect("create"));
            let mut writer = FileWriter::try_new(file, &schema).expect("writer");
            let mut n = 0;
            for b in batches(&schema, rows) {
                n += b.num_rows();
                writer.write(&b).expect("write");
            }
            writer.finish().expect("finish");
            (n, Some(disk_mib(&ipc)))
        }
        3 => {
            let set = store.open("bench", None).await.expect("open");
            let scan = set.scan(BATCH).await.expect("scan");
            let n = scan
                .map_ok(|b| b.num_rows())
                .try_fold(0, |n, r| async move { Ok(n + r) })
                .await
                .expect("read");
            (n, None)
        }
        4 => {
            let set = store.open("bench", None).await.expect("open");
            let m = set.read_training_matrix().await.expect("matrix");
            (m.x.nrows(), None)
        }
        _ => {
            let reader = FileReader::try_new(File::open(&ipc).expect("open"), None).expect("reader");
            (reader.map(|b| b.expect("batch").num_rows()).sum(), None)
        }
    }
}

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);

    // A child: run one phase, report `seconds peak_mib disk_mib` on stdout.
    if let (Ok(phase), Ok(dir)) = (std::env::var("BENCH_PHASE"), std::env::var("BENCH_DIR")) {
        let phase: usize = phase.parse().expect("BENCH_PHASE");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = Instant::now();
        let (seen, disk) = runtime.block_on(run(phase, rows, Path::new(&dir)));
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(seen, rows, "{}: rows", PHASES[phase]);
        println!("RESULT {secs} {} {}", peak_mib(), disk.unwrap_or(f64::NAN));
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let logical_mib = (rows * (FEATURES * 8) + rows.div_ceil(8)) as f64 / (1024.0 * 1024.0);
    println!(
        "\n{rows} rows x {FEATURES} f64 features + bool label ({logical_mib:.0} MiB of values), \
         {BATCH}-row batches, each phase in its own process\n"
    );
    println!("| phase | seconds | rows/s | MiB/s | on disk MiB | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, phase) in PHASES.iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .env("BENCH_PHASE", i.to_string())
            .env("BENCH_DIR", dir.path())
            .env("BENCH_ROWS", rows.to_string())
            .output()
            .expect("run a phase");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
        let Some(fields) = result.filter(|_| out.status.success()) else {
            panic!("phase {phase} failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        let v: Vec<f64> = fields
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(f64::NAN))
            .collect();
        let (secs, peak, disk) = (v[0], v[1], v[2]);
        println!(
            "| {phase} | {secs:.2} | {:.0} | {:.0} | {} | {peak:.0} |",
            rows as f64 / secs,
            logical_mib / secs,
            if disk.is_nan() {
                String::new()
            } else {
                format!("{disk:.0}")
            },
        );
    }
}
