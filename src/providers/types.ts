/**
 * The contract every provider implements: where it is, which APIs it speaks natively, and its
 * quirks. How each API authenticates, where it is served and how it lists models is the API
 * module's (formats/); translations are formats' too, and connections upstream's. The one
 * in-process provider (the mock) answers like a server.
 */
import type { ApiName } from '../formats/api.js';
import type { LocalServer } from '../upstream/types.js';

export interface Provider {
  readonly name: string;
  /** The official SDK's default base URL; a key's `base_url` replaces it. */
  readonly defaultBaseUrl: string;
  /** False only for providers that need no account (the mock). */
  readonly requiresApiKey: boolean;
  /**
   * The APIs it speaks natively at its base URL, preferred first. A client speaking one of them
   * passes through; any other is translated, through chat, to the first of them the gateway
   * translates into (`chat` or `messages`). A key's `api` can say otherwise (a
   * provider's second endpoint at another base URL, e.g. DeepSeek's Anthropic-compatible one).
   */
  readonly apis: readonly ApiName[];
  /**
   * A change this provider needs in a request of an API it speaks; null when none is needed.
   * `translated`: the request is the gateway's own translation, not a client's own body.
   */
  adjust?(api: ApiName, request: unknown, translated: boolean): unknown;
  /** Answers in-process rather than over HTTP (the mock). */
  readonly local?: LocalServer;
}
