/**
 * Anthropic Messages clients (Claude Code, the Anthropic SDKs) end to end: the gateway as it
 * ships, talked to over HTTP the way those clients do, in front of mock providers that enforce
 * each API's rules: pass-through to Messages targets (Anthropic, DeepSeek's Anthropic endpoint),
 * translation to Chat Completions targets (OpenAI, DeepSeek), errors, count_tokens, models.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { estimateInputTokens } from '../src/formats/messages/count.js';
import type { AnthropicRequest } from '../src/formats/messages/types.js';
import { ownerTag } from '../src/policy/response-owners.js';
import { claudeCodeFirstTurn, CLAUDE_CODE_BETAS, CLAUDE_CODE_HEADERS } from './support/claude-code.js';
import { startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { drip, messages, messagesEvents, request, type Reply } from './support/http.js';
import { refusingPort } from './support/ports.js';
import { anthropicError, startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';
import { openAIError, OUTPUT_LIMIT, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const ANTHROPIC_KEY = 'sk-ant-api03-e2eMESSAGESkey-Aa1';
const OPENAI_KEY = 'sk-proj-e2eMESSAGESopenai-Bb2';
const OPENAI_KEY_2 = 'sk-proj-e2eMESSAGESsecond-Dd4';
const DEEPSEEK_KEY = 'sk-e2eMESSAGESdeepseek-Cc3';
const weather = { name: 'get_weather', description: 'Current weather', input_schema: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } };
const hello = { model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [{ role: 'user', content: 'Hello Claude' }] };

let anthropic: AnthropicMock;
let openai: MockUpstream;
let deepseek: MockUpstream;
let gateway: GatewayProcess;
/** A team's own Responses server: it says of any id that the team's key on the shared Anthropic key owns it. */
let forger: http.Server;

