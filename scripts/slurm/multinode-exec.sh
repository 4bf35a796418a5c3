#!/usr/bin/env bash
# Run a command on one host of the multi-node test Slurm (multinode-start.sh): inside that host's
# network namespace, with its hostname (a UTS namespace of its own) and SLURM_CONF set.
#   scripts/slurm/multinode-exec.sh login sinfo
#   scripts/slurm/multinode-exec.sh cn1 hostname        # prints cn1
# The command replaces this script (exec): its exit status and signals are the command's own.
set -euo pipefail

DIR="${EOCUBE_SLURM_MULTI_DIR:-/tmp/eocube-slurm-multi}"
PREFIX="${EOCUBE_SLURM_MULTI_PREFIX:-eocube-mn}"
[ $# -ge 2 ] || { echo "usage: $0 <host: login, cn1, cn2...> <command> [args...]" >&2; exit 2; }
host="$1"; shift
[[ "$host" =~ ^(login|cn[0-9]+)$ ]] || { echo "multinode exec: unknown host '$host' (login, cn1, cn2...)" >&2; exit 2; }
ip netns list 2>/dev/null | grep -qw "^$PREFIX-$host" \
    || { echo "multinode exec: no host '$host' (namespace $PREFIX-$host): run scripts/slurm/multinode-start.sh" >&2; exit 2; }
export SLURM_CONF="$DIR/slurm.conf"
exec ip netns exec "$PREFIX-$host" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$host" "$@"
