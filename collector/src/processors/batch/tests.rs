use std::time::Duration;

use hpcotel_core::channel;
use hpcotel_core::{Batch, ComponentKind, Processor, Telemetry};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;

fn spans(names: &[&str]) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: names
                .iter()
                .map(|n| Span {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn names(b: &Batch) -> Vec<String> {
    let Batch::Traces(rs) = b else {
        panic!("not traces")
    };
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn start(
    config: Config,
) -> (
    channel::Sender,
    channel::Receiver,
    tokio::task::JoinHandle<()>,
) {
    let (in_tx, in_rx) = channel::channel(1000);
    let (out_tx, out_rx) = channel::channel(1000);
    let stats = Telemetry::default().register(ComponentKind::Processor, "batch".parse().unwrap());
    let task = tokio::spawn(async move {
        Box::new(BatchProcessor::new(config))
            .run(in_rx, out_tx, stats)
            .await
            .unwrap()
    });
    (in_tx, out_rx, task)
}

#[tokio::test]
async fn sends_when_size_is_reached_keeping_order() {
    let (tx, mut rx, _task) = start(Config {
        send_batch_size: 3,
        timeout: Duration::from_secs(3600),
    });
    tx.send(spans(&["a", "b"])).await.unwrap();
    tx.send(spans(&["c"])).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&out), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn sends_a_partial_batch_when_the_timeout_passes() {
    let (tx, mut rx, _task) = start(Config {
        send_batch_size: 100,
        timeout: Duration::from_millis(200),
    });
    let t0 = tokio::time::Instant::now();
    tx.send(spans(&["only"])).await.unwrap();
    // Paused clock: the runtime advances virtual time only when every task is idle, so
    // this observes the timer path deterministically, not a race.
    let out = rx.recv().await.unwrap();
    assert_eq!(names(&out), ["only"]);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "sent before the timeout"
    );
}

#[tokio::test]
async fn flushes_what_it_holds_when_input_closes() {
    let (tx, mut rx, task) = start(Config {
        send_batch_size: 100,
        timeout: Duration::from_secs(3600),
    });
    tx.send(spans(&["x"])).await.unwrap();
    tx.send(spans(&["y", "z"])).await.unwrap();
    drop(tx);
    task.await.unwrap();
    let out = rx.recv().await.unwrap();
    assert_eq!(names(&out), ["x", "y", "z"]);
    assert!(
        rx.recv().await.is_none(),
        "output must close after the flush"
    );
}

#[test]
fn config_rejects_unknown_keys_and_reads_durations() {
    let c: Config = serde_yaml::from_str("send_batch_size: 10\ntimeout: 1s").unwrap();
    assert_eq!(c.timeout, Duration::from_secs(1));
    let e = serde_yaml::from_str::<Config>("send_batch_sise: 10").unwrap_err();
    assert!(
        e.to_string().contains("unknown field `send_batch_sise`"),
        "{e}"
    );
}
