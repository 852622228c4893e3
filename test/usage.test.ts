/**
 * Every API's usage in the one normalised shape that limits, budgets, metrics and the log use.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatUsage } from '../src/formats/chat/usage.js';
import { messagesTarget } from '../src/formats/messages/index.js';
import { messagesUsage } from '../src/formats/messages/usage.js';
import { responsesUsage } from '../src/formats/responses/usage.js';
import { keptUsage, promptTokens, tokenCount, toLoggedUsage, totalTokens } from '../src/formats/usage.js';
import { addToReport, emptyReport, parseTime, renderReport, reportJson } from '../src/report/usage-report.js';

describe('normalised usage', () => {
  it('OpenAI: cached tokens are inside prompt_tokens, reasoning inside completion_tokens', () => {
    const usage = chatUsage({ prompt_tokens: 100, completion_tokens: 40, total_tokens: 140, prompt_tokens_details: { cached_tokens: 30 }, completion_tokens_details: { reasoning_tokens: 25 } });
    assert.deepEqual(usage, { input: 70, output: 40, cacheRead: 30, cacheWrite: 0, cacheWrite1h: 0, reasoning: 25 });
    assert.equal(usage && promptTokens(usage), 100);
    assert.equal(usage && totalTokens(usage), 140);
  });

  it('DeepSeek: cache hits on their own field', () => {
    assert.deepEqual(chatUsage({ prompt_tokens: 11, completion_tokens: 7, prompt_cache_hit_tokens: 4, prompt_cache_miss_tokens: 7 }), { input: 7, output: 7, cacheRead: 4, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
  });

  it('Anthropic: input excludes cache reads and writes, which count apart', () => {
    const usage = messagesUsage({ input_tokens: 100, cache_creation_input_tokens: 2000, cache_read_input_tokens: 300, output_tokens: 50 });
    assert.deepEqual(usage, { input: 100, output: 50, cacheRead: 300, cacheWrite: 2000, cacheWrite1h: 0, reasoning: 0 });
    assert.equal(usage && totalTokens(usage), 2450);
    // The same usage after the chat translation (cache fields kept beside prompt_tokens) reads the same.
    assert.deepEqual(chatUsage({ prompt_tokens: 2400, completion_tokens: 50, cache_creation_input_tokens: 2000, cache_read_input_tokens: 300, prompt_tokens_details: { cached_tokens: 300 } }), usage);
  });

  it('counts that are not non-negative finite numbers count as 0; no usage is null', () => {
    for (const value of [-5, '12', null, undefined, Number.NaN, 1e999, {}]) assert.equal(tokenCount(value), 0, String(value));
    assert.equal(tokenCount(12.9), 12);
    // A main count that is there but unreadable: no usage (estimated instead), never a free answer.
    for (const odd of [{ prompt_tokens: -1e9, completion_tokens: 1e999 }, { prompt_tokens: '12', completion_tokens: 3 }, { prompt_tokens: 12, completion_tokens: { a: 1 } }]) assert.equal(chatUsage(odd), null, JSON.stringify(odd));
    assert.equal(messagesUsage({ input_tokens: 10, output_tokens: -3 }), null);
    assert.equal(responsesUsage({ input_tokens: '10', output_tokens: 3 }), null);
    // Absent ones count as 0 (Anthropic's message_delta names only output_tokens).
    assert.deepEqual(messagesUsage({ output_tokens: 7 }), { input: 0, output: 7, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
    // A whole answer always has its prompt count: without one, no usage (estimated), not a prompt of 0.
    assert.equal(messagesUsage({ output_tokens: 7 }, true), null);
    assert.equal(messagesTarget.usage({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-x', content: [], stop_reason: 'end_turn', stop_sequence: null, usage: { output_tokens: 7 } }), null);
    assert.equal(messagesUsage({ output_tokens: 7, cache_read_input_tokens: 900 }, true), null);
    assert.deepEqual(messagesUsage({ input_tokens: 0, output_tokens: 7 }, true), { input: 0, output: 7, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
    // Neither main count there (`"usage": {}`, a compatible server's): no usage either, not a free answer.
    for (const empty of [{}, { total_tokens: 50 }, { prompt_tokens: null, completion_tokens: null }, { completion_tokens: 180 }]) assert.equal(chatUsage(empty), null, JSON.stringify(empty));
    assert.equal(responsesUsage({ output_tokens: 180 }), null);
    assert.equal(messagesUsage({ cache_read_input_tokens: 5 }), null);
    assert.equal(responsesUsage({ total_tokens: 9 }), null);
    assert.equal(chatUsage(null), null);
    assert.equal(messagesUsage('x'), null);
  });

  it("a provider's own usage object is kept as it is when small and shallow, else as its top-level counts", () => {
    const anthropic = { input_tokens: 5, output_tokens: 2, cache_creation: { ephemeral_5m_input_tokens: 1, ephemeral_1h_input_tokens: 0 }, server_tool_use: { web_search_requests: 1 }, service_tier: 'standard' };
    assert.equal(keptUsage(anthropic), anthropic);
    assert.deepEqual(keptUsage({ input_tokens: 5, output_tokens: 2, tier: 'x', deep: [[[[[[1]]]]]] }), { input_tokens: 5, output_tokens: 2 });
    assert.deepEqual(keptUsage({ input_tokens: 5, many: Array.from({ length: 100 }, () => 1) }), { input_tokens: 5 });
    assert.equal(keptUsage([1, [2, [3, [4, [5]]]]]), null);
    assert.equal(keptUsage(7), 7);
  });

  it('is logged with snake_case names', () => {
    assert.deepEqual(toLoggedUsage({ input: 1, output: 2, cacheRead: 3, cacheWrite: 4, cacheWrite1h: 0, reasoning: 1 }), { input_tokens: 1, output_tokens: 2, cache_read_tokens: 3, cache_write_tokens: 4, reasoning_tokens: 1 });
  });
});

describe('npm run usage, the report', () => {
  const all = { since: null, until: null };
  const logged = (over: Record<string, unknown>) => ({ timestamp: '2026-12-01T00:00:00.000Z', key_name: 'team', provider: 'openai', model: 'gpt-4o-mini', status: 200, usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: 0.001, upstream: null, ...over });

  it('counts an entry whose timestamp is no time as an unreadable part, not silently out of range', () => {
    const report = emptyReport();
    addToReport(report, logged({ timestamp: 'not a date' }), all);
    addToReport(report, logged({}), all);
    assert.equal(report.skipped, 1);
    assert.match(renderReport(report, all, 'log.json'), /^1 request in log\.json, all time \(1 unreadable part skipped\)/);
  });

  it('shows a key or model name with characters that reorder or hide text (bidi overrides, zero-width) escaped, as control characters are', () => {
    const report = emptyReport();
    addToReport(report, logged({ key_name: 'team\u202eevil', model: 'gpt\u200b-4o\u001b[31m' }), all);
    const text = renderReport(report, all, 'log.json');
    assert.match(text, /team\\u202eevil/);
    assert.match(text, /openai\/gpt\\u200b-4o\\u001b\[31m/);
    assert.doesNotMatch(text, /[\u202e\u200b\u001b]/);
    // Invisible letters, soft hyphens, variation selectors, separators, tags (beyond U+FFFF), and a
    // name spelling an escape: each shown apart from the plain name and from one another.
    const more = emptyReport();
    for (const model of ['gpt-4o', 'gpt-4o\u00ad', 'gpt-4o\ufe0f', 'gpt-4o\u2028', 'gpt-4o\u{e0041}', 'gpt-4o\u3164', 'gpt-4o\\u00ad']) addToReport(more, logged({ model }), all);
    const rows = renderReport(more, all, 'log.json');
    for (const shown of ['openai/gpt-4o\\u00ad', 'openai/gpt-4o\\ufe0f', 'openai/gpt-4o\\u2028', 'openai/gpt-4o\\u{e0041}', 'openai/gpt-4o\\u3164', 'openai/gpt-4o\\\\u00ad']) {
      assert.ok(rows.split('\n').some((line) => line.startsWith(`${shown} `)), `${shown} in\n${rows}`);
    }
    assert.doesNotMatch(rows, /[\u00ad\ufe0f\u2028\u3164]|\u{e0041}/u);
    // --json: the names as logged (JSON has escapes of its own), not the table's spelling of them.
    const json = reportJson(report, all) as { by_key: Record<string, unknown>; by_model: Record<string, unknown> };
    assert.deepEqual(Object.keys(json.by_key), ['team\u202eevil']);
    assert.deepEqual(Object.keys(json.by_model), ['openai/gpt\u200b-4o\u001b[31m']);
  });

  it('adds thousands of small costs up to what the rows show (no float drift in the total)', () => {
    const report = emptyReport();
    for (let i = 0; i < 30_000; i++) addToReport(report, logged({ key_name: `team-${i % 3}`, cost_usd: 0.01 }), all);
    const json = reportJson(report, all) as { total: { cost_usd: number }; by_key: Record<string, { cost_usd: number }> };
    assert.equal(json.total.cost_usd, 300);
    assert.deepEqual(Object.values(json.by_key).map((row) => row.cost_usd), [100, 100, 100]);
  });

  it('takes a time before now only as far back as a date can be (else it is no time)', () => {
    const now = Date.parse('2026-12-05T00:00:00Z');
    assert.equal(parseTime('30m', now), now - 30 * 60_000);
    assert.equal(parseTime('9999999999999999999m', now), null);
    assert.equal(parseTime('100000000000d', now), null);
    assert.equal(typeof parseTime('200000000h', now), 'number');
  });
});
