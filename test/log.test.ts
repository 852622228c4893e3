import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { agentConversation, chatBody, random } from '../bench/fixtures.js';
import { InteractionLog } from '../src/observe/log.js';
import { capBody, cutStream, MAX_ASSEMBLED_STREAM_BYTES } from '../src/observe/log-caps.js';
import { loggedRequest, RawJson, renderEntry, renderEntryBytes, type LogEntry, type LogFormat } from '../src/observe/log-render.js';
import { createSinks, IOV_MAX, MAX_PENDING_BYTES, writeAll, type LogSink, type RenderedBatch } from '../src/observe/log-sinks.js';
import { parseJsonStream } from './support/gateway.js';
import { parseJsonObject } from '../src/formats/json.js';

const entry = (id: string, request: unknown = { model: 'm' }): LogEntry => ({
  timestamp: '2026-01-01T00:00:00.000Z',
  request_id: id,
  virtual_key: 'vk',
  key_name: 'team',
  provider: 'mock',
  model: 'm',
  method: 'POST',
  path: '/chat/completions',
  status: 200,
  duration_ms: 1,
  stream: false,
  usage: null,
  cost_usd: 0,
  request,
  response: null,
  // A request a provider saw (one none saw is logged with its body capped: InteractionLog.record).
  upstream: { status: 200, request_id: null },
});

