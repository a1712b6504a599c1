//! Acceptance "two teams", in the real binary, on objects shaped as Argo CD, the kubelet and
//! the NVIDIA device plugin write them (testkit's `fixtures::App`): every exported signal
//! carries exactly the Argo CD Application (name and namespace) and revision it belongs to,
//! or none.
//!
//! The cluster: `team-a/web` and `team-b/web` (same name, two namespaces, "apps in any
//! namespace"); a Helm release `train` in `ml` that Argo CD does not manage, beside an Argo CD
//! Application `argocd/train` (its instance label is the app's name); a multi-source app
//! `argocd/research` whose first source is a `ref`-only values source; `argocd/db`, whose
//! PreSync migration hook fails; `argocd/nightly`, which ends Suspended; a time-sliced GPU
//! (`nvidia.com/gpu.shared`, ids `<uuid>::<n>`) held by a pod of each team. Signals: GPU
//! metrics (fake NVML + fake kubelet), OTLP logs sent by every pod, Kubernetes Events as logs
//! and the rollout traces, all counted: right, missing (the signal belongs to an app but was
//! exported before the Catalog knew its pod) and wrong (an app or revision it does not belong
//! to) — wrong must be 0.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::Hpcotel;
use hpcotel_core::catalog::rollout_trace_id;
use hpcotel_core::semconv;
use hpcotel_testkit::kube::FakeApiServer;
use hpcotel_testkit::kube::fixtures::{self, App, AppOperation, AppSource, SyncedResource};
use hpcotel_testkit::nvml::{FakeNvml, Scenario};
use hpcotel_testkit::podresources::{FakeKubelet, FakePod};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn nanos(s: &str) -> u64 {
    let t = humantime::parse_rfc3339(s).unwrap();
    u64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
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

/// What a signal belongs to: (application namespace, application name, revision).
type Truth = Option<(&'static str, &'static str, &'static str)>;

/// One workload of the scenario: a Deployment (tracked as given) with one ReplicaSet created
/// at `rs_created` and one pod on node-1.
struct Workload {
    ns: &'static str,
    deployment: &'static str,
    pod: &'static str,
    truth: Truth,
}

impl Workload {
    fn uid(&self) -> String {
        format!("uid-{}-{}", self.ns, self.pod)
    }

    /// As [`Workload::apply`], the Deployment tracked by Argo CD's annotation for the
    /// Application instance `instance`.
    fn apply_tracked(&self, api: &FakeApiServer, instance: &str, rs_created: &str) {
        let id = format!("{instance}:apps/Deployment:{}/{}", self.ns, self.deployment);
        self.apply(
            api,
            &[],
            &[("argocd.argoproj.io/tracking-id", &id)],
            rs_created,
        );
    }

    /// Applies the Deployment (with `labels`/`annotations` for tracking), its ReplicaSet
    /// (which carries the Deployment's annotations, as the Deployment controller copies them)
    /// and the pod.
    fn apply(
        &self,
        api: &FakeApiServer,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        rs_created: &str,
    ) {
        let mut d = fixtures::deployment(
            self.ns,
            self.deployment,
            &format!("uid-dep-{}-{}", self.ns, self.deployment),
            None,
            None,
        );
        for (k, v) in labels {
            d["metadata"]["labels"][*k] = json!(v);
        }
        for (k, v) in annotations {
            d["metadata"]["annotations"][*k] = json!(v);
        }
        let rs_name = self.pod.rsplit_once('-').unwrap().0;
        let rs_uid = format!("uid-rs-{}-{rs_name}", self.ns);
        let mut rs = fixtures::replicaset(
            self.ns,
            rs_name,
            &rs_uid,
            Some((
                self.deployment,
                &format!("uid-dep-{}-{}", self.ns, self.deployment),
            )),
            rs_created,
        );
        for (k, v) in annotations {
            rs["metadata"]["annotations"][*k] = json!(v);
        }
        api.apply(d);
        api.apply(rs);
        api.apply(fixtures::pod(
            self.ns,
            self.pod,
            &self.uid(),
            "node-1",
            Some(("ReplicaSet", rs_name, &rs_uid)),
            &format!("10.0.{}.{}", self.ns.len(), self.pod.len()),
            &[],
            &[],
        ));
    }
}

/// An operation of `revision` started at `started`, with `resources`, in `phase`.
fn op(
    phase: &str,
    started: &str,
    finished: Option<&str>,
    revisions: &[&str],
    resources: Vec<SyncedResource>,
) -> AppOperation {
    let revisions: Vec<String> = revisions.iter().map(|r| r.to_string()).collect();
    AppOperation {
        phase: phase.into(),
        message: match phase {
            "Running" => "waiting for completion of hook batch/Job/migrate".into(),
            "Failed" => "one or more synchronization tasks completed unsuccessfully".into(),
            _ => "successfully synced (all tasks run)".into(),
        },
        started_at: started.into(),
        finished_at: finished.map(str::to_owned),
        requested: revisions.clone(),
        result: Some((revisions, resources)),
        ..Default::default()
    }
}

/// Tallies of the check over all signals.
#[derive(Debug, Default)]
struct Tally {
    right: usize,
    missing: usize,
    wrong: Vec<String>,
}

impl Tally {
    /// Checks one signal whose attributes (resource and record merged) are `attrs` against
    /// what it belongs to.
    fn check(&mut self, what: &str, attrs: &[KeyValue], truth: Truth) {
        let app = attr(attrs, semconv::HPCOTEL_ARGOCD_APPLICATION);
        let app_ns = attr(attrs, semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE);
        let revision = attr(attrs, semconv::VCS_REF_HEAD_REVISION);
        let repo = attr(attrs, semconv::VCS_REPOSITORY_URL_FULL);
        match truth {
            None if app.is_none() && app_ns.is_none() && revision.is_none() && repo.is_none() => {
                self.right += 1
            }
            None => self.wrong.push(format!(
                "{what}: belongs to no app, carries {app_ns:?}/{app:?} {revision:?} {repo:?}"
            )),
            Some(_) if app.is_none() && app_ns.is_none() && revision.is_none() => self.missing += 1,
            Some((ns, name, rev)) => {
                // A signal of a pod names its app's namespace (enrich); an Event log or a
                // rollout span names the app (and its trace), the namespace being the app's
                // by construction.
                let ns_ok = app_ns.as_deref().is_none_or(|n| n == ns);
                if app.as_deref() == Some(name) && ns_ok && revision.as_deref() == Some(rev) {
                    self.right += 1;
                } else {
                    self.wrong.push(format!(
                        "{what}: belongs to {ns}/{name} {rev}, carries {app_ns:?}/{app:?} {revision:?}"
                    ));
                }
            }
        }
    }
}

fn merged(resource: &Option<Resource>, own: &[KeyValue]) -> Vec<KeyValue> {
    let mut all = own.to_vec();
    if let Some(r) = resource {
        all.extend(r.attributes.iter().cloned());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_every_signal_carries_its_own_app_and_revision_or_none() {
    let now = SystemTime::now();
    let at = |secs_ago: u64| rfc3339(now - Duration::from_secs(secs_ago));
    let api = FakeApiServer::start().await;

    // team-a/web and team-b/web: each rolled out its second revision two minutes ago (so
    // their Events now fall in those rollouts' windows), from their own repositories.
    let teams = [("team-a", ["a1", "a2"], 120), ("team-b", ["b1", "b2"], 110)];
    let mut team_started: HashMap<&str, String> = HashMap::new();
    for (team, [r1, r2], ago) in teams {
        team_started.insert(team, at(ago));
        let mut app = App::new(
            team,
            "web",
            &format!("uid-app-{team}-web"),
            &format!("https://git.example.com/{team}/web.git"),
            team,
            r2,
        );
        app.history = vec![
            (1, vec![r1.into()], at(3600), at(3590)),
            (2, vec![r2.into()], at(ago), at(ago - 20)),
        ];
        app.operation = Some(op(
            "Succeeded",
            &at(ago),
            Some(&at(ago - 20)),
            &[r2],
            vec![SyncedResource::applied("apps", "Deployment", team, "web")],
        ));
        api.apply(app.build());
    }
    let web_a = Workload {
        ns: "team-a",
        deployment: "web",
        pod: "web-a2-0",
        truth: Some(("team-a", "web", "a2")),
    };
    let web_b = Workload {
        ns: "team-b",
        deployment: "web",
        pod: "web-b2-0",
        truth: Some(("team-b", "web", "b2")),
    };
    for (w, ago) in [(&web_a, 115), (&web_b, 105)] {
        let instance = format!("{}_web", w.ns);
        w.apply(
            &api,
            &[("app.kubernetes.io/instance", &instance)],
            &[(
                "argocd.argoproj.io/tracking-id",
                &format!("{instance}:apps/Deployment:{}/web", w.ns),
            )],
            &at(ago),
        );
    }

    // argocd/train deploys `train-prod`; a Helm release also called `train` runs in `ml`,
    // labelled app.kubernetes.io/instance=train as Helm labels every release.
    let mut train = App::new(
        "argocd",
        "train",
        "uid-app-train",
        "https://git.example.com/ml/train.git",
        "train-prod",
        "t1",
    );
    train.history = vec![(1, vec!["t1".into()], at(7200), at(7190))];
    api.apply(train.build());
    let train_prod = Workload {
        ns: "train-prod",
        deployment: "trainer",
        pod: "trainer-t1-0",
        truth: Some(("argocd", "train", "t1")),
    };
    train_prod.apply(
        &api,
        &[("app.kubernetes.io/instance", "train")],
        &[(
            "argocd.argoproj.io/tracking-id",
            "train:apps/Deployment:train-prod/trainer",
        )],
        &at(7195),
    );
    let helm = Workload {
        ns: "ml",
        deployment: "train",
        pod: "train-7d9-0",
        truth: None,
    };
    helm.apply(
        &api,
        &[
            ("app.kubernetes.io/instance", "train"),
            ("app.kubernetes.io/managed-by", "Helm"),
            ("helm.sh/chart", "train-0.3.1"),
        ],
        &[
            ("meta.helm.sh/release-name", "train"),
            ("meta.helm.sh/release-namespace", "ml"),
        ],
        &at(5000),
    );

    // argocd/research: values from a `ref`-only Git source (listed first), manifests from
    // another repository: the manifests' source is the one the pods run.
    let mut research = App::new("argocd", "research", "uid-app-research", "", "research", "");
    research.sources = vec![
        AppSource {
            repo_url: "https://git.example.com/research/values.git".into(),
            ref_name: "values".into(),
            target_revision: "main".into(),
            ..Default::default()
        },
        AppSource::git("https://git.example.com/research/manifests.git", "deploy"),
    ];
    research.sync_revisions = vec!["vals-2".into(), "man-2".into()];
    research.history = vec![(7, vec!["vals-2".into(), "man-2".into()], at(900), at(890))];
    api.apply(research.build());
    let research_pod = Workload {
        ns: "research",
        deployment: "trainer",
        pod: "trainer-r2-0",
        truth: Some(("argocd", "research", "man-2")),
    };
    research_pod.apply_tracked(&api, "research", &at(895));

    // argocd/db: d1 runs; the sync of d2 is in its PreSync hook (it will fail).
    let db_started = at(10);
    let mut db = App::new(
        "argocd",
        "db",
        "uid-app-db",
        "https://git.example.com/db.git",
        "db",
        "d2",
    );
    db.sync_status = "OutOfSync".into();
    db.history = vec![(1, vec!["d1".into()], at(4000), at(3990))];
    db.operation = Some(op(
        "Running",
        &db_started,
        None,
        &["d2"],
        vec![SyncedResource::hook_job(
            "db", "migrate", "PreSync", "Running",
        )],
    ));
    db.health = "Healthy".into();
    api.apply(db.build());
    let db_pod = Workload {
        ns: "db",
        deployment: "api",
        pod: "api-d1-0",
        truth: Some(("argocd", "db", "d1")),
    };
    db_pod.apply_tracked(&api, "db", &at(3995));

    // argocd/nightly: a suspended CronJob; its sync is running.
    let nightly_started = at(8);
    let mut nightly = App::new(
        "argocd",
        "nightly",
        "uid-app-nightly",
        "https://git.example.com/nightly.git",
        "nightly",
        "n1",
    );
    nightly.health = "Progressing".into();
    let cron = SyncedResource::applied("batch", "CronJob", "nightly", "report");
    nightly.operation = Some(op(
        "Running",
        &nightly_started,
        None,
        &["n1"],
        vec![cron.clone()],
    ));
    api.apply(nightly.build());

    // GPUs: 0 is time-sliced and shared by a pod of each team; 1 is the Helm release's; 2
    // research's; 3 db's.
    let scenario = Scenario::with_gpus(4);
    let fake = FakeNvml::new(&scenario);
    let gpu = |i: usize| scenario.devices[i].uuid.clone();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let shared = "nvidia.com/gpu.shared";
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_devices(
                "team-a",
                web_a.pod,
                "main",
                shared,
                &[&format!("{}::0", gpu(0))],
            ),
            FakePod::with_devices(
                "team-b",
                web_b.pod,
                "main",
                shared,
                &[&format!("{}::1", gpu(0))],
            ),
            FakePod::with_gpus("ml", helm.pod, "main", &[&gpu(1)]),
            FakePod::with_gpus("research", research_pod.pod, "main", &[&gpu(2)]),
            FakePod::with_gpus("db", db_pod.pod, "main", &[&gpu(3)]),
        ],
    )
    .await;
    let gpu_truth: HashMap<String, Truth> = HashMap::from([
        (gpu(0), None),
        (gpu(1), None),
        (gpu(2), research_pod.truth),
        (gpu(3), db_pod.truth),
    ]);

    let sink = OtlpSink::start().await;
    let otlp = common::free_port();
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp}" }}
  gpu:
    sample_interval: 100ms
    report_interval: 300ms
    library_path: "{lib}"
    pod_resources: {{ endpoint: "{sock}", refresh_interval: 1s }}
  kubernetes/node:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
    argocd: {{ namespaces: [] }}
  kubernetes/cluster:
    auth_type: none
    endpoint: "{api}"
    mode: cluster
    argocd: {{ namespaces: [] }}
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [kubernetes/cluster], processors: [enrich], exporters: [otlp] }}
    metrics: {{ receivers: [gpu], processors: [enrich], exporters: [otlp] }}
    logs: {{ receivers: [otlp, kubernetes/cluster], processors: [enrich], exporters: [otlp] }}
