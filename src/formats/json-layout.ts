/**
 * JSON bytes checked and laid out for the log in one walk, without building values: whether they
 * are JSON (RFC 8259) at all, and their indented (or one-line) form as pieces to write, its growth
 * bounded. A logged body never becomes one string (docs/performance.md).
 */

import { BACKSLASH, ParseWhole, QUOTE, scalarEnd, skipSpace, stringEnd } from './json-tokens.js';

/** The index after the JSON string that opens at `start` of the bytes being checked, or -1. */
type StringEnd = (start: number) => number;

/**
 * Whether `raw` is one JSON value (RFC 8259), checked without building it: what JSON.parse would
 * accept, for bytes that are valid UTF-8. For a body whose large members were left as bytes, where
 * the scan checked their structure only, before the log splices the bytes into an entry (which
 * indentJsonBytes checks as it lays them out, in the same pass).
 */
export function isJsonText(raw: Buffer): boolean {
  return walk(raw, null, null, Infinity) === LAID_OUT;
}


/** How a walk of the bytes ended. */
const NOT_JSON = 0;
const LAID_OUT = 1;
/** The layout grew past its limit (pretty only). */
const GREW = 2;

/**
 * One walk of `raw` by JSON's grammar, written to `out` as it goes where there is one (indented
 * for a value `level` deep, or on one line where `level` is null). Nothing is built, and any depth
 * is fine: no recursion. `known`: the bytes are already known to be JSON (parsed whole), so only
 * where each string and number ends is looked for, not whether its insides are valid.
 */
function walk(raw: Buffer, out: Pieces | null, level: number | null, limit: number, known = false): number {
  // Where the bytes hold no control character at all (compact JSON, as SDKs send it), a string's
  // escapes are all there is to check in it: found with indexOf, not byte by byte.
  // Known bytes that are not JSON after all make these throw ParseWhole (indentJsonBytes: null).
  const jsonStringEnd: StringEnd = known ? (start) => stringEnd(raw, start) : hasControlBytes(raw) ? (start) => checkedStringEnd(raw, start) : escapedStrings(raw);
  const scalarEndOf = known ? (start: number): number => scalarEnd(raw, start) : (start: number): number => jsonScalarEnd(raw, start);
  const pretty = level === null ? null : out;
  let depth = level ?? 0;
  // Open containers, innermost last: 0x7b object, 0x5b array.
  const open: number[] = [];
  let i = skipSpace(raw, 0);
  for (;;) {
    // A value starts at i.
    const c = raw[i];
    if (c === 0x7b || c === 0x5b) {
      const close = c === 0x7b ? 0x7d : 0x5d;
      out?.byte(c);
      i = skipSpace(raw, i + 1);
      if (raw[i] === close) {
        out?.byte(close);
        i++;
      } else {
        open.push(c);
        if (pretty !== null) {
          pretty.newline(++depth);
          if (pretty.length > limit) return GREW;
        }
        if (c === 0x7b) i = afterKey(raw, i, jsonStringEnd, out, pretty !== null);
        if (i === -1) return NOT_JSON;
        continue;
      }
    } else {
      const end = c === QUOTE ? jsonStringEnd(i) : scalarEndOf(i);
      if (end === -1) return NOT_JSON;
      out?.copy(raw, i, end);
      i = end;
    }
    // After a value: a comma and the next member, a closing bracket, or the end.
    for (;;) {
      i = skipSpace(raw, i);
      if (open.length === 0) return i === raw.length ? LAID_OUT : NOT_JSON;
      const container = open[open.length - 1];
      const next = raw[i];
      if (next === 0x2c) {
        out?.byte(next);
        if (pretty !== null) {
          pretty.newline(depth);
          if (pretty.length > limit) return GREW;
        }
        i = skipSpace(raw, i + 1);
        if (container === 0x7b) i = afterKey(raw, i, jsonStringEnd, out, pretty !== null);
        if (i === -1) return NOT_JSON;
        break;
      }
      if (next !== (container === 0x7b ? 0x7d : 0x5d)) return NOT_JSON;
      open.pop();
      if (pretty !== null) {
        pretty.newline(--depth);
        if (pretty.length > limit) return GREW;
      }
      out?.byte(next);
      i++;
    }
  }
}

