//! Layered configuration: defaults -> TOML file -> `HOSPITAL__SECTION__KEY` environment
//! variables -> command-line flags, validated once. Every default runs on one laptop.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub clickhouse: ClickHouseConfig,
    pub staging: StagingConfig,
    pub batch: BatchConfig,
    pub realtime: RealtimeConfig,
    pub mllp: MllpConfig,
    pub state: StateConfig,
}

/// The platform's local state: indexes and snapshots that make a start-up cost the same
/// after a year as after a day. They are caches of staging, checked against it at
/// start-up and rebuilt from it when lost or stale; staging stays the truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the staging key index (`staging-keys.redb`) and the real-time
    /// snapshot (`realtime.redb`); one platform process per directory.
    pub dir: std::path::PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: ".hospital/platform".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the gRPC port (ingest, batch, health, reflection).
    pub listen: SocketAddr,
    /// How long a graceful shutdown waits for open streams before it closes them.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest number of events one IngestRequest may carry.
    pub max_events_per_request: usize,
    /// Requests of one ingest stream that may wait for their commit at once.
    pub max_in_flight_per_stream: usize,
    /// How far in the future an event's occurred_at may lie (clock skew). Historical
    /// loads of date-shifted research data (MIMIC) need this raised.
    pub max_future_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_events_per_request: 10_000,
            max_in_flight_per_stream: 16,
            max_future_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint of the ClickHouse server.
    pub url: String,
    pub user: String,
    pub password: String,
    /// Timeout of one insert or query round trip.
    pub timeout_ms: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StagingConfig {
    /// A group commit is flushed once it holds this many events...
    pub flush_rows: usize,
    /// ...or once its first event has waited this long.
    pub flush_interval_ms: u64,
    /// Submissions (one per ingest request) that may queue for the writer; when full,
    /// senders wait (backpressure).
    pub queue_capacity: usize,
}

impl Default for StagingConfig {
    fn default() -> Self {
        Self {
            flush_rows: 50_000,
            flush_interval_ms: 100,
            queue_capacity: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Seconds between scheduled warehouse loads; 0 turns the schedule off.
    pub interval_secs: u64,
    /// Staged events read per chunk of a warehouse load.
    pub chunk_events: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            chunk_events: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Committed flushes the in-process bus keeps for slow readers; a reader further
    /// behind catches up from staging. Memory: up to this many flushes of
    /// `staging.flush_rows` events.
    pub bus_capacity: usize,
    /// How often the NEWS2 state of the patients changed since the last save is written
    /// to the local snapshot (and at shutdown); a restart replays staging after it.
    pub snapshot_interval_ms: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            bus_capacity: 16,
            snapshot_interval_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MllpConfig {
    /// Address of the HL7 v2 MLLP listener; unset (the default) turns it off.
    pub listen: Option<SocketAddr>,
    /// Largest HL7 message accepted in one frame; a bigger one is answered AR and its
    /// connection closed.
    pub max_message_bytes: usize,
    /// A connection with no frame under way that receives no complete frame for this
    /// long (since it opened or since its last answer) is closed; senders reconnect.
    pub idle_timeout_ms: u64,
    /// A frame (or unframed input) that has started must be complete within this long,
    /// or its connection is closed without an answer.
    pub read_timeout_ms: u64,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for MllpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_message_bytes: 1024 * 1024,
            idle_timeout_ms: 600_000,
            read_timeout_ms: 30_000,
            max_connections: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the TOML file (if given), then `HOSPITAL__SECTION__KEY` variables.
    /// Command-line flags are applied by the caller on the result, then [`Config::validate`].
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("HOSPITAL__").split("__"));
        figment.extract().map_err(|e| ConfigError::Read(Box::new(e)))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        if self.staging.flush_rows == 0 {
            return bad("staging.flush_rows must be at least 1");
        }
        if self.staging.queue_capacity == 0 {
            return bad("staging.queue_capacity must be at least 1");
        }
        if self.ingest.max_events_per_request == 0 {
            return bad("ingest.max_events_per_request must be at least 1");
        }
        if self.ingest.max_in_flight_per_stream == 0 {
            return bad("ingest.max_in_flight_per_stream must be at least 1");
        }
        if self.realtime.bus_capacity == 0 {
            return bad("realtime.bus_capacity must be at least 1");
        }
        if self.realtime.snapshot_interval_ms == 0 {
            return bad("realtime.snapshot_interval_ms must be at least 1");
        }
        if self.batch.chunk_events == 0 {
            return bad("batch.chunk_events must be at least 1");
        }
        if self.mllp.max_message_bytes < 64 {
            return bad("mllp.max_message_bytes must be at least 64");
        }
        if self.mllp.idle_timeout_ms == 0 || self.mllp.read_timeout_ms == 0 {
            return bad("mllp.idle_timeout_ms and mllp.read_timeout_ms must be at least 1");
        }
        if self.mllp.max_connections == 0 {
            return bad("mllp.max_connections must be at least 1");
        }
        if !self.clickhouse.url.starts_with("http://") && !self.clickhouse.url.starts_with("https://") {
            return bad("clickhouse.url must start with http:// or https://");
        }
        Ok(())
    }

    /// The configuration as TOML with its secrets replaced by [`REDACTED`]: the
    /// ClickHouse password, and a password written into the ClickHouse URL.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        if !shown.clickhouse.password.is_empty() {
            shown.clickhouse.password = REDACTED.into();
        }
        shown.clickhouse.url = redact_url(&shown.clickhouse.url);
        toml::to_string_pretty(&shown).map_err(|e| ConfigError::Invalid(format!("cannot render as TOML: {e}")))
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.staging.flush_interval_ms)
    }
}

