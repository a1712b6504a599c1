//! Following the pod log tree: finding `<root>/<namespace>_<pod>_<uid>/<container>/<n>.log`
//! files, reading what they gained, and following them through the kubelet's rotation.
//!
//! A file is known by its device and inode, and held open: kubelet's rotation renames
//! `0.log` to `0.log.<timestamp>` and the runtime reopens a new `0.log`, so the renamed file
//! (no longer at a current path) is read through its open handle to its end, then let go,
//! while the new inode at the path is read from its first byte. A file that shrinks below
//! what was read (copy-truncate) is read again from its start. A deleted file stays readable
//! through its handle until it is read to its end.
//!
//! The offset checkpointed for a file is where the first line not yet handed over starts:
//! before an unfinished partial line, before bytes without their newline.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{Entry, Offsets};
use super::config::{Config, StartAt};
use super::multiline::Multiline;
use super::parse::{Format, Joiner, Line, Record, Stream};

/// Bytes of a file's start kept as its fingerprint.
pub const FINGERPRINT_LEN: usize = 64;

/// Whose log a file is, from its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name`.
    pub pod: String,
    /// `k8s.pod.uid`.
    pub uid: String,
    /// `k8s.container.name`.
    pub container: String,
    /// `k8s.container.restart_count`: the file's name, `<n>.log`.
    pub restart: u32,
    /// `log.file.path`.
    pub path: PathBuf,
}

/// The source of `path` when it is `<root>/<ns>_<pod>_<uid>/<container>/<n>.log`.
pub fn source(root: &Path, path: &Path) -> Option<Source> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = rel.iter();
    let pod_dir = parts.next()?.to_str()?;
    let container = parts.next()?.to_str()?;
    let file = parts.next()?.to_str()?;
    if parts.next().is_some() {
        return None;
    }
    let restart: u32 = file.strip_suffix(".log")?.parse().ok()?;
    let mut p = pod_dir.splitn(3, '_');
    let (namespace, pod, uid) = (p.next()?, p.next()?, p.next()?);
    if namespace.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some(Source {
        namespace: namespace.into(),
        pod: pod.into(),
        uid: uid.into(),
        container: container.into(),
        restart,
        path: path.to_owned(),
    })
}

/// One record read, with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Whose.
    pub source: Source,
    /// What.
    pub record: Record,
}

/// What one step of reading found.
#[derive(Debug, Default)]
pub struct Step {
    /// Records, file by file, each file's in order.
    pub records: Vec<Read>,
    /// Whether a file has more to read right away.
    pub more: bool,
    /// Lines that were not in their file's format (sent as they are).
    pub unparsed: u64,
}

struct Tracked {
    source: Source,
    file: File,
    /// Bytes read from the file (consumed into lines or `pending`).
    offset: u64,
    /// Bytes after the last newline read.
    pending: Vec<u8>,
    /// When `pending` or the joiner last grew.
    last_growth: Instant,
    format: Option<Format>,
    joiner: Joiner,
    /// Where the open partial record of each stream started.
    open_start: [Option<u64>; 2],
    /// Stack traces and error blocks joined into one record.
    multiline: Multiline,
    /// Where the oldest record `multiline` holds started.
    held_start: Option<u64>,
    fingerprint: Vec<u8>,
    /// No longer at a current path (rotated or deleted): read to the end, then let go.
    rotated: bool,
}

impl Tracked {
    fn new(
        config: &Config,
        source: Source,
        file: File,
        offset: u64,
        fingerprint: Vec<u8>,
        rotated: bool,
    ) -> Tracked {
        Tracked {
            source,
            file,
            offset,
            pending: Vec::new(),
            last_growth: Instant::now(),
            format: None,
            joiner: Joiner::new(config.max_record_size),
            open_start: [None, None],
            multiline: Multiline::new(
                &config.multiline,
                config.max_record_size,
                config.flush_timeout,
            ),
            held_start: None,
            fingerprint,
            rotated,
        }
    }

