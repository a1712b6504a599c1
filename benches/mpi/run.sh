#!/usr/bin/env bash
# Latency that libhpcotel_mpi.so adds per intercepted MPI call. Not part of CI; run by hand:
#
#   bash benches/mpi/run.sh
#   REPS=20 bash benches/mpi/run.sh                # more alternating pairs
#   MPI=mpich bash benches/mpi/run.sh              # MPICH instead of Open MPI
#
# Builds the library (release) for the chosen MPI and benches/mpi/latency.c, then runs every
# benchmark REPS times as an alternating pair, first without and then with LD_PRELOAD of the
# library, so that drift on the machine hits both sides alike. Each run prints one JSON line
# (median, p99, mean of its per-call samples); the table reports, per benchmark and side, the
# median over the repetitions of each statistic, and the difference.
#
# The library runs with its defaults (recording on, slow-call spans at 10 ms, export every 10 s)
# and exports to a closed port (OTEL_EXPORTER_OTLP_ENDPOINT, default http://127.0.0.1:9): each
# rank prints one "cannot export" warning at MPI_Finalize, kept in the log, not shown.
#
# Benchmarks (8-byte messages, shared memory, one node; benches/mpi/latency.c):
#   pingpong  4 ranks   pairs 0<->1 and 2<->3 ping-pong at once (MPI_Send + MPI_Recv)
#   allreduce 4 ranks   MPI_Allreduce of one double, MPI_SUM, MPI_COMM_WORLD
#   pingpong  2 ranks   one pair, one rank per core (bound): the classic osu_latency set-up
#   allreduce 1 rank    the collective wrapper with nothing to wait for
#   self      1 rank    MPI_Sendrecv to itself: the point-to-point wrapper with nothing to wait for
# The 4-rank runs are bound round-robin to the cores (ranks 0 and 2 on one, 1 and 3 on the
# other, so each ping-pong pair spans both); on a machine with fewer than 4 cores they are
# oversubscribed and measure the scheduler as much as MPI. The 1-rank rows isolate the
# wrapper's own cost.
#
# Settings (environment): MPI (openmpi | mpich; default openmpi), REPS (10),
# OTEL_EXPORTER_OTLP_ENDPOINT (http://127.0.0.1:9), CARGO_TARGET_DIR, KEEP=1 (keep the
# temporary directory with every run's output).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
mpi="${MPI:-openmpi}"
reps="${REPS:-10}"
export OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:9}"

case "$mpi" in
  openmpi)
    mpicc=mpicc.openmpi; mpirun=mpirun.openmpi
    lib="$target/release/libhpcotel_mpi.so"
    # Running as root needs these; the others keep Open MPI on loopback/shared memory.
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader,tcp}"
    export OMPI_MCA_btl_tcp_if_include="${OMPI_MCA_btl_tcp_if_include:-lo}"
    export OMPI_MCA_oob_tcp_if_include="${OMPI_MCA_oob_tcp_if_include:-lo}"
    env_flag() { echo "-x $1=$2"; }
    ranks_flags() { # ranks, placement (over | core)
      if [ "$2" = over ]; then echo "-np $1 --oversubscribe --map-by core --bind-to core:overload-allowed"
      else echo "-np $1 --bind-to core"; fi
    }
    ;;
  mpich)
    mpicc=mpicc.mpich; mpirun=mpirun.mpich
    lib="$target/release-mpich/libhpcotel_mpi.so"
    env_flag() { echo "-genv $1 $2"; }
    ranks_flags() {
      echo "-np $1 -bind-to core"
    }
    ;;
  *) echo "benches/mpi/run.sh: MPI must be openmpi or mpich, not $mpi" >&2; exit 2 ;;
esac
for cmd in "$mpicc" "$mpirun" python3; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "benches/mpi/run.sh: $cmd not found" >&2; exit 1; }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/hpcotel-mpi-bench.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; fi

echo "building $lib and latency ($mpi) ..." >&2
bash "$root/mpi/build.sh" --release --mpicc "$mpicc" --out "$lib" >/dev/null
"$mpicc" -O2 -Wall -Wextra -Werror -o "$tmp/latency" "$here/latency.c"

# name | ranks | placement | mode | iterations | warm-up iterations
benches=(
  "pingpong|4|over|pingpong|100000|5000"
  "allreduce|4|over|allreduce|50000|5000"
  "pingpong|2|core|pingpong|400000|20000"
  "allreduce|1|core|allreduce|1000000|50000"
  "self|1|core|self|1000000|50000"
)

if [ "$mpi" = mpich ] && [ "$(nproc)" -lt 4 ]; then
  # MPICH polls without yielding: with more ranks than cores a collective waits out a
  # scheduler time slice per call (milliseconds; the 4-rank Allreduce would take minutes).
  echo "MPICH on $(nproc) CPUs: skipping the oversubscribed 4-rank benchmarks" >&2
  kept=()
  for b in "${benches[@]}"; do
    IFS='|' read -r _ _ place _ <<<"$b"
    [ "$place" = over ] || kept+=("$b")
  done
  benches=("${kept[@]}")
fi

