/**
 * One request to a provider: sent through the pooled client (or to an in-process server), with
 * the headers timeout, cancellation, one resend after a dead pooled connection, and failures
 * mapped to statuses (502/504; 503 for the gateway's own shortage of resources). Not `fetch`: it costs several times a request's other work
 * (docs/performance.md).
 */
import { Readable } from 'node:stream';
import type { Cancellation } from './cancel.js';
import { clearDeadline, setDeadline } from './deadlines.js';
import { GatewayError } from '../errors.js';
import { malformedAnswer } from './errors.js';
import type { Call, ClientRequest, HttpClient } from './http-client.js';
import type { Endpoint, UpstreamRequest, UpstreamResponse } from './types.js';
import { utf8Bytes } from '../utf8.js';
import { warn } from '../observe/warn.js';

/** `setting`: the limit that ran out (a headers timeout, or the time left of the request's overall bound). */
function upstreamTimeout(ms: number, setting: string): GatewayError {
  return new GatewayError(504, `The provider sent no response within ${ms} ms (${setting}).`, { code: 'upstream_timeout' });
}

/** Failures that happen before a connection exists: the request cannot have reached the provider. */
const NOTHING_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * The gateway's own shortages, not the provider's: no file descriptor (EMFILE, ENFILE), no kernel
 * memory (ENOBUFS, ENOMEM), no local port for an IPv4 connection (EADDRNOTAVAIL; to an IPv6
 * address it is a host without IPv6, the provider's side). Counted against the provider, they
 * would open a healthy target's circuit, on every instance through Redis.
 */
const LOCAL_SHORTAGE = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);

function isLocalShortage(err: NodeJS.ErrnoException & { address?: string }): boolean {
  if (err.code === 'EADDRNOTAVAIL') return typeof err.address === 'string' && !err.address.includes(':');
  return LOCAL_SHORTAGE.has(err.code ?? '');
}

/** What each shortage means for an operator. */
const SHORTAGES: Readonly<Record<string, string>> = {
  EMFILE: "the process's file-descriptor limit, ulimit -n, is reached",
  ENFILE: "the system's file-descriptor limit is reached",
  EADDRNOTAVAIL: 'no local port is free for a new connection',
  ENOBUFS: 'the kernel is out of buffer space',
  ENOMEM: 'the kernel is out of memory',
};

function outOfResources(url: string, err: NodeJS.ErrnoException): GatewayError {
  const what = err.code === 'EMFILE' || err.code === 'ENFILE' ? 'file descriptors' : err.code === 'EADDRNOTAVAIL' ? 'local ports' : 'memory';
  return new GatewayError(503, `The gateway could not open a connection to the provider: it is out of ${what} (${err.code}). Try again shortly.`, {
    code: 'gateway_out_of_resources',
    logDetail: `${url}: ${err.message}`,
    headers: { 'retry-after': '1' },
  });
}

function unreachable(url: string, err: NodeJS.ErrnoException): GatewayError {
  return new GatewayError(502, `The provider could not be reached (${err.code ?? 'network error'}).`, {
    code: 'upstream_unreachable',
    logDetail: `${url}: ${err.message}`,
    // A reset after the request was written may have been processed (and billed): not retried.
    retryable: NOTHING_SENT.has(err.code ?? ''),
  });
}

/** The provider answered, with a status no request can get (000, 101, 199, 600). */
function badStatus(url: string, err: NodeJS.ErrnoException): GatewayError {
  return new GatewayError(502, 'The provider answered with an impossible HTTP status.', { code: 'upstream_bad_status', logDetail: `${url}: ${err.message}` });
}

const KNOWN_CODINGS = /^(?:x-gzip|gzip|deflate|br|zstd|compress|identity)(?:\s*,\s*(?:x-gzip|gzip|deflate|br|zstd|compress|identity)){0,3}$/i;

/** The gateway asks for no content coding (accept-encoding: identity); a provider that compresses anyway cannot be read. */
function compressed(url: string, encoding: string): GatewayError {
  // Named only when it is a coding the log can show: the value is the provider's, and may hold anything.
  const named = KNOWN_CODINGS.test(encoding.trim());
  return new GatewayError(502, 'The provider sent a compressed answer the gateway cannot read.', {
    code: 'upstream_invalid_response',
    logDetail: `${url}: ${named ? `content-encoding ${encoding}` : 'an unknown content-encoding'} although the request said accept-encoding: identity`,
  });
}

