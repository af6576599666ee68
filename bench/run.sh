#!/usr/bin/env bash
# Keygate load benchmark (issue 7 part 4).
#
# In one run, measures the Rust mock provider (keygate-mock) directly, behind nginx (proxy_pass),
# behind Keygate running the seed's full policy (bench/seed-full.yml: Bearer auth against a
# vault secret, a rate limit that never trips, ai-gateway with a server-side key), and behind a
# second Keygate with an empty policy and --upstream (keygate-proxy: the cost of the proxy hop
# alone, without policy or AI work; PROXY_LEG=0 skips it), and behind a third Keygate running the
# seed policy against a second mock that serves HTTPS (keygate-https: TLS and HTTP/2 to the
# provider, trusted with --upstream-ca-file; HTTPS_LEG=0 skips it). For each target:
#   - maximum rate: wrk (closed loop) -> requests/s, p50, p99, p99.9, and the target process's
#                   CPU time per request (user + system, children included: nginx workers)
#   - fixed rate:   keygate-load (open loop, evenly paced on a timerfd, wrk2-style latency)
#                   -> p50, p99, p99.9
#   - streams:      keygate-load --stream at a fixed rate -> time to first SSE data chunk
# plus Keygate's RSS (idle, after load, peak). Prints a Markdown report and keeps raw JSON lines.
#
# Needs: cargo, curl, jq, wrk, nginx (apt-get install -y nginx-light wrk jq).
# Every knob is an environment variable; see the defaults below. Example:
#   DURATION=20 RATE=5000 bench/run.sh
#   KEYGATE_BIN=target/release/keygate bench/run.sh
#   SKIP_KEYGATE=1 bench/run.sh          # mock and nginx only
#   KEYGATE_ARGS="--workers 1" bench/run.sh   # extra `keygate serve` flags for both Keygate legs
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"

DURATION="${DURATION:-10}"                # measured seconds per test
WARMUP="${WARMUP:-2}"                     # warm-up seconds (fixed-rate and wrk warm-up)
CONNECTIONS="${CONNECTIONS:-16}"          # connections for max and fixed rate
WRK_THREADS="${WRK_THREADS:-1}"
RATE="${RATE:-2000}"                      # fixed request rate (req/s)
STREAM_RATE="${STREAM_RATE:-200}"         # fixed stream rate (streams/s)
STREAM_CONNECTIONS="${STREAM_CONNECTIONS:-64}"
CHUNKS="${CHUNKS:-20}"                    # content chunks per streamed reply
CHUNK_DELAY_MS="${CHUNK_DELAY_MS:-5}"     # pause before each content chunk
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
# The mock runs on one thread: on two shared cores a second mock thread only adds wake-ups
# (measured 2026-11-27: 12-13 instead of 17-18 us of mock CPU per request behind Keygate,
# 9-11 instead of 11-13 behind nginx), and the mock is the harness, not what is measured.
MOCK_THREADS="${MOCK_THREADS:-1}"
# nginx writes an access-log line per request, as Keygate does (same fields, JSON, to a file,
# buffered as a production nginx would be). NGINX_ACCESS_LOG=0 turns it off (runs before
# 2026-11-27 17:50 measured nginx that way, doing less work per request than Keygate).
NGINX_ACCESS_LOG="${NGINX_ACCESS_LOG:-1}"
MOCK_PORT="${MOCK_PORT:-18181}"
NGINX_PORT="${NGINX_PORT:-18182}"
KG_PORT="${KG_PORT:-18183}"
KG_ADMIN_PORT="${KG_ADMIN_PORT:-18184}"
KG_PROXY_PORT="${KG_PROXY_PORT:-18185}"
KG_PROXY_ADMIN_PORT="${KG_PROXY_ADMIN_PORT:-18186}"
PROXY_LEG="${PROXY_LEG:-1}"
HTTPS_LEG="${HTTPS_LEG:-1}"
MOCK_TLS_PORT="${MOCK_TLS_PORT:-18187}"
SKIP_KEYGATE="${SKIP_KEYGATE:-0}"
read -r -a KEYGATE_ARGS <<<"${KEYGATE_ARGS:-}"   # extra `keygate serve` flags (both Keygate legs)
SERVER_KEY="sk-bench-server-key-0123456789"   # the provider key Keygate holds in its vault

