/**
 * Client connections: the requests each one carries, and what happens when one misbehaves.
 * Node's server leaves three gaps that a gateway facing the internet cannot:
 * - a response queued behind another on a pipelined connection never emits 'close' when the
 *   connection dies, so its request would never leave the in-flight count;
 * - on a parse error the server's `clientError` hook gets only the socket: destroying it would
 *   drop the good requests that came before the garbage;
 * - a connection that never sends a byte is never closed (its headers timeout starts with the
 *   first byte).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { SlotList } from '../slot-list.js';
import { clearDeadline, setDeadline, type Deadline } from '../upstream/deadlines.js';
import { GatewayError, openAiErrorBody } from '../errors.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { ANTHROPIC_STYLE_HEADERS, isMessagesPath } from '../surfaces/messages.js';
import { entryOf } from '../formats/json.js';
import { OVERHEAD_HEADER } from './context.js';
import { clientClosed } from './http.js';

/** One request on a connection, from its arrival until its response is over. */
export interface Exchange {
  readonly req: IncomingMessage;
  /** The response is over, or can no longer be: called once, by whichever comes first. */
  over(): void;
  /** The connection broke while this request's body was still arriving: it answers `error`. */
  abandon(error: GatewayError): void;
  /** Its answer is written whole (it may still wait behind the answers before it). */
  answered(): boolean;
  /** The connection closes after this answer (true), or not: said in its headers, if they are not sent yet. */
  lastOnConnection(last: boolean): void;
}

/**
 * Requests one connection may have waiting for their answers (pipelined). Clients send one at a
 * time; thousands pipelined on one connection (a few MB sent at once) would each hold memory and
 * a handler until answered, and stall every other client.
 */
export const MAX_PIPELINED = 32;

/** After an error answer on a broken connection, the client gets this long to read it. */
const BAD_CONNECTION_GRACE_MS = 2000;

function requestTimeout(): GatewayError {
  return new GatewayError(408, 'The request did not arrive in time.', { code: 'request_timeout' });
}

/** A client's malformed HTTP → the error it is answered with (null: the client is gone, just close). */
function clientErrorOf(err: NodeJS.ErrnoException): GatewayError | null {
  if (err.code === 'ECONNRESET') return null;
  if (err.code === 'HPE_HEADER_OVERFLOW') return new GatewayError(431, 'Request headers too large.', { code: 'headers_too_large' });
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return requestTimeout();
  return new GatewayError(400, 'Malformed HTTP request.', { code: 'bad_http_request' });
}

