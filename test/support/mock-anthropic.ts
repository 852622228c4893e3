/**
 * A mock Anthropic Messages API on 127.0.0.1 that enforces what the real one enforces
 * (docs/providers.md, Anthropic): x-api-key and anthropic-version headers, required max_tokens
 * (at most 128,000), user/assistant roles (system messages after the first turn), first turn
 * from the user, no empty text, temperature 0–1, a thinking budget below max_tokens and no forced tool with thinking, adaptive
 * thinking and output_config.effort on Claude 4.6 and later only, with thinking on a last tool-calling
 * assistant turn that starts with its thinking block, output_config.format a JSON
 * schema alone (answered with JSON that follows it), tool_use
 * input as an object, every tool_use answered by a tool_result in the next turn, no unknown
 * top-level fields, and beta fields only with their `anthropic-beta` flag. Answers and streams
 * (with `event:` lines, thinking when asked) in Anthropic's exact format; counts tokens at
 * `/v1/messages/count_tokens`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startRecordingServer, type RecordedRequest, type RecordingServer } from './recording-server.js';


export interface AnthropicMock extends RecordingServer {
  /** What to put in keys.json as base_url (the SDK convention: no /v1). */
  readonly baseUrl: string;
}

const KNOWN_FIELDS = new Set([
  'model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'temperature', 'top_p', 'top_k', 'stream', 'tools', 'tool_choice',
  'metadata', 'thinking', 'service_tier', 'output_config', 'cache_control', 'container', 'mcp_servers', 'inference_geo', 'speed',
  'context_management', 'thread',
]);
/** Fields accepted only with their beta flag in `anthropic-beta`. */
const BETA_FIELDS: Record<string, string> = { context_management: 'context-management-2025-06-27', thread: 'message-threads-2026-08-12' };
const DEFER_LOADING_BETA = 'advanced-tool-use-2025-11-20';
export const MAX_OUTPUT_TOKENS = 128000;
/** API versions Anthropic takes: the long-standing one, and the one its SDK sends since 1.x. */
const API_VERSIONS = new Set(['2023-06-01', '2026-10-21']);
/** Claude models that think adaptively and take output_config.effort (4.6 and later); older ones refuse both (DeepSeek's models take both). */
const ADAPTIVE_MODEL = /^claude-(?:opus|sonnet|haiku)-(?:4-[6-9]|[5-9])(?!\d)|^(?!claude-)/;
const EFFORTS = ['low', 'medium', 'high', 'xhigh', 'max'];

/** An answer that follows a structured output's schema: each property a value of its type. */
function structured(schema: any, text: string): string {
  const properties: Record<string, any> = schema?.properties ?? {};
  const value = (type: unknown): unknown => (type === 'string' ? text : type === 'number' || type === 'integer' ? 1 : type === 'boolean' ? true : null);
  return JSON.stringify(Object.fromEntries(Object.entries(properties).map(([name, property]) => [name, value(property?.type)])));
}

export function anthropicError(type: string, message: string): unknown {
  return { type: 'error', error: { type, message }, request_id: `req_${randomBytes(12).toString('hex')}` };
}

