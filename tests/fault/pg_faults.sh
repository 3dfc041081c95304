#!/usr/bin/env bash
# PostgreSQL restarted (immediate), its backends terminated, and paused
# (SIGSTOP) for 2 s: sends fail fast as unavailable, nothing acked is lost, and
# service resumes by itself.
source "$(dirname "$0")/lib.sh"
start_services
start_server a
run_load "$(server_endpoints a)"
step=$(( FAULT_DURATION / 4 ))
sleep "$step"; log "pg_ctl restart -m immediate"
bash "$services" pg-restart "$work/svc" immediate
sleep "$step"; log "terminate im-server backends"
psql -q "postgresql://postgres@127.0.0.1:$IM_TEST_PG_PORT/postgres" -c \
  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'im-server%'" >/dev/null
sleep "$step"; log "SIGSTOP PostgreSQL for 2 s"
postmaster=$(head -n 1 "$IM_TEST_PG_DATA/postmaster.pid")
pkill -STOP -P "$postmaster"; kill -STOP "$postmaster"; sleep 2
kill -CONT "$postmaster"; pkill -CONT -P "$postmaster"
wait_load
# Service resumed by itself after each fault: no stretch without acks outlasted
# the longest outage (2 s pause, restart) by more than the clients' backoff.
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 8 else 1)' "$(field max_ack_gap_s)" \
  || fail "service did not resume by itself: $(field max_ack_gap_s) s without an ack"
expect_clean "PostgreSQL restart, terminated backends and pause"
