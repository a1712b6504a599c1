//! A write-ahead log: records appended to checksummed segment files in one directory, read
//! back in order by named consumers, each with its own cursor. The storage under the durable
//! export queue (issue 16): a record is an encoded OTLP request, acknowledged to its client
//! once appended (and, per [`Fsync`], synced); each exporter reads from its own cursor, so one
//! slow backend does not hold back another; a segment is deleted once every cursor is past it.
//!
//! **Framing.** A segment (`<number>.wal`, numbers counting up from 1) is a sequence of
//! frames: the magic `HWAL`, the payload's length (u32, little endian), a CRC-32 of the length
//! bytes and the payload (u32, little endian), then the payload. A frame that does not check
//! out (wrong magic, a length past the end, a checksum that does not match, zeros) is corrupt:
//! the reader skips to the next offset where a frame checks out, so one damaged record costs
//! that record, not the rest of its segment.
//!
//! **Recovery** ([`Wal::open`]): every segment is scanned. Corrupt bytes at the end of the
//! last segment are a torn write (a crash mid-append): they are cut off; corrupt bytes anywhere
//! else are skipped when read. Both are counted in [`Recovery`]. Opening never fails because
//! of what the files hold — only when the directory cannot be read or written.
//!
//! **Durability** ([`Fsync`]): `Always` syncs each append before it returns (nothing
//! acknowledged is lost on power loss); `Every(d)` syncs when [`Wal::sync_if_due`] finds `d`
//! elapsed since the last sync (at most `d` of acknowledged appends at risk on power loss; none
//! on a process crash, as the data is in the kernel's page cache once `append` returns).
//! Cursors are written on [`Wal::commit`] and synced with the segments; a cursor lost to power
//! loss moves back, so records are delivered again (at least once), never skipped.
//!
//! **Bounded**: the segments' total size never passes `max_bytes`; an append that would is
//! refused with [`Error::Full`], as is one the file system has no room for (the partial frame
//! is cut back off), so the caller can answer "retry later".

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod handle;
#[cfg(test)]
mod tests;

pub use handle::WalHandle;

/// The marker that opens every frame.
const MAGIC: [u8; 4] = *b"HWAL";
/// Magic, length and checksum.
const HEADER: usize = 12;
/// Default for [`Options::segment_bytes`]: 8 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
/// Largest payload a frame holds (the OTLP receivers' message limit is far below it).
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// Bytes a read takes from a segment at a time (more for a record larger than this).
const READ_CHUNK: u64 = 256 << 10;
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".wal";
/// Directory of cursor files, one per consumer.
const CURSORS: &str = "cursors";

/// Default for [`Fsync`]: every 200 ms.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(200);

/// When appended records are synced to stable storage. Default: every
/// [`DEFAULT_FSYNC_INTERVAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before each append returns.
    Always,
    /// When [`Wal::sync_if_due`] finds this long passed since the last sync.
    Every(Duration),
}

impl Default for Fsync {
    fn default() -> Self {
        Fsync::Every(DEFAULT_FSYNC_INTERVAL)
    }
}

/// How a log is laid out and bounded.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory holding the segments and cursors (created when missing).
    pub dir: PathBuf,
    /// Largest total size of the segments, bytes.
    pub max_bytes: u64,
    /// Size at which a segment is closed and the next one begun, bytes.
    pub segment_bytes: u64,
    /// When appends are synced.
    pub fsync: Fsync,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory or a file in it could not be read or written.
    #[error("write-ahead log {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log holds `used` of its `max` bytes, or the file system is full: retry later.
    #[error("write-ahead log is full: {used} of {max} bytes used{}", if *no_space { " (no space left on the file system)" } else { "" })]
    Full {
        /// Bytes the segments take.
        used: u64,
        /// The budget.
        max: u64,
        /// The file system refused the write (ENOSPC) before the budget was reached.
        no_space: bool,
    },
    /// A record larger than [`MAX_RECORD_BYTES`].
    #[error("record of {len} bytes is larger than the largest a log holds ({MAX_RECORD_BYTES})")]
    TooLarge {
        /// The record's length.
        len: usize,
    },
    /// A consumer the log was not opened with.
    #[error("write-ahead log has no consumer '{0}'")]
    UnknownConsumer(String),
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a frame begins: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the frame in the segment.
    pub offset: u64,
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Intact records in the log.
    pub records: u64,
    /// Records no consumer has read past (the most behind consumer's backlog).
    pub undelivered: u64,
    /// Bytes of torn write cut off the end of the last segment.
    pub truncated_bytes: u64,
    /// Corrupt bytes skipped inside the segments (each damaged record's frame, or more).
    pub corrupted_bytes: u64,
    /// Segments holding corrupt bytes, by number.
    pub corrupted_segments: Vec<u64>,
}

