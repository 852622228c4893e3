/**
 * Takes a real key out of a provider's bytes as they arrive: anything a provider sends may reach
 * a client or a log, and a provider knows the key it was sent. One native search per read. A key
 * split across two reads is caught by holding back a tail that could be its start, until the next
 * read; an SSE event ends in "\n\n", which starts no key, so a stream is practically never held.
 *
 * Inside JSON a key may also be written with escapes (`\u0073k-…`, `\/`): the client's JSON
 * parser, and the log's, would decode it. A read holding a `\u` is also searched for the key
 * spelled that way (a regular expression built from the key), and a tail that could start such a
 * spelling is held back too.
 */
import { isHex } from '../formats/json-bytes.js';

const REDACTED = Buffer.from('[redacted]');
const EMPTY = Buffer.alloc(0);
/** Shorter keys are test values: replacing them would mangle ordinary text. */
const MIN_KEY_LENGTH = 8;

const BACKSLASH = 0x5c;
/** What a key spelled with escapes holds (`\/` only for a key with a slash). */
const ESCAPE = Buffer.from('\\u', 'latin1');
const ESCAPED_SLASH = Buffer.from('\\/', 'latin1');

export class KeyScrubber {
  private readonly key: Buffer | null;
  /**
   * The key with any of its characters escaped as JSON may escape it, in latin1 text: built on
   * the first read that holds an escape (built for every request, it cost 74–90 µs with a
   * 164-character key, and few reads hold one).
   */
  private escaped: RegExp | null = null;
  private readonly slash: boolean;
  private carry: Buffer | null = null;
  /** Whether what was passed on ends with an odd run of backslashes: the next `\u` is then no escape. */
  private oddBackslashes = false;

  constructor(apiKey: string) {
    this.key = apiKey.length >= MIN_KEY_LENGTH ? Buffer.from(apiKey, 'latin1') : null;
    this.slash = apiKey.includes('/');
  }

  /** The bytes of this read that can be passed on, the key replaced wherever it occurs whole. */
  push(read: Buffer): Buffer {
    const key = this.key;
    if (key === null) return read;
    let data = this.carry === null ? read : Buffer.concat([this.carry, read]);
    this.carry = null;
    if (data.indexOf(key) !== -1) data = replaceAll(data, key);
    // Most reads hold no \u at all (a `\n` in text is no concern): one more native search.
    const escaped = data.indexOf(ESCAPE) !== -1 || (this.slash && data.indexOf(ESCAPED_SLASH) !== -1);
    if (escaped) data = replaceEscaped(data, (this.escaped ??= new RegExp([...key].map(spellings).join(''), 'g')), this.oddBackslashes);
    // A tail spelling the key's start with an escape holds one, or ends with its backslash.
    const hold = Math.max(startOfKeyAtEnd(data, key), escaped || data[data.length - 1] === BACKSLASH ? startOfEscapedKeyAtEnd(data, key) : 0);
    const passed = hold === 0 ? data : data.subarray(0, data.length - hold);
    if (hold > 0) this.carry = data.subarray(data.length - hold);
    this.oddBackslashes = oddBackslashesAtEnd(passed, this.oddBackslashes);
    return passed;
  }

  /** What was held back, at the end of the body (it was not the key's start after all). */
  flush(): Buffer {
    const rest = this.carry ?? EMPTY;
    this.carry = null;
    return rest;
  }
}

function replaceAll(data: Buffer, key: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = data.indexOf(key); at !== -1; at = data.indexOf(key, from)) {
    parts.push(data.subarray(from, at), REDACTED);
    from = at + key.length;
  }
  parts.push(data.subarray(from));
  return Buffer.concat(parts);
}

/** How many bytes at the end of `data` are a proper prefix of `key` (0 almost always, found in one lookup). */
function startOfKeyAtEnd(data: Buffer, key: Buffer): number {
  if (data.length === 0 || key.indexOf(data[data.length - 1] as number) === -1) return 0;
  for (let length = Math.min(key.length - 1, data.length); length > 0; length--) {
    if (data.compare(key, 0, length, data.length - length) === 0) return length;
  }
  return 0;
}

