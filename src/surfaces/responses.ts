/**
 * `POST /v1/responses` (and `/responses`): OpenAI's Responses API, spoken by Codex CLI and newer
 * OpenAI SDK code. The key comes as `Authorization: Bearer <virtual key>`; errors have OpenAI's
 * shape. Passed through (OpenAI), a stored response is the creating key's alone: one it
 * continues (`previous_response_id`) must be its own, and the one it stores is tagged as its own
 * (surfaces/stored.ts). Translated, nothing is stored: the conversation travels in `input`.
 */
import { GatewayError, invalidRequest } from '../errors.js';
import { responsesClient, type ResponsesTypes } from '../formats/responses/index.js';
import { bearerToken } from '../policy/auth.js';
import { ownerTag } from '../policy/response-owners.js';
import { HOW_TO_SEND_BEARER } from './chat.js';
import { ensureOwner, withOwner } from './stored.js';
import { shallow, type Surface } from './surface.js';

export function previousNotFound(id: string): GatewayError {
  return new GatewayError(400, `Previous response with id '${id}' not found.`, { code: 'previous_response_not_found', param: 'previous_response_id' });
}

/** Conversations are created outside the gateway (it does not serve that API): none can be shown to be a key's own. */
export function refuseConversation(conversation: unknown): void {
  if (conversation === undefined || conversation === null) return;
  throw new GatewayError(400, "conversation: not supported through this gateway: it does not serve the Conversations API, so it cannot tell whose a conversation is. Use previous_response_id, or send the whole conversation in 'input'.", {
    code: 'unsupported_parameter',
    param: 'conversation',
  });
}

/** The fields the gateway decides on before a request passes through. */
const CHECKED_FIELDS = ['previous_response_id', 'conversation', 'store', 'metadata'].map((field) => Buffer.from(`"${field}"`));

/**
 * Whether `"field"` stands as an object key more than once in the JSON (a quoted word followed by
 * a colon is a key; inside a string its quotes would be escaped). Nested keys of the same name
 * count too: then the body is re-serialised for nothing, never let through unchecked.
 */
export function namedTwice(raw: Buffer, field: Buffer): boolean {
  let seen = 0;
  for (let at = raw.indexOf(field); at !== -1; at = raw.indexOf(field, at + field.length)) {
    let next = at + field.length;
    while (next < raw.length && (raw[next] === 0x20 || raw[next] === 0x0a || raw[next] === 0x0d || raw[next] === 0x09)) next++;
    if (raw[next] === 0x3a /* : */ && ++seen > 1) return true;
  }
  return false;
}

export const responsesSurface: Surface<ResponsesTypes> = {
  api: responsesClient,
  credential: (headers) => bearerToken(headers.authorization),
  howToSendKey: HOW_TO_SEND_BEARER,
  async passThrough({ request, key, interaction, deps, body: sent }) {
    // What the gateway checks is what the provider gets: a body that names one of these twice
    // (JSON parsers differ on which one wins) goes as the gateway read it.
    const body = Buffer.isBuffer(sent) && CHECKED_FIELDS.some((field) => namedTwice(sent, field)) ? shallow(() => JSON.stringify(request)) : sent;
    refuseConversation(request.conversation);
    // A background response is generated (and billed) after this request has ended: no budget could count it.
    if (request.background === true && key.budget !== null) {
      throw invalidRequest('background: not available to this virtual key: it has a budget, and a background response is billed after the request ends, where the budget cannot count it. Send the request without background.', 'background');
    }
    const previous = request.previous_response_id;
    if (typeof previous === 'string' && previous !== '') await ensureOwner(previous, key, interaction, deps, previousNotFound(previous));
    // Not stored (Codex sends store: false): nothing to tag, the bytes go as they came.
    return request.store === false ? body : shallow(() => withOwner(request, body, key));
  },
  answered(id, request, key, deps) {
    if (request.store !== false) deps.owners.set(id, ownerTag(key.id));
  },
};
