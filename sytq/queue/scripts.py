"""Lua scripts of the queue, written for asynq's data layout.

Every script that moves a task out of ``active`` first removes it from the active list and
does nothing else when it was not there: a worker whose lease was recovered by another server
cannot overwrite the newer state. Task hash keys are built from a per-queue prefix passed in
ARGV (as asynq does); they share the queue's hash tag, so a queue stays in one cluster slot.
"""

from __future__ import annotations

# Many tasks of one queue in one call. KEYS: pending, scheduled. ARGV: task key prefix, then per task
# id, msg, placement ("p<pending_since_ns>" or "s<process_at_s>", plus "|<ttl>|<unique key>" when unique).
# Returns one code per task: 1 enqueued, 0 id exists, -1 unique lock held.
ENQUEUE_BATCH = """
local out = {}
local pending = {}
for i = 2, #ARGV, 3 do
  local id, key, place = ARGV[i], ARGV[1] .. ARGV[i], ARGV[i+2]
  local mode, score, ukey, ttl = string.sub(place, 1, 1), nil, nil, nil
  local bar = string.find(place, "|", 2, true)
  if bar then
    score = string.sub(place, 2, bar - 1)
    local bar2 = string.find(place, "|", bar + 1, true)
    ttl = string.sub(place, bar + 1, bar2 - 1)
    ukey = string.sub(place, bar2 + 1)
  else
    score = string.sub(place, 2)
  end
  if redis.call("EXISTS", key) == 1 then
    out[#out + 1] = 0
  elseif ukey and not redis.call("SET", ukey, id, "NX", "EX", ttl) then
    out[#out + 1] = -1
  else
    local fields
    if mode == "p" then
      fields = {"msg", ARGV[i+1], "state", "pending", "pending_since", score}
      pending[#pending + 1] = id
    else
      fields = {"msg", ARGV[i+1], "state", "scheduled"}
      redis.call("ZADD", KEYS[2], score, id)
    end
    if ukey then
      fields[#fields + 1] = "unique_key"
      fields[#fields + 1] = ukey
    end
    redis.call("HSET", key, unpack(fields))
    out[#out + 1] = 1
  end
end
if #pending > 0 then redis.call("LPUSH", KEYS[1], unpack(pending)) end
return out
"""

# KEYS: per queue, in fetch order: pending, paused, active, lease.
# ARGV: max tasks, lease expiry (unix s), then one task-key prefix per queue.
# Returns a flat list: queue index, id, msg (false when the hash is gone), ...
DEQUEUE_BATCH = """
local want = tonumber(ARGV[1])
local out = {}
for q = 0, (#KEYS / 4) - 1 do
  if want <= 0 then break end
  local pending, paused, active, lease = KEYS[q*4+1], KEYS[q*4+2], KEYS[q*4+3], KEYS[q*4+4]
  if redis.call("EXISTS", paused) == 0 then
    local ids = redis.call("RPOP", pending, want)
    if ids then
      local prefix = ARGV[3 + q]
      local scored = {}
      redis.call("LPUSH", active, unpack(ids))
      for _, id in ipairs(ids) do
        local key = prefix .. id
        redis.call("HSET", key, "state", "active")
        redis.call("HDEL", key, "pending_since")
        scored[#scored + 1] = ARGV[2]
        scored[#scored + 1] = id
        out[#out + 1] = q
        out[#out + 1] = id
        out[#out + 1] = redis.call("HGET", key, "msg")
      end
      redis.call("ZADD", lease, unpack(scored))
      want = want - #ids
    end
  end
end
return out
"""

# Shared tail: bump daily (with TTL) and total counters.
_COUNT = """
local function count(day_key, total_key, n, ttl)
  if redis.call("INCRBY", day_key, n) == n then redis.call("EXPIRE", day_key, ttl) end
  redis.call("INCRBY", total_key, n)
end
"""

# KEYS: active, lease, completed, processed_day, processed_total.
# ARGV: stats ttl, task prefix, events channel, then per task: id, unique key, completed msg
# ("" = delete the task), completed expiry (unix s), event json ("" = none), result ("" = none; kept
# with a completed task only, as the task hash is deleted otherwise).
# Returns one 1/0 per task (0: the task was no longer active here).
ACK_BATCH = (
    _COUNT
    + """
local res = {}
local done, deleted = {}, {}
for i = 4, #ARGV, 6 do
  local id = ARGV[i]
  if redis.call("LREM", KEYS[1], -1, id) == 1 then
    local key = ARGV[2] .. id
    if ARGV[i+2] == "" then
      deleted[#deleted + 1] = key
    else
      redis.call("ZADD", KEYS[3], ARGV[i+3], id)
      redis.call("HSET", key, "msg", ARGV[i+2], "state", "completed")
      if ARGV[i+5] ~= "" then redis.call("HSET", key, "result", ARGV[i+5]) end
    end
    if ARGV[i+1] ~= "" and redis.call("GET", ARGV[i+1]) == id then redis.call("DEL", ARGV[i+1]) end
    if ARGV[i+4] ~= "" then redis.call("PUBLISH", ARGV[3], ARGV[i+4]) end
    done[#done + 1] = id
    res[#res + 1] = 1
  else
    res[#res + 1] = 0
  end
end
if #done > 0 then
  redis.call("ZREM", KEYS[2], unpack(done))
  count(KEYS[4], KEYS[5], #done, ARGV[1])
end
if #deleted > 0 then redis.call("DEL", unpack(deleted)) end
return res
"""
)


