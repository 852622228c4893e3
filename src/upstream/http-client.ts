/**
 * A lean HTTP/1.1 client for provider calls: a keep-alive pool per origin (and partition: the real and virtual key), one write per request,
 * and a small response reader (status line, headers, then a body framed by content-length,
 * chunked encoding, or the end of the connection).
 *
 * Why not `http.request`: its Agent's per-request bookkeeping was most of a minimal proxy's own
 * time (the measurements are in docs/performance.md, and `npm run bench` measures both again).
 * Providers are the only servers it talks to, and it reads only what they send.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { Throttle } from '../observe/warn.js';

export interface ClientRequest {
  readonly https: boolean;
  readonly hostname: string;
  readonly port: number;
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Path and query. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | number>>;
  /** Pieces are sent in order, as one body. */
  readonly body: Buffer | readonly Buffer[] | null;
  /** Sent with the body. */
  readonly contentType?: string;
  /** What the body's memory belongs to: held from the write until the socket is done with its bytes. */
  readonly holder?: Holder | null;
  /**
   * Requests of different partitions never share a connection (the gateway gives the real and virtual key):
   * HTTP/1.1 answers in order without naming the request, so an answer a server sends out of turn
   * is read as the next request's, which then can only be one made with the same key.
   */
  readonly partition?: string;
}

/**
 * Something whose memory must not be used again while anyone still reads it (a pooled request
 * body): each reader holds it, and releases it once done.
 */
export interface Holder {
  hold(): void;
  release(): void;
}

export interface ClientResponse {
  readonly status: number;
  /** Names in lower case; repeated headers joined with ", " (set-cookie: an array), as Node does. */
  readonly headers: IncomingHttpHeaders;
  /** Ends ('end') when the whole body arrived; closes without 'end' when it was cut short. */
  readonly body: Readable;
  /** The server keeps the connection after this answer (it did not say `connection: close`). */
  readonly keepAlive: boolean;
}

/** Why a call failed before its response head was complete. */
export interface ClientFailure {
  readonly error: NodeJS.ErrnoException;
  /** The connection had served an earlier request (it may have been closed by the server meanwhile). */
  readonly reused: boolean;
  /** Some of the response had arrived. */
  readonly answered: boolean;
  /** Milliseconds from sending the request to the failure. */
  readonly elapsedMs: number;
}

export interface CallHandlers {
  onResponse(response: ClientResponse): void;
  onError(failure: ClientFailure): void;
}

/** A call in progress; abort() destroys its connection (the provider stops working on it). */
export interface Call {
  abort(): void;
  /** Whether the whole request was written to its connection: the provider may have it, and work on it. */
  readonly sent: boolean;
  /** Whether its connection had served a request before (it may have been closing). */
  readonly reused: boolean;
}

/** A response head larger than this is not from a provider. */
const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (with extensions) or a trailer line longer than this is refused. */
const MAX_LINE_BYTES = 8 * 1024;
/** Idle connections kept per pool, and for how long. */
const MAX_FREE_PER_POOL = 1024;
const FREE_IDLE_MS = 30_000;
/**
 * Requests per connection, then it is closed (nginx's keepalive_requests default). HTTP/1.1 has no
 * request ids: a server that answers one request twice shifts every later answer on its
 * connection by one, which nothing in the bytes can tell. Bytes that come while a connection is
 * idle close it; under steady load it may never be idle, and this bounds how long it lasts.
 */
const MAX_REQUESTS_PER_CONNECTION = 1000;
const SWEEP_MS = 5_000;

const CRLF_CRLF = Buffer.from('\r\n\r\n');
const LF_LF = Buffer.from('\n\n');
/** Informational (1xx) responses tolerated before the real one. */
const MAX_INFORMATIONAL = 16;
/** Header values travel inside the request head: a line break would start a header of its own. */
const UNSAFE_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

const HTTP_1 = Buffer.from('HTTP/1.', 'latin1');

/** Whether a response head's bytes so far can begin an HTTP/1.x status line. */
function startsAsHttp(head: Buffer): boolean {
  const length = Math.min(head.length, HTTP_1.length);
  return head.compare(HTTP_1, 0, length, 0, length) === 0;
}

function failure(code: string, message: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(message);
  error.code = code;
  return error;
}

/** Why a connection we closed ourselves ended. */
const ABORTED = failure('ECONNABORTED', 'the call was aborted');

// ---- the response body --------------------------------------------------------------------

