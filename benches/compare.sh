#!/usr/bin/env bash
# Side-by-side: hpcotel vs rotel as OTLP/gRPC span forwarders into the same counting sink.
#
#   benches/compare.sh                       # defaults below
#   RATE=100000 BATCH=200 DURATION=20s CONCURRENCY=8 benches/compare.sh
#   ROTEL_AGENT=/path/to/rotel-agent COLLECTORS="hpcotel" benches/compare.sh
#
#   RATE=40000 COMPRESSION=none benches/compare.sh   # both collectors exporting uncompressed
#   COLLECTORS="hpcotel hpcotel-wal" RATE=40000 benches/compare.sh  # in-memory vs write-ahead log
#                                                     # (WAL_FSYNC=always|200ms, default 200ms)
#   SIGNAL=logs RATE=40000 benches/compare.sh         # log records (or metrics: data points)
#
# For each collector: start it forwarding 127.0.0.1:24317 -> otlp-sink 127.0.0.1:14317, run
# otlp-loadgen against it, wait for the sink to receive every accepted span, read the
# collector's CPU time (utime + stime in /proc/PID/stat, from just before the load to the
# last span delivered: loadgen and sink excluded) and peak RSS (VmHWM), stop it, and print
# one table row. Exits non-zero when a collector did not deliver every span it accepted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RATE="${RATE:-0}"                 # spans/s over all connections; 0 = as fast as possible
BATCH="${BATCH:-100}"             # spans per request
DURATION="${DURATION:-10s}"
CONCURRENCY="${CONCURRENCY:-4}"
COLLECTORS="${COLLECTORS:-hpcotel rotel}"
SIGNAL="${SIGNAL:-traces}"         # traces (spans), logs (log records) or metrics (data points)
COMPRESSION="${COMPRESSION:-gzip}" # export compression of both collectors: gzip (their default) or none
# RESULTS_TSV=FILE appends one tab-separated row per collector (benches/export-cost.sh reads it):
# signal, compression, rate, connections, collector, items/s, p99 ms, CPU us/item, peak RSS MiB,
# delivered/accepted, the collector's CPUs (COLLECTOR_CPUS, or -).
COLLECTOR_CPUS="${COLLECTOR_CPUS:-}" # e.g. 0: pin the collector under test (taskset -c), loadgen and sink elsewhere
OTHER_CPUS="${OTHER_CPUS:-}"         # e.g. 1: where loadgen and sink run when the collector is pinned
SINK_GRPC="127.0.0.1:14317"
SINK_HTTP="127.0.0.1:14318"
COLLECTOR_GRPC="127.0.0.1:24317"
DELIVERY_WAIT_S="${DELIVERY_WAIT_S:-30}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hpcotel-bench.XXXXXX")"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "[compare] $*" >&2; }

wait_port() { # host:port timeout_s
  local host="${1%:*}" port="${1##*:}" deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "nothing listens on $1 after $2 s"; return 1; fi
    sleep 0.1
  done
}

sink_spans() { # last running total of the signal's items printed by otlp-sink
  local key line
  case "$SIGNAL" in logs) key=log_records ;; metrics) key=metric_points ;; *) key=spans ;; esac
  line="$(grep -E '^spans=' "$WORK/sink.out" | tail -n 1 || true)"
  line="$(echo "$line" | tr ' ' '\n' | grep -E "^$key=" || true)"
  echo "${line#*=}" | grep -E '^[0-9]+$' || echo 0
}

cpu_ticks() { # pid: utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
CLK_TCK="$(getconf CLK_TCK)"

json_field() { # json key
  echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"
}

find_rotel() {
  if [ -n "${ROTEL_AGENT:-}" ]; then echo "$ROTEL_AGENT"; return; fi
  local cand
  for cand in "$ROOT"/.venv/lib/python*/site-packages/rotel/rotel-agent; do
    [ -x "$cand" ] && { echo "$cand"; return; }
  done
  echo ""
}

build=(-p hpcotel-benches --bin otlp-loadgen -p hpcotel-testkit --bin otlp-sink)
case " $COLLECTORS " in *" hpcotel "* | *" hpcotel-wal "*) build+=(-p hpcotel --bin hpcotel) ;; esac
log "building release binaries: ${build[*]}"
cargo build --release "${build[@]}" >&2
HPCOTEL="$TARGET_DIR/release/hpcotel"
LOADGEN="$TARGET_DIR/release/otlp-loadgen"
SINK="$TARGET_DIR/release/otlp-sink"

pin_other=()
if [ -n "$OTHER_CPUS" ]; then pin_other=(taskset -c "$OTHER_CPUS"); fi
"${pin_other[@]}" "$SINK" --grpc "$SINK_GRPC" --http "$SINK_HTTP" --print-every 100ms >"$WORK/sink.out" 2>"$WORK/sink.err" &
pids+=($!)
wait_port "$SINK_GRPC" 10

rows=()
declare -A RESULT_RATE RESULT_RSS RESULT_CPU
status=0

