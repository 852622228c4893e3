/**
 * A target: one provider, reached at its base URL with one or more real keys, speaking one or
 * more APIs there, with its own model names (a model map) and output limit. A virtual key routes
 * to one target, or to several (fallback, weighted).
 */
import type { ApiName, ApiTypes, TargetApi } from '../formats/api.js';
import { TARGET_APIS } from '../formats/apis.js';
import type { Provider } from '../providers/types.js';
import { httpEndpoint, localEndpoint, withQuery, type Endpoint } from '../upstream/types.js';
import { CircuitBreaker, type BreakerSettings } from './breaker.js';
import { KeyPool } from './key-pool.js';
import { NO_KEY } from './published-keys.js';
import type { ModelMap } from './model-map.js';

export interface Target {
  readonly provider: Provider;
  /** The APIs it speaks at its base URL, preferred first. */
  readonly apis: readonly ApiName[];
  /** The real provider keys, taking turns. Never logged, never sent to a client. */
  readonly keys: KeyPool;
  /**
   * What comes out of anything it sends back: its real keys (not a dummy a self-hosted server does
   * not check, `none`), and the values of its base URL's query that name a key, token or signature
   * (`?key=…`: some providers take keys there, and a 404 echoes the path it was asked).
   */
  readonly secrets: readonly string[];
  /** Where each API it speaks is served, resolved once. */
  readonly endpoints: Readonly<Partial<Record<ApiName, Endpoint>>>;
  /** Where it lists its models, and the API whose list format that is. */
  readonly modelsEndpoint: Endpoint;
  readonly modelsApi: TargetApi<ApiTypes>;
  /** Its place in the key's `targets` (0 for a key with one). */
  readonly index: number;
  /** Requested model → this target's model; null: names pass unchanged. */
  readonly modelMap: ModelMap | null;
  /** The most output tokens it accepts: a request asking for more is sent with this many. */
  readonly maxOutputTokens: number | null;
  /** Its share of requests under the `weighted` strategy. */
  readonly weight: number;
  /** Skips it for a while when it keeps failing (several targets only). */
  readonly breaker: CircuitBreaker;
  /**
   * Where what it stores (responses, threads) lives: its provider and base URL. What one server
   * says of an id vouches only for requests to that server; its real keys are left out, so adding
   * a key to rotate keeps the threads in progress (an id lives in one account there, which another
   * account's key cannot reach).
   */
  readonly storage: string;
}

export interface TargetOptions {
  readonly index: number;
  readonly modelMap: ModelMap | null;
  readonly maxOutputTokens: number | null;
  readonly weight: number;
  readonly breaker: BreakerSettings;
}

/** `apis`: the APIs it speaks at `baseUrl`, preferred first. */
export function createTarget(provider: Provider, apiKeys: readonly string[], baseUrl: string, apis: readonly ApiName[], options: TargetOptions): Target {
  const endpoint = (path: string): Endpoint => (provider.local === undefined ? httpEndpoint(baseUrl, path) : localEndpoint(provider.local, baseUrl, path));
  const spoken = apis;
  const endpoints: Partial<Record<ApiName, Endpoint>> = {};
  for (const api of spoken) endpoints[api] = endpoint(TARGET_APIS[api].path);
  const modelsApi = TARGET_APIS[spoken[0] as ApiName];
  const { breaker, ...rest } = options;
  const storage = `${provider.name} ${baseUrl}`;
  return { provider, apis: spoken, keys: new KeyPool(apiKeys), secrets: [...apiKeys.filter((key) => !NO_KEY.test(key)), ...queryCredentials(baseUrl)], endpoints, modelsEndpoint: withQuery(endpoint(modelsApi.modelsPath), modelsApi.modelsQuery ?? ''), modelsApi, ...rest, breaker: new CircuitBreaker(breaker.failures, breaker.openMs), storage };
}

/** Words of a query parameter's name (`api-key`, `access_token`, `x-goog-api-key`, `sig`) that say it carries a credential. */
const CREDENTIAL_WORDS: ReadonlySet<string> = new Set(['key', 'apikey', 'token', 'secret', 'sig', 'signature', 'auth', 'password', 'passwd', 'credential', 'credentials']);
/** Shorter values are no secret worth the name, and replacing them would mangle ordinary text (`?token=true`). */
const MIN_SECRET_LENGTH = 8;

/** Whether a query parameter's name says it carries a credential: one of its words, whole (`tokenizer`, `design` and `author` do not). */
function namesCredential(name: string): boolean {
  return name.toLowerCase().split(/[^a-z0-9]+/).some((word) => CREDENTIAL_WORDS.has(word));
}

/** The values (as written, and decoded) of `baseUrl`'s query parameters that carry a credential. */
function queryCredentials(baseUrl: string): string[] {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const part of url.search.slice(1).split('&')) {
    const equals = part.indexOf('=');
    if (equals === -1 || !namesCredential(part.slice(0, equals))) continue;
    const written = part.slice(equals + 1);
    found.push(written);
    try {
      const decoded = decodeURIComponent(written.replaceAll('+', ' '));
      if (decoded !== written) found.push(decoded);
    } catch {
      // a value that is not percent-encoded text is taken out as it is written
    }
  }
  return found.filter((value) => value.length >= MIN_SECRET_LENGTH);
}
