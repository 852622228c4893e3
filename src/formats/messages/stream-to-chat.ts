/**
 * Anthropic stream events → OpenAI `chat.completion.chunk`s. One translator per stream (it keeps
 * the message id, model, usage and the tool-call numbering); each call handles one event and is
 * otherwise pure. See ../shared/providers.md §2.6 and §3.3.
 */
import { GatewayError } from '../../errors.js';
import { entryOf, isRecord, type ChatCompletionChunk, type ChunkDelta, type Usage } from '../chat/types.js';
import type { SseEvent } from '../../upstream/sse.js';
import type { StreamOptions, StreamOutput, StreamTranslator } from '../../providers/types.js';
import { invalidAnswer } from '../../providers/answer.js';
import { finishReason, toUsage } from './to-chat.js';
import type { AnthropicUsage } from './types.js';

/** The HTTP status each Anthropic error type stands for (mid-stream errors arrive with a 200). */
const ERROR_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

export function streamError(error: unknown): GatewayError {
  const detail = isRecord(error) ? error : {};
  const type = typeof detail.type === 'string' ? detail.type : 'api_error';
  const message = typeof detail.message === 'string' ? detail.message : 'The provider failed mid-stream.';
  return new GatewayError(entryOf(ERROR_STATUS, type) ?? 502, message, { type, code: type });
}

interface ToolBlock {
  /** The OpenAI tool_calls index: a 0-based count of tool blocks, not Anthropic's block index. */
  index: number;
  sawArguments: boolean;
}

export function createAnthropicStreamTranslator(options: StreamOptions, now: () => number = Date.now): StreamTranslator {
  let id = '';
  let model = '';
  const created = Math.floor(now() / 1000);
  let usage: AnthropicUsage = {};
  const toolBlocks = new Map<number, ToolBlock>();

  const chunk = (delta: ChunkDelta, finish: string | null = null): StreamOutput => {
    const value: ChatCompletionChunk = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    };
    return { kind: 'chunk', chunk: value, data: JSON.stringify(value) };
  };

  const usageChunk = (): StreamOutput => {
    const total: Usage = toUsage(usage);
    const value: ChatCompletionChunk = { id, object: 'chat.completion.chunk', created, model, choices: [], usage: total };
    // Always seen by the log; sent only to clients that asked for stream usage.
    return { kind: 'chunk', chunk: value, data: options.clientWantsUsage ? JSON.stringify(value) : null };
  };

  return {
    event(event: SseEvent): StreamOutput[] {
      let data: unknown;
      try {
        data = JSON.parse(event.data);
      } catch {
        return [{ kind: 'error', error: invalidAnswer('a stream event is not JSON') }];
      }
      if (!isRecord(data)) return [{ kind: 'error', error: invalidAnswer('a stream event is not an object') }];

      switch (data.type) {
        case 'message_start': {
          const message = isRecord(data.message) ? data.message : {};
          if (typeof message.id === 'string') id = message.id;
          if (typeof message.model === 'string') model = message.model;
          if (isRecord(message.usage)) usage = { ...message.usage };
          return [chunk({ role: 'assistant', content: '' })];
        }
        case 'content_block_start': {
          const block = isRecord(data.content_block) ? data.content_block : {};
          const blockIndex = typeof data.index === 'number' ? data.index : -1;
          if (block.type === 'tool_use') {
            const tool: ToolBlock = { index: toolBlocks.size, sawArguments: false };
            toolBlocks.set(blockIndex, tool);
            return [chunk({ tool_calls: [{ index: tool.index, id: String(block.id), type: 'function', function: { name: String(block.name), arguments: '' } }] })];
          }
          if (block.type === 'text' && typeof block.text === 'string' && block.text !== '') return [chunk({ content: block.text })];
          return [];
        }
        case 'content_block_delta': {
          const delta = isRecord(data.delta) ? data.delta : {};
          if (delta.type === 'text_delta' && typeof delta.text === 'string') return [chunk({ content: delta.text })];
          if (delta.type === 'thinking_delta' && typeof delta.thinking === 'string') return [chunk({ reasoning_content: delta.thinking })];
          if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string') {
            const tool = toolBlocks.get(typeof data.index === 'number' ? data.index : -1);
            if (tool === undefined) return [];
            if (delta.partial_json !== '') tool.sawArguments = true;
            // Empty fragments are forwarded too: a fragment is never dropped.
            return [chunk({ tool_calls: [{ index: tool.index, function: { arguments: delta.partial_json } }] })];
          }
          return []; // signature_delta, citations_delta: nothing in OpenAI's format
        }
        case 'content_block_stop': {
          const tool = toolBlocks.get(typeof data.index === 'number' ? data.index : -1);
          // A tool called without arguments still needs parseable arguments: "{}".
          if (tool !== undefined && !tool.sawArguments) {
            tool.sawArguments = true;
            return [chunk({ tool_calls: [{ index: tool.index, function: { arguments: '{}' } }] })];
          }
          return [];
        }
        case 'message_delta': {
          // output_tokens is cumulative; newer API versions repeat the input counts here too.
          if (isRecord(data.usage)) {
            for (const [field, value] of Object.entries(data.usage)) if (typeof value === 'number') usage = { ...usage, [field]: value };
          }
          const delta = isRecord(data.delta) ? data.delta : {};
          return [chunk({}, finishReason(delta.stop_reason) ?? 'stop')];
        }
        case 'message_stop':
          return [usageChunk(), { kind: 'done' }];
        case 'error':
          return [{ kind: 'error', error: streamError(data.error) }];
        default:
          return []; // ping, and event types added after this was written
      }
    },
  };
}
