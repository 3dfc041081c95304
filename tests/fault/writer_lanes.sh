#!/usr/bin/env bash
# A server with two writer lanes (--pg-writers 2) through the faults each lane
# must answer on its own: kill -9 with both lanes' batches in flight (their
# seqs become gaps that readers fill), PostgreSQL restarted (every lane
# reconnects), and Redis restarted empty and FLUSHALL (every lane finds and
# raises its own inboxes' counters). Nothing acked is lost, nothing is stored
# twice, readers never skip. The kill comes first so that the server that
# lives through the Redis losses is the one stopped cleanly at the end, whose
# writer stats show the counters raised (counter_raises > 0).
source "$(dirname "$0")/lib.sh"
start_services
start_server a --pg-writers 2
grep -q "pg_writers=2" "$work/server-a.log" || fail "server a did not start with two writer lanes"
run_load "$(server_endpoints a)"
# Four faults and their recoveries (the restarts take about a second each) must
# all fall inside the load, so a sixth of it apart.
step=$(( FAULT_DURATION / 6 > 0 ? FAULT_DURATION / 6 : 1 ))
sleep "$step"; log "kill -9 im-server, restart"
kill -9 "${server_pid[a]}"
sleep 1
start_server a --pg-writers 2
sleep "$step"; log "pg_ctl restart -m immediate"
bash "$services" pg-restart "$work/svc" immediate
sleep "$step"; log "Redis restarted empty"
bash "$services" redis-restart "$work/svc"
sleep "$step"; log "FLUSHALL"
redis-cli -p "$IM_TEST_REDIS_PORT" FLUSHALL >/dev/null
wait_load
expect_clean "two writer lanes through kill -9, a PostgreSQL restart and Redis loss"
expect_raises a "two writer lanes through Redis loss"
