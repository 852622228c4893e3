/**
 * Every API's usage in the one normalised shape that limits, budgets, metrics and the log use.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatUsage } from '../src/formats/chat/usage.js';
import { messagesUsage } from '../src/formats/messages/usage.js';
import { responsesUsage } from '../src/formats/responses/usage.js';
import { promptTokens, tokenCount, toLoggedUsage, totalTokens } from '../src/formats/usage.js';

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
    assert.equal(chatUsage(null), null);
    assert.equal(messagesUsage('x'), null);
  });

  it('is logged with snake_case names', () => {
    assert.deepEqual(toLoggedUsage({ input: 1, output: 2, cacheRead: 3, cacheWrite: 4, cacheWrite1h: 0, reasoning: 1 }), { input_tokens: 1, output_tokens: 2, cache_read_tokens: 3, cache_write_tokens: 4, reasoning_tokens: 1 });
  });
});
