/**
 * Calls about responses a provider stores (OpenAI's Responses API), with the one rule the gateway
 * adds: a virtual key only reaches the responses it created (policy/response-owners.ts). Used by
 * the create route (`previous_response_id`) and by the id routes.
 */
import { GatewayError, invalidRequest } from '../errors.js';
import { parseObjectAnswer } from '../formats/answer.js';
import { isRecord } from '../formats/json.js';
import { withMember } from '../formats/json-splice.js';
import { responsesTarget } from '../formats/responses/index.js';
import type { Interaction } from '../observe/interaction.js';
import type { VirtualKey } from '../policy/keys.js';
import { targetFor } from '../policy/routing.js';
import type { Target } from '../policy/target.js';
import { OWNER_FIELD, ownerOf, ownerTag } from '../policy/response-owners.js';
import { upstreamError } from '../upstream/errors.js';
import { withQuery, withSubpath, type Endpoint } from '../upstream/types.js';
import { callWhole, type SurfaceDeps, type WholeAnswer } from './surface.js';

/** A stored response (with its output) is read whole: this is far more than any answer. */
const STORED_LIMIT = 64 * 1024 * 1024;

/** OpenAI's own metadata limit: the owner tag takes one of its 16 pairs. */
const MAX_METADATA_PAIRS = 16;

export interface StoredAnswer extends WholeAnswer {
  /** Where it came from (no query string): what its error names in the log. */
  readonly url: string;
}

/** The target whose stored responses a key reaches; a key whose provider is reached through translation stores nothing. */
export function storingTarget(key: VirtualKey): Target {
  const target = targetFor(key, 'responses');
  if (target.endpoints.responses === undefined) {
    throw new GatewayError(404, "This virtual key's provider does not store responses: Responses requests reach it through a stateless translation, so there is nothing to read, cancel or delete.", {
      code: 'responses_not_stored',
    });
  }
  return target;
}

/** One call about `target`'s stored responses (`suffix` after `/responses`), read whole and scrubbed of the real key. */
export async function callStored(
  target: Target,
  method: 'GET' | 'POST' | 'DELETE',
  suffix: string,
  query: string,
  body: Buffer | string,
  interaction: Interaction,
  deps: SurfaceDeps,
): Promise<StoredAnswer> {
  const at = withSubpath(target.endpoints.responses as Endpoint, suffix);
  const build = (apiKey: string) => ({ method, body, headers: responsesTarget.authHeaders(apiKey) });
  return { ...(await callWhole(target, withQuery(at, query), build, STORED_LIMIT, interaction, deps)), url: at.url };
}

/** A failed answer as the client's error (the real key out of it). */
export function storedError(target: Target, answer: StoredAnswer): GatewayError {
  return upstreamError(answer.status, answer.body, answer.headers, target.secrets, answer.url);
}

/** The 404 OpenAI gives for an id it does not know: the same whether the response is another key's or does not exist. */
export function responseNotFound(id: string, logDetail?: string): GatewayError {
  return new GatewayError(404, `Response with id '${id}' not found.`, { type: 'invalid_request_error', code: 'not_found', logDetail });
}

/**
 * The owner tag of the stored response `id` ('' when it has none); null when the body is another
 * response: then nothing is known, and nothing is remembered. A body that is not a whole JSON
 * object (cut short) is the 502 it is, not a misleading 404.
 */
export function ownerInAnswer(body: Buffer, id: string): string | null {
  return ownerInResponse(parseObjectAnswer(body, 'response'), id);
}

/** The owner a stored response `id`, already read, names (null: it is another response, or names none). */
export function ownerInResponse(response: Record<string, unknown>, id: string): string | null {
  return response.id === id ? ownerOf(response) : null;
}

/**
 * Throws unless the stored response `id` at `target` (where the request naming it goes) was
 * created by this key: known to this process for that provider account, or read from it (one GET,
 * remembered). `missing`: the error when it is not the key's.
 */
export async function ensureOwner(id: string, key: VirtualKey, target: Target, interaction: Interaction, deps: SurfaceDeps, missing: GatewayError): Promise<void> {
  let owner = deps.owners.get(target.storage, id);
  if (owner === undefined) {
    const answer = await callStored(target, 'GET', `/${encodeURIComponent(id)}`, '', '', interaction, deps);
    if (answer.status === 404) throw missing;
    if (answer.status < 200 || answer.status > 299) throw storedError(target, answer);
    const read = ownerInAnswer(answer.body, id);
    if (read === null) throw missing;
    owner = read;
    deps.owners.set(target.storage, id, owner);
  }
  if (owner !== ownerTag(key.id)) throw missing;
}

/**
 * The body with `metadata.llm_gateway_owner` set to the key's tag: spliced after the opening
 * brace when the request has no metadata (no re-serialising of a large body), merged otherwise
 * (a client's own value under that name is replaced: no key can claim another's).
 */
export function withOwner(request: Record<string, unknown>, body: Buffer | string, key: VirtualKey): Buffer | string {
  const tag = ownerTag(key.id);
  if (!('metadata' in request)) {
    const field = `"metadata":{"${OWNER_FIELD}":"${tag}"},`;
    if (typeof body === 'string') return `{${field}${body.slice(body.indexOf('{') + 1)}`;
    const brace = body.indexOf(0x7b /* { */);
    return Buffer.concat([body.subarray(0, brace + 1), Buffer.from(field), body.subarray(brace + 1)]);
  }
  if (request.metadata !== null && !isRecord(request.metadata)) throw invalidRequest("Invalid type for 'metadata': expected an object of string values.", 'metadata', 'invalid_type');
  const metadata = isRecord(request.metadata) ? request.metadata : {};
  const { [OWNER_FIELD]: _claimed, ...own } = metadata;
  if (Object.keys(own).length >= MAX_METADATA_PAIRS) {
    throw invalidRequest(`Invalid 'metadata': at most ${MAX_METADATA_PAIRS - 1} pairs through this gateway, which adds "${OWNER_FIELD}" to know whose response it is.`, 'metadata', 'invalid_value');
  }
  // The rest as it was written: re-serialised, numbers past 2^53 would change.
  const tagged = { ...own, [OWNER_FIELD]: tag };
  return withMember(typeof body === 'string' ? Buffer.from(body) : body, 'metadata', tagged) ?? JSON.stringify({ ...request, metadata: tagged });
}
