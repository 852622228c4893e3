/**
 * The Responses API's other routes: `GET`/`DELETE /v1/responses/{id}`,
 * `POST /v1/responses/{id}/cancel`, `GET /v1/responses/{id}/input_items` (passed through to a
 * provider that stores responses, for the key that created the response only: anyone else gets
 * the 404 of an id that does not exist), `POST /v1/responses/input_tokens` (passed through,
 * or estimated for a key whose provider is reached through translation) and
 * `POST /v1/responses/compact`. Like every client
 * request they are authenticated, counted against the key's requests per minute, logged and
 * measured; errors have OpenAI's shape.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseObjectAnswer } from '../formats/answer.js';
import { GatewayError, invalidRequest, openAiErrorBody } from '../errors.js';
import { parseJsonObject } from '../formats/json.js';
import { responsesUsage } from '../formats/responses/usage.js';
import type { VirtualKey } from '../policy/keys.js';
import type { Charge } from '../policy/limits.js';
import type { Target } from '../policy/target.js';
import { costUsd, decimalUsd, estimateUsd } from '../prices/cost.js';
import type { Price } from '../prices/table.js';
import { ownerTag } from '../policy/response-owners.js';
import { targetFor } from '../policy/routing.js';
import { bearerToken } from '../policy/auth.js';
import type { RequestContext } from '../server/context.js';
import { readBody } from '../server/http.js';
import { howToSendBearer } from './chat.js';
import { serveKeyed, type KeyedAnswer, type KeyedRoute } from './keyed.js';
import { checkedBody, ensureItemsOwned, previousNotFound, previousResponseId, refuseConversation } from './responses.js';
import { callStored, ensureOwner, ownerInResponse, responseNotFound, storedError, storingTarget } from './stored.js';
import { acceptedModel, checkModel, notPriced, type SurfaceDeps } from './surface.js';
import { shallow, unstatedOutputReserve } from './outbound.js';

/** `/v1/responses/{id}` and what may follow the id. */
const STORED_PATH = /^(?:\/v1)?\/responses\/([^/]+)(\/cancel|\/input_items)?$/;

/** Ids as providers make them; anything else is not one (and never reaches a provider's path). */
const RESPONSE_ID = /^[A-Za-z0-9_-]{1,200}$/;

/** The route template of a stored-response path (`/v1/responses/{id}/cancel`), or null. */
export function storedRouteOf(path: string): string | null {
  const match = STORED_PATH.exec(path);
  if (match === null) return null;
  return `${path.startsWith('/v1/') ? '/v1' : ''}/responses/{id}${match[2] ?? ''}`;
}

/** The query asks for a stream, however it spells it (`stream=True`, `stream=%74rue`): the provider decodes it so. */
function asksForStream(query: string): boolean {
  if (query === '') return false;
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(query);
  } catch {
    return true;
  }
  for (const [name, value] of params) if (name.toLowerCase() === 'stream' && !/^(?:false|0|)$/i.test(value)) return true;
  return false;
}

function route(methods: readonly string[]): KeyedRoute {
  return { methods, credential: (headers) => bearerToken(headers.authorization), howToSendKey: howToSendBearer, errorBody: openAiErrorBody };
}

const RETRIEVE_OR_DELETE = route(['GET', 'DELETE']);
const INPUT_ITEMS = route(['GET']);
const POST_ONLY = route(['POST']);

function storedRoute(suffix: string): KeyedRoute {
  if (suffix === '/cancel') return POST_ONLY;
  if (suffix === '/input_items') return INPUT_ITEMS;
  return RETRIEVE_OR_DELETE;
}

/** A stored response: read (its owner checked in the same call), deleted, cancelled, or its input items listed. */
export function serveStoredResponse(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  const match = STORED_PATH.exec(context.path);
  const suffix = match?.[2] ?? '';
  return serveKeyed(storedRoute(suffix), req, res, context, deps, async ({ key, interaction, admit }): Promise<KeyedAnswer> => {
    let id = '';
    try {
      id = decodeURIComponent(match?.[1] ?? '');
    } catch {
      // not an id
    }
    if (!RESPONSE_ID.test(id)) throw responseNotFound(id.slice(0, 200));
    // A cancel's body says nothing; read so the connection stays usable.
    if (context.method === 'POST') await readBody(req, deps.maxBodyBytes, context.cancel, null, context.bodies);
    const target = storingTarget(key);
    if (suffix === '' && context.method === 'GET' && asksForStream(context.query)) {
      throw invalidRequest('stream: resuming a response as a stream is not supported through this gateway; GET it without stream=true.', 'stream', 'unsupported_parameter');
    }
    await admit();
    const path = `/${encodeURIComponent(id)}${suffix}`;
    if (suffix === '' && context.method === 'GET') {
      // Reading it is how its owner is learnt: one call.
      const answer = await callStored(target, 'GET', path, context.query, '', interaction, deps);
      // The provider's own 404 differs from the gateway's: passed on, it would tell another key's
      // response (the gateway's 404) from one that does not exist.
      if (answer.status === 404) throw responseNotFound(id, storedError(target, answer).logDetail);
      if (answer.status < 200 || answer.status > 299) throw storedError(target, answer);
      const parsed = parseObjectAnswer(answer.body, 'response');
      const owner = ownerInResponse(parsed, id);
      if (owner === null) throw responseNotFound(id);
      deps.owners.set(target.storage, id, owner);
      if (owner !== ownerTag(key.id)) throw responseNotFound(id);
      return { status: answer.status, body: answer.body, parsed };
    }
    await ensureOwner(id, key, target, interaction, deps, responseNotFound(id));
    const method = context.method === 'DELETE' ? 'DELETE' : context.method === 'POST' ? 'POST' : 'GET';
    const answer = await callStored(target, method, path, context.query, '', interaction, deps);
    if (answer.status < 200 || answer.status > 299) throw storedError(target, answer);
    if (method === 'DELETE') deps.owners.delete(target.storage, id);
    return { status: answer.status, body: answer.body };
  });
}

