use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::RawBatch;
use crate::signal::{Batch, Signal};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Attributes of every value type, nested.
fn attributes(i: usize) -> Vec<KeyValue> {
    vec![
        kv("s", Value::StringValue(format!("value-{i}"))),
        kv("b", Value::BoolValue(i.is_multiple_of(2))),
        kv("i", Value::IntValue(-(i as i64))),
        kv("d", Value::DoubleValue(i as f64 / 3.0)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2, i as u8])),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: vec![kv("inner", Value::StringValue("é".into()))],
                    })),
                }],
            }),
        ),
    ]
}

/// Ids for odd items, none for even ones.
fn optional_id(i: usize, byte: u8, len: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        vec![]
    } else {
        vec![byte; len]
    }
}

/// `body` as a length-delimited field.
fn frame(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn span(i: usize) -> Span {
    Span {
        trace_id: vec![i as u8 + 1; 16],
        span_id: vec![i as u8 + 1; 8],
        parent_span_id: if i.is_multiple_of(2) {
            vec![]
        } else {
            vec![9; 8]
        },
        trace_state: "k=v".into(),
        flags: 0x101,
        name: format!("span-{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        end_time_unix_nano: 1_700_000_000_000_000_100 + i as u64,
        attributes: attributes(i),
        dropped_attributes_count: 1,
        events: vec![Event {
            time_unix_nano: 5,
            name: "exception".into(),
            attributes: attributes(i),
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![Link {
            trace_id: vec![7; 16],
            span_id: vec![7; 8],
            trace_state: "a=b".into(),
            attributes: attributes(i),
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
    }
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1.2.3".into(),
        attributes: attributes(0),
        dropped_attributes_count: 1,
    })
}

fn traces() -> Vec<ResourceSpans> {
    (0..3)
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(format!("svc-{r}")))],
                ..Default::default()
            }),
            scope_spans: (0..2)
                .map(|s| ScopeSpans {
                    scope: scope(&format!("scope-{s}")),
                    spans: (0..4).map(|i| span(r * 8 + s * 4 + i)).collect(),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                })
                .collect(),
            schema_url: if r == 1 {
                "https://example/schema".into()
            } else {
                String::new()
            },
        })
        .collect()
}

fn logs() -> Vec<ResourceLogs> {
    (0..2)
        .map(|r| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("k8s.pod.name", Value::StringValue(format!("pod-{r}")))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: scope("logger"),
                log_records: (0..5)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        observed_time_unix_nano: i + 1,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(Value::KvlistValue(KeyValueList {
                                values: attributes(i as usize),
                            })),
                        }),
                        attributes: attributes(i as usize),
                        dropped_attributes_count: 0,
                        flags: 1,
                        trace_id: optional_id(i as usize, 3, 16),
                        span_id: optional_id(i as usize, 3, 8),
                        event_name: "e".into(),
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect()
}

fn trace_request(rs: &[ResourceSpans]) -> Bytes {
    Bytes::from(
        ExportTraceServiceRequest {
            resource_spans: rs.to_vec(),
        }
        .encode_to_vec(),
    )
}

fn raw(signal: Signal, request: &Bytes) -> RawBatch {
    RawBatch::parse(signal, request).expect("a plainly valid request is kept raw")
}

#[test]
fn spans_pass_through_unchanged_and_uncopied() {
    let rs = traces();
    let request = trace_request(&rs);
    let batch = raw(Signal::Traces, &request);
    assert_eq!(batch.item_count(), 24);
    assert_eq!(batch.resources.len(), 3);
    // The scope entries are slices of the request's buffer, not copies.
    let range = request.as_ptr() as usize..request.as_ptr() as usize + request.len();
    for r in &batch.resources {
        for s in &r.scopes {
            assert!(range.contains(&(s.bytes.as_ptr() as usize)));
        }
    }
    let encoded = batch.encode_request();
    assert_eq!(encoded.len(), batch.encoded_len());
    // Byte for byte what prost writes (the same field order), and the same spans.
    assert_eq!(encoded, request.to_vec());
    assert_eq!(Batch::Raw(batch.clone()).into_decoded(), Batch::Traces(rs));
    assert_eq!(Batch::Raw(batch).encoded_len(), request.len());
}

