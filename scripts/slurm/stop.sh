#!/usr/bin/env bash
# Stop the daemons that start.sh started (by the pids in their pid files), cancelling jobs first.
set -uo pipefail

DIR="${EOCUBE_SLURM_DIR:-/tmp/eocube-slurm}"
export SLURM_CONF="$DIR/slurm.conf"

if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
for name in slurmd slurmctld munged; do
    pidfile="$DIR/$name.pid"
    [ -s "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
done
echo "slurm stop: daemons in $DIR stopped"
