/**
 * A worker's log to its primary: frames on a pipe of their own (src/cluster/log-pipe.ts), read back
 * whole however the bytes arrive.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FrameReader, PipeSink, type Frame } from '../src/cluster/log-pipe.js';
import { createSinks, MAX_PENDING_BYTES, NOTHING_HELD, type RenderedBatch } from '../src/observe/log-sinks.js';

/** A frame as the worker writes it. */
function frame(text: string, entries: number): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(Buffer.byteLength(text), 0);
  header.writeUInt32BE(entries, 4);
  return Buffer.concat([header, Buffer.from(text)]);
}

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

const read = (frames: Frame[]): Array<[number, string]> => frames.map((each) => [each.entries, Buffer.concat(each.pieces).toString()]);

describe("the primary's reading of a worker's log pipe", () => {
  const sent: Array<[number, string]> = [[1, '{\n  "a": 1\n}\n'], [0, ''], [3, '{"é":"😀"}\n{}\n{}\n'], [2, 'x'.repeat(300)]];
  const bytes = Buffer.concat(sent.map(([entries, text]) => frame(text, entries)));

  it('gives every frame whole, in order, with its entries, for the stream split at every byte boundary', () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
      assert.deepEqual(read(frames), sent, `cut at ${cut}`);
      assert.equal(reader.unfinished, 0);
    }
  });

  it('and a byte at a time, and split at every pair of boundaries of a frame and its neighbours', () => {
    const reader = new FrameReader();
    const frames: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...reader.push(bytes.subarray(i, i + 1)));
    assert.deepEqual(read(frames), sent);
    const head = bytes.subarray(0, 60);
    for (let a = 0; a <= head.length; a++) {
      for (let b = a; b <= head.length; b++) {
        const each = new FrameReader();
        const got = [...each.push(head.subarray(0, a)), ...each.push(head.subarray(a, b)), ...each.push(head.subarray(b)), ...each.push(bytes.subarray(60))];
        assert.deepEqual(read(got), sent, `cut at ${a} and ${b}`);
      }
    }
  });

  it("counts a frame begun and never finished (its worker died writing it) as its entries lost", () => {
    const reader = new FrameReader();
    assert.deepEqual(read(reader.push(Buffer.concat([frame('whole', 1), frame('cut short', 4).subarray(0, 12)]))), [[1, 'whole']]);
    assert.equal(reader.unfinished, 4);
  });
});

/** A FIFO in a fresh folder, its reading end open (non-blocking, so opening the writing end does not wait). */
async function fifo(): Promise<{ dir: string; writer: number; stream: net.Socket; frames: Frame[]; ended: Promise<unknown> }> {
  const dir = await mkdtemp(join(tmpdir(), 'llmgw-pipe-'));
  const path = join(dir, 'log');
  assert.equal(spawnSync('mkfifo', [path]).status, 0);
  // A pipe handle of the event loop's own reads it (a file stream would read EAGAIN).
  const stream = new net.Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  const writer = openSync(path, 'w');
  const reader = new FrameReader();
  const frames: Frame[] = [];
  stream.on('data', (chunk) => frames.push(...reader.push(chunk as Buffer)));
  return { dir, writer, stream, frames, ended: once(stream, 'close') };
}

describe("a worker's log to its primary", () => {
  it('writes each batch as a frame the primary reads whole, with its entries; is done with each batch once written', async () => {
    const pipe = await fifo();
    try {
      const sink = new PipeSink('pretty', pipe.writer);
      const done: string[] = [];
      const batch = (text: string, entries: number, bytes = text.length): RenderedBatch => ({ entries, heldBytes: 0, done: () => done.push(text), text: { pretty: [Buffer.alloc(bytes, text)] } });
      sink.write(batch('a', 1, 3 * 1024 * 1024)); // larger than the pipe: written as the primary reads
      sink.write(batch('b', 2));
      sink.write(batch('c', 1));
      sink.write({ entries: 1, heldBytes: 0, done: NOTHING_HELD, text: { json: [Buffer.from('not this format')] } });
      await sink.flush();
      assert.deepEqual(done, ['a', 'b', 'c']);
      closeSync(pipe.writer);
      await pipe.ended;
      // What waited while the first was written went as one frame.
      assert.deepEqual(pipe.frames.map((each) => [each.entries, Buffer.concat(each.pieces).length]), [[1, 3 * 1024 * 1024], [3, 2]]);
      assert.equal(Buffer.concat(pipe.frames[1]?.pieces ?? []).toString(), 'bc');
      assert.equal(sink.failures, 0);
    } finally {
      await rm(pipe.dir, { recursive: true, force: true });
    }
  });

  it('counts the entries it could not write once the primary is gone (EPIPE), and every later one', async () => {
    const pipe = await fifo();
    try {
      const sink = new PipeSink('pretty', pipe.writer);
      const one = (text: string): RenderedBatch => ({ entries: 1, heldBytes: 0, done: NOTHING_HELD, text: { pretty: [Buffer.from(text)] } });
      sink.write(one('read'));
      await sink.flush();
      await waitUntil(() => pipe.frames.length === 1);
      pipe.stream.destroy(); // the primary is gone
      await pipe.ended;
      sink.write({ ...one('lost'), entries: 2 });
      await sink.flush();
      assert.equal(sink.failures, 2);
      sink.write(one('lost too'));
      await sink.flush();
      assert.equal(sink.failures, 3);
      closeSync(pipe.writer);
    } finally {
      await rm(pipe.dir, { recursive: true, force: true });
    }
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
