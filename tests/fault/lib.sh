#!/usr/bin/env bash
# Shared by the fault scenarios (tests/fault/*.sh). Each scenario gets its own
# throwaway PostgreSQL and Redis (faults restart and pause them, so they are
# never shared with other tests), runs im-server processes on fixed loopback
# ports, drives im-loadgen --verify through a fault, and requires every failing
# count of the checker to be 0. Everything is bounded in time and cleaned up.
#
# Environment: IM_BUILD_DIR, IM_SOURCE_DIR; IM_FAULT_DURATION (seconds of load,
# default 10) scales a scenario for the long form.
set -euo pipefail

: "${IM_BUILD_DIR:?}" "${IM_SOURCE_DIR:?}"
FAULT_DURATION=${IM_FAULT_DURATION:-10}
work=$(mktemp -d /tmp/im-fault.XXXXXX)
services="$IM_SOURCE_DIR/scripts/lib/services.sh"
server_bin="$IM_BUILD_DIR/server/im-server"
loadgen_bin="$IM_BUILD_DIR/tools/im-loadgen/im-loadgen"
declare -A server_pid=() server_port=()

log() { echo "[$(date +%T)] $*"; }
fail() { echo "FAIL: $*" >&2; for f in "$work"/server-*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done; exit 1; }

