/**
 * Per-key limits, enforced before any upstream call: requests and tokens per minute (token
 * buckets that refill continuously), and budgets in tokens and in USD per day, month or in total
 * (persisted, so a restart does not reset them: spend-store.ts); and every key's spend in its period, which a key
 * holder can read. One `LimitState` is the authority: in the process itself, or in the cluster
 * primary for every worker, so a limit holds for the whole instance.
 */
import { GatewayError } from '../errors.js';
import type { Usage } from '../formats/usage.js';
import { formatUsd } from '../prices/cost.js';
import type { Budget, BudgetPeriod, RateLimit } from './keys.js';
import type { Slotted } from '../slot-list.js';
import type { KeySpend, SpendStore } from './spend-store.js';

/** What the authority needs to know about a key: plain data, so it can cross to a cluster primary. */
export interface KeyLimits {
  readonly digest: string;
  readonly rateLimit: RateLimit | null;
  readonly budget: Budget | null;
}

/** Tokens and dollars: what a request holds while it runs, and what it is charged. */
export interface Charge {
  readonly tokens: number;
  readonly usd: number;
}

export const NO_CHARGE: Charge = { tokens: 0, usd: 0 };

/** What a finished request is charged: its usage as reported (null: an estimate, or none), and whether its model had no price. */
export interface Spend extends Charge {
  readonly usage: Usage | null;
  readonly unpriced: boolean;
  /** Admitted by the shared store (Redis): this instance's own requests bucket counts it too, for a fallback. */
  readonly decidedElsewhere?: boolean;
}

export interface Admission {
  /** Where it is held (absent: `local`), and its id in the shared store (Redis). */
  readonly where?: Held;
  readonly ticket?: string | null;
  readonly lease?: Lease | null;
  /** null: admitted. */
  readonly error: { status: number; message: string; type: string; code: string; headers: Record<string, string> } | null;
  /** `x-ratelimit-*` headers for the response, as OpenAI sends them. */
  readonly headers: Record<string, string>;
}

export function admissionError(admission: Admission): GatewayError | null {
  const error = admission.error;
  if (error === null) return null;
  return new GatewayError(error.status, error.message, { type: error.type, code: error.code, headers: error.headers });
}

const MINUTE_MS = 60_000;

/**
 * Milliseconds until a bucket refilling `limit` a minute goes from `level` to `amount`, as a client
 * is told (headers, retry-after): from one minute's debt at most. A level below that is held by
 * requests in flight (their estimates, given back as they end: a key whose `tokens_per_minute` is
 * below one request's output reserve would otherwise be told to wait minutes after a 15-token answer).
 */
export function refillMs(level: number, limit: number, amount: number): number {
  const from = Math.max(level, -limit);
  return from >= amount ? 0 : ((amount - from) * MINUTE_MS) / limit;
}

/** OpenAI's reset format: `0s`, `250ms`, `1.5s`, `6m0s`. */
export function formatDuration(ms: number): string {
  const rounded = Math.ceil(ms);
  if (rounded <= 0) return '0s';
  if (rounded < 1000) return `${rounded}ms`;
  if (rounded < MINUTE_MS) return `${Number((rounded / 1000).toFixed(3))}s`;
  const seconds = Math.round(rounded / 1000);
  return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
}

/** A bucket of `limit` units per minute, refilling continuously; it may go below zero (tokens are paid after the answer). */
class Bucket {
  level: number;
  private updatedAt: number;

  constructor(
    public limit: number,
    now: number,
  ) {
    this.level = limit;
    this.updatedAt = now;
  }

  refill(now: number): void {
    this.level = Math.min(this.limit, this.level + ((now - this.updatedAt) * this.limit) / MINUTE_MS);
    this.updatedAt = now;
  }

  /** Milliseconds until the level reaches `amount`. */
  msUntil(amount: number): number {
    return refillMs(this.level, this.limit, amount);
  }

  /** Takes `amount`; the debt is capped at one minute's worth, so one huge answer cannot lock a key for an hour. */
  take(amount: number): void {
    this.level = Math.min(this.limit, Math.max(-this.limit, this.level - amount));
  }

  /**
   * A new limit (a reload): what was used stays used, so raising a limit gives its difference at
   * once. The debt is capped at one minute's worth of the new limit, as `take` caps it: uncapped, a
   * minute used at 100,000 tokens locked a key lowered to 1,000 out for 100 minutes. (What requests
   * in flight hold beyond that cap is forgiven: the lesser wrong.)
   */
  resize(limit: number): void {
    if (limit === this.limit) return;
    this.level = Math.max(-limit, this.level + limit - this.limit);
    this.limit = limit;
  }

