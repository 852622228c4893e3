/**
 * Reading a provider's 2xx answer: JSON, an object, holding the array it must hold. Anything
 * else is a 502 the client can act on (the provider answered, but not with something usable).
 */
import { GatewayError } from '../errors.js';
import { isRecord } from './json.js';

export function invalidAnswer(why: string): GatewayError {
  return new GatewayError(502, `The provider sent an answer the gateway cannot read: ${why}.`, { code: 'upstream_invalid_response' });
}

/**
 * The body as a JSON object, or a 502 naming what was wrong. Parsed whole: a body cut short (a
 * content-length shorter than the JSON) still starts like an answer, and must not reach a client
 * as one.
 */
export function parseObjectAnswer(body: Buffer | string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalidAnswer(`its ${what} is not JSON`);
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

/** An event's data as an object, or null (not JSON, or not an object): for an event named `error`, whatever it holds. */
export function eventObject(data: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(data);
    return isRecord(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

/** A stream event's data as an object with a string `type` (Messages, Responses), or the 502 saying what it is instead. */
export function typedEvent(data: string): (Record<string, unknown> & { type: string }) | GatewayError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return invalidAnswer('a stream event is not JSON');
  }
  if (!isRecord(parsed) || typeof parsed.type !== 'string') return invalidAnswer('a stream event is not an object with a type');
  return parsed as Record<string, unknown> & { type: string };
}
