/**
 * A generation's call: the key's targets in their order until one answers, each given the request
 * made ready for it (its model map and output cap, translated where it speaks another API) and
 * called with its real keys in turn (upstream/call.ts). What a target answers goes back through
 * the surface (AnswerServed); a failure before any byte reached the client moves on to the next.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import type { ApiTypes, ParsedRequest } from '../formats/api.js';
import { releaseLargeMembers } from '../formats/json-bytes.js';
import type { Route } from '../formats/router.js';
import type { WayBack } from '../formats/translation.js';
import type { Interaction } from '../observe/interaction.js';
import type { Admission } from '../policy/breaker.js';
import type { VirtualKey } from '../policy/keys.js';
import { targetOrder } from '../policy/routing.js';
import type { Target } from '../policy/target.js';
import type { PooledBody } from '../server/body-pool.js';
import { callWithRetries, type HeadersWait } from '../upstream/call.js';
import { upstreamError, type Refusal } from '../upstream/errors.js';
import { ERROR_BODY_LIMIT, readAll } from '../upstream/read.js';
import { keysScrubber } from '../upstream/scrub.js';
import { withQuery, type Endpoint, type RequestBody, type UpstreamRequest, type UpstreamResponse } from '../upstream/types.js';
import { outboundRequest, toMessages, translate, upstreamBody, type Outbound } from './outbound.js';
import type { Surface, SurfaceDeps } from './surface.js';

/** What served a request: the target, its translation, the request it got, and its answer (headers in). */
export interface Served<C extends ApiTypes> {
  readonly target: Target;
  readonly route: Route<C>;
  readonly back: WayBack<C, ApiTypes>;
  readonly outbound: Outbound<C>;
  readonly upstream: UpstreamResponse;
}

/** Failures in which a target gave no answer worth passing on: the next target may serve. */
const MOVE_ON_CODES: ReadonlySet<string | null> = new Set(['upstream_unreachable', 'upstream_timeout', 'upstream_bad_status']);

/** The Vercel AI SDK's user-agent (`ai/5.0.0 ai-sdk/provider-utils/3.0.0 …`, later `ai-sdk-provider-utils/4.0.15`). */
const AI_SDK_AGENT = /(?:^|\s)ai-sdk[/-]/;

/**
 * Whether the client retries failed requests itself, as it says: the official SDKs with
 * `x-stainless-retry-count` (Claude Code, the OpenAI and Anthropic SDKs and what is built on them),
 * Codex with its `originator` (`codex_cli_rs`, `codex_exec`, `codex_vscode`), the Vercel AI SDK
 * with its user-agent.
 */
function retriesOnItsOwn(headers: IncomingHttpHeaders): boolean {
  if (headers['x-stainless-retry-count'] !== undefined) return true;
  const originator = headers.originator;
  if (typeof originator === 'string' && originator.startsWith('codex')) return true;
  const agent = headers['user-agent'];
  return agent !== undefined && AI_SDK_AGENT.test(agent);
}

/**
 * The key's targets, in their order (routing.ts), until one answers; its answer goes to the
 * client. Each target gets its own request (its model map, output cap and API: translated when it
 * speaks another) and one attempt per real key (the last: UPSTREAM_RETRIES more, real keys in
 * turn); then, before any byte reached the client, the request moves to the next target after a
 * failure to connect, a headers timeout, or a status in the key's `fallback_on` (as an HTTP
 * status, or as the provider's error in a 200), while UPSTREAM_TOTAL_TIMEOUT_MS since arrival has not passed. A target
 * whose circuit is open, or whose real keys are all cooling down, is skipped (the last one is
 * tried if nothing else was). Never after an answer was chosen: a stream that fails later fails.
 */
