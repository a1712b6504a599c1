//! A kubelet pod-log tree for the container-log tests: paths, CRI lines written at a pace,
//! and counts of what came back.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hpcotel_testkit::sink::Received;

/// The runtime's timestamp the tests write on every CRI line.
pub const T: &str = "2026-12-07T06:00:00.123456789Z";

/// `<root>/<ns>_<pod>_uid-<pod>/<container>/<n>.log`, its directory created.
pub fn log_path(root: &Path, ns: &str, pod: &str, container: &str, n: u32) -> PathBuf {
    let dir = root.join(format!("{ns}_{pod}_uid-{pod}")).join(container);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{n}.log"))
}

/// Appends `bytes` to `path` (created when missing), as a container runtime does.
pub fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The CRI line of `<tag>-<i>`, stamped now (the runtime's clock), as a container writing
/// it now would be: the per-pod rate limit goes by these times.
pub fn cri_line(tag: &str, i: usize) -> String {
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
    format!("{now} stdout F {tag}-{i}\n")
}

/// Writes `n` CRI lines `<tag>-<i>` to `path`, `per_second` a second, calling `rotate`
/// after every `rotate_every` lines.
pub fn write_lines(
    path: &Path,
    tag: &str,
    n: usize,
    per_second: usize,
    rotate_every: usize,
    rotate: &dyn Fn(&Path, usize),
) {
    let started = Instant::now();
    for i in 0..n {
        if i > 0 && i % rotate_every == 0 {
            rotate(path, i);
        }
        append(path, cri_line(tag, i).as_bytes());
        // Pace the writer (not synchronisation: the rate under test).
        let due = started + Duration::from_secs_f64((i + 1) as f64 / per_second as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Lines `<tag>-<i>` received, counted per i.
pub fn counts(r: &Received, tag: &str) -> HashMap<usize, usize> {
    let prefix = format!("{tag}-");
    let mut c = HashMap::new();
    for b in r.log_bodies() {
        if let Some(i) = b.strip_prefix(&prefix).and_then(|i| i.parse().ok()) {
            *c.entry(i).or_insert(0) += 1;
        }
    }
    c
}

/// Lines of `0..n` never received, and the extra deliveries of lines received twice or more.
pub fn missing_and_repeated(r: &Received, tag: &str, n: usize) -> (Vec<usize>, usize) {
    let c = counts(r, tag);
    let missing = (0..n).filter(|i| !c.contains_key(i)).collect();
    let repeated = c.values().map(|k| k.saturating_sub(1)).sum();
    (missing, repeated)
}
