/**
 * The HTTP server: every request gets its id, its cancellation and its place among the requests
 * in flight; then CORS, the route table (routes.ts), and the 404/405/500 answers. Client
 * connections (pipelining, parse errors, silent clients) are connections.ts's.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { GatewayError, toGatewayError } from '../errors.js';
import { warn } from '../observe/warn.js';
import type { SlotList } from '../slot-list.js';
import { Cancellation } from '../upstream/cancel.js';
import type { BodyMemory } from './body-memory.js';
import { Connections, type Exchange } from './connections.js';
import { stampOverhead, type RequestContext } from './context.js';
import { createCors } from './cors.js';
import { clientClosed, dropUnreadBody } from './http.js';
import { browserMethods, createRoutes, describeRoutes, routeOf, sendRouteError, type Handler, type RouteDeps, type Routes } from './routes.js';

export interface ServerDeps extends Omit<RouteDeps, 'draining'> {
  /** Origins browsers may call from (`*`: any); empty: no CORS headers, preflight refused. */
  readonly corsOrigins: readonly string[];
  /** Every running request's cancellation, so a shutdown can stop what is left. */
  readonly inFlight: SlotList<Cancellation>;
  /** A client must send its request headers within this (Node's headersTimeout; also from connecting). */
  readonly headersTimeoutMs: number;
  /** The memory request bodies may take at once (GATEWAY_MAX_BODIES_BYTES). */
  readonly bodyMemory: BodyMemory;
}

export interface GatewayServer {
  readonly http: http.Server;
  /** Requests whose handler has not settled (and so not logged) or whose response is not done. */
  activeRequests(): number;
  /** Resolves when no request is in flight. */
  whenIdle(): Promise<void>;
  /** Shutdown has begun: /healthz answers 503 and every response closes its connection. */
  drain(): void;
  /** Closes every connection without a request in progress (shutdown, once traffic is quiet). */
  closeIdleConnections(): void;
  /** Milliseconds since the last request arrived. */
  quietFor(): number;
  /** Stops every running request with `reason` (streams end with an error event). */
  cancelAll(reason: GatewayError): void;
}

/** Where a request target's path begins: after the scheme and host of an absolute-form target (`http://host/v1/…`, which a server must accept: RFC 9112, 3.2.2). */
function pathStart(url: string): number {
  if (url.charCodeAt(0) === 0x2f) return 0;
  const scheme = url.indexOf('://');
  if (scheme === -1) return 0;
  const slash = url.indexOf('/', scheme + 3);
  return slash === -1 ? url.length : slash;
}

/** Where a request target's path and query end: at a fragment, which a client never sends (it is not passed on). */
function targetEnd(url: string): number {
  const hash = url.indexOf('#');
  return hash === -1 ? url.length : hash;
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const end = targetEnd(url);
  const query = url.indexOf('?');
  const path = url.slice(pathStart(url), query === -1 || query > end ? end : query);
  return path === '' ? '/' : path;
}

function queryOf(url: string | undefined): string {
  if (url === undefined) return '';
  const end = targetEnd(url);
  const query = url.indexOf('?');
  return query === -1 || query > end ? '' : url.slice(query + 1, end);
}

