use std::io::Write;
use std::time::Duration;

use hpcotel_core::{Batch, Exporter};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::mpsc;

use super::*;

/// A writer that hands each line to the test.
struct Lines {
    tx: mpsc::UnboundedSender<String>,
    partial: String,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.push_str(&String::from_utf8_lossy(buf));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let _ = self.tx.send(line.trim_end().to_owned());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn writer() -> (Box<dyn Write + Send>, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Box::new(Lines {
            tx,
            partial: String::new(),
        }),
        rx,
    )
}

fn spans(n: usize) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span::default(); n],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn points(n: usize) -> Batch {
    Batch::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "hw.power".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default(); n],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn logs(n: usize) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    severity_text: "WARN".into(),
                    ..Default::default()
                };
                n
            ],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test(start_paused = true)]
async fn prints_the_exact_summary_line_each_interval() {
    let (w, mut lines) = writer();
    let exporter = DebugExporter::new_with_writer(&Config::default(), w);
    exporter.export(&points(42)).await.unwrap();
    exporter.export(&spans(1000)).await.unwrap();
    exporter.export(&spans(200)).await.unwrap();
    exporter.export(&logs(3)).await.unwrap();
    // Time is paused: awaiting the line lets the clock run to the 10 s tick.
    let line = tokio::time::timeout(Duration::from_secs(11), lines.recv())
        .await
        .expect("a line within one interval")
        .unwrap();
    assert_eq!(line, "exported 42 metric points, 1200 spans, 3 log records");
    // Nothing exported in the next interval: nothing printed.
    assert!(
        tokio::time::timeout(Duration::from_secs(25), lines.recv())
            .await
            .is_err()
    );
    exporter.export(&spans(5)).await.unwrap();
    exporter.shutdown().await.unwrap();
    assert_eq!(
        lines.try_recv().unwrap(),
        "exported 0 metric points, 5 spans, 0 log records"
    );
    assert!(lines.try_recv().is_err());
}

#[tokio::test]
async fn detailed_prints_each_batch_as_otlp_json() {
    let (w, mut lines) = writer();
    let config = Config {
        verbosity: Verbosity::Detailed,
        summary_interval: Duration::from_secs(3600),
    };
    let exporter = DebugExporter::new_with_writer(&config, w);
    exporter.export(&logs(2)).await.unwrap();
    let json = lines.try_recv().unwrap();
    let req: ExportLogsServiceRequest = serde_json::from_str(&json).unwrap();
    let Batch::Logs(expected) = logs(2) else {
        unreachable!()
    };
    assert_eq!(req.resource_logs, expected);
    assert!(exporter.print_summary());
    assert_eq!(
        lines.try_recv().unwrap(),
        "exported 0 metric points, 0 spans, 2 log records"
    );
    assert!(!exporter.print_summary(), "nothing new, nothing printed");
    exporter.shutdown().await.unwrap();
    assert!(lines.try_recv().is_err());
}

#[test]
fn config_parses() {
    let c: Config = serde_yaml::from_str("verbosity: detailed\nsummary_interval: 1m").unwrap();
    assert_eq!(c.verbosity, Verbosity::Detailed);
    assert_eq!(c.summary_interval, Duration::from_secs(60));
    assert_eq!(Config::default().summary_interval, Duration::from_secs(10));
    assert!(serde_yaml::from_str::<Config>("verbosity: loud").is_err());
    assert_eq!(
        summary_line(1, 2, 3),
        "exported 1 metric points, 2 spans, 3 log records"
    );
}
