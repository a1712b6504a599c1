//! [`Tracker`]: follows Argo CD sync operations across Application updates and decides when a
//! rollout's trace is complete, exactly once per operation.
//!
//! A rollout is complete when its sync failed, or when, after the sync ended, a later update
//! shows the Application settled — Healthy, Suspended (an app holding a suspended CronJob or
//! a paused Deployment stays Suspended for good) or Degraded (the update that ends a sync can
//! still carry the health from before it — a fix-forward sync of a Degraded app must not read
//! as failed) — or when `settle_timeout` has passed since the end.
//!
//! An Application runs one operation at a time, so operations wait keyed by Application:
//! retries keep the operation (Argo CD keeps `startedAt`, and with `retry.refresh` clears the
//! revision and `syncResult` between attempts and resolves the latest revision), a new
//! `startedAt` ends the wait of the one before (settled as last seen, or, when its end was
//! never seen, dropped with a log line: its outcome is unknown), and a deleted Application
//! ends its wait the same way. What was exported is remembered per Application as a
//! high-water mark — the latest `startedAt` handled, so an operation at or before it is
//! done — in `state_file` when configured (a restart repeats nothing) and in the leader Lease
//! (a new leader repeats nothing): one entry per Application, however many syncs there were.
//! Without either, syncs that ended before this collector started count as exported by the
//! previous run. An operation in flight when the collector restarts is completed by the new
//! one under the same trace id, which is derived from the operation itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kube::core::DynamicObject;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::config::RolloutsConfig;
use super::lease::{EXPORTED_IN_LEASE, Exported};
use super::rollout::{self, Operation, Settled};
use hpcotel_core::catalog::rollout_key;

/// Applications whose high-water mark is remembered (and persisted) at most; beyond, the
/// marks of the Applications synced longest ago are forgotten.
pub const REMEMBERED_APPLICATIONS: usize = 65_536;

/// (application UID, startedAt) of an operation key ([`rollout::Operation::key`]).
fn parse_key(key: &str) -> Option<(&str, u64)> {
    let (uid, started) = key.rsplit_once('/')?;
    Some((uid, started.parse().ok()?))
}

#[derive(Debug)]
struct Pending {
    op: Operation,
    /// An update after the one that ended the sync has been seen.
    seen_finished: bool,
    last_health: String,
}

/// See the module docs.
#[derive(Debug)]
pub struct Tracker {
    settle: Duration,
    state_file: Option<PathBuf>,
    started_unix_nano: u64,
    /// Application UID → the latest `startedAt` exported (or known exported).
    done: HashMap<String, u64>,
    /// Application UID → its operation waiting to complete.
    pending: HashMap<String, Pending>,
    /// The remembered set is the whole truth (a state file, or what the previous leader
    /// published): syncs that ended before the start and are not in it were not exported.
    authoritative: bool,
    /// Where exported operations are published (the leader Lease), if anywhere.
    published: Option<Exported>,
}

/// Health states a rollout settles in (Argo CD's order: Healthy < Suspended < Progressing <
/// Missing < Degraded < Unknown; Progressing and Missing are on their way, Unknown says
/// nothing).
fn settled_health(h: &str) -> bool {
    matches!(h, "Healthy" | "Suspended" | "Degraded")
}

impl Tracker {
    /// A tracker started at `now` (Unix ns), loading `state_file` when configured (a missing
    /// file is an empty state; an unreadable one is logged and treated as empty).
    pub fn new(config: &RolloutsConfig, now: u64) -> Tracker {
        let mut t = Tracker {
            settle: config.settle_timeout,
            state_file: config.state_file.clone(),
            started_unix_nano: now,
            done: HashMap::new(),
            pending: HashMap::new(),
            authoritative: config.state_file.is_some(),
            published: None,
        };
        if let Some(path) = &t.state_file {
            match std::fs::read_to_string(path) {
                Ok(text) => match serde_json::from_str::<Vec<String>>(&text) {
                    Ok(keys) => keys.iter().for_each(|k| t.remember(k)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "rollout state file unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read the rollout state file; starting empty")
                }
            }
        }
        t
    }

