/**
 * The event loop's turns, handed one at a time to large synchronous jobs: translating an agent's
 * conversation (parsing it whole and writing it again, ~15 ms per MB). Twenty of them whose
 * bodies end in one poll of the sockets otherwise run back to back, and every other request's
 * bytes wait 150–200 ms; one per turn, the loop polls its sockets and runs its timers between
 * them. docs/performance.md tells why a body passed through, or its log entry, does not wait.
 */

/** A body at least this large is a large job (an agent's first turn is ~90 KB). */
export const LARGE_JOB_BYTES = 64 * 1024;

export class Turns {
  private readonly waiting: Array<() => void> = [];
  private granting = false;

  /** Resolves at the caller's turn: its job is what it runs synchronously then. */
  take(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.granting) return;
      this.granting = true;
      setImmediate(this.grant);
    });
  }

  // An immediate queued by an immediate runs in the loop's next iteration, after its polls and
  // timers; the resolved job runs before it, as the microtasks of this one.
  private readonly grant = (): void => {
    const job = this.waiting.shift();
    if (this.waiting.length > 0) setImmediate(this.grant);
    else this.granting = false;
    job?.();
  };
}
