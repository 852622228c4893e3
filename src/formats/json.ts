/**
 * Reading JSON that came from a client or a provider: nothing in it can be trusted to have the
 * shape it should.
 */
import { invalidRequest, type GatewayError } from '../errors.js';
import { LONG_TEXT, parseJsonBytes, type DeferOptions } from './json-bytes.js';
import { TooDeep, TooMany } from './json-limits.js';

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A client's or a provider's value named in a message: a string as it is, any other value by its
 * kind. `String(value)` throws on an object whose `toString` is not a function
 * (`{"type":{"toString":1}}`), which turned a refusal into a 500.
 */
export function shown(value: unknown): string {
  if (value === LONG_TEXT) return 'a string over 1 KiB';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' && value !== null ? 'an object' : String(value);
}

/**
 * `table[name]` for a name that comes from a client or a provider: own entries only, so
 * `constructor`, `toString` or `__proto__` find nothing instead of Object.prototype's members.
 */
export function entryOf<T>(table: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/**
 * A client's body as a JSON object, or the 400 saying what it is instead; `expected` names the
 * fields it should hold. Its large members stay bytes until read (`views`: what its checks see of
 * them without reading them, json-bytes.ts memberView).
 */
export function parseJsonObject(raw: Buffer, expected: string, views?: DeferOptions['views']): Record<string, unknown> {
  if (raw.length === 0) throw invalidRequest(`The request body is empty; expected a JSON object with ${expected}.`, null, 'invalid_json');
  // JSON.parse's verdict, or the cost the gateway refuses; anything else is a bug of the scan, not the client's.
  const refusal = (err: SyntaxError | RangeError | TooDeep | TooMany): GatewayError => {
    if (err instanceof TooDeep) return invalidRequest(`The request body nests deeper than ${err.max} levels.`, null, 'invalid_body');
    if (err instanceof TooMany) return invalidRequest(`The request body holds more than ${err.max} ${err.what}.`, null, 'invalid_body');
    return invalidRequest(`The request body is not valid JSON (${err.message}).`, null, 'invalid_json');
  };
  let body: unknown;
  try {
    // Its large members (a conversation) stay bytes until read: a request passed through never parses them.
    body = parseJsonBytes(raw, undefined, views === undefined ? { invalid: refusal } : { invalid: refusal, views });
  } catch (err) {
    if (err instanceof SyntaxError || err instanceof RangeError || err instanceof TooDeep || err instanceof TooMany) throw refusal(err);
    throw err;
  }
  if (!isRecord(body)) throw invalidRequest(`The request body must be a JSON object with ${expected}.`, null, 'invalid_body');
  refuseCaseTwins(body);
  return body;
}

/** A key as Go's encoding/json matches it to a field: case folded, `ſ` as `s`, the Kelvin sign as `k`. */
export function goFold(key: string): string {
  return key.toLowerCase().replaceAll('ſ', 's');
}

/** A key with a character that may fold to another (upper case, anything past ASCII). */
const FOLDS = /[^a-z0-9_.-]/;

/** Top-level fields the gateway reads or sets (policy, usage, state), in every API it serves. */
const READ_FIELDS: ReadonlySet<string> = new Set([
  'model', 'messages', 'input', 'system', 'instructions', 'tools', 'tool_choice', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens',
  'max_output_tokens', 'thinking', 'reasoning', 'output_config', 'metadata', 'store', 'previous_response_id', 'background', 'conversation', 'thread',
  // The answers asked for: an output reservation holds that many.
  'n',
]);

/**
 * Refuses top-level keys that differ only in case (`model` and `Model`), and a key that is one of
 * the fields the gateway reads spelled in another case (`Stream_options`): Go's encoding/json
 * (Ollama and other servers) matches keys to fields ignoring case, the last one winning, so such a
 * server would read a value the gateway never checked (allowed, priced) or set. As Go folds them:
 * `ſ` is `s`, and the Kelvin sign `k`.
 */
function refuseCaseTwins(body: Record<string, unknown>): void {
  const cut = (key: string): string => (key.length > 64 ? `${key.slice(0, 64)}…` : key);
  const keys = Object.keys(body);
  // Keys in lower-case ASCII (every API's own) fold to themselves: twins need one that does not.
  if (!keys.some((key) => FOLDS.test(key))) return;
  const seen = new Map<string, string>();
  for (const key of keys) {
    const folded = goFold(key);
    if (folded !== key && READ_FIELDS.has(folded)) {
      throw invalidRequest(`The request body has the key "${cut(key)}": the API's own is "${folded}", and some servers read them as one. Send "${folded}".`, cut(key), 'invalid_body');
    }
    const twin = seen.get(folded);
    if (twin !== undefined) throw invalidRequest(`The request body has the keys "${cut(twin)}" and "${cut(key)}", which differ only in case: some servers read them as one. Send one.`, cut(key), 'invalid_body');
    seen.set(folded, key);
  }
}
