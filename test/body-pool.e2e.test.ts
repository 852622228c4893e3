/**
 * Large bodies in pooled memory, end to end: under concurrency, with memory used again from one
 * request to the next, every provider request carries exactly its own client's bytes, also where
 * the provider answers before reading the body, a retry sends it again, or a client leaves halfway
 * through its upload; and every log entry shows its own client's bytes, also when a destination
 * writes it long after its request ended.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { POOLED_MAX_BYTES } from '../src/server/body-pool.js';
import { parseJsonStream, startGateway, tempDir, type Entry, type GatewayProcess } from './support/gateway.js';
import { startOpenAIMock } from './support/mock-openai.js';
import { request } from './support/http.js';

const REAL_KEY = 'sk-proj-POOLtestREAL-7Kq3';

type Case = 'whole' | 'early' | 'retry' | 'cut';

/** What each body was, by its nonce (the `user` field and the query both carry it). */
const sent = new Map<string, Buffer>();
/** Provider requests whose bytes were not their client's: what this file asserts never happens. */
const wrong: string[] = [];
let verified = 0;
const retried = new Set<string>();

function completion(nonce: string): string {
  return JSON.stringify({
    id: `chatcmpl-${nonce}`,
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: nonce }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  });
}

let upstream: http.Server;
let gateway: GatewayProcess;

/**
 * A provider that answers a stream before it reads the request, and leaves the answer's framing
 * open: the gateway's client is done once it has `[DONE]`, and drains the rest for a while, while
 * its write of a large body is still under way (loopback's buffers hold less than 4 MiB).
 * The first connection waits for `release` before it reads; later ones are read at once.
 */
const slow = { server: null as net.Server | null, port: 0, release: () => {}, bodies: [] as Buffer[] };

function rawRequestBody(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = Number(/content-length: *(\d+)/i.exec(data.subarray(0, end).toString('latin1'))?.[1] ?? 0);
      if (data.length < end + 4 + length) return;
      socket.off('data', onData);
      resolve(data.subarray(end + 4, end + 4 + length));
    };
    socket.on('data', onData);
    socket.resume();
  });
}

before(async () => {
  upstream = http.createServer((req, res) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const nonce = query.get('nonce') ?? '';
    const kind = query.get('case') as Case;
    if (req.headers.authorization !== `Bearer ${REAL_KEY}`) {
      res.writeHead(401).end();
      return;
    }
    // Answered before the body is read, which then waits: the request's write is still under way.
    if (kind === 'early' || (kind === 'retry' && !retried.has(nonce))) {
      retried.add(nonce);
      req.socket.pause();
      setTimeout(() => req.socket.resume(), 300);
      if (kind === 'early') res.writeHead(200, { 'content-type': 'application/json' }).end(completion(nonce));
      else res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' }).end('{"error":{"message":"busy","type":"server_error"}}');
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = sent.get(nonce);
      if (expected === undefined || !body.equals(expected)) wrong.push(`${nonce}: ${body.length} bytes, expected ${expected?.length}`);
      else verified++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(completion(nonce));
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  let connections = 0;
  let released: () => void = () => {};
  const releasedNow = new Promise<void>((resolve) => (released = resolve));
  slow.release = released;
  slow.server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {});
    const first = ++connections === 1;
    const answer = (): void => {
      const event = (data: string): string => `${(data.length + 2).toString(16)}\r\n${data}\n\n\r\n`;
      const chunk = JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] });
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${event(`data: ${chunk}`)}${event('data: [DONE]')}`);
    };
    if (first) {
      answer(); // before reading anything; the framing's last chunk never comes
      void releasedNow.then(() => rawRequestBody(socket)).then((body) => slow.bodies.push(body));
    } else {
      void rawRequestBody(socket).then((body) => {
        slow.bodies.push(body);
        answer();
        socket.write('0\r\n\r\n');
      });
    }
  });
  await new Promise<void>((resolve) => slow.server?.listen(0, '127.0.0.1', resolve));
  slow.port = (slow.server.address() as AddressInfo).port;
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_pool: { provider: 'openai', api_key: REAL_KEY, base_url: base },
        vk_slow: { provider: 'openai', api_key: REAL_KEY, base_url: `http://127.0.0.1:${slow.port}/v1` },
      },
    },
    env: { LOG_FILE: 'off', LOG_CONSOLE: 'off', UPSTREAM_RETRY_MAX_DELAY_MS: '10' },
  });
});

