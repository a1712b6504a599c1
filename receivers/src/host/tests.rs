use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpcotel_core::channel;
use hpcotel_core::{
    Batch, ComponentId, ComponentKind, ComponentStats, Counter, Outputs, Receiver, ReceiverContext,
    Signal, Telemetry,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    rx: channel::Receiver,
    stop: CancellationToken,
    stats: Arc<ComponentStats>,
    task: JoinHandle<Result<(), hpcotel_core::ComponentError>>,
}

fn start(config: &Config, capacity: usize) -> Running {
    let receiver = HostReceiver::new(config).expect("host receiver builds");
    let telemetry = Telemetry::default();
    let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("host", None));
    let (tx, rx) = channel::channel(capacity);
    let mut outputs = Outputs::new(stats.clone());
    outputs.add(Signal::Metrics, "metrics", tx);
    let stop = CancellationToken::new();
    let ctx = ReceiverContext {
        id: ComponentId::new("host", None),
        outputs,
        shutdown: stop.clone(),
    };
    let task = tokio::spawn(Box::new(receiver).run(ctx));
    Running {
        rx,
        stop,
        stats,
        task,
    }
}

async fn next_scrape(rx: &mut channel::Receiver) -> ResourceMetrics {
    let batch = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a scrape within the deadline")
        .expect("receiver still running");
    match batch {
        Batch::Metrics(mut rms) => {
            assert_eq!(rms.len(), 1, "one ResourceMetrics per scrape");
            rms.remove(0)
        }
        other => panic!("expected metrics, got {:?}", other.signal()),
    }
}

fn metrics(rm: &ResourceMetrics) -> Vec<&Metric> {
    rm.scope_metrics.iter().flat_map(|s| &s.metrics).collect()
}

fn names(rm: &ResourceMetrics) -> Vec<String> {
    metrics(rm).iter().map(|m| m.name.clone()).collect()
}

fn metric<'a>(rm: &'a ResourceMetrics, name: &str) -> &'a Metric {
    metrics(rm)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} missing; got {:?}", names(rm)))
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{} has unexpected data {other:?}", m.name),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("point without value"),
    }
}

fn attr_string(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn by_state(m: &Metric, key: &str) -> HashMap<String, f64> {
    points(m)
        .iter()
        .map(|p| {
            (
                attr_string(&p.attributes, key).expect("state attribute"),
                value(p),
            )
        })
        .collect()
}

/// (metric name, rendered attributes) -> value, for every monotonic sum.
fn counters(rm: &ResourceMetrics) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for m in metrics(rm) {
        if let Some(Data::Sum(s)) = &m.data
            && s.is_monotonic
        {
            for p in &s.data_points {
                out.insert((m.name.clone(), format!("{:?}", p.attributes)), value(p));
            }
        }
    }
    out
}

fn fast(scrapers: Scrapers) -> Config {
    Config {
        collection_interval: Duration::from_millis(300),
        scrapers,
    }
}

