#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster (munged + slurmctld + slurmd)
# for segext's tests.  Needs root (slurmd launches tasks as the job's user).
#
#   tests/slurm/start_local_cluster.sh [STATE_DIR]
#
# - installs Debian's slurmctld slurmd slurm-client munge when missing
#   (apt-get update first; daemons are NOT started by the package scripts);
# - writes slurm.conf, a munge key, logs and pid files into STATE_DIR
#   (default: a new mktemp -d directory);
# - starts the three daemons in the foreground of their own sessions and
#   records their PIDs in STATE_DIR/*.pid;
# - waits until `sinfo` shows the node idle.
#
# On success it prints STATE_DIR on stdout (last line) and leaves
# STATE_DIR/env.sh, which exports SLURM_CONF for the client commands
# (srun, sbatch, sinfo, scontrol, scancel).  Stop everything with
#   tests/slurm/stop_local_cluster.sh STATE_DIR
# which kills the daemons by the recorded PIDs.
#
# Env knobs: SLURM_PARTITION (default: segext), SLURM_NODE_CPUS (default: 2),
# SLURM_START_TIMEOUT (seconds to wait for the node, default: 60),
# SLURM_APT_TIMEOUT (seconds for apt-get, default: 300).
set -euo pipefail

PARTITION=${SLURM_PARTITION:-segext}
NODE_CPUS=${SLURM_NODE_CPUS:-2}
START_TIMEOUT=${SLURM_START_TIMEOUT:-60}
APT_TIMEOUT=${SLURM_APT_TIMEOUT:-300}

die() { echo "start_local_cluster: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (found uid $(id -u)): slurmd runs job steps as their user and munged/slurmd need root-owned state"

# ---------------------------------------------------------------- install
missing=""
for bin in munged slurmctld slurmd srun sinfo; do
    command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
if [ -n "$missing" ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing$missing and no apt-get to install them"
    echo "start_local_cluster: installing slurm (missing:$missing)" >&2
    # Package scripts must not start system-wide daemons: policy-rc.d says no.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt_log=$(mktemp /tmp/segext-slurm-apt.XXXXXX.log)
    rc=0
    {
        timeout "$APT_TIMEOUT" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" \
            apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge
    } > "$apt_log" 2>&1 || rc=$?
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$rc" != 0 ]; then
        tail -n 30 "$apt_log" >&2
        die "apt-get failed (exit $rc; log: $apt_log)"
    fi
    rm -f "$apt_log"
    echo "start_local_cluster: installed slurmctld slurmd slurm-client munge" >&2
fi

# ---------------------------------------------------------------- config
DIR=${1:-$(mktemp -d /tmp/segext-slurm.XXXXXX)}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
chmod 700 "$DIR"
mkdir -p "$DIR/log" "$DIR/state" "$DIR/spool" "$DIR/munge"
chmod 700 "$DIR/munge"
NODE=$(hostname -s)

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(('', 0))
print(s.getsockname()[1])
s.close()
PY
}
CTLD_PORT=${SLURMCTLD_PORT:-$(free_port)}
SLURMD_PORT=${SLURMD_PORT:-$(free_port)}
[ "$CTLD_PORT" != "$SLURMD_PORT" ] || SLURMD_PORT=$((CTLD_PORT + 1))

MUNGE_SOCKET="$DIR/munge/munge.socket"
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"

cat > "$DIR/slurm.conf" <<CONF
# Written by tests/slurm/start_local_cluster.sh — single node, root-run.
ClusterName=segext
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.conf.pid
SlurmdPidFile=$DIR/slurmd.conf.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

cat > "$DIR/env.sh" <<ENV
export SLURM_CONF=$DIR/slurm.conf
export SEGEXT_SLURM_PARTITION=$PARTITION
ENV
export SLURM_CONF="$DIR/slurm.conf"

# ---------------------------------------------------------------- daemons
# Each daemon runs in the foreground of its own session (setsid), so it
# outlives the caller; its PID goes to DIR/<name>.pid for the stop script.
start() {  # name, command...
    local name=$1; shift
    setsid "$@" >"$DIR/log/$name.out" 2>&1 < /dev/null &
    echo $! > "$DIR/$name.pid"
}
cleanup_on_error() {
    echo "start_local_cluster: failed; logs in $DIR/log" >&2
    for f in "$DIR/log/"*; do echo "--- $f" >&2; tail -n 20 "$f" >&2 || true; done
    "$(dirname "$0")/stop_local_cluster.sh" "$DIR" >&2 || true
}
trap cleanup_on_error ERR

start munged munged --foreground --force \
    --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" \
    --log-file="$DIR/log/munged.log"
for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
[ -S "$MUNGE_SOCKET" ] || { cleanup_on_error; die "munged did not create $MUNGE_SOCKET"; }

start slurmctld slurmctld -D -i -f "$DIR/slurm.conf"
start slurmd slurmd -D -f "$DIR/slurm.conf"

deadline=$((SECONDS + START_TIMEOUT))
state=""
while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -n "$NODE" -p "$PARTITION" -o '%T' 2>/dev/null || true)
    case "$state" in idle*) break ;; esac
    sleep 0.5
done
case "$state" in
    idle*) ;;
    *) trap - ERR; cleanup_on_error
       die "node $NODE not idle after ${START_TIMEOUT}s (state: '${state:-no answer}')" ;;
esac
trap - ERR
echo "start_local_cluster: node $NODE idle in partition $PARTITION (ports $CTLD_PORT/$SLURMD_PORT)" >&2
echo "$DIR"
