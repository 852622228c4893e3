/**
 * The Anthropic translators, without a network: request, response, stream events and errors.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompletionAssembler } from '../src/formats/chat/assemble.js';
import { chatStreamOutput } from '../src/formats/chat/stream.js';
import type { ChatCompletionChunk, ChatRequest } from '../src/formats/chat/types.js';
import { GatewayError } from '../src/errors.js';
import { PARAMETERS, toAnthropicRequest, toolId } from '../src/formats/messages/request-from-chat.js';
import { chatToMessages, messagesTarget } from '../src/formats/messages/index.js';
import { decodeMessagesEvent, MESSAGES_NOTABLE } from '../src/formats/messages/stream.js';
import { messagesStreamToChat } from '../src/formats/messages/stream-to-chat.js';
import { FINISH_REASONS, finishReason, toChatCompletion, toChatUsage } from '../src/formats/messages/response-to-chat.js';
import type { AnthropicResponse, MessagesEvent } from '../src/formats/messages/types.js';
import type { StreamItem } from '../src/formats/stream.js';
import { anthropic } from '../src/providers/anthropic.js';
import { SseParser } from '../src/upstream/sse.js';
import { upstreamError } from '../src/upstream/errors.js';

const options = { defaultMaxTokens: 4096 };
const translate = (request: Record<string, unknown>) => toAnthropicRequest({ model: 'claude-sonnet-4-5', ...request } as ChatRequest, options);
const user = (content: unknown) => ({ role: 'user', content });

function rejects(request: Record<string, unknown>, message: RegExp, param?: string): void {
  assert.throws(
    () => translate(request),
    (err: unknown) => {
      assert.ok(err instanceof GatewayError, String(err));
      assert.equal(err.status, 400);
      assert.match(err.message, message);
      if (param !== undefined) assert.equal(err.param, param);
      return true;
    },
  );
}

describe('anthropic request: messages', () => {
  it('keeps a string a string and defaults max_tokens to 4096 (or the configured value)', () => {
    assert.deepEqual(translate({ messages: [user('Hello')] }), { model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: 'Hello' }] });
    assert.equal(toAnthropicRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, { defaultMaxTokens: 1000 }).max_tokens, 1000);
  });

  it('max_tokens or max_completion_tokens → max_tokens (max_completion_tokens wins)', () => {
    assert.equal(translate({ messages: [user('x')], max_tokens: 50 }).max_tokens, 50);
    assert.equal(translate({ messages: [user('x')], max_completion_tokens: 60 }).max_tokens, 60);
    assert.equal(translate({ messages: [user('x')], max_tokens: 50, max_completion_tokens: 70 }).max_tokens, 70);
    rejects({ messages: [user('x')], max_tokens: 0 }, /"max_tokens" must be a positive integer/, 'max_tokens');
    rejects({ messages: [user('x')], max_completion_tokens: 2.5 }, /"max_completion_tokens" must be a positive integer/);
  });

  it('hoists system and developer messages from anywhere, in order, into the top-level system', () => {
    const out = translate({
      messages: [
        { role: 'system', content: 'You are terse.' },
        user('Hi'),
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'assistant', content: 'Bonjour' },
        { role: 'system', content: 'Never apologise.' },
        user('Again'),
      ],
    });
    assert.deepEqual(out.system, [
      { type: 'text', text: 'You are terse.' },
      { type: 'text', text: 'Answer in French.' },
      { type: 'text', text: 'Never apologise.' },
    ]);
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Bonjour' },
      { role: 'user', content: 'Again' },
    ]);
  });

  it('sends a PDF file part (file_data) as a document block, and refuses a file id or another type by name', () => {
    const out = translate({ messages: [user([{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0x' } }])] });
    assert.deepEqual(out.messages[0]?.content, [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x' }, title: 'a.pdf' }]);
    const text = translate({ messages: [user([{ type: 'file', file: { file_data: `data:text/plain;base64,${Buffer.from('notes: é').toString('base64')}` } }])] });
    assert.deepEqual(text.messages[0]?.content, [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes: é' } }], 'plain text as its own text source');
    rejects({ messages: [user([{ type: 'file', file: { file_id: 'file-abc' } }])] }, /a file id \(OpenAI's Files API\) cannot be sent to Anthropic/, 'messages[0].content[0]');
    rejects({ messages: [user([{ type: 'file', file: { file_data: 'data:text/csv;base64,YSxi' } }])] }, /this file cannot be sent to Anthropic/, 'messages[0].content[0]');
  });

  it("keeps an assistant turn the model refused: its refusal is the turn's text", () => {
    const out = translate({ messages: [user('Do something bad'), { role: 'assistant', content: null, refusal: "I can't help with that." }, user('Then something good')] });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Do something bad' },
      { role: 'assistant', content: "I can't help with that." },
      { role: 'user', content: 'Then something good' },
    ]);
  });

  it('merges consecutive messages of the same role', () => {
    const out = translate({ messages: [user('one'), user('two'), { role: 'assistant', content: 'a' }, { role: 'assistant', content: 'b' }, user('three')] });
    assert.deepEqual(out.messages, [
      { role: 'user', content: [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      { role: 'user', content: 'three' },
    ]);
  });

  it("opens a conversation that starts with the assistant (a greeting) with a minimal user turn, as Anthropic refuses it otherwise", () => {
    const greeted = translate({ messages: [{ role: 'system', content: 's' }, { role: 'assistant', content: 'Hi! How can I help?' }, user('u')] });
    assert.deepEqual(greeted.messages, [
      { role: 'user', content: '.' },
      { role: 'assistant', content: 'Hi! How can I help?' },
      { role: 'user', content: 'u' },
    ]);
    // An empty first user turn is dropped (Anthropic refuses empty text), which leaves the assistant first.
    const emptied = translate({ messages: [user(''), { role: 'assistant', content: 'ok' }, user('go on')] });
    assert.deepEqual(emptied.messages[0], { role: 'user', content: '.' });
    // Only a system prompt, which OpenAI answers: a minimal user turn to answer it with.
    const systemOnly = translate({ messages: [{ role: 'system', content: 'Write a haiku' }] });
    assert.deepEqual([systemOnly.system, systemOnly.messages], [[{ type: 'text', text: 'Write a haiku' }], [{ role: 'user', content: '.' }]]);
    rejects({ messages: [{ role: 'system', content: '  ' }] }, /no content to send/, 'messages');
  });

  it('drops empty content (Anthropic rejects empty text blocks) and an assistant turn that had only that', () => {
    const out = translate({
      messages: [user('first'), { role: 'assistant', content: '' }, user(''), user([{ type: 'text', text: '' }, { type: 'text', text: 'second' }])],
    });
    assert.deepEqual(out.messages, [{ role: 'user', content: [{ type: 'text', text: 'first' }, { type: 'text', text: 'second' }] }]);
    rejects({ messages: [user('')] }, /no content to send/);
  });

  it('keeps a last user message left empty as a minimal turn: the answer before it is no prefill', () => {
    const out = translate({ messages: [user('hi'), { role: 'assistant', content: 'Hello! ' }, user('\n'), { role: 'system', content: 'Be brief.' }] });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Hello! ' },
      { role: 'user', content: '.' },
    ]);
  });

  it('strips trailing whitespace from a final assistant prefill, across blocks', () => {
    const out = translate({ messages: [user('Write a haiku'), { role: 'assistant', content: 'Here it is:  \n' }] });
    assert.deepEqual(out.messages.at(-1), { role: 'assistant', content: 'Here it is:' });
    const parts = translate({ messages: [user('Write'), { role: 'assistant', content: [{ type: 'text', text: 'Here it is: ' }, { type: 'text', text: '\n' }] }] });
    assert.deepEqual(parts.messages.at(-1), { role: 'assistant', content: 'Here it is:' });
  });

  it('drops whitespace-only text (Anthropic: "text content blocks must contain non-whitespace text")', () => {
    const out = translate({
      messages: [
        { role: 'system', content: '  ' },
        user('hi'),
        { role: 'assistant', content: '\n\n', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'c', content: 'ok' },
        user('   '),
      ],
    });
    assert.equal(out.system, undefined);
    assert.deepEqual(out.messages[1], { role: 'assistant', content: [{ type: 'tool_use', id: 'c', name: 'f', input: {} }] });
    assert.deepEqual(out.messages[2], { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c', content: 'ok' }] });
  });

  it("holds a tool call's arguments to the body's limits: the body's own do not reach into its strings (18 MB of [[[…]]] there held the loop 6 s)", () => {
    const call = (args: string) => ({ messages: [user('hi'), { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: args } }] }, { role: 'tool', tool_call_id: 'c', content: 'ok' }] });
    const nested = (depth: number) => `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    rejects(call(nested(129)), /tool_calls\[0\]\.function\.arguments nests deeper than 128 levels; Anthropic needs the tool input as an object/, 'messages[1].tool_calls[0].function.arguments');
    rejects(call(`{"a":[${'0,'.repeat(1_000_001)}0]}`), /arguments holds more than 1000000 values/);
    // The limits hold for the request's tool calls together: thirty calls of 199,000 objects each held the loop 2–4 s.
    const many = (count: number) => ({
      messages: [user('hi'), { role: 'assistant', content: null, tool_calls: Array.from({ length: count }, (_, i) => ({ id: `c${i}`, type: 'function', function: { name: 'f', arguments: `{"a":[${'{},'.repeat(60_000)}{}]}` } })) }, ...Array.from({ length: count }, (_, i) => ({ role: 'tool', tool_call_id: `c${i}`, content: 'ok' }))],
    });
    assert.equal(translate(many(3)).messages.length, 3, 'three calls of 60,001 objects pass');
    rejects(many(4), /tool_calls\[3\]\.function\.arguments holds more than 200000 objects and arrays \(with the request's earlier tool calls' arguments\)/);
    rejects(call('{"a":'), /arguments is not valid JSON/);
    // At the limit, and as deep as a tool's schema gets, it is the input it says.
    const deep = translate(call(nested(128)));
    assert.equal(JSON.stringify(deep.messages[1]?.content), JSON.stringify([{ type: 'tool_use', id: 'c', name: 'f', input: JSON.parse(nested(128)) }]));
  });

  it('translates images by data URL (base64 source) and by http(s) URL (url source)', () => {
    const out = translate({
      messages: [
        user([
          { type: 'text', text: 'What is in these?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'high' } },
          { type: 'image_url', image_url: { url: 'data:application/pdf;base64,JVBERi0=' } },
        ]),
      ],
    });
    assert.deepEqual(out.messages[0]?.content, [
      { type: 'text', text: 'What is in these?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
    ]);
    rejects({ messages: [user([{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,Qk0=' } }])] }, /image\/bmp/, 'messages[0].content[0]');
    const jpg = translate({ messages: [user([{ type: 'image_url', image_url: { url: 'data:image/JPG;base64,/9j/' } }])] });
    assert.deepEqual((jpg.messages[0]?.content as unknown[])[0], { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/' } }, 'image/jpg, as clients write it from an extension');
    rejects({ messages: [user([{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }])] }, /must be https/);
    rejects({ messages: [user([{ type: 'input_audio', input_audio: { data: '', format: 'wav' } }])] }, /"input_audio" is not supported/);
  });

  it('keeps cache_control on parts (Anthropic prompt caching through the OpenAI format)', () => {
    const out = translate({ messages: [{ role: 'system', content: [{ type: 'text', text: 'long doc', cache_control: { type: 'ephemeral' } }] }, user('q')] });
    assert.deepEqual(out.system, [{ type: 'text', text: 'long doc', cache_control: { type: 'ephemeral' } }]);
  });
});

describe('anthropic request: tools', () => {
  const weather = { type: 'function', function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };

  it('translates tool definitions, with an empty object schema when parameters are missing', () => {
    const out = translate({ messages: [user('x')], tools: [weather, { type: 'function', function: { name: 'now' } }] });
    assert.deepEqual(out.tools, [
      { name: 'get_weather', description: 'Weather by city', input_schema: weather.function.parameters },
      { name: 'now', input_schema: { type: 'object', properties: {} } },
    ]);
    rejects({ messages: [user('x')], tools: [{ type: 'web_search' }] }, /tools\[0\] must be/);
  });

  it("leaves a function's strict out (Anthropic's strict tool use refuses much that OpenAI's takes), its schema as written", () => {
    const parameters = { type: 'object', properties: { days: { type: 'integer', minimum: 1 } }, required: ['days'], additionalProperties: false };
    const out = translate({ messages: [user('x')], tools: [{ type: 'function', function: { name: 'forecast', parameters, strict: true } }] });
    assert.deepEqual(out.tools, [{ name: 'forecast', input_schema: parameters }]);
  });

  it('maps tool_choice auto/required/none/named and parallel_tool_calls: false', () => {
    const choice = (tool_choice: unknown, extra: Record<string, unknown> = {}) => translate({ messages: [user('x')], tools: [weather], tool_choice, ...extra }).tool_choice;
    assert.deepEqual(choice('auto'), { type: 'auto' });
    assert.deepEqual(choice('required'), { type: 'any' });
    assert.deepEqual(choice('none'), { type: 'none' });
    assert.deepEqual(choice({ type: 'function', function: { name: 'get_weather' } }), { type: 'tool', name: 'get_weather' });
    assert.deepEqual(choice(undefined, { parallel_tool_calls: false }), { type: 'auto', disable_parallel_tool_use: true });
    assert.deepEqual(choice('required', { parallel_tool_calls: false }), { type: 'any', disable_parallel_tool_use: true });
    assert.equal(choice(undefined, { parallel_tool_calls: true }), undefined);
    assert.equal(translate({ messages: [user('x')], tool_choice: 'auto' }).tool_choice, undefined, 'no tool_choice without tools');
    rejects({ messages: [user('x')], tools: [weather], tool_choice: 'sometimes' }, /"tool_choice" must be/, 'tool_choice');
  });

  it('translates a full tool round trip with parallel calls: tool_use with object input, results merged into one user turn', () => {
    const out = translate({
      tools: [weather],
      messages: [
        user('Weather in Paris and Rome?'),
        {
          role: 'assistant',
          content: 'Let me check.',
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '21C' },
        { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '25C' }] },
        user('Thanks, which is warmer?'),
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Let me check.' },
          { type: 'tool_use', id: 'call__1', name: 'get_weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'call__2', name: 'get_weather', input: { city: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call__1', content: '21C' },
          { type: 'tool_result', tool_use_id: 'call__2', content: [{ type: 'text', text: '25C' }] },
          { type: 'text', text: 'Thanks, which is warmer?' },
        ],
      },
    ]);
  });

  it('an assistant turn with only tool calls gets no empty text block; empty arguments become {}', () => {
    const out = translate({
      messages: [user('time?'), { role: 'assistant', content: null, tool_calls: [{ id: 'call_t', type: 'function', function: { name: 'now', arguments: '' } }] }, { role: 'tool', tool_call_id: 'call_t', content: '12:00' }],
    });
    assert.deepEqual(out.messages[1], { role: 'assistant', content: [{ type: 'tool_use', id: 'call__t', name: 'now', input: {} }] });
  });

  it('refuses tool arguments that are not a JSON object, naming the message', () => {
    const call = (args: string) => ({ messages: [user('x'), { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: args } }] }] });
    rejects(call('{"city": "Par'), /messages\[1\]\.tool_calls\[0\]\.function\.arguments is not valid JSON/, 'messages[1].tool_calls[0].function.arguments');
    rejects(call('[1,2]'), /must encode a JSON object/);
    rejects({ messages: [user('x'), { role: 'tool', content: 'r' }] }, /needs "tool_call_id"/);
  });

  it('makes tool ids fit Anthropic\'s pattern, the same way on both sides', () => {
    const out = translate({
      messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'functions.get:0', type: 'function', function: { name: 'get', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'functions.get:0', content: 'ok' }],
    });
    const use = (out.messages[1]?.content as Array<{ id?: string }>)[0];
    const result = out.messages[2]?.content as Array<{ tool_use_id?: string }>;
    assert.equal(use?.id, 'functions_2e_get_3a_0');
    assert.equal(result[0]?.tool_use_id, 'functions_2e_get_3a_0');
    // One-to-one: ids that differ stay different.
    const ids = ['a.b', 'a_b', 'a_2e_b', 'a__b', 'call_1', 'toolu_01A'].map(toolId);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((id) => /^[a-zA-Z0-9_-]+$/.test(id)));
  });

  it('puts tool results first in their user turn, whatever order the client used', () => {
    const out = translate({
      messages: [
        user('go'),
        { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        user('also this'),
        { role: 'tool', tool_call_id: 'c1', content: 'done' },
      ],
    });
    assert.deepEqual(out.messages[2]?.content, [
      { type: 'tool_result', tool_use_id: 'c1', content: 'done' },
      { type: 'text', text: 'also this' },
    ]);
  });
});

describe('anthropic request: parameters', () => {
  it('stop as a string or an array → stop_sequences; a whitespace-only one is refused, not silently dropped', () => {
    assert.deepEqual(translate({ messages: [user('x')], stop: 'END' }).stop_sequences, ['END']);
    assert.deepEqual(translate({ messages: [user('x')], stop: ['a', 'b\n'] }).stop_sequences, ['a', 'b\n']);
    assert.equal(translate({ messages: [user('x')], stop: [] }).stop_sequences, undefined);
    rejects({ messages: [user('x')], stop: ['a', '\n'] }, /"stop\[1\]" is only whitespace/, 'stop');
    rejects({ messages: [user('x')], stop: 5 }, /"stop" must be/, 'stop');
  });

  it('clamps temperature above 1 to 1 and keeps the rest', () => {
    assert.equal(translate({ messages: [user('x')], temperature: 1.5 }).temperature, 1);
    assert.equal(translate({ messages: [user('x')], temperature: 0.3 }).temperature, 0.3);
    assert.equal(translate({ messages: [user('x')], temperature: 0 }).temperature, 0);
  });

  it('does not send top_p at its no-op value 1 (newer models refuse temperature with top_p)', () => {
    const out = translate({ messages: [user('x')], temperature: 0.7, top_p: 1 });
    assert.equal(out.top_p, undefined);
    assert.equal(out.temperature, 0.7);
  });

  it('leaves room for the thinking budget when the client set no max_tokens', () => {
    assert.equal(translate({ messages: [user('x')], thinking: { type: 'enabled', budget_tokens: 8000 } }).max_tokens, 8000 + 4096);
    // A budget under the default still leaves the answer the default's room (4,000 of 4,096 left it 96).
    assert.equal(translate({ messages: [user('x')], thinking: { type: 'enabled', budget_tokens: 4000 } }).max_tokens, 4000 + 4096);
    assert.equal(translate({ messages: [user('x')], thinking: { type: 'enabled', budget_tokens: 2000 } }).max_tokens, 2000 + 4096);
    assert.equal(translate({ messages: [user('x')], max_tokens: 9000, thinking: { type: 'enabled', budget_tokens: 8000 } }).max_tokens, 9000);
  });

  it('maps top_p, stream, user → metadata.user_id, and passes thinking and top_k through', () => {
    const thinking = { type: 'enabled', budget_tokens: 2048 };
    const out = translate({ messages: [user('x')], top_p: 0.9, top_k: 40, stream: true, stream_options: { include_usage: true }, user: 'user-42', thinking });
    assert.equal(out.top_p, 0.9);
    assert.equal(out.top_k, 40);
    assert.equal(out.stream, true);
    assert.deepEqual(out.metadata, { user_id: 'user-42' });
    assert.deepEqual(out.thinking, thinking);
    assert.equal((out as unknown as Record<string, unknown>).stream_options, undefined);
  });

  it('sends an email address, a phone number or an id over 256 characters as user_id only as its digest (Anthropic takes no personal data there)', () => {
    const userId = (id: string): unknown => translate({ messages: [user('x')], user: id }).metadata?.user_id;
    for (const id of ['jane.doe@example.com', '+1 (555) 010-9999', 'u'.repeat(257)]) {
      assert.match(String(userId(id)), /^sha256:[0-9a-f]{32}$/, id);
      assert.equal(userId(id), userId(id), 'the same user, the same id');
    }
    assert.notEqual(userId('a@example.com'), userId('b@example.com'));
    for (const id of ['user-42', 'u'.repeat(256), '550e8400-e29b-41d4-a716-446655440000', '12345']) assert.equal(userId(id), id);
  });

  it('response_format json_schema → output_config.format (the schema alone); json_object → 400 saying what works', () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    const out = translate({ messages: [user('x')], response_format: { type: 'json_schema', json_schema: { name: 'place', description: 'A place', schema, strict: true } } });
    assert.deepEqual(out.output_config, { format: { type: 'json_schema', schema } });
    assert.equal(translate({ messages: [user('x')], response_format: { type: 'text' } }).output_config, undefined);
    rejects({ messages: [user('x')], response_format: { type: 'json_object' } }, /Parameter "response_format" is not supported with an anthropic key: Anthropic has structured output only with a schema/, 'response_format');
    rejects({ messages: [user('x')], response_format: { type: 'json_schema', json_schema: { name: 'place' } } }, /needs "json_schema.schema"/, 'response_format');
  });

  it("response_format's schema as Anthropic takes it: keywords it refuses moved into descriptions, objects closed where whole", () => {
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      description: 'A person',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 50 },
        age: { type: 'integer', minimum: 0 },
        email: { type: 'string', format: 'email' },
        site: { type: 'string', format: 'hostname-idn' },
        tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' }, minItems: 2 },
        maybe: { type: 'array', items: { type: 'number' }, minItems: 1 },
        color: { type: 'string', enum: ['red', 'green'] },
        exact: { const: 3, type: 'number' },
        either: { oneOf: [{ type: 'object', properties: { x: { type: 'number', multipleOf: 0.5 } }, required: ['x'] }, { type: 'null' }] },
        thing: { $ref: '#/$defs/Thing', description: 'a thing', default: 1 },
      },
      required: ['name'],
      additionalProperties: true,
      $defs: { Thing: { type: 'object', properties: {} } },
    };
    const out = translate({ messages: [user('x')], response_format: { type: 'json_schema', json_schema: { name: 'person', schema } } });
    assert.deepEqual((out.output_config as { format?: { schema: unknown } } | undefined)?.format?.schema, {
      type: 'object',
      description: 'A person',
      properties: {
        name: { type: 'string', description: '{minLength: 1, maxLength: 50}' },
        age: { type: 'integer', description: '{minimum: 0}' },
        email: { type: 'string', format: 'email' },
        site: { type: 'string', description: '{format: "hostname-idn"}' },
        tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' }, description: '{minItems: 2}' },
        maybe: { type: 'array', items: { type: 'number' }, minItems: 1 },
        color: { enum: ['red', 'green'] },
        exact: { const: 3 },
        either: { anyOf: [{ type: 'object', properties: { x: { type: 'number', description: '{multipleOf: 0.5}' } }, required: ['x'], additionalProperties: false }, { type: 'null' }] },
        thing: { $ref: '#/$defs/Thing', description: 'a thing\n\n{default: 1}' },
      },
      required: ['name'],
      additionalProperties: true,
      $defs: { Thing: { type: 'object', properties: {}, additionalProperties: false } },
    }, 'an object the client left open stays open, for Anthropic to refuse in its words');
    assert.deepEqual(schema.properties.name, { type: 'string', minLength: 1, maxLength: 50 }, "the client's schema is not changed");
    const shape = (given: unknown): unknown => {
      const translated = translate({ messages: [user('x')], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: given } } });
      return (translated.output_config as { format?: { schema: unknown } } | undefined)?.format?.schema;
    };
    // Draft 7's definitions (zod's and zod-to-json-schema's), a root reference to them included.
    assert.deepEqual(shape({ $ref: '#/definitions/hello', definitions: { hello: { type: 'object', properties: { n: { type: 'integer', minimum: 1 } } } } }), {
      definitions: { hello: { type: 'object', properties: { n: { type: 'integer', description: '{minimum: 1}' } }, additionalProperties: false } },
      $ref: '#/definitions/hello',
    });
    // Nullable by a list of types (OpenAI's documented style), an object known by its properties.
    assert.deepEqual(shape({ type: ['object', 'null'], properties: { tags: { type: ['array', 'null'], items: { type: 'string', format: 'email' }, minItems: 1 } }, additionalProperties: false }), {
      type: ['object', 'null'],
      properties: { tags: { type: ['array', 'null'], items: { type: 'string', format: 'email' }, minItems: 1 } },
      additionalProperties: false,
    });
    assert.deepEqual(shape({ properties: { a: { type: 'string' } } }), { properties: { a: { type: 'string' } }, additionalProperties: false });
    // A map (zod's record) is the client's to have refused, not silently made an empty object.
    assert.deepEqual(shape({ type: 'object', additionalProperties: { type: 'number' } }), { type: 'object', additionalProperties: { type: 'number' }, properties: {} });
    assert.deepEqual(shape({ $ref: '#/$defs/A', title: 'x', $defs: { A: { type: 'string' } } }), { $defs: { A: { type: 'string' } }, $ref: '#/$defs/A', description: '{title: "x"}' });
    // An intersection (zod's .and()): its members are not closed one by one, which no object could meet.
    const a = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] };
    const b = { type: 'object', properties: { b: { type: 'number', minimum: 0 } }, required: ['b'] };
    assert.deepEqual(shape({ allOf: [a, b] }), { allOf: [a, { ...b, properties: { b: { type: 'number', description: '{minimum: 0}' } } }] });
  });

  it('reasoning_effort → adaptive thinking with output_config.effort on Claude 4.6 and later', () => {
    const out = translate({ model: 'claude-opus-4-6', messages: [user('x')], reasoning_effort: 'medium' });
    assert.deepEqual([out.thinking, out.output_config, out.max_tokens], [{ type: 'adaptive', display: 'summarized' }, { effort: 'medium' }, 4096 + 2048]);
    assert.deepEqual(translate({ model: 'claude-sonnet-5', messages: [user('x')], reasoning_effort: 'minimal', max_tokens: 1000 }).output_config, { effort: 'low' });
    assert.deepEqual(translate({ model: 'claude-opus-4-7', messages: [user('x')], reasoning_effort: 'xhigh' }).output_config, { effort: 'high' });
    const both = translate({ model: 'claude-opus-4-6', messages: [user('x')], reasoning_effort: 'low', response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'object' } } } });
    assert.deepEqual(both.output_config, { effort: 'low', format: { type: 'json_schema', schema: { type: 'object', properties: {}, additionalProperties: false } } });
  });

  it('reasoning_effort → a thinking budget on Claude 3.7 to 4.5, at most half the client\'s limit; nothing on older models or for none', () => {
    const dated = translate({ model: 'claude-sonnet-4-5-20250929', messages: [user('x')], reasoning_effort: 'high' });
    assert.deepEqual([dated.thinking, dated.max_tokens, dated.output_config], [{ type: 'enabled', budget_tokens: 4096 }, 4096 + 4096, undefined]);
    assert.deepEqual(translate({ model: 'claude-opus-4-20250514', messages: [user('x')], reasoning_effort: 'low' }).thinking, { type: 'enabled', budget_tokens: 1024 });
    const limited = translate({ model: 'claude-3-7-sonnet-latest', messages: [user('x')], reasoning_effort: 'high', max_completion_tokens: 5000 });
    assert.deepEqual([limited.thinking, limited.max_tokens], [{ type: 'enabled', budget_tokens: 2500 }, 5000]);
    const small = translate({ model: 'claude-haiku-4-5', messages: [user('x')], reasoning_effort: 'high', max_tokens: 2000 });
    assert.deepEqual([small.thinking, small.max_tokens], [undefined, 2000]);
    assert.deepEqual(translate({ model: 'deepseek-v4-pro', messages: [user('x')], reasoning_effort: 'medium' }).thinking, { type: 'enabled', budget_tokens: 2048 });
    for (const [model, effort] of [['claude-3-5-haiku-latest', 'high'], ['claude-opus-4-6', 'none']]) {
      const out = translate({ model, messages: [user('x')], reasoning_effort: effort });
      assert.deepEqual([out.thinking, out.output_config, out.max_tokens], [undefined, undefined, 4096], `${model} ${effort}`);
    }
    rejects({ messages: [user('x')], reasoning_effort: 'extreme' }, /"reasoning_effort" must be one of/, 'reasoning_effort');
  });

  it('reasoning_effort leaves out thinking where the last assistant turn called tools (its thinking block cannot be sent back), not the effort', () => {
    const call = { id: 'c1', type: 'function', function: { name: 'weather', arguments: '{}' } };
    const loop = [user('weather?'), { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'c1', content: 'sunny' }];
    for (const [model, config] of [['claude-opus-4-6', { effort: 'high' }], ['claude-sonnet-4-5', undefined]] as const) {
      const out = translate({ model, messages: loop, reasoning_effort: 'high' });
      assert.deepEqual([out.thinking, out.output_config, out.max_tokens], [undefined, config, 4096], model);
    }
    const after = translate({ model: 'claude-opus-4-6', messages: [...loop, { role: 'assistant', content: 'It is sunny.' }, user('thanks')], reasoning_effort: 'high' });
    assert.deepEqual(after.thinking, { type: 'adaptive', display: 'summarized' }, 'a new question after the answer thinks again');
  });

  it('reasoning_effort leaves out thinking where tool_choice forces a tool (Anthropic refuses both), not the effort', () => {
    const tools = [{ type: 'function', function: { name: 'answer', parameters: { type: 'object' } } }];
    for (const tool_choice of ['required', { type: 'function', function: { name: 'answer' } }]) {
      for (const [model, config] of [['claude-opus-4-6', { effort: 'high' }], ['claude-sonnet-4-5', undefined]] as const) {
        const out = translate({ model, messages: [user('x')], tools, tool_choice, reasoning_effort: 'high', max_completion_tokens: 16000 });
        assert.deepEqual([out.thinking, out.output_config, out.tool_choice?.type], [undefined, config, tool_choice === 'required' ? 'any' : 'tool'], `${model} ${JSON.stringify(tool_choice)}`);
      }
    }
    const auto = translate({ model: 'claude-sonnet-4-5', messages: [user('x')], tools, tool_choice: 'auto', reasoning_effort: 'high', max_completion_tokens: 16000 });
    assert.deepEqual(auto.thinking, { type: 'enabled', budget_tokens: 4096 }, 'auto still thinks');
    const none = translate({ model: 'claude-sonnet-4-5', messages: [user('x')], tool_choice: 'required', reasoning_effort: 'high', max_completion_tokens: 16000 });
    assert.deepEqual(none.thinking, { type: 'enabled', budget_tokens: 4096 }, 'no tools: nothing is forced');
  });

  it("a client's own thinking wins over reasoning_effort, which still steers adaptive thinking", () => {
    const enabled = translate({ messages: [user('x')], thinking: { type: 'enabled', budget_tokens: 2048 }, reasoning_effort: 'high' });
    assert.deepEqual([enabled.thinking, enabled.output_config], [{ type: 'enabled', budget_tokens: 2048 }, undefined]);
    const adaptive = translate({ model: 'claude-opus-4-6', messages: [user('x')], thinking: { type: 'adaptive' }, reasoning_effort: 'low' });
    assert.deepEqual([adaptive.thinking, adaptive.output_config], [{ type: 'adaptive' }, { effort: 'low' }]);
  });

  it('n > 1 → 400; n = 1 is fine', () => {
    rejects({ messages: [user('x')], n: 2 }, /"n" must be 1/, 'n');
    assert.doesNotThrow(() => translate({ messages: [user('x')], n: 1 }));
  });

  it('drops and refuses parameters exactly as the table says', () => {
    for (const [param, rule] of Object.entries(PARAMETERS)) {
      if (rule.action !== 'drop') continue;
      const out = translate({ messages: [user('x')], [param]: 'anything' }) as unknown as Record<string, unknown>;
      assert.equal(out[param], undefined, `${param} is dropped`);
    }
    for (const [param, value] of Object.entries({ logprobs: true, top_logprobs: 3, logit_bias: { 50256: -100 }, audio: {}, modalities: ['text', 'audio'], prediction: {}, functions: [], function_call: 'auto', web_search_options: {} })) {
      assert.equal(PARAMETERS[param]?.action, 'refuse', param);
      rejects({ messages: [user('x')], [param]: value }, new RegExp(`Parameter "${param}" is not supported with an anthropic key`), param);
    }
    // Harmless values of refused parameters pass.
    assert.doesNotThrow(() => translate({ messages: [user('x')], logprobs: false, response_format: { type: 'text' }, modalities: ['text'], seed: null, stop: null }));
    const unbiased = translate({ messages: [user('x')], logit_bias: {} }) as unknown as Record<string, unknown>;
    assert.equal(unbiased.logit_bias, undefined, 'an empty logit_bias biases nothing: accepted, not sent');
    rejects({ messages: [user('x')], temprature: 0.2 }, /Parameter "temprature" is not supported/, 'temprature');
  });

  it("refuses names of Object.prototype's members like any unknown parameter (the table has own entries only)", () => {
    for (const param of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', '__proto__', '__defineGetter__']) {
      // JSON.parse makes "__proto__" an own property, as a client's body does.
      const request = JSON.parse(`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"x"}],${JSON.stringify(param)}:1}`) as ChatRequest;
      assert.throws(
        () => toAnthropicRequest(request, { defaultMaxTokens: 4096 }),
        (err: unknown) => err instanceof GatewayError && err.status === 400 && err.code === 'unsupported_parameter' && err.param === param,
        param,
      );
    }
  });
});

describe('anthropic response', () => {
  const message = (content: unknown[], stop_reason: string, usage: Record<string, number> = { input_tokens: 10, output_tokens: 5 }): AnthropicResponse =>
    ({
      id: 'msg_01',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5-20250929',
      content,
      stop_reason,
      stop_sequence: null,
      usage,
    }) as AnthropicResponse;

  it('text → chat.completion with id, created, model, finish_reason and usage', () => {
    assert.deepEqual(toChatCompletion(message([{ type: 'text', text: 'Hello' }, { type: 'text', text: ' there' }], 'end_turn'), 1730000000), {
      id: 'msg_01',
      object: 'chat.completion',
      created: 1730000000,
      model: 'claude-sonnet-4-5-20250929',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, prompt_tokens_details: { cached_tokens: 0 }, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
  });

  it('tool_use → tool_calls with JSON-string arguments; content null when there is only tool use', () => {
    const completion = toChatCompletion(message([{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }], 'tool_use'), 1);
    const choice = completion.choices[0];
    assert.equal(choice?.message.content, null);
    assert.deepEqual(choice?.message.tool_calls, [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
    assert.equal(choice?.finish_reason, 'tool_calls');
    const mixed = toChatCompletion(message([{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: 't', name: 'f', input: {} }], 'tool_use'), 1);
    assert.equal(mixed.choices[0]?.message.content, 'Let me check.');
  });

  it('thinking blocks → reasoning_content; redacted thinking is left out', () => {
    const completion = toChatCompletion(message([{ type: 'thinking', thinking: 'Let me think.', signature: 'sig' }, { type: 'redacted_thinking', data: 'xx' }, { type: 'text', text: '42' }], 'end_turn'), 1);
    assert.deepEqual(completion.choices[0]?.message, { role: 'assistant', content: '42', refusal: null, annotations: [], reasoning_content: 'Let me think.' });
  });

  it('maps every stop_reason deliberately', () => {
    assert.deepEqual(FINISH_REASONS, {
      end_turn: 'stop',
      stop_sequence: 'stop',
      max_tokens: 'length',
      model_context_window_exceeded: 'length',
      tool_use: 'tool_calls',
      refusal: 'content_filter',
      pause_turn: 'stop',
      pause_run: 'stop',
      compaction: 'stop',
    });
    for (const [reason, expected] of Object.entries(FINISH_REASONS)) assert.equal(toChatCompletion(message([{ type: 'text', text: 'x' }], reason), 1).choices[0]?.finish_reason, expected);
    assert.equal(finishReason('something_new'), 'stop');
    assert.equal(finishReason(null), null);
    // A provider's value never finds Object.prototype's members.
    for (const reason of ['constructor', 'toString', '__proto__']) assert.equal(finishReason(reason), 'stop', reason);
  });

  it('usage: prompt_tokens includes cache creation and cache reads; cached_tokens = cache reads', () => {
    assert.deepEqual(toChatUsage({ input_tokens: 100, cache_creation_input_tokens: 2000, cache_read_input_tokens: 300, output_tokens: 50 }), {
      prompt_tokens: 2400,
      completion_tokens: 50,
      total_tokens: 2450,
      prompt_tokens_details: { cached_tokens: 300 },
      cache_creation_input_tokens: 2000,
      cache_read_input_tokens: 300,
    });
    assert.equal(toChatUsage({ input_tokens: 5, cache_creation_input_tokens: null, output_tokens: 1 }).prompt_tokens, 5);
    // What no provider can mean: counted as the budgets count it (a negative as 0, past a trillion as a trillion).
    const odd = toChatUsage({ input_tokens: -2_000_000, output_tokens: 1e300, cache_read_input_tokens: 2.5 } as unknown as Parameters<typeof toChatUsage>[0]);
    assert.deepEqual([odd.prompt_tokens, odd.completion_tokens, odd.total_tokens], [2, 1e12, 1e12 + 2]);
  });

  it('an empty answer has empty-string content, and a body that is not a message is a 502', () => {
    assert.equal(toChatCompletion(message([], 'end_turn'), 1).choices[0]?.message.content, '');
    assert.throws(() => messagesTarget.parseResponse(Buffer.from('{"type":"error"}')), (err: unknown) => err instanceof GatewayError && err.status === 502);
    assert.throws(() => messagesTarget.parseResponse(Buffer.from('{"type":"error","content":[]}')), (err: unknown) => err instanceof GatewayError && err.status === 502);
    assert.throws(() => messagesTarget.parseResponse(Buffer.from('nope')), (err: unknown) => err instanceof GatewayError && err.status === 502);
  });

  it('errors: Anthropic\'s shape becomes OpenAI\'s with the same status; 401/403 are the gateway\'s key problem', () => {
    const body = (type: string, message: string) => Buffer.from(JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_1' }));
    const overloaded = upstreamError(529, body('overloaded_error', 'Overloaded'), { 'retry-after': '10' }, 'sk-ant-x');
    assert.equal(overloaded.status, 529);
    assert.deepEqual(overloaded.toBody(), { error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: null } });
    assert.equal(overloaded.headers?.['retry-after'], '10');
    // Seconds, an HTTP date, or milliseconds: passed on; anything else no client reads: dropped.
    const dated = upstreamError(429, body('rate_limit_error', 'slow down'), { 'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT', 'retry-after-ms': '1500.5' }, 'k');
    assert.deepEqual(dated.headers, { 'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT', 'retry-after-ms': '1500.5' });
    assert.deepEqual(upstreamError(429, body('rate_limit_error', 'slow down'), { 'retry-after': 'soon', 'retry-after-ms': '-1' }, 'k').headers, {});
    const invalid = upstreamError(400, body('invalid_request_error', 'max_tokens: Field required'), {}, 'k');
    assert.equal(invalid.status, 400);
    assert.equal(invalid.message, 'max_tokens: Field required');
    assert.equal(upstreamError(401, body('authentication_error', 'invalid x-api-key'), {}, 'k').code, 'provider_auth_failed');
  });
});

// A streamed answer as Anthropic sends it (docs/providers.md): a text block, then tool_use blocks, plus thinking.
const TRANSCRIPT = [
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_014p7","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":2}}}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants weather."}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}\n\n',
  'event: ping\ndata: {"type": "ping"}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me"}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" check – ☀️."}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1","name":"get_weather","input":{}}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02T2","name":"get_time","input":{}}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":3}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}\n\n',
  'event: message_stop\ndata: {"type":"message_stop"}\n\n',
].join('');

/** What a chat client gets of each translated item: the chunk, and the JSON it is sent as (null: not sent). */
type Output = { kind: 'chunk'; chunk: ChatCompletionChunk; data: string | null } | { kind: 'done' } | { kind: 'error'; error: GatewayError };

