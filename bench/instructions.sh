#!/usr/bin/env bash
# Instructions per request through Keygate, counted by callgrind: exact for the same binary and
# inputs whatever else the machine is doing, so a before/after comparison needs no quiet machine.
#
# Keygate (one worker) runs bench/seed-full.yml in front of keygate-mock; keygate-load sends
# WARMUP requests, the counters are zeroed, then REQUESTS more are counted. Prints one line:
#   instructions per request: N (REQUESTS requests, leg LEG)
# (with POLICY=keys or REDIS=1 the parentheses also name the policy and the store).
#
#   bench/instructions.sh                       # builds release binaries first
#   KEYGATE_BIN=... MOCK_BIN=... LOAD_BIN=... bench/instructions.sh
#   LEG=https bench/instructions.sh             # the mock behind TLS (h2), trusted with --upstream-ca-file
#   STREAM=1 bench/instructions.sh              # streamed answers (CHUNKS=20 content chunks each)
#   STREAM=1 USAGE=omit bench/instructions.sh   # ... from a provider that reports no usage
#   POLICY=keys bench/instructions.sh           # bench/seed-keys.yml: built-in access keys, token budget
#   POLICY=keys REDIS=1 bench/instructions.sh   # the same with rate limits and budgets in a redis-server
#   CLIENT=messages [STREAM=1] bench/instructions.sh  # Anthropic Messages requests for gpt-4o, translated
#                                               # to chat completions and back (docs/translation.md)
#   REDACT=1 [STREAM=1] bench/instructions.sh   # the policy's ai-gateway with `redact` (an e-mail and a
#                                               # card-number rule, docs/ai-gateway.md#redacting-answers)
#   OTLP=1 bench/instructions.sh                # traces exported (--otlp-endpoint) to a trivial collector
#                                               # (docs/tracing.md); the count includes their export
#
# POLICY=seed (default) runs bench/seed-full.yml (Bearer token checked against a vault secret).
# POLICY=keys runs bench/seed-keys.yml (`access_keys: required`, rate limit bucketed by access_key.id)
# and sends the token of an access key created with `--token-limit 1000000000000/day`, so every
# request also reserves and settles a token budget. REDIS=1 starts a throwaway redis-server on
# REDIS_PORT (no persistence, shut down on exit) and passes `--redis` to keygate; only Keygate runs
# under callgrind, so Redis's own CPU is not counted (bench/budget-latency.sh measures its latency).
#
# OTLP=1 starts a collector sink (python3's http.server, answering 200 to every POST and counting the spans;
# not under callgrind) on OTLP_PORT and passes --otlp-endpoint. Before the counters are zeroed and before they
# are dumped, the script waits until the sink has received the spans of every request sent so far (two per
# request: the request's and its one attempt's), so the count covers encoding and posting the measured
# requests' spans, and nothing of the warm-up's. SETTLE=N waits N seconds more at both points, in every mode,
# so background writers (the usage ledger's batches) also finish the measured requests inside the count: use
# the same SETTLE for runs that are compared.
#
# Needs valgrind (apt-get install valgrind), curl, jq, for LEG=https the mock's --tls-cert flags,
# and for REDIS=1 redis-server and redis-cli (apt-get install redis-server).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${REQUESTS:-2000}"
CONNECTIONS="${CONNECTIONS:-4}"        # keep-alive connections the requests share
WARMUP="${WARMUP:-200}"
LEG="${LEG:-http}"
POLICY="${POLICY:-seed}"               # seed | keys
REDIS="${REDIS:-0}"                    # 1: rate limits and budgets in a throwaway redis-server
REDIS_PORT="${REDIS_PORT:-18285}"
STREAM="${STREAM:-0}"                  # 1: streamed chat completions (CHUNKS content chunks each)
CHUNKS="${CHUNKS:-20}"
USAGE="${USAGE:-report}"               # omit: the provider reports no usage (the gateway estimates it)
CLIENT="${CLIENT:-chat}"               # chat | messages (the same model, reached through translation)
OTLP="${OTLP:-0}"                      # 1: export traces to a collector sink on OTLP_PORT
REDACT="${REDACT:-0}"                  # 1: the ai-gateway config gets a `redact` block
SETTLE="${SETTLE:-0}"                  # seconds to wait before zeroing and before dumping the counters
OTLP_PORT="${OTLP_PORT:-18286}"
MOCK_PORT="${MOCK_PORT:-18281}"
KG_PORT="${KG_PORT:-18283}"
KG_ADMIN_PORT="${KG_ADMIN_PORT:-18284}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d /tmp/keygate-instr.XXXXXX)"
PIDS=()
REDIS_STARTED=0
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  [[ "$REDIS_STARTED" == 1 ]] && { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
case "$POLICY" in
  seed) POLICY_FILE="$ROOT/bench/seed-full.yml" ;;
  keys) POLICY_FILE="$ROOT/bench/seed-keys.yml" ;;
  *) echo "POLICY must be seed or keys, not $POLICY" >&2; exit 2 ;;