cleanup() {
  set +e
  for name in "${!server_pid[@]}"; do
    kill -CONT "${server_pid[$name]}" 2>/dev/null
    kill -9 "${server_pid[$name]}" 2>/dev/null
  done
  [ -n "${loadgen_pid:-}" ] && kill -9 "$loadgen_pid" 2>/dev/null
  [ -f "$work/svc/env" ] && {
    pkill -CONT -P "$(head -n 1 "$(sed -n 's/^IM_TEST_PG_DATA=//p' "$work/svc/env")/postmaster.pid" 2>/dev/null)" 2>/dev/null
    kill -CONT "$(cat "$(sed -n 's/^IM_TEST_REDIS_PIDFILE=//p' "$work/svc/env")" 2>/dev/null)" 2>/dev/null
  }
  bash "$services" stop "$work/svc" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

start_services() {
  bash "$services" start "$work/svc" >/dev/null
  # shellcheck disable=SC1091
  source "$work/svc/env"
  # Servers check tokens; im-loadgen signs each user's with the same key.
  IM_AUTH_SECRET="fault=$(openssl rand -hex 32)"
  export IM_AUTH_SECRET
}

# launch_server NAME [im-server flags...]: starts it and waits until it accepts
# connections; returns 1 if it exits first (a crash point may kill it at once).
# IM_FAULTS in the environment passes through.
launch_server() {
  local name=$1; shift
  if [ -z "${server_port[$name]:-}" ]; then
    server_port[$name]=$(source "$services"; im_free_port)
  fi
  local log="$work/server-$name.log" starts
  starts=$(grep -c "listening on" "$log" 2>/dev/null || true)
  "$server_bin" --listen "127.0.0.1:${server_port[$name]}" --pg-url "$IM_TEST_PG_URL" \
    --redis-url "$IM_TEST_REDIS_URL" --threads 2 --pg-pool 2 --gap-fill-ms 1000 "$@" \
    >>"$log" 2>&1 &
  server_pid[$name]=$!
  for _ in $(seq 100); do
    if [ "$(grep -c "listening on" "$log" 2>/dev/null || true)" -gt "${starts:-0}" ] &&
       (exec 3<>"/dev/tcp/127.0.0.1/${server_port[$name]}") 2>/dev/null; then
      return 0
    fi
    kill -0 "${server_pid[$name]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_server NAME [im-server flags...]: launch_server, and the scenario fails
# if the server does not come up.
start_server() {
  launch_server "$@" || fail "server $1 did not start"
}

# Keeps server NAME running: restarts it whenever it dies (crash fault points).
supervise_server() {
  local name=$1; shift
  (
    while [ ! -f "$work/stop-supervisor" ]; do
      if ! kill -0 "$(cat "$work/pid-$name" 2>/dev/null)" 2>/dev/null; then
        "$server_bin" --listen "127.0.0.1:${server_port[$name]}" --pg-url "$IM_TEST_PG_URL" \
          --redis-url "$IM_TEST_REDIS_URL" --threads 2 --pg-pool 2 --gap-fill-ms 1000 "$@" \
          >>"$work/server-$name.log" 2>&1 &
        echo $! >"$work/pid-$name"
        echo restart >>"$work/restarts-$name"
      fi
      sleep 0.2
    done
    kill -TERM "$(cat "$work/pid-$name")" 2>/dev/null || true
  ) &
  supervisor_pid=$!
}

# stop_server NAME: SIGTERM, and waits (up to 30 s) until it has drained and
# exited, so its stop-time log lines (writer stats) are written.
stop_server() {
  local name=$1 pid=${server_pid[$1]}
  kill -TERM "$pid" 2>/dev/null || fail "server $name is not running"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "server $name did not stop within 30 s of SIGTERM"
  wait "$pid" 2>/dev/null || true
  unset "server_pid[$name]"
}

# writer_stat NAME KEY: KEY's value (WriterStats names: counter_raises,
# unique_violation_retries, ...) from the last "writer stats:" line server NAME
# logged at stop (the log spans its restarts: the last run that stopped cleanly).
writer_stat() {
  local line
  line=$(grep "writer stats:" "$work/server-$1.log" | tail -n 1)
  [ -n "$line" ] || fail "server $1 logged no writer stats (did it stop cleanly?)"
  sed -n "s/.* $2=\([0-9][0-9]*\).*/\1/p" <<<"$line"
}

# expect_raises NAME WHAT: stops server NAME, reports how Redis losing counters
# was answered, and fails if the main path (the fresh-key raise above MAX(seq))
# never fired: the unique-violation fallback alone gives the same outcome, so
# a clean check does not show that the main path works.
expect_raises() {
  local name=$1 raises retries
  stop_server "$name"
  grep -q "writer stats:" "$work/server-$name.log" || fail "server $name logged no writer stats at stop"
  raises=$(writer_stat "$name" counter_raises)
  retries=$(writer_stat "$name" unique_violation_retries)
  log "  writer: counter_raises $raises unique_violation_retries $retries" \
      "deadlock_retries $(writer_stat "$name" deadlock_retries)" \
      "batches_committed $(writer_stat "$name" batches_committed)" \
      "seqs_given_back $(writer_stat "$name" seqs_given_back)" \
      "seqs_tombstoned $(writer_stat "$name" seqs_tombstoned)"
  [ "$raises" -gt 0 ] || fail "$2: Redis lost counters but the writer raised none (main path never fired)"
  log "PASS $2: counters raised by the main path"
}

server_endpoints() {
  local list=""
  for name in "$@"; do list+="${list:+,}127.0.0.1:${server_port[$name]}"; done
  echo "$list"
}

# run_load SERVERS [im-loadgen flags...]: starts the checked load in the background.
run_load() {
  local servers=$1; shift
  "$loadgen_bin" --server "$servers" --senders "${LOAD_SENDERS:-6}" --receivers "${LOAD_RECEIVERS:-6}" \
    --pipeline 4 --count 100000000 \
    --duration "$FAULT_DURATION" --timeout 2 --send-attempts 40 --verify --json "$@" \
    >"$work/load.json" 2>"$work/load.err" &
  loadgen_pid=$!
}

# wait_load: waits for im-loadgen, prints its summary; sets $report.
wait_load() {
  local status=0
  wait "$loadgen_pid" || status=$?
  loadgen_pid=""
  report=$(cat "$work/load.json")
  [ -n "$report" ] || fail "im-loadgen printed no report (exit $status): $(tail -n 5 "$work/load.err")"
  python3 - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); c = r["check"]
print(f"  acked {r['acked']} failed {r['failed']} unknown {r['unknown']} "
      f"availability {r['availability']*100:.0f}% longest gap {r['max_ack_gap_s']:.2f}s "
      f"ack p99 {r['ack_latency_us']['p99']/1000:.1f}ms")
print("  check: " + " ".join(f"{k} {c[k]}" for k in ("lost", "duplicated", "unexpected", "aborted_reads",
      "inconsistent", "reader_skips", "reader_regressions", "order_violations", "ack_mismatch", "read_errors")))
print(f"  unknown-outcome sends delivered {c['unknown_delivered']}")
PY
}

# field PATH: a number from the report, e.g. field check.lost
field() {
  python3 -c 'import json,sys; v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$report" "$1"
}

expect_clean() {
  [ "$(field check.failing)" -eq 0 ] || fail "$1: the checker found anomalies"
  [ "$(field acked)" -gt 0 ] || fail "$1: nothing was acked"
  log "PASS $1"
}