/** The provider's bytes → SSE events → Messages items → chat items → what a chat client sees. */
function run(chunks: Buffer[], clientWantsUsage: boolean): Output[] {
  const parser = new SseParser();
  const translate = messagesStreamToChat(1730000000);
  const output = chatStreamOutput({ model: 'm', messages: [], stream: true, ...(clientWantsUsage ? { stream_options: { include_usage: true } } : {}) });
  const outputs: Output[] = [];
  const toOutput = (item: StreamItem<ChatCompletionChunk>): Output => {
    if (item.kind === 'end') return { kind: 'done' };
    if (item.kind === 'error') return item;
    const frame = output.frame(item);
    return { kind: 'chunk', chunk: item.event, data: frame === '' ? null : frame.slice('data: '.length, -2) };
  };
  const take = (events: ReturnType<SseParser['push']>): void => {
    for (const event of events) for (const item of decodeMessagesEvent(event)) outputs.push(...translate(item).map(toOutput));
  };
  for (const chunk of chunks) take(parser.push(chunk));
  take(parser.end());
  return outputs;
}

describe('anthropic stream', () => {
  it('translates a full transcript into OpenAI chunks with one id, created and model', () => {
    const outputs = run([Buffer.from(TRANSCRIPT)], false);
    const sent = outputs.filter((out) => out.kind === 'chunk' && out.data !== null).map((out) => (out.kind === 'chunk' ? JSON.parse(out.data as string) : null));
    assert.ok(sent.every((chunk) => chunk.id === 'msg_014p7' && chunk.created === 1730000000 && chunk.model === 'claude-sonnet-4-5-20250929' && chunk.object === 'chat.completion.chunk'));
    assert.deepEqual(
      sent.map((chunk) => [chunk.choices[0].delta, chunk.choices[0].finish_reason]),
      [
        [{ role: 'assistant', content: '' }, null],
        [{ reasoning_content: 'The user wants weather.' }, null],
        [{ content: 'Let me' }, null],
        [{ content: ' check – ☀️.' }, null],
        [{ tool_calls: [{ index: 0, id: 'toolu_01T1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }, null],
        [{ tool_calls: [{ index: 0, function: { arguments: '' } }] }, null],
        [{ tool_calls: [{ index: 0, function: { arguments: '{"city": "Pa' } }] }, null],
        [{ tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] }, null],
        [{ tool_calls: [{ index: 1, id: 'toolu_02T2', type: 'function', function: { name: 'get_time', arguments: '' } }] }, null],
        [{ tool_calls: [{ index: 1, function: { arguments: '{}' } }] }, null],
        [{}, 'tool_calls'],
      ],
    );
    assert.deepEqual(outputs.at(-1), { kind: 'done' });
  });

  it('sends the usage chunk only to clients that asked, but always hands it to the log', () => {
    const hidden = run([Buffer.from(TRANSCRIPT)], false).at(-2);
    assert.ok(hidden?.kind === 'chunk' && hidden.data === null);
    assert.deepEqual((hidden.chunk as { usage: unknown }).usage, {
      prompt_tokens: 572,
      completion_tokens: 89,
      total_tokens: 661,
      prompt_tokens_details: { cached_tokens: 100 },
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 100,
    });
    const shown = run([Buffer.from(TRANSCRIPT)], true).at(-2);
    assert.ok(shown?.kind === 'chunk' && shown.data !== null);
    assert.deepEqual(JSON.parse(shown.data).choices, []);
  });

  it('assembles into the same answer a non-streamed call would give', () => {
    const assembler = new CompletionAssembler();
    for (const out of run([Buffer.from(TRANSCRIPT)], false)) if (out.kind === 'chunk') assembler.add(out.chunk);
    const completion = assembler.result();
    assert.equal(completion.choices[0]?.message.content, 'Let me check – ☀️.');
    assert.equal(completion.choices[0]?.message.reasoning_content, 'The user wants weather.');
    assert.deepEqual(completion.choices[0]?.message.tool_calls?.map((call) => JSON.parse(call.function.arguments)), [{ city: 'Paris' }, {}]);
    assert.equal(completion.choices[0]?.finish_reason, 'tool_calls');
    assert.equal(completion.usage?.total_tokens, 661);
  });

  it('yields the same chunks when the stream is re-split at every byte boundary', () => {
    const expected = JSON.stringify(run([Buffer.from(TRANSCRIPT)], true));
    const bytes = Buffer.from(TRANSCRIPT);
    for (let cut = 1; cut < bytes.length; cut++) {
      assert.equal(JSON.stringify(run([bytes.subarray(0, cut), bytes.subarray(cut)], true)), expected, `split at byte ${cut}`);
    }
    assert.equal(JSON.stringify(run([...bytes].map((byte) => Buffer.from([byte])), true)), expected, 'one byte at a time');
  });

  it('maps a mid-stream error event to an error output with the matching status', () => {
    const translator = { event: decodeMessagesEvent };
    const [out] = translator.event({ event: 'error', data: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' });
    assert.ok(out?.kind === 'error');
    assert.equal(out.error.status, 529);
    assert.deepEqual(out.error.toBody(), { error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: 'overloaded_error' } });
    const [junk] = translator.event({ event: undefined, data: 'not json' });
    assert.ok(junk?.kind === 'error' && junk.error.code === 'upstream_invalid_response');
    // An error type named like an Object.prototype member is an unknown type: 502, not a function as a status.
    const [odd] = translator.event({ event: 'error', data: '{"type":"error","error":{"type":"constructor","message":"?"}}' });
    assert.ok(odd?.kind === 'error');
    assert.equal(odd.error.status, 502);
    // Named an error, it is one, whatever its data says: Anthropic's SDK goes by the name.
    const [named] = translator.event({ event: 'error', data: '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}' });
    assert.ok(named?.kind === 'error');
    assert.equal(named.error.status, 500, "an api_error, as Anthropic's SDK would take it");
    assert.match('event: error\ndata: {"type":"content_block_delta"}\n\n', MESSAGES_NOTABLE, 'seen by a pass-through, not forwarded as bytes');
    // OpenAI's error shapes, from a server or proxy in front of the provider: errors too, seen by a pass-through.
    // At the status they name, as on a chat stream: OpenAI's rate limit, vLLM's numeric code, a bare status.
    for (const [data, status] of [['{"error":{"message":"busy","type":"requests","code":"rate_limit_exceeded"}}', 429], ['{"object":"error","message":"busy","type":"BadRequestError","param":null,"code":400}', 400], ['{"error":{"message":"busy","code":503}}', 503]] as const) {
      assert.match(`data: ${data}\n\n`, MESSAGES_NOTABLE, data);
      const [item] = translator.event({ event: undefined, data });
      assert.ok(item?.kind === 'error', data);
      assert.deepEqual([item.error.status, item.error.message], [status, 'busy']);
    }
    // Named an error too: the same statuses.
    for (const [data, status] of [['{"error":{"message":"busy","type":"requests","code":"rate_limit_exceeded"}}', 429], ['{"object":"error","message":"busy","type":"BadRequestError","param":null,"code":400}', 400]] as const) {
      const [item] = translator.event({ event: 'error', data });
      assert.ok(item?.kind === 'error', data);
      assert.deepEqual([item.error.status, item.error.message], [status, 'busy']);
    }
    const delta = JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: '{"error":{"object":"error"}}' } });
    assert.doesNotMatch(`data: ${delta}\n\n`, MESSAGES_NOTABLE, 'text that reads like one is escaped');
  });

  /** What a chat client is sent for these Messages events' data (one event each). */
  const chunksFor = (events: readonly object[]): Array<[unknown, unknown]> => {
    const translate = messagesStreamToChat(1);
    const items = events.flatMap((event) => decodeMessagesEvent({ event: undefined, data: JSON.stringify(event) }).flatMap(translate));
    return items.map((item) => (item.kind === 'event' ? [item.event.choices[0]?.delta ?? 'usage', item.event.choices[0]?.finish_reason ?? null] : [item.kind, null]));
  };
  const START = { type: 'message_start', message: { id: 'msg_1', model: 'claude', usage: { input_tokens: 5, output_tokens: 1 } } };

  it('sends one finish reason however many message_delta events come, the first stop reason (Anthropic sends "one or more")', () => {
    assert.deepEqual(chunksFor([START, { type: 'message_delta', delta: { stop_reason: null }, usage: { output_tokens: 3 } }, { type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } }, { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 9 } }, { type: 'message_stop' }]), [
      [{ role: 'assistant', content: '' }, null],
      [{}, 'tool_calls'],
      ['usage', null],
      ['end', null],
    ]);
  });

  it('finishes a stream that stops without a message_delta', () => {
    assert.deepEqual(chunksFor([START, { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } }, { type: 'content_block_stop', index: 0 }, { type: 'message_stop' }]), [
      [{ role: 'assistant', content: '' }, null],
      [{ content: 'Hi' }, null],
      [{}, 'stop'],
      ['usage', null],
      ['end', null],
    ]);
  });

  it("keeps a tool's input and a thinking block's text sent whole in content_block_start", () => {
    assert.deepEqual(chunksFor([START, { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: 'Pre-thought', signature: '' } }, { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: ' more' } }, { type: 'content_block_stop', index: 0 }, { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } } }, { type: 'content_block_stop', index: 1 }]), [
      [{ role: 'assistant', content: '' }, null],
      [{ reasoning_content: 'Pre-thought' }, null],
      [{ reasoning_content: ' more' }, null],
      [{ tool_calls: [{ index: 0, id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }, null],
      [{ tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] }, null],
    ]);
    // Sent whole at the start and again as deltas: the deltas, once.
    const both = chunksFor([START, { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_2', name: 'f', input: { a: 1 } } }, { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"a": 1}' } }, { type: 'content_block_stop', index: 0 }]);
    assert.deepEqual(both.slice(1).map(([delta]) => (delta as { tool_calls: Array<{ function: { arguments: string } }> }).tool_calls[0]?.function.arguments).join(''), '{"a": 1}');
  });

  it('ignores ping and unknown events', () => {
    const translate = messagesStreamToChat(1);
    const events = (data: string) => decodeMessagesEvent({ event: undefined, data }).flatMap(translate);
    assert.deepEqual(events('{"type":"ping"}'), []);
    assert.deepEqual(events('{"type":"content_block_future","x":1}'), []);
  });
});

