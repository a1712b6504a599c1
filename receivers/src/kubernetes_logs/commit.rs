//! Offsets advance only once what was read is safe: each hand-over to the pipelines carries
//! acknowledgements ([`hpcotel_core::ack`]) and the offsets the tailer had after reading it;
//! the checkpoint moves to a hand-over's offsets once it and every hand-over before it were
//! settled by the exporters (delivered, or dropped for a counted reason that retrying cannot
//! change). So a `kill -9` repeats at most what was in flight, and loses nothing.
//!
//! A hand-over reported lost (dropped at the shutdown deadline, refused because the pipeline
//! closed) freezes the checkpoint where it stands: after a restart everything from there is
//! read again.

use std::collections::VecDeque;
use std::time::Duration;

use hpcotel_core::{AckSource, Acks, Settled};
use tokio::sync::mpsc;

use super::checkpoint::Offsets;

/// One hand-over not yet known safe, with the offsets that become safe with it.
#[derive(Debug)]
struct Pending {
    /// `None`: a step that read nothing to hand over (its offsets are safe once everything
    /// before is).
    id: Option<u64>,
    offsets: Offsets,
    done: bool,
}

/// Tracks hand-overs in order and the offsets that are safe to checkpoint.
#[derive(Debug)]
pub(super) struct Committer {
    source: AckSource,
    settled: mpsc::UnboundedReceiver<Settled>,
    pending: VecDeque<Pending>,
    /// The latest safe offsets.
    safe: Offsets,
    /// `safe` changed since it was last taken for writing.
    dirty: bool,
    /// A hand-over was lost: the checkpoint stays where it is.
    frozen: bool,
}

impl Committer {
    /// A committer whose safe offsets start at `resumed` (the checkpoint read at start).
    pub(super) fn new(resumed: Offsets) -> Committer {
        let (source, settled) = AckSource::new();
        Committer {
            source,
            settled,
            pending: VecDeque::new(),
            safe: resumed,
            dirty: false,
            frozen: false,
        }
    }

    /// The acks of a hand-over whose records leave the tailer at `offsets`.
    pub(super) fn hand_over(&mut self, offsets: Offsets) -> Acks {
        if self.frozen {
            return Acks::none();
        }
        let (id, acks) = self.source.hand_over();
        self.pending.push_back(Pending {
            id: Some(id),
            offsets,
            done: false,
        });
        acks
    }

    /// A step that handed nothing over (lines dropped by selection or the rate limit, bytes
    /// held for a block still open) left the tailer at `offsets`.
    pub(super) fn read_nothing(&mut self, offsets: Offsets) {
        if self.frozen {
            return;
        }
        match self.pending.back_mut() {
            None => self.advance_to(offsets),
            // Coalesce with a previous step that handed nothing over.
            Some(last) if last.id.is_none() => last.offsets = offsets,
            Some(_) => self.pending.push_back(Pending {
                id: None,
                offsets,
                done: true,
            }),
        }
    }

    /// Takes in the outcomes that arrived, without waiting.
    pub(super) fn poll(&mut self) {
        while let Ok(s) = self.settled.try_recv() {
            self.note(s);
        }
        self.advance();
    }

