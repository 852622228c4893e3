/**
 * `POST /v1/messages/count_tokens`: how many input tokens a Messages request would use. A key
 * whose target speaks Messages asks the provider (its body, query, version and betas passed on,
 * the model map applied); any other gets an estimate (formats/messages/count.ts). Free at
 * Anthropic and generating nothing, it is not counted against the key's limits or budget and is
 * not logged; errors have Anthropic's shape.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, toGatewayError } from '../errors.js';
import { isRecord } from '../formats/json.js';
import { estimateInputTokens } from '../formats/messages/count.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { messagesTarget } from '../formats/messages/index.js';
import { parseMessagesRequest } from '../formats/messages/request.js';
import type { AnthropicRequest } from '../formats/messages/types.js';
import { Interaction } from '../observe/interaction.js';
import { authenticate } from '../policy/auth.js';
import type { VirtualKey } from '../policy/keys.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { readBody, sendError, sendJson } from '../server/http.js';
import { callWithRetries } from '../upstream/call.js';
import { parseUpstreamError, upstreamError } from '../upstream/errors.js';
import { readAll } from '../upstream/read.js';
import { KeyScrubber } from '../upstream/scrub.js';
import { withQuery, withSubpath, type Endpoint } from '../upstream/types.js';
import { anthropicCredential, anthropicHeaders, HOW_TO_SEND_ANTHROPIC_KEY } from './messages.js';
import { checkModel, type SurfaceDeps } from './surface.js';

const ANSWER_LIMIT = 1024 * 1024;

function estimate(request: AnthropicRequest): string {
  return JSON.stringify({ input_tokens: estimateInputTokens(request) });
}

/**
 * A provider that speaks Messages but has no count_tokens (a compatible endpoint that left it
 * out) answers 404 or 405 for the path: the estimate stands in. A 404 about the model is the
 * client's to see.
 */
function lacksCountTokens(status: number, body: Buffer): boolean {
  if (status !== 404 && status !== 405) return false;
  return !/\bmodel\b/i.test(parseUpstreamError(body).message ?? '');
}

interface ProviderAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The call's attempts and wait for the provider (the gateway's own time excludes it); nothing is logged. */
  readonly record: Interaction;
}

async function askProvider(key: VirtualKey, endpoint: Endpoint, body: Buffer | string, req: IncomingMessage, context: RequestContext, deps: SurfaceDeps): Promise<ProviderAnswer> {
  const passed = anthropicHeaders(req.headers);
  const build = (apiKey: string) => ({ body, headers: { ...messagesTarget.authHeaders(apiKey), ...passed } });
  const record = new Interaction(context);
  const { upstream, apiKey } = await callWithRetries(deps.upstream, key.target.keys, withQuery(endpoint, context.query), build, context.cancel, record);
  const answer = await readAll(upstream.body, { limit: ANSWER_LIMIT, truncate: false, cancel: context.cancel, idleMs: deps.upstream.policy.idleTimeoutMs, scrubber: new KeyScrubber(apiKey) });
  record.upstreamEndedAt = performance.now();
  return { status: upstream.status, headers: upstream.headers, body: answer, record };
}

async function count(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  if (context.method !== 'POST') {
    throw new GatewayError(405, `Method ${context.method} is not allowed on ${context.path}; use POST.`, { code: 'method_not_allowed', headers: { allow: 'POST' } });
  }
  const key = authenticate(anthropicCredential(req.headers), deps.keys, HOW_TO_SEND_ANTHROPIC_KEY);
  const raw = await readBody(req, deps.maxBodyBytes, context.cancel);
  const request = parseMessagesRequest(raw, true);
  checkModel(key, request.model);
  const endpoint = key.target.endpoints.messages;
  if (endpoint !== undefined) {
    const model = key.modelMap?.map(request.model) ?? request.model;
    const body = model === request.model ? raw : JSON.stringify({ ...request, model });
    const answer = await askProvider(key, withSubpath(endpoint, '/count_tokens'), body, req, context, deps);
    if (answer.status >= 200 && answer.status <= 299) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(answer.body.toString('utf8'));
      } catch {
        parsed = null;
      }
      if (!isRecord(parsed) || typeof parsed.input_tokens !== 'number') {
        throw new GatewayError(502, 'The provider sent a token count the gateway cannot read.', { code: 'upstream_invalid_response' });
      }
      stampOverhead(res, answer.record.overheadMs(performance.now()));
      sendJson(res, 200, answer.body);
      return;
    }
    if (!lacksCountTokens(answer.status, answer.body)) {
      throw upstreamError(answer.status, answer.body, answer.headers, key.target.keys.apiKeys, endpoint.url);
    }
  }
  stampOverhead(res, performance.now() - context.startedAt);
  sendJson(res, 200, estimate(request));
}

export async function serveCountTokens(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  res.setHeader('request-id', context.id);
  try {
    await count(req, res, context, deps);
  } catch (err) {
    const error = context.cancel.reason ?? toGatewayError(err);
    if (res.headersSent || error.status === 499) return;
    if (!req.complete) res.setHeader('connection', 'close');
    stampOverhead(res, performance.now() - context.startedAt);
    sendError(res, error, messagesErrorBody(error));
  }
}