  /**
   * Holds `amount` for a request in flight, without the cap: its settlement gives back exactly
   * what it held (a cap here would lose the difference, and refill the bucket at settlement).
   */
  hold(amount: number): void {
    this.level -= amount;
  }
}

/** The period a budget counts in, as an id: `day:2026-11-28`, `month:2026-11`, `total`. UTC. */
export function periodId(period: BudgetPeriod, now: Date): string {
  if (period === 'total') return 'total';
  // From the date's fields, not toISOString (every request of every key: 0.8 against 0.17 µs).
  const month = now.getUTCMonth() + 1;
  const yearMonth = `${now.getUTCFullYear()}-${month < 10 ? '0' : ''}${month}`;
  if (period === 'month') return `month:${yearMonth}`;
  const day = now.getUTCDate();
  return `day:${yearMonth}-${day < 10 ? '0' : ''}${day}`;
}

/** When the current period began (null for `total`). */
export function periodStart(period: BudgetPeriod, now: Date): Date | null {
  if (period === 'day') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  if (period === 'month') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  return null;
}

/** When the current period ends (null for `total`). */
export function periodEnd(period: BudgetPeriod, now: Date): Date | null {
  if (period === 'day') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  if (period === 'month') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return null;
}

/** The period a key's spend is counted in: its budget's, else the calendar month. */
export function spendPeriod(key: KeyLimits): BudgetPeriod {
  return key.budget?.period ?? 'month';
}

const RATE_HEADERS = {
  requests: ['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests'],
  tokens: ['x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'],
} as const;

/** OpenAI's `x-ratelimit-*` headers for one bucket at `level`: its limit, what remains, and when it is full again. */
export function describeBucket(headers: Record<string, string>, kind: 'requests' | 'tokens', limit: number, level: number): void {
  const [limitName, remainingName, resetName] = RATE_HEADERS[kind];
  headers[limitName] = String(limit);
  headers[remainingName] = String(Math.max(0, Math.floor(level)));
  headers[resetName] = formatDuration(refillMs(level, limit, limit));
}

export function rateError(kind: 'requests' | 'tokens', limit: number, retryMs: number, headers: Record<string, string>): Admission['error'] {
  return {
    status: 429,
    message: `Rate limit reached for this virtual key: ${limit} ${kind} per minute. Try again in ${formatDuration(retryMs)}.`,
    type: kind,
    code: 'rate_limit_exceeded',
    headers: { ...headers, 'retry-after': String(Math.max(1, Math.ceil(retryMs / 1000))) },
  };
}

/** A rate bucket as a key holder sees it. */
export interface BucketState {
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until it is full again. */
  readonly reset_seconds: number;
}

/** A key's spend, budget and rate-limit state, as `GET /v1/usage` reports it: plain data (it crosses from a cluster primary). */
export interface KeyReport {
  readonly period: BudgetPeriod;
  readonly periodStart: string | null;
  readonly periodEnd: string | null;
  readonly spend: KeySpend;
  /** Held by its requests in flight. */
  readonly inFlight: Charge;
  readonly budget: Budget | null;
  readonly requestsPerMinute: BucketState | null;
  readonly tokensPerMinute: BucketState | null;
  /** This instance's own count only: Redis, which counts every instance's, could not be asked. */
  readonly partial?: boolean;
}

/** How long a client refused for a budget its requests in flight hold is told to wait: they end, or give back what they did not use. */
const HELD_RETRY_SECONDS = 5;

/** A budget's limit of one kind (0: none of that kind). */
export function budgetMax(budget: Budget, kind: 'tokens' | 'usd'): number {
  return (kind === 'usd' ? budget.maxUsd : budget.maxTokens) ?? 0;
}

/**
 * The refusal of a request over its key's budget: `spent` in the period and `held` by requests in
 * flight (their estimates until their answers settle). Spent alone, the budget is used until the
 * period resets; held in part, it may come back within seconds, and says so.
 */
