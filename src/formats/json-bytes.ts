/**
 * JSON read and re-indented as bytes, for agent-sized bodies (100 KB–1 MB).
 *
 * V8 puts every string or object over 128 KiB in its large-object space: one mmap and munmap per
 * allocation, far dearer than a young-generation one (docs/performance.md). `JSON.parse(raw.toString())`
 * of a large body pays that on every request; these functions never make a string of the whole body.
 */

/** Pieces are parsed at most this size: their text (two bytes per character at worst) stays below 128 KiB. */
const PIECE_BYTES = 60 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The body is better parsed whole: it is not valid JSON (or not what the scan expects; JSON.parse
 * of the whole says why), or it is made of many small values, where the scan costs more than the
 * large string it saves.
 */
class ParseWhole extends Error {}

/** A body averaging fewer bytes per value than this (after the first DENSE_AFTER values) is parsed whole. */
const DENSE_BYTES_PER_VALUE = 32;
const DENSE_AFTER = 4096;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The index after the closing quote of the string that opens at `start`. */
function stringEnd(buf: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = buf.indexOf(QUOTE, from);
    if (quote === -1) throw new ParseWhole();
    let slash = quote - 1;
    while (buf[slash] === BACKSLASH) slash--;
    // An even number of backslashes before it: the quote is not escaped.
    if ((quote - 1 - slash) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** A number or a literal: its characters (JSON.parse of the piece holding it checks them). */
function scalarEnd(buf: Buffer, start: number): number {
  let i = start;
  for (; i < buf.length; i++) {
    const c = buf[i] as number;
    // 0-9 + - . and letters (true, false, null, exponents)
    if (!((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e || (c >= 0x61 && c <= 0x7a) || c === 0x45)) break;
  }
  if (i === start) throw new ParseWhole();
  return i;
}

function skipSpace(buf: Buffer, i: number): number {
  while (i < buf.length && isSpace(buf[i] as number)) i++;
  return i;
}

/** A value found by the scan: its bytes, and the value itself when it was too large to parse whole. */
interface Found {
  end: number;
  /** Set for a container over the piece size, built from its parsed members. */
  built?: unknown;
}

/**
 * What a container over the piece size is built from, in order: runs of consecutive members
 * (their bytes, commas included: parsed together, as many as fit in a piece) and members built
 * on their own (containers over the piece size, with their key's bytes in an object).
 */
type Part = { readonly run: true; readonly start: number; readonly end: number } | { readonly run: false; readonly keyStart: number; readonly keyEnd: number; readonly value: unknown };

class PieceParser {
  constructor(
    private readonly buf: Buffer,
    private readonly pieceBytes: number,
  ) {}

  /** Where the document's top-level value starts. */
  private top = -1;
  /** The document's large top-level members, where it is an object, by key (the last of duplicates, as JSON.parse). */
  private readonly large = new Map<string, LargeMember>();
  /** The document's top-level keys, and whether each was written plainly and once so far. */
  private readonly keys = new Set<string>();
  private plainKeys = true;

  private text(start: number, end: number): string {
    return this.buf.toString('utf8', start, end);
  }

  /** Values scanned so far. */
  private values = 0;

  /** The value that starts at `start` (no space before it). */
  value(start: number): Found {
    if (++this.values > DENSE_AFTER && this.values * DENSE_BYTES_PER_VALUE > start) throw new ParseWhole();
    const c = this.buf[start];
    if (c === QUOTE) return { end: stringEnd(this.buf, start) };
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) return this.container(start, c === 0x7b);
    return { end: scalarEnd(this.buf, start) };
  }

  private container(start: number, object: boolean): Found {
    const buf = this.buf;
    const close = object ? 0x7d : 0x5d;
    const parts: Part[] = [];
    let runStart = -1;
    let runEnd = -1;
    let i = skipSpace(buf, start + 1);
    if (buf[i] !== close) {
      for (;;) {
        const memberStart = i;
        let keyEnd = -1;
        if (object) {
          if (buf[i] !== QUOTE) throw new ParseWhole();
          keyEnd = stringEnd(buf, i);
          i = skipSpace(buf, keyEnd);
          if (buf[i] !== 0x3a /* : */) throw new ParseWhole();
          i = skipSpace(buf, i + 1);
        }
        const found = this.value(i);
        if (object && start === this.top) this.topMember(memberStart, keyEnd, i, found.end);
        if ('built' in found || (runStart !== -1 && found.end - runStart > this.pieceBytes)) {
          if (runStart !== -1) parts.push({ run: true, start: runStart, end: runEnd });
          runStart = -1;
        }
        if ('built' in found) {
          parts.push({ run: false, keyStart: memberStart, keyEnd, value: found.built });
        } else {
          if (runStart === -1) runStart = memberStart;
          runEnd = found.end;
        }
        i = skipSpace(buf, found.end);
        if (buf[i] === 0x2c /* , */) {
          i = skipSpace(buf, i + 1);
          continue;
        }
        if (buf[i] === close) break;
        throw new ParseWhole();
      }
    }
    const end = i + 1;
    // Small enough to parse whole (as part of its parent, or alone): only its extent is needed.
    if (end - start <= this.pieceBytes) return { end };
    if (runStart !== -1) parts.push({ run: true, start: runStart, end: runEnd });
    return { end, built: object ? this.buildObject(parts) : this.buildArray(parts) };
  }

  private buildArray(parts: Part[]): unknown[] {
    const array: unknown[] = [];
    for (const part of parts) {
      if (!part.run) {
        array.push(part.value);
        continue;
      }
      const members = JSON.parse(`[${this.text(part.start, part.end)}]`) as unknown[];
      for (const member of members) array.push(member);
    }
    return array;
  }

  private buildObject(parts: Part[]): Record<string, unknown> {
    const result: Record<string, unknown> = {};
    // As JSON.parse: the last of duplicate keys wins, and "__proto__" is an own property like any other.
    const set = (key: string, value: unknown): void => {
      if (key === '__proto__') Object.defineProperty(result, key, { value, writable: true, enumerable: true, configurable: true });
      else result[key] = value;
    };
    for (const part of parts) {
      if (!part.run) {
        set(JSON.parse(this.text(part.keyStart, part.keyEnd)) as string, part.value);
        continue;
      }
      const members = JSON.parse(`{${this.text(part.start, part.end)}}`) as Record<string, unknown>;
      for (const key of Object.keys(members)) set(key, members[key]);
    }
    return result;
  }

  private topMember(keyStart: number, keyEnd: number, start: number, end: number): void {
    const key = JSON.parse(this.text(keyStart, keyEnd)) as string;
    if (this.keys.has(key) || hasBackslash(this.buf, keyStart, keyEnd)) this.plainKeys = false;
    this.keys.add(key);
    if (end - start >= LARGE_MEMBER_BYTES) this.large.set(key, { key, start, end });
    else this.large.delete(key);
  }

  document(): unknown {
    const start = skipSpace(this.buf, 0);
    this.top = start;
    const found = this.value(start);
    if (skipSpace(this.buf, found.end) !== this.buf.length) throw new ParseWhole();
    const document = 'built' in found ? found.built : JSON.parse(this.text(start, found.end));
    if (this.large.size > 0) Object.defineProperty(document, LARGE_MEMBERS, { value: { raw: this.buf, members: [...this.large.values()] } satisfies LargeMembers, configurable: true });
    // The scan saw every top-level key: plainUniqueKeys need not look again.
    if (this.top !== -1 && this.buf[this.top] === 0x7b) Object.defineProperty(document, PLAIN_KEYS, { value: this.plainKeys, configurable: true });
    return document;
  }
}

/** Whether the document's top-level keys were each written plainly and once, where its scan saw them (not enumerable: copies and JSON leave it out). */
const PLAIN_KEYS = Symbol('plainKeys');

function hasBackslash(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] === BACKSLASH) return true;
  return false;
}

