/**
 * The interactions log: one JSON entry per client API request (indented; on one line on stdout
 * with LOG_CONSOLE=json), to each destination that is on: stdout and a file. Entries are rendered when recorded and written in batches (every 10 ms at most),
 * by one asynchronous writer per destination, one write at a time: entries never interleave,
 * stay in order, and no request waits for a disk or a slow stdout reader.
 */
import { isUtf8 } from 'node:buffer';
import { writev as fsWritev } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { makeFolders } from '../folders.js';
import { dirname } from 'node:path';
import { hasUncheckedBytes } from '../formats/json-bytes.js';
import { hasLoneSurrogateEscape, indentJsonBytes, isJsonText, prettyLimit } from '../formats/json-layout.js';
import type { LoggedUsage } from '../formats/usage.js';
import type { UpstreamAttempt } from '../upstream/call.js';
import type { Holder } from '../upstream/http-client.js';
import { Throttle, warn } from './warn.js';
import { utf8Bytes } from '../utf8.js';
import { writeProblem } from '../write-problem.js';

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

/** One batch of entries, rendered once per format some destination wants: pieces written as one (writev), never copied together. */
export interface BatchText {
  /** How many entries it holds: what a destination that cannot write it loses (counted). */
  readonly entries: number;
  readonly text: Partial<Record<LogFormat, Buffer[]>>;
}

export interface RenderedBatch extends BatchText {
  /**
   * Memory the pieces keep alive beyond their own bytes: the whole buffer of each request body they
   * view. A destination counts it against its cap (a 4 MiB body of whitespace lays out to a few
   * hundred bytes, and a stuck destination must not hold thousands of them).
   */
  readonly heldBytes: number;
  /**
   * Each destination given the batch calls this once, when it is done with the pieces (written,
   * failed or dropped): the pooled request bodies they view are let go of when every one has.
   */
  readonly done: () => void;
}

/** A batch whose pieces view no pooled memory. */
export const NOTHING_HELD = (): void => {};

/** A batch's `done` for `destinations` destinations: lets go of `held` when the last is done. */
function releaseWhenDone(destinations: number, held: readonly Holder[]): () => void {
  let left = destinations;
  return () => {
    if (--left === 0) for (const holder of held) holder.release();
  };
}

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
  // JSON.stringify writes a lone surrogate (a client's "\ud800", a provider's) as that escape, and
  // jq refuses it and the rest of the file: it becomes U+FFFD, as a decoder would make it.
  return text.includes('\\ud') ? text.replace(LONE_SURROGATE_ESCAPE, '$1\\ufffd') : text;
}

/** A body whose indented form in a pretty entry is longer than this is checked for growth past its compact size's prettyLimit. */
const CHECKED_GROWTH_FROM = 64 * 1024;

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
    if (end - valueAt <= CHECKED_GROWTH_FROM) continue;
    // What indentation adds (each line's newline and indent): where it is not half the text (an
    // answer's long strings, an embedding's numbers), no compact render. Every line is measured:
    // a sample could be steered by a body shaped to put its shallow lines where the samples fall.
    let added = 0;
    for (let i = text.indexOf('\n', valueAt); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
      let j = i + 1;
      while (text.charCodeAt(j) === 0x20) j++;
      added += j - i;
    }
    if (2 * added < end - valueAt) continue;
    const compact = JSON.stringify(body);
    if (end - valueAt <= prettyLimit(compact.length)) continue;
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
    this.shown ??= hasTerminalControls(this.bytes) ? Buffer.from(escapeTerminalControls(this.bytes.toString('utf8'))) : this.bytes;
    const pieces = indentJsonBytes(this.shown, level, this.checked);
    this.checked = true;
    this.json = pieces !== null;
    return pieces;
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
 * a million values nested deep: 256 MB of text, seconds of every request's loop).
 */
export function loggedRequest(raw: Buffer, parsed: unknown, holder: Holder | null = null): unknown {
  if (isUtf8(raw)) return new RawJson(raw, !hasUncheckedBytes(parsed), holder);
  return new RawJson(Buffer.from(raw.toString('utf8')), !hasUncheckedBytes(parsed));
}

