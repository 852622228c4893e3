/**
 * Several gateway instances (separate processes) sharing limits through a real Redis: a rate
 * limit and a budget hold across instances, under concurrent load and across restarts; Redis
 * killed and restarted mid-load (no crash, no stall, limits resume); REDIS_FAILURE=closed; TLS
 * with a self-signed CA; a password and an ACL user; real-key cool-downs heard by the other
 * instance; settlement counted once.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Metrics, renderPrometheus } from '../src/observe/metrics.js';
import { LimitState, localLimiter, SpendStore, type KeyLimits, type KeySpend } from '../src/policy/limits.js';
import { runScript, seedSpend, SharedLimiter } from '../src/policy/shared-limits.js';
import { RedisClient } from '../src/redis/client.js';
import { parseRedisUrl, type RedisAddress } from '../src/redis/url.js';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { children, connectedTo, ROOT, startGateway, tempDir, waitFor, type GatewayProcess } from './support/gateway.js';
import { chat, openStream, request } from './support/http.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';
import { freePort, NO_REDIS, startRedis, type TestRedis } from './support/redis.js';

const ask = { model: 'mock-echo', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
const get = (gateway: GatewayProcess, path: string, key?: string) => request(gateway.url, path, { method: 'GET', ...(key === undefined ? {} : { key }) });

/** REDIS_TIMEOUT_MS 500: on a busy CI machine a reply can take over the default 100 ms, and a fallback would change what a test counts. */
const TIMEOUT_MS = 500;

/** How many workers serve each instance (GATEWAY_WORKERS), where more than one. */
const workersOf = new WeakMap<GatewayProcess, number>();

async function start(keys: unknown, redisUrl: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gateway = await startGateway({ keys, env: { LOG_CONSOLE: 'off', KEYS_WATCH: 'off', REDIS_URL: redisUrl, REDIS_TIMEOUT_MS: String(TIMEOUT_MS), ...env } });
  if (env.GATEWAY_WORKERS !== undefined) workersOf.set(gateway, Number(env.GATEWAY_WORKERS));
  return gateway;
}

function workers(gateway: GatewayProcess): number {
  return workersOf.get(gateway) ?? 1;
}

/** Connected: every worker of it (/healthz answers for the one worker that takes it). */
async function redisUp(gateway: GatewayProcess): Promise<void> {
  const count = workers(gateway);
  // The instance's gauge is the least of its workers': 1 once every one is connected.
  const up = count === 1 ? async () => (await get(gateway, '/healthz')).json?.redis === 'ok' : async () => /^llm_gateway_redis_up 1$/m.test((await get(gateway, '/metrics')).text);
  await waitFor(up, 'Redis connected', 10_000);
}

function connect(address: RedisAddress): Promise<RedisClient> {
  return new Promise((resolve) => {
    const client: RedisClient = new RedisClient({ address, connectTimeoutMs: 2000, staleMs: 2000, onState: (error) => error === null && resolve(client) });
    client.connect();
  });
}

