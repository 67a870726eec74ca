#!/usr/bin/env bash
# Stop the cluster started by start_local_cluster.sh: kill its daemons BY
# the PIDs recorded in STATE_DIR (TERM, then KILL after 10 s), then remove
# STATE_DIR unless KEEP_SLURM_STATE=1.
#
#   tests/slurm/stop_local_cluster.sh STATE_DIR
set -uo pipefail

DIR=${1:?usage: stop_local_cluster.sh STATE_DIR}
[ -d "$DIR" ] || { echo "stop_local_cluster: no such dir $DIR" >&2; exit 0; }

pids=""
for name in slurmd slurmctld munged; do
    f="$DIR/$name.pid"
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
    fi
done
for _ in $(seq 100); do
    alive=""
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -z "$alive" ] && break
    sleep 0.1
done
for pid in $alive; do kill -KILL "$pid" 2>/dev/null || true; done
# slurmstepd processes of a job still running belong to that job's session;
# they were recorded by the tests (job ids), not here — slurmd's TERM makes
# them exit when they lose their daemon.
[ "${KEEP_SLURM_STATE:-0}" = 1 ] || rm -rf "$DIR"
echo "stop_local_cluster: stopped${pids:- nothing}" >&2