before(async () => {
  forger = http.createServer((req, res) => {
    const id = decodeURIComponent(/\/responses\/([^/?]+)/.exec(req.url ?? '')?.[1] ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, object: 'response', status: 'completed', metadata: { llm_gateway_owner: ownerTag('vk_claude_other') }, output: [] }));
  });
  await new Promise<void>((resolve) => forger.listen(0, '127.0.0.1', resolve));
  [anthropic, openai, deepseek] = await Promise.all([
    startAnthropicMock({ apiKey: ANTHROPIC_KEY }),
    startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY, otherKeys: [OPENAI_KEY_2] }),
    startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY }),
  ]);
  const down = await refusingPort();
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_claude_test: { name: 'claude-team', provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl },
        // Another team on the same real key.
        vk_claude_other: { name: 'other-team', provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl },
        vk_other_own_server: { provider: 'openai', api_key: 'none', base_url: `http://127.0.0.1:${(forger.address() as { port: number }).port}/v1`, api: ['chat', 'responses'] },
        vk_claude_capped: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, max_output_tokens: 16000 },
        vk_claude_budget: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, budget: { max_tokens: 1_000_000, period: 'total' } },
        vk_claude_thread_budget: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, budget: { max_tokens: 100_000, period: 'total' } },
        // DeepSeek's Anthropic-compatible endpoint, played by the Anthropic mock.
        vk_ds_anthropic: { provider: 'deepseek', api: 'messages', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, model_map: { 'claude-*': 'deepseek-v4-pro' } },
        vk_gpt: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, model_map: { 'claude-*': 'gpt-4o-mini' } },
        vk_gpt_plain: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl },
        vk_gpt_pool: { name: 'messages-pool', provider: 'openai', api_keys: [OPENAI_KEY, OPENAI_KEY_2], base_url: openai.baseUrl, model_map: { 'claude-*': 'gpt-4o-mini' } },
        vk_gpt_capped: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, model_map: { '*': 'gpt-4o-mini' }, max_output_tokens: OUTPUT_LIMIT.openai },
        vk_ds: { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseek.baseUrl, model_map: { 'claude-opus-*': 'deepseek-reasoner', 'claude-*': 'deepseek-chat' }, max_output_tokens: OUTPUT_LIMIT.deepseek },
        vk_haiku_only: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, models: ['claude-haiku-*'] },
        vk_rpm: { provider: 'mock', rate_limit: { requests_per_minute: 1 } },
        vk_bad_real: { provider: 'anthropic', api_key: 'sk-ant-api03-WRONGkey-Zz9', base_url: anthropic.baseUrl },
        vk_down: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${down}/v1` },
        vk_mock: { provider: 'mock' },
        vk_mapped_allow: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, models: ['claude-*'], model_map: { 'claude-*': 'gpt-4o-mini' } },
        vk_budget: { provider: 'mock', budget: { max_tokens: 40, period: 'day' } },
        vk_count_rpm: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: anthropic.baseUrl, rate_limit: { requests_per_minute: 1 } },
        vk_map_names: { provider: 'openai', api_key: OPENAI_KEY, base_url: openai.baseUrl, models: ['claude-*'], model_map: { 'claude-opus-5-5': 'gpt-4.1-mini', 'claude-*': 'gpt-4o-mini' } },
      },
    },
    env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', GATEWAY_MAX_BODY_BYTES: '200000', STATE_FILE: 'off' },
  });
});

after(async () => {
  await gateway?.stop();
  await Promise.all([anthropic?.close(), openai?.close(), deepseek?.close()]);
  forger?.close();
});

const TRANSCRIPT = [
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01Pass","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":30,"cache_read_input_tokens":100,"output_tokens":2}}}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants weather."}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}\n\n',
  'event: ping\ndata: {"type": "ping"}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check – ☀️."}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1","name":"get_weather","input":{}}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}\n\n',
  'event: message_stop\ndata: {"type":"message_stop"}\n\n',
].join('');

/** The content blocks a stream's events build, as a client keeps them to send back. */
class MessageAssemblerForTest {
  constructor(private readonly events: any[]) {}
  content(): any[] {
    const blocks: any[] = [];
    const json: string[] = [];
    for (const event of this.events) {
      if (event.type === 'content_block_start') {
        blocks[event.index] = { ...event.content_block };
        json[event.index] = '';
      } else if (event.type === 'content_block_delta') {
        const block = blocks[event.index];
        if (event.delta.type === 'text_delta') block.text += event.delta.text;
        if (event.delta.type === 'thinking_delta') block.thinking += event.delta.thinking;
        if (event.delta.type === 'input_json_delta') json[event.index] += event.delta.partial_json;
      } else if (event.type === 'content_block_stop' && blocks[event.index].type === 'tool_use') {
        blocks[event.index].input = JSON.parse(json[event.index] || '{}');
      }
    }
    return blocks;
  }
}

describe('messages pass-through (Anthropic)', () => {
  it('sends the body byte for byte with the real key, the client\'s version, betas and query, and no other client header', async () => {
    anthropic.requests.length = 0;
    const raw = `{"model":"claude-sonnet-4-5",  "max_tokens":1024,"messages":[{"role":"user","content":"caf\\u00e9 ☕"}],"context_management":{"edits":[]}}`;
    const reply = await messages(gateway.url, 'vk_claude_test', raw, {
      query: 'beta=true',
      headers: { 'anthropic-beta': 'context-management-2025-06-27, interleaved-thinking-2025-05-14', cookie: 'session=secret', 'x-stainless-os': 'Linux', 'x-claude-code-session-id': 'abc', 'user-agent': 'claude-cli/2.1.328' },
    });
    assert.equal(reply.status, 200, reply.text);
    const sent = anthropic.requests[0];
    assert.equal(sent?.raw, raw);
    assert.equal(sent?.path, '/v1/messages');
    assert.equal(sent?.query, 'beta=true');
    assert.equal(sent?.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(sent?.headers['anthropic-version'], '2023-06-01');
    assert.equal(sent?.headers['anthropic-beta'], 'context-management-2025-06-27, interleaved-thinking-2025-05-14');
    assert.equal(sent?.headers.authorization, undefined);
    for (const header of ['cookie', 'x-stainless-os', 'x-claude-code-session-id']) assert.equal(sent?.headers[header], undefined, header);
    assert.notEqual(sent?.headers['user-agent'], 'claude-cli/2.1.328');
  });

  it('answers with the provider\'s bytes and request-id, and logs the Message, its usage and both models', async () => {
    const answer = '{"id":"msg_01Fixed","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"thinking","thinking":"Hm.","signature":"sig"},{"type":"text","text":"Hi ☕"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":3,"cache_read_input_tokens":5,"output_tokens":12}}';
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_upstream_1' });
      res.end(answer);
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', hello);
      assert.equal(reply.status, 200);
      assert.equal(reply.text, answer);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.equal(reply.headers['request-id'], reply.headers['x-request-id']);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.path, '/v1/messages');
      assert.equal(entry.key_name, 'claude-team');
      assert.equal(entry.model, 'claude-sonnet-4-5');
      assert.deepEqual(entry.request, hello);
      assert.deepEqual(entry.response, JSON.parse(answer));
      assert.deepEqual(entry.usage, { input_tokens: 25, output_tokens: 12, cache_read_tokens: 5, cache_write_tokens: 3, reasoning_tokens: 0 });
      assert.deepEqual(entry.upstream, { status: 200, request_id: 'req_upstream_1', model: 'claude-sonnet-4-5', url: `${anthropic.baseUrl}/v1/messages` });
    } finally {
      anthropic.behave(null);
    }
  });

  it('accepts the key as a Bearer token (ANTHROPIC_AUTH_TOKEN) and sends a default anthropic-version when the client gives none', async () => {
    anthropic.requests.length = 0;
    const reply = await request(gateway.url, '/v1/messages', { key: 'vk_claude_test', body: hello });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.type, 'message');
    assert.equal(anthropic.requests[0]?.headers['anthropic-version'], '2023-06-01');
    assert.equal(anthropic.requests[0]?.headers['x-api-key'], ANTHROPIC_KEY);
  });

  it('relays pings before the first event, held back until it comes, in their place and unchanged', async () => {
    const pinged = `event: ping\ndata: {"type": "ping"}\n\n: keep\n\nevent: ping\ndata: {"type": "ping"}\n\n${TRANSCRIPT}`;
    anthropic.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.write('event: ping\ndata: {"type": "ping"}\n\n');
      await new Promise((resolve) => setTimeout(resolve, 50));
      await drip(res, pinged.slice('event: ping\ndata: {"type": "ping"}\n\n'.length));
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true, tools: [weather] });
      assert.equal(reply.status, 200);
      assert.equal(reply.text, pinged.replace(': keep\n\n', ': keep-alive\n\n'));
    } finally {
      anthropic.behave(null);
    }
  });

  /**
   * A streamed request whose provider sends `first`, then waits until `release` to send the rest
   * (TRANSCRIPT): its response once the head came (within `headWithinMs`), and what it read so far.
   */
  async function heldStream(first: string, headWithinMs: number, why: string): Promise<{ res: http.IncomingMessage; read: () => string; release: () => void }> {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    anthropic.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.write(first);
      await released;
      res.end(TRANSCRIPT);
    });
    const body = JSON.stringify({ ...hello, stream: true });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'vk_claude_test', 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
      req.on('response', resolve).on('error', reject).end(body);
      setTimeout(() => reject(new Error(why)), headWithinMs).unref();
    });
    let text = '';
    res.setEncoding('utf8').on('data', (piece: string) => (text += piece));
    return { res, read: () => text, release };
  }

  it('sends its head alone, with the pings held, when the first event is slow to come (5 s); ttfb stays the first event\'s', async () => {
    const ping = 'event: ping\ndata: {"type": "ping"}\n\n';
    let release = (): void => {};
    try {
      const held = await heldStream(ping, 20_000, 'no head while the first event was held');
      release = held.release;
      assert.equal(held.res.statusCode, 200);
      await waitFor(() => held.read() === ping, 'the held ping, with the head');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      release();
      await new Promise((resolve) => held.res.on('end', resolve));
      assert.equal(held.read(), ping + TRANSCRIPT);
      const entry = await waitForEntry(gateway.logFile, String(held.res.headers['request-id']));
      assert.ok(entry.ttfb_ms >= 5900, `the first event's (a second after the head), not the ping's: ${entry.ttfb_ms} ms`);
    } finally {
      release();
      anthropic.behave(null);
    }
  });

  it('holds no more than 16 KB of pings before the first event: a provider flooding them gets its head and them sent at once, nothing lost', async () => {
    const flood = 'event: ping\ndata: {"type": "ping"}\n\n'.repeat(1000); // 36 KB
    let release = (): void => {};
    try {
      // Held, the pings would come with the head after 5 s (the provider goes on only once they came).
      const held = await heldStream(flood, 3000, 'the head was held with the pings');
      release = held.release;
      await waitFor(() => held.read() === flood, 'the flood of pings, sent before the first event');
      release();
      await new Promise((resolve) => held.res.on('end', resolve));
      assert.equal(held.res.statusCode, 200);
      assert.equal(held.read(), flood + TRANSCRIPT);
    } finally {
      release();
      anthropic.behave(null);
    }
  });

  it('relays a stream split anywhere unchanged, and logs the assembled Message with usage from message_start and message_delta', async () => {
    anthropic.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      await drip(res, TRANSCRIPT);
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true, tools: [weather] });
      assert.equal(reply.status, 200);
      assert.match(String(reply.headers['content-type']), /^text\/event-stream/);
      assert.equal(reply.text, TRANSCRIPT);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.response, {
        id: 'msg_01Pass',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5-20250929',
        content: [
          { type: 'thinking', thinking: 'The user wants weather.', signature: 'EqQBCgIYAhIM' },
          { type: 'text', text: 'Let me check – ☀️.' },
          { type: 'tool_use', id: 'toolu_01T1', name: 'get_weather', input: { city: 'Paris' } },
        ],
        stop_reason: 'tool_use',
        stop_sequence: null,
        usage: { input_tokens: 472, cache_creation_input_tokens: 30, cache_read_input_tokens: 100, output_tokens: 89 },
      });
      assert.deepEqual(entry.usage, { input_tokens: 472, output_tokens: 89, cache_read_tokens: 100, cache_write_tokens: 30, reasoning_tokens: 0 });
      assert.equal(entry.upstream.usage, undefined, 'passed through, the provider\'s usage is inside response');
      assert.equal(entry.stream, true);
    } finally {
      anthropic.behave(null);
    }
  });

  it('names the events of a provider that sends data lines only (SDKs read events by name), in pieces or whole', async () => {
    const unnamed = TRANSCRIPT.replace(/^event: [^\n]*\n/gm, '');
    assert.doesNotMatch(unnamed, /event:/);
    for (const send of [(res: http.ServerResponse) => drip(res, unnamed), (res: http.ServerResponse) => res.end(unnamed)]) {
      anthropic.behave(async ({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        await send(res);
      });
      try {
        const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true, tools: [weather] });
        assert.equal(reply.status, 200);
        assert.equal(reply.text, TRANSCRIPT);
      } finally {
        anthropic.behave(null);
      }
    }
    // Events that begin with another field (id:, retry:) or a comment, the rest whole in one read after the first: named too.
    const fields = unnamed.split('\n\n').filter(Boolean).map((event, i) => `${['id: 7', 'retry: 1000', ': hi'][i % 3]}\n${event}\n\n`);
    anthropic.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.write(fields[0]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      res.end(fields.slice(1).join(''));
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true, tools: [weather] });
      const frames = reply.text.split('\n\n').filter((frame) => frame.includes('data:'));
      assert.equal(frames.length, TRANSCRIPT.split('\n\n').filter(Boolean).length);
      for (const frame of frames) assert.equal(/^event: (.*)$/m.exec(frame)?.[1], JSON.parse(/^data: (.*)$/m.exec(frame)?.[1] ?? '').type, frame);
      assert.deepEqual(messagesEvents(reply.text), messagesEvents(TRANSCRIPT));
    } finally {
      anthropic.behave(null);
    }
  });

  it('passes a mid-stream error on as Anthropic sent it, and logs its status', async () => {
    const failing = `${TRANSCRIPT.split('\n\n').slice(0, 3).join('\n\n')}\n\nevent: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n`;
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(failing);
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true });
      assert.equal(reply.status, 200);
      const events = messagesEvents(reply.text);
      assert.deepEqual(events.at(-1), { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.status, 529);
      assert.equal(entry.error.type, 'overloaded_error');
    } finally {
      anthropic.behave(null);
    }
  });

  it('reads an event named error as one whatever its data says, as Anthropic\'s SDK does, and logs it', async () => {
    const head = TRANSCRIPT.split('\n\n').slice(0, 3).join('\n\n');
    for (const data of ['{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}', '{"error":{"type":"overloaded_error","message":"Overloaded"}}']) {
      anthropic.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${head}\n\nevent: error\ndata: ${data}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n`);
      });
      try {
        const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true });
        const events = messagesEvents(reply.text);
        assert.equal(events.at(-1)?.type, 'error', reply.text);
        assert.ok(!events.some((event) => event.type === 'message_stop'), 'the stream ends at the error');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        // Its cause kept where the data has one, even without a `type`.
        assert.equal(entry.status, data.includes('overloaded') ? 529 : 500);
      } finally {
        anthropic.behave(null);
      }
    }
  });

  for (const [status, type, message] of [
    [429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit'],
    [529, 'overloaded_error', 'Overloaded'],
    [400, 'invalid_request_error', 'messages.0.content: Input should be a valid list'],
  ] as const) {
    it(`passes an upstream ${status} ${type} on in Anthropic's shape, with retry-after and request-id`, async () => {
      anthropic.behave(({ res }) => {
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '7', 'request-id': 'req_up' });
        res.end(JSON.stringify(anthropicError(type, message)));
      });
      try {
        for (const stream of [false, true]) {
          const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream });
          assert.equal(reply.status, status);
          assert.deepEqual(reply.json, { type: 'error', error: { type, message } });
          assert.equal(reply.headers['retry-after'], '7');
          assert.equal(reply.headers['request-id'], reply.headers['x-request-id']);
        }
      } finally {
        anthropic.behave(null);
      }
    });
  }

  it('stops the provider when the client goes away mid-stream, and logs a 499', async () => {
    let upstream: http.ServerResponse | null = null;
    anthropic.behave(({ res }) => {
      upstream = res;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(TRANSCRIPT.split('\n\n').slice(0, 3).join('\n\n') + '\n\n');
    });
    try {
      const body = JSON.stringify({ ...hello, stream: true });
      const { res, req } = await new Promise<{ res: http.IncomingMessage; req: http.ClientRequest }>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/messages`, { method: 'POST', agent: false, headers: { 'x-api-key': 'vk_claude_test', 'content-type': 'application/json', 'anthropic-version': '2023-06-01' } });
        req.on('response', (res) => resolve({ res, req }));
        req.on('error', reject);
        req.end(body);
      });
      const id = String(res.headers['x-request-id']);
      await new Promise((resolve) => res.once('data', resolve));
      req.destroy();
      const recorded = anthropic.requests.at(-1);
      await waitFor(() => recorded?.aborted === true, 'the provider call to be aborted');
      const entry = await waitForEntry(gateway.logFile, id);
      assert.equal(entry.status, 499);
      assert.ok(upstream !== null);
    } finally {
      anthropic.behave(null);
    }
  });
});

describe("Claude Code's first turn", () => {
  for (const variant of ['default', 'sonnet'] as const) {
    it(`${variant} model: passes through to Anthropic whole (betas forwarded, so its beta fields are accepted)`, async () => {
      anthropic.requests.length = 0;
      const body = JSON.stringify(claudeCodeFirstTurn({ variant }));
      assert.ok(body.length > 85_000 && body.length < 120_000, `${body.length} bytes`);
      const reply = await request(gateway.url, '/v1/messages?beta=true', { body, headers: { ...CLAUDE_CODE_HEADERS, 'x-api-key': 'vk_claude_test' } });
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      const events = messagesEvents(reply.text);
      assert.equal(events[0].type, 'message_start');
      assert.equal(events.at(-1).type, 'message_stop');
      const sent = anthropic.requests[0];
      assert.equal(sent?.raw, body);
      assert.equal(sent?.query, 'beta=true');
      assert.equal(sent?.headers['anthropic-beta'], CLAUDE_CODE_BETAS);
    });

    it(`${variant} model: with a lower output cap on the key, max_tokens is lowered (and a thinking budget below it)`, async () => {
      anthropic.requests.length = 0;
      const reply = await request(gateway.url, '/v1/messages?beta=true', { body: claudeCodeFirstTurn({ variant }), headers: { ...CLAUDE_CODE_HEADERS, 'x-api-key': 'vk_claude_capped' } });
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      const sent = anthropic.requests[0]?.json;
      assert.equal(sent.max_tokens, 16000);
      assert.deepEqual(sent.thinking, variant === 'sonnet' ? { type: 'enabled', budget_tokens: 15999, display: 'omitted' } : { type: 'adaptive', display: 'omitted' });
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.request.max_tokens, variant === 'sonnet' ? 32000 : 128000, 'the log keeps what the client sent');
    });

    it(`${variant} model: translated for OpenAI, whose output limit (16,384) is below Claude Code's: refused in Anthropic's shape without a cap, served with one`, async () => {
      openai.requests.length = 0;
      const refusedReply = await request(gateway.url, '/v1/messages?beta=true', { body: claudeCodeFirstTurn({ variant }), headers: { ...CLAUDE_CODE_HEADERS, 'x-api-key': 'vk_gpt' } });
      assert.equal(refusedReply.status, 400);
      assert.equal(refusedReply.json.type, 'error');
      assert.equal(refusedReply.json.error.type, 'invalid_request_error');
      assert.match(refusedReply.json.error.message, /max_tokens is too large: (128000|32000)\. This model supports at most 16384 completion tokens/);

      const reply = await request(gateway.url, '/v1/messages?beta=true', { body: claudeCodeFirstTurn({ variant }), headers: { ...CLAUDE_CODE_HEADERS, 'x-api-key': 'vk_gpt_capped' } });
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      const events = messagesEvents(reply.text);
      assert.deepEqual(events.map((event) => event.type).filter((type, i, all) => all.indexOf(type) === i), ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
      assert.ok(events[0].message.usage.input_tokens > 20_000, 'message_start carries an estimate of the ~90 KB prompt');
      const sent = openai.requests.at(-1)?.json;
      assert.equal(sent.model, 'gpt-4o-mini');
      assert.equal(sent.max_completion_tokens, OUTPUT_LIMIT.openai);
      assert.equal(sent.tools.length, 12);
      assert.deepEqual(sent.messages.map((message: { role: string }) => message.role), ['system', 'user', 'system']);
      assert.ok(sent.user.length <= 64);
      for (const gone of ['cache_control', 'defer_loading', 'context_management', 'thinking', 'output_config', 'budget_tokens']) assert.ok(!openai.requests.at(-1)?.raw.includes(gone), gone);
      assert.equal(sent.stream_options.include_usage, true);
    });
  }

  it('translated for DeepSeek (deepseek-chat, 8,192 output tokens): the key\'s cap goes as max_tokens, text blocks as strings', async () => {
    deepseek.requests.length = 0;
    const reply = await request(gateway.url, '/v1/messages?beta=true', { body: claudeCodeFirstTurn({ variant: 'sonnet' }), headers: { ...CLAUDE_CODE_HEADERS, authorization: 'Bearer vk_ds' } });
    assert.equal(reply.status, 200, reply.text.slice(0, 300));
    const sent = deepseek.requests[0]?.json;
    assert.equal(sent.model, 'deepseek-chat');
    assert.equal(sent.max_tokens, 8192);
    assert.equal(sent.max_completion_tokens, undefined);
    assert.ok(sent.messages.every((message: { content: unknown }) => typeof message.content === 'string'));
    // Its system reminders and its question stay apart, as separate blocks were.
    const asked = sent.messages.find((message: { role: string; content: string }) => message.role === 'user' && message.content.includes('Fix the failing test'));
    assert.match(asked.content, /<\/system-reminder>\n\nFix the failing test/);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.model, 'claude-sonnet-4-5');
    assert.equal(entry.upstream.model, 'deepseek-chat');
    assert.equal(entry.response.type, 'message');
    assert.equal(entry.response.stop_reason, 'end_turn');
  });
});

describe('messages translated for Chat Completions providers', () => {
  it('answers a Message (msg_ id, text, stop_reason, usage) from an OpenAI completion, and logs what the client got', async () => {
    openai.requests.length = 0;
    const reply = await messages(gateway.url, 'vk_gpt', { ...hello, system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }] });
    assert.equal(reply.status, 200, reply.text);
    assert.match(reply.json.id, /^msg_/);
    assert.deepEqual({ ...reply.json, id: undefined }, {
      id: undefined,
      type: 'message',
      role: 'assistant',
      // The model asked for, not the one the key's model map sent (Claude Code drops thinking on another name).
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'openai says: Hello Claude' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 11, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 7 },
    });
    assert.equal(reply.headers['request-id'], reply.headers['x-request-id']);
    const sent = openai.requests[0];
    assert.equal(sent?.headers.authorization, `Bearer ${OPENAI_KEY}`);
    assert.equal(sent?.headers['anthropic-version'], undefined);
    assert.deepEqual(sent?.json, { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello Claude' }], max_completion_tokens: 1024 });
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.response, reply.json);
    assert.equal(entry.model, 'claude-sonnet-4-5');
    assert.equal(entry.upstream.model, 'gpt-4o-mini');
    assert.deepEqual(entry.usage, { input_tokens: 11, output_tokens: 7, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0 });
    // Without a model map too: the provider's dated name (gpt-4o-mini-2024-08-06) is not the one asked for.
    const plain = await messages(gateway.url, 'vk_gpt_plain', { ...hello, model: 'gpt-4o-mini' });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.json.model, 'gpt-4o-mini');
  });

  it('streams DeepSeek reasoning as a thinking block, then text, every event named, message_start never zero', async () => {
    const reply = await messages(gateway.url, 'vk_ds', { ...hello, model: 'claude-opus-5-5', stream: true });
    assert.equal(reply.status, 200);
    const events = messagesEvents(reply.text);
    assert.equal(events[0].type, 'message_start');
    assert.ok(events[0].message.usage.input_tokens > 0);
    assert.equal(events[0].message.model, 'claude-opus-5-5', 'named after the model asked for, so Claude Code keeps the thinking and sends it back');
    const blocks = events.filter((event) => event.type === 'content_block_start').map((event) => event.content_block.type);
    assert.deepEqual(blocks, ['thinking', 'text']);
    const text = (kind: string) => events.filter((event) => event.delta?.type === kind).map((event) => event.delta.text ?? event.delta.thinking).join('');
    assert.equal(text('thinking_delta'), 'Thinking about it.');
    // A signature before the thinking block stops, as Anthropic sends one: clients drop thinking without (the Vercel AI SDK).
    const thinkingStop = events.findIndex((event) => event.type === 'content_block_stop' && event.index === 0);
    assert.deepEqual(events[thinkingStop - 1], { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'llm-gateway:unsigned' } });
    assert.equal(text('text_delta'), 'deepseek says: Hello Claude');
    const delta = events.at(-2);
    assert.deepEqual(delta, { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { input_tokens: 11, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 7 } });
    assert.deepEqual(events.at(-1), { type: 'message_stop' });
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.deepEqual(entry.response.content, [
      { type: 'thinking', thinking: 'Thinking about it.', signature: 'llm-gateway:unsigned' },
      { type: 'text', text: 'deepseek says: Hello Claude' },
    ]);
    assert.equal(entry.upstream.model, 'deepseek-reasoner');
    assert.deepEqual(entry.usage, { input_tokens: 11, output_tokens: 7, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 3 });
  });

  it('a two-turn tool round trip: a streamed tool call whose input_json_deltas join into valid JSON, then its tool_result', async () => {
    const ask = { model: 'claude-sonnet-4-5', max_tokens: 1024, tools: [weather], messages: [{ role: 'user', content: 'What is the weather in Paris?' }] };
    const first = await messages(gateway.url, 'vk_gpt', { ...ask, stream: true });
    assert.equal(first.status, 200);
    const events = messagesEvents(first.text);
    const start = events.find((event) => event.type === 'content_block_start' && event.content_block.type === 'tool_use');
    assert.deepEqual(start.content_block, { type: 'tool_use', id: 'call_Wx1Yz2', name: 'get_weather', input: {} });
    const json = events.filter((event) => event.index === start.index && event.delta?.type === 'input_json_delta').map((event) => event.delta.partial_json).join('');
    const input = JSON.parse(json);
    assert.deepEqual(input, { city: 'Paris', unit: 'celsius' });
    assert.equal(events.at(-2).delta.stop_reason, 'tool_use');

    const second = await messages(gateway.url, 'vk_gpt', {
      ...ask,
      messages: [
        ...ask.messages,
        { role: 'assistant', content: [{ type: 'tool_use', id: start.content_block.id, name: 'get_weather', input }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: start.content_block.id, content: [{ type: 'text', text: '21C and sunny' }] }] },
      ],
    });
    assert.equal(second.status, 200, second.text);
    assert.deepEqual(second.json.content, [{ type: 'text', text: 'openai says: the tool answered 21C and sunny' }]);
    assert.equal(second.json.stop_reason, 'end_turn');
    const sent = openai.requests.at(-1)?.json;
    assert.deepEqual(sent.messages.slice(1), [
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_Wx1Yz2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } }] },
      { role: 'tool', tool_call_id: 'call_Wx1Yz2', content: '21C and sunny' },
    ]);
  });

  it('parallel tool calls a server interleaves come out as whole blocks, one after the other, their inputs exact', async () => {
    const chunk = (toolCalls: unknown[], finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-il', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { tool_calls: toolCalls }, finish_reason: finish }] })}\n\n`;
    const named = (index: number, id: string): unknown => ({ index, id, type: 'function', function: { name: 'get_weather', arguments: '' } });
    const args = (index: number, text: string): unknown => ({ index, function: { arguments: text } });
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Both calls start, then their arguments alternate (some OpenAI-compatible servers do this).
      const stream = [chunk([named(0, 'call_Il0'), named(1, 'call_Il1')]), chunk([args(0, '{"city": "Pa')]), chunk([args(1, '{"city": "Ro')]), chunk([args(0, 'ris"}')]), chunk([args(1, 'me", "unit": "°C"}')]), chunk([], 'tool_calls')];
      await drip(res, `${stream.join('')}data: [DONE]\n\n`);
    });
    try {
      const reply = await messages(gateway.url, 'vk_gpt', { model: 'claude-sonnet-4-5', max_tokens: 1024, tools: [weather], stream: true, messages: [{ role: 'user', content: 'Weather in Paris and Rome?' }] });
      assert.equal(reply.status, 200, reply.text);
      const events = messagesEvents(reply.text);
      const blockEvents = events.filter((event) => event.type.startsWith('content_block_')).map((event) => `${event.type.slice(14)} ${event.index}`);
      assert.deepEqual(blockEvents, ['start 0', 'delta 0', 'delta 0', 'stop 0', 'start 1', 'delta 1', 'delta 1', 'stop 1']);
      const expected = [
        { type: 'tool_use', id: 'call_Il0', name: 'get_weather', input: { city: 'Paris' } },
        { type: 'tool_use', id: 'call_Il1', name: 'get_weather', input: { city: 'Rome', unit: '°C' } },
      ];
      assert.deepEqual(new MessageAssemblerForTest(events).content(), expected);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.response.content, expected);
    } finally {
      openai.behave(null);
    }
  });

  it('arguments a server sends again (all so far on every fragment, or all of them at the end) join into one valid input, in the answer and the log', async () => {
    const chunk = (toolCalls: unknown[], finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-re', object: 'chat.completion.chunk', created: 1, model: 'deepseek-chat', choices: [{ index: 0, delta: { tool_calls: toolCalls }, finish_reason: finish }] })}\n\n`;
    const call = (index: number, id: string, text: string): unknown => ({ index, id, type: 'function', function: { name: 'get_weather', arguments: text } });
    openai.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Call 0: the arguments so far each time; call 1: in pieces, then whole again with its finish.
      const stream = [
        chunk([call(0, 'call_Re0', '{"city": "Pa')]),
        chunk([call(0, 'call_Re0', '{"city": "Paris"')]),
        chunk([call(0, 'call_Re0', '{"city": "Paris"}')]),
        chunk([call(1, 'call_Re1', '{"city": ')]),
        chunk([{ index: 1, function: { arguments: '"Rome"}' } }]),
        chunk([call(1, 'call_Re1', '{"city": "Rome"}')], 'tool_calls'),
      ];
      await drip(res, `${stream.join('')}data: [DONE]\n\n`);
    });
    try {
      const reply = await messages(gateway.url, 'vk_gpt', { model: 'claude-sonnet-4-5', max_tokens: 1024, tools: [weather], stream: true, messages: [{ role: 'user', content: 'Weather in Paris and Rome?' }] });
      assert.equal(reply.status, 200, reply.text);
      const events = messagesEvents(reply.text);
      const expected = [
        { type: 'tool_use', id: 'call_Re0', name: 'get_weather', input: { city: 'Paris' } },
        { type: 'tool_use', id: 'call_Re1', name: 'get_weather', input: { city: 'Rome' } },
      ];
      assert.deepEqual(new MessageAssemblerForTest(events).content(), expected);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(entry.response.content, expected);
    } finally {
      openai.behave(null);
    }
  });

  it("DeepSeek's thinking mode gets the thinking of a tool-calling turn back; OpenAI, which refuses the field, does not", async () => {
    const ask = { model: 'claude-opus-5-5', max_tokens: 1024, tools: [weather], messages: [{ role: 'user', content: 'What is the weather in Paris?' }] };
    const first = await messages(gateway.url, 'vk_ds', { ...ask, stream: true });
    assert.equal(first.status, 200, first.text);
    const assistant = new MessageAssemblerForTest(messagesEvents(first.text)).content();
    assert.deepEqual(assistant.map((block) => block.type), ['thinking', 'tool_use']);
    const followUp = (key: string) =>
      messages(gateway.url, key, {
        ...ask,
        messages: [
          ...ask.messages,
          { role: 'assistant', content: assistant },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: assistant[1]?.id, content: '21C' }] },
        ],
      });
    const second = await followUp('vk_ds');
    assert.equal(second.status, 200, second.text);
    assert.equal(deepseek.requests.at(-1)?.json.messages[1].reasoning_content, 'Thinking about it.');
    assert.deepEqual(second.json.content.map((block: { type: string }) => block.type), ['thinking', 'text']);
    const onOpenAI = await followUp('vk_gpt');
    assert.equal(onOpenAI.status, 200, onOpenAI.text);
    assert.equal(openai.requests.at(-1)?.json.messages[1].reasoning_content, undefined);
  });

  it('a non-streamed tool call comes back as a tool_use block with its input', async () => {
    const reply = await messages(gateway.url, 'vk_ds', { model: 'claude-sonnet-4-5', max_tokens: 100, tools: [weather], tool_choice: { type: 'any', disable_parallel_tool_use: true }, messages: [{ role: 'user', content: 'weather in Paris?' }] });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json.content, [{ type: 'tool_use', id: 'call_00_ds1', name: 'get_weather', input: { city: 'Paris', unit: 'celsius' } }]);
    assert.equal(reply.json.stop_reason, 'tool_use');
    const sent = deepseek.requests.at(-1)?.json;
    assert.equal(sent.tool_choice, 'required');
    assert.equal(sent.parallel_tool_calls, false);
  });

  it('refuses server tools with a 400 naming them; nothing reaches the provider', async () => {
    const before = openai.requests.length;
    const reply = await messages(gateway.url, 'vk_gpt', { ...hello, tools: [weather, { type: 'web_search_20250305', name: 'web_search', max_uses: 5 }] });
    assert.equal(reply.status, 400);
    assert.deepEqual(reply.json, { type: 'error', error: { type: 'invalid_request_error', message: "tools: web_search (web_search_20250305): only Anthropic runs these tools; remove them for this key's provider" } });
    assert.equal(openai.requests.length, before);
  });

  it("ends a stream that fails mid-way with an error event in Anthropic's shape", async () => {
    openai.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"Hal"},"finish_reason":null}]}\n\n');
      res.end('data: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}\n\n');
    });
    try {
      const reply = await messages(gateway.url, 'vk_gpt', { ...hello, stream: true });
      const events = messagesEvents(reply.text);
      assert.deepEqual(events.map((event) => event.type), ['message_start', 'content_block_start', 'content_block_delta', 'error']);
      assert.deepEqual(events.at(-1), { type: 'error', error: { type: 'api_error', message: 'The server had an error while processing your request.' } });
    } finally {
      openai.behave(null);
    }
  });

  it("passes a provider's 400 on in Anthropic's shape", async () => {
    const reply = await messages(gateway.url, 'vk_gpt', { ...hello, metadata: { user_id: 'u' }, stop_sequences: ['a'], temperature: 0.2, top_p: 0.5, top_k: 3, tool_choice: { type: 'auto' } });
    assert.equal(reply.status, 200, 'dropped and mapped parameters are accepted by the provider');
    // More stop sequences than OpenAI takes (4): its own 400, in Anthropic's shape, rather than some dropped without a word.
    const five = await messages(gateway.url, 'vk_gpt', { ...hello, stop_sequences: ['a', 'b', 'c', 'd', 'e'] });
    assert.deepEqual([five.status, five.json.type, five.json.error.type], [400, 'error', 'invalid_request_error']);
    assert.match(five.json.error.message, /'stop': array too long/);
    openai.behave(({ res }) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: "Invalid 'messages[1].content': string too long.", type: 'invalid_request_error', param: 'messages[1].content', code: 'string_above_max_length' } }));
    });
    try {
      const refused = await messages(gateway.url, 'vk_gpt', hello);
      assert.equal(refused.status, 400);
      assert.deepEqual(refused.json, { type: 'error', error: { type: 'invalid_request_error', message: "Invalid 'messages[1].content': string too long." } });
    } finally {
      openai.behave(null);
    }
  });
});

