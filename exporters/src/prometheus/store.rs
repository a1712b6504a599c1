//! The in-memory store behind `/metrics`: the latest state of every series, updated from
//! each exported batch and rendered in the text exposition format 0.0.4 on each scrape.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use hpcotel_core::semconv;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ExponentialHistogramDataPoint, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, SummaryDataPoint, metric::Data, number_data_point,
};

use super::config::Config;
use super::convert::{
    Label, NameKind, attr_string, attribute_labels, escape_help, escape_label_value, format_float,
    metric_name, sanitize_label_name,
};
use super::dcgm::{self, DcgmMapping, PromType};
use hpcotel_core::semconv::SERVICE_NAMESPACE;

/// Name of the series carrying resource attributes.
pub const TARGET_INFO: &str = "target_info";
/// `# HELP` of `target_info`.
const TARGET_INFO_HELP: &str = "Target metadata";

/// The store's settings, from [`Config`].
#[derive(Debug, Clone)]
struct Options {
    namespace: Option<String>,
    const_labels: Vec<Label>,
    expiration: Duration,
    resource_labels: bool,
    add_suffixes: bool,
    dcgm: bool,
}

/// Every series currently exposed, by family name.
#[derive(Debug)]
pub struct Store {
    opts: Options,
    families: BTreeMap<String, Family>,
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    /// By label set (sorted by name).
    series: BTreeMap<Vec<Label>, Series>,
}

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Debug)]
struct Series {
    value: Value,
    /// The data point's time stamp, to keep the latest of points arriving out of order.
    time_unix_nano: u64,
    /// When the series was last written, for `metric_expiration`.
    updated: Instant,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Histogram(Hist),
    Summary {
        /// (quantile, value).
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
}

/// An explicit-bucket histogram: `counts[i]` values in bucket `i` (not cumulative), one
/// more count than bounds (the last is above the last bound).
#[derive(Debug, Clone, PartialEq)]
struct Hist {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: Option<f64>,
    count: u64,
}

/// How a data point changes its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The point is the new state (gauges, cumulative sums and histograms, summaries).
    Set,
    /// The point is an increment (delta temporality).
    Add,
}

impl Value {
    /// Adds a delta point; `false` if the shapes differ (the caller then replaces).
    fn add(&mut self, delta: &Value) -> bool {
        match (self, delta) {
            (Value::Number(a), Value::Number(b)) => *a += b,
            (Value::Histogram(a), Value::Histogram(b)) if a.bounds == b.bounds => {
                for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                    *x += y;
                }
                a.count += b.count;
                a.sum = match (a.sum, b.sum) {
                    (Some(x), Some(y)) => Some(x + y),
                    _ => None,
                };
            }
            _ => return false,
        }
        true
    }
}

/// One data point to store, after conversion.
struct Point {
    name: String,
    help: String,
    kind: Kind,
    labels: Vec<Label>,
    value: Value,
    mode: Mode,
    time_unix_nano: u64,
}

