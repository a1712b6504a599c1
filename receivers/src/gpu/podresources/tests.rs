use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hpcotel_core::{Catalog, PodRef};
use hpcotel_testkit::podresources::{
    FakeClaim, FakeClaimDevice, FakeContainer, FakeKubelet, FakePod, NVIDIA_GPU_SHARED,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::gpu::device::{self, Identity, MigIdentity};

/// The refresh interval of poller tests.
const INTERVAL: Duration = Duration::from_millis(200);
/// How long a test waits for something that should happen within an interval or two.
const DEADLINE: Duration = Duration::from_secs(5);

fn config(socket: &Path) -> Config {
    Config {
        endpoint: socket.to_path_buf(),
        refresh_interval: INTERVAL,
        ..Config::default()
    }
}

fn pod(namespace: &str, name: &str, container: &str) -> PodRef {
    PodRef {
        namespace: namespace.into(),
        name: name.into(),
        container: Some(container.into()),
        uid: None,
    }
}

fn container(name: &str, devices: &[(&str, &[&str])]) -> FakeContainer {
    FakeContainer {
        name: name.into(),
        devices: devices
            .iter()
            .map(|(resource, ids)| {
                (
                    resource.to_string(),
                    ids.iter().map(|id| id.to_string()).collect(),
                )
            })
            .collect(),
        claims: Vec::new(),
    }
}

fn fake_pod(namespace: &str, name: &str, containers: Vec<FakeContainer>) -> FakePod {
    FakePod {
        namespace: namespace.into(),
        name: name.into(),
        containers,
    }
}

/// Polls `cond` until it holds; panics with `what` after `within`.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn allocations(catalog: &Catalog) -> Allocations {
    catalog.snapshot().gpu_allocations.clone()
}

fn start_poller(
    config: Config,
    catalog: &Catalog,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Poller::new(config, catalog.clone()).run(shutdown.clone()));
    (shutdown, task)
}

#[tokio::test]
async fn list_maps_every_gpu_and_mig_device_to_its_pod_and_container() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "trainer-0", "main", &["GPU-a", "GPU-b"]),
            fake_pod(
                "ml",
                "inference-0",
                vec![container(
                    "server",
                    &[
                        ("nvidia.com/mig-1g.10gb", &["MIG-m"]),
                        ("example.com/nic", &["nic-0"]),
                    ],
                )],
            ),
            fake_pod(
                "ml",
                "pipeline-0",
                vec![
                    container("prep", &[("nvidia.com/gpu", &["GPU-c"])]),
                    container("train", &[("nvidia.com/gpu", &["GPU-d"])]),
                ],
            ),
            fake_pod(
                "infra",
                "net-agent",
                vec![container("agent", &[("example.com/nic", &["nic-1"])])],
            ),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    let want = HashMap::from([
        ("GPU-a".to_string(), vec![pod("ml", "trainer-0", "main")]),
        ("GPU-b".to_string(), vec![pod("ml", "trainer-0", "main")]),
        (
            "MIG-m".to_string(),
            vec![pod("ml", "inference-0", "server")],
        ),
        ("GPU-c".to_string(), vec![pod("ml", "pipeline-0", "prep")]),
        ("GPU-d".to_string(), vec![pod("ml", "pipeline-0", "train")]),
    ]);
    assert_eq!(got, want, "non-GPU resources (nic-0, nic-1) are ignored");
    assert_eq!(kubelet.list_calls(), 1);
    kubelet.stop().await;
}

fn holder(namespace: &str, name: &str, container: Option<&str>) -> PodRef {
    PodRef {
        namespace: namespace.into(),
        name: name.into(),
        container: container.map(str::to_string),
        uid: None,
    }
}

/// A physical GPU's identity as the sampler reads it.
fn gpu_identity(index: u32, uuid: &str, minor: Option<u32>) -> Identity {
    Identity {
        uuid: uuid.into(),
        model: "NVIDIA H100 80GB HBM3".into(),
        index,
        minor,
        pci_bus_id: String::new(),
        serial: None,
        mig: None,
    }
}

/// A MIG instance's identity: the `position`-th MIG device of GPU `gpu`.
fn mig_identity(gpu: &Identity, position: u32, uuid: &str) -> Identity {
    Identity {
        uuid: uuid.into(),
        minor: None,
        mig: Some(MigIdentity {
            parent_uuid: gpu.uuid.clone(),
            position,
            profile: "1g.10gb".into(),
            gpu_instance_id: None,
            compute_instance_id: None,
        }),
        ..gpu.clone()
    }
}

