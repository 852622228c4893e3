/**
 * A client's JSON body read from its bytes, for agent-sized bodies (100 KB–1 MB): scanned for its
 * members, parsed in pieces, its large members left as bytes until read.
 *
 * V8 puts every string or object over 128 KiB in its large-object space: one mmap and munmap per
 * allocation, far dearer than a young-generation one (docs/performance.md). `JSON.parse(raw.toString())`
 * of a large body pays that on every request; this never makes a string of the whole body.
 */

import { MAX_DEPTH, MAX_OBJECT_MEMBERS, TooDeep, TooMany, tooCostly } from './json-limits.js';
import { hasBackslash, ParseWhole, QUOTE, scalarEnd, skipSpace, stringEnd } from './json-tokens.js';

/** Pieces are parsed at most this size: their text (two bytes per character at worst) stays below 128 KiB. */
const PIECE_BYTES = 60 * 1024;

/** A body averaging fewer bytes per value than this (after the first DENSE_AFTER values) is parsed whole. */
const DENSE_BYTES_PER_VALUE = 32;
const DENSE_AFTER = 4096;

/** A top-level member of an object's bytes: where its key starts, and its value's extent. */
export interface TopMember {
  readonly key: string;
  readonly keyStart: number;
  readonly start: number;
  readonly end: number;
}

/** A value found by the scan: its bytes, and the value itself when it was too large to parse whole. */
interface Found {
  end: number;
  /** Set for a container over the piece size, built from its parsed members. */
  built?: unknown;
  /** Set for a member seen as its checks need it (DeferOptions.views). */
  view?: unknown[];
}

/**
 * What a container over the piece size is built from, in order: runs of consecutive members
 * (their bytes, commas included: parsed together, as many as fit in a piece) and members built
 * on their own (containers over the piece size, with their key's bytes in an object).
 */
type Part = { readonly run: true; readonly start: number; readonly end: number } | { readonly run: false; readonly keyStart: number; readonly keyEnd: number; readonly value: unknown };

/**
 * A view's string longer than this (as written) is seen as LONG_TEXT, not decoded: the fields views
 * read are short (roles, types, ids), and one asked only to be there (a reasoning item's
 * `encrypted_content`, kilobytes each) must not cost its decoding on every request.
 */
const VIEWED_TEXT_MAX_BYTES = 1024;

/**
 * What a view shows for a string longer than VIEWED_TEXT_MAX_BYTES: a string (checks that a value
 * is one still pass) that stands for it, its text not decoded; a control character first, as no
 * role, type or id a client sends has.
 */
export const LONG_TEXT = '\u0000(a string over 1 KiB, not decoded)';

/** Texts a view reuses: at most this many, of at most this many bytes. */
const SHORT_TEXTS = 8;
const SHORT_TEXT = 16;

function isAscii(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if ((buf[i] as number) >= 0x80) return false;
  return true;
}

class PieceParser {
  constructor(
    private readonly buf: Buffer,
    private readonly pieceBytes: number,
    /** Leave large top-level members as bytes (deferred), not parsed. */
    private readonly defer: DeferOptions | null = null,
  ) {}

  /** Where the document's top-level value starts. */
  private top = -1;
  /** The document's large top-level members, where it is an object, by key (the last of duplicates, as JSON.parse). */
  private readonly large = new Map<string, LargeMember>();
  /** The document's top-level keys, and whether each was written plainly and once so far. */
  private readonly keys = new Set<string>();
  private plainKeys = true;
  /** Every top-level member, in order. */
  private readonly members: TopMember[] = [];
  /** Some member was left as bytes (a duplicate key's earlier value included). */
  private deferredAny = false;

  private text(start: number, end: number): string {
    return this.buf.toString('utf8', start, end);
  }

  /** Values scanned so far. */
  private values = 0;

  /** Short ASCII texts a view decoded (each element's role or type repeats a few): reused, not decoded again. */
  private readonly texts: string[] = [];

  /** The text of buf[start, end), an unescaped string's content. */
  private shortText(start: number, end: number): string {
    const length = end - start;
    if (length > SHORT_TEXT) return this.text(start, end);
    const buf = this.buf;
    for (const known of this.texts) {
      if (known.length !== length) continue;
      let i = 0;
      while (i < length && buf[start + i] === known.charCodeAt(i)) i++;
      if (i === length) return known;
    }
    const text = this.text(start, end);
    if (this.texts.length < SHORT_TEXTS && isAscii(buf, start, end)) this.texts.push(text);
    return text;
  }