/// One record read back: its payload and the position after it (what to
/// [`commit`](Wal::commit) once it is delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The payload as appended (a slice of the read buffer).
    pub payload: bytes::Bytes,
    /// Where the next record begins.
    pub next: Position,
}

/// An open log.
#[derive(Debug)]
pub struct Wal {
    opts: Options,
    /// Segment number → length in bytes.
    segments: BTreeMap<u64, u64>,
    /// The segment appended to (the last one).
    active: File,
    active_id: u64,
    /// Consumer → where it reads next.
    cursors: HashMap<String, Position>,
    /// Consumer → its cursor file.
    cursor_files: HashMap<String, CursorFile>,
    last_sync: Instant,
    /// Appended or committed since the last sync.
    dirty: bool,
    /// Syncs done since opened.
    syncs: u64,
    /// Appends done since opened.
    appends: u64,
}

/// A sync prepared by [`Wal::begin_sync`]: files to sync, and how many appends they cover.
#[derive(Debug)]
pub struct SyncJob {
    files: Vec<(PathBuf, File)>,
    /// Every append up to this count is durable once [`run`](Self::run) returns.
    pub upto: u64,
}

impl SyncJob {
    /// Syncs the files (blocking: the caller is a thread of its own).
    pub fn run(self) -> Result<()> {
        for (path, f) in self.files {
            f.sync_data().map_err(io_error(&path))?;
        }
        Ok(())
    }
}

/// What scanning a frame at an offset found.
enum Frame {
    /// A record: its payload's range and the offset after it.
    Record {
        payload: std::ops::Range<usize>,
        next: usize,
    },
    /// Corrupt bytes up to the next frame that checks out (or the end).
    Corrupt { next: usize },
    /// The end of the data.
    End,
}

/// The frame at `at` of `buf`.
fn frame_at(buf: &[u8], at: usize) -> Frame {
    if at >= buf.len() {
        return Frame::End;
    }
    match check(buf, at) {
        Some((payload, next)) => Frame::Record { payload, next },
        None => {
            let next = (at + 1..buf.len())
                .find(|&p| buf[p..].starts_with(&MAGIC) && check(buf, p).is_some())
                .unwrap_or(buf.len());
            Frame::Corrupt { next }
        }
    }
}

/// The payload range and the end of the frame at `at`, when it checks out.
fn check(buf: &[u8], at: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let header = buf.get(at..at.checked_add(HEADER)?)?;
    if header[..4] != MAGIC {
        return None;
    }
    let len_bytes: [u8; 4] = header[4..8].try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let start = at + HEADER;
    let end = start.checked_add(len)?;
    let payload = buf.get(start..end)?;
    (len <= MAX_RECORD_BYTES && checksum(&len_bytes, payload) == crc).then_some((start..end, end))
}

fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// The frame of `payload`.
fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A segment's records and corrupt bytes, scanning from `from`.
struct Scan {
    /// (payload range, offset after it).
    records: Vec<(std::ops::Range<usize>, usize)>,
    /// Corrupt byte ranges.
    corrupt: Vec<std::ops::Range<usize>>,
}

