/**
 * What providers (or what stands in front of them) send back, and what must never follow from
 * it: the real key in any field of an error reaching a client or a log, a compressed answer, an
 * impossible status that hangs a request until a timeout, a JSON answer cut short relayed as a
 * 200, a wrong base_url that nobody can trace.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseJsonStream, startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, messages, request, sseData } from './support/http.js';
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
/** A provider that answers key A's request twice (the second out of turn, a moment later), key B's after a while. */
let twice: net.Server;
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
  const completion = (text: string) => {
    const body = JSON.stringify({ id: 'chatcmpl-t', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  };
  twice = net.createServer((socket) => {
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (data: Buffer) => {
      head += data.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (head.length < end + 4 + length) return;
      const asked = head;
      head = '';
      if (asked.includes('answer me later')) setTimeout(() => socket.write(completion('for C')), 400);
      else if (asked.includes('sk-tenant-A')) {
        socket.write(completion('for A'));
        setTimeout(() => socket.write(completion('out of turn, from A\'s connection')), 150);
      } else setTimeout(() => socket.write(completion('for B')), 400);
    });
  });
  await new Promise<void>((resolve) => twice.listen(0, '127.0.0.1', resolve));
  const twicePort = (twice.address() as net.AddressInfo).port;
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl },
        vk_anthropic: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropicMock.baseUrl },
        vk_anthropic_v1: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: `${anthropicMock.baseUrl}/v1` },
        vk_raw: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${rawPort}/v1` },
        vk_chat_only: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, api: ['chat'] },
        vk_openai_responses: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, api: ['chat', 'responses'] },
        vk_tenant_a: { provider: 'openai', api_key: 'sk-tenant-A-1111111111', base_url: `http://127.0.0.1:${twicePort}/v1` },
        vk_tenant_b: { provider: 'openai', api_key: 'sk-tenant-B-2222222222', base_url: `http://127.0.0.1:${twicePort}/v1` },
        // Another tenant on the same real key (an organisation's one key, shared by its teams' virtual keys).
        vk_tenant_c: { provider: 'openai', api_key: 'sk-tenant-A-1111111111', base_url: `http://127.0.0.1:${twicePort}/v1` },
        vk_budget: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } },
        // Its own target: its model list is asked for (and kept) apart from vk_openai's.
        vk_models: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, rate_limit: { requests_per_minute: 1000 } },
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
  twice?.close();
});