/** The body as a stream; reading it slowly pauses the connection (backpressure to the provider). */
class ResponseBody extends Readable {
  /** What cut it short (a framing error, a reset), when something did. */
  cutBy: NodeJS.ErrnoException | null = null;

  constructor(private readonly exchange: Exchange) {
    super();
  }

  override _read(): void {
    this.exchange.connection?.socket.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Dropped before its end: the connection is mid-body and cannot carry another request.
    if (!this.exchange.complete) this.exchange.connection?.destroy();
    callback(error);
  }
}

/** The body was cut because its bytes broke HTTP/1.1 (a chunk size that is not one): that error, else null. */
export function malformedCut(body: Readable): NodeJS.ErrnoException | null {
  const error = body instanceof ResponseBody ? body.cutBy : null;
  return error !== null && error.code?.startsWith('HPE_') === true ? error : null;
}

/** Why a response body closed before its end, for an operator's log: the parser's or the socket's error (null: a clean close, or not known). */
export function whyCut(body: Readable): string | null {
  const error = body instanceof ResponseBody ? body.cutBy : null;
  return error === null || error === ABORTED ? null : `${error.code ?? 'error'}: ${error.message}`;
}

// ---- one request/response on a connection -------------------------------------------------

const enum Framing {
  None,
  Length,
  Chunked,
  UntilClose,
}

const enum ChunkState {
  Size,
  Data,
  DataEnd,
  Trailer,
}

class Exchange implements Call {
  connection: Connection | null;
  complete = false;
  /** The request's last byte was written to the connection. */
  sent = false;
  private head: Buffer | null = null;
  private body: ResponseBody | null = null;
  private framing = Framing.None;
  private remaining = 0;
  private chunkState = ChunkState.Size;
  private line = '';
  private keepAlive = false;
  private answered = false;
  private informational = 0;
  private readonly sentAt = performance.now();
  /** Chunk data decoded from the current read, not yet pushed. */
  private readonly gathered: Buffer[] = [];

  constructor(
    connection: Connection,
    private readonly handlers: CallHandlers,
    readonly reused: boolean,
  ) {
    this.connection = connection;
  }

  /** Bytes from the connection, in order. */
  receive(data: Buffer): void {
    this.answered = true;
    if (this.body === null) this.readHead(data);
    else this.readBody(data, 0);
  }

  private readHead(data: Buffer): void {
    let head = this.head === null ? data : Buffer.concat([this.head, data]);
    let from = this.head === null ? 0 : Math.max(0, this.head.length - 3);
    this.head = null;
    // A loop, not recursion: informational answers (100 Continue, 103 Early Hints) come before
    // the real one, possibly many in one read.
    for (;;) {
      // Empty lines before a status line are skipped, as llhttp (Node's own client) skips them.
      let blank = 0;
      while (head[blank] === 0x0d && head[blank + 1] === 0x0a) blank += 2;
      if (blank > 0) {
        head = head.subarray(blank);
        from = Math.max(0, from - blank);
      }
      if (head.length === 0 || (head.length === 1 && head[0] === 0x0d)) {
        if (head.length > 0) this.head = head; // a CR whose LF is in the next read
        return;
      }
      // What is not HTTP/1.x says so in its first bytes (an SMTP banner, HTTP/2 frames): never completed by more.
      if (!startsAsHttp(head)) return this.fail(failure('HPE_INVALID_CONSTANT', 'the response is not HTTP/1.1'));
      const end = head.indexOf(CRLF_CRLF, from);
      if (end > MAX_HEAD_BYTES) return this.fail(failure('HPE_HEADER_OVERFLOW', 'the response head is too large'));
      if (end === -1) {
        if (head.length > MAX_HEAD_BYTES) return this.fail(failure('HPE_HEADER_OVERFLOW', 'the response head is too large'));
        // Lines ended by a bare LF: not what providers send, and never completed by more bytes.
        if (head.includes(LF_LF)) return this.fail(failure('HPE_CR_EXPECTED', 'the response head has lines without CR'));
        this.head = head;
        return;
      }
      const parsed = parseHead(head.toString('latin1', 0, end));
      if (parsed === null) return this.fail(failure('HPE_INVALID_RESPONSE', 'the response is not valid HTTP/1.1'));
      const rest = end + 4;
      // A status no provider can mean (000, 101 to a request that asked no upgrade, 600) fails
      // now: waiting for a body it never frames would last until a timeout. Any other 1xx is
      // informational, known or not, and waited past (RFC 9110 §15.2), as Node's own client does.
      if (parsed.status < 100 || parsed.status > 599 || parsed.status === 101) {
        return this.fail(failure('HPE_INVALID_STATUS', `the response status ${String(parsed.status).padStart(3, '0')} is not one a request can get`));
      }
      if (parsed.status >= 200) return this.startBody(parsed, head, rest);
      if (++this.informational > MAX_INFORMATIONAL) return this.fail(failure('HPE_INVALID_RESPONSE', 'too many informational responses'));
      head = head.subarray(rest);
      from = 0;
      if (head.length === 0) return;
    }
  }

