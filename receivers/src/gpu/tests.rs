//! The gpu receiver against testkit's fake `libnvidia-ml.so`, loaded through nvml-wrapper's
//! real dynamic loading path. Expected values come from the scripted scenario.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hpcotel_core::channel;
use hpcotel_core::telemetry::unix_nanos;
use hpcotel_core::{
    Batch, Catalog, ComponentId, ComponentKind, Outputs, PodRef, Receiver, ReceiverContext, Signal,
    Telemetry, semconv,
};
use hpcotel_testkit::nvml::{Event, FakeNvml, MigInstance, Scenario, Value};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use tokio_util::sync::CancellationToken;

use super::sampler::{Options, Report, Sampler, THROTTLE_REASONS, XidStats};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{}: unexpected data {other:?}", m.name),
    }
}

fn kind(m: &Metric) -> &'static str {
    match &m.data {
        Some(Data::Gauge(_)) => "gauge",
        Some(Data::Sum(s)) if s.is_monotonic => "counter",
        Some(Data::Sum(_)) => "updowncounter",
        _ => "other",
    }
}

/// The `ResourceMetrics` whose points have `hw.id == uuid`.
fn for_device<'a>(report: &'a [ResourceMetrics], uuid: &str) -> &'a ResourceMetrics {
    report
        .iter()
        .find(|rm| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .flat_map(points)
                .any(|p| str_attr(&p.attributes, semconv::HW_ID).as_deref() == Some(uuid))
        })
        .unwrap_or_else(|| panic!("no metrics for {uuid}"))
}

