//! The `batch` processor: merges incoming batches of one signal until `send_batch_size` items
//! are held or `timeout` has passed since the first of them arrived, then sends them on as one
//! batch. No batch sent on holds more than `send_batch_max_size` items (when that is not 0):
//! a larger one, merged here or received whole, is cut with [`Batch::take_items`] into
//! batches of exactly `send_batch_max_size` items, in order, and the remainder is held, with
//! its own `timeout` from now, or sent at once when it reaches `send_batch_size` alone. With a
//! zero `timeout` batches pass straight through, only cut to `send_batch_max_size`. Emits
//! exactly what it receives, regrouped, in the same order; on input close it flushes what it
//! holds.

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use hpcotel_core::channel;
use hpcotel_core::{Batch, ComponentError, ComponentStats, Processor};
use tokio::time::Instant;

pub use config::{Config, DEFAULT_SEND_BATCH_MAX_SIZE, DEFAULT_SEND_BATCH_SIZE, DEFAULT_TIMEOUT};

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
            send_batch_max_size,
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
                    let (mut held, mut count) = match pending.take() {
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
                    // Send full batches of `send_batch_max_size` from the front. What was
                    // held before always fits in the first one (less than
                    // `send_batch_max_size` is ever held), so what remains arrived just now.
                    while send_batch_max_size > 0 && count > send_batch_max_size {
                        send(&output, held.take_items(send_batch_max_size)).await?;
                        count -= send_batch_max_size;
                        deadline = Instant::now() + timeout;
                    }
                    if timeout.is_zero()
                        || (send_batch_size > 0 && count >= send_batch_size)
                        || (send_batch_max_size > 0 && count >= send_batch_max_size)
                    {
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