"#,
        lib = fake.library_path().display(),
        sock = socket.display(),
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));

    // Wait until the node agent knows the pods: GPU 2's metrics carry research's revision.
    sink.wait_for("GPU metrics enriched", WAIT, |r| {
        gpu_resources(r).iter().any(|(id, attrs)| {
            *id == gpu(2) && attr(attrs, semconv::VCS_REF_HEAD_REVISION).is_some()
        })
    })
    .await;

    // Every pod sends a log over OTLP, naming itself by UID.
    let workloads = [&web_a, &web_b, &train_prod, &helm, &research_pod, &db_pod];
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{otlp}"))
        .await
        .unwrap();
    let request = ExportLogsServiceRequest {
        resource_logs: workloads
            .iter()
            .map(|w| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv(semconv::K8S_POD_UID, &w.uid()),
                        kv("service.name", w.pod),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: nanos(&at(0)),
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "hello from {}",
                                w.pod
                            ))),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    client.export(request).await.unwrap();

    // Events now: a crash in each team's namespace, and one in the Helm release's. (Events
    // from before the collector started are the previous instance's: these are stamped a
    // second ahead, past the start of this one.)
    let soon = rfc3339(SystemTime::now() + Duration::from_secs(1));
    for (w, reason) in [
        (&web_a, "BackOff"),
        (&web_b, "BackOff"),
        (&helm, "Unhealthy"),
    ] {
        api.apply(event(w.ns, w.pod, reason, &soon));
    }

    // db's PreSync hook fails; nightly's sync ends and the app settles Suspended.
    let db_done = at(0);
    db.operation = Some(op(
        "Failed",
        &db_started,
        Some(&db_done),
        &["d2"],
        vec![SyncedResource::hook_job(
            "db", "migrate", "PreSync", "Failed",
        )],
    ));
    api.apply(db.build());
    let nightly_done = at(0);
    for health in ["Progressing", "Suspended"] {
        nightly.health = health.into();
        nightly.operation = Some(op(
            "Succeeded",
            &nightly_started,
            Some(&nightly_done),
            &["n1"],
            vec![cron.clone()],
        ));
        nightly.history = vec![(
            1,
            vec!["n1".into()],
            nightly_started.clone(),
            nightly_done.clone(),
        )];
        api.apply(nightly.build());
    }

    let db_trace = rollout_trace_id("uid-app-db", nanos(&db_started)).to_vec();
    let nightly_trace = rollout_trace_id("uid-app-nightly", nanos(&nightly_started)).to_vec();
    let r = sink
        .wait_for(
            "both rollout traces, the pods' logs and the Events",
            WAIT,
            |r| {
                let traces = r
                    .spans()
                    .iter()
                    .filter(|s| s.parent_span_id.is_empty())
                    .count();
                let pod_logs = r
                    .log_records()
                    .iter()
                    .filter(|l| l.event_name.is_empty())
                    .count();
                let events = r
                    .log_records()
                    .iter()
                    .filter(|l| l.event_name == "k8s.event")
                    .count();
                traces >= 2 && pod_logs >= workloads.len() && events >= 3
            },
        )
        .await;

    let mut tally = Tally::default();
    // GPU metrics: by the GPU each resource describes.
    let mut per_gpu: HashMap<String, usize> = HashMap::new();
    for (id, attrs) in gpu_resources(&r) {
        let truth = *gpu_truth
            .get(&id)
            .unwrap_or_else(|| panic!("unknown GPU {id}"));
        *per_gpu.entry(id.clone()).or_default() += 1;
        tally.check(&format!("GPU {id} metrics"), &attrs, truth);
        if id == gpu(0) {
            assert_eq!(
                attr(&attrs, semconv::K8S_POD_NAME),
                None,
                "a shared GPU is not one pod's"
            );
            let holders: Vec<String> = attrs
                .iter()
                .find(|kv| kv.key == semconv::HPCOTEL_GPU_PODS)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::ArrayValue(a) => {
                        Some(a.values.iter().filter_map(any_value_string).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            assert_eq!(
                holders,
                ["team-a/web-a2-0", "team-b/web-b2-0"],
                "both holders named"
            );
        }
    }
    assert_eq!(per_gpu.len(), 4, "metrics of every GPU: {per_gpu:?}");
    // OTLP logs from the pods, and Event logs.
    let truth_of_uid: HashMap<String, Truth> =
        workloads.iter().map(|w| (w.uid(), w.truth)).collect();
    let event_truth: HashMap<&str, (Truth, Vec<u8>)> = HashMap::from([
        (
            "team-a",
            (
                web_a.truth,
                rollout_trace_id("uid-app-team-a-web", nanos(&team_started["team-a"])).to_vec(),
            ),
        ),
        (
            "team-b",
            (
                web_b.truth,
                rollout_trace_id("uid-app-team-b-web", nanos(&team_started["team-b"])).to_vec(),
            ),
        ),
        ("ml", (None, Vec::new())),
    ]);
    let mut events_joined = 0;
    for rl in &r.logs {
        for l in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let attrs = merged(&rl.resource, &l.attributes);
            if l.event_name == "k8s.event" {
                let ns = attr(&attrs, semconv::K8S_NAMESPACE_NAME).unwrap();
                let (truth, trace) = event_truth[ns.as_str()].clone();
                tally.check(&format!("Event in {ns}"), &attrs, truth);
                assert_eq!(
                    l.trace_id, trace,
                    "the Event in {ns} joins its own team's rollout"
                );
                events_joined += usize::from(!trace.is_empty());
            } else if let Some(uid) = attr(&attrs, semconv::K8S_POD_UID) {
                let truth = *truth_of_uid
                    .get(&uid)
                    .unwrap_or_else(|| panic!("log of an unknown pod {uid}"));
                tally.check(&format!("log of {uid}"), &attrs, truth);
            }
        }
    }
    assert_eq!(events_joined, 2);
    // Rollout traces: by trace id.
    let trace_truth: HashMap<Vec<u8>, Truth> = HashMap::from([
        (db_trace.clone(), Some(("argocd", "db", "d2"))),
        (nightly_trace.clone(), Some(("argocd", "nightly", "n1"))),
    ]);
    for s in r.spans() {
        let truth = *trace_truth
            .get(&s.trace_id)
            .unwrap_or_else(|| panic!("a trace of no rollout: {}", s.name));
        if s.parent_span_id.is_empty() {
            tally.check(&s.name, &s.attributes, truth);
        }
    }
    println!(
        "two teams: {} signals right, {} missing (exported before the Catalog knew the pod), {} wrong",
        tally.right,
        tally.missing,
        tally.wrong.len()
    );
    assert!(
        tally.wrong.is_empty(),
        "wrong attributions: {:#?}",
        tally.wrong
    );
    assert!(tally.right >= 4 + workloads.len() + 3 + 2);

    // The failed PreSync hook: its span and the root are errors; Suspended settled as success.
    let spans = r.spans();
    let root = |trace: &[u8]| {
        spans
            .iter()
            .find(|s| s.trace_id == trace && s.parent_span_id.is_empty())
            .copied()
            .unwrap()
    };
    let db_root = root(&db_trace);
    assert_eq!(db_root.name, "SYNC db");
    assert_eq!(db_root.status.as_ref().unwrap().code, 2);
    let hook = spans
        .iter()
        .find(|s| s.trace_id == db_trace && s.name == "Job migrate")
        .expect("the hook's span");
    assert_eq!(
        hook.status.as_ref().map(|s| s.code),
        Some(2),
        "the failed hook is an error"
    );
    assert_eq!(
        attr(&hook.attributes, semconv::HPCOTEL_ARGOCD_HOOK_TYPE).as_deref(),
        Some("PreSync")
    );
    let nightly_root = root(&nightly_trace);
    assert_eq!(nightly_root.status.as_ref().unwrap().code, 1, "OK");
    assert_eq!(
        attr(&nightly_root.attributes, semconv::CICD_PIPELINE_RESULT).as_deref(),
        Some("success")
    );
    assert_eq!(
        attr(
            &nightly_root.attributes,
            semconv::HPCOTEL_ARGOCD_HEALTH_STATUS
        )
        .as_deref(),
        Some("Suspended")
    );
    kubelet.stop().await;
}