describe('several instances sharing one Redis', { skip: NO_REDIS }, () => {
  let redis: TestRedis;
  const gateways: GatewayProcess[] = [];
  const keys = {
    virtual_keys: {
      vk_rpm: { name: 'rpm', provider: 'mock', rate_limit: { requests_per_minute: 5 } },
      vk_budget: { name: 'budget', provider: 'mock', budget: { max_tokens: 200, period: 'total' } },
      vk_free: { name: 'free', provider: 'mock' },
      vk_tpm: { name: 'tpm', provider: 'mock', rate_limit: { tokens_per_minute: 30 } },
      vk_outage: { name: 'outage', provider: 'mock', rate_limit: { requests_per_minute: 5 } },
      // Limits it never reaches: every request is checked in Redis.
      vk_busy: { name: 'busy', provider: 'mock', rate_limit: { requests_per_minute: 1_000_000 }, budget: { max_tokens: 1_000_000_000, period: 'total' } },
    },
  };
  before(async () => {
    redis = await startRedis();
    for (let i = 0; i < 2; i++) gateways.push(await start(keys, redis.url(undefined, 1)));
    for (const gateway of gateways) await redisUp(gateway);
  });
  after(async () => {
    for (const gateway of gateways) await gateway.stop();
    await redis?.stop();
  });

  it('holds requests_per_minute across both: the sixth request is refused, whichever instance it reaches', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await chat((gateways[i % 2] as GatewayProcess).url, 'vk_rpm', ask)).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    const refused = await chat((gateways[0] as GatewayProcess).url, 'vk_rpm', ask);
    assert.equal(refused.json.error.code, 'rate_limit_exceeded');
    assert.equal(refused.headers['x-ratelimit-limit-requests'], '5');
    assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
    assert.ok(Number(refused.headers['retry-after']) >= 1);
  });

  it('gives tokens_per_minute back what a request held beyond what it used, on whichever instance asks next', async () => {
    // No max_tokens: the request holds 4,096 output tokens (more than the bucket has) while it runs.
    const reply = await chat((gateways[0] as GatewayProcess).url, 'vk_tpm', { model: 'mock-echo', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.status, 200);
    const used = reply.json.usage.total_tokens as number;
    await waitFor(async () => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_tpm')).json.requests === 1, 'the request settled');
    const state = (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_tpm')).json.rate_limit.tokens_per_minute;
    assert.equal(state.limit, 30);
    assert.equal(state.remaining, 30 - used, 'the bucket lost what the request used, not what it held');
  });

  it('holds a budget across both under concurrent load, and after both restart (one of them with two workers)', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => chat((gateways[i % 2] as GatewayProcess).url, 'vk_budget', ask)));
    const served = results.filter((reply) => reply.status === 200);
    const refused = results.filter((reply) => reply.status === 429);
    assert.equal(served.length + refused.length, 40);
    // Refused for what the others hold while they run (most), or for what they spent once they settled.
    assert.ok(refused.length > 0 && refused.every((reply) => ['budget_held', 'budget_exceeded'].includes(reply.json.error.code)));
    assert.ok(refused.some((reply) => reply.json.error.code === 'budget_held' && /held of 200 in total/.test(reply.json.error.message)), 'the budget in flight, said as Redis counts it');
    let used = served.reduce((sum, reply) => sum + reply.json.usage.total_tokens, 0);
    // An instance settles a request after answering it: the last answers can arrive first.
    await waitFor(async () => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_budget')).json.requests === served.length, 'every answered request settled');
    const usage = (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_budget')).json;
    assert.equal(usage.usage.total_tokens, used, 'both instances counted in one place');
    assert.equal(usage.requests, served.length);
    assert.deepEqual(usage.in_flight, { tokens: 0, cost_usd: 0 }, 'every reservation settled, none left holding');
    // Each request in flight held its prompt and max_tokens (~15 tokens), more than it used: the budget held.
    assert.ok(used <= 200, `${used} tokens used of 200`);

    for (const gateway of gateways.splice(0)) await gateway.stop();
    // The second instance now has two workers: three processes share the key's budget (and the later tests' limits).
    for (const workers of ['1', '2']) gateways.push(await start(keys, redis.url(undefined, 1), { STATE_FILE: 'off', GATEWAY_WORKERS: workers }));
    for (const gateway of gateways) await redisUp(gateway);
    const after = (await get(gateways[0] as GatewayProcess, '/v1/usage', 'vk_budget')).json;
    assert.equal(after.usage.total_tokens, used, 'kept in Redis, not in the (now off) state files');
    // What is left is spent one request at a time, on each instance in turn, until one is refused.
    // Each waits until the one before has settled (a reservation still held would refuse a
    // request the budget has room for, and the refusal would not hold once it settled).
    const settled = async (): Promise<boolean> => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_budget')).json.in_flight.tokens === 0;
    let refusal: Awaited<ReturnType<typeof chat>> | null = null;
    for (let i = 0; refusal === null && i < 200; i++) {
      await waitFor(settled, 'the request before settled');
      const reply = await chat((gateways[i % 2] as GatewayProcess).url, 'vk_budget', ask);
      if (reply.status === 200) used += reply.json.usage.total_tokens as number;
      else refusal = reply;
    }
    assert.equal(refusal?.status, 429);
    assert.equal(refusal?.json.error.code, 'budget_exceeded');
    await waitFor(async () => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_budget')).json.usage.total_tokens === used, 'every request counted, whichever process served it');
    // Refused once what was spent plus the request's own hold (its prompt and max_tokens, ~15 tokens) would pass 200; never admitted past it.
    assert.ok(used > 200 - 30 && used < 200 + 15, `refused once the budget was spent, not long before nor after: ${used} tokens`);
    // The refusal holds in every process: each worker of the second instance asks Redis.
    for (let i = 0; i < 4; i++) assert.equal((await chat((gateways[1] as GatewayProcess).url, 'vk_budget', ask)).status, 429);
  });

  it('survives Redis killed and restarted mid-load: no crash, no stalled request, limits shared again after', async () => {
    const latencies: number[] = [];
    const statuses = new Map<number, number>();
    let running = true;
    const load = Array.from({ length: 4 }, async (_, worker) => {
      while (running) {
        const started = performance.now();
        const reply = await chat((gateways[worker % 2] as GatewayProcess).url, 'vk_busy', ask);
        latencies.push(performance.now() - started);
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await redis.kill();
    await waitFor(async () => (await get(gateways[0] as GatewayProcess, '/healthz')).json?.redis === 'unavailable', 'the outage seen');
    const health = await get(gateways[0] as GatewayProcess, '/healthz');
    assert.equal(health.status, 200, 'the instance stays in the load balancer');
    assert.deepEqual(health.json, { status: 'ok', redis: 'unavailable' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await redis.restart();
    for (const gateway of gateways) await redisUp(gateway);
    await new Promise((resolve) => setTimeout(resolve, 200));
    running = false;
    await Promise.all(load);
    assert.deepEqual([...statuses.keys()], [200], `every request served: ${JSON.stringify([...statuses])}`);
    assert.ok(Math.max(...latencies) < 2000, `the slowest request took ${Math.max(...latencies)} ms`);
    for (const gateway of gateways) {
      assert.equal(gateway.child.exitCode, null, 'still running');
      // Said, and not over and over (a reply slower than REDIS_TIMEOUT_MS on a busy machine may be an episode of its own).
      // (Each worker of an instance has its own connection, and says so.)
      const warnings = gateway.stderr().match(/Redis \(redis:\/\/127\.0\.0\.1:\d+\/1\) cannot be used/g)?.length ?? 0;
      assert.ok(warnings >= 1 && warnings <= 2 * workers(gateway), `warned once for the outage: ${gateway.stderr()}`);
      assert.match(gateway.stderr(), /Redis \(redis:\/\/127\.0\.0\.1:\d+\/1\) is back: limits are shared again/);
      const metrics = (await get(gateway, '/metrics')).text;
      assert.match(metrics, /^llm_gateway_redis_up 1$/m, 'every worker connected');
      assert.match(metrics, /^llm_gateway_redis_errors_total\{kind="unavailable"\} \d+$/m);
      assert.match(metrics, /^llm_gateway_redis_duration_seconds_count\{operation="settle"\} \d+$/m);
    }
    // The restarted Redis is empty: the rate limit starts afresh and holds across both again.
    const statusesAfter: number[] = [];
    for (let i = 0; i < 7; i++) statusesAfter.push((await chat((gateways[i % 2] as GatewayProcess).url, 'vk_rpm', ask)).status);
    assert.deepEqual(statusesAfter, [200, 200, 200, 200, 200, 429, 429]);
  });

  it("counts the requests an instance admitted alone while Redis was down against the shared requests_per_minute once it is back", async () => {
    await redis.kill();
    await waitFor(async () => (await get(gateways[0] as GatewayProcess, '/healthz')).json?.redis === 'unavailable', 'the outage seen');
    for (let i = 0; i < 3; i++) assert.equal((await chat((gateways[0] as GatewayProcess).url, 'vk_outage', ask)).status, 200, 'decided here alone');
    await redis.restart();
    for (const gateway of gateways) await redisUp(gateway);
    await waitFor(async () => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_outage')).json?.requests === 3, 'the three counted in Redis');
    // 5 a minute, 3 used: two more, on either instance.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await chat((gateways[i % 2] as GatewayProcess).url, 'vk_outage', ask)).status);
    assert.deepEqual(statuses, [200, 200, 429, 429]);
  });

  it('serves on when Redis stops answering (SIGSTOP), and counts each request once when it answers again', async () => {
    const busy = async (gateway: GatewayProcess) => (await get(gateway, '/v1/usage', 'vk_busy')).json;
    await waitFor(async () => (await busy(gateways[0] as GatewayProcess)).in_flight.tokens === 0, 'earlier requests settled');
    const before = (await busy(gateways[0] as GatewayProcess)).requests as number;
    const warned = gateways.map((gateway) => gateway.stderr().match(/cannot be used/g)?.length ?? 0);
    redis.signal('SIGSTOP');
    let served = 0;
    try {
      for (let i = 0; i < 6; i++) {
        const started = performance.now();
        const reply = await chat((gateways[i % 2] as GatewayProcess).url, 'vk_busy', ask);
        assert.equal(reply.status, 200);
        // REDIS_TIMEOUT_MS, then the instance decides alone: never a stall.
        assert.ok(performance.now() - started < TIMEOUT_MS + 1000, `request ${i} waited ${performance.now() - started} ms`);
        served++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal((await get(gateways[0] as GatewayProcess, '/healthz')).json.redis, 'unavailable');
    } finally {
      redis.signal('SIGCONT');
    }
    for (const gateway of gateways) await redisUp(gateway);
    await waitFor(async () => ((await busy(gateways[1] as GatewayProcess)).requests as number) >= before + served, 'the settlements that waited sent');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await busy(gateways[1] as GatewayProcess);
    assert.equal(after.requests, before + served, 'each request counted once, not once per retry');
    assert.deepEqual(after.in_flight, { tokens: 0, cost_usd: 0 }, 'no reservation left behind by an admission that timed out');
    gateways.forEach((gateway, i) => {
      // Once for the stall (and perhaps once more for a slow reply as it resumes): not once per reconnection.
      const now = gateway.stderr().match(/cannot be used/g)?.length ?? 0;
      assert.ok(now - (warned[i] as number) <= 2 * workers(gateway), `warned once per outage: ${gateway.stderr()}`);
    });
  });

  it('says Redis is back once it answers in time again, with no request to notice it (an idle instance)', async () => {
    const gateway = gateways[0] as GatewayProcess;
    await redisUp(gateway);
    redis.signal('SIGSTOP');
    try {
      // A report that waited REDIS_TIMEOUT_MS: answered from this instance's own counts, on a connection still up, and said to be.
      const partial = await get(gateway, '/v1/usage', 'vk_budget');
      assert.equal(partial.status, 200);
      assert.equal(partial.json.partial, true, "this instance's own count: another's requests are not in it");
      assert.equal((await get(gateway, '/healthz')).json.redis, 'unavailable');
    } finally {
      redis.signal('SIGCONT');
    }
    // Nothing but /healthz, which asks nothing of Redis.
    await waitFor(async () => (await get(gateway, '/healthz')).json.redis === 'ok', 'Redis said back without a request', 5000);
    assert.match(gateway.stderr(), /is back: limits are shared again/);
    assert.equal((await get(gateway, '/v1/usage', 'vk_budget')).json.partial, undefined, 'the whole count again, with Redis');
  });

  it('says once that a Redis slower than REDIS_TIMEOUT_MS cannot be used, not "back" whenever a late reply comes', async () => {
    // Redis behind a proxy that holds each of its replies longer than the timeout.
    const proxy = net.createServer((client) => {
      const upstream = net.connect(redis.port, '127.0.0.1');
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream);
      upstream.on('data', (data: Buffer) => setTimeout(() => client.writable && client.write(data), TIMEOUT_MS * 1.5));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const slow = await start(keys, `redis://127.0.0.1:${(proxy.address() as net.AddressInfo).port}/1`);
    try {
      // Its connection's handshake is slow too: once it is up, the checks begin.
      await waitFor(async () => (await get(slow, '/healthz')).json.redis === 'ok', 'connected', 10_000);
      const before = slow.stderr().length;
      for (let i = 0; i < 12; i++) assert.equal((await chat(slow.url, 'vk_busy', ask)).status, 200, 'served, each limit check decided here');
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS * 2));
      const said = slow.stderr().slice(before).match(/cannot be used|is back/g) ?? [];
      assert.deepEqual(said, ['cannot be used'], slow.stderr());
      assert.equal((await get(slow, '/healthz')).json.redis, 'unavailable');
    } finally {
      await slow.stop();
      proxy.close();
    }
  });

  it('keeps the settlements Redis refuses while out of memory, and sends them once it takes writes again', async () => {
    const busy = async (gateway: GatewayProcess) => (await get(gateway, '/v1/usage', 'vk_busy')).json;
    await waitFor(async () => (await busy(gateways[0] as GatewayProcess)).in_flight.tokens === 0, 'earlier requests settled');
    const before = (await busy(gateways[0] as GatewayProcess)).requests as number;
    const admin = await connect(parseRedisUrl(redis.url(undefined, 1)) as RedisAddress);
    let served = 0;
    try {
      await admin.send(['CONFIG', 'SET', 'maxmemory', '1']);
      for (let i = 0; i < 4; i++) {
        assert.equal((await chat((gateways[i % 2] as GatewayProcess).url, 'vk_busy', ask)).status, 200, 'decided here meanwhile (REDIS_FAILURE=open)');
        served++;
      }
    } finally {
      await admin.send(['CONFIG', 'SET', 'maxmemory', '0']);
      admin.close();
    }
    // The next admission Redis answers ends the outage; what waited is sent then.
    for (const gateway of gateways) assert.equal((await chat(gateway.url, 'vk_busy', ask)).status, 200);
    await waitFor(async () => ((await busy(gateways[1] as GatewayProcess)).requests as number) >= before + served + 2, 'the refused settlements sent again');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await busy(gateways[1] as GatewayProcess)).requests, before + served + 2, 'each counted once');
  });

  it('holds an absurd max_tokens as a large but exact number, and gives all of it back', async () => {
    const reply = await chat((gateways[0] as GatewayProcess).url, 'vk_busy', { ...ask, max_tokens: 1e23 });
    assert.equal(reply.status, 200);
    await waitFor(async () => (await get(gateways[1] as GatewayProcess, '/v1/usage', 'vk_busy')).json.in_flight.tokens === 0, 'nothing held after it settled');
  });

  it('releases what Redis reserves for an admission it answered too late, which this instance then refused (REDIS_FAILURE=open)', async () => {
    // Several instances (or workers) see a stall in different orders: here, one whose own count has
    // used the key's one request a minute that Redis has not counted yet.
    const client = await connect(parseRedisUrl(redis.url(undefined, 3)) as RedisAddress);
    try {
      const key: KeyLimits = { digest: 'stalled', rateLimit: { requestsPerMinute: 1, tokensPerMinute: null }, budget: { maxTokens: 100_000, maxUsd: null, period: 'total' } };
      const local = new LimitState(new SpendStore(null));
      assert.equal(local.admit(key, { tokens: 10, usd: 0 }).error, null);
      const limiter = new SharedLimiter({ client, local: localLimiter(local), timeoutMs: 200, holdMs: 120_000, failure: 'open', metrics: new Metrics() });
      redis.signal('SIGSTOP');
      let refused;
      try {
        refused = await limiter.admit(key, { tokens: 4_000, usd: 0 }, 'req-stalled');
      } finally {
        redis.signal('SIGCONT');
      }
      assert.equal(refused.error?.status, 429, 'decided here, where the one request a minute is used');
      // One connection answers in order: once PING is answered, the late admission and whatever followed it ran.
      assert.equal(await client.send(['PING']), 'PONG');
      const held = 'llmgw:{stalled}:held';
      assert.equal(await client.send(['HGET', held, 'req-stalled']), null, 'no reservation left for a request that never ran');
      assert.deepEqual(await client.send(['HMGET', held, '~tokens']), ['0']);
      assert.equal(await client.send(['HGET', 'llmgw:{stalled}:spend:total', 'requests']), null, 'and nothing counted');
    } finally {
      client.close();
    }
  });

  it('renews the holds of running requests of a key with a budget, in several calls, and no others', async () => {
    const client = await connect(parseRedisUrl(redis.url(undefined, 4)) as RedisAddress);
    try {
      const metrics = new Metrics();
      const limiter = new SharedLimiter({ client, local: localLimiter(new LimitState(new SpendStore(null))), timeoutMs: 2000, holdMs: 1500, failure: 'open', metrics });
      const budgeted: KeyLimits = { digest: 'renewed', rateLimit: null, budget: { maxTokens: 1e12, maxUsd: null, period: 'total' } };
      const rated: KeyLimits = { digest: 'rated', rateLimit: { requestsPerMinute: 1e9, tokensPerMinute: null }, budget: null };
      const admitted = [];
      for (let i = 0; i < 1_200; i++) admitted.push(limiter.admit(budgeted, { tokens: 10, usd: 0 }, `req-${i}`));
      admitted.push(limiter.admit(rated, { tokens: 10, usd: 0 }, 'req-rated'));
      const results = await Promise.all(admitted);
      for (const admission of results) assert.equal(admission.error, null);
      assert.deepEqual([results.at(-1)?.where, results.at(-1)?.lease], ['shared', null], 'the rate-limited key: admitted in Redis, no lease');
      // Past the hold: renewed every 0.5 s, each still holds; the rate-limited key's was never renewed.
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      const [seconds, micros] = (await client.send(['TIME'])) as string[];
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const entries = (await client.send(['HGETALL', 'llmgw:{renewed}:held'])) as string[];
      const expiries: number[] = [];
      for (let i = 0; i < entries.length; i += 2) if (!String(entries[i]).startsWith('~')) expiries.push(Number(String(entries[i + 1]).split(' ')[0]));
      assert.equal(expiries.length, 1_200);
      assert.ok(expiries.every((expires) => expires > now), 'every running request still holds');
      const rated_ = String(await client.send(['HGET', 'llmgw:{rated}:held', 'req-rated']));
      assert.ok(Number(rated_.split(' ')[0]) < now, 'a key without a budget: nothing renewed');
      const calls = /^llm_gateway_redis_duration_seconds_count\{operation="renew"\} (\d+)$/m.exec(renderPrometheus(metrics.snapshot({ gauges: {}, counters: {} })))?.[1];
      assert.ok(Number(calls) >= 3, `several calls (at most 500 each) renewed 1,200: ${calls}`);
    } finally {
      client.close();
    }
  });

  it('settles a request once, however often its settlement is sent; adds a state file\'s spend once', async () => {
    const address = parseRedisUrl(redis.url(undefined, 2)) as RedisAddress;
    const client = await connect(address);
    try {
      const keys = ['llmgw:{d}:rate', 'llmgw:{d}:spend:total', 'llmgw:{d}:held'];
      const admitted = await runScript(client, 'admit', keys, [0, 0, 1000, 0, 50, 0, 'req-1', 3_600_000, 86_400_000, 1]);
      assert.deepEqual(admitted, ['ok', '', '', '']);
      // ticket, rpm, tpm, tokens, usd, input, output, cache read, cache write, reasoning, unpriced, ttl, mode, counts
      const settle = (ticket: string, mode: string) => runScript(client, 'settle', [...keys, `llmgw:{d}:settled:${ticket}`], [ticket, 0, 0, 30, 0.25, 20, 10, 0, 0, 0, 0, 0, mode, 1]);
      assert.equal(await settle('req-1', 'held'), 1);
      assert.equal(await settle('req-1', 'held'), 0, 'the second time: already settled');
      assert.deepEqual(await client.send(['HMGET', keys[1] as string, 'requests', 'tokens', 'usd']), ['1', '30', '0.25']);
      // An admission whose answer never came: settled once whether it reserved or not.
      assert.equal(await settle('req-2', 'unsure'), 1);
      assert.equal(await settle('req-2', 'unsure'), 0, 'sent again after a lost answer: counted once');
      assert.deepEqual(await client.send(['HMGET', keys[1] as string, 'requests', 'tokens']), ['2', '60']);
      assert.deepEqual(await client.send(['HMGET', keys[2] as string, '~tokens', '~usd']), ['0', '0'], 'nothing left held');

      // One budget spent past its limit is used up, even where the other is only held full (as the local authority says).
      const order = ['llmgw:{o}:rate', 'llmgw:{o}:spend:total', 'llmgw:{o}:held'];
      const now = Date.now();
      await client.send(['HSET', order[1] as string, 'tokens', '10', 'usd', '0.02']);
      await client.send(['HSET', order[2] as string, 'long-request', `${now + 3_600_000} ${now} 995 0 0`]);
      assert.deepEqual(await runScript(client, 'admit', order, [0, 0, 1000, 0.01, 0, 0, 'req-o', 3_600_000, 86_400_000, 1]), ['budget_usd', '', '', '0.02', '0']);

      // Dead workers' reservations, by their marks: released and counted once, another's kept; a hold
      // that already ended comes off nothing (the running totals no longer count it).
      const owned = ['llmgw:{w}:held', 'llmgw:{w}:rate', 'llmgw:{w}:spend:total'];
      await runScript(client, 'admit', [owned[1] as string, owned[2] as string, owned[0] as string], [0, 0, 10_000, 0, 100, 0, 'deadA:r1', 3_600_000, 86_400_000, 1]);
      await runScript(client, 'admit', [owned[1] as string, owned[2] as string, owned[0] as string], [0, 0, 10_000, 0, 200, 0, 'deadB:r2', 3_600_000, 86_400_000, 1]);
      await runScript(client, 'admit', [owned[1] as string, owned[2] as string, owned[0] as string], [0, 0, 10_000, 0, 400, 0, 'alive:r3', 3_600_000, 86_400_000, 1]);
      await client.send(['HSET', owned[0] as string, 'deadA:r0', `${Date.now() - 1000} ${Date.now() - 3_601_000} 800 0 0`]);
      assert.equal(await runScript(client, 'releaseOwner', owned, ['deadA deadB', 0, 0, 0]), 3);
      assert.equal(await runScript(client, 'releaseOwner', owned, ['deadA deadB', 0, 0, 0]), 0, 'asked twice: nothing more');
      assert.deepEqual(await client.send(['HKEYS', owned[0] as string]), ['~tokens', '~usd', '~recount', 'alive:r3']);
      assert.deepEqual(await client.send(['HMGET', owned[0] as string, '~tokens']), ['400'], 'the live one still held, the ended one not taken off twice');
      assert.equal(await client.send(['HGET', owned[2] as string, 'requests']), '3');

      // The state file's spend is added once per key and period, to what Redis already counts.
      const month = `month:${new Date().toISOString().slice(0, 7)}`;
      await client.send(['HSET', `llmgw:{d2}:spend:${month}`, 'requests', '1', 'tokens', '20', 'usd', '0.5']);
      const spent = (period: string, tokens: number, usd: number): KeySpend => ({ period, requests: 3, tokens, usd, input_tokens: tokens, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0, unpriced_requests: 0 });
      const entries: Array<[string, KeySpend]> = [['d2', spent(month, 300, 1.5)], ['d3', spent('month:2020-01', 1, 0)]];
      assert.equal(await seedSpend(client, entries), 1, 'the current period only');
      assert.equal(await seedSpend(client, entries), 0, 'never twice (another instance, a restart)');
      assert.deepEqual(await client.send(['HMGET', `llmgw:{d2}:spend:${month}`, 'requests', 'tokens', 'usd']), ['4', '320', '2']);
      assert.ok((await client.send(['PTTL', `llmgw:{d2}:spend:${month}`])) as number > 0, 'a month counter expires on its own');
    } finally {
      client.close();
    }
  });
});

describe('Redis with credentials, TLS, and a closed failure policy', { skip: NO_REDIS }, () => {
  const keys = { virtual_keys: { vk_rpm: { provider: 'mock', rate_limit: { requests_per_minute: 2 } }, vk_free: { provider: 'mock' } } };

  it('connects with a password, and with an ACL user; a wrong password is reported without the password, and traffic flows', async () => {
    // The README's ACL rules, exactly: the gateway needs no more.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const rules = /^user gateway on >… (.*)$/m.exec(readme)?.[1];
    assert.ok(rules !== undefined, 'the README shows the ACL rules');
    const redis = await startRedis({ password: 'default-s3cret', user: ['gateway', 'acl-s3cret', rules] });
    // Targets nobody listens on: their circuits open at once, which is announced and stored in Redis (and read at start).
    const nowhere = { provider: 'openai', api_key: 'sk-nowhere', base_url: `http://127.0.0.1:${await freePort()}/v1` };
    const withCircuit = { virtual_keys: { ...keys.virtual_keys, vk_fb: { circuit_breaker: { failures: 1, cooldown_ms: 60_000 }, targets: [nowhere, nowhere] } } };
    try {
      for (const [db, credentials] of [':default-s3cret', 'gateway:acl-s3cret'].entries()) {
        const gateway = await start(withCircuit, redis.url(credentials, db), { UPSTREAM_RETRIES: '0' });
        try {
          await redisUp(gateway);
          assert.equal((await chat(gateway.url, 'vk_fb', ask)).status, 502);
          const statuses = [];
          for (let i = 0; i < 3; i++) statuses.push((await chat(gateway.url, 'vk_rpm', ask)).status);
          assert.deepEqual(statuses, [200, 200, 429], credentials);
          assert.doesNotMatch(gateway.stderr(), /Redis refused/, 'every command the gateway sends is allowed');
        } finally {
          await gateway.stop();
        }
      }
      const wrong = await start(keys, redis.url('gateway:not-the-password'));
      try {
        await waitFor(() => /Redis \(redis:\/\/gateway@127\.0\.0\.1:\d+\/0\) cannot be used \(.*WRONGPASS/.test(wrong.stderr()), 'the refusal reported');
        assert.doesNotMatch(wrong.stderr(), /not-the-password/);
        assert.equal((await get(wrong, '/healthz')).json.redis, 'unavailable');
        assert.equal((await chat(wrong.url, 'vk_rpm', ask)).status, 200, 'REDIS_FAILURE=open: decided by the instance alone');
      } finally {
        await wrong.stop();
      }
    } finally {
      await redis.stop();
    }
  });

  it('speaks TLS to rediss:// with a self-signed CA from NODE_EXTRA_CA_CERTS, and refuses a certificate it cannot verify', async () => {
    const redis = await startRedis({ tls: true });
    try {
      const gateway = await start(keys, redis.url(), { NODE_EXTRA_CA_CERTS: redis.caFile });
      try {
        await redisUp(gateway);
        const statuses = [];
        for (let i = 0; i < 3; i++) statuses.push((await chat(gateway.url, 'vk_rpm', ask)).status);
        assert.deepEqual(statuses, [200, 200, 429]);
      } finally {
        await gateway.stop();
      }
      const untrusted = await start(keys, redis.url());
      try {
        await waitFor(() => /Redis \(rediss:\/\/localhost:\d+\/0\) cannot be used \(.*certificate/i.test(untrusted.stderr()), 'the certificate refused');
        assert.equal((await get(untrusted, '/healthz')).json.redis, 'unavailable');
      } finally {
        await untrusted.stop();
      }
    } finally {
      await redis.stop();
    }
  });

  it('REDIS_FAILURE=closed refuses the requests of keys with limits while Redis is down (503), and serves the others', async () => {
    const redis = await startRedis();
    const gateway = await start(keys, redis.url(), { REDIS_FAILURE: 'closed' });
    try {
      await redisUp(gateway);
      // An admission whose answer comes too late: refused here, and given back there (its request too).
      redis.signal('SIGSTOP');
      const late = await chat(gateway.url, 'vk_rpm', ask);
      redis.signal('SIGCONT');
      assert.equal(late.status, 503);
      await redisUp(gateway);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const state = (await get(gateway, '/v1/usage', 'vk_rpm')).json;
      assert.equal(state.requests, 0);
      assert.equal(state.rate_limit.requests_per_minute.remaining, 2, 'the refused request took nothing');
      assert.deepEqual(state.in_flight, { tokens: 0, cost_usd: 0 });
      await redis.kill();
      await waitFor(async () => (await get(gateway, '/healthz')).json.redis === 'unavailable', 'the outage seen');
      const refused = await chat(gateway.url, 'vk_rpm', ask);
      assert.equal(refused.status, 503);
      assert.equal(refused.json.error.code, 'limits_unavailable');
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal((await chat(gateway.url, 'vk_free', ask)).status, 200, 'a key without limits has nothing to check');
      assert.match((await get(gateway, '/metrics')).text, /^llm_gateway_redis_fallbacks_total\{policy="closed"\} 2$/m);
    } finally {
      await gateway.stop();
      await redis.stop();
    }
  });
});

describe('real-key cool-downs and open circuits shared between instances', { skip: NO_REDIS }, () => {
  let redis: TestRedis;
  let openai: MockUpstream;
  before(async () => {
    redis = await startRedis();
    openai = await startOpenAIMock({ flavor: 'openai', apiKey: 'sk-cool-A-1111', otherKeys: ['sk-cool-B-2222'] });
  });
  after(async () => {
    await openai?.close();
    await redis?.stop();
  });

  it('a key one instance saw rate-limited, and a target whose circuit it opened, are skipped by the other too, and by an instance started later', async () => {
    const failing = 'sk-fail-C-3333';
    const keys = {
      virtual_keys: {
        vk_pool: { provider: 'openai', api_keys: ['sk-cool-A-1111', 'sk-cool-B-2222'], base_url: openai.baseUrl },
        vk_targets: { circuit_breaker: { failures: 2, cooldown_ms: 60_000 }, targets: [{ provider: 'openai', api_key: failing, base_url: openai.baseUrl }, { provider: 'openai', api_key: 'sk-cool-B-2222', base_url: openai.baseUrl }] },
      },
    };
    const hi = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    const first = await start(keys, redis.url());
    const second = await start(keys, redis.url());
    let late: GatewayProcess | null = null;
    const client = await connect(parseRedisUrl(redis.url()) as RedisAddress);
    try {
      await redisUp(first);
      await redisUp(second);
      // Key A is rate limited (for a minute) once; the first target of vk_targets always fails.
      let limited = false;
      openai.behave(({ req, res }) => {
        const failed = req.headers.authorization === `Bearer ${failing}`;
        if (!failed && (limited || req.headers.authorization !== 'Bearer sk-cool-A-1111')) return false;
        limited ||= !failed;
        res.writeHead(failed ? 500 : 429, { 'content-type': 'application/json', 'retry-after': '60' });
        res.end(JSON.stringify(failed ? openAIError('The server had an error', 'server_error') : openAIError('Rate limit reached', 'requests', 'rate_limit_exceeded')));
        return true;
      });
      assert.equal((await chat(first.url, 'vk_pool', hi)).status, 200, 'the first instance moved to key B');
      for (let i = 0; i < 2; i++) assert.equal((await chat(first.url, 'vk_targets', hi)).status, 200, 'the first instance fell back to the second target');
      const from = openai.requests.length;
      await new Promise((resolve) => setTimeout(resolve, 200)); // the news travels
      const askEach = async (gateway: GatewayProcess): Promise<void> => {
        for (let i = 0; i < 4; i++) assert.equal((await chat(gateway.url, 'vk_pool', hi)).status, 200);
        for (let i = 0; i < 2; i++) assert.equal((await chat(gateway.url, 'vk_targets', hi)).status, 200);
      };
      await askEach(second);
      const used = () => openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
      assert.deepEqual(used(), Array(6).fill('Bearer sk-cool-B-2222'), 'the second instance never tried key A, nor the target whose circuit is open');

      // Both pauses are kept in Redis until they end, for the instances that were not listening.
      const digest = (key: string) => createHash('sha256').update(key).digest('base64');
      const cooling = (await client.send(['PTTL', `llmgw:{${digest('vk_pool')}}:cool:0:0`])) as number;
      const open = (await client.send(['PTTL', `llmgw:{${digest('vk_targets')}}:open:0`])) as number;
      assert.ok(cooling > 0 && cooling <= 60_000 && open > 0 && open <= 60_000, `stored with their expiry: ${cooling} ms, ${open} ms`);
      late = await start(keys, redis.url());
      await redisUp(late);
      await askEach(late);
      assert.deepEqual(used(), Array(12).fill('Bearer sk-cool-B-2222'), 'an instance started later skips them too');
    } finally {
      openai.behave(null);
      client.close();
      await first.stop();
      await second.stop();
      await late?.stop();
    }
  });
});

describe('a worker killed outright, with Redis', { skip: NO_REDIS }, () => {
  it('has its reservations released by a worker that lives: the budget they held comes back, each counted as a request', async () => {
    // As the README's ACL user: the release runs only commands it allows.
    const rules = /^user gateway on >… (.*)$/m.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];
    assert.ok(rules !== undefined, 'the README shows the ACL rules');
    const redis = await startRedis({ password: 'default-s3cret', user: ['gateway', 'acl-s3cret', rules] });
    const openai = await startOpenAIMock({ flavor: 'openai', apiKey: 'sk-held-1111' });
    // Streams that wait until released: requests in flight on both workers.
    const waiting: Array<() => void> = [];
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: object, finish: string | null) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: 'hi' }, null));
      await new Promise<void>((resolve) => waiting.push(resolve));
      res.end(`${chunk({}, 'stop')}data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } })}\n\ndata: [DONE]\n\n`);
      return true;
    });
    const keys = { virtual_keys: { vk_held: { provider: 'openai', api_key: 'sk-held-1111', base_url: openai.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } } } };
    const gateway = await start(keys, redis.url('gateway:acl-s3cret'), { GATEWAY_WORKERS: '2' });
    const streams: Array<Awaited<ReturnType<typeof openStream>>> = [];
    try {
      await redisUp(gateway);
      await waitFor(() => children(gateway.child.pid as number).length === 2, 'two workers');
      // Fresh connections are spread over the workers by the kernel: enough that both hold some.
      for (let i = 0; i < 12; i++) streams.push(await openStream(gateway.url, 'vk_held', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
      await waitFor(() => waiting.length === 12, 'twelve streams at the provider');
      const usage = async () => (await get(gateway, '/v1/usage', 'vk_held')).json;
      assert.ok((await usage()).in_flight.tokens > 0, 'held while they run');
      const [victim] = children(gateway.child.pid as number);
      process.kill(victim as number, 'SIGKILL');
      await waitFor(() => /released \d+ reservations? in Redis of a worker that died/.test(gateway.stderr()), 'the dead worker\'s reservations released', 10_000);
      for (const release of waiting.splice(0)) release();
      await waitFor(async () => (await usage()).in_flight.tokens === 0, 'nothing held once the live worker\'s streams end', 10_000);
      const after = await usage();
      assert.equal(after.requests, 12, 'every request counted: those of the dead worker as of unknown usage');
      const released = Number(/released (\d+) reservation/.exec(gateway.stderr())?.[1]);
      assert.equal(after.usage.total_tokens, 6 * (12 - released), 'the others as they were used');
    } finally {
      for (const release of waiting.splice(0)) release();
      for (const { req } of streams) req.destroy();
      await gateway.stop();
      await openai.close();
      await redis.stop();
    }
  });
});

describe('a stop, and what requests hold in Redis', { skip: NO_REDIS }, () => {
  let redis: TestRedis;
  let openai: MockUpstream;
  /** Streams that wait, at the provider, until released. */
  const waiting: Array<() => void> = [];
  const keys = () => ({ virtual_keys: { vk_held: { provider: 'openai', api_key: 'sk-held-1111', base_url: openai.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } } } });
  before(async () => {
    redis = await startRedis();
    openai = await startOpenAIMock({ flavor: 'openai', apiKey: 'sk-held-1111' });
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }] })}\n\n`);
      await new Promise<void>((resolve) => waiting.push(resolve));
      res.end();
      return true;
    });
  });
  after(async () => {
    for (const release of waiting.splice(0)) release();
    await openai?.close();
    await redis?.stop();
  });

  async function flush(): Promise<void> {
    const client = await connect(parseRedisUrl(redis.url()) as RedisAddress);
    await client.send(['FLUSHALL']);
    client.close();
  }

  /** What another instance sees of the key once `gateway` has stopped. */
  async function seenAfter(gateway: GatewayProcess): Promise<{ requests: number; in_flight: unknown }> {
    assert.equal(await gateway.exited, 0);
    const later = await start(keys(), redis.url());
    try {
      await redisUp(later);
      return (await get(later, '/v1/usage', 'vk_held')).json;
    } finally {
      await later.stop();
    }
  }

  it('settles in Redis the streams a stop cancels before it closes the connection: nothing held an hour for other instances, each counted', async () => {
    await flush();
    const gateway = await start(keys(), redis.url(), { GATEWAY_SHUTDOWN_TIMEOUT_MS: '300' });
    const streams: Array<Awaited<ReturnType<typeof openStream>>> = [];
    try {
      await redisUp(gateway);
      for (let i = 0; i < 12; i++) streams.push(await openStream(gateway.url, 'vk_held', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
      await waitFor(() => waiting.length === 12, 'twelve streams at the provider');
      gateway.child.kill('SIGTERM');
      const usage = await seenAfter(gateway);
      assert.deepEqual(usage.in_flight, { tokens: 0, cost_usd: 0 });
      assert.equal(usage.requests, 12);
    } finally {
      for (const release of waiting.splice(0)) release();
      for (const { req } of streams) req.destroy();
      await gateway.stop('SIGKILL');
    }
  });

  it('lets go of what an instance killed outright held after REDIS_HOLD_MS, while a live instance keeps renewing its long streams\' holds', async () => {
    await flush();
    const both = { virtual_keys: { vk_lives: { ...keys().virtual_keys.vk_held }, vk_dies: { ...keys().virtual_keys.vk_held } } };
    // Held 1.5 s unless renewed (every 0.5 s); what requests hold is recounted from the reservations every 10 s.
    const env = { REDIS_HOLD_MS: '1500' };
    const living = await start(both, redis.url(), env);
    const dying = await start(both, redis.url(), env);
    const streams: Array<Awaited<ReturnType<typeof openStream>>> = [];
    const held = async (key: string) => (await get(living, '/v1/usage', key)).json.in_flight.tokens as number;
    try {
      await redisUp(living);
      await redisUp(dying);
      const body = { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 0; i < 3; i++) streams.push(await openStream(living.url, 'vk_lives', body));
      for (let i = 0; i < 3; i++) streams.push(await openStream(dying.url, 'vk_dies', body));
      await waitFor(() => waiting.length === 6, 'six streams at the provider');
      assert.ok((await held('vk_dies')) > 0 && (await held('vk_lives')) > 0, 'both held while they run');
      await dying.stop('SIGKILL');
      await waitFor(async () => (await held('vk_dies')) === 0, 'the killed instance\'s holds let go', 20_000);
      // The live key's next read recounts its reservations too (its streams began first): past their first hold by now.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.ok((await held('vk_lives')) > 0, 'a stream longer than the hold still holds: its instance renewed it');
      for (const release of waiting.splice(0)) release();
      await waitFor(async () => (await held('vk_lives')) === 0, 'let go once they end');
      assert.equal((await get(living, '/v1/usage', 'vk_lives')).json.requests, 3);
    } finally {
      for (const release of waiting.splice(0)) release();
      for (const { req } of streams) req.destroy();
      await living.stop('SIGKILL');
      await dying.stop('SIGKILL');
    }
  });

  it('has a worker release what a worker killed just before held, before it closes its connection to Redis (Redis stalled meanwhile)', async () => {
    await flush();
    const gateway = await start(keys(), redis.url(), { GATEWAY_WORKERS: '2' });
    let open: Awaited<ReturnType<typeof openStream>> | undefined;
    try {
      await redisUp(gateway);
      await waitFor(() => children(gateway.child.pid as number).length === 2, 'two workers');
      // One stream: the other worker has nothing in flight, so it would stop (and close its
      // connection to Redis) at once, with the release still waiting for Redis; it waits for it.
      open = await openStream(gateway.url, 'vk_held', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      await waitFor(() => waiting.length === 1, 'the stream at the provider');
      const holder = children(gateway.child.pid as number).find((pid) => connectedTo(pid, Number(new URL(openai.baseUrl).port)));
      assert.ok(holder !== undefined, 'the worker that took it');
      redis.signal('SIGSTOP');
      try {
        process.kill(holder, 'SIGKILL');
        await waitFor(() => /died \(SIGKILL\)/.test(gateway.stderr()), 'the death noticed');
        gateway.child.kill('SIGTERM');
        await new Promise((resolve) => setTimeout(resolve, 800));
      } finally {
        redis.signal('SIGCONT');
      }
      const usage = await seenAfter(gateway);
      assert.deepEqual(usage.in_flight, { tokens: 0, cost_usd: 0 });
      assert.equal(usage.requests, 1, 'counted, of unknown usage');
      assert.match(gateway.stderr(), /released 1 reservation in Redis of a worker that died/);
    } finally {
      for (const release of waiting.splice(0)) release();
      open?.req.destroy();
      await gateway.stop('SIGKILL');
    }
  });
});

describe('the state file migrated to Redis', { skip: NO_REDIS }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it('adds the state file\'s spend to what Redis counted while it was down, once, even after a run that never reached Redis', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'state.json');
    const digest = createHash('sha256').update('vk_seed').digest('base64');
    const month = `month:${new Date().toISOString().slice(0, 7)}`;
    writeFileSync(stateFile, JSON.stringify({ version: 2, spend: { [digest]: { [month]: { period: month, requests: 9, tokens: 900, usd: 0, input_tokens: 900, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0, unpriced_requests: 0 } } } }));
    await redis.kill();
    const keys = { virtual_keys: { vk_seed: { provider: 'mock', budget: { max_tokens: 10_000, period: 'month' } } } };
    // Runs that never reach Redis (with workers: the primary holds the file; without): the file still holds spend to migrate.
    let used = 0;
    for (const [run, workers] of ['2', '1'].entries()) {
      const alone = await start(keys, redis.url(), { STATE_FILE: stateFile, GATEWAY_WORKERS: workers });
      try {
        const reply = await chat(alone.url, 'vk_seed', ask);
        assert.equal(reply.status, 200, 'served while Redis is down');
        used = reply.json.usage.total_tokens as number;
      } finally {
        await alone.stop();
      }
      const written = readFileSync(stateFile, 'utf8');
      assert.match(written, new RegExp(`"tokens": ${900 + (run + 1) * used},`));
      assert.doesNotMatch(written, /counted_in_redis/, `nothing of it reached Redis (GATEWAY_WORKERS=${workers})`);
    }
    const gateway = await start(keys, redis.url(), { STATE_FILE: stateFile });
    try {
      const reply = await chat(gateway.url, 'vk_seed', ask);
      assert.equal(reply.status, 200, 'served while Redis is down');
      await redis.restart();
      await redisUp(gateway);
      await waitFor(async () => (await get(gateway, '/v1/usage', 'vk_seed')).json.usage.total_tokens === 900 + 3 * used, 'the file\'s spend (the earlier runs\' requests too) and the request counted', 10_000);
      assert.match(gateway.stderr(), /the spend of 1 key in the state file was added to what Redis counts/);
    } finally {
      await gateway.stop();
    }
    // The file now says its spend is counted in Redis: a restart adds nothing again.
    assert.match(readFileSync(stateFile, 'utf8'), /"counted_in_redis": true/);
    const again = await start(keys, redis.url(), { STATE_FILE: stateFile });
    try {
      await redisUp(again);
      assert.equal((await chat(again.url, 'vk_seed', ask)).status, 200);
      await waitFor(async () => (await get(again, '/v1/usage', 'vk_seed')).json.requests === 13, 'the request counted');
      const usage = (await get(again, '/v1/usage', 'vk_seed')).json;
      assert.equal(usage.usage.total_tokens, 900 + 4 * used, 'the file was not added a second time');
      assert.doesNotMatch(again.stderr(), /was added to what Redis counts/);
    } finally {
      await again.stop();
    }
  });
});

/**
 * A server on Redis's protocol that answers the gateway's handshake as Redis does, and every
 * script with `reply` (RESP text): something else listening where Redis should be, or a Redis
 * that answers in a shape the scripts never give.
 */
async function startOddRedis(reply: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const { createServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = '';
    socket.on('data', (data) => {
      pending += data.toString('latin1');
      // Whole commands only: an array of bulk strings.
      for (;;) {
        const head = /^\*(\d+)\r\n/.exec(pending);
        if (head === null) return;
        let at = head[0].length;
        const args: string[] = [];
        for (let i = 0; i < Number(head[1]); i++) {
          const bulk = /^\$(\d+)\r\n/.exec(pending.slice(at));
          if (bulk === null || pending.length < at + bulk[0].length + Number(bulk[1]) + 2) return;
          at += bulk[0].length;
          args.push(pending.slice(at, at + Number(bulk[1])));
          at += Number(bulk[1]) + 2;
        }
        pending = pending.slice(at);
        const command = (args[0] ?? '').toUpperCase();
        if (command === 'PING') socket.write('+PONG\r\n');
        else if (command === 'SUBSCRIBE') for (const channel of args.slice(1)) socket.write(`*3\r\n$9\r\nsubscribe\r\n$${channel.length}\r\n${channel}\r\n:1\r\n`);
        else if (command === 'EVALSHA' || command === 'EVAL') socket.write(reply);
        else socket.write('+OK\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('a Redis that answers the limits scripts in a shape they never give', () => {
  const keys = {
    virtual_keys: {
      vk_rpm: { name: 'rpm', provider: 'mock', rate_limit: { requests_per_minute: 5 } },
      vk_budget: { name: 'budget', provider: 'mock', budget: { max_tokens: 200, period: 'total' } },
    },
  };
  const replies = {
    'an integer': ':5\r\n',
    // What the settle script answers: settlements go through, yet nothing says Redis is back.
    'a zero': ':0\r\n',
    'a one': ':1\r\n',
    'a status': '+ok\r\n',
    'nil': '$-1\r\n',
    'an empty array': '*0\r\n',
    'an outcome the script never gives': '*4\r\n$5\r\nweird\r\n:1\r\n:1\r\n:1\r\n',
    // The key has no tokens-per-minute limit: this outcome cannot be its script's.
    'a tokens outcome for a key without that limit': '*4\r\n$6\r\ntokens\r\n:1\r\n:0\r\n:0\r\n',
  };

  it('is a Redis failure: REDIS_FAILURE=closed refuses with 503, open decides here and serves; /v1/usage answers', async () => {
    for (const [what, reply] of Object.entries(replies)) {
      const redis = await startOddRedis(reply);
      const closed = await start(keys, redis.url, { REDIS_FAILURE: 'closed' });
      const open = await start(keys, redis.url, { REDIS_FAILURE: 'open' });
      try {
        for (const key of ['vk_rpm', 'vk_budget']) {
          const refused = await chat(closed.url, key, ask);
          assert.equal(refused.status, 503, `${what}, ${key}: ${refused.text}`);
          assert.equal(refused.json.error.code, 'limits_unavailable');
          const served = await chat(open.url, key, ask);
          assert.equal(served.status, 200, `${what}, ${key}: ${served.text}`);
          const usage = await get(open, '/v1/usage', key);
          assert.equal(usage.status, 200, `${what}, ${key}: ${usage.text}`);
        }
        await waitFor(() => /unexpected reply from the admit script/.test(open.stderr()), 'the failure said on stderr');
        assert.equal(open.stderr().match(/cannot be used/g)?.length, 1, `${what}: said once, not per request`);
      } finally {
        await closed.stop();
        await open.stop();
        await redis.stop();
      }
    }
  });
});