describe("DeepSeek's Anthropic endpoint (\"api\": \"messages\")", () => {
  it('passes through with the key\'s model map applied, the rest of the body unchanged', async () => {
    anthropic.requests.length = 0;
    const body = { ...hello, model: 'claude-opus-5-5', thinking: { type: 'adaptive' } };
    const reply = await messages(gateway.url, 'vk_ds_anthropic', body, { bearer: true });
    assert.equal(reply.status, 200, reply.text);
    const sent = anthropic.requests[0];
    assert.deepEqual(sent?.json, { ...body, model: 'deepseek-v4-pro' });
    assert.equal(sent?.headers['x-api-key'], ANTHROPIC_KEY);
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.provider, 'deepseek');
    assert.equal(entry.model, 'claude-opus-5-5');
    assert.equal(entry.upstream.model, 'deepseek-v4-pro');
  });

  it("names its answers after the model the client asked for (Claude Code keeps a turn's signed thinking only then); a key without a map leaves the provider's name", async () => {
    const body = { ...hello, model: 'claude-opus-5-5', thinking: { type: 'adaptive' } };
    const whole = await messages(gateway.url, 'vk_ds_anthropic', body);
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.json.model, 'claude-opus-5-5');
    assert.equal(whole.json.content.at(-1).text, 'claude says: Hello Claude', 'the rest of the answer as the provider sent it');
    const streamed = await messages(gateway.url, 'vk_ds_anthropic', { ...body, stream: true });
    const events = messagesEvents(streamed.text);
    assert.equal(events[0].message.model, 'claude-opus-5-5');
    assert.equal(events[0].message.id.startsWith('msg_'), true);
    assert.equal(events.at(-1).type, 'message_stop');
    const entry = await waitForEntry(gateway.logFile, String(streamed.headers['x-request-id']));
    assert.equal(entry.response.model, 'claude-opus-5-5', 'the log shows what the client got');
    assert.equal(entry.upstream.model, 'deepseek-v4-pro');
    const unmapped = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true });
    assert.equal(messagesEvents(unmapped.text)[0].message.model, 'claude-sonnet-4-5-20250929');
  });

  it('changes only the model and output limit of a mapped or capped body, and only the model of its answer: numbers JSON cannot hold exactly stay as written', async () => {
    const tools = '[{"name":"lookup","description":"Finds an order.","input_schema":{"type":"object","properties":{"id":{"type":"integer","maximum":9007199254740993,"minimum":-0,"multipleOf":1e400}}}}]';
    const body = (model: string): string => `{"model":"${model}", "max_tokens":64000,"messages":[{"role":"user","content":"Hello Claude"}],"tools":${tools},"metadata":{"user_id":"u"}}`;
    const answer = '{"id":"msg_01","type":"message","role":"assistant","model":"deepseek-v4-pro","content":[{"type":"tool_use","id":"toolu_01","name":"lookup","input":{"id":1234567890123456789,"weight":-0,"big":1e400}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":3}}';
    anthropic.behave(({ recorded, res }) => {
      if (recorded.path !== '/v1/messages' || recorded.json?.model !== 'deepseek-v4-pro') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answer);
      return true;
    });
    try {
      anthropic.requests.length = 0;
      const mapped = await messages(gateway.url, 'vk_ds_anthropic', body('claude-opus-5-5'));
      assert.equal(mapped.status, 200, mapped.text);
      assert.equal(anthropic.requests[0]?.raw, body('deepseek-v4-pro'), 'the client bytes, but for the model');
      assert.equal(mapped.text, answer.replace('"model":"deepseek-v4-pro"', '"model":"claude-opus-5-5"'), "the provider's bytes, but for the model");
      const capped = await messages(gateway.url, 'vk_claude_capped', body('claude-sonnet-4-5'));
      assert.equal(capped.status, 200, capped.text);
      assert.equal(anthropic.requests[1]?.raw, body('claude-sonnet-4-5').replace('"max_tokens":64000', '"max_tokens":16000'));
    } finally {
      anthropic.behave(null);
    }
  });
});

