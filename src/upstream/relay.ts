/**
 * Relays an upstream event stream to the client as OpenAI chunks. Every event is written the
 * moment it is complete (events completed by the same read share one write), backpressure from a
 * slow client pauses the upstream, and the client's stream always ends: with `[DONE]`, or with an
 * OpenAI-style error event when the upstream fails, goes silent, or the gateway shuts down.
 */
import type { ServerResponse } from 'node:http';
import { CompletionAssembler } from '../formats/chat/assemble.js';
import { clearDeadline, setDeadline } from './deadlines.js';
import type { Cancellation } from './cancel.js';
import { GatewayError, toGatewayError } from '../errors.js';
import type { Interaction } from '../observe/interaction.js';
import type { StreamOutput, StreamTranslator } from '../providers/types.js';
import { SSE_DONE, SSE_HEADERS, SseParser, SseTooLargeError, sseFrame, type SseEvent } from './sse.js';
import { upstreamIdle, type UpstreamResponse } from './send.js';
import { redactError } from './errors.js';
import type { KeyScrubber } from './scrub.js';

const KEEP_ALIVE = ': keep-alive\n\n';

/**
 * What makes an event need the parser and translator: the end, an error, a usage object (held
 * back or counted), a finish (completion bookkeeping). Any other event is forwarded as its bytes.
 * Reads with CR line ends or named events always take the full path.
 */
