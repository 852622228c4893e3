import { terminalText } from './terminal.js';

/**
 * Operational messages: one line each on stderr, prefixed, so that stdout carries nothing but the
 * interactions log. Control characters in them (a client's model name, a server's error) are
 * written as escapes: a terminal would act on them.
 */
export function warn(message: string): void {
  process.stderr.write(`llm-gateway: ${terminalText(message)}\n`);
}

/**
 * A stderr whose reader went away (a log shipper piped `2>&1` that died) fails each write with
 * EPIPE: those messages are lost, the gateway serves on (an unheard 'error' would end the process).
 */
export function serveWithoutStderr(): void {
  process.stderr.on('error', () => {});
}

/** A condition that keeps coming back (a full disk, descriptors run out) said at most once per `everyMs`. */
export class Throttle {
  private saidAt = -Infinity;

  constructor(private readonly everyMs: number) {}

  /** Whether it may be said now; if so, it counts as said. */
  due(): boolean {
    const now = performance.now();
    if (now - this.saidAt < this.everyMs) return false;
    this.saidAt = now;
    return true;
  }
}
