"""The queue's Lua scripts. Each is one atomic step on one partition's keys.

Per-chat key names are built inside `claim` from the partition's chat prefix (ARGV), which
shares the partition's hash tag, so every script stays within one Redis Cluster slot.
"""


def _first_time(duplicate: str) -> str:
    """Lua: remember the message `id` in the chat's `seen` set, pruned to the dedup window
    (`dedup_ms`) and cap (`seen_cap`), or return `duplicate` if it is already there. The
    embedded store's `MemoryStore._first_time` does the same."""
    return f"""if redis.call('ZSCORE', seen, id) then return {duplicate} end
redis.call('ZADD', seen, now, id)
redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - dedup_ms)
redis.call('ZREMRANGEBYRANK', seen, 0, -seen_cap - 1)
redis.call('PEXPIRE', seen, dedup_ms)
"""


def _to_outbox(item: str, wake: str) -> str:
    """Lua: append `item` to the chat's outbox; a chat that had nothing to send becomes
    ready for the senders, and they are woken on the channel `wake`."""
    return f"""redis.call('RPUSH', outbox, {item})
if redis.call('ZADD', outbox_ready, 'NX', now, chat) == 1 then
  redis.call('PUBLISH', {wake}, chat)
end
"""


# Dedup check, rate count, backlog check and push in one step: two deliveries of one
# message cannot both pass the duplicate check, and a message arriving while its chat is
# leased does not make the chat ready under the worker holding it. The sender's rate
# counter is also the memory of having told them to slow down: only the message that
# takes it one past the limit gets that reply, so it comes once per window, however many
# messages a flood sends and however many adapter processes take them in.
ENQUEUE = f"""
local inbox, seen, ready, leases, rate, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, id, payload = ARGV[1], ARGV[2], ARGV[3]
local now, backlog, dedup_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rate_limit, rate_ms, busy, seen_cap, wake =
  tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), ARGV[11]
-- ARGV[12]: the channel that wakes the platform's senders; ARGV[13]: the slow-down reply
{_first_time("'duplicate'")}if rate_limit > 0 then
  local n = redis.call('INCR', rate)
  if n == 1 then redis.call('PEXPIRE', rate, rate_ms) end
  if n > rate_limit then
    if n == rate_limit + 1 then
      {_to_outbox("ARGV[13]", "ARGV[12]")}    end
    return 'rate_limited'
  end
end
if redis.call('LLEN', inbox) >= backlog then
  {_to_outbox("busy", "ARGV[12]")}  return 'busy'
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

# The reply is published, the message removed and the context changed in one step: a
# worker that dies at any point leaves all of it or none of it, and a worker whose lease
# expired (its chat taken over by another) changes nothing, so a user sees one reply.
# `change` is what the event does to the thread's context: a question and its answer
# extend it ('extend', the turns follow), a reset clears it, help leaves it ('keep').
# Acting on a reset here, at the head of the queue, is what keeps the exchanges asked
# before it from being written back into the context it cleared.
COMPLETE = f"""
local inbox, lease, leases, ready, context, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, token, id, reply, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local max_turns, max_bytes, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local outbox_wake, change = ARGV[9], ARGV[10]
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
local head = redis.call('LINDEX', inbox, 0)
if not head or cjson.decode(head)['message_id'] ~= id then return 'lost' end
redis.call('LPOP', inbox)
redis.call('DEL', lease)
redis.call('ZREM', leases, chat)
{_to_outbox("reply", "outbox_wake")}if change == 'reset' then
  redis.call('DEL', context)
elseif change == 'extend' then
  for i = 11, #ARGV do redis.call('RPUSH', context, ARGV[i]) end
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
FAIL = f"""
local inbox, lease, leases, ready, dead, outbox, outbox_ready =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local chat, token, id, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_attempts, err, delay, apology = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8]
local outbox_wake = ARGV[9]
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
local head = redis.call('LINDEX', inbox, 0)
if not head or cjson.decode(head)['message_id'] ~= id then return 'lost' end
local status = 'retry'
if tonumber(redis.call('HGET', lease, 'attempts')) >= max_attempts then
  redis.call('LPOP', inbox)
  redis.call('DEL', lease)
  redis.call('RPUSH', dead, cjson.encode({{chat = chat, message = head, error = err, at = now}}))
  {_to_outbox("apology", "outbox_wake")}  status = 'dead'
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

# The send lease. A chat's outbox is served by one sender at a time: the sender that
# claimed it holds its `send-lease` hash (token, owner), which expires when the lease runs
# out, and the chat's outbox-ready score is moved past the lease so no other sender sees
# it meanwhile. Every step after the claim (ack, renew, finish) is refused unless the
# caller's token is still the lease's: a sender that stalled past its lease, whose chat
# another sender has taken over, can neither pop replies nor make the chat due again.

# Leases chats with due replies to one sender (`owner`, recorded for a restart to take
# them back), each under its own token. A chat still leased by the server's clock although
# its score ran out by this client's is left alone until its lease ends. Returns a flat
# list: chat, token, the times (ms) of its latest sends joined by commas, its first
# replies as JSON, ...
CLAIM_REPLIES = """
local outbox_ready, owners = KEYS[1], KEYS[2]
local now, lease_ms, max, max_replies, prefix, owner, token =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6],
  ARGV[7]
