#!/usr/bin/env bash
# make bench: critest -benchmark against enroot-cri AND containerd + runc from Debian,
# in one invocation, on the same locally built images and the same kind of CNI
# network; prints per-operation medians and 95th percentiles for both and their ratio,
# then the read calls' p50/p99 at 200 containers. BENCH_PARTS picks the parts
# (default "critest sizes reads"; "memory" is the reads part's memory figures alone,
# what make bench-start adds; "flood" is the CPU a log flood costs, also in bench-start).
set -euo pipefail
cd "$(dirname "$0")/.."
parts=" ${BENCH_PARTS:-critest sizes reads} "
part() { [[ "$parts" == *" $1 "* ]]; }
BIN=$PWD/bin
. tests/lib.sh
OUT=$PWD/_output/bench
rm -rf "$OUT" && mkdir -p "$OUT/enroot-cri" "$OUT/containerd"
work=$(mktemp -d /tmp/enroot-cri-bench.XXXXXX)
pids=()
sockets=("$work/enroot-cri.sock" "$work/containerd.sock")
bridges=(ecri-bench0 ecri-bench1)
# The read benchmark's pods name cgroup parents (as a kubelet does): remove what is left
# of them once empty.
trap 'cleanup; rmdir /sys/fs/cgroup/*/bench-reads/pod* /sys/fs/cgroup/*/bench-reads 2>/dev/null || true' EXIT
touch "$work/crictl.yaml" # crictl reads it instead of warning about /etc/crictl.yaml

# -bench: the big images the sizes part pulls, and a second registry serving them behind
# a 1 Gbit/s link.
start_registry 300 go run ./tests/cmd/critest-images $(part sizes && echo -bench)
slow=$(awk '/^slow/ {print $2}' "$work/registry.out")
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
cat > "$work/params.yaml" <<YAML
containersNumber: 100
containersNumberParallel: 2
containerBenchmarkTimeoutSeconds: 60
podsNumber: 100
podsNumberParallel: 2
podBenchmarkTimeoutSeconds: 60
imagesNumber: 50
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 60
imagePullingBenchmarkImage: $image
YAML

now() { date +%s%N; }

# timed_pull CRICTL... -- KEY IMAGE DIR: pulls IMAGE, writes "KEY ms" and
# "KEY_disk bytes" (the most DIR grew while the pull ran, sampled every 0.2 s) to $out.
timed_pull() {
  local args=() key image dir before peak=0 t0 t1 sampler
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  key=$2 image=$3 dir=$4
  before=$(du -sx --block-size=1 "$dir" | cut -f1)
  ( while :; do du -sx --block-size=1 "$dir" 2>/dev/null | cut -f1; sleep 0.2; done ) > "$work/du.txt" &
  sampler=$!
  t0=$(now); "${args[@]}" pull "$image" >/dev/null; t1=$(now)
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  peak=$(sort -n "$work/du.txt" | tail -1)
  echo "$key $(( (t1 - t0) / 1000000 ))" >> "$out"
  echo "${key}_disk $(( ${peak:-0} - before ))" >> "$out"
}

