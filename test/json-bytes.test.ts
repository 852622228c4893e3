import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentConversation, chatBody, messagesBody, random, responsesBody } from '../bench/fixtures.js';
import { isUtf8 } from 'node:buffer';
import { parseChatRequest } from '../src/formats/chat/request.js';
import { hasDeferredMembers, hasUncheckedBytes, LARGE_MEMBER_BYTES, LONG_TEXT, memberView, parseJsonBytes, releaseLargeMembers, shallowCopy, type DeferOptions } from '../src/formats/json-bytes.js';
import { duplicateKeys } from '../src/formats/json-keys.js';
import { hasControlBytes, hasLoneSurrogateEscape, indentJsonBytes, isJsonText } from '../src/formats/json-layout.js';
import { MAX_CONTAINERS, MAX_DEPTH, MAX_OBJECT_MEMBERS, MAX_VALUES, parseProviderJson, TooDeep, TooMany } from '../src/formats/json-limits.js';
import { GatewayError } from '../src/errors.js';
import { parseJsonObject } from '../src/formats/json.js';

const STRINGS = ['', 'a', 'with "quotes"', 'back\\slash\\', 'new\nline\ttab', 'é — ✔ 😀', '\u0000\u001f', '"', '\\"', 'x'.repeat(200)];

function randomValue(next: () => number, depth: number): unknown {
  const pick = next();
  if (depth > 4 || pick < 0.3) {
    const kind = Math.floor(next() * 6);
    if (kind === 0) return STRINGS[Math.floor(next() * STRINGS.length)];
    if (kind === 1) return Math.floor(next() * 1e6) - 5e5;
    if (kind === 2) return next() * 1e-3;
    if (kind === 3) return next() < 0.5;
    if (kind === 4) return null;
    return 1e21 * next();
  }
  const size = Math.floor(next() * 6);
  if (pick < 0.6) return Array.from({ length: size }, () => randomValue(next, depth + 1));
  const object: Record<string, unknown> = {};
  for (let i = 0; i < size; i++) object[`${STRINGS[Math.floor(next() * STRINGS.length)]}${i}`] = randomValue(next, depth + 1);
  return object;
}

const bodies = (() => {
  const conversation = agentConversation(137_000);
  return { chat: chatBody(conversation), messages: messagesBody(conversation), responses: responsesBody(conversation) };
})();

describe('parseJsonBytes', () => {
  it('gives what JSON.parse gives for agent-sized bodies of each client API', () => {
    for (const [api, text] of Object.entries(bodies)) {
      assert.ok(text.length > 130_000, api);
      assert.deepEqual(parseJsonBytes(Buffer.from(text)), JSON.parse(text), api);
    }
  });

  it('gives what JSON.parse gives for random documents split into pieces of every size', () => {
    const next = random(7);
    for (let n = 0; n < 300; n++) {
      const text = JSON.stringify(randomValue(next, 0), null, n % 3 === 0 ? 1 : undefined) ?? 'null';
      const raw = Buffer.from(text);
      for (const piece of [1, 2, 7, 64]) assert.deepEqual(parseJsonBytes(raw, piece), JSON.parse(text), `${text} in pieces of ${piece}`);
    }
  });

  it('parses a body of many small values whole, with the same result', () => {
    const text = JSON.stringify({ model: 'm', values: Array.from({ length: 100_000 }, (_, i) => (i % 3 === 0 ? i : i % 3 === 1 ? `s${i}` : [i])) });
    assert.ok(text.length > 600_000);
    assert.deepEqual(parseJsonBytes(Buffer.from(text)), JSON.parse(text));
  });

  it('keeps "__proto__" an own property and the last of duplicate keys, as JSON.parse does', () => {
    const text = '{"__proto__": {"polluted": true}, "a": 1, "a": [2, 3], "b": {"__proto__": 1}}';
    const parsed = parseJsonBytes(Buffer.from(text), 4) as Record<string, unknown>;
    assert.deepEqual(parsed, JSON.parse(text));
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(parsed), ['__proto__', 'a', 'b']);
  });

  it('refuses what JSON.parse refuses, with its error', () => {
    const bad = ['{"a": 1,}', '{"a" 1}', '[1 2]', '{"a": tru}', '{"a": "x\u0001"}', '{"a": "\\x"}', '[01]', '{"a": 1} x', '{"a": [1, 2}', '{"a": "unterminated}', "{'a': 1}", '[1,,2]', '{,}', ' ', '{"a": -}', '[1.]'];
    for (const text of bad) {
      let expected = '';
      try {
        JSON.parse(text);
      } catch (err) {
        expected = (err as Error).message;
      }
      assert.notEqual(expected, '', `${text} is invalid`);
      for (const piece of [1, 3, 60 * 1024]) assert.throws(() => parseJsonBytes(Buffer.from(text), piece), { name: 'SyntaxError', message: expected }, `${text} in pieces of ${piece}`);
    }
  });

  it('refuses a body nested deeper than its scan can recurse as too deep, without overflowing the stack', () => {
    const text = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    assert.throws(() => parseJsonBytes(Buffer.from(text), 1024), TooDeep);
  });
});

