/**
 * Per-key controls without a network: key-file fields, model patterns, rate-limit buckets,
 * budgets and their persistence, the real-key pool, and retry backoff.
 */
import assert from 'node:assert/strict';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KeyPool } from '../src/policy/key-pool.js';
import { ConfigFileError } from '../src/config-file-error.js';
import { modelAllowlist, parseKeyFile, type VirtualKey } from '../src/policy/keys.js';
import { formatDuration, LimitState, periodEnd, periodId, type Charge, type KeyLimits, type Spend } from '../src/policy/limits.js';
import { SpendStore } from '../src/policy/spend-store.js';
import { backoffMs, retryAfterMs } from '../src/upstream/call.js';
import { registry as providers } from '../src/providers/index.js';
import { ROOT, runGatewayUntilExit, tempDir } from './support/gateway.js';
import type { Target } from '../src/policy/target.js';

/** What `run` writes to stderr (the gateway's warnings), one piece per write, kept from the test's output. */
async function stderrOf(run: () => Promise<void>): Promise<string[]> {
  const said: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((text: string) => said.push(text) > 0) as typeof process.stderr.write;
  try {
    await run();
  } finally {
    process.stderr.write = write;
  }
  return said;
}

function keyFile(entry: Record<string, unknown>): VirtualKey {
  const [key] = parseKeyFile(JSON.stringify({ virtual_keys: { vk: { provider: 'openai', api_key: 'sk-1', ...entry } } }), 'keys.json', providers);
  return key as VirtualKey;
}

function problems(entry: Record<string, unknown>): string[] {
  try {
    keyFile(entry);
  } catch (err) {
    assert.ok(err instanceof ConfigFileError);
    return err.problems;
  }
  assert.fail('expected problems');
}

describe('keys.json controls', () => {
  it('reads models, rate_limit, budget and api_keys', () => {
    const key = keyFile({ api_key: undefined, api_keys: ['sk-a', 'sk-b'], models: ['gpt-4o-mini', 'gpt-4.1-*'], rate_limit: { requests_per_minute: 60, tokens_per_minute: 1000 }, budget: { max_tokens: 50000, period: 'month' } });
    assert.deepEqual(key.targets[0]?.keys.apiKeys, ['sk-a', 'sk-b']);
    assert.deepEqual(key.rateLimit, { requestsPerMinute: 60, tokensPerMinute: 1000 });
    assert.deepEqual(key.budget, { maxTokens: 50000, maxUsd: null, period: 'month' });
    assert.equal(key.models?.allows('gpt-4.1-nano'), true);
    assert.equal(key.models?.allows('gpt-4o'), false);
    assert.match(key.digest, /^[A-Za-z0-9+/]{43}=$/);
  });

  it('reports every problem with them, naming the field', () => {
    const found = problems({
      api_keys: ['sk-2'],
      models: ['gpt-*-mini', ''],
      rate_limit: { requests_per_minute: 0, tokens_per_min: 5 },
      budget: { max_tokens: -1, period: 'week', extra: 1 },
    });
    for (const expected of [
      /use either "api_key" or "api_keys"/,
      /"models\[0\]" may use "\*" only at the end/,
      /"models\[1\]" must be a non-empty string/,
      /unknown field in "rate_limit": "tokens_per_min" \(known: requests_per_minute, tokens_per_minute\)/,
      /"rate_limit.requests_per_minute" must be a positive integer/,
      /unknown field in "budget": "extra" \(known: max_tokens, max_usd, period\)/,
      /"budget.max_tokens" must be a positive integer/,
      /"budget.period" must be "day", "month" or "total"/,
    ]) {
      assert.ok(found.some((problem) => expected.test(problem)), `missing ${expected} in ${found.join('\n')}`);
    }
    assert.match(problems({ api_key: undefined, api_keys: [] }).join(), /"api_keys" must be a non-empty array/);
    assert.match(problems({ api_key: undefined, api_keys: ['sk-x', 'sk-x'] }).join(), /the same key twice/);
    assert.match(problems({ api_key: undefined, api_keys: ['sk-x', ' sk-y'] }).join(), /"api_keys\[1\]" has leading or trailing whitespace/);
    assert.match(problems({ rate_limit: {} }).join(), /needs "requests_per_minute" or "tokens_per_minute"/);
    assert.match(problems({ models: [] }).join(), /"models" must be a non-empty array/);
  });

  it('matches models exactly or by a trailing * only', () => {
    const allow = modelAllowlist(['gpt-4o-mini', 'claude-*']);
    assert.deepEqual(['gpt-4o-mini', 'gpt-4o-mini-2024', 'claude-sonnet-4-5', 'claude', 'xclaude-1'].map((model) => allow.allows(model)), [true, false, true, false, false]);
    assert.equal(modelAllowlist(['*']).allows('anything'), true);
  });
});

