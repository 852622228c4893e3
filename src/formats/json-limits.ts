/**
 * How much JSON may hold before parsing it whole would hold the event loop too long (depth,
 * objects and arrays, values, members of one object), checked on its bytes before JSON.parse:
 * for requests, the texts they carry as strings, and what providers send.
 */

import { isJsonText } from './json-layout.js';
import { QUOTE, stringEnd } from './json-tokens.js';

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
 * an answer's limits (ANSWER_LIMITS, above a body's) once long enough to reach past them: an
 * answer of 60 MB of `{},` held the loop,
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
 * MAX_DEPTH, too many containers or values, too many members in one object), or null (also for a text that is not JSON: the parse
 * says why). Values are counted as containers and commas: never more than there are.
 */
export function tooCostly(buf: Buffer, spent: JsonSpent = { containers: 0, values: 0 }, limits: JsonLimits = BODY_LIMITS): TooDeep | TooMany | null {
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

/** Whether a provider's text is JSON that parseProviderJson would take: past an answer's limits it is not looked at further (a 16 MB `[[[…]]]` took the walk a second). */
export function isProviderJson(raw: Buffer): boolean {
  return tooCostly(raw, { containers: 0, values: 0 }, ANSWER_LIMITS) === null && isJsonText(raw);
}