#[test]
fn log_records_pass_through_unchanged() {
    let rl = logs();
    let request = Bytes::from(
        ExportLogsServiceRequest {
            resource_logs: rl.clone(),
        }
        .encode_to_vec(),
    );
    let batch = raw(Signal::Logs, &request);
    assert_eq!(batch.item_count(), 10);
    assert_eq!(batch.encode_request(), request.to_vec());
    assert_eq!(Batch::Raw(batch).into_decoded(), Batch::Logs(rl));
}

#[test]
fn what_the_walker_is_not_sure_of_is_decoded_as_before() {
    type Change = Box<dyn Fn(&mut Vec<ResourceSpans>)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "15-byte trace id",
            Box::new(|rs| rs[0].scope_spans[0].spans[1].trace_id.truncate(15)),
        ),
        (
            "zero span id",
            Box::new(|rs| rs[1].scope_spans[1].spans[0].span_id = vec![0; 8]),
        ),
        (
            "no span id",
            Box::new(|rs| rs[1].scope_spans[1].spans[0].span_id.clear()),
        ),
        (
            "zero parent (rewritten to empty)",
            Box::new(|rs| rs[2].scope_spans[0].spans[1].parent_span_id = vec![0; 8]),
        ),
        (
            "bad link id",
            Box::new(|rs| rs[0].scope_spans[0].spans[0].links[0].span_id = vec![1; 3]),
        ),
    ];
    for (what, change) in cases {
        let mut rs = traces();
        change(&mut rs);
        let request = trace_request(&rs);
        assert!(
            RawBatch::parse(Signal::Traces, &request).is_none(),
            "{what}: kept raw"
        );
        assert_eq!(
            Batch::from_request(Signal::Traces, request.clone()).unwrap(),
            Batch::decode_request(Signal::Traces, &request).unwrap(),
            "{what}"
        );
    }
    // Log records: all-zero ids are rewritten by the decoded path; wrong lengths refused there.
    for (what, trace_id) in [
        ("zero trace id", vec![0u8; 16]),
        ("short trace id", vec![1u8; 4]),
    ] {
        let mut rl = logs();
        rl[1].scope_logs[0].log_records[2].trace_id = trace_id;
        let request = ExportLogsServiceRequest { resource_logs: rl }.encode_to_vec();
        assert!(
            RawBatch::parse(Signal::Logs, &Bytes::from(request)).is_none(),
            "{what}"
        );
    }
}

/// Appends a field (number, wire type, payload) to the first span of a request of one
/// resource, one scope, one span, and re-frames every level around it.
fn request_with_span_field(extra: &[u8]) -> Bytes {
    let mut span = span(0).encode_to_vec();
    span.extend_from_slice(extra);
    let scope = frame(2, &span);
    let resource = frame(2, &scope);
    Bytes::from(frame(1, &resource))
}

#[test]
fn unknown_fields_wrong_wire_types_and_bad_utf8_go_to_prost() {
    // A well-formed unknown field (99, varint): prost drops it; kept raw it would pass on.
    assert!(
        RawBatch::parse(
            Signal::Traces,
            &request_with_span_field(&[0x98, 0x06, 0x01])
        )
        .is_none()
    );
    // name (5) as a varint: prost refuses the request.
    let wrong = request_with_span_field(&[0x28, 0x01]);
    assert!(RawBatch::parse(Signal::Traces, &wrong).is_none());
    assert!(Batch::from_request(Signal::Traces, wrong).is_err());
    // name (5) with invalid UTF-8.
    let bad = request_with_span_field(&[0x2a, 0x02, 0xc3, 0x28]);
    assert!(RawBatch::parse(Signal::Traces, &bad).is_none());
    assert!(Batch::from_request(Signal::Traces, bad).is_err());
    // A valid extra name is last-wins, as in prost: kept raw, decodes the same.
    let renamed = request_with_span_field(&[0x2a, 0x01, b'x']);
    let batch = raw(Signal::Traces, &renamed);
    let Batch::Traces(rs) = Batch::Raw(batch).into_decoded() else {
        panic!("traces")
    };
    assert_eq!(rs[0].scope_spans[0].spans[0].name, "x");
    // Truncated: the last byte cut off.
    let cut = renamed.slice(..renamed.len() - 1);
    assert!(RawBatch::parse(Signal::Traces, &cut).is_none());
    assert!(Batch::from_request(Signal::Traces, cut).is_err());
}

