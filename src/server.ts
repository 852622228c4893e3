/**
 * The HTTP server: a routing table (path → method → handler), the request id every response
 * carries, and the 404/405/500 answers. Handlers get everything they need passed in.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { handleChat, type ChatDeps } from './chat.js';
import { GatewayError, toGatewayError } from './errors.js';
import { sendError } from './http.js';
import type { RequestContext } from './interaction.js';
import { warn } from './log.js';

export type Handler = (req: IncomingMessage, res: ServerResponse, context: RequestContext) => Promise<void> | void;

export type GatewayDeps = ChatDeps;

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

export function createRoutes(deps: GatewayDeps): Map<string, Map<string, Handler>> {
  const chat: Handler = (req, res, context) => handleChat(req, res, context, deps);
  return new Map([
    ['/chat/completions', new Map([['POST', chat]])],
    ['/v1/chat/completions', new Map([['POST', chat]])],
  ]);
}

export interface GatewayServer {
  readonly http: http.Server;
  /** Requests whose response has not finished or closed yet. */
  readonly activeRequests: () => number;
  /** Resolves when no request is in flight. */
  readonly whenIdle: () => Promise<void>;
}

export function createGatewayServer(deps: GatewayDeps): GatewayServer {
  const routes = createRoutes(deps);
  let active = 0;
  let idleWaiters: Array<() => void> = [];
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
      headersTimeout: 66_000,
      noDelay: true,
    },
    (req, res) => {
      const context: RequestContext = {
        id: randomUUID(),
        startedAt: performance.now(),
        method: req.method ?? 'GET',
        path: pathOf(req.url),
      };
      res.setHeader('x-request-id', context.id);
      active++;
      res.once('close', requestDone);
      const methods = routes.get(context.path);
      if (methods === undefined) {
        sendError(res, new GatewayError(404, `Unknown path: ${context.method} ${context.path}. The gateway serves POST /chat/completions and POST /v1/chat/completions.`, { code: 'not_found' }));
        return;
      }
      const handler = methods.get(context.method);
      if (handler === undefined) {
        const allow = [...methods.keys()].join(', ');
        sendError(res, new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use ${allow}.`, { code: 'method_not_allowed', headers: { allow } }));
        return;
      }
      try {
        const pending = handler(req, res, context);
        if (pending !== undefined) pending.catch((err: unknown) => internalError(res, err));
      } catch (err) {
        internalError(res, err);
      }
    },
  );

  // Malformed HTTP from a client: answer 400 if the socket can still take it, never crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(new GatewayError(400, 'Malformed HTTP request.', { code: 'bad_http_request' }).toBody());
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return {
    http: server,
    activeRequests: () => active,
    whenIdle: () => (active === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))),
  };
}

function internalError(res: ServerResponse, err: unknown): void {
  const error = toGatewayError(err);
  warn(`unexpected error: ${error.logDetail ?? error.message}`);
  if (!res.headersSent) sendError(res, error);
  else res.destroy();
}
