/**
 * Per-key limits, enforced before any upstream call: requests and tokens per minute (token
 * buckets that refill continuously), and budgets in tokens and in USD per day, month or in total
 * (persisted, so a restart does not reset them); and every key's spend in its period, which a key
 * holder can read. One `LimitState` is the authority: in the process itself, or in the cluster
 * primary for every worker, so a limit holds for the whole instance.
 */
import { lstat, open, readFile, readlink, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { makeFolders } from '../folders.js';
import { dirname, resolve } from 'node:path';
import { ConfigFileError } from '../config-file-error.js';
import { GatewayError } from '../errors.js';
import type { Usage } from '../formats/usage.js';
import { formatUsd, roundUsd } from '../prices/cost.js';
import type { Budget, BudgetPeriod, RateLimit } from './keys.js';
import { warn } from '../observe/warn.js';
import { writeProblem } from '../write-problem.js';
import type { Slotted } from '../slot-list.js';

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

/** One key's spend in one period, as the state file holds it. */
export interface KeySpend {
  period: string;
  requests: number;
  /** Every token, as budgets count them. */
  tokens: number;
  usd: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  /** Requests that used tokens of a model without a price: `usd` leaves them out. */
  unpriced_requests: number;
}

function emptySpend(period: string): KeySpend {
  return { period, requests: 0, tokens: 0, usd: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0, unpriced_requests: 0 };
}

const COUNTS = ['requests', 'usd', 'input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens', 'reasoning_tokens', 'unpriced_requests'] as const;
/** Every field an entry may have (`used`: version 1's tokens). */
const ENTRY_FIELDS: ReadonlySet<string> = new Set(['period', 'tokens', 'used', ...COUNTS]);

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/**
 * An entry of the state file: version 2 (`keys`), or version 1 (`budgets`: tokens only, as
 * `used`); null when it cannot be read as it was written: no period or no tokens, a field renamed
 * (a hand edit), or a count that is not one (read as 0, a budget would start again unseen).
 * Counts a version did not write yet are 0.
 */
function readSpend(value: unknown): KeySpend | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const entry = value as Record<string, unknown>;
  if (typeof entry.period !== 'string') return null;
  for (const field of Object.keys(entry)) if (!ENTRY_FIELDS.has(field)) return null;
  const tokens = entry.tokens ?? entry.used;
  if (!isCount(tokens)) return null;
  const spend = emptySpend(entry.period);
  spend.tokens = tokens;
  for (const field of COUNTS) {
    const count = entry[field] ?? 0;
    if (!isCount(count)) return null;
    spend[field] = count;
  }
  return spend;
}

interface StateFile {
  readonly entries: ReadonlyArray<readonly [digest: string, spend: KeySpend]>;
  readonly countedInRedis: boolean;
  /** Keys (digests) with an entry that could not be read: their spend starts from zero. */
  readonly unreadable: readonly string[];
}

/**
 * The spend a state file holds, or what is wrong with it: version 2 (`spend`: each key's periods;
 * the first builds with USD budgets wrote `keys`, one period per key), or version 1 (`budgets`:
 * one period per key, tokens only). Anything else (another version, a field renamed) is not read
 * as no spend; an entry that cannot be read is named, the others read.
 */
function readStateFile(parsed: unknown): StateFile | string {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'is not a JSON object';
  const file = parsed as { version?: unknown; spend?: unknown; keys?: unknown; budgets?: unknown; counted_in_redis?: unknown };
  const isMap = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
  let entries: Array<readonly [string, unknown]>;
  if (file.version === 2 && isMap(file.spend)) {
    entries = [];
    for (const [digest, periods] of Object.entries(file.spend)) {
      if (!isMap(periods)) entries.push([digest, periods]);
      else for (const entry of Object.values(periods)) entries.push([digest, entry]);
    }
  } else if (file.version === 2 && isMap(file.keys)) {
    entries = Object.entries(file.keys);
  } else if ((file.version === 1 || file.version === undefined) && isMap(file.budgets)) {
    entries = Object.entries(file.budgets);
  } else {
    return `is not a state file this gateway reads (version ${JSON.stringify(file.version) ?? 'absent'}; version 2 has "spend", version 1 "budgets")`;
  }
  const read: Array<readonly [string, KeySpend]> = [];
  const unreadable = new Set<string>();
  for (const [digest, entry] of entries) {
    const spend = readSpend(entry);
    if (spend === null) unreadable.add(digest);
    else read.push([digest, spend]);
  }
  return { entries: read, countedInRedis: file.counted_in_redis === true, unreadable: [...unreadable] };
}