after(async () => {
  slow.release();
  await gateway?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
  slow.server?.close();
});

/** A body of `bytes` whose every byte depends on its nonce. */
function bodyFor(nonce: string, bytes: number): Buffer {
  const filler = `${nonce} `.repeat(Math.ceil(bytes / (nonce.length + 1))).slice(0, bytes);
  return Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', user: nonce, messages: [{ role: 'user', content: filler }] }));
}

/** Sends half the body, then leaves. */
function cutShort(body: Buffer, path: string): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request(`${gateway.url}${path}`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_pool', 'content-type': 'application/json', 'content-length': body.length } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.write(body.subarray(0, body.length >> 1), () => setTimeout(() => req.destroy(), 20));
  });
}

describe('pooled bodies (logs off)', () => {
  it('every provider request carries its own client\'s bytes, with the memory used again and again', { timeout: 90_000 }, async () => {
    const kinds: Case[] = ['whole', 'whole', 'early', 'whole', 'retry', 'cut'];
    let expectedVerified = 0;
    for (let wave = 0; wave < 4; wave++) {
      const work: Array<Promise<void>> = [];
      for (let i = 0; i < 24; i++) {
        const nonce = `n${wave}x${i}`;
        const kind = kinds[(wave + i) % kinds.length] as Case;
        // 70 KB to 1.2 MB: several size classes, each used by several requests of a wave.
        const body = bodyFor(nonce, 70_000 + ((i * 7919 + wave * 104_729) % 1_130_000));
        sent.set(nonce, body);
        const path = `/v1/chat/completions?case=${kind}&nonce=${nonce}`;
        if (kind === 'cut') {
          work.push(cutShort(body, path));
          continue;
        }
        if (kind !== 'early') expectedVerified++;
        work.push(
          request(gateway.url, path, { key: 'vk_pool', body: body.toString('utf8') }).then((reply) => {
            assert.equal(reply.status, 200, `${nonce} (${kind}): ${reply.text.slice(0, 300)}`);
            assert.equal(reply.json.choices[0].message.content, nonce, 'its own answer');
          }),
        );
      }
      await Promise.all(work);
    }
    assert.deepEqual(wrong, []);
    assert.equal(verified, expectedVerified);
    // The gateway is still whole: a small request after all of it.
    const last = bodyFor('last', 10);
    sent.set('last', last);
    const small = await request(gateway.url, '/v1/chat/completions?case=whole&nonce=last', { key: 'vk_pool', body: last.toString('utf8') });
    assert.equal(small.status, 200);
    assert.equal(verified, expectedVerified + 1);
  });

  it('keeps a body\'s memory while its write to a provider is still under way after its request ended', { timeout: 30_000 }, async () => {
    // The largest pooled size: more than loopback's socket buffers take at once.
    const streamed = (nonce: string): string => {
      const head = `{"model":"gpt-4o-mini","stream":true,"user":"${nonce}","messages":[{"role":"user","content":"`;
      const tail = '"}]}';
      return head + nonce.repeat(POOLED_MAX_BYTES).slice(0, POOLED_MAX_BYTES - head.length - tail.length) + tail;
    };
    const first = streamed('FIRST');
    const second = streamed('OTHER');
    assert.equal(Buffer.byteLength(first), POOLED_MAX_BYTES);
    // Answered while the provider has read none of it: the request ends, its write goes on.
    const one = await request(gateway.url, '/v1/chat/completions', { key: 'vk_slow', body: first });
    assert.equal(one.status, 200);
    assert.match(one.text, /data: \[DONE\]/);
    // Another client's body of the same size, while that write is still under way: it must not get that memory.
    const two = await request(gateway.url, '/v1/chat/completions', { key: 'vk_slow', body: second });
    assert.equal(two.status, 200);
    slow.release();
    const deadline = Date.now() + 10_000;
    while (slow.bodies.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(slow.bodies.length, 2);
    const received = slow.bodies.map((body) => JSON.parse(body.toString('utf8')) as { user: string; messages: Array<{ content: string }> });
    const byUser = new Map(received.map((body) => [body.user, body.messages[0]?.content]));
    // Compared as booleans: a failure would print 4 MiB twice.
    const contentOf = (text: string): string | undefined => (JSON.parse(text) as { messages: Array<{ content: string }> }).messages[0]?.content;
    assert.ok(byUser.get('FIRST') === contentOf(first), 'the first body whole, none of the second in it');
    assert.ok(byUser.get('OTHER') === contentOf(second), 'the second body whole');
  });
});

describe('pooled bodies (logs on)', () => {
  let logged: GatewayProcess;
  let fifo: ReturnType<typeof createReadStream>;
  before(async () => {
    // The log file is a pipe nobody reads until every request has ended: its writes wait in the
    // kernel while later requests take the pooled memory their requests let go of.
    const path = join(tempDir(), 'log.fifo');
    execFileSync('mkfifo', [path]);
    fifo = createReadStream(path);
    fifo.pause();
    logged = await startGateway({
      keys: { virtual_keys: { vk_pool: { provider: 'openai', api_key: REAL_KEY, base_url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1` } } },
      logFile: path,
      env: { LOG_CONSOLE: 'pretty' },
    });
  });

  after(async () => {
    fifo?.resume();
    await logged?.stop();
    fifo?.destroy();
  });

  it("every entry holds its own client's bytes, written while the memory they were read into serves other requests", { timeout: 90_000 }, async () => {
    const expected = new Map<string, string>();
    for (let wave = 0; wave < 3; wave++) {
      const work: Array<Promise<void>> = [];
      for (let i = 0; i < 16; i++) {
        const nonce = `log${wave}x${i}`;
        // The same sizes in every wave: each wave's bodies fit the memory the one before let go of.
        const body = bodyFor(nonce, 70_000 + ((i * 7919) % 330_000));
        sent.set(nonce, body);
        expected.set(nonce, body.toString('utf8'));
        work.push(
          request(logged.url, `/v1/chat/completions?case=whole&nonce=${nonce}`, { key: 'vk_pool', body: body.toString('utf8') }).then((reply) => {
            assert.equal(reply.status, 200, reply.text.slice(0, 300));
          }),
        );
      }
      await Promise.all(work);
      // Past the log's batching: every entry of this wave is rendered before the next wave comes.
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    let text = '';
    fifo.setEncoding('utf8').on('data', (chunk: string | Buffer) => (text += chunk.toString()));
    fifo.resume();
    const deadline = Date.now() + 30_000;
    const count = (all: string): number => (all.match(/\n}\n/g) ?? []).length;
    while ((count(text) < expected.size || count(logged.stdout()) < expected.size) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    for (const [where, all] of [['the log file', text], ['stdout', logged.stdout()]] as const) {
      const entries = parseJsonStream(all) as Entry[];
      assert.equal(entries.length, expected.size, where);
      for (const entry of entries) {
        const nonce = entry.request?.user as string;
        // Compared as booleans: a failure would print megabytes.
        assert.ok(JSON.stringify(entry.request) === expected.get(nonce), `${where}: the entry of ${nonce} holds its own body`);
      }
    }
  });
});

describe('pooled bodies held by a stuck log destination', () => {
  it('count against its cap: bodies of whitespace, whose entries are a few hundred bytes, cannot pile up past it', { timeout: 60_000 }, async () => {
    const mock = await startOpenAIMock({ flavor: 'openai', apiKey: REAL_KEY });
    // stdout is a pipe nobody reads: once it is full, every entry waits.
    const stuck = await startGateway({
      keys: { virtual_keys: { vk_pool: { provider: 'openai', api_key: REAL_KEY, base_url: mock.baseUrl } } },
      env: { LOG_FILE: 'off', LOG_CONSOLE: 'json' },
      readStdout: false,
    });
    try {
      const rssMb = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${stuck.child.pid}/status`, 'utf8'))?.[1]) / 1024;
      const fill = await request(stuck.url, '/v1/chat/completions', { key: 'vk_pool', body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] }) });
      assert.equal(fill.status, 200);
      // 4 MiB each, laid out to a short entry: each held body is 4 MiB the cap must count.
      const head = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';
      const body = head + ' '.repeat(4 * 1024 * 1024 - 200 - head.length);
      for (let i = 0; i < 80; i += 4) {
        const replies = await Promise.all([0, 1, 2, 3].map(() => request(stuck.url, '/v1/chat/completions', { key: 'vk_pool', body })));
        for (const reply of replies) assert.equal(reply.status, 200);
      }
      // 80 bodies of 4 MiB held would be 336 MB more than at start; the cap holds 64 MB of them.
      assert.ok(rssMb() < 300, `RSS ${rssMb().toFixed(0)} MB`);
      assert.match(stuck.stderr(), /the log to stdout is not keeping up/);
    } finally {
      await stuck.stop('SIGKILL');
      await mock.close();
    }
  });
});
