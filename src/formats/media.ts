/**
 * Images, audio and files in a request, counted from its bytes. A part sent by URL or file id is
 * a few dozen bytes, but the provider bills it as hundreds to thousands of prompt tokens: a
 * prompt estimated from the body's size alone (~4 bytes a token) would let such requests hold
 * and, cut before their usage arrives, spend a fraction of what they cost.
 */

/** Prompt tokens one part is taken for: about the most an image costs at OpenAI (~1,450 at high detail) and Anthropic (~1,600). */
export const MEDIA_PART_TOKENS = 1600;

/**
 * How many string values in `raw` are one of `types` (each an API's `type` of a media part, such
 * as `"image_url"`): found by a byte search, a key of that name (followed by a colon) not counted.
 * A value inside a string cannot match: its quotes are escaped there.
 */
export function countMediaParts(raw: Buffer, types: readonly Buffer[]): number {
  let count = 0;
  for (const type of types) {
    for (let at = raw.indexOf(type); at !== -1; at = raw.indexOf(type, at + type.length)) {
      let next = at + type.length;
      while (raw[next] === 0x20 || raw[next] === 0x0a || raw[next] === 0x0d || raw[next] === 0x09) next++;
      if (raw[next] !== 0x3a /* : */) count++;
    }
  }
  return count;
}

/** The quoted forms to search for, from an API's media part types. */
export function mediaTypes(...types: string[]): readonly Buffer[] {
  return types.map((type) => Buffer.from(JSON.stringify(type)));
}
