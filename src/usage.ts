/**
 * `npm run usage`: requests, tokens and cost per key and per model from the interactions log.
 *
 *   npm run usage                          this month (UTC), from LOG_FILE or logs/llm_interactions.json
 *   npm run usage -- --since 7d            the last 7 days (also 12h, 30m, or a date: 2026-11-01)
 *   npm run usage -- --since 2026-11-01 --until 2026-12-01 --file /var/log/llm.json
 *   npm run --silent usage -- --all --json every entry, as JSON (--silent: npm's banner off stdout)
 *   npm run usage -- --file logs/llm_interactions.json.2.gz --file logs/llm_interactions.json.1 --file logs/llm_interactions.json
 *                                          rotated files too (each --file is read; .gz ones decompressed)
 */
import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { terminalText } from './observe/terminal.js';
import { addToReport, emptyReport, EntryReader, parseTime, renderReport, reportJson, type Range } from './report/usage-report.js';

const USAGE = 'usage: npm run usage -- [--since <date|7d|12h>] [--until <date|…>] [--all] [--file <log file, .gz too; repeat for several>] [--json]';

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

interface Options {
  readonly range: Range;
  readonly files: readonly string[];
  readonly json: boolean;
}

function readOptions(args: readonly string[], now: number): Options {
  const month = new Date(now);
  let since: number | null = Date.UTC(month.getUTCFullYear(), month.getUTCMonth(), 1);
  let until: number | null = null;
  // As the gateway reads it: spaces around it dropped, nothing (or spaces only) is unset.
  const logFile = process.env.LOG_FILE?.trim();
  const files: string[] = [];
  let json = false;
  let sinceGiven = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const value = (): string => args[++i] ?? fail(`${arg} needs a value`);
    if (arg === '--since' || arg === '--until') {
      const text = value();
      const at = parseTime(text, now);
      if (at === null) fail(`${arg}: "${text}" is not a date (2026-11-01, 2026-11-01T12:00Z) or a time ago (30m, 12h, 7d)`);
      if (arg === '--since') {
        since = at;
        sinceGiven = true;
      }
      else until = at;
    } else if (arg === '--all') {
      since = null;
      sinceGiven = true;
    }
    else if (arg === '--file') files.push(value());
    else if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown option ${arg}`);
  }
  if (since !== null && until !== null && since >= until) {
    fail(sinceGiven ? '--since must be before --until' : '--until is before the start of this month (the default --since): give --since too, or --all');
  }
  if (files.length === 0) {
    const off = logFile?.toLowerCase() === 'off';
    // The default file may hold what was logged before: read, and said, so a stale report is not taken for today's.
    if (off) process.stderr.write('LOG_FILE is off: reading logs/llm_interactions.json, which holds only what was logged there before (give the log with --file)\n');
    files.push(logFile !== undefined && logFile !== '' && !off ? logFile : 'logs/llm_interactions.json');
  }
  // A file named twice would be counted twice.
  const unique = files.filter((file, i) => files.findIndex((other) => resolve(other) === resolve(file)) === i);
  return { range: { since, until }, files: unique, json };
}

async function main(): Promise<void> {
  const options = readOptions(process.argv.slice(2), Date.now());
  const report = emptyReport();
  const reader = new EntryReader(
    (entry) => addToReport(report, entry, options.range),
    () => report.skipped++,
  );
  const missing: string[] = [];
  const noLogs: string[] = [];
  for (const file of options.files) {
    let lines = 0;
    /** Whether its first line that is not blank begins an entry (a log's does, even one whose only entry a crash cut short). */
    let braced: boolean | null = null;
    const [read, foreign, skipped] = [report.read, report.foreign, report.skipped];
    try {
      for await (let line of createInterface({ input: await opened(file), crlfDelay: Infinity })) {
        // A byte order mark an editor saved it with is no part of the first entry.
        if (lines++ === 0 && line.startsWith('\ufeff')) line = line.slice(1);
        if (braced === null && line.trim() !== '') braced = line.startsWith('{');
        reader.line(line);
      }
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      // Right after a rotation (logrotate's nocreate) the current file is made by the next entry.
      if (why === 'ENOENT') {
        missing.push(file);
        continue;
      }
      if (lines === 0) fail(`cannot read ${file} (${terminalText(why)}); give the log file with --file`);
      // A file damaged part-way (a .gz cut short): what came before counts, the rest is one skipped part.
      process.stderr.write(`${file}: stopped reading at a damaged part (${terminalText(why)}); the entries before it are counted\n`);
      report.skipped++;
    }
    // Each file ends its last entry: none runs on into the next file.
    reader.end();
    // Not one entry in it: another file given by mistake (keys.json, the state file: JSON that is no
    // entry; notes, a compressed log without its .gz: text where no entry begins), not a log whose
    // only entry was cut short by a crash.
    if (report.read === read && (report.foreign > foreign || (braced === false && report.skipped > skipped))) noLogs.push(file);
  }
  if (missing.length === options.files.length) fail(`no such file: ${missing.join(', ')} (nothing logged there yet, or the log is elsewhere: give it with --file)`);
  if (noLogs.length > 0 && noLogs.length + missing.length === options.files.length) fail(`no log entry in ${noLogs.join(', ')}: is it the interactions log? (give it with --file)`);
  for (const file of noLogs) process.stderr.write(`${file} holds no log entry (is it the interactions log?): counted as empty\n`);
  for (const file of missing) process.stderr.write(`${file} does not exist (yet: after a rotation, the next entry makes it): counted as empty\n`);
  process.stdout.write(options.json ? `${terminalText(JSON.stringify(reportJson(report, options.range), null, 2))}\n` : renderReport(report, options.range, options.files.join(', ')));
}

/** A log file's text as a stream, decompressed when its name ends in .gz (logrotate's `compress`), once it is open. */
async function opened(file: string): Promise<Readable> {
  const bytes = createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    bytes.once('open', () => resolve());
    bytes.once('error', reject);
  });
  if (!file.endsWith('.gz')) return bytes.setEncoding('utf8');
  const text = createGunzip();
  // Errors of either stream end the reading (the loop above reports them).
  bytes.once('error', (err) => text.destroy(err));
  return bytes.pipe(text).setEncoding('utf8');
}

void main();