function unwritable(file: string, why: string): string {
  return `cannot write the state file ${file} (${why}); spend since the last write would be lost at a restart (said once until a write succeeds)`;
}

/**
 * A key's digest as stderr may show it: enough to find its entry in the state file, not the whole
 * digest, from which a short guessable key could be recovered (stderr is read more widely).
 */
function digestStart(digest: string): string {
  return digest.length > 8 ? `${digest.slice(0, 8)}…` : digest;
}

/**
 * Spend per key and period (requests, tokens, USD). The spend of keys with a budget is kept in a
 * small JSON file (keys known by their digest, never their value), written atomically (a
 * temporary file renamed over the old one) at most once per second and when the gateway stops;
 * other keys' spend and reservations of requests in flight are kept in memory only.
 */
export class SpendStore {
  /** digest → period id → spend: a key whose budget period changes (a reload) keeps each period's count. */
  private readonly spend = new Map<string, Map<string, KeySpend>>();
  /** Tokens and dollars reserved by requests still running. */
  private readonly reserved = new Map<string, { tokens: number; usd: number }>();
  /** Digests whose spend is written: keys with a budget, and those the file held at start. */
  private readonly kept = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Spend changed since the last write. Nothing recorded, nothing written: no request, no file. */
  private dirty = false;
  /** The last write failed: said once, until one succeeds. */
  private failing = false;
  /** The file as this process last read or wrote it: a change by another writer shows in it. */
  private seen: FileStamp | null = null;
  /** Another writer was said. */
  private sharedSaid = false;
  /**
   * The spend in the file was counted in Redis too (written while REDIS_URL was set): a restart
   * must not add it to Redis again. False for a file from an instance that ran alone.
   */
  countedInRedis = false;

  constructor(private readonly file: string | null) {}

