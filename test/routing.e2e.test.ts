/**
 * Virtual keys with several targets, end to end: the gateway as it ships, in front of two or three
 * mock providers. The first target refuses connections, answers 429 or 503, or hangs past the
 * key's headers timeout → the next serves, for JSON and streams and each client API (translated
 * for the target that serves); a 400, 404 or 422 and a mid-stream failure do not move on; a key's
 * own `fallback_on` decides; weights hold over 1,000 requests; a failing target is skipped during
 * its cool-down and probed after, one probe at a time; retries and moves compose within one overall
 * bound on attempts and time; the log, the metrics and a response header say what happened; a
 * reload changes the targets.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { readLogFile, startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { messages, request, sseData, type Reply } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const KEY_A = 'sk-proj-e2eROUTINGfirst-Aa1';
const KEY_B = 'sk-proj-e2eROUTINGsecond-Bb2';
const ANTHROPIC_KEY = 'sk-ant-api03-e2eROUTING-Cc3';
const DEEPSEEK_KEY = 'sk-e2eROUTINGdeepseek-Dd4';
const KEY_A2 = 'sk-proj-e2eROUTINGfirst-other-Ee5';

let first: MockUpstream;
let second: MockUpstream;
let deepseek: MockUpstream;
let anthropic: AnthropicMock;
let gateway: GatewayProcess;
let down: number;

const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello there' }] };

function keys(order: 'ab' | 'ba' = 'ab'): unknown {
  const a = { provider: 'openai', api_key: KEY_A, base_url: first.baseUrl, api: ['chat', 'responses'] };
  const b = { provider: 'openai', api_key: KEY_B, base_url: second.baseUrl };
  return {
    virtual_keys: {
      // A high failure count: these tests fail its first target on purpose, one after another.
      vk_fb: { name: 'fb', circuit_breaker: { failures: 100, cooldown_ms: 1000 }, targets: order === 'ab' ? [a, b] : [b, a] },
      // Its own key: a 429 cools the first target's only real key down (30 s), and the target is then passed over.
      vk_fb429: { name: 'fb429', targets: [a, b] },
      vk_fb401: { name: 'fb401', targets: [a, b] },
      vk_fb403: { name: 'fb403', targets: [a, b] },
      // A last target without real keys (the built-in mock): never "cooling".
      vk_to_mock: { name: 'to-mock', targets: [{ provider: 'openai', api_key: KEY_A, base_url: `http://127.0.0.1:${down}/v1` }, { provider: 'mock' }] },
      vk_refused: { name: 'refused', targets: [{ provider: 'openai', api_key: KEY_A, base_url: `http://127.0.0.1:${down}/v1` }, { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-sonnet-4-5' } }] },
      vk_hang: { name: 'hang', timeout_ms: 400, targets: [a, b] },
      vk_slow: { name: 'slow', timeout_ms: 300, provider: 'openai', api_key: KEY_A, base_url: first.baseUrl },
      vk_claude_test: { name: 'claude-fb', targets: [{ provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl }, { ...b, model_map: { 'claude-*': 'gpt-4o-mini' } }] },
      vk_codex: { name: 'codex-fb', targets: [a, { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseek.baseUrl, model_map: { '*': 'deepseek-chat' } }] },
      vk_weighted: { name: 'weighted', strategy: 'weighted', targets: [{ ...a, weight: 3 }, { ...b, weight: 1 }] },
      vk_breaker: { name: 'breaker', circuit_breaker: { failures: 2, cooldown_ms: 1500 }, targets: [a, b] },
      vk_only: { name: 'only', provider: 'openai', api_key: KEY_A, base_url: first.baseUrl },
      vk_probe: { name: 'probe', circuit_breaker: { failures: 1, cooldown_ms: 300 }, targets: [a, b] },
      vk_cool: { name: 'cool', targets: [a, b] },
      vk_to_claude: { name: 'to-claude', targets: [a, { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-sonnet-4-5' } }] },
      vk_then_down: { name: 'then-down', targets: [a, { ...b, base_url: `http://127.0.0.1:${down}/v1` }] },
      vk_on503: { name: 'on503', fallback_on: [503], targets: [a, b] },
      vk_on401: { name: 'on401', fallback_on: [401, 503], targets: [a, b] },
      vk_cooling: { name: 'cooling', targets: [a, b] },
      vk_open_to_claude: { name: 'open-to-claude', circuit_breaker: { failures: 1, cooldown_ms: 60_000 }, targets: [a, { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { '*': 'claude-sonnet-4-5' } }] },
      vk_probe2: { name: 'probe2', circuit_breaker: { failures: 1, cooldown_ms: 250 }, targets: [a, b] },
      vk_probe3: { name: 'probe3', circuit_breaker: { failures: 1, cooldown_ms: 250 }, targets: [a, b] },
      vk_two_keys: { name: 'two-keys', targets: [{ ...a, api_key: undefined, api_keys: [KEY_A, KEY_A2] }, b] },
      vk_claude_down: { name: 'claude-down', targets: [{ provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: `http://127.0.0.1:${down}` }, { ...b, model_map: { 'claude-*': 'gpt-4o-mini' } }] },
    },
  };
}

before(async () => {
  [first, second, deepseek, anthropic] = await Promise.all([
    startOpenAIMock({ flavor: 'openai', apiKey: KEY_A, otherKeys: [KEY_A2] }),
    startOpenAIMock({ flavor: 'openai', apiKey: KEY_B }),
    startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY }),
    startAnthropicMock({ apiKey: ANTHROPIC_KEY }),
  ]);
  down = await refusingPort();
  gateway = await startGateway({ keys: keys(), env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', STATE_FILE: 'off', GATEWAY_HOST: '127.0.0.1' } });
});

after(async () => {
  await gateway?.stop();
  await Promise.all([first?.close(), second?.close(), deepseek?.close(), anthropic?.close()]);
});

function chat(key: string, body: unknown = hello): Promise<Reply> {
  return request(gateway.url, '/v1/chat/completions', { key, body });
}

/** The first provider answers every request with `status` until `behave(null)`. */
function failWith(mock: MockUpstream | AnthropicMock, status: number): void {
  mock.behave(({ res }) => {
    const body = JSON.stringify(openAIError(`Failing with ${status} on purpose`, status === 429 ? 'requests' : 'server_error'));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

/** A request whose client leaves when told to (`leave`); nothing is read of its answer. */
function leavingRequest(key: string, body: unknown = hello): { leave(): void } {
  const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
  req.on('error', () => {});
  req.end(JSON.stringify(body));
  return { leave: () => req.destroy() };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function reset(): void {
  for (const mock of [first, second, deepseek, anthropic]) {
    mock.behave(null);
    mock.requests.length = 0;
  }
}

describe('moving on to the next target', () => {
  for (const status of [429, 503, 401, 403]) {
    it(`after a ${status}, the next target answers; the log names both attempts and the target that served`, async () => {
      reset();
      failWith(first, status);
      try {
        // A 429 or 401/403 cools the first target's only real key: each its own key, the others unaffected.
        const reply = await chat(status === 429 ? 'vk_fb429' : status === 401 ? 'vk_fb401' : status === 403 ? 'vk_fb403' : 'vk_fb');
        assert.equal(reply.status, 200, reply.text);
        assert.equal(reply.json.choices[0].message.content, 'openai says: Hello there');
        assert.equal(reply.headers['x-gateway-provider'], 'openai');
        assert.equal(first.requests.length, 1);
        assert.equal(second.requests.length, 1);
        assert.equal(second.requests[0]?.headers.authorization, `Bearer ${KEY_B}`);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 200);
        assert.equal(entry.upstream.target, 1);
        assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.status, attempt.error]), [[0, status, null], [1, 200, null]]);
        assert.ok(!JSON.stringify(entry).includes(KEY_A) && !JSON.stringify(entry).includes(KEY_B));
      } finally {
        reset();
      }
    });
  }

  it('after a refused connection, a chat request is translated for the Anthropic target that serves, and answers in chat', async () => {
    reset();
    const reply = await chat('vk_refused');
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'chat.completion');
    assert.equal(typeof reply.json.choices[0].message.content, 'string');
    assert.equal(reply.headers['x-gateway-provider'], 'anthropic');
    assert.equal(anthropic.requests[0]?.json.model, 'claude-sonnet-4-5');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual([entry.provider, entry.upstream.target, entry.upstream.model], ['anthropic', 1, 'claude-sonnet-4-5']);
    assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.error]), [[0, 'upstream_unreachable'], [1, null]]);
  });

  it('falls back to a target without real keys (the built-in mock)', async () => {
    reset();
    const reply = await chat('vk_to_mock');
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.headers['x-gateway-provider'], 'mock');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.error]), [[0, 'upstream_unreachable'], [1, null]]);
  });

  it('an agent-sized conversation let go of when passed through reaches the Anthropic target after it whole', async () => {
    reset();
    // 300 KB: its messages are parsed in pieces and let go of once the first target's body is its bytes.
    const messages = Array.from({ length: 60 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i} ${'é x'.repeat(1600)}` }));
    const reply = await chat('vk_refused', { model: 'gpt-4o-mini', max_tokens: 50, messages });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'chat.completion');
    const sent = anthropic.requests[0]?.json;
    assert.deepEqual(sent.messages.map((message: any) => [message.role, message.content]), messages.map((message) => [message.role, message.content]));
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.request.messages, messages);
  });

  it("after the first target hangs past the key's timeout_ms, the next serves a stream", async () => {
    reset();
    first.behave(() => {}); // never answers
    try {
      const started = Date.now();
      const reply = await chat('vk_hang', { ...hello, stream: true });
      assert.equal(reply.status, 200);
      const data = sseData(reply.text);
      assert.equal(data.at(-1), '[DONE]');
      const text = data.filter((event) => event !== '[DONE]').map((event) => JSON.parse(event).choices[0]?.delta?.content ?? '').join('');
      assert.equal(text, 'openai says: Hello there');
      assert.ok(Date.now() - started < 5000);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.error]), [[0, 'upstream_timeout'], [1, null]]);
    } finally {
      reset();
    }
  });

  it("a 504 after the key's timeout_ms names that setting, not UPSTREAM_TIMEOUT_MS", async () => {
    reset();
    first.behave(() => {}); // never answers
    try {
      const reply = await chat('vk_slow');
      assert.equal(reply.status, 504);
      assert.equal(reply.json.error.message, "The provider sent no response within 300 ms (the virtual key's timeout_ms).");
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.error.message, reply.json.error.message);
    } finally {
      reset();
    }
  });

  it('moves a stream request on after a 503, before any byte reached the client', async () => {
    reset();
    failWith(first, 503);
    try {
      const reply = await chat('vk_fb', { ...hello, stream: true });
      assert.equal(reply.status, 200);
      assert.equal(sseData(reply.text).at(-1), '[DONE]');
      assert.equal(second.requests.length, 1);
    } finally {
      reset();
    }
  });

  it("moves a stream on when the provider's 200 opens with its error (Anthropic's overloaded_error), before any byte reached the client", async () => {
    reset();
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n');
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', max_tokens: 200, stream: true, messages: [{ role: 'user', content: 'Hi Claude' }] });
      assert.equal(reply.status, 200, reply.text);
      assert.match(reply.text, /^event: message_start\n/);
      const text = sseData(reply.text).map((data) => JSON.parse(data)).filter((event) => event.type === 'content_block_delta').map((event) => event.delta.text).join('');
      assert.equal(text, 'openai says: Hi Claude');
      assert.match(reply.text, /event: message_stop\n/);
      assert.doesNotMatch(reply.text, /overloaded/);
      assert.equal(anthropic.requests.length, 1);
      assert.equal(second.requests.length, 1);
      assert.equal(reply.headers['x-gateway-provider'], 'openai');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.status, 200);
      assert.equal(entry.error, undefined);
      assert.equal(entry.upstream.target, 1);
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.status, attempt.error]), [[0, 200, 'overloaded_error'], [1, 200, null]]);
      assert.equal(entry.response.content.map((block: any) => block.text).join(''), 'openai says: Hi Claude');
    } finally {
      reset();
    }
  });

  it("moves on when the provider's 200 holds its error as JSON (a proxy's 503 wrapped in a 200); one not in fallback_on goes to the client at its status", async () => {
    reset();
    first.behave(({ res }) => {
      const body = JSON.stringify({ error: { message: 'Service Unavailable', type: 'server_error', param: null, code: 503 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    try {
      const reply = await chat('vk_fb');
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json.choices[0].message.content, 'openai says: Hello there');
      assert.equal(second.requests.length, 1);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.status, attempt.error]), [[0, 200, '503'], [1, 200, null]]);
      assert.equal(entry.response.choices[0].message.content, 'openai says: Hello there');
      // fallback_on [503] only: a 500 in a 200 is the client's, at its status.
      first.behave(({ res }) => {
        const body = JSON.stringify({ error: { message: 'Boom', type: 'server_error', param: null, code: 500 } });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      const kept = await chat('vk_on503');
      assert.equal(kept.status, 500, kept.text);
      assert.equal(kept.json.error.message, 'Boom');
      assert.equal(second.requests.length, 1);
    } finally {
      reset();
    }
  });

  it('a Messages request falls back from Anthropic (529) to an OpenAI-format target, answered in Messages', async () => {
    reset();
    failWith(anthropic, 529);
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', max_tokens: 200, messages: [{ role: 'user', content: 'Hi Claude' }] });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json.type, 'message');
      assert.equal(reply.json.content[0].text, 'openai says: Hi Claude');
      assert.equal(second.requests[0]?.json.model, 'gpt-4o-mini');
      assert.equal(reply.headers['x-gateway-provider'], 'openai');
    } finally {
      reset();
    }
  });

  it('a Responses request falls back from OpenAI (passed through) to DeepSeek (translated), answered in Responses', async () => {
    reset();
    failWith(first, 500);
    try {
      const reply = await request(gateway.url, '/v1/responses', { key: 'vk_codex', body: { model: 'gpt-5', input: 'Hi Codex', stream: true, store: false } });
      assert.equal(reply.status, 200, reply.text);
      const events = sseData(reply.text).map((data) => JSON.parse(data));
      assert.equal(events[0].type, 'response.created');
      assert.equal(events.at(-1).type, 'response.completed');
      assert.equal(events.at(-1).response.output_text, 'deepseek says: Hi Codex');
      assert.equal(first.requests[0]?.path, '/v1/responses');
      assert.equal(deepseek.requests[0]?.path, '/chat/completions');
    } finally {
      reset();
    }
  });

  it('a Messages request whose Anthropic target refuses connections is served by the OpenAI-format target, answered in Messages', async () => {
    reset();
    const reply = await messages(gateway.url, 'vk_claude_down', { model: 'claude-sonnet-4-5', max_tokens: 200, messages: [{ role: 'user', content: 'Hi Claude' }] });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.type, 'message');
    assert.equal(reply.json.content[0].text, 'openai says: Hi Claude');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.error]), [[0, 'upstream_unreachable'], [1, null]]);
  });

  it("a Responses request whose first target hangs past the key's timeout_ms is served by the next (translated), answered in Responses", async () => {
    reset();
    first.behave(() => {}); // never answers
    try {
      const reply = await request(gateway.url, '/v1/responses', { key: 'vk_hang', body: { model: 'gpt-4o-mini', input: 'Hi Codex', store: false } });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json.object, 'response');
      assert.equal(reply.json.output[0].content[0].text, 'openai says: Hi Codex');
      assert.deepEqual([first.requests[0]?.path, second.requests[0]?.path], ['/v1/responses', '/v1/chat/completions']);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.error]), [[0, 'upstream_timeout'], [1, null]]);
    } finally {
      reset();
    }
  });

  it("follows the key's own fallback_on: with [503], a 500 and a 429 go to the client; with [401, 503], a 401 moves on", async () => {
    reset();
    try {
      // 500 first: the 429 cools the target's only real key down, and the target would be passed over after it.
      for (const status of [500, 429]) {
        failWith(first, status);
        const reply = await chat('vk_on503');
        assert.equal(reply.status, status, reply.text);
        assert.match(reply.json.error.message, new RegExp(`Failing with ${status}`));
      }
      assert.equal(second.requests.length, 0);
      failWith(first, 401);
      const moved = await chat('vk_on401');
      assert.equal(moved.status, 200, moved.text);
      assert.equal(second.requests.length, 1);
    } finally {
      reset();
    }
  });

  it('passes over a target whose real keys are all cooling down: the next request does not reach it', async () => {
    reset();
    failWith(first, 429);
    try {
      assert.equal((await chat('vk_cooling')).status, 200);
      assert.deepEqual([first.requests.length, second.requests.length], [1, 1]);
      const reply = await chat('vk_cooling');
      assert.equal(reply.status, 200);
      assert.deepEqual([first.requests.length, second.requests.length], [1, 2], 'the first target was not asked');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual([entry.upstream.target, entry.upstream.skipped_targets], [1, [0]]);
    } finally {
      reset();
    }
  });

  it("after a 429 on a target before the last, its other real key is tried before the next target", async () => {
    reset();
    first.behave(({ req, res }) => {
      if (req.headers.authorization !== `Bearer ${KEY_A}`) return false; // the other key is served as usual
      const body = JSON.stringify(openAIError('Rate limited on purpose', 'requests'));
      res.writeHead(429, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    });
    try {
      const reply = await chat('vk_two_keys');
      assert.equal(reply.status, 200, reply.text);
      assert.equal(second.requests.length, 0, 'the next target was not needed');
      assert.deepEqual(first.requests.map((recorded) => recorded.headers.authorization), [`Bearer ${KEY_A}`, `Bearer ${KEY_A2}`]);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.api_key, attempt.status]), [[0, 0, 429], [0, 1, 200]]);
    } finally {
      reset();
    }
  });
});

describe('staying with the target', () => {
  for (const status of [400, 404, 422]) {
    it(`passes a ${status} on (the request itself is wrong): the next target is never asked`, async () => {
      reset();
      failWith(first, status);
      try {
        const reply = await chat('vk_fb');
        assert.equal(reply.status, status);
        assert.equal(second.requests.length, 0);
      } finally {
        reset();
      }
    });
  }

  it('never moves on mid-stream: a stream that fails after its first byte ends with an error', async () => {
    reset();
    first.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }] })}\n\n`);
      setTimeout(() => res.destroy(), 30);
    });
    try {
      const reply = await chat('vk_fb', { ...hello, stream: true });
      const data = sseData(reply.text);
      assert.match(data.at(-1) ?? '', /"error"/);
      assert.equal(second.requests.length, 0);
    } finally {
      reset();
    }
  });

  it('a key with one target has no routing header, and its log names no target', async () => {
    reset();
    const reply = await chat('vk_only');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-gateway-provider'], undefined);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.upstream.target, undefined);
  });
});

