/**
 * The Redis protocol and address without a server: commands encoded, replies parsed whatever
 * the split, REDIS_URL read (its password never quoted back).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { encodeCommand, RedisReplyError, RespParseError, RespParser, type RespValue } from '../src/redis/resp.js';
import { describeRedis, parseRedisUrl } from '../src/redis/url.js';
import { loadConfig } from '../src/config.js';
import { MAIN } from './support/gateway.js';

const REPLIES = Buffer.from('+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n:-1\r\n$5\r\nhé\r\n\r\n$-1\r\n*3\r\n$2\r\nok\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n*0\r\n');

function expected(): RespValue[] {
  return ['OK', new RedisReplyError('NOSCRIPT No matching script'), 42, -1, 'hé\r\n', null, ['ok', [1, ''], null], []];
}

describe('RESP', () => {
  it('encodes a command as an array of bulk strings, lengths in bytes', () => {
    assert.equal(encodeCommand(['SET', 'k', 'é', 12]).toString(), '*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n$2\r\n12\r\n');
  });

  it('parses every reply type, split at every byte boundary (and one byte at a time)', () => {
    for (let cut = 0; cut <= REPLIES.length; cut++) {
      const parser = new RespParser();
      const values = [...parser.push(REPLIES.subarray(0, cut)), ...parser.push(REPLIES.subarray(cut))];
      assert.deepEqual(values, expected(), `split at ${cut}`);
    }
    const parser = new RespParser();
    const values: RespValue[] = [];
    for (let i = 0; i < REPLIES.length; i++) values.push(...parser.push(REPLIES.subarray(i, i + 1)));
    assert.deepEqual(values, expected());
    assert.equal((values[1] as RedisReplyError).kind, 'NOSCRIPT');
  });

  it("reads the refusal a script's command got inside the error Redis before 7 (and Dragonfly) wraps it in", () => {
    const wrapped = (inner: string): RedisReplyError => new RedisReplyError(`ERR Error running script (call to f_1028a5dba704e1d8a01fd96efeba25bb78f62df2): @user_script:157: @user_script: 157: ${inner}`);
    const readonly = wrapped("-READONLY You can't write against a read only replica.");
    assert.deepEqual([readonly.kind, readonly.passing, readonly.demoted], ['READONLY', true, true], 'a failover: connect again');
    const oom = wrapped("-OOM command not allowed when used memory > 'maxmemory'.");
    assert.deepEqual([oom.kind, oom.passing, oom.demoted], ['OOM', true, false], 'kept and sent later');
    const dragonfly = new RedisReplyError("ERR Error running script (call to d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37): @user_script:2: -READONLY You can't write against a read only replica.");
    assert.equal(dragonfly.kind, 'READONLY');
    // The script's own failure, or a refusal named in a message the script made: its command's, not Redis's state.
    assert.equal(wrapped('attempt to compare nil with number').kind, 'ERR');
    assert.equal(new RedisReplyError('ERR wrong number of arguments: -READONLY is no option here').kind, 'ERR');
  });

  it('joins a large reply once it can be whole: 40 MB in 4 KiB pieces (joined and parsed again at every piece, minutes)', () => {
    const size = 40 * 1024 * 1024;
    const reply = Buffer.concat([Buffer.from(`*2\r\n$${size}\r\n`), Buffer.alloc(size, 0x61), Buffer.from('\r\n:7\r\n')]);
    const parser = new RespParser();
    const started = performance.now();
    const values: RespValue[] = [];
    for (let at = 0; at < reply.length; at += 4096) values.push(...parser.push(reply.subarray(at, at + 4096)));
    // A loose bound: milliseconds when linear, minutes when quadratic (the only way this fails quickly).
    assert.ok(performance.now() - started < 10_000, `${Math.round(performance.now() - started)} ms`);
    assert.equal(values.length, 1);
    assert.equal(((values[0] as RespValue[])[0] as string).length, size);
    assert.equal((values[0] as RespValue[])[1], 7);
    // A bulk string declared over 64 MiB is refused at its header, not read.
    assert.throws(() => new RespParser().push(Buffer.from(`$${70 * 1024 * 1024}\r\nabc`)), RespParseError);
  });

  it('refuses what is not RESP rather than guessing', () => {
    assert.throws(() => new RespParser().push(Buffer.from('?what\r\n')), RespParseError);
    assert.throws(() => new RespParser().push(Buffer.from(':12x\r\n')), RespParseError);
    assert.throws(() => new RespParser().push(Buffer.from('$-5\r\n')), RespParseError);
  });
});

describe('REDIS_URL', () => {
  it('reads host, port, database, user and password; rediss:// is TLS', () => {
    assert.deepEqual(parseRedisUrl('redis://localhost'), { tls: false, host: 'localhost', port: 6379, user: null, password: null, db: 0 });
    assert.deepEqual(parseRedisUrl('rediss://alice:p%40ss@redis.internal:6380/3'), { tls: true, host: 'redis.internal', port: 6380, user: 'alice', password: 'p@ss', db: 3 });
    assert.deepEqual(parseRedisUrl('redis://:s3cret@[::1]:7000'), { tls: false, host: '::1', port: 7000, user: null, password: 's3cret', db: 0 });
    assert.equal(describeRedis(parseRedisUrl('rediss://alice:p%40ss@redis.internal:6380/3') as never), 'rediss://alice@redis.internal:6380/3');
  });

  it('refuses a bad one at start without quoting it (it may hold a password)', () => {
    for (const [url, problem] of [
      ['http://h:1', /must start with redis:\/\/ or rediss:\/\//],
      ['redis://:pw@h/x', /has a path that is not a database number \(0 to 99\)/],
      ['not a url pw', /must be a URL/],
      ['redis://h:1/0?x=1', /no query string/],
      ['redis://u:%zz@h/0', /malformed %-escape/],
      ['redis://gateway@h:6379/0', /names a user without a password/],
    ] as const) {
      const parsed = parseRedisUrl(url);
      assert.equal(typeof parsed, 'string', url);
      assert.match(parsed as string, problem);
    }
    assert.throws(
      () => loadConfig({ REDIS_URL: 'redis://:topsecret@h/x', REDIS_FAILURE: 'sometimes', REDIS_TIMEOUT_MS: '0' }),
      (err: Error) => /REDIS_URL has a path that is not a database number/.test(err.message) && /REDIS_FAILURE must be "open" or "closed"/.test(err.message) && /REDIS_TIMEOUT_MS/.test(err.message) && !err.message.includes('topsecret'),
    );
    const config = loadConfig({ REDIS_URL: 'redis://cache:6379/1', REDIS_FAILURE: 'closed' });
    assert.deepEqual(config.redis, { address: { tls: false, host: 'cache', port: 6379, user: null, password: null, db: 1 }, timeoutMs: 100, holdMs: 120_000, failure: 'closed' });
    assert.equal(loadConfig({}).redis, null);
  });

  it('stops the gateway at start (exit 1) for a user without a password, which Redis cannot authenticate', () => {
    const run = spawnSync(process.execPath, [MAIN], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', REDIS_URL: 'redis://gateway@127.0.0.1:6379/0' } });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /REDIS_URL names a user without a password: give both \(redis:\/\/user:password@host:6379\/0\)/);
  });
});
