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