/** Returns the first rule the body breaks, as Anthropic words it, or null. `betas`: the request's anthropic-beta flags. */
export function validate(body: any, betas: readonly string[] = [], countTokens = false): string | null {
  if (typeof body !== 'object' || body === null) return 'body: Input should be an object';
  for (const field of Object.keys(body)) {
    if (!KNOWN_FIELDS.has(field) || (countTokens && ['max_tokens', 'stream', 'metadata'].includes(field))) return `${field}: Extra inputs are not permitted`;
    const beta = BETA_FIELDS[field];
    if (beta !== undefined && !betas.includes(beta)) return `${field}: Extra inputs are not permitted`;
  }
  if (typeof body.model !== 'string') return 'model: Field required';
  if (!countTokens) {
    if (body.max_tokens === undefined) return 'max_tokens: Field required';
    if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Input should be a valid integer greater than 0';
    if (body.max_tokens > MAX_OUTPUT_TOKENS) return `max_tokens: ${body.max_tokens} > ${MAX_OUTPUT_TOKENS}, which is the maximum allowed number of output tokens for ${body.model}`;
  }
  const thinking = body.thinking;
  if (thinking !== undefined) {
    if (!['enabled', 'adaptive', 'disabled'].includes(thinking?.type)) return "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'";
    if (thinking.type === 'adaptive' && !ADAPTIVE_MODEL.test(body.model)) return `thinking.type: adaptive thinking is not supported on ${body.model}`;
    if (thinking.display !== undefined && !['summarized', 'omitted'].includes(thinking.display)) return "thinking.display: Input should be 'summarized' or 'omitted'";
    const forced = body.tool_choice?.type === 'any' || body.tool_choice?.type === 'tool';
    if (thinking.type !== 'disabled' && forced) return 'Thinking may not be enabled when tool_choice forces tool use.';
    if (thinking.type === 'enabled') {
      if (!Number.isInteger(thinking.budget_tokens) || thinking.budget_tokens < 1024) return 'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024';
      if (!countTokens && thinking.budget_tokens >= body.max_tokens) return '`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size';
    }
  }
  const config = body.output_config;
  if (config !== undefined) {
    if (typeof config !== 'object' || config === null || Array.isArray(config)) return 'output_config: Input should be a valid dictionary';
    for (const field of Object.keys(config)) if (field !== 'effort' && field !== 'format') return `output_config.${field}: Extra inputs are not permitted`;
    if (config.effort !== undefined) {
      if (!EFFORTS.includes(config.effort)) return "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'";
      if (!ADAPTIVE_MODEL.test(body.model)) return `output_config.effort: the effort parameter is not supported by ${body.model}`;
    }
    const format = config.format;
    if (format !== undefined) {
      if (format?.type !== 'json_schema') return "output_config.format.type: Input should be 'json_schema'";
      for (const field of Object.keys(format)) if (field !== 'type' && field !== 'schema') return `output_config.format.${field}: Extra inputs are not permitted`;
      if (typeof format.schema !== 'object' || format.schema === null || Array.isArray(format.schema)) return 'output_config.format.schema: Field required';
      const unsupported = unsupportedSchemaKeyword(format.schema);
      if (unsupported !== null) return `output_format.schema: ${unsupported}`;
    }
  }
  if (Array.isArray(body.tools)) {
    for (let i = 0; i < body.tools.length; i++) {
      const tool = body.tools[i];
      if (tool?.type === undefined || tool.type === 'custom') {
        if (typeof tool?.name !== 'string' || typeof tool?.input_schema !== 'object') return `tools.${i}.custom.input_schema: Field required`;
        if (tool.defer_loading !== undefined && !betas.includes(DEFER_LOADING_BETA)) return `tools.${i}.custom.defer_loading: Extra inputs are not permitted`;
      }
    }
  }
  if (body.temperature !== undefined && (body.temperature < 0 || body.temperature > 1)) return 'temperature: range: -1 or 0..1';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  if (body.system !== undefined && typeof body.system !== 'string' && !Array.isArray(body.system)) return 'system: Input should be a valid list';
  const messages: any[] = body.messages;
  const lastAssistant = messages.findLast((message) => message.role === 'assistant');
  const lastBlocks: any[] = Array.isArray(lastAssistant?.content) ? lastAssistant.content : [];
  if ((thinking?.type === 'enabled' || thinking?.type === 'adaptive') && lastBlocks.some((block) => block.type === 'tool_use') && !['thinking', 'redacted_thinking'].includes(lastBlocks[0]?.type)) {
    return `messages.${messages.lastIndexOf(lastAssistant)}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${lastBlocks[0]?.type}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block (preceeding the lastmost set of \`tool_use\` and \`tool_result\` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable \`thinking\`.`;
  }
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (message.role !== 'user' && message.role !== 'assistant' && !(message.role === 'system' && i > 0)) return `messages.${i}.role: Input should be 'user', 'assistant' or 'system'`;
    if (i === 0 && message.role !== 'user') return 'messages: first message must use the "user" role';
    const content = message.content;
    const blocks: any[] = typeof content === 'string' ? [{ type: 'text', text: content }] : Array.isArray(content) ? content : [];
    const isFinalAssistant = i === messages.length - 1 && message.role === 'assistant';
    if (blocks.length === 0 && !isFinalAssistant) return `messages.${i}: all messages must have non-empty content except for the optional final assistant message`;
    for (const block of blocks) {
      if (block.type === 'text' && (typeof block.text !== 'string' || block.text === '')) return 'messages: text content blocks must be non-empty';
      if (block.type === 'tool_use') {
        if (message.role !== 'assistant') return `messages.${i}: tool_use blocks may only appear in assistant messages`;
        if (typeof block.input !== 'object' || block.input === null || Array.isArray(block.input)) return `messages.${i}.content.tool_use.input: Input should be a valid dictionary`;
        if (!/^[a-zA-Z0-9_-]+$/.test(block.id)) return `messages.${i}.content.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'`;
      }
      if (block.type === 'tool_result' && message.role !== 'user') return `messages.${i}: tool_result blocks may only appear in user messages`;
      if (block.type === 'image' && !['base64', 'url'].includes(block.source?.type)) return `messages.${i}: invalid image source`;
    }
    if (isFinalAssistant && blocks.some((block) => block.type === 'text' && /\s$/.test(block.text))) return 'messages: final assistant content cannot end with trailing whitespace';
    const uses = blocks.filter((block) => block.type === 'tool_use').map((block) => block.id);
    if (uses.length > 0) {
      const next = messages[i + 1];
      const results = new Set((Array.isArray(next?.content) ? next.content : []).filter((block: any) => block.type === 'tool_result').map((block: any) => block.tool_use_id));
      const missing = uses.filter((id) => !results.has(id));
      if (next !== undefined && missing.length > 0) {
        return `messages.${i + 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
      }
    }
  }
  return null;
}

function lastUserText(body: any): string {
  const last = [...body.messages].reverse().find((message: any) => message.role === 'user');
  if (typeof last?.content === 'string') return last.content;
  return (last?.content ?? []).filter((block: any) => block.type === 'text').map((block: any) => block.text).join(' ');
}

/** The models a mock lists unless told others. */
const MODELS = ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001'];

export function startAnthropicMock(options: { apiKey: string; models?: readonly string[] }): Promise<AnthropicMock> {
  /** The replies of every message thread, by id. */
  const threadReplies = new Set<string>();
  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'request-id': `req_${randomBytes(12).toString('hex')}`, ...headers });
    res.end(text);
  };

  const standard = (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest): void => {
    if (req.method === 'GET' && recorded.path === '/v1/models') {
      if (req.headers['x-api-key'] !== options.apiKey) return send(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
      // Paged as Anthropic pages it: `limit` from 1 to 1000, 20 unless said, after `after_id`.
      const query = new URLSearchParams(recorded.query);
      const limit = query.has('limit') ? Number(query.get('limit')) : 20;
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return send(res, 400, anthropicError('invalid_request_error', 'limit: Input should be less than or equal to 1000'));
      const models = options.models ?? MODELS;
      const from = query.has('after_id') ? models.indexOf(query.get('after_id') as string) + 1 : 0;
      const data = models.slice(from, from + limit).map((id) => ({ type: 'model', id, display_name: id, created_at: '2025-09-29T00:00:00Z' }));
      return send(res, 200, { data, has_more: from + limit < models.length, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null });
    }
    if (req.method === 'POST' && recorded.path === '/v1/messages/count_tokens') {
      if (req.headers['x-api-key'] !== options.apiKey) return send(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
      if (req.headers['anthropic-version'] === undefined) return send(res, 400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
      const betas = String(req.headers['anthropic-beta'] ?? '').split(',').map((flag) => flag.trim());
      const problem = recorded.json === undefined ? 'body: not valid JSON' : validate(recorded.json, betas, true);
      if (problem !== null) return send(res, 400, anthropicError('invalid_request_error', problem));
      // A stand-in for the real tokenizer: deterministic, and not the gateway's estimate.
      return send(res, 200, { input_tokens: 7 + Math.ceil(recorded.raw.length / 5) });
    }
    if (req.method !== 'POST' || recorded.path !== '/v1/messages') return send(res, 404, anthropicError('not_found_error', `Not found: ${req.method} ${recorded.path}`));
    if (req.headers['x-api-key'] !== options.apiKey) return send(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
    if (req.headers.authorization !== undefined) return send(res, 400, anthropicError('invalid_request_error', 'Send x-api-key or Authorization, not both'));
    if (!API_VERSIONS.has(String(req.headers['anthropic-version']))) return send(res, 400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
    if (recorded.json === undefined) return send(res, 400, anthropicError('invalid_request_error', 'There was an issue with the formatting of your request: the body is not valid JSON'));
    const betas = String(req.headers['anthropic-beta'] ?? '').split(',').map((flag) => flag.trim());
    const problem = validate(recorded.json, betas);
    if (problem !== null) return send(res, 400, anthropicError('invalid_request_error', problem));

    const body = recorded.json;
    // Message threads: Anthropic keeps each thread's replies; a continuation names one it keeps.
    const thread = body.thread;
    if (thread?.type === 'continue' && !threadReplies.has(thread.previous_message_id)) {
      const notFound = anthropicError('not_found_error', `No thread found for previous_message_id '${String(thread.previous_message_id)}'.`) as { error: Record<string, unknown> };
      notFound.error.details = { error_code: 'thread_not_found' };
      return send(res, 404, notFound);
    }
    const thinks = body.thinking?.type === 'enabled' || body.thinking?.type === 'adaptive';
    const id = `msg_${randomBytes(12).toString('hex')}`;
    if (thread !== undefined) threadReplies.add(id);
    const model = `${body.model}-20250929`;
    const said = `claude says: ${lastUserText(body)}`;
    const text = body.output_config?.format === undefined ? said : structured(body.output_config.format.schema, said);
    const wantsTool = Array.isArray(body.tools) && body.tools.length > 0 && /weather/i.test(lastUserText(body));
    const usage = { input_tokens: 25, cache_creation_input_tokens: 0, cache_read_input_tokens: 5, output_tokens: 12 };

    if (body.stream !== true) {
      const content: unknown[] = wantsTool
        ? [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: 'toolu_01A', name: body.tools[0].name, input: { city: 'Paris' } }]
        : [{ type: 'text', text }];
      if (thinks) content.unshift({ type: 'thinking', thinking: 'Let me think.', signature: 'sig_mock' });
      return send(res, 200, { id, type: 'message', role: 'assistant', model, content, stop_reason: wantsTool ? 'tool_use' : 'end_turn', stop_sequence: null, usage });
    }

    const event = (type: string, data: unknown): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`;
    const events = [event('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } })];
    let index = 0;
    if (thinks) {
      events.push(event('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
      events.push(event('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: 'Let me ' } }), event('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: 'think.' } }));
      events.push(event('content_block_delta', { index, delta: { type: 'signature_delta', signature: 'sig_mock' } }), event('content_block_stop', { index }));
      index++;
    }
    events.push(event('content_block_start', { index, content_block: { type: 'text', text: '' } }), event('ping', {}));
    const say = wantsTool ? 'Let me check.' : text;
    for (let i = 0; i < say.length; i += 6) events.push(event('content_block_delta', { index, delta: { type: 'text_delta', text: say.slice(i, i + 6) } }));
    events.push(event('content_block_stop', { index }));
    index++;
    if (wantsTool) {
      events.push(event('content_block_start', { index, content_block: { type: 'tool_use', id: 'toolu_01A', name: body.tools[0].name, input: {} } }));
      for (const partial of ['', '{"city"', ': "Pa', 'ris", "unit": "c', 'elsius"}']) events.push(event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: partial } }));
      events.push(event('content_block_stop', { index }));
    }
    events.push(event('message_delta', { delta: { stop_reason: wantsTool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    events.push(event('message_stop', {}));
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': `req_${randomBytes(12).toString('hex')}` });
    for (const frame of events) res.write(frame);
    res.end();
  };

  return startRecordingServer(standard).then((server) => ({ ...server, baseUrl: server.origin }));
}

/** What Anthropic's structured outputs refuse in a schema (numeric and length constraints; an object left open), else null. */
function unsupportedSchemaKeyword(schema: any): string | null {
  if (typeof schema !== 'object' || schema === null) return null;
  const constraints: Record<string, string[]> = { integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'], number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'], string: ['minLength', 'maxLength'] };
  for (const keyword of constraints[schema.type] ?? []) if (schema[keyword] !== undefined) return `For '${schema.type}' type, property '${keyword}' is not supported`;
  if (schema.type === 'object' && schema.additionalProperties !== false) return "For 'object' type, 'additionalProperties' must be explicitly set to false";
  const children = [...Object.values(schema.properties ?? {}), ...Object.values(schema.$defs ?? {}), schema.items, ...(schema.anyOf ?? []), ...(schema.allOf ?? [])];
  for (const child of children) {
    const found = unsupportedSchemaKeyword(child);
    if (found !== null) return found;
  }
  return null;
}
