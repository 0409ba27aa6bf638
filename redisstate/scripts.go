package redisstate

import "github.com/redis/go-redis/v9"

// The fleet's state for one breaker lives in three keys that share a hash
// tag, so a Redis Cluster keeps them in one slot:
//
//	<prefix>{<name>}      hash: st (state), ep (epoch), fl (fleet-wide
//	                      consecutive failures), ou (open until, ms of
//	                      Redis's clock), sc (successful probes), sq (streak
//	                      sequence: grows when a streak starts or ends), rs
//	                      (reason of the last transition), lu (expiry of the
//	                      last probe lease, 0 when none is live), by
//	                      (replica whose call made the last transition;
//	                      absent when a replica of the previous version made
//	                      it)
//	<prefix>{<name>}:r    set: replicas that reported the current streak (quorum)
//	<prefix>{<name>}:l    hash: probe leases, "<replica>:<slot>" → expiry (ms)
//	<prefix>{<name>}:e    list: evidence, newest first, at most 10 entries
//	                      "<replica> <ms of Redis's clock> <description>": the
//	                      failures of the current streak, or the failed probe
//	                      that reopened the fleet (Evidence)
//
// Every decision is one script, so it is atomic. Times come from Redis's own
// TIME and leave Redis only as remaining durations. The epoch grows with every
// transition and is at least Redis's clock in ms, so it keeps growing across
// a restart that lost the keys; so does the streak sequence, which orders
// news of streaks within an epoch. A missing hash is a CLOSED fleet with no
// streak (epoch 0); the keys expire after a day without writes.
//
// Each transition, and each start of a streak, is published twice (see
// doc.go, "Wire format"): as v1 on <prefix>events:v1,
//
//	{"v":1,"key":"<hash key>","ep":"<epoch>","st":"<state>","ms":<remaining ms>,
//	 "streak":<true|false>,"sq":"<streak seq>","rs":"<reason>",
//	 "by":"<replica>","ev":["<evidence entry>",...]}
//
// where "by" (the replica whose call made the transition) and "ev" (the
// evidence list, with a transition to OPEN) are optional: replicas of the
// previous version neither write nor read them.
//
// and as v0, for replicas of the previous version, on <prefix>events:
//
//	<epoch> <state> <remaining ms> <streak 0|1> <streak seq> <reason> <hash key>
//
// Every script replies with {version 1, granted 0|1, retry ms, state, epoch,
// remaining ms, streak 0|1, streak seq, reason of the last transition,
// restored 0|1, replica that made the last transition ("" if not known),
// evidence published with a transition to OPEN this call made (else empty)};
// epochs and sequences travel as decimal strings (Lua's numbers are
// doubles).
//
// Replicas of the previous version run their own scripts on the same hash:
// its fields, and their meaning, are part of the wire format. A field Redis
// holds that is not a number where one is due reads as 0 (a hash with epoch 0
// is a lost one, and is restored).
//
// Redis can lose a breaker's state without any connection fault: its keys
// evicted (maxmemory) or deleted, Redis restarted empty or failed over to a
// replica that lagged. A replica knows when that happened: it applied an epoch
// in which the fleet was not CLOSED (it "holds" that state), and the hash now
// has a lower epoch, since epochs only grow otherwise. The first script call of
// such a replica that finds the loss restores the fleet's state from the
// replica's own (its OPEN with the time left, or HALF_OPEN with this caller's
// probe lease) as a new epoch, publishes it like any transition, and says so
// in its reply (restored 1): exactly one replica logs and counts each loss,
// the others adopt the restored state by pub/sub and find no loss any more.
const prelude = `
local K, R, L, E = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local T = redis.call('TIME')
local now = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local ttl = tonumber(ARGV[1])
local channel = ARGV[2] -- v0's; v1's is channel .. ':v1'

local function num(v)
  return tonumber(v or '0') or 0
end
local f = redis.call('HMGET', K, 'st', 'ep', 'fl', 'ou', 'sc', 'sq', 'rs', 'lu', 'ef', 'by')
local s = {st = f[1] or 'closed', ep = num(f[2]), fl = num(f[3]), ou = num(f[4]), sc = num(f[5]), sq = num(f[6]),
           rs = f[7] or '', lu = num(f[8]), ef = num(f[9]), by = f[10] or ''}
local caller = '' -- the replica calling: each script sets it from its arguments
local opened = {} -- evidence published with a transition to OPEN this call made

-- leasesLost says the probe leases were lost (the lease hash evicted alone)
-- while one was live: the hash holds the last lease's expiry until the
-- leases run out or report, and Redis deletes an empty hash.
local function leasesLost()
  return s.lu > now and redis.call('EXISTS', L) == 0
end
if s.st == 'open' and now >= s.ou then
  -- the open timeout ended: HALF_OPEN, lazily (replicas run their own timers)
  s.st, s.rs = 'half_open', 'open_timeout'
  redis.call('HSET', K, 'st', 'half_open', 'rs', 'open_timeout')
end

local function remaining()
  if s.st == 'open' then return math.max(s.ou - now, 1) end
  return 0
end

local function streak()
  if s.st == 'closed' and s.fl > 0 then return 1 end
  return 0
end

local function publish(reason)
  local ms, streaking = remaining(), streak()
  local m = {v = 1, key = K, ep = string.format('%d', s.ep), st = s.st, ms = ms,
    streak = streaking == 1, sq = string.format('%d', s.sq), rs = reason}
  if s.by ~= '' then m.by = s.by end
  if #opened > 0 then m.ev = opened end
  redis.call('PUBLISH', channel .. ':v1', cjson.encode(m))
  redis.call('PUBLISH', channel, string.format('%d %s %d %d %d %s %s', s.ep, s.st, ms, streaking, s.sq, reason, K))
end

local function bump()
  s.sq = math.max(s.sq + 1, now)
  redis.call('HSET', K, 'sq', string.format('%d', s.sq))
end

local function touch()
  redis.call('PEXPIRE', K, ttl)
end

-- note keeps n failures the caller reported (at most the list's 10) as
-- evidence, with the caller's description of the last of them.
local function note(n, detail)
  local t = redis.call('TYPE', E).ok
  if t ~= 'list' and t ~= 'none' then redis.call('DEL', E) end -- not ours: evidence only informs
  for _ = 1, math.min(n, 10) do
    redis.call('LPUSH', E, caller .. ' ' .. string.format('%d', now) .. ' ' .. detail)
  end
  redis.call('LTRIM', E, 0, 9)
  redis.call('PEXPIRE', E, ttl)
end

local function transition(to, open_ms, reason)
  s.ep = math.max(s.ep + 1, now, s.ef + 1)
  s.sq = math.max(s.sq + 1, now)
  s.st, s.fl, s.sc, s.ou, s.rs, s.by = to, 0, 0, 0, reason, caller
  if to == 'open' then s.ou = now + open_ms end
  if reason == 'failure_threshold' or reason == 'probe_failed' then opened = redis.call('LRANGE', E, 0, 9) end
  redis.call('DEL', K, R, L)
  redis.call('HSET', K, 'st', to, 'ep', string.format('%d', s.ep), 'ou', string.format('%d', s.ou), 'fl', 0, 'sc', 0,
    'sq', string.format('%d', s.sq), 'rs', reason, 'lu', 0, 'by', caller)
  touch()
  publish(reason)
end

local restored = 0

-- catchUp keeps epochs from going backwards. A caller that applied epoch
-- known, above the hash's, finds that Redis lost the keys or failed over to
-- a primary that lagged, whose clock may also be behind the epochs the
-- replicas applied (epochs come from TIME). The next transition is numbered
-- above known (the floor ef, dropped with the hash at that transition), and a
-- state other than CLOSED that the fleet reached meanwhile at a lower epoch
-- is published again above known, for the replicas that ignore lower epochs.
local function catchUp(known)
  if known <= s.ep or known <= s.ef then return end
  s.ef = known
  redis.call('HSET', K, 'ef', string.format('%d', known))
  touch()
  if s.st ~= 'closed' then
    s.ep = math.max(now, known + 1)
    redis.call('HSET', K, 'ep', string.format('%d', s.ep))
    publish('renumbered')
  end
end

-- lost says the fleet lost the state that a replica which applied epoch
-- known with the fleet not CLOSED (held 1) still holds.
local function lost(known, held)
  return held == 1 and known > s.ep
end

-- restore republishes a lost state as a new epoch, above every epoch a
-- replica may have applied.
local function restore(known, to, open_ms)
  s.ep = math.max(s.ep, known)
  transition(to, open_ms, 'restored')
  restored = 1
end

local function reply(granted, retry)
  return {1, granted, retry, s.st, string.format('%d', s.ep), remaining(), streak(), string.format('%d', s.sq), s.rs, restored,
    s.by, opened}
end
`