/** A charge of tokens only, and a request that used that many tokens (no price). */
const tok = (tokens: number): Charge => ({ tokens, usd: 0 });
const spent = (tokens: number, usd = 0): Spend => ({ tokens, usd, usage: null, unpriced: false });

const limits = (rate: { rpm?: number; tpm?: number } | null, budget: KeyLimits['budget'] = null): KeyLimits => ({
  digest: 'd1',
  rateLimit: rate === null ? null : { requestsPerMinute: rate.rpm ?? null, tokensPerMinute: rate.tpm ?? null },
  budget,
});

describe('rate limits', () => {
  it('admits requests_per_minute requests, then refuses with retry-after and OpenAI headers, and refills', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ rpm: 3 });
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) assert.equal(state.admit(key, tok(0), t, t).error, null);
    const refused = state.admit(key, tok(0), t, t);
    assert.equal(refused.error?.status, 429);
    assert.equal(refused.error?.code, 'rate_limit_exceeded');
    assert.equal(refused.error?.type, 'requests');
    assert.equal(refused.error?.headers['retry-after'], '20', 'one request every 20 s at 3 per minute');
    assert.equal(refused.headers['x-ratelimit-limit-requests'], '3');
    assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
    assert.equal(refused.headers['x-ratelimit-reset-requests'], '1m0s');
    assert.equal(state.admit(key, tok(0), t + 19_000, t + 19_000).error?.status, 429);
    const later = state.admit(key, tok(0), t + 20_000, t + 20_000);
    assert.equal(later.error, null);
    assert.equal(later.headers['x-ratelimit-remaining-requests'], '0');
  });

  it('keeps what was used when a reload changes a limit: raised, its difference is there at once; lowered below what was used, it refuses', () => {
    const state = new LimitState(new SpendStore(null));
    const t = 2_000_000;
    for (let i = 0; i < 3; i++) assert.equal(state.admit(limits({ rpm: 5 }), tok(0), t, t).error, null);
    const raised = state.admit(limits({ rpm: 10 }), tok(0), t, t);
    assert.equal(raised.error, null);
    assert.equal(raised.headers['x-ratelimit-remaining-requests'], '6', '10 less the 4 used');
    for (let i = 0; i < 6; i++) assert.equal(state.admit(limits({ rpm: 10 }), tok(0), t, t).error, null);
    assert.equal(state.admit(limits({ rpm: 10 }), tok(0), t, t).error?.status, 429);
    // 10 used, the limit lowered to 4: refused until a debt of at most a minute's worth is paid off.
    const lowered = state.admit(limits({ rpm: 4 }), tok(0), t, t);
    assert.equal(lowered.error?.status, 429);
    assert.equal(lowered.error?.headers['retry-after'], '75', 'from -4 to 1 at 4 a minute');
  });

  it('caps the debt of a lowered limit at a minute of the new one: a minute used at 100,000 tokens does not lock a key lowered to 1,000 out for 100 minutes', () => {
    const state = new LimitState(new SpendStore(null));
    const t = 3_000_000;
    assert.equal(state.admit(limits({ tpm: 100_000 }), tok(0), t, t).error, null);
    state.record(limits({ tpm: 100_000 }), spent(100_000), tok(0), t, t);
    const lowered = state.admit(limits({ tpm: 1_000 }), tok(0), t, t);
    assert.equal(lowered.error?.type, 'tokens');
    assert.equal(lowered.error?.headers['retry-after'], '61', 'a minute of debt, and the token that fits');
    assert.equal(state.admit(limits({ tpm: 1_000 }), tok(0), t + 61_000, t + 61_000).error, null);
  });

  it('counts tokens of answered requests against tokens_per_minute', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ tpm: 30 });
    const t = 5_000_000;
    assert.equal(state.admit(key, tok(0), t, t).error, null);
    state.record(key, spent(18), tok(0), t, t);
    const second = state.admit(key, tok(0), t, t);
    assert.equal(second.error, null, '12 tokens left: admitted');
    assert.equal(second.headers['x-ratelimit-remaining-tokens'], '12');
    state.record(key, spent(18), tok(0), t, t);
    const third = state.admit(key, tok(0), t, t);
    assert.equal(third.error?.type, 'tokens');
    assert.equal(third.error?.headers['retry-after'], '14', '7 tokens to regain at 0.5/s');
    assert.equal(state.admit(key, tok(0), t + 14_000, t + 14_000).error, null);
  });

  it('reserves the estimate of requests in flight, and settles it with what they used', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ tpm: 100 }, { maxTokens: 100, maxUsd: null, period: 'total' });
    const t = 9_000_000;
    for (let i = 0; i < 2; i++) assert.equal(state.admit(key, tok(50), t, t).error, null);
    assert.equal(state.admit(key, tok(50), t, t).error?.status, 429, 'two requests in flight already hold 100 tokens');
    state.record(key, spent(10), tok(50), t, t);
    state.record(key, spent(10), tok(50), t, t);
    assert.equal(state.admit(key, tok(50), t, t).error, null, 'they used 20: room again');
  });

  it('gives back exactly what a reservation larger than the bucket held (4,096 output tokens held for a request without max_tokens)', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ tpm: 30 });
    const t = 8_000_000;
    assert.equal(state.admit(key, tok(4_100), t, t).error, null);
    assert.equal(state.admit(key, tok(0), t, t).error?.type, 'tokens', 'held while it runs');
    state.record(key, spent(18), tok(4_100), t, t);
    assert.equal(state.admit(key, tok(0), t, t).headers['x-ratelimit-remaining-tokens'], '12', 'it used 18 of 30');
  });

  it('caps token debt at one minute, so one huge answer does not lock a key for an hour', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ tpm: 1000 });
    const t = 7_000_000;
    state.admit(key, tok(0), t, t);
    state.record(key, spent(100_000), tok(0), t, t);
    assert.equal(state.admit(key, tok(0), t, t).error?.headers['retry-after'], '61', 'about a minute to refill, not 99');
    assert.equal(state.admit(key, tok(0), t + 61_000, t + 61_000).error, null, 'and admitted then, as it said');
  });

  it("tells a client at most a minute's wait while a request in flight holds more than the bucket (its hold comes back when it ends)", () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits({ tpm: 1000 });
    const t = 6_000_000;
    const first = state.admit(key, tok(4_111), t, t);
    assert.equal(first.error, null);
    assert.equal(first.headers['x-ratelimit-reset-tokens'], '2m0s', 'from a minute of debt to full, not 4m7s');
    const beside = state.admit(key, tok(10), t, t);
    assert.equal(beside.error?.headers['retry-after'], '61', 'not 188');
    assert.match(beside.error?.message ?? '', /Try again in 1m0s/);
    state.record(key, spent(15), tok(4_111), t, t);
    assert.equal(state.admit(key, tok(0), t, t).error, null, 'back once it ended');
  });

  it('formats durations the way OpenAI does', () => {
    assert.deepEqual([formatDuration(250), formatDuration(1500), formatDuration(60_000), formatDuration(361_000)], ['250ms', '1.5s', '1m0s', '6m1s']);
    assert.deepEqual([formatDuration(0), formatDuration(999.6), formatDuration(119_700)], ['0s', '1s', '2m0s']);
  });
});

