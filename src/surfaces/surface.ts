/**
 * A surface: one client API served over HTTP. What differs between surfaces is their API module
 * (reading requests, answering in its shape) and how a client presents its key; everything else
 * is here, once: authenticate, read and validate the body, apply the key's policy (model
 * allowlist, rate limits, budget), hand the request to its targets (targets.ts: pass-through or
 * translation, retries, fallback), answer (JSON or stream) and produce exactly one log entry and
 * one metrics observation.
 * The returned promise settles only after the entry is recorded, so a shutdown that waits for
 * requests in flight never loses one.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, invalidRequest, toGatewayError } from '../errors.js';
import type { ApiTypes, ClientApi, ParsedRequest } from '../formats/api.js';
import type { Route, Router } from '../formats/router.js';
import type { AnswerHints, WayBack } from '../formats/translation.js';
import { hasDeferredMembers } from '../formats/json-bytes.js';
import { plainUniqueKeys } from '../formats/json-keys.js';
import { withMember } from '../formats/json-splice.js';
import { totalTokens, type Usage } from '../formats/usage.js';
import { Interaction } from '../observe/interaction.js';
import type { InteractionLog } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import { authenticate, type Presented } from '../policy/auth.js';
import type { KeyStore } from '../policy/key-store.js';
import { maskKey, type VirtualKey } from '../policy/keys.js';
import { admissionError, limitsOf, NO_RESERVATION, type Charge, type Limiter, type Reservation } from '../policy/limits.js';
import { costUsd, decimalUsd, estimateUsd } from '../prices/cost.js';
import type { Prices } from '../prices/prices.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { dropUnreadBody, readBody, sendError, sendJson } from '../server/http.js';
import { LARGE_JOB_BYTES, type Turns } from '../turns.js';
import { answerErrorStatus } from '../formats/answer.js';
import type { BodyPool, PooledBody } from '../server/body-pool.js';
import { callWithRetries, type Upstream } from '../upstream/call.js';
import { redactKey, upstreamError } from '../upstream/errors.js';
import { ERROR_BODY_LIMIT, readAll } from '../upstream/read.js';
import type { Target } from '../policy/target.js';
import { ownerTag, type ResponseOwners } from '../policy/response-owners.js';
import { relayStream } from '../upstream/relay.js';
import { keysScrubber, withoutKeys, type ByteScrubber } from '../upstream/scrub.js';
import type { Cancellation } from '../upstream/cancel.js';
import type { Endpoint, RequestBody, UpstreamRequest, UpstreamResponse } from '../upstream/types.js';
import type { ModelLists } from './models.js';
import { cappedOutput, fillsOutputLimit, MAX_RESERVED_OUTPUT, toMessages, unstatedOutputReserve } from './outbound.js';
import { streamPipeline } from './stream.js';
import { callTargets, type AtHand, type Served, type StoredAnswer } from './targets.js';
import { countMediaParts, MEDIA_PART_TOKENS } from '../formats/media.js';

/** What every surface is given. */
export interface SurfaceDeps {
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  readonly metrics: Metrics;
  readonly limiter: Limiter;
  readonly maxBodyBytes: number;
  /** Memory for large bodies, used again (null: bodies are allocated per request; server/body-pool.ts). */
  readonly bodyPool: BodyPool | null;
  readonly upstream: Upstream;
  readonly router: Router;
  /** Owners of stored responses this process knows (policy/response-owners.ts). */
  readonly owners: ResponseOwners;
  /** What each model costs. */
  readonly prices: Prices;
  /** Providers' model lists, kept a minute (surfaces/models.ts). */
  readonly modelLists: ModelLists;
  /** The loop's turns, one per large body translated (turns.ts). */
  readonly turns: Turns;
}

/** A request about to pass through, for a surface that checks or changes it. */
export interface PassThroughCall<C extends ApiTypes> {
  readonly request: C['request'];
  /**
   * The body as it would go: the client's bytes only where its top-level keys are plain and
   * unique (outboundRequest); pieces where it was re-serialised (flatBody makes them one).
   */
  readonly body: RequestBody;
  readonly key: VirtualKey;
  /** The target it goes to. */
  readonly target: Target;
  readonly interaction: Interaction;
  readonly deps: SurfaceDeps;
}

