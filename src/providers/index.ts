/**
 * The provider registry: name → provider. Adding a provider is its own file plus one line here.
 */
import { createAnthropic } from './anthropic.js';
import { deepseek } from './deepseek.js';
import { mock } from './mock.js';
import { openai } from './openai.js';
import type { Provider } from './types.js';

export type Registry = Readonly<Record<string, Provider>>;

export interface RegistryOptions {
  anthropicDefaultMaxTokens: number;
}

export function createRegistry(options: RegistryOptions): Registry {
  return {
    openai,
    anthropic: createAnthropic({ defaultMaxTokens: options.anthropicDefaultMaxTokens }),
    deepseek,
    mock,
  };
}

/** The registry with default options (what tests and tools use when no config is at hand). */
export const providers: Registry = createRegistry({ anthropicDefaultMaxTokens: 4096 });

export type { Provider } from './types.js';
