/**
 * The RESP client against a real redis-server: replies matched to pipelined commands in order, a
 * server that stops answering dropped after the stale timeout and reconnected once it answers,
 * and reconnection after the server restarts (commands fail at once while it is down).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisUnavailable } from '../src/redis/client.js';
import { RedisReplyError, RespParser, type RespValue } from '../src/redis/resp.js';
import { parseRedisUrl, type RedisAddress } from '../src/redis/url.js';
import { withDeadline } from '../src/policy/shared-limits.js';
import { waitFor } from './support/gateway.js';
import { NO_REDIS, startRedis, type TestRedis } from './support/redis.js';

const STALE_MS = 300;

describe('RedisClient', { skip: NO_REDIS }, () => {
  let redis: TestRedis;
  let client: RedisClient;
  /** Every state change the client reported: 'up', or why it went down. */
  const states: string[] = [];
  const connected = (): Promise<void> => waitFor(() => client.isReady, 'the client connected', 10_000);

  before(async () => {
    redis = await startRedis();
    client = new RedisClient({
      address: parseRedisUrl(redis.url(undefined, 3)) as RedisAddress,
      connectTimeoutMs: 500,
      staleMs: STALE_MS,
      onState: (error) => states.push(error === null ? 'up' : error.message),
    });
    client.connect();
    await connected();
  });
  after(async () => {
    client?.close();
    await redis?.stop();
  });

  it('takes a reply that came while the process itself stalled over the deadline that passed meanwhile (withDeadline)', async () => {
    // From the loop's check phase, so that its timers run next, before its I/O is read (as after any stall).
    const reply = await new Promise<unknown>((resolve, reject) =>
      setImmediate(() => {
        const answered = withDeadline(client.send(['PING']), 20);
        const until = Date.now() + STALE_MS + 100;
        while (Date.now() < until); // a long collection, a CPU quota: Redis answers meanwhile (the stale timeout passes too)
        answered.then(resolve, reject);
      }),
    );
    assert.equal(reply, 'PONG');
  });

  it("connects again at once, saying nothing, when Redis closes it for being idle (its `timeout` setting)", async () => {
    await connected();
    const id = await client.send(['CLIENT', 'ID']);
    const seen = states.length;
    await client.send(['CONFIG', 'SET', 'timeout', '1']);
    try {
      // Idle past the timeout (Redis closes idle clients within about a second of it), then asked.
      let now = id;
      for (let tries = 0; tries < 5 && now === id; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 2300)); // Redis counts idle time in whole seconds
        await waitFor(() => client.isReady, 'the client connected again');
        now = await client.send(['CLIENT', 'ID']);
      }
      assert.notEqual(now, id, 'Redis closed the idle connection');
      assert.deepEqual(states.slice(seen), ['up'], 'no loss said, one connection made');
    } finally {
      await client.send(['CONFIG', 'SET', 'timeout', '0']);
    }
  });

  it('answers pipelined commands in the order they were sent, on the database of its URL', async () => {
    // All written before the first reply comes back: each must get its own.
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? client.send(['INCR', 'llmgw:test:n']) : client.send(['ECHO', 'x'.repeat(i * 50)]))));
    replies.forEach((reply, i) => assert.deepEqual(reply, i % 2 === 0 ? i / 2 + 1 : 'x'.repeat(i * 50), `reply ${i}`));
    assert.match(String(await client.send(['CLIENT', 'INFO'])), / db=3 /);
  });

  it('drops a connection whose reply stalls (SIGSTOP) after the stale timeout, and connects again once the server answers', async () => {
    const before = states.length;
    redis.signal('SIGSTOP');
    let stalled: unknown;
    let guard: NodeJS.Timeout | undefined;
    try {
      // Far longer than the stale timeout: a client that waits on is caught, not hung.
      stalled = await Promise.race([client.send(['PING']).catch((err: unknown) => err), new Promise((resolve) => (guard = setTimeout(() => resolve('still waiting after 5 s'), 5000)))]);
    } finally {
      clearTimeout(guard);
      redis.signal('SIGCONT');
    }
    assert.ok(stalled instanceof RedisUnavailable, `rejected, not left waiting: ${String(stalled)}`);
    assert.equal(stalled.sent, true, 'it was sent, so it may have run');
    assert.match(stalled.message, new RegExp(`no reply within ${STALE_MS} ms`));
    assert.match(states[before] ?? '', /lost \(no reply within/);
    await connected();
    assert.equal(states.at(-1), 'up');
    assert.equal(await client.send(['PING']), 'PONG');
  });

  it('says a refused password or database is REDIS_URL to fix, not a lost connection', async () => {
    for (const url of [redis.url(undefined, 99), redis.url(undefined, 0).replace('redis://', 'redis://:wrong-password@')]) {
      const said: string[] = [];
      const wrong = new RedisClient({ address: parseRedisUrl(url) as RedisAddress, connectTimeoutMs: 500, staleMs: STALE_MS, onState: (error) => said.push(error === null ? 'up' : error.message) });
      wrong.connect();
      try {
        await waitFor(() => said.length > 0, 'a state');
        assert.match(said[0] ?? '', /refused the gateway's login or database \(ERR .*\): check the user, password and database number in REDIS_URL/);
        assert.doesNotMatch(said[0] ?? '', /lost/);
      } finally {
        wrong.close();
      }
    }
  });

  it('says a connection the server closed while idle, and that cannot be made again, is lost', async () => {
    await connected();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // up a while, idle
    const seen = states.length;
    // A shutdown closes its clients cleanly, as its idle timeout does; the connection made again at once then fails.
    const admin = net.connect(redis.port, '127.0.0.1');
    admin.on('error', () => {});
    admin.end('SHUTDOWN NOSAVE\r\n');
    await waitFor(() => states.length > seen, 'the loss said');
    assert.match(String(states[seen]), /^connection to redis:\/\/127\.0\.0\.1:\d+\/3 lost/, 'lost, not "could not be made"');
    await redis.restart();
    await connected();
  });

  it('fails commands at once while the server is down (nothing sent), and reconnects after it restarts', async () => {
    await redis.kill();
    await waitFor(() => !client.isReady, 'the loss seen');
    const refused = await client.send(['PING']).catch((err: unknown) => err);
    assert.ok(refused instanceof RedisUnavailable);
    assert.equal(refused.sent, false, 'never sent: safe to send again');
    await redis.restart();
    await connected();
    assert.equal(await client.send(['PING']), 'PONG');
    assert.equal(await client.send(['GET', 'llmgw:test:n']), null, 'a new, empty server');
  });
});

