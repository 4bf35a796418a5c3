#!/usr/bin/env bash
# Install what eocube's Slurm tests need: Debian's slurm-wlm and munge (single-node Slurm, start.sh),
# and iproute2, util-linux, hostname (the multi-node layout of namespaces, multinode-start.sh).
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
# the multi-node layout (multinode-start.sh): network namespaces, veth pairs and bridges, UTS namespaces
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v hostname >/dev/null 2>&1 || need+=(hostname)
if [ ${#need[@]} -eq 0 ]; then
    echo "slurm install: slurm-wlm, munge and iproute2 already installed ($(slurmctld -V))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "slurm install: need root to apt-get install ${need[*]} (run: sudo $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "slurm install: installed ${need[*]} ($(slurmctld -V), $(munged -V 2>&1 | head -1))"
