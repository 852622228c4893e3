/**
 * `GET /v1/models` (and `/models`) with a virtual key: the key's allowlist where it has one (its
 * `prefix*` patterns matched against the provider's own list), otherwise the provider's own list,
 * fetched through the same call path as every request (real keys in turn, retries). In OpenAI's
 * list format, or in Anthropic's (and its error shape) for a request in Anthropic's style.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, openAiErrorBody, toGatewayError } from '../errors.js';
import type { ModelList } from '../formats/chat/models.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { toAnthropicModelList } from '../formats/messages/models.js';
import { Interaction } from '../observe/interaction.js';
import { bearerToken } from '../policy/auth.js';
import type { VirtualKey } from '../policy/keys.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { sendError, sendJson } from '../server/http.js';
import { callWithRetries } from '../upstream/call.js';
import { Cancellation } from '../upstream/cancel.js';
import { redactDeep, upstreamError } from '../upstream/errors.js';
import { readAll } from '../upstream/read.js';
import { keysScrubber } from '../upstream/scrub.js';
import { HOW_TO_SEND_BEARER } from './chat.js';
import { anthropicCredential, HOW_TO_SEND_ANTHROPIC_KEY, isAnthropicStyle } from './messages.js';
import { authenticateRequest, recordRefusedKey, type SurfaceDeps } from './surface.js';
import type { Target } from '../policy/target.js';

const LIST_LIMIT = 8 * 1024 * 1024;

/** How long a provider's list is kept: every ask spends the real key's own rate limit at the provider, and a key's requests limits do not count these. */
const LIST_TTL_MS = 60_000;
/** How long a provider's refusal (a 429, an outage) is kept: asking again at once would spend the limit it complains of. */
const FAILURE_TTL_MS = 5_000;

type Kept = { readonly list: ModelList; readonly until: number } | { readonly failure: GatewayError; readonly until: number };

/** A provider's list is asked for on the gateway's behalf, not the asking client's: it gets this long. */
const ASK_TIMEOUT_MS = 30_000;

/**
 * Providers' model lists per target (a reload makes new targets, which ask again): kept a minute,
 * a refusal a few seconds, and one ask at a time, its answer shared by the requests that came
 * meanwhile. The ask is not the asking client's to cancel: a client that leaves only stops
 * waiting (were it cancelled with it, every client that connects and leaves would ask again).
 */
export class ModelLists {
  private readonly kept = new WeakMap<Target, Kept>();
  private readonly asking = new WeakMap<Target, Promise<ModelList>>();

  /** `waiting`: the request that waits for the list (it stops waiting when cancelled). */
  list(target: Target, ask: (cancel: Cancellation) => Promise<ModelList>, waiting: Cancellation, now: () => number = () => performance.now()): Promise<ModelList> {
    const kept = this.kept.get(target);
    if (kept !== undefined && kept.until > now()) return 'list' in kept ? Promise.resolve(kept.list) : Promise.reject(kept.failure);
    return unlessCancelled(this.asking.get(target) ?? this.ask(target, ask, now), waiting);
  }

  private ask(target: Target, ask: (cancel: Cancellation) => Promise<ModelList>, now: () => number): Promise<ModelList> {
    const cancel = new Cancellation();
    const timer = setTimeout(() => cancel.cancel(new GatewayError(504, `The provider did not send its model list within ${ASK_TIMEOUT_MS / 1000} s.`, { code: 'upstream_timeout' })), ASK_TIMEOUT_MS);
    timer.unref();
    const asked = ask(cancel).then(
      (list) => {
        this.kept.set(target, { list, until: now() + LIST_TTL_MS });
        return list;
      },
      (err: unknown) => {
        this.kept.set(target, { failure: toGatewayError(err), until: now() + FAILURE_TTL_MS });
        throw err;
      },
    );
    const done = (): void => {
      clearTimeout(timer);
      this.asking.delete(target);
    };
    asked.then(done, done);
    this.asking.set(target, asked);
    return asked;
  }
}