/** Whether the answer's body is in a content coding (an empty or `identity` header is none). */
function isEncoded(encoding: string | string[] | undefined): boolean {
  if (encoding === undefined) return false;
  // Trimmed first: on the value itself, the pattern's leading and trailing spaces made a provider's
  // 21,000 folded blank lines cost 0.3 s (linear now).
  const coding = String(encoding).trim().toLowerCase();
  return coding !== '' && coding !== 'identity';
}

/** Errors of a pooled socket the server had already closed: worth one attempt on a fresh one. */
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** How soon after sending a stale connection shows itself (a round trip, with room to spare). */
export const STALE_RESEND_WINDOW_MS = 1000;

/** What became of a request that got no answer: whether it was written whole (the provider may have it). */
export interface SendProgress {
  sent: boolean;
}

/**
 * Sends the request and resolves once the response headers are in. Rejects with 502
 * (unreachable, or an answer that is not HTTP/1.1 the client can read), 504 (no headers within
 * `timeoutMs`, named `setting` in its message), 503 (no file descriptor, memory or port for a
 * connection), 500 (a request head that cannot be built) or the cancellation's reason; `progress` then says whether the request had been written whole.
 */
export function sendUpstream(client: HttpClient, endpoint: Endpoint, upstreamRequest: UpstreamRequest, cancel: Cancellation, timeoutMs: number, setting = 'UPSTREAM_TIMEOUT_MS', progress: SendProgress | null = null): Promise<UpstreamResponse> {
  if (cancel.reason !== null) return Promise.reject(cancel.reason);
  const method = upstreamRequest.method ?? 'POST';
  const body = method === 'POST' ? (typeof upstreamRequest.body === 'string' ? utf8Bytes(upstreamRequest.body) : upstreamRequest.body) : null;
  if (endpoint.kind === 'local') return Promise.resolve(endpoint.server.handle(method, endpoint.path, body === null ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.concat(body)));
  const request: ClientRequest = {
    https: endpoint.https,
    hostname: endpoint.hostname,
    port: endpoint.port,
    method,
    path: endpoint.path,
    headers: upstreamRequest.headers,
    body,
    contentType: 'application/json',
    holder: upstreamRequest.holder,
    ...(upstreamRequest.partition === undefined ? {} : { partition: upstreamRequest.partition }),
  };
  return new Promise((resolve, reject) => {
    let current: Call | null = null;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearDeadline(deadline);
      cancel.offCancel(onCancel);
      if (progress !== null) progress.sent = current?.sent ?? false;
      return true;
    };
    const onCancel = (): void => {
      if (settle()) reject(cancel.reason);
      current?.abort();
    };
    const deadline = setDeadline(timeoutMs, () => {
      if (settle()) reject(upstreamTimeout(timeoutMs, setting));
      current?.abort();
    });

    const attempt = (retried: boolean): void => {
      const sentAt = performance.now();
      // The resend takes a new connection: other pooled ones may have gone stale together.
      const sent = client.call(request, {
        onResponse: (response) => {
          // A 408 closing a pooled connection at once (within the window a reset is resent in) is
          // the server closing it while idle (a proxy says so as it closes), raced by this request:
          // never read, so it goes once on a new connection. A later 408, or one that keeps the
          // connection, answered this request: it is the answer, as on a new connection.
          if (!retried && response.status === 408 && sent.reused && !settled && !response.keepAlive && performance.now() - sentAt < STALE_RESEND_WINDOW_MS) {
            sent.abort();
            return attempt(true);
          }
          if (!settle()) return void sent.abort();
          if (isEncoded(response.headers['content-encoding'])) {
            sent.abort();
            // An answer cannot be read, but an error status still counts (a retry, another key):
            // it goes on without its unreadable body.
            if (response.status >= 200 && response.status <= 299) return reject(compressed(endpoint.url, String(response.headers['content-encoding'])));
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
          if (settle()) {
            const code = error.code ?? '';
            if (isLocalShortage(error)) {
              if (client.shortages.due()) warn(`cannot open connections to providers: ${code} (${SHORTAGES[code] ?? 'a resource of this machine ran out'}); requests are answered 503 gateway_out_of_resources until it passes`);
              return reject(outOfResources(endpoint.url, error));
            }
            reject(code === 'HPE_INVALID_STATUS' ? badStatus(endpoint.url, error) : code.startsWith('HPE_') ? malformedAnswer(error, endpoint.url) : unreachable(endpoint.url, error));
          }
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
