/**
 * Responses usage → the gateway's one usage. `input_tokens` includes the cached ones
 * (`input_tokens_details.cached_tokens`), `output_tokens` the reasoning ones.
 */
import { isRecord } from '../json.js';
import { readableCounts, tokenCount, type Usage } from '../usage.js';
import type { ResponsesUsage } from './types.js';

export function responsesUsage(raw: unknown): Usage | null {
  if (!isRecord(raw) || !readableCounts(raw.input_tokens, raw.output_tokens, true)) return null;
  const input = tokenCount(raw.input_tokens);
  const output = tokenCount(raw.output_tokens);
  const inputDetails = isRecord(raw.input_tokens_details) ? raw.input_tokens_details : {};
  const outputDetails = isRecord(raw.output_tokens_details) ? raw.output_tokens_details : {};
  const cacheRead = Math.min(input, tokenCount(inputDetails.cached_tokens));
  const cacheWrite = Math.min(input - cacheRead, tokenCount(inputDetails.cache_write_tokens));
  return { input: input - cacheRead - cacheWrite, output, cacheRead, cacheWrite, cacheWrite1h: 0, reasoning: Math.min(output, tokenCount(outputDetails.reasoning_tokens)) };
}

/** The gateway's usage → the Responses shape (what translated answers carry). */
export function toResponsesUsage(usage: Usage): ResponsesUsage {
  const input = usage.input + usage.cacheRead + usage.cacheWrite;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: usage.cacheRead },
    output_tokens: usage.output,
    output_tokens_details: { reasoning_tokens: usage.reasoning },
    total_tokens: input + usage.output,
  };
}