  /** Reads the state file; one that may be there and cannot be read is a ConfigFileError (the gateway does not start). */
  async load(): Promise<void> {
    if (this.file === null) return;
    const target = await writtenPath(this.file);
    await this.checkWritable(target);
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (target !== this.file) warn(`the state file ${this.file} is a link to ${target}, which does not exist: budgets start from zero, and it is written there`);
        return;
      }
      // No file can be there (a folder at its path, or on it): no spend to lose. The writes fail
      // too, which checkWritable has said.
      if (code === 'EISDIR' || code === 'ENOTDIR') {
        warn(`cannot read the state file ${this.file} (${(await writeProblem(this.file)) ?? (err as Error).message}); budgets start from zero`);
        return;
      }
      // A file that is there (its permissions, a link that loops): started anyway, every
      // budget would begin again from zero, and the next write would replace the spend it holds.
      throw new ConfigFileError(this.file, [`the state file cannot be read (${(err as Error).message}), and without it every budget would start from zero: fix it (its permissions), move it away to start budgets from zero, or set STATE_FILE=off`]);
    }
    let read: StateFile | string;
    try {
      read = readStateFile(JSON.parse(text));
    } catch {
      read = 'is not valid JSON';
    }
    if (typeof read === 'string') {
      // Kept aside, not overwritten: an operator can restore the spend it held (a hand edit that
      // renamed a field, or a newer gateway's format, would otherwise be read as no spend and lost).
      // Beside the file itself (behind a link: where it points, on its own disk, not in a release).
      const aside = `${target}.corrupt-${Date.now()}`;
      const kept = await rename(target, aside).then(
        () => `it was moved to ${aside}`,
        () =>
          writeFile(aside, text, { flag: 'wx', mode: 0o600 }).then(
            () => `it was copied to ${aside}`,
            (err: Error) => `it could not be kept aside (${err.message}): the next write replaces it`,
          ),
      );
      warn(`WARNING: the state file ${this.file} ${read}; ${kept}, and budgets start from zero until it is restored`);
      return;
    }
    if (read.unreadable.length > 0) {
      // The rest is read; the file as it was is kept (the next write leaves out what was not read).
      // The text as read (not the file again), written only where nothing is.
      const copy = `${this.file}.corrupt-${Date.now()}`;
      const kept = await writeFile(copy, text, { flag: 'wx', mode: 0o600 }).then(
        () => `the file as it was is kept in ${copy}`,
        (err: Error) => `a copy of the file as it was could not be written (${err.message}): the next write leaves them out`,
      );
      warn(`WARNING: the state file ${this.file} holds entries that cannot be read (no period or no tokens, a field renamed, or a count that is not one) for ${read.unreadable.length} key${read.unreadable.length === 1 ? '' : 's'} (by the start of their digest in the file: ${read.unreadable.slice(0, 5).map(digestStart).join(', ')}${read.unreadable.length > 5 ? ', …' : ''}): their spend starts from zero; ${kept}`);
    }
    this.seen = await fileStamp(this.file);
    this.countedInRedis = read.countedInRedis;
    for (const [digest, spend] of read.entries) {
      this.periodsOf(digest).set(spend.period, spend);
      this.kept.add(digest);
    }
  }

  /**
   * Says at start, not at the first spend, that the state file cannot be written: its folder (or
   * the nearest one there is: a write makes the rest) refuses writes. The write's own message is
   * then not said again until one succeeds.
   */
  private async checkWritable(file: string): Promise<void> {
    const problem = await writeProblem(file);
    if (problem === null) return;
    warn(unwritable(file, problem));
    this.failing = true;
  }

  private periodsOf(digest: string): Map<string, KeySpend> {
    let periods = this.spend.get(digest);
    if (periods === undefined) {
      periods = new Map();
      this.spend.set(digest, periods);
    }
    return periods;
  }

  /** Every key's spend as recorded (by digest), one entry per period: copies, as they are now. */
  entries(): Array<[string, KeySpend]> {
    return [...this.spend].flatMap(([digest, periods]) => [...periods.values()].map((spend): [string, KeySpend] => [digest, { ...spend }]));
  }

  /** The key's spend in the current period (a fresh one when the period turned). */
  current(digest: string, period: BudgetPeriod, now: Date): KeySpend {
    const id = periodId(period, now);
    return this.spend.get(digest)?.get(id) ?? emptySpend(id);
  }

  /** Held by requests in flight. */
  held(digest: string): Charge {
    return this.reserved.get(digest) ?? NO_CHARGE;
  }

  reserve(digest: string, charge: Charge): void {
    if (charge.tokens <= 0 && charge.usd <= 0) return;
    const held = this.reserved.get(digest);
    if (held === undefined) this.reserved.set(digest, { tokens: charge.tokens, usd: charge.usd });
    else {
      held.tokens += charge.tokens;
      held.usd += charge.usd;
    }
  }

  release(digest: string, charge: Charge): void {
    // Kept at zero rather than deleted (one entry per budgeted key): a delete and a set per
    // request would make V8 replace the Map's table every few requests (see slot-list.ts).
    const held = this.reserved.get(digest);
    if (held === undefined) return;
    held.tokens = Math.max(0, held.tokens - charge.tokens);
    held.usd = Math.max(0, held.usd - charge.usd);
  }

  /** `budgeted`: the key has a budget, so its spend must survive a restart (written to the file). */
  add(digest: string, period: BudgetPeriod, spent: Spend, now: Date, budgeted: boolean): void {
    const id = periodId(period, now);
    const periods = this.periodsOf(digest);
    let spend = periods.get(id);
    if (spend === undefined) {
      spend = emptySpend(id);
      periods.set(id, spend);
    }
    spend.requests++;
    spend.tokens += spent.tokens;
    spend.usd += spent.usd;
    const usage = spent.usage;
    if (usage !== null) {
      spend.input_tokens += usage.input;
      spend.output_tokens += usage.output;
      spend.cache_read_tokens += usage.cacheRead;
      spend.cache_write_tokens += usage.cacheWrite;
      spend.reasoning_tokens += usage.reasoning;
    }
    if (spent.unpriced) spend.unpriced_requests++;
    // No budget, no file: a gateway without budgets writes nothing (LOG_FILE=off means no files).
    // A key whose budget a reload removed is left out of the next write.
    const wasKept = this.kept.has(digest);
    if (budgeted) this.kept.add(digest);
    else if (wasKept) this.kept.delete(digest);
    else return;
    this.dirty = true;
    this.timer ??= setTimeout(() => void this.save(), 1000);
  }

  /** Redis counts this spend now (it was migrated): the file says so at its next write, so a restart does not add it again. */
  markCountedInRedis(): void {
    if (this.countedInRedis) return;
    this.countedInRedis = true;
    if (this.spend.size === 0) return;
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
    // Periods that are over are dropped: only current ones count.
    const now = new Date();
    const spend: Record<string, Record<string, KeySpend>> = {};
    for (const [digest, periods] of this.spend) {
      for (const [id, entry] of periods) {
        if (id !== 'total' && id !== periodId(id.startsWith('day:') ? 'day' : 'month', now)) periods.delete(id);
        // Sums of dollars as the gateway rounds each cost (0.0705, not 0.07050000000000001).
        else if (this.kept.has(digest)) (spend[digest] ??= {})[id] = { ...entry, usd: roundUsd(entry.usd) };
      }
    }
    const text = `${JSON.stringify({ version: 2, ...(this.countedInRedis ? { counted_in_redis: true } : {}), spend }, null, 2)}\n`;
    this.writing = this.writing.then(async () => {
      // Renamed over the file a link at its path points to, which keeps the link.
      const target = await writtenPath(file);
      const temporary = `${target}.${process.pid}.tmp`;
      const found = await fileStamp(target);
      if (!this.sharedSaid && this.seen !== null && found !== null && !sameStamp(found, this.seen)) {
        this.sharedSaid = true;
        warn(`WARNING: the state file ${file} was changed by another process since this one last wrote it: gateways sharing one state file overwrite each other's spend (give each instance its own STATE_FILE)`);
      }
      try {
        await makeFolders(dirname(target));
        // Written, flushed to disk, then renamed over the old file: a crash leaves one or the other, whole.
        const handle = await open(temporary, 'w', 0o600);
        try {
          await handle.writeFile(text);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temporary, target);
        this.seen = await fileStamp(target);
        if (this.failing) warn(`the state file ${file} is written again`);
        this.failing = false;
      } catch (err) {
        // Tried again with the next change or at shutdown; a half-written temporary file is not left behind.
        this.dirty = true;
        await unlink(temporary).catch(() => {});
        if (!this.failing) warn(unwritable(file, (err as Error).message));
        this.failing = true;
      }
    });
    return this.writing;
  }
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

