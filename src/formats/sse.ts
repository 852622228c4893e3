/**
 * Server-sent events as the APIs use them: an event (its optional name and its data) and the
 * frames the gateway writes. The incremental parser for what providers send is in
 * `upstream/sse.ts`.
 */

export interface SseEvent {
  /** The `event:` field, when the stream names its events (Anthropic does, OpenAI does not). */
  readonly event: string | undefined;
  readonly data: string;
}

/** One frame. Data with line breaks is split over several `data:` lines, as the spec requires. */
export function sseFrame(data: string, event?: string): string {
  // A name is one line: one with a line break (a provider's `type` is text it chose) would start another event.
  const name = event === undefined ? '' : `event: ${/[\r\n]/.test(event) ? event.replace(/[\r\n]/g, '') : event}\n`;
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `${name}data: ${data}\n\n`;
  return `${name}${data.split(/\r\n|\r|\n/).map((line) => `data: ${line}`).join('\n')}\n\n`;
}

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;
