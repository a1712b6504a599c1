//! Unit tests of the pieces; the whole receiver is tested in the real binary
//! (`collector/tests/container_logs.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hpcotel_core::catalog::PodMeta;
use hpcotel_core::{Catalog, PodRef};

use super::checkpoint::{self, Entry, Offsets};
use super::rate::{PodClock, RATE_LIMIT_WARN_INTERVAL, RateLimiter, TokenBucket, Warning};
use super::select::{LOGS_ANNOTATION, LabelSelector, PodGate, Verdict};
use super::tail::{Source, Tailer, source};
use super::{
    Config, DEFAULT_POD_METADATA_WAIT, DEFAULT_RATE_LIMIT_BURST,
    DEFAULT_RATE_LIMIT_BYTES_PER_SECOND, DEFAULT_RATE_LIMIT_LINES_PER_SECOND, RateLimitConfig,
    StartAt,
};

#[test]
fn paths_name_the_pod_and_container_and_others_are_ignored() {
    let root = Path::new("/var/log/pods");
    let s = source(
        root,
        Path::new("/var/log/pods/ml_trainer-0_1b2c-3d/main/4.log"),
    )
    .unwrap();
    assert_eq!(
        (
            s.namespace.as_str(),
            s.pod.as_str(),
            s.uid.as_str(),
            s.container.as_str(),
            s.restart
        ),
        ("ml", "trainer-0", "1b2c-3d", "main", 4)
    );
    for other in [
        "/var/log/pods/ml_trainer-0_uid/main/0.log.20261207-060000",
        "/var/log/pods/ml_trainer-0/main/0.log",
        "/var/log/pods/ml_trainer-0_uid/main/x.log",
        "/var/log/containers/trainer-0_ml_main-abc.log",
    ] {
        assert!(source(root, Path::new(other)).is_none(), "{other}");
    }
}

#[test]
fn selection_by_namespace_container_and_own_pod() {
    let c = Config {
        include_namespaces: vec!["ml".into(), "web".into()],
        exclude_namespaces: vec!["web".into()],
        exclude_containers: vec!["istio-proxy".into()],
        exclude_pod_uid: Some("me".into()),
        ..Config::default()
    };
    assert!(c.selects("ml", "uid", "main"));
    assert!(!c.selects("kube-system", "uid", "main"));
    assert!(!c.selects("web", "uid", "main"));
    assert!(!c.selects("ml", "uid", "istio-proxy"));
    assert!(!c.selects("ml", "me", "main"));
}

#[test]
fn the_checkpoint_round_trips_and_a_broken_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(checkpoint::load(dir.path()), Offsets::default());
    let o = Offsets {
        version: 1,
        files: vec![Entry {
            path: "/var/log/pods/a_b_c/d/0.log".into(),
            dev: 1,
            ino: 2,
            fingerprint: "00ff".into(),
            offset: 42,
            read: 50,
        }],
    };
    checkpoint::store(dir.path(), &o).unwrap();
    assert_eq!(checkpoint::load(dir.path()), o);
    std::fs::write(dir.path().join(checkpoint::FILE_NAME), b"{not json").unwrap();
    assert_eq!(checkpoint::load(dir.path()), Offsets::default());
}

#[test]
fn the_committed_offset_stays_before_an_unfinished_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let file_dir = dir.path().join("ml_p_u").join("main");
    std::fs::create_dir_all(&file_dir).unwrap();
    let path = file_dir.join("0.log");
    let full = "2026-12-07T06:00:00Z stdout F done\n";
    let part = "2026-12-07T06:00:00Z stdout P half\n";
    let mut f = std::fs::File::create(&path).unwrap();
    write!(f, "{full}{part}").unwrap();
    let config = Config {
        root: dir.path().to_owned(),
        start_at: StartAt::Beginning,
        flush_timeout: Duration::from_secs(3600),
        exclude_pod_uid: None,
        ..Config::default()
    };
    let mut t = Tailer::new(config.clone(), Offsets::default());
    t.scan();
    let step = t.step(Instant::now(), 1 << 16);
    assert_eq!(step.records.len(), 1, "the full line only");
    let offsets = t.offsets();
    assert_eq!(
        offsets.files[0].offset,
        full.len() as u64,
        "before the partial line"
    );
    // A restart from that checkpoint reads the partial line again, then its end.
    writeln!(f, "2026-12-07T06:00:00Z stdout F -way").unwrap();
    let mut t = Tailer::new(config, offsets);
    t.scan();
    let step = t.step(Instant::now(), 1 << 16);
    let bodies: Vec<_> = step
        .records
        .iter()
        .map(|r| r.record.message.clone())
        .collect();
    assert_eq!(bodies, vec![b"half-way".to_vec()]);
}

