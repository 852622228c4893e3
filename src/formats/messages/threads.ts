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

/**
 * What a request's `thread` asks for: none, a new thread, or the continuation of the reply
 * `previous` (a 400 for a continuation that does not name one).
 */
export function threadOf(thread: unknown): { kind: 'none' } | { kind: 'create' } | { kind: 'continue'; previous: string } {
  if (thread === undefined || thread === null) return { kind: 'none' };
  if (isRecord(thread) && thread.type === 'continue') {
    const previous = thread.previous_message_id;
    if (typeof previous !== 'string' || previous === '') {
      throw new GatewayError(400, 'thread.previous_message_id: a continued thread names the reply it follows (a non-empty string).', { code: 'invalid_value', param: 'thread.previous_message_id' });
    }
    return { kind: 'continue', previous };
  }
  // A new thread, or a value only the provider can judge: nothing of another key's is named.
  return { kind: 'create' };
}
