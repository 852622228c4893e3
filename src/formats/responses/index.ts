/**
 * OpenAI's Responses API: as clients speak it (Codex CLI, newer OpenAI SDK code), as a provider
 * speaks it (OpenAI; an OpenAI-compatible server declared to), and its stateless translation to
 * the hub. There is no translation from the hub to Responses: a provider that speaks Responses
 * speaks chat too.
 */
import { openAiErrorBody } from '../../errors.js';
import type { ClientApi, TargetApi } from '../api.js';
import type { ChatTypes } from '../chat/index.js';
import { parseChatModelList } from '../chat/models.js';
import { jsonPieces } from '../json-pieces.js';
import { splicedBody } from '../json-splice.js';
import type { Translation } from '../translation.js';
import { shallowCopy } from '../json-bytes.js';
import { outputItemIds, parseResponseObject } from './answer.js';
import { ResponseAssembler } from './assemble.js';
import { responsesStreamOutput } from './output.js';
import { maxOutputTokens, parseResponsesRequest, statesOutputLimit } from './request.js';
import { clientParamOf, toChatRequest, type ToChatOptions } from './request-to-chat.js';
import { toResponse } from './response-from-chat.js';
import { chatStreamToResponses } from './stream-from-chat.js';
import { decodeResponsesEvent, RESPONSES_NOTABLE, responsesStreamWatch } from './stream.js';
import type { ResponseObject, ResponsesEvent, ResponsesRequest } from './types.js';
import { responsesUsage } from './usage.js';

export interface ResponsesTypes {
  request: ResponsesRequest;
  response: ResponseObject;
  event: ResponsesEvent;
}

export const responsesClient: ClientApi<ResponsesTypes> = {
  name: 'responses',
  mediaTypes: new Set(['input_image', 'input_file']),
  parseRequest(raw) {
    const request = parseResponsesRequest(raw);
    return { request, model: request.model, stream: request.stream === true, maxOutputTokens: maxOutputTokens(request), statesOutputLimit: statesOutputLimit(request), choices: 1 };
  },
  rewrite(request, changes) {
    const copy = shallowCopy(request);
    copy.model = changes.model;
    if (changes.maxOutputTokens !== undefined) copy.max_output_tokens = changes.maxOutputTokens;
    return copy;
  },
  errorBody: openAiErrorBody,
  streamOutput: (request, answerId) => responsesStreamOutput(request.model, answerId),
  assembler: () => new ResponseAssembler(),
};

export const responsesTarget: TargetApi<ResponsesTypes> = {
  name: 'responses',
  path: '/responses',
  authHeaders: (apiKey) => ({ authorization: `Bearer ${apiKey}` }),
  modelsPath: '/models',
  parseModelList: parseChatModelList,
  body: (request, raw) => (raw === null ? null : splicedBody(raw)) ?? jsonPieces(request, 'input'),
  parseResponse: parseResponseObject,
  usage: (response) => responsesUsage(response.usage),
  answerItems: outputItemIds,
  decodeEvent: decodeResponsesEvent,
  notable: RESPONSES_NOTABLE,
  namedEvents: true,
  streamWatch: responsesStreamWatch,
};

/** Chat parameters the translation fills, by the Responses names they come from. */
const CLIENT_PARAMS: Readonly<Record<string, string>> = {
  response_format: 'text.format',
  max_completion_tokens: 'max_output_tokens',
  reasoning_effort: 'reasoning.effort',
  user: 'user',
  parallel_tool_calls: 'parallel_tool_calls',
};

/** Responses clients on a provider that speaks the hub (or Messages, through it): stateless. */
export function responsesToChat(options: ToChatOptions = { effortForEveryModel: false }): Translation<ResponsesTypes, ChatTypes> {
  return {
    identity: false,
    exchange(request) {
      const translated = toChatRequest(request, options);
      const context = { request, tools: translated.tools };
      const sources = translated.sources;
      return {
        request: translated.request,
        clientParam: (param) => clientParamOf(param, sources, CLIENT_PARAMS),
        ...(translated.dropped.length > 0 ? { droppedTools: translated.dropped } : {}),
        response: (completion, hints) => toResponse(completion, context, hints),
        stream: (hints) => chatStreamToResponses(context, hints),
      };
    },
  };
}
