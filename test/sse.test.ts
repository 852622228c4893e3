import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sseFrame, type SseEvent } from '../src/formats/sse.js';
import { SseParser, SseTooLargeError } from '../src/upstream/sse.js';

function parseAll(chunks: Buffer[]): { events: SseEvent[]; comments: number } {
  const parser = new SseParser();
  const events: SseEvent[] = [];
  for (const chunk of chunks) events.push(...parser.push(chunk));
  events.push(...parser.end());
  return { events, comments: parser.comments };
}

/** Every way of cutting `text` in two, plus one byte at a time. */
function splits(text: string): Buffer[][] {
  const bytes = Buffer.from(text);
  const result: Buffer[][] = [];
  for (let cut = 0; cut <= bytes.length; cut++) result.push([bytes.subarray(0, cut), bytes.subarray(cut)]);
  result.push([...bytes].map((byte) => Buffer.from([byte])));
  return result;
}

describe('SseParser', () => {
  it('parses OpenAI data frames and the [DONE] sentinel', () => {
    const { events } = parseAll([Buffer.from('data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n')]);
    assert.deepEqual(events, [
      { event: undefined, data: '{"a":1}' },
      { event: undefined, data: '{"b":2}' },
      { event: undefined, data: '[DONE]' },
    ]);
  });

  it('keeps Anthropic event names', () => {
    const { events } = parseAll([Buffer.from('event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {"type": "ping"}\n\n')]);
    assert.deepEqual(events, [
      { event: 'message_start', data: '{"type":"message_start"}' },
      { event: 'ping', data: '{"type": "ping"}' },
    ]);
  });

  it('yields the same events however the bytes are split, with \\n, \\r\\n and \\r line ends and multi-byte text', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = `: keep-alive${eol}${eol}event: x${eol}data: {"t":"héllo – 世界 🙂"}${eol}${eol}data: a${eol}data: b${eol}${eol}data: [DONE]${eol}${eol}`;
      const expected = [
        { event: 'x', data: '{"t":"héllo – 世界 🙂"}' },
        { event: undefined, data: 'a\nb' },
        { event: undefined, data: '[DONE]' },
      ];
      for (const chunks of splits(text)) {
        const { events, comments } = parseAll(chunks);
        assert.deepEqual(events, expected, `eol ${JSON.stringify(eol)}, split into ${chunks.map((c) => c.length).join('+')}`);
        assert.equal(comments, 1);
      }
    }
  });

  it('skips comment lines (DeepSeek keep-alives) and counts them', () => {
    const { events, comments } = parseAll([Buffer.from(': keep-alive\n\n: keep-alive\n\ndata: {}\n\n')]);
    assert.deepEqual(events, [{ event: undefined, data: '{}' }]);
    assert.equal(comments, 2);
  });

  it('does not dispatch an event that has no data line', () => {
    const { events } = parseAll([Buffer.from('event: lonely\n\nid: 7\nretry: 10\n\n')]);
    assert.deepEqual(events, []);
  });

  it('accepts "data:" without a space and a field without a colon', () => {
    const { events } = parseAll([Buffer.from('data:x\n\ndata\n\n')]);
    assert.deepEqual(events, [
      { event: undefined, data: 'x' },
      { event: undefined, data: '' },
    ]);
  });

  it('delivers a last event whose blank line never came when the stream ends', () => {
    const { events } = parseAll([Buffer.from('data: {"a":1}\n\ndata: [DONE]')]);
    assert.deepEqual(events.map((event) => event.data), ['{"a":1}', '[DONE]']);
    assert.deepEqual(parseAll([Buffer.from('event: message_stop\ndata: {"type":"message_stop"}\n')]).events, [{ event: 'message_stop', data: '{"type":"message_stop"}' }]);
    assert.deepEqual(parseAll([Buffer.from('data:{"b":2}')]).events, [{ event: undefined, data: '{"b":2}' }]);
    // Data over several lines (pretty-printed), and an event whose unfinished last line is no data.
    assert.deepEqual(parseAll([Buffer.from('data: {\ndata:  "c": 3\ndata: }')]).events, [{ event: undefined, data: '{\n "c": 3\n}' }]);
    assert.deepEqual(parseAll([Buffer.from('data: {"a":1}\n: keep-alive')]).events, [{ event: undefined, data: '{"a":1}' }]);
    assert.deepEqual(parseAll([Buffer.from('data: {"a":1}\nid: 7')]).events, [{ event: undefined, data: '{"a":1}' }]);
  });

  it('drops a last event cut inside a line when the stream ends, as the WHATWG rules do: it is a fragment', () => {
    for (const text of ['data: {"id":"c1","object":"chat.completi', 'event: content_block_delta\ndata: {"type"', 'event: response.output_text.delta\ndata:', 'data: {"a":1}\ndata: {"b', 'event: message_st', 'data: [DON']) {
      assert.deepEqual(parseAll([Buffer.from(`data: {"first":1}\n\n${text}`)]).events, [{ event: undefined, data: '{"first":1}' }], text);
    }
  });

  it('does not emit a partial event before its blank line arrives', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push(Buffer.from('data: {"a":')), []);
    assert.deepEqual(parser.push(Buffer.from('1}\n')), []);
    assert.deepEqual(parser.push(Buffer.from('\n')), [{ event: undefined, data: '{"a":1}' }]);
  });
});

describe('sseFrame', () => {
  it('writes one data line for single-line data', () => {
    assert.equal(sseFrame('{"a":1}'), 'data: {"a":1}\n\n');
  });
  it('splits data with line breaks over several data lines, which parse back to the same data', () => {
    const frame = sseFrame('a\nb\r\nc');
    assert.equal(frame, 'data: a\ndata: b\ndata: c\n\n');
    assert.deepEqual(parseAll([Buffer.from(frame)]).events, [{ event: undefined, data: 'a\nb\nc' }]);
  });
});

describe('SseParser limits and edge cases', () => {
  it('skips a UTF-8 byte order mark at the start of the stream', () => {
    const { events } = parseAll([Buffer.from([0xef, 0xbb]), Buffer.from([0xbf]), Buffer.from('data: first\n\n')]);
    assert.deepEqual(events, [{ event: undefined, data: 'first' }]);
  });

  it('joins a line split over thousands of reads, once', () => {
    const parser = new SseParser();
    const events: SseEvent[] = [];
    events.push(...parser.push(Buffer.from('data: ')));
    for (let i = 0; i < 10_000; i++) events.push(...parser.push(Buffer.from('abcdefghij')));
    events.push(...parser.push(Buffer.from('\n\n')));
    assert.equal(events.length, 1);
    assert.equal(events[0]?.data.length, 100_000);
  });

  it('refuses a line or an event larger than its limit', () => {
    const parser = new SseParser(1000);
    assert.throws(() => parser.push(Buffer.from(`data: ${'x'.repeat(2000)}`)), SseTooLargeError);
    const lines = new SseParser(1000);
    assert.throws(() => {
      for (let i = 0; i < 20; i++) lines.push(Buffer.from(`data: ${'y'.repeat(100)}\n`));
    }, SseTooLargeError);
  });
});
