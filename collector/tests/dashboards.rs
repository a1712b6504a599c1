//! Acceptance (dashboards): every Grafana dashboard under `dashboards/` imports as it is and
//! queries only what hpcotel exports.
//!
//! - Datasources: every `datasource` in a dashboard is a `${…}` reference to a `datasource`
//!   variable declared in its `templating.list` (no hard-coded uid or name), of the plugin
//!   type the variable selects; every `$variable` a query uses is declared.
//! - PromQL: the metric and label names of every Prometheus query (panels, variables,
//!   annotations, legends) must be among what the real `hpcotel` binary serves on its
//!   `prometheus` exporter: the test runs it with the gpu receiver on testkit's fake NVML and
//!   fake kubelet, the kubernetes receiver on the fake API server (an Argo CD Application with
//!   two revisions), the enrich processor, and MPI histograms made by the `hpcotel-mpi`
//!   recorder itself, and scrapes `/metrics`. The name list is what is served, not a copy.
//!   Literal label values (`hw_gpu_task="general"`) must be served too, and every query must
//!   parse (`promtool check rules`).
//! - Labels that are resource attributes exist on series only when resource attributes are
//!   promoted (`resource_to_telemetry_conversion` here, `promote_otel_resource_attributes`
//!   in Mimir); the list `dashboards/README.md` tells operators to promote must be exactly
//!   the resource attributes the dashboards use.
//! - LogQL and TraceQL: the attribute names (Loki: dots as `_`, as its OTLP ingestion stores
//!   them; Tempo: dotted) must be names defined in `core/src/semconv.rs`.
//! - The rollout dashboard's crash panels (*Container terminations by reason*, *Waiting
//!   reasons*, *Crashing pods' logs*) are run on what hpcotel exports: the real binary with
//!   the kubernetes receiver (node mode, pod lifecycle logs) on the fake API server and the
//!   kubernetes_logs receiver on a pod log tree, through enrich, into testkit's OTLP sink; each
//!   record is stored as Loki's OTLP ingestion stores it (index labels, structured metadata
//!   with dots as `_`) and the queries are evaluated on them by a small LogQL evaluator (the
//!   subset they use; anything else is an error): every name they use is on the records, and
//!   they select exactly the crashed pod's records of the revision asked for.
//!
//! Needs `/usr/bin/promtool` (Debian package `prometheus`; `scripts/test.sh` installs it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Hpcotel, free_port, rfc3339};
use hpcotel_core::semconv;
use hpcotel_exporters::prometheus::sanitize_label_name;
use hpcotel_mpi::op;
use hpcotel_mpi::recorder::{JobContext, RankInfo, State};
use hpcotel_mpi::settings::Settings;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::nvml::{Event, FakeNvml, Scenario};
use hpcotel_testkit::podresources::{FakeKubelet, FakePod};
use hpcotel_testkit::sink::{OtlpSink, any_value_string};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PROMTOOL: &str = "/usr/bin/promtool";

// ----------------------------------------------------------------------------------------
// What hpcotel exports
// ----------------------------------------------------------------------------------------

/// Label name -> the values seen.
type Labels = BTreeMap<String, BTreeSet<String>>;

/// The names a dashboard may use.
#[derive(Debug, Default)]
struct Exported {
    /// Every series name as served (`_bucket`, `_sum`, `_count`, `_total` included) with
    /// its labels, resource attributes promoted to labels.
    series: BTreeMap<String, Labels>,
    /// Labels that exist only when resource attributes are promoted.
    resource_labels: BTreeSet<String>,
    /// Attribute names as hpcotel spells them (`core/src/semconv.rs`): span attributes in
    /// TraceQL.
    attributes: BTreeSet<String>,
}

impl Exported {
    /// Structured metadata and labels of hpcotel's logs in Loki: attribute names with
    /// `.` → `_` (Loki's OTLP ingestion), plus what Loki adds to every OTLP record.
    fn loki_fields(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .attributes
            .iter()
            .map(|a| sanitize_label_name(a))
            .collect();
        out.extend(LOKI_OTLP_FIELDS.iter().map(|s| s.to_string()));
        out
    }

    /// Index labels of hpcotel's logs in Loki: the resource attributes Loki indexes by
    /// default that hpcotel sets.
    fn loki_stream_labels(&self) -> BTreeSet<String> {
        LOKI_DEFAULT_INDEX_ATTRIBUTES
            .iter()
            .filter(|a| self.attributes.contains(**a))
            .map(|a| sanitize_label_name(a))
            .collect()
    }

    fn all_labels(&self) -> BTreeSet<String> {
        self.series
            .values()
            .flat_map(|l| l.keys().cloned())
            .collect()
    }
}

/// Fields Loki's OTLP ingestion stores with every record besides its attributes
/// (`detected_level` and `service_name` Loki derives itself).
const LOKI_OTLP_FIELDS: &[&str] = &[
    "service_name",
    "detected_level",
    "severity_text",
    "severity_number",
    "trace_id",
    "span_id",
    "flags",
    "observed_timestamp",
    "scope_name",
    "scope_version",
    "__line__",
    "__error__",
];

/// Resource attributes Loki's OTLP ingestion makes index labels by default (Loki 3
/// `distributor.otlp_config` defaults); the other attributes are structured metadata.
const LOKI_DEFAULT_INDEX_ATTRIBUTES: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Every name `core/src/semconv.rs` defines, as a set.
fn semconv_set() -> BTreeSet<String> {
    let names: BTreeSet<String> = common::semconv_names().into_iter().collect();
    assert!(names.len() > 100, "parsed only {} names", names.len());
    assert!(names.contains(semconv::VCS_REF_HEAD_REVISION));
    assert!(names.contains(semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON));
    names
}

/// The series of a text-format exposition: name -> label -> values.
fn parse_exposition(text: &str) -> BTreeMap<String, Labels> {
    let mut out: BTreeMap<String, Labels> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        let Some(rest) = line[end..].strip_prefix('{') else {
            continue;
        };
        let mut chars = rest.chars();
        loop {
            let name: String = chars
                .by_ref()
                .take_while(|c| *c != '=')
                .collect::<String>()
                .trim_start_matches([',', ' '])
                .to_string();
            if name.is_empty() || name.starts_with('}') {
                break;
            }
            assert_eq!(chars.next(), Some('"'), "label {name} in {line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().unwrap_or('\\')),
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.entry(name).or_default().insert(value);
        }
    }
    out
}

async fn scrape(client: &reqwest::Client, port: u16) -> BTreeMap<String, Labels> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scrape hpcotel")
        .text()
        .await
        .expect("scrape body");
    parse_exposition(&text)
}

fn has_label(series: &BTreeMap<String, Labels>, label: &str, value: Option<&str>) -> bool {
    series.values().any(|l| {
        l.get(label)
            .is_some_and(|v| value.is_none_or(|value| v.contains(value)))
    })
}

/// Every MPI operation the recorder knows, once, from two ranks of job `job-42` running in
/// pod `ml/trainer-b-1`, as the recorder exports them (`mpi.call.duration`).
fn mpi_histograms() -> Vec<Vec<u8>> {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    (0..2)
        .map(|rank| {
            let env: BTreeMap<&str, &str> = [
                ("OTEL_SERVICE_NAME", "solver"),
                ("K8S_POD_UID", "uid-trainer-b-1"),
                ("K8S_POD_NAME", "trainer-b-1"),
                ("K8S_NAMESPACE_NAME", "ml"),
                ("K8S_NODE_NAME", "node-1"),
            ]
            .into_iter()
            .collect();
            let get = |k: &str| env.get(k).map(|v| v.to_string());
            let settings = Settings::from_env(get);
            let info = RankInfo {
                rank,
                size: 2,
                resource: hpcotel_mpi::resource::attributes(
                    &settings,
                    &get,
                    rank,
                    2,
                    "job-42",
                    "Open MPI v4.1.4",
                ),
                implementation: "Open MPI v4.1.4".into(),
                clock_offset_ns: now_ns,
            };
            let ctx = JobContext {
                trace_id: [7; 16],
                job_span_id: [9; 8],
                flags: 1,
                enabled: true,
            };
            let mut state = State::new(info, &settings, ctx, 0, None);
            let mut t = 1_000;
            for &op in op::ALL {
                // Sized and unsized calls, 1 µs to 50 ms.
                for (bytes, ns) in [(8, 1_000), (-1, 50_000), (65_536, 50_000_000)] {
                    state.record(op, 2, bytes, 1 - rank, t, t + ns, true);
                    t += ns + 1_000;
                }
            }
            let batch = state.batch(t);
            batch
                .metrics
                .expect("the recorder exports its histograms")
                .encode_to_vec()
        })
        .collect()
}

