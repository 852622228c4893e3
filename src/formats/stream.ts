/**
 * A stream as the translators see it, in any API: its events as objects, its end, or its
 * failure. Translating a stream maps items of one API to items of another; bytes and SSE framing
 * stay with the relay.
 */
import type { GatewayError } from '../errors.js';

export type StreamItem<Event> =
  /**
   * `data`: the event's JSON text as the provider sent it, when it is to be passed on unchanged;
   * `name`: then its `event:` line as sent (none: it had none).
   */
  | { readonly kind: 'event'; readonly event: Event; readonly data?: string; readonly name?: string }
  /** The API's own end of stream (chat's `[DONE]`; Anthropic's ends with its message_stop event). */
  | { readonly kind: 'end' }
  | { readonly kind: 'error'; readonly error: GatewayError };

/** One stream's translation: each item of the provider's stream → the items the client gets. */
export type StreamTranslator<From, To> = (item: StreamItem<From>) => Array<StreamItem<To>>;
