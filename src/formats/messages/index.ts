/**
 * Anthropic's Messages API, as a provider speaks it (Anthropic; DeepSeek at its
 * Anthropic-compatible base URL), and its translation from and to the hub.
 */
import type { TargetApi } from '../api.js';
import type { ChatTypes } from '../chat/index.js';
import type { Translation } from '../translation.js';
import { parseMessage } from './answer.js';
import { toAnthropicRequest } from './from-chat.js';
import { decodeMessagesEvent, MESSAGES_NOTABLE, messagesStreamWatch } from './stream.js';
import { messagesStreamToChat } from './stream-to-chat.js';
import { toChatCompletion } from './to-chat.js';
import type { AnthropicRequest, AnthropicResponse, MessagesEvent } from './types.js';
import { messagesUsage } from './usage.js';

export interface MessagesTypes {
  request: AnthropicRequest;
  response: AnthropicResponse;
  event: MessagesEvent;
}

export const messagesTarget: TargetApi<MessagesTypes> = {
  name: 'messages',
  body: (request, raw) => raw ?? JSON.stringify(request),
  parseResponse: parseMessage,
  usage: (response) => messagesUsage(response.usage),
  decodeEvent: decodeMessagesEvent,
  notable: MESSAGES_NOTABLE,
  streamWatch: messagesStreamWatch,
};

export interface ChatToMessagesOptions {
  /** max_tokens when the client sets none: Anthropic requires one (ANTHROPIC_DEFAULT_MAX_TOKENS). */
  readonly defaultMaxTokens: number;
  /** Seconds since the epoch, for the `created` of translated answers (a clock, injected). */
  readonly now: () => number;
}

export function chatToMessages(options: ChatToMessagesOptions): Translation<ChatTypes, MessagesTypes> {
  return {
    identity: false,
    request: (request) => toAnthropicRequest(request, options),
    response: (response) => toChatCompletion(response, options.now()),
    stream: () => messagesStreamToChat(options.now()),
  };
}
