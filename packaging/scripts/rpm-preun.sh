#!/bin/sh
# $1 is 0 on removal, 1 on upgrade: stop and disable on removal only.
if [ "$1" = "0" ]; then
	systemctl --no-reload disable --now enroot-cri.service >/dev/null 2>&1 || :
fi
