/**
 * Mock OpenAI and DeepSeek upstreams on 127.0.0.1, speaking their wire formats as documented in
 * docs/providers.md (OpenAI, DeepSeek): auth checks with the providers' own error bodies, request
 * validation, JSON answers, SSE streams with usage where each provider puts it, DeepSeek's
 * keep-alive comments and `reasoning_content`. A test may replace the behaviour per request.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startRecordingServer, type RecordedRequest, type RecordingServer } from './recording-server.js';

export type { Behaviour, Exchange, RecordedRequest } from './recording-server.js';

export type Flavor = 'openai' | 'deepseek';

export interface MockUpstream extends RecordingServer {
  /** What to put in keys.json as base_url (OpenAI: with `/v1`, as the SDK default has it). */
  readonly baseUrl: string;
}

export interface MockOptions {
  flavor: Flavor;
  apiKey: string;
  /** More real keys the mock accepts (a virtual key with several). */
  otherKeys?: string[];
}

export const MOCK_MODELS: Record<Flavor, string[]> = {
  openai: ['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4.1-nano', 'o3'],
  deepseek: ['deepseek-chat', 'deepseek-reasoner'],
};

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function openAIError(message: string, type: string, code: string | null = null, param: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

function masked(key: string, flavor: Flavor): string {
  return flavor === 'openai' ? `${key.slice(0, 8)}***${key.slice(-4)}` : `****${key.slice(-4)}`;
}

export function lastUserText(json: any): string {
  const messages: any[] = Array.isArray(json?.messages) ? json.messages : [];
  const last = [...messages].reverse().find((message) => message?.role === 'user');
  return typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
}

export function replyFor(flavor: Flavor, json: any): string {
  return `${flavor} says: ${lastUserText(json)}`;
}

/** Chunk text into pieces of ~5 characters, as real streams do. */
export function pieces(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 5) out.push(text.slice(i, i + 5));
  return out;
}

