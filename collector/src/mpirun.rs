//! `hpcotel mpirun`: runs an MPI launcher (`mpirun`, `mpiexec`) so that every rank preloads
//! hpcotel's PMPI interposition library (`libhpcotel_mpi.so`) and exports to the collector.
//!
//! The launcher's flavour comes from its `--version` output: Open MPI gets `-x NAME=VALUE`,
//! Hydra (MPICH, Intel MPI, MVAPICH) gets `-genv NAME VALUE`, placed before the user's
//! arguments. The ranks receive `LD_PRELOAD` (the library first, then any `LD_PRELOAD`
//! already set), `OTEL_EXPORTER_OTLP_ENDPOINT`, `TRACEPARENT` and, when set,
//! `OTEL_SERVICE_NAME`; the launcher's own environment is left alone.
//!
//! The library is built per MPI implementation (`mpi/build.sh`), and a build preloaded into
//! another MPI's job breaks it (MPICH aborts with "Invalid communicator"). Without
//! `--library` it is looked for next to the `hpcotel` executable, then in `../lib/`; for a
//! Hydra launcher first in `mpich/` next to the executable, where `mpi/build.sh` puts
//! MPICH's build. Whichever library is chosen, the MPI it links (its ELF `DT_NEEDED`
//! sonames: `libmpi.so.40` Open MPI, `libmpich.so.*` MPICH, `libmpi.so.12` Intel MPI and
//! the MPICH ABI) must be of the launcher's family, else hpcotel exits 1 before launching;
//! a library that links no known MPI is not checked.
//!
//! The endpoint must be `http://`: the library exports over plain HTTP to the node-local
//! collector, which does TLS towards the backend.
//!
//! Trace context: a valid W3C `TRACEPARENT` in the environment is passed through unchanged
//! and nothing else is emitted. Otherwise a new trace starts here: its id is printed on
//! stderr, the ranks get `TRACEPARENT=00-<trace>-<span>-01`, and once the launcher exits
//! one root span (`mpirun <program>`, the launcher's wall-clock run) is sent for that span id
//! over OTLP/HTTP, so the job's spans hang off it.
//!
//! Signals, as `system(3)` and `time(1)` do: while the launcher runs, SIGINT and SIGQUIT do
//! not stop hpcotel and are not forwarded, because the launcher stays in hpcotel's process
//! group and the terminal delivers Ctrl-C / Ctrl-\ to it directly; SIGTERM (what `kill` and
//! batch schedulers send) is forwarded to the launcher. Either way hpcotel waits for the
//! launcher, sends the root span and exits with the launcher's code (128 + signal number
//! when the launcher was killed by a signal).

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use hpcotel_core::proto;
use hpcotel_core::telemetry::{kv, kv_int, scope, unix_nanos};
use hpcotel_core::{Batch, Exporter as _, semconv};
use hpcotel_exporters::otlp::{self, Endpoint, OtlpExporter, Protocol, Scheme};
use proto::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use proto::resource::v1::Resource;
use proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};

/// File name of the PMPI interposition library.
pub const LIBRARY_NAME: &str = "libhpcotel_mpi.so";
/// Default launcher.
pub const DEFAULT_LAUNCHER: &str = "mpirun";
/// Default collector endpoint: the OTLP/HTTP base URL the ranks export to.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
/// Deadline for sending the root span (connecting included).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline for `<launcher> --version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// `service.name` of the root span when `OTEL_SERVICE_NAME` is unset.
const DEFAULT_SERVICE_NAME: &str = "mpirun";

/// What `hpcotel mpirun` runs and where the ranks export to.
#[derive(Debug, Clone)]
pub struct Options {
    /// The PMPI library; `None`: see [`library_candidates`].
    pub library: Option<PathBuf>,
    /// OTLP/HTTP base URL (`http://host:port`; https is refused, see the module docs).
    pub endpoint: String,
    /// The launcher program (`mpirun`, `mpiexec`, a path).
    pub launcher: String,
    /// The launcher's arguments, as given after `--`.
    pub args: Vec<String>,
}

/// The MPI launcher family, which decides how variables reach the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Open MPI (`mpirun`/`prterun`): `-x NAME=VALUE`.
    OpenMpi,
    /// Hydra (MPICH, Intel MPI, MVAPICH): `-genv NAME VALUE`.
    Hydra,
}

/// The launcher's flavour from its `--version` output (stdout and stderr), if recognised.
pub fn flavor(version_output: &str) -> Option<Flavor> {
    let text = version_output.to_ascii_lowercase();
    if ["open mpi", "openrte", "open-mpi"]
        .iter()
        .any(|m| text.contains(m))
    {
        Some(Flavor::OpenMpi)
    } else if ["hydra", "intel(r) mpi"].iter().any(|m| text.contains(m)) {
        Some(Flavor::Hydra)
    } else {
        None
    }
}

