-- Keygate budgets: one atomic reservation, every counter charged or none. A port of `units` in
-- budget/mod.rs: keep the two in step.
-- KEYS[i]: counter i (an integer string; absent reads as 0).
-- ARGV[1..n]: limits  ARGV[n+1..2n]: expiries (Unix ms)  ARGV[2n+1..3n]: bases  ARGV[3n+1..4n]: per-unit
-- draws  ARGV[4n+1]: min units  ARGV[4n+2]: max units (at least min).
-- The caller clamps every number to 2^50, so this arithmetic on doubles is exact (see `units`).
-- Returns {1, units} when granted, else {0, index of the first counter without room (from 0)}.
local n = #KEYS
local min, x = tonumber(ARGV[4 * n + 1]), tonumber(ARGV[4 * n + 2])
local base, per = {}, {}
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or 0)
  local limit = tonumber(ARGV[i])
  base[i], per[i] = tonumber(ARGV[2 * n + i]), tonumber(ARGV[3 * n + i])
  if used + base[i] > limit then return {0, i - 1} end
  if per[i] > 0 then
    local room = math.floor((limit - used - base[i]) / per[i])
    if room < min then return {0, i - 1} end
    if room < x then x = room end
  end
end
for i = 1, n do
  local charge = base[i] + x * per[i]
  if charge > 0 then
    redis.call('INCRBY', KEYS[i], charge)
    -- Always set: the window's end comes with the id, so every caller gives the same one.
    redis.call('PEXPIREAT', KEYS[i], ARGV[n + i])
  end
end
return {1, x}
