/**
 * Chat Completions usage → the gateway's one usage. OpenAI counts cached prompt tokens inside
 * `prompt_tokens` (and names them in `prompt_tokens_details.cached_tokens`), reasoning inside
 * `completion_tokens`; DeepSeek names its cache hits `prompt_cache_hit_tokens`; gateways in front
 * of Anthropic add `cache_creation_input_tokens` (also inside `prompt_tokens`); OpenAI's models
 * with paid cache writes name them `prompt_tokens_details.cache_write_tokens`.
 */
import { isRecord } from '../json.js';
import { readableCounts, tokenCount, type Usage } from '../usage.js';

export function chatUsage(raw: unknown): Usage | null {
  if (!isRecord(raw) || !readableCounts(raw.prompt_tokens, raw.completion_tokens, true)) return null;
  const prompt = tokenCount(raw.prompt_tokens);
  const output = tokenCount(raw.completion_tokens);
  const promptDetails = isRecord(raw.prompt_tokens_details) ? raw.prompt_tokens_details : {};
  const outputDetails = isRecord(raw.completion_tokens_details) ? raw.completion_tokens_details : {};
  const cacheRead = Math.min(prompt, tokenCount(raw.prompt_cache_hit_tokens ?? promptDetails.cached_tokens ?? raw.cache_read_input_tokens));
  const cacheWrite = Math.min(prompt - cacheRead, tokenCount(raw.cache_creation_input_tokens ?? promptDetails.cache_write_tokens));
  return {
    input: prompt - cacheRead - cacheWrite,
    output,
    cacheRead,
    cacheWrite,
    cacheWrite1h: 0,
    reasoning: Math.min(output, tokenCount(outputDetails.reasoning_tokens)),
  };
}