const REASONS: Readonly<Record<number, string>> = { 400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * The error as a whole HTTP response, written straight to a socket Node's parser has given up on:
 * in Anthropic's shape when what Node was parsing of the failing request (`head`) shows a Messages
 * route or Anthropic's style, as routes answer (sendRouteError).
 */
function rawAnswer(error: GatewayError, head: string | null): string {
  const id = randomUUID();
  const anthropic = head !== null && isAnthropicHead(head);
  const body = JSON.stringify(anthropic ? messagesErrorBody(error) : openAiErrorBody(error));
  return (
    `HTTP/1.1 ${error.status} ${entryOf(REASONS, String(error.status)) ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${id}\r\n${anthropic ? `request-id: ${id}\r\n` : ''}${OVERHEAD_HEADER}: 0.000\r\nconnection: close\r\n\r\n${body}`
  );
}

/** Of the bytes Node was parsing, at most this many before the error are looked at. */
const MAX_HEAD_READ = 64 * 1024;
// Not only after a newline: a request pipelined right after a body follows its last byte. Any
// target, and no version: the failing request's line may be what Node refused (`OPTIONS *`,
// `HTTP/1.2`, read up to where Node stopped).
// (One token for the target: an optional `https?://host` before it made the search quadratic.)
const REQUEST_LINE = /(?<![A-Z])[A-Z]+ (\S+) HTTP\//;

/**
 * What Node was parsing of the request it failed on: the bytes it read before the error, from that
 * request's line if they hold it (requests pipelined before it in the same read are not its).
 * A head that came in several reads shows only its last (null: Node said nothing).
 */
function failedHead(err: NodeJS.ErrnoException): string | null {
  const { rawPacket, bytesParsed } = err as { rawPacket?: unknown; bytesParsed?: unknown };
  if (!(rawPacket instanceof Buffer)) return null;
  const end = typeof bytesParsed === 'number' ? Math.min(bytesParsed + 1, rawPacket.length) : rawPacket.length;
  const text = rawPacket.toString('latin1', Math.max(0, end - MAX_HEAD_READ), end);
  let from = 0;
  for (const line of text.matchAll(new RegExp(REQUEST_LINE, 'g'))) from = line.index;
  return text.slice(from);
}

const ANTHROPIC_STYLE_HEADER = new RegExp(`\\n(?:${ANTHROPIC_STYLE_HEADERS.join('|')})[ \\t]*:`, 'i');

/** sendRouteError's test, on the raw head: a Messages path (an absolute URL's scheme and host aside), or a header of Anthropic's style. */
function isAnthropicHead(head: string): boolean {
  const line = REQUEST_LINE.exec(head);
  if (line !== null && line.index === 0 && isMessagesPath((line[1] as string).replace(/^https?:\/\/[^/]*/i, ''))) return true;
  return ANTHROPIC_STYLE_HEADER.test(head);
}

class ClientConnection {
  /** Requests whose response is not over, in arrival order. */
  readonly open: Exchange[] = [];
  /** A parse error, answered once the requests before it are. */
  broken: GatewayError | null = null;
  /** What Node had read of the request that broke it, if it said (its route and style choose the answer's shape). */
  private brokenHead: string | null = null;
  /**
   * The answers due go out, then the connection closes without another: garbage came in the body of
   * a request answered but not yet sent, or the client closed its side in the middle of one.
   */
  private closeAfterAnswers = false;
  /** Requests the client left unfinished when it closed its side: never answered (499). */
  private readonly left = new Set<Exchange>();
  /** Closes a connection that has sent nothing at all (null once it has, or a request began). */
  firstRequest: Deadline | null;
  private graceTimer: NodeJS.Timeout | null = null;
  /** Its place among the server's connections (SlotList). */
  slot = -1;
  /** The last request whose response ended, until another begins: its body may still be arriving (dropUnreadBody). */
  private unread: IncomingMessage | null = null;

  constructor(
    readonly socket: Socket,
    headersTimeoutMs: number,
    private readonly onClose: (connection: ClientConnection) => void,
  ) {
    this.firstRequest = setDeadline(headersTimeoutMs, () => {
      this.firstRequest = null;
      // Once bytes came, Node's own timers govern: its headers timeout for a request that has
      // begun, its keep-alive timeout after one it answered itself (a 417, say).
      if (socket.bytesRead === 0) this.fail(requestTimeout());
    });
    socket.once('close', () => this.closed());
  }

  add(exchange: Exchange): void {
    if (this.firstRequest !== null) {
      clearDeadline(this.firstRequest);
      this.firstRequest = null;
    }
    this.unread = null;
    this.open.push(exchange);
    // No client does this: it is closed, its requests cancelled as if it had left.
    if (this.open.length > MAX_PIPELINED) this.socket.destroy();
  }

  /** Only the last request in progress says the connection closes after its answer (a shutdown). */
  lastIsLast(): void {
    const open = this.open;
    for (let i = 0; i < open.length; i++) (open[i] as Exchange).lastOnConnection(i === open.length - 1);
  }

  remove(exchange: Exchange): void {
    const at = this.open.indexOf(exchange);
    if (at !== -1) this.open.splice(at, 1);
    this.left.delete(exchange);
    this.unread = exchange.req;
    if ((this.broken !== null || this.closeAfterAnswers) && this.answeredAll()) this.answerBroken();
  }

  /** Every request still open is one the client left: nothing more is due on this connection. */
  private answeredAll(): boolean {
    for (const exchange of this.open) if (!this.left.has(exchange)) return false;
    return true;
  }

  /**
   * The client closed its side (a FIN) in the middle of a request, as an SDK's timeout or a Ctrl-C
   * does: it may still read. The requests that came whole are answered; the one it left is a
   * client that left (499, unanswered); then the connection closes.
   */
  ended(): void {
    if (this.broken !== null || this.closeAfterAnswers) return;
    this.closeAfterAnswers = true;
    for (const exchange of this.open.slice()) {
      if (exchange.req.complete || exchange.answered()) continue;
      this.left.add(exchange);
      exchange.abandon(clientClosed());
    }
    if (this.answeredAll()) this.answerBroken();
  }

  /**
   * Malformed HTTP (or a timeout) on this connection. Nothing more is read from it; requests
   * that arrived whole before the garbage are answered, in order; one whose body was still
   * arriving answers the error itself; then the error is written and the connection closed.
   */
  fail(error: GatewayError | null, head: string | null = null): void {
    if (error === null || !this.socket.writable) return void this.socket.destroy();
    if (this.broken !== null || this.closeAfterAnswers) return; // Node reports each later read again: answered once
    // Garbage in the body of a request already answered (its answer sent, or queued behind
    // others'): nothing is left to answer (a second answer to the one request would be read as the
    // next request's); the answers due go out, then the connection closes. Whether its body was
    // whole is asked now: bytes that came with the request may be parsed after its answer went.
    const last = this.open.at(-1);
    if (last === undefined ? this.unread !== null && !this.unread.complete : !last.req.complete && last.answered()) {
      this.closeAfterAnswers = true;
      this.socket.pause();
      if (this.answeredAll()) this.answerBroken();
      return;
    }
    this.broken = error;
    this.brokenHead = head;
    this.socket.pause();
    for (const exchange of this.open.slice()) if (!exchange.req.complete) exchange.abandon(error);
    if (this.open.length === 0) this.answerBroken();
  }

  private answerBroken(): void {
    const socket = this.socket;
    if (socket.writable && !socket.writableEnded) {
      if (this.broken === null) socket.end();
      else socket.end(rawAnswer(this.broken, this.brokenHead));
    }
    // A client that never closes its side, or keeps trickling, must not hold the socket.
    this.graceTimer ??= setTimeout(() => socket.destroy(), BAD_CONNECTION_GRACE_MS).unref();
  }

  /** The socket is gone: every request still open on it is over, answered or not. */
  private closed(): void {
    if (this.firstRequest !== null) clearDeadline(this.firstRequest);
    this.firstRequest = null;
    if (this.graceTimer !== null) clearTimeout(this.graceTimer);
    for (const exchange of this.open.slice()) exchange.over();
    this.open.length = 0;
    this.onClose(this);
  }
}

/** Every client connection of one server. */
export class Connections {
  private readonly bySocket = new WeakMap<Socket, ClientConnection>();
  /** Every open connection, for a shutdown that must close the idle ones. */
  private readonly all = new SlotList<ClientConnection>();
  private readonly forget = (connection: ClientConnection): void => this.all.delete(connection);

  constructor(private readonly headersTimeoutMs: number) {}

  /** A new connection (the server's 'connection' event). */
  accept(socket: Socket): void {
    const connection = new ClientConnection(socket, this.headersTimeoutMs, this.forget);
    this.bySocket.set(socket, connection);
    this.all.add(connection);
  }

  /**
   * Closes every connection without a request in progress: idle keep-alive ones, and those that
   * never sent a request, or are still sending its headers (Node's closeIdleConnections leaves
   * these open up to Node 24, so one silent client would hold a shutdown for its whole timeout).
   */
  closeIdle(): void {
    for (const connection of this.all.snapshot()) if (connection.open.length === 0) connection.socket.destroy();
  }

  /**
   * The last request in progress on each connection is its last (a shutdown): its answer, if not
   * begun, says so. Only the last: an answer saying `close` ends the connection, and pipelined
   * requests behind it would lose theirs.
   */
  lastRequests(): void {
    for (const connection of this.all.snapshot()) connection.lastIsLast();
  }

  /**
   * A request arrived during a shutdown, behind others on its connection: it is the last now. The
   * one told so before (if its answer has not begun) no longer is: the connection must stay open for
   * this one's answer (its provider may already be asked).
   */
  arrivedLast(socket: Socket): void {
    this.bySocket.get(socket)?.lastIsLast();
  }

  /** A request began on its connection; `exchange.over()` must end it (it removes itself). */
  track(socket: Socket, exchange: Exchange): void {
    this.bySocket.get(socket)?.add(exchange);
  }

  untrack(socket: Socket, exchange: Exchange): void {
    this.bySocket.get(socket)?.remove(exchange);
  }

  /** The server's 'clientError' event. */
  clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    // Node's word for a client that closed its side in the middle of a request.
    const connection = err.code === 'HPE_INVALID_EOF_STATE' ? this.bySocket.get(socket) : undefined;
    if (connection !== undefined && socket.writable) return connection.ended();
    this.refuse(socket, clientErrorOf(err), failedHead(err));
  }

  /**
   * Nothing more is served on this connection: `error` is answered after the requests before it
   * (null: the client is gone, close at once). Also for what Node hands over instead of a request
   * (CONNECT): without this, Node destroys the socket and the requests before it lose their answers.
   */
  refuse(socket: Socket, error: GatewayError | null, head: string | null = null): void {
    const connection = this.bySocket.get(socket);
    if (connection === undefined) {
      if (error !== null && socket.writable) socket.end(rawAnswer(error, head));
      else socket.destroy();
      return;
    }
    connection.fail(error, head);
  }
}
