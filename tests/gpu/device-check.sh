#!/usr/bin/env bash
# The check for a machine with a real NVIDIA GPU (the H200 the device tool lends some
# sessions). Read-only towards the GPU: it never changes MIG mode and never resets.
# It builds enroot-cri there, prints `enroot-cri gpus` from real NVML, and runs a
# container bound to GPU 0 (host network, no CNI needed) that runs the host's
# `nvidia-smi -L` inside it: the device cgroup lets it reach only the bound GPU.
# Output goes to stdout and, when $OUT is set, to $OUT/device-check.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec > >(tee "${OUT:-/tmp}/device-check.log") 2>&1
BIN=$PWD/bin
. tests/lib.sh
work=$(mktemp -d /tmp/enroot-cri-gpu.XXXXXX)
pids=()
sockets=("$work/enroot-cri.sock")
bridges=()
trap cleanup EXIT
export PATH=/usr/local/go/bin:$PATH CGO_CFLAGS="-O2 -Wno-deprecated-declarations"

echo "== machine"
uname -a
nvidia-smi -L || true
cat /proc/driver/nvidia/version 2>/dev/null || true
missing=""
for t in go gcc mksquashfs unsquashfs; do command -v $t >/dev/null || missing="$missing $t"; done
[ -z "$missing" ] || { echo "missing tools:$missing"; exit 1; }

echo "== build"
CGO_ENABLED=0 go build -o "$BIN/enroot-cri" ./cmd/enroot-cri
CGO_ENABLED=1 go build -o "$BIN/enroot-cri-nvml" ./cmd/enroot-cri-nvml
test -x "$BIN/crictl" || GOBIN=$BIN go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
go build -o "$work/testregistry" ./tests/cmd/testregistry

cat > "$work/config.toml" <<TOML
socket = "$work/enroot-cri.sock"
root = "$work/root"
state = "$work/state"
[registries."docker.io"]
mirrors = ["http://REGISTRY"]
[cni]
conf_dir = "$work/cni"
TOML

echo "== enroot-cri gpus (real NVML)"
"$BIN/enroot-cri" gpus --config "$work/config.toml"
"$BIN/enroot-cri" gpus --json --config "$work/config.toml" | head -60

echo "== a container bound to GPU 0 runs the host's nvidia-smi -L"
start_registry 30 "$work/testregistry" gpu/check:1
sed -i "s|REGISTRY|$registry|" "$work/config.toml"
mkdir -p "$work/cni"
"$BIN/enroot-cri" serve --config "$work/config.toml" > "$work/daemon.log" 2>&1 &
pids+=($!)
crictl=("$BIN/crictl" -r "unix://$work/enroot-cri.sock" -i "unix://$work/enroot-cri.sock" -t 120s)
wait_cri "${crictl[@]}"
"${crictl[@]}" pull gpu/check:1
smi=$(command -v nvidia-smi)
libdir=$(dirname "$(ldconfig -p | awk '/libnvidia-ml.so.1 / {print $NF; exit}')")
cat > "$work/pod.json" <<JSON
{"metadata": {"name": "gpu-check", "namespace": "check", "uid": "gpu-check-1"},
 "log_directory": "$work/logs", "linux": {"security_context": {"namespace_options": {"network": 2}}}}
JSON
# The host's nvidia-smi runs with the host's loader and libraries, mounted read-only;
# the driver files come from there, hence the driver annotation.
cat > "$work/ctr.json" <<JSON
{"metadata": {"name": "smi"}, "image": {"image": "gpu/check:1"}, "log_path": "smi.log",
 "CDI_devices": [{"name": "nvidia.com/gpu=0"}],
 "annotations": {"gpus.enroot-cri.io/driver": "none"},
 "mounts": [{"host_path": "$smi", "container_path": "/host/nvidia-smi", "readonly": true},
            {"host_path": "$libdir", "container_path": "/host/lib", "readonly": true}],
 "command": ["/bin/sh", "-c", "ls -l /dev/nvidia*; echo NVIDIA_VISIBLE_DEVICES=\$NVIDIA_VISIBLE_DEVICES; /host/lib/ld-linux-x86-64.so.2 --library-path /host/lib /host/nvidia-smi -L; echo exit=\$?"]}
JSON
pod=$("${crictl[@]}" runp "$work/pod.json")
ctr=$("${crictl[@]}" create "$pod" "$work/ctr.json" "$work/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
for _ in $(seq 300); do
  [ "$("${crictl[@]}" inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_EXITED ] && break
  sleep 0.1
done
"${crictl[@]}" logs "$ctr"
echo "== ledger while the container exists"
"$BIN/enroot-cri" gpus --config "$work/config.toml" | head -5
"${crictl[@]}" rmp -f "$pod" >/dev/null
echo "== daemon log"
tail -20 "$work/daemon.log"
