#!/usr/bin/env bash
# The README's tour, as a test: a real im-server process, alice sends to bob
# with imctl, bob pulls (JSON Lines), follows, and reads history; then a short
# im-loadgen run checks that every acked message is delivered exactly once.
set -euo pipefail
source "$IM_TEST_ENV_FILE"
bin=$IM_BUILD_DIR
imctl="$bin/tools/imctl/imctl"
work=$(mktemp -d)
cleanup() {
  [ -f "$work/follow.pid" ] && kill "$(cat "$work/follow.pid")" 2>/dev/null || true
  [ -f "$work/pid" ] && kill -9 "$(cat "$work/pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/log" ] && tail -n 20 "$work/log" >&2; exit 1; }

# The deployment's token key: im-server checks tokens with it and imctl, given
# the same variable, signs its own (as in the README).
export IM_AUTH_SECRET="tour=$(openssl rand -hex 32)"

"$bin/server/im-server" --listen 127.0.0.1:0 --port-file "$work/port" --pg-url "$IM_TEST_PG_URL" \
  --redis-url "$IM_TEST_REDIS_URL" --threads 2 --pg-pool 2 >"$work/log" 2>&1 &
echo $! >"$work/pid"
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "server did not start"
export IM_SERVER=127.0.0.1:$(cat "$work/port")
suffix=$RANDOM$RANDOM
alice=alice$suffix bob=bob$suffix

"$imctl" ping | grep -q "pong from" || fail "ping"

# bob follows before anything is sent.
"$imctl" --user "$bob" follow --json >"$work/follow.out" 2>"$work/follow.err" &
echo $! >"$work/follow.pid"

id=$("$imctl" --user "$alice" send "$bob" hi)
[[ "$id" =~ ^[0-9]+$ ]] || fail "send printed '$id', not a message id"
echo "second line" | "$imctl" send "$bob" - --user "$alice" >/dev/null  # options after the command, body from stdin

out=$("$imctl" --user "$bob" pull --json 2>/dev/null)
first=$(head -n 1 <<<"$out")
python3 - "$first" "$id" "$alice" "$bob" <<'PY' || fail "pull --json: $first"
import json, sys
m = json.loads(sys.argv[1])
assert m["seq"] == 1, m
assert m["message_id"] == int(sys.argv[2]), m
assert m["from"] == sys.argv[3] and m["to"] == sys.argv[4], m
assert m["body"] == "hi", m
assert m["created_at"].endswith("Z") and "T" in m["created_at"], m
assert isinstance(m["client_msg_id"], int) and m["client_msg_id"] > 0, m
PY
[ "$(wc -l <<<"$out")" -eq 2 ] || fail "expected 2 messages, got: $out"
grep -q '"body":"second line"' <<<"$out" || fail "stdin body missing: $out"
echo "ok: send and pull --json"

# A resend with the same --client-msg-id stores nothing new.
a=$("$imctl" --user "$alice" send "$bob" same --client-msg-id 77 --json)
b=$("$imctl" --user "$alice" send "$bob" same --client-msg-id 77 --json)
python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a["message_id"]==b["message_id"] and b["duplicate"], (a,b)' "$a" "$b" \
  || fail "resend: $a / $b"
echo "ok: idempotent resend"

# follow printed all three, in order.
for _ in $(seq 50); do [ "$(wc -l <"$work/follow.out")" -ge 3 ] && break; sleep 0.1; done
[ "$(wc -l <"$work/follow.out")" -eq 3 ] || fail "follow printed: $(cat "$work/follow.out")"
python3 -c '
import json,sys
seqs=[json.loads(l)["seq"] for l in open(sys.argv[1])]
assert seqs==[1,2,3], seqs' "$work/follow.out" || fail "follow order"
echo "ok: follow"

"$imctl" --user "$bob" history "$alice" | grep -q "hi" || fail "history"
"$imctl" --user "$bob" history "$alice" --before 1 --after 1 2>/dev/null && fail "history accepted --before with --after"
echo "ok: history"

# Errors: one line on stderr, non-zero status.
if "$imctl" --user "$alice" send "not valid" x 2>"$work/err"; then fail "bad receiver accepted"; fi
grep -q "^imctl: error: bad_request" "$work/err" || fail "error line: $(cat "$work/err")"
if "$imctl" --user "not valid" send "$bob" x 2>"$work/err"; then fail "bad user accepted"; fi
grep -q "^imctl: error: --user" "$work/err" || fail "error line: $(cat "$work/err")"
echo "ok: errors"

# Tokens: issued with the keys, used without them; others are refused.
token=$("$imctl" --user "$bob" token issue --ttl 5m)
[[ "$token" == im1:tour:$bob:* ]] || fail "token issue printed '$token'"
env -u IM_AUTH_SECRET "$imctl" --token "$token" pull --json 2>/dev/null | grep -q '"body":"hi"' \
  || fail "pull with an issued token"
if env -u IM_AUTH_SECRET "$imctl" --user "$bob" pull 2>"$work/err"; then fail "no token accepted"; fi
grep -q "unauthenticated" "$work/err" || fail "no-token error: $(cat "$work/err")"
forged=$(IM_AUTH_SECRET="tour=$(openssl rand -hex 32)" "$imctl" --user "$bob" token issue)
if env -u IM_AUTH_SECRET "$imctl" --token "$forged" pull 2>"$work/err"; then fail "forged token accepted"; fi
grep -q "unauthenticated: token signature does not match" "$work/err" || fail "forged: $(cat "$work/err")"
if env -u IM_AUTH_SECRET "$imctl" --user "$alice" --token "$token" pull 2>"$work/err"; then
  fail "bob's token opened alice's inbox"
fi
grep -q "forbidden" "$work/err" || fail "other user's token: $(cat "$work/err")"
echo "ok: tokens"

# Password accounts: register, log in, use the token; a wrong password fails.
carol=carol$suffix
export IM_PASSWORD="correct horse $suffix"
reg=$(env -u IM_AUTH_SECRET "$imctl" --user "$carol" register --json) || fail "register"
python3 -c 'import json,sys; g=json.loads(sys.argv[1]); assert g["user"]==sys.argv[2] and g["token"].startswith("im1:tour:"), g' \
  "$reg" "$carol" || fail "register printed $reg"
if env -u IM_AUTH_SECRET "$imctl" --user "$carol" register 2>"$work/err"; then fail "registered twice"; fi
grep -q "already_exists" "$work/err" || fail "second register: $(cat "$work/err")"
login_token=$(echo "$IM_PASSWORD" | env -u IM_AUTH_SECRET -u IM_PASSWORD "$imctl" --user "$carol" login) \
  || fail "login with the password on stdin"
env -u IM_AUTH_SECRET "$imctl" --token "$login_token" send "$bob" "from carol" >/dev/null || fail "send as carol"
if IM_PASSWORD="wrong password" env -u IM_AUTH_SECRET "$imctl" --user "$carol" login 2>"$work/err"; then
  fail "wrong password accepted"
fi
grep -q "unauthenticated: unknown user or wrong password" "$work/err" || fail "wrong password: $(cat "$work/err")"
unset IM_PASSWORD
echo "ok: register and login"

"$bin/tools/im-loadgen/im-loadgen" --senders 4 --receivers 8 --count 2000 --pipeline 16 --duration 30 --verify \
  || fail "im-loadgen smoke run"
echo "ok: im-loadgen smoke run"
