//! Client library for the hospital data platform: a connection helper, an at-least-once
//! stream sender, resumable historical loads from files, and a deterministic simulator
//! of a hospital that produces the canonical events its systems would send.

pub mod checkpoint;
pub mod load;
pub mod sender;
pub mod simulate;

pub use hospital_proto as proto;

use tonic::transport::{Channel, Endpoint};

/// Connects to a platform at `endpoint` (e.g. `http://127.0.0.1:50051`).
pub async fn connect(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(endpoint.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
}
