/**
 * Messages usage → the gateway's one usage. Anthropic's `input_tokens` excludes the prompt tokens
 * read from and written to its cache, which it counts apart; `output_tokens` includes thinking.
 */
import { isRecord } from '../json.js';
import { tokenCount, type Usage } from '../usage.js';

export function messagesUsage(raw: unknown): Usage | null {
  if (!isRecord(raw)) return null;
  return {
    input: tokenCount(raw.input_tokens),
    output: tokenCount(raw.output_tokens),
    cacheRead: tokenCount(raw.cache_read_input_tokens),
    cacheWrite: tokenCount(raw.cache_creation_input_tokens),
    reasoning: 0,
  };
}
