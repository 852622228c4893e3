/**
 * Anthropic Messages response → OpenAI `chat.completion`; the stop-reason and usage mappings
 * shared with the stream translator. Pure functions.
 */
import { invalidAnswer } from '../answer.js';
import { entryOf, isRecord } from '../json.js';
import { tokenCount } from '../usage.js';
import type { AssistantMessage, ChatCompletion, ChatUsage, ToolCall } from '../chat/types.js';
import type { AnthropicResponse, AnthropicUsage } from './types.js';

/**
 * Every Anthropic stop_reason and the OpenAI finish_reason it becomes. Turns that pause
 * (server tools, human approval, compaction) end normally for an OpenAI client.
 */
export const FINISH_REASONS: Readonly<Record<string, string>> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
  pause_turn: 'stop',
  pause_run: 'stop',
  compaction: 'stop',
};

export function finishReason(stopReason: unknown): string | null {
  if (stopReason === null || stopReason === undefined) return null;
  return (typeof stopReason === 'string' ? entryOf(FINISH_REASONS, stopReason) : undefined) ?? 'stop';
}

/**
 * OpenAI counts cached tokens inside prompt_tokens; Anthropic's input_tokens excludes cache reads
 * and writes. So prompt_tokens = input + cache creation + cache read.
 */
export function toChatUsage(usage: AnthropicUsage | undefined): ChatUsage {
  const input = tokenCount(usage?.input_tokens);
  const cacheCreation = tokenCount(usage?.cache_creation_input_tokens);
  const cacheRead = tokenCount(usage?.cache_read_input_tokens);
  const prompt = input + cacheCreation + cacheRead;
  const completion = tokenCount(usage?.output_tokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cacheRead },
    cache_creation_input_tokens: cacheCreation,
    cache_read_input_tokens: cacheRead,
  };
}


/** A message (checked by `parseMessage`) → the equivalent completion, `created` at the given time. */
export function toChatCompletion(message: AnthropicResponse, created: number): ChatCompletion {
  let text = '';
  let hasText = false;
  let reasoning = '';
  let hasReasoning = false;
  const toolCalls: ToolCall[] = [];
  for (const block of message.content) {
    if (!isRecord(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') {
      text += block.text;
      hasText = true;
    } else if (block.type === 'thinking' && typeof block.thinking === 'string') {
      reasoning += block.thinking;
      hasReasoning = true;
    } else if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string') throw invalidAnswer('a tool_use block has no string id and name');
      toolCalls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    }
  }
  // `refusal` and `annotations` as OpenAI always sends them (the OpenAI SDK's types mark them present).
  const assistant: AssistantMessage = { role: 'assistant', content: hasText ? text : toolCalls.length > 0 ? null : '', refusal: null, annotations: [] };
  if (hasReasoning) assistant.reasoning_content = reasoning;
  if (toolCalls.length > 0) assistant.tool_calls = toolCalls;
  return {
    id: typeof message.id === 'string' ? message.id : '',
    object: 'chat.completion',
    created,
    model: typeof message.model === 'string' ? message.model : '',
    choices: [{ index: 0, message: assistant, logprobs: null, finish_reason: finishReason(message.stop_reason) ?? 'stop' }],
    usage: toChatUsage(isRecord(message.usage) ? message.usage : undefined),
  };
}
