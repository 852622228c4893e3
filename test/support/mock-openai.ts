/**
 * Mock OpenAI and DeepSeek upstreams on 127.0.0.1, speaking their wire formats as documented in
 * docs/providers.md (OpenAI, DeepSeek): auth checks with the providers' own error bodies, request
 * validation, JSON answers, SSE streams with usage where each provider puts it, DeepSeek's
 * keep-alive comments and `reasoning_content`. A test may replace the behaviour per request.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveResponses, type ResponseStore } from './mock-responses.js';
import { startRecordingServer, type RecordedRequest, type RecordingServer } from './recording-server.js';

export type { Behaviour, Exchange, RecordedRequest } from './recording-server.js';

export type Flavor = 'openai' | 'deepseek';

export interface MockUpstream extends RecordingServer {
  /** What to put in keys.json as base_url (OpenAI: with `/v1`, as the SDK default has it). */
  readonly baseUrl: string;
  /** The responses OpenAI's Responses API stored (OpenAI flavor). */
  readonly stored: ResponseStore;
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

/** Every top-level Chat Completions parameter OpenAI knows; anything else is refused, as OpenAI does. */
const KNOWN_PARAMETERS = new Set([
  'model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'stop',
  'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'user', 'tools', 'tool_choice',
  'parallel_tool_calls', 'response_format', 'seed', 'reasoning_effort', 'metadata', 'store', 'service_tier', 'modalities',
  'audio', 'prediction', 'web_search_options', 'safety_identifier', 'prompt_cache_key', 'verbosity', 'functions', 'function_call',
]);
/** DeepSeek's own, beside OpenAI's. */
const DEEPSEEK_PARAMETERS = new Set(['thinking']);

/** The most output tokens each flavor's models accept (gpt-4o-mini: 16,384; deepseek-chat: 8,192). */
export const OUTPUT_LIMIT: Record<Flavor, number> = { openai: 16384, deepseek: 8192 };

const REASONING_MODEL = /^(?:o\d|gpt-5)/;

/** The fields OpenAI accepts on a message; it refuses any other ("Additional properties are not allowed"). */
const MESSAGE_FIELDS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'refusal', 'annotations', 'audio', 'function_call']);

/**
 * The first rule of the real APIs the body breaks, as [status, error body], or null: unknown
 * parameters, output limits, DeepSeek's response formats (no json_schema; json_object only with
 * "json" in the prompt), `user` length, roles, tool-call pairing, tool definitions.
 */
