/**
 * The Messages client API's pure parts: reading a client's request, translating it to chat and
 * the chat answers and streams back, the error shape, the count estimate, the model list.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import { decodeChatEvent } from '../src/formats/chat/stream.js';
import type { ChatCompletion, ChatRequest } from '../src/formats/chat/types.js';
import { MessageAssembler } from '../src/formats/messages/assemble.js';
import { estimateInputTokens } from '../src/formats/messages/count.js';
import { messagesErrorBody } from '../src/formats/messages/errors.js';
import { messagesClient } from '../src/formats/messages/index.js';
import { toAnthropicModelList } from '../src/formats/messages/models.js';
import { messagesStreamOutput } from '../src/formats/messages/output.js';
import { MESSAGES_PARAMETERS, toChatRequest } from '../src/formats/messages/request-to-chat.js';
import { STOP_REASONS, toMessage } from '../src/formats/messages/response-from-chat.js';
import { chatStreamToMessages } from '../src/formats/messages/stream-from-chat.js';
import type { AnthropicRequest, MessagesEvent } from '../src/formats/messages/types.js';
import type { StreamItem } from '../src/formats/stream.js';
import { SseParser } from '../src/upstream/sse.js';

const translate = (request: Record<string, unknown>): ChatRequest =>
  toChatRequest({ model: 'gpt-4o-mini', max_tokens: 1024, messages: [{ role: 'user', content: 'hi' }], ...request } as AnthropicRequest);

function refused(request: Record<string, unknown>, message: RegExp, param?: string): void {
  assert.throws(
    () => translate(request),
    (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.status, 400);
      assert.match(err.message, message);
      if (param !== undefined) assert.equal(err.param, param);
      assert.equal(messagesErrorBody(err).error.type, 'invalid_request_error');
      return true;
    },
  );
}

describe('messages request → chat: messages', () => {
  it('system (a string or text blocks, cache_control removed) becomes the first system message', () => {
    assert.deepEqual(translate({ system: 'Be brief.' }).messages, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }]);
    const blocks = translate({
      system: [
        { type: 'text', text: 'You are Claude Code.' },
        { type: 'text', text: 'Follow the rules.', cache_control: { type: 'ephemeral' } },
      ],
    });
    assert.deepEqual(blocks.messages[0], { role: 'system', content: 'You are Claude Code.\n\nFollow the rules.' });
    assert.ok(!JSON.stringify(blocks).includes('cache_control'));
  });

  it('consecutive messages of one role are one turn, as Anthropic takes them: a turn\'s calls stay before the results that answer them', () => {
    const call = (id: string, cmd: string) => ({ type: 'tool_use', id, name: 'Bash', input: { cmd } });
    const result = (id: string, content: string) => ({ type: 'tool_result', tool_use_id: id, content });
    const out = translate({
      messages: [
        { role: 'user', content: 'list both dirs' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'Two dirs.', signature: 's1' }, { type: 'text', text: 'Listing.' }, call('toolu_A', 'ls a')] },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'The other.', signature: 's2' }, { type: 'text', text: 'And the other.' }, call('toolu_B', 'ls b')] },
        { role: 'user', content: [result('toolu_A', 'x'), { type: 'text', text: 'and then?' }] },
        { role: 'user', content: [result('toolu_B', 'y')] },
        { role: 'user', content: 'quick' },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'list both dirs' },
      {
        role: 'assistant',
        content: 'Listing.\n\nAnd the other.',
        reasoning_content: 'Two dirs.\n\nThe other.',
        tool_calls: [
          { id: 'toolu_A', type: 'function', function: { name: 'Bash', arguments: '{"cmd":"ls a"}' } },
          { id: 'toolu_B', type: 'function', function: { name: 'Bash', arguments: '{"cmd":"ls b"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_A', content: 'x' },
      { role: 'tool', tool_call_id: 'toolu_B', content: 'y' },
      { role: 'user', content: [{ type: 'text', text: 'and then?' }, { type: 'text', text: 'quick' }] },
    ]);
    // Errors still name the block as the client wrote it.
    refused({ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'text', text: 'b' }, { type: 'server_tool_use' }] }] }, /messages\.1\.content\.1: content block type "server_tool_use"/, 'messages.1.content.1');
  });

  it('role "system" messages inside messages stay where they are, as Claude Code sends one last', () => {
    const out = translate({
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b', cache_control: { type: 'ephemeral' } }] },
        { role: 'system', content: [{ type: 'text', text: 'Now be terse.', cache_control: { type: 'ephemeral' } }] },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      { role: 'system', content: 'Now be terse.' },
    ]);
  });

  it('text and image blocks (base64 and URL) become content parts; one text block travels as a string', () => {
    const out = translate({
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'only' }] },
        { role: 'assistant', content: 'ok' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is here?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
          ],
        },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'only' },
      { role: 'assistant', content: 'ok' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is here?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
        ],
      },
    ]);
  });

  it('a tool round trip: tool_use → tool_calls, tool_result (string, blocks, is_error) → tool messages in order, before the rest of the turn', () => {
    const out = translate({
      messages: [
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'Two calls.', signature: 'sig' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
            { type: 'tool_use', id: 'toolu_02', name: 'get_weather', input: { city: 'Rome' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Also, thanks.' },
            { type: 'tool_result', tool_use_id: 'toolu_01', content: '21C' },
            { type: 'tool_result', tool_use_id: 'toolu_02', content: [{ type: 'text', text: 'city' }, { type: 'text', text: 'not found' }], is_error: true },
          ],
        },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: 'Checking.',
        reasoning_content: 'Two calls.',
        tool_calls: [
          { id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'toolu_02', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_01', content: '21C' },
      { role: 'tool', tool_call_id: 'toolu_02', content: 'Error: city\nnot found' },
      { role: 'user', content: 'Also, thanks.' },
    ]);
  });

  it('an assistant turn of tool calls only has null content; images in a tool result follow in a user message', () => {
    const out = translate({
      messages: [
        { role: 'user', content: 'Screenshot?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_9', name: 'screenshot', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/' } }] }] },
      ],
    });
    assert.deepEqual(out.messages.slice(1), [
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_9', type: 'function', function: { name: 'screenshot', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'toolu_9', content: '' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/' } }] },
    ]);
  });

  it("Claude Code's tool search results (tool_reference blocks) read as lines naming the tools loaded", () => {
    const out = translate({
      messages: [
        { role: 'user', content: 'Find a weather tool' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_s', name: 'ToolSearch', input: { query: 'weather' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_s', content: [{ type: 'tool_reference', tool_name: 'get_weather' }, { type: 'tool_reference', tool_name: 'get_forecast' }] }] },
      ],
    });
    assert.deepEqual(out.messages[2], { role: 'tool', tool_call_id: 'toolu_s', content: 'Tool loaded: get_weather\nTool loaded: get_forecast' });
    refused({ messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'tool_reference' }] }] }] }, /^messages\.0\.content\.0\.content\.0\.tool_name: Field required$/);
  });

  it('thinking of earlier turns travels as reasoning_content (DeepSeek wants it back); redacted thinking is dropped, and a turn of nothing else goes', () => {
    const out = translate({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'opaque' }] },
        { role: 'user', content: 'b' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'Hm, ', signature: 's1' }, { type: 'redacted_thinking', data: 'x' }, { type: 'thinking', thinking: 'yes.', signature: 's2' }, { type: 'text', text: 'Yes.' }] },
        { role: 'user', content: 'c' },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
      { role: 'assistant', content: 'Yes.', reasoning_content: 'Hm, yes.' },
      { role: 'user', content: 'c' },
    ]);
  });

  it('refuses fields of the wrong type instead of dropping them', () => {
    refused({ temperature: 'hot' }, /^temperature: Input should be a valid number$/, 'temperature');
    refused({ top_p: [1] }, /^top_p: Input should be a valid number$/, 'top_p');
    refused({ stop_sequences: 'END' }, /^stop_sequences: Input should be a valid list of strings$/);
    refused({ metadata: 'x' }, /^metadata: Input should be an object$/);
    refused({ metadata: { user_id: 42 } }, /^metadata\.user_id: Input should be a string$/);
    refused({ tools: [{ name: 'f', input_schema: 5 }] }, /^tools\.0\.input_schema: Input should be an object$/);
    refused({ messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'f', input: '{"a":1}' }] }] }, /messages\.1\.content\.0\.input: Input should be a valid dictionary/);
  });

  it('refuses what it cannot translate, naming where it is', () => {
    refused({ messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'file', file_id: 'file_1' } }] }] }, /messages\.0\.content\.0: only base64 and URL images/, 'messages.0.content.0');
    refused({ messages: [{ role: 'assistant', content: [{ type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: {} }] }] }, /messages\.0\.content\.0: content block type "server_tool_use"/);
    refused({ messages: [{ role: 'user', content: 'x' }, { role: 'system', content: [{ type: 'image', source: {} }] }] }, /messages\.1\.content\.0: only text blocks/);
    refused({ messages: [{ role: 'user', content: 42 }] }, /messages\.0\.content: must be a string or an array/);
    refused({ messages: [{ role: 'tool', content: 'x' }] }, /messages\.0\.role/);
    refused({ messages: [{ role: 'user', content: [{ type: 'tool_result', content: 'x' }] }] }, /messages\.0\.content\.0\.tool_use_id: Field required/);
  });

  it('a base64 PDF becomes a file part, a text document text (after its title and context)', () => {
    const out = translate({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', title: 'spec.pdf', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'plain notes' } },
            { type: 'document', title: 'Minutes', context: 'From the Monday meeting', source: { type: 'text', media_type: 'text/plain', data: 'We agreed.' } },
            { type: 'document', title: 'Sources', citations: { enabled: true }, source: { type: 'content', content: [{ type: 'text', text: 'First.' }, { type: 'text', text: 'Second.' }] } },
            { type: 'document', source: { type: 'content', content: 'One string.' } },
          ],
        },
      ],
    });
    assert.deepEqual(out.messages[0]?.content, [
      { type: 'file', file: { filename: 'spec.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } },
      { type: 'text', text: 'plain notes' },
      { type: 'text', text: 'Minutes\nFrom the Monday meeting\n\nWe agreed.' },
      { type: 'text', text: 'Sources\n\nFirst.\nSecond.' },
      { type: 'text', text: 'One string.' },
    ]);
  });

  it('refuses a document it cannot read as text or a PDF, naming the block', () => {
    const image = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0=' } };
    refused({ messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'content', content: [{ type: 'text', text: 'a' }, image] } }] }] }, /^messages\.0\.content\.0\.source\.content\.1: only text blocks are supported here$/);
    refused({ messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'file', file_id: 'file_1' } }] }] }, /^messages\.0\.content\.0: only base64 PDF, plain-text and text-content documents can be translated$/);
  });
});

describe('messages request → chat: tools and parameters', () => {
  const weather = { name: 'get_weather', description: 'Weather now', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };

  it('custom tools become function tools; defer_loading, cache_control and other Anthropic fields are removed', () => {
    const out = translate({ tools: [weather, { ...weather, name: 'later', defer_loading: true, cache_control: { type: 'ephemeral' }, input_examples: [{}], strict: true }] });
    assert.deepEqual(out.tools, [
      { type: 'function', function: { name: 'get_weather', parameters: weather.input_schema, description: 'Weather now' } },
      { type: 'function', function: { name: 'later', parameters: weather.input_schema, description: 'Weather now' } },
    ]);
  });

  it('refuses server tools with a 400 naming every one of them', () => {
    refused(
      { tools: [weather, { type: 'web_search_20250305', name: 'web_search', max_uses: 3 }, { type: 'code_execution_20250825', name: 'code_execution' }] },
      /tools: web_search \(web_search_20250305\), code_execution \(code_execution_20250825\): only Anthropic runs these tools/,
      'tools',
    );
  });

  it('tool_choice auto/any/tool/none, and disable_parallel_tool_use → parallel_tool_calls: false', () => {
    const pick = (choice: unknown) => {
      const out = translate({ tools: [weather], tool_choice: choice });
      return [out.tool_choice, out.parallel_tool_calls];
    };
    assert.deepEqual(pick({ type: 'auto' }), ['auto', undefined]);
    assert.deepEqual(pick({ type: 'any', disable_parallel_tool_use: true }), ['required', false]);
    assert.deepEqual(pick({ type: 'tool', name: 'get_weather' }), [{ type: 'function', function: { name: 'get_weather' } }, undefined]);
    assert.deepEqual(pick({ type: 'none' }), ['none', undefined]);
    // Without tools, OpenAI refuses a tool_choice: none is sent.
    assert.equal(translate({ tool_choice: { type: 'any' } }).tool_choice, undefined);
    refused({ tools: [weather], tool_choice: { type: 'sometimes' } }, /tool_choice\.type/);
  });

  it('max_tokens, stop_sequences, temperature, top_p, stream and metadata.user_id map; max_tokens 0 (a cache warm-up) becomes 1', () => {
    const out = translate({ max_tokens: 2048, stop_sequences: ['END'], temperature: 0.3, top_p: 0.9, stream: true, metadata: { user_id: 'user-42' } });
    assert.deepEqual(
      { ...out, messages: undefined },
      { model: 'gpt-4o-mini', messages: undefined, max_completion_tokens: 2048, stop: ['END'], temperature: 0.3, top_p: 0.9, stream: true, user: 'user-42' },
    );
    assert.equal(translate({ max_tokens: 0 }).max_completion_tokens, 1);
  });

  it("a user_id longer than OpenAI's 64 characters (Claude Code's JSON) becomes a stable digest", () => {
    const long = JSON.stringify({ device_id: 'd'.repeat(64), account_uuid: '6a1b2c3d-0000-4000-8000-000000000000', session_id: '7e8f9a0b-0000-4000-8000-000000000000' });
    const first = translate({ metadata: { user_id: long } }).user as string;
    assert.match(first, /^sha256:[0-9a-f]{32}$/);
    assert.ok(first.length <= 64);
    assert.equal(translate({ metadata: { user_id: long } }).user, first);
    assert.notEqual(translate({ metadata: { user_id: `${long} ` } }).user, first);
  });

  it('drops what has no meaning on chat (thinking, top_k, context_management, service_tier, betas it does not know)', () => {
    const out = translate({
      thinking: { type: 'adaptive', display: 'omitted' },
      top_k: 5,
      context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
      service_tier: 'auto',
      speed: 'fast',
      some_future_beta: { x: 1 },
    });
    assert.deepEqual(Object.keys(out).sort(), ['max_completion_tokens', 'messages', 'model']);
  });

  it("output_config.effort → reasoning_effort for OpenAI's reasoning models only (others refuse it); format → response_format", () => {
    assert.equal(translate({ model: 'o3', output_config: { effort: 'medium' } }).reasoning_effort, 'medium');
    assert.equal(translate({ model: 'gpt-5.1', output_config: { effort: 'xhigh' } }).reasoning_effort, 'high');
    assert.equal(translate({ model: 'gpt-5-chat-latest', output_config: { effort: 'low' } }).reasoning_effort, undefined);
    assert.equal(translate({ model: 'gpt-4o', output_config: { effort: 'high' } }).reasoning_effort, undefined);
    assert.equal(translate({ model: 'deepseek-chat', output_config: { effort: 'high' } }).reasoning_effort, undefined);
    assert.equal(translate({ model: 'o3', thinking: { type: 'disabled' }, output_config: { effort: 'high' } }).reasoning_effort, undefined);
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    assert.deepEqual(translate({ output_config: { format: { type: 'json_schema', schema } } }).response_format, { type: 'json_schema', json_schema: { name: 'response', schema } });
    assert.deepEqual(translate({ output_format: { type: 'json_schema', schema } }).response_format, { type: 'json_schema', json_schema: { name: 'response', schema } }, 'the beta name');
  });

  it("a client's thinking → reasoning_effort for OpenAI's reasoning models, which from GPT-5.1 on reason only when asked (Claude Code sends a budget)", () => {
    const effort = (thinking: unknown, model = 'gpt-5.2', extra: object = {}): unknown => translate({ model, thinking, ...extra }).reasoning_effort;
    assert.equal(effort({ type: 'enabled', budget_tokens: 31999 }), 'high');
    assert.equal(effort({ type: 'enabled', budget_tokens: 2048 }), 'medium');
    assert.equal(effort({ type: 'enabled', budget_tokens: 1024 }), 'low');
    assert.equal(effort({ type: 'adaptive' }), 'high');
    assert.equal(effort({ type: 'adaptive' }, 'gpt-5.2', { output_config: { effort: 'low' } }), 'low', 'the effort the client set wins');
    assert.equal(effort({ type: 'disabled' }), undefined);
    assert.equal(effort({ type: 'enabled', budget_tokens: 31999 }, 'gpt-4o'), undefined, 'a model that takes no effort');
    assert.equal(effort({ type: 'enabled', budget_tokens: 31999 }, 'deepseek-chat'), undefined);
  });

  it('refuses mcp_servers, which only Anthropic runs', () => {
    refused({ mcp_servers: [{ type: 'url', url: 'https://mcp.example.com', name: 'x' }] }, /mcp_servers: not supported/, 'mcp_servers');
  });

  it("refuses a message thread with the code Anthropic's SDK recovers from (it sends the whole conversation instead)", () => {
    for (const thread of [{ type: 'create' }, { type: 'continue', previous_message_id: 'msg_1' }]) {
      assert.throws(
        () => translate({ thread }),
        (err: unknown) => err instanceof GatewayError && err.status === 400 && err.code === 'thread_unsupported_request' && err.param === 'thread',
      );
    }
    const refusal = new GatewayError(400, 'x', { code: 'thread_unsupported_request' });
    assert.deepEqual(messagesErrorBody(refusal).error.details, { error_code: 'thread_unsupported_request' });
    assert.equal(messagesErrorBody(new GatewayError(400, 'x', { code: 'invalid_value' })).error.details, undefined, 'other errors carry no details');
  });

  it('the table names every parameter once, each with what happens to it', () => {
    for (const [name, rule] of Object.entries(MESSAGES_PARAMETERS)) {
      assert.ok(rule.action === 'map' ? rule.to !== '' : rule.why !== '', name);
    }
  });
});

const completion = (message: Record<string, unknown>, finish: string, usage: Record<string, unknown> = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 }): ChatCompletion =>
  ({ id: 'chatcmpl-abc', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }], usage }) as ChatCompletion;

/** What the surface knows of a request's prompt: its estimate in tokens. */
const HINTS = { promptTokens: 100, answerId: 'gw1' };

