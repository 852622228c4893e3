/**
 * A provider's non-streamed Chat Completions answer, read whole (pass-through sends its own
 * bytes on, once they are known to be one).
 */
import { parseAnswer } from '../answer.js';
import type { ChatCompletion } from './types.js';

export function parseCompletion(body: Buffer): ChatCompletion {
  return parseAnswer(body, 'answer', 'choices') as ChatCompletion;
}
