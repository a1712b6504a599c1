//! The shutdown summary: what happened to what was accepted, over the whole run, from the
//! components' counters.
//!
//! Every item a receiver accepts ends delivered by each exporter of its pipelines, or dropped
//! by a processor or an exporter with a reason (`permanent`, `retries_exhausted`,
//! `queue_full`, `rejected`, `too_large`, `shutdown`, ...): every drop is counted where it
//! happens (`hpcotel.processor.dropped`, `hpcotel.exporter.dropped`). The summary reads those
//! counters once the pipelines have drained, logs one line per receiver and exporter with its
//! totals and one WARN line per (component, signal, reason) that dropped anything, and is what
//! the exit code follows: 0 only when nothing was dropped.

use hpcotel_core::{ComponentKind, Counter, Signal, Telemetry};
use tracing::{info, warn};

/// Items one component dropped for one reason over the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `processor` or `exporter`.
    pub kind: ComponentKind,
    /// The component's config id, e.g. `otlp/tempo`.
    pub component: String,
    /// The signal of the items.
    pub signal: Signal,
    /// Why, as in `hpcotel.reason`.
    pub reason: String,
    /// How many items.
    pub items: u64,
}

/// Every (component, signal, reason) that dropped items, sorted by kind, component, signal
/// and reason. Items dropped without a reason (none should be) are listed with reason
/// `unknown`, so that they still count.
pub fn dropped(telemetry: &Telemetry) -> Vec<Dropped> {
    let mut out = Vec::new();
    for c in telemetry.components() {
        if c.kind() == ComponentKind::Receiver {
            continue;
        }
        let mut explained = [0u64; 3];
        for r in c.reason_counts(Counter::Dropped) {
            explained[r.signal.index()] += r.items;
            out.push(Dropped {
                kind: c.kind(),
                component: c.id().to_string(),
                signal: r.signal,
                reason: r.reason,
                items: r.items,
            });
        }
        for signal in Signal::ALL {
            let unexplained = c
                .get(signal, Counter::Dropped)
                .saturating_sub(explained[signal.index()]);
            if unexplained > 0 {
                out.push(Dropped {
                    kind: c.kind(),
                    component: c.id().to_string(),
                    signal,
                    reason: "unknown".to_owned(),
                    items: unexplained,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.kind, &a.component, a.signal, &a.reason).cmp(&(
            b.kind,
            &b.component,
            b.signal,
            &b.reason,
        ))
    });
    out
}

/// Logs the summary of the run: per receiver and signal what it accepted (and refused, which
/// its clients were told), per exporter and signal what it sent and dropped, then one WARN
/// line per entry of `dropped`.
pub fn log(telemetry: &Telemetry, dropped: &[Dropped]) {
    for c in telemetry.components() {
        for signal in Signal::ALL {
            match c.kind() {
                ComponentKind::Receiver => {
                    let accepted = c.get(signal, Counter::Accepted);
                    let refused = c.get(signal, Counter::Refused);
                    if accepted + refused > 0 {
                        info!(receiver = %c.id(), %signal, accepted, refused,
                            "shutdown summary: received");
                    }
                }
                ComponentKind::Exporter => {
                    let sent = c.get(signal, Counter::Sent);
                    let dropped = c.get(signal, Counter::Dropped);
                    if sent + dropped > 0 {
                        info!(exporter = %c.id(), %signal, sent, dropped,
                            "shutdown summary: exported");
                    }
                }
                ComponentKind::Processor => {}
            }
        }
    }
    for d in dropped {
        warn!(kind = %d.kind.as_str(), component = %d.component, signal = %d.signal,
            reason = %d.reason, items = d.items, "shutdown summary: accepted items dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_of_the_run_is_listed_by_component_signal_and_reason() {
        let t = Telemetry::default();
        let rx = t.register(ComponentKind::Receiver, "otlp".parse().unwrap());
        rx.add(Signal::Traces, Counter::Accepted, 10);
        rx.add_with_reason(Signal::Traces, Counter::Refused, "invalid", 2);
        let ex = t.register(ComponentKind::Exporter, "otlp/tempo".parse().unwrap());
        ex.add(Signal::Traces, Counter::Sent, 8);
        ex.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 1);
        ex.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 1);
        ex.add_with_reason(Signal::Logs, Counter::Dropped, "shutdown", 3);
        let pr = t.register(ComponentKind::Processor, "enrich".parse().unwrap());
        pr.add(Signal::Metrics, Counter::Dropped, 4);
        let clean = t.register(ComponentKind::Exporter, "debug".parse().unwrap());
        clean.add(Signal::Traces, Counter::Sent, 10);

        let line = |kind, component: &str, signal, reason: &str, items| Dropped {
            kind,
            component: component.to_owned(),
            signal,
            reason: reason.to_owned(),
            items,
        };
        assert_eq!(
            dropped(&t),
            [
                line(
                    ComponentKind::Processor,
                    "enrich",
                    Signal::Metrics,
                    "unknown",
                    4
                ),
                line(
                    ComponentKind::Exporter,
                    "otlp/tempo",
                    Signal::Traces,
                    "too_large",
                    2
                ),
                line(
                    ComponentKind::Exporter,
                    "otlp/tempo",
                    Signal::Logs,
                    "shutdown",
                    3
                ),
            ],
            "refusals are not drops: the client was told"
        );
    }

    #[test]
    fn a_run_without_drops_lists_none() {
        let t = Telemetry::default();
        let ex = t.register(ComponentKind::Exporter, "otlp".parse().unwrap());
        ex.add(Signal::Traces, Counter::Sent, 5);
        assert_eq!(dropped(&t), []);
    }
}
