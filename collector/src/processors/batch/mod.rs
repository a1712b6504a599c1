//! The `batch` processor: merges incoming batches of one signal until `send_batch_size` items
//! are held or `timeout` has passed since the first of them arrived, then sends them on as one
//! batch. No batch sent on holds more than `send_batch_max_size` items (when that is not 0):
//! a larger one, merged here or received whole, is cut with [`Batch::take_items`] into
//! batches of exactly `send_batch_max_size` items, in order, and the remainder is held, with
//! its own `timeout` from now, or sent at once when it reaches `send_batch_size` alone.
//!
//! No batch sent on is longer than `send_batch_max_bytes` as an encoded OTLP request (when
//! that is not 0), so that it fits the next hop's message limit: a longer one is cut with
//! [`Batch::split_to_fit`], packed greedily, and its last part held as the remainder of an
//! item cut is. An item whose request alone is longer goes on in a batch of its own, for the
//! exporter to refuse, counted. With a zero `timeout` batches pass straight through, only
//! cut to `send_batch_max_size` and `send_batch_max_bytes`. Emits exactly what it receives,
//! regrouped, in the same order; on input close it flushes what it holds.
//!
//! Acknowledgements ([`hpcotel_core::ack`]) follow the items: merged batches carry all their
//! acks, and every piece cut from what is held carries a clone of the held acks, so a source
//! hears "delivered" only once every piece holding its items was.

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use hpcotel_core::channel;
use hpcotel_core::{Acks, Batch, ComponentError, ComponentStats, Processor};
use tokio::time::Instant;

pub use config::{
    Config, DEFAULT_SEND_BATCH_MAX_BYTES, DEFAULT_SEND_BATCH_MAX_SIZE, DEFAULT_SEND_BATCH_SIZE,
    DEFAULT_TIMEOUT,
};

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
            send_batch_max_bytes: max_bytes,
            timeout,
        } = self.config;
        // What is held: the batch, its items, its request's length (0 when `max_bytes` is
        // 0: not measured then), and its acks.
        let mut pending: Option<(Batch, usize, usize, Acks)> = None;
        let mut deadline = Instant::now();
        loop {
            let next = if pending.is_some() {
                tokio::select! {
                    biased;
                    b = input.recv_acked() => Some(b),
                    _ = tokio::time::sleep_until(deadline) => None,
                }
            } else {
                Some(input.recv_acked().await)
            };
            match next {
                // Timer fired.
                None => {
                    if let Some((b, _, _, acks)) = pending.take() {
                        send(&output, b, acks).await?;
                    }
                }
                // Input closed: flush and finish.
                Some(None) => {
                    if let Some((b, _, _, acks)) = pending.take() {
                        send(&output, b, acks).await?;
                    }
                    return Ok(());
                }
                Some(Some((batch, acks))) => {
                    let items = batch.item_count();
                    // Request lengths add up when batches are appended, so what is held is
                    // measured once per arrival, not re-encoded.
                    let bytes = if max_bytes > 0 {
                        batch.encoded_len()
                    } else {
                        0
                    };
                    let (mut held, mut count, mut held_bytes, held_acks) = match pending.take() {
                        None => {
                            deadline = Instant::now() + timeout;
                            (batch, items, bytes, acks)
                        }
                        Some((mut held, count, held_bytes, mut held_acks)) => {
                            match held.append(batch) {
                                Ok(()) => {
                                    held_acks.merge(acks);
                                    (held, count + items, held_bytes + bytes, held_acks)
                                }
                                // A pipeline carries one signal; a mismatch is a wiring bug,
                                // but never lose data over it.
                                Err(other) => {
                                    send(&output, held, held_acks).await?;
                                    deadline = Instant::now() + timeout;
                                    (other, items, bytes, acks)
                                }
                            }
                        }
                    };
                    // Send full batches of `send_batch_max_size` from the front (each cut to
                    // `max_bytes` too). What was held before always fits in the first one
                    // (less than `send_batch_max_size` is ever held), so what remains
                    // arrived just now.
                    if send_batch_max_size > 0 && count > send_batch_max_size {
                        while count > send_batch_max_size {
                            let front = held.take_items(send_batch_max_size);
                            send_fitting(&output, front, max_bytes, held_acks.clone()).await?;
                            count -= send_batch_max_size;
                        }
                        deadline = Instant::now() + timeout;
                        if max_bytes > 0 {
                            held_bytes = held.encoded_len();
                        }
                    }
                    // Then cut to `max_bytes`: send every batch but the last, which is held
                    // like the remainder of an item cut.
                    if max_bytes > 0 && held_bytes > max_bytes {
                        let mut parts = held.split_to_fit(max_bytes);
                        let (last, last_bytes) = parts
                            .pop()
                            .expect("split_to_fit returns at least one batch");
                        for (part, _) in parts {
                            send(&output, part, held_acks.clone()).await?;
                        }
                        (held, held_bytes) = (last, last_bytes);
                        count = held.item_count();
                        deadline = Instant::now() + timeout;
                    }
                    if timeout.is_zero()
                        || (send_batch_size > 0 && count >= send_batch_size)
                        || (send_batch_max_size > 0 && count >= send_batch_max_size)
                        // One item too large alone: nothing can join it.
                        || (max_bytes > 0 && held_bytes > max_bytes)
                    {
                        send(&output, held, held_acks).await?;
                    } else {
                        pending = Some((held, count, held_bytes, held_acks));
                    }
                }
            }
        }
    }
}

/// Sends `batch`, cut into batches of at most `max_bytes` first when it is longer (and
/// `max_bytes` is not 0); each part carries a clone of `acks`.
async fn send_fitting(
    output: &channel::Sender,
    batch: Batch,
    max_bytes: usize,
    acks: Acks,
) -> Result<(), ComponentError> {
    if max_bytes == 0 || batch.encoded_len() <= max_bytes {
        return send(output, batch, acks).await;
    }
    for (part, _) in batch.split_to_fit(max_bytes) {
        send(output, part, acks.clone()).await?;
    }
    acks.settle();
    Ok(())
}

async fn send(output: &channel::Sender, batch: Batch, acks: Acks) -> Result<(), ComponentError> {
    output
        .send_acked(batch, acks)
        .await
        .map_err(|_| "batch processor: downstream stage closed early".into())
}
