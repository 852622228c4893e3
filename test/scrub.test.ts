import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyScrubber, keysScrubber, keySpellings, manyKeysRedactor, textWithoutKeys, withoutKeys } from '../src/upstream/scrub.js';

const KEY = 'sk-proj-Scrub0123456789abcdef';

/** Feeds `text` to a fresh scrubber in the given pieces and returns everything it let through. */
function scrub(pieces: string[], key = KEY): string {
  const scrubber = new KeyScrubber(key);
  const out = pieces.map((piece) => scrubber.push(Buffer.from(piece)).toString());
  return out.join('') + scrubber.flush().toString();
}

describe('keysScrubber: every real key a request may have sent', () => {
  const OTHER = 'sk-other-0123456789abcdefXYZ';
  /** A key that holds another: replaced whole, not as the shorter key and a tail of it. */
  const LONGER = `${KEY}-and-more`;
  const keys = [KEY, OTHER, LONGER];

  it('finds each, however the bytes are split: at every pair of boundaries, with nothing held back at the end', () => {
    const text = `data: {"a":"${OTHER} ${KEY}","b":"${LONGER}\u002e"}\n\nsk-oth`;
    const expected = 'data: {"a":"[redacted] [redacted]","b":"[redacted]\u002e"}\n\nsk-oth';
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        const scrubber = keysScrubber(keys);
        const out = [text.slice(0, i), text.slice(i, j), text.slice(j)].map((piece) => scrubber.push(Buffer.from(piece)).toString()).join('') + scrubber.flush().toString();
        assert.equal(out, expected, `split at ${i} and ${j}`);
      }
    }
  });

  it('is the one key\'s scrubber for one key (what a key with one real key paid before), and passes bytes as they are without keys to find', () => {
    assert.ok(keysScrubber([KEY, KEY]) instanceof KeyScrubber);
    const event = Buffer.from('data: {"a":1}\n\n');
    assert.equal(keysScrubber(keys).push(event), event, 'the very same bytes, not a copy');
    assert.equal(keysScrubber(['short']).push(event), event);
  });
});

describe('KeyScrubber', () => {
  it('replaces every whole occurrence of the key, and nothing else', () => {
    assert.equal(scrub([`a ${KEY} b ${KEY}${KEY} c`]), 'a [redacted] b [redacted][redacted] c');
    assert.equal(scrub(['sk-proj-Scrub is not the key, nor is sk-proj-']), 'sk-proj-Scrub is not the key, nor is sk-proj-');
  });

  it('finds the key however the bytes are split: at every pair of boundaries', () => {
    const text = `data: {"id":"x","content":"${KEY} and ${KEY}"}\n\nsk-proj-Scr`;
    const expected = 'data: {"id":"x","content":"[redacted] and [redacted]"}\n\nsk-proj-Scr';
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        assert.equal(scrub([text.slice(0, i), text.slice(i, j), text.slice(j)]), expected, `split at ${i} and ${j}`);
      }
    }
  });

  it('holds nothing back after an event end, so streams are never delayed', () => {
    const scrubber = new KeyScrubber(KEY);
    const event = Buffer.from('data: {"a":1}\n\n');
    assert.equal(scrubber.push(event), event, 'the very same bytes, not a copy');
  });

  it('replaces the key written with JSON escapes, however many of its characters and in either case, at every split', () => {
    const slashed = 'sk-ant/Scrub0123456789+abcdef';
    const escape = (text: string, every: number, upper: boolean): string =>
      [...text].map((c, i) => (i % every === 0 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).map((piece) => (upper && piece.length > 1 ? piece.toUpperCase().replace('\\U', '\\u') : piece)).join('');
    for (const [key, spelled] of [
      [KEY, escape(KEY, 1, false)],
      [KEY, escape(KEY, 3, true)],
      [KEY, `s\\u006B${KEY.slice(2)}`],
      [slashed, slashed.replace('/', '\\/')],
      [slashed, escape(slashed, 2, false)],
    ] as const) {
      const text = `data: {"content":"key ${spelled} end"}\n\n`;
      const expected = 'data: {"content":"key [redacted] end"}\n\n';
      assert.equal(JSON.parse(text.slice(6)).content, `key ${key} end`, 'what a client would read');
      for (let i = 0; i <= text.length; i++) {
        for (let j = i; j <= text.length; j += 7) assert.equal(scrub([text.slice(0, i), text.slice(i, j), text.slice(j)], key), expected, `${spelled} split at ${i} and ${j}`);
      }
    }
    // Escapes of other text, and a key's escaped start that goes on as something else, are left alone.
    for (const text of ['caf\\u00e9 \\n \\/ \\"', `\\u0073k-proj-Scrub0123 is not it`]) assert.equal(scrub([text]), text);
    const event = Buffer.from('data: {"a":"\\u00e9"}\n\n');
    assert.equal(new KeyScrubber(KEY).push(event).toString(), event.toString(), 'an event with an escape is not held back');
  });

  it('tells an escape from an escaped backslash before it, at every split: the JSON stays JSON and the key never passes', () => {
    const spelled = `\\u0073${KEY.slice(1)}`;
    for (const [before, redacted] of [
      ['\\', false], // with the spelling's own backslash, an escaped backslash, then the text u0073k…: not the key
      ['\\\\\\', false],
      ['x', true],
      ['\\\\', true], // an escaped backslash, then the key spelled with an escape
      ['\\\\x', true],
    ] as const) {
      const text = `data: {"c":"${before}${spelled}"}\n\n`;
      const decoded = JSON.parse(text.slice(6)).c as string;
      assert.equal(decoded.includes(KEY), redacted, 'what a client would read');
      for (let i = 0; i <= text.length; i++) {
        for (let j = i; j <= text.length; j += 5) {
          const out = scrub([text.slice(0, i), text.slice(i, j), text.slice(j)]);
          const value = JSON.parse(out.slice(6)).c as string;
          assert.equal(value.includes(KEY), false, `${before} split at ${i} and ${j}`);
          assert.equal(out, redacted ? `data: {"c":"${before}[redacted]"}\n\n` : text, `${before} split at ${i} and ${j}`);
        }
      }
    }
  });

  it('leaves short (test) keys alone: replacing them would mangle ordinary text', () => {
    assert.equal(scrub(['the key sk-1 and sk-1'], 'sk-1'), 'the key sk-1 and sk-1');
  });
});

