/**
 * Several real keys behind one target: requests take them in turn, and a key the provider
 * answered 429 (rate limited) or 401/403 (rejected) sits out a cool-down while the others serve.
 * State is per process and per loaded key set (a reload starts fresh); with Redis, a cool-down
 * is also announced to the other instances and stored (shared-events.ts): they apply it to their
 * own pool, and a reload applies it again while it runs.
 */
import type { KeyTurns } from '../upstream/call.js';

/** How long a key sits out after a 429 without retry-after, and after a 401/403. */
const RATE_LIMITED_COOLDOWN_MS = 30_000;
const REJECTED_COOLDOWN_MS = 300_000;
/** The longest a 429's retry-after benches a key: `retry-after: 999999999999` must not take it out until a restart. */
const MAX_COOLDOWN_MS = 3_600_000;

const NONE: ReadonlySet<number> = new Set();

export class KeyPool implements KeyTurns {
  private next = 0;
  /** performance.now() until which each key sits out. */
  private readonly coolingUntil: number[];

  /** Told of every cool-down this pool starts itself (not of one applied from elsewhere). */
  onCooled: ((index: number, pauseMs: number) => void) | null = null;

  constructor(readonly apiKeys: readonly string[]) {
    this.coolingUntil = apiKeys.map(() => 0);
  }

  /**
   * The next key in turn that is not cooling down, else the one that recovers first; among those
   * not in `skip` (keys that refused the request's model) while any is not.
   */
  pick(skip: ReadonlySet<number> = NONE, now = performance.now()): number {
    const count = this.apiKeys.length;
    if (count <= 1) return 0;
    const skipping = skip.size > 0 && skip.size < count;
    let best = -1;
    for (let step = 0; step < count; step++) {
      const index = (this.next + step) % count;
      if (skipping && skip.has(index)) continue;
      if ((this.coolingUntil[index] as number) <= now) {
        this.next = (index + 1) % count;
        return index;
      }
      if (best === -1 || (this.coolingUntil[index] as number) < (this.coolingUntil[best] as number)) best = index;
    }
    this.next = (best + 1) % count;
    return best;
  }

  otherAvailable(index: number, skip: ReadonlySet<number> = NONE, withinMs = 0, now = performance.now()): boolean {
    return this.coolingUntil.some((until, other) => other !== index && !skip.has(other) && until <= now + withinMs);
  }

  /** Every key is cooling down: a virtual key with other targets moves on to the next. A target without keys (the mock) never is. */
  allCooling(now = performance.now()): boolean {
    return this.coolingUntil.length > 0 && this.coolingUntil.every((until) => until > now);
  }

  report(index: number, status: number, retryAfterMs: number | null, now = performance.now()): void {
    let pause = 0;
    if (status === 429) pause = Math.min(retryAfterMs ?? RATE_LIMITED_COOLDOWN_MS, MAX_COOLDOWN_MS);
    else if (status === 401 || status === 403) pause = REJECTED_COOLDOWN_MS;
    if (pause > 0) {
      this.coolingUntil[index] = now + pause;
      this.onCooled?.(index, pause);
    }
  }

  /** A cool-down another instance started (it saw the 429 or 401 first). */
  coolFor(index: number, pauseMs: number, now = performance.now()): void {
    if (index >= 0 && index < this.coolingUntil.length) this.coolingUntil[index] = Math.max(this.coolingUntil[index] as number, now + Math.min(pauseMs, MAX_COOLDOWN_MS));
  }
}
