use std::io::Read as _;
use std::time::{Duration, Instant};

use hpcotel_core::semconv;
use hpcotel_core::{Batch, BearerAuthConfig, Exporter, HostPort, Secret};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::dcgm::{DCGM_MAPPINGS, PromType, migration_table};
use super::store::Store;
use super::*;

// --- building OTLP input ---

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kvi(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn point(value: f64, attrs: Vec<KeyValue>, t: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn int_point(value: i64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, description: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        "",
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    temporality: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        "",
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        }),
    )
}

/// One resource with `attrs`, one scope without name, holding `metrics`.
fn rm(attrs: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn store(config: &Config) -> Store {
    Store::new(config)
}

/// The exposition of `batches` applied in order to a fresh store with `config`.
fn exposition(config: &Config, batches: &[Vec<ResourceMetrics>]) -> String {
    let mut s = store(config);
    let now = Instant::now();
    for b in batches {
        assert_eq!(s.update(b, now), 0, "no point should be dropped");
    }
    s.render(now)
}

/// The sample lines (no comments) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

// --- exposition of each OTLP metric type ---

#[test]
fn exposes_each_metric_type_in_the_text_format() {
    let cumulative = AggregationTemporality::Cumulative;
    let hist = HistogramDataPoint {
        attributes: vec![kv("http.route", "/a")],
        count: 6,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![0.5, 2.0],
        ..Default::default()
    };
    let summary = SummaryDataPoint {
        count: 10,
        sum: 55.0,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 5.0,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 9.9,
            },
        ],
        ..Default::default()
    };
    let batch = vec![rm(
        vec![],
        vec![
            metric(
                "system.memory.utilization",
                "1",
                "Fraction of memory in use.",
                Data::Gauge(Gauge {
                    data_points: vec![point(0.25, vec![kv("system.memory.state", "used")], 1)],
                }),
            ),
            sum(
                "system.network.io",
                "By",
                true,
                cumulative,
                vec![int_point(1500, vec![kv("network.io.direction", "receive")])],
            ),
            sum(
                "system.memory.usage",
                "By",
                false,
                cumulative,
                vec![int_point(4096, vec![])],
            ),
            metric(
                "http.server.request.duration",
                "s",
                "Duration of HTTP server requests.",
                Data::Histogram(Histogram {
                    data_points: vec![hist],
                    aggregation_temporality: cumulative as i32,
                }),
            ),
            metric(
                "rpc.latency",
                "ms",
                "",
                Data::Summary(Summary {
                    data_points: vec![summary],
                }),
            ),
        ],
    )];
    let text = exposition(&Config::default(), &[batch]);
    assert_eq!(
        text,
        "\
# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.5\"} 1
http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"2\"} 3
http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"+Inf\"} 6
http_server_request_duration_seconds_sum{http_route=\"/a\"} 12.5
http_server_request_duration_seconds_count{http_route=\"/a\"} 6
# TYPE rpc_latency_milliseconds summary
rpc_latency_milliseconds{quantile=\"0.5\"} 5
rpc_latency_milliseconds{quantile=\"0.99\"} 9.9
rpc_latency_milliseconds_sum 55
rpc_latency_milliseconds_count 10
# TYPE system_memory_usage_bytes gauge
system_memory_usage_bytes 4096
# HELP system_memory_utilization_ratio Fraction of memory in use.
# TYPE system_memory_utilization_ratio gauge
system_memory_utilization_ratio{system_memory_state=\"used\"} 0.25
# TYPE system_network_io_bytes_total counter
system_network_io_bytes_total{network_io_direction=\"receive\"} 1500
"
    );
}

#[test]
fn exponential_histograms_become_exact_explicit_buckets() {
    // Scale 0: base 2. Positive buckets at offset 1 cover (2,4], (4,8]; negative bucket
    // offset 0 covers [-2,-1); zero bucket [-0, 0].
    let p = ExponentialHistogramDataPoint {
        count: 7,
        sum: Some(20.0),
        scale: 0,
        zero_count: 1,
        positive: Some(Buckets {
            offset: 1,
            bucket_counts: vec![2, 3],
        }),
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1],
        }),
        ..Default::default()
    };
    let batch = vec![rm(
        vec![],
        vec![metric(
            "latency",
            "s",
            "",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    )];
    let text = exposition(&Config::default(), &[batch]);
    assert_eq!(
        samples(&text),
        [
            "latency_seconds_bucket{le=\"-1\"} 1",
            "latency_seconds_bucket{le=\"0\"} 2",
            "latency_seconds_bucket{le=\"4\"} 4",
            "latency_seconds_bucket{le=\"8\"} 7",
            "latency_seconds_bucket{le=\"+Inf\"} 7",
            "latency_seconds_sum 20",
            "latency_seconds_count 7",
        ]
    );
}

// --- names, labels, values ---

#[test]
fn names_get_unit_suffixes_and_total_per_the_specification() {
    use NameKind::{Counter, Gauge, Other};
    for (name, unit, kind, want) in [
        ("hw.gpu.utilization", "1", Gauge, "hw_gpu_utilization_ratio"),
        ("hw.status", "1", Other, "hw_status"),
        (
            "hw.gpu.memory.usage",
            "By",
            Other,
            "hw_gpu_memory_usage_bytes",
        ),
        ("hw.power", "W", Gauge, "hw_power_watts"),
        ("hw.energy", "J", Counter, "hw_energy_joules_total"),
        ("hw.temperature", "Cel", Gauge, "hw_temperature_celsius"),
        (
            "hpcotel.gpu.clock.frequency",
            "Hz",
            Gauge,
            "hpcotel_gpu_clock_frequency_hertz",
        ),
        (
            "hpcotel.gpu.pcie.throughput",
            "By/s",
            Gauge,
            "hpcotel_gpu_pcie_throughput_bytes_per_second",
        ),
        (
            "hpcotel.gpu.pcie.replays",
            "{replay}",
            Counter,
            "hpcotel_gpu_pcie_replays_total",
        ),
        (
            "hpcotel.gpu.pcie.link.width",
            "{lane}",
            Gauge,
            "hpcotel_gpu_pcie_link_width",
        ),
        (
            "system.network.packets",
            "{packet}/s",
            Gauge,
            "system_network_packets_per_second",
        ),
        (
            "http.server.duration",
            "ms",
            Other,
            "http_server_duration_milliseconds",
        ),
        (
            "process.runtime.uptime",
            "s",
            Counter,
            "process_runtime_uptime_seconds_total",
        ),
        ("requests_total", "", Counter, "requests_total"),
        ("bytes.sent.total", "By", Counter, "bytes_sent_bytes_total"),
        ("queue_size_bytes", "By", Gauge, "queue_size_bytes"),
        ("disk.io", "%", Gauge, "disk_io_percent"),
        (
            "weird unit",
            "furlongs/fortnight",
            Gauge,
            "weird_unit_furlongs_per_fortnight",
        ),
        ("2xx.count", "", Other, "_2xx_count"),
        ("..a--b..", "", Other, "a_b"),
        ("ns:sub.metric", "", Other, "ns:sub_metric"),
    ] {
        assert_eq!(
            metric_name(name, unit, kind, true, None),
            want,
            "{name} [{unit}]"
        );
    }
    assert_eq!(
        metric_name("hw.energy", "J", Counter, false, None),
        "hw_energy",
        "add_metric_suffixes: false adds neither unit nor _total"
    );
    assert_eq!(
        metric_name("hw.power", "W", Gauge, true, Some("hpc")),
        "hpc_hw_power_watts"
    );
    assert_eq!(unit_suffix("{packet}", false), None);
    assert_eq!(unit_suffix("1", true).as_deref(), Some("ratio"));
}

#[test]
fn label_names_are_sanitized_and_values_escaped() {
    let batch = vec![rm(
        vec![],
        vec![metric(
            "m",
            "",
            "line one\nback\\slash",
            Data::Gauge(Gauge {
                data_points: vec![point(
                    1.0,
                    vec![
                        kv("k8s.pod.name", "a\"b\\c\nd"),
                        kv("0day", "x"),
                        kv("__meta", "y"),
                        kv("a.b", "1"),
                        kv("a_b", "2"),
                        kv("empty", ""),
                        kvi("count", 3),
                        KeyValue {
                            key: "list".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(any_value::Value::StringValue("x".into())),
                                    }],
                                })),
                            }),
                            ..Default::default()
                        },
                    ],
                    0,
                )],
            }),
        )],
    )];
    let text = exposition(&Config::default(), &[batch]);
    assert_eq!(
        text,
        "\
# HELP m line one\\nback\\\\slash
# TYPE m gauge
m{a_b=\"1;2\",count=\"3\",k8s_pod_name=\"a\\\"b\\\\c\\nd\",key_0day=\"x\",key__meta=\"y\",list=\"[\\\"x\\\"]\"} 1
"
    );
}

