//! Multi-line records: consecutive lines of one container stream that form one stack trace
//! or error block — a Python traceback, a JVM exception, a Go panic, a PyTorch CUDA error, an
//! NCCL warning with its error path — joined into one record, so a stack trace is one log
//! record and not fifty.
//!
//! [`Multiline`] comes after [`Joiner`](super::parse::Joiner): it takes whole lines
//! ([`Record`]s) and returns records. A joined record's message is its lines separated by
//! `\n`, its time the first line's, its `truncated` the sum of its lines' (see Limits). Each
//! stream (stdout, stderr) has its own block, so what one writes never splits or joins the
//! other's.
//!
//! # What is held
//!
//! A line that cannot start a block is returned by [`Multiline::push`] at once: ordinary
//! lines are never delayed. A line that can start one (`Traceback (most recent call last):`,
//! `panic: ...`, `java.lang.IllegalStateException: ...`) is held until the next line of its
//! stream shows whether the block goes on, or until [`Multiline::flush_due`] finds that no
//! line came for the flush timeout (the receiver's `flush_timeout`, the one partial lines
//! wait for too; so the last lines of a dying container are never held back), or
//! [`Multiline::flush_all`] at shutdown. A block ends at the first line that does
//! not continue it; that line is then handled as a fresh line (returned, or the start of the
//! next block). A blank line inside a block is held on approval: it joins only if the next
//! line continues the block, otherwise it is returned as its own record after the block,
//! as it came. Starting is generous (a held line costs only a short delay), continuing is
//! strict (joining unrelated lines is worse than not joining).
//!
//! Lines prefixed the way torchrun tags a rank's output (`[rank3]: `, `[default0]:`) are
//! matched without the prefix, and a block only continues with lines of the same prefix.
//!
//! # Built-in rules (all on by default; each can be turned off)
//!
//! - `python`: `Traceback (most recent call last):` starts a block; lines that start with
//!   whitespace (`  File "...", line N, in f`, code lines, `^^^^` markers) continue it; the
//!   first non-indented line that looks like an exception (`ValueError: bad`, `KeyboardInterrupt`,
//!   `torch.OutOfMemoryError: ...`: a dotted name, then `: ` or nothing) joins it. After that,
//!   a chained exception's `During handling of the above exception, another exception
//!   occurred:` or `The above exception was the direct cause of the following exception:`,
//!   the blank lines around it and the next `Traceback (most recent call last):` continue it.
//!   An exception group (Python 3.11, `  + Exception Group Traceback (most recent call
//!   last):`, every line indented) is one block too.
//! - `java` (the JVM, and Node.js's frames, which have the same shape): a line that is
//!   whitespace then `at `, `... N more` / `... N common frames omitted`, `Caused by: ` or
//!   `Suppressed: ` continues the block. An exception line (`Exception in thread "main" ...`,
//!   or a dotted name ending in `Exception`, `Error` or `Throwable` then `: ` or nothing)
//!   starts one; so does such a continuation line after a line that was not held (a log
//!   line naming the error), so its frames are still one record.
//! - `go`: `panic: ` or `fatal error: ` at the start of a line starts a block. Until its first
//!   section header (`goroutine N [state]:` or `runtime stack:`) it continues only with Go's
//!   own header lines: `[signal ...`, tab-indented lines (a re-panic's `\tpanic: ...`) and
//!   blank lines. From the first section header on, it also continues with function lines
//!   (`main.main()`, `main.(*T).f(0x0, {0x4b1c20, 0x3})`: no space before the first `(`,
//!   ending in `)`), tab-indented `\t/path/file.go:NN +0x..` lines, `created by ...` and
//!   `...additional frames elided...`; after a blank line only a new section header (or
//!   `exit status N`) continues it. `exit status N` (from `go run`) joins and ends it; any
//!   other line ends it.
//! - `cuda` (CUDA errors as PyTorch reports them): a line containing `CUDA error` starts a
//!   block that continues with PyTorch's notes (`CUDA kernel errors might be asynchronously
//!   reported at some other API call, ...`, `For debugging consider passing
//!   CUDA_LAUNCH_BLOCKING=1`, ``Compile with `TORCH_USE_CUDA_DSA` to enable device-side
//!   assertions.``) and then a C++ trace (`Exception raised from ... (most recent call
//!   first):`, `frame #N: ...`, `C++ CapturedTraceback:`, `#N ...`); the same lines continue
//!   a Python traceback after its exception line. `terminate called after throwing an
//!   instance of '...'` followed by `  what():  ...` is a block with the same continuations.
//!   Consecutive device-side assertion lines (`...Indexing.cu:1146: indexSelectLargeIndex:
//!   block: [336,0,0], thread: [0,0,0] Assertion `...` failed.`) are one block.
//! - `nccl`: a `<host>:<pid>:<tid> [<dev>] [<file>:<line>] NCCL WARN|ERROR ...` line starts a
//!   block that continues with the lines of the same `<host>:<pid>:<tid> [<dev>]` that are
//!   `NCCL WARN`/`NCCL ERROR` lines or `NCCL INFO <file>:<line> -> <code>` error-path lines
//!   (the way NCCL reports where an error went); any other line (an ordinary `NCCL INFO`,
//!   another thread's line, the blank line NCCL writes before a warning) ends it. After a
//!   Python exception line, PyTorch's NCCL detail (`ncclSystemError: ...`, `Last error:` and
//!   the line after it) continues the traceback.
//!
//! # Limits
//!
//! A joined record holds at most `max` bytes (the same maximum as the joiner's): what does
//! not fit is cut and counted in `truncated` (newlines included; a record's `truncated` is
//! also the sum of what the joiner cut from its lines). A block longer than `max_lines`
//! lines is returned in records of `max_lines` lines, each the next part of the block.
//!
//! # Rules of your own
//!
//! `multiline.rules` adds rules, tried before the built-in ones, in order. A rule's `start`,
//! `continue` and optional `end` are regular expressions (the [`regex`] crate's syntax, no
//! look-around), matched anywhere in a line (anchor them with `^`) against the line as it is
//! (no torchrun prefix set aside). A line matching `start` starts a block; while it is open,
//! a line matching `end` joins it and ends it, a line matching `continue` joins it, and any
//! other line ends it. For .NET's unhandled exceptions:
//!
//! ```yaml
//! multiline:
//!   java: false            # a built-in rule off (all default to true)
//!   max_lines: 500
//!   rules:
//!     - name: dotnet
//!       start: '^Unhandled exception\. '
//!       continue: '^\s+at |^\s*--- End of '
//!     - name: pem
//!       start: '^-----BEGIN '
//!       continue: '.'
//!       end: '^-----END '
//! ```

use std::time::{Duration, Instant};

