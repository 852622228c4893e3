/**
 * The interactions log: one JSON entry per client API request (indented; on one line on stdout
 * with LOG_CONSOLE=json), to each destination that is on: stdout and a file. Entries are rendered
 * when recorded (log-render.ts), their bodies capped first (log-caps.ts), and written in batches
 * (every 10 ms at most) by one asynchronous writer per destination (log-sinks.ts), one write at a
 * time: entries never interleave, stay in order, and no request waits for a disk or a slow stdout
 * reader.
 */
import type { Holder } from '../upstream/http-client.js';
import { capBody, capError, MAX_ASSEMBLED_STREAM_BYTES, UNSEEN_BODY_MAX_BYTES } from './log-caps.js';
import { BOUNDED_LAYOUT_FROM_BYTES, RawJson, renderEntryBytes, type LogEntry, type LogFormat } from './log-render.js';
import { closeSinks, FLUSH_DEADLINE_MS, NOTHING_HELD, type LogSink, type RenderedBatch } from './log-sinks.js';

/** A batch's `done` for `destinations` destinations: lets go of `held` when the last is done. */
function releaseWhenDone(destinations: number, held: readonly Holder[]): () => void {
  let left = destinations;
  return () => {
    if (--left === 0) for (const holder of held) holder.release();
  };
}

/** Entries wait at most this long to be rendered and written (a batch is one write per destination). */
const BATCH_MS = 10;

export class InteractionLog {
  /** Rendered entries per format, waiting for the next batch write. */
  private pending: Array<{ format: LogFormat; parts: Buffer[] }>;
  /** Entries rendered into `pending`. */
  private pendingEntries = 0;
  /** The pooled bodies `pending`'s pieces view, held until every destination is done with them. */
  private held: Holder[] = [];
  /** The memory of every body `pending`'s pieces view (RenderedBatch.heldBytes). */
  private heldBytes = 0;
  private scheduled = false;

  /** `bodyMaxBytes`: bodies larger than this are logged as their head and size (null: whole). */
  constructor(
    private readonly sinks: readonly LogSink[],
    private readonly bodyMaxBytes: number | null = null,
  ) {
    this.pending = [...new Set(sinks.flatMap((sink) => sink.formats))].map((format) => ({ format, parts: [] }));
  }

  /**
   * Bytes of a stream's events its logged answer is assembled from: MAX_ASSEMBLED_STREAM_BYTES,
   * less under LOG_BODY_MAX_BYTES: 256 times the cap, at least 16 MiB (an answer's events run to
   * ~50 times its text: that still holds every answer the cap would keep whole).
   */
  get assembledStreamLimit(): number {
    const max = this.bodyMaxBytes;
    return max === null ? MAX_ASSEMBLED_STREAM_BYTES : Math.min(MAX_ASSEMBLED_STREAM_BYTES, Math.max(16 * 1024 * 1024, max * 256));
  }

  /** False when every destination is off: callers skip building entries at all. */
  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  /** Write failures across destinations (exposed as a metric). */
  get failures(): number {
    return this.sinks.reduce((sum, sink) => sum + sink.failures, 0);
  }

  /**
   * Renders the entry at once, while its objects are still in the CPU's caches (rendering them
   * later, in a batch, was slower: docs/performance.md), and queues the text; writes are batched.
   * `answerBytes`: the size of the provider's answer (its body, or its stream's bytes); from
   * BOUNDED_LAYOUT_FROM_BYTES the pretty entry is laid out by the walk that bounds its growth.
   */
  record(entry: LogEntry, answerBytes = 0): void {
    if (this.sinks.length === 0) return;
    const max = this.bodyMaxBytes;
    // A request no provider saw (refused, or answered here: a count_tokens estimate) costs its
    // client nothing, and no limit counts it: logged whole, its body would let a client fill the
    // disk at the speed of its line.
    const unseen = entry.upstream === null;
    const requestMax = unseen ? Math.min(max ?? UNSEEN_BODY_MAX_BYTES, UNSEEN_BODY_MAX_BYTES) : max;
    if (requestMax !== null) entry.request = capBody(entry.request, requestMax);
    if (max !== null) {
      entry.response = capBody(entry.response, max);
      if (entry.error !== undefined) entry.error = capError(entry.error, max);
    }
    let viewsBody = false;
    const bounded = answerBytes >= BOUNDED_LAYOUT_FROM_BYTES;
    for (const slot of this.pending) if (renderEntryBytes(entry, slot.format, slot.parts, bounded)) viewsBody = true;
    const request = entry.request;
    if (viewsBody && request instanceof RawJson) {
      // Pooled or not, a view keeps the whole buffer the body is in.
      this.heldBytes += request.viewed.buffer.byteLength;
      // Its escaped copy (a control in it) views no pooled memory.
      if (request.holder !== null && request.viewed === request.bytes) {
        request.holder.hold();
        this.held.push(request.holder);
      }
    }
    this.pendingEntries++;
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.writeQueued, BATCH_MS);
    }
  }

  // One write per destination per batch: per-write costs (a thread-pool round trip per
  // destination) are paid once per BATCH_MS instead of once per request under load.
  private readonly writeQueued = (): void => {
    this.scheduled = false;
    if (this.pending[0] === undefined || this.pending[0].parts.length === 0) return;
    const text: RenderedBatch['text'] = {};
    for (const slot of this.pending) {
      text[slot.format] = slot.parts;
      slot.parts = [];
    }
    const held = this.held;
    const batch: RenderedBatch = { entries: this.pendingEntries, text, heldBytes: this.heldBytes, done: held.length === 0 ? NOTHING_HELD : releaseWhenDone(this.sinks.length, held) };
    this.held = [];
    this.heldBytes = 0;
    this.pendingEntries = 0;
    for (const sink of this.sinks) sink.write(batch);
  };

  /** Reopens destinations that can be (the log file, after rotation). */
  reopen(): void {
    for (const sink of this.sinks) sink.reopen?.();
  }

  async flush(): Promise<void> {
    this.writeQueued();
    await Promise.all(this.sinks.map((sink) => sink.flush()));
  }

  /**
   * Flushes and closes every destination, waiting at most `deadlineMs`: a destination that is
   * stuck (stdout nobody reads) must not keep the process from exiting. False when it timed out:
   * end the process with endProcess, which does not wait for the stuck write.
   */
  async close(deadlineMs = FLUSH_DEADLINE_MS): Promise<boolean> {
    this.writeQueued();
    return closeSinks(this.sinks, deadlineMs);
  }
}
