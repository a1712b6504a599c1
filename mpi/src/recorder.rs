//! One rank's recorder: call histograms, slow-call and phase spans, the rank and job spans,
//! the straggler window, and the OTLP batches the exporter sends.
//!
//! Everything here is plain data behind one mutex, held for a histogram update on the call
//! path and for building a batch on the export path; no I/O happens under it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hdrhistogram::Histogram;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int, scope};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram as OtlpHistogram, HistogramDataPoint, Metric,
    ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use crate::op::{NO_SIZE, Op, PeerKind, SIZE_LABELS, size_class};
use crate::settings::{MEDIAN_MIN_CALLS, Settings, SlowCall};
use crate::straggler::Stragglers;

/// Durations of synchronising world collectives kept between two straggler reductions
/// (`HPCOTEL_WINDOW`).
pub const WINDOW: usize = 1024;
/// Distinct (operation, communicator size, size class) histograms per rank; calls beyond it
/// share one overflow histogram per operation.
pub const MAX_KEYS: usize = 256;
/// Largest duration a histogram tells apart (1 h, in ns); longer calls count at this value.
const HIST_MAX_NS: u64 = 3_600_000_000_000;
/// Calls between two recomputations of a histogram's median.
const MEDIAN_EVERY: u64 = 64;
/// Ranks named in a job summary.
const SUMMARY_TOP: usize = 5;
/// Phase names longer than this are cut (bytes).
pub const MAX_PHASE_NAME: usize = 256;
/// Phases open at once; opening more (a `MPI_Pcontrol(1, …)` in a loop without its `-1`)
/// is ignored and counted with the dropped spans.
pub const MAX_OPEN_PHASES: usize = 64;

/// Bucket bounds of `mpi.call.duration` in seconds: 1-2-5 steps from 1 µs to 100 s.
pub fn duration_bounds() -> Vec<f64> {
    let mut v = Vec::new();
    for exp in -6..=1 {
        for m in [1.0, 2.0, 5.0] {
            v.push(m * 10f64.powi(exp));
        }
    }
    v.push(100.0);
    v
}

/// The job's trace context, the same on every rank after the broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobContext {
    /// The job's trace.
    pub trace_id: [u8; 16],
    /// Rank 0's job span, parent of every rank span.
    pub job_span_id: [u8; 8],
    /// W3C trace flags.
    pub flags: u8,
    /// Rank 0 records: every rank records. Rank 0 does not: nobody does.
    pub enabled: bool,
}

/// Bytes of [`JobContext::encode`] (`HPCOTEL_CTX_LEN`).
pub const CTX_LEN: usize = 26;

impl JobContext {
    /// The wire form broadcast from rank 0.
    pub fn encode(&self) -> [u8; CTX_LEN] {
        let mut b = [0u8; CTX_LEN];
        b[..16].copy_from_slice(&self.trace_id);
        b[16..24].copy_from_slice(&self.job_span_id);
        b[24] = self.flags;
        b[25] = u8::from(self.enabled);
        b
    }

    /// Reads the wire form.
    pub fn decode(b: &[u8; CTX_LEN]) -> JobContext {
        JobContext {
            trace_id: b[..16].try_into().unwrap_or_default(),
            job_span_id: b[16..24].try_into().unwrap_or_default(),
            flags: b[24],
            enabled: b[25] != 0,
        }
    }

