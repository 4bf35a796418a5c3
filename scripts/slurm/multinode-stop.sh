#!/usr/bin/env bash
# Tear down the multi-node test Slurm of multinode-start.sh: cancel its jobs, stop its daemons
# (by the pids in their pid files), end every process left inside its network namespaces (job
# steps, Dask workers, drivers started there), then delete the namespaces (their veth pairs and
# the bridge go with them) and their /etc/netns/<ns> folders. Safe to run at any time, twice, or
# after a failed start; the folder $EOCUBE_SLURM_MULTI_DIR (logs) is kept.
set -uo pipefail

DIR="${EOCUBE_SLURM_MULTI_DIR:-/tmp/eocube-slurm-multi}"
PREFIX="${EOCUBE_SLURM_MULTI_PREFIX:-eocube-mn}"
export SLURM_CONF="$DIR/slurm.conf"

stop_pid() {  # TERM, up to 5 s, then KILL
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

namespaces=()
while read -r name _; do
    [[ "$name" == "$PREFIX-"* ]] && namespaces+=("$name")
done < <(ip netns list 2>/dev/null)

if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null \
        && ip netns list 2>/dev/null | grep -qw "^$PREFIX-login"; then
    timeout 20 ip netns exec "$PREFIX-login" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    [ -s "$pidfile" ] || continue
    stop_pid "$(cat "$pidfile")"
    rm -f "$pidfile"
done
for name in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$name" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
done
for name in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$name" 2>/dev/null); do stop_pid "$pid"; done
    ip netns del "$name" 2>/dev/null || echo "slurm multinode stop: could not delete namespace $name" >&2
    rm -rf "/etc/netns/$name"
done
rmdir /etc/netns 2>/dev/null || true
rm -f "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
echo "slurm multinode stop: daemons, processes and namespaces of $PREFIX stopped and removed (logs in $DIR/log)"
