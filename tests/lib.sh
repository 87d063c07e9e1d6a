# Shared by the demo, critest and bench scripts (sourced, not run).

# start_registry SECONDS CMD...: runs a registry command that prints "ready HOST:PORT"
# in the background (its PID joins $pids) and sets $registry to HOST:PORT.
start_registry() {
  local wait=$1 out="$work/registry.out"
  shift
  "$@" > "$out" 2>&1 &
  pids+=($!)
  for _ in $(seq $((wait * 10))); do grep -q '^ready' "$out" 2>/dev/null && break; sleep 0.1; done
  registry=$(awk '/^ready/ {print $2}' "$out")
  [ -n "$registry" ] || { cat "$out"; return 1; }
}

# wait_cri CRICTL...: waits up to 10 s until the CRI endpoint answers crictl version.
wait_cri() {
  for _ in $(seq 100); do "$@" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# cleanup removes what a script made: the pods on each socket in $sockets, the
# processes in $pids, the bridges in $bridges, mounts under $work, and $work itself.
# Scripts set those, then `trap cleanup EXIT`.
cleanup() {
  local sock b
  for sock in "${sockets[@]}"; do
    [ -S "$sock" ] && "$BIN/crictl" -r "unix://$sock" -i "unix://$sock" rmp -fa >/dev/null 2>&1 || true
  done
  # A `go run` leaves its program running when killed: its children go first.
  for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for b in "${bridges[@]}"; do ip link del "$b" 2>/dev/null || true; done
  grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}

# cni_bridge DIR NAME BRIDGE SUBNET: a CNI configuration in DIR for a private bridge
# network "enroot-cri-NAME": pods get addresses in SUBNET (kept in DIR/ipam), nothing
# is routed out, hostPorts work.
cni_bridge() {
  mkdir -p "$1"
  cat > "$1/10-$2.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "enroot-cri-$2", "plugins": [
  {"type": "bridge", "bridge": "$3", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$4"}]], "dataDir": "$1/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
}