    /// The trace id in hex.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A non-zero random span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// A non-zero random trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for part in parts {
        for b in *part {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The trace id every rank of job `job_id` derives alike (no `TRACEPARENT`, no collectives).
pub fn derive_trace_id(job_id: &str) -> [u8; 16] {
    let a = fnv1a(
        0xcbf2_9ce4_8422_2325,
        &[b"hpcotel-mpi trace", job_id.as_bytes()],
    );
    let b = fnv1a(
        0x8422_2325_cbf2_9ce4,
        &[b"hpcotel-mpi trace", job_id.as_bytes()],
    );
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// The job span id every rank derives alike from the trace, the launcher's span and the job.
pub fn derive_span_id(trace_id: &[u8; 16], parent: [u8; 8], job_id: &str) -> [u8; 8] {
    let h = fnv1a(
        0xcbf2_9ce4_8422_2325,
        &[b"hpcotel-mpi job", trace_id, &parent, job_id.as_bytes()],
    );
    let id = h.to_be_bytes();
    if id == [0; 8] {
        [0, 0, 0, 0, 0, 0, 0, 1]
    } else {
        id
    }
}

/// Identity of this rank, fixed at `MPI_Init`.
#[derive(Clone, Debug)]
pub struct RankInfo {
    /// Rank in `MPI_COMM_WORLD`.
    pub rank: i32,
    /// Size of `MPI_COMM_WORLD`.
    pub size: i32,
    /// The resource attributes of everything this rank exports.
    pub resource: Vec<KeyValue>,
    /// First line of `MPI_Get_library_version`.
    pub implementation: String,
    /// Unix ns minus `CLOCK_MONOTONIC` ns, to turn call times into timestamps.
    pub clock_offset_ns: i128,
}

impl RankInfo {
    /// `CLOCK_MONOTONIC` ns to Unix ns.
    pub fn unix(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.clock_offset_ns).max(0) as u64
    }
}

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the key is already well spread over its low bits.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

fn key(op: Op, comm_size: i32, class: u8) -> u64 {
    u64::from(op as u8) | (u64::from(class) << 8) | (u64::from(comm_size.max(0) as u32) << 16)
}

/// Key of the overflow histogram of `op` (communicator size unknown, no size class).
fn overflow_key(op: Op) -> u64 {
    key(op, -1, NO_SIZE) | (1 << 63)
}

/// One histogram: every call of one operation on one communicator size and size class.
struct Calls {
    op: Op,
    comm_size: i32,
    class: u8,
    hist: Histogram<u64>,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    median_ns: u64,
    since_median: u64,
    /// Recorded since the last export.
    dirty: bool,
    /// The data point of the last export, reused while nothing changed.
    last: Option<HistogramDataPoint>,
}

impl Calls {
    fn new(op: Op, comm_size: i32, class: u8) -> Calls {
        Calls {
            op,
            comm_size,
            class,
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 2)
                .expect("1 ns .. 1 h at 2 significant digits is a valid histogram"),
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            median_ns: 0,
            since_median: 0,
            dirty: false,
            last: None,
        }
    }

    fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.dirty = true;
        self.since_median += 1;
        if self.since_median >= MEDIAN_EVERY || self.hist.len() <= MEDIAN_MIN_CALLS {
            self.median_ns = self.hist.value_at_quantile(0.5);
            self.since_median = 0;
        }
    }

    fn data_point(&mut self, start_unix: u64, now_unix: u64, bounds: &[f64]) -> HistogramDataPoint {
        if !self.dirty
            && let Some(p) = &self.last
        {
            let mut p = p.clone();
            p.time_unix_nano = now_unix;
            return p;
        }
        let mut counts = vec![0u64; bounds.len() + 1];
        for v in self.hist.iter_recorded() {
            // The bucket's lowest value: a call of exactly a bound's duration counts in
            // the bucket that bound closes (2 significant digits: within 1 %).
            let secs = self.hist.lowest_equivalent(v.value_iterated_to()) as f64 / 1e9;
            let i = bounds.partition_point(|b| *b < secs);
            counts[i] += v.count_at_value();
        }
        let mut attributes = vec![kv(semconv::MPI_OPERATION, self.op.name())];
        if self.comm_size > 0 {
            attributes.push(kv_int(
                semconv::MPI_COMMUNICATOR_SIZE,
                i64::from(self.comm_size),
            ));
        }
        if let Some(label) = SIZE_LABELS.get(usize::from(self.class)) {
            attributes.push(kv(semconv::MPI_MESSAGE_SIZE_BUCKET, *label));
        }
        let p = HistogramDataPoint {
            attributes,
            start_time_unix_nano: start_unix,
            time_unix_nano: now_unix,
            count: self.hist.len(),
            sum: Some(self.sum_ns as f64 / 1e9),
            bucket_counts: counts,
            explicit_bounds: bounds.to_vec(),
            min: (!self.hist.is_empty()).then(|| self.min_ns as f64 / 1e9),
            max: (!self.hist.is_empty()).then(|| self.max_ns as f64 / 1e9),
            ..Default::default()
        };
        self.dirty = false;
        self.last = Some(p.clone());
        p
    }
}

struct Phase {
    name: String,
    span_id: [u8; 8],
    parent: [u8; 8],
    start_ns: u64,
}

/// Why the rank's spans ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `MPI_Finalize`.
    Finalize,
    /// `MPI_Abort(code)`.
    Abort(i32),
    /// The process exited without `MPI_Finalize`.
    Exit,
}

/// Telemetry ready to send.
#[derive(Default)]
pub struct Batch {
    /// Finished spans.
    pub traces: Option<ExportTraceServiceRequest>,
    /// The histograms, cumulative.
    pub metrics: Option<ExportMetricsServiceRequest>,
    /// Log records.
    pub logs: Option<ExportLogsServiceRequest>,
}

