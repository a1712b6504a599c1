//! Acceptance (pod lifecycle as logs): in the real binary, the kubernetes receiver in node
//! mode (against testkit's fake kube-apiserver) turns what the kubelet writes into this
//! node's pod statuses into log records, and the enrich processor joins them to the rollout:
//! a pod of revision bbb that is OOM-killed and then backs off gives one termination record
//! (OOMKilled, exit code 137) and one CrashLoopBackOff record, both carrying revision bbb and
//! the running sync's trace id; a relist repeats neither; a pod of revision aaa stopped by the
//! rollout says aaa.

mod common;

use std::time::{Duration, SystemTime};

use common::{Hpcotel, nanos, rfc3339};
use hpcotel_core::catalog::{rollout_span_id, rollout_trace_id};
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, Verb, fixtures};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
}

/// One lifecycle record as received: its resource's attributes and the record.
struct Lifecycle<'a> {
    resource: &'a [KeyValue],
    record: &'a LogRecord,
}

impl Lifecycle<'_> {
    fn pod(&self) -> String {
        attr(self.resource, semconv::K8S_POD_NAME).unwrap_or_default()
    }
    fn revision(&self) -> Option<String> {
        attr(self.resource, semconv::VCS_REF_HEAD_REVISION)
    }
    fn reason(&self) -> Option<String> {
        attr(
            &self.record.attributes,
            semconv::K8S_CONTAINER_STATUS_REASON,
        )
    }
    fn body(&self) -> String {
        self.record
            .body
            .as_ref()
            .and_then(any_value_string)
            .unwrap_or_default()
    }
}

/// Every lifecycle record received (`event_name` `hpcotel.k8s.container.*`), in order.
fn lifecycle(r: &Received) -> Vec<Lifecycle<'_>> {
    r.logs
        .iter()
        .flat_map(|rl| {
            let resource = rl
                .resource
                .as_ref()
                .map_or(&[][..], |r| r.attributes.as_slice());
            rl.scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .filter(|l| l.event_name.starts_with("hpcotel.k8s.container."))
                .map(move |record| Lifecycle { resource, record })
        })
        .collect()
}

fn of<'a, 'r>(records: &'a [Lifecycle<'r>], pod: &str, event: &str) -> Vec<&'a Lifecycle<'r>> {
    records
        .iter()
        .filter(|l| l.pod() == pod && l.record.event_name == event)
        .collect()
}

fn cid(n: u32) -> String {
    format!("containerd://{n:064x}")
}

/// Pod `ml/<rs>-1` of ReplicaSet `rs` on node-1 with its container `main` in `status`.
fn pod(rs: &str, ip: &str, status: Value, deleting: Option<&str>) -> Value {
    let name = format!("{rs}-1");
    let mut p = fixtures::pod(
        "ml",
        &name,
        &format!("uid-{name}"),
        "node-1",
        Some(("ReplicaSet", rs, &format!("uid-{rs}"))),
        ip,
        &[],
        &[],
    );
    if let Some(at) = deleting {
        p = fixtures::being_deleted(p, at);
    }
    fixtures::with_container_status(p, status)
}

