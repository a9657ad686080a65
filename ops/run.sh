#!/usr/bin/env bash
# `make run`: the edge in the foreground; the outbox relay and both workers beside it.
# `sentinel serve` runs SENTINEL_PROCESSES edge processes on the port (one per core by default)
# under its supervisor; SIGHUP to it replaces them one at a time. The relay stays one process
# here: however many edges and relays run, one relay leads (PostgreSQL advisory lock) and edges
# never publish. Ctrl-C (or SIGTERM to this script) stops all of them gracefully.
set -uo pipefail
BIN=${BIN:-.venv/bin}
pids=()
stop_all() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM
"$BIN/sentinel" relay & pids+=($!)
"$BIN/sentinel" worker webhooks & pids+=($!)
"$BIN/sentinel" worker alerts & pids+=($!)
"$BIN/sentinel" serve & pids+=($!)
wait -n "${pids[@]}"
status=$?
# Ctrl-C reaches every process of the group: they all exit 0 and nothing needs saying.
[ "$status" -ne 0 ] && echo "ops/run.sh: a process exited with status $status; stopping the others" >&2
exit "$status"
