/** Bodies cut for the log: over LOG_BODY_MAX_BYTES, a request no provider saw, a stream too large to assemble. */
import { utf8Bytes } from '../utf8.js';
import { RawJson, type LogEntry } from './log-render.js';

/** What stands in a log entry for a body larger than LOG_BODY_MAX_BYTES. */
export interface TruncatedBody {
  readonly truncated: true;
  /** The body's size: as the client sent it (its JSON bytes, or its text when it was not JSON); an answer's as compact JSON. */
  readonly original_bytes: number;
  /** Its head, as text: up to the cap that applied (LOG_BODY_MAX_BYTES; 64 KiB for a request no provider saw; a cut stream's answer assembled so far). */
  readonly head: string;
}

/** The most of the body of a request no provider saw its entry holds (LOG_BODY_MAX_BYTES where lower). */
export const UNSEEN_BODY_MAX_BYTES = 64 * 1024;

/**
 * A streamed answer is assembled for the log from at most this many bytes of its events, as a
 * whole answer over it is refused: a stream has no size limit, and its log entry (3-4 times its
 * size in memory while it is assembled and rendered) must not hold all of it.
 */
export const MAX_ASSEMBLED_STREAM_BYTES = 64 * 1024 * 1024;

/** A streamed answer cut for the log at MAX_ASSEMBLED_STREAM_BYTES: the answer assembled so far, as text, and the size of all its events. */
export function cutStream(assembled: unknown, streamedBytes: number): TruncatedBody {
  let head: string;
  try {
    head = JSON.stringify(assembled) ?? '';
  } catch {
    head = '';
  }
  return new CutBody(streamedBytes, head);
}

class CutBody implements TruncatedBody {
  readonly truncated = true;
  constructor(
    readonly original_bytes: number,
    readonly head: string,
  ) {}
}

/** A body as logged under a cap: itself, or its head and size. */
export function capBody(body: unknown, maxBytes: number): unknown {
  if (body === null || body === undefined) return body;
  if (body instanceof CutBody) return body.head.length <= maxBytes / 3 ? body : truncate(utf8Bytes(body.head), maxBytes, body.original_bytes);
  if (body instanceof RawJson) return body.bytes.length <= maxBytes ? body : truncate(body.bytes, maxBytes);
  let text: string;
  try {
    text = typeof body === 'string' ? body : JSON.stringify(body);
  } catch {
    return body; // too deeply nested to render: renderEntry says so
  }
  return cutText(text, maxBytes) ?? body;
}

/** A text over `maxBytes` of UTF-8 as its head and size (null: within them). */
function cutText(text: string, maxBytes: number): TruncatedBody | null {
  // Most texts are far below the cap: a length in UTF-16 units bounds their size in bytes by 3x.
  if (text.length * 3 <= maxBytes) return null;
  if (Buffer.byteLength(text) <= maxBytes) return null;
  return truncate(utf8Bytes(text), maxBytes);
}

/** An error's message and detail under a cap (a provider's message can be megabytes): each cut to its head, its size said after it. */
export function capError(error: NonNullable<LogEntry['error']>, maxBytes: number): NonNullable<LogEntry['error']> {
  const cut = (text: string): string => {
    const over = cutText(text, maxBytes);
    return over === null ? text : `${over.head} [truncated: ${over.original_bytes} bytes]`;
  };
  const message = cut(error.message);
  const detail = error.detail === undefined ? undefined : cut(error.detail);
  return message === error.message && detail === error.detail ? error : { ...error, message, ...(detail === undefined ? {} : { detail }) };
}

function truncate(buffer: Buffer, maxBytes: number, originalBytes = buffer.length): TruncatedBody {
  // Cut before a character, not inside one.
  let end = Math.min(maxBytes, buffer.length);
  while (end > 0 && end < buffer.length && ((buffer[end] as number) & 0xc0) === 0x80) end--;
  return { truncated: true, original_bytes: originalBytes, head: buffer.toString('utf8', 0, end) };
}
