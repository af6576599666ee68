-- Keygate sliding-log rate limit: one atomic decision. A port of window.rs (Log::check).
-- KEYS[1]: list of "expires_ms:count" entries, oldest first.  KEYS[2]: their total.
-- ARGV[1]: capacity  ARGV[2]: window_ms  ARGV[3]: granularity_ms  ARGV[4]: key ttl_ms
-- Returns {limited (0|1), remaining, wait_ms}. Time is the Redis server's, so every gateway agrees.
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: allow writes after TIME; a no-op since 5
end
local log, total_key = KEYS[1], KEYS[2]
local capacity, window, g, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function parse(entry)
  local e, c = string.match(entry, '^(%d+):(%d+)$')
  return tonumber(e), tonumber(c)
end

local stored = redis.call('GET', total_key)
local total = tonumber(stored)
if not total then
  -- The total is missing (evicted, or never written): rebuild it from the log.
  total = 0
  for _, entry in ipairs(redis.call('LRANGE', log, 0, -1)) do
    local _, c = parse(entry)
    total = total + c
  end
end

-- Drop entries that left the window.
local head = redis.call('LINDEX', log, 0)
while head do
  local e, c = parse(head)
  if e > now then break end
  redis.call('LPOP', log)
  total = total - c
  head = redis.call('LINDEX', log, 0)
end
if not head or total < 0 then total = 0 end

if total >= capacity then
  if stored and tonumber(stored) ~= total then
    redis.call('SET', total_key, total, 'PX', ttl)
  end
  -- Wait until enough of the oldest entries expire for the total to drop below capacity.
  local need = total - capacity + 1
  local freed = 0
  for _, entry in ipairs(redis.call('LRANGE', log, 0, need - 1)) do
    local e, c = parse(entry)
    freed = freed + c
    if freed >= need then return {1, 0, e - now} end
  end
  return {1, 0, window}
end

local expires = (math.floor(now / g) + 1) * g - 1 + window
local tail = redis.call('LINDEX', log, -1)
local te, tc
if tail then te, tc = parse(tail) end
if te and te >= expires then
  redis.call('LSET', log, -1, string.format('%d:%d', te, tc + 1))
else
  redis.call('RPUSH', log, string.format('%d:%d', expires, 1))
end
total = total + 1
redis.call('SET', total_key, total, 'PX', ttl)
redis.call('PEXPIRE', log, ttl)
return {0, capacity - total, 0}