// reportScript applies a replica's outcomes in order.
// ARGV: ttl, channel, replica, known epoch, failure threshold, open ms,
// successes to close, quorum, held (1: the replica holds the fleet's state of
// the known epoch, which was not CLOSED), then the outcomes in order:
// "f<n>[:<description>]" n consecutive failures, "s" a success ending a
// streak, "p<s|f|i><slot>:<open ms>[:<description>]" a probe's outcome. A known epoch of -1 means "the current one": the
// replica's own manual action, queued before these outcomes, made it.
var reportScript = redis.NewScript(prelude + `
local replica, known = ARGV[3], tonumber(ARGV[4])
caller = replica
local threshold, open_ms, needed, quorum, held = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
catchUp(known)
for i = 10, #ARGV do
  local e = ARGV[i]
  local c = string.sub(e, 1, 1)
  if c == 'f' then
    local sep = string.find(e, ':', 2, true)
    local n, detail = tonumber(string.sub(e, 2, (sep or 0) - 1)), ''
    if sep then detail = string.sub(e, sep + 1) end
    -- a failure observed under an older epoch tells nothing about this one
    if s.st == 'closed' and (known >= s.ep or known < 0) then
      local first = s.fl == 0
      if first then
        redis.call('DEL', R, E) -- reporters and evidence of an older streak
        bump()
      end
      note(n, detail)
      s.fl = s.fl + n
      redis.call('HSET', K, 'fl', s.fl)
      redis.call('SADD', R, replica)
      redis.call('PEXPIRE', R, ttl)
      touch()
      if first then publish('streak') end
      if s.fl >= threshold and redis.call('SCARD', R) >= quorum then
        transition('open', open_ms, 'failure_threshold')
      end
    end
  elseif c == 's' then
    if s.st == 'closed' and s.fl > 0 and (known >= s.ep or known < 0) then
      s.fl = 0
      redis.call('HSET', K, 'fl', 0)
      redis.call('DEL', R)
      bump()
    end
  elseif c == 'p' then
    local o = string.sub(e, 2, 2)
    local sep = string.find(e, ':', 3, true)
    local lease = replica .. ':' .. string.sub(e, 3, sep - 1)
    local sep2 = string.find(e, ':', sep + 1, true)
    local om, detail = tonumber(string.sub(e, sep + 1, (sep2 or 0) - 1)), ''
    if sep2 then detail = string.sub(e, sep2 + 1) end
    if om <= 0 then om = open_ms end
    -- only a probe that still holds its lease counts; an expired one was
    -- given to another replica
    local leased = redis.call('HDEL', L, lease) == 1 or leasesLost()
    if leased and s.lu > 0 and redis.call('EXISTS', L) == 0 then
      s.lu = 0 -- the last live lease reported
      redis.call('HSET', K, 'lu', 0)
    end
    if lost(known, held) then
      -- the fleet lost its state while this probe ran: its outcome re-forms
      -- the fleet (a failure as OPEN, anything else as HALF_OPEN it counts in)
      if o == 'f' then
        restore(known, 'open', om)
      else
        restore(known, 'half_open', 0)
      end
      leased = o ~= 'f'
    end
    if leased and s.st == 'half_open' then
      if o == 's' then
        s.sc = s.sc + 1
        redis.call('HSET', K, 'sc', s.sc)
        if s.sc >= needed then transition('closed', 0, 'probes_succeeded') end
      elseif o == 'f' then
        redis.call('DEL', E) -- the reopening's evidence is the failed probe
        note(1, detail)
        transition('open', om, 'probe_failed')
      end
    end
  end
end
return reply(0, 0)
`)

