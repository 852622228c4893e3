/**
 * Which translation a request takes: none when the provider speaks the client's API (its bytes
 * pass through), otherwise through the hub, Chat Completions: the client's API → chat → the
 * provider's API. Adding an API adds its translations to and from chat here, one line each.
 */
import type { ApiName, ApiTypes, ClientApi, TargetApi } from './api.js';
import { TARGET_APIS } from './apis.js';
import type { ChatTypes } from './chat/index.js';
import { chatToMessages, messagesToChat } from './messages/index.js';
import { responsesToChat } from './responses/index.js';
import { compose, identity, type Translation } from './translation.js';

export interface RouterOptions {
  /** max_tokens sent to Anthropic when a chat client sets none. */
  readonly anthropicDefaultMaxTokens: number;
  /** Seconds since the epoch (translated answers carry a `created` time). */
  readonly now: () => number;
}

/** How one request reaches a provider: the provider's API, and the translation to it. */
export interface Route<C extends ApiTypes> {
  readonly target: TargetApi<ApiTypes>;
  readonly translation: Translation<C, ApiTypes>;
}

export interface Router {
  /** `speaks`: the APIs the provider speaks natively, the one it prefers first (the same array each time: routes are remembered by it). */
  route<C extends ApiTypes>(client: ClientApi<C>, speaks: readonly ApiName[]): Route<C>;
}

type AnyTranslation = Translation<ApiTypes, ApiTypes>;

export function createRouter(options: RouterOptions): Router {
  const targets = TARGET_APIS;
  /** The hub → each API a provider may speak. */
  const fromChat: Partial<Record<ApiName, Translation<ChatTypes, ApiTypes>>> = {
    chat: identity() as Translation<ChatTypes, ApiTypes>,
    messages: chatToMessages({ defaultMaxTokens: options.anthropicDefaultMaxTokens, now: options.now }) as unknown as Translation<ChatTypes, ApiTypes>,
  };
  /** Each client API → the hub, on the way to the provider's API `to`. */
  const toChat: Partial<Record<ApiName, (to: ApiName) => Translation<ApiTypes, ChatTypes>>> = {
    chat: () => identity() as unknown as Translation<ApiTypes, ChatTypes>,
    messages: () => messagesToChat() as unknown as Translation<ApiTypes, ChatTypes>,
    // Chat's reasoning_effort is refused by OpenAI's other models; Anthropic's translation maps it per model.
    responses: (to) => responsesToChat({ effortForEveryModel: to !== 'chat' }) as unknown as Translation<ApiTypes, ChatTypes>,
  };

  const find = (client: ApiName, speaks: readonly ApiName[]): Route<ApiTypes> => {
    if (speaks.includes(client)) return { target: targets[client], translation: identity() };
    const inbound = toChat[client];
    const api = speaks.find((name) => fromChat[name] !== undefined);
    if (inbound === undefined || api === undefined) throw new Error(`no translation from ${client} to ${speaks.join(', ')}`);
    return { target: targets[api], translation: compose(inbound(api) as AnyTranslation, fromChat[api] as unknown as AnyTranslation) };
  };
  // A route depends only on the two sides: found once per client API and provider's list (which
  // a target keeps, so the lookup allocates nothing per request).
  const routes = new Map<ApiName, WeakMap<readonly ApiName[], Route<ApiTypes>>>();
  return {
    route<C extends ApiTypes>(client: ClientApi<C>, speaks: readonly ApiName[]): Route<C> {
      let known = routes.get(client.name);
      if (known === undefined) routes.set(client.name, (known = new WeakMap()));
      let route = known.get(speaks);
      if (route === undefined) known.set(speaks, (route = find(client.name, speaks)));
      return route as unknown as Route<C>;
    },
  };
}