#[test]
fn non_finite_values_print_as_nan_and_inf() {
    let batch = vec![rm(
        vec![],
        vec![gauge(
            "g",
            "",
            vec![
                point(f64::NAN, vec![kv("v", "nan")], 0),
                point(f64::INFINITY, vec![kv("v", "pos")], 0),
                point(f64::NEG_INFINITY, vec![kv("v", "neg")], 0),
                point(1e-7, vec![kv("v", "tiny")], 0),
                point(1.5e300, vec![kv("v", "huge")], 0),
            ],
        )],
    )];
    let text = exposition(&Config::default(), &[batch]);
    assert_eq!(
        samples(&text),
        [
            "g{v=\"huge\"} 1.5e300",
            "g{v=\"nan\"} NaN",
            "g{v=\"neg\"} -Inf",
            "g{v=\"pos\"} +Inf",
            "g{v=\"tiny\"} 1e-7",
        ]
    );
}

// --- state: accumulation, merging, expiration ---

#[test]
fn delta_sums_accumulate_and_cumulative_ones_keep_the_last_value() {
    let delta = |v| {
        vec![rm(
            vec![],
            vec![sum(
                "requests",
                "",
                true,
                AggregationTemporality::Delta,
                vec![int_point(v, vec![])],
            )],
        )]
    };
    let cumulative = |v| {
        vec![rm(
            vec![],
            vec![sum(
                "sent",
                "By",
                true,
                AggregationTemporality::Cumulative,
                vec![int_point(v, vec![])],
            )],
        )]
    };
    let text = exposition(
        &Config::default(),
        &[delta(3), delta(4), cumulative(100), cumulative(150)],
    );
    assert_eq!(samples(&text), ["requests_total 7", "sent_bytes_total 150"]);
}

