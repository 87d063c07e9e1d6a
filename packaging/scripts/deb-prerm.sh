#!/bin/sh
set -e
# Stopped on removal only; an upgrade restarts it in postinst's daemon-reload cycle.
if [ "$1" = "remove" ] && [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null; then
	deb-systemd-invoke stop enroot-cri.service >/dev/null || true
fi
