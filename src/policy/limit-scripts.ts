/**
 * The Lua scripts behind the limits shared through Redis (shared-limits.ts), and the Redis keys
 * they touch: each check-and-reserve, settlement, renewal, report, seed and release is one script,
 * so it runs whole or not at all, whatever other instances do meanwhile.
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../redis/client.js';
import { RedisReplyError, type RespValue } from '../redis/resp.js';

/** Refills a bucket hash's levels to the server's now: shared by every script but SEED. */
const REFILL = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A level saved under another limit (a reload) keeps what was used: raising a limit gives its difference;
-- the debt stays capped at a minute of the new limit (uncapped, a lowered limit locked a key out for hours).
local function resized(level, was, limit)
  if level == nil then return limit end
  local before = tonumber(was)
  if before == nil or before == limit then return level end
  return math.max(-limit, level + limit - before)
end
local function levels(key, rpm, tpm, now)
  local state = redis.call('HMGET', key, 'r', 't', 'at', 'rl', 'tl')
  local elapsed = math.max(0, now - (tonumber(state[3]) or now))
  local r, t = nil, nil
  if rpm > 0 then r = math.min(rpm, resized(tonumber(state[1]), state[4], rpm) + elapsed * rpm / 60000) end
  if tpm > 0 then t = math.min(tpm, resized(tonumber(state[2]), state[5], tpm) + elapsed * tpm / 60000) end
  return r, t
end
local function save(key, r, t, now, rpm, tpm)
  local fields = {'at', tostring(now)}
  if r ~= nil then table.insert(fields, 'r'); table.insert(fields, tostring(r)); table.insert(fields, 'rl'); table.insert(fields, tostring(rpm)) end
  if t ~= nil then table.insert(fields, 't'); table.insert(fields, tostring(t)); table.insert(fields, 'tl'); table.insert(fields, tostring(tpm)) end
  -- A limit removed (a reload) is gone: added back, it starts full, as in a process (its old level would not have refilled).
  if r == nil then redis.call('HDEL', key, 'r', 'rl') end
  if t == nil then redis.call('HDEL', key, 't', 'tl') end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, 120000)
end
-- What requests in flight hold: running totals in the hash's '~tokens' and '~usd' fields (O(1)),
-- recounted from the reservations themselves every 10 s, which also forgets reservations whose
-- instance died (they stop holding after their hold time, and are dropped after 'keep').
local function held(key, now, keep)
  local totals = redis.call('HMGET', key, '~tokens', '~usd', '~recount')
  if totals[3] and tonumber(totals[3]) > now then
    return math.max(0, tonumber(totals[1]) or 0), math.max(0, tonumber(totals[2]) or 0)
  end
  local tokens, usd = 0, 0
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    if string.sub(entries[i], 1, 1) ~= '~' then
      local expires, created, tok, cost = string.match(entries[i + 1], '^(%d+) (%d+) (%S+) (%S+) %S+$')
      if expires == nil or now - tonumber(created) > keep then
        redis.call('HDEL', key, entries[i])
      elseif tonumber(expires) > now then
        tokens = tokens + tonumber(tok)
        usd = usd + tonumber(cost)
      end
    end
  end
  redis.call('HSET', key, '~tokens', tostring(tokens), '~usd', tostring(usd), '~recount', tostring(now + 10000))
  -- Made here by a refusal or a report, it would otherwise never expire.
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, keep) end
  return tokens, usd
end
local function str(v) if v == nil then return '' end return tostring(v) end
`;

/**
 * KEYS: bucket, spend, held. ARGV: rpm, tpm, max tokens, max USD (0: none), estimate tokens,
 * estimate USD, ticket, hold ms, keep ms, has budget (1/0).
 * → {outcome, requests level, tokens level, spent, held}: `ok`, `requests`, `tokens`, `budget_tokens`, `budget_usd` (spent and held: a budget's).
 */
const ADMIT = `${REFILL}
local now = clock()
local rpm, tpm, maxTokens, maxUsd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[10] == '1' then
  local heldTokens, heldUsd = held(KEYS[3], now, tonumber(ARGV[9]))
  local spent = redis.call('HMGET', KEYS[2], 'tokens', 'usd')
  local tokens, usd = tonumber(spent[1]) or 0, tonumber(spent[2]) or 0
  -- Spent alone past either first: used until the period resets, whatever is held.
  if maxTokens > 0 and tokens >= maxTokens then return {'budget_tokens', '', '', tostring(tokens), tostring(heldTokens)} end
  if maxUsd > 0 and usd >= maxUsd then return {'budget_usd', '', '', tostring(usd), tostring(heldUsd)} end
  if maxTokens > 0 and tokens + heldTokens >= maxTokens then return {'budget_tokens', '', '', tostring(tokens), tostring(heldTokens)} end
  if maxUsd > 0 and usd + heldUsd >= maxUsd then return {'budget_usd', '', '', tostring(usd), tostring(heldUsd)} end
