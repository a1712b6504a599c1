//! `libhpcotel_mpi.so`: preload it into any MPI program, unchanged and not recompiled, and
//! the job appears as one OpenTelemetry trace.
//!
//! The PMPI wrappers (`shim.c`, compiled by the installed `mpicc` against its `mpi.h`) time
//! every intercepted call and hand it to this recorder through the C ABI in `hpcotel_mpi.h`.
//! Rank 0 starts the job's trace at `MPI_Init` (joining the launcher's `TRACEPARENT` when
//! there is one) and broadcasts it, so every rank's data lands in the same trace. It emits:
//!
//! - spans: `mpi.job` (rank 0, `MPI_Init` → `MPI_Finalize`), one `mpi.rank` per rank as its
//!   child, `MPI_Pcontrol(1, "name")` … `MPI_Pcontrol(-1, "name")` phases, and every call
//!   slower than `HPCOTEL_MPI_SLOW_CALL` (`MPI_Allreduce`, with operation, bytes, peer or root
//!   and communicator size);
//! - metrics: `mpi.call.duration`, a cumulative histogram per operation, communicator size
//!   and message-size class, from an HDR histogram per key;
//! - logs: rank 0's `mpi.job.summary`, naming the ranks that kept the others waiting in
//!   collectives on `MPI_COMM_WORLD`, each export period and at `MPI_Finalize`.
//!
//! It exports OTLP/HTTP protobuf to `OTEL_EXPORTER_OTLP_ENDPOINT` (default the node-local
//! collector) from a background thread. It never blocks or fails an MPI call: a missing or
//! slow collector costs one warning per rank and at most `HPCOTEL_MPI_FLUSH_TIMEOUT` at the
//! end. A forked child records nothing; `MPI_Abort` and an exit without `MPI_Finalize` end the
//! spans as errors and flush.

pub mod export;
pub mod http;
pub mod op;
pub mod recorder;
pub mod resource;
pub mod settings;
pub mod straggler;

use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use crate::export::Exporter;
use crate::op::Op;
use crate::recorder::{CTX_LEN, End, JobContext, RankInfo, State, WINDOW};
use crate::settings::Settings;

/// Bytes of a host name in the host gather (`HPCOTEL_HOST_LEN`).
pub const HOST_LEN: usize = 64;
/// `HPCOTEL_INIT_RECORD`: this rank wants to record.
pub const INIT_RECORD: c_int = 1;
/// `HPCOTEL_INIT_COLLECTIVES`: the library's own collectives are on.
pub const INIT_COLLECTIVES: c_int = 2;
/// `HPCOTEL_INIT_PHASE_NAMES`: `MPI_Pcontrol` names are read.
pub const INIT_PHASE_NAMES: c_int = 4;

/// Prints one line on stderr, prefixed with the library and the rank.
pub fn warn(rank: i32, msg: &str) {
    eprintln!("hpcotel-mpi: rank {rank}: {msg}");
}

/// Everything one rank holds between `MPI_Init` and the end.
struct Runtime {
    settings: Settings,
    rank: i32,
    size: i32,
    init_start_ns: u64,
    implementation: String,
    clock_offset_ns: i128,
    state: Mutex<Option<State>>,
    exporter: Arc<Exporter>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Recording: set at the end of `MPI_Init` when the job records, cleared at the end, in a
/// forked child and after a panic.
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn now_mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the value we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

extern "C" fn in_forked_child() {
    // The child's copy of the recorder belongs to the parent's job: record nothing.
    ACTIVE.store(false, Ordering::Relaxed);
}

/// Runs `f`, turning a panic into "this rank stops recording" instead of unwinding into C.
fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            if ACTIVE.swap(false, Ordering::Relaxed) {
                let rank = RUNTIME.get().map_or(-1, |r| r.rank);
                warn(rank, "internal error: recording stopped for this rank");
            }
            default
        }
    }
}

