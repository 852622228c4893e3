/**
 * Errors in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with its type
 * for each status. For a status Anthropic has no type of its own for (502, 503, 422, …), a type
 * that is already one of Anthropic's (a provider's own error passed on) is kept.
 */
import { isContextOverflow, type GatewayError } from '../../errors.js';
import { entryOf } from '../json.js';
import { THREAD_ERROR_CODES } from './threads.js';

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
  const server = error.status >= 500;
  // A type of Anthropic's is kept (a provider's own error passed on, a mid-stream error's), but
  // not the client's invalid_request_error on a server's status: it is OpenAI's generic type too,
  // which a chat provider's 503 says.
  if (ANTHROPIC_TYPES.has(error.type) && !(server && error.type === 'invalid_request_error')) return error.type;
  return server ? 'api_error' : 'invalid_request_error';
}

/** The first number one of `patterns` captures in `text`. */
function count(text: string, patterns: readonly RegExp[]): number | null {
  for (const pattern of patterns) {
    const found = pattern.exec(text)?.[1];
    if (found !== undefined) return Number(found);
  }
  return null;
}

/** How OpenAI, DeepSeek and vLLM say the model's context, the prompt, and the output asked for. */
const LIMIT = [/maximum context length (?:is |of )?(\d+)/i];
const PROMPT = [/messages resulted in (\d+) tokens/i, /\((\d+) in the messages/i, /(\d+) tokens from the input/i, /request has (\d+) input tokens/i];
const OUTPUT = [/(\d+) in the completion/i, /(\d+) tokens for the completion/i, /max_tokens'? [^.]*?too large: (\d+)/i];

/**
 * A context overflow in Anthropic's words, where the provider's say which it is: Claude Code
 * compacts the conversation on "prompt is too long: N tokens > M maximum", and lowers max_tokens
 * on "input length and `max_tokens` exceed context limit: N + K > M", and on nothing an
 * OpenAI-compatible provider says (it would stop at the error instead). The provider's message
 * follows. Anything else is left as it is.
 */
function messagesErrorMessage(error: GatewayError): string {
  const message = error.message;
  if (!isContextOverflow(error) || /prompt is too long|exceed context limit/i.test(message)) return message;
  const limit = count(message, LIMIT);
  const prompt = count(message, PROMPT);
  const output = count(message, OUTPUT);
  if (limit !== null && prompt !== null && prompt > limit) return `prompt is too long: ${prompt} tokens > ${limit} maximum. ${message}`;
  if (limit !== null && prompt !== null && output !== null) return `input length and \`max_tokens\` exceed context limit: ${prompt} + ${output} > ${limit}, decrease input length or \`max_tokens\` and try again. ${message}`;
  // Said only by its code: the prompt, as OpenAI means it.
  return error.code === 'context_length_exceeded' ? `prompt is too long: ${message}` : message;
}

export function messagesErrorBody(error: GatewayError): { type: 'error'; error: { type: string; message: string; details?: { error_code: string } } } {
  const body = { type: messagesErrorType(error), message: messagesErrorMessage(error) };
  // Anthropic's SDK recovers from a thread's refusals by this code (threads.ts).
  if (error.code !== null && THREAD_ERROR_CODES.has(error.code)) return { type: 'error', error: { ...body, details: { error_code: error.code } } };
  return { type: 'error', error: body };
}
