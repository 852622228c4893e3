/**
 * A presented virtual key → the key, or a 401 that never echoes what was presented.
 */
import { GatewayError } from '../errors.js';
import type { KeyStore } from './key-store.js';
import type { VirtualKey } from './keys.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  const match = header === undefined ? null : BEARER.exec(header);
  return match === null ? null : (match[1] as string);
}

const BEARER_SCHEME = /^Bearer\s/i;

/**
 * All that follows `Bearer` in an Authorization header, spaces within kept (an operator's token
 * may have them), or null. Trimmed, not matched by a pattern: a lazy one backtracks over a long
 * run of spaces in the middle, in time growing with its square, before any key is checked.
 */
export function bearerText(header: string | undefined): string | null {
  return header === undefined || !BEARER_SCHEME.test(header) ? null : header.slice(6).trim();
}

/** What a request presents: one key, the keys of several headers in order of preference, or null: none. */
export type Presented = string | readonly string[] | null;

/** The first key presented that is a virtual key, or a 401; `howToSend` tells a client without one where it goes. */
export function authenticate(presented: Presented, keys: KeyStore, howToSend: string): VirtualKey {
  const candidates = presented === null ? [] : typeof presented === 'string' ? [presented] : presented;
  if (candidates.length === 0) throw new GatewayError(401, `Missing virtual key. ${howToSend}`, { code: 'missing_api_key' });
  for (const candidate of candidates) {
    const key = keys.lookup(candidate);
    if (key !== undefined) return key;
  }
  throw new GatewayError(401, 'Invalid virtual key. Check the key you were given for this gateway.', { code: 'invalid_api_key' });
}