describe('a request body nested too deep', () => {
  // Large and dense: what the scan hands to JSON.parse whole, where millions of nested arrays held the loop for seconds.
  const body = (depth: number, copies: number): Buffer =>
    Buffer.from(`{"model":"m","messages":[{"role":"user","content":"hi \\"[[[[\\" ]"}],"x":[${Array(copies).fill('['.repeat(depth) + ']'.repeat(depth)).join(',')}]}`);

  const tooDeep = (err: unknown): boolean => err instanceof GatewayError && err.status === 400 && err.message === `The request body nests deeper than ${MAX_DEPTH} levels.`;

  it(`is refused (400, saying so) past ${MAX_DEPTH} levels, strings' brackets not counted; up to it, parsed: large and small`, () => {
    for (const copies of [1000, 1]) {
      const deep = body(MAX_DEPTH, copies);
      assert.ok(copies === 1 ? deep.length < 60 * 1024 : deep.length > 200_000);
      assert.throws(() => parseJsonObject(deep, 'a model'), tooDeep, `${deep.length} bytes`);
      const fits = body(MAX_DEPTH - 2, copies); // inside "x": [ … ] of the object: two levels more
      assert.equal((parseJsonObject(fits, 'a model').x as unknown[]).length, copies);
    }
  });

  it('is refused however small, where a log reader would stop (jq 1.6: 256 levels; 29,000 fit in 60 KB)', () => {
    for (const depth of [MAX_DEPTH + 1, 300, 29_000]) {
      const deep = Buffer.from(`{"model":"m","messages":[{"role":"user","content":"x"}],"x":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`);
      assert.throws(() => parseJsonObject(deep, 'a model'), tooDeep, `${depth} levels`);
    }
  });

  it('is refused in a large member left as bytes on its way through (a conversation passed through), not only once parsed', () => {
    const nested = `${'['.repeat(MAX_DEPTH)}${']'.repeat(MAX_DEPTH)}`;
    const messages = [{ role: 'user', content: 'y'.repeat(100_000) }];
    const deep = Buffer.from(`{"model":"m","messages":[${JSON.stringify(messages[0])},{"role":"user","content":"x","n":${nested}}]}`);
    assert.throws(() => parseJsonObject(deep, 'a model', { messages: ['role'] }), tooDeep);
    const shallow = Buffer.from(`{"model":"m","messages":[${JSON.stringify(messages[0])},{"role":"user","content":"x","n":[[]]}]}`);
    assert.equal((parseJsonObject(shallow, 'a model', { messages: ['role'] }).messages as unknown[]).length, 2);
  });

  it('a body that is not JSON is still refused as such, whatever brackets its unterminated string holds', () => {
    const broken = Buffer.from(`{"model":"m","x":"${'['.repeat(200_000)}`);
    assert.throws(() => parseJsonObject(broken, 'a model'), (err: unknown) => err instanceof GatewayError && err.status === 400 && /not valid JSON/.test(err.message));
  });
});

describe('a request body with too many objects and arrays', () => {
  const refused = (err: unknown): boolean => err instanceof GatewayError && err.status === 400 && err.code === 'invalid_body' && err.message === `The request body holds more than ${MAX_CONTAINERS} objects and arrays.`;
  // Large and dense: what the scan hands to JSON.parse whole, where 6 million `{}` held the loop for seconds.
  // Four containers besides x's members: the body, messages, its one message, x.
  const body = (count: number): Buffer => Buffer.from(`{"model":"m","messages":[{"role":"user","content":"hi {[{[ \\\" {"}],"x":[${Array(count).fill('{}').join(',')}]}`);

  it(`is refused (400, saying so) past ${MAX_CONTAINERS}, strings' brackets not counted; up to it, parsed`, () => {
    assert.throws(() => parseJsonObject(body(MAX_CONTAINERS - 3), 'a model'), refused);
    assert.equal((parseJsonObject(body(MAX_CONTAINERS - 4), 'a model').x as unknown[]).length, MAX_CONTAINERS - 4);
  });

  it(`is refused past ${MAX_VALUES} values of any kind (10 MB of zeros took half a second to parse)`, () => {
    const zeros = (count: number): Buffer => Buffer.from(`{"model":"m","x":[${Array(count).fill('0').join(',')}]}`);
    const tooMany = (err: unknown): boolean => err instanceof GatewayError && err.status === 400 && err.message === `The request body holds more than ${MAX_VALUES} values.`;
    assert.throws(() => parseJsonObject(zeros(MAX_VALUES + 1), 'a model'), tooMany);
    // Counted as containers and commas, never more than there are: here n + 2 of n + 3.
    assert.equal((parseJsonObject(zeros(MAX_VALUES - 2), 'a model').x as unknown[]).length, MAX_VALUES - 2);
    assert.throws(() => parseJsonObject(zeros(MAX_VALUES - 1), 'a model'), tooMany);
  });

  it(`is refused past ${MAX_OBJECT_MEMBERS} members in one object, dense or not, at the top or below (a review: 480,000 long keys held the loop 2.5 s)`, () => {
    const tooMany = (err: unknown): boolean => err instanceof GatewayError && err.status === 400 && err.message === `The request body holds more than ${MAX_OBJECT_MEMBERS} members in one object.`;
    const keys = (count: number, width: number): string => Array.from({ length: count }, (_, i) => `"${String(i).padStart(width, 'k')}":0`).join(',');
    const cases = [
      // Short keys: dense, parsed whole.
      (count: number) => `{"model":"m","messages":[{"role":"user","content":"x"}],"x":{${keys(count, 1)}}}`,
      // Long keys: not dense, walked by the scan, at the top and in a member over its piece size.
      (count: number) => `{"model":"m","messages":[{"role":"user","content":"x"}],${keys(count - 2, 40)}}`,
      (count: number) => `{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{${keys(count, 40)}}}`,
    ];
    // Read whole (a member left as bytes, as `metadata` is, is parsed when first read: by a translation).
    const readWhole = (text: string): string => JSON.stringify(parseJsonObject(Buffer.from(text), 'a model', { messages: ['role'] }));
    for (const [n, text] of cases.entries()) {
      assert.throws(() => readWhole(text(MAX_OBJECT_MEMBERS + 1)), tooMany, `case ${n}`);
      assert.equal(readWhole(text(MAX_OBJECT_MEMBERS)), JSON.stringify(JSON.parse(text(MAX_OBJECT_MEMBERS))), `case ${n}`);
    }
  });

  it('is refused as such when a member left as bytes holds them and a translation reads it, not with a 500', () => {
    // A long string keeps the body as a whole from being dense: its conversation stays bytes, read only when translated.
    const raw = Buffer.from(`{"model":"m","system":"${'a'.repeat(8_000_000)}","messages":[{"role":"user","content":[${Array(MAX_CONTAINERS).fill('{}').join(',')}]}]}`);
    const parsed = parseJsonObject(raw, 'a model', { messages: ['role'] });
    assert.ok(hasDeferredMembers(parsed));
    assert.throws(() => parsed.messages, refused);
  });
});