/// A W3C trace context: trace id and parent (span) id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id, not all zero.
    pub trace_id: [u8; 16],
    /// 8-byte span id, not all zero.
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// A new random context.
    pub fn random() -> Self {
        loop {
            let trace_id: [u8; 16] = rand::random();
            let span_id: [u8; 8] = rand::random();
            if trace_id != [0; 16] && span_id != [0; 8] {
                return Self { trace_id, span_id };
            }
        }
    }

    /// Parses a version-00 `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not
    /// all zero); `None` when it is not one.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let trace_id: [u8; 16] = hex_decode(trace)?;
        let span_id: [u8; 8] = hex_decode(span)?;
        let _flags: [u8; 1] = hex_decode(flags)?;
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// `00-<trace>-<span>-01` (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from exactly `2N` lowercase hex digits.
fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The variables every rank gets, in order: `LD_PRELOAD` (`library` first, then the entries
/// of `existing_preload` other than `library`), `OTEL_EXPORTER_OTLP_ENDPOINT`, `TRACEPARENT`
/// and, when given, `OTEL_SERVICE_NAME`.
pub fn rank_env(
    library: &Path,
    existing_preload: Option<&str>,
    endpoint: &str,
    traceparent: &str,
    service_name: Option<&str>,
) -> Vec<(String, String)> {
    let library = library.to_string_lossy().into_owned();
    let mut preload = vec![library.as_str()];
    // ld.so separates LD_PRELOAD entries with colons or spaces.
    preload.extend(
        existing_preload
            .unwrap_or("")
            .split([':', ' '])
            .filter(|e| !e.is_empty() && *e != library),
    );
    let mut env = vec![
        ("LD_PRELOAD".to_owned(), preload.join(":")),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            endpoint.to_owned(),
        ),
        ("TRACEPARENT".to_owned(), traceparent.to_owned()),
    ];
    if let Some(name) = service_name {
        env.push(("OTEL_SERVICE_NAME".to_owned(), name.to_owned()));
    }
    env
}

/// The launcher's arguments: `env` in the flavour's form, then the user's `args`.
pub fn launcher_args(flavor: Flavor, env: &[(String, String)], args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(env.len() * 3 + args.len());
    for (name, value) in env {
        match flavor {
            Flavor::OpenMpi => out.extend(["-x".to_owned(), format!("{name}={value}")]),
            Flavor::Hydra => out.extend(["-genv".to_owned(), name.clone(), value.clone()]),
        }
    }
    out.extend(args.iter().cloned());
    out
}

/// Launcher options (Open MPI and Hydra) followed by one value, and by two.
const ONE_VALUE: &[&str] = &[
    "-n",
    "-np",
    "--n",
    "--np",
    "-c",
    "-N",
    "-npernode",
    "--npernode",
    "-npersocket",
    "--npersocket",
    "-ppn",
    "-H",
    "-host",
    "--host",
    "-hosts",
    "-hostfile",
    "--hostfile",
    "-machinefile",
    "--machinefile",
    "-f",
    "-rf",
    "--rankfile",
    "-map-by",
    "--map-by",
    "-bind-to",
    "--bind-to",
    "-rank-by",
    "--rank-by",
    "-x",
    "-wdir",
    "--wdir",
    "-wd",
    "--wd",
    "-path",
    "--path",
    "-prefix",
    "--prefix",
    "-launcher",
    "-bootstrap",
    "-iface",
    "-genvlist",
    "-envlist",
    "-configfile",
    "--app",
    "-output-filename",
    "--output-filename",
];
const TWO_VALUES: &[&str] = &["-mca", "--mca", "-gmca", "--gmca", "-genv", "-env"];

/// The program the launcher starts, as a file name: the first argument that is neither an
/// option, nor the value of a well-known option, nor a bare number. A cheap guess; `None`
/// when nothing fits.
pub fn program_name(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with('-') {
            let skip = if a.contains('=') {
                0
            } else if ONE_VALUE.contains(&a.as_str()) {
                1
            } else if TWO_VALUES.contains(&a.as_str()) {
                2
            } else {
                0
            };
            for _ in 0..skip {
                it.next();
            }
            continue;
        }
        if a.is_empty() || a == ":" || a.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        return Path::new(a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
    }
    None
}

/// The exit code hpcotel reports for the launcher's status: its code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

/// The root span of a job this command started the trace of.
#[derive(Debug, Clone)]
pub struct RootSpan<'a> {
    /// Its trace and span id.
    pub context: TraceContext,
    /// The launcher's full argv (program first).
    pub argv: &'a [String],
    /// `OTEL_SERVICE_NAME`, if set.
    pub service_name: Option<&'a str>,
    /// When the launcher started.
    pub start: SystemTime,
    /// When it exited.
    pub end: SystemTime,
    /// Its exit code (see [`exit_code`]).
    pub exit_code: u8,
}