/// The pods the gpu receiver attributes `identity`'s data to, from `allocations`.
fn holders(allocations: &Allocations, identity: &Identity) -> Vec<PodRef> {
    let catalog = Catalog::new();
    catalog.set_gpu_allocations(allocations.clone());
    device::holders_of(&catalog.snapshot(), identity)
}

#[tokio::test]
async fn a_time_sliced_gpu_shared_by_two_pods_maps_to_both() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let shared = |ns: &str, name: &str, c: &str, ids: &[&str]| {
        FakePod::with_devices(ns, name, c, NVIDIA_GPU_SHARED, ids)
    };
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            // renameByDefault: true. Two replicas of GPU-s in two pods (listed out of
            // order), two of GPU-t in two containers of one pod; MIG-m's replicas in two pods.
            shared("team-b", "two", "main", &["GPU-s::1"]),
            shared("team-a", "one", "main", &["GPU-s::0", "GPU-t::0"]),
            fake_pod(
                "team-a",
                "one",
                vec![container("side", &[(NVIDIA_GPU_SHARED, &["GPU-t::1"])])],
            ),
            fake_pod(
                "team-a",
                "infer",
                vec![container(
                    "srv",
                    &[("nvidia.com/mig-1g.10gb.shared", &["MIG-m::0"])],
                )],
            ),
            fake_pod(
                "team-c",
                "infer",
                vec![container(
                    "srv",
                    &[("nvidia.com/mig-1g.10gb.shared", &["MIG-m::3"])],
                )],
            ),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    assert_eq!(
        got,
        HashMap::from([
            (
                "GPU-s".to_string(),
                vec![pod("team-a", "one", "main"), pod("team-b", "two", "main")]
            ),
            ("GPU-t".to_string(), vec![holder("team-a", "one", None)]),
            (
                "MIG-m".to_string(),
                vec![pod("team-a", "infer", "srv"), pod("team-c", "infer", "srv")]
            ),
        ]),
        "every holder, sorted; one pod through two containers: the pod without a container"
    );
    kubelet.stop().await;
}

#[tokio::test]
async fn a_shared_replica_held_by_one_pod_maps_to_that_pod() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_devices("ml", "solo", "main", NVIDIA_GPU_SHARED, &["GPU-u::0"]),
            // renameByDefault: false: the replicas stay `nvidia.com/gpu`.
            FakePod::with_gpus("ml", "plain", "main", &["GPU-v::7"]),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    assert_eq!(
        got,
        HashMap::from([
            ("GPU-u".to_string(), vec![pod("ml", "solo", "main")]),
            ("GPU-v".to_string(), vec![pod("ml", "plain", "main")]),
        ])
    );
    let gpu = gpu_identity(0, "GPU-u", None);
    assert_eq!(holders(&got, &gpu), [pod("ml", "solo", "main")]);
    kubelet.stop().await;
}

#[tokio::test]
async fn index_strategy_ids_resolve_to_the_device_with_that_nvml_index() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "trainer", "main", &["1"]),
            fake_pod(
                "ml",
                "infer",
                vec![container("srv", &[("nvidia.com/mig-1g.10gb", &["0:1"])])],
            ),
            FakePod::with_devices("ml", "a", "main", NVIDIA_GPU_SHARED, &["2::0"]),
            FakePod::with_devices("ops", "b", "main", NVIDIA_GPU_SHARED, &["2::1"]),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    let gpu0 = gpu_identity(0, "GPU-0", None);
    let gpu1 = gpu_identity(1, "GPU-1", None);
    let gpu2 = gpu_identity(2, "GPU-2", None);
    assert_eq!(holders(&got, &gpu1), [pod("ml", "trainer", "main")]);
    assert_eq!(
        holders(&got, &mig_identity(&gpu0, 1, "MIG-01")),
        [pod("ml", "infer", "srv")],
        "MIG `<gpu>:<mig>`"
    );
    assert_eq!(
        holders(&got, &gpu2),
        [pod("ml", "a", "main"), pod("ops", "b", "main")]
    );
    assert!(
        holders(&got, &gpu0).is_empty(),
        "GPU 0 itself is in MIG mode"
    );
    assert!(holders(&got, &mig_identity(&gpu0, 0, "MIG-00")).is_empty());
    kubelet.stop().await;
}