describe('the model map on every route', () => {
  it('maps a chat request too, checks the allowlist on the requested name, and logs both names', async () => {
    openai.requests.length = 0;
    const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mapped_allow', body: { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] } });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(openai.requests[0]?.json.model, 'gpt-4o-mini');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.model, 'claude-haiku-4-5');
    assert.equal(entry.upstream.model, 'gpt-4o-mini');
    // The target's own name is not on the allowlist: the map does not open a way around it.
    const direct = await request(gateway.url, '/v1/chat/completions', { key: 'vk_mapped_allow', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] } });
    assert.equal(direct.status, 404);
    const messagesReply = await messages(gateway.url, 'vk_mapped_allow', { ...hello, model: 'claude-opus-5-5' });
    assert.equal(messagesReply.status, 200, messagesReply.text);
    assert.equal(openai.requests.at(-1)?.json.model, 'gpt-4o-mini');
  });
});

describe('errors on the Messages routes', () => {
  const expectError = (reply: Awaited<ReturnType<typeof request>>, status: number, type: string, message?: RegExp): void => {
    assert.equal(reply.status, status, reply.text);
    assert.equal(reply.json?.type, 'error', reply.text);
    assert.equal(reply.json.error.type, type);
    assert.deepEqual(Object.keys(reply.json.error).sort(), ['message', 'type']);
    if (message !== undefined) assert.match(reply.json.error.message, message);
    assert.match(String(reply.headers['request-id']), /^[0-9a-f-]{36}$/);
  };

  it("a provider's overloaded_error as its stream's first event is the answer's status (529), which the client's SDK retries; after the stream began, an error event", async () => {
    const overloaded = `event: error\ndata: ${JSON.stringify(anthropicError('overloaded_error', 'Overloaded'))}\n\n`;
    const start = `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 1 } } })}\n\n`;
    for (const begun of [false, true]) {
      anthropic.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`${begun ? start : ''}${overloaded}`);
      });
      try {
        const reply = await messages(gateway.url, 'vk_claude_test', { ...hello, stream: true });
        if (begun) {
          assert.equal(reply.status, 200);
          assert.deepEqual(messagesEvents(reply.text).map((event) => event.type), ['message_start', 'error']);
        } else {
          expectError(reply, 529, 'overloaded_error', /^Overloaded$/);
        }
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['request-id']));
        assert.equal(entry.status, 529);
      } finally {
        anthropic.behave(null);
      }
    }
    // Translated for a chat client, after a ping (which says nothing to it): still nothing sent, a 529, and nothing charged.
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`event: ping\ndata: {"type": "ping"}\n\n${overloaded}`);
    });
    try {
      const reply = await request(gateway.url, '/v1/chat/completions', { key: 'vk_claude_budget', body: JSON.stringify({ model: 'claude-sonnet-4-5', stream: true, messages: [{ role: 'user', content: 'x'.repeat(4000) }] }) });
      assert.equal(reply.status, 529, reply.text);
      assert.equal(reply.json.error.type, 'overloaded_error');
      await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      const usage = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_claude_budget' })).json;
      assert.equal(usage.budget.remaining_tokens, 1_000_000, 'a refusal is not billed');
      // Passed through to a Messages client, the ping is held back until something follows it: the error is the answer's status too.
      const passed = await messages(gateway.url, 'vk_claude_budget', { model: 'claude-sonnet-4-5', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'x'.repeat(4000) }] });
      assert.equal(passed.status, 529, passed.text);
      assert.equal(passed.json.error.type, 'overloaded_error');
      await waitForEntry(gateway.logFile, String(passed.headers['x-request-id']));
      const after = (await request(gateway.url, '/v1/usage', { method: 'GET', key: 'vk_claude_budget' })).json;
      assert.equal(after.budget.remaining_tokens, 1_000_000, 'nor is a stream of a ping and an error');
    } finally {
      anthropic.behave(null);
    }
  });

  it('401 without a key (saying where it goes) and with an unknown one', async () => {
    expectError(await messages(gateway.url, null, hello), 401, 'authentication_error', /x-api-key: <virtual key>.*Authorization: Bearer/);
    expectError(await messages(gateway.url, 'vk_nope', hello), 401, 'authentication_error', /Invalid virtual key/);
    expectError(await messages(gateway.url, 'vk_nope', hello, { bearer: true }), 401, 'authentication_error');
  });

  it('takes the virtual key from either header when both come (ANTHROPIC_API_KEY left set beside ANTHROPIC_AUTH_TOKEN)', async () => {
    const both = (apiKey: string, bearer: string): Promise<Reply> => request(gateway.url, '/v1/messages', { key: bearer, headers: { 'anthropic-version': '2023-06-01', 'x-api-key': apiKey }, body: hello });
    assert.equal((await both('sk-ant-api03-a-real-key-left-set', 'vk_claude_test')).status, 200, 'the bearer is the virtual key');
    assert.equal((await both('vk_claude_test', 'sk-ant-api03-a-real-key-left-set')).status, 200, 'x-api-key is');
    const neither = await both('sk-ant-api03-a-real-key-left-set', 'vk_nope');
    expectError(neither, 401, 'authentication_error', /Invalid virtual key/);
    assert.doesNotMatch(neither.text, /a-real-key-left-set|vk_nope/);
  });

  it('400 for a body Anthropic would refuse, 404 for a model the key may not use (as Anthropic answers it: Claude Code takes a 403 for a bad key and says to log in), 413 for a body too large', async () => {
    expectError(await messages(gateway.url, 'vk_claude_test', '{"model":'), 400, 'invalid_request_error', /not valid JSON/);
    expectError(await messages(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }] }), 400, 'invalid_request_error', /^max_tokens: Field required$/);
    expectError(await messages(gateway.url, 'vk_haiku_only', hello), 404, 'not_found_error', /claude-sonnet-4-5/);
    expectError(await messages(gateway.url, 'vk_claude_test', { ...hello, system: 'x'.repeat(250_000) }), 413, 'request_too_large');
  });

  it('404 for an unknown path under /v1/messages, 405 for a GET', async () => {
    expectError(await messages(gateway.url, 'vk_claude_test', hello, { path: '/v1/messages/batches' }), 404, 'not_found_error', /Unknown path: POST \/v1\/messages\/batches/);
    expectError(await request(gateway.url, '/v1/messages', { method: 'GET', headers: { 'x-api-key': 'vk_claude_test' } }), 405, 'invalid_request_error', /use POST/);
  });

  it('429 from the key\'s rate limit, with retry-after', async () => {
    assert.equal((await messages(gateway.url, 'vk_rpm', hello)).status, 200);
    const refused = await messages(gateway.url, 'vk_rpm', hello);
    expectError(refused, 429, 'rate_limit_error');
    assert.ok(Number(refused.headers['retry-after']) > 0);
  });

  it("429 once the key's token budget is used, with retry-after", async () => {
    let reply = await messages(gateway.url, 'vk_budget', hello);
    for (let i = 0; i < 10 && reply.status === 200; i++) reply = await messages(gateway.url, 'vk_budget', hello);
    expectError(reply, 429, 'rate_limit_error', /budget/);
    assert.ok(Number(reply.headers['retry-after']) > 0);
  });

  it('500 api_error when the provider refuses the real key, 502 api_error when it cannot be reached', async () => {
    expectError(await messages(gateway.url, 'vk_bad_real', hello), 500, 'api_error', /rejected the gateway's API key/);
    expectError(await messages(gateway.url, 'vk_down', hello), 502, 'api_error');
  });
});

