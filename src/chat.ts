/**
 * The `/chat/completions` handler: authenticate, read and validate the body, let the key's
 * provider build the upstream request, relay the answer (JSON or stream), and produce exactly one
 * log entry and one metrics observation. Errors are GatewayErrors all the way; anything else
 * becomes a bare 500. The returned promise settles only after the entry is recorded, so a
 * shutdown that waits for in-flight requests never loses an entry.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Cancellation } from './cancel.js';
import { parseChatRequest } from './chat-request.js';
import { GatewayError, invalidRequest, toGatewayError } from './errors.js';
import { readBody, sendError, sendJson } from './http.js';
import { Interaction, maskKey, type RequestContext } from './interaction.js';
import type { KeyStore, VirtualKey } from './keys.js';
import type { InteractionLog } from './log.js';
import type { Metrics } from './metrics.js';
import type { ChatRequest } from './openai-types.js';
import type { UpstreamCall } from './providers/types.js';
import { relayStream } from './stream-relay.js';
import { readAll, sendUpstream, type UpstreamResponse } from './upstream.js';
import { upstreamError } from './upstream-error.js';

export interface ChatDeps {
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  readonly metrics: Metrics;
  readonly maxBodyBytes: number;
  readonly upstreamTimeoutMs: number;
  readonly upstreamIdleTimeoutMs: number;
}

/** Upstream error bodies are only read for their message: the first MiB is plenty. */
const ERROR_BODY_LIMIT = 1024 * 1024;
/** A non-streamed completion larger than this is not a completion. */
const RESPONSE_LIMIT = 64 * 1024 * 1024;

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export const OVERHEAD_HEADER = 'x-gateway-overhead-ms';

function authenticate(header: string | undefined, keys: KeyStore, interaction: Interaction): VirtualKey {
  const match = header === undefined ? null : BEARER.exec(header);
  if (match === null) {
    throw new GatewayError(401, "Missing virtual key. Send it as 'Authorization: Bearer <virtual key>'.", { code: 'missing_api_key' });
  }
  const presented = match[1] as string;
  const key = keys.lookup(presented);
  if (key === undefined) {
    interaction.virtualKey = maskKey(presented);
    throw new GatewayError(401, 'Invalid virtual key. Check the key you were given for this gateway.', { code: 'invalid_api_key' });
  }
  interaction.virtualKey = key.id;
  interaction.authenticated = true;
  interaction.provider = key.provider.name;
  return key;
}

function stampOverhead(res: ServerResponse, interaction: Interaction): void {
  res.setHeader(OVERHEAD_HEADER, interaction.overheadMs(performance.now()).toFixed(3));
}

export async function handleChat(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: ChatDeps): Promise<void> {
  const interaction = new Interaction(context);
  // Cancelled by the server when the client goes away (the upstream call stops at once) or at shutdown.
  const cancel = context.cancel;
  try {
    if (context.method !== 'POST') {
      throw new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use POST.`, { code: 'method_not_allowed', headers: { allow: 'POST' } });
    }
    const key = authenticate(req.headers.authorization, deps.keys, interaction);
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

    const upstream = await callProvider(key, request, raw, cancel, interaction, deps);
    interaction.upstreamAnswered(upstream.status, upstream.headers, performance.now());
    if (upstream.status < 200 || upstream.status > 299) {
      const body = await readAll(upstream.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel, idleMs: deps.upstreamIdleTimeoutMs });
      interaction.upstreamEndedAt = performance.now();
      throw upstreamError(upstream.status, body, upstream.headers, key.apiKey);
    }
    if (interaction.stream) {
      if (!String(upstream.headers['content-type']).includes('text/event-stream')) {
        upstream.abort();
        throw new GatewayError(502, 'The provider answered a stream request without an event stream.', {
          code: 'upstream_invalid_response',
          logDetail: `content-type: ${String(upstream.headers['content-type'])}`,
        });
      }
      const translator = key.provider.streamTranslator({ clientWantsUsage: wantsUsage(request), assemble: deps.log.enabled });
      stampOverhead(res, interaction);
      await relayStream(upstream, res, translator, interaction, { cancel, idleMs: deps.upstreamIdleTimeoutMs, apiKey: key.apiKey });
    } else {
      const body = await readAll(upstream.body, { limit: RESPONSE_LIMIT, truncate: false, cancel, idleMs: deps.upstreamIdleTimeoutMs });
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
    const now = performance.now();
    deps.metrics.request(interaction.observation(now));
    if (deps.log.enabled) deps.log.record(interaction.toEntry(now));
  }
}

function callProvider(key: VirtualKey, request: ChatRequest, raw: Buffer, cancel: Cancellation, interaction: Interaction, deps: ChatDeps): Promise<UpstreamResponse> {
  const provider = key.provider;
  if (provider.answerLocally !== undefined) {
    interaction.upstreamStartedAt = performance.now();
    return Promise.resolve(provider.answerLocally(request));
  }
  let call: UpstreamCall;
  try {
    call = provider.prepare({ request, raw, apiKey: key.apiKey });
  } catch (err) {
    // JSON nested deeper than the stack allows cannot be re-serialised: the client's problem.
    if (err instanceof RangeError) throw invalidRequest('The request body is nested too deeply to process.', null, 'invalid_body');
    throw err;
  }
  interaction.upstreamStartedAt = performance.now();
  return sendUpstream(key.target as NonNullable<VirtualKey['target']>, call, cancel, deps.upstreamTimeoutMs);
}

function wantsUsage(request: ChatRequest): boolean {
  const options = request.stream_options;
  return typeof options === 'object' && options !== null && options.include_usage === true;
}