WORK="$(mktemp -d /tmp/keygate-bench.XXXXXX)"
OUT="${OUT:-$WORK/results.md}"
JSONL="$WORK/results.jsonl"
PIDS=()

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() { # SIGTERM what this script started, SIGKILL whatever is still up 5 s later
  local pid i
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

for tool in cargo curl jq wrk nginx; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y nginx-light wrk jq)"
done

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$MOCK_PORT" "$NGINX_PORT" "$KG_PORT" "$KG_ADMIN_PORT" "$KG_PROXY_PORT" "$KG_PROXY_ADMIN_PORT" "$MOCK_TLS_PORT"; do
  port_free "$port" || die "port $port is in use; set MOCK_PORT/NGINX_PORT/KG_PORT/KG_ADMIN_PORT/KG_PROXY_PORT/KG_PROXY_ADMIN_PORT/MOCK_TLS_PORT"
done

wait_http() { # URL [seconds]
  local i
  for ((i = 0; i < ${2:-15} * 20; i++)); do
    curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------- build
log "building keygate-mock (release)"
(cd "$ROOT" && cargo build --release -q -p keygate-mock) || die "cargo build -p keygate-mock failed"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MOCK_BIN="$TARGET_DIR/release/keygate-mock"
LOAD_BIN="$TARGET_DIR/release/keygate-load"

KEYGATE_SKIP_REASON=""
if [[ "$SKIP_KEYGATE" == 1 ]]; then
  KEYGATE_SKIP_REASON="skipped (SKIP_KEYGATE=1)"
elif [[ -z "${KEYGATE_BIN:-}" ]]; then
  log "building keygate (release)"
  if (cd "$ROOT" && cargo build --release -q -p keygate) >"$WORK/keygate-build.log" 2>&1; then
    KEYGATE_BIN="$TARGET_DIR/release/keygate"
  else
    KEYGATE_SKIP_REASON="cargo build --release -p keygate failed (see $WORK/keygate-build.log)"
  fi
fi

# ---------------------------------------------------------------- request bodies
PROMPT="Benchmark round trip: please echo this sentence back in small streamed chunks, thank you very much."
jq -nc --arg p "$PROMPT" '{model: "gpt-4o", messages: [{role: "user", content: $p}]}' >"$WORK/chat.json"
jq -nc --arg p "$PROMPT" '{model: "gpt-4o", stream: true, stream_options: {include_usage: true},
  messages: [{role: "user", content: $p}]}' >"$WORK/stream.json"

# ---------------------------------------------------------------- mock
log "starting keygate-mock on 127.0.0.1:$MOCK_PORT (chunks $CHUNKS, chunk delay ${CHUNK_DELAY_MS} ms)"
"$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --threads "$MOCK_THREADS" \
  --chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS" \
  --max-records 1000 >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_http "http://127.0.0.1:$MOCK_PORT/v1/models" || die "keygate-mock did not start (see $WORK/mock.log)"

# ---------------------------------------------------------------- nginx
mkdir -p "$WORK/nginx/tmp"
NGINX_LOG="access_log off;"
if [[ "$NGINX_ACCESS_LOG" == 1 ]]; then
  NGINX_LOG="log_format keygate escape=json '{\"timestamp\":\"\$time_iso8601\",\"request_id\":\"\$request_id\",\"client_ip\":\"\$remote_addr\",\"method\":\"\$request_method\",\"path\":\"\$uri\",\"status\":\$status,\"duration_ms\":\$request_time}';
  access_log $WORK/nginx/access.log keygate buffer=64k flush=1s;"