/// Runs hpcotel with every producer the dashboards query and returns what its `prometheus`
/// exporter serves, with and without resource attributes promoted.
async fn exported_by_hpcotel() -> Exported {
    // The cluster: Application `train` deployed revision aaa, then bbb (its sync still
    // running); one pod of each revision on node-1, each with a GPU.
    let api = FakeApiServer::start().await;
    common::apply_train_app(&api);
    for (rs, created, ip) in [
        ("trainer-a", "2026-11-25T06:00:05Z", "10.0.0.11"),
        ("trainer-b", "2026-11-25T07:00:13Z", "10.0.0.12"),
    ] {
        api.apply(fixtures::replicaset(
            "ml",
            rs,
            &format!("uid-{rs}"),
            Some(("trainer", "uid-dep")),
            created,
        ));
        let pod = format!("{rs}-1");
        api.apply(fixtures::pod(
            "ml",
            &pod,
            &format!("uid-{pod}"),
            "node-1",
            Some(("ReplicaSet", rs, &format!("uid-{rs}"))),
            ip,
            &[],
            &[],
        ));
    }
    let scenario = Scenario::with_gpus(2);
    let fake = FakeNvml::new(&scenario);
    let uuids: Vec<String> = scenario.devices.iter().map(|d| d.uuid.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "trainer-a-1", "main", &[&uuids[0]]),
            FakePod::with_gpus("ml", "trainer-b-1", "main", &[&uuids[1]]),
        ],
    )
    .await;

    let (otlp, promoted, plain) = (free_port(), free_port(), free_port());
    let hpcotel = Hpcotel::start_with_env(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{otlp}" }}
  gpu:
    sample_interval: 100ms
    report_interval: 300ms
    library_path: "{lib}"
    pod_resources: {{ endpoint: "{sock}", refresh_interval: 1s }}
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
processors:
  enrich:
exporters:
  prometheus/promoted:
    endpoint: "127.0.0.1:{promoted}"
    resource_to_telemetry_conversion: {{ enabled: true }}
  prometheus/plain:
    endpoint: "127.0.0.1:{plain}"
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics:
      receivers: [otlp, gpu]
      processors: [enrich]
      exporters: [prometheus/promoted, prometheus/plain]
"#,
            lib = fake.library_path().display(),
            sock = socket.display(),
            api = api.url(),
        ),
        &[("K8S_NODE_NAME", "node-1")],
    );

    // An Xid error, so that the Xid counter has a series.
    fake.push_event(Event::xid(1, 13));
    let client = reqwest::Client::new();
    let label = |key: &str| sanitize_label_name(key);
    let deadline = Instant::now() + WAIT;
    let mut mpi_sent = false;
    loop {
        let full = scrape(&client, promoted).await;
        let bare = scrape(&client, plain).await;
        let mut missing = Vec::new();
        for uuid in &uuids {
            let enriched = full.values().any(|l| {
                l.get(&label(semconv::HW_ID))
                    .is_some_and(|v| v.contains(uuid))
                    && l.contains_key(&label(semconv::VCS_REF_HEAD_REVISION))
            });
            if !enriched {
                missing.push(format!("GPU {uuid} with its pod's revision"));
            }
        }
        // The MPI ranks report once the Catalog knows their pod (as the GPUs' revisions
        // show), so that the enrich processor stamps them too.
        if missing.is_empty() && !mpi_sent {
            for body in mpi_histograms() {
                let resp = client
                    .post(format!("http://127.0.0.1:{otlp}/v1/metrics"))
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .expect("push the MPI histograms");
                assert_eq!(resp.status().as_u16(), 200, "{}", hpcotel.stderr());
            }
            mpi_sent = true;
        }
        for (series, what) in [(&full, "promoted"), (&bare, "plain")] {
            if !has_label(series, &label(semconv::HPCOTEL_GPU_XID), Some("13")) {
                missing.push(format!("Xid 13 ({what})"));
            }
            if !has_label(series, &label(semconv::MPI_OPERATION), None) {
                missing.push(format!("MPI histograms ({what})"));
            }
        }
        let rank_1_enriched = full.values().any(|l| {
            l.get(&label(semconv::MPI_RANK))
                .is_some_and(|v| v.contains("1"))
                && l.contains_key(&label(semconv::VCS_REF_HEAD_REVISION))
        });
        if !rank_1_enriched {
            missing.push("rank 1's MPI histograms with its pod's revision".into());
        }
        if missing.is_empty() {
            kubelet.stop().await;
            // Without promotion the resource attributes are the labels of `target_info`.
            let labels_of = |series: &BTreeMap<String, Labels>| -> BTreeSet<String> {
                series
                    .iter()
                    .filter(|(name, _)| *name != "target_info")
                    .flat_map(|(_, l)| l.keys().cloned())
                    .collect()
            };
            let resource_labels = labels_of(&full)
                .difference(&labels_of(&bare))
                .cloned()
                .collect();
            return Exported {
                series: full,
                resource_labels,
                attributes: semconv_set(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "hpcotel never served {missing:?} within {WAIT:?}; hpcotel:\n{}",
            hpcotel.stderr()
        );
        // Poll; the gpu receiver reports every 300 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----------------------------------------------------------------------------------------
// Reading dashboards
// ----------------------------------------------------------------------------------------

/// Which query language a datasource speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Prometheus,
    Loki,
    Tempo,
}

fn lang_of(plugin: &str) -> Option<Lang> {
    match plugin {
        "prometheus" => Some(Lang::Prometheus),
        "loki" => Some(Lang::Loki),
        "tempo" => Some(Lang::Tempo),
        _ => None,
    }
}

/// One query of a dashboard, with what it must be checked against.
#[derive(Debug)]
struct Query {
    /// Where it is, for messages.
    at: String,
    lang: Lang,
    text: String,
    /// Label names used around it: `{{label}}` in a legend or title, annotation tag keys.
    labels: Vec<String>,
    /// A Prometheus variable query (`label_values(...)`), not an expression.
    variable: bool,
}

/// Grafana's own variables.
const GRAFANA_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__auto",
    "__from",
    "__to",
    "__dashboard",
    "__user",
    "__org",
    "__name",
    "__value",
    "__data",
    "__field",
    "__series",
    "__cell",
    "__timeFilter",
    "timeFilter",
];

/// `$name`, `${name}`, `${name:format}` and `[[name]]` references in `s`.
fn variable_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            let mut j = start;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            if j > start && !b[start].is_ascii_digit() {
                out.push(s[start..j].to_string());
            }
            i = j.max(i + 1);
        } else if b[i..].starts_with(b"[[") {
            let rest = &s[i + 2..];
            if let Some(end) = rest.find("]]") {
                let name = rest[..end].split(':').next().unwrap_or_default();
                if !name.is_empty() && name.bytes().all(ident) {
                    out.push(name.to_string());
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// `{{name}}` / `{{ .name }}` references of a Grafana legend or title format or a Go
/// template (Loki's `line_format`).
fn template_refs(s: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        if !inner.is_empty() && inner.chars().all(ident) {
            out.push(inner.to_string());
        } else {
            // `.field` tokens of a Go template action.
            let chars: Vec<char> = inner.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if *c == '.' && (i == 0 || !ident(chars[i - 1])) {
                    let name: String = chars[i + 1..].iter().take_while(|c| ident(**c)).collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            }
        }
        rest = &after[end + 2..];
    }
    out
}

/// The variable a datasource reference names: `${name}` or `$name`.
fn datasource_variable(s: &str) -> Option<&str> {
    let name = s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| s.strip_prefix('$'))?;
    (!name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        .then_some(name)
}

/// Every string value under `v`, with its path.
fn strings<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s)),
        Value::Object(map) => {
            for (k, child) in map {
                strings(child, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                strings(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Reports every `datasource` under `v` that does not select a declared datasource variable.
fn check_datasources(
    v: &Value,
    path: &str,
    ds_vars: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) {
    match v {
        Value::Object(map) => {
            let here = match map.get("title").or_else(|| map.get("name")) {
                Some(Value::String(t)) => format!("{path} {t:?}"),
                _ => path.to_string(),
            };
            for (k, child) in map {
                let p = format!("{here}.{k}");
                if k == "datasource" {
                    resolve_datasource(child, &p, ds_vars, errors);
                }
                check_datasources(child, &p, ds_vars, errors);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_datasources(child, &format!("{path}[{i}]"), ds_vars, errors);
            }
        }
        _ => {}
    }
}

/// The plugin a `datasource` value selects through a declared variable; an error for
/// anything else (a literal uid or name, an undeclared variable, a type mismatch).
fn resolve_datasource(
    ds: &Value,
    at: &str,
    ds_vars: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let (reference, declared_type) = match ds {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => match o.get("uid") {
            Some(Value::String(uid)) => (uid.as_str(), o.get("type").and_then(Value::as_str)),
            _ => {
                errors.push(format!("{at}: datasource without a uid: {ds}"));
                return None;
            }
        },
        Value::Null => {
            errors.push(format!(
                "{at}: null datasource (Grafana's default datasource): reference a datasource variable"
            ));
            return None;
        }
        other => {
            errors.push(format!("{at}: unexpected datasource {other}"));
            return None;
        }
    };
    let Some(var) = datasource_variable(reference) else {
        errors.push(format!(
            "{at}: hard-coded datasource {reference:?}: use a datasource variable such as ${{prometheus}}"
        ));
        return None;
    };
    let Some(plugin) = ds_vars.get(var) else {
        errors.push(format!(
            "{at}: datasource variable ${var} is not declared in templating.list as a datasource variable"
        ));
        return None;
    };
    if let Some(t) = declared_type
        && t != plugin
    {
        errors.push(format!(
            "{at}: datasource type {t:?} but variable ${var} selects {plugin:?} datasources"
        ));
    }
    Some(plugin.clone())
}

/// The queries of one dashboard, after checking its datasources and variables.
fn dashboard_queries(name: &str, dash: &Value, errors: &mut Vec<String>) -> Vec<Query> {
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut ds_vars = BTreeMap::new();
    let mut declared: BTreeSet<String> = GRAFANA_VARIABLES.iter().map(|s| s.to_string()).collect();
    for v in &vars {
        let Some(n) = v["name"].as_str() else {
            errors.push(format!("{name}: a variable without a name"));
            continue;
        };
        if !declared.insert(n.to_string()) {
            errors.push(format!("{name}: variable {n} declared twice"));
        }
        if v["type"] == "datasource" {
            match v["query"].as_str() {
                Some(plugin) if lang_of(plugin).is_some() => {
                    ds_vars.insert(n.to_string(), plugin.to_string());
                }
                other => errors.push(format!(
                    "{name}: datasource variable {n} selects {other:?}, expected prometheus, loki or tempo"
                )),
            }
        }
    }
    for key in ["__inputs", "__requires"] {
        if dash.get(key).is_some() {
            errors.push(format!(
                "{name}: {key} (an export for sharing externally): keep datasources as variables"
            ));
        }
    }
    check_datasources(dash, name, &ds_vars, errors);

    let mut queries = Vec::new();
    let mut used_vars = Vec::new();
    // The walk above reported every bad datasource already; a missing one is reported here.
    let lang_at = |ds: Option<&Value>, at: &str, errors: &mut Vec<String>| match ds {
        Some(ds) => resolve_datasource(ds, at, &ds_vars, &mut Vec::new()).and_then(|p| lang_of(&p)),
        None => {
            errors.push(format!(
                "{at}: no datasource (Grafana would use its default): reference a datasource variable"
            ));
            None
        }
    };

    // Variables.
    for (i, v) in vars.iter().enumerate() {
        if v["type"] != "query" {
            continue;
        }
        let at = format!("{name}: variable {}", v["name"]);
        let Some(lang) = lang_at(v.get("datasource"), &at, errors) else {
            continue;
        };
        let text = match &v["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        if text.is_empty() {
            errors.push(format!("{at}: no query"));
            continue;
        }
        if let Some(def) = v["definition"].as_str()
            && def != text
        {
            errors.push(format!(
                "{at}: definition {def:?} differs from the query {text:?}"
            ));
        }
        used_vars.extend(variable_refs(&text).into_iter().map(|r| (i, r)));
        queries.push(Query {
            at,
            lang,
            text,
            labels: Vec::new(),
            variable: true,
        });
    }

    // Annotations.
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        let at = format!("{name}: annotation {}", a["name"]);
        let Some(lang) = lang_at(a.get("datasource"), &at, errors) else {
            continue;
        };
        let text = a["expr"]
            .as_str()
            .or_else(|| a["target"]["expr"].as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(target) = a["target"]["expr"].as_str()
            && target != text
        {
            errors.push(format!("{at}: expr and target.expr differ"));
        }
        if text.is_empty() {
            errors.push(format!("{at}: no expr"));
            continue;
        }
        let mut labels = Vec::new();
        for key in ["titleFormat", "textFormat"] {
            labels.extend(template_refs(a[key].as_str().unwrap_or_default()));
        }
        labels.extend(
            a["tagKeys"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        queries.push(Query {
            at,
            lang,
            text,
            labels,
            variable: false,
        });
    }

    // Panels, rows' panels included.
    let mut panels: Vec<&Value> = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut ids = BTreeSet::new();
    for p in panels {
        let at = format!("{name}: panel {}", p["title"]);
        if let Some(id) = p["id"].as_u64()
            && !ids.insert(id)
        {
            errors.push(format!("{at}: panel id {id} used twice"));
        }
        let Some(targets) = p["targets"].as_array() else {
            if p["type"] != "row" && p["type"] != "text" {
                errors.push(format!("{at}: no targets"));
            }
            continue;
        };
        let panel_lang = lang_at(p.get("datasource"), &at, errors);
        for t in targets {
            let at = format!("{at} target {}", t["refId"]);
            let lang = match t.get("datasource") {
                Some(ds) => lang_at(Some(ds), &at, errors),
                None => panel_lang,
            };
            let Some(lang) = lang else { continue };
            if panel_lang.is_some_and(|p| p != lang) {
                errors.push(format!("{at}: its datasource differs from its panel's"));
            }
            let key = if lang == Lang::Tempo { "query" } else { "expr" };
            let text = t[key].as_str().unwrap_or_default().to_string();
            if text.trim().is_empty() {
                errors.push(format!("{at}: no {key}"));
                continue;
            }
            queries.push(Query {
                at,
                lang,
                text,
                labels: template_refs(t["legendFormat"].as_str().unwrap_or_default()),
                variable: false,
            });
        }
    }

    // Every `$variable` anywhere (queries, legends, titles, datasource references).
    let mut texts = Vec::new();
    strings(dash, name, &mut texts);
    for (at, text) in texts {
        for r in variable_refs(text) {
            if !declared.contains(&r) {
                errors.push(format!("{at}: ${r} is not a declared variable"));
            }
        }
    }
    // A variable may only use variables declared before it (Grafana resolves them in order).
    for (i, r) in used_vars {
        let pos = vars.iter().position(|v| v["name"] == r.as_str());
        if pos.is_some_and(|p| p >= i) {
            errors.push(format!(
                "{name}: variable {} uses ${r}, declared after it",
                vars[i]["name"]
            ));
        }
    }
    queries
}

// ----------------------------------------------------------------------------------------
// A small lexer shared by PromQL and LogQL
// ----------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number or a duration (`17`, `0.5`, `5m`), as written.
    Num(String),
    /// A Grafana variable outside a string (`$__rate_interval`).
    Var,
    Op(String),
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(format!("unterminated string in {q:?}"));
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    if let Some(&e) = chars.get(i) {
                        s.push(e);
                        i += 1;
                    }
                    continue;
                }
                s.push(d);
            }
            out.push(Tok::Str(s));
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            out.push(Tok::Var);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
            {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", ">=", "<=", "|=", "|~"].contains(&two.as_str()) {
                out.push(Tok::Op(two));
                i += 2;
            } else {
                out.push(Tok::Op(c.to_string()));
                i += 1;
            }
        }
    }
    Ok(out)
}

fn is_op(t: Option<&Tok>, ops: &[&str]) -> bool {
    matches!(t, Some(Tok::Op(o)) if ops.contains(&o.as_str()))
}

const MATCH_OPS: &[&str] = &["=", "!=", "=~", "!~"];
const COMPARE_OPS: &[&str] = &["=", "==", "!=", "=~", "!~", ">", ">=", "<", "<="];

// ----------------------------------------------------------------------------------------
// PromQL
// ----------------------------------------------------------------------------------------

/// One label matcher: `label op "value"` (value `None` when it is not a plain string).
#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: Option<String>,
}

