#!/usr/bin/env bash
# im-server as a process: configuration errors exit non-zero with a clear
# message, --help documents every setting, the server migrates and listens on a
# port it reports, and SIGTERM stops it cleanly (exit 0).
set -euo pipefail
source "$IM_TEST_ENV_FILE"
server="$IM_BUILD_DIR/server/im-server"
work=$(mktemp -d)
trap 'kill -9 $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Without keys the server refuses to start (unless told --auth none), naming
# where keys come from; every check below then runs with keys, so that a bad
# value is refused for itself and not for the missing keys.
if out=$(env -u IM_AUTH_SECRET -u IM_AUTH_SECRET_FILE "$server" --check-config 2>&1); then
  fail "started without token keys"
fi
grep -q "IM_AUTH_SECRET" <<<"$out" || fail "missing-keys message does not say where keys go: $out"
env -u IM_AUTH_SECRET "$server" --check-config --auth none | grep -q "auth=none" \
  || fail "--auth none not accepted"
export IM_AUTH_SECRET="test=$(openssl rand -hex 32)"
"$server" --check-config | grep -q "auth=token (1 key(s), signing with 'test')" \
  || fail "keys from IM_AUTH_SECRET not used"
if "$server" --check-config | grep -q "${IM_AUTH_SECRET#test=}"; then fail "the key was printed"; fi
echo "ok: token keys are required, from IM_AUTH_SECRET, and never printed"

# --help documents every flag the README lists.
help=$("$server" --help)
for flag in --listen --pg-url --redis-url --threads --batch-max --batch-delay-us \
            --max-frame-bytes --max-body-bytes --max-pull-limit --max-wait-ms --gap-fill-ms \
            --pg-pool --log-level --port-file --check-config --auth --auth-secret-file \
            --registration --login-token-ttl --auth-threads; do
  grep -q -- "$flag" <<<"$help" || fail "--help does not document $flag"
done
echo "ok: --help documents every setting"

# Bad values, by flag and by environment variable, exit non-zero with a message.
for bad in "--batch-max 0" "--listen nonsense" "--max-frame-bytes 12" "--log-level loud"; do
  # shellcheck disable=SC2086
  if out=$("$server" --check-config $bad 2>&1); then fail "accepted $bad"; fi
  [ -n "$out" ] || fail "no message for $bad"
done
if out=$(IM_BATCH_DELAY_US=abc "$server" --check-config 2>&1); then fail "accepted IM_BATCH_DELAY_US=abc"; fi
grep -qi "batch" <<<"$out" || fail "message for IM_BATCH_DELAY_US=abc does not name the setting: $out"
IM_BATCH_MAX=7 "$server" --check-config | grep -q "batch_max=7" || fail "IM_BATCH_MAX not applied"
echo "ok: bad configuration is refused with a message"

# Starts on a free port, writes it, and stops cleanly on SIGTERM.
"$server" --listen 127.0.0.1:0 --port-file "$work/port" --pg-url "$IM_TEST_PG_URL" \
  --redis-url "$IM_TEST_REDIS_URL" --pg-pool 1 --threads 1 >"$work/log" 2>&1 &
echo $! >"$work/pid"
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/log"; fail "no port file"; }
port=$(cat "$work/port")
grep -q "listening on 127.0.0.1:$port" "$work/log" || fail "no listening line for port $port"
grep -q "starting: listen=" "$work/log" || fail "no start-up configuration line"
grep -q "schema at version 3" "$work/log" || fail "the migrations did not all run"
if grep -q "${IM_AUTH_SECRET#test=}" "$work/log"; then fail "the token key leaked into the log"; fi
if grep -q "secret" "$work/log"; then fail "a secret leaked into the log"; fi
kill -TERM "$(cat "$work/pid")"
status=0
wait "$(cat "$work/pid")" || status=$?
[ "$status" -eq 0 ] || { cat "$work/log"; fail "exit status $status after SIGTERM"; }
grep -q "stopped" "$work/log" || fail "no clean stop line"
echo "ok: listens on the reported port, stops cleanly on SIGTERM"

# --auth none says loudly that it is for development.
"$server" --listen 127.0.0.1:0 --port-file "$work/port2" --pg-url "$IM_TEST_PG_URL" \
  --redis-url "$IM_TEST_REDIS_URL" --pg-pool 1 --threads 1 --auth none >"$work/log2" 2>&1 &
echo $! >"$work/pid"
for _ in $(seq 100); do [ -s "$work/port2" ] && break; sleep 0.1; done
[ -s "$work/port2" ] || { cat "$work/log2"; fail "no port file with --auth none"; }
grep -q "warning.*--auth none.*development only" "$work/log2" || fail "no --auth none warning"
kill -TERM "$(cat "$work/pid")"; wait "$(cat "$work/pid")" || true
echo "ok: --auth none warns at start-up"
