/**
 * OpenAI `chat.completion` → Anthropic Message; the stop-reason and usage mappings shared with
 * the stream translator. Pure functions.
 */
import { contentText, firstChoice, reasoningText } from '../chat/answer.js';
import { chatUsage } from '../chat/usage.js';
import type { ChatCompletion } from '../chat/types.js';
import type { AnswerHints } from '../translation.js';
import { entryOf, isRecord } from '../json.js';
import { UNSIGNED_THINKING, type AnthropicResponse, type AnthropicUsage, type ResponseBlock } from './types.js';
import { parseProviderJson } from '../json-limits.js';

/** Every chat finish_reason and the stop_reason it becomes; any other ends the turn. */
export const STOP_REASONS: Readonly<Record<string, string>> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

/**
 * A finish reason → a stop reason; a turn that called tools stopped for them, whatever a server
 * says (some say "stop"), and one that called none did not: a client waiting on `tool_use` would
 * look for calls that are not there (Claude Code and the SDKs' tool runners loop on it).
 */
export function stopReason(finish: unknown, calledTools: boolean): string {
  if (calledTools && finish !== 'length') return 'tool_use';
  const reason = (typeof finish === 'string' ? entryOf(STOP_REASONS, finish) : undefined) ?? 'end_turn';
  return reason === 'tool_use' ? 'end_turn' : reason;
}

/** Chat usage → Anthropic's: cached prompt tokens move out of input_tokens, as Anthropic counts them. */
export function toMessagesUsage(raw: unknown): AnthropicUsage {
  const usage = chatUsage(raw);
  return {
    input_tokens: usage?.input ?? 0,
    cache_creation_input_tokens: usage?.cacheWrite ?? 0,
    cache_read_input_tokens: usage?.cacheRead ?? 0,
    output_tokens: usage?.output ?? 0,
  };
}

/**
 * A translated answer's id: `msg_` and the gateway's request id. Not the provider's: Claude Code
 * takes two answers with one id for one (it moved a later turn's tool calls into an earlier one),
 * and some servers' ids repeat (Ollama draws `chatcmpl-<n>` from 999 numbers).
 */
export function messageId(hints: AnswerHints): string {
  return `msg_${hints.answerId}`;
}

/**
 * A tool call's arguments → the object Anthropic's `input` must be: JSON text of one, or one
 * already (some OpenAI-compatible servers send the object); anything else becomes {}.
 */
export function toolInput(args: unknown): Record<string, unknown> {
  if (isRecord(args)) return args;
  if (typeof args !== 'string' || args.trim() === '') return {};
  try {
    const input: unknown = parseProviderJson(args);
    return isRecord(input) ? input : {};
  } catch {
    return {};
  }
}

/**
 * A completion (checked by `parseCompletion`) → the equivalent Message. Without the provider's
 * usage, its counts are estimates (the prompt's from `hints`, the output's ~4 characters per
 * token), as a stream's are: Anthropic's clients take zeros for a count.
 */
export function toMessage(completion: ChatCompletion, hints: AnswerHints): AnthropicResponse {
  const { choice, message } = firstChoice(completion);
  const content: ResponseBlock[] = [];
  const reasoning = reasoningText(message);
  if (reasoning !== null && reasoning !== '') content.push({ type: 'thinking', thinking: reasoning, signature: UNSIGNED_THINKING });
  const text = contentText(message.content);
  if (text !== null && text !== '') content.push({ type: 'text', text });
  const refused = typeof message.refusal === 'string' && message.refusal !== '';
  if (refused) content.push({ type: 'text', text: message.refusal as string });
  const calls: unknown[] = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  calls.forEach((call, index) => {
    if (!isRecord(call)) return;
    const fn = isRecord(call.function) ? call.function : {};
    const id = typeof call.id === 'string' && call.id !== '' ? call.id : `call_${hints.answerId}_${index}`;
    content.push({ type: 'tool_use', id, name: typeof fn.name === 'string' ? fn.name : '', input: toolInput(fn.arguments) });
  });
  const finish = choice.finish_reason;
  return {
    id: messageId(hints),
    type: 'message',
    role: 'assistant',
    model: typeof completion.model === 'string' ? completion.model : '',
    content,
    stop_reason: refused ? 'refusal' : stopReason(finish, content.some((block) => block.type === 'tool_use')),
    stop_sequence: null,
    usage: completion.usage === undefined || completion.usage === null ? estimatedUsage(content, hints) : toMessagesUsage(completion.usage),
  };
}

function estimatedUsage(content: readonly ResponseBlock[], hints: AnswerHints): AnthropicUsage {
  let characters = 0;
  for (const block of content) characters += (block.text ?? block.thinking ?? JSON.stringify(block.input ?? {})).length;
  return { input_tokens: Math.max(1, hints.promptTokens), cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: Math.max(1, Math.ceil(characters / 4)) };
}