describe('chat answer → Message', () => {
  it('a tool call cut by the output limit ends as max_tokens, never tool_use (a client would run a tool with half its input)', () => {
    const cut = toMessage(completion({ content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: '{"path": "a.ts", "text": "fun' } }] }, 'length'), HINTS);
    assert.equal(cut.stop_reason, 'max_tokens');
    const whole = toMessage(completion({ content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: '{"path": "a.ts"}' } }] }, 'stop'), HINTS);
    assert.equal(whole.stop_reason, 'tool_use', 'called tools: stopped for them, whatever the server says');
  });

  it('reasoning → a thinking block, text → a text block, tool calls → tool_use blocks with their input parsed', () => {
    const message = toMessage(
      completion(
        {
          content: 'Let me check.',
          reasoning_content: 'The user wants weather.',
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'broken', arguments: '{"city": "Par' } },
          ],
        },
        'tool_calls',
      ),
      HINTS,
    );
    assert.deepEqual(message, {
      id: 'msg_gw1',
      type: 'message',
      role: 'assistant',
      model: 'gpt-4o-mini-2024-07-18',
      content: [
        { type: 'thinking', thinking: 'The user wants weather.', signature: 'llm-gateway:unsigned' },
        { type: 'text', text: 'Let me check.' },
        { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } },
        // Arguments that are not a JSON object cannot be Anthropic's input: {}.
        { type: 'tool_use', id: 'call_2', name: 'broken', input: {} },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 20 },
    });
  });

  it('takes tool arguments sent as an object (some OpenAI-compatible servers) as the input', () => {
    const called = completion({ content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: { city: 'Paris' } } }] }, 'tool_calls');
    assert.deepEqual(toMessage(called, HINTS).content, [{ type: 'tool_use', id: 'c', name: 'f', input: { city: 'Paris' } }]);
  });

  it('an answer without a choice holding a message is a 502, not an empty message', () => {
    for (const choices of [[], [null, 5], [{ index: 0, message: null, finish_reason: 'stop' }]]) {
      assert.throws(() => toMessage({ ...completion({ content: 'x' }, 'stop'), choices } as unknown as ChatCompletion, HINTS), (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response', JSON.stringify(choices));
    }
  });

  it('maps every finish_reason; tool calls under "stop" (some servers) are still tool_use, and "tool_calls" without any is the end of the turn', () => {
    assert.deepEqual(STOP_REASONS, { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' });
    const withCall = { content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] };
    for (const [finish, stop] of Object.entries(STOP_REASONS)) assert.equal(toMessage(completion(stop === 'tool_use' ? withCall : { content: 'x' }, finish), HINTS).stop_reason, stop, finish);
    for (const finish of ['tool_calls', 'function_call']) assert.equal(toMessage(completion({ content: 'x' }, finish), HINTS).stop_reason, 'end_turn', finish);
    assert.equal(toMessage(completion({ content: 'x' }, 'something_new'), HINTS).stop_reason, 'end_turn');
    const called = completion({ content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }, 'stop');
    assert.equal(toMessage(called, HINTS).stop_reason, 'tool_use');
    assert.equal(toMessage(completion({ content: null, refusal: 'I cannot help.' }, 'stop'), HINTS).stop_reason, 'refusal');
  });

  it('cached prompt tokens move from input_tokens to cache_read_input_tokens, as Anthropic counts them', () => {
    const cached = toMessage(completion({ content: 'x' }, 'stop', { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_tokens_details: { cached_tokens: 800 } }), HINTS);
    assert.deepEqual(cached.usage, { input_tokens: 200, cache_creation_input_tokens: 0, cache_read_input_tokens: 800, output_tokens: 50 });
    const deepseek = toMessage(completion({ content: 'x' }, 'stop', { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_cache_hit_tokens: 600, prompt_cache_miss_tokens: 400 }), HINTS);
    assert.deepEqual(deepseek.usage, { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 50 });
  });

  it('estimates the counts, never zeros, for a provider that reports no usage (as a stream does)', () => {
    for (const usage of [undefined, null]) {
      const text = 'x'.repeat(41);
      const answer = { ...completion({ content: text }, 'stop'), usage } as unknown as ChatCompletion;
      assert.deepEqual(toMessage(answer, { promptTokens: 321, answerId: 'gw1' }).usage, { input_tokens: 321, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 11 });
    }
    const called = { ...completion({ content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{"city":"Paris"}' } }] }, 'tool_calls'), usage: undefined } as unknown as ChatCompletion;
    assert.deepEqual(toMessage(called, { promptTokens: 0, answerId: 'gw1' }).usage, { input_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 4 });
  });
});

/** A DeepSeek-reasoner-like chat stream with thinking, text, two tool calls, the finish, usage and [DONE]. */
const CHAT_STREAM = [
  { choices: [{ index: 0, delta: { role: 'assistant', content: null, reasoning_content: '' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { content: null, reasoning_content: 'Weather, ' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { content: null, reasoning_content: 'two cities.' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { content: 'Checking – ☀️' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_00_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city": "Pa' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_01_b', type: 'function', function: { name: 'get_weather', arguments: '{"city":' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: ' "Rome"}' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
  { choices: [], usage: { prompt_tokens: 900, completion_tokens: 60, total_tokens: 960, prompt_tokens_details: { cached_tokens: 500 } } },
]
  .map((chunk) => `data: ${JSON.stringify({ id: 'chatcmpl-s1', object: 'chat.completion.chunk', created: 1, model: 'deepseek-reasoner', ...chunk })}\n\n`)
  .concat('data: [DONE]\n\n')
  .join('');

/** The provider's bytes → chat items → Messages items → the frames a Messages client gets. */
function runTranslated(chunks: Buffer[], promptTokens = 1234): { frames: string; items: Array<StreamItem<MessagesEvent>> } {
  const parser = new SseParser();
  const translate = chatStreamToMessages({ promptTokens, answerId: 'gw1' });
  const items: Array<StreamItem<MessagesEvent>> = [];
  const take = (events: ReturnType<SseParser['push']>): void => {
    for (const event of events) for (const item of decodeChatEvent(event)) for (const out of translate(item)) items.push(out);
  };
  for (const chunk of chunks) take(parser.push(chunk));
  take(parser.end());
  return { frames: items.map((item) => messagesStreamOutput.frame(item)).join(''), items };
}

/** Parses frames as Anthropic's SDK does: only events with an `event:` line, whose name must match the data's type. */
function sdkEvents(frames: string): MessagesEvent[] {
  return frames
    .split('\n\n')
    .filter((block) => block !== '')
    .map((block) => {
      const name = /^event: (.+)$/m.exec(block)?.[1];
      const data = JSON.parse(block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n')) as MessagesEvent;
      assert.equal(name, data.type, `event line of ${block}`);
      return data;
    });
}

describe('chat stream → Messages stream', () => {
  it("sends no more of a call's arguments once they stop being one object (a brace too many after it, as some servers send; no object at all), so the client's SDK parses every input it is given, at every byte boundary", () => {
    const data = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const call = (fragments: string[]): string =>
      [
        data({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'read', arguments: '' } }] }),
        ...fragments.map((args) => data({ tool_calls: [{ index: 0, function: { arguments: args } }] })),
        data({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ].join('');
    const cases: Array<[string[], string]> = [
      [['{"file_path": "/a"}', '}'], '{"file_path": "/a"}'],
      [['{"file_path": "/a"', '}} \n', '{"x": 1}'], '{"file_path": "/a"}'],
      [['{"a": "}"}', ' \n'], '{"a": "}"} \n'],
      [['[1, 2]'], ''],
      [['not json'], ''],
    ];
    for (const [fragments, sent] of cases) {
      const bytes = Buffer.from(call(fragments));
      for (let cut = 0; cut <= bytes.length; cut++) {
        const events = sdkEvents(runTranslated([bytes.subarray(0, cut), bytes.subarray(cut)]).frames);
        const input = events.filter((event) => event.type === 'content_block_delta').map((event) => (event.delta as { partial_json: string }).partial_json).join('');
        assert.equal(input, sent, `${JSON.stringify(fragments)}, cut at ${cut}`);
        assert.equal(events.filter((event) => event.type === 'content_block_stop').length, 1);
      }
    }
  });

  it("joins a tool's name a server sends in pieces before its arguments (Gemini's may: `get_`, then `weather`), keeps one repeated or sent whole each time, at every byte boundary", () => {
    const data = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const call = (first: string, second: string): string =>
      [
        data({ role: 'assistant', content: '' }),
        data({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: first, arguments: '' } }] }),
        data({ tool_calls: [{ index: 0, function: { name: second, arguments: '{"city":' } }] }),
        data({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
        data({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ].join('');
    // A call named and waiting for its arguments comes before text that follows it (a call without any).
    const noArgs = [
      data({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'list', arguments: '' } }] }),
      data({ content: 'Listing.' }),
      data({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const order = sdkEvents(runTranslated([Buffer.from(noArgs)]).frames).filter((event) => event.type === 'content_block_start').map((event) => (event as unknown as { content_block: { type: string } }).content_block.type);
    assert.deepEqual(order, ['tool_use', 'text']);
    for (const [first, second] of [['get_', 'weather'], ['get_weather', 'get_weather'], ['get_', 'get_weather']] as const) {
      const bytes = Buffer.from(call(first, second));
      for (let cut = 0; cut <= bytes.length; cut++) {
        const events = sdkEvents(runTranslated([bytes.subarray(0, cut), bytes.subarray(cut)]).frames);
        const starts = events.filter((event) => event.type === 'content_block_start').map((event) => (event as unknown as { content_block: unknown }).content_block);
        assert.deepEqual(starts, [{ type: 'tool_use', id: 'call_1', name: 'get_weather', input: {} }], `${first} + ${second}, cut at ${cut}`);
        const input = events.filter((event) => event.type === 'content_block_delta').map((event) => (event.delta as { partial_json: string }).partial_json).join('');
        assert.equal(input, '{"city":"Paris"}');
      }
    }
  });

  it("takes the answer's model from the first chunk, not from a stray event before it, and its id from the gateway's request", () => {
    const chunk = `data: ${JSON.stringify({ id: 'chatcmpl-7', object: 'chat.completion.chunk', created: 1, model: 'gpt-x', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }] })}\n\n`;
    const events = sdkEvents(runTranslated([Buffer.from(`data: {"x":1}\n\n${chunk}data: [DONE]\n\n`)]).frames);
    const start = events[0] as { type: string; message: { id: string; model: string } };
    assert.equal(start.type, 'message_start');
    assert.equal(start.message.model, 'gpt-x');
    assert.equal(start.message.id, 'msg_gw1');
  });

  it('reads reasoning from `reasoning` too (OpenRouter, newer vLLM), streamed and whole', () => {
    const data = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ id: 'chatcmpl-r', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const frames = [data({ role: 'assistant', reasoning: 'Think' }), data({ reasoning: 'ing.' }), data({ content: 'Done.' }), data({}, 'stop'), 'data: [DONE]\n\n'].join('');
    const events = sdkEvents(runTranslated([Buffer.from(frames)]).frames);
    const thinking = events.filter((event) => event.type === 'content_block_delta' && (event.delta as { type: string }).type === 'thinking_delta').map((event) => (event.delta as { thinking: string }).thinking);
    assert.equal(thinking.join(''), 'Thinking.');
    assert.deepEqual(toMessage(completion({ content: 'Done.', reasoning: 'Thinking.' }, 'stop'), HINTS).content[0], { type: 'thinking', thinking: 'Thinking.', signature: 'llm-gateway:unsigned' });
  });

  it("reads text sent as an array of parts (Mistral's reasoning models), streamed and whole; other parts are not its text", () => {
    const data = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ id: 'chatcmpl-p', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const parts = [{ type: 'thinking', thinking: [{ type: 'text', text: 'hmm' }] }, { type: 'text', text: 'part one ' }, { type: 'text', text: 'part two' }];
    const frames = [data({ role: 'assistant', content: parts }), data({ content: [{ type: 'text', text: '!' }] }), data({}, 'stop'), 'data: [DONE]\n\n'].join('');
    const events = sdkEvents(runTranslated([Buffer.from(frames)]).frames);
    const text = events.filter((event) => event.type === 'content_block_delta' && (event.delta as { type: string }).type === 'text_delta').map((event) => (event.delta as { text: string }).text);
    assert.equal(text.join(''), 'part one part two!');
    assert.deepEqual(toMessage(completion({ content: parts }, 'stop'), HINTS).content, [{ type: 'text', text: 'part one part two' }]);
  });

  it('translates the first choice (index 0) only, in whatever order a provider lists its choices, streamed and whole', () => {
    const frame = (choices: unknown[]): string => `data: ${JSON.stringify({ id: 'chatcmpl-n', object: 'chat.completion.chunk', created: 1, model: 'm', choices })}\n\n`;
    const frames = [
      frame([{ index: 1, delta: { role: 'assistant', content: 'second' }, finish_reason: null }, { index: 0, delta: { role: 'assistant', content: 'first' }, finish_reason: null }]),
      frame([{ index: 1, delta: {}, finish_reason: 'length' }, { index: 0, delta: {}, finish_reason: 'stop' }]),
      'data: [DONE]\n\n',
    ].join('');
    const events = sdkEvents(runTranslated([Buffer.from(frames)]).frames);
    const text = events.filter((event) => event.type === 'content_block_delta').map((event) => (event.delta as { text: string }).text);
    assert.deepEqual(text, ['first']);
    assert.equal((events.find((event) => event.type === 'message_delta') as unknown as { delta: { stop_reason: string } }).delta.stop_reason, 'end_turn');
    const whole = { ...completion({ content: 'first' }, 'stop'), choices: [{ index: 1, message: { role: 'assistant', content: 'second' }, finish_reason: 'length' }, { index: 0, message: { role: 'assistant', content: 'first' }, finish_reason: 'stop' }] } as ChatCompletion;
    assert.deepEqual(toMessage(whole, HINTS).content, [{ type: 'text', text: 'first' }]);
    assert.equal(toMessage(whole, HINTS).stop_reason, 'end_turn');
  });

  it("starts a tool_use block once the call's name has come, even after its first fragments; a call whose name never comes goes out at the end", () => {
    const data = (delta: unknown, finish: string | null = null): string => `data: ${JSON.stringify({ id: 'chatcmpl-late', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const frames = [
      data({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { arguments: '' } }] }),
      data({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      data({ tool_calls: [{ index: 0, function: { name: 'get_weather' } }] }),
      data({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
      data({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { arguments: '{}' } }] }),
      data({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const events = sdkEvents(runTranslated([Buffer.from(frames)]).frames);
    const starts = events.filter((event) => event.type === 'content_block_start').map((event) => event.content_block);
    assert.deepEqual(starts, [
      { type: 'tool_use', id: 'call_a', name: 'get_weather', input: {} },
      { type: 'tool_use', id: 'call_b', name: '', input: {} },
    ]);
    const input = events.filter((event) => event.type === 'content_block_delta' && event.index === 0).map((event) => (event.delta as { partial_json: string }).partial_json);
    assert.equal(input.join(''), '{"city":"Paris"}');
    assert.equal(events.at(-2)?.type, 'message_delta');
  });

  it('message_start (a non-zero estimate), one block per thinking, text and tool call, message_delta with the real usage, message_stop', () => {
    const events = sdkEvents(runTranslated([Buffer.from(CHAT_STREAM)]).frames);
    assert.deepEqual(
      events.map((event) => [event.type, event.index ?? null, (event.delta as { type?: string } | undefined)?.type ?? (event.content_block as { type?: string } | undefined)?.type ?? null]),
      [
        ['message_start', null, null],
        ['content_block_start', 0, 'thinking'],
        ['content_block_delta', 0, 'thinking_delta'],
        ['content_block_delta', 0, 'thinking_delta'],
        ['content_block_delta', 0, 'signature_delta'],
        ['content_block_stop', 0, null],
        ['content_block_start', 1, 'text'],
        ['content_block_delta', 1, 'text_delta'],
        ['content_block_stop', 1, null],
        ['content_block_start', 2, 'tool_use'],
        ['content_block_delta', 2, 'input_json_delta'],
        ['content_block_delta', 2, 'input_json_delta'],
        ['content_block_stop', 2, null],
        ['content_block_start', 3, 'tool_use'],
        ['content_block_delta', 3, 'input_json_delta'],
        ['content_block_delta', 3, 'input_json_delta'],
        ['content_block_stop', 3, null],
        ['message_delta', null, null],
        ['message_stop', null, null],
      ],
    );
    const start = events[0]?.message as { id: string; model: string; usage: Record<string, number> };
    assert.equal(start.id, 'msg_gw1');
    assert.equal(start.model, 'deepseek-reasoner');
    assert.deepEqual(start.usage, { input_tokens: 1234, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 });
    const delta = events.at(-2) as MessagesEvent;
    assert.deepEqual(delta.delta, { stop_reason: 'tool_use', stop_sequence: null });
    assert.deepEqual(delta.usage, { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 500, output_tokens: 60 });
  });

  it("each tool call's input_json_delta fragments join into valid JSON", () => {
    const events = sdkEvents(runTranslated([Buffer.from(CHAT_STREAM)]).frames);
    const inputs = new Map<number, string>();
    for (const event of events) {
      const delta = event.delta as { type?: string; partial_json?: string } | undefined;
      if (delta?.type === 'input_json_delta') inputs.set(event.index as number, (inputs.get(event.index as number) ?? '') + delta.partial_json);
    }
    assert.deepEqual([...inputs.values()].map((json) => JSON.parse(json)), [{ city: 'Paris' }, { city: 'Rome' }]);
  });

  it('assembles, for the log, into the Message a non-streamed call would give', () => {
    const assembler = new MessageAssembler();
    for (const item of runTranslated([Buffer.from(CHAT_STREAM)]).items) if (item.kind === 'event') assembler.add(item.event);
    const message = assembler.result();
    assert.deepEqual(message.content, [
      { type: 'thinking', thinking: 'Weather, two cities.', signature: 'llm-gateway:unsigned' },
      { type: 'text', text: 'Checking – ☀️' },
      { type: 'tool_use', id: 'call_00_a', name: 'get_weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'call_01_b', name: 'get_weather', input: { city: 'Rome' } },
    ]);
    assert.equal(message.stop_reason, 'tool_use');
    assert.equal(message.usage.output_tokens, 60);
  });

  it('gives the same frames when the provider stream is split at every byte boundary', () => {
    const expected = runTranslated([Buffer.from(CHAT_STREAM)]).frames;
    const bytes = Buffer.from(CHAT_STREAM);
    for (let cut = 1; cut < bytes.length; cut++) assert.equal(runTranslated([bytes.subarray(0, cut), bytes.subarray(cut)]).frames, expected, `split at byte ${cut}`);
    assert.equal(runTranslated([...bytes].map((byte) => Buffer.from([byte]))).frames, expected, 'one byte at a time');
  });

  const chunkStream = (chunks: unknown[]): string =>
    chunks.map((chunk) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', ...(chunk as object) })}\n\n`).join('') + 'data: [DONE]\n\n';
  const toolInputs = (frames: string): unknown[] => {
    const events = sdkEvents(frames);
    const blocks = new Map<number, { id: string; json: string }>();
    for (const event of events) {
      if (event.type === 'content_block_start' && (event.content_block as { type: string }).type === 'tool_use') blocks.set(event.index as number, { id: (event.content_block as { id: string }).id, json: '' });
      const delta = event.delta as { type?: string; partial_json?: string } | undefined;
      if (delta?.type === 'input_json_delta') (blocks.get(event.index as number) as { json: string }).json += delta.partial_json;
    }
    return [...blocks.values()].map((block) => [block.id, JSON.parse(block.json)]);
  };

  it('tells parallel calls apart by id when a server numbers them all 0 (Ollama)', () => {
    const text = chunkStream([
      { choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_A', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_B', type: 'function', function: { name: 'get_time', arguments: '{"tz":"CET"}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    assert.deepEqual(toolInputs(runTranslated([Buffer.from(text)]).frames), [['call_A', { city: 'Paris' }], ['call_B', { tz: 'CET' }]]);
  });

  /** Asserts each block is started, given its own deltas, then stopped, one at a time, in index order. */
  const assertWellFormed = (events: MessagesEvent[]): void => {
    let open: number | null = null;
    let next = 0;
    for (const event of events) {
      const at: string = `${JSON.stringify(event)} (open: ${String(open)})`;
      if (event.type === 'content_block_start') {
        assert.equal(open, null, `start while a block is open: ${at}`);
        assert.equal(event.index, next++, `start out of order: ${at}`);
        open = event.index as number;
      } else if (event.type === 'content_block_delta') assert.equal(event.index, open, `delta for a block that is not open: ${at}`);
      else if (event.type === 'content_block_stop') {
        assert.equal(event.index, open, `stop of a block that is not open: ${at}`);
        open = null;
      } else assert.equal(open, null, `${event.type} inside a block: ${at}`);
    }
  };

  it('keeps blocks well-formed and inputs exact when a server interleaves parallel calls, at every byte split', () => {
    const call = (index: number, args: string, start?: { id: string; name: string }): unknown =>
      start === undefined ? { index, function: { arguments: args } } : { index, id: start.id, type: 'function', function: { name: start.name, arguments: args } };
    const fragments = (...calls: unknown[]): unknown => ({ choices: [{ index: 0, delta: { tool_calls: calls }, finish_reason: null }] });
    // Calls 0 and 1 start together, then their arguments alternate (as some OpenAI-compatible servers send them).
    const text = chunkStream([
      { choices: [{ index: 0, delta: { role: 'assistant', content: 'Checking both.' }, finish_reason: null }] },
      fragments(call(0, '', { id: 'call_A', name: 'get_weather' }), call(1, '', { id: 'call_B', name: 'get_weather' })),
      fragments(call(0, '{"city": "Pa')),
      fragments(call(1, '{"city": "Ro')),
      fragments(call(0, 'ris", "unit": "°C"}')),
      fragments(call(1, 'me"}')),
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    const frames = runTranslated([Buffer.from(text)]).frames;
    const events = sdkEvents(frames);
    assertWellFormed(events);
    assert.deepEqual(toolInputs(frames), [['call_A', { city: 'Paris', unit: '°C' }], ['call_B', { city: 'Rome' }]]);
    assert.deepEqual(events.at(-2)?.delta, { stop_reason: 'tool_use', stop_sequence: null });
    const bytes = Buffer.from(text);
    for (let cut = 1; cut < bytes.length; cut++) assert.equal(runTranslated([bytes.subarray(0, cut), bytes.subarray(cut)]).frames, frames, `split at byte ${cut}`);
  });

  it('what comes while a call has unfinished arguments (another call, text) follows it whole, in order, at the end', () => {
    const text = chunkStream([
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_A', type: 'function', function: { name: 'f', arguments: '{"a": [1' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_B', type: 'function', function: { name: 'g', arguments: '{"b": 2}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { content: 'Done.' }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ', 2]}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    const events = sdkEvents(runTranslated([Buffer.from(text)]).frames);
    assertWellFormed(events);
    const assembler = new MessageAssembler();
    for (const event of events) assembler.add(event);
    assert.deepEqual(assembler.result().content, [
      { type: 'tool_use', id: 'call_A', name: 'f', input: { a: [1, 2] } },
      { type: 'tool_use', id: 'call_B', name: 'g', input: { b: 2 } },
      { type: 'text', text: 'Done.' },
    ]);
  });

  it('100,000 calls started while the first one is unfinished all follow it, in order, and the stream goes on (a queue taken by shift() held the loop for seconds)', () => {
    const calls = 100_000;
    const later = Array.from({ length: calls }, (_, i) => ({ index: i + 1, id: `call_${i + 1}`, type: 'function', function: { name: 'g', arguments: '{}' } }));
    const text = chunkStream([
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_0', type: 'function', function: { name: 'f', arguments: '{"a": [1' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: later }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ', 2]}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { content: 'Then text.' }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    const events = sdkEvents(runTranslated([Buffer.from(text)]).frames);
    assertWellFormed(events);
    const starts = events.filter((event) => event.type === 'content_block_start').map((event) => event.content_block as { type: string; id?: string });
    assert.equal(starts.length, calls + 2);
    starts.slice(0, -1).forEach((block, i) => assert.equal(block.id, `call_${i}`));
    assert.equal(starts.at(-1)?.type, 'text');
  });

  it('a call whose arguments come in 50,000 fragments while the next call waits keeps them exact (each fragment is read once, not the text so far parsed again)', () => {
    const fragments = Array.from({ length: 50_000 }, () => ({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '}' } }] }, finish_reason: null }] }));
    const text = chunkStream([
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_A', type: 'function', function: { name: 'f', arguments: '{"a": "' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_B', type: 'function', function: { name: 'g', arguments: '{"b": 2}' } }] }, finish_reason: null }] },
      ...fragments,
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    const frames = runTranslated([Buffer.from(text)]).frames;
    assertWellFormed(sdkEvents(frames));
    assert.deepEqual(toolInputs(frames), [['call_A', { a: '}'.repeat(50_000) }], ['call_B', { b: 2 }]]);
  });

  it("one call when its id comes after its first fragment, or anew on every fragment, with the server's id where the name came late", () => {
    const late = (fragments: unknown[]) => chunkStream([...fragments.map((fragment) => ({ choices: [{ index: 0, delta: { tool_calls: [fragment] }, finish_reason: null }] })), { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }]);
    const lateId = late([{ index: 0, type: 'function', function: { name: 'get_weather', arguments: '{"city":' } }, { index: 0, id: 'call_LATE', function: { arguments: '"Paris"}' } }]);
    assert.deepEqual(toolInputs(runTranslated([Buffer.from(lateId)]).frames), [['call_gw1_0', { city: 'Paris' }]]);
    const lateBoth = late([{ index: 0, function: { arguments: '{"city":' } }, { index: 0, id: 'call_LATE', type: 'function', function: { name: 'get_weather', arguments: '"Paris"}' } }]);
    assert.deepEqual(toolInputs(runTranslated([Buffer.from(lateBoth)]).frames), [['call_LATE', { city: 'Paris' }]]);
    const newEach = late([...'{"city":"Paris"}'].map((c, i) => ({ index: 0, id: `call_${i}x`, ...(i === 0 ? { type: 'function' } : {}), function: { ...(i === 0 ? { name: 'get_weather' } : {}), arguments: c } })));
    assert.deepEqual(toolInputs(runTranslated([Buffer.from(newEach)]).frames), [['call_0x', { city: 'Paris' }]]);
  });

  it("makes the answer's id, and those of tool calls the provider leaves without one, from the gateway's request id (unique per answer: a provider's may repeat), and its model from the first chunk that has an id or a choice, not Azure's prompt filter chunk", () => {
    const azure = `data: ${JSON.stringify({ id: '', object: '', created: 0, model: '', choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] })}\n\n`;
    const noIds = (answerId: string) => {
      const translate = chatStreamToMessages({ promptTokens: 1, answerId });
      const body = azure + `data: ${JSON.stringify({ id: 'chatcmpl-5', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'tool_calls' }] })}\n\ndata: [DONE]\n\n`;
      const items = new SseParser().push(Buffer.from(body)).flatMap((event) => decodeChatEvent(event)).flatMap((item) => translate(item));
      const events = items.flatMap((item) => (item.kind === 'event' ? [item.event] : []));
      const start = events.find((event) => event.type === 'message_start') as unknown as { message: { id: string; model: string } };
      const tool = events.find((event) => event.type === 'content_block_start') as unknown as { content_block: { id: string } };
      return [start.message.id, start.message.model, tool.content_block.id];
    };
    assert.deepEqual(noIds('a1'), ['msg_a1', 'gpt-4o', 'call_a1_0']);
    assert.deepEqual(noIds('b2'), ['msg_b2', 'gpt-4o', 'call_b2_0']);
    const whole = toMessage({ id: 'chatcmpl-5', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: '', type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'tool_calls' }] } as never, { promptTokens: 1, answerId: 'c3' });
    assert.equal(whole.id, 'msg_c3');
    assert.equal((whole.content[0] as { id: string }).id, 'call_c3_0');
  });

  it('a fragment without an index continues the last call; one with a new id and no index starts another', () => {
    const text = chunkStream([
      { choices: [{ index: 0, delta: { tool_calls: [{ id: 'call_A', type: 'function', function: { name: 'f', arguments: '{"a":' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ function: { arguments: '1}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ id: 'call_B', type: 'function', function: { name: 'g', arguments: '{}' } }] }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ]);
    assert.deepEqual(toolInputs(runTranslated([Buffer.from(text)]).frames), [['call_A', { a: 1 }], ['call_B', {}]]);
  });

  it('without usage from the provider, message_delta estimates the output and leaves the input as message_start said', () => {
    const text = chunkStream([{ choices: [{ index: 0, delta: { content: 'Hello' }, finish_reason: null }] }, { choices: [{ index: 0, delta: { content: ' there' }, finish_reason: 'stop' }] }]);
    const events = sdkEvents(runTranslated([Buffer.from(text)], 55).frames);
    assert.deepEqual(events.at(-2)?.usage, { output_tokens: 2 });
    assert.equal((events[0]?.message as { usage: { input_tokens: number } }).usage.input_tokens, 55);
  });

  it('an empty answer still starts, stops and ends', () => {
    const events = sdkEvents(runTranslated([Buffer.from('data: [DONE]\n\n')], 0).frames);
    assert.deepEqual(events.map((event) => event.type), ['message_start', 'message_delta', 'message_stop']);
    assert.equal((events[0]?.message as { usage: { input_tokens: number } }).usage.input_tokens, 1, 'never zero');
  });

  it('a failure mid-stream ends with an error event in Anthropic’s shape', () => {
    const { frames, items } = runTranslated([Buffer.from(`${CHAT_STREAM.split('\n\n').slice(0, 4).join('\n\n')}\n\ndata: {"error":{"message":"Rate limit reached","type":"rate_limit_error"}}\n\n`)]);
    assert.equal(items.at(-1)?.kind, 'error');
    const last = frames.trimEnd().split('\n\n').at(-1) as string;
    assert.match(last, /^event: error\ndata: /);
    assert.deepEqual(JSON.parse(last.split('\n')[1]?.slice(6) as string), { type: 'error', error: { type: 'rate_limit_error', message: 'Rate limit reached' } });
  });
});

describe('messages client', () => {
  const parse = (body: unknown) => messagesClient.parseRequest(Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)));

  it('reads model, stream and max_tokens (the output it may reserve)', () => {
    const parsed = parse({ model: 'claude-sonnet-4-5', max_tokens: 32000, stream: true, messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual([parsed.model, parsed.stream, parsed.maxOutputTokens, parsed.statesOutputLimit], ['claude-sonnet-4-5', true, 32000, true]);
  });

  it('refuses bodies Anthropic would, in its words, with a 400', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['', /empty/],
      ['{"model":', /not valid JSON/],
      [[], /JSON object/],
      [{ max_tokens: 1, messages: [{ role: 'user', content: 'x' }] }, /^model: Field required$/],
      [{ model: 'm', max_tokens: 1 }, /^messages: Field required$/],
      [{ model: 'm', max_tokens: 1, messages: [] }, /messages: must be a non-empty array/],
      [{ model: 'm', max_tokens: 1, messages: ['x'] }, /messages\.0: must be an object/],
      [{ model: 'm', messages: [{ role: 'user', content: 'x' }] }, /^max_tokens: Field required$/],
      [{ model: 'm', max_tokens: 1.5, messages: [{ role: 'user', content: 'x' }] }, /max_tokens: must be a non-negative integer/],
      [{ model: 'm', max_tokens: 1, stream: 'yes', messages: [{ role: 'user', content: 'x' }] }, /stream: must be true or false/],
    ];
    for (const [body, message] of cases) {
      assert.throws(
        () => parse(body),
        (err: unknown) => err instanceof GatewayError && err.status === 400 && message.test(err.message) && messagesErrorBody(err).error.type === 'invalid_request_error',
        JSON.stringify(body),
      );
    }
  });

  it("a key's model map and output cap rewrite the request; a thinking budget stays below the cap, or thinking goes", () => {
    const request = { model: 'claude-opus-5-5', max_tokens: 32000, thinking: { type: 'enabled', budget_tokens: 31999 }, messages: [{ role: 'user', content: 'x' }] } as AnthropicRequest;
    assert.deepEqual(messagesClient.rewrite(request, { model: 'deepseek-chat' }), { ...request, model: 'deepseek-chat' });
    assert.deepEqual(messagesClient.rewrite(request, { model: 'm', maxOutputTokens: 8192 }), { ...request, model: 'm', max_tokens: 8192, thinking: { type: 'enabled', budget_tokens: 8191 } });
    const small = messagesClient.rewrite(request, { model: 'm', maxOutputTokens: 1000 });
    assert.equal(small.thinking, undefined);
    assert.equal(request.max_tokens, 32000, 'the original is not changed');
    const adaptive = { ...request, thinking: { type: 'adaptive' } } as AnthropicRequest;
    assert.deepEqual(messagesClient.rewrite(adaptive, { model: 'm', maxOutputTokens: 1000 }).thinking, { type: 'adaptive' });
  });

  it("errors have Anthropic's shape and its type for each status; for a status without one, a provider's own Anthropic type is kept", () => {
    const pairs: Array<[number, string]> = [
      [400, 'invalid_request_error'],
      [401, 'authentication_error'],
      [403, 'permission_error'],
      [404, 'not_found_error'],
      [405, 'invalid_request_error'],
      [413, 'request_too_large'],
      [429, 'rate_limit_error'],
      [500, 'api_error'],
      [502, 'api_error'],
      [503, 'api_error'],
      [504, 'timeout_error'],
      [529, 'overloaded_error'],
    ];
    for (const [status, type] of pairs) {
      assert.deepEqual(messagesErrorBody(new GatewayError(status, 'why')), { type: 'error', error: { type, message: 'why' } }, String(status));
    }
    assert.equal(messagesErrorBody(new GatewayError(503, 'x', { type: 'overloaded_error' })).error.type, 'overloaded_error');
    // A chat provider's 503 says OpenAI's invalid_request_error: a name Anthropic uses for the client's errors only.
    assert.equal(messagesErrorBody(new GatewayError(503, 'x', { type: 'invalid_request_error' })).error.type, 'api_error');
    assert.equal(messagesErrorBody(new GatewayError(422, 'x', { type: 'permission_error' })).error.type, 'permission_error');
    assert.equal(messagesErrorBody(new GatewayError(500, 'x', { type: 'server_error' })).error.type, 'api_error');
    assert.equal(messagesErrorBody(new GatewayError(429, 'x', { type: 'insufficient_quota' })).error.type, 'rate_limit_error');
  });
});

describe('count_tokens estimate', () => {
  it('counts system, messages and tools at about four characters a token, images at a fixed cost', () => {
    const base = { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'x'.repeat(400) }] } as AnthropicRequest;
    const plain = estimateInputTokens(base);
    assert.equal(plain, 100 + 3);
    assert.equal(estimateInputTokens({ ...base, system: [{ type: 'text', text: 'y'.repeat(400) }] }), plain + 100);
    const withImage = { ...base, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(1_000_000) } }] }] } as AnthropicRequest;
    assert.equal(estimateInputTokens(withImage), 1600 + 3, 'an image is not its base64 length');
    const tools = [{ name: 'f', input_schema: { type: 'object' } }];
    assert.equal(estimateInputTokens({ ...base, tools } as AnthropicRequest), Math.ceil((400 + JSON.stringify(tools).length) / 4) + 3);
    // An agent's turns: a tool call's input and name, its result (text or blocks), thinking.
    const input = { path: 'a.ts', text: 'z'.repeat(800) };
    const turns = {
      ...base,
      messages: [
        ...base.messages,
        { role: 'assistant', content: [{ type: 'thinking', thinking: 't'.repeat(400), signature: 's' }, { type: 'tool_use', id: 'toolu_1', name: 'write', input }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'r'.repeat(1200) }, { type: 'tool_result', tool_use_id: 'toolu_2', content: [{ type: 'text', text: 'q'.repeat(400) }] }] },
      ],
    } as AnthropicRequest;
    assert.equal(estimateInputTokens(turns), Math.ceil((400 + 400 + JSON.stringify(input).length + 'write'.length + 1200 + 400) / 4) + 3 * 3);
  });
});

describe('models list in Anthropic format', () => {
  it('type, id, display_name, created_at (RFC 3339), and the page fields', () => {
    const list = toAnthropicModelList({
      object: 'list',
      data: [
        { id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' },
        { id: 'claude-x', object: 'model', created: 0, owned_by: 'anthropic', display_name: 'Claude X' },
      ],
    });
    assert.deepEqual(list, {
      data: [
        { type: 'model', id: 'gpt-4o-mini', display_name: 'gpt-4o-mini', created_at: '2024-07-16T23:32:21Z' },
        { type: 'model', id: 'claude-x', display_name: 'Claude X', created_at: '1970-01-01T00:00:00Z' },
      ],
      has_more: false,
      first_id: 'gpt-4o-mini',
      last_id: 'claude-x',
    });
    assert.deepEqual(toAnthropicModelList({ object: 'list', data: [] }), { data: [], has_more: false, first_id: null, last_id: null });
    // A provider's `created` no date can hold (1e14 s, or 1e400 parsed as Infinity) is not a 500.
    for (const created of [1e14, Infinity]) {
      assert.equal(toAnthropicModelList({ object: 'list', data: [{ id: 'x', object: 'model', created, owned_by: 'o' }] }).data[0]?.created_at, '1970-01-01T00:00:00Z');
    }
  });
});

describe('messages request → chat: what a hostile client sends', () => {
  it('refuses a block type that is not a string with a 400, whatever its toString holds', () => {
    refused({ messages: [{ role: 'user', content: [{ type: { toString: 1 } }] }] }, /content block type "an object"/);
    refused({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: [{ type: { toString: 1 } }] }] }, /content block type "an object"/);
  });

  it('translates 200,000 tool results of one turn (spread into one call, they overflowed the stack)', () => {
    const content = Array.from({ length: 200_000 }, (_, i) => ({ type: 'tool_result', tool_use_id: `t${i}`, content: 'ok' }));
    const chat = translate({ messages: [{ role: 'user', content }] });
    assert.equal(chat.messages.length, 200_000);
    assert.deepEqual(chat.messages[199_999], { role: 'tool', tool_call_id: 't199999', content: 'ok' });
  });
});

describe('messages errors: a context overflow in the words Claude Code acts on', () => {
  const said = (error: GatewayError): string => messagesErrorBody(error).error.message;

  it('says "prompt is too long" where the prompt alone is over the context, with the counts', () => {
    const openai = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.";
    assert.equal(said(new GatewayError(400, openai, { code: 'context_length_exceeded' })), `prompt is too long: 130512 tokens > 128000 maximum. ${openai}`);
    const deepseek = "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens (66000 in the messages, 4000 in the completion). Please reduce the length of the messages or completion.";
    assert.equal(said(new GatewayError(400, deepseek)), `prompt is too long: 66000 tokens > 65536 maximum. ${deepseek}`);
    const coded = 'Your input exceeds the context window of this model.';
    assert.equal(said(new GatewayError(400, coded, { code: 'context_length_exceeded' })), `prompt is too long: ${coded}`);
    assert.equal(messagesErrorBody(new GatewayError(400, openai)).error.type, 'invalid_request_error');
  });

  it('says "input length and `max_tokens` exceed context limit" where the prompt fits and the output asked for does not', () => {
    const openai = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (1000 in the messages, 8000 in the completion). Please reduce the length of the messages or completion.";
    assert.equal(said(new GatewayError(400, openai, { code: 'context_length_exceeded' })), `input length and \`max_tokens\` exceed context limit: 1000 + 8000 > 8192, decrease input length or \`max_tokens\` and try again. ${openai}`);
    const vllm = "Requested token count exceeds the model's maximum context length of 262144 tokens. You requested a total of 262462 tokens: 230462 tokens from the input messages and 32000 tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit.";
    assert.match(said(new GatewayError(400, vllm)), /^input length and `max_tokens` exceed context limit: 230462 \+ 32000 > 262144, /);
    const tooLarge = "'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum context length is 4096 tokens and your request has 30 input tokens (4096 > 4096 - 30).";
    assert.match(said(new GatewayError(400, tooLarge)), /^input length and `max_tokens` exceed context limit: 30 \+ 4096 > 4096, /);
  });

  it('leaves Anthropic\'s own words, an overflow it cannot read, and every other error as they are', () => {
    for (const message of [
      'prompt is too long: 208113 tokens > 200000 maximum',
      'input length and `max_tokens` exceed context limit: 186433 + 20000 > 200000, decrease input length or `max_tokens` and try again',
      'context window exceeded',
      'Unrecognized request argument supplied: context_window_size',
      'max_tokens: 300000 > 64000, which is the maximum allowed',
    ]) assert.equal(said(new GatewayError(400, message)), message);
    assert.equal(said(new GatewayError(429, 'Rate limit reached for requests')), 'Rate limit reached for requests');
  });
});

