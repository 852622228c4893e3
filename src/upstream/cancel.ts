/**
 * Why a request stops early, and who must react. A plain callback list rather than
 * AbortController: its EventTarget machinery was a measurable part of each request (docs/performance.md).
 */
import type { GatewayError } from '../errors.js';

export class Cancellation {
  /** Set once: 499 when the client went away, 503 when the gateway shuts down. */
  reason: GatewayError | null = null;
  /** Its place among the requests in flight (SlotList). */
  slot = -1;
  private callbacks: Array<() => void> = [];

  get cancelled(): boolean {
    return this.reason !== null;
  }

  cancel(reason: GatewayError): void {
    if (this.reason !== null) return;
    this.reason = reason;
    const callbacks = this.callbacks;
    this.callbacks = [];
    for (const callback of callbacks) callback();
  }

  /** Runs `callback` on cancellation (at once if already cancelled). */
  onCancel(callback: () => void): void {
    if (this.reason !== null) callback();
    else this.callbacks.push(callback);
  }

  offCancel(callback: () => void): void {
    const at = this.callbacks.indexOf(callback);
    if (at !== -1) this.callbacks.splice(at, 1);
  }
}
