/**
 * Anthropic end to end: an OpenAI-format client talks to the gateway, whose anthropic key points
 * at a mock Messages API that enforces the real API's rules.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, sseData } from './support/http.js';
import { anthropicError, startAnthropicMock, type AnthropicMock } from './support/mock-anthropic.js';

const ANTHROPIC_KEY = 'sk-ant-api03-e2eANTHROPICkey-Hq7';
const weatherTool = { type: 'function', function: { name: 'get_weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } } };

let mock: AnthropicMock;
let gateway: GatewayProcess;

before(async () => {
  mock = await startAnthropicMock({ apiKey: ANTHROPIC_KEY });
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_claude_test: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: mock.baseUrl },
        vk_claude_bad: { provider: 'anthropic', api_key: 'sk-ant-api03-WRONGkey-Zz1', base_url: mock.baseUrl },
      },
    },
    env: { LOG_CONSOLE: 'off', ANTHROPIC_DEFAULT_MAX_TOKENS: '1234', UPSTREAM_RETRIES: '0' },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.close();
});

describe('anthropic through the gateway', () => {
  it('answers a plain OpenAI request in OpenAI format (non-streaming), and logs it', async () => {
    mock.requests.length = 0;
    const reply = await chat(gateway.url, 'vk_claude_test', {
      model: 'claude-sonnet-4-5',
      temperature: 1.5,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello Claude' },
      ],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.json.object, 'chat.completion');
    assert.match(reply.json.id, /^msg_/);
    assert.equal(reply.json.model, 'claude-sonnet-4-5-20250929');
    assert.deepEqual(reply.json.choices[0].message, { role: 'assistant', content: 'claude says: Hello Claude', refusal: null, annotations: [] });
    assert.equal(reply.json.choices[0].finish_reason, 'stop');
    assert.deepEqual(
      [reply.json.usage.prompt_tokens, reply.json.usage.completion_tokens, reply.json.usage.total_tokens, reply.json.usage.prompt_tokens_details.cached_tokens],
      [30, 12, 42, 5],
    );

    const sent = mock.requests[0];
    assert.equal(sent?.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal(sent?.headers['anthropic-version'], '2023-06-01');
    assert.equal(sent?.headers.authorization, undefined);
    assert.equal(sent?.json.max_tokens, 1234, 'ANTHROPIC_DEFAULT_MAX_TOKENS');
    assert.equal(sent?.json.temperature, 1, 'clamped');
    assert.deepEqual(sent?.json.system, [{ type: 'text', text: 'Be brief.' }]);

    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.provider, 'anthropic');
    assert.equal(entry.status, 200);
    assert.deepEqual(entry.response, reply.json);
    // The one normalised usage, read from Anthropic's own counts (input_tokens excludes cache reads).
    assert.deepEqual(entry.usage, { input_tokens: 25, output_tokens: 12, cache_read_tokens: 5, cache_write_tokens: 0, reasoning_tokens: 0 });
    // The answer was translated: Anthropic's own usage object is kept beside it.
    assert.deepEqual([entry.upstream.usage.input_tokens, entry.upstream.usage.cache_read_input_tokens, entry.upstream.usage.output_tokens], [25, 5, 12]);
    assert.match(entry.upstream.request_id, /^req_/);
  });

  it('streams text as OpenAI chunks ending in [DONE], with usage only when asked', async () => {
    const reply = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', stream: true, messages: [{ role: 'user', content: 'Stream please' }] });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'text/event-stream; charset=utf-8');
    const data = sseData(reply.text);
    assert.equal(data.at(-1), '[DONE]');
    const chunks = data.slice(0, -1).map((text) => JSON.parse(text));
    assert.ok(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.choices.length === 1));
    assert.equal(new Set(chunks.map((chunk) => `${chunk.id}|${chunk.created}|${chunk.model}`)).size, 1, 'one id, created and model');
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
    assert.equal(chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'claude says: Stream please');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');

    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.stream, true);
    assert.equal(entry.response.choices[0].message.content, 'claude says: Stream please');
    assert.deepEqual(entry.usage, { input_tokens: 25, output_tokens: 12, cache_read_tokens: 5, cache_write_tokens: 0, reasoning_tokens: 0 }, 'usage logged although the client did not ask for it');
    assert.deepEqual([entry.upstream.usage.input_tokens, entry.upstream.usage.cache_read_input_tokens, entry.upstream.usage.output_tokens], [25, 5, 12], "Anthropic's usage from message_start and message_delta");

    const withUsage = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'x' }] });
    const usageChunk = JSON.parse(sseData(withUsage.text).at(-2) ?? '{}');
    assert.deepEqual(usageChunk.choices, []);
    assert.equal(usageChunk.usage.total_tokens, 42);
  });

  it('streams a tool call whose reassembled arguments parse, and logs the assembled call', async () => {
    const reply = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', stream: true, tools: [weatherTool], messages: [{ role: 'user', content: 'What is the weather in Paris?' }] });
    assert.equal(reply.status, 200, reply.text);
    const chunks = sseData(reply.text).slice(0, -1).map((text) => JSON.parse(text));
    const calls = chunks.flatMap((chunk) => chunk.choices[0].delta.tool_calls ?? []);
    assert.equal(calls[0].id, 'toolu_01A');
    assert.equal(calls[0].function.name, 'get_weather');
    assert.ok(calls.every((call: { index: number }) => call.index === 0));
    const args = calls.map((call: { function: { arguments?: string } }) => call.function.arguments ?? '').join('');
    assert.deepEqual(JSON.parse(args), { city: 'Paris', unit: 'celsius' });
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');

    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    const message = entry.response.choices[0].message;
    assert.equal(message.content, 'Let me check.');
    assert.deepEqual(JSON.parse(message.tool_calls[0].function.arguments), { city: 'Paris', unit: 'celsius' });
  });

  it('round-trips a tool conversation the real API would accept', async () => {
    const first = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', tools: [weatherTool], messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    assert.equal(first.status, 200, first.text);
    const assistant = first.json.choices[0].message;
    assert.equal(first.json.choices[0].finish_reason, 'tool_calls');
    const second = await chat(gateway.url, 'vk_claude_test', {
      model: 'claude-sonnet-4-5',
      tools: [weatherTool],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        assistant,
        { role: 'tool', tool_call_id: assistant.tool_calls[0].id, content: '{"temp_c": 21}' },
        { role: 'user', content: 'Thanks!' },
      ],
    });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.json.choices[0].message.content, 'claude says: Thanks!');
  });

  it("serves a conversation that opens with the assistant's greeting, as OpenAI does (Anthropic would refuse it as sent)", async () => {
    const greeted = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', messages: [{ role: 'system', content: 'Be kind.' }, { role: 'assistant', content: 'Hi! How can I help?' }, { role: 'user', content: 'Hello' }] });
    assert.equal(greeted.status, 200, greeted.text);
    assert.equal(greeted.json.choices[0].message.content, 'claude says: Hello');
  });

  it('refuses what it cannot translate with a 400 naming it, before calling Anthropic', async () => {
    mock.requests.length = 0;
    const n = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', n: 3, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(n.status, 400);
    assert.equal(n.json.error.param, 'n');
    const args = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{oops' } }] }] });
    assert.equal(args.status, 400);
    assert.match(args.json.error.message, /messages\[1\]\.tool_calls\[0\]\.function\.arguments is not valid JSON/);
    assert.equal(mock.requests.length, 0);
  });

  for (const [status, type, message, retryAfter, code] of [
    [429, 'rate_limit_error', 'This request would exceed the rate limit for your organization of 20,000 input tokens per minute.', '12', 'rate_limit_exceeded'],
    [529, 'overloaded_error', 'Overloaded', '30', null],
  ] as const) {
    it(`passes an upstream ${status} on with its status, message, retry-after and OpenAI's code, and logs it`, async () => {
      mock.behave(({ res }) => {
        const text = JSON.stringify(anthropicError(type, message));
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after': retryAfter, 'request-id': 'req_upstream_err' });
        res.end(text);
      });
      try {
        for (const stream of [false, true]) {
          const reply = await chat(gateway.url, 'vk_claude_test', { model: 'claude-sonnet-4-5', stream, messages: [{ role: 'user', content: 'x' }] });
          assert.equal(reply.status, status);
          assert.match(String(reply.headers['content-type']), /^application\/json/);
          assert.deepEqual(reply.json, { error: { message, type, param: null, code } });
          assert.equal(reply.headers['retry-after'], retryAfter);
          const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
          assert.equal(entry.status, status);
          assert.equal(entry.error.type, type);
          assert.deepEqual(entry.upstream, { status, request_id: 'req_upstream_err', model: 'claude-sonnet-4-5', url: `${mock.baseUrl}/v1/messages` });
          assert.equal(entry.error.detail, `upstream ${status} from ${mock.baseUrl}/v1/messages`);
        }
      } finally {
        mock.behave(null);
      }
    });
  }

  it('ends the stream with an OpenAI-style error event on a mid-stream overloaded error', async () => {
    mock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n');
      res.write('event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n');
      res.write('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}}\n\n');
      res.end('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n');
    });
    try {
      const reply = await chat(gateway.url, 'vk_claude_test', { model: 'claude-x', stream: true, messages: [{ role: 'user', content: 'x' }] });
      const data = sseData(reply.text);
      assert.deepEqual(JSON.parse(data.at(-1) ?? '{}'), { error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: 'overloaded_error' } });
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.error.type, 'overloaded_error');
      assert.equal(entry.response.choices[0].message.content, 'Hal');
    } finally {
      mock.behave(null);
    }
  });

  it('a rejected Anthropic key is the operator\'s problem: 500 provider_auth_failed, no key fragment', async () => {
    const reply = await chat(gateway.url, 'vk_claude_bad', { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(reply.status, 500);
    assert.equal(reply.json.error.code, 'provider_auth_failed');
    assert.doesNotMatch(reply.text, /WRONG|Zz1/);
  });
});
