/**
 * The HTTP server: a routing table (path → method → handler), the request id every response
 * carries, health and metrics endpoints, in-flight tracking for graceful shutdown, and the
 * 404/405/500 answers. Handlers get everything they need passed in.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Cancellation } from '../upstream/cancel.js';
import { handleChat, OVERHEAD_HEADER, type ChatDeps } from '../surfaces/chat.js';
import { Connections, type Exchange } from './connections.js';
import { handleModels } from '../surfaces/models.js';
import { GatewayError, toGatewayError } from '../errors.js';
import { clientClosed, sendError, sendJson } from './http.js';
import type { RequestContext } from '../observe/interaction.js';
import { warn } from '../observe/log.js';
import { PROMETHEUS_CONTENT_TYPE } from '../observe/metrics.js';
import type { SlotList } from '../slot-list.js';

export type Handler = (req: IncomingMessage, res: ServerResponse, context: RequestContext) => Promise<void> | void;

export interface ServerDeps extends ChatDeps {
  /** Origins browsers may call from (`*`: any); empty: no CORS headers, preflight refused. */
  readonly corsOrigins: readonly string[];
  /** Every running request's cancellation, so a shutdown can stop what is left. */
  readonly inFlight: SlotList<Cancellation>;
  /** When set, GET /metrics requires `Authorization: Bearer <token>`. */
  readonly metricsToken: string | null;
  /** Without a token, /metrics is served only by a gateway listening on a loopback address. */
  readonly metricsOpen: boolean;
  /** A client must send its request headers within this (Node's headersTimeout; also from connecting). */
  readonly headersTimeoutMs: number;
  /** The metrics text for the whole instance (in a cluster, gathered from every worker). */
  readonly renderMetrics: () => Promise<string>;
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

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** `*` handles every method itself (the chat route logs even the requests it refuses). */
type Routes = Map<string, Map<string, Handler>>;

