#!/usr/bin/env bash
# Stop the cluster started by start_local_cluster.sh:
#   1. cancel every job of this (private) cluster and wait for them to end
#      (slurmd's job steps are its children, not ours);
#   2. kill the daemons BY the PIDs recorded in STATE_DIR (TERM, then KILL
#      after 10 s);
#   3. remove STATE_DIR unless KEEP_SLURM_STATE=1.
#
#   tests/slurm/stop_local_cluster.sh STATE_DIR
set -uo pipefail

DIR=${1:?usage: stop_local_cluster.sh STATE_DIR}
[ -d "$DIR" ] || { echo "stop_local_cluster: no such dir $DIR" >&2; exit 0; }
export SLURM_CONF="$DIR/slurm.conf"

alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

if alive slurmctld && [ -f "$SLURM_CONF" ]; then
    jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        echo "stop_local_cluster: cancelling jobs $jobs" >&2
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 60); do
            [ -z "$(timeout 10 squeue -h -o '%i' 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

pids=""
for name in slurmd slurmctld munged; do
    if alive "$name"; then
        pid=$(cat "$DIR/$name.pid")
        kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
    fi
done
alive_pids=""
for _ in $(seq 100); do
    alive_pids=""
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null && alive_pids="$alive_pids $pid"
    done
    [ -z "$alive_pids" ] && break
    sleep 0.1
done
for pid in $alive_pids; do kill -KILL "$pid" 2>/dev/null || true; done
[ "${KEEP_SLURM_STATE:-0}" = 1 ] || rm -rf "$DIR"
echo "stop_local_cluster: stopped daemons${pids:- (none running)}" >&2