/// Damages `request` at every byte in turn (each byte set to several values): whatever the
/// walker keeps raw must decode, by prost, to the same items, counted the same.
fn assert_kept_requests_decode_as_prost(signal: Signal, request: &[u8]) {
    let (mut kept, mut refused) = (0, 0);
    for at in 0..request.len() {
        for value in [0x00u8, 0x01, 0x7f, 0x80, 0xff, request[at] ^ 0x08] {
            let mut damaged = request.to_vec();
            damaged[at] = value;
            let damaged = Bytes::from(damaged);
            match RawBatch::parse(signal, &damaged) {
                Some(batch) => {
                    kept += 1;
                    let by_prost = Batch::decode_request(signal, &damaged).unwrap_or_else(|e| {
                        panic!("byte {at} = {value:#x}: kept raw, prost says {e}")
                    });
                    assert_eq!(batch.encoded_len(), batch.encode_request().len());
                    assert_eq!(
                        batch.item_count(),
                        by_prost.item_count(),
                        "byte {at} = {value:#x}"
                    );
                    // Compared encoded: a damaged double may be NaN, never equal to itself.
                    assert_eq!(
                        Batch::Raw(batch).into_decoded().encode_request(),
                        by_prost.encode_request(),
                        "byte {at} = {value:#x}"
                    );
                }
                None => refused += 1,
            }
        }
    }
    assert!(
        kept > 100 && refused > 100,
        "kept {kept}, refused {refused}"
    );
}

/// Whatever the walker keeps, prost decodes, to the same spans.
#[test]
fn kept_requests_decode_as_prost_decodes_them() {
    let rs: Vec<ResourceSpans> = traces().into_iter().take(1).collect();
    assert_kept_requests_decode_as_prost(Signal::Traces, &trace_request(&rs));
}

#[test]
fn take_items_cuts_as_the_decoded_batch_does() {
    let request = trace_request(&traces());
    for n in [0, 1, 3, 4, 5, 8, 11, 17, 23, 24, 30] {
        let mut raw_batch = Batch::Raw(raw(Signal::Traces, &request));
        let mut decoded = Batch::decode_request(Signal::Traces, &request).unwrap();
        let front_raw = raw_batch.take_items(n);
        let front = decoded.take_items(n);
        assert_eq!(front_raw.item_count(), n.min(24), "n = {n}");
        assert_eq!(raw_batch.item_count(), 24 - n.min(24), "n = {n}");
        assert_eq!(front_raw.encoded_len(), front_raw.encode_request().len());
        assert_eq!(front_raw.into_decoded(), front, "front, n = {n}");
        assert_eq!(raw_batch.into_decoded(), decoded, "back, n = {n}");
    }
}