/** Where the value of the member whose key starts at `i` starts (after its colon), the key and colon written to `out`; or -1. */
function afterKey(raw: Buffer, i: number, jsonStringEnd: StringEnd, out: Pieces | null, pretty: boolean): number {
  const end = jsonStringEnd(i);
  if (end === -1) return -1;
  const colon = skipSpace(raw, end);
  if (raw[colon] !== 0x3a) return -1;
  if (out !== null) {
    out.copy(raw, i, end);
    out.byte(0x3a);
    if (pretty) out.byte(0x20);
  }
  return skipSpace(raw, colon + 1);
}

/** Whether a 32-bit word holds a byte below 0x20: its top bit set by the borrow, not by the byte itself (exact for any word). */
const controlIn = (x: number): number => (x - 0x20202020) & ~x & 0x80808080;

/**
 * Whether any byte is below 0x20, four words at a time. A regular expression over latin1 pieces
 * of the bytes was 20% of isJsonText's time slower and made a 1 MB body's worth of strings per
 * call (docs/performance.md).
 */
export function hasControlBytes(raw: Buffer): boolean {
  const length = raw.length;
  let i = 0;
  // Bytes before the first whole word (a Uint32Array starts at a multiple of 4).
  const head = Math.min(length, (4 - (raw.byteOffset & 3)) & 3);
  for (; i < head; i++) if ((raw[i] as number) < 0x20) return true;
  const count = (length - i) >>> 2;
  if (count > 0) {
    const words = new Uint32Array(raw.buffer, raw.byteOffset + i, count);
    let k = 0;
    for (; k + 4 <= count; k += 4) {
      if ((controlIn(words[k] as number) | controlIn(words[k + 1] as number) | controlIn(words[k + 2] as number) | controlIn(words[k + 3] as number)) !== 0) return true;
    }
    for (; k < count; k++) if (controlIn(words[k] as number) !== 0) return true;
    i += count * 4;
  }
  for (; i < length; i++) if ((raw[i] as number) < 0x20) return true;
  return false;
}

/**
 * As checkedStringEnd, for bytes known to hold no control character: only the escapes are looked
 * at, found with indexOf. The next backslash is remembered: a search from each string would run to
 * the end of a body without one, once per string (a 20 MB body took minutes).
 */
function escapedStrings(raw: Buffer): StringEnd {
  // The first backslash at or after `searched` is at `found` (raw.length: none).
  let searched = -1;
  let found = -1;
  const backslashFrom = (from: number): number => {
    if (from >= searched && from <= found) return found;
    searched = from;
    const at = raw.indexOf(BACKSLASH, from);
    found = at === -1 ? raw.length : at;
    return found;
  };
  return (start) => {
    if (raw[start] !== QUOTE) return -1;
    let end: number;
    try {
      end = stringEnd(raw, start);
    } catch {
      return -1; // not closed
    }
    let slash = backslashFrom(start + 1);
    while (slash < end - 1) {
      const e = raw[slash + 1];
      if (e === 0x75 /* u */) {
        const after = unicodeEscapeEnd(raw, slash);
        if (after === -1) return -1;
        slash = backslashFrom(after);
      } else if (isEscaped(e)) {
        slash = backslashFrom(slash + 2);
      } else {
        return -1;
      }
    }
    return end;
  };
}

/** The index after the JSON string that opens at `start`, or -1: no raw control characters, only JSON's escapes. */
function checkedStringEnd(raw: Buffer, start: number): number {
  if (raw[start] !== QUOTE) return -1;
  for (let i = start + 1; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === QUOTE) return i + 1;
    if (c < 0x20) return -1;
    if (c !== BACKSLASH) continue;
    const e = raw[++i];
    if (e === 0x75 /* u */) {
      const after = unicodeEscapeEnd(raw, i - 1);
      if (after === -1) return -1;
      i = after - 1;
    } else if (!isEscaped(e)) {
      return -1;
    }
  }
  return -1;
}

/**
 * The index after the `\\uXXXX` escape whose backslash is at `at` (after both escapes of a
 * surrogate pair), or -1: not four hex digits, or half a surrogate pair. JSON's grammar allows a
 * lone surrogate; jq refuses one (and the whole log file after it): a logged body holding one is
 * logged as its text.
 */