#[tokio::test]
async fn a_dra_allocated_gpu_maps_to_its_pod_by_minor_number() {
    let logs = Logs::global();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let other_driver = FakeClaimDevice {
        driver: "compute-domain.nvidia.com".into(),
        pool: "node-1".into(),
        device: "channel-0".into(),
        ..Default::default()
    };
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_dra_gpus(
                "ml",
                "trainer",
                "main",
                "node-1",
                "two-gpus",
                &["gpu-3", "gpu-0"],
            ),
            // One claim shared by two pods.
            FakePod::with_dra_gpus("ml", "a", "main", "node-1", "shared", &["gpu-1"]),
            FakePod::with_dra_gpus("ml", "b", "main", "node-1", "shared", &["gpu-1"]),
            // A MIG device: its name does not say which NVML MIG device it is.
            FakePod::with_dra_gpus(
                "ml",
                "mig",
                "main",
                "node-1",
                "mig",
                &["gpu-2-mig-1g10gb-19-0"],
            ),
            fake_pod(
                "ml",
                "imex",
                vec![FakeContainer {
                    name: "main".into(),
                    claims: vec![FakeClaim {
                        name: "domain".into(),
                        namespace: "ml".into(),
                        devices: vec![other_driver],
                    }],
                    ..Default::default()
                }],
            ),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    // NVIDIA's driver names a GPU by its device minor number, which need not be its index.
    let by_minor_3 = gpu_identity(0, "GPU-x", Some(3));
    let by_minor_0 = gpu_identity(1, "GPU-y", Some(0));
    assert_eq!(holders(&got, &by_minor_3), [pod("ml", "trainer", "main")]);
    assert_eq!(holders(&got, &by_minor_0), [pod("ml", "trainer", "main")]);
    assert_eq!(
        holders(&got, &gpu_identity(2, "GPU-z", Some(1))),
        [pod("ml", "a", "main"), pod("ml", "b", "main")]
    );
    assert!(
        holders(&got, &gpu_identity(3, "GPU-w", None)).is_empty(),
        "no minor number known: no DRA match"
    );
    let mut keys: Vec<_> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "gpu.nvidia.com/gpu-0",
            "gpu.nvidia.com/gpu-1",
            "gpu.nvidia.com/gpu-3"
        ],
        "the MIG device and the other driver's device are left out"
    );

    // The poller says once that the MIG device cannot be attributed.
    let catalog = Catalog::new();
    let (shutdown, task) = start_poller(config(&socket), &catalog);
    let before = kubelet.list_calls();
    wait_until("three more answers", DEADLINE, || {
        kubelet.list_calls() >= before + 3
    })
    .await;
    let unmatched = "DRA GPU device cannot be matched to an NVML device";
    assert_eq!(
        logs.count(&socket, "DEBUG", unmatched),
        1,
        "{:#?}",
        logs.lines(&socket)
    );
    let line = logs
        .lines(&socket)
        .into_iter()
        .find(|l| l.contains(unmatched))
        .unwrap();
    assert!(
        line.contains("gpu.nvidia.com/node-1/gpu-2-mig-1g10gb-19-0"),
        "{line}"
    );
    shutdown.cancel();
    task.await.unwrap();
    kubelet.stop().await;
}

#[tokio::test]
async fn resource_names_select_the_collected_resources() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![fake_pod(
            "ml",
            "p",
            vec![container(
                "c",
                &[
                    ("nvidia.com/gpu", &["GPU-a"]),
                    ("nvidia.com/mig-2g.20gb", &["MIG-b"]),
                    ("amd.com/gpu", &["0000:c1:00.0"]),
                ],
            )],
        )],
    )
    .await;
    let config = Config {
        resource_names: vec!["amd.com/gpu".into(), "nvidia.com/mig-2g*".into()],
        ..config(&socket)
    };

    let mut got: Vec<_> = list_allocations(&config)
        .await
        .unwrap()
        .into_keys()
        .collect();
    got.sort();

    assert_eq!(got, ["0000:c1:00.0", "MIG-b"]);
    kubelet.stop().await;
}