describe('RedisClient on a node a failover demoted', () => {
  /** A server whose first `replicaConnections` connections reach a replica; later ones, a primary. */
  /** A server whose first `replicaConnections` connections reach a replica (it answers PING, refuses writes); later ones, a primary. */
  async function fakeRedis(replicaConnections: number) {
    let connections = 0;
    const commands: string[][] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      const replica = ++connections <= replicaConnections;
      const parser = new RespParser();
      socket.on('data', (chunk: Buffer) => {
        for (const command of parser.push(chunk) as RespValue[][]) {
          commands.push(command.map(String));
          socket.write(String(command[0]).toUpperCase() === 'PING' ? '+PONG\r\n' : replica ? "-READONLY You can't write against a read only replica.\r\n" : ':1\r\n');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as net.AddressInfo).port,
      connections: () => connections,
      commands,
      dropAll: () => sockets.forEach((socket) => socket.destroy()),
      close: () => server.close(),
    };
  }

  it('connects again when a write is refused READONLY (the name may lead to the new primary now); the commands already sent get their own replies', async () => {
    const redis = await fakeRedis(1);
    const states: string[] = [];
    const client = new RedisClient({ address: parseRedisUrl(`redis://127.0.0.1:${redis.port}`) as RedisAddress, connectTimeoutMs: 500, staleMs: 2000, onState: (error) => states.push(error === null ? 'up' : 'down') });
    try {
      client.connect();
      await waitFor(() => client.isReady, 'connected');
      // Pipelined: every one was refused by the replica, so every one may be sent again.
      const refused = await Promise.all(Array.from({ length: 50 }, () => client.send(['INCR', 'llmgw:test:n']).catch((err: unknown) => err)));
      assert.ok(refused.every((err) => err instanceof RedisReplyError && err.kind === 'READONLY' && err.passing), String(refused.find((err) => !(err instanceof RedisReplyError))));
      await waitFor(() => redis.connections() === 2 && client.isReady, 'a new connection', 5000);
      assert.equal(await client.send(['INCR', 'llmgw:test:n']), 1);
      assert.deepEqual(states, ['up', 'down', 'up']);
      assert.deepEqual(redis.commands.at(-2), ['SET', 'llmgw:writable', '1', 'PX', '10000'], 'it showed it takes writes before it said up');
      // The failover is over: a later drop waits as any other (0.1-0.2 s), and no write is asked first.
      redis.dropAll();
      const dropped = performance.now();
      await waitFor(() => redis.connections() === 3 && client.isReady, 'connected again', 5000);
      assert.ok(performance.now() - dropped < 1000, `${Math.round(performance.now() - dropped)} ms`);
      assert.deepEqual(redis.commands.at(-1), ['PING']);
    } finally {
      client.close();
      redis.close();
    }
  });

  it('waits longer each time it finds a replica again, and does not say it is up until a command succeeds', async () => {
    const redis = await fakeRedis(Infinity);
    const states: string[] = [];
    const client = new RedisClient({ address: parseRedisUrl(`redis://127.0.0.1:${redis.port}`) as RedisAddress, connectTimeoutMs: 500, staleMs: 2000, onState: (error) => states.push(error === null ? 'up' : 'down') });
    try {
      client.connect();
      await waitFor(() => client.isReady, 'connected');
      const until = performance.now() + 2500;
      while (performance.now() < until) {
        await client.send(['INCR', 'llmgw:test:n']).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Waits of 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s: at most 5 connections in 2.5 s (every ~0.15 s without the growth: 15).
      assert.ok(redis.connections() <= 6, `${redis.connections()} connections`);
      assert.equal(states.filter((state) => state === 'up').length, 1, `said up only for the first connection: ${states.join(' ')}`);
    } finally {
      client.close();
      redis.close();
    }
  });
});