export function budgetError(budget: Budget, kind: 'tokens' | 'usd', spent: number, held: number, now: number): Admission['error'] {
  const max = budgetMax(budget, kind);
  const span = budget.period === 'total' ? 'in total' : budget.period === 'day' ? 'today (UTC)' : 'this month (UTC)';
  if (held > 0 && spent < max) {
    const amounts = kind === 'usd' ? `${formatUsd(spent)} spent and ${formatUsd(held)} held of ${formatUsd(max)} ${span}` : `${spent} tokens spent and ${held} held of ${max} ${span}`;
    return {
      status: 429,
      message: `This virtual key's budget is taken by its requests in flight (${amounts}); what they do not use comes back when they finish. Try again shortly.`,
      type: 'tokens',
      code: 'budget_held',
      headers: { 'retry-after': String(HELD_RETRY_SECONDS) },
    };
  }
  const end = periodEnd(budget.period, new Date(now));
  const when = budget.period === 'total' ? 'it does not reset' : `it resets at ${end?.toISOString()}`;
  const message =
    kind === 'usd'
      ? `This virtual key has used its budget (${formatUsd(spent)} of ${formatUsd(budget.maxUsd ?? 0)} spent ${span}); ${when}.`
      : `This virtual key has used its token budget (${spent} of ${budget.maxTokens ?? 0} tokens, ${span}); ${when}.`;
  return {
    status: 429,
    message,
    type: 'insufficient_quota',
    code: 'budget_exceeded',
    // The official SDKs sleep for any retry-after up to ~24 days and retry (a day's budget: hours,
    // twice): x-should-retry tells them not to; retry-after still says when the budget resets.
    headers: { ...(end === null ? {} : { 'retry-after': String(Math.max(1, Math.ceil((end.getTime() - now) / 1000))) }), 'x-should-retry': 'false' },
  };
}

/** The authority over every key's limits. */
export class LimitState {
  private readonly buckets = new Map<string, { requests: Bucket | null; tokens: Bucket | null }>();

  constructor(private readonly spend: SpendStore) {}

  private bucketsFor(key: KeyLimits, now: number): { requests: Bucket | null; tokens: Bucket | null } {
    let entry = this.buckets.get(key.digest);
    if (entry === undefined) {
      entry = { requests: null, tokens: null };
      this.buckets.set(key.digest, entry);
    }
    // Limits may change with a reload: buckets follow, keeping what was used.
    const rpm = key.rateLimit?.requestsPerMinute ?? null;
    const tpm = key.rateLimit?.tokensPerMinute ?? null;
    if (rpm === null) entry.requests = null;
    else if (entry.requests === null) entry.requests = new Bucket(rpm, now);
    else entry.requests.resize(rpm);
    if (tpm === null) entry.tokens = null;
    else if (entry.tokens === null) entry.tokens = new Bucket(tpm, now);
    else entry.tokens.resize(tpm);
    entry.requests?.refill(now);
    entry.tokens?.refill(now);
    return entry;
  }

  /** The refusal of a key whose budget is spent (with what requests in flight hold), or null. */
  private overBudget(key: KeyLimits, now: number): Admission['error'] {
    const budget = key.budget;
    if (budget === null) return null;
    const spent = this.spend.current(key.digest, budget.period, new Date(now));
    const held = this.spend.held(key.digest);
    // Spent alone past either: used until the period resets, whatever requests in flight hold.
    if (budget.maxTokens !== null && spent.tokens >= budget.maxTokens) return budgetError(budget, 'tokens', spent.tokens, held.tokens, now);
    if (budget.maxUsd !== null && spent.usd >= budget.maxUsd) return budgetError(budget, 'usd', spent.usd, held.usd, now);
    if (budget.maxTokens !== null && spent.tokens + held.tokens >= budget.maxTokens) return budgetError(budget, 'tokens', spent.tokens, held.tokens, now);
    if (budget.maxUsd !== null && spent.usd + held.usd >= budget.maxUsd) return budgetError(budget, 'usd', spent.usd, held.usd, now);
    return null;
  }

  /**
   * Admits a request (counting it, and reserving `estimate` against tokens per minute and the
   * budget until its answer is recorded) or refuses it with the limit it hit. `now` is the wall
   * clock, for budget periods; rate buckets run on the monotonic clock.
   */
  admit(key: KeyLimits, estimate: Charge = NO_CHARGE, now = Date.now(), tick = performance.now()): Admission {
    const headers: Record<string, string> = {};
    const refused = this.overBudget(key, now);
    if (refused !== null) return { headers, error: refused };
    if (key.rateLimit === null) {
      if (key.budget !== null) this.spend.reserve(key.digest, estimate);
      return { headers, error: null };
    }
    const { requests, tokens } = this.bucketsFor(key, tick);
    const describe = (): void => {
      if (requests !== null) describeBucket(headers, 'requests', requests.limit, requests.level);
      if (tokens !== null) describeBucket(headers, 'tokens', tokens.limit, tokens.level);
    };
    if (requests !== null && requests.level < 1) {
      describe();
      return { headers, error: rateError('requests', requests.limit, requests.msUntil(1), headers) };
    }
    if (tokens !== null && tokens.level <= 0) {
      describe();
      return { headers, error: rateError('tokens', tokens.limit, tokens.msUntil(1), headers) };
    }
    if (requests !== null) requests.take(1);
    if (tokens !== null) tokens.hold(estimate.tokens);
    if (key.budget !== null) this.spend.reserve(key.digest, estimate);
    describe();
    return { headers, error: null };
  }

