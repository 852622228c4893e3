/**
 * A request the gateway built (a translation) as the bytes of `JSON.stringify(request)`, its long
 * array (a conversation) serialised element by element into pieces of bytes. One string of a whole
 * 1 MB conversation cost more to turn into bytes than to build (V8 joins the pieces of a long
 * string it built the first time its characters are read: 6–7 ms here; docs/performance.md).
 */
import { utf8Bytes } from '../utf8.js';

/** Characters gathered into one piece of bytes. */
const PIECE_CHARS = 32 * 1024;
/** An array with fewer elements than this is serialised with the rest, as one string. */
const FEW = 64;

/** `JSON.stringify(value)`, as one string or, where `value[arrayKey]` is a long array, as pieces of its bytes. */
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

  finish(): Buffer[] {
    this.flush();
    return this.pieces;
  }
}
