/**
 * What providers (or what stands in front of them) send back, and what must never follow from
 * it: the real key in any field of an error reaching a client or a log, a compressed answer, an
 * impossible status that hangs a request until a timeout, a JSON answer cut short relayed as a
 * 200, a wrong base_url that nobody can trace.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, request, sseData } from './support/http.js';
import { anthropicError, startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-answersOPENAIkey-7d1e9f';
const ANTHROPIC_KEY = 'sk-ant-api03-answersANTHROPICkey-0c4b';
const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] };
const claude = { model: 'claude-sonnet-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'Hello' }] };

let openaiMock: MockUpstream;
let anthropicMock: AnthropicMock;
/** A provider that answers with whatever bytes a test sets, whatever was asked. */
let raw: net.Server;
let rawAnswer = '';
let gateway: GatewayProcess;

before(async () => {
  openaiMock = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  anthropicMock = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
  raw = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.write(rawAnswer));
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawPort = (raw.address() as net.AddressInfo).port;
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl },
        vk_anthropic: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropicMock.baseUrl },
        vk_anthropic_v1: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: `${anthropicMock.baseUrl}/v1` },
        vk_raw: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${rawPort}/v1` },
      },
    },
    // Retries would only repeat what these tests look at; UPSTREAM_TIMEOUT_MS is long so that a hang shows.
    env: { UPSTREAM_RETRIES: '0', UPSTREAM_TIMEOUT_MS: '60000' },
  });
});

after(async () => {
  await gateway?.stop();
  await openaiMock?.close();
  await anthropicMock?.close();
  raw?.close();
});

/** Nothing the client got, nor its log entry in the file, nor stdout, holds the key or a part of it. */
async function assertScrubbed(reply: { text: string; headers: Record<string, unknown> }, key: string): Promise<void> {
  const secret = key.slice(-12);
  assert.ok(!reply.text.includes(secret), `the client got the key: ${reply.text}`);
  assert.ok(!JSON.stringify(reply.headers).includes(secret), 'the key in a response header');
  const id = String(reply.headers['x-request-id']);
  const entry = await waitForEntry(gateway.logFile, id);
  assert.ok(!JSON.stringify(entry).includes(secret), `the log file got the key: ${JSON.stringify(entry)}`);
  assert.ok(gateway.stdout().includes(id), 'the entry is on stdout');
  assert.ok(!gateway.stdout().includes(secret), 'stdout got the key');
}

describe('the real key in any field of a provider error', () => {
  it('OpenAI error status: type, code, param and retry-after are scrubbed, not just the message', async () => {
    openaiMock.behave(({ req, res }) => {
      const key = String(req.headers.authorization).replace('Bearer ', '');
      res.writeHead(400, { 'content-type': 'application/json', 'retry-after': `1 ${key}`, 'x-request-id': `req_${key}` });
      res.end(JSON.stringify(openAIError(`bad key ${key}`, `type_${key}`, `code_${key}`, `param_${key}`)));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 400);
      assert.deepEqual(reply.json, { error: { message: 'bad key [redacted]', type: 'type_[redacted]', param: 'param_[redacted]', code: 'code_[redacted]' } });
      await assertScrubbed(reply, OPENAI_KEY);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('Anthropic error status: the type is scrubbed too', async () => {
    anthropicMock.behave(({ req, res }) => {
      res.writeHead(400, { 'content-type': 'application/json', 'request-id': 'req_a' });
      res.end(JSON.stringify(anthropicError(`invalid_${String(req.headers['x-api-key'])}`, 'nope')));
    });
    try {
      const reply = await chat(gateway.url, 'vk_anthropic', claude);
      assert.equal(reply.status, 400);
      assert.equal(reply.json.error.type, 'invalid_[redacted]');
      await assertScrubbed(reply, ANTHROPIC_KEY);
    } finally {
      anthropicMock.behave(null);
    }
  });

  it('OpenAI mid-stream error event: every field scrubbed', async () => {
    openaiMock.behave(({ req, res }) => {
      const key = String(req.headers.authorization).replace('Bearer ', '');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`data: ${JSON.stringify(openAIError(`revoked ${key}`, `type_${key}`, `code_${key}`, `param_${key}`))}\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.deepEqual(last, { error: { message: 'revoked [redacted]', type: 'type_[redacted]', param: 'param_[redacted]', code: 'code_[redacted]' } });
      await assertScrubbed(reply, OPENAI_KEY);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('Anthropic mid-stream error event: the type (which is also its code) scrubbed', async () => {
    anthropicMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`event: error\ndata: ${JSON.stringify(anthropicError(`overloaded_${String(req.headers['x-api-key'])}`, 'busy'))}\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_anthropic', { ...claude, stream: true });
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.equal(last.error.type, 'overloaded_[redacted]');
      assert.equal(last.error.code, 'overloaded_[redacted]');
      await assertScrubbed(reply, ANTHROPIC_KEY);
    } finally {
      anthropicMock.behave(null);
    }
  });

  it('a model list that echoes the key reaches the client scrubbed', async () => {
    openaiMock.behave(({ req, res }) => {
      const key = String(req.headers.authorization).replace('Bearer ', '');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1, owned_by: `org ${key}`, [key]: key }] }));
    });
    try {
      const reply = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_openai' });
      assert.equal(reply.status, 200);
      assert.equal(reply.json.data[0].owned_by, 'org [redacted]');
      assert.ok(!reply.text.includes(OPENAI_KEY.slice(-12)), reply.text);
    } finally {
      openaiMock.behave(null);
    }
  });
});

describe('answers the gateway cannot use as they are', () => {
  it('asks for no compression (accept-encoding: identity), so a server that compresses otherwise answers plainly', async () => {
    openaiMock.behave(({ req, res }) => {
      if (req.headers['accept-encoding'] === 'identity') return false;
      // As servers may when a request states no accept-encoding: any coding is acceptable then.
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [] })));
      return true;
    });
    try {
      assert.equal((await chat(gateway.url, 'vk_openai', hello)).status, 200);
      assert.equal((await chat(gateway.url, 'vk_openai', { ...hello, stream: true })).status, 200);
      assert.equal(openaiMock.requests.at(-1)?.headers['accept-encoding'], 'identity');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('a provider that compresses anyway gets a 502 naming the problem, not a garbled answer or a broken stream', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [] })));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_invalid_response');
      assert.match(reply.json.error.message, /compressed/);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.match(entry.error.detail, /content-encoding gzip/);
    } finally {
      openaiMock.behave(null);
    }
  });

  for (const status of ['101 Switching Protocols', '000 Nothing', '199 Unknown', '600 Beyond']) {
    it(`status ${status.slice(0, 3)} fails at once as 502 upstream_bad_status, instead of waiting for a timeout`, async () => {
      rawAnswer = `HTTP/1.1 ${status}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`;
      const reply = await chat(gateway.url, 'vk_raw', hello); // UPSTREAM_TIMEOUT_MS is a minute: a hang fails the test run
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_bad_status');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.match(entry.error.detail, new RegExp(`status ${status.slice(0, 3)}`));
    });
  }

  it('a 200 JSON answer cut short by its content-length is a 502 upstream_invalid_response, not a 200 with broken JSON', async () => {
    const completion = JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there' }, finish_reason: 'stop' }] });
    rawAnswer = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${completion.length - 20}\r\n\r\n${completion}`;
    const reply = await chat(gateway.url, 'vk_raw', hello);
    assert.equal(reply.status, 502);
    assert.equal(reply.json.error.code, 'upstream_invalid_response');
  });
});