#[test]
fn delta_histograms_accumulate_per_bucket() {
    let h = |counts: Vec<u64>| {
        vec![rm(
            vec![],
            vec![metric(
                "d",
                "s",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        count: counts.iter().sum(),
                        sum: Some(1.0),
                        bucket_counts: counts,
                        explicit_bounds: vec![1.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            )],
        )]
    };
    let text = exposition(&Config::default(), &[h(vec![1, 2]), h(vec![3, 4])]);
    assert_eq!(
        samples(&text),
        [
            "d_seconds_bucket{le=\"1\"} 4",
            "d_seconds_bucket{le=\"+Inf\"} 10",
            "d_seconds_sum 2",
            "d_seconds_count 10",
        ]
    );
}

#[test]
fn identical_series_from_two_resources_merge_keeping_the_latest_point() {
    let from = |node: &str, v: f64, t: u64| {
        vec![rm(
            vec![kv(semconv::HOST_NAME, node)],
            vec![gauge(
                "temp",
                "Cel",
                vec![point(v, vec![kv("sensor", "a")], t)],
            )],
        )]
    };
    // The later point (t=20) arrives first; the older one (t=10) must not overwrite it.
    let text = exposition(
        &Config::default(),
        &[from("n1", 50.0, 20), from("n2", 40.0, 10)],
    );
    let temp: Vec<_> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("temp_"))
        .collect();
    assert_eq!(temp, ["temp_celsius{sensor=\"a\"} 50"]);
    // Both in one batch, newest last.
    let mut both = from("n1", 1.0, 5);
    both.extend(from("n2", 2.0, 6));
    let text = exposition(&Config::default(), &[both]);
    assert!(text.contains("temp_celsius{sensor=\"a\"} 2\n"), "{text}");
    assert_eq!(text.matches("temp_celsius{").count(), 1, "{text}");
}

