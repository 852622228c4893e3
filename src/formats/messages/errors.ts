/**
 * Errors in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with its type
 * for each status. For a status Anthropic has no type of its own for (502, 503, 422, …), a type
 * that is already one of Anthropic's (a provider's own error passed on) is kept.
 */
import { isContextOverflow, type GatewayError } from '../../errors.js';
import { entryOf } from '../json.js';

const TYPE_BY_STATUS: Readonly<Record<string, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const ANTHROPIC_TYPES: ReadonlySet<string> = new Set(Object.values(TYPE_BY_STATUS));

function messagesErrorType(error: GatewayError): string {
  const byStatus = entryOf(TYPE_BY_STATUS, String(error.status));
  if (byStatus !== undefined) return byStatus;
  if (ANTHROPIC_TYPES.has(error.type)) return error.type;
  return error.status < 500 ? 'invalid_request_error' : 'api_error';
}

/**
 * A context overflow in Anthropic's words: Claude Code compacts the conversation on a 400 that
 * says "prompt is too long" (Anthropic's `prompt is too long: N tokens > M maximum`), and on
 * nothing an OpenAI-compatible provider says, so it would stop at the error instead.
 */
function messagesErrorMessage(error: GatewayError): string {
  if (!isContextOverflow(error) || /prompt is too long/i.test(error.message)) return error.message;
  const limit = /maximum context length (?:is |of )?(\d+)/i.exec(error.message)?.[1];
  const asked = /(?:resulted in|requested(?: a total of)?) (\d+) tokens/i.exec(error.message)?.[1];
  return `prompt is too long: ${limit !== undefined && asked !== undefined ? `${asked} tokens > ${limit} maximum. ` : ''}${error.message}`;
}

export function messagesErrorBody(error: GatewayError): { type: 'error'; error: { type: string; message: string } } {
  return { type: 'error', error: { type: messagesErrorType(error), message: messagesErrorMessage(error) } };
}