    /// Takes over from a previous leader: `previous` are the operations it published as
    /// exported — the whole truth when `authoritative`; otherwise (a new Lease) syncs that
    /// ended before now count as exported — and exports are published to `published`, which
    /// starts with `previous` so that the next holder learns them too.
    pub fn taking_over(
        mut self,
        previous: Vec<String>,
        authoritative: bool,
        published: Exported,
    ) -> Tracker {
        self.published = Some(published);
        // What this tracker already knows (a state file) and what the previous holder knew
        // are both passed on.
        let known: Vec<String> = self.keys();
        known
            .into_iter()
            .chain(previous)
            .for_each(|k| self.remember(&k));
        self.authoritative |= authoritative;
        self
    }

    /// One key per Application: its high-water mark.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<(u64, String)> = self
            .done
            .iter()
            .map(|(uid, started)| (*started, rollout_key(uid, *started)))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// Whether `op` is at or before its Application's high-water mark.
    fn is_done(&self, op: &Operation) -> bool {
        self.done
            .get(&op.app_uid)
            .is_some_and(|&started| op.started_unix_nano <= started)
    }

    /// Raises the high-water mark of `key`'s Application and publishes it (replacing the
    /// Application's earlier mark in the Lease). Keys not in the current format (an older
    /// state file's) are ignored.
    fn remember(&mut self, key: &str) {
        let Some((uid, started)) = parse_key(key) else {
            return;
        };
        let mark = self.done.entry(uid.to_owned()).or_insert(started);
        if *mark > started {
            return;
        }
        *mark = started;
        if self.done.len() > REMEMBERED_APPLICATIONS
            && let Some(oldest) = self
                .done
                .iter()
                .min_by_key(|(_, s)| **s)
                .map(|(u, _)| u.clone())
        {
            self.done.remove(&oldest);
        }
        if let Some(p) = &self.published
            && let Ok(mut p) = p.lock()
        {
            let prefix = format!("{uid}/");
            p.retain(|k| !k.starts_with(&prefix));
            p.push_back(key.to_owned());
            while p.len() > EXPORTED_IN_LEASE {
                p.pop_front();
            }
        }
    }