use regex::bytes::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::parse::Record;

/// Default for [`MultilineConfig::max_lines`].
pub const DEFAULT_MAX_LINES: usize = 1000;

/// Which stack traces are joined (`multiline` in the receiver's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// Join multi-line blocks at all; `false`: every line is its own record. Default `true`.
    pub enabled: bool,
    /// Python tracebacks, chained exceptions and exception groups. Default `true`.
    pub python: bool,
    /// JVM (and Node.js) exceptions: `at ` frames, `Caused by:`, `... N more`. Default
    /// `true`.
    pub java: bool,
    /// Go panics and fatal errors with their goroutine dumps. Default `true`.
    pub go: bool,
    /// PyTorch's CUDA errors with their notes and C++ traces, device-side assertion lines.
    /// Default `true`.
    pub cuda: bool,
    /// NCCL warnings with their error path, PyTorch's NCCL error detail. Default `true`.
    pub nccl: bool,
    /// Most lines in one record, at least 1; a longer block is returned in records of this
    /// many lines. Default 1000.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_lines: usize,
    /// Rules of your own, tried before the built-in ones, in order. Default: none.
    pub rules: Vec<Rule>,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            python: true,
            java: true,
            go: true,
            cuda: true,
            nccl: true,
            max_lines: DEFAULT_MAX_LINES,
            rules: Vec::new(),
        }
    }
}

/// A rule of your own (`multiline.rules[]`): which line starts a block, which lines continue
/// it, which line ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name, for people reading the config. Required.
    pub name: String,
    /// A line matching it starts a block (and is held until the next line shows whether the
    /// block goes on). Regular expression, required.
    pub start: Pattern,
    /// While a block of this rule is open, a line matching it joins the block; the first line
    /// matching neither this nor `end` ends the block and is handled as a fresh line. Regular
    /// expression, required; written `continue`.
    #[serde(rename = "continue")]
    pub continues: Pattern,
    /// While a block of this rule is open, a line matching it (checked first) joins the block
    /// and ends it at once. Regular expression; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Pattern>,
}

/// A regular expression (the [`regex`] crate's syntax) matched anywhere in a line's bytes;
/// written in the config as a string.
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

/// A regular expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad regular expression {pattern:?}: {message}")]
pub struct PatternError {
    /// The expression as written.
    pub pattern: String,
    /// Why it does not compile.
    pub message: String,
}

impl Pattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        Regex::new(pattern).map(Pattern).map_err(|e| PatternError {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether it matches somewhere in `line`.
    pub fn is_match(&self, line: &[u8]) -> bool {
        self.0.is_match(line)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Where an open block is in its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Python: in a traceback's frames.
    PyFrames,
    /// After an exception line (`python`: of a Python traceback, so a chained exception may
    /// follow) or a `CUDA error` line.
    Tail { python: bool },
    /// After `Last error:`: the next line is NCCL's last error.
    LastError { python: bool },
    /// Python: after a chain message, waiting for the next traceback.
    PyChained,
    /// Python: in an exception group (every line indented).
    PyGroup,
    /// In a C++ trace (`Exception raised from ...`, `frame #N: ...`).
    CppFrames { python: bool },
    /// After `terminate called after throwing an instance of '...'`.
    Terminate,
    /// In device-side assertion lines.
    CudaAsserts,
    /// In a JVM exception.
    Java,
    /// Go: after `panic:`, before the first section header.
    GoHead,
    /// Go: in the goroutine sections.
    GoBody,
    /// NCCL: in one thread's warning and error path (the thread is [`Block::key`]).
    Nccl,
    /// In a block of `rules[i]`.
    User(usize),
}

/// What a line does to the open block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Joins it; the block goes on in this state.
    Join(State),
    /// Joins it and ends it.
    Last,
    /// Held on approval (a blank line): joins only if the next line continues the block.
    Hold,
    /// Ends it; the line is handled as a fresh line.
    End,
}

/// A block being joined.
#[derive(Debug)]
struct Block {
    state: State,
    /// The torchrun prefix (`[rank3]:`) its lines carry, empty if none.
    prefix: Vec<u8>,
    /// NCCL: the `<host>:<pid>:<tid> [<dev>] ` its lines carry; empty for other rules.
    key: Vec<u8>,
    /// The lines joined so far.
    record: Record,
    /// How many lines `record` holds.
    lines: usize,
    /// A blank line held on approval.
    held: Option<Record>,
    /// When its last line (joined or held) arrived.
    last: Instant,
}

/// Joins the lines of stack traces and error blocks into one record, per stream (see the
/// module's documentation for the rules).
#[derive(Debug)]
pub struct Multiline {
    config: MultilineConfig,
    max: usize,
    flush_timeout: Duration,
    open: [Option<Block>; 2],
}

impl Multiline {
    /// A combiner with `config`'s rules, keeping at most `max` bytes per record (the
    /// joiner's maximum), holding a block at most `flush_timeout` after its last line.
    pub fn new(config: &MultilineConfig, max: usize, flush_timeout: Duration) -> Multiline {
        Multiline {
            config: config.clone(),
            max,
            flush_timeout,
            open: [None, None],
        }
    }

    /// Adds a line (`now`: when it was read); returns the records it completes, in order: a
    /// line that cannot start or continue a block is among them at once. A block of its
    /// stream that waited longer than the flush timeout is returned first, not joined to it.
    pub fn push(&mut self, record: Record, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        if !self.config.enabled {
            out.push(record);
            return out;
        }
        let i = record.stream as usize;
        if self.open[i]
            .as_ref()
            .is_some_and(|b| now.saturating_duration_since(b.last) > self.flush_timeout)
        {
            self.close(i, &mut out);
        }
        self.feed(i, record, now, &mut out);
        out
    }

    /// The blocks whose last line arrived more than the flush timeout before `now`, each
    /// followed by its held blank line if any; oldest block first.
    pub fn flush_due(&mut self, now: Instant) -> Vec<Record> {
        let due = |b: &Option<Block>| {
            b.as_ref()
                .is_some_and(|b| now.saturating_duration_since(b.last) > self.flush_timeout)
        };
        let which = [due(&self.open[0]), due(&self.open[1])];
        self.close_all(which)
    }

    /// Every block still open (shutdown, the end of a file), oldest first.
    pub fn flush_all(&mut self) -> Vec<Record> {
        self.close_all([true, true])
    }

    /// When [`Multiline::flush_due`] next has something to return: the flush timeout after
    /// the oldest last line of an open block (it returns the block once `now` is past it);
    /// `None` when nothing is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .iter()
            .flatten()
            .map(|b| b.last + self.flush_timeout)
            .min()
    }

    /// How many lines are held (not returned yet), both streams together.
    pub fn held_lines(&self) -> usize {
        self.open
            .iter()
            .flatten()
            .map(|b| b.lines + usize::from(b.held.is_some()))
            .sum()
    }

    fn close_all(&mut self, which: [bool; 2]) -> Vec<Record> {
        let mut blocks: Vec<Vec<Record>> = Vec::new();
        for (i, close) in which.into_iter().enumerate() {
            if close {
                let mut out = Vec::new();
                self.close(i, &mut out);
                if !out.is_empty() {
                    blocks.push(out);
                }
            }
        }
        blocks.sort_by_key(|b| b[0].time_unix_nano);
        blocks.into_iter().flatten().collect()
    }

    /// Returns stream `i`'s block and its held line, if open.
    fn close(&mut self, i: usize, out: &mut Vec<Record>) {
        if let Some(b) = self.open[i].take() {
            out.push(b.record);
            out.extend(b.held);
        }
    }

    fn feed(&mut self, i: usize, record: Record, now: Instant, out: &mut Vec<Record>) {
        let Some(block) = &self.open[i] else {
            return self.fresh(i, record, now, out);
        };
        let step = match step(&self.config, block, &record.message) {
            Step::Hold if block.held.is_some() => Step::End,
            s => s,
        };
        let (max, max_lines) = (self.max, self.config.max_lines.max(1));
        let Some(block) = &mut self.open[i] else {
            unreachable!("checked above")
        };
        match step {
            Step::Join(state) => {
                if let Some(held) = block.held.take() {
                    block.append(held, max, max_lines, out);
                }
                block.append(record, max, max_lines, out);
                block.state = state;
                block.last = now;
            }
            Step::Last => {
                if let Some(held) = block.held.take() {
                    block.append(held, max, max_lines, out);
                }
                block.append(record, max, max_lines, out);
                self.close(i, out);
            }
            Step::Hold => {
                block.held = Some(record);
                block.last = now;
            }
            Step::End => {
                let held = block.held.take();
                self.close(i, out);
                if let Some(held) = held {
                    self.feed(i, held, now, out);
                }
                self.feed(i, record, now, out);
            }
        }
    }

    /// A line with no block open on its stream: starts one or is returned.
    fn fresh(&mut self, i: usize, mut record: Record, now: Instant, out: &mut Vec<Record>) {
        let Some((state, prefix, key)) = start(&self.config, &record.message) else {
            out.push(record);
            return;
        };
        let (prefix, key) = (prefix.to_vec(), key.to_vec());
        cut(&mut record, self.max);
        self.open[i] = Some(Block {
            state,
            prefix,
            key,
            record,
            lines: 1,
            held: None,
            last: now,
        });
    }
}