describe('releaseLargeMembers', () => {
  const isAccessor = (target: object, key: string): boolean => typeof Object.getOwnPropertyDescriptor(target, key)?.get === 'function';

  it('lets go of each API body\'s large members, which read back as JSON.parse has them, in the same order', () => {
    for (const [api, text] of Object.entries(bodies)) {
      const document = parseJsonBytes(Buffer.from(text)) as Record<string, unknown>;
      const large = Object.keys(document).filter((key) => JSON.stringify(document[key]).length >= LARGE_MEMBER_BYTES);
      assert.ok(large.length > 0, api);
      releaseLargeMembers(document);
      for (const key of Object.keys(document)) assert.equal(isAccessor(document, key), large.includes(key), `${api}: ${key}`);
      assert.equal(JSON.stringify(document), JSON.stringify(JSON.parse(text)), api);
      // Read once, a member is kept: a later read is the same value, not another parse.
      for (const key of large) {
        assert.equal(isAccessor(document, key), false, `${api}: ${key} kept after its first read`);
        assert.equal(document[key], document[key]);
      }
    }
  });

  it('lets go of a member left as bytes that was first read after a first release (a mapped pass-through, then a fallback that translates)', () => {
    const invalid = (err: Error): Error => err;
    const document = parseJsonBytes(Buffer.from(bodies.chat), undefined, { invalid }) as Record<string, unknown>;
    const copy = shallowCopy(document);
    copy.model = 'mapped';
    assert.ok(isAccessor(document, 'messages') && isAccessor(copy, 'messages'), 'left as bytes');
    releaseLargeMembers(document, [copy]); // the first target: nothing read, nothing to let go of
    const second = shallowCopy(document);
    assert.deepEqual(second.messages, JSON.parse(bodies.chat).messages, 'the second target reads it');
    releaseLargeMembers(document, [second]);
    assert.ok(isAccessor(document, 'messages') && isAccessor(second, 'messages'), 'let go of once that target has it');
    assert.deepEqual(document.messages, JSON.parse(bodies.chat).messages);
  });

  it('lets go of the same values in copies, not of a copy\'s own', () => {
    const document = parseJsonBytes(Buffer.from(bodies.chat)) as Record<string, unknown>;
    const copy: Record<string, unknown> = { ...document, model: 'other' };
    const changed: Record<string, unknown> = { ...document, messages: [{ role: 'user', content: 'mine' }] };
    releaseLargeMembers(document, [copy, changed]);
    assert.ok(isAccessor(copy, 'messages'));
    assert.ok(!isAccessor(changed, 'messages'));
    assert.deepEqual(changed.messages, [{ role: 'user', content: 'mine' }]);
    assert.deepEqual(copy.messages, JSON.parse(bodies.chat).messages);
    assert.equal(copy.model, 'other');
  });

  it('keeps the last of duplicate keys and a member set after; lets go again only of what was read back since; nothing for small bodies', () => {
    const big = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ role: 'user', content: `message ${i} ${'x'.repeat(100)}` })));
    const text = `{"messages":${big},"model":"m","messages":[{"role":"user","content":"last"}],"tools":${big}}`;
    const document = parseJsonBytes(Buffer.from(text)) as Record<string, unknown>;
    releaseLargeMembers(document);
    assert.ok(!isAccessor(document, 'messages'));
    assert.ok(isAccessor(document, 'tools'));
    assert.deepEqual(document, JSON.parse(text));
    // Read back (a request moving to its next target): let go of again, and read back the same.
    releaseLargeMembers(document);
    assert.ok(isAccessor(document, 'tools'), 'read back since: let go of again');
    assert.deepEqual(document, JSON.parse(text));
    releaseLargeMembers(document);
    assert.ok(isAccessor(document, 'tools'), 'and again');
    releaseLargeMembers(document);
    assert.ok(isAccessor(document, 'tools'), 'not read since: left as it is');
    assert.deepEqual(document, JSON.parse(text));
    const again = parseJsonBytes(Buffer.from(text)) as Record<string, unknown>;
    releaseLargeMembers(again);
    again.tools = [];
    assert.deepEqual(again.tools, []);
    releaseLargeMembers(again);
    assert.ok(!isAccessor(again, 'tools'), 'a value set since is never let go of');
    assert.deepEqual(again.tools, []);
    const read = again.messages;
    again.messages = [{ role: 'user', content: 'set after it was read back' }];
    releaseLargeMembers(again);
    assert.deepEqual(again.messages, [{ role: 'user', content: 'set after it was read back' }]);
    assert.notEqual(read, again.messages);
    const small = parseJsonBytes(Buffer.from('{"messages":[{"role":"user","content":"hi"}]}')) as Record<string, unknown>;
    releaseLargeMembers(small);
    assert.ok(!isAccessor(small, 'messages'));
  });
});