# sizes NAME SOCKET ROOT: what critest lacks: a ~1 GiB, 10-layer gzip pull (from loopback
# and through a 1 Gbit/s link) and a ~2 GiB, 16-layer uncompressed one, each with the disk
# the runtime's ROOT grew by during it; and create+start of a container from a ~10 MiB and
# the ~2 GiB image (through crictl, on a host-network pod).
sizes() {
  local c=("$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$2" -i "unix://$2" --timeout 900s) out="$OUT/$1-sizes.txt" t0 t1 pod id
  echo "== image size comparisons against $1"
  : > "$out"
  timed_pull "${c[@]}" -- pull_1GiB_10_layers registry.k8s.io/bench/pull:1 "$3"
  timed_pull "${c[@]}" -- pull_1GiB_10_layers_1Gbit gbit.bench.test/bench/pull:2 "$3"
  printf '{"metadata": {"name": "sizes", "namespace": "bench", "uid": "sizes-%s"}, "linux": {"security_context": {"namespace_options": {"network": 2}}}}\n' "$1" > "$work/pod.json"
  pod=$("${c[@]}" runp "$work/pod.json")
  "${c[@]}" pull registry.k8s.io/bench/small:1 >/dev/null
  timed_pull "${c[@]}" -- pull_2GiB_16_layers_uncompressed registry.k8s.io/bench/big:1 "$3"
  for img in small big; do
    for i in 1 2 3 4 5; do
      printf '{"metadata": {"name": "c-%s-%s"}, "image": {"image": "registry.k8s.io/bench/%s:1"}, "command": ["/bin/true"]}\n' "$img" "$i" "$img" > "$work/ctr.json"
      t0=$(now); id=$("${c[@]}" create "$pod" "$work/ctr.json" "$work/pod.json"); "${c[@]}" start "$id" >/dev/null; t1=$(now)
      echo "create_start_${img} $(( (t1 - t0) / 1000000 ))" >> "$out"
      "${c[@]}" stop "$id" >/dev/null 2>&1 || true
      for _ in 1 2 3 4 5; do "${c[@]}" rm "$id" >/dev/null 2>&1 && break; sleep 1; done
    done
  done
  "${c[@]}" rmp -f "$pod" >/dev/null
}

# reads NAME SOCKET PROCS: the read calls a kubelet makes, at 100 pods x 2 running
# containers, and the memory of the runtime's processes matching PROCS (its monitors;
# for containerd also its pause processes: the test pause image is busybox sleep).
reads() { # reads NAME SOCKET PROCS [CALLS]
  echo "== ${4:+read calls and }memory at 200 containers against $1"
  "$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$2" -i "unix://$2" pull "$image" >/dev/null
  go run ./tests/cmd/bench-reads -endpoint "unix://$2" -image "$image" -pods 100 -n "${4:-0}" -procs "$3" > "$OUT/$1-reads.txt"
}

# cpu_ticks REGEXP: the user + system clock ticks of the processes whose command line
# (arguments joined by spaces) matches.
cpu_ticks() {
  local sum=0 p f
  for p in /proc/[0-9]*; do
    tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qE "$1" || continue
    read -r -a f < <(sed 's/^.*) //' "$p/stat" 2>/dev/null) || continue
    sum=$((sum + f[11] + f[12])) # utime and stime, fields 14 and 15 of stat
  done
  echo "$sum"
}

# flood NAME SOCKET PROCS DAEMON: one container writes 3,000,000 lines of 100 bytes to
# stdout as fast as it can; the CPU its monitors (PROCS) and the daemon (DAEMON) spend
# turning them into the CRI log, the log's size and the seconds it took.
flood() {
  local c=("$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$2" -i "unix://$2") out="$OUT/$1-flood.txt" pod id t0 t1 m0 d0 hz
  echo "== log flood against $1"
  hz=$(getconf CLK_TCK)
  "${c[@]}" pull "$image" >/dev/null
  mkdir -p "$work/flood-$1"
  printf '{"metadata": {"name": "flood", "namespace": "bench", "uid": "flood-%s"}, "log_directory": "%s", "linux": {"security_context": {"namespace_options": {"network": 2}}}}\n' "$1" "$work/flood-$1" > "$work/pod.json"
  printf '{"metadata": {"name": "flood"}, "image": {"image": "%s"}, "log_path": "flood.log", "command": ["sh", "-c", "yes %s | head -n 3000000; echo flood-done; exec sleep 1000"]}\n' "$image" "$(printf '%099d' 0)" > "$work/ctr.json"
  pod=$("${c[@]}" runp "$work/pod.json")
  id=$("${c[@]}" create "$pod" "$work/ctr.json" "$work/pod.json")
  m0=$(cpu_ticks "$3") d0=$(cpu_ticks "$4")
  t0=$(now); "${c[@]}" start "$id" >/dev/null
  for _ in $(seq 6000); do # 5 minutes at most
    tail -c 200 "$work/flood-$1/flood.log" 2>/dev/null | grep -q flood-done && break
    sleep 0.05
  done
  t1=$(now)
  tail -c 200 "$work/flood-$1/flood.log" | grep -q flood-done || { echo "flood: no end in 5 minutes"; "${c[@]}" logs --tail 5 "$id"; return 1; }
  {
    echo "seconds $(awk -v t=$(( t1 - t0 )) 'BEGIN {printf "%.2f", t / 1e9}')"
    echo "log_MB $(( $(stat -c %s "$work/flood-$1/flood.log") / 1000000 ))"
    echo "monitor_cpu_s $(awk -v t=$(( $(cpu_ticks "$3") - m0 )) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')"
    echo "daemon_cpu_s $(awk -v t=$(( $(cpu_ticks "$4") - d0 )) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')"
  } > "$out"
  "${c[@]}" rmp -f "$pod" >/dev/null
  rm -rf "$work/flood-$1"
}

