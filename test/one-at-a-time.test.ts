/**
 * What a translation from a chat stream holds: the items of an answer sent one at a time
 * (OneAtATime) hold only what waits for its turn, or what their API repeats whole at the end,
 * and never more than MAX_HELD_CHARS at once: past it the stream fails as too large, rather than
 * growing with whatever a provider sends (a 600 MB answer reached V8's string limit: a 500).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../src/errors.js';
import { MAX_HELD_CHARS, OneAtATime, type Sequenced } from '../src/formats/chat/one-at-a-time.js';
import type { ChatCompletionChunk } from '../src/formats/chat/types.js';
import { chatStreamToMessages } from '../src/formats/messages/stream-from-chat.js';
import { chatStreamToResponses } from '../src/formats/responses/stream-from-chat.js';
import type { StreamItem } from '../src/formats/stream.js';

interface TestItem extends Sequenced {
  readonly name: string;
  /** Keeps its text while open; and once stopped. */
  readonly keep: boolean;
  readonly retain: boolean;
  whole: boolean;
}

/** A sequencer holding at most 10 characters, and what it sent. */
function sequencer(): { items: OneAtATime<TestItem, string>; sent: string[]; add(name: string, keep?: boolean, retain?: boolean): TestItem } {
  const sent: string[] = [];
  const items = new OneAtATime<TestItem, string>(
    {
      start: (item) => sent.push(`start ${item.name}`),
      delta: (item, value) => sent.push(`${item.name}:${value}`),
      stop: (item) => sent.push(`stop ${item.name}`),
      whole: (item) => item.whole,
      keeps: (item) => item.keep,
      retains: (item) => item.retain,
    },
    10,
  );
  const add = (name: string, keep = false, retain = false): TestItem => {
    const item: TestItem = { name, keep, retain, whole: false, text: '', state: 'waiting' };
    items.add(item, []);
    return item;
  };
  return { items, sent, add };
}

const tooLarge = (err: unknown): boolean => err instanceof GatewayError && err.status === 502 && err.code === 'upstream_response_too_large';

describe('OneAtATime: what it holds', () => {
  it('holds nothing of an open item its API does not keep, however much goes through it', () => {
    const { items, add } = sequencer();
    const open = add('a');
    for (let i = 0; i < 100; i++) items.content(open, 'twelve chars', []);
    assert.equal(open.text, '');
  });

  it("holds a waiting item's text until its turn, sends it then, and lets go of it", () => {
    const { items, sent, add } = sequencer();
    const first = add('a');
    const second = add('b');
    items.content(second, 'held', []);
    items.content(second, 'more', []);
    assert.equal(second.text, 'heldmore');
    first.whole = true;
    items.content(first, 'x', []);
    assert.deepEqual(sent.slice(-3), ['stop a', 'start b', 'b:heldmore']);
    assert.equal(second.text, '', 'sent: no longer held');
    // What it let go of no longer counts: another waiting item may hold 10 again.
    const third = add('c');
    items.content(third, '0123456789', []);
  });

  it('fails the stream as too large once waiting items hold more than its limit', () => {
    const { items, add } = sequencer();
    add('a');
    const waiting = add('b');
    items.content(waiting, '0123456789', []);
    assert.throws(() => items.content(waiting, '!', []), tooLarge);
  });

  it('counts all the text of an item its API keeps whole, open or not', () => {
    const { items, add } = sequencer();
    const kept = add('a', true);
    items.content(kept, '01234', []);
    items.content(kept, '56789', []);
    assert.equal(kept.text, '0123456789');
    assert.throws(() => items.content(kept, '!', []), tooLarge);
  });

  it('lets go of a kept item\'s text when it stops, unless its API needs it after', () => {
    const { items, add } = sequencer();
    const call = add('call', true);
    items.content(call, '{"a":"12"}', []);
    call.whole = true;
    const next = add('next', true, true);
    assert.equal(call.text, '', 'stopped: let go of');
    items.content(next, '0123456789', []);
    assert.equal(next.text, '0123456789');
    items.finish([]);
    assert.equal(next.text, '0123456789', 'retained once stopped');
  });

  it('counts text held outside its items with theirs, until let go of', () => {
    const first = sequencer();
    const item = first.add('a', true);
    first.items.reserve(6);
    first.items.letGo(6);
    first.items.content(item, '0123456789', []);
    const second = sequencer();
    second.items.reserve(6);
    assert.throws(() => second.items.content(second.add('a', true), '01234', []), tooLarge);
  });
});

describe('a translated answer larger than the limit', () => {
  const piece = 'x'.repeat(64 * 1024);
  const pieces = Math.ceil(MAX_HELD_CHARS / piece.length) + 16;
  const chunk = (content: string): StreamItem<ChatCompletionChunk> => ({
    kind: 'event',
    event: { id: 'chatcmpl-big', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] } as ChatCompletionChunk,
  });

  it('goes through to a Messages client whole: its text is sent as it comes, never held', () => {
    const translate = chatStreamToMessages({ promptTokens: 10, answerId: 'gw1' });
    let text = 0;
    for (let i = 0; i < pieces; i++) {
      for (const item of translate(chunk(piece))) {
        const event = item.kind === 'event' ? (item.event as { type: string; delta?: { text?: string } }) : null;
        if (event?.type === 'content_block_delta') text += event.delta?.text?.length ?? 0;
      }
    }
    assert.equal(text, pieces * piece.length);
    assert.ok(text > MAX_HELD_CHARS);
  });

  it("fails a Messages client's stream once calls whose names have not come hold more than the limit between them", () => {
    const translate = chatStreamToMessages({ promptTokens: 10, answerId: 'gw1' });
    const nameless = (index: number, args: string): StreamItem<ChatCompletionChunk> => ({
      kind: 'event',
      event: { id: 'chatcmpl-big', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { tool_calls: [{ index, ...(args === '' ? { id: `call_${index}` } : {}), function: { arguments: args } }] }, finish_reason: null }] } as ChatCompletionChunk,
    });
    const half = Math.ceil(pieces / 2);
    translate(nameless(0, ''));
    translate(nameless(1, ''));
    // Arguments as a server streams them: an object's text (a piece that repeated all the text so far would be a resend).
    translate(nameless(0, '{"a":"'));
    translate(nameless(1, '{"a":"'));
    for (let i = 0; i < half - 16; i++) translate(nameless(0, piece));
    assert.throws(() => {
      for (let i = 0; i < half + 16; i++) translate(nameless(1, piece));
    }, tooLarge);
  });

  it('fails a Responses client\'s stream as too large: its last events would repeat all of it', () => {
    const translate = chatStreamToResponses({ request: { model: 'gpt-4o-mini', input: 'hi' }, tools: new Map() }, { promptTokens: 10, answerId: 'gw1' });
    let sent = 0;
    assert.throws(() => {
      for (let i = 0; i < pieces; i++) {
        translate(chunk(piece));
        sent += piece.length;
      }
    }, tooLarge);
    assert.ok(sent <= MAX_HELD_CHARS && sent > MAX_HELD_CHARS - piece.length, `failed once past the limit (${sent} characters in)`);
  });
});
