//! Compiles every .proto under `hospital/` into Rust, plus one descriptor set for
//! server reflection; and the Open Inference Protocol v2 (`inference/`) with its own
//! descriptor set, so that only the process serving it (the ML sidecar) advertises it,
//! and the sidecar's `hospital.ml.v1` likewise.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "hospital/events/v1/events.proto",
        "hospital/ingest/v1/ingest.proto",
        "hospital/batch/v1/batch.proto",
        "hospital/realtime/v1/realtime.proto",
    ];
    let inference = ["inference/grpc_predict_v2.proto"];
    // The ML sidecar's own services: their own descriptor set (with the event types they
    // import), reusing the event types generated above.
    let ml = ["hospital/ml/v1/ml.proto"];
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("hospital_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("inference_descriptor.bin"))
        .compile_protos(&inference, &["."])?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("ml_descriptor.bin"))
        .extern_path(".hospital.events.v1", "crate::events")
        .compile_protos(&ml, &["."])?;
    for p in protos.iter().chain(&inference).chain(&ml) {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
