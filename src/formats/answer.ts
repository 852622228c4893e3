/**
 * Reading a provider's 2xx answer: JSON, an object, holding the array it must hold. Anything
 * else is a 502 the client can act on (the provider answered, but not with something usable).
 */
import { GatewayError } from '../errors.js';
import { entryOf, isRecord } from './json.js';
import { parseProviderJson, TooDeep, TooMany } from './json-limits.js';

export function invalidAnswer(why: string): GatewayError {
  return new GatewayError(502, `The provider sent an answer the gateway cannot read: ${why}.`, { code: 'upstream_invalid_response' });
}

/** Why `what` could not be parsed: not JSON, or past the limits of parseProviderJson (TooDeep, TooMany say which). */
export function notJson(what: string, err: unknown): string {
  if (err instanceof TooMany) return `${what} holds more than ${err.max} ${err.what}`;
  if (err instanceof TooDeep) return `${what} nests deeper than ${err.max} levels`;
  return `${what} is not JSON`;
}

/**
 * The body as a JSON object, or a 502 naming what was wrong. Parsed whole: a body cut short (a
 * content-length shorter than the JSON) still starts like an answer, and must not reach a client
 * as one.
 */
export function parseObjectAnswer(body: Buffer | string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = parseProviderJson(body);
  } catch (err) {
    // Past a body's limits, it says which (TooDeep, TooMany).
    throw invalidAnswer(notJson(`its ${what}`, err));
  }
  if (!isRecord(parsed)) throw invalidAnswer(`its ${what} is not a JSON object`);
  return parsed;
}

/** The body as an object with an array under `key` (`choices`, `data`, `content`), or a 502 naming what was wrong. */
export function parseAnswer(body: Buffer, what: string, key: string): Record<string, unknown> {
  const parsed = parseObjectAnswer(body, what);
  if (!Array.isArray(parsed[key])) throw invalidAnswer(`its ${what} has no \`${key}\` array`);
  return parsed;
}

/** The HTTP status each Anthropic error type stands for (mid-stream errors, and some servers' errors, arrive with a 200). */
export const ERROR_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/**
 * The status a 2xx answer that is an error stands for (some OpenAI-compatible servers and proxies
 * answer an error with a 200: `{"error": {…}}`, Anthropic's `{"type": "error", "error": {…}}`): the
 * status it names (`status`, or a numeric `code`), else its Anthropic type's, else 502; null for a
 * body that is not an error.
 */
export function answerErrorStatus(body: Buffer): number | null {
  let parsed: unknown;
  try {
    parsed = parseProviderJson(body);
  } catch {
    return null;
  }
  if (!isRecord(parsed) || !isRecord(parsed.error)) return null;
  return errorStatus(parsed.error);
}

/** The status a provider's error object stands for: the one it names (`status`, or a numeric `code`), else its code's or Anthropic type's, else 502. */
export function errorStatus(error: Record<string, unknown>): number {
  for (const said of [error.status, error.code]) {
    const status = typeof said === 'number' ? said : typeof said === 'string' && /^\d{3}$/.test(said) ? Number(said) : Number.NaN;
    // (Not 499: the gateway's word for a client that left, whose request goes unanswered.)
    if (Number.isInteger(status) && status >= 400 && status <= 599 && status !== 499) return status;
  }
  if (error.code === 'rate_limit_exceeded') return 429;
  return (typeof error.type === 'string' ? entryOf(ERROR_STATUS, error.type) : undefined) ?? 502;
}

/** An event's data as an object, or null (not JSON, or not an object): for an event named `error`, whatever it holds. */
export function eventObject(data: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = parseProviderJson(data);
    return isRecord(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

/**
 * An error in OpenAI's shape in a stream of another API, as a server or proxy in front of a provider
 * sends it: `{"error": {…}}` without a `type`, or vLLM's bare `{"object": "error", …}`. Its detail.
 */
export class ForeignStreamError {
  constructor(readonly detail: Record<string, unknown>) {}
}

/** The detail of an error in OpenAI's shape (ForeignStreamError's), or null for an event of another shape. */
export function foreignError(event: Record<string, unknown>): Record<string, unknown> | null {
  if (event.object === 'error') return event;
  return typeof event.type !== 'string' && isRecord(event.error) ? event.error : null;
}

/** A stream event's data as an object with a string `type` (Messages, Responses), an error in OpenAI's shape, or the 502 saying what it is instead. */
export function typedEvent(data: string): (Record<string, unknown> & { type: string }) | ForeignStreamError | GatewayError {
  let parsed: unknown;
  try {
    parsed = parseProviderJson(data);
  } catch (err) {
    return invalidAnswer(notJson('a stream event', err));
  }
  const foreign = isRecord(parsed) ? foreignError(parsed) : null;
  if (foreign !== null) return new ForeignStreamError(foreign);
  if (!isRecord(parsed) || typeof parsed.type !== 'string') return invalidAnswer('a stream event is not an object with a type');
  return parsed as Record<string, unknown> & { type: string };
}
