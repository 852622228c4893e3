/**
 * OpenAI Chat Completions, the hub: every translation between APIs goes through it. Clients
 * speak it (most SDKs, apps and frameworks), and so do OpenAI, DeepSeek, vLLM, Ollama and the
 * mock.
 */
import { openAiErrorBody } from '../../errors.js';
import type { ClientApi, TargetApi } from '../api.js';
import { shallowCopy } from '../json-bytes.js';
import { setThinkingUnder } from '../thinking-budget.js';
import { parseCompletion } from './answer.js';
import { CompletionAssembler } from './assemble.js';
import { chatRequestBody, choicesAsked, limitUnder, maxOutputTokens, parseChatRequest, statesOutputLimit } from './request.js';
import { CHAT_NOTABLE, chatStreamOutput, chatStreamWatch, decodeChatEvent } from './stream.js';
import type { ChatCompletion, ChatCompletionChunk, ChatRequest } from './types.js';
import { parseChatModelList } from './models.js';
import { chatUsage } from './usage.js';

export interface ChatTypes {
  request: ChatRequest;
  response: ChatCompletion;
  event: ChatCompletionChunk;
}

export const chatClient: ClientApi<ChatTypes> = {
  name: 'chat',
  mediaTypes: new Set(['image_url', 'input_audio', 'file']),
  parseRequest(raw) {
    const request = parseChatRequest(raw);
    return { request, model: request.model, stream: request.stream === true, maxOutputTokens: maxOutputTokens(request), statesOutputLimit: statesOutputLimit(request), choices: choicesAsked(request) };
  },
  errorBody: openAiErrorBody,
  rewrite(request, changes) {
    const copy = shallowCopy(request);
    copy.model = changes.model;
    if (changes.maxOutputTokens !== undefined) {
      // The fields the client used, each lowered to the cap where it is above it: a client's lower
      // max_completion_tokens beside a higher max_tokens stays its limit (it wins at OpenAI).
      if (request.max_completion_tokens != null || request.max_tokens == null) copy.max_completion_tokens = limitUnder(request.max_completion_tokens, changes.maxOutputTokens);
      if (request.max_tokens != null) copy.max_tokens = limitUnder(request.max_tokens, changes.maxOutputTokens);
      // Anthropic's thinking extension (a chat client's; vLLM and others read it too): its budget below the limit.
      setThinkingUnder(copy, request.thinking, changes.maxOutputTokens);
    }
    return copy;
  },
  streamOutput: chatStreamOutput,
  assembler: () => new CompletionAssembler(),
};

export const chatTarget: TargetApi<ChatTypes> = {
  name: 'chat',
  path: '/chat/completions',
  authHeaders: (apiKey) => ({ authorization: `Bearer ${apiKey}` }),
  modelsPath: '/models',
  parseModelList: parseChatModelList,
  body: chatRequestBody,
  parseResponse: parseCompletion,
  usage: (response) => chatUsage(response.usage),
  decodeEvent: decodeChatEvent,
  notable: CHAT_NOTABLE,
  namedEvents: false,
  streamWatch: chatStreamWatch,
};
