#!/usr/bin/env bash
# A server with two writer lanes (--pg-writers 2) through the faults each lane
# must answer on its own: Redis restarted empty and FLUSHALL (every lane finds
# and raises its own inboxes' counters), PostgreSQL restarted (every lane
# reconnects), and kill -9 with both lanes' batches in flight (their seqs become
# gaps that readers fill). Nothing acked is lost, nothing is stored twice,
# readers never skip.
source "$(dirname "$0")/lib.sh"
start_services
start_server a --pg-writers 2
grep -q "pg_writers=2" "$work/server-a.log" || fail "server a did not start with two writer lanes"
run_load "$(server_endpoints a)"
step=$(( FAULT_DURATION / 5 ))
sleep "$step"; log "Redis restarted empty"
bash "$services" redis-restart "$work/svc"
sleep "$step"; log "FLUSHALL"
redis-cli -p "$IM_TEST_REDIS_PORT" FLUSHALL >/dev/null
sleep "$step"; log "pg_ctl restart -m immediate"
bash "$services" pg-restart "$work/svc" immediate
sleep "$step"; log "kill -9 im-server, restart"
kill -9 "${server_pid[a]}"
sleep 1
start_server a --pg-writers 2
wait_load
expect_clean "two writer lanes through Redis loss, a PostgreSQL restart and kill -9"
