//! Which containers' logs are read.
//!
//! A file is read when its path passes the config's namespace, container and pod-UID rules
//! and its pod passes what the Catalog knows of it: not opted out (annotation
//! `hpcotel.io/logs: "false"`), not one of hpcotel's own pods (`app.kubernetes.io/name:
//! hpcotel`, with `exclude_hpcotel_pods`), no `exclude_pod_labels` selector matching its
//! labels and, when `include_pod_labels` is set, one of those matching.
//!
//! A pod the Catalog does not know yet is waited for (its files left unopened, so read from
//! their first byte once it is known) for `pod_metadata_wait` from when its files were first
//! seen; after that it is read without its labels and annotations — unless
//! `include_pod_labels` is set, which an unknown pod cannot match. While the Catalog holds no
//! pod at all (no `kubernetes` receiver fills it), nothing is waited for.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hpcotel_core::Catalog;
use hpcotel_core::catalog::{PodMeta, Snapshot};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::Config;

/// The pod annotation that opts a pod's logs out: `hpcotel.io/logs: "false"` (any case);
/// any other value, or none, leaves the pod to the other rules.
pub const LOGS_ANNOTATION: &str = "hpcotel.io/logs";
/// The label key and value of every pod the chart runs (`exclude_hpcotel_pods`).
pub const HPCOTEL_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "hpcotel");
/// How long a pod first seen unknown is remembered after its wait ended.
const SEEN_RETENTION: Duration = Duration::from_secs(60);

/// One requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` (or `key==value`).
    Equals(String, String),
    /// `key!=value`: also holds for a pod without the label.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`: also holds for a pod without the label.
    NotIn(String, Vec<String>),
    /// `key`: the label is set.
    Exists(String),
    /// `!key`: the label is not set.
    NotExists(String),
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => f.write_str(k),
            Requirement::NotExists(k) => write!(f, "!{k}"),
        }
    }
}

/// A Kubernetes label selector, as `kubectl -l` takes it: requirements joined by `,`, all of
/// which must hold. Written in the config as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A label selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad label selector {selector:?}: {why}")]
pub struct SelectorError {
    /// The selector as written.
    pub selector: String,
    /// What is wrong with it.
    pub why: String,
}

impl LabelSelector {
    /// Parses `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
    /// `key` and `!key`, joined by `,`. An empty selector is refused (Kubernetes reads it as
    /// "every pod", which in an exclude list would read nothing).
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let err = |why: String| SelectorError {
            selector: selector.to_owned(),
            why,
        };
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0u32, 0);
        for (i, c) in selector.char_indices() {
            match c {
                '(' if depth == 0 => depth = 1,
                '(' => return Err(err("nested '('".into())),
                ')' if depth == 0 => return Err(err("')' without '('".into())),
                ')' => depth = 0,
                ',' if depth == 0 => {
                    parts.push(&selector[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(err("'(' without ')'".into()));
        }
        parts.push(&selector[start..]);
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                return Err(err("an empty requirement".into()));
            }
            requirements.push(requirement(part).map_err(err)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.holds(labels))
    }

    /// The requirements, in order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.0
    }
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key.trim())?));
    }
    if let Some(open) = part.find('(') {
        let mut head = part[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(format!(
                "{part:?}: expected `key in (values)` or `key notin (values)`"
            ));
        };
        let Some(inner) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err(format!("{part:?}: text after ')'"));
        };
        let values = inner
            .split(',')
            .map(|v| value_of(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let key = key_of(key)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(format!("{part:?}: unknown operator {other:?} (in, notin)")),
        };
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key_of(k.trim())?,
            value_of(v.trim())?,
        ));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key_of(k.trim())?, value_of(v.trim())?));
    }
    Ok(Requirement::Exists(key_of(part)?))
}

/// A label key: `[prefix/]name` of letters, digits, `-`, `_`, `.`.
fn key_of(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key.matches('/').count() <= 1
        && !key.starts_with('/')
        && !key.ends_with('/')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "{key:?} is no label key ([prefix/]name of letters, digits, '-', '_', '.')"
        ))
    }
}

/// A label value: up to 63 letters, digits, `-`, `_`, `.` (empty included).
fn value_of(value: &str) -> Result<String, String> {
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is no label value (up to 63 letters, digits, '-', '_', '.')"
        ))
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Serialize for LabelSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelSelector, D::Error> {
        let s = String::deserialize(d)?;
        LabelSelector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What the Catalog says of pods, for [`Config::selects`]; shared by the receiver and its
/// tailer (clones share it). Not configuration: every two compare equal.
#[derive(Clone, Default)]
pub(crate) struct PodGate(Option<Arc<Gate>>);

struct Gate {
    catalog: Catalog,
    wait: Duration,
    /// Pods not (yet) known to the Catalog → when their files were first seen.
    seen: Mutex<HashMap<String, Instant>>,
}

/// What the gate knows of a pod.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict<T> {
    /// The Catalog knows it; what was made of its metadata.
    Known(T),
    /// Unknown, still within `pod_metadata_wait`.
    Waiting,
    /// Unknown, and no more waiting: its wait is over, the Catalog holds no pod at all, or
    /// no Catalog is attached.
    Unknown,
}

