import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentConversation, chatBody, messagesBody, random, responsesBody } from '../bench/fixtures.js';
import { jsonPieces } from '../src/formats/json-pieces.js';

const bytesOf = (result: string | Buffer[]): string => (typeof result === 'string' ? result : Buffer.concat(result).toString('utf8'));

describe('jsonPieces', () => {
  it('is JSON.stringify of the agent fixtures, in pieces of about 32 K characters', () => {
    const conversation = agentConversation(1_000_000);
    for (const [text, key] of [[chatBody(conversation), 'messages'], [messagesBody(conversation), 'messages'], [responsesBody(conversation), 'input']] as const) {
      const value = JSON.parse(text) as Record<string, unknown>;
      const result = jsonPieces(value, key);
      assert.ok(Array.isArray(result) && result.length > 20, 'in pieces');
      assert.equal(bytesOf(result), JSON.stringify(value));
      assert.ok(result.every((piece) => piece.length < 200_000), 'no piece holds the conversation');
    }
  });

  it('leaves out what JSON.stringify leaves out, writes null where it does, and keeps every key in order', () => {
    const next = random(3);
    const text = (): string => ['a', 'é', '→', '"', '\\', '\n', '😀', '\uD800', 'x'.repeat(Math.floor(next() * 40_000))][Math.floor(next() * 9)] as string;
    const elements: unknown[] = Array.from({ length: 500 }, (_, i) => (i % 97 === 0 ? undefined : i % 89 === 0 ? () => 1 : { role: 'user', content: text(), n: i, nested: [null, true, 1.5e-7, { deep: text() }] }));
    const value: Record<string, unknown> = { model: 'm', dropped: undefined, fn: () => 1, messages: elements, tail: { t: text() }, date: new Date(0) };
    Object.defineProperty(value, '__proto__', { value: { own: true }, enumerable: true, configurable: true, writable: true });
    assert.equal(bytesOf(jsonPieces(value, 'messages')), JSON.stringify(value));
    assert.equal(bytesOf(jsonPieces({ messages: elements }, 'messages')), JSON.stringify({ messages: elements }), 'the array alone');
    assert.equal(bytesOf(jsonPieces({ ...value, messages: 'not an array' }, 'messages')), JSON.stringify({ ...value, messages: 'not an array' }));
    assert.equal(typeof jsonPieces({ model: 'm', messages: elements.slice(0, 10) }, 'messages'), 'string', 'a short conversation is one string');
  });

  it('goes by size, not by the number of messages: a 137 KB agent turn of a few dozen messages is in pieces, a long chat of short ones one string', () => {
    const conversation = agentConversation(137_000);
    const value = JSON.parse(chatBody(conversation)) as { messages: unknown[] };
    assert.ok(value.messages.length < 64, `${value.messages.length} messages`);
    const result = jsonPieces(value, 'messages');
    assert.ok(Array.isArray(result) && result.length >= 4, 'in pieces');
    assert.equal(bytesOf(result), JSON.stringify(value));
    const chat = { model: 'm', messages: Array.from({ length: 200 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i} é` })) };
    const short = jsonPieces(chat, 'messages');
    assert.equal(short, JSON.stringify(chat));
    assert.equal(jsonPieces({ model: 'm', messages: [] }, 'messages'), '{"model":"m","messages":[]}');
    assert.equal(jsonPieces({ model: 'm', messages: chat.messages.slice(0, 3) }, 'messages'), JSON.stringify({ model: 'm', messages: chat.messages.slice(0, 3) }));
  });
});