fi
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  $NGINX_LOG
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  upstream mock {
    server 127.0.0.1:$MOCK_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    tcp_nodelay on;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
log "starting nginx on 127.0.0.1:$NGINX_PORT (workers: $NGINX_WORKERS)"
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/v1/models" || die "nginx did not start (see $WORK/nginx/error.log)"

# ---------------------------------------------------------------- keygate
KG_PID=""
TOKEN=""
start_keygate() {
  export KEYGATE_DATA_DIR="$WORK/keygate-data"
  local kg="$KEYGATE_BIN"
  TOKEN="$("$kg" token generate)" || return 1
  "$kg" api vaults create --name gateway-auth >/dev/null || return 1
  printf '%s' "$TOKEN" | "$kg" api secrets create --name access-token --value - --vault-name gateway-auth >/dev/null || return 1
  "$kg" api vaults create --name openai >/dev/null || return 1
  printf '%s' "$SERVER_KEY" | "$kg" api secrets create --name api-key --value - --vault-name openai >/dev/null || return 1
  "$kg" policy check "$BENCH/seed-full.yml" >/dev/null || return 1
  serve_seed "$KG_PORT" "$KG_ADMIN_PORT" "http://127.0.0.1:$MOCK_PORT/v1" "$WORK/keygate.log"
  KG_PID="$SERVED_PID"
  wait_http "http://127.0.0.1:$KG_ADMIN_PORT/readyz" 20
}

SERVED_PID=""
serve_seed() { # PORT ADMIN_PORT OPENAI_URL LOG [FLAGS...]: Keygate on the seed policy (vaults made by start_keygate)
  "$KEYGATE_BIN" serve --policy "$BENCH/seed-full.yml" --listen "127.0.0.1:$1" \
    --admin-listen "127.0.0.1:$2" --data-dir "$KEYGATE_DATA_DIR" \
    --provider-url "openai=$3" "${@:5}" "${KEYGATE_ARGS[@]}" >"$4" 2>&1 &
  SERVED_PID=$!
  PIDS+=("$SERVED_PID")
}

KG_HTTPS_PID=""
start_keygate_https() { # the seed policy again, its provider a mock behind TLS (HTTP/2 by ALPN)
  "$MOCK_BIN" --write-test-certs "$WORK/certs" || return 1
  "$MOCK_BIN" --listen "127.0.0.1:$MOCK_TLS_PORT" --threads "$MOCK_THREADS" \
    --chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS" --max-records 1000 \
    --tls-cert "$WORK/certs/server.crt" --tls-key "$WORK/certs/server.key" >"$WORK/mock-tls.log" 2>&1 &
  MOCK_TLS_PID=$!
  PIDS+=("$MOCK_TLS_PID")
  serve_seed "$KG_PORT" "$KG_ADMIN_PORT" "https://127.0.0.1:$MOCK_TLS_PORT/v1" "$WORK/keygate-https.log" \
    --upstream-ca-file "$WORK/certs/ca.pem"
  KG_HTTPS_PID="$SERVED_PID"
  wait_http "http://127.0.0.1:$KG_ADMIN_PORT/readyz" 20
}

KG_PROXY_PID=""
start_keygate_proxy() { # the proxy hop alone: empty policy, --upstream to the mock
  printf 'on_http_request: []\n' >"$WORK/proxy-only.yml"
  "$KEYGATE_BIN" serve --policy "$WORK/proxy-only.yml" --listen "127.0.0.1:$KG_PROXY_PORT" \
    --admin-listen "127.0.0.1:$KG_PROXY_ADMIN_PORT" --data-dir "$KEYGATE_DATA_DIR" \
    --upstream "http://127.0.0.1:$MOCK_PORT" "${KEYGATE_ARGS[@]}" >"$WORK/keygate-proxy.log" 2>&1 &
  KG_PROXY_PID=$!
  PIDS+=("$KG_PROXY_PID")
  wait_http "http://127.0.0.1:$KG_PROXY_ADMIN_PORT/readyz" 20
}

if [[ -z "$KEYGATE_SKIP_REASON" ]]; then
  log "starting keygate on 127.0.0.1:$KG_PORT with bench/seed-full.yml"
  if ! start_keygate >>"$WORK/keygate-setup.log" 2>&1; then
    KEYGATE_SKIP_REASON="keygate did not start (see $WORK/keygate-setup.log and $WORK/keygate.log)"
  fi
fi

# ---------------------------------------------------------------- sanity checks
check_echo() { # NAME URL [AUTH]
  local body
  body="$(curl -fsS --max-time 10 "$2" -H 'content-type: application/json' ${3:+-H "authorization: Bearer $3"} \
    --data-binary "@$WORK/chat.json")" || { log "$1: request failed"; return 1; }
  [[ "$(jq -r '.choices[0].message.content' <<<"$body")" == "$PROMPT" ]] || { log "$1: no echo: $body"; return 1; }
}
check_echo mock "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" || die "mock sanity check failed"
check_echo nginx "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" || die "nginx sanity check failed"
if [[ -z "$KEYGATE_SKIP_REASON" ]]; then
  curl -fsS -X DELETE "http://127.0.0.1:$MOCK_PORT/_mock/requests" >/dev/null
  status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$KG_PORT/v1/chat/completions" \
    -H 'content-type: application/json' --data-binary "@$WORK/chat.json")"
  upstream_auth=""
  if check_echo keygate "http://127.0.0.1:$KG_PORT/v1/chat/completions" "$TOKEN"; then
    upstream_auth="$(curl -fsS --max-time 5 "http://127.0.0.1:$MOCK_PORT/_mock/requests" | jq -r '.[-1].headers[] | select(.[0] == "authorization") | .[1]')"
  fi
  if [[ "$status" != 401 ]]; then
    KEYGATE_SKIP_REASON="keygate answered $status (not 401) to a request without a token"
  elif [[ "$upstream_auth" != "Bearer $SERVER_KEY" ]]; then
    KEYGATE_SKIP_REASON="keygate did not proxy with the vault's server-side key (see $WORK/keygate.log)"
  fi
fi
[[ -n "$KEYGATE_SKIP_REASON" ]] && log "keygate leg: $KEYGATE_SKIP_REASON"

# ---------------------------------------------------------------- load
cpu_ticks() { # PID... -> user+system clock ticks of these processes and their children
  local total=0 pid ticks
  for pid in "$@" $(ps -o pid= --ppid "$*" 2>/dev/null); do
    ticks="$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}

run_wrk() { # LABEL URL AUTH PID (the target process, for its CPU time per request)
  local headers="" before after line
  [[ -n "$3" ]] && headers="Authorization: Bearer $3"
  BENCH_BODY_FILE="$WORK/chat.json" BENCH_HEADERS="$headers" BENCH_LABEL="$1" \
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$BENCH/wrk-report.lua" "$2" >/dev/null 2>&1 || true
  before="$(cpu_ticks "$4")"
  line="$(BENCH_BODY_FILE="$WORK/chat.json" BENCH_HEADERS="$headers" BENCH_LABEL="$1" \
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$BENCH/wrk-report.lua" "$2" 2>&1 \
    | grep '^{"label"' || true)"
  after="$(cpu_ticks "$4")"
  if [[ -z "$line" ]]; then # wrk could not connect at all: record the failure, keep going
    log "$1: wrk failed"
    line="$(jq -nc --arg l "$1" '{label: $l, mode: "max", target_rps: null, rps: 0, ok: 0, non_2xx: 0,
      errors: "wrk failed", duration_s: 0, latency: null, ttft: null}')"
  fi
  jq -c --argjson ticks "$((after - before))" --argjson hz "$(getconf CLK_TCK)" \
    '. + {cpu_us_per_req: (if .ok > 0 then ($ticks / $hz * 1e6 / .ok * 10 | round / 10) else null end)}' \
    <<<"$line" >>"$JSONL"
}

