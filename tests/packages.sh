#!/bin/bash
# make test-packages: builds the DEB and RPM, checks the DEB with lintian and the RPM
# with rpm -qpl/-qpi, then installs the DEB into a Debian chroot made with debootstrap
# from the machine's apt mirror: enroot-cri version and config run there,
# systemd-analyze verify accepts the unit, the service is enabled but not started,
# an upgrade keeps a changed configuration and the state directory, and removal
# keeps the state directory too.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
dist=${DIST:-dist}
fail() { echo "FAIL: $*" >&2; exit 1; }

deb=$(ls "$dist"/enroot-cri_*_amd64.deb)
rpm=$(ls "$dist"/enroot-cri-*.x86_64.rpm)
echo "== lintian $deb"
lintian --fail-on error,warning --tag-display-limit 0 "$deb" 2>&1 | grep -v 'root privileges' || true
lintian --fail-on error,warning "$deb" >/dev/null 2>&1 || fail "lintian reports errors or warnings"

echo "== rpm -qpi / -qpl $rpm"
rpm -qpi "$rpm" | grep -E '^(Name|Version|Release|Architecture|License|Summary)'
files=$(rpm -qpl "$rpm")
for f in /usr/bin/enroot-cri /usr/bin/enroot-cri-nvml /usr/lib/systemd/system/enroot-cri.service \
  /usr/lib/tmpfiles.d/enroot-cri.conf /etc/enroot-cri/config.toml /usr/share/enroot-cri/runtimeclass.yaml \
  /usr/share/enroot-cri/kubelet-config.yaml /usr/share/enroot-cri/10-enroot-cri.conflist \
  /usr/share/enroot-cri/slurm-prolog.sh /usr/share/enroot-cri/slurm-epilog.sh /usr/libexec/enroot-cri/pyxis-importer /usr/libexec/enroot-cri/enroot-cri-shim /usr/share/man/man8/enroot-cri.8.gz; do
  grep -qx "$f" <<<"$files" || fail "the RPM lacks $f"
done
[ "$(rpm -qp --configfiles "$rpm")" = /etc/enroot-cri/config.toml ] || fail "config.toml is not the RPM's config file"
rpm -qp --requires "$rpm" | grep -qx squashfs-tools || fail "the RPM does not require squashfs-tools"
rpm -qp --scripts "$rpm" | grep -q 'systemctl enable enroot-cri.service' || fail "the RPM does not enable the service"
echo "rpm: $(wc -l <<<"$files") files, config /etc/enroot-cri/config.toml, requires squashfs-tools"

echo "== a Debian chroot (debootstrap from the apt mirror)"
cache=_output/packages
mkdir -p "$cache"
root=$(mktemp -d /tmp/enroot-cri-chroot.XXXXXX)
cleanup() {
  for m in proc; do umount "$root/$m" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -s "$cache/bookworm.tar" ]; then
  debootstrap --variant=minbase --include=systemd,squashfs-tools --make-tarball="$cache/bookworm.tar.tmp" \
    bookworm "$root/tarball" "$mirror" > "$cache/debootstrap.log" 2>&1 || { tail "$cache/debootstrap.log"; fail "debootstrap"; }
  mv "$cache/bookworm.tar.tmp" "$cache/bookworm.tar"
fi
debootstrap --variant=minbase --include=systemd,squashfs-tools --unpack-tarball="$(realpath "$cache/bookworm.tar")" \
  bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 || { tail "$cache/debootstrap.log"; fail "debootstrap"; }
mount -t proc proc "$root/proc"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

cp "$deb" "$root/tmp/pkg.deb"
echo "== dpkg -i"
in_root dpkg -i /tmp/pkg.deb
in_root enroot-cri version
in_root enroot-cri config | in_root sh -c 'cat > /tmp/config.toml'
in_root cmp /tmp/config.toml /etc/enroot-cri/config.toml || fail "the packaged config.toml is not enroot-cri config's output"
echo "== systemd-analyze verify"
# --man=no: minbase has no man-db; the man page itself is checked below.
in_root systemd-analyze verify --man=no /lib/systemd/system/enroot-cri.service
[ -L "$root/etc/systemd/system/multi-user.target.wants/enroot-cri.service" ] || fail "the service is not enabled"
echo "enabled: $(readlink "$root/etc/systemd/system/multi-user.target.wants/enroot-cri.service")"
in_root man -w enroot-cri >/dev/null 2>&1 || [ -f "$root/usr/share/man/man8/enroot-cri.8.gz" ] || fail "no man page"

echo "== upgrade keeps a changed configuration and the state"
echo '# changed by the operator' >> "$root/etc/enroot-cri/config.toml"
mkdir -p "$root/var/lib/enroot-cri/images" && echo keep > "$root/var/lib/enroot-cri/images/marker"
version=$(dpkg-deb -f "$deb" Version)
$GO run ./packaging/mkpkg -formats deb -version "${version}.1" -out "$root/tmp/next" >/dev/null
in_root sh -c 'dpkg -i --force-confold /tmp/next/*.deb' >/dev/null
in_root dpkg-query -W -f='${Version}\n' enroot-cri
grep -q 'changed by the operator' "$root/etc/enroot-cri/config.toml" || fail "the upgrade replaced config.toml"
[ -f "$root/var/lib/enroot-cri/images/marker" ] || fail "the upgrade removed /var/lib/enroot-cri"
echo "== removal keeps the state"
in_root dpkg -r enroot-cri >/dev/null
[ ! -e "$root/usr/bin/enroot-cri" ] || fail "dpkg -r left the binary"
[ -f "$root/var/lib/enroot-cri/images/marker" ] || fail "removal deleted /var/lib/enroot-cri"
in_root dpkg -P enroot-cri >/dev/null
[ -f "$root/var/lib/enroot-cri/images/marker" ] || fail "purge deleted /var/lib/enroot-cri"
echo "PASS: packages"
