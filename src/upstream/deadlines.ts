/**
 * Timeouts for every in-flight upstream call (and a client connection's first request:
 * server/connections.ts), checked by one shared timer instead of a
 * setTimeout per call and a refresh per stream chunk: on the hot path, marking activity is a
 * single number assignment. Precision is the sweep interval (100 ms), plenty for timeouts
 * counted in minutes. One list and one timer for the whole process, as Node's own timers are:
 * a deadline belongs to no instance, and a timer per instance would only add wake-ups.
 */

import { SlotList } from '../slot-list.js';

const SWEEP_MS = 100;

export class Deadline {
  /** performance.now() after which `onExpire` runs, unless pushed back or cleared. */
  at: number;
  /** Its place among the active deadlines (SlotList). */
  slot = -1;
  constructor(
    at: number,
    readonly onExpire: () => void,
  ) {
    this.at = at;
  }
}

const active = new SlotList<Deadline>();
let sweeper: NodeJS.Timeout | null = null;
/** How often the sweeper runs: SWEEP_MS, or sooner for the short deadline it was started for. */
let sweepEveryMs = SWEEP_MS;

function startSweeper(everyMs: number): void {
  if (sweeper !== null) clearInterval(sweeper);
  sweepEveryMs = everyMs;
  sweeper = setInterval(sweep, everyMs);
  sweeper.unref();
}

function sweep(): void {
  const now = performance.now();
  let soonest = Infinity;
  for (const deadline of active.snapshot()) {
    // Still active: an earlier expiry in this sweep may have cleared it.
    if (deadline.slot === -1) continue;
    if (deadline.at <= now) {
      active.delete(deadline);
      deadline.onExpire();
    } else if (deadline.at < soonest) soonest = deadline.at;
  }
  if (active.size === 0) {
    if (sweeper !== null) clearInterval(sweeper);
    sweeper = null;
    return;
  }
  // Started fast for a short deadline: back to the usual pace once it is past, or traffic that
  // never empties the list would keep a sweep of every deadline running every millisecond.
  if (sweepEveryMs < SWEEP_MS && soonest - now >= SWEEP_MS) startSweeper(SWEEP_MS);
}

/** Runs `onExpire` once `ms` have passed, unless `clearDeadline` comes first; moving `at` moves it. */
export function setDeadline(ms: number, onExpire: () => void): Deadline {
  const deadline = new Deadline(performance.now() + ms, onExpire);
  active.add(deadline);
  if (sweeper === null) startSweeper(Math.min(SWEEP_MS, Math.max(1, ms)));
  return deadline;
}

export function clearDeadline(deadline: Deadline): void {
  active.delete(deadline);
}
