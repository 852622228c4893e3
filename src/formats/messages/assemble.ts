/**
 * Messages stream events → the equivalent Message, so a streamed interaction is logged like a
 * non-streamed one: thinking (with its signature), text and tool_use blocks (their input parsed
 * from the joined `input_json_delta`s), stop_reason, usage. Events come from providers (or the
 * gateway's own translation), so every field is checked before it is used.
 */
import type { Assembler } from '../api.js';
import { isRecord } from '../json.js';
import type { AnthropicResponse, MessagesEvent, ResponseBlock } from './types.js';
import { parseProviderJson } from '../json-limits.js';

interface BlockState {
  block: ResponseBlock;
  /** A tool_use block's input, as the fragments arrived. */
  json: string;
}

export class MessageAssembler implements Assembler<MessagesEvent, AnthropicResponse> {
  private message: Record<string, unknown> = {};
  private usage: Record<string, unknown> = {};
  private readonly blocks = new Map<number, BlockState>();

  add(event: MessagesEvent): void {
    if (!isRecord(event)) return;
    const index = typeof event.index === 'number' ? event.index : -1;
    switch (event.type) {
      case 'message_start':
        if (isRecord(event.message)) {
          this.message = { ...event.message };
          if (isRecord(event.message.usage)) this.usage = { ...event.message.usage };
        }
        return;
      case 'content_block_start':
        if (isRecord(event.content_block) && typeof event.content_block.type === 'string') {
          this.blocks.set(index, { block: { ...(event.content_block as ResponseBlock) }, json: '' });
        }
        return;
      case 'content_block_delta':
        this.delta(this.blocks.get(index), isRecord(event.delta) ? event.delta : {});
        return;
      case 'message_delta':
        if (isRecord(event.delta)) for (const field of ['stop_reason', 'stop_sequence', 'stop_details']) if (field in event.delta) this.message[field] = event.delta[field];
        // Running totals: overwritten, never added.
        if (isRecord(event.usage)) for (const [field, value] of Object.entries(event.usage)) if (value !== null && value !== undefined) this.usage[field] = value;
        return;
    }
  }

  private delta(state: BlockState | undefined, delta: Record<string, unknown>): void {
    if (state === undefined) return;
    const block = state.block;
    if (delta.type === 'text_delta' && typeof delta.text === 'string') block.text = (block.text ?? '') + delta.text;
    else if (delta.type === 'thinking_delta' && typeof delta.thinking === 'string') block.thinking = (block.thinking ?? '') + delta.thinking;
    else if (delta.type === 'signature_delta' && typeof delta.signature === 'string') block.signature = delta.signature;
    else if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string') state.json += delta.partial_json;
    else if (delta.type === 'citations_delta' && delta.citation !== undefined) {
      // Pushed, not copied: each delta copying the list made a long stream's assembly quadratic.
      if (Array.isArray(block.citations)) block.citations.push(delta.citation);
      else block.citations = [delta.citation];
    }
  }

  result(): AnthropicResponse {
    const content = [...this.blocks.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([, state]) => {
        if (state.json === '') return state.block;
        let input: unknown = state.json;
        try {
          input = parseProviderJson(state.json);
        } catch {
          // kept as the text that arrived: the log shows what the model sent
        }
        return { ...state.block, input };
      });
    return {
      id: typeof this.message.id === 'string' ? this.message.id : '',
      type: 'message',
      role: 'assistant',
      model: typeof this.message.model === 'string' ? this.message.model : '',
      content,
      stop_reason: typeof this.message.stop_reason === 'string' ? this.message.stop_reason : null,
      stop_sequence: typeof this.message.stop_sequence === 'string' ? this.message.stop_sequence : null,
      usage: this.usage,
    };
  }
}
