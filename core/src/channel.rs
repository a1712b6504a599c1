//! Bounded channels of [`Batch`]es (or `Arc<Batch>`es) whose capacity is counted in items
//! (spans, metric data points, log records), not in batches.
//!
//! A batch holds anything from one span to the batch processor's 8192 or more, so a channel
//! of "128 batches" may hold 128 items or a million. Every hop of hpcotel's pipelines (and
//! every export queue) is one of these channels instead, so its memory is bounded by what it
//! carries: a sender reserves as many units of capacity as its batch has items and the
//! receiver gives them back when it takes the batch out.
//!
//! - A batch weighs its item count, at least 1 (an empty batch still takes a slot) and at
//!   most the capacity (a batch larger than the whole channel waits until the channel is
//!   empty, then passes alone, so it can never wedge the pipeline).
//! - Reservation is first come, first served: a large batch waiting for room is not
//!   overtaken by smaller ones behind it, so order is kept.
//! - [`Sender::try_reserve`] never waits (receivers answering "retry later");
//!   [`Sender::reserve`] waits for room (backpressure between stages).
//! - The channel closes when every [`Sender`] is dropped (the receiver drains what is left,
//!   then sees `None`) or when the [`Receiver`] is closed or dropped (senders get
//!   [`Closed`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

use crate::ack::Acks;
use crate::signal::Batch;

/// The largest capacity a channel may have, in items.
pub const MAX_CAPACITY: usize = u32::MAX as usize;

/// What a channel carries: something that knows how many items it holds.
pub trait Items: Send + 'static {
    /// Spans, metric data points or log records held.
    fn items(&self) -> usize;
}

impl Items for Batch {
    fn items(&self) -> usize {
        self.item_count()
    }
}

impl<T: Items + Sync> Items for Arc<T> {
    fn items(&self) -> usize {
        T::items(self)
    }
}

/// A batch in the channel, with its acknowledgements ([`crate::ack`]) and the capacity it
/// holds until it is taken out.
struct Slot<T> {
    batch: T,
    acks: Acks,
    _units: OwnedSemaphorePermit,
}

/// The channel is closed: the receiver is gone (or closed), or the channel shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("channel closed")]
pub struct Closed;

/// Why [`Sender::try_reserve`] did not reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryReserveError {
    /// Not enough room now.
    #[error("channel full")]
    Full,
    /// The channel is closed.
    #[error("channel closed")]
    Closed,
}

/// Creates a channel holding at most `capacity` items (clamped to 1..=[`MAX_CAPACITY`]).
pub fn channel<T: Items>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.clamp(1, MAX_CAPACITY);
    let units = Arc::new(Semaphore::new(capacity));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Sender {
            tx,
            units: units.clone(),
            capacity,
        },
        Receiver {
            rx,
            units,
            capacity,
        },
    )
}

/// The sending half. Cheap to clone.
#[derive(Debug)]
pub struct Sender<T = Batch> {
    tx: mpsc::UnboundedSender<Slot<T>>,
    units: Arc<Semaphore>,
    capacity: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            units: self.units.clone(),
            capacity: self.capacity,
        }
    }
}

/// Room reserved for one batch of the weight asked for; [`Permit::send`] uses it. Dropping
/// a permit unused gives the room back.
#[derive(Debug)]
pub struct Permit<T = Batch> {
    tx: mpsc::UnboundedSender<Slot<T>>,
    units: OwnedSemaphorePermit,
}

impl<T> Permit<T> {
    /// Puts `batch` into the channel. The reservation was made for a weight; a batch of
    /// another size still goes in (the channel holds what was reserved, not what is sent).
    ///
    /// Hands the batch back when the receiver was closed or dropped after the reservation
    /// was made, so the caller can count it instead of losing it.
    pub fn send(self, batch: T) -> Result<(), (Closed, T)> {
        self.send_acked(batch, Acks::none())
    }

    /// [`Permit::send`] with the batch's acknowledgements, which travel beside it. When the
    /// batch is handed back its acks are dropped unsettled (the hand-over is lost).
    pub fn send_acked(self, batch: T, acks: Acks) -> Result<(), (Closed, T)> {
        self.tx
            .send(Slot {
                batch,
                acks,
                _units: self.units,
            })
            .map_err(|e| (Closed, e.0.batch))
    }
}

