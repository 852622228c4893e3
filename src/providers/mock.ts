/**
 * The demo provider: a Chat Completions server that runs in-process, with no network and no
 * account, in OpenAI's exact wire format (so the rest of the gateway treats it like any
 * upstream: it gets the request bytes a provider would, and answers with bytes). Deterministic:
 * it echoes the last user message (in each of `n` choices, with certain `logprobs` when asked),
 * with usage numbers estimated at ~4 characters per token.
 * Anyone holding the demo key can send it megabytes, so the echo and its stream are bounded:
 * at most ECHO_LIMIT characters, in at most STREAM_PIECES content events, each made when read.
 */
import { Readable } from 'node:stream';
import { chatTarget } from '../formats/chat/index.js';
import type { ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest, ChatUsage } from '../formats/chat/types.js';
import { GatewayError } from '../errors.js';
import { isRecord } from '../formats/json.js';
import type { LocalServer, UpstreamResponse } from '../upstream/types.js';
import type { Provider } from './types.js';

// Where the chat API is served, as for any provider speaking it.
const CHAT_PATH = chatTarget.path;
const MODELS_PATH = chatTarget.modelsPath;

/** Characters of the message echoed; longer text is cut and ends with "…". */
const ECHO_LIMIT = 4096;
/** Content events of a streamed echo at most: one per word until then, then several words per event. */
const STREAM_PIECES = 64;

function textOf(message: ChatMessage | undefined): string {
  const content = message?.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => (typeof part === 'object' && part !== null && typeof part.text === 'string' ? part.text : ''))
    .filter((text) => text !== '')
    .join(' ');
}

function tokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function cut(text: string, limit: number): string {
  if (text.length <= limit) return text;
  // Never half a surrogate pair: the cut text must still encode to valid UTF-8.
  const high = text.charCodeAt(limit - 1);
  const end = high >= 0xd800 && high <= 0xdbff ? limit - 1 : limit;
  return `${text.slice(0, end)}…`;
}

/** The echo, at most `limit` characters of the last user message. */
function mockReply(request: ChatRequest, limit: number): string {
  const lastUser = [...request.messages].reverse().find((message) => message?.role === 'user');
  const text = textOf(lastUser).trim();
  return `Echo: ${text === '' ? '(no text)' : cut(text, limit)}`;
}

/** The reply's words (each with its trailing space), joined into at most STREAM_PIECES pieces. */
function pieces(reply: string): string[] {
  const words = reply.split(/(?<= )/);
  if (words.length <= STREAM_PIECES) return words;
  const size = Math.ceil(words.length / STREAM_PIECES);
  const joined: string[] = [];
  for (let i = 0; i < words.length; i += size) joined.push(words.slice(i, i + size).join(''));
  return joined;
}

function mockUsage(request: ChatRequest, reply: string): ChatUsage {
  const prompt = request.messages.reduce((sum, message) => sum + tokens(textOf(message)), 0);
  const completion = tokens(reply);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function* asBytes(parts: Iterable<string>): Generator<Buffer> {
  for (const part of parts) yield Buffer.from(part);
}

/** `parts` is read as the body is: a generator's are made one at a time, as the client takes them. */
function respond(status: number, contentType: string, parts: Iterable<string>, id: string): UpstreamResponse {
  const body = Readable.from(asBytes(parts));
  return { status, headers: { 'content-type': contentType, 'x-request-id': `mock-${id}` }, body, abort: () => body.destroy() };
}

function error(failure: GatewayError): UpstreamResponse {
  return respond(failure.status, 'application/json', [JSON.stringify(failure.toBody())], 'error');
}

/** In the gateway's own words for a path it does not serve. */
function notFound(method: string, path: string): UpstreamResponse {
  return error(new GatewayError(404, `Unknown path: ${method} ${path}. The mock provider serves POST ${CHAT_PATH} and GET ${MODELS_PATH}.`, { code: 'not_found' }));
}

/** OpenAI's bounds on `n` and `top_logprobs`. */
const MAX_CHOICES = 128;
const MAX_TOP_LOGPROBS = 20;

/** A token's log probability as OpenAI writes one: the echo is certain, so 0, and its only alternative is itself. */
function tokenLogprob(token: string, top: number): Record<string, unknown> {
  const bytes = [...Buffer.from(token)];
  return { token, logprob: 0, bytes, top_logprobs: top > 0 ? [{ token, logprob: 0, bytes }] : [] };
}

/** `n` and `logprobs` as OpenAI takes them (a 400 naming the field otherwise). */
function choicesOf(request: ChatRequest): { n: number; top: number | null } | GatewayError {
  const n = request.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CHOICES) return new GatewayError(400, `"n" must be an integer from 1 to ${MAX_CHOICES}.`, { param: 'n', code: 'invalid_value' });
  const top = request.top_logprobs ?? 0;
  if (typeof top !== 'number' || !Number.isInteger(top) || top < 0 || top > MAX_TOP_LOGPROBS) return new GatewayError(400, `"top_logprobs" must be an integer from 0 to ${MAX_TOP_LOGPROBS}.`, { param: 'top_logprobs', code: 'invalid_value' });
  if (top > 0 && request.logprobs !== true) return new GatewayError(400, '"logprobs" must be true when "top_logprobs" is set.', { param: 'logprobs', code: 'invalid_value' });
  return { n, top: request.logprobs === true ? top : null };
}

