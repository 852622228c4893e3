/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, Azure's v1 API, other gateways): Chat
 * Completions at `{base_url}/chat/completions`.
 */
import type { ApiName } from '../formats/api.js';
import type { Provider } from './types.js';

export interface OpenAICompatibleOptions {
  name: string;
  defaultBaseUrl: string;
  /** A change the provider needs in a request; null when none is needed. */
  adjust?: (api: ApiName, request: unknown) => unknown;
}

export function createOpenAICompatible(options: OpenAICompatibleOptions): Provider {
  return {
    name: options.name,
    defaultBaseUrl: options.defaultBaseUrl,
    requiresApiKey: true,
    apis: ['chat'],
    ...(options.adjust === undefined ? {} : { adjust: options.adjust }),
  };
}

export const openai: Provider = createOpenAICompatible({ name: 'openai', defaultBaseUrl: 'https://api.openai.com/v1' });
