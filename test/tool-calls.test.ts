import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArgumentsEnd, StreamedToolCalls } from '../src/formats/chat/tool-calls.js';

/** What "whole" means: the text so far is one JSON object (with whitespace around it). */
function wholeByParsing(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** Feeds `text` cut at `cuts`, asking after each fragment; returns each answer with the text so far. */
function answers(text: string, cuts: number[]): Array<[string, boolean]> {
  const end = new ArgumentsEnd();
  const out: Array<[string, boolean]> = [];
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    end.feed(text.slice(from, cut));
    from = cut;
    const sofar = text.slice(0, cut);
    out.push([sofar, end.whole(sofar) !== null]);
  }
  return out;
}

const TEXTS = [
  '{}',
  ' {"city": "Paris", "unit": "°C"} \n',
  '{"a": [1, {"b": "}"}], "c": "\\"}", "d": "\\\\"}',
  '{"q": "{[\\"]}", "n": null, "t": true, "x": 1.5e3}',
  '{"a": 1}}',
  '{"a": 1} x',
  '{a}',
  '{"a": }',
  '[1, 2]',
  '"{}"',
  '1',
  '{"a": [}]}',
  '{"a": "b"}\t\r\n ',
  '{"a": "\\u007d"}',
  '{"a":{"b":{"c":[[["}"]]]}}}',
  '{"a": 1}{"b": 2}',
  '',
  '   ',
  '{"a": "x"\u00a0}',
];

