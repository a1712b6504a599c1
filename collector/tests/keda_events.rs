//! KEDA conditions and `events.k8s.io/v1` Events, in the real binary against the fake
//! kube-apiserver: a ScaledObject goes from Ready to a partial trigger error (WARN), to every
//! trigger failing, to a failed check (the same status, a new reason: logged), gains newer
//! KEDA's `HPAActive` condition, and rewords a message (not logged); KEDA's operator reports a
//! failing scaler three times as one Event whose `series` counts 1 → 2 → 3 (as read through
//! core/v1: no `count`, no `lastTimestamp`). A user sees one record per change, with KEDA's
//! severity, each occurrence with its count and time, and no duplicates.

mod common;

use std::time::{Duration, SystemTime};

use common::Hpcotel;
use common::nanos;
use common::otlp::attr_string as attr;
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

const WAIT: Duration = Duration::from_secs(40);

fn micros(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

type Condition<'a> = (&'a str, &'a str, &'a str, &'a str);

const READY: Condition = (
    "Ready",
    "True",
    "ScaledObjectReady",
    "ScaledObject is defined correctly and is ready for scaling",
);
const ACTIVE: Condition = (
    "Active",
    "True",
    "ScalerActive",
    "Scaling is performed because triggers are active",
);
const NO_FALLBACK: Condition = (
    "Fallback",
    "False",
    "NoFallbackFound",
    "No fallbacks are active on this scaled object",
);
const UNPAUSED: Condition = ("Paused", "False", "", "");

/// ScaledObject `ml/trainer` as KEDA writes it, with `ready` and `extra` conditions.
fn scaled_object(ready: Condition, extra: &[Condition]) -> serde_json::Value {
    let mut conditions = vec![ready, ACTIVE, NO_FALLBACK, UNPAUSED];
    conditions.extend_from_slice(extra);
    fixtures::scaled_object(
        "ml",
        "trainer",
        "uid-so",
        ("Deployment", "trainer"),
        &conditions,
        None,
    )
}

/// The KEDA condition records: (type, status, reason, severity text), in arrival order.
fn keda_records(r: &Received) -> Vec<(String, String, String, String)> {
    r.log_records()
        .into_iter()
        .filter(|l| l.event_name == "hpcotel.keda.condition")
        .map(|l| {
            let a = |k| attr(&l.attributes, k).unwrap_or_default();
            (
                a(semconv::HPCOTEL_KEDA_CONDITION_TYPE),
                a(semconv::HPCOTEL_KEDA_CONDITION_STATUS),
                a(semconv::HPCOTEL_KEDA_CONDITION_REASON),
                l.severity_text.clone(),
            )
        })
        .collect()
}

fn row(t: &str, status: &str, reason: &str, severity: &str) -> (String, String, String, String) {
    (t.into(), status.into(), reason.into(), severity.into())
}

/// The Event records of Event object `name`.
fn event_records<'a>(r: &'a Received, name: &str) -> Vec<&'a LogRecord> {
    r.log_records()
        .into_iter()
        .filter(|l| l.event_name == "k8s.event")
        .filter(|l| attr(&l.attributes, semconv::K8S_EVENT_NAME).as_deref() == Some(name))
        .collect()
}

