/**
 * What the server knows of every request before a handler sees it: its id, its cancellation,
 * when it arrived; and the one way the gateway's own time is reported to the client.
 */
import type { ServerResponse } from 'node:http';
import type { Cancellation } from '../upstream/cancel.js';
import type { BodyShare } from './body-memory.js';

export interface RequestContext {
  /** The gateway's own request id, sent to the client as `x-request-id`. */
  readonly id: string;
  /** Cancelled when the client goes away before its response is complete, or at shutdown. */
  readonly cancel: Cancellation;
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
  readonly method: string;
  readonly path: string;
  /** The query string, without its `?` ('' when none). */
  readonly query: string;
  /** What its body counts against the memory for bodies (given back when its handler is done). */
  readonly bodies: BodyShare;
}

/** How long the gateway itself took on a request, in every answer. */
export const OVERHEAD_HEADER = 'x-gateway-overhead-ms';

/** Every response says how long the gateway itself took (excluding any wait for a provider). */
export function stampOverhead(res: ServerResponse, overheadMs: number): void {
  res.setHeader(OVERHEAD_HEADER, overheadMs.toFixed(3));
}
