use hpcotel_core::catalog::{
    ArgoApp, DeployEntry, ObjectRef, PodMeta, PodRef, REVISION_ANNOTATION, Snapshot, SyncOperation,
    Workload, rollout_span_id, rollout_trace_id,
};
use hpcotel_core::channel;
use hpcotel_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use hpcotel_core::proto::logs::v1::ResourceLogs;
use hpcotel_core::proto::metrics::v1::ResourceMetrics;
use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use hpcotel_core::{Batch, Catalog, ComponentKind, Processor, Telemetry};

use super::*;

const S: u64 = 1_000_000_000;

fn obj(kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: "ml".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn workload(kind: &str, name: &str, owner: Option<ObjectRef>, created_s: u64) -> Workload {
    Workload {
        object: obj(kind, name),
        owner,
        created_unix_nano: Some(created_s * S),
        ..Default::default()
    }
}

fn pod(uid: &str, name: &str, owner: Option<ObjectRef>, ip: Option<&str>) -> PodMeta {
    PodMeta {
        pod: PodRef {
            namespace: "ml".into(),
            name: name.into(),
            container: None,
            uid: Some(uid.into()),
        },
        ip: ip.map(Into::into),
        node: Some("gpu-node-1".into()),
        owner,
        created_unix_nano: Some(300 * S),
        ..Default::default()
    }
}

/// App `train` (revision A deployed at 100 s, B at 200 s) tracks Deployment `trainer`, whose
/// ReplicaSet `trainer-a` (created 105 s) runs pod `pod-a` (10.0.0.5). CronJob `nightly` →
/// Job `nightly-1` runs `pod-job`, untracked, its revision pinned by annotation. `pod-bare`
/// has no owner.
fn cluster() -> Snapshot {
    let mut s = Snapshot::default();
    s.apps.insert(
        "train".into(),
        ArgoApp {
            namespace: "argocd".into(),
            name: "train".into(),
            instance_name: "train".into(),
            uid: "app-uid".into(),
            repo_url: Some("https://git.example.com/ml/train.git".into()),
            sync_revision: Some("B".into()),
            history: vec![
                DeployEntry {
                    id: 1,
                    revision: "A".into(),
                    deploy_started_unix_nano: Some(100 * S),
                    deployed_unix_nano: 110 * S,
                },
                DeployEntry {
                    id: 2,
                    revision: "B".into(),
                    deploy_started_unix_nano: Some(200 * S),
                    deployed_unix_nano: 215 * S,
                },
            ],
            environment: Some("prod".into()),
            // Revision B's sync: 200 s to 215 s.
            operation: Some(SyncOperation {
                revision: "B".into(),
                started_unix_nano: 200 * S,
                finished_unix_nano: Some(215 * S),
                failed: false,
                ..Default::default()
            }),
            destination_namespace: Some("ml".into()),
        },
    );
    let mut deployment = workload("Deployment", "trainer", None, 50);
    deployment.group = "apps".into();
    deployment.tracking.tracking_id = Some("train:apps/Deployment:ml/trainer".into());
    let rs = workload(
        "ReplicaSet",
        "trainer-a",
        Some(obj("Deployment", "trainer")),
        105,
    );
    let cron = workload("CronJob", "nightly", None, 10);
    let job = workload("Job", "nightly-1", Some(obj("CronJob", "nightly")), 20);
    for w in [deployment, rs, cron, job] {
        s.workloads.insert(w.object.key(), w);
    }
    let mut job_pod = pod(
        "pod-job",
        "nightly-1-x",
        Some(obj("Job", "nightly-1")),
        None,
    );
    job_pod
        .annotations
        .insert(REVISION_ANNOTATION.into(), "pinned".into());
    for p in [
        pod(
            "pod-a",
            "trainer-a-x",
            Some(obj("ReplicaSet", "trainer-a")),
            Some("10.0.0.5"),
        ),
        job_pod,
        pod("pod-bare", "bare", None, None),
    ] {
        if let Some(ip) = &p.ip {
            s.pods_by_ip.insert(ip.clone(), p.pod.uid.clone().unwrap());
        }
        s.pods.insert(p.pod.uid.clone().unwrap(), p);
    }
    s
}

fn catalog() -> Catalog {
    let catalog = Catalog::new();
    catalog.update(|s| *s = cluster());
    catalog
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource(attrs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    })
}