/** A top-level member this large (a conversation's messages, its tools) is one a pass-through may let go of. */
export const LARGE_MEMBER_BYTES = 16 * 1024;
const LARGE_MEMBERS = Symbol('largeMembers');

/** A large top-level member's value, by its place in the document's bytes. */
interface LargeMember {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

interface LargeMembers {
  readonly raw: Buffer;
  readonly members: readonly LargeMember[];
}

/**
 * Lets go of the parsed values of `document`'s large top-level members (those parseJsonBytes
 * found), and of the same values in `copies` of it: each becomes a property that parses its bytes
 * again when it is next read, and keeps that value. A request passed through as the client's bytes
 * is done with them once it is sent, but it lives as long as its answer: a 1 MB conversation's
 * tree (about three times its size in objects) would outlive young collections and be promoted,
 * and twenty of them in flight kept the old generation busy. Let go of, it dies young.
 */
export function releaseLargeMembers(document: object, copies: readonly object[] = []): void {
  const found = (document as { [LARGE_MEMBERS]?: LargeMembers })[LARGE_MEMBERS];
  if (found === undefined) return;
  delete (document as { [LARGE_MEMBERS]?: LargeMembers })[LARGE_MEMBERS];
  for (const { key, start, end } of found.members) {
    if (!Object.hasOwn(document, key)) continue;
    const value = (document as Record<string, unknown>)[key];
    const reparse = (): unknown => parseJsonBytes(found.raw.subarray(start, end));
    for (const copy of copies) if (copy !== document && Object.hasOwn(copy, key) && (copy as Record<string, unknown>)[key] === value) lazyProperty(copy, key, reparse);
    lazyProperty(document, key, reparse);
  }
}

/** `target[key]` computed by `read` when next read (then kept as a plain property), or set. */
function lazyProperty(target: object, key: string, read: () => unknown): void {
  const settle = (value: unknown): void => {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  };
  Object.defineProperty(target, key, {
    enumerable: true,
    configurable: true,
    get() {
      const value = read();
      settle(value);
      return value;
    },
    set: settle,
  });
}

/**
 * `JSON.parse(raw.toString('utf8'))`, with the same result and the same errors, but a body over
 * `pieceBytes` is parsed in pieces no larger than that (a single string value over it excepted):
 * its containers are scanned for their members, and runs of members parsed together.
 */
export function parseJsonBytes(raw: Buffer, pieceBytes = PIECE_BYTES): unknown {
  if (raw.length <= pieceBytes) return JSON.parse(raw.toString('utf8'));
  try {
    return new PieceParser(raw, pieceBytes).document();
  } catch (err) {
    // Whatever the scan found wrong (or a piece's parse), JSON.parse of the whole has the final
    // word: its error message, or its value should the scan have been stricter than JSON.
    if (err instanceof ParseWhole || err instanceof SyntaxError || err instanceof RangeError) return JSON.parse(raw.toString('utf8'));
    throw err;
  }
}

/**
 * Whether every key of the top level of a valid JSON object (`raw`, which a parser accepted) is
 * written plainly (no escape) and once. Where one is not, parsers may disagree on what the body
 * says (which of two keys wins; a key spelled with `\u` escapes decodes to a name a byte search
 * does not see): a gateway that checked the body as it parsed it must send what it parsed.
 * `parsed`: the object parseJsonBytes made of `raw`, whose scan of a large body already knows.
 */
export function plainUniqueKeys(raw: Buffer, parsed?: object): boolean {
  const known = parsed === undefined ? undefined : (parsed as { [PLAIN_KEYS]?: boolean })[PLAIN_KEYS];
  if (known !== undefined) return known;
  const seen = new Set<string>();
  let depth = 0;
  let atKey = false;
  for (let i = skipSpace(raw, 0); i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === QUOTE) {
      const end = stringEnd(raw, i);
      if (atKey) {
        if (hasBackslash(raw, i + 1, end - 1)) return false;
        const key = raw.toString('utf8', i + 1, end - 1);
        if (seen.has(key)) return false;
        seen.add(key);
        atKey = false;
      }
      i = end - 1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      atKey = depth === 1 && c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2c && depth === 1) {
      atKey = true;
    }
  }
  return true;
}

