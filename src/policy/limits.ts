/**
 * Per-key limits, enforced before any upstream call: requests and tokens per minute (token
 * buckets that refill continuously), and token budgets per day, month or in total (persisted,
 * so a restart does not reset them). One `LimitState` is the authority: in the process itself,
 * or in the cluster primary for every worker, so a limit holds for the whole instance.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GatewayError } from '../errors.js';
import type { Budget, BudgetPeriod, RateLimit } from './keys.js';
import { warn } from '../observe/warn.js';

/** What the authority needs to know about a key: plain data, so it can cross to a cluster primary. */
export interface KeyLimits {
  readonly digest: string;
  readonly rateLimit: RateLimit | null;
  readonly budget: Budget | null;
}

export interface Admission {
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
    return this.level >= amount ? 0 : ((amount - this.level) * MINUTE_MS) / this.limit;
  }

  /** Takes `amount`; the debt is capped at one minute's worth, so one huge answer cannot lock a key for an hour. */
  take(amount: number): void {
    this.level = Math.min(this.limit, Math.max(-this.limit, this.level - amount));
  }
}

/** The period a budget counts in, as an id: `day:2026-11-28`, `month:2026-11`, `total`. UTC. */
export function periodId(period: BudgetPeriod, now: Date): string {
  const iso = now.toISOString();
  if (period === 'day') return `day:${iso.slice(0, 10)}`;
  if (period === 'month') return `month:${iso.slice(0, 7)}`;
  return 'total';
}

/** When the current period ends (null for `total`). */
export function periodEnd(period: BudgetPeriod, now: Date): Date | null {
  if (period === 'day') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  if (period === 'month') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return null;
}

interface BudgetUsage {
  period: string;
  used: number;
}

/**
 * Tokens used per key and period, kept in a small JSON file (keys known by their digest, never
 * their value), written atomically (a temporary file renamed over the old one) at most once per
 * second and when the gateway stops.
 */
export class BudgetStore {
  private usage = new Map<string, BudgetUsage>();
  /** Tokens reserved by requests still running (in memory only). */
  private readonly reserved = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Usage changed since the last write. Nothing recorded, nothing written: no key with a budget, no file. */
  private dirty = false;

  constructor(private readonly file: string | null) {}

