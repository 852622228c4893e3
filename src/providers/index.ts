/**
 * The provider registry: name → provider. Adding a provider is its own file plus one line here.
 */
import { anthropic } from './anthropic.js';
import { deepseek } from './deepseek.js';
import { mock } from './mock.js';
import { openai } from './openai.js';
import type { Provider } from './types.js';

export type Registry = Readonly<Record<string, Provider>>;

export const registry: Registry = { openai, anthropic, deepseek, mock };

export type { Provider } from './types.js';
