#!/usr/bin/env bash
# Install a single-node Slurm for eocube's Slurm tests: Debian's slurm-wlm and munge.
# Idempotent: does nothing when the daemons and client commands are already there.
# Needs root (CI and the project's machines are root). Debian 12 ships Slurm 22.05.
set -euo pipefail

need=()
for cmd in slurmctld slurmd sbatch squeue scancel sinfo scontrol; do
    command -v "$cmd" >/dev/null 2>&1 || need=(slurm-wlm)
done
for cmd in munged munge unmunge; do
    command -v "$cmd" >/dev/null 2>&1 || need+=(munge)
done
if [ ${#need[@]} -eq 0 ]; then
    echo "slurm install: slurm-wlm and munge already installed ($(slurmctld -V))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "slurm install: need root to apt-get install ${need[*]} (run: sudo $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "slurm install: installed $(slurmctld -V) and $(munged -V 2>&1 | head -1)"