/** What a passed-through answer is known by: its id, and (read only if asked) its output items' ids. */
export interface AnswerIds {
  readonly id: string;
  items(): readonly string[];
}

export interface Surface<C extends ApiTypes> {
  readonly api: ClientApi<C>;
  /** The virtual key the request presents (null: none). */
  credential(headers: IncomingHttpHeaders): Presented;
  /** How a client sends its key, for the 401 of one that sent none (given what it did send). */
  howToSendKey(headers: IncomingHttpHeaders): string;
  /** Headers every answer carries beside `x-request-id` (Anthropic's clients read `request-id`). */
  answerHeaders?(context: RequestContext): Record<string, string>;
  /** The client's own headers passed on when its API passes through (Anthropic's version and betas). */
  passHeaders?(headers: IncomingHttpHeaders): Record<string, string>;
  /**
   * Passing through: checks the request against what the gateway knows and returns the body to
   * send (Responses: a stored response it continues must be the key's own; the one it stores is
   * tagged with its owner. Messages: a thread it continues must be the key's own).
   */
  passThrough?(call: PassThroughCall<C>): RequestBody | Promise<RequestBody>;
  /** Passing through: `target`'s provider answered with an answer of this id (Responses, a thread's reply: remembered as the key's there). */
  answered?(answer: AnswerIds, request: C['request'], key: VirtualKey, target: Target, deps: SurfaceDeps): void;
  /**
   * The id of the stored answer whose conversation the request continues at its provider
   * (`previous_response_id`, a thread's `previous_message_id`), or null: the provider reads that
   * conversation too, and bills it.
   */
  continues?(request: C['request']): string | null;
}

/** A non-streamed answer larger than this is not an answer. */
const RESPONSE_LIMIT = 64 * 1024 * 1024;

/**
 * The longest model name taken. A client chooses it, and it becomes a metrics label and a log
 * field: 1 MB names grew a gateway by 500 MB and its /metrics to 300 MB. Real ones (fine-tunes,
 * Bedrock ARNs, a server's model path) are far shorter.
 */
const MAX_MODEL_CHARS = 256;

/** The request's model name, refused with a 400 beyond MAX_MODEL_CHARS before it is recorded anywhere. */
export function acceptedModel(model: string): string {
  if (model.length > MAX_MODEL_CHARS) throw invalidRequest(`model: must be at most ${MAX_MODEL_CHARS} characters (this one has ${model.length})`, 'model', 'invalid_value');
  return model;
}

/** The key's model allowlist; the refusal names nothing the key may not see. */
export function checkModel(key: VirtualKey, model: string): void {
  if (key.models !== null && !key.models.allows(model)) {
    // A 404, as the providers answer a model a key cannot use: clients take a 403 for a bad key
    // (Claude Code says "Please run /login"), and a 404 for a model to change.
    throw new GatewayError(404, `The model "${model}" is not allowed for this virtual key.`, { type: 'invalid_request_error', code: 'model_not_allowed', param: 'model' });
  }
}

/** The media parts of a request whose conversation may be bytes not yet parsed: none where they are not JSON after all (the request failed for it). */
function countedMedia(request: unknown, types: ReadonlySet<string>): number {
  try {
    return countMediaParts(request, types);
  } catch {
    return 0;
  }
}