fn metric<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a Metric> {
    rm.scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

/// The value of `name` on the point matching `filter`, checking unit and instrument kind.
fn get(rm: &ResourceMetrics, name: &str, unit: &str, kind_: &str, filter: &[(&str, &str)]) -> f64 {
    let m = metric(rm, name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(m.unit, unit, "{name} unit");
    assert_eq!(kind(m), kind_, "{name} instrument");
    let p = points(m)
        .iter()
        .find(|p| {
            filter
                .iter()
                .all(|(k, v)| str_attr(&p.attributes, k).as_deref() == Some(*v))
        })
        .unwrap_or_else(|| panic!("{name}: no point with {filter:?}"));
    value(p)
}

fn fake_with(scenario: &Scenario) -> FakeNvml {
    FakeNvml::new(scenario)
}

fn config_for(fake: &FakeNvml) -> Config {
    Config {
        library_path: fake.library_path(),
        proc_root: PathBuf::from("/nonexistent-proc"),
        ..Default::default()
    }
}

/// Sampling at 100 ms, reporting every `report`, no kubelet.
fn running_config(fake: &FakeNvml, report: Duration) -> Config {
    let mut config = config_for(fake);
    config.sample_interval = Duration::from_millis(100);
    config.report_interval = report;
    config.pod_resources.endpoint = PathBuf::from("/nonexistent/kubelet.sock");
    config
}

fn sampler_for(fake: &FakeNvml, catalog: Catalog) -> Sampler {
    let nvml = Arc::new(load_nvml(&config_for(fake)).expect("the fake NVML loads"));
    Sampler::new(
        nvml,
        catalog,
        Arc::new(XidStats::default()),
        Options {
            host: vec![hpcotel_core::telemetry::kv(semconv::HOST_NAME, "node-1")],
            logs: true,
            processes: true,
            mig: true,
            proc_root: PathBuf::from("/nonexistent-proc"),
        },
    )
}

fn one_report(s: &mut Sampler) -> Report {
    s.sample();
    s.report(unix_nanos(SystemTime::now()))
}

#[test]
fn eight_gpus_every_metric_with_its_name_unit_value_and_attributes() {
    let scenario = Scenario::with_gpus(8);
    let fake = fake_with(&scenario);
    let mut s = sampler_for(&fake, Catalog::new());
    assert_eq!(s.gpu_count(), 8);
    let report = one_report(&mut s);
    assert_eq!(report.metrics.len(), 8, "one ResourceMetrics per GPU");
    let mut uuids = std::collections::HashSet::new();
    for (i, d) in scenario.devices.iter().enumerate() {
        let rm = for_device(&report.metrics, &d.uuid);
        uuids.insert(d.uuid.clone());
        let at = |v: &Value| v.at(0) as f64;
        let id: &[(&str, &str)] = &[(semconv::HW_ID, &d.uuid)];
        let with = |k: &'static str, v: &'static str| -> Vec<(&str, &str)> {
            vec![(semconv::HW_ID, d.uuid.as_str()), (k, v)]
        };
        // Identity attributes on every point of this GPU.
        let any = points(metric(rm, semconv::METRIC_HW_POWER).unwrap())[0]
            .attributes
            .clone();
        let index = i.to_string();
        let name = format!("gpu{i}");
        for (k, v) in [
            (semconv::HW_NAME, name.as_str()),
            (semconv::HW_TYPE, "gpu"),
            (semconv::HW_VENDOR, "NVIDIA"),
            (semconv::HW_MODEL, d.name.as_str()),
            (semconv::HPCOTEL_GPU_INDEX, index.as_str()),
            (semconv::HPCOTEL_GPU_PCI_BUS_ID, d.pci_bus_id.as_str()),
        ] {
            assert_eq!(str_attr(&any, k).as_deref(), Some(v), "GPU {i} {k}");
        }
        let res = rm.resource.as_ref().unwrap();
        assert_eq!(
            str_attr(&res.attributes, semconv::HOST_NAME).as_deref(),
            Some("node-1")
        );

        let g = |name, unit, f: &[(&str, &str)]| get(rm, name, unit, "gauge", f);
        let close = |got: f64, want: f64, what: &str| {
            assert!(
                (got - want).abs() < 1e-6 * want.abs().max(1.0),
                "GPU {i} {what}: got {got}, want {want}"
            )
        };
        for (task, v) in [
            ("general", &d.utilization_gpu),
            ("encoder", &d.encoder_utilization),
            ("decoder", &d.decoder_utilization),
        ] {
            let f = with(semconv::HW_GPU_TASK, task);
            close(
                g(semconv::METRIC_HW_GPU_UTILIZATION, "1", &f),
                at(v) / 100.0,
                task,
            );
            close(
                g(semconv::METRIC_GPU_UTILIZATION_MIN, "1", &f),
                at(v) / 100.0,
                task,
            );
            close(
                g(semconv::METRIC_GPU_UTILIZATION_MAX, "1", &f),
                at(v) / 100.0,
                task,
            );
        }
        close(
            g(semconv::METRIC_HW_GPU_MEMORY_UTILIZATION, "1", id),
            at(&d.utilization_memory) / 100.0,
            "memory utilization",
        );
        let used = at(&d.memory_used_bytes);
        let total = d.memory_total_bytes as f64;
        let reserved = d.memory_reserved_bytes as f64;
        let u = |name, unit, f: &[(&str, &str)]| get(rm, name, unit, "updowncounter", f);
        close(
            u(semconv::METRIC_HW_GPU_MEMORY_USAGE, "By", id),
            used,
            "memory used",
        );
        close(
            u(semconv::METRIC_HW_GPU_MEMORY_LIMIT, "By", id),
            total,
            "memory total",
        );
        close(
            u(semconv::METRIC_GPU_MEMORY_RESERVED, "By", id),
            reserved,
            "memory reserved",
        );
        close(
            u(semconv::METRIC_GPU_MEMORY_FREE, "By", id),
            total - used - reserved,
            "memory free",
        );
        close(
            u(semconv::METRIC_GPU_BAR1_USAGE, "By", id),
            at(&d.bar1_used_bytes),
            "bar1 used",
        );
        close(
            u(semconv::METRIC_GPU_BAR1_LIMIT, "By", id),
            d.bar1_total_bytes as f64,
            "bar1 total",
        );
        let watts = at(&d.power_mw) / 1000.0;
        close(g(semconv::METRIC_HW_POWER, "W", id), watts, "power");
        close(
            g(semconv::METRIC_GPU_POWER_MIN, "W", id),
            watts,
            "power min",
        );
        close(
            g(semconv::METRIC_GPU_POWER_MAX, "W", id),
            watts,
            "power max",
        );
        close(
            g(semconv::METRIC_GPU_POWER_LIMIT, "W", id),
            at(&d.power_limit_mw) / 1000.0,
            "power limit",
        );
        close(
            get(rm, semconv::METRIC_HW_ENERGY, "J", "counter", id),
            at(&d.energy_mj) / 1000.0,
            "energy",
        );
        for (sensor, v) in [
            ("gpu", &d.temperature_c),
            ("memory", &d.memory_temperature_c),
        ] {
            let f = with(semconv::HW_SENSOR_LOCATION, sensor);
            close(g(semconv::METRIC_HW_TEMPERATURE, "Cel", &f), at(v), sensor);
            close(
                g(semconv::METRIC_GPU_TEMPERATURE_MAX, "Cel", &f),
                at(v),
                sensor,
            );
        }
        for (clock, v) in [
            ("graphics", &d.clock_graphics_mhz),
            ("sm", &d.clock_sm_mhz),
            ("memory", &d.clock_memory_mhz),
        ] {
            let f = with(semconv::HPCOTEL_GPU_CLOCK_TYPE, clock);
            close(
                g(semconv::METRIC_GPU_CLOCK_FREQUENCY, "Hz", &f),
                at(v) * 1e6,
                clock,
            );
            close(
                g(semconv::METRIC_GPU_CLOCK_FREQUENCY_MIN, "Hz", &f),
                at(v) * 1e6,
                clock,
            );
        }
        let bits = d.throttle_reasons.at(0);
        for (bit, reason) in THROTTLE_REASONS {
            let f = with(semconv::HPCOTEL_GPU_THROTTLE_REASON, reason);
            let want = if bits & bit != 0 { 1.0 } else { 0.0 };
            close(g(semconv::METRIC_GPU_THROTTLE, "1", &f), want, reason);
        }
        close(
            g(semconv::METRIC_GPU_PERFORMANCE_STATE, "1", id),
            at(&d.pstate),
            "pstate",
        );
        for (dir, v) in [("transmit", &d.pcie_tx_kbps), ("receive", &d.pcie_rx_kbps)] {
            let f = with(semconv::NETWORK_IO_DIRECTION, dir);
            close(
                g(semconv::METRIC_GPU_PCIE_THROUGHPUT, "By/s", &f),
                at(v) * 1024.0,
                dir,
            );
        }
        close(
            g(semconv::METRIC_GPU_PCIE_LINK_GENERATION, "1", id),
            at(&d.pcie_link_gen),
            "link gen",
        );
        close(
            g(semconv::METRIC_GPU_PCIE_LINK_WIDTH, "{lane}", id),
            at(&d.pcie_link_width),
            "link width",
        );
        close(
            get(
                rm,
                semconv::METRIC_GPU_PCIE_REPLAYS,
                "{replay}",
                "counter",
                id,
            ),
            at(&d.pcie_replay),
            "replays",
        );
        for (dir, v) in [
            ("transmit", &d.nvlink_tx_kib),
            ("receive", &d.nvlink_rx_kib),
        ] {
            let f = with(semconv::NETWORK_IO_DIRECTION, dir);
            close(
                get(rm, semconv::METRIC_GPU_NVLINK_IO, "By", "counter", &f),
                at(v) * 1024.0,
                dir,
            );
        }
        for (t, v) in [
            ("crc_flit", &d.nvlink_crc_flit_errors),
            ("crc_data", &d.nvlink_crc_data_errors),
            ("replay", &d.nvlink_replay_errors),
            ("recovery", &d.nvlink_recovery_errors),
        ] {
            let f = with(semconv::ERROR_TYPE, t);
            close(
                get(
                    rm,
                    semconv::METRIC_GPU_NVLINK_ERRORS,
                    "{error}",
                    "counter",
                    &f,
                ),
                at(v),
                t,
            );
        }
        for (t, v) in [
            ("corrected", &d.ecc_corrected),
            ("uncorrected", &d.ecc_uncorrected),
        ] {
            let f = with(semconv::ERROR_TYPE, t);
            close(
                get(rm, semconv::METRIC_HW_ERRORS, "{error}", "counter", &f),
                at(v),
                t,
            );
        }
        for (c, v) in [
            ("single_bit_ecc", &d.retired_pages_single_bit),
            ("double_bit_ecc", &d.retired_pages_double_bit),
        ] {
            let f = with(semconv::HPCOTEL_GPU_RETIREMENT_CAUSE, c);
            close(u(semconv::METRIC_GPU_RETIRED_PAGES, "{page}", &f), at(v), c);
        }
        for (t, v) in [
            ("corrected", &d.remapped_rows_correctable),
            ("uncorrected", &d.remapped_rows_uncorrectable),
        ] {
            let f = with(semconv::ERROR_TYPE, t);
            close(u(semconv::METRIC_GPU_REMAPPED_ROWS, "{row}", &f), at(v), t);
        }
        close(
            g(semconv::METRIC_GPU_ROW_REMAP_PENDING, "1", id),
            f64::from(u8::from(d.remap_pending)),
            "remap pending",
        );
        close(
            g(semconv::METRIC_GPU_ROW_REMAP_FAILED, "1", id),
            f64::from(u8::from(d.remap_failure)),
            "remap failed",
        );
        for (fan, v) in d.fan_speeds_percent.iter().enumerate() {
            let fan = fan.to_string();
            let f = vec![
                (semconv::HW_ID, d.uuid.as_str()),
                (semconv::HPCOTEL_GPU_FAN_INDEX, fan.as_str()),
            ];
            close(
                g(semconv::METRIC_GPU_FAN_SPEED, "1", &f),
                at(v) / 100.0,
                "fan",
            );
        }
        for p in &d.processes {
            let pid = p.pid.to_string();
            let f = vec![
                (semconv::HW_ID, d.uuid.as_str()),
                (semconv::PROCESS_PID, pid.as_str()),
            ];
            close(
                u(semconv::METRIC_GPU_PROCESS_MEMORY_USAGE, "By", &f),
                p.used_memory_bytes as f64,
                "process memory",
            );
            close(
                g(semconv::METRIC_GPU_PROCESS_UTILIZATION, "1", &f),
                f64::from(p.sm_util) / 100.0,
                "process sm",
            );
        }
        let ok = with(semconv::HW_STATE, "ok");
        assert_eq!(u(semconv::METRIC_HW_STATUS, "1", &ok), 1.0, "GPU {i} ok");
        let failed = with(semconv::HW_STATE, "failed");
        assert_eq!(
            u(semconv::METRIC_HW_STATUS, "1", &failed),
            0.0,
            "GPU {i} not failed"
        );
        let status = points(metric(rm, semconv::METRIC_HW_STATUS).unwrap());
        assert_eq!(
            str_attr(&status[0].attributes, semconv::HW_SERIAL_NUMBER).as_deref(),
            Some(d.serial.as_str())
        );
        assert_eq!(
            str_attr(&status[0].attributes, semconv::HW_DRIVER_VERSION).as_deref(),
            Some(scenario.driver_version.as_str())
        );
        close(g(semconv::METRIC_GPU_XID_LAST, "1", id), 0.0, "no xid yet");
    }
    assert_eq!(uuids.len(), 8, "8 distinct GPUs");
}

#[test]
fn mig_instances_report_beside_their_gpu_with_the_parent_and_profile() {
    let mut scenario = Scenario::with_gpus(3);
    for parent in [0u32, 2] {
        scenario.devices[parent as usize].mig_instances =
            (0..2).map(|m| MigInstance::sample(parent, m)).collect();
    }
    let fake = fake_with(&scenario);
    let mig_uuid = scenario.devices[2].mig_instances[1].uuid.clone();
    let catalog = Catalog::new();
    catalog.set_gpu_allocations(HashMap::from([(
        mig_uuid.clone(),
        vec![PodRef {
            namespace: "ml".into(),
            name: "infer-7".into(),
            container: Some("server".into()),
            uid: None,
        }],
    )]));
    let mut s = sampler_for(&fake, catalog);
    let report = one_report(&mut s);
    assert_eq!(report.metrics.len(), 3 + 4, "3 GPUs and 4 MIG instances");
    for parent in [0usize, 2] {
        let p = &scenario.devices[parent];
        for (m, mig) in p.mig_instances.iter().enumerate() {
            let rm = for_device(&report.metrics, &mig.uuid);
            let id = [(semconv::HW_ID, mig.uuid.as_str())];
            let used = get(
                rm,
                semconv::METRIC_HW_GPU_MEMORY_USAGE,
                "By",
                "updowncounter",
                &id,
            );
            assert_eq!(used, mig.memory_used_bytes.at(0) as f64);
            let total = get(
                rm,
                semconv::METRIC_HW_GPU_MEMORY_LIMIT,
                "By",
                "updowncounter",
                &id,
            );
            assert_eq!(total, mig.memory_total_bytes as f64);
            let attrs =
                &points(metric(rm, semconv::METRIC_HW_GPU_MEMORY_USAGE).unwrap())[0].attributes;
            assert_eq!(
                str_attr(attrs, semconv::HW_PARENT).as_deref(),
                Some(p.uuid.as_str())
            );
            assert_eq!(
                str_attr(attrs, semconv::HW_NAME),
                Some(format!("gpu{parent}/mig{m}"))
            );
            assert_eq!(
                str_attr(attrs, semconv::HPCOTEL_GPU_INDEX),
                Some(parent.to_string())
            );
            assert_eq!(
                str_attr(attrs, semconv::HPCOTEL_GPU_MIG_PROFILE),
                Some(device::mig_profile(&mig.name))
            );
            assert_eq!(
                str_attr(attrs, semconv::HPCOTEL_GPU_MIG_GPU_INSTANCE_ID),
                Some(mig.gpu_instance_id.to_string())
            );
            assert!(
                metric(rm, semconv::METRIC_HW_GPU_UTILIZATION).is_none(),
                "NVML has no utilization per MIG instance"
            );
        }
    }
    let allocated = for_device(&report.metrics, &mig_uuid)
        .resource
        .as_ref()
        .unwrap();
    assert_eq!(
        str_attr(&allocated.attributes, semconv::K8S_POD_NAME).as_deref(),
        Some("infer-7")
    );
    assert_eq!(
        str_attr(&allocated.attributes, semconv::K8S_CONTAINER_NAME).as_deref(),
        Some("server")
    );
    // The parent GPU still reports its own utilization.
    let parent = for_device(&report.metrics, &scenario.devices[2].uuid);
    assert!(metric(parent, semconv::METRIC_HW_GPU_UTILIZATION).is_some());
}

fn holder(namespace: &str, name: &str, container: &str) -> PodRef {
    PodRef {
        namespace: namespace.into(),
        name: name.into(),
        container: Some(container.into()),
        uid: None,
    }
}

/// `key`'s string-array value in `attrs`.
fn str_array(attrs: &[KeyValue], key: &str) -> Option<Vec<String>> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::ArrayValue(a) => Some(
            a.values
                .iter()
                .map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("{key}: not a string: {other:?}"),
                })
                .collect(),
        ),
        other => panic!("{key}: not an array: {other:?}"),
    }
}

