//! The `batch` processor: merges incoming batches of one signal until `send_batch_size` items
//! are held or `timeout` has passed since the first of them arrived, then sends them on as one
//! batch. Emits exactly what it receives, regrouped; on input close it flushes what it holds.

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use hpcotel_core::channel;
use hpcotel_core::{Batch, ComponentError, ComponentStats, Processor};
use tokio::time::Instant;

pub use config::{Config, DEFAULT_SEND_BATCH_SIZE, DEFAULT_TIMEOUT};

/// The batch processor; one instance per pipeline.
pub struct BatchProcessor {
    config: Config,
}

impl BatchProcessor {
    /// A batch processor with `config`.
    pub fn new(config: Config) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Processor for BatchProcessor {
    async fn run(
        self: Box<Self>,
        mut input: channel::Receiver,
        output: channel::Sender,
        _stats: Arc<ComponentStats>,
    ) -> Result<(), ComponentError> {
        let Config {
            send_batch_size,
            timeout,
        } = self.config;
        let mut pending: Option<(Batch, usize)> = None;
        let mut deadline = Instant::now();
        loop {
            let next = if pending.is_some() {
                tokio::select! {
                    biased;
                    b = input.recv() => Some(b),
                    _ = tokio::time::sleep_until(deadline) => None,
                }
            } else {
                Some(input.recv().await)
            };
            match next {
                // Timer fired.
                None => {
                    if let Some((b, _)) = pending.take() {
                        send(&output, b).await?;
                    }
                }
                // Input closed: flush and finish.
                Some(None) => {
                    if let Some((b, _)) = pending.take() {
                        send(&output, b).await?;
                    }
                    return Ok(());
                }
                Some(Some(batch)) => {
                    let items = batch.item_count();
                    if timeout.is_zero() {
                        send(&output, batch).await?;
                        continue;
                    }
                    let (held, count) = match pending.take() {
                        None => {
                            deadline = Instant::now() + timeout;
                            (batch, items)
                        }
                        Some((mut held, count)) => match held.append(batch) {
                            Ok(()) => (held, count + items),
                            // A pipeline carries one signal; a mismatch is a wiring bug,
                            // but never lose data over it.
                            Err(other) => {
                                send(&output, held).await?;
                                deadline = Instant::now() + timeout;
                                (other, items)
                            }
                        },
                    };
                    if send_batch_size > 0 && count >= send_batch_size {
                        send(&output, held).await?;
                    } else {
                        pending = Some((held, count));
                    }
                }
            }
        }
    }
}

async fn send(output: &channel::Sender, batch: Batch) -> Result<(), ComponentError> {
    output
        .send(batch)
        .await
        .map_err(|_| "batch processor: downstream stage closed early".into())
}