describe('shared features on the Messages routes', () => {
  it('rotates real keys past one the provider rate-limits, scrubs a real key an upstream error echoes, and counts the requests in /metrics', async () => {
    const series = 'llm_gateway_requests_total{provider="openai",key_name="messages-pool",model="claude-sonnet-4-5",status="200"}';
    const counted = async (): Promise<number> => {
      const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      return Number(text.split('\n').find((line) => line.startsWith(`${series} `))?.slice(series.length + 1) ?? 0);
    };
    const before = await counted();
    const from = openai.requests.length;
    // The first real key is rate-limited: it sits out while the second serves. (With this file's
    // UPSTREAM_RETRIES=0 the request that met the 429 gets it; with retries it would move on at once.)
    openai.behave(({ req, res }) => {
      if (req.headers.authorization !== `Bearer ${OPENAI_KEY}`) return false;
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '60' });
      res.end(JSON.stringify(openAIError('Rate limit reached for requests', 'requests', 'rate_limit_exceeded')));
      return true;
    });
    try {
      const replies = [];
      for (let i = 0; i < 4; i++) replies.push(await messages(gateway.url, 'vk_gpt_pool', i === 2 ? { ...hello, stream: true } : hello));
      assert.deepEqual(replies.map((reply) => reply.status), [429, 200, 200, 200]);
      assert.deepEqual(replies[0]?.json, { type: 'error', error: { type: 'rate_limit_error', message: 'Rate limit reached for requests' } });
      assert.deepEqual(replies[1]?.json.content, [{ type: 'text', text: 'openai says: Hello Claude' }]);
      assert.equal(messagesEvents(replies[2]?.text ?? '').at(-1).type, 'message_stop');
      const used = openai.requests.slice(from).map((recorded) => recorded.headers.authorization);
      assert.deepEqual(used, [`Bearer ${OPENAI_KEY}`, `Bearer ${OPENAI_KEY_2}`, `Bearer ${OPENAI_KEY_2}`, `Bearer ${OPENAI_KEY_2}`]);
      const entry = await waitForEntry(gateway.logFile, String(replies[3]?.headers['x-request-id']));
      assert.equal(entry.upstream.api_key, 1, 'the log names the real key by its index');
      assert.equal(await counted(), before + 3);

      // An upstream error that echoes the real key, as a status and as a stream's first event (answered as its status too).
      openai.behave(({ req, res, recorded }) => {
        const body = JSON.stringify(openAIError(`Key ${String(req.headers.authorization)} may not use this model`, 'invalid_request_error'));
        if (recorded.json?.stream === true) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(`data: ${body}\n\n`);
        } else {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(body);
        }
      });
      const refused = await messages(gateway.url, 'vk_gpt_pool', hello);
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.json.error.type, 'invalid_request_error');
      assert.match(refused.json.error.message, /may not use this model/);
      const streamed = await messages(gateway.url, 'vk_gpt_pool', { ...hello, stream: true });
      assert.equal(streamed.status, 400, streamed.text);
      assert.equal(streamed.json.type, 'error');
      assert.match(streamed.json.error.message, /may not use this model/);
      for (const reply of [refused, streamed]) {
        assert.doesNotMatch(reply.text, /e2eMESSAGES/, 'no real key in what the client gets');
        await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      }
      assert.doesNotMatch(readFileSync(gateway.logFile, 'utf8'), /e2eMESSAGES/, 'nor in the log');
    } finally {
      openai.behave(null);
    }
  });
});

