/**
 * The items of an answer translated from a chat stream (Messages content blocks, Responses output
 * items), kept well-formed: one open at a time, each started, given its content, then stopped,
 * never content after its stop. Shared by the translators from chat streams; one per stream.
 *
 * A chat stream need not run its calls one after another: some servers start call 1 before
 * sending call 0's arguments. So an item stays open until it is whole (a call: once its arguments
 * are; a server sends no more for it then) or the stream ends; whatever comes meanwhile (another
 * call, text, reasoning) is held, in order, and sent as soon as its turn comes.
 */
import { GatewayError } from '../../errors.js';
import { Queue } from '../../queue.js';
import type { StreamItem } from '../stream.js';

/**
 * Characters of an answer's items held at once (waiting for their turn, or kept whole until they
 * stop) before the stream fails: what a translation holds is otherwise the provider's to choose,
 * and past V8's string limit (~512 MiB) it could hold nothing. A real answer holds well under
 * 1 MiB (128,000 tokens of output).
 */
export const MAX_HELD_CHARS = 64 * 1024 * 1024;

export interface Sequenced {
  /** What it received and still holds: all of it while it waits, or while its API keeps it whole. */
  text: string;
  /** Waiting for its turn, open (its content goes out as it comes), or stopped (nothing more goes out). */
  state: 'waiting' | 'open' | 'stopped';
}

/** How an API starts, continues and stops an item, and when an item is whole. */
export interface SequencedEvents<Item extends Sequenced, Event> {
  start(item: Item, out: Array<StreamItem<Event>>): void;
  /** Content of the open item; on its start, all it received while it waited. */
  delta(item: Item, value: string, out: Array<StreamItem<Event>>): void;
  stop(item: Item, out: Array<StreamItem<Event>>): void;
  /** Nothing more can come for it: the next item may start. */
  whole(item: Item): boolean;
  /** It keeps all its text while open (a call's arguments are checked whole when they close). */
  keeps(item: Item): boolean;
  /** It still needs all its text once stopped (a Responses answer's last events repeat every item's). */
  retains(item: Item): boolean;
}

export class OneAtATime<Item extends Sequenced, Event> {
  private open: Item | null = null;
  /** Items waiting for the open one to stop, in the order they came (a server can start 100,000 calls). */
  private readonly waiting = new Queue<Item>();
  private ending = false;
  /** Characters held in items' `text`. */
  private held = 0;

  constructor(
    private readonly events: SequencedEvents<Item, Event>,
    private readonly maxHeld = MAX_HELD_CHARS,
  ) {}

  /** The item added last, open or waiting: a run of text continues it. */
  get last(): Item | null {
    return this.waiting.last ?? this.open;
  }

  /** A new item (state `waiting`): started now, or when its turn comes. */
  add(item: Item, out: Array<StreamItem<Event>>): void {
    this.waiting.push(item);
    this.release(out);
  }

  /**
   * Text held for the translation outside any item (a tool call's arguments that came before its
   * name): counted with the items', against the same limit, until `letGo`.
   */
  reserve(chars: number): void {
    this.count(chars);
  }

  letGo(chars: number): void {
    this.held -= chars;
  }

  /** Content for an item: sent now if it is open, held while it waits, dropped once it stopped (whole: what could follow is whitespace or a broken server's bytes). */
  content(item: Item, value: string, out: Array<StreamItem<Event>>): void {
    if (value === '' || item.state === 'stopped') return;
    if (item.state !== 'open' || this.events.keeps(item)) this.hold(item, value);
    if (item.state !== 'open') return;
    this.events.delta(item, value, out);
    this.release(out);
  }

  /** The stream's end: every item sent and stopped. */
  finish(out: Array<StreamItem<Event>>): void {
    this.ending = true;
    this.release(out);
    this.stop(out);
  }

  /** Starts waiting items for as long as the open one may stop. */
  private release(out: Array<StreamItem<Event>>): void {
    for (let next = this.waiting.peek(); next !== undefined && this.mayStop(); next = this.waiting.peek()) {
      this.waiting.shift();
      this.stop(out);
      next.state = 'open';
      this.open = next;
      this.events.start(next, out);
      if (next.text === '') continue;
      this.events.delta(next, next.text, out);
      if (!this.events.keeps(next)) {
        this.held -= next.text.length;
        next.text = '';
      }
    }
  }

  private hold(item: Item, value: string): void {
    this.count(value.length);
    item.text += value;
  }

  private count(chars: number): void {
    this.held += chars;
    if (this.held > this.maxHeld) {
      throw new GatewayError(502, `The provider's answer is larger than the gateway translates: its parts held ${this.held} characters at once (at most ${this.maxHeld}).`, { code: 'upstream_response_too_large' });
    }
  }

  private mayStop(): boolean {
    return this.ending || this.open === null || this.events.whole(this.open);
  }

  private stop(out: Array<StreamItem<Event>>): void {
    const item = this.open;
    if (item === null) return;
    this.open = null;
    item.state = 'stopped';
    this.events.stop(item, out);
    if (!this.events.retains(item)) {
      this.held -= item.text.length;
      item.text = '';
    }
  }
}