fn scan(buf: &[u8], from: usize) -> Scan {
    let mut out = Scan {
        records: Vec::new(),
        corrupt: Vec::new(),
    };
    let mut at = from;
    loop {
        match frame_at(buf, at) {
            Frame::End => return out,
            Frame::Record { payload, next } => {
                out.records.push((payload, next));
                at = next;
            }
            Frame::Corrupt { next } => {
                out.corrupt.push(at..next);
                at = next;
            }
        }
    }
}

impl Wal {
    /// Opens (or creates) the log in `opts.dir` for `consumers`, recovering what it holds (see
    /// the module doc). A consumer new to the log starts at its oldest record.
    pub fn open(opts: Options, consumers: &[&str]) -> Result<(Wal, Recovery)> {
        let dir = opts.dir.clone();
        fs::create_dir_all(dir.join(CURSORS)).map_err(io_error(&dir))?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io_error(&entry.path()))?.len();
            segments.insert(id, len);
        }
        let mut recovery = Recovery::default();
        let last = segments.keys().next_back().copied();
        let mut records_per_segment: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (&id, len) in segments.iter_mut() {
            let path = segment_path(&dir, id);
            let buf = fs::read(&path).map_err(io_error(&path))?;
            let s = scan(&buf, 0);
            recovery.records += s.records.len() as u64;
            records_per_segment.insert(id, s.records.iter().map(|(_, next)| *next).collect());
            let mut corrupt: Vec<_> = s.corrupt;
            // A corrupt run reaching the end of the last segment is a torn append: cut it.
            if Some(id) == last
                && let Some(tail) = corrupt.last().filter(|r| r.end == buf.len()).cloned()
            {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                f.set_len(tail.start as u64).map_err(io_error(&path))?;
                f.sync_all().map_err(io_error(&path))?;
                recovery.truncated_bytes += (tail.end - tail.start) as u64;
                *len = tail.start as u64;
                corrupt.pop();
            }
            if !corrupt.is_empty() {
                recovery.corrupted_bytes += corrupt
                    .iter()
                    .map(|r| (r.end - r.start) as u64)
                    .sum::<u64>();
                recovery.corrupted_segments.push(id);
            }
        }
        let oldest = segments.keys().next().copied().unwrap_or(1);
        let mut cursors = HashMap::new();
        let mut cursor_files = HashMap::new();
        for &name in consumers {
            let (file, at) = CursorFile::open(&dir, name)?;
            cursor_files.insert(name.to_owned(), file);
            let at = at.filter(|p| p.segment >= oldest).unwrap_or(Position {
                segment: oldest,
                offset: 0,
            });
            // Past what the segment holds now (records appended, read and committed, then
            // lost to power loss before their sync): read on from its end.
            let at = match segments.get(&at.segment) {
                Some(&len) => Position {
                    segment: at.segment,
                    offset: at.offset.min(len),
                },
                None => match segments.iter().next_back() {
                    Some((&id, &len)) if at.segment > id => Position {
                        segment: id,
                        offset: len,
                    },
                    _ => at,
                },
            };
            cursors.insert(name.to_owned(), at);
        }
        recovery.undelivered = cursors
            .values()
            .map(|c| {
                records_per_segment
                    .iter()
                    .map(|(&id, ends)| match id.cmp(&c.segment) {
                        std::cmp::Ordering::Less => 0,
                        std::cmp::Ordering::Equal => {
                            ends.iter().filter(|&&e| e as u64 > c.offset).count() as u64
                        }
                        std::cmp::Ordering::Greater => ends.len() as u64,
                    })
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        let active_id = last.unwrap_or(1);
        let path = segment_path(&dir, active_id);
        let active = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        segments.entry(active_id).or_insert(0);
        let mut wal = Wal {
            opts,
            segments,
            active,
            active_id,
            cursors,
            cursor_files,
            last_sync: Instant::now(),
            dirty: false,
            syncs: 0,
            appends: 0,
        };
        sync_dir(&dir)?;
        wal.delete_consumed()?;
        Ok((wal, recovery))
    }

    /// Bytes the segments take.
    pub fn used_bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// Appends `payload`; synced before it returns under [`Fsync::Always`]. Refused with
    /// [`Error::Full`] when it would pass `max_bytes` or the file system has no room.
    pub fn append(&mut self, payload: &[u8]) -> Result<Position> {
        let at = self.append_unsynced(payload)?;
        if self.opts.fsync == Fsync::Always {
            self.sync()?;
        }
        Ok(at)
    }

    /// [`append`](Self::append) without the sync, whatever the policy: the caller syncs (the
    /// handle's thread syncs a group of appends once).
    pub(crate) fn append_unsynced(&mut self, payload: &[u8]) -> Result<Position> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(Error::TooLarge { len: payload.len() });
        }
        let frame = encode_frame(payload);
        let used = self.used_bytes();
        if used + frame.len() as u64 > self.opts.max_bytes {
            return Err(Error::Full {
                used,
                max: self.opts.max_bytes,
                no_space: false,
            });
        }
        let len = self.segments.get(&self.active_id).copied().unwrap_or(0);
        if len > 0 && len + frame.len() as u64 > self.opts.segment_bytes {
            self.roll()?;
        }
        let at = Position {
            segment: self.active_id,
            offset: self.segments.get(&self.active_id).copied().unwrap_or(0),
        };
        let path = segment_path(&self.opts.dir, self.active_id);
        if let Err(e) = self.active.write_all(&frame) {
            // Cut the partial frame back off, so the file ends on a frame boundary.
            let _ = self.active.set_len(at.offset);
            if e.kind() == io::ErrorKind::StorageFull {
                return Err(Error::Full {
                    used,
                    max: self.opts.max_bytes,
                    no_space: true,
                });
            }
            return Err(Error::Io { path, source: e });
        }
        self.segments
            .insert(self.active_id, at.offset + frame.len() as u64);
        self.dirty = true;
        self.appends += 1;
        Ok(at)
    }

    /// Closes the active segment and begins the next.
    fn roll(&mut self) -> Result<()> {
        let path = segment_path(&self.opts.dir, self.active_id);
        self.active.sync_all().map_err(io_error(&path))?;
        self.active_id += 1;
        let path = segment_path(&self.opts.dir, self.active_id);
        self.active = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        self.segments.insert(self.active_id, 0);
        sync_dir(&self.opts.dir)
    }

    /// Appends written so far (a count that only grows), for [`SyncJob::upto`].
    pub fn appended(&self) -> u64 {
        self.appends
    }

    /// What a sync now has to do, to run without holding the log (handles cloned): the
    /// active segment and the cursor files written since the last one.
    pub fn begin_sync(&mut self) -> Result<SyncJob> {
        let path = segment_path(&self.opts.dir, self.active_id);
        let mut files = vec![(
            path.clone(),
            self.active.try_clone().map_err(io_error(&path))?,
        )];
        for c in self.cursor_files.values_mut().filter(|c| c.dirty) {
            files.push((
                c.path.clone(),
                c.file.try_clone().map_err(io_error(&c.path))?,
            ));
            c.dirty = false;
        }
        self.dirty = false;
        Ok(SyncJob {
            files,
            upto: self.appends,
        })
    }

    /// Records that a [`SyncJob`] ran.
    pub fn finish_sync(&mut self) {
        self.last_sync = Instant::now();
        self.syncs += 1;
    }

    /// Syncs the active segment and the cursors to stable storage.
    pub fn sync(&mut self) -> Result<()> {
        let path = segment_path(&self.opts.dir, self.active_id);
        self.active.sync_data().map_err(io_error(&path))?;
        for c in self.cursor_files.values_mut() {
            c.sync()?;
        }
        self.last_sync = Instant::now();
        self.dirty = false;
        self.syncs += 1;
        Ok(())
    }

    /// Syncs when [`Fsync::Every`]'s interval has passed since the last sync and something was
    /// appended or committed since; returns whether it synced.
    pub fn sync_if_due(&mut self) -> Result<bool> {
        match self.opts.fsync {
            Fsync::Every(d) if self.dirty && self.last_sync.elapsed() >= d => {
                self.sync()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Up to `max` records `consumer` has not committed past, in order, with the position
    /// after each. Corrupt bytes are skipped.
    pub fn read(&self, consumer: &str, max: usize) -> Result<Vec<Record>> {
        let at = *self
            .cursors
            .get(consumer)
            .ok_or_else(|| Error::UnknownConsumer(consumer.to_owned()))?;
        self.read_at(at, max)
    }

    /// Up to `max` records from `at` (a [`Record::next`], or a cursor), for a consumer that
    /// reads ahead of what it has committed.
    pub fn read_at(&self, mut at: Position, max: usize) -> Result<Vec<Record>> {
        // A position in a segment deleted since (every consumer is past it) reads on from the
        // oldest one kept.
        if let Some((&oldest, _)) = self.segments.iter().next()
            && at.segment < oldest
        {
            at = Position {
                segment: oldest,
                offset: 0,
            };
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&len) = self.segments.get(&at.segment) else {
                break;
            };
            if at.offset >= len {
                if at.segment == self.active_id {
                    break;
                }
                at = Position {
                    segment: at.segment + 1,
                    offset: 0,
                };
                continue;
            }
            let path = segment_path(&self.opts.dir, at.segment);
            let opened;
            let file = if at.segment == self.active_id {
                &self.active
            } else {
                opened = File::open(&path).map_err(io_error(&path))?;
                &opened
            };
            let remaining = len - at.offset;
            let mut chunk = READ_CHUNK.min(remaining);
            loop {
                let mut buf = vec![0; chunk as usize];
                file.read_exact_at(&mut buf, at.offset)
                    .map_err(io_error(&path))?;
                let buf = bytes::Bytes::from(buf);
                let partial = chunk < remaining;
                let s = scan(&buf, 0);
                // A chunk's end may cut a frame: what reads as corrupt up to the end of a
                // partial chunk is not known yet.
                let known = match s.corrupt.last() {
                    Some(run) if partial && run.end == buf.len() => run.start,
                    _ => buf.len(),
                };
                let before = out.len();
                for (payload, next) in s.records.into_iter().take(max - out.len()) {
                    out.push(Record {
                        payload: buf.slice(payload),
                        next: Position {
                            segment: at.segment,
                            offset: at.offset + next as u64,
                        },
                    });
                }
                if known == 0 && out.len() == before && partial {
                    // Not one whole frame in the chunk (a large record): read more.
                    chunk = (chunk * 2).min(remaining);
                    continue;
                }
                at = match out.last() {
                    // `max` reached inside this chunk.
                    Some(r) if out.len() == max && r.next.segment == at.segment => r.next,
                    // Everything known read (what is left of it was corrupt).
                    _ => Position {
                        segment: at.segment,
                        offset: at.offset + known as u64,
                    },
                };
                break;
            }
        }
        // A read that ends on a segment's end moves on to the next, so that committing it
        // lets the segment go.
        if let Some(last) = out.last_mut() {
            let seg_len = self.segments.get(&last.next.segment).copied().unwrap_or(0);
            if last.next.offset >= seg_len && last.next.segment != self.active_id {
                last.next = Position {
                    segment: last.next.segment + 1,
                    offset: 0,
                };
            }
        }
        Ok(out)
    }

    /// Records that `consumer` has delivered everything before `next` (a [`Record::next`]);
    /// segments every consumer is past are deleted.
    pub fn commit(&mut self, consumer: &str, next: Position) -> Result<()> {
        let cursor = self
            .cursors
            .get_mut(consumer)
            .ok_or_else(|| Error::UnknownConsumer(consumer.to_owned()))?;
        if next <= *cursor {
            return Ok(());
        }
        *cursor = next;
        // Written now (a process crash keeps it), synced with the next sync: a cursor lost
        // to power loss only means delivering again.
        if let Some(f) = self.cursor_files.get_mut(consumer) {
            f.write(next)?;
        }
        self.dirty = true;
        self.delete_consumed()
    }

    /// Syncs done since the log was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Where `consumer` reads next.
    pub fn cursor(&self, consumer: &str) -> Option<Position> {
        self.cursors.get(consumer).copied()
    }

    /// Deletes the segments before the oldest cursor's. When every cursor is at the end of
    /// the active segment (and it holds a quarter of a segment or more), a new one is begun
    /// first, so a log read to its end frees its space.
    fn delete_consumed(&mut self) -> Result<()> {
        let active_len = self.segments.get(&self.active_id).copied().unwrap_or(0);
        let end = Position {
            segment: self.active_id,
            offset: active_len,
        };
        // (Not for a few bytes: a log kept drained would create a file per commit.)
        if active_len >= self.opts.segment_bytes / 4
            && !self.cursors.is_empty()
            && self.cursors.values().all(|c| *c >= end)
        {
            self.roll()?;
            let start = Position {
                segment: self.active_id,
                offset: 0,
            };
            for (name, cursor) in self.cursors.iter_mut() {
                *cursor = start;
                if let Some(f) = self.cursor_files.get_mut(name) {
                    f.write(start)?;
                }
            }
        }
        let Some(oldest) = self.cursors.values().map(|c| c.segment).min() else {
            return Ok(());
        };
        let done: Vec<u64> = self
            .segments
            .range(..oldest.min(self.active_id))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            let path = segment_path(&self.opts.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path, source: e }),
            }
            self.segments.remove(&id);
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

/// Cursor files: segment and offset (u64 little endian each) and a CRC-32 of both.
fn cursor_path(dir: &Path, consumer: &str) -> PathBuf {
    // Consumer names are component ids (`otlp/backend`): keep them one path segment.
    let safe: String = consumer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '~'
            }
        })
        .collect();
    dir.join(CURSORS).join(safe)
}

