//! Rollout traces: one trace per Argo CD sync operation.
//!
//! The trace id is derived from (application UID, operation `startedAt`) alone, so every
//! replica and every restart of the collector derives the same id for the same operation, and
//! a retry — which keeps `startedAt` and, with `retry.refresh`, may resolve a newer revision —
//! stays one trace. The trace holds a root span `SYNC <app>` covering the operation, one child span
//! per synced resource (`status.operationState.syncResult.resources[]`), and a `health <app>`
//! child from the end of the sync until the application settles (Healthy, Suspended or
//! Degraded) or the settle window ends. It is built once the story is complete, so the root's
//! status can say how the rollout ended: ERROR on a Failed/Error operation or a Degraded
//! application. A resource span is ERROR when its result is `SyncFailed` or its `hookPhase`
//! is `Failed`/`Error`: gitops-engine keeps a hook that was applied and then failed at
//! `status: Synced` and reports the failure only in `hookPhase`.

use hpcotel_core::catalog::{rollout_key, rollout_span_id, rollout_trace_id};
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use kube::core::DynamicObject;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use serde_json::Value;

use super::convert::rfc3339_nanos;

/// One resource a sync applied (`syncResult.resources[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedResource {
    /// `kind`.
    pub kind: String,
    /// `namespace`.
    pub namespace: String,
    /// `name`.
    pub name: String,
    /// `status`: Synced | SyncFailed | Pruned | PruneSkipped.
    pub status: String,
    /// `message`.
    pub message: String,
    /// `hookType`, for hooks (PreSync, Sync, PostSync, SyncFail, Skip).
    pub hook_type: Option<String>,
    /// `hookPhase`: the state of the hook, or of the resource's own operation (Running |
    /// Succeeded | Failed | Error | Terminating).
    pub hook_phase: Option<String>,
    /// `syncPhase`.
    pub sync_phase: Option<String>,
}

impl SyncedResource {
    /// True when applying it failed, or (a hook, or a resource Argo CD waited on) it ran and
    /// failed.
    pub fn failed(&self) -> bool {
        self.status == "SyncFailed"
            || matches!(self.hook_phase.as_deref(), Some("Failed" | "Error"))
    }

    /// Why it failed, for the span status: Argo CD's message, else what failed.
    fn failure(&self) -> String {
        if !self.message.is_empty() {
            return self.message.clone();
        }
        match (&self.hook_type, &self.hook_phase) {
            (Some(h), Some(p)) => format!("{h} hook {} {} {p}", self.kind, self.name),
            _ => format!("{} {} {}", self.kind, self.name, self.status),
        }
    }
}

/// One Argo CD sync operation, from an Application's `status.operationState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Application name.
    pub app: String,
    /// The Application's namespace.
    pub app_namespace: String,
    /// Application UID.
    pub app_uid: String,
    /// Where the application deploys (`spec.destination.namespace`), when into this cluster.
    pub destination_namespace: Option<String>,
    /// A partial sync (`operation.sync.resources` set): only the listed resources are
    /// applied.
    pub partial: bool,
    /// The repository (`spec.source.repoURL`).
    pub repo_url: Option<String>,
    /// The revision synced: the primary source's (see `convert::primary_source`) in
    /// `syncResult`, else in `operation.sync`; empty between two attempts of a retry with
    /// `refresh`, when Argo CD clears both until it resolves the latest revision.
    pub revision: String,
    /// `phase`: Running | Terminating | Failed | Error | Succeeded.
    pub phase: String,
    /// `message`.
    pub message: String,
    /// `startedAt`, Unix ns.
    pub started_unix_nano: u64,
    /// `finishedAt`, Unix ns.
    pub finished_unix_nano: Option<u64>,
    /// The resources applied.
    pub resources: Vec<SyncedResource>,
}

impl Operation {
    /// The operation's identity: the same for every observation of one sync, retries
    /// included.
    pub fn key(&self) -> String {
        rollout_key(&self.app_uid, self.started_unix_nano)
    }

    /// True once the operation has ended.
    pub fn finished(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed" | "Error")
    }

