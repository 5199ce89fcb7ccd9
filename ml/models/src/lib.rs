//! The sidecar's models as pure numeric code, with no I/O: patient risk (`risk`), quality
//! metrics and baselines (`metrics`), demand forecasting (`forecast`) and staffing
//! (`staffing`). The sidecar (`hospital-ml`) feeds them from its feature store and serves
//! them; keeping them here lets them be tested and benchmarked without a server.

pub mod error;
pub mod forecast;
pub mod metrics;
pub mod risk;
pub mod staffing;

pub use error::ModelError;
