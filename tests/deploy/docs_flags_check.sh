#!/usr/bin/env bash
# docs/configuration.md and `im-server --help` name the same flags (and each
# documented flag its environment variable), so that neither drifts from the
# other: a flag added to the server without a row, or a row left for a flag
# that is gone, fails here.
set -euo pipefail
server="$IM_BUILD_DIR/server/im-server"
doc="$IM_SOURCE_DIR/docs/configuration.md"
fail() { echo "docs_flags_check: $*" >&2; exit 1; }
[ -x "$server" ] || fail "no im-server at $server"

# Options of --help, without --help and --version (they configure nothing).
help_flags=$("$server" --help | grep -oE '^ +(-[a-zA-Z], *)?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' |
             grep -vxE -- '--(help|version)' | sort -u)
# Flags in the first column of the document's tables (a cell may name several).
doc_flags=$(grep -E '^\| `--' "$doc" | cut -d'|' -f2 | grep -oE -- '--[a-z0-9-]+' | sort -u)
[ -n "$help_flags" ] || fail "found no flags in im-server --help"
[ -n "$doc_flags" ] || fail "found no flags in $doc"

missing=$(comm -23 <(echo "$help_flags") <(echo "$doc_flags"))
extra=$(comm -13 <(echo "$help_flags") <(echo "$doc_flags"))
[ -z "$missing" ] || fail "flags in im-server --help without a row in docs/configuration.md: $(echo $missing)"
[ -z "$extra" ] || fail "rows in docs/configuration.md for flags im-server does not have: $(echo $extra)"

# Each row's environment variable is the one --help names for that flag.
while IFS= read -r flag; do
  want=$("$server" --help | grep -E -- "^ +${flag} " | grep -oE 'Env:[A-Z0-9_]+' | cut -d: -f2 || true)
  [ -n "$want" ] || continue
  grep -E "^\| [^|]*\`${flag}\`" "$doc" | grep -q "\`${want}\`" ||
    fail "the row of $flag does not name its environment variable $want"
done <<<"$help_flags"
echo "docs_flags_check: $(echo "$help_flags" | wc -l) flags, documented alike"
