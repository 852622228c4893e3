/**
 * Messages usage → the gateway's one usage. Anthropic's `input_tokens` excludes the prompt tokens
 * read from and written to its cache, which it counts apart; `output_tokens` includes thinking.
 * `cache_creation` splits the writes by how long they are kept (5 minutes, 1 hour: priced apart).
 */
import { isRecord } from '../json.js';
import { readableCounts, tokenCount, type Usage } from '../usage.js';

/**
 * Anthropic's stream says its output count alone at the end (`message_delta`), so a stream's
 * usage need not have a prompt count; a whole answer's (`whole`) must: read as 0, a compatible
 * server's answer without one would put a conversation through a token budget for its output alone.
 */
export function messagesUsage(raw: unknown, whole = false): Usage | null {
  if (!isRecord(raw) || !readableCounts(raw.input_tokens, raw.output_tokens, whole)) return null;
  const cacheWrite = tokenCount(raw.cache_creation_input_tokens);
  const split = isRecord(raw.cache_creation) ? raw.cache_creation : {};
  return {
    input: tokenCount(raw.input_tokens),
    output: tokenCount(raw.output_tokens),
    cacheRead: tokenCount(raw.cache_read_input_tokens),
    cacheWrite,
    cacheWrite1h: Math.min(cacheWrite, tokenCount(split.ephemeral_1h_input_tokens)),
    reasoning: 0,
  };
}
