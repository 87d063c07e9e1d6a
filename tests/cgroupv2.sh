#!/bin/bash
# make test-cgroupv2: runs the cgroups package's tests in a qemu guest whose kernel
# (Debian's, booted with cgroup_no_v1=all) has only the cgroup v2 hierarchy. This
# machine's controllers are v1, so the v2 code paths (memory.max/high, swap, cpuset,
# pids, the eBPF device filter, OOM kill counts) are only exercised there.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
cache=_output/cgroupv2
mkdir -p "$cache"

if [ ! -s "$cache/vmlinux" ] || [ ! -x "$cache/busybox/bin/busybox" ]; then
  # The kernel and a static busybox come from the apt mirror, unpacked rather than
  # installed (installing linux-image-amd64 pulls 180 packages).
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "cannot resolve the kernel package behind linux-image-amd64" >&2; exit 1; }
  rm -rf "$cache/kernel" "$cache/busybox" "$cache"/*.deb
  (cd "$cache" && apt-get download -o APT::Sandbox::User=root "$pkg" busybox-static >/dev/null)
  dpkg-deb -x "$cache"/linux-image-*.deb "$cache/kernel"
  dpkg-deb -x "$cache"/busybox-static_*.deb "$cache/busybox"
  # qemu boots an uncompressed ELF kernel through its PVH entry in about 3 s; the
  # vmlinuz holds it as an xz stream after the decompressor.
  vmlinuz=$(ls "$cache"/kernel/boot/vmlinuz-*)
  off=$(LC_ALL=C grep -aobP '\xfd7zXZ\x00' "$vmlinuz" | awk -F: 'NR == 1 {print $1}')
  { tail -c +$((off + 1)) "$vmlinuz" || true; } | xz -dc --single-stream > "$cache/vmlinux.tmp"
  [ "$(head -c4 "$cache/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || { echo "no ELF kernel in $vmlinuz" >&2; exit 1; }
  mv "$cache/vmlinux.tmp" "$cache/vmlinux"
fi

CGO_ENABLED=0 $GO test -c -o "$cache/cgroups.test" ./cgroups
$GO build -o "$cache/vmtest" ./tests/cmd/vmtest
exec "$cache/vmtest" -kernel "$cache/vmlinux" -busybox "$cache/busybox/bin/busybox" \
  -test "$cache/cgroups.test" -args "-test.v -test.timeout 180s" -timeout 5m
