/**
 * A mock Anthropic Messages API on 127.0.0.1 that enforces what the real one enforces
 * (docs/providers.md, Anthropic): x-api-key and anthropic-version headers, required max_tokens,
 * user/assistant roles only, first turn from the user, no empty text, temperature 0–1,
 * tool_use input as an object, every tool_use answered by a tool_result in the next turn, and no
 * unknown top-level fields. Answers and streams in Anthropic's exact format.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startRecordingServer, type RecordedRequest, type RecordingServer } from './recording-server.js';


export interface AnthropicMock extends RecordingServer {
  /** What to put in keys.json as base_url (the SDK convention: no /v1). */
  readonly baseUrl: string;
}

const KNOWN_FIELDS = new Set(['model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'temperature', 'top_p', 'top_k', 'stream', 'tools', 'tool_choice', 'metadata', 'thinking', 'service_tier']);

export function anthropicError(type: string, message: string): unknown {
  return { type: 'error', error: { type, message }, request_id: `req_${randomBytes(12).toString('hex')}` };
}

/** Returns the first rule the body breaks, as Anthropic words it, or null. */
export function validate(body: any): string | null {
  if (typeof body !== 'object' || body === null) return 'body: Input should be an object';
  for (const field of Object.keys(body)) if (!KNOWN_FIELDS.has(field)) return `${field}: Extra inputs are not permitted`;
  if (typeof body.model !== 'string') return 'model: Field required';
  if (body.max_tokens === undefined) return 'max_tokens: Field required';
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Input should be a valid integer greater than 0';
  if (body.temperature !== undefined && (body.temperature < 0 || body.temperature > 1)) return 'temperature: range: -1 or 0..1';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  if (body.system !== undefined && typeof body.system !== 'string' && !Array.isArray(body.system)) return 'system: Input should be a valid list';
  const messages: any[] = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (message.role !== 'user' && message.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
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

export function startAnthropicMock(options: { apiKey: string }): Promise<AnthropicMock> {
  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'request-id': `req_${randomBytes(12).toString('hex')}`, ...headers });
    res.end(text);
  };

  const standard = (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest): void => {
    if (req.method === 'GET' && recorded.path === '/v1/models') {
      if (req.headers['x-api-key'] !== options.apiKey) return send(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
      const data = ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001'].map((id) => ({ type: 'model', id, display_name: id, created_at: '2025-09-29T00:00:00Z' }));
      return send(res, 200, { data, has_more: false, first_id: data[0]?.id, last_id: data.at(-1)?.id });
    }
    if (req.method !== 'POST' || recorded.path !== '/v1/messages') return send(res, 404, anthropicError('not_found_error', `Not found: ${req.method} ${recorded.path}`));
    if (req.headers['x-api-key'] !== options.apiKey) return send(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
    if (req.headers.authorization !== undefined) return send(res, 400, anthropicError('invalid_request_error', 'Send x-api-key or Authorization, not both'));
    if (req.headers['anthropic-version'] !== '2023-06-01') return send(res, 400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
    if (recorded.json === undefined) return send(res, 400, anthropicError('invalid_request_error', 'There was an issue with the formatting of your request: the body is not valid JSON'));
    const problem = validate(recorded.json);
    if (problem !== null) return send(res, 400, anthropicError('invalid_request_error', problem));

    const body = recorded.json;
    const id = `msg_${randomBytes(12).toString('hex')}`;
    const model = `${body.model}-20250929`;
    const text = `claude says: ${lastUserText(body)}`;
    const wantsTool = Array.isArray(body.tools) && body.tools.length > 0 && /weather/i.test(lastUserText(body));
    const usage = { input_tokens: 25, cache_creation_input_tokens: 0, cache_read_input_tokens: 5, output_tokens: 12 };

    if (body.stream !== true) {
      const content = wantsTool
        ? [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: 'toolu_01A', name: body.tools[0].name, input: { city: 'Paris' } }]
        : [{ type: 'text', text }];
      return send(res, 200, { id, type: 'message', role: 'assistant', model, content, stop_reason: wantsTool ? 'tool_use' : 'end_turn', stop_sequence: null, usage });
    }

    const event = (type: string, data: unknown): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`;
    const events = [event('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } })];
    events.push(event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }), event('ping', {}));
    const say = wantsTool ? 'Let me check.' : text;
    for (let i = 0; i < say.length; i += 6) events.push(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: say.slice(i, i + 6) } }));
    events.push(event('content_block_stop', { index: 0 }));
    if (wantsTool) {
      events.push(event('content_block_start', { index: 1, content_block: { type: 'tool_use', id: 'toolu_01A', name: body.tools[0].name, input: {} } }));
      for (const partial of ['', '{"city"', ': "Pa', 'ris", "unit": "c', 'elsius"}']) events.push(event('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: partial } }));
      events.push(event('content_block_stop', { index: 1 }));
    }
    events.push(event('message_delta', { delta: { stop_reason: wantsTool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    events.push(event('message_stop', {}));
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': `req_${randomBytes(12).toString('hex')}` });
    for (const frame of events) res.write(frame);
    res.end();
  };

  return startRecordingServer(standard).then((server) => ({ ...server, baseUrl: server.origin }));
}
