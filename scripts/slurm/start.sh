#!/usr/bin/env bash
# Start a single-node Slurm on this machine for eocube's tests (after install.sh).
#
# Everything lives in one folder of ours, $EOCUBE_SLURM_DIR (default /tmp/eocube-slurm):
# slurm.conf, cgroup.conf, gres.conf (two fake GPUs, so --gres=gpu:N schedules without a GPU),
# state, spool, logs and pid files. Nothing under /etc is changed.
# Prints "export SLURM_CONF=<folder>/slurm.conf"; the Slurm commands need that variable.
# Idempotent: daemons of ours that already run are kept. Stop them with stop.sh.
# Partition: $EOCUBE_SLURM_PARTITION (default "eocube"), the default partition.
set -euo pipefail

DIR="${EOCUBE_SLURM_DIR:-/tmp/eocube-slurm}"
PARTITION="${EOCUBE_SLURM_PARTITION:-eocube}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

die() { echo "slurm start: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

for cmd in slurmctld slurmd munged sinfo scontrol; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found: run scripts/slurm/install.sh first (apt-get install slurm-wlm munge, as root)"
done
[ "$(id -u)" = 0 ] || die "must run as root (SlurmUser=root in the test configuration)"

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/dev"

# --- munge: reuse a working one, else start ours -------------------------------------------
if ! (munge -n 2>/dev/null | unmunge >/dev/null 2>&1); then
    [ -s /etc/munge/munge.key ] || {
        command -v mungekey >/dev/null 2>&1 && mungekey --create --keyfile=/etc/munge/munge.key \
            || die "no /etc/munge/munge.key: reinstall munge (apt-get install --reinstall munge)"
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- munged
    else
        munged --force
    fi
    for _ in $(seq 50); do
        [ -s /run/munge/munged.pid ] && (munge -n | unmunge >/dev/null 2>&1) && break
        sleep 0.1
    done
    (munge -n | unmunge >/dev/null 2>&1) || die "munged did not start: see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$DIR/munged.pid"   # ours: stop.sh stops it
fi

# --- configuration ------------------------------------------------------------------------
HOST="$(hostname -s)"
NODE_LINE="$(slurmd -C | head -1)"                      # NodeName=... CPUs=... RealMemory=...
MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
MEM=$(( MEM * 9 / 10 ))                                 # a little under the machine's
NODE_LINE="$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$NODE_LINE")"
touch "$DIR/dev/gpu0" "$DIR/dev/gpu1"

cat > "$CONF" <<CONF
# Written by eocube scripts/slurm/start.sh: a single-node Slurm for tests.
ClusterName=eocube
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=30
InactiveLimit=0
GresTypes=gpu
$NODE_LINE Gres=gpu:fake:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

cat > "$DIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
IgnoreSystemd=yes
CONF

cat > "$DIR/gres.conf" <<CONF
NodeName=$HOST Name=gpu Type=fake File=$DIR/dev/gpu[0-1]
CONF

# --- daemons -------------------------------------------------------------------------------
alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
alive "$DIR/slurmd.pid" || slurmd -f "$CONF"

state=""
for i in $(seq 60); do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)"
    case "$state" in
        idle*|mixed*|allocated*) break ;;
        drain*|down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle*|mixed*|allocated*) ;;
    *) die "node $HOST is '${state:-unknown}' after 30 s: see $DIR/log/slurmctld.log and $DIR/log/slurmd.log" ;;
esac
echo "export SLURM_CONF=$CONF"