#[test]
fn series_disappear_after_metric_expiration() {
    let config = Config {
        metric_expiration: Duration::from_secs(60),
        ..Config::default()
    };
    let mut s = store(&config);
    let t0 = Instant::now();
    let batch = |name: &str| {
        vec![rm(
            vec![],
            vec![gauge(name, "", vec![point(1.0, vec![], 0)])],
        )]
    };
    s.update(&batch("old"), t0);
    s.update(&batch("fresh"), t0 + Duration::from_secs(50));
    let at = |secs| t0 + Duration::from_secs(secs);
    assert_eq!(samples(&s.render(at(59))), ["fresh 1", "old 1"]);
    assert_eq!(
        samples(&s.render(at(60))),
        ["fresh 1"],
        "old expired at 60 s"
    );
    assert!(
        !s.render(at(60)).contains("# TYPE old"),
        "its family goes too"
    );
    assert_eq!(samples(&s.render(at(110))), Vec::<&str>::new());
}

#[test]
fn a_point_without_recorded_value_removes_its_series() {
    let mut s = store(&Config::default());
    let now = Instant::now();
    s.update(
        &[rm(
            vec![],
            vec![gauge("g", "", vec![point(1.0, vec![], 0)])],
        )],
        now,
    );
    let gone = NumberDataPoint {
        flags: DataPointFlags::NoRecordedValueMask as u32,
        ..Default::default()
    };
    assert_eq!(
        s.update(&[rm(vec![], vec![gauge("g", "", vec![gone])])], now),
        0
    );
    assert_eq!(s.render(now), "");
}