  private startBody(parsed: Head, head: Buffer, rest: number): void {
    const framing = framingOf(parsed);
    if (typeof framing === 'string') return this.fail(failure(framing, 'the response body has no valid length'));
    this.framing = framing.framing;
    this.remaining = framing.length;
    // A 204 or 304 that frames a body it cannot have: that body would be read as the next answer.
    this.keepAlive = parsed.keepAlive && framing.framing !== Framing.UntilClose && !(framing.framing === Framing.None && framesBody(parsed.headers));
    const body = new ResponseBody(this);
    this.body = body;
    this.handlers.onResponse({ status: parsed.status, headers: parsed.headers, body, keepAlive: this.keepAlive });
    if (this.framing === Framing.None) this.finish(head, rest);
    else if (rest < head.length) this.readBody(head, rest);
  }

  private readBody(data: Buffer, from: number): void {
    switch (this.framing) {
      case Framing.Length: {
        const take = Math.min(this.remaining, data.length - from);
        if (take > 0) this.push(from === 0 && take === data.length ? data : data.subarray(from, from + take));
        this.remaining -= take;
        if (this.remaining === 0) this.finish(data, from + take);
        return;
      }
      case Framing.UntilClose:
        this.push(from === 0 ? data : data.subarray(from));
        return;
      case Framing.Chunked:
        return this.readChunked(data, from);
      default:
        this.finish(data, from);
    }
  }

  /**
   * Chunks decoded from one read leave as one piece: a stream's events, one chunk each, then
   * cost one 'data' event and one write to the client per read instead of one per event.
   */
  private readChunked(data: Buffer, from: number): void {
    this.decodeChunked(data, from);
    this.flushGathered();
  }

  private flushGathered(): void {
    const gathered = this.gathered;
    if (gathered.length === 0) return;
    const piece = gathered.length === 1 ? (gathered[0] as Buffer) : Buffer.concat(gathered);
    gathered.length = 0; // emptied, not replaced: see "Memory" in docs/performance.md
    this.push(piece);
  }

  private decodeChunked(data: Buffer, from: number): void {
    let at = from;
    while (at < data.length && !this.complete) {
      switch (this.chunkState) {
        case ChunkState.Size:
        case ChunkState.Trailer: {
          const lf = data.indexOf(10, at);
          const stop = lf === -1 ? data.length : lf + 1;
          this.line += data.toString('latin1', at, stop);
          at = stop;
          if (this.line.length > MAX_LINE_BYTES) return this.fail(failure('HPE_INVALID_CHUNK_SIZE', 'a chunk line is too long'));
          if (lf === -1) return;
          const line = this.line.endsWith('\r\n') ? this.line.slice(0, -2) : this.line.slice(0, -1);
          this.line = '';
          if (this.chunkState === ChunkState.Trailer) {
            if (line === '') return this.finish(data, at);
            continue; // a trailer field: not needed
          }
          const size = parseChunkSize(line);
          if (size === null) return this.fail(failure('HPE_INVALID_CHUNK_SIZE', 'a chunk size is not hexadecimal'));
          if (size === 0) this.chunkState = ChunkState.Trailer;
          else {
            this.remaining = size;
            this.chunkState = ChunkState.Data;
          }
          break;
        }
        case ChunkState.Data: {
          const take = Math.min(this.remaining, data.length - at);
          this.gathered.push(data.subarray(at, at + take));
          this.remaining -= take;
          at += take;
          if (this.remaining === 0) {
            this.chunkState = ChunkState.DataEnd;
            this.line = '';
          }
          break;
        }
        case ChunkState.DataEnd: {
          // The CRLF after a chunk's data, possibly split across reads.
          const byte = data[at++] as number;
          if (byte === 13 && this.line === '') this.line = '\r';
          else if (byte === 10) {
            this.line = '';
            this.chunkState = ChunkState.Size;
          } else return this.fail(failure('HPE_INVALID_CHUNK_SIZE', 'a chunk does not end with CRLF'));
          break;
        }
      }
    }
  }