run_load() { # LABEL URL AUTH RATE CONNECTIONS BODY [--stream]
  local auth=()
  [[ -n "$3" ]] && auth=(--header "authorization: Bearer $3")
  "$LOAD_BIN" --url "$2" --rate "$4" --connections "$5" --duration "$DURATION" --warmup "$WARMUP" \
    --body-file "$6" --header 'content-type: application/json' "${auth[@]}" --label "$1" "${@:7}" >>"$JSONL" \
    || log "$1: keygate-load failed"
}

bench_target() { # NAME BASE_URL AUTH PID
  local url="$2/v1/chat/completions"
  kill -0 "$4" 2>/dev/null || log "$1: the process under test (pid $4) is not running"
  log "$1: streams at $STREAM_RATE/s"
  run_load "$1 stream" "$url" "$3" "$STREAM_RATE" "$STREAM_CONNECTIONS" "$WORK/stream.json" --stream
  log "$1: fixed rate $RATE/s"
  run_load "$1 fixed" "$url" "$3" "$RATE" "$CONNECTIONS" "$WORK/chat.json"
  log "$1: maximum rate (wrk -t$WRK_THREADS -c$CONNECTIONS)"
  run_wrk "$1 max" "$url" "$3" "$4"
}

: >"$JSONL"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
bench_target mock "http://127.0.0.1:$MOCK_PORT" "" "$MOCK_PID"
bench_target nginx "http://127.0.0.1:$NGINX_PORT" "" "$NGINX_PID"
RSS_IDLE="" RSS_AFTER="" RSS_PEAK=""
if [[ -z "$KEYGATE_SKIP_REASON" ]]; then
  RSS_IDLE="$(rss_kib "$KG_PID" VmRSS)"
  bench_target keygate "http://127.0.0.1:$KG_PORT" "$TOKEN" "$KG_PID"
  RSS_AFTER="$(rss_kib "$KG_PID" VmRSS)"
  RSS_PEAK="$(rss_kib "$KG_PID" VmHWM)"
  kill -0 "$KG_PID" 2>/dev/null \
    || KEYGATE_SKIP_REASON="keygate exited during the run, its results are void (see $WORK/keygate.log)"
  if [[ "$PROXY_LEG" == 1 ]]; then
    # Started after the seed leg, so the two gateways never share the machine under load.
    kill "$KG_PID" 2>/dev/null || true
    log "starting keygate-proxy on 127.0.0.1:$KG_PROXY_PORT (empty policy, --upstream mock)"
    if start_keygate_proxy >>"$WORK/keygate-setup.log" 2>&1 \
      && check_echo keygate-proxy "http://127.0.0.1:$KG_PROXY_PORT/v1/chat/completions"; then
      bench_target keygate-proxy "http://127.0.0.1:$KG_PROXY_PORT" "" "$KG_PROXY_PID"
    else
      log "keygate-proxy leg skipped (see $WORK/keygate-proxy.log)"
    fi
    kill "$KG_PROXY_PID" 2>/dev/null || true
  fi
  if [[ "$HTTPS_LEG" == 1 ]]; then
    # On the seed leg's ports, once that gateway is gone.
    kill "$KG_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do port_free "$KG_PORT" && port_free "$KG_ADMIN_PORT" && break; sleep 0.1; done
    log "starting keygate-https on 127.0.0.1:$KG_PORT (seed policy, provider https://127.0.0.1:$MOCK_TLS_PORT)"
    if start_keygate_https >>"$WORK/keygate-setup.log" 2>&1 \
      && check_echo keygate-https "http://127.0.0.1:$KG_PORT/v1/chat/completions" "$TOKEN"; then
      bench_target keygate-https "http://127.0.0.1:$KG_PORT" "$TOKEN" "$KG_HTTPS_PID"
    else
      log "keygate-https leg skipped (see $WORK/keygate-https.log and $WORK/mock-tls.log)"
    fi
  fi