fn with_state<T>(f: impl FnOnce(&Runtime, &mut State) -> T) -> Option<T> {
    let rt = RUNTIME.get()?;
    let mut guard = rt.state.lock().unwrap_or_else(PoisonError::into_inner);
    let state = guard.as_mut()?;
    Some(f(rt, state))
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `library_version` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_init_begin(
    rank: c_int,
    size: c_int,
    init_start_ns: u64,
    library_version: *const c_char,
) -> c_int {
    let implementation = if library_version.is_null() {
        String::new()
    } else {
        // SAFETY: the wrappers pass MPI_Get_library_version's NUL-terminated buffer.
        unsafe { CStr::from_ptr(library_version) }
            .to_string_lossy()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    guard(0, || {
        let settings = Settings::from_env(|k| std::env::var(k).ok());
        for p in &settings.problems {
            warn(rank, p);
        }
        let clock_offset_ns =
            i128::from(clock_ns(libc::CLOCK_REALTIME)) - i128::from(now_mono_ns());
        let exporter = Arc::new(Exporter::new(&settings, rank));
        let mut flags = 0;
        if !settings.disabled {
            flags |= INIT_RECORD;
        }
        if settings.collectives {
            flags |= INIT_COLLECTIVES;
        }
        if settings.phase_names {
            flags |= INIT_PHASE_NAMES;
        }
        let rt = Runtime {
            settings,
            rank,
            size,
            init_start_ns,
            implementation,
            clock_offset_ns,
            state: Mutex::new(None),
            exporter,
        };
        if RUNTIME.set(rt).is_err() {
            return 0; // MPI_Init twice: the first one counts.
        }
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
        flags
    })
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `ctx` points to `HPCOTEL_CTX_LEN` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_context(ctx: *mut u8) {
    if ctx.is_null() {
        return;
    }
    let job = guard(None, || {
        let rt = RUNTIME.get()?;
        let job_id = resource::job_id(&|k: &str| std::env::var(k).ok());
        Some(job_context(&rt.settings, job_id.as_deref(), rt.rank))
    });
    let bytes = job.map_or([0u8; CTX_LEN], |j| j.encode());
    // SAFETY: the caller passes a buffer of HPCOTEL_CTX_LEN bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ctx, CTX_LEN) };
}

/// The job context: with the library's collectives, rank 0's (random, or the launcher's
/// trace), broadcast to the others; without, one every rank derives alike from `TRACEPARENT`
/// or the job id.
fn job_context(settings: &Settings, job_id: Option<&str>, rank: i32) -> JobContext {
    let parent = settings.traceparent;
    if settings.collectives {
        return JobContext {
            trace_id: parent.map_or_else(recorder::new_trace_id, |tp| tp.trace_id),
            job_span_id: recorder::new_span_id(),
            flags: parent.map_or(1, |tp| tp.flags),
            enabled: !settings.disabled,
        };
    }
    let trace_id = match (parent, job_id) {
        (Some(tp), _) => tp.trace_id,
        (None, Some(job)) => recorder::derive_trace_id(job),
        (None, None) => {
            warn(
                rank,
                "HPCOTEL_MPI_COLLECTIVES=off without TRACEPARENT or a job id: the ranks cannot \
                 agree on a trace, so each starts its own (use hpcotel mpirun, or set \
                 HPCOTEL_MPI_JOB_ID)",
            );
            recorder::new_trace_id()
        }
    };
    JobContext {
        trace_id,
        job_span_id: recorder::derive_span_id(
            &trace_id,
            parent.map_or([0; 8], |tp| tp.parent_span_id),
            job_id.unwrap_or_default(),
        ),
        flags: parent.map_or(1, |tp| tp.flags),
        enabled: !settings.disabled,
    }
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `host` points to `HPCOTEL_HOST_LEN` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_hostname(host: *mut c_char) {
    if host.is_null() {
        return;
    }
    let name = guard(String::new(), resource::hostname);
    let mut bytes = [0u8; HOST_LEN];
    let n = name.len().min(HOST_LEN - 1);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: the caller passes a buffer of HPCOTEL_HOST_LEN bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), host.cast(), HOST_LEN) };
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `ctx` points to `HPCOTEL_CTX_LEN` bytes; `hosts` is NULL or points to
/// `size * HPCOTEL_HOST_LEN` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_init_end(ctx: *const u8, hosts: *const c_char) {
    if ctx.is_null() {
        return;
    }
    let Some(rt) = RUNTIME.get() else { return };
    let mut wire = [0u8; CTX_LEN];
    // SAFETY: the caller passes HPCOTEL_CTX_LEN readable bytes.
    unsafe { std::ptr::copy_nonoverlapping(ctx, wire.as_mut_ptr(), CTX_LEN) };
    let hosts: Option<Vec<String>> = (!hosts.is_null() && rt.size > 0).then(|| {
        // SAFETY: on rank 0 the wrappers pass the gathered size * HPCOTEL_HOST_LEN bytes.
        let all =
            unsafe { std::slice::from_raw_parts(hosts.cast::<u8>(), rt.size as usize * HOST_LEN) };
        all.chunks(HOST_LEN)
            .map(|c| {
                let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect()
    });
    guard((), || {
        let ctx = JobContext::decode(&wire);
        if !ctx.enabled || rt.settings.disabled {
            return;
        }
        let get = |k: &str| std::env::var(k).ok();
        let job_id = resource::job_id(&get).unwrap_or_else(|| ctx.trace_hex());
        let info = RankInfo {
            rank: rt.rank,
            size: rt.size,
            resource: resource::attributes(
                &rt.settings,
                &get,
                rt.rank,
                rt.size,
                &job_id,
                &rt.implementation,
            ),
            implementation: rt.implementation.clone(),
            clock_offset_ns: rt.clock_offset_ns,
        };
        let hosts = if rt.rank == 0 { hosts } else { None };
        let state = State::new(info, &rt.settings, ctx, rt.init_start_ns, hosts);
        *rt.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        ACTIVE.store(true, Ordering::Release);
        let spawned = rt.exporter.spawn(rt.settings.export_interval, || {
            if !ACTIVE.load(Ordering::Acquire) {
                return None;
            }
            let now = now_mono_ns();
            with_state(|_, st| {
                st.summary(now, false);
                st.batch(now)
            })
        });
        if let Err(e) = spawned {
            warn(
                rt.rank,
                &format!("cannot start the export thread ({e}); exporting at the end only"),
            );
        }
    });
}

/// See `hpcotel_mpi.h`.
#[unsafe(no_mangle)]
pub extern "C" fn hpcotel_mpi_record(
    op: c_int,
    comm_size: c_int,
    bytes: i64,
    peer: c_int,
    t0_ns: u64,
    t1_ns: u64,
    world: c_int,
) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let Some(op) = Op::from_raw(op) else { return };
    guard((), || {
        with_state(|_, st| st.record(op, comm_size, bytes, peer, t0_ns, t1_ns, world != 0));
    });
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_phase(level: c_int, name: *const c_char, t_ns: u64) {
    if !ACTIVE.load(Ordering::Relaxed) || name.is_null() {
        return;
    }
    // SAFETY: the wrappers pass their NUL-terminated copy of the phase name.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    guard((), || {
        with_state(|_, st| st.phase(level, &name, t_ns));
    });
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `out` points to `cap` writable `double`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_window(out: *mut f64, cap: usize) -> usize {
    if out.is_null() || !ACTIVE.load(Ordering::Relaxed) {
        return 0;
    }
    let window = guard(Vec::new(), || {
        with_state(|_, st| st.take_window()).unwrap_or_default()
    });
    let n = window.len().min(cap);
    for (i, d) in window.iter().take(n).enumerate() {
        // SAFETY: the caller passes `cap` writable values; i < n <= cap.
        unsafe { out.add(i).write(*d as f64) };
    }
    n
}

/// See `hpcotel_mpi.h`.
///
/// # Safety
/// `min_ns`, `min_rank` and `max_ns` each point to `n` readable values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hpcotel_mpi_window_reduced(
    min_ns: *const f64,
    min_rank: *const c_int,
    max_ns: *const f64,
    n: usize,
) {
    if min_ns.is_null() || min_rank.is_null() || max_ns.is_null() || n == 0 {
        return;
    }
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let n = n.min(WINDOW);
    // SAFETY: rank 0's reduction results, n values each, owned by the wrappers.
    let (min, rank, max) = unsafe {
        (
            std::slice::from_raw_parts(min_ns, n),
            std::slice::from_raw_parts(min_rank, n),
            std::slice::from_raw_parts(max_ns, n),
        )
    };
    guard((), || {
        with_state(|_, st| st.add_reduced(min, rank, max));
    });
}

fn end(how: End, t_ns: u64) {
    guard((), || {
        let Some(rt) = RUNTIME.get() else { return };
        let batch = with_state(|_, st| {
            if st.ended() {
                return None;
            }
            st.end(how, t_ns);
            Some(st.batch(t_ns))
        })
        .flatten();
        ACTIVE.store(false, Ordering::Release);
        rt.exporter.stop();
        if let Some(batch) = batch {
            let deadline = Instant::now() + rt.settings.flush_timeout;
            rt.exporter.send(batch, Some(deadline));
        }
    });
}

/// See `hpcotel_mpi.h`.
#[unsafe(no_mangle)]
pub extern "C" fn hpcotel_mpi_finalize(t_ns: u64) {
    if ACTIVE.load(Ordering::Relaxed) {
        end(End::Finalize, t_ns);
    }
}

/// See `hpcotel_mpi.h`.
#[unsafe(no_mangle)]
pub extern "C" fn hpcotel_mpi_abort(errorcode: c_int, t_ns: u64) {
    if ACTIVE.load(Ordering::Relaxed) {
        end(End::Abort(errorcode), t_ns);
    }
}

/// See `hpcotel_mpi.h`.
#[unsafe(no_mangle)]
pub extern "C" fn hpcotel_mpi_exit(t_ns: u64) {
    if ACTIVE.load(Ordering::Relaxed) {
        end(End::Exit, t_ns);
    }
}
