/**
 * Chat Completions requests: reading a client's, and writing one for a provider.
 */
import { invalidRequest } from '../../errors.js';
import { memberView } from '../json-bytes.js';
import { goFold, isRecord, parseJsonObject } from '../json.js';
import { jsonPieces } from '../json-pieces.js';
import { splicedBody, withChanges, type ClientBytes } from '../json-splice.js';
import type { ChatRequest } from './types.js';

/** The fields that limit a completion's output, of which max_completion_tokens wins. */
const OUTPUT_LIMITS = ['max_completion_tokens', 'max_tokens'] as const;

/** What the checks read of a conversation: each message's role. */
const MESSAGE_ROLES = { messages: ['role'] };

/**
 * The client's body → a validated ChatRequest. Only what the gateway itself relies on is checked
 * (the provider validates the rest and its errors are passed on): a JSON object with a non-empty
 * string `model`, a non-empty `messages` array of objects, a boolean `stream` and output limits
 * the gateway can read if present: numbers, or numbers written as strings, which lenient servers
 * honour (a limit it could not read would escape the key's output cap and what its limits hold).
 */
export function parseChatRequest(raw: Buffer): ChatRequest {
  const body = parseJsonObject(raw, '"model" and "messages"', MESSAGE_ROLES);
  if (typeof body.model !== 'string' || body.model === '') {
    throw invalidRequest(
      body.model === undefined ? 'Missing required parameter: "model".' : '"model" must be a non-empty string.',
      'model',
      body.model === undefined ? 'missing_required_parameter' : 'invalid_type',
    );
  }
  // A large conversation is checked as bytes (its roles), not parsed: passed through, nothing reads it.
  const messages = memberView(body, 'messages');
  if (!Array.isArray(messages) || messages.length === 0) {
    throw invalidRequest(
      messages === undefined ? 'Missing required parameter: "messages".' : '"messages" must be a non-empty array of messages.',
      'messages',
      messages === undefined ? 'missing_required_parameter' : 'invalid_type',
    );
  }
  const bad = messages.findIndex((message) => !isRecord(message) || typeof message.role !== 'string');
  if (bad !== -1) throw invalidRequest(`"messages[${bad}]" must be an object with a string "role".`, `messages[${bad}]`, 'invalid_type');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw invalidRequest('"stream" must be true or false.', 'stream', 'invalid_type');
  }
  for (const name of OUTPUT_LIMITS) {
    const limit = body[name];
    if (limit !== undefined && limit !== null && Number.isNaN(limitValue(limit))) {
      throw invalidRequest(`Invalid type for '${name}': expected an integer.`, name, 'invalid_type');
    }
  }
  return body as ChatRequest;
}

/** Digits, as some clients send a limit (a form's field), and lenient servers take it. */
const NUMERIC_TEXT = /^\s*\d+(?:\.\d+)?\s*$/;

/** An output limit as the gateway reads it: a finite number, or one written as a string; NaN for anything else. */
function limitValue(value: unknown): number {
  const read = typeof value === 'number' ? value : typeof value === 'string' && NUMERIC_TEXT.test(value) ? Number(value) : Number.NaN;
  return Number.isFinite(read) ? read : Number.NaN;
}

/**
 * The output tokens the client allows at most (0: it sets no limit): the larger of its two
 * fields, since servers differ on which one wins (OpenAI: max_completion_tokens; others read
 * `max_completion_tokens or max_tokens`, so a 0 in the first gives the second).
 */
export function maxOutputTokens(request: ChatRequest): number {
  const value = Math.max(limitValue(request.max_completion_tokens ?? 0) || 0, limitValue(request.max_tokens ?? 0) || 0);
  return value > 0 ? Math.floor(value) : 0;
}

/**
 * A client's output limit field under `cap`: its own value where that is a limit of at least 1 and
 * at most the cap, the cap otherwise (absent, above it, or a 0 a server might read as no limit).
 */
export function limitUnder(value: unknown, cap: number): unknown {
  const read = limitValue(value ?? 0);
  return read >= 1 && read <= cap ? value : cap;
}

/** The answers the client asks for (`n`, read as its limits are: a lenient server takes `"2"`), at least 1. */
export function choicesAsked(request: ChatRequest): number {
  const n = limitValue(request.n ?? 1);
  return n >= 1 ? Math.floor(n) : 1;
}

/** The client wrote a limit in either field. */
export function statesOutputLimit(request: ChatRequest): boolean {
  return request.max_completion_tokens != null || request.max_tokens != null;
}

/** The client asked for usage at the end of its stream. */
export function wantsStreamUsage(request: ChatRequest): boolean {
  const options = request.stream_options;
  return isRecord(options) && options.include_usage === true && !Object.keys(options).some(isUsageTwin);
}

/** `Include_usage` and the like: Go servers (Ollama) read the last of them as include_usage. */
function isUsageTwin(key: string): boolean {
  return key !== 'include_usage' && goFold(key) === 'include_usage';
}

/** The client's stream options, less any twin of include_usage (the gateway sets it). */
function withoutUsageTwins(options: unknown): Record<string, unknown> {
  return isRecord(options) ? Object.fromEntries(Object.entries(options).filter(([key]) => !isUsageTwin(key))) : {};
}

const STREAM_USAGE_FIELD = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * The body a provider that speaks Chat Completions gets: the client's own bytes when it spoke
 * chat (`raw`), with what must change spliced in. For streams the gateway always asks for usage,
 * so every log entry has token counts: `stream_options` gets `include_usage`, the rest of the
 * body sent as the client's pieces, not copied into one.
 */
export function chatRequestBody(request: ChatRequest, raw: ClientBytes | null): Buffer | string | readonly Buffer[] {
  const options = request.stream_options;
  const usage = request.stream === true && !wantsStreamUsage(request) ? { ...withoutUsageTwins(options), include_usage: true } : null;
  // The common case, a stream without stream_options: the field goes after the opening brace, the
  // body not walked.
  if (raw !== null && usage !== null && raw.changes.size === 0 && !('stream_options' in request)) {
    const brace = raw.raw.indexOf(0x7b /* { */);
    return [raw.raw.subarray(0, brace + 1), STREAM_USAGE_FIELD, raw.raw.subarray(brace + 1)];
  }
  const spliced = raw === null ? null : splicedBody(usage === null ? raw : withChanges(raw, [['stream_options', usage]]));
  return spliced ?? jsonPieces(usage === null ? request : { ...request, stream_options: usage }, 'messages');
}