run_parts() { # run_parts NAME SOCKET PROCS ROOT DAEMON
  if part critest; then bench "$1" "$2"; fi
  if part sizes; then sizes "$1" "$2" "$4"; fi
  if part reads; then reads "$1" "$2" "$3" 500; elif part memory; then reads "$1" "$2" "$3"; fi
  if part flood; then flood "$1" "$2" "$3" "$5"; fi
}

bench() { # bench NAME SOCKET
  echo "== critest -benchmark against $1"
  "$BIN/critest" -benchmark --runtime-endpoint "unix://$2" --image-endpoint "unix://$2" \
    --benchmarking-params-file "$work/params.yaml" --benchmarking-output-dir "$OUT/$1" \
    --ginkgo.no-color > "$OUT/$1.log" 2>&1 || { tail -30 "$OUT/$1.log"; return 1; }
}

# enroot-cri on a scratch configuration.
cni_bridge "$work/cni-enroot" bench ecri-bench0 10.231.252.0/24
{
  echo "socket = \"$work/enroot-cri.sock\""
  echo "root = \"$work/enroot/root\""
  echo "state = \"$work/enroot/state\""
  for host in registry.k8s.io gcr.io k8s.gcr.io docker.io; do
    printf '[registries."%s"]\nmirrors = ["http://%s"]\n' "$host" "$registry"
  done
  [[ -z "$slow" ]] || printf '[registries."gbit.bench.test"]\nmirrors = ["http://%s"]\n' "$slow"
  printf '[cni]\nconf_dir = "%s/cni-enroot"\nbin_dirs = ["/usr/lib/cni"]\n[enroot]\nconfig_dir = "%s/enroot/etc"\n' "$work" "$work"
} > "$work/enroot-cri.toml"
"$BIN/enroot-cri" serve --config "$work/enroot-cri.toml" > "$OUT/enroot-cri-daemon.log" 2>&1 &
pid=$!
pids+=($pid)
wait_cri "$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$work/enroot-cri.sock"
run_parts enroot-cri "$work/enroot-cri.sock" "^\\S*enroot-cri(-shim)? shim $work/" "$work/enroot/root" "^\\S*enroot-cri serve --config $work/"
"$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$work/enroot-cri.sock" rmp -fa >/dev/null 2>&1 || true
kill "$pid"

# containerd 1.6 + runc from Debian, same images through hosts.toml mirrors.
cni_bridge "$work/cni-containerd" bench ecri-bench1 10.231.253.0/24
for host in registry.k8s.io gcr.io k8s.gcr.io docker.io; do
  mkdir -p "$work/certs.d/$host"
  printf 'server = "https://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$host" "$registry" \
    > "$work/certs.d/$host/hosts.toml"
done
if [[ -n "$slow" ]]; then
  mkdir -p "$work/certs.d/gbit.bench.test"
  printf 'server = "https://gbit.bench.test"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$slow" \
    > "$work/certs.d/gbit.bench.test/hosts.toml"
fi
cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni-containerd"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$work/certs.d"
TOML
containerd --config "$work/containerd.toml" > "$OUT/containerd-daemon.log" 2>&1 &
pids+=($!)
wait_cri "$BIN/crictl" --config "$work/crictl.yaml" -r "unix://$work/containerd.sock"
run_parts containerd "$work/containerd.sock" "^\\S*containerd-shim-runc-v2 .*-address $work/containerd.sock|^/pause$|^/bin/sleep 2147483647$" "$work/containerd/root" "^containerd --config $work/"