/** One request through a surface: see the module comment. */
export async function serveSurface<C extends ApiTypes>(surface: Surface<C>, req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  const interaction = new Interaction(context);
  const cancel = context.cancel;
  let key: VirtualKey | null = null;
  /** What admission reserved (null: not admitted, nothing to settle), and the prompt's estimate in tokens. */
  let reserved: Reservation | null = null;
  let promptEstimate = 0;
  /** Whether promptEstimate counts the body's media parts (else they are counted should the answer's usage never come). */
  let mediaCounted = false;
  /** The body's pooled memory, if any: held until the request is done with it (server/body-pool.ts). */
  let pooled: PooledBody | null = null;
  let parsed: ParsedRequest<C['request']> | null = null;
  /** The answer stored at its provider, passed through (its conversation's size is remembered once it ends). */
  const stored: StoredAnswer = { at: null };
  const answerHeaders = surface.answerHeaders?.(context);
  if (answerHeaders !== undefined) for (const name in answerHeaders) res.setHeader(name, answerHeaders[name] as string);
  try {
    if (context.method !== 'POST') {
      throw new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use POST.`, { code: 'method_not_allowed', headers: { allow: 'POST' } });
    }
    key = authenticateRequest(surface.credential(req.headers), surface.howToSendKey(req.headers), interaction, deps);

    const read = await readBody(req, deps.maxBodyBytes, cancel, deps.bodyPool, context.bodies);
    pooled = read.pooled;
    const raw = read.bytes;
    const largeTranslation = raw.length >= LARGE_JOB_BYTES && translated(surface.api, key, deps.router);
    if (largeTranslation) await turnOf(deps.turns, cancel);
    parsed = parse(surface.api, raw, interaction, pooled);
    checkModel(key, parsed.model);
    const limited = key.rateLimit !== null || key.budget !== null;
    // ~4 bytes per token: what a stream's first event reports, and what limits hold until the answer
    // says; images and files by URL or id held at their worth where the body was parsed whole
    // (a large one's conversation is bytes: counted only should its usage never come).
    promptEstimate = Math.ceil(raw.length / 4);
    if (!hasDeferredMembers(parsed.request)) {
      promptEstimate += MEDIA_PART_TOKENS * countMediaParts(parsed.request, surface.api.mediaTypes);
      mediaCounted = true;
    }
    // A stored conversation it continues, as large as this process saw it last: read (and billed) too.
    const continued = surface.continues?.(parsed.request) ?? null;
    if (continued !== null) promptEstimate += storedContext(deps.owners, key, continued);
    if (limited) {
      const request = parsed; // a const the closure below can rely on
      const fillsLimit = (target: Target): boolean => fillsOutputLimit(toMessages(deps.router.route(surface.api, target.apis)), target, request);
      reserved = await admit(deps.limiter, key, estimate(key, parsed, promptEstimate, deps.prices, fillsLimit), context.id, res, largeTranslation ? deps.turns : null);
      if (cancel.reason !== null) throw cancel.reason;
    } else {
      reserved = NO_RESERVATION;
    }

    await callTargets({ surface, key, parsed, raw, pooled, req, res, interaction, deps, promptEstimate, stored }, answerServed);
  } catch (err) {
    answerFailure(err, req, res, interaction, surface.api.errorBody);
  } finally {
    if (key !== null && reserved !== null) {
      const request = parsed?.request;
      const unreported = mediaCounted || request === undefined ? () => promptEstimate : () => promptEstimate + MEDIA_PART_TOKENS * countedMedia(request, surface.api.mediaTypes);
      settle(deps.limiter, key, interaction, reserved, unreported, deps.prices);
    }
    // The conversation the stored answer closes: what a request continuing it will make the provider read.
    if (stored.at !== null) deps.owners.setContext(stored.at.storage, stored.at.id, interaction.usage === null ? promptEstimate : totalTokens(interaction.usage));
    recordRequest(interaction, deps);
    // Last: the answer is done with the client's bytes; upstream writes and the log's entry hold them themselves.
    pooled?.release();
  }
}

/**
 * Answers the client with what `served`'s provider sent: its error status as an error, else its
 * answer, whole or streamed. Resolves with the provider's error when its answer was one after all
 * (a 200 whose JSON body is an error, or whose stream's first event is) and nothing reached the
 * client yet: callTargets moves on from it as from that status, or throws it (answered as its status).
 */
async function answerServed<C extends ApiTypes>({ surface, key, parsed, res, interaction, deps, promptEstimate, stored }: AtHand<C>, { target, route, back, outbound, upstream }: Served<C>, chosen: () => void): Promise<GatewayError | null> {
  const cancel = interaction.context.cancel;
  // Whatever the provider sends may reach the client or the log: every real key the request may have sent comes out.
  const apiKeys = key.realKeys;
  const scrubber = keysScrubber(apiKeys);
  const idleMs = deps.upstream.policy.idleTimeoutMs;
  if (upstream.status < 200 || upstream.status > 299) {
    const error = await readAll(upstream.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel, idleMs, scrubber });
    interaction.upstreamEndedAt = performance.now();
    interaction.answerBytes = error.length;
    // Told not to retry only where no other target could serve the retry.
    const failed = upstreamError(upstream.status, error, upstream.headers, apiKeys, target.endpoints[route.target.name]?.url, upstream.noRetry === true && key.targets.length === 1);
    // Translated, the answer is in the client's API, where a request the provider cannot serve is
    // a 400: a chat provider's 422 (DeepSeek's invalid parameters) had Codex retry it four times.
    throw !route.translation.identity && failed.status === 422 ? failed.withStatus(400) : failed;
  }
  // Passed through, what the answer is known by is remembered before its last bytes go: the
  // client's next request (on another worker, told over IPC ahead of its connection) may name it.
  const answered = surface.answered;
  const remember =
    route.translation.identity && answered !== undefined
      ? (ids: AnswerIds) => {
          answered(ids, outbound.request, key, target, deps);
          stored.at = { storage: target.storage, id: ids.id };
        }
      : null;
  // Translated, or passed through where the key's model map sent another model: the one the
  // client asked for, which the answer is named after where its API needs that (api.ts:
  // namedAfter; Claude Code drops a turn's thinking when the answer names another model, and a
  // provider may answer with a dated name of its own).
  const asked = !route.translation.identity || outbound.model !== parsed.model ? parsed.model : null;
  const answering: Answering<C> = { api: surface.api, route, back, parsed, res, interaction, deps, apiKeys, scrubber, promptEstimate, asked, remember, chosen };
  if (parsed.stream) return answerStream(answering, upstream);
  const answer = await readAll(upstream.body, { limit: RESPONSE_LIMIT, truncate: false, cancel, idleMs, scrubber });
  interaction.upstreamEndedAt = performance.now();
  interaction.answerBytes = answer.length;
  return answerJson(answering, answer, upstream.headers);
}

/** A request that failed: answered in its API's error shape, unless the client left or the answer had begun. */
export function answerFailure(err: unknown, req: IncomingMessage, res: ServerResponse, interaction: Interaction, errorBody: (error: GatewayError) => unknown): void {
  // A cancellation explains whatever error it caused (a destroyed socket, a rejected read).
  const cancelled = interaction.context.cancel.reason;
  const error = cancelled ?? toGatewayError(err);
  // Unanswered only when this client left: a 499 from anywhere else is still answered.
  if (res.headersSent || cancelled?.status === 499) {
    interaction.failed(error, null);
    return;
  }
  // An unread body (a 401 answered first, a 413) is dropped as it comes; on a connection the
  // client broke (garbage, a timeout) nothing more is read: it closes.
  if (cancelled === null) dropUnreadBody(req, res);
  else if (!req.complete) res.setHeader('connection', 'close');
  stampOverhead(res, interaction.overheadMs(performance.now()));
  interaction.failed(error, sendError(res, error, errorBody(error)));
}

/** The end of every client request, however it went: one metrics observation and one log entry. */
export function recordRequest(interaction: Interaction, deps: SurfaceDeps): void {
  const cancelled = interaction.context.cancel.reason;
  if (cancelled?.status === 499) {
    interaction.status = 499;
    interaction.error ??= cancelled;
  }
  const now = performance.now();
  deps.metrics.request(interaction.observation(now));
  if (deps.log.enabled) deps.log.record(interaction.toEntry(now), interaction.answerBytes);
}

/**
 * On the routes that are not logged (`/v1/models`, `/v1/usage`), a refused key still is, and
 * counted in the metrics: guesses at virtual keys show wherever they are tried.
 */
export function recordRefusedKey(interaction: Interaction, error: GatewayError, body: unknown, deps: SurfaceDeps): void {
  if (error.status !== 401) return;
  interaction.failed(error, body);
  recordRequest(interaction, deps);
}

/** The virtual key a request presents, recorded in its interaction; or the 401. */
export function authenticateRequest(presented: Presented, howToSendKey: string, interaction: Interaction, deps: SurfaceDeps): VirtualKey {
  let key: VirtualKey;
  try {
    key = authenticate(presented, deps.keys, howToSendKey);
  } catch (err) {
    // Never log a presented key that matched nothing in full: it may be someone's real secret.
    const first = typeof presented === 'string' ? presented : presented?.[0];
    if (first !== undefined) interaction.virtualKey = maskKey(first);
    throw err;
  }
  identify(interaction, key);
  return key;
}

function identify(interaction: Interaction, key: VirtualKey): void {
  interaction.virtualKey = key.id;
  interaction.keyName = key.label;
  interaction.authenticated = true;
  interaction.serving(key.targets[0] as Target, key.targets.length > 1);
}

/**
 * The key's first target translates the request: a large one is parsed and written again whole
 * (~15 ms per MB), at a turn of the loop of its own (turns.ts), taken before it is parsed (taken
 * just before the translation instead, it cost more: docs/performance.md). Decided by the first
 * target in the file even where a weighted key's request may start at another: known before
 * the body is read, and a wrong guess costs a turn of the loop, or one translation taking none.
 */
function translated<C extends ApiTypes>(api: ClientApi<C>, key: VirtualKey, router: Router): boolean {
  const first = key.targets[0];
  return first !== undefined && !router.route(api, first.apis).translation.identity;
}

async function turnOf(turns: Turns, cancel: Cancellation): Promise<void> {
  await turns.take();
  // A client that left while its turn came costs nothing more.
  if (cancel.reason !== null) throw cancel.reason;
}

function parse<C extends ApiTypes>(api: ClientApi<C>, raw: Buffer, interaction: Interaction, pooled: PooledBody | null): ParsedRequest<C['request']> {
  const parsed = interaction.readRequest(raw, (bytes) => api.parseRequest(bytes), (read) => read.request, pooled);
  interaction.model = acceptedModel(parsed.model);
  interaction.stream = parsed.stream;
  return parsed;
}

/**
 * What a request holds against its key's limits while it runs: its prompt and output limit in
 * tokens, and, for a budget in USD, their cost at its model's price (the largest any target may be
 * sent). A key whose budget is in USD cannot use a model without a price: its spend could not be counted.
 */
function estimate<R>(key: VirtualKey, parsed: ParsedRequest<R>, promptTokens: number, prices: Prices, fillsLimit: (target: Target) => boolean): Charge {
  let tokens = 0;
  let usd = 0;
  for (const target of key.targets) {
    // A request without an output limit may generate up to the model's own: it holds a default's worth.
    // A trillion at most: a client's max_tokens of 1e23 must stay an exact integer in every store that adds it.
    // One translated for Anthropic is sent the key's cap as its limit (outboundRequest): it holds that.
    const unstated = fillsLimit(target) ? (target.maxOutputTokens as number) : unstatedOutputReserve(target);
    // Each of a chat request's `n` answers may generate that much (and is billed).
    const output = Math.min(MAX_RESERVED_OUTPUT, (parsed.maxOutputTokens > 0 ? cappedOutput(target, parsed.maxOutputTokens) : unstated) * parsed.choices);
    tokens = Math.max(tokens, promptTokens + output);
    if (key.budget?.maxUsd == null) continue;
    const model = target.modelMap?.map(parsed.model) ?? parsed.model;
    const price = prices.price(target.provider.name, model);
    if (price === null) throw notPriced(model, parsed.model);
    usd = Math.max(usd, estimateUsd(price, promptTokens, output));
  }
  return { tokens, usd };
}

/** The refusal of a model without a price for a key whose budget is in USD; `asked`: the model the client named, where the key's model_map sends it to `model`. */
export function notPriced(model: string, asked = model): GatewayError {
  const named = asked === model ? `"${model}"` : `"${model}" (which this virtual key's model_map sends "${asked}" to)`;
  // A 404, as a model not allowed is.
  return new GatewayError(404, `The model ${named} has no price in this gateway's price table, and this virtual key's budget is in USD: ask its operator to add the price (PRICES_FILE).`, {
    type: 'invalid_request_error',
    code: 'model_not_priced',
    param: 'model',
  });
}

/**
 * Admits the request against the key's limits (its headers go on the answer) or throws the 429;
 * returns what it reserved. `turns`: given for a large body to be translated, which takes a turn
 * of the loop of its own again when its admission came from elsewhere (Redis, a cluster's
 * primary): answers read in one poll would otherwise have their translations run back to back.
 */
export async function admit(limiter: Limiter, key: VirtualKey, estimate: Charge, id: string, res: ServerResponse, turns: Turns | null = null): Promise<Reservation> {
  const answer = limiter.admit(limitsOf(key), estimate, id);
  const admission = answer instanceof Promise ? await answer : answer;
  for (const name in admission.headers) res.setHeader(name, admission.headers[name] as string);
  const refused = admissionError(admission);
  if (refused !== null) throw refused;
  if (turns !== null && answer instanceof Promise) await turns.take();
  return { charge: estimate, where: admission.where ?? 'local', ticket: admission.ticket ?? null, lease: admission.lease ?? null };
}

/**
 * What a request is charged, in tokens and USD (against tokens per minute, budgets and the key's
 * spend): the answer's usage; or, for an answer cut short after it began (the client left, the
 * stream failed), an estimate: the prompt plus one token per streamed event, since dropping a
 * stream before its usage does not make it free; for a whole answer without usage, the prompt
 * plus its size in tokens; and for every attempt written whole to a provider that got no answer
 * (the client left, the wait ran out, the connection failed after it), its prompt, beside whatever
 * another attempt was charged; nothing for a refusal (providers do not bill them, whatever their
 * status: some answer an error with a 200), or an attempt never written whole. The cost is null
 * when tokens were used of a model without a price.
 */
export function settle(limiter: Limiter, key: VirtualKey, interaction: Interaction, reserved: Reservation, promptEstimate: () => number, prices: Prices): void {
  const reported = interaction.usage;
  let usage: Usage | null = reported;
  const status = interaction.upstreamStatus;
  if (usage === null && status !== null && status >= 200 && status < 300 && !interaction.answeredWithError) {
    usage = { input: promptEstimate(), output: Math.max(interaction.streamedEvents, interaction.unreportedOutput), cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 };
  } else if (usage !== null && !interaction.usageFinal && (interaction.error !== null || interaction.context.cancel.cancelled) && usage.output < interaction.streamedEvents) {
    // A stream cut short has only its usage so far (Anthropic's message_start says 1 output token): at least what was relayed.
    usage = { ...usage, output: interaction.streamedEvents };
    interaction.usage = usage;
  }
  const answered = usage;
  let usd: number | null = answered === null || totalTokens(answered) === 0 ? 0 : interaction.price === null ? null : costUsd(interaction.price, answered);
  const unanswered = interaction.unansweredSends;
  let unpricedSends = false;
  let pricedSends = false;
  if (unanswered > 0) {
    // Attempts written whole that got no answer (the client left, the wait ran out, the connection
    // failed after it; perhaps before another attempt answered): the provider read the prompt, and
    // may have answered it for nobody, so it is not free. Each at its own target's price.
    const prompt = promptEstimate();
    const none = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 };
    usage = { ...(answered ?? none), input: (answered?.input ?? 0) + prompt * unanswered };
    for (let i = 0; i < unanswered && prompt > 0; i++) {
      const send = interaction.unansweredSend(i);
      // A model without a price is said by its name; the rest of the cost stands.
      if (send.price === null) {
        prices.unpriced(send.provider, send.model);
        unpricedSends = true;
      } else {
        pricedSends = true;
        if (usd !== null) usd += costUsd(send.price, { ...none, input: prompt });
      }
    }
    // Nothing priced was used beside them: the request's cost is unknown, as an unpriced answer's is.
    if (unpricedSends && !pricedSends && (answered === null || totalTokens(answered) === 0)) usd = null;
  }
  const tokens = usage === null ? 0 : totalTokens(usage);
  interaction.costUsd = usd;
  if (usd === null && !unpricedSends) prices.unpriced(interaction.provider ?? '', interaction.upstreamModel ?? interaction.model ?? '');
  limiter.record(limitsOf(key), { tokens, usd: usd ?? 0, usage: reported, unpriced: usd === null }, reserved);
}

/** A body as one piece, for a surface that changes its bytes (copied only when it is in pieces). */
export function flatBody(body: RequestBody): Buffer | string {
  return typeof body === 'string' || Buffer.isBuffer(body) ? body : Buffer.concat(body);
}

/**
 * The tokens of the stored conversation `id` as this process last saw it, at the largest of the
 * key's targets (the request goes to one of them): not known (0) where it was answered before a
 * restart, or by another worker or instance.
 */
function storedContext(owners: ResponseOwners, key: VirtualKey, id: string): number {
  // Only the key's own: another's is refused as not found, and its size is none of this key's business.
  const tag = ownerTag(key.id);
  let tokens = 0;
  for (const target of key.targets) tokens = Math.max(tokens, owners.context(target.storage, id, tag));
  return tokens;
}

/** A provider's answer on its way back to the client, whole or streamed. */
interface Answering<C extends ApiTypes> {
  readonly api: ClientApi<C>;
  readonly route: Route<C>;
  readonly back: WayBack<C, ApiTypes>;
  readonly parsed: ParsedRequest<C['request']>;
  readonly res: ServerResponse;
  readonly interaction: Interaction;
  readonly deps: SurfaceDeps;
  /** Every real key the request may have sent (taken out of what the gateway assembles), and the scrubber of the provider's bytes. */
  readonly apiKeys: readonly string[];
  readonly scrubber: ByteScrubber;
  readonly promptEstimate: number;
  /** The model the client asked for, where the key's model map sent another (null: the same). */
  readonly asked: string | null;
  /** Passed through: what the answer is known by, remembered before its last bytes go (null: nothing to). */
  readonly remember: ((ids: AnswerIds) => void) | null;
  /** Told once the answer is the client's (its first bytes go, or it is not the provider's error after all). */
  readonly chosen: () => void;
}

/** A provider's whole answer to a request that is not a generation (a count, a stored response). */
export interface WholeAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One such request to `target` (its real keys in turn, retries), its answer read whole and scrubbed of every real key of the target (Target.secrets). */
export async function callWhole(target: Target, endpoint: Endpoint, build: (apiKey: string) => UpstreamRequest, limit: number, interaction: Interaction, deps: SurfaceDeps): Promise<WholeAnswer> {
  const cancel = interaction.context.cancel;
  const { upstream } = await callWithRetries(deps.upstream, target.keys, endpoint, build, cancel, interaction);
  interaction.upstreamAnswered(upstream.status, upstream.headers, performance.now(), target.secrets);
  const body = await readAll(upstream.body, { limit, truncate: false, cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber: keysScrubber(target.secrets) });
  interaction.upstreamEndedAt = performance.now();
  interaction.answerBytes = body.length;
  return { status: upstream.status, headers: upstream.headers, body };
}

function answerHints(interaction: Interaction, promptEstimate: number): AnswerHints {
  return { promptTokens: promptEstimate, answerId: interaction.context.id.replaceAll('-', '') };
}

/** Answers a whole (non-stream) answer; returns the provider's error instead when the answer was one (with a 200: some servers and proxies). */
function answerJson<C extends ApiTypes>({ api, route, back, res, interaction, promptEstimate, asked, apiKeys, remember, chosen }: Answering<C>, body: Buffer, headers: IncomingHttpHeaders): GatewayError | null {
  const hints = answerHints(interaction, promptEstimate);
  let answer: ReturnType<Route<C>['target']['parseResponse']>;
  try {
    answer = route.target.parseResponse(body);
  } catch (err) {
    const error = errorAnswered(body, headers, apiKeys, interaction);
    if (error === null) throw err;
    return error;
  }
  chosen();
  const usage = route.target.usage(answer);
  interaction.usage = usage;
  // An OpenAI-compatible server that reports no usage still generated: its answer's size says how much.
  if (usage === null) interaction.unreportedOutput = Math.ceil(body.length / 4);
  if (!route.translation.identity) interaction.providerUsage = (answer as { usage?: unknown }).usage ?? null;
  // Translated, the answer is the gateway's own text: a key the provider split between content
  // blocks, or spelled inside a tool call's arguments, can be whole in it.
  const translated = route.translation.identity ? back.response(answer, hints) : withoutKeys(back.response(answer, hints), apiKeys);
  const renamed = asked !== null && api.namedAfter !== undefined;
  const response = renamed ? api.namedAfter.response(translated, asked) : translated;
  // For clients that want it; a stream's cost is known only after its headers went (the log has it).
  if (usage !== null && interaction.price !== null) res.setHeader('x-gateway-cost-usd', decimalUsd(costUsd(interaction.price, usage)));
  stampOverhead(res, interaction.overheadMs(performance.now()));
  // Passed through, the provider's own bytes (checked whole above) go on unchanged, or with the
  // model the client asked for spliced in (a tool call's input is not re-serialised: an integer
  // past 2^53 in it would change).
  const passed = !route.translation.identity ? null : renamed ? renamedBody(body, asked) : body;
  const id = (answer as { id?: unknown }).id;
  const target = route.target;
  if (remember !== null && typeof id === 'string') remember({ id, items: () => target.answerItems?.(answer) ?? [] });
  sendJson(res, 200, passed ?? JSON.stringify(response));
  interaction.status = 200;
  interaction.response = response;
  return null;
}

/** A 2xx answer whose body is an error (some servers and proxies): that error, at the status it stands for; null for one that is not. */
function errorAnswered(body: Buffer, headers: IncomingHttpHeaders, apiKeys: readonly string[], interaction: Interaction): GatewayError | null {
  const status = answerErrorStatus(body);
  if (status === null) return null;
  interaction.answeredWithError = true;
  return upstreamError(status, body, headers, apiKeys);
}

/** A passed-through answer's bytes with its `model` replaced (null: it cannot be spliced). */
function renamedBody(body: Buffer, model: string): Buffer | null {
  return plainUniqueKeys(body) ? withMember(body, 'model', model) : null;
}

/** Relays a streamed answer; resolves with the provider's error instead when its answer was one before any byte reached the client. */
async function answerStream<C extends ApiTypes>(answering: Answering<C>, upstream: UpstreamResponse): Promise<GatewayError | null> {
  const { api, route, back, parsed, res, interaction, deps, apiKeys, scrubber, promptEstimate, asked, remember } = answering;
  // Media types are case-insensitive (RFC 9110): Text/Event-Stream is one.
  const type = String(upstream.headers['content-type']).toLowerCase();
  if (!type.includes('text/event-stream')) {
    // An error answered with a 200 (some servers and proxies): that error, at the status it stands for.
    if (type.includes('json')) {
      const body = await readAll(upstream.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel: interaction.context.cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber });
      interaction.answerBytes = body.length;
      const error = errorAnswered(body, upstream.headers, apiKeys, interaction);
      if (error !== null) return error;
    }
    upstream.abort();
    throw new GatewayError(502, 'The provider answered a stream request without an event stream.', {
      code: 'upstream_invalid_response',
      logDetail: redactKey(`content-type: ${String(upstream.headers['content-type'])}`, apiKeys),
    });
  }
  const namedAfter = api.namedAfter;
  const renamed = asked === null || namedAfter === undefined ? null : (event: C['event']) => namedAfter.event(event, asked);
  let remembered = remember === null;
  // At the provider's end, before its terminal event goes to the client; a stream cut short, after it.
  const tell = (): void => {
    const id = pipeline.answerId();
    if (remembered || id === null) return;
    remembered = true;
    remember?.({ id, items: () => pipeline.answerItems() });
  };
  const hints = answerHints(interaction, promptEstimate);
  const pipeline = streamPipeline(route, back, api.streamOutput(parsed.request, hints.answerId), deps.log.enabled ? api.assembler() : null, hints, deps.log.assembledStreamLimit, renamed, remember === null ? null : tell);
  stampOverhead(res, interaction.overheadMs(performance.now()));
  const refusal = await relayStream(upstream, res, pipeline, interaction, { cancel: interaction.context.cancel, idleMs: deps.upstream.policy.idleTimeoutMs, apiKeys, scrubber, started: answering.chosen });
  interaction.usage = pipeline.usage();
  interaction.usageFinal = pipeline.complete();
  // A stream of nothing but the provider's errors, or one whose first event was its error (answered
  // as its status below, whatever came before it that said nothing: a ping, an empty chunk): a refusal.
  if (refusal !== null || pipeline.refused()) interaction.answeredWithError = true;
  if (!route.translation.identity) interaction.providerUsage = pipeline.rawUsage();
  // Assembled from the events: a key split between two of them is whole here.
  if (deps.log.enabled) interaction.response = pipeline.response((answer) => withoutKeys(answer, apiKeys));
  tell();
  // The provider's error as its first event, nothing sent yet: the client gets it as its status (or another target the request).
  return refusal;
}
