import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { labelKey, mergeSnapshots, Metrics, REDIS_ERROR_KINDS, renderPrometheus, type RequestObservation } from '../src/observe/metrics.js';
import { ROOT } from './support/gateway.js';

const observation = (overrides: Partial<RequestObservation> = {}): RequestObservation => ({
  provider: 'openai',
  keyName: 'team-a',
  model: 'gpt-4o',
  modelServed: true,
  status: 200,
  durationSeconds: 0.3,
  upstreamTtfbSeconds: 0.2,
  overheadSeconds: 0.0004,
  targets: [],
  fallbacks: 0,
  upstreamModel: 'gpt-4o',
  costUsd: 0,
  promptTokens: 10,
  completionTokens: 5,
  ...overrides,
});

describe('metrics', () => {
  it('renders counters and cumulative histograms in the Prometheus text format', () => {
    const metrics = new Metrics();
    metrics.request(observation());
    metrics.request(observation({ status: 429, durationSeconds: 0.02, overheadSeconds: 0.00003, promptTokens: 0, completionTokens: 0 }));
    const text = renderPrometheus(metrics.snapshot({ gauges: { llm_gateway_requests_in_flight: 3 }, counters: { llm_gateway_log_write_failures_total: 2 } }));
    assert.match(text, /^# TYPE llm_gateway_requests_total counter$/m);
    assert.match(text, /^llm_gateway_requests_total\{provider="openai",key_name="team-a",model="gpt-4o",status="200"\} 1$/m);
    assert.match(text, /^llm_gateway_requests_total\{provider="openai",key_name="team-a",model="gpt-4o",status="429"\} 1$/m);
    assert.match(text, /^llm_gateway_prompt_tokens_total\{provider="openai",key_name="team-a",model="gpt-4o"\} 10$/m);
    assert.match(text, /^llm_gateway_completion_tokens_total\{provider="openai",key_name="team-a",model="gpt-4o"\} 5$/m);
    // Cumulative buckets: 0.02 s falls in le=0.025, 0.3 s in le=0.5.
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="0.01"\} 0$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="0.025"\} 1$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="0.5"\} 2$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="\+Inf"\} 2$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_sum\{provider="openai"\} 0.32$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_count\{provider="openai"\} 2$/m);
    // It times every client API, not only chat.
    assert.match(text, /^# HELP llm_gateway_request_duration_seconds Duration of requests of every client API \(chat, messages, responses and their other routes\), from arrival to the end of the response\.$/m);
    assert.match(text, /^llm_gateway_overhead_seconds_bucket\{provider="openai",le="0.00005"\} 1$/m);
    assert.match(text, /^llm_gateway_requests_in_flight 3$/m);
    assert.match(text, /^llm_gateway_log_write_failures_total 2$/m);
  });

  it('counts a value equal to a bucket bound in that bucket (le means less than or equal)', () => {
    const metrics = new Metrics();
    metrics.request(observation({ durationSeconds: 0.025 }));
    const text = renderPrometheus(metrics.snapshot());
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="0.01"\} 0$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_bucket\{provider="openai",le="0.025"\} 1$/m);
  });

  it('merges snapshots from several workers by summing', () => {
    const a = new Metrics();
    const b = new Metrics();
    a.request(observation());
    b.request(observation());
    b.request(observation({ provider: 'anthropic', model: 'claude' }));
    b.keyReload('ok');
    const merged = mergeSnapshots([a.snapshot({ gauges: { llm_gateway_requests_in_flight: 1 } }), b.snapshot({ gauges: { llm_gateway_requests_in_flight: 2 } })]);
    const text = renderPrometheus(merged);
    assert.match(text, /^llm_gateway_requests_total\{provider="openai",key_name="team-a",model="gpt-4o",status="200"\} 2$/m);
    assert.match(text, /^llm_gateway_requests_total\{provider="anthropic",key_name="team-a",model="claude",status="200"\} 1$/m);
    assert.match(text, /^llm_gateway_request_duration_seconds_count\{provider="openai"\} 2$/m);
    assert.match(text, /^llm_gateway_requests_in_flight 3$/m);
    assert.match(text, /^llm_gateway_key_reloads_total\{result="ok"\} 1$/m);
    // Redis is up for the instance only where it is for every worker: the least, not the sum.
    const up = (...values: number[]) => renderPrometheus(mergeSnapshots(values.map((value) => new Metrics().snapshot({ gauges: { llm_gateway_redis_up: value } }))));
    assert.match(up(1, 1), /^llm_gateway_redis_up 1$/m);
    assert.match(up(1, 0), /^llm_gateway_redis_up 0$/m);
    assert.match(up(0, 1, 1), /^llm_gateway_redis_up 0$/m);
  });

  it('escapes label values and caps client-chosen model names', () => {
    assert.equal(labelKey({ model: 'a"b\\c\nd' }), 'model="a\\"b\\\\c\\nd"');
    const metrics = new Metrics();
    for (let i = 0; i < 5100; i++) metrics.request(observation({ model: `m${i}` }));
    const series = metrics.snapshot().counters.llm_gateway_requests_total ?? {};
    assert.equal(Object.keys(series).length, 5001);
    assert.equal(series['provider="openai",key_name="team-a",model="(other)",status="200"'], 100);
  });

  it('names only models a provider has served: a refused or unknown name is counted with an empty model', () => {
    const metrics = new Metrics();
    metrics.request(observation({ model: 'junk', modelServed: false, status: 403 }));
    metrics.request(observation({ model: 'gpt-4o', modelServed: false, status: 400 }));
    metrics.request(observation({ model: 'gpt-4o', modelServed: true, status: 200 }));
    metrics.request(observation({ model: 'gpt-4o', modelServed: false, status: 429 }));
    const series = metrics.snapshot().counters.llm_gateway_requests_total ?? {};
    assert.deepEqual(series, {
      'provider="openai",key_name="team-a",model="",status="403"': 1,
      'provider="openai",key_name="team-a",model="",status="400"': 1,
      'provider="openai",key_name="team-a",model="gpt-4o",status="200"': 1,
      'provider="openai",key_name="team-a",model="gpt-4o",status="429"': 1,
    });
  });

  it('caps them again across workers (and workers that died): each caps only its own', () => {
    const workers = [0, 1, 2].map((w) => {
      const metrics = new Metrics();
      for (let i = 0; i < 3000; i++) metrics.request(observation({ model: `w${w}-m${i}` }));
      metrics.request(observation({ model: 'gpt-4o' }));
      return metrics.snapshot();
    });
    const series = mergeSnapshots(workers).counters.llm_gateway_requests_total ?? {};
    assert.equal(Object.keys(series).length, 5001);
    assert.equal(series['provider="openai",key_name="team-a",model="gpt-4o",status="200"'], 3, 'a series already counted keeps its name');
    // 9,003 requests: 5,000 in the series first seen (gpt-4o's among them, counted 3 times), the rest folded.
    assert.equal(series['provider="openai",key_name="team-a",model="(other)",status="200"'], 9003 - 5000 - 2);
    assert.equal(Object.values(series).reduce((sum, n) => sum + n, 0), 9003, 'nothing lost');
  });

  it('folds the model label alone, whatever other labels hold: a key named "evil,model=" keeps its name (the scrape stayed valid)', () => {
    for (const keyName of ['evil,model=', 'x",model="y', 'model="', '\\",model=\\"']) {
      const metrics = new Metrics();
      for (let i = 0; i < 5003; i++) metrics.request(observation({ keyName, model: `m${i}` }));
      const key = labelKey({ provider: 'openai', key_name: keyName, model: '(other)', status: '200' });
      // One process (its one snapshot summed as the instance), and two workers' sum.
      for (const [merged, folded] of [[mergeSnapshots([metrics.snapshot()]), 3], [mergeSnapshots([metrics.snapshot(), metrics.snapshot()]), 6]] as const) {
        const series = merged.counters.llm_gateway_requests_total ?? {};
        assert.equal(Object.keys(series).length, 5001, keyName);
        assert.equal(series[key], folded, keyName);
        const text = renderPrometheus(merged);
        const line = text.split('\n').find((row) => row.startsWith('llm_gateway_requests_total{') && row.includes('(other)'));
        assert.equal(line, `llm_gateway_requests_total{${key}} ${series[key]}`, keyName);
      }
    }
  });

  it('keeps a series once shown in the instance\'s sum, whichever worker\'s counters come first next time', () => {
    const worker = (prefix: string, n: number) => {
      const metrics = new Metrics();
      for (let i = 0; i < n; i++) metrics.request(observation({ model: `${prefix}${i}` }));
      return metrics.snapshot();
    };
    const retired = worker('old-', 1);
    const admitted = new Map<string, Set<string>>();
    const first = mergeSnapshots([retired, worker('live-', 10)], admitted).counters.llm_gateway_requests_total ?? {};
    assert.equal(first['provider="openai",key_name="team-a",model="old-0",status="200"'], 1);
    // Later a live worker has reached the cap, and its counters come first.
    const later = mergeSnapshots([worker('live-', 5000), retired], admitted).counters.llm_gateway_requests_total ?? {};
    assert.equal(later['provider="openai",key_name="team-a",model="old-0",status="200"'], 1, 'still shown');
    assert.equal(Object.keys(later).length, 5001);
  });
});