    fn persist(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string(&self.keys()).unwrap_or_else(|_| "[]".into());
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the rollout state file; a restart may repeat a rollout trace");
        }
    }

    fn export(&mut self, op: Operation, settled: Settled) -> Vec<Span> {
        let key = op.key();
        if self
            .pending
            .get(&op.app_uid)
            .is_some_and(|p| p.op.key() == key)
        {
            self.pending.remove(&op.app_uid);
        }
        self.remember(&key);
        self.persist();
        rollout::spans(&op, &settled)
    }

    /// Ends the wait of an Application's operation that will see no further update (a newer
    /// operation started at `at`, or the Application was deleted): a finished sync settles
    /// as last seen; one whose end was never seen is dropped, as its outcome is unknown.
    fn end_wait(&mut self, app_uid: &str, at: u64) -> Option<Vec<Span>> {
        let p = self.pending.remove(app_uid)?;
        if !p.op.finished() {
            tracing::info!(app = %p.op.app, namespace = %p.op.app_namespace, started = p.op.started_unix_nano, "Argo CD sync ended unseen (a newer operation or a deletion came first); no rollout trace for it");
            return None;
        }
        let ended = p.op.finished_unix_nano.unwrap_or(at);
        let timed_out = !settled_health(&p.last_health);
        Some(self.export(
            p.op,
            Settled {
                health: p.last_health,
                at_unix_nano: at.max(ended),
                timed_out,
            },
        ))
    }

    /// A (re)list of the Applications `in_scope` of one watch ended at `now` with `present`
    /// (their UIDs): an Application that was waiting and is gone was deleted while the watch
    /// was down (no delete event comes for it); its wait ends as on a deletion.
    pub fn relisted(
        &mut self,
        in_scope: impl Fn(&str) -> bool,
        present: &std::collections::HashSet<String>,
        now: u64,
    ) -> Vec<Vec<Span>> {
        let gone: Vec<String> = self
            .pending
            .iter()
            .filter(|(uid, p)| in_scope(&p.op.app_namespace) && !present.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        gone.iter()
            .filter_map(|uid| self.end_wait(uid, now))
            .collect()
    }

    /// An Application was deleted at `now`: the spans of the rollout this completes, if any.
    pub fn deleted(&mut self, app: &DynamicObject, now: u64) -> Vec<Vec<Span>> {
        let uid = app.metadata.uid.clone().unwrap_or_default();
        self.end_wait(&uid, now).into_iter().collect()
    }

    /// An Application was seen (listed or watched) at `now`: the spans of every rollout this
    /// completes.
    pub fn observe(&mut self, app: &DynamicObject, now: u64) -> Vec<Vec<Span>> {
        let Some(mut op) = rollout::operation(app) else {
            return Vec::new();
        };
        let key = op.key();
        // Between two attempts of a retry with `refresh` Argo CD clears the revision; the
        // one seen before stands until the next attempt resolves its own (also when that
        // attempt is the last and fails).
        if op.revision.is_empty()
            && let Some(p) = self.pending.get(&op.app_uid)
            && p.op.key() == key
        {
            op.revision = p.op.revision.clone();
        }
        let mut out = Vec::new();
        // A newer operation of this Application: the one before sees no further update.
        if self
            .pending
            .get(&op.app_uid)
            .is_some_and(|p| p.op.key() != key)
        {
            out.extend(self.end_wait(&op.app_uid, op.started_unix_nano));
        }
        if self.is_done(&op) {
            return out;
        }
        let health = rollout::health(app).unwrap_or_else(|| "Unknown".into());
        if !op.finished() {
            // Running (a retry between attempts too): the latest view of the operation.
            self.pending.insert(
                op.app_uid.clone(),
                Pending {
                    op,
                    seen_finished: false,
                    last_health: health,
                },
            );
            return out;
        }
        let known = self.pending.contains_key(&op.app_uid);
        let ended = op.finished_unix_nano.unwrap_or(now);
        if !known && !self.authoritative && ended < self.started_unix_nano {
            // Ended before this collector started and never seen in flight: the previous
            // run exported it (there is no state file to say otherwise). Published, so that
            // a next leader does not take it for missed.
            self.remember(&key);
            return out;
        }
        // A failed sync is the end of the story. Health is not: the update that ends a sync
        // can still carry the health from before it (Healthy or Degraded alike).
        if op.failed() {
            let settled = Settled {
                health,
                at_unix_nano: now.max(ended),
                timed_out: false,
            };
            out.push(self.export(op, settled));
            return out;
        }
        let entry = self.pending.entry(op.app_uid.clone()).or_insert(Pending {
            op: op.clone(),
            seen_finished: false,
            last_health: health.clone(),
        });
        entry.op = op;
        let complete = entry.seen_finished && settled_health(&health);
        entry.seen_finished = true;
        entry.last_health = health.clone();
        if complete {
            let op = entry.op.clone();
            out.push(self.export(
                op,
                Settled {
                    health,
                    at_unix_nano: now.max(ended),
                    timed_out: false,
                },
            ));
        }
        out
    }

    /// Time passed: the spans of rollouts whose settle window ended by `now`.
    pub fn tick(&mut self, now: u64) -> Vec<Vec<Span>> {
        let settle = u64::try_from(self.settle.as_nanos()).unwrap_or(u64::MAX);
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.op.finished()
                    && p.op
                        .finished_unix_nano
                        .is_some_and(|f| f.saturating_add(settle) <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in due {
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            let at =
                p.op.finished_unix_nano
                    .unwrap_or(now)
                    .saturating_add(settle);
            // Settled the whole window without a later update: a settled end.
            let timed_out = !settled_health(&p.last_health);
            let settled = Settled {
                health: p.last_health,
                at_unix_nano: at,
                timed_out,
            };
            out.push(self.export(p.op, settled));
        }
        out
    }

    /// Operations waiting to complete.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// App `argocd/train` (deploying into `ml`) with an operation of `revision` in `phase`,
    /// in the shape Argo CD writes (testkit's `fixtures::App`).
    fn app(
        revision: &str,
        started: &str,
        phase: &str,
        finished: Option<&str>,
        health: &str,
    ) -> DynamicObject {
        use hpcotel_testkit::kube::fixtures::{App, AppOperation, SyncedResource};
        let mut app = App::new(
            "argocd",
            "train",
            "uid-app",
            "https://git.example.com/ml/train.git",
            "ml",
            revision,
        );
        app.health = health.into();
        let mut deployment = SyncedResource::applied("apps", "Deployment", "ml", "trainer");
        if matches!(phase, "Failed" | "Error") {
            deployment.status = "SyncFailed".into();
            deployment.hook_phase = "Failed".into();
            deployment.message = "the server could not find the requested resource".into();
        }
        app.operation = Some(AppOperation {
            phase: phase.into(),
            message: match phase {
                "Running" => "waiting for healthy state of apps/Deployment/trainer",
                "Succeeded" => "successfully synced (all tasks run)",
                _ => "one or more objects failed to apply",
            }
            .into(),
            started_at: started.into(),
            finished_at: finished.map(str::to_owned),
            requested: vec![revision.into()],
            result: Some((vec![revision.into()], vec![deployment])),
            ..Default::default()
        });
        serde_json::from_value(app.build()).unwrap()
    }

    fn ts(s: &str) -> u64 {
        super::super::convert::rfc3339_nanos(s).unwrap()
    }

    #[test]
    fn a_rollout_completes_once_when_health_settles_after_the_sync() {
        let start = ts("2026-11-25T06:59:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        assert!(
            t.observe(
                &app("b", "2026-11-25T07:00:00Z", "Running", None, "Healthy"),
                start + 60 * S
            )
            .is_empty()
        );
        let done = app(
            "b",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
            "Healthy",
        );
        assert!(
            t.observe(&done, start + 73 * S).is_empty(),
            "the health on the finishing update may be stale"
        );
        let progressing = app(
            "b",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
            "Progressing",
        );
        assert!(t.observe(&progressing, start + 80 * S).is_empty());
        let healthy = app(
            "b",
            "2026-11-25T07:00:00Z",
            "Succeeded",
            Some("2026-11-25T07:00:12Z"),
            "Healthy",
        );
        let out = t.observe(&healthy, start + 95 * S);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0].end_time_unix_nano, start + 95 * S);
        assert!(
            t.observe(&healthy, start + 99 * S).is_empty(),
            "exactly once"
        );
        assert!(t.tick(start + 3600 * S).is_empty());
    }

    #[test]
    fn failed_completes_at_once_degraded_on_a_later_update_and_silence_times_out() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let failed = app(
            "b",
            "2026-11-25T07:00:00Z",
            "Failed",
            Some("2026-11-25T07:00:12Z"),
            "Healthy",
        );
        assert_eq!(t.observe(&failed, ts("2026-11-25T07:00:13Z")).len(), 1);
        let degraded = app(
            "c",
            "2026-11-25T08:00:00Z",
            "Succeeded",
            Some("2026-11-25T08:00:10Z"),
            "Degraded",
        );
        assert!(
            t.observe(&degraded, ts("2026-11-25T08:00:11Z")).is_empty(),
            "the finishing update's Degraded may be the health from before the sync"
        );
        assert_eq!(
            t.observe(&degraded, ts("2026-11-25T08:00:20Z")).len(),
            1,
            "still Degraded after it"
        );
        let quiet = app(
            "d",
            "2026-11-25T09:00:00Z",
            "Succeeded",
            Some("2026-11-25T09:00:10Z"),
            "Progressing",
        );
        assert!(t.observe(&quiet, ts("2026-11-25T09:00:11Z")).is_empty());
        assert!(
            t.tick(ts("2026-11-25T09:05:00Z")).is_empty(),
            "window not over"
        );
        let out = t.tick(ts("2026-11-25T09:10:10Z"));
        assert_eq!(out.len(), 1);
        let result = out[0][0]
            .attributes
            .iter()
            .find(|kv| kv.key == hpcotel_core::semconv::CICD_PIPELINE_RESULT)
            .unwrap();
        assert_eq!(
            format!("{:?}", result.value),
            format!("{:?}", hpcotel_core::telemetry::kv("x", "timeout").value)
        );
    }

    #[test]
    fn a_restart_with_a_state_file_repeats_nothing_and_finishes_what_was_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let config = RolloutsConfig {
            state_file: Some(dir.path().join("rollouts.json")),
            ..Default::default()
        };
        let start = ts("2026-11-25T06:00:00Z");
        let first = app(
            "a",
            "2026-11-25T06:10:00Z",
            "Failed",
            Some("2026-11-25T06:10:05Z"),
            "Healthy",
        );
        let mut t = Tracker::new(&config, start);
        let exported = t.observe(&first, ts("2026-11-25T06:10:06Z"));
        assert_eq!(exported.len(), 1);
        let in_flight = app("b", "2026-11-25T07:00:00Z", "Running", None, "Healthy");
        assert!(t.observe(&in_flight, ts("2026-11-25T07:00:01Z")).is_empty());
        drop(t);
        // The restarted collector lists both again.
        let mut t = Tracker::new(&config, ts("2026-11-25T07:00:30Z"));
        assert!(
            t.observe(&first, ts("2026-11-25T07:00:31Z")).is_empty(),
            "already exported"
        );
        assert!(t.observe(&in_flight, ts("2026-11-25T07:00:31Z")).is_empty());
        let failed = app(
            "b",
            "2026-11-25T07:00:00Z",
            "Failed",
            Some("2026-11-25T07:00:40Z"),
            "Healthy",
        );
        let out = t.observe(&failed, ts("2026-11-25T07:00:41Z"));
        assert_eq!(out.len(), 1);
        let expected = rollout::trace_id(&rollout::operation(&in_flight).unwrap());
        assert_eq!(
            out[0][0].trace_id,
            expected.to_vec(),
            "the same trace id as before the restart"
        );
    }

    #[test]
    fn without_a_state_file_syncs_that_ended_before_start_are_not_repeated() {
        let start = ts("2026-11-25T10:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let old = app(
            "a",
            "2026-11-25T06:10:00Z",
            "Failed",
            Some("2026-11-25T06:10:05Z"),
            "Degraded",
        );
        assert!(t.observe(&old, start + S).is_empty());
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_new_leader_repeats_no_old_sync_and_passes_the_list_on() {
        let start = ts("2026-11-25T10:00:00Z");
        let old = app(
            "a",
            "2026-11-25T06:10:00Z",
            "Failed",
            Some("2026-11-25T06:10:05Z"),
            "Degraded",
        );
        // A fresh Lease (no previous holder): syncs that ended before now were exported.
        let published: Exported = Exported::default();
        let mut t = Tracker::new(&RolloutsConfig::default(), start).taking_over(
            Vec::new(),
            false,
            published.clone(),
        );
        assert!(t.observe(&old, start + S).is_empty());
        // Taking over from a holder that published its list: the list is the whole truth,
        // and it is passed on to the next holder.
        let key = rollout::operation(&old).unwrap().key();
        let mut t = Tracker::new(&RolloutsConfig::default(), start).taking_over(
            vec![key.clone()],
            true,
            published.clone(),
        );
        assert!(
            t.observe(&old, start + S).is_empty(),
            "published as exported"
        );
        assert!(
            published.lock().unwrap().contains(&key),
            "kept for the next holder"
        );
        let missed = app(
            "m",
            "2026-11-25T09:59:00Z",
            "Failed",
            Some("2026-11-25T09:59:30Z"),
            "Healthy",
        );
        assert_eq!(
            t.observe(&missed, start + S).len(),
            1,
            "ended before the takeover but not exported: emitted"
        );
    }

    use hpcotel_testkit::kube::fixtures::{App, AppOperation, SyncedResource};

    /// App `team-a/web` (controller in `argocd`, retry limit 3 with `refresh`) with an
    /// operation started at 07:00:00.
    fn web(op: AppOperation, health: &str) -> DynamicObject {
        let mut app = App::new(
            "team-a",
            "web",
            "uid-web",
            "https://git.example.com/team-a/web.git",
            "team-a",
            "aaa",
        );
        app.retry = Some((3, true));
        app.health = health.into();
        app.operation = Some(AppOperation {
            started_at: "2026-11-25T07:00:00Z".into(),
            retry: Some((3, true)),
            ..op
        });
        serde_json::from_value(app.build()).unwrap()
    }

    fn running(revision: &str) -> AppOperation {
        AppOperation {
            phase: "Running".into(),
            message: "waiting for healthy state of apps/Deployment/web".into(),
            requested: vec![revision.into()],
            result: Some((
                vec![revision.into()],
                vec![SyncedResource::applied(
                    "apps",
                    "Deployment",
                    "team-a",
                    "web",
                )],
            )),
            ..Default::default()
        }
    }

    fn attr(span: &Span, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| hpcotel_testkit::sink::any_value_string(kv.value.as_ref()?))
    }

    #[test]
    fn a_suspended_application_settles_as_a_success() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let done = AppOperation {
            phase: "Succeeded".into(),
            message: "successfully synced (all tasks run)".into(),
            finished_at: Some("2026-11-25T07:00:10Z".into()),
            ..running("aaa")
        };
        assert!(
            t.observe(
                &web(done.clone(), "Progressing"),
                ts("2026-11-25T07:00:11Z")
            )
            .is_empty()
        );
        // The app holds a suspended CronJob: Suspended for good, a settled state.
        let out = t.observe(&web(done, "Suspended"), ts("2026-11-25T07:00:20Z"));
        assert_eq!(out.len(), 1, "settled at once, not after the 10 min window");
        let root = &out[0][0];
        assert_eq!(root.status.as_ref().unwrap().code, 1, "OK");
        assert_eq!(
            attr(root, semconv::CICD_PIPELINE_RESULT).as_deref(),
            Some("success")
        );
        assert_eq!(
            attr(root, semconv::HPCOTEL_ARGOCD_HEALTH_STATUS).as_deref(),
            Some("Suspended")
        );
        assert_eq!(t.pending(), 0);
    }

    use hpcotel_core::semconv;

    #[test]
    fn a_retry_with_refresh_is_one_rollout_of_the_revision_it_ended_with() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let first = t.observe(
            &web(running("aaa"), "Progressing"),
            ts("2026-11-25T07:00:01Z"),
        );
        assert!(first.is_empty());
        // The first attempt failed: Argo CD keeps the phase Running, sets finishedAt and
        // counts the retry.
        let mut failed = running("aaa");
        failed.message =
            "one or more objects failed to apply. Retrying attempt #1 at 7:00AM.".into();
        failed.finished_at = Some("2026-11-25T07:00:05Z".into());
        failed.retry_count = 1;
        failed.result.as_mut().unwrap().1[0].status = "SyncFailed".into();
        failed.result.as_mut().unwrap().1[0].hook_phase = "Failed".into();
        assert!(
            t.observe(&web(failed, "Progressing"), ts("2026-11-25T07:00:06Z"))
                .is_empty()
        );
        // The retry starts: with `refresh`, revision and syncResult are cleared.
        let retrying = AppOperation {
            phase: "Running".into(),
            message: "Retrying operation with latest revisions. Attempt #1".into(),
            retry_count: 1,
            ..Default::default()
        };
        assert!(
            t.observe(&web(retrying, "Progressing"), ts("2026-11-25T07:00:11Z"))
                .is_empty()
        );
        // ... and resolves the latest revision, bbb, which succeeds.
        let mut done = running("bbb");
        done.phase = "Succeeded".into();
        done.message = "successfully synced (all tasks run) (retried 1 times).".into();
        done.finished_at = Some("2026-11-25T07:00:20Z".into());
        done.retry_count = 1;
        assert!(
            t.observe(
                &web(done.clone(), "Progressing"),
                ts("2026-11-25T07:00:21Z")
            )
            .is_empty()
        );
        let out = t.observe(&web(done, "Healthy"), ts("2026-11-25T07:00:30Z"));
        assert_eq!(
            out.len(),
            1,
            "one trace for the operation, retries included"
        );
        assert_eq!(
            t.pending(),
            0,
            "nothing left waiting under the old revision"
        );
        let root = &out[0][0];
        assert_eq!(
            attr(root, semconv::VCS_REF_HEAD_REVISION).as_deref(),
            Some("bbb")
        );
        assert_eq!(
            root.trace_id,
            hpcotel_core::catalog::rollout_trace_id("uid-web", ts("2026-11-25T07:00:00Z")).to_vec(),
            "the trace id the operation had from its start"
        );
        assert!(t.tick(ts("2026-11-25T09:00:00Z")).is_empty());
    }

    #[test]
    fn a_newer_operation_or_a_deletion_ends_the_wait_of_the_one_before() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let mut done = running("aaa");
        done.phase = "Succeeded".into();
        done.finished_at = Some("2026-11-25T07:00:10Z".into());
        assert!(
            t.observe(
                &web(done.clone(), "Progressing"),
                ts("2026-11-25T07:00:11Z")
            )
            .is_empty()
        );
        assert!(
            t.observe(&web(done, "Progressing"), ts("2026-11-25T07:00:12Z"))
                .is_empty()
        );
        // A new sync starts before the first one settled: the first is complete as seen.
        let mut next = web(running("bbb"), "Progressing");
        next.data["status"]["operationState"]["startedAt"] =
            serde_json::json!("2026-11-25T07:05:00Z");
        let out = t.observe(&next, ts("2026-11-25T07:05:01Z"));
        assert_eq!(out.len(), 1);
        assert_eq!(
            attr(&out[0][0], semconv::CICD_PIPELINE_RESULT).as_deref(),
            Some("timeout")
        );
        assert_eq!(t.pending(), 1, "the new one waits");
        // The app is deleted while the new sync runs: its end is unknown, nothing is made up.
        assert!(t.deleted(&next, ts("2026-11-25T07:06:00Z")).is_empty());
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_last_attempt_that_fails_after_a_refresh_keeps_the_revision_it_ran() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        assert!(
            t.observe(
                &web(running("bbb"), "Progressing"),
                ts("2026-11-25T07:00:01Z")
            )
            .is_empty()
        );
        // The final attempt fails before its result names a revision.
        let failed = AppOperation {
            phase: "Failed".into(),
            message: "one or more objects failed to apply (retried 3 times).".into(),
            finished_at: Some("2026-11-25T07:03:00Z".into()),
            retry_count: 3,
            ..Default::default()
        };
        let out = t.observe(&web(failed, "Degraded"), ts("2026-11-25T07:03:01Z"));
        assert_eq!(out.len(), 1);
        assert_eq!(
            attr(&out[0][0], semconv::VCS_REF_HEAD_REVISION).as_deref(),
            Some("bbb")
        );
    }

    #[test]
    fn a_new_leader_repeats_nothing_of_many_applications() {
        let start = ts("2026-11-25T10:00:00Z");
        let failed = |i: usize| -> DynamicObject {
            let mut app = app(
                "b",
                "2026-11-25T10:01:00Z",
                "Failed",
                Some("2026-11-25T10:01:05Z"),
                "Healthy",
            );
            app.metadata.uid = Some(format!("uid-app-{i}"));
            app
        };
        let published: Exported = Exported::default();
        let mut leader = Tracker::new(&RolloutsConfig::default(), start).taking_over(
            Vec::new(),
            false,
            published.clone(),
        );
        for i in 0..300 {
            assert_eq!(leader.observe(&failed(i), start + 70 * S).len(), 1);
        }
        // A second sync of app 0 replaces its mark: one key per Application.
        let mut again = failed(0);
        again.data["status"]["operationState"]["startedAt"] =
            serde_json::json!("2026-11-25T10:02:00Z");
        again.data["status"]["operationState"]["finishedAt"] =
            serde_json::json!("2026-11-25T10:02:05Z");
        assert_eq!(leader.observe(&again, start + 130 * S).len(), 1);
        let list: Vec<String> = published.lock().unwrap().iter().cloned().collect();
        assert_eq!(list.len(), 300);
        // The next leader takes over with the published list: no app's sync again.
        let previous = list.clone();
        let mut next = Tracker::new(&RolloutsConfig::default(), start + 200 * S).taking_over(
            previous,
            true,
            Exported::default(),
        );
        for i in 0..300 {
            assert!(
                next.observe(&failed(i), start + 201 * S).is_empty(),
                "app {i}"
            );
        }
        assert!(next.observe(&again, start + 201 * S).is_empty());
    }

    #[test]
    fn an_application_gone_at_a_relist_ends_its_wait() {
        let start = ts("2026-11-25T06:00:00Z");
        let mut t = Tracker::new(&RolloutsConfig::default(), start);
        let mut done = running("aaa");
        done.phase = "Succeeded".into();
        done.finished_at = Some("2026-11-25T07:00:10Z".into());
        assert!(
            t.observe(
                &web(done.clone(), "Progressing"),
                ts("2026-11-25T07:00:11Z")
            )
            .is_empty()
        );
        assert_eq!(t.pending(), 1);
        // The watch was down while team-a/web was deleted; the relist does not have it.
        let present = std::collections::HashSet::new();
        // A relist of another namespace's watch leaves it alone.
        assert!(
            t.relisted(|ns| ns == "team-b", &present, ts("2026-11-25T07:01:00Z"))
                .is_empty()
        );
        assert_eq!(t.pending(), 1);
        let out = t.relisted(|ns| ns == "team-a", &present, ts("2026-11-25T07:01:00Z"));
        assert_eq!(out.len(), 1, "its finished sync is complete as last seen");
        assert_eq!(t.pending(), 0);
    }
}
