/**
 * GATEWAY_MAX_BODIES_BYTES end to end: while requests hold large bodies (their provider has not
 * answered), another body that would pass the cap is refused with a 503 before more of it is read,
 * in the client API's shape, and logged; bodies count as they arrive, not as declared; the memory
 * comes back when requests end, however they end (answered, or their client left mid-upload).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { readLogFile, startGateway, type GatewayProcess } from './support/gateway.js';
import { request } from './support/http.js';

const REAL_KEY = 'sk-proj-MEMtestREAL-4Kq9';
const MB = 1024 * 1024;

let upstream: http.Server;
let gateway: GatewayProcess;
/** Answers held until the test lets them go. */
const held: Array<() => void> = [];
let received = 0;

function completion(): string {
  return JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
}

before(async () => {
  upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      const answer = (): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(completion());
      if (req.url?.includes('hold')) held.push(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gateway = await startGateway({
    keys: { virtual_keys: { vk_mem: { provider: 'openai', api_key: REAL_KEY, base_url: `${base}/v1` } } },
    env: { GATEWAY_MAX_BODIES_BYTES: String(3 * MB), LOG_CONSOLE: 'off' },
  });
});

after(async () => {
  for (const answer of held.splice(0)) answer();
  await gateway?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
});

const body = (bytes: number): string => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(bytes) }] });

/** Sends half of a declared body, then leaves. */
function leaveMidUpload(bytes: number): Promise<void> {
  const text = body(bytes);
  return new Promise((resolve) => {
    const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_mem', 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.write(text.slice(0, text.length >> 1), () => setTimeout(() => req.destroy(), 50));
  });
}