  async load(): Promise<void> {
    if (this.file === null) return;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot read the state file ${this.file} (${(err as Error).message}); budgets start from zero`);
      return;
    }
    try {
      const parsed = JSON.parse(text) as { budgets?: Record<string, BudgetUsage> };
      for (const [digest, usage] of Object.entries(parsed.budgets ?? {})) {
        if (typeof usage?.period === 'string' && typeof usage.used === 'number') this.usage.set(digest, { period: usage.period, used: usage.used });
      }
    } catch {
      // Kept aside, not overwritten: an operator can restore the usage it held.
      const aside = `${this.file}.corrupt-${Date.now()}`;
      await rename(this.file, aside).catch(() => {});
      warn(`WARNING: the state file ${this.file} is not valid JSON; it was moved to ${aside} and budgets start from zero until it is restored`);
    }
  }

  /** Used plus reserved by requests in flight: what admission compares with the budget. */
  committed(digest: string, period: BudgetPeriod, now: Date): number {
    return this.used(digest, period, now) + (this.reserved.get(digest) ?? 0);
  }

  reserve(digest: string, tokens: number): void {
    if (tokens > 0) this.reserved.set(digest, (this.reserved.get(digest) ?? 0) + tokens);
  }

  release(digest: string, tokens: number): void {
    if (tokens <= 0) return;
    // Kept at zero rather than deleted (one entry per budgeted key): a delete and a set per
    // request would make V8 replace the Map's table every few requests (see slot-list.ts).
    this.reserved.set(digest, Math.max(0, (this.reserved.get(digest) ?? 0) - tokens));
  }

  used(digest: string, period: BudgetPeriod, now: Date): number {
    const usage = this.usage.get(digest);
    return usage !== undefined && usage.period === periodId(period, now) ? usage.used : 0;
  }

  add(digest: string, period: BudgetPeriod, tokens: number, now: Date): void {
    const id = periodId(period, now);
    const usage = this.usage.get(digest);
    if (usage !== undefined && usage.period === id) usage.used += tokens;
    else this.usage.set(digest, { period: id, used: tokens });
    this.dirty = true;
    this.timer ??= setTimeout(() => void this.save(), 1000);
  }

  /** Writes the file now (at shutdown). */
  save(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const file = this.file;
    if (file === null || !this.dirty) return this.writing;
    this.dirty = false;
    const text = `${JSON.stringify({ version: 1, budgets: Object.fromEntries(this.usage) }, null, 2)}\n`;
    this.writing = this.writing.then(async () => {
      const temporary = `${file}.${process.pid}.tmp`;
      try {
        await mkdir(dirname(file), { recursive: true });
        // Written, flushed to disk, then renamed over the old file: a crash leaves one or the other, whole.
        const handle = await open(temporary, 'w', 0o600);
        try {
          await handle.writeFile(text);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temporary, file);
      } catch (err) {
        // Tried again with the next change or at shutdown; a half-written temporary file is not left behind.
        this.dirty = true;
        await unlink(temporary).catch(() => {});
        warn(`cannot write the state file ${file} (${(err as Error).message}); budget usage since the last write would be lost at a restart`);
      }
    });
    return this.writing;
  }
}

function rateError(kind: 'requests' | 'tokens', limit: number, retryMs: number, headers: Record<string, string>): Admission['error'] {
  return {
    status: 429,
    message: `Rate limit reached for this virtual key: ${limit} ${kind} per minute. Try again in ${formatDuration(retryMs)}.`,
    type: kind,
    code: 'rate_limit_exceeded',
    headers: { ...headers, 'retry-after': String(Math.max(1, Math.ceil(retryMs / 1000))) },
  };
}

/** The authority over every key's limits. */
export class LimitState {
  private readonly buckets = new Map<string, { requests: Bucket | null; tokens: Bucket | null }>();

  constructor(private readonly budgets: BudgetStore) {}

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
    else entry.requests.limit = rpm;
    if (tpm === null) entry.tokens = null;
    else if (entry.tokens === null) entry.tokens = new Bucket(tpm, now);
    else entry.tokens.limit = tpm;
    entry.requests?.refill(now);
    entry.tokens?.refill(now);
    return entry;
  }

  /**
   * Admits a request (counting it, and reserving `estimate` tokens against tokens per minute and
   * the budget until its answer is recorded) or refuses it with the limit it hit. `now` is the
   * wall clock, for budget periods; rate buckets run on the monotonic clock.
   */
  admit(key: KeyLimits, estimate = 0, now = Date.now(), tick = performance.now()): Admission {
    const headers: Record<string, string> = {};
    if (key.budget !== null) {
      const date = new Date(now);
      const used = this.budgets.committed(key.digest, key.budget.period, date);
      if (used >= key.budget.maxTokens) {
        const end = periodEnd(key.budget.period, date);
        const when = key.budget.period === 'total' ? 'it does not reset' : `it resets at ${end?.toISOString()}`;
        return {
          headers,
          error: {
            status: 429,
            message: `This virtual key has used its token budget (${used} of ${key.budget.maxTokens} tokens, ${key.budget.period === 'total' ? 'in total' : `this ${key.budget.period}`}); ${when}.`,
            type: 'insufficient_quota',
            code: 'budget_exceeded',
            headers: end === null ? {} : { 'retry-after': String(Math.max(1, Math.ceil((end.getTime() - now) / 1000))) },
          },
        };
      }
    }
    if (key.rateLimit === null) {
      if (key.budget !== null) this.budgets.reserve(key.digest, estimate);
      return { headers, error: null };
    }
    const { requests, tokens } = this.bucketsFor(key, tick);
    const describe = (): void => {
      if (requests !== null) {
        headers['x-ratelimit-limit-requests'] = String(requests.limit);
        headers['x-ratelimit-remaining-requests'] = String(Math.max(0, Math.floor(requests.level)));
        headers['x-ratelimit-reset-requests'] = formatDuration(requests.msUntil(requests.limit));
      }
      if (tokens !== null) {
        headers['x-ratelimit-limit-tokens'] = String(tokens.limit);
        headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, Math.floor(tokens.level)));
        headers['x-ratelimit-reset-tokens'] = formatDuration(tokens.msUntil(tokens.limit));
      }
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
    if (tokens !== null) tokens.take(estimate);
    if (key.budget !== null) this.budgets.reserve(key.digest, estimate);
    describe();
    return { headers, error: null };
  }

  /** Tokens a request used (its answer's usage, or an estimate): the reservation is settled with them. */
  record(key: KeyLimits, usedTokens: number, reserved = 0, now = Date.now(), tick = performance.now()): void {
    if (key.rateLimit?.tokensPerMinute != null) {
      const tokens = this.bucketsFor(key, tick).tokens;
      if (tokens !== null) tokens.take(usedTokens - reserved);
    }
    if (key.budget !== null) {
      this.budgets.release(key.digest, reserved);
      if (usedTokens > 0) this.budgets.add(key.digest, key.budget.period, usedTokens, new Date(now));
    }
  }
}

/** How a serving process reaches the authority: directly, or over IPC in a cluster worker. */
export interface Limiter {
  /** `estimate`: tokens to reserve while the request runs (its prompt and max_tokens). */
  admit(key: KeyLimits, estimate: number): Admission | Promise<Admission>;
  record(key: KeyLimits, usedTokens: number, reserved: number): void;
}

/** Only the fields the authority needs, so nothing else (the real keys) crosses to another process. */
export function limitsOf(key: { digest: string; rateLimit: RateLimit | null; budget: Budget | null }): KeyLimits {
  return { digest: key.digest, rateLimit: key.rateLimit, budget: key.budget };
}
