/**
 * Calls to providers: the request itself (through the pooled client in http-client.ts), the
 * headers timeout, cancellation, one resend after a dead pooled connection, and the mapping of
 * network failures to 502/504. Not `fetch`: on our machines a `fetch` proxy served 0.29x the
 * requests/s.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Cancellation } from './cancel.js';
import { clearDeadline, setDeadline } from './deadlines.js';
import { GatewayError } from '../errors.js';
import { call, type Call, type ClientRequest } from './http-client.js';
import type { UpstreamCall } from '../providers/types.js';
import type { KeyScrubber } from './scrub.js';

/** Where a virtual key's requests go, resolved once when keys are loaded. */
export interface UpstreamTarget {
  readonly https: boolean;
  readonly hostname: string;
  readonly port: number;
  /** Path and query, e.g. `/v1/chat/completions` or `/openai/v1/chat/completions?api-version=…`. */
  readonly path: string;
  /** Scheme, host and path, for operators' logs: no query string (some providers take keys there). */
  readonly url: string;
}

/** Joins a base URL and a provider path the way the official SDKs do (no doubled slashes). */
export function resolveTarget(baseUrl: string, chatPath: string): UpstreamTarget {
  const url = new URL(baseUrl);
  url.pathname = url.pathname.replace(/\/+$/, '') + chatPath;
  const isHttps = url.protocol === 'https:';
  return {
    https: isHttps,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port === '' ? (isHttps ? 443 : 80) : Number(url.port),
    path: url.pathname + url.search,
    url: `${url.protocol}//${url.host}${url.pathname}`,
  };
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** The request was sent again on a fresh connection after a pooled one turned out dead. */
  readonly resent?: boolean;
  /** Stops the call: the connection is destroyed, so the provider stops generating. */
  abort(): void;
}

export function upstreamTimeout(ms: number): GatewayError {
  return new GatewayError(504, `The provider sent no response within ${ms} ms (UPSTREAM_TIMEOUT_MS).`, { code: 'upstream_timeout' });
}

export function upstreamIdle(ms: number): GatewayError {
  return new GatewayError(504, `The provider went silent for ${ms} ms mid-answer (UPSTREAM_IDLE_TIMEOUT_MS).`, { code: 'upstream_idle_timeout' });
}

/** Failures that happen before a connection exists: the request cannot have reached the provider. */
const NOTHING_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

function unreachable(target: UpstreamTarget, err: NodeJS.ErrnoException): GatewayError {
  return new GatewayError(502, `The provider could not be reached (${err.code ?? 'network error'}).`, {
    code: 'upstream_unreachable',
    logDetail: `${target.https ? 'https' : 'http'}://${target.hostname}:${target.port}: ${err.message}`,
    // A reset after the request was written may have been processed (and billed): not retried.
    retryable: NOTHING_SENT.has(err.code ?? ''),
  });
}

/** The provider answered, with a status no request can get (000, 101, 199, 600). */
function badStatus(target: UpstreamTarget, err: NodeJS.ErrnoException): GatewayError {
  return new GatewayError(502, 'The provider answered with an impossible HTTP status.', { code: 'upstream_bad_status', logDetail: `${target.url}: ${err.message}` });
}

const KNOWN_CODINGS = /^(?:x-gzip|gzip|deflate|br|zstd|compress|identity)(?:\s*,\s*(?:x-gzip|gzip|deflate|br|zstd|compress|identity)){0,3}$/i;

/** The gateway asks for no content coding (accept-encoding: identity); a provider that compresses anyway cannot be read. */
function compressed(target: UpstreamTarget, encoding: string): GatewayError {
  // Named only when it is a coding the log can show: the value is the provider's, and may hold anything.
  const named = KNOWN_CODINGS.test(encoding.trim());
  return new GatewayError(502, 'The provider sent a compressed answer the gateway cannot read.', {
    code: 'upstream_invalid_response',
    logDetail: `${target.url}: ${named ? `content-encoding ${encoding}` : 'an unknown content-encoding'} although the request said accept-encoding: identity`,
  });
}

/** Whether the answer's body is in a content coding (an empty or `identity` header is none). */
function isEncoded(encoding: string | string[] | undefined): boolean {
  if (encoding === undefined) return false;
  return !/^\s*(identity)?\s*$/i.test(String(encoding));
}

/** Errors of a pooled socket the server had already closed: worth one attempt on a fresh one. */
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** How soon after sending a stale connection shows itself (a round trip, with room to spare). */
export const STALE_RESEND_WINDOW_MS = 1000;

/**
 * Sends the call and resolves once the response headers are in. Rejects with 502 (unreachable),
 * 504 (no headers within `timeoutMs`) or the cancellation's reason.
 */
