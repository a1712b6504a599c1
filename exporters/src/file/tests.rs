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

// ------------------------------------------------------------ non-finite doubles

fn double_kv(key: &str, d: f64) -> KeyValue {
    any_kv(key, any_value::Value::DoubleValue(d))
}

fn any_kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn double_any(d: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(d)),
    }
}

/// Attributes with a NaN, a nested array holding -Infinity and a finite double, and a
/// nested key-value list holding +Infinity.
fn non_finite_attributes() -> Vec<KeyValue> {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    vec![
        double_kv("nan", f64::NAN),
        double_kv("finite", 0.5),
        any_kv(
            "arr",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    double_any(f64::NEG_INFINITY),
                    double_any(2.0),
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![double_kv("inf", f64::INFINITY)],
                        })),
                    },
                ],
            }),
        ),
    ]
}

fn non_finite_metrics() -> Vec<ResourceMetrics> {
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Histogram,
        HistogramDataPoint, Summary, SummaryDataPoint, exemplar,
        summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let number = |d: f64| NumberDataPoint {
        value: Some(number_data_point::Value::AsDouble(d)),
        ..Default::default()
    };
    let exemplar = |d: f64| Exemplar {
        value: Some(exemplar::Value::AsDouble(d)),
        ..Default::default()
    };
    let metric = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: non_finite_attributes(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    metadata: vec![double_kv("meta", f64::NEG_INFINITY)],
                    ..metric(
                        "g",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint {
                                    attributes: non_finite_attributes(),
                                    exemplars: vec![exemplar(f64::NEG_INFINITY), exemplar(1.5)],
                                    ..number(f64::NAN)
                                },
                                number(f64::INFINITY),
                                number(f64::NEG_INFINITY),
                                number(0.25),
                            ],
                        }),
                    )
                },
                metric(
                    "h",
                    metric::Data::Histogram(Histogram {
                        data_points: vec![
                            HistogramDataPoint {
                                count: 1,
                                sum: Some(f64::NAN),
                                min: Some(f64::NEG_INFINITY),
                                max: Some(f64::INFINITY),
                                bucket_counts: vec![0, 1],
                                explicit_bounds: vec![1.0],
                                exemplars: vec![exemplar(f64::NAN)],
                                ..Default::default()
                            },
                            HistogramDataPoint {
                                count: 1,
                                sum: Some(2.5),
                                min: Some(0.5),
                                max: Some(4.0),
                                ..Default::default()
                            },
                        ],
                        aggregation_temporality: 2,
                    }),
                ),
                metric(
                    "e",
                    metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![
                            ExponentialHistogramDataPoint {
                                count: 1,
                                sum: Some(f64::INFINITY),
                                min: Some(f64::NAN),
                                max: Some(f64::NEG_INFINITY),
                                zero_threshold: f64::INFINITY,
                                exemplars: vec![exemplar(f64::INFINITY)],
                                ..Default::default()
                            },
                            ExponentialHistogramDataPoint {
                                count: 1,
                                sum: Some(3.0),
                                zero_threshold: 1e-9,
                                ..Default::default()
                            },
                        ],
                        aggregation_temporality: 1,
                    }),
                ),
                metric(
                    "q",
                    metric::Data::Summary(Summary {
                        data_points: vec![
                            SummaryDataPoint {
                                count: 1,
                                sum: f64::NEG_INFINITY,
                                quantile_values: vec![
                                    ValueAtQuantile {
                                        quantile: f64::NAN,
                                        value: f64::INFINITY,
                                    },
                                    ValueAtQuantile {
                                        quantile: 0.5,
                                        value: f64::NEG_INFINITY,
                                    },
                                    ValueAtQuantile {
                                        quantile: 1.0,
                                        value: 2.0,
                                    },
                                ],
                                ..Default::default()
                            },
                            SummaryDataPoint {
                                count: 1,
                                sum: 0.125,
                                ..Default::default()
                            },
                        ],
                    }),
                ),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// The value at JSON pointer `at`, which must exist.
#[track_caller]
fn at<'a>(v: &'a serde_json::Value, at: &str) -> &'a serde_json::Value {
    v.pointer(at)
        .unwrap_or_else(|| panic!("nothing at {at} in {v}"))
}

