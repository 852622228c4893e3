/**
 * A request the gateway built (a translation) as the bytes of `JSON.stringify(request)`, its long
 * array (a conversation) serialised element by element into pieces of bytes. One string of a whole
 * conversation cost more to turn into bytes than to build: V8 joins the pieces of a long string it
 * built the first time its characters are read (1 MB: 6–7 ms; 137 KB: ~1.5 ms, where the pieces
 * take 0.35–0.55 ms in all; docs/performance.md).
 */
import { utf8Bytes } from '../utf8.js';

/** Characters gathered into one piece of bytes. */
const PIECE_CHARS = 32 * 1024;
/**
 * An array with fewer elements than this is serialised with the rest, as one string: a few µs
 * cheaper for a small body. It is the size that matters, not the count (an agent's 137 KB turn can
 * be 49 messages), so a longer array is serialised element by element, and joined into one string
 * again when it all fits in one piece.
 */
const FEW = 8;

/** `JSON.stringify(value)`: one string when it is short, else (where `value[arrayKey]` is an array) pieces of its bytes. */
export function jsonPieces(value: object, arrayKey: string): string | Buffer[] {
  const members = value as Readonly<Record<string, unknown>>;
  const array = members[arrayKey];
  if (!Array.isArray(array) || array.length < FEW) return JSON.stringify(value);
  const out = new Gather();
  let first = true;
  for (const key of Object.keys(value)) {
    const member = key === arrayKey ? null : JSON.stringify(members[key]);
    if (member === undefined) continue; // as JSON.stringify leaves out undefined and functions
    out.add(`${first ? '{' : ','}${JSON.stringify(key)}:`);
    first = false;
    if (member !== null) {
      out.add(member);
      continue;
    }
    out.add('[');
    for (let i = 0; i < array.length; i++) {
      if (i > 0) out.add(',');
      out.add(JSON.stringify(array[i]) ?? 'null');
    }
    out.add(']');
  }
  out.add(first ? '{}' : '}');
  return out.finish();
}

/** Strings joined into pieces of bytes of about PIECE_CHARS characters. */
class Gather {
  private strings: string[] = [];
  private chars = 0;
  private readonly pieces: Buffer[] = [];

  add(text: string): void {
    this.strings.push(text);
    this.chars += text.length;
    if (this.chars >= PIECE_CHARS) this.flush();
  }

  private flush(): void {
    if (this.strings.length > 0) this.pieces.push(utf8Bytes(this.strings.join('')));
    this.strings = [];
    this.chars = 0;
  }

  /** The pieces, or the text itself when it never filled one. */
  finish(): string | Buffer[] {
    if (this.pieces.length === 0) return this.strings.join('');
    this.flush();
    return this.pieces;
  }
}