impl Block {
    /// Joins a line: a new part of the block when this one has `max_lines` lines (the full
    /// part goes to `out`), cut at `max` bytes.
    fn append(&mut self, mut line: Record, max: usize, max_lines: usize, out: &mut Vec<Record>) {
        if self.lines >= max_lines {
            cut(&mut line, max);
            out.push(std::mem::replace(&mut self.record, line));
            self.lines = 1;
            return;
        }
        let r = &mut self.record;
        r.truncated += line.truncated;
        let room = max.saturating_sub(r.message.len());
        let need = 1 + line.message.len();
        if need <= room {
            r.message.push(b'\n');
            r.message.extend_from_slice(&line.message);
        } else if room > 1 {
            r.message.push(b'\n');
            r.message.extend_from_slice(&line.message[..room - 1]);
            r.truncated += need - room;
        } else {
            r.truncated += need;
        }
        self.lines += 1;
    }
}

/// Cuts a record's message to `max` bytes, counting what it cut.
fn cut(record: &mut Record, max: usize) {
    if record.message.len() > max {
        record.truncated += record.message.len() - max;
        record.message.truncate(max);
    }
}

/// The block `line` starts, if it starts one: its state, torchrun prefix and NCCL key.
fn start<'a>(config: &MultilineConfig, line: &'a [u8]) -> Option<(State, &'a [u8], &'a [u8])> {
    if let Some(i) = config.rules.iter().position(|r| r.start.is_match(line)) {
        return Some((State::User(i), b"", b""));
    }
    let (prefix, body) = split_prefix(line);
    let mut key: &[u8] = b"";
    let state = if config.python && is_traceback(body) {
        State::PyFrames
    } else if config.python && is_group_start(body) {
        State::PyGroup
    } else if config.go && (body.starts_with(b"panic: ") || body.starts_with(b"fatal error: ")) {
        State::GoHead
    } else if let Some(n) = nccl(body).filter(|n| config.nccl && n.is_warning()) {
        key = n.key;
        State::Nccl
    } else if config.cuda && contains(body, b"CUDA error") {
        State::Tail { python: false }
    } else if config.cuda && body.starts_with(b"terminate called after throwing an instance of '") {
        State::Terminate
    } else if config.cuda && is_device_assert(body) {
        State::CudaAsserts
    } else if config.java && (is_exception_header(body) || is_java_cont(body)) {
        State::Java
    } else {
        return None;
    };
    Some((state, prefix, key))
}

/// What `line` does to `block`.
fn step(config: &MultilineConfig, block: &Block, line: &[u8]) -> Step {
    if let State::User(i) = block.state {
        let rule = &config.rules[i];
        return if rule.end.as_ref().is_some_and(|e| e.is_match(line)) {
            Step::Last
        } else if rule.continues.is_match(line) {
            Step::Join(block.state)
        } else {
            Step::End
        };
    }
    let (prefix, body) = split_prefix(line);
    if prefix != block.prefix.as_slice() {
        return Step::End;
    }
    let held = block.held.is_some();
    let blank = body.trim_ascii().is_empty();
    let indented = is_indented(body);
    match block.state {
        State::PyFrames if blank => Step::End,
        State::PyFrames if indented => Step::Join(State::PyFrames),
        State::PyFrames if is_exception_line(body) => Step::Join(State::Tail { python: true }),
        State::PyFrames => Step::End,
        State::Tail { python } => tail(config, python, body, blank, held),
        State::LastError { python } if !blank && !held => Step::Join(State::Tail { python }),
        State::LastError { python } => tail(config, python, body, blank, held),
        State::PyChained if blank => Step::Hold,
        State::PyChained if is_traceback(body) => Step::Join(State::PyFrames),
        State::PyChained if is_group_start(body) => Step::Join(State::PyGroup),
        State::PyChained => Step::End,
        State::PyGroup if blank => Step::Hold,
        State::PyGroup if is_chain(body) => Step::Join(State::PyChained),
        State::PyGroup if indented && !held => Step::Join(State::PyGroup),
        State::PyGroup => Step::End,
        State::CppFrames { .. } if blank => Step::Hold,
        State::CppFrames { python } if !held && is_cpp_frame(body) => {
            Step::Join(State::CppFrames { python })
        }
        State::CppFrames { python: true } if is_chain(body) => Step::Join(State::PyChained),
        State::CppFrames { .. } => Step::End,
        State::Terminate if indented && body.trim_ascii_start().starts_with(b"what():  ") => {
            Step::Join(State::Tail { python: false })
        }
        State::Terminate => Step::End,
        State::CudaAsserts if is_device_assert(body) => Step::Join(State::CudaAsserts),
        State::CudaAsserts => Step::End,
        State::Java if is_java_cont(body) => Step::Join(State::Java),
        State::Java => Step::End,
        State::GoHead | State::GoBody if blank => Step::Hold,
        State::GoHead | State::GoBody if is_go_section(body) => Step::Join(State::GoBody),
        State::GoHead | State::GoBody if is_exit_status(body) => Step::Last,
        State::GoHead if !held && (body.starts_with(b"[signal ") || body.starts_with(b"\t")) => {
            Step::Join(State::GoHead)
        }
        State::GoBody if !held && is_go_frame(body) => Step::Join(State::GoBody),
        State::GoHead | State::GoBody => Step::End,
        State::Nccl => match nccl(body) {
            Some(n) if n.key == block.key.as_slice() && (n.is_warning() || n.is_error_path()) => {
                Step::Join(State::Nccl)
            }
            _ => Step::End,
        },
        State::User(_) => unreachable!("handled above"),
    }
}

