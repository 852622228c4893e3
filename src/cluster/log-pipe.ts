/**
 * A worker's log entries reach the primary on pipes of their own, one per format, not on the IPC
 * channel: there, entries went out only as fast as a busy worker's event loop came back to the
 * channel (a socket buffer a turn), and at 20 connections of 137 KB bodies two workers dropped
 * nearly half their entries; limits checks and the primary's hand-over of new connections waited
 * behind them. Here the worker writes from libuv's thread pool (its end of the pipe blocks), and
 * the primary, which serves no request, reads at once. A primary that stops reading (stopped,
 * not dead) holds one of the pool's threads per format in each worker; the pool has four unless
 * UV_THREADPOOL_SIZE says otherwise, and its other users here (DNS lookups of providers' hosts,
 * file reads) have the rest.
 *
 * Each write is a frame: its payload's length and its entries' count (two 32-bit big-endian
 * numbers), then the rendered entries, whole. The primary hands a destination whole frames only,
 * so entries from several workers never interleave.
 */
import type { LogFormat } from '../observe/log-render.js';
import { DescriptorSink } from '../observe/log-sinks.js';

/** The worker's file descriptor of the pipe for its i-th format (0-2 are stdio, 3 the IPC channel). */
const FIRST_PIPE_FD = 4;
const HEADER_BYTES = 8;

/** The stdio of a forked worker: the primary's own, the IPC channel, then one pipe per format. */
export function workerStdio(formats: readonly LogFormat[]): Array<number | 'ipc' | 'pipe'> {
  return [0, 1, 2, 'ipc', ...formats.map((): 'pipe' => 'pipe')];
}

/** Where the pipe for the i-th format is in a worker's `stdio` (as the primary sees it) and in its descriptors. */
export function pipeIndex(i: number): number {
  return FIRST_PIPE_FD + i;
}

/** A worker's destination for one format: the pipe to the primary, written a frame at a time. */
export class PipeSink extends DescriptorSink {
  /** `fd`: the pipe's descriptor in this process (pipeIndex of the format's place). */
  constructor(format: LogFormat, fd: number) {
    super(format, fd, 'the primary process');
  }

  protected override async output(pieces: Buffer[], entries: number): Promise<void> {
    let bytes = 0;
    for (const piece of pieces) bytes += piece.length;
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header.writeUInt32BE(bytes, 0);
    header.writeUInt32BE(entries, 4);
    try {
      await super.output([header, ...pieces], entries);
    } catch (err) {
      // Maybe part-way through a frame: the primary could no longer tell where the next one starts.
      this.giveUp();
      throw err;
    }
  }
}

/** One frame: its entries' count and their rendered bytes, as pieces of what was read (never copied together). */
export interface Frame {
  readonly entries: number;
  readonly pieces: Buffer[];
}

/** The primary's reading of one pipe: bytes as they arrive → whole frames. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: { readonly bytes: number; readonly entries: number } | null = null;

  /** The frames this chunk completes, in order. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.header === null) {
        if (this.buffered < HEADER_BYTES) break;
        const taken = this.take(HEADER_BYTES);
        const header = taken.length === 1 ? (taken[0] as Buffer) : Buffer.concat(taken);
        this.header = { bytes: header.readUInt32BE(0), entries: header.readUInt32BE(4) };
      }
      if (this.buffered < this.header.bytes) break;
      frames.push({ entries: this.header.entries, pieces: this.take(this.header.bytes) });
      this.header = null;
    }
    return frames;
  }

  /** Entries of a frame begun and never finished (the worker died while writing it): lost. */
  get unfinished(): number {
    return this.header?.entries ?? 0;
  }

  /** The first `bytes` bytes buffered, as views of the chunks they are in. */
  private take(bytes: number): Buffer[] {
    const pieces: Buffer[] = [];
    let left = bytes;
    while (left > 0) {
      const chunk = this.chunks[0] as Buffer;
      if (chunk.length <= left) {
        pieces.push(chunk);
        this.chunks.shift();
        left -= chunk.length;
      } else {
        pieces.push(chunk.subarray(0, left));
        this.chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.buffered -= bytes;
    return pieces;
  }
}