/// One `ResourceSpans` per entry, each with one span.
fn traces(resources: Vec<Option<Resource>>) -> Batch {
    Batch::Traces(
        resources
            .into_iter()
            .map(|resource| ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default()],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    )
}

/// The attributes of each resource of `batch`, as (key, string value).
fn attributes(batch: &Batch) -> Vec<Vec<(String, String)>> {
    let resources: Vec<&Option<Resource>> = match batch {
        Batch::Traces(rs) => rs.iter().map(|r| &r.resource).collect(),
        Batch::Metrics(rs) => rs.iter().map(|r| &r.resource).collect(),
        Batch::Logs(rs) => rs.iter().map(|r| &r.resource).collect(),
        Batch::Raw(raw) => raw.resources.iter().map(|r| &r.resource).collect(),
    };
    resources
        .into_iter()
        .map(|r| {
            r.iter()
                .flat_map(|r| &r.attributes)
                .map(|a| {
                    let Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v)),
                    }) = &a.value
                    else {
                        panic!("{} is not a string", a.key)
                    };
                    (a.key.clone(), v.clone())
                })
                .collect()
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a processor over `batches` (input closed after them) and returns what it sent on,
/// checking that it then finished cleanly. Its output holds one item at a time, so every
/// batch after the first waits for room.
async fn run(catalog: &Catalog, config: &Config, batches: Vec<Batch>) -> Vec<Batch> {
    let (in_tx, in_rx) = channel::channel(1000);
    let (out_tx, mut out_rx) = channel::channel(1);
    let stats = Telemetry::default().register(ComponentKind::Processor, "enrich".parse().unwrap());
    let processor = Box::new(EnrichProcessor::new(config, catalog.clone()));
    let task = tokio::spawn(processor.run(in_rx, out_tx, stats));
    for b in batches {
        in_tx.send(b).await.unwrap();
    }
    drop(in_tx);
    let mut out = Vec::new();
    while let Some(b) = out_rx.recv().await {
        out.push(b);
    }
    task.await.unwrap().unwrap();
    out
}