/// One rank's recording state.
pub struct State {
    info: RankInfo,
    ctx: JobContext,
    slow_call: SlowCall,
    max_spans: usize,
    bounds: Vec<f64>,
    init_start_ns: u64,
    rank_span_id: [u8; 8],
    job_parent: [u8; 8],
    phases: Vec<Phase>,
    calls: KeyMap<Calls>,
    spans: Vec<Span>,
    dropped_spans: u64,
    logs: Vec<LogRecord>,
    window: Vec<u64>,
    stragglers: Option<Stragglers>,
    ended: bool,
}

impl State {
    /// The state of a rank that joined the job `ctx` at `init_start_ns`; `hosts` (rank 0) are
    /// every rank's host, for the straggler analysis.
    pub fn new(
        info: RankInfo,
        settings: &Settings,
        ctx: JobContext,
        init_start_ns: u64,
        hosts: Option<Vec<String>>,
    ) -> State {
        State {
            info,
            ctx,
            slow_call: settings.slow_call,
            max_spans: settings.max_spans,
            bounds: duration_bounds(),
            init_start_ns,
            rank_span_id: new_span_id(),
            job_parent: settings
                .traceparent
                .filter(|tp| tp.trace_id == ctx.trace_id)
                .map_or([0; 8], |tp| tp.parent_span_id),
            phases: Vec::new(),
            calls: KeyMap::default(),
            spans: Vec::new(),
            dropped_spans: 0,
            logs: Vec::new(),
            window: Vec::with_capacity(WINDOW),
            stragglers: hosts.map(Stragglers::new),
            ended: false,
        }
    }

    /// This rank's identity.
    pub fn info(&self) -> &RankInfo {
        &self.info
    }

    /// The job context.
    pub fn ctx(&self) -> &JobContext {
        &self.ctx
    }