/// Asserts the JSON value at each pointer: a string for a non-finite double, a number for
/// a finite one.
#[track_caller]
fn assert_json(v: &serde_json::Value, expected: &[(&str, serde_json::Value)]) {
    for (pointer, want) in expected {
        assert_eq!(at(v, pointer), want, "at {pointer}");
    }
}

/// The line `encode_line` writes for `batch`, parsed; checks that it is one line.
fn encoded(batch: &Batch) -> serde_json::Value {
    let line = encode_line(batch).unwrap();
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(line.last(), Some(&b'\n'));
    serde_json::from_slice(&line).unwrap()
}

/// `(pointer, value)` pairs for [`non_finite_attributes`] at `base`.
fn attribute_expectations(base: &str) -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    [
        ("/0/key", json!("nan")),
        ("/0/value/doubleValue", json!("NaN")),
        ("/1/value/doubleValue", json!(0.5)),
        (
            "/2/value/arrayValue/values/0/doubleValue",
            json!("-Infinity"),
        ),
        ("/2/value/arrayValue/values/1/doubleValue", json!(2.0)),
        (
            "/2/value/arrayValue/values/2/kvlistValue/values/0/value/doubleValue",
            json!("Infinity"),
        ),
    ]
    .into_iter()
    .map(|(p, v)| (format!("{base}{p}"), v))
    .collect()
}

#[track_caller]
fn assert_json_owned(v: &serde_json::Value, expected: &[(String, serde_json::Value)]) {
    for (pointer, want) in expected {
        assert_eq!(at(v, pointer), want, "at {pointer}");
    }
}

#[test]
fn encode_line_writes_non_finite_metric_doubles_as_protobuf_json_strings() {
    use serde_json::json;
    let v = encoded(&Batch::Metrics(non_finite_metrics()));
    let m = "/resourceMetrics/0/scopeMetrics/0/metrics";
    let expected = [
        // Gauge points and their exemplars (asDouble, behind #[serde(flatten)]).
        (format!("{m}/0/gauge/dataPoints/0/asDouble"), json!("NaN")),
        (
            format!("{m}/0/gauge/dataPoints/1/asDouble"),
            json!("Infinity"),
        ),
        (
            format!("{m}/0/gauge/dataPoints/2/asDouble"),
            json!("-Infinity"),
        ),
        (format!("{m}/0/gauge/dataPoints/3/asDouble"), json!(0.25)),
        (
            format!("{m}/0/gauge/dataPoints/0/exemplars/0/asDouble"),
            json!("-Infinity"),
        ),
        (
            format!("{m}/0/gauge/dataPoints/0/exemplars/1/asDouble"),
            json!(1.5),
        ),
        (
            format!("{m}/0/metadata/0/value/doubleValue"),
            json!("-Infinity"),
        ),
        // Histogram sum, min, max and exemplars.
        (format!("{m}/1/histogram/dataPoints/0/sum"), json!("NaN")),
        (
            format!("{m}/1/histogram/dataPoints/0/min"),
            json!("-Infinity"),
        ),
        (
            format!("{m}/1/histogram/dataPoints/0/max"),
            json!("Infinity"),
        ),
        (
            format!("{m}/1/histogram/dataPoints/0/explicitBounds/0"),
            json!(1.0),
        ),
        (
            format!("{m}/1/histogram/dataPoints/0/exemplars/0/asDouble"),
            json!("NaN"),
        ),
        (format!("{m}/1/histogram/dataPoints/1/sum"), json!(2.5)),
        (format!("{m}/1/histogram/dataPoints/1/min"), json!(0.5)),
        (format!("{m}/1/histogram/dataPoints/1/max"), json!(4.0)),
        // Exponential histogram sum, min, max, zeroThreshold and exemplars.
        (
            format!("{m}/2/exponentialHistogram/dataPoints/0/sum"),
            json!("Infinity"),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/0/min"),
            json!("NaN"),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/0/max"),
            json!("-Infinity"),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/0/zeroThreshold"),
            json!("Infinity"),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/0/exemplars/0/asDouble"),
            json!("Infinity"),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/1/sum"),
            json!(3.0),
        ),
        (
            format!("{m}/2/exponentialHistogram/dataPoints/1/zeroThreshold"),
            json!(1e-9),
        ),
        // Summary sum and quantile values.
        (
            format!("{m}/3/summary/dataPoints/0/sum"),
            json!("-Infinity"),
        ),
        (
            format!("{m}/3/summary/dataPoints/0/quantileValues/0/quantile"),
            json!("NaN"),
        ),
        (
            format!("{m}/3/summary/dataPoints/0/quantileValues/0/value"),
            json!("Infinity"),
        ),
        (
            format!("{m}/3/summary/dataPoints/0/quantileValues/1/quantile"),
            json!(0.5),
        ),
        (
            format!("{m}/3/summary/dataPoints/0/quantileValues/1/value"),
            json!("-Infinity"),
        ),
        (
            format!("{m}/3/summary/dataPoints/0/quantileValues/2/value"),
            json!(2.0),
        ),
        (format!("{m}/3/summary/dataPoints/1/sum"), json!(0.125)),
    ];
    assert_json_owned(&v, &expected);
    // AnyValue doubles: resource attributes and a data point's, nested ones included.
    assert_json_owned(
        &v,
        &attribute_expectations("/resourceMetrics/0/resource/attributes"),
    );
    assert_json_owned(
        &v,
        &attribute_expectations(&format!("{m}/0/gauge/dataPoints/0/attributes")),
    );
    // Everything else is untouched: 64-bit integers still strings, ints still ints.
    assert_json(
        &v,
        &[
            (
                "/resourceMetrics/0/scopeMetrics/0/metrics/1/histogram/dataPoints/0/count",
                json!("1"),
            ),
            (
                "/resourceMetrics/0/scopeMetrics/0/metrics/1/histogram/aggregationTemporality",
                json!(2),
            ),
        ],
    );
    // Compared with plain serde_json, which writes `null` for them, the line differs in the
    // 21 non-finite doubles serde_json loses (a summary's quantile values it already gets
    // as strings from opentelemetry-proto) and nowhere else.
    let plain = serde_json::to_value(ExportMetricsServiceRequest {
        resource_metrics: non_finite_metrics(),
    })
    .unwrap();
    let mut diffs = Vec::new();
    differences(&v, &plain, String::new(), &mut diffs);
    for (pointer, ours, theirs) in &diffs {
        assert!(
            theirs.is_null() && ["NaN", "Infinity", "-Infinity"].contains(&ours.as_str().unwrap()),
            "at {pointer}: {ours} vs {theirs}"
        );
    }
    assert_eq!(diffs.len(), 21, "{diffs:?}");
}

