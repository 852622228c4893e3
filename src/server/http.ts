/**
 * Small HTTP helpers shared by the routes: reading a bounded body, answering JSON and errors.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Cancellation } from '../upstream/cancel.js';
import { GatewayError, openAiErrorBody } from '../errors.js';
import { POOLED_MIN_BYTES, type BodyPool, type PooledBody } from './body-pool.js';
import type { BodyShare } from './body-memory.js';

export function clientClosed(): GatewayError {
  return new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' });
}

function tooLarge(limit: number): GatewayError {
  // The rest of the body is dropped as it comes (dropUnreadBody).
  return new GatewayError(413, `The request body exceeds the gateway's limit of ${limit} bytes (GATEWAY_MAX_BODY_BYTES).`, { code: 'request_too_large' });
}

function overloaded(): GatewayError {
  return new GatewayError(503, 'The gateway holds as much of request bodies as it may at once (GATEWAY_MAX_BODIES_BYTES); try again shortly.', {
    code: 'gateway_overloaded',
    headers: { 'retry-after': '1' },
  });
}

/** How long, and how large a declared body, is read and dropped after its request was answered. */
const LINGER_MS = 10_000;
const LINGER_BYTES = 64 * 1024 * 1024;

/**
 * A request answered before its body was read (a 401, a 413): the rest of the body is read and
 * dropped as it comes (Node does so once the answer ends), and the connection then serves the next
 * request. Closed at once instead, the unread bytes make the system reset the connection, and a
 * client still sending its body (an SDK with a large conversation) gets a failed write (EPIPE) in
 * place of the answer, and retries it. A body declared larger than LINGER_BYTES, or one still
 * coming after LINGER_MS, is not waited for: its connection is closed (nginx's lingering close).
 */
export function dropUnreadBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  const declared = req.headers['content-length'];
  if (declared !== undefined && !(Number(declared) <= LINGER_BYTES)) {
    res.setHeader('connection', 'close');
    return;
  }
  const timer = setTimeout(() => {
    if (!req.complete) req.socket.destroy();
  }, LINGER_MS);
  timer.unref();
  const done = (): void => clearTimeout(timer);
  req.once('end', done);
  req.once('close', done);
}

/** Whether the client sent `Expect: 100-continue` (as Node's server tells it). */
function awaitsContinue(req: IncomingMessage): boolean {
  const expect = req.headers.expect;
  return expect !== undefined && /(?:^|\W)100-continue(?:$|\W)/i.test(expect);
}

/** Errors on a request surface as its cancellation (the response closes too); this only keeps them from throwing. */
function ignore(): void {}

/** A declared body larger than this is copied into place piece by piece as it arrives. */
const PIECE_BY_PIECE = POOLED_MIN_BYTES;
/** What such a body is first given room for: an agent's turn fits, a larger body grows into its length. */
const FIRST_ALLOCATION = 1024 * 1024;

/** A request's body: its bytes, and the pooled memory they are in (released by the reader's last holder), if any. */
export interface ReadBody {
  readonly bytes: Buffer;
  readonly pooled: PooledBody | null;
}

/**
 * Reads the whole request body, refusing more than `limit` bytes before reading them when it can.
 * With a `pool`, a large body is read into pooled memory, which the caller releases when done.
 * With a `share`, the body counts against the process's memory for bodies as it comes
 * (body-memory.ts); past the cap, a body larger than 64 KiB is refused with a 503.
 */
export function readBody(req: IncomingMessage, limit: number, cancel: Cancellation, pool: BodyPool | null = null, share: BodyShare | null = null): Promise<ReadBody> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  // A large declared length is the body's size (Node's parser holds the client to it): each piece
  // is copied into place as it arrives, not kept until the end and joined (twice the memory of
  // every body being read: 200 agents' conversations arriving at once). A small body comes in one
  // piece, taken as it is.
  const length = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : -1;
  const inPlace = length > PIECE_BY_PIECE;
  // A client waiting for its 100 has sent nothing yet: a body that would not fit now is refused
  // before it comes (its 100 is sent only once the handler starts reading the body: server.ts).
  if (inPlace && share !== null && awaitsContinue(req) && !share.fits(length)) return Promise.reject(overloaded());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // Allocated when the first piece comes, at most FIRST_ALLOCATION then doubled as pieces come
    // (pooled memory: the declared length at once): a client that declares a large body and
    // sends nothing holds nothing.
    let body: Buffer | null = null;
    let pooled: PooledBody | null = null;
    let size = 0;
    const letGo = (): void => {
      pooled?.release();
      pooled = null;
    };
    const onData = (chunk: Buffer): void => {
      // Counted as it comes, not as declared: a client that declares bodies and sends nothing
      // must not fill the count for everyone. A small body is counted and never refused.
      const over = size + chunk.length > limit;
      if (over || (share !== null && !share.take(chunk.length, size + chunk.length > PIECE_BY_PIECE))) {
        cleanup();
        letGo();
        req.resume(); // discard the rest while the error is answered
        reject(over ? tooLarge(limit) : overloaded());
        return;
      }
      if (inPlace) {
        if (body === null && pool !== null) {
          pooled = pool.take(length);
          if (pooled !== null) body = pooled.memory;
        }
        if (body === null || size + chunk.length > body.length) {
          const bigger = Buffer.allocUnsafe(Math.max(size + chunk.length, Math.min(length, body === null ? FIRST_ALLOCATION : body.length * 2)));
          if (body !== null) body.copy(bigger, 0, 0, size);
          body = bigger;
          letGo();
        }
        chunk.copy(body, size);
      } else {
        chunks.push(chunk);
      }
      size += chunk.length;
    };
    const onEnd = (): void => {
      cleanup();
      if (body !== null) resolve({ bytes: size === body.length ? body : body.subarray(0, size), pooled });
      else resolve({ bytes: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), pooled: null });
    };
    const onCancel = (): void => {
      cleanup();
      letGo();
      reject(cancel.reason);
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      cancel.offCancel(onCancel);
    };
    req.on('error', ignore);
    req.on('data', onData);
    req.on('end', onEnd);
    cancel.onCancel(onCancel);
  });
}

export function sendJson(res: ServerResponse, status: number, body: string | Buffer, headers?: Record<string, string>): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = status;
  if (headers !== undefined) for (const name in headers) res.setHeader(name, headers[name] as string);
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', typeof body === 'string' ? Buffer.byteLength(body) : body.length);
  res.end(body);
}

/** Answers an error with `body` (its API's shape; OpenAI's by default) and returns the body sent, for the log. */
export function sendError(res: ServerResponse, error: GatewayError, body: unknown = openAiErrorBody(error)): unknown {
  sendJson(res, error.status, JSON.stringify(body), error.headers);
  return body;
}
