/**
 * `npm run usage`: requests, tokens and cost per key and per model from the interactions log.
 *
 *   npm run usage                          this month (UTC), from LOG_FILE or logs/llm_interactions.json
 *   npm run usage -- --since 7d            the last 7 days (also 12h, 30m, or a date: 2026-11-01)
 *   npm run usage -- --since 2026-11-01 --until 2026-12-01 --file /var/log/llm.json
 *   npm run --silent usage -- --all --json every entry, as JSON (--silent: npm's banner off stdout)
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { addToReport, emptyReport, EntryReader, parseTime, renderReport, reportJson, type Range } from './report/usage-report.js';

const USAGE = 'usage: npm run usage -- [--since <date|7d|12h>] [--until <date|…>] [--all] [--file <log file>] [--json]';

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

interface Options {
  readonly range: Range;
  readonly file: string;
  readonly json: boolean;
}

function readOptions(args: readonly string[], now: number): Options {
  const month = new Date(now);
  let since: number | null = Date.UTC(month.getUTCFullYear(), month.getUTCMonth(), 1);
  let until: number | null = null;
  const logFile = process.env.LOG_FILE;
  let file = logFile !== undefined && logFile !== '' && logFile.toLowerCase() !== 'off' ? logFile : 'logs/llm_interactions.json';
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const value = (): string => args[++i] ?? fail(`${arg} needs a value`);
    if (arg === '--since' || arg === '--until') {
      const text = value();
      const at = parseTime(text, now);
      if (at === null) fail(`${arg}: "${text}" is not a date (2026-11-01, 2026-11-01T12:00Z) or a time ago (30m, 12h, 7d)`);
      if (arg === '--since') since = at;
      else until = at;
    } else if (arg === '--all') since = null;
    else if (arg === '--file') file = value();
    else if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown option ${arg}`);
  }
  if (since !== null && until !== null && since >= until) fail('--since must be before --until');
  return { range: { since, until }, file, json };
}

async function main(): Promise<void> {
  const options = readOptions(process.argv.slice(2), Date.now());
  const report = emptyReport();
  const reader = new EntryReader(
    (entry) => addToReport(report, entry, options.range),
    () => report.skipped++,
  );
  const input = createReadStream(options.file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', reject);
  });
  try {
    await opened;
    for await (const line of createInterface({ input, crlfDelay: Infinity })) reader.line(line);
  } catch (err) {
    fail(`cannot read ${options.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the log file with --file`);
  }
  reader.end();
  process.stdout.write(options.json ? `${JSON.stringify(reportJson(report, options.range), null, 2)}\n` : renderReport(report, options.range, options.file));
}

void main();
