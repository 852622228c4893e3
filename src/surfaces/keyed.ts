/**
 * A client request that is not a generation but still belongs to a virtual key (count tokens,
 * read or delete a stored response): authenticated, counted against the key's requests per
 * minute (as zero tokens: nothing is generated, unless the work says what it holds, as a
 * compaction does), logged and measured exactly once, and answered in its client API's error
 * shape. What it does is the caller's `work`.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import { parseObjectAnswer } from '../formats/answer.js';
import { Interaction } from '../observe/interaction.js';
import type { VirtualKey } from '../policy/keys.js';
import type { Presented } from '../policy/auth.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { sendJson } from '../server/http.js';
import { NO_CHARGE, NO_RESERVATION, type Charge, type Reservation } from '../policy/limits.js';
import { admit, answerFailure, authenticateRequest, recordRequest, settle, type SurfaceDeps } from './surface.js';

export interface KeyedRoute {
  /** The methods it serves (any other: 405). */
  readonly methods: readonly string[];
  credential(headers: IncomingHttpHeaders): Presented;
  /** How a client sends its key, for the 401 of one that sent none (given what it did send). */
  howToSendKey(headers: IncomingHttpHeaders): string;
  errorBody(error: GatewayError): unknown;
  /** Headers every answer carries beside `x-request-id`. */
  answerHeaders?(context: RequestContext): Record<string, string>;
}

/** A success (2xx). */
export interface KeyedAnswer {
  readonly status: number;
  /** JSON text: a whole object (but for a 204). */
  readonly body: Buffer | string;
  /** The body as the work already read it (checked whole): not parsed again. */
  readonly parsed?: Record<string, unknown>;
}

export interface KeyedWork {
  readonly key: VirtualKey;
  readonly interaction: Interaction;
  /**
   * Counts the request against the key's limits (or throws their 429): call it once the request is
   * known to be valid. Work that generates holds its estimate (`charge`; `promptTokens`, what it is
   * charged for its prompt should the answer say no usage); anything else holds nothing.
   */
  admit(estimate?: { readonly charge: Charge; readonly promptTokens: number }): Promise<void>;
}

export async function serveKeyed(route: KeyedRoute, req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps, work: (request: KeyedWork) => Promise<KeyedAnswer>): Promise<void> {
  const interaction = new Interaction(context);
  const headers = route.answerHeaders?.(context);
  if (headers !== undefined) for (const name in headers) res.setHeader(name, headers[name] as string);
  let key: VirtualKey | null = null;
  let reserved: Reservation | null = null;
  let promptTokens = 0;
  try {
    if (!route.methods.includes(context.method)) {
      const allowed = route.methods.join(', ');
      throw new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use ${allowed}.`, { code: 'method_not_allowed', headers: { allow: allowed } });
    }
    key = authenticateRequest(route.credential(req.headers), route.howToSendKey(req.headers), interaction, deps);
    const owner = key;
    const answer = await work({
      key: owner,
      interaction,
      admit: async (estimate) => {
        promptTokens = estimate?.promptTokens ?? 0;
        reserved = owner.rateLimit !== null || owner.budget !== null ? await admit(deps.limiter, owner, estimate?.charge ?? NO_CHARGE, context.id, res) : NO_RESERVATION;
      },
    });
    if (context.cancel.cancelled) throw context.cancel.reason;
    // A provider's answer cut short is a 502, as on the generation routes, never relayed as a success.
    const response = answer.status === 204 ? null : (answer.parsed ?? parseObjectAnswer(answer.body, 'answer'));
    stampOverhead(res, interaction.overheadMs(performance.now()));
    sendJson(res, answer.status, answer.body);
    interaction.status = answer.status;
    interaction.response = response;
  } catch (err) {
    answerFailure(err, req, res, interaction, route.errorBody);
  } finally {
    if (key !== null && reserved !== null) settle(deps.limiter, key, interaction, reserved, () => promptTokens, deps.prices);
    recordRequest(interaction, deps);
  }
}
