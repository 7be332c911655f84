#!/usr/bin/env bash
# Checks the hub's OpenAPI document (/api/openapi.json) against the running hub with
# schemathesis: no 5xx, and every status, content type and body as the document says.
# A bounded run: a fixed seed and a fixed number of examples per operation.
#
# Usage: .ci/schemathesis.sh <stocky binary> [extra schemathesis options]
set -euo pipefail
BIN=${1:?usage: .ci/schemathesis.sh <stocky binary>}
shift
SCHEMATHESIS_VERSION=4.32.5
if ! command -v schemathesis >/dev/null 2>&1 \
  || ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# The operator's token: an owner of the default tenant, who may call every route.
# Rate limits are off: schemathesis sends thousands of requests from one credential, and
# some without credentials on purpose (each a failed authentication of its IP).
STOCKY_ADMIN_TOKEN=$TOKEN RUST_LOG=warn "$BIN" hub --data-dir "$DATA" --port "$PORT" \
  --rate-limit 0 --rate-limit-ip 0 --login-failures 0 >"$DATA/hub.log" 2>&1 &
HUB=$!
trap 'kill $HUB 2>/dev/null || true; wait $HUB 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA/hub.log" >&2; echo "the hub did not start" >&2; exit 1; }

status=0
schemathesis run "http://127.0.0.1:$PORT/api/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" \
  --seed 20261206 \
  --workers 1 \
  --request-timeout 20 \
  --suppress-health-check all \
  --no-color \
  "$@" || status=$?
if grep -q "panicked" "$DATA/hub.log"; then
  grep -B2 -A10 "panicked" "$DATA/hub.log" >&2
  echo "the hub panicked during the run" >&2
  status=1
fi
exit $status
