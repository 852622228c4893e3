/**
 * The demo provider: answers in-process, with no network and no account, in OpenAI's exact
 * wire format (so the rest of the gateway treats it like any upstream). Deterministic: it echoes
 * the last user message, with usage numbers estimated at ~4 characters per token.
 */
import { Readable } from 'node:stream';
import type { ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest, Usage } from '../formats/chat/types.js';
import type { UpstreamResponse } from '../upstream/send.js';
import { openAIModels, passThroughResponse, passThroughStream } from './openai.js';
import type { Provider } from './types.js';

let counter = 0;

function textOf(message: ChatMessage | undefined): string {
  const content = message?.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => (typeof part === 'object' && part !== null && typeof part.text === 'string' ? part.text : ''))
    .filter((text) => text !== '')
    .join(' ');
}

function tokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

export function mockReply(request: ChatRequest): string {
  const lastUser = [...request.messages].reverse().find((message) => message?.role === 'user');
  const text = textOf(lastUser).trim();
  return `Echo: ${text === '' ? '(no text)' : text}`;
}

function mockUsage(request: ChatRequest, reply: string): Usage {
  const prompt = request.messages.reduce((sum, message) => sum + tokens(textOf(message)), 0);
  const completion = tokens(reply);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function respond(status: number, contentType: string, parts: string[], id: string): UpstreamResponse {
  const body = Readable.from(parts.map((part) => Buffer.from(part)));
  return {
    status,
    headers: { 'content-type': contentType, 'x-request-id': `mock-${id}` },
    body,
    abort: () => body.destroy(),
  };
}

export const mock: Provider = {
  name: 'mock',
  defaultBaseUrl: 'mock://local',
  chatPath: '',
  modelsPath: '',
  requiresApiKey: false,
  authHeaders: () => ({}),
  translateModels: openAIModels,
  localModels: () => ({ object: 'list', data: [{ id: 'mock-echo', object: 'model', created: 0, owned_by: 'llm-gateway' }] }),
  prepare: ({ raw }) => ({ body: raw, headers: {} }),
  translateResponse: passThroughResponse,
  streamTranslator: passThroughStream,

  answerLocally(request: ChatRequest): UpstreamResponse {
    const id = `chatcmpl-mock-${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    const model = request.model;
    const reply = mockReply(request);
    const usage = mockUsage(request, reply);

    if (request.stream !== true) {
      const completion: ChatCompletion = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: reply }, logprobs: null, finish_reason: 'stop' }],
        usage,
      };
      return respond(200, 'application/json', [JSON.stringify(completion)], id);
    }

    const chunk = (delta: ChatCompletionChunk['choices'][number]['delta'], finish: string | null): string =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
    const words = reply.split(/(?<= )/); // keeps each word's trailing space
    const events = [
      chunk({ role: 'assistant', content: '' }, null),
      ...words.map((word) => chunk({ content: word }, null)),
      chunk({}, 'stop'),
      // The gateway always wants usage; it holds this chunk back from clients that did not ask.
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`,
      'data: [DONE]\n\n',
    ];
    return respond(200, 'text/event-stream; charset=utf-8', events, id);
  },
};