  /**
   * The value that starts at `start` (no space before it), built where it is over the piece size;
   * `build`: false finds only its end. `depth`: its level (the top's is 1), past MAX_DEPTH too deep.
   */
  value(start: number, build = true, depth = 1): Found {
    const c = this.buf[start];
    if (!build || (c !== 0x7b /* { */ && c !== 0x5b /* [ */)) return { end: this.skip(start, depth) };
    this.count(start);
    return this.container(start, c === 0x7b, depth);
  }

  private count(start: number): void {
    if (++this.values > DENSE_AFTER && this.values * DENSE_BYTES_PER_VALUE > start) throw new ParseWhole();
  }

  /**
   * The index after the value that starts at `start`, its structure checked, nothing built: no
   * object per value walked (a conversation has thousands, and allocating them cost more garbage
   * collection than the walk itself: docs/performance.md).
   */
  private skip(start: number, depth: number): number {
    this.count(start);
    const buf = this.buf;
    const c = buf[start];
    if (c === QUOTE) return stringEnd(buf, start);
    if (c !== 0x7b && c !== 0x5b) return scalarEnd(buf, start);
    // Parsed whole instead, which refuses it as too deep (tooCostly).
    if (depth > MAX_DEPTH) throw new ParseWhole();
    const object = c === 0x7b;
    const close = object ? 0x7d : 0x5d;
    let i = skipSpace(buf, start + 1);
    if (buf[i] === close) return i + 1;
    for (;;) {
      if (object) {
        if (buf[i] !== QUOTE) throw new ParseWhole();
        i = skipSpace(buf, stringEnd(buf, i));
        if (buf[i] !== 0x3a /* : */) throw new ParseWhole();
        i = skipSpace(buf, i + 1);
      }
      i = skipSpace(buf, this.skip(i, depth + 1));
      if (buf[i] === 0x2c /* , */) {
        i = skipSpace(buf, i + 1);
        continue;
      }
      if (buf[i] === close) return i + 1;
      throw new ParseWhole();
    }
  }