/**
 * The ways JSON may write one character of a key, as a regular expression: the character itself,
 * a `\u` escape with either case of each hex digit, and `\/` for a slash.
 */
function spellings(code: number): string {
  const character = String.fromCharCode(code).replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  const hex = [...code.toString(16).padStart(4, '0')].map((digit) => (/[a-f]/.test(digit) ? `[${digit}${digit.toUpperCase()}]` : digit)).join('');
  return `(?:${character}|\\\\u${hex}${code === 0x2f ? '|\\\\/' : ''})`;
}

/**
 * `data` with every spelling of the key replaced, except one whose first backslash is itself
 * escaped (`\\u0073k…` is a backslash and text, not the key; replacing it would break the JSON).
 * `oddBefore`: what came before `data` ends with an odd run of backslashes.
 */
function replaceEscaped(data: Buffer, escaped: RegExp, oddBefore: boolean): Buffer {
  const text = data.toString('latin1');
  const parts: string[] = [];
  let from = 0;
  escaped.lastIndex = 0;
  for (let match = escaped.exec(text); match !== null; match = escaped.exec(text)) {
    if (escapedBackslashAt(text, match.index, oddBefore)) {
      escaped.lastIndex = match.index + 1; // a real spelling may still start inside it
      continue;
    }
    parts.push(text.slice(from, match.index), '[redacted]');
    from = escaped.lastIndex;
  }
  if (parts.length === 0) return data;
  parts.push(text.slice(from));
  return Buffer.from(parts.join(''), 'latin1');
}

/** Whether the character at `at` is a backslash that an odd run of backslashes before it escapes. */
function escapedBackslashAt(text: string, at: number, oddBefore: boolean): boolean {
  if (text.charCodeAt(at) !== BACKSLASH) return false;
  let run = 0;
  while (at - 1 - run >= 0 && text.charCodeAt(at - 1 - run) === BACKSLASH) run++;
  const odd = run % 2 === 1;
  return at - run === 0 ? odd !== oddBefore : odd;
}

/** Whether `bytes`, after what ended with an odd run of backslashes or not, end with an odd run. */
function oddBackslashesAtEnd(bytes: Buffer, oddBefore: boolean): boolean {
  let run = 0;
  while (run < bytes.length && bytes[bytes.length - 1 - run] === BACKSLASH) run++;
  const odd = run % 2 === 1;
  return run === bytes.length ? odd !== oddBefore : odd;
}

/**
 * How many bytes at the end of `data` could start the key spelled with escapes (and were not the
 * key itself): from each start that could be its first character, the key's characters are
 * matched one by one, literally or as an escape, up to the end of the data.
 */
function startOfEscapedKeyAtEnd(data: Buffer, key: Buffer): number {
  const longest = Math.min(data.length, key.length * 6 - 1);
  for (let start = data.length - longest; start < data.length; start++) {
    const first = data[start] as number;
    if (first !== BACKSLASH && first !== key[0]) continue;
    if (prefixOfEscapedKey(data, start, key)) return data.length - start;
  }
  return 0;
}

function prefixOfEscapedKey(data: Buffer, start: number, key: Buffer): boolean {
  let at = start;
  for (let k = 0; k < key.length; k++) {
    if (at === data.length) return true;
    const code = key[k] as number;
    if (data[at] === code) {
      at++;
      continue;
    }
    if (data[at] !== BACKSLASH) return false;
    // An escape of this character, whole or cut off by the end of the data.
    const spelled = code === 0x2f && data[at + 1] === 0x2f ? '\\/' : `\\u${code.toString(16).padStart(4, '0')}`;
    for (let i = 0; i < spelled.length; i++) {
      if (at + i === data.length) return true;
      const byte = data[at + i] as number;
      const want = spelled.charCodeAt(i);
      // The hex digits in either case (0x20 is the case bit of A-F; digits have it already).
      if (byte !== want && !(i >= 2 && isHex(byte) && (byte | 0x20) === want)) return false;
    }
    at += spelled.length;
  }
  return false; // the whole key: already replaced, nothing to hold
}