    /// Waits, at most `wait`, until every hand-over is settled (at shutdown, so the last
    /// checkpoint covers what the pipelines delivered while they drained). Calls `on_advance`
    /// with the safe offsets each time they move, so a shutdown cut short still leaves the
    /// best checkpoint. Returns the hand-overs still in flight.
    pub(super) async fn settle_all(
        &mut self,
        wait: Duration,
        mut on_advance: impl FnMut(&Offsets),
    ) -> usize {
        let deadline = tokio::time::Instant::now() + wait;
        self.poll();
        while self.in_flight() > 0 && !self.frozen {
            if let Some(o) = self.take_dirty() {
                on_advance(o);
            }
            match tokio::time::timeout_at(deadline, self.settled.recv()).await {
                Ok(Some(s)) => {
                    self.note(s);
                    self.advance();
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.in_flight()
    }

    /// Hand-overs not yet settled.
    pub(super) fn in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| p.id.is_some() && !p.done)
            .count()
    }

    /// True once a hand-over was lost (the checkpoint no longer moves).
    pub(super) fn frozen(&self) -> bool {
        self.frozen
    }

    /// The safe offsets, when they changed since last taken.
    pub(super) fn take_dirty(&mut self) -> Option<&Offsets> {
        if std::mem::take(&mut self.dirty) {
            Some(&self.safe)
        } else {
            None
        }
    }

    /// The safe offsets.
    #[cfg(test)]
    pub(super) fn safe(&self) -> &Offsets {
        &self.safe
    }

    fn note(&mut self, s: Settled) {
        if !s.delivered {
            if !self.frozen {
                tracing::warn!(
                    "kubernetes_logs: records handed over were not delivered; the checkpoint \
                     stays before them, so they are read again after a restart"
                );
            }
            self.frozen = true;
            self.pending.clear();
            return;
        }
        if let Some(p) = self.pending.iter_mut().find(|p| p.id == Some(s.id)) {
            p.done = true;
        }
    }

    fn advance(&mut self) {
        let mut last = None;
        while self.pending.front().is_some_and(|p| p.done) {
            last = self.pending.pop_front();
        }
        if let Some(p) = last {
            self.advance_to(p.offsets);
        }
    }

    fn advance_to(&mut self, offsets: Offsets) {
        if offsets != self.safe {
            self.safe = offsets;
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::checkpoint::Entry;
    use super::*;

    fn at(offset: u64) -> Offsets {
        Offsets {
            version: 1,
            files: vec![Entry {
                path: "/var/log/pods/ns_p_u/c/0.log".into(),
                dev: 1,
                ino: 2,
                fingerprint: "00".into(),
                offset,
                read: offset,
            }],
        }
    }

    fn offset(c: &Committer) -> u64 {
        c.safe().files[0].offset
    }

    #[test]
    fn the_checkpoint_moves_only_over_a_settled_prefix() {
        let mut c = Committer::new(at(0));
        let a = c.hand_over(at(100));
        let b = c.hand_over(at(200));
        c.read_nothing(at(250));
        b.settle();
        c.poll();
        assert_eq!(offset(&c), 0, "the first hand-over is still in flight");
        assert!(c.take_dirty().is_none());
        a.settle();
        c.poll();
        assert_eq!(
            offset(&c),
            250,
            "both settled, and the step after them read nothing"
        );
        assert_eq!(c.take_dirty().map(|o| o.files[0].offset), Some(250));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_lost_hand_over_freezes_the_checkpoint() {
        let mut c = Committer::new(at(0));
        let a = c.hand_over(at(100));
        let b = c.hand_over(at(200));
        drop(a);
        b.settle();
        c.poll();
        assert!(c.frozen());
        assert_eq!(offset(&c), 0);
        c.read_nothing(at(300));
        assert!(c.hand_over(at(400)).is_empty());
        assert_eq!(offset(&c), 0);
    }

    #[tokio::test]
    async fn settle_all_waits_for_the_last_delivery() {
        let mut c = Committer::new(at(0));
        let a = c.hand_over(at(100));
        let later = tokio::spawn(async move {
            tokio::task::yield_now().await;
            a.settle();
        });
        let mut seen = Vec::new();
        let left = c
            .settle_all(Duration::from_secs(10), |o| seen.push(o.files[0].offset))
            .await;
        later.await.unwrap();
        assert_eq!(left, 0);
        assert_eq!(offset(&c), 100);
        // Nothing was written while waiting: the offsets moved once, at the end.
        assert_eq!(c.take_dirty().map(|o| o.files[0].offset), Some(100));
        assert!(seen.is_empty());
    }
}
