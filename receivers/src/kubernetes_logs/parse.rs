//! Reading the kubelet's container log files line by line: the CRI format (containerd,
//! CRI-O) and Docker's json-file format, detected per file; partial lines joined into
//! records up to a maximum size; severity from a JSON level field or a leading level word.
//!
//! Formats, as the runtimes write them:
//!
//! - CRI: `<RFC 3339 time> <stdout|stderr> <P|F> <message>\n` — `P` a partial line (the
//!   runtime split a long line; more follows), `F` the full line or its last part. The time
//!   is UTC with nanoseconds from containerd (`2026-12-07T06:00:00.123456789Z`), may carry an
//!   offset from CRI-O.
//! - Docker json-file: `{"log":"<message>\n","stream":"stdout","time":"<RFC 3339>"}\n` — a
//!   `log` without its trailing newline is a partial line (Docker splits at 16 KiB).

use std::borrow::Cow;

use k8s_openapi::jiff::Timestamp;

/// The container stream a line was written to (`log.iostream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, the `log.iostream` values.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &[u8]) -> Option<Stream> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A log file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CRI (containerd, CRI-O).
    Cri,
    /// Docker's json-file driver.
    DockerJson,
}

impl Format {
    /// The format of a file whose first line is `line`: Docker's json-file lines are JSON
    /// objects, CRI lines start with their time.
    pub fn detect(line: &[u8]) -> Format {
        if line.first() == Some(&b'{') {
            Format::DockerJson
        } else {
            Format::Cri
        }
    }

    /// Parses one line (without its newline) of this format.
    pub fn parse(self, line: &[u8]) -> Result<Line<'_>, ParseError> {
        match self {
            Format::Cri => parse_cri(line),
            Format::DockerJson => parse_docker(line),
        }
    }
}

/// One line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The runtime's time for it, Unix ns.
    pub time_unix_nano: u64,
    /// Which stream.
    pub stream: Stream,
    /// A partial line: more of the same line follows.
    pub partial: bool,
    /// What the container wrote (without the newline).
    pub message: Cow<'a, [u8]>,
}

/// A line that is not in its file's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The CRI prefix is not `<time> <stream> <P|F> `.
    #[error("not a CRI log line: {0}")]
    Cri(&'static str),
    /// Not a Docker json-file object.
    #[error("not a Docker json-file log line: {0}")]
    Docker(String),
}

fn time(s: &[u8]) -> Option<u64> {
    let t: Timestamp = std::str::from_utf8(s).ok()?.parse().ok()?;
    u64::try_from(t.as_nanosecond()).ok()
}

/// Parses a CRI line: `<time> <stream> <P|F> <message>`; the message may be empty (then
/// without the space before it).
pub fn parse_cri(line: &[u8]) -> Result<Line<'_>, ParseError> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let t = parts.next().ok_or(ParseError::Cri("empty"))?;
    let time_unix_nano = time(t).ok_or(ParseError::Cri("bad time"))?;
    let stream = parts
        .next()
        .and_then(Stream::parse)
        .ok_or(ParseError::Cri("bad stream"))?;
    let partial = match parts.next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(ParseError::Cri("bad tag")),
    };
    Ok(Line {
        time_unix_nano,
        stream,
        partial,
        message: Cow::Borrowed(parts.next().unwrap_or_default()),
    })
}

#[derive(serde::Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    stream: Cow<'a, str>,
    time: Cow<'a, str>,
}

/// Parses a Docker json-file line.
pub fn parse_docker(line: &[u8]) -> Result<Line<'_>, ParseError> {
    let d: DockerLine<'_> =
        serde_json::from_slice(line).map_err(|e| ParseError::Docker(e.to_string()))?;
    let stream = Stream::parse(d.stream.as_bytes())
        .ok_or_else(|| ParseError::Docker(format!("bad stream '{}'", d.stream)))?;
    let time_unix_nano = time(d.time.as_bytes())
        .ok_or_else(|| ParseError::Docker(format!("bad time '{}'", d.time)))?;
    let (message, partial) = match d.log {
        Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(m) => (Cow::Borrowed(m.as_bytes()), false),
            None => (Cow::Borrowed(s.as_bytes()), true),
        },
        Cow::Owned(mut s) => {
            let full = s.ends_with('\n');
            if full {
                s.pop();
            }
            (Cow::Owned(s.into_bytes()), !full)
        }
    };
    Ok(Line {
        time_unix_nano,
        stream,
        partial,
        message,
    })
}

/// A whole line, its partial parts joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The time of its first part, Unix ns.
    pub time_unix_nano: u64,
    /// Which stream.
    pub stream: Stream,
    /// The line, at most the joiner's maximum.
    pub message: Vec<u8>,
    /// Bytes cut because the line was longer than the maximum (0: whole).
    pub truncated: usize,
}

/// Joins partial lines into records, per stream (a runtime may interleave stdout's and
/// stderr's parts), keeping at most `max` bytes of a record and counting what it cut.
#[derive(Debug)]
pub struct Joiner {
    max: usize,
    open: [Option<Record>; 2],
}