echo
{
  if part critest; then
    go run ./tests/cmd/bench-report -a "enroot-cri=$OUT/enroot-cri" -b "containerd=$OUT/containerd"
    echo
  fi
  if part reads; then
    printf '%-32s %20s %20s %8s\n' "reads at 200 containers" "enroot-cri p50/p99" "containerd p50/p99" "p50 a/b"
    while read -r name p50 p99; do
      [[ "$name" == "#"* || "$name" == memory ]] && continue
      read -r _ cp50 cp99 < <(awk -v k="$name" '$1 == k' "$OUT/containerd-reads.txt")
      printf '%-32s %9sus %7sus %9sus %7sus %8s\n' "$name" "$p50" "$p99" "$cp50" "$cp99" "$(awk -v a="$p50" -v b="$cp50" 'BEGIN {printf "%.2f", a / b}')"
    done < "$OUT/enroot-cri-reads.txt"
    echo
  fi
  if part reads || part memory; then
    printf '%-32s %20s %20s\n' "memory at 100 pods, 200 containers" enroot-cri containerd
    read -r _ an ar ap < <(grep '^memory ' "$OUT/enroot-cri-reads.txt")
    read -r _ bn br bp < <(grep '^memory ' "$OUT/containerd-reads.txt")
    printf '%-32s %20s %20s\n' "processes (monitors; + pause)" "$an" "$bn"
    printf '%-32s %17s MB %17s MB\n' "RSS, total" "$((ar / 1024))" "$((br / 1024))"
    printf '%-32s %17s MB %17s MB\n' "PSS, total" "$((ap / 1024))" "$((bp / 1024))"
    printf '%-32s %17s kB %17s kB\n' "PSS per container" "$((ap / 200))" "$((bp / 200))"
    echo
  fi
  if part flood; then
    printf '%-32s %14s %14s\n' "log flood (3M lines of 100 B)" enroot-cri containerd
    for key in seconds log_MB monitor_cpu_s daemon_cpu_s; do
      printf '%-32s %14s %14s\n' "  $key" "$(awk -v k=$key '$1 == k {print $2}' "$OUT/enroot-cri-flood.txt")" "$(awk -v k=$key '$1 == k {print $2}' "$OUT/containerd-flood.txt")"
    done
    echo
  fi
  part sizes || exit 0
  printf '%-32s %14s %14s\n' "image sizes (median, via crictl)" enroot-cri containerd
  med() { awk -v k="$key" '$1 == k {print $2}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  for key in pull_1GiB_10_layers pull_1GiB_10_layers_1Gbit pull_2GiB_16_layers_uncompressed create_start_small create_start_big; do
    printf '%-32s %12sms %12sms\n' "$key" "$(med "$OUT/enroot-cri-sizes.txt")" "$(med "$OUT/containerd-sizes.txt")"
  done
  # 1074 MB: the image's files (1 GiB of data and the busybox base).
  for link in "" _1Gbit; do
    key=pull_1GiB_10_layers$link
    a=$(med "$OUT/enroot-cri-sizes.txt") b=$(med "$OUT/containerd-sizes.txt")
    printf '%-32s %9.0f MB/s %9.0f MB/s\n' "  pull${link:- loopback}: image MB/s" "$(awk -v t="$a" 'BEGIN {print 1074e3 / t}')" "$(awk -v t="$b" 'BEGIN {print 1074e3 / t}')"
    key=pull_1GiB_10_layers${link}_disk
    printf '%-32s %12s MB %12s MB\n' "  pull${link:- loopback}: peak disk" "$(( $(med "$OUT/enroot-cri-sizes.txt") / 1000000 ))" "$(( $(med "$OUT/containerd-sizes.txt") / 1000000 ))"
  done
  echo "(pull: ~1 GiB in 10 gzip layers, 543 MB compressed, from loopback and through a registry paced"
  echo " to 1 Gbit/s; small: ~10 MiB image, big: ~2 GiB image; create+start includes two crictl invocations)"
} | tee "$OUT/report.txt"
