/**
 * Anthropic's Messages API: as clients speak it (Claude Code, the Anthropic SDKs), as a provider
 * speaks it (Anthropic; DeepSeek at its Anthropic-compatible base URL), and its translations from
 * and to the hub.
 */
import type { ClientApi, TargetApi } from '../api.js';
import type { ChatTypes } from '../chat/index.js';
import { isRecord } from '../json.js';
import { setThinkingUnder } from '../thinking-budget.js';
import { jsonPieces } from '../json-pieces.js';
import { splicedBody } from '../json-splice.js';
import { stateless, type Translation } from '../translation.js';
import { shallowCopy } from '../json-bytes.js';
import { parseMessage } from './answer.js';
import { MessageAssembler } from './assemble.js';
import { messagesErrorBody } from './errors.js';
import { messagesStreamOutput } from './output.js';
import { parseMessagesRequest } from './request.js';
import { toChatRequest } from './request-to-chat.js';
import { toMessage } from './response-from-chat.js';
import { chatStreamToMessages } from './stream-from-chat.js';
import { toAnthropicRequest } from './request-from-chat.js';
import { decodeMessagesEvent, MESSAGES_NOTABLE, messagesStreamWatch } from './stream.js';
import { messagesStreamToChat } from './stream-to-chat.js';
import { toChatCompletion } from './response-to-chat.js';
import type { AnthropicRequest, AnthropicResponse, MessagesEvent } from './types.js';
import { parseMessagesModelList } from './models.js';
import { messagesUsage } from './usage.js';

export interface MessagesTypes {
  request: AnthropicRequest;
  response: AnthropicResponse;
  event: MessagesEvent;
}

/** The API version sent when a client gives none (a client's own is passed on). */
const ANTHROPIC_VERSION = '2023-06-01';

export const messagesClient: ClientApi<MessagesTypes> = {
  name: 'messages',
  mediaTypes: new Set(['image', 'document']),
  parseRequest(raw) {
    const request = parseMessagesRequest(raw);
    return { request, model: request.model, stream: request.stream === true, maxOutputTokens: request.max_tokens, statesOutputLimit: true, choices: 1 };
  },
  rewrite(request, changes) {
    const copy = shallowCopy(request);
    copy.model = changes.model;
    const cap = changes.maxOutputTokens;
    if (cap !== undefined) {
      copy.max_tokens = cap;
      setThinkingUnder(copy, request.thinking, cap);
    }
    return copy;
  },
  errorBody: messagesErrorBody,
  streamOutput: () => messagesStreamOutput,
  assembler: () => new MessageAssembler(),
  namedAfter: {
    response: (response, model) => ({ ...response, model }),
    event: (event, model) => (event.type === 'message_start' && isRecord(event.message) ? { ...event, message: { ...event.message, model } } : null),
  },
};

export const messagesTarget: TargetApi<MessagesTypes> = {
  name: 'messages',
  path: '/v1/messages',
  authHeaders: (apiKey) => ({ 'x-api-key': apiKey, 'anthropic-version': ANTHROPIC_VERSION }),
  modelsPath: '/v1/models',
  modelsQuery: 'limit=1000',
  parseModelList: parseMessagesModelList,
  body: (request, raw) => (raw === null ? null : splicedBody(raw)) ?? jsonPieces(request, 'messages'),
  parseResponse: parseMessage,
  usage: (response) => messagesUsage(response.usage, true),
  decodeEvent: decodeMessagesEvent,
  notable: MESSAGES_NOTABLE,
  namedEvents: true,
  streamWatch: messagesStreamWatch,
};

export interface ChatToMessagesOptions {
  /** max_tokens when the client sets none: Anthropic requires one (ANTHROPIC_DEFAULT_MAX_TOKENS). */
  readonly defaultMaxTokens: number;
  /** Seconds since the epoch, for the `created` of translated answers (a clock, injected). */
  readonly now: () => number;
}

export function chatToMessages(options: ChatToMessagesOptions): Translation<ChatTypes, MessagesTypes> {
  return stateless({
    request: (request) => toAnthropicRequest(request, options),
    response: (response) => toChatCompletion(response, options.now()),
    stream: () => messagesStreamToChat(options.now()),
  });
}

/** Messages clients on a provider that speaks only the hub. */
export function messagesToChat(): Translation<MessagesTypes, ChatTypes> {
  return stateless({ request: toChatRequest, response: toMessage, stream: chatStreamToMessages });
}