class NotJson extends Error {}
const DEFER: DeferOptions = { invalid: (err) => new NotJson(err.message), views: { messages: ['role'], input: ['type'] } };
const isAccessorOf = (target: object, key: string): boolean => typeof Object.getOwnPropertyDescriptor(target, key)?.get === 'function';
/** What memberView should show of an array, from JSON.parse's value. */
const expectedView = (array: unknown[], fields: string[]): unknown[] =>
  array.map((element) => {
    if (typeof element !== 'object' || element === null || Array.isArray(element)) return null;
    const seen: Record<string, unknown> = {};
    for (const field of fields) {
      if (!Object.hasOwn(element, field)) continue;
      const value = (element as Record<string, unknown>)[field];
      seen[field] = Array.isArray(value) ? [] : typeof value === 'object' && value !== null ? {} : value;
    }
    return seen;
  });

describe('large members left as bytes (DeferOptions)', () => {
  it('are not parsed until read, then read as JSON.parse has them', () => {
    for (const [api, text] of Object.entries(bodies)) {
      const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
      const expected = JSON.parse(text) as Record<string, unknown>;
      const large = Object.keys(expected).filter((key) => JSON.stringify(expected[key]).length >= LARGE_MEMBER_BYTES);
      assert.ok(large.length > 0, api);
      for (const key of Object.keys(expected)) assert.equal(isAccessorOf(document, key), large.includes(key), `${api}: ${key}`);
      assert.ok(hasDeferredMembers(document));
      assert.deepEqual(Object.keys(document), Object.keys(expected), 'in the same order');
      assert.deepEqual(document, expected, api);
      for (const key of large) assert.equal(isAccessorOf(document, key), false, `${api}: ${key} kept once read`);
    }
  });

  it('show their shape (memberView) as JSON.parse has it, without being read', () => {
    for (const [api, text] of Object.entries(bodies)) {
      const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
      const expected = JSON.parse(text) as Record<string, unknown[]>;
      const key = api === 'responses' ? 'input' : 'messages';
      assert.deepEqual(memberView(document, key), expectedView(expected[key] as unknown[], [api === 'responses' ? 'type' : 'role']), api);
      assert.ok(isAccessorOf(document, key), 'still unread');
      void document[key];
      assert.equal(memberView(document, key), document[key], 'once read, the value itself is what counts');
    }
  });

  it('show a string over 1 KiB as written as LONG_TEXT, undecoded (a reasoning item\'s encrypted_content, asked only to be there)', () => {
    const filler = Array.from({ length: 800 }, (_, i) => ({ role: 'user', content: `message ${i} ${'y'.repeat(60)}` }));
    const text = JSON.stringify({ model: 'm', messages: [{ role: 'r'.repeat(1022) }, { role: 'r'.repeat(1023) }, { role: `\\${'r'.repeat(1100)}` }, ...filler] });
    const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
    const seen = memberView(document, 'messages') as Array<{ role: unknown }>;
    assert.deepEqual(seen.slice(0, 3).map((element) => element.role), ['r'.repeat(1022), LONG_TEXT, LONG_TEXT]);
    assert.equal(typeof LONG_TEXT, 'string', 'a check that a value is a string still passes');
    // So a large chat body's long role is the provider's to refuse, as in a small one.
    assert.doesNotThrow(() => parseChatRequest(Buffer.from(text)));
    assert.equal(seen[3]?.role, 'user');
  });

  it('show odd elements as JSON.parse would have them: duplicates, escaped keys, other kinds', () => {
    const filler = Array.from({ length: 800 }, (_, i) => ({ role: 'user', content: `message ${i} ${'y'.repeat(60)}` }));
    const odd = [
      { role: 'first', content: 'x', role2: 1 },
      'a string',
      7,
      null,
      [{ role: 'nested' }],
      { content: 'no role' },
      { role: { not: 'a string' } },
      { role: ['array'] },
      { role: 12.5e3 },
      { role: true },
      {},
      // Texts that share a length and differ late, are not ASCII, or are one too many to keep.
      ...['user', 'usex', 'useR', 'assistant', 'assistanT', 'rôle', 'rôle', 'ü', 'x'.repeat(16), 'x'.repeat(17), 'tool', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'user', 'usex', 'g'].map((role) => ({ role })),
    ];
    const messages = JSON.stringify([...odd, ...filler]).replace('{"role":"first","content":"x","role2":1}', '{"role":"first","content":"x","r\\u006fle":"last","role2":1}');
    const text = `{"model":"m","messages":${messages}}`;
    const expected = JSON.parse(text);
    assert.equal(expected.messages[0].role, 'last');
    const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
    assert.deepEqual(memberView(document, 'messages'), expectedView(expected.messages, ['role']));
    for (const [value, kind] of [[{ a: 'z'.repeat(70_000) }, {}], ['z'.repeat(70_000), '']] as const) {
      const other = parseJsonBytes(Buffer.from(JSON.stringify({ model: 'm', messages: value })), undefined, DEFER) as Record<string, unknown>;
      assert.deepEqual(memberView(other, 'messages'), kind);
    }
    // Keys named after Object.prototype's members are members like any other, never views asked for.
    const named = `{"constructor":[{"a":1}],"__proto__":[{"role":"x"}],"toString":${messages},"hasOwnProperty":[{"b":2}],"model":"m","messages":${messages}}`;
    const parsedNamed = parseJsonBytes(Buffer.from(named), undefined, DEFER) as Record<string, unknown>;
    assert.deepEqual(memberView(parsedNamed, 'toString'), [], 'its kind: not asked to be seen');
    assert.deepEqual(memberView(parsedNamed, 'messages'), expectedView(expected.messages, ['role']));
    assert.deepEqual(parsedNamed, JSON.parse(named));
    const small = parseJsonBytes(Buffer.from('{"messages":[]}'), undefined, DEFER) as Record<string, unknown>;
    assert.equal(memberView(small, 'messages'), small.messages, 'a small body is parsed whole: the value itself');
    assert.equal(hasDeferredMembers(small), false);
    const manySmall = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`field${i}`, 'w'.repeat(1000)]));
    const scanned = parseJsonBytes(Buffer.from(JSON.stringify(manySmall)), undefined, DEFER) as Record<string, unknown>;
    assert.equal(hasDeferredMembers(scanned), false, 'a large body of small members is parsed whole: nothing left unchecked');
    assert.deepEqual(scanned, manySmall);
    // A large member a later duplicate key replaced: nothing is left as bytes in the document (its
    // media parts are counted at admission), but bytes of it were never parsed (the log checks them).
    const part = '{"type":"image_url","image_url":{"url":"https://x/y.png"}}';
    const replaced = parseJsonBytes(Buffer.from(`{"pad":"${'x'.repeat(70_000)}","pad":1,"model":"m","messages":[{"role":"user","content":[${Array(250).fill(part).join(',')}]}]}`), undefined, DEFER);
    assert.equal(hasDeferredMembers(replaced), false);
    assert.equal(hasUncheckedBytes(replaced), true);
  });

  it('that are not JSON throw the given error when read, and only then; a structure that is wrong is refused at once', () => {
    const base = bodies.chat;
    for (const broken of ['"content":"\u0001', '"content":"\\q', '"content":"\\u12G4']) {
      const text = base.replace('"content":"', broken);
      const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
      assert.throws(() => document.messages, NotJson, broken);
      assert.equal(isJsonText(Buffer.from(text)), false, broken);
    }
    // Numbers and literals stand outside strings, where the scan reads their characters only.
    const numbers = base.replace(/"tool_call_id":/, '"n":01,"tool_call_id":');
    assert.throws(() => (parseJsonBytes(Buffer.from(numbers), undefined, DEFER) as Record<string, unknown>).messages, NotJson);
    for (const broken of [base.replace('},{', '}{'), base.replace('"role":', '"role"'), base.slice(0, -2)]) {
      assert.throws(() => parseJsonBytes(Buffer.from(broken), undefined, DEFER), SyntaxError);
    }
  });

  it('are not read by releaseLargeMembers; one read since is let go of again; one not asked to be seen shows its kind', () => {
    const big = JSON.stringify(Array.from({ length: 800 }, (_, i) => ({ name: `tool_${i}`, description: 'z'.repeat(80) })));
    const text = `{"model":"m","tools":${big},"messages":${big}}`;
    const document = parseJsonBytes(Buffer.from(text), undefined, DEFER) as Record<string, unknown>;
    assert.deepEqual(memberView(document, 'tools'), [], 'its kind only');
    void document.tools;
    releaseLargeMembers(document);
    assert.ok(isAccessorOf(document, 'messages'), 'never read');
    assert.ok(isAccessorOf(document, 'tools'), 'read, then let go of');
    assert.deepEqual(document, JSON.parse(text));
  });
});