/// After an exception line or a `CUDA error` line.
fn tail(config: &MultilineConfig, python: bool, body: &[u8], blank: bool, held: bool) -> Step {
    let tail = State::Tail { python };
    if blank {
        Step::Hold
    } else if !held
        && ((config.cuda && is_cuda_note(body)) || (config.nccl && is_nccl_error_name(body)))
    {
        Step::Join(tail)
    } else if config.nccl && !held && body.trim_ascii_end() == b"Last error:" {
        Step::Join(State::LastError { python })
    } else if config.cuda && body.starts_with(b"Exception raised from ") {
        Step::Join(State::CppFrames { python })
    } else if python && is_chain(body) {
        Step::Join(State::PyChained)
    } else if !python && config.java && !held && is_java_cont(body) {
        Step::Join(State::Java)
    } else {
        Step::End
    }
}

/// Splits a torchrun prefix (`[rank3]: `, `[default0]:`: `[`, letters, digits, `]:`) off a
/// line: the prefix without the one space after it, and the rest.
fn split_prefix(line: &[u8]) -> (&[u8], &[u8]) {
    let none = (&line[..0], line);
    let Some(rest) = line.strip_prefix(b"[") else {
        return none;
    };
    let letters = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let digits = digits(&rest[letters..]);
    if letters == 0 || digits == 0 || !rest[letters + digits..].starts_with(b"]:") {
        return none;
    }
    let end = 1 + letters + digits + 2;
    let body = &line[end..];
    (&line[..end], body.strip_prefix(b" ").unwrap_or(body))
}

/// How many ASCII digits `s` starts with.
fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn is_indented(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack[i + 1..].starts_with(rest))
}

fn is_traceback(body: &[u8]) -> bool {
    body.trim_ascii_end() == b"Traceback (most recent call last):"
}

fn is_group_start(body: &[u8]) -> bool {
    body.trim_ascii() == b"+ Exception Group Traceback (most recent call last):"
}

fn is_chain(body: &[u8]) -> bool {
    matches!(
        body.trim_ascii(),
        b"During handling of the above exception, another exception occurred:"
            | b"The above exception was the direct cause of the following exception:"
    )
}

/// A dotted name (`ValueError`, `java.lang.IllegalStateException`, `Outer$Inner`), then
/// `: ` or the end of the line; returns the name's last part.
fn exception_name(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii_end();
    let end = line.iter().position(|&b| b == b':').unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    if !(rest.is_empty() || rest.starts_with(b": ") || rest == b":") {
        return None;
    }
    let mut last = None;
    for part in name.split(|&b| b == b'.') {
        let ok = part
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'$')
            && part
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$');
        if !ok {
            return None;
        }
        last = Some(part);
    }
    last
}

/// A Python exception line, after a traceback's frames.
fn is_exception_line(body: &[u8]) -> bool {
    exception_name(body).is_some()
}

/// A line a JVM (or Node.js) exception starts with.
fn is_exception_header(body: &[u8]) -> bool {
    body.starts_with(b"Exception in thread \"")
        || exception_name(body).is_some_and(|name| {
            name.first().is_some_and(u8::is_ascii_uppercase)
                && (name.ends_with(b"Exception")
                    || name.ends_with(b"Error")
                    || name.ends_with(b"Throwable"))
        })
}

/// A line that continues a JVM exception.
fn is_java_cont(body: &[u8]) -> bool {
    let t = body.trim_ascii_start();
    let indented = t.len() < body.len();
    if indented && t.starts_with(b"at ") {
        return true;
    }
    if t.starts_with(b"Caused by: ") || t.starts_with(b"Suppressed: ") {
        return true;
    }
    let Some(more) = t.strip_prefix(b"... ") else {
        return false;
    };
    let n = digits(more);
    let rest = more[n..].trim_ascii_end();
    n > 0 && (rest == b" more" || rest == b" common frames omitted")
}

/// `goroutine N [state]:` (also with `gp=... m=...` before the state), `runtime stack:`.
fn is_go_section(body: &[u8]) -> bool {
    if body.trim_ascii_end() == b"runtime stack:" {
        return true;
    }
    let Some(rest) = body.strip_prefix(b"goroutine ") else {
        return false;
    };
    let n = digits(rest);
    n > 0 && rest[n..].starts_with(b" ") && rest.trim_ascii_end().ends_with(b"]:")
}

/// A line inside a goroutine section: a function line, a tab-indented file line, `created
/// by ...`, `...additional frames elided...`.
fn is_go_frame(body: &[u8]) -> bool {
    if body.starts_with(b"\t")
        || body.starts_with(b"created by ")
        || body.starts_with(b"...additional frames elided...")
    {
        return true;
    }
    let t = body.trim_ascii_end();
    match t.iter().position(|&b| b == b'(') {
        Some(p) => p > 0 && !t[..p].iter().any(u8::is_ascii_whitespace) && t.ends_with(b")"),
        None => false,
    }
}

fn is_exit_status(body: &[u8]) -> bool {
    body.trim_ascii()
        .strip_prefix(b"exit status ")
        .is_some_and(|n| !n.is_empty() && digits(n) == n.len())
}

