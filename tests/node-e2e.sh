#!/usr/bin/env bash
# make test-node-e2e: the Kubernetes node e2e suite (k8s.io/kubernetes test/e2e_node at
# the release of go.mod's k8s.io modules), focus NodeConformance, against enroot-cri on
# its shipped configuration, offline. The suite starts its own etcd and API server
# (in-process) and the kubelet; enroot-cri gets only what a test node needs on top of
# `enroot-cri config`: its paths, registry mirrors that serve the suite's images under
# their real names (built locally: tests/cmd/critest-images -node-e2e), a CNI bridge
# and the `test-handler` runtime handler containerd's CI configures. Prints passed,
# failed and skipped; fails when a spec fails that tests/node-e2e-expected-failures.txt
# does not list.
#
# NODE_E2E_NODES (default 4): specs run in parallel; NODE_E2E_TIMEOUT (default 40m);
# NODE_E2E_FOCUS / NODE_E2E_SKIP: ginkgo's regular expressions.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
GO=${GO:-go}
. tests/lib.sh
OUT=$PWD/_output/node-e2e
kube=$PWD/_output/kube/bin
tools=$OUT/bin

# The kubelet (tests/kube-build.sh), then the suite, ginkgo and agnhost from the same
# module graph.
bash tests/kube-build.sh
release=$(cat _output/kube/release)
if [ "$(cat "$tools/release" 2>/dev/null)" != "$release" ]; then
  mkdir -p "$OUT/src" "$tools"
  cp _output/kube/src/go.mod _output/kube/src/go.sum "$OUT/src/"
  sed -i 's/^module .*/module enroot-cri-node-e2e-build/' "$OUT/src/go.mod"
  cat > "$OUT/src/tools.go" <<'GO'
//go:build tools

package nodee2ebuild

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
GO
  (
    cd "$OUT/src"
    GOFLAGS=-mod=mod $GO mod tidy
    CGO_ENABLED=0 GOFLAGS=-mod=mod $GO test -c -o "$tools/e2e_node.test" k8s.io/kubernetes/test/e2e_node
    CGO_ENABLED=0 GOFLAGS=-mod=mod $GO build -o "$tools/" github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost
    src=$($GO list -m -f '{{.Dir}}' k8s.io/kubernetes)
    cp "$src/test/images/agnhost/porter/localhost.crt" "$src/test/images/agnhost/porter/localhost.key" "$tools/"
  )
  echo "$release" > "$tools/release"
fi

work=$(mktemp -d /tmp/enroot-cri-node-e2e.XXXXXX)
bridge=ecri-node0
# The suite looks for pod cgroups under /kubepods (the kubelet's default cgroup root).
kubepods=kubepods
pids=()
sockets=("$work/enroot-cri.sock")
bridges=("$bridge")
# What the kubelet makes outside $work: /var/lib/kubelet (the suite's fixed root),
# /var/log/pods, /kubepods in each cgroup hierarchy, the kernel settings it sets. Put
# back at exit. A node that has them already runs a kubelet of its own: not here.
for d in /var/lib/kubelet /sys/fs/cgroup/memory/$kubepods /sys/fs/cgroup/unified/$kubepods; do
  [ ! -e "$d" ] || { echo "node e2e: $d exists (a kubelet runs on this machine?); the suite needs a node of its own"; exit 1; }
