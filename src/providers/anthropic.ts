/**
 * Anthropic: the Messages API at `{base_url}/v1/messages`, `x-api-key` and `anthropic-version`.
 * Chat clients reach it through the translation in formats/messages/.
 */
import { parseMessagesModelList } from '../formats/messages/models.js';
import type { Provider } from './types.js';

const ANTHROPIC_VERSION = '2023-06-01';

export const anthropic: Provider = {
  name: 'anthropic',
  defaultBaseUrl: 'https://api.anthropic.com',
  requiresApiKey: true,
  apis: { messages: '/v1/messages' },
  modelsPath: '/v1/models',
  authHeaders: (apiKey) => ({ 'x-api-key': apiKey, 'anthropic-version': ANTHROPIC_VERSION }),
  modelList: parseMessagesModelList,
};
