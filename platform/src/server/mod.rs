//! The platform process: applies migrations, starts the staging writer, the warehouse
//! load schedule and the gRPC server (ingest, batch, grpc.health.v1, reflection v1 and
//! v1alpha) on one port, plus the HL7 v2 MLLP listener when `mllp.listen` is set, and
//! shuts them down in order so that nothing held is lost.

mod batch_api;
mod caller_errors;
pub mod health;
mod ingest_api;
pub mod mllp;
mod realtime_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hospital_proto::batch::batch_service_server::BatchServiceServer;
use hospital_proto::ingest::ingest_service_server::IngestServiceServer;
use hospital_proto::realtime::alert_service_server::AlertServiceServer;
use hospital_proto::realtime::census_service_server::CensusServiceServer;
use hospital_proto::realtime::change_feed_service_server::ChangeFeedServiceServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use self::caller_errors::CallerErrors;
use self::health::{supervise, Health, OVERALL};
use crate::batch::{self, WarehouseLoader};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::IngestOptions;
use crate::realtime::bus::Bus;
use crate::realtime::changefeed::ChangeFeedApi;
use crate::realtime::follow::CatchUpStats;
use crate::realtime::processor::Realtime;
use crate::staging::{StagingWriter, WriterOptions};
use crate::{db, realtime, schema};

/// Largest gRPC message accepted (an IngestRequest of 10k events fits easily).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A running platform. Dropping it does not stop it; call [`Platform::shutdown`].
pub struct Platform {
    addr: SocketAddr,
    mllp_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    realtime: Realtime,
    task: JoinHandle<Result<()>>,
    change_feed_catch_up: Arc<CatchUpStats>,
}

impl Platform {
    /// Address the gRPC server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address the HL7 v2 MLLP listener is bound to, when `mllp.listen` is set.
    pub fn mllp_addr(&self) -> Option<SocketAddr> {
        self.mllp_addr
    }

    /// Graceful shutdown: stop accepting, let open ingest streams answer what they have
    /// submitted, flush the staging writer, stop the schedule.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the platform stops (after a shutdown signal).
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| Error::Internal(format!("platform task: {e}")))?
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Staged events the real-time processor skipped because they do not decode.
    pub fn undecodable_events(&self) -> u64 {
        self.realtime.undecodable_events()
    }

    /// What the change feed's subscribers read from staging while catching up.
    pub fn change_feed_catch_up(&self) -> Arc<CatchUpStats> {
        self.change_feed_catch_up.clone()
    }
}

