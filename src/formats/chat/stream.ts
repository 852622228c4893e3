/**
 * Chat Completions streams: reading a provider's events, watching its usage and finish, and
 * writing what one client sees (`data: {chunk}` frames, `data: [DONE]`, an error event).
 */
import { GatewayError, openAiErrorBody } from '../../errors.js';
import type { StreamOutput, StreamWatch } from '../api.js';
import { errorStatus, invalidAnswer, notJson } from '../answer.js';
import { isRecord } from '../json.js';
import { sseFrame, type SseEvent } from '../sse.js';
import type { StreamItem } from '../stream.js';
import type { Usage } from '../usage.js';
import { wantsStreamUsage } from './request.js';
import type { ChatCompletionChunk, ChatRequest } from './types.js';
import { chatUsage } from './usage.js';
import { parseProviderJson } from '../json-limits.js';

/**
 * The one rule for which chat events matter beyond their bytes: the end, an error, a usage
 * object, a finish. A key match is safe: a quote inside a JSON string is always escaped, so
 * content cannot look like one.
 */
export const CHAT_NOTABLE = /\[DONE\]|"error"|"usage"\s*:\s*\{|"finish_reason"\s*:\s*"/;

const CHAT_DONE_FRAME = 'data: [DONE]\n\n';

/** An error in OpenAI's shape in a stream (chat's own, or a server's in front of another API's provider): at the status it names. */
export function openAIStreamError(error: unknown): GatewayError {
  const detail = isRecord(error) ? error : {};
  const message = typeof detail.message === 'string' ? detail.message : typeof error === 'string' ? error : 'The provider failed mid-stream.';
  return new GatewayError(errorStatus(detail), message, {
    type: typeof detail.type === 'string' ? detail.type : 'server_error',
    code: typeof detail.code === 'string' ? detail.code : 'upstream_stream_error',
    param: typeof detail.param === 'string' ? detail.param : null,
  });
}

export function decodeChatEvent(event: SseEvent): Array<StreamItem<ChatCompletionChunk>> {
  const data = event.data;
  if (data === '[DONE]') return [{ kind: 'end' }];
  let chunk: unknown;
  try {
    chunk = parseProviderJson(data);
  } catch (err) {
    return [{ kind: 'error', error: invalidAnswer(notJson('a stream event', err)) }];
  }
  if (!isRecord(chunk)) return [{ kind: 'error', error: invalidAnswer('a stream event is not an object') }];
  if (chunk.error !== undefined && chunk.error !== null) return [{ kind: 'error', error: openAIStreamError(chunk.error) }];
  // Named an error, it is one whatever its data says: OpenAI's SDK throws on an event so named.
  if (event.event === 'error') return [{ kind: 'error', error: openAIStreamError(chunk) }];
  // vLLM and other OpenAI-compatible servers send a bare error object mid-stream.
  if (chunk.object === 'error') return [{ kind: 'error', error: openAIStreamError(chunk) }];
  return [{ kind: 'event', event: chunk as ChatCompletionChunk, data }];
}

function hasFinish(chunk: ChatCompletionChunk): boolean {
  return Array.isArray(chunk.choices) && chunk.choices.some((choice: unknown) => isRecord(choice) && typeof choice.finish_reason === 'string');
}

/** Usage from the last chunk that carried it; complete once a choice has finished. */
export function chatStreamWatch(): StreamWatch<ChatCompletionChunk> {
  let usage: Usage | null = null;
  let raw: Record<string, unknown> | null = null;
  let complete = false;
  return {
    see(chunk) {
      if (isRecord(chunk.usage)) {
        raw = chunk.usage;
        usage = chatUsage(raw);
      }
      if (!complete && hasFinish(chunk)) complete = true;
    },
    usage: () => usage,
    rawUsage: () => raw,
    get complete() {
      return complete;
    },
  };
}

/**
 * What one chat client sees. The gateway always asks providers for usage; a client that did not
 * ask (`stream_options.include_usage`) does not get it: a usage-only chunk (OpenAI) is left out,
 * usage on a content chunk (DeepSeek) is stripped. Chunks otherwise go out as the provider's own
 * text when there is one.
 */
export function chatStreamOutput(request: ChatRequest): StreamOutput<ChatCompletionChunk> {
  const wantsUsage = wantsStreamUsage(request);
  return {
    frame(item) {
      if (item.kind === 'end') return CHAT_DONE_FRAME;
      if (item.kind === 'error') return sseFrame(JSON.stringify(openAiErrorBody(item.error)));
      const chunk = item.event;
      if (!wantsUsage && isRecord(chunk.usage)) {
        if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return '';
        const { usage: _usage, ...visible } = chunk;
        return sseFrame(JSON.stringify(visible));
      }
      return sseFrame(item.data ?? JSON.stringify(chunk));
    },
  };
}
