#!/usr/bin/env bash
# TLS as users meet it: certificates made now with the openssl CLI, im-server
# with --tls-cert/--tls-key (and the start-up errors for bad files), imctl and
# im-loadgen with --tls/--tls-ca-file (and IM_TLS_CA_FILE), and a clear error
# when the server's certificate is not trusted.
set -euo pipefail
source "$IM_TEST_ENV_FILE"
bin=$IM_BUILD_DIR
server="$bin/server/im-server"
imctl="$bin/tools/imctl/imctl"
work=$(mktemp -d)
cleanup() {
  [ -f "$work/pid" ] && kill -9 "$(cat "$work/pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/log" ] && tail -n 20 "$work/log" >&2; exit 1; }
# Token keys for the server and the tools, so that only TLS settings are at stake here.
export IM_AUTH_SECRET="tls=$(openssl rand -hex 32)"

# A CA, a server certificate it signs for 127.0.0.1, and an unrelated key.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=im script CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=im script server" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/other.key" 2>/dev/null

# Start-up errors name the setting and exit 2, like other configuration errors.
set +e
out=$("$server" --check-config --tls-cert "$work/server.pem" --tls-key "$work/other.key" 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "mismatched key: exit $rc"
grep -q -- "--tls-key.*does not match" <<<"$out" || fail "mismatched key message: $out"
set +e
out=$(IM_TLS_CERT="$work/nope.pem" IM_TLS_KEY="$work/server.key" "$server" --check-config 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unreadable cert: exit $rc"
grep -q -- "--tls-cert.*cannot read" <<<"$out" || fail "unreadable cert message: $out"
echo "ok: bad TLS files are refused at start-up"

"$server" --listen 127.0.0.1:0 --port-file "$work/port" --pg-url "$IM_TEST_PG_URL" \
  --redis-url "$IM_TEST_REDIS_URL" --threads 2 --pg-pool 2 \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key" >"$work/log" 2>&1 &
echo $! >"$work/pid"
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "server did not start"
grep -q "TLS on" "$work/log" || fail "the start-up log does not say TLS is on"
export IM_SERVER=127.0.0.1:$(cat "$work/port")
suffix=$RANDOM$RANDOM
alice=alice$suffix bob=bob$suffix

"$imctl" --tls --tls-ca-file "$work/ca.pem" ping | grep -q "pong from" || fail "ping over TLS"
id=$("$imctl" --user "$alice" --tls-ca-file "$work/ca.pem" send "$bob" "secret hi")
[[ "$id" =~ ^[0-9]+$ ]] || fail "send printed '$id'"
IM_TLS=1 IM_TLS_CA_FILE="$work/ca.pem" "$imctl" --user "$bob" pull 2>/dev/null | grep -q "secret hi" \
  || fail "pull over TLS (environment variables)"
echo "ok: imctl over TLS"

# Not trusted (the system's CAs do not know ours): one clear line, exit 1.
if "$imctl" --tls ping 2>"$work/err"; then fail "an untrusted certificate was accepted"; fi
grep -q "certificate verify failed" "$work/err" || fail "untrusted certificate: $(cat "$work/err")"
# Plain TCP against the TLS listener fails too (and the server stays up).
if "$imctl" --timeout 2 ping 2>/dev/null; then fail "plain TCP worked against the TLS listener"; fi
"$imctl" --tls-ca-file "$work/ca.pem" ping >/dev/null || fail "server not serving after a plain client"
echo "ok: untrusted and plain clients are refused"

"$bin/tools/im-loadgen/im-loadgen" --tls --tls-ca-file "$work/ca.pem" --senders 2 --receivers 4 \
  --count 500 --pipeline 8 --duration 30 --verify >"$work/loadgen.out" || fail "im-loadgen over TLS: $(cat "$work/loadgen.out")"
echo "ok: im-loadgen over TLS"

kill -TERM "$(cat "$work/pid")"
for _ in $(seq 100); do kill -0 "$(cat "$work/pid")" 2>/dev/null || break; sleep 0.1; done
kill -0 "$(cat "$work/pid")" 2>/dev/null && fail "server did not stop on SIGTERM"
rm -f "$work/pid"
echo "ok: stopped"
