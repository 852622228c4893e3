/**
 * Several gateway instances (separate processes) sharing limits through a real Redis: a rate
 * limit and a budget hold across instances, under concurrent load and across restarts; Redis
 * killed, stopped and restarted mid-load (no crash, no stall, limits resume); settlement counted
 * once. The rest (credentials, TLS, stops, killed workers) is in redis-operations.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Metrics, renderPrometheus } from '../src/observe/metrics.js';
import { LimitState, localLimiter, periodId, type KeyLimits } from '../src/policy/limits.js';
import { SpendStore, type KeySpend } from '../src/policy/spend-store.js';
import { runScript } from '../src/policy/limit-scripts.js';
import { seedSpend, SharedLimiter } from '../src/policy/shared-limits.js';
import { RedisClient } from '../src/redis/client.js';
import { parseRedisUrl, type RedisAddress } from '../src/redis/url.js';
import { waitFor, type GatewayProcess } from './support/gateway.js';
import { chat } from './support/http.js';
import { NO_REDIS, startRedis, type TestRedis } from './support/redis.js';
import { ask, connect, get, REDIS_WAIT_MS, redisUp, start, workers } from './support/redis-instances.js';

/**
 * Redis (on `port`) behind a proxy whose network is what `network()` says at each byte: passing
 * them, dropping every one (a partition: what is written is lost, not held in a socket's buffer
 * for a Redis that wakes up, as with SIGSTOP), or holding each reply that many ms.
 */