// acquireScript leases a probe slot. A replica that holds the fleet's
// HALF_OPEN (or the OPEN it came from) and finds the state lost restores the
// fleet's HALF_OPEN with its own lease: the others are refused again.
// ARGV: ttl, channel, replica, slot, probe slots, lease ms, known epoch, held.
var acquireScript = redis.NewScript(prelude + `
local lease, slots, lease_ms = ARGV[3] .. ':' .. ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
caller = ARGV[3]
local known, holds = tonumber(ARGV[7]), tonumber(ARGV[8])
catchUp(known)
if lost(known, holds) then
  restore(known, 'half_open', 0)
end
if s.st == 'half_open' then
  local held, soonest = 0, nil
  local all = redis.call('HGETALL', L)
  for i = 1, #all, 2 do
    local exp = tonumber(all[i + 1])
    if exp <= now then
      redis.call('HDEL', L, all[i]) -- its holder died or hung: the slot is free
    else
      held = held + 1
      if soonest == nil or exp < soonest then soonest = exp end
    end
  end
  if held >= slots then return reply(0, soonest - now) end
  if held == 0 and leasesLost() then return reply(0, s.lu - now) end
  redis.call('HSET', L, lease, now + lease_ms)
  s.lu = math.max(s.lu, now + lease_ms)
  redis.call('HSET', K, 'lu', string.format('%d', s.lu))
  redis.call('PEXPIRE', L, ttl)
  return reply(1, 0)
elseif s.st == 'open' then
  return reply(0, remaining())
elseif s.st == 'forced_open' then
  return reply(0, 1000)
end
-- CLOSED (or disabled) fleet-wide: this replica opened on its own counts,
-- and its probes are its own affair.
return reply(1, 0)
`)