/// A vector selector: `metric{matchers}`, `metric`, or `{matchers}`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Selector {
    metric: Option<String>,
    matchers: Vec<Matcher>,
}

/// The names a PromQL expression uses.
#[derive(Debug, Default, PartialEq)]
struct PromRefs {
    selectors: Vec<Selector>,
    /// Labels of `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    grouping: Vec<String>,
}

const PROMQL_GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Words that are not metric names where a metric name could stand.
const PROMQL_KEYWORDS: &[&str] = &[
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "start",
    "end",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

fn promql_refs(expr: &str) -> Result<PromRefs, String> {
    #[derive(Debug, PartialEq)]
    enum Ctx {
        Selector(usize),
        Range,
        Args,
        Labels,
    }
    let toks = lex(expr)?;
    let mut refs = PromRefs::default();
    let mut stack: Vec<Ctx> = Vec::new();
    // (token index, selector index) of the last bare metric name.
    let mut last_metric: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < toks.len() {
        let next = toks.get(i + 1);
        match &toks[i] {
            Tok::Op(o) => match o.as_str() {
                "{" => {
                    let sel = match last_metric {
                        Some((at, sel)) if at + 1 == i => sel,
                        _ => {
                            refs.selectors.push(Selector::default());
                            refs.selectors.len() - 1
                        }
                    };
                    stack.push(Ctx::Selector(sel));
                }
                "[" => stack.push(Ctx::Range),
                "(" => {
                    let grouping = matches!(i.checked_sub(1).map(|j| &toks[j]),
                        Some(Tok::Ident(w)) if PROMQL_GROUPING.contains(&w.as_str()));
                    stack.push(if grouping { Ctx::Labels } else { Ctx::Args });
                }
                "}" | "]" | ")" => {
                    let ok = matches!(
                        (o.as_str(), stack.pop()),
                        ("}", Some(Ctx::Selector(_)))
                            | ("]", Some(Ctx::Range))
                            | (")", Some(Ctx::Args | Ctx::Labels))
                    );
                    if !ok {
                        return Err(format!("unbalanced {o:?} in {expr:?}"));
                    }
                }
                _ => {}
            },
            Tok::Ident(word) => match stack.last() {
                Some(Ctx::Range) => {}
                Some(Ctx::Selector(sel)) => {
                    if !is_op(next, MATCH_OPS) {
                        return Err(format!("{word:?} without a matcher in {expr:?}"));
                    }
                    let value = match toks.get(i + 2) {
                        Some(Tok::Str(s)) => Some(s.clone()),
                        _ => None,
                    };
                    let Some(Tok::Op(op)) = next else {
                        unreachable!()
                    };
                    refs.selectors[*sel].matchers.push(Matcher {
                        label: word.clone(),
                        op: op.clone(),
                        value,
                    });
                    i += 2;
                }
                Some(Ctx::Labels) => refs.grouping.push(word.clone()),
                Some(Ctx::Args) | None => {
                    let call = is_op(next, &["("]);
                    if !call
                        && !PROMQL_KEYWORDS.contains(&word.as_str())
                        && !PROMQL_GROUPING.contains(&word.as_str())
                    {
                        refs.selectors.push(Selector {
                            metric: Some(word.clone()),
                            matchers: Vec::new(),
                        });
                        last_metric = Some((i, refs.selectors.len() - 1));
                    }
                }
            },
            _ => {}
        }
        i += 1;
    }
    if !stack.is_empty() {
        return Err(format!("unbalanced brackets in {expr:?}"));
    }
    Ok(refs)
}

/// A Prometheus variable query: `label_values(selector, label)`, `label_values(label)` or
/// `query_result(expr)`, as (PromQL, label).
fn prometheus_variable(q: &str) -> Result<(Option<String>, Option<String>), String> {
    let q = q.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return Ok(match inner.rsplit_once(',') {
            Some((sel, label)) => (Some(sel.trim().to_string()), Some(label.trim().to_string())),
            None => (None, Some(inner.trim().to_string())),
        });
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return Ok((Some(inner.to_string()), None));
    }
    Err(format!(
        "unsupported variable query {q:?} (label_values or query_result)"
    ))
}

/// The alternatives of a regex that is only literal words joined by `|`.
fn literal_alternatives(re: &str) -> Option<Vec<&str>> {
    let alts: Vec<&str> = re.split('|').collect();
    alts.iter()
        .all(|a| !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        .then_some(alts)
}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    candidates
        .min_by_key(|c| distance(name, c))
        .map(|c| format!(" (closest exported: {c})"))
        .unwrap_or_default()
}

