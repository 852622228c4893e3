/**
 * Reading JSON that came from a client or a provider: nothing in it can be trusted to have the
 * shape it should.
 */
import { invalidRequest } from '../errors.js';
import { parseJsonBytes } from './json-bytes.js';

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `table[name]` for a name that comes from a client or a provider: own entries only, so
 * `constructor`, `toString` or `__proto__` find nothing instead of Object.prototype's members.
 */
export function entryOf<T>(table: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/** A client's body as a JSON object, or the 400 saying what it is instead; `expected` names the fields it should hold. */
export function parseJsonObject(raw: Buffer, expected: string): Record<string, unknown> {
  if (raw.length === 0) throw invalidRequest(`The request body is empty; expected a JSON object with ${expected}.`, null, 'invalid_json');
  let body: unknown;
  try {
    body = parseJsonBytes(raw);
  } catch (err) {
    throw invalidRequest(`The request body is not valid JSON (${(err as Error).message}).`, null, 'invalid_json');
  }
  if (!isRecord(body)) throw invalidRequest(`The request body must be a JSON object with ${expected}.`, null, 'invalid_body');
  return body;
}