class MemorySink implements LogSink {
  writes: string[] = [];
  failures = 0;
  constructor(readonly formats: readonly LogFormat[] = ['pretty']) {}
  write(batch: RenderedBatch): void {
    this.writes.push(Buffer.concat(batch.text[this.formats[0] as LogFormat] ?? []).toString());
    batch.done();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('writeAll', () => {
  it('writes every byte in order through writes that take part of what they are given: the first given all, each after a short one at most IOV_MAX', async () => {
    const next = random(9);
    const pieces = Array.from({ length: 5000 }, (_, i) => Buffer.alloc(1 + Math.floor(next() * 300), i % 251));
    const written: Buffer[] = [];
    const given: number[] = [];
    let left = pieces.reduce((sum, piece) => sum + piece.length, 0);
    await writeAll([...pieces], async (some) => {
      given.push(some.length);
      const all = Buffer.concat(some);
      if (given.length === 1) assert.equal(all.length, left, 'the first call is given all');
      // Short, then whole: a pipe that fills, and one that drains.
      const taken = given.length % 3 === 0 ? all.length : 1 + Math.floor((next() * all.length) / 4);
      written.push(all.subarray(0, taken));
      left -= taken;
      return taken;
    });
    assert.ok(Buffer.concat(written).equals(Buffer.concat(pieces)));
    assert.equal(given[0], 5000);
    assert.ok(given.length > 5);
    assert.ok(given.slice(1).every((count) => count <= IOV_MAX), `after a short write at most ${IOV_MAX}: ${given.join(', ')}`);
    await assert.rejects(writeAll([Buffer.from('x')], async () => 0), /nothing was written/);
  });
});

describe('log rendering', () => {
  it('pretty-prints with two spaces', () => {
    assert.equal(renderEntry(entry('a')).split('\n')[1], '  "timestamp": "2026-01-01T00:00:00.000Z",');
  });

  it('renders an entry too deep to stringify without its bodies instead of throwing', () => {
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const text = renderEntry(entry('deep', deep));
    const parsed = JSON.parse(text) as LogEntry;
    assert.equal(parsed.request_id, 'deep');
    assert.match(String(parsed.request), /^\[not logged: /);
  });

  it("lays out a body on one line where indenting it would grow it more than 4 times (deep, many short values); others stay indented", () => {
    // A tool call's input a model was steered to write as nested arrays of zeros: ~40 KB compact.
    let nested: unknown = Array.from({ length: 20_000 }, () => 0);
    for (let i = 0; i < 40; i++) nested = [nested];
    const answer = { id: 'msg_1', type: 'message', content: [{ type: 'tool_use', id: 'toolu_1', name: 'f', input: { a: nested } }] };
    for (const request of [{ model: 'm' }, new RawJson(Buffer.from('{"model":"m"}'))]) {
      const grown = { ...entry('grown', request), response: answer };
      const text = renderEntry(grown);
      const compact = JSON.stringify(answer).length;
      assert.ok(text.length < compact + 2000, `${text.length} bytes for ${compact} of answer`);
      assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(grown)));
      assert.match(text, /\n  "response": \{"id":"msg_1",/);
      assert.match(text, /\n  "upstream": \{\n/, 'the rest of the entry stays indented');
      const out: Buffer[] = [];
      renderEntryBytes(grown, 'pretty', out);
      assert.deepEqual(JSON.parse(Buffer.concat(out).toString()), JSON.parse(JSON.stringify(grown)));
      assert.ok(Buffer.concat(out).length < compact + 2000);
    }
    // A request body logged parsed (one not valid UTF-8, so not as its bytes) is checked the same way.
    const parsedRequest = { ...entry('grown-request', { model: 'm', tools: [{ input: { a: nested } }] }), response: { id: 'c' } };
    const requestText = renderEntry(parsedRequest);
    assert.ok(requestText.length < JSON.stringify(parsedRequest).length + 1000, `${requestText.length} bytes`);
    assert.deepEqual(JSON.parse(requestText), JSON.parse(JSON.stringify(parsedRequest)));
    assert.match(requestText, /\n  "request": \{"model":"m",/);
    assert.match(requestText, /\n  "response": \{\n    "id": "c"\n  \},\n/, 'the answer, not grown, stays indented');
    // Shaped so that every 64th line is shallow, the rest deep: every line's indent counts.
    const deep = (n: number): unknown => (n === 0 ? 0 : [deep(n - 1)]);
    const steered = { ...entry('steered'), response: Array.from({ length: 1400 }, (_, i) => (i % 2 === 0 ? 0 : deep(31))) };
    const steeredText = renderEntry(steered);
    assert.ok(steeredText.length < JSON.stringify(steered).length + 1000, `${steeredText.length} bytes`);
    assert.deepEqual(JSON.parse(steeredText), JSON.parse(JSON.stringify(steered)));
    // The answer as the entry's last member (before its closing brace): still whole JSON.
    const withoutUpstream: Partial<LogEntry> = { ...entry('last'), response: answer };
    delete withoutUpstream.upstream;
    const lastText = renderEntry(withoutUpstream as LogEntry);
    assert.deepEqual(JSON.parse(lastText), JSON.parse(JSON.stringify(withoutUpstream)));
    assert.ok(lastText.length < JSON.stringify(withoutUpstream).length + 1000);
    // A long answer that indenting grows little (its text is one long string) stays indented.
    const long = { ...entry('long'), response: { id: 'c', choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(100_000) } }] } };
    assert.equal(renderEntry(long), `${JSON.stringify(long, null, 2)}\n`);
  });

  it('writes entries in the order they were recorded, batched (one write per batch), one buffer for every sink', async () => {
    const a = new MemorySink();
    const b = new MemorySink();
    const log = new InteractionLog([a, b]);
    for (const id of ['1', '2', '3']) log.record(entry(id));
    await new Promise((resolve) => setTimeout(resolve, 50)); // the batch timer fires
    assert.equal(a.writes.length, 1, 'three entries, one write');
    log.record(entry('4'));
    await log.flush();
    assert.equal(a.writes.length, 2);
    const ids = a.writes.join('').match(/"request_id": "(\d)"/g);
    assert.deepEqual(ids, ['"request_id": "1"', '"request_id": "2"', '"request_id": "3"', '"request_id": "4"']);
    assert.deepEqual(a.writes, b.writes);
  });

  it('renders each format a destination wants, once per batch: pretty and one line per entry', async () => {
    const pretty = new MemorySink(['pretty']);
    const lines = new MemorySink(['json']);
    const log = new InteractionLog([pretty, lines]);
    log.record(entry('a'));
    log.record(entry('b'));
    await log.flush();
    assert.equal(lines.writes.length, 1);
    const rows = (lines.writes[0] as string).trimEnd().split('\n');
    assert.deepEqual(rows.map((row) => (JSON.parse(row) as LogEntry).request_id), ['a', 'b']);
    assert.match(pretty.writes[0] as string, /^\{\n {2}"timestamp"/);
  });

  it('is disabled, and records nothing, without destinations', () => {
    const log = new InteractionLog([]);
    assert.equal(log.enabled, false);
    log.record(entry('x'));
  });
});

describe('LOG_BODY_MAX_BYTES', () => {
  it("bounds what a stream's logged answer is assembled from: 64 MiB of events, 16 MiB or 256 times a smaller cap under it; a cut stream's head is itself cut to the cap", () => {
    const MiB = 1024 * 1024;
    assert.equal(new InteractionLog([], null).assembledStreamLimit, MAX_ASSEMBLED_STREAM_BYTES);
    assert.equal(MAX_ASSEMBLED_STREAM_BYTES, 64 * MiB);
    assert.equal(new InteractionLog([], 1024).assembledStreamLimit, 16 * MiB);
    assert.equal(new InteractionLog([], 128 * 1024).assembledStreamLimit, 32 * MiB);
    assert.equal(new InteractionLog([], 4 * MiB).assembledStreamLimit, 64 * MiB);
    const cut = cutStream({ id: 'c', choices: [{ message: { content: 'é'.repeat(1000) } }] }, 123_456_789);
    assert.deepEqual(JSON.parse(JSON.stringify(cut)), { truncated: true, original_bytes: 123_456_789, head: JSON.stringify({ id: 'c', choices: [{ message: { content: 'é'.repeat(1000) } }] }) });
    const capped = capBody(cut, 256) as { truncated: boolean; original_bytes: number; head: string };
    assert.equal(capped.original_bytes, 123_456_789, "the stream's size, not its head's");
    assert.ok(Buffer.byteLength(capped.head) <= 256 && capped.head.startsWith('{"id":"c"'));
  });

  it('logs a body over the cap as its head (the first bytes of its compact JSON) and its size; smaller ones whole', () => {
    const big = { model: 'm', messages: [{ role: 'user', content: 'é'.repeat(1000) }] };
    const capped = capBody(big, 256) as { truncated: boolean; original_bytes: number; head: string };
    assert.equal(capped.truncated, true);
    assert.equal(capped.original_bytes, Buffer.byteLength(JSON.stringify(big)));
    assert.ok(Buffer.byteLength(capped.head) <= 256);
    assert.ok(JSON.stringify(big).startsWith(capped.head), 'cut between characters');
    assert.deepEqual(capBody({ small: true }, 256), { small: true });
    assert.equal(capBody('x'.repeat(300), 256 * 2), 'x'.repeat(300), 'text bodies too, by their bytes');
    assert.equal(capBody(null, 256), null);
  });

  it('caps each entry before it is rendered, for every destination', async () => {
    const sink = new MemorySink(['pretty']);
    const log = new InteractionLog([sink], 300);
    const body = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] };
    log.record(entry('capped', body));
    await log.flush();
    const written = JSON.parse(sink.writes.join(''));
    assert.equal(written.request.truncated, true);
    assert.equal(written.request.original_bytes, JSON.stringify(body).length);
    assert.equal(written.response, null);
  });

  it("caps an error's message and detail too (a provider's message can be megabytes): the head, then its size", async () => {
    const sink = new MemorySink(['pretty']);
    const log = new InteractionLog([sink], 300);
    const message = `Rate limit reached: ${'é'.repeat(450_000)}`;
    log.record({ ...entry('error'), status: 429, error: { message, type: 'rate_limit_error', code: null, detail: `upstream 429 from http://127.0.0.1/v1 ${'d'.repeat(1000)}` } });
    log.record({ ...entry('small'), status: 429, error: { message: 'Rate limit reached', type: 'rate_limit_error', code: null } });
    await log.flush();
    const [capped, small] = parseJsonStream(sink.writes.join('')) as LogEntry[];
    const head = /^(.*) \[truncated: (\d+) bytes\]$/s.exec(capped?.error?.message ?? '');
    assert.ok(head !== null, capped?.error?.message.slice(0, 100));
    assert.ok(Buffer.byteLength(head[1] as string) <= 300 && message.startsWith(head[1] as string), 'its head, cut between characters');
    assert.equal(Number(head[2]), Buffer.byteLength(message));
    assert.match(capped?.error?.detail ?? '', /^upstream 429 from http:\/\/127\.0\.0\.1\/v1 d+ \[truncated: 1038 bytes\]$/);
    assert.deepEqual(small?.error, { message: 'Rate limit reached', type: 'rate_limit_error', code: null });
  });
});

