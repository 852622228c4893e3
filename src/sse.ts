/**
 * Server-sent events: an incremental parser that accepts bytes split anywhere (inside a line,
 * inside a UTF-8 sequence, between `\r` and `\n`), and the writer for the frames we send.
 * Follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r`; a blank line
 * dispatches; lines starting with `:` are comments; `data` lines are joined with `\n`.
 */
import { StringDecoder } from 'node:string_decoder';

export interface SseEvent {
  /** The `event:` field, when the stream names its events (Anthropic does, OpenAI does not). */
  readonly event: string | undefined;
  readonly data: string;
}

export class SseParser {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  /** The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to that line end. */
  private skipLeadingLf = false;
  private dataLines: string[] = [];
  private hasData = false;
  private eventName: string | undefined;
  /** Comment lines seen (e.g. DeepSeek's `: keep-alive`); they prove the upstream is alive. */
  comments = 0;

  /** Feeds bytes; returns every event completed by them, in order. */
  push(chunk: Buffer): SseEvent[] {
    return this.scan(this.decoder.write(chunk));
  }

  /** The upstream ended: a last event without its blank line is still delivered (lenient). */
  end(): SseEvent[] {
    const events = this.scan(this.decoder.end());
    if (this.pending !== '') {
      const line = this.pending;
      this.pending = '';
      this.line(line, events);
    }
    this.dispatch(events);
    return events;
  }

  private scan(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let buffer = this.pending === '' ? text : this.pending + text;
    let pos = 0;
    if (this.skipLeadingLf && buffer.length > 0) {
      if (buffer.charCodeAt(0) === 10) pos = 1;
      this.skipLeadingLf = false;
    }
    // indexOf results are kept until passed: a chunk with many lines is scanned once per char kind.
    let nextLf = buffer.indexOf('\n', pos);
    let nextCr = buffer.indexOf('\r', pos);
    for (;;) {
      if (nextLf !== -1 && nextLf < pos) nextLf = buffer.indexOf('\n', pos);
      if (nextCr !== -1 && nextCr < pos) nextCr = buffer.indexOf('\r', pos);
      let end: number;
      if (nextLf === -1) end = nextCr;
      else if (nextCr === -1) end = nextLf;
      else end = nextLf < nextCr ? nextLf : nextCr;
      if (end === -1) break;
      const line = buffer.slice(pos, end);
      if (end === nextCr) {
        if (end + 1 < buffer.length) pos = buffer.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
        else {
          pos = end + 1;
          this.skipLeadingLf = true;
        }
      } else {
        pos = end + 1;
      }
      this.line(line, events);
    }
    this.pending = pos === 0 ? buffer : buffer.slice(pos);
    buffer = '';
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
    this.dataLines = [];
    this.hasData = false;
    this.eventName = undefined;
  }
}

/** One `data:` frame. Data with line breaks is split over several `data:` lines, as the spec requires. */
export function sseFrame(data: string): string {
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `data: ${data}\n\n`;
  return `${data.split(/\r\n|\r|\n/).map((line) => `data: ${line}`).join('\n')}\n\n`;
}

export const SSE_DONE = 'data: [DONE]\n\n';

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;
