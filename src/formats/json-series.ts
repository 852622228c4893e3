/**
 * JSON.parse for a series of texts that mostly repeat the one before with a few strings changed: a
 * stream's events (every chat chunk is the one before with another `content`, and from OpenAI
 * another random `obfuscation`; every Messages text delta another `text`). Parsing each whole cost
 * a streamed answer's log a third of its gateway CPU (docs/performance.md); here a text that fits
 * the learned shape costs a few comparisons and a copy of the objects on the changed strings' paths.
 *
 * Exact, not a guess. A shape is learned from two texts that JSON.parse read and that differ only
 * inside a few string literals, each a member's value (not its name), opened by a quote that is
 * not escaped and holding no quote, backslash or control character in either text; their values
 * must differ in exactly as many strings, each string's two values being those literals'
 * characters, told apart by them. A later text made of the same bytes around other such strings
 * is the same sequence of JSON tokens with those strings changed, so its value is the first's with
 * them replaced: what JSON.parse returns for it, duplicate keys and `__proto__` members included.
 * Values share the parts that did not change with earlier ones: readers must not change them.
 */
import { parseProviderJson } from './json-limits.js';
import { isSpace } from './json-tokens.js';

/** Characters a string literal cannot hold as they are: with one of them a text is parsed whole. */
const NOT_PLAIN = /["\\\u0000-\u001f]/;

/** Texts longer than this are not compared for a shape (events are small; a large one is parsed whole). */
const LEARN_MAX_CHARS = 16 * 1024;

/** After this many texts in a row teach no shape, no more are tried. */
const MAX_FAILED_LESSONS = 8;

/** Strings a shape may change (a chunk's content and its obfuscation, with room to spare). */
const MAX_HOLES = 4;

/** Values compared no deeper than this (events are shallow; a deep one is parsed whole, never a stack overflow). */
const MAX_DEPTH = 32;

type Path = ReadonlyArray<string | number>;

interface Shape {
  /** The text around the changing strings' characters: `parts[0]` ends with the first's opening quote, each next part starts with a closing quote. */
  readonly parts: readonly string[];
  /** The value of the text the shape was learned from. */
  readonly value: unknown;
  /** Where the changing strings go in it. */
  readonly plan: Plan;
}

/**
 * The containers on the changing strings' paths, each with its members to replace: the index of
 * a string (in the order of the text), or the plan of a container below. A value is rebuilt in one
 * pass, each container on a path copied once (one copy per string copied the event twice).
 */
interface Plan {
  readonly members: ReadonlyArray<readonly [key: string | number, to: number | Plan]>;
}

export class JsonSeries {
  private shape: Shape | null = null;
  private lastText: string | null = null;
  private lastValue: unknown = undefined;
  private failedLessons = 0;

  /** What JSON.parse(text) returns (and throws what it throws; a text past an answer's limits, or nested too deep: parseProviderJson). */
  parse(text: string): unknown {
    if (this.shape !== null) {
      const value = fill(this.shape, text);
      if (value !== undefined) return value;
    }
    const value: unknown = parseProviderJson(text);
    if (this.lastText !== null && this.failedLessons < MAX_FAILED_LESSONS && text.length <= LEARN_MAX_CHARS && this.lastText.length <= LEARN_MAX_CHARS) {
      const learned = learn(this.lastText, this.lastValue, text, value);
      if (learned !== null) {
        this.shape = learned;
        this.failedLessons = 0;
      } else {
        this.failedLessons++;
      }
    }
    this.lastText = text;
    this.lastValue = value;
    return value;
  }
}

/** The value of `text` when it fits `shape`; undefined when it does not. */
function fill(shape: Shape, text: string): unknown {
  const parts = shape.parts;
  const first = parts[0] as string;
  if (text.slice(0, first.length) !== first) return undefined; // compared as slices: faster than startsWith here (V8 11-12)
  const strings: string[] = [];
  let at = first.length;
  for (let k = 1; k < parts.length; k++) {
    // A string without a quote ends at the next one; the part after it must follow.
    const close = text.indexOf('"', at);
    if (close === -1) return undefined;
    const string = text.slice(at, close);
    const part = parts[k] as string;
    if (NOT_PLAIN.test(string) || text.slice(close, close + part.length) !== part) return undefined;
    // A copy of a longer one: a slice would keep the whole event's text alive as long as the
    // answer holding it (V8 copies slices shorter than 13 characters itself).
    strings.push(string.length < 13 ? string : ` ${string}`.slice(1));
    at = close + part.length;
  }
  if (at !== text.length) return undefined;
  // A text that is one string (no container): the string is its value.
  return shape.plan.members.length === 0 ? strings[0] : rebuild(shape.value, shape.plan, strings);
}

/** The shape two parsed texts share, if they differ only in a few plain strings; else null. */
function learn(a: string, aValue: unknown, b: string, bValue: unknown): Shape | null {
  const parts: string[] = [];
  const holes: Array<{ a: string; b: string }> = [];
  // `i` in a and `j` in b: where the current common part starts (after the last hole's characters).
  let i = 0;
  let j = 0;
  for (;;) {
    let k = 0;
    while (i + k < a.length && j + k < b.length && a.charCodeAt(i + k) === b.charCodeAt(j + k)) k++;
    if (i + k === a.length && j + k === b.length) break;
    if (holes.length === MAX_HOLES) return null;
    // The difference must lie inside a string: its opening quote in this common part (not the
    // closing quote it starts with), not escaped; its characters run to the next quote in each text.
    const open = a.lastIndexOf('"', i + k - 1);
    if (open === -1 || open < i || (holes.length > 0 && open === i) || i + k === 0) return null;
    let backslashes = 0;
    while (a.charCodeAt(open - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 1) return null;
    const aClose = a.indexOf('"', i + k);
    const bClose = b.indexOf('"', j + k);
    if (aClose === -1 || bClose === -1) return null;
    const hole = { a: a.slice(open + 1, aClose), b: b.slice(j + (open + 1 - i), bClose) };
    if (NOT_PLAIN.test(hole.a) || NOT_PLAIN.test(hole.b)) return null;
    // A member's name changing is not a value changing.
    let after = aClose + 1;
    while (after < a.length && isSpace(a.charCodeAt(after))) after++;
    if (a.charCodeAt(after) === 0x3a) return null;
    parts.push(a.slice(i, open + 1));
    holes.push(hole);
    i = aClose;
    j = bClose;
  }
  if (holes.length === 0) return null; // the same text
  parts.push(a.slice(i));
  // The values must differ in exactly these strings, each found by its two values, and nowhere else.
  const changed: Array<{ path: Path; a: string; b: string }> = [];
  if (!differences(aValue, bValue, [], changed, 0) || changed.length !== holes.length) return null;
  const paths: Path[] = [];
  for (const hole of holes) {
    const matching = changed.filter((string) => string.a === hole.a && string.b === hole.b);
    if (matching.length !== 1) return null;
    paths.push((matching[0] as { path: Path }).path);
  }
  return { parts, value: aValue, plan: planOf(paths) };
}

/** The plan of strings at these paths (distinct, none inside another: each ends at a string); no members for the one empty path. */
function planOf(paths: readonly Path[]): Plan {
  const root: { members: Array<[string | number, number | Plan]> } = { members: [] };
  paths.forEach((path, index) => {
    let node = root;
    path.forEach((key, depth) => {
      if (depth === path.length - 1) {
        node.members.push([key, index]);
        return;
      }
      let below = node.members.find(([member, to]) => member === key && typeof to !== 'number');
      if (below === undefined) {
        below = [key, { members: [] }];
        node.members.push(below);
      }
      node = below[1] as typeof root;
    });
  });
  return root;
}

/**
 * Collects the strings two parsed values differ in (their paths and both values); false when they
 * differ in anything else, in the order of their keys (it shows in the log), or beyond MAX_DEPTH.
 */
function differences(a: unknown, b: unknown, path: Array<string | number>, changed: Array<{ path: Path; a: string; b: string }>, depth: number): boolean {
  if (a === b) return true;
  if (typeof a === 'string' && typeof b === 'string') {
    if (changed.length === MAX_HOLES) return false;
    changed.push({ path: [...path], a, b });
    return true;
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || depth === MAX_DEPTH) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  for (let i = 0; i < aKeys.length; i++) {
    const key = aKeys[i] as string;
    if (key !== bKeys[i]) return false;
    path.push(Array.isArray(a) ? i : key);
    const same = differences((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], path, changed, depth + 1);
    path.pop();
    if (!same) return false;
  }
  return true;
}

/** `value` with the plan's strings in place: the containers on their paths copied, the rest shared. */
function rebuild(value: unknown, plan: Plan, strings: readonly string[]): unknown {
  const copy = (Array.isArray(value) ? value.slice() : { ...(value as Record<string, unknown>) }) as Record<string | number, unknown>;
  for (const [key, to] of plan.members) {
    const member = typeof to === 'number' ? strings[to] : rebuild((value as Record<string | number, unknown>)[key], to, strings);
    // An own `__proto__` (JSON.parse makes one) is set as a member, never as the prototype.
    if (key === '__proto__') Object.defineProperty(copy, key, { value: member, writable: true, enumerable: true, configurable: true });
    else copy[key] = member;
  }
  return copy;
}
