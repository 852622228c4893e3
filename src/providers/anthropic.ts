/**
 * Anthropic: the Messages API at `{base_url}/v1/messages`. Chat clients reach it through the
 * translation in formats/messages/.
 */
import type { Provider } from './types.js';

export const anthropic: Provider = {
  name: 'anthropic',
  defaultBaseUrl: 'https://api.anthropic.com',
  requiresApiKey: true,
  apis: ['messages'],
};