  /** What a request was charged (its usage, or an estimate): its reservation is settled with it, its key's spend grows. */
  record(key: KeyLimits, spent: Spend, reserved: Charge = NO_CHARGE, now = Date.now(), tick = performance.now()): void {
    if (key.rateLimit !== null) {
      const { requests, tokens } = this.bucketsFor(key, tick);
      if (tokens !== null) tokens.take(spent.tokens - reserved.tokens);
      if (requests !== null && spent.decidedElsewhere === true) requests.take(1);
    }
    if (key.budget !== null) this.spend.release(key.digest, reserved);
    this.spend.add(key.digest, spendPeriod(key), spent, new Date(now), key.budget !== null);
  }

  /** The key's spend in its period, its budget and its rate buckets (nothing about other keys). */
  report(key: KeyLimits, now = Date.now(), tick = performance.now()): KeyReport {
    const date = new Date(now);
    const period = spendPeriod(key);
    const bucket = (b: Bucket | null): BucketState | null =>
      b === null ? null : { limit: b.limit, remaining: Math.max(0, Math.floor(b.level)), reset_seconds: Math.ceil(b.msUntil(b.limit)) / 1000 };
    const buckets = key.rateLimit === null ? { requests: null, tokens: null } : this.bucketsFor(key, tick);
    return {
      period,
      periodStart: periodStart(period, date)?.toISOString() ?? null,
      periodEnd: periodEnd(period, date)?.toISOString() ?? null,
      spend: { ...this.spend.current(key.digest, period, date) },
      inFlight: { ...this.spend.held(key.digest) },
      budget: key.budget,
      requestsPerMinute: bucket(buckets.requests),
      tokensPerMinute: bucket(buckets.tokens),
    };
  }
}

/**
 * Where an admitted request's reservation is: `local` (this instance's authority), `shared` (the
 * shared store answered: it holds it), `unsure` (the shared store did not answer in time: this
 * instance decided, and the store may hold it too), `none` (a key without limits).
 */
export type Held = 'local' | 'shared' | 'unsure' | 'none';

/** What an admitted request holds until it is settled, and where. */
export interface Reservation {
  readonly charge: Charge;
  readonly where: Held;
  /** Its id in the shared store (Redis): the request's id. */
  readonly ticket: string | null;
  /** The shared store's renewal of it while the request runs, which its settlement ends. */
  readonly lease?: Lease | null;
}

/**
 * A reservation in a shared store holds budget for a short while unless its instance renews it:
 * what an instance killed outright held is let go soon, while a long stream keeps its hold.
 */
export interface Lease extends Slotted {
  /** Where the store keeps it (Redis: the key's hash of reservations), and its name there. */
  readonly place: string;
  readonly ticket: string;
  /** When it was made (ms): a lease younger than one renewal period still has a full hold. */
  readonly since: number;
}

export const NO_RESERVATION: Reservation = { charge: NO_CHARGE, where: 'none', ticket: null };

/** How a serving process reaches the authority: directly, over IPC in a cluster worker, or in Redis. */
export interface Limiter {
  /**
   * `estimate`: what to reserve while the request runs (its prompt and output limit, in tokens and
   * at its model's price); `id`: the request's id, which names its reservation in a shared store.
   */
  admit(key: KeyLimits, estimate: Charge, id: string): Admission | Promise<Admission>;
  record(key: KeyLimits, spent: Spend, reserved: Reservation): void;
  report(key: KeyLimits): KeyReport | Promise<KeyReport>;
}

/** Only the fields the authority needs, so nothing else (the real keys) crosses to another process. */
export function limitsOf(key: { digest: string; rateLimit: RateLimit | null; budget: Budget | null }): KeyLimits {
  return { digest: key.digest, rateLimit: key.rateLimit, budget: key.budget };
}

/** A Limiter over a LimitState in this process. */
export function localLimiter(state: LimitState): Limiter {
  return {
    admit: (key, estimate) => state.admit(key, estimate),
    record: (key, spent, reserved) => state.record(key, spent, reserved.charge),
    report: (key) => state.report(key),
  };
}
