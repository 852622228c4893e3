import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DEPTH, TooDeep } from '../src/formats/json-limits.js';
import { JsonSeries } from '../src/formats/json-series.js';
import { ResponseAssembler } from '../src/formats/responses/assemble.js';
import { random } from '../bench/fixtures.js';

/** JSON.parse's verdict on a text: its value (as JSON, so key order counts) or that it threw. */
function verdict(parse: (text: string) => unknown, text: string): { value: unknown; json: string } | 'throws' {
  try {
    const value = parse(text);
    return { value, json: JSON.stringify(value) };
  } catch (err) {
    assert.ok(err instanceof SyntaxError, `only JSON.parse's own error: ${String(err)}`);
    return 'throws';
  }
}

function sameAsJsonParse(series: JsonSeries, text: string, message: string): unknown {
  const expected = verdict(JSON.parse, text);
  const got = verdict((t) => series.parse(t), text);
  if (expected === 'throws' || got === 'throws') {
    assert.equal(got, expected, message);
    return undefined;
  }
  assert.deepStrictEqual(got.value, expected.value, message);
  assert.equal(got.json, expected.json, message);
  return got.value;
}

const chunk = (content: string): string =>
  `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"logprobs":null,"finish_reason":null}],"obfuscation":{"k":[1,2]}}`;

