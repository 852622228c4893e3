/**
 * Failures in a Responses stream: the `error` a `response.failed` event carries, with the codes
 * Codex acts on (`context_length_exceeded` and `insufficient_quota` are fatal there; for
 * `rate_limit_exceeded` it waits as long as the message's "try again in N s" says; anything
 * else it retries), and the status a provider's `response.failed` stands for in the log.
 */
import { GatewayError, openAiCode } from '../../errors.js';
import { errorStatus } from '../answer.js';
import { entryOf, isRecord } from '../json.js';

export interface ResponseError {
  code: string;
  message: string;
}

function retryAfterSeconds(error: GatewayError): number {
  const header = Number(error.headers?.['retry-after']);
  return Number.isFinite(header) && header > 0 ? Math.ceil(header) : 1;
}

/** A gateway error → the `error` of a `response.failed`. */
export function responseError(error: GatewayError): ResponseError {
  const said = `${error.code ?? ''} ${error.type}`;
  const code = openAiCode(error);
  if (code === 'rate_limit_exceeded') {
    const message = /try again in/i.test(error.message) ? error.message : `${error.message} Please try again in ${retryAfterSeconds(error)}s.`;
    return { code: 'rate_limit_exceeded', message };
  }
  if (code !== null) return { code, message: error.message };
  if (error.status === 529 || /overloaded/.test(said)) return { code: 'server_is_overloaded', message: error.message };
  if (error.status === 400 && error.code === 'invalid_prompt') return { code: 'invalid_prompt', message: error.message };
  return { code: 'server_error', message: error.message };
}

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  context_length_exceeded: 400,
  invalid_prompt: 400,
  server_is_overloaded: 503,
  slow_down: 503,
};

/** A provider's `response.failed` (its `response.error`) → the gateway error it stands for in the log and metrics. */
export function failedError(response: unknown): GatewayError {
  const error = isRecord(response) && isRecord(response.error) ? response.error : {};
  const code = typeof error.code === 'string' ? error.code : 'server_error';
  const message = typeof error.message === 'string' ? error.message : 'The provider failed mid-stream.';
  // A code of its own, else the status the error names (vLLM's numeric `code`), as on a chat stream.
  return new GatewayError(entryOf(STATUS_BY_CODE, code) ?? errorStatus(error), message, { type: code === 'server_error' ? 'server_error' : code, code });
}
