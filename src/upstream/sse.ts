/**
 * Server-sent events from providers: an incremental parser that accepts bytes split anywhere
 * (inside a line, inside a UTF-8 sequence, between `\r` and `\n`).
 * Follows the WHATWG event-stream rules: an optional leading BOM is skipped; lines end in `\n`,
 * `\r\n` or `\r`; a blank line dispatches; lines starting with `:` are comments; `data` lines are
 * joined with `\n`. Linear time: each byte is scanned once, and a line split over many reads is
 * joined once. Bounded: a line or an event larger than `maxEventChars` is an error.
 */
import { StringDecoder } from 'node:string_decoder';
import { isProviderJson } from '../formats/json-limits.js';
import type { SseEvent } from '../formats/sse.js';

export type { SseEvent } from '../formats/sse.js';

export class SseTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`an event stream line or event exceeded ${limit} characters`);
    this.name = 'SseTooLargeError';
  }
}

const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** Whether an event's data is whole: OpenAI's `[DONE]`, or JSON a provider may send (checked without building it: the data may be 16 MB). */
function wholeData(data: string): boolean {
  return data === '[DONE]' || isProviderJson(Buffer.from(data, 'utf8'));
}

export class SseParser {
  private readonly decoder = new StringDecoder('utf8');
  /** The start of an unfinished line, in the pieces it arrived in. */
  private readonly pending: string[] = [];
  private pendingLength = 0;
  /** The previous text ended in `\r`: a `\n` starting the next one belongs to that line end. */
  private skipLeadingLf = false;
  private started = false;
  private readonly dataLines: string[] = [];
  private dataLength = 0;
  private hasData = false;
  private eventName: string | undefined;
  /** Comment lines seen (e.g. DeepSeek's `: keep-alive`); they prove the upstream is alive. */
  comments = 0;

  constructor(private readonly maxEventChars = MAX_EVENT_CHARS) {}

  /** Between events: no partial line or event pending, so whole events may bypass the parser. */
  isIdle(): boolean {
    return this.started && this.pending.length === 0 && !this.hasData && !this.skipLeadingLf && this.eventName === undefined;
  }

  /** Feeds bytes; returns every event completed by them, in order. Throws SseTooLargeError. */
  push(chunk: Buffer): SseEvent[] {
    return this.scan(this.decoder.write(chunk));
  }

  /** Feeds already-decoded text (whole events kept aside earlier). */
  pushText(text: string): SseEvent[] {
    return this.scan(text);
  }

  /**
   * The upstream ended. A last event without its blank line is still delivered (lenient: some
   * servers end so), but not one cut inside a data line, which the WHATWG rules drop (a provider
   * cut mid-event left `data: {"id":"c1","object":"chat.completi`): an event whose last line is
   * unfinished data is delivered only when its data is whole. An unfinished line of anything else
   * (a comment, `id:`) is dropped, and the event's data, whose lines ended, delivered.
   */
  end(): SseEvent[] {
    const events = this.scan(this.decoder.end());
    if (this.pendingLength > 0) {
      const last = this.takePending('');
      if (/^data(?::|$)/.test(last)) {
        this.line(last, events);
        if (!wholeData(this.dataLines.join('\n'))) {
          this.forget();
          return events;
        }
      }
    }
    this.dispatch(events);
    return events;
  }

  private takePending(tail: string): string {
    if (this.pending.length === 0) return tail;
    this.pending.push(tail);
    const line = this.pending.join('');
    this.pending.length = 0;
    this.pendingLength = 0;
    return line;
  }

  private scan(input: string): SseEvent[] {
    const events: SseEvent[] = [];
    let text = input;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let pos = 0;
    if (this.skipLeadingLf && text.length > 0) {
      if (text.charCodeAt(0) === 10) pos = 1;
      this.skipLeadingLf = false;
    }
    // Positions of the next \n and \r are kept until passed: each character is scanned once.
    let nextLf = text.indexOf('\n', pos);
    let nextCr = text.indexOf('\r', pos);
    for (;;) {
      if (nextLf !== -1 && nextLf < pos) nextLf = text.indexOf('\n', pos);
      if (nextCr !== -1 && nextCr < pos) nextCr = text.indexOf('\r', pos);
      const end = nextLf === -1 ? nextCr : nextCr === -1 ? nextLf : Math.min(nextLf, nextCr);
      if (end === -1) break;
      const line = this.takePending(text.slice(pos, end));
      if (end === nextCr) {
        if (end + 1 < text.length) pos = text.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
        else {
          pos = end + 1;
          this.skipLeadingLf = true;
        }
      } else {
        pos = end + 1;
      }
      this.line(line, events);
    }
    if (pos < text.length) {
      const rest = pos === 0 ? text : text.slice(pos);
      this.pendingLength += rest.length;
      if (this.pendingLength > this.maxEventChars) throw new SseTooLargeError(this.maxEventChars);
      this.pending.push(rest);
    }
    return events;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === '') {
      this.dispatch(events);
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') {
      this.dataLength += value.length + 1;
      if (this.dataLength > this.maxEventChars) throw new SseTooLargeError(this.maxEventChars);
      this.dataLines.push(value);
      this.hasData = true;
    } else if (field === 'event') {
      this.eventName = value;
    }
    // `id` and `retry` mean nothing to a proxy; unknown fields are ignored, as the spec says.
  }

  private dispatch(events: SseEvent[]): void {
    if (this.hasData) {
      const data = this.dataLines.length === 1 ? (this.dataLines[0] as string) : this.dataLines.join('\n');
      events.push({ event: this.eventName, data });
    }
    this.forget();
  }

  /** The event being read is over: dispatched, or dropped. */
  private forget(): void {
    this.dataLines.length = 0;
    this.dataLength = 0;
    this.hasData = false;
    this.eventName = undefined;
  }
}
