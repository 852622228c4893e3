/**
 * What the gateway writes where a terminal may show it (the log on stdout, warnings on stderr,
 * `npm run usage`) holds no raw character a terminal acts on. JSON escapes the C0 controls but
 * leaves DEL and the C1 range raw (U+007F–U+009F: U+009B begins a control sequence, as ESC [
 * does), and a client chooses model names, key headers and bodies: those are written as `\u`
 * escapes, which JSON readers take as the same characters.
 */

/**
 * U+0080–U+00BF characters (°, ±, a no-break space, « ») are 0xc2 and a byte: each is a native
 * search's stop. Two closer than this begin a stretch looked at byte by byte (a search each cost
 * more there), of WINDOW bytes, then searches go on: ordinary text pays a search per character,
 * text dense with them about a byte loop.
 */
const CLOSE = 16;
const WINDOW = 4096;

/** Whether UTF-8 bytes hold DEL (0x7f) or a C1 control (0xc2, then 0x80–0x9f). */
export function hasTerminalControls(bytes: Buffer): boolean {
  if (bytes.indexOf(0x7f) !== -1) return true;
  let i = bytes.indexOf(0xc2);
  while (i !== -1) {
    if (isC1(bytes[i + 1])) return true;
    const next = bytes.indexOf(0xc2, i + 1);
    if (next === -1 || next - i >= CLOSE) {
      i = next;
      continue;
    }
    const end = Math.min(bytes.length - 1, next + WINDOW);
    for (let j = next; j < end; j++) if (bytes[j] === 0xc2 && isC1(bytes[j + 1])) return true;
    i = bytes.indexOf(0xc2, end);
  }
  return false;
}

function isC1(next: number | undefined): boolean {
  return next !== undefined && next >= 0x80 && next <= 0x9f;
}

const HEX = Buffer.from('0123456789abcdef');

/**
 * UTF-8 JSON with DEL and the C1 controls written as `\u` escapes: JSON's structure is ASCII, so
 * they are inside its strings, whose values stay the same (bytes a parser never read must be
 * checked as JSON before: a backslash before one would read as an escape). Never a string: a body
 * dense with them took a regular expression's callback seconds. A few are found by native
 * searches and the bytes between copied whole; many, byte by byte.
 */
export function escapeTerminalBytes(bytes: Buffer): Buffer {
  const at = controlsAt(bytes, MANY_CONTROLS);
  return at === null ? escapeEach(bytes) : escapeAt(bytes, at);
}

/** Controls, or 0xc2 bytes, past which the bytes are copied one by one rather than between them. */
const MANY_CONTROLS = 4096;
const MANY_LEADS = 65_536;

/** Where each control starts (DEL, or a C1's lead byte), in order; null past `most` of them, or of 0xc2 bytes (each a search). */
function controlsAt(bytes: Buffer, most: number): number[] | null {
  const at: number[] = [];
  let leads = 0;
  let del = bytes.indexOf(0x7f);
  let lead = bytes.indexOf(0xc2);
  while (del !== -1 || lead !== -1) {
    if (lead === -1 || (del !== -1 && del < lead)) {
      at.push(del);
      del = bytes.indexOf(0x7f, del + 1);
    } else {
      if (isC1(bytes[lead + 1])) at.push(lead);
      if (++leads > MANY_LEADS) return null;
      lead = bytes.indexOf(0xc2, lead + 1);
    }
    if (at.length > most) return null;
  }
  return at;
}

/** The escape of the control at `i` written at `o` of `out`; returns its length in `bytes` (1 or 2). */
function writeEscape(bytes: Buffer, i: number, out: Buffer, o: number): number {
  const del = bytes[i] === 0x7f;
  const code = del ? 0x7f : (bytes[i + 1] as number);
  out[o] = 0x5c; // \u00XX
  out[o + 1] = 0x75;
  out[o + 2] = 0x30;
  out[o + 3] = 0x30;
  out[o + 4] = HEX[code >> 4] as number;
  out[o + 5] = HEX[code & 0xf] as number;
  return del ? 1 : 2;
}

function escapeAt(bytes: Buffer, at: readonly number[]): Buffer {
  let extra = 0;
  for (const i of at) extra += bytes[i] === 0x7f ? 5 : 4;
  const out = Buffer.allocUnsafe(bytes.length + extra);
  let from = 0;
  let o = 0;
  for (const i of at) {
    o += bytes.copy(out, o, from, i);
    from = i + writeEscape(bytes, i, out, o);
    o += 6;
  }
  bytes.copy(out, o, from);
  return out;
}

function escapeEach(bytes: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i] as number;
    if (c === 0x7f) extra += 5;
    else if (c === 0xc2 && isC1(bytes[i + 1])) {
      extra += 4;
      i++;
    }
  }
  const out = Buffer.allocUnsafe(bytes.length + extra);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i] as number;
    if (c === 0x7f || (c === 0xc2 && isC1(bytes[i + 1]))) {
      i += writeEscape(bytes, i, out, o) - 1;
      o += 6;
    } else out[o++] = c;
  }
  return out;
}

/** C0 controls but tab and line feed, DEL and the C1 range. */
const MESSAGE_CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** A message for a terminal (a warning, a report), its controls but tab and line feed as `\u` escapes. For short texts. */
export function terminalText(text: string): string {
  return text.replace(MESSAGE_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
