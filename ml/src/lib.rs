//! The ML sidecar of the hospital data platform: a feature store on Lance, linfa models
//! for patient risk and demand, and their serving over gRPC.

pub mod features;
pub mod serve;
pub mod store;

/// Runs the sidecar.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("hospital-ml: not built yet")
}