#[tokio::test]
async fn a_missing_socket_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");

    let err = list_allocations(&config(&socket)).await.unwrap_err();

    assert!(matches!(err, Error::NoSocket { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no kubelet PodResources socket at {}", socket.display())
    );
}

#[tokio::test]
async fn a_socket_nobody_serves_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    // A dropped fake leaves its socket file behind, like a crashed kubelet.
    drop(FakeKubelet::start(&socket, vec![]).await);
    wait_until("the socket to refuse connections", DEADLINE, || {
        std::os::unix::net::UnixStream::connect(&socket).is_err()
    })
    .await;

    let err = list_allocations(&config(&socket)).await.unwrap_err();

    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let chain = error_chain(&err);
    assert!(chain.contains(&socket.display().to_string()), "{chain}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    // Accepts connections and never speaks HTTP/2.
    let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let config = Config {
        timeout: Duration::from_millis(200),
        ..config(&socket)
    };

    let started = Instant::now();
    let err = list_allocations(&config).await.unwrap_err();

    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < DEADLINE);
}

#[tokio::test]
async fn poller_follows_a_kubelet_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let a = HashMap::from([("GPU-a".to_string(), vec![pod("ml", "old", "main")])]);
    let b = HashMap::from([("GPU-b".to_string(), vec![pod("ml", "new", "main")])]);
    let first = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus("ml", "old", "main", &["GPU-a"])],
    )
    .await;
    let catalog = Catalog::new();
    let (shutdown, task) = start_poller(config(&socket), &catalog);
    wait_until("allocation A", DEADLINE, || allocations(&catalog) == a).await;

    // kubelet restart: the socket is removed and recreated by a new server.
    first.stop().await;
    let second = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus("ml", "new", "main", &["GPU-b"])],
    )
    .await;
    let restarted = Instant::now();
    let mut seen_empty = false;
    wait_until("allocation B from the new kubelet", 5 * INTERVAL, || {
        let now = allocations(&catalog);
        seen_empty |= now.is_empty();
        now == b
    })
    .await;

    assert!(
        restarted.elapsed() <= 5 * INTERVAL,
        "took {:?}",
        restarted.elapsed()
    );
    assert!(!seen_empty, "a short restart does not blank the mapping");
    assert!(second.list_calls() >= 1);
    shutdown.cancel();
    task.await.unwrap();
    second.stop().await;
}

#[tokio::test]
async fn poller_clears_the_mapping_three_intervals_after_the_kubelet_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus("ml", "p", "main", &["GPU-a"])],
    )
    .await;
    let catalog = Catalog::new();
    let (shutdown, task) = start_poller(config(&socket), &catalog);
    wait_until("the allocation", DEADLINE, || {
        !allocations(&catalog).is_empty()
    })
    .await;

    let stopped = Instant::now();
    kubelet.stop().await;
    wait_until("the mapping to be cleared", DEADLINE, || {
        allocations(&catalog).is_empty()
    })
    .await;

    // Kept until 3 intervals after the last answer, which came at most one interval before the
    // stop: never cleared on the first failure.
    let kept = stopped.elapsed();
    assert!(kept >= INTERVAL * 3 / 2, "cleared after only {kept:?}");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn poller_picks_up_a_socket_that_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let catalog = Catalog::new();
    let (shutdown, task) = start_poller(config(&socket), &catalog);

    let kubelet = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus("ml", "p", "main", &["GPU-a"])],
    )
    .await;
    wait_until("the allocation", DEADLINE, || {
        allocations(&catalog).get("GPU-a") == Some(&vec![pod("ml", "p", "main")])
    })
    .await;

    kubelet.set_pods(vec![]);
    wait_until("the pod to leave", DEADLINE, || {
        allocations(&catalog).is_empty()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    kubelet.stop().await;
}

#[tokio::test]
async fn poller_stops_promptly_even_mid_call() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    // Accepts connections and never answers: the first call hangs until its timeout.
    let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let config = Config {
        refresh_interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(3600),
        ..config(&socket)
    };
    let (shutdown, task) = start_poller(config, &Catalog::new());

    shutdown.cancel();

    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the poller stops within a second")
        .unwrap();
}

