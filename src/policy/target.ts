/**
 * A target: one provider, reached at its base URL with one or more real keys, speaking one or
 * more APIs there. What a virtual key routes to (one target today; several, for fallback, to
 * come).
 */
import type { ApiName, ApiTypes, TargetApi } from '../formats/api.js';
import { TARGET_APIS } from '../formats/apis.js';
import type { Provider } from '../providers/types.js';
import { httpEndpoint, localEndpoint, type Endpoint } from '../upstream/types.js';
import { KeyPool } from './key-pool.js';

export interface Target {
  readonly provider: Provider;
  /** The APIs it speaks at its base URL, preferred first. */
  readonly apis: readonly ApiName[];
  /** The real provider keys, taking turns. Never logged, never sent to a client. */
  readonly keys: KeyPool;
  /** Where each API it speaks is served, resolved once. */
  readonly endpoints: Readonly<Partial<Record<ApiName, Endpoint>>>;
  /** Where it lists its models, and the API whose list format that is. */
  readonly modelsEndpoint: Endpoint;
  readonly modelsApi: TargetApi<ApiTypes>;
}

/** `apis`: the APIs it speaks at `baseUrl`, preferred first. */
export function createTarget(provider: Provider, apiKeys: readonly string[], baseUrl: string, apis: readonly ApiName[]): Target {
  const endpoint = (path: string): Endpoint => (provider.local === undefined ? httpEndpoint(baseUrl, path) : localEndpoint(provider.local, baseUrl, path));
  const spoken = apis;
  const endpoints: Partial<Record<ApiName, Endpoint>> = {};
  for (const api of spoken) endpoints[api] = endpoint(TARGET_APIS[api].path);
  const modelsApi = TARGET_APIS[spoken[0] as ApiName];
  return { provider, apis: spoken, keys: new KeyPool(apiKeys), endpoints, modelsEndpoint: endpoint(modelsApi.modelsPath), modelsApi };
}