/**
 * The file a write of `path` replaces: the file itself, or the one a link there points to (a
 * Capistrano release linking a state file kept outside the releases), even one not there yet. A rename over the
 * link would replace the link with a file, and the next release would start without the spend.
 * Never throws (a write that follows finds what is wrong).
 */
async function writtenPath(path: string): Promise<string> {
  const real = await realpath(path).catch(() => null);
  if (real !== null) return real;
  // Not there, or a link to nothing yet: where the links point, each read from its own real folder
  // (as the system reads a relative link in `current/` where `current` is a link to `releases/5`).
  let at = path;
  for (let hops = 0; hops < 40; hops++) {
    if ((await lstat(at).catch(() => null))?.isSymbolicLink() !== true) return at;
    const link = await readlink(at).catch(() => null);
    if (link === null) return at;
    at = resolve(await realpath(dirname(at)).catch(() => dirname(at)), link);
  }
  return at;
}

/** What tells one version of a file from another: each write makes a new file (renamed over the last). */
interface FileStamp {
  readonly ino: number;
  readonly mtimeMs: number;
  readonly size: number;
}

async function fileStamp(path: string): Promise<FileStamp | null> {
  const found = await stat(path).catch(() => null);
  return found === null ? null : { ino: found.ino, mtimeMs: found.mtimeMs, size: found.size };
}

function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size;
}
