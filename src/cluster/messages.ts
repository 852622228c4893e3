/**
 * What the cluster primary and its workers say to each other over IPC.
 */
import type { MetricsSnapshot } from '../observe/metrics.js';
import type { Admission, Charge, KeyLimits, KeyReport, Spend } from '../policy/limits.js';

export type ToPrimary =
  /** `owner`: the mark that starts its reservations' names in Redis (released by another worker if it dies). */
  | { t: 'hello'; owner: string }
  /** `request`: the request's id, which its record names again. */
  | { t: 'admit'; id: number; key: KeyLimits; estimate: Charge; request: string }
  /** Finished requests' spend, gathered for one turn of the event loop (one message per request cost a worker a third of its small requests). */
  | { t: 'records'; records: readonly SpendRecord[] }
  | { t: 'report'; id: number; key: KeyLimits }
  | { t: 'ready'; address: string }
  /** The worker could not listen: `message` is the one line to print (once, by the primary). */
  | { t: 'listen-failed'; message: string }
  | { t: 'scrape'; id: number; snapshot: MetricsSnapshot }
  | { t: 'snapshot'; id: number | null; snapshot: MetricsSnapshot }
  /** Dead workers whose reservations in Redis this worker has released (the primary forgets them). */
  | { t: 'released'; owners: readonly string[] }
  /** The output items of a response this worker saw stored (`tag`: its owner): every other worker learns them. */
  | { t: 'items'; storage: string; ids: readonly string[]; tag: string }
  /** Answer `synced` once every worker's items sent before this have been passed on to this worker. */
  | { t: 'sync'; id: number };

/** One finished request: `request` names the admission it settles (null: it holds nothing). */
export interface SpendRecord {
  readonly key: KeyLimits;
  readonly spent: Spend;
  readonly reserved: Charge;
  readonly request: string | null;
}

export type ToWorker =
  /** The keys file's text and PRICES_FILE's (null: none), as the primary accepted them. */
  | { t: 'keys'; text: string; prices: string | null }
  | { t: 'snapshot'; id: number }
  | { t: 'metrics'; id: number; text: string }
  | { t: 'admitted'; id: number; admission: Admission }
  | { t: 'reported'; id: number; report: KeyReport }
  /** Workers that died: release what they held in Redis (by their marks). */
  | { t: 'release'; owners: readonly string[] }
  /** Output items another worker saw stored: a reference to them may reach this one next. */
  | { t: 'items'; storage: string; ids: readonly string[]; tag: string }
  | { t: 'synced'; id: number }
  /**
   * Stop: finish the requests in flight, flush, exit (a second one: end them now). Told over IPC,
   * not by a signal: a signal sent to the whole process group (Ctrl-C, systemd) reaches the
   * workers too, and with the primary's own it would count twice.
   */
  | { t: 'stop'; signal: string };

/** How long a worker waits for the primary to pass on other workers' items before refusing a reference it does not know. */
export const SYNC_TIMEOUT_MS = 1000;
/** How long a scrape waits for every worker's fresh counters (then uses their last ones). */
export const SNAPSHOT_TIMEOUT_MS = 1000;
/** Workers also send their counters this often, so a worker that dies loses little. */
export const SNAPSHOT_PUSH_MS = 5000;

export function isMessage<T extends { t: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}
