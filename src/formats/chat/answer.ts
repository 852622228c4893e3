/**
 * A provider's non-streamed Chat Completions answer, read whole (pass-through sends its own
 * bytes on, once they are known to be one).
 */
import { parseAnswer } from '../answer.js';
import type { ChatCompletion } from './types.js';

export function parseCompletion(body: Buffer): ChatCompletion {
  return parseAnswer(body, 'answer', 'choices') as ChatCompletion;
}

/** A chunk of the answer, not a stray event before the first one: the answer's id and model come from it. */
export function isAnswerChunk(chunk: Readonly<Record<string, unknown>>): boolean {
  return Array.isArray(chunk.choices) || typeof chunk.id === 'string';
}

/**
 * A message's or a stream delta's reasoning text: `reasoning_content` (DeepSeek's name, which most
 * servers took), else `reasoning` (OpenRouter's, and newer vLLM's); null when it has none.
 */
export function reasoningText(message: Record<string, unknown>): string | null {
  if (typeof message.reasoning_content === 'string') return message.reasoning_content;
  return typeof message.reasoning === 'string' ? message.reasoning : null;
}
