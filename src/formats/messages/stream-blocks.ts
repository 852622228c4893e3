/**
 * The content blocks of a Messages stream translated from a chat stream, kept well-formed by
 * OneAtATime: one block open at a time, each started, given its deltas, then stopped, never a
 * delta after its stop. A tool call's block stays open until its arguments are a whole JSON value
 * (some servers start the next call before sending this one's arguments) or the stream ends.
 */
import { OneAtATime, type Sequenced } from '../chat/one-at-a-time.js';
import { ArgumentsEnd } from '../chat/tool-calls.js';
import type { StreamItem } from '../stream.js';
import { UNSIGNED_THINKING, type MessagesEvent } from './types.js';

type Item = StreamItem<MessagesEvent>;

export interface Block extends Sequenced {
  readonly kind: 'thinking' | 'text' | 'tool';
  /** Its content_block_start's block. */
  readonly start: Record<string, unknown>;
  /** Its Anthropic index, once started. */
  index: number | null;
  /** A tool call's: where its arguments end. */
  readonly end: ArgumentsEnd | null;
}

export class StreamBlocks {
  private started = 0;
  private readonly blocks = new OneAtATime<Block, MessagesEvent>({
    start: (block, out) => {
      block.index = this.started++;
      out.push({ kind: 'event', event: { type: 'content_block_start', index: block.index, content_block: block.start } });
    },
    delta: (block, value, out) => out.push(delta(block, value)),
    stop: (block, out) => {
      // Anthropic's thinking ends with its signature; a client may keep only thinking that has one.
      if (block.kind === 'thinking') out.push({ kind: 'event', event: { type: 'content_block_delta', index: block.index, delta: { type: 'signature_delta', signature: UNSIGNED_THINKING } } });
      out.push({ kind: 'event', event: { type: 'content_block_stop', index: block.index } });
    },
    whole: (block) => block.end === null || block.end.whole(block.text) !== null,
    // Text and thinking go out as they come; a call's arguments are parsed whole when they close.
    keeps: (block) => block.end !== null,
    retains: () => false,
  });

  /** Text held outside any block (a call's arguments before its name), against the same limit. */
  reserve(chars: number): void {
    this.blocks.reserve(chars);
  }

  letGo(chars: number): void {
    this.blocks.letGo(chars);
  }

  /** A run of thinking or text: the last block's continuation, or a new block. */
  text(kind: 'thinking' | 'text', value: string, out: Item[]): void {
    const last = this.blocks.last;
    const block = last !== null && last.kind === kind ? last : this.add(kind, kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '', signature: '' }, out);
    this.blocks.content(block, value, out);
  }

  /** A tool call's first fragment: its block, started now or when its turn comes. */
  tool(id: string, name: string, out: Item[]): Block {
    return this.add('tool', { type: 'tool_use', id, name, input: {} }, out);
  }

  /** A fragment of a call's arguments, sent in order. */
  toolInput(call: Block, value: string, out: Item[]): void {
    // Arguments that stop being one object (a brace too many after it, as some servers send, or
    // no object at all) go no further: Anthropic's SDK parses the input as it comes and fails the
    // whole turn on them; a whole answer has `{}` for arguments that are not one object.
    const read = call.end === null ? value.length : call.end.feed(value);
    if (read > 0) this.blocks.content(call, read === value.length ? value : value.slice(0, read), out);
  }

  /** The stream's end: every block sent and stopped. */
  finish(out: Item[]): void {
    this.blocks.finish(out);
  }

  private add(kind: Block['kind'], start: Record<string, unknown>, out: Item[]): Block {
    const block: Block = { kind, start, text: '', state: 'waiting', index: null, end: kind === 'tool' ? new ArgumentsEnd() : null };
    this.blocks.add(block, out);
    return block;
  }
}

function delta(block: Block, value: string): Item {
  const delta =
    block.kind === 'text' ? { type: 'text_delta', text: value } : block.kind === 'thinking' ? { type: 'thinking_delta', thinking: value } : { type: 'input_json_delta', partial_json: value };
  return { kind: 'event', event: { type: 'content_block_delta', index: block.index, delta } };
}