  private push(bytes: Buffer): void {
    if (this.body !== null && !this.body.push(bytes)) this.connection?.socket.pause();
  }

  /** The whole response is in; `data` from `at` on would be a response nobody asked for. */
  private finish(data: Buffer, at: number): void {
    this.flushGathered();
    this.complete = true;
    const connection = this.connection;
    this.connection = null;
    this.body?.push(null);
    if (connection === null) return;
    // A provider may answer before it has read the whole request (an early error): the rest of the
    // request would go out ahead of the next one on this connection.
    if (this.keepAlive && at >= data.length && connection.socket.writableLength === 0) connection.release();
    else connection.destroy();
  }

  /** Destroys its connection: the provider stops working on it. */
  abort(): void {
    const current = this.connection;
    if (current !== null) current.destroy();
    else if (!this.complete) this.closed(ABORTED);
  }

  /** The connection ended (`error` null: a clean end of stream by the server). */
  closed(error: NodeJS.ErrnoException | null): void {
    this.connection = null;
    if (this.complete) return;
    this.complete = true;
    if (this.body === null) {
      this.handlers.onError({ error: error ?? failure('ECONNRESET', 'socket hang up'), reused: this.reused, answered: this.answered, elapsedMs: performance.now() - this.sentAt });
      return;
    }
    if (error === null && this.framing === Framing.UntilClose) {
      this.body.push(null);
      return;
    }
    // Cut short: the body closes without 'end', which its readers report as incomplete. Not at
    // once: the reader may still be on its way (the response was handed over in this same read,
    // and 'close' would fire before its listeners exist).
    const body = this.body;
    body.cutBy = error;
    setImmediate(() => body.destroy());
  }

  private fail(error: NodeJS.ErrnoException): void {
    this.flushGathered(); // what arrived intact still reaches the reader, then the cut
    const connection = this.connection;
    this.closed(error);
    connection?.destroy();
  }
}

// ---- connections and pools ----------------------------------------------------------------

class Connection {
  exchange: Exchange | null = null;
  /** A call is using it (counted by its pool). */
  busy = false;
  requests = 0;
  freeSince = 0;
  private dead = false;

  constructor(
    readonly socket: net.Socket,
    private readonly pool: Pool,
  ) {
    socket.on('data', (data: Buffer) => {
      if (this.exchange !== null) this.exchange.receive(data);
      else this.destroy(); // bytes nobody asked for: the connection is not in a known state
    });
    socket.on('end', () => this.gone(null));
    socket.on('error', (error: NodeJS.ErrnoException) => this.gone(error));
    socket.on('close', () => this.gone(null));
  }

  send(bytes: readonly Buffer[], handlers: CallHandlers, holder: Holder | null): Exchange {
    const exchange = new Exchange(this, handlers, this.requests > 0);
    this.exchange = exchange;
    this.requests++;
    const socket = this.socket;
    // Writes end in order: the last one's callback (called however it ends: written, failed, or
    // the socket destroyed) means none of the bytes is read again, and, without an error, that
    // the provider may have the request.
    holder?.hold();
    const written = (error?: Error | null): void => {
      if (error == null) exchange.sent = true;
      holder?.release();
    };
    if (bytes.length === 1) {
      socket.write(bytes[0] as Buffer, written);
    } else {
      // One writev for head and body's pieces.
      socket.cork();
      for (let i = 0; i < bytes.length; i++) socket.write(bytes[i] as Buffer, i === bytes.length - 1 ? written : undefined);
      socket.uncork();
    }
    return exchange;
  }

  /** Back to the pool, ready for the next request. */
  release(): void {
    this.exchange = null;
    if (this.dead) return;
    this.socket.resume(); // a paused reader must not keep a free connection from noticing a close
    this.pool.release(this);
  }

  /** Closed by us (an abort, an unusable state): a body in progress is cut, never ended. */
  destroy(): void {
    if (this.dead) return;
    this.gone(ABORTED);
    this.socket.destroy();
  }

