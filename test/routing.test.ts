/**
 * Several targets per virtual key, the pure parts: keys.json's `targets`, `strategy`,
 * `fallback_on`, `timeout_ms` and `circuit_breaker` (every problem named with the target's index),
 * the order a request tries targets in, and the circuit breaker.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CircuitBreaker } from '../src/policy/breaker.js';
import { ConfigFileError } from '../src/config-file-error.js';
import { parseKeyFile, type VirtualKey } from '../src/policy/keys.js';
import { targetFor, targetOrder } from '../src/policy/routing.js';
import { namesFor } from '../src/policy/shared-events.js';
import { registry as providers } from '../src/providers/index.js';

function parse(keys: Record<string, unknown>): VirtualKey[] {
  return parseKeyFile(JSON.stringify({ virtual_keys: keys }), 'keys.json', providers);
}

function problems(keys: Record<string, unknown>): string[] {
  try {
    parse(keys);
  } catch (err) {
    if (err instanceof ConfigFileError) return err.problems;
    throw err;
  }
  return [];
}

const twoTargets = {
  name: 'gpt-with-claude',
  targets: [
    { provider: 'openai', api_key: 'sk-a', model_map: { 'gpt-5': 'gpt-5' } },
    { provider: 'anthropic', api_key: 'sk-ant-b', model_map: { '*': 'claude-sonnet-5' }, max_output_tokens: 64000, weight: 3 },
  ],
  models: ['gpt-5'],
  rate_limit: { requests_per_minute: 10 },
};

describe('targets in keys.json', () => {
  it('reads each target with its own provider, keys, model map, output cap and weight; limits stay the key\'s', () => {
    const [key] = parse({ vk_multi: twoTargets });
    assert.equal(key?.targets.length, 2);
    assert.deepEqual(key?.targets.map((target) => [target.index, target.provider.name, target.keys.apiKeys[0], target.weight, target.maxOutputTokens]), [
      [0, 'openai', 'sk-a', 1, null],
      [1, 'anthropic', 'sk-ant-b', 3, 64000],
    ]);
    assert.equal(key?.targets[1]?.modelMap?.map('gpt-5'), 'claude-sonnet-5');
    assert.equal(key?.strategy, 'fallback');
    assert.deepEqual([...(key?.fallbackOn ?? [])], [401, 403, 429, 500, 502, 503, 504, 529]);
    assert.equal(key?.rateLimit?.requestsPerMinute, 10);
    assert.equal(key?.timeoutMs, null);
  });

  it('keeps the one-provider form as one target', () => {
    const [key] = parse({ vk_one: { provider: 'deepseek', api_key: 'sk-d', model_map: { '*': 'deepseek-chat' }, max_output_tokens: 8192 } });
    assert.equal(key?.targets.length, 1);
    assert.deepEqual([key?.targets[0]?.provider.name, key?.targets[0]?.maxOutputTokens, key?.targets[0]?.modelMap?.map('x')], ['deepseek', 8192, 'deepseek-chat']);
  });

  it('names every problem, with the target\'s index', () => {
    const found = problems({
      vk_a: { targets: [{ provider: 'openai', api_key: 'sk-a', weight: 0 }, { provider: 'nope', api_key: 'k' }, 'x', { provider: 'openai', api_key: 'k', typo: 1 }] },
      vk_b: { provider: 'openai', api_key: 'sk', targets: [{ provider: 'openai', api_key: 'k' }] },
      vk_c: { targets: [] },
      vk_d: { targets: [{ provider: 'openai', api_key: 'k' }], strategy: 'random', fallback_on: [429, 400], timeout_ms: -1, circuit_breaker: { failures: 0 } },
    });
    const expectations = [
      /#1 .*targets\[0\]: "weight" must be a positive number/,
      /#1 .*targets\[1\]: unknown provider "nope"/,
      /#1 .*targets\[2\] must be an object/,
      /#1 .*targets\[3\]: unknown field "typo"/,
      /#2 .*"provider", "api_key" belong inside each of "targets"/,
      /#3 .*"targets" must be a non-empty array/,
      /#4 .*"strategy" must be "fallback".*or "weighted"/,
      /#4 .*"fallback_on" must be a list of HTTP statuses .* without 400, 404 and 422/,
      /#4 .*"timeout_ms" must be a positive integer/,
      /#4 .*"circuit_breaker" must be/,
    ];
    for (const expected of expectations) assert.ok(found.some((problem) => expected.test(problem)), `missing ${expected} in:\n${found.join('\n')}`);
    assert.equal(found.length, expectations.length, found.join('\n'));
  });
});

describe('routing fields that cannot work', () => {
  it('refuses routing fields on a key with one target, a null timeout, and weights no number can hold', () => {
    const found = problems({
      vk_a: { provider: 'mock', strategy: 'weighted', fallback_on: [503] },
      vk_b: { provider: 'mock', timeout_ms: null },
      vk_c: { strategy: 'weighted', targets: [{ provider: 'mock', weight: 1e308 }, { provider: 'mock', weight: 1e308 }] },
    });
    assert.equal(found.length, 3, found.join('\n'));
    assert.match(found[0] ?? '', /#1 .*"strategy", "fallback_on" only mean something for a key with several "targets"/);
    assert.match(found[1] ?? '', /#2 .*"timeout_ms" must be a positive integer/);
    assert.match(found[2] ?? '', /#3 .*weights add up to more than a number can hold/);
  });
});

describe('the order a request tries targets in', () => {
  const [fallback] = parse({ vk: { targets: [{ provider: 'mock' }, { provider: 'mock' }, { provider: 'mock' }] } });
  const [weighted] = parse({ vk: { strategy: 'weighted', targets: [{ provider: 'mock', weight: 3 }, { provider: 'mock', weight: 1 }, { provider: 'mock', weight: 1 }] } });

  it('fallback: as listed', () => {
    assert.deepEqual(targetOrder(fallback as VirtualKey).map((target) => target.index), [0, 1, 2]);
  });

  it('weighted: the first by weight, the others as listed after it', () => {
    const order = (point: number) => targetOrder(weighted as VirtualKey, () => point).map((target) => target.index);
    assert.deepEqual(order(0), [0, 1, 2]);
    assert.deepEqual(order(0.59), [0, 1, 2]);
    assert.deepEqual(order(0.61), [1, 0, 2]);
    assert.deepEqual(order(0.99), [2, 0, 1]);
  });

  it('weighted: over 10,000 picks each target leads its share, within 2 points', () => {
    const counts = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      const first = targetOrder(weighted as VirtualKey)[0]?.index ?? -1;
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    const share = (index: number): number => (counts.get(index) ?? 0) / 10_000;
    assert.ok(Math.abs(share(0) - 0.6) < 0.02, JSON.stringify([...counts]));
    assert.ok(Math.abs(share(1) - 0.2) < 0.02, JSON.stringify([...counts]));
  });

  it('a request that needs one target takes the first that speaks its API', () => {
    const [key] = parse({ vk: { targets: [{ provider: 'deepseek', api_key: 'k' }, { provider: 'anthropic', api_key: 'k' }, { provider: 'openai', api_key: 'k' }] } });
    assert.equal(targetFor(key as VirtualKey, 'messages').index, 1);
    assert.equal(targetFor(key as VirtualKey, 'responses').index, 2);
    assert.equal(targetFor(key as VirtualKey, 'chat').index, 0);
  });
});

describe('the circuit breaker', () => {
  it('opens after its failures in a row, lets one probe through after the cool-down, and closes on its success', () => {
    const breaker = new CircuitBreaker(3, 1000);
    breaker.failure(0);
    breaker.failure(0);
    assert.equal(breaker.admit(10), 'pass');
    breaker.success();
    for (let i = 0; i < 3; i++) breaker.failure(100);
    assert.equal(breaker.state(500), 'open');
    assert.equal(breaker.admit(500), null);
    assert.equal(breaker.state(1100), 'half-open');
    assert.equal(breaker.admit(1100), 'probe');
    assert.equal(breaker.admit(1101), null, 'one probe at a time');
    breaker.success();
    assert.equal(breaker.state(1102), 'closed');
  });

  it('lets a probe go again when the one admitted neither succeeded nor failed (the client left)', () => {
    const breaker = new CircuitBreaker(1, 1000);
    breaker.failure(0);
    assert.equal(breaker.admit(1000), 'probe');
    breaker.release();
    assert.equal(breaker.admit(1001), 'probe');
  });

  it('opens again when the probe fails', () => {
    const breaker = new CircuitBreaker(2, 1000);
    breaker.failure(0);
    breaker.failure(0);
    assert.equal(breaker.admit(1000), 'probe');
    breaker.failure(1000);
    assert.equal(breaker.admit(1500), null);
    assert.equal(breaker.admit(2000), 'probe');
  });
});

describe('the names of targets and real keys shared between instances (Redis)', () => {
  const target = (map: string, keys: string[]) => ({ provider: 'openai', api_keys: keys, model_map: { '*': map } });
  const names = (targets: unknown[]) => {
    const key = parse({ vk_names_0123456789: { targets } })[0] as VirtualKey;
    return key.targets.map((each) => namesFor(key.targets).get(each));
  };

  it('follow what a target is, not its place: the same in a file that lists them the other way round', () => {
    const [main, mini] = names([target('gpt-5', ['sk-a-0123456789', 'sk-b-0123456789']), target('gpt-5-mini', ['sk-a-0123456789'])]);
    const [miniAgain, mainAgain] = names([target('gpt-5-mini', ['sk-a-0123456789']), target('gpt-5', ['sk-b-0123456789', 'sk-a-0123456789'])]);
    assert.notEqual(main?.target, mini?.target, 'same provider, URL and key, another model map: another target');
    assert.equal(mainAgain?.target, main?.target);
    assert.equal(miniAgain?.target, mini?.target);
    assert.deepEqual([...(mainAgain?.keys ?? [])].reverse(), main?.keys, 'each real key keeps its name wherever it stands');
    for (const name of [main?.target, ...(main?.keys ?? [])]) assert.match(String(name), /^[0-9a-f]{16}$/);
  });

  it('keep a target its name when a real key is added to it; tell targets alike in all but their keys apart by their order', () => {
    const [before] = names([target('gpt-5', ['sk-a-0123456789'])]);
    const [after] = names([target('gpt-5', ['sk-a-0123456789', 'sk-c-0123456789'])]);
    assert.equal(after?.target, before?.target);
    const [first, second] = names([target('gpt-5', ['sk-a-0123456789']), target('gpt-5', ['sk-b-0123456789'])]);
    assert.notEqual(first?.target, second?.target);
  });
});
