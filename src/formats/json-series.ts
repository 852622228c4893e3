/**
 * JSON.parse for a series of texts that mostly repeat the one before with one string changed: a
 * stream's events (every chat chunk is the one before with another `content`, every Messages text
 * delta another `text`). Parsing each whole cost a streamed answer's log a third of its gateway
 * CPU (docs/performance.md); here a text that fits the learned shape costs two comparisons and a
 * copy of the objects on the changed string's path.
 *
 * Exact, not a guess: a shape is learned from two texts that JSON.parse read, differing only
 * inside one string literal with no escape in it, and whose values differ only in that string. A
 * later text made of the same bytes around another escape-free string is the same sequence of
 * JSON tokens with that one string changed, so its value is the first's with that string
 * replaced: what JSON.parse returns for it, duplicate keys and `__proto__` members included.
 * Values share the parts that did not change with earlier ones: readers must not change them.
 */

/** Characters a string literal cannot hold as they are: with one of them a text is parsed whole. */
const NOT_PLAIN = /["\\\u0000-\u001f]/;

/** Texts longer than this are not compared for a shape (events are small; a large one is parsed whole). */
const LEARN_MAX_CHARS = 16 * 1024;

/** After this many texts in a row teach no shape (their changes are not one string), no more are tried. */
const MAX_FAILED_LESSONS = 8;

type Path = ReadonlyArray<string | number>;

interface Shape {
  /** The text before the changing string's characters (ending with its opening quote). */
  readonly before: string;
  /** The text after them (starting with its closing quote). */
  readonly after: string;
  /** The value of the text the shape was learned from. */
  readonly value: unknown;
  /** Where the string is in it. */
  readonly path: Path;
}

export class JsonSeries {
  private shape: Shape | null = null;
  private lastText: string | null = null;
  private lastValue: unknown = undefined;
  private failedLessons = 0;

  /** What JSON.parse(text) returns (and throws what it throws). */
  parse(text: string): unknown {
    const shape = this.shape;
    if (shape !== null && text.length >= shape.before.length + shape.after.length) {
      // Compared as slices: faster than startsWith here (V8 11-12).
      const end = text.length - shape.after.length;
      if (text.slice(0, shape.before.length) === shape.before && text.slice(end) === shape.after) {
        const string = text.slice(shape.before.length, end);
        if (!NOT_PLAIN.test(string)) return withString(shape.value, shape.path, string);
      }
    }
    const value: unknown = JSON.parse(text);
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

/** The shape two parsed texts share, if they differ in one escape-free string only; else null. */
function learn(a: string, aValue: unknown, b: string, bValue: unknown): Shape | null {
  // The common start and end of the two texts; what differs lies between.
  const shorter = Math.min(a.length, b.length);
  let start = 0;
  while (start < shorter && a.charCodeAt(start) === b.charCodeAt(start)) start++;
  if (start === a.length && start === b.length) return null; // the same text
  let end = 0;
  while (end < shorter - start && a.charCodeAt(a.length - 1 - end) === b.charCodeAt(b.length - 1 - end)) end++;
  // The quotes around the difference in `a`: they must bound one string literal's characters.
  const open = a.lastIndexOf('"', start - 1);
  if (open === -1 || start === 0) return null;
  const close = a.indexOf('"', a.length - end);
  if (close === -1) return null;
  const aString = a.slice(open + 1, close);
  const bString = b.slice(open + 1, close + b.length - a.length);
  if (NOT_PLAIN.test(aString) || NOT_PLAIN.test(bString)) return null;
  // An escaped quote (an odd run of backslashes before it) is inside a string, not its start.
  let backslashes = 0;
  while (a.charCodeAt(open - 1 - backslashes) === 0x5c) backslashes++;
  if (backslashes % 2 === 1) return null;
  // The values must differ in exactly that string, and nowhere else.
  const path: Array<string | number> = [];
  if (difference(aValue, bValue, path) !== 'one string') return null;
  if (stringAt(aValue, path) !== aString || stringAt(bValue, path) !== bString) return null;
  return { before: a.slice(0, open + 1), after: a.slice(close), value: aValue, path };
}

type Difference = 'none' | 'one string' | 'more';

/** How two parsed values differ; on 'one string', `path` leads to it. Key order counts (it shows in the log). */
function difference(a: unknown, b: unknown, path: Array<string | number>): Difference {
  if (a === b) return 'none';
  if (typeof a === 'string' && typeof b === 'string') return 'one string';
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return 'more';
  if (Array.isArray(a) !== Array.isArray(b)) return 'more';
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return 'more';
  let found: Difference = 'none';
  for (let i = 0; i < aKeys.length; i++) {
    const key = aKeys[i] as string;
    if (key !== bKeys[i]) return 'more';
    const at = path.length;
    path.push(Array.isArray(a) ? i : key);
    const inner = difference((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], path);
    if (inner === 'none') {
      path.length = at;
      continue;
    }
    if (inner === 'more' || found !== 'none') return 'more';
    found = inner;
  }
  return found;
}

function stringAt(value: unknown, path: Path): unknown {
  let at = value;
  for (const key of path) at = (at as Record<string | number, unknown>)[key];
  return at;
}

/** `value` with the string at `path` replaced: new objects along the path, the rest shared. */
function withString(value: unknown, path: Path, string: string): unknown {
  // The containers along the path, outermost first; then copied from the innermost out.
  const along: unknown[] = [];
  let at = value;
  for (const key of path) {
    along.push(at);
    at = (at as Record<string | number, unknown>)[key];
  }
  let result: unknown = string;
  for (let depth = path.length - 1; depth >= 0; depth--) {
    const container = along[depth];
    const key = path[depth] as string | number;
    if (Array.isArray(container)) {
      const copy = container.slice();
      copy[key as number] = result;
      result = copy;
    } else {
      // A computed key defines an own property, `__proto__` included, as JSON.parse does.
      result = { ...(container as Record<string, unknown>), [key]: result };
    }
  }
  return result;
}
