/**
 * The contract every provider implements. A provider is pure translation: it never opens a
 * connection, never writes to the client and never logs; `upstream.ts` and the handler do that.
 */
import type { GatewayError } from '../errors.js';
import type { ChatCompletion, ChatRequest, Usage } from '../formats/chat/types.js';
import type { SseEvent } from '../upstream/sse.js';
import type { UpstreamResponse } from '../upstream/send.js';

/** What goes on the wire to the provider. `upstream.ts` adds content-type and content-length. */
export interface UpstreamCall {
  /** POST by default; GET for a model list. */
  method?: 'GET' | 'POST';
  body: Buffer | string;
  /** Provider auth and protocol headers. Nothing from the client's headers ever goes here. */
  headers: Record<string, string>;
}

export interface PrepareInput {
  /** The client's body, parsed and validated (string `model`, non-empty `messages`). */
  request: ChatRequest;
  /** The client's original bytes, forwarded as they are when nothing must change. */
  raw: Buffer;
  /** The real provider key for this virtual key. */
  apiKey: string;
}

export interface TranslatedResponse {
  /** The bytes the client receives (the upstream's own bytes when no translation is needed). */
  body: Buffer | string;
  /** Token usage, for metrics (and the log). */
  usage: Usage | null;
  /**
   * The same answer as an object, for the log. A function: a pass-through provider parses the
   * upstream's bytes only when a log entry needs them. Returns null if they do not parse.
   */
  completion(): ChatCompletion | null;
}

/** One item of the OpenAI stream the client receives, produced from one upstream event. */
export type StreamOutput =
  /**
   * `data` is the JSON text written to the client (null: the log sees the chunk, the client does
   * not); `chunk` the parsed chunk for the log and usage (null when nothing needs it parsed);
   * `finish` whether it carries a finish_reason.
   */
  | { kind: 'chunk'; chunk: unknown; data: string | null; finish?: boolean }
  | { kind: 'done' }
  /** The upstream failed mid-stream: the client gets an OpenAI-style error event, then the end. */
  | { kind: 'error'; error: GatewayError };

export interface StreamTranslator {
  event(event: SseEvent): StreamOutput[];
  /**
   * Events pass through unchanged (OpenAI-compatible upstreams): the relay may forward an
   * upstream read as its own bytes when it holds only plain content events.
   */
  readonly passThrough?: boolean;
}

export interface StreamOptions {
  /** The client asked for `stream_options.include_usage`; the gateway always asks the upstream. */
  clientWantsUsage: boolean;
  /** A log entry will show the assembled answer, so every chunk must be parsed. */
  assemble: boolean;
}

/** OpenAI's model list: what GET /v1/models answers. */
export interface ModelList {
  object: 'list';
  data: Array<{ id: string; object: 'model'; created: number; owned_by: string }>;
}

export interface Provider {
  readonly name: string;
  /** The official SDK's default base URL; a key's `base_url` replaces it. */
  readonly defaultBaseUrl: string;
  /** Appended to the base URL, as the provider's SDK does. */
  readonly chatPath: string;
  /** Where the provider lists its models, appended to the base URL. */
  readonly modelsPath: string;
  /** The headers that authenticate a request with a real key. */
  authHeaders(apiKey: string): Record<string, string>;
  /** The provider's model list (2xx JSON body) → OpenAI's. Throws a 502 GatewayError if it is not one. */
  translateModels(body: Buffer): ModelList;
  /** False only for providers that need no account (the mock). */
  readonly requiresApiKey: boolean;
  /** Client request → upstream request. Throws a 400 GatewayError for what cannot be translated. */
  prepare(input: PrepareInput): UpstreamCall;
  /** Upstream 2xx JSON body → OpenAI `chat.completion`. Throws a 502 GatewayError if it is plainly not one. */
  translateResponse(body: Buffer): TranslatedResponse;
  /** A fresh translator for one stream: upstream events → OpenAI chunks. */
  streamTranslator(options: StreamOptions): StreamTranslator;
  /** Providers that answer in-process (the mock) implement this instead of being called over HTTP. */
  answerLocally?(request: ChatRequest): UpstreamResponse;
  /** …and this for their model list. */
  localModels?(): ModelList;
}
