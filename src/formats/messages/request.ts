/**
 * A client's Messages request, read and checked for what the gateway relies on (the provider,
 * or the translation, checks the rest): a JSON object with a non-empty string `model`, a
 * non-empty `messages` array of objects with a string `role`, an integer `max_tokens` (required,
 * as Anthropic requires it; not for count_tokens) and a boolean `stream` if present.
 */
import type { GatewayError } from '../../errors.js';
import { invalidRequest } from '../../errors.js';
import { memberView } from '../json-bytes.js';
import { isRecord, parseJsonObject } from '../json.js';
import type { AnthropicRequest } from './types.js';

function missing(field: string): GatewayError {
  return invalidRequest(`${field}: Field required`, field, 'missing_required_parameter');
}

/** What the checks read of a conversation: each message's role. */
const MESSAGE_ROLES = { messages: ['role'] };

/** `countTokens`: the body of `POST /v1/messages/count_tokens`, which has no max_tokens. */
export function parseMessagesRequest(raw: Buffer, countTokens = false): AnthropicRequest {
  const body = parseJsonObject(raw, countTokens ? '"model" and "messages"' : '"model", "messages" and "max_tokens"', MESSAGE_ROLES);
  if (body.model === undefined) throw missing('model');
  if (typeof body.model !== 'string' || body.model === '') throw invalidRequest('model: must be a non-empty string', 'model', 'invalid_type');
  if (!Object.hasOwn(body, 'messages')) throw missing('messages');
  // A large conversation is checked as bytes (its roles), not parsed: passed through, nothing reads it.
  const messages = memberView(body, 'messages');
  if (!Array.isArray(messages) || messages.length === 0) throw invalidRequest('messages: must be a non-empty array of messages', 'messages', 'invalid_type');
  const bad = messages.findIndex((message) => !isRecord(message) || typeof message.role !== 'string');
  if (bad !== -1) throw invalidRequest(`messages.${bad}: must be an object with a string "role"`, `messages.${bad}`, 'invalid_type');
  if (!countTokens) {
    if (body.max_tokens === undefined) throw missing('max_tokens');
    if (typeof body.max_tokens !== 'number' || !Number.isInteger(body.max_tokens) || body.max_tokens < 0) {
      throw invalidRequest('max_tokens: must be a non-negative integer', 'max_tokens', 'invalid_type');
    }
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw invalidRequest('stream: must be true or false', 'stream', 'invalid_type');
  return body as AnthropicRequest;
}