/// Checks one PromQL expression: its metrics, labels and literal label values must be
/// served; `extra` labels (legend, tag keys, a variable's label) must be on its metrics.
fn check_promql(at: &str, expr: &str, extra: &[String], ex: &Exported, errors: &mut Vec<String>) {
    let refs = match promql_refs(expr) {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("{at}: {e}"));
            return;
        }
    };
    let all = ex.all_labels();
    let mut available: BTreeSet<String> = BTreeSet::new();
    let mut named_any = false;
    for sel in &refs.selectors {
        let labels = match &sel.metric {
            Some(m) => match ex.series.get(m) {
                Some(l) => {
                    named_any = true;
                    available.extend(l.keys().cloned());
                    Some(l)
                }
                None => {
                    errors.push(format!(
                        "{at}: metric {m} is not exported by hpcotel{}",
                        closest(m, ex.series.keys())
                    ));
                    continue;
                }
            },
            None => None,
        };
        for m in &sel.matchers {
            if m.label == "__name__" {
                continue;
            }
            let known = labels.map_or(all.contains(&m.label), |l| l.contains_key(&m.label));
            if !known {
                let on = sel.metric.as_deref().unwrap_or("any series");
                errors.push(format!(
                    "{at}: label {} is not on {on}{}",
                    m.label,
                    closest(
                        &m.label,
                        labels
                            .map_or(all.clone(), |l| l.keys().cloned().collect())
                            .iter()
                    )
                ));
                continue;
            }
            // Literal values must be values hpcotel serves (a `!=` of a value never served
            // filters nothing: a typo).
            let (Some(l), Some(value)) = (labels, &m.value) else {
                continue;
            };
            let values: Vec<&str> = match m.op.as_str() {
                "=" | "!=" if !value.is_empty() && !value.contains('$') => vec![value.as_str()],
                "=~" | "!~" if !value.contains('$') => {
                    literal_alternatives(value).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            for v in values {
                if !l[&m.label].contains(v) {
                    errors.push(format!(
                        "{at}: {}{{{}=\"{v}\"}} is never served (values: {:?})",
                        sel.metric.as_deref().unwrap_or_default(),
                        m.label,
                        l[&m.label]
                    ));
                }
            }
        }
    }
    if !named_any {
        available = all;
    }
    for label in refs.grouping.iter().chain(extra) {
        if !available.contains(label) {
            errors.push(format!(
                "{at}: label {label} is not on the metrics of {expr:?}{}",
                closest(label, available.iter())
            ));
        }
    }
}

// ----------------------------------------------------------------------------------------
// LogQL
// ----------------------------------------------------------------------------------------

/// The names a LogQL query uses: stream selector labels and pipeline fields.
#[derive(Debug, Default, PartialEq)]
struct LogRefs {
    stream: Vec<String>,
    fields: Vec<String>,
}

fn logql_refs(expr: &str) -> Result<LogRefs, String> {
    let toks = lex(expr)?;
    let mut refs = LogRefs::default();
    let mut depth_brace = 0usize;
    let mut labels_paren = false;
    let mut i = 0;
    while i < toks.len() {
        let prev = i.checked_sub(1).map(|j| &toks[j]);
        let next = toks.get(i + 1);
        match &toks[i] {
            Tok::Op(o) if o == "{" => depth_brace += 1,
            Tok::Op(o) if o == "}" => {
                depth_brace = depth_brace
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced }} in {expr:?}"))?;
            }
            Tok::Op(o) if o == "(" => {
                labels_paren = matches!(prev, Some(Tok::Ident(w)) if w == "by" || w == "without");
            }
            Tok::Op(o) if o == ")" => labels_paren = false,
            Tok::Ident(w) if depth_brace > 0 => {
                if !is_op(next, MATCH_OPS) {
                    return Err(format!("{w:?} without a matcher in {expr:?}"));
                }
                refs.stream.push(w.clone());
                i += 2;
            }
            Tok::Ident(w) if labels_paren => refs.fields.push(w.clone()),
            Tok::Ident(w) if w == "unwrap" => {
                // `unwrap field` or `unwrap duration(field)`.
                let mut j = i + 1;
                if is_op(toks.get(j + 1), &["("]) {
                    j += 2;
                }
                match toks.get(j) {
                    Some(Tok::Ident(f)) => refs.fields.push(f.clone()),
                    _ => return Err(format!("unwrap without a field in {expr:?}")),
                }
                i = j;
            }
            Tok::Ident(w) if w == "label_format" => {
                return Err(format!("label_format is not supported here: {expr:?}"));
            }
            Tok::Ident(w) if w == "line_format" => {
                if let Some(Tok::Str(template)) = next {
                    refs.fields.extend(template_refs(template));
                    i += 1;
                }
            }
            Tok::Ident(w) if is_op(next, COMPARE_OPS) => {
                refs.fields.push(w.clone());
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    if depth_brace != 0 {
        return Err(format!("unbalanced {{ in {expr:?}"));
    }
    if refs.stream.is_empty() {
        return Err(format!("no stream selector in {expr:?}"));
    }
    Ok(refs)
}

fn check_logql(at: &str, expr: &str, extra: &[String], ex: &Exported, errors: &mut Vec<String>) {
    let refs = match logql_refs(expr) {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("{at}: {e}"));
            return;
        }
    };
    let stream = ex.loki_stream_labels();
    let fields = ex.loki_fields();
    for l in &refs.stream {
        if !stream.contains(l) {
            errors.push(format!(
                "{at}: {l} is not a Loki index label of hpcotel's logs (index labels: {stream:?}); \
                 filter on it in the pipeline (`| {l}=…`)"
            ));
        }
    }
    for f in refs.fields.iter().chain(extra) {
        if !fields.contains(f) {
            errors.push(format!(
                "{at}: {f} is not an attribute hpcotel emits (as Loki stores it){}",
                closest(f, fields.iter())
            ));
        }
    }
}

// ----------------------------------------------------------------------------------------
// TraceQL
// ----------------------------------------------------------------------------------------

const TRACEQL_WORDS: &[&str] = &[
    "name",
    "status",
    "statusMessage",
    "kind",
    "duration",
    "traceDuration",
    "rootName",
    "rootServiceName",
    "span:name",
    "span:status",
    "span:statusMessage",
    "span:kind",
    "span:duration",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
    "ok",
    "error",
    "unset",
    "nil",
    "true",
    "false",
    "client",
    "server",
    "internal",
    "producer",
    "consumer",
    "count",
    "avg",
    "min",
    "max",
    "sum",
    "by",
    "select",
    "coalesce",
    "rate",
    "count_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "with",
];
const TRACEQL_SCOPES: &[&str] = &["span.", "resource.", "event.", "link.", "instrumentation."];

/// The attribute names a TraceQL query uses (scope stripped); an error for unknown words.
fn traceql_attributes(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let word_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/');
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
            }
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(attr) = word.strip_prefix('.') {
                out.push(attr.to_string());
            } else if let Some(scope) = TRACEQL_SCOPES.iter().find(|s| word.starts_with(**s)) {
                out.push(word[scope.len()..].to_string());
            } else if !TRACEQL_WORDS.contains(&word.as_str()) {
                return Err(format!("unknown word {word:?} in TraceQL {q:?}"));
            }
        } else {
            i += 1;
        }
    }
    Ok(out)
}

fn check_traceql(at: &str, q: &str, ex: &Exported, errors: &mut Vec<String>) {
    match traceql_attributes(q) {
        Ok(attrs) => {
            for a in attrs {
                if !ex.attributes.contains(&a) {
                    errors.push(format!(
                        "{at}: {a} is not an attribute hpcotel emits{}",
                        closest(&a, ex.attributes.iter())
                    ));
                }
            }
        }
        Err(e) => errors.push(format!("{at}: {e}")),
    }
}

// ----------------------------------------------------------------------------------------
// Checking dashboards
// ----------------------------------------------------------------------------------------

/// Every problem of dashboard `name` against what hpcotel exports.
fn check_dashboard(name: &str, dash: &Value, ex: &Exported) -> Vec<String> {
    let mut errors = Vec::new();
    for q in dashboard_queries(name, dash, &mut errors) {
        match q.lang {
            Lang::Prometheus if q.variable => match prometheus_variable(&q.text) {
                Ok((expr, label)) => {
                    let extra: Vec<String> = label.into_iter().collect();
                    match expr {
                        Some(e) => check_promql(&q.at, &e, &extra, ex, &mut errors),
                        None => {
                            for l in extra {
                                if !ex.all_labels().contains(&l) {
                                    errors.push(format!("{}: label {l} is not exported", q.at));
                                }
                            }
                        }
                    }
                }
                Err(e) => errors.push(format!("{}: {e}", q.at)),
            },
            Lang::Prometheus => check_promql(&q.at, &q.text, &q.labels, ex, &mut errors),
            Lang::Loki => check_logql(&q.at, &q.text, &q.labels, ex, &mut errors),
            Lang::Tempo => check_traceql(&q.at, &q.text, ex, &mut errors),
        }
    }
    errors
}

/// Every `dashboards/*.json`, parsed.
fn dashboards() -> Vec<(String, Value)> {
    let dir = repo_path("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 3,
        "expected the dashboards in {}",
        dir.display()
    );
    out
}

/// Every PromQL expression of a dashboard, variables replaced so that it parses.
fn promql_expressions(name: &str, dash: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for q in dashboard_queries(name, dash, &mut errors) {
        if q.lang != Lang::Prometheus {
            continue;
        }
        let expr = if q.variable {
            match prometheus_variable(&q.text) {
                Ok((Some(e), _)) => e,
                _ => continue,
            }
        } else {
            q.text.clone()
        };
        out.push((q.at, expr));
    }
    assert!(errors.is_empty(), "{errors:#?}");
    out
}

/// `expr` with Grafana's variables replaced: intervals by `5m`, others (inside label
/// matchers) by `x`.
fn substitute_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            (inner[..end].split(':').next().unwrap_or_default(), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        out.push_str(if name.starts_with("__") { "5m" } else { "x" });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

// ----------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_query_only_what_hpcotel_exports() {
    let ex = exported_by_hpcotel().await;
    let mut errors = Vec::new();
    let mut used_labels = BTreeSet::new();
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for (name, dash) in dashboards() {
        errors.extend(check_dashboard(&name, &dash, &ex));
        for q in dashboard_queries(&name, &dash, &mut Vec::new()) {
            *checked.entry(format!("{:?}", q.lang)).or_default() += 1;
            if q.lang != Lang::Prometheus {
                continue;
            }
            let (expr, label) = if q.variable {
                prometheus_variable(&q.text).unwrap_or_default()
            } else {
                (Some(q.text.clone()), None)
            };
            used_labels.extend(q.labels.into_iter().chain(label));
            if let Some(Ok(refs)) = expr.map(|e| promql_refs(&e)) {
                used_labels.extend(refs.grouping);
                for s in refs.selectors {
                    used_labels.extend(s.matchers.into_iter().map(|m| m.label));
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "the dashboards name what hpcotel does not export:\n{}",
        errors.join("\n")
    );

    // Every dashboard was read: the queries of all three languages were checked.
    for (lang, at_least) in [("Prometheus", 60), ("Loki", 13), ("Tempo", 6)] {
        let n = checked.get(lang).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "only {n} {lang} queries checked: {checked:?}"
        );
    }

    // The resource attributes the dashboards need as labels are exactly the ones
    // dashboards/README.md tells operators to promote.
    let needed: BTreeSet<String> = used_labels
        .intersection(&ex.resource_labels)
        .cloned()
        .collect();
    let readme = common::repo_file("dashboards/README.md");
    let line = readme
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("promote_otel_resource_attributes:")
        })
        .expect("dashboards/README.md has a promote_otel_resource_attributes line");
    let listed: BTreeSet<String> = line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches('"')
        .split(',')
        .map(|a| a.trim().to_string())
        .collect();
    for a in &listed {
        assert!(
            ex.attributes.contains(a),
            "dashboards/README.md promotes {a}, not an attribute hpcotel emits"
        );
    }
    let listed_labels: BTreeSet<String> = listed.iter().map(|a| sanitize_label_name(a)).collect();
    assert_eq!(
        listed_labels, needed,
        "dashboards/README.md's promote_otel_resource_attributes must list exactly the resource \
         attributes the dashboards use as labels"
    );
}

