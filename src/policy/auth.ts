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

/** The key presented (null: none), or a 401; `howToSend` tells a client without one where it goes. */
export function authenticate(presented: string | null, keys: KeyStore, howToSend: string): VirtualKey {
  if (presented === null) throw new GatewayError(401, `Missing virtual key. ${howToSend}`, { code: 'missing_api_key' });
  const key = keys.lookup(presented);
  if (key === undefined) throw new GatewayError(401, 'Invalid virtual key. Check the key you were given for this gateway.', { code: 'invalid_api_key' });
  return key;
}