describe('which URL was called', () => {
  it('an Anthropic base_url ending in /v1 gets the provider 404, and the log says which URL answered it', async () => {
    const reply = await chat(gateway.url, 'vk_anthropic_v1', claude);
    assert.equal(reply.status, 404);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.upstream.url, `${anthropicMock.baseUrl}/v1/v1/messages`);
    assert.equal(entry.error.detail, `upstream 404 from ${anthropicMock.baseUrl}/v1/v1/messages`);
    // ...and start-up said so before any request.
    assert.match(gateway.stderr(), /virtual key #3 \(vk_an…\): requests go to http:\/\/127\.0\.0\.1:\d+\/v1\/v1\/messages: "base_url" already ends in \/v1/);
  });

  it('every attempt of a retried call names its URL (scheme, host and path, no query string)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(openAIError('busy', 'server_error')));
    });
    const retrying = await startGateway({
      keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: `${openaiMock.baseUrl}?api-version=2025-01-01` } } },
      env: { UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_MAX_DELAY_MS: '10', LOG_CONSOLE: 'off' },
    });
    try {
      const reply = await chat(retrying.url, 'vk_openai', hello);
      assert.equal(reply.status, 503);
      const entry = await waitForEntry(retrying.logFile, String(reply.headers['x-request-id']));
      const url = `${openaiMock.baseUrl}/chat/completions`;
      assert.deepEqual(entry.upstream.attempts.map((attempt: { url: string; status: number }) => [attempt.url, attempt.status]), [[url, 503], [url, 503]]);
      assert.equal(entry.upstream.url, url);
    } finally {
      openaiMock.behave(null);
      await retrying.stop();
    }
  });
});
