/**
 * `POST /v1/messages/count_tokens`: how many input tokens a Messages request would use. A key
 * whose target speaks Messages asks the provider (its body, query, version and betas passed on,
 * the model map applied); any other gets an estimate (formats/messages/count.ts). Like every
 * client request it is authenticated, checked against the allowlist, counted against the key's
 * requests per minute (as zero tokens: counting generates nothing), logged and measured; errors
 * have Anthropic's shape.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import { answerErrorStatus } from '../formats/answer.js';
import { isRecord } from '../formats/json.js';
import { jsonPieces } from '../formats/json-pieces.js';
import { plainUniqueKeys } from '../formats/json-keys.js';
import { splicedBody } from '../formats/json-splice.js';
import { estimateInputTokens } from '../formats/messages/count.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { messagesTarget } from '../formats/messages/index.js';
import { parseMessagesRequest } from '../formats/messages/request.js';
import type { AnthropicRequest } from '../formats/messages/types.js';
import type { Interaction } from '../observe/interaction.js';
import { targetFor } from '../policy/routing.js';
import type { Target } from '../policy/target.js';
import type { RequestContext } from '../server/context.js';
import { readBody } from '../server/http.js';
import { parseUpstreamError, upstreamError } from '../upstream/errors.js';
import { withQuery, withSubpath, type Endpoint, type RequestBody } from '../upstream/types.js';
import { anthropicCredential, anthropicHeaders, checkThread, HOW_TO_SEND_ANTHROPIC_KEY } from './messages.js';
import { serveKeyed, type KeyedRoute } from './keyed.js';
import { acceptedModel, callWhole, checkModel, type SurfaceDeps, type WholeAnswer } from './surface.js';
import { shallow } from './outbound.js';
import { parseProviderJson } from '../formats/json-limits.js';

const ANSWER_LIMIT = 1024 * 1024;

/**
 * A provider that speaks Messages but has no count_tokens (a compatible endpoint that left it
 * out) answers 404 or 405 for the path: the estimate stands in. A 404 about the model is the
 * client's to see.
 */
function lacksCountTokens(status: number, body: Buffer): boolean {
  if (status !== 404 && status !== 405) return false;
  return !/\bmodel\b/i.test(parseUpstreamError(body).message ?? '');
}

function askProvider(target: Target, endpoint: Endpoint, body: RequestBody, req: IncomingMessage, interaction: Interaction, deps: SurfaceDeps): Promise<WholeAnswer> {
  const passed = anthropicHeaders(req.headers);
  const build = (apiKey: string) => ({ body, headers: { ...messagesTarget.authHeaders(apiKey), ...passed } });
  return callWhole(target, withQuery(endpoint, interaction.context.query), build, ANSWER_LIMIT, interaction, deps);
}

/** The provider's count, or null when it has none (the estimate stands in). */
async function providerCount(target: Target, endpoint: Endpoint, raw: Buffer, request: AnthropicRequest, req: IncomingMessage, interaction: Interaction, deps: SurfaceDeps, threaded: boolean): Promise<Buffer | null> {
  const model = target.modelMap?.map(request.model) ?? request.model;
  interaction.upstreamModel = model;
  // Claude Code counts its whole conversation: its bytes, the model spliced in; serialised in
  // pieces, as a translation is, where a thread changed it.
  const spliced = !threaded && plainUniqueKeys(raw, request) ? splicedBody({ raw, document: request, changes: new Map(model === request.model ? [] : [['model', model]]) }) : null;
  const body = spliced ?? shallow(() => jsonPieces({ ...request, model }, 'messages'));
  const answer = await askProvider(target, withSubpath(endpoint, '/count_tokens'), body, req, interaction, deps);
  if (answer.status < 200 || answer.status > 299) {
    if (lacksCountTokens(answer.status, answer.body)) return null;
    throw upstreamError(answer.status, answer.body, answer.headers, target.secrets, endpoint.url);
  }
  let parsed: unknown;
  try {
    parsed = parseProviderJson(answer.body);
  } catch {
    parsed = null;
  }
  if (!isRecord(parsed) || typeof parsed.input_tokens !== 'number') {
    // A 200 whose body is an error (an overload some servers answer so) is that error, as on the other routes.
    const status = answerErrorStatus(answer.body);
    if (status !== null) throw upstreamError(status, answer.body, answer.headers, target.secrets, endpoint.url);
    throw new GatewayError(502, 'The provider sent a token count the gateway cannot read.', { code: 'upstream_invalid_response' });
  }
  return answer.body;
}

const COUNT_TOKENS: KeyedRoute = {
  methods: ['POST'],
  credential: anthropicCredential,
  howToSendKey: () => HOW_TO_SEND_ANTHROPIC_KEY,
  errorBody: messagesErrorBody,
  answerHeaders: (context) => ({ 'request-id': context.id }),
};

export function serveCountTokens(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  return serveKeyed(COUNT_TOKENS, req, res, context, deps, async ({ key, interaction, admit }) => {
    const raw = (await readBody(req, deps.maxBodyBytes, context.cancel, null, context.bodies)).bytes;
    const request = interaction.readRequest(raw, (bytes) => parseMessagesRequest(bytes, true));
    interaction.model = acceptedModel(request.model);
    checkModel(key, request.model);
    await admit();
    const target = targetFor(key, 'messages');
    const endpoint = target.endpoints.messages;
    // A count with a thread counts its history at Anthropic: the same rules as a turn of it.
    const threaded = checkThread(request, target, key, deps.owners);
    const counted = endpoint === undefined ? null : await providerCount(target, endpoint, raw, request, req, interaction, deps, threaded);
    return { status: 200, body: counted ?? JSON.stringify({ input_tokens: shallow(() => estimateInputTokens(request)) }) };
  });
}