#[test]
fn every_promql_expression_parses() {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} not found: run `bash scripts/test.sh` once (it installs the Debian package \
         `prometheus`)"
    );
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (name, dash) in dashboards() {
        for (at, expr) in promql_expressions(&name, &dash) {
            n += 1;
            let expr = substitute_variables(&expr);
            rules.push_str(&format!(
                "      # {}\n      - record: dashboard:query_{n}\n        expr: {}\n",
                at.replace('\n', " "),
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    assert!(n > 30, "only {n} PromQL expressions");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = std::process::Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboards_are_importable() {
    for (name, dash) in dashboards() {
        assert!(
            dash["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{name}: a uid of at most 40 characters"
        );
        assert!(dash["title"].as_str().is_some(), "{name}: a title");
        assert!(dash["id"].is_null(), "{name}: id must be null to import");
        assert!(
            dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}: schemaVersion"
        );
        for p in dash["panels"].as_array().expect("panels") {
            assert!(
                p["gridPos"]["w"].as_u64().is_some(),
                "{name}: gridPos of {}",
                p["title"]
            );
        }
    }
}

// ---- the checker itself: a wrong name must fail ----

/// A small export: two GPU metrics and an MPI histogram.
fn small_export() -> Exported {
    let labels = |pairs: &[(&str, &[&str])]| -> Labels {
        pairs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    };
    let gpu: &[(&str, &[&str])] = &[
        ("hw_name", &["gpu0"]),
        ("k8s_node_name", &["node-1"]),
        ("hw_gpu_task", &["general", "encoder"]),
    ];
    let mut series = BTreeMap::new();
    series.insert("hw_gpu_utilization_ratio".to_string(), labels(gpu));
    series.insert("hw_power_watts".to_string(), labels(&gpu[..2]));
    series.insert(
        "mpi_call_duration_seconds_bucket".to_string(),
        labels(&[
            ("mpi_operation", &["Allreduce"]),
            ("le", &["0.001", "+Inf"]),
        ]),
    );
    Exported {
        series,
        resource_labels: ["k8s_node_name".to_string()].into(),
        attributes: semconv_set(),
    }
}

fn small_dashboard(prom: &str, loki: &str, tempo: &str) -> Value {
    json!({
        "uid": "t", "title": "t", "id": null, "schemaVersion": 39,
        "templating": {"list": [
            {"name": "prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "loki", "type": "datasource", "query": "loki"},
            {"name": "tempo", "type": "datasource", "query": "tempo"},
            {"name": "node", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${prometheus}"},
             "query": {"query": "label_values(hw_power_watts, k8s_node_name)", "refId": "A"},
             "definition": "label_values(hw_power_watts, k8s_node_name)"}
        ]},
        "panels": [
            {"id": 1, "title": "p", "type": "timeseries",
             "datasource": {"type": "prometheus", "uid": "${prometheus}"},
             "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${prometheus}"},
                          "expr": prom, "legendFormat": "{{hw_name}}"}]},
            {"id": 2, "title": "l", "type": "logs",
             "datasource": {"type": "loki", "uid": "${loki}"},
             "targets": [{"refId": "A", "expr": loki}]},
            {"id": 3, "title": "t", "type": "table",
             "datasource": {"type": "tempo", "uid": "${tempo}"},
             "targets": [{"refId": "A", "queryType": "traceql", "query": tempo}]}
        ]
    })
}

const GOOD_PROMQL: &str = r#"histogram_quantile(0.99, sum by (le, mpi_operation) (rate(mpi_call_duration_seconds_bucket{mpi_operation=~"Allreduce"}[$__rate_interval]))) or avg by (hw_name) (hw_gpu_utilization_ratio{hw_gpu_task="general", k8s_node_name=~"$node"})"#;
const GOOD_LOGQL: &str =
    r#"{service_name=~".+"} | mpi_straggler_rank != "" | line_format "{{.mpi_straggler_host}}""#;
const GOOD_TRACEQL: &str = r#"{ name = "mpi.job" && resource.mpi.job.id =~ "$node" && span.vcs.ref.head.revision != nil }"#;

#[test]
fn the_checker_accepts_a_correct_dashboard() {
    let errors = check_dashboard(
        "good",
        &small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL),
        &small_export(),
    );
    assert!(errors.is_empty(), "{errors:#?}");
}

fn assert_rejected(dash: Value, needle: &str) {
    let errors = check_dashboard("bad", &dash, &small_export());
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "expected an error about {needle:?}, got {errors:#?}"
    );
}

#[test]
fn the_checker_rejects_a_renamed_metric_or_label() {
    // A metric renamed to a wrong one.
    assert_rejected(
        small_dashboard(
            &GOOD_PROMQL.replace("hw_gpu_utilization_ratio", "hw_gpu_utilisation_ratio"),
            GOOD_LOGQL,
            GOOD_TRACEQL,
        ),
        "metric hw_gpu_utilisation_ratio is not exported",
    );
    // The OpenTelemetry name instead of the Prometheus one.
    assert_rejected(
        small_dashboard("hw_power{k8s_node_name=\"a\"}", GOOD_LOGQL, GOOD_TRACEQL),
        "metric hw_power is not exported",
    );
    // A histogram without its series suffix.
    assert_rejected(
        small_dashboard(
            "rate(mpi_call_duration_seconds[5m])",
            GOOD_LOGQL,
            GOOD_TRACEQL,
        ),
        "metric mpi_call_duration_seconds is not exported",
    );
    // A label that is not on the metric, in a matcher, a by clause and a legend.
    assert_rejected(
        small_dashboard(
            &GOOD_PROMQL.replace("k8s_node_name=~", "k8s_node=~"),
            GOOD_LOGQL,
            GOOD_TRACEQL,
        ),
        "label k8s_node is not on hw_gpu_utilization_ratio",
    );
    assert_rejected(
        small_dashboard(
            "sum by (mpi_operation) (hw_power_watts)",
            GOOD_LOGQL,
            GOOD_TRACEQL,
        ),
        "label mpi_operation is not on the metrics",
    );
    let mut d = small_dashboard("hw_power_watts", GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][0]["targets"][0]["legendFormat"] = json!("{{hw_name}} {{hw_gpu_task}}");
    assert_rejected(d, "label hw_gpu_task is not on the metrics");
    // A label value hpcotel never serves.
    assert_rejected(
        small_dashboard(
            &GOOD_PROMQL.replace("\"general\"", "\"graphics\""),
            GOOD_LOGQL,
            GOOD_TRACEQL,
        ),
        "hw_gpu_task=\"graphics\"",
    );
    // A Loki field and a Tempo attribute that are not hpcotel's.
    assert_rejected(
        small_dashboard(
            GOOD_PROMQL,
            &GOOD_LOGQL.replace("mpi_straggler_rank", "mpi_straggler"),
            GOOD_TRACEQL,
        ),
        "mpi_straggler is not an attribute",
    );
    assert_rejected(
        small_dashboard(
            GOOD_PROMQL,
            &GOOD_LOGQL.replace("service_name", "mpi_job_id"),
            GOOD_TRACEQL,
        ),
        "mpi_job_id is not a Loki index label",
    );
    assert_rejected(
        small_dashboard(
            GOOD_PROMQL,
            GOOD_LOGQL,
            &GOOD_TRACEQL.replace("vcs.ref.head.revision", "vcs.revision"),
        ),
        "vcs.revision is not an attribute",
    );
}

#[test]
fn the_checker_rejects_hard_coded_datasources() {
    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][0]["targets"][0]["datasource"] =
        json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
    assert_rejected(d, "hard-coded datasource \"P1809F7CD0C75ACF3\"");

    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][1]["datasource"] = json!("Loki");
    assert_rejected(d, "hard-coded datasource \"Loki\"");

    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][2]["datasource"] = json!({"type": "tempo", "uid": "${traces}"});
    assert_rejected(d, "$traces is not declared");

    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][2]["datasource"] = Value::Null;
    assert_rejected(d, "null datasource");

    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][1].as_object_mut().unwrap().remove("datasource");
    assert_rejected(d, "no datasource");

    let mut d = small_dashboard(GOOD_PROMQL, GOOD_LOGQL, GOOD_TRACEQL);
    d["panels"][0]["targets"][0]["expr"] = json!("hw_power_watts{k8s_node_name=~\"$nodes\"}");
    assert_rejected(d, "$nodes is not a declared variable");
}

#[test]
fn promql_names_are_extracted() {
    let refs = promql_refs(
        r#"sum by (k8s_node_name) (increase(hpcotel_gpu_xid_errors_total{hw_name=~"$gpu", k8s_pod_name!=""}[$__range])) / on (k8s_node_name) group_left (hw_model) count(hw_power_watts offset 5m) > bool 0"#,
    )
    .unwrap();
    assert_eq!(
        refs.selectors,
        vec![
            Selector {
                metric: Some("hpcotel_gpu_xid_errors_total".into()),
                matchers: vec![
                    Matcher {
                        label: "hw_name".into(),
                        op: "=~".into(),
                        value: Some("$gpu".into())
                    },
                    Matcher {
                        label: "k8s_pod_name".into(),
                        op: "!=".into(),
                        value: Some(String::new())
                    },
                ],
            },
            Selector {
                metric: Some("hw_power_watts".into()),
                matchers: vec![]
            },
        ]
    );
    assert_eq!(
        refs.grouping,
        vec!["k8s_node_name", "k8s_node_name", "hw_model"]
    );
    let refs = promql_refs(r#"{__name__=~"hw_.*", vcs_ref_head_revision="abc"}"#).unwrap();
    assert_eq!(refs.selectors.len(), 1);
    assert_eq!(refs.selectors[0].metric, None);
    assert!(promql_refs("sum(rate(x[5m])").is_err());
}

#[test]
fn logql_and_traceql_names_are_extracted() {
    let refs = logql_refs(
        r#"max by (mpi_straggler_rank) (max_over_time({service_name=~".+", k8s_namespace_name="ml"} |= "straggler" | mpi_job_id=~"$job" | unwrap mpi_straggler_delay [$__interval]))"#,
    )
    .unwrap();
    assert_eq!(refs.stream, vec!["service_name", "k8s_namespace_name"]);
    assert_eq!(
        refs.fields,
        vec!["mpi_straggler_rank", "mpi_job_id", "mpi_straggler_delay"]
    );
    assert_eq!(
        traceql_attributes(
            r#"{ resource.service.name = "argocd" && span.vcs.ref.head.revision = "$rev" && .hpcotel.argocd.application =~ "a.b" } >> { status = error && duration > 10ms }"#
        )
        .unwrap(),
        vec![
            "service.name",
            "vcs.ref.head.revision",
            "hpcotel.argocd.application"
        ]
    );
    assert!(traceql_attributes("{ revision = \"x\" }").is_err());
    assert_eq!(
        variable_refs("a $b ${c} ${d:regex} [[e]] $1 µ $"),
        vec!["b", "c", "d", "e"]
    );
    assert_eq!(
        template_refs("{{k8s_node_name}} {{ .hw_name }} x"),
        vec!["k8s_node_name", "hw_name"]
    );
    assert_eq!(
        substitute_variables("rate(a{b=~\"$c\"}[$__rate_interval])"),
        "rate(a{b=~\"x\"}[5m])"
    );
}

// ----------------------------------------------------------------------------------------
// LogQL on Loki entries: the rollout dashboard's crash panels run on hpcotel's records
// ----------------------------------------------------------------------------------------

/// One log record as Loki's OTLP ingestion stores it (Loki 3, default `otlp_config`): the
/// resource attributes of [`LOKI_DEFAULT_INDEX_ATTRIBUTES`] as index labels (`service_name`
/// `unknown_service` without `service.name`), every other resource and record attribute as
/// structured metadata, with dots as `_`, plus what Loki adds (severity, trace context).
#[derive(Debug, Clone, Default)]
struct LokiEntry {
    /// Index labels.
    stream: BTreeMap<String, String>,
    /// Index labels and structured metadata: what a label filter sees.
    fields: BTreeMap<String, String>,
    /// The body.
    line: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every record of `logs` as a [`LokiEntry`].
fn loki_entries(logs: &[ResourceLogs]) -> Vec<LokiEntry> {
    let mut out = Vec::new();
    for rl in logs {
        let mut base = LokiEntry::default();
        let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        for kv in resource {
            let Some(value) = kv.value.as_ref().and_then(any_value_string) else {
                continue;
            };
            let name = sanitize_label_name(&kv.key);
            if LOKI_DEFAULT_INDEX_ATTRIBUTES.contains(&kv.key.as_str()) {
                base.stream.insert(name.clone(), value.clone());
            }
            base.fields.insert(name, value);
        }
        if !base.stream.contains_key("service_name") {
            base.stream
                .insert("service_name".into(), "unknown_service".into());
            base.fields
                .insert("service_name".into(), "unknown_service".into());
        }
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let mut e = base.clone();
                for kv in &r.attributes {
                    if let Some(value) = kv.value.as_ref().and_then(any_value_string) {
                        e.fields.insert(sanitize_label_name(&kv.key), value);
                    }
                }
                if r.severity_number != 0 {
                    e.fields
                        .insert("severity_number".into(), r.severity_number.to_string());
                }
                if !r.severity_text.is_empty() {
                    e.fields
                        .insert("severity_text".into(), r.severity_text.clone());
                }
                if !r.trace_id.is_empty() {
                    e.fields.insert("trace_id".into(), hex(&r.trace_id));
                }
                if !r.span_id.is_empty() {
                    e.fields.insert("span_id".into(), hex(&r.span_id));
                }
                e.line = r
                    .body
                    .as_ref()
                    .and_then(any_value_string)
                    .unwrap_or_default();
                out.push(e);
            }
        }
    }
    out
}

