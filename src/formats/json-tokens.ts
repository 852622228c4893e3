/**
 * Where JSON tokens end in a text's bytes: what every byte-level reader of JSON here walks with
 * (the scan of large bodies, the limits check, the key checks, the layout for the log).
 */

export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;

/**
 * The body is better parsed whole: it is not valid JSON (or not what the scan expects; JSON.parse
 * of the whole says why), or it is made of many small values, where the scan costs more than the
 * large string it saves.
 */
export class ParseWhole extends Error {}

export function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The index after the closing quote of the string that opens at `start`. */
export function stringEnd(buf: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = buf.indexOf(QUOTE, from);
    if (quote === -1) throw new ParseWhole();
    let slash = quote - 1;
    while (buf[slash] === BACKSLASH) slash--;
    // An even number of backslashes before it: the quote is not escaped.
    if ((quote - 1 - slash) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** A number or a literal: its characters (JSON.parse of the piece holding it checks them). */
export function scalarEnd(buf: Buffer, start: number): number {
  let i = start;
  for (; i < buf.length; i++) {
    const c = buf[i] as number;
    // 0-9 + - . and letters (true, false, null, exponents)
    if (!((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e || (c >= 0x61 && c <= 0x7a) || c === 0x45)) break;
  }
  if (i === start) throw new ParseWhole();
  return i;
}

/** The index after the value that starts at `start` of a JSON text a parser accepted. */
export function valueEnd(buf: Buffer, start: number): number {
  const c = buf[start];
  if (c === QUOTE) return stringEnd(buf, start);
  if (c !== 0x7b && c !== 0x5b) return scalarEnd(buf, start);
  let depth = 0;
  for (let i = start; i < buf.length; i++) {
    const b = buf[i];
    if (b === QUOTE) i = stringEnd(buf, i) - 1;
    else if (b === 0x7b || b === 0x5b) depth++;
    else if ((b === 0x7d || b === 0x5d) && --depth === 0) return i + 1;
  }
  throw new ParseWhole();
}

export function skipSpace(buf: Buffer, i: number): number {
  while (i < buf.length && isSpace(buf[i] as number)) i++;
  return i;
}

export function hasBackslash(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] === BACKSLASH) return true;
  return false;
}