/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// `scheme://user:password@host...` with the password redacted.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:{REDACTED}@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
// figment's Jail returns its large error type by value.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "platform.toml",
                "[server]\nlisten = \"0.0.0.0:6000\"\n[staging]\nflush_rows = 1000\n",
            )?;
            jail.set_env("HOSPITAL__STAGING__FLUSH_ROWS", "2000");
            jail.set_env("HOSPITAL__CLICKHOUSE__URL", "http://clickhouse:8123");
            let c = Config::load(Some(Path::new("platform.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen.to_string(), "0.0.0.0:6000");
            assert_eq!(c.staging.flush_rows, 2000, "environment wins over the file");
            assert_eq!(c.clickhouse.url, "http://clickhouse:8123");
            assert_eq!(c.batch.interval_secs, 60, "untouched keys keep their defaults");
            assert_eq!(c.mllp.listen, None, "the MLLP listener is off unless configured");
            c.validate().map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[staging]\nflush_rowz = 1\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).expect_err("a typo is an error, not a default");
            assert!(err.to_string().contains("flush_rowz"), "names the unknown key: {err}");
            Ok(())
        });
        let refused = |c: Config| c.validate().expect_err("refused").to_string();
        let mut c = Config::default();
        c.staging.flush_rows = 0;
        assert_eq!(
            refused(c),
            "invalid configuration: staging.flush_rows must be at least 1"
        );
        let mut c = Config::default();
        c.clickhouse.url = "clickhouse:8123".into();
        assert_eq!(
            refused(c),
            "invalid configuration: clickhouse.url must start with http:// or https://"
        );
        let mut c = Config::default();
        c.mllp.max_message_bytes = 10;
        assert_eq!(
            refused(c),
            "invalid configuration: mllp.max_message_bytes must be at least 64"
        );
        let zeros: [fn(&mut Config); 3] = [
            |c| c.mllp.idle_timeout_ms = 0,
            |c| c.mllp.read_timeout_ms = 0,
            |c| c.mllp.max_connections = 0,
        ];
        for zero in zeros {
            let mut c = Config::default();
            zero(&mut c);
            assert!(c.validate().is_err());
        }
    }

    #[test]
    fn printed_configuration_hides_secrets() {
        let mut c = Config::default();
        c.clickhouse.password = "s3cret-pw".into();
        c.clickhouse.url = "http://ops:url-pw@clickhouse:8123/?database=x".into();
        let shown = c.to_redacted_toml().expect("renders");
        assert!(!shown.contains("s3cret-pw") && !shown.contains("url-pw"), "{shown}");
        let back: Config = toml::from_str(&shown).expect("still valid TOML of the configuration");
        assert_eq!(back.clickhouse.password, REDACTED);
        assert_eq!(back.clickhouse.url, "http://ops:<redacted>@clickhouse:8123/?database=x");
        assert_eq!(back.clickhouse.user, "default", "what is not secret is shown");
        assert_eq!(
            c.clickhouse.password, "s3cret-pw",
            "the configuration itself is unchanged"
        );
        // No password: nothing to hide, and an empty one is shown as empty.
        let plain: Config = toml::from_str(&Config::default().to_redacted_toml().unwrap()).unwrap();
        assert_eq!(plain.clickhouse.password, "");
        assert_eq!(plain.clickhouse.url, "http://127.0.0.1:8123");
    }
}
