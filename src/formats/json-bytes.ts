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

export function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The index after the closing quote of the string that opens at `start`. */
export function stringEnd(buf: Buffer, start: number): number {
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

/** The index after the value that starts at `start` of a JSON text a parser accepted. */
export function valueEnd(buf: Buffer, start: number): number {
  const c = buf[start];
  if (c === QUOTE) return stringEnd(buf, start);
  if (c !== 0x7b && c !== 0x5b) return scalarEnd(buf, start);
  let depth = 0;
  for (let i = start; i < buf.length; i++) {
    const b = buf[i];
    if (b === QUOTE) i = stringEnd(buf, i) - 1;
    else if (b === 0x7b || b === 0x5b) depth++;
    else if ((b === 0x7d || b === 0x5d) && --depth === 0) return i + 1;
  }
  throw new ParseWhole();
}

/** A top-level member of an object's bytes: where its key starts, and its value's extent. */
export interface TopMember {
  readonly key: string;
  readonly keyStart: number;
  readonly start: number;
  readonly end: number;
}

export function skipSpace(buf: Buffer, i: number): number {
  while (i < buf.length && isSpace(buf[i] as number)) i++;
  return i;
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
              element[name] = c === 0x7b ? {} : c === 0x5b ? [] : c === QUOTE && !hasBackslash(buf, valueStart, valueEnd) ? this.shortText(valueStart + 1, valueEnd - 1) : JSON.parse(this.text(valueStart, valueEnd));
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

function hasBackslash(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] === BACKSLASH) return true;
  return false;
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
 * object with only the fields asked for (strings, numbers, booleans and null as their values; an
 * object or array as an empty one), for any other element, `null`; the last of duplicate keys
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

/** What the JSON texts of one request parsed so far have used of MAX_CONTAINERS and MAX_VALUES. */
export interface JsonSpent {
  containers: number;
  values: number;
}

/**
 * JSON.parse of a JSON text a request carries as a string (a chat tool call's arguments, which
 * Anthropic takes as an object), held to the body's limits: the body's own do not reach into its
 * strings, and 18 MB of `[[[…]]]` there held the loop for 6 s. `spent`: shared by every such text
 * of a request (thirty calls of 199,000 objects each held it 2–4 s). Throws TooDeep or TooMany,
 * or JSON.parse's SyntaxError.
 */
export function parseJsonText(text: string, spent: JsonSpent = { containers: 0, values: 0 }): unknown {
  // Each level takes two characters: a text this short can reach none of the limits.
  return parseBounded(text, 2 * MAX_DEPTH, spent, BODY_LIMITS);
}

/** A text shorter than this parses in a few milliseconds whatever it holds (64 KB of `{},`: ~22,000 objects). */
const CHEAP_TEXT_BYTES = 64 * 1024;

/** How much a JSON text may hold before parsing it whole would hold the loop too long. */
interface JsonLimits {
  readonly maxContainers: number;
  readonly maxValues: number;
  readonly maxMembers: number;
}

/**
 * A provider's answer may hold more than a request: a long answer with `logprobs` is ~43 objects
 * and arrays and ~170 values per token at `top_logprobs: 20` (each token's `bytes` a value a byte),
 * ~33 and ~7 bytes each: any such answer within the 64 MiB a whole answer may have passes. These
 * still bound a parse to about a second (2.5 million `{}`: 1.2 s here; 12 million `0`: 1.1 s),
 * not the 29 s of 60 MB of `{},`.
 */
const ANSWER_LIMITS: JsonLimits = { maxContainers: 2_500_000, maxValues: 12_000_000, maxMembers: 100_000 };

/**
 * JSON.parse of what a provider sent (an answer, a stream event, a tool call's arguments), held to
 * a body's limits once long enough to reach past them: an answer of 60 MB of `{},` held the loop,
 * and every other tenant's requests, for 29 s. Throws TooDeep or TooMany, or JSON.parse's SyntaxError.
 */
export function parseProviderJson(data: string | Buffer): unknown {
  return parseBounded(data, CHEAP_TEXT_BYTES, { containers: 0, values: 0 }, ANSWER_LIMITS);
}

/**
 * JSON.parse of `data` once tooCostly says it may be parsed whole. Texts no longer than `cheap`
 * could reach only its depth limit (a provider's 780-byte answer nested 300 deep made the log
 * unreadable to jq): scanned only when they hold enough opening brackets to, and those too short
 * to reach MAX_DEPTH not at all.
 */
function parseBounded(data: string | Buffer, cheap: number, spent: JsonSpent, limits: JsonLimits): unknown {
  if (data.length > cheap || (data.length > 2 * MAX_DEPTH && !fewBrackets(data))) {
    const costly = tooCostly(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, spent, limits);
    if (costly !== null) throw costly;
  }
  return JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
}

/** Whether a text holds no more opening brackets, in strings or not, than MAX_DEPTH (then it cannot nest deeper): a provider's event holds a handful, found by native searches. */
function fewBrackets(data: string | Buffer): boolean {
  const text = typeof data === 'string' ? data : data.toString('latin1'); // brackets are ASCII
  let count = 0;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) if (++count > MAX_DEPTH) return false;
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) if (++count > MAX_DEPTH) return false;
  return true;
}

