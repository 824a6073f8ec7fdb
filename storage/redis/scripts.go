package redisstore

import "github.com/redis/go-redis/v9"

// Every script receives the namespace ("{prefix}") as ARGV[1] and builds
// its keys from it; KEYS[1] is always a key of the namespace, so a Cluster
// client routes the call to the node owning the namespace's one hash slot.
//
// Scripts that change anything, but Create, take a per-call operation
// token (ARGV[2]) and the replay window in milliseconds (ARGV[3]). They
// record the token under {prefix}:op:<token> when they apply; a call that
// finds its token already recorded is a retry of a call that already
// applied (go-redis resends a command whose reply was lost) and changes
// nothing. Create keeps its token in the records it writes instead.
//
// A task record (record.go, and the package doc) is a JSON object whose
// payload and result members come last. Everything before them, the head,
// holds only strings and integers, and since a JSON string cannot contain
// an unescaped quote, the first `,"pl":`, `,"pl64":`, `,"rs":` or
// `,"rs64":` in the record is where the tail starts.
// Scripts decode the small head with cjson, change it, encode it again and
// append the tail untouched: a payload or result is never decoded or
// rewritten by a script, so it stays byte for byte what was stored.
const luaCore = `
local P = ARGV[1]
local function tkey(id) return P .. ':t:' .. id end
-- ikey is the listing index of a state and a "<queue>:<type>" combination.
local function ikey(state, combo) return P .. ':i:' .. state .. ':' .. combo end
local function opkey() return P .. ':op:' .. ARGV[2] end
local function seen() return redis.call('GET', opkey()) end
local function done(v) redis.call('SET', opkey(), v, 'PX', ARGV[3]) end
-- claim records this call's token; false when it was recorded already.
local function claim(v) return redis.call('SET', opkey(), v, 'NX', 'PX', ARGV[3]) end
-- refuse forgets the token of a call that changed nothing and returns why.
local function refuse(why)
  redis.call('DEL', opkey())
  return {why}
end
local STATES = {'pending', 'scheduled', 'running', 'retrying', 'succeeded', 'dead', 'canceled'}
local WAITING = {pending = true, scheduled = true, retrying = true}
local TERMINAL = {succeeded = true, dead = true, canceled = true}
-- nowMS is the server's clock in milliseconds.
local function nowMS()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// luaRecord reads and writes task records.
const luaRecord = `
local VALID = {}
for _, st in ipairs(STATES) do VALID[st] = true end
local HEAD = {'t', 'q', 'p', 's', 'a', 'm', 'to', 'r', 'c', 'b', 'f', 'e', 'w', 'u', 'sc', 'tk', 'ma', 'mi'}
local KNOWN = {}
for _, k in ipairs(HEAD) do KNOWN[k] = true end
local INT = {p = true, a = true, m = true, ma = true}
local TAILS = {',"pl":', ',"pl64":', ',"rs":', ',"rs64":'}

-- load reads and decodes the record of id: nil and 'notfound' or 'corrupt'
-- when it cannot.
local function load(id)
  local s = redis.pcall('GET', tkey(id))
  if type(s) == 'table' and s.err then return nil, 'corrupt' end
  if not s then return nil, 'notfound' end
  local cut
  for _, m in ipairs(TAILS) do
    local c = string.find(s, m, 1, true)
    if c and (not cut or c < cut) then cut = c end
  end
  local head, tail = s, '}'
  if cut then
    head = string.sub(s, 1, cut - 1) .. '}'
    tail = string.sub(s, cut)
  end
  local ok, v = pcall(cjson.decode, head)
  if not ok or type(v) ~= 'table' or not VALID[v.s] or type(v.a) ~= 'number'
    or type(v.q) ~= 'string' or type(v.t) ~= 'string' or type(v.c) ~= 'string' or string.sub(tail, -1) ~= '}'
    or type(v.p) ~= 'number' or type(v.m) ~= 'number' then
    return nil, 'corrupt'
  end
  v.ct = nil
  return {v = v, tail = tail, id = id, state = v.s, attempt = v.a, combo = v.q .. ':' .. v.t}
