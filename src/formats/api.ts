/**
 * What the gateway needs of a wire API, on each side of it. A client API (the one a client speaks
 * to the gateway) is read and answered; a target API (the one a provider speaks) is written and
 * read back. An API module (`formats/<api>/`) implements the sides it is used on. Everything here
 * is pure: no I/O, no clock, no configuration.
 */
import type { GatewayError } from '../errors.js';
import type { ModelList } from './chat/models.js';
import type { ClientBytes } from './json-splice.js';
import type { SseEvent } from './sse.js';
import type { StreamItem } from './stream.js';
import type { Usage } from './usage.js';

/** The APIs the gateway speaks. Chat Completions is the hub every translation goes through. */
export type ApiName = 'chat' | 'messages' | 'responses';

/** The types of one API's requests, answers and stream events. */
export interface ApiTypes {
  request: unknown;
  response: unknown;
  event: unknown;
}

/** A client's request, read and checked. */
export interface ParsedRequest<Request> {
  readonly request: Request;
  readonly model: string;
  readonly stream: boolean;
  /** Output tokens the client allows at most (0: it sets no limit): reserved against limits while it runs. */
  readonly maxOutputTokens: number;
  /** The client wrote an output limit, whatever its value (one it wrote is its own to have refused, never replaced by a default). */
  readonly statesOutputLimit: boolean;
  /** Answers asked for (chat's `n`; 1 elsewhere): each may generate up to the output limit. */
  readonly choices: number;
}

export interface RequestChanges {
  readonly model: string;
  /** Set: the output limit to send instead of the client's. */
  readonly maxOutputTokens?: number;
}

/** How a stream's items reach one client. */
export interface StreamOutput<Event> {
  /** The SSE text for one item ('' when the client is not to see it, e.g. usage it did not ask for). */
  frame(item: StreamItem<Event>): string;
  /** Events that went to the client as the provider's bytes (pass-through), for an output that numbers its own. */
  passed?(events: Buffer | string): void;
}

/** Stream events back into one answer, for the log. */
export interface Assembler<Event, Response> {
  /**
   * Events whose text this does not match are ones `add` ignores (so they need not be parsed);
   * absent, every event is read. It must match every text with a backslash (an escape can spell any name).
   */
  readonly reads?: RegExp;
  add(event: Event): void;
  result(): Response;
}

export interface ClientApi<T extends ApiTypes> {
  readonly name: ApiName;
  /** The `type` of its content parts that are images, audio or files (formats/media.ts). */
  readonly mediaTypes: ReadonlySet<string>;
  /** The client's body → its request; a 400 GatewayError naming what is wrong. */
  parseRequest(raw: Buffer): ParsedRequest<T['request']>;
  /** A copy of the request for another model, or with a lower output limit (a key's model map and cap). */
  rewrite(request: T['request'], changes: RequestChanges): T['request'];
  /** An error in this API's own error shape. */
  errorBody(error: GatewayError): unknown;
  /** What this client sees of a stream, given what it asked for; `answerId` names what the gateway makes of it (translation.ts: AnswerHints). */
  streamOutput(request: T['request'], answerId: string): StreamOutput<T['event']>;
  assembler(): Assembler<T['event'], T['response']>;
  /**
   * Passed through where the key's model map sent the request to another model: the answer, or an
   * event of it that names the model (null: none does), named after the model the client asked
   * for. Only an API whose clients need it has this (Claude Code keeps a turn's signed thinking
   * only when the answer names the model it asked for).
   */
  readonly namedAfter?: {
    response(response: T['response'], model: string): T['response'];
    event(event: T['event'], model: string): T['event'] | null;
  };
}

/** Usage and completeness of one stream, from the provider's own events. */
export interface StreamWatch<Event> {
  see(event: Event): void;
  usage(): Usage | null;
  /** The provider's own usage object, as it reported it (null: none). */
  rawUsage(): unknown;
  /** The provider's id for the answer, where the gateway needs it (a stored response's). */
  answerId?(): string | null;
  /** The ids of the answer's output items, which a later request may name (a stored response's). */
  answerItems?(): readonly string[];
  /** The answer is complete (a stream that ends now without its end marker lost nothing). */
  readonly complete: boolean;
  /** What the provider said went wrong, should its stream end short after saying it (a Responses `error` event). */
  failure?(): GatewayError | null;
}

export interface TargetApi<T extends ApiTypes> {
  readonly name: ApiName;
  /** Appended to a provider's base URL, as the API's official SDKs do (`/chat/completions`, `/v1/messages`). */
  readonly path: string;
  /** The headers that carry a real key (and the API version, where one is required). */
  authHeaders(apiKey: string): Record<string, string>;
  /** Where a provider speaking this API lists its models, and that list (a 2xx body) in OpenAI's format. */
  readonly modelsPath: string;
  /** Asked of that list, for all of it at once (Anthropic pages it, 20 models unless told). */
  readonly modelsQuery?: string;
  parseModelList(body: Buffer): ModelList;
  /**
   * The body to send. `raw`: the client's own bytes when it spoke this very API, sent as they are
   * but for the top-level members that must change (a model map, an output cap, asking for stream
   * usage), spliced in.
   */
  body(request: T['request'], raw: ClientBytes | null): Buffer | string | readonly Buffer[];
  /** A 2xx JSON answer, checked whole; a 502 GatewayError when it is not one. */
  parseResponse(body: Buffer): T['response'];
  usage(response: T['response']): Usage | null;
  /** The ids of the answer's output items, which a later request may name (a stored response's). */
  answerItems?(response: T['response']): readonly string[];
  /** One SSE event → stream items; what cannot be read is an error item. */
  decodeEvent(event: SseEvent): Array<StreamItem<T['event']>>;
  /**
   * Events whose text matches are decoded even when the stream passes through unchanged (its
   * end, errors, usage, a finish); the others may go to the client as their bytes.
   */
  readonly notable: RegExp;
  /** Each event's `event:` line only repeats its data's `type` (Messages): one may pass as its bytes. */
  readonly namedEvents: boolean;
  streamWatch(): StreamWatch<T['event']>;
}
