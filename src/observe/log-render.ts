/**
 * A log entry rendered as bytes, once per format: indented (`pretty`) or on one line (`json`), a
 * client's body spliced in as its own bytes, growth bounded, and nothing in it a terminal or jq
 * would misread (lone surrogates, control characters).
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { hasUncheckedBytes } from '../formats/json-bytes.js';
import { hasLoneSurrogateEscape, indentJsonBytes, isJsonText, prettyLimit } from '../formats/json-layout.js';
import { MAX_DEPTH } from '../formats/json-limits.js';
import type { LoggedUsage } from '../formats/usage.js';
import type { UpstreamAttempt } from '../upstream/call.js';
import type { Holder } from '../upstream/http-client.js';
import { utf8Bytes } from '../utf8.js';
import { escapeTerminalBytes, hasTerminalControls } from './terminal.js';

export interface LogEntry {
  timestamp: string;
  request_id: string;
  /** The virtual key used; an unknown presented key is masked. */
  virtual_key: string | null;
  /** The key's `name` from keys.json, else its digest label (as in metrics). */
  key_name: string | null;
  provider: string | null;
  model: string | null;
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  stream: boolean;
  ttfb_ms?: number | null;
  /** The one normalised usage (the provider's own usage object stays inside `response`). */
  usage: LoggedUsage | null;
  /** What the request cost in USD (the same figure its key's budget and spend count); null: tokens of a model without a price. */
  cost_usd: number | null;
  /** The client's body (parsed; the raw text when it was not JSON). */
  request: unknown;
  /** What the client got; for streams the whole answer assembled from its events, in the client's API. */
  response: unknown;
  error?: { message: string; type: string; code: string | null; detail?: string };
  /**
   * The provider's answer: `api_key` is the index of the real key used (when the virtual key has
   * several), `attempts` every call when there was more than one (retries) or none answered.
   */
  upstream: {
    status: number | null;
    request_id: string | null;
    /** Which of the key's targets answered (a key with several). */
    target?: number;
    /** The model the provider was asked for (the key's model map applied to `model`). */
    model?: string;
    /** The URL of the last call (scheme, host, path). */
    url?: string;
    api_key?: number;
    attempts?: UpstreamAttempt[];
    /** Tools of the request only OpenAI runs (web_search, …), left out for a provider that does not. */
    dropped_tools?: readonly string[];
    /** The provider's own usage object, for an answer translated into the client's API (passed through, it is inside `response`). */
    usage?: unknown;
    /** Targets passed over: their circuit was open, their real keys all cooling down, or the request could not go to them. */
    skipped_targets?: number[];
  } | null;
}

/** `pretty`: JSON indented by two spaces (the file, and stdout by default); `json`: one line per entry. */
export type LogFormat = 'pretty' | 'json';

/**
 * One entry as text. An entry that cannot be rendered (JSON nested deeper than the stack
 * allows: a hostile body or answer) is logged without its bodies instead of crashing.
 */
export function renderEntry(entry: LogEntry, format: LogFormat = 'pretty'): string {
  const indent = format === 'pretty' ? 2 : undefined;
  let text: string;
  try {
    text = `${JSON.stringify(entry, null, indent)}\n`;
    if (indent !== undefined && text.length > CHECKED_GROWTH_FROM) text = bodiesOnOneLineIfGrown(entry, text);
  } catch (err) {
    const omitted = `[not logged: ${(err as Error).message}]`;
    const error = entry.error === undefined ? undefined : { ...entry.error, detail: undefined };
    text = `${JSON.stringify({ ...entry, request: omitted, response: omitted, error }, null, indent)}\n`;
  }
  return withoutLoneSurrogates(text);
}

/**
 * JSON.stringify writes a lone surrogate (a client's "\ud800", a provider's) as that escape, and jq
 * refuses it and the rest of the file: it becomes U+FFFD, as a decoder would make it (the same length).
 */
function withoutLoneSurrogates(json: string): string {
  return json.includes('\\ud') ? json.replace(LONE_SURROGATE_ESCAPE, '$1\\ufffd') : json;
}

/** A body whose indented form in a pretty entry is longer than this is checked for growth past its compact size's prettyLimit. */
const CHECKED_GROWTH_FROM = 64 * 1024;

/** The most indenting adds to one line of a body in an entry: its newline, and two spaces a level (bodies nest MAX_DEPTH deep at most, a level or two into the entry: a margin of several). */
const MOST_PER_LINE = 1 + 2 * (MAX_DEPTH + 8);

/** A line indented this much is deeper than MOST_PER_LINE allows for: the count cannot bound its body's growth. */
const DEEPER = ' '.repeat(MOST_PER_LINE);

/** The most a body `compactLength` long on one line may take indented in a pretty entry before it is put on one line (lengths in the same unit). */
function indentedLimit(compactLength: number): number {
  return Math.max(prettyLimit(compactLength), CHECKED_GROWTH_FROM);
}

