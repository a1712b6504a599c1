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
            config,
            files: HashMap::new(),
            checkpoint: offsets
                .files
                .into_iter()
                .map(|e| ((e.dev, e.ino), e))
                .collect(),
            scanned_once: false,
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
                None if first && self.config.start_at == StartAt::End => len,
                None => 0,
            };
            tracing::debug!(path = %path.display(), offset, "following log file");
            self.files.insert(
                id,
                Tracked {
                    source,
                    file,
                    offset,
                    pending: Vec::new(),
                    last_growth: Instant::now(),
                    format: None,
                    joiner: Joiner::new(self.config.max_record_size),
                    open_start: [None, None],
                    multiline: Multiline::new(
                        &self.config.multiline,
                        self.config.max_record_size,
                        self.config.flush_timeout,
                    ),
                    held_start: None,
                    fingerprint,
                    rotated: false,
                },
            );
        }
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
    let name = path.file_name()?.to_str()?;
    let prefix = format!("{name}.");
    let dir = std::fs::read_dir(path.parent()?).ok()?;
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = dir
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".gz"))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
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