impl<T: Items> Sender<T> {
    /// The units a batch of `items` items reserves.
    fn weight(&self, items: usize) -> u32 {
        // Capacity is at most MAX_CAPACITY = u32::MAX.
        items.clamp(1, self.capacity) as u32
    }

    /// Waits for room for a batch of `items` items and reserves it.
    pub async fn reserve(&self, items: usize) -> Result<Permit<T>, Closed> {
        let units = self
            .units
            .clone()
            .acquire_many_owned(self.weight(items))
            .await
            .map_err(|_| Closed)?;
        if self.tx.is_closed() {
            return Err(Closed);
        }
        Ok(Permit {
            tx: self.tx.clone(),
            units,
        })
    }

    /// Reserves room for a batch of `items` items if there is room now.
    pub fn try_reserve(&self, items: usize) -> Result<Permit<T>, TryReserveError> {
        if self.tx.is_closed() {
            return Err(TryReserveError::Closed);
        }
        let units = self
            .units
            .clone()
            .try_acquire_many_owned(self.weight(items))
            .map_err(|e| match e {
                TryAcquireError::NoPermits => TryReserveError::Full,
                TryAcquireError::Closed => TryReserveError::Closed,
            })?;
        Ok(Permit {
            tx: self.tx.clone(),
            units,
        })
    }

    /// Waits for room, then sends `batch`. On [`Closed`] the batch is handed back.
    pub async fn send(&self, batch: T) -> Result<(), (Closed, T)> {
        self.send_acked(batch, Acks::none()).await
    }

    /// [`Sender::send`] with the batch's acknowledgements ([`Permit::send_acked`]).
    pub async fn send_acked(&self, batch: T, acks: Acks) -> Result<(), (Closed, T)> {
        match self.reserve(batch.items()).await {
            Ok(permit) => permit.send_acked(batch, acks),
            Err(e) => Err((e, batch)),
        }
    }

    /// Capacity in items.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items in the channel or reserved for batches about to be sent.
    pub fn len(&self) -> usize {
        self.capacity.saturating_sub(self.units.available_permits())
    }

    /// True when nothing is in the channel or reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the receiver is closed or gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct Receiver<T = Batch> {
    rx: mpsc::UnboundedReceiver<Slot<T>>,
    units: Arc<Semaphore>,
    capacity: usize,
}

