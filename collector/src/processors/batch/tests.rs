use std::time::Duration;

use hpcotel_core::channel;
use hpcotel_core::{Batch, ComponentKind, Processor, Telemetry};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
};
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
        send_batch_max_size: 3,
        timeout: Duration::from_secs(3600),
        ..Config::default()
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
        send_batch_max_size: 100,
        timeout: Duration::from_millis(200),
        ..Config::default()
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
        send_batch_max_size: 100,
        timeout: Duration::from_secs(3600),
        ..Config::default()
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

/// Spans named `{prefix}{i}` for `i` in `range`.
fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Batch {
    let names: Vec<String> = range.map(|i| format!("{prefix}{i}")).collect();
    spans(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Closes the input, waits for the processor to finish and returns everything it sent, as
/// span names per batch.
async fn close_and_collect(
    tx: channel::Sender,
    mut rx: channel::Receiver,
    task: tokio::task::JoinHandle<()>,
) -> Vec<Vec<String>> {
    drop(tx);
    task.await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.push(names(&b));
    }
    out
}

#[tokio::test]
async fn cuts_merged_batches_to_send_batch_max_size_keeping_order() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(spans(&["a", "b"])).await.unwrap();
    tx.send(spans(&["c", "d", "e", "f", "g"])).await.unwrap();
    tx.send(spans(&["h"])).await.unwrap();
    // 2 held + 5 = 7: a full batch of 4, then the remainder of 3 reaches send_batch_size
    // and goes too; "h" is held until the input closes.
    assert_eq!(
        close_and_collect(tx, rx, task).await,
        [vec!["a", "b", "c", "d"], vec!["e", "f", "g"], vec!["h"],]
    );
}

#[tokio::test]
async fn cuts_a_single_batch_larger_than_the_max_into_max_sized_batches() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(numbered("s", 0..13)).await.unwrap();
    // 13 = 4 + 4 + 4 + 1: the 1 left over is below send_batch_size, so it is held.
    tx.send(numbered("t", 0..2)).await.unwrap();
    let out = close_and_collect(tx, rx, task).await;
    assert_eq!(
        out,
        [
            vec!["s0", "s1", "s2", "s3"],
            vec!["s4", "s5", "s6", "s7"],
            vec!["s8", "s9", "s10", "s11"],
            vec!["s12", "t0", "t1"],
        ]
    );
}

#[tokio::test]
async fn a_batch_of_exactly_the_max_goes_whole() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(numbered("s", 0..4)).await.unwrap();
    tx.send(numbered("t", 0..8)).await.unwrap();
    assert_eq!(
        close_and_collect(tx, rx, task).await,
        [
            vec!["s0", "s1", "s2", "s3"],
            vec!["t0", "t1", "t2", "t3"],
            vec!["t4", "t5", "t6", "t7"],
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_remainder_of_a_cut_waits_its_own_timeout() {
    let (tx, mut rx, _task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::from_millis(200),
        ..Config::default()
    });
    let t0 = tokio::time::Instant::now();
    tx.send(spans(&["a"])).await.unwrap();
    // Paused clock: this advances virtual time only, deterministically.
    tokio::time::sleep(Duration::from_millis(150)).await;
    tx.send(spans(&["b", "c", "d", "e", "f"])).await.unwrap();
    let first = rx.recv().await.unwrap();
    assert_eq!(names(&first), ["a", "b", "c", "d"]);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(150),
        "sent on size, at once"
    );
    // "e" and "f" arrived at 150ms: they are sent at 150 + 200ms, not at "a"'s 200ms.
    let rest = rx.recv().await.unwrap();
    assert_eq!(names(&rest), ["e", "f"]);
    assert_eq!(t0.elapsed(), Duration::from_millis(350));
}

#[tokio::test]
async fn zero_timeout_passes_batches_through_cut_to_the_max() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::ZERO,
        ..Config::default()
    });
    tx.send(spans(&["a"])).await.unwrap();
    tx.send(numbered("s", 0..9)).await.unwrap();
    tx.send(spans(&["b", "c"])).await.unwrap();
    assert_eq!(
        close_and_collect(tx, rx, task).await,
        [
            vec!["a"],
            vec!["s0", "s1", "s2", "s3"],
            vec!["s4", "s5", "s6", "s7"],
            vec!["s8"],
            vec!["b", "c"],
        ]
    );
}

#[tokio::test]
async fn zero_max_size_sends_merged_batches_whole() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 0,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(spans(&["a", "b"])).await.unwrap();
    tx.send(numbered("s", 0..5)).await.unwrap();
    tx.send(numbered("t", 0..10)).await.unwrap();
    let out = close_and_collect(tx, rx, task).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], ["a", "b", "s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(out[1], names(&numbered("t", 0..10)));
}