/** An estimate for a key whose provider cannot count: ~4 characters per token of what the model reads. */
function estimateResponsesInputTokens(request: Record<string, unknown>): number {
  const text = JSON.stringify([request.instructions ?? '', request.input ?? '', request.tools ?? []]);
  return Math.ceil(text.length / 4);
}

/**
 * The model these routes name: a string, or none (null or left out: the provider picks one, as
 * OpenAI does from a previous response). None only for a key whose policy needs no model: one
 * with an allowlist or a budget in USD (its price) must say which.
 */
function requestedModel(model: unknown, key: VirtualKey): string | null {
  if (typeof model === 'string') return model;
  if (model !== undefined && model !== null) throw invalidRequest("Invalid type for 'model': expected a string or null.", 'model', 'invalid_type');
  if (key.models !== null || key.budget?.maxUsd != null) {
    throw invalidRequest("Missing required parameter: 'model' (this virtual key allows only some models or has a budget in USD: the gateway must know which model).", 'model', 'missing_required_parameter');
  }
  return null;
}

/**
 * `POST /v1/responses/input_tokens` (how many input tokens a request would use) and
 * `POST /v1/responses/compact` (OpenAI's server-side compaction of a conversation): passed through
 * to a provider that speaks Responses, the model map applied, a continued response checked as the
 * key's own. For a key reached through translation, input tokens are estimated; compaction is
 * OpenAI's alone (Codex compacts by itself with other providers).
 */
function servePassedThrough(suffix: '/input_tokens' | '/compact'): (req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps) => Promise<void> {
  return (req, res, context, deps) =>
    serveKeyed(POST_ONLY, req, res, context, deps, async ({ key, interaction, admit }): Promise<KeyedAnswer> => {
      const raw = (await readBody(req, deps.maxBodyBytes, context.cancel, null, context.bodies)).bytes;
      const request = interaction.readRequest(raw, (bytes) => parseJsonObject(bytes, '"model" and "input"'));
      const model = requestedModel(request.model, key);
      if (model !== null) {
        interaction.model = acceptedModel(model);
        checkModel(key, model);
      }
      refuseConversation(request.conversation);
      const previous = previousResponseId(request);
      const target = targetFor(key, 'responses');
      await ensureItemsOwned(request.input, key, target, deps.owners.items);
      const mapped = model === null ? null : (target.modelMap?.map(model) ?? model);
      if (suffix === '/compact' && target.endpoints.responses !== undefined) {
        // Compaction generates: priced, and held against the key's limits like any generation, so
        // parallel compactions cannot overshoot a budget (an unpriced model is refused before that).
        interaction.price = mapped === null ? null : deps.prices.price(target.provider.name, mapped);
        if (key.budget?.maxUsd != null && interaction.price === null) throw notPriced(mapped ?? '', model ?? '');
        await admit(compactionEstimate(target, interaction.price, raw.length));
      } else await admit();
      if (target.endpoints.responses === undefined) {
        if (suffix === '/compact') throw new GatewayError(404, "Compaction is OpenAI's own: this virtual key's provider is reached through a stateless translation. Compact the conversation client-side.", { code: 'responses_not_stored' });
        if (previous !== null) {
          throw invalidRequest("previous_response_id: not supported with this key's provider: it is stateless through this gateway; send the whole conversation in 'input'.", 'previous_response_id', 'unsupported_parameter');
        }
        return { status: 200, body: JSON.stringify({ object: 'response.input_tokens', input_tokens: shallow(() => estimateResponsesInputTokens(request)) }) };
      }
      if (previous !== null && previous !== '') await ensureOwner(previous, key, target, interaction, deps, previousNotFound(previous));
      if (mapped !== null) interaction.upstreamModel = mapped;
      const body = mapped === null || mapped === model ? checkedBody(raw, request) : shallow(() => JSON.stringify({ ...request, model: mapped }));
      const answer = await callStored(target, 'POST', suffix, context.query, body, interaction, deps);
      if (answer.status < 200 || answer.status > 299) throw storedError(target, answer);
      if (suffix !== '/compact') return { status: answer.status, body: answer.body };
      // A compaction is a whole answer (a response object): its usage counts, its cost goes in the header.
      const parsed = parseObjectAnswer(answer.body, 'answer');
      interaction.usage = responsesUsage(parsed.usage);
      if (interaction.usage !== null && interaction.price !== null) res.setHeader('x-gateway-cost-usd', decimalUsd(costUsd(interaction.price, interaction.usage)));
      return { status: answer.status, body: answer.body, parsed };
    });
}

/**
 * What a compaction holds while it runs, as a generation does (surface.ts): its prompt at ~4 bytes
 * a token, and an output reserve (it takes no output limit), at its model's price.
 */
function compactionEstimate(target: Target, price: Price | null, bodyBytes: number): { charge: Charge; promptTokens: number } {
  const promptTokens = Math.ceil(bodyBytes / 4);
  const output = unstatedOutputReserve(target);
  return { charge: { tokens: promptTokens + output, usd: price === null ? 0 : estimateUsd(price, promptTokens, output) }, promptTokens };
}

export const serveInputTokens = servePassedThrough('/input_tokens');
export const serveCompact = servePassedThrough('/compact');