impl RootSpan<'_> {
    /// The span as OTLP: `mpirun <program>`, INTERNAL, `process.command_args`,
    /// `process.exit.code`, status ERROR on a non-zero exit.
    pub fn to_resource_spans(&self) -> ResourceSpans {
        // argv[0] is the launcher; the program is among the rest.
        let name = match program_name(self.argv.get(1..).unwrap_or(&[])) {
            Some(p) => format!("mpirun {p}"),
            None => "mpirun".to_owned(),
        };
        let args = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: self
                    .argv
                    .iter()
                    .map(|a| AnyValue {
                        value: Some(any_value::Value::StringValue(a.clone())),
                    })
                    .collect(),
            })),
        };
        let status = if self.exit_code == 0 {
            Status::default()
        } else {
            Status {
                message: format!("launcher exited with code {}", self.exit_code),
                code: status::StatusCode::Error as i32,
            }
        };
        let span = Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            // Sampled; "is the parent remote" known (there is no parent).
            flags: 0x101,
            name,
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: unix_nanos(self.start),
            end_time_unix_nano: unix_nanos(self.end),
            attributes: vec![
                KeyValue {
                    key: semconv::PROCESS_COMMAND_ARGS.to_owned(),
                    value: Some(args),
                    ..Default::default()
                },
                kv_int(semconv::PROCESS_EXIT_CODE, i64::from(self.exit_code)),
            ],
            status: Some(status),
            ..Default::default()
        };
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    semconv::SERVICE_NAME,
                    self.service_name.unwrap_or(DEFAULT_SERVICE_NAME),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// Where the library is looked for when `--library` is not given: next to the executable,
/// then `../lib/`; for a Hydra launcher first `mpich/` next to the executable (where
/// `mpi/build.sh` puts MPICH's build).
pub fn library_candidates(exe: &Path, flavor: Flavor) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(3);
    if flavor == Flavor::Hydra {
        out.push(dir.join("mpich").join(LIBRARY_NAME));
    }
    out.push(dir.join(LIBRARY_NAME));
    let up = dir.parent().unwrap_or(dir);
    out.push(up.join("lib").join(LIBRARY_NAME));
    out
}

/// The library given with `--library`, as an absolute path, or why it is not usable.
fn explicit_library(path: &Path) -> Result<PathBuf, String> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if abs.is_file() {
        Ok(abs)
    } else {
        Err(format!(
            "{LIBRARY_NAME} not found: {} (from --library / HPCOTEL_MPI_LIBRARY) is not a file",
            abs.display()
        ))
    }
}

/// The library to preload for a launcher of `flavor` when none is given, or the one-line
/// reason there is none.
fn find_library(flavor: Flavor) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| {
        format!("cannot locate the hpcotel executable to find {LIBRARY_NAME}: {e}; pass --library")
    })?;
    let tried = library_candidates(&exe, flavor);
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "{LIBRARY_NAME} not found (tried {}); build it or pass --library / HPCOTEL_MPI_LIBRARY",
        list.join(", ")
    ))
}

/// The MPI implementation a build of the library links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedMpi {
    /// Open MPI: `libmpi.so.40` (4.x, 5.x) or `libmpi.so.20` (2.x).
    OpenMpi,
    /// MPICH: `libmpich.so.*`.
    Mpich,
    /// `libmpi.so.12`: Intel MPI, MVAPICH and other MPICH-ABI implementations.
    MpichAbi,
}

impl LinkedMpi {
    /// The MPI of a shared library's soname, if it is one of the known ones.
    pub fn from_soname(soname: &str) -> Option<Self> {
        if soname.starts_with("libmpich.so") {
            return Some(Self::Mpich);
        }
        match soname {
            "libmpi.so.40" | "libmpi.so.20" => Some(Self::OpenMpi),
            "libmpi.so.12" => Some(Self::MpichAbi),
            _ => None,
        }
    }

    /// The launcher family whose jobs this build works in.
    pub fn flavor(self) -> Flavor {
        match self {
            Self::OpenMpi => Flavor::OpenMpi,
            Self::Mpich | Self::MpichAbi => Flavor::Hydra,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::OpenMpi => "Open MPI",
            Self::Mpich => "MPICH",
            Self::MpichAbi => "Intel MPI / the MPICH ABI",
        }
    }
}

/// The MPI a library links, with the soname that says so: the first known MPI among its
/// ELF `DT_NEEDED` entries. A file that is not an ELF64 little-endian object with section
/// headers is searched as bytes for the first known MPI soname instead. `None`: no known MPI.
pub fn linked_mpi(bytes: &[u8]) -> Option<(LinkedMpi, String)> {
    let names = elf_needed(bytes).unwrap_or_else(|| soname_tokens(bytes));
    names
        .into_iter()
        .find_map(|n| LinkedMpi::from_soname(&n).map(|mpi| (mpi, n)))
}

