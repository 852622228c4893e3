import { isRecord } from './json.js';

/**
 * Token usage in one shape, whatever API reported it: what limits, budgets, metrics and the log
 * use. Each API's module reads its own usage object into this one.
 *
 * - `input`: prompt tokens neither read from nor written to a cache (the base input rate);
 * - `cacheRead`, `cacheWrite`: prompt tokens read from / written to the provider's cache;
 * - `cacheWrite1h`: the part of `cacheWrite` kept for an hour (Anthropic bills it higher than 5 minutes);
 * - `output`: every generated token, reasoning included (billed as output);
 * - `reasoning`: the part of `output` spent reasoning, where the provider says.
 */
export interface Usage {
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  readonly cacheWrite: number;
  readonly cacheWrite1h: number;
  readonly reasoning: number;
}

/** The usage field of a log entry. */
export interface LoggedUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
}

/**
 * A token count from a provider's JSON: anything but a non-negative finite number (a string,
 * -1e9, 1e999) counts as 0, so no provider can move a budget backwards or put Infinity into a
 * metric.
 */
export function tokenCount(value: unknown): number {
  // At most a trillion: past any real request, and still an integer every store can add.
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.min(1e12, Math.floor(value)) : 0;
}

/**
 * Whether a provider's main count (prompt or output tokens) can be read: absent, or a
 * non-negative finite number. One that is there but cannot (a string, an object, -1e9, 1e999)
 * makes the whole usage unreadable, estimated as if the provider had sent none: read as 0, it
 * would let any answer through a token budget for free.
 */
function readableCount(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'number' && Number.isFinite(value) && value >= 0);
}

/**
 * Whether a provider's usage object can be read: its two main counts each readable
 * (readableCount), and not both missing; with `promptRequired` (an API whose usage always has
 * it), the prompt's there. An object without them (`"usage": {}`) says nothing of what the
 * answer used: read as zeros, it would let the answer through a token budget free.
 */
export function readableCounts(prompt: unknown, output: unknown, promptRequired: boolean): boolean {
  return readableCount(prompt) && readableCount(output) && (prompt != null || (!promptRequired && output != null));
}

/** Every prompt token, cached or not. */
export function promptTokens(usage: Usage): number {
  return usage.input + usage.cacheRead + usage.cacheWrite;
}

/** What a request costs against tokens-per-minute limits and token budgets. */
export function totalTokens(usage: Usage): number {
  return promptTokens(usage) + usage.output;
}

export function toLoggedUsage(usage: Usage): LoggedUsage {
  return {
    input_tokens: usage.input,
    output_tokens: usage.output,
    cache_read_tokens: usage.cacheRead,
    cache_write_tokens: usage.cacheWrite,
    reasoning_tokens: usage.reasoning,
  };
}

/** The most of a provider's usage object the log keeps as it is: members and values in all, and levels. */
const USAGE_KEPT_VALUES = 64;
const USAGE_KEPT_LEVELS = 4;

/**
 * A provider's own usage object as the log keeps it (beside a translated answer): itself, where it
 * is what usage objects are (a few counts, a detail or two a level in); else its top-level numbers.
 * The log indents it whole, and a provider's usage of a million values nested deep held every
 * request's loop for seconds.
 */
export function keptUsage(raw: unknown): unknown {
  if (fits(raw, USAGE_KEPT_LEVELS, { left: USAGE_KEPT_VALUES })) return raw;
  if (!isRecord(raw)) return null;
  const counts: Record<string, number> = {};
  let kept = 0;
  for (const key in raw) {
    const value = raw[key];
    if (typeof value !== 'number') continue;
    counts[key] = value;
    if (++kept === USAGE_KEPT_VALUES) break;
  }
  return counts;
}

/** Whether a value holds no more than `budget.left` values and `levels` levels; stops as soon as it does not. */
function fits(value: unknown, levels: number, budget: { left: number }): boolean {
  if (--budget.left < 0) return false;
  if (typeof value !== 'object' || value === null) return true;
  if (levels === 0) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (!fits(item, levels - 1, budget)) return false;
    return true;
  }
  for (const key in value) if (!fits((value as Record<string, unknown>)[key], levels - 1, budget)) return false;
  return true;
}

