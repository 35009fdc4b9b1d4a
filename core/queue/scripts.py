"""The queue's Lua scripts. Each is one atomic step on one partition's keys.

Per-chat key names are built inside `claim` from the partition's chat prefix (ARGV), which
shares the partition's hash tag, so every script stays within one Redis Cluster slot.
"""

# Dedup check, rate count, backlog check and push in one step: two deliveries of one
# message cannot both pass the duplicate check, and a message arriving while its chat is
# leased does not make the chat ready under the worker holding it.
ENQUEUE = """
local inbox, seen, ready, leases, rate, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, id, payload = ARGV[1], ARGV[2], ARGV[3]
local now, backlog, dedup_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rate_limit, rate_ms, busy, seen_cap, wake =
  tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), ARGV[11]
if redis.call('ZSCORE', seen, id) then return 'duplicate' end
redis.call('ZADD', seen, now, id)
redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - dedup_ms)
redis.call('ZREMRANGEBYRANK', seen, 0, -seen_cap - 1)
redis.call('PEXPIRE', seen, dedup_ms)
if rate_limit > 0 then
  local n = redis.call('INCR', rate)
  if n == 1 then redis.call('PEXPIRE', rate, rate_ms) end
  if n > rate_limit then return 'rate_limited' end
end
if redis.call('LLEN', inbox) >= backlog then
  redis.call('RPUSH', outbox, busy)
  redis.call('ZADD', outbox_ready, 'NX', now, chat)
  return 'busy'
end
redis.call('RPUSH', inbox, payload)
if not redis.call('ZSCORE', leases, chat) and redis.call('ZADD', ready, 'NX', now, chat) == 1 then
  redis.call('PUBLISH', wake, chat)
end
return 'queued'
"""

# Takes up to `max` ready chats, oldest first, leasing each one's head message. Expired
# leases are reclaimed first, in the same step, so a chat whose worker died becomes ready
# exactly once and its head message (never removed) is answered by the next claimant.
# The attempt count survives the lease, so a message that kills its worker every time
# still reaches the dead-letter list. The context of the message's thread comes along (its
# time to live refreshed). Returns a flat list: chat, message, attempts, context JSON, ...
CLAIM = """
local ready, leases = KEYS[1], KEYS[2]
local now, lease_ms, max, token, prefix, context_ttl =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
for _, chat in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now)) do
  redis.call('ZREM', leases, chat)
  redis.call('HDEL', prefix .. chat .. ':lease', 'token')
  if redis.call('LLEN', prefix .. chat .. ':inbox') > 0 then
    redis.call('ZADD', ready, now, chat)
  end
end
local out = {}
for _, chat in ipairs(redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, max)) do
  redis.call('ZREM', ready, chat)
  local head = redis.call('LINDEX', prefix .. chat .. ':inbox', 0)
  if head then
    local lease = prefix .. chat .. ':lease'
    local message = cjson.decode(head)
    local id = message['message_id']
    local attempts = 1
    if redis.call('HGET', lease, 'msg') == id then
      attempts = tonumber(redis.call('HGET', lease, 'attempts') or '0') + 1
    end
    redis.call('HSET', lease, 'token', token, 'msg', id, 'attempts', attempts)
    redis.call('ZADD', leases, now + lease_ms, chat)
    local context = prefix .. chat .. ':context:' .. message['thread']
    redis.call('PEXPIRE', context, context_ttl)
    table.insert(out, chat)
    table.insert(out, head)
    table.insert(out, attempts)
    table.insert(out, cjson.encode(redis.call('LRANGE', context, 0, -1)))
  end
end
return out
"""

# The reply is published, the message removed and the context extended in one step: a
# worker that dies at any point leaves all of it or none of it, and a worker whose lease
# expired (its chat taken over by another) changes nothing, so a user sees one reply.
COMPLETE = """
local inbox, lease, leases, ready, context, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, token, id, reply, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local max_turns, max_bytes, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
local head = redis.call('LINDEX', inbox, 0)
if not head or cjson.decode(head)['message_id'] ~= id then return 'lost' end
redis.call('LPOP', inbox)
redis.call('DEL', lease)
redis.call('ZREM', leases, chat)
redis.call('RPUSH', outbox, reply)
redis.call('ZADD', outbox_ready, 'NX', now, chat)
if #ARGV > 8 then
  for i = 9, #ARGV do redis.call('RPUSH', context, ARGV[i]) end
  redis.call('LTRIM', context, -max_turns, -1)
  local turns = redis.call('LRANGE', context, 0, -1)
  local total = 0
  for _, t in ipairs(turns) do total = total + #t end
  local i = 1
  while total > max_bytes and i < #turns do
    total = total - #turns[i]
    redis.call('LPOP', context)
    i = i + 1
  end
  redis.call('PEXPIRE', context, ttl)
end
if redis.call('LLEN', inbox) > 0 then redis.call('ZADD', ready, now, chat) end
return 'ok'
"""

# The responder raised. Below the attempt limit the message stays at the head and the
# chat becomes ready again after a delay; at the limit the message moves to the
# dead-letter list with the error, the asker gets a short apology, and the chat moves on.
FAIL = """
local inbox, lease, leases, ready, dead, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, token, id, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_attempts, err, delay, apology = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8]
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
local head = redis.call('LINDEX', inbox, 0)
if not head or cjson.decode(head)['message_id'] ~= id then return 'lost' end
local status = 'retry'
if tonumber(redis.call('HGET', lease, 'attempts')) >= max_attempts then
  redis.call('LPOP', inbox)
  redis.call('DEL', lease)
  redis.call('RPUSH', dead, cjson.encode({chat = chat, message = head, error = err, at = now}))
  redis.call('RPUSH', outbox, apology)
  redis.call('ZADD', outbox_ready, 'NX', now, chat)
  status = 'dead'
  delay = 0
else
  redis.call('HDEL', lease, 'token')
end
redis.call('ZREM', leases, chat)
if redis.call('LLEN', inbox) > 0 then redis.call('ZADD', ready, now + delay, chat) end
return status
"""

# Hands a leased chat back untouched (graceful shutdown): the attempt is not counted.
RELEASE = """
local inbox, lease, leases, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local chat, token, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
redis.call('HDEL', lease, 'token')
redis.call('HINCRBY', lease, 'attempts', -1)
redis.call('ZREM', leases, chat)
if redis.call('LLEN', inbox) > 0 then redis.call('ZADD', ready, now, chat) end
return 'ok'
"""

# Sent replies leave the outbox; the chat stays in outbox-ready while any remain.
ACK_REPLIES = """
local outbox, outbox_ready, chat, n = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
redis.call('LPOP', outbox, n)
if redis.call('LLEN', outbox) == 0 then redis.call('ZREM', outbox_ready, chat) end
return redis.call('LLEN', outbox)
"""
