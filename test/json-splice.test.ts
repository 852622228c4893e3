import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentConversation, chatBody, random } from '../bench/fixtures.js';
import { chatClient } from '../src/formats/chat/index.js';
import { parseJsonBytes } from '../src/formats/json-bytes.js';
import { changesBetween, splicedBody, topMembers, withChanges, unchanged } from '../src/formats/json-splice.js';

const text = (body: Buffer | readonly Buffer[] | null): string => {
  assert.ok(body !== null, 'spliced');
  return Buffer.isBuffer(body) ? body.toString('utf8') : Buffer.concat(body).toString('utf8');
};

/** The splice of `changes` into `source`, checked against JSON.parse and the same change made to the parsed value. */
function check(source: string, changes: Record<string, unknown>): string {
  const raw = Buffer.from(source);
  const document = parseJsonBytes(raw, 64) as object; // small pieces: the scan's members are used
  const out = text(splicedBody({ raw, document, changes: new Map(Object.entries(changes)) }));
  const expected = { ...(JSON.parse(source) as Record<string, unknown>) };
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete expected[key];
    else if (!(key in expected)) Object.assign(expected, { [key]: value });
    else expected[key] = value;
  }
  assert.deepEqual(JSON.parse(out), expected, out);
  // The same without the scan (a small body, parsed whole).
  assert.equal(text(splicedBody({ raw, document: {}, changes: new Map(Object.entries(changes)) })), out);
  return out;
}

describe('splicedBody', () => {
  it('changes only the members named: numbers JSON cannot hold exactly stay as the client wrote them', () => {
    const source = '{"model":"claude-sonnet-4-5","max_tokens":64000,"tools":[{"input_schema":{"maximum":9007199254740993,"minimum":-0,"multipleOf":1e400}}],"seed":12345678901234567890}';
    const out = check(source, { model: 'claude-opus-4-1', max_tokens: 4096 });
    assert.equal(out, '{"model":"claude-opus-4-1","max_tokens":4096,"tools":[{"input_schema":{"maximum":9007199254740993,"minimum":-0,"multipleOf":1e400}}],"seed":12345678901234567890}');
  });

  it('keeps the client spacing, escapes and key order around the members it changes', () => {
    const source = '{ "a" : "\\u00e9" ,\n  "model":  "x" , "b":[1.50, 2e3], "c" : {"d": "e"} }';
    assert.equal(check(source, { model: 'y' }), '{ "a" : "\\u00e9" ,\n  "model":  "y" , "b":[1.50, 2e3], "c" : {"d": "e"} }');
  });

  it('adds a member that was not there first, and leaves out one set to undefined, first, last, alone or several', () => {
    assert.equal(check('{"model":"x","stream":true}', { stream_options: { include_usage: true } }), '{"stream_options":{"include_usage":true},"model":"x","stream":true}');
    assert.equal(check('{}', { model: 'x' }), '{"model":"x"}');
    assert.equal(check(' { } ', { model: 'x' }), ' {"model":"x" } ');
    assert.equal(check('{"thinking":{"type":"enabled"},"model":"x"}', { thinking: undefined }), '{"model":"x"}');
    assert.equal(check('{"model":"x","thinking":{"type":"enabled"}}', { thinking: undefined }), '{"model":"x"}');
    assert.equal(check('{"thinking":1}', { thinking: undefined }), '{}');
    assert.equal(check('{"a":1,"b":2,"c":3,"d":4}', { c: undefined, d: undefined, a: 9 }), '{"a":9,"b":2}');
    assert.equal(check('{"a":1,"b":2,"c":3}', { a: undefined, b: undefined }), '{"c":3}');
    assert.equal(check('{"a":1}', { gone: undefined }), '{"a":1}');
  });

  it('is the client bytes themselves when nothing changes, and null for a body that is not an object', () => {
    const raw = Buffer.from('{"model":"x"}');
    assert.equal(splicedBody(unchanged(raw, {})), raw);
    assert.equal(splicedBody({ raw: Buffer.from('[1,2]'), document: {}, changes: new Map([['model', 'y']]) }), null);
    assert.equal(topMembers(Buffer.from('"text"')), null);
  });

  it('splices an agent-sized body as pieces of its own bytes, its conversation not copied', () => {
    const source = Buffer.from(chatBody(agentConversation(1_000_000)));
    const document = parseJsonBytes(source) as Record<string, unknown>;
    const body = splicedBody(withChanges(unchanged(source, document), [['model', 'gpt-5']]));
    assert.ok(Array.isArray(body));
    assert.ok(body.some((piece) => piece.buffer === source.buffer && piece.length > 900_000), 'the conversation is a piece of the client buffer');
    assert.deepEqual(JSON.parse(text(body)), { ...(JSON.parse(source.toString('utf8')) as object), model: 'gpt-5' });
  });

  it('matches JSON.parse on random objects with random changes', () => {
    const next = random(11);
    const value = (depth: number): unknown => {
      const pick = next();
      if (depth > 2 || pick < 0.4) return [0, -0.5, 1e21, 'a"b\\\\', 'é', true, null][Math.floor(next() * 7)];
      if (pick < 0.7) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(next() * 4) }, (_, i) => [`k${i}`, value(depth + 1)]));
    };
    for (let round = 0; round < 500; round++) {
      const keys = Array.from({ length: Math.floor(next() * 6) }, (_, i) => `m${i}`);
      const source = JSON.stringify(Object.fromEntries(keys.map((key) => [key, value(0)])), null, next() < 0.5 ? 2 : undefined);
      const changes: Record<string, unknown> = {};
      for (const key of [...keys, 'new1', 'new2']) if (next() < 0.3) changes[key] = next() < 0.4 ? undefined : value(1);
      check(source, changes);
    }
  });
});

describe('a mapped agent-sized request', () => {
  it('changes the model without parsing the conversation: the copy keeps it as bytes, and the splice sends it as the client wrote it', () => {
    const raw = Buffer.from(chatBody(agentConversation(1_000_000)));
    const parsed = chatClient.parseRequest(raw);
    const copy = chatClient.rewrite(parsed.request, { model: 'gpt-5' });
    const unread = (object: object): boolean => typeof Object.getOwnPropertyDescriptor(object, 'messages')?.get === 'function';
    assert.ok(unread(parsed.request) && unread(copy), 'the conversation was not parsed');
    const changes = changesBetween(parsed.request, copy);
    assert.deepEqual([...changes], [['model', 'gpt-5']]);
    assert.ok(unread(copy), 'nor by finding what changed');
    const body = text(splicedBody({ raw, document: parsed.request, changes }));
    assert.equal(body, raw.toString('utf8').replace(/^\{"model":"[^"]*"/, '{"model":"gpt-5"'));
    // Read on the copy (a translation would), it is the conversation, parsed once for both.
    assert.deepEqual(copy.messages, (JSON.parse(raw.toString('utf8')) as { messages: unknown }).messages);
    assert.equal(copy.messages, parsed.request.messages);
  });
});

describe('changesBetween', () => {
  it('names the members a shallow copy changed, added or left out', () => {
    const original = { model: 'a', max_tokens: 10, messages: [1], thinking: { type: 'enabled' } };
    const { thinking: _thinking, ...copy } = { ...original, model: 'b', extra: 1 };
    assert.deepEqual([...changesBetween(original, copy)], [['model', 'b'], ['extra', 1], ['thinking', undefined]]);
  });
});