/// The `DT_NEEDED` entries of an ELF64 little-endian object, from its `SHT_DYNAMIC`
/// sections and their string tables (empty for a static one); `None` when `bytes` is not
/// such an object, has no section headers or is malformed.
fn elf_needed(bytes: &[u8]) -> Option<Vec<String>> {
    const SHT_DYNAMIC: u32 = 6;
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    // `N` bytes of `b` at `at`.
    fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    let usize_of = |b: &[u8], at: usize| usize::try_from(u64::from_le_bytes(field(b, at)?)).ok();
    // e_shoff, e_shentsize, e_shnum of the ELF64 header.
    let shoff = usize_of(bytes, 0x28)?;
    let shentsize = usize::from(u16::from_le_bytes(field(bytes, 0x3a)?));
    let shnum = usize::from(u16::from_le_bytes(field(bytes, 0x3c)?));
    if shnum == 0 || shentsize < 0x40 {
        return None;
    }
    // The header of section `i`: sh_type at 4, sh_offset at 0x18, sh_size at 0x20, sh_link
    // at 0x28.
    let header = |i: usize| -> Option<&[u8]> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        bytes.get(at..at.checked_add(0x40)?)
    };
    // The file bytes of a section (not of every section: .bss has none).
    let data = |header: &[u8]| -> Option<&[u8]> {
        let (offset, size) = (usize_of(header, 0x18)?, usize_of(header, 0x20)?);
        bytes.get(offset..offset.checked_add(size)?)
    };
    let mut needed = Vec::new();
    for i in 0..shnum {
        let section = header(i)?;
        if u32::from_le_bytes(field(section, 4)?) != SHT_DYNAMIC {
            continue;
        }
        let dynamic = data(section)?;
        let link = u32::from_le_bytes(field(section, 0x28)?);
        let strtab = data(header(usize::try_from(link).ok()?)?)?;
        for entry in dynamic.chunks_exact(16) {
            let tag = u64::from_le_bytes(field(entry, 0)?);
            let value = u64::from_le_bytes(field(entry, 8)?);
            match tag {
                DT_NULL => break,
                DT_NEEDED => {
                    let name = strtab.get(usize::try_from(value).ok()?..)?;
                    let end = name.iter().position(|&b| b == 0)?;
                    needed.push(String::from_utf8_lossy(&name[..end]).into_owned());
                }
                _ => {}
            }
        }
    }
    Some(needed)
}

/// Every `libmpi…` token (soname characters) in `bytes`, in order.
fn soname_tokens(bytes: &[u8]) -> Vec<String> {
    const PREFIX: &[u8] = b"libmpi";
    let is_soname_byte = |b: &u8| b.is_ascii_alphanumeric() || b"._+-".contains(b);
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(PREFIX.len()).position(|w| w == PREFIX) {
        let start = at + found;
        let len = bytes[start..]
            .iter()
            .take_while(|b| is_soname_byte(b))
            .count();
        out.push(String::from_utf8_lossy(&bytes[start..start + len]).into_owned());
        at = start + len;
    }
    out
}

/// Checks that `library` (if it links a known MPI) was built for the launcher's family.
fn check_library_mpi(library: &Path, launcher: &str, flavor: Flavor) -> Result<(), String> {
    // An unreadable library is left to the dynamic loader to report.
    let Ok(bytes) = std::fs::read(library) else {
        return Ok(());
    };
    mismatch(library, &bytes, launcher, flavor).map_or(Ok(()), Err)
}

/// The one-line error when the library in `bytes` links an MPI of another family than
/// `flavor`'s.
fn mismatch(library: &Path, bytes: &[u8], launcher: &str, flavor: Flavor) -> Option<String> {
    let (mpi, soname) = linked_mpi(bytes)?;
    if mpi.flavor() == flavor {
        return None;
    }
    let (launcher_is, mpicc) = match flavor {
        Flavor::OpenMpi => ("Open MPI's launcher", "mpicc.openmpi"),
        Flavor::Hydra => ("a Hydra launcher (MPICH, Intel MPI)", "mpicc.mpich"),
    };
    Some(format!(
        "{} was built for {} (it links {soname}) but {launcher} is {launcher_is}: build the \
         library with mpi/build.sh --mpicc {mpicc} (or that MPI's mpicc) and pass it with \
         --library",
        library.display(),
        mpi.name(),
    ))
}

/// Checks the endpoint is a plain-HTTP OTLP/HTTP base URL.
fn check_endpoint(endpoint: &str) -> Result<Endpoint, String> {
    let ep = Endpoint::parse(endpoint).map_err(|e| format!("--endpoint: {e}"))?;
    match ep.scheme() {
        Some(Scheme::Http) => Ok(ep),
        Some(Scheme::Https) => Err(format!(
            "--endpoint: https is not supported ('{endpoint}'): {LIBRARY_NAME} exports over \
             plain http to the node-local collector, which does TLS towards the backend; pass \
             its OTLP/HTTP receiver, e.g. {DEFAULT_ENDPOINT}"
        )),
        None => Err(format!(
            "--endpoint: expected an OTLP/HTTP base URL http://host:port, got '{endpoint}'"
        )),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Runs `<launcher> --version` and recognises the flavour.
async fn detect_flavor(launcher: &str) -> Result<Flavor, String> {
    let run = tokio::process::Command::new(launcher)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot run the MPI launcher '{launcher}': {e} (set --launcher or HPCOTEL_MPIRUN)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "'{launcher} --version' did not finish within {VERSION_TIMEOUT:?}"
            ));
        }
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    flavor(&text).ok_or_else(|| {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("(no output)");
        format!(
            "cannot tell which MPI '{launcher}' belongs to: '{launcher} --version' says '{first}', \
             expected Open MPI or Hydra (MPICH, Intel MPI); set --launcher or HPCOTEL_MPIRUN"
        )
    })
}