/// A LogQL label filter expression.
#[derive(Debug, Clone, PartialEq)]
enum LabelFilter {
    /// `label op "value"`: `=`, `!=`, `=~`, `!~`; a missing label is `""`.
    Str {
        label: String,
        op: String,
        value: String,
    },
    /// `label op number`: `==`, `!=`, `>`, `>=`, `<`, `<=`; a missing label fails it.
    Num {
        label: String,
        op: String,
        value: f64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// A log query: `{matchers} | filter | filter …` (label filter stages only).
#[derive(Debug, Clone, PartialEq)]
struct LogQuery {
    selector: Vec<(String, String, String)>,
    stages: Vec<LabelFilter>,
}

/// The LogQL the crash panels use: a log query, or `sum by (labels)
/// (count_over_time(<log query> [range]))`.
#[derive(Debug, Clone, PartialEq)]
enum Logql {
    Logs(LogQuery),
    CountBy { by: Vec<String>, query: LogQuery },
}

/// A regex as Loki applies it (anchored at both ends), for the patterns the dashboards use:
/// `.+`, `.*`, or literal alternatives (`aaa|bbb`).
fn logql_regex_matches(re: &str, value: &str) -> Result<bool, String> {
    match re {
        ".+" => Ok(!value.is_empty()),
        ".*" => Ok(true),
        _ => {
            let alternatives: Vec<&str> = re.split('|').collect();
            if alternatives.iter().all(|a| {
                !a.is_empty()
                    && a.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
            }) {
                Ok(alternatives.contains(&value))
            } else {
                Err(format!(
                    "regex {re:?} is beyond this evaluator (.+, .* or literal alternatives)"
                ))
            }
        }
    }
}

struct LogqlParser {
    toks: Vec<Tok>,
    at: usize,
}

impl LogqlParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Op(o)) if o == op => Ok(()),
            other => Err(format!("expected {op:?}, found {other:?}")),
        }
    }

    fn expect_ident(&mut self, word: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Ident(w)) if w == word => Ok(()),
            other => Err(format!("expected {word:?}, found {other:?}")),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(w)) => Ok(w),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn query(&mut self) -> Result<Logql, String> {
        let q = if matches!(self.peek(), Some(Tok::Ident(w)) if w == "sum") {
            self.next();
            self.expect_ident("by")?;
            self.expect_op("(")?;
            let mut by = vec![self.ident()?];
            while matches!(self.peek(), Some(Tok::Op(o)) if o == ",") {
                self.next();
                by.push(self.ident()?);
            }
            self.expect_op(")")?;
            self.expect_op("(")?;
            self.expect_ident("count_over_time")?;
            self.expect_op("(")?;
            let query = self.log_query()?;
            self.expect_op("[")?;
            match self.next() {
                Some(Tok::Num(_)) => {}
                other => return Err(format!("expected a range, found {other:?}")),
            }
            self.expect_op("]")?;
            self.expect_op(")")?;
            self.expect_op(")")?;
            Logql::CountBy { by, query }
        } else {
            Logql::Logs(self.log_query()?)
        };
        match self.peek() {
            None => Ok(q),
            Some(t) => Err(format!("unexpected {t:?} after the query")),
        }
    }

    fn log_query(&mut self) -> Result<LogQuery, String> {
        self.expect_op("{")?;
        let mut selector = Vec::new();
        loop {
            let label = self.ident()?;
            let op = match self.next() {
                Some(Tok::Op(o)) if MATCH_OPS.contains(&o.as_str()) => o,
                other => return Err(format!("expected a matcher after {label}, found {other:?}")),
            };
            let value = match self.next() {
                Some(Tok::Str(v)) => v,
                other => {
                    return Err(format!(
                        "expected a string after {label}{op}, found {other:?}"
                    ));
                }
            };
            selector.push((label, op, value));
            match self.next() {
                Some(Tok::Op(o)) if o == "," => continue,
                Some(Tok::Op(o)) if o == "}" => break,
                other => return Err(format!("expected , or }}, found {other:?}")),
            }
        }
        let mut stages = Vec::new();
        while matches!(self.peek(), Some(Tok::Op(o)) if o == "|") {
            self.next();
            stages.push(self.or_filter()?);
        }
        Ok(LogQuery { selector, stages })
    }

    fn or_filter(&mut self) -> Result<LabelFilter, String> {
        let mut left = self.and_filter()?;
        while matches!(self.peek(), Some(Tok::Ident(w)) if w == "or") {
            self.next();
            left = LabelFilter::Or(Box::new(left), Box::new(self.and_filter()?));
        }
        Ok(left)
    }

    fn and_filter(&mut self) -> Result<LabelFilter, String> {
        let mut left = self.primary_filter()?;
        while matches!(self.peek(), Some(Tok::Ident(w)) if w == "and")
            || matches!(self.peek(), Some(Tok::Op(o)) if o == ",")
        {
            self.next();
            left = LabelFilter::And(Box::new(left), Box::new(self.primary_filter()?));
        }
        Ok(left)
    }

    fn primary_filter(&mut self) -> Result<LabelFilter, String> {
        if matches!(self.peek(), Some(Tok::Op(o)) if o == "(") {
            self.next();
            let f = self.or_filter()?;
            self.expect_op(")")?;
            return Ok(f);
        }
        let label = self.ident()?;
        if [
            "json",
            "logfmt",
            "regexp",
            "pattern",
            "unpack",
            "line_format",
            "label_format",
            "unwrap",
            "keep",
            "drop",
            "decolorize",
            "__error__",
        ]
        .contains(&label.as_str())
        {
            return Err(format!(
                "{label} is beyond this evaluator (label filters only)"
            ));
        }
        let op = match self.next() {
            Some(Tok::Op(o)) if COMPARE_OPS.contains(&o.as_str()) => o,
            other => {
                return Err(format!(
                    "expected a comparison after {label}, found {other:?}"
                ));
            }
        };
        match self.next() {
            Some(Tok::Str(value)) if MATCH_OPS.contains(&op.as_str()) => {
                if op.contains('~') {
                    logql_regex_matches(&value, "")?;
                }
                Ok(LabelFilter::Str { label, op, value })
            }
            Some(Tok::Num(n)) if op != "=" && op != "=~" && op != "!~" => {
                let value = n
                    .parse::<f64>()
                    .map_err(|_| format!("{label} {op} {n}: not a number (durations and bytes are beyond this evaluator)"))?;
                Ok(LabelFilter::Num { label, op, value })
            }
            other => Err(format!("{label} {op}: unexpected {other:?}")),
        }
    }
}

fn parse_logql(expr: &str) -> Result<Logql, String> {
    let mut p = LogqlParser {
        toks: lex(expr)?,
        at: 0,
    };
    p.query().map_err(|e| format!("{e} in {expr:?}"))
}

impl LabelFilter {
    /// Whether `e` passes, as Loki's label filter stages decide; an error where Loki would set
    /// `__error__` (a number that does not parse).
    fn matches(&self, e: &LokiEntry) -> Result<bool, String> {
        match self {
            LabelFilter::Str { label, op, value } => {
                let v = e.fields.get(label).map_or("", String::as_str);
                Ok(match op.as_str() {
                    "=" => v == value,
                    "!=" => v != value,
                    "=~" => logql_regex_matches(value, v)?,
                    "!~" => !logql_regex_matches(value, v)?,
                    _ => unreachable!(),
                })
            }
            LabelFilter::Num { label, op, value } => {
                let Some(v) = e.fields.get(label) else {
                    return Ok(false);
                };
                let v: f64 = v
                    .parse()
                    .map_err(|_| format!("{label}={v:?} is not a number: Loki sets __error__"))?;
                Ok(match op.as_str() {
                    "==" => v == *value,
                    "!=" => v != *value,
                    ">" => v > *value,
                    ">=" => v >= *value,
                    "<" => v < *value,
                    "<=" => v <= *value,
                    _ => unreachable!(),
                })
            }
            LabelFilter::And(a, b) => Ok(a.matches(e)? && b.matches(e)?),
            LabelFilter::Or(a, b) => Ok(a.matches(e)? || b.matches(e)?),
        }
    }

    fn labels(&self, out: &mut Vec<String>) {
        match self {
            LabelFilter::Str { label, .. } | LabelFilter::Num { label, .. } => {
                out.push(label.clone())
            }
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
                a.labels(out);
                b.labels(out);
            }
        }
    }
}