export function validateChat(flavor: Flavor, body: any): [number, unknown] | null {
  const bad = (message: string, code: string | null = null, param: string | null = null): [number, unknown] => [400, openAIError(message, 'invalid_request_error', code, param)];
  for (const field of Object.keys(body)) {
    if (!KNOWN_PARAMETERS.has(field) && !(flavor === 'deepseek' && DEEPSEEK_PARAMETERS.has(field))) return bad(`Unrecognized request argument supplied: ${field}`);
  }
  const limit = body.max_completion_tokens ?? body.max_tokens;
  if (typeof limit === 'number' && limit > OUTPUT_LIMIT[flavor]) {
    return flavor === 'openai'
      ? bad(`max_tokens is too large: ${limit}. This model supports at most ${OUTPUT_LIMIT.openai} completion tokens, whereas you provided ${limit}.`, 'invalid_value', 'max_tokens')
      : bad(`Invalid max_tokens value, the valid range of max_tokens is [1, ${OUTPUT_LIMIT.deepseek}]`, 'invalid_request_error');
  }
  if (flavor === 'openai' && body.max_tokens !== undefined && REASONING_MODEL.test(body.model)) {
    return bad("Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", 'unsupported_parameter', 'max_tokens');
  }
  if (flavor === 'openai' && body.reasoning_effort !== undefined && !REASONING_MODEL.test(body.model)) {
    return bad("Unsupported parameter: 'reasoning_effort' is not supported with this model.", 'unsupported_parameter', 'reasoning_effort');
  }
  const format = body.response_format?.type;
  if (flavor === 'deepseek' && format !== undefined && format !== 'text' && format !== 'json_object') return bad('This response_format type is unavailable now', 'invalid_request_error');
  if (flavor === 'deepseek' && format === 'json_object' && !/json/i.test(JSON.stringify(body.messages))) {
    return bad("Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'.", 'invalid_request_error');
  }
  if (flavor === 'openai' && Array.isArray(body.stop) && body.stop.length > 4) {
    return bad(`Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length ${body.stop.length} instead.`, 'array_above_max_length', 'stop');
  }
  if (typeof body.user === 'string' && body.user.length > 64) {
    return bad(`Invalid 'user': string too long. Expected a string with maximum length 64, but got a string with length ${body.user.length} instead.`, 'string_above_max_length', 'user');
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return bad("Invalid type for 'tools': expected an array.", 'invalid_type', 'tools');
    const index = body.tools.findIndex((tool: any) => tool?.type !== 'function' || !/^[a-zA-Z0-9_-]{1,64}$/.test(String(tool?.function?.name)));
    if (index !== -1) return bad(`Invalid 'tools[${index}]': expected a function tool with a valid name.`, 'invalid_value', `tools[${index}]`);
  } else if (body.tool_choice !== undefined) {
    return bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", null, 'tool_choice');
  }
  const pending = new Set<string>();
  for (let i = 0; i < body.messages.length; i++) {
    const message = body.messages[i];
    if (flavor === 'openai' && typeof message === 'object' && message !== null) {
      const extra = Object.keys(message).filter((field) => !MESSAGE_FIELDS.has(field));
      if (extra.length > 0) return bad(`Additional properties are not allowed (${extra.map((field) => `'${field}'`).join(', ')} ${extra.length === 1 ? 'was' : 'were'} unexpected) - 'messages.${i}'`);
    }
    // DeepSeek's thinking mode wants its reasoning back on every assistant turn that called tools.
    if (flavor === 'deepseek' && body.model === 'deepseek-reasoner' && message?.role === 'assistant' && Array.isArray(message.tool_calls) && typeof message.reasoning_content !== 'string') {
      return bad(`Missing \`reasoning_content\` field in the assistant message at message index ${i}. For more information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls`, 'invalid_request_error');
    }
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(message?.role)) {
      return bad(`Invalid value: '${String(message?.role)}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`, 'invalid_value', `messages[${i}].role`);
    }
    if (message.role === 'tool') {
      if (!pending.delete(message.tool_call_id)) {
        return bad("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", null, `messages.[${i}].role`);
      }
      if (typeof message.content !== 'string' && !Array.isArray(message.content)) return bad(`Invalid 'messages[${i}].content': expected a string.`, 'invalid_type', `messages[${i}].content`);
      continue;
    }
    if (pending.size > 0) {
      return bad(`An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...pending].join(', ')}`, null, 'messages');
    }
    if (Array.isArray(message.content)) {
      const types = message.role === 'user' ? ['text', 'image_url', 'input_audio', 'file'] : ['text', 'refusal'];
      const part = message.content.findIndex((candidate: any) => !types.includes(candidate?.type) || Object.keys(candidate).some((key) => key !== 'type' && key !== candidate.type));
      if (part !== -1) return bad(`Invalid 'messages[${i}].content[${part}]': unknown part or field.`, 'invalid_value', `messages[${i}].content[${part}]`);
    }
    if (message.role === 'assistant' && Array.isArray(message.tool_calls)) {
      for (const call of message.tool_calls) {
        if (typeof call?.id !== 'string' || typeof call?.function?.arguments !== 'string') return bad(`Invalid 'messages[${i}].tool_calls': expected id and function.arguments strings.`, 'invalid_type');
        pending.add(call.id);
      }
    }
  }
  if (pending.size > 0) {
    return bad(`An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...pending].join(', ')}`, null, 'messages');
  }
  return null;
}

export function lastUserText(json: any): string {
  const messages: any[] = Array.isArray(json?.messages) ? json.messages : [];
  const last = [...messages].reverse().find((message) => message?.role === 'user');
  return typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
}