/**
 * DEL and the C1 controls (U+007F–U+009F), which JSON.stringify leaves raw: a terminal showing the
 * log may act on them (U+009B begins a control sequence, as ESC [ does), and a client chooses
 * what its body, model name and key header hold. Escaped in every entry, as they are in metrics.
 */
const TERMINAL_CONTROLS = /[\u007f-\u009f]/g;

/** Whether UTF-8 bytes hold DEL (0x7f) or a C1 control (0xc2, then 0x80–0x9f): native searches, then a look at each 0xc2's next byte. */
export function hasTerminalControls(bytes: Buffer): boolean {
  if (bytes.indexOf(0x7f) !== -1) return true;
  for (let i = bytes.indexOf(0xc2); i !== -1; i = bytes.indexOf(0xc2, i + 1)) {
    const next = bytes[i + 1];
    if (next !== undefined && next >= 0x80 && next <= 0x9f) return true;
  }
  return false;
}

/** JSON text with DEL and C1 controls written as `\u` escapes: JSON's structure is ASCII, so they are inside strings, whose values stay the same. */
function escapeTerminalControls(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Part of an entry's text as bytes, its terminal controls escaped (searched for in the bytes: a regular expression over every entry's text cost a third of rendering it). */
function entryBytes(text: string): Buffer {
  const bytes = utf8Bytes(text);
  return hasTerminalControls(bytes) ? utf8Bytes(escapeTerminalControls(text)) : bytes;
}

/**
 * The entry as bytes, appended to `out`: a RawJson request spliced in as its bytes, re-indented,
 * in place of the `"request": null` the rest of the entry is rendered with (the first one in the
 * text: fields before it hold only escaped strings, so no earlier match is possible). True when
 * some of the pieces view the request's bytes (a long string is a piece of them, not a copy).
 */
export function renderEntryBytes(entry: LogEntry, format: LogFormat, out: Buffer[]): boolean {
  const request = entry.request;
  const body = request instanceof RawJson ? request.layout(format === 'pretty' ? 1 : null) : null;
  if (body === null) {
    out.push(entryBytes(renderEntry(entry, format)));
    return false;
  }
  const text = renderEntry({ ...entry, request: null }, format);
  const marker = format === 'pretty' ? '\n  "request": null' : ',"request":null';
  const at = text.indexOf(marker);
  if (at === -1) {
    out.push(entryBytes(text)); // rendered without its bodies (too deep): it says so
    return false;
  }
  const valueAt = at + marker.length - 4;
  out.push(entryBytes(text.slice(0, valueAt)));
  // One push per piece: a body's pieces can outnumber what a call's arguments may hold.
  for (const piece of body) out.push(piece);
  out.push(entryBytes(text.slice(valueAt + 4)));
  return true;
}

/** A destination for rendered entries. */
export interface LogSink {
  /** The formats this destination needs rendered. */
  readonly formats: readonly LogFormat[];
  write(batch: RenderedBatch): void;
  /** Close and reopen the destination (a rotated log file); optional. */
  reopen?(): void;
  /** Resolves once everything written so far has reached the destination (or failed). */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Entries it lost: writes that failed, or were dropped. */
  readonly failures: number;
}

/** Entries wait at most this long to be rendered and written (a batch is one write per destination). */
const BATCH_MS = 10;

/** Pending bytes per destination beyond which new entries are dropped (and counted), not queued. */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024;

const NEWLINE = Buffer.from('\n');

/** Buffers per writev call (Linux's IOV_MAX is 1024). */
const MAX_PIECES = 1000;

/** Writes every piece in order, in writev calls of at most MAX_PIECES buffers, until done or a call fails. */
export async function writeAll(pieces: Buffer[], writev: (pieces: Buffer[]) => Promise<number>): Promise<void> {
  // The first piece not yet written whole, and how much of it was.
  let next = 0;
  let partly = 0;
  while (next < pieces.length) {
    const some = pieces.slice(next, next + MAX_PIECES);
    if (partly > 0) some[0] = (some[0] as Buffer).subarray(partly);
    let written = await writev(some);
    if (written <= 0) throw new Error('nothing was written');
    written += partly;
    while (next < pieces.length && written >= (pieces[next] as Buffer).length) written -= (pieces[next++] as Buffer).length;
    partly = written;
  }
}

