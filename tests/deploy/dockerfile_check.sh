#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine: the build stage installs with
# scripts/install-deps (the same steps CI uses), the runtime stage installs
# only the runtime list and runs as a non-root user, and every runtime package
# exists in Debian's archive.
set -euo pipefail
file="$IM_SOURCE_DIR/Dockerfile"
fail() { echo "FAIL: $*" >&2; exit 1; }

grep -q '^FROM debian:bookworm AS build' "$file" || fail "build stage is not debian:bookworm"
grep -q '^FROM debian:bookworm-slim AS runtime' "$file" || fail "runtime stage is not debian:bookworm-slim"
build_stage=$(sed -n '/AS build/,/AS runtime/p' "$file")
runtime_stage=$(sed -n '/AS runtime/,$p' "$file")
grep -q 'bash scripts/install-deps &&' <<<"$build_stage" || fail "build stage does not use scripts/install-deps"
grep -q 'install-deps --runtime' <<<"$runtime_stage" || fail "runtime stage does not use install-deps --runtime"
user=$(grep -E '^USER ' <<<"$runtime_stage" | awk '{print $2}')
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || fail "runtime stage runs as root"
grep -q 'ENTRYPOINT \["im-server"\]' "$file" || fail "entrypoint is not im-server"
echo "ok: Dockerfile stages, install steps and non-root user"

for p in $(bash "$IM_SOURCE_DIR/scripts/install-deps" --runtime --dry-run); do
  apt-cache show "$p" >/dev/null 2>&1 || fail "runtime package $p is not in the archive"
done
for p in $(bash "$IM_SOURCE_DIR/scripts/install-deps" --dry-run); do
  apt-cache show "$p" >/dev/null 2>&1 || fail "build package $p is not in the archive"
done
echo "ok: every package install-deps names exists"
