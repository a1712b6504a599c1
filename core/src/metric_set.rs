//! [`MetricSet`]: builds the OTLP metrics of one scrape or report, shared by every receiver
//! that samples (host, gpu) so that timestamps, temporality and empty-metric rules are the
//! same everywhere.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data, number_data_point,
};

/// The metrics of one scrape, all stamped with the same time. Sums are cumulative from
/// `start` (Unix nanoseconds). A metric with no points is not emitted.
#[derive(Debug, Clone)]
pub struct MetricSet {
    now: u64,
    start: u64,
    metrics: Vec<Metric>,
}

impl MetricSet {
    /// An empty set stamped `now`, with cumulative sums counted from `start` (both Unix ns).
    pub fn new(now: u64, start: u64) -> Self {
        Self {
            now,
            start,
            metrics: Vec::new(),
        }
    }

    /// The time every point carries.
    pub fn now(&self) -> u64 {
        self.now
    }

    fn point(
        &self,
        attributes: Vec<KeyValue>,
        value: number_data_point::Value,
        cumulative: bool,
    ) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: if cumulative { self.start } else { 0 },
            time_unix_nano: self.now,
            value: Some(value),
            ..Default::default()
        }
    }

    fn push(&mut self, name: &str, description: &str, unit: &str, data: Data) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: unit.to_owned(),
            data: Some(data),
            ..Default::default()
        });
    }

    fn sum(
        &mut self,
        name: &str,
        description: &str,
        unit: &str,
        monotonic: bool,
        data_points: Vec<NumberDataPoint>,
    ) {
        if data_points.is_empty() {
            return;
        }
        let data = Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        });
        self.push(name, description, unit, data);
    }

    /// A cumulative integer sum: `monotonic` for counters, not for updowncounters.
    pub fn sum_int(
        &mut self,
        name: &str,
        description: &str,
        unit: &str,
        monotonic: bool,
        points: Vec<(Vec<KeyValue>, i64)>,
    ) {
        let points = points
            .into_iter()
            .map(|(a, v)| self.point(a, number_data_point::Value::AsInt(v), true))
            .collect();
        self.sum(name, description, unit, monotonic, points);
    }

    /// A cumulative floating-point sum: `monotonic` for counters, not for updowncounters.
    pub fn sum_double(
        &mut self,
        name: &str,
        description: &str,
        unit: &str,
        monotonic: bool,
        points: Vec<(Vec<KeyValue>, f64)>,
    ) {
        let points = points
            .into_iter()
            .map(|(a, v)| self.point(a, number_data_point::Value::AsDouble(v), true))
            .collect();
        self.sum(name, description, unit, monotonic, points);
    }

    /// A gauge of doubles.
    pub fn gauge(
        &mut self,
        name: &str,
        description: &str,
        unit: &str,
        points: Vec<(Vec<KeyValue>, f64)>,
    ) {
        if points.is_empty() {
            return;
        }
        let data_points = points
            .into_iter()
            .map(|(a, v)| self.point(a, number_data_point::Value::AsDouble(v), false))
            .collect();
        self.push(name, description, unit, Data::Gauge(Gauge { data_points }));
    }

    /// True when no metric has been added.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// The metrics, in the order they were added.
    pub fn into_metrics(self) -> Vec<Metric> {
        self.metrics
    }
}
