//! Extensions: components outside the pipelines, listed in `service.extensions`, one folder
//! each. They start before the pipelines' components are built and stop after the pipelines
//! have drained, so they see the whole life of the collector.
//!
//! - [`health_check`]: `GET /healthz` (the process is alive) and `GET /readyz` (pipelines
//!   running, no exporter failing) for Kubernetes probes.

pub mod health_check;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use hpcotel_core::ComponentId;

/// A started extension: a task that serves until [`Running::stop`]. Dropping it (the
/// collector failed to build another component) cancels the task too.
#[derive(Debug)]
pub struct Running {
    id: ComponentId,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// An extension `id` served by `task` until `stop` is cancelled.
    pub fn new(id: ComponentId, stop: CancellationToken, task: JoinHandle<()>) -> Self {
        Self {
            id,
            stop,
            task: Some(task),
        }
    }

    /// The extension's config id.
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// Stops the extension and waits for its task to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(()) => debug!(extension = %self.id, "extension stopped"),
                Err(e) => error!(extension = %self.id, error = %e, "extension task failed"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