export function sendUpstream(target: UpstreamTarget, upstreamCall: UpstreamCall, cancel: Cancellation, timeoutMs: number): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    if (cancel.reason !== null) return reject(cancel.reason);
    const method = upstreamCall.method ?? 'POST';
    const request: ClientRequest = {
      https: target.https,
      hostname: target.hostname,
      port: target.port,
      method,
      path: target.path,
      headers: upstreamCall.headers,
      body: method === 'POST' ? (typeof upstreamCall.body === 'string' ? Buffer.from(upstreamCall.body) : upstreamCall.body) : null,
      contentType: 'application/json',
    };
    let current: Call | null = null;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearDeadline(deadline);
      cancel.offCancel(onCancel);
      return true;
    };
    const onCancel = (): void => {
      if (settle()) reject(cancel.reason);
      current?.abort();
    };
    const deadline = setDeadline(timeoutMs, () => {
      if (settle()) reject(upstreamTimeout(timeoutMs));
      current?.abort();
    });

    const attempt = (retried: boolean): void => {
      // The resend takes a new connection: other pooled ones may have gone stale together.
      const sent = call(request, {
        onResponse: (response) => {
          if (!settle()) return void sent.abort();
          if (isEncoded(response.headers['content-encoding'])) {
            sent.abort();
            // An answer cannot be read, but an error status still counts (a retry, another key):
            // it goes on without its unreadable body.
            if (response.status >= 200 && response.status <= 299) return reject(compressed(target, String(response.headers['content-encoding'])));
            return resolve({ status: response.status, headers: response.headers, body: Readable.from([]), resent: retried, abort: () => {} });
          }
          resolve({ status: response.status, headers: response.headers, body: response.body, resent: retried, abort: () => sent.abort() });
        },
        onError: ({ error, reused, answered, elapsedMs }) => {
          if (settled) return; // after a timeout or cancel that aborted it
          // A pooled connection the provider had closed while it sat idle fails at once (one round
          // trip) and before any answer: worth one attempt on a fresh one. A failure later, or
          // after any byte of an answer, may come from a provider that was working on the
          // request (and billing it): never resent.
          if (!retried && reused && !answered && elapsedMs < STALE_RESEND_WINDOW_MS && STALE_SOCKET_CODES.has(error.code ?? '')) return attempt(true);
          if (settle()) reject(error.code === 'HPE_INVALID_STATUS' ? badStatus(target, error) : unreachable(target, error));
        },
      }, retried);
      current = sent;
    };
    cancel.onCancel(onCancel);
    if (!settled) {
      try {
        attempt(false);
      } catch (err) {
        // A header value that cannot travel in a request head (a control character in a key).
        if (settle()) reject(new GatewayError(500, 'The gateway could not build the request to the provider.', { code: 'upstream_request_invalid', logDetail: (err as Error).message }));
      }
    }
  });
}

export interface ReadOptions {
  /** Bytes kept at most. */
  limit: number;
  /** Past the limit: keep the first `limit` bytes (true) or fail with a 502 (false). */
  truncate: boolean;
  cancel: Cancellation;
  /** No bytes for this long → 504. */
  idleMs: number;
  /** Takes the real key out of the bytes as they arrive. */
  scrubber?: KeyScrubber;
}

/** Reads a whole (non-stream) body; never hangs, never grows past `limit`. */
export function readAll(body: Readable, options: ReadOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (error: GatewayError | null): void => {
      if (settled) return;
      settled = true;
      clearDeadline(idle);
      options.cancel.offCancel(onCancel);
      if (error === null) return resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, Math.min(size, options.limit)));
      body.destroy();
      reject(error);
    };
    const onCancel = (): void => finish(options.cancel.reason);
    const idle = setDeadline(options.idleMs, () => finish(upstreamIdle(options.idleMs)));
    options.cancel.onCancel(onCancel);

    const take = (chunk: Buffer): void => {
      if (size + chunk.length > options.limit) {
        if (!options.truncate) return finish(new GatewayError(502, `The provider's answer exceeded ${options.limit} bytes.`, { code: 'upstream_response_too_large' }));
        chunks.push(chunk.subarray(0, options.limit - size));
        size = options.limit;
        finish(null);
        return void body.destroy(); // the rest is not needed
      }
      size += chunk.length;
      chunks.push(chunk);
    };
    const scrubber = options.scrubber;
    body.on('data', (chunk: Buffer) => {
      idle.at = performance.now() + options.idleMs;
      take(scrubber === undefined ? chunk : scrubber.push(chunk));
    });
    body.once('end', () => {
      if (scrubber !== undefined && !settled) take(scrubber.flush());
      finish(null);
    });
    body.once('close', () => {
      if (!settled) finish(new GatewayError(502, 'The provider closed the connection before its answer was complete.', { code: 'upstream_incomplete_response' }));
    });
  });
}