/**
 * The entry with its bodies on one line where indenting them grew them past prettyLimit (JSON nested deep, many short values: a model steered to write a tool
 * call's input as `[[[0,0,…]]]` would make 40 KB of answer 4 MB of log), as a request body logged
 * as its bytes is (indentJsonBytes). A top-level member's indented value runs from its name's line
 * to the next line indented by two spaces and a quote (its own lines are indented further).
 */
function bodiesOnOneLineIfGrown(entry: LogEntry, text: string): string {
  for (const name of ['request', 'response'] as const) {
    const body = entry[name];
    if (typeof body !== 'object' || body === null || body instanceof RawJson) continue;
    const marker = `\n  "${name}": `;
    const at = text.indexOf(marker);
    if (at === -1) continue;
    const next = text.indexOf('\n  "', at + marker.length);
    // Followed by another member (after its comma), or the last one (before the entry's closing brace).
    const end = next === -1 ? text.lastIndexOf('\n}') : text[next - 1] === ',' ? next - 1 : next;
    const valueAt = at + marker.length;
    // Checked first without the compact render it needs: the limit is never below this.
    const size = end - valueAt;
    if (size <= CHECKED_GROWTH_FROM) continue;
    // Indentation adds at most a newline and the deepest indent a line: with too few lines to
    // be half the text (a body cut by LOG_BODY_MAX_BYTES, long strings), no compact render. Lines
    // are counted only until there are enough (measuring each one's indent, a 14 KB answer nested
    // deep, 2 MB indented, took 12–30 ms); then the body is rendered again on one line, which is
    // cheap here: a larger answer, and a client's body, are laid out by the walk that bounds
    // growth instead (BOUNDED_LAYOUT_FROM_BYTES, RawJson). A line deeper than the bound allows
    // for (no body nests so deep today) has its body rendered again too.
    const enough = Math.ceil(size / 2 / MOST_PER_LINE);
    let lines = 0;
    for (let i = text.indexOf('\n', valueAt); i !== -1 && i < end && lines < enough; i = text.indexOf('\n', i + 1)) lines = text.startsWith(DEEPER, i + 1) ? enough : lines + 1;
    if (lines < enough) continue;
    const compact = JSON.stringify(body);
    if (end - valueAt <= indentedLimit(compact.length)) continue;
    text = `${text.slice(0, valueAt)}${compact}${text.slice(end)}`;
  }
  return text;
}

/** In JSON.stringify's output, every `\\udXXX` escape is a lone surrogate (pairs are written as characters); an even run of backslashes before it is text. */
const LONE_SURROGATE_ESCAPE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * A request body logged as the client's own bytes, laid out as the entry is rendered: the body
 * never becomes one string (a 1 MB body would cost milliseconds: src/formats/json-layout.ts), the
 * log shows what the client sent (its key order, escapes and number spellings), and a body nested
 * deep cannot grow its entry past a few times its size. Only for bodies that parsed as JSON and
 * are valid UTF-8.
 */
export class RawJson {
  /**
   * `checked`: false when only the structure of some of it was checked (a large member a
   * pass-through never parsed): it is checked as JSON before it is spliced into an entry.
   * `holder`: the pooled memory the bytes are in, if any (held by the log while an entry's
   * pieces view it: server/body-pool.ts).
   */
  constructor(
    readonly bytes: Buffer,
    private checked = true,
    readonly holder: Holder | null = null,
  ) {
    // Bytes checked as they are laid out are checked for these there.
    if (checked && hasLoneSurrogateEscape(bytes)) this.json = false;
  }

  private json = true;
  /** The bytes as an entry shows them: terminal controls escaped (the same JSON values), if they hold any. */
  private shown: Buffer | null = null;

  /** Whether the bytes can stand in an entry as they are (checked once). */
  isJson(): boolean {
    if (!this.checked) {
      this.json = isJsonText(this.bytes);
      this.checked = true;
    }
    return this.json;
  }

  /**
   * The bytes laid out for an entry (indentJsonBytes), or null when they are not JSON after all:
   * bytes not checked yet are checked by the same pass.
   */
  layout(level: number | null): Buffer[] | null {
    if (!this.json) return null;
    if (this.shown === null) {
      // Bytes no parser read are checked as they came: escaped first, a backslash before a
      // control would read as an escape, and text that is not JSON as JSON.
      if (hasTerminalControls(this.bytes) && this.isJson()) this.shown = escapeTerminalBytes(this.bytes);
      else if (!this.json) return null;
      else this.shown = this.bytes;
    }
    const pieces = indentJsonBytes(this.shown, level, this.checked);
    this.checked = true;
    this.json = pieces !== null;
    return pieces;
  }

  /** The memory the laid-out pieces view: the bytes, or their escaped copy. */
  get viewed(): Buffer {
    return this.shown ?? this.bytes;
  }

  /** Whatever renders an entry without knowing the class still gets the body (its text, if it is not JSON after all). */
  toJSON(): unknown {
    const text = this.bytes.toString('utf8');
    return this.isJson() ? JSON.parse(text) : text;
  }
}

