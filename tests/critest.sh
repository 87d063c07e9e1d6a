#!/usr/bin/env bash
# make critest: run the CRI validation suite (critest from cri-tools v1.37.0) against
# enroot-cri on a scratch configuration: locally built test images served under their
# real names through registry mirrors, and a CNI bridge with no route out.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
. tests/lib.sh
OUT=$PWD/_output
mkdir -p "$OUT"
work=$(mktemp -d /tmp/enroot-cri-critest.XXXXXX)
bridge=ecri-crit0
pids=()
sockets=("$work/enroot-cri.sock")
bridges=("$bridge")
trap cleanup EXIT

start_registry 60 go run ./tests/cmd/critest-images

cni_bridge "$work/cni" critest "$bridge" 10.231.251.0/24
{
  echo "socket = \"$work/enroot-cri.sock\""
  echo "root = \"$work/root\""
  echo "state = \"$work/state\""
  for host in registry.k8s.io gcr.io k8s.gcr.io docker.io public.ecr.aws; do
    printf '[registries."%s"]\nmirrors = ["http://%s"]\n' "$host" "$registry"
  done
  printf '[cni]\nconf_dir = "%s/cni"\nbin_dirs = ["/usr/lib/cni"]\n' "$work"
  printf '[enroot]\nconfig_dir = "%s/enroot"\n' "$work"

} > "$work/config.toml"
printf 'runtime-endpoint: unix://%s/enroot-cri.sock\nimage-endpoint: unix://%s/enroot-cri.sock\ntimeout: 60\n' "$work" "$work" > "$work/crictl.yaml"

"$BIN/enroot-cri" serve --config "$work/config.toml" > "$OUT/critest-daemon.log" 2>&1 &
pids+=($!)
wait_cri "$BIN/crictl" --config "$work/crictl.yaml"

set +e
"$BIN/critest" --runtime-endpoint "unix://$work/enroot-cri.sock" --image-endpoint "unix://$work/enroot-cri.sock" \
  --ginkgo.junit-report "$OUT/critest-junit.xml" --ginkgo.no-color ${CRITEST_ARGS:-} > "$OUT/critest.log" 2>&1
rc=$?
set -e
go run ./tests/cmd/critest-report -junit "$OUT/critest-junit.xml" -expected tests/critest-expected-failures.txt