#[tokio::test]
async fn a_run_emits_every_family_with_sane_values() {
    let mut run = start(&fast(Scrapers::all()), 4);
    let first = next_scrape(&mut run.rx).await;

    let resource = first.resource.as_ref().expect("resource");
    let host = attr_string(&resource.attributes, "host.name").expect("host.name");
    assert!(!host.is_empty());
    assert!(attr_string(&resource.attributes, "host.arch").is_some());
    assert_eq!(
        attr_string(&resource.attributes, "os.type").as_deref(),
        Some(hpcotel_core::semconv::os_type_value())
    );
    let scope = first.scope_metrics[0].scope.as_ref().expect("scope");
    assert_eq!(scope.name, "hpcotel");
    assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));

    let got = names(&first);
    for expected in [
        "system.cpu.utilization",
        "system.cpu.logical.count",
        "system.memory.usage",
        "system.memory.limit",
        "system.memory.utilization",
        "system.network.io",
        "system.network.packets",
        "system.network.errors",
        "system.paging.usage",
    ] {
        assert!(
            got.iter().any(|n| n == expected),
            "{expected} missing from {got:?}"
        );
    }
    if cfg!(target_os = "linux") {
        for expected in [
            "system.cpu.load_average.1m",
            "system.cpu.load_average.5m",
            "system.cpu.load_average.15m",
            "system.memory.linux.available",
        ] {
            assert!(
                got.iter().any(|n| n == expected),
                "{expected} missing from {got:?}"
            );
        }
    }

    // CPU: one utilization point per logical CPU, numbered 0..n, each in [0, 1].
    let count = value(&points(metric(&first, "system.cpu.logical.count"))[0]);
    assert!(count >= 1.0);
    let util = points(metric(&first, "system.cpu.utilization"));
    assert_eq!(util.len() as f64, count);
    for (i, p) in util.iter().enumerate() {
        assert_eq!(
            attr_string(&p.attributes, "cpu.logical_number"),
            Some(i.to_string())
        );
        assert!(
            (0.0..=1.0).contains(&value(p)),
            "cpu utilization {}",
            value(p)
        );
    }

    // Memory: limit > 0, used + free within the limit, utilizations in [0, 1].
    let limit = value(&points(metric(&first, "system.memory.limit"))[0]);
    assert!(limit > 0.0);
    let usage = by_state(metric(&first, "system.memory.usage"), "system.memory.state");
    assert!(usage["used"] > 0.0 && usage["used"] + usage["free"] <= limit);
    let mem_util = by_state(
        metric(&first, "system.memory.utilization"),
        "system.memory.state",
    );
    assert!((mem_util["used"] - usage["used"] / limit).abs() < 1e-9);
    for v in mem_util.values() {
        assert!((0.0..=1.0).contains(v));
    }

    // Network: every point names its interface and direction.
    for p in points(metric(&first, "system.network.io")) {
        assert!(attr_string(&p.attributes, "network.interface.name").is_some());
        let dir = attr_string(&p.attributes, "network.io.direction").unwrap();
        assert!(dir == "receive" || dir == "transmit");
    }

    // Filesystem (when the host reports any): used + free per mount, utilization consistent.
    if got.iter().any(|n| n == "system.filesystem.usage") {
        let fs_util = points(metric(&first, "system.filesystem.utilization"));
        assert!(!fs_util.is_empty());
        for p in fs_util {
            assert!((0.0..=1.0).contains(&value(p)));
            assert!(attr_string(&p.attributes, "system.filesystem.mountpoint").is_some());
        }
        for p in points(metric(&first, "system.filesystem.usage")) {
            let state = attr_string(&p.attributes, "system.filesystem.state").unwrap();
            assert!(state == "used" || state == "free");
            assert!(attr_string(&p.attributes, "system.device").is_some());
        }
    }

    // Paging: used + free is the swap size; utilization only with swap configured.
    let paging = by_state(metric(&first, "system.paging.usage"), "system.paging.state");
    assert!(paging.contains_key("used") && paging.contains_key("free"));
    if paging["used"] + paging["free"] > 0.0 {
        let pu = by_state(
            metric(&first, "system.paging.utilization"),
            "system.paging.state",
        );
        assert!(pu.values().all(|v| (0.0..=1.0).contains(v)));
    }

    // Sums carry a start time at or before the sample time.
    for m in metrics(&first) {
        if let Some(Data::Sum(s)) = &m.data {
            for p in &s.data_points {
                assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
            }
        }
    }

    // A second scrape: monotonic counters never go down, and time moves on.
    let second = next_scrape(&mut run.rx).await;
    let (a, b) = (counters(&first), counters(&second));
    assert!(!a.is_empty(), "no monotonic counters to compare");
    for (key, before) in &a {
        if let Some(after) = b.get(key) {
            assert!(after >= before, "{key:?} went down: {before} -> {after}");
        }
    }
    let t1 = points(metric(&first, "system.memory.limit"))[0].time_unix_nano;
    let t2 = points(metric(&second, "system.memory.limit"))[0].time_unix_nano;
    assert!(t2 > t1);

    run.stop.cancel();
    tokio::time::timeout(WAIT, run.task)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    assert!(run.stats.get(Signal::Metrics, Counter::Accepted) > 0);
}

#[tokio::test]
async fn disabling_a_scraper_removes_its_metrics() {
    let only_memory = Scrapers {
        memory: Some(MemoryConfig::default()),
        ..Scrapers::none()
    };
    let mut run = start(&fast(only_memory), 4);
    let rm = next_scrape(&mut run.rx).await;
    let got = names(&rm);
    assert!(
        got.iter().all(|n| n.starts_with("system.memory.")),
        "{got:?}"
    );
    assert!(got.iter().any(|n| n == "system.memory.usage"));
    run.stop.cancel();

    let all_but_network = Scrapers {
        network: None,
        ..Scrapers::all()
    };
    let mut run = start(&fast(all_but_network), 4);
    let got = names(&next_scrape(&mut run.rx).await);
    assert!(
        !got.iter().any(|n| n.starts_with("system.network.")),
        "{got:?}"
    );
    assert!(got.iter().any(|n| n == "system.cpu.utilization"));
    run.stop.cancel();
}

