/**
 * A translation between the API a client speaks (C) and the one its provider speaks (T):
 * requests go forward, answers and streams come back. Each is pure (a stream's translator keeps
 * per-stream state, nothing else). Longer chains are compositions: a client API → the hub (chat)
 * → the provider's API is `compose(clientToChat, chatToProvider)`, not new code.
 */
import type { ApiTypes } from './api.js';
import type { StreamTranslator } from './stream.js';

/** What a stream's translator may need to know of its request before the provider says it. */
export interface StreamHints {
  /** An estimate of the prompt's tokens (clients break on a stream that starts with zero usage). */
  readonly promptTokens: number;
}

export interface Translation<C extends ApiTypes, T extends ApiTypes> {
  /** Both sides speak the same API: bytes may pass through unchanged. */
  readonly identity: boolean;
  request(request: C['request']): T['request'];
  response(response: T['response']): C['response'];
  /** A fresh translator for one stream. */
  stream(hints: StreamHints): StreamTranslator<T['event'], C['event']>;
}

export function identity<A extends ApiTypes>(): Translation<A, A> {
  return { identity: true, request: (request) => request, response: (response) => response, stream: () => (item) => [item] };
}

/** C → H → T as one translation. */
export function compose<C extends ApiTypes, H extends ApiTypes, T extends ApiTypes>(outer: Translation<C, H>, inner: Translation<H, T>): Translation<C, T> {
  if (inner.identity) return outer as unknown as Translation<C, T>;
  if (outer.identity) return inner as unknown as Translation<C, T>;
  return {
    identity: false,
    request: (request) => inner.request(outer.request(request)),
    response: (response) => outer.response(inner.response(response)),
    stream: (hints) => {
      const near = inner.stream(hints);
      const far = outer.stream(hints);
      return (item) => near(item).flatMap(far);
    },
  };
}
