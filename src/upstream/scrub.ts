/**
 * Takes a real key out of a provider's bytes as they arrive: anything a provider sends may reach
 * a client or a log, and a provider knows the key it was sent. One native search per read. A key
 * split across two reads is caught by holding back a tail that could be its start, until the next
 * read; an SSE event ends in "\n\n", which starts no key, so a stream is practically never held.
 *
 * Inside JSON a key may also be written with escapes (`\u0073k-…`, `\/`, and `\"` or `\\` for a key
 * holding a quote or a backslash): the client's JSON parser, and the log's, would decode it. A read
 * holding such an escape is also searched for the key spelled that way, and a tail that could
 * start such a spelling is held back too: one matcher (escapedKeyEnd) for both.
 */

const REDACTED = Buffer.from('[redacted]');
const EMPTY = Buffer.alloc(0);
/** Shorter keys are test values: replacing them would mangle ordinary text (warned of at start: keys.ts). */
export const MIN_KEY_LENGTH = 8;

const BACKSLASH = 0x5c;
/** What a key spelled with escapes holds (`\/` only for a key with a slash). */
const ESCAPE = Buffer.from('\\u', 'latin1');
const ESCAPED_SLASH = Buffer.from('\\/', 'latin1');

/** Takes real keys out of a provider's bytes as they arrive (push each read, flush at the end). */
export interface ByteScrubber {
  push(read: Buffer): Buffer;
  flush(): Buffer;
}

/**
 * A scrubber for every one of `apiKeys`: one native search per key per read (a key with one real
 * key pays what it did). Longest first: a key that holds another is replaced whole.
 */
export function keysScrubber(apiKeys: readonly string[]): ByteScrubber {
  if (apiKeys.length === 1) return new KeyScrubber(apiKeys[0] as string);
  const real = [...new Set(apiKeys)].filter((key) => key.length >= MIN_KEY_LENGTH).sort((a, b) => b.length - a.length);
  return real.length <= 1 ? new KeyScrubber(real[0] ?? '') : new KeysScrubber(real.map((key) => new KeyScrubber(key)));
}

/** Each key's scrubber in turn; each holds back its own tail that could start its key. */
class KeysScrubber implements ByteScrubber {
  constructor(private readonly scrubbers: readonly KeyScrubber[]) {}

  push(read: Buffer): Buffer {
    let data = read;
    for (const scrubber of this.scrubbers) data = scrubber.push(data);
    return data;
  }

  flush(): Buffer {
    let data = EMPTY;
    for (const scrubber of this.scrubbers) data = Buffer.concat([scrubber.push(data), scrubber.flush()]);
    return data;
  }
}

export class KeyScrubber implements ByteScrubber {
  private readonly key: Buffer | null;
  private readonly slash: boolean;
  /** The key holds a character JSON must escape (`"` or `\`): its JSON spelling always has a backslash. */
  private readonly quoted: boolean;
  private carry: Buffer | null = null;
  /** Whether what was passed on ends with an odd run of backslashes: the next `\u` is then no escape. */
  private oddBackslashes = false;

  constructor(apiKey: string) {
    this.key = apiKey.length >= MIN_KEY_LENGTH ? Buffer.from(apiKey, 'latin1') : null;
    this.slash = apiKey.includes('/');
    this.quoted = apiKey.includes('"') || apiKey.includes('\\');
  }

  /** The bytes of this read that can be passed on, the key replaced wherever it occurs whole. */
  push(read: Buffer): Buffer {
    const key = this.key;
    if (key === null) return read;
    let data = this.carry === null ? read : Buffer.concat([this.carry, read]);
    this.carry = null;
    if (data.indexOf(key) !== -1) data = replaceAll(data, key);
    // Most reads hold no \u at all (a `\n` in text is no concern): one more native search.
    const escaped = data.indexOf(ESCAPE) !== -1 || (this.slash && data.indexOf(ESCAPED_SLASH) !== -1) || (this.quoted && data.indexOf(BACKSLASH) !== -1);
    if (escaped) data = replaceEscaped(data, key, this.oddBackslashes);
    // A tail spelling the key's start with an escape holds one, or ends with its backslash.
    const hold = Math.max(startOfKeyAtEnd(data, key), escaped || data[data.length - 1] === BACKSLASH ? startOfEscapedKeyAtEnd(data, key) : 0);
    const passed = hold === 0 ? data : data.subarray(0, data.length - hold);
    if (hold > 0) this.carry = data.subarray(data.length - hold);
    this.oddBackslashes = oddRunBefore(passed, passed.length, this.oddBackslashes);
    return passed;
  }

