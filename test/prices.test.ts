/**
 * Prices and cost without a network: the table in the repository (every entry sourced and dated),
 * snapshot resolution, the override file, cost arithmetic for every usage shape, USD budgets and
 * their persistence, and the usage report over a log.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigFileError } from '../src/config-file-error.js';
import { chatUsage } from '../src/formats/chat/usage.js';
import { messagesStreamWatch } from '../src/formats/messages/stream.js';
import { messagesUsage } from '../src/formats/messages/usage.js';
import { responsesUsage } from '../src/formats/responses/usage.js';
import type { Usage } from '../src/formats/usage.js';
import { LimitState, type KeyLimits, type Spend } from '../src/policy/limits.js';
import { SpendStore } from '../src/policy/spend-store.js';
import { costUsd, decimalUsd, estimateUsd, formatUsd } from '../src/prices/cost.js';
import { BUILT_IN_PRICES, builtInPrices, pricesWith } from '../src/prices/prices.js';
import { buildPriceTable, parsePriceFile, type Price, type PriceTable } from '../src/prices/table.js';
import { registry } from '../src/providers/index.js';
import { addToReport, emptyReport, EntryReader, parseTime, renderReport, reportJson } from '../src/report/usage-report.js';
import { ROOT, tempDir } from './support/gateway.js';

const PROVIDERS = Object.keys(registry);
const table = builtInPrices(PROVIDERS);

function price(provider: string, model: string): Price {
  const found = table.price(provider, model);
  assert.ok(found !== null, `${provider} ${model} has a price`);
  return found;
}

function problems(text: string, requireSource = false): string[] {
  try {
    parsePriceFile(text, 'prices.json', { providers: PROVIDERS, requireSource });
  } catch (err) {
    assert.ok(err instanceof ConfigFileError);
    return err.problems;
  }
  assert.fail('expected problems');
}

const usage = (fields: Partial<Usage>): Usage => ({ input: 0, output: 0, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0, ...fields });
/** Dollars as the gateway rounds them: ten decimal places. */
const usd = (perMillion: number): number => Number((perMillion / 1e6).toFixed(10));