describe('which call a streamed fragment belongs to', () => {
  /** The calls the fragments make: each with its id, name and joined arguments. */
  function calls(fragments: unknown[]): Array<{ id: string; name: string; args: string }> {
    const placer = new StreamedToolCalls<{ id: string; name: string; args: string }>();
    const made: Array<{ id: string; name: string; args: string }> = [];
    for (const fragment of fragments) {
      const placed = placer.place(fragment, (id, name) => ({ id, name, args: '' }), (n) => `call_${n}`);
      if (placed === null) continue;
      if (placed.started) made.push(placed.call);
      else if (placed.name !== null) placed.call.name += placed.name;
      placed.call.args += placed.arguments;
    }
    return made;
  }

  it('by index; a new id at a used index is another call (Ollama numbers every call 0)', () => {
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'f', arguments: '{"x":' } },
      { index: 0, function: { arguments: '1}' } },
      { index: 0, id: 'b', function: { name: 'g', arguments: '{}' } },
    ]), [{ id: 'a', name: 'f', args: '{"x":1}' }, { id: 'b', name: 'g', args: '{}' }]);
  });

  it("a call begun without an id takes the server's when it comes late, and continues; a new id before its arguments are whole continues the call (a server that sends one on every fragment)", () => {
    const placer = new StreamedToolCalls<{ args: string }>();
    const place = (fragment: unknown) => placer.place(fragment, () => ({ args: '' }), (n) => `call_${n}`);
    const first = place({ index: 0, function: { name: 'get_weather', arguments: '{"city":' } });
    const late = place({ index: 0, id: 'call_LATE', function: { arguments: '"Paris"}' } });
    assert.equal(late?.call, first?.call);
    assert.equal(late?.started, false);
    assert.equal(late?.lateId, 'call_LATE');
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'f', arguments: '{"x"' } },
      { index: 0, id: 'b', function: { name: 'f', arguments: ':1' } },
      { index: 0, id: 'c', function: { arguments: '}' } },
      { index: 1, function: { name: 'g', arguments: '{' } },
      { index: 1, id: 'late', function: { name: 'g', arguments: '}' } },
    ]), [{ id: 'a', name: 'ff', args: '{"x":1}' }, { id: 'call_1', name: 'gg', args: '{}' }]);
  });

  it("a new id naming another function at a used index is another call, whatever the first call's arguments (none, or never whole)", () => {
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'list', arguments: '' } },
      { index: 0, id: 'b', function: { name: 'read', arguments: '{"path":"x"}' } },
      { index: 0, id: 'c', function: { name: 'get_time', arguments: '{"tz": "Europe/Par' } },
      { index: 0, id: 'd', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ]), [{ id: 'a', name: 'list', args: '' }, { id: 'b', name: 'read', args: '{"path":"x"}' }, { id: 'c', name: 'get_time', args: '{"tz": "Europe/Par' }, { id: 'd', name: 'get_weather', args: '{"city":"Paris"}' }]);
    // A call begun without an id whose arguments are whole: a new id after it is another call, not its late id.
    assert.deepEqual(calls([
      { index: 0, function: { name: 'f', arguments: '{"x":1}' } },
      { index: 0, id: 'b', function: { name: 'f', arguments: '{"y":2}' } },
    ]), [{ id: 'call_0', name: 'f', args: '{"x":1}' }, { id: 'b', name: 'f', args: '{"y":2}' }]);
    // A fragment with nothing but a new id after a whole call starts nothing.
    assert.deepEqual(calls([
      { index: 0, id: 'a1', function: { name: 'f', arguments: '{"x":1}' } },
      { index: 0, id: 'a2', function: { arguments: '' } },
    ]), [{ id: 'a1', name: 'f', args: '{"x":1}' }]);
  });

  it('a fragment that begins with all of its call\'s arguments so far brings only the rest: servers that send them so far each time, or all again at the end', () => {
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'f', arguments: '{"x"' } },
      { index: 0, id: 'a', function: { name: 'f', arguments: '{"x": 1' } },
      { index: 0, id: 'a', function: { name: 'f', arguments: '{"x": 1}' } },
      { index: 1, id: 'b', function: { name: 'g', arguments: '' } },
      { index: 1, function: { arguments: '{"y":' } },
      { index: 1, function: { arguments: ' "{\\"y\\":"}' } },
      { index: 1, id: 'b', function: { name: 'g', arguments: '{"y": "{\\"y\\":"}' } },
      { index: 1, function: { arguments: '' } },
    ]), [{ id: 'a', name: 'fff', args: '{"x": 1}' }, { id: 'b', name: 'gg', args: '{"y": "{\\"y\\":"}' }]);
    // A fragment shorter than the text so far, or not beginning with all of it, is new text.
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'f', arguments: '{' } },
      { index: 0, function: { arguments: '"{' } },
      { index: 0, function: { arguments: '":"{\\"{"}' } },
    ]), [{ id: 'a', name: 'f', args: '{"{":"{\\"{"}' }]);
  });

  it('a fragment that begins with all the text so far is new text where arguments repeat themselves: the reading that keeps them an object, or that closes it', () => {
    // `{"and":` then `{"and":{"x":1}}}`: read as a resend, `{"and":{"x":1}}}` is no object.
    assert.deepEqual(calls([
      { index: 0, id: 'a', function: { name: 'filter', arguments: '{"and":' } },
      { index: 0, function: { arguments: '{"and":{"x":1}}}' } },
    ]), [{ id: 'a', name: 'filter', args: '{"and":{"and":{"x":1}}}' }]);
    // Or a list of copies of itself: `{"a":[` then `{"a":[]}]}` (nothing but closing brackets after the copy).
    assert.deepEqual(calls([
      { index: 0, id: 'h', function: { name: 'tree', arguments: '{"a":[' } },
      { index: 0, function: { arguments: '{"a":[]}]}' } },
    ]), [{ id: 'h', name: 'tree', args: '{"a":[{"a":[]}]}' }]);
    // Nested 200 deep, cut at 500 characters: the rest begins with the first 500 again.
    const nested = `${'{"a":'.repeat(200)}1${'}'.repeat(200)}`;
    assert.deepEqual(calls([
      { index: 0, id: 'b', function: { name: 'f', arguments: nested.slice(0, 500) } },
      { index: 0, function: { arguments: nested.slice(500) } },
    ]), [{ id: 'b', name: 'f', args: nested }]);
    // Sent again whole at the end: a resend.
    assert.deepEqual(calls([
      { index: 0, id: 'c', function: { name: 'f', arguments: '{"a":' } },
      { index: 0, function: { arguments: '{"a":1}' } },
    ]), [{ id: 'c', name: 'f', args: '{"a":1}' }]);
    // Resent so far each time, cut inside strings that hold braces (code in an edit): resends, however
    // the braces would balance read from the wrong place.
    const edit = '{"file_path":"a.js","old_string":"}\\nfoo();","new_string":"}"}';
    assert.deepEqual(calls([3, 35, 40, edit.length].map((cut) => ({ index: 0, id: 'd', function: { name: 'Edit', arguments: edit.slice(0, cut) } }))), [{ id: 'd', name: 'EditEditEditEdit', args: edit }]);
    // A server seen resending goes on being read so, even where arguments with a brace too many would read as more.
    const extra = '{"a":{"b":1}}}';
    assert.deepEqual(calls([2, 8, 11, extra.length].map((cut) => ({ index: 0, id: 'e', function: { arguments: extra.slice(0, cut) } }))), [{ id: 'e', name: '', args: extra }]);
  });

  it('arguments sent as an object are its JSON text', () => {
    assert.deepEqual(calls([{ index: 0, id: 'a', function: { name: 'f', arguments: { city: 'Paris' } } }]), [{ id: 'a', name: 'f', args: '{"city":"Paris"}' }]);
  });

  it('without an index: the last call, unless the fragment brings another id (some servers repeat the id on every fragment)', () => {
    assert.deepEqual(calls([
      { id: 'call_1', function: { name: 'shell', arguments: '{"cmd":' } },
      { id: 'call_1', function: { arguments: '"ls"}' } },
      { function: { arguments: '' } },
      { id: 'call_2', function: { name: 'read', arguments: '{}' } },
    ]), [{ id: 'call_1', name: 'shell', args: '{"cmd":"ls"}' }, { id: 'call_2', name: 'read', args: '{}' }]);
  });

  it('without an index, fragments of interleaved calls find their call by its id', () => {
    assert.deepEqual(calls([
      { id: 'call_A', function: { name: 'get_weather', arguments: '{"cit' } },
      { id: 'call_B', function: { name: 'get_time', arguments: '{"zo' } },
      { id: 'call_A', function: { arguments: 'y":"Paris"}' } },
      { id: 'call_B', function: { arguments: 'ne":"CET"}' } },
    ]), [{ id: 'call_A', name: 'get_weather', args: '{"city":"Paris"}' }, { id: 'call_B', name: 'get_time', args: '{"zone":"CET"}' }]);
  });
});

