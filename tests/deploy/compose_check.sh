#!/usr/bin/env bash
# No Docker engine runs on our machines, so this checks what it can of
# docker-compose.yml: it parses, names the official images, publishes 7400,
# has health checks, makes the server wait for healthy services, and passes
# settings that im-server accepts (validated by im-server --check-config with
# exactly the compose environment; a broken value must be refused).
set -euo pipefail
compose="$IM_SOURCE_DIR/docker-compose.yml"
server="$IM_BUILD_DIR/server/im-server"

env_lines=$(python3 - "$compose" <<'PY'
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
s = doc["services"]
def need(cond, what):
    if not cond:
        sys.exit("compose check failed: " + what)
need(s["postgres"]["image"] == "postgres:15", "postgres image is postgres:15")
need(s["redis"]["image"] == "redis:7", "redis image is redis:7")
im = s["im-server"]
need("7400:7400" in [str(p) for p in im["ports"]], "im-server publishes 7400")
for name in ("postgres", "redis", "im-server"):
    need("healthcheck" in s[name], name + " has a healthcheck")
for dep in ("postgres", "redis"):
    need(im["depends_on"][dep]["condition"] == "service_healthy", "im-server waits for healthy " + dep)
need(im.get("build") in (".", {"context": "."}), "im-server is built from this repository")
env = im["environment"]
need(env["IM_LISTEN"].endswith(":7400"), "IM_LISTEN uses port 7400")
need("IM_AUTH_SECRET" in env or "IM_AUTH_SECRET_FILE" in env or env.get("IM_AUTH") == "none",
     "im-server is given token keys")
# Compose fills ${VAR:-default} from the host; here the default stands in.
for k, v in env.items():
    v = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
    print(f"{k}={v}")
PY
)
echo "ok: docker-compose.yml parses and names postgres:15, redis:7, port 7400, health checks"

mapfile -t env_array <<<"$env_lines"
env -i "${env_array[@]}" "$server" --check-config >/dev/null \
  || { echo "FAIL: im-server refuses the compose settings: ${env_array[*]}" >&2; exit 1; }
if env -i "${env_array[@]}" IM_BATCH_MAX=0 "$server" --check-config >/dev/null 2>&1; then
  echo "FAIL: --check-config accepted IM_BATCH_MAX=0, so it cannot be trusted" >&2
  exit 1
fi
echo "ok: im-server accepts the compose environment (and refuses a broken one)"
