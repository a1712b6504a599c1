#!/usr/bin/env bash
# The export path's cost, hpcotel beside rotel, from one run: for spans, log records and metric
# points, with export compression on (gzip, both collectors' default) and off, each collector
#
#   - at a fixed rate below both collectors' saturation (RATE, default 40000 items/s over 4
#     connections): CPU seconds per million items (utime + stime from /proc, loadgen and sink
#     excluded) and p99 request latency;
#   - at saturation with enough requests in flight that neither collector's batching delay is
#     the limit (SATURATION_CONCURRENCY, default 32 connections, rate unlimited): items/s,
#     p99 request latency, CPU seconds per million items and peak RSS;
#
# then, with ONE_CORE=1 (the default on a machine with 2 or more CPUs), hpcotel alone pinned to
# CPU 0 (loadgen and sink on CPU 1) at saturation with compression none, gzip and zstd.
#
#   benches/export-cost.sh                          # everything, about 8 minutes
#   SIGNALS=traces COMPRESSIONS=gzip benches/export-cost.sh
#
# Prints markdown tables (the form benches/README.md shows) on stdout; each compare.sh run's
# own table and logs go to stderr. Exits non-zero when any run did not deliver everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SIGNALS="${SIGNALS:-traces logs metrics}"
COMPRESSIONS="${COMPRESSIONS:-gzip none}"
RATE="${RATE:-40000}"
DURATION="${DURATION:-10s}"
SATURATION_CONCURRENCY="${SATURATION_CONCURRENCY:-32}"
ONE_CORE="${ONE_CORE:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}"
TSV="$(mktemp "${TMPDIR:-/tmp}/hpcotel-export-cost.XXXXXX")"
status=0

run() { # extra env assignments for compare.sh
  env RESULTS_TSV="$TSV" DURATION="$DURATION" "$@" "$ROOT/benches/compare.sh" >&2 || status=1
}

for signal in $SIGNALS; do
  for compression in $COMPRESSIONS; do
    run SIGNAL="$signal" COMPRESSION="$compression" RATE="$RATE" CONCURRENCY=4
    run SIGNAL="$signal" COMPRESSION="$compression" RATE=0 CONCURRENCY="$SATURATION_CONCURRENCY"
  done
done
if [ "$ONE_CORE" = 1 ]; then
  for compression in none gzip zstd; do
    run COLLECTORS=hpcotel COLLECTOR_CPUS=0 OTHER_CPUS=1 SIGNAL=traces COMPRESSION="$compression" \
      RATE=0 CONCURRENCY="$SATURATION_CONCURRENCY"
  done
fi

cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)"
echo "Machine: $(nproc) CPUs ($cpu_model), $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM;" \
  "hpcotel $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), rotel from .venv; $DURATION per run."
echo
echo "| signal | compression | collector | CPU s / 1M items at $RATE/s | p99 ms at $RATE/s | items/s at saturation | p99 ms at saturation | CPU s / 1M items at saturation | peak RSS MiB at saturation |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
awk -F'\t' -v rate="$RATE" -v conc="$SATURATION_CONCURRENCY" '
  # fields: signal compression rate connections collector items/s p99 cpu rss delivered cpus
  $11 != "-" { next }
  $3 == rate && $4 == 4 { fixed_cpu[$1 FS $2 FS $5] = $8; fixed_p99[$1 FS $2 FS $5] = $7 }
  $3 == 0 && $4 == conc { sat_rate[$1 FS $2 FS $5] = $6; sat_p99[$1 FS $2 FS $5] = $7; sat_cpu[$1 FS $2 FS $5] = $8; sat_rss[$1 FS $2 FS $5] = $9 }
  { if (!(($1 FS $2) in seen)) { seen[$1 FS $2] = 1; order[++n] = $1 FS $2 } }
  function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("**× %.2f**", a / b) : "" }
  END {
    for (i = 1; i <= n; i++) {
      split(order[i], k, FS)
      h = order[i] FS "hpcotel"; r = order[i] FS "rotel"
      if (!(h in sat_rate) && !(h in fixed_cpu)) continue
      for (c = 1; c <= 2; c++) {
        key = (c == 1) ? h : r
        if (!(key in sat_rate) && !(key in fixed_cpu)) continue
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k[1], k[2], (c == 1 ? "hpcotel" : "rotel"),
          fixed_cpu[key], fixed_p99[key], sat_rate[key], sat_p99[key], sat_cpu[key], sat_rss[key]
      }
      if (r in sat_rate || r in fixed_cpu)
        printf "| | | **hpcotel / rotel** | %s | %s | %s | %s | %s | %s |\n",
          ratio(fixed_cpu[h], fixed_cpu[r]), ratio(fixed_p99[h], fixed_p99[r]), ratio(sat_rate[h], sat_rate[r]),
          ratio(sat_p99[h], sat_p99[r]), ratio(sat_cpu[h], sat_cpu[r]), ratio(sat_rss[h], sat_rss[r])
    }
  }' "$TSV"
if [ "$ONE_CORE" = 1 ]; then
  echo
  echo "hpcotel alone on CPU 0 (loadgen and sink on CPU 1), spans at saturation:"
  echo
  echo "| compression | spans/s | p99 ms | CPU s / 1M spans | share of its core | peak RSS MiB | delivered/accepted |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  awk -F'\t' '$11 != "-" { pinned[$2] = $0 }
    END { split("none gzip zstd", cs, " "); for (i = 1; i <= 3; i++) if (cs[i] in pinned) {
      split(pinned[cs[i]], f, "\t"); printf "| %s | %s | %s | %s | %.2f | %s | %s |\n", f[2], f[6], f[7], f[8], f[6] * f[8] / 1e6, f[9], f[10] } }' \
    "$TSV"
fi
rm -f "$TSV"
exit $status
