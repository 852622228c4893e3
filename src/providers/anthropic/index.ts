/**
 * The `anthropic` provider: OpenAI chat in, Messages API (`POST {base_url}/v1/messages`) out, and
 * back. The translators live next to this file and are pure.
 */
import { isRecord } from '../../openai-types.js';
import type { ModelList, Provider } from '../types.js';
import { toAnthropicRequest } from './request.js';
import { invalidAnswer, toChatCompletion } from './response.js';
import { createAnthropicStreamTranslator } from './stream.js';

export const ANTHROPIC_VERSION = '2023-06-01';

/** Anthropic's `{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more", …}` → OpenAI's list. */
export function anthropicModels(body: Buffer): ModelList {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalidAnswer('its model list is not JSON');
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.data)) throw invalidAnswer('its model list has no `data` array');
  return {
    object: 'list',
    data: parsed.data
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
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw invalidAnswer('its answer is not JSON');
      }
      const completion = toChatCompletion(parsed, Math.floor(Date.now() / 1000));
      return { body: JSON.stringify(completion), usage: completion.usage ?? null, completion: () => completion };
    },
    streamTranslator: (streamOptions) => createAnthropicStreamTranslator(streamOptions),
  };
}
