//! The platform's health over grpc.health.v1, and the supervision of its background
//! tasks.
//!
//! Two things make a service NOT_SERVING: ClickHouse not answering (the services that
//! need it: ingest, batch, the change feed) and a background task that died (the
//! services it feeds). The overall health (service `""`, what a default probe asks)
//! is NOT_SERVING whenever anything is. A dead task stays dead until a restart; the
//! storage state follows the probe.

use std::any::Any;
use std::fmt::Display;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The overall health's service name.
pub const OVERALL: &str = "";

#[derive(Default)]
struct State {
    storage_down: bool,
    /// Dead tasks and the services each one feeds.
    dead: Vec<(&'static str, &'static [&'static str])>,
}

/// Shared health state; cheap to clone.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    /// Every service on the port, overall included.
    services: &'static [&'static str],
    /// The services that need ClickHouse.
    need_storage: &'static [&'static str],
    /// Held across a publication, so that statuses are never published out of order.
    state: Arc<tokio::sync::Mutex<State>>,
}

impl Health {
    pub async fn new(
        reporter: HealthReporter,
        services: &'static [&'static str],
        need_storage: &'static [&'static str],
    ) -> Self {
        let health = Self {
            reporter,
            services,
            need_storage,
            state: Arc::default(),
        };
        health.publish(&*health.state.lock().await).await;
        health
    }

    /// Records whether ClickHouse answers.
    pub async fn set_storage_up(&self, up: bool) {
        let mut state = self.state.lock().await;
        if state.storage_down != up {
            return;
        }
        state.storage_down = !up;
        tracing::warn!(up, "ClickHouse availability changed");
        self.publish(&state).await;
    }

    /// Records that `task` died: the services it feeds, and the whole, stop serving.
    pub async fn task_died(&self, task: &'static str, feeds: &'static [&'static str]) {
        let mut state = self.state.lock().await;
        state.dead.push((task, feeds));
        self.publish(&state).await;
    }

    async fn publish(&self, state: &State) {
        for &service in self.services {
            let storage = state.storage_down && (service == OVERALL || self.need_storage.contains(&service));
            let task = state
                .dead
                .iter()
                .any(|(_, feeds)| service == OVERALL || feeds.contains(&service));
            let status = if storage || task {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// What a background task ends with: `()` or a `Result`.
pub trait Outcome {
    /// Why the task failed, if it did.
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Watches a background task that should run until `shutdown`: when it panics, returns
/// an error, or ends before the shutdown, it is logged and the health turns NOT_SERVING
/// (overall and `feeds`). Resolves when the task has ended, to why it failed if it did.
pub fn supervise<O: Outcome + Send + 'static>(
    health: Health,
    name: &'static str,
    feeds: &'static [&'static str],
    task: JoinHandle<O>,
    shutdown: CancellationToken,
) -> JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let failure = match task.await {
            Ok(outcome) => match outcome.failure() {
                Some(e) => Some(format!("{name} failed: {e}")),
                None if !shutdown.is_cancelled() => Some(format!("{name} stopped before the shutdown")),
                None => None,
            },
            Err(e) if e.is_panic() => Some(format!("{name} panicked: {}", panic_message(e.into_panic()))),
            Err(e) => Some(format!("{name} was cancelled: {e}")),
        };
        if let Some(failure) = &failure {
            tracing::error!(task = name, %failure, "background task died; health is NOT_SERVING");
            health.task_died(name, feeds).await;
        }
        failure
    })
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map_or_else(|_| "(no message)".to_string(), |s| s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Request;
    use tonic_health::pb::health_check_response::ServingStatus as Pb;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::HealthCheckRequest;

    const SERVICES: &[&str] = &[OVERALL, "ingest", "batch", "alerts"];

    async fn setup() -> (
        Health,
        impl Fn(&'static str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Pb>>>,
    ) {
        let reporter = HealthReporter::new();
        let service = Arc::new(tonic_health::server::HealthService::from_health_reporter(
            reporter.clone(),
        ));
        let health = Health::new(reporter, SERVICES, &["ingest", "batch"]).await;
        let check = move |name: &'static str| {
            let service = service.clone();
            Box::pin(async move {
                let r = service
                    .check(Request::new(HealthCheckRequest { service: name.into() }))
                    .await
                    .expect("known service")
                    .into_inner();
                Pb::try_from(r.status).unwrap()
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = Pb>>>
        };
        (health, check)
    }

    #[tokio::test]
    async fn storage_outage_turns_the_whole_and_its_users_not_serving() {
        let (health, check) = setup().await;
        for s in SERVICES {
            assert_eq!(check(s).await, Pb::Serving, "{s:?}");
        }
        health.set_storage_up(false).await;
        assert_eq!(check(OVERALL).await, Pb::NotServing, "a default probe sees the outage");
        assert_eq!(check("ingest").await, Pb::NotServing);
        assert_eq!(check("batch").await, Pb::NotServing);
        assert_eq!(check("alerts").await, Pb::Serving, "served from memory");
        health.set_storage_up(true).await;
        for s in SERVICES {
            assert_eq!(check(s).await, Pb::Serving, "{s:?} after recovery");
        }
    }

    fn fail(why: &'static str) {
        panic!("{why}")
    }

    /// Supervises `task` and checks what the health says once it ended.
    async fn dies<O: Outcome + Send + 'static>(task: JoinHandle<O>, want: &str) {
        let (health, check) = setup().await;
        let failure = supervise(
            health.clone(),
            "alerts-task",
            &["alerts"],
            task,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(failure.as_deref(), Some(want));
        assert_eq!(check(OVERALL).await, Pb::NotServing);
        assert_eq!(check("alerts").await, Pb::NotServing);
        assert_eq!(check("ingest").await, Pb::Serving, "not fed by the task");
        // A dead task stays dead when storage comes and goes.
        health.set_storage_up(false).await;
        health.set_storage_up(true).await;
        assert_eq!(check("alerts").await, Pb::NotServing);
        assert_eq!(check(OVERALL).await, Pb::NotServing);
    }

    #[tokio::test]
    async fn a_task_that_dies_is_seen() {
        dies(tokio::spawn(async { fail("boom") }), "alerts-task panicked: boom").await;
        dies(
            tokio::spawn(async { Err::<(), _>("no more input".to_string()) }),
            "alerts-task failed: no more input",
        )
        .await;
        dies(tokio::spawn(async {}), "alerts-task stopped before the shutdown").await;
        let shutdown = CancellationToken::new();
        // Ending after the shutdown is how a task should end.
        let (health, check) = setup().await;
        shutdown.cancel();
        let unit = supervise(
            health.clone(),
            "t",
            &["alerts"],
            tokio::spawn(async {}),
            shutdown.clone(),
        );
        assert_eq!(unit.await.unwrap(), None);
        assert_eq!(check(OVERALL).await, Pb::Serving);
        let panicked = supervise(health, "t", &["alerts"], tokio::spawn(async { fail("late") }), shutdown);
        assert_eq!(
            panicked.await.unwrap().as_deref(),
            Some("t panicked: late"),
            "a panic is never normal"
        );
    }
}
