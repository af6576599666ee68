-- wrk script for bench/run.sh: POSTs the body in $BENCH_BODY_FILE with the headers in
-- $BENCH_HEADERS ("Name: value" lines) and prints one JSON line in keygate-load's report format.

local label = os.getenv("BENCH_LABEL") or ""

wrk.method = "POST"
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local ok = summary.requests - e.status
  local ms = function(p) return latency:percentile(p) / 1000 end
  io.write(string.format(
    '{"label":"%s","mode":"max","target_rps":null,"rps":%.1f,"ok":%d,"non_2xx":%d,"errors":%d,' ..
    '"duration_s":%.2f,"latency":{"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,' ..
    '"max_ms":%.3f},"ttft":null}\n',
    label, ok / seconds, ok, e.status, e.connect + e.read + e.write + e.timeout, seconds,
    ms(50), ms(90), ms(99), ms(99.9), latency.max / 1000))
end
