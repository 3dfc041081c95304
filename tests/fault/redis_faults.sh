#!/usr/bin/env bash
# Redis restarted empty, FLUSHALL mid-load, and Redis paused (SIGSTOP) for 2 s:
# counters restart below what PostgreSQL holds; no seq repeats, nothing is lost,
# and the writer raised the lost counters itself (counter_raises > 0) rather
# than only through unique-violation retries.
source "$(dirname "$0")/lib.sh"
start_services
start_server a
run_load "$(server_endpoints a)"
step=$(( FAULT_DURATION / 4 ))
sleep "$step"; log "Redis restarted empty"
bash "$services" redis-restart "$work/svc"
sleep "$step"; log "FLUSHALL"
redis-cli -p "$IM_TEST_REDIS_PORT" FLUSHALL >/dev/null
sleep "$step"; log "SIGSTOP Redis for 2 s"
kill -STOP "$(cat "$IM_TEST_REDIS_PIDFILE")"; sleep 2; kill -CONT "$(cat "$IM_TEST_REDIS_PIDFILE")"
wait_load
expect_clean "Redis restart, flush and pause"
expect_raises a "Redis restart and flush"
# The commit bus says what happened to its subscription: the restart broke it,
# and it subscribed again (its long polls told to query once).
grep -q "commit bus: subscription to im:commits lost" "$work/server-a.log" \
  || fail "the commit bus did not log the subscription it lost when Redis restarted"
grep -q "commit bus: subscribed to im:commits again" "$work/server-a.log" \
  || fail "the commit bus did not log subscribing again after Redis restarted"
log "PASS Redis restart: the commit bus logged the lost subscription and the resubscription"
