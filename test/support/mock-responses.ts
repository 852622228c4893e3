/**
 * OpenAI's Responses API, as the OpenAI mock serves it (docs/providers.md, Responses): create
 * (JSON or an SSE stream with `event:` lines and sequence numbers, no [DONE]), the stored-response
 * routes, and input_tokens, with the rules the real API enforces that a gateway could break:
 * unknown parameters, a missing model or input, output limits, metadata limits, a
 * previous_response_id that does not exist, function_call_output without its call, tool
 * definitions. Responses are stored (store is on by default) in memory.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { RecordedRequest } from './recording-server.js';

const KNOWN_PARAMETERS = new Set([
  'model', 'input', 'instructions', 'tools', 'tool_choice', 'parallel_tool_calls', 'max_output_tokens', 'max_tool_calls', 'reasoning',
  'text', 'store', 'include', 'previous_response_id', 'conversation', 'prompt_cache_key', 'prompt_cache_retention', 'stream', 'stream_options',
  'metadata', 'temperature', 'top_p', 'top_logprobs', 'truncation', 'background', 'service_tier', 'safety_identifier', 'user', 'prompt',
  'context_management', 'client_metadata',
]);

const TOOL_TYPES = new Set(['function', 'custom', 'namespace', 'tool_search', 'web_search', 'web_search_preview', 'file_search', 'code_interpreter', 'image_generation', 'mcp', 'local_shell', 'shell', 'apply_patch', 'computer_use_preview']);

export interface StoredResponse {
  response: any;
  input: any[];
}

export type ResponseStore = Map<string, StoredResponse>;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function error(message: string, type = 'invalid_request_error', code: string | null = null, param: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

/** The first rule of the real API the body breaks, or null. */
export function validateResponses(body: any, store: ResponseStore): [number, unknown] | null {
  const bad = (message: string, code: string | null = null, param: string | null = null): [number, unknown] => [400, error(message, 'invalid_request_error', code, param)];
  for (const field of Object.keys(body)) if (!KNOWN_PARAMETERS.has(field)) return bad(`Unknown parameter: '${field}'.`, 'unknown_parameter', field);
  if (typeof body.model !== 'string') return bad("Missing required parameter: 'model'.", 'missing_required_parameter', 'model');
  if (body.input === undefined && body.previous_response_id === undefined) return bad("Missing required parameter: 'input'.", 'missing_required_parameter', 'input');
  if (body.max_output_tokens !== undefined && (!Number.isInteger(body.max_output_tokens) || body.max_output_tokens < 16)) {
    return bad(`Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got ${body.max_output_tokens} instead.`, 'integer_below_min_value', 'max_output_tokens');
  }
  if (body.metadata !== undefined && body.metadata !== null) {
    const entries = Object.entries(body.metadata);
    if (entries.length > 16) return bad(`Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with ${entries.length} properties instead.`, 'object_above_max_properties', 'metadata');
    if (entries.some(([, value]) => typeof value !== 'string')) return bad("Invalid type for 'metadata': expected string values.", 'invalid_type', 'metadata');
  }
  if (body.previous_response_id !== undefined && body.previous_response_id !== null && !store.has(body.previous_response_id)) {
    return bad(`Previous response with id '${body.previous_response_id}' not found.`, 'previous_response_not_found', 'previous_response_id');
  }
  if (body.tools !== undefined) {
    const index = (body.tools as any[]).findIndex((tool) => !TOOL_TYPES.has(tool?.type) || (['function', 'custom', 'namespace'].includes(tool.type) && typeof tool.name !== 'string'));
    if (index !== -1) return bad(`Invalid 'tools[${index}]': unknown tool type or missing name.`, 'invalid_value', `tools[${index}]`);
  }
  // An item named by id alone must be one OpenAI stored (an output item of a stored response).
  for (const [index, item] of (Array.isArray(body.input) ? (body.input as any[]) : []).entries()) {
    const reference = item?.type === 'item_reference' || ((item?.type === undefined || item?.type === null) && item?.id !== undefined && item?.role === undefined);
    if (reference && ![...store.values()].some((stored) => stored.response.output?.some((output: any) => output?.id === item.id))) {
      return [404, error(`Item with id '${item.id}' not found.`, 'invalid_request_error', null, `input[${index}]`)];
    }
  }
  const calls = new Set<string>();
  const previous = body.previous_response_id === undefined ? undefined : store.get(body.previous_response_id);
  for (const item of previous?.response.output ?? []) if (typeof item.call_id === 'string') calls.add(item.call_id);
  const items = typeof body.input === 'string' ? [] : ((body.input ?? []) as any[]);
  for (const item of items) {
    if (item?.type === 'function_call' || item?.type === 'custom_tool_call') calls.add(item.call_id);
    if ((item?.type === 'function_call_output' || item?.type === 'custom_tool_call_output') && !calls.has(item.call_id)) {
      return bad(`No tool call found for function call output with call_id ${item.call_id}.`, null, 'input');
    }
  }
  return null;
}

function lastUserText(body: any): string {
  if (typeof body.input === 'string') return body.input;
  const items = (body.input ?? []) as any[];
  const last = [...items].reverse().find((item) => item?.role === 'user' || item?.type === 'function_call_output');
  if (last?.type === 'function_call_output') return `the tool answered ${String(last.output)}`;
  const content = last?.content;
  if (typeof content === 'string') return content;
  return Array.isArray(content) ? content.map((part: any) => part?.text ?? '').join('') : '';
}

