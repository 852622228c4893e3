/**
 * Errors in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with its type
 * for each status. For a status Anthropic has no type of its own for (502, 503, 422, …), a type
 * that is already one of Anthropic's (a provider's own error passed on) is kept.
 */
import type { GatewayError } from '../../errors.js';
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

export function messagesErrorBody(error: GatewayError): { type: 'error'; error: { type: string; message: string } } {
  return { type: 'error', error: { type: messagesErrorType(error), message: error.message } };
}