describe('a body whose model key stands twice', () => {
  it('goes as the gateway read it, on /v1/messages and count_tokens: the provider gets the model it allowed and priced', async () => {
    // count_tokens takes no max_tokens, as Anthropic's own.
    const twice = (path: string): string => `{"model":"claude-opus-4-1",${path.endsWith('count_tokens') ? '' : '"max_tokens":16,'}"messages":[{"role":"user","content":"hi"}],"model":"claude-haiku-4-5"}`;
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      anthropic.requests.length = 0;
      const reply = await messages(gateway.url, 'vk_haiku_only', twice(path), { path });
      assert.equal(reply.status, 200, reply.text);
      const sent = anthropic.requests[0];
      assert.equal(sent?.path, path);
      assert.equal(sent?.json.model, 'claude-haiku-4-5');
      assert.doesNotMatch(String(sent?.raw), /opus/, `${path}: the shadowed model is not sent`);
      assert.equal(String(sent?.raw).match(/"model"/g)?.length, 1);
    }
    // A body written plainly goes byte for byte, as before.
    anthropic.requests.length = 0;
    const plain = '{"model":"claude-haiku-4-5","max_tokens":16,  "messages":[{"role":"user","content":"hi"}]}';
    assert.equal((await messages(gateway.url, 'vk_haiku_only', plain)).status, 200);
    assert.equal(anthropic.requests[0]?.raw, plain);
  });
});

