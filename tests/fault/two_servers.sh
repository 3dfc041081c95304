#!/usr/bin/env bash
# Two im-server processes on one PostgreSQL and one Redis, senders and readers
# spread over both (commits for one inbox interleave across processes), and one
# of them paused (SIGSTOP) past every timeout, then resumed (a zombie writer).
# Server b writes with two writer lanes (--pg-writers 2), so the lanes are under
# the same load and faults.
source "$(dirname "$0")/lib.sh"
start_services
start_server a
start_server b --pg-writers 2
run_load "$(server_endpoints a b)"
sleep "$(( FAULT_DURATION / 4 ))"
log "SIGSTOP server b for 7 s (past idle_in_transaction_session_timeout)"
kill -STOP "${server_pid[b]}"; sleep 7; kill -CONT "${server_pid[b]}"
log "server b resumed"
wait_load
expect_clean "two servers, one paused past every timeout"
