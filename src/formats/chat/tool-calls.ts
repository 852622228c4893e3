/**
 * Which call a streamed `tool_calls` fragment belongs to, as every server numbers them. A call is
 * known by its `index`; a fragment with a new `id` at an index already used starts another call
 * (Ollama numbers every call 0), and one without an index continues the last call unless it
 * brings an id of its own. Shared by the translators from chat streams; one per stream.
 */
import { isRecord } from '../json.js';

export interface PlacedFragment<Call> {
  readonly call: Call;
  /** The fragment starts this call. */
  readonly started: boolean;
  /** Its function's name and arguments text, as far as it says them. */
  readonly name: string | null;
  readonly arguments: string;
}

export class StreamedToolCalls<Call> {
  private readonly byIndex = new Map<number, { id: string; call: Call }>();
  private last: number | null = null;
  /** Calls started so far. */
  count = 0;

  /**
   * The call `fragment` continues, or the one `start` makes for it (with the server's id, or
   * `call_<n>` from `fallbackId` when it gives none); null for a fragment that is not an object.
   */
  place(fragment: unknown, start: (id: string, name: string) => Call, fallbackId: (n: number) => string): PlacedFragment<Call> | null {
    if (!isRecord(fragment)) return null;
    const fn = isRecord(fragment.function) ? fragment.function : {};
    const name = typeof fn.name === 'string' ? fn.name : null;
    const args = typeof fn.arguments === 'string' ? fn.arguments : '';
    const id = typeof fragment.id === 'string' && fragment.id !== '' ? fragment.id : null;
    const index = typeof fragment.index === 'number' ? fragment.index : id === null && this.last !== null ? this.last : -1 - this.count;
    const known = this.byIndex.get(index);
    if (known !== undefined && (id === null || id === known.id)) return { call: known.call, started: false, name, arguments: args };
    const callId = id ?? fallbackId(this.count);
    const call = start(callId, name ?? '');
    this.byIndex.set(index, { id: callId, call });
    this.count++;
    this.last = index;
    return { call, started: true, name, arguments: args };
  }
}

/** A call's arguments are whole: a JSON object, parsed only when they end like one. */
export function wholeArguments(text: string): boolean {
  if (!text.trimEnd().endsWith('}')) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
