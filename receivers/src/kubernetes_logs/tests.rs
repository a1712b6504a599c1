//! Unit tests of the pieces; the whole receiver is tested in the real binary
//! (`collector/tests/container_logs.rs`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::checkpoint::{self, Entry, Offsets};
use super::tail::{Tailer, source};
use super::{Config, StartAt};

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
