//! Pod identity from the connection, in the real binary: the kubernetes receiver (against
//! testkit's fake kube-apiserver) knows the node's pod IPs; a pod that connects from its
//! own address and claims another team's pod gets its own identity on the exported data
//! (and the Catalog's workload, not the one it claimed), the claim counted; a client that is
//! no pod of the node (here 127.0.0.1: a host-network pod, a process on the node) keeps its
//! own attributes, marked unverified.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::otlp::{attr_str, kv, spans_request};
use common::{Hpcotel, free_port};
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

const WAIT: Duration = Duration::from_secs(30);
/// The hostile pod's address (Linux routes all of 127/8 to loopback).
const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Spans named `run-*` whose resource claims to be `team-a/victim-trainer-0`.
fn claiming_victim(run: &str, n: usize) -> ExportTraceServiceRequest {
    let mut req = spans_request(run, 0, n);
    let attrs = &mut req.resource_spans[0]
        .resource
        .get_or_insert_with(Default::default)
        .attributes;
    attrs.extend([
        kv(semconv::K8S_NAMESPACE_NAME, "team-a"),
        kv(semconv::K8S_POD_NAME, "victim-trainer-0"),
        kv(semconv::K8S_DEPLOYMENT_NAME, "victim-trainer"),
        kv(semconv::HPCOTEL_IDENTITY_SOURCE, "connection"),
    ]);
    req
}

async fn send_from(from: IpAddr, port: u16, req: ExportTraceServiceRequest) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .local_address(Some(from))
        .connect()
        .await
        .unwrap();
    TraceServiceClient::new(channel)
        .export(req)
        .await
        .expect("hpcotel accepts the request");
}

/// The resource attribute `key` of the resource holding the span named `span`.
fn resource_of<'a>(rs: &'a [ResourceSpans], span: &str) -> Option<&'a ResourceSpans> {
    rs.iter().find(|r| {
        r.scope_spans
            .iter()
            .flat_map(|s| &s.spans)
            .any(|s| s.name == span)
    })
}

fn res<'a>(r: &'a ResourceSpans, key: &str) -> Option<&'a str> {
    attr_str(&r.resource.as_ref()?.attributes, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_claiming_another_pods_name_gets_its_own_identity_and_the_claim_is_counted() {
    let api = FakeApiServer::start().await;
    for (ns, name, ip, rs) in [
        (
            "team-b",
            "scraper-0",
            ATTACKER_IP.to_string(),
            "scraper-7d9f",
        ),
        (
            "team-a",
            "victim-trainer-0",
            "10.0.0.20".to_owned(),
            "victim-trainer-5c6b",
        ),
    ] {
        let deployment = rs.rsplit_once('-').unwrap().0;
        api.apply(fixtures::deployment(
            ns,
            deployment,
            &format!("uid-{deployment}"),
            None,
            None,
        ));
        api.apply(fixtures::replicaset(
            ns,
            rs,
            &format!("uid-{rs}"),
            Some((deployment, &format!("uid-{deployment}"))),
            "2026-12-07T06:00:00Z",
        ));
        api.apply(fixtures::pod(
            ns,
            name,
            &format!("uid-{name}"),
            "node-1",
            Some(("ReplicaSet", rs, &format!("uid-{rs}"))),
            &ip,
            &[],
            &[],
        ));
    }
    let sink = OtlpSink::start().await;
    let metrics = OtlpSink::start().await;
    let otlp = free_port();
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp}" }}
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
  otlp/self: {{ endpoint: "{metrics}" }}
service:
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [enrich], exporters: [otlp] }}
    metrics: {{ receivers: [otlp], exporters: [otlp/self] }}
"#,
        api = api.url(),
        sink = sink.grpc_endpoint(),
        metrics = metrics.grpc_endpoint(),
    ));

    // Until the Catalog has the node's pods, nothing can be verified: probe until a span
    // from the attacker's address comes back verified.
    let deadline = std::time::Instant::now() + WAIT;
    let mut probe = 0;
    loop {
        let name = format!("probe{probe}-0");
        send_from(
            ATTACKER_IP.into(),
            otlp,
            spans_request(&format!("probe{probe}"), 0, 1),
        )
        .await;
        let r = sink
            .wait_for("the probe span", WAIT, |r| {
                resource_of(&r.traces, &name).is_some()
            })
            .await;
        if res(
            resource_of(&r.traces, &name).unwrap(),
            semconv::HPCOTEL_IDENTITY_SOURCE,
        ) == Some("connection")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Catalog never knew the pod's IP"
        );
        probe += 1;
    }

    send_from(ATTACKER_IP.into(), otlp, claiming_victim("attack", 4)).await;
    send_from(Ipv4Addr::LOCALHOST.into(), otlp, claiming_victim("host", 2)).await;
    let r = sink
        .wait_for("both requests", WAIT, |r| {
            resource_of(&r.traces, "attack-0").is_some()
                && resource_of(&r.traces, "host-0").is_some()
        })
        .await;

    let attack = resource_of(&r.traces, "attack-0").unwrap();
    for (key, want) in [
        (semconv::K8S_NAMESPACE_NAME, "team-b"),
        (semconv::K8S_POD_NAME, "scraper-0"),
        (semconv::K8S_POD_UID, "uid-scraper-0"),
        (semconv::K8S_DEPLOYMENT_NAME, "scraper"),
        (semconv::HPCOTEL_IDENTITY_SOURCE, "connection"),
    ] {
        assert_eq!(res(attack, key), Some(want), "the attacker's spans: {key}");
    }
    let host = resource_of(&r.traces, "host-0").unwrap();
    for (key, want) in [
        (semconv::K8S_NAMESPACE_NAME, "team-a"),
        (semconv::K8S_POD_NAME, "victim-trainer-0"),
        (semconv::HPCOTEL_IDENTITY_SOURCE, "attributes"),
    ] {
        assert_eq!(res(host, key), Some(want), "a client that is no pod: {key}");
    }
    let victims = r
        .traces
        .iter()
        .filter(|rs| res(rs, semconv::K8S_POD_NAME) == Some("victim-trainer-0"))
        .filter(|rs| res(rs, semconv::HPCOTEL_IDENTITY_SOURCE) == Some("connection"))
        .count();
    assert_eq!(victims, 0, "nothing is verified as the victim's");

    // The 4 corrected spans are counted: hpcotel.receiver.corrected{reason=identity}.
    let corrected = |r: &hpcotel_testkit::sink::Received| -> i64 {
        r.metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == semconv::METRIC_HPCOTEL_RECEIVER_CORRECTED)
            .filter_map(|m| match &m.data {
                Some(Data::Sum(s)) => s
                    .data_points
                    .iter()
                    .find(|p| attr_str(&p.attributes, semconv::HPCOTEL_REASON) == Some("identity")),
                _ => None,
            })
            .filter_map(|p| match p.value {
                Some(Value::AsInt(v)) => Some(v),
                _ => None,
            })
            .next_back()
            .unwrap_or(0)
    };
    let m = metrics
        .wait_for("the corrected counter", WAIT, |r| corrected(r) >= 4)
        .await;
    println!(
        "pod identity: the attacker's 4 spans carry team-b/scraper-0 (claimed \
         team-a/victim-trainer-0), hpcotel.receiver.corrected{{reason=identity}} = {}; the \
         host client's 2 spans keep their claim, hpcotel.identity.source=attributes",
        corrected(&m)
    );
    assert_eq!(corrected(&m), 4);
}
