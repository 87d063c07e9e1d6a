#!/bin/sh
# pyxis importer (plugstack.conf: required spank_pyxis.so importer=/usr/libexec/enroot-cri/pyxis-importer):
# Slurm jobs run the images of enroot-cri's store, pulled once for the node's pods and
# jobs. Needs share_with_jobs = true in [images] for jobs of users other than root.
exec /usr/bin/enroot-cri pyxis-importer --config /etc/enroot-cri/config.toml "$@"
