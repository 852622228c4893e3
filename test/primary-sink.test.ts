import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PrimarySink, type SendToPrimary } from '../src/cluster/primary-sink.js';
import type { ToPrimary } from '../src/cluster/messages.js';
import { createSinks, MAX_PENDING_BYTES, NOTHING_HELD, type RenderedBatch } from '../src/observe/log-sinks.js';

/** A channel that holds each message until the test lets it go. */
function channel(): { send: SendToPrimary; messages: ToPrimary[]; release: () => void; under: () => number } {
  const messages: ToPrimary[] = [];
  const held: Array<(err: Error | null) => void> = [];
  return {
    messages,
    send: (message, sent) => {
      messages.push(message);
      held.push(sent);
      return true;
    },
    release: () => held.shift()?.(null),
    under: () => held.length,
  };
}

/** Lines written to stderr until restored (the sink warns there). */
function capturedWarnings(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  return { lines, restore: () => void (process.stderr.write = write) };
}

const entry = (text: string): RenderedBatch => ({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.from(text)] } });
const texts = (message: ToPrimary | undefined): string[] => (message?.t === 'log' ? (message.batch.text.pretty ?? []).map((piece) => piece.toString()) : []);

describe("a worker's log to the primary", () => {
  it('sends batches as they come while less than 16 MB is on its way; what waits beyond is joined into messages of whole batches, in order', async () => {
    const ipc = channel();
    const sink = new PrimarySink(['pretty'], ipc.send);
    const mb = (n: number, fill: string): RenderedBatch => ({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.alloc(n * 1024 * 1024, fill)] } });
    for (const text of ['a', 'b', 'c']) sink.write(entry(text));
    assert.equal(ipc.under(), 3, 'each sent at once');
    for (const fill of ['1', '2', '3', '4']) sink.write(mb(4, fill));
    assert.equal(ipc.under(), 7, 'the fourth goes: less than 16 MB was on its way');
    sink.write(entry('d'));
    sink.write({ done: NOTHING_HELD, heldBytes: 0, entries: 2, text: { pretty: [Buffer.from('e1'), Buffer.from('e2')] } });
    assert.equal(ipc.under(), 7, '16 MB on its way: they wait');
    let flushed = false;
    const flushing = sink.flush().then(() => (flushed = true));
    for (let k = 0; k < 3; k++) ipc.release();
    assert.equal(ipc.messages.length, 7, 'still 16 MB on its way');
    ipc.release();
    assert.deepEqual(texts(ipc.messages[7]), ['d', 'e1', 'e2'], 'joined, in order');
    assert.equal(ipc.messages.length, 8);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(flushed, false, 'not flushed while messages are on their way');
    while (ipc.under() > 0) ipc.release();
    await flushing;
    assert.deepEqual(ipc.messages.slice(0, 3).map(texts), [['a'], ['b'], ['c']]);
    assert.equal(sink.failures, 0);
  });

  it('joins waiting batches up to 4 MB a message; a larger batch goes alone', () => {
    const ipc = channel();
    const sink = new PrimarySink(['pretty'], ipc.send);
    const mb = (n: number, fill: string): RenderedBatch => ({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.alloc(n * 1024 * 1024, fill)] } });
    sink.write(mb(17, 'a')); // on its way: what follows waits
    for (const fill of ['b', 'c', 'd', 'e', 'f']) sink.write(mb(1, fill));
    sink.write(mb(6, 'g'));
    sink.write(mb(1, 'h'));
    assert.equal(ipc.messages.length, 1);
    ipc.release();
    const firsts = ipc.messages.map((message) => texts(message).map((text) => `${text[0]}${text.length >> 20}`).join(' '));
    assert.deepEqual(firsts, ['a17', 'b1 c1 d1 e1', 'f1', 'g6', 'h1']);
  });

  it('caps what waits as every log destination does: a batch alone always goes, one on top of a full queue is dropped and counted', () => {
    const ipc = channel();
    const sink = new PrimarySink(['pretty'], ipc.send);
    const big = (): RenderedBatch => ({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.alloc(MAX_PENDING_BYTES + 1)] } });
    const warnings = capturedWarnings();
    try {
      sink.write(big()); // sent at once
      sink.write(big()); // waits: alone in the queue
      sink.write(entry('dropped'));
      sink.write(big());
      assert.equal(sink.failures, 2);
      ipc.release();
      sink.write(entry('taken'));
      assert.equal(sink.failures, 2, 'the queue is empty again: taken');
      sink.write(big()); // dropped: still in the same streak, not caught up yet
      ipc.release();
      assert.deepEqual(texts(ipc.messages[2]), ['taken']);
      assert.equal(ipc.messages.length, 3);
      assert.equal(warnings.lines.filter((line) => line.includes('not keeping up')).length, 1, 'one warning until it caught up');
      ipc.release(); // caught up
      sink.write(big());
      sink.write(big());
      sink.write(big());
      assert.equal(sink.failures, 4);
      assert.equal(warnings.lines.filter((line) => line.includes('not keeping up')).length, 2, 'a new streak, a new warning');
    } finally {
      warnings.restore();
    }
  });

  it('counts what it cannot send when there is no channel, and flushes', async () => {
    const sink = new PrimarySink(['pretty', 'json'], () => false);
    sink.write({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.from('a')], json: [Buffer.from('a')] } });
    sink.write(entry('b'));
    await sink.flush();
    assert.equal(sink.failures, 2);
  });

  it('counts every batch of a joined message that failed', async () => {
    const held: Array<(err: Error | null) => void> = [];
    const sink = new PrimarySink(['pretty'], (_message, sent) => {
      held.push(sent);
      return true;
    });
    sink.write({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.alloc(17 * 1024 * 1024)] } }); // fills the window: what follows waits, joined
    for (const text of ['a', 'b', 'c', 'd']) sink.write(entry(text));
    held.shift()?.(null);
    held.shift()?.(new Error('channel closed'));
    await sink.flush();
    assert.equal(sink.failures, 4);
  });
});