describe('JsonSeries', () => {
  it('gives what JSON.parse gives for a chat stream, reusing what did not change once it learned the shape', () => {
    const series = new JsonSeries();
    const values = ['Hel', 'lo', ', wor', 'ld', '', ' é → 😀 \u2028', 'x'.repeat(5000)].map((content) => sameAsJsonParse(series, chunk(content), content) as { obfuscation: unknown; choices: Array<{ delta: unknown }> });
    // From the third on, only the objects on the way to the content are new.
    assert.equal(values[3]?.obfuscation, values[2]?.obfuscation);
    assert.notEqual(values[3]?.choices, values[2]?.choices);
    assert.notEqual(values[1]?.obfuscation, values[0]?.obfuscation);
  });

  it('parses whole a text whose new string has a quote, a backslash or a control character, and one that is not JSON', () => {
    const series = new JsonSeries();
    sameAsJsonParse(series, chunk('a'), 'a');
    sameAsJsonParse(series, chunk('b'), 'b');
    for (const content of ['say "hi"', 'back\\slash', 'new\nline', 'tab\t', '\u0000', '\\"', 'é\\u00e9']) sameAsJsonParse(series, chunk(content), JSON.stringify(content));
    const before = chunk('c').slice(0, chunk('c').indexOf('"c"') + 1);
    const after = chunk('c').slice(chunk('c').indexOf('"c"') + 2);
    // The learned shape around characters that end the string early, or escape its end.
    for (const inside of ['"', 'x"y', '\\', 'x\\', '"},"extra":"', '\u0001']) sameAsJsonParse(series, `${before}${inside}${after}`, JSON.stringify(inside));
    sameAsJsonParse(series, `${before}c${after.slice(0, -1)}`, 'cut short');
  });

  it('learns the shape of OpenAI chunks, whose content and random obfuscation both change', () => {
    const openai = (content: string, obfuscation: string): string =>
      `{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"logprobs":null,"finish_reason":null,"content_filter_results":{}}],"obfuscation":${JSON.stringify(obfuscation)}}`;
    const series = new JsonSeries();
    const texts = [openai('The', 'k3f'), openai(' quick', 'Zq'), openai(' brown', 'Zq'), openai(' fox', 'p0Yx1'), openai('', 'a'), openai('"', 'b'), openai(' ok', 'x\\y')];
    const values = texts.map((text) => sameAsJsonParse(series, text, text) as { choices: unknown[] });
    assert.notEqual(values[3]?.choices, values[2]?.choices, 'rebuilt along the content');
    const reuse = values.slice(2, 5).map((value) => (value.choices[0] as { logprobs: unknown; delta: unknown }).delta);
    assert.equal(new Set(reuse).size, 3);
    // What did not change is the first text's own object (Azure's empty filter results), shared by
    // every text that fitted the shape learned from the first two; the second was parsed whole.
    const filters = values.map((value) => (value.choices[0] as { content_filter_results: unknown }).content_filter_results);
    for (const k of [2, 3, 4]) assert.equal(filters[k], filters[0], `text ${k} fitted the shape`);
    assert.notEqual(filters[1], filters[0]);
  });

  it('never takes a member name that changed for a value (duplicate keys make it look like one)', () => {
    for (const texts of [
      ['{"p":"q","q":"p","p":"q"}', '{"p":"q","q":"p","q":"q"}', '{"p":"q","q":"p","r":"q"}', '{"p":"q","q":"p","zz":"q"}'],
      ['{"a":"b","b":"a","a":"b"}', '{"a":"b","b":"a","b":"b"}', '{"a":"b","b":"a","zz":"b"}', '{"a":"b","b":"a","__proto__":"b"}'],
      ['{"a":"b","b":"a","a" :"b"}', '{"a":"b","b":"a","b" :"b"}', '{"a":"b","b":"a","zz" :"b"}'],
    ]) {
      const series = new JsonSeries();
      for (const text of texts) sameAsJsonParse(series, text, text);
    }
  });

  it('parses values nested as deep as a provider\'s may be, deeper than it compares, and refuses deeper ones', () => {
    const series = new JsonSeries();
    for (const letter of ['a', 'b', 'c', 'd']) {
      let value = series.parse(`${'['.repeat(MAX_DEPTH)}"${letter}"${']'.repeat(MAX_DEPTH)}`);
      let depth = 0;
      for (; Array.isArray(value); depth++) {
        assert.equal(value.length, 1);
        value = value[0];
      }
      assert.deepEqual([depth, value], [MAX_DEPTH, letter]);
    }
    assert.throws(() => series.parse(`${'['.repeat(8000)}"e"${']'.repeat(8000)}`), TooDeep);
    for (const letter of ['a', 'b', 'c']) sameAsJsonParse(series, `${'{"k":'.repeat(40)}"${letter}"${'}'.repeat(40)}`, letter);
  });

  it('learns nothing from texts that differ in a number, a key, a literal, spacing or more strings than it tracks', () => {
    const pairs: Array<[string, string, string]> = [
      ['{"n":1,"s":"a"}', '{"n":2,"s":"a"}', '{"n":3,"s":"a"}'],
      ['{"ka":"v"}', '{"kb":"v"}', '{"kc":"v"}'],
      ['{"b":true}', '{"b":false}', '{"b":null}'],
      ['{"a":"x", "b":"y"}', '{"a":"x",  "b":"y"}', '{"a":"x",   "b":"y"}'],
      ['{"a":"x","b":"y"}', '{"a":"X","b":"Y"}', '{"a":"z","b":"Y"}'],
      ['["a","b","c","d","e"]', '["A","B","C","D","E"]', '["1","2","3","4","5"]'],
      ['["a","a"]', '["b","b"]', '["c","d"]'],
      ['["a","b"]', '["a",["b"]]', '["a","c"]'],
    ];
    for (const texts of pairs) {
      const series = new JsonSeries();
      for (const text of texts) sameAsJsonParse(series, text, text);
    }
  });

  it('keeps JSON.parse\'s own answer with escaped quotes before the string, duplicate keys and __proto__ members', () => {
    const sequences = [
      // The quote before the changing text is escaped: the string starts earlier, with an escape in it.
      ['{"a":"q\\"word1"}', '{"a":"q\\"word2"}', '{"a":"q\\"word3"}'],
      ['{"a":"q\\\\"  ,"b":"w1"}', '{"a":"q\\\\"  ,"b":"w2"}', '{"a":"q\\\\"  ,"b":"w3"}'],
      // The shadowed duplicate changes: nothing changes in the value.
      ['{"k":"a1","k":"z"}', '{"k":"a2","k":"z"}', '{"k":"a3","k":"z"}'],
      // The winning duplicate changes.
      ['{"k":"z","k":"a1"}', '{"k":"z","k":"a2"}', '{"k":"z","k":"a3"}', '{"k":"z","k":"a4","k":"b"}'],
      ['{"__proto__":{"x":"a1"},"y":1}', '{"__proto__":{"x":"a2"},"y":1}', '{"__proto__":{"x":"a3"},"y":1}'],
      ['{"__proto__":"a1"}', '{"__proto__":"a2"}', '{"__proto__":"a3"}'],
      ['[["a1"],{"b":["c"]}]', '[["a2"],{"b":["c"]}]', '[["a3"],{"b":["c"]}]', '[["a4"],{"b":["d"]}]'],
    ];
    for (const texts of sequences) {
      const series = new JsonSeries();
      for (const text of texts) sameAsJsonParse(series, text, text);
    }
    const series = new JsonSeries();
    for (const text of ['{"__proto__":{"x":"a1"}}', '{"__proto__":{"x":"a2"}}', '{"__proto__":{"x":"a3"}}']) {
      const value = series.parse(text) as Record<string, unknown>;
      assert.equal(Object.getPrototypeOf(value), Object.prototype);
      assert.ok(Object.hasOwn(value, '__proto__'));
    }
  });

  it('copies each container on the changing strings\' paths, shares the rest, and never changes a value it gave before', () => {
    const text = (x: string, y: string, z: string): string => `{"m":{"x":${JSON.stringify(x)},"keep":[1],"y":${JSON.stringify(y)}},"z":${JSON.stringify(z)},"same":{"k":"v"}}`;
    const inputs: Array<[string, string, string]> = [['a', 'b', 'c'], ['d', 'e', 'f'], ['g', 'h', 'i'], ['j', 'k', 'l'], ['m', 'n', 'o']];
    const series = new JsonSeries();
    const values = inputs.map(([x, y, z]) => sameAsJsonParse(series, text(x, y, z), x) as { m: { keep: unknown }; same: unknown });
    // Every value still what JSON.parse gave for its own text, after those that followed it.
    values.forEach((value, i) => assert.equal(JSON.stringify(value), JSON.stringify(JSON.parse(text(...(inputs[i] as [string, string, string]))))));
    for (const k of [3, 4]) {
      assert.notEqual(values[k], values[k - 1]);
      assert.notEqual(values[k]?.m, values[k - 1]?.m, 'on the paths: new');
      assert.equal(values[k]?.m.keep, values[2]?.m.keep, 'beside them: shared');
      assert.equal(values[k]?.same, values[2]?.same);
    }
    const strings = new JsonSeries();
    for (const string of ['a1', 'a2', 'a3', 'a4']) assert.equal(sameAsJsonParse(strings, JSON.stringify(string), string), string);
  });

  it('agrees with JSON.parse on 20,000 random series of texts mutated from one another', () => {
    const next = random(18);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
    const pieces = ['"', '\\', '\\"', '\\\\', '\\u0041', 'a', 'é', ' ', ',', ':', '{', '}', '[', ']', '1', 'null', '\n', '\u0000', '"a"', '"__proto__"', '😀'];
    const seeds = [chunk('x'), '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}', '{"a":["b",{"c":"d"}],"e":"f","e":"g"}', '["p","q",1.5e3,{"r":"s"}]', '{"x":"\\"y"}'];
    const mutate = (text: string): string => {
      const roll = next();
      // Mostly: another plain string where the text has one (what a stream does).
      if (roll < 0.6) {
        const quotes = [...text.matchAll(/"([^"\\]*)"/g)];
        if (quotes.length > 0) {
          const match = pick(quotes);
          const at = (match.index as number) + 1;
          let inner = '';
          const length = Math.floor(next() * 6);
          for (let i = 0; i < length; i++) inner += next() < 0.85 ? pick(['w', 'o', 'r', 'd', ' ', '1']) : pick(pieces);
          return text.slice(0, at) + inner + text.slice(at + (match[1] as string).length);
        }
      }
      const at = Math.floor(next() * (text.length + 1));
      if (roll < 0.8) return text.slice(0, at) + pick(pieces) + text.slice(at);
      return text.slice(0, at) + text.slice(at + 1 + Math.floor(next() * 3));
    };
    for (let trial = 0; trial < 20_000; trial++) {
      const series = new JsonSeries();
      let text = pick(seeds);
      for (let step = 0; step < 6; step++) {
        sameAsJsonParse(series, text, `trial ${trial} step ${step}: ${text}`);
        text = mutate(text);
      }
    }
  });
});

describe('ResponseAssembler.reads', () => {
  it('matches every event add reads (and any text with an escape), not the deltas it ignores', () => {
    const reads = new ResponseAssembler().reads;
    for (const type of ['response.created', 'response.output_item.done', 'response.completed', 'response.incomplete', 'response.failed']) assert.ok(reads.test(JSON.stringify({ type, sequence_number: 1 })), type);
    assert.ok(reads.test('{"type":"response.complete\\u0064"}'));
    for (const type of ['response.output_text.delta', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.delta']) assert.ok(!reads.test(JSON.stringify({ type, delta: 'a response.created b' })), type);
  });
});