describe('where a call\'s streamed arguments end', () => {
  it('says whole exactly when the text so far is one JSON object, after every fragment, cut at every character', () => {
    for (const text of TEXTS) {
      const everyCharacter = Array.from({ length: text.length }, (_, i) => i);
      for (const [sofar, whole] of answers(text, everyCharacter)) assert.equal(whole, wholeByParsing(sofar), `${JSON.stringify(sofar)} of ${JSON.stringify(text)}`);
      for (let cut = 0; cut <= text.length; cut++) {
        for (const [sofar, whole] of answers(text, [cut])) assert.equal(whole, wholeByParsing(sofar), `${JSON.stringify(sofar)} cut at ${cut}`);
      }
    }
  });

  it('agrees with parsing on 20,000 random texts of JSON\'s punctuation, at every prefix', () => {
    const alphabet = ['{', '}', '[', ']', '"', '\\', ':', ',', ' ', 'a', '1', 'u', '\n'];
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let wholeSeen = 0;
    for (let round = 0; round < 20_000; round++) {
      let text = random(2) === 0 ? '{' : '';
      const length = random(14);
      for (let i = 0; i < length; i++) text += alphabet[random(alphabet.length)];
      if (random(3) === 0) text += '}';
      const cuts = Array.from({ length: text.length }, (_, i) => i).filter(() => random(3) === 0);
      for (const [sofar, whole] of answers(text, cuts)) {
        assert.equal(whole, wholeByParsing(sofar), `${JSON.stringify(sofar)} of ${JSON.stringify(text)}`);
        if (whole) wholeSeen++;
      }
    }
    assert.ok(wholeSeen > 100, `the texts include whole objects (${wholeSeen})`);
  });

  it('gives the parsed object, for a custom tool\'s {"input": …}', () => {
    const end = new ArgumentsEnd();
    const text = '{"input": "print(1)"}';
    end.feed(text);
    assert.deepEqual(end.whole(text), { input: 'print(1)' });
  });
});
