//! The ML sidecar of the hospital data platform. Its feature store, models and model
//! serving are not built yet; this crate holds their place in the workspace.
