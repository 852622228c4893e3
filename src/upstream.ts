/**
 * The only place that opens connections to providers: keep-alive agents, the request itself,
 * the headers timeout, cancellation, and the mapping of network failures to 502/504.
 * `http.request` with a keep-alive agent, not `fetch`: on our machines a `fetch` proxy served
 * 0.29x the requests/s.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { Cancellation } from './cancel.js';
import { clearDeadline, setDeadline } from './deadlines.js';
import { GatewayError } from './errors.js';
import type { UpstreamCall } from './providers/types.js';

const agentOptions = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo', noDelay: true } as const;
const httpAgent = new http.Agent(agentOptions);
const httpsAgent = new https.Agent(agentOptions);

/** Where a virtual key's requests go, resolved once when keys are loaded. */
export interface UpstreamTarget {
  readonly https: boolean;
  readonly hostname: string;
  readonly port: number;
  /** Path and query, e.g. `/v1/chat/completions` or `/openai/v1/chat/completions?api-version=…`. */
  readonly path: string;
  /** The full URL, for operators' logs. Contains no secret: keys travel in headers. */
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
    url: url.toString(),
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

/** Errors of a pooled socket the server had already closed: worth one attempt on a fresh one. */
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);

/**
 * Sends the call and resolves once the response headers are in. Rejects with 502 (unreachable),
 * 504 (no headers within `timeoutMs`) or the cancellation's reason.
 */
export function sendUpstream(target: UpstreamTarget, call: UpstreamCall, cancel: Cancellation, timeoutMs: number): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    if (cancel.reason !== null) return reject(cancel.reason);
    const body = typeof call.body === 'string' ? Buffer.from(call.body) : call.body;
    const method = call.method ?? 'POST';
    // Added to the provider's object rather than spread into a new one: a spread object costs
    // ~9 µs per request inside Node's header handling (measured in the benchmark).
    const headers: http.OutgoingHttpHeaders = call.headers;
    if (method === 'POST') {
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
    }
    let request: http.ClientRequest;
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
      request.destroy();
    };
    const deadline = setDeadline(timeoutMs, () => {
      if (settle()) reject(upstreamTimeout(timeoutMs));
      request.destroy();
    });

    const attempt = (retried: boolean): void => {
      request = (target.https ? https : http).request({
        agent: target.https ? httpsAgent : httpAgent,
        method,
        hostname: target.hostname,
        port: target.port,
        path: target.path,
        headers,
      });
      request.once('response', (response) => {
        // Errors after this point surface on the response ('close' without 'end'); consumers watch that.
        response.on('error', () => {});
        if (!settle()) return void response.destroy();
        resolve({ status: response.statusCode ?? 502, headers: response.headers, body: response, resent: retried, abort: () => response.destroy() });
      });
      request.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return; // after the response, or after a timeout/cancel that destroyed it
        // Only before any response: never send the same (billable) request twice.
        if (!retried && request.reusedSocket && STALE_SOCKET_CODES.has(err.code ?? '')) return attempt(true);
        if (settle()) reject(unreachable(target, err));
      });
      if (method === 'POST') request.end(body);
      else request.end();
    };
    cancel.onCancel(onCancel);
    if (!settled) attempt(false);
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

    body.on('data', (chunk: Buffer) => {
      idle.at = performance.now() + options.idleMs;
      if (size + chunk.length > options.limit) {
        if (!options.truncate) return finish(new GatewayError(502, `The provider's answer exceeded ${options.limit} bytes.`, { code: 'upstream_response_too_large' }));
        chunks.push(chunk.subarray(0, options.limit - size));
        size = options.limit;
        finish(null);
        return void body.destroy(); // the rest is not needed
      }
      size += chunk.length;
      chunks.push(chunk);
    });
    body.once('end', () => finish(null));
    body.once('close', () => {
      if (!settled) finish(new GatewayError(502, 'The provider closed the connection before its answer was complete.', { code: 'upstream_incomplete_response' }));
    });
  });
}