fn bool_attr(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value {
        Some(any_value::Value::BoolValue(b)) => Some(b),
        ref other => panic!("{key}: not a bool: {other:?}"),
    }
}

#[test]
fn a_gpu_several_pods_hold_names_them_all_and_none_alone() {
    let mut scenario = Scenario::with_gpus(3);
    scenario.devices[2].mig_instances = (0..2).map(|m| MigInstance::sample(2, m)).collect();
    let fake = fake_with(&scenario);
    let (gpu0, gpu1) = (&scenario.devices[0].uuid, &scenario.devices[1].uuid);
    let mig1 = &scenario.devices[2].mig_instances[1].uuid;
    let catalog = Catalog::new();
    catalog.set_gpu_allocations(HashMap::from([
        (
            gpu0.clone(),
            vec![
                holder("team-a", "one", "main"),
                holder("team-b", "two", "main"),
            ],
        ),
        // An index-strategy id of GPU 1, and a MIG index id `<gpu>:<mig>`.
        ("1".to_string(), vec![holder("ml", "solo", "main")]),
        ("2:1".to_string(), vec![holder("ml", "mig", "srv")]),
    ]));
    let mut s = sampler_for(&fake, catalog.clone());
    let report = one_report(&mut s);

    let res = |uuid: &str| {
        for_device(&report.metrics, uuid)
            .resource
            .clone()
            .unwrap()
            .attributes
    };
    let shared = res(gpu0);
    for key in [
        semconv::K8S_NAMESPACE_NAME,
        semconv::K8S_POD_NAME,
        semconv::K8S_CONTAINER_NAME,
        semconv::K8S_POD_UID,
    ] {
        assert_eq!(str_attr(&shared, key), None, "{key} on a shared GPU");
    }
    assert_eq!(bool_attr(&shared, semconv::HPCOTEL_GPU_SHARED), Some(true));
    assert_eq!(
        str_array(&shared, semconv::HPCOTEL_GPU_PODS),
        Some(vec!["team-a/one".to_string(), "team-b/two".to_string()])
    );
    assert_eq!(
        str_attr(&shared, semconv::HOST_NAME).as_deref(),
        Some("node-1")
    );

    let solo = res(gpu1);
    assert_eq!(
        str_attr(&solo, semconv::K8S_POD_NAME).as_deref(),
        Some("solo")
    );
    assert_eq!(bool_attr(&solo, semconv::HPCOTEL_GPU_SHARED), None);
    assert_eq!(str_array(&solo, semconv::HPCOTEL_GPU_PODS), None);
    assert_eq!(
        str_attr(&res(mig1), semconv::K8S_POD_NAME).as_deref(),
        Some("mig"),
        "MIG index id 2:1"
    );
    assert_eq!(
        str_attr(&res(&scenario.devices[2].uuid), semconv::K8S_POD_NAME),
        None
    );

    // Event logs of the shared GPU are attributed the same way.
    let identity = s
        .identities()
        .into_iter()
        .find(|i| &i.uuid == gpu0)
        .unwrap();
    let event = events::GpuEvent::Xid(Some(13));
    let logs = super::sampler::event_logs(&[], &catalog, &identity, &event, 1);
    let attrs = logs.resource.unwrap().attributes;
    assert_eq!(str_attr(&attrs, semconv::K8S_POD_NAME), None);
    assert_eq!(
        str_array(&attrs, semconv::HPCOTEL_GPU_PODS),
        Some(vec!["team-a/one".to_string(), "team-b/two".to_string()])
    );
}