impl Joiner {
    /// A joiner keeping at most `max` bytes per record.
    pub fn new(max: usize) -> Joiner {
        Joiner {
            max,
            open: [None, None],
        }
    }

    /// Adds a line; returns the record it completes, if it does.
    pub fn push(&mut self, line: Line<'_>) -> Option<Record> {
        let slot = &mut self.open[line.stream as usize];
        let record = slot.get_or_insert_with(|| Record {
            time_unix_nano: line.time_unix_nano,
            stream: line.stream,
            message: Vec::new(),
            truncated: 0,
        });
        let room = self.max.saturating_sub(record.message.len());
        let keep = line.message.len().min(room);
        record.message.extend_from_slice(&line.message[..keep]);
        record.truncated += line.message.len() - keep;
        if line.partial { None } else { slot.take() }
    }

    /// The records still waiting for their last part (a container that died mid-line, a
    /// flush timeout), oldest stream first.
    pub fn flush(&mut self) -> Vec<Record> {
        let mut out: Vec<Record> = self.open.iter_mut().filter_map(Option::take).collect();
        out.sort_by_key(|r| r.time_unix_nano);
        out
    }
}

/// An OTLP severity: its number (`SeverityNumber`) and the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity {
    /// `SeverityNumber`: 1 trace, 5 debug, 9 info, 13 warn, 17 error, 21 fatal.
    pub number: i32,
    /// The canonical text (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`).
    pub text: &'static str,
}

const TRACE: Severity = Severity {
    number: 1,
    text: "TRACE",
};
const DEBUG: Severity = Severity {
    number: 5,
    text: "DEBUG",
};
const INFO: Severity = Severity {
    number: 9,
    text: "INFO",
};
const WARN: Severity = Severity {
    number: 13,
    text: "WARN",
};
const ERROR: Severity = Severity {
    number: 17,
    text: "ERROR",
};
const FATAL: Severity = Severity {
    number: 21,
    text: "FATAL",
};

/// The severity a level word names, in any case: `trace`, `debug`, `info`, `notice`,
/// `warn`/`warning`, `error`/`err`, `critical`/`crit`, `fatal`, `panic`.
pub fn level_word(word: &str) -> Option<Severity> {
    Some(match word.to_ascii_lowercase().as_str() {
        "trace" => TRACE,
        "debug" => DEBUG,
        "info" | "notice" => INFO,
        "warn" | "warning" => WARN,
        "error" | "err" => ERROR,
        "fatal" | "critical" | "crit" | "panic" | "dpanic" => FATAL,
        _ => return None,
    })
}

/// The JSON keys read as a record's level, in order.
pub const JSON_LEVEL_KEYS: [&str; 4] = ["level", "severity", "lvl", "log.level"];

/// The severity of a JSON object line: the first of [`JSON_LEVEL_KEYS`] present as a
/// string naming a level (`log.level` also as `{"log":{"level":..}}`).
pub fn json_severity(object: &serde_json::Map<String, serde_json::Value>) -> Option<Severity> {
    JSON_LEVEL_KEYS.iter().find_map(|key| {
        let value = object.get(*key).or_else(|| {
            let (outer, inner) = key.split_once('.')?;
            object.get(outer)?.as_object()?.get(inner)
        })?;
        level_word(value.as_str()?)
    })
}

/// The severity a plain line states at its start: a level word (`ERROR`, `[warn]`,
/// `INFO:root:` as Python's logging writes it), Go's `panic:`, a glog/klog prefix
/// (`E1207 06:00:00.000000 ...`), or a logfmt `level=` field; `None` when it states none.
pub fn text_severity(message: &[u8]) -> Option<Severity> {
    let text = std::str::from_utf8(&message[..message.len().min(256)])
        .unwrap_or_else(|e| std::str::from_utf8(&message[..e.valid_up_to()]).unwrap_or(""));
    let text = text.trim_start();
    if text.starts_with("panic: ") || text.starts_with("fatal error: ") {
        return Some(FATAL);
    }
    if let Some(s) = glog(text) {
        return Some(s);
    }
    let word: &str = text
        .trim_start_matches('[')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    if let Some(s) = level_word(word).filter(|_| word.len() >= 3) {
        return Some(s);
    }
    text.split_ascii_whitespace()
        .find_map(|field| field.strip_prefix("level="))
        .and_then(|v| level_word(v.trim_matches('"')))
}