/// Whether the fake has answered at least `n` requests of `verb` on `plural` (a watch once
/// its stream started: the list before it is done).
fn answered(api: &FakeApiServer, verb: Verb, plural: &str, n: usize) -> bool {
    api.requests()
        .iter()
        .filter(|r| r.verb == verb && r.plural == plural && r.status == 200)
        .count()
        >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_pod_of_the_new_revision_shows_under_its_sync() {
    let now = SystemTime::now();
    let api = FakeApiServer::start().await;
    // App `train`: aaa deployed, then bbb; a sync of bbb started a minute ago and runs.
    let started = common::apply_train_app(&api);
    for (rs, created) in [
        ("trainer-a", "2026-11-25T06:00:05Z"),
        ("trainer-b", "2026-11-25T07:00:13Z"),
    ] {
        api.apply(fixtures::replicaset(
            "ml",
            rs,
            &format!("uid-{rs}"),
            Some(("trainer", "uid-dep")),
            created,
        ));
    }
    // aaa's pod runs; bbb's pod was OOM-killed once before the collector started and the
    // kubelet restarted it at once (restart 1): that kill is the previous instance's to log.
    let a_running = fixtures::container_status(
        "main",
        fixtures::running_state("2026-11-25T06:00:20Z"),
        None,
        true,
        0,
        &cid(0xa0),
    );
    api.apply(pod("trainer-a", "10.0.0.11", a_running, None));
    let b_started = rfc3339(now - Duration::from_secs(15));
    let first_kill = fixtures::terminated_state(
        137,
        "OOMKilled",
        None,
        "2026-11-25T07:00:20Z",
        &rfc3339(now - Duration::from_secs(16)),
        &cid(0xb0),
    );
    let b_running = fixtures::container_status(
        "main",
        fixtures::running_state(&b_started),
        Some(first_kill.clone()),
        true,
        1,
        &cid(0xb1),
    );
    api.apply(pod("trainer-b", "10.0.0.12", b_running, None));

    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}", sending_queue: {{ num_consumers: 1 }} }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [kubernetes], processors: [enrich], exporters: [otlp] }}
"#,
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));
    // The pods and the Applications are listed (their watches follow the lists).
    assert!(
        api.wait_until(WAIT, |a| answered(a, Verb::Watch, "pods", 1)
            && answered(a, Verb::Watch, "applications", 1))
            .await,
        "the receiver never watched pods and applications"
    );

    // bbb's second run is OOM-killed; the kubelet backs off before the third.
    let killed_at = rfc3339(SystemTime::now());
    let second_kill =
        fixtures::terminated_state(137, "OOMKilled", None, &b_started, &killed_at, &cid(0xb1));
    let b_killed = fixtures::container_status(
        "main",
        second_kill.clone(),
        Some(first_kill),
        false,
        1,
        &cid(0xb1),
    );
    api.apply(pod("trainer-b", "10.0.0.12", b_killed, None));
    let back_off = fixtures::waiting_state(
        "CrashLoopBackOff",
        Some("back-off 10s restarting failed container=main pod=trainer-b-1_ml(uid-trainer-b-1)"),
    );
    let b_crash_loop =
        fixtures::container_status("main", back_off, Some(second_kill), false, 1, &cid(0xb1));
    api.apply(pod("trainer-b", "10.0.0.12", b_crash_loop, None));
    sink.wait_for("bbb's CrashLoopBackOff record", WAIT, |r| {
        !of(
            &lifecycle(r),
            "trainer-b-1",
            semconv::EVENT_K8S_CONTAINER_WAITING,
        )
        .is_empty()
    })
    .await;

    // The API server goes away for a moment and comes back with its history compacted past
    // what the watches saw: the receiver relists everything.
    let pod_lists = api
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::List && r.plural == "pods")
        .count();
    let pod_watches = api
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Watch && r.plural == "pods" && r.status == 200)
        .count();
    api.set_available(false);
    api.apply(fixtures::deployment(
        "ml",
        "trainer",
        "uid-dep",
        Some("train:apps/Deployment:ml/trainer"),
        None,
    ));
    api.compact();
    api.set_available(true);
    assert!(
        api.wait_until(WAIT, |a| answered(a, Verb::List, "pods", pod_lists + 1)
            && answered(a, Verb::Watch, "pods", pod_watches + 1))
            .await,
        "the receiver never relisted the pods: {:?}",
        api.requests()
            .iter()
            .filter(|r| r.plural == "pods")
            .map(|r| (r.verb, r.status, r.query.clone()))
            .collect::<Vec<_>>()
    );

    // The rollout stops aaa's pod: SIGTERM, exit code 143.
    let deletion = rfc3339(SystemTime::now() + Duration::from_secs(30));
    let stopped = fixtures::terminated_state(
        143,
        "Error",
        None,
        "2026-11-25T06:00:20Z",
        &rfc3339(SystemTime::now()),
        &cid(0xa0),
    );
    let a_stopped = fixtures::container_status("main", stopped, None, false, 0, &cid(0xa0));
    api.apply(pod("trainer-a", "10.0.0.11", a_stopped, Some(&deletion)));
    // One pipeline, one export consumer: records arrive in the order they were emitted, so
    // once aaa's is in, anything the relist repeated would be too.
    let r = sink
        .wait_for("aaa's termination record", WAIT, |r| {
            !of(
                &lifecycle(r),
                "trainer-a-1",
                semconv::EVENT_K8S_CONTAINER_TERMINATED,
            )
            .is_empty()
        })
        .await;

    let records = lifecycle(&r);
    let trace = rollout_trace_id("uid-app", nanos(&started));
    let span = rollout_span_id(&trace, "root");
    println!("sync of bbb started {started}, trace {}", hex(&trace));
    for l in &records {
        println!(
            "{} {:<5} {:<32} pod={} revision={} trace={} | {}",
            if l.record.time_unix_nano > 0 {
                "t"
            } else {
                "-"
            },
            l.record.severity_text,
            l.record.event_name,
            l.pod(),
            l.revision().unwrap_or_default(),
            hex(&l.record.trace_id),
            l.body(),
        );
    }

    let terminated = of(
        &records,
        "trainer-b-1",
        semconv::EVENT_K8S_CONTAINER_TERMINATED,
    );
    assert_eq!(terminated.len(), 1, "one termination record for bbb's pod");
    let t = terminated[0];
    assert_eq!(t.reason().as_deref(), Some("OOMKilled"));
    assert_eq!(
        attr(
            &t.record.attributes,
            semconv::HPCOTEL_K8S_CONTAINER_EXIT_CODE
        )
        .as_deref(),
        Some("137")
    );
    assert_eq!(t.record.severity_text, "ERROR");
    assert_eq!(
        attr(
            &t.record.attributes,
            semconv::HPCOTEL_K8S_CONTAINER_FINISHED_AT
        )
        .as_deref(),
        Some(killed_at.as_str())
    );
    assert_eq!(
        t.body(),
        "container main terminated: OOMKilled, exit code 137 (restart 1)"
    );
    let waiting = of(
        &records,
        "trainer-b-1",
        semconv::EVENT_K8S_CONTAINER_WAITING,
    );
    assert_eq!(waiting.len(), 1, "one waiting record for bbb's pod");
    let w = waiting[0];
    assert_eq!(w.reason().as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        attr(
            &w.record.attributes,
            semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON
        )
        .as_deref(),
        Some("OOMKilled")
    );
    assert_eq!(w.record.severity_text, "WARN");
    for l in [t, w] {
        assert_eq!(l.revision().as_deref(), Some("bbb"), "{}", l.body());
        assert_eq!(l.record.trace_id, trace.to_vec(), "{}", l.body());
        assert_eq!(l.record.span_id, span.to_vec(), "{}", l.body());
        for (key, value) in [
            (semconv::K8S_POD_UID, "uid-trainer-b-1"),
            (semconv::K8S_NAMESPACE_NAME, "ml"),
            (semconv::K8S_CONTAINER_NAME, "main"),
            (semconv::K8S_CONTAINER_RESTART_COUNT, "1"),
            (semconv::K8S_DEPLOYMENT_NAME, "trainer"),
            (semconv::HPCOTEL_ARGOCD_APPLICATION, "train"),
        ] {
            assert_eq!(attr(l.resource, key).as_deref(), Some(value), "{key}");
        }
    }
    // The first kill (before the start) and the relist added nothing for bbb.
    assert_eq!(
        of(
            &records,
            "trainer-b-1",
            semconv::EVENT_K8S_CONTAINER_RESTARTED
        )
        .len(),
        0
    );
    assert_eq!(
        of(
            &records,
            "trainer-b-1",
            semconv::EVENT_K8S_CONTAINER_READINESS
        )
        .len(),
        1,
        "not ready since the kill"
    );

    let a = of(
        &records,
        "trainer-a-1",
        semconv::EVENT_K8S_CONTAINER_TERMINATED,
    );
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].revision().as_deref(),
        Some("aaa"),
        "aaa's pod stays aaa"
    );
    assert_eq!(
        a[0].record.severity_text, "INFO",
        "stopped by the rollout, not a failure of its own"
    );
    assert_eq!(
        attr(&a[0].record.attributes, semconv::HPCOTEL_K8S_POD_DELETING).as_deref(),
        Some("true")
    );
    println!(
        "bbb: {} termination, {} waiting record(s); aaa: {} termination record",
        terminated.len(),
        waiting.len(),
        a.len()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