/// The places (JSON pointers) where `a` and `b` differ, with their values there.
fn differences(
    a: &serde_json::Value,
    b: &serde_json::Value,
    at: String,
    out: &mut Vec<(String, serde_json::Value, serde_json::Value)>,
) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => differences(va, vb, format!("{at}/{k}"), out),
                    None => out.push((format!("{at}/{k}"), va.clone(), Value::Null)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, format!("{at}/{i}"), out);
            }
        }
        _ if a == b => {}
        _ => out.push((at, a.clone(), b.clone())),
    }
}

#[test]
fn encode_line_writes_non_finite_span_and_log_doubles_as_protobuf_json_strings() {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use serde_json::json;

    let mut traces = spans(1, 1);
    traces[0].resource = Some(Resource {
        attributes: vec![double_kv("r", f64::INFINITY)],
        ..Default::default()
    });
    let ss = &mut traces[0].scope_spans[0];
    ss.scope = Some(InstrumentationScope {
        attributes: vec![double_kv("s", f64::NEG_INFINITY)],
        ..Default::default()
    });
    let span = &mut ss.spans[0];
    span.attributes = non_finite_attributes();
    span.events = vec![Event {
        attributes: vec![double_kv("e", f64::INFINITY)],
        ..Default::default()
    }];
    span.links = vec![Link {
        attributes: vec![double_kv("l", f64::NAN)],
        ..Default::default()
    }];
    let v = encoded(&Batch::Traces(traces));
    let s = "/resourceSpans/0/scopeSpans/0";
    assert_json_owned(
        &v,
        &[
            (
                "/resourceSpans/0/resource/attributes/0/value/doubleValue".to_owned(),
                json!("Infinity"),
            ),
            (
                format!("{s}/scope/attributes/0/value/doubleValue"),
                json!("-Infinity"),
            ),
            (
                format!("{s}/spans/0/events/0/attributes/0/value/doubleValue"),
                json!("Infinity"),
            ),
            (
                format!("{s}/spans/0/links/0/attributes/0/value/doubleValue"),
                json!("NaN"),
            ),
            (
                format!("{s}/spans/0/traceId"),
                json!("ab010000000000000000000000000001"),
            ),
        ],
    );
    assert_json_owned(
        &v,
        &attribute_expectations(&format!("{s}/spans/0/attributes")),
    );

    let logs = vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    body: Some(double_any(f64::NAN)),
                    attributes: non_finite_attributes(),
                    ..Default::default()
                },
                LogRecord {
                    body: Some(double_any(f64::NEG_INFINITY)),
                    ..Default::default()
                },
                LogRecord {
                    body: Some(double_any(-0.75)),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let v = encoded(&Batch::Logs(logs));
    let r = "/resourceLogs/0/scopeLogs/0/logRecords";
    assert_json_owned(
        &v,
        &[
            (format!("{r}/0/body/doubleValue"), json!("NaN")),
            (format!("{r}/1/body/doubleValue"), json!("-Infinity")),
            (format!("{r}/2/body/doubleValue"), json!(-0.75)),
        ],
    );
    assert_json_owned(&v, &attribute_expectations(&format!("{r}/0/attributes")));
}

