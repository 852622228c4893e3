/**
 * The operator's view of spend: the interactions log read back, entry by entry, into requests,
 * tokens and USD per key and per model for a time range, rendered as tables a person reads. Pure:
 * lines in, text out (usage.ts reads the file and the command line).
 */
import { isRecord } from '../formats/json.js';
import { formatUsd } from '../prices/cost.js';

/** One row of a table: what a key (or a model) did in the range. */
export interface UsageRow {
  requests: number;
  /** Answered with a status of 400 or more. */
  errors: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
  /** What adding costs to `costUsd` lost to rounding so far (Kahan's sum: thousands of small costs must add up to what each row shows). */
  costCarry: number;
  /** Requests whose cost is unknown (a model without a price, or an entry from before costs were logged): `costUsd` leaves them out. */
  unpriced: number;
}

export interface UsageReport {
  readonly byKey: Map<string, UsageRow>;
  readonly byModel: Map<string, UsageRow>;
  readonly total: UsageRow;
  /** Entries in the range, and text that was not a whole entry (a torn write, another program's output). */
  entries: number;
  skipped: number;
  /** Entries read, in the range or not. */
  read: number;
  /** Whole JSON values that are no entry (no timestamp): a file of them and no entry is another file given by mistake. */
  foreign: number;
}

export interface Range {
  /** Milliseconds since the epoch; null: unbounded. */
  readonly since: number | null;
  readonly until: number | null;
}

function emptyRow(): UsageRow {
  return { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, costUsd: 0, costCarry: 0, unpriced: 0 };
}