/** The requests in flight: counted, cancellable, and waited for at shutdown. */
class InFlight {
  active = 0;
  lastArrival = performance.now();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly cancellations: SlotList<Cancellation>,
    private readonly connections: Connections,
  ) {}

  /**
   * A request arrived: it is in flight until both its handler has settled (its log entry is
   * recorded) and its response is over. Returns the handler's half; the response's half comes
   * when the response closes, or when its connection dies first (a response queued behind
   * another on a pipelined connection never emits 'close' then).
   */
  begin(req: IncomingMessage, res: ServerResponse, cancel: Cancellation): () => void {
    this.lastArrival = performance.now();
    this.cancellations.add(cancel);
    this.active++;
    let parts = 2;
    const partDone = (): void => {
      if (--parts > 0) return;
      this.cancellations.delete(cancel);
      this.end();
    };
    const socket = req.socket;
    let responseOver = false;
    let toldLast = false;
    const exchange: Exchange = {
      req,
      over: () => {
        if (responseOver) return;
        responseOver = true;
        this.connections.untrack(socket, exchange);
        // The client went away before its response was complete: whatever serves it stops.
        if (!res.writableFinished) cancel.cancel(clientClosed());
        partDone();
      },
      abandon: (error) => cancel.cancel(error),
      answered: () => res.writableEnded,
      lastOnConnection: (last) => {
        if (res.headersSent || last === toldLast) return;
        // Only a `close` this set is taken back: a handler's own (a 413 not reading its body) stays.
        if (last) res.setHeader('connection', 'close');
        else res.removeHeader('connection');
        toldLast = last;
      },
    };
    this.connections.track(socket, exchange);
    res.once('close', exchange.over);
    return partDone;
  }

  whenIdle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  cancelAll(reason: GatewayError): void {
    for (const cancel of this.cancellations.snapshot()) cancel.cancel(reason);
  }

  private end(): void {
    this.active--;
    if (this.active > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Whether a request comes with a body: chunked, or a length above zero (`00` is zero too). */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function notFound(context: RequestContext, served: string): GatewayError {
  return new GatewayError(404, `Unknown path: ${context.method} ${context.path}. The gateway serves ${served}.`, { code: 'not_found' });
}

function methodNotAllowed(context: RequestContext, methods: ReadonlyMap<string, Handler>): GatewayError {
  const allowed = [...methods.keys()].join(', ');
  return new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use ${allowed}.`, { code: 'method_not_allowed', headers: { allow: allowed } });
}

function internalError(req: IncomingMessage, res: ServerResponse, context: RequestContext, err: unknown): void {
  const error = toGatewayError(err);
  warn(`unexpected error: ${error.logDetail ?? error.message}`);
  if (!res.headersSent) sendRouteError(req, res, context, error);
  else res.destroy();
}

/** Runs a handler; `done` once it has settled, whatever it did. */
function run(handler: Handler, req: IncomingMessage, res: ServerResponse, context: RequestContext, done: () => void): void {
  let pending: Promise<void> | void = undefined;
  try {
    pending = handler(req, res, context);
  } catch (err) {
    internalError(req, res, context, err);
  }
  if (pending instanceof Promise) pending.catch((err: unknown) => internalError(req, res, context, err)).finally(done);
  else done();
}

export function createGatewayServer(deps: ServerDeps): GatewayServer {
  let draining = false;
  const connections = new Connections(deps.headersTimeoutMs);
  const inFlight = new InFlight(deps.inFlight, connections);
  const routes: Routes = createRoutes({ ...deps, draining: () => draining });
  const cors = createCors(deps.corsOrigins, browserMethods(routes));
  const served = describeRoutes(routes);

  /** `refused`: what the request is answered before any route sees it (an expectation not met, no Host). */
  const onRequest = (req: IncomingMessage, res: ServerResponse, refused: GatewayError | null = null): void => {
    const cancel = new Cancellation();
    const bodies = deps.bodyMemory.share();
    const context: RequestContext = { id: randomUUID(), cancel, startedAt: performance.now(), method: req.method ?? 'GET', path: pathOf(req.url), query: queryOf(req.url), bodies };
    res.setHeader('x-request-id', context.id);
    if (draining) res.setHeader('connection', 'close');
    const inFlightDone = inFlight.begin(req, res, cancel);
    if (draining) connections.arrivedLast(req.socket);
    // However the handler ends, its body no longer counts.
    const handlerDone = (): void => {
      bodies.release();
      inFlightDone();
    };

    refused ??= req.headers.host === undefined && req.httpVersion === '1.1' ? new GatewayError(400, 'An HTTP/1.1 request needs a Host header.', { code: 'bad_http_request' }) : null;
    if (refused !== null) {
      // Its body (if any) is dropped as it comes.
      dropUnreadBody(req, res);
      stampOverhead(res, performance.now() - context.startedAt);
      sendRouteError(req, res, context, refused);
      return handlerDone();
    }
    const route = routeOf(routes, context.path);
    if (cors.apply(req, res, route)) {
      stampOverhead(res, performance.now() - context.startedAt);
      res.writeHead(204);
      res.end();
      return handlerDone();
    }
    const methods = routes.get(route);
    const handler = methods === undefined ? undefined : (methods.get('*') ?? methods.get(context.method));
    if (handler === undefined) {
      stampOverhead(res, performance.now() - context.startedAt);
      sendRouteError(req, res, context, methods === undefined ? notFound(context, served) : methodNotAllowed(context, methods));
      return handlerDone();
    }
    run(handler, req, res, context, handlerDone);
  };

  const server = http.createServer(
    {
      // Above the usual load-balancer idle timeouts (nginx 60 s), so the gateway never closes a
      // connection its proxy is about to reuse.
      keepAliveTimeout: 65_000,
      headersTimeout: deps.headersTimeoutMs,
      // Node checks that timeout every 30 s by default: a shorter one would be late by that much.
      connectionsCheckingInterval: Math.min(30_000, Math.ceil(deps.headersTimeoutMs / 4)),
      noDelay: true,
      // Checked by onRequest instead, so that the 400 is the gateway's own (its error shape, a request id).
      requireHostHeader: false,
    },
    (req, res) => onRequest(req, res),
  );
  // A client that sent `Expect: 100-continue` sends its body after the 100: sent once the handler
  // starts reading it, so a request refused first (401, 404, a declared body too large) costs no
  // upload (Node closes the connection after a final answer without a 100).
  // A request without a body is sent its 100 at once: there is no upload to spare, and Node would
  // close a keep-alive connection whose answer came without one.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (hasBody(req)) {
      req.once('resume', () => {
        if (!res.headersSent) res.writeContinue();
      });
    } else {
      res.writeContinue();
    }
    onRequest(req, res);
  });
  // Any other expectation: the gateway's own 417 (Node's would have an empty body and no request id).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
    onRequest(req, res, new GatewayError(417, `The expectation "${String(req.headers.expect).slice(0, 100)}" is not supported; only "100-continue" is.`, { code: 'expectation_failed' })),
  );
  server.on('connection', (socket: Socket) => connections.accept(socket));
  // Malformed HTTP or a headers timeout: answered (400, 431, 408) after the requests before it, never a crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => connections.clientError(err, socket));
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    connections.refuse(socket, new GatewayError(405, 'CONNECT is not served: the gateway is not a forward proxy.', { code: 'method_not_allowed' })),
  );

  return {
    http: server,
    activeRequests: () => inFlight.active,
    whenIdle: () => inFlight.whenIdle(),
    drain: () => {
      draining = true;
      // A client told `keep-alive` would send its next request on a connection about to close.
      connections.lastRequests();
    },
    closeIdleConnections: () => {
      server.closeIdleConnections();
      connections.closeIdle();
    },
    quietFor: () => performance.now() - inFlight.lastArrival,
    cancelAll: (reason) => inFlight.cancelAll(reason),
  };
}
