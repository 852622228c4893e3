/**
 * The request as it goes to a target: the key's model map (the client's name → the target's) and
 * output cap applied, and what output a request holds against limits for want of a limit of its own.
 */
import { invalidRequest } from '../errors.js';
import type { ApiTypes, ClientApi, ParsedRequest } from '../formats/api.js';
import type { Exchange } from '../formats/translation.js';
import type { Provider } from '../providers/types.js';
import type { RequestBody } from '../upstream/types.js';
import { plainUniqueKeys } from '../formats/json-keys.js';
import { changesBetween, unchanged, type ClientBytes } from '../formats/json-splice.js';
import type { Route } from '../formats/router.js';
import type { Target } from '../policy/target.js';

/** The request as it goes to the target: the key's model map and output cap applied. */
export interface Outbound<C extends ApiTypes> {
  readonly request: C['request'];
  /** The client's bytes and what changed in them, when they may go as they are but for those members. */
  readonly raw: ClientBytes | null;
  readonly model: string;
  readonly maxOutputTokens: number;
}

/** What a request that sets no output limit reserves for its output (unless its target caps output lower). */
const UNSTATED_OUTPUT_RESERVE = 4096;

/** The output a request without an output limit holds against limits while it runs, on `target`. */
export function unstatedOutputReserve(target: Target): number {
  return Math.min(UNSTATED_OUTPUT_RESERVE, target.maxOutputTokens ?? UNSTATED_OUTPUT_RESERVE);
}

/** The most output a request holds: a client's max_tokens of 1e23 must stay an exact integer in every store that adds it. */
export const MAX_RESERVED_OUTPUT = 1e12;

/** The route translates for Messages, which requires an output limit (a request without one gets the key's cap, where it has one). */
export function toMessages<C extends ApiTypes>(route: Route<C>): boolean {
  return !route.translation.identity && route.target.name === 'messages';
}

/**
 * The key's cap is sent as the limit of a request translated for Messages that states none (a
 * thinking budget of its own is lowered below it: the rewrite's thinkingUnder).
 */
export function fillsOutputLimit<R>(forMessages: boolean, target: Target, parsed: ParsedRequest<R>): boolean {
  return forMessages && target.maxOutputTokens !== null && !parsed.statesOutputLimit;
}

/** The output limit a target is sent: the client's, or the target's cap when the client asks for more. */
export function cappedOutput(target: Target, asked: number): number {
  return target.maxOutputTokens !== null && asked > target.maxOutputTokens ? target.maxOutputTokens : asked;
}

/**
 * The key's model map (the requested name → the target's) and output cap (a target that accepts
 * fewer output tokens than clients ask for, as Claude Code asks for 32,000 to 128,000). The
 * client's own bytes go, with the members that change spliced in (json-splice.ts).
 */
export function outboundRequest<C extends ApiTypes>(api: ClientApi<C>, target: Target, parsed: ParsedRequest<C['request']>, raw: Buffer, forMessages: boolean): Outbound<C> {
  const model = target.modelMap?.map(parsed.model) ?? parsed.model;
  // Translated for Messages, which requires a limit, a request that sets none (Codex) gets the
  // key's cap rather than ANTHROPIC_DEFAULT_MAX_TOKENS: a 4,096-token default cut its longer patches.
  const unstated = fillsOutputLimit(forMessages, target, parsed);
  const maxOutputTokens = unstated ? (target.maxOutputTokens as number) : cappedOutput(target, parsed.maxOutputTokens);
  const capped = maxOutputTokens !== parsed.maxOutputTokens;
  // The client's bytes go only where every top-level key stands once and plainly: parsers differ
  // on which of two `model`s wins, and the gateway checked (and prices) the one it read.
  const document = parsed.request as object;
  const plain = plainUniqueKeys(raw, document);
  if (model === parsed.model && !capped) return { request: parsed.request, raw: plain ? unchanged(raw, document) : null, model, maxOutputTokens };
  const request = api.rewrite(parsed.request, capped ? { model, maxOutputTokens } : { model });
  return { request, raw: plain ? { raw, document, changes: changesBetween(document, request as object) } : null, model, maxOutputTokens };
}

/** JSON nested deeper than the stack allows cannot be translated or re-serialised: the client's problem. */
export function shallow<T>(work: () => T): T {
  try {
    return work();
  } catch (err) {
    if (err instanceof RangeError) throw invalidRequest('The request body is nested too deeply to process.', null, 'invalid_body');
    throw err;
  }
}

/** The request in the target's API, and the way back for its answer. */
export function translate<C extends ApiTypes>(route: Route<C>, request: C['request']): Exchange<C, ApiTypes> {
  // Passing through translates nothing: nothing to guard.
  return route.translation.identity ? route.translation.exchange(request) : shallow(() => route.translation.exchange(request));
}

/**
 * The body the target gets: the client's request translated where the target speaks another API,
 * changed where the provider needs it, and the client's own bytes where nothing changes.
 */
export function upstreamBody<C extends ApiTypes>(route: Route<C>, provider: Provider, exchange: Exchange<C, ApiTypes>, raw: ClientBytes | null): RequestBody {
  return shallow(() => {
    const translated = exchange.request;
    const adjusted = provider.adjust?.(route.target.name, translated, !route.translation.identity) ?? null;
    return adjusted !== null ? route.target.body(adjusted, null) : route.target.body(translated, route.translation.identity ? raw : null);
  });
}
