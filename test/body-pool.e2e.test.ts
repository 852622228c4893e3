/**
 * Large bodies in pooled memory (logs off), end to end: under concurrency, with memory used again
 * from one request to the next, every provider request carries exactly its own client's bytes,
 * also where the provider answers before reading the body, a retry sends it again, or a client
 * leaves halfway through its upload.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from './support/gateway.js';
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
  gateway = await startGateway({
    keys: { virtual_keys: { vk_pool: { provider: 'openai', api_key: REAL_KEY, base_url: base } } },
    env: { LOG_FILE: 'off', LOG_CONSOLE: 'off', UPSTREAM_RETRY_MAX_DELAY_MS: '10' },
  });
});

after(async () => {
  await gateway?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
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
});
