/**
 * The client's body → a validated ChatRequest. Only what the gateway itself relies on is checked
 * (the provider validates the rest and its errors are passed on): a JSON object with a non-empty
 * string `model`, a non-empty `messages` array of objects, and a boolean `stream` if present.
 */
import { invalidRequest } from '../../errors.js';
import { isRecord, type ChatRequest } from './types.js';

export function parseChatRequest(raw: Buffer): ChatRequest {
  if (raw.length === 0) throw invalidRequest('The request body is empty; expected a JSON object with "model" and "messages".', null, 'invalid_json');
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw invalidRequest(`The request body is not valid JSON (${(err as Error).message}).`, null, 'invalid_json');
  }
  if (!isRecord(body)) throw invalidRequest('The request body must be a JSON object with "model" and "messages".', null, 'invalid_body');
  if (typeof body.model !== 'string' || body.model === '') {
    throw invalidRequest(
      body.model === undefined ? 'Missing required parameter: "model".' : '"model" must be a non-empty string.',
      'model',
      body.model === undefined ? 'missing_required_parameter' : 'invalid_type',
    );
  }
  const messages = body.messages;
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
  return body as ChatRequest;
}