/** Queues data and writes it in order, one write at a time, batching whatever piles up meanwhile. */
abstract class QueuedWriter implements LogSink {
  readonly formats: readonly LogFormat[];
  private pending: Buffer[] = [];
  /** The `done` of each batch in `pending`. */
  private pendingDone: Array<() => void> = [];
  private pendingBytes = 0;
  private pendingEntries = 0;
  private writing = false;
  private idle: Array<() => void> = [];
  private dropping = false;
  /** Inside a failure streak: one warning per streak, however many batches fail. */
  private failing = false;
  /** Whether this streak was said (a streak within a minute of the last one said is not, nor its end). */
  private said = false;
  private readonly streaks = new Throttle(60_000);
  /** Entries lost: in writes that failed, or dropped while the destination was stuck. */
  failures = 0;

  constructor(readonly format: LogFormat) {
    this.formats = [format];
  }

  protected abstract output(pieces: Buffer[]): Promise<void>;
  protected abstract describe(): string;

  /** Why a write failed, in the operator's words where the destination knows them. */
  protected why(err: Error): Promise<string> {
    return Promise.resolve(err.message);
  }

  write(batch: RenderedBatch): void {
    const pieces = batch.text[this.format];
    if (pieces === undefined) return batch.done();
    let bytes = batch.heldBytes;
    for (const piece of pieces) bytes += piece.length;
    // A batch alone is always taken (one body may be larger than the cap), never one on top of a full queue.
    if (this.pendingBytes > 0 && this.pendingBytes + bytes > MAX_PENDING_BYTES) {
      // The destination is stuck (a full disk, a stdout nobody reads): never grow without bound.
      this.failures += batch.entries;
      if (!this.dropping) warn(`the log to ${this.describe()} is not keeping up (${this.pendingBytes} bytes pending); dropping entries until it does`);
      this.dropping = true;
      return batch.done();
    }
    // An empty piece would be a writev that writes nothing, which writeAll takes for a failure.
    for (const piece of pieces) if (piece.length > 0) this.pending.push(piece);
    this.pendingDone.push(batch.done);
    this.pendingBytes += bytes;
    this.pendingEntries += batch.entries;
    if (!this.writing) void this.drain();
  }

  private async drain(): Promise<void> {
    this.writing = true;
    // A batch of empty pieces still has its `done` to call.
    while (this.pending.length > 0 || this.pendingDone.length > 0) {
      const pieces = this.pending;
      const entries = this.pendingEntries;
      const done = this.pendingDone;
      this.pending = [];
      this.pendingDone = [];
      this.pendingBytes = 0;
      this.pendingEntries = 0;
      try {
        await this.output(pieces);
        if (this.failing && this.said) warn(`writing the log to ${this.describe()} works again`);
        this.failing = false;
      } catch (err) {
        // The write's entries are lost (one torn by a full disk is cut back off the file).
        this.failures += entries;
        // One warning per failure streak, and at most one a minute: a full disk must not flood
        // stderr (cutting a torn write back frees a few KB, so writes there fail and work in turn).
        if (!this.failing) {
          this.said = this.streaks.due();
          if (this.said) warn(`cannot write the log to ${this.describe()} (${await this.why(err as Error)}); still serving, entries are lost until it works again`);
        }
        this.failing = true;
      }
      // Written or lost, the pieces are not read again.
      for (const each of done) each();
    }
    this.writing = false;
    this.dropping = false; // caught up: a later drop starts a new streak, with its own warning
    const waiting = this.idle;
    this.idle = [];
    for (const resolve of waiting) resolve();
  }

