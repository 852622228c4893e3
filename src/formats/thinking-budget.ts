/**
 * Anthropic's extended thinking under an output limit: its budget must stay below max_tokens. A
 * Messages request, or a chat request with Anthropic's `thinking` extension, whose limit the gateway
 * lowers to a key's cap gets its budget lowered with it.
 */
import { isRecord } from './json.js';

/** The smallest thinking budget Anthropic accepts. */
export const MIN_THINKING_BUDGET = 1024;

/** `thinking` under a limit of `cap` tokens: as it is, its budget lowered below the cap, or undefined (off) when no budget fits. */
export function thinkingUnder(thinking: unknown, cap: number): unknown {
  if (!isRecord(thinking) || thinking.type !== 'enabled' || typeof thinking.budget_tokens !== 'number' || thinking.budget_tokens < cap) return thinking;
  return cap - 1 >= MIN_THINKING_BUDGET ? { ...thinking, budget_tokens: cap - 1 } : undefined;
}

/** A rewritten request's `thinking` under a limit of `cap` tokens (thinkingUnder), removed when thinking goes off. */
export function setThinkingUnder(copy: object, thinking: unknown, cap: number): void {
  const under = thinkingUnder(thinking, cap);
  const fields = copy as { thinking?: unknown };
  if (under === undefined) delete fields.thinking;
  else fields.thinking = under;
}