end
local r, t = levels(KEYS[1], rpm, tpm, now)
if r ~= nil and r < 1 then return {'requests', str(r), str(t), ''} end
if t ~= nil and t <= 0 then return {'tokens', str(r), str(t), ''} end
if r ~= nil then r = r - 1 end
-- What the bucket really gave (its debt is capped at a minute's worth, so a dead instance's
-- reservation cannot lock the key for longer): the settlement gives back exactly that.
local taken = 0
if t ~= nil then
  local before = t
  t = math.max(-tpm, t - tonumber(ARGV[5]))
  taken = before - t
end
if r ~= nil or t ~= nil then save(KEYS[1], r, t, now, rpm, tpm) end
redis.call('HSET', KEYS[3], ARGV[7], (now + tonumber(ARGV[8])) .. ' ' .. now .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. tostring(taken))
redis.call('HINCRBYFLOAT', KEYS[3], '~tokens', ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[3], '~usd', ARGV[6])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[9]))
return {'ok', str(r), str(t), ''}
`;

/**
 * KEYS: bucket, spend, held, settled marker. ARGV: ticket, rpm, tpm, tokens, USD, input, output,
 * cache read, cache write, reasoning, unpriced (1/0), spend ttl ms (0: none), mode, count the
 * request (1/0). Modes: `held` (the admission holds a reservation: settling deletes it, and a
 * second settlement finds none and counts nothing), `unsure` (the admission's answer never came:
 * a reservation there may be, and a marker makes the settlement count once), `none` (nothing
 * held). → 1 applied, 0 already settled. The tokens bucket gets back what the admission took.
 */
const SETTLE = `${REFILL}
local mode = ARGV[13]
if mode == 'unsure' and not redis.call('SET', KEYS[4], '1', 'NX', 'PX', 3600000) then return 0 end
local taken = 0
local found = false
if mode ~= 'none' then
  local entry = redis.call('HGET', KEYS[3], ARGV[1])
  if entry then
    found = true
    redis.call('HDEL', KEYS[3], ARGV[1])
    local tok, cost, took = string.match(entry, '(%S+) (%S+) (%S+)$')
    taken = tonumber(took) or 0
    -- Off the running totals (a drift, e.g. from a reservation that outlived its hold, heals at the next recount).
    redis.call('HINCRBYFLOAT', KEYS[3], '~tokens', -(tonumber(tok) or 0))
    redis.call('HINCRBYFLOAT', KEYS[3], '~usd', -(tonumber(cost) or 0))
  elseif mode == 'held' then
    return 0
  end
end
local now = clock()
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
-- A release (a request refused after all) gives back the request its admission took.
local release = ARGV[14] == '0' and found and rpm > 0
-- A request an instance admitted alone while Redis was out (no admission here took it) counts
-- against the requests bucket too, as its tokens do: at most a minute's worth behind.
local unseen = ARGV[14] == '1' and not found and rpm > 0
if tpm > 0 or release or unseen then
  -- Both levels move to now together: the bucket has one clock.
  local r, t = levels(KEYS[1], rpm, tpm, now)
  if t ~= nil then t = math.min(tpm, math.max(-tpm, t - (tonumber(ARGV[4]) - taken))) end
  if release and r ~= nil then r = math.min(rpm, r + 1) end
  if unseen and r ~= nil then r = math.max(-rpm, r - 1) end
  save(KEYS[1], r, t, now, rpm, tpm)
end
if ARGV[14] == '1' then
  redis.call('HINCRBY', KEYS[2], 'requests', 1)
  redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[4])
  redis.call('HINCRBYFLOAT', KEYS[2], 'usd', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'input_tokens', ARGV[6])
  redis.call('HINCRBY', KEYS[2], 'output_tokens', ARGV[7])
  redis.call('HINCRBY', KEYS[2], 'cache_read_tokens', ARGV[8])
  redis.call('HINCRBY', KEYS[2], 'cache_write_tokens', ARGV[9])
  redis.call('HINCRBY', KEYS[2], 'reasoning_tokens', ARGV[10])
  redis.call('HINCRBY', KEYS[2], 'unpriced_requests', ARGV[11])
  if tonumber(ARGV[12]) > 0 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[12])) end
