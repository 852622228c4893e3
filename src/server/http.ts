/**
 * Small HTTP helpers shared by the routes: reading a bounded body, answering JSON and errors.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Cancellation } from '../upstream/cancel.js';
import { GatewayError } from '../errors.js';

export function clientClosed(): GatewayError {
  return new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' });
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError(413, `The request body exceeds the gateway's limit of ${limit} bytes (GATEWAY_MAX_BODY_BYTES).`, {
    code: 'request_too_large',
    // The rest of an oversized body is not read: the connection cannot be reused.
    headers: { connection: 'close' },
  });
}

/** Errors on a request surface as its cancellation (the response closes too); this only keeps them from throwing. */
function ignore(): void {}

/** Reads the whole request body, refusing more than `limit` bytes before reading them when it can. */
export function readBody(req: IncomingMessage, limit: number, cancel: Cancellation): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume(); // discard the rest while the 413 is answered
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    const onCancel = (): void => {
      cleanup();
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
export function sendError(res: ServerResponse, error: GatewayError, body: unknown = error.toBody()): unknown {
  sendJson(res, error.status, JSON.stringify(body), error.headers);
  return body;
}