#[test]
fn a_lost_gpu_reports_failed_and_logs_once_while_the_others_keep_sampling() {
    let scenario = Scenario::with_gpus(4);
    let fake = fake_with(&scenario);
    let lost = scenario.devices[3].uuid.clone();
    let mut s = sampler_for(&fake, Catalog::new());
    let first = one_report(&mut s);
    assert!(
        records(&first.logs).is_empty(),
        "no state change to log yet"
    );
    fake.update(|sc| sc.devices[3].lost = true);
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let r = one_report(&mut s);
        let rm = for_device(&r.metrics, &lost);
        let failed = get(
            rm,
            semconv::METRIC_HW_STATUS,
            "1",
            "updowncounter",
            &[(semconv::HW_ID, &lost), (semconv::HW_STATE, "failed")],
        );
        if failed == 1.0 {
            break r;
        }
        assert!(Instant::now() < deadline, "GPU 3 never reported failed");
    };
    // The report that notices the loss may still carry samples read just before it (the
    // scenario can change between a sample and the report); the next one has none.
    let after = one_report(&mut s);
    let gone = for_device(&after.metrics, &lost);
    assert!(
        metric(gone, semconv::METRIC_HW_POWER).is_none(),
        "no readings from a lost GPU"
    );
    for d in &scenario.devices[..3] {
        let rm = for_device(&report.metrics, &d.uuid);
        let p = get(
            rm,
            semconv::METRIC_HW_POWER,
            "W",
            "gauge",
            &[(semconv::HW_ID, &d.uuid)],
        );
        assert_eq!(
            p,
            d.power_mw.at(0) as f64 / 1000.0,
            "{} keeps sampling",
            d.uuid
        );
    }
    let logs = records(&report.logs);
    let lost_logs: Vec<_> = logs
        .iter()
        .filter(|r| r.event_name == "hpcotel.gpu.gpu_lost")
        .collect();
    assert_eq!(lost_logs.len(), 1, "one log for the loss");
    assert_eq!(lost_logs[0].severity_number, 21);
    assert_eq!(
        str_attr(&lost_logs[0].attributes, semconv::HW_ID).as_deref(),
        Some(lost.as_str())
    );
    // No repeat while it stays lost; a recovery log when it answers again.
    assert!(
        records(&one_report(&mut s).logs)
            .iter()
            .all(|r| r.event_name != "hpcotel.gpu.gpu_lost")
    );
    fake.update(|sc| sc.devices[3].lost = false);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = one_report(&mut s);
        if records(&r.logs)
            .iter()
            .any(|l| l.event_name == "hpcotel.gpu.gpu_recovered")
        {
            break;
        }
        assert!(Instant::now() < deadline, "GPU 3 never recovered");
    }
}

