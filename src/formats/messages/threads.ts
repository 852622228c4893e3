/**
 * Anthropic's message threads (the `thread` request field, beta `message-threads-2026-08-12`):
 * Anthropic keeps a conversation's history, and each turn sends only its new messages, with
 * `{"type": "continue", "previous_message_id"}` naming the reply it follows. The SDK recovers
 * from two refusals on its own, by the codes in `error.details.error_code`: a thread that cannot
 * be kept (`thread_unsupported_request`: it sends the whole conversation without a thread, or
 * throws, as the caller chose) and a thread not found (`thread_not_found`: it replays the whole
 * conversation as a new thread).
 */
import { GatewayError } from '../../errors.js';
import { isRecord } from '../json.js';

/** The codes Anthropic puts in `error.details.error_code` that the gateway answers with. */
export const THREAD_ERROR_CODES: ReadonlySet<string> = new Set(['thread_unsupported_request', 'thread_not_found']);

/** Threads need the provider to keep the history: a translation (or a provider that only speaks the API) keeps none. */
export function threadUnsupported(why: string): GatewayError {
  return new GatewayError(400, `thread: message threads are not available with this key: ${why}. Send the whole conversation without thread.`, {
    code: 'thread_unsupported_request',
    param: 'thread',
  });
}

/** A continued thread this virtual key cannot be shown to own: as if it did not exist (the SDK replays the conversation). */
export function threadNotFound(id: string): GatewayError {
  return new GatewayError(404, `No thread was found for previous_message_id '${id}'.`, { code: 'thread_not_found', param: 'thread.previous_message_id' });
}

function invalidThread(message: string, param: string): GatewayError {
  return new GatewayError(400, message, { code: 'invalid_value', param });
}

/**
 * What a request's `thread` asks for: none, a new thread, or the continuation of the reply
 * `previous`. Only these two shapes pass: anything that names a reply is a continuation (however
 * its `type` is written), and any other value is a 400, so that nothing the gateway did not
 * check can name another key's reply to a provider that reads it otherwise.
 */
export function threadOf(thread: unknown): { kind: 'none' } | { kind: 'create' } | { kind: 'continue'; previous: string } {
  if (thread === undefined || thread === null) return { kind: 'none' };
  if (!isRecord(thread)) throw invalidThread('thread: must be an object, {"type": "create"} or {"type": "continue", "previous_message_id"}.', 'thread');
  if (thread.type === 'continue' || Object.hasOwn(thread, 'previous_message_id')) {
    const previous = thread.previous_message_id;
    if (thread.type !== 'continue') throw invalidThread('thread.type: a thread that names previous_message_id continues it ("type": "continue").', 'thread.type');
    if (typeof previous !== 'string' || previous === '') throw invalidThread('thread.previous_message_id: a continued thread names the reply it follows (a non-empty string).', 'thread.previous_message_id');
    return { kind: 'continue', previous };
  }
  if (thread.type !== 'create') throw invalidThread('thread.type: must be "create" or "continue".', 'thread.type');
  return { kind: 'create' };
}
