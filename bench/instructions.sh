#!/usr/bin/env bash
# Instructions per request through Keygate, counted by callgrind: exact for the same binary and
# inputs whatever else the machine is doing, so a before/after comparison needs no quiet machine.
#
# Keygate (one worker) runs bench/seed-full.yml in front of keygate-mock; keygate-load sends
# WARMUP requests, the counters are zeroed, then REQUESTS more are counted. Prints one line:
#   instructions per request: N (REQUESTS requests, leg LEG)
#
#   bench/instructions.sh                       # builds release binaries first
#   KEYGATE_BIN=... MOCK_BIN=... LOAD_BIN=... bench/instructions.sh
#   LEG=https bench/instructions.sh             # the mock behind TLS (h2), trusted with --upstream-ca-file
#
# Needs valgrind (apt-get install valgrind), curl, and for LEG=https the mock's --tls-cert flags.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${REQUESTS:-2000}"
CONNECTIONS="${CONNECTIONS:-4}"        # keep-alive connections the requests share
WARMUP="${WARMUP:-200}"
LEG="${LEG:-http}"
MOCK_PORT="${MOCK_PORT:-18281}"
KG_PORT="${KG_PORT:-18283}"
KG_ADMIN_PORT="${KG_ADMIN_PORT:-18284}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d /tmp/keygate-instr.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

if [[ -z "${KEYGATE_BIN:-}" || -z "${MOCK_BIN:-}" || -z "${LOAD_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p keygate -p keygate-mock)
  KEYGATE_BIN="${KEYGATE_BIN:-$TARGET_DIR/release/keygate}"
  MOCK_BIN="${MOCK_BIN:-$TARGET_DIR/release/keygate-mock}"
  LOAD_BIN="${LOAD_BIN:-$TARGET_DIR/release/keygate-load}"
fi

wait_http() { # URL: until it answers (any status), at most 60 s (callgrind starts slowly)
  for _ in $(seq 600); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

mock_args=(--listen "127.0.0.1:$MOCK_PORT" --threads 1)
scheme=http
upstream_args=()
if [[ "$LEG" == https ]]; then
  "$MOCK_BIN" --write-test-certs "$WORK/certs" >/dev/null
  mock_args+=(--tls-cert "$WORK/certs/server.crt" --tls-key "$WORK/certs/server.key")
  upstream_args=(--upstream-ca-file "$WORK/certs/ca.pem")
  scheme=https
fi
"$MOCK_BIN" "${mock_args[@]}" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_http "$scheme://127.0.0.1:$MOCK_PORT/v1/models"

export KEYGATE_DATA_DIR="$WORK/data"
TOKEN="$("$KEYGATE_BIN" token generate)"
"$KEYGATE_BIN" api vaults create --name gateway-auth >/dev/null
printf '%s' "$TOKEN" | "$KEYGATE_BIN" api secrets create --name access-token --value - --vault-name gateway-auth >/dev/null
"$KEYGATE_BIN" api vaults create --name openai >/dev/null
printf 'sk-bench-server-key-0123456789' | "$KEYGATE_BIN" api secrets create --name api-key --value - --vault-name openai >/dev/null

valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" ${CALLGRIND_ARGS:-} \
  "$KEYGATE_BIN" serve --policy "$ROOT/bench/seed-full.yml" --workers 1 --log-format json \
  --listen "127.0.0.1:$KG_PORT" --admin-listen "127.0.0.1:$KG_ADMIN_PORT" \
  --provider-url "openai=$scheme://127.0.0.1:$MOCK_PORT/v1" "${upstream_args[@]}" \
  >"$WORK/keygate.log" 2>"$WORK/valgrind.log" &
KG_PID=$!
PIDS+=("$KG_PID")
wait_http "http://127.0.0.1:$KG_ADMIN_PORT/readyz"

printf '{"model":"gpt-4o","messages":[{"role":"user","content":"Benchmark round trip: please echo this sentence back in small streamed chunks, thank you very much."}]}' >"$WORK/chat.json"
load() { # about N requests over CONNECTIONS connections in 2 s; prints how many succeeded
  "$LOAD_BIN" --url "http://127.0.0.1:$KG_PORT/v1/chat/completions" --rate "$(( $1 / 2 ))" \
    --duration 2 --warmup 0 --connections "$CONNECTIONS" --timeout-ms 60000 --body-file "$WORK/chat.json" \
    -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" | jq -r .ok
}
load "$WARMUP" >/dev/null
callgrind_control -z "$KG_PID" >/dev/null
ok="$(load "$REQUESTS")"
callgrind_control -d "$KG_PID" >/dev/null
sleep 1
total="$(cat "$WORK"/callgrind.out* | awk '/^summary:/ {s += $2} END {print s}')"
[[ -n "${KEEP:-}" ]] && cp "$WORK"/callgrind.out* "$KEEP"/
echo "instructions per request: $(( total / ok )) ($ok requests, leg $LEG)"
if [[ -n "${CALLGRIND_ARGS:-}" ]]; then # per thread (with --separate-threads=yes)
  for f in "$WORK"/callgrind.out*; do awk -v f="${f##*/}" -v ok="$ok" '/^summary:/ {print f": "int($2 / ok)" per request"}' "$f"; done
fi
