/**
 * The route table: path → method → handler. The client API routes take every method (they log
 * even the requests they refuse); the others name theirs.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { PROMETHEUS_CONTENT_TYPE } from '../observe/metrics.js';
import { chatSurface } from '../surfaces/chat.js';
import { serveCountTokens } from '../surfaces/count-tokens.js';
import { isAnthropicStyle, isMessagesPath, messagesSurface } from '../surfaces/messages.js';
import { serveModels } from '../surfaces/models.js';
import { serveCompact, serveInputTokens, serveStoredResponse, storedRouteOf } from '../surfaces/response-routes.js';
import { responsesSurface } from '../surfaces/responses.js';
import { serveSurface, type SurfaceDeps } from '../surfaces/surface.js';
import { serveUsage } from '../surfaces/usage.js';
import { bearerText } from '../policy/auth.js';
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
  /** The metrics text for the whole instance (in a cluster, gathered from every worker within `waitMs`); null: it could not be gathered. */
  readonly renderMetrics: (waitMs: number) => Promise<string | null>;
  /** Shutdown has begun: /healthz answers 503. */
  readonly draining: () => boolean;
  /** Limits are shared through Redis and it cannot be reached (null: no Redis). */
  readonly redisDown: () => boolean | null;
}

/** Paths browsers may call (CORS). */
const BROWSER_PATHS: ReadonlySet<string> = new Set([
  '/chat/completions', '/v1/chat/completions', '/v1/messages', '/v1/messages/count_tokens', '/responses', '/v1/responses',
  '/responses/input_tokens', '/v1/responses/input_tokens', '/responses/compact', '/v1/responses/compact', '/responses/{id}', '/v1/responses/{id}', '/responses/{id}/cancel',
  '/v1/responses/{id}/cancel', '/responses/{id}/input_items', '/v1/responses/{id}/input_items', '/models', '/v1/models', '/usage', '/v1/usage',
]);

/**
 * What a preflight on each browser path allows: the methods the route serves. A route taking every
 * method serves POST (its handler refuses the others with 405).
 */
export function browserMethods(routes: Routes): ReadonlyMap<string, string> {
  const allowed = new Map<string, string>();
  for (const path of BROWSER_PATHS) {
    const methods = routes.get(path);
    if (methods === undefined) continue;
    const served = methods.has('*') ? ['POST'] : [...methods.keys()];
    allowed.set(path, [...served, 'OPTIONS'].join(', '));
  }
  return allowed;
}

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
    else {
      // Redis trouble is reported, not failed on: the instance still serves (REDIS_FAILURE decides how).
      const redis = deps.redisDown();
      sendJson(res, 200, redis === null ? '{"status":"ok"}' : `{"status":"ok","redis":"${redis ? 'unavailable' : 'ok'}"}`);
    }
  };
}