/// A consumer's cursor file: two slots of (sequence, segment, offset, CRC-32 of the three),
/// written in turn in place, so a torn write spoils only the newer slot and the older one
/// stands (records delivered again, never skipped); no rename, so no forced writeback.
#[derive(Debug)]
struct CursorFile {
    path: PathBuf,
    file: File,
    seq: u64,
    /// Written since the last sync.
    dirty: bool,
}

const CURSOR_SLOT: usize = 28;

impl CursorFile {
    /// Opens (or creates) `consumer`'s cursor file; the newest valid slot's position.
    fn open(dir: &Path, consumer: &str) -> Result<(CursorFile, Option<Position>)> {
        let path = cursor_path(dir, consumer);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = vec![0u8; 2 * CURSOR_SLOT];
        let n = file.read_at(&mut bytes, 0).map_err(io_error(&path))?;
        bytes.truncate(n);
        let best = bytes
            .chunks_exact(CURSOR_SLOT)
            .filter_map(|slot| {
                let (data, crc) = slot.split_at(24);
                (crc32fast::hash(data).to_le_bytes() == *crc).then(|| {
                    let word = |i: usize| {
                        u64::from_le_bytes(data[i..i + 8].try_into().unwrap_or_default())
                    };
                    (
                        word(0),
                        Position {
                            segment: word(8),
                            offset: word(16),
                        },
                    )
                })
            })
            .max_by_key(|(seq, _)| *seq);
        let seq = best.map_or(0, |(seq, _)| seq);
        Ok((
            CursorFile {
                path,
                file,
                seq,
                dirty: false,
            },
            best.map(|(_, at)| at),
        ))
    }

    fn write(&mut self, at: Position) -> Result<()> {
        self.seq += 1;
        let mut data = Vec::with_capacity(CURSOR_SLOT);
        data.extend_from_slice(&self.seq.to_le_bytes());
        data.extend_from_slice(&at.segment.to_le_bytes());
        data.extend_from_slice(&at.offset.to_le_bytes());
        let crc = crc32fast::hash(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        let slot = (self.seq % 2) as usize * CURSOR_SLOT;
        self.file
            .write_all_at(&data, slot as u64)
            .map_err(io_error(&self.path))?;
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if self.dirty {
            self.file.sync_data().map_err(io_error(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}