fi

# ---------------------------------------------------------------- report
{
  echo "# Keygate benchmark run, $STARTED"
  echo
  echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r);" \
    "load average before the run: $LOAD_BEFORE."
  echo "Tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), keygate-load."
  echo "Settings: ${DURATION}s measured after ${WARMUP}s warm-up; max rate = wrk -t$WRK_THREADS -c$CONNECTIONS;" \
    "fixed = $RATE req/s over $CONNECTIONS connections; streams = $STREAM_RATE/s over $STREAM_CONNECTIONS" \
    "connections, $CHUNKS chunks, ${CHUNK_DELAY_MS} ms apart; nginx workers: $NGINX_WORKERS;" \
    "extra keygate flags: ${KEYGATE_ARGS[*]:-none}."
  echo
  echo "| target | test | req/s | p50 ms | p99 ms | p99.9 ms | max ms | TTFT p50 | TTFT p99 | TTFT p99.9 | non-2xx | errors | CPU µs/req |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r '[(.label | split(" ")[0]), (.label | split(" ")[1]) + (if .target_rps then " @\(.target_rps)/s" else "" end),
          .rps, (.latency.p50_ms // "-"), (.latency.p99_ms // "-"), (.latency.p999_ms // "-"),
          (.latency.max_ms // "-"), (.ttft.p50_ms // "-"), (.ttft.p99_ms // "-"), (.ttft.p999_ms // "-"),
          .non_2xx, .errors, (.cpu_us_per_req // "-")] | "| " + (map(tostring) | join(" | ")) + " |"' "$JSONL"
  echo
  jq -rs 'def get(l): map(select(.label == l))[0];
    "nginx: max rate \(get("nginx max").rps / get("mock max").rps * 100 | floor)% of the mock direct;"
    + " added p50 at the fixed rate \((get("nginx fixed").latency.p50_ms - get("mock fixed").latency.p50_ms) * 1000 | round) us."' "$JSONL"
  if [[ -n "$KEYGATE_SKIP_REASON" ]]; then
    echo "Keygate: $KEYGATE_SKIP_REASON."
  else
    echo "Keygate RSS: ${RSS_IDLE} KiB idle, ${RSS_AFTER} KiB after the run, ${RSS_PEAK} KiB peak."
    jq -rs '
      def get(l): map(select(.label == l))[0];
      (get("keygate max").rps / get("mock max").rps) as $m
      | (get("keygate max").rps / get("nginx max").rps) as $n
      | (get("keygate fixed").latency.p50_ms - get("mock fixed").latency.p50_ms) as $a
      | (get("keygate stream").ttft.p50_ms - get("mock stream").ttft.p50_ms) as $t
      | "Ratios: Keygate max rate = \($m * 100 | floor)% of the mock direct, \($n * 100 | floor)% of nginx;"
        + " added p50 at the fixed rate \($a * 1000 | round) us; added TTFT p50 \($t * 1000 | round) us."' "$JSONL"
    jq -rs 'def get(l): map(select(.label == l))[0];
      if get("keygate-proxy max") == null then empty else
        "keygate-proxy (no policy): max rate \(get("keygate-proxy max").rps / get("nginx max").rps * 100 | floor)% of nginx;"
        + " added p50 at the fixed rate \((get("keygate-proxy fixed").latency.p50_ms - get("mock fixed").latency.p50_ms) * 1000 | round) us."
      end' "$JSONL"
    jq -rs 'def get(l): map(select(.label == l))[0];
      if get("keygate-https max") == null then empty else
        "keygate-https (seed policy, provider over TLS + h2): max rate \(get("keygate-https max").rps / get("keygate max").rps * 100 | floor)% of the plain leg;"
        + " CPU per request \(get("keygate-https max").cpu_us_per_req) us (plain \(get("keygate max").cpu_us_per_req) us);"
        + " added p50 at the fixed rate \((get("keygate-https fixed").latency.p50_ms - get("mock fixed").latency.p50_ms) * 1000 | round) us,"
        + " p99 \((get("keygate-https fixed").latency.p99_ms - get("mock fixed").latency.p99_ms) * 1000 | round) us (vs the plain mock direct)."
      end' "$JSONL"
  fi
  echo
  echo "Raw results: $JSONL; logs in $WORK."
} | tee "$OUT"
log "report written to $OUT"
