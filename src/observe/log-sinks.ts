/**
 * Where rendered entries go: stdout and the log file, each written by one asynchronous writer, one
 * write at a time, batching what piles up meanwhile; and the flush at exit.
 */
import { writev as fsWritev } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { makeFolders } from '../folders.js';
import { writeProblem } from '../write-problem.js';
import type { LogFormat } from './log-render.js';
import { Throttle, warn } from './warn.js';

/** One batch of entries, rendered once per format some destination wants: pieces written as one (writev), never copied together. */
export interface RenderedBatch {
  /** How many entries it holds: what a destination that cannot write it loses (counted). */
  readonly entries: number;
  readonly text: Partial<Record<LogFormat, Buffer[]>>;
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

/** Pending bytes per destination beyond which new entries are dropped (and counted), not queued. */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024;

const NEWLINE = Buffer.from('\n');

/** Linux's IOV_MAX: the buffers one writev system call takes. */
export const IOV_MAX = 1024;

/**
 * Writes every piece in order until done or a call fails. The first call is given them all: libuv
 * writes every buffer of one call in the thread pool (IOV_MAX at a time, a partial write
 * continued), where a call per 1,024 buffers waited for a turn of the event loop between them, and
 * a busy loop held the log to one such call a turn. Once a call falls short (a full non-blocking
 * pipe), each is given at most IOV_MAX: Node walks the list it is given on the main thread, and a
 * pipe that took part of one call takes no more of the next.
 */
export async function writeAll(pieces: Buffer[], writev: (pieces: Buffer[]) => Promise<number>): Promise<void> {
  // The first piece not yet written whole, and how much of it was.
  let next = 0;
  let partly = 0;
  while (next < pieces.length) {
    const some = next === 0 && partly === 0 ? pieces : pieces.slice(next, next + IOV_MAX);
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

  /** Writes the pieces of `entries` entries, in order. */
  protected abstract output(pieces: Buffer[], entries: number): Promise<void>;
  protected abstract describe(): string;

  /** What a failed write's warning says of the entries after it. */
  protected lostUntil(): string {
    return 'entries are lost until it works again';
  }

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
        await this.output(pieces, entries);
        if (this.failing && this.said) warn(`writing the log to ${this.describe()} works again`);
        this.failing = false;
      } catch (err) {
        // The write's entries are lost (one torn by a full disk is cut back off the file).
        this.failures += entries;
        // One warning per failure streak, and at most one a minute: a full disk must not flood
        // stderr (cutting a torn write back frees a few KB, so writes there fail and work in turn).
        if (!this.failing) {
          this.said = this.streaks.due();
          if (this.said) warn(`cannot write the log to ${this.describe()} (${await this.why(err as Error)}); still serving, ${this.lostUntil()}`);
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
 * Writes to a file descriptor through libuv's thread pool: stdout, or a worker's pipe to its
 * primary. `process.stdout.write` is synchronous for files and pipes on Linux: a slow reader would
 * stall every request.
 */
export class DescriptorSink extends QueuedWriter {
  private closed = false;

  constructor(
    format: LogFormat,
    private readonly fd: number,
    private readonly name: string,
  ) {
    super(format);
  }

  protected async output(pieces: Buffer[], _entries: number): Promise<void> {
    // Every later batch is lost too: a failure (counted, within the warning already given), never a success.
    if (this.closed) throw new Error(`nobody reads ${this.name} any more`);
    await writeAll(pieces, (some) => this.writev(some));
  }

  /** No write is tried again: every later batch is lost (and counted). */
  protected giveUp(): void {
    this.closed = true;
  }

  protected override lostUntil(): string {
    return this.closed ? `entries to ${this.name} are lost from now on` : super.lostUntil();
  }

  private writev(pieces: Buffer[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const attempt = (some: Buffer[]): void => {
        fsWritev(this.fd, some, null, (err, written) => {
          if (err === null) return resolve(written);
          // A non-blocking pipe that is full: try again shortly, with no more than it can take.
          if (err.code === 'EAGAIN') return void setTimeout(() => attempt(some.length > IOV_MAX ? some.slice(0, IOV_MAX) : some), 2);
          if (err.code === 'EPIPE') this.closed = true; // nobody reads it any more
          reject(err);
        });
      };
      attempt(pieces);
    });
  }

  protected describe(): string {
    return this.name;
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

/**
 * Closes every destination, waiting at most `deadlineMs`; false (and said on stderr) when they did
 * not all finish in time. `flushMs`: the whole flush's time, as said (a part of it may have gone before).
 */
export async function closeSinks(sinks: readonly LogSink[], deadlineMs = FLUSH_DEADLINE_MS, flushMs = deadlineMs): Promise<boolean> {
  const closed = await doneWithin(Promise.all(sinks.map((sink) => sink.close())), deadlineMs);
  if (!closed) warn(`the log could not be flushed within ${flushMs} ms; some entries may be lost`);
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
  if (options.logConsole !== 'off') sinks.push(new DescriptorSink(options.logConsole, 1, 'stdout'));
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
