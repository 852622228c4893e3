/**
 * A target: one provider, reached at its base URL with one or more real keys. What a virtual key
 * routes to (one target today; several, for fallback, to come).
 */
import type { ApiName } from '../formats/api.js';
import { apisOf, type Provider } from '../providers/types.js';
import { httpEndpoint, localEndpoint, type Endpoint } from '../upstream/types.js';
import { KeyPool } from './key-pool.js';

export interface Target {
  readonly provider: Provider;
  /** The APIs the provider speaks, in its order of preference. */
  readonly apis: readonly ApiName[];
  /** The real provider keys, taking turns. Never logged, never sent to a client. */
  readonly keys: KeyPool;
  /** Where each API the provider speaks is served, resolved once. */
  readonly endpoints: Readonly<Partial<Record<ApiName, Endpoint>>>;
  /** Where the provider lists its models. */
  readonly modelsEndpoint: Endpoint;
}

export function createTarget(provider: Provider, apiKeys: readonly string[], baseUrl: string): Target {
  const endpoint = (path: string): Endpoint => (provider.local === undefined ? httpEndpoint(baseUrl, path) : localEndpoint(provider.local, baseUrl, path));
  const endpoints: Partial<Record<ApiName, Endpoint>> = {};
  const apis = apisOf(provider);
  for (const api of apis) endpoints[api] = endpoint(provider.apis[api] as string);
  return { provider, apis, keys: new KeyPool(apiKeys), endpoints, modelsEndpoint: endpoint(provider.modelsPath) };
}