/// A core/v1 Event about pod `pod` in `ns`, as the kubelet writes it.
fn event(ns: &str, pod: &str, reason: &str, at: &str) -> Value {
    let mut e = fixtures::event(
        ns,
        &format!("{pod}.{reason}"),
        ("Pod", ns, pod, &format!("uid-{ns}-{pod}")),
        reason,
        &format!("{reason}: container main in pod {pod}"),
        "Warning",
        "kubelet",
        at,
        at,
        1,
    );
    e["metadata"]["uid"] = json!(format!("uid-ev-{ns}-{pod}"));
    e
}

/// (GPU UUID, resource attributes) of every GPU metrics resource received.
fn gpu_resources(r: &Received) -> Vec<(String, Vec<KeyValue>)> {
    let mut out = Vec::new();
    for rm in &r.metrics {
        let mut ids: Vec<String> = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .filter_map(|m| match &m.data {
                Some(Data::Gauge(g)) => Some(&g.data_points),
                Some(Data::Sum(s)) => Some(&s.data_points),
                _ => None,
            })
            .flatten()
            .filter_map(|p| attr(&p.attributes, semconv::HW_ID))
            .filter(|id| id.starts_with("GPU-"))
            .collect();
        ids.sort();
        ids.dedup();
        let res = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.clone())
            .unwrap_or_default();
        out.extend(ids.into_iter().map(|id| (id, res.clone())));
    }
    out
}