const MARKER = /\[DONE\]|"error"|"usage"\s*:\s*\{|"finish_reason"\s*:\s*"/g;

/** Where the markers are in `text`, found in one pass; then asked in order, event by event. */
class MarkerScan {
  private readonly positions: number[] = [];
  private index = 0;
  constructor(text: string) {
    MARKER.lastIndex = 0;
    for (let match = MARKER.exec(text); match !== null; match = MARKER.exec(text)) this.positions.push(match.index);
  }
  /** Whether a marker occurs in [start, end); events are asked about in increasing order. */
  within(start: number, end: number): boolean {
    while (this.index < this.positions.length && (this.positions[this.index] as number) < start) this.index++;
    return this.index < this.positions.length && (this.positions[this.index] as number) < end;
  }
}

/** After `[DONE]` the rest of the upstream body is read (so its connection is reused), but not forever. */
const DRAIN_MS = 5000;

export interface RelayOptions {
  readonly cancel: Cancellation;
  /** A log entry will show the assembled answer. */
  readonly assemble: boolean;
  /** No upstream bytes for this long → error event (UPSTREAM_IDLE_TIMEOUT_MS). */
  readonly idleMs: number;
  /** Scrubbed from any upstream error message before it reaches the client or the log. */
  readonly apiKeys: readonly string[];
  /** Takes the real key out of the upstream's bytes as they arrive. */
  readonly scrubber: KeyScrubber;
}

function errorFrame(error: GatewayError): string {
  return sseFrame(JSON.stringify(error.toBody()));
}

/** Resolves once the client's stream is over, whichever way it ended; never rejects. */
export function relayStream(
  upstream: UpstreamResponse,
  res: ServerResponse,
  translator: StreamTranslator,
  interaction: Interaction,
  options: RelayOptions,
): Promise<void> {
  return new Promise((resolve) => {
    const parser = new SseParser();
    const assembler = new CompletionAssembler();
    const body = upstream.body;
    const cancel = options.cancel;
    /**
     * Events forwarded as the upstream's bytes still go into the log's assembled answer: parsed at
     * once, so a long stream holds its answer so far, not every event's text, until it ends.
     */
    const assembleForwarded = (text: string): void => {
      for (const event of new SseParser().pushText(text)) {
        try {
          assembler.add(JSON.parse(event.data));
        } catch {
          // it went to the client as the upstream sent it; the log keeps what parses
        }
      }
    };
    let over = false;
    /** Some chunk carried a finish_reason: the answer is complete even if `[DONE]` never comes. */
    let finished = false;

    res.writeHead(200, SSE_HEADERS);
    interaction.status = 200;

    const finish = (): void => {
      over = true;
      clearDeadline(idle);
      cancel.offCancel(onCancel);
      interaction.upstreamEndedAt = performance.now();
      interaction.response = assembler.result();
      interaction.usage = assembler.getUsage();
      resolve();
    };
    const end = (tail: string): void => {
      if (over) return;
      if (interaction.firstByteAt === null) interaction.firstByteAt = performance.now();
      res.end(collected(tail));
      finish();
    };
    const fail = (error: GatewayError, text = ''): void => {
      if (over) return;
      const safe = redactError(error, options.apiKeys);
      interaction.error = safe;
      // The client saw 200 then an error event; the log and metrics count the failure by its own status.
      interaction.status = safe.status;
      end(text + errorFrame(safe));
      upstream.abort(); // a failed upstream is not reused, and keeps no socket open
    };
    const done = (text: string): void => {
      end(text + SSE_DONE);
      // Read and drop whatever follows so the connection returns to the pool.
      const drain = setTimeout(() => upstream.abort(), DRAIN_MS);
      drain.unref();
      body.once('close', () => clearTimeout(drain));
      body.resume();
    };
    const resume = (): void => {
      idle.at = performance.now() + options.idleMs;
      body.resume();
    };
    // What one upstream read produces is gathered and written at once: one write (one syscall)
    // per read, whether it came as byte ranges, translated text, or both.
    let gathering = false;
    const pieces: Array<string | Buffer> = [];
    const collected = (tail: string): string | Buffer => {
      if (pieces.length === 0) return tail;
      if (tail !== '') pieces.push(tail);
      const whole = pieces.length === 1 ? (pieces[0] as string | Buffer) : Buffer.concat(pieces.map((piece) => (typeof piece === 'string' ? Buffer.from(piece) : piece)));
      pieces.length = 0; // emptied, not replaced: see "Memory" in docs/performance.md
      return whole;
    };
    const send = (data: string | Buffer): void => {
      if (interaction.firstByteAt === null) interaction.firstByteAt = performance.now();
      if (!res.write(data)) {
        // Paused for a slow client: the provider's silence is ours, not an idle provider.
        idle.at = Infinity;
        body.pause();
        res.once('drain', resume);
      }
    };
    const write = (data: string | Buffer): void => {
      if (gathering) pieces.push(data);
      else send(data);
    };

    /** Translates events and writes what they give; returns true when the stream is over. */
    const handle = (events: SseEvent[]): boolean => {
      let text = '';
      for (const event of events) {
        let outputs: StreamOutput[];
        try {
          outputs = translator.event(event);
        } catch (err) {
          outputs = [{ kind: 'error', error: toGatewayError(err) }];
        }
        for (const output of outputs) {
          if (output.kind === 'chunk') {
            if (output.chunk !== null) assembler.add(output.chunk);
            if (output.finish === true) finished = true;
            if (output.data !== null) text += sseFrame(output.data);
          } else if (output.kind === 'done') {
            done(text);
            return true;
          } else {
            fail(output.error, text);
            return true;
          }
        }
      }
      if (text !== '') write(text);
      return false;
    };

    const parse = (read: () => SseEvent[]): SseEvent[] | null => {
      try {
        return read();
      } catch (err) {
        if (!(err instanceof SseTooLargeError)) throw err;
        fail(new GatewayError(502, `The provider sent an event larger than ${err.limit} characters.`, { code: 'upstream_event_too_large' }));
        return null;
      }
    };

    /** A run of plain events, written as the upstream's own bytes (and assembled for the log). */
    const forward = (bytes: Buffer): void => {
      if (bytes.length === 0) return;
      if (options.assemble) assembleForwarded(bytes.toString('utf8')); // whole events: no split character
      write(bytes);
    };

    /**
     * A pass-through read, cut at event boundaries without decoding it: runs of plain events go
     * out as byte ranges; only events that need it (the end, usage, an error, a finish) go through
     * the parser and translator. Returns false when the read cannot be cut this way.
     */
    const relayBytes = (chunk: Buffer): boolean => {
      if (!parser.isIdle()) return false;
      // latin1: one character per byte, so positions in the text are positions in the bytes.
      const text = chunk.toString('latin1');
      if (text.includes('\r') || text.includes('event:')) return false;
      const markers = new MarkerScan(text);
      let runStart = 0;
      let position = 0;
      for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n', position)) {
        const next = end + 2;
        interaction.streamedEvents++;
        if (markers.within(position, next)) {
          forward(chunk.subarray(runStart, position));
          const events = parse(() => parser.push(chunk.subarray(position, next)));
          if (events === null || handle(events)) return true;
          runStart = next;
        }
        position = next;
      }
      forward(chunk.subarray(runStart, position));
      // A partial event at the end waits in the parser for the rest.
      if (position < chunk.length) {
        const events = parse(() => parser.push(chunk.subarray(position)));
        if (events !== null && events.length > 0) handle(events);
      }
      return true;
    };

    const onData = (read: Buffer): void => {
      if (over) return;
      idle.at = performance.now() + options.idleMs;
      const chunk = options.scrubber.push(read);
      if (chunk.length === 0) return;
      // Everything this read completes leaves in one write.
      gathering = true;
      try {
        if (translator.passThrough === true && relayBytes(chunk)) return;
        const comments = parser.comments;
        const events = parse(() => parser.push(chunk));
        if (events === null) return;
        interaction.streamedEvents += events.length;
        // Upstream keep-alives (DeepSeek queues) are passed on so the client's idle timers see
        // life, whether or not events came in the same read.
        if (parser.comments !== comments) write(KEEP_ALIVE);
        if (events.length > 0) handle(events);
      } finally {
        gathering = false;
        if (!over && pieces.length > 0) send(collected(''));
      }
    };
    const onEnd = (): void => {
      if (over) return;
      const rest = options.scrubber.flush();
      if (rest.length > 0) onData(rest);
      if (over) return;
      const events = parse(() => parser.end());
      if (events === null || handle(events)) return;
      // Some OpenAI-compatible servers close after the last chunk without `[DONE]`.
      if (finished || assembler.finished) done('');
      else fail(new GatewayError(502, 'The provider ended the stream before the answer was complete.', { code: 'upstream_incomplete_stream' }));
    };
    const onClose = (): void => {
      if (over) return;
      fail(new GatewayError(502, 'The connection to the provider was lost mid-stream.', { code: 'upstream_connection_lost' }));
    };
    const onCancel = (): void => {
      if (over) return;
      const reason = cancel.reason as GatewayError;
      if (reason.status !== 499) return fail(reason); // shutting down: the client gets an error event
      interaction.status = 499;
      upstream.abort();
      finish();
    };
    const idle = setDeadline(options.idleMs, () => fail(upstreamIdle(options.idleMs)));

    cancel.onCancel(onCancel);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('close', onClose);
  });
}