  private container(start: number, object: boolean, depth: number): Found {
    if (depth > MAX_DEPTH) throw new ParseWhole();
    const buf = this.buf;
    const close = object ? 0x7d : 0x5d;
    const parts: Part[] = [];
    let runStart = -1;
    let runEnd = -1;
    const top = object && start === this.top;
    // At the top, members are walked before they are parsed: a large one may stay bytes.
    const buildMembers = !(top && this.defer !== null);
    let i = skipSpace(buf, start + 1);
    let members = 0;
    if (buf[i] !== close) {
      for (;;) {
        const memberStart = i;
        let keyEnd = -1;
        if (object) {
          if (++members > MAX_OBJECT_MEMBERS) throw new TooMany(MAX_OBJECT_MEMBERS, 'members in one object');
          if (buf[i] !== QUOTE) throw new ParseWhole();
          keyEnd = stringEnd(buf, i);
          i = skipSpace(buf, keyEnd);
          if (buf[i] !== 0x3a /* : */) throw new ParseWhole();
          i = skipSpace(buf, i + 1);
        }
        const key = top ? this.topKey(memberStart, keyEnd) : '';
        const views = top ? this.defer?.views : undefined;
        // Own entries only: a member named `constructor` or `__proto__` is not asked to be seen.
        const fields = views !== undefined && Object.hasOwn(views, key) ? views[key] : undefined;
        const found = fields === undefined ? this.value(i, buildMembers, depth + 1) : this.view(i, fields, depth + 1);
        if (top) this.topMember(key, memberStart, i, found);
        if (!buildMembers && found.end - i >= LARGE_MEMBER_BYTES) {
          found.built = new DeferredValue(i, found.end);
          this.deferredAny = true;
        }
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
    if (end - start <= this.pieceBytes && !top) return { end };
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

  private topKey(keyStart: number, keyEnd: number): string {
    const key = JSON.parse(this.text(keyStart, keyEnd)) as string;
    if (this.keys.has(key) || hasBackslash(this.buf, keyStart, keyEnd)) this.plainKeys = false;
    this.keys.add(key);
    return key;
  }

  private topMember(key: string, keyStart: number, start: number, found: Found): void {
    this.members.push({ key, keyStart, start, end: found.end });
    if (found.end - start >= LARGE_MEMBER_BYTES) this.large.set(key, { key, start, end: found.end, view: found.view });
    else this.large.delete(key);
  }

  /**
   * A value walked as `skip` walks it, and seen as memberView shows it: an array's
   * object elements with only `fields` (decoded where they are not containers).
   */
  private view(start: number, fields: readonly string[], depth: number): Found {
    const buf = this.buf;
    if (buf[start] !== 0x5b /* [ */) return { end: this.skip(start, depth) };
    this.count(start);
    const view: unknown[] = [];
    let i = skipSpace(buf, start + 1);
    if (buf[i] === 0x5d) return { end: i + 1, view };
    for (;;) {
      let end: number;
      if (buf[i] !== 0x7b) {
        end = this.skip(i, depth + 1);
        view.push(null);
      } else {
        this.count(i);
        const element: Record<string, unknown> = {};
        let at = skipSpace(buf, i + 1);
        if (buf[at] !== 0x7d) {
          for (;;) {
            if (buf[at] !== QUOTE) throw new ParseWhole();
            const keyEnd = stringEnd(buf, at);
            const name = fieldNamed(buf, at, keyEnd, fields);
            at = skipSpace(buf, keyEnd);
            if (buf[at] !== 0x3a /* : */) throw new ParseWhole();
            const valueStart = skipSpace(buf, at + 1);
            const valueEnd = this.skip(valueStart, depth + 2);
            if (name !== null) {
              const c = buf[valueStart];
              element[name] =
                c === 0x7b ? {} : c === 0x5b ? [] : c === QUOTE && valueEnd - valueStart > VIEWED_TEXT_MAX_BYTES ? LONG_TEXT : c === QUOTE && !hasBackslash(buf, valueStart, valueEnd) ? this.shortText(valueStart + 1, valueEnd - 1) : JSON.parse(this.text(valueStart, valueEnd));
            }
            at = skipSpace(buf, valueEnd);
            if (buf[at] === 0x2c) {
              at = skipSpace(buf, at + 1);
              continue;
            }
            if (buf[at] === 0x7d) break;
            throw new ParseWhole();
          }
        }
        end = at + 1;
        view.push(element);
      }
      i = skipSpace(buf, end);
      if (buf[i] === 0x2c) {
        i = skipSpace(buf, i + 1);
        continue;
      }
      if (buf[i] === 0x5d) return { end: i + 1, view };
      throw new ParseWhole();
    }
  }

  document(): unknown {
    const start = skipSpace(this.buf, 0);
    this.top = start;
    const found = this.value(start);
    if (skipSpace(this.buf, found.end) !== this.buf.length) throw new ParseWhole();
    const document = 'built' in found ? found.built : JSON.parse(this.text(start, found.end));
    if (this.buf[start] !== 0x7b) return document;
    const scan: Scan = { raw: this.buf, large: [...this.large.values()], plainKeys: this.plainKeys, members: this.members, invalid: this.defer?.invalid ?? null, released: false, readBack: new Map(), unparsed: this.deferredAny };
    // The last of duplicate keys is the one JSON.parse keeps: a deferred value only where it was the last.
    for (const key of Object.keys(document as object)) {
      const value = (document as Record<string, unknown>)[key];
      // Read later (a translation after a first target passed through), it is one a second release may let go of.
      if (value instanceof DeferredValue) {
        lazyProperty(document as object, key, () => {
          const read = readMember(scan, value.start, value.end);
          scan.readBack.set(key, read);
          return read;
        });
      }
    }
    Object.defineProperty(document, SCAN, { value: scan, configurable: true });
    return document;
  }
}

/**
 * Which of `fields` (ASCII names) the key written at buf[start, end) (quotes included) is, or null: compared as
 * bytes, without making a string of every key of a conversation (an escaped key is decoded).
 */
function fieldNamed(buf: Buffer, start: number, end: number, fields: readonly string[]): string | null {
  if (hasBackslash(buf, start, end)) {
    const name = JSON.parse(buf.toString('utf8', start, end)) as string;
    return fields.includes(name) ? name : null;
  }
  const length = end - start - 2;
  for (const field of fields) {
    if (field.length !== length) continue;
    let i = 0;
    while (i < length && buf[start + 1 + i] === field.charCodeAt(i)) i++;
    if (i === length) return field;
  }
  return null;
}

/** A large top-level member left as bytes while its document is built. */
class DeferredValue {
  constructor(
    readonly start: number,
    readonly end: number,
  ) {}
}

/** How a body's large top-level members are read: parsed with it (default), or left as bytes until first read. */
export interface DeferOptions {
  /** What a member left as bytes throws when read if they are not JSON (the scan checks their structure only), or too costly to parse (TooDeep, TooMany). */
  readonly invalid: (err: SyntaxError | TooDeep | TooMany) => Error;
  /** Members whose shape the reader checks, by key, and the fields of their elements it reads (memberView). */
  readonly views?: Readonly<Record<string, readonly string[]>>;
}

/** What the scan of a large document learnt about its top level (hidden on the document: copies and JSON leave it out). */
interface Scan {
  readonly raw: Buffer;
  /** Its large members (16 KB or more), the last of duplicate keys. */
  readonly large: readonly LargeMember[];
  /** Whether every top-level key was written plainly and once. */
  readonly plainKeys: boolean;
  /** Every top-level member, in order (for a splice of a few: json-splice.ts). */
  readonly members: readonly TopMember[];
  /** Set when large members were left as bytes: their error when read. */
  readonly invalid: DeferOptions['invalid'] | null;
  /** Whether releaseLargeMembers let go of the large members once already. */
  released: boolean;
  /** Some member's bytes were never parsed (left as bytes, maybe replaced by a later duplicate key). */
  readonly unparsed: boolean;
  /** Members released and read back from the bytes since, by key: only these may go again (never a value set since). */
  readonly readBack: Map<string, unknown>;
}

const SCAN = Symbol('scan');

function scanOf(document: unknown): Scan | undefined {
  return typeof document === 'object' && document !== null ? (document as { [SCAN]?: Scan })[SCAN] : undefined;
}

/** Whether the scan of a large document found every top-level key written plainly and once (undefined: it was not scanned). */
export function scannedPlainKeys(document: unknown): boolean | undefined {
  return scanOf(document)?.plainKeys;
}

/** The top-level members the scan of a large document found (null: it was not scanned). */
export function scannedMembers(document: object): readonly TopMember[] | null {
  return scanOf(document)?.members ?? null;
}

/** A member's value, parsed from its bytes. */
function readMember(scan: Scan, start: number, end: number): unknown {
  try {
    return parseJsonBytes(scan.raw.subarray(start, end));
  } catch (err) {
    if (scan.invalid !== null && (err instanceof SyntaxError || err instanceof TooDeep || err instanceof TooMany)) throw scan.invalid(err);
    throw err;
  }
}

/** A top-level member this large (a conversation's messages, its tools) is one a pass-through may let go of. */
export const LARGE_MEMBER_BYTES = 16 * 1024;

/** A large top-level member's value, by its place in the document's bytes. */
interface LargeMember {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  /** What memberView shows of it, where the scan was asked to see it (DeferOptions.views). */
  readonly view: unknown[] | undefined;
}

/** Whether `document[key]` is a member left as bytes and not read yet. */
function unread(document: object, key: string): boolean {
  return typeof Object.getOwnPropertyDescriptor(document, key)?.get === 'function';
}

/**
 * Whether a document read with deferred members (parseJsonBytes with DeferOptions) has some its
 * structure alone was checked for: bytes that may still not be valid JSON (a control character
 * in a string, a bad escape, a malformed number).
 */
export function hasDeferredMembers(document: unknown): boolean {
  const scan = scanOf(document);
  return scan !== undefined && scan.invalid !== null && scan.large.length > 0;
}

/**
 * Whether some of the document's bytes were never parsed: a member left as bytes, even one a later
 * duplicate key replaced (then not in the document, but still in its bytes): bytes to check before
 * they stand anywhere as JSON.
 */
export function hasUncheckedBytes(document: unknown): boolean {
  const scan = scanOf(document);
  return scan !== undefined && scan.invalid !== null && (scan.large.length > 0 || scan.unparsed);
}

/**
 * `document[key]` as a check of its shape sees it, without parsing a member left as bytes: the
 * value itself, unless it is such a member not read yet. That one, where the scan was asked to see
 * it (DeferOptions.views), comes as an array of its elements' kinds: for an object element, an
 * object with only the fields asked for (strings, numbers, booleans and null as their values, a
 * string over VIEWED_TEXT_MAX_BYTES as LONG_TEXT; an object or array as an empty one), for any
 * other element, `null`; the last of duplicate keys
 * counts, as JSON.parse has it. Any other, as its kind only: an empty array or object, or `''`
 * for a string.
 */
export function memberView(document: object, key: string): unknown {
  const scan = scanOf(document);
  const member = scan?.invalid != null && unread(document, key) ? scan.large.find((large) => large.key === key) : undefined;
  if (scan === undefined || member === undefined) return (document as Record<string, unknown>)[key];
  if (member.view !== undefined) return member.view;
  const first = scan.raw[member.start];
  return first === 0x5b ? [] : first === 0x7b ? {} : first === QUOTE ? '' : readMember(scan, member.start, member.end);
}

/**
 * Lets go of the parsed values of `document`'s large top-level members (those parseJsonBytes
 * found, and read since if they were left as bytes), and of the same values in `copies` of it:
 * each becomes a property that parses its bytes again when it is next read, and keeps that value.
 * A request passed through as the client's bytes is done with them once it is sent, but it lives
 * as long as its answer: a 1 MB conversation's tree (about three times its size in objects) would
 * outlive young collections and be promoted, and twenty of them in flight kept the old generation
 * busy. Let go of, it dies young. Again after a member was read back (a request that moved to
 * another target after its first was sent); never a member set since.
 */
export function releaseLargeMembers(document: object, copies: readonly object[] = []): void {
  const scan = scanOf(document);
  if (scan === undefined) return;
  const first = !scan.released;
  scan.released = true;
  for (const { key, start, end } of scan.large) {
    if (!Object.hasOwn(document, key) || unread(document, key)) continue;
    const value = (document as Record<string, unknown>)[key];
    if (!first && (!scan.readBack.has(key) || scan.readBack.get(key) !== value)) continue;
    const reparse = (): unknown => readMember(scan, start, end);
    for (const copy of copies) if (copy !== document && Object.hasOwn(copy, key) && (copy as Record<string, unknown>)[key] === value) lazyProperty(copy, key, reparse);
    lazyProperty(document, key, () => {
      const read = reparse();
      scan.readBack.set(key, read);
      return read;
    });
  }
  // What was read back is let go of now, or was replaced: either way not kept here.
  scan.readBack.clear();
}

/**
 * A shallow copy of `document` (what parseJsonBytes made of a body) in which its members left as
 * bytes and not read yet stay unread: a key's model map changes `model`, and the conversation is
 * parsed only if something reads it (a translation), on the copy or the document, once for both.
 */
export function shallowCopy<T extends object>(document: T): T {
  const copy = {};
  const source = document as Readonly<Record<string, unknown>>;
  for (const key of Object.keys(document)) {
    if (unread(document, key)) lazyProperty(copy, key, () => source[key]);
    // Defined, not assigned: a member named __proto__ is data, as JSON.parse and a spread make it.
    else Object.defineProperty(copy, key, { value: source[key], writable: true, enumerable: true, configurable: true });
  }
  return copy as T;
}

/** Whether `copy` (made by shallowCopy) still has `key` as it came, not read: then it holds what the document holds. */
export function copiedUnread(copy: object, key: string): boolean {
  return unread(copy, key);
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
export function parseJsonBytes(raw: Buffer, pieceBytes = PIECE_BYTES, defer: DeferOptions | null = null): unknown {
  if (raw.length <= pieceBytes) {
    const value: unknown = JSON.parse(raw.toString('utf8'));
    // Held to the large bodies' limits too (a 40 KB body can nest 20,000 deep); each level takes
    // two bytes, so a body this short can reach none of them.
    const costly = raw.length <= 2 * MAX_DEPTH ? null : tooCostly(raw);
    if (costly !== null) throw costly;
    return value;
  }
  try {
    return new PieceParser(raw, pieceBytes, defer).document();
  } catch (err) {
    // Whatever the scan found wrong (or a piece's parse), JSON.parse of the whole has the final
    // word: its error message, or its value should the scan have been stricter than JSON.
    if (err instanceof ParseWhole || err instanceof SyntaxError || err instanceof RangeError) {
      const costly = tooCostly(raw);
      if (costly !== null) throw costly;
      return JSON.parse(raw.toString('utf8'));
    }
    throw err;
  }
}