export function startOpenAIMock(options: MockOptions): Promise<MockUpstream> {
  const { flavor, apiKey } = options;
  const standard = (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest): void => {
    const requestId = flavor === 'openai' ? `req_${randomBytes(16).toString('hex')}` : randomUUID();
    const idHeader: Record<string, string> = { [flavor === 'openai' ? 'x-request-id' : 'x-ds-trace-id']: requestId };
    const validPaths = flavor === 'openai' ? ['/v1/chat/completions'] : ['/chat/completions', '/v1/chat/completions'];
    const modelPaths = flavor === 'openai' ? ['/v1/models'] : ['/models', '/v1/models'];
    const auth = req.headers.authorization ?? '';
    const accepted = [apiKey, ...(options.otherKeys ?? [])].map((key) => `Bearer ${key}`);
    if (req.method === 'GET' && modelPaths.includes(recorded.path)) {
      if (!accepted.includes(auth)) return sendJson(res, 401, openAIError('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'), idHeader);
      const data = MOCK_MODELS[flavor].map((id) => (flavor === 'openai' ? { id, object: 'model', created: 1721172741, owned_by: 'system' } : { id, object: 'model', owned_by: 'deepseek' }));
      return sendJson(res, 200, { object: 'list', data }, idHeader);
    }
    if (req.method !== 'POST' || !validPaths.includes(recorded.path)) {
      return sendJson(res, 404, openAIError(`Invalid URL (${req.method} ${recorded.path})`, 'invalid_request_error'), idHeader);
    }
    if (!accepted.includes(auth)) {
      const presented = auth.replace(/^Bearer\s+/i, '');
      return flavor === 'openai'
        ? sendJson(res, 401, openAIError(`Incorrect API key provided: ${masked(presented, flavor)}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', 'invalid_api_key'), idHeader)
        : sendJson(res, 401, openAIError(`Authentication Fails, Your api key: ${masked(presented, flavor)} is invalid`, 'authentication_error', 'invalid_request_error'), idHeader);
    }
    if (!String(req.headers['content-type']).startsWith('application/json')) {
      return sendJson(res, 400, openAIError('Invalid content type. Expected application/json.', 'invalid_request_error'), idHeader);
    }
    const body = recorded.json;
    if (body === undefined) {
      return sendJson(res, 400, openAIError('We could not parse the JSON body of your request.', 'invalid_request_error'), idHeader);
    }
    if (typeof body.model !== 'string') {
      return sendJson(res, 400, openAIError('you must provide a model parameter', 'invalid_request_error'), idHeader);
    }
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      return sendJson(res, 400, openAIError("Invalid 'messages': empty array.", 'invalid_request_error', 'empty_array', 'messages'), idHeader);
    }
    if (flavor === 'deepseek') {
      const bad = body.messages.findIndex((message: any) => Array.isArray(message?.content));
      if (bad !== -1) {
        return sendJson(res, 422, openAIError(`Failed to deserialize the JSON body into the target type: messages[${bad}]: invalid type: sequence, expected a string at line 1 column 42`, 'invalid_request_error', 'invalid_request_error'), idHeader);
      }
    }
    if (body.stream_options !== undefined && body.stream !== true) {
      return sendJson(res, 400, openAIError("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'invalid_request_error', null, 'stream_options'), idHeader);
    }

    const id = flavor === 'openai' ? `chatcmpl-${randomBytes(12).toString('hex')}` : randomUUID();
    const created = Math.floor(Date.now() / 1000);
    const model = flavor === 'openai' ? `${body.model}-2024-08-06` : body.model;
    const reply = replyFor(flavor, body);
    const reasoning = flavor === 'deepseek' && body.model === 'deepseek-reasoner' ? 'Thinking about it.' : null;
    const usage: any = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, prompt_tokens_details: { cached_tokens: 0 } };
    if (flavor === 'deepseek') Object.assign(usage, { prompt_cache_hit_tokens: 0, prompt_cache_miss_tokens: 11 });
    if (reasoning !== null) usage.completion_tokens_details = { reasoning_tokens: 3 };

    if (body.stream !== true) {
      const message: any = { role: 'assistant', content: reply };
      if (flavor === 'openai') Object.assign(message, { refusal: null, annotations: [] });
      if (reasoning !== null) message.reasoning_content = reasoning;
      const completion = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
        usage,
        system_fingerprint: 'fp_mock',
      };
      // DeepSeek sends blank lines while a request waits in its queue, before the JSON.
      const text = (flavor === 'deepseek' ? '\n\n' : '') + JSON.stringify(completion);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...idHeader });
      res.end(text);
      return;
    }

    const includeUsage = body.stream_options?.include_usage === true;
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_mock' };
    const frame = (value: unknown): string => `data: ${JSON.stringify(value)}\n\n`;
    const usageNull = flavor === 'openai' && includeUsage ? { usage: null } : {};
    const events: string[] = [];
    if (flavor === 'deepseek') events.push(': keep-alive\n\n');
    events.push(frame({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...usageNull }));
    if (reasoning !== null) {
      for (const piece of pieces(reasoning)) {
        events.push(frame({ ...base, choices: [{ index: 0, delta: { content: null, reasoning_content: piece }, logprobs: null, finish_reason: null }] }));
      }
    }
    for (const piece of pieces(reply)) {
      events.push(frame({ ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }], ...usageNull }));
    }
    if (flavor === 'deepseek') {
      events.push(frame({ ...base, choices: [{ index: 0, delta: { content: '' }, logprobs: null, finish_reason: 'stop' }], ...(includeUsage ? { usage } : {}) }));
    } else {
      events.push(frame({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], ...usageNull }));
      if (includeUsage) events.push(frame({ ...base, choices: [], usage }));
    }
    events.push('data: [DONE]\n\n');
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...idHeader });
    // Every event is its own write, as the real APIs flush them.
    for (const event of events) res.write(event);
    res.end();
  };

  return startRecordingServer(standard).then((server) => ({
    ...server,
    baseUrl: flavor === 'openai' ? `${server.origin}/v1` : server.origin,
  }));
}