/// Starts everything and returns once the gRPC port is bound and the schema is current.
pub async fn start(config: Config) -> Result<Platform> {
    config.validate().map_err(|e| Error::InvalidArgument {
        message: e.to_string(),
        violations: vec![],
    })?;
    let ch = &config.clickhouse;
    // Every stage gets its clients from here; none builds its own from configuration.
    let databases = db::Databases::new(ch);
    let admin = databases.admin.clone();
    wait_for_clickhouse(&admin, &ch.url, databases.timeout).await?;
    let applied = schema::migrate(&admin).await?;
    tracing::info!(applied, "schema is current");

    let bus = Bus::new(config.realtime.bus_capacity);
    let mut writer = StagingWriter::start(
        databases.staging.clone(),
        WriterOptions {
            flush_rows: config.staging.flush_rows,
            flush_interval: config.flush_interval(),
            queue_capacity: config.staging.queue_capacity,
            insert_timeout: databases.timeout,
            state_dir: config.state.dir.clone(),
        },
        bus.clone(),
    )
    .await?;
    let loader = Arc::new(WarehouseLoader::new(
        &databases,
        writer.handle().subscribe_committed(),
        config.batch.chunk_events,
    ));

    let incoming = TcpIncoming::bind(config.server.listen)
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.server.listen)))?
        .with_nodelay(Some(true));
    let addr = incoming
        .local_addr()
        .map_err(|e| Error::Internal(format!("listener address: {e}")))?;

    let shutdown = CancellationToken::new();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(reporter, SERVICES, NEED_STORAGE).await;
    // google.rpc error details are registered so that grpcurl can show BadRequest.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hospital_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hospital_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let ingest = ingest_api::IngestApi {
        writer: writer.handle(),
        options: IngestOptions {
            max_events_per_request: config.ingest.max_events_per_request,
            max_future_ms: (config.ingest.max_future_secs as i64).saturating_mul(1000),
        },
        max_in_flight: config.ingest.max_in_flight_per_stream,
        shutdown: shutdown.clone(),
    };
    let mllp = match config.mllp.listen {
        Some(listen) => {
            let ctx = mllp::MllpContext {
                writer: writer.handle(),
                ingest: ingest.options,
                config: config.mllp.clone(),
                map: Default::default(),
            };
            let (addr, task) = mllp::start(listen, ctx, shutdown.clone())
                .await
                .map_err(|e| Error::Internal(format!("cannot listen for MLLP on {listen}: {e}")))?;
            tracing::info!(%addr, "MLLP listener started");
            Some((addr, task))
        }
        None => None,
    };
    let (mllp_addr, mllp_task) = mllp.unzip();
    let watch = |name, feeds, task| supervise(health.clone(), name, feeds, task, shutdown.clone());
    let mllp_task = mllp_task.map(|t| watch("MLLP listener", &[], t));
    let writer_tasks: Vec<_> = writer
        .take_tasks()
        .into_iter()
        .map(|(name, t)| watch(name, &[INGEST], t))
        .collect();
    let batch_api = batch_api::BatchApi { loader: loader.clone() };

    let (realtime, realtime_task) = realtime::processor::start(
        &databases,
        &bus,
        writer.handle().subscribe_committed(),
        realtime::processor::SnapshotOptions {
            dir: config.state.dir.clone(),
            every: Duration::from_millis(config.realtime.snapshot_interval_ms),
        },
        shutdown.clone(),
    )
    .await?;
    let change_feed = ChangeFeedApi {
        bus: bus.clone(),
        staging: databases.staging.clone(),
        committed: writer.handle().subscribe_committed(),
        ward_of: realtime_api::ward_of(&realtime),
        shutdown: shutdown.clone(),
        catch_up: Arc::default(),
    };
    let change_feed_catch_up = change_feed.catch_up.clone();
    let alert_api = realtime_api::AlertApi {
        realtime: realtime.clone(),
        shutdown: shutdown.clone(),
    };
    let realtime_handle = realtime.clone();
    let census_api = realtime_api::CensusApi {
        realtime,
        shutdown: shutdown.clone(),
    };

    let realtime_task = watch("real-time processor", &[ALERTS, CENSUS], realtime_task);
    let schedule = (config.batch.interval_secs > 0).then(|| {
        let task = batch::spawn_schedule(
            loader.clone(),
            Duration::from_secs(config.batch.interval_secs),
            shutdown.clone(),
        );
        watch("warehouse load schedule", &[BATCH], task)
    });
    let probe = tokio::spawn(probe_storage(admin, health.clone(), shutdown.clone()));
    let probe = watch("storage probe", NEED_STORAGE, probe);

    let router = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CallerErrors(
            IngestServiceServer::new(ingest).max_decoding_message_size(MAX_MESSAGE_BYTES),
        ))
        .add_service(CallerErrors(BatchServiceServer::new(batch_api)))
        .add_service(CallerErrors(ChangeFeedServiceServer::new(change_feed)))
        .add_service(CallerErrors(AlertServiceServer::new(alert_api)))
        .add_service(CallerErrors(CensusServiceServer::new(census_api)));
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = {
            let stopped = token.clone();
            let serve = router.serve_with_incoming_shutdown(incoming, async move { stopped.cancelled().await });
            tokio::pin!(serve);
            tokio::select! {
                r = &mut serve => r.map_err(|e| Error::Internal(format!("grpc server: {e}"))),
                _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(grace_ms = grace.as_millis() as u64, "streams still open after the grace period; closing them");
                    Ok(())
                }
            }
        };
        // MLLP connections answer the frame in hand (its commit included) before the
        // writer stops. Then answer everything already queued for staging, and stop the
        // writer, the schedule, the probe and the real-time processor.
        let mut failures = Vec::new();
        failures.extend(finished(mllp_task).await);
        writer.shutdown().await;
        for t in writer_tasks {
            failures.extend(finished(Some(t)).await);
        }
        failures.extend(finished(schedule).await);
        failures.extend(finished(Some(probe)).await);
        failures.extend(finished(Some(realtime_task)).await);
        tracing::info!("platform stopped");
        match served {
            Ok(()) if !failures.is_empty() => Err(Error::Internal(format!(
                "background tasks failed: {}",
                failures.join("; ")
            ))),
            served => served,
        }
    });
    tracing::info!(%addr, "platform listening");
    Ok(Platform {
        addr,
        mllp_addr,
        shutdown,
        realtime: realtime_handle,
        task,
        change_feed_catch_up,
    })
}

/// Waits for ClickHouse to answer at start-up (it may still be starting, e.g. in compose).
async fn wait_for_clickhouse(client: &clickhouse::Client, url: &str, patience: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.query("SELECT 1").execute().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Unavailable(format!("ClickHouse at {url} did not answer: {e}")))
            }
            Err(e) => {
                tracing::info!(%url, error = %e, "waiting for ClickHouse");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Why a supervised task failed, once it has ended (None: it ended well, or was none).
async fn finished(task: Option<JoinHandle<Option<String>>>) -> Option<String> {
    match task?.await {
        Ok(failure) => failure,
        Err(e) => Some(format!("supervisor: {e}")),
    }
}

/// Service names reported over grpc.health.v1.
const INGEST: &str = <IngestServiceServer<ingest_api::IngestApi> as NamedService>::NAME;
const BATCH: &str = <BatchServiceServer<batch_api::BatchApi> as NamedService>::NAME;
const CHANGE_FEED: &str = <ChangeFeedServiceServer<ChangeFeedApi> as NamedService>::NAME;
const ALERTS: &str = <AlertServiceServer<realtime_api::AlertApi> as NamedService>::NAME;
const CENSUS: &str = <CensusServiceServer<realtime_api::CensusApi> as NamedService>::NAME;
const SERVICES: &[&str] = &[OVERALL, INGEST, BATCH, CHANGE_FEED, ALERTS, CENSUS];
/// The services that cannot work without ClickHouse (the census and alerts are served
/// from memory).
const NEED_STORAGE: &[&str] = &[INGEST, BATCH, CHANGE_FEED];

/// Interval of the storage probe.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Follows ClickHouse's availability into the health (see [`health`]).
async fn probe_storage(client: clickhouse::Client, health: Health, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let query = client.query("SELECT 1").execute();
        let up = matches!(tokio::time::timeout(PROBE_EVERY * 5, query).await, Ok(Ok(())));
        health.set_storage_up(up).await;
    }
}
