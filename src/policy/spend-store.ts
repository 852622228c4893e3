/**
 * The state file (STATE_FILE): every key's spend in its period, kept across restarts so a budget
 * is not reset by one; read at start, written at most once a second and at exit, by renaming a
 * whole new file over the last (a reader never sees half of one).
 */
import { lstat, open, readFile, readlink, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigFileError } from '../config-file-error.js';
import { makeFolders } from '../folders.js';
import { warn } from '../observe/warn.js';
import { roundUsd } from '../prices/cost.js';
import { writeProblem } from '../write-problem.js';
import type { BudgetPeriod } from './keys.js';
import { NO_CHARGE, periodId, type Charge, type Spend } from './limits.js';
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