async function behindProxy(port: number, network: () => 'up' | 'dropping' | number): Promise<{ port: number; close: () => void }> {
  const proxy = net.createServer((socket) => {
    const upstream = net.connect(port, '127.0.0.1');
    socket.on('data', (data: Buffer) => void (network() === 'dropping' || upstream.write(data)));
    upstream.on('data', (data: Buffer) => {
      const now = network();
      if (typeof now === 'number') setTimeout(() => socket.writable && socket.write(data), now);
      else if (now === 'up') socket.write(data);
    });
    for (const [one, other] of [[socket, upstream], [upstream, socket]] as const) {
      one.on('error', () => other.destroy());
      one.on('close', () => other.destroy());
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return { port: (proxy.address() as net.AddressInfo).port, close: () => proxy.close() };
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
        assert.ok(performance.now() - started < REDIS_WAIT_MS + 1000, `request ${i} waited ${performance.now() - started} ms`);
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
    // stderr is a pipe of its own: its line may arrive after the answer that followed it.
    await waitFor(() => /is back: limits are shared again/.test(gateway.stderr()), 'said to be back');
    assert.equal((await get(gateway, '/v1/usage', 'vk_budget')).json.partial, undefined, 'the whole count again, with Redis');
  });

  it('says once that a Redis slower than REDIS_TIMEOUT_MS cannot be used, not "back" whenever a late reply comes', async () => {
    // Redis behind a proxy that holds each of its replies longer than the timeout.
    const proxy = await behindProxy(redis.port, () => REDIS_WAIT_MS * 1.5);
    const slow = await start(keys, `redis://127.0.0.1:${proxy.port}/1`);
    try {
      // Its connection's handshake is slow too: once it is up, the checks begin.
      await waitFor(async () => (await get(slow, '/healthz')).json.redis === 'ok', 'connected', 10_000);
      const before = slow.stderr().length;
      for (let i = 0; i < 12; i++) assert.equal((await chat(slow.url, 'vk_busy', ask)).status, 200, 'served, each limit check decided here');
      await new Promise((resolve) => setTimeout(resolve, REDIS_WAIT_MS * 2));
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

  it('keeps what was used when a limit changes (a reload on one instance before another): raised, its difference is there at once', async () => {
    const client = await connect(parseRedisUrl(redis.url(undefined, 4)) as RedisAddress);
    try {
      const limiter = new SharedLimiter({ client, local: localLimiter(new LimitState(new SpendStore(null))), timeoutMs: 2000, holdMs: 120_000, failure: 'open', metrics: new Metrics() });
      const at = (rpm: number): KeyLimits => ({ digest: 'resized', rateLimit: { requestsPerMinute: rpm, tokensPerMinute: null }, budget: null });
      for (let i = 0; i < 3; i++) assert.equal((await limiter.admit(at(5), { tokens: 0, usd: 0 }, `r${i}`)).error, null);
      const raised = await limiter.admit(at(10), { tokens: 0, usd: 0 }, 'r3');
      assert.equal(raised.error, null);
      assert.equal(raised.headers['x-ratelimit-remaining-requests'], '6', '10 less the 4 used');
      // An instance not reloaded yet sees the same 4 used under its own limit: one more, then none.
      const old = await limiter.admit(at(5), { tokens: 0, usd: 0 }, 'r4');
      assert.equal(old.error, null);
      assert.equal(old.headers['x-ratelimit-remaining-requests'], '0');
      assert.equal((await limiter.admit(at(5), { tokens: 0, usd: 0 }, 'r5')).error?.status, 429);
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await limiter.admit(at(10), { tokens: 0, usd: 0 }, `s${i}`)).error?.status ?? 200);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], '10 less the 5 used');
      // Removed by a reload (the key keeps a tokens_per_minute, saved meanwhile), then added back: full, as in a process.
      const tokensOnly: KeyLimits = { digest: 'resized', rateLimit: { requestsPerMinute: null, tokensPerMinute: 1_000_000 }, budget: null };
      assert.equal((await limiter.admit(tokensOnly, { tokens: 10, usd: 0 }, 't0')).error, null);
      const back = await limiter.admit(at(10), { tokens: 0, usd: 0 }, 'b0');
      assert.equal(back.error, null);
      assert.equal(back.headers['x-ratelimit-remaining-requests'], '9');
    } finally {
      client.close();
    }
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

  it('sends what was settled while a connection Redis closed when idle was made again, once it is (no outage said)', async () => {
    let limiter: SharedLimiter | null = null;
    const client = new RedisClient({ address: parseRedisUrl(redis.url(undefined, 5)) as RedisAddress, connectTimeoutMs: 1000, staleMs: 1000, onState: (error) => limiter?.connectionChanged(error) });
    limiter = new SharedLimiter({ client, local: localLimiter(new LimitState(new SpendStore(null))), timeoutMs: 2000, holdMs: 120_000, failure: 'open', metrics: new Metrics() });
    client.connect();
    try {
      await waitFor(() => client.isReady, 'connected');
      const key: KeyLimits = { digest: 'remade', rateLimit: null, budget: { maxTokens: 1_000_000, maxUsd: null, period: 'total' } };
      const admitted = await limiter.admit(key, { tokens: 10, usd: 0 }, 'req-remade');
      assert.equal(admitted.error, null);
      await new Promise((resolve) => setTimeout(resolve, 1100)); // up a while, idle
      // The request ends just as the connection, closed cleanly (as Redis's timeout does), is made again.
      const internals = client as unknown as { socket: net.Socket; connect: () => void };
      const connectAgain = internals.connect.bind(client);
      internals.connect = () => {
        internals.connect = connectAgain;
        limiter?.record(key, { tokens: 5, usd: 0, usage: null, unpriced: false }, { charge: { tokens: 10, usd: 0 }, where: admitted.where ?? 'shared', ticket: admitted.ticket ?? null, lease: admitted.lease ?? null });
        connectAgain();
      };
      internals.socket.destroy();
      await waitFor(async () => (await client.send(['HGET', 'llmgw:{remade}:spend:total', 'requests']).catch(() => null)) === '1', 'the settlement counted');
      assert.equal(limiter.waiting, 0);
      assert.equal(limiter.healthy, true);
    } finally {
      client.close();
    }
  });

  it('counts what requests decided here while Redis was out settle: held while its connection delivers nothing (then lost), sent while a late reply, even a refusal, shows it does', async () => {
    // Between them, a network that drops every byte, or one that is slow (150 ms a reply).
    let network: 'up' | 'dropping' | 'slow' = 'up';
    const proxy = await behindProxy(redis.port, () => (network === 'slow' ? 150 : network));
    // A user whose keys are the gateway's counts only: the probe's write is refused (NOPERM), which is a reply all the same.
    const admin = await connect(parseRedisUrl(redis.url(undefined, 6)) as RedisAddress);
    await admin.send(['ACL', 'SETUSER', 'counts-only', 'on', '>pw', '~llmgw:{*', '~llmgw:counting', '&*', '+@all']);
    admin.close();
    const url = new URL(redis.url('counts-only:pw', 6));
    url.port = String(proxy.port);
    let limiter: SharedLimiter | null = null;
    // Given up after 1 s without a reply: well past a slow reply's 150 ms, however busy the machine.
    const client = new RedisClient({ address: parseRedisUrl(url.href) as RedisAddress, connectTimeoutMs: 1000, staleMs: 1000, onState: (error) => limiter?.connectionChanged(error) });
    limiter = new SharedLimiter({ client, local: localLimiter(new LimitState(new SpendStore(null))), timeoutMs: 100, holdMs: 120_000, failure: 'open', metrics: new Metrics() });
    client.connect();
    const limited: KeyLimits = { digest: 'stall-settled', rateLimit: null, budget: { maxTokens: 1_000_000, maxUsd: null, period: 'total' } };
    const unlimited: KeyLimits = { digest: 'stall-unlimited', rateLimit: null, budget: null };
    const spent = { tokens: 5, usd: 0, usage: null, unpriced: false };
    const requests = async (key: KeyLimits): Promise<unknown> => client.send(['HGET', `llmgw:{${key.digest}}:spend:${periodId(key.budget?.period ?? 'month', new Date())}`, 'requests']);
    // Two requests of a key with a budget (one whose check went unanswered, one decided here at once) and one of a key without limits.
    const serveTwoAndOne = async (tag: string): Promise<void> => {
      const timedOut = await limiter.admit(limited, { tokens: 10, usd: 0 }, `req-${tag}-timed-out`);
      const decidedHere = await limiter.admit(limited, { tokens: 10, usd: 0 }, `req-${tag}-here`);
      assert.deepEqual([timedOut.where, decidedHere.where ?? 'local'], ['unsure', 'local']);
      for (const admission of [timedOut, decidedHere]) limiter.record(limited, spent, { charge: { tokens: 10, usd: 0 }, where: admission.where ?? 'local', ticket: admission.ticket ?? null, lease: admission.lease ?? null });
      limiter.record(unlimited, spent, { charge: { tokens: 0, usd: 0 }, where: 'none', ticket: null });
    };
    try {
      await waitFor(() => client.isReady, 'connected');
      network = 'dropping';
      await serveTwoAndOne('dropped');
      await new Promise((resolve) => setTimeout(resolve, 1400)); // past staleMs: the connection is given up
      network = 'up';
      await waitFor(() => limiter?.healthy === true && limiter.waiting === 0, 'Redis back, the settlements sent', 5000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual([await requests(limited), await requests(unlimited)], ['2', '1'], 'each counted, once');

      // Slower than REDIS_TIMEOUT_MS, answering: out for checks, but what waits goes once the probe's late reply
      // comes, here a refusal (the user may not write the probe's key).
      network = 'slow';
      await serveTwoAndOne('slow');
      await waitFor(async () => (await requests(limited)) === '4' && (await requests(unlimited)) === '2', 'the settlements counted while Redis is slow', 5000);
      assert.equal(limiter.healthy, false, 'still out for checks');
      assert.equal(limiter.waiting, 0);
    } finally {
      client.close();
      proxy.close();
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
      // A key refused (its budget used) or reported on before it held anything: its totals expire too.
      const refused = ['llmgw:{r}:rate', 'llmgw:{r}:spend:total', 'llmgw:{r}:held'];
      await client.send(['HSET', refused[1] as string, 'tokens', '2000']);
      assert.equal(((await runScript(client, 'admit', refused, [0, 0, 1000, 0, 50, 0, 'req-r', 3_600_000, 86_400_000, 1])) as string[])[0], 'budget_tokens');
      const ttl = (await client.send(['PTTL', refused[2] as string])) as number;
      assert.ok(ttl > 0 && ttl <= 86_400_000, `the held totals expire: ${ttl}`);

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