impl<T> Receiver<T> {
    /// The next batch, waiting for one; `None` once every sender is gone and the channel is
    /// empty. Taking a batch out gives its room back to the senders.
    ///
    /// The batch's acknowledgements are dropped unsettled (marked lost): a stage that passes
    /// data on uses [`Receiver::recv_acked`].
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|slot| slot.batch)
    }

    /// [`Receiver::recv`] with the batch's acknowledgements, for the stage to pass on with
    /// what it makes of the batch, or to settle.
    pub async fn recv_acked(&mut self) -> Option<(T, Acks)> {
        self.rx.recv().await.map(|slot| (slot.batch, slot.acks))
    }

    /// The next batch if one is waiting now (its acks dropped, as [`Receiver::recv`]).
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok().map(|slot| slot.batch)
    }

    /// [`Receiver::try_recv`] with the batch's acknowledgements.
    pub fn try_recv_acked(&mut self) -> Option<(T, Acks)> {
        self.rx.try_recv().ok().map(|slot| (slot.batch, slot.acks))
    }

    /// Stops the channel: senders waiting for room and later sends get [`Closed`]; what is
    /// already in the channel can still be received.
    pub fn close(&mut self) {
        self.units.close();
        self.rx.close();
    }

    /// Items in the channel or reserved by senders.
    pub fn len(&self) -> usize {
        self.capacity.saturating_sub(self.units.available_permits())
    }

    /// True when nothing is in the channel or reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in items.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Wake senders waiting for room: nobody will make any.
        self.units.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn spans(n: usize) -> Batch {
        Batch::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("s{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn capacity_is_counted_in_items_not_batches() {
        let (tx, mut rx) = channel::<Batch>(10);
        tx.try_reserve(4).unwrap().send(spans(4)).unwrap();
        tx.try_reserve(6).unwrap().send(spans(6)).unwrap();
        assert_eq!(tx.len(), 10);
        // Two batches fill it: even a one-span batch has no room.
        assert_eq!(tx.try_reserve(1).unwrap_err(), TryReserveError::Full);
        assert_eq!(rx.recv().await.unwrap().item_count(), 4);
        assert_eq!(rx.len(), 6, "taking a batch out gives its items back");
        tx.try_reserve(4)
            .expect("room for 4 again")
            .send(spans(4))
            .unwrap();
        assert_eq!(tx.try_reserve(1).unwrap_err(), TryReserveError::Full);
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_channel_passes_alone() {
        let (tx, mut rx) = channel(5);
        tx.send(spans(2)).await.unwrap();
        // 50 items > capacity 5: waits for the channel to empty, then takes all of it.
        let big = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(spans(50)).await.map_err(|(e, _)| e) }
        });
        assert_eq!(rx.recv().await.unwrap().item_count(), 2);
        big.await.unwrap().unwrap();
        assert_eq!(tx.len(), 5);
        assert_eq!(rx.recv().await.unwrap().item_count(), 50);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn empty_batches_still_take_a_slot() {
        let (tx, _rx) = channel(2);
        tx.try_reserve(0).unwrap().send(spans(0)).unwrap();
        tx.try_reserve(0).unwrap().send(spans(0)).unwrap();
        assert_eq!(tx.try_reserve(0).unwrap_err(), TryReserveError::Full);
    }

    /// Polls `fut` once, registering it with whatever it waits on.
    async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx)))
            .await
    }

    #[tokio::test]
    async fn waiting_senders_keep_their_order() {
        let (tx, mut rx) = channel(10);
        tx.send(spans(5)).await.unwrap();
        tx.send(spans(5)).await.unwrap();
        // A large batch queues first, then a small one.
        let mut big = Box::pin(tx.send(spans(8)));
        let mut small = Box::pin(tx.send(spans(1)));
        assert!(poll_once(&mut big).await.is_pending());
        assert!(poll_once(&mut small).await.is_pending());
        // 5 items of room: enough for the small batch, but it must not overtake the large one.
        assert_eq!(rx.recv().await.unwrap().item_count(), 5);
        assert!(
            poll_once(&mut small).await.is_pending(),
            "the small batch overtook"
        );
        assert!(poll_once(&mut big).await.is_pending());
        assert_eq!(rx.recv().await.unwrap().item_count(), 5);
        assert!(poll_once(&mut big).await.is_ready());
        assert!(poll_once(&mut small).await.is_ready());
        assert_eq!(rx.recv().await.unwrap().item_count(), 8);
        assert_eq!(rx.recv().await.unwrap().item_count(), 1);
    }

    #[tokio::test]
    async fn dropping_the_receiver_fails_waiting_and_later_senders() {
        let (tx, rx) = channel(1);
        tx.send(spans(1)).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move {
                tx.send(spans(1))
                    .await
                    .map_err(|(e, b)| (e, b.item_count()))
            }
        });
        drop(rx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting sender is woken")
            .unwrap();
        assert_eq!(got, Err((Closed, 1)), "the batch is handed back");
        assert_eq!(tx.try_reserve(1).unwrap_err(), TryReserveError::Closed);
        assert!(tx.is_closed());
    }

    #[tokio::test]
    async fn the_receiver_drains_after_every_sender_is_gone() {
        let (tx, mut rx) = channel(100);
        tx.send(spans(3)).await.unwrap();
        tx.send(spans(4)).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap().item_count(), 3);
        assert_eq!(rx.recv().await.unwrap().item_count(), 4);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_permit_used_after_the_receiver_closed_hands_the_batch_back() {
        let (tx, mut rx) = channel::<Batch>(10);
        let permit = tx.try_reserve(3).unwrap();
        rx.close();
        let (e, back) = permit.send(spans(3)).unwrap_err();
        assert_eq!((e, back.item_count()), (Closed, 3));
    }

    #[tokio::test]
    async fn close_keeps_what_is_queued_and_refuses_more() {
        let (tx, mut rx) = channel(100);
        tx.send(spans(3)).await.unwrap();
        rx.close();
        assert!(tx.send(spans(1)).await.is_err());
        assert_eq!(rx.try_recv().unwrap().item_count(), 3);
        assert!(rx.try_recv().is_none());
    }
}
