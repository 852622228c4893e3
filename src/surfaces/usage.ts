/**
 * `GET /v1/usage` (and `/usage`) with a virtual key: that key's spend in its period (requests,
 * tokens, USD), its budget and what is left of it, and its rate-limit state; nothing about any
 * other key. Not an LLM interaction: not logged, not counted against the key's limits. In
 * Anthropic's error shape for a request in Anthropic's style, OpenAI's otherwise.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { openAiErrorBody, toGatewayError } from '../errors.js';
import { messagesErrorBody } from '../formats/messages/errors.js';
import { Interaction } from '../observe/interaction.js';
import { bearerToken } from '../policy/auth.js';
import { limitsOf, type KeyReport } from '../policy/limits.js';
import { stampOverhead, type RequestContext } from '../server/context.js';
import { sendError, sendJson } from '../server/http.js';
import { anthropicCredential, HOW_TO_SEND_ANTHROPIC_KEY, isAnthropicStyle } from './messages.js';
import { authenticateRequest, recordRefusedKey, type SurfaceDeps } from './surface.js';
import { roundUsd } from '../prices/cost.js';

/** Both ways work here: the route serves OpenAI's and Anthropic's clients alike. */
const HOW_TO_SEND_EITHER = "Send it as 'Authorization: Bearer <virtual key>' or as 'x-api-key: <virtual key>'.";

/** The answer's body: the key known by its name (or digest label), never by itself. */
function usageBody(keyName: string, report: KeyReport): unknown {
  const { spend, budget, inFlight } = report;
  return {
    object: 'usage',
    key_name: keyName,
    period: report.period,
    period_start: report.periodStart,
    period_end: report.periodEnd,
    requests: spend.requests,
    usage: {
      input_tokens: spend.input_tokens,
      output_tokens: spend.output_tokens,
      cache_read_tokens: spend.cache_read_tokens,
      cache_write_tokens: spend.cache_write_tokens,
      reasoning_tokens: spend.reasoning_tokens,
      total_tokens: spend.tokens,
    },
    cost_usd: roundUsd(spend.usd),
    unpriced_requests: spend.unpriced_requests,
    in_flight: { tokens: inFlight.tokens, cost_usd: roundUsd(inFlight.usd) },
    budget:
      budget === null
        ? null
        : {
            max_tokens: budget.maxTokens,
            max_usd: budget.maxUsd,
            remaining_tokens: budget.maxTokens === null ? null : Math.max(0, budget.maxTokens - spend.tokens - inFlight.tokens),
            remaining_usd: budget.maxUsd === null ? null : roundUsd(Math.max(0, budget.maxUsd - spend.usd - inFlight.usd)),
          },
    rate_limit:
      report.requestsPerMinute === null && report.tokensPerMinute === null
        ? null
        : { requests_per_minute: report.requestsPerMinute, tokens_per_minute: report.tokensPerMinute },
    // Said, not left to look like the key's whole spend: another instance's requests are not in it.
    ...(report.partial === true ? { partial: true } : {}),
  };
}

export async function serveUsage(req: IncomingMessage, res: ServerResponse, context: RequestContext, deps: SurfaceDeps): Promise<void> {
  const anthropic = isAnthropicStyle(req.headers);
  if (anthropic) res.setHeader('request-id', context.id);
  const interaction = new Interaction(context);
  try {
    const key = anthropic
      ? authenticateRequest(anthropicCredential(req.headers), HOW_TO_SEND_ANTHROPIC_KEY, interaction, deps)
      : authenticateRequest(bearerToken(req.headers.authorization), HOW_TO_SEND_EITHER, interaction, deps);
    const report = await deps.limiter.report(limitsOf(key));
    if (context.cancel.cancelled) return;
    stampOverhead(res, performance.now() - context.startedAt);
    sendJson(res, 200, JSON.stringify(usageBody(key.label, report)));
  } catch (err) {
    if (res.headersSent || context.cancel.cancelled) return;
    const error = toGatewayError(err);
    stampOverhead(res, performance.now() - context.startedAt);
    const body = sendError(res, error, anthropic ? messagesErrorBody(error) : openAiErrorBody(error));
    recordRefusedKey(interaction, error, body, deps);
  }
}
