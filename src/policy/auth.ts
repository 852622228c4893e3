/**
 * `Authorization: Bearer <virtual key>` → the virtual key, or a 401 that never echoes what was
 * presented.
 */
import { GatewayError } from '../errors.js';
import type { KeyStore, VirtualKey } from './keys.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Returns the key, or throws 401; `seen` learns what was presented either way (for the log). */
export function authenticate(header: string | undefined, keys: KeyStore, seen: { presented: string | null } = { presented: null }): VirtualKey {
  const match = header === undefined ? null : BEARER.exec(header);
  if (match === null) {
    throw new GatewayError(401, "Missing virtual key. Send it as 'Authorization: Bearer <virtual key>'.", { code: 'missing_api_key' });
  }
  const presented = match[1] as string;
  seen.presented = presented;
  const key = keys.lookup(presented);
  if (key === undefined) throw new GatewayError(401, 'Invalid virtual key. Check the key you were given for this gateway.', { code: 'invalid_api_key' });
  return key;
}