export function replyFor(flavor: Flavor, json: any): string {
  const last = Array.isArray(json?.messages) ? json.messages.at(-1) : undefined;
  if (last?.role === 'tool') return `${flavor} says: the tool answered ${typeof last.content === 'string' ? last.content : JSON.stringify(last.content)}`;
  return `${flavor} says: ${lastUserText(json)}`;
}

/** A tool call, when the request offers tools and its last message is a user asking about the weather. */
export function wantsToolCall(json: any): boolean {
  const last = Array.isArray(json?.messages) ? json.messages.at(-1) : undefined;
  return Array.isArray(json?.tools) && json.tools.length > 0 && last?.role === 'user' && /weather/i.test(lastUserText(json));
}

/** Chunk text into pieces of ~5 characters, as real streams do. */
export function pieces(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 5) out.push(text.slice(i, i + 5));
  return out;
}

export function startOpenAIMock(options: MockOptions): Promise<MockUpstream> {
  const { flavor, apiKey } = options;
  const stored: ResponseStore = new Map();
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
    if (flavor === 'openai' && recorded.path.startsWith('/v1/responses')) {
      if (!accepted.includes(auth)) return sendJson(res, 401, openAIError('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'), idHeader);
      if (serveResponses(res, recorded, stored, idHeader)) return;
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
    const broken = validateChat(flavor, body);
    if (broken !== null) return sendJson(res, broken[0], broken[1], idHeader);

    const id = flavor === 'openai' ? `chatcmpl-${randomBytes(12).toString('hex')}` : randomUUID();
    const created = Math.floor(Date.now() / 1000);
    const model = flavor === 'openai' ? `${body.model}-2024-08-06` : body.model;
    const reply = replyFor(flavor, body);
    const reasoning = flavor === 'deepseek' && body.model === 'deepseek-reasoner' ? 'Thinking about it.' : null;
    const usage: any = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, prompt_tokens_details: { cached_tokens: 0 } };
    if (flavor === 'deepseek') Object.assign(usage, { prompt_cache_hit_tokens: 0, prompt_cache_miss_tokens: 11 });
    if (reasoning !== null) usage.completion_tokens_details = { reasoning_tokens: 3 };

    const toolCall = wantsToolCall(body) ? { id: flavor === 'openai' ? 'call_Wx1Yz2' : 'call_00_ds1', name: body.tools[0].function.name, arguments: '{"city": "Paris", "unit": "celsius"}' } : null;
    if (body.stream !== true) {
      const message: any = { role: 'assistant', content: toolCall === null ? reply : null };
      if (toolCall !== null) message.tool_calls = [{ id: toolCall.id, type: 'function', function: { name: toolCall.name, arguments: toolCall.arguments } }];
      if (flavor === 'openai') Object.assign(message, { refusal: null, annotations: [] });
      if (reasoning !== null) message.reasoning_content = reasoning;
      const completion = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: toolCall === null ? 'stop' : 'tool_calls' }],
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
    if (toolCall === null) {
      for (const piece of pieces(reply)) {
        events.push(frame({ ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }], ...usageNull }));
      }
    } else {
      // OpenAI's shape: the id and name first with empty arguments, then the arguments in fragments.
      const first = { index: 0, id: toolCall.id, type: 'function', function: { name: toolCall.name, arguments: '' } };
      events.push(frame({ ...base, choices: [{ index: 0, delta: { tool_calls: [first] }, logprobs: null, finish_reason: null }], ...usageNull }));
      for (const piece of ['{"ci', 'ty": "Pa', 'ris", "unit', '": "celsius"}']) {
        events.push(frame({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }], ...usageNull }));
      }
    }
    const finish = toolCall === null ? 'stop' : 'tool_calls';
    if (flavor === 'deepseek') {
      events.push(frame({ ...base, choices: [{ index: 0, delta: { content: '' }, logprobs: null, finish_reason: finish }], ...(includeUsage ? { usage } : {}) }));
    } else {
      events.push(frame({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finish }], ...usageNull }));
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
    stored,
  }));
}
