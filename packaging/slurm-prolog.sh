#!/bin/sh
# Slurm Prolog (slurm.conf: Prolog=/usr/share/enroot-cri/slurm-prolog.sh): records the
# job's GPUs, MIG slices and CPUs in enroot-cri's node ledger, so pods are refused them.
exec /usr/bin/enroot-cri slurm prolog --config /etc/enroot-cri/config.toml