async fn run_one(catalog: &Catalog, config: &Config, batch: Batch) -> Batch {
    let mut out = run(catalog, config, vec![batch]).await;
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

const POD_A_ALL: &[(&str, &str)] = &[
    ("k8s.pod.uid", "pod-a"),
    ("k8s.pod.name", "trainer-a-x"),
    ("k8s.namespace.name", "ml"),
    ("k8s.node.name", "gpu-node-1"),
    ("k8s.replicaset.name", "trainer-a"),
    ("k8s.deployment.name", "trainer"),
    ("vcs.ref.head.revision", "A"),
    ("hpcotel.revision.source", "history"),
    (
        "vcs.repository.url.full",
        "https://git.example.com/ml/train.git",
    ),
    ("hpcotel.argocd.application", "train"),
    ("hpcotel.argocd.application.namespace", "argocd"),
    ("deployment.environment.name", "prod"),
];

#[tokio::test]
async fn a_pod_found_by_uid_gets_every_attribute() {
    let out = run_one(
        &catalog(),
        &Config::default(),
        traces(vec![resource(&[("k8s.pod.uid", "pod-a")])]),
    )
    .await;
    assert_eq!(attributes(&out), [pairs(POD_A_ALL)]);
}

#[tokio::test]
async fn pods_are_found_by_ip_and_by_namespace_and_name_in_every_signal() {
    let catalog = catalog();
    let by_ip = resource(&[("k8s.pod.ip", "10.0.0.5")]);
    let by_name = resource(&[
        ("k8s.namespace.name", "ml"),
        ("k8s.pod.name", "trainer-a-x"),
    ]);
    let out = run(
        &catalog,
        &Config::default(),
        vec![
            Batch::Metrics(vec![ResourceMetrics {
                resource: by_ip.clone(),
                ..Default::default()
            }]),
            Batch::Logs(vec![ResourceLogs {
                resource: by_name,
                ..Default::default()
            }]),
        ],
    )
    .await;
    assert!(matches!(out[0], Batch::Metrics(_)) && matches!(out[1], Batch::Logs(_)));
    let mut expected = pairs(&[("k8s.pod.ip", "10.0.0.5")]);
    expected.extend(pairs(POD_A_ALL));
    assert_eq!(attributes(&out[0]), [expected]);
    // The resource's own two come first, and are not added twice.
    let mut expected = pairs(&[
        ("k8s.namespace.name", "ml"),
        ("k8s.pod.name", "trainer-a-x"),
    ]);
    expected.extend(
        pairs(POD_A_ALL)
            .into_iter()
            .filter(|(k, _)| k != "k8s.namespace.name" && k != "k8s.pod.name"),
    );
    assert_eq!(attributes(&out[1]), [expected]);
}

#[tokio::test]
async fn job_pods_name_their_job_and_cronjob_and_bare_pods_only_themselves() {
    let out = run_one(
        &catalog(),
        &Config::default(),
        traces(vec![
            resource(&[("k8s.pod.uid", "pod-job")]),
            resource(&[("k8s.pod.uid", "pod-bare")]),
        ]),
    )
    .await;
    assert_eq!(
        attributes(&out),
        [
            pairs(&[
                ("k8s.pod.uid", "pod-job"),
                ("k8s.pod.name", "nightly-1-x"),
                ("k8s.namespace.name", "ml"),
                ("k8s.node.name", "gpu-node-1"),
                ("k8s.job.name", "nightly-1"),
                ("k8s.cronjob.name", "nightly"),
                ("vcs.ref.head.revision", "pinned"),
                ("hpcotel.revision.source", "pod_annotation"),
            ]),
            pairs(&[
                ("k8s.pod.uid", "pod-bare"),
                ("k8s.pod.name", "bare"),
                ("k8s.namespace.name", "ml"),
                ("k8s.node.name", "gpu-node-1"),
            ]),
        ]
    );
}

#[tokio::test]
async fn attributes_the_resource_has_are_never_overwritten() {
    let own = [
        ("k8s.pod.uid", "pod-a"),
        ("deployment.environment.name", "staging"),
        ("k8s.deployment.name", "my-own-name"),
        ("service.name", "trainer"),
    ];
    let out = run_one(&catalog(), &Config::default(), traces(vec![resource(&own)])).await;
    let mut expected = pairs(&own);
    expected.extend(
        pairs(POD_A_ALL)
            .into_iter()
            .filter(|(k, _)| !own.iter().any(|(o, _)| o == k)),
    );
    assert_eq!(attributes(&out), [expected]);
}

#[tokio::test]
async fn resources_without_a_known_pod_pass_unchanged() {
    let batch = traces(vec![
        None,
        resource(&[]),
        resource(&[("service.name", "x")]),
        resource(&[("k8s.pod.uid", "no-such-pod")]),
        // A UID that names another pod decides, even when the IP would match.
        resource(&[("k8s.pod.uid", "no-such-pod"), ("k8s.pod.ip", "10.0.0.5")]),
        resource(&[("k8s.pod.ip", "10.9.9.9")]),
        resource(&[("k8s.pod.uid", "")]),
        resource(&[("k8s.namespace.name", "ml")]),
        resource(&[("k8s.namespace.name", "other"), ("k8s.pod.name", "bare")]),
    ]);
    let out = run_one(&catalog(), &Config::default(), batch.clone()).await;
    assert_eq!(out, batch);
    // And with an empty Catalog, everything passes unchanged.
    let batch = traces(vec![resource(&[("k8s.pod.uid", "pod-a")])]);
    assert_eq!(
        run_one(&Catalog::new(), &Config::default(), batch.clone()).await,
        batch
    );
}

#[tokio::test]
async fn the_allow_list_limits_what_is_added() {
    let config = Config {
        attributes: vec!["vcs.ref.head.revision".into(), "k8s.deployment.name".into()],
        ..Default::default()
    };
    let batch = traces(vec![resource(&[("k8s.pod.ip", "10.0.0.5")])]);
    let out = run_one(&catalog(), &config, batch.clone()).await;
    assert_eq!(
        attributes(&out),
        [pairs(&[
            ("k8s.pod.ip", "10.0.0.5"),
            ("k8s.deployment.name", "trainer"),
            ("vcs.ref.head.revision", "A"),
        ])]
    );
    let nothing = Config {
        attributes: vec![],
        ..Default::default()
    };
    assert_eq!(run_one(&catalog(), &nothing, batch.clone()).await, batch);
}

#[tokio::test]
async fn of_two_pods_of_one_name_the_newest_is_chosen() {
    let catalog = catalog();
    catalog.update(|s| {
        let mut old = s.pods["pod-bare"].clone();
        old.pod.uid = Some("pod-bare-old".into());
        old.created_unix_nano = Some(S);
        s.pods.insert("pod-bare-old".into(), old);
    });
    let out = run_one(
        &catalog,
        &Config {
            attributes: vec!["k8s.pod.uid".into()],
            ..Default::default()
        },
        traces(vec![resource(&[
            ("k8s.namespace.name", "ml"),
            ("k8s.pod.name", "bare"),
        ])]),
    )
    .await;
    assert_eq!(attributes(&out)[0].last().unwrap().1, "pod-bare");
}

#[tokio::test]
async fn forwards_every_batch_in_order_reading_the_catalog_per_batch() {
    let catalog = Catalog::new();
    let (in_tx, in_rx) = channel::channel(1000);
    let (out_tx, mut out_rx) = channel::channel(1);
    let stats = Telemetry::default().register(ComponentKind::Processor, "enrich".parse().unwrap());
    let processor = Box::new(EnrichProcessor::new(&Config::default(), catalog.clone()));
    let task = tokio::spawn(processor.run(in_rx, out_tx, stats));
    let batch = traces(vec![resource(&[("k8s.pod.uid", "pod-bare")])]);
    // Before the Catalog knows the pod: unchanged.
    in_tx.send(batch.clone()).await.unwrap();
    assert_eq!(out_rx.recv().await.unwrap(), batch);
    // Once it does, the next batch is enriched.
    catalog.update(|s| *s = cluster());
    in_tx.send(batch.clone()).await.unwrap();
    assert_eq!(attributes(&out_rx.recv().await.unwrap())[0].len(), 4);
    // Many batches through a one-item output: none lost, order kept, then a clean finish.
    let numbered = |i: usize| traces(vec![resource(&[("n", &i.to_string())])]);
    for i in 0..20 {
        in_tx.send(numbered(i)).await.unwrap();
    }
    drop(in_tx);
    for i in 0..20 {
        assert_eq!(out_rx.recv().await.unwrap(), numbered(i));
    }
    assert!(out_rx.recv().await.is_none());
    task.await.unwrap().unwrap();
}

fn parse(text: &str) -> Result<crate::config::Config, String> {
    let full = format!(
        "processors:\n  enrich:\n{text}\nreceivers:\n  otlp:\nexporters:\n  debug:\n\
         service:\n  pipelines:\n    traces: {{ receivers: [otlp], processors: [enrich], \
         exporters: [debug] }}\n"
    );
    crate::config::Config::parse(&full, "t.yaml", &|_: &str| None).map_err(|e| e.to_string())
}

#[test]
fn config_defaults_to_every_supported_attribute_and_rejects_unknown_ones() {
    let c = parse("").unwrap();
    let crate::config::ProcessorConfig::Enrich(e) = &c.processors[&"enrich".parse().unwrap()]
    else {
        panic!("enrich processor missing")
    };
    assert_eq!(e, &Config::default());
    assert_eq!(e.attributes, SUPPORTED_ATTRIBUTES);
    assert_eq!(SUPPORTED_ATTRIBUTES.len(), 16);

    let c = parse("    attributes: [k8s.pod.name, vcs.ref.head.revision]").unwrap();
    let crate::config::ProcessorConfig::Enrich(e) = &c.processors[&"enrich".parse().unwrap()]
    else {
        panic!("enrich processor missing")
    };
    assert_eq!(e.attributes, ["k8s.pod.name", "vcs.ref.head.revision"]);

    let err = parse("    attributes: [k8s.pod.name, k8s.pod.labels]").unwrap_err();
    assert_eq!(
        err,
        format!(
            "t.yaml: processors.enrich.attributes: unsupported attribute 'k8s.pod.labels'; \
             supported: {}",
            SUPPORTED_ATTRIBUTES.join(", ")
        )
    );
    assert!(err.contains("k8s.pod.uid, k8s.pod.name, "), "{err}");

    let err = parse("    metrics: true").unwrap_err();
    assert!(
        err.starts_with("t.yaml: processors.enrich") && err.contains("unknown field `metrics`"),
        "{err}"
    );
}

#[tokio::test]
async fn pod_logs_inside_a_rollout_window_join_its_trace() {
    use hpcotel_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let record = |t: u64, trace: Vec<u8>| LogRecord {
        time_unix_nano: t,
        trace_id: trace,
        ..Default::default()
    };
    let own_trace = vec![7u8; 16];
    let batch = Batch::Logs(vec![ResourceLogs {
        resource: resource(&[("k8s.pod.uid", "pod-a")]),
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                record(150 * S, vec![]),               // before B's sync
                record(210 * S, vec![]),               // during it
                record(215 * S + 9 * 60 * S, vec![]),  // settling, inside the window
                record(215 * S + 11 * 60 * S, vec![]), // after the window
                record(210 * S, own_trace.clone()),    // already traced
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let out = run_one(&catalog(), &Config::default(), batch).await;
    let Batch::Logs(rl) = out else { panic!("logs") };
    let records = &rl[0].scope_logs[0].log_records;
    let trace = rollout_trace_id("app-uid", 200 * S);
    let root = rollout_span_id(&trace, "root");
    let joined: Vec<bool> = records.iter().map(|r| r.trace_id == trace).collect();
    assert_eq!(joined, [false, true, true, false, false]);
    assert_eq!(records[1].span_id, root.to_vec());
    assert_eq!(
        records[4].trace_id, own_trace,
        "an existing trace id is kept"
    );
    // Off with a zero window.
    let off = Config {
        rollout_window: std::time::Duration::ZERO,
        ..Default::default()
    };
    let batch = Batch::Logs(vec![ResourceLogs {
        resource: resource(&[("k8s.pod.uid", "pod-a")]),
        scope_logs: vec![ScopeLogs {
            log_records: vec![record(210 * S, vec![])],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let Batch::Logs(rl) = run_one(&catalog(), &off, batch).await else {
        panic!("logs")
    };
    assert!(rl[0].scope_logs[0].log_records[0].trace_id.is_empty());
}

/// `batch` as a receiver hands it over: encoded and taken back kept raw.
fn as_received(batch: &Batch) -> Batch {
    let raw = Batch::from_request(batch.signal(), batch.encode_request().into()).unwrap();
    assert!(matches!(raw, Batch::Raw(_)), "kept raw");
    raw
}

#[tokio::test]
async fn batches_kept_raw_are_enriched_as_decoded_ones_are() {
    use hpcotel_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    // Spans: the resource gets the pod's attributes, the spans stay raw.
    let mut spans = traces(vec![
        resource(&[("k8s.pod.uid", "pod-a")]),
        resource(&[("service.name", "elsewhere")]),
    ]);
    if let Batch::Traces(rs) = &mut spans {
        for r in rs.iter_mut() {
            r.scope_spans[0].spans[0].trace_id = vec![1; 16];
            r.scope_spans[0].spans[0].span_id = vec![1; 8];
        }
    }
    let decoded = run_one(&catalog(), &Config::default(), spans.clone()).await;
    let raw = run_one(&catalog(), &Config::default(), as_received(&spans)).await;
    assert!(
        matches!(raw, Batch::Raw(_)),
        "spans are not decoded to be enriched"
    );
    assert_eq!(attributes(&raw), attributes(&decoded));
    assert_eq!(raw.into_decoded(), decoded);

    // Log records of a pod whose Application is rolling out join its trace: decoded for it.
    let logs = |uid: &str| {
        Batch::Logs(vec![ResourceLogs {
            resource: resource(&[("k8s.pod.uid", uid)]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 210 * S,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    };
    let joined = run_one(&catalog(), &Config::default(), as_received(&logs("pod-a"))).await;
    let Batch::Logs(rl) = &joined else {
        panic!("decoded to join the rollout: {joined:?}")
    };
    assert_eq!(
        rl[0].scope_logs[0].log_records[0].trace_id,
        rollout_trace_id("app-uid", 200 * S)
    );
    assert_eq!(
        joined,
        run_one(&catalog(), &Config::default(), logs("pod-a")).await
    );
    // A pod the Catalog does not know: nothing to join, the records stay raw.
    let other = run_one(
        &catalog(),
        &Config::default(),
        as_received(&logs("unknown")),
    )
    .await;
    assert!(matches!(other, Batch::Raw(_)));
}