describe('budgets', () => {
  it('refuse once the period\'s tokens are used, until the period resets', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits(null, { maxTokens: 100, maxUsd: null, period: 'day' });
    const t = Date.parse('2026-11-28T20:00:00Z');
    assert.equal(state.admit(key, tok(0), t).error, null);
    state.record(key, spent(60), tok(0), t);
    assert.equal(state.admit(key, tok(0), t).error, null);
    state.record(key, spent(60), tok(0), t);
    const refused = state.admit(key, tok(0), t);
    assert.equal(refused.error?.status, 429);
    assert.equal(refused.error?.code, 'budget_exceeded');
    assert.match(refused.error?.message ?? '', /120 of 100 tokens, today \(UTC\).*resets at 2026-11-29T00:00:00.000Z/);
    assert.equal(refused.error?.headers['retry-after'], String(4 * 3600));
    assert.equal(state.admit(key, tok(0), Date.parse('2026-11-29T00:00:01Z')).error, null, 'a new day');
  });

  it('say a budget its requests in flight hold comes back, where they are what fills it', () => {
    const state = new LimitState(new SpendStore(null));
    const key = limits(null, { maxTokens: 100, maxUsd: null, period: 'day' });
    const t = Date.parse('2026-11-28T20:00:00Z');
    assert.equal(state.admit(key, tok(70), t).error, null);
    state.record(key, spent(30), tok(70), t);
    assert.equal(state.admit(key, tok(80), t).error, null);
    const held = state.admit(key, tok(10), t);
    assert.deepEqual([held.error?.status, held.error?.code, held.error?.headers], [429, 'budget_held', { 'retry-after': '5' }]);
    assert.match(held.error?.message ?? '', /\(30 tokens spent and 80 held of 100 today \(UTC\)\)/);
    state.record(key, spent(75), tok(80), t);
    assert.equal(state.admit(key, tok(10), t).error?.code, 'budget_exceeded', 'spent alone: used until the period resets');
    // One budget spent past its limit is used up, even where the other is only held full.
    const fresh = new LimitState(new SpendStore(null));
    const both = limits(null, { maxTokens: 1000, maxUsd: 0.01, period: 'day' });
    assert.equal(fresh.admit(both, { tokens: 995, usd: 0.008 }, t).error, null, 'a long request holds 995 tokens and $0.008');
    assert.equal(fresh.admit(both, tok(0), t).error, null);
    fresh.record(both, { tokens: 10, usd: 0.02, usage: null, unpriced: false }, tok(0), t);
    const spentUsd = fresh.admit(both, tok(0), t).error;
    assert.deepEqual([spentUsd?.code, spentUsd?.headers['x-should-retry']], ['budget_exceeded', 'false'], 'USD spent past its limit: not "held, try again"');
    assert.match(spentUsd?.message ?? '', /\(\$0\.02 of \$0\.01 spent today \(UTC\)\)/, 'what was spent, not what is also held');
  });

  it('know their periods', () => {
    const now = new Date('2026-12-31T23:59:59Z');
    assert.deepEqual([periodId('day', now), periodId('month', now), periodId('total', now)], ['day:2026-12-31', 'month:2026-12', 'total']);
    // The UTC date as toISOString writes it, on every day from 1970 to 2100 (the state file keeps these ids).
    for (let t = 0; t < Date.UTC(2100, 0, 1); t += 86_400_000 - 1) {
      const at = new Date(t);
      const iso = at.toISOString();
      assert.equal(periodId('day', at), `day:${iso.slice(0, 10)}`);
      assert.equal(periodId('month', at), `month:${iso.slice(0, 7)}`);
    }
    assert.equal(periodEnd('month', now)?.toISOString(), '2027-01-01T00:00:00.000Z');
    assert.equal(periodEnd('total', now), null);
    const state = new LimitState(new SpendStore(null));
    const key = limits(null, { maxTokens: 1, maxUsd: null, period: 'total' });
    state.record(key, spent(5), tok(0));
    assert.equal(state.admit(key, tok(0)).error?.headers['retry-after'], undefined, 'a total budget does not reset');
  });

  it('survive a restart: written atomically to a 0600 file holding digests, not keys', async () => {
    const dir = tempDir();
    const file = join(dir, 'state', 'gateway_state.json');
    const store = new SpendStore(file);
    // Now: periods that are over are not written.
    const now = new Date();
    store.add('digest-A', 'month', spent(700), now, true);
    store.add('digest-A', 'month', spent(300), now, true);
    await store.save();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(dir, 'state')), ['gateway_state.json'], 'no temporary file left');
    // Atomically: a whole new file renamed over the last, never the last rewritten in place (a crash
    // halfway would leave half a file, and every budget would start over). A reader that opened the
    // last one (a link to it) still holds it whole.
    const kept = join(dir, 'kept.json');
    linkSync(file, kept);
    const before = readFileSync(kept, 'utf8');
    store.add('digest-B', 'month', spent(5), now, true);
    await store.save();
    assert.equal(readFileSync(kept, 'utf8'), before);
    assert.notEqual(statSync(file).ino, statSync(kept).ino);
    assert.notEqual(readFileSync(file, 'utf8'), before, 'the new spend written');
    const again = new SpendStore(file);
    await again.load();
    assert.equal(again.current('digest-A', 'month', now).tokens, 1000);
    assert.equal(again.current('digest-A', 'month', new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1))).tokens, 0, 'a new month');
    assert.match(readFileSync(file, 'utf8'), new RegExp(`"month:${now.toISOString().slice(0, 7)}"`));
    const missing = new SpendStore(join(dir, 'nope.json'));
    await missing.load();
    assert.equal(existsSync(join(dir, 'nope.json')), false);
  });

  it('write through a link at its path to the file it points to, keeping the link, even to a file not there yet (a release that links its shared state file)', async () => {
    const now = new Date();
    for (const there of [true, false]) {
      const dir = tempDir();
      mkdirSync(join(dir, 'shared'));
      mkdirSync(join(dir, 'release'));
      const shared = join(dir, 'shared', 'state.json');
      const link = join(dir, 'release', 'gateway_state.json');
      if (there) {
        const before = new SpendStore(shared);
        before.add('digest-A', 'month', spent(100), now, true);
        await before.save();
      }
      symlinkSync('../shared/state.json', link);
      const store = new SpendStore(link);
      const said = await stderrOf(() => store.load());
      assert.deepEqual(said, there ? [] : [`llm-gateway: the state file ${link} is a link to ${shared}, which does not exist: budgets start from zero, and it is written there\n`]);
      assert.equal(store.current('digest-A', 'month', now).tokens, there ? 100 : 0);
      store.add('digest-A', 'month', spent(5), now, true);
      await store.save();
      assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
      assert.deepEqual(readdirSync(join(dir, 'release')), ['gateway_state.json']);
      assert.deepEqual(readdirSync(join(dir, 'shared')), ['state.json'], 'no temporary file left');
      const again = new SpendStore(shared);
      await again.load();
      assert.equal(again.current('digest-A', 'month', now).tokens, there ? 105 : 5);
    }
  });

  it('follow a link as the system does: relative to its real folder (a release reached through `current`), through a chain of links; a corrupt file behind one is kept beside it', async () => {
    const now = new Date();
    const quiet = async (run: () => Promise<void>): Promise<string> => (await stderrOf(run)).join('');
    // Capistrano: current -> releases/5, whose state.json -> ../../shared/state.json (not there yet).
    const app = tempDir();
    mkdirSync(join(app, 'releases', '5'), { recursive: true });
    mkdirSync(join(app, 'shared'));
    symlinkSync('../../shared/state.json', join(app, 'releases', '5', 'state.json'));
    symlinkSync('releases/5', join(app, 'current'));
    // A chain: chained/state.json -> ../middle/state.json -> ../shared/chained.json (not there yet).
    mkdirSync(join(app, 'chained'));
    mkdirSync(join(app, 'middle'));
    symlinkSync('../shared/chained.json', join(app, 'middle', 'state.json'));
    symlinkSync('../middle/state.json', join(app, 'chained', 'state.json'));
    for (const [path, real] of [[join(app, 'current', 'state.json'), join(app, 'shared', 'state.json')], [join(app, 'chained', 'state.json'), join(app, 'shared', 'chained.json')]] as const) {
      for (const run of [1, 2]) {
        const store = new SpendStore(path);
        const said = await quiet(() => store.load());
        assert.equal(said.includes(`is a link to ${real}, which does not exist`), run === 1, said);
        store.add('digest-A', 'month', spent(1), now, true);
        await store.save();
      }
      const again = new SpendStore(real);
      await again.load();
      assert.equal(again.current('digest-A', 'month', now).tokens, 2, `${path}: kept across a restart`);
    }
    assert.ok(lstatSync(join(app, 'middle', 'state.json')).isSymbolicLink(), 'the chain is kept');
    // A corrupt file behind a link: kept beside the file itself, the link left as it is.
    writeFileSync(join(app, 'shared', 'state.json'), '{"version": 2, "spend": ');
    const said = await quiet(() => new SpendStore(join(app, 'current', 'state.json')).load());
    const aside = readdirSync(join(app, 'shared')).find((name) => name.startsWith('state.json.corrupt-'));
    assert.ok(aside !== undefined, said);
    assert.equal(readFileSync(join(app, 'shared', aside), 'utf8'), '{"version": 2, "spend": ');
    assert.match(said, new RegExp(`it was moved to ${join(app, 'shared', aside).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, and budgets start from zero`));
    assert.ok(lstatSync(join(app, 'releases', '5', 'state.json')).isSymbolicLink());
  });

  it('say once that another process changed the file since this one last read or wrote it (two gateways sharing one state file)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    const now = new Date();
    const first = new SpendStore(file);
    first.add('digest-A', 'month', spent(1), now, true);
    await first.save();
    const [one, two] = [new SpendStore(file), new SpendStore(file)];
    await one.load();
    await two.load();
    const said = await stderrOf(async () => {
      for (let round = 0; round < 2; round++) {
        for (const store of [one, two]) {
          store.add('digest-A', 'month', spent(1), now, true);
          await store.save();
        }
      }
    });
    assert.equal(said.length, 2, said.join(''));
    for (const text of said) assert.match(text, /^llm-gateway: WARNING: the state file .*gateway_state\.json was changed by another process since this one last wrote it: gateways sharing one state file overwrite each other's spend \(give each instance its own STATE_FILE\)\n$/);
    // One writer alone, however often it writes: nothing said.
    const alone = await stderrOf(async () => {
      const store = new SpendStore(join(dir, 'alone.json'));
      for (let i = 0; i < 3; i++) {
        store.add('digest-A', 'month', spent(1), now, true);
        await store.save();
      }
      const again = new SpendStore(join(dir, 'alone.json'));
      await again.load();
      again.add('digest-A', 'month', spent(1), now, true);
      await again.save();
    });
    assert.deepEqual(alone, []);
  });

  it('write only the spend of keys with a budget: without one no file, the rest counted in memory', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    const store = new SpendStore(file);
    const now = new Date();
    store.add('digest-free', 'month', spent(5), now, false);
    await store.save();
    assert.equal(existsSync(file), false, 'no budget, no file');
    assert.equal(store.current('digest-free', 'month', now).tokens, 5, 'counted in memory');
    store.add('digest-budget', 'month', spent(7), now, true);
    store.add('digest-free', 'month', spent(5), now, false);
    await store.save();
    const written = JSON.parse(readFileSync(file, 'utf8')) as { spend: Record<string, unknown> };
    assert.deepEqual(Object.keys(written.spend), ['digest-budget']);
    // Its budget removed by a reload: left out of the next write.
    store.add('digest-budget', 'month', spent(1), now, false);
    await store.save();
    assert.deepEqual((JSON.parse(readFileSync(file, 'utf8')) as { spend: Record<string, unknown> }).spend, {});
  });

  it('refuse a state file that is there and cannot be read, rather than start every budget from zero', async () => {
    // Tests run as root, whom permissions do not stop: a link to itself cannot be read either.
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    symlinkSync(file, file);
    const store = new SpendStore(file);
    await assert.rejects(store.load(), (err: Error) => err instanceof ConfigFileError && /gateway_state\.json: the state file cannot be read \(ELOOP[^)]*\).*STATE_FILE=off/.test(err.message));
    // Whoever starts it again finds the gateway's own file missing, not spend read as none.
    const gone = await runGatewayUntilExit({ KEYS_FILE: join(ROOT, 'keys.example.json'), STATE_FILE: file, LOG_FILE: 'off' }, dir);
    assert.equal(gone.code, 1, gone.stderr);
    assert.match(gone.stderr, /llm-gateway: cannot start: .*gateway_state\.json: the state file cannot be read \(ELOOP/);
  });

  it('move a corrupt state file aside (never overwrite it) and say so', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    writeFileSync(file, '{"version":1,"budgets":{"d":{"period":"total","us');
    const store = new SpendStore(file);
    await store.load();
    const aside = readdirSync(dir).find((name) => name.startsWith('gateway_state.json.corrupt-'));
    assert.ok(aside !== undefined, 'kept aside');
    assert.equal(readFileSync(join(dir, aside), 'utf8'), '{"version":1,"budgets":{"d":{"period":"total","us');
  });

  it('moves aside, never reads as no spend, a state file of valid JSON in a shape it does not read: a field renamed by hand, another version', async () => {
    const month = periodId('month', new Date());
    const good = JSON.stringify({ version: 2, spend: { d: { [`month:${month}`]: { period: `month:${month}`, requests: 3, tokens: 900, usd: 0.5 } } } });
    const shapes = [good.replace('"spend"', '"Spend"'), good.replace('"version":2', '"version":3'), '[]', '{"version":2}'];
    for (const text of shapes) {
      const dir = tempDir();
      const file = join(dir, 'gateway_state.json');
      writeFileSync(file, text);
      const store = new SpendStore(file);
      await store.load();
      const aside = readdirSync(dir).find((name) => name.startsWith('gateway_state.json.corrupt-'));
      assert.ok(aside !== undefined, `kept aside: ${text}`);
      assert.equal(readFileSync(join(dir, aside), 'utf8'), text);
      assert.equal(existsSync(file), false, 'not left to be overwritten by the next write');
    }
    // The same file as written is read.
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    writeFileSync(file, good);
    const store = new SpendStore(file);
    await store.load();
    assert.equal(readdirSync(dir).length, 1);
    assert.equal(store.entries()[0]?.[1].tokens, 900);
  });

  it('reads the other entries of a state file where one cannot be read, keeping the file as it was; and the first USD builds\' "keys"', async () => {
    const month = periodId('month', new Date());
    const entry = (tokens: number) => ({ period: `month:${month}`, requests: 1, tokens, usd: 0 });
    const dir = tempDir();
    const file = join(dir, 'gateway_state.json');
    const edited = (fields: Record<string, unknown>) => ({ [`month:${month}`]: { ...entry(4000), ...fields } });
    // Hand edits: a field renamed, a count that is not one. Read as 0, a budget would start again unseen.
    const text = JSON.stringify({
      version: 2,
      spend: { good: { [`month:${month}`]: entry(700) }, 'hY/vszUTbCir8BorzCGbyAeoaHAf9MQM4ZO349/G0DA=': { [`month:${month}`]: { tokens: 5 } }, odd: 7, renamed: edited({ tokens: undefined, token: 4000 }), text: edited({ usd: '0.5' }), negative: edited({ requests: -5 }), extra: edited({ note: 'x' }) },
    });
    writeFileSync(file, text);
    const store = new SpendStore(file);
    const said = (await stderrOf(() => store.load())).join('');
    // Named by the start of their digest: the whole of one would let a short key be guessed from stderr.
    assert.match(said, /for 6 keys \(by the start of their digest in the file: hY\/vszUT…, odd, renamed, text, negative, …\)/);
    assert.doesNotMatch(said, /hY\/vszUTb/);
    assert.deepEqual(store.entries().map(([digest, spend]) => [digest, spend.tokens]), [['good', 700]]);
    const kept = readdirSync(dir).find((name) => name.startsWith('gateway_state.json.corrupt-'));
    assert.ok(kept !== undefined && readFileSync(join(dir, kept), 'utf8') === text, 'the file as it was, kept');
    assert.ok(existsSync(file), 'the file itself stays, to be written again');
    // Written by the first builds with USD budgets: version 2, one period per key under "keys".
    const early = join(tempDir(), 'gateway_state.json');
    writeFileSync(early, JSON.stringify({ version: 2, keys: { abc: entry(500) } }));
    const read = new SpendStore(early);
    await read.load();
    assert.deepEqual(read.entries().map(([digest, spend]) => [digest, spend.tokens]), [['abc', 500]]);
  });
});

