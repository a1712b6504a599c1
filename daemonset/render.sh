#!/usr/bin/env bash
# Regenerates daemonset/manifests/hpcotel.yaml: the chart rendered with its default values,
# release "hpcotel" in namespace "hpcotel". collector/tests/daemonset.rs fails when the file
# differs from what this renders, so run it after every chart change.
#
#   bash daemonset/render.sh        # helm from $HPCOTEL_HELM, else .tools/ (scripts/test.sh), else PATH
set -euo pipefail
cd "$(dirname "$0")/.."
helm="${HPCOTEL_HELM:-}"
if [ -z "$helm" ]; then
  helm="$(ls .tools/kubectl-layer-*/helm/helm 2>/dev/null | tail -n 1 || true)"
fi
helm="${helm:-helm}"
mkdir -p daemonset/manifests
"$helm" template hpcotel daemonset/chart --namespace hpcotel > daemonset/manifests/hpcotel.yaml.tmp
mv daemonset/manifests/hpcotel.yaml.tmp daemonset/manifests/hpcotel.yaml
echo "wrote daemonset/manifests/hpcotel.yaml ($("$helm" version --short))"