end
return 1
`;

/** KEYS: held. ARGV: hold ms, tickets… → how many were renewed (a ticket settled meanwhile is not there). */
const RENEW = `${REFILL}
local expires = clock() + tonumber(ARGV[1])
local count = 0
for i = 2, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  local rest = entry and string.match(entry, '^%d+ (.*)$')
  if rest then
    redis.call('HSET', KEYS[1], ARGV[i], expires .. ' ' .. rest)
    count = count + 1
  end
end
return count
`;

/** KEYS: bucket, spend, held. ARGV: rpm, tpm, keep ms. → {spend fields…, requests level, tokens level, held tokens, held USD}. */
const REPORT = `${REFILL}
local now = clock()
local r, t = levels(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
local heldTokens, heldUsd = held(KEYS[3], now, tonumber(ARGV[3]))
return {redis.call('HGETALL', KEYS[2]), str(r), str(t), tostring(heldTokens), tostring(heldUsd)}
`;

/**
 * KEYS: held, bucket, spend. ARGV: the marks of workers that died (space-separated), rpm, tpm,
 * spend ttl ms (0: none). Their reservations: each goes, counts as a request of unknown usage, and
 * gives the tokens bucket back what its admission took. → how many.
 */
const RELEASE_OWNER = `${REFILL}
local dead = {}
for mark in string.gmatch(ARGV[1], '%S+') do dead[mark] = true end
local now = clock()
local count, tokens, usd, taken = 0, 0, 0, 0
-- HGETALL, as held() reads them: the commands the README's ACL allows.
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field = entries[i]
  local mark = string.match(field, '^([^:~]+):')
  if mark ~= nil and dead[mark] then
    local expires, tok, cost, took = string.match(entries[i + 1], '^(%S+) %S+ (%S+) (%S+) (%S+)$')
    redis.call('HDEL', KEYS[1], field)
    count = count + 1
    taken = taken + (tonumber(took) or 0)
    -- Off the running totals only what they still count (held() leaves out a hold that ended).
    if (tonumber(expires) or 0) > now then
      tokens = tokens + (tonumber(tok) or 0)
      usd = usd + (tonumber(cost) or 0)
    end
  end
end
if count == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], '~tokens', -tokens)
redis.call('HINCRBYFLOAT', KEYS[1], '~usd', -usd)
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm > 0 then
  local r, t = levels(KEYS[2], rpm, tpm, now)
  save(KEYS[2], r, math.min(tpm, t + taken), now, rpm, tpm)
end
redis.call('HINCRBY', KEYS[3], 'requests', count)
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4])) end
return count
`;

/**
 * KEYS: spend, seeded marker. ARGV: ttl ms (0: none), then field, amount pairs. Adds a state file's
 * spend for a period to what Redis counts, once per key and period (the marker): 1 added, 0 done before.
 */
const SEED = `
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then return 0 end
elseif not redis.call('SET', KEYS[2], '1', 'NX') then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'usd' then redis.call('HINCRBYFLOAT', KEYS[1], 'usd', ARGV[i + 1])
  else redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`;

interface Script {
  readonly text: string;
  readonly sha: string;
}

function script(text: string): Script {
  return { text, sha: createHash('sha1').update(text).digest('hex') };
}

const SCRIPTS = { admit: script(ADMIT), settle: script(SETTLE), renew: script(RENEW), report: script(REPORT), seed: script(SEED), releaseOwner: script(RELEASE_OWNER) };

/** A script by its digest, loaded on first use (NOSCRIPT: after a restart or a SCRIPT FLUSH). */
export async function runScript(client: RedisClient, which: keyof typeof SCRIPTS, keys: readonly string[], args: readonly (string | number)[]): Promise<RespValue> {
  const { sha, text } = SCRIPTS[which];
  try {
    return await client.send(['EVALSHA', sha, keys.length, ...keys, ...args]);
  } catch (err) {
    if (!(err instanceof RedisReplyError) || err.kind !== 'NOSCRIPT') throw err;
    return client.send(['EVAL', text, keys.length, ...keys, ...args]);
  }
}

/** The Redis keys of one virtual key (by digest), in one hash slot (`{…}`): a script's keys stay together on a cluster. */
export function redisKeys(digest: string, period: string): [bucket: string, spend: string, held: string] {
  const base = `llmgw:{${digest}}`;
  return [`${base}:rate`, `${base}:spend:${period}`, `${base}:held`];
}

/** The marker of a settlement that must count once (its admission went unanswered). */
export function settledKey(digest: string, ticket: string): string {
  return `llmgw:{${digest}}:settled:${ticket}`;
}

/** The marker of a state file's spend added to Redis for a key and period. */
export function seededKey(digest: string, period: string): string {
  return `llmgw:{${digest}}:seeded:${period}`;
}
