-- Keygate budgets: settle a reservation (the memory store's `settle_at` does the same).
-- KEYS[i]: counter i.  ARGV[1..n]: deltas (within +-2^50)  ARGV[n+1..2n]: expiries (Unix ms).
-- A counter never goes below 0: one that reaches 0 is deleted (absent reads as 0), any other keeps
-- its window's expiry.
local n = #KEYS
for i = 1, n do
  if tonumber(ARGV[i]) ~= 0 then
    if redis.call('INCRBY', KEYS[i], ARGV[i]) > 0 then
      redis.call('PEXPIREAT', KEYS[i], ARGV[n + i])
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 0