describe('anthropic provider', () => {
  it('sends x-api-key and anthropic-version, never a Bearer header, and the translated body', () => {
    assert.deepEqual(messagesTarget.authHeaders('sk-ant-1'), { 'x-api-key': 'sk-ant-1', 'anthropic-version': '2023-06-01' });
    const translation = chatToMessages({ defaultMaxTokens: 4096, now: () => 1 });
    const body = messagesTarget.body(translation.exchange({ model: 'm', messages: [{ role: 'user', content: 'x' }] }).request, null);
    assert.deepEqual(JSON.parse(String(body)), { model: 'm', max_tokens: 4096, messages: [{ role: 'user', content: 'x' }] });
  });

  it('speaks the Messages API only, at /v1/messages', () => {
    assert.deepEqual(anthropic.apis, ['messages']);
    assert.equal(messagesTarget.path, '/v1/messages');
  });
});

describe('anthropic: what a hostile client or provider sends', () => {
  it('refuses a content part type that is not a string with a 400, whatever its toString holds', () => {
    rejects({ messages: [user([{ type: { toString: 1 } }])] }, /content part type "an object"/);
  });

  it('joins 200,000 parts into the turn before them (spread into one call, they overflowed the stack)', () => {
    const parts = Array.from({ length: 200_000 }, (_, i) => ({ type: 'text', text: `p${i}` }));
    const anthropic = translate({ messages: [user('first'), user(parts)] });
    assert.equal(anthropic.messages.length, 1);
    const blocks = anthropic.messages[0]?.content as Array<{ text: string }>;
    assert.equal(blocks.length, 200_001);
    assert.equal(blocks[200_000]?.text, 'p199999');
  });

  const answer = (content: unknown[], stopReason: unknown): AnthropicResponse =>
    ({ id: 'msg_01', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content, stop_reason: stopReason, stop_sequence: null, usage: { input_tokens: 1, output_tokens: 1 } }) as AnthropicResponse;
  const unreadable = (err: unknown): boolean => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response';

  it('answers 502 for a tool_use block whose id or name is not a string, in an answer and in a stream; an odd stop_reason is a stop', () => {
    for (const odd of [{ toString: 1 }, 7, null]) {
      assert.throws(() => toChatCompletion(answer([{ type: 'tool_use', id: odd, name: 'f', input: {} }], 'tool_use'), 1), unreadable);
      assert.throws(() => toChatCompletion(answer([{ type: 'tool_use', id: 'toolu_1', name: odd, input: {} }], 'tool_use'), 1), unreadable);
      const items = messagesStreamToChat(1)({ kind: 'event', event: { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: odd, name: 'f', input: {} } } as MessagesEvent });
      assert.equal(items.length, 1);
      assert.ok(items[0]?.kind === 'error' && unreadable(items[0].error));
    }
    assert.equal(finishReason({ toString: 1 }), 'stop');
    assert.equal(toChatCompletion(answer([{ type: 'text', text: 'x' }], { toString: 1 }), 1).choices[0]?.finish_reason, 'stop');
  });
});