// syncScript reads the fleet's state, and optionally changes it.
// ARGV: ttl, channel, mode, state, open ms, reason, known epoch, held, the
// highest epoch the replica applied (for catchUp: known is -1 for an
// operator's action that applies whatever the epoch), replica. Modes:
// "read"; "force" (an operator's action: applies unless the fleet made a
// transition the operator had not seen, or always with known -1); "join" (a state
// the replica holds on its own, published only if the fleet has none: the
// fleet is CLOSED and made no transition the replica has not seen, or it
// lost its keys; a state the replica held from the fleet is then restored);
// "restore" (the state the replica holds from the fleet, restored only if
// Redis lost it).
var syncScript = redis.NewScript(prelude + `
local mode, to, open_ms, reason, known, held = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
caller = ARGV[10]
catchUp(math.max(known, tonumber(ARGV[9])))
if mode == 'force' and (s.ep <= known or known < 0) and (s.st ~= to or to == 'closed') then
  transition(to, open_ms, reason)
elseif (mode == 'join' or mode == 'restore') and lost(known, held) then
  restore(known, to, open_ms)
elseif mode == 'join' and s.st == 'closed' and s.ep <= known then
  transition(to, open_ms, reason)
end
return reply(0, 0)
`)

var allScripts = []*redis.Script{reportScript, acquireScript, syncScript}