#[tokio::test]
async fn excluded_interfaces_are_left_out() {
    let network = Scrapers {
        network: Some(NetworkConfig {
            exclude_interfaces: vec!["lo".to_owned()],
        }),
        ..Scrapers::none()
    };
    let mut run = start(&fast(network), 4);
    let rm = next_scrape(&mut run.rx).await;
    for m in metrics(&rm) {
        for p in points(m) {
            assert_ne!(
                attr_string(&p.attributes, "network.interface.name").as_deref(),
                Some("lo")
            );
        }
    }
    run.stop.cancel();
}

#[tokio::test]
async fn a_full_pipeline_skips_scrapes_and_counts_them_refused() {
    let cfg = Config {
        collection_interval: Duration::from_millis(100),
        scrapers: Scrapers {
            memory: Some(MemoryConfig::default()),
            ..Scrapers::none()
        },
    };
    // Capacity 1 and nobody reading: the first scrape fits, the next ones cannot.
    let run = start(&cfg, 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while run.stats.get(Signal::Metrics, Counter::Refused) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrape was refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        run.stats
            .reasons(Signal::Metrics, Counter::Refused)
            .first()
            .map(|(r, _)| r.as_str()),
        Some("pipeline_full")
    );
    assert!(run.stats.get(Signal::Metrics, Counter::Accepted) > 0);
    assert!(
        !run.task.is_finished(),
        "a full pipeline must not stop the receiver"
    );
    run.stop.cancel();
    tokio::time::timeout(WAIT, run.task)
        .await
        .expect("stops promptly while the pipeline is full")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_stops_between_ticks() {
    let cfg = Config {
        collection_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    let mut run = start(&cfg, 4);
    next_scrape(&mut run.rx).await; // the first scrape comes right at start
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run.task)
        .await
        .expect("stops without waiting for the hour-long tick")
        .unwrap()
        .unwrap();
    // Returning dropped the outputs: the pipeline sees its input close.
    assert!(run.rx.recv().await.is_none());
}

#[test]
fn no_scrapers_is_an_error() {
    let cfg = Config {
        scrapers: Scrapers::none(),
        ..Config::default()
    };
    let err = HostReceiver::new(&cfg).unwrap_err();
    assert!(matches!(err, Error::NoScrapers));
    assert!(err.to_string().contains("no scraper enabled"));
}

/// Parses as the collector does: YAML value, then serde_path_to_error for the key path.
fn parse(yaml: &str) -> Result<Config, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize::<_, Config>(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

#[test]
fn config_defaults_and_present_means_enabled() {
    let empty = parse("{}").unwrap();
    assert_eq!(empty, Config::default());
    assert_eq!(empty.collection_interval, Duration::from_secs(10));
    assert_eq!(empty.scrapers, Scrapers::all());

    let some = parse(
        "collection_interval: 2s\nscrapers:\n  cpu:\n  network:\n    exclude_interfaces: [lo]\n",
    )
    .unwrap();
    assert_eq!(some.collection_interval, Duration::from_secs(2));
    assert_eq!(
        some.scrapers,
        Scrapers {
            cpu: Some(CpuConfig::default()),
            network: Some(NetworkConfig {
                exclude_interfaces: vec!["lo".to_owned()]
            }),
            ..Scrapers::none()
        }
    );
}

#[test]
fn config_parse_errors_name_the_key() {
    let e = parse("scrapers:\n  cpu:\n  gpu:\n").unwrap_err();
    assert!(
        e.contains("scrapers") && e.contains("unknown field `gpu`"),
        "{e}"
    );

    let e = parse("scrapers:\n  network:\n    exclude: [lo]\n").unwrap_err();
    assert!(
        e.contains("scrapers.network") && e.contains("unknown field `exclude`"),
        "{e}"
    );

    let e = parse("collection_interval: 0s\n").unwrap_err();
    assert!(
        e.contains("collection_interval") && e.contains("greater than 0"),
        "{e}"
    );

    let e = parse("collection_interval: soon\n").unwrap_err();
    assert!(e.contains("collection_interval"), "{e}");

    let e = parse("colection_interval: 1s\n").unwrap_err();
    assert!(e.contains("unknown field `colection_interval`"), "{e}");
}
