/**
 * Which call a streamed `tool_calls` fragment belongs to, as every server numbers them. A call is
 * known by its `index`. A fragment with a new `id` at an index already used starts another call
 * once that call's arguments are a whole JSON object, or when it names another function than that
 * call's, whatever its arguments (Ollama numbers every call 0, each call whole in one fragment,
 * and a small model's arguments may never be whole); otherwise it continues the call (servers
 * that send a new id on every fragment, its name repeated or not), as does the first id of a call
 * begun without one (servers that send it late). One without an index continues the call of its id (some servers repeat it on every
 * fragment, and may interleave calls), or the last call when it brings none. A fragment whose
 * arguments begin with all the call's arguments so far brings only the rest: some servers send the
 * arguments so far on every fragment (DeepSeek-style, Qianfan) or all of them again at the end
 * (GLM-style); joined as they came they were `{…}{…}`, which no client can parse. Shared by the
 * translators from chat streams and the log's assembled answer; one per stream.
 */
import { isSpace } from '../json-tokens.js';
import { isRecord } from '../json.js';
import { parseProviderJson } from '../json-limits.js';

export interface PlacedFragment<Call> {
  readonly call: Call;
  /** The fragment starts this call. */
  readonly started: boolean;
  /** Its function's name and arguments text, as far as it says them. */
  readonly name: string | null;
  /** The call's name as far as its fragments so far say it (pieces joined). */
  readonly callName: string;
  readonly arguments: string;
  /** The server's id for a call it began without one (the call keeps the id it started with once sent). */
  readonly lateId: string | null;
}

interface KnownCall<Call> {
  id: string;
  /** Whether `id` is the server's (not the fallback's). */
  fromServer: boolean;
  /** Its function's name, once a fragment said it ('' until then), its pieces joined. */
  name: string;
  /** Arguments came since its name began: a name after them is no piece of it. */
  argumentsSinceName: boolean;
  /** Its arguments so far. */
  text: string;
  /** The server sent its arguments so far again at least once: it does so (each fragment, or at the end). */
  resends: boolean;
  readonly call: Call;
  readonly end: ArgumentsEnd;
}

export class StreamedToolCalls<Call> {
  private readonly byIndex = new Map<number, KnownCall<Call>>();
  /** The index of each call by its id, for fragments without an index that repeat it. */
  private readonly byId = new Map<string, number>();
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
    // Some servers send the arguments as an object, whole.
    const args = typeof fn.arguments === 'string' ? fn.arguments : isRecord(fn.arguments) ? JSON.stringify(fn.arguments) : '';
    const id = typeof fragment.id === 'string' && fragment.id !== '' ? fragment.id : null;
    const index = typeof fragment.index === 'number' ? fragment.index : id === null ? (this.last ?? -1 - this.count) : (this.byId.get(id) ?? -1 - this.count);
    const known = this.byIndex.get(index);
    // (A fragment that brings nothing but an id after a whole call starts nothing.)
    const namesAnother = name !== null && name !== '' && known !== undefined && known.name !== '' && name !== known.name;
    const another = known !== undefined && id !== null && id !== known.id && (namesAnother || (known.end.closed && (name !== null || args !== '')));
    if (known !== undefined && !another) {
      // A fragment that begins with all the text before it: sent again (some servers resend the
      // arguments so far), or new text of arguments that repeat themselves (`{"and":{"and":…`).
      // Once one was, the server resends: so is any later one (however it reads: arguments with a brace too many).
      const resent = known.text !== '' && args.length >= known.text.length && args.startsWith(known.text) && (known.resends || readAsResend(known.end, args, known.text.length));
      if (resent) known.resends = true;
      const rest = resent ? args.slice(known.text.length) : args;
      // Pieces of a name come before the arguments that follow it (with the first of them, at the
      // latest): after them, a name is no piece of it (the first name to come is the name).
      if (name !== null && name !== '' && (known.name === '' || !known.argumentsSinceName)) known.name = joinedName(known.name, name);
      if (rest !== '' && known.name !== '') known.argumentsSinceName = true;
      known.text += rest;
      known.end.feed(rest);
      let lateId: string | null = null;
      if (id !== null && !known.fromServer) {
        known.id = lateId = id;
        known.fromServer = true;
        if (!this.byId.has(id)) this.byId.set(id, index);
      }
      return { call: known.call, started: false, name, callName: known.name, arguments: rest, lateId };
    }
    const callId = id ?? fallbackId(this.count);
    const call = start(callId, name ?? '');
    const end = new ArgumentsEnd();
    end.feed(args);
    this.byIndex.set(index, { id: callId, fromServer: id !== null, name: name ?? '', argumentsSinceName: args !== '' && name !== null && name !== '', text: args, resends: false, call, end });
    if (!this.byId.has(callId)) this.byId.set(callId, index);
    this.count++;
    this.last = index;
    return { call, started: true, name, callName: name ?? '', arguments: args, lateId: null };
  }
}

/**
 * A call's name so far with the name a later fragment of it brings: the same again (servers that
 * repeat it on every fragment), the whole name so far and more (sent whole each time), or its next
 * piece (servers that send it in pieces, as Gemini's may: `get_`, then `weather`).
 */
function joinedName(sofar: string, piece: string): string {
  return piece.startsWith(sofar) ? piece : sofar + piece;
}

/**
 * Whether `args`, which begins with all `sofar` characters of a call's arguments so far (read by
 * `end`), is them sent again rather than more of them: a resend, unless what it adds after them
 * can no longer make an object where the whole of it, read on as new text, still can
 * (`{"and":` then `{"and":{"x":1}}}`). Only what a resend adds is read, then the rest if need be.
 */
