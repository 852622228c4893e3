/**
 * A provider's non-streamed Chat Completions answer, read whole (pass-through sends its own
 * bytes on, once they are known to be one).
 */
import { invalidAnswer, parseAnswer } from '../answer.js';
import { isRecord } from '../json.js';
import type { ChatCompletion } from './types.js';

export function parseCompletion(body: Buffer): ChatCompletion {
  return parseAnswer(body, 'answer', 'choices') as ChatCompletion;
}

/**
 * A chunk of the answer, not a stray event before the first one: the answer's id and model come
 * from it. Azure's first chunk (`id: ""`, `choices: []`, its prompt filter results) is not one.
 */
export function isAnswerChunk(chunk: Readonly<Record<string, unknown>>): boolean {
  return (Array.isArray(chunk.choices) && chunk.choices.length > 0) || (typeof chunk.id === 'string' && chunk.id !== '');
}

/**
 * A message's or a stream delta's reasoning text: `reasoning_content` (DeepSeek's name, which most
 * servers took), else `reasoning` (OpenRouter's, and newer vLLM's); null when it has none.
 */
export function reasoningText(message: Record<string, unknown>): string | null {
  if (typeof message.reasoning_content === 'string') return message.reasoning_content;
  return typeof message.reasoning === 'string' ? message.reasoning : null;
}

/**
 * A message's or a stream delta's text: `content` as a string, or the text of its parts where a
 * server sends an array of them (Mistral's reasoning models: `[{type: 'text', text}, …]`; other
 * parts, such as their `thinking`, are not its text); null when it has none.
 */
export function contentText(content: unknown): string | null {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return null;
  let text: string | null = null;
  for (const part of content) if (isRecord(part) && part.type === 'text' && typeof part.text === 'string') text = (text ?? '') + part.text;
  return text;
}

/**
 * The first choice and its message, which a translation reads (a chat client gets the answer as
 * it came): an answer without one (`"choices": []`, a choice without a message) is a 502, not an
 * empty success.
 */
export function firstChoice(completion: ChatCompletion): { choice: Record<string, unknown>; message: Record<string, unknown> } {
  const choice = choiceZero(completion.choices);
  if (!isRecord(choice) || !isRecord(choice.message)) throw invalidAnswer('its choices hold no message');
  return { choice, message: choice.message };
}

/**
 * The first choice: the one with index 0, else the first that names no index. It is the one
 * answer a translation gives: another choice's text (a provider sending `n` > 1, in any order)
 * must not be mixed into it.
 */
export function choiceZero(choices: unknown): unknown {
  if (!Array.isArray(choices)) return undefined;
  for (const choice of choices) if (isRecord(choice) && (choice.index === 0 || choice.index === undefined)) return choice;
  return undefined;
}