describe('isJsonText', () => {
  it('checks a body of many strings once, not once per string (a 14 MB body took minutes)', () => {
    const messages = Array.from({ length: 400_000 }, (_, i) => ({ role: 'user', content: `c${i}` }));
    assert.equal(isJsonText(Buffer.from(JSON.stringify({ model: 'm', messages }))), true, 'no backslash at all');
    assert.equal(isJsonText(Buffer.from(JSON.stringify({ model: 'm', messages, last: 'a\nb' }))), true, 'one, at the end');
    assert.equal(isJsonText(Buffer.from(JSON.stringify({ model: 'm', messages, last: 'a\\x' }).replace('\\\\x', '\\x'))), false, 'one that is wrong, at the end');
  });

  it('says what JSON.parse says of random documents and of every one-byte change to them', () => {
    const next = random(11);
    const alphabet = Buffer.from(' \t\n"\\/{}[],:0123456789.eE+-truefalsnbu\u0001x');
    let checked = 0;
    for (let n = 0; n < 200; n++) {
      const text = JSON.stringify(randomValue(next, 0), null, n % 4 === 0 ? 2 : undefined) ?? 'null';
      const raw = Buffer.from(text);
      assert.equal(isJsonText(raw), true, text);
      for (let k = 0; k < 20; k++) {
        const changed = Buffer.from(raw);
        const at = Math.floor(next() * changed.length);
        const op = next();
        let candidate: Buffer;
        if (op < 0.4) {
          changed[at] = alphabet[Math.floor(next() * alphabet.length)] as number;
          candidate = changed;
        } else if (op < 0.7) {
          candidate = Buffer.concat([changed.subarray(0, at), changed.subarray(at + 1)]);
        } else {
          candidate = Buffer.concat([changed.subarray(0, at), alphabet.subarray(Math.floor(next() * alphabet.length)).subarray(0, 1), changed.subarray(at)]);
        }
        if (!isUtf8(candidate)) continue;
        let parses = true;
        try {
          JSON.parse(candidate.toString('utf8'));
        } catch {
          parses = false;
        }
        assert.equal(isJsonText(candidate), parses, candidate.toString('utf8'));
        // The layout checks as it goes: none for what is not JSON, the same value for what is.
        const pieces = indentJsonBytes(candidate, n % 3 === 0 ? null : 1);
        assert.equal(pieces !== null, parses, candidate.toString('utf8'));
        if (pieces !== null) assert.deepEqual(JSON.parse(Buffer.concat(pieces).toString('utf8')), JSON.parse(candidate.toString('utf8')));
        checked++;
      }
    }
    assert.ok(checked > 3000);
  });

  it('finds a control byte wherever it lies, at any alignment of the bytes in their memory, and only a control byte', () => {
    const memory = Buffer.alloc(80 + 3);
    for (let offset = 0; offset < 4; offset++) {
      for (let length = 0; length <= 80; length++) {
        const bytes = memory.subarray(offset, offset + length);
        bytes.fill(0x20);
        assert.equal(hasControlBytes(bytes), false, `spaces, offset ${offset}, length ${length}`);
        for (let at = 0; at < length; at++) {
          for (const byte of [0x00, 0x09, 0x1f]) {
            bytes[at] = byte;
            assert.equal(hasControlBytes(bytes), true, `0x${byte.toString(16)} at ${at}, offset ${offset}, length ${length}`);
          }
          // Bytes just above the range, and those whose word arithmetic borrows: never a control byte.
          for (const byte of [0x20, 0x21, 0x7f, 0x80, 0x9f, 0xa0, 0xff]) {
            bytes[at] = byte;
            assert.equal(hasControlBytes(bytes), false, `0x${byte.toString(16)} at ${at}, offset ${offset}, length ${length}`);
          }
          bytes[at] = 0x20;
        }
      }
    }
    // Outside the slice: not looked at.
    memory.fill(0x01);
    memory.fill(0x41, 1, 81);
    assert.equal(hasControlBytes(memory.subarray(1, 81)), false);
  });

  it('refuses a raw control character in a string wherever it lies in a large body, and accepts tabs and newlines between tokens', () => {
    const text = JSON.stringify({ model: 'm', messages: Array.from({ length: 40 }, (_, i) => ({ role: 'user', content: `${'a'.repeat(90)}\\${i}` })) });
    for (let at = text.indexOf('aaaa'); at < text.length; at += 997) {
      if (text[at] !== 'a') continue;
      assert.equal(isJsonText(Buffer.from(text.slice(0, at) + '\u0001' + text.slice(at + 1))), false, `at ${at}`);
    }
    assert.equal(isJsonText(Buffer.from(JSON.stringify(JSON.parse(text), null, '\t').replaceAll('\n', '\r\n'))), true);
  });

  it('accepts any depth and every number form JSON has; refuses what it has not', () => {
    assert.equal(isJsonText(Buffer.from('['.repeat(100_000) + ']'.repeat(100_000))), true);
    for (const good of ['0', '-0', '1.5e+10', '-2E-3', '0.0', ' true ', 'null', '"\\u00e9\\n\\/"', '{}', '[]', '{"a":[1,{"b":null}]}']) assert.equal(isJsonText(Buffer.from(good)), true, good);
    for (const bad of ['', '01', '1.', '.5', '-', '1e', '+1', 'tru', 'nul', 'truex', 'fals', 'nulll', 'True', '[1,]', '{"a":1,}', '{"a"}', '{1:2}', '"a', '[1 2]', 'NaN', '"\\x"', '[', ']', '1 2', '{"a":1]', '[1}']) {
      assert.equal(isJsonText(Buffer.from(bad)), false, bad);
      assert.equal(indentJsonBytes(Buffer.from(bad)), null, bad);
    }
  });

  it('refuses half a surrogate pair escaped (JSON allows it, jq refuses it and every entry after it), in short and long strings; a whole pair is fine', () => {
    const long = 'x'.repeat(300);
    for (const [text, json] of [
      ['"\\ud83d\\ude00"', true], ['"\\uD83D\\uDE00 ok"', true], ['"\\u00e9\\ud7ff\\ue000"', true], ['"a\\\\ud800"', true],
      ['"\\ud800"', false], ['"a\\ud800b"', false], ['"\\\\ud800\\udc00"', false], ['"\\\\\\ud800"', false], ['"\\udc00"', false], ['"\\uDBFF\\u0041"', false], ['"\\ud800\\ud800"', false], ['"\\ude00\\ud83d"', false], ['"\\ud83d"', false],
    ] as const) {
      for (const variant of [text, `{"a":[${text}],"b":"${long}"}`, `{"a":"${long}",\n"b":${text}}`]) {
        assert.equal(isJsonText(Buffer.from(variant)), json, variant);
        assert.equal(indentJsonBytes(Buffer.from(variant)) !== null, json, variant);
        // Bytes already parsed whole are only laid out: they are searched apart.
        assert.equal(hasLoneSurrogateEscape(Buffer.from(variant)), !json, variant);
      }
    }
  });
});