fn pod_meta(uid: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodMeta {
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    PodMeta {
        pod: PodRef {
            namespace: "ml".into(),
            name: format!("pod-{uid}"),
            container: None,
            uid: Some(uid.into()),
        },
        labels: map(labels),
        annotations: map(annotations),
        ..PodMeta::default()
    }
}

fn selector(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn label_selectors_parse_as_kubectl_reads_them_and_print_back() {
    let labels: BTreeMap<String, String> = [("app", "trainer"), ("tier", "gpu"), ("team", "ml")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (s, matches, printed) in [
        ("app=trainer", true, "app=trainer"),
        ("app==trainer", true, "app=trainer"),
        ("app = trainer , tier=gpu", true, "app=trainer,tier=gpu"),
        ("app=trainer,tier=cpu", false, "app=trainer,tier=cpu"),
        ("app!=trainer", false, "app!=trainer"),
        ("canary!=true", true, "canary!=true"),
        ("tier in (cpu, gpu)", true, "tier in (cpu,gpu)"),
        ("tier notin (cpu,gpu)", false, "tier notin (cpu,gpu)"),
        ("canary notin (true)", true, "canary notin (true)"),
        ("canary in (true)", false, "canary in (true)"),
        ("team", true, "team"),
        ("!team", false, "!team"),
        (
            "!canary,app.kubernetes.io/name!=hpcotel",
            true,
            "!canary,app.kubernetes.io/name!=hpcotel",
        ),
        ("app=", false, "app="),
    ] {
        let sel = selector(s);
        assert_eq!(sel.matches(&labels), matches, "{s}");
        assert_eq!(sel.to_string(), printed, "{s}");
        assert_eq!(selector(printed), sel, "{s} prints back as itself");
    }
    for bad in [
        "",
        "app=trainer,",
        "a b",
        "tier in cpu",
        "tier in (cpu",
        "tier in (cpu))",
        "tier in ((cpu))",
        "tier has (cpu)",
        "tier in (cpu) x",
        "replicas>3",
        "!",
        "app=has space",
        "/app=x",
    ] {
        let e = LabelSelector::parse(bad).expect_err(bad);
        assert!(
            e.to_string().starts_with("bad label selector"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn the_selection_matrix_of_pods_the_catalog_knows() {
    let c = Config {
        include_pod_labels: vec![selector("team=ml"), selector("app in (web,api)")],
        exclude_pod_labels: vec![selector("logging=off"), selector("canary")],
        exclude_pod_uid: None,
        ..Config::default()
    };
    let hpcotel = [("app.kubernetes.io/name", "hpcotel"), ("team", "ml")];
    let opt_out = [(LOGS_ANNOTATION, "false")];
    for (what, labels, annotations, read) in [
        ("included by its team", &[("team", "ml")][..], &[][..], true),
        ("included by its app", &[("app", "api")], &[], true),
        ("matches no include", &[("team", "web")], &[], false),
        ("no labels at all", &[], &[], false),
        (
            "excluded by a label",
            &[("team", "ml"), ("logging", "off")],
            &[],
            false,
        ),
        (
            "excluded by a key",
            &[("team", "ml"), ("canary", "")],
            &[],
            false,
        ),
        ("opted out", &[("team", "ml")], &opt_out[..], false),
        (
            "opted out, any case",
            &[("team", "ml")],
            &[(LOGS_ANNOTATION, " FALSE ")],
            false,
        ),
        (
            "annotated true",
            &[("team", "ml")],
            &[(LOGS_ANNOTATION, "true")],
            true,
        ),
        ("another hpcotel", &hpcotel[..], &[], false),
    ] {
        assert_eq!(
            c.selects_pod(&pod_meta("u", labels, annotations)),
            read,
            "{what}"
        );
    }
    let c = Config {
        exclude_hpcotel_pods: false,
        exclude_pod_uid: None,
        ..Config::default()
    };
    assert!(
        c.selects_pod(&pod_meta("u", &hpcotel, &[])),
        "exclude_hpcotel_pods: false"
    );
    assert!(
        c.selects_pod(&pod_meta("u", &[], &[])),
        "no rules: every pod"
    );
    assert!(
        !c.selects_pod(&pod_meta("u", &[], &opt_out)),
        "the opt-out always holds"
    );
    assert!(c.selects_unknown_pod(), "unknown and no include list: read");
    let c = Config {
        include_pod_labels: vec![selector("team=ml")],
        ..c
    };
    assert!(
        !c.selects_unknown_pod(),
        "unknown cannot match an include list"
    );
}

#[test]
fn containers_are_included_and_excluded_by_name() {
    let c = Config {
        include_containers: vec!["main".into(), "worker".into()],
        exclude_containers: vec!["worker".into()],
        exclude_pod_uid: None,
        ..Config::default()
    };
    assert!(c.selects("ml", "uid", "main"));
    assert!(!c.selects("ml", "uid", "worker"), "exclusion wins");
    assert!(!c.selects("ml", "uid", "istio-proxy"), "not included");
    assert!(
        c.selects_path("ml", "uid", None),
        "a pod's path, no container"
    );
}

#[test]
fn an_unknown_pod_is_waited_for_then_read_without_its_metadata() {
    let catalog = Catalog::new();
    let gate = PodGate::new(catalog.clone(), Duration::from_secs(5));
    let t0 = Instant::now();
    let decide = |p: &PodMeta| p.pod.name.clone();
    assert_eq!(
        gate.pod("new", t0, decide),
        Verdict::Unknown,
        "the Catalog holds no pod at all (no kubernetes receiver): nothing to wait for"
    );
    catalog.update(|s| {
        s.pods.insert("other".into(), pod_meta("other", &[], &[]));
    });
    assert_eq!(gate.pod("new", t0, decide), Verdict::Waiting);
    let later = t0 + Duration::from_millis(4_999);
    assert_eq!(
        gate.pod("new", later, decide),
        Verdict::Waiting,
        "counted from first seen"
    );
    assert_eq!(
        gate.pod("new", t0 + Duration::from_secs(5), decide),
        Verdict::Unknown
    );
    assert_eq!(
        gate.pod("other", t0, decide),
        Verdict::Known("pod-other".to_owned())
    );
    // Seen at start: its wait counts from then.
    gate.seen_at("early", t0);
    assert_eq!(
        gate.pod("early", t0 + Duration::from_secs(6), decide),
        Verdict::Unknown
    );
    // Known after a while: decided on its metadata.
    catalog.update(|s| {
        s.pods.insert("new".into(), pod_meta("new", &[], &[]));
    });
    assert_eq!(
        gate.pod("new", t0, decide),
        Verdict::Known("pod-new".to_owned())
    );
    gate.prune(t0 + Duration::from_secs(3600));
}

#[test]
fn selects_waits_for_an_unknown_pod_and_honours_its_opt_out_once_known() {
    let catalog = Catalog::new();
    catalog.update(|s| {
        s.pods.insert("other".into(), pod_meta("other", &[], &[]));
    });
    let mut c = Config {
        exclude_pod_uid: None,
        ..Config::default()
    };
    c.gate = PodGate::new(catalog.clone(), Duration::from_secs(3600));
    assert!(!c.selects("ml", "quiet", "main"), "unknown: waited for");
    assert!(!c.selects("ml", "loud", "main"));
    catalog.update(|s| {
        s.pods.insert("quiet".into(), pod_meta("quiet", &[], &[]));
        s.pods.insert(
            "loud".into(),
            pod_meta("loud", &[], &[(LOGS_ANNOTATION, "false")]),
        );
    });
    assert!(c.selects("ml", "quiet", "main"), "known: read");
    assert!(
        !c.selects("ml", "loud", "main"),
        "known, opted out: never read"
    );
    let snapshot = catalog.snapshot();
    assert!(c.still_selects(&snapshot, "quiet"));
    assert!(
        !c.still_selects(&snapshot, "loud"),
        "read before, opted out now"
    );
    assert!(
        c.still_selects(&snapshot, "unknown"),
        "read unknown: goes on"
    );
}

#[test]
fn a_token_bucket_passes_its_burst_then_exactly_its_rate() {
    let take = |b: &mut TokenBucket| {
        let ok = b.has(1);
        if ok {
            b.take(1);
        }
        ok
    };
    let mut b = TokenBucket::new(100, Duration::from_secs(1));
    let passed = (0..1000).filter(|_| take(&mut b)).count();
    assert_eq!(passed, 100, "the burst: one second's worth");
    b.refill(Duration::from_millis(9));
    assert!(!b.has(1), "0.9 of a token");
    b.refill(Duration::from_millis(1));
    assert!(take(&mut b));
    // 2.5 s later: 250 tokens refilled, but the bucket holds 100.
    b.refill(Duration::from_millis(2_500));
    assert_eq!(b.available(), 100);
    // Over 10 s of steady demand, exactly burst + rate × time passes.
    let mut b = TokenBucket::new(100, Duration::from_secs(1));
    let mut passed = 0;
    for ms in 0..=10_000u64 {
        if ms > 0 {
            b.refill(Duration::from_millis(1));
        }
        while take(&mut b) {
            passed += 1;
        }
    }
    assert_eq!(passed, 100 + 100 * 10);
    // A cost above the whole bucket passes when it is full, and empties it.
    let mut bytes = TokenBucket::new(1_000, Duration::from_secs(1));
    assert!(bytes.has(1_000_000));
    bytes.take(1_000_000);
    assert!(!bytes.has(1));
}

#[test]
fn a_pods_clock_runs_on_its_records_times_and_on_the_wall_when_they_stand_still() {
    const S: u64 = 1_000_000_000;
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let written = 1_796_623_200 * S;
    let mut c = PodClock::new(written, t0);
    // Live: records stamped as they are read.
    assert_eq!(c.advance(written + S / 2, t0 + ms(500)), ms(500));
    // A backlog read in an instant: its own timestamps count.
    assert_eq!(c.advance(written + 10 * S, t0 + ms(500)), ms(9_500));
    // After 30 s of a stalled pipeline, the backlog still goes by its timestamps: the stall
    // is no credit.
    let t1 = t0 + Duration::from_secs(30);
    assert_eq!(c.advance(written + 10 * S + 1_000_000, t1), ms(1));
    // Timestamps that stand still (or lag): the wall clock since the previous record.
    assert_eq!(c.advance(written, t1 + ms(1_000)), ms(1_000));
    assert_eq!(c.advance(written, t1 + ms(1_000)), Duration::ZERO);
}

fn src(pod: &str) -> Source {
    Source {
        namespace: "ml".into(),
        pod: pod.into(),
        uid: format!("uid-{pod}"),
        container: "main".into(),
        restart: 0,
        path: format!("/var/log/pods/ml_{pod}_uid-{pod}/main/0.log").into(),
    }
}

#[test]
fn rate_limits_are_per_pod_and_warn_once_per_interval() {
    let config = RateLimitConfig {
        lines_per_second: 10,
        bytes_per_second: 0,
        burst: Duration::from_secs(1),
    };
    let mut limiter = RateLimiter::new(&config);
    let t0 = Instant::now();
    let (chatty, quiet) = (src("chatty"), src("quiet"));
    // Records stamped with one time: the wall clock alone refills.
    let admitted = |l: &mut RateLimiter, s: &Source, n: usize, now: Instant| {
        (0..n).filter(|_| l.admit(s, 0, 10, now)).count()
    };
    assert_eq!(admitted(&mut limiter, &chatty, 50, t0), 10);
    assert_eq!(admitted(&mut limiter, &quiet, 5, t0), 5, "its own bucket");
    let w = limiter.due_warnings(t0);
    assert_eq!(
        w,
        vec![Warning {
            namespace: "ml".into(),
            pod: "chatty".into(),
            uid: "uid-chatty".into(),
            dropped: 40,
            total: 40,
        }],
        "one warning, for the pod that dropped, at once"
    );
    // Dropping on: no warning before the interval is over, then one with the sum.
    for s in 1..60u64 {
        let now = t0 + Duration::from_secs(s);
        assert_eq!(admitted(&mut limiter, &chatty, 20, now), 10);
        assert!(limiter.due_warnings(now).is_empty(), "at {s} s");
    }
    let at = t0 + RATE_LIMIT_WARN_INTERVAL;
    let w = limiter.due_warnings(at);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].dropped, w[0].total), (59 * 10, 40 + 59 * 10));
    assert!(limiter.due_warnings(at).is_empty());
    // Quiet long enough, both are forgotten (and start with full buckets).
    limiter.prune(at + RATE_LIMIT_WARN_INTERVAL);
    assert!(limiter.is_empty(), "{}", limiter.len());
    // Bytes: 100 bytes/s, burst 1 s.
    let mut limiter = RateLimiter::new(&RateLimitConfig {
        lines_per_second: 0,
        bytes_per_second: 100,
        burst: Duration::from_secs(1),
    });
    assert!(limiter.admit(&chatty, 0, 60, t0));
    assert!(!limiter.admit(&chatty, 0, 60, t0), "40 bytes left");
    assert!(limiter.admit(&chatty, 0, 40, t0));
    let later = t0 + Duration::from_secs(1);
    assert!(limiter.admit(&chatty, 0, 1_000, later), "full: passes");
    let off = RateLimiter::new(&RateLimitConfig {
        lines_per_second: 0,
        bytes_per_second: 0,
        burst: Duration::from_secs(1),
    });
    assert!(off.is_off());
}

#[test]
fn a_backlog_passes_at_the_rate_it_was_written_and_a_chatty_one_is_cut_to_the_limit() {
    const MS: u64 = 1_000_000;
    let mut limiter = RateLimiter::new(&RateLimitConfig {
        lines_per_second: 1_000,
        bytes_per_second: 0,
        burst: Duration::from_secs(1),
    });
    let now = Instant::now();
    let base = 1_796_623_200_000 * MS;
    let (calm, chatty) = (src("calm"), src("chatty"));
    // 30 s written at 900 lines/s (under the limit), all read in one instant after an
    // outage: every line passes.
    let calm_passed = (0..27_000u64)
        .filter(|i| limiter.admit(&calm, base + i * 1_000 * MS / 900, 100, now))
        .count();
    assert_eq!(calm_passed, 27_000);
    // 10 s written at 5000 lines/s, read in one instant: the burst plus 1000 a second of its
    // own time.
    let chatty_passed = (0..50_000u64)
        .filter(|i| limiter.admit(&chatty, base + i * MS / 5, 100, now))
        .count();
    assert!(
        (10_900..=11_000).contains(&chatty_passed),
        "{chatty_passed}: about 1000 + 1000 × 10"
    );
}

#[test]
fn selection_and_rate_limit_keys_parse_with_their_defaults() {
    let c: Config = serde_yaml::from_str(
        r#"
include_containers: [main]
include_pod_labels: ["team=ml", "app in (web, api)"]
exclude_pod_labels: ["logging=off"]
exclude_hpcotel_pods: false
pod_metadata_wait: 10s
rate_limit: { lines_per_second: 500, burst: 500ms }
"#,
    )
    .unwrap();
    assert_eq!(c.include_containers, ["main"]);
    assert_eq!(
        c.include_pod_labels,
        [selector("team=ml"), selector("app in (web,api)")]
    );
    assert_eq!(c.exclude_pod_labels, [selector("logging=off")]);
    assert!(!c.exclude_hpcotel_pods);
    assert_eq!(c.pod_metadata_wait, Duration::from_secs(10));
    assert_eq!(c.rate_limit.lines_per_second, 500);
    assert_eq!(
        c.rate_limit.bytes_per_second,
        DEFAULT_RATE_LIMIT_BYTES_PER_SECOND
    );
    assert_eq!(c.rate_limit.burst, Duration::from_millis(500));
    let d = Config::default();
    assert!(d.exclude_hpcotel_pods);
    assert_eq!(d.pod_metadata_wait, DEFAULT_POD_METADATA_WAIT);
    assert_eq!(
        d.rate_limit.lines_per_second,
        DEFAULT_RATE_LIMIT_LINES_PER_SECOND
    );
    assert_eq!(d.rate_limit.burst, DEFAULT_RATE_LIMIT_BURST);
    // Printed back (print-config) and read again: the same.
    let printed = serde_yaml::to_string(&c).unwrap();
    assert!(printed.contains("app in (web,api)"), "{printed}");
    let again: Config = serde_yaml::from_str(&printed).unwrap();
    assert_eq!(again, c);
    for (bad, says) in [
        ("exclude_pod_labels: ['tier in (a']", "bad label selector"),
        ("include_pod_labels: {app: trainer}", "expected a sequence"),
        ("rate_limit: { burst: 0s }", "expected more than 0s"),
        ("rate_limit: { lines: 5 }", "unknown field"),
    ] {
        let e = serde_yaml::from_str::<Config>(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}