#[test]
fn encode_line_output_is_unchanged_for_finite_values() {
    // The non-finite adapter is transparent otherwise: byte for byte what serde_json
    // writes for the same request.
    let batches = [
        (Batch::Traces(spans(3, 5)), {
            serde_json::to_vec(&ExportTraceServiceRequest {
                resource_spans: spans(3, 5),
            })
        }),
        (Batch::Metrics(metrics()), {
            serde_json::to_vec(&ExportMetricsServiceRequest {
                resource_metrics: metrics(),
            })
        }),
    ];
    for (batch, plain) in batches {
        let mut plain = plain.unwrap();
        plain.push(b'\n');
        assert_eq!(
            String::from_utf8(encode_line(&batch).unwrap()).unwrap(),
            String::from_utf8(plain).unwrap()
        );
    }
}

// ------------------------------------------------------------ failed writes

/// A file whose writes fail once `left` more bytes have gone in, like a disk filling up.
/// (A real size-limited medium is not available to tests; the truncation itself happens on
/// the real file, which [`exporter::append_line`] reaches through `Borrow<File>`.)
struct FailAfter {
    file: std::fs::File,
    left: usize,
}

impl std::io::Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ));
        }
        let n = self.file.write(&buf[..buf.len().min(self.left)])?;
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl std::borrow::Borrow<std::fs::File> for FailAfter {
    fn borrow(&self) -> &std::fs::File {
        &self.file
    }
}

#[test]
fn a_write_that_fails_part_way_leaves_no_fragment_and_the_retry_writes_a_clean_line() {
    let tmp = tempfile::tempdir().unwrap();
    let line = encode_line(&Batch::Traces(spans(1, 100))).unwrap();
    // Both ways a line goes out: larger than the buffer (written straight through) and
    // buffered then flushed.
    for (case, capacity) in [("unbuffered", 16), ("buffered", 64 * 1024)] {
        let path = tmp.path().join(format!("{case}.jsonl"));
        let first = b"{\"resourceSpans\":[]}\n";
        std::fs::write(&path, first).unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let size = first.len() as u64;
        let writer = std::io::BufWriter::with_capacity(capacity, FailAfter { file, left: 40 });

        let Err((writer, e)) = exporter::append_line(writer, size, &line) else {
            panic!("{case}: the write should fail")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{case}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            first,
            "{case}: the 40 bytes written are cut off again"
        );
        let mut writer = writer.expect("the writer stays usable once cut back");

        // The disk has room again: the retry appends one whole line, and nothing that was
        // left in the buffer comes out later.
        writer.get_mut().left = usize::MAX;
        let writer = exporter::append_line(writer, size, &line)
            .unwrap_or_else(|(_, e)| panic!("{case}: retry failed: {e}"));
        drop(writer);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut expected = first.to_vec();
        expected.extend_from_slice(&line);
        assert_eq!(text.as_bytes(), expected, "{case}");
        for l in text.lines() {
            serde_json::from_str::<ExportTraceServiceRequest>(l).unwrap();
        }
    }
}
