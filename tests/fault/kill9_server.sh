#!/usr/bin/env bash
# kill -9 of im-server mid-load, restarted on the same port: nothing acked is
# lost, retries (same client_msg_id) store nothing twice, readers never skip.
source "$(dirname "$0")/lib.sh"
start_services
start_server a
run_load "$(server_endpoints a)"
sleep "$(( FAULT_DURATION / 3 ))"
log "kill -9 im-server"
kill -9 "${server_pid[a]}"
sleep 1
start_server a
sleep "$(( FAULT_DURATION / 3 ))"
log "SIGTERM im-server (drain), restart"
kill -TERM "${server_pid[a]}"; wait "${server_pid[a]}" || true
start_server a
wait_load
expect_clean "kill -9 and SIGTERM of im-server"
