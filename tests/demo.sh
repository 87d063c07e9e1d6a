#!/usr/bin/env bash
# The README's main command (make demo): start enroot-cri on a scratch configuration,
# serve a locally built image from a registry on 127.0.0.1, pull it with crictl through
# a registry mirror, run a pod from it on a private CNI bridge, and show its output.
# Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
. tests/lib.sh
work=$(mktemp -d /tmp/enroot-cri-demo.XXXXXX)
pids=()
bridge=ecri-demo0
sockets=("$work/enroot-cri.sock")
bridges=("$bridge")
trap cleanup EXIT

echo "== building the demo image from this machine's busybox and serving it on 127.0.0.1"
go build -o "$work/testregistry" ./tests/cmd/testregistry
start_registry 10 "$work/testregistry" demo/hello:1.0
echo "registry: $registry"

cat > "$work/config.toml" <<TOML
socket = "$work/enroot-cri.sock"
root = "$work/root"
state = "$work/state"

# docker.io names are served by the local registry first.
[registries."docker.io"]
mirrors = ["http://$registry"]

[cni]
conf_dir = "$work/cni"
bin_dirs = ["/usr/lib/cni"]
TOML
# A private bridge network: pods get addresses in it, nothing is routed out.
cni_bridge "$work/cni" demo "$bridge" 10.231.250.0/24

echo "== starting enroot-cri serve --config $work/config.toml"
"$BIN/enroot-cri" serve --config "$work/config.toml" > "$work/daemon.log" 2>&1 &
pids+=($!)
cat > "$work/crictl.yaml" <<YAML
runtime-endpoint: unix://$work/enroot-cri.sock
image-endpoint: unix://$work/enroot-cri.sock
timeout: 60
YAML
crictl=("$BIN/crictl" --config "$work/crictl.yaml")
wait_cri "${crictl[@]}"
"${crictl[@]}" version

echo "== crictl pull demo/hello:1.0"
"${crictl[@]}" pull demo/hello:1.0
echo "== crictl images"
"${crictl[@]}" images
echo "== the image is one Enroot squashfs file:"
sqsh=$("${crictl[@]}" inspecti -o go-template --template '{{.info.squashfs}}' demo/hello:1.0)
ls -l "$sqsh"
echo "== its /etc/rc, as enroot import writes it:"
unsquashfs -cat "$sqsh" etc/rc

echo "== crictl runp: a pod sandbox on the CNI bridge"
cat > "$work/pod.json" <<JSON
{"metadata": {"name": "hello", "namespace": "demo", "uid": "demo-hello-1"},
 "hostname": "hello-pod", "log_directory": "$work/logs", "linux": {}}
JSON
cat > "$work/container.json" <<JSON
{"metadata": {"name": "hello"}, "image": {"image": "demo/hello:1.0"}, "log_path": "hello.log"}
JSON
pod=$("${crictl[@]}" runp "$work/pod.json")
"${crictl[@]}" pods
echo "pod IP: $("${crictl[@]}" inspectp -o go-template --template '{{.status.network.ip}}' "$pod")"
echo "== crictl create + start: the image's own command"
ctr=$("${crictl[@]}" create "$pod" "$work/container.json" "$work/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
for _ in $(seq 100); do
  [ "$("${crictl[@]}" inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_EXITED ] && break
  sleep 0.1
done
"${crictl[@]}" ps -a
echo "== crictl logs $ctr"
"${crictl[@]}" logs "$ctr"
echo "exit code: $("${crictl[@]}" inspect -o go-template --template '{{.status.exitCode}}' "$ctr")"
"${crictl[@]}" rmp -f "$pod" >/dev/null
echo "== daemon log"
cat "$work/daemon.log"
