/**
 * The `anthropic` provider: OpenAI chat in, Messages API (`POST {base_url}/v1/messages`) out, and
 * back. The translators live next to this file and are pure.
 */
import type { Provider } from '../types.js';
import { toAnthropicRequest } from './request.js';
import { invalidAnswer, toChatCompletion } from './response.js';
import { createAnthropicStreamTranslator } from './stream.js';

export const ANTHROPIC_VERSION = '2023-06-01';

export interface AnthropicOptions {
  /** max_tokens when the client sets none: Anthropic requires one (ANTHROPIC_DEFAULT_MAX_TOKENS). */
  defaultMaxTokens: number;
}

export function createAnthropic(options: AnthropicOptions): Provider {
  return {
    name: 'anthropic',
    defaultBaseUrl: 'https://api.anthropic.com',
    chatPath: '/v1/messages',
    requiresApiKey: true,
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
