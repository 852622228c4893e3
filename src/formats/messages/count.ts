/**
 * `count_tokens` for a provider that has no such endpoint: an estimate, not a count. About four
 * characters of text per token (English prose and code run 3.5–4.5 with current tokenizers), a
 * fixed cost per image or document, and the tools' JSON as the model reads it. Good
 * enough for a client deciding when to compact a conversation; never used for billing.
 */
import { isRecord } from '../json.js';
import { MEDIA_PART_TOKENS as IMAGE_TOKENS } from '../media.js';
import type { AnthropicRequest } from './types.js';

const CHARS_PER_TOKEN = 4;
/** Role and separators around each message. */
const MESSAGE_TOKENS = 3;

/** Characters of text in a content value (strings, blocks, nested tool results), and its images. */
function measure(content: unknown, total: { chars: number; images: number }): void {
  if (typeof content === 'string') {
    total.chars += content.length;
    return;
  }
  if (Array.isArray(content)) {
    for (const block of content) measure(block, total);
    return;
  }
  if (!isRecord(content)) return;
  switch (content.type) {
    case 'text':
      measure(content.text, total);
      return;
    case 'thinking':
      measure(content.thinking, total);
      return;
    case 'image':
    case 'document':
      total.images++;
      return;
    case 'tool_use':
      total.chars += JSON.stringify(content.input ?? {}).length + (typeof content.name === 'string' ? content.name.length : 0);
      return;
    case 'tool_result':
      measure(content.content, total);
      return;
    default:
      total.chars += JSON.stringify(content).length;
  }
}

export function estimateInputTokens(request: AnthropicRequest): number {
  const total = { chars: 0, images: 0 };
  measure(request.system, total);
  for (const message of request.messages) measure(message.content, total);
  if (Array.isArray(request.tools)) total.chars += JSON.stringify(request.tools).length;
  return Math.ceil(total.chars / CHARS_PER_TOKEN) + total.images * IMAGE_TOKENS + request.messages.length * MESSAGE_TOKENS;
}
