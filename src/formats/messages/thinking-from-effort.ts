/**
 * OpenAI's `reasoning_effort` → Anthropic's thinking, by what the model takes (docs/providers.md,
 * Anthropic): Claude 4.6 and later think adaptively, steered by `output_config.effort` (Opus 4.7
 * and later refuse a fixed budget); Claude 3.7 to 4.5 think within `budget_tokens`; earlier Claude
 * models do not think, so the effort is dropped, as it is for OpenAI's non-reasoning models. A
 * model that is not Claude's (DeepSeek's Anthropic endpoint) gets a budget, the form every
 * thinking model takes. Pure.
 */
import { invalidRequest } from '../../errors.js';
import { entryOf } from '../json.js';
import { MIN_THINKING_BUDGET } from '../thinking-budget.js';

/** Budget per level: LiteLLM's, so clients moving between gateways get the same. */
const BUDGETS: Readonly<Record<string, number>> = { minimal: 1024, low: 1024, medium: 2048, high: 4096, xhigh: 4096, max: 4096 };

/** A thinking budget as the level whose budget it reaches (BUDGETS read the other way): Claude Code's budget, for a model that takes an effort. */
export function effortOfBudget(budget: number): string {
  return budget >= (BUDGETS.high as number) ? 'high' : budget >= (BUDGETS.medium as number) ? 'medium' : 'low';
}

/** Anthropic's effort per level; xhigh and max → high, which every model that takes an effort accepts. */
const EFFORTS: Readonly<Record<string, string>> = { minimal: 'low', low: 'low', medium: 'medium', high: 'high', xhigh: 'high', max: 'high' };

/** `claude-sonnet-4-5-20250929` → [4, 5], `claude-opus-4-20250514` → [4, 0] (a date is not a minor version). */
const NEW_NAME = /(?:^|[/.])claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?!\d)/;
/** `claude-3-7-sonnet-latest` → [3, 7]. */
const OLD_NAME = /(?:^|[/.])claude-(\d+)(?:-(\d{1,2}))?-(?:opus|sonnet|haiku)/;

type Mode = 'adaptive' | 'budget' | 'none';

function modeOf(model: string): Mode {
  const match = NEW_NAME.exec(model) ?? OLD_NAME.exec(model);
  if (match === null) return /(?:^|[/.])claude-/.test(model) ? 'adaptive' : 'budget'; // a Claude name of a new kind is a new model
  const version = Number(match[1]) + Number(match[2] ?? 0) / 10;
  if (version >= 4.6) return 'adaptive';
  return version >= 3.7 ? 'budget' : 'none';
}

export interface EffortThinking {
  readonly thinking?: { type: 'adaptive'; display: 'summarized' } | { type: 'enabled'; budget_tokens: number };
  readonly effort?: string;
  readonly maxTokens: number;
}

/**
 * The thinking for `effort` on `model`. `limit`: the client's output limit (null: none, and
 * max_tokens is `defaultMaxTokens` plus the level's budget, room for both). A budget takes at most
 * half of the client's limit (OpenAI counts reasoning within it too); below the smallest budget
 * Anthropic accepts, there is no thinking.
 */
export function thinkingFromEffort(effort: unknown, model: string, limit: number | null, defaultMaxTokens: number): EffortThinking {
  if (typeof effort !== 'string' || (effort !== 'none' && entryOf(BUDGETS, effort) === undefined)) {
    throw invalidRequest(`"reasoning_effort" must be one of none, minimal, low, medium, high, xhigh, max.`, 'reasoning_effort', 'invalid_value');
  }
  const mode = modeOf(model);
  const level = entryOf(BUDGETS, effort);
  if (level === undefined || mode === 'none') return { maxTokens: limit ?? defaultMaxTokens };
  const maxTokens = limit ?? defaultMaxTokens + level;
  // Summarized: Opus 4.7 and later leave thinking out of the answer unless asked, and a client
  // that set an effort wants to see it (reasoning_content, a Responses summary).
  if (mode === 'adaptive') return { thinking: { type: 'adaptive', display: 'summarized' }, effort: entryOf(EFFORTS, effort) as string, maxTokens };
  const budget = limit === null ? level : Math.min(level, Math.floor(limit / 2));
  if (budget < MIN_THINKING_BUDGET) return { maxTokens };
  return { thinking: { type: 'enabled', budget_tokens: budget }, maxTokens };
}

/** The effort alone, for a client that chose its own (adaptive) thinking. */
export function anthropicEffort(effort: unknown): string | undefined {
  return typeof effort === 'string' ? entryOf(EFFORTS, effort) : undefined;
}
