/**
 * A worker's log destination: its rendered entries go to the primary, which writes them.
 *
 * Limits checks travel the same IPC channel, behind whatever was sent before them. Entries are
 * therefore sent while less than IN_FLIGHT_BYTES are on their way (what piles up meanwhile waits
 * in the worker, joined into messages of whole batches, so no entry is ever split), and what waits
 * is capped as every log destination is: beyond the cap new entries are dropped and counted.
 * Sending every batch at once let a client with large bodies queue gigabytes in a worker, and hold
 * its limits checks back past their timeout; one message at a time cost the primary a third more
 * CPU per entry (docs/performance.md).
 */
import type { LogFormat } from '../observe/log-render.js';
import { MAX_PENDING_BYTES, type BatchText, type LogSink, type RenderedBatch } from '../observe/log-sinks.js';
import { warn } from '../observe/warn.js';
import type { ToPrimary } from './messages.js';

/** Batches are joined into one message up to this size (a larger batch goes alone). */
const MESSAGE_BYTES = 4 * 1024 * 1024;
/** Messages are sent while less than this is on its way (handed to the channel, not yet written): what a limits check can wait behind. */
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;

/** Sends one message; `sent` is called once it is handed to the channel (or could not be). Returns false when there is no channel. */
export type SendToPrimary = (message: ToPrimary, sent: (err: Error | null) => void) => boolean;

/** Its pieces' bytes and the memory they keep alive (both stay in this process until the batch is handed over). */
function batchBytes(batch: RenderedBatch): number {
  let bytes = batch.heldBytes;
  for (const pieces of Object.values(batch.text)) for (const piece of pieces ?? []) bytes += piece.length;
  return bytes;
}

export class PrimarySink implements LogSink {
  /** Batches waiting for the message under way, oldest first, and their bytes. */
  private waiting: Array<{ batch: RenderedBatch; bytes: number }> = [];
  private waitingBytes = 0;
  /** Bytes of the messages handed to the channel and not yet written. */
  private inFlight = 0;
  private dropping = false;
  private idle: Array<() => void> = [];
  failures = 0;

  constructor(
    readonly formats: readonly LogFormat[],
    private readonly send: SendToPrimary,
  ) {}

  write(batch: RenderedBatch): void {
    const bytes = batchBytes(batch);
    // A batch alone is always taken (a body may be larger than the cap), never one on top of a full queue.
    if (this.waitingBytes > 0 && this.waitingBytes + bytes > MAX_PENDING_BYTES) {
      this.failures += batch.entries;
      if (!this.dropping) warn(`the log to the primary process is not keeping up (${this.waitingBytes} bytes waiting); dropping entries until it does`);
      this.dropping = true;
      return batch.done();
    }
    this.waiting.push({ batch, bytes });
    this.waitingBytes += bytes;
    this.sendMore();
  }

  /** Sends what waits while the channel has room; resolves flushes once nothing waits or is on its way. */
  private sendMore(): void {
    while (this.waiting.length > 0 && this.inFlight < IN_FLIGHT_BYTES) this.sendNext();
    if (this.waiting.length > 0 || this.inFlight > 0) return;
    // Caught up: a later drop starts a new streak, with its own warning.
    this.dropping = false;
    const resolved = this.idle;
    this.idle = [];
    for (const resolve of resolved) resolve();
  }

  private sendNext(): void {
    const first = this.waiting.shift();
    if (first === undefined) return;
    // Whole batches, in order, up to MESSAGE_BYTES.
    const text: BatchText['text'] = {};
    const done: Array<() => void> = [];
    let bytes = 0;
    let entries = 0;
    for (let next: typeof first | undefined = first; next !== undefined; next = this.waiting[0]) {
      if (bytes > 0 && bytes + next.bytes > MESSAGE_BYTES) break;
      if (next !== first) this.waiting.shift();
      entries += next.batch.entries;
      done.push(next.batch.done);
      for (const format of this.formats) {
        const pieces = next.batch.text[format];
        if (pieces === undefined) continue;
        const joined = text[format];
        if (joined === undefined) text[format] = pieces.slice();
        else for (const piece of pieces) joined.push(piece);
      }
      bytes += next.bytes;
    }
    const batch: BatchText = { entries, text };
    this.waitingBytes -= bytes;
    // Counted before it is handed over: a channel that calls back at once must not see it negative.
    this.inFlight += bytes;
    // Failures count the entries lost, as a destination counts those it could not write.
    const handed = this.send({ t: 'log', batch }, (err) => {
      if (err !== null) this.failures += entries;
      this.inFlight -= bytes;
      // The message was serialised (a copy) when it was handed over: the pieces are not read again.
      for (const each of done) each();
      this.sendMore();
    });
    if (!handed) {
      // No channel to the primary (it is gone): these entries are lost, and the next ones too.
      this.failures += entries;
      this.inFlight -= bytes;
      for (const each of done) each();
    }
  }

  flush(): Promise<void> {
    if (this.waiting.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  close(): Promise<void> {
    return this.flush();
  }
}
