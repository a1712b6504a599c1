use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, "test.yaml", &env(&[]))
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

const MINIMAL: &str = "
receivers:
  otlp/in:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp/in]
      exporters: [debug]
";

#[test]
fn embedded_default_is_valid_and_complete() {
    let c = Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME, &env(&[])).unwrap();
    let pipelines: Vec<&str> = c.service.pipelines.keys().map(String::as_str).collect();
    assert_eq!(pipelines, ["logs", "metrics", "traces"]);
    assert!(
        c.unused_components().is_empty(),
        "{:?}",
        c.unused_components()
    );
    let ReceiverConfig::Otlp(otlp) = &c.receivers[&"otlp".parse().unwrap()] else {
        panic!("otlp receiver missing")
    };
    let yaml = serde_yaml::to_string(otlp).unwrap();
    assert!(
        yaml.contains("127.0.0.1:4317") && yaml.contains("127.0.0.1:4318"),
        "{yaml}"
    );
}

#[test]
fn minimal_config_fills_defaults() {
    let c = parse(MINIMAL).unwrap();
    let p = &c.service.pipelines["traces"];
    assert_eq!(p.queue_size, DEFAULT_PIPELINE_QUEUE_SIZE);
    assert_eq!(c.service.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert_eq!(c.service.telemetry.metrics.level, SelfMetricsLevel::Basic);
}

#[test]
fn env_references_expand_with_types_and_defaults() {
    let text = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:GRPC_EP}
processors:
  batch:
    send_batch_size: ${env:BATCH}
    timeout: ${env:BATCH_TIMEOUT:-2s}
exporters:
  debug:
service:
  shutdown_timeout: 5s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
";
    let c = Config::parse(
        text,
        "t.yaml",
        &env(&[("GRPC_EP", "127.0.0.1:9999"), ("BATCH", "17")]),
    )
    .unwrap();
    let ProcessorConfig::Batch(b) = &c.processors[&"batch".parse().unwrap()] else {
        panic!("batch processor missing")
    };
    assert_eq!(b.send_batch_size, 17);
    assert_eq!(b.timeout, Duration::from_secs(2));
    assert_eq!(c.service.shutdown_timeout, Duration::from_secs(5));
    assert!(c.to_yaml().contains("127.0.0.1:9999"));

    let e = Config::parse(text, "t.yaml", &env(&[("BATCH", "1")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml: receivers.otlp.protocols.grpc.endpoint: environment variable GRPC_EP is not set \
         (write ${env:GRPC_EP:-default} to give a default)"
    );
}

#[test]
fn expansion_handles_escapes_and_embedded_references() {
    let e = env(&[("A", "x")]);
    assert_eq!(
        expand::expand_str("pre-${env:A}-post", &e).unwrap(),
        "pre-x-post"
    );
    assert_eq!(expand::expand_str("cost: $$5", &e).unwrap(), "cost: $5");
    assert_eq!(expand::expand_str("${env:B:-}", &e).unwrap(), "");
    assert!(
        expand::expand_str("${file:/x}", &e)
            .unwrap_err()
            .contains("only ${env:NAME}")
    );
    assert!(
        expand::expand_str("${env:A", &e)
            .unwrap_err()
            .contains("unterminated")
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let e = err(&MINIMAL.replace("  debug:", "  debug:\n    verbosity_level: 3"));
    assert!(e.starts_with("test.yaml: exporters.debug"), "{e}");
    assert!(e.contains("unknown field `verbosity_level`"), "{e}");

    let e = err(&format!("{MINIMAL}connectors: {{}}\n"));
    assert!(e.contains("unknown field `connectors`"), "{e}");
}

#[test]
fn extensions_are_defined_then_listed_in_service() {
    let text = MINIMAL.replace(
        "service:\n",
        "extensions:\n  health_check:\n  health_check/pod:\n    endpoint: 10.0.0.7:13134\n\
         service:\n  extensions: [health_check/pod]\n",
    );
    let c = parse(&text).unwrap();
    let ExtensionConfig::HealthCheck(h) = &c.extensions[&"health_check".parse().unwrap()];
    assert_eq!(
        h.endpoint.to_string(),
        "127.0.0.1:13133",
        "loopback by default"
    );
    assert_eq!(h.drop_window, std::time::Duration::from_secs(60));
    assert_eq!(c.service.extensions, ["health_check/pod".parse().unwrap()]);
    assert_eq!(c.unused_extensions(), ["extensions.health_check"]);
    assert!(parse(MINIMAL).unwrap().service.extensions.is_empty());

    let e = err(&text.replace("[health_check/pod]", "[health_check/pod, healthcheck]"));
    assert_eq!(
        e,
        "test.yaml: service.extensions: extension 'healthcheck' is not defined under extensions \
         (defined: health_check, health_check/pod)"
    );
    let e = err(&text.replace("[health_check/pod]", "[health_check, health_check]"));
    assert_eq!(
        e,
        "test.yaml: service.extensions: 'health_check' is listed twice"
    );
    let e = err(&text.replace("  health_check:\n", "  zpages:\n"));
    assert_eq!(
        e,
        "test.yaml: extensions.zpages: unknown extension type 'zpages'; known types: health_check"
    );
    let e = err(&text.replace("10.0.0.7:13134", "pod-ip"));
    assert_eq!(
        e,
        "test.yaml: extensions.health_check/pod.endpoint: expected host:port, got 'pod-ip'"
    );
    let e = err(&text.replace("endpoint:", "port:"));
    assert!(
        e.starts_with("test.yaml: extensions.health_check/pod.port: unknown field `port`"),
        "{e}"
    );
}

#[test]
fn self_metrics_interval_must_be_positive() {
    let e = err(&MINIMAL.replace(
        "service:\n",
        "service:\n  telemetry: { metrics: { interval: 0s } }\n",
    ));
    assert_eq!(
        e,
        "test.yaml: service.telemetry.metrics.interval: expected a positive duration, got 0s"
    );
}

#[test]
fn undefined_components_in_pipelines_are_named() {
    let e = err(&MINIMAL.replace("exporters: [debug]", "exporters: [debug, otlp/tempo]"));
    assert_eq!(
        e,
        "test.yaml: service.pipelines.traces.exporters: exporter 'otlp/tempo' is not defined under exporters (defined: debug)"
    );
}

#[test]
fn unknown_types_and_bad_ids_are_named() {
    let e = err(&MINIMAL.replace("  debug:", "  debug:\n  kafka/x:"));
    assert_eq!(
        e,
        "test.yaml: exporters.kafka/x: unknown exporter type 'kafka'; known types: otlp, otlphttp, file, debug, prometheus"
    );
    let e = err(&MINIMAL.replace("    traces:", "    spans:"));
    assert!(
        e.starts_with("test.yaml: service.pipelines.spans: pipeline type must be"),
        "{e}"
    );
}

#[test]
fn receivers_must_produce_the_pipeline_signal() {
    let e = err(&MINIMAL
        .replace("otlp/in:", "otlp/in:\n  host:")
        .replace("[otlp/in]", "[otlp/in, host]"));
    assert_eq!(
        e,
        "test.yaml: service.pipelines.traces.receivers: receiver 'host' does not produce traces"
    );
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let e = err("receivers:\n  otlp: [unclosed\n");
    assert!(e.starts_with("test.yaml:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn empty_or_pipeline_less_configs_are_rejected() {
    assert!(err("").contains("service"));
    let e = err("exporters:\n  debug:\nservice:\n  pipelines: {}\n");
    assert_eq!(
        e,
        "test.yaml: service.pipelines: at least one pipeline (traces, metrics or logs) is required"
    );
}