    /// True when the sync itself failed.
    pub fn failed(&self) -> bool {
        matches!(self.phase.as_str(), "Failed" | "Error")
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The sync operation an Application object describes (`status.operationState`), if it has
/// one with a start time.
pub fn operation(obj: &DynamicObject) -> Option<Operation> {
    let data = &obj.data;
    let state = data.get("status")?.get("operationState")?;
    let spec = data.get("spec");
    let sync = state.get("operation").and_then(|o| o.get("sync"));
    // A dry run applies nothing (and writes no history): no rollout.
    if sync
        .and_then(|s| s.get("dryRun"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return None;
    }
    let super::convert::Primary {
        index: primary,
        repo_url,
    } = super::convert::primary_source(spec);
    let result = state.get("syncResult");
    let revision = result
        .and_then(|r| super::convert::revision_of(r, super::convert::entry_primary(r, primary)))
        .or_else(|| super::convert::revision_of(sync?, primary))
        .unwrap_or_default();
    let resources = result
        .and_then(|r| r.get("resources"))
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| SyncedResource {
                    kind: str_of(r, "kind").unwrap_or_default(),
                    namespace: str_of(r, "namespace").unwrap_or_default(),
                    name: str_of(r, "name").unwrap_or_default(),
                    status: str_of(r, "status").unwrap_or_default(),
                    message: str_of(r, "message").unwrap_or_default(),
                    hook_type: str_of(r, "hookType"),
                    hook_phase: str_of(r, "hookPhase"),
                    sync_phase: str_of(r, "syncPhase"),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Operation {
        app: obj.metadata.name.clone().unwrap_or_default(),
        app_namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        app_uid: obj.metadata.uid.clone().unwrap_or_default(),
        destination_namespace: super::convert::in_cluster_destination(data),
        partial: sync
            .and_then(|s| s.get("resources"))
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty()),
        repo_url,
        revision,
        phase: str_of(state, "phase").unwrap_or_default(),
        message: str_of(state, "message").unwrap_or_default(),
        started_unix_nano: rfc3339_nanos(state.get("startedAt")?.as_str()?)?,
        finished_unix_nano: state
            .get("finishedAt")
            .and_then(Value::as_str)
            .and_then(rfc3339_nanos),
        resources,
    })
}

/// `status.health.status` of an Application object.
pub fn health(obj: &DynamicObject) -> Option<String> {
    str_of(obj.data.get("status")?.get("health")?, "status")
}

/// The trace id of the operation (application UID, startedAt).
pub fn trace_id(op: &Operation) -> [u8; 16] {
    rollout_trace_id(&op.app_uid, op.started_unix_nano)
}

/// A span id derived from the trace id and what the span is about.
pub fn span_id(trace: &[u8; 16], what: &str) -> [u8; 8] {
    rollout_span_id(trace, what)
}

/// The root span's id (what correlated logs point at).
pub fn root_span_id(op: &Operation) -> [u8; 8] {
    span_id(&trace_id(op), "root")
}

/// How the application settled after the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The health status at the end (`Healthy`, `Suspended`, `Degraded`, or the last seen
    /// when the window ran out).
    pub health: String,
    /// When it was observed, Unix ns.
    pub at_unix_nano: u64,
    /// True when the settle window ran out first.
    pub timed_out: bool,
}

fn error_status(message: impl Into<String>) -> Option<Status> {
    Some(Status {
        code: status::StatusCode::Error as i32,
        message: message.into(),
    })
}

fn ok_status() -> Option<Status> {
    Some(Status {
        code: status::StatusCode::Ok as i32,
        message: String::new(),
    })
}

/// `cicd.pipeline.result` of the rollout.
pub fn result(op: &Operation, settled: &Settled) -> &'static str {
    match op.phase.as_str() {
        "Error" => "error",
        "Failed" => "failure",
        _ if settled.health == "Degraded" => "failure",
        _ if settled.timed_out => "timeout",
        _ => "success",
    }
}

