/**
 * `POST /v1/responses` (and `/responses`): OpenAI's Responses API, spoken by Codex CLI and newer
 * OpenAI SDK code. The key comes as `Authorization: Bearer <virtual key>`; errors have OpenAI's
 * shape. Passed through (OpenAI), a stored response is the creating key's alone: one it
 * continues (`previous_response_id`) must be its own, and the one it stores is tagged as its own
 * (surfaces/stored.ts). Translated, nothing is stored: the conversation travels in `input`.
 */
import { GatewayError, invalidRequest } from '../errors.js';
import { memberView } from '../formats/json-bytes.js';
import { plainUniqueKeys } from '../formats/json-keys.js';
import { responsesClient, type ResponsesTypes } from '../formats/responses/index.js';
import { isItemReference } from '../formats/responses/request.js';
import { bearerToken } from '../policy/auth.js';
import type { VirtualKey } from '../policy/keys.js';
import { ownerTag, type ItemOwners } from '../policy/response-owners.js';
import type { Target } from '../policy/target.js';
import { shown } from '../formats/json.js';
import { howToSendBearer } from './chat.js';
import { ensureOwner, withOwner } from './stored.js';
import { flatBody, type Surface } from './surface.js';
import { shallow } from './outbound.js';

/**
 * The response a request continues, whose owner is checked: a string, or none. Any other type is
 * refused here rather than left to the provider's own validation, which the owner check would
 * then depend on.
 */
export function previousResponseId(request: Readonly<Record<string, unknown>>): string | null {
  const previous = request.previous_response_id;
  if (previous === undefined || previous === null) return null;
  if (typeof previous !== 'string') throw invalidRequest("Invalid type for 'previous_response_id': expected a string.", 'previous_response_id', 'invalid_type');
  return previous;
}

export function previousNotFound(id: string): GatewayError {
  return new GatewayError(400, `Previous response with id '${id}' not found.`, { code: 'previous_response_not_found', param: 'previous_response_id' });
}

/**
 * An item reference names an item by id alone: an id does not say whose response it came from
 * (a key that learnt another key's item id could pull that item in), and the provider cannot be
 * asked. So a key may name only the output items of responses it stored at `target` that this
 * process saw created (remembered with their response's owner: not across restarts, workers or
 * instances). The Vercel AI SDK names every earlier assistant message and reasoning item so.
 */
export function ensureItemsOwned(input: unknown, key: VirtualKey, target: Target, owners: ItemOwners): void | Promise<void> {
  const unknown = notOwned(input, key, target, owners);
  if (unknown === null) return;
  // A sibling worker may have seen it stored a moment ago: asked once more after catching up.
  if (owners.catchUp === null) throw notOwnedError(unknown);
  return owners.catchUp().then(() => {
    const still = notOwned(input, key, target, owners);
    if (still !== null) throw notOwnedError(still);
  });
}

/** The first item reference of `input` that names no item of the key's own stored responses, or null. */
function notOwned(input: unknown, key: VirtualKey, target: Target, owners: ItemOwners): { at: number; id: unknown; reasoning: boolean } | null {
  if (!Array.isArray(input)) return null;
  let tag: string | null = null;
  for (let at = 0; at < input.length; at++) {
    const item: unknown = input[at];
    if (!isItemReference(item)) continue;
    const id = (item as { id?: unknown }).id;
    tag ??= ownerTag(key.id);
    const reasoning = (item as { type?: unknown }).type === 'reasoning';
    const owner = typeof id === 'string' ? owners.get(target.storage, id) : undefined;
    // A reasoning item is sent back by id in every turn of a stored conversation (`input +=
    // response.output`): one this process does not know (a restart, another instance) goes as it
    // came; only one known to be another key's is refused. A reference must be known to be the key's.
    if (typeof id !== 'string' || (reasoning ? owner !== undefined && owner !== tag : owner !== tag)) return { at, id, reasoning };
  }
  return null;
}