end

-- set replaces head member k of r; '' removes it.
local function set(r, k, x)
  if x == '' then x = nil end
  r.v[k] = x
end

-- save encodes the head in the order Task.MarshalJSON uses, then any
-- member this script does not know (written by a newer version), and
-- stores the record.
local function save(r)
  local parts = {}
  for _, k in ipairs(HEAD) do
    local x = r.v[k]
    if x ~= nil then
      if INT[k] then
        parts[#parts + 1] = '"' .. k .. '":' .. string.format('%d', x)
      else
        parts[#parts + 1] = '"' .. k .. '":' .. cjson.encode(x)
      end
    end
  end
  for k, x in pairs(r.v) do
    if not KNOWN[k] then parts[#parts + 1] = cjson.encode(k) .. ':' .. cjson.encode(x) end
  end
  local s = '{' .. table.concat(parts, ',') .. r.tail
  redis.call('SET', tkey(r.id), s)
  return s
end

-- move changes the state of r, moving its listing index entry with it.
local function move(r, to)
  if r.state ~= to then
    redis.call('ZREM', ikey(r.state, r.combo), r.id)
    redis.call('ZADD', ikey(to, r.combo), 0, r.id)
  end
  r.state = to
  r.v.s = to
end

-- logFinish appends r, finished at score (µs), to the finish log.
local function logFinish(r, score)
  redis.call('RPUSH', P .. ':d', score .. ':' .. r.id)
end

-- claimLoad records this call's token and loads the record of ARGV[4].
-- When it returns nil, the second value is the script's reply: the record
-- as it is now for a call that already applied, else why it cannot load.
local function claimLoad()
  if not claim('1') then return nil, {'replay', redis.call('GET', tkey(ARGV[4])) or ''} end
  local r, err = load(ARGV[4])
  if not r then return nil, refuse(err) end
  return r
end

-- release frees the unique key of r if r still holds it.
local function release(r)
  local uk = r.v.u
  if type(uk) == 'string' and uk ~= '' then
    local k = P .. ':u:' .. uk
    if redis.call('GET', k) == r.id then redis.call('DEL', k) end
  end
end
`

// createScript: KEYS[1] = the combination registry, KEYS[2] = the outbox,
// then per task its record key, its listing index key and, when it has a
// unique key, that key. ARGV[1] = namespace, ARGV[2] = n, then per task:
// id, record, outbox score, "<queue>:<type>", has a unique key ('1'/'0').
// A unique key is free when its holder is gone or finished. Replies
// {'ok'|'replay', holders}: holders is empty when every task was stored,
// else one comma-separated entry per task, empty when stored, else the ID
// of the task holding its ID or unique key.
//
// It takes no operation marker: each new record carries the creating
// call's token (member "ct", dropped by the first transition), so a task
// whose record is already stored byte for byte is this call's own, written
// by a first execution whose reply was lost, and counts as stored: a
// resent call answers as the first did without writing anything twice. It is written without the prelude and with its
// keys built by the client to keep the hottest call lean.
const createScript = `
local P = ARGV[1]
local n = tonumber(ARGV[2])
local res, dup, replay, k = {}, false, false, 3
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, js = ARGV[b], ARGV[b + 1]
  local tkey, ikey, ukey = KEYS[k], KEYS[k + 1], nil
  k = k + 2
  if ARGV[b + 4] == '1' then
    ukey = KEYS[k]
    k = k + 1
  end
  local holder = ''
  if ukey then
    local h = redis.call('GET', ukey)
    if h and h ~= id then
      local rec = redis.pcall('GET', P .. ':t:' .. h)
      if type(rec) == 'string' then
        local st = string.match(rec, '"s":"(%a+)"')
        if st ~= 'succeeded' and st ~= 'dead' and st ~= 'canceled' then holder = h end
      end
    end
  end
  if holder == '' then
    if redis.call('SET', tkey, js, 'NX') then
      if ukey then redis.call('SET', ukey, id) end
      redis.call('ZADD', ikey, 0, id)
      redis.call('SADD', KEYS[1], ARGV[b + 3])
      redis.call('ZADD', KEYS[2], ARGV[b + 2], id)
    elseif redis.call('GET', tkey) == js then
      replay = true
    else
      holder = id
    end
  end
  if holder ~= '' then dup = true end
  res[#res + 1] = holder
end
local st = 'ok'
if replay then st = 'replay' end
if not dup then return {st, ''} end
return {st, table.concat(res, ',')}
`

// luaStart moves a task to running for a message: id, the message's
// attempt, redelivered ('0'/'1'), worker ID, now (RFC 3339), the message's
// ID (may be empty). The record's "ma" member (msg_attempt, not part of
// scheduler.Task; missing means 0) and "mi" member (its ID; missing means
// unknown) name the message driving the task: set by a start, they let a
// redelivery of that message, and only of that message, take the task
// over any number of times. Returns 'ok' and the new record, or why it
// refused.
const luaStart = `
local function startOp(id, a, redelivered, worker, now, mid)
  local r, err = load(id)
  if not r then return err end
  if TERMINAL[r.state] then return 'finished' end
  local fresh = WAITING[r.state] and r.attempt == a
  local takeover = redelivered == '1' and (r.state == 'running' or r.state == 'pending') and r.attempt > a
    and (tonumber(r.v.ma) or 0) == a and (type(r.v.mi) ~= 'string' or mid == '' or r.v.mi == mid)
  if not fresh and not takeover then return 'stale' end
  move(r, 'running')
  r.v.ma = a
  if a == 0 then r.v.ma = nil end
  set(r, 'mi', mid)
  r.v.a = r.attempt + 1
  set(r, 'b', now)
  set(r, 'w', worker)
  redis.call('ZREM', P .. ':o', r.id)
  return 'ok', save(r)
end
`

// luaFinish records the outcome of a running attempt: id, attempt, new
// state, error, result member (`,"rs":...` or `,"rs64":...` as
// resultMember writes it, or empty), run at, added retries, now (RFC 3339), now score, run at
// score. Returns 'ok' and the new record, or why it refused.
const luaFinish = `
local function finishOp(id, attempt, to, errtext, result, runAt, add, now, nowScore, runAtScore)
  local r, err = load(id)
  if not r then return err end
  if TERMINAL[r.state] then return 'finished' end
  if r.state ~= 'running' or r.attempt ~= attempt then return 'stale' end
  move(r, to)
  -- Only a handed-back task can be taken over again by the same message.
  if to ~= 'pending' then r.v.mi = nil end
  if errtext ~= '' then set(r, 'e', errtext) end
  if result ~= '' then r.tail = string.sub(r.tail, 1, -2) .. result .. '}' end
  if runAt ~= '' then set(r, 'r', runAt) end
  if add > 0 then r.v.m = r.v.m + add end
  if TERMINAL[to] then
    set(r, 'f', now)
    logFinish(r, nowScore)
    release(r)
  elseif to == 'retrying' or to == 'scheduled' or (to == 'pending' and runAt ~= '') then
    redis.call('ZADD', P .. ':o', runAtScore, r.id)
  end
  return 'ok', save(r)
end
`

// transitionsBody runs a batch of starts and finishes, each fenced on its
// own exactly as if it ran alone, in order: ARGV[4] = n, then per
// transition 's' and the 6 arguments of luaStart, or 'f' and the 10 of
// luaFinish. Replies {status, record, ...}, one pair per transition: 'ok'
// and the new record, or the reason it was refused and an empty string. The batch
// records the status of each transition under its token; a replayed batch
// answers 'replay' and the record as it is now for those that applied, and
// the same refusal for the others.
const transitionsBody = `
local n = tonumber(ARGV[4])
local out = {}
local i = 5
local prev = seen()
if prev then
  local sts = {}
  for st in string.gmatch(prev, '[^,]+') do sts[#sts + 1] = st end
  for k = 1, n do
    local kind, id = ARGV[i], ARGV[i + 1]
    if sts[k] == 'ok' then
      out[#out + 1] = 'replay'
      out[#out + 1] = redis.call('GET', tkey(id)) or ''
    else
      out[#out + 1] = sts[k] or 'stale'
      out[#out + 1] = ''
    end
    if kind == 's' then i = i + 7 else i = i + 11 end
  end
  return out
end
local sts = {}
for k = 1, n do
  local st, rec
  if ARGV[i] == 's' then
    st, rec = startOp(ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6])
    i = i + 7
  else
    st, rec = finishOp(ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
      tonumber(ARGV[i + 7]), ARGV[i + 8], ARGV[i + 9], ARGV[i + 10])
    i = i + 11
  end
  sts[k] = st
  out[#out + 1] = st
  out[#out + 1] = rec or ''
end
done(table.concat(sts, ','))
return out
`

// cancelScript: ARGV[4..9] = id, reason, only unstarted (0/1), now (RFC
// 3339), now score, cancel request TTL in ms.
const cancelBody = `
local r, reply = claimLoad()
if not r then return reply end
if TERMINAL[r.state] then return refuse('finished') end
if ARGV[6] == '1' and not (r.attempt == 0 and (r.state == 'pending' or r.state == 'scheduled')) then
  return refuse('stale')
end
local was = r.state
move(r, 'canceled')
r.v.mi = nil
if ARGV[5] ~= '' then set(r, 'e', ARGV[5]) end
set(r, 'f', ARGV[7])
if was == 'running' then
  local w = r.v.w
  if type(w) == 'string' and w ~= '' then
    local k = P .. ':wc:' .. w
    redis.call('SADD', k, r.id)
    redis.call('PEXPIRE', k, ARGV[9])
  end
end
redis.call('ZREM', P .. ':o', r.id)
logFinish(r, ARGV[8])
release(r)
return {'ok', save(r)}
`

// retryScript: ARGV[4..6] = id, now (RFC 3339), now score. The task
// becomes due now: now is its new run_at and its outbox score.
const retryBody = `
local r, reply = claimLoad()
if not r then return reply end
if r.state ~= 'dead' and r.state ~= 'canceled' then return refuse('notretryable') end
move(r, 'pending')
r.v.m = r.v.m + r.attempt
set(r, 'f', nil)
set(r, 'r', ARGV[5])
-- No message drives the task until its next start: none may take it over.
r.v.ma = -1
r.v.mi = nil
redis.call('HINCRBY', P .. ':r', r.id, 1)
redis.call('ZADD', P .. ':o', ARGV[6], r.id)
return {'ok', save(r)}
`

// purgeScript: ARGV[4..5] = exclusive upper finish score, limit. Replies
// {'ok'|'replay', deleted count, IDs of corrupt records deleted...}.
//
// The finish log {p}:d lists "<finish score>:<id>" in the order the
// tasks finished as Redis saw them. Purge walks it from the head: an
// entry not yet due is kept (up to purgeLook of them are stepped over, so
// a task whose finish time came from a clock running ahead holds up no
// more than that), a due one deletes its task. A Retry leaves its task's
// earlier entry behind and counts it in the hash {p}:r; Purge drops such
// stale entries (the first ones of their task) without deleting the task,
// and entries of tasks that are gone or no longer finished.
const purgeBody = `
local prev = seen()
if prev then return {'replay', tonumber(prev)} end
local dkey, rkey = P .. ':d', P .. ':r'
local before, limit, look = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n, combos, corrupt, keep = 0, {}, {}, {}
local function unindex(id)
  redis.call('ZREM', P .. ':o', id)
  redis.call('HDEL', rkey, id)
end
-- stale consumes one stale entry of id, if Retry left one.
local function stale(id)
  local c = tonumber(redis.call('HGET', rkey, id) or '0') or 0
  if c <= 0 then return false end
  if c == 1 then redis.call('HDEL', rkey, id) else redis.call('HINCRBY', rkey, id, -1) end
  return true
end
local len = redis.call('LLEN', dkey)
local pos = 0
while pos < len and n < limit and #keep < look do
  local batch = redis.call('LRANGE', dkey, pos, pos + 99)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if n >= limit or #keep >= look then break end
    pos = pos + 1
    local sep = string.find(e, ':', 1, true)
    local at, id = nil, nil
    if sep then at, id = tonumber(string.sub(e, 1, sep - 1)), string.sub(e, sep + 1) end
    if not at or id == '' then
      -- not an entry this store wrote: drop it
    elseif at >= before then
      keep[#keep + 1] = e
    else
      local r, err = load(id)
      if r and TERMINAL[r.state] then
        if not stale(id) then
          redis.call('DEL', tkey(id))
          redis.call('ZREM', ikey(r.state, r.combo), id)
          unindex(id)
          release(r)
          combos[r.combo] = true
          n = n + 1
        end
      elseif r then
        stale(id)
      elseif err == 'notfound' then
        redis.call('HDEL', rkey, id)
      else
        for _, c in ipairs(redis.call('SMEMBERS', P .. ':c')) do
          for _, st in ipairs(STATES) do redis.call('ZREM', ikey(st, c), id) end
          combos[c] = true
        end
        redis.call('DEL', tkey(id))
        unindex(id)
        corrupt[#corrupt + 1] = id
        n = n + 1
      end
    end
  end
end
if pos > 0 then
  redis.call('LTRIM', dkey, pos, -1)
  for i = #keep, 1, -1 do redis.call('LPUSH', dkey, keep[i]) end
end
for c in pairs(combos) do
  local empty = true
  for _, st in ipairs(STATES) do
    if redis.call('EXISTS', ikey(st, c)) == 1 then empty = false break end
  end
  if empty then redis.call('SREM', P .. ':c', c) end
end
done(tostring(n))
local out = {'ok', n}
for _, id in ipairs(corrupt) do out[#out + 1] = id end
return out
`

// heartbeatScript: ARGV[4..6] = worker ID, worker JSON, TTL in ms.
// Replies {'ok'|'replay', comma-separated canceled task IDs}.
const heartbeatBody = `
local prev = seen()
if prev then return {'replay', prev} end
local now = nowMS()
local ttl = tonumber(ARGV[6])
redis.call('SET', P .. ':w:' .. ARGV[4], ARGV[5], 'PX', ttl)
redis.call('ZADD', P .. ':ws', now + ttl, ARGV[4])
redis.call('ZREMRANGEBYSCORE', P .. ':ws', '-inf', '(' .. now)
local k = P .. ':wc:' .. ARGV[4]
local ids = redis.call('SMEMBERS', k)
redis.call('DEL', k)
local out = table.concat(ids, ',')
done(out)
return {'ok', out}
`

// removeWorkerScript: ARGV[2] = worker ID. Idempotent by nature.
const removeWorkerBody = `
redis.call('DEL', P .. ':w:' .. ARGV[2], P .. ':wc:' .. ARGV[2])
redis.call('ZREM', P .. ':ws', ARGV[2])
return 1
`

// workersScript replies {id, JSON, ...} for every worker whose heartbeat
// has not expired.
const workersBody = `
local now = nowMS()
local out = {}
for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. ':ws', '(' .. now, '+inf')) do
  local v = redis.call('GET', P .. ':w:' .. w)
  if v then
    out[#out + 1] = w
    out[#out + 1] = v
  end
end
return out
`

// claimScript: KEYS[1] = claim key, ARGV[1] = this call's token, ARGV[2]
// = TTL in ms. A retried call finds its own token and still wins.
const claimScript = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
`

// listScript: ARGV[2..6] = state, queue, type filters (empty: any), cursor
// ID (empty: first page), page size n. Replies {more (0/1), id, record,
// id, record, ...} with at most n tasks, newest (greatest ID) first. The
// candidate index sets are merged here: each is already ordered, so a
// k-way merge with a bytewise comparison (Lua's own string comparison
// follows the server's locale) picks the page.
const listBody = `
local fs, fq, ft, cursor, n = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local states = STATES
if fs ~= '' then states = {fs} end
local max = '+'
if cursor ~= '' then max = '(' .. cursor end
local lists, pos = {}, {}
for _, c in ipairs(redis.call('SMEMBERS', P .. ':c')) do
  local q, t = string.match(c, '^([^:]*):(.*)$')
  if q and (fq == '' or q == fq) and (ft == '' or t == ft) then
    for _, st in ipairs(states) do
      local ids = redis.call('ZREVRANGEBYLEX', ikey(st, c), max, '-', 'LIMIT', 0, n + 1)
      if #ids > 0 then
        lists[#lists + 1] = ids
        pos[#lists] = 1
      end
    end
  end
end
local function less(a, b)
  if a == b then return false end
  local m = math.min(#a, #b)
  for i = 1, m do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local picked = {}
while #picked <= n do
  local best, bid = nil, nil
  for li = 1, #lists do
    local id = lists[li][pos[li]]
    if id and (bid == nil or less(bid, id)) then best, bid = li, id end
  end
  if not best then break end
  picked[#picked + 1] = bid
  pos[best] = pos[best] + 1
end
local out = {0}
if #picked > n then out[1] = 1 end
for i = 1, math.min(n, #picked) do
  out[#out + 1] = picked[i]
  out[#out + 1] = redis.call('GET', tkey(picked[i])) or ''
end
return out
`

// countsScript replies {state, count, state, count, ...}.
const countsBody = `
local counts = {}
for _, c in ipairs(redis.call('SMEMBERS', P .. ':c')) do
  for _, st in ipairs(STATES) do
    counts[st] = (counts[st] or 0) + redis.call('ZCARD', ikey(st, c))
  end
end
local out = {}
for _, st in ipairs(STATES) do
  if counts[st] and counts[st] > 0 then
    out[#out + 1] = st
    out[#out + 1] = counts[st]
  end
end
return out
`

// publishedScript: ARGV[2] = a new score or ”, then id, attempt pairs.
// For each task still waiting at that attempt, it takes the outbox entry
// out (”) or moves it, if there, to the new score. The state and attempt
// are read from the record's head without decoding it: they come before
// the payload, and no head member can contain the pattern. Idempotent by
// nature.
const publishedBody = `
local n = 0
for i = 3, #ARGV, 2 do
  local s = redis.call('GET', tkey(ARGV[i]))
  if s and WAITING[string.match(s, '"s":"(%a+)"')] and string.match(s, '"a":(%d+)') == ARGV[i + 1] then
    if ARGV[2] == '' then
      n = n + redis.call('ZREM', P .. ':o', ARGV[i])
    else
      n = n + redis.call('ZADD', P .. ':o', 'XX', 'CH', ARGV[2], ARGV[i])
    end
  end
end
return n
`

// outboxScript: ARGV[2..3] = exclusive upper score, limit. Replies {id,
// record, ...} in outbox order.
const outboxBody = `
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':o', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local s = redis.call('GET', tkey(id))
  if s then
    out[#out + 1] = id
    out[#out + 1] = s
  end
end
return out
`

var (
	createLua          = redis.NewScript(createScript)
	transitionsScript  = redis.NewScript(luaCore + luaRecord + luaStart + luaFinish + transitionsBody)
	cancelScript       = redis.NewScript(luaCore + luaRecord + cancelBody)
	retryScript        = redis.NewScript(luaCore + luaRecord + retryBody)
	purgeScript        = redis.NewScript(luaCore + luaRecord + purgeBody)
	heartbeatScript    = redis.NewScript(luaCore + heartbeatBody)
	removeWorkerScript = redis.NewScript(luaCore + removeWorkerBody)
	workersScript      = redis.NewScript(luaCore + workersBody)
	claimLua           = redis.NewScript(claimScript)
	listScript         = redis.NewScript(luaCore + listBody)
	countsScript       = redis.NewScript(luaCore + countsBody)
	outboxScript       = redis.NewScript(luaCore + outboxBody)
	publishedScript    = redis.NewScript(luaCore + publishedBody)
)
