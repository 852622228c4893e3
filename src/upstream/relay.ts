/**
 * Relays a provider's event stream to the client. Every event is written the moment it is
 * complete (events completed by the same read share one write), backpressure from a slow client
 * pauses the provider, and the client's stream always ends: with its API's end, or with an error
 * frame when the provider fails, goes silent, or the gateway shuts down. What the events say (and
 * become) is the pipeline's business; the relay moves bytes.
 */
import type { ServerResponse } from 'node:http';
import type { Cancellation } from './cancel.js';
import { clearDeadline, setDeadline, type Deadline } from './deadlines.js';
import { GatewayError, toGatewayError } from '../errors.js';
import { SSE_HEADERS, type SseEvent } from '../formats/sse.js';
import { redactError, streamedUpstreamError } from './errors.js';
import { whyCut } from './http-client.js';
import { malformedBody, upstreamIdle } from './read.js';
import { keySpellings, textWithoutKeys, type ByteScrubber } from './scrub.js';
import { SseParser, SseTooLargeError } from './sse.js';
import type { UpstreamResponse } from './types.js';
import { utf8Bytes } from '../utf8.js';

/** The provider's stream ended before its answer did (no finish, whether or not its end marker came). */
export function incompleteStream(): GatewayError {
  return new GatewayError(502, 'The provider ended the stream before the answer was complete.', { code: 'upstream_incomplete_stream' });
}

/** What one provider event gives the client. */
export interface StreamStep {
  /** Frames to send ('' for none). */
  readonly text: string;
  /** The stream is over: its end was among them. */
  readonly done?: boolean;
  /** The provider failed mid-stream: `text` goes out, then the error's frame. */
  readonly error?: GatewayError;
  /** The frames say nothing (Anthropic's `ping`): held back until something follows, so that an error after nothing else is still answered as its status. */
  readonly silent?: boolean;
}

/** What the events say: decided by the surface, for the relay. */
export interface StreamPipeline {
  /** Events may be forwarded as the provider's bytes when they are not notable (no translation). */
  readonly passThrough: boolean;
  /** Which events' text needs decoding (the end, errors, usage, a finish). */
  readonly notable: RegExp;
  /** Events' `event:` lines only repeat what their data says (Messages), so named events may pass as bytes too. */
  readonly namedEvents: boolean;
  /** Forwarded events are read for the log's answer (so the relay hands them over). */
  readonly assembling: boolean;
  event(event: SseEvent): StreamStep;
  /** An event forwarded as its bytes (pass-through): the log's answer still sees it. */
  forwarded(data: string): void;
  /** A run of whole events forwarded as their bytes. */
  passed(bytes: Buffer): void;
  /** The provider's stream ended without its end: the frames that end the client's, or null if the answer is incomplete. */
  finish(): string | null;
  /** Why a stream that ended short failed, where the provider said it before it ended (null: it did not). */
  said(): GatewayError | null;
  /** The client's last frame when the stream fails. */
  failure(error: GatewayError): string;
}

const KEEP_ALIVE = ': keep-alive\n\n';
/** After the end the rest of the provider's body is read (so its connection is reused), but not forever. */
const DRAIN_MS = 5000;
/**
 * How long the head waits for the stream's first event (whose error is answered as its status,
 * and taken by a key's fallback, before any byte is sent). Past it the head goes alone: an SDK's
 * timeout runs until the head comes, and a model that thinks for minutes before its first chunk
 * would hit it here where it does not at the provider, which sends its head at once. Providers'
 * errors as a first event come at once; no SDK's timeout is near 5 s.
 */
const HEAD_HOLD_MS = 5000;
/** Frames that say nothing held at most (~400 pings): a provider flooding them has begun its answer, and they were memory without a bound. */
const HELD_MAX_CHARS = 16 * 1024;

export interface RelayOptions {
  readonly cancel: Cancellation;
  /** No bytes from the provider for this long → error frame (UPSTREAM_IDLE_TIMEOUT_MS). */
  readonly idleMs: number;
  /** Scrubbed from a provider's error (its message and every other field) before it reaches the client or the log. */
  readonly apiKeys: readonly string[];
  /** Takes the real keys out of the provider's bytes as they arrive. */
  readonly scrubber: ByteScrubber;
  /** Told once, when the stream's head goes to the client (it is no refusal). */
  readonly started?: () => void;
}

