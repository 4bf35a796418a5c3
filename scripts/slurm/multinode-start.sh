#!/usr/bin/env bash
# Start a Slurm cluster of several hosts on this one machine, for eocube's multi-node tests.
#
# Layout (each "host" is a network namespace with its own hostname, UTS namespace):
#   login  10.77.0.1   slurmctld; where eocube's driver, client and Dask scheduler run
#   cn1    10.77.0.11  slurmd -N cn1, its own spool, pid and log files
#   cn2    10.77.0.12  slurmd -N cn2 ...                  (EOCUBE_SLURM_MULTI_NODES compute hosts, default 2)
#   login also has an outward interface (ext0, 10.77.1.1, its default route) the compute hosts
#   cannot reach, like a real login node's public side.
# The hosts are linked by veth pairs to a bridge that lives in a namespace of its own
# (<prefix>-switch): nothing is added to this machine's own network namespace, and the
# 10.77.0.0/24 addresses (EOCUBE_SLURM_MULTI_NET, the first three octets) exist only inside
# the namespaces made here. Each namespace gets an /etc/hosts (from /etc/netns/<ns>/hosts,
# which "ip netns exec" mounts over /etc/hosts) naming every host, and an interface eth0.
# One munged of our own (its socket in our folder, seen by all namespaces: they share the file
# system) serves the whole cluster; the working tree and /tmp are seen by all hosts, as a
# shared file system would be.
#
# Files: $EOCUBE_SLURM_MULTI_DIR (default /tmp/eocube-slurm-multi): slurm.conf, cgroup.conf,
# state, spool/<node>, logs, pid files, the munge key and socket. Namespaces are named
# $EOCUBE_SLURM_MULTI_PREFIX-<host> (default prefix "eocube-mn"). Independent of the single-node
# Slurm of start.sh (other folder, other munged, other network namespaces): both can run at once.
#
# Run a command on a host with scripts/slurm/multinode-exec.sh <host> <command...>
# (e.g. "multinode-exec.sh login sinfo"). Slurm's commands reach slurmctld only from inside
# the namespaces. Prints "export SLURM_CONF=<folder>/slurm.conf".
# Idempotent: what already runs is kept; a compute host whose slurmd was stopped is started
# again and put back in service. If the start fails, everything it made is removed
# (multinode-stop.sh), and that script also tears the whole layout down after use.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${EOCUBE_SLURM_MULTI_DIR:-/tmp/eocube-slurm-multi}"
PREFIX="${EOCUBE_SLURM_MULTI_PREFIX:-eocube-mn}"
NODES="${EOCUBE_SLURM_MULTI_NODES:-2}"
NET="${EOCUBE_SLURM_MULTI_NET:-10.77.0}"
PARTITION="${EOCUBE_SLURM_MULTI_PARTITION:-eocube}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

die() { echo "slurm multinode start: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
ns() { echo "$PREFIX-$1"; }
on() { local host="$1"; shift; "$HERE/multinode-exec.sh" "$host" "$@"; }

for cmd in ip unshare hostname slurmctld slurmd munged munge unmunge sinfo scontrol; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found: run scripts/slurm/install.sh first (as root)"
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, and SlurmUser=root in the test configuration)"
[[ "$NODES" =~ ^[1-9][0-9]?$ ]] && [ "$NODES" -le 50 ] \
    || die "EOCUBE_SLURM_MULTI_NODES=$NODES: give 1 to 50 compute hosts"
[[ "$NET" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "EOCUBE_SLURM_MULTI_NET=$NET: give the first three octets of a 10.x.y.0/24 network"

EXT="${NET%.*}.$(( ${NET##*.} + 1 ))"     # the login host's outward network: 10.77.1.0/24
[ "${NET##*.}" -lt 255 ] || die "EOCUBE_SLURM_MULTI_NET=$NET: its last octet must be below 255 (the next /24 is the outward one)"
HOSTS=(login)
ADDRS=("$NET.1")
for i in $(seq 1 "$NODES"); do HOSTS+=("cn$i"); ADDRS+=("$NET.$((10 + i))"); done
COMPUTE="cn[1-$NODES]"
[ "$NODES" = 1 ] && COMPUTE="cn1"

started_here=0
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ] && [ "$started_here" = 1 ]; then
        echo "slurm multinode start: failed; removing what was made (logs kept in $DIR/log)" >&2
        "$HERE/multinode-stop.sh" >&2 || true
    fi
}
trap cleanup EXIT
alive "$DIR/slurmctld.pid" || started_here=1

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
chmod 0755 "$DIR" "$DIR/munge"

# --- munge: our own daemon, our own key and socket ---------------------------------------------
SOCKET="$DIR/munge/munge.socket"
if ! alive "$DIR/munged.pid"; then
    rm -f "$SOCKET" "$SOCKET.lock"
    if [ ! -s "$DIR/munge/munge.key" ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$DIR/munge/munge.key" --force
        else
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        fi
        chmod 0400 "$DIR/munge/munge.key"
    fi
    munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 50); do
        (munge -S "$SOCKET" -n | unmunge -S "$SOCKET" >/dev/null 2>&1) && break
        sleep 0.1
    done