/** Output that grows as needed. */
class Output {
  buf: Buffer;
  length = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(bytes: number): void {
    if (this.length + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + bytes));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.length++] = c;
  }

  copy(from: Buffer, start: number, end: number): void {
    this.room(end - start);
    // Most strings of a body are keys and short values: a loop is cheaper than a native copy's call.
    if (end - start > 48) {
      this.length += from.copy(this.buf, this.length, start, end);
      return;
    }
    const buf = this.buf;
    let at = this.length;
    for (let i = start; i < end; i++) buf[at++] = from[i] as number;
    this.length = at;
  }

  /** What was written; copied out of a buffer grown far past it, which would otherwise stay alive with it. */
  result(): Buffer {
    if (this.buf.length <= this.length + (this.length >> 1)) return this.buf.subarray(0, this.length);
    return Buffer.from(this.buf.subarray(0, this.length));
  }

  newline(level: number): void {
    const spaces = level * 2;
    this.room(spaces + 1);
    const buf = this.buf;
    let at = this.length;
    buf[at++] = 0x0a;
    for (let i = 0; i < spaces; i++) buf[at++] = 0x20;
    this.length = at;
  }
}

/** A pretty layout larger than this many times its input (plus a little) gives way to the compact one. */
const MAX_GROWTH = 4;