local out = {}
for i, chat in ipairs(redis.call('ZRANGEBYSCORE', outbox_ready, '-inf', now, 'LIMIT', 0, max)) do
  local lease = prefix .. chat .. ':send-lease'
  local held = redis.call('PTTL', lease)
  if held > 0 then
    redis.call('ZADD', outbox_ready, now + held, chat)
  else
    local replies = redis.call('LRANGE', prefix .. chat .. ':outbox', 0, max_replies - 1)
    if #replies == 0 then
      redis.call('ZREM', outbox_ready, chat)
      redis.call('HDEL', owners, chat)
    else
      local fence = token .. ':' .. i
      redis.call('DEL', lease)
      redis.call('HSET', lease, 'token', fence, 'owner', owner)
      redis.call('PEXPIRE', lease, lease_ms)
      redis.call('HSET', owners, chat, owner)
      redis.call('ZADD', outbox_ready, now + lease_ms, chat)
      local sent = redis.call('ZRANGE', prefix .. chat .. ':sent', 0, -1, 'WITHSCORES')
      local times = {}
      for j = 2, #sent, 2 do table.insert(times, sent[j]) end
      table.insert(out, chat)
      table.insert(out, fence)
      table.insert(out, table.concat(times, ','))
      table.insert(out, cjson.encode(replies))
    end
  end
end
return out
"""

# The platform accepted one message (`sends` 1), or the sender gave some replies up
# (`sends` 0): they leave the outbox at once, while they are still at its head, so a
# sender killed right after this step sends none of them again. The message is counted in
# the chat's rate window (only the last `limit` sends matter, so no more are kept), and the
# lease is extended: a sender that keeps acknowledging keeps its chat.
ACK_REPLIES = """
local outbox, lease, sent, outbox_ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local chat, token, now, lease_ms, sends, limit, window_ms =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7])
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
for i = 8, #ARGV do
  local head = redis.call('LINDEX', outbox, 0)
  if not head or cjson.decode(head)['in_reply_to'] ~= ARGV[i] then break end
  redis.call('LPOP', outbox)
end
if limit > 0 and sends > 0 then
  for _ = 1, sends do
    local n = redis.call('HINCRBY', lease, 'acks', 1)
    redis.call('ZADD', sent, now, token .. ':' .. n)
  end
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - window_ms)
  redis.call('ZREMRANGEBYRANK', sent, 0, -limit - 1)
  redis.call('PEXPIRE', sent, window_ms)
end
redis.call('PEXPIRE', lease, lease_ms)
redis.call('ZADD', outbox_ready, 'XX', now + lease_ms, chat)
return 'ok'
"""

# A sender still busy with a chat (a long message in parts, a slow platform) extends its
# lease, so no second sender starts on the same replies.
RENEW_REPLIES = """
local lease, outbox_ready = KEYS[1], KEYS[2]
local chat, token, now, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
redis.call('PEXPIRE', lease, lease_ms)
redis.call('ZADD', outbox_ready, 'XX', now + lease_ms, chat)
return 'ok'
"""

# The sender is done with the chat for now: the lease ends, and a chat with replies left is
# due again when its rate limit and the platform's retry-after (`retry_at`) allow.
FINISH_REPLIES = """
local outbox, lease, sent, outbox_ready, owners = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local chat, token, now, limit, window_ms, retry_at =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('HGET', lease, 'token') ~= token then return 'lost' end
redis.call('DEL', lease)
redis.call('HDEL', owners, chat)
if redis.call('LLEN', outbox) == 0 then
  redis.call('ZREM', outbox_ready, chat)
  return 'ok'
end
local due = math.max(now, retry_at)
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - window_ms)
  local count = redis.call('ZCARD', sent)
  if count >= limit then
    -- the moment the oldest of the last `limit` sends leaves the window
    local oldest = redis.call('ZRANGE', sent, count - limit, count - limit, 'WITHSCORES')
    due = math.max(due, tonumber(oldest[2]) + window_ms)
  end
end
redis.call('ZADD', outbox_ready, due, chat)
return 'ok'
"""

# A sender starting under an identity (platform, host, instance) takes back, in one step
# per partition, the chats a previous process of that identity held when it died: they are
# due at once instead of after the dead process's leases run out. Leases of other senders
# are left alone; owner entries whose lease ran out are dropped. Returns the chats taken.
RECLAIM_REPLIES = """
local owners, outbox_ready = KEYS[1], KEYS[2]
local owner, now, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local taken = 0
local held = redis.call('HGETALL', owners)
for i = 1, #held, 2 do
  local chat = held[i]
  local lease = prefix .. chat .. ':send-lease'
  local holder = redis.call('HGET', lease, 'owner')
  if not holder then
    redis.call('HDEL', owners, chat)
  elseif holder == owner then
    redis.call('DEL', lease)
    redis.call('HDEL', owners, chat)
    if redis.call('LLEN', prefix .. chat .. ':outbox') > 0 then
      redis.call('ZADD', outbox_ready, now, chat)
      taken = taken + 1
    else
      redis.call('ZREM', outbox_ready, chat)
    end
  end
end
return taken
"""

# A web room's history. The entry's sequence number and its place in the list are taken in
# one step, so the list is always in sequence order and two writers (a second web process,
# or a sender retrying while its first attempt still runs) cannot interleave INCR and RPUSH.
# The counter lives as long as the list, so a client resuming after seq N never sees a
# number reused; both expire together after a quiet `ttl`. Returns the entry's number.
APPEND_HISTORY = """
local history, counter = KEYS[1], KEYS[2]
local entry, keep, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local seq = redis.call('INCR', counter)
if keep > 0 then
  redis.call('RPUSH', history, seq .. ' ' .. entry)
  redis.call('LTRIM', history, -keep, -1)
  redis.call('PEXPIRE', history, ttl_ms)
else
  redis.call('DEL', history)
end
redis.call('PEXPIRE', counter, ttl_ms)
return seq
"""
