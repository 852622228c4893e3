/**
 * The route table: path → method → handler. The client API routes take every method (they log
 * even the requests they refuse); the others name theirs.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, toGatewayError } from '../errors.js';
import { PROMETHEUS_CONTENT_TYPE } from '../observe/metrics.js';
import { chatSurface } from '../surfaces/chat.js';
import { serveModels } from '../surfaces/models.js';
import { serveSurface, type SurfaceDeps } from '../surfaces/surface.js';
import { stampOverhead, type RequestContext } from './context.js';
import { sendError, sendJson } from './http.js';

export type Handler = (req: IncomingMessage, res: ServerResponse, context: RequestContext) => Promise<void> | void;

/** `*`: the handler takes every method. */
export type Routes = ReadonlyMap<string, ReadonlyMap<string, Handler>>;

export interface RouteDeps extends SurfaceDeps {
  /** When set, GET /metrics requires `Authorization: Bearer <token>`. */
  readonly metricsToken: string | null;
  /** Without a token, /metrics is served only by a gateway listening on a loopback address. */
  readonly metricsOpen: boolean;
  /** The metrics text for the whole instance (in a cluster, gathered from every worker). */
  readonly renderMetrics: () => Promise<string>;
  /** Shutdown has begun: /healthz answers 503. */
  readonly draining: () => boolean;
}

/** Paths browsers may call (CORS). */
export const BROWSER_PATHS: ReadonlySet<string> = new Set(['/chat/completions', '/v1/chat/completions', '/models', '/v1/models']);

function sinceArrival(context: RequestContext): number {
  return performance.now() - context.startedAt;
}

/** Compares secrets in constant time (digests have equal length whatever the input). */
function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

function healthHandler(deps: RouteDeps): Handler {
  return (_req, res, context) => {
    stampOverhead(res, sinceArrival(context));
    if (deps.draining()) sendJson(res, 503, '{"status":"shutting_down"}');
    else sendJson(res, 200, '{"status":"ok"}');
  };
}

function metricsHandler(deps: RouteDeps): Handler {
  return async (req, res, context) => {
    let refusal: GatewayError | null = null;
    if (deps.metricsToken === null && !deps.metricsOpen) {
      // Key names, models and volumes are not for whoever reaches the port.
      refusal = new GatewayError(403, 'GET /metrics is served without a token only on a loopback address (GATEWAY_HOST=127.0.0.1); set METRICS_TOKEN to serve it here.', { code: 'metrics_token_required' });
    } else if (deps.metricsToken !== null && !safeEqual(req.headers.authorization ?? '', `Bearer ${deps.metricsToken}`)) {
      refusal = new GatewayError(401, 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.', { code: 'invalid_metrics_token' });
    }
    if (refusal !== null) {
      stampOverhead(res, sinceArrival(context));
      sendError(res, refusal);
      return;
    }
    const text = await deps.renderMetrics();
    stampOverhead(res, sinceArrival(context));
    res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
}

function modelsHandler(deps: RouteDeps): Handler {
  return (req, res, context) =>
    serveModels(req, res, context, deps).catch((err: unknown) => {
      if (res.headersSent || context.cancel.cancelled) return;
      stampOverhead(res, sinceArrival(context));
      sendError(res, toGatewayError(err));
    });
}

export function createRoutes(deps: RouteDeps): Routes {
  const chat: Handler = (req, res, context) => serveSurface(chatSurface, req, res, context, deps);
  const models = modelsHandler(deps);
  return new Map([
    ['/chat/completions', new Map([['*', chat]])],
    ['/v1/chat/completions', new Map([['*', chat]])],
    ['/models', new Map([['GET', models]])],
    ['/v1/models', new Map([['GET', models]])],
    ['/healthz', new Map([['GET', healthHandler(deps)]])],
    ['/metrics', new Map([['GET', metricsHandler(deps)]])],
  ]);
}

/** Every route, for the 404 message (the client API routes, which take any method to log it, serve POST). */
export function describeRoutes(routes: Routes): string {
  return [...routes].flatMap(([path, methods]) => [...methods.keys()].map((method) => `${method === '*' ? 'POST' : method} ${path}`)).join(', ');
}
