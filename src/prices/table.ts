/**
 * The price table: USD per million tokens, per provider and model, with where each price comes
 * from. The one in the repository (prices.json) is read at start, never fetched; an operator's
 * file (PRICES_FILE) adds or replaces entries. Both are validated alike, every problem reported.
 *
 * Lookup: the model's own entry; else a dated snapshot's model (`gpt-4o-2024-08-06` → `gpt-4o`,
 * `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`, `…-latest` → `…`); else the longest
 * `prefix*` pattern (`*` alone prices every other model of that provider).
 */
import { ConfigFileError, fieldPath, linesOf } from '../config-file-error.js';
import { duplicateKeys } from '../formats/json-keys.js';
import { isRecord } from '../formats/json.js';

/** USD per million tokens of each kind. */
export interface Rates {
  readonly input: number;
  readonly output: number;
  /** Prompt tokens read from the provider's cache. */
  readonly cacheRead: number;
  /** Prompt tokens written to the cache for 5 minutes (the default), and for an hour. */
  readonly cacheWrite: number;
  readonly cacheWrite1h: number;
}

/** Rates that apply to a whole request whose prompt is longer than `aboveInputTokens` (long-context pricing). */
export interface Tier extends Rates {
  readonly aboveInputTokens: number;
}

export interface Price extends Rates {
  /** Ascending by threshold. */
  readonly tiers: readonly Tier[];
  /** The pricing page (or, in an operator's file, any note) and the day it was checked. */
  readonly source: string | null;
  readonly checked: string | null;
}

interface ProviderPrices {
  readonly exact: ReadonlyMap<string, Price>;
  /** Longest prefix first. */
  readonly prefixes: ReadonlyArray<readonly [string, Price]>;
}

/** A model id that names a dated snapshot or an alias of a model: its date or `-latest` suffix. */
const SNAPSHOT_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$/;

export class PriceTable {
  private readonly byProvider: ReadonlyMap<string, ProviderPrices>;

  /** `entries`: provider → model name or `prefix*` → price. */
  constructor(readonly entries: ReadonlyMap<string, ReadonlyMap<string, Price>>) {
    const byProvider = new Map<string, ProviderPrices>();
    for (const [provider, models] of entries) {
      const exact = new Map<string, Price>();
      const prefixes: Array<readonly [string, Price]> = [];
      for (const [name, price] of models) {
        if (name.endsWith('*')) prefixes.push([name.slice(0, -1), price]);
        else exact.set(name, price);
      }
      prefixes.sort((a, b) => b[0].length - a[0].length);
      byProvider.set(provider, { exact, prefixes });
    }
    this.byProvider = byProvider;
  }

  /** The price of `model` at `provider`; null when the table has none. */
  price(provider: string, model: string): Price | null {
    const prices = this.byProvider.get(provider);
    if (prices === undefined) return null;
    const own = prices.exact.get(model);
    if (own !== undefined) return own;
    const base = model.replace(SNAPSHOT_SUFFIX, '');
    if (base !== model) {
      const snapshot = prices.exact.get(base);
      if (snapshot !== undefined) return snapshot;
    }
    for (const [prefix, price] of prices.prefixes) if (model.startsWith(prefix)) return price;
    return null;
  }

  /** This table with `override`'s entries added, replacing those of the same provider and name. */
  with(override: PriceTable): PriceTable {
    const merged = new Map<string, Map<string, Price>>();
    for (const table of [this, override]) {
      for (const [provider, models] of table.entries) {
        const into = merged.get(provider) ?? new Map<string, Price>();
        for (const [name, price] of models) into.set(name, price);
        merged.set(provider, into);
      }
    }
    return new PriceTable(merged);
  }
}

const RATE_FIELDS = { input: 'input', output: 'output', cache_read: 'cacheRead', cache_write: 'cacheWrite', cache_write_1h: 'cacheWrite1h' } as const;
const ENTRY_FIELDS = [...Object.keys(RATE_FIELDS), 'tiers', 'source', 'checked'];
const TIER_FIELDS = ['above_input_tokens', ...Object.keys(RATE_FIELDS)];
const DAY = /^\d{4}-\d{2}-\d{2}$/;

function isRate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1_000_000;
}

/**
 * The rates of an entry or a tier. `input` and `output` are required; a cache read or write
 * without its own rate costs as input (no discount, no surcharge), a 1-hour write as a 5-minute one.
 */
function parseRates(entry: Record<string, unknown>, where: string, problems: string[]): Rates | undefined {
  const before = problems.length;
  for (const field of ['input', 'output'] as const) {
    if (entry[field] === undefined) problems.push(`${where}: "${field}" is required (USD per million tokens)`);
  }
  for (const field of Object.keys(RATE_FIELDS)) {
    if (entry[field] !== undefined && !isRate(entry[field])) problems.push(`${where}: "${field}" must be a number of USD per million tokens, from 0 to 1000000`);
  }
  if (problems.length > before) return undefined;
  const input = entry.input as number;
  const cacheWrite = (entry.cache_write as number | undefined) ?? input;
  return {
    input,
    output: entry.output as number,
    cacheRead: (entry.cache_read as number | undefined) ?? input,
    cacheWrite,
    cacheWrite1h: (entry.cache_write_1h as number | undefined) ?? cacheWrite,
  };
}

