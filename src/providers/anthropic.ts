/**
 * The `anthropic` provider: OpenAI chat in, Messages API (`POST {base_url}/v1/messages`) out, and
 * back. The translators live next to this file and are pure.
 */
import { isRecord } from '../formats/chat/types.js';
import { parseAnswer } from './answer.js';
import type { ModelList, Provider } from './types.js';
import { toAnthropicRequest } from '../formats/messages/from-chat.js';
import { toChatCompletion } from '../formats/messages/to-chat.js';
import { createAnthropicStreamTranslator } from '../formats/messages/stream-to-chat.js';

export const ANTHROPIC_VERSION = '2023-06-01';

/** Anthropic's `{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more", …}` → OpenAI's list. */
export function anthropicModels(body: Buffer): ModelList {
  const parsed = parseAnswer(body, 'model list', 'data');
  return {
    object: 'list',
    data: (parsed.data as unknown[])
      .filter((model: unknown): model is Record<string, unknown> => isRecord(model) && typeof model.id === 'string')
      .map((model) => ({
        id: model.id as string,
        object: 'model',
        created: typeof model.created_at === 'string' && !Number.isNaN(Date.parse(model.created_at)) ? Math.floor(Date.parse(model.created_at) / 1000) : 0,
        owned_by: 'anthropic',
      })),
  };
}

export interface AnthropicOptions {
  /** max_tokens when the client sets none: Anthropic requires one (ANTHROPIC_DEFAULT_MAX_TOKENS). */
  defaultMaxTokens: number;
}

export function createAnthropic(options: AnthropicOptions): Provider {
  return {
    name: 'anthropic',
    defaultBaseUrl: 'https://api.anthropic.com',
    chatPath: '/v1/messages',
    modelsPath: '/v1/models',
    requiresApiKey: true,
    authHeaders: (apiKey) => ({ 'x-api-key': apiKey, 'anthropic-version': ANTHROPIC_VERSION }),
    translateModels: anthropicModels,
    prepare({ request, apiKey }) {
      return {
        body: JSON.stringify(toAnthropicRequest(request, options)),
        headers: { 'x-api-key': apiKey, 'anthropic-version': ANTHROPIC_VERSION },
      };
    },
    translateResponse(body) {
      const completion = toChatCompletion(parseAnswer(body, 'answer', 'content'), Math.floor(Date.now() / 1000));
      return { body: JSON.stringify(completion), usage: completion.usage ?? null, completion: () => completion };
    },
    streamTranslator: (streamOptions) => createAnthropicStreamTranslator(streamOptions),
  };
}