describe('request bodies in the log, as their bytes', () => {
  const body = chatBody(agentConversation(137_000));
  const raw = Buffer.from(body);
  // A client's model name that looks like the field the raw body is spliced into.
  const large = (request: unknown): LogEntry => ({ ...entry('req_1', request), model: '\n  "request": null', response: { ok: true } });

  it('are logged as their bytes, whatever their size; not valid UTF-8, each invalid byte a U+FFFD', () => {
    assert.ok(loggedRequest(raw, null) instanceof RawJson);
    const small = loggedRequest(Buffer.from('{"model":"m"}'), { model: 'm' });
    assert.ok(small instanceof RawJson);
    assert.deepEqual(small.toJSON(), { model: 'm' });
    const at = body.indexOf('"content":"') + 11;
    const invalid = Buffer.concat([raw.subarray(0, at), Buffer.from([0xff]), raw.subarray(at)]);
    const logged = loggedRequest(invalid, JSON.parse(body));
    assert.ok(logged instanceof RawJson);
    assert.deepEqual(logged.toJSON(), JSON.parse(`${body.slice(0, at)}\ufffd${body.slice(at)}`));
  });

  it('never trust bytes no parser read: a large member a later duplicate key replaced is checked before it stands in an entry (else raw line breaks and control bytes reached the log)', () => {
    for (const bad of ['', '\xff']) {
      const body = Buffer.concat([
        Buffer.from(`{"model":"m","messages":[{"role":"user","content":"hi","zz":"${'x'.repeat(70_000)}\n{\\"forged\\":1}\n\u001b[31m"}, tru, 01],`),
        Buffer.from('"messages":[{"role":"user","content":"hi'),
        Buffer.from(bad, 'latin1'),
        Buffer.from('"}]}'),
      ]);
      const parsed = parseJsonObject(body, 'body', { messages: ['role', 'content'] });
      for (const format of ['pretty', 'json'] as LogFormat[]) {
        const pieces: Buffer[] = [];
        renderEntryBytes(entry('req_dup', loggedRequest(body, parsed)), format, pieces);
        const text = Buffer.concat(pieces).toString();
        const logged = JSON.parse(text) as LogEntry;
        assert.equal(typeof logged.request, 'string', 'not JSON after all: the text, escaped');
        assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f]/);
        if (format === 'json') assert.equal(text.indexOf('\n'), text.length - 1, 'one line');
      }
    }
  });

  it('holds a body nested deeper than any the gateway takes to the growth limit too (the check counts lines on the deepest nesting bodies have)', () => {
    let deep: unknown = Array<number>(20_000).fill(0);
    for (let level = 1; level < 300; level++) deep = [deep];
    const text = renderEntry({ ...entry('req_deeper'), response: deep });
    const line = text.split('\n').find((row) => row.startsWith('  "response": '));
    assert.equal(line, `  "response": ${JSON.stringify(deep)},`, 'on one line');
  });

  it('an entry with a large answer, its response laid out by the bounded walk, is byte for byte the native layout, growth checked body by body', () => {
    const text = 'word, "quoted" \\ é 😀 \u009b\ud800 '.repeat(8_000);
    const answers: unknown[] = [
      { id: 'x', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 2 } },
      { data: Array.from({ length: 40 }, (_, i) => ({ index: i, embedding: Array.from({ length: 300 }, (_, j) => (i * j) / 7 - 3.5) })) },
      [],
      {},
      'a text answer',
      // An agent's turn of a few KB: tool calls, their arguments a string of JSON.
      { id: 'y', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: Array.from({ length: 3 }, (_, i) => ({ id: `call_${i}`, type: 'function', function: { name: 'edit', arguments: JSON.stringify({ path: 'src/a.ts', old: 'let a = 1;\n'.repeat(40), new: 'let a = 2;\n'.repeat(40) }) } })) }, finish_reason: 'tool_calls' }] },
      // Grows five times indented: on one line, the rest of the entry indented.
      { a: [[Array.from({ length: 100_000 }, () => 0)]] },
      // Nested deep: the same.
      JSON.parse(`{"x":${'['.repeat(100)}${'0,'.repeat(50_000)}0${']'.repeat(100)}}`),
      // Grows 3.5 times, or 4.5 times but under 64 KiB: indented.
      { a: Array.from({ length: 30_000 }, () => 1234) },
      { a: [[Array.from({ length: 5_000 }, () => 0)]] },
    ];
    // Around the 64 KiB floor and the four times, with characters past ASCII and controls escaped as
    // six bytes: the walk counts bytes, the native check the text's units; the same layout.
    const nested = (zeros: number, s: string): unknown => ({ a: [[[Array.from({ length: zeros }, () => 0)]]], s });
    answers.push(nested(4230, 'é'.repeat(1000)), nested(4245, '\u007f'.repeat(300)), nested(4245, '\u0085'.repeat(300)), nested(4245, '😀'.repeat(150)));
    // Laid out exactly one byte over the limit (64 KiB, then four times and 4 KiB), and either side
    // of it: its last bracket counts too.
    const levelOne = (value: unknown): number => JSON.stringify(value, null, 2).replace(/\n/g, '\n  ').length;
    const over = (value: unknown): number => levelOne(value) - Math.max(4 * JSON.stringify(value).length + 4096, 65_536);
    for (const [zeros, length] of [[4000, 5443], [30_000, 68_639]] as const) {
      assert.equal(over(nested(zeros, 'x'.repeat(length))), 1);
      for (const each of [length - 1, length, length + 1]) answers.push(nested(zeros, 'x'.repeat(each)));
    }
    // A large flat request (its head, cut) cannot let the answer grow further than its own size allows.
    const cut = { truncated: true, original_bytes: 2_000_000, head: 'y'.repeat(1_000_000) };
    for (const response of answers) {
      for (const request of [loggedRequest(raw, JSON.parse(body)), loggedRequest(Buffer.from('{"model":"m","messages":[]}'), null), { model: 'm' }, cut]) {
        const native: Buffer[] = [];
        const bounded: Buffer[] = [];
        renderEntryBytes({ ...entry('req_b', request), response }, 'pretty', native);
        renderEntryBytes({ ...entry('req_b', request), response }, 'pretty', bounded, true);
        assert.equal(Buffer.concat(bounded).toString(), Buffer.concat(native).toString());
      }
    }
  });

  it('hold no raw DEL or C1 control in any entry (a terminal showing the log acts on U+009B as on ESC [): escaped, the same values', () => {
    const sneaky = 'x\u009b2J\u007f\u0085y';
    const controls = (bytes: Buffer): boolean => bytes.includes(0x7f) || [...bytes.keys()].some((i) => bytes[i] === 0xc2 && (bytes[i + 1] as number) >= 0x80 && (bytes[i + 1] as number) <= 0x9f);
    const small = JSON.stringify({ model: sneaky, messages: [{ role: 'user', content: sneaky }] });
    for (const json of [small, body.replace('"content":"', `"content":"${sneaky}`)]) {
      const raw = Buffer.from(json);
      assert.ok(controls(raw));
      for (const request of [loggedRequest(raw, JSON.parse(json)), loggedRequest(Buffer.concat([raw, Buffer.from([0xff])]), null), JSON.parse(json)]) {
        for (const format of ['pretty', 'json'] as LogFormat[]) {
          const pieces: Buffer[] = [];
          renderEntryBytes({ ...entry('req_c1', request), model: sneaky, virtual_key: `vk_\u009b`, response: { choices: [{ message: { content: sneaky } }] } }, format, pieces);
          const bytes = Buffer.concat(pieces);
          assert.equal(controls(bytes), false, `${format}: ${bytes.toString().slice(0, 200)}`);
          const logged = JSON.parse(bytes.toString()) as LogEntry;
          assert.equal(logged.model, sneaky);
          assert.equal(logged.virtual_key, 'vk_\u009b');
          assert.deepEqual(logged.response, { choices: [{ message: { content: sneaky } }] });
          if (typeof logged.request !== 'string') assert.deepEqual(logged.request, JSON.parse(json));
          else assert.equal(logged.request, `${json}\ufffd`, 'not UTF-8: its text');
        }
      }
    }
    // Bytes no parser read, a backslash before a control: not JSON, so logged as their text (escaped
    // first, they would have read as JSON holding another value).
    const unread = `{"model":"m","messages":[{"role":"user","content":"${'B'.repeat(70_000)}\\\u0085\\\u007f"}]}`;
    const parsed = parseJsonObject(Buffer.from(unread), 'body', { messages: ['role'] });
    for (const format of ['pretty', 'json'] as LogFormat[]) {
      const pieces: Buffer[] = [];
      renderEntryBytes(entry('req_unread', loggedRequest(Buffer.from(unread), parsed)), format, pieces);
      const bytes = Buffer.concat(pieces);
      assert.equal(controls(bytes), false);
      assert.equal((JSON.parse(bytes.toString()) as LogEntry).request, unread);
    }
  });

  it('not valid UTF-8 and nested deep, are laid out on one line at once, not indented whole first (a million values 126 deep: 256 MB of text)', () => {
    const deep = Buffer.concat([Buffer.from('{"model":"m","messages":[{"role":"user","content":"'), Buffer.from([0xff]), Buffer.from(`"}],"x":${'['.repeat(126)}${'0,'.repeat(990_000)}0${']'.repeat(126)}}`)]);
    // As bytes, laid out by the walk that gives up indenting past four times the size as it goes.
    const logged = loggedRequest(deep, null);
    assert.ok(logged instanceof RawJson);
    const pieces: Buffer[] = [];
    assert.ok(renderEntryBytes(entry('req_deep', logged), 'pretty', pieces));
    const text = Buffer.concat(pieces).toString();
    assert.ok(text.length < 4 * deep.length, `${text.length} bytes`);
    assert.match(text, /\n {2}"request": \{"model":"m","messages":\[\{"role":"user","content":"\ufffd"\}\],"x":\[\[/);
  });

  it('render as the same entry the parsed body would, in both formats', () => {
    for (const format of ['pretty', 'json'] as LogFormat[]) {
      const pieces: Buffer[] = [];
      renderEntryBytes(large(new RawJson(raw)), format, pieces);
      const expected = JSON.stringify(large(JSON.parse(body)), null, format === 'pretty' ? 2 : undefined);
      assert.equal(Buffer.concat(pieces).toString(), `${expected}\n`, format);
    }
    // Anything else that renders an entry still gets the body.
    assert.deepEqual(JSON.parse(JSON.stringify(large(new RawJson(raw)))).request, JSON.parse(body));
  });

  it('are capped by their size in bytes, with the head of what the client sent', () => {
    const capped = capBody(new RawJson(raw), 1000) as { truncated: boolean; original_bytes: number; head: string };
    assert.equal(capped.truncated, true);
    assert.equal(capped.original_bytes, raw.length);
    assert.equal(capped.head, body.slice(0, 1000));
    const small = new RawJson(raw);
    assert.equal(capBody(small, raw.length), small);
  });

  it('reach the destinations through the log whole, among other entries', async () => {
    const sink = new MemorySink(['pretty']);
    const log = new InteractionLog([sink]);
    log.record(large({ small: 1 }));
    log.record(large(new RawJson(raw)));
    log.record(large({ small: 2 }));
    await log.flush();
    const text = sink.writes.join('');
    const entries = text.split('\n}\n').filter((part) => part !== '').map((part) => JSON.parse(`${part}\n}`) as LogEntry);
    assert.deepEqual(entries.map((each) => each.request), [{ small: 1 }, JSON.parse(body), { small: 2 }]);
  });
});

/** A pooled body's holds and releases, counted. */
class CountingHolder {
  holds = 0;
  releases = 0;
  hold(): void {
    this.holds++;
  }
  release(): void {
    this.releases++;
  }
}

/** A destination that keeps each batch until the test says it is done with it. */
class HeldSink implements LogSink {
  readonly formats: readonly LogFormat[] = ['pretty'];
  batches: RenderedBatch[] = [];
  failures = 0;
  write(batch: RenderedBatch): void {
    this.batches.push(batch);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('pooled request bodies in the log', () => {
  const body = chatBody(agentConversation(137_000));
  const raw = Buffer.from(body);

  it('are held while any destination may still write pieces that view them, and let go of once every one is done', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llmgw-held-'));
    try {
      const [file] = await createSinks({ logFile: join(dir, 'log.json'), logConsole: 'off' });
      assert.ok(file !== undefined);
      const slow = new HeldSink();
      const log = new InteractionLog([slow, file]);
      const holder = new CountingHolder();
      log.record(entry('held', new RawJson(raw, true, holder)));
      log.record(entry('small'));
      assert.equal(holder.holds, 1, 'held as it is rendered, before its request lets go');
      await log.flush();
      assert.equal(holder.releases, 0, 'the file has written it; the other destination has not');
      const entries = parseJsonStream((await readFile(join(dir, 'log.json'))).toString()) as LogEntry[];
      assert.deepEqual(entries.map((each) => each.request), [JSON.parse(body), { model: 'm' }]);
      assert.equal(slow.batches.length, 1);
      assert.equal(slow.batches[0]?.heldBytes, raw.buffer.byteLength, 'the memory its pieces keep alive, for the caps');
      slow.batches[0]?.done();
      assert.equal(holder.releases, 1, 'let go of when the last destination is done');
      await file.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('are not held where no piece views them: a body over the cap, or bytes that are not JSON', async () => {
    const sink = new HeldSink();
    const capped = new CountingHolder();
    new InteractionLog([sink], 1000).record(entry('capped', new RawJson(raw, true, capped)));
    const notJson = new CountingHolder();
    new InteractionLog([sink]).record(entry('not json', new RawJson(Buffer.from('{"model": "m", "a": tru}'), false, notJson)));
    assert.equal(capped.holds, 0, 'its head is a copy');
    assert.equal(notJson.holds, 0, 'logged as its text, a copy');
  });

  it('are let go of by a destination that drops the batch (stuck past its cap) or does not write its format', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llmgw-drop-'));
    try {
      const [file] = await createSinks({ logFile: join(dir, 'log.json'), logConsole: 'off' });
      assert.ok(file !== undefined);
      let done = 0;
      const batch = (bytes: number): RenderedBatch => ({ entries: 1, text: { pretty: [Buffer.alloc(bytes, 'x')] }, heldBytes: 0, done: () => done++ });
      const warn = process.stderr.write;
      process.stderr.write = (() => true) as typeof process.stderr.write;
      try {
        file.write(batch(10)); // being written
        file.write(batch(MAX_PENDING_BYTES)); // waits, alone
        file.write(batch(10)); // on top of a full queue: dropped
        assert.equal(done, 1, 'the dropped one at once');
        file.write({ entries: 1, text: { json: [Buffer.from('{}')] }, heldBytes: 0, done: () => done++ });
        assert.equal(done, 2, 'a format it does not write: at once');
        await file.flush();
        assert.equal(done, 4, 'the written ones once written');
        // What a batch's pieces keep alive counts against the cap as their own bytes do.
        file.write(batch(10)); // being written
        file.write({ ...batch(10), heldBytes: MAX_PENDING_BYTES }); // waits, alone
        file.write(batch(10)); // dropped
        assert.equal(done, 5);
        await file.flush();
        assert.equal(done, 7);
        file.write(batch(0)); // nothing to write, still done with
        await file.flush();
        assert.equal(done, 8);
      } finally {
        process.stderr.write = warn;
      }
      await file.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
