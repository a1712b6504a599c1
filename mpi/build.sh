#!/usr/bin/env bash
# Builds libhpcotel_mpi.so for the installed MPI: the Rust recorder (a staticlib, built by
# cargo, MPI-agnostic) linked with the PMPI wrappers (src/shim.c), compiled by that MPI's
# `mpicc` against its mpi.h. One build per MPI implementation:
#
#   mpi/build.sh --release                        # Open MPI: next to target/release/hpcotel
#   mpi/build.sh --release --mpicc mpicc.mpich    # MPICH: target/release/mpich/
#   mpi/build.sh --mpicc mpicc.mpich --out target/mpich/libhpcotel_mpi.so
#
# `hpcotel mpirun` looks for the library next to itself, and first in mpich/ there when the
# launcher is MPICH's (Hydra); it refuses a library built for the other MPI.
#
# Options:
#   --mpicc CMD       the MPI compiler wrapper (default: $MPICC, else mpicc)
#   --release         build the recorder in release mode (default: debug)
#   --staticlib FILE  link this libhpcotel_mpi.a instead of running cargo
#   --out FILE        where to write the library (default: target/<profile>/libhpcotel_mpi.so,
#                     or target/<profile>/mpich/libhpcotel_mpi.so when the mpicc is MPICH's)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mpicc="${MPICC:-mpicc}"
profile=debug
staticlib=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mpicc) mpicc="$2"; shift 2 ;;
    --release) profile=release; shift ;;
    --staticlib) staticlib="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "mpi/build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! command -v "$mpicc" >/dev/null 2>&1; then
  echo "mpi/build.sh: $mpicc not found: install an MPI with its headers (Debian: openmpi-bin libopenmpi-dev, or mpich libmpich-dev)" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-$root/target}"
if [ -z "$staticlib" ]; then
  flag=""
  [ "$profile" = release ] && flag="--release"
  (cd "$root" && cargo build --quiet $flag -p hpcotel-mpi)
  staticlib="$target/$profile/libhpcotel_mpi.a"
fi
[ -f "$staticlib" ] || { echo "mpi/build.sh: $staticlib not found" >&2; exit 1; }
if [ -z "$out" ]; then
  # MPICH's build gets its own directory (where `hpcotel mpirun` looks first for a Hydra
  # launcher), so that it never replaces the Open MPI build. -show's output is captured
  # first: grep -q closing the pipe early would fail the pipeline under pipefail.
  show="$("$mpicc" -show 2>/dev/null || true)"
  if [[ "$(basename "$mpicc")" == *mpich* ]] || grep -q mpich <<<"$show"; then
    out="$target/$profile/mpich/libhpcotel_mpi.so"
  else
    out="$target/$profile/libhpcotel_mpi.so"
  fi
fi
mkdir -p "$(dirname "$out")"
# -z defs: every symbol must resolve now (against libmpi and libc), not at a user's MPI_Init.
"$mpicc" -shared -fPIC -O2 -Wall -Wextra -I"$here/src" -o "$out.$$.tmp" "$here/src/shim.c" \
  "$staticlib" -Wl,--version-script="$here/src/exports.map" -Wl,-z,defs -Wl,--gc-sections \
  -lpthread -ldl -lm -lrt -lgcc_s
mv -f "$out.$$.tmp" "$out"
echo "$out"
