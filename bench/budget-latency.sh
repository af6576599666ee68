#!/usr/bin/env bash
# Latency that access keys with a token budget add, in memory and with Redis (issue: "with Redis,
# report the added p50/p99").
#
# Starts keygate-mock, then for each leg in LEGS a fresh Keygate on its own, and sends RATE chat
# completions per second for DURATION seconds (after WARMUP seconds) with keygate-load (open loop,
# evenly paced, wrk2-style latency from the due time, as the "fixed" test of bench/run.sh):
#   seed        bench/seed-full.yml, Bearer token checked against a vault secret (the baseline)
#   keys        bench/seed-keys.yml (`access_keys: required`, rate limit by access_key.id), with the
#               token of an access key made with `--token-limit 1000000000000/day`: every request
#               authenticates the key and reserves, then settles, its token budget, in memory
#   keys-redis  the same with `--redis`: rate limit and budget in a throwaway redis-server
#   seed-redis  the seed policy with `--redis` (its rate limit in Redis), to tell the two apart
# The legs run ROUNDS times, alternating, so that a change in the machine's load shows as spread
# between rounds rather than as a difference between legs. Prints a Markdown table (p50, p99,
# p99.9, max, non-2xx) and keeps the raw keygate-load JSON lines.
#
#   bench/budget-latency.sh                                   # builds release binaries first
#   KEYGATE_BIN=... MOCK_BIN=... LOAD_BIN=... bench/budget-latency.sh
#   RATE=2000 DURATION=20 ROUNDS=3 LEGS="keys keys-redis" bench/budget-latency.sh
#
# Needs curl, jq, redis-server and redis-cli (apt-get install redis-server) for the Redis legs.
# The machine is shared (see bench/RESULTS.md): compare legs within one run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE="${RATE:-1000}"                   # requests per second
DURATION="${DURATION:-10}"             # measured seconds per leg
WARMUP="${WARMUP:-2}"                  # warm-up seconds per leg (sent, not counted)
CONNECTIONS="${CONNECTIONS:-16}"
ROUNDS="${ROUNDS:-2}"
LEGS="${LEGS:-seed keys keys-redis}"
read -r -a KEYGATE_ARGS <<<"${KEYGATE_ARGS:-}"   # extra `keygate serve` flags
MOCK_PORT="${MOCK_PORT:-18381}"
KG_PORT="${KG_PORT:-18383}"
KG_ADMIN_PORT="${KG_ADMIN_PORT:-18384}"
REDIS_PORT="${REDIS_PORT:-18385}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d /tmp/keygate-budget-latency.XXXXXX)"
JSONL="$WORK/results.jsonl"
PIDS=()
REDIS_STARTED=0
KG_PID=""

