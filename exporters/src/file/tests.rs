use hpcotel_core::{Batch, ExportError, Exporter, Signal};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;

fn spans(tag: u8, payload: usize) -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![0xab, tag, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                span_id: vec![0xcd, tag, 0, 0, 0, 0, 0, 2],
                name: format!("step-{tag}"),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                attributes: vec![KeyValue {
                    key: "payload".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(payload))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn metrics() -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "hw.gpu.utilization".into(),
                unit: "1".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        value: Some(number_data_point::Value::AsDouble(0.75)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        path: dir.join("out"),
        ..Config::default()
    }
}

#[tokio::test]
async fn writes_otlp_json_lines_that_decode_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exporter = FileExporter::new(&config(tmp.path())).unwrap();
    assert!(exporter.dir().is_dir(), "the directory is created");
    exporter.export(&Batch::Traces(spans(1, 10))).await.unwrap();
    exporter.export(&Batch::Traces(spans(2, 10))).await.unwrap();
    exporter.export(&Batch::Metrics(metrics())).await.unwrap();
    exporter.shutdown().await.unwrap();

    let text = std::fs::read_to_string(active_file(exporter.dir(), Signal::Traces)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    // OTLP/JSON: lowerCamelCase keys and hex ids.
    assert!(
        lines[0].contains(r#""traceId":"ab010000000000000000000000000001""#),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(r#""spanId":"cd01000000000002""#),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#""resourceSpans""#) && lines[0].contains(r#""scopeSpans""#));
    for (line, tag) in lines.iter().zip([1u8, 2]) {
        let req: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
        assert_eq!(req.resource_spans, spans(tag, 10));
    }
    let text = std::fs::read_to_string(active_file(exporter.dir(), Signal::Metrics)).unwrap();
    let req: ExportMetricsServiceRequest = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(req.resource_metrics, metrics());
    assert!(!active_file(exporter.dir(), Signal::Logs).exists());
}

#[tokio::test]
async fn appends_to_existing_files_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    for tag in [1, 2] {
        let exporter = FileExporter::new(&config(tmp.path())).unwrap();
        exporter
            .export(&Batch::Traces(spans(tag, 10)))
            .await
            .unwrap();
        exporter.shutdown().await.unwrap();
    }
    let text =
        std::fs::read_to_string(active_file(&tmp.path().join("out"), Signal::Traces)).unwrap();
    assert_eq!(text.lines().count(), 2);
}

#[tokio::test]
async fn rotates_at_the_size_limit_keeping_max_files() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Config {
        max_file_size_mib: 1,
        max_files: 3,
        ..config(tmp.path())
    };
    let exporter = FileExporter::new(&c).unwrap();
    // Each line is a little over 400 KiB: two fit in 1 MiB, the third rotates.
    let payload = 400 * 1024;
    for tag in 1..=7u8 {
        exporter
            .export(&Batch::Traces(spans(tag, payload)))
            .await
            .unwrap();
    }
    exporter.shutdown().await.unwrap();
    let dir = exporter.dir();
    let tags = |n: usize| -> Vec<String> {
        std::fs::read_to_string(rotated_file(dir, Signal::Traces, n))
            .unwrap()
            .lines()
            .map(|l| {
                let req: ExportTraceServiceRequest = serde_json::from_str(l).unwrap();
                req.resource_spans[0].scope_spans[0].spans[0].name.clone()
            })
            .collect()
    };
    // Files hold [1,2] [3,4] [5,6] [7]; with max_files 3 the oldest ([1,2]) is gone.
    assert_eq!(tags(0), vec!["step-7"]);
    assert_eq!(tags(1), vec!["step-5", "step-6"]);
    assert_eq!(tags(2), vec!["step-3", "step-4"]);
    assert!(!rotated_file(dir, Signal::Traces, 3).exists());
    for n in 0..3 {
        let len = std::fs::metadata(rotated_file(dir, Signal::Traces, n))
            .unwrap()
            .len();
        assert!(len <= 1024 * 1024, "file {n} is {len} bytes");
    }
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[tokio::test]
async fn unwritable_directory_is_named_and_write_errors_are_retryable() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = FileExporter::new(&Config {
        path: file.join("sub"),
        ..Config::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "path: cannot create directory '{}'",
            file.join("sub").display()
        )
    );
    // The directory disappears after start: the write fails, retryably.
    let exporter = FileExporter::new(&config(tmp.path())).unwrap();
    std::fs::remove_dir_all(exporter.dir()).unwrap();
    match exporter.export(&Batch::Traces(spans(1, 1))).await {
        Err(ExportError::Retryable { reason, .. }) => {
            assert!(reason.starts_with("cannot open"), "{reason}")
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[test]
fn config_defaults_and_validation() {
    let c: Config = serde_yaml::from_str("path: /var/lib/hpcotel").unwrap();
    assert_eq!(c.path, std::path::PathBuf::from("/var/lib/hpcotel"));
    assert_eq!((c.max_file_size_mib, c.max_files), (64, 8));
    let e = serde_yaml::from_str::<Config>("max_files: 0").unwrap_err();
    assert!(e.to_string().contains("expected at least 1, got 0"), "{e}");
    let e = serde_yaml::from_str::<Config>("flush: 1s").unwrap_err();
    assert!(e.to_string().contains("unknown field `flush`"), "{e}");
}