#[test]
fn raw_and_decoded_batches_append_in_order() {
    let rs = traces();
    let request = trace_request(&rs[..2]);
    let tail = Batch::Traces(rs[2..].to_vec());

    let mut batch = Batch::Raw(raw(Signal::Traces, &request));
    batch.append(tail.clone()).unwrap();
    assert!(matches!(batch, Batch::Raw(_)));
    assert_eq!(batch.item_count(), 24);
    assert_eq!(batch.clone().into_decoded(), Batch::Traces(rs.clone()));

    let mut batch = Batch::empty(Signal::Traces);
    batch
        .append(Batch::Raw(raw(Signal::Traces, &request)))
        .unwrap();
    assert!(
        matches!(batch, Batch::Raw(_)),
        "an empty batch takes the raw one as it is"
    );
    let mut decoded_first = Batch::Traces(rs[..1].to_vec());
    decoded_first
        .append(Batch::Raw(raw(Signal::Traces, &trace_request(&rs[1..]))))
        .unwrap();
    assert_eq!(decoded_first, Batch::Traces(rs.clone()));

    let logs = Batch::Logs(logs());
    assert!(batch.append(logs).is_err(), "signals do not mix");
}

#[test]
fn batches_too_long_for_the_limit_are_cut_to_fit() {
    let request = trace_request(&traces());
    let batch = Batch::Raw(raw(Signal::Traces, &request));
    let max = request.len() / 3;
    let parts = batch.split_to_fit(max);
    assert!(parts.len() >= 3);
    let mut all = Batch::empty(Signal::Traces);
    for (part, len) in parts {
        assert!(len <= max && part.encoded_len() == len);
        all.append(part).unwrap();
    }
    // Every span, in order, in its resource and scope (a cut entry appears twice).
    let flat = |b: Batch| -> Vec<(Option<Resource>, Option<InstrumentationScope>, Span)> {
        let Batch::Traces(rs) = b.into_decoded() else {
            panic!("traces")
        };
        rs.into_iter()
            .flat_map(|r| {
                let resource = r.resource;
                r.scope_spans.into_iter().flat_map(move |s| {
                    let (resource, scope) = (resource.clone(), s.scope);
                    s.spans
                        .into_iter()
                        .map(move |span| (resource.clone(), scope.clone(), span))
                })
            })
            .collect()
    };
    let whole = Batch::decode_request(Signal::Traces, &request).unwrap();
    assert_eq!(flat(all), flat(whole));
}

fn exemplars(i: usize) -> Vec<Exemplar> {
    vec![Exemplar {
        filtered_attributes: attributes(i),
        time_unix_nano: 9,
        span_id: optional_id(i, 4, 8),
        trace_id: optional_id(i, 4, 16),
        value: Some(exemplar::Value::AsDouble(1.5)),
    }]
}

fn number(i: usize) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes(i),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: exemplars(i),
        flags: 1,
        value: Some(if i.is_multiple_of(2) {
            number_data_point::Value::AsInt(-(i as i64))
        } else {
            number_data_point::Value::AsDouble(i as f64)
        }),
    }
}

/// One metric of each data type, several points each.
fn metrics() -> Vec<ResourceMetrics> {
    let metric = |name: &str, data: Data| Metric {
        name: name.into(),
        description: "d".into(),
        unit: "By".into(),
        metadata: attributes(0),
        data: Some(data),
    };
    let list = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: (0..3).map(number).collect(),
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: (0..2).map(number).collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: (0..2)
                    .map(|i| HistogramDataPoint {
                        attributes: attributes(i),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 6,
                        sum: Some(10.0),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.5, 1.0],
                        exemplars: exemplars(i),
                        flags: 0,
                        min: Some(0.1),
                        max: Some(9.0),
                    })
                    .collect(),
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exponential",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attributes(1),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 5,
                    sum: Some(3.0),
                    scale: -3,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -2,
                        bucket_counts: vec![1, 300, 2],
                    }),
                    negative: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![1],
                    }),
                    flags: 0,
                    exemplars: exemplars(1),
                    min: Some(-1.0),
                    max: Some(4.0),
                    zero_threshold: 0.001,
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attributes(2),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 4,
                    sum: 8.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.99,
                        value: 7.5,
                    }],
                    flags: 0,
                }],
            }),
        ),
    ];
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("host.name", Value::StringValue("gpu-node-1".into()))],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: scope("hpcotel"),
            metrics: list,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

