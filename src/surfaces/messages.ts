/**
 * `POST /v1/messages`: Anthropic's Messages API, spoken by Claude Code and the Anthropic SDKs.
 * The key comes as `x-api-key` (ANTHROPIC_API_KEY) or `Authorization: Bearer`
 * (ANTHROPIC_AUTH_TOKEN); errors have Anthropic's shape and every answer carries `request-id`,
 * which Anthropic's clients read. Passed through, the client's API version and betas go with it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { messagesClient, type MessagesTypes } from '../formats/messages/index.js';
import { threadNotFound, threadOf, threadUnsupported } from '../formats/messages/threads.js';
import type { AnthropicRequest } from '../formats/messages/types.js';
import { bearerToken, type Presented } from '../policy/auth.js';
import type { VirtualKey } from '../policy/keys.js';
import { ownerTag, type ResponseOwners } from '../policy/response-owners.js';
import type { Target } from '../policy/target.js';
import type { Surface } from './surface.js';
import { shallow } from './outbound.js';

/**
 * The virtual keys an Anthropic client presents: `x-api-key` first, as Anthropic reads it, then
 * `Authorization: Bearer`. Both are tried: an SDK given ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN
 * sends both, and a real key left in the first must not hide the virtual key in the second.
 */
export function anthropicCredential(headers: IncomingHttpHeaders): Presented {
  const presented: string[] = [];
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.trim() !== '') presented.push(apiKey.trim());
  const bearer = bearerToken(headers.authorization);
  if (bearer !== null) presented.push(bearer);
  return presented.length === 0 ? null : presented;
}

/** The only client headers that reach the provider: what the request means depends on them. */
export function anthropicHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const passed: Record<string, string> = {};
  const version = headers['anthropic-version'];
  if (typeof version === 'string' && version !== '') passed['anthropic-version'] = version;
  const beta = headers['anthropic-beta'];
  if (typeof beta === 'string' && beta !== '') passed['anthropic-beta'] = beta;
  return passed;
}

/**
 * A message thread's history is kept at Anthropic, for the real key: several virtual keys often
 * share one, so a thread is continued only by the key whose reply it follows (remembered by this
 * process; any other, or one it no longer remembers, is a thread not found, and the SDK replays
 * the conversation as a new thread). Another provider speaking Messages keeps no threads. True
 * when the request has a thread: it then goes re-serialised, as checked.
 */
export function checkThread(request: AnthropicRequest, target: Target, key: VirtualKey, owners: ResponseOwners): boolean {
  const thread = threadOf(request.thread);
  if (thread.kind === 'none') return false;
  if (target.provider.name !== 'anthropic') throw threadUnsupported(`its provider (${target.provider.name}) keeps no conversation's history`);
  if (thread.kind === 'continue' && owners.get(target.storage, thread.previous) !== ownerTag(key.id)) throw threadNotFound(thread.previous);
  return true;
}

export const HOW_TO_SEND_ANTHROPIC_KEY = "Send it as 'x-api-key: <virtual key>' (ANTHROPIC_API_KEY) or 'Authorization: Bearer <virtual key>' (ANTHROPIC_AUTH_TOKEN).";

export const messagesSurface: Surface<MessagesTypes> = {
  api: messagesClient,
  credential: anthropicCredential,
  howToSendKey: () => HOW_TO_SEND_ANTHROPIC_KEY,
  answerHeaders: (context) => ({ 'request-id': context.id }),
  passHeaders: anthropicHeaders,
  passThrough({ request, body, key, target, deps }) {
    // What the gateway read is what Anthropic gets, whichever of two keys a parser takes (inside
    // `thread` as well): only requests with a thread pay.
    return checkThread(request, target, key, deps.owners) ? shallow(() => JSON.stringify(request)) : body;
  },
  answered(answer, request, key, target, deps) {
    if (threadOf(request.thread).kind !== 'none') deps.owners.set(target.storage, answer.id, ownerTag(key.id));
  },
  continues(request) {
    // A malformed thread is refused where it is checked (passThrough), not here.
    try {
      const thread = threadOf(request.thread);
      return thread.kind === 'continue' ? thread.previous : null;
    } catch {
      return null;
    }
  },
};

/** The headers of a request in Anthropic's style (its SDKs send `anthropic-version`, Claude Code `x-api-key`). */
export const ANTHROPIC_STYLE_HEADERS = ['anthropic-version', 'x-api-key'] as const;

/** A request in Anthropic's style: answered in its format. */
export function isAnthropicStyle(headers: IncomingHttpHeaders): boolean {
  return ANTHROPIC_STYLE_HEADERS.some((name) => headers[name] !== undefined);
}

/** A path of the Messages routes (`/v1/messages`, its count_tokens, and what a client appends): errors there take Anthropic's shape. */
export function isMessagesPath(path: string): boolean {
  return path.startsWith('/v1/messages');
}
