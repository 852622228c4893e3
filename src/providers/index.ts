/**
 * The provider registry: name → provider. Adding a provider is its own file plus one line here.
 */
import { GatewayError } from '../errors.js';
import { deepseek } from './deepseek.js';
import { mock } from './mock.js';
import { createOpenAICompatible, openai } from './openai.js';
import type { Provider } from './types.js';

// Placeholder until the Anthropic translator lands: its keys validate, its requests get a clear 500.
const anthropic: Provider = {
  ...createOpenAICompatible({ name: 'anthropic', defaultBaseUrl: 'https://api.anthropic.com' }),
  chatPath: '/v1/messages',
  prepare() {
    throw new GatewayError(500, 'The anthropic provider is not yet supported by this gateway version.', { code: 'provider_not_supported' });
  },
};

export const providers: Readonly<Record<string, Provider>> = {
  openai,
  anthropic,
  deepseek,
  mock,
};

export type { Provider } from './types.js';