  flush(): Promise<void> {
    if (!this.writing && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/**
 * Appends to a file, created with mode 0600 when it does not exist (prompts are sensitive; an
 * existing file keeps its mode); reopens after a failure. A write that fails part-way (a full
 * disk) is cut back to the last complete entry before anything else is written, so the file stays
 * a sequence of whole JSON documents.
 */
class FileSink extends QueuedWriter {
  private handle: FileHandle | null = null;
  private reopening = false;
  /** A torn entry could not be cut off: the next write starts on a new line, after it. */
  private afterTear = false;

  constructor(private readonly path: string) {
    super('pretty');
  }

  /** The next write closes the file and opens the path again (after logrotate moved it). */
  reopen(): void {
    this.reopening = true;
  }

  /** Creates the folder and opens the file now, so a start-up problem is reported at start-up. */
  async open(): Promise<void> {
    try {
      await this.ensureOpen();
    } catch (err) {
      // In the operator's words where it can be (`/etc/passwd is not a folder`, not mkdir's EEXIST).
      const why = (await writeProblem(this.path)) ?? (err as Error).message;
      warn(`cannot open the log file ${this.path} (${why}); still serving, will retry on the next entry`);
    }
  }

  /** The file is open (false: it could not be opened or written, and is tried again at the next entry). */
  get usable(): boolean {
    return this.handle !== null;
  }

  private async ensureOpen(): Promise<FileHandle> {
    if (this.handle !== null) return this.handle;
    await makeFolders(dirname(this.path));
    // The mode applies only to a file this creates: one that exists keeps the mode its owner gave
    // it (logrotate's `create 0640 root adm`, for a log shipper in group adm), at start and at
    // every reopen; so does a device or a pipe (LOG_FILE=/dev/stderr, a FIFO).
    const handle = await open(this.path, 'a', 0o600);
    // A file left ending inside an entry (a crash, a power cut mid-write): the next starts on a new line.
    if (await endsMidLine(this.path, handle)) this.afterTear = true;
    this.handle = handle;
    return handle;
  }

  /**
   * After a write that failed with `written` of its bytes in the file, cuts them off: back to the
   * size the file had before (measured now, not tracked, so a file someone else truncated, as
   * logrotate's copytruncate does, is never cut to a stale size). A file that refuses the cut (an
   * append-only file) keeps the torn entry; logging carries on, on a new line after it.
   */
  private async cutTear(handle: FileHandle, written: number): Promise<void> {
    if (written === 0) return;
    try {
      const stats = await handle.stat();
      if (stats.isFile()) await handle.truncate(Math.max(0, stats.size - written));
    } catch (err) {
      this.afterTear = true;
      warn(`cannot cut a partly written entry off the end of ${this.path} (${(err as Error).message}); it stays there, and the next entry starts on a new line after it`);
    }
  }

  protected async output(pieces: Buffer[]): Promise<void> {
    if (this.reopening) {
      this.reopening = false;
      const old = this.handle;
      this.handle = null;
      this.afterTear = false; // a new file
      await old?.close().catch(() => {});
    }
    const handle = await this.ensureOpen();
    let written = 0;
    try {
      await writeAll(this.afterTear ? [NEWLINE, ...pieces] : pieces, async (some) => {
        const { bytesWritten } = await handle.writev(some);
        written += bytesWritten;
        return bytesWritten;
      });
      this.afterTear = false;
    } catch (err) {
      await this.cutTear(handle, written);
      this.handle = null;
      await handle.close().catch(() => {});
      throw err;
    }
  }

  protected describe(): string {
    return this.path;
  }

  protected override async why(err: Error): Promise<string> {
    return (await writeProblem(this.path)) ?? err.message;
  }

  override async close(): Promise<void> {
    await this.flush();
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => {});
  }
}

/** Whether a regular file (`appending` open on it) has a last byte that is not a newline (empty: no). */
async function endsMidLine(path: string, appending: FileHandle): Promise<boolean> {
  let reading: FileHandle | null = null;
  try {
    const stats = await appending.stat();
    if (!stats.isFile() || stats.size === 0) return false;
    reading = await open(path, 'r');
    const last = Buffer.alloc(1);
    const { bytesRead } = await reading.read(last, 0, 1, stats.size - 1);
    return bytesRead === 1 && last[0] !== 0x0a;
  } catch {
    return false; // not readable by the gateway (only writable), or gone: written to as it is
  } finally {
    await reading?.close().catch(() => {});
  }
}

/**
 * Writes to file descriptor 1 through libuv's thread pool. `process.stdout.write` is synchronous
 * for files and pipes on Linux: a slow reader would stall every request.
 */
class StdoutSink extends QueuedWriter {
  private closed = false;

  protected async output(pieces: Buffer[]): Promise<void> {
    // Every later batch is lost too: a failure (counted, within the warning already given), never a success.
    if (this.closed) throw new Error('nobody reads stdout any more');
    await writeAll(pieces, (some) => this.writev(some));
  }

  private writev(pieces: Buffer[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        fsWritev(1, pieces, null, (err, written) => {
          if (err === null) return resolve(written);
          // A non-blocking pipe that is full: try again shortly.
          if (err.code === 'EAGAIN') return void setTimeout(attempt, 2);
          if (err.code === 'EPIPE') this.closed = true; // nobody reads stdout any more
          reject(err);
        });
      };
      attempt();
    });
  }