run_one() { # bench spec, side (without | with), repetition
  local name ranks place mode iters warm flags pre=""
  IFS='|' read -r name ranks place mode iters warm <<<"$1"
  flags="$(ranks_flags "$ranks" "$place") $(env_flag OTEL_EXPORTER_OTLP_ENDPOINT "$OTEL_EXPORTER_OTLP_ENDPOINT")"
  [ "$2" = with ] && pre="$(env_flag LD_PRELOAD "$lib")"
  local log="$tmp/$name-$ranks-$2-$3.log"
  # shellcheck disable=SC2086
  if ! "$mpirun" $flags $pre "$tmp/latency" "$mode" -n "$iters" -w "$warm" >"$log" 2>&1; then
    echo "benches/mpi/run.sh: $name ($ranks ranks, $2) failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  local line
  line="$(grep '^{"bench"' "$log" | tail -n 1)"
  [ -n "$line" ] || { echo "benches/mpi/run.sh: no result in $log" >&2; cat "$log" >&2; exit 1; }
  echo "{\"name\":\"$name\",\"side\":\"$2\",\"rep\":$3,\"result\":$line}" >>"$tmp/results.jsonl"
}

start=$(date +%s)
# shellcheck disable=SC2046
clock_line="$("$mpirun" $(ranks_flags 1 core) "$tmp/latency" clock -n 2000000 -w 2000000 2>/dev/null \
  | grep '^{"bench"' || true)"
for rep in $(seq 1 "$reps"); do
  for b in "${benches[@]}"; do
    run_one "$b" without "$rep"
    run_one "$b" with "$rep"
  done
  echo "repetition $rep/$reps done ($(( $(date +%s) - start )) s)" >&2
done

if [ "$mpi" = openmpi ]; then
  mpi_version="$("$mpirun" --version 2>&1 | head -n 1 || true)"
else
  mpi_version="$("$mpirun" --version 2>&1 | grep -m1 'Version:' | tr -s ' ' || true)"
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
python3 - "$tmp/results.jsonl" "$reps" "$mpi" "$mpi_version" "$(nproc)" "$cpu" \
  "$clock_line" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" <<'EOF'
import json, statistics, sys

path, reps, mpi, version, nproc, cpu, clock, commit = sys.argv[1:9]
runs = [json.loads(l) for l in open(path)]
order, by = [], {}
for r in runs:
    key = (r["name"], r["result"]["ranks"])
    if key not in by:
        order.append(key)
        by[key] = {"without": [], "with": []}
    by[key][r["side"]].append(r["result"])

def med(rs, stat):
    return statistics.median(x[stat] for x in rs)

def fmt(v):
    return f"{v:,.0f}".replace(",", " ")

def sfmt(v):
    return ("+" if v >= 0 else "−") + fmt(abs(v))

label = {
    ("pingpong", 4): "ping-pong 8 B, 4 ranks (pairs 0↔1, 2↔3), one-way",
    ("allreduce", 4): "Allreduce 8 B, 4 ranks",
    ("pingpong", 2): "ping-pong 8 B, 2 ranks, one per core, one-way",
    ("allreduce", 1): "Allreduce 8 B, 1 rank (wrapper alone)",
    ("self", 1): "Sendrecv 8 B to self, 1 rank (wrapper alone)",
}
print(f"\nmachine: {nproc} CPUs, {cpu}; {mpi}: {version}; commit {commit}")
if clock:
    c = json.loads(clock)
    print(f"clock_gettime(CLOCK_MONOTONIC): median {c['median_ns']:.0f} ns, mean {c['mean_ns']:.1f} ns"
          " per read (each wrapper reads it twice)")
print(f"{reps} alternating pairs per benchmark; each figure is the median over the repetitions.\n")
print("| benchmark | median ns without | with | added | p99 ns without | with | added "
      "| added per intercepted call (median) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for key in order:
    wo, wi = by[key]["without"], by[key]["with"]
    cps = wo[0]["calls_per_sample"] or 1
    m0, m1 = med(wo, "median_ns"), med(wi, "median_ns")
    p0, p1 = med(wo, "p99_ns"), med(wi, "p99_ns")
    print(f"| {label.get(key, key[0])} | {fmt(m0)} | {fmt(m1)} | {sfmt(m1 - m0)} | {fmt(p0)} "
          f"| {fmt(p1)} | {sfmt(p1 - p0)} | **{sfmt((m1 - m0) / cps)}** |")
print("\nadded per intercepted call: a one-way ping-pong trip spans 2 intercepted calls (the sender's"
      " MPI_Send and the receiver's MPI_Recv; a round trip is Send + Recv on each rank), so it is the"
      " added one-way median / 2; the other rows time one call per sample.")
print("\nspread over the repetitions (min–max of the runs' medians; a pair = the without and with runs of one"
      " repetition, back to back; mean = median over the runs of each run's mean):\n")
print("| benchmark | run medians without | run medians with | added, median of the pairs' differences "
      "| mean without | mean with |")
print("|---|---:|---:|---:|---:|---:|")
for key in order:
    wo, wi = by[key]["without"], by[key]["with"]
    rng = lambda rs: f"{fmt(min(x['median_ns'] for x in rs))}–{fmt(max(x['median_ns'] for x in rs))}"
    paired = statistics.median(b["median_ns"] - a["median_ns"] for a, b in zip(wo, wi))
    print(f"| {label.get(key, key[0])} | {rng(wo)} | {rng(wi)} | {sfmt(paired)} "
          f"| {fmt(med(wo, 'mean_ns'))} | {fmt(med(wi, 'mean_ns'))} |")
EOF
echo "total $(( $(date +%s) - start )) s; raw results: $tmp/results.jsonl$([ "${KEEP:-0}" = 1 ] || echo ' (deleted; KEEP=1 keeps it)')" >&2
