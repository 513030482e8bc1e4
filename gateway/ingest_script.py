"""The ingest script: one atomic step per customer message, so a message is acknowledged only once stored.

De-duplication, identity (joining the people a message's verified identities belong to), the conversation it
lands in, the transcript append and the partition's stream entry either all happen or none do. Kept apart from
`gateway.store`, which runs it: the script is the longest piece of that module and changes on its own.
"""

INGEST = """
-- KEYS: 1 dedupe. ARGV: 1 new conversation id, 2 message id, 3 message json, 4 now (s),
-- 5 reopen window (s), 6 dedupe ttl, 7 key prefix, 8 profile json, 9 channel customer key,
-- 10 candidate person id, 11 partitions, 12.. verified identities (the channel identity first).
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local P = ARGV[7]
local person = false
local others = {}
local listed = {}  -- each other person once, however many of the identities they hold (email and phone)
local owners = {}
for i = 12, #ARGV do
  local owner = redis.call('GET', P .. 'ident:' .. ARGV[i])
  owners[i] = owner
  if owner then
    if not person then person = owner
    elseif owner ~= person and not listed[owner] then
      listed[owner] = true
      table.insert(others, owner)
    end
  end
end
if not person then person = ARGV[10] end
-- Writes only for what is new: most messages come from a known customer in an open conversation.
for i = 12, #ARGV do
  if not owners[i] then
    redis.call('SET', P .. 'ident:' .. ARGV[i], person, 'NX')
    redis.call('SADD', P .. 'person:' .. person .. ':idents', ARGV[i])
  end
end
local pointer = P .. 'person:' .. person .. ':conv'
local channel_pointer = P .. 'cust:' .. ARGV[9] .. ':conv'
local current = redis.call('GET', pointer)
local mine = redis.call('GET', channel_pointer)
if mine and current and mine ~= current
   and not redis.call('ZSCORE', P .. 'person:' .. person .. ':convs', mine)
   and redis.call('EXISTS', P .. 'conv:' .. mine .. ':msgs') == 1 then
  -- Not the person's conversation: this id wrote in the other person's while the two were merged, and the merge
  -- was undone. Not followed (its open conversation would win below), and re-pointed at the one this joins.
  -- A web chat reservation has no transcript yet; an id from before persons (no person pointer) is kept.
  mine = false
end
if current and current ~= mine
   and not redis.call('ZSCORE', P .. 'person:' .. person .. ':convs', current) then
  -- Not the person's conversation: an undone merge can leave the pointer on the other person's.
  current = false
end
local conv = current
local function another_account_writes_in(c)
  -- Only a person with two ids of one channel (two accounts joined by a shared email or phone) can be two
  -- people, and then nothing tells which account an id of another channel belongs to: an agent's reply goes
  -- to the conversation's customer, so joining another account's conversation could reach the wrong one.
  -- The one person with one account per channel still carries a conversation from channel to channel.
  local kinds, shared, taken = {}, false, false
  for _, ident in ipairs(redis.call('SMEMBERS', P .. 'person:' .. person .. ':idents')) do
    local writes_in = ident ~= ARGV[9] and redis.call('GET', P .. 'cust:' .. ident .. ':conv')
    -- Channel ids have a conversation pointer (the sender's first message has none yet); email and phone don't.
    if writes_in or ident == ARGV[9] then
      local kind = string.match(ident, '^[^:]+')
      if kinds[kind] then shared = true end
      kinds[kind] = true
      if writes_in == c then taken = true end
    end
  end
  return shared and taken
end
if mine and mine ~= current and not redis.call('GET', P .. 'conv:' .. mine .. ':closed')
   and redis.call('EXISTS', P .. 'conv:' .. mine .. ':msgs') == 1 then
  -- This channel's conversation is still open (two persons merged, each had one): follow-ups stay where an
  -- agent is working on them instead of moving to the other conversation.
  conv = mine
elseif current and current ~= mine and another_account_writes_in(current) then
  conv = false
end
if not conv then
  -- A web chat session reserves its conversation id before the first message.
  conv = mine
end
if conv then
  local closed = redis.call('GET', P .. 'conv:' .. conv .. ':closed')
  if closed and (tonumber(ARGV[4]) - tonumber(closed)) > tonumber(ARGV[5]) then conv = false end
end
if not conv then conv = ARGV[1] end
if conv ~= current then
  redis.call('SET', pointer, conv)
  redis.call('ZADD', P .. 'person:' .. person .. ':convs', ARGV[4], conv)
end
if mine ~= conv then redis.call('SET', channel_pointer, conv) end  -- nothing above wrote it
redis.call('RPUSH', P .. 'conv:' .. conv .. ':msgs', ARGV[3])
if ARGV[8] ~= '{}' then redis.call('HSET', P .. 'person:' .. person, 'profile', ARGV[8]) end
-- A conversation keeps the partition it started on (`Conversation.partition`), so a merge that changes its
-- person cannot split its work across two partitions. It starts on its person's: same hash as
-- keys.partition_of, so one person's messages stay in order.
local part_key = P .. 'conv:' .. conv .. ':part'
local part = conv ~= ARGV[1] and redis.call('GET', part_key)  -- the id drawn for a new one has none
if not part or tonumber(part) >= tonumber(ARGV[11]) then
  local h = 0
  for i = 1, #person do h = (h * 31 + string.byte(person, i)) % 2147483647 end
  part = tostring(h % tonumber(ARGV[11]))
  redis.call('SET', part_key, part)
end
local stream = P .. 'in:' .. part
redis.call('XADD', stream, '*', 'conv', conv, 'mid', ARGV[2], 'customer', ARGV[9], 'profile', ARGV[8],
           'person', person, 'merge', table.concat(others, ','))
local ref = conv .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], ref, 'EX', tonumber(ARGV[6]))
return {1, ref}
"""
