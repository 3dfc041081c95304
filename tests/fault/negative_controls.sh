#!/usr/bin/env bash
# Negative controls: a server that deliberately breaks a guarantee must be
# caught by the checker. A checker that cannot fail proves nothing.
source "$(dirname "$0")/lib.sh"
start_services

log "ack_before_commit: acked messages that were rolled back must count as lost"
IM_FAULTS="ack_before_commit:0.2" start_server a
FAULT_DURATION=3 run_load "$(server_endpoints a)"
wait_load || true
[ "$(field check.lost)" -gt 0 ] || fail "the checker did not notice acked-then-lost messages"
log "PASS caught: lost $(field check.lost)"
kill -9 "${server_pid[a]}"; unset 'server_pid[a]'

log "skip_idempotency with resends: duplicates must be counted"
IM_FAULTS="skip_idempotency" start_server b
FAULT_DURATION=3 run_load "$(server_endpoints b)" --resend-fraction 0.2
wait_load || true
[ "$(field check.duplicated)" -gt 0 ] || fail "the checker did not notice duplicates"
log "PASS caught: duplicated $(field check.duplicated)"
