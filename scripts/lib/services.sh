#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Redis 7 for tests, benchmarks and scripts/run.
#
#   services.sh start DIR          start both on free loopback ports; write DIR/env
#   services.sh stop DIR           stop both and delete their data (idempotent)
#   services.sh pg-restart DIR [fast|immediate]    restart PostgreSQL (same port, same data)
#   services.sh pg-stop DIR [fast|immediate]       stop PostgreSQL only
#   services.sh pg-start DIR                       start it again
#   services.sh redis-restart DIR  restart Redis empty on the same port
#
# DIR/env holds KEY=VALUE lines: IM_TEST_PG_URL, IM_TEST_REDIS_URL, IM_TEST_PG_PORT,
# IM_TEST_REDIS_PORT, IM_TEST_PG_DATA, IM_TEST_PG_BIN, IM_TEST_PG_USER, IM_TEST_PG_LOG,
# IM_TEST_REDIS_PIDFILE, IM_TEST_REDIS_LOG, IM_TEST_REDIS_DIR.
#
# PostgreSQL refuses to run as root: as root it runs as the `postgres` user in a
# directory under /tmp that user owns. Everything listens on 127.0.0.1 only.
# The file may also be sourced for its functions (scripts/run does).
set -euo pipefail

IM_PG_BIN=${IM_PG_BIN:-/usr/lib/postgresql/15/bin}

im__log() { echo "services: $*" >&2; }

# A TCP port nothing listens on, below the kernel's ephemeral range: a port in
# that range can be taken, between this check and the bind, as the local port of
# an outgoing connection (im-server connects to PostgreSQL and Redis before it
# listens), and the bind then fails with "Address already in use".
im_free_port() {
  local port low=32768 span
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  span=$(( low - 10000 ))
  [ "$span" -ge 2000 ] || { low=60000; span=20000; }  # an unusual range: fall back to 40000-59999
  for _ in $(seq 200); do
    port=$(( (RANDOM << 1 | RANDOM & 1) % span + low - span ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  im__log "no free port found"
  return 1
}

im__as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

im__env_get() {  # im__env_get DIR KEY
  sed -n "s/^$2=//p" "$1/env" 2>/dev/null | head -n 1
}

im__wait_pg() {  # im__wait_pg PORT LOG
  for _ in $(seq 150); do
    if "$IM_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  im__log "PostgreSQL did not become ready on port $1; log tail:"
  tail -n 30 "$2" >&2 || true
  return 1
}

im__pg_ctl() {  # im__pg_ctl DIR ARGS...
  local dir=$1; shift
  local data port log
  data=$(im__env_get "$dir" IM_TEST_PG_DATA)
  port=$(im__env_get "$dir" IM_TEST_PG_PORT)
  log=$(im__env_get "$dir" IM_TEST_PG_LOG)
  im__as_pg "$IM_PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -k $(dirname "$data") -c listen_addresses=127.0.0.1" "$@" >/dev/null
}

im__start_redis() {  # im__start_redis PORT RUNDIR
  local port=$1 rundir=$2
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
    --daemonize yes --pidfile "$rundir/redis.pid" --logfile "$rundir/redis.log" --dir "$rundir"
  for _ in $(seq 100); do
    if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.1
  done
  im__log "Redis did not become ready on port $port; log tail:"
  tail -n 30 "$rundir/redis.log" >&2 || true
  return 1
}

im__stop_redis() {  # im__stop_redis DIR
  local pidfile pid
  pidfile=$(im__env_get "$1" IM_TEST_REDIS_PIDFILE)
  [ -n "$pidfile" ] && [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

im_services_start() {  # im_services_start DIR
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/env" ]; then im_services_stop "$dir"; fi
  [ -x "$IM_PG_BIN/initdb" ] || { im__log "PostgreSQL 15 not found in $IM_PG_BIN (run scripts/install-deps)"; return 1; }
  command -v redis-server >/dev/null || { im__log "redis-server not found (run scripts/install-deps)"; return 1; }

  # PostgreSQL's directory must belong to the user it runs as.
  local pgroot pg_user
  pgroot=$(mktemp -d /tmp/im-pg.XXXXXX)
  pg_user=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pgroot"
    pg_user=postgres
  fi
  local pg_port redis_port
  pg_port=$(im_free_port)
  redis_port=$(im_free_port)
  while [ "$redis_port" = "$pg_port" ]; do redis_port=$(im_free_port); done

  cat >"$dir/env" <<ENV
IM_TEST_PG_URL=postgresql://im@127.0.0.1:$pg_port/im
IM_TEST_REDIS_URL=redis://127.0.0.1:$redis_port
IM_TEST_PG_PORT=$pg_port
IM_TEST_REDIS_PORT=$redis_port
IM_TEST_PG_DATA=$pgroot/data
IM_TEST_PG_BIN=$IM_PG_BIN
IM_TEST_PG_USER=$pg_user
IM_TEST_PG_LOG=$pgroot/postgres.log
IM_TEST_REDIS_DIR=$dir/redis
IM_TEST_REDIS_PIDFILE=$dir/redis/redis.pid
IM_TEST_REDIS_LOG=$dir/redis/redis.log
ENV

  im__as_pg "$IM_PG_BIN/initdb" -D "$pgroot/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  im__pg_ctl "$dir" start || { tail -n 30 "$pgroot/postgres.log" >&2; return 1; }
  im__wait_pg "$pg_port" "$pgroot/postgres.log"
  "$IM_PG_BIN/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE im LOGIN CREATEDB" -c "CREATE DATABASE im OWNER im" >/dev/null

  mkdir -p "$dir/redis"
  im__start_redis "$redis_port" "$dir/redis"
  im__log "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port ($dir/env)"
}

im_services_stop() {  # im_services_stop DIR
  local dir=$1
  [ -f "$dir/env" ] || return 0
  local data
  data=$(im__env_get "$dir" IM_TEST_PG_DATA)
  if [ -n "$data" ] && [ -d "$data" ]; then
    im__as_pg "$IM_PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    rm -rf "$(dirname "$data")"
  fi
  im__stop_redis "$dir"
  rm -rf "$dir/redis" "$dir/env" "$dir/initdb.log"
}

im_main() {
  local cmd=${1:-} dir=${2:-}
  [ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|pg-restart|pg-stop|pg-start|redis-restart DIR" >&2; return 2; }
  case "$cmd" in
    start) im_services_start "$dir" ;;
    stop) im_services_stop "$dir" ;;
    pg-restart) im__pg_ctl "$dir" -m "${3:-fast}" restart ;;
    pg-stop) im__pg_ctl "$dir" -m "${3:-fast}" stop ;;
    pg-start) im__pg_ctl "$dir" start ;;
    redis-restart)
      im__stop_redis "$dir"
      im__start_redis "$(im__env_get "$dir" IM_TEST_REDIS_PORT)" "$(im__env_get "$dir" IM_TEST_REDIS_DIR)" ;;
    *) echo "unknown command: $cmd" >&2; return 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then im_main "$@"; fi