done
new_dirs=()
for d in /var/lib/kubelet /var/log/pods; do [ -e "$d" ] || new_dirs+=("$d"); done
sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
declare -A saved
for s in "${sysctls[@]}"; do saved[$s]=$(cat "/proc/sys/$s"); done
restore() {
  local s d h
  cleanup
  # The kubelet bind-mounts its root on itself (to share it) and mounts volumes under it.
  awk '$5 == "/var/lib/kubelet" || index($5, "/var/lib/kubelet/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    xargs -r -n1 umount -l 2>/dev/null || true
  for d in "${new_dirs[@]}"; do rm -rf "$d"; done
  for s in "${sysctls[@]}"; do echo "${saved[$s]}" > "/proc/sys/$s" || true; done
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$kubepods" ] && find "$h$kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
trap restore EXIT

start_registry 300 go run ./tests/cmd/critest-images -node-e2e "$tools"

cni_bridge "$work/cni" node-e2e "$bridge" 10.231.250.0/24
# The shipped configuration (the built-in defaults `enroot-cri config` prints), with
# what this node adds to it.
{
  echo "socket = \"$work/enroot-cri.sock\""
  echo "root = \"$work/root\""
  echo "state = \"$work/state\""
  for host in registry.k8s.io gcr.io k8s.gcr.io docker.io; do
    printf '[registries."%s"]\nmirrors = ["http://%s"]\n' "$host" "$registry"
  done
  printf '[cni]\nconf_dir = "%s/cni"\nbin_dirs = ["/usr/lib/cni"]\n' "$work"
  printf '[enroot]\nconfig_dir = "%s/enroot"\n' "$work"
  printf '# the handler the suite'"'"'s RuntimeClass specs name, as containerd'"'"'s CI configures it\n'
  printf '[runtimes.test-handler]\nkind = "kubernetes"\n'
} > "$work/config.toml"

"$BIN/enroot-cri" serve --config "$work/config.toml" > "$OUT/daemon.log" 2>&1 &
pids+=($!)
echo $! > "$work/enroot-cri.pid"
wait_cri "$BIN/crictl" -r "unix://$work/enroot-cri.sock"

# The kubelet's base configuration: the suite's default (jenkins/default-kubelet-config)
# with the packaged kubelet snippet (packaging/kubelet-config.yaml) and this machine's
# needs: cgroup v1, swap, kernel defaults.
cat > "$work/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
podCIDR: "10.100.0.0/24"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
$(sed -n '/^featureGates:/,$p' packaging/kubelet-config.yaml | grep -v '^#')
YAML

# The suite runs the kubelet under systemd-run when it finds it; this machine has
# systemd-run but no systemd: the suite gets a PATH without it. It runs the kubelet
# found beside its binary.
mkdir -p "$work/path"
for f in /usr/bin/*; do [ "${f##*/}" = systemd-run ] || ln -s "$f" "$work/path/"; done
ln -sf "$kube/kubelet" "$tools/kubelet"

focus=${NODE_E2E_FOCUS:-'\[NodeConformance\]'}
skip=${NODE_E2E_SKIP:-'\[Serial\]|\[Slow\]|\[Flaky\]|\[Disruptive\]|\[Feature:[^]]+\]'}
mkdir -p "$OUT/report"
set +e
(
  cd "$work"
  export PATH="$work/path:/usr/local/sbin:/usr/sbin:/usr/local/go/bin:$kube"
  "$tools/ginkgo" --nodes="${NODE_E2E_NODES:-4}" --timeout="${NODE_E2E_TIMEOUT:-40m}" --no-color \
    --focus="$focus" --skip="$skip" --output-dir="$OUT" --junit-report=junit.xml \
    "$tools/e2e_node.test" -- \
    --container-runtime-endpoint="unix://$work/enroot-cri.sock" --image-service-endpoint="unix://$work/enroot-cri.sock" \
    --container-runtime-process-name=enroot-cri --container-runtime-pid-file="$work/enroot-cri.pid" \
    --kubectl-path="$kube/kubectl" --prepull-images=false --report-dir="$OUT/report" \
    --kubelet-config-file="$work/kubelet.yaml" \
    --kubelet-flags="--runtime-cgroups= --kubelet-cgroups= --system-cgroups="
) > "$OUT/ginkgo.log" 2>&1
rc=$?
set -e
tail -5 "$OUT/ginkgo.log"
[ -s "$OUT/junit.xml" ] || { echo "node e2e: no report (ginkgo exit $rc); see $OUT/ginkgo.log"; exit 1; }
go run ./tests/cmd/critest-report -suite "node e2e" -junit "$OUT/junit.xml" -expected tests/node-e2e-expected-failures.txt