describe('message threads (the thread field, beta message-threads-2026-08-12)', () => {
  // As the SDK that has threads sends them: its own API version, and the beta.
  const THREADS = { 'anthropic-beta': 'message-threads-2026-08-12', 'anthropic-version': '2026-10-21' };
  const turn = (content: string, thread: unknown, stream = false): Record<string, unknown> => ({ model: 'claude-sonnet-4-5', max_tokens: 64, stream, messages: [{ role: 'user', content }], thread });
  const continuing = (id: string): unknown => ({ type: 'continue', previous_message_id: id });

  it('hold the thread they continue against the budget, as large as Anthropic last counted it (cache reads included): a burst cannot all pass', async () => {
    let replies = 0;
    anthropic.behave(async ({ res, recorded }) => {
      if (recorded.path !== '/v1/messages') return false;
      if (recorded.json?.thread?.type === 'continue') await new Promise((resolve) => setTimeout(resolve, 300)); // the burst runs together
      const text = JSON.stringify({ id: `msg_long${replies++}`, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 10_000, cache_read_input_tokens: 50_000, cache_creation_input_tokens: 0, output_tokens: 10 } });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(text);
      return true;
    });
    try {
      const created = await messages(gateway.url, 'vk_claude_thread_budget', turn('Start.', { type: 'create' }), { headers: THREADS });
      assert.equal(created.status, 200, created.text);
      const burst = await Promise.all(Array.from({ length: 4 }, () => messages(gateway.url, 'vk_claude_thread_budget', turn('More.', continuing(created.json.id)), { headers: THREADS })));
      assert.deepEqual(burst.map((reply) => reply.status).sort(), [200, 429, 429, 429], burst.map((reply) => reply.text).join('\n'));
      assert.equal(burst.find((reply) => reply.status === 429)?.json.error.type, 'rate_limit_error');
      assert.equal(replies, 2);
    } finally {
      anthropic.behave(null);
    }
  });

  it("are continued by the key whose reply they follow; another key's (sharing the real key), or an unknown one, is a thread not found that never reaches Anthropic", async () => {
    const created = await messages(gateway.url, 'vk_claude_test', turn('My name is Alice.', { type: 'create' }, true), { headers: THREADS });
    assert.equal(created.status, 200, created.text);
    const first = messagesEvents(created.text)[0].message.id as string;
    anthropic.requests.length = 0;
    const next = await messages(gateway.url, 'vk_claude_test', turn('What is my name?', continuing(first)), { headers: THREADS });
    assert.equal(next.status, 200, next.text);
    assert.equal(anthropic.requests[0]?.json.thread.previous_message_id, first);
    assert.equal(anthropic.requests[0]?.headers['anthropic-version'], '2026-10-21', "the client's version goes with it");
    const second = next.json.id as string;

    // The other team's own server, asked for the reply as a stored response, says the other key owns it: no other provider's word counts.
    assert.equal((await request(gateway.url, `/v1/responses/${second}`, { method: 'GET', key: 'vk_other_own_server' })).status, 404);
    anthropic.requests.length = 0;
    for (const [key, id] of [['vk_claude_other', second], ['vk_claude_test', 'msg_never_answered']] as const) {
      const refused = await messages(gateway.url, key, turn('What is her name?', continuing(id)), { headers: THREADS });
      assert.equal(refused.status, 404, refused.text);
      assert.deepEqual(refused.json.error, { type: 'not_found_error', message: `No thread was found for previous_message_id '${id}'.`, details: { error_code: 'thread_not_found' } });
    }
    assert.equal(anthropic.requests.length, 0, 'nothing reached Anthropic');

    // The other key starts its own thread (as the SDK does after a thread not found) and continues it.
    const own = await messages(gateway.url, 'vk_claude_other', turn('I am Bob.', { type: 'create' }), { headers: THREADS });
    assert.equal((await messages(gateway.url, 'vk_claude_other', turn('Who am I?', continuing(own.json.id)), { headers: THREADS })).status, 200);

    // A thread written twice goes as the gateway read it: the last one, its own.
    anthropic.requests.length = 0;
    const twice = `{"thread":{"type":"continue","previous_message_id":"${second}"},"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Again?"}],"thread":{"type":"continue","previous_message_id":"${own.json.id}"}}`;
    const shadowed = await messages(gateway.url, 'vk_claude_other', twice, { headers: THREADS });
    assert.equal(shadowed.status, 200, shadowed.text);
    assert.equal(String(anthropic.requests[0]?.raw).match(/"thread"/g)?.length, 1);
    assert.equal(anthropic.requests[0]?.json.thread.previous_message_id, own.json.id);

    // Inside thread too: a parser that takes the first of two keys must not see another's continuation.
    anthropic.requests.length = 0;
    const inner = `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}],"thread":{"type":"continue","previous_message_id":"${second}","type":"create"}}`;
    assert.equal((await messages(gateway.url, 'vk_claude_other', inner, { headers: THREADS })).status, 400);
    const recreated = `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}],"thread":{"type":"continue","type":"create"}}`;
    assert.equal((await messages(gateway.url, 'vk_claude_other', recreated, { headers: THREADS })).status, 200);
    assert.equal(anthropic.requests.length, 1);
    assert.equal(anthropic.requests[0]?.raw, '{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}],"thread":{"type":"create"}}');

    const nameless = await messages(gateway.url, 'vk_claude_test', turn('?', { type: 'continue' }), { headers: THREADS });
    assert.equal(nameless.status, 400);
    assert.equal(nameless.json.error.type, 'invalid_request_error');
  });

  it("keep the code of Anthropic's own thread refusal (one it let expire), which the SDK recovers from; take only the two shapes Anthropic defines", async () => {
    const created = await messages(gateway.url, 'vk_claude_test', turn('Remember me.', { type: 'create' }), { headers: THREADS });
    assert.equal(created.status, 200, created.text);
    anthropic.behave(({ res }) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'Thread expired.', details: { error_code: 'thread_not_found' } } }));
    });
    try {
      const expired = await messages(gateway.url, 'vk_claude_test', turn('Still there?', continuing(created.json.id)), { headers: THREADS });
      assert.equal(expired.status, 404);
      assert.deepEqual(expired.json.error, { type: 'not_found_error', message: 'Thread expired.', details: { error_code: 'thread_not_found' } });
    } finally {
      anthropic.behave(null);
    }
    // A value that names a reply is a continuation however its type is written, and any other value is refused.
    anthropic.requests.length = 0;
    for (const thread of [{ previous_message_id: created.json.id }, { type: 'Continue', previous_message_id: created.json.id }, { type: 'resume' }, ['continue'], 'create']) {
      const odd = await messages(gateway.url, 'vk_claude_other', turn('Hi', thread), { headers: THREADS });
      assert.equal(odd.status, 400, JSON.stringify(thread));
      assert.equal(odd.json.error.type, 'invalid_request_error');
    }
    assert.equal(anthropic.requests.length, 0);
  });

  it('on count_tokens: the same rules as a turn (another key\'s thread is not found, a key without threads refuses), the body as checked', async () => {
    const created = await messages(gateway.url, 'vk_claude_test', turn('Count me in.', { type: 'create' }), { headers: THREADS });
    const count = (key: string, thread: unknown): Promise<Reply> =>
      messages(gateway.url, key, { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'How long is this?' }], thread }, { path: '/v1/messages/count_tokens', headers: THREADS });
    anthropic.requests.length = 0;
    const other = await count('vk_claude_other', continuing(created.json.id));
    assert.equal(other.status, 404);
    assert.equal(other.json.error.details.error_code, 'thread_not_found');
    const translated = await count('vk_gpt', continuing(created.json.id));
    assert.equal(translated.status, 400);
    assert.equal(translated.json.error.details.error_code, 'thread_unsupported_request');
    assert.equal(anthropic.requests.length, 0, 'nothing was sent');
    const own = await count('vk_claude_test', continuing(created.json.id));
    assert.equal(own.status, 200, own.text);
    assert.equal(anthropic.requests[0]?.path, '/v1/messages/count_tokens');
    assert.deepEqual(anthropic.requests[0]?.json.thread, continuing(created.json.id));
  });

  it('are refused where the provider keeps no history (a translation, DeepSeek) with the code the SDK recovers from; nothing is sent', async () => {
    openai.requests.length = 0;
    anthropic.requests.length = 0;
    for (const key of ['vk_gpt', 'vk_ds_anthropic']) {
      for (const thread of [{ type: 'create' }, continuing('msg_x')]) {
        const refused = await messages(gateway.url, key, turn('Hello', thread), { headers: THREADS });
        assert.equal(refused.status, 400, `${key}: ${refused.text}`);
        assert.equal(refused.json.error.type, 'invalid_request_error');
        assert.deepEqual(refused.json.error.details, { error_code: 'thread_unsupported_request' });
        assert.match(refused.json.error.message, /^thread: message threads are not available with this key: .*Send the whole conversation without thread\.$/);
      }
    }
    assert.equal(openai.requests.length + anthropic.requests.length, 0);
    // Without a thread the same request is served.
    assert.equal((await messages(gateway.url, 'vk_gpt', turn('Hello', undefined))).status, 200);
  });
});