/// Log lines of this module, from every test in this binary: `LEVEL target: message fields`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The process-wide capture: a global subscriber, because callsites first hit by other
    /// tests' threads would otherwise keep a cached "not interested" for a thread-local one.
    fn global() -> &'static Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_env_filter("hpcotel_receivers::gpu::podresources=debug")
                .with_ansi(false)
                .without_time()
                .with_writer(move || writer.clone())
                .try_init()
                .expect("no other global tracing subscriber in the receivers tests");
            logs
        })
    }

    /// The lines naming `socket` (every line of the poller does).
    fn lines(&self, socket: &Path) -> Vec<String> {
        let socket = socket.display().to_string();
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(&socket))
            .map(str::to_string)
            .collect()
    }

    fn count(&self, socket: &Path, level: &str, text: &str) -> usize {
        self.lines(socket)
            .iter()
            .filter(|l| l.trim_start().starts_with(level) && l.contains(text))
            .count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn poller_logs_each_change_once() {
    let logs = Logs::global();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let count = |level: &str, text: &str| logs.count(&socket, level, text);
    let lines = || logs.lines(&socket);
    let catalog = Catalog::new();
    let (shutdown, task) = start_poller(config(&socket), &catalog);

    // No socket: one info line, then quiet (debug) checks.
    wait_until("three checks without a socket", DEADLINE, || {
        count("DEBUG", "still unavailable") >= 2
    })
    .await;
    assert_eq!(
        count("INFO", "no kubelet PodResources socket at"),
        1,
        "{:#?}",
        lines()
    );
    assert_eq!(count("WARN", ""), 0, "{:#?}", lines());

    // Appears: one info line.
    let pods = || vec![FakePod::with_gpus("ml", "p", "main", &["GPU-a"])];
    let kubelet = FakeKubelet::start(&socket, pods()).await;
    wait_until("two more answers", DEADLINE, || kubelet.list_calls() >= 3).await;
    assert_eq!(
        count("INFO", "kubelet PodResources connected"),
        1,
        "{:#?}",
        lines()
    );

    // Goes away: one warning naming the socket, through the clearing and after.
    kubelet.stop().await;
    wait_until("the mapping to be cleared", DEADLINE, || {
        allocations(&catalog).is_empty()
    })
    .await;
    wait_until("a check after the clearing", DEADLINE, || {
        lines()
            .iter()
            .skip_while(|l| !l.contains("refresh intervals; GPU data carries no pod"))
            .any(|l| l.contains("still unavailable"))
    })
    .await;
    assert_eq!(count("WARN", ""), 1, "{:#?}", lines());

    // Comes back: one info line.
    let kubelet = FakeKubelet::start(&socket, pods()).await;
    wait_until("two more answers", DEADLINE, || kubelet.list_calls() >= 3).await;
    assert_eq!(count("INFO", "answering again"), 1, "{:#?}", lines());
    assert_eq!(count("WARN", ""), 1, "{:#?}", lines());

    shutdown.cancel();
    task.await.unwrap();
    kubelet.stop().await;
}

#[test]
fn config_defaults_and_validation() {
    let config: Config = serde_yaml::from_str("{}").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(
        config.endpoint,
        Path::new("/var/lib/kubelet/pod-resources/kubelet.sock")
    );
    assert_eq!(config.refresh_interval, Duration::from_secs(10));
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert!(config.matches("nvidia.com/gpu"));
    assert!(config.matches("nvidia.com/mig-3g.40gb"));
    assert!(config.matches("nvidia.com/gpu.shared"));
    assert!(config.matches("nvidia.com/mig-1g.10gb.shared"));
    assert!(!config.matches("nvidia.com/gpu.shared.extra"));
    assert!(
        !config.matches("nvidia.com/hostdev"),
        "the network operator's NICs"
    );
    assert!(!config.matches("example.com/nic"));

    let config: Config =
        serde_yaml::from_str("endpoint: /run/k.sock\nrefresh_interval: 30s\ntimeout: 1s\nresource_names: [nvidia.com/gpu]")
            .unwrap();
    assert_eq!(config.refresh_interval, Duration::from_secs(30));
    assert!(!config.matches("nvidia.com/mig-1g.10gb"));

    let err = serde_yaml::from_str::<Config>("refresh_interval: 0s").unwrap_err();
    assert!(err.to_string().contains("greater than 0"), "{err}");
    let err = serde_yaml::from_str::<Config>("refresh: 10s").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