function responseFor(body: any, id: string): any {
  const text = lastUserText(body);
  const tool = Array.isArray(body.tools) ? body.tools.find((candidate: any) => candidate?.type === 'function') : undefined;
  const wantsTool = tool !== undefined && /weather/i.test(text) && !text.startsWith('the tool answered');
  const output = wantsTool
    ? [{ type: 'function_call', id: `fc_${id}`, status: 'completed', arguments: '{"city":"Paris"}', call_id: `call_${id}`, name: tool.name }]
    : [{ type: 'message', id: `msg_${id}`, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: `openai says: ${text}`, annotations: [] }] }];
  return {
    id: `resp_${id}`,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: 'completed',
    error: null,
    incomplete_details: null,
    model: `${body.model}-2025-08-07`,
    output,
    previous_response_id: body.previous_response_id ?? null,
    store: body.store !== false,
    metadata: body.metadata ?? {},
    usage: { input_tokens: 21, input_tokens_details: { cached_tokens: 4 }, output_tokens: 9, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 30 },
  };
}

/** The events of a streamed answer, each its own frame. */
export function streamEvents(response: any, end: 'response.completed' | 'response.incomplete' | 'response.failed' = 'response.completed'): string[] {
  let sequence = 0;
  const frame = (type: string, fields: Record<string, unknown>): string => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...fields })}\n\n`;
  const start = { ...response, status: 'in_progress', output: [], usage: null };
  const events = [frame('response.created', { response: start }), frame('response.in_progress', { response: start })];
  response.output.forEach((item: any, index: number) => {
    if (item.type === 'message') {
      const text: string = item.content[0].text;
      events.push(frame('response.output_item.added', { output_index: index, item: { ...item, status: 'in_progress', content: [] } }));
      events.push(frame('response.content_part.added', { item_id: item.id, output_index: index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }));
      for (let i = 0; i < text.length; i += 5) events.push(frame('response.output_text.delta', { item_id: item.id, output_index: index, content_index: 0, delta: text.slice(i, i + 5), logprobs: [] }));
      events.push(frame('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text, logprobs: [] }));
      events.push(frame('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part: item.content[0] }));
    } else {
      events.push(frame('response.output_item.added', { output_index: index, item: { ...item, status: 'in_progress', arguments: '' } }));
      events.push(frame('response.function_call_arguments.delta', { item_id: item.id, output_index: index, delta: item.arguments }));
      events.push(frame('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: item.arguments }));
    }
    events.push(frame('response.output_item.done', { output_index: index, item }));
  });
  events.push(frame(end, { response }));
  return events;
}

/** Serves /v1/responses and the stored-response routes; false when the path is not one of them. */
export function serveResponses(res: ServerResponse, recorded: RecordedRequest, store: ResponseStore, idHeader: Record<string, string>): boolean {
  const match = /^\/v1\/responses(?:\/([^/]+)(\/cancel|\/input_items)?)?$/.exec(recorded.path);
  if (match === null) return false;
  const [, id, suffix] = match;
  const method = recorded.method;
  if (id === 'input_tokens' && method === 'POST') {
    if (recorded.json === undefined) return void send(res, 400, error('We could not parse the JSON body of your request.'), idHeader), true;
    send(res, 200, { object: 'response.input_tokens', input_tokens: Math.ceil(JSON.stringify(recorded.json.input ?? '').length / 4) }, idHeader);
    return true;
  }
  if (id === 'compact' && method === 'POST') {
    const body = recorded.json;
    // Required, and nullable: OpenAI picks the model (from a previous response) when it is null.
    if (body?.model === undefined) return void send(res, 400, error("Missing required parameter: 'model'.", 'invalid_request_error', 'missing_required_parameter', 'model'), idHeader), true;
    if (body.model !== null && typeof body.model !== 'string') return void send(res, 400, error("Invalid type for 'model': expected a string or null.", 'invalid_request_error', 'invalid_type', 'model'), idHeader), true;
    send(res, 200, { id: `resp_cmp_${randomBytes(6).toString('hex')}`, object: 'response.compaction', created_at: Math.floor(Date.now() / 1000), output: [{ type: 'compaction', encrypted_content: 'gAAAAcompacted' }], usage: { input_tokens: 100, output_tokens: 10, total_tokens: 110 } }, idHeader);
    return true;
  }
  if (id !== undefined) {
    const stored = store.get(id);
    if (stored === undefined) return void send(res, 404, error(`Response with id '${id}' not found.`), idHeader), true;
    if (suffix === undefined && method === 'GET') send(res, 200, stored.response, idHeader);
    else if (suffix === undefined && method === 'DELETE') {
      store.delete(id);
      send(res, 200, { id, object: 'response', deleted: true }, idHeader);
    } else if (suffix === '/cancel' && method === 'POST') send(res, 400, error('Only responses created with background=true can be cancelled.'), idHeader);
    else if (suffix === '/input_items' && method === 'GET') {
      const data = stored.input.map((item, index) => ({ id: `msg_in_${index}`, ...item }));
      send(res, 200, { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: false }, idHeader);
    } else send(res, 405, error(`Method ${method} not allowed.`), idHeader);
    return true;
  }
  if (method !== 'POST') return void send(res, 405, error(`Method ${method} not allowed.`), idHeader), true;
  const body = recorded.json;
  if (body === undefined || typeof body !== 'object' || body === null) return void send(res, 400, error('We could not parse the JSON body of your request.'), idHeader), true;
  const broken = validateResponses(body, store);
  if (broken !== null) return void send(res, broken[0], broken[1], idHeader), true;
  const response = responseFor(body, randomBytes(12).toString('hex'));
  if (body.store !== false) store.set(response.id, { response, input: typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: body.input }] : (body.input ?? []) });
  if (body.stream !== true) {
    send(res, 200, response, idHeader);
    return true;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...idHeader });
  for (const event of streamEvents(response)) res.write(event);
  res.end();
  return true;
}
