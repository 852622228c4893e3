/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, Azure's v1 API, other gateways): Chat
 * Completions at `{base_url}/chat/completions`. One fix, to the gateway's own translations only:
 * the earlier thinking of a Messages conversation travels as `reasoning_content` on assistant
 * messages (DeepSeek requires it), which OpenAI refuses ("Additional properties are not
 * allowed"), so it is left out. A client's own chat body is not touched.
 */
import type { ApiName } from '../formats/api.js';
import type { ChatRequest } from '../formats/chat/types.js';
import type { Provider } from './types.js';

export interface OpenAICompatibleOptions {
  name: string;
  defaultBaseUrl: string;
  /** The APIs it speaks at its default base URL, preferred first (chat when not given). */
  apis?: readonly ApiName[];
  /** A change the provider needs in a request; null when none is needed. */
  adjust?: (api: ApiName, request: unknown, translated: boolean) => unknown;
}

/** The request without `reasoning_content` on its messages; null when none had it. */
function withoutReasoning(request: ChatRequest): ChatRequest | null {
  if (!request.messages.some((message) => message?.reasoning_content !== undefined)) return null;
  const messages = request.messages.map((message) => {
    if (message?.reasoning_content === undefined) return message;
    const { reasoning_content: _reasoning, ...rest } = message;
    return rest;
  });
  return { ...request, messages };
}

export function createOpenAICompatible(options: OpenAICompatibleOptions): Provider {
  return {
    name: options.name,
    defaultBaseUrl: options.defaultBaseUrl,
    requiresApiKey: true,
    apis: options.apis ?? ['chat'],
    ...(options.adjust === undefined ? {} : { adjust: options.adjust }),
  };
}

export const openai: Provider = createOpenAICompatible({
  name: 'openai',
  defaultBaseUrl: 'https://api.openai.com/v1',
  // Chat clients pass through to chat, Responses clients to Responses; Messages is translated to chat.
  apis: ['chat', 'responses'],
  adjust: (api, request, translated) => (api === 'chat' && translated ? withoutReasoning(request as ChatRequest) : null),
});
