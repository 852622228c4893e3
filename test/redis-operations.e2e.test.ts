/**
 * Gateway instances and a real Redis, as operated: a password, an ACL user and TLS with a
 * self-signed CA; REDIS_FAILURE=closed; real-key cool-downs heard by the other instance; a worker
 * killed outright; a stop and what requests hold in Redis; the state file migrated to Redis; a
 * Redis that answers in shapes it never gives; a Redis that lost what it counted; a budget used up,
 * through an outage.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseRedisUrl, type RedisAddress } from '../src/redis/url.js';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { children, connectedTo, ROOT, tempDir, waitFor, type GatewayProcess } from './support/gateway.js';
import { chat, openStream } from './support/http.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';
import { refusingPort } from './support/ports.js';
import { NO_REDIS, startRedis, type TestRedis } from './support/redis.js';
import { ask, connect, get, redisUp, start } from './support/redis-instances.js';

describe('Redis with credentials, TLS, and a closed failure policy', { skip: NO_REDIS }, () => {
  const keys = { virtual_keys: { vk_rpm: { provider: 'mock', rate_limit: { requests_per_minute: 2 } }, vk_free: { provider: 'mock' } } };

  it('connects with a password, and with an ACL user; a wrong password is reported without the password, and traffic flows', async () => {
    // The README's ACL rules, exactly: the gateway needs no more.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const rules = /^user gateway on >… (.*)$/m.exec(readme)?.[1];
    assert.ok(rules !== undefined, 'the README shows the ACL rules');
    const redis = await startRedis({ password: 'default-s3cret', user: ['gateway', 'acl-s3cret', rules] });
    // Targets nobody listens on: their circuits open at once, which is announced and stored in Redis (and read at start).
    const nowhere = { provider: 'openai', api_key: 'sk-nowhere', base_url: `http://127.0.0.1:${await refusingPort()}/v1` };
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
          assert.match(gateway.stderr(), new RegExp(`listening on .*; limits shared in Redis at redis://${db === 0 ? '' : 'gateway@'}127\\.0\\.0\\.1:\\d+/${db}\n`));
          assert.doesNotMatch(gateway.stderr(), /s3cret/);
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
      // Redis is out now: the next check goes to the policy at once, not after another REDIS_TIMEOUT_MS.
      const next = await chat(gateway.url, 'vk_rpm', ask);
      redis.signal('SIGCONT');
      assert.equal(late.status, 503);
      assert.equal(next.status, 503);
      assert.match((await get(gateway, '/metrics')).text, /^llm_gateway_redis_errors_total\{kind="timeout"\} 1$/m);
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
      assert.match((await get(gateway, '/metrics')).text, /^llm_gateway_redis_fallbacks_total\{policy="closed"\} 3$/m);
    } finally {
      await gateway.stop();
      await redis.stop();
    }
  });
});

describe('a Redis user that may not SET', { skip: NO_REDIS }, () => {
  it('is found back after a slow moment by its refused probe (REDIS_FAILURE=closed): checks reach Redis again', async () => {
    const redis = await startRedis({ password: 'default-s3cret', user: ['limited', 'limited-s3cret', '~* &* +@all -set'] });
    const gateway = await start({ virtual_keys: { vk_rpm: { provider: 'mock', rate_limit: { requests_per_minute: 100 } } } }, redis.url('limited:limited-s3cret'), { REDIS_FAILURE: 'closed' });
    try {
      await redisUp(gateway);
      redis.signal('SIGSTOP');
      const late = await chat(gateway.url, 'vk_rpm', ask);
      redis.signal('SIGCONT');
      assert.equal(late.status, 503);
      await waitFor(async () => (await chat(gateway.url, 'vk_rpm', ask)).status === 200, 'a check answered by Redis again');
      // stderr comes through a pipe of its own: it may reach us after the answer that followed it.
      await waitFor(() => /is back: limits are shared again/.test(gateway.stderr()), 'said to be back');
      // Refusing writes for its state (no replica to write to), which Redis checks after the ACL:
      // the refused probe says nothing then, and the outage lasts as long as the state does.
      const admin = await connect(parseRedisUrl(redis.url(':default-s3cret')) as RedisAddress);
      try {
        await admin.send(['CONFIG', 'SET', 'min-replicas-to-write', '1']);
        const backs = (): number => (gateway.stderr().match(/is back: limits are shared again/g) ?? []).length;
        const before = backs();
        for (let i = 0; i < 3; i++) {
          assert.equal((await chat(gateway.url, 'vk_rpm', ask)).status, 503);
          await new Promise((resolve) => setTimeout(resolve, 500)); // past a probe each time
        }
        assert.equal(backs(), before, 'not said to be back while it still refuses writes');
        await admin.send(['CONFIG', 'SET', 'min-replicas-to-write', '0']);
        await waitFor(async () => (await chat(gateway.url, 'vk_rpm', ask)).status === 200, 'taking writes again');
        await waitFor(() => backs() === before + 1, 'said to be back once more');
        assert.equal(backs(), before + 1);
      } finally {
        admin.close();
      }
    } finally {
      redis.signal('SIGCONT');
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
    // Its file lists vk_pool's real keys the other way round (a rolling deploy): pauses follow the key, not its place.
    const second = await start({ virtual_keys: { ...keys.virtual_keys, vk_pool: { ...keys.virtual_keys.vk_pool, api_keys: ['sk-cool-B-2222', 'sk-cool-A-1111'] } } }, redis.url());
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
      const stored = async (pattern: string): Promise<number[]> => {
        const found = (await client.send(['KEYS', pattern])) as string[];
        return Promise.all(found.map(async (name) => (await client.send(['PTTL', name])) as number));
      };
      // Named by digests of the real key and of the target, never by the key itself.
      const [cooling, open] = [await stored(`llmgw:{${digest('vk_pool')}}:cool:*`), await stored(`llmgw:{${digest('vk_targets')}}:open:*`)];
      assert.ok(cooling.length === 1 && open.length === 1, `one pause each: ${cooling}, ${open}`);
      assert.ok(cooling.every((ms) => ms > 0 && ms <= 60_000) && open.every((ms) => ms > 0 && ms <= 60_000), `stored with their expiry: ${cooling} ms, ${open} ms`);
      assert.equal(((await client.send(['KEYS', '*sk-cool*'])) as string[]).length, 0);
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

  it('says so when a stop waits for a stalled Redis to answer its settlements, and for how long', async () => {
    await flush();
    const gateway = await start(keys(), redis.url(), { GATEWAY_SHUTDOWN_TIMEOUT_MS: '200', REDIS_TIMEOUT_MS: '300' });
    let open: Awaited<ReturnType<typeof openStream>> | undefined;
    try {
      await redisUp(gateway);
      open = await openStream(gateway.url, 'vk_held', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      await waitFor(() => waiting.length === 1, 'the stream at the provider');
      redis.signal('SIGSTOP');
      try {
        gateway.child.kill('SIGTERM'); // the stream is cut after 200 ms; its settlement waits for Redis
        await waitFor(() => /waiting up to 2000 ms more for Redis to answer 1 settlement\(s\) before closing \(10 × REDIS_TIMEOUT_MS\)/.test(gateway.stderr()), 'the wait said');
      } finally {
        redis.signal('SIGCONT');
      }
      assert.equal(await gateway.exited, 0);
    } finally {
      for (const release of waiting.splice(0)) release();
      open?.req.destroy();
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
      if (workers === '1') assert.match(alone.stderr(), /1 settlement\(s\) were still waiting for Redis at shutdown: the state file's spend, theirs included, was not added to Redis yet: the next start that reaches it adds it, once for each key and period/);
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
      await waitFor(() => /the spend of 1 key in the state file was added to what Redis counts/.test(gateway.stderr()), 'the seeding said');
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

describe('a Redis that lost what it counted', { skip: NO_REDIS }, () => {
  it('is said by every instance when it connects again (a restart without persistence): budgets start over there', async () => {
    const redis = await startRedis();
    const keys = { virtual_keys: { vk_any: { provider: 'mock', budget: { max_tokens: 1_000, period: 'total' } } } };
    const gateways = [await start(keys, redis.url()), await start(keys, redis.url())];
    try {
      for (const gateway of gateways) await redisUp(gateway);
      for (const gateway of gateways) assert.doesNotMatch(gateway.stderr(), /no longer holds what it counted/, 'not at the first connection');
      await redis.restart();
      // Whichever connects first marks Redis again: the other still sees that it is not what it saw.
      for (const gateway of gateways) {
        await waitFor(() => /Redis \(redis:\/\/127\.0\.0\.1:\d+\/0\) no longer holds what it counted \(restarted without persistence, flushed, or a failover to a replica that had none of it\): every key's budget, spend and limits start over from zero in Redis/.test(gateway.stderr()), 'the loss said', 10_000);
      }
    } finally {
      for (const gateway of gateways) await gateway.stop();
      await redis.stop();
    }
  });
});

describe('a budget used up, through an outage', { skip: NO_REDIS }, () => {
  it('is refused by an instance that spent none of it while Redis is out (REDIS_FAILURE=open), as Redis last said; other keys are decided alone', async () => {
    const keys = { virtual_keys: { vk_spent: { provider: 'mock', budget: { max_tokens: 30, period: 'total' } }, vk_other: { provider: 'mock', budget: { max_tokens: 1_000_000, period: 'total' } } } };
    const redis = await startRedis();
    const spender = await start(keys, redis.url());
    const other = await start(keys, redis.url());
    try {
      await redisUp(spender);
      await redisUp(other);
      // Spent through one instance (a refusal while the last request's hold is settling is budget_held: asked again).
      const code = async (gateway: GatewayProcess): Promise<unknown> => (await chat(gateway.url, 'vk_spent', ask)).json?.error?.code;
      await waitFor(async () => (await code(spender)) === 'budget_exceeded', 'the budget spent through one instance');
      await waitFor(async () => (await code(other)) === 'budget_exceeded', 'Redis saying so to the other');
      redis.signal('SIGSTOP');
      const during = await chat(other.url, 'vk_spent', ask);
      const alone = await chat(other.url, 'vk_other', ask);
      redis.signal('SIGCONT');
      assert.equal(during.status, 429);
      assert.equal(during.json.error.code, 'budget_exceeded');
      assert.match(during.json.error.message, /of 30 tokens, in total\); it does not reset/);
      assert.equal(alone.status, 200, 'a key Redis never refused is decided by the instance alone');
    } finally {
      redis.signal('SIGCONT');
      await spender.stop();
      await other.stop();
      await redis.stop();
    }
  });
});