for collector in $COLLECTORS; do
  case "$collector" in
    hpcotel)
      cmd=(env BENCH_COMPRESSION="$COMPRESSION" "$HPCOTEL" run --config "$ROOT/benches/hpcotel-bench.yaml")
      ;;
    hpcotel-wal)
      # The same config with a write-ahead log at the head of each pipeline (fsync default).
      mkdir -p "$WORK/wal"
      cmd=(env BENCH_COMPRESSION="$COMPRESSION" BENCH_WAL_DIR="$WORK/wal" BENCH_WAL_FSYNC="${WAL_FSYNC:-200ms}"
           "$HPCOTEL" run --config "$ROOT/benches/hpcotel-bench-wal.yaml")
      ;;
    rotel)
      rotel="$(find_rotel)"
      if [ -z "$rotel" ]; then
        log "rotel not found (set ROTEL_AGENT or create .venv with 'pip install rotel'); skipped"
        continue
      fi
      cmd=("$rotel" start --otlp-grpc-endpoint "$COLLECTOR_GRPC"
           --otlp-http-endpoint 127.0.0.1:24318
           --exporter otlp --otlp-exporter-endpoint "http://$SINK_GRPC"
           --otlp-exporter-compression "$COMPRESSION"
           --pid-file "$WORK/rotel.pid")
      ;;
    *) log "unknown collector '$collector'"; exit 2 ;;
  esac

  if [ -n "$COLLECTOR_CPUS" ]; then cmd=(taskset -c "$COLLECTOR_CPUS" "${cmd[@]}"); fi
  log "starting $collector: ${cmd[*]}"
  "${cmd[@]}" >"$WORK/$collector.out" 2>"$WORK/$collector.err" &
  cpid=$!
  pids+=("$cpid")
  if ! wait_port "$COLLECTOR_GRPC" 30; then
    log "$collector did not start; its stderr:"; tail -n 20 "$WORK/$collector.err" >&2
    status=1; kill "$cpid" 2>/dev/null || true; continue
  fi

  before="$(sink_spans)"
  ticks_before="$(cpu_ticks "$cpid")"
  log "loadgen: rate=$RATE batch=$BATCH duration=$DURATION concurrency=$CONCURRENCY"
  result="$("${pin_other[@]}" "$LOADGEN" --endpoint "http://$COLLECTOR_GRPC" --rate "$RATE" --batch "$BATCH" \
    --duration "$DURATION" --concurrency "$CONCURRENCY" --signal "$SIGNAL")"
  echo "$collector $result" >>"$WORK/results.jsonl"
  log "$collector: $result"
  accepted="$(json_field "$result" accepted_spans)"

  # Wait until the sink has every accepted span (collectors batch and flush on their own time).
  deadline=$((SECONDS + DELIVERY_WAIT_S))
  while :; do
    delivered=$(( $(sink_spans) - before ))
    [ "$delivered" -ge "$accepted" ] && break
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done

  ticks_after="$(cpu_ticks "$cpid")"
  # Peak RSS of the collector process (kB in VmHWM), read before it is stopped.
  rss_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$cpid/status" 2>/dev/null || echo 0)"
  kill -TERM "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true

  rate="$(json_field "$result" spans_per_s)"
  p99="$(json_field "$result" p99_ms)"
  rss_mib="$(awk -v k="$rss_kb" 'BEGIN {printf "%.1f", k / 1024}')"
  cpu_us="$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="$delivered" \
    'BEGIN {printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0)}')"
  RESULT_RATE[$collector]="$rate"
  RESULT_RSS[$collector]="$rss_mib"
  RESULT_CPU[$collector]="$cpu_us"
  rows+=("$(printf '%-8s %12s %10s %12s %14s %22s' "$collector" "$rate" "$p99" "$cpu_us" "$rss_mib" "$delivered/$accepted")")
  if [ -n "${RESULTS_TSV:-}" ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SIGNAL" "$COMPRESSION" "$RATE" "$CONCURRENCY" \
      "$collector" "$rate" "$p99" "$cpu_us" "$rss_mib" "$delivered/$accepted" "${COLLECTOR_CPUS:--}" >>"$RESULTS_TSV"
  fi
  if [ "$delivered" -lt "$accepted" ]; then
    log "$collector delivered $delivered of $accepted accepted spans"
    status=1
  fi
done

echo
echo "signal: $SIGNAL, compression: $COMPRESSION, rate: $RATE items/s (0 = unlimited), $CONCURRENCY connections, $BATCH items/request"
printf '%-8s %12s %10s %12s %14s %22s\n' collector items/s "p99 ms" "CPU us/item" "peak RSS MiB" delivered/accepted
for r in "${rows[@]}"; do echo "$r"; done
if [ -n "${RESULT_RATE[hpcotel]:-}" ] && [ -n "${RESULT_RATE[rotel]:-}" ]; then
  awk -v a="${RESULT_RATE[hpcotel]}" -v b="${RESULT_RATE[rotel]}" \
      -v c="${RESULT_RSS[hpcotel]}" -v d="${RESULT_RSS[rotel]}" \
      -v e="${RESULT_CPU[hpcotel]}" -v f="${RESULT_CPU[rotel]}" \
      'BEGIN { printf "hpcotel/rotel: throughput x%.2f, CPU per item x%.2f, peak RSS x%.2f\n", (b > 0 ? a / b : 0), (f > 0 ? e / f : 0), (d > 0 ? c / d : 0) }'
fi
if [ -n "${RESULT_RATE[hpcotel]:-}" ] && [ -n "${RESULT_RATE[hpcotel-wal]:-}" ]; then
  awk -v a="${RESULT_RATE[hpcotel-wal]}" -v b="${RESULT_RATE[hpcotel]}" \
      -v c="${RESULT_RSS[hpcotel-wal]}" -v d="${RESULT_RSS[hpcotel]}" \
      -v e="${RESULT_CPU[hpcotel-wal]}" -v f="${RESULT_CPU[hpcotel]}" \
      'BEGIN { printf "hpcotel-wal/hpcotel: throughput x%.2f, CPU per item x%.2f, peak RSS x%.2f\n", (b > 0 ? a / b : 0), (f > 0 ? e / f : 0), (d > 0 ? c / d : 0) }'
fi
echo "(raw results and logs in $WORK)"
exit $status
