/**
 * CORS for browser clients: answered for the listed origins only, and only where browsers have
 * business (the client API and model routes, never /metrics or /healthz); everything else
 * behaves as if it were off.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OVERHEAD_HEADER } from './context.js';

const EXPOSED =
  `x-request-id, request-id, ${OVERHEAD_HEADER}, retry-after, x-should-retry, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, x-gateway-provider, x-gateway-cost-usd`;
/** Header names a browser may ask to send (SDKs add their own, e.g. x-stainless-*). */
const PLAIN_HEADER_NAMES = /^[A-Za-z0-9!#$%&'*+.^_`|~, -]{1,1000}$/;

export interface Cors {
  /**
   * Sets the CORS headers a response to `req` needs. Returns true when `req` is a preflight,
   * whose whole answer (204) is then up to the caller.
   */
  apply(req: IncomingMessage, res: ServerResponse, path: string): boolean;
}

/** `methods`: each browser route → the methods its preflight allows (e.g. `GET, DELETE, OPTIONS`). */
export function createCors(origins: readonly string[], methods: ReadonlyMap<string, string>): Cors {
  const allowAll = origins.includes('*');
  const allowedOrigin = (req: IncomingMessage): string | null => {
    const origin = req.headers.origin;
    if (typeof origin !== 'string') return null;
    if (allowAll) return '*';
    return origins.includes(origin) ? origin : null;
  };
  return {
    apply(req, res, path) {
      const allowed = methods.get(path);
      if (origins.length === 0 || allowed === undefined) return false;
      // The answer depends on the Origin header (unless every origin is allowed): caches must know.
      if (!allowAll) res.setHeader('vary', 'Origin');
      const origin = allowedOrigin(req);
      if (origin === null) return false;
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-expose-headers', EXPOSED);
      if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
      // A browser's preflight: which methods and headers a real request may use.
      res.setHeader('vary', allowAll ? 'Access-Control-Request-Headers' : 'Origin, Access-Control-Request-Headers');
      res.setHeader('access-control-allow-methods', allowed);
      const asked = req.headers['access-control-request-headers'];
      res.setHeader('access-control-allow-headers', typeof asked === 'string' && PLAIN_HEADER_NAMES.test(asked) ? asked : 'authorization, content-type');
      res.setHeader('access-control-max-age', '600');
      return true;
    },
  };
}