    /// Where the first byte not yet handed over is.
    fn committed(&self) -> u64 {
        let unfinished = self.offset - self.pending.len() as u64;
        self.open_start
            .iter()
            .chain(std::iter::once(&self.held_start))
            .flatten()
            .copied()
            .fold(unfinished, u64::min)
    }
}

/// The files of one tree being followed.
pub struct Tailer {
    config: Config,
    files: HashMap<(u64, u64), Tracked>,
    checkpoint: HashMap<(u64, u64), Entry>,
    scanned_once: bool,
    /// No checkpoint at start: the node's first start, where `start_at` applies. With a
    /// checkpoint, a file it does not know appeared while the collector was down and is
    /// read from its first byte.
    fresh: bool,
    lost: Vec<Lost>,
}

/// A file gone before it was read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Whose it was.
    pub source: Source,
    /// Bytes it had been seen to hold past its checkpoint: at least this many were lost.
    pub bytes: u64,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("root", &self.config.root)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn fingerprint_of(file: &File) -> Vec<u8> {
    let mut buf = vec![0; FINGERPRINT_LEN];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    buf.truncate(n);
    buf
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tailer {
    /// A tailer of `config.root`, resuming from `offsets`.
    pub fn new(config: Config, offsets: Offsets) -> Tailer {
        Tailer {
            fresh: offsets.files.is_empty(),
            config,
            files: HashMap::new(),
            checkpoint: offsets
                .files
                .into_iter()
                .map(|e| ((e.dev, e.ino), e))
                .collect(),
            scanned_once: false,
            lost: Vec::new(),
        }
    }

    /// Files being followed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is being followed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Looks for new files and for files no longer at their path.
    pub fn scan(&mut self) {
        let mut current: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for path in log_files(&self.config.root) {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            current.insert((meta.dev(), meta.ino()), path);
        }
        for (id, t) in &mut self.files {
            if !t.rotated && current.get(id) != Some(&t.source.path) {
                t.rotated = true;
                tracing::debug!(path = %t.source.path.display(), "log file rotated or deleted; reading it to its end");
            }
        }
        let first = !self.scanned_once;
        self.scanned_once = true;
        for (id, path) in current {
            if self.files.contains_key(&id) {
                continue;
            }
            let Some(source) = source(&self.config.root, &path) else {
                continue;
            };
            if !self
                .config
                .selects(&source.namespace, &source.uid, &source.container)
            {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let fingerprint = fingerprint_of(&file);
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let resumed = self.checkpoint.remove(&id).filter(|e| {
                let known = e.fingerprint.len() / 2;
                let n = known.min(fingerprint.len());
                hex(&fingerprint[..n]) == e.fingerprint[..n * 2] && e.offset <= len
            });
            let offset = match resumed {
                Some(e) => e.offset,
                None if first && self.fresh && self.config.start_at == StartAt::End => len,
                None => 0,
            };
            tracing::debug!(path = %path.display(), offset, "following log file");
            let t = Tracked::new(&self.config, source, file, offset, fingerprint, false);
            self.files.insert(id, t);
        }
        if first {
            self.resume_rotated();
        }
    }

    /// At the first look: the files the checkpoint knows that are no longer at their path.
    /// One rotated while the collector was down (`0.log` renamed `0.log.<timestamp>`, not yet
    /// compressed) is read from its checkpoint to its end, then let go; one that is gone
    /// (deleted, or compressed) had bytes nobody read: it is reported lost, once.
    fn resume_rotated(&mut self) {
        for ((dev, ino), e) in std::mem::take(&mut self.checkpoint) {
            let Some(source) = source(&self.config.root, &e.path) else {
                continue;
            };
            if !self
                .config
                .selects(&source.namespace, &source.uid, &source.container)
            {
                continue;
            }
            let rotated = rotated_siblings(&e.path)
                .into_iter()
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == dev && m.ino() == ino));
            let opened = rotated.and_then(|p| {
                let file = File::open(&p).ok()?;
                let fingerprint = fingerprint_of(&file);
                let n = (e.fingerprint.len() / 2).min(fingerprint.len());
                (hex(&fingerprint[..n]) == e.fingerprint[..n * 2]).then_some((p, file, fingerprint))
            });
            match opened {
                Some((p, file, fingerprint)) => {
                    tracing::info!(path = %p.display(), offset = e.offset, "log file rotated while the collector was down; reading it to its end");
                    let t = Tracked::new(&self.config, source, file, e.offset, fingerprint, true);
                    self.files.insert((dev, ino), t);
                }
                None => {
                    let bytes = e.read.saturating_sub(e.offset);
                    tracing::warn!(
                        path = %e.path.display(), namespace = %source.namespace, pod = %source.pod,
                        offset = e.offset, lost_bytes_at_least = bytes,
                        "log file gone before it was read to its end (deleted or compressed while the collector was down)"
                    );
                    self.lost.push(Lost { source, bytes });
                }
            }
        }
    }

    /// Files found gone before they were read to their end since the last call.
    pub fn take_lost(&mut self) -> Vec<Lost> {
        std::mem::take(&mut self.lost)
    }

    /// Reads at most `read_chunk` bytes from each file; returns the records completed.
    pub fn step(&mut self, now: Instant, read_chunk: usize) -> Step {
        let mut step = Step::default();
        let flush_timeout = self.config.flush_timeout;
        let max = self.config.max_record_size;
        let mut done = Vec::new();
        let mut buf = vec![0u8; read_chunk];
        for (id, t) in &mut self.files {
            let len = t.file.metadata().map(|m| m.len()).unwrap_or(t.offset);
            if len < t.offset && !t.rotated {
                // copytruncate: what was written between our last read and the truncation
                // is in the copy (`<n>.log.<suffix>`, same first bytes): read it from there.
                let recovered = match copy_of(&t.source.path, &t.fingerprint, t.offset) {
                    Some(copy) => {
                        let mut rest = Vec::new();
                        let mut chunk = vec![0u8; 64 * 1024];
                        let mut at = t.offset;
                        while let Ok(n) = copy.read_at(&mut chunk, at) {
                            if n == 0 {
                                break;
                            }
                            rest.extend_from_slice(&chunk[..n]);
                            at += n as u64;
                        }
                        t.pending.extend_from_slice(&rest);
                        t.offset = at;
                        complete_lines(t, now, &mut step);
                        let tail = std::mem::take(&mut t.pending);
                        if !tail.is_empty() {
                            handle_line(t, at - tail.len() as u64, &tail, now, &mut step);
                        }
                        let flushed = t.joiner.flush();
                        t.open_start = [None, None];
                        for record in flushed {
                            emit(t, record, at, now, &mut step);
                        }
                        for record in t.multiline.flush_all() {
                            step.records.push(Read {
                                source: t.source.clone(),
                                record,
                            });
                        }
                        t.held_start = None;
                        rest.len()
                    }
                    None => 0,
                };
                tracing::info!(path = %t.source.path.display(), was = t.offset, now = len, recovered, "log file truncated (copy-truncate); reading it from its start");
                t.offset = 0;
                t.pending.clear();
                t.joiner = Joiner::new(max);
                t.open_start = [None, None];
                t.fingerprint = fingerprint_of(&t.file);
            }
            let n = if t.offset < len {
                t.file.read_at(&mut buf, t.offset).unwrap_or(0)
            } else {
                0
            };
            if t.fingerprint.len() < FINGERPRINT_LEN && n > 0 {
                t.fingerprint = fingerprint_of(&t.file);
            }
            if n > 0 {
                t.last_growth = now;
                if t.offset + (n as u64) < len {
                    step.more = true;
                }
            }
            t.pending.extend_from_slice(&buf[..n]);
            t.offset += n as u64;
            complete_lines(t, now, &mut step);
            // A line without its newline (or an unfinished partial line) that waited long
            // enough is sent as it is.
            let quiet = now.duration_since(t.last_growth) >= flush_timeout;
            if quiet && !t.pending.is_empty() {
                let line = std::mem::take(&mut t.pending);
                let line_start = t.offset - line.len() as u64;
                handle_line(t, line_start, &line, now, &mut step);
            }
            if quiet {
                let flushed = t.joiner.flush();
                let at = t.offset;
                t.open_start = [None, None];
                for record in flushed {
                    emit(t, record, at, now, &mut step);
                }
            }
            let due = if t.rotated && quiet {
                t.multiline.flush_all()
            } else {
                t.multiline.flush_due(now)
            };
            for record in due {
                step.records.push(Read {
                    source: t.source.clone(),
                    record,
                });
            }
            if t.multiline.held_lines() == 0 {
                t.held_start = None;
            }
            if t.rotated && t.offset >= len && quiet {
                done.push(*id);
            }
        }
        for id in done {
            if let Some(t) = self.files.remove(&id) {
                tracing::debug!(path = %t.source.path.display(), "log file read to its end; let go");
            }
        }
        step
    }

    /// The offsets to checkpoint: for each file, where its first byte not yet handed over is.
    pub fn offsets(&self) -> Offsets {
        let mut files: Vec<Entry> = self
            .files
            .iter()
            .map(|(&(dev, ino), t)| Entry {
                path: t.source.path.clone(),
                dev,
                ino,
                fingerprint: hex(&t.fingerprint),
                offset: t.committed(),
                read: t.offset,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Offsets { version: 1, files }
    }
}

/// Handles every complete line in `t.pending`, leaving the bytes after the last newline.
fn complete_lines(t: &mut Tracked, now: Instant, step: &mut Step) {
    let start = t.offset - t.pending.len() as u64;
    let pending = std::mem::take(&mut t.pending);
    let mut consumed = 0;
    while let Some(nl) = pending[consumed..].iter().position(|b| *b == b'\n') {
        handle_line(
            t,
            start + consumed as u64,
            &pending[consumed..consumed + nl],
            now,
            step,
        );
        consumed += nl + 1;
    }
    t.pending = pending[consumed..].to_vec();
}

/// Parses one line (without its newline) into the file's joiner.
fn handle_line(t: &mut Tracked, line_start: u64, line: &[u8], now: Instant, step: &mut Step) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let format = *t.format.get_or_insert_with(|| Format::detect(line));
    let parsed = match format.parse(line) {
        Ok(l) => l,
        Err(e) => {
            step.unparsed += 1;
            tracing::debug!(path = %t.source.path.display(), error = %e, "log line not in its file's format; sent as it is");
            Line {
                time_unix_nano: hpcotel_core::telemetry::unix_nanos(std::time::SystemTime::now()),
                stream: Stream::Stdout,
                partial: false,
                message: std::borrow::Cow::Borrowed(line),
            }
        }
    };
    let slot = parsed.stream as usize;
    if parsed.partial && t.open_start[slot].is_none() {
        t.open_start[slot] = Some(line_start);
    }
    if let Some(record) = t.joiner.push(parsed) {
        let start = t.open_start[slot].take().unwrap_or(line_start);
        emit(t, record, start, now, step);
    }
}

/// Passes a whole line (that started at `start`) through the multi-line combiner.
fn emit(t: &mut Tracked, record: Record, start: u64, now: Instant, step: &mut Step) {
    for record in t.multiline.push(record, now) {
        step.records.push(Read {
            source: t.source.clone(),
            record,
        });
    }
    if t.multiline.held_lines() == 0 {
        t.held_start = None;
    } else if t.held_start.is_none() {
        t.held_start = Some(start);
    }
}

/// The copy a copytruncate left of `path`: a sibling `<name>.<suffix>` (not compressed)
/// that starts with `fingerprint` and holds at least `offset` bytes.
fn copy_of(path: &Path, fingerprint: &[u8], offset: u64) -> Option<File> {
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = rotated_siblings(path)
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    // The newest copy first.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates.into_iter().find_map(|(_, p)| {
        let f = File::open(p).ok()?;
        let len = f.metadata().ok()?.len();
        (len >= offset && !fingerprint.is_empty() && fingerprint_of(&f).starts_with(fingerprint))
            .then_some(f)
    })
}