function metricsHandler(deps: RouteDeps): Handler {
  return async (req, res, context) => {
    let refusal: GatewayError | null = null;
    if (deps.metricsToken === null && !deps.metricsOpen) {
      // Key names, models and volumes are not for whoever reaches the port.
      refusal = new GatewayError(403, 'GET /metrics is served without a token only on a loopback address (GATEWAY_HOST=127.0.0.1); set METRICS_TOKEN to serve it here.', { code: 'metrics_token_required' });
    } else if (deps.metricsToken !== null && !safeEqual(bearerText(req.headers.authorization) ?? '', deps.metricsToken)) {
      refusal = new GatewayError(401, 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.', { code: 'invalid_metrics_token' });
    }
    if (refusal !== null) {
      stampOverhead(res, sinceArrival(context));
      sendError(res, refusal);
      return;
    }
    const text = await deps.renderMetrics(scrapeWaitMs(req.headers['x-prometheus-scrape-timeout-seconds']));
    stampOverhead(res, sinceArrival(context));
    if (text === null) {
      // A failed scrape, not this worker's counters alone: Prometheus would read their drop as a reset.
      sendError(res, new GatewayError(503, 'The primary process did not answer in time with the other workers\' counters; try again.', { code: 'metrics_unavailable' }));
      return;
    }
    res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
}

/** How long a scrape waits for the instance's counters without a timeout of its own. */
const SCRAPE_WAIT_MS = 10_000;

/**
 * How long a scrape waits for the other workers' counters: a little less than the timeout
 * Prometheus sends (X-Prometheus-Scrape-Timeout-Seconds), so it gets the gateway's 503 rather than
 * its own timeout; under load an honest answer takes seconds (the primary also writes every
 * worker's log entries).
 */
function scrapeWaitMs(header: string | string[] | undefined): number {
  const seconds = typeof header === 'string' ? Number(header) : Number.NaN;
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(Math.max(seconds * 1000 - 500, 1000), 10 * SCRAPE_WAIT_MS) : SCRAPE_WAIT_MS;
}

export function createRoutes(deps: RouteDeps): Routes {
  const chat: Handler = (req, res, context) => serveSurface(chatSurface, req, res, context, deps);
  const messages: Handler = (req, res, context) => serveSurface(messagesSurface, req, res, context, deps);
  const responses: Handler = (req, res, context) => serveSurface(responsesSurface, req, res, context, deps);
  const inputTokens: Handler = (req, res, context) => serveInputTokens(req, res, context, deps);
  const compact: Handler = (req, res, context) => serveCompact(req, res, context, deps);
  const stored: Handler = (req, res, context) => serveStoredResponse(req, res, context, deps);
  const countTokens: Handler = (req, res, context) => serveCountTokens(req, res, context, deps);
  const models: Handler = (req, res, context) => serveModels(req, res, context, deps);
  const usage: Handler = (req, res, context) => serveUsage(req, res, context, deps);
  return new Map([
    ['/chat/completions', new Map([['*', chat]])],
    ['/v1/chat/completions', new Map([['*', chat]])],
    ['/v1/messages', new Map([['*', messages]])],
    ['/v1/messages/count_tokens', new Map([['*', countTokens]])],
    ...['/v1', ''].flatMap((prefix): Array<[string, Map<string, Handler>]> => [
      [`${prefix}/responses`, new Map([['*', responses]])],
      [`${prefix}/responses/input_tokens`, new Map([['*', inputTokens]])],
      [`${prefix}/responses/compact`, new Map([['*', compact]])],
      [`${prefix}/responses/{id}`, new Map([['GET', stored], ['DELETE', stored]])],
      [`${prefix}/responses/{id}/cancel`, new Map([['POST', stored]])],
      [`${prefix}/responses/{id}/input_items`, new Map([['GET', stored]])],
    ]),
    ['/models', new Map([['GET', models]])],
    ['/v1/models', new Map([['GET', models]])],
    ['/usage', new Map([['GET', usage]])],
    ['/v1/usage', new Map([['GET', usage]])],
    // HEAD too: some load balancers' health checks send it (Node leaves the body out).
    ['/healthz', new Map([['GET', healthHandler(deps)], ['HEAD', healthHandler(deps)]])],
    ['/metrics', new Map([['GET', metricsHandler(deps)]])],
  ]);
}

/** The route a path takes: itself, or the template of a path with an id in it (`/v1/responses/{id}`). */
export function routeOf(routes: Routes, path: string): string {
  return routes.has(path) ? path : (storedRouteOf(path) ?? path);
}

/** Every route, for the 404 message (the client API routes, which take any method to log it, serve POST). */
export function describeRoutes(routes: Routes): string {
  return [...routes].flatMap(([path, methods]) => [...methods.keys()].map((method) => `${method === '*' ? 'POST' : method} ${path}`)).join(', ');
}

/**
 * The gateway's own refusals before any handler (404, 405, 500): in Anthropic's shape, with
 * `request-id`, for Anthropic's routes and clients; OpenAI's otherwise.
 */
export function sendRouteError(req: IncomingMessage, res: ServerResponse, context: RequestContext, error: GatewayError): void {
  if (isMessagesPath(context.path) || isAnthropicStyle(req.headers)) {
    res.setHeader('request-id', context.id);
    sendError(res, error, messagesErrorBody(error));
  } else {
    sendError(res, error);
  }
}