/// Sends `signal` to process `pid`.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory of this process. The child is
    // not reaped yet (only `wait` below reaps it), so `pid` still names it.
    let _ = unsafe { libc::kill(pid, signal) };
}

/// Runs the launcher to completion. SIGTERM is forwarded; SIGINT and SIGQUIT are left to
/// the terminal's process group (see the module docs).
async fn run_launcher(
    launcher: &str,
    args: &[String],
) -> Result<(ExitStatus, SystemTime, SystemTime), String> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before the launcher starts, so that no signal can end hpcotel in between.
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = handlers else {
        return Err("cannot install signal handlers".to_owned());
    };
    let start = SystemTime::now();
    let mut child = tokio::process::Command::new(launcher)
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot start the MPI launcher '{launcher}': {e}"))?;
    let pid = child.id();
    let status = loop {
        tokio::select! {
            status = child.wait() => {
                break status.map_err(|e| format!("waiting for '{launcher}': {e}"))?;
            }
            _ = term.recv() => {
                if let Some(pid) = pid {
                    send_signal(pid, libc::SIGTERM);
                }
            }
            _ = int.recv() => {}
            _ = quit.recv() => {}
        }
    };
    Ok((status, start, SystemTime::now()))
}

/// Sends the root span; the one-line reason on failure.
async fn send_root_span(endpoint: &Endpoint, span: ResourceSpans) -> Result<(), String> {
    let config = otlp::Config {
        endpoint: Some(endpoint.clone()),
        timeout: SEND_TIMEOUT,
        ..Default::default()
    };
    let exporter = OtlpExporter::new(&config, Protocol::HttpProtobuf).map_err(|e| e.to_string())?;
    let batch = Batch::Traces(vec![span]);
    // reqwest's timeout bounds the request; this bounds everything else as well.
    match tokio::time::timeout(
        SEND_TIMEOUT + Duration::from_millis(500),
        exporter.export(&batch),
    )
    .await
    {
        Ok(Ok(outcome)) if outcome.rejected > 0 => {
            Err(format!("the collector rejected it: {}", outcome.message))
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {SEND_TIMEOUT:?}")),
    }
}

/// `hpcotel mpirun`: see the module docs. Returns the launcher's exit code, or 1 with a
/// one-line error on stderr when the launcher could not be run.
pub fn run(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(options)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(options: Options) -> Result<u8, String> {
    let explicit = options
        .library
        .as_deref()
        .map(explicit_library)
        .transpose()?;
    let endpoint = check_endpoint(&options.endpoint)?;
    let flavor = detect_flavor(&options.launcher).await?;
    let library = match explicit {
        Some(library) => library,
        None => find_library(flavor)?,
    };
    check_library_mpi(&library, &options.launcher, flavor)?;

    let inherited = env_nonempty("TRACEPARENT").filter(|t| TraceContext::parse(t).is_some());
    let (traceparent, ours) = match inherited {
        Some(t) => (t, None),
        None => {
            let ctx = TraceContext::random();
            (ctx.traceparent(), Some(ctx))
        }
    };
    let service_name = env_nonempty("OTEL_SERVICE_NAME");
    let env = rank_env(
        &library,
        env_nonempty("LD_PRELOAD").as_deref(),
        &options.endpoint,
        &traceparent,
        service_name.as_deref(),
    );
    let args = launcher_args(flavor, &env, &options.args);

    if let Some(ctx) = &ours {
        eprintln!("hpcotel: MPI job trace {}", ctx.trace_hex());
    }
    let (status, start, end) = run_launcher(&options.launcher, &args).await?;
    let code = exit_code(status);

    if let Some(context) = ours {
        let argv: Vec<String> = std::iter::once(options.launcher.clone())
            .chain(args)
            .collect();
        let span = RootSpan {
            context,
            argv: &argv,
            service_name: service_name.as_deref(),
            start,
            end,
            exit_code: code,
        }
        .to_resource_spans();
        if let Err(e) = send_root_span(&endpoint, span).await {
            let url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
            eprintln!("hpcotel: warning: the job's root span was not sent to {url}: {e}");
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn flavors_from_version_output() {
        assert_eq!(
            flavor(
                "mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n"
            ),
            Some(Flavor::OpenMpi)
        );
        assert_eq!(flavor("mpirun (OpenRTE) 3.1.6"), Some(Flavor::OpenMpi));
        assert_eq!(
            flavor("HYDRA build details:\n    Version: 4.1.2\n    Release Date: ..."),
            Some(Flavor::Hydra)
        );
        assert_eq!(
            flavor("Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619"),
            Some(Flavor::Hydra)
        );
        assert_eq!(flavor("srun: unrecognized option"), None);
        assert_eq!(flavor(""), None);
    }

    #[test]
    fn open_mpi_args_use_x_before_user_args() {
        let env = rank_env(
            Path::new("/opt/hpcotel/lib/libhpcotel_mpi.so"),
            None,
            "http://collector:4318",
            TP,
            None,
        );
        let args = launcher_args(Flavor::OpenMpi, &env, &s(&["-np", "4", "./a.out", "-x"]));
        assert_eq!(
            args,
            s(&[
                "-x",
                "LD_PRELOAD=/opt/hpcotel/lib/libhpcotel_mpi.so",
                "-x",
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318",
                "-x",
                &format!("TRACEPARENT={TP}"),
                "-np",
                "4",
                "./a.out",
                "-x",
            ])
        );
    }

    #[test]
    fn hydra_args_use_genv_and_pass_service_name() {
        let env = rank_env(
            Path::new("/l/libhpcotel_mpi.so"),
            None,
            "http://127.0.0.1:4318",
            TP,
            Some("cfd-solver"),
        );
        let args = launcher_args(Flavor::Hydra, &env, &s(&["-n", "2", "xhpl"]));
        assert_eq!(
            args,
            s(&[
                "-genv",
                "LD_PRELOAD",
                "/l/libhpcotel_mpi.so",
                "-genv",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318",
                "-genv",
                "TRACEPARENT",
                TP,
                "-genv",
                "OTEL_SERVICE_NAME",
                "cfd-solver",
                "-n",
                "2",
                "xhpl",
            ])
        );
    }

    #[test]
    fn existing_ld_preload_comes_after_ours() {
        let lib = Path::new("/l/libhpcotel_mpi.so");
        let preload = |existing| {
            rank_env(lib, existing, "http://h:1", TP, None)
                .into_iter()
                .find(|(k, _)| k == "LD_PRELOAD")
                .unwrap()
                .1
        };
        assert_eq!(
            preload(Some("/usr/lib/libfoo.so:/usr/lib/libbar.so")),
            "/l/libhpcotel_mpi.so:/usr/lib/libfoo.so:/usr/lib/libbar.so"
        );
        assert_eq!(
            preload(Some("libfoo.so libbar.so")),
            "/l/libhpcotel_mpi.so:libfoo.so:libbar.so"
        );
        // Already preloaded: not twice.
        assert_eq!(
            preload(Some("/l/libhpcotel_mpi.so:libfoo.so")),
            "/l/libhpcotel_mpi.so:libfoo.so"
        );
        assert_eq!(preload(Some("")), "/l/libhpcotel_mpi.so");
        assert_eq!(preload(None), "/l/libhpcotel_mpi.so");
    }

    #[test]
    fn valid_traceparent_passes_through_unchanged() {
        let ctx = TraceContext::parse(TP).expect("valid");
        assert_eq!(ctx.traceparent(), TP);
        assert_eq!(ctx.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // Unsampled flags are kept as given: rank_env passes the string itself.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(TraceContext::parse(unsampled).is_some());
        let env = rank_env(Path::new("/l.so"), None, "http://h:1", unsampled, None);
        assert!(env.contains(&("TRACEPARENT".to_owned(), unsampled.to_owned())));
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_context_round_trips() {
        let ctx = TraceContext::random();
        let tp = ctx.traceparent();
        assert!(tp.ends_with("-01"));
        assert_eq!(TraceContext::parse(&tp), Some(ctx));
    }

    #[test]
    fn program_name_skips_options_and_their_values() {
        assert_eq!(
            program_name(&s(&[
                "-np",
                "4",
                "--bind-to",
                "core",
                "./bin/xhpl",
                "-p",
                "2"
            ])),
            Some("xhpl".into())
        );
        assert_eq!(
            program_name(&s(&[
                "--mca",
                "btl",
                "self,tcp",
                "--oversubscribe",
                "/opt/a.out"
            ])),
            Some("a.out".into())
        );
        assert_eq!(
            program_name(&s(&[
                "-genv",
                "A",
                "B",
                "--map-by=ppr:1:node",
                "python3",
                "x.py"
            ])),
            Some("python3".into())
        );
        // An unknown option with a numeric value: the number is skipped.
        assert_eq!(
            program_name(&s(&["--weird", "8", "app"])),
            Some("app".into())
        );
        assert_eq!(program_name(&s(&["-np", "4"])), None);
        assert_eq!(program_name(&[]), None);
    }

    #[test]
    fn root_span_carries_exit_code_args_and_error_status() {
        let ctx = TraceContext::parse(TP).unwrap();
        let argv = s(&["mpirun", "-x", "LD_PRELOAD=/l.so", "-np", "2", "./solver"]);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let end = start + Duration::from_secs(5);
        let rs = RootSpan {
            context: ctx,
            argv: &argv,
            service_name: None,
            start,
            end,
            exit_code: 3,
        }
        .to_resource_spans();
        let res = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(
            hpcotel_core::telemetry::attr_str(res, semconv::SERVICE_NAME),
            Some("mpirun")
        );
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.name, "mpirun solver");
        assert_eq!(span.trace_id, ctx.trace_id);
        assert_eq!(span.span_id, ctx.span_id);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, span::SpanKind::Internal as i32);
        assert_eq!(span.start_time_unix_nano, 100_000_000_000);
        assert_eq!(span.end_time_unix_nano, 105_000_000_000);
        assert_eq!(
            hpcotel_core::telemetry::attr_int(&span.attributes, semconv::PROCESS_EXIT_CODE),
            Some(3)
        );
        let Some(any_value::Value::ArrayValue(a)) =
            hpcotel_core::telemetry::attr(&span.attributes, semconv::PROCESS_COMMAND_ARGS)
        else {
            panic!("process.command_args is not an array");
        };
        assert_eq!(a.values.len(), argv.len());
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "launcher exited with code 3");

        let ok = RootSpan {
            context: ctx,
            argv: &argv[..1],
            service_name: Some("job"),
            start,
            end,
            exit_code: 0,
        }
        .to_resource_spans();
        let span = &ok.scope_spans[0].spans[0];
        assert_eq!(span.name, "mpirun");
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Unset as i32
        );
    }

    #[test]
    fn library_is_looked_for_next_to_the_executable_then_in_lib() {
        assert_eq!(
            library_candidates(Path::new("/opt/hpcotel/bin/hpcotel"), Flavor::OpenMpi),
            vec![
                PathBuf::from("/opt/hpcotel/bin/libhpcotel_mpi.so"),
                PathBuf::from("/opt/hpcotel/lib/libhpcotel_mpi.so"),
            ]
        );
        // Hydra: MPICH's build (mpi/build.sh puts it in mpich/) first.
        assert_eq!(
            library_candidates(Path::new("/w/target/release/hpcotel"), Flavor::Hydra),
            vec![
                PathBuf::from("/w/target/release/mpich/libhpcotel_mpi.so"),
                PathBuf::from("/w/target/release/libhpcotel_mpi.so"),
                PathBuf::from("/w/target/lib/libhpcotel_mpi.so"),
            ]
        );
    }

    /// A minimal ELF64 little-endian shared object: the null section, `.dynstr`, `.dynamic`
    /// (`DT_NEEDED` for each of `needed`, then `DT_NULL`), a `.rodata` holding `rodata` and
    /// a `.bss`.
    fn elf(needed: &[&str], rodata: &[u8]) -> Vec<u8> {
        let mut dynstr = vec![0u8];
        let mut dynamic = Vec::new();
        for name in needed {
            dynamic.extend(1u64.to_le_bytes());
            dynamic.extend((dynstr.len() as u64).to_le_bytes());
            dynstr.extend(name.as_bytes());
            dynstr.push(0);
        }
        // A DT_SONAME-like entry the parser must skip, then DT_NULL.
        dynamic.extend(14u64.to_le_bytes());
        dynamic.extend(0u64.to_le_bytes());
        dynamic.extend([0u8; 16]);

        let mut out = vec![0u8; 64];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let mut sections = vec![(0u32, 0usize, 0usize, 0u32)];
        for (kind, data, link) in [
            (3u32, &dynstr, 0u32),
            (6, &dynamic, 1),
            (1, &rodata.to_vec(), 0),
        ] {
            sections.push((kind, out.len(), data.len(), link));
            out.extend(data.iter());
        }
        // .bss (SHT_NOBITS): a size but no bytes in the file.
        sections.push((8, out.len(), 1 << 20, 0));
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len();
        for (kind, offset, size, link) in &sections {
            let mut sh = [0u8; 64];
            sh[4..8].copy_from_slice(&kind.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(*offset as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
            sh[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            out.extend(sh);
        }
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        out
    }

    #[test]
    fn sonames_name_their_mpi() {
        assert_eq!(
            LinkedMpi::from_soname("libmpi.so.40"),
            Some(LinkedMpi::OpenMpi)
        );
        assert_eq!(
            LinkedMpi::from_soname("libmpich.so.12"),
            Some(LinkedMpi::Mpich)
        );
        assert_eq!(
            LinkedMpi::from_soname("libmpi.so.12"),
            Some(LinkedMpi::MpichAbi)
        );
        assert_eq!(LinkedMpi::from_soname("libmpi_cxx.so.40"), None);
        assert_eq!(LinkedMpi::from_soname("libc.so.6"), None);
        assert_eq!(LinkedMpi::OpenMpi.flavor(), Flavor::OpenMpi);
        assert_eq!(LinkedMpi::Mpich.flavor(), Flavor::Hydra);
        assert_eq!(LinkedMpi::MpichAbi.flavor(), Flavor::Hydra);
    }

    #[test]
    fn linked_mpi_comes_from_dt_needed() {
        let open_mpi = elf(&["libm.so.6", "libmpi.so.40", "libc.so.6"], b"");
        assert_eq!(
            elf_needed(&open_mpi),
            Some(vec![
                "libm.so.6".into(),
                "libmpi.so.40".into(),
                "libc.so.6".into()
            ])
        );
        assert_eq!(
            linked_mpi(&open_mpi),
            Some((LinkedMpi::OpenMpi, "libmpi.so.40".into()))
        );
        assert_eq!(
            linked_mpi(&elf(&["libgcc_s.so.1", "libmpich.so.12"], b"")),
            Some((LinkedMpi::Mpich, "libmpich.so.12".into()))
        );
        assert_eq!(
            linked_mpi(&elf(&["libmpi.so.12"], b"")),
            Some((LinkedMpi::MpichAbi, "libmpi.so.12".into()))
        );
        // A string in the data is not a dependency.
        assert_eq!(
            linked_mpi(&elf(&["libmpi.so.40"], b"\0hint: libmpich.so.12\0")),
            Some((LinkedMpi::OpenMpi, "libmpi.so.40".into()))
        );
        assert_eq!(linked_mpi(&elf(&["libc.so.6"], b"libmpi.so.40")), None);
        // Static: no dynamic section, no dependencies.
        assert_eq!(elf_needed(&elf(&[], b"")), Some(vec![]));
    }

    #[test]
    fn files_that_are_no_elf_are_searched_for_sonames() {
        assert_eq!(
            linked_mpi(b"junk\0libmpi.so.40\0more"),
            Some((LinkedMpi::OpenMpi, "libmpi.so.40".into()))
        );
        assert_eq!(
            linked_mpi(b"libmpi_mpifh.so.40 libmpich.so.12"),
            Some((LinkedMpi::Mpich, "libmpich.so.12".into()))
        );
        assert_eq!(
            linked_mpi(b"xx libmpi.so.12"),
            Some((LinkedMpi::MpichAbi, "libmpi.so.12".into()))
        );
        assert_eq!(linked_mpi(b"not really a shared object"), None);
        assert_eq!(linked_mpi(b"libmpi"), None);
        assert_eq!(linked_mpi(b""), None);
        // An ELF cut short (its section headers gone): searched as bytes, no panic.
        let whole = elf(&["libmpich.so.12"], b"");
        let cut = &whole[..whole.len() - 64];
        assert_eq!(elf_needed(cut), None);
        assert_eq!(
            linked_mpi(cut),
            Some((LinkedMpi::Mpich, "libmpich.so.12".into()))
        );
        for len in 0..whole.len() {
            let _ = linked_mpi(&whole[..len]);
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_real_executable_s_dependencies_are_read() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needed = elf_needed(&exe).expect("this test binary is an ELF64 LE object");
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
    }

    #[test]
    fn a_library_of_the_other_family_is_refused() {
        let lib = Path::new("/x/libhpcotel_mpi.so");
        let open_mpi = elf(&["libmpi.so.40"], b"");
        let mpich = elf(&["libmpich.so.12"], b"");
        assert_eq!(
            mismatch(lib, &open_mpi, "mpirun.mpich", Flavor::Hydra).as_deref(),
            Some(
                "/x/libhpcotel_mpi.so was built for Open MPI (it links libmpi.so.40) but \
                 mpirun.mpich is a Hydra launcher (MPICH, Intel MPI): build the library with \
                 mpi/build.sh --mpicc mpicc.mpich (or that MPI's mpicc) and pass it with \
                 --library"
            )
        );
        let err = mismatch(lib, &mpich, "mpirun", Flavor::OpenMpi).expect("mismatch");
        assert!(
            err.contains("built for MPICH (it links libmpich.so.12)")
                && err.contains("mpirun is Open MPI's launcher")
                && err.contains("--mpicc mpicc.openmpi"),
            "{err}"
        );
        let intel = elf(&["libmpi.so.12"], b"");
        assert!(mismatch(lib, &intel, "mpiexec", Flavor::OpenMpi).is_some());
        // Same family, or no known MPI: fine.
        assert_eq!(mismatch(lib, &open_mpi, "mpirun", Flavor::OpenMpi), None);
        assert_eq!(mismatch(lib, &mpich, "mpiexec", Flavor::Hydra), None);
        assert_eq!(mismatch(lib, &intel, "mpiexec", Flavor::Hydra), None);
        assert_eq!(mismatch(lib, b"anything", "mpirun", Flavor::Hydra), None);
    }

    #[test]
    fn exit_codes_of_signals_are_128_plus() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert!(check_endpoint("http://127.0.0.1:4318").is_ok());
        assert!(check_endpoint("http://collector:4318/base").is_ok());
        let err = check_endpoint("https://otel.example:443/base").unwrap_err();
        assert!(
            err.contains("https is not supported")
                && err.contains("https://otel.example:443/base")
                && err.contains("node-local collector")
                && !err.contains('\n'),
            "{err}"
        );
        assert!(check_endpoint("127.0.0.1:4318").is_err());
        assert!(check_endpoint("grpc://x:1").is_err());
    }
}