describe('review findings', () => {
  it('a probe the client abandons does not leave the circuit open for good', async () => {
    reset();
    failWith(first, 503);
    try {
      assert.equal((await chat('vk_probe')).status, 200, 'the 503 opened the circuit');
      await new Promise((resolve) => setTimeout(resolve, 400));
      first.behave(() => {}); // the probe hangs, and its client leaves
      await new Promise<void>((resolve) => {
        const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_probe', 'content-type': 'application/json' } });
        req.on('error', () => resolve());
        req.end(JSON.stringify(hello));
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
      first.behave(null);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const before = first.requests.length;
      const probe = await chat('vk_probe');
      assert.equal(probe.status, 200);
      assert.equal(first.requests.length, before + 1, 'the first target is probed again, and serves');
    } finally {
      reset();
    }
  });

  it("passes the first target's own answer on when every other target is cooling down", async () => {
    reset();
    failWith(first, 503);
    failWith(second, 429);
    try {
      const both = await chat('vk_cool');
      assert.equal(both.status, 429, 'the last target answered 429: its key cools down');
      failWith(first, 429);
      const reply = await chat('vk_cool');
      assert.equal(reply.status, 429);
      assert.match(reply.json.error.message, /Failing with 429/);
      assert.equal(reply.headers['x-gateway-provider'], 'openai');
    } finally {
      reset();
    }
  });

  it("logs the status of the target that served, not an earlier one's: a 503, then a refused connection", async () => {
    reset();
    failWith(first, 503);
    try {
      const reply = await chat('vk_then_down');
      assert.equal(reply.status, 502);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual([entry.status, entry.upstream.target, entry.upstream.status, entry.upstream.request_id], [502, 1, null, null]);
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.status, attempt.error]), [[0, 503, null], [1, null, 'upstream_unreachable']]);
    } finally {
      reset();
    }
  });

  it('sends one probe at a time: a request that reached a half-open target without being its probe, and left, does not free the probe', async () => {
    reset();
    failWith(first, 503);
    failWith(second, 503);
    const hung: { leave(): void }[] = [];
    try {
      assert.equal((await chat('vk_probe2')).status, 503, 'both circuits open');
      await sleep(300);
      second.requests.length = 0;
      // The second target keeps its first two requests waiting, and serves the rest.
      let calls = 0;
      second.behave(() => (++calls <= 2 ? undefined : false));
      // The probe of both: the first target fails (its circuit opens again), the second is probed and hangs.
      hung.push(leavingRequest('vk_probe2'));
      await waitFor(() => second.requests.length === 1, 'the probe of the second target');
      // The first target's circuit is open: this one goes to the last target as nothing else was tried, no probe.
      const other = leavingRequest('vk_probe2');
      await waitFor(() => second.requests.length === 2, 'the request that is no probe');
      other.leave();
      await waitFor(() => readLogFile(gateway.logFile).some((entry) => entry.key_name === 'probe2' && entry.status === 499), 'the request that left');
      await sleep(300); // the first target half open again
      const reply = await chat('vk_probe2');
      assert.equal(reply.status, 503, 'the second target is still being probed: passed over, the first target\'s failure stands');
      assert.equal(second.requests.length, 2);
    } finally {
      for (const request of hung) request.leave();
      reset();
    }
  });

  it("closes a half-open circuit once its probe's stream has begun, not when it ends: the next requests go to the recovered target meanwhile", async () => {
    reset();
    failWith(first, 503);
    let finish = (): void => {};
    try {
      assert.equal((await chat('vk_probe3')).status, 200, 'served by the second target; the first circuit opens');
      await sleep(300);
      // Recovered: the probe's stream begins at once and ends when the test says.
      first.behave(({ res, recorded }) => {
        if (recorded.json?.stream !== true) return false;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }] })}\n\n`);
        finish = () => res.end(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
        return true;
      });
      const first0 = first.requests.length;
      const second0 = second.requests.length;
      const probe = chat('vk_probe3', { ...hello, stream: true });
      await waitFor(() => first.requests.length === first0 + 1, 'the probe');
      await sleep(100);
      const meanwhile = await chat('vk_probe3');
      assert.equal(meanwhile.status, 200, meanwhile.text);
      assert.equal(first.requests.length, first0 + 2, 'the recovered target served it');
      assert.equal(second.requests.length, second0);
      finish();
      assert.equal((await probe).status, 200);
    } finally {
      finish();
      reset();
    }
  });

  it('passes over a target the request cannot go to, and the earlier failure stands', async () => {
    reset();
    failWith(first, 503);
    try {
      const reply = await chat('vk_to_claude', { ...hello, n: 2 });
      assert.equal(reply.status, 503);
      assert.equal(anthropic.requests.length, 0);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual([entry.upstream.target, entry.upstream.skipped_targets], [0, [1]]);
    } finally {
      reset();
    }
  });
});

describe('retries, moves and the overall bound (gateways of their own: UPSTREAM_RETRIES=2)', () => {
  /** UPSTREAM_TOTAL_TIMEOUT_MS=500: the bound is reached within a test. */
  let bounded: GatewayProcess;
  /** No wait between retries: they follow at once. */
  let retrying: GatewayProcess;
  const targets = (): unknown[] => [
    { provider: 'openai', api_key: KEY_A, base_url: first.baseUrl },
    { provider: 'openai', api_key: KEY_B, base_url: second.baseUrl },
  ];

  before(async () => {
    const env = { LOG_CONSOLE: 'off', STATE_FILE: 'off', UPSTREAM_RETRIES: '2' };
    [bounded, retrying] = await Promise.all([
      startGateway({
        keys: { virtual_keys: { vk: { provider: 'openai', api_key: KEY_A, base_url: first.baseUrl }, vk_two: { timeout_ms: 3000, targets: targets() } } },
        env: { ...env, UPSTREAM_TOTAL_TIMEOUT_MS: '500' },
      }),
      startGateway({ keys: { virtual_keys: { vk_two: { targets: targets() } } }, env: { ...env, UPSTREAM_RETRY_MAX_DELAY_MS: '0' } }),
    ]);
  });

  after(async () => {
    await Promise.all([bounded?.stop(), retrying?.stop()]);
  });

  it('bounds the retries of a key with one target by UPSTREAM_TOTAL_TIMEOUT_MS', async () => {
    reset();
    // Answered at once, asking for a retry in 1 s: within UPSTREAM_RETRY_MAX_DELAY_MS, so only
    // the bound keeps it from being made (an answer timed close to the bound raced it on a busy machine).
    first.behave(({ res }) => {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify(openAIError('busy', 'server_error')));
    });
    try {
      const reply = await request(bounded.url, '/v1/chat/completions', { key: 'vk', body: hello });
      assert.equal(reply.status, 503);
      assert.equal(first.requests.length, 1, 'no retry starts after 500 ms');
    } finally {
      reset();
    }
  });

  it("cuts the attempt under way at UPSTREAM_TOTAL_TIMEOUT_MS, whatever the key's timeout_ms", async () => {
    reset();
    first.behave(() => {}); // never answers
    try {
      const reply = await request(bounded.url, '/v1/chat/completions', { key: 'vk_two', body: hello });
      assert.equal(reply.status, 504);
      assert.match(reply.json.error.message, /UPSTREAM_TOTAL_TIMEOUT_MS: 500 ms since the request arrived/);
      assert.equal(second.requests.length, 0, 'no next target once the bound has passed');
      const entry = await waitForEntry(bounded.logFile, String(reply.headers['x-request-id']));
      // 500 ms and the deadline sweep's 100 ms, far below the key's 3,000 ms.
      assert.ok(entry.duration_ms < 2000, `answered after ${entry.duration_ms} ms`);
      assert.deepEqual([entry.error.code, entry.upstream.target, entry.upstream.status], ['upstream_timeout', 0, null]);
    } finally {
      reset();
    }
  });

  it('composes retries and moves: two targets answering 503 get attempts on targets 0, 1, 1, 1', async () => {
    reset();
    failWith(first, 503);
    failWith(second, 503);
    try {
      const reply = await request(retrying.url, '/v1/chat/completions', { key: 'vk_two', body: hello });
      assert.equal(reply.status, 503);
      assert.deepEqual([first.requests.length, second.requests.length], [1, 3]);
      const entry = await waitForEntry(retrying.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.upstream.attempts.map((attempt: any) => [attempt.target, attempt.status]), [[0, 503], [1, 503], [1, 503], [1, 503]]);
    } finally {
      reset();
    }
  });
});

describe('weights, circuits, metrics and reloads', () => {
  it('spreads 1,000 requests by weight (3:1): the first target leads 75% of them, within 5 points', async () => {
    reset();
    const batch = 50;
    for (let sent = 0; sent < 1000; sent += batch) {
      const replies = await Promise.all(Array.from({ length: batch }, () => chat('vk_weighted')));
      assert.ok(replies.every((reply) => reply.status === 200));
    }
    const share = first.requests.length / 1000;
    assert.equal(first.requests.length + second.requests.length, 1000);
    assert.ok(Math.abs(share - 0.75) < 0.05, `first target served ${first.requests.length} of 1000`);
    reset();
  });

  it('skips a target whose circuit opened during its cool-down, then probes it and uses it again once it answers', async () => {
    reset();
    failWith(first, 503);
    try {
      for (let i = 0; i < 2; i++) assert.equal((await chat('vk_breaker')).status, 200);
      assert.equal(first.requests.length, 2);
      const skipped = await chat('vk_breaker');
      assert.equal(skipped.status, 200);
      assert.equal(first.requests.length, 2, 'skipped while open');
      const entry = await waitForEntry(gateway.logFile, String(skipped.headers['x-request-id']));
      assert.deepEqual(entry.upstream.skipped_targets, [0]);
      first.behave(null);
      await new Promise((resolve) => setTimeout(resolve, 1600));
      const probe = await chat('vk_breaker');
      assert.equal(probe.status, 200);
      assert.equal(first.requests.length, 3, 'the probe went to the first target');
      const after = await chat('vk_breaker');
      assert.equal(after.status, 200);
      assert.equal(first.requests.length, 4, 'closed again');
    } finally {
      reset();
    }
  });

  it('a request only the target with an open circuit can take is told the targets are unavailable (503), not that it is wrong; one that target refuses too is refused (400)', async () => {
    reset();
    failWith(first, 503);
    try {
      assert.equal((await chat('vk_open_to_claude')).status, 200, 'the 503 opened the circuit; Anthropic answered');
      // logprobs: an OpenAI parameter the Anthropic fallback cannot take.
      const reply = await chat('vk_open_to_claude', { ...hello, logprobs: true });
      assert.equal(reply.status, 503);
      assert.equal(reply.json.error.code, 'targets_unavailable');
      assert.equal(first.requests.length, 1, 'the open circuit was not tried');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.status, 503);
      assert.equal(entry.error.code, 'targets_unavailable');
      // What the skipped target would refuse too is refused as it would: a 400, not a wait for nothing.
      const conversation = await request(gateway.url, '/v1/responses', { key: 'vk_open_to_claude', body: { model: 'gpt-4o-mini', input: 'hi', conversation: 'conv_123' } });
      assert.equal(conversation.status, 400, conversation.text);
      assert.equal(conversation.json.error.param, 'conversation');
      assert.doesNotMatch(conversation.json.error.message, /anthropic/i, "the first target's own refusal");
      assert.equal(first.requests.length, 1, 'nothing sent');
    } finally {
      reset();
    }
  });

  it('counts fallbacks and each target\'s outcomes in /metrics, by key name', async () => {
    // One more fallback counts one more, its failed first target and the second that answered too.
    const value = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const counted = ['llm_gateway_fallbacks_total{key_name="fb"}', 'llm_gateway_target_requests_total{key_name="fb",target="0",provider="openai",outcome="failed"}', 'llm_gateway_target_requests_total{key_name="fb",target="1",provider="openai",outcome="answered"}'];
    const before = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    reset();
    failWith(first, 503);
    try {
      assert.equal((await chat('vk_fb')).status, 200);
    } finally {
      reset();
    }
    const after = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    for (const series of counted) assert.equal(value(after, series), value(before, series) + 1, series);
    const text = after;
    assert.match(text, /llm_gateway_fallbacks_total\{key_name="fb"\} \d+/);
    assert.match(text, /llm_gateway_target_requests_total\{key_name="fb",target="0",provider="openai",outcome="failed"\} \d+/);
    assert.match(text, /llm_gateway_target_requests_total\{key_name="fb",target="1",provider="openai",outcome="answered"\} \d+/);
    assert.match(text, /llm_gateway_target_requests_total\{key_name="breaker",target="0",provider="openai",outcome="circuit_open"\} \d+/);
    assert.doesNotMatch(text, /key_name="breaker",target="0",provider="openai",outcome="skipped"/, 'an open circuit is told apart from keys cooling down');
    assert.match(text, /llm_gateway_target_requests_total\{key_name="cooling",target="0",provider="openai",outcome="skipped"\} \d+/);
    assert.ok(!text.includes('vk_'), 'no virtual key in metrics');
  });

  it('counts no target for a key with one: its requests add no target series', async () => {
    assert.equal((await chat('vk_only')).status, 200);
    const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
    assert.match(text, /llm_gateway_requests_total\{provider="openai",key_name="only",model="gpt-4o-mini",status="200"\}/);
    assert.doesNotMatch(text, /llm_gateway_target_requests_total\{key_name="only"/);
  });

  it('takes new targets from a reloaded keys file', async () => {
    reset();
    writeFileSync(gateway.keysFile, JSON.stringify(keys('ba')));
    await waitFor(() => (gateway.stderr().match(/keys reloaded/g) ?? []).length >= 1, 'the reload');
    const reply = await chat('vk_fb');
    assert.equal(reply.status, 200);
    assert.deepEqual([first.requests.length, second.requests.length], [0, 1], 'the second mock is first now');
    reset();
  });
});
