/**
 * `GET /v1/models` (and `/models`) with a virtual key, in OpenAI's list format: the key's
 * allowlist where it has one (its `prefix*` patterns matched against the provider's own list),
 * otherwise the provider's own list.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from '../policy/auth.js';
import { OVERHEAD_HEADER } from './chat.js';
import { sendJson } from '../server/http.js';
import type { RequestContext } from '../observe/interaction.js';
import { pickKey, reportStatus } from '../policy/key-pool.js';
import type { KeyStore, VirtualKey } from '../policy/keys.js';
import type { ModelList } from '../providers/types.js';
import { readAll, sendUpstream } from '../upstream/send.js';
import { KeyScrubber } from '../upstream/scrub.js';
import { redactDeep, upstreamError } from '../upstream/errors.js';

export interface ModelsDeps {
  readonly keys: KeyStore;
  readonly upstreamTimeoutMs: number;
  readonly upstreamIdleTimeoutMs: number;
}

const LIST_LIMIT = 8 * 1024 * 1024;

async function providerModels(key: VirtualKey, context: RequestContext, deps: ModelsDeps, timing: { upstreamMs: number }): Promise<ModelList> {
  const provider = key.provider;
  if (provider.localModels !== undefined) return provider.localModels();
  const started = performance.now();
  const index = pickKey(key);
  const upstream = await sendUpstream(
    key.modelsTarget as NonNullable<VirtualKey['modelsTarget']>,
    { method: 'GET', body: Buffer.alloc(0), headers: provider.authHeaders(key.apiKeys[index] as string) },
    context.cancel,
    deps.upstreamTimeoutMs,
  );
  reportStatus(key, index, upstream.status, null);
  const scrubber = new KeyScrubber(key.apiKeys[index] as string);
  const body = await readAll(upstream.body, { limit: LIST_LIMIT, truncate: upstream.status >= 300, cancel: context.cancel, idleMs: deps.upstreamIdleTimeoutMs, scrubber });
  timing.upstreamMs = performance.now() - started;
  if (upstream.status < 200 || upstream.status > 299) throw upstreamError(upstream.status, body, upstream.headers, key.apiKeys, key.modelsTarget?.url);
  // A provider's list goes to the client: every string in it is scrubbed like its errors.
  return redactDeep(provider.translateModels(body), key.apiKeys) as ModelList;
}

export async function listModels(key: VirtualKey, context: RequestContext, deps: ModelsDeps, timing = { upstreamMs: 0 }): Promise<ModelList> {
  const allowlist = key.models;
  const exact = allowlist === null ? [] : allowlist.patterns.filter((pattern) => !pattern.endsWith('*'));
  // Only exact names: the list is known without asking the provider.
  if (allowlist !== null && exact.length === allowlist.patterns.length) {
    return { object: 'list', data: exact.map((id) => ({ id, object: 'model', created: 0, owned_by: key.provider.name })) };
  }
  const list = await providerModels(key, context, deps, timing);
  if (allowlist === null) return list;
  const data = list.data.filter((model) => allowlist.allows(model.id));
  for (const id of exact) if (!data.some((model) => model.id === id)) data.push({ id, object: 'model', created: 0, owned_by: key.provider.name });
  return { object: 'list', data };
}

export async function handleModels(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: ModelsDeps): Promise<void> {
  const key = authenticate(req.headers.authorization, deps.keys);
  const timing = { upstreamMs: 0 };
  const list = await listModels(key, context, deps, timing);
  if (context.cancel.cancelled) return;
  res.setHeader(OVERHEAD_HEADER, Math.max(0, performance.now() - context.startedAt - timing.upstreamMs).toFixed(3));
  sendJson(res, 200, JSON.stringify(list));
}