function readAsResend(end: ArgumentsEnd, args: string, sofar: number): boolean {
  const resent = end.copy();
  resent.feed(args.slice(sofar));
  if (!resent.broken) return true;
  const appended = end.copy();
  appended.feed(args);
  return appended.broken;
}

/** What a translator does with a call once its tool's name is known. */
export interface CallOpener<Opened, Out> {
  /** Opens the call's block or item, with the arguments that came before its name (`hold` counted them). */
  open(id: string, name: string, held: string, out: Out): Opened;
  /** Arguments kept while a call waits for its name, counted against the translator's limit until `open`. */
  hold(chars: number): void;
}

interface WaitingCall<Opened> {
  id: string;
  name: string;
  opened: Opened | null;
  held: string;
}

/**
 * Streamed tool calls as a translator opens them: a call's block or item starts with its tool's
 * name, and some servers send the name after the call's first fragments, or in pieces before its
 * arguments, so a call waits for its name and its first arguments (those before its name held),
 * for the next call to begin, or for the stream's end.
 */
export class NamedToolCalls<Opened, Out> {
  private readonly calls = new StreamedToolCalls<WaitingCall<Opened>>();
  /** Calls not opened yet, in the order they began (a set: one opens without a walk of the others). */
  private readonly waiting = new Set<WaitingCall<Opened>>();
  /** Of those, the ones whose name came, waiting for their arguments. */
  private readonly named = new Set<WaitingCall<Opened>>();

  constructor(
    private readonly opener: CallOpener<Opened, Out>,
    private readonly fallbackId: (n: number) => string,
  ) {}

  /** Calls started so far. */
  get count(): number {
    return this.calls.count;
  }

  /**
   * One fragment: its call, once opened (null while it waits for its name), and its arguments to
   * send on; null for a fragment that is not an object.
   */
  place(fragment: unknown, out: Out): { opened: Opened | null; arguments: string } | null {
    const placed = this.calls.place(fragment, (id, name) => ({ id, name, opened: null, held: '' }), this.fallbackId);
    if (placed === null) return null;
    const call = placed.call;
    if (placed.started) {
      // Another call began: the names of those before it are whole.
      this.openNamed(out);
      this.waiting.add(call);
    }
    if (call.opened === null) {
      if (placed.lateId !== null) call.id = placed.lateId;
      call.name = placed.callName;
      if (call.name === '' || placed.arguments === '') {
        if (call.name !== '') this.named.add(call);
        this.opener.hold(placed.arguments.length);
        call.held += placed.arguments;
        return { opened: null, arguments: placed.arguments };
      }
      this.open(call, out);
    }
    return { opened: call.opened, arguments: placed.arguments };
  }

  /**
   * Opens the calls whose name came and whose arguments have not: something else follows them (the
   * next call, text), so their names are whole, and what follows comes after them, in order.
   */
  openNamed(out: Out): void {
    for (const call of this.named) this.open(call, out);
  }

  /** The stream's end: a call still waiting (for arguments, or for a name that never came) opens as it is. */
  finish(out: Out): void {
    for (const call of this.waiting) this.open(call, out);
  }

  private open(call: WaitingCall<Opened>, out: Out): void {
    this.waiting.delete(call);
    this.named.delete(call);
    const held = call.held;
    call.held = '';
    call.opened = this.opener.open(call.id, call.name, held, out);
  }
}

/**
 * Whether a call's streamed arguments are a whole JSON object yet (nothing more can come for it),
 * each fragment read once: the text is parsed once, when its outermost brace closes. Parsing the
 * text so far at every fragment, as long as another call waited, was quadratic: a server may send
 * 100,000 fragments.
 */
export class ArgumentsEnd {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Reading the object; its outermost brace closed (only whitespace since); or never whole (not an object, or more after it). */
  private state: 'reading' | 'closed' | 'never' = 'reading';
  /** The object, once parsed; null when the closed text is not JSON. */
  private parsed: Record<string, unknown> | null | undefined = undefined;

  /** Whether the outermost object closed (with only whitespace since): nothing more can belong to it. */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Whether the text can no longer be one object (not one, or more after it). */
  get broken(): boolean {
    return this.state === 'never';
  }

  /** A reader at the same place, to read on without moving this one. */
  copy(): ArgumentsEnd {
    const copy = new ArgumentsEnd();
    copy.depth = this.depth;
    copy.inString = this.inString;
    copy.escaped = this.escaped;
    copy.state = this.state;
    copy.parsed = this.parsed;
    return copy;
  }

  /** Reads the next fragment of the arguments: how many of its characters came before they broke (all, unless they did). */
  feed(fragment: string): number {
    if (this.state === 'never') return 0;
    for (let i = 0; i < fragment.length; i++) {
      const c = fragment.charCodeAt(i);
      if (this.state === 'closed') {
        if (!isSpace(c)) this.state = 'never';
      } else if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x22) this.inString = false;
      } else if (this.depth === 0) {
        if (c === 0x7b) this.depth = 1;
        else if (!isSpace(c)) this.state = 'never';
      } else if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if ((c === 0x7d || c === 0x5d) && --this.depth === 0) this.state = 'closed';
      if ((this.state as string) === 'never') return i;
    }
    return fragment.length;
  }

  /** The arguments as an object once whole, `text` being everything fed; null until then. */
  whole(text: string): Record<string, unknown> | null {
    if (this.state !== 'closed') return null;
    if (this.parsed === undefined) {
      try {
        const value: unknown = parseProviderJson(text);
        this.parsed = isRecord(value) ? value : null;
      } catch {
        this.parsed = null;
      }
      // A closed object that is not JSON stays so, whatever follows.
      if (this.parsed === null) this.state = 'never';
    }
    return this.parsed;
  }
}