# KEYS: active, lease, retry, task, processed_day, processed_total, failed_day, failed_total.
# ARGV: id, msg, retry_at (unix s), stats ttl, is_failure "1"/"0", events channel, event json.
RETRY = (
    _COUNT
    + """
if redis.call("LREM", KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[2], "state", "retry")
if ARGV[5] == "1" then
  count(KEYS[5], KEYS[6], 1, ARGV[4])
  count(KEYS[7], KEYS[8], 1, ARGV[4])
end
if ARGV[7] ~= "" then redis.call("PUBLISH", ARGV[6], ARGV[7]) end
return 1
"""
)

# Trim the archive by age and size as asynq does, deleting the trimmed tasks' hashes too.
_TRIM_ARCHIVE = """
local function trim_archive(archived, prefix, cutoff, max_size)
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", archived, "-inf", cutoff, "LIMIT", 0, 100)) do
    redis.call("DEL", prefix .. id)
    redis.call("ZREM", archived, id)
  end
  local extra = redis.call("ZCARD", archived) - max_size
  if extra > 0 then
    for _, id in ipairs(redis.call("ZRANGE", archived, 0, extra - 1)) do
      redis.call("DEL", prefix .. id)
    end
    redis.call("ZREMRANGEBYRANK", archived, 0, extra - 1)
  end
end
"""

# KEYS: active, lease, archived, task, processed_day, processed_total, failed_day, failed_total.
# ARGV: id, msg, now (unix s), cutoff (unix s), max size, stats ttl, task prefix, channel, event json.
ARCHIVE = (
    _COUNT
    + _TRIM_ARCHIVE
    + """
if redis.call("LREM", KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", ARGV[2], "state", "archived")
trim_archive(KEYS[3], ARGV[7], ARGV[4], tonumber(ARGV[5]))
count(KEYS[5], KEYS[6], 1, ARGV[6])
count(KEYS[7], KEYS[8], 1, ARGV[6])
if ARGV[9] ~= "" then redis.call("PUBLISH", ARGV[8], ARGV[9]) end
return 1
"""
)

# KEYS: active, lease, pending, task. ARGV: id, pending_since_ns.
# Graceful shutdown: back to the dequeue end of pending so it runs next.
REQUEUE = """
if redis.call("LREM", KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending", "pending_since", ARGV[2])
return 1
"""

# KEYS: scheduled|retry zset, pending. ARGV: now (unix s), task prefix, now_ns, limit.
FORWARD = """
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  redis.call("LPUSH", KEYS[2], id)
  redis.call("ZREM", KEYS[1], id)
  redis.call("HSET", ARGV[2] .. id, "state", "pending", "pending_since", ARGV[3])
end
return #ids
"""

# KEYS: lease. ARGV: cutoff (unix s), task prefix, limit. Returns id, msg, id, msg...
LIST_LEASE_EXPIRED = """
local out = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))) do
  out[#out + 1] = id
  out[#out + 1] = redis.call("HGET", ARGV[2] .. id, "msg")
end
return out
"""

# KEYS: active, lease. ARGV: id. A leased id whose hash vanished: nothing to run, drop the id.
DROP_ACTIVE = """
redis.call("LREM", KEYS[1], -1, ARGV[1])
return redis.call("ZREM", KEYS[2], ARGV[1])
"""

# KEYS: completed. ARGV: now (unix s), task prefix, limit. Deletes tasks whose retention ended.
DELETE_EXPIRED_COMPLETED = """
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call("DEL", ARGV[2] .. id)
  redis.call("ZREM", KEYS[1], id)
end
return #ids
"""

