/**
 * A provider's non-streamed Messages answer, read whole.
 */
import { invalidAnswer, parseAnswer } from '../answer.js';
import type { AnthropicResponse } from './types.js';

export function parseMessage(body: Buffer): AnthropicResponse {
  const message = parseAnswer(body, 'answer', 'content');
  if (message.type !== 'message') throw invalidAnswer('it is not an Anthropic message');
  return message as unknown as AnthropicResponse;
}
