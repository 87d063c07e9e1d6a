#!/bin/sh
# Slurm Epilog (slurm.conf: Epilog=/usr/share/enroot-cri/slurm-epilog.sh): releases what
# the job held in enroot-cri's node ledger.
exec /usr/bin/enroot-cri slurm epilog --config /etc/enroot-cri/config.toml
