/**
 * RESP2, the Redis protocol: commands encoded as arrays of bulk strings, replies parsed
 * incrementally from whatever bytes have arrived (a reply may be split anywhere).
 */

/** The kinds of error reply Redis gives for its state rather than the command's (RedisReplyError.passing). */
const PASSING_KINDS: ReadonlySet<string> = new Set(['OOM', 'LOADING', 'BUSY', 'READONLY', 'MASTERDOWN', 'NOREPLICAS', 'MISCONF', 'TRYAGAIN', 'CLUSTERDOWN']);

const SCRIPT_ERROR = 'ERR Error running script';
/** The refusal a wrapped script error holds, after its script's line: `…: -READONLY …`. */
const WRAPPED_KIND = /@user_script:\s*\d+: -([A-Z]+) /;

/** An error reply (`-ERR …`, `-NOSCRIPT …`, `-WRONGPASS …`): a value, not a thrown string. */
export class RedisReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisReplyError';
  }

  /**
   * The first word: `ERR`, `NOSCRIPT`, `WRONGPASS`, `NOAUTH`, `NOPERM`…; for a command a script ran
   * that was refused, that refusal's (Redis before 7, and Dragonfly, wrap it: `ERR Error running
   * script (call to f_…): @user_script:4: @user_script: 4: -READONLY You can't write…`).
   */
  get kind(): string {
    const first = this.message.split(' ', 1)[0] ?? '';
    if (first !== 'ERR' || !this.message.startsWith(SCRIPT_ERROR)) return first;
    return WRAPPED_KIND.exec(this.message)?.[1] ?? first;
  }

  /**
   * Refused for the server's state, not the command's: out of memory, loading its data, busy with
   * a script, no longer (or not yet) a primary, too few replicas, a failed save. Nothing was
   * written (a script stops at its first refused write); later it may be.
   */
  get passing(): boolean {
    return PASSING_KINDS.has(this.kind);
  }

  /** A node that no longer takes writes (a failover demoted it): only a new connection can find the primary. */
  get demoted(): boolean {
    return this.kind === 'READONLY' || this.kind === 'MASTERDOWN';
  }
}

export type RespValue = string | number | null | RedisReplyError | RespValue[];

export function encodeCommand(args: readonly (string | number)[]): Buffer {
  let text = `*${args.length}\r\n`;
  for (const arg of args) {
    const value = String(arg);
    text += `$${Buffer.byteLength(value)}\r\n${value}\r\n`;
  }
  return Buffer.from(text);
}

/** Replies larger than this are not ours to parse: the connection is dropped. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

export class RespParseError extends Error {}

/** Parses replies as bytes arrive; `push` returns every reply completed by the chunk. */
export class RespParser {
  private buffer: Buffer = Buffer.alloc(0);
  /** Bytes arrived after `buffer`, not joined to it yet: a reply's pieces are joined once it can be whole, not at every chunk. */
  private pending: Buffer[] = [];
  private length = 0;
  /** Bytes the reply under way needs at least (from the start of what is kept), as far as its parse saw. */
  private needed = 0;
  /** Where the parse that came short found its end must be, at least (an index in `buffer`). */
  private short = 0;

  push(chunk: Buffer): RespValue[] {
    this.pending.push(chunk);
    this.length += chunk.length;
    // Joining and parsing again at every chunk was quadratic in a large reply's size.
    if (this.length < this.needed) return [];
    this.buffer = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.length);
    const values: RespValue[] = [];
    let offset = 0;
    for (;;) {
      const parsed = this.parse(offset);
      if (parsed === null) break;
      values.push(parsed[0]);
      offset = parsed[1];
    }
    this.buffer = offset === this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(offset);
    this.pending = this.buffer.length === 0 ? [] : [this.buffer];
    this.length = this.buffer.length;
    this.needed = this.buffer.length === 0 ? 0 : this.short - offset;
    if (this.buffer.length > MAX_REPLY_BYTES || this.needed > MAX_REPLY_BYTES) throw new RespParseError('a reply larger than 64 MiB');
    return values;
  }

  /** A parse that came short: not all of it is here, and it ends at `end` at least. */
  private shortOf(end: number): null {
    this.short = end;
    return null;
  }

  /** One value at `offset`, and where the next begins; null: not all of it has arrived. */
  private parse(offset: number): [RespValue, number] | null {
    const buffer = this.buffer;
    if (offset >= buffer.length) return this.shortOf(offset + 1);
    const end = buffer.indexOf('\r\n', offset);
    if (end === -1) return this.shortOf(buffer.length + 1);
    const type = buffer[offset];
    const line = buffer.toString('utf8', offset + 1, end);
    const next = end + 2;
    switch (type) {
      case 0x2b: // +
        return [line, next];
      case 0x2d: // -
        return [new RedisReplyError(line), next];
      case 0x3a: // :
        return [integer(line), next];
      case 0x24: {
        // $
        const length = integer(line);
        if (length === -1) return [null, next];
        if (length < 0) throw new RespParseError(`a bulk string of length ${length}`);
        if (buffer.length < next + length + 2) return this.shortOf(next + length + 2);
        return [buffer.toString('utf8', next, next + length), next + length + 2];
      }
      case 0x2a: {
        // *
        const count = integer(line);
        if (count === -1) return [null, next];
        if (count < 0) throw new RespParseError(`an array of length ${count}`);
        const items: RespValue[] = [];
        let at = next;
        for (let i = 0; i < count; i++) {
          const item = this.parse(at);
          if (item === null) return null;
          items.push(item[0]);
          at = item[1];
        }
        return [items, at];
      }
      default:
        throw new RespParseError(`an unknown reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`);
    }
  }
}

function integer(text: string): number {
  if (!/^-?\d+$/.test(text)) throw new RespParseError(`not an integer: ${JSON.stringify(text.slice(0, 40))}`);
  return Number(text);
}