esac
if [[ "$REDACT" == 1 ]]; then # both policies end with their ai-gateway config: `redact` joins it
  cp "$POLICY_FILE" "$WORK/policy.yml"
  cat >>"$WORK/policy.yml" <<'YML'
          redact:
            replacements:
              - from: '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}'
                to: '[email]'
              - from: '\b(\d{4})[- ]?\d{4}[- ]?\d{4}[- ]?(\d{4})\b'
                to: '$1-****-****-$2'
YML
  POLICY_FILE="$WORK/policy.yml"
fi

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

mock_args=(--listen "127.0.0.1:$MOCK_PORT" --threads 1 --chunks "$CHUNKS")
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
if [[ "$POLICY" == keys ]]; then # an access key with a token budget that never runs out
  TOKEN="$("$KEYGATE_BIN" api ai-gateway-api-keys create --description bench \
    --token-limit 1000000000000/day | jq -r .token)"
  [[ "$TOKEN" == kg-* ]] || { echo "no access-key token in the create output" >&2; exit 1; }
else
  TOKEN="$("$KEYGATE_BIN" token generate)"
  "$KEYGATE_BIN" api vaults create --name gateway-auth >/dev/null
  printf '%s' "$TOKEN" | "$KEYGATE_BIN" api secrets create --name access-token --value - --vault-name gateway-auth >/dev/null
fi
"$KEYGATE_BIN" api vaults create --name openai >/dev/null
# The mock leaves usage out for a key holding the word `nousage`.
provider_key='sk-bench-server-key-0123456789'
[[ "$USAGE" == omit ]] && provider_key='sk-bench-server-key-nousage'
printf '%s' "$provider_key" | "$KEYGATE_BIN" api secrets create --name api-key --value - --vault-name openai >/dev/null

store_args=()
if [[ "$REDIS" == 1 ]]; then
  ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || { echo "port $REDIS_PORT already answers redis" >&2; exit 1; }
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
  REDIS_STARTED=1
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  store_args=(--redis "redis://127.0.0.1:$REDIS_PORT")
fi

otlp_args=()
if [[ "$OTLP" == 1 ]]; then
  python3 - "$OTLP_PORT" "$WORK/otlp.spans" >"$WORK/otlp.log" 2>&1 <<'PY' &
import http.server, json, os, sys
port, out = int(sys.argv[1]), sys.argv[2]
spans = 0
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global spans
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        spans += sum(len(s["spans"]) for r in body["resourceSpans"] for s in r["scopeSpans"])
        with open(out + ".tmp", "w") as f:
            f.write(str(spans))
        os.replace(out + ".tmp", out)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
  PIDS+=($!)
  wait_http "http://127.0.0.1:$OTLP_PORT/"
  otlp_args=(--otlp-endpoint "http://127.0.0.1:$OTLP_PORT")
fi
wait_spans() { # N: until the sink has received N spans (OTLP=1), at most 120 s
  [[ "$OTLP" == 1 ]] || return 0
  for _ in $(seq 1200); do
    (( $(cat "$WORK/otlp.spans" 2>/dev/null || echo 0) >= $1 )) && return 0; sleep 0.1
  done
  echo "the collector sink has $(cat "$WORK/otlp.spans" 2>/dev/null || echo 0) spans, not $1" >&2; return 1
}

valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" ${CALLGRIND_ARGS:-} \
  "$KEYGATE_BIN" serve --policy "$POLICY_FILE" --workers 1 --log-format json \
  --listen "127.0.0.1:$KG_PORT" --admin-listen "127.0.0.1:$KG_ADMIN_PORT" \
  --provider-url "openai=$scheme://127.0.0.1:$MOCK_PORT/v1" "${upstream_args[@]}" "${store_args[@]}" "${otlp_args[@]}" \
  >"$WORK/keygate.log" 2>"$WORK/valgrind.log" &
KG_PID=$!
PIDS+=("$KG_PID")
wait_http "http://127.0.0.1:$KG_ADMIN_PORT/readyz"

stream_field=""
stream_args=()
if [[ "$STREAM" == 1 ]]; then stream_field='"stream":true,'; stream_args=(--stream); fi
case "$CLIENT" in
  chat) client_path=/v1/chat/completions; limit_field="" ;;
  messages) client_path=/v1/messages; limit_field='"max_tokens":1024,' ;;
  *) echo "CLIENT must be chat or messages, not $CLIENT" >&2; exit 2 ;;
esac
printf '{"model":"gpt-4o",%s%s"messages":[{"role":"user","content":"Benchmark round trip: please echo this sentence back in small streamed chunks, thank you very much."}]}' "$stream_field" "$limit_field" >"$WORK/chat.json"
load() { # about N requests over CONNECTIONS connections in 2 s; prints how many succeeded
  "$LOAD_BIN" --url "http://127.0.0.1:$KG_PORT$client_path" --rate "$(( $1 / 2 ))" "${stream_args[@]}" \
    --duration 2 --warmup 0 --connections "$CONNECTIONS" --timeout-ms 60000 --body-file "$WORK/chat.json" \
    -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" | jq -r .ok
}
# One request first, outside the count: a policy or token mistake fails here instead of as 401s.
status="$(curl -s -o "$WORK/check.json" -w '%{http_code}' --max-time 60 "http://127.0.0.1:$KG_PORT$client_path" \
  -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" --data-binary "@$WORK/chat.json")"
[[ "$status" == 200 ]] || { echo "keygate answered $status: $(cat "$WORK/check.json")" >&2; exit 1; }
warm="$(load "$WARMUP")"
wait_spans "$(( (1 + warm) * 2 ))"
sleep "$SETTLE"
callgrind_control -z "$KG_PID" >/dev/null
ok="$(load "$REQUESTS")"
wait_spans "$(( (1 + warm + ok) * 2 ))"
sleep "$SETTLE"
callgrind_control -d "$KG_PID" >/dev/null
sleep 1
total="$(cat "$WORK"/callgrind.out* | awk '/^summary:/ {s += $2} END {print s}')"
[[ -n "${KEEP:-}" ]] && cp "$WORK"/callgrind.out* "$KEEP"/
extra=""
[[ "$POLICY" != seed || "$REDIS" == 1 ]] && extra=", policy $POLICY, store $([[ "$REDIS" == 1 ]] && echo redis || echo memory)"
[[ "$STREAM" == 1 ]] && extra="$extra, streamed ($CHUNKS chunks), usage $USAGE"
[[ "$CLIENT" != chat ]] && extra="$extra, $CLIENT client translated to chat completions"
[[ "$REDACT" == 1 ]] && extra="$extra, answers redacted"
[[ "$OTLP" == 1 ]] && extra="$extra, traces exported ($(cat "$WORK/otlp.spans") spans received)"
echo "instructions per request: $(( total / ok )) ($ok requests, leg $LEG$extra)"
if [[ "$REDIS" == 1 ]]; then # the counters keygate wrote, to show the store was used
  echo "redis keys: $(redis-cli -p "$REDIS_PORT" --scan | tr '\n' ' ')" >&2
fi
if [[ -n "${CALLGRIND_ARGS:-}" ]]; then # per thread (with --separate-threads=yes)
  for f in "$WORK"/callgrind.out*; do awk -v f="${f##*/}" -v ok="$ok" '/^summary:/ {print f": "int($2 / ok)" per request"}' "$f"; done
fi