function parseTiers(value: unknown, where: string, problems: string[]): Tier[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${where}: "tiers" must be a non-empty array like [{"above_input_tokens": 200000, "input": 6, "output": 22.5}]`);
    return undefined;
  }
  const tiers: Tier[] = [];
  const before = problems.length;
  value.forEach((item: unknown, index) => {
    const at = `${where}: tiers[${index}]`;
    if (!isRecord(item)) {
      problems.push(`${at} must be an object like {"above_input_tokens": 200000, "input": 6, "output": 22.5}`);
      return;
    }
    for (const field of Object.keys(item)) if (!TIER_FIELDS.includes(field)) problems.push(`${at}: unknown field "${field}" (known: ${TIER_FIELDS.join(', ')})`);
    const above = item.above_input_tokens;
    if (typeof above !== 'number' || !Number.isSafeInteger(above) || above <= 0) problems.push(`${at}: "above_input_tokens" must be a positive integer (the prompt size above which these rates apply)`);
    const rates = parseRates(item, at, problems);
    if (rates !== undefined && typeof above === 'number') tiers.push({ aboveInputTokens: above, ...rates });
  });
  for (let i = 1; i < tiers.length; i++) {
    if ((tiers[i] as Tier).aboveInputTokens <= (tiers[i - 1] as Tier).aboveInputTokens) problems.push(`${where}: "tiers" must be in ascending order of "above_input_tokens"`);
  }
  return problems.length > before ? undefined : tiers;
}

/** A real day (YYYY-MM-DD), not after `today` when given: when a price was last checked against its source. */
function isCheckedDay(value: unknown, today: Date | null): value is string {
  if (typeof value !== 'string' || !DAY.test(value)) return false;
  const day = new Date(`${value}T00:00:00Z`);
  return !Number.isNaN(day.getTime()) && day.toISOString().startsWith(value) && (today === null || day.getTime() <= today.getTime());
}

export interface PriceFileOptions {
  /** Known provider names (keys.json's). */
  readonly providers: readonly string[];
  /** Every entry must name its source and the day it was checked (the table in the repository). */
  readonly requireSource: boolean;
  /**
   * Refuse a `checked` day after this one (the test of the table in the repository). Not at run
   * time: a machine whose clock is behind must still start.
   */
  readonly notAfter?: Date;
}

/** Validates a price file's text and builds its table; throws ConfigFileError listing every problem. */
export function parsePriceFile(text: string, file: string, options: PriceFileOptions): PriceTable {
  let root: unknown;
  // A UTF-8 byte order mark (some Windows editors write one) is not part of the JSON, as in keys.json.
  const json = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    root = JSON.parse(json);
  } catch (err) {
    throw new ConfigFileError(file, [`not valid JSON (${(err as Error).message})`]);
  }
  // JSON keeps the last of a name written twice, silently: a negotiated price would vanish unseen.
  const raw = Buffer.from(json, 'utf8');
  const doubled = duplicateKeys(raw).map((twice) => `"${fieldPath([...twice.path, twice.key])}" is written twice ${linesOf(raw, twice)}; keep one`);
  return buildPriceTable(root, file, options, doubled);
}

/** `problems`: found in the file's text already, reported with the rest. */
export function buildPriceTable(root: unknown, file: string, options: PriceFileOptions, problems: string[] = []): PriceTable {
  const example = '{"prices": {"openai": {"gpt-5": {"input": 1.25, "cache_read": 0.125, "output": 10, "source": "https://openai.com/api/pricing/", "checked": "2026-12-01"}}}}';
  if (!isRecord(root) || !isRecord(root.prices)) throw new ConfigFileError(file, [`the file must hold {"prices": {provider: {model: price}}}, like ${example}`]);
  for (const field of Object.keys(root)) if (field !== 'prices') problems.push(`unknown top-level field "${field}" (expected only "prices")`);
  const today = options.notAfter ?? null;
  const entries = new Map<string, Map<string, Price>>();
  for (const [provider, models] of Object.entries(root.prices)) {
    if (!options.providers.includes(provider)) {
      problems.push(`unknown provider "${provider}" (known: ${options.providers.join(', ')})`);
      continue;
    }
    if (!isRecord(models) || Object.keys(models).length === 0) {
      problems.push(`"${provider}" must be an object of model names (or "prefix*" patterns) to prices`);
      continue;
    }
    const prices = new Map<string, Price>();
    for (const [name, entry] of Object.entries(models)) {
      const where = `${provider} "${name}"`;
      if (name === '' || name.slice(0, -1).includes('*')) problems.push(`${where}: a model name or a "prefix*" pattern ("*" only at the end)`);
      if (!isRecord(entry)) {
        problems.push(`${where} must be an object like {"input": 1.25, "output": 10, "source": "…", "checked": "2026-12-01"}`);
        continue;
      }
      const before = problems.length;
      for (const field of Object.keys(entry)) if (!ENTRY_FIELDS.includes(field)) problems.push(`${where}: unknown field "${field}" (known: ${ENTRY_FIELDS.join(', ')})`);
      const rates = parseRates(entry, where, problems);
      const tiers = parseTiers(entry.tiers, where, problems);
      const { source, checked } = entry;
      if (source !== undefined || options.requireSource) {
        if (typeof source !== 'string' || source.trim() === '') problems.push(`${where}: "source" must name where the price comes from (the provider's pricing page)`);
      }
      if (checked !== undefined || options.requireSource) {
        if (!isCheckedDay(checked, today)) problems.push(`${where}: "checked" must be the day the price was checked against its source, as YYYY-MM-DD${today === null ? '' : ' (not in the future)'}`);
      }
      if (rates === undefined || tiers === undefined || problems.length > before) continue;
      prices.set(name, { ...rates, tiers, source: (source as string | undefined) ?? null, checked: (checked as string | undefined) ?? null });
    }
    entries.set(provider, prices);
  }
  if (problems.length > 0) throw new ConfigFileError(file, problems);
  return new PriceTable(entries);
}