describe('indentJsonBytes', () => {
  const layout = (raw: Buffer, level?: number | null): Buffer => Buffer.concat(indentJsonBytes(raw, level) ?? assert.fail('not laid out'));

  it('lays out bytes as JSON.stringify(value, null, 2) does, at any depth, or on one line', () => {
    const next = random(11);
    for (let n = 0; n < 300; n++) {
      const value = randomValue(next, 0);
      const raw = Buffer.from(JSON.stringify(value));
      assert.equal(layout(raw).toString(), JSON.stringify(value, null, 2));
      assert.equal(layout(raw, null).toString(), JSON.stringify(value));
      assert.equal(layout(Buffer.from(JSON.stringify(value, null, 3)), null).toString(), JSON.stringify(value), 'whitespace removed');
      const nested = layout(raw, 2).toString();
      assert.equal(nested, JSON.stringify(value, null, 2).replaceAll('\n', '\n    '));
      // Bytes already known to be JSON are laid out alike, without the checks.
      assert.equal(Buffer.concat(indentJsonBytes(raw, 2, true) ?? []).toString(), nested);
      assert.equal(Buffer.concat(indentJsonBytes(raw, null, true) ?? []).toString(), JSON.stringify(value));
    }
  });

  it('keeps the client’s escapes and numbers: the same values, not re-encoded', () => {
    const raw = Buffer.from(' { "e" : "\\u00e9\\/" ,"n":[1.50, 1E2, -0] , "o" : { } , "a" : [ ] } ');
    const out = layout(raw).toString();
    assert.equal(out, '{\n  "e": "\\u00e9\\/",\n  "n": [\n    1.50,\n    1E2,\n    -0\n  ],\n  "o": {},\n  "a": []\n}');
    assert.deepEqual(JSON.parse(out), JSON.parse(raw.toString()));
  });

  it('gives way to the one-line layout where indenting would grow the body more than four times', () => {
    const deep = Buffer.from(`{"a":${'['.repeat(50_000)}${']'.repeat(50_000)}}`);
    assert.equal(layout(deep, 1).toString(), deep.toString());
    const wide = Buffer.from(JSON.stringify([[[[[[[[[[Array.from({ length: 20_000 }, () => 0)]]]]]]]]]]));
    assert.equal(layout(wide).toString(), wide.toString(), '20,000 one-byte members 11 levels deep');
    // Closing brackets count too: a long string, then 550 levels that close one by one.
    const closing = Buffer.from(`["${'x'.repeat(100_000)}",${'['.repeat(550)}1${']'.repeat(550)}]`);
    assert.ok(layout(closing, 1).length <= 4 * closing.length + 4096 + 2 * 552, 'within 4x and a line');
    const shallow = Buffer.from(JSON.stringify([Array.from({ length: 20_000 }, () => 0)]));
    assert.equal(layout(shallow).toString(), JSON.stringify(JSON.parse(shallow.toString()), null, 2), 'two levels: under four times');
  });

  it('writes long strings as pieces of the input, not copies, and short ones into chunks of its own', () => {
    const value = { system: 'x'.repeat(5000), messages: Array.from({ length: 3000 }, (_, i) => ({ role: 'user', content: i % 100 === 0 ? `é${'y'.repeat(1500 + i)}` : 'short' })) };
    const raw = Buffer.from(JSON.stringify(value));
    const pieces = indentJsonBytes(raw, 1) ?? assert.fail('not laid out');
    assert.equal(Buffer.concat(pieces).toString(), JSON.stringify(value, null, 2).replaceAll('\n', '\n  '));
    const shared = pieces.filter((piece) => piece.buffer === raw.buffer);
    assert.equal(shared.length, 31, 'the system prompt and 30 long contents');
    assert.ok(shared.every((piece) => piece.length >= 1024 && piece[0] === 0x22 && piece[piece.length - 1] === 0x22));
    assert.ok(pieces.filter((piece) => piece.buffer !== raw.buffer).every((piece) => piece.length <= 64 * 1024), 'its own chunks stay small');
  });

  it('is exactly the pretty rendering of the agent fixtures', () => {
    for (const text of Object.values(bodies)) assert.equal(layout(Buffer.from(text)).toString(), JSON.stringify(JSON.parse(text), null, 2));
  });
});

