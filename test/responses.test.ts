/**
 * The Responses client API's pure parts: reading a client's request, translating it to chat (and
 * on to Anthropic, as a chain), the chat answers and streams back, a provider's own Responses
 * stream as the gateway reads it, the failure frames, the log's assembled answer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import { decodeChatEvent } from '../src/formats/chat/stream.js';
import type { ChatCompletion, ChatRequest } from '../src/formats/chat/types.js';
import type { AnthropicRequest, AnthropicResponse } from '../src/formats/messages/types.js';
import { decodeMessagesEvent } from '../src/formats/messages/stream.js';
import { ResponseAssembler } from '../src/formats/responses/assemble.js';
import { responseError } from '../src/formats/responses/errors.js';
import { responsesClient, responsesTarget } from '../src/formats/responses/index.js';
import { responsesStreamOutput } from '../src/formats/responses/output.js';
import { parseResponsesRequest } from '../src/formats/responses/request.js';
import { RESPONSES_PARAMETERS, toChatRequest } from '../src/formats/responses/request-to-chat.js';
import { searchArguments, toResponse } from '../src/formats/responses/response-from-chat.js';
import { chatStreamToResponses } from '../src/formats/responses/stream-from-chat.js';
import { decodeResponsesEvent, RESPONSES_NOTABLE, responsesStreamWatch } from '../src/formats/responses/stream.js';
import type { ResponseObject, ResponsesEvent, ResponsesRequest } from '../src/formats/responses/types.js';
import { createRouter } from '../src/formats/router.js';
import type { StreamItem } from '../src/formats/stream.js';
import { SseParser } from '../src/upstream/sse.js';
import type { VirtualKey } from '../src/policy/keys.js';
import { ItemOwners, MAX_REMEMBERED_ID_CHARS, ownerOf, ownerTag, ResponseOwners } from '../src/policy/response-owners.js';
import { ownerInAnswer, withOwner } from '../src/surfaces/stored.js';
import { ensureItemsOwned } from '../src/surfaces/responses.js';
import type { Target } from '../src/policy/target.js';
import { parseJsonBytes } from '../src/formats/json-bytes.js';
import { plainUniqueKeys } from '../src/formats/json-keys.js';
import { sseFrame } from '../src/formats/sse.js';
import { codexFirstTurn } from './support/codex.js';

const request = (fields: Record<string, unknown>): ResponsesRequest => ({ model: 'deepseek-chat', input: 'hi', ...fields }) as ResponsesRequest;
const translate = (fields: Record<string, unknown>): ChatRequest => toChatRequest(request(fields)).request;

function refused(fields: Record<string, unknown>, message: RegExp, param?: string, code?: string): void {
  assert.throws(
    () => translate(fields),
    (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.status, 400);
      assert.match(err.message, message);
      if (param !== undefined) assert.equal(err.param, param);
      if (code !== undefined) assert.equal(err.code, code);
      return true;
    },
  );
}

const weather = { type: 'function', name: 'get_weather', description: 'Weather now', strict: true, parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };
const namespace = { type: 'namespace', name: 'multi_agent_v1', description: 'Agents', tools: [{ type: 'function', name: 'spawn_agent', parameters: { type: 'object', properties: {} } }] };
const patch = { type: 'custom', name: 'apply_patch', description: 'Edit files.', format: { type: 'grammar', syntax: 'lark', definition: 'start: "*** Begin Patch"' } };

describe('reading a Responses request', () => {
  const parse = (body: unknown): ResponsesRequest => parseResponsesRequest(Buffer.from(JSON.stringify(body)));

  it('takes a model and input as a string or items, stream and max_output_tokens', () => {
    assert.equal(parse({ model: 'gpt-5', input: 'hi' }).model, 'gpt-5');
    const parsed = responsesClient.parseRequest(Buffer.from(JSON.stringify({ model: 'gpt-5', input: [], stream: true, max_output_tokens: 300 })));
    assert.deepEqual([parsed.model, parsed.stream, parsed.maxOutputTokens, parsed.statesOutputLimit], ['gpt-5', true, 300, true]);
    const stated = (body: object): boolean => responsesClient.parseRequest(Buffer.from(JSON.stringify({ model: 'gpt-5', input: 'hi', ...body }))).statesOutputLimit;
    assert.deepEqual([stated({}), stated({ max_output_tokens: null }), stated({ max_tokens: 300 })], [false, false, false]);
  });

  it('refuses what the gateway cannot rely on, in OpenAI words, naming the parameter', () => {
    const cases: Array<[unknown, string, string]> = [
      [{ input: 'x' }, 'model', 'missing_required_parameter'],
      [{ model: 5, input: 'x' }, 'model', 'invalid_type'],
      [{ model: 'm', input: 5 }, 'input', 'invalid_type'],
      [{ model: 'm', input: 'x', stream: 'yes' }, 'stream', 'invalid_type'],
      [{ model: 'm', input: 'x', max_output_tokens: 0 }, 'max_output_tokens', 'integer_below_min_value'],
      [{ model: 'm', input: 'x', max_output_tokens: 1.5 }, 'max_output_tokens', 'invalid_type'],
      [{ model: 'm', input: 'x', max_output_tokens: 'abc' }, 'max_output_tokens', 'invalid_type'],
    ];
    for (const [body, param, code] of cases) {
      assert.throws(() => parse(body), (err: unknown) => err instanceof GatewayError && err.status === 400 && err.param === param && err.code === code, JSON.stringify(body));
    }
    assert.throws(() => parseResponsesRequest(Buffer.from('[1]')), /JSON object/);
  });

  it('rewrites the model and lowers max_output_tokens for a key with a cap, leaving the client request alone', () => {
    const original = request({ max_output_tokens: 50000 });
    const copy = responsesClient.rewrite(original, { model: 'x', maxOutputTokens: 8192 });
    assert.deepEqual([copy.model, copy.max_output_tokens, original.model, original.max_output_tokens], ['x', 8192, 'deepseek-chat', 50000]);
  });
});

describe('Responses request → chat', () => {
  it('puts instructions first and keeps system and developer messages where they stand, as system messages', () => {
    const out = translate({
      instructions: 'Be terse.',
      input: [
        { role: 'developer', content: 'Dev rules' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'one' }, { type: 'input_text', text: ' two' }] },
        { role: 'system', content: [{ type: 'input_text', text: 'Late rule' }] },
        { role: 'user', content: 'three' },
      ],
    });
    assert.deepEqual(out.messages, [
      { role: 'system', content: 'Be terse.' },
      { role: 'system', content: 'Dev rules' },
      { role: 'user', content: [{ type: 'text', text: 'one' }, { type: 'text', text: ' two' }] },
      { role: 'system', content: 'Late rule' },
      { role: 'user', content: 'three' },
    ]);
  });

  it('takes a string input as one user message, and images and files as chat parts', () => {
    assert.deepEqual(translate({ input: 'hello' }).messages, [{ role: 'user', content: 'hello' }]);
    const out = translate({
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'see' }, { type: 'input_image', image_url: 'data:image/png;base64,AAA', detail: 'low' }, { type: 'input_file', filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVB' }] }],
    });
    assert.deepEqual(out.messages[0]?.content, [
      { type: 'text', text: 'see' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,AAA', detail: 'low' } },
      { type: 'file', file: { file_data: 'data:application/pdf;base64,JVB', filename: 'a.pdf' } },
    ]);
    refused({ input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file_1' }] }] }, /file id/, 'input[0].content[0]');
    refused({ input: [{ role: 'user', content: [{ type: 'input_audio' }] }] }, /input_audio/, 'input[0].content[0].type');
  });

  it("takes a reasoning item's own text where it has one, else its summary, never both; parts apart by a blank line", () => {
    const reasoning = (item: object): unknown => translate({ model: 'deepseek-reasoner', input: [{ role: 'user', content: 'q' }, { type: 'reasoning', id: 'rs_1', ...item }, { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'A.' }] }] }).messages[1]?.reasoning_content;
    assert.equal(reasoning({ summary: [{ type: 'summary_text', text: 'Short.' }], content: [{ type: 'reasoning_text', text: 'The long one.' }] }), 'The long one.');
    assert.equal(reasoning({ summary: [{ type: 'summary_text', text: 'First.' }, { type: 'summary_text', text: 'Second.' }] }), 'First.\n\nSecond.');
    assert.equal(reasoning({ summary: [{ type: 'summary_text', text: 'Kept.' }], content: [] }), 'Kept.');
  });

  it('joins function calls to the assistant turn before them and answers them with tool messages; earlier reasoning rides along as reasoning_content', () => {
    const out = translate({
      input: [
        { role: 'user', content: 'weather in Paris and Rome?' },
        { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'Two cities.' }], encrypted_content: 'gAAA' },
        { type: 'message', role: 'assistant', id: 'msg_1', status: 'completed', content: [{ type: 'output_text', text: 'Checking.', annotations: [] }] },
        { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call', id: 'fc_2', call_id: 'call_2', name: 'get_weather', arguments: '{"city":"Rome"}' },
        { type: 'function_call_output', call_id: 'call_1', output: '21C' },
        { type: 'function_call_output', call_id: 'call_2', output: [{ type: 'input_text', text: '25C' }, { type: 'input_image', image_url: 'https://x/map.png' }] },
        { type: 'function_call', call_id: 'call_3', name: 'spawn_agent', namespace: 'multi_agent_v1', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_3', output: 'spawned' },
      ],
      tools: [weather, namespace],
    });
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: 'Checking.',
        reasoning_content: 'Two cities.',
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '21C' },
      { role: 'tool', tool_call_id: 'call_2', content: '25C' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/map.png' } }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_3', type: 'function', function: { name: 'multi_agent_v1__spawn_agent', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_3', content: 'spawned' },
    ]);
  });

  it("moves a user or developer message that came between calls and their outputs after the last output (chat providers take only tool messages there); one whose calls never got outputs stays last", () => {
    const call = (id: string) => ({ type: 'function_call', call_id: id, name: 'get_weather', arguments: '{}' });
    const output = (id: string) => ({ type: 'function_call_output', call_id: id, output: 'ok' });
    const roles = (input: unknown[]) => translate({ input, tools: [weather] }).messages.map((message) => (message.role === 'tool' ? `tool ${message.tool_call_id}` : `${message.role} ${typeof message.content === 'string' ? message.content : ''}`.trim()));
    assert.deepEqual(roles([{ role: 'user', content: 'q' }, call('a'), call('b'), { role: 'user', content: 'interject' }, { role: 'developer', content: 'rule' }, output('a'), output('b'), { role: 'user', content: 'next' }]), [
      'user q', 'assistant', 'tool a', 'tool b', 'user interject', 'system rule', 'user next',
    ]);
    assert.deepEqual(roles([{ role: 'user', content: 'q' }, call('a'), output('a'), { role: 'user', content: 'after' }]), ['user q', 'assistant', 'tool a', 'user after'], 'in place when no call awaits');
    assert.deepEqual(roles([{ role: 'user', content: 'q' }, call('a'), { role: 'user', content: 'cut off' }]), ['user q', 'assistant', 'user cut off']);
  });

  it('sends a custom tool call as a call with its input wrapped, and its output as a tool message', () => {
    const out = translate({
      input: [
        { role: 'user', content: 'fix it' },
        { type: 'custom_tool_call', call_id: 'call_p', name: 'apply_patch', input: '*** Begin Patch\n*** End Patch' },
        { type: 'custom_tool_call_output', call_id: 'call_p', output: 'Done' },
      ],
      tools: [patch],
    });
    assert.deepEqual(out.messages.slice(1), [
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_p', type: 'function', function: { name: 'apply_patch', arguments: '{"input":"*** Begin Patch\\n*** End Patch"}' } }] },
      { role: 'tool', tool_call_id: 'call_p', content: 'Done' },
    ]);
  });

  it('turns function, namespace and custom tools into functions and leaves hosted tools out, naming them', () => {
    const translated = toChatRequest(request({ tools: [weather, namespace, patch, { type: 'web_search', external_web_access: false }, { type: 'code_interpreter', container: { type: 'auto' } }] }));
    assert.deepEqual(translated.dropped, ['web_search', 'code_interpreter']);
    const tools = translated.request.tools as Array<{ type: string; function: Record<string, unknown> }>;
    assert.deepEqual(tools.map((tool) => tool.function.name), ['get_weather', 'multi_agent_v1__spawn_agent', 'apply_patch']);
    assert.deepEqual(tools[0], { type: 'function', function: { name: 'get_weather', description: 'Weather now', parameters: weather.parameters, strict: true } });
    assert.deepEqual(tools[2]?.function.parameters, { type: 'object', properties: { input: { type: 'string', description: 'The free-form input.' } }, required: ['input'], additionalProperties: false });
    assert.match(String(tools[2]?.function.description), /^Edit files\.\n\n.*"input" string.*lark grammar:\nstart: "\*\*\* Begin Patch"$/s);
    assert.deepEqual([...translated.tools], [
      ['get_weather', { name: 'get_weather', custom: false }],
      ['multi_agent_v1__spawn_agent', { name: 'spawn_agent', namespace: 'multi_agent_v1', custom: false }],
      ['apply_patch', { name: 'apply_patch', custom: true }],
    ]);
    const onlyHosted = toChatRequest(request({ tools: [{ type: 'web_search' }], tool_choice: 'auto', parallel_tool_calls: true }));
    assert.equal(onlyHosted.request.tools, undefined, 'no tools left: none sent, nor tool_choice');
    assert.equal(onlyHosted.request.tool_choice, undefined);
    refused({ tools: [weather, { ...weather }] }, /two tools are called "get_weather"/);
  });

  it("carries Codex's client-run tool_search: the tool as a function, its calls and outputs as calls and tool messages, the tools it loaded as functions from then on", () => {
    const search = { type: 'tool_search', execution: 'client', description: '# Tool discovery', parameters: { type: 'object', properties: { query: { type: 'string' }, limit: { type: 'integer' } }, required: ['query'], additionalProperties: false } };
    const calendar = { type: 'namespace', name: 'mcp__calendar', description: 'Tools in the mcp__calendar namespace.', tools: [{ type: 'function', name: 'create_event', description: 'Create an event\nwith details', strict: false, defer_loading: true, parameters: { type: 'object', properties: { title: { type: 'string' } }, additionalProperties: false } }] };
    const translated = toChatRequest(
      request({
        tools: [weather, search, { type: 'tool_search' }],
        input: [
          { role: 'user', content: 'book lunch' },
          { type: 'tool_search_call', call_id: 'search-1', status: 'completed', execution: 'client', arguments: { query: 'calendar create', limit: 1 } },
          { type: 'tool_search_output', call_id: 'search-1', status: 'completed', execution: 'client', tools: [calendar] },
          { type: 'tool_search_call', call_id: 'search-2', execution: 'client', arguments: { query: 'calendar' } },
          { type: 'tool_search_output', call_id: 'search-2', execution: 'client', tools: [calendar] },
          { type: 'tool_search_call', id: 'tsc_server', execution: 'server', arguments: { query: 'x' } },
          { type: 'function_call', call_id: 'call_1', namespace: 'mcp__calendar', name: 'create_event', arguments: '{"title":"Lunch"}' },
          { type: 'function_call_output', call_id: 'call_1', output: 'created' },
        ],
      }),
    );
    const out = translated.request;
    const tools = out.tools as Array<{ function: { name: string } }>;
    assert.deepEqual(tools.map((tool) => tool.function.name), ['get_weather', 'tool_search', 'mcp__calendar__create_event'], 'loaded once, however many searches loaded it');
    assert.deepEqual(tools[1]?.function, { name: 'tool_search', description: '# Tool discovery', parameters: search.parameters });
    assert.deepEqual(translated.dropped, ['tool_search'], 'a search OpenAI runs is OpenAI\'s');
    assert.deepEqual(translated.tools.get('tool_search'), { name: 'tool_search', custom: false, search: true });
    assert.deepEqual(translated.tools.get('mcp__calendar__create_event'), { name: 'create_event', namespace: 'mcp__calendar', custom: false });
    assert.deepEqual(
      out.messages.map((message) => [message.role, message.tool_calls?.map((call) => [call.id, call.function.name, call.function.arguments]) ?? message.content]),
      [
        ['user', 'book lunch'],
        ['assistant', [['search-1', 'tool_search', '{"query":"calendar create","limit":1}']]],
        ['tool', 'Tools found, which can be called now:\n- mcp__calendar__create_event: Create an event'],
        ['assistant', [['search-2', 'tool_search', '{"query":"calendar"}']]],
        ['tool', 'Tools found, which can be called now:\n- mcp__calendar__create_event: Create an event'],
        ['assistant', [['call_1', 'mcp__calendar__create_event', '{"title":"Lunch"}']]],
        ['tool', 'created'],
      ],
    );
    const empty = translate({ tools: [search], input: [{ role: 'user', content: 'x' }, { type: 'tool_search_call', call_id: 's', execution: 'client', arguments: { query: 'q' } }, { type: 'tool_search_output', call_id: 's', execution: 'client', tools: [] }] });
    assert.equal(empty.messages.at(-1)?.content, 'No tools found.');
    refused({ input: [{ type: 'tool_search_output', execution: 'client', tools: [] }] }, /call_id/, 'input[0].call_id');
  });

  it('gives a namespaced function past 64 characters a shortened name, the same for its tool and its calls, and maps it back', () => {
    const confluence = { type: 'namespace', name: 'mcp__atlassian_confluence_cloud', description: 'Confluence', tools: [{ type: 'function', name: 'get_confluence_page_ancestors_by_id', parameters: { type: 'object', properties: {} } }] };
    const translated = toChatRequest(request({ tools: [confluence], input: [{ role: 'user', content: 'x' }, { type: 'function_call', call_id: 'c1', namespace: confluence.name, name: 'get_confluence_page_ancestors_by_id', arguments: '{}' }, { type: 'function_call_output', call_id: 'c1', output: 'ok' }] }));
    const name = (translated.request.tools as Array<{ function: { name: string } }>)[0]?.function.name as string;
    assert.equal(name.length, 64);
    assert.match(name, /^mcp__atlassian_confluence_cloud__get_confluence_page_an_[0-9a-f]{8}$/);
    assert.equal(translated.request.messages[1]?.tool_calls?.[0]?.function.name, name, 'its call in the input: the same name');
    assert.deepEqual(translated.tools.get(name), { name: 'get_confluence_page_ancestors_by_id', namespace: 'mcp__atlassian_confluence_cloud', custom: false });
  });

  it("refuses a searched tool named like a declared one, loads the same tool once, and lists only what it loaded", () => {
    const search = { type: 'tool_search', execution: 'client' };
    const found = (tools: unknown[], declared: unknown[] = [search]) =>
      toChatRequest(request({ tools: declared, input: [{ role: 'user', content: 'x' }, { type: 'tool_search_call', call_id: 's', execution: 'client', arguments: { query: 'q' } }, { type: 'tool_search_output', call_id: 's', execution: 'client', tools }] }));
    const nested = { type: 'namespace', name: 'outer', tools: [{ type: 'namespace', name: 'inner', tools: [] }, { type: 'function', name: 'go', description: 'Go.' }, search] };
    const listed = found([nested]);
    assert.equal(listed.request.messages.at(-1)?.content, 'Tools found, which can be called now:\n- outer__go: Go.');
    assert.deepEqual(listed.dropped, ['namespace', 'tool_search'], 'a namespace (or a search) in a namespace is left out, and not listed');
    refused({ tools: [search, { type: 'function', name: 'outer__go' }], input: [{ role: 'user', content: 'x' }, { type: 'tool_search_output', call_id: 's', execution: 'client', tools: [nested] }] }, /two tools are called "outer__go"/, 'input[1].tools[0].tools[1].name');
    // The same tool the request declares (a model that takes MCP tools in `tools`, after one that searched): one tool.
    const declared = found([nested, nested], [search, { type: 'namespace', name: 'outer', tools: [{ type: 'function', name: 'go', description: 'Go.' }] }]);
    assert.deepEqual((declared.request.tools as Array<{ function: { name: string } }>).map((tool) => tool.function.name), ['tool_search', 'outer__go']);
    assert.equal(declared.request.messages.at(-1)?.content, 'Tools found, which can be called now:\n- outer__go: Go.', 'listed once');
  });

  it('reads a tool search call\'s arguments as Codex can run them: a JSON string is the query, limit a positive integer, a call cut short none', () => {
    assert.deepEqual(searchArguments('"weather"', 'completed'), { query: 'weather' });
    assert.deepEqual(searchArguments('{"query":"w","limit":"3"}', 'completed'), { query: 'w', limit: 3 });
    assert.deepEqual(searchArguments('{"query":"w","limit":3.5}', 'completed'), { query: 'w', limit: 4 });
    assert.deepEqual(searchArguments('{"query":"w","limit":0}', 'completed'), { query: 'w' });
    assert.deepEqual(searchArguments('{"query":"w","limit":"many"}', 'completed'), { query: 'w' });
    assert.deepEqual(searchArguments('{"query":', 'incomplete'), {});
    assert.deepEqual(searchArguments('', 'in_progress'), {});
    assert.deepEqual(searchArguments('weather tools', 'completed'), { query: 'weather tools' });
    assert.deepEqual(searchArguments('{"query":5,"limit":1e21}', 'completed'), { query: '5' }, 'a limit no integer can hold is left out');
    assert.deepEqual(searchArguments('{"query":"w","limit":5000}', 'completed'), { query: 'w', limit: 100 });
  });

  it('answers a custom tool of a namespace with its namespace (Codex runs code mode\'s exec only under its namespace)', () => {
    const exec = { type: 'custom', name: 'exec', description: 'Run code' };
    const fields = { tools: [{ type: 'namespace', name: 'functions', description: '', tools: [exec] }] };
    const whole = toResponse(completion({ tool_calls: [{ id: 'call_e', type: 'function', function: { name: 'functions__exec', arguments: '{"input":"1+1"}' } }] }, 'tool_calls'), context(fields), HINTS);
    const item = whole.output.find((each) => each.type === 'custom_tool_call') as Record<string, unknown>;
    assert.deepEqual([item.name, item.namespace, item.input], ['exec', 'functions', '1+1']);
  });

  it("answers a call of the client-run tool_search as a tool_search_call whose arguments are an object, whole and streamed (no argument deltas: Codex reads the item)", () => {
    const search = { type: 'tool_search', execution: 'client', description: 'Search tools', parameters: { type: 'object', properties: { query: { type: 'string' } } } };
    const fields = { tools: [weather, search] };
    const whole = toResponse(completion({ tool_calls: [{ id: 'call_s', type: 'function', function: { name: 'tool_search', arguments: '{"query":"calendar"}' } }] }, 'tool_calls'), context(fields), HINTS);
    const item = whole.output.find((each) => each.type === 'tool_search_call') as Record<string, unknown>;
    assert.deepEqual({ ...item, id: 'x' }, { type: 'tool_search_call', id: 'x', status: 'completed', call_id: 'call_s', execution: 'client', arguments: { query: 'calendar' } });
    const bare = toResponse(completion({ tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'tool_search', arguments: 'calendar tools' } }] }, 'tool_calls'), context(fields), HINTS);
    assert.deepEqual((bare.output.find((each) => each.type === 'tool_search_call') as Record<string, unknown>).arguments, { query: 'calendar tools' });
    const stream = [
      chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_s', type: 'function', function: { name: 'tool_search', arguments: '{"query":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"calendar"}' } }] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const { events } = runTranslated(stream, [], fields);
    const added = events.find((event) => event.type === 'response.output_item.added')?.item as Record<string, unknown>;
    const done = events.find((event) => event.type === 'response.output_item.done')?.item as Record<string, unknown>;
    assert.deepEqual([added.type, added.status, added.arguments, added.execution], ['tool_search_call', 'in_progress', {}, 'client']);
    assert.deepEqual([done.type, done.id, done.call_id, done.arguments], ['tool_search_call', added.id, 'call_s', { query: 'calendar' }]);
    assert.equal(events.filter((event) => event.type.startsWith('response.function_call_arguments')).length, 0);
    const completed = events.at(-1) as unknown as { response: { output: Array<Record<string, unknown>> } };
    assert.deepEqual(completed.response.output.map((each) => each.type), ['tool_search_call']);
  });

  it("takes the tools Codex's newer models declare in an additional_tools input item, namespaces and custom tools as the tools parameter's", () => {
    const exec = { type: 'custom', name: 'exec', description: 'Run JavaScript.', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } };
    const wait = { type: 'function', name: 'wait', description: 'Wait.', parameters: { type: 'object', properties: { cell_id: { type: 'string' } } } };
    const translated = toChatRequest(request({
      input: [
        { type: 'additional_tools', id: 'at_1', role: 'developer', tools: [{ type: 'namespace', name: 'functions', description: '', tools: [exec, wait] }, { type: 'web_search' }] },
        { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Be brief.' }] },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
      ],
      reasoning: { effort: 'low', context: 'all_turns' },
    }));
    assert.deepEqual((translated.request.tools as Array<{ function: { name: string } }>).map((tool) => tool.function.name), ['functions__exec', 'functions__wait']);
    assert.deepEqual([...translated.tools], [['functions__exec', { name: 'exec', namespace: 'functions', custom: true }], ['functions__wait', { name: 'wait', namespace: 'functions', custom: false }]]);
    assert.deepEqual(translated.dropped, ['web_search']);
    assert.deepEqual(translated.request.messages.map((message) => message.role), ['system', 'user'], 'the item itself is no message');
    refused({ input: [{ type: 'additional_tools', tools: 'exec' }, { role: 'user', content: 'hi' }] }, /input\[0\]\.tools.*expected an array of tools/, 'input[0].tools');
  });

  it("refuses OpenAI's tool types the client runs (shell, patch) and their records: left out, the model would lose them without a word", () => {
    for (const type of ['local_shell', 'shell', 'apply_patch']) refused({ tools: [weather, { type }] }, new RegExp(`"${type}" is a tool type of OpenAI's Responses API.*Declare the tool as a function`), 'tools[1].type', 'unsupported_tool');
    const history = [{ role: 'user', content: 'ls' }, { type: 'local_shell_call', call_id: 'c1', status: 'completed', action: { type: 'exec', command: ['ls'] } }, { type: 'local_shell_call_output', call_id: 'c1', output: 'a.txt' }];
    refused({ input: history }, /"local_shell_call" is a tool type of OpenAI's Responses API/, 'input[1].type', 'unsupported_tool');
    refused({ input: [{ role: 'user', content: 'x' }, { type: 'apply_patch_call_output', call_id: 'c2', status: 'completed' }] }, /"apply_patch_call_output"/, 'input[1].type', 'unsupported_tool');
  });

  it('maps tool_choice, a namespaced or custom tool by its function name, allowed_tools by narrowing the tools', () => {
    const tools = [weather, namespace, patch];
    assert.equal(translate({ tools, tool_choice: 'required' }).tool_choice, 'required');
    assert.deepEqual(translate({ tools, tool_choice: { type: 'function', name: 'get_weather' } }).tool_choice, { type: 'function', function: { name: 'get_weather' } });
    assert.deepEqual(translate({ tools, tool_choice: { type: 'function', name: 'spawn_agent', namespace: 'multi_agent_v1' } }).tool_choice, { type: 'function', function: { name: 'multi_agent_v1__spawn_agent' } });
    assert.deepEqual(translate({ tools, tool_choice: { type: 'custom', name: 'apply_patch' } }).tool_choice, { type: 'function', function: { name: 'apply_patch' } });
    const allowed = translate({ tools, tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'function', name: 'get_weather' }] } });
    assert.equal(allowed.tool_choice, 'required');
    assert.deepEqual((allowed.tools as Array<{ function: { name: string } }>).map((tool) => tool.function.name), ['get_weather']);
    assert.equal(translate({ tools, parallel_tool_calls: false }).parallel_tool_calls, false);
    refused({ tools: [weather, { type: 'web_search' }], tool_choice: { type: 'web_search' } }, /only OpenAI runs/, 'tool_choice');
    refused({ tools, tool_choice: { type: 'function', name: 'nope' } }, /no tool called "nope"/, 'tool_choice.name');
  });

  it('maps output limit, sampling, effort (reasoning models only), structured output and the end user', () => {
    const out = translate({ max_output_tokens: 500, temperature: 0.2, top_p: 0.9, reasoning: { effort: 'high', summary: 'auto' }, text: { format: { type: 'json_schema', name: 'r', schema: { type: 'object' }, strict: true }, verbosity: 'low' }, user: 'u'.repeat(80), stream: true });
    assert.deepEqual(out, {
      model: 'deepseek-chat',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 500,
      temperature: 0.2,
      top_p: 0.9,
      stream: true,
      user: out.user,
      response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'object' }, strict: true } },
    });
    assert.match(String(out.user), /^sha256:[0-9a-f]{32}$/);
    assert.equal(toChatRequest(request({ model: 'o3', reasoning: { effort: 'xhigh' } })).request.reasoning_effort, 'high');
    assert.deepEqual(translate({ text: { format: { type: 'json_object' } } }).response_format, { type: 'json_object' });
    assert.equal(translate({ safety_identifier: 'sid' }).user, 'sid');
    refused({ text: { format: { type: 'xml' } } }, /json_schema/, 'text.format.type');
    refused({ temperature: 'hot' }, /number/, 'temperature');
  });

  it('accepts and drops what has no meaning without OpenAI (store, include, cache key, metadata, …), as Codex sends them', () => {
    const out = translate({ store: false, include: ['reasoning.encrypted_content'], prompt_cache_key: 'k', client_metadata: { a: '1' }, metadata: { b: '2' }, truncation: 'auto', service_tier: 'auto', a_future_field: 1 });
    assert.deepEqual(out, { model: 'deepseek-chat', messages: [{ role: 'user', content: 'hi' }] });
    for (const param of ['store', 'include', 'prompt_cache_key', 'client_metadata', 'metadata', 'truncation', 'service_tier']) assert.equal(RESPONSES_PARAMETERS[param]?.action, 'drop', param);
  });

  it('refuses what needs state the gateway does not keep: previous_response_id, conversation, item references, background', () => {
    refused({ previous_response_id: 'resp_1' }, /stateless through this gateway/, 'previous_response_id', 'unsupported_parameter');
    refused({ conversation: 'conv_1' }, /stateless/, 'conversation', 'unsupported_parameter');
    refused({ background: true }, /stored and polled/, 'background');
    refused({ input: [{ type: 'item_reference', id: 'msg_1' }] }, /an item_reference \(to msg_1\) names an item this key's provider never stored; it is stateless.*providerOptions\.openai\.store = false/, 'input[0]');
    refused({ input: [{ id: 'msg_1' }] }, /stateless/, 'input[0]');
    // A reasoning item referred back to (the Vercel AI SDK, storing by default) is left out: nothing of it was kept.
    const reasoned = translate({ input: [{ role: 'user', content: 'a' }, { type: 'item_reference', id: 'rs_chatcmpl9z_0' }, { type: 'function_call', call_id: 'c', name: 'get_weather', arguments: '{}' }, { type: 'function_call_output', call_id: 'c', output: 'sun' }] });
    assert.deepEqual(reasoned.messages.map((message) => message.role), ['user', 'assistant', 'tool']);
    assert.doesNotThrow(() => translate({ previous_response_id: null, background: false }));
  });

  it('skips records of tools OpenAI ran, refuses unknown items, needs some input', () => {
    const out = translate({ input: [{ role: 'user', content: 'a' }, { type: 'web_search_call', id: 'ws_1', status: 'completed' }, { type: 'compaction', encrypted_content: 'x' }] });
    assert.deepEqual(out.messages, [{ role: 'user', content: 'a' }]);
    refused({ input: [{ type: 'mystery' }] }, /"mystery" cannot be translated/, 'input[0].type');
    refused({ input: undefined }, /input/, 'input');
    refused({ input: [] }, /no message/, 'input');
    refused({ input: [{ role: 'critic', content: 'x' }] }, /role/, 'input[0].role');
    refused({ input: [{ type: 'function_call', name: 'f', arguments: '{}' }] }, /call_id/, 'input[0].call_id');
  });

  it("translates Codex's first turn: developer messages as system, eight functions and the namespace's flattened, web_search named as dropped", () => {
    const translated = toChatRequest(codexFirstTurn('deepseek-chat', 'What does this repo do?') as ResponsesRequest);
    assert.deepEqual(translated.request.messages.map((message) => message.role), ['system', 'system', 'user', 'user']);
    assert.equal((translated.request.tools as unknown[]).length, 12);
    assert.deepEqual(translated.dropped, ['web_search']);
    assert.equal(translated.request.stream, true);
    for (const field of ['store', 'include', 'prompt_cache_key', 'client_metadata', 'reasoning']) assert.equal(field in translated.request, false, field);
    assert.equal(translated.request.tool_choice, 'auto');
    assert.equal(translated.request.parallel_tool_calls, true);
  });
});

const context = (fields: Record<string, unknown> = {}) => {
  const translated = toChatRequest(request({ tools: [weather, namespace, patch], ...fields }));
  return { request: request({ tools: [weather, namespace, patch], ...fields }), tools: translated.tools };
};

function completion(message: Record<string, unknown>, finish = 'stop', usage: unknown = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, prompt_tokens_details: { cached_tokens: 30 }, completion_tokens_details: { reasoning_tokens: 5 } }): ChatCompletion {
  return { id: 'chatcmpl-9z', object: 'chat.completion', created: 1750000000, model: 'deepseek-chat', choices: [{ index: 0, message: { role: 'assistant', content: null, ...message }, finish_reason: finish }], usage } as ChatCompletion;
}

const HINTS = { promptTokens: 50, answerId: 'gw1' };

describe('chat answer → response', () => {
  it('gives reasoning, message and calls as output items, the text as output_text, and the usage in Responses terms', () => {
    const response = toResponse(
      completion({
        content: 'Checking.',
        reasoning_content: 'Two tools.',
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'multi_agent_v1__spawn_agent', arguments: '{}' } },
          { id: 'call_b', type: 'function', function: { name: 'apply_patch', arguments: '{"input":"*** Begin Patch"}' } },
          { id: 'call_c', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        ],
      }, 'tool_calls'),
      context({ instructions: 'Be terse.' }),
      HINTS,
    );
    assert.equal(response.id, 'resp_gw1');
    assert.equal(response.object, 'response');
    assert.equal(response.status, 'completed');
    assert.equal(response.instructions, 'Be terse.');
    assert.equal(response.created_at, 1750000000);
    assert.deepEqual(response.output, [
      { type: 'reasoning', id: 'rs_gw1_0', summary: [{ type: 'summary_text', text: 'Two tools.' }] },
      { type: 'message', id: 'msg_gw1_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Checking.', annotations: [], logprobs: [] }] },
      { type: 'function_call', id: 'fc_gw1_2', status: 'completed', arguments: '{}', call_id: 'call_a', name: 'spawn_agent', namespace: 'multi_agent_v1' },
      { type: 'custom_tool_call', id: 'ctc_gw1_3', status: 'completed', call_id: 'call_b', name: 'apply_patch', input: '*** Begin Patch' },
      { type: 'function_call', id: 'fc_gw1_4', status: 'completed', arguments: '{"city":"Paris"}', call_id: 'call_c', name: 'get_weather' },
    ]);
    assert.equal(response.output_text, 'Checking.');
    assert.deepEqual(response.usage, { input_tokens: 100, input_tokens_details: { cached_tokens: 30 }, output_tokens: 20, output_tokens_details: { reasoning_tokens: 5 }, total_tokens: 120 });
  });

  it('takes tool arguments sent as an object (some OpenAI-compatible servers) as their JSON text', () => {
    const response = toResponse(completion({ tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] }, 'tool_calls'), context(), HINTS);
    assert.equal((response.output[0] as { arguments?: string }).arguments, '{"city":"Paris"}');
  });

  it('an answer without a choice holding a message is a 502, not an empty completed response', () => {
    for (const choices of [[], [null, 5], [{ index: 0, message: null, finish_reason: 'stop' }]]) {
      assert.throws(() => toResponse({ ...completion({ content: 'x' }), choices } as unknown as ChatCompletion, context(), HINTS), (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response', JSON.stringify(choices));
    }
  });

  it("reads text sent as an array of parts (Mistral's reasoning models), whole and streamed", () => {
    const parts = [{ type: 'thinking', thinking: [{ type: 'text', text: 'hmm' }] }, { type: 'text', text: 'part one ' }, { type: 'text', text: 'part two' }];
    assert.equal(toResponse(completion({ content: parts }), context(), HINTS).output_text, 'part one part two');
    const { events } = runTranslated([chunk({ role: 'assistant', content: parts }), chunk({ content: [{ type: 'text', text: '!' }] }), chunk({}, 'stop'), 'data: [DONE]\n\n'].join(''));
    const done = events.find((event) => event.type === 'response.completed') as { response: { output_text?: string; output: Array<{ content?: Array<{ text?: string }> }> } } | undefined;
    assert.equal(done?.response.output[0]?.content?.[0]?.text, 'part one part two!');
  });

  it('is incomplete with max_output_tokens at a length limit, content_filter when filtered; a refusal is a refusal part', () => {
    const long = toResponse(completion({ content: 'cut' }, 'length'), context(), HINTS);
    assert.deepEqual([long.status, long.incomplete_details], ['incomplete', { reason: 'max_output_tokens' }]);
    assert.deepEqual(toResponse(completion({ content: '' }, 'content_filter'), context(), HINTS).incomplete_details, { reason: 'content_filter' });
    const refusal = toResponse(completion({ refusal: 'No.' }), context(), HINTS);
    assert.deepEqual(refusal.output[0]?.content, [{ type: 'refusal', refusal: 'No.' }]);
    // No usage from the provider: estimates (a client reads none as no tokens), as a stream's.
    assert.deepEqual(toResponse(completion({ content: 'twelve chars' }, 'stop', null), context(), HINTS).usage, { input_tokens: 50, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 53 });
  });
});

/** Runs a chat stream's text, cut into `chunks`, through the translator and the client's output. */
function runTranslated(text: string, cuts: number[] = [], fields: Record<string, unknown> = {}): { frames: string; events: ResponsesEvent[] } {
  const parser = new SseParser();
  const translate = chatStreamToResponses(context(fields), { promptTokens: 900, answerId: 'gw1' });
  const output = responsesStreamOutput('deepseek-chat', 'gw1');
  const bytes = Buffer.from(text);
  const items: Array<StreamItem<ResponsesEvent>> = [];
  const take = (events: ReturnType<SseParser['push']>): void => {
    for (const event of events) for (const item of decodeChatEvent(event)) items.push(...translate(item));
  };
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    take(parser.push(bytes.subarray(at, cut)));
    at = cut;
  }
  take(parser.end());
  const frames = items.map((item) => output.frame(item)).join('');
  return { frames, events: clientEvents(frames) };
}

