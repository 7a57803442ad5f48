"""The Lua scripts the Redis store runs: each one atomic step on the server.

Kept apart from :mod:`sesstool.stores.redis` because they are server-side code with
their own rules (a script may touch only the keys it is given; on Cluster, only keys
of one slot), read and reviewed on their own.
"""

from __future__ import annotations

# Replace the value only if it is still what was read; keep the remaining TTL.
COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', pttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""

# Unlink each key only if it holds the value that was read and was not refreshed
# since (its PTTL did not grow; -1 stays -1). ARGV holds value, pttl pairs.
DELETE_IF_UNCHANGED = """
local deleted = 0
for i, key in ipairs(KEYS) do
  local expected_pttl = tonumber(ARGV[2 * i])
  if redis.call('GET', key) == ARGV[2 * i - 1] then
    local pttl = redis.call('PTTL', key)
    local same = (expected_pttl < 0 and pttl == expected_pttl)
      or (expected_pttl >= 0 and pttl >= 0 and pttl <= expected_pttl)
    if same then
      redis.call('UNLINK', key)
      deleted = deleted + 1
    end
  end
end
return deleted
"""


# What both idle scripts share: their arguments (ARGV[1] the idle seconds a key must
# exceed; ARGV[2] '1' for keys without expiry only), and a loop over KEYS that reads
# each key's idle time before anything else touches the key (a GET would reset it;
# TYPE and PTTL do not). Under an LFU maxmemory-policy that read is an error, passed on.
_IDLE_LOOP = """
local min_idle = tonumber(ARGV[1])
local no_expiry_only = ARGV[2] == '1'
{setup}
for i, key in ipairs(KEYS) do
  local idle = redis.pcall('OBJECT', 'IDLETIME', key)
  if type(idle) == 'table' and idle.err then
    return redis.error_reply(idle.err)
  end
{body}
end
{result}
"""

# For keys idle for more than ARGV[1] seconds (and, with ARGV[2], without expiry):
# their PTTL, type and, when ARGV[3] is '1', value. Keys that do not qualify are not
# read, so their idle time stays as it was. Per key: idle (false when gone), pttl, and
# the value, or {type} for a key not read or of another type, or false.
FETCH_IDLE = _IDLE_LOOP.format(
    setup="""local with_values = ARGV[3] == '1'
local out = {}""",
    body="""  out[3 * i - 2] = idle or false
  out[3 * i - 1] = false
  out[3 * i] = false
  if idle and idle > min_idle then
    local pttl = redis.call('PTTL', key)
    if pttl ~= -2 and (not no_expiry_only or pttl == -1) then
      local kind = redis.call('TYPE', key).ok
      out[3 * i - 1] = pttl
      if with_values and kind == 'string' then
        out[3 * i] = redis.call('GET', key)
      else
        out[3 * i] = {kind}
      end
    end
  end""",
    result="return out",
)

# Unlink each string key still idle for more than ARGV[1] seconds (and, with ARGV[2],
# without expiry): selection and deletion in one atomic step, nothing read.
# Returns {deleted, {type of each idle key that is not a string}}.
DELETE_IDLE = _IDLE_LOOP.format(
    setup="""local deleted = 0
local others = {}""",
    body="""  if idle and idle > min_idle and (not no_expiry_only or redis.call('PTTL', key) == -1) then
    local kind = redis.call('TYPE', key).ok
    if kind == 'string' then
      redis.call('UNLINK', key)
      deleted = deleted + 1
    else
      others[#others + 1] = kind
    end
  end""",
    result="return {deleted, others}",
)