describe('duplicateKeys', () => {
  it('finds every key written twice in one object, at any depth, by its decoded name, with the object\'s path', () => {
    const text = '{"a": 1, "b": {"x": [1, {"k": 1, "k": "}]{,\\"k\\""}, {"k": 2}]}, "\\u0061": 2, "c": [[{"z": 0, "z": 0, "z": 0}]]}';
    const raw = Buffer.from(text);
    const found = duplicateKeys(raw).map(({ path, key, first, second }) => ({ path, key, first: raw.toString('utf8', first, first + 4), second: raw.toString('utf8', second, second + 4) }));
    assert.deepEqual(found, [
      { path: ['b', 'x', 1], key: 'k', first: '"k":', second: '"k":' },
      { path: [], key: 'a', first: '"a":', second: '"\\u0' },
      { path: ['c', 0, 0], key: 'z', first: '"z":', second: '"z":' },
      { path: ['c', 0, 0], key: 'z', first: '"z":', second: '"z":' },
    ]);
    assert.deepEqual(duplicateKeys(Buffer.from('{"a": {"a": 1}, "b": [{"a": 1}, {"a": 1}]}')), []);
  });

  it('takes memory in proportion to the depth: 20,000 nested brackets (a copy of the path per level took gigabytes, a keys.json reload crashed the gateway)', () => {
    const depth = 20_000;
    const raw = Buffer.from(`{"a": ${'['.repeat(depth)}{"k": 1, "k": 2}${']'.repeat(depth)}}`);
    const before = process.resourceUsage().maxRSS;
    const [found] = duplicateKeys(raw);
    assert.equal(found?.path.length, depth + 1);
    const grew = (process.resourceUsage().maxRSS - before) / 1024;
    assert.ok(grew < 300, `peak RSS grew by ${Math.round(grew)} MB`);
  });
});

