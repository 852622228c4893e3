/**
 * Several real keys behind one virtual key: requests take them in turn, and a key the provider
 * answered 429 (rate limited) or 401/403 (rejected) sits out a cool-down while the others serve.
 * State is per process and per loaded key set (a reload starts fresh).
 */
import type { VirtualKey } from './keys.js';

/** How long a key sits out after a 429 without retry-after, and after a 401/403. */
export const RATE_LIMITED_COOLDOWN_MS = 30_000;
export const REJECTED_COOLDOWN_MS = 300_000;

interface PoolState {
  next: number;
  /** performance.now() until which each key sits out. */
  coolingUntil: number[];
}

const pools = new WeakMap<VirtualKey, PoolState>();

function stateOf(key: VirtualKey): PoolState {
  let state = pools.get(key);
  if (state === undefined) {
    state = { next: 0, coolingUntil: key.apiKeys.map(() => 0) };
    pools.set(key, state);
  }
  return state;
}

/** The index of the real key to use next: the next one in turn that is not cooling down, else the one that recovers first. */
export function pickKey(key: VirtualKey, now = performance.now()): number {
  const count = key.apiKeys.length;
  if (count <= 1) return 0;
  const state = stateOf(key);
  let best = -1;
  for (let step = 0; step < count; step++) {
    const index = (state.next + step) % count;
    if ((state.coolingUntil[index] as number) <= now) {
      state.next = (index + 1) % count;
      return index;
    }
    if (best === -1 || (state.coolingUntil[index] as number) < (state.coolingUntil[best] as number)) best = index;
  }
  state.next = (best + 1) % count;
  return best;
}

/** Whether a real key other than `index` is not cooling down. */
export function otherKeyAvailable(key: VirtualKey, index: number, now = performance.now()): boolean {
  if (key.apiKeys.length <= 1) return false;
  const state = stateOf(key);
  return state.coolingUntil.some((until, other) => other !== index && until <= now);
}

/** The provider answered `status` for key `index`: a 429 or 401/403 sends it into cool-down. */
export function reportStatus(key: VirtualKey, index: number, status: number, retryAfterMs: number | null, now = performance.now()): void {
  if (key.apiKeys.length <= 1) return;
  let pause = 0;
  if (status === 429) pause = retryAfterMs ?? RATE_LIMITED_COOLDOWN_MS;
  else if (status === 401 || status === 403) pause = REJECTED_COOLDOWN_MS;
  if (pause > 0) stateOf(key).coolingUntil[index] = now + pause;
}

/** Milliseconds from a `retry-after` header (seconds or an HTTP date), or from `retry-after-ms`. */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | null {
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+(\.\d+)?$/.test(ms.trim())) return Number(ms);
  const value = headers['retry-after'];
  if (typeof value !== 'string') return null;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}