function unicodeEscapeEnd(raw: Buffer, at: number): number {
  for (let k = 2; k <= 5; k++) if (!isHex(raw[at + k])) return -1;
  const half = surrogateHalf(raw, at);
  if (half === 0) return at + 6;
  if (half === 2 || raw[at + 6] !== BACKSLASH || raw[at + 7] !== 0x75 /* u */) return -1;
  for (let k = 8; k <= 11; k++) if (!isHex(raw[at + k])) return -1;
  return surrogateHalf(raw, at + 6) === 2 ? at + 12 : -1;
}

/** Of the `\\uXXXX` escape at `at` (hex digits checked): 0 not a surrogate, 1 a high one (D800–DBFF), 2 a low one (DC00–DFFF). */
function surrogateHalf(raw: Buffer, at: number): number {
  if (((raw[at + 2] as number) | 0x20) !== 0x64 /* d */) return 0;
  const c = (raw[at + 3] as number) | 0x20;
  if (c === 0x38 || c === 0x39 || c === 0x61 || c === 0x62) return 1; // 8 9 a b
  return c >= 0x63 && c <= 0x66 ? 2 : 0; // c–f
}

/**
 * Whether bytes known to be JSON hold a lone surrogate escape (`\\ud800` not followed by its low
 * half, or a low half alone), which jq refuses. Only `\\ud` and `\\uD` are searched for (two
 * native searches: other escapes, every character of a body in Python's default `\\u4e2d` form,
 * are passed over): ~40 µs per 137 KB, ~200 µs for 200 KB of escaped CJK text.
 */
export function hasLoneSurrogateEscape(raw: Buffer): boolean {
  for (const needle of SURROGATE_ESCAPES) {
    for (let at = raw.indexOf(needle); at !== -1; at = raw.indexOf(needle, at + 3)) {
      if (!escapes(raw, at) || at + 6 > raw.length) continue;
      for (let k = 2; k <= 5; k++) if (!isHex(raw[at + k])) return false; // not JSON: not this check's to say
      const half = surrogateHalf(raw, at);
      if (half === 1) {
        if (unicodeEscapeEnd(raw, at) === -1) return true;
        at += 9; // past its low half: the next search starts after the pair
        continue;
      }
      // A low half is the second of a pair only right after a high one that is an escape itself.
      if (half === 2 && !(at >= 6 && raw[at - 6] === BACKSLASH && raw[at - 5] === 0x75 && escapes(raw, at - 6) && surrogateHalf(raw, at - 6) === 1)) return true;
    }
  }
  return false;
}

const SURROGATE_ESCAPES = [Buffer.from('\\ud'), Buffer.from('\\uD')];

/** Whether the backslash at `at` begins an escape: an even number of backslashes before it (`\\\\ud800` is text). */
function escapes(raw: Buffer, at: number): boolean {
  let before = at - 1;
  while (before >= 0 && raw[before] === BACKSLASH) before--;
  return (at - 1 - before) % 2 === 0;
}

/** A character JSON escapes with a backslash and a letter or itself: " \\ / b f n r t. */
function isEscaped(c: number | undefined): boolean {
  return c === QUOTE || c === BACKSLASH || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74;
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46));
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

/** The index after the literal or number at `start`, or -1 (JSON's grammar: no leading zeros, no bare dot). */
function jsonScalarEnd(raw: Buffer, start: number): number {
  let i = start;
  // true, false, null: compared byte by byte (a native compare's call cost more than the bytes).
  const c = raw[i];
  if (c === 0x74) return raw[i + 1] === 0x72 && raw[i + 2] === 0x75 && raw[i + 3] === 0x65 ? i + 4 : -1;
  if (c === 0x66) return raw[i + 1] === 0x61 && raw[i + 2] === 0x6c && raw[i + 3] === 0x73 && raw[i + 4] === 0x65 ? i + 5 : -1;
  if (c === 0x6e) return raw[i + 1] === 0x75 && raw[i + 2] === 0x6c && raw[i + 3] === 0x6c ? i + 4 : -1;
  if (raw[i] === 0x2d) i++;
  if (raw[i] === 0x30) i++;
  else if (isDigit(raw[i])) while (isDigit(raw[i])) i++;
  else return -1;
  if (raw[i] === 0x2e) {
    if (!isDigit(raw[++i])) return -1;
    while (isDigit(raw[i])) i++;
  }
  if (raw[i] === 0x65 || raw[i] === 0x45) {
    i++;
    if (raw[i] === 0x2b || raw[i] === 0x2d) i++;
    if (!isDigit(raw[i])) return -1;
    while (isDigit(raw[i])) i++;
  }
  return i;
}

