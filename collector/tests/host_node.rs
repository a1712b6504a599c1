//! Host metrics from a DaemonSet pod describe the node: with `K8S_NODE_NAME` set (downward
//! API `spec.nodeName`), `host.name` and `k8s.node.name` are the node's name, not the pod's
//! host name.

mod common;

use std::time::Duration;

use common::Hpcotel;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::attr_str;
use hpcotel_testkit::sink::OtlpSink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_carry_the_node_name_from_k8s_node_name() {
    let sink = OtlpSink::start().await;
    let config = format!(
        r#"
receivers:
  host:
    collection_interval: 100ms
    scrapers: {{ cpu: {{}} }}
exporters:
  otlp:
    endpoint: "{}"
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [host], exporters: [otlp] }}
"#,
        sink.grpc_endpoint()
    );
    let _hpcotel = Hpcotel::start_with_env(&config, &[("K8S_NODE_NAME", "gpu-node-7")]);
    let r = sink
        .wait_for("host metrics", Duration::from_secs(30), |r| {
            !r.metrics.is_empty()
        })
        .await;
    let res = &r.metrics[0].resource.as_ref().unwrap().attributes;
    assert_eq!(attr_str(res, semconv::HOST_NAME), Some("gpu-node-7"));
    assert_eq!(attr_str(res, semconv::K8S_NODE_NAME), Some("gpu-node-7"));
}