/// glog/klog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, L one of I W E F.
fn glog(text: &str) -> Option<Severity> {
    let b = text.as_bytes();
    if b.len() < 6 || !b[1..5].iter().all(u8::is_ascii_digit) || b[5] != b' ' {
        return None;
    }
    Some(match b[0] {
        b'I' => INFO,
        b'W' => WARN,
        b'E' => ERROR,
        b'F' => FATAL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-12-07T06:00:00.123456789Z";
    const T_NANOS: u64 = 1_796_623_200_123_456_789;

    #[test]
    fn cri_lines_as_containerd_and_cri_o_write_them() {
        let text = format!("{T} stdout F hello world");
        let l = parse_cri(text.as_bytes()).unwrap();
        assert_eq!(l.time_unix_nano, T_NANOS);
        assert_eq!((l.stream, l.partial), (Stream::Stdout, false));
        assert_eq!(&*l.message, b"hello world");
        // CRI-O with an offset; a partial line; an empty message.
        let l = parse_cri(b"2026-12-07T07:00:00.123456789+01:00 stderr P part").unwrap();
        assert_eq!(
            (l.time_unix_nano, l.stream, l.partial),
            (T_NANOS, Stream::Stderr, true)
        );
        let empty = format!("{T} stdout F");
        let l = parse_cri(empty.as_bytes()).unwrap();
        assert_eq!(&*l.message, b"");
        for bad in [
            "".to_owned(),
            "garbage".into(),
            format!("{T} stdin F x"),
            format!("{T} stdout X x"),
        ] {
            assert!(parse_cri(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_json_lines_with_escapes_and_partials() {
        let full = format!(r#"{{"log":"a \"quoted\" line\n","stream":"stderr","time":"{T}"}}"#);
        assert_eq!(Format::detect(full.as_bytes()), Format::DockerJson);
        let l = parse_docker(full.as_bytes()).unwrap();
        assert_eq!(&*l.message, br#"a "quoted" line"#);
        assert_eq!(
            (l.stream, l.partial, l.time_unix_nano),
            (Stream::Stderr, false, T_NANOS)
        );
        let part = format!(r#"{{"log":"16 KiB of it","stream":"stdout","time":"{T}"}}"#);
        assert!(parse_docker(part.as_bytes()).unwrap().partial);
        assert!(parse_docker(b"{\"log\":1}").is_err());
        assert_eq!(Format::detect(T.as_bytes()), Format::Cri);
    }

    fn line(stream: Stream, partial: bool, message: &str) -> Line<'_> {
        Line {
            time_unix_nano: T_NANOS,
            stream,
            partial,
            message: Cow::Borrowed(message.as_bytes()),
        }
    }

    #[test]
    fn partial_lines_are_joined_per_stream_and_cut_at_the_maximum() {
        let mut j = Joiner::new(10);
        assert_eq!(j.push(line(Stream::Stdout, true, "abc")), None);
        // stderr's full line between stdout's parts is its own record.
        let e = j.push(line(Stream::Stderr, false, "err")).unwrap();
        assert_eq!(
            (e.message.as_slice(), e.stream),
            (&b"err"[..], Stream::Stderr)
        );
        assert_eq!(j.push(line(Stream::Stdout, true, "defgh")), None);
        let r = j.push(line(Stream::Stdout, false, "ijklmn")).unwrap();
        assert_eq!(r.message, b"abcdefghij");
        assert_eq!(r.truncated, 4);
        // A part with no end (the container died): flushed as it is.
        assert_eq!(j.push(line(Stream::Stdout, true, "last")), None);
        let rest = j.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].message, b"last");
        assert!(j.flush().is_empty());
    }

    #[test]
    fn severities_from_level_words_prefixes_and_json_fields() {
        let sev = |s: &str| text_severity(s.as_bytes()).map(|s| s.text);
        assert_eq!(sev("ERROR something broke"), Some("ERROR"));
        assert_eq!(sev("  [warn] disk almost full"), Some("WARN"));
        assert_eq!(sev("INFO:root:started"), Some("INFO"));
        assert_eq!(sev("WARNING:urllib3:retrying"), Some("WARN"));
        assert_eq!(
            sev("panic: runtime error: index out of range"),
            Some("FATAL")
        );
        assert_eq!(
            sev("E1207 06:00:00.000000    1 main.go:42] failed"),
            Some("ERROR")
        );
        assert_eq!(
            sev("I1207 06:00:00.000000    1 main.go:42] ok"),
            Some("INFO")
        );
        assert_eq!(sev(r#"ts=2026-12-07 level=warn msg="slow""#), Some("WARN"));
        assert_eq!(sev("Information about the run"), None);
        assert_eq!(sev("epoch 3 loss 0.12"), None);
        assert_eq!(
            sev("Errored out? no: Err"),
            None,
            "a longer word is no level word"
        );
        let json = |s: &str| {
            json_severity(
                serde_json::from_str::<serde_json::Value>(s)
                    .unwrap()
                    .as_object()
                    .unwrap(),
            )
            .map(|s| s.number)
        };
        assert_eq!(json(r#"{"level":"ERROR","msg":"x"}"#), Some(17));
        assert_eq!(json(r#"{"severity":"Warning"}"#), Some(13));
        assert_eq!(json(r#"{"lvl":"debug"}"#), Some(5));
        assert_eq!(json(r#"{"log.level":"info"}"#), Some(9));
        assert_eq!(json(r#"{"log":{"level":"fatal"}}"#), Some(21));
        assert_eq!(json(r#"{"level":30}"#), None);
        assert_eq!(json(r#"{"msg":"no level"}"#), None);
    }

    #[test]
    fn invalid_utf8_does_not_hide_a_level() {
        let mut m = b"ERROR bad bytes: ".to_vec();
        m.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(text_severity(&m).map(|s| s.text), Some("ERROR"));
    }
}