#[test]
fn unsupported_readings_are_left_out_not_asked_again_and_reprobed_later() {
    let mut scenario = Scenario::with_gpus(1);
    scenario.devices[0].unsupported = vec![
        "fan_speeds_percent".into(),
        "memory_temperature_c".into(),
        "encoder_utilization".into(),
        "power_instant".into(),
    ];
    let fake = fake_with(&scenario);
    let mut s = sampler_for(&fake, Catalog::new());
    let uuid = scenario.devices[0].uuid.clone();
    let id = [(semconv::HW_ID, uuid.as_str())];
    let r = one_report(&mut s);
    let rm = &r.metrics[0];
    assert!(metric(rm, semconv::METRIC_GPU_FAN_SPEED).is_none());
    let temps = points(metric(rm, semconv::METRIC_HW_TEMPERATURE).unwrap());
    assert_eq!(temps.len(), 1, "only the GPU sensor");
    let utils = points(metric(rm, semconv::METRIC_HW_GPU_UTILIZATION).unwrap());
    assert_eq!(utils.len(), 2, "general and decoder");
    let watts = scenario.devices[0].power_mw.at(0) as f64 / 1000.0;
    assert_eq!(
        get(rm, semconv::METRIC_HW_POWER, "W", "gauge", &id),
        watts,
        "power_usage is the fallback"
    );

    // The driver starts supporting everything (and power changes, which shows the reload).
    fake.update(|sc| {
        sc.devices[0].unsupported.clear();
        sc.devices[0].power_mw = Value::Const(333_000);
    });
    // Wait until the library has seen the change (it looks at the scenario file every 10 ms)
    // through a second handle on it, without reporting: reports are quick enough that waiting
    // with them would reach the re-probe at report 30 first.
    let probe = load_nvml(&config_for(&fake)).expect("the fake NVML loads again");
    let deadline = Instant::now() + WAIT;
    while probe.device_by_index(0).and_then(|d| d.power_usage()).ok() != Some(333_000) {
        assert!(
            Instant::now() < deadline,
            "the scenario change never showed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut reports = 1;
    loop {
        let r = one_report(&mut s);
        reports += 1;
        if get(&r.metrics[0], semconv::METRIC_HW_POWER, "W", "gauge", &id) == 333.0 {
            assert!(
                metric(&r.metrics[0], semconv::METRIC_GPU_FAN_SPEED).is_none(),
                "a refused reading is not asked again at every sample"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scenario change never showed"
        );
    }
    // ... but it is asked again now and then.
    let fans_back = (reports..=60).any(|_| {
        let r = one_report(&mut s);
        metric(&r.metrics[0], semconv::METRIC_GPU_FAN_SPEED).is_some()
    });
    assert!(fans_back, "fans re-probed within 60 reports");
}

#[test]
fn a_gpu_lost_before_it_was_identified_still_reports_failed() {
    let mut scenario = Scenario::with_gpus(3);
    scenario.devices[1].lost = true;
    let fake = fake_with(&scenario);
    let mut s = sampler_for(&fake, Catalog::new());
    assert_eq!(s.gpu_count(), 3);
    let r = one_report(&mut s);
    let rm = for_device(&r.metrics, "gpu1");
    let failed = [(semconv::HW_ID, "gpu1"), (semconv::HW_STATE, "failed")];
    assert_eq!(
        get(rm, semconv::METRIC_HW_STATUS, "1", "updowncounter", &failed),
        1.0
    );
    let logs = records(&r.logs);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].event_name, "hpcotel.gpu.gpu_lost");
    assert_eq!(logs[0].severity_number, 21);
    for d in [&scenario.devices[0], &scenario.devices[2]] {
        let ok = [(semconv::HW_ID, d.uuid.as_str()), (semconv::HW_STATE, "ok")];
        assert_eq!(
            get(
                for_device(&r.metrics, &d.uuid),
                semconv::METRIC_HW_STATUS,
                "1",
                "updowncounter",
                &ok
            ),
            1.0
        );
    }
}

#[test]
fn idle_processes_report_zero_and_mig_parents_do_not_double_count() {
    let mut scenario = Scenario::with_gpus(2);
    // GPU 0: a busy and an idle process; NVML keeps utilization samples for the busy one only.
    let mut idle = scenario.devices[0].processes[0].clone();
    idle.pid += 500;
    idle.sm_util = 0;
    scenario.devices[0].processes.push(idle.clone());
    // GPU 1: MIG on, with processes in its instances.
    scenario.devices[1].mig_instances = (0..2).map(|m| MigInstance::sample(1, m)).collect();
    let fake = fake_with(&scenario);
    let mut s = sampler_for(&fake, Catalog::new());
    let r = one_report(&mut s);
    let d0 = &scenario.devices[0];
    let rm = for_device(&r.metrics, &d0.uuid);
    let pid = idle.pid.to_string();
    let f = [
        (semconv::HW_ID, d0.uuid.as_str()),
        (semconv::PROCESS_PID, pid.as_str()),
    ];
    assert_eq!(
        get(
            rm,
            semconv::METRIC_GPU_PROCESS_UTILIZATION,
            "1",
            "gauge",
            &f
        ),
        0.0
    );
    let busy = d0.processes[0].pid.to_string();
    let f = [
        (semconv::HW_ID, d0.uuid.as_str()),
        (semconv::PROCESS_PID, busy.as_str()),
    ];
    assert_eq!(
        get(
            rm,
            semconv::METRIC_GPU_PROCESS_UTILIZATION,
            "1",
            "gauge",
            &f
        ),
        f64::from(d0.processes[0].sm_util) / 100.0
    );
    let parent = for_device(&r.metrics, &scenario.devices[1].uuid);
    assert!(
        metric(parent, semconv::METRIC_GPU_PROCESS_MEMORY_USAGE).is_none(),
        "with MIG on, processes are reported per instance only"
    );
    for mig in &scenario.devices[1].mig_instances {
        let rm = for_device(&r.metrics, &mig.uuid);
        for p in &mig.processes {
            let pid = p.pid.to_string();
            let f = [
                (semconv::HW_ID, mig.uuid.as_str()),
                (semconv::PROCESS_PID, pid.as_str()),
            ];
            assert_eq!(
                get(
                    rm,
                    semconv::METRIC_GPU_PROCESS_MEMORY_USAGE,
                    "By",
                    "updowncounter",
                    &f
                ),
                p.used_memory_bytes as f64
            );
        }
        assert!(
            metric(rm, semconv::METRIC_GPU_PROCESS_UTILIZATION).is_none(),
            "NVML has none per MIG instance"
        );
    }
}

fn records(logs: &[ResourceLogs]) -> Vec<LogRecord> {
    logs.iter()
        .flat_map(|l| &l.scope_logs)
        .flat_map(|s| s.log_records.clone())
        .collect()
}

struct Running {
    metrics: channel::Receiver,
    logs: channel::Receiver,
    stats: Arc<hpcotel_core::ComponentStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), hpcotel_core::ComponentError>>,
}

