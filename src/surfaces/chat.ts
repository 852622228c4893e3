/**
 * The `/chat/completions` handler: authenticate, read and validate the body, apply the key's
 * controls (model allowlist, rate limits, budget), let the provider build the upstream request,
 * relay the answer (JSON or stream), and produce exactly one log entry and one metrics
 * observation. Errors are GatewayErrors all the way; anything else becomes a bare 500. The
 * returned promise settles only after the entry is recorded, so a shutdown that waits for
 * in-flight requests never loses an entry.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from '../policy/auth.js';
import { parseChatRequest } from '../formats/chat/request.js';
import { GatewayError, toGatewayError } from '../errors.js';
import { readBody, sendError, sendJson } from '../server/http.js';
import { Interaction, type RequestContext } from '../observe/interaction.js';
import { maskKey, type KeyStore, type VirtualKey } from '../policy/keys.js';
import { admissionError, limitsOf, type Limiter } from '../policy/limits.js';
import type { InteractionLog } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import type { ChatRequest } from '../formats/chat/types.js';
import { callProvider } from '../upstream/call.js';
import { relayStream } from '../upstream/relay.js';
import { readAll } from '../upstream/send.js';
import { redactKey, upstreamError } from '../upstream/errors.js';
import { KeyScrubber } from '../upstream/scrub.js';
import { tokenCount } from '../formats/usage.js';

export interface ChatDeps {
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  readonly metrics: Metrics;
  readonly limiter: Limiter;
  readonly maxBodyBytes: number;
  readonly upstreamTimeoutMs: number;
  readonly upstreamIdleTimeoutMs: number;
  readonly upstreamRetries: number;
  readonly upstreamRetryMaxDelayMs: number;
}

/** Upstream error bodies are only read for their message: the first MiB is plenty. */
const ERROR_BODY_LIMIT = 1024 * 1024;
/** A non-streamed completion larger than this is not a completion. */
const RESPONSE_LIMIT = 64 * 1024 * 1024;

export const OVERHEAD_HEADER = 'x-gateway-overhead-ms';

function stampOverhead(res: ServerResponse, interaction: Interaction): void {
  res.setHeader(OVERHEAD_HEADER, interaction.overheadMs(performance.now()).toFixed(3));
}

/** The key's model allowlist; the refusal names nothing the key may not see. */
function checkModel(key: VirtualKey, model: string): void {
  if (key.models !== null && !key.models.allows(model)) {
    throw new GatewayError(403, `The model "${model}" is not allowed for this virtual key.`, { type: 'permission_error', code: 'model_not_allowed', param: 'model' });
  }
}