/// The spans of one completed rollout: root, one per synced resource, health settling.
pub fn spans(op: &Operation, settled: &Settled) -> Vec<Span> {
    let trace = trace_id(op);
    let root = span_id(&trace, "root");
    let finished = op.finished_unix_nano.unwrap_or(settled.at_unix_nano);
    let end = settled.at_unix_nano.max(finished);
    let result = result(op, settled);
    let mut attributes: Vec<KeyValue> = vec![
        kv(semconv::CICD_PIPELINE_NAME, op.app.clone()),
        kv(semconv::CICD_PIPELINE_ACTION_NAME, "SYNC"),
        kv(semconv::CICD_PIPELINE_RUN_ID, op.key()),
        kv(semconv::CICD_PIPELINE_RESULT, result),
        kv(semconv::HPCOTEL_ARGOCD_APPLICATION, op.app.clone()),
        kv(
            semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE,
            op.app_namespace.clone(),
        ),
        kv(semconv::HPCOTEL_ARGOCD_SYNC_PHASE, op.phase.clone()),
        kv(
            semconv::HPCOTEL_ARGOCD_HEALTH_STATUS,
            settled.health.clone(),
        ),
    ];
    if !op.revision.is_empty() {
        attributes.push(kv(semconv::VCS_REF_HEAD_REVISION, op.revision.clone()));
    }
    if let Some(url) = &op.repo_url {
        attributes.push(kv(semconv::VCS_REPOSITORY_URL_FULL, url.clone()));
    }
    if let Some(ns) = &op.destination_namespace {
        attributes.push(kv(semconv::K8S_NAMESPACE_NAME, ns.clone()));
    }
    attributes.push(kv_int(
        semconv::HPCOTEL_ARGOCD_RESOURCE_COUNT,
        op.resources.len() as i64,
    ));
    let root_status = if result == "success" {
        ok_status()
    } else if op.failed() {
        error_status(op.message.clone())
    } else if settled.health == "Degraded" {
        error_status(format!("application {} is Degraded after the sync", op.app))
    } else {
        error_status(format!(
            "application {} did not become Healthy within the settle window (last: {})",
            op.app, settled.health
        ))
    };
    let mut spans = vec![Span {
        trace_id: trace.to_vec(),
        span_id: root.to_vec(),
        name: format!("SYNC {}", op.app),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: op.started_unix_nano,
        end_time_unix_nano: end,
        attributes,
        status: root_status,
        ..Default::default()
    }];
    for r in &op.resources {
        let mut attributes = vec![
            kv(semconv::K8S_OBJECT_KIND, r.kind.clone()),
            kv(semconv::K8S_OBJECT_NAME, r.name.clone()),
            kv(semconv::HPCOTEL_ARGOCD_SYNC_STATUS, r.status.clone()),
        ];
        if !r.namespace.is_empty() {
            attributes.push(kv(semconv::K8S_NAMESPACE_NAME, r.namespace.clone()));
        }
        if let Some(h) = &r.hook_type {
            attributes.push(kv(semconv::HPCOTEL_ARGOCD_HOOK_TYPE, h.clone()));
        }
        if let Some(p) = &r.hook_phase {
            attributes.push(kv(semconv::HPCOTEL_ARGOCD_HOOK_PHASE, p.clone()));
        }
        if let Some(p) = &r.sync_phase {
            attributes.push(kv(semconv::HPCOTEL_ARGOCD_SYNC_PHASE, p.clone()));
        }
        if !r.message.is_empty() {
            attributes.push(kv(semconv::HPCOTEL_ARGOCD_MESSAGE, r.message.clone()));
        }
        let status = if r.failed() {
            error_status(r.failure())
        } else {
            None
        };
        spans.push(Span {
            trace_id: trace.to_vec(),
            span_id: span_id(
                &trace,
                &format!("resource/{}/{}/{}", r.kind, r.namespace, r.name),
            )
            .to_vec(),
            parent_span_id: root.to_vec(),
            name: format!("{} {}", r.kind, r.name),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: op.started_unix_nano,
            end_time_unix_nano: finished,
            attributes,
            status,
            ..Default::default()
        });
    }
    spans.push(Span {
        trace_id: trace.to_vec(),
        span_id: span_id(&trace, "health").to_vec(),
        parent_span_id: root.to_vec(),
        name: format!("health {}", op.app),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: finished,
        end_time_unix_nano: end,
        attributes: vec![kv(
            semconv::HPCOTEL_ARGOCD_HEALTH_STATUS,
            settled.health.clone(),
        )],
        status: if settled.health == "Degraded" {
            error_status(format!("application {} is Degraded", op.app))
        } else {
            None
        },
        ..Default::default()
    });
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(revision: &str, started: &str, phase: &str, finished: Option<&str>) -> DynamicObject {
        let mut state = serde_json::json!({
            "operation": {"sync": {"revision": revision}},
            "phase": phase,
            "message": if phase == "Failed" { "one or more objects failed to apply" } else { "successfully synced" },
            "startedAt": started,
            "syncResult": {"revision": revision, "resources": [
                {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "ml", "name": "trainer", "status": "Synced", "message": "deployment.apps/trainer configured", "hookPhase": "Running", "syncPhase": "Sync"},
                {"group": "batch", "version": "v1", "kind": "Job", "namespace": "ml", "name": "migrate", "status": "Synced", "message": "Job has reached the specified backoff limit", "hookType": "PreSync", "hookPhase": "Failed", "syncPhase": "PreSync"}
            ]}
        });
        if let Some(f) = finished {
            state["finishedAt"] = serde_json::json!(f);
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "train", "namespace": "argocd", "uid": "uid-app"},
            "spec": {"source": {"repoURL": "https://git.example.com/ml.git"}, "destination": {"namespace": "ml"}},
            "status": {"operationState": state, "health": {"status": "Progressing"}}
        }))
        .unwrap()
    }

    #[test]
    fn the_trace_id_depends_on_the_app_and_the_start_only() {
        let running = operation(&app("bbb", "2026-11-25T07:00:00Z", "Running", None)).unwrap();
        let done = operation(&app(
            "bbb",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
        ))
        .unwrap();
        assert!(!running.finished() && done.finished());
        assert_eq!(
            trace_id(&running),
            trace_id(&done),
            "in flight and finished: one trace"
        );
        let again = operation(&app(
            "bbb",
            "2026-11-25T08:00:00Z",
            "Succeeded",
            Some("2026-11-25T08:00:12Z"),
        ))
        .unwrap();
        assert_ne!(
            trace_id(&done),
            trace_id(&again),
            "a second sync of the same revision"
        );
        // One operation whose revision changed (a retry with `refresh` resolved a newer one):
        // still one trace.
        let retried = operation(&app(
            "ccc",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
        ))
        .unwrap();
        assert_eq!(trace_id(&done), trace_id(&retried));
        // Stable across builds: a fixed input has a fixed id.
        assert_eq!(hex(&trace_id(&done)), hex(&trace_id(&done.clone())));
        assert_ne!(trace_id(&done), [0; 16]);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_degraded_rollout_is_an_error_with_one_child_per_resource() {
        let op = operation(&app(
            "bbb",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
        ))
        .unwrap();
        let settled = Settled {
            health: "Degraded".into(),
            at_unix_nano: op.finished_unix_nano.unwrap() + 30_000_000_000,
            timed_out: false,
        };
        let spans = spans(&op, &settled);
        assert_eq!(spans.len(), 1 + 2 + 1);
        let root = &spans[0];
        assert_eq!(root.name, "SYNC train");
        assert!(root.parent_span_id.is_empty());
        assert_eq!(
            root.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(root.end_time_unix_nano, settled.at_unix_nano);
        assert_eq!(result(&op, &settled), "failure");
        for s in &spans[1..] {
            assert_eq!(s.trace_id, root.trace_id);
            assert_eq!(s.parent_span_id, root.span_id);
        }
        let failed_job = spans.iter().find(|s| s.name == "Job migrate").unwrap();
        assert_eq!(
            failed_job.status.as_ref().unwrap().message,
            "Job has reached the specified backoff limit"
        );
        let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id.clone()).collect();
        assert_eq!(ids.len(), spans.len(), "distinct span ids");
    }

    #[test]
    fn a_healthy_rollout_is_ok_and_a_failed_sync_is_an_error() {
        let op = operation(&app(
            "bbb",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
        ))
        .unwrap();
        let healthy = Settled {
            health: "Healthy".into(),
            at_unix_nano: op.finished_unix_nano.unwrap(),
            timed_out: false,
        };
        assert_eq!(
            spans(&op, &healthy)[0].status.as_ref().unwrap().code,
            status::StatusCode::Ok as i32
        );
        assert_eq!(result(&op, &healthy), "success");
        let failed = operation(&app(
            "bbb",
            "2026-11-25T07:00:00Z",
            "Failed",
            Some("2026-11-25T07:00:12Z"),
        ))
        .unwrap();
        let root = &spans(&failed, &healthy)[0];
        assert_eq!(
            root.status.as_ref().unwrap().message,
            "one or more objects failed to apply"
        );
        assert_eq!(result(&failed, &healthy), "failure");
    }

    #[test]
    fn a_failed_presync_hook_is_an_error_though_its_status_says_synced() {
        use hpcotel_testkit::kube::fixtures::{App, AppOperation, SyncedResource};
        let mut app = App::new(
            "argocd",
            "train",
            "uid-app",
            "https://git.example.com/ml.git",
            "ml",
            "bbb",
        );
        app.operation = Some(AppOperation {
            phase: "Failed".into(),
            message: "one or more synchronization tasks completed unsuccessfully".into(),
            started_at: "2026-11-25T07:00:00Z".into(),
            finished_at: Some("2026-11-25T07:01:00Z".into()),
            requested: vec!["bbb".into()],
            result: Some((
                vec!["bbb".into()],
                vec![SyncedResource::hook_job(
                    "ml", "migrate", "PreSync", "Failed",
                )],
            )),
            ..Default::default()
        });
        let op = operation(&serde_json::from_value(app.build()).unwrap()).unwrap();
        assert_eq!(
            op.resources[0].status, "Synced",
            "gitops-engine keeps Synced"
        );
        let settled = Settled {
            health: "Healthy".into(),
            at_unix_nano: op.finished_unix_nano.unwrap(),
            timed_out: false,
        };
        let spans = spans(&op, &settled);
        let hook = spans.iter().find(|s| s.name == "Job migrate").unwrap();
        let status = hook.status.as_ref().expect("a status");
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(
            status.message,
            "Job has reached the specified backoff limit"
        );
        let has = |k: &str, v: &str| {
            hook.attributes
                .iter()
                .any(|kv| kv.key == k && format!("{:?}", kv.value).contains(v))
        };
        assert!(has(semconv::HPCOTEL_ARGOCD_HOOK_TYPE, "PreSync"));
        assert!(has(semconv::HPCOTEL_ARGOCD_HOOK_PHASE, "Failed"));
        // A plain resource stays `hookPhase: Running` in a stored successful result: no error.
        let ok = SyncedResource::applied("apps", "Deployment", "ml", "trainer");
        let r = super::SyncedResource {
            kind: ok.kind,
            namespace: ok.namespace,
            name: ok.name,
            status: ok.status,
            message: ok.message,
            hook_type: None,
            hook_phase: Some(ok.hook_phase),
            sync_phase: Some(ok.sync_phase),
        };
        assert!(!r.failed());
    }

    #[test]
    fn multi_source_and_hydrated_apps_name_their_primary_source() {
        use hpcotel_testkit::kube::fixtures::{App, AppOperation, AppSource};
        // A chart from a Helm repository with values from a `ref` Git source, listed first.
        let mut app = App::new("argocd", "train", "uid-app", "unused", "ml", "");
        app.sources = vec![
            AppSource {
                repo_url: "https://git.example.com/ml/values.git".into(),
                ref_name: "values".into(),
                target_revision: "main".into(),
                ..Default::default()
            },
            AppSource {
                repo_url: "https://charts.example.com".into(),
                chart: "trainer".into(),
                target_revision: "1.2.3".into(),
                ..Default::default()
            },
        ];
        app.sync_revisions = vec!["v-sha".into(), "1.2.3".into()];
        app.operation = Some(AppOperation {
            phase: "Running".into(),
            started_at: "2026-11-25T07:00:00Z".into(),
            requested: vec!["v-sha".into(), "1.2.3".into()],
            result: Some((vec!["v-sha".into(), "1.2.3".into()], Vec::new())),
            ..Default::default()
        });
        let json = app.build();
        assert_eq!(
            json["status"]["operationState"]["syncResult"]["revision"],
            ""
        );
        let op = operation(&serde_json::from_value(json).unwrap()).unwrap();
        assert_eq!(
            op.revision, "1.2.3",
            "the source that renders the manifests"
        );
        assert_eq!(op.repo_url.as_deref(), Some("https://charts.example.com"));
        // A source-hydrator app has no spec.source(s): the hydrated branch of its repository.
        let mut app = App::new("argocd", "web", "uid-web", "unused", "web", "hydrated-sha");
        app.sources.clear();
        app.hydrator = Some((
            "https://git.example.com/web.git".into(),
            "environments/prod".into(),
            "apps/web".into(),
        ));
        let obj = serde_json::from_value(app.build()).unwrap();
        let a = super::super::convert::argo_app(&obj, None, "argocd");
        assert_eq!(
            a.repo_url.as_deref(),
            Some("https://git.example.com/web.git")
        );
        assert_eq!(a.sync_revision.as_deref(), Some("hydrated-sha"));
    }
}