impl Store {
    /// An empty store with `config`'s naming and expiration settings.
    pub fn new(config: &Config) -> Self {
        let const_labels = config
            .const_labels
            .iter()
            .map(|(k, v)| (sanitize_label_name(k), v.clone()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Self {
            opts: Options {
                namespace: config.namespace.clone().filter(|n| !n.is_empty()),
                const_labels,
                expiration: config.metric_expiration,
                resource_labels: config.resource_to_telemetry_conversion.enabled,
                add_suffixes: config.add_metric_suffixes,
                dcgm: config.dcgm_compatible,
            },
            families: BTreeMap::new(),
        }
    }

    /// Applies a batch of metrics at time `now`; returns how many data points could not be
    /// represented (no value, unspecified temporality, bucket counts not matching bounds).
    pub fn update(&mut self, batch: &[ResourceMetrics], now: Instant) -> u64 {
        self.expire(now);
        let mut dropped = 0;
        for rm in batch {
            let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let target = target_labels(resource);
            if !self.opts.resource_labels {
                self.target_info(resource, &target, now);
            }
            // const_labels < job/instance < resource attributes < scope < point attributes.
            let mut base = self.opts.const_labels.clone();
            base.extend(target.iter().cloned());
            if self.opts.resource_labels {
                base.extend(attribute_labels(resource));
            }
            for sm in &rm.scope_metrics {
                let mut scoped = base.clone();
                if let Some(scope) = &sm.scope {
                    for (k, v) in [
                        ("otel_scope_name", &scope.name),
                        ("otel_scope_version", &scope.version),
                    ] {
                        if !v.is_empty() {
                            scoped.push((k.to_owned(), v.clone()));
                        }
                    }
                }
                for metric in &sm.metrics {
                    dropped += self.metric(metric, resource, &scoped, now);
                }
            }
        }
        dropped
    }

    /// `target_info{job,instance,<resource attributes>} 1`, for a resource that has
    /// attributes beyond those making `job` and `instance`.
    fn target_info(&mut self, resource: &[KeyValue], target: &[Label], now: Instant) {
        let rest = attribute_labels(resource.iter().filter(|kv| {
            kv.key != semconv::SERVICE_NAME
                && kv.key != SERVICE_NAMESPACE
                && kv.key != semconv::SERVICE_INSTANCE_ID
        }));
        if rest.is_empty() {
            return;
        }
        let mut labels = self.opts.const_labels.clone();
        labels.extend(target.iter().cloned());
        labels.extend(rest);
        self.upsert(
            Point {
                name: TARGET_INFO.to_owned(),
                help: TARGET_INFO_HELP.to_owned(),
                kind: Kind::Gauge,
                labels: merge(labels),
                value: Value::Number(1.0),
                mode: Mode::Set,
                time_unix_nano: 0,
            },
            now,
        );
    }

    /// Stores the data points of one metric; returns how many were dropped.
    fn metric(
        &mut self,
        metric: &Metric,
        resource: &[KeyValue],
        base: &[Label],
        now: Instant,
    ) -> u64 {
        let Some(data) = &metric.data else {
            return 0;
        };
        let mut dropped = 0;
        let add_suffixes = self.opts.add_suffixes;
        let ns = self.opts.namespace.as_deref();
        let name = |kind| metric_name(&metric.name, &metric.unit, kind, add_suffixes, ns);
        let with = |attrs: &[KeyValue]| {
            let mut l = base.to_vec();
            l.extend(attribute_labels(attrs));
            merge(l)
        };
        match data {
            Data::Gauge(g) => {
                let dcgm = self.dcgm_candidates(&metric.name);
                let name = name(NameKind::Gauge);
                for p in &g.data_points {
                    dropped += self.number(
                        p,
                        &dcgm,
                        resource,
                        (&name, &metric.description, Kind::Gauge, Mode::Set),
                        &with,
                        now,
                    );
                }
            }
            Data::Sum(s) => {
                let Some(mode) = mode(s.aggregation_temporality) else {
                    return s.data_points.len() as u64;
                };
                let (name_kind, kind) = if s.is_monotonic {
                    (NameKind::Counter, Kind::Counter)
                } else {
                    (NameKind::Other, Kind::Gauge)
                };
                let dcgm = self.dcgm_candidates(&metric.name);
                let name = name(name_kind);
                for p in &s.data_points {
                    dropped += self.number(
                        p,
                        &dcgm,
                        resource,
                        (&name, &metric.description, kind, mode),
                        &with,
                        now,
                    );
                }
            }
            Data::Histogram(h) => {
                let Some(mode) = mode(h.aggregation_temporality) else {
                    return h.data_points.len() as u64;
                };
                let name = name(NameKind::Other);
                for p in &h.data_points {
                    let Some(hist) = explicit(p) else {
                        dropped += 1;
                        continue;
                    };
                    self.point(
                        Point {
                            name: name.clone(),
                            help: metric.description.clone(),
                            kind: Kind::Histogram,
                            labels: with(&p.attributes),
                            value: Value::Histogram(hist),
                            mode,
                            time_unix_nano: p.time_unix_nano,
                        },
                        p.flags,
                        now,
                    );
                }
            }
            Data::ExponentialHistogram(h) => {
                let Some(mode) = mode(h.aggregation_temporality) else {
                    return h.data_points.len() as u64;
                };
                let name = name(NameKind::Other);
                for p in &h.data_points {
                    self.point(
                        Point {
                            name: name.clone(),
                            help: metric.description.clone(),
                            kind: Kind::Histogram,
                            labels: with(&p.attributes),
                            value: Value::Histogram(exponential(p)),
                            mode,
                            time_unix_nano: p.time_unix_nano,
                        },
                        p.flags,
                        now,
                    );
                }
            }
            Data::Summary(s) => {
                let name = name(NameKind::Other);
                for p in &s.data_points {
                    self.point(
                        Point {
                            name: name.clone(),
                            help: metric.description.clone(),
                            kind: Kind::Summary,
                            labels: with(&p.attributes),
                            value: summary(p),
                            mode: Mode::Set,
                            time_unix_nano: p.time_unix_nano,
                        },
                        p.flags,
                        now,
                    );
                }
            }
        }
        dropped
    }

    fn dcgm_candidates(&self, metric: &str) -> Vec<&'static DcgmMapping> {
        if self.opts.dcgm {
            dcgm::mappings_for(metric)
        } else {
            Vec::new()
        }
    }

    /// Stores one gauge or sum point, under its dcgm-exporter name when it has one;
    /// returns 1 if it had no value.
    fn number(
        &mut self,
        p: &NumberDataPoint,
        dcgm: &[&'static DcgmMapping],
        resource: &[KeyValue],
        (name, help, kind, mode): (&str, &str, Kind, Mode),
        with: &dyn Fn(&[KeyValue]) -> Vec<Label>,
        now: Instant,
    ) -> u64 {
        let v = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None if no_recorded_value(p.flags) => 0.0,
            None => return 1,
        };
        let point = match dcgm::find(dcgm, &p.attributes) {
            Some(m) => {
                let mut labels = self.opts.const_labels.clone();
                labels.extend(dcgm::labels(&p.attributes, resource));
                let labels = merge(labels);
                self.forget_previous_pod(m.dcgm_name, &labels);
                Point {
                    name: m.dcgm_name.to_owned(),
                    help: m.help.to_owned(),
                    kind: match m.prom_type {
                        PromType::Gauge => Kind::Gauge,
                        PromType::Counter => Kind::Counter,
                    },
                    labels,
                    value: Value::Number(m.convert(v)),
                    mode,
                    time_unix_nano: p.time_unix_nano,
                }
            }
            None => Point {
                name: name.to_owned(),
                help: help.to_owned(),
                kind,
                labels: with(&p.attributes),
                value: Value::Number(v),
                mode,
                time_unix_nano: p.time_unix_nano,
            },
        };
        self.point(point, p.flags, now);
        0
    }

    /// In dcgm-exporter's naming a series follows the GPU's current pod, as dcgm-exporter
    /// does: when a GPU reports under another pod (or none), its series under the previous
    /// pod goes at once rather than after `metric_expiration`.
    fn forget_previous_pod(&mut self, name: &str, labels: &[Label]) {
        let Some(family) = self.families.get_mut(name) else {
            return;
        };
        let not_pod = |l: &&Label| !dcgm::POD_LABELS.contains(&l.0.as_str());
        let same_gpu = |other: &[Label]| {
            other
                .iter()
                .filter(not_pod)
                .eq(labels.iter().filter(not_pod))
        };
        family
            .series
            .retain(|other, _| other.as_slice() == labels || !same_gpu(other));
    }

    /// Stores a point, or removes its series when the point says "no recorded value" (the
    /// source stopped reporting it; Prometheus then marks it stale).
    fn point(&mut self, point: Point, flags: u32, now: Instant) {
        if no_recorded_value(flags) {
            if let Some(f) = self.families.get_mut(&point.name) {
                f.series.remove(&point.labels);
                if f.series.is_empty() {
                    self.families.remove(&point.name);
                }
            }
        } else {
            self.upsert(point, now);
        }
    }

    fn upsert(&mut self, p: Point, now: Instant) {
        if !self.families.contains_key(&p.name) {
            tracing::debug!(metric = %p.name, "new Prometheus metric family");
            let family = Family {
                help: String::new(),
                kind: p.kind,
                series: BTreeMap::new(),
            };
            self.families.insert(p.name.clone(), family);
        }
        let family = self.families.get_mut(&p.name).expect("inserted above");
        if family.kind != p.kind {
            tracing::warn!(
                metric = %p.name,
                was = family.kind.as_str(),
                now = p.kind.as_str(),
                "a metric changed type; its earlier series are dropped"
            );
            family.kind = p.kind;
            family.series.clear();
        }
        if !p.help.is_empty() && family.help != p.help {
            family.help = p.help;
        }
        match family.series.entry(p.labels) {
            Entry::Vacant(e) => {
                e.insert(Series {
                    value: p.value,
                    time_unix_nano: p.time_unix_nano,
                    updated: now,
                });
            }
            Entry::Occupied(mut e) => {
                let s = e.get_mut();
                s.updated = now;
                match p.mode {
                    Mode::Add if s.value.add(&p.value) => {}
                    Mode::Add => s.value = p.value,
                    // The latest point wins: an older one arriving late (another resource,
                    // another export consumer) does not overwrite it.
                    Mode::Set if p.time_unix_nano >= s.time_unix_nano || p.time_unix_nano == 0 => {
                        s.value = p.value;
                    }
                    Mode::Set => return,
                }
                s.time_unix_nano = s.time_unix_nano.max(p.time_unix_nano);
            }
        }
    }

    /// Removes the series not updated within `metric_expiration` of `now`.
    pub fn expire(&mut self, now: Instant) {
        let max_age = self.opts.expiration;
        self.families.retain(|_, f| {
            f.series
                .retain(|_, s| now.saturating_duration_since(s.updated) < max_age);
            !f.series.is_empty()
        });
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.families.values().map(|f| f.series.len()).sum()
    }

    /// The text exposition (format 0.0.4) of every series still fresh at `now`, families
    /// sorted by name and series by labels. No time stamps: Prometheus assigns the scrape's.
    pub fn render(&mut self, now: Instant) -> String {
        self.expire(now);
        let mut out = String::new();
        for (name, f) in &self.families {
            if !f.help.is_empty() {
                out.push_str("# HELP ");
                out.push_str(name);
                out.push(' ');
                escape_help(&f.help, &mut out);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(f.kind.as_str());
            out.push('\n');
            for (labels, s) in &f.series {
                match &s.value {
                    Value::Number(v) => sample(&mut out, name, "", labels, None, *v),
                    Value::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (bound, n) in h.bounds.iter().zip(&h.counts) {
                            cumulative += n;
                            let le = ("le", format_float(*bound));
                            sample(
                                &mut out,
                                name,
                                "_bucket",
                                labels,
                                Some(le),
                                cumulative as f64,
                            );
                        }
                        let inf = ("le", "+Inf".to_owned());
                        sample(&mut out, name, "_bucket", labels, Some(inf), h.count as f64);
                        if let Some(sum) = h.sum {
                            sample(&mut out, name, "_sum", labels, None, sum);
                        }
                        sample(&mut out, name, "_count", labels, None, h.count as f64);
                    }
                    Value::Summary {
                        quantiles,
                        sum,
                        count,
                    } => {
                        for (q, v) in quantiles {
                            let q = ("quantile", format_float(*q));
                            sample(&mut out, name, "", labels, Some(q), *v);
                        }
                        sample(&mut out, name, "_sum", labels, None, *sum);
                        sample(&mut out, name, "_count", labels, None, *count as f64);
                    }
                }
            }
        }
        out
    }
}

/// One sample line: `name<suffix>{labels[,extra]} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[Label],
    extra: Option<(&str, String)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let extra = extra.as_ref().map(|(k, v)| (*k, v.as_str()));
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra);
    let mut first = true;
    for (k, v) in all {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(v, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    out.push('\n');
}

/// Labels where a later pair overrides an earlier one of the same name, sorted by name.
fn merge(labels: Vec<Label>) -> Vec<Label> {
    let map: BTreeMap<String, String> = labels.into_iter().collect();
    map.into_iter().collect()
}

/// `job` (`service.namespace/service.name`, or `service.name`) and `instance`
/// (`service.instance.id`) of a resource, as far as it has them.
fn target_labels(resource: &[KeyValue]) -> Vec<Label> {
    let mut out = Vec::new();
    let name = attr_string(resource, semconv::SERVICE_NAME).filter(|s| !s.is_empty());
    let namespace = attr_string(resource, SERVICE_NAMESPACE).filter(|s| !s.is_empty());
    if let Some(name) = name {
        let job = match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        out.push(("job".to_owned(), job));
    }
    if let Some(id) = attr_string(resource, semconv::SERVICE_INSTANCE_ID).filter(|s| !s.is_empty())
    {
        out.push(("instance".to_owned(), id));
    }
    out
}

fn mode(temporality: i32) -> Option<Mode> {
    match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Cumulative) => Some(Mode::Set),
        Ok(AggregationTemporality::Delta) => Some(Mode::Add),
        _ => None,
    }
}

