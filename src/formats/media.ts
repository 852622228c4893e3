/**
 * Images, audio and files in a request. A part sent by URL or file id is a few dozen bytes, but
 * the provider bills it as hundreds to thousands of prompt tokens: a prompt estimated from the
 * body's size alone (~4 bytes a token) would let such requests hold and, cut before their usage
 * arrives, spend a fraction of what they cost.
 */

/** Prompt tokens one part is taken for: about the most an image costs at OpenAI (~1,450 at high detail) and Anthropic (~1,600: about 1.15 megapixels / 750). */
export const MEDIA_PART_TOKENS = 1600;

/**
 * How many media parts a parsed request holds: elements of a `content` array (a message's, a tool
 * result's) or an `output` array (a Responses function call's output) whose `type` is among
 * `types` (an API's, such as `image_url`). Counted in the values the client's JSON means, so no
 * spelling of the bytes (`"image\u005furl"`) hides one; a tool's input, a schema or a text that
 * merely holds such a `type` is not one. Reading a member left as bytes parses it (json-bytes.ts).
 */
export function countMediaParts(request: unknown, types: ReadonlySet<string>): number {
  let count = 0;
  const stack: unknown[] = [request];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'object' && item !== null) stack.push(item);
      continue;
    }
    const record = value as Record<string, unknown>;
    for (const key in record) {
      const item = record[key];
      if (typeof item !== 'object' || item === null) continue;
      if ((key === 'content' || key === 'output') && Array.isArray(item)) {
        for (const part of item) if (typeof part === 'object' && part !== null && types.has((part as { type?: unknown }).type as string)) count++;
      }
      stack.push(item);
    }
  }
  return count;
}
