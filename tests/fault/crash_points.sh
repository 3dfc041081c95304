#!/usr/bin/env bash
# The server SIGKILLs itself inside the send path (after seq allocation, after
# the insert, after COMMIT before the acks) and is restarted each time.
source "$(dirname "$0")/lib.sh"
start_services
start_server a  # picks the port and migrates the schema
kill -9 "${server_pid[a]}"; unset 'server_pid[a]'
: >"$work/pid-a"  # no pid yet: the supervisor starts it
IM_FAULTS="crash_after_seq_alloc:0.01,crash_after_insert:0.01,crash_after_commit:0.01" supervise_server a
run_load "$(server_endpoints a)"
wait_load
touch "$work/stop-supervisor"; wait "$supervisor_pid" || true
restarts=$(wc -l <"$work/restarts-a")
log "server restarts: $restarts"
[ "$restarts" -ge 2 ] || fail "no crash point fired"
expect_clean "crash points in the send path"