export async function handleChat(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: ChatDeps): Promise<void> {
  const interaction = new Interaction(context);
  // Cancelled by the server when the client goes away (the upstream call stops at once) or at shutdown.
  const cancel = context.cancel;
  const seen = { presented: null as string | null };
  let key: VirtualKey | null = null;
  /** Tokens reserved at admission (-1: not admitted, nothing to settle). */
  let reserved = -1;
  let promptEstimate = 0;
  try {
    if (context.method !== 'POST') {
      throw new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use POST.`, { code: 'method_not_allowed', headers: { allow: 'POST' } });
    }
    try {
      key = authenticate(req.headers.authorization, deps.keys, seen);
    } finally {
      if (key === null && seen.presented !== null) interaction.virtualKey = maskKey(seen.presented);
    }
    interaction.virtualKey = key.id;
    interaction.keyName = key.label;
    interaction.authenticated = true;
    interaction.provider = key.provider.name;
    interaction.severalKeys = key.apiKeys.length > 1;

    const raw = await readBody(req, deps.maxBodyBytes, cancel);
    let request: ChatRequest;
    try {
      request = parseChatRequest(raw);
    } catch (err) {
      interaction.request = raw.toString('utf8'); // logged as text: nothing is lost
      throw err;
    }
    interaction.request = request;
    interaction.model = request.model;
    interaction.stream = request.stream === true;

    checkModel(key, request.model);
    if (key.rateLimit !== null || key.budget !== null) {
      // Requests in flight hold their prompt (~4 bytes per token) and max_tokens against the limits.
      reserved = Math.ceil(raw.length / 4) + requestedMaxTokens(request);
      promptEstimate = Math.ceil(raw.length / 4);
      const admission = await deps.limiter.admit(limitsOf(key), reserved);
      for (const name in admission.headers) res.setHeader(name, admission.headers[name] as string);
      const refused = admissionError(admission);
      if (refused !== null) {
        reserved = -1;
        throw refused;
      }
    }

    const { upstream, apiKey } = await callProvider(key, request, raw, cancel, interaction, {
      retries: deps.upstreamRetries,
      maxDelayMs: deps.upstreamRetryMaxDelayMs,
      timeoutMs: deps.upstreamTimeoutMs,
    });
    interaction.upstreamAnswered(upstream.status, upstream.headers, performance.now(), key.apiKeys);
    // Whatever the provider sends may reach the client or the log: the key it was sent comes out.
    const scrubber = new KeyScrubber(apiKey);
    if (upstream.status < 200 || upstream.status > 299) {
      const body = await readAll(upstream.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel, idleMs: deps.upstreamIdleTimeoutMs, scrubber });
      interaction.upstreamEndedAt = performance.now();
      throw upstreamError(upstream.status, body, upstream.headers, key.apiKeys, key.target?.url);
    }
    if (interaction.stream) {
      if (!String(upstream.headers['content-type']).includes('text/event-stream')) {
        upstream.abort();
        throw new GatewayError(502, 'The provider answered a stream request without an event stream.', {
          code: 'upstream_invalid_response',
          logDetail: redactKey(`content-type: ${String(upstream.headers['content-type'])}`, key.apiKeys),
        });
      }
      const translator = key.provider.streamTranslator({ clientWantsUsage: wantsUsage(request), assemble: deps.log.enabled });
      stampOverhead(res, interaction);
      await relayStream(upstream, res, translator, interaction, { cancel, assemble: deps.log.enabled, idleMs: deps.upstreamIdleTimeoutMs, apiKeys: key.apiKeys, scrubber });
    } else {
      const body = await readAll(upstream.body, { limit: RESPONSE_LIMIT, truncate: false, cancel, idleMs: deps.upstreamIdleTimeoutMs, scrubber });
      interaction.upstreamEndedAt = performance.now();
      const translated = key.provider.translateResponse(body);
      stampOverhead(res, interaction);
      sendJson(res, 200, translated.body);
      interaction.status = 200;
      interaction.usage = translated.usage;
      if (deps.log.enabled) {
        const completion = translated.completion();
        interaction.response = completion ?? body.toString('utf8');
        // The log shows the provider's own usage object, with every field it sent.
        if (completion?.usage) interaction.usage = completion.usage;
      }
    }
  } catch (err) {
    // A cancellation explains whatever error it caused (a destroyed socket, a rejected read).
    const error = cancel.reason ?? toGatewayError(err);
    if (res.headersSent || error.status === 499) {
      interaction.failed(error, null);
    } else {
      // An unread body (a 401 answered first) is not drained: that connection is closed.
      if (!req.complete) res.setHeader('connection', 'close');
      stampOverhead(res, interaction);
      interaction.failed(error, sendError(res, error));
    }
  } finally {
    if (cancel.reason?.status === 499) {
      interaction.status = 499;
      interaction.error ??= cancel.reason;
    }
    // Tokens count against the key's tokens per minute and budget: the answer's usage, or, for an
    // answer cut short (the client left, the stream failed), an estimate: the prompt plus one token
    // per streamed event. Dropping a stream before its usage chunk does not make it free.
    if (key !== null && reserved >= 0) {
      const usage = interaction.usage;
      let used = 0;
      if (usage !== null) used = tokenCount(usage.prompt_tokens) + tokenCount(usage.completion_tokens);
      else if (interaction.upstreamStartedAt !== null) used = promptEstimate + interaction.streamedEvents;
      deps.limiter.record(limitsOf(key), used, reserved);
    }
    const now = performance.now();
    deps.metrics.request(interaction.observation(now));
    if (deps.log.enabled) deps.log.record(interaction.toEntry(now));
  }
}

function requestedMaxTokens(request: ChatRequest): number {
  const value = request.max_completion_tokens ?? request.max_tokens;
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

function wantsUsage(request: ChatRequest): boolean {
  const options = request.stream_options;
  return typeof options === 'object' && options !== null && options.include_usage === true;
}
