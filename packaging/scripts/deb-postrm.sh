#!/bin/sh
set -e
# /var/lib/enroot-cri (images, records) is never deleted here, not even on purge.
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ] && command -v deb-systemd-helper >/dev/null; then
	deb-systemd-helper mask enroot-cri.service >/dev/null || true
fi
if [ "$1" = "purge" ] && command -v deb-systemd-helper >/dev/null; then
	deb-systemd-helper purge enroot-cri.service >/dev/null || true
	deb-systemd-helper unmask enroot-cri.service >/dev/null || true
fi