  /** What was held back, at the end of the body (it was not the key's start after all). */
  flush(): Buffer {
    const rest = this.carry ?? EMPTY;
    this.carry = null;
    return rest;
  }
}

/**
 * What to search text for, for these real keys: each key, and its JSON spelling where that differs
 * (a key holding a quote or a backslash, in a frame already written as JSON). Made once per
 * request or walk, not per string. `minLength`: shorter keys are test values (MIN_KEY_LENGTH).
 */
export function keySpellings(apiKeys: readonly string[], minLength = MIN_KEY_LENGTH): readonly string[] {
  const spellings: string[] = [];
  for (const key of apiKeys) {
    if (key.length < minLength) continue;
    spellings.push(key);
    const spelled = JSON.stringify(key).slice(1, -1);
    if (spelled !== key) spellings.push(spelled);
  }
  return spellings;
}

/**
 * Text the gateway made whole from a provider's pieces (a translation's joined text, a tool call's
 * input decoded from the JSON in its arguments, the log's assembled answer): a key the provider
 * split across pieces, or spelled with escapes inside a JSON string, is whole only here, where no
 * byte scrubber saw it. `spellings`: from keySpellings.
 */
export function textWithoutKeys(text: string, spellings: readonly string[]): string {
  let clean = text;
  for (const spelling of spellings) if (clean.includes(spelling)) clean = clean.split(spelling).join('[redacted]');
  return clean;
}

/**
 * textWithoutKeys for a great many keys at once (a keys file's, for its problems): each place in a
 * text is looked up by the lengths the spellings have, so the cost is the text's length times
 * those few lengths, not the number of keys (each key in turn took minutes for 20,000). Where
 * spellings overlap, all of each goes.
 */
export function manyKeysRedactor(spellings: readonly string[]): (text: string) => string {
  const known = new Set(spellings);
  const lengths = [...new Set(spellings.map((spelling) => spelling.length))].sort((a, b) => b - a);
  return (text) => {
    const runs: Array<[number, number]> = [];
    for (let i = 0; i < text.length; i++) {
      const length = lengths.find((candidate) => i + candidate <= text.length && known.has(text.slice(i, i + candidate)));
      if (length !== undefined) runs.push([i, i + length]);
    }
    return runs.length === 0 ? text : withoutRuns(text, runs);
  };
}

/** `text` with each of `runs` (overlapping or not) replaced by one `[redacted]`. */
export function withoutRuns(text: string, runs: Array<[number, number]>): string {
  runs.sort((a, b) => a[0] - b[0]);
  let out = '';
  let kept = 0;
  for (const [start, end] of runs) {
    if (end <= kept) continue;
    if (start >= kept) out += `${text.slice(kept, start)}[redacted]`;
    kept = end;
  }
  return out + text.slice(kept);
}

/** Deeper than this, a value is checked as its JSON text, and left out if that holds a key. */
const MAX_WALK_DEPTH = 64;
const OMITTED = '[omitted: nested too deeply]';

/**
 * `value` with every string (and member name) that holds a real key copied without it: the value
 * itself when none does, so the common case copies nothing.
 */
export function withoutKeys<T>(value: T, apiKeys: readonly string[]): T {
  return withoutSpellings(value, keySpellings(apiKeys), 0);
}