/// Label tracking as Argo CD writes it for apps outside its namespace
/// (`Application.InstanceName`: `<namespace>_<name>`) under a configured
/// `application.instanceLabelKey`, beside Helm's own `app.kubernetes.io/instance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_tracking_reads_the_configured_key_and_namespaced_instance_names() {
    let api = FakeApiServer::start().await;
    let key = "argocd.argoproj.io/instance";
    let mut team = App::new(
        "team-a",
        "web",
        "uid-app-team-a-web",
        "https://git.example.com/team-a/web.git",
        "team-a",
        "a1",
    );
    team.history = vec![(
        1,
        vec!["a1".into()],
        "2026-11-25T06:00:00Z".into(),
        "2026-11-25T06:00:10Z".into(),
    )];
    let mut ops = App::new(
        "argocd",
        "web",
        "uid-app-argocd-web",
        "https://git.example.com/ops/web.git",
        "web-prod",
        "o1",
    );
    ops.history = vec![(
        1,
        vec!["o1".into()],
        "2026-11-25T06:30:00Z".into(),
        "2026-11-25T06:30:10Z".into(),
    )];
    api.apply(team.build());
    api.apply(ops.build());
    let a = Workload {
        ns: "team-a",
        deployment: "web",
        pod: "web-a1-0",
        truth: Some(("team-a", "web", "a1")),
    };
    let o = Workload {
        ns: "web-prod",
        deployment: "web",
        pod: "web-o1-0",
        truth: Some(("argocd", "web", "o1")),
    };
    // Both charts label their release `web` the Helm way; Argo CD's label is the other key.
    a.apply(
        &api,
        &[(key, "team-a_web"), ("app.kubernetes.io/instance", "web")],
        &[],
        "2026-11-25T06:00:05Z",
    );
    o.apply(
        &api,
        &[(key, "web"), ("app.kubernetes.io/instance", "web")],
        &[],
        "2026-11-25T06:30:05Z",
    );
    let sink = OtlpSink::start().await;
    let otlp = common::free_port();
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
    argocd: {{ namespaces: [], tracking_method: label, instance_label_key: "{key}" }}
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [otlp], processors: [enrich], exporters: [otlp] }}
"#,
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{otlp}"))
        .await
        .unwrap();
    // Until the node agent has listed the pods, a log carries no app: send (every 200 ms,
    // with a deadline) until a log of each pod came back enriched.
    let enriched = |r: &Received, uid: &str| {
        r.logs.iter().any(|rl| {
            rl.resource.as_ref().is_some_and(|res| {
                attr(&res.attributes, semconv::K8S_POD_UID).as_deref() == Some(uid)
                    && attr(&res.attributes, semconv::HPCOTEL_ARGOCD_APPLICATION).is_some()
            })
        })
    };
    let deadline = std::time::Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let r = loop {
        ticks.tick().await;
        let r = sink.received();
        if enriched(&r, &a.uid()) && enriched(&r, &o.uid()) {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no enriched log within {WAIT:?}: {:?}",
            r.logs
        );
        let request = ExportLogsServiceRequest {
            resource_logs: [&a, &o]
                .iter()
                .map(|w| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![kv(semconv::K8S_POD_UID, &w.uid())],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord {
                            severity_number: 9,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        client.export(request).await.unwrap();
    };
    let mut tally = Tally::default();
    for rl in &r.logs {
        let attrs = merged(&rl.resource, &[]);
        let uid = attr(&attrs, semconv::K8S_POD_UID).unwrap();
        let truth = [&a, &o].iter().find(|w| w.uid() == uid).unwrap().truth;
        tally.check(&format!("log of {uid}"), &attrs, truth);
    }
    println!(
        "label tracking: {} right, {} missing, {} wrong",
        tally.right,
        tally.missing,
        tally.wrong.len()
    );
    assert!(tally.wrong.is_empty(), "{:#?}", tally.wrong);
    assert!(tally.right >= 2);
}