/** `work`, or the reason `cancel` gives once it comes first. */
function unlessCancelled<T>(work: Promise<T>, cancel: Cancellation): Promise<T> {
  return new Promise((resolve, reject) => {
    const stop = (): void => reject(cancel.reason);
    cancel.onCancel(stop);
    work.then(
      (value) => {
        cancel.offCancel(stop);
        resolve(value);
      },
      (err: unknown) => {
        cancel.offCancel(stop);
        reject(err);
      },
    );
  });
}

function providerModels(key: VirtualKey, interaction: Interaction, deps: SurfaceDeps): Promise<ModelList> {
  const target = key.targets[0] as Target;
  return deps.modelLists.list(target, (cancel) => askProvider(target, cancel, interaction, deps), interaction.context.cancel);
}

async function askProvider(target: Target, cancel: Cancellation, interaction: Interaction, deps: SurfaceDeps): Promise<ModelList> {
  const { keys, modelsEndpoint, modelsApi } = target;
  const build = (apiKey: string) => ({ method: 'GET' as const, body: '', headers: modelsApi.authHeaders(apiKey) });
  const { upstream } = await callWithRetries(deps.upstream, keys, modelsEndpoint, build, cancel, interaction);
  const failed = upstream.status < 200 || upstream.status > 299;
  const body = await readAll(upstream.body, { limit: LIST_LIMIT, truncate: failed, cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber: keysScrubber(target.secrets) });
  interaction.upstreamEndedAt = performance.now();
  // The provider's answer as read, as on every route (the list is asked of the key's first target only).
  interaction.answerBytes += body.length;
  if (failed) throw upstreamError(upstream.status, body, upstream.headers, target.secrets, modelsEndpoint.url);
  // A provider's list goes to the client: every string in it is scrubbed like its errors.
  return redactDeep(modelsApi.parseModelList(body), target.secrets) as ModelList;
}

async function listModels(key: VirtualKey, interaction: Interaction, deps: SurfaceDeps): Promise<ModelList> {
  const allowlist = key.models;
  const owner = (key.targets[0] as Target).provider.name;
  const allowed = allowlist === null ? [] : allowlist.patterns.filter((pattern) => !pattern.endsWith('*'));
  // Names a client may ask for by name: the allowlist's, and the model map's (Claude Code's names on another provider).
  const mapped = key.targets.flatMap((target) => target.modelMap?.names ?? []).filter((id) => allowlist === null || allowlist.allows(id));
  const exact = [...new Set([...allowed, ...mapped])];
  // Only exact names allowed: the list is known without asking the provider.
  if (allowlist !== null && allowed.length === allowlist.patterns.length) {
    return { object: 'list', data: exact.map((id) => ({ id, object: 'model', created: 0, owned_by: owner })) };
  }
  const list = await providerModels(key, interaction, deps);
  const data = allowlist === null ? [...list.data] : list.data.filter((model) => allowlist.allows(model.id));
  for (const id of exact) if (!data.some((model) => model.id === id)) data.push({ id, object: 'model', created: 0, owned_by: owner });
  return { object: 'list', data };
}

export async function serveModels(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  const anthropic = isAnthropicStyle(req.headers);
  if (anthropic) res.setHeader('request-id', context.id);
  // Not logged: the interaction keeps the call's attempts and the wait for the provider.
  const interaction = new Interaction(context);
  try {
    const key = anthropic
      ? authenticateRequest(anthropicCredential(req.headers), HOW_TO_SEND_ANTHROPIC_KEY, interaction, deps)
      : authenticateRequest(bearerToken(req.headers.authorization), HOW_TO_SEND_BEARER, interaction, deps);
    const list = await listModels(key, interaction, deps);
    if (context.cancel.cancelled) return;
    stampOverhead(res, interaction.overheadMs(performance.now()));
    sendJson(res, 200, JSON.stringify(anthropic ? toAnthropicModelList(list) : list));
  } catch (err) {
    if (res.headersSent || context.cancel.cancelled) return;
    const error = toGatewayError(err);
    stampOverhead(res, interaction.overheadMs(performance.now()));
    const body = sendError(res, error, anthropic ? messagesErrorBody(error) : openAiErrorBody(error));
    recordRefusedKey(interaction, error, body, deps);
  }
}