function answer(request: ChatRequest, id: string): UpstreamResponse {
  const created = Math.floor(Date.now() / 1000);
  const model = request.model;
  const asked = choicesOf(request);
  if (asked instanceof GatewayError) return error(asked);
  const { n, top } = asked;
  // ECHO_LIMIT for all the choices together: `n` copies of the whole echo (with `logprobs`, a
  // word's worth each) let a 4 KB request of the demo key write megabytes of answer and log.
  const reply = mockReply(request, Math.max(1, Math.floor(ECHO_LIMIT / n)));
  const replyPieces = pieces(reply);
  const usage = mockUsage(request, reply);
  // Every choice's tokens are billed, as OpenAI bills them.
  usage.completion_tokens *= n;
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  const indexes = Array.from({ length: n }, (_, index) => index);

  if (request.stream !== true) {
    const logprobs = top === null ? null : { content: replyPieces.map((piece) => tokenLogprob(piece, top)), refusal: null };
    const completion: ChatCompletion = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: indexes.map((index) => ({ index, message: { role: 'assistant', content: reply }, logprobs, finish_reason: 'stop' })),
      usage,
    };
    return respond(200, 'application/json', [JSON.stringify(completion)], id);
  }

  const chunk = (index: number, delta: ChatCompletionChunk['choices'][number]['delta'], finish: string | null, logprobs: unknown = null): string =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index, delta, logprobs, finish_reason: finish }] })}\n\n`;
  function* events(): Generator<string> {
    for (const index of indexes) {
      yield chunk(index, { role: 'assistant', content: '' }, null);
      for (const piece of replyPieces) yield chunk(index, { content: piece }, null, top === null ? null : { content: [tokenLogprob(piece, top)], refusal: null });
      yield chunk(index, {}, 'stop');
    }
    // The gateway always asks for usage; it holds this chunk back from clients that did not ask.
    yield `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`;
    yield 'data: [DONE]\n\n';
  }
  return respond(200, 'text/event-stream; charset=utf-8', events(), id);
}

function createMockServer(): LocalServer {
  let counter = 0;
  return {
    handle(method, target, body) {
      // Like any server, the query is not part of the path: a chat client's own (an SDK's
      // defaultQuery, Azure's api-version) is passed on to the provider it speaks to.
      const query = target.indexOf('?');
      const path = query === -1 ? target : target.slice(0, query);
      if (method === 'GET' && path === MODELS_PATH) {
        return respond(200, 'application/json', [JSON.stringify({ object: 'list', data: [{ id: 'mock-echo', object: 'model', created: 0, owned_by: 'llm-gateway' }] })], 'models');
      }
      if (method !== 'POST' || path !== CHAT_PATH) return notFound(method, path);
      let request: unknown;
      try {
        request = JSON.parse(body.toString('utf8'));
      } catch {
        return error(new GatewayError(400, 'The request body is not JSON.'));
      }
      if (!isRecord(request) || !Array.isArray(request.messages)) return error(new GatewayError(400, 'A chat request needs "messages".'));
      return answer(request as ChatRequest, `chatcmpl-mock-${++counter}`);
    },
  };
}

function createMock(): Provider {
  return { name: 'mock', defaultBaseUrl: 'mock://local', requiresApiKey: false, apis: ['chat'], local: createMockServer() };
}

export const mock: Provider = createMock();
