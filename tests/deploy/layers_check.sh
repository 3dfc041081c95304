#!/usr/bin/env bash
# The build enforces the layers: each probe in tests/layers includes one header
# across a layer's arrows and must fail to compile, for that include (and not
# for another reason); the control, which includes only what its layer links,
# must compile.
set -euo pipefail
fail() { echo "layers_check: $*" >&2; exit 1; }
build() { cmake --build "$IM_BUILD_DIR" --target "im_layer_$1" 2>&1; }

for probe in service_includes_storage:server/storage/schema.hpp \
             net_includes_storage:server/storage/redis_seq.hpp \
             storage_includes_net:server/net/session.hpp \
             client_includes_server:server/service/store.hpp; do
  name=${probe%%:*} header=${probe#*:}
  if out=$(build "$name"); then fail "$name compiled: the layer can include $header"; fi
  grep -qF "$header: No such file or directory" <<<"$out" \
    || fail "$name failed to build, but not for its include of $header:"$'\n'"$out"
  echo "ok: $name does not compile ($header is out of reach)"
done
out=$(build service_includes_its_own) || fail "the control does not compile:"$'\n'"$out"
echo "ok: the control (a layer including itself and what it links) compiles"
