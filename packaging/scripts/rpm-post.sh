#!/bin/sh
# Enabled, not started. $1 is 1 on install, 2 on upgrade.
if [ -x /usr/bin/systemd-tmpfiles ]; then
	systemd-tmpfiles --create enroot-cri.conf >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" = "1" ]; then
	systemctl enable enroot-cri.service >/dev/null 2>&1 || :
fi
