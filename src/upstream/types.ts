/**
 * What the upstream layer works with: where a request goes, what it sends, what comes back, and
 * the one policy (timeouts, retries) every call follows. It knows nothing of providers or APIs.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Holder } from './http-client.js';

/** Timeouts and retries of every call to a provider: one object, from the configuration. */
export interface UpstreamPolicy {
  /** No response headers within this → 504 (UPSTREAM_TIMEOUT_MS). */
  readonly timeoutMs: number;
  /** No bytes for this long once it answered → the answer fails (UPSTREAM_IDLE_TIMEOUT_MS). */
  readonly idleTimeoutMs: number;
  /** Attempts after the first (UPSTREAM_RETRIES). */
  readonly retries: number;
  /** The longest wait before a retry (UPSTREAM_RETRY_MAX_DELAY_MS). */
  readonly retryMaxDelayMs: number;
  /** No new attempt (a retry, or a key's next target) starts this long after the request arrived, and none waits for headers past it (UPSTREAM_TOTAL_TIMEOUT_MS). */
  readonly totalTimeoutMs: number;
}

/** A request's body: bytes, text, or pieces of bytes sent in order without being joined (a client's body with a field spliced in). */
export type RequestBody = Buffer | string | readonly Buffer[];

/** What goes on the wire. The sender adds host, content-type and content-length. */
export interface UpstreamRequest {
  /** POST by default; GET for a model list or a stored response, DELETE to delete one. */
  readonly method?: 'GET' | 'POST' | 'DELETE';
  readonly body: RequestBody;
  /** Holds the memory the body's bytes are in while they are written (a pooled client body), if any. */
  readonly holder?: Holder | null;
  /** Provider auth and protocol headers. Nothing from the client's headers ever goes here. */
  readonly headers: Readonly<Record<string, string>>;
  /** Its connections are shared only with requests of the same partition (the real key and the virtual key: http-client.ts). */
  readonly partition?: string;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** The request was sent again on a fresh connection after a pooled one turned out dead. */
  readonly resent?: boolean;
  /** No retry in the next minute can pass it (a used-up quota, and no other real key free by then): the client is told not to retry. */
  readonly noRetry?: boolean;
  /** Stops the call: the connection is destroyed, so the provider stops generating. */
  abort(): void;
}

/** A provider that answers in-process, like a server would (the mock). */
export interface LocalServer {
  handle(method: 'GET' | 'POST' | 'DELETE', path: string, body: Buffer): UpstreamResponse;
}

/** Where a request goes, resolved once when keys are loaded. */
export type Endpoint =
  | {
      readonly kind: 'http';
      readonly https: boolean;
      readonly hostname: string;
      readonly port: number;
      /** Path and query, e.g. `/v1/chat/completions` or `/openai/v1/chat/completions?api-version=…`. */
      readonly path: string;
      /** Scheme, host and path, for operators' logs: no query string (some providers take keys there). */
      readonly url: string;
    }
  | { readonly kind: 'local'; readonly server: LocalServer; readonly path: string; readonly url: string };

/** Joins a base URL and a provider path the way the official SDKs do (no doubled slashes). */
export function httpEndpoint(baseUrl: string, path: string): Endpoint {
  const url = new URL(baseUrl);
  url.pathname = url.pathname.replace(/\/+$/, '') + path;
  const isHttps = url.protocol === 'https:';
  return {
    kind: 'http',
    https: isHttps,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port === '' ? (isHttps ? 443 : 80) : Number(url.port),
    path: url.pathname + url.search,
    url: `${url.protocol}//${url.host}${url.pathname}`,
  };
}

/** The endpoint with a client's query string added (`beta=true`), after any of its own (`api-version=…`). */
export function withQuery(endpoint: Endpoint, query: string): Endpoint {
  if (query === '') return endpoint;
  return { ...endpoint, path: `${endpoint.path}${endpoint.path.includes('?') ? '&' : '?'}${query}` };
}

/** The endpoint one path segment further (`/v1/messages` → `/v1/messages/count_tokens`), its own query kept. */
export function withSubpath(endpoint: Endpoint, suffix: string): Endpoint {
  const query = endpoint.path.indexOf('?');
  const path = query === -1 ? endpoint.path + suffix : endpoint.path.slice(0, query) + suffix + endpoint.path.slice(query);
  return { ...endpoint, path, url: endpoint.url + suffix };
}

export function localEndpoint(server: LocalServer, baseUrl: string, path: string): Endpoint {
  return { kind: 'local', server, path, url: `${baseUrl}${path}` };
}