/// PyTorch's notes after a `CUDA error`.
fn is_cuda_note(body: &[u8]) -> bool {
    const NOTES: [&[u8]; 3] = [
        b"CUDA kernel errors might be asynchronously reported at some other API call",
        b"For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
        b"Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions",
    ];
    NOTES.iter().any(|n| body.starts_with(n))
}

/// `frame #N: ...`, `C++ CapturedTraceback:`, `#N ...`: a C++ trace in a c10 error.
fn is_cpp_frame(body: &[u8]) -> bool {
    let numbered = |s: Option<&[u8]>| s.is_some_and(|s| digits(s) > 0);
    numbered(body.strip_prefix(b"frame #"))
        || numbered(body.strip_prefix(b"#"))
        || body.trim_ascii_end() == b"C++ CapturedTraceback:"
}

/// A device-side assertion: `<file>.cu:N: <fn>: block: [x,y,z], thread: [x,y,z] Assertion
/// `...` failed.`
fn is_device_assert(body: &[u8]) -> bool {
    body.trim_ascii_end().ends_with(b" failed.")
        && contains(body, b": block: [")
        && contains(body, b", thread: [")
        && contains(body, b"] Assertion `")
}

/// PyTorch's NCCL detail line: `ncclSystemError: ...`, `ncclUnhandledCudaError: ...`.
fn is_nccl_error_name(body: &[u8]) -> bool {
    let Some(rest) = body.strip_prefix(b"nccl") else {
        return false;
    };
    let name = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    rest.first().is_some_and(u8::is_ascii_uppercase) && rest[name..].starts_with(b": ")
}

/// An NCCL debug line: `<host>:<pid>:<tid> [<dev>] [<file>:<line> ]NCCL <LEVEL> <rest>`.
struct NcclLine<'a> {
    /// `<host>:<pid>:<tid> [<dev>] `.
    key: &'a [u8],
    level: &'a [u8],
    rest: &'a [u8],
}

impl NcclLine<'_> {
    fn is_warning(&self) -> bool {
        self.level == b"WARN" || self.level == b"ERROR"
    }

    /// `NCCL INFO <file>:<line> -> <code>[ ...]`: where an error went.
    fn is_error_path(&self) -> bool {
        if self.level != b"INFO" {
            return false;
        }
        let end = self.rest.iter().position(|&b| b == b' ');
        let Some(end) = end else {
            return false;
        };
        let place = &self.rest[..end];
        let line_no = place
            .iter()
            .rposition(|&b| b == b':')
            .map(|c| &place[c + 1..]);
        if !line_no.is_some_and(|n| !n.is_empty() && digits(n) == n.len()) {
            return false;
        }
        let Some(code) = self.rest[end..].strip_prefix(b" -> ") else {
            return false;
        };
        let n = digits(code);
        n > 0 && (code.len() == n || code[n] == b' ')
    }
}