describe('the price table in the repository', () => {
  const file = JSON.parse(readFileSync(join(ROOT, BUILT_IN_PRICES), 'utf8')) as { prices: Record<string, Record<string, Record<string, unknown>>> };
  const sites: Record<string, RegExp> = {
    openai: /^https:\/\/(developers|platform)\.openai\.com\//,
    anthropic: /^https:\/\/(platform\.claude\.com|docs\.claude\.com|docs\.anthropic\.com)\//,
    deepseek: /^https:\/\/api-docs\.deepseek\.com\//,
  };

  it('names, for every entry, its source (the provider\'s pricing page) and the day it was checked', () => {
    let count = 0;
    for (const [provider, models] of Object.entries(file.prices)) {
      for (const [model, entry] of Object.entries(models)) {
        count++;
        assert.equal(typeof entry.source, 'string', `${provider} ${model}: source`);
        assert.match(String(entry.checked), /^\d{4}-\d{2}-\d{2}$/, `${provider} ${model}: checked`);
        const site = sites[provider];
        if (site !== undefined) assert.match(String(entry.source), site, `${provider} ${model}: the provider's own page`);
      }
    }
    assert.ok(count > 60, `${count} entries`);
  });

  it('refuses an entry without its source or its date (the same check the gateway runs at start)', () => {
    const strict = (entry: Record<string, unknown>): string[] => problems(JSON.stringify({ prices: { openai: { 'gpt-x': entry } } }), true);
    assert.match(strict({ input: 1, output: 2, checked: '2026-12-01' }).join(), /openai "gpt-x": "source" must name where the price comes from/);
    assert.match(strict({ input: 1, output: 2, source: 'https://openai.com/api/pricing/' }).join(), /"checked" must be the day the price was checked/);
    assert.match(strict({ input: 1, output: 2, source: 'x', checked: '2026-02-30' }).join(), /"checked"/);
    // The table itself passes the same validation, and no entry is dated after today.
    assert.doesNotThrow(() => buildPriceTable(file, BUILT_IN_PRICES, { providers: PROVIDERS, requireSource: true, notAfter: new Date() }));
    const future = { prices: { openai: { 'gpt-x': { input: 1, output: 2, source: 'x', checked: '2999-01-01' } } } };
    assert.throws(() => buildPriceTable(future, 'p.json', { providers: PROVIDERS, requireSource: true, notAfter: new Date() }), /not in the future/);
    // At run time a clock that is behind the table's dates must not stop the gateway.
    assert.doesNotThrow(() => buildPriceTable(future, 'p.json', { providers: PROVIDERS, requireSource: true }));
  });

  it('covers the current models of OpenAI, Anthropic and DeepSeek', () => {
    const current: Record<string, string[]> = {
      openai: ['gpt-6.2-sol', 'gpt-6.1-terra', 'gpt-6-luna', 'gpt-5.6-terra', 'gpt-5.5', 'gpt-5.4-mini', 'gpt-5.2', 'gpt-5.1-codex', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-4.1', 'gpt-4o', 'gpt-4o-mini', 'o3', 'o4-mini'],
      anthropic: ['claude-fable-5-1', 'claude-opus-5-5', 'claude-sonnet-5-5', 'claude-haiku-5-5', 'claude-opus-4-5', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-sonnet-4'],
      deepseek: ['deepseek-flash', 'deepseek-v4-pro'],
    };
    for (const [provider, models] of Object.entries(current)) for (const model of models) price(provider, model);
  });

  it('prices the aliases clients send at their model\'s rates', () => {
    const rates = (p: Price) => ({ ...p, source: null, checked: null });
    assert.deepEqual(rates(price('openai', 'gpt-5.6')), rates(price('openai', 'gpt-5.6-sol')), 'OpenAI routes gpt-5.6 to GPT-5.6 Sol');
    for (const legacy of ['deepseek-v4-flash', 'deepseek-v4-flash-vision-exp']) {
      assert.deepEqual(rates(price('deepseek', legacy)), rates(price('deepseek', 'deepseek-flash')), `DeepSeek serves and bills ${legacy} as Flash`);
    }
  });

  it('prices every model the README and the examples send (a key with a budget in USD refuses an unpriced one)', () => {
    const providerOf = (model: string): string | null => (/^deepseek-/.test(model) ? 'deepseek' : /^claude-/.test(model) ? 'anthropic' : /^(?:gpt-|chatgpt-|o\d)/.test(model) ? 'openai' : null);
    const unpriced: string[] = [];
    for (const name of ['README.md', 'examples/curl.sh', 'examples/check-routing.mjs', 'examples/ask.mjs']) {
      const text = readFileSync(join(ROOT, name), 'utf8');
      // A request's model (`"model": "…"`, `model: '…'`, `model="…"`, a provider's default), and what a model_map sends.
      const sent = [...text.matchAll(/\b(?:model|openai|anthropic|deepseek)["']?\s*[:=]\s*["']([^"'*\s]+)["']/g)].map((match) => match[1] as string);
      for (const map of text.matchAll(/"model_map":\s*(\{[^}]*\})/g)) sent.push(...Object.values(JSON.parse(map[1] as string) as Record<string, string>));
      for (const model of sent) {
        const provider = providerOf(model);
        if (provider !== null && table.price(provider, model) === null) unpriced.push(`${name}: ${provider} ${model}`);
      }
    }
    assert.deepEqual(unpriced, []);
  });

  it('prices every model of the built-in mock at nothing', () => {
    assert.equal(costUsd(price('mock', 'anything-at-all'), usage({ input: 1e6, output: 1e6 })), 0);
  });

  it('holds rates that are sane: output dearer than input, cache reads cheaper, 1-hour writes dearer than 5-minute ones', () => {
    for (const [provider, models] of Object.entries(file.prices)) {
      if (provider === 'mock') continue;
      for (const model of Object.keys(models)) {
        const p = price(provider, model);
        assert.ok(p.output >= p.input, `${provider} ${model}: output ${p.output} < input ${p.input}`);
        assert.ok(p.cacheRead <= p.input, `${provider} ${model}: cache read`);
        assert.ok(p.cacheWrite1h >= p.cacheWrite, `${provider} ${model}: cache writes`);
        assert.ok(p.input > 0 && p.input < 1000, `${provider} ${model}: input per million tokens, not per token`);
        for (const tier of p.tiers) assert.ok(tier.input >= p.input && tier.output >= p.output, `${provider} ${model}: a long-context tier costs more`);
      }
    }
    assert.deepEqual(implausibleRates(table), []);
  });

  it('would catch an entry priced per token (or per thousand tokens) instead of per million', () => {
    const misread = (provider: string, model: string, divisor: number): PriceTable => {
      const entry = { ...(file.prices[provider]?.[model] as Record<string, unknown>) };
      for (const field of ['input', 'output', 'cache_read', 'cache_write', 'cache_write_1h']) if (typeof entry[field] === 'number') entry[field] = (entry[field] as number) / divisor;
      delete entry.tiers;
      return table.with(buildPriceTable({ prices: { [provider]: { [model]: entry } } }, 'misread.json', { providers: PROVIDERS, requireSource: false }));
    };
    assert.match(implausibleRates(misread('openai', 'o1-pro', 1e6)).join('\n'), /openai o1-pro: input 0\.00015 \$\/M/, 'the dearest model, per token');
    assert.match(implausibleRates(misread('anthropic', 'claude-haiku-5-5', 1e5)).join('\n'), /anthropic claude-haiku-5-5: input/, 'the cheapest, 100,000x off');
    assert.match(implausibleRates(misread('openai', 'gpt-4o', 1000)).join('\n'), /openai gpt-4o: input 0\.0025 \$\/M is under 0\.01/, 'per thousand tokens');
    assert.match(implausibleRates(misread('anthropic', 'claude-opus-4-1', 1000)).join('\n'), /anthropic claude-opus-4-1: input 0\.015 \$\/M is under a hundredth of anthropic's median/, 'a dear model per thousand tokens');
    assert.match(implausibleRates(misread('deepseek', 'deepseek-flash', 1e6)).join('\n'), /deepseek deepseek-flash: cache_read/);
  });
});

/**
 * Rates too low to be USD per million tokens: an entry typed per token (1,000,000x too low) or per
 * thousand. No model the table holds bills under a cent per million input or output tokens, or
 * under a tenth of a cent for cache reads and writes (the cheapest: $0.005); and none costs under a
 * hundredth of its provider's median input rate (OpenAI's spread is about 35x below it).
 */
function implausibleRates(prices: PriceTable): string[] {
  const found: string[] = [];
  for (const [provider, models] of prices.entries) {
    if (provider === 'mock') continue;
    const inputs = [...models.values()].map((p) => p.input).sort((a, b) => a - b);
    const median = inputs[Math.floor(inputs.length / 2)] ?? 0;
    for (const [model, p] of models) {
      for (const rates of [p, ...p.tiers]) {
        const least = { input: 0.01, output: 0.01, cache_read: 0.001, cache_write: 0.001, cache_write_1h: 0.001 };
        const value = { input: rates.input, output: rates.output, cache_read: rates.cacheRead, cache_write: rates.cacheWrite, cache_write_1h: rates.cacheWrite1h };
        for (const [field, floor] of Object.entries(least)) {
          const rate = value[field as keyof typeof value];
          if (rate < floor) found.push(`${provider} ${model}: ${field} ${rate} $/M is under ${floor} $/M (priced per token or per thousand?)`);
        }
      }
      if (p.input < median / 100) found.push(`${provider} ${model}: input ${p.input} $/M is under a hundredth of ${provider}'s median (${median} $/M)`);
    }
  }
  return found;
}

describe('model names', () => {
  it('resolve a dated snapshot or a -latest alias to its model, unless the snapshot is listed apart', () => {
    assert.equal(table.price('openai', 'gpt-4o-2024-08-06'), price('openai', 'gpt-4o'));
    assert.equal(table.price('openai', 'gpt-4o-mini-2024-07-18'), price('openai', 'gpt-4o-mini'));
    assert.equal(table.price('anthropic', 'claude-sonnet-4-5-20250929'), price('anthropic', 'claude-sonnet-4-5'));
    assert.equal(table.price('anthropic', 'claude-3-7-sonnet-latest'), price('anthropic', 'claude-3-7-sonnet'));
    assert.equal(price('openai', 'gpt-4o-2024-05-13').input, 5, 'the first gpt-4o snapshot has its own price');
    assert.notEqual(price('openai', 'gpt-4o-2024-05-13'), price('openai', 'gpt-4o'));
  });

  it('find nothing for a model the table does not know, or under another provider', () => {
    assert.equal(table.price('openai', 'gpt-4o-mini-audio'), null);
    assert.equal(table.price('openai', 'claude-sonnet-4-5'), null);
    assert.equal(table.price('deepseek', 'gpt-4o'), null);
    assert.equal(table.price('nobody', 'gpt-4o'), null);
    assert.equal(table.price('openai', 'constructor'), null);
    assert.equal(table.price('openai', '__proto__'), null);
  });
});

describe('PRICES_FILE', () => {
  it('adds models, replaces the table\'s entries, and prices self-hosted models at 0 with a pattern', () => {
    const override = JSON.stringify({
      prices: {
        openai: { 'gpt-4o': { input: 2, output: 8, source: 'our contract, 20% off', checked: '2026-11-30' }, 'llama-*': { input: 0, output: 0 }, '*': { input: 1, output: 1 } },
        anthropic: { 'claude-next': { input: 3, output: 15, cache_read: 0.3 } },
      },
    });
    const merged = pricesWith(override, 'prices.json', PROVIDERS);
    assert.equal(merged.price('openai', 'gpt-4o')?.input, 2, 'replaced');
    assert.equal(merged.price('openai', 'gpt-4o-2024-11-20')?.input, 2, 'its snapshots follow');
    assert.equal(merged.price('openai', 'gpt-4o-mini')?.input, 0.15, 'the rest of the table stays');
    assert.equal(merged.price('openai', 'llama-3.3-70b')?.output, 0, 'the longest pattern wins');
    assert.equal(merged.price('openai', 'qwen3')?.output, 1, '"*" prices every other model');
    const next = merged.price('anthropic', 'claude-next');
    assert.deepEqual(next && { read: next.cacheRead, write: next.cacheWrite, write1h: next.cacheWrite1h }, { read: 0.3, write: 3, write1h: 3 }, 'missing cache rates cost as input');
    assert.equal(pricesWith(null, null, PROVIDERS).price('openai', 'qwen3'), null);
    // A byte order mark, as some Windows editors save JSON, is read past (keys.json reads past it too).
    assert.equal(pricesWith(`\uFEFF${override}`, 'prices.json', PROVIDERS).price('openai', 'gpt-4o')?.input, 2);
  });

  it('reports every problem at once', () => {
    const found = problems(
      JSON.stringify({
        extra: 1,
        prices: {
          openia: { 'gpt-4o': { input: 1, output: 1 } },
          openai: {
            'gpt-*-mini': { input: 1, output: 1 },
            'gpt-x': { input: -1, output: '2', cache_rate: 1 },
            'gpt-y': { output: 1 },
            'gpt-z': { input: 1, output: 1, tiers: [{ above_input_tokens: 200000, input: 2, output: 2 }, { above_input_tokens: 100000, input: 3, output: 3 }] },
            'gpt-w': 5,
          },
        },
      }),
    );
    for (const expected of [
      /unknown top-level field "extra"/,
      /unknown provider "openia" \(known: openai, anthropic, deepseek, mock\)/,
      /openai "gpt-\*-mini": a model name or a "prefix\*" pattern/,
      /openai "gpt-x": "input" must be a number of USD per million tokens/,
      /openai "gpt-x": "output" must be a number/,
      /openai "gpt-x": unknown field "cache_rate"/,
      /openai "gpt-y": "input" is required/,
      /openai "gpt-z": "tiers" must be in ascending order/,
      /openai "gpt-w" must be an object/,
    ]) {
      assert.ok(found.some((problem) => expected.test(problem)), `missing ${expected} in\n${found.join('\n')}`);
    }
    assert.match(problems('{"prices": ').join(), /not valid JSON/);
    assert.match(problems('[]').join(), /must hold \{"prices"/);
  });

  it('refuses a model priced twice (JSON would keep the last, silently), saying where', () => {
    const text = '{"prices": {"openai": {\n"gpt-4o": {"input": 2, "output": 8},\n"gpt-4o": {"input": 0.01, "output": 0.01}}}}';
    assert.deepEqual(problems(text), ['"prices.openai.gpt-4o" is written twice (lines 2 and 3); keep one']);
  });
});

describe('cost', () => {
  it('OpenAI: cached input at the cache rate, reasoning inside output at the output rate', () => {
    const counted = chatUsage({ prompt_tokens: 10_000, completion_tokens: 2_000, prompt_tokens_details: { cached_tokens: 8_000 }, completion_tokens_details: { reasoning_tokens: 1_500 } });
    assert.ok(counted !== null);
    // gpt-5: $1.25 input, $0.125 cached, $10 output.
    assert.equal(costUsd(price('openai', 'gpt-5'), counted), usd(2_000 * 1.25 + 8_000 * 0.125 + 2_000 * 10));
    const responses = responsesUsage({ input_tokens: 10_000, input_tokens_details: { cached_tokens: 8_000 }, output_tokens: 2_000, output_tokens_details: { reasoning_tokens: 1_500 } });
    assert.ok(responses !== null);
    assert.equal(costUsd(price('openai', 'gpt-5'), responses), costUsd(price('openai', 'gpt-5'), counted), 'the same usage through the Responses API costs the same');
  });

  it('OpenAI: paid cache writes at their rate; a prompt above 272K tokens puts the whole request at the long-context rates', () => {
    const sol = price('openai', 'gpt-6.2-sol');
    const writes = chatUsage({ prompt_tokens: 1_000, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 0, cache_write_tokens: 600 } });
    assert.ok(writes !== null);
    assert.equal(costUsd(sol, writes), usd(400 * 2 + 600 * 2.5 + 10 * 10));
    assert.equal(costUsd(sol, usage({ input: 272_000, output: 1_000 })), usd(272_000 * 2 + 1_000 * 10), 'at the threshold: base rates');
    assert.equal(costUsd(sol, usage({ input: 272_001, output: 1_000 })), usd(272_001 * 4 + 1_000 * 15), 'above it: every token at the tier');
  });

  it('DeepSeek: cache hits and misses from their own fields', () => {
    const counted = chatUsage({ prompt_tokens: 1_000, completion_tokens: 100, prompt_cache_hit_tokens: 900, prompt_cache_miss_tokens: 100 });
    assert.ok(counted !== null);
    const flash = price('deepseek', 'deepseek-flash');
    assert.equal(costUsd(flash, counted), usd(100 * flash.input + 900 * flash.cacheRead + 100 * flash.output));
  });

  it('Anthropic: cache reads, 5-minute and 1-hour writes, each at its rate; long context above 200K', () => {
    const counted = messagesUsage({
      input_tokens: 50,
      cache_read_input_tokens: 10_000,
      cache_creation_input_tokens: 3_000,
      cache_creation: { ephemeral_5m_input_tokens: 1_000, ephemeral_1h_input_tokens: 2_000 },
      output_tokens: 500,
    });
    assert.ok(counted !== null);
    // claude-sonnet-4-5: $3 input, $0.30 read, $3.75 5-minute write, $6 1-hour write, $15 output.
    assert.equal(costUsd(price('anthropic', 'claude-sonnet-4-5'), counted), usd(50 * 3 + 10_000 * 0.3 + 1_000 * 3.75 + 2_000 * 6 + 500 * 15));
    const long = usage({ input: 150_000, cacheRead: 60_000, output: 1_000 });
    assert.equal(costUsd(price('anthropic', 'claude-sonnet-4-5'), long), usd(150_000 * 6 + 60_000 * 0.6 + 1_000 * 22.5), 'a 210K prompt: every token at the long-context rates');
    const haiku = price('anthropic', 'claude-haiku-5-5');
    assert.equal(costUsd(haiku, usage({ input: 100_001, output: 10 })), usd(100_001 * 0.5 + 10 * 2.5), 'Haiku 5.5 bills prompts above 100K higher');
  });

  it('Anthropic streams: usage from message_start and message_delta, the cache-write split kept', () => {
    const watch = messagesStreamWatch();
    watch.see({ type: 'message_start', message: { usage: { input_tokens: 20, cache_read_input_tokens: 0, cache_creation_input_tokens: 1_000, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1_000 }, output_tokens: 1 } } } as never);
    watch.see({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 40 } } as never);
    const counted = watch.usage();
    assert.deepEqual(counted, usage({ input: 20, cacheWrite: 1_000, cacheWrite1h: 1_000, output: 40 }));
    assert.equal(costUsd(price('anthropic', 'claude-opus-4-5'), counted as Usage), usd(20 * 5 + 1_000 * 10 + 40 * 25));
  });

  it('estimates a request before its answer from its prompt and output limit, and prints dollars for people', () => {
    assert.equal(estimateUsd(price('openai', 'gpt-4o-mini'), 4_000, 1_000), usd(4_000 * 0.15 + 1_000 * 0.6));
    assert.deepEqual([formatUsd(0), formatUsd(12.345), formatUsd(0.0042), formatUsd(50), formatUsd(4.5e-7), formatUsd(0.000012)], ['$0', '$12.35', '$0.0042', '$50.00', '$0.00000045', '$0.000012']);
    assert.deepEqual([decimalUsd(4.5e-7), decimalUsd(1.5), decimalUsd(0), decimalUsd(0.0000117)], ['0.00000045', '1.5', '0', '0.0000117']);
  });
});

const budgetKey = (maxUsd: number, period: 'day' | 'month' | 'total' = 'month', maxTokens: number | null = null): KeyLimits => ({ digest: 'd-usd', rateLimit: null, budget: { maxTokens, maxUsd, period } });
const spent = (tokens: number, dollars: number, unpriced = false): Spend => ({ tokens, usd: dollars, usage: null, unpriced });

describe('budgets in USD', () => {
  it('refuse once the period\'s spend (with what requests in flight hold) reaches max_usd, saying the spend and the limit', () => {
    const state = new LimitState(new SpendStore(null));
    const key = budgetKey(1, 'month');
    const t = Date.parse('2026-11-20T12:00:00Z');
    assert.equal(state.admit(key, { tokens: 10, usd: 0.6 }, t).error, null);
    assert.equal(state.admit(key, { tokens: 10, usd: 0.6 }, t).error, null, 'admitted while anything is left');
    const held = state.admit(key, { tokens: 10, usd: 0.1 }, t);
    assert.equal(held.error?.code, 'budget_held', 'two requests in flight hold $1.20');
    assert.equal(held.error?.message, "This virtual key's budget is taken by its requests in flight ($0 spent and $1.20 held of $1.00 this month (UTC)); what they do not use comes back when they finish. Try again shortly.");
    assert.deepEqual([held.error?.status, held.error?.headers], [429, { 'retry-after': '5' }], 'soon, and an SDK may retry: not until the period ends');
    state.record(key, spent(10, 0.25), { tokens: 10, usd: 0.6 }, t);
    state.record(key, spent(10, 0.25), { tokens: 10, usd: 0.6 }, t);
    assert.equal(state.admit(key, { tokens: 10, usd: 0.1 }, t).error, null, 'they cost $0.50: room again');
    state.record(key, spent(10, 0.6), { tokens: 10, usd: 0.1 }, t);
    const refused = state.admit(key, { tokens: 10, usd: 0.1 }, t);
    assert.equal(refused.error?.status, 429);
    assert.equal(refused.error?.type, 'insufficient_quota');
    assert.match(refused.error?.message ?? '', /used its budget \(\$1\.10 of \$1\.00 spent this month \(UTC\)\); it resets at 2026-12-01T00:00:00\.000Z/);
    assert.equal(refused.error?.headers['retry-after'], String((Date.parse('2026-12-01T00:00:00Z') - t) / 1000));
    assert.equal(state.admit(key, { tokens: 10, usd: 0.1 }, Date.parse('2026-12-01T00:00:00Z')).error, null, 'a new month');
  });

  it('beside max_tokens: whichever is reached first refuses', () => {
    const state = new LimitState(new SpendStore(null));
    const key = budgetKey(100, 'total', 50);
    state.record(key, spent(60, 0.01), { tokens: 0, usd: 0 });
    assert.match(state.admit(key, { tokens: 0, usd: 0 }).error?.message ?? '', /token budget \(60 of 50 tokens, in total\); it does not reset/);
  });

  it('survive a restart with every key\'s spend, and a version 1 state file (tokens only) is read', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    const store = new SpendStore(file);
    const state = new LimitState(store);
    const key = budgetKey(5);
    // Now: periods that are over are not kept.
    const t = Date.now();
    const month = `month:${new Date(t).toISOString().slice(0, 7)}`;
    const counted = usage({ input: 100, cacheRead: 20, cacheWrite: 5, output: 30, reasoning: 10 });
    state.record(key, { tokens: 155, usd: 1.5, usage: counted, unpriced: false }, { tokens: 0, usd: 0 }, t);
    state.record(key, spent(0, 0, true), { tokens: 0, usd: 0 }, t);
    await store.save();
    const again = new LimitState(new SpendStore(file));
    await (again as unknown as { spend: SpendStore }).spend.load();
    const report = again.report(key, t);
    assert.deepEqual(report.spend, {
      period: month, requests: 2, tokens: 155, usd: 1.5, input_tokens: 100, output_tokens: 30, cache_read_tokens: 20, cache_write_tokens: 5, reasoning_tokens: 10, unpriced_requests: 1,
    });
    assert.equal(report.periodStart, `${month.slice(6)}-01T00:00:00.000Z`);

    // A budget whose period changes (a reload) and back keeps each period's count.
    const daily = budgetKey(5, 'day');
    again.record(daily, spent(10, 0.5), { tokens: 0, usd: 0 }, t);
    assert.equal(again.report(daily, t).spend.usd, 0.5);
    assert.equal(again.report(key, t).spend.usd, 1.5, 'the month still counts what it did');

    writeFileSync(file, JSON.stringify({ version: 1, budgets: { 'd-usd': { period: month, used: 700 } } }));
    const old = new SpendStore(file);
    await old.load();
    assert.equal(old.current('d-usd', 'month', new Date(t)).tokens, 700);
    assert.equal(old.current('d-usd', 'month', new Date(t)).usd, 0);
  });

  it('write dollar sums to the state file as the gateway rounds each cost, without float noise', async () => {
    const file = join(tempDir(), 'gateway_state.json');
    const store = new SpendStore(file);
    const state = new LimitState(store);
    const t = Date.now();
    for (const dollars of [0.0235, 0.0235, 0.0235]) state.record(budgetKey(5, 'total'), spent(10, dollars), { tokens: 0, usd: 0 }, t);
    await store.save();
    assert.match(readFileSync(file, 'utf8'), /"usd": 0\.0705,\n/);
  });
});

describe('npm run usage', () => {
  const entry = (at: string, key: string | null, provider: string, model: string, cost: number | null, status = 200, tokens = [100, 20, 0, 0]): Record<string, unknown> => ({
    timestamp: at,
    request_id: 'x',
    virtual_key: 'vk_secret_value',
    key_name: key,
    provider,
    model,
    status,
    usage: { input_tokens: tokens[0], output_tokens: tokens[1], cache_read_tokens: tokens[2], cache_write_tokens: tokens[3], reasoning_tokens: 0 },
    cost_usd: cost,
    request: { messages: [{ content: '}\n{' }] },
    upstream: { status, model: `${model}-served` },
  });
  const log = [
    JSON.stringify(entry('2026-11-30T23:59:59.000Z', 'team-a', 'openai', 'gpt-5', 9), null, 2),
    JSON.stringify(entry('2026-12-01T10:00:00.000Z', 'team-a', 'openai', 'gpt-5', 0.25), null, 2),
    JSON.stringify(entry('2026-12-01T11:00:00.000Z', 'team-a', 'anthropic', 'claude-sonnet-4-5', 1.5, 200, [1000, 200, 5000, 300]), null, 2),
    '{\n  "timestamp": "2026-12-01T11:30:00.000Z",\n  "torn',
    JSON.stringify(entry('2026-12-01T12:00:00.000Z', 'team-b', 'deepseek', 'deepseek-flash', null)),
    JSON.stringify(entry('2026-12-01T12:30:00.000Z', null, 'openai', 'gpt-5', 0, 401, [0, 0, 0, 0]), null, 2),
    JSON.stringify(entry('2026-12-02T00:00:00.000Z', 'team-b', 'openai', 'gpt-5', 3), null, 2),
    // Written before costs were logged: its cost is unknown, not $0.
    JSON.stringify({ ...entry('2026-12-02T01:00:00.000Z', 'team-c', 'openai', 'gpt-5\u001b[31m\nforged row', 0), cost_usd: undefined }, null, 2),
  ].join('\n');

  function run(since: string | null, until: string | null) {
    const range = { since: since === null ? null : parseTime(since, 0), until: until === null ? null : parseTime(until, 0) };
    const report = emptyReport();
    const reader = new EntryReader((parsed) => addToReport(report, parsed, range), () => report.skipped++);
    for (const line of log.split('\n')) reader.line(line);
    reader.end();
    return { report, range };
  }

  it('sums requests, tokens and cost per key and per model over a time range, torn entries skipped', () => {
    const { report, range } = run('2026-12-01', '2026-12-02');
    const json = reportJson(report, range) as any;
    assert.equal(json.entries, 4);
    assert.equal(json.skipped, 1, 'the torn entry');
    assert.deepEqual(json.by_key['team-a'], { requests: 2, errors: 0, input_tokens: 1100, output_tokens: 220, cache_read_tokens: 5000, cache_write_tokens: 300, cost_usd: 1.75, unpriced_requests: 0 });
    assert.deepEqual(json.by_key['team-b'], { requests: 1, errors: 0, input_tokens: 100, output_tokens: 20, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0, unpriced_requests: 1 });
    assert.equal(json.by_key['(no valid key)'].errors, 1);
    assert.equal(json.by_model['openai/gpt-5-served'].requests, 2, 'by the model that served');
    assert.equal(json.total.cost_usd, 1.75);
    assert.equal(json.total.unpriced_requests, 1);
  });

  it('prints tables a person reads, naming keys by name, never by the key itself', () => {
    const { report, range } = run('2026-12-01', null);
    const text = renderReport(report, range, 'logs/llm_interactions.json');
    assert.doesNotMatch(text, /vk_secret_value/);
    const lines = text.split('\n');
    assert.match(lines[0] as string, /^6 requests in logs\/llm_interactions\.json, from 2026-12-01T00:00:00Z \(1 unreadable part skipped\)$/);
    const teamB = lines.find((line) => line.startsWith('team-b'));
    assert.match(teamB ?? '', /^team-b\s+2\s+0\s+200\s+40\s+0\s+0\s+\$3\.00 \+ 1 unpriced$/);
    assert.ok(lines.indexOf(teamB as string) < lines.findIndex((line) => line.startsWith('team-a')), 'the biggest spender first');
    assert.match(text, /^total\s+6\s+1\s+1,400\s+280\s+5,000\s+300\s+\$4\.75 \+ 2 unpriced$/m);
    assert.match(text, /^team-c\s+1\s+0\s+100\s+20\s+0\s+0\s+\? \+ 1 unpriced$/m, 'no cost logged: unknown');
    assert.doesNotMatch(text, /\u001b|\nforged/, 'control characters in a model name are shown escaped');
    assert.match(text, /gpt-5\\u001b\[31m\\u000aforged row-served/);
    assert.match(text, /^anthropic\/claude-sonnet-4-5-served\s+1\s+0\s+1,000\s+200\s+5,000\s+300\s+\$1\.50$/m);
  });

  it('reads times as dates or as a time ago', () => {
    const now = Date.parse('2026-12-02T12:00:00Z');
    assert.equal(parseTime('7d', now), Date.parse('2026-11-25T12:00:00Z'));
    assert.equal(parseTime('12h', now), Date.parse('2026-12-02T00:00:00Z'));
    assert.equal(parseTime('2026-11-01', now), Date.parse('2026-11-01T00:00:00Z'));
    assert.equal(parseTime('2026-11-01T06:00Z', now), Date.parse('2026-11-01T06:00:00Z'));
    assert.equal(parseTime('yesterday', now), null);
    assert.equal(parseTime('2026-02-31', now), null, 'no such day');
    assert.equal(parseTime('2026-11-01T06:00', now), Date.parse('2026-11-01T06:00:00Z'), 'UTC, like the log');
  });
});