# Inspector moves. KEYS: task, pending, scheduled, retry, archived, completed.
# ARGV: id, op ("delete" | "run" | "archive"), now (unix s), now_ns, cutoff, max archive size, prefix.
# Returns the state the task was in, or an error: NOT_FOUND / ACTIVE / same-state markers.
INSPECTOR_MOVE = (
    _TRIM_ARCHIVE
    + """
local state = redis.call("HGET", KEYS[1], "state")
if not state then return redis.error_reply("NOT_FOUND") end
local id, op = ARGV[1], ARGV[2]
if state == "active" then return redis.error_reply("ACTIVE") end
local from = ({pending = KEYS[2], scheduled = KEYS[3], retry = KEYS[4], archived = KEYS[5],
               completed = KEYS[6]})[state]
if not from then return redis.error_reply("UNKNOWN_STATE " .. state) end
local function take()
  if state == "pending" then redis.call("LREM", from, 0, id) else redis.call("ZREM", from, id) end
end
if op == "delete" then
  take()
  local ukey = redis.call("HGET", KEYS[1], "unique_key")
  if ukey and redis.call("GET", ukey) == id then redis.call("DEL", ukey) end
  redis.call("DEL", KEYS[1])
elseif op == "run" then
  if state == "pending" then return redis.error_reply("ALREADY pending") end
  if state == "completed" then return redis.error_reply("COMPLETED") end
  take()
  redis.call("LPUSH", KEYS[2], id)
  redis.call("HSET", KEYS[1], "state", "pending", "pending_since", ARGV[4])
elseif op == "archive" then
  if state == "archived" then return redis.error_reply("ALREADY archived") end
  if state == "completed" then return redis.error_reply("COMPLETED") end
  take()
  redis.call("ZADD", KEYS[5], ARGV[3], id)
  redis.call("HSET", KEYS[1], "state", "archived")
  trim_archive(KEYS[5], ARGV[7], ARGV[5], tonumber(ARGV[6]))
else
  return redis.error_reply("BAD_OP")
end
return state
"""
)

# KEYS: server info key, workers key. ARGV: ttl seconds, server info, 1 to replace the workers hash
# (else change it), the number of workers it must hold afterwards, the number N of workers to write,
# N worker id / info pairs, then the ids of workers to remove. Only changes are sent, so a heartbeat
# does not copy every running task's payload again. Returns 0 when the hash does not hold the
# expected number of workers (it expired or Redis lost it): the caller then replaces it.
WRITE_SERVER_STATE = """
redis.call("SETEX", KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == "1" then redis.call("DEL", KEYS[2]) end
local first_removed = 6 + 2 * tonumber(ARGV[5])
-- One HSET/HDEL per 1000 arguments (Lua's unpack has a stack limit) instead of one per worker.
for first = 6, first_removed - 1, 1000 do
  redis.call("HSET", KEYS[2], unpack(ARGV, first, math.min(first + 999, first_removed - 1)))
end
for first = first_removed, #ARGV, 1000 do
  redis.call("HDEL", KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call("EXPIRE", KEYS[2], ARGV[1])
if redis.call("HLEN", KEYS[2]) ~= tonumber(ARGV[4]) then return 0 end
return 1
"""

# KEYS: pending, active, scheduled, retry, archived, completed, processed_day, failed_day,
# processed_total, failed_total, paused. ARGV: task prefix.
# Returns the 10 counts, paused (0/1), the oldest pending task's pending_since (ns, 0 if none) and an
# estimate of the queue's memory in bytes (sampled like asynq's Inspector does).
QUEUE_STATS = """
local out = {}
out[1] = redis.call("LLEN", KEYS[1])
out[2] = redis.call("LLEN", KEYS[2])
for i = 3, 6 do out[i] = redis.call("ZCARD", KEYS[i]) end
for i = 7, 10 do out[i] = tonumber(redis.call("GET", KEYS[i]) or "0") end
out[11] = redis.call("EXISTS", KEYS[11])
out[12] = 0
local oldest = redis.call("LINDEX", KEYS[1], -1)
if oldest then
  out[12] = tonumber(redis.call("HGET", ARGV[1] .. oldest, "pending_since") or "0")
end
-- Memory estimate: each structure's own size plus its count times the average of up to 20 sampled tasks.
local memory = 0
for i = 1, 6 do
  if out[i] > 0 then
    local ids
    if i <= 2 then
      ids = redis.call("LRANGE", KEYS[i], 0, 19)
    else
      ids = redis.call("ZRANGE", KEYS[i], 0, 19)
    end
    local sampled, total = 0, 0
    for _, id in ipairs(ids) do
      local bytes = redis.call("MEMORY", "USAGE", ARGV[1] .. id)
      if bytes then sampled, total = sampled + 1, total + bytes end
    end
    if sampled > 0 then memory = memory + math.floor(total / sampled * out[i]) end
    memory = memory + (redis.call("MEMORY", "USAGE", KEYS[i]) or 0)
  end
end
out[13] = memory
return out
"""