describe("parseProviderJson (a provider's answers and events)", () => {
  it('parses what JSON.parse parses, text or bytes, and throws its SyntaxError', () => {
    const answer = { id: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'hé \u2028 "quoted"' } }], usage: { prompt_tokens: 1 } };
    assert.deepEqual(parseProviderJson(JSON.stringify(answer)), answer);
    assert.deepEqual(parseProviderJson(Buffer.from(JSON.stringify(answer))), answer);
    assert.throws(() => parseProviderJson('{"a":'), SyntaxError);
    assert.throws(() => parseProviderJson(Buffer.from(`{"a":[${'1,'.repeat(40_000)}`)), SyntaxError);
  });

  it('refuses a long text of millions of tiny values before parsing it, and one nested past 128 levels', () => {
    const objects = `{"choices":[${'{},'.repeat(2_600_000)}{}]}`;
    assert.throws(() => parseProviderJson(objects), (err: unknown) => err instanceof TooMany && err.what === 'objects and arrays' && err.max === 2_500_000);
    assert.throws(() => parseProviderJson(Buffer.from(objects)), TooMany);
    assert.throws(() => parseProviderJson(`{"a":[${'0,'.repeat(12_100_000)}0]}`), (err: unknown) => err instanceof TooMany && err.what === 'values');
    assert.throws(() => parseProviderJson(`${'['.repeat(40_000)}${']'.repeat(40_000)}`), TooDeep);
  });

  it('refuses a short text nested past 128 levels too (a 780-byte answer 300 deep), counting no bracket inside a string', () => {
    const deep = (depth: number): string => `{"content":"x","citations":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    assert.throws(() => parseProviderJson(deep(300)), TooDeep);
    assert.throws(() => parseProviderJson(Buffer.from(deep(129))), TooDeep);
    assert.deepEqual(parseProviderJson(deep(127)), JSON.parse(deep(127)));
    const inStrings = JSON.stringify({ a: '['.repeat(300), b: '"[[[\\', c: [[['\\"{{{']]] });
    assert.deepEqual(parseProviderJson(inStrings), JSON.parse(inStrings));
  });

  it("takes more than a request may hold (a long answer's logprobs: ~43 objects and arrays and ~170 values per token at top_logprobs 20), and short texts checked for their depth only", () => {
    const entry = (text: string) => ({ token: text, logprob: -0.25, bytes: [...Buffer.from(text)] });
    const token = { ...entry(' word'), top_logprobs: Array.from({ length: 20 }, (_, i) => entry(` w${i}`)) };
    const answer = { id: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'x' }, logprobs: { content: Array.from({ length: 2_000 }, () => token) } }] };
    assert.equal((parseProviderJson(JSON.stringify(answer)) as typeof answer).choices[0]?.logprobs.content.length, 2_000);
    // Past what a request may hold, and past the first answer limits (1,000,000 and 4,000,000), which refused a 20,000-token answer at 20.
    assert.equal((parseProviderJson(`[${'[],'.repeat(1_100_000)}[]]`) as unknown[]).length, 1_100_001);
    assert.equal((parseProviderJson(`[${'0,'.repeat(4_100_000)}0]`) as unknown[]).length, 4_100_001);
    assert.ok(1_100_000 > MAX_CONTAINERS && 4_100_000 > MAX_VALUES);
    // Under 64 KB: only its depth is checked (21,000 objects cost a few milliseconds at most).
    assert.equal((parseProviderJson(`[${'{},'.repeat(21_000)}{}]`) as unknown[]).length, 21_001);
  });
});