fn nccl(body: &[u8]) -> Option<NcclLine<'_>> {
    let host = body.iter().position(|&b| b == b':')?;
    if host == 0 || body[..host].iter().any(u8::is_ascii_whitespace) {
        return None;
    }
    let mut at = host + 1;
    let pid = digits(&body[at..]);
    at += pid;
    if pid == 0 || body.get(at) != Some(&b':') {
        return None;
    }
    at += 1;
    let tid = digits(&body[at..]);
    at += tid;
    if tid == 0 || !body[at..].starts_with(b" [") {
        return None;
    }
    at += 2;
    let dev = digits(&body[at..]);
    at += dev;
    if dev == 0 || !body[at..].starts_with(b"] ") {
        return None;
    }
    at += 2;
    let key = &body[..at];
    let mut rest = &body[at..];
    if !rest.starts_with(b"NCCL ") {
        // `<file>:<line> ` before `NCCL` (warnings).
        let word = rest.iter().position(|&b| b == b' ')?;
        rest = &rest[word + 1..];
    }
    let rest = rest.strip_prefix(b"NCCL ")?;
    let level = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    Some(NcclLine {
        key,
        level: &rest[..level],
        rest: rest.get(level + 1..).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse::Stream;
    use super::*;

    const MAX: usize = 1 << 20;
    const TIMEOUT: Duration = Duration::from_secs(1);

    /// Pushes `lines` (times 1, 2, ...; all at `now`) and returns what came back, as text
    /// with the time of each record.
    struct Feeder {
        m: Multiline,
        now: Instant,
        time: u64,
    }

    impl Feeder {
        fn new(config: MultilineConfig, max: usize) -> Feeder {
            Feeder {
                m: Multiline::new(&config, max, TIMEOUT),
                now: Instant::now(),
                time: 0,
            }
        }

        fn record(&mut self, stream: Stream, line: &str) -> Record {
            self.time += 1;
            Record {
                time_unix_nano: self.time,
                stream,
                message: line.as_bytes().to_vec(),
                truncated: 0,
            }
        }

        fn push(&mut self, stream: Stream, line: &str) -> Vec<String> {
            let r = self.record(stream, line);
            text(self.m.push(r, self.now))
        }

        /// Pushes every line to stderr and returns everything returned.
        fn lines(&mut self, lines: &[&str]) -> Vec<String> {
            lines
                .iter()
                .flat_map(|l| self.push(Stream::Stderr, l))
                .collect()
        }
    }

    fn text(records: Vec<Record>) -> Vec<String> {
        records
            .into_iter()
            .map(|r| String::from_utf8(r.message).unwrap())
            .collect()
    }

    fn feeder() -> Feeder {
        Feeder::new(MultilineConfig::default(), MAX)
    }

    #[test]
    fn a_python_traceback_with_a_chained_exception_is_one_record() {
        let trace = [
            "Traceback (most recent call last):",
            "  File \"/app/train.py\", line 12, in load",
            "    return int(raw)",
            "           ^^^^^^^^",
            "ValueError: invalid literal for int() with base 10: 'x'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"/app/train.py\", line 20, in <module>",
            "    load(\"x\")",
            "  File \"/app/train.py\", line 14, in load",
            "    raise RuntimeError(\"bad config\")",
            "RuntimeError: bad config",
        ];
        let mut f = feeder();
        assert_eq!(
            f.lines(&["INFO:root:loading config"]),
            ["INFO:root:loading config"]
        );
        assert!(f.lines(&trace).is_empty(), "held until the next line");
        assert_eq!(f.m.held_lines(), 14);
        assert_eq!(
            f.lines(&["INFO:root:retrying"]),
            [trace.join("\n").as_str(), "INFO:root:retrying"]
        );
        // `raise ... from e`, and the exception line with no message.
        let direct = [
            "Traceback (most recent call last):",
            "  File \"/app/x.py\", line 2, in <module>",
            "    f()",
            "KeyError: 'a'",
            "",
            "The above exception was the direct cause of the following exception:",
            "",
            "Traceback (most recent call last):",
            "  File \"/app/x.py\", line 4, in <module>",
            "    raise KeyboardInterrupt from e",
            "KeyboardInterrupt",
        ];
        assert!(f.lines(&direct).is_empty());
        // A traceback right after another is a record of its own; the blank line after the
        // exception is returned as it came.
        let next = [
            "Traceback (most recent call last):",
            "  File \"/app/y.py\", line 1",
        ];
        assert_eq!(f.lines(&[""]), Vec::<String>::new());
        assert_eq!(f.lines(&next[..1]), [direct.join("\n").as_str(), ""]);
        assert!(f.lines(&next[1..]).is_empty());
        // Not an exception line after the frames: the frames alone.
        assert_eq!(
            f.lines(&["2026-12-07 06:00:00 unrelated"]),
            [next.join("\n").as_str(), "2026-12-07 06:00:00 unrelated"]
        );
        assert_eq!(f.m.held_lines(), 0);
    }

    #[test]
    fn a_python_exception_group_is_one_record() {
        let group = [
            "  + Exception Group Traceback (most recent call last):",
            "  |   File \"/app/t.py\", line 10, in <module>",
            "  |     raise ExceptionGroup(\"eg\", [ValueError(1), TypeError(2)])",
            "  | ExceptionGroup: eg (2 sub-exceptions)",
            "  +-+---------------- 1 ----------------",
            "    | ValueError: 1",
            "    +---------------- 2 ----------------",
            "    | TypeError: 2",
            "    +------------------------------------",
        ];
        let mut f = feeder();
        assert!(f.lines(&group).is_empty());
        assert_eq!(f.lines(&["done"]), [group.join("\n").as_str(), "done"]);
    }

    #[test]
    fn a_java_exception_with_causes_is_one_record() {
        let trace = [
            "Exception in thread \"main\" java.lang.IllegalStateException: Failed to start",
            "\tat com.example.App.start(App.java:42)",
            "\tat com.example.App.main(App.java:10)",
            "Caused by: java.io.FileNotFoundException: /etc/app.conf (No such file or directory)",
            "\tat java.base/java.io.FileInputStream.open0(Native Method)",
            "\tat java.base/java.io.FileInputStream.open(FileInputStream.java:216)",
            "\t... 5 more",
        ];
        let mut f = feeder();
        assert!(f.lines(&trace).is_empty());
        assert_eq!(
            f.lines(&["2026-12-07 06:00:01 INFO shutting down"]),
            [
                trace.join("\n").as_str(),
                "2026-12-07 06:00:01 INFO shutting down"
            ]
        );
        // As logback writes it: a log line (not held), then the exception.
        let logback = [
            "org.springframework.beans.factory.BeanCreationException: Error creating bean 'db'",
            "\tat org.springframework.beans.factory.support.AbstractBeanFactory.getBean(AbstractBeanFactory.java:208)",
            "\tSuppressed: java.lang.IllegalArgumentException: no url",
            "\t\tat com.example.Db.open(Db.java:7)",
            "\t\t... 12 common frames omitted",
        ];
        assert_eq!(
            f.lines(&["06:00:02.000 [main] ERROR o.s.boot.SpringApplication - run failed"]),
            ["06:00:02.000 [main] ERROR o.s.boot.SpringApplication - run failed"]
        );
        assert!(f.lines(&logback).is_empty());
        // A header with no frames after it is returned alone, with the next line.
        assert_eq!(
            f.lines(&["java.lang.OutOfMemoryError: Java heap space"]),
            [logback.join("\n")]
        );
        assert_eq!(
            f.lines(&["GC overhead"]),
            ["java.lang.OutOfMemoryError: Java heap space", "GC overhead"]
        );
        // Frames after a header that was not recognised still make one record.
        assert_eq!(
            f.lines(&["com.example.Oops: bad"]),
            ["com.example.Oops: bad"]
        );
        assert!(
            f.lines(&["\tat a.B.c(B.java:1)", "\tat a.B.d(B.java:2)"])
                .is_empty()
        );
        assert_eq!(f.m.flush_all().len(), 1, "the two frames are one record");
    }

    #[test]
    fn a_go_panic_with_two_goroutines_is_one_record() {
        let panic = [
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47d5a6]",
            "",
            "goroutine 1 [running]:",
            "main.(*Server).handle(0x0, {0x4b1c20, 0xc000012345})",
            "\t/app/server.go:42 +0x26",
            "main.main()",
            "\t/app/main.go:17 +0x65",
            "",
            "goroutine 18 [chan receive]:",
            "main.worker(0xc00001c0c0)",
            "\t/app/worker.go:9 +0x2d",
            "created by main.main in goroutine 1",
            "\t/app/main.go:12 +0x3b",
            "exit status 2",
        ];
        let mut f = feeder();
        let (last, body) = panic.split_last().unwrap();
        assert!(f.lines(body).is_empty());
        // `exit status N` ends it at once.
        assert_eq!(f.lines(&[last]), [panic.join("\n")]);
        assert_eq!(f.m.held_lines(), 0);
        // Without it the next line ends it; a blank line after the last frame is returned on
        // its own, and a function-like line after a blank line does not join.
        let fatal = [
            "fatal error: all goroutines are asleep - deadlock!",
            "",
            "goroutine 1 [chan receive]:",
            "main.main()",
            "\t/app/main.go:5 +0x2e",
        ];
        assert!(f.lines(&fatal).is_empty());
        assert!(f.lines(&[""]).is_empty());
        assert_eq!(
            f.lines(&["restart(1)"]),
            [fatal.join("\n").as_str(), "", "restart(1)"]
        );
        // A `panic:` line that is not Go's: returned with the next line.
        assert!(f.lines(&["panic: the disk is full"]).is_empty());
        assert_eq!(
            f.lines(&["main.main()"]),
            ["panic: the disk is full", "main.main()"]
        );
    }

    #[test]
    fn a_pytorch_device_side_assert_is_one_record_after_its_assertions() {
        let asserts = [
            "../aten/src/ATen/native/cuda/Indexing.cu:1146: indexSelectLargeIndex: block: [336,0,0], thread: [0,0,0] Assertion `srcIndex < srcSelectDimSize` failed.",
            "../aten/src/ATen/native/cuda/Indexing.cu:1146: indexSelectLargeIndex: block: [336,0,0], thread: [1,0,0] Assertion `srcIndex < srcSelectDimSize` failed.",
        ];
        let trace = [
            "Traceback (most recent call last):",
            "  File \"/app/train.py\", line 214, in train_one_epoch",
            "    total_loss += loss.item() * batch_size",
            "                  ^^^^^^^^^^^",
            "RuntimeError: CUDA error: device-side assert triggered",
            "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.",
            "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
            "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
        ];
        let mut f = feeder();
        assert!(f.lines(&asserts).is_empty());
        assert_eq!(f.lines(&trace[..1]), [asserts.join("\n")]);
        // The message ends with a newline: a blank line last, then the container dies.
        assert!(f.lines(&trace[1..]).is_empty());
        assert!(f.lines(&[""]).is_empty());
        let later = f.now + TIMEOUT + Duration::from_millis(1);
        assert_eq!(text(f.m.flush_due(later)), [trace.join("\n").as_str(), ""]);
        // A C++ `terminate` with PyTorch's watchdog error.
        let terminate = [
            "terminate called after throwing an instance of 'c10::DistBackendError'",
            "  what():  [PG 0 Rank 0] Process group watchdog thread terminated with exception: CUDA error: an illegal memory access was encountered",
            "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.",
            "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
            "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
            "",
            "Exception raised from c10_cuda_check_implementation at /pytorch/c10/cuda/CUDAException.cpp:43 (most recent call first):",
            "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x7f4a1b0a1446 in /usr/local/lib/python3.10/dist-packages/torch/lib/libc10.so)",
            "frame #1: <unknown function> + 0x145c0 (0x7f4a1b1ee5c0 in /usr/local/lib/python3.10/dist-packages/torch/lib/libc10_cuda.so)",
        ];
        assert!(f.lines(&terminate).is_empty());
        assert_eq!(
            f.lines(&["Aborted (core dumped)"]),
            [terminate.join("\n").as_str(), "Aborted (core dumped)"]
        );
        // A line naming a CUDA error with no notes after it: returned with the next line.
        assert!(
            f.lines(&["WARNING retrying after CUDA error: out of memory"])
                .is_empty()
        );
        assert_eq!(
            f.lines(&["step 10"]),
            [
                "WARNING retrying after CUDA error: out of memory",
                "step 10"
            ]
        );
    }

    #[test]
    fn torchrun_rank_prefixes_are_set_aside_and_must_match() {
        let trace = [
            "[rank1]: Traceback (most recent call last):",
            "[rank1]:   File \"/app/train.py\", line 30, in <module>",
            "[rank1]:     dist.barrier()",
            "[rank1]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1333, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.18.6",
            "[rank1]: ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error. ",
            "[rank1]: Last error:",
            "[rank1]: socketStartConnect: Connect to 192.168.19.14<52822> failed : No route to host",
            "[rank1]: Exception raised from recvBytes at ../torch/csrc/distributed/c10d/Utils.hpp:672 (most recent call first):",
            "[rank1]: frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x7f12a509af86 in /usr/local/lib/python3.10/dist-packages/torch/lib/libc10.so)",
        ];
        let mut f = feeder();
        assert!(f.lines(&trace).is_empty());
        // Another rank's line ends it.
        assert_eq!(
            f.lines(&["[rank0]:   File \"/app/train.py\", line 30, in <module>"]),
            [
                trace.join("\n").as_str(),
                "[rank0]:   File \"/app/train.py\", line 30, in <module>"
            ]
        );
    }

    #[test]
    fn an_nccl_warning_is_one_record_with_its_error_path() {
        let mut f = feeder();
        let info = "hai-a100-3:3778851:3779455 [6] NCCL INFO Using network IBext";
        assert_eq!(f.lines(&[info, ""]), [info, ""]);
        let warn = [
            "hai-a100-3:3778851:3779883 [4] ibvwrap.c:130 NCCL WARN Call to ibv_create_qp failed",
            "hai-a100-3:3778851:3779883 [4] NCCL INFO ib_plugin.c:196 -> 2",
            "hai-a100-3:3778851:3779883 [4] NCCL INFO external/nccl_archive/src/init.cc:310 -> 2",
            "hai-a100-3:3778851:3779883 [4] NCCL INFO external/nccl_archive/src/group.cc:72 -> 2 [Async thread]",
        ];
        assert!(f.lines(&warn).is_empty());
        // The blank line NCCL writes before a warning ends it.
        assert_eq!(f.lines(&[""]), [warn.join("\n").as_str(), ""]);
        // Threads interleaved: only consecutive lines of one thread join.
        let w5 =
            "hai-a100-3:3778851:3779884 [5] ibvwrap.c:130 NCCL WARN Call to ibv_create_qp failed";
        let w6 =
            "hai-a100-3:3778851:3779885 [6] ibvwrap.c:130 NCCL WARN Call to ibv_create_qp failed";
        let i5 = "hai-a100-3:3778851:3779884 [5] NCCL INFO ib_plugin.c:196 -> 2";
        assert!(f.lines(&[w5]).is_empty());
        assert_eq!(f.lines(&[w6]), [w5]);
        assert_eq!(f.lines(&[i5]), [w6, i5]);
        // An ordinary INFO line of the same thread after a warning is not joined.
        let w = "node1:12:13 [0] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer 10.0.0.2<45678> with error 12, opcode 0, len 0, vendor err 129 (Recv)";
        let path = "node1:12:13 [0] NCCL INFO transport/net.cc:1008 -> 6";
        let other = "node1:12:13 [0] NCCL INFO Channel 00/02 :    0   1";
        assert!(f.lines(&[w, path]).is_empty());
        assert_eq!(f.lines(&[other]), [format!("{w}\n{path}").as_str(), other]);
    }

    #[test]
    fn ordinary_lines_pass_through_at_once() {
        let mut f = feeder();
        for line in [
            "2026-12-07 06:00:00 INFO started",
            "epoch 3 loss 0.12",
            "",
            "  indented but alone",
            "ERROR: something broke",
            "{\"level\":\"error\",\"msg\":\"x\"}",
            "hai-a100-3:1:2 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>",
        ] {
            assert_eq!(f.push(Stream::Stdout, line), [line]);
            assert_eq!(f.m.next_deadline(), None);
        }
        let mut off = Feeder::new(
            MultilineConfig {
                enabled: false,
                ..MultilineConfig::default()
            },
            MAX,
        );
        assert_eq!(
            off.lines(&["Traceback (most recent call last):"]),
            ["Traceback (most recent call last):"]
        );
        let mut no_python = Feeder::new(
            MultilineConfig {
                python: false,
                ..MultilineConfig::default()
            },
            MAX,
        );
        assert_eq!(
            no_python.lines(&["Traceback (most recent call last):"]),
            ["Traceback (most recent call last):"]
        );
    }

    #[test]
    fn stdout_and_stderr_are_joined_independently() {
        let mut f = feeder();
        let (out, err) = (Stream::Stdout, Stream::Stderr);
        assert!(f.push(err, "Traceback (most recent call last):").is_empty());
        assert_eq!(f.push(out, "step 1"), ["step 1"]);
        assert!(
            f.push(err, "  File \"/app/a.py\", line 1, in <module>")
                .is_empty()
        );
        assert!(f.push(out, "java.lang.IllegalStateException: x").is_empty());
        assert!(f.push(err, "ValueError: bad").is_empty());
        assert!(f.push(out, "\tat a.B.c(B.java:1)").is_empty());
        assert_eq!(
            f.push(out, "step 2"),
            [
                "java.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)",
                "step 2"
            ]
        );
        let all = f.m.flush_all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].stream, all[0].time_unix_nano, all[0].message.as_slice()),
            (
                err,
                1,
                &b"Traceback (most recent call last):\n  File \"/app/a.py\", line 1, in <module>\nValueError: bad"[..]
            )
        );
    }

    #[test]
    fn a_block_waits_at_most_the_flush_timeout() {
        let mut f = feeder();
        let t0 = f.now;
        assert!(f.lines(&["java.lang.IllegalStateException: x"]).is_empty());
        assert_eq!(f.m.next_deadline(), Some(t0 + TIMEOUT));
        assert!(
            f.m.flush_due(t0 + TIMEOUT).is_empty(),
            "not more than the timeout yet"
        );
        let due = f.m.flush_due(t0 + TIMEOUT + Duration::from_millis(1));
        assert_eq!(text(due), ["java.lang.IllegalStateException: x"]);
        assert_eq!(f.m.next_deadline(), None);
        // Each line restarts the wait; a line after the wait is not joined to the block.
        assert!(f.lines(&["java.lang.IllegalStateException: y"]).is_empty());
        f.now = t0 + Duration::from_millis(900);
        assert!(f.lines(&["\tat a.B.c(B.java:1)"]).is_empty());
        assert!(f.m.flush_due(t0 + Duration::from_millis(1500)).is_empty());
        f.now = t0 + Duration::from_millis(2000);
        assert_eq!(
            f.lines(&["\tat a.B.d(B.java:2)"]),
            ["java.lang.IllegalStateException: y\n\tat a.B.c(B.java:1)"]
        );
        // At shutdown everything held comes out, oldest block first.
        assert!(f.push(Stream::Stdout, "panic: x").is_empty());
        let all = f.m.flush_all();
        assert_eq!(
            all.iter()
                .map(|r| (r.stream, r.time_unix_nano))
                .collect::<Vec<_>>(),
            [(Stream::Stderr, 4), (Stream::Stdout, 5)]
        );
        assert!(f.m.flush_all().is_empty());
    }

    #[test]
    fn a_block_is_cut_at_max_bytes_and_split_at_max_lines() {
        let mut f = Feeder::new(MultilineConfig::default(), 30);
        let lines = [
            "java.lang.Error: x",   // 18 bytes
            "\tat a.B.c(B.java:1)", // + 1 + 19 = 38: the newline and 11 kept, 8 cut
            "\tat a.B.d(B.java:2)", // no room: 1 + 19 cut
        ];
        assert!(f.lines(&lines).is_empty());
        let mut r = f.m.flush_all();
        assert_eq!(r.len(), 1);
        let r = r.remove(0);
        assert_eq!(
            String::from_utf8(r.message).unwrap(),
            "java.lang.Error: x\n\tat a.B.c(B"
        );
        assert_eq!(r.truncated, 8 + 20);
        // What the joiner cut is counted too.
        let mut first = f.record(Stream::Stderr, "java.lang.Error: y");
        first.truncated = 100;
        assert!(f.m.push(first, f.now).is_empty());
        let r = f.m.flush_all().remove(0);
        assert_eq!(
            (r.message.as_slice(), r.truncated),
            (&b"java.lang.Error: y"[..], 100)
        );

        let mut f = Feeder::new(
            MultilineConfig {
                max_lines: 3,
                ..MultilineConfig::default()
            },
            MAX,
        );
        let lines = [
            "java.lang.Error: x",
            "\tat a.B.c(B.java:1)",
            "\tat a.B.d(B.java:2)",
            "\tat a.B.e(B.java:3)",
            "\tat a.B.f(B.java:4)",
        ];
        let mut out = f.lines(&lines);
        assert_eq!(out, [lines[..3].join("\n")]);
        out = f.lines(&["next"]);
        assert_eq!(out, [lines[3..].join("\n").as_str(), "next"]);
    }

    #[test]
    fn rules_of_your_own_from_the_config() {
        let yaml = r#"
java: false
max_lines: 500
rules:
  - name: dotnet
    start: '^Unhandled exception\. '
    continue: '^\s+at |^\s*--- End of '
  - name: pem
    start: '^-----BEGIN '
    continue: '.'
    end: '^-----END '
"#;
        let config: MultilineConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            (
                config.java,
                config.python,
                config.max_lines,
                config.rules.len()
            ),
            (false, true, 500, 2)
        );
        assert_eq!(
            config.rules[0].continues.as_str(),
            r"^\s+at |^\s*--- End of "
        );
        let mut f = Feeder::new(config, MAX);
        let dotnet = [
            "Unhandled exception. System.InvalidOperationException: bad state",
            "   at Program.Run() in /app/Program.cs:line 12",
            "--- End of stack trace from previous location ---",
            "   at Program.Main() in /app/Program.cs:line 5",
        ];
        assert!(f.lines(&dotnet).is_empty());
        assert_eq!(f.lines(&["Done"]), [dotnet.join("\n").as_str(), "Done"]);
        // `java` is off: a frame alone starts nothing.
        assert_eq!(f.lines(&dotnet[3..]), [dotnet[3]]);
        let pem = [
            "-----BEGIN CERTIFICATE-----",
            "MIIB",
            "-----END CERTIFICATE-----",
        ];
        assert!(f.lines(&pem[..2]).is_empty());
        assert_eq!(
            f.lines(&pem[2..]),
            [pem.join("\n")],
            "`end` ends it at once"
        );

        // Defaults, and what a config gets wrong.
        let default: MultilineConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(default, MultilineConfig::default());
        let err = |yaml: &str| {
            serde_yaml::from_str::<MultilineConfig>(yaml)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("pyhton: false").contains("unknown field `pyhton`"),
            "{}",
            err("pyhton: false")
        );
        assert!(err("max_lines: 0").contains("expected at least 1"));
        let bad = err("rules: [{name: x, start: '(', continue: 'a'}]");
        assert!(bad.contains("bad regular expression \"(\""), "{bad}");
        let missing = err("rules: [{name: x, start: 'a'}]");
        assert!(missing.contains("missing field `continue`"), "{missing}");
        let back: MultilineConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&f.m.config).unwrap()).unwrap();
        assert_eq!(back, f.m.config);
    }
}