describe('withoutKeys: a value the gateway assembled, without the real keys', () => {
  const KEY = 'sk-proj-wholeKEY-0123';
  it('gives back the very value when no string holds a key, so nothing is copied', () => {
    const value = { a: [1, 'x', { b: null }], c: 'text' };
    assert.equal(withoutKeys(value, [KEY]), value);
  });

  it('copies only the path to a string that holds one, and takes it out of member names too', () => {
    const untouched = { deep: ['y'] };
    const value = { untouched, list: ['ok', `a ${KEY} b`], [`name ${KEY}`]: 1 };
    const clean = withoutKeys(value, [KEY]);
    assert.deepEqual(clean, { untouched: { deep: ['y'] }, list: ['ok', 'a [redacted] b'], 'name [redacted]': 1 });
    assert.equal(clean.untouched, untouched, 'a member with no key is the same object');
    assert.equal(value.list[1], `a ${KEY} b`, 'the original is not changed');
  });

  it('keeps a member named __proto__ a member, and leaves a value nested past its depth out only when it holds a key', () => {
    const parsed = JSON.parse(`{"__proto__":{"k":"${KEY}"}}`) as Record<string, unknown>;
    const clean = withoutKeys(parsed, [KEY]);
    assert.deepEqual(Object.keys(clean), ['__proto__']);
    assert.equal(Object.getPrototypeOf(clean), Object.prototype);
    let deep: unknown = KEY;
    for (let i = 0; i < 100; i++) deep = [deep];
    assert.equal(JSON.stringify(withoutKeys(deep, [KEY])).includes(KEY), false);
    let plain: unknown = 'x';
    for (let i = 0; i < 100; i++) plain = [plain];
    assert.equal(withoutKeys(plain, [KEY]), plain);
  });

  it('leaves short test keys alone, as the byte scrubber does', () => {
    assert.equal(textWithoutKeys('abc abc', keySpellings(['abc'])), 'abc abc');
  });
});

describe('a real key holding a quote or a backslash', () => {
  const ODD = 'sk-odd"quote\\back-0123';
  it('is taken out as JSON spells it (\\" and \\\\), cut at every byte boundary', () => {
    const text = `{"content":${JSON.stringify(`say ${ODD} now`)}}\n\n`;
    for (let cut = 0; cut <= text.length; cut++) {
      const out = scrub([text.slice(0, cut), text.slice(cut)], ODD);
      assert.equal(out, '{"content":"say [redacted] now"}\n\n', `cut at ${cut}`);
    }
    assert.equal(JSON.parse(scrub([`{"a":${JSON.stringify(ODD)}}`], ODD)).a, '[redacted]');
  });
});

describe('textWithoutKeys and withoutKeys, for keys JSON escapes and for class instances', () => {
  const ODD = 'sk-odd"quote\\back-0123';
  it('takes a key holding a quote or a backslash out of a frame already written as JSON', () => {
    const frame = `data: ${JSON.stringify({ text: `the key ${ODD} whole` })}\n\n`;
    assert.equal(textWithoutKeys(frame, keySpellings([ODD])), 'data: {"text":"the key [redacted] whole"}\n\n');
  });

  it('leaves an instance of a class as it is (the log keeps its cut and raw bodies as they are)', () => {
    class Cut {
      constructor(readonly head: string) {}
    }
    const cut = new Cut('no key here');
    const value = { response: cut };
    assert.equal(withoutKeys(value, [ODD]), value);
    assert.ok(withoutKeys({ a: cut, b: ODD }, [ODD]).a instanceof Cut);
  });
});

describe('manyKeysRedactor: a keys file of many real keys', () => {
  it('takes every key out, all of each where two overlap, and leaves a text without any as it is', () => {
    const redact = manyKeysRedactor(keySpellings(['AAAA1111BBBB', '1111BBBB2222CCCC', 'sk-"quoted"-0123456789']));
    assert.equal(redact('x AAAA1111BBBB2222CCCC y'), 'x [redacted] y', 'both overlapping keys, whole');
    assert.equal(redact('AAAA1111BBBB, then 1111BBBB2222CCCC.'), '[redacted], then [redacted].');
    assert.equal(redact('got "sk-\\"quoted\\"-0123456789"'), 'got "[redacted]"', 'as JSON spells it');
    const plain = 'nothing to see';
    assert.equal(redact(plain), plain);
    // The same as each key in turn, on random texts made of the keys' pieces.
    const keys = ['k1-abcdefghij', 'k2-abcdefghijklmnop', 'cdefghij-k3-xyz0123'];
    const many = manyKeysRedactor(keys);
    for (let n = 0; n < 2000; n++) {
      const pieces = ['k1-', 'abcdefghij', 'klmnop', 'k2-', 'cdefghij', '-k3-xyz0123', ' ', 'x'];
      let text = '';
      for (let i = 0; i < 8; i++) text += pieces[Math.floor(Math.random() * pieces.length)];
      const out = many(text);
      for (const key of keys) assert.ok(!out.includes(key), `${text} → ${out}`);
      if (!keys.some((key) => text.includes(key))) assert.equal(out, text);
    }
  });
});