export async function callTargets<C extends ApiTypes>(request: AtHand<C>, answerServed: AnswerServed<C>): Promise<void> {
  const { key, pooled, req, res, interaction, deps } = request;
  const order = targetOrder(key);
  // A client that retries on its own gets no retries of a target beyond its other real keys:
  // retried at both ends, a rate limit cost three times the attempts, and the client's wait as much.
  const clientRetries = retriesOnItsOwn(req.headers);
  const several = order.length > 1;
  const cancel = interaction.context.cancel;
  const deadline = interaction.context.startedAt + deps.upstream.policy.totalTimeoutMs;
  // The 504 names the setting that applied, so an operator looks at the right one.
  const headersWait: HeadersWait = key.timeoutMs === null ? { ms: deps.upstream.policy.timeoutMs, setting: 'UPSTREAM_TIMEOUT_MS' } : { ms: key.timeoutMs, setting: "the virtual key's timeout_ms" };
  let tried = 0;
  /** The first target passed over (its circuit open, its keys cooling down), if any. */
  let passedOver: Target | null = null;
  /** The last target's failure, passed on when no other target can serve. */
  let failure: unknown = null;
  for (let i = 0; i < order.length; i++) {
    const target = order[i] as Target;
    // The breaker's admission of this request ('pass' unasked: a key with one target, or the last resort).
    const admission = several && !(i === order.length - 1 && tried === 0) ? admitTarget(target, interaction) : 'pass';
    if (admission === null) {
      passedOver ??= target;
      continue;
    }
    // The last one that can be tried: no other follows it, so it keeps its retries and its answer.
    const last = !several || !laterAvailable(order, i);
    let outcome: 'success' | 'failure' | null = null;
    // Settled once, as soon as it is known: a half-open circuit's probe holds the target out of
    // turn until then (an agent's stream of minutes must not keep a recovered target skipped).
    let settled = false;
    const settleBreaker = (): void => {
      if (settled) return;
      settled = true;
      if (outcome === 'success') target.breaker.success();
      else if (outcome === 'failure') target.breaker.failure();
      else if (admission === 'probe') target.breaker.release();
    };
    try {
      let prepared: Prepared<C>;
      try {
        const ready = prepareChecked(request, target);
        // Awaited only where the surface checks: a chat request awaits nothing here.
        prepared = ready instanceof Promise ? await ready : ready;
      } catch (err) {
        // A target the request cannot go to (a parameter it has no translation for) after another
        // failed: passed over too, and the earlier failure stands. After one passed over only: so
        // too if that one could have taken it (the targets are unavailable, 503; the request is
        // not wrong because a fallback cannot take it); else refused as that target refuses it.
        if (tried === 0) {
          if (passedOver === null) throw err;
          const refused = await refusal(request, passedOver);
          if (refused !== null) throw refused;
        }
        interaction.targetOutcome(target, 'skipped');
        continue;
      }
      if (tried > 0) interaction.fellBack();
      tried++;
      interaction.serving(target, several);
      interaction.upstreamModel = prepared.outbound.model;
      interaction.price = deps.prices.price(target.provider.name, prepared.outbound.model);
      interaction.droppedTools = prepared.back.droppedTools ?? [];
      if (several) res.setHeader('x-gateway-provider', target.provider.name);
      const attempts = interaction.attempts.length;
      let served: Served<C>;
      try {
        // Before the last target, the next target is the retry: each gets one attempt per real key
        // (a 429 or 401/403 hands over to another key not cooling down); the last gets UPSTREAM_RETRIES.
        const retries = last && !clientRetries ? deps.upstream.policy.retries : 0;
        const { body, passed, route } = prepared;
        // A pooled body is held by each write of it, until the socket is done with its bytes.
        const build = (apiKey: string): UpstreamRequest => ({ body, holder: pooled, headers: passed === undefined ? route.target.authHeaders(apiKey) : { ...route.target.authHeaders(apiKey), ...passed } });
        let upstream: UpstreamResponse;
        let refusal: Refusal;
        try {
          ({ upstream, refusal } = await callWithRetries(deps.upstream, target.keys, prepared.endpoint, build, cancel, interaction, deadline, headersWait, retries, !last || clientRetries));
        } finally {
          interaction.attributeSends();
        }
        if (several) interaction.tagAttempts(attempts, target.index);
        interaction.upstreamAnswered(upstream.status, upstream.headers, performance.now(), key.realKeys);
        if (several && key.fallbackOn.has(upstream.status)) {
          // A model the provider refuses the target's keys (its other models it serves) opens no circuit.
          outcome = refusal === 'model' ? null : 'failure';
          if (!last && !cancel.cancelled && performance.now() < deadline) {
            interaction.targetOutcome(target, 'failed');
            // Kept (its error body is small) in case no other target can serve after all.
            const body = await readAll(upstream.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber: keysScrubber(key.realKeys) });
            interaction.answerBytes = body.length;
            failure = upstreamError(upstream.status, body, upstream.headers, key.realKeys, prepared.endpoint.url);
            continue;
          }
        } else if (several) outcome = 'success';
        served = { target, route: prepared.route, back: prepared.back, outbound: prepared.outbound, upstream };
      } catch (err) {
        if (several) interaction.tagAttempts(attempts, target.index);
        const movable = err instanceof GatewayError && MOVE_ON_CODES.has(err.code);
        if (!several || !movable) throw err;
        outcome = 'failure';
        interaction.targetOutcome(target, 'failed');
        if (last || cancel.cancelled || performance.now() >= deadline) throw err;
        failure = err;
        continue;
      }
      let movedOn = false;
      try {
        const declined = await answerServed(request, served, settleBreaker);
        if (declined === null) return;
        // The provider's error in a 200 (its JSON body, its stream's first event), nothing sent to
        // the client yet: its real key and the target are held to it as to that status.
        const attempt = interaction.declined(declined);
        if (attempt !== null) target.keys.report(attempt.api_key, declined.status, null);
        if (several && key.fallbackOn.has(declined.status)) {
          outcome = 'failure';
          if (!last && !cancel.cancelled && performance.now() < deadline) {
            movedOn = true;
            failure = declined;
            continue;
          }
        }
        throw declined;
      } finally {
        if (several) interaction.targetOutcome(target, movedOn ? 'failed' : 'answered');
      }
    } finally {
      // However the attempt ended (a client that left, a refusal), a probe of a half-open circuit is settled.
      settleBreaker();
    }
  }
  // Every target left was skipped after the ones tried failed.
  throw failure ?? new GatewayError(503, 'Every target of this virtual key is cooling down after failures; try again shortly.', { code: 'targets_unavailable' });
}