/** Parses frames as openai-node and Codex do: the data's JSON; its `event:` line must name its type. */
function clientEvents(frames: string): ResponsesEvent[] {
  return frames
    .split('\n\n')
    .filter((block) => block !== '')
    .map((block) => {
      const name = /^event: (.+)$/m.exec(block)?.[1];
      const data = JSON.parse(block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n')) as ResponsesEvent;
      assert.equal(name, data.type, `event line of ${block}`);
      return data;
    });
}

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}): string =>
  `data: ${JSON.stringify({ id: 'chatcmpl-s1', object: 'chat.completion.chunk', created: 1750000000, model: 'deepseek-reasoner', choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;

const CHAT_STREAM = [
  chunk({ role: 'assistant', content: '' }),
  chunk({ reasoning_content: 'Weather, ' }),
  chunk({ reasoning_content: 'one city.' }),
  chunk({ content: 'Checking – ' }),
  chunk({ content: '☀️' }),
  chunk({ tool_calls: [{ index: 0, id: 'call_00_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city": ' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
  chunk({ tool_calls: [{ index: 1, id: 'call_01_b', type: 'function', function: { name: 'apply_patch', arguments: '{"input":"*** Begin' } }] }),
  chunk({ tool_calls: [{ index: 1, function: { arguments: ' Patch\\n"}' } }] }),
  chunk({ tool_calls: [{ index: 2, id: 'call_02_c', type: 'function', function: { name: 'multi_agent_v1__spawn_agent', arguments: '{}' } }] }),
  chunk({}, 'tool_calls'),
  `data: ${JSON.stringify({ id: 'chatcmpl-s1', object: 'chat.completion.chunk', created: 1750000000, model: 'deepseek-reasoner', choices: [], usage: { prompt_tokens: 900, completion_tokens: 60, total_tokens: 960, prompt_tokens_details: { cached_tokens: 500 }, completion_tokens_details: { reasoning_tokens: 9 } } })}\n\n`,
  'data: [DONE]\n\n',
].join('');

describe('chat stream → Responses stream', () => {
  it('reads reasoning from `reasoning` too (OpenRouter, newer vLLM), streamed and whole', () => {
    const { events } = runTranslated([chunk({ role: 'assistant', reasoning: 'Think' }), chunk({ reasoning: 'ing.' }), chunk({ content: 'Done.' }), chunk({}, 'stop'), 'data: [DONE]\n\n'].join(''));
    const done = events.filter((event) => event.type === 'response.output_item.done').map((event) => event.item as Record<string, unknown>);
    assert.deepEqual(done.map((item) => item.type), ['reasoning', 'message']);
    assert.deepEqual(done[0]?.summary, [{ type: 'summary_text', text: 'Thinking.' }]);
    assert.equal(toResponse(completion({ content: 'Done.', reasoning: 'Thinking.' }), context(), HINTS).output[0]?.type, 'reasoning');
  });

  it("adds a call's item once its name has come, even after its first fragments (a custom tool's item is its own type from the start); one whose name never comes, at the end", () => {
    const stream = [
      chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_p', type: 'function', function: { arguments: '{"input":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { name: 'apply_patch' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"*** Begin Patch"}' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_w', type: 'function', function: { arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ index: 1, function: { name: 'get_weather', arguments: '"Paris"}' } }] }),
      chunk({ tool_calls: [{ index: 2, id: 'call_x', type: 'function', function: { arguments: '{}' } }] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const { events } = runTranslated(stream);
    const added = events.filter((event) => event.type === 'response.output_item.added').map((event) => event.item as Record<string, unknown>);
    const done = events.filter((event) => event.type === 'response.output_item.done').map((event) => event.item as Record<string, unknown>);
    assert.deepEqual(added.map((item) => [item.type, item.id, item.name]), done.map((item) => [item.type, item.id, item.name]), 'added as it will be done');
    assert.deepEqual(done.map((item) => [item.type, item.name]), [['custom_tool_call', 'apply_patch'], ['function_call', 'get_weather'], ['function_call', '']]);
    assert.equal(done[0]?.input, '*** Begin Patch');
    assert.equal(done[1]?.arguments, '{"city":"Paris"}');
    const deltas = events.filter((event) => event.type === 'response.function_call_arguments.delta' && event.item_id === done[1]?.id).map((event) => event.delta);
    assert.equal(deltas.join(''), '{"city":"Paris"}');
  });

  it('numbers every event in order, opens with created and in_progress, and ends with completed carrying every item and the usage', () => {
    const { events } = runTranslated(CHAT_STREAM);
    assert.deepEqual(events.map((event) => event.sequence_number), events.map((_, index) => index));
    assert.deepEqual(events.map((event) => event.type), [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.reasoning_summary_part.added',
      'response.reasoning_summary_text.delta',
      'response.reasoning_summary_text.delta',
      'response.reasoning_summary_text.done',
      'response.reasoning_summary_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.custom_tool_call_input.delta',
      'response.custom_tool_call_input.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const created = events[0]?.response as ResponseObject;
    assert.deepEqual([created.id, created.status, created.output, created.usage, created.model], ['resp_gw1', 'in_progress', [], null, 'deepseek-reasoner']);
    const done = events.filter((event) => event.type === 'response.output_item.done').map((event) => event.item);
    assert.deepEqual(done, [
      { type: 'reasoning', id: 'rs_gw1_0', summary: [{ type: 'summary_text', text: 'Weather, one city.' }] },
      { type: 'message', id: 'msg_gw1_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Checking – ☀️', annotations: [], logprobs: [] }] },
      { type: 'function_call', id: 'fc_gw1_2', status: 'completed', arguments: '{"city": "Paris"}', call_id: 'call_00_a', name: 'get_weather' },
      { type: 'custom_tool_call', id: 'ctc_gw1_3', status: 'completed', call_id: 'call_01_b', name: 'apply_patch', input: '*** Begin Patch\n' },
      { type: 'function_call', id: 'fc_gw1_4', status: 'completed', arguments: '{}', call_id: 'call_02_c', name: 'spawn_agent', namespace: 'multi_agent_v1' },
    ]);
    const completed = events.at(-1)?.response as ResponseObject;
    assert.equal(completed.status, 'completed');
    assert.deepEqual(completed.output, done);
    assert.deepEqual(completed.usage, { input_tokens: 900, input_tokens_details: { cached_tokens: 500 }, output_tokens: 60, output_tokens_details: { reasoning_tokens: 9 }, total_tokens: 960 });
    const custom = events.find((event) => event.type === 'response.custom_tool_call_input.delta');
    assert.equal(custom?.delta, '*** Begin Patch\n');
    const added = events.find((event) => event.type === 'response.output_item.added' && (event.item as { type: string }).type === 'function_call');
    assert.deepEqual(added?.item, { type: 'function_call', id: 'fc_gw1_2', status: 'in_progress', arguments: '', call_id: 'call_00_a', name: 'get_weather' });
  });

  it('gives the same frames when the provider stream is split at every byte boundary', () => {
    const expected = runTranslated(CHAT_STREAM).frames;
    const length = Buffer.byteLength(CHAT_STREAM);
    for (let cut = 1; cut < length; cut++) assert.equal(runTranslated(CHAT_STREAM, [cut]).frames, expected, `split at byte ${cut}`);
    assert.equal(runTranslated(CHAT_STREAM, Array.from({ length: length - 1 }, (_, i) => i + 1)).frames, expected, 'one byte at a time');
  });

  /** Asserts numbers count from 0 and each item is added, given its own deltas and `.done` events, then done: one at a time, in output order. */
  const assertWellFormed = (events: ResponsesEvent[]): void => {
    let open: number | null = null;
    let next = 0;
    events.forEach((event, index) => {
      const at = `${JSON.stringify(event)} (open: ${String(open)})`;
      assert.equal(event.sequence_number, index, `number of ${at}`);
      if (event.type === 'response.output_item.added') {
        assert.equal(open, null, `added while an item is open: ${at}`);
        assert.equal(event.output_index, next++, `added out of order: ${at}`);
        open = next - 1;
      } else if (event.type === 'response.output_item.done') {
        assert.equal(event.output_index, open, `done of an item that is not open: ${at}`);
        open = null;
      } else if (event.output_index !== undefined) assert.equal(event.output_index, open, `event for an item that is not open: ${at}`);
      else assert.equal(open, null, `${event.type} inside an item: ${at}`);
    });
  };

  it('keeps items well-formed and arguments exact when a server interleaves parallel calls, at every byte split', () => {
    const call = (index: number, args: string, start?: { id: string; name: string }): unknown =>
      start === undefined ? { index, function: { arguments: args } } : { index, id: start.id, type: 'function', function: { name: start.name, arguments: args } };
    // Calls 0 and 1 start together, then their arguments alternate (as some OpenAI-compatible servers send them); call 1 is a custom tool's.
    const text = [
      chunk({ role: 'assistant', content: 'Checking both.' }),
      chunk({ tool_calls: [call(0, '', { id: 'call_A', name: 'get_weather' }), call(1, '', { id: 'call_B', name: 'apply_patch' })] }),
      chunk({ tool_calls: [call(0, '{"city": "Pa')] }),
      chunk({ tool_calls: [call(1, '{"input": "*** Begin')] }),
      chunk({ tool_calls: [call(0, 'ris", "unit": "°C"}')] }),
      chunk({ tool_calls: [call(1, ' Patch\\n"}')] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const { frames, events } = runTranslated(text);
    assertWellFormed(events);
    const expected = [
      { type: 'message', id: 'msg_gw1_0', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Checking both.', annotations: [], logprobs: [] }] },
      { type: 'function_call', id: 'fc_gw1_1', status: 'completed', arguments: '{"city": "Paris", "unit": "°C"}', call_id: 'call_A', name: 'get_weather' },
      { type: 'custom_tool_call', id: 'ctc_gw1_2', status: 'completed', call_id: 'call_B', name: 'apply_patch', input: '*** Begin Patch\n' },
    ];
    assert.deepEqual(events.filter((event) => event.type === 'response.output_item.done').map((event) => event.item), expected);
    assert.deepEqual(events.filter((event) => event.type === 'response.function_call_arguments.done').map((event) => event.arguments), ['{"city": "Paris", "unit": "°C"}']);
    assert.deepEqual(events.filter((event) => event.type === 'response.custom_tool_call_input.done').map((event) => event.input), ['*** Begin Patch\n']);
    assert.deepEqual((events.at(-1)?.response as ResponseObject).output, expected);
    const bytes = Buffer.from(text);
    for (let cut = 1; cut < bytes.length; cut++) assert.equal(runTranslated(text, [cut]).frames, frames, `split at byte ${cut}`);
  });

  it("keeps a custom tool's bare input open to the end, though part of it reads as a whole JSON object", () => {
    const text = [
      chunk({ tool_calls: [{ index: 0, id: 'call_P', type: 'function', function: { name: 'apply_patch', arguments: '{"a": 1}' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_W', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Rome"}' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '\n{"b": 2}' } }] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const { events } = runTranslated(text);
    assertWellFormed(events);
    const done = events.filter((event) => event.type === 'response.output_item.done').map((event) => event.item as Record<string, unknown>);
    assert.deepEqual(done.map((item) => item.input ?? item.arguments), ['{"a": 1}\n{"b": 2}', '{"city": "Rome"}']);
  });

  it('ends incomplete at a length limit, and estimates the usage a provider did not send (Codex needs one)', () => {
    // Three deltas: an output token each, as estimated.
    const { events } = runTranslated([chunk({ content: 'Cut' }), chunk({ content: ' sh' }), chunk({ content: 'o' }), chunk({}, 'length'), 'data: [DONE]\n\n'].join(''));
    const last = events.at(-1) as ResponsesEvent;
    assert.equal(last.type, 'response.incomplete');
    const response = last.response as ResponseObject;
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.deepEqual(response.usage, { input_tokens: 900, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 903 });
  });

  it('ends a failure mid-stream with response.failed after the last event, in Codex\'s codes, and nothing after it', () => {
    const failing = [chunk({ content: 'Hel' }), `data: ${JSON.stringify({ error: { message: 'Rate limit reached for requests', type: 'rate_limit_error', code: 'rate_limit_exceeded' } })}\n\n`].join('');
    const { events } = runTranslated(failing);
    const failed = events.at(-1) as ResponsesEvent;
    assert.equal(failed.type, 'response.failed');
    assert.equal(failed.sequence_number, events.length - 1);
    const response = failed.response as ResponseObject;
    assert.deepEqual([response.id, response.status], ['resp_gw1', 'failed']);
    assert.equal(response.error?.code, 'rate_limit_exceeded');
    assert.match(String(response.error?.message), /try again in 1s/);
  });
});

describe('Responses failures', () => {
  it('names context_length_exceeded and insufficient_quota where the provider said so, rate limits with a wait Codex can parse', () => {
    assert.deepEqual(responseError(new GatewayError(400, 'This model\'s maximum context length is 128000 tokens.', { code: 'context_length_exceeded' })).code, 'context_length_exceeded');
    assert.deepEqual(responseError(new GatewayError(400, 'prompt is too long: 210000 tokens > 200000 maximum')).code, 'context_length_exceeded');
    // A parameter named after the context is no overflow: Codex stops for good on one.
    assert.deepEqual(responseError(new GatewayError(400, 'Unrecognized request argument supplied: context_window_size')).code, 'server_error');
    assert.deepEqual(responseError(new GatewayError(429, 'You exceeded your current quota.', { type: 'insufficient_quota', code: 'insufficient_quota' })).code, 'insufficient_quota');
    assert.deepEqual(responseError(new GatewayError(429, 'Slow down.', { headers: { 'retry-after': '7' } })), { code: 'rate_limit_exceeded', message: 'Slow down. Please try again in 7s.' });
    assert.deepEqual(responseError(new GatewayError(529, 'Overloaded', { type: 'overloaded_error' })).code, 'server_is_overloaded');
    assert.deepEqual(responseError(new GatewayError(502, 'The connection to the provider was lost mid-stream.')).code, 'server_error');
  });

  it('frames a failure before anything as response.created then response.failed, and only once', () => {
    const output = responsesStreamOutput('gpt-5', 'gw1');
    const frames = output.frame({ kind: 'error', error: new GatewayError(502, 'lost') });
    const events = clientEvents(frames);
    assert.deepEqual(events.map((event) => [event.type, event.sequence_number]), [['response.created', 0], ['response.failed', 1]]);
    // Its id is the one a translated answer of this request would have had: failures stay apart.
    assert.deepEqual(events.map((event) => (event.response as { id?: unknown }).id), ['resp_gw1', 'resp_gw1']);
    assert.equal(output.frame({ kind: 'error', error: new GatewayError(502, 'again') }), '');
  });

  it("passing through, numbers its failure after the provider's last event, found in bytes it did not parse", () => {
    const output = responsesStreamOutput('gpt-5', 'gw1');
    output.frame({ kind: 'event', event: { type: 'response.created', sequence_number: 0, response: { id: 'resp_up', status: 'in_progress' } } });
    output.passed(Buffer.from('event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":17,"delta":"\\"sequence_number\\":99"}\n\n'));
    const [failed] = clientEvents(output.frame({ kind: 'error', error: new GatewayError(502, 'lost') }));
    assert.deepEqual([failed?.type, failed?.sequence_number, (failed?.response as ResponseObject).id], ['response.failed', 18, 'resp_up']);
  });

  it('reads an event named error as an error event whatever its data says, its cause kept; a chat event so named is an error too', () => {
    const [item] = decodeResponsesEvent({ event: 'error', data: '{"error":{"code":"server_error","message":"boom"}}' });
    assert.ok(item?.kind === 'event');
    assert.deepEqual(item.event, { code: 'server_error', message: 'boom', type: 'error' });
    assert.match('event: error\ndata: {"error":{}}\n\n', RESPONSES_NOTABLE, 'not relayed as bytes');
    const [own] = decodeResponsesEvent({ event: 'error', data: '{"type":"error","code":"x","message":"y","sequence_number":3}' });
    assert.ok(own?.kind === 'event' && own.data === '{"type":"error","code":"x","message":"y","sequence_number":3}', "OpenAI's own, as it came");
    const [chat] = decodeChatEvent({ event: 'error', data: '{"message":"overloaded","code":"503"}' });
    assert.ok(chat?.kind === 'error');
    assert.equal(chat.error.message, 'overloaded');
  });

  it("reads chat's error shapes in a Responses stream (a server or proxy in front of the provider) as the stream's failure, and only those", () => {
    for (const [data, status] of [['{"error":{"code":"rate_limit_exceeded","message":"slow down"}}', 429], ['{"object":"error","message":"slow down","type":"BadRequestError","param":null,"code":400}', 400], ['{"error":{"message":"slow down","code":503}}', 503]] as const) {
      assert.match(`data: ${data}\n\n`, RESPONSES_NOTABLE, data);
      const [item] = decodeResponsesEvent({ event: undefined, data });
      assert.ok(item?.kind === 'error', data);
      assert.deepEqual([item.error.status, item.error.message], [status, 'slow down']);
    }
    // Named an error, one of vLLM's is passed on as an error event, failing the stream at the status it names.
    const [named] = decodeResponsesEvent({ event: 'error', data: '{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}' });
    assert.ok(named?.kind === 'event');
    const watch = responsesStreamWatch();
    watch.see(named.event);
    assert.equal(watch.failure?.()?.status, 400);
    const delta = JSON.stringify({ type: 'response.output_text.delta', sequence_number: 3, delta: '{"error":{"object":"error"}}' });
    assert.doesNotMatch(`data: ${delta}\n\n`, RESPONSES_NOTABLE, 'text that reads like one is escaped');
    const completed = JSON.stringify({ type: 'response.completed', sequence_number: 9, response: { id: 'resp_e', status: 'completed', error: null, output: [] } });
    assert.equal(decodeResponsesEvent({ event: undefined, data: completed })[0]?.kind, 'event');
  });

  it("passes a provider's own response.failed on, then ends the stream as failed, with no second one", () => {
    const data = '{"type":"response.failed","sequence_number":4,"response":{"id":"resp_f","status":"failed","error":{"code":"rate_limit_exceeded","message":"Rate limit reached. Please try again in 20s."}}}';
    const items = decodeResponsesEvent({ event: 'response.failed', data });
    assert.equal(items.length, 2);
    const error = items[1]?.kind === 'error' ? items[1].error : null;
    assert.deepEqual([error?.status, error?.code], [429, 'rate_limit_exceeded']);
    const output = responsesStreamOutput('gpt-5', 'gw1');
    assert.equal(items.map((item) => output.frame(item)).join(''), `event: response.failed\ndata: ${data}\n\n`);
  });
});

const PASS_THROUGH = [
  'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_pt","object":"response","status":"in_progress","output":[],"usage":null}}\n\n',
  'event: response.output_item.added\ndata: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[]}}\n\n',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi ☀️"}\n\n',
  'event: response.output_item.done\ndata: {"type":"response.output_item.done","sequence_number":3,"output_index":0,"item":{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi ☀️","annotations":[]}]}}\n\n',
  'event: response.completed\ndata: {"type":"response.completed","sequence_number":4,"response":{"id":"resp_pt","object":"response","status":"completed","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi ☀️","annotations":[]}]}],"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":20},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":58}}}\n\n',
].join('');

describe("a provider's Responses stream", () => {
  const read = (cuts: number[]) => {
    const parser = new SseParser();
    const watch = responsesStreamWatch();
    const assembler = new ResponseAssembler();
    const items: Array<StreamItem<ResponsesEvent>> = [];
    const bytes = Buffer.from(PASS_THROUGH);
    let at = 0;
    for (const cut of [...cuts, bytes.length]) {
      for (const event of parser.push(bytes.subarray(at, cut))) items.push(...responsesTarget.decodeEvent(event));
      at = cut;
    }
    for (const item of items) {
      if (item.kind !== 'event') continue;
      watch.see(item.event);
      assembler.add(item.event);
    }
    return { items, watch, response: assembler.result() };
  };

  it('is read for its id, its usage (cached tokens apart) and its end; the log gets the final response', () => {
    const { items, watch, response } = read([]);
    assert.deepEqual(items.map((item) => item.kind), ['event', 'event', 'event', 'event', 'event', 'end']);
    assert.equal(watch.answerId?.(), 'resp_pt');
    assert.equal(watch.complete, true);
    assert.deepEqual(watch.usage(), { input: 30, cacheRead: 20, cacheWrite: 0, cacheWrite1h: 0, output: 8, reasoning: 3 });
    assert.equal(response.status, 'completed');
    assert.equal(response.id, 'resp_pt');
  });

  it('reads the same at every byte boundary', () => {
    const expected = JSON.stringify(read([]).items);
    for (let cut = 1; cut < Buffer.byteLength(PASS_THROUGH); cut++) assert.equal(JSON.stringify(read([cut]).items), expected, `split at byte ${cut}`);
  });

  it('assembles a stream cut short from the items that were done', () => {
    const assembler = new ResponseAssembler();
    const parser = new SseParser();
    for (const event of parser.push(Buffer.from(PASS_THROUGH.split('event: response.completed')[0] as string))) {
      for (const item of decodeResponsesEvent(event)) if (item.kind === 'event') assembler.add(item.event);
    }
    const response = assembler.result();
    assert.deepEqual([response.id, response.status, response.output.length], ['resp_pt', 'incomplete', 1]);
  });

  it('names only the events the gateway must read as notable, never text that quotes them', () => {
    for (const line of PASS_THROUGH.split('\n').filter((text) => text.startsWith('data: '))) {
      const type = (JSON.parse(line.slice(6)) as ResponsesEvent).type;
      assert.equal(responsesTarget.notable.test(line), ['response.created', 'response.completed'].includes(type), type);
    }
    assert.equal(responsesTarget.notable.test('{"type":"response.output_text.delta","delta":"\\"type\\":\\"error\\""}'), false);
    assert.equal(responsesTarget.notable.test('{"type":"error","code":"x"}'), true);
  });
});

describe('Responses through the hub to Anthropic (a chain: responses → chat → messages)', () => {
  const router = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1750000000 });
  const route = router.route(responsesClient, ['messages']);

  it('sends Anthropic a Messages request and answers its Message as a response', () => {
    assert.equal(route.translation.identity, false);
    assert.equal(route.target.name, 'messages');
    const exchange = route.translation.exchange(request({ model: 'claude-sonnet-4-5', instructions: 'Be terse.', input: 'weather?', tools: [weather, { type: 'web_search' }], max_output_tokens: 300 }));
    const sent = exchange.request as AnthropicRequest;
    assert.deepEqual([sent.model, sent.system, sent.max_tokens, sent.messages], ['claude-sonnet-4-5', [{ type: 'text', text: 'Be terse.' }], 300, [{ role: 'user', content: 'weather?' }]]);
    assert.deepEqual((sent.tools as Array<{ name: string }>).map((tool) => tool.name), ['get_weather']);
    assert.deepEqual(exchange.droppedTools, ['web_search']);
    const message: AnthropicResponse = {
      id: 'msg_01A', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5',
      content: [{ type: 'thinking', thinking: 'Paris.', signature: 'sig' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }],
      stop_reason: 'tool_use', stop_sequence: null, usage: { input_tokens: 40, output_tokens: 12, cache_read_input_tokens: 10 },
    };
    const response = exchange.response(message, { promptTokens: 40, answerId: 'gw1' }) as ResponseObject;
    assert.deepEqual(response.output.map((item) => item.type), ['reasoning', 'function_call']);
    assert.deepEqual([response.output[1]?.call_id, response.output[1]?.arguments], ['toolu_1', '{"city":"Paris"}']);
    assert.equal((response.usage as { input_tokens: number }).input_tokens, 50);
  });

  it("translates Anthropic's stream event by event into a Responses stream", () => {
    const exchange = route.translation.exchange(request({ model: 'claude-sonnet-4-5' }));
    const stream = exchange.stream({ promptTokens: 10, answerId: 'gw1' });
    const anthropicEvents = [
      '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":12,"output_tokens":1}}}',
      '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
      '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
      '{"type":"content_block_stop","index":0}',
      '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}',
      '{"type":"message_stop"}',
    ];
    const output = responsesStreamOutput('claude-sonnet-4-5', 'gw1');
    const frames = anthropicEvents.flatMap((data) => decodeMessagesEvent({ event: undefined, data })).flatMap((item) => stream(item)).map((item) => output.frame(item as StreamItem<ResponsesEvent>)).join('');
    const events = clientEvents(frames);
    assert.equal(events[0]?.type, 'response.created');
    assert.equal(events.find((event) => event.type === 'response.output_text.delta')?.delta, 'Hello');
    const completed = events.at(-1) as ResponsesEvent;
    assert.equal(completed.type, 'response.completed');
    assert.deepEqual((completed.response as ResponseObject).usage, { input_tokens: 12, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 });
  });
});

describe('owners of stored responses', () => {
  const key = { id: 'vk_team_a' } as VirtualKey;

  it('tags a stored response with a digest of its key: spliced in when there is no metadata, merged (and never forged) when there is', () => {
    const tag = ownerTag('vk_team_a');
    assert.match(tag, /^[0-9a-f]{32}$/);
    assert.notEqual(tag, ownerTag('vk_team_b'));
    const raw = Buffer.from('  {"model":"gpt-5","input":"hi"}');
    assert.equal(withOwner({ model: 'gpt-5', input: 'hi' }, raw, key).toString(), `  {"metadata":{"llm_gateway_owner":"${tag}"},"model":"gpt-5","input":"hi"}`);
    assert.equal(withOwner({ model: 'gpt-5' }, '{"model":"gpt-5"}', key), `{"metadata":{"llm_gateway_owner":"${tag}"},"model":"gpt-5"}`);
    const merged = JSON.parse(String(withOwner({ model: 'gpt-5', metadata: { team: 'a', llm_gateway_owner: 'forged' } }, '', key)));
    assert.deepEqual(merged.metadata, { team: 'a', llm_gateway_owner: tag });
    assert.deepEqual(JSON.parse(String(withOwner({ model: 'gpt-5', metadata: null }, '', key))).metadata, { llm_gateway_owner: tag });
    const full = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v']));
    assert.throws(() => withOwner({ model: 'gpt-5', metadata: full }, '', key), (err: unknown) => err instanceof GatewayError && err.param === 'metadata');
  });

  it('reads the owner from a response, none from one without the tag', () => {
    assert.equal(ownerOf({ id: 'r', metadata: { llm_gateway_owner: 'abc' } }), 'abc');
    assert.equal(ownerOf({ id: 'r', metadata: {} }), '');
    assert.equal(ownerOf({ id: 'r' }), '');
    assert.equal(ownerOf(null), '');
  });

  it('remembers a bounded number of owners, forgetting the oldest first', () => {
    const owners = new ResponseOwners(2);
    owners.set('s', 'a', '1');
    owners.set('s', 'b', '2');
    owners.set('s', 'a', '1');
    owners.set('s', 'c', '3');
    assert.deepEqual([owners.get('s', 'a'), owners.get('s', 'b'), owners.get('s', 'c'), owners.size], ['1', undefined, '3', 2]);
    owners.delete('s', 'a');
    assert.equal(owners.get('s', 'a'), undefined);
  });

  it('remembers an owner for the server it was read from (a target\'s storage), and for no other', () => {
    const owners = new ResponseOwners();
    owners.set('openai-account', 'resp_1', 'tag-a');
    owners.set('own-server', 'resp_1', 'tag-b');
    assert.deepEqual([owners.get('openai-account', 'resp_1'), owners.get('own-server', 'resp_1'), owners.get('other', 'resp_1')], ['tag-a', 'tag-b', undefined]);
    owners.delete('own-server', 'resp_1');
    assert.equal(owners.get('openai-account', 'resp_1'), 'tag-a');
  });

  it("keeps output items apart from responses, per server, bounded; an item named again is kept longest, and an item once a key's is never another's", () => {
    const items = new ItemOwners(3);
    items.add('s', 'msg_alice', 'alice');
    items.add('s', 'msg_alice', 'mallory');
    assert.equal(items.get('s', 'msg_alice'), 'alice', 'the first owner stays');
    // A conversation in use names its items on every turn: a flood of others' items does not push them out.
    for (let i = 0; i < 10; i++) {
      items.add('s', `msg_flood_${i}`, 'mallory');
      assert.equal(items.get('s', 'msg_alice'), 'alice', `after ${i + 1} others`);
    }
    assert.equal(items.get('s', 'msg_flood_0'), undefined, 'the least recently named goes first');
    assert.equal(items.get('other', 'msg_alice'), undefined, 'another server: unknown');
    const owners = new ResponseOwners();
    owners.items.add('s', 'resp_x', 'alice');
    assert.equal(owners.get('s', 'resp_x'), undefined, "an item id does not vouch for a response of the same id");
  });

  it("when full, forgets the least recently named item of the key holding the most: a key storing many cannot push out another's conversation", () => {
    const items = new ItemOwners(100);
    for (let i = 0; i < 5; i++) items.add('s', `msg_victim_${i}`, 'victim');
    // Another key's flood, never naming the victim's items again.
    for (let i = 0; i < 1000; i++) items.add('s', `msg_flood_${i}`, 'attacker');
    for (let i = 0; i < 5; i++) assert.equal(items.get('s', `msg_victim_${i}`), 'victim', `victim item ${i}`);
    assert.equal(items.get('s', 'msg_flood_999'), 'attacker', "the flood's newest stay");
    assert.equal(items.get('s', 'msg_flood_0'), undefined, "the flood's oldest went");
    // Two keys at the cap share it: the larger gives way, whichever adds.
    const shared = new ItemOwners(10);
    for (let i = 0; i < 6; i++) shared.add('s', `a${i}`, 'a');
    for (let i = 0; i < 6; i++) shared.add('s', `b${i}`, 'b');
    assert.deepEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'b5'].map((id) => shared.get('s', id)), [undefined, 'a', 'a', undefined, 'b', 'b']);
    // A third key adding: the two that hold the most give up items in turn, neither drained alone.
    const three = new ItemOwners(200);
    for (let i = 0; i < 100; i++) three.add('s', `v${i}`, 'v');
    for (let i = 0; i < 100; i++) three.add('s', `w${i}`, 'w');
    for (let i = 0; i < 60; i++) three.add('s', `c${i}`, 'c');
    const kept = (prefix: string, owner: string, n: number): number => Array.from({ length: n }, (_, i) => three.get('s', `${prefix}${i}`)).filter((tag) => tag === owner).length;
    assert.deepEqual([kept('v', 'v', 100), kept('w', 'w', 100), kept('c', 'c', 60)], [70, 70, 60]);
  });

  it("asks a cluster worker to catch up with its siblings' items before it refuses a reference it does not know", async () => {
    const key = { id: 'vk_one' } as VirtualKey;
    const target = { storage: 's' } as Target;
    const input = [{ type: 'item_reference', id: 'msg_sibling' }];
    const owners = new ResponseOwners();
    assert.throws(() => ensureItemsOwned(input, key, target, owners.items), /names no item/, 'alone, at once');
    let asked = 0;
    owners.items.catchUp = async () => {
      asked++;
      owners.items.add('s', 'msg_sibling', ownerTag('vk_one'));
    };
    await ensureItemsOwned(input, key, target, owners.items);
    assert.equal(asked, 1);
    assert.equal(ensureItemsOwned(input, key, target, owners.items), undefined, 'known now: no asking, no promise');
    await assert.rejects(async () => ensureItemsOwned([{ id: 'msg_nobody' }], key, target, owners.items), /names no item/);
    assert.equal(asked, 2);
  });

  it('remembers no id longer than a provider would write (a server answering megabyte ids grew the gateway without bound)', () => {
    const owners = new ResponseOwners();
    const long = `resp_${'x'.repeat(MAX_REMEMBERED_ID_CHARS)}`;
    owners.set('s', long, 'tag');
    assert.equal(owners.size, 0);
    const told: string[][] = [];
    owners.items.onAdded = (_storage, ids) => told.push([...ids]);
    owners.items.addAll('s', [long, 'msg_ok'], 'tag');
    assert.deepEqual([owners.items.get('s', long), owners.items.get('s', 'msg_ok'), told], [undefined, 'tag', [['msg_ok']]]);
    owners.items.addAll('s', [long], 'tag');
    assert.equal(told.length, 1, 'nothing said to the other workers either');
  });
});

describe('review findings, each a regression test', () => {
  it('finds a top-level key written twice or with an escape, and only a top-level key', () => {
    const plain = (text: string): boolean => {
      const raw = Buffer.from(text);
      const scanned = plainUniqueKeys(raw);
      // A large body's parse saw its top-level keys already: it must say the same (pieces of 8 bytes make these large).
      assert.equal(plainUniqueKeys(raw, parseJsonBytes(raw, 8) as object), scanned, text);
      return scanned;
    };
    assert.equal(plain('{"previous_response_id":"resp_b","input":"x","previous_response_id" : null}'), false);
    assert.equal(plain('{"previous_resp\\u006fnse_id":"resp_b","previous_response_id":null}'), false, 'the same name once escaped');
    assert.equal(plain('{"model":"gpt-5","st\\u006fre":false}'), false, 'an escaped key alone');
    assert.equal(plain('{"previous_response_id":"resp_b","input":"the \\"previous_response_id\\": field"}'), true);
    assert.equal(plain('{"input":"previous_response_id","previous_response_id":null}'), true);
    assert.equal(plain(' { "input" : [{"type":"message","type":"x"}], "metadata":{"a":"1","a":"2"}, "tools" : [ {"name":"a\\"b"} ] } '), true, 'nested keys are not the request\'s');
    assert.equal(plain('{"a":{"b":[1,{"c":2}]},"a\\"":1,"b":"}"}'), false, 'an escaped quote in a key');
  });

  it('keeps an event name to one line, so a provider cannot start events of its own, and names an event that came without one after its type', () => {
    assert.equal(sseFrame('{}', 'response.created\ndata: {"injected":true}\n\nevent: x'), 'event: response.createddata: {"injected":true}event: x\ndata: {}\n\n');
    const output = responsesStreamOutput('gpt-5', 'gw1');
    const [item] = decodeResponsesEvent({ event: undefined, data: '{"type":"response.created","sequence_number":0,"response":{"id":"r"}}' });
    assert.equal(output.frame(item as StreamItem<ResponsesEvent>), 'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"r"}}\n\n', 'a provider that names no event has it named after its type');
    // A type that would start events of its own, as that name, stays one line.
    const [typed] = decodeResponsesEvent({ event: undefined, data: '{"type":"x\\n\\nevent: y","sequence_number":1}' });
    assert.equal(output.frame(typed as StreamItem<ResponsesEvent>), 'event: xevent: y\ndata: {"type":"x\\n\\nevent: y","sequence_number":1}\n\n');
  });

  it("keeps a provider's error event as the cause of a failure that follows it", () => {
    const output = responsesStreamOutput('gpt-5', 'gw1');
    for (const data of ['{"type":"response.created","sequence_number":0,"response":{"id":"r"}}', '{"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"Please try again in 20s."}']) {
      for (const item of decodeResponsesEvent({ event: undefined, data })) output.frame(item);
    }
    const [failed] = clientEvents(output.frame({ kind: 'error', error: new GatewayError(502, 'The connection to the provider was lost mid-stream.') }));
    assert.deepEqual([failed?.sequence_number, (failed?.response as ResponseObject).error], [2, { code: 'rate_limit_exceeded', message: 'Please try again in 20s.' }]);
  });

  it('refuses a tool_choice that needs a tool when every tool was one only OpenAI runs', () => {
    refused({ tools: [{ type: 'web_search' }], tool_choice: { type: 'web_search' } }, /only OpenAI runs/, 'tool_choice');
    refused({ tools: [{ type: 'web_search' }], tool_choice: 'required' }, /"required"/, 'tool_choice');
    assert.equal(translate({ tools: [{ type: 'web_search' }], tool_choice: 'auto' }).tool_choice, undefined);
  });

  it('refuses metadata that is not an object rather than storing the response untagged', () => {
    assert.throws(() => withOwner({ model: 'gpt-5', metadata: ['a'] }, '', { id: 'vk' } as VirtualKey), (err: unknown) => err instanceof GatewayError && err.param === 'metadata');
  });

  it('marks the items an answer cut at its length limit left incomplete, as OpenAI does', () => {
    const response = toResponse(completion({ content: 'cut' }, 'length'), context(), HINTS);
    assert.equal(response.output[0]?.status, 'incomplete');
    const { events } = runTranslated([chunk({ content: 'Cut' }), chunk({ content: 'Done?' }), chunk({}, 'length'), 'data: [DONE]\n\n'].join(''));
    const done = events.find((event) => event.type === 'response.output_item.done');
    assert.equal((done?.item as { status: string }).status, 'incomplete');
  });

  it('names the Responses parameter when the provider down the chain refuses what it became', () => {
    const router = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 });
    const route = router.route(responsesClient, ['messages']);
    assert.throws(
      () => route.translation.exchange(request({ text: { format: { type: 'json_object' } } })),
      (err: unknown) => err instanceof GatewayError && err.param === 'text.format' && err.message.includes('"text.format"') && !err.message.includes('response_format'),
    );
  });

  it("names the client's input item when the provider down the chain refuses a message it became", () => {
    const route = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 }).route(responsesClient, ['messages']);
    const refused = (input: unknown, instructions?: string): GatewayError => {
      try {
        route.translation.exchange(request({ input, ...(instructions === undefined ? {} : { instructions }) }));
      } catch (err) {
        if (err instanceof GatewayError) return err;
        throw err;
      }
      assert.fail('not refused');
    };
    const file = { type: 'input_file', file_id: 'file-1' };
    // instructions became messages[0]: the user item at input[1] is messages[2].
    const inMessage = refused([{ role: 'user', content: 'hi' }, { role: 'user', content: [{ type: 'input_text', text: 'see' }, file] }], 'be brief');
    assert.equal(inMessage.param, 'input[1].content[1]');
    assert.match(inMessage.message, /^input\[1\]\.content\[1\]: a file id \(OpenAI's Files API\) cannot be sent to Anthropic/);
    // A tool output's file follows the tool message as a user message of its own: named by the output item.
    const call = { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' };
    const inOutput = refused([{ role: 'user', content: 'hi' }, call, { type: 'function_call_output', call_id: 'c1', output: [file] }]);
    assert.equal(inOutput.param, 'input[2]');
    assert.doesNotMatch(inOutput.message, /messages/);
    const nothing = refused([{ role: 'user', content: '  ' }]);
    assert.deepEqual([nothing.param, nothing.message.startsWith('"input" holds no content to send')], ['input', true]);
  });

  it("takes a PDF input_file (file_data) on to Anthropic as a document block", () => {
    const route = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 }).route(responsesClient, ['messages']);
    const pdf = { type: 'input_file', filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0xLjQK' };
    const sent = route.translation.exchange(request({ input: [{ role: 'user', content: [{ type: 'input_text', text: 'Summarise' }, pdf] }] })).request as AnthropicRequest;
    assert.deepEqual(sent.messages[0]?.content, [
      { type: 'text', text: 'Summarise' },
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' }, title: 'a.pdf' },
    ]);
  });

  it("takes reasoning.effort and text.format json_schema on to Anthropic's thinking and structured output, whatever the model's name", () => {
    const router = createRouter({ anthropicDefaultMaxTokens: 4096, now: () => 1 });
    const schema = { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'], additionalProperties: false };
    const fields = { model: 'claude-opus-4-6', reasoning: { effort: 'high', summary: 'auto' }, text: { format: { type: 'json_schema', name: 'r', schema, strict: true } } };
    const sent = router.route(responsesClient, ['messages']).translation.exchange(request(fields)).request as AnthropicRequest;
    assert.deepEqual([sent.thinking, sent.output_config], [{ type: 'adaptive', display: 'summarized' }, { effort: 'high', format: { type: 'json_schema', schema } }]);
    const chat = router.route(responsesClient, ['chat']).translation.exchange(request(fields)).request as ChatRequest;
    assert.equal(chat.reasoning_effort, undefined, 'OpenAI-format servers refuse an effort for a model that does not reason');
    assert.throws(
      () => router.route(responsesClient, ['messages']).translation.exchange(request({ reasoning: { effort: 'extreme' } })),
      (err: unknown) => err instanceof GatewayError && err.param === 'reasoning.effort' && err.message.includes('"reasoning.effort"'),
    );
  });

  it('knows an owner only from the very response asked for; an answer that is no JSON object is the provider\'s 502', () => {
    assert.equal(ownerInAnswer(Buffer.from('{"id":"resp_a","metadata":{"llm_gateway_owner":"t"}}'), 'resp_a'), 't');
    assert.equal(ownerInAnswer(Buffer.from('{"id":"resp_b","metadata":{"llm_gateway_owner":"t"}}'), 'resp_a'), null);
    for (const body of ['event: response.created\ndata: {}\n\n', '{"id":"resp_a","metadata":{"llm_gat', '[]']) {
      assert.throws(() => ownerInAnswer(Buffer.from(body), 'resp_a'), (err: unknown) => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_invalid_response', body);
    }
  });
});

describe('Responses request → chat: what a hostile client sends', () => {
  it('joins 200,000 consecutive calls into one assistant turn without copying the list for each (60,000 took 33 s)', () => {
    const calls = Array.from({ length: 200_000 }, (_, i) => ({ type: 'function_call', call_id: `c${i}`, name: 'f', arguments: '' }));
    const chat = translate({ input: [{ role: 'user', content: 'x' }, ...calls] });
    assert.equal(chat.messages.length, 2);
    const turn = chat.messages[1] as { tool_calls: Array<{ id: string }> };
    assert.equal(turn.tool_calls.length, 200_000);
    assert.equal(turn.tool_calls[199_999]?.id, 'c199999');
  });

  it('refuses a type or a name that is not a string with a 400, whatever its toString holds', () => {
    const odd = { toString: 1 };
    refused({ input: [{ type: odd }] }, /"an object" cannot be translated/, 'input[0].type');
    refused({ input: [{ role: 'user', content: [{ type: odd }] }] }, /"an object" cannot be translated/);
    refused({ tools: [weather], tool_choice: { type: odd } }, /"an object" is a tool only OpenAI runs/);
    refused({ tools: [weather], tool_choice: { type: 'function', name: odd } }, /no tool called "an object"/);
    refused({ tools: [weather], tool_choice: { type: 'function', name: [1] } }, /no tool called "an array"/);
  });
});

describe('a call without arguments, translated for a Responses client', () => {
  it('has arguments "{}" (what OpenAI writes; clients JSON.parse them), in an answer and in a stream', () => {
    const response = toResponse(completion({ tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }, 'tool_calls'), context(), HINTS);
    assert.equal(response.output[0]?.arguments, '{}');
    const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-9z', object: 'chat.completion.chunk', created: 1750000000, model: 'deepseek-chat', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const text = chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }) + chunk({}, 'tool_calls') + 'data: [DONE]\n\n';
    const { events } = runTranslated(text);
    const deltas = events.filter((event) => event.type === 'response.function_call_arguments.delta').map((event) => event.delta).join('');
    assert.equal(deltas, '{}');
    assert.equal(events.find((event) => event.type === 'response.function_call_arguments.done')?.arguments, '{}');
    const completed = events.find((event) => event.type === 'response.completed') as { response: ResponseObject } | undefined;
    assert.equal(completed?.response.output[0]?.arguments, '{}');
    assert.deepEqual(JSON.parse(String(completed?.response.output[0]?.arguments)), {});
    const added = events.find((event) => event.type === 'response.output_item.added') as { item: { arguments: string } } | undefined;
    assert.equal(added?.item.arguments, '', 'still empty while in progress, as OpenAI streams it');
  });

  it("joins a tool's name a server sends in pieces before its arguments (`get_`, then `weather`), at every byte boundary", () => {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-9z', object: 'chat.completion.chunk', created: 1750000000, model: 'deepseek-chat', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const text = [
      chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { name: 'weather', arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    for (let cut = 0; cut <= Buffer.byteLength(text); cut++) {
      const { events } = runTranslated(text, [cut]);
      const added = events.filter((event) => event.type === 'response.output_item.added') as unknown as Array<{ item: { name: string } }>;
      assert.deepEqual(added.map((event) => event.item.name), ['get_weather'], `cut at ${cut}`);
      const completed = events.find((event) => event.type === 'response.completed') as { response: ResponseObject } | undefined;
      assert.deepEqual([completed?.response.output[0]?.name, completed?.response.output[0]?.arguments], ['get_weather', '{"city":"Paris"}']);
    }
  });

  it('leaves a custom tool\'s empty input empty, its name known at once or only in a later fragment', () => {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'chatcmpl-9z', object: 'chat.completion.chunk', created: 1750000000, model: 'deepseek-chat', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const named = chunk({ tool_calls: [{ index: 0, id: 'call_b', type: 'function', function: { name: 'apply_patch', arguments: '' } }] });
    const late = chunk({ tool_calls: [{ index: 0, id: 'call_b', type: 'function', function: { arguments: '' } }] }) + chunk({ tool_calls: [{ index: 0, function: { name: 'apply_patch' } }] });
    for (const start of [named, late]) {
      const { events } = runTranslated(`${start}${chunk({}, 'tool_calls')}data: [DONE]\n\n`);
      assert.equal(events.filter((event) => event.type === 'response.function_call_arguments.delta').length, 0);
      const completed = events.find((event) => event.type === 'response.completed') as { response: ResponseObject } | undefined;
      assert.deepEqual([completed?.response.output[0]?.type, completed?.response.output[0]?.input], ['custom_tool_call', '']);
    }
    const whole = toResponse(completion({ tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'apply_patch', arguments: '' } }] }, 'tool_calls'), context(), HINTS);
    assert.deepEqual([whole.output[0]?.type, whole.output[0]?.input], ['custom_tool_call', '']);
  });
});
