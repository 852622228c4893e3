/**
 * The contract every provider implements: where it is, how it authenticates, which APIs it
 * speaks natively, and its quirks. A provider translates nothing (formats/ does) and opens no
 * connection (upstream/ does); the one in-process provider (the mock) answers like a server.
 */
import type { ApiName } from '../formats/api.js';
import type { ModelList } from '../formats/chat/models.js';
import type { LocalServer } from '../upstream/types.js';

export interface Provider {
  readonly name: string;
  /** The official SDK's default base URL; a key's `base_url` replaces it. */
  readonly defaultBaseUrl: string;
  /** False only for providers that need no account (the mock). */
  readonly requiresApiKey: boolean;
  /**
   * The APIs it speaks natively, each with the path its official SDK appends to the base URL. A
   * client speaking one of them passes through; any other is translated to the first listed.
   */
  readonly apis: Readonly<Partial<Record<ApiName, string>>>;
  /** Where it lists its models, appended to the base URL. */
  readonly modelsPath: string;
  /** The headers that authenticate a request with a real key (and the API version, where one is required). */
  authHeaders(apiKey: string): Record<string, string>;
  /** Its model list (a 2xx JSON body) → OpenAI's format; a 502 GatewayError if it is not one. */
  modelList(body: Buffer): ModelList;
  /** A change this provider needs in a request of an API it speaks; null when none is needed. */
  adjust?(api: ApiName, request: unknown): unknown;
  /** Answers in-process rather than over HTTP (the mock). */
  readonly local?: LocalServer;
}

/** The APIs a provider speaks, in its order of preference. */
export function apisOf(provider: Provider): ApiName[] {
  return Object.keys(provider.apis) as ApiName[];
}