/** What the log and the metrics learn from a relayed stream. */
export interface RelayRecord {
  status: number;
  error: GatewayError | null;
  firstByteAt: number | null;
  upstreamEndedAt: number | null;
  /** Events relayed: an estimate of the tokens of a stream that ended before its usage. */
  streamedEvents: number;
  /** The stream's bytes so far (the log lays out an entry whose answer is large with its growth bounded). */
  answerBytes: number;
}

/** Where the notable events are in a read, found in one pass; then asked in order, event by event. */
class NotableScan {
  private readonly positions: number[] = [];
  private index = 0;
  constructor(text: string, notable: RegExp) {
    for (const match of text.matchAll(notable)) this.positions.push(match.index);
  }
  /** Whether one occurs in [start, end); events are asked about in increasing order. */
  within(start: number, end: number): boolean {
    while (this.index < this.positions.length && (this.positions[this.index] as number) < start) this.index++;
    return this.index < this.positions.length && (this.positions[this.index] as number) < end;
  }
}

class StreamRelay {
  private readonly parser = new SseParser();
  private readonly notableAll: RegExp;
  private idle: Deadline;
  /** Waiting for the client to read what it was sent. */
  private paused = false;
  /** How far the client's socket had got when last looked at, while paused (see `sent`), and when that moved. */
  private written = -1;
  private movedAt = 0;
  /** The real keys as `made` searches for them (keySpellings), once a frame needs them. */
  private spellings: readonly string[] | null = null;
  private over = false;
  /** What one read produces, gathered and written at once: one write (one syscall) per read. */
  private gathering = false;
  private readonly pieces: Array<string | Buffer> = [];
  /** The provider's error as the stream's first event, before the client got a byte: answered as its status instead. */
  private refusal: GatewayError | null = null;
  /** Frames that say nothing, held until something follows them (dropped with a refusal). */
  private held = '';
  /** The head was written: what comes next is part of a 200, never a refusal. */
  private headSent = false;
  private headTimer: NodeJS.Timeout | null = null;
  private resolve: (refusal: GatewayError | null) => void = () => {};

  constructor(
    private readonly upstream: UpstreamResponse,
    private readonly res: ServerResponse,
    private readonly pipeline: StreamPipeline,
    private readonly record: RelayRecord,
    private readonly options: RelayOptions,
  ) {
    this.notableAll = new RegExp(pipeline.notable.source, 'g');
    this.idle = setDeadline(options.idleMs, this.onIdle);
  }