impl LogQuery {
    fn select<'e>(&self, entries: &'e [LokiEntry]) -> Result<Vec<&'e LokiEntry>, String> {
        // Loki refuses a selector whose every matcher matches the empty string.
        let not_empty = |(_, op, v): &(String, String, String)| match op.as_str() {
            "=" => !v.is_empty(),
            "=~" => logql_regex_matches(v, "").is_ok_and(|m| !m),
            _ => false,
        };
        if !self.selector.iter().any(not_empty) {
            return Err("the stream selector needs a matcher that does not match empty".into());
        }
        let mut out = Vec::new();
        'entries: for e in entries {
            for (label, op, value) in &self.selector {
                let v = e.stream.get(label).map_or("", String::as_str);
                let ok = match op.as_str() {
                    "=" => v == value,
                    "!=" => v != value,
                    "=~" => logql_regex_matches(value, v)?,
                    "!~" => !logql_regex_matches(value, v)?,
                    _ => unreachable!(),
                };
                if !ok {
                    continue 'entries;
                }
            }
            for stage in &self.stages {
                if !stage.matches(e)? {
                    continue 'entries;
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Every name the query reads: stream labels and label filter names.
    fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.selector.iter().map(|(l, _, _)| l.clone()).collect();
        for s in &self.stages {
            s.labels(&mut out);
        }
        out
    }
}

/// `expr` with the dashboard's variables set: `$application`, `$revision`, `$baseline` from
/// `values`, Grafana's intervals and ranges as `1h`.
fn with_variables(expr: &str, values: &[(&str, &str)]) -> String {
    let mut out = expr.to_string();
    for (name, value) in values.iter().copied().chain([
        ("__interval", "1h"),
        ("__range", "1h"),
        ("__rate_interval", "1h"),
    ]) {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "a variable left in {out:?}");
    out
}

/// Series of `sum by (…) (count_over_time(…))` on `entries`: the `by` labels' values (`""`
/// where absent) → count.
fn count_by(q: &Logql, entries: &[LokiEntry]) -> Result<BTreeMap<Vec<String>, usize>, String> {
    let Logql::CountBy { by, query } = q else {
        return Err(format!("not a metric query: {q:?}"));
    };
    let mut out = BTreeMap::new();
    for e in query.select(entries)? {
        let key = by
            .iter()
            .map(|l| e.fields.get(l).cloned().unwrap_or_default())
            .collect();
        *out.entry(key).or_default() += 1;
    }
    Ok(out)
}

/// The panel of `dash` titled `title` (rows' panels included).
fn panel<'d>(dash: &'d Value, title: &str) -> &'d Value {
    let mut panels: Vec<&Value> = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    panels
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"))
}

/// The rollout dashboard's crash panels: (title, panel type, its one Loki target).
const CRASH_PANELS: &[(&str, &str)] = &[
    ("Container terminations by reason", "timeseries"),
    ("Waiting reasons", "table"),
    ("Crashing pods' logs", "logs"),
];

/// The crash panels' queries, after checking each panel is where and what it should be.
fn crash_panel_queries() -> Vec<(&'static str, String, Vec<String>)> {
    let dash = dashboards()
        .into_iter()
        .find(|(name, _)| name == "rollout-troubleshooting.json")
        .expect("the rollout dashboard")
        .1;
    // In their own row, after the rollout's logs and before the GPUs.
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    let row = titles
        .iter()
        .position(|t| *t == "Crashes of the rollout")
        .expect("a row \"Crashes of the rollout\"");
    assert_eq!(dash["panels"][row]["type"], "row");
    assert_eq!(
        titles[row + 1..row + 4],
        [
            "Container terminations by reason",
            "Waiting reasons",
            "Crashing pods' logs"
        ]
    );
    let mut out = Vec::new();
    for (title, kind_) in CRASH_PANELS {
        let p = panel(&dash, title);
        assert_eq!(p["type"], *kind_, "{title}");
        assert_eq!(p["datasource"]["uid"], "${loki}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{title}");
        let t = &targets[0];
        let expected_query_type = if *kind_ == "table" {
            "instant"
        } else {
            "range"
        };
        assert_eq!(t["queryType"], expected_query_type, "{title}");
        let legend = template_refs(t["legendFormat"].as_str().unwrap_or_default());
        out.push((*title, t["expr"].as_str().unwrap().to_string(), legend));
    }
    out
}