    /// Whether the spans were ended (finalize, abort or exit).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// One intercepted call.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        op: Op,
        comm_size: i32,
        bytes: i64,
        peer: i32,
        t0_ns: u64,
        t1_ns: u64,
        world: bool,
    ) {
        if self.ended {
            return;
        }
        let ns = t1_ns.saturating_sub(t0_ns);
        if world && self.window.len() < WINDOW {
            self.window.push(ns);
        }
        let class = size_class(bytes);
        let mut k = key(op, comm_size, class);
        if !self.calls.contains_key(&k) && self.calls.len() >= MAX_KEYS {
            k = overflow_key(op);
        }
        let calls = self.calls.entry(k).or_insert_with(|| {
            if k & (1 << 63) != 0 {
                Calls::new(op, 0, NO_SIZE)
            } else {
                Calls::new(op, comm_size, class)
            }
        });
        calls.record(ns);
        let slow = match self.slow_call {
            SlowCall::Off => false,
            SlowCall::Absolute(d) => u128::from(ns) >= d.as_nanos(),
            SlowCall::MedianMultiple(m) => {
                calls.hist.len() >= MEDIAN_MIN_CALLS && ns as f64 >= m * calls.median_ns as f64
            }
        };
        if slow {
            let mut attributes = vec![kv(semconv::MPI_OPERATION, op.name())];
            if comm_size > 0 {
                attributes.push(kv_int(semconv::MPI_COMMUNICATOR_SIZE, i64::from(comm_size)));
            }
            if bytes >= 0 {
                attributes.push(kv_int(semconv::MPI_MESSAGE_SIZE, bytes));
            }
            match op.peer_kind() {
                PeerKind::Root if peer >= 0 => {
                    attributes.push(kv_int(semconv::MPI_ROOT, i64::from(peer)))
                }
                PeerKind::Peer if peer >= 0 => {
                    attributes.push(kv_int(semconv::MPI_PEER, i64::from(peer)))
                }
                _ => {}
            }
            let parent = self.current_parent();
            let s = self.span(
                format!("MPI_{}", op.name()),
                new_span_id(),
                parent,
                t0_ns,
                t1_ns,
                attributes,
                None,
            );
            self.push_span(s);
        }
    }

    /// `MPI_Pcontrol(level, name)`: 1 opens the phase `name`, -1 closes the innermost open
    /// phase of that name and any phase opened inside it.
    pub fn phase(&mut self, level: i32, name: &str, t_ns: u64) {
        if self.ended || name.is_empty() {
            return;
        }
        let mut name = name.to_owned();
        if name.len() > MAX_PHASE_NAME {
            let mut cut = MAX_PHASE_NAME;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        match level {
            1 => {
                if self.phases.len() >= MAX_OPEN_PHASES {
                    self.dropped_spans += 1;
                    return;
                }
                let parent = self.current_parent();
                self.phases.push(Phase {
                    name,
                    span_id: new_span_id(),
                    parent,
                    start_ns: t_ns,
                });
            }
            -1 => {
                if let Some(i) = self.phases.iter().rposition(|p| p.name == name) {
                    while self.phases.len() > i {
                        self.close_phase(t_ns, None);
                    }
                }
            }
            _ => {}
        }
    }

    fn close_phase(&mut self, t_ns: u64, status: Option<Status>) {
        if let Some(p) = self.phases.pop() {
            let attributes = vec![kv(semconv::MPI_PHASE, p.name.clone())];
            let s = self.span(
                p.name, p.span_id, p.parent, p.start_ns, t_ns, attributes, status,
            );
            self.push_span(s);
        }
    }

    fn current_parent(&self) -> [u8; 8] {
        self.phases.last().map_or(self.rank_span_id, |p| p.span_id)
    }

    fn push_span(&mut self, s: Span) {
        if self.spans.len() < self.max_spans {
            self.spans.push(s);
        } else {
            self.dropped_spans += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        name: String,
        span_id: [u8; 8],
        parent: [u8; 8],
        start_ns: u64,
        end_ns: u64,
        attributes: Vec<KeyValue>,
        status: Option<Status>,
    ) -> Span {
        Span {
            trace_id: self.ctx.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if parent == [0; 8] {
                Vec::new()
            } else {
                parent.to_vec()
            },
            flags: u32::from(self.ctx.flags),
            name,
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: self.info.unix(start_ns),
            end_time_unix_nano: self.info.unix(end_ns.max(start_ns)),
            attributes,
            status,
            ..Default::default()
        }
    }

    /// Takes this rank's straggler window (durations since the last reduction), clearing it.
    pub fn take_window(&mut self) -> Vec<u64> {
        std::mem::replace(&mut self.window, Vec::with_capacity(WINDOW))
    }

    /// Rank 0: adds a reduced window (see [`Stragglers::add_reduced`]).
    pub fn add_reduced(&mut self, min_ns: &[f64], min_rank: &[i32], max_ns: &[f64]) {
        if let Some(s) = &mut self.stragglers {
            s.add_reduced(min_ns, min_rank, max_ns);
        }
    }

    /// Rank 0: the job summary log, when collectives were compared since the last one (or
    /// `final_summary`, always).
    pub fn summary(&mut self, now_ns: u64, final_summary: bool) {
        let ctx = self.ctx;
        let now = self.info.unix(now_ns);
        let Some(s) = &mut self.stragglers else {
            return;
        };
        if !final_summary && s.analyzed == s.reported {
            return;
        }
        s.reported = s.analyzed;
        let top = s.top(SUMMARY_TOP);
        let analyzed = s.analyzed;
        let mut attributes = vec![
            kv_int(semconv::MPI_COLLECTIVES_ANALYZED, analyzed as i64),
            KeyValue {
                key: semconv::MPI_SUMMARY_FINAL.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(final_summary)),
                }),
                ..Default::default()
            },
        ];
        let body = match top.first() {
            None => format!(
                "MPI job summary: {analyzed} collectives on MPI_COMM_WORLD compared, no rank \
                 kept the others waiting"
            ),
            Some(worst) => {
                attributes.extend([
                    kv_int(semconv::MPI_STRAGGLER_RANK, worst.rank as i64),
                    kv(semconv::MPI_STRAGGLER_HOST, worst.host.clone()),
                    kv_int(semconv::MPI_STRAGGLER_LAST_COUNT, worst.last as i64),
                    KeyValue {
                        key: semconv::MPI_STRAGGLER_DELAY.into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::DoubleValue(worst.delay_ns as f64 / 1e9)),
                        }),
                        ..Default::default()
                    },
                    KeyValue {
                        key: semconv::MPI_STRAGGLERS.into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: top
                                    .iter()
                                    .map(|t| AnyValue {
                                        value: Some(any_value::Value::StringValue(
                                            t.describe(analyzed),
                                        )),
                                    })
                                    .collect(),
                            })),
                        }),
                        ..Default::default()
                    },
                ]);
                format!("MPI job summary: straggler {}", worst.describe(analyzed))
            }
        };
        self.logs.push(LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body)),
            }),
            attributes,
            trace_id: ctx.trace_id.to_vec(),
            span_id: ctx.job_span_id.to_vec(),
            flags: u32::from(ctx.flags),
            event_name: semconv::EVENT_MPI_JOB_SUMMARY.into(),
            ..Default::default()
        });
    }

    /// Ends the open phases, the rank span and, on rank 0, the job span.
    pub fn end(&mut self, how: End, t_ns: u64) {
        if self.ended {
            return;
        }
        let error = |msg: String| {
            Some(Status {
                message: msg,
                code: status::StatusCode::Error as i32,
            })
        };
        let status = match how {
            End::Finalize => None,
            End::Abort(code) => error(format!("MPI_Abort(MPI_COMM_WORLD, {code})")),
            End::Exit => error("the process exited without calling MPI_Finalize".into()),
        };
        if let End::Abort(code) = how {
            let now = self.info.unix(t_ns);
            self.logs.push(LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: SeverityNumber::Error as i32,
                severity_text: "ERROR".into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!(
                        "rank {} called MPI_Abort with error code {code}",
                        self.info.rank
                    ))),
                }),
                attributes: vec![kv_int(semconv::MPI_ABORT_CODE, i64::from(code))],
                trace_id: self.ctx.trace_id.to_vec(),
                span_id: self.rank_span_id.to_vec(),
                flags: u32::from(self.ctx.flags),
                ..Default::default()
            });
        }
        while !self.phases.is_empty() {
            self.close_phase(t_ns, status.clone());
        }
        let mut attributes = vec![kv_int(semconv::MPI_RANK, i64::from(self.info.rank))];
        if self.dropped_spans > 0 {
            attributes.push(kv_int(
                semconv::HPCOTEL_MPI_SPANS_DROPPED,
                self.dropped_spans as i64,
            ));
        }
        let rank_span = self.span(
            semconv::SPAN_MPI_RANK.into(),
            self.rank_span_id,
            self.ctx.job_span_id,
            self.init_start_ns,
            t_ns,
            attributes,
            status.clone(),
        );
        // The rank span is never dropped: it is the one a user looks for.
        self.spans.push(rank_span);
        if self.info.rank == 0 {
            self.summary(t_ns, true);
            let parent = self.job_parent;
            let job = self.span(
                semconv::SPAN_MPI_JOB.into(),
                self.ctx.job_span_id,
                parent,
                self.init_start_ns,
                t_ns,
                vec![
                    kv_int(semconv::MPI_WORLD_SIZE, i64::from(self.info.size)),
                    kv(
                        semconv::MPI_IMPLEMENTATION,
                        self.info.implementation.clone(),
                    ),
                ],
                status,
            );
            self.spans.push(job);
        }
        self.ended = true;
    }

    /// What to send now: new spans and logs (taken), every histogram (cumulative).
    pub fn batch(&mut self, now_ns: u64) -> Batch {
        let resource = Some(Resource {
            attributes: self.info.resource.clone(),
            ..Default::default()
        });
        let mut batch = Batch::default();
        if !self.spans.is_empty() {
            batch.traces = Some(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope()),
                        spans: std::mem::take(&mut self.spans),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
        if !self.logs.is_empty() {
            batch.logs = Some(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource.clone(),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: std::mem::take(&mut self.logs),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
        if !self.calls.is_empty() {
            let start = self.info.unix(self.init_start_ns);
            let now = self.info.unix(now_ns);
            let bounds = &self.bounds;
            let mut calls: Vec<(&u64, &mut Calls)> = self.calls.iter_mut().collect();
            calls.sort_unstable_by_key(|(k, _)| **k);
            let data_points = calls
                .into_iter()
                .map(|(_, c)| c.data_point(start, now, bounds))
                .collect();
            batch.metrics = Some(ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource,
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics: vec![Metric {
                            name: semconv::METRIC_MPI_CALL_DURATION.into(),
                            description: "Time inside intercepted MPI calls".into(),
                            unit: "s".into(),
                            data: Some(metric::Data::Histogram(OtlpHistogram {
                                data_points,
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TraceParent;
    use hpcotel_core::telemetry::{attr_int, attr_str};
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn settings(slow: SlowCall, max_spans: usize) -> Settings {
        let mut s = Settings::from_env(|_| None);
        s.slow_call = slow;
        s.max_spans = max_spans;
        s
    }

    fn state(rank: i32, slow: SlowCall, max_spans: usize) -> State {
        let ctx = JobContext {
            trace_id: [7; 16],
            job_span_id: [9; 8],
            flags: 1,
            enabled: true,
        };
        let info = RankInfo {
            rank,
            size: 4,
            resource: vec![kv_int(semconv::MPI_RANK, i64::from(rank))],
            implementation: "Open MPI v4.1.4".into(),
            clock_offset_ns: 1_000_000_000_000,
        };
        let hosts = (rank == 0).then(|| (0..4).map(|i| format!("node-{i}")).collect());
        State::new(info, &settings(slow, max_spans), ctx, 0, hosts)
    }

    fn spans(b: &Batch) -> Vec<Span> {
        b.traces
            .as_ref()
            .map(|t| t.resource_spans[0].scope_spans[0].spans.clone())
            .unwrap_or_default()
    }

    fn points(b: &Batch) -> Vec<HistogramDataPoint> {
        let m = &b.metrics.as_ref().unwrap().resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, semconv::METRIC_MPI_CALL_DURATION);
        match &m.data {
            Some(metric::Data::Histogram(h)) => {
                assert_eq!(
                    h.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                h.data_points.clone()
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }

    #[test]
    fn calls_land_in_one_histogram_per_operation_size_and_class_with_exact_counts() {
        let mut st = state(1, SlowCall::Off, 16);
        for i in 0..100 {
            st.record(Op::Allreduce, 4, 8, -1, i * MS, i * MS + 2_000, true);
        }
        for i in 0..3 {
            st.record(Op::Bcast, 4, 4096, 0, i, i + 30_000, true);
        }
        st.record(Op::Allreduce, 2, 8, -1, 0, 1_000, false);
        st.record(Op::Barrier, 4, -1, -1, 0, 1_000_000, true);
        let b = st.batch(200 * MS);
        let pts = points(&b);
        assert_eq!(pts.len(), 4);
        let find = |op: &str, size: i64| {
            pts.iter()
                .find(|p| {
                    attr_str(&p.attributes, semconv::MPI_OPERATION) == Some(op)
                        && attr_int(&p.attributes, semconv::MPI_COMMUNICATOR_SIZE) == Some(size)
                })
                .unwrap()
        };
        let ar = find("Allreduce", 4);
        assert_eq!(ar.count, 100);
        assert_eq!(
            attr_str(&ar.attributes, semconv::MPI_MESSAGE_SIZE_BUCKET),
            Some("8")
        );
        assert_eq!(ar.bucket_counts.iter().sum::<u64>(), 100);
        // 2 µs calls: all in the (1 µs, 2 µs] bucket.
        let bounds = duration_bounds();
        let i = bounds
            .iter()
            .position(|b| (*b - 2e-6).abs() < 1e-12)
            .unwrap();
        assert_eq!(ar.bucket_counts[i], 100);
        assert!((ar.sum.unwrap() - 100.0 * 2e-6).abs() < 1e-9);
        assert_eq!(ar.min, Some(2e-6));
        assert_eq!(ar.start_time_unix_nano, 1_000_000_000_000);
        assert_eq!(find("Allreduce", 2).count, 1);
        assert_eq!(find("Bcast", 4).count, 3);
        let barrier = find("Barrier", 4);
        assert!(
            attr_str(&barrier.attributes, semconv::MPI_MESSAGE_SIZE_BUCKET).is_none(),
            "a Barrier has no message size"
        );
        // Only world collectives join the straggler window.
        assert_eq!(st.take_window().len(), 104);
        assert!(st.take_window().is_empty());
        // Cumulative: the next export repeats the counts.
        st.record(Op::Allreduce, 4, 8, -1, 0, 2_000, true);
        let again = points(&st.batch(300 * MS));
        assert_eq!(again.iter().map(|p| p.count).sum::<u64>(), 106);
    }

    #[test]
    fn slow_calls_become_spans_under_the_open_phase() {
        let mut st = state(3, SlowCall::Absolute(Duration::from_millis(10)), 16);
        st.phase(1, "epoch 3", MS);
        st.record(Op::Allreduce, 4, 8, -1, 2 * MS, 3 * MS, true);
        st.record(Op::Allreduce, 4, 8, -1, 4 * MS, 60 * MS, true);
        st.record(Op::Recv, 4, 1024, 2, 61 * MS, 80 * MS, false);
        st.phase(-1, "epoch 3", 90 * MS);
        st.phase(-1, "never opened", 91 * MS);
        let s = spans(&st.batch(100 * MS));
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["MPI_Allreduce", "MPI_Recv", "epoch 3"]);
        let phase = &s[2];
        assert_eq!(phase.parent_span_id, st.rank_span_id.to_vec());
        assert_eq!(
            phase.end_time_unix_nano - phase.start_time_unix_nano,
            89 * MS
        );
        assert_eq!(
            attr_str(&phase.attributes, semconv::MPI_PHASE),
            Some("epoch 3")
        );
        let ar = &s[0];
        assert_eq!(ar.parent_span_id, phase.span_id);
        assert_eq!(ar.trace_id, vec![7; 16]);
        assert_eq!(ar.end_time_unix_nano - ar.start_time_unix_nano, 56 * MS);
        assert_eq!(attr_int(&ar.attributes, semconv::MPI_MESSAGE_SIZE), Some(8));
        assert_eq!(
            attr_int(&ar.attributes, semconv::MPI_COMMUNICATOR_SIZE),
            Some(4)
        );
        assert_eq!(attr_int(&s[1].attributes, semconv::MPI_PEER), Some(2));
        // Spans are taken: the next batch has none.
        assert!(spans(&st.batch(110 * MS)).is_empty());
    }

    #[test]
    fn a_median_multiple_threshold_waits_for_enough_calls() {
        let mut st = state(0, SlowCall::MedianMultiple(10.0), 16);
        // Early calls never count as slow: no median yet.
        st.record(Op::Bcast, 4, 8, 0, 0, 50 * MS, true);
        for i in 0..MEDIAN_MIN_CALLS {
            st.record(Op::Bcast, 4, 8, 0, i, i + 10_000, true);
        }
        st.record(Op::Bcast, 4, 8, 0, 0, 90_000, true); // 9x: not slow
        st.record(Op::Bcast, 4, 8, 0, 0, 200_000, true); // 20x: slow
        let s = spans(&st.batch(MS));
        assert_eq!(s.len(), 1);
        assert_eq!(attr_int(&s[0].attributes, semconv::MPI_ROOT), Some(0));
        assert_eq!(s[0].end_time_unix_nano - s[0].start_time_unix_nano, 200_000);
    }

    #[test]
    fn the_span_queue_is_bounded_and_the_drop_is_reported_on_the_rank_span() {
        let mut st = state(2, SlowCall::Absolute(Duration::from_millis(1)), 3);
        for i in 0..10 {
            st.record(
                Op::Wait,
                0,
                -1,
                -1,
                i * 10 * MS,
                i * 10 * MS + 5 * MS,
                false,
            );
        }
        st.end(End::Finalize, 200 * MS);
        let s = spans(&st.batch(200 * MS));
        assert_eq!(s.iter().filter(|s| s.name == "MPI_Wait").count(), 3);
        let rank = s.iter().find(|s| s.name == semconv::SPAN_MPI_RANK).unwrap();
        assert_eq!(
            attr_int(&rank.attributes, semconv::HPCOTEL_MPI_SPANS_DROPPED),
            Some(7)
        );
        assert_eq!(rank.parent_span_id, vec![9; 8]);
        assert!(rank.status.is_none(), "a finalized rank is not an error");
        // Rank 2 emits no job span.
        assert!(!s.iter().any(|s| s.name == semconv::SPAN_MPI_JOB));
    }

    #[test]
    fn abort_and_exit_end_open_phases_and_spans_as_errors() {
        let mut st = state(0, SlowCall::Off, 16);
        st.phase(1, "solve", MS);
        st.end(End::Abort(42), 5 * MS);
        st.end(End::Finalize, 6 * MS); // ignored: already ended
        st.record(Op::Barrier, 4, -1, -1, 7 * MS, 8 * MS, true); // ignored after the end
        let b = st.batch(10 * MS);
        let s = spans(&b);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["solve", semconv::SPAN_MPI_RANK, semconv::SPAN_MPI_JOB]
        );
        for span in &s {
            let st = span.status.as_ref().unwrap();
            assert_eq!(st.code, status::StatusCode::Error as i32, "{}", span.name);
            assert!(st.message.contains("MPI_Abort"), "{}", st.message);
        }
        assert!(
            b.metrics.is_none(),
            "the Barrier after the end was recorded"
        );
        let logs = &b.logs.as_ref().unwrap().resource_logs[0].scope_logs[0].log_records;
        assert!(
            logs.iter()
                .any(|l| attr_int(&l.attributes, semconv::MPI_ABORT_CODE) == Some(42))
        );

        let mut st = state(1, SlowCall::Off, 16);
        st.end(End::Exit, 5 * MS);
        let s = spans(&st.batch(5 * MS));
        assert!(
            s[0].status
                .as_ref()
                .unwrap()
                .message
                .contains("without calling MPI_Finalize")
        );
    }

    #[test]
    fn rank_0_names_the_straggler_in_the_summary_and_joins_the_launchers_trace() {
        let tp = TraceParent {
            trace_id: [7; 16],
            parent_span_id: [5; 8],
            flags: 1,
        };
        let mut st = state(0, SlowCall::Off, 16);
        st.job_parent = [0; 8];
        st.summary(MS, false);
        assert!(
            st.logs.is_empty(),
            "nothing compared yet: no periodic summary"
        );
        // One collective: rank 2 spent 1 µs inside (it arrived last), the others 50 ms.
        st.add_reduced(&[1_000.0], &[2], &[(50 * MS) as f64]);
        st.summary(2 * MS, false);
        let mut s2 = State::new(
            st.info.clone(),
            &{
                let mut s = settings(SlowCall::Off, 16);
                s.traceparent = Some(tp);
                s
            },
            st.ctx,
            0,
            Some(vec!["a".into(); 4]),
        );
        s2.end(End::Finalize, 3 * MS);
        let job = spans(&s2.batch(3 * MS))
            .into_iter()
            .find(|s| s.name == semconv::SPAN_MPI_JOB)
            .unwrap();
        assert_eq!(
            job.parent_span_id,
            vec![5; 8],
            "the job span's parent is the launcher's"
        );

        let b = st.batch(2 * MS);
        let logs = &b.logs.as_ref().unwrap().resource_logs[0].scope_logs[0].log_records;
        assert_eq!(logs.len(), 1);
        let l = &logs[0];
        assert_eq!(l.event_name, semconv::EVENT_MPI_JOB_SUMMARY);
        assert_eq!(
            attr_int(&l.attributes, semconv::MPI_STRAGGLER_RANK),
            Some(2)
        );
        assert_eq!(
            attr_str(&l.attributes, semconv::MPI_STRAGGLER_HOST),
            Some("node-2")
        );
        assert_eq!(
            attr_int(&l.attributes, semconv::MPI_COLLECTIVES_ANALYZED),
            Some(1)
        );
        assert_eq!(l.span_id, vec![9; 8]);
        // Nothing new since: no periodic summary; the final one always comes.
        st.summary(3 * MS, false);
        assert!(st.batch(3 * MS).logs.is_none());
        st.end(End::Finalize, 4 * MS);
        assert!(st.batch(4 * MS).logs.is_some());
    }

    #[test]
    fn derived_ids_agree_across_ranks_and_differ_across_jobs() {
        assert_eq!(
            derive_trace_id("prterun-a@1"),
            derive_trace_id("prterun-a@1")
        );
        assert_ne!(
            derive_trace_id("prterun-a@1"),
            derive_trace_id("prterun-a@2")
        );
        let t = derive_trace_id("j");
        assert_eq!(
            derive_span_id(&t, [1; 8], "j"),
            derive_span_id(&t, [1; 8], "j")
        );
        assert_ne!(
            derive_span_id(&t, [1; 8], "j"),
            derive_span_id(&t, [2; 8], "j")
        );
        assert_ne!(
            derive_span_id(&t, [1; 8], "j"),
            derive_span_id(&t, [1; 8], "k")
        );
    }

    #[test]
    fn phases_opened_without_end_are_capped() {
        let mut st = state(1, SlowCall::Off, 1000);
        for i in 0..(MAX_OPEN_PHASES as u64 + 10) {
            st.phase(1, "step", i);
        }
        assert_eq!(st.phases.len(), MAX_OPEN_PHASES);
        st.phase(-1, "step", 1000);
        assert_eq!(
            st.phases.len(),
            MAX_OPEN_PHASES - 1,
            "closes the innermost one"
        );
        st.end(End::Finalize, 2000);
        let s = spans(&st.batch(2000));
        assert_eq!(
            s.iter().filter(|s| s.name == "step").count(),
            MAX_OPEN_PHASES
        );
        let rank = s.iter().find(|s| s.name == semconv::SPAN_MPI_RANK).unwrap();
        assert_eq!(
            attr_int(&rank.attributes, semconv::HPCOTEL_MPI_SPANS_DROPPED),
            Some(10)
        );
    }

    #[test]
    fn context_round_trips_and_phase_names_are_cut_at_a_char_boundary() {
        let ctx = JobContext {
            trace_id: [1; 16],
            job_span_id: [2; 8],
            flags: 1,
            enabled: false,
        };
        assert_eq!(JobContext::decode(&ctx.encode()), ctx);
        let mut st = state(1, SlowCall::Off, 16);
        let long = "é".repeat(200);
        st.phase(1, &long, 0);
        st.phase(-1, &long[..MAX_PHASE_NAME], 1);
        let s = spans(&st.batch(2));
        assert_eq!(s.len(), 1);
        assert!(s[0].name.len() <= MAX_PHASE_NAME);
    }
}