/** Whether a key's target may be tried now: its breaker's admission, or null (counted as passed over). */
function admitTarget(target: Target, interaction: Interaction): Admission | null {
  if (target.keys.allCooling()) {
    interaction.targetOutcome(target, 'skipped');
    return null;
  }
  const admission = target.breaker.admit();
  if (admission === null) interaction.targetOutcome(target, 'circuit_open');
  return admission;
}

/**
 * The request made ready for a target, checked by its surface where it passes through
 * (Responses: whose stored response it continues). Passed through or translated, the request
 * lets go of its large members once its body is bytes (parsed again should another target or the
 * answer's echo need them): a conversation's tree kept as long as its answer is promoted, and
 * twenty such in flight made every young collection copy them (translated 137 KB: 0.6–0.8 ms of
 * scavenging per request, 0.25 without).
 */
function prepareChecked<C extends ApiTypes>(request: AtHand<C>, target: Target): Prepared<C> | Promise<Prepared<C>> {
  const { surface, key, parsed, interaction, deps } = request;
  const prepared = prepare(request, target);
  if (!prepared.route.translation.identity || surface.passThrough === undefined) return released(parsed, prepared);
  // Awaited only where the surface looks something up (Responses: a stored response's owner).
  const checked = surface.passThrough({ request: prepared.outbound.request, body: prepared.body, key, target, interaction, deps });
  if (checked instanceof Promise) return checked.then((body) => released(parsed, { ...prepared, body }));
  return released(parsed, { ...prepared, body: checked });
}

function released<C extends ApiTypes>(parsed: ParsedRequest<C['request']>, prepared: Prepared<C>): Prepared<C> {
  releaseLargeMembers(parsed.request as object, [prepared.outbound.request as object]);
  return prepared;
}

/** Why the request could not be made ready for `target` (one passed over: asked, not sent), or null. */
async function refusal<C extends ApiTypes>(request: AtHand<C>, target: Target): Promise<unknown> {
  try {
    await prepareChecked(request, target);
    return null;
  } catch (err) {
    return err;
  }
}

/** One client request while the surface finds it a target: what every step of that reads. */
export interface AtHand<C extends ApiTypes> {
  readonly surface: Surface<C>;
  readonly key: VirtualKey;
  readonly parsed: ParsedRequest<C['request']>;
  /** The client's body, and the pooled memory it is in (held by each upstream write of it). */
  readonly raw: Buffer;
  readonly pooled: PooledBody | null;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly interaction: Interaction;
  readonly deps: SurfaceDeps;
  /** The prompt's estimate in tokens (what a translated stream's first event reports). */
  readonly promptEstimate: number;
  readonly stored: StoredAnswer;
}

/** Where the answer a request passed through was stored at its provider, once known. */
export interface StoredAnswer {
  at: { readonly storage: string; readonly id: string } | null;
}

/** Whether a target after the i-th could be tried now (not cooling, circuit not open). */
function laterAvailable(order: readonly Target[], i: number): boolean {
  for (let j = i + 1; j < order.length; j++) {
    const other = order[j] as Target;
    if (!other.keys.allCooling() && other.breaker.state() !== 'open') return true;
  }
  return false;
}

/** A request made ready for one target: its own (model map, output cap), translated where it must be, with its endpoint. */
interface Prepared<C extends ApiTypes> {
  readonly outbound: Outbound<C>;
  readonly route: Route<C>;
  readonly back: WayBack<C, ApiTypes>;
  readonly body: RequestBody;
  readonly passed: Record<string, string> | undefined;
  readonly endpoint: Endpoint;
}

function prepare<C extends ApiTypes>({ surface, parsed, raw, req, interaction, deps }: AtHand<C>, target: Target): Prepared<C> {
  const route = deps.router.route(surface.api, target.apis);
  const outbound = outboundRequest(surface.api, target, parsed, raw, toMessages(route));
  const exchange = translate(route, outbound.request);
  const body = upstreamBody(route, target.provider, exchange, outbound.raw);
  const passed = route.translation.identity ? surface.passHeaders?.(req.headers) : undefined;
  let endpoint = target.endpoints[route.target.name];
  if (endpoint === undefined) throw new Error(`${target.provider.name} has no endpoint for ${route.target.name}`);
  if (route.translation.identity) endpoint = withQuery(endpoint, interaction.context.query);
  // The translated request is bytes now: its tree is not kept for the answer.
  const { request: _sent, ...back } = exchange;
  return { outbound, route, back, body, passed, endpoint };
}

/**
 * Answers the client with what a target sent; resolves with the provider's error when its answer
 * was one after all and nothing reached the client yet (then the next target may serve).
 */
export type AnswerServed<C extends ApiTypes> = (request: AtHand<C>, served: Served<C>, chosen: () => void) => Promise<GatewayError | null>;