function notOwnedError({ at, id, reasoning }: { at: number; id: unknown; reasoning: boolean }): GatewayError {
  return new GatewayError(
    400,
    reasoning
      ? `input[${at}]: a reasoning item without its encrypted_content (to '${shown(id)}') names no item of a response this virtual key stored through this gateway process: this process saw it stored by another. Send the item with its encrypted_content (include: ["reasoning.encrypted_content"]), or do not store responses.`
      : `input[${at}]: item_reference (to '${shown(id)}') names no item of a response this virtual key stored through this gateway process: an item id does not say whose it is, so only the items of the key's own responses, seen created here, can be named (not after a restart, nor on another worker or instance). Send the item itself in 'input', continue with previous_response_id, or do not store responses (the Vercel AI SDK: providerOptions.openai.store = false).`,
    { code: 'unsupported_parameter', param: `input[${at}]` },
  );
}

/** Conversations are created outside the gateway (it does not serve that API): none can be shown to be a key's own. */
export function refuseConversation(conversation: unknown): void {
  if (conversation === undefined || conversation === null) return;
  throw new GatewayError(400, "conversation: not supported through this gateway: it does not serve the Conversations API, so it cannot tell whose a conversation is. Use previous_response_id, or send the whole conversation in 'input'.", {
    code: 'unsupported_parameter',
    param: 'conversation',
  });
}

/**
 * The body to pass through for `request`, parsed from `raw`: the client's bytes, or the request as
 * the gateway read it when a top-level key stands twice or is written with an escape. The gateway
 * decides on some fields (previous_response_id, conversation, input, model, store, metadata…)
 * and parsers differ on which of two keys wins: what it checked is what the provider gets.
 */
export function checkedBody(raw: Buffer | string, request: Record<string, unknown>): Buffer | string {
  return Buffer.isBuffer(raw) && !plainUniqueKeys(raw, request) ? shallow(() => JSON.stringify(request)) : raw;
}

export const responsesSurface: Surface<ResponsesTypes> = {
  api: responsesClient,
  credential: (headers) => bearerToken(headers.authorization),
  howToSendKey: howToSendBearer,
  async passThrough({ request, key, target, interaction, deps, body }) {
    refuseConversation(request.conversation);
    // Seen as bytes (each item's type, id, role and whether it carries its reasoning) where the conversation is large: passed through, it is never parsed.
    await ensureItemsOwned(memberView(request, 'input'), key, target, deps.owners.items);
    // A background response is generated (and billed) after this request has ended: no budget or token limit could count it.
    // Anything but false or absent: a server may read 1 or "true" as true (pydantic does), and then no limit counts it.
    if (request.background !== undefined && request.background !== null && request.background !== false) {
      const limit = key.budget !== null ? 'a budget' : key.rateLimit?.tokensPerMinute != null ? 'a tokens_per_minute limit' : null;
      if (limit !== null) {
        throw invalidRequest(`background: not available to this virtual key: it has ${limit}, and a background response is generated after the request ends, where the gateway cannot count its tokens. Send the request without background.`, 'background');
      }
    }
    const previous = previousResponseId(request);
    if (previous !== null && previous !== '') await ensureOwner(previous, key, target, interaction, deps, previousNotFound(previous));
    // Not stored (Codex sends store: false): nothing to tag, the bytes go as they came.
    return request.store === false ? body : shallow(() => withOwner(request, flatBody(body), key));
  },
  continues(request) {
    const previous = request.previous_response_id;
    return typeof previous === 'string' && previous !== '' ? previous : null;
  },
  answered(answer, request, key, target, deps) {
    if (request.store === false) return;
    const tag = ownerTag(key.id);
    deps.owners.set(target.storage, answer.id, tag);
    // Stored with it: the items a later request may name by id (ensureItemsOwned).
    deps.owners.items.addAll(target.storage, answer.items(), tag);
  },
};
