/**
 * Timeouts for every in-flight upstream call, checked by one shared timer instead of a
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

function sweep(): void {
  const now = performance.now();
  for (const deadline of active.snapshot()) {
    // Still active: an earlier expiry in this sweep may have cleared it.
    if (deadline.at <= now && deadline.slot !== -1) {
      active.delete(deadline);
      deadline.onExpire();
    }
  }
  if (active.size === 0 && sweeper !== null) {
    clearInterval(sweeper);
    sweeper = null;
  }
}

/** Runs `onExpire` once `ms` have passed, unless `clearDeadline` comes first; moving `at` moves it. */
export function setDeadline(ms: number, onExpire: () => void): Deadline {
  const deadline = new Deadline(performance.now() + ms, onExpire);
  active.add(deadline);
  if (sweeper === null) {
    sweeper = setInterval(sweep, Math.min(SWEEP_MS, Math.max(1, ms)));
    sweeper.unref();
  }
  return deadline;
}

export function clearDeadline(deadline: Deadline): void {
  active.delete(deadline);
}