impl PodGate {
    /// A gate on `catalog`, waiting up to `wait` for a pod it does not know.
    pub(crate) fn new(catalog: Catalog, wait: Duration) -> PodGate {
        PodGate(Some(Arc::new(Gate {
            catalog,
            wait,
            seen: Mutex::default(),
        })))
    }

    /// The Catalog's current view, when one is attached.
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.0.as_ref().map(|g| g.catalog.snapshot())
    }

    /// Records that pod `uid`'s files were seen at `at` (its wait counts from the first time).
    pub(crate) fn seen_at(&self, uid: &str, at: Instant) {
        if let Some(g) = &self.0 {
            let mut seen = g.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let t = seen.entry(uid.to_owned()).or_insert(at);
            *t = (*t).min(at);
        }
    }

    /// Pod `uid` as of `now`: `decide` applied to its metadata when the Catalog knows it.
    pub(crate) fn pod<T>(
        &self,
        uid: &str,
        now: Instant,
        decide: impl FnOnce(&PodMeta) -> T,
    ) -> Verdict<T> {
        let Some(g) = &self.0 else {
            return Verdict::Unknown;
        };
        let snapshot = g.catalog.snapshot();
        let mut seen = g.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(meta) = snapshot.pods.get(uid) {
            seen.remove(uid);
            return Verdict::Known(decide(meta));
        }
        if snapshot.pods.is_empty() {
            return Verdict::Unknown;
        }
        let first = *seen.entry(uid.to_owned()).or_insert(now);
        if now.saturating_duration_since(first) < g.wait {
            Verdict::Waiting
        } else {
            Verdict::Unknown
        }
    }

    /// Forgets pods first seen long enough ago (a pod still unknown then is waited for once
    /// more if its files are looked at again).
    pub(crate) fn prune(&self, now: Instant) {
        if let Some(g) = &self.0 {
            let keep = g.wait + SEEN_RETENTION;
            g.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, t| now.saturating_duration_since(*t) < keep);
        }
    }
}

impl fmt::Debug for PodGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "PodGate(catalog)",
            None => "PodGate(none)",
        })
    }
}

impl PartialEq for PodGate {
    fn eq(&self, _: &PodGate) -> bool {
        true
    }
}

impl Config {
    /// Whether a container's logs are read now: its path's namespace, UID and container
    /// pass the config's rules, and its pod passes what the Catalog knows of it (see the
    /// module doc; `false` while an unknown pod is waited for).
    pub fn selects(&self, namespace: &str, pod_uid: &str, container: &str) -> bool {
        if !self.selects_path(namespace, pod_uid, Some(container)) {
            return false;
        }
        match self
            .gate
            .pod(pod_uid, Instant::now(), |meta| self.selects_pod(meta))
        {
            Verdict::Known(selected) => selected,
            Verdict::Waiting => false,
            Verdict::Unknown => self.selects_unknown_pod(),
        }
    }

    /// The rules on a file's path: namespaces, containers (`None`: any), the collector's UID.
    pub fn selects_path(&self, namespace: &str, pod_uid: &str, container: Option<&str>) -> bool {
        let listed = |list: &[String], name: &str| list.iter().any(|n| n == name);
        (self.include_namespaces.is_empty() || listed(&self.include_namespaces, namespace))
            && !listed(&self.exclude_namespaces, namespace)
            && container.is_none_or(|c| {
                (self.include_containers.is_empty() || listed(&self.include_containers, c))
                    && !listed(&self.exclude_containers, c)
            })
            && self.exclude_pod_uid.as_deref() != Some(pod_uid)
    }

    /// The rules on a pod the Catalog knows: its opt-out annotation, hpcotel's own label,
    /// `exclude_pod_labels`, `include_pod_labels`.
    pub fn selects_pod(&self, pod: &PodMeta) -> bool {
        let opted_out = pod
            .annotations
            .get(LOGS_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        let (key, value) = HPCOTEL_POD_LABEL;
        let hpcotel =
            self.exclude_hpcotel_pods && pod.labels.get(key).is_some_and(|v| v.as_str() == value);
        !opted_out
            && !hpcotel
            && !self
                .exclude_pod_labels
                .iter()
                .any(|s| s.matches(&pod.labels))
            && (self.include_pod_labels.is_empty()
                || self
                    .include_pod_labels
                    .iter()
                    .any(|s| s.matches(&pod.labels)))
    }

    /// Whether a pod whose labels and annotations are unknown (and no longer waited for)
    /// is read: yes, unless `include_pod_labels` asks for pods it cannot be shown to match.
    pub fn selects_unknown_pod(&self) -> bool {
        self.include_pod_labels.is_empty()
    }

    /// Whether pod `uid`, whose files are being read, still is: `false` once `snapshot`
    /// knows it and it does not pass [`Config::selects_pod`] (it opted out, its labels
    /// changed, or it was read unknown and turns out excluded).
    pub(crate) fn still_selects(&self, snapshot: &Snapshot, uid: &str) -> bool {
        snapshot.pods.get(uid).is_none_or(|p| self.selects_pod(p))
    }
}