/// KEDA's operator reporting that `trainer`'s scaler fails, through `events.k8s.io/v1`.
fn scaler_failed(name: &str, first: &str, series: Option<(i32, &str)>) -> serde_json::Value {
    fixtures::events_v1_event(
        "ml",
        name,
        ("ScaledObject", "ml", "trainer", "uid-so"),
        "KEDAScalerFailed",
        "KEDAScalerFailed",
        "error requesting metrics endpoint: dial tcp 10.96.0.20:9090: connect: connection refused",
        "Warning",
        (
            "keda-operator",
            "keda-operator-keda-operator-7c9d8f6b5-x2x9k",
        ),
        first,
        series,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_conditions_and_event_series_are_logged_once_each_with_their_severity_and_count() {
    let api = FakeApiServer::start().await;
    api.apply(scaled_object(READY, &[]));
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  kubernetes/cluster:
    auth_type: none
    endpoint: "{api}"
    mode: cluster
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [kubernetes/cluster], exporters: [otlp] }}
"#,
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));
    assert!(
        api.wait_until(WAIT, |api| {
            let watching = |plural: &str| {
                api.requests()
                    .iter()
                    .any(|q| q.plural == plural && q.verb.as_str() == "watch")
            };
            watching("scaledobjects") && watching("events")
        })
        .await,
        "the ScaledObject and Event watches are up"
    );

    // The ScaledObject's story, one change at a time.
    let partial = (
        "Ready",
        "Unknown",
        "PartialTriggerError",
        "Some triggers defined in ScaledObject are not working correctly",
    );
    let trigger_error = (
        "Ready",
        "False",
        "TriggerError",
        "Triggers defined in ScaledObject are not working correctly",
    );
    let check_failed = |err| {
        (
            "Ready",
            "False",
            "ScaledObjectCheckFailed",
            format!("failed to ensure HPA is correctly created for ScaledObject: {err}"),
        )
    };
    let (t, s, reason, first_failure) =
        check_failed("the server is currently unable to handle the request");
    let (_, _, _, second_failure) = check_failed("context deadline exceeded");
    let hpa_failing = (
        "HPAActive",
        "False",
        "FailedGetExternalMetric",
        "HPA is not actively scaling: the HPA was unable to compute the replica count: unable to get external metric ml/s0-prometheus",
    );
    let steps: Vec<(serde_json::Value, usize)> = vec![
        (scaled_object(partial, &[]), 1),
        (scaled_object(trigger_error, &[]), 2),
        (
            scaled_object((t, s, reason, &first_failure), &[hpa_failing]),
            4,
        ),
        // The next reconcile fails alike, with another error text: no record.
        (
            scaled_object((t, s, reason, &second_failure), &[hpa_failing]),
            4,
        ),
        (scaled_object(READY, &[hpa_failing]), 5),
    ];
    for (i, (so, records)) in steps.into_iter().enumerate() {
        api.apply(so);
        // A message-only step logs nothing; the step after it shows it was read.
        if i != 3 {
            sink.wait_for(&format!("{records} KEDA records"), WAIT, |r| {
                keda_records(r).len() >= records
            })
            .await;
        }
    }

    // KEDA's operator reports a failing scaler, then twice more: one Event, a growing series.
    let name = "trainer.18a1f2e3d4c5b6a7";
    let start = SystemTime::now();
    let first = micros(start);
    let second = micros(start + Duration::from_millis(1500));
    let third = micros(start + Duration::from_millis(3250));
    let occurrences = [(None, &first), (Some(2), &second), (Some(3), &third)];
    for (n, (series, at)) in occurrences.iter().enumerate() {
        api.apply(scaler_failed(
            name,
            &first,
            series.map(|c| (c, at.as_str())),
        ));
        sink.wait_for(&format!("occurrence {}", n + 1), WAIT, |r| {
            event_records(r, name).len() > n
        })
        .await;
    }
    // The recorder's heartbeat rewrites the series as it is; then another Event follows.
    api.apply(scaler_failed(name, &first, Some((3, &third))));
    let marker = "trainer.18a1f2e3d4c5b6a8";
    api.apply(scaler_failed(marker, &micros(SystemTime::now()), None));
    let r = sink
        .wait_for("the Event after the heartbeat", WAIT, |r| {
            !event_records(r, marker).is_empty()
        })
        .await;

    // Step by step (each step was waited for); the two changes of one update may arrive in
    // either order, so that step is compared as a set.
    let mut records = keda_records(&r);
    assert_eq!(
        records.len(),
        5,
        "one record per change of status or reason, none for a reworded message: {records:?}"
    );
    records[2..4].sort();
    assert_eq!(
        records,
        [
            row("Ready", "Unknown", "PartialTriggerError", "WARN"),
            row("Ready", "False", "TriggerError", "WARN"),
            row("HPAActive", "False", "FailedGetExternalMetric", "WARN"),
            row("Ready", "False", "ScaledObjectCheckFailed", "WARN"),
            row("Ready", "True", "ScaledObjectReady", "INFO"),
        ],
        "one record per change of status or reason, none for a reworded message"
    );
    let check_failed_body = r
        .log_records()
        .into_iter()
        .find(|l| {
            attr(&l.attributes, semconv::HPCOTEL_KEDA_CONDITION_REASON).as_deref()
                == Some("ScaledObjectCheckFailed")
        })
        .and_then(|l| l.body.as_ref().and_then(any_value_string))
        .unwrap();
    assert!(
        check_failed_body.contains("unable to handle the request"),
        "{check_failed_body}"
    );

    let events = event_records(&r, name);
    let seen: Vec<(Option<String>, u64, &str)> = events
        .iter()
        .map(|l| {
            (
                attr(&l.attributes, semconv::K8S_EVENT_COUNT),
                l.time_unix_nano,
                l.severity_text.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("1".to_string()), nanos(&first), "WARN"),
            (Some("2".to_string()), nanos(&second), "WARN"),
            (Some("3".to_string()), nanos(&third), "WARN"),
        ],
        "each occurrence once, at its time (lastObservedTime for the repeats)"
    );
    for l in &events {
        assert_eq!(
            attr(&l.attributes, semconv::K8S_EVENT_REASON).as_deref(),
            Some("KEDAScalerFailed")
        );
        assert_eq!(
            attr(&l.attributes, semconv::K8S_EVENT_ACTION).as_deref(),
            Some("KEDAScalerFailed")
        );
        assert_eq!(
            attr(&l.attributes, semconv::K8S_OBJECT_KIND).as_deref(),
            Some("ScaledObject")
        );
        assert_eq!(
            attr(&l.attributes, semconv::K8S_OBJECT_NAME).as_deref(),
            Some("trainer")
        );
    }
}
