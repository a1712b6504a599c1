//! End-to-end acknowledgement: a source that can read its data again (a tailed file) learns
//! when what it handed over is safe, so it can advance its checkpoint then and not before.
//!
//! A source takes an [`Acks`] for each hand-over from its [`AckSource`] and passes it with
//! the batch ([`Outputs::send_acked`](crate::Outputs::send_acked)). Every hop carries it
//! along with the data: the channels keep it beside the batch, a processor that merges
//! batches merges their acks, one that cuts a batch gives each piece a clone, a fan-out
//! gives each pipeline and each exporter a clone. The last holder of each clone *settles*
//! it ([`Acks::settle`]): the export queue does so once the batch was delivered or dropped
//! for a reason that retrying cannot change (counted: rejected, permanent, too large,
//! retries exhausted, queue full). A clone dropped without being settled — a batch refused
//! at hand-over, dropped at the shutdown deadline, or held by a task that was killed —
//! marks the hand-over *lost*.
//!
//! When every clone of a hand-over is gone, the source receives one [`Settled`] on its
//! channel, `delivered: true` when all were settled. A process killed outright sends
//! nothing: the source's checkpoint then still stands before everything unsettled, and a
//! restart reads it again (at most what was in flight repeats).
//!
//! Sources that cannot read again (network receivers) pass no acks: an empty [`Acks`] costs
//! no allocation and nothing is tracked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

/// The outcome of one hand-over, sent to its source once every holder is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The hand-over's id, as [`AckSource::hand_over`] returned it.
    pub id: u64,
    /// True when every holder settled it (delivered, or dropped for a counted reason that
    /// retrying cannot change); false when some holder dropped it unsettled (lost to a
    /// shutdown or a failure: the source should read it again after a restart).
    pub delivered: bool,
}

/// One hand-over's shared state; its drop (the last holder gone) notifies the source.
#[derive(Debug)]
struct Token {
    id: u64,
    lost: AtomicBool,
    notify: mpsc::UnboundedSender<Settled>,
}

impl Drop for Token {
    fn drop(&mut self) {
        // The source may be gone (it stopped caring); then nobody needs to know.
        let _ = self.notify.send(Settled {
            id: self.id,
            delivered: !self.lost.load(Ordering::Acquire),
        });
    }
}

/// One holder's claim on a hand-over: settled explicitly, or lost when dropped.
#[derive(Debug)]
struct Claim(Option<Arc<Token>>);

impl Clone for Claim {
    fn clone(&self) -> Self {
        Claim(self.0.clone())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.lost.store(true, Ordering::Release);
        }
    }
}

/// The acknowledgements that travel with a batch: one claim per source hand-over whose items
/// it holds (several after a merge). Cloning makes a new claim on each (a fan-out, a cut);
/// dropping unsettled marks them lost; [`Acks::settle`] marks this holder done.
#[derive(Debug, Clone, Default)]
pub struct Acks(Vec<Claim>);

impl Acks {
    /// No acknowledgement (a source that cannot read again).
    pub fn none() -> Acks {
        Acks(Vec::new())
    }

    /// True when no hand-over is tracked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other`'s claims (two batches merged into one).
    pub fn merge(&mut self, mut other: Acks) {
        self.0.append(&mut other.0);
    }

    /// This holder is done: the items were delivered, or dropped for a counted reason that
    /// retrying cannot change.
    pub fn settle(mut self) {
        for claim in &mut self.0 {
            // Released without marking lost; the token notifies once its last claim goes.
            claim.0.take();
        }
    }
}

/// Where a source takes the [`Acks`] of its hand-overs; the matching receiver gets one
/// [`Settled`] per hand-over.
#[derive(Debug)]
pub struct AckSource {
    next_id: u64,
    notify: mpsc::UnboundedSender<Settled>,
}

impl AckSource {
    /// A source and the channel its outcomes arrive on.
    pub fn new() -> (AckSource, mpsc::UnboundedReceiver<Settled>) {
        let (notify, rx) = mpsc::unbounded_channel();
        (AckSource { next_id: 0, notify }, rx)
    }

    /// The id and acks of the next hand-over. Ids count up from 0.
    pub fn hand_over(&mut self) -> (u64, Acks) {
        let id = self.next_id;
        self.next_id += 1;
        let token = Arc::new(Token {
            id,
            lost: AtomicBool::new(false),
            notify: self.notify.clone(),
        });
        (id, Acks(vec![Claim(Some(token))]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_once_every_clone_is_settled() {
        let (mut src, mut rx) = AckSource::new();
        let (id, acks) = src.hand_over();
        let (a, b) = (acks.clone(), acks.clone());
        acks.settle();
        a.settle();
        assert!(rx.try_recv().is_err(), "one holder still has it");
        b.settle();
        assert_eq!(
            rx.try_recv().unwrap(),
            Settled {
                id,
                delivered: true
            }
        );
    }

    #[test]
    fn a_clone_dropped_unsettled_makes_it_lost() {
        let (mut src, mut rx) = AckSource::new();
        let (id, acks) = src.hand_over();
        let lost = acks.clone();
        acks.settle();
        drop(lost);
        assert_eq!(
            rx.try_recv().unwrap(),
            Settled {
                id,
                delivered: false
            }
        );
    }

    #[test]
    fn merged_acks_settle_each_hand_over() {
        let (mut src, mut rx) = AckSource::new();
        let (a, mut acks) = src.hand_over();
        let (b, other) = src.hand_over();
        acks.merge(other);
        acks.settle();
        let mut got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        got.sort_by_key(|s| s.id);
        assert_eq!(
            got,
            vec![
                Settled {
                    id: a,
                    delivered: true
                },
                Settled {
                    id: b,
                    delivered: true
                }
            ]
        );
        assert!(Acks::none().is_empty());
    }
}
