/**
 * Reading a provider's whole (non-stream) body: bounded in size and in silence, cancellable, the
 * real key taken out as the bytes arrive.
 */
import type { Readable } from 'node:stream';
import type { Cancellation } from './cancel.js';
import { clearDeadline, setDeadline } from './deadlines.js';
import { GatewayError } from '../errors.js';
import { malformedCut, whyCut } from './http-client.js';
import { malformedAnswer } from './errors.js';
import type { ByteScrubber } from './scrub.js';

/** Upstream error bodies are only read for their message: the first MiB is plenty. */
export const ERROR_BODY_LIMIT = 1024 * 1024;

export function upstreamIdle(ms: number): GatewayError {
  return new GatewayError(504, `The provider went silent for ${ms} ms mid-answer (UPSTREAM_IDLE_TIMEOUT_MS).`, { code: 'upstream_idle_timeout' });
}

/** A body closed before its end because its bytes broke HTTP/1.1 (the gateway closed it): that error; null for the provider's close. */
export function malformedBody(body: Readable): GatewayError | null {
  const malformed = malformedCut(body);
  return malformed === null ? null : malformedAnswer(malformed);
}

export interface ReadOptions {
  /** Bytes kept at most. */
  limit: number;
  /** Past the limit: keep the first `limit` bytes (true) or fail with a 502 (false). */
  truncate: boolean;
  cancel: Cancellation;
  /** No bytes for this long → 504. */
  idleMs: number;
  /** Takes the real keys out of the bytes as they arrive. */
  scrubber?: ByteScrubber;
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
      if (!settled) finish(malformedBody(body) ?? new GatewayError(502, 'The provider closed the connection before its answer was complete.', { code: 'upstream_incomplete_response', logDetail: whyCut(body) ?? undefined }));
    });
  });
}