  protected describe(): string {
    return 'stdout';
  }
}

/** What stands in a log entry for a body larger than LOG_BODY_MAX_BYTES. */
export interface TruncatedBody {
  readonly truncated: true;
  /** The body's size: as the client sent it (its JSON bytes, or its text when it was not JSON); an answer's as compact JSON. */
  readonly original_bytes: number;
  /** Its head, as text: up to the cap that applied (LOG_BODY_MAX_BYTES; 64 KiB for a request no provider saw; a cut stream's answer assembled so far). */
  readonly head: string;
}

/** The most of the body of a request no provider saw its entry holds (LOG_BODY_MAX_BYTES where lower). */
const UNSEEN_BODY_MAX_BYTES = 64 * 1024;

/**
 * A streamed answer is assembled for the log from at most this many bytes of its events, as a
 * whole answer over it is refused: a stream has no size limit, and its log entry (3-4 times its
 * size in memory while it is assembled and rendered) must not hold all of it.
 */
export const MAX_ASSEMBLED_STREAM_BYTES = 64 * 1024 * 1024;

/** A streamed answer cut for the log at MAX_ASSEMBLED_STREAM_BYTES: the answer assembled so far, as text, and the size of all its events. */
export function cutStream(assembled: unknown, streamedBytes: number): TruncatedBody {
  let head: string;
  try {
    head = JSON.stringify(assembled) ?? '';
  } catch {
    head = '';
  }
  return new CutBody(streamedBytes, head);
}

class CutBody implements TruncatedBody {
  readonly truncated = true;
  constructor(
    readonly original_bytes: number,
    readonly head: string,
  ) {}
}

/** A body as logged under a cap: itself, or its head and size. */
export function capBody(body: unknown, maxBytes: number): unknown {
  if (body === null || body === undefined) return body;
  if (body instanceof CutBody) return body.head.length <= maxBytes / 3 ? body : truncate(utf8Bytes(body.head), maxBytes, body.original_bytes);
  if (body instanceof RawJson) return body.bytes.length <= maxBytes ? body : truncate(body.bytes, maxBytes);
  let text: string;
  try {
    text = typeof body === 'string' ? body : JSON.stringify(body);
  } catch {
    return body; // too deeply nested to render: renderEntry says so
  }
  return cutText(text, maxBytes) ?? body;
}

/** A text over `maxBytes` of UTF-8 as its head and size (null: within them). */
function cutText(text: string, maxBytes: number): TruncatedBody | null {
  // Most texts are far below the cap: a length in UTF-16 units bounds their size in bytes by 3x.
  if (text.length * 3 <= maxBytes) return null;
  if (Buffer.byteLength(text) <= maxBytes) return null;
  return truncate(utf8Bytes(text), maxBytes);
}

/** An error's message and detail under a cap (a provider's message can be megabytes): each cut to its head, its size said after it. */
function capError(error: NonNullable<LogEntry['error']>, maxBytes: number): NonNullable<LogEntry['error']> {
  const cut = (text: string): string => {
    const over = cutText(text, maxBytes);
    return over === null ? text : `${over.head} [truncated: ${over.original_bytes} bytes]`;
  };
  const message = cut(error.message);
  const detail = error.detail === undefined ? undefined : cut(error.detail);
  return message === error.message && detail === error.detail ? error : { ...error, message, ...(detail === undefined ? {} : { detail }) };
}

function truncate(buffer: Buffer, maxBytes: number, originalBytes = buffer.length): TruncatedBody {
  // Cut before a character, not inside one.
  let end = Math.min(maxBytes, buffer.length);
  while (end > 0 && end < buffer.length && ((buffer[end] as number) & 0xc0) === 0x80) end--;
  return { truncated: true, original_bytes: originalBytes, head: buffer.toString('utf8', 0, end) };
}

