/**
 * DeepSeek: OpenAI-compatible, with two request fixes. Its deserializer has rejected content-part
 * arrays ("invalid type: sequence, expected a string"), so text-only arrays are flattened to a
 * string; and its output limit is `max_tokens` only, so `max_completion_tokens` (what OpenAI's
 * newer clients and the gateway's own translations send) is renamed. Responses
 * (`reasoning_content`, `prompt_cache_hit_tokens`, …) pass through untouched.
 */
import type { ChatMessage, ChatRequest, ContentPart } from '../formats/chat/types.js';
import { createOpenAICompatible } from './openai.js';
import type { Provider } from './types.js';

function isTextOnly(content: unknown): content is ContentPart[] {
  return (
    Array.isArray(content) &&
    content.every((part: unknown) => typeof part === 'object' && part !== null && (part as ContentPart).type === 'text' && typeof (part as ContentPart).text === 'string')
  );
}

/**
 * Returns the request with text-only part arrays joined into strings, or null if none had any. A
 * client's own parts are joined as they are (its text cut in pieces); parts the gateway made of
 * another API's blocks or items (Claude Code's system reminder, then the question) apart by a
 * blank line, as the translation joins system blocks.
 */
export function flattenTextParts(request: ChatRequest, translated = false): ChatRequest | null {
  if (!request.messages.some((message) => isTextOnly(message?.content))) return null;
  const separator = translated ? '\n\n' : '';
  const messages = request.messages.map((message): ChatMessage => {
    if (!isTextOnly(message?.content)) return message;
    return { ...message, content: message.content.map((part) => part.text).join(separator) };
  });
  return { ...request, messages };
}

/** `max_completion_tokens` → `max_tokens`, replacing one also sent (the newer field wins, as at OpenAI); null when absent. */
function renameOutputLimit(request: ChatRequest): ChatRequest | null {
  if (request.max_completion_tokens === undefined || request.max_completion_tokens === null) return null;
  const { max_completion_tokens: limit, ...rest } = request;
  return { ...rest, max_tokens: limit };
}

function adjustChat(request: ChatRequest, translated: boolean): ChatRequest | null {
  const flat = flattenTextParts(request, translated);
  return renameOutputLimit(flat ?? request) ?? flat;
}

export const deepseek: Provider = createOpenAICompatible({
  name: 'deepseek',
  defaultBaseUrl: 'https://api.deepseek.com',
  adjust: (api, request, translated) => (api === 'chat' ? adjustChat(request as ChatRequest, translated) : null),
});