/// The uncompressed rotated copies of `path` (`<n>.log.<suffix>`, not `.gz`) beside it.
fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(name), Some(parent)) = (path.file_name().and_then(|n| n.to_str()), path.parent())
    else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(dir) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".gz"))
        })
        .map(|e| e.path())
        .collect()
}

/// `<root>/*/*/<n>.log`.
fn log_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(pods) = std::fs::read_dir(root) else {
        return out;
    };
    for pod in pods.flatten() {
        let Ok(containers) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        for container in containers.flatten() {
            let Ok(files) = std::fs::read_dir(container.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                if name
                    .strip_suffix(".log")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                {
                    out.push(file.path());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const T: &str = "2026-12-07T06:00:00.123456789Z";

    fn append(path: &Path, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for l in lines {
            writeln!(f, "{T} stdout F {l}").unwrap();
        }
    }

    fn bodies(step: &Step) -> Vec<String> {
        step.records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.record.message).into_owned())
            .collect()
    }

    fn config(root: &Path) -> Config {
        Config {
            root: root.to_owned(),
            start_at: StartAt::End,
            exclude_pod_uid: None,
            ..Config::default()
        }
    }

    #[test]
    fn a_file_rotated_while_down_is_read_to_its_end_and_one_gone_is_reported_lost() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let c = root.join("ml_rotated-0_uid-r/main");
        std::fs::create_dir_all(&c).unwrap();
        let log = c.join("0.log");
        append(&log, &["one", "two"]);
        let gone_dir = root.join("ml_gone-0_uid-g/main");
        std::fs::create_dir_all(&gone_dir).unwrap();
        let gone = gone_dir.join("0.log");
        append(&gone, &["g1"]);

        // The first run reads what is there, with `start_at: beginning` for this test.
        let mut first = Tailer::new(
            Config {
                start_at: StartAt::Beginning,
                ..config(root)
            },
            Offsets::default(),
        );
        first.scan();
        let step = first.step(Instant::now(), 1 << 20);
        assert_eq!(bodies(&step).len(), 3);
        // Written, not read: the collector is killed now.
        append(&log, &["three", "four"]);
        append(&gone, &["g2"]);
        let mut offsets = first.offsets();
        // As if "g2" had been seen (read) but not delivered.
        for e in &mut offsets.files {
            if e.path == gone {
                e.read = e.offset + 40;
            }
        }
        drop(first);

        // While it is down: kubelet rotates 0.log, the runtime opens a new one; the other
        // pod's file is deleted.
        std::fs::rename(&log, c.join("0.log.20261207-060001")).unwrap();
        append(&log, &["five"]);
        std::fs::remove_file(&gone).unwrap();

        let mut second = Tailer::new(config(root), offsets);
        second.scan();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(bodies(&second.step(Instant::now(), 1 << 20)));
        }
        got.sort();
        // The rotated copy from its checkpoint to its end; the new file from its first byte
        // (a checkpoint exists, so `start_at: end` does not apply to it).
        assert_eq!(got, ["five", "four", "three"]);
        let lost = second.take_lost();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!((lost[0].source.pod.as_str(), lost[0].bytes), ("gone-0", 40));
        assert!(second.take_lost().is_empty(), "reported once");
    }
}
