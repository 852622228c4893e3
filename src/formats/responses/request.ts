/**
 * A client's Responses request, read and checked for what the gateway relies on (the provider,
 * or the translation, checks the rest): a JSON object with a non-empty string `model`, `input`
 * a string or an array if present, a boolean `stream` and a positive integer
 * `max_output_tokens` if present.
 */
import { invalidRequest } from '../../errors.js';
import { memberView } from '../json-bytes.js';
import { isRecord, parseJsonObject } from '../json.js';
import type { ResponsesRequest } from './types.js';

/** Each input item's type, id, role and whether it carries its reasoning: enough to tell an item reference. */
const ITEM_FIELDS = ['type', 'id', 'role', 'encrypted_content'];

/**
 * An input item naming an item by id alone (OpenAI's type is optional on one: an id, no type, no
 * role), or a reasoning item by its id without its `encrypted_content`, which OpenAI reads from the
 * responses it stored (clients with `store: true` send their reasoning back so). A null field is
 * read as absent, as a server may read it.
 */
export function isItemReference(item: unknown): boolean {
  if (!isRecord(item)) return false;
  if (item.type === 'item_reference') return true;
  // Only content it can read carries it: an empty one, or one that is no string, may leave it to the store.
  if (item.type === 'reasoning') return item.id != null && (typeof item.encrypted_content !== 'string' || item.encrypted_content === '');
  return item.type == null && item.id != null && item.role == null;
}

export function parseResponsesRequest(raw: Buffer): ResponsesRequest {
  // What the pass-through reads of each input item, looking for item references (surfaces/responses.ts).
  const body = parseJsonObject(raw, '"model" and "input"', { input: ITEM_FIELDS });
  if (body.model === undefined) throw invalidRequest("Missing required parameter: 'model'.", 'model', 'missing_required_parameter');
  if (typeof body.model !== 'string' || body.model === '') throw invalidRequest("Invalid type for 'model': expected a non-empty string.", 'model', 'invalid_type');
  // A large conversation is checked as bytes (its kind), not parsed: passed through, nothing reads it.
  const input = memberView(body, 'input');
  if (input !== undefined && input !== null && typeof input !== 'string' && !Array.isArray(input)) {
    throw invalidRequest("Invalid type for 'input': expected a string or an array of input items.", 'input', 'invalid_type');
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw invalidRequest("Invalid type for 'stream': expected a boolean.", 'stream', 'invalid_type');
  }
  const limit = body.max_output_tokens;
  if (limit !== undefined && limit !== null) {
    // As OpenAI words and codes them.
    if (typeof limit !== 'number' || !Number.isInteger(limit)) throw invalidRequest("Invalid type for 'max_output_tokens': expected an integer.", 'max_output_tokens', 'invalid_type');
    if (limit < 1) throw invalidRequest(`Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, but got ${limit} instead.`, 'max_output_tokens', 'integer_below_min_value');
  }
  return body as ResponsesRequest;
}

/** The client wrote a limit, whatever its value. */
export function statesOutputLimit(request: ResponsesRequest): boolean {
  return request.max_output_tokens != null;
}

/** The output tokens the client allows at most (0: it sets no limit). */
export function maxOutputTokens(request: ResponsesRequest): number {
  const value = request.max_output_tokens;
  return typeof value === 'number' && value > 0 ? value : 0;
}