  private gone(error: NodeJS.ErrnoException | null): void {
    if (this.dead) {
      this.exchange?.closed(error);
      this.exchange = null;
      return;
    }
    this.dead = true;
    this.pool.remove(this);
    const exchange = this.exchange;
    this.exchange = null;
    exchange?.closed(error);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

class Pool {
  private readonly free: Connection[] = [];
  /** Connections of this pool a call is using: a pool is let go of only without any. */
  busy = 0;
  private tlsSession: Buffer | undefined;

  constructor(
    /** Its key in the client's pools (origin and partition). */
    readonly name: string,
    private readonly https: boolean,
    private readonly hostname: string,
    private readonly port: number,
    /** Tells the client this pool has nothing in use: idle connections to age out, or none at all. */
    private readonly onIdle: (pool: Pool) => void,
  ) {}

  /** The most recently freed connection (LIFO: warm, and lets idle ones age out), or a new one. */
  acquire(fresh: boolean): Connection {
    this.busy++;
    const reuse = fresh ? undefined : this.free.pop();
    const connection = reuse ?? new Connection(this.connect(), this);
    connection.busy = true;
    reuse?.socket.ref();
    return connection;
  }

  private connect(): net.Socket {
    // TCP keep-alive probes, as Node's Agent sets them: a dead peer or a dropped NAT mapping is
    // noticed on a pooled connection, or under a long silent answer.
    if (!this.https) return net.connect({ host: this.hostname, port: this.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 1000 });
    const socket = tls.connect({
      host: this.hostname,
      port: this.port,
      servername: net.isIP(this.hostname) === 0 ? this.hostname : undefined,
      ALPNProtocols: ['http/1.1'],
      session: this.tlsSession,
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1000);
    socket.on('session', (session: Buffer) => (this.tlsSession = session));
    return socket;
  }

  release(connection: Connection): void {
    this.done(connection);
    if (this.free.length >= MAX_FREE_PER_POOL || connection.requests >= MAX_REQUESTS_PER_CONNECTION) return connection.destroy();
    connection.freeSince = performance.now();
    connection.socket.unref(); // an idle connection does not keep the process alive
    this.free.push(connection);
    this.onIdle(this);
  }

  remove(connection: Connection): void {
    this.done(connection);
    const at = this.free.indexOf(connection);
    if (at !== -1) this.free.splice(at, 1);
    // Its last connection gone, never kept (a provider that closes each one, refuses them): the
    // sweeper lets the pool go as it does one whose idle connections aged out.
    if (this.busy === 0 && this.free.length === 0) this.onIdle(this);
  }

  /** A call is done with `connection` (answered, or the connection died under it). */
  private done(connection: Connection): void {
    if (!connection.busy) return;
    connection.busy = false;
    this.busy--;
  }

  /** Closes connections idle for longer than FREE_IDLE_MS (providers close theirs around a minute). */
  sweep(now: number, idleMs: number): boolean {
    while (this.free.length > 0 && now - (this.free[0] as Connection).freeSince > idleMs) (this.free[0] as Connection).destroy();
    return this.free.length > 0;
  }

  /** Closes its idle connections. */
  close(): void {
    while (this.free.length > 0) (this.free[0] as Connection).destroy();
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PATH = /^\/[\x21-\x7e]*$/;
/** At most this many header names and paths are remembered as checked (a few dozen are in use). */
const MAX_CHECKED = 1024;

/** A body larger than this is written beside its head, not copied after it into one buffer. */
const COPIED_BODY_BYTES = 16 * 1024;

/**
 * The request as the buffers to write: head and body as one buffer for a small request (one
 * packet); a large body (an agent's conversation, up to megabytes) beside its head, not copied,
 * the two written together. `checked` remembers header names and paths already found valid (they
 * come from code and keys.json).
 */
export function encodeRequest(request: ClientRequest, checked: Set<string> = new Set()): Buffer[] {
  const host = request.hostname.includes(':') ? `[${request.hostname}]` : request.hostname;
  const defaultPort = request.https ? 443 : 80;
  if (!checked.has(request.path)) {
    if (!PATH.test(request.path)) throw new TypeError('The request path holds characters that must be escaped.');
    if (checked.size < MAX_CHECKED) checked.add(request.path);
  }
  // accept-encoding: identity, because the gateway reads (and relays) bodies as they come: a
  // compressed answer would be bytes it cannot parse.
  let head = `${request.method} ${request.path} HTTP/1.1\r\nhost: ${request.port === defaultPort ? host : `${host}:${request.port}`}\r\nconnection: keep-alive\r\naccept-encoding: identity\r\n`;
  for (const name in request.headers) {
    if (!checked.has(name)) {
      if (!TOKEN.test(name)) throw new TypeError(`The header name ${JSON.stringify(name)} is not a valid token.`);
      if (checked.size < MAX_CHECKED) checked.add(name);
    }
    const value = String(request.headers[name]);
    if (UNSAFE_VALUE.test(value)) throw new TypeError(`The header ${name} holds a control character.`);
    head += `${name}: ${value}\r\n`;
  }
  const body = request.body;
  const pieces = body === null ? [] : Buffer.isBuffer(body) ? [body] : body;
  let length = 0;
  for (const piece of pieces) length += piece.length;
  if (body !== null) head += `content-type: ${request.contentType ?? 'application/octet-stream'}\r\ncontent-length: ${length}\r\n`;
  head += '\r\n';
  if (length > COPIED_BODY_BYTES) return [Buffer.from(head, 'latin1'), ...pieces];
  const headLength = Buffer.byteLength(head, 'latin1');
  const bytes = Buffer.allocUnsafe(headLength + length);
  bytes.write(head, 0, 'latin1');
  let at = headLength;
  for (const piece of pieces) at += piece.copy(bytes, at);
  return [bytes];
}

/**
 * The client: one keep-alive pool per origin (scheme, host, port) and partition, owned here so that it can be
 * closed. No cap on connections in use per origin: a request never waits behind others for a
 * connection (a wait the client's own timeout could not see); providers bound concurrency with
 * their rate limits, and the gateway's own limits bound what a key sends. Idle connections: at
 * most 1024 per pool, each closed after 30-35 s.
 */
export class HttpClient {
  constructor(
    /** How long a connection stays idle, and how often that is looked at (shorter in tests). */
    private readonly idleMs = FREE_IDLE_MS,
    private readonly sweepMs = SWEEP_MS,
  ) {}

  private readonly pools = new Map<string, Pool>();
  /** Pools with nothing in use (idle connections, or none), for the sweeper. */
  private readonly idle = new Set<Pool>();
  private sweeper: NodeJS.Timeout | null = null;
  private readonly checked = new Set<string>();
  /** Connections the gateway could not open for want of its own resources, said at most once a minute (send.ts). */
  readonly shortages = new Throttle(60_000);
  private readonly onIdle = (pool: Pool): void => {
    this.idle.add(pool);
    if (this.sweeper !== null) return;
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
    this.sweeper.unref();
  };

  /**
   * Sends a request on a pooled connection (a new one when `fresh`); the handlers hear the
   * response head or the failure.
   */
  call(request: ClientRequest, handlers: CallHandlers, fresh = false): Call {
    const bytes = encodeRequest(request, this.checked);
    const connection = this.poolFor(request).acquire(fresh);
    return connection.send(bytes, handlers, request.holder ?? null);
  }

  /** Pools held: one per origin and partition that has connections or had them lately. */
  get poolCount(): number {
    return this.pools.size;
  }

  /** Closes every idle connection; calls in progress finish (their connections are not kept). */
  close(): void {
    for (const pool of this.pools.values()) pool.close();
    for (const pool of this.idle) pool.close(); // one let go of while a call on it ran
    this.idle.clear();
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  private poolFor(request: ClientRequest): Pool {
    const origin = `${request.https ? 'https' : 'http'}://${request.hostname}:${request.port}`;
    const name = request.partition === undefined ? origin : `${origin} ${request.partition}`;
    let pool = this.pools.get(name);
    if (pool === undefined) {
      pool = new Pool(name, request.https, request.hostname, request.port, this.onIdle);
      this.pools.set(name, pool);
    }
    return pool;
  }

  private sweep(): void {
    const now = performance.now();
    for (const pool of this.idle) {
      if (pool.sweep(now, this.idleMs)) continue;
      this.idle.delete(pool);
      // No idle connection left and none in use: the pool goes too (a partition per virtual key and
      // real key, so pools of keys long gone or unused would pile up). One in use keeps it, its
      // TLS session and the connections it will free for the next requests.
      if (pool.busy === 0 && this.pools.get(pool.name) === pool) this.pools.delete(pool.name);
    }
    if (this.idle.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }
}

// ---- parsing ------------------------------------------------------------------------------

interface Head {
  status: number;
  headers: IncomingHttpHeaders;
  keepAlive: boolean;
}

// Any number of digits: a status of the wrong length is refused as a status (upstream_bad_status), not as garbage.
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{1,9})(?: |$)/;
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Headers of which Node keeps the first value when they repeat (a doubled retry-after stays readable). */
const FIRST_WINS = new Set(
  'content-type user-agent referer host authorization proxy-authorization if-modified-since if-unmodified-since from location max-forwards retry-after etag last-modified server age expires'.split(' '),
);

/** A response head (without its final CRLF CRLF), or null when it is not HTTP/1.x. */
export function parseHead(text: string): Head | null {
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = text.length;
  const match = STATUS_LINE.exec(text.slice(0, lineEnd));
  if (match === null) return null;
  const headers: IncomingHttpHeaders = {};
  let last: string | null = null;
  // One pass with indexOf: this runs once per provider answer.
  for (let start = lineEnd + 2; start < text.length; start = lineEnd + 2) {
    lineEnd = text.indexOf('\r\n', start);
    if (lineEnd === -1) lineEnd = text.length;
    if (lineEnd === start) continue;
    const first = text.charCodeAt(start);
    if ((first === 32 || first === 9) && last !== null) {
      headers[last] = `${String(headers[last])} ${text.slice(start, lineEnd).trim()}`; // an obsolete folded line
      continue;
    }
    const colon = text.indexOf(':', start);
    if (colon <= start || colon > lineEnd) return null;
    const name = text.slice(start, colon).trim().toLowerCase();
    const value = text.slice(colon + 1, lineEnd).trim();
    if (CONTROL.test(value)) return null;
    const existing = headers[name];
    if (existing === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(existing)) existing.push(value);
    else if (name === 'content-length') headers[name] = `${existing}, ${value}`; // checked when framing
    else if (!FIRST_WINS.has(name)) headers[name] = `${existing}${name === 'cookie' ? '; ' : ', '}${value}`;
    last = name;
  }
  const connection = typeof headers.connection === 'string' ? headers.connection.toLowerCase() : '';
  // An HTTP/1.0 answer with a transfer coding has framing not to be trusted: closed after it (RFC 9112, 6.1).
  const keepAlive =
    match[1] === '1' ? connection === '' || !/(?:^|,)\s*close\s*(?:,|$)/.test(connection) : /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(connection) && headers['transfer-encoding'] === undefined;
  return { status: Number(match[2]), headers, keepAlive };
}

/** How the body is delimited, or the parser error code when it cannot be told safely. */
function framingOf(head: Head): { framing: Framing; length: number } | string {
  if (head.status === 204 || head.status === 304) return { framing: Framing.None, length: 0 };
  const encoding = head.headers['transfer-encoding'];
  const length = head.headers['content-length'];
  if (typeof encoding === 'string') {
    // Both: a smuggling pattern, to be treated as an error (RFC 9112, 6.3), as Node does.
    if (length !== undefined) return 'HPE_INVALID_TRANSFER_ENCODING';
    // Another coding last: the body runs to the end of the connection (RFC 9112, 6.3).
    return /(?:^|,)\s*chunked\s*$/i.test(encoding) ? { framing: Framing.Chunked, length: 0 } : { framing: Framing.UntilClose, length: 0 };
  }
  if (length === undefined) return { framing: Framing.UntilClose, length: 0 };
  let value = length;
  if (length.includes(',')) {
    // Repeated identical values ("12, 12") are tolerated, as in Node; different ones are not.
    const values = new Set(length.split(',').map((each) => each.trim()));
    if (values.size !== 1) return 'HPE_INVALID_CONTENT_LENGTH';
    value = values.values().next().value as string;
    head.headers['content-length'] = value;
  }
  if (!/^\d{1,15}$/.test(value)) return 'HPE_INVALID_CONTENT_LENGTH';
  const bytes = Number(value);
  return bytes === 0 ? { framing: Framing.None, length: 0 } : { framing: Framing.Length, length: bytes };
}

/** The head says a body follows (a length above 0, or a transfer coding). */
function framesBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && !/^\s*0\s*$/.test(length));
}

function parseChunkSize(line: string): number | null {
  const semicolon = line.indexOf(';');
  const digits = (semicolon === -1 ? line : line.slice(0, semicolon)).trim();
  // Leading zeros do not count (RFC 9112 allows any number of digits; a size past 12 is no body's).
  if (!/^0*[0-9a-fA-F]{1,12}$/.test(digits)) return null;
  return parseInt(digits, 16);
}
