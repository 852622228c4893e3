/**
 * The `/chat/completions` handler: authenticate, read and validate the body, let the key's
 * provider build the upstream request, relay the answer (JSON or stream), and hand exactly one
 * entry to the log. Errors are GatewayErrors all the way; anything else becomes a bare 500.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseChatRequest } from './chat-request.js';
import { GatewayError, toGatewayError } from './errors.js';
import { clientClosed, readBody, sendError, sendJson } from './http.js';
import { Interaction, maskKey, type RequestContext } from './interaction.js';
import type { KeyStore, VirtualKey } from './keys.js';
import type { InteractionLog } from './log.js';
import type { ChatRequest } from './openai-types.js';
import { relayStream } from './stream-relay.js';
import { readAll, sendUpstream, type UpstreamResponse } from './upstream.js';
import { upstreamError } from './upstream-error.js';

export interface ChatDeps {
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  readonly maxBodyBytes: number;
}

/** Upstream error bodies are short; anything longer is cut (they are only read for their message). */
const ERROR_BODY_LIMIT = 1024 * 1024;
/** A non-streamed completion larger than this is not a completion. */
const RESPONSE_LIMIT = 64 * 1024 * 1024;

const BEARER = /^Bearer\s+(\S+)\s*$/i;

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
  interaction.provider = key.provider.name;
  return key;
}

export async function handleChat(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: ChatDeps): Promise<void> {
  const interaction = new Interaction(context);
  const controller = new AbortController();
  // The client went away before its answer was complete: stop the upstream call at once.
  const onClose = (): void => {
    if (!res.writableFinished) controller.abort();
  };
  res.once('close', onClose);
  try {
    const key = authenticate(req.headers.authorization, deps.keys, interaction);
    const raw = await readBody(req, deps.maxBodyBytes);
    interaction.request = raw.toString('utf8'); // replaced by the parsed body once it parses
    const request = parseChatRequest(raw);
    interaction.request = request;
    interaction.model = request.model;
    interaction.stream = request.stream === true;

    const upstream = await callProvider(key, request, raw, controller.signal);
    interaction.upstreamAnswered(upstream.status, upstream.headers);
    if (upstream.status < 200 || upstream.status > 299) {
      const body = await readAll(upstream.body, ERROR_BODY_LIMIT);
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
      const translator = key.provider.streamTranslator({ clientWantsUsage: wantsUsage(request) });
      await relayStream(upstream, res, translator, interaction, controller.signal);
    } else {
      await relayCompletion(upstream, key, res, interaction, controller.signal);
    }
  } catch (err) {
    const error = controller.signal.aborted ? clientClosed() : toGatewayError(err);
    if (res.headersSent || error.status === 499) interaction.failed(error, error.status, null);
    else interaction.failed(error, error.status, sendError(res, error));
  } finally {
    res.off('close', onClose);
    if (controller.signal.aborted && interaction.status !== 499) {
      interaction.status = 499;
      interaction.error ??= clientClosed();
    }
    deps.log.record(interaction.toEntry(performance.now()));
  }
}

function callProvider(key: VirtualKey, request: ChatRequest, raw: Buffer, signal: AbortSignal): Promise<UpstreamResponse> {
  const provider = key.provider;
  if (provider.answerLocally !== undefined) return Promise.resolve(provider.answerLocally(request));
  const call = provider.prepare({ request, raw, apiKey: key.apiKey });
  return sendUpstream(key.target as NonNullable<VirtualKey['target']>, call, signal);
}

function wantsUsage(request: ChatRequest): boolean {
  const options = request.stream_options;
  return typeof options === 'object' && options !== null && options.include_usage === true;
}

async function relayCompletion(
  upstream: UpstreamResponse,
  key: VirtualKey,
  res: ServerResponse,
  interaction: Interaction,
  signal: AbortSignal,
): Promise<void> {
  const onAbort = (): void => upstream.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const body = await readAll(upstream.body, RESPONSE_LIMIT);
    const translated = key.provider.translateResponse(body);
    sendJson(res, 200, translated.body);
    interaction.status = 200;
    interaction.response = translated.completion;
    interaction.usage = translated.completion.usage ?? null;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
