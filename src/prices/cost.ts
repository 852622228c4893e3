/**
 * What a request cost in USD, from the one normalised usage and the price of the model that
 * served it. Reasoning tokens are inside `output` (billed as output); cache reads and writes at
 * their own rates; a prompt longer than a tier's threshold puts the whole request at that tier's
 * rates (as Anthropic and OpenAI bill long context).
 */
import { promptTokens, type Usage } from '../formats/usage.js';
import type { Price, Rates } from './table.js';

/** The rates for a request whose prompt has `prompt` tokens. */
function ratesFor(price: Price, prompt: number): Rates {
  let rates: Rates = price;
  for (const tier of price.tiers) if (prompt > tier.aboveInputTokens) rates = tier;
  return rates;
}

/**
 * Dollars to ten decimal places: a token of the cheapest model is still visible, float noise is
 * not. Within 1e-10 of `Number(value.toFixed(10))` (they differ on halves at the tenth decimal),
 * at a twentieth of its cost: it runs for every request.
 */
export function roundUsd(value: number): number {
  return Math.round(value * 1e10) / 1e10;
}

function usdFromPerMillion(perMillion: number): number {
  return roundUsd(perMillion / 1_000_000);
}

export function costUsd(price: Price, usage: Usage): number {
  const rates = ratesFor(price, promptTokens(usage));
  const write1h = Math.min(usage.cacheWrite1h, usage.cacheWrite);
  return usdFromPerMillion(
    usage.input * rates.input +
      usage.cacheRead * rates.cacheRead +
      (usage.cacheWrite - write1h) * rates.cacheWrite +
      write1h * rates.cacheWrite1h +
      usage.output * rates.output,
  );
}

/** A request before (or without) its usage: `prompt` tokens at the input rate and `output` tokens. */
export function estimateUsd(price: Price, prompt: number, output: number): number {
  const rates = ratesFor(price, prompt);
  return usdFromPerMillion(prompt * rates.input + output * rates.output);
}

/** Dollars for people: cents above a cent, two significant digits below (never an exponent). */
export function formatUsd(value: number): string {
  if (value === 0) return '$0';
  if (value >= 0.01) return `$${value.toFixed(2)}`;
  const decimals = Math.min(20, 1 - Math.floor(Math.log10(value)));
  return `$${value.toFixed(decimals).replace(/0+$/, '')}`;
}

/** Dollars as a plain decimal (a header, a table): ten places at most, never an exponent. */
export function decimalUsd(value: number): string {
  const text = value.toFixed(10).replace(/0+$/, '');
  return text.endsWith('.') ? text.slice(0, -1) : text;
}