describe("a worker's log to the primary, and the pooled bodies its batches view", () => {
  it('is done with a batch once its message was handed to the channel (a copy), not before; at once when it drops it or has no channel', () => {
    const ipc = channel();
    const sink = new PrimarySink(['pretty'], ipc.send);
    const done: string[] = [];
    const batch = (text: string, bytes = 1): RenderedBatch => ({ entries: 1, text: { pretty: [Buffer.alloc(bytes, text)] }, heldBytes: 0, done: () => done.push(text) });
    sink.write(batch('a', 17 * 1024 * 1024)); // on its way: what follows waits
    sink.write(batch('b'));
    sink.write(batch('c', MAX_PENDING_BYTES)); // on top of a queue it would overfill: dropped
    sink.write(batch('d'));
    assert.deepEqual(done, ['c']);
    ipc.release();
    assert.deepEqual(done, ['c', 'a'], 'a was handed over; b and d are now on their way, joined');
    assert.equal(ipc.under(), 1);
    ipc.release();
    assert.deepEqual(done, ['c', 'a', 'b', 'd']);
    // The memory a batch's pieces keep alive counts against the cap as their own bytes do.
    sink.write(batch('f', 17 * 1024 * 1024)); // on its way
    sink.write({ ...batch('g'), heldBytes: MAX_PENDING_BYTES });
    sink.write(batch('h')); // dropped
    assert.deepEqual(done.slice(-1), ['h']);
    while (ipc.under() > 0) ipc.release();
    const nowhere = new PrimarySink(['pretty'], () => false);
    nowhere.write(batch('e'));
    assert.deepEqual(done.slice(-1), ['e']);
  });
});

describe('a log destination given one batch larger than its cap', () => {
  it('writes it when nothing else waits (a large body is not a stuck destination)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'llmgw-cap-'));
    try {
      const path = join(dir, 'log.json');
      const [file] = await createSinks({ logFile: path, logConsole: 'off' });
      assert.ok(file !== undefined);
      const body = Buffer.alloc(MAX_PENDING_BYTES + 1024, 'x');
      file.write({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [body] } });
      file.write({ done: NOTHING_HELD, heldBytes: 0, entries: 1, text: { pretty: [Buffer.from('\n')] } });
      await file.close();
      assert.equal(file.failures, 0);
      assert.equal((await stat(path)).size, body.length + 1);
      assert.equal((await readFile(path)).subarray(-2).toString(), 'x\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
