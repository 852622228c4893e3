/**
 * The content blocks of a Messages stream translated from a chat stream, kept well-formed: one
 * block open at a time, each started, given its deltas, then stopped, never a delta after its stop.
 *
 * A chat stream need not run its calls one after another: some servers start call 1 before
 * sending call 0's arguments. So a tool call's block stays open until its arguments are a whole
 * JSON value (a server sends no more for it then) or the stream ends; whatever comes meanwhile
 * (another call, text, thinking) is held, in order, and sent as soon as its turn comes.
 */
import type { StreamItem } from '../stream.js';
import type { MessagesEvent } from './types.js';

type Item = StreamItem<MessagesEvent>;

export interface Block {
  readonly kind: 'thinking' | 'text' | 'tool';
  /** Its content_block_start's block. */
  readonly start: Record<string, unknown>;
  /** A call's arguments received so far. */
  json: string;
  /** Content received while the block was held, not yet sent. */
  held: string;
  /** Its Anthropic index, once started. */
  index: number | null;
}

export class StreamBlocks {
  private open: Block | null = null;
  /** Blocks waiting for the open one to stop, in the order they came. */
  private readonly waiting: Block[] = [];
  private started = 0;
  private ending = false;

  /** A run of thinking or text: the open block's continuation, or a new block. */
  text(kind: 'thinking' | 'text', value: string, out: Item[]): void {
    const last = this.waiting.at(-1) ?? this.open;
    const block = last !== null && last.kind === kind ? last : this.add(kind, kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '', signature: '' }, out);
    this.content(block, value, out);
  }

  /** A tool call's first fragment: its block, started now or when its turn comes. */
  tool(id: string, name: string, out: Item[]): Block {
    return this.add('tool', { type: 'tool_use', id, name, input: {} }, out);
  }

  /** A fragment of a call's arguments, sent in order. */
  toolInput(call: Block, value: string, out: Item[]): void {
    // A call stops only once its arguments are whole: what could follow is whitespace or a broken server's bytes.
    if (call.index !== null && call !== this.open) return;
    call.json += value;
    this.content(call, value, out);
    if (call === this.open) this.release(out);
  }

  /** The stream's end: every block sent and stopped. */
  finish(out: Item[]): void {
    this.ending = true;
    this.release(out);
    this.stop(out);
  }

  private add(kind: Block['kind'], start: Record<string, unknown>, out: Item[]): Block {
    const block: Block = { kind, start, json: '', held: '', index: null };
    this.waiting.push(block);
    this.release(out);
    return block;
  }

  private content(block: Block, value: string, out: Item[]): void {
    if (value === '') return;
    if (block === this.open) out.push(this.delta(block, value));
    else block.held += value;
  }

  /** Starts waiting blocks for as long as the open one may stop. */
  private release(out: Item[]): void {
    for (let next = this.waiting[0]; next !== undefined && this.mayStop(); next = this.waiting[0]) {
      this.waiting.shift();
      this.stop(out);
      next.index = this.started++;
      this.open = next;
      out.push({ kind: 'event', event: { type: 'content_block_start', index: next.index, content_block: next.start } });
      if (next.held !== '') out.push(this.delta(next, next.held));
      next.held = '';
    }
  }

  private mayStop(): boolean {
    return this.ending || this.open === null || this.open.kind !== 'tool' || isWholeJson(this.open.json);
  }

  private stop(out: Item[]): void {
    if (this.open === null) return;
    out.push({ kind: 'event', event: { type: 'content_block_stop', index: this.open.index } });
    this.open = null;
  }

  private delta(block: Block, value: string): Item {
    const delta =
      block.kind === 'text' ? { type: 'text_delta', text: value } : block.kind === 'thinking' ? { type: 'thinking_delta', thinking: value } : { type: 'input_json_delta', partial_json: value };
    return { kind: 'event', event: { type: 'content_block_delta', index: block.index, delta } };
  }
}

/** Function arguments are an object: parsed only when they end like one. */
function isWholeJson(text: string): boolean {
  if (!text.trimEnd().endsWith('}')) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