#[tokio::test]
async fn timeout_only_batching_still_cuts_to_the_max() {
    let (tx, rx, task) = start(Config {
        send_batch_size: 0,
        send_batch_max_size: 4,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(spans(&["a", "b", "c"])).await.unwrap();
    tx.send(spans(&["d", "e", "f", "g", "h", "i"]))
        .await
        .unwrap();
    tx.send(spans(&["j", "k"])).await.unwrap();
    // 9 held: two full batches of 4 go at once; "i" then waits, and "j", "k" join it.
    assert_eq!(
        close_and_collect(tx, rx, task).await,
        [
            vec!["a", "b", "c", "d"],
            vec!["e", "f", "g", "h"],
            vec!["i", "j", "k"],
        ]
    );
}

#[tokio::test]
async fn cuts_metrics_inside_a_metric_keeping_its_metadata() {
    let gauge = |points: std::ops::Range<u64>| Metric {
        name: "g".into(),
        unit: "1".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points
                .map(|t| NumberDataPoint {
                    time_unix_nano: t,
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    };
    let batch = |points: std::ops::Range<u64>| {
        Batch::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge(points)],
                ..Default::default()
            }],
            ..Default::default()
        }])
    };
    let (tx, mut rx, task) = start(Config {
        send_batch_size: 2,
        send_batch_max_size: 2,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(batch(0..5)).await.unwrap();
    drop(tx);
    task.await.unwrap();
    for want in [batch(0..2), batch(2..4), batch(4..5)] {
        assert_eq!(rx.recv().await, Some(want));
    }
    assert_eq!(rx.recv().await, None);
}

#[test]
fn send_batch_max_size_defaults_to_send_batch_size() {
    let parse = |yaml: &str| serde_yaml::from_str::<Config>(yaml).unwrap();
    assert_eq!(parse("{}"), Config::default());
    assert_eq!(
        Config::default().send_batch_max_size,
        DEFAULT_SEND_BATCH_MAX_SIZE
    );
    assert_eq!(DEFAULT_SEND_BATCH_MAX_SIZE, DEFAULT_SEND_BATCH_SIZE);
    assert_eq!(parse("send_batch_size: 100000").send_batch_max_size, 100000);
    assert_eq!(parse("send_batch_size: 10").send_batch_max_size, 10);
    assert_eq!(parse("send_batch_size: 0").send_batch_max_size, 0);
    assert_eq!(parse("send_batch_max_size: 0").send_batch_max_size, 0);
    assert_eq!(
        parse("send_batch_max_size: 10000").send_batch_max_size,
        10000
    );
    assert_eq!(
        parse("send_batch_size: 10\nsend_batch_max_size: 10").send_batch_max_size,
        10
    );
    assert_eq!(
        parse("send_batch_size: 0\nsend_batch_max_size: 5").send_batch_max_size,
        5
    );
    // What print-config writes reads back the same.
    let c = parse("send_batch_size: 500\ntimeout: 1s");
    let yaml = serde_yaml::to_string(&c).unwrap();
    assert!(yaml.contains("send_batch_max_size: 500"), "{yaml}");
    assert_eq!(parse(&yaml), c);
}

#[test]
fn send_batch_max_size_below_send_batch_size_is_a_config_error() {
    let err = |yaml: &str| {
        serde_yaml::from_str::<Config>(yaml)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("send_batch_max_size: 100")
            .starts_with("send_batch_max_size (100) must be 0 or at least send_batch_size (8192)"),
        "{}",
        err("send_batch_max_size: 100")
    );
    assert!(
        err("send_batch_size: 10\nsend_batch_max_size: 9")
            .starts_with("send_batch_max_size (9) must be 0 or at least send_batch_size (10)")
    );
    let e = err("send_batch_max_size: -1");
    assert!(e.contains("send_batch_max_size"), "{e}");
}

#[test]
fn hpcotel_validate_reports_a_bad_send_batch_max_size_at_load() {
    let text = "
receivers:
  otlp:
processors:
  batch:
    send_batch_size: 1000
    send_batch_max_size: 999
exporters:
  debug:
service:
  pipelines:
    traces: { receivers: [otlp], processors: [batch], exporters: [debug] }
";
    let e = crate::config::Config::parse(text, "t.yaml", &|_: &str| None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml: processors.batch: send_batch_max_size (999) must be 0 or at least \
         send_batch_size (1000)"
    );
}

/// One span named `name` carrying a `payload` attribute of `bytes` bytes.
fn sized(name: &str, bytes: usize) -> Batch {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: name.into(),
                attributes: vec![KeyValue {
                    key: "payload".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(bytes))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Closes the input and returns every batch sent, with its request length.
async fn close_and_collect_batches(
    tx: channel::Sender,
    mut rx: channel::Receiver,
    task: tokio::task::JoinHandle<()>,
) -> Vec<Batch> {
    drop(tx);
    task.await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.push(b);
    }
    out
}

#[tokio::test]
async fn five_1_mib_spans_go_out_in_batches_under_the_default_send_batch_max_bytes() {
    const MIB: usize = 1024 * 1024;
    let (tx, rx, task) = start(Config {
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    for i in 0..5 {
        tx.send(sized(&format!("s{i}"), MIB)).await.unwrap();
    }
    let out = close_and_collect_batches(tx, rx, task).await;
    let sent: Vec<(Vec<String>, usize)> = out.iter().map(|b| (names(b), b.encoded_len())).collect();
    let batches: Vec<Vec<String>> = sent.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        batches,
        [vec!["s0", "s1", "s2"], vec!["s3", "s4"]],
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .all(|(_, len)| *len <= DEFAULT_SEND_BATCH_MAX_BYTES),
        "{sent:?}"
    );
    const { assert!(DEFAULT_SEND_BATCH_MAX_BYTES < 4 * MIB) };
}

#[tokio::test]
async fn an_item_longer_than_send_batch_max_bytes_goes_on_alone_in_order() {
    let max = sized("a", 100).encoded_len() * 3;
    let (tx, rx, task) = start(Config {
        send_batch_max_bytes: max,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    tx.send(sized("a", 100)).await.unwrap();
    tx.send(sized("huge", 10 * max)).await.unwrap();
    tx.send(sized("b", 100)).await.unwrap();
    tx.send(sized("c", 100)).await.unwrap();
    let out = close_and_collect_batches(tx, rx, task).await;
    let got: Vec<Vec<String>> = out.iter().map(names).collect();
    assert_eq!(got, [vec!["a"], vec!["huge"], vec!["b", "c"]]);
    assert!(out[1].encoded_len() > max);
    assert!(out[0].encoded_len() <= max && out[2].encoded_len() <= max);
}

#[tokio::test]
async fn a_batch_cut_to_send_batch_max_size_is_also_cut_to_send_batch_max_bytes() {
    let one = sized("x", 100).encoded_len();
    let (tx, rx, task) = start(Config {
        send_batch_size: 4,
        send_batch_max_size: 4,
        // Two spans fit, three do not.
        send_batch_max_bytes: 2 * one + one / 2,
        timeout: Duration::from_secs(3600),
    });
    let mut batch = sized("s0", 100);
    for i in 1..6 {
        batch.append(sized(&format!("s{i}"), 100)).unwrap();
    }
    tx.send(batch).await.unwrap();
    let got = close_and_collect(tx, rx, task).await;
    assert_eq!(got, [vec!["s0", "s1"], vec!["s2", "s3"], vec!["s4", "s5"]]);
}

#[tokio::test]
async fn zero_send_batch_max_bytes_does_not_cut_by_size() {
    let (tx, rx, task) = start(Config {
        send_batch_max_bytes: 0,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    for i in 0..3 {
        tx.send(sized(&format!("s{i}"), 2 * 1024 * 1024))
            .await
            .unwrap();
    }
    let got = close_and_collect(tx, rx, task).await;
    assert_eq!(got, [vec!["s0", "s1", "s2"]]);
}

#[test]
fn send_batch_max_bytes_defaults_to_3_5_mib_and_reads_back() {
    let parse = |yaml: &str| serde_yaml::from_str::<Config>(yaml).unwrap();
    assert_eq!(
        parse("{}").send_batch_max_bytes,
        DEFAULT_SEND_BATCH_MAX_BYTES
    );
    assert_eq!(DEFAULT_SEND_BATCH_MAX_BYTES, 3_670_016);
    assert_eq!(parse("send_batch_max_bytes: 0").send_batch_max_bytes, 0);
    let c = parse("send_batch_max_bytes: 1000000");
    let yaml = serde_yaml::to_string(&c).unwrap();
    assert!(yaml.contains("send_batch_max_bytes: 1000000"), "{yaml}");
    assert_eq!(parse(&yaml), c);
    let e = serde_yaml::from_str::<Config>("send_batch_max_bytes: -1").unwrap_err();
    assert!(e.to_string().contains("send_batch_max_bytes"), "{e}");
}

#[tokio::test]
async fn acks_follow_merged_and_cut_items_and_settle_once_every_piece_is_settled() {
    let (tx, mut rx, task) = start(Config {
        send_batch_size: 3,
        send_batch_max_size: 4,
        timeout: Duration::from_secs(3600),
        ..Config::default()
    });
    let (mut source, mut settled) = hpcotel_core::AckSource::new();
    tx.send_acked(spans(&["a", "b"]), source.hand_over().1)
        .await
        .unwrap();
    tx.send_acked(spans(&["c", "d", "e", "f", "g"]), source.hand_over().1)
        .await
        .unwrap();
    drop(tx);
    task.await.unwrap();
    // [a b c d] and [e f g]: hand-over 0 is in the first, hand-over 1 in both.
    let (first, first_acks) = rx.recv_acked().await.unwrap();
    let (second, second_acks) = rx.recv_acked().await.unwrap();
    assert_eq!(
        (names(&first), names(&second)),
        (
            vec!["a".to_owned(), "b".into(), "c".into(), "d".into()],
            vec!["e".to_owned(), "f".into(), "g".into()]
        )
    );
    second_acks.settle();
    assert!(settled.try_recv().is_err(), "[a b c d] is not settled yet");
    first_acks.settle();
    let mut got: Vec<_> = std::iter::from_fn(|| settled.try_recv().ok()).collect();
    got.sort_by_key(|s| s.id);
    assert_eq!(
        got.iter().map(|s| (s.id, s.delivered)).collect::<Vec<_>>(),
        vec![(0, true), (1, true)]
    );
}
