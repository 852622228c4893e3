/**
 * A translation between the API a client speaks (C) and the one its provider speaks (T):
 * requests go forward, answers and streams come back. Each exchange (one request and its answer)
 * is pure; it may remember what its request said that the answer needs (a Responses client's
 * namespaced and custom tools come back under their own names), and a stream's translator keeps
 * per-stream state, nothing else. Longer chains are compositions: a client API → the hub (chat)
 * → the provider's API is `compose(clientToChat, chatToProvider)`, not new code.
 */
import { GatewayError } from '../errors.js';
import type { ApiTypes } from './api.js';
import type { StreamTranslator } from './stream.js';

/** What the translator of an answer (whole or streamed) may need to know of its request before, or unless, the provider says it. */
export interface AnswerHints {
  /** An estimate of the prompt's tokens (clients break on a stream that starts with zero usage, and take zeros for a count). */
  readonly promptTokens: number;
  /**
   * What a translated answer's ids are made of (the gateway's request id, in letters and digits),
   * never the provider's: unique, as a client expects an answer's and its tool calls' ids to be.
   */
  readonly answerId: string;
}

/** One request translated, and the way back for its answer. */
export interface Exchange<C extends ApiTypes, T extends ApiTypes> {
  readonly request: T['request'];
  response(response: T['response'], hints: AnswerHints): C['response'];
  /** A fresh translator for the answer's stream. */
  stream(hints: AnswerHints): StreamTranslator<T['event'], C['event']>;
  /** Tools of the request left out (ones only the client API's own provider runs), for the log. */
  readonly droppedTools?: readonly string[];
  /**
   * The client's name for a parameter of the translated request (`messages[3]` → `input[2]`,
   * `response_format` → `text.format`), null where it is the same: a refusal further down a
   * chain names what the client sent.
   */
  readonly clientParam?: (param: string) => string | null;
}

/**
 * An exchange once its request is sent: the way back for its answer. The request (a whole
 * conversation, translated) is let go of as soon as it is bytes: kept as long as the answer, it
 * outlived young collections and was promoted (docs/performance.md).
 */
export type WayBack<C extends ApiTypes, T extends ApiTypes> = Omit<Exchange<C, T>, 'request'>;

export interface Translation<C extends ApiTypes, T extends ApiTypes> {
  /** Both sides speak the same API: bytes may pass through unchanged. */
  readonly identity: boolean;
  exchange(request: C['request']): Exchange<C, T>;
}

/** An error about `param` of the hub, said in the client's words. */
function inClientTerms(err: unknown, clientParam: ((param: string) => string | null) | undefined): unknown {
  if (!(err instanceof GatewayError) || err.param === null || clientParam === undefined) return err;
  const param = err.param;
  const renamed = clientParam(param);
  if (renamed === null) return err;
  // Where the message names it: quoted, or leading ("messages[2].content[0]: …").
  let message = err.message.replaceAll(`"${param}"`, `"${renamed}"`).replaceAll(`'${param}'`, `'${renamed}'`);
  if (message.startsWith(`${param}:`)) message = `${renamed}${message.slice(param.length)}`;
  return err.with({ message, param: renamed });
}

/** A translation whose answers do not depend on their request. */
export function stateless<C extends ApiTypes, T extends ApiTypes>(parts: {
  request(request: C['request']): T['request'];
  response(response: T['response'], hints: AnswerHints): C['response'];
  stream(hints: AnswerHints): StreamTranslator<T['event'], C['event']>;
}): Translation<C, T> {
  return { identity: false, exchange: (request) => ({ request: parts.request(request), response: parts.response, stream: parts.stream }) };
}

export function identity<A extends ApiTypes>(): Translation<A, A> {
  const response = (answer: A['response']): A['response'] => answer;
  const stream = () => (item: Parameters<StreamTranslator<A['event'], A['event']>>[0]) => [item];
  return { identity: true, exchange: (request) => ({ request, response, stream }) };
}

/** C → H → T as one translation. */
export function compose<C extends ApiTypes, H extends ApiTypes, T extends ApiTypes>(outer: Translation<C, H>, inner: Translation<H, T>): Translation<C, T> {
  if (inner.identity) return outer as unknown as Translation<C, T>;
  if (outer.identity) return inner as unknown as Translation<C, T>;
  return {
    identity: false,
    exchange(request) {
      const far = outer.exchange(request);
      let near: Exchange<H, T>;
      try {
        near = inner.exchange(far.request);
      } catch (err) {
        throw inClientTerms(err, far.clientParam);
      }
      const dropped = [...(far.droppedTools ?? []), ...(near.droppedTools ?? [])];
      // The way back holds both sides' ways back, never `far` or `near`: they hold the hub's
      // request and the target's, which must die once sent.
      const farResponse = far.response;
      const nearResponse = near.response;
      const farStreamFor = far.stream;
      const nearStreamFor = near.stream;
      return {
        ...(dropped.length > 0 ? { droppedTools: dropped } : {}),
        request: near.request,
        response: (response, hints) => farResponse(nearResponse(response, hints), hints),
        stream: (hints) => {
          const nearStream = nearStreamFor(hints);
          const farStream = farStreamFor(hints);
          return (item) => nearStream(item).flatMap(farStream);
        },
      };
    },
  };
}
