/**
 * `GET /v1/models` (and `/models`) with a virtual key, in OpenAI's list format: the key's
 * allowlist where it has one (its `prefix*` patterns matched against the provider's own list),
 * otherwise the provider's own list, fetched through the same call path as every request (real
 * keys in turn, retries).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ModelList } from '../formats/chat/models.js';
import { Interaction } from '../observe/interaction.js';
import { authenticate, bearerToken } from '../policy/auth.js';
import type { VirtualKey } from '../policy/keys.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { sendJson } from '../server/http.js';
import { callWithRetries } from '../upstream/call.js';
import { redactDeep, upstreamError } from '../upstream/errors.js';
import { readAll } from '../upstream/read.js';
import { KeyScrubber } from '../upstream/scrub.js';
import type { SurfaceDeps } from './surface.js';

const LIST_LIMIT = 8 * 1024 * 1024;

async function providerModels(key: VirtualKey, interaction: Interaction, deps: SurfaceDeps): Promise<ModelList> {
  const { provider, keys, modelsEndpoint } = key.target;
  const cancel = interaction.context.cancel;
  const build = (apiKey: string) => ({ method: 'GET' as const, body: '', headers: provider.authHeaders(apiKey) });
  const { upstream, apiKey } = await callWithRetries(deps.upstream, keys, modelsEndpoint, build, cancel, interaction);
  const failed = upstream.status < 200 || upstream.status > 299;
  const body = await readAll(upstream.body, { limit: LIST_LIMIT, truncate: failed, cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber: new KeyScrubber(apiKey) });
  interaction.upstreamEndedAt = performance.now();
  if (failed) throw upstreamError(upstream.status, body, upstream.headers, keys.apiKeys, modelsEndpoint.url);
  // A provider's list goes to the client: every string in it is scrubbed like its errors.
  return redactDeep(provider.modelList(body), keys.apiKeys) as ModelList;
}

async function listModels(key: VirtualKey, interaction: Interaction, deps: SurfaceDeps): Promise<ModelList> {
  const allowlist = key.models;
  const owner = key.target.provider.name;
  const exact = allowlist === null ? [] : allowlist.patterns.filter((pattern) => !pattern.endsWith('*'));
  // Only exact names: the list is known without asking the provider.
  if (allowlist !== null && exact.length === allowlist.patterns.length) {
    return { object: 'list', data: exact.map((id) => ({ id, object: 'model', created: 0, owned_by: owner })) };
  }
  const list = await providerModels(key, interaction, deps);
  if (allowlist === null) return list;
  const data = list.data.filter((model) => allowlist.allows(model.id));
  for (const id of exact) if (!data.some((model) => model.id === id)) data.push({ id, object: 'model', created: 0, owned_by: owner });
  return { object: 'list', data };
}

export async function serveModels(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  const key = authenticate(bearerToken(req.headers.authorization), deps.keys, "Send it as 'Authorization: Bearer <virtual key>'.");
  // Not logged: the interaction keeps the call's attempts and the wait for the provider.
  const interaction = new Interaction(context);
  const list = await listModels(key, interaction, deps);
  if (context.cancel.cancelled) return;
  stampOverhead(res, interaction.overheadMs(performance.now()));
  sendJson(res, 200, JSON.stringify(list));
}
