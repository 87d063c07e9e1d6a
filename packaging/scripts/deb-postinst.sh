#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
	if command -v systemd-tmpfiles >/dev/null; then
		systemd-tmpfiles --create enroot-cri.conf >/dev/null || true
	fi
	# Enabled, not started: the operator starts it once the configuration is right.
	if command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper unmask enroot-cri.service >/dev/null || true
		deb-systemd-helper enable enroot-cri.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