/** Strings at least this long are pieces of the input itself in a layout, not copies. */
const SHARED_STRING_BYTES = 1024;

/** Bytes of the chunks a layout writes its own bytes into (indentation, punctuation, short strings). */
const CHUNK_BYTES = 64 * 1024;

/**
 * A layout's output, in pieces to be written as they are (writev): the indentation, punctuation
 * and short strings written into chunks of its own, each long string a piece of the input. Copying
 * a 1 MB body's long strings into one buffer cost as much as all of its layout (docs/performance.md).
 */
class Pieces {
  private readonly pieces: Buffer[] = [];
  private buf: Buffer;
  /** Where the piece being written began in buf. */
  private start = 0;
  private at = 0;
  /** Bytes in every piece so far, the one being written included. */
  length = 0;

  constructor(private readonly chunkBytes: number) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
  }

  private cut(): void {
    if (this.at > this.start) this.pieces.push(this.buf.subarray(this.start, this.at));
    this.start = this.at;
  }

  private room(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    this.cut();
    this.buf = Buffer.allocUnsafe(Math.max(this.chunkBytes, bytes));
    this.start = this.at = 0;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.at++] = c;
    this.length++;
  }

  copy(from: Buffer, start: number, end: number): void {
    const bytes = end - start;
    this.length += bytes;
    if (bytes >= SHARED_STRING_BYTES) {
      this.cut();
      this.pieces.push(from.subarray(start, end));
      return;
    }
    this.room(bytes);
    if (bytes > 48) {
      this.at += from.copy(this.buf, this.at, start, end);
      return;
    }
    // Most strings of a body are keys and short values: a loop is cheaper than a native copy's call.
    const buf = this.buf;
    let at = this.at;
    for (let i = start; i < end; i++) buf[at++] = from[i] as number;
    this.at = at;
  }

  newline(level: number): void {
    const spaces = level * 2;
    this.room(spaces + 1);
    const buf = this.buf;
    let at = this.at;
    buf[at++] = 0x0a;
    for (let i = 0; i < spaces; i++) buf[at++] = 0x20;
    this.at = at;
    this.length += spaces + 1;
  }

  result(): Buffer[] {
    this.cut();
    return this.pieces;
  }
}

/** A pretty layout larger than this many times its input (plus a little) gives way to the compact one. */
const MAX_GROWTH = 4;

/** The most a pretty layout of `compactBytes` of JSON may take before the compact one is used instead (for a body logged parsed too). */
export function prettyLimit(compactBytes: number): number {
  return MAX_GROWTH * compactBytes + 4096;
}

/**
 * JSON bytes laid out as `JSON.stringify(value, null, 2)` lays out their value, for a value nested
 * `level` deep (its inner lines indented by 2 × level more spaces); with `level` null, on one line
 * as `JSON.stringify(value)`. Null when the bytes are not one JSON value (as isJsonText, checked in
 * the same pass: a logged body whose large members were never parsed is walked once, not twice);
 * `known`: they were parsed whole, and are only laid out (checking them again doubled the cost).
 * Strings and numbers stay as the client wrote them (the same values; `\u00e9` stays escaped), so
 * the bytes never become one string. The layout is pieces to write in order; its long strings are
 * pieces of `raw`, which must not change until they are written.
 *
 * Indentation grows with depth: 100 KB of nested brackets would take gigabytes laid out. A layout
 * that grows past MAX_GROWTH times the input is abandoned for the compact one (never larger than
 * the input), so the output stays bounded and the body whole.
 */
export function indentJsonBytes(raw: Buffer, level: number | null = 0, known = false, limit = prettyLimit(raw.length)): Buffer[] | null {
  const out = new Pieces(Math.min(CHUNK_BYTES, raw.length + (level !== null ? raw.length >> 2 : 0) + 64));
  let walked: number;
  try {
    walked = walk(raw, out, level, limit, known);
  } catch (err) {
    if (!(err instanceof ParseWhole)) throw err;
    walked = NOT_JSON;
  }
  // The walk compares after each line; its last bracket comes after the last line.
  if (walked === GREW || (walked === LAID_OUT && level !== null && out.length > limit)) return indentJsonBytes(raw, null, known);
  return walked === LAID_OUT ? out.result() : null;
}