export class InteractionLog {
  /** Rendered entries per format, waiting for the next batch write. */
  private pending: Array<{ format: LogFormat; parts: Buffer[] }>;
  /** Entries rendered into `pending`. */
  private pendingEntries = 0;
  /** The pooled bodies `pending`'s pieces view, held until every destination is done with them. */
  private held: Holder[] = [];
  /** The memory of every body `pending`'s pieces view (RenderedBatch.heldBytes). */
  private heldBytes = 0;
  private scheduled = false;

  /** `bodyMaxBytes`: bodies larger than this are logged as their head and size (null: whole). */
  constructor(
    private readonly sinks: readonly LogSink[],
    private readonly bodyMaxBytes: number | null = null,
  ) {
    this.pending = [...new Set(sinks.flatMap((sink) => sink.formats))].map((format) => ({ format, parts: [] }));
  }

  /**
   * Bytes of a stream's events its logged answer is assembled from: MAX_ASSEMBLED_STREAM_BYTES,
   * less under LOG_BODY_MAX_BYTES: 256 times the cap, at least 16 MiB (an answer's events run to
   * ~50 times its text: that still holds every answer the cap would keep whole).
   */
  get assembledStreamLimit(): number {
    const max = this.bodyMaxBytes;
    return max === null ? MAX_ASSEMBLED_STREAM_BYTES : Math.min(MAX_ASSEMBLED_STREAM_BYTES, Math.max(16 * 1024 * 1024, max * 256));
  }

  /** False when every destination is off: callers skip building entries at all. */
  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  /** Write failures across destinations (exposed as a metric). */
  get failures(): number {
    return this.sinks.reduce((sum, sink) => sum + sink.failures, 0);
  }

  /**
   * Renders the entry at once, while its objects are still in the CPU's caches (rendering them
   * later, in a batch, was slower: docs/performance.md), and queues the text; writes are batched.
   */
  record(entry: LogEntry): void {
    if (this.sinks.length === 0) return;
    const max = this.bodyMaxBytes;
    // A request no provider saw (refused, or answered here: a count_tokens estimate) costs its
    // client nothing, and no limit counts it: logged whole, its body would let a client fill the
    // disk at the speed of its line.
    const unseen = entry.upstream === null;
    const requestMax = unseen ? Math.min(max ?? UNSEEN_BODY_MAX_BYTES, UNSEEN_BODY_MAX_BYTES) : max;
    if (requestMax !== null) entry.request = capBody(entry.request, requestMax);
    if (max !== null) {
      entry.response = capBody(entry.response, max);
      if (entry.error !== undefined) entry.error = capError(entry.error, max);
    }
    let viewsBody = false;
    for (const slot of this.pending) if (renderEntryBytes(entry, slot.format, slot.parts)) viewsBody = true;
    const request = entry.request;
    if (viewsBody && request instanceof RawJson) {
      // Pooled or not, a view keeps the whole buffer the body is in.
      this.heldBytes += request.bytes.buffer.byteLength;
      if (request.holder !== null) {
        request.holder.hold();
        this.held.push(request.holder);
      }
    }
    this.pendingEntries++;
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.writeQueued, BATCH_MS);
    }
  }

  // One write per destination per batch: per-write costs (a thread-pool round trip per
  // destination) are paid once per BATCH_MS instead of once per request under load.
  private readonly writeQueued = (): void => {
    this.scheduled = false;
    if (this.pending[0] === undefined || this.pending[0].parts.length === 0) return;
    const text: RenderedBatch['text'] = {};
    for (const slot of this.pending) {
      text[slot.format] = slot.parts;
      slot.parts = [];
    }
    const held = this.held;
    const batch: RenderedBatch = { entries: this.pendingEntries, text, heldBytes: this.heldBytes, done: held.length === 0 ? NOTHING_HELD : releaseWhenDone(this.sinks.length, held) };
    this.held = [];
    this.heldBytes = 0;
    this.pendingEntries = 0;
    for (const sink of this.sinks) sink.write(batch);
  };

  /** Reopens destinations that can be (the log file, after rotation). */
  reopen(): void {
    for (const sink of this.sinks) sink.reopen?.();
  }

  async flush(): Promise<void> {
    this.writeQueued();
    await Promise.all(this.sinks.map((sink) => sink.flush()));
  }

  /**
   * Flushes and closes every destination, waiting at most `deadlineMs`: a destination that is
   * stuck (stdout nobody reads) must not keep the process from exiting. False when it timed out:
   * end the process with endProcess, which does not wait for the stuck write.
   */
  async close(deadlineMs = FLUSH_DEADLINE_MS): Promise<boolean> {
    this.writeQueued();
    return closeSinks(this.sinks, deadlineMs);
  }
}

