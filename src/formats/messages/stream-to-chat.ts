/**
 * Messages stream events → Chat Completions chunks. One translator per stream (it keeps the
 * message id, model, usage and the tool-call numbering); otherwise pure. The usage chunk is
 * always produced: what a client sees of it is the chat output's business.
 */
import type { ChatCompletionChunk, ChunkDelta } from '../chat/types.js';
import { invalidAnswer } from '../answer.js';
import { isRecord } from '../json.js';
import type { StreamItem, StreamTranslator } from '../stream.js';
import { finishReason, toChatUsage } from './response-to-chat.js';
import type { AnthropicUsage, MessagesEvent } from './types.js';

interface ToolBlock {
  /** The OpenAI tool_calls index: a 0-based count of tool blocks, not Anthropic's block index. */
  index: number;
  sawArguments: boolean;
  /** The input the block started with, sent at its end where no input_json_delta came ('{}' for Anthropic's empty one). */
  startInput: string;
}

type Chunk = StreamItem<ChatCompletionChunk>;

/** `created`: the chunks' timestamp (seconds), fixed for the stream. */
export function messagesStreamToChat(created: number): StreamTranslator<MessagesEvent, ChatCompletionChunk> {
  let id = '';
  let model = '';
  let usage: AnthropicUsage = {};
  const toolBlocks = new Map<number, ToolBlock>();
  /** Whether the finish chunk was sent: once, for the first stop reason (a provider may send more than one message_delta). */
  let finished = false;

  const chunk = (delta: ChunkDelta, finish: string | null = null): Chunk => ({
    kind: 'event',
    event: { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] },
  });
  const usageChunk = (): Chunk => ({ kind: 'event', event: { id, object: 'chat.completion.chunk', created, model, choices: [], usage: toChatUsage(usage) } });

  const translate = (data: MessagesEvent): Chunk[] => {
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
          if (typeof block.id !== 'string' || typeof block.name !== 'string') return [{ kind: 'error', error: invalidAnswer('a tool_use block has no string id and name') }];
          // Anthropic starts with `input: {}` and streams it; a server may send it whole here instead
          // (or here and again as deltas: the deltas win).
          const tool: ToolBlock = { index: toolBlocks.size, sawArguments: false, startInput: isRecord(block.input) ? JSON.stringify(block.input) : '{}' };
          toolBlocks.set(blockIndex, tool);
          return [chunk({ tool_calls: [{ index: tool.index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] })];
        }
        if (block.type === 'text' && typeof block.text === 'string' && block.text !== '') return [chunk({ content: block.text })];
        if (block.type === 'thinking' && typeof block.thinking === 'string' && block.thinking !== '') return [chunk({ reasoning_content: block.thinking })];
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
          return [chunk({ tool_calls: [{ index: tool.index, function: { arguments: tool.startInput } }] })];
        }
        return [];
      }
      case 'message_delta': {
        // output_tokens is cumulative; newer API versions repeat the input counts here too.
        if (isRecord(data.usage)) {
          for (const [field, value] of Object.entries(data.usage)) if (typeof value === 'number') usage = { ...usage, [field]: value };
        }
        const delta = isRecord(data.delta) ? data.delta : {};
        const finish = finishReason(delta.stop_reason);
        if (finish === null || finished) return [];
        finished = true;
        return [chunk({}, finish)];
      }
      case 'message_stop': {
        // A chat client needs a finish reason (the SDK's finalChatCompletion throws without one).
        const ending = finished ? [] : [chunk({}, 'stop')];
        finished = true;
        return [...ending, usageChunk()];
      }
      default:
        return []; // ping, and event types added after this was written
    }
  };

  return (item) => (item.kind === 'event' ? translate(item.event) : [item]);
}
