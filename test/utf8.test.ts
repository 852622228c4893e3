import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { utf8Bytes } from '../src/utf8.js';
import { random } from '../bench/fixtures.js';

describe('utf8Bytes', () => {
  it('gives the bytes Buffer.from gives, short and long, for every kind of character and lone surrogates', () => {
    const next = random(5);
    const alphabet = ['a', '"', '\n', 'é', 'ß', '→', '中', '😀', '\uD800', '\uDFFF', '\u0000', '\u007F', '\u0080', '\uFFFF'];
    for (const length of [0, 1, 100, 4095, 4096, 4097, 20_000, 300_000]) {
      let text = '';
      while (text.length < length) text += next() < 0.8 ? 'x' : (alphabet[Math.floor(next() * alphabet.length)] as string);
      assert.ok(utf8Bytes(text).equals(Buffer.from(text)), `length ${text.length}`);
    }
  });
});