log() { printf '[budget-latency] %s\n' "$*" >&2; }
stop_keygate() {
  [[ -n "$KG_PID" ]] || return 0
  kill "$KG_PID" 2>/dev/null || true
  wait "$KG_PID" 2>/dev/null || true
  KG_PID=""
}
cleanup() {
  stop_keygate
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ "$REDIS_STARTED" == 1 ]] && { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
  if [[ -n "${KEEP_WORK:-}" ]]; then log "raw results and logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [[ -z "${KEYGATE_BIN:-}" || -z "${MOCK_BIN:-}" || -z "${LOAD_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p keygate -p keygate-mock)
  KEYGATE_BIN="${KEYGATE_BIN:-$TARGET_DIR/release/keygate}"
  MOCK_BIN="${MOCK_BIN:-$TARGET_DIR/release/keygate-mock}"
  LOAD_BIN="${LOAD_BIN:-$TARGET_DIR/release/keygate-load}"
fi

wait_http() { # URL: until it answers (any status), at most 20 s
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  log "no answer from $1"; return 1
}

"$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --threads 1 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/v1/models"

# One data dir for every leg: the seed's vault secrets and one access key with a budget that
# never runs out (a UTC day's window; 10^12 tokens).
export KEYGATE_DATA_DIR="$WORK/data"
SEED_TOKEN="$("$KEYGATE_BIN" token generate)"
"$KEYGATE_BIN" api vaults create --name gateway-auth >/dev/null
printf '%s' "$SEED_TOKEN" | "$KEYGATE_BIN" api secrets create --name access-token --value - --vault-name gateway-auth >/dev/null
"$KEYGATE_BIN" api vaults create --name openai >/dev/null
printf 'sk-bench-server-key-0123456789' | "$KEYGATE_BIN" api secrets create --name api-key --value - --vault-name openai >/dev/null
KEY_TOKEN="$("$KEYGATE_BIN" api ai-gateway-api-keys create --description bench \
  --token-limit 1000000000000/day | jq -r .token)"
[[ "$KEY_TOKEN" == kg-* ]] || { log "no access-key token in the create output"; exit 1; }

if [[ " $LEGS " == *-redis* ]]; then
  ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || { log "port $REDIS_PORT already answers redis"; exit 1; }
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
  REDIS_STARTED=1
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

printf '{"model":"gpt-4o","messages":[{"role":"user","content":"Benchmark round trip: please echo this sentence back in small streamed chunks, thank you very much."}]}' >"$WORK/chat.json"

run_leg() { # LEG ROUND
  local policy token store_args=()
  case "$1" in
    seed | seed-redis) policy="$ROOT/bench/seed-full.yml" token="$SEED_TOKEN" ;;
    keys | keys-redis) policy="$ROOT/bench/seed-keys.yml" token="$KEY_TOKEN" ;;
    *) log "unknown leg $1"; exit 2 ;;
  esac
  [[ "$1" == *-redis ]] && store_args=(--redis "redis://127.0.0.1:$REDIS_PORT")
  "$KEYGATE_BIN" serve --policy "$policy" --log-format json \
    --listen "127.0.0.1:$KG_PORT" --admin-listen "127.0.0.1:$KG_ADMIN_PORT" \
    --provider-url "openai=http://127.0.0.1:$MOCK_PORT/v1" "${store_args[@]}" "${KEYGATE_ARGS[@]}" \
    >"$WORK/keygate-$1-$2.log" 2>&1 &
  KG_PID=$!
  wait_http "http://127.0.0.1:$KG_ADMIN_PORT/readyz"
  local status
  status="$(curl -s -o "$WORK/check.json" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$KG_PORT/v1/chat/completions" \
    -H 'content-type: application/json' -H "authorization: Bearer $token" --data-binary "@$WORK/chat.json")"
  [[ "$status" == 200 ]] || { log "$1: keygate answered $status: $(cat "$WORK/check.json")"; exit 1; }
  log "$1 (round $2): $RATE req/s for ${DURATION}s after ${WARMUP}s, load average $(cut -d' ' -f1 /proc/loadavg)"
  "$LOAD_BIN" --url "http://127.0.0.1:$KG_PORT/v1/chat/completions" --rate "$RATE" --duration "$DURATION" \
    --warmup "$WARMUP" --connections "$CONNECTIONS" --body-file "$WORK/chat.json" \
    -H 'content-type: application/json' -H "authorization: Bearer $token" --label "$1" \
    | jq -c --argjson round "$2" '. + {round: $round}' >>"$JSONL"
  stop_keygate
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$KG_ADMIN_PORT/readyz" || break; sleep 0.1; done
}

: >"$JSONL"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
for ((round = 1; round <= ROUNDS; round++)); do
  for leg in $LEGS; do run_leg "$leg" "$round"; done
done

echo "Access keys and budgets, fixed rate: $RATE req/s over $CONNECTIONS connections, ${DURATION}s after ${WARMUP}s," \
  "started $STARTED; extra keygate flags: ${KEYGATE_ARGS[*]:-none}."
echo
echo "| leg | round | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
jq -r '[.label, .round, .rps, .latency.p50_ms, .latency.p99_ms, .latency.p999_ms, .latency.max_ms, .non_2xx, .errors]
  | "| " + (map(tostring) | join(" | ")) + " |"' "$JSONL"
[[ -n "${KEEP_WORK:-}" ]] && echo && echo "Raw results: $JSONL"
exit 0
