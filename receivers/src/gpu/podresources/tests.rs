use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hpcotel_core::{Catalog, PodRef};
use hpcotel_testkit::podresources::{FakeContainer, FakeKubelet, FakePod};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

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

fn allocations(catalog: &Catalog) -> HashMap<String, PodRef> {
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
        ("GPU-a".to_string(), pod("ml", "trainer-0", "main")),
        ("GPU-b".to_string(), pod("ml", "trainer-0", "main")),
        ("MIG-m".to_string(), pod("ml", "inference-0", "server")),
        ("GPU-c".to_string(), pod("ml", "pipeline-0", "prep")),
        ("GPU-d".to_string(), pod("ml", "pipeline-0", "train")),
    ]);
    assert_eq!(got, want, "non-GPU resources (nic-0, nic-1) are ignored");
    assert_eq!(kubelet.list_calls(), 1);
    kubelet.stop().await;
}

#[tokio::test]
async fn shared_gpu_replicas_map_to_their_uuid_unless_several_pods_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            // Time-slicing: two replicas of GPU-s in two pods, two of GPU-t in one pod.
            FakePod::with_gpus("a", "one", "main", &["GPU-s::0", "GPU-t::0"]),
            FakePod::with_gpus("b", "two", "main", &["GPU-s::1"]),
            fake_pod(
                "a",
                "one",
                vec![container("side", &[("nvidia.com/gpu", &["GPU-t::1"])])],
            ),
        ],
    )
    .await;

    let got = list_allocations(&config(&socket)).await.unwrap();

    let t = PodRef {
        container: None,
        ..pod("a", "one", "")
    };
    assert_eq!(
        got,
        HashMap::from([("GPU-t".to_string(), t)]),
        "GPU-s is shared by two pods: attributed to neither"
    );
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
    let a = HashMap::from([("GPU-a".to_string(), pod("ml", "old", "main"))]);
    let b = HashMap::from([("GPU-b".to_string(), pod("ml", "new", "main"))]);
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
        allocations(&catalog).get("GPU-a") == Some(&pod("ml", "p", "main"))
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
    assert!(!config.matches("nvidia.com/gpu.shared"));
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