export function createGatewayServer(deps: ServerDeps): GatewayServer {
  let draining = false;
  let active = 0;
  let lastRequestAt = performance.now();
  let idleWaiters: Array<() => void> = [];
  const connections = new Connections(deps.headersTimeoutMs);

  const chat: Handler = (req, res, context) => handleChat(req, res, context, deps);
  const stamp = (res: ServerResponse, context: RequestContext): void => {
    res.setHeader(OVERHEAD_HEADER, (performance.now() - context.startedAt).toFixed(3));
  };

  // CORS: answered for the listed origins only; everything else behaves as if it were off.
  const allowAll = deps.corsOrigins.includes('*');
  const allowedOrigin = (req: IncomingMessage): string | null => {
    const origin = req.headers.origin;
    if (typeof origin !== 'string' || deps.corsOrigins.length === 0) return null;
    if (allowAll) return '*';
    return deps.corsOrigins.includes(origin) ? origin : null;
  };
  const CORS_PATHS = new Set(['/chat/completions', '/v1/chat/completions', '/models', '/v1/models']);
  const EXPOSED = 'x-request-id, x-gateway-overhead-ms, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens';
  const health: Handler = (_req, res, context) => {
    stamp(res, context);
    if (draining) sendJson(res, 503, '{"status":"shutting_down"}');
    else sendJson(res, 200, '{"status":"ok"}');
  };
  const metrics: Handler = async (req, res, context) => {
    if (deps.metricsToken === null && !deps.metricsOpen) {
      // Key names, models and volumes are not for whoever reaches the port.
      stamp(res, context);
      sendError(res, new GatewayError(403, 'GET /metrics is served without a token only on a loopback address (GATEWAY_HOST=127.0.0.1); set METRICS_TOKEN to serve it here.', { code: 'metrics_token_required' }));
      return;
    }
    if (deps.metricsToken !== null && !safeEqual(req.headers.authorization ?? '', `Bearer ${deps.metricsToken}`)) {
      stamp(res, context);
      sendError(res, new GatewayError(401, 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.', { code: 'invalid_metrics_token' }));
      return;
    }
    const text = await deps.renderMetrics();
    stamp(res, context);
    res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const models: Handler = (req, res, context) =>
    handleModels(req, res, context, deps).catch((err: unknown) => {
      if (res.headersSent || context.cancel.cancelled) return;
      stamp(res, context);
      sendError(res, toGatewayError(err));
    });
  const routes: Routes = new Map([
    ['/chat/completions', new Map([['*', chat]])],
    ['/v1/chat/completions', new Map([['*', chat]])],
    ['/models', new Map([['GET', models]])],
    ['/v1/models', new Map([['GET', models]])],
    ['/healthz', new Map([['GET', health]])],
    ['/metrics', new Map([['GET', metrics]])],
  ]);
  /** Every route, for the 404 message (the chat routes, which take any method to log it, serve POST). */
  const served = [...routes].flatMap(([path, methods]) => [...methods.keys()].map((method) => `${method === '*' ? 'POST' : method} ${path}`)).join(', ');

  const requestDone = (): void => {
    active--;
    if (active === 0 && idleWaiters.length > 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
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
    },
    (req, res) => {
      const cancel = new Cancellation();
      const context: RequestContext = { id: randomUUID(), cancel, startedAt: performance.now(), method: req.method ?? 'GET', path: pathOf(req.url) };
      lastRequestAt = context.startedAt;
      res.setHeader('x-request-id', context.id);
      if (draining) res.setHeader('connection', 'close');
      const socket = req.socket;
      deps.inFlight.add(cancel);
      active++;
      // Done when the handler settled (its log entry is recorded) and the response is over.
      let parts = 2;
      const partDone = (): void => {
        if (--parts === 0) {
          deps.inFlight.delete(cancel);
          requestDone();
        }
      };
      let responseOver = false;
      // Over when the response closes, or when its connection dies first: a response queued
      // behind another on a pipelined connection never emits 'close' then.
      const exchange: Exchange = {
        req,
        over: () => {
          if (responseOver) return;
          responseOver = true;
          connections.untrack(socket, exchange);
          // The client went away before its response was complete: whatever serves it stops.
          if (!res.writableFinished) cancel.cancel(clientClosed());
          partDone();
        },
        abandon: (error) => cancel.cancel(error),
      };
      connections.track(socket, exchange);
      res.once('close', exchange.over);

      // CORS only where browsers have business: chat and models, never /metrics or /healthz.
      if (deps.corsOrigins.length > 0 && CORS_PATHS.has(context.path)) {
        const origin = allowedOrigin(req);
        // The answer depends on the Origin header (unless every origin is allowed): caches must know.
        if (!allowAll) res.setHeader('vary', 'Origin');
        if (origin !== null) {
          res.setHeader('access-control-allow-origin', origin);
          res.setHeader('access-control-expose-headers', EXPOSED);
          if (context.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
            // A browser's preflight: which methods and headers a real request may use.
            res.setHeader('vary', allowAll ? 'Access-Control-Request-Headers' : 'Origin, Access-Control-Request-Headers');
            res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
            // The headers the browser asks for (SDKs add their own, e.g. x-stainless-*), if they are plain header names.
            const asked = req.headers['access-control-request-headers'];
            res.setHeader('access-control-allow-headers', typeof asked === 'string' && /^[A-Za-z0-9!#$%&'*+.^_`|~, -]{1,1000}$/.test(asked) ? asked : 'authorization, content-type');
            res.setHeader('access-control-max-age', '600');
            stamp(res, context);
            res.writeHead(204);
            res.end();
            partDone();
            return;
          }
        }
      }
      const methods = routes.get(context.path);
      const handler = methods === undefined ? undefined : (methods.get('*') ?? methods.get(context.method));
      if (handler === undefined) {
        const error =
          methods === undefined
            ? new GatewayError(404, `Unknown path: ${context.method} ${context.path}. The gateway serves ${served}.`, { code: 'not_found' })
            : new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use ${[...methods.keys()].join(', ')}.`, {
                code: 'method_not_allowed',
                headers: { allow: [...methods.keys()].join(', ') },
              });
        stamp(res, context);
        sendError(res, error);
        partDone();
        return;
      }
      let pending: Promise<void> | void = undefined;
      try {
        pending = handler(req, res, context);
      } catch (err) {
        internalError(res, err);
      }
      if (pending instanceof Promise) pending.catch((err: unknown) => internalError(res, err)).finally(partDone);
      else partDone();
    },
  );

  server.on('connection', (socket: Socket) => connections.accept(socket));
  // Malformed HTTP or a headers timeout: answered (400, 431, 408) after the requests before it, never a crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => connections.clientError(err, socket));
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    connections.refuse(socket, new GatewayError(405, 'CONNECT is not served: the gateway is not a forward proxy.', { code: 'method_not_allowed' })),
  );

  return {
    http: server,
    activeRequests: () => active,
    whenIdle: () => (active === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))),
    drain: () => {
      draining = true;
    },
    closeIdleConnections: () => {
      server.closeIdleConnections();
      connections.closeIdle();
    },
    quietFor: () => performance.now() - lastRequestAt,
    cancelAll: (reason) => {
      for (const cancel of deps.inFlight.snapshot()) cancel.cancel(reason);
    },
  };
}

/** Compares secrets in constant time (digests have equal length whatever the input). */
function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

function internalError(res: ServerResponse, err: unknown): void {
  const error = toGatewayError(err);
  warn(`unexpected error: ${error.logDetail ?? error.message}`);
  if (!res.headersSent) sendError(res, error);
  else res.destroy();
}