/**
 * No body nests deeper than this. The log holds each body, a few levels further in, and common
 * readers of it stop at a depth: jq 1.6 (Debian 12's) at 256 levels, so a client could make the
 * log unreadable with a 60 KB `[[[…]]]`. JSON.parse of millions of nested arrays (an 18 MB
 * `[[[…]]]`) also held the loop for 4–6 s. No API request nests so deep (a tool's schema: tens of
 * levels; OpenAI's structured outputs allow 10).
 */
export const MAX_DEPTH = 128;

export class TooDeep extends Error {
  constructor(readonly max: number) {
    super(`it nests deeper than ${max} levels`);
  }
}

/**
 * A large body parsed whole holds no more objects and arrays than this, and no more values in all
 * than MAX_VALUES. JSON.parse of an 18 MB `[{},{},…]` (6 million objects) held the loop for
 * 2.3–3.9 s, most of it collecting them, and of 10 MB of `0,` 0.48 s; the 1 MB agent fixture holds
 * 1,240 objects and arrays, so a 20 MB conversation some tens of thousands.
 */
export const MAX_CONTAINERS = 200_000;
export const MAX_VALUES = 1_000_000;
/**
 * No object of a request has more members than this, whatever its size: each member of a large
 * object costs ~0.8 µs to parse (3 µs at the top level, where the scan reads each key), and
 * 480,000 long keys held the loop 2.5 s. OpenAI caps a structured output's schema at 5,000
 * properties in all, and metadata at 16.
 */
export const MAX_OBJECT_MEMBERS = 10_000;

const BODY_LIMITS: JsonLimits = { maxContainers: MAX_CONTAINERS, maxValues: MAX_VALUES, maxMembers: MAX_OBJECT_MEMBERS };

export class TooMany extends Error {
  constructor(
    readonly max: number,
    readonly what: 'objects and arrays' | 'values' | 'members in one object',
  ) {
    super(`it holds more than ${max} ${what}`);
  }
}

/**
 * Why the JSON text in `buf` would hold the loop too long to parse whole (nested deeper than
 * MAX_DEPTH, too many containers or values), or null (also for a text that is not JSON: the parse
 * says why). Values are counted as containers and commas: never more than there are.
 */
function tooCostly(buf: Buffer, spent: JsonSpent = { containers: 0, values: 0 }, limits: JsonLimits = BODY_LIMITS): TooDeep | TooMany | null {
  let depth = 0;
  let { containers, values } = spent;
  const { maxContainers, maxValues, maxMembers } = limits;
  /** Members of the open container at each depth (colons: only an object's members have one). */
  const members = new Int32Array(MAX_DEPTH + 2);
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i] as number;
    if (c === QUOTE) {
      try {
        i = stringEnd(buf, i) - 1;
      } catch {
        return null; // a string that never ends
      }
    } else if (c === 0x2c) {
      if (++values > maxValues) return new TooMany(maxValues, 'values');
    } else if (c === 0x3a) {
      if (++(members[depth] as number) > maxMembers) return new TooMany(maxMembers, 'members in one object');
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_DEPTH) return new TooDeep(MAX_DEPTH);
      members[depth] = 0;
      if (++containers > maxContainers) return new TooMany(maxContainers, 'objects and arrays');
      if (++values > maxValues) return new TooMany(maxValues, 'values');
    } else if ((c === 0x7d || c === 0x5d) && depth > 0) depth--;
  }
  spent.containers = containers;
  spent.values = values;
  return null;
}