fn metric_request(rm: &[ResourceMetrics]) -> Bytes {
    Bytes::from(
        ExportMetricsServiceRequest {
            resource_metrics: rm.to_vec(),
        }
        .encode_to_vec(),
    )
}

#[test]
fn metric_points_of_every_type_pass_through_unchanged() {
    let rm = metrics();
    let request = metric_request(&rm);
    let batch = raw(Signal::Metrics, &request);
    let decoded = Batch::Metrics(rm);
    assert_eq!(batch.item_count(), decoded.item_count());
    assert_eq!(batch.item_count(), 9);
    assert_eq!(batch.encode_request(), request.to_vec());
    assert_eq!(Batch::Raw(batch).into_decoded(), decoded);
}

#[test]
fn metrics_the_walker_is_not_sure_of_are_decoded() {
    // An exemplar's all-zero trace id: rewritten to empty by the decoded path.
    let mut rm = metrics();
    let Some(Data::Gauge(g)) = &mut rm[0].scope_metrics[0].metrics[0].data else {
        panic!("gauge")
    };
    g.data_points[1].exemplars[0].trace_id = vec![0; 16];
    assert!(RawBatch::parse(Signal::Metrics, &metric_request(&rm)).is_none());
    // Two `data` fields in one metric (a oneof: the same variant twice merges, a different
    // one replaces): prost decides what the metric holds.
    let gauge = Gauge {
        data_points: vec![number(0)],
    }
    .encode_to_vec();
    let mut extra = Vec::new();
    prost::encoding::encode_key(5, prost::encoding::WireType::LengthDelimited, &mut extra);
    prost::encoding::encode_varint(gauge.len() as u64, &mut extra);
    extra.extend_from_slice(&gauge);
    // Re-frame: one resource, one scope, the first metric with the extra field.
    let mut rm = metrics();
    let first = rm[0].scope_metrics[0].metrics.remove(0);
    let mut metric = first.encode_to_vec();
    metric.extend_from_slice(&extra);
    let request = Bytes::from(frame(1, &frame(2, &frame(2, &metric))));
    assert!(RawBatch::parse(Signal::Metrics, &request).is_none());
    // The second gauge's point merged into the first gauge's three.
    assert_eq!(
        Batch::from_request(Signal::Metrics, request)
            .unwrap()
            .item_count(),
        4
    );
}

#[test]
fn metric_cuts_inside_a_metric_match_the_decoded_cut() {
    let request = metric_request(&metrics());
    for n in 1..9 {
        let mut raw_batch = Batch::Raw(raw(Signal::Metrics, &request));
        let mut decoded = Batch::decode_request(Signal::Metrics, &request).unwrap();
        let front_raw = raw_batch.take_items(n);
        let front = decoded.take_items(n);
        assert_eq!(front_raw.item_count(), n);
        assert_eq!(raw_batch.item_count(), 9 - n);
        assert_eq!(front_raw.into_decoded(), front, "front, n = {n}");
        assert_eq!(raw_batch.into_decoded(), decoded, "back, n = {n}");
    }
}

#[test]
fn kept_metric_requests_decode_as_prost_decodes_them() {
    assert_kept_requests_decode_as_prost(Signal::Metrics, &metric_request(&metrics()));
}

#[test]
fn requests_read_back_from_the_log_are_counted_as_when_they_were_checked() {
    let traces = trace_request(&traces());
    let logs = Bytes::from(
        ExportLogsServiceRequest {
            resource_logs: logs(),
        }
        .encode_to_vec(),
    );
    let metrics = metric_request(&metrics());
    for (signal, request) in [
        (Signal::Traces, traces),
        (Signal::Logs, logs),
        (Signal::Metrics, metrics),
    ] {
        assert_eq!(
            RawBatch::parse_logged(signal, &request),
            RawBatch::parse(signal, &request),
            "{signal}"
        );
    }
}