/**
 * Valid JSON bytes laid out as `JSON.stringify(value, null, 2)` lays out its value, for a value
 * nested `level` deep (its inner lines indented by 2 × level more spaces); with `level` null, on
 * one line as `JSON.stringify(value)`. Strings and numbers stay as the client wrote them (the same
 * values; `\u00e9` stays escaped), so the bytes never become one string. The input must be valid
 * JSON (parseJsonBytes accepted it).
 *
 * Indentation grows with depth: 100 KB of nested brackets would take gigabytes laid out. A layout
 * that grows past MAX_GROWTH times the input is abandoned for the compact one (never larger than
 * the input), so the output stays bounded and the body whole.
 */
export function indentJsonBytes(raw: Buffer, level: number | null = 0): Buffer {
  const pretty = level !== null;
  const limit = MAX_GROWTH * raw.length + 4096;
  const out = new Output(raw.length + (pretty ? raw.length >> 2 : 0) + 64);
  let depth = level ?? 0;
  let i = skipSpace(raw, 0);
  while (i < raw.length) {
    const c = raw[i] as number;
    if (c === QUOTE) {
      const end = stringEnd(raw, i);
      out.copy(raw, i, end);
      i = end;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      const next = skipSpace(raw, i + 1);
      const close = c === 0x7b ? 0x7d : 0x5d;
      out.byte(c);
      if (raw[next] === close) {
        out.byte(close);
        i = next + 1;
        continue;
      }
      depth++;
      if (pretty) {
        out.newline(depth);
        if (out.length > limit) return indentJsonBytes(raw, null);
      }
      i = next;
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      depth--;
      if (pretty) {
        out.newline(depth);
        if (out.length > limit) return indentJsonBytes(raw, null);
      }
      out.byte(c);
    } else if (c === 0x2c) {
      out.byte(c);
      if (pretty) {
        out.newline(depth);
        if (out.length > limit) return indentJsonBytes(raw, null);
      }
    } else if (c === 0x3a) {
      out.byte(c);
      if (pretty) out.byte(0x20);
    } else if (!isSpace(c)) {
      out.byte(c);
    }
    i++;
  }
  return out.result();
}
