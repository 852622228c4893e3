/**
 * The prices a process uses: the table in the repository with the operator's PRICES_FILE over
 * it, replaced when the keys are reloaded. A model without a price is reported once per model
 * on stderr (its requests log `cost_usd: null` and are counted in metrics).
 */
import { readFile } from 'node:fs/promises';
import { ConfigFileError } from '../config-file-error.js';
import { warn } from '../observe/warn.js';
import builtIn from './prices.json' with { type: 'json' };
import { buildPriceTable, parsePriceFile, type Price, type PriceTable } from './table.js';

/** Where the table in the repository lives, for its problems (a test keeps it free of them). */
export const BUILT_IN_PRICES = 'src/prices/prices.json';

/** The table in the repository, validated as strictly as any: every entry names its source and when it was checked. */
export function builtInPrices(providers: readonly string[]): PriceTable {
  return buildPriceTable(builtIn, BUILT_IN_PRICES, { providers, requireSource: true });
}

/** The table in use: the repository's, with the override file's text (null: none) over it. */
export function pricesWith(overrideText: string | null, file: string | null, providers: readonly string[]): PriceTable {
  const table = builtInPrices(providers);
  if (overrideText === null || file === null) return table;
  return table.with(parsePriceFile(overrideText, file, { providers, requireSource: false }));
}

/** Reads PRICES_FILE (null: none); throws ConfigFileError listing every problem. */
export async function loadPrices(file: string | null, providers: readonly string[]): Promise<{ table: PriceTable; text: string | null }> {
  if (file === null) return { table: pricesWith(null, null, providers), text: null };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigFileError(file, [code === 'ENOENT' ? 'file not found (PRICES_FILE names it)' : `cannot be read (${(err as Error).message})`]);
  }
  return { table: pricesWith(text, file, providers), text };
}

export class Prices {
  /** `provider\u0001model` already reported as unpriced. */
  private readonly reported = new Set<string>();

  constructor(private table: PriceTable) {}

  replace(table: PriceTable): void {
    this.table = table;
    this.reported.clear();
  }

  price(provider: string, model: string): Price | null {
    return this.table.price(provider, model);
  }

  /** A request on a model without a price used tokens: said once per model (until the prices are reloaded). */
  unpriced(provider: string, model: string): void {
    const id = `${provider}\u0001${model}`;
    if (this.reported.has(id) || this.reported.size >= 1000) return;
    this.reported.add(id);
    // Quoted as JSON: a client chose the name, and it must not write lines of its own to stderr.
    warn(`no price for ${provider} model ${JSON.stringify(model)}: its tokens count nothing in dollars (a request it answered logs cost_usd null; a key with a budget in USD refuses it); add its price with PRICES_FILE`);
  }
}