describe('metrics labels', () => {
  it('writes a series Prometheus would read twice once: a model named "(other)" beside the folded ones, names differing only in lone surrogates', () => {
    const metrics = new Metrics();
    for (let i = 0; i < 200; i++) metrics.request(observation({ model: '(other)' }));
    const other = 'provider="openai",key_name="team-a",model="(other)",status="200"';
    assert.equal(metrics.snapshot().counters.llm_gateway_requests_total?.[other], 200);
    for (let i = 0; i < 5000; i++) metrics.request(observation({ model: `m${i}` })); // the last one past the cap
    assert.equal(metrics.snapshot().counters.llm_gateway_requests_total?.[other], 201, 'counters never go down');
    const lone = new Metrics();
    for (const model of ['lone\ud800x', 'lone\ud801x', 'lone\udfffx', 'pair\ud83d\ude00']) lone.request(observation({ model }));
    assert.deepEqual(renderPrometheus(lone.snapshot()).match(/^llm_gateway_requests_total\{.*$/gm), [
      'llm_gateway_requests_total{provider="openai",key_name="team-a",model="lone\ufffdx",status="200"} 3',
      'llm_gateway_requests_total{provider="openai",key_name="team-a",model="pair\ud83d\ude00",status="200"} 1',
    ]);
  });

  it('survive model names with control characters', () => {
    const metrics = new Metrics();
    metrics.request(observation({ model: 'a\u0001b' }));
    assert.match(renderPrometheus(metrics.snapshot()), /^llm_gateway_requests_total\{provider="openai",key_name="team-a",model="a b",status="200"\} 1$/m);
    // Nor does one reach a terminal that shows /metrics: ESC sequences, CR, NUL, C1 become U+FFFD.
    metrics.request(observation({ model: 'x\u0000\u001b[31mRED\r\u0085y' }));
    const text = renderPrometheus(metrics.snapshot());
    assert.match(text, /^llm_gateway_requests_total\{provider="openai",key_name="team-a",model="x\ufffd\ufffd\[31mRED\ufffd\ufffdy",status="200"\} 1$/m);
    assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});

describe('llm_gateway_redis_errors_total', () => {
  it('explains every kind it counts, in its help text and in the README', () => {
    const metrics = new Metrics();
    for (const kind of REDIS_ERROR_KINDS) metrics.redisError(kind);
    const text = renderPrometheus(metrics.snapshot());
    const help = /^# HELP llm_gateway_redis_errors_total (.*)$/m.exec(text)?.[1] ?? '';
    const row = /^\| `llm_gateway_redis_errors_total` \|.*$/m.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[0] ?? '';
    for (const kind of REDIS_ERROR_KINDS) {
      assert.match(text, new RegExp(`^llm_gateway_redis_errors_total\\{kind="${kind}"\\} 1$`, 'm'));
      assert.match(help, new RegExp(`\\b${kind}: `), `the help text explains ${kind}`);
      assert.match(row, new RegExp(`\`${kind}\``), `the README's metrics table lists ${kind}`);
    }
  });
});