fn no_recorded_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

/// An explicit-bucket histogram point, or `None` when its bucket counts do not fit its
/// bounds (one more count than bounds, or no counts at all).
fn explicit(p: &HistogramDataPoint) -> Option<Hist> {
    let (bounds, counts) = if p.bucket_counts.is_empty() {
        (Vec::new(), vec![p.count])
    } else if p.bucket_counts.len() == p.explicit_bounds.len() + 1 {
        (p.explicit_bounds.clone(), p.bucket_counts.clone())
    } else {
        return None;
    };
    Some(Hist {
        bounds,
        counts,
        sum: p.sum,
        count: p.count,
    })
}

/// An exponential histogram as explicit buckets, exactly: bucket `i` of scale `s` covers
/// `(base^i, base^(i+1)]` with `base = 2^(2^-s)`, so its upper bound becomes an `le`; the
/// negative buckets come first (upper bound `-base^i`), then the zero bucket (`le` = the
/// zero threshold).
fn exponential(p: &ExponentialHistogramDataPoint) -> Hist {
    let step = (-f64::from(p.scale)).exp2();
    let bound = |index: i64| (index as f64 * step).exp2();
    let mut bounds: Vec<f64> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut push = |le: f64, n: u64| match bounds.last() {
        Some(&last) if le <= last => *counts.last_mut().expect("as many counts as bounds") += n,
        _ => {
            bounds.push(le);
            counts.push(n);
        }
    };
    if let Some(neg) = &p.negative {
        for (k, n) in neg.bucket_counts.iter().enumerate().rev() {
            push(-bound(i64::from(neg.offset) + k as i64), *n);
        }
    }
    push(p.zero_threshold.max(0.0), p.zero_count);
    if let Some(pos) = &p.positive {
        for (k, n) in pos.bucket_counts.iter().enumerate() {
            push(bound(i64::from(pos.offset) + k as i64 + 1), *n);
        }
    }
    counts.push(0);
    Hist {
        bounds,
        counts,
        sum: p.sum,
        count: p.count,
    }
}

fn summary(p: &SummaryDataPoint) -> Value {
    Value::Summary {
        quantiles: p
            .quantile_values
            .iter()
            .map(|q| (q.quantile, q.value))
            .collect(),
        sum: p.sum,
        count: p.count,
    }
}