#[test]
fn unrepresentable_points_are_counted_as_dropped() {
    let mut s = store(&Config::default());
    let batch = vec![rm(
        vec![],
        vec![
            gauge("no_value", "", vec![NumberDataPoint::default()]),
            sum(
                "unspecified",
                "",
                true,
                AggregationTemporality::Unspecified,
                vec![int_point(1, vec![]), int_point(2, vec![])],
            ),
            metric(
                "bad_buckets",
                "",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![1.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            gauge("fine", "", vec![point(1.0, vec![], 0)]),
        ],
    )];
    assert_eq!(s.update(&batch, Instant::now()), 4);
    assert_eq!(samples(&s.render(Instant::now())), ["fine 1"]);
}

// --- resources, scopes, const labels, namespace ---

#[test]
fn resource_attributes_go_to_target_info_and_job_instance_to_every_series() {
    let mut batch = vec![rm(
        vec![
            kv(semconv::SERVICE_NAME, "trainer"),
            kv("service.namespace", "ml"),
            kv(semconv::SERVICE_INSTANCE_ID, "pod-1"),
            kv(semconv::HOST_NAME, "node-a"),
        ],
        vec![gauge("hw.power", "W", vec![point(300.0, vec![], 0)])],
    )];
    batch[0].scope_metrics[0].scope = Some(InstrumentationScope {
        name: "hpcotel".into(),
        version: "0.1.0".into(),
        ..Default::default()
    });
    let config = Config {
        const_labels: [("cluster".to_owned(), "gpu-a".to_owned())].into(),
        namespace: Some("hpc".into()),
        ..Config::default()
    };
    let text = exposition(&config, std::slice::from_ref(&batch));
    assert_eq!(
        samples(&text),
        [
            "hpc_hw_power_watts{cluster=\"gpu-a\",instance=\"pod-1\",job=\"ml/trainer\",otel_scope_name=\"hpcotel\",otel_scope_version=\"0.1.0\"} 300",
            "target_info{cluster=\"gpu-a\",host_name=\"node-a\",instance=\"pod-1\",job=\"ml/trainer\"} 1",
        ]
    );
    assert!(text.contains("# HELP target_info Target metadata\n# TYPE target_info gauge\n"));

    let config = Config {
        resource_to_telemetry_conversion: ResourceToTelemetryConversion { enabled: true },
        ..Config::default()
    };
    let text = exposition(&config, &[batch]);
    assert_eq!(
        samples(&text),
        [
            "hw_power_watts{host_name=\"node-a\",instance=\"pod-1\",job=\"ml/trainer\",otel_scope_name=\"hpcotel\",otel_scope_version=\"0.1.0\",service_instance_id=\"pod-1\",service_name=\"trainer\",service_namespace=\"ml\"} 300"
        ],
        "resource attributes on the series, no target_info"
    );
}

// --- dcgm-exporter compatibility ---

/// What the GPU receiver reports for GPU `index` (data point attributes).
fn gpu_attrs(index: i64) -> Vec<KeyValue> {
    vec![
        kv(semconv::HW_ID, &format!("GPU-0000000{index}-aaaa")),
        kv(semconv::HW_NAME, &format!("gpu{index}")),
        kv(semconv::HW_TYPE, "gpu"),
        kv(semconv::HW_MODEL, "NVIDIA H100 80GB HBM3"),
        kvi(semconv::HPCOTEL_GPU_INDEX, index),
        kv(
            semconv::HPCOTEL_GPU_PCI_BUS_ID,
            &format!("00000000:1{index}:00.0"),
        ),
    ]
}

fn with(mut attrs: Vec<KeyValue>, extra: &[(&str, &str)]) -> Vec<KeyValue> {
    attrs.extend(extra.iter().map(|(k, v)| kv(k, v)));
    attrs
}

fn dcgm_config() -> Config {
    Config {
        dcgm_compatible: true,
        ..Config::default()
    }
}

#[test]
fn dcgm_mode_uses_dcgm_exporter_names_units_and_labels() {
    let pod = vec![
        kv(semconv::HOST_NAME, "gpu-node-1"),
        kv(semconv::K8S_POD_NAME, "train-0"),
        kv(semconv::K8S_NAMESPACE_NAME, "ml"),
        kv(semconv::K8S_CONTAINER_NAME, "main"),
    ];
    let cumulative = AggregationTemporality::Cumulative;
    let batch = vec![rm(
        pod,
        vec![
            gauge(
                semconv::METRIC_HW_GPU_UTILIZATION,
                "1",
                vec![
                    point(
                        0.87,
                        with(gpu_attrs(0), &[(semconv::HW_GPU_TASK, "general")]),
                        0,
                    ),
                    point(
                        0.1,
                        with(gpu_attrs(0), &[(semconv::HW_GPU_TASK, "encoder")]),
                        0,
                    ),
                ],
            ),
            sum(
                semconv::METRIC_HW_GPU_MEMORY_USAGE,
                "By",
                false,
                cumulative,
                vec![int_point(3 * 1024 * 1024 * 1024, gpu_attrs(0))],
            ),
            gauge(
                semconv::METRIC_GPU_CLOCK_FREQUENCY,
                "Hz",
                vec![
                    point(
                        1.98e9,
                        with(gpu_attrs(0), &[(semconv::HPCOTEL_GPU_CLOCK_TYPE, "sm")]),
                        0,
                    ),
                    point(
                        1.755e9,
                        with(
                            gpu_attrs(0),
                            &[(semconv::HPCOTEL_GPU_CLOCK_TYPE, "graphics")],
                        ),
                        0,
                    ),
                ],
            ),
            sum(
                semconv::METRIC_HW_ENERGY,
                "J",
                true,
                cumulative,
                vec![point(1234.5, gpu_attrs(0), 0)],
            ),
            sum(
                semconv::METRIC_HW_ERRORS,
                "{error}",
                true,
                cumulative,
                vec![int_point(
                    2,
                    with(gpu_attrs(0), &[(semconv::ERROR_TYPE, "corrected")]),
                )],
            ),
            gauge(
                semconv::METRIC_GPU_FAN_SPEED,
                "1",
                vec![point(
                    0.4,
                    [gpu_attrs(0), vec![kvi(semconv::HPCOTEL_GPU_FAN_INDEX, 0)]].concat(),
                    0,
                )],
            ),
        ],
    )];
    let text = exposition(&dcgm_config(), &[batch]);
    let labels = "gpu=\"0\",Hostname=\"gpu-node-1\",UUID=\"GPU-00000000-aaaa\",container=\"main\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",namespace=\"ml\",pci_bus_id=\"00000000:10:00.0\",pod=\"train-0\"";
    // Labels print sorted by name (Prometheus does not care about their order).
    let sorted = {
        let mut l: Vec<&str> = labels.split(',').collect();
        l.sort_by_key(|p| p.split('=').next().unwrap().to_owned());
        l.join(",")
    };
    for (line, help, kind) in [
        (
            format!("DCGM_FI_DEV_GPU_UTIL{{{sorted}}} 87"),
            "GPU utilization (in %).",
            "gauge",
        ),
        (
            format!("DCGM_FI_DEV_ENC_UTIL{{{sorted}}} 10"),
            "Encoder utilization (in %).",
            "gauge",
        ),
        (
            format!("DCGM_FI_DEV_FB_USED{{{sorted}}} 3072"),
            "Framebuffer memory used (in MiB).",
            "gauge",
        ),
        (
            format!("DCGM_FI_DEV_SM_CLOCK{{{sorted}}} 1980"),
            "SM clock frequency (in MHz).",
            "gauge",
        ),
        (
            format!("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{sorted}}} 1234500"),
            "Total energy consumption since boot (in mJ).",
            "counter",
        ),
        (
            format!("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{{sorted}}} 2"),
            "Total number of single-bit volatile ECC errors.",
            "counter",
        ),
        (
            format!("DCGM_FI_DEV_FAN_SPEED{{{sorted}}} 40"),
            "Fan speed (in %).",
            "gauge",
        ),
    ] {
        let name = line.split('{').next().unwrap();
        let block = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{line}\n");
        assert!(text.contains(&block), "missing:\n{block}\nin:\n{text}");
    }
    // Mapped points appear only under their DCGM name; the unmapped clock keeps its
    // OpenTelemetry name and labels.
    for gone in [
        "hw_gpu_utilization_ratio",
        "hw_gpu_memory_usage_bytes",
        "hw_energy_joules_total",
        "hw_errors_total",
    ] {
        assert!(!text.contains(gone), "{gone} still exported:\n{text}");
    }
    assert!(
        text.contains("hpcotel_gpu_clock_frequency_hertz{hpcotel_gpu_clock_type=\"graphics\",hpcotel_gpu_index=\"0\""),
        "{text}"
    );
    assert!(!text.contains("hpcotel_gpu_clock_type=\"sm\""), "{text}");
}

#[test]
fn dcgm_mode_labels_mig_instances_with_their_parent_gpu() {
    let mig = vec![
        kv(semconv::HW_ID, "MIG-1111-2222"),
        kv(semconv::HW_PARENT, "GPU-00000003-aaaa"),
        kv(semconv::HW_MODEL, "NVIDIA A100-SXM4-80GB"),
        kvi(semconv::HPCOTEL_GPU_INDEX, 3),
        kv(semconv::HPCOTEL_GPU_PCI_BUS_ID, "00000000:13:00.0"),
        kv(semconv::HPCOTEL_GPU_MIG_PROFILE, "1g.10gb"),
        kvi(semconv::HPCOTEL_GPU_MIG_GPU_INSTANCE_ID, 9),
        kv(semconv::HW_GPU_TASK, "general"),
    ];
    // No pod on this GPU, and the node name from Kubernetes only.
    let batch = vec![rm(
        vec![
            kv(semconv::K8S_NODE_NAME, "node-7"),
            kv(semconv::K8S_POD_NAME, ""),
        ],
        vec![gauge(
            semconv::METRIC_HW_GPU_UTILIZATION,
            "1",
            vec![point(0.5, mig, 0)],
        )],
    )];
    let text = exposition(&dcgm_config(), &[batch]);
    assert!(
        samples(&text).contains(
            &"DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=\"9\",GPU_I_PROFILE=\"1g.10gb\",Hostname=\"node-7\",UUID=\"GPU-00000003-aaaa\",device=\"nvidia3\",gpu=\"3\",modelName=\"NVIDIA A100-SXM4-80GB\",pci_bus_id=\"00000000:13:00.0\"} 50"
        ),
        "{text}"
    );
}

#[test]
fn dcgm_series_follow_the_gpu_to_its_next_pod_at_once() {
    let on = |pod: Option<&str>, v: f64| {
        let resource = pod.map_or_else(Vec::new, |p| {
            vec![
                kv(semconv::K8S_POD_NAME, p),
                kv(semconv::K8S_NAMESPACE_NAME, "ml"),
            ]
        });
        let util = |gpu| {
            point(
                v,
                with(gpu_attrs(gpu), &[(semconv::HW_GPU_TASK, "general")]),
                0,
            )
        };
        vec![rm(
            resource,
            vec![gauge(
                semconv::METRIC_HW_GPU_UTILIZATION,
                "1",
                vec![util(0), util(1)],
            )],
        )]
    };
    let text = exposition(
        &dcgm_config(),
        &[on(Some("a"), 0.1), on(Some("b"), 0.2), on(None, 0.3)],
    );
    let util: Vec<_> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL"))
        .collect();
    assert_eq!(
        util.len(),
        2,
        "one series per GPU, under its latest pod: {util:#?}"
    );
    assert!(
        util.iter()
            .all(|l| !l.contains("pod=") && l.ends_with(" 30")),
        "{util:#?}"
    );
}

#[test]
fn dcgm_mapping_table_is_consistent() {
    let mut names: Vec<_> = DCGM_MAPPINGS.iter().map(|m| m.dcgm_name).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        DCGM_MAPPINGS.len(),
        "a DCGM name appears twice"
    );
    for m in DCGM_MAPPINGS {
        assert!(m.dcgm_name.starts_with("DCGM_FI_"), "{}", m.dcgm_name);
        assert!(!m.help.is_empty(), "{} has no help", m.dcgm_name);
        assert!(m.scale > 0.0);
        assert!(
            !DCGM_MAPPINGS.iter().any(|o| o.dcgm_name != m.dcgm_name
                && o.metric == m.metric
                && o.filter == m.filter),
            "{} overlaps another mapping",
            m.dcgm_name
        );
    }
    let counters: Vec<_> = DCGM_MAPPINGS
        .iter()
        .filter(|m| m.prom_type == PromType::Counter)
        .map(|m| m.dcgm_name)
        .collect();
    for c in [
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    ] {
        assert!(counters.contains(&c), "{c} must be a counter");
    }
    let util = &DCGM_MAPPINGS[0];
    assert_eq!(util.dcgm_name, "DCGM_FI_DEV_GPU_UTIL");
    for pct in 0..=100 {
        assert_eq!(
            util.convert(f64::from(pct) / 100.0),
            f64::from(pct),
            "{pct} %"
        );
    }
    assert!(util.convert(f64::NAN).is_nan());
    let table = migration_table();
    assert_eq!(table.lines().count(), DCGM_MAPPINGS.len() + 2);
    assert!(table.contains(
        "| `DCGM_FI_DEV_GPU_UTIL` | `hw.gpu.utilization{hw.gpu.task=general}` | × 100 (fraction → %) | gauge |"
    ));
}

#[test]
fn dcgm_names_are_not_used_without_dcgm_compatible() {
    let batch = vec![rm(
        vec![],
        vec![gauge(
            semconv::METRIC_HW_GPU_UTILIZATION,
            "1",
            vec![point(
                0.5,
                with(gpu_attrs(1), &[(semconv::HW_GPU_TASK, "general")]),
                0,
            )],
        )],
    )];
    let text = exposition(&Config::default(), &[batch]);
    assert!(!text.contains("DCGM_"), "{text}");
    assert!(
        text.contains("hw_gpu_utilization_ratio{hpcotel_gpu_index=\"1\","),
        "{text}"
    );
}

// --- configuration ---

#[test]
fn config_defaults_and_mistakes() {
    let c: Config = serde_yaml::from_str("{}").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.endpoint, HostPort::new("127.0.0.1", 9464));
    assert_eq!(c.metric_expiration, Duration::from_secs(300));
    assert!(c.add_metric_suffixes && !c.dcgm_compatible);
    assert!(!c.resource_to_telemetry_conversion.enabled);

    let c: Config = serde_yaml::from_str(
        "endpoint: 0.0.0.0:9400\nnamespace: hpc\nconst_labels: {cluster: a}\n\
         metric_expiration: 90s\nresource_to_telemetry_conversion: {enabled: true}\n\
         add_metric_suffixes: false\ndcgm_compatible: true\nauth: {token: s3cret}\n",
    )
    .unwrap();
    assert_eq!(c.endpoint.port, 9400);
    assert_eq!(c.metric_expiration, Duration::from_secs(90));
    assert!(c.resource_to_telemetry_conversion.enabled && c.dcgm_compatible);
    assert!(!serde_yaml::to_string(&c).unwrap().contains("s3cret"));

    for (yaml, want) in [
        ("send_timestamps: true", "unknown field `send_timestamps`"),
        (
            "metric_expiration: 0s",
            "expected a duration of at least 1s, got 0s",
        ),
        ("endpoint: 9464", "expected host:port"),
        (
            "resource_to_telemetry_conversion: {on: true}",
            "unknown field `on`",
        ),
    ] {
        let err = serde_yaml::from_str::<Config>(yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

// --- the exporter over real HTTP ---

fn local_config() -> Config {
    Config {
        endpoint: HostPort::new("127.0.0.1", 0),
        ..Config::default()
    }
}

fn url(e: &PrometheusExporter, path: &str) -> String {
    format!("http://{}{path}", e.local_addr())
}

#[tokio::test]
async fn serves_the_exposition_over_http() {
    let exporter = PrometheusExporter::new(&local_config()).unwrap();
    let client = reqwest::Client::new();

    let empty = client.get(url(&exporter, "/metrics")).send().await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.text().await.unwrap(), "", "nothing exported yet");

    let batch = Batch::Metrics(vec![rm(
        vec![],
        vec![gauge(
            "hw.power",
            "W",
            vec![point(312.5, vec![kv("hw.id", "GPU-1")], 0)],
        )],
    )]);
    let outcome = exporter.export(&batch).await.unwrap();
    assert_eq!(outcome.rejected, 0);
    // Logs are accepted and change nothing.
    let logs = Batch::Logs(vec![ResourceLogs::default()]);
    assert_eq!(exporter.export(&logs).await.unwrap().rejected, 0);

    let resp = client.get(url(&exporter, "/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert_eq!(
        body,
        "# TYPE hw_power_watts gauge\nhw_power_watts{hw_id=\"GPU-1\"} 312.5\n"
    );

    // gzip when the scraper asks for it (Prometheus does).
    let resp = client
        .get(url(&exporter, "/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let gz = resp.bytes().await.unwrap();
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, body);

    let head = client
        .head(url(&exporter, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        client
            .get(url(&exporter, "/"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(url(&exporter, "/metricsx"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let post = client
        .post(url(&exporter, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    // Shutdown closes the endpoint.
    let addr = exporter.local_addr();
    exporter.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is released at shutdown"
    );
}

#[tokio::test]
async fn bearer_auth_guards_the_endpoint() {
    let config = Config {
        auth: Some(BearerAuthConfig {
            token: Secret::new("s3cret"),
        }),
        ..local_config()
    };
    let exporter = PrometheusExporter::new(&config).unwrap();
    let client = reqwest::Client::new();
    let get = |auth: Option<&'static str>| {
        let mut req = client.get(url(&exporter, "/metrics"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let denied = get(None).await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["www-authenticate"], "Bearer");
    assert_eq!(get(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(get(Some("Basic s3cret")).await.unwrap().status(), 401);
    assert_eq!(get(Some("Bearer s3cret")).await.unwrap().status(), 200);
    assert_eq!(get(Some("bearer  s3cret ")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_port_in_use_fails_the_build_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = Config {
        endpoint: HostPort::new("127.0.0.1", port),
        ..Config::default()
    };
    let err = PrometheusExporter::new(&config).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "endpoint: could not listen on 127.0.0.1:{port} for Prometheus scrapes: "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let err = PrometheusExporter::new(&local_config()).unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
}