export function emptyReport(): UsageReport {
  return { byKey: new Map(), byModel: new Map(), total: emptyRow(), entries: 0, skipped: 0, read: 0, foreign: 0 };
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

const INVISIBLE = /[\\\u0000-\u001f\u007f-\u00a0\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\u{e0000}-\u{e0fff}]/gu;

/** A name as a terminal may show it: a client chose the model name, and control characters would draw on the screen. */
function printable(name: string): string {
  // Control characters, and the ones that reorder or hide what a terminal shows (bidi marks,
  // overrides and isolates, zero-width and invisible letters, variation selectors, line and
  // paragraph separators, tags); a backslash too, so that a name spelling `\u200b` is not shown as one holding it.
  return name.replace(INVISIBLE, (c) => (c === '\\' ? '\\\\' : `\\u${c.length === 1 ? c.charCodeAt(0).toString(16).padStart(4, '0') : `{${(c.codePointAt(0) as number).toString(16)}}`}`));
}

function addTo(rows: Map<string, UsageRow>, name: string, entry: Record<string, unknown>): void {
  let row = rows.get(name);
  if (row === undefined) {
    row = emptyRow();
    rows.set(name, row);
  }
  addEntry(row, entry);
}

function addEntry(row: UsageRow, entry: Record<string, unknown>): void {
  row.requests++;
  if (num(entry.status) >= 400) row.errors++;
  const usage = isRecord(entry.usage) ? entry.usage : {};
  row.inputTokens += num(usage.input_tokens);
  row.outputTokens += num(usage.output_tokens);
  row.cacheReadTokens += num(usage.cache_read_tokens);
  row.cacheWriteTokens += num(usage.cache_write_tokens);
  // null: a model without a price; absent: an entry written before the gateway logged costs.
  if (typeof entry.cost_usd !== 'number') row.unpriced++;
  else {
    const added = num(entry.cost_usd) - row.costCarry;
    const sum = row.costUsd + added;
    row.costCarry = sum - row.costUsd - added;
    row.costUsd = sum;
  }
}

/** Adds one log entry (parsed) if it falls in the range. */
export function addToReport(report: UsageReport, entry: unknown, range: Range): void {
  if (!isRecord(entry) || typeof entry.timestamp !== 'string') {
    report.skipped++;
    report.foreign++;
    return;
  }
  const at = Date.parse(entry.timestamp);
  if (Number.isNaN(at)) {
    report.skipped++;
    return;
  }
  report.read++;
  if ((range.since !== null && at < range.since) || (range.until !== null && at >= range.until)) return;
  report.entries++;
  // Keys by their name (or digest label): the virtual key itself is a credential, not for a terminal.
  // Names as logged (the JSON report escapes them its own way); the table makes them printable.
  const key = typeof entry.key_name === 'string' ? entry.key_name : '(no valid key)';
  const upstream = isRecord(entry.upstream) ? entry.upstream : {};
  const model = typeof upstream.model === 'string' ? upstream.model : typeof entry.model === 'string' ? entry.model : '(none)';
  const provider = typeof entry.provider === 'string' ? entry.provider : '(none)';
  addTo(report.byKey, key, entry);
  addTo(report.byModel, `${provider}/${model}`, entry);
  addEntry(report.total, entry);
}

/**
 * Splits the log's text into entries, line by line: a pretty-printed entry ends with a line that
 * is `}` alone (nested braces are indented), a one-line entry (LOG_CONSOLE=json) is its own line.
 */
export class EntryReader {
  private lines: string[] = [];

  constructor(private readonly onEntry: (entry: unknown) => void, private readonly onSkipped: () => void) {}

  line(line: string): void {
    // Only an entry's own braces are at the start of a line: nested ones are indented.
    if (line.startsWith('{')) {
      if (this.lines.length > 0) this.onSkipped(); // the entry before it was cut short
      this.lines = [];
      if (line !== '{' && line.endsWith('}')) this.parse(line);
      else this.lines.push(line);
      return;
    }
    if (this.lines.length === 0) {
      if (line.trim() !== '') this.onSkipped();
      return;
    }
    this.lines.push(line);
    if (line === '}') {
      const text = this.lines.join('\n');
      this.lines = [];
      this.parse(text);
    }
  }

  end(): void {
    if (this.lines.length > 0) this.onSkipped();
    this.lines = [];
  }

  private parse(text: string): void {
    let entry: unknown;
    try {
      entry = JSON.parse(text);
    } catch {
      this.onSkipped();
      return;
    }
    this.onEntry(entry);
  }
}

const COLUMNS = ['requests', 'errors', 'input tokens', 'output tokens', 'cache read', 'cache write', 'cost (USD)'] as const;

function integer(value: number): string {
  return value.toLocaleString('en-US');
}

function cost(row: UsageRow): string {
  const text = row.costUsd === 0 && row.requests > 0 && row.unpriced === row.requests ? '?' : formatUsd(row.costUsd);
  return row.unpriced > 0 ? `${text} + ${row.unpriced} unpriced` : text;
}

function cells(row: UsageRow): string[] {
  return [integer(row.requests), integer(row.errors), integer(row.inputTokens), integer(row.outputTokens), integer(row.cacheReadTokens), integer(row.cacheWriteTokens), cost(row)];
}

/** A table with its first column left-aligned, the numbers right-aligned; rows by cost, then requests. */
function table(title: string, rows: Map<string, UsageRow>, total: UsageRow): string {
  const sorted = [...rows].sort((a, b) => b[1].costUsd - a[1].costUsd || b[1].requests - a[1].requests || a[0].localeCompare(b[0]));
  const body = [[title, ...COLUMNS], ...sorted.map(([name, row]) => [printable(name), ...cells(row)]), ['total', ...cells(total)]];
  const widths = (body[0] as string[]).map((_, i) => Math.max(...body.map((row) => (row[i] as string).length)));
  const render = (row: string[]): string => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ').trimEnd();
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  const lines = body.map(render);
  return [lines[0], rule, ...lines.slice(1, -1), rule, lines.at(-1)].join('\n');
}

function describeRange(range: Range): string {
  const at = (ms: number | null): string => (ms === null ? '' : new Date(ms).toISOString().replace('.000Z', 'Z'));
  if (range.since === null && range.until === null) return 'all time';
  if (range.until === null) return `from ${at(range.since)}`;
  if (range.since === null) return `until ${at(range.until)}`;
  return `from ${at(range.since)} to ${at(range.until)}`;
}

export function renderReport(report: UsageReport, range: Range, file: string): string {
  const head = `${report.entries.toLocaleString('en-US')} request${report.entries === 1 ? '' : 's'} in ${file}, ${describeRange(range)}${report.skipped > 0 ? ` (${report.skipped} unreadable part${report.skipped === 1 ? '' : 's'} skipped)` : ''}`;
  if (report.entries === 0) return `${head}\n`;
  const notes = report.total.unpriced > 0 ? '\n"unpriced": requests on a model without a price (add it with PRICES_FILE); their cost is not in the sums.\n' : '';
  return `${head}\n\n${table('key', report.byKey, report.total)}\n\n${table('provider/model', report.byModel, report.total)}\n${notes}`;
}

/** The report as JSON, for scripts. */
export function reportJson(report: UsageReport, range: Range): unknown {
  const rows = (map: Map<string, UsageRow>): Record<string, unknown> => Object.fromEntries([...map].map(([name, row]) => [name, rowJson(row)]));
  return {
    since: range.since === null ? null : new Date(range.since).toISOString(),
    until: range.until === null ? null : new Date(range.until).toISOString(),
    entries: report.entries,
    skipped: report.skipped,
    by_key: rows(report.byKey),
    by_model: rows(report.byModel),
    total: rowJson(report.total),
  };
}

/** A row under the names the log and `GET /v1/usage` use. */
function rowJson(row: UsageRow): Record<string, number> {
  return {
    requests: row.requests,
    errors: row.errors,
    input_tokens: row.inputTokens,
    output_tokens: row.outputTokens,
    cache_read_tokens: row.cacheReadTokens,
    cache_write_tokens: row.cacheWriteTokens,
    cost_usd: Number(row.costUsd.toFixed(10)),
    unpriced_requests: row.unpriced,
  };
}

/** The earliest time a Date holds (100,000,000 days before 1970). */
const EARLIEST_DATE = -8.64e15;

/**
 * A time on the command line: an ISO date or time (`2026-12-01`, `2026-12-01T12:00Z`), or a
 * time before `now` (`30m`, `12h`, `7d`). null: not a time.
 */
export function parseTime(text: string, now: number): number | null {
  const relative = /^(\d+)([mhd])$/.exec(text);
  if (relative !== null) {
    const at = now - Number(relative[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 'm' | 'h' | 'd'];
    return at >= EARLIEST_DATE ? at : null;
  }
  const date = /^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(text);
  if (date === null) return null;
  // The log is in UTC: a time without a zone is read as UTC too.
  const at = Date.parse(`${date[1]}${date[2] ?? 'T00:00'}${date[5] ?? 'Z'}`);
  // 2026-02-31 is no day (Date would make it March 3rd).
  if (Number.isNaN(at) || new Date(Date.parse(`${date[1]}T00:00:00Z`)).toISOString().slice(0, 10) !== date[1]) return null;
  return at;
}
