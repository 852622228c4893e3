/**
 * Takes a real key out of a provider's bytes as they arrive: anything a provider sends may reach
 * a client or a log, and a provider knows the key it was sent. One native search per read. A key
 * split across two reads is caught by holding back a tail that could be its start, until the next
 * read; an SSE event ends in "\n\n", which starts no key, so a stream is practically never held.
 */
const REDACTED = Buffer.from('[redacted]');
const EMPTY = Buffer.alloc(0);
/** Shorter keys are test values: replacing them would mangle ordinary text. */
const MIN_KEY_LENGTH = 8;

export class KeyScrubber {
  private readonly key: Buffer | null;
  private carry: Buffer | null = null;

  constructor(apiKey: string) {
    this.key = apiKey.length >= MIN_KEY_LENGTH ? Buffer.from(apiKey, 'latin1') : null;
  }

  /** The bytes of this read that can be passed on, the key replaced wherever it occurs whole. */
  push(read: Buffer): Buffer {
    const key = this.key;
    if (key === null) return read;
    let data = this.carry === null ? read : Buffer.concat([this.carry, read]);
    this.carry = null;
    if (data.indexOf(key) !== -1) data = replaceAll(data, key);
    const hold = startOfKeyAtEnd(data, key);
    if (hold === 0) return data;
    this.carry = data.subarray(data.length - hold);
    return data.subarray(0, data.length - hold);
  }

  /** What was held back, at the end of the body (it was not the key's start after all). */
  flush(): Buffer {
    const rest = this.carry ?? EMPTY;
    this.carry = null;
    return rest;
  }
}

function replaceAll(data: Buffer, key: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = data.indexOf(key); at !== -1; at = data.indexOf(key, from)) {
    parts.push(data.subarray(from, at), REDACTED);
    from = at + key.length;
  }
  parts.push(data.subarray(from));
  return Buffer.concat(parts);
}

/** How many bytes at the end of `data` are a proper prefix of `key` (0 almost always, found in one lookup). */
function startOfKeyAtEnd(data: Buffer, key: Buffer): number {
  if (data.length === 0 || key.indexOf(data[data.length - 1] as number) === -1) return 0;
  for (let length = Math.min(key.length - 1, data.length); length > 0; length--) {
    if (data.compare(key, 0, length, data.length - length) === 0) return length;
  }
  return 0;
}
