/**
 * The only place that opens connections to providers: keep-alive agents, the request itself,
 * and the mapping of network failures to 502. `http.request` with a keep-alive agent, not
 * `fetch`: on our machines a `fetch` proxy served 0.29x the requests/s.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
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
  /** Stops the call: the connection is destroyed, so the provider stops generating. */
  abort(): void;
}

/** Network errors worth a second attempt on a fresh connection (a pooled socket the server had closed). */
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);

export function sendUpstream(target: UpstreamTarget, call: UpstreamCall, signal: AbortSignal): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const body = typeof call.body === 'string' ? Buffer.from(call.body) : call.body;
    const headers: http.OutgoingHttpHeaders = {
      ...call.headers,
      'content-type': 'application/json',
      'content-length': body.length,
    };
    const attempt = (retried: boolean): void => {
      const request = (target.https ? https : http).request({
        agent: target.https ? httpsAgent : httpAgent,
        method: 'POST',
        hostname: target.hostname,
        port: target.port,
        path: target.path,
        headers,
      });
      const onAbort = (): void => {
        request.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      request.once('response', (response) => {
        signal.removeEventListener('abort', onAbort);
        response.on('error', () => {}); // consumers watch 'close'/'aborted'; an unhandled 'error' must not crash us
        resolve({
          status: response.statusCode ?? 502,
          headers: response.headers,
          body: response,
          abort: () => response.destroy(),
        });
      });
      request.once('error', (err: NodeJS.ErrnoException) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) {
          reject(new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' }));
          return;
        }
        if (!retried && request.reusedSocket && STALE_SOCKET_CODES.has(err.code ?? '')) {
          attempt(true);
          return;
        }
        reject(unreachable(target, err));
      });
      request.end(body);
    };
    if (signal.aborted) {
      reject(new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' }));
      return;
    }
    attempt(false);
  });
}

function unreachable(target: UpstreamTarget, err: NodeJS.ErrnoException): GatewayError {
  const reason = err.code ?? err.message;
  return new GatewayError(502, `The provider could not be reached (${reason}).`, {
    code: 'upstream_unreachable',
    logDetail: `${target.https ? 'https' : 'http'}://${target.hostname}:${target.port}: ${err.message}`,
  });
}

/** Reads a whole (non-stream) body, refusing more than `limit` bytes. */
export function readAll(body: Readable, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (error: GatewayError): void => {
      if (settled) return;
      settled = true;
      body.destroy();
      reject(error);
    };
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        fail(new GatewayError(502, `The provider's answer exceeded ${limit} bytes.`, { code: 'upstream_response_too_large' }));
        return;
      }
      chunks.push(chunk);
    });
    body.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
    body.once('close', () => {
      fail(new GatewayError(502, 'The provider closed the connection before its answer was complete.', { code: 'upstream_incomplete_response' }));
    });
  });
}