fi
(munge -S "$SOCKET" -n | unmunge -S "$SOCKET" >/dev/null 2>&1) || die "munged did not start: see $DIR/log/munged.log"

# --- network: a bridge in its own namespace, one namespace per host -----------------------------
SWITCH="$(ns switch)"
ip netns list | grep -qw "^$SWITCH" || ip netns add "$SWITCH"
ip -n "$SWITCH" link show br0 >/dev/null 2>&1 || ip -n "$SWITCH" link add br0 type bridge
ip -n "$SWITCH" link set br0 up
hosts_file="127.0.0.1 localhost"$'\n'"$EXT.1 login-ext"$'\n'
for i in "${!HOSTS[@]}"; do hosts_file+="${ADDRS[$i]} ${HOSTS[$i]}"$'\n'; done
for i in "${!HOSTS[@]}"; do
    host="${HOSTS[$i]}"; name="$(ns "$host")"
    ip netns list | grep -qw "^$name" || ip netns add "$name"
    mkdir -p "/etc/netns/$name"
    printf '%s' "$hosts_file" > "/etc/netns/$name/hosts"
    ip -n "$name" link set lo up
    if ! ip -n "$name" link show eth0 >/dev/null 2>&1; then
        # both ends are made directly inside the namespaces: this machine's own namespace is untouched
        ip link add eth0 netns "$name" type veth peer name "$host" netns "$SWITCH"
        ip -n "$SWITCH" link set "$host" master br0
        ip -n "$name" addr add "${ADDRS[$i]}/24" dev eth0
    fi
    ip -n "$SWITCH" link set "$host" up
    ip -n "$name" link set eth0 up
done
# The login host also has an outward interface, as real login nodes do: ext0 on a second bridge
# with no other host, and its default route through it (to a gateway that does not exist: packets
# sent that way die on that bridge). Compute hosts cannot reach that address; dask's guess of this
# host's address (the route to the Internet) picks it, which is what eocube must not use.
LOGIN="$(ns login)"
ip -n "$SWITCH" link show br-ext >/dev/null 2>&1 || ip -n "$SWITCH" link add br-ext type bridge
ip -n "$SWITCH" link set br-ext up
if ! ip -n "$LOGIN" link show ext0 >/dev/null 2>&1; then
    ip link add ext0 netns "$LOGIN" type veth peer name login-ext netns "$SWITCH"
    ip -n "$SWITCH" link set login-ext master br-ext
    ip -n "$LOGIN" addr add "$EXT.1/24" dev ext0
fi
ip -n "$SWITCH" link set login-ext up
ip -n "$LOGIN" link set ext0 up
ip -n "$LOGIN" route replace default via "$EXT.254" dev ext0

# --- configuration --------------------------------------------------------------------------------
TOTAL_MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$(slurmd -C | head -1)")"
MEM=$(( TOTAL_MEM * 9 / 10 / NODES ))        # the machine's memory shared out among the hosts
[ "$MEM" -ge 2048 ] || MEM=2048
{
    echo "# Written by eocube scripts/slurm/multinode-start.sh: a Slurm of $NODES compute hosts for tests."
    echo "ClusterName=eocube-multinode"
    echo "SlurmctldHost=login(${ADDRS[0]})"
    cat <<CONF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory,CR_LLN
SchedulerType=sched/backfill
ReturnToService=1
SlurmdTimeout=60
MpiDefault=none
KillWait=5
MinJobAge=30
InactiveLimit=0
CONF
    for i in $(seq 1 "$NODES"); do
        echo "NodeName=${HOSTS[$i]} NodeAddr=${ADDRS[$i]} NodeHostname=${HOSTS[$i]} CPUs=2 RealMemory=$MEM State=UNKNOWN"
    done
    echo "PartitionName=$PARTITION Nodes=$COMPUTE Default=YES MaxTime=INFINITE State=UP"
} > "$CONF.new"
mv "$CONF.new" "$CONF"
cat > "$DIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
IgnoreSystemd=yes
CONF

# --- daemons: slurmctld on login, one slurmd per compute host (each in its namespace) ------------
# a new slurmctld starts with a clean state (-c): no jobs or node states of an earlier cluster
alive "$DIR/slurmctld.pid" || on login slurmctld -c -f "$CONF"
for _ in $(seq 100); do on login scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
for i in $(seq 1 "$NODES"); do
    host="${HOSTS[$i]}"
    mkdir -p "$DIR/spool/$host"
    if ! alive "$DIR/slurmd-$host.pid"; then
        on "$host" slurmd -f "$CONF" -N "$host"
    fi
done

want="$NODES"
state=""
for _ in $(seq 120); do
    state="$(on login sinfo -h -N -p "$PARTITION" -o "%N %T" 2>/dev/null || true)"
    ready="$(grep -cE " (idle|mixed|allocated)" <<<"$state" || true)"
    [ "$ready" = "$want" ] && break
    while read -r node st; do
        case "$st" in
            drain*|down*) on login scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
    done <<<"$state"
    sleep 0.5
done
[ "${ready:-0}" = "$want" ] || die "compute hosts not ready after 60 s (sinfo: $(tr '\n' ';' <<<"$state")): see $DIR/log/"
trap - EXIT
echo "export SLURM_CONF=$CONF"