  run(): Promise<GatewayError | null> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      // Written with the first bytes, or alone after HEAD_HOLD_MS: until then the provider's error
      // as its first event can still be answered as an error status.
      this.record.status = 200;
      this.headTimer = setTimeout(this.headAlone, HEAD_HOLD_MS);
      this.options.cancel.onCancel(this.onCancel);
      const body = this.upstream.body;
      body.on('data', this.onData);
      body.once('end', this.onEnd);
      body.once('close', this.onClose);
    });
  }

  // ---- reading ----------------------------------------------------------------------------

  private readonly onData = (read: Buffer): void => {
    if (this.over) return;
    this.idle.at = performance.now() + this.options.idleMs;
    const chunk = this.options.scrubber.push(read);
    if (chunk.length === 0) return;
    this.record.answerBytes += chunk.length;
    this.gathering = true;
    try {
      if (this.pipeline.passThrough && this.relayBytes(chunk)) return;
      const comments = this.parser.comments;
      const events = this.parse(() => this.parser.push(chunk));
      if (events === null) return;
      this.record.streamedEvents += events.length;
      // Provider keep-alives (DeepSeek queues) are passed on so the client's idle timers see
      // life, whether or not events came in the same read.
      if (this.parser.comments !== comments) this.keepAlive();
      this.handle(events);
    } finally {
      this.gathering = false;
      if (!this.over && this.pieces.length > 0) this.send(this.collected(''));
    }
  };

  private readonly onEnd = (): void => {
    if (this.over) return;
    const rest = this.options.scrubber.flush();
    if (rest.length > 0) this.onData(rest);
    if (this.over) return;
    const events = this.parse(() => this.parser.end());
    if (events === null || this.handle(events)) return;
    // Some servers close after the answer's last event without their end marker.
    const ending = this.pipeline.finish();
    if (ending !== null) this.done(this.made(ending));
    else this.fail(this.pipeline.said() ?? incompleteStream());
  };

  private readonly onClose = (): void => {
    // Cut after the provider said what went wrong (a Responses error event): that is the failure.
    if (!this.over) this.fail(this.pipeline.said() ?? malformedBody(this.upstream.body) ?? new GatewayError(502, 'The connection to the provider was lost mid-stream.', { code: 'upstream_connection_lost', logDetail: whyCut(this.upstream.body) ?? undefined }));
  };

  private readonly onCancel = (): void => {
    if (this.over) return;
    const reason = this.options.cancel.reason as GatewayError;
    if (reason.status !== 499) return this.fail(reason); // shutting down: the client gets an error frame
    this.record.status = 499;
    this.upstream.abort();
    this.finish();
  };

  private parse(read: () => SseEvent[]): SseEvent[] | null {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof SseTooLargeError)) throw err;
      this.fail(new GatewayError(502, `The provider sent an event larger than ${err.limit} characters.`, { code: 'upstream_event_too_large' }));
      return null;
    }
  }

  /**
   * A pass-through read, cut at event boundaries without decoding it: runs of plain events go
   * out as byte ranges; only notable events go through the parser and the pipeline. Returns false
   * when the read cannot be cut this way (CR line ends, named events where a name could mean
   * something the data does not say, a partial event pending).
   */
  private relayBytes(chunk: Buffer): boolean {
    if (!this.parser.isIdle()) return false;
    // latin1: one character per byte, so positions in the text are positions in the bytes.
    const text = chunk.toString('latin1');
    if (text.includes('\r') || (!this.pipeline.namedEvents && text.includes('event:'))) return false;
    const notable = new NotableScan(text, this.notableAll);
    // In an API whose events are named, one without its name (some compatible servers send data
    // lines only) is framed again with it: SDKs read events by name and skip the rest. An event
    // names itself first (Anthropic's, OpenAI's), or on a later line: where the next such line is,
    // is found once per such line (a stream without any finds none once).
    const named = this.pipeline.namedEvents;
    let nameLineAt = -1;
    let runStart = 0;
    let position = 0;
    for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n', position)) {
      const next = end + 2;
      this.record.streamedEvents++;
      let unnamed = false;
      if (named && !text.startsWith('event:', position)) {
        if (nameLineAt !== Infinity && nameLineAt < position) {
          nameLineAt = text.indexOf('\nevent:', position);
          if (nameLineAt === -1) nameLineAt = Infinity;
        }
        unnamed = nameLineAt >= end;
      }
      // (A block of comments alone is an event without a name too: parsed, it is a keep-alive.)
      // Until something went out, every block is parsed, as the first read is: a comment is then
      // held like a ping (keepAlive), a block with no event (`retry:`, `id:` alone) says nothing.
      const leading = runStart === position && !this.headSent && this.pieces.length === 0;
      if (unnamed || leading || notable.within(position, next)) {
        this.forward(chunk.subarray(runStart, position));
        const comments = this.parser.comments;
        const events = this.parse(() => this.parser.push(chunk.subarray(position, next)));
        if (events === null) return true;
        if (this.parser.comments !== comments) this.keepAlive();
        if (this.handle(events)) return true;
        runStart = next;
      }
      position = next;
    }
    this.forward(chunk.subarray(runStart, position));
    // A partial event at the end waits in the parser for the rest.
    if (position < chunk.length) {
      const events = this.parse(() => this.parser.push(chunk.subarray(position)));
      if (events !== null && events.length > 0) this.handle(events);
    }
    return true;
  }

  /** A run of plain events, written as the provider's own bytes (and read for the log). */
  private forward(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // Whole events: no character is split.
    if (this.pipeline.assembling) for (const event of new SseParser().pushText(bytes.toString('utf8'))) this.pipeline.forwarded(event.data);
    this.pipeline.passed(bytes);
    this.write(bytes);
  }

  /** Events through the pipeline, their frames written; true when the stream is over. */
  private handle(events: SseEvent[]): boolean {
    let text = '';
    for (const event of events) {
      let step: StreamStep;
      try {
        step = this.pipeline.event(event);
      } catch (err) {
        step = { text: '', error: toGatewayError(err) };
      }
      if (step.silent === true && text === '' && !this.headSent && this.pieces.length === 0) {
        this.hold(this.made(step.text));
        continue;
      }
      text += this.made(step.text);
      if (step.error !== undefined) {
        if (text === '' && this.pieces.length === 0 && !this.headSent) this.refuse(step.error);
        else this.fail(step.error, text);
        return true;
      }
      if (step.done === true) {
        this.done(text);
        return true;
      }
    }
    if (text !== '') this.write(text);
    return false;
  }

  /**
   * Frames the gateway wrote itself: a translation joins what the provider sent in pieces (a
   * Responses `.done` event's text) and decodes a tool call's JSON, so a real key the byte
   * scrubber never saw whole can be whole here.
   */
  private made(text: string): string {
    return text === '' ? text : textWithoutKeys(text, (this.spellings ??= keySpellings(this.options.apiKeys)));
  }

  // ---- writing ----------------------------------------------------------------------------

  private write(data: string | Buffer): void {
    this.release();
    if (this.gathering) this.pieces.push(data);
    else this.send(data);
  }

  /** A provider's keep-alive comment: before anything else, held like a ping (an error as the first event is still its status). */
  private keepAlive(): void {
    if (!this.headSent && this.pieces.length === 0) this.hold(KEEP_ALIVE);
    else this.write(KEEP_ALIVE);
  }

  /** A frame that says nothing, before anything else: held, until there are too many (then the head goes, with them). */
  private hold(frame: string): void {
    this.held += frame;
    if (this.held.length > HELD_MAX_CHARS) this.headAlone();
  }

  /** Frames held back go out now, ahead of what follows them. */
  private release(): void {
    if (this.held === '') return;
    const held = this.held;
    this.held = '';
    if (this.gathering) this.pieces.push(held);
    else this.send(held);
  }

  private collected(tail: string): string | Buffer {
    const pieces = this.pieces;
    if (pieces.length === 0) return tail;
    if (tail !== '') pieces.push(tail);
    const whole = pieces.length === 1 ? (pieces[0] as string | Buffer) : Buffer.concat(pieces.map((piece) => (typeof piece === 'string' ? utf8Bytes(piece) : piece)));
    pieces.length = 0; // emptied, not replaced: see "Memory" in docs/performance.md
    return whole;
  }

  private send(data: string | Buffer): void {
    this.head();
    this.record.firstByteAt ??= performance.now();
    if (!this.res.write(data)) {
      // Paused for a slow client: the provider's silence is ours; a client that reads nothing for
      // as long as an idle provider would be given is let go, or it holds the request forever.
      this.paused = true;
      this.written = this.sent();
      this.movedAt = performance.now();
      this.idle.at = this.movedAt + this.lookEvery();
      this.upstream.body.pause();
      this.res.once('drain', this.resume);
    }
  }

  private readonly resume = (): void => {
    this.paused = false;
    this.idle.at = performance.now() + this.options.idleMs;
    this.upstream.body.resume();
  };

  /** Nothing moved for idleMs: the provider was silent, or (paused for it) the client read nothing. */
  private readonly onIdle = (): void => {
    if (!this.paused) return this.fail(upstreamIdle(this.options.idleMs));
    // A client reading slowly, a large event at a time, takes bytes without draining them all.
    // Looked at every quarter period: the kernel takes some bytes right after the pause, which
    // seen only a whole period later would count as the client reading and grant a second one.
    const now = performance.now();
    const sent = this.sent();
    if (sent !== this.written) {
      this.written = sent;
      this.movedAt = now;
    }
    const left = this.movedAt + this.options.idleMs - now;
    if (left > 0) {
      this.idle = setDeadline(Math.min(left, this.lookEvery()), this.onIdle);
      return;
    }
    this.stalled();
  };

  private lookEvery(): number {
    return Math.max(1, Math.ceil(this.options.idleMs / 4));
  }

  /**
   * Where the client's socket is in sending what it was given: its bytes written (which count a
   * write as soon as it is made) less what libuv still queues of them, which falls as a client
   * reads a large write slowly. No other measure moves until a whole write is out.
   */
  private sent(): number {
    const socket = this.res.socket;
    if (socket === null) return -1;
    const queued = (socket as unknown as { _handle?: { writeQueueSize?: unknown } })._handle?.writeQueueSize;
    return socket.bytesWritten - (typeof queued === 'number' ? queued : 0);
  }

  /** The client read nothing for idleMs: its connection is closed (an error frame would wait behind what it did not read). */
  private stalled(): void {
    if (this.over) return;
    this.record.error = new GatewayError(408, `The client read nothing of the stream for ${this.options.idleMs} ms (UPSTREAM_IDLE_TIMEOUT_MS); its connection was closed.`, { code: 'client_stalled' });
    this.record.status = 408;
    this.over = true;
    this.upstream.abort();
    this.res.destroy();
    this.finish();
  }

  // ---- ending -----------------------------------------------------------------------------

  /** The stream's head, with its first bytes or alone after HEAD_HOLD_MS. */
  private head(): void {
    if (this.headSent) return;
    this.headSent = true;
    if (this.headTimer !== null) clearTimeout(this.headTimer);
    this.res.writeHead(200, SSE_HEADERS);
    this.options.started?.();
  }

  /** No event yet after HEAD_HOLD_MS: the head goes alone, with the pings held back (no first byte of the answer: ttfb waits for its first event). */
  private readonly headAlone = (): void => {
    if (this.over || this.headSent) return;
    this.head();
    this.res.flushHeaders();
    const held = this.held;
    this.held = '';
    if (held !== '') this.res.write(held);
  };

  private finish(): void {
    this.over = true;
    if (this.headTimer !== null) clearTimeout(this.headTimer);
    clearDeadline(this.idle);
    this.options.cancel.offCancel(this.onCancel);
    this.record.upstreamEndedAt = performance.now();
    this.resolve(this.refusal);
  }

  /**
   * The provider refused in its stream's first event (Anthropic's `overloaded_error` after a 200,
   * a compatible server's error chunk): nothing reached the client, which gets the error as its
   * status, as had the provider answered so: its SDK retries a 429 or 529 as it would that.
   */
  private refuse(error: GatewayError): void {
    this.refusal = streamedUpstreamError(redactError(error, this.options.apiKeys));
    this.record.error = this.refusal;
    this.record.status = this.refusal.status;
    this.upstream.abort();
    this.finish();
  }

  private end(tail: string): void {
    if (this.over) return;
    this.release();
    this.head();
    const last = this.collected(tail);
    if (last.length > 0) this.record.firstByteAt ??= performance.now();
    this.res.end(last);
    this.finish();
  }

  private done(text: string): void {
    this.end(text);
    // Read and drop whatever follows so the connection returns to the pool.
    const body = this.upstream.body;
    const drain = setTimeout(() => this.upstream.abort(), DRAIN_MS);
    drain.unref();
    body.once('close', () => clearTimeout(drain));
    body.resume();
  }

  private fail(error: GatewayError, text = ''): void {
    if (this.over) return;
    const safe = streamedUpstreamError(redactError(error, this.options.apiKeys));
    this.record.error = safe;
    // The client saw 200 then an error frame; the log and metrics count the failure by its own status.
    this.record.status = safe.status;
    this.end(text + this.pipeline.failure(safe));
    this.upstream.abort(); // a failed provider connection is not reused, and keeps no socket open
  }
}

/**
 * Resolves once the client's stream is over, whichever way it ended; never rejects. With the
 * provider's refusal when its stream's first event was its error and the client got nothing yet
 * (no head either): the caller answers it as an error status.
 */
export function relayStream(upstream: UpstreamResponse, res: ServerResponse, pipeline: StreamPipeline, record: RelayRecord, options: RelayOptions): Promise<GatewayError | null> {
  return new StreamRelay(upstream, res, pipeline, record, options).run();
}