/**
 * Whether every key of the top level of a valid JSON object (`raw`, which a parser accepted) is
 * written plainly (no escape) and once. Where one is not, parsers may disagree on what the body
 * says (which of two keys wins; a key spelled with `\u` escapes decodes to a name a byte search
 * does not see): a gateway that checked the body as it parsed it must send what it parsed.
 * `parsed`: the object parseJsonBytes made of `raw`, whose scan of a large body already knows.
 */
export function plainUniqueKeys(raw: Buffer, parsed?: object): boolean {
  const known = scanOf(parsed)?.plainKeys;
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

/** A key written twice in one object: where the object is, and the byte offsets of both. */
export interface DuplicateKey {
  /** The object's place from the top: member names and array indexes. */
  readonly path: readonly (string | number)[];
  readonly key: string;
  readonly first: number;
  readonly second: number;
}

/**
 * Every key written twice in one object, at any depth, of `raw`, a valid JSON text (which
 * JSON.parse resolves silently: the last wins). Keys are compared decoded (`"a"` and `"\u0061"`
 * are one key). For configuration files, small: clarity over speed.
 */
export function duplicateKeys(raw: Buffer): DuplicateKey[] {
  interface Open {
    /** The container this one is a member of (its path is only made for a duplicate: a copy per level was quadratic in the depth). */
    readonly parent: Open | null;
    /** An object's keys and where each was first written; null for an array. */
    readonly seen: Map<string, number> | null;
    /** The member whose value comes next: its key (object) or index (array). */
    member: string | number;
    atKey: boolean;
  }
  const pathOf = (open: Open): (string | number)[] => {
    const path: (string | number)[] = [];
    for (let at = open.parent; at !== null; at = at.parent) path.push(at.member);
    return path.reverse();
  };
  const found: DuplicateKey[] = [];
  const open: Open[] = [];
  for (let i = skipSpace(raw, 0); i < raw.length; i++) {
    const c = raw[i] as number;
    const top = open.at(-1);
    if (c === QUOTE) {
      const end = stringEnd(raw, i);
      if (top?.seen != null && top.atKey) {
        const key = JSON.parse(raw.toString('utf8', i, end)) as string;
        const first = top.seen.get(key);
        if (first === undefined) top.seen.set(key, i);
        else found.push({ path: pathOf(top), key, first, second: i });
        top.member = key;
        top.atKey = false;
      }
      i = end - 1;
    } else if (c === 0x7b || c === 0x5b) {
      open.push({ parent: top ?? null, seen: c === 0x7b ? new Map() : null, member: 0, atKey: c === 0x7b });
    } else if (c === 0x7d || c === 0x5d) {
      open.pop();
    } else if (c === 0x2c && top !== undefined) {
      if (top.seen === null) top.member = (top.member as number) + 1;
      else top.atKey = true;
    }
  }
  return found;
}

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

/** Whether a provider's text is JSON that parseProviderJson would take: past an answer's limits it is not looked at further (a 16 MB `[[[…]]]` took the walk a second). */
export function isProviderJson(raw: Buffer): boolean {
  return tooCostly(raw, { containers: 0, values: 0 }, ANSWER_LIMITS) === null && isJsonText(raw);
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
export function indentJsonBytes(raw: Buffer, level: number | null = 0, known = false): Buffer[] | null {
  const out = new Pieces(Math.min(CHUNK_BYTES, raw.length + (level !== null ? raw.length >> 2 : 0) + 64));
  let walked: number;
  try {
    walked = walk(raw, out, level, prettyLimit(raw.length), known);
  } catch (err) {
    if (!(err instanceof ParseWhole)) throw err;
    walked = NOT_JSON;
  }
  if (walked === GREW) return indentJsonBytes(raw, null, known);
  return walked === LAID_OUT ? out.result() : null;
}