/// `ml/<rs>-1` of ReplicaSet `rs` on node-1, its container `main` in `status`.
fn crash_pod(
    rs: &str,
    ip: &str,
    status: serde_json::Value,
    deleting: Option<&str>,
) -> serde_json::Value {
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

fn container_id(n: u32) -> String {
    format!("containerd://{n:064x}")
}

/// Appends CRI lines (`stream`, text) to `<root>/ml_<pod>_uid-<pod>/main/<run>.log`.
fn write_container_log(root: &Path, pod: &str, run: u32, lines: &[(&str, &str)]) {
    use std::io::Write;
    let dir = root.join(format!("ml_{pod}_uid-{pod}")).join("main");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{run}.log")))
        .unwrap();
    let now = humantime::format_rfc3339_nanos(SystemTime::now());
    for (stream, text) in lines {
        writeln!(f, "{now} {stream} F {text}").unwrap();
    }
}

/// The container lines of the crash scenario: (pod, run, stream, text).
const CRASH_LINES: &[(&str, u32, &str, &str)] = &[
    ("trainer-b-1", 0, "stdout", "INFO starting epoch 1"),
    (
        "trainer-b-1",
        0,
        "stderr",
        "ERROR CUDA out of memory. Tried to allocate 20.00 GiB",
    ),
    (
        "trainer-b-1",
        1,
        "stdout",
        "INFO resuming from checkpoint 40",
    ),
    ("trainer-a-1", 0, "stdout", "INFO serving on :8080"),
    (
        "trainer-a-1",
        0,
        "stderr",
        "ERROR request failed: upstream timeout",
    ),
];

/// Application `train` (aaa, then bbb syncing): bbb's pod is OOM-killed, restarted, killed
/// again and backs off (CrashLoopBackOff); aaa's pod is stopped by the rollout (exit 143,
/// being deleted). The real hpcotel watches it (kubernetes, node mode, pod lifecycle logs)
/// and tails both pods' container logs (kubernetes_logs), through enrich; every record it
/// exports, as Loki stores it.
async fn crash_scenario() -> Vec<LokiEntry> {
    let api = FakeApiServer::start().await;
    common::apply_train_app(&api);
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
    let a_running = fixtures::container_status(
        "main",
        fixtures::running_state("2026-11-25T06:00:20Z"),
        None,
        true,
        0,
        &container_id(0xa0),
    );
    api.apply(crash_pod("trainer-a", "10.0.0.11", a_running, None));
    let b_started = rfc3339(SystemTime::now() - Duration::from_secs(15));
    let b_running = fixtures::container_status(
        "main",
        fixtures::running_state(&b_started),
        None,
        true,
        0,
        &container_id(0xb0),
    );
    api.apply(crash_pod("trainer-b", "10.0.0.12", b_running, None));

    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    std::fs::create_dir_all(&root).unwrap();
    let sink = OtlpSink::start().await;
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
  kubernetes_logs:
    root: "{root}"
    state_dir: "{state}"
    start_at: beginning
    poll_interval: 50ms
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [kubernetes, kubernetes_logs], processors: [enrich], exporters: [otlp] }}
"#,
        api = api.url(),
        root = root.display(),
        state = state.display(),
        sink = sink.grpc_endpoint(),
    ));
    let watched = |plural: &str| {
        api.requests().iter().any(|r| {
            r.verb == hpcotel_testkit::kube::Verb::Watch && r.plural == plural && r.status == 200
        })
    };
    let deadline = Instant::now() + WAIT;
    while !(watched("pods") && watched("applications")) {
        assert!(
            Instant::now() < deadline,
            "the receiver never watched pods and applications:\n{}",
            hpcotel.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Run 0 of both pods writes; bbb's is OOM-killed.
    for (pod, run, stream, text) in CRASH_LINES.iter().filter(|l| l.1 == 0) {
        write_container_log(&root, pod, *run, &[(stream, text)]);
    }
    let kill = |run: u32, started: &str| {
        fixtures::terminated_state(
            137,
            "OOMKilled",
            None,
            started,
            &rfc3339(SystemTime::now()),
            &container_id(0xb0 + run),
        )
    };
    let first_kill = kill(0, &b_started);
    api.apply(crash_pod(
        "trainer-b",
        "10.0.0.12",
        fixtures::container_status(
            "main",
            first_kill.clone(),
            None,
            false,
            0,
            &container_id(0xb0),
        ),
        None,
    ));
    // The kubelet restarts it at once (run 1), which writes, and is OOM-killed again.
    let run_1 = rfc3339(SystemTime::now());
    api.apply(crash_pod(
        "trainer-b",
        "10.0.0.12",
        fixtures::container_status(
            "main",
            fixtures::running_state(&run_1),
            Some(first_kill.clone()),
            true,
            1,
            &container_id(0xb1),
        ),
        None,
    ));
    for (pod, run, stream, text) in CRASH_LINES.iter().filter(|l| l.1 == 1) {
        write_container_log(&root, pod, *run, &[(stream, text)]);
    }
    let second_kill = kill(1, &run_1);
    api.apply(crash_pod(
        "trainer-b",
        "10.0.0.12",
        fixtures::container_status(
            "main",
            second_kill.clone(),
            Some(first_kill),
            false,
            1,
            &container_id(0xb1),
        ),
        None,
    ));
    // Then it backs off.
    let back_off = fixtures::waiting_state(
        "CrashLoopBackOff",
        Some("back-off 10s restarting failed container=main pod=trainer-b-1_ml(uid-trainer-b-1)"),
    );
    api.apply(crash_pod(
        "trainer-b",
        "10.0.0.12",
        fixtures::container_status(
            "main",
            back_off,
            Some(second_kill),
            false,
            1,
            &container_id(0xb1),
        ),
        None,
    ));
    // The rollout stops aaa's pod: SIGTERM, exit code 143.
    let stopped = fixtures::terminated_state(
        143,
        "Error",
        None,
        "2026-11-25T06:00:20Z",
        &rfc3339(SystemTime::now()),
        &container_id(0xa0),
    );
    api.apply(crash_pod(
        "trainer-a",
        "10.0.0.11",
        fixtures::container_status("main", stopped, None, false, 0, &container_id(0xa0)),
        Some(&rfc3339(SystemTime::now() + Duration::from_secs(30))),
    ));

    let received = sink
        .wait_for("the crash scenario's records", WAIT, |r| {
            let entries = loki_entries(&r.logs);
            let has = |pred: &dyn Fn(&LokiEntry) -> bool| entries.iter().any(pred);
            CRASH_LINES.iter().all(|(_, _, _, text)| {
                has(&|e: &LokiEntry| {
                    e.line == *text && e.fields.contains_key("vcs_ref_head_revision")
                })
            }) && has(&|e: &LokiEntry| {
                e.fields
                    .get("k8s_pod_name")
                    .is_some_and(|p| p == "trainer-a-1")
                    && e.fields.contains_key("hpcotel_k8s_pod_deleting")
            }) && has(&|e: &LokiEntry| {
                e.fields
                    .get("k8s_container_status_reason")
                    .is_some_and(|r| r == "CrashLoopBackOff")
            })
        })
        .await;
    drop(hpcotel);
    loki_entries(&received.logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_dashboards_crash_panels_select_the_crashed_pods_records() {
    let queries = crash_panel_queries();
    let entries = crash_scenario().await;
    for e in &entries {
        println!(
            "{:<14} {:<12} run {} {:<5} {:<7} | {}",
            e.fields.get("k8s_pod_name").map_or("", String::as_str),
            e.fields
                .get("vcs_ref_head_revision")
                .map_or("", String::as_str),
            e.fields
                .get("k8s_container_restart_count")
                .map_or("", String::as_str),
            e.fields.get("severity_text").map_or("", String::as_str),
            e.fields
                .get("log_iostream")
                .map_or("lifecycle", String::as_str),
            e.line
        );
    }
    // Every name the panels use is on records hpcotel exported, as Loki stores them.
    let present: BTreeSet<&String> = entries.iter().flat_map(|e| e.fields.keys()).collect();
    let variables = [
        ("application", "train"),
        ("baseline", "aaa"),
        ("revision", "bbb"),
    ];
    let mut results = BTreeMap::new();
    for (title, expr, legend) in &queries {
        let q = parse_logql(&with_variables(expr, &variables))
            .unwrap_or_else(|e| panic!("{title}: {e}"));
        let (mut names, query) = match &q {
            Logql::Logs(query) => (Vec::new(), query),
            Logql::CountBy { by, query } => (by.clone(), query),
        };
        names.extend(query.names());
        names.extend(legend.iter().cloned());
        for n in &names {
            assert!(
                present.contains(n),
                "{title}: {n} is on none of the records hpcotel exported (as Loki stores them: {present:?})"
            );
        }
        results.insert(*title, q);
    }
    let key = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Terminations: bbb's two OOM kills; aaa's pod stopped by the rollout is not a crash.
    let terminations = count_by(&results["Container terminations by reason"], &entries).unwrap();
    assert_eq!(
        terminations,
        BTreeMap::from([(key(&["bbb", "OOMKilled"]), 2)]),
        "Container terminations by reason"
    );

    // Waiting: bbb's container backing off after its OOM kill.
    let waiting = count_by(&results["Waiting reasons"], &entries).unwrap();
    assert_eq!(
        waiting,
        BTreeMap::from([(
            key(&[
                "bbb",
                "ml",
                "trainer-b-1",
                "main",
                "CrashLoopBackOff",
                "OOMKilled"
            ]),
            1
        )]),
        "Waiting reasons"
    );

    // Logs: bbb's error line, every line of its restarted run and its two termination
    // records; not its INFO line before the crash, not aaa's pod, no other lifecycle record.
    let Logql::Logs(logs) = &results["Crashing pods' logs"] else {
        panic!("Crashing pods' logs is a log query");
    };
    let selected: BTreeSet<String> = logs
        .select(&entries)
        .unwrap()
        .into_iter()
        .map(|e| e.line.clone())
        .collect();
    let expected: BTreeSet<String> = [
        "ERROR CUDA out of memory. Tried to allocate 20.00 GiB",
        "INFO resuming from checkpoint 40",
        "container main terminated: OOMKilled, exit code 137 (restart 0)",
        "container main terminated: OOMKilled, exit code 137 (restart 1)",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(selected, expected, "Crashing pods' logs");
    println!(
        "terminations {terminations:?}; waiting {waiting:?}; crashing pods' logs: {} records of {}",
        selected.len(),
        entries.len()
    );
}

#[test]
fn the_crash_panels_name_the_lifecycle_and_container_log_attributes() {
    // Offline: the queries parse and use hpcotel's names for what they select on.
    let l = sanitize_label_name;
    let needed: &[(&str, &[String])] = &[
        (
            "Container terminations by reason",
            &[
                l(semconv::K8S_CONTAINER_STATUS_REASON),
                l(semconv::K8S_CONTAINER_STATUS_STATE),
                l(semconv::HPCOTEL_K8S_POD_DELETING),
                l(semconv::VCS_REF_HEAD_REVISION),
                l(semconv::HPCOTEL_ARGOCD_APPLICATION),
            ],
        ),
        (
            "Waiting reasons",
            &[
                l(semconv::K8S_CONTAINER_STATUS_REASON),
                l(semconv::K8S_CONTAINER_STATUS_STATE),
                l(semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON),
                l(semconv::K8S_POD_NAME),
                l(semconv::K8S_CONTAINER_NAME),
                l(semconv::VCS_REF_HEAD_REVISION),
            ],
        ),
        (
            "Crashing pods' logs",
            &[
                l(semconv::LOG_IOSTREAM),
                l(semconv::HPCOTEL_K8S_CONTAINER_EXIT_CODE),
                l(semconv::K8S_CONTAINER_RESTART_COUNT),
                l(semconv::VCS_REF_HEAD_REVISION),
                l(semconv::HPCOTEL_ARGOCD_APPLICATION),
                "severity_number".to_string(),
            ],
        ),
    ];
    let queries = crash_panel_queries();
    let ex = small_export();
    for (title, expr, legend) in &queries {
        let mut errors = Vec::new();
        check_logql(title, expr, legend, &ex, &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
        let q = parse_logql(&with_variables(
            expr,
            &[("application", "a"), ("baseline", "b"), ("revision", "c")],
        ))
        .unwrap_or_else(|e| panic!("{title}: {e}"));
        let (mut names, query) = match &q {
            Logql::Logs(query) => (Vec::new(), query),
            Logql::CountBy { by, query } => (by.clone(), query),
        };
        names.extend(query.names());
        let wanted = needed.iter().find(|(t, _)| t == title).unwrap().1;
        for n in wanted {
            assert!(names.contains(n), "{title} does not use {n}: {expr}");
        }
    }
    // The two metric panels group by reason and revision.
    for (title, expr, _) in &queries[..2] {
        let Ok(Logql::CountBy { by, .. }) = parse_logql(&with_variables(
            expr,
            &[("application", "a"), ("baseline", "b"), ("revision", "c")],
        )) else {
            panic!("{title} is a count by");
        };
        assert!(
            by.contains(&l(semconv::K8S_CONTAINER_STATUS_REASON)),
            "{title}"
        );
        assert!(by.contains(&l(semconv::VCS_REF_HEAD_REVISION)), "{title}");
    }
}

#[test]
fn the_logql_evaluator_follows_loki() {
    let entry = |pairs: &[(&str, &str)]| {
        let fields: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stream = fields
            .iter()
            .filter(|(k, _)| *k == "k8s_namespace_name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        LokiEntry {
            stream,
            fields,
            line: pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    };
    let entries = vec![
        entry(&[
            ("k8s_namespace_name", "ml"),
            ("severity_number", "17"),
            ("rev", "b"),
        ]),
        entry(&[
            ("k8s_namespace_name", "ml"),
            ("severity_number", "9"),
            ("restarts", "2"),
            ("rev", "b"),
        ]),
        entry(&[("k8s_namespace_name", "ml"), ("rev", "a")]),
        entry(&[("k8s_namespace_name", "ml"), ("severity_number", "x")]),
        entry(&[("k8s_namespace_name", "")]),
    ];
    let select = |q: &str| -> Result<Vec<usize>, String> {
        let Logql::Logs(q) = parse_logql(q)? else {
            return Err("metric".into());
        };
        let picked = q.select(&entries[..3])?;
        Ok(entries
            .iter()
            .enumerate()
            .filter(|(_, e)| picked.iter().any(|p| std::ptr::eq(*p, *e)))
            .map(|(i, _)| i)
            .collect())
    };
    // A missing label: "" for string filters, false for numeric ones; `or` of two stages,
    // `and` binding tighter, stages in a row all apply.
    assert_eq!(
        select(r#"{k8s_namespace_name=~".+"} | severity_number >= 17"#),
        Ok(vec![0])
    );
    assert_eq!(
        select(r#"{k8s_namespace_name=~".+"} | severity_number >= 17 or restarts > 0"#),
        Ok(vec![0, 1])
    );
    assert_eq!(
        select(r##"{k8s_namespace_name=~".+"} | restarts="""##),
        Ok(vec![0, 2])
    );
    assert_eq!(
        select(r#"{k8s_namespace_name=~".+"} | rev=~"a|b" | restarts > 0 or rev="a""#),
        Ok(vec![1, 2])
    );
    assert_eq!(
        select(r#"{k8s_namespace_name="ml"} | rev="b" and severity_number < 10 or rev="a""#),
        Ok(vec![1, 2])
    );
    assert_eq!(
        select(r#"{k8s_namespace_name="ml"} | rev="b" and (severity_number < 10 or rev="a")"#),
        Ok(vec![1])
    );
    // A number that does not parse is Loki's __error__: an error here.
    let Logql::Logs(q) = parse_logql(r#"{k8s_namespace_name="ml"} | severity_number > 1"#).unwrap()
    else {
        unreachable!()
    };
    assert!(q.select(&entries).unwrap_err().contains("__error__"));
    // A metric query counts per `by` labels.
    let counts = count_by(
        &parse_logql(
            r#"sum by (rev) (count_over_time({k8s_namespace_name=~".+"} | rev!="" [5m]))"#,
        )
        .unwrap(),
        &entries[..3],
    )
    .unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([(vec!["a".to_string()], 1), (vec!["b".to_string()], 2)])
    );
    // What it does not understand is an error, not a guess.
    for bad in [
        r#"{k8s_namespace_name=~".+"} | json"#,
        r#"{k8s_namespace_name=~".+"} |= "x""#,
        r#"{k8s_namespace_name=~".+"} | rev=~"a.*b""#,
        r#"{k8s_namespace_name=~".+"} | duration > 5s"#,
        r#"rate({k8s_namespace_name=~".+"}[5m])"#,
        r#"{k8s_namespace_name=~".*"}"#,
    ] {
        let r = parse_logql(bad).and_then(|q| match q {
            Logql::Logs(q) => q.select(&entries).map(|_| ()),
            Logql::CountBy { .. } => Ok(()),
        });
        assert!(r.is_err(), "{bad} should be rejected");
    }
}