describe('count_tokens', () => {
  const body = { model: 'claude-sonnet-4-5', system: 'Be brief.', messages: [{ role: 'user', content: 'How many tokens is this?' }], tools: [weather] };

  it('passes through to a Messages provider: body, query, version and betas, with the real key', async () => {
    anthropic.requests.length = 0;
    const raw = JSON.stringify(body);
    const reply = await messages(gateway.url, 'vk_claude_test', raw, { path: '/v1/messages/count_tokens', query: 'beta=true', headers: { 'anthropic-beta': 'token-counting-2024-11-01' } });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { input_tokens: 7 + Math.ceil(raw.length / 5) });
    assert.equal(reply.headers['request-id'], reply.headers['x-request-id']);
    const sent = anthropic.requests[0];
    assert.equal(sent?.path, '/v1/messages/count_tokens');
    assert.equal(sent?.query, 'beta=true');
    assert.equal(sent?.raw, raw);
    assert.equal(sent?.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(sent?.headers['anthropic-beta'], 'token-counting-2024-11-01');
  });

  it('applies the model map on the way', async () => {
    anthropic.requests.length = 0;
    const reply = await messages(gateway.url, 'vk_ds_anthropic', body, { path: '/v1/messages/count_tokens' });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(anthropic.requests[0]?.json.model, 'deepseek-v4-pro');
    // A whole agent conversation (re-serialised in pieces): every message arrives as sent.
    const turns = Array.from({ length: 41 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i} — ${'é→😀 "quoted"\n'.repeat(150)}` }));
    const long = await messages(gateway.url, 'vk_ds_anthropic', { ...body, messages: turns }, { path: '/v1/messages/count_tokens' });
    assert.equal(long.status, 200, long.text);
    assert.equal(anthropic.requests[1]?.json.model, 'deepseek-v4-pro');
    assert.deepEqual(anthropic.requests[1]?.json.messages, turns);
  });

  it("answers a 200 whose body is an error (an overload some servers answer so) at the status it stands for, as /v1/messages does", async () => {
    anthropic.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(anthropicError('overloaded_error', 'Overloaded')));
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', body, { path: '/v1/messages/count_tokens' });
      assert.equal(reply.status, 529, reply.text);
      assert.deepEqual([reply.json.type, reply.json.error.type, reply.json.error.message], ['error', 'overloaded_error', 'Overloaded']);
    } finally {
      anthropic.behave(null);
    }
  });

  it('estimates for a Chat Completions provider, without calling it', async () => {
    const before = openai.requests.length;
    const reply = await messages(gateway.url, 'vk_gpt', body, { path: '/v1/messages/count_tokens' });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { input_tokens: estimateInputTokens(body as unknown as AnthropicRequest) });
    assert.equal(openai.requests.length, before);
  });

  it('estimates when a Messages provider has no count_tokens (404 for the path); passes on a 404 about the model', async () => {
    anthropic.behave(({ res }) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(anthropicError('not_found_error', 'Not Found')));
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', body, { path: '/v1/messages/count_tokens' });
      assert.deepEqual(reply.json, { input_tokens: estimateInputTokens(body as unknown as AnthropicRequest) });
    } finally {
      anthropic.behave(null);
    }
    anthropic.behave(({ res }) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(anthropicError('not_found_error', 'model: claude-sonnet-9')));
    });
    try {
      const reply = await messages(gateway.url, 'vk_claude_test', { ...body, model: 'claude-sonnet-9' }, { path: '/v1/messages/count_tokens' });
      assert.equal(reply.status, 404);
      assert.deepEqual(reply.json, { type: 'error', error: { type: 'not_found_error', message: 'model: claude-sonnet-9' } });
    } finally {
      anthropic.behave(null);
    }
  });

  it('is logged, counted against the key\'s requests per minute (as zero tokens), and refused in Anthropic\'s shape past it', async () => {
    const first = await messages(gateway.url, 'vk_count_rpm', body, { path: '/v1/messages/count_tokens' });
    assert.equal(first.status, 200, first.text);
    const entry = await waitForEntry(gateway.logFile, String(first.headers['x-request-id']));
    assert.equal(entry.path, '/v1/messages/count_tokens');
    assert.deepEqual(entry.request, body);
    assert.deepEqual(entry.response, first.json);
    assert.equal(entry.upstream.status, 200);
    const before = anthropic.requests.length;
    const second = await messages(gateway.url, 'vk_count_rpm', body, { path: '/v1/messages/count_tokens' });
    assert.equal(second.status, 429);
    assert.equal(second.json.error.type, 'rate_limit_error');
    assert.equal(anthropic.requests.length, before, 'nothing reached the provider');
  });

  it('answers a body nested too deeply to measure with a 400, not a 500', async () => {
    const deep = `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":${'['.repeat(60_000)}${']'.repeat(60_000)}}]}`;
    const estimated = await messages(gateway.url, 'vk_gpt', deep, { path: '/v1/messages/count_tokens' });
    assert.equal(estimated.status, 400, estimated.text);
    assert.equal(estimated.json.error.message, 'The request body nests deeper than 128 levels.');
    // Logged as the text it was refused as (indented, 60,000 levels would take gigabytes), its first
    // 64 KiB, as every request refused before a provider saw it.
    const logged = await waitForEntry(gateway.logFile, String(estimated.headers['x-request-id']));
    assert.deepEqual(logged.request, { truncated: true, original_bytes: deep.length, head: deep.slice(0, 65536) });
    assert.ok(statSync(gateway.logFile).size < 10 * 1024 * 1024);
    // Refused before anything would re-serialise it (a model map), which V8 cannot do up to Node 24.
    const mapped = await messages(gateway.url, 'vk_ds_anthropic', deep, { path: '/v1/messages/count_tokens' });
    assert.equal(mapped.status, 400, mapped.text);
    assert.equal(mapped.json.error.message, 'The request body nests deeper than 128 levels.');
  });

  it("refuses in Anthropic's shape: no key, a GET, a body without messages", async () => {
    const noKey = await messages(gateway.url, null, body, { path: '/v1/messages/count_tokens' });
    assert.equal(noKey.status, 401);
    assert.equal(noKey.json.error.type, 'authentication_error');
    const get = await request(gateway.url, '/v1/messages/count_tokens', { method: 'GET', headers: { 'x-api-key': 'vk_claude_test' } });
    assert.equal(get.status, 405);
    assert.equal(get.json.error.type, 'invalid_request_error');
    const bad = await messages(gateway.url, 'vk_claude_test', { model: 'm' }, { path: '/v1/messages/count_tokens' });
    assert.deepEqual(bad.json, { type: 'error', error: { type: 'invalid_request_error', message: 'messages: Field required' } });
  });
});

describe('GET /v1/models in both formats', () => {
  it("answers Anthropic's list format to a request in Anthropic's style (x-api-key or anthropic-version)", async () => {
    const claude = await request(gateway.url, '/v1/models', { method: 'GET', headers: { 'x-api-key': 'vk_claude_test', 'anthropic-version': '2023-06-01' } });
    assert.equal(claude.status, 200, claude.text);
    assert.deepEqual(claude.json, {
      data: [
        { type: 'model', id: 'claude-sonnet-4-5-20250929', display_name: 'claude-sonnet-4-5-20250929', created_at: '2025-09-29T00:00:00Z' },
        { type: 'model', id: 'claude-haiku-4-5-20251001', display_name: 'claude-haiku-4-5-20251001', created_at: '2025-09-29T00:00:00Z' },
      ],
      has_more: false,
      first_id: 'claude-sonnet-4-5-20250929',
      last_id: 'claude-haiku-4-5-20251001',
    });
    const gpt = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_gpt', headers: { 'anthropic-version': '2023-06-01' } });
    assert.equal(gpt.status, 200, gpt.text);
    assert.deepEqual(gpt.json.data[0], { type: 'model', id: 'gpt-4o-mini', display_name: 'gpt-4o-mini', created_at: '2024-07-16T23:32:21Z' });
    assert.equal(gpt.json.has_more, false);
  });

  it("lists all of Anthropic's models, which it pages 20 at a time unless asked for more, to either format", async () => {
    const many = Array.from({ length: 25 }, (_, i) => `claude-model-${String(i).padStart(2, '0')}`);
    const paging = await startAnthropicMock({ apiKey: ANTHROPIC_KEY, models: many });
    const listing = await startGateway({ keys: { virtual_keys: { vk_all_claude: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: paging.baseUrl } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      const claude = await request(listing.url, '/v1/models', { method: 'GET', headers: { 'x-api-key': 'vk_all_claude', 'anthropic-version': '2023-06-01' } });
      assert.equal(claude.status, 200, claude.text);
      assert.deepEqual(claude.json.data.map((model: { id: string }) => model.id), many);
      assert.equal(claude.json.has_more, false);
      const openai = await request(listing.url, '/v1/models', { method: 'GET', key: 'vk_all_claude' });
      assert.deepEqual(openai.json.data.map((model: { id: string }) => model.id), many);
    } finally {
      await listing.stop();
      await paging.close();
    }
  });

  it("lists the model map's exact names a key may ask for (Claude Code's names on another provider)", async () => {
    const reply = await request(gateway.url, '/v1/models', { method: 'GET', headers: { 'x-api-key': 'vk_map_names' } });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json.data.map((model: { id: string }) => model.id), ['claude-opus-5-5']);
  });

  it("answers OpenAI's list format otherwise, for the same keys", async () => {
    const claude = await request(gateway.url, '/v1/models', { method: 'GET', key: 'vk_claude_test' });
    assert.equal(claude.json.object, 'list');
    assert.equal(claude.json.data[0].object, 'model');
  });

  it("refuses in Anthropic's shape to an Anthropic client", async () => {
    const reply = await request(gateway.url, '/v1/models', { method: 'GET', headers: { 'x-api-key': 'vk_nope' } });
    assert.equal(reply.status, 401);
    assert.deepEqual(Object.keys(reply.json), ['type', 'error']);
    assert.equal(reply.json.error.type, 'authentication_error');
    assert.equal(reply.headers['request-id'], reply.headers['x-request-id']);
  });
});

describe('timeouts and shutdown on the Messages routes', () => {
  it("a provider that does not answer is a 504 timeout_error; one that goes silent mid-stream, a timeout error event; SIGTERM ends a stream with an api_error event", async () => {
    const silent = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
    const slow = await startGateway({
      keys: { virtual_keys: { vk: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: silent.baseUrl } } },
      env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0', UPSTREAM_TIMEOUT_MS: '300', UPSTREAM_IDLE_TIMEOUT_MS: '300', GATEWAY_SHUTDOWN_TIMEOUT_MS: '300' },
    });
    try {
      silent.behave(() => undefined); // never answers
      const timedOut = await messages(slow.url, 'vk', hello);
      assert.equal(timedOut.status, 504);
      assert.deepEqual(timedOut.json.error.type, 'timeout_error');
      assert.equal(timedOut.headers['request-id'], timedOut.headers['x-request-id']);

      silent.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(TRANSCRIPT.split('\n\n').slice(0, 2).join('\n\n') + '\n\n');
      });
      const idle = await messages(slow.url, 'vk', { ...hello, stream: true });
      assert.equal(idle.status, 200);
      assert.equal(messagesEvents(idle.text).at(-1).error.type, 'timeout_error');

      silent.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(TRANSCRIPT.split('\n\n').slice(0, 2).join('\n\n') + '\n\n');
        // keep-alive pings so the idle timeout does not end it first
        const timer = setInterval(() => res.write('event: ping\ndata: {"type": "ping"}\n\n'), 100);
        res.once('close', () => clearInterval(timer));
      });
      const streaming = messages(slow.url, 'vk', { ...hello, stream: true });
      await waitFor(() => silent.requests.length === 3, 'the stream to start');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const exited = slow.stop('SIGTERM');
      const cut = await streaming;
      const last = messagesEvents(cut.text).at(-1);
      assert.equal(last.type, 'error');
      assert.equal(last.error.type, 'api_error');
      assert.match(last.error.message, /shutting down/i);
      assert.equal(await exited, 0);
    } finally {
      await slow.stop();
      await silent.close();
    }
  });
});
