/**
 * A circuit breaker for one target of a virtual key with several: after FAILURES_TO_OPEN failures
 * in a row (failures that move a request to the next target) the target is skipped for
 * OPEN_MS; then one request may probe it (half open): its success closes the breaker, its failure
 * opens it again. The defaults: a key's `circuit_breaker` sets its own. Per process, per loaded key
 * set (a reload starts fresh); with Redis, opening is also announced to the other instances and
 * stored (shared-events.ts): they skip the target too, and a reload applies it again while it runs.
 */

/** Failures in a row that open the breaker. */
export const FAILURES_TO_OPEN = 3;
/** How long an open breaker skips its target before a probe. */
export const OPEN_MS = 30_000;

export type BreakerState = 'closed' | 'open' | 'half-open';

/** How a request was let through: as usual (closed), or as the one probe of a half-open breaker. */
export type Admission = 'pass' | 'probe';

/** A key's `circuit_breaker`. */
export interface BreakerSettings {
  readonly failures: number;
  readonly openMs: number;
}

export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;
  /** A probe is on its way (half open): other requests keep skipping the target. */
  private probing = false;

  /** Told when this breaker opens by its own count (not when another instance's opening is applied). */
  onOpened: ((openMs: number) => void) | null = null;

  constructor(
    private readonly failuresToOpen = FAILURES_TO_OPEN,
    private readonly openMs = OPEN_MS,
  ) {}

  state(now = performance.now()): BreakerState {
    if (this.failures < this.failuresToOpen) return 'closed';
    return now < this.openUntil || this.probing ? 'open' : 'half-open';
  }

  /** Whether a request may go to the target now (null: not while open); a half-open breaker lets one through, the probe. */
  admit(now = performance.now()): Admission | null {
    const state = this.state(now);
    if (state === 'closed') return 'pass';
    if (state === 'open') return null;
    this.probing = true;
    return 'probe';
  }

  /**
   * The probe neither succeeded nor failed (the client left, it was refused first): another may go.
   * Only for the request admitted as the probe: any other would free a probe still on its way.
   */
  release(): void {
    this.probing = false;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
  }

  failure(now = performance.now()): void {
    this.failures++;
    this.probing = false;
    if (this.failures >= this.failuresToOpen) {
      this.openUntil = now + this.openMs;
      this.onOpened?.(this.openMs);
    }
  }

  /** Another instance opened it: skipped here too for `openMs`, then probed here as usual. */
  openFor(openMs: number, now = performance.now()): void {
    this.failures = Math.max(this.failures, this.failuresToOpen);
    this.openUntil = Math.max(this.openUntil, now + openMs);
  }
}