/** How long the final flush at exit waits for the log's destinations (the README promises 10 s). */
export const FLUSH_DEADLINE_MS = 10_000;

/** Whether `work` settled within `ms` (a write stuck in the kernel never does). */
export async function doneWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([work.then(() => true), deadline]);
  clearTimeout(timer);
  return result;
}

/** Closes every destination, waiting at most `deadlineMs`; false (and said on stderr) when they did not all finish in time. */
export async function closeSinks(sinks: readonly LogSink[], deadlineMs = FLUSH_DEADLINE_MS): Promise<boolean> {
  const closed = await doneWithin(Promise.all(sinks.map((sink) => sink.close())), deadlineMs);
  if (!closed) warn(`the log could not be flushed within ${deadlineMs} ms; some entries may be lost`);
  return closed;
}

/** The state file's save at exit, waiting as long as the log's flush; false (and said on stderr) when it did not finish. */
export async function savedAtExit(save: Promise<unknown>, deadlineMs = FLUSH_DEADLINE_MS): Promise<boolean> {
  const saved = await doneWithin(save, deadlineMs);
  if (!saved) warn(`the state file could not be saved within ${deadlineMs} ms`);
  return saved;
}

/**
 * Ends the process after a shutdown. `clean`: everything was flushed and saved; exits with `code`.
 * Otherwise a write may still be stuck in the kernel on one of libuv's threads (a pipe whose reader
 * stalled: a log collector that hangs), and process.exit would never return: it joins those threads
 * (uv_library_shutdown) and waits for the write forever. The process then ends by the signal that
 * stopped it (SIGTERM: status 143 to Docker and Kubernetes, SIGINT: 130), its default action
 * restored, or by SIGKILL (137) when it stopped on its own: a signal ends it without joining threads.
 */
export function endProcess(code: number, clean: boolean, signal?: string): void {
  if (clean) {
    process.exit(code);
    return;
  }
  const fatal: NodeJS.Signals = signal === 'SIGTERM' || signal === 'SIGINT' ? signal : 'SIGKILL';
  warn(`a write is still stuck (see above): ending by ${fatal}, since exiting (code ${code}) would wait for it forever`);
  if (fatal !== 'SIGKILL') {
    // With no listener left Node restores the signal's default action (terminate), at once.
    process.removeAllListeners(fatal);
    process.kill(process.pid, fatal);
  }
  // Still here: the signal did not end it (it is ignored, or a listener came back).
  process.kill(process.pid, 'SIGKILL');
}

export interface LogOptions {
  logFile: string | null;
  logConsole: 'pretty' | 'json' | 'off';
}

/** The destinations the configuration asks for (a cluster primary owns these for all workers). */
export async function createSinks(options: LogOptions): Promise<LogSink[]> {
  const sinks: LogSink[] = [];
  if (options.logConsole !== 'off') sinks.push(new StdoutSink(options.logConsole));
  if (options.logFile !== null) {
    const file = new FileSink(options.logFile);
    await file.open();
    sinks.push(file);
  }
  return sinks;
}

/** The log file as the start-up line names it: its path, said unusable where it could not be opened. */
export function logFileShown(path: string | null, sinks: readonly LogSink[]): string {
  if (path === null) return 'off';
  const file = sinks.find((sink): sink is FileSink => sink instanceof FileSink);
  return file === undefined || file.usable ? path : `${path} (cannot be opened: see above)`;
}

/** The formats those destinations need, without opening them (a cluster worker renders for its primary). */
export function formatsFor(options: LogOptions): LogFormat[] {
  const formats = new Set<LogFormat>();
  if (options.logConsole !== 'off') formats.add(options.logConsole);
  if (options.logFile !== null) formats.add('pretty');
  return [...formats];
}