/** Nothing the client got, nor its log entry in the file, nor stdout, holds the key or a part of it. */
/** A chat chunk of text: a stream that has begun before its error. */
const begun = (text: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }] })}\n\n`;
const anthropicBegun = `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 1 } } })}\n\n`;

/**
 * A stream's error as the client got it: at the stream's end once it had begun; as the answer's
 * status and body when it was the provider's first event (nothing had reached the client).
 */
function streamedError(reply: { status: number; text: string; json: any }, first: boolean, status: number): any {
  if (!first) {
    assert.equal(reply.status, 200, reply.text);
    return JSON.parse(sseData(reply.text).at(-1) ?? '{}');
  }
  assert.equal(reply.status, status, reply.text);
  return reply.json;
}

async function assertScrubbed(reply: { text: string; headers: Record<string, unknown> }, key: string): Promise<void> {
  const secret = key.slice(-12);
  assert.ok(!reply.text.includes(secret), `the client got the key: ${reply.text}`);
  assert.ok(!JSON.stringify(reply.headers).includes(secret), 'the key in a response header');
  const id = String(reply.headers['x-request-id']);
  const entry = await waitForEntry(gateway.logFile, id);
  assert.ok(!JSON.stringify(entry).includes(secret), `the log file got the key: ${JSON.stringify(entry)}`);
  // The file and stdout are written independently: stdout's copy may come a moment later.
  await waitFor(() => parseJsonStream(gateway.stdout()).some((each) => (each as { request_id?: unknown }).request_id === id), 'the whole entry on stdout');
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
      assert.equal(reply.headers['retry-after'], undefined, 'not a retry-after any client can read: dropped');
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

  for (const first of [false, true]) {
    it(`OpenAI error event ${first ? 'as the first event (the answer\'s status)' : 'mid-stream'}: every field scrubbed`, async () => {
      openaiMock.behave(({ req, res }) => {
        const key = String(req.headers.authorization).replace('Bearer ', '');
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${first ? '' : begun('Hi')}data: ${JSON.stringify(openAIError(`revoked ${key}`, `type_${key}`, `code_${key}`, `param_${key}`))}\n\n`);
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
        assert.deepEqual(streamedError(reply, first, 502), { error: { message: 'revoked [redacted]', type: 'type_[redacted]', param: 'param_[redacted]', code: 'code_[redacted]' } });
        await assertScrubbed(reply, OPENAI_KEY);
      } finally {
        openaiMock.behave(null);
      }
    });
  }

  it("a provider's 499 (its word for a client that closed), as a stream's first event or a status, is answered 502: never taken for this client leaving, which goes unanswered", async () => {
    for (const streamed of [true, false]) {
      openaiMock.behave(({ res }) => {
        const body = JSON.stringify({ error: { message: 'Client Closed Request', type: 'server_error', code: 499 } });
        if (streamed) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(`data: ${body}\n\n`);
        } else {
          res.writeHead(499, { 'content-type': 'application/json' });
          res.end(body);
        }
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
        assert.equal(reply.status, 502, reply.text);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 502);
      } finally {
        openaiMock.behave(null);
      }
    }
  });

  for (const first of [false, true]) {
    it(`a stream's error saying 401 ${first ? 'as its first event' : 'mid-stream'} is told as a refused real key, without the provider's message (which echoes part of the key)`, async () => {
      openaiMock.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${first ? '' : begun('Hi')}data: ${JSON.stringify({ error: { message: 'Incorrect API key provided: sk-proj-****wxyz', type: 'invalid_request_error', code: 'invalid_api_key', status: 401 } })}\n\n`);
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
        const error = streamedError(reply, first, 500).error;
        assert.equal(error.code, 'provider_auth_failed');
        assert.match(error.message, /The provider rejected the gateway's API key/);
        assert.doesNotMatch(reply.text, /wxyz/);
        if (first) assert.equal(reply.headers['x-should-retry'], 'false');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 500);
        assert.match(entry.error.detail, /upstream stream error 401: Incorrect API key provided/, 'the operator reads what the provider said');
      } finally {
        openaiMock.behave(null);
      }
    });
  }

  for (const first of [false, true]) {
    it(`Anthropic error event ${first ? 'as the first event (the answer\'s status)' : 'mid-stream'}: the type (which is also its code) scrubbed`, async () => {
      anthropicMock.behave(({ req, res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${first ? '' : anthropicBegun}event: error\ndata: ${JSON.stringify(anthropicError(`overloaded_${String(req.headers['x-api-key'])}`, 'busy'))}\n\n`);
      });
      try {
        const reply = await chat(gateway.url, 'vk_anthropic', { ...claude, stream: true });
        const error = streamedError(reply, first, 502).error;
        assert.equal(error.type, 'overloaded_[redacted]');
        assert.equal(error.code, 'overloaded_[redacted]');
        await assertScrubbed(reply, ANTHROPIC_KEY);
      } finally {
        anthropicMock.behave(null);
      }
    });
  }

  it("a provider's keep-alive comment before its stream's first event, an error, is held like a ping: the answer is still the error's status (chat and Messages, in the error's read or a read of its own)", async () => {
    const cases = [
      { name: 'chat', comment: ': keep-alive\n\n', error: `data: ${JSON.stringify(openAIError('quota gone', 'insufficient_quota', 'insufficient_quota', null))}\n\n` },
      // A block without an event (a reconnection hint) says nothing either.
      { name: 'chat', comment: 'retry: 3000\n\n', error: `data: ${JSON.stringify(openAIError('quota gone', 'insufficient_quota', 'insufficient_quota', null))}\n\n` },
      { name: 'messages', comment: ': ping from a proxy\n\n', error: `event: error\ndata: ${JSON.stringify(anthropicError('overloaded_error', 'Overloaded'))}\n\n` },
    ];
    for (const { name, comment, error } of cases) {
      // One read; or each comment in a read of its own (the first read is parsed whole, a later one cut in byte runs).
      for (const apart of [false, true]) {
        const behave = async ({ res }: { res: ServerResponse }) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          if (!apart) return void res.end(`${comment}${comment}${error}`);
          for (const piece of [comment, comment]) {
            res.write(piece);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          res.end(error);
        };
        (name === 'chat' ? openaiMock : anthropicMock).behave(behave);
        try {
          const reply = name === 'chat' ? await chat(gateway.url, 'vk_openai', { ...hello, stream: true }) : await messages(gateway.url, 'vk_anthropic', { ...claude, stream: true });
          const where = `${name}, ${apart ? 'a read of its own' : 'one read'}`;
          assert.notEqual(reply.status, 200, `${where}: ${reply.text}`);
          assert.equal(reply.json.error.type, name === 'chat' ? 'insufficient_quota' : 'overloaded_error', where);
          assert.ok(!reply.text.includes('keep-alive') && !reply.text.includes('ping') && !reply.text.includes('retry:'), where);
          const entry = await waitForEntry(gateway.logFile, String(reply.headers[name === 'chat' ? 'x-request-id' : 'request-id']));
          assert.equal(entry.status, reply.status, where);
        } finally {
          (name === 'chat' ? openaiMock : anthropicMock).behave(null);
        }
      }
    }
    // Before an answer, held until it comes; once the stream began, a comment goes on as it comes.
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const piece of [': keep-alive\n\n', begun('Hi'), ': keep-alive\n\n']) {
        res.write(piece);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      res.end(`${begun(' there')}data: [DONE]\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.equal(reply.status, 200);
      assert.equal(reply.text, `: keep-alive\n\n${begun('Hi')}: keep-alive\n\n${begun(' there')}data: [DONE]\n\n`);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('a successful answer that echoes the key reaches the client and the log scrubbed, JSON or stream', async () => {
    openaiMock.behave(({ req, res, recorded }) => {
      const key = String(req.headers.authorization).replace('Bearer ', '');
      const chunk = (delta: unknown, finish: string | null): string =>
        `data: ${JSON.stringify({ id: `chatcmpl-${key}`, object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      if (recorded.json.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        // One event, cut inside the key between two writes (two reads at the gateway).
        const event = chunk({ role: 'assistant', content: `your key is ${key}` }, null);
        const cut = event.indexOf(key) + 10;
        res.write(event.slice(0, cut));
        setTimeout(() => res.end(`${event.slice(cut)}${chunk({}, 'stop')}data: [DONE]\n\n`), 20);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: `chatcmpl-${key}`, object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `your key is ${key}` }, finish_reason: 'stop' }] }));
    });
    try {
      const json = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(json.status, 200);
      assert.equal(json.json.choices[0].message.content, 'your key is [redacted]');
      await assertScrubbed(json, OPENAI_KEY);
      const stream = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.equal(stream.status, 200);
      assert.equal(sseData(stream.text).at(-1), '[DONE]');
      assert.match(stream.text, /"content":"your key is \[redacted\]"/);
      await assertScrubbed(stream, OPENAI_KEY);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('an answer read whole on the routes that generate nothing (count_tokens, input_tokens) that echoes the key reaches the client and the log scrubbed', async () => {
    anthropicMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: 5, debug: `auth was ${String(req.headers['x-api-key'])}` }));
    });
    openaiMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'response.input_tokens', input_tokens: 5, debug: `auth was ${String(req.headers.authorization)}` }));
    });
    try {
      const counted = await request(gateway.url, '/v1/messages/count_tokens', { key: null, headers: { 'x-api-key': 'vk_anthropic', 'anthropic-version': '2023-06-01' }, body: { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'Hello' }] } });
      assert.equal(counted.status, 200, counted.text);
      assert.equal(counted.json.debug, 'auth was [redacted]');
      await assertScrubbed(counted, ANTHROPIC_KEY);
      const input = await request(gateway.url, '/v1/responses/input_tokens', { key: 'vk_openai_responses', body: { model: 'gpt-4o-mini', input: 'Hello' } });
      assert.equal(input.status, 200, input.text);
      assert.equal(input.json.debug, 'auth was Bearer [redacted]');
      await assertScrubbed(input, OPENAI_KEY);
    } finally {
      anthropicMock.behave(null);
      openaiMock.behave(null);
    }
  });

  it("a translated answer's usage object is logged as it came where it is what usage objects are, its top-level counts where it is not (a million values nested deep held the loop for seconds)", async () => {
    const deep = JSON.parse(`${'['.repeat(100)}${'0,'.repeat(999)}0${']'.repeat(100)}`) as unknown;
    const usages = [
      { input_tokens: 3, output_tokens: 1, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 } },
      { input_tokens: 3, output_tokens: 1, cache_read_input_tokens: 0, server_tool_use: deep },
    ];
    for (const [i, usage] of usages.entries()) {
      anthropicMock.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'msg_u', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'Hi' }], stop_reason: 'end_turn', stop_sequence: null, usage }));
      });
      try {
        const reply = await chat(gateway.url, 'vk_anthropic', hello);
        assert.equal(reply.status, 200, reply.text);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.deepEqual(entry.upstream.usage, i === 0 ? usage : { input_tokens: 3, output_tokens: 1, cache_read_input_tokens: 0 });
      } finally {
        anthropicMock.behave(null);
      }
    }
  });

  it('Anthropic: a message id that holds the key is scrubbed from the translated stream', async () => {
    anthropicMock.behave(({ req, res }) => {
      const key = String(req.headers['x-api-key']);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const event = (name: string, data: unknown): string => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
      res.end(
        event('message_start', { type: 'message_start', message: { id: `msg_${key}`, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 1 } } }) +
          event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
          event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } }) +
          event('content_block_stop', { type: 'content_block_stop', index: 0 }) +
          event('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }) +
          event('message_stop', { type: 'message_stop' }),
      );
    });
    try {
      const reply = await chat(gateway.url, 'vk_anthropic', { ...claude, stream: true });
      assert.equal(reply.status, 200);
      assert.match(reply.text, /"id":"msg_\[redacted\]"/);
      await assertScrubbed(reply, ANTHROPIC_KEY);
    } finally {
      anthropicMock.behave(null);
    }
  });

  for (const first of [false, true]) {
    it(`an OpenAI-compatible server's bare error object (vLLM) ${first ? 'as its first event is the answer\'s status' : 'mid-stream ends the stream as an error'}, scrubbed`, async () => {
      openaiMock.behave(({ req, res }) => {
        const key = String(req.headers.authorization).replace('Bearer ', '');
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${first ? '' : begun('Hi')}data: ${JSON.stringify({ object: 'error', message: `engine failed for ${key}`, type: 'InternalServerError', param: null, code: 500 })}\n\n`);
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
        assert.equal(streamedError(reply, first, 500).error.message, 'engine failed for [redacted]');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 500, 'logged at the status it names, as its HTTP answer would be');
        await assertScrubbed(reply, OPENAI_KEY);
      } finally {
        openaiMock.behave(null);
      }
    });
  }

  it("a chat stream's [DONE] before any choice finished is a cut stream to a client it is translated for (Messages, Responses), not a finished answer", async () => {
    const data = (delta: object) => `data: ${JSON.stringify({ id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`${data({ role: 'assistant', content: 'Hel' })}${data({ content: 'lo' })}data: [DONE]\n\n`);
    });
    try {
      const headers = { 'x-api-key': 'vk_openai', 'anthropic-version': '2023-06-01' };
      const messages = await request(gateway.url, '/v1/messages', { headers, body: { ...claude, model: 'gpt-4o-mini', stream: true } });
      assert.equal(messages.status, 200);
      assert.match(messages.text, /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"The provider ended the stream before the answer was complete\."/);
      assert.doesNotMatch(messages.text, /message_stop|end_turn/);
      const logged = await waitForEntry(gateway.logFile, String(messages.headers['x-request-id']));
      assert.equal(logged.status, 502);
      assert.equal(logged.error.code, 'upstream_incomplete_stream');
      const responses = await request(gateway.url, '/v1/responses', { key: 'vk_chat_only', body: { model: 'gpt-4o-mini', input: 'Hello', stream: true } });
      assert.equal(responses.status, 200);
      assert.match(responses.text, /event: response\.failed/);
      assert.doesNotMatch(responses.text, /response\.completed/);
      // Passed through, the client gets what the provider sent.
      const passed = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.match(passed.text, /"content":"lo"[^\n]*\n\ndata: \[DONE\]/);
    } finally {
      openaiMock.behave(null);
    }
  });

  it("an answer a provider sends out of turn on one real key's connection never reaches a request made with another real key", async () => {
    const first = await chat(gateway.url, 'vk_tenant_a', hello);
    assert.equal(first.json.choices[0].message.content, 'for A');
    const second = await chat(gateway.url, 'vk_tenant_b', hello);
    assert.equal(second.status, 200);
    assert.equal(second.json.choices[0].message.content, 'for B');
  });

  it("nor a request of another virtual key made with the same real key: each virtual key has its own connections", async () => {
    const first = await chat(gateway.url, 'vk_tenant_a', hello);
    assert.equal(first.json.choices[0].message.content, 'for A');
    const other = await chat(gateway.url, 'vk_tenant_c', { ...hello, messages: [{ role: 'user', content: 'answer me later' }] });
    assert.equal(other.status, 200);
    assert.equal(other.json.choices[0].message.content, 'for C');
  });

  it('a content-encoding that holds the key does not bring it into the log', async () => {
    openaiMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': `x-${String(req.headers.authorization).replace('Bearer ', '')}` });
      res.end('{}');
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 502);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.match(entry.error.detail, /an unknown content-encoding/);
      await assertScrubbed(reply, OPENAI_KEY);
    } finally {
      openaiMock.behave(null);
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

describe('a provider\'s model list', () => {
  it('is asked for once for clients that come and go while it is slow: a client that leaves stops waiting, and does not cancel the ask', async () => {
    let asked = 0;
    openaiMock.behave(({ req, res }) => {
      if (req.method !== 'GET') return false;
      asked++;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1, owned_by: 'system' }] }));
      }, 600);
      return true;
    });
    try {
      // Clients that ask and leave at once, one after another, then many that wait.
      for (let i = 0; i < 5; i++) {
        const socket = net.connect(Number(new URL(gateway.url).port), '127.0.0.1');
        socket.on('error', () => {});
        socket.write('GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_models\r\n\r\n');
        await new Promise((resolve) => setTimeout(resolve, 30));
        socket.destroy();
      }
      const replies = await Promise.all(Array.from({ length: 20 }, () => request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_models' })));
      assert.deepEqual(replies.map((reply) => reply.status), Array(20).fill(200));
      assert.deepEqual(replies[19]?.json.data.map((model: { id: string }) => model.id), ['gpt-4o-mini']);
      assert.equal(asked, 1, 'one ask of the provider');
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

  it('an error status with a compressed body keeps its status (it may be retried or handed to another key)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(429, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'retry-after': '1' });
      res.end(gzipSync(JSON.stringify(openAIError('slow down', 'rate_limit_error'))));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 429);
      assert.equal(reply.json.error.message, 'The provider answered with status 429.');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('an empty content-encoding header is no encoding', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': '' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'fine' }, finish_reason: 'stop' }] }));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 200);
      assert.equal(reply.json.choices[0].message.content, 'fine');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('usage numbers no counter can hold (negative, 1e999), or not numbers, are no usage: never in metrics, and estimated against a budget, not free', async () => {
    let usage = '{"prompt_tokens":-1e9,"completion_tokens":1e999,"total_tokens":5}';
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"id":"x","object":"chat.completion","created":1,"model":"odd-usage","choices":[{"index":0,"message":{"role":"assistant","content":"${'y'.repeat(400)}"},"finish_reason":"stop"}],"usage":${usage}}`);
    });
    try {
      assert.equal((await chat(gateway.url, 'vk_openai', { ...hello, model: 'odd-usage' })).status, 200);
      const metrics = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      assert.doesNotMatch(metrics, /Infinity|-1000000000/);
      assert.doesNotMatch(metrics, /_tokens_total\{[^}]*model="odd-usage"\}/, 'no token counts for an answer without usable ones');
      usage = '{"prompt_tokens":"12","completion_tokens":{"a":1},"total_tokens":[]}';
      const reply = await chat(gateway.url, 'vk_budget', { ...hello, messages: [{ role: 'user', content: 'z'.repeat(4000) }] });
      assert.equal(reply.status, 200);
      await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      const spent = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_budget' })).json;
      assert.equal(spent.requests, 1);
      assert.ok(spent.usage.total_tokens >= 1000, `estimated, prompt and answer: ${JSON.stringify(spent.usage)}`);
    } finally {
      openaiMock.behave(null);
    }
  });

  for (const status of ['101 Switching Protocols', '000 Nothing', '600 Beyond', '1000 Way Beyond']) {
    it(`status ${status.split(' ')[0]} fails at once as 502 upstream_bad_status, instead of waiting for a timeout`, async () => {
      rawAnswer = `HTTP/1.1 ${status}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`;
      const reply = await chat(gateway.url, 'vk_raw', hello); // UPSTREAM_TIMEOUT_MS is a minute: a hang fails the test run
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_bad_status');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.match(entry.error.detail, new RegExp(`status ${status.split(' ')[0]}`));
    });
  }

  it('an answer that is not HTTP the gateway can read is a 502 upstream_invalid_response, not a provider that could not be reached', async () => {
    // Also at once for what is plainly not HTTP/1.x and never ends a head (a mail server's banner, HTTP/2's GOAWAY frame): not after UPSTREAM_TIMEOUT_MS.
    const goAway = Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).toString('latin1');
    for (const answer of ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70_000)}\r\n\r\n`, '220 mail.example.com ESMTP ready\r\n', goAway, 'HTTP/2 200\r\n', 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n-5\r\n{}\r\n']) {
      rawAnswer = answer;
      const reply = await chat(gateway.url, 'vk_raw', hello);
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_invalid_response');
      assert.match(reply.json.error.message, /^The provider's answer is not valid HTTP \(HPE_[A-Z_]+\)\.$/);
    }
  });

  it('an answer of millions of tiny values (whole, or as a stream event) is a 502 naming why, not parsed while every other request waits', async () => {
    const objects = `{"id":"x","object":"chat.completion","choices":[${'{},'.repeat(2_600_000)}{}]}`;
    rawAnswer = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${objects.length}\r\n\r\n${objects}`;
    const reply = await chat(gateway.url, 'vk_raw', hello);
    assert.equal(reply.status, 502, reply.text.slice(0, 300));
    assert.equal(reply.json.error.code, 'upstream_invalid_response');
    assert.equal(reply.json.error.message, 'The provider sent an answer the gateway cannot read: its answer holds more than 2500000 objects and arrays.');
    // Translated (a Messages client, a chat provider), every event is read; passed through, a plain one goes on as its bytes.
    rawAnswer = `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: ${objects}\n\n`;
    const streamed = await messages(gateway.url, 'vk_raw', { model: 'gpt-4o-mini', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'Hello' }] });
    assert.equal(streamed.status, 502, streamed.text.slice(0, 300));
    assert.equal(streamed.json.error.message, 'The provider sent an answer the gateway cannot read: a stream event holds more than 2500000 objects and arrays.');
  });

  it("a stream whose chunk framing breaks mid-way ends with upstream_invalid_response, not a connection the provider lost", async () => {
    const event = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }] })}\n\n`;
    rawAnswer = `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${Buffer.byteLength(event).toString(16)}\r\n${event}\r\n0x10\r\n`;
    const reply = await chat(gateway.url, 'vk_raw', { ...hello, stream: true });
    assert.equal(reply.status, 200);
    const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
    assert.equal(last.error.code, 'upstream_invalid_response');
    assert.equal(last.error.message, "The provider's answer is not valid HTTP (HPE_INVALID_CHUNK_SIZE).");
  });

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