/**
 * What the log keeps of a client's JSON body: its bytes. Where they are not valid UTF-8, each
 * invalid sequence becomes U+FFFD (still JSON: the parser took the body, so they were inside
 * strings), and the copy is laid out like any body, its growth bounded as it is: the parsed value
 * indented whole could be a hundred times its size before its growth was checked (a 2 MB body of
 * a million values nested deep: 256 MB of text, seconds of every request's loop). `refused`: the
 * body was refused, as not JSON or by the API's checks: checked as it is laid out, its text where
 * it is not JSON.
 */
export function loggedRequest(raw: Buffer, parsed: unknown, holder: Holder | null = null, refused = false): unknown {
  const checked = !refused && !hasUncheckedBytes(parsed);
  if (isUtf8(raw)) return new RawJson(raw, checked, holder);
  return new RawJson(Buffer.from(raw.toString('utf8')), checked);
}

/** Part of an entry's text as bytes, DEL and C1 controls escaped (terminal.ts; searched for in the bytes: a regular expression over every entry's text cost a third of rendering it). */
function entryBytes(text: string): Buffer {
  const bytes = utf8Bytes(text);
  return hasTerminalControls(bytes) ? escapeTerminalBytes(bytes) : bytes;
}

/**
 * The entry as bytes, appended to `out`: a RawJson request spliced in as its bytes, re-indented,
 * in place of the `"request": null` the rest of the entry is rendered with (the first one in the
 * text: fields before it hold only escaped strings, so no earlier match is possible). True when
 * some of the pieces view the request's bytes (a long string is a piece of them, not a copy).
 */
export function renderEntryBytes(entry: LogEntry, format: LogFormat, out: Buffer[], bounded = false): boolean {
  const response = bounded && format === 'pretty' ? laidOutResponse(entry.response) : null;
  const shown = response === null ? entry : { ...entry, response: RESPONSE_SLOT };
  const request = shown.request;
  const body = request instanceof RawJson ? request.layout(format === 'pretty' ? 1 : null) : null;
  if (body === null) {
    pushSpliced(renderEntry(shown, format), response, out);
    return false;
  }
  const text = renderEntry({ ...shown, request: null }, format);
  const marker = format === 'pretty' ? '\n  "request": null' : ',"request":null';
  const at = text.indexOf(marker);
  if (at === -1) {
    pushSpliced(text, response, out); // rendered without its bodies (too deep): it says so
    return false;
  }
  const valueAt = at + marker.length - 4;
  out.push(entryBytes(text.slice(0, valueAt)));
  // One push per piece: a body's pieces can outnumber what a call's arguments may hold.
  for (const piece of body) out.push(piece);
  pushSpliced(text.slice(valueAt + 4), response, out);
  return true;
}

/**
 * A provider's answer this large (its body, or its stream's bytes) has the entry's `response` laid
 * out by the walk that bounds growth as it goes, instead of indented natively and checked after:
 * a provider's 2 MB answer of a million values nested deep took 2.9 s of every request's loop and
 * 585 MB that way, and one of 256 KiB half a second. Under this, indenting can make a few MB at
 * most (nesting is bounded: json-limits.ts), checked by rendering the answer again on one line.
 * Lower, the walk costs answers of a few KB more than the native layout (a Responses object of
 * 11 KB: 83–101 µs against 47–50).
 */
export const BOUNDED_LAYOUT_FROM_BYTES = 16 * 1024;

/** Stands for the response in the text of an entry it is spliced into: a string no client or provider can know. */
const RESPONSE_SLOT = `response ${randomUUID()}`;

/** `text` (a part of an entry) as bytes, with the laid-out response where its slot is. */
function pushSpliced(text: string, response: Buffer[] | null, out: Buffer[]): void {
  const at = response === null ? -1 : text.indexOf(`"${RESPONSE_SLOT}"`);
  if (response === null || at === -1) {
    out.push(entryBytes(text)); // no slot: rendered without its bodies (too deep), which it says
    return;
  }
  out.push(entryBytes(text.slice(0, at)));
  for (const piece of response) out.push(piece);
  out.push(entryBytes(text.slice(at + RESPONSE_SLOT.length + 2)));
}

/**
 * The response laid out a level in, as the native layout would (every escape an entry needs
 * made by its one-line rendering), or on one line where that would be more than four times its
 * one-line size and 64 KiB: the native growth check's rule, which counts the raw text's UTF-16
 * units where the walk counts bytes. Null: rendered natively (a text, or too deep for the stack,
 * which the entry then says).
 */
function laidOutResponse(response: unknown): Buffer[] | null {
  if (typeof response !== 'object' || response === null || response instanceof RawJson) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(response);
  } catch {
    return null;
  }
  if (text === undefined) return null;
  text = withoutLoneSurrogates(text);
  const bytes = entryBytes(text);
  // The native check counts the text's UTF-16 units, the walk bytes: what the bytes count beyond
  // the units (characters past ASCII, escaped controls) is the same laid out as on one line, whose
  // indentation is ASCII.
  const beyond = bytes.length - text.length;
  return indentJsonBytes(bytes, 1, true, indentedLimit(text.length) + beyond);
}