fn start(config: &Config, catalog: Catalog) -> Running {
    start_with(config, catalog, true)
}

/// Starts the receiver into a metrics pipeline and, when `logs`, a logs pipeline.
fn start_with(config: &Config, catalog: Catalog, logs_pipeline: bool) -> Running {
    let receiver = GpuReceiver::new(config, catalog);
    assert!(receiver.enabled(), "NVML loaded");
    let telemetry = Telemetry::default();
    let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("gpu", None));
    let (mtx, metrics) = channel::channel(1_000_000);
    let (ltx, logs) = channel::channel(1_000_000);
    let mut outputs = Outputs::new(stats.clone());
    outputs.add(Signal::Metrics, "metrics", mtx);
    if logs_pipeline {
        outputs.add(Signal::Logs, "logs", ltx);
    }
    let stop = CancellationToken::new();
    let ctx = ReceiverContext {
        id: ComponentId::new("gpu", None),
        outputs,
        shutdown: stop.clone(),
    };
    let task = tokio::spawn(Box::new(receiver).run(ctx));
    Running {
        metrics,
        logs,
        stats,
        stop,
        task,
    }
}

async fn next_metrics(r: &mut Running) -> Vec<ResourceMetrics> {
    match tokio::time::timeout(WAIT, r.metrics.recv()).await {
        Ok(Some(Batch::Metrics(m))) => m,
        other => panic!("expected a metrics report, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xid_79_and_48_become_logs_with_code_meaning_severity_gpu_and_pod() {
    let scenario = Scenario::with_gpus(8);
    let fake = fake_with(&scenario);
    let catalog = Catalog::new();
    let gpu2 = scenario.devices[2].uuid.clone();
    let gpu5 = scenario.devices[5].uuid.clone();
    catalog.set_gpu_allocations(HashMap::from([(
        gpu2.clone(),
        vec![PodRef {
            namespace: "research".into(),
            name: "trainer-0".into(),
            container: Some("pytorch".into()),
            uid: None,
        }],
    )]));
    let config = running_config(&fake, Duration::from_millis(200));
    let mut r = start(&config, catalog);
    // The watcher is registered once the first report is out; events pushed before
    // registration would still be delivered (the fake queues them), so this is not a sync.
    fake.push_event(Event::xid(2, 79));
    fake.push_event(Event::xid(5, 48));
    let mut got: Vec<(LogRecord, Vec<KeyValue>)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got
        .iter()
        .filter(|(l, _)| l.event_name == "hpcotel.gpu.xid")
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.logs.recv()).await {
            Ok(Some(Batch::Logs(ls))) => {
                for l in ls {
                    let res = l.resource.clone().unwrap_or_default().attributes;
                    for rec in records(&[l]) {
                        got.push((rec, res.clone()));
                    }
                }
            }
            other => panic!("expected two Xid logs, got {other:?} after {got:?}"),
        }
    }
    let xid = |code: &str| {
        got.iter()
            .find(|(l, _)| {
                str_attr(&l.attributes, semconv::HPCOTEL_GPU_XID).as_deref() == Some(code)
            })
            .unwrap_or_else(|| panic!("no Xid {code} log"))
    };
    let (l79, res79) = xid("79");
    assert_eq!(
        str_attr(&l79.attributes, semconv::HW_ID).as_deref(),
        Some(gpu2.as_str())
    );
    assert_eq!(l79.severity_number, 21);
    assert_eq!(l79.severity_text, "FATAL");
    assert_eq!(
        str_attr(&l79.attributes, semconv::HPCOTEL_GPU_XID_MEANING).as_deref(),
        Some("GPU has fallen off the bus")
    );
    assert!(
        str_attr(&l79.attributes, semconv::HPCOTEL_GPU_XID_ACTION)
            .unwrap()
            .contains("drain the node")
    );
    assert_eq!(
        str_attr(res79, semconv::K8S_POD_NAME).as_deref(),
        Some("trainer-0")
    );
    assert_eq!(
        str_attr(res79, semconv::K8S_NAMESPACE_NAME).as_deref(),
        Some("research")
    );
    assert_eq!(
        str_attr(res79, semconv::K8S_CONTAINER_NAME).as_deref(),
        Some("pytorch")
    );
    let (l48, res48) = xid("48");
    assert_eq!(
        str_attr(&l48.attributes, semconv::HW_ID).as_deref(),
        Some(gpu5.as_str())
    );
    assert_eq!(l48.severity_number, 17);
    assert_eq!(
        str_attr(&l48.attributes, semconv::HPCOTEL_GPU_XID_MEANING).as_deref(),
        Some("Double-bit (uncorrectable) ECC error")
    );
    assert_eq!(
        str_attr(res48, semconv::K8S_POD_NAME),
        None,
        "GPU 5 is not allocated"
    );
    // The counters follow in the reports.
    let deadline = Instant::now() + WAIT;
    loop {
        let m = next_metrics(&mut r).await;
        let rm = for_device(&m, &gpu2);
        if metric(rm, semconv::METRIC_GPU_XID_ERRORS).is_some() {
            let n = get(
                rm,
                semconv::METRIC_GPU_XID_ERRORS,
                "{error}",
                "counter",
                &[(semconv::HW_ID, &gpu2), (semconv::HPCOTEL_GPU_XID, "79")],
            );
            assert_eq!(n, 1.0);
            assert_eq!(
                get(
                    rm,
                    semconv::METRIC_GPU_XID_LAST,
                    "1",
                    "gauge",
                    &[(semconv::HW_ID, &gpu2)]
                ),
                79.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "no Xid counter for GPU 2");
    }
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300ms_power_spike_between_two_reports_survives_at_100ms_sampling() {
    let mut scenario = Scenario::with_gpus(2);
    // Power read k: 200 W except reads 12..=14 (300 ms at 100 ms sampling) at 650 W.
    let mut seq = vec![200_000u64; 12];
    seq.extend([650_000; 3]);
    seq.push(200_000);
    scenario.devices[1].power_mw = Value::Seq(seq);
    let fake = fake_with(&scenario);
    let config = running_config(&fake, Duration::from_secs(1));
    let uuid = scenario.devices[1].uuid.clone();
    let mut r = start(&config, Catalog::new());
    let id = [(semconv::HW_ID, uuid.as_str())];
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let m = next_metrics(&mut r).await;
        let rm = for_device(&m, &uuid);
        let last = get(rm, semconv::METRIC_HW_POWER, "W", "gauge", &id);
        let max = get(rm, semconv::METRIC_GPU_POWER_MAX, "W", "gauge", &id);
        let min = get(rm, semconv::METRIC_GPU_POWER_MIN, "W", "gauge", &id);
        seen.push((last, min, max));
        if max == 650.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spike never showed: {seen:?}"
        );
    }
    let (last, min, max) = *seen.last().unwrap();
    println!("power per report (last, min, max) in W: {seen:?}");
    assert_eq!((min, max), (200.0, 650.0), "the window holds both levels");
    assert_eq!(
        last, 200.0,
        "the last sample alone would have hidden the spike"
    );
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_no_logs_pipeline_events_still_count_and_nothing_is_refused() {
    let scenario = Scenario::with_gpus(2);
    let fake = fake_with(&scenario);
    let config = running_config(&fake, Duration::from_millis(200));
    let gpu = scenario.devices[1].uuid.clone();
    let mut r = start_with(&config, Catalog::new(), false);
    fake.push_event(Event::xid(1, 94));
    let deadline = Instant::now() + WAIT;
    loop {
        let m = next_metrics(&mut r).await;
        let rm = for_device(&m, &gpu);
        if metric(rm, semconv::METRIC_GPU_XID_ERRORS).is_some() {
            let f = [
                (semconv::HW_ID, gpu.as_str()),
                (semconv::HPCOTEL_GPU_XID, "94"),
            ];
            assert_eq!(
                get(rm, semconv::METRIC_GPU_XID_ERRORS, "{error}", "counter", &f),
                1.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "no Xid counter");
    }
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
    assert_eq!(
        r.stats.get(Signal::Logs, hpcotel_core::Counter::Refused),
        0,
        "no log was built to be refused"
    );
    assert!(r.logs.recv().await.is_none(), "nothing was sent as logs");
}

#[tokio::test]
async fn without_nvml_the_receiver_is_idle_and_stops_cleanly() {
    let config = Config {
        library_path: PathBuf::from("/nonexistent/libnvidia-ml.so.1"),
        pod_resources: podresources::Config {
            endpoint: PathBuf::from("/nonexistent/kubelet.sock"),
            ..Default::default()
        },
        ..Default::default()
    };
    let receiver = GpuReceiver::new(&config, Catalog::new());
    assert!(!receiver.enabled());
    let err = load_nvml(&config).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/libnvidia-ml.so.1"), "{err}");
    let telemetry = Telemetry::default();
    let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("gpu", None));
    let (tx, mut rx) = channel::channel(100);
    let mut outputs = Outputs::new(stats);
    outputs.add(Signal::Metrics, "metrics", tx);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(receiver).run(ReceiverContext {
        id: ComponentId::new("gpu", None),
        outputs,
        shutdown: stop.clone(),
    }));
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(rx.recv().await.is_none(), "nothing emitted, channel closed");
}

#[test]
fn config_rejects_too_fast_sampling_and_reports_shorter_than_samples() {
    let c = Config {
        sample_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let (key, msg) = c.validate().unwrap_err();
    assert_eq!(key, "sample_interval");
    assert!(msg.contains("at least 100ms"), "{msg}");
    let c = Config {
        sample_interval: Duration::from_secs(2),
        report_interval: Duration::from_secs(1),
        ..Default::default()
    };
    assert_eq!(c.validate().unwrap_err().0, "report_interval");
    let parsed: Config =
        serde_yaml::from_str("sample_interval: 100ms\nreport_interval: 1s\nevents: [xid]\n")
            .unwrap();
    assert_eq!(parsed.sample_interval, Duration::from_millis(100));
    assert_eq!(parsed.events, vec![EventKind::Xid]);
    let bad = serde_yaml::from_str::<Config>("sample_rate: 1s\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("sample_rate"), "{bad}");
}
