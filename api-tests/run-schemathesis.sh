#!/bin/bash
# Check the running API against agent/openapi.yaml with schemathesis, a
# property-based client that generates valid and invalid requests from the
# schema and checks every response against it.
#
# Starts `appliance-agent serve` on a free port of 127.0.0.1 with a
# configuration and token store in a temporary folder, creates an admin
# token and a CSRF token for it, and runs schemathesis from the venv that
# image/setup-host.sh creates.
set -euo pipefail

agent=${1:?usage: run-schemathesis.sh AGENT_BINARY}
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${APPLIANCE_CACHE:-/var/cache/appliance}/venv
# Seconds schemathesis may spend generating requests.
max_time=${SCHEMATHESIS_MAX_TIME:-60}

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "run-schemathesis: $venv/bin/schemathesis not found; run image/setup-host.sh (make setup)" >&2
    exit 1
fi

work=$(mktemp -d)
serve_pid=
cleanup() {
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
cat > "$work/appliance.yaml" <<YAML
listen: ["127.0.0.1:$port"]
auth:
  token_store: $work/tokens.json
vm:
  gpu_passthrough: false
YAML

# The early stage records the platform and the measured-boot report, as in
# the initrd, so GET /api/boot/measurements returns its 200 form. --sysroot
# names a folder that does not exist, so nothing on this machine is masked.
"$agent" early --state-dir "$work/state" --sysroot "$work/no-sysroot" > "$work/early.log" 2>&1

token=$("$agent" token create --name schemathesis --scope admin --store "$work/tokens.json" 2>/dev/null)
# The scripted engine stands in for a model, so /api/health reaches its 200 form.
"$agent" serve --config "$work/appliance.yaml" --state-dir "$work/state" \
    --console "$work/console" --host-channel-check-seconds 0 \
    --engine "scripted:$top/agent/tests/fixtures/cases/d01-stream-chunk-shape/backend/hello.json" \
    2> "$work/serve.log" &
serve_pid=$!

for _ in $(seq 60); do
    curl -sf "$base/api/health" >/dev/null && break
    sleep 0.5
done
if ! curl -sf "$base/api/health" >/dev/null; then
    echo "run-schemathesis: serve did not respond on $base within 30 s; its log:" >&2
    cat "$work/serve.log" >&2
    exit 1
fi

csrf=$(curl -sf -H "Authorization: Bearer $token" "$base/api/auth/csrf" \
    | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["csrf_token"])')

status=0
# schemathesis keeps its own files in the working directory; keep them out
# of the clone.
cd "$work"
"$venv/bin/schemathesis" run "$top/agent/openapi.yaml" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --header "X-CSRF-Token: $csrf" \
    --checks all \
    --max-time "$max_time" \
    --workers 1 \
    --no-color || status=$?
if [ "$status" -ne 0 ]; then
    echo "run-schemathesis: failed; serve's log follows" >&2
    tail -n 50 "$work/serve.log" >&2
fi
exit "$status"