function withoutSpellings<T>(value: T, spellings: readonly string[], depth: number): T {
  if (typeof value === 'string') return textWithoutKeys(value, spellings) as T;
  if (typeof value !== 'object' || value === null) return value;
  // Plain data only: an instance of a class (the log's cut or raw bodies) keeps its kind, and its own rules.
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null && !Array.isArray(value)) return value;
  if (depth >= MAX_WALK_DEPTH) {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      return OMITTED as T;
    }
    return text !== undefined && textWithoutKeys(text, spellings) !== text ? (OMITTED as T) : value;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const clean = withoutSpellings(item, spellings, depth + 1);
      if (clean !== item) (copy ??= value.slice())[i] = clean;
    }
    return (copy ?? value) as T;
  }
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | null = null;
  for (const name of Object.keys(record)) {
    const item = record[name];
    const clean = withoutSpellings(item, spellings, depth + 1);
    const cleanName = textWithoutKeys(name, spellings);
    if (clean === item && cleanName === name) continue;
    if (copy === null) copy = { ...record };
    if (cleanName !== name) delete copy[name];
    // Defined, not assigned: a member named "__proto__" stays a member, as JSON.parse made it.
    Object.defineProperty(copy, cleanName, { value: clean, writable: true, enumerable: true, configurable: true });
  }
  return (copy ?? value) as T;
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

/** escapedKeyEnd: the data ends inside a spelling of the key. */
const CUT = -2;

/** The value of a hex digit in either case, or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
}

/**
 * Where the key, as JSON may spell it, ends when it starts at `start`: each of its characters
 * itself, a `\u` escape (hex digits in either case), or `\/` for a slash. CUT when the data ends
 * inside such a spelling; -1 when none starts there.
 */
function escapedKeyEnd(data: Buffer, start: number, key: Buffer): number {
  let at = start;
  for (let k = 0; k < key.length; k++) {
    if (at === data.length) return CUT;
    const code = key[k] as number;
    // A backslash in a JSON string always starts an escape: the key's own is spelled `\\`.
    if (data[at] === code && code !== BACKSLASH) {
      at++;
      continue;
    }
    if (data[at] !== BACKSLASH) return -1;
    if (at + 1 === data.length) return CUT;
    // `\/` for a slash; `\"` and `\\` for the quote and backslash JSON must escape.
    if ((code === 0x2f || code === 0x22 || code === BACKSLASH) && data[at + 1] === code) {
      at += 2;
      continue;
    }
    if (data[at + 1] !== 0x75 /* u */) return -1;
    // Four hex digits of the character's code; cut short, the digits so far must start it.
    let value = 0;
    for (let i = 2; i < 6; i++) {
      if (at + i === data.length) return value === code >> (4 * (6 - i)) ? CUT : -1;
      const digit = hexDigit(data[at + i] as number);
      if (digit === -1) return -1;
      value = value * 16 + digit;
    }
    if (value !== code) return -1;
    at += 6;
  }
  return at;
}

/**
 * `data` with every spelling of the key replaced, except one whose first backslash is itself
 * escaped (`\\u0073k…` is a backslash and text, not the key; replacing it would break the JSON).
 * `oddBefore`: what came before `data` ends with an odd run of backslashes.
 */
function replaceEscaped(data: Buffer, key: Buffer, oddBefore: boolean): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  const first = key[0];
  for (let at = 0; at < data.length; at++) {
    const c = data[at];
    if (c !== BACKSLASH && c !== first) continue;
    const end = escapedKeyEnd(data, at, key);
    // An escaped backslash is no escape, but a real spelling may still start inside it.
    if (end < 0 || (c === BACKSLASH && oddRunBefore(data, at, oddBefore))) continue;
    parts.push(data.subarray(from, at), REDACTED);
    from = end;
    at = end - 1;
  }
  if (parts.length === 0) return data;
  parts.push(data.subarray(from));
  return Buffer.concat(parts);
}

/** Whether the run of backslashes right before `end` is odd (one that starts `bytes` goes on from what came before, odd or not). */
function oddRunBefore(bytes: Buffer, end: number, oddBefore: boolean): boolean {
  let run = 0;
  while (run < end && bytes[end - 1 - run] === BACKSLASH) run++;
  const odd = run % 2 === 1;
  return run === end ? odd !== oddBefore : odd;
}

/**
 * How many bytes at the end of `data` could start the key spelled with escapes (and were not the
 * key itself): the longest tail from which a spelling is cut off by the end of the data.
 */
function startOfEscapedKeyAtEnd(data: Buffer, key: Buffer): number {
  const longest = Math.min(data.length, key.length * 6 - 1);
  for (let start = data.length - longest; start < data.length; start++) {
    const first = data[start] as number;
    if ((first === BACKSLASH || first === key[0]) && escapedKeyEnd(data, start, key) === CUT) return data.length - start;
  }
  return 0;
}