/** Sends a request's head with `Expect: 100-continue`; the body only once a 100 comes. Resolves with all the client read, once the connection closes or a final answer ended. */
function expectingContinue(text: string, key = 'vk_mem'): Promise<string> {
  return new Promise((resolve) => {
    let read = '';
    let sent = false;
    const socket = net.connect(gateway.port, '127.0.0.1', () => {
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nexpect: 100-continue\r\n\r\n`);
    });
    socket.on('data', (data) => {
      read += data.toString('latin1');
      if (!sent && read.startsWith('HTTP/1.1 100 ')) {
        sent = true;
        socket.write(text);
      }
      if (/\r\n\r\n\{[^]*\}$/.test(read.replace(/^HTTP\/1\.1 100 [^]*?\r\n\r\n/, ''))) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(read));
  });
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('the memory request bodies may take at once', () => {
  it('refuses a body past GATEWAY_MAX_BODIES_BYTES with a 503 while others hold theirs, and takes it once they are done', { timeout: 60_000 }, async () => {
    // Two bodies of 1.2 MB held by a provider that has not answered.
    const holding = [request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) }), request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) })];
    await until(() => held.length === 2);
    assert.equal(held.length, 2);
    const before = received;
    const refused = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mem', body: body(1.2 * MB) });
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.json.error.code, 'gateway_overloaded');
    assert.match(refused.json.error.message, /GATEWAY_MAX_BODIES_BYTES/);
    assert.equal(refused.headers['retry-after'], '1');
    // In the client API's own shape on the Messages route.
    const messages = await request(gateway.url, '/v1/messages', { headers: { 'x-api-key': 'vk_mem', 'anthropic-version': '2023-06-01' }, body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(1.2 * MB) }] }) });
    assert.equal(messages.status, 503, messages.text);
    assert.equal(messages.json.type, 'error');
    // A small body still fits beside them.
    const small = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mem', body: body(100) });
    assert.equal(small.status, 200, small.text);
    assert.equal(received, before + 1, 'the refused bodies never reached the provider');
    for (const answer of held.splice(0)) answer();
    for (const reply of await Promise.all(holding)) assert.equal(reply.status, 200);
    const taken = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mem', body: body(1.2 * MB) });
    assert.equal(taken.status, 200, 'their memory came back when they were answered');
    await until(() => readLogFile(gateway.logFile).some((entry) => entry.status === 503));
    const entry = readLogFile(gateway.logFile).find((each) => each.status === 503);
    assert.equal(entry?.error?.code, 'gateway_overloaded');
  });

  it('refuses a body that would not fit before it is sent when its client waits for a 100 (Expect: 100-continue), and sends the 100 once it fits', { timeout: 60_000 }, async () => {
    const holding = [request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) }), request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) })];
    await until(() => held.length === 2);
    assert.equal(held.length, 2);
    const refused = await expectingContinue(body(1.2 * MB));
    // No 100 first: the client never sent its body, and the connection closed after the 503.
    assert.match(refused, /^HTTP\/1\.1 503 /, refused.slice(0, 200));
    assert.match(refused, /gateway_overloaded/);
    assert.match(refused, /\r\nconnection: close\r\n/i);
    // A wrong key is refused before the upload too.
    const stranger = await expectingContinue(body(1.2 * MB), 'vk_nobody');
    assert.match(stranger, /^HTTP\/1\.1 401 /, stranger.slice(0, 200));
    for (const answer of held.splice(0)) answer();
    for (const reply of await Promise.all(holding)) assert.equal(reply.status, 200);
    const taken = await expectingContinue(body(1.2 * MB));
    assert.match(taken, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, taken.slice(0, 200));
    assert.match(taken, /"chat\.completion"/);
  });

  it('answers a request without a body that waits for a 100 (Expect: 100-continue) and keeps its connection for the next', async () => {
    const socket = net.connect(gateway.port, '127.0.0.1');
    socket.on('error', () => {});
    let read = '';
    let closed = false;
    socket.on('data', (data) => (read += data.toString('latin1')));
    socket.on('close', () => (closed = true));
    const answers = () => read.match(/HTTP\/1\.1 200 /g)?.length ?? 0;
    try {
      socket.write('GET /v1/usage HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_mem\r\nexpect: 100-continue\r\n\r\n');
      await until(() => answers() === 1 && /\r\n\r\n\{[^]*\}$/.test(read));
      assert.match(read, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, read.slice(0, 200));
      assert.doesNotMatch(read, /\r\nconnection: close\r\n/i);
      socket.write('GET /v1/usage HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_mem\r\n\r\n');
      await until(() => answers() === 2 || closed);
      assert.equal(answers(), 2, read);
      // A length of zero written otherwise.
      socket.write('GET /v1/usage HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_mem\r\ncontent-length: 00\r\nexpect: 100-continue\r\n\r\n');
      await until(() => answers() === 3 || closed);
      assert.equal(answers(), 3, read);
      assert.equal(read.match(/HTTP\/1\.1 100 Continue/g)?.length, 2);
    } finally {
      socket.destroy();
    }
  });

  it('counts bodies as they arrive: clients that declare large bodies and send nothing block nobody', { timeout: 60_000 }, async () => {
    const silent = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const socket = net.connect(gateway.port, '127.0.0.1', () => {
              socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_mem\r\ncontent-type: application/json\r\ncontent-length: ${2 * MB}\r\n\r\n`);
              resolve(socket);
            });
            socket.on('error', () => {});
          }),
      ),
    );
    try {
      // 8 MB declared against a 3 MB cap, none of it sent.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mem', body: body(1.2 * MB) });
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
    } finally {
      for (const socket of silent) socket.destroy();
    }
  });

  it('gives back the memory of a client that left mid-upload, and counts a chunked body as it comes', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 4; i++) await leaveMidUpload(1.2 * MB);
    // Had the four been kept, 4.8 MB would be held: two more of 1.2 MB fit only if they were given back.
    const holding = [request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) }), request(gateway.url, '/v1/chat/completions?hold', { key: 'vk_mem', body: body(1.2 * MB) })];
    await until(() => held.length === 2);
    assert.equal(held.length, 2, 'both taken');
    // Chunked (no content-length): counted as it comes, refused once it passes the cap.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_mem', 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      const text = body(1.2 * MB);
      for (let at = 0; at < text.length; at += 64 * 1024) req.write(text.slice(at, at + 64 * 1024));
      req.end();
    });
    assert.equal(chunked, 503);
    for (const answer of held.splice(0)) answer();
    for (const reply of await Promise.all(holding)) assert.equal(reply.status, 200);
  });
});
