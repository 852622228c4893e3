/**
 * The request as it goes to a target: the key's model map (the client's name → the target's) and
 * output cap applied, and what output a request holds against limits for want of a limit of its own.
 */
import type { ApiTypes, ClientApi, ParsedRequest } from '../formats/api.js';
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