describe('several real keys', () => {
  const key = keyFile({ api_key: undefined, api_keys: ['sk-a', 'sk-b', 'sk-c'] });
  const pool: KeyPool = (key.targets[0] as Target).keys;

  it('are taken in turn, skipping one that is cooling down after a 429 or a 401', () => {
    const now = 1000;
    const none = new Set<number>();
    assert.deepEqual([pool.pick(none, now), pool.pick(none, now), pool.pick(none, now), pool.pick(none, now)], [0, 1, 2, 0]);
    // Keys that refused a request's model are passed over for it while another is not.
    assert.deepEqual([pool.pick(new Set([1, 2]), now), pool.pick(new Set([0, 2]), now), pool.pick(new Set([0, 1, 2]), now)], [0, 1, 2]);
    assert.equal(pool.otherAvailable(0, new Set([1, 2]), now), false);
    assert.equal(pool.otherAvailable(0, new Set([1]), now), true);
    pool.report(1, 429, 10_000, now);
    pool.report(2, 401, null, now);
    assert.deepEqual([pool.pick(none, now), pool.pick(none, now), pool.pick(none, now)], [0, 0, 0]);
    assert.equal(pool.pick(none, now + 10_001), 1, 'back after its cool-down');
    pool.report(0, 429, 50_000, now);
    pool.report(1, 429, 20_000, now);
    assert.equal(pool.pick(none, now + 100), 1, 'all cooling: the one that recovers first');
  });

  it('sit out an hour at most, whatever a retry-after asks (a misbehaving provider must not bench a key until a restart)', () => {
    const fresh = (keyFile({ api_key: undefined, api_keys: ['sk-a', 'sk-b'] }).targets[0] as Target).keys;
    const now = 1000;
    fresh.report(0, 429, 999_999_999_999_000, now);
    fresh.coolFor(1, Number.MAX_SAFE_INTEGER, now);
    assert.equal(fresh.allCooling(now + 3_599_999), true);
    assert.equal(fresh.allCooling(now + 3_600_000), false, 'back after an hour');
    assert.equal(fresh.pick(new Set(), now + 3_600_000), 0);
  });

  it('read retry-after in seconds, as a date, or in milliseconds', () => {
    assert.equal(retryAfterMs({ 'retry-after': '7' }), 7000);
    assert.equal(retryAfterMs({ 'retry-after-ms': '250' }), 250);
    // A date five seconds ahead (HTTP dates count whole seconds): the wait until then.
    const until = retryAfterMs({ 'retry-after': new Date(Date.now() + 5000).toUTCString() });
    assert.ok(until !== null && until > 3000 && until <= 5000, String(until));
    assert.equal(retryAfterMs({}), null);
  });
});

describe('retry backoff', () => {
  it('grows exponentially with jitter, honours retry-after, and never exceeds the cap', () => {
    assert.equal(backoffMs(0, null, 20_000, () => 0), 125);
    assert.equal(backoffMs(0, null, 20_000, () => 1), 250);
    assert.equal(backoffMs(3, null, 20_000, () => 1), 2000);
    assert.equal(backoffMs(0, 3000, 20_000, () => 0), 3000);
    assert.equal(backoffMs(10, null, 5000, () => 1), 5000);
  });
});
