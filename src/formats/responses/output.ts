/**
 * What a Responses client sees of a stream: each event with its `event:` line, nothing more at
 * the end (the terminal event was the last), and a failure as `response.failed` with the next
 * sequence number and the response's id (preceded by `response.created` when the stream had not
 * begun: the SDK's stream helper requires it first). Passed through, events the gateway does not
 * read go out as bytes; the last sequence number among them is found without parsing them.
 */
import type { StreamOutput } from '../api.js';
import { isRecord } from '../json.js';
import { sseFrame } from '../sse.js';
import { responseError, type ResponseError } from './errors.js';
import type { ResponsesEvent } from './types.js';

const SEQUENCE_FIELD = '"sequence_number":';

export interface ResponsesStreamOutput extends StreamOutput<ResponsesEvent> {
  passed(events: Buffer | string): void;
}

/** The last `sequence_number` in whole events' text or bytes, without parsing them (-1: none). */
function lastSequence(events: Buffer | string): number {
  const at = events.lastIndexOf(SEQUENCE_FIELD);
  if (at === -1) return -1;
  let value = -1;
  for (let i = at + SEQUENCE_FIELD.length; i < events.length; i++) {
    const code = typeof events === 'string' ? events.charCodeAt(i) : (events[i] as number);
    if (code === 0x20 && value === -1) continue;
    if (code < 0x30 || code > 0x39) break;
    value = (value === -1 ? 0 : value * 10) + (code - 0x30);
  }
  return value;
}

/** What an `error` event says: its `code` and `message`, at the top or under `error` (both are seen). */
function providerError(event: ResponsesEvent): ResponseError | null {
  const detail = isRecord(event.error) ? event.error : event;
  return typeof detail.code === 'string' && typeof detail.message === 'string' ? { code: detail.code, message: detail.message } : null;
}

export function responsesStreamOutput(model: string, answerId: string): ResponsesStreamOutput {
  let sequence = -1;
  let response: Record<string, unknown> | null = null;
  let failed = false;
  /** A provider's `error` event: the cause of a failure that follows (a dropped connection says less). */
  let said: ResponseError | null = null;
  const frame = (event: ResponsesEvent): string => sseFrame(JSON.stringify(event), event.type);
  return {
    frame(item) {
      if (item.kind === 'end') return '';
      if (item.kind === 'error') {
        if (failed) return '';
        failed = true;
        let text = '';
        if (response === null) {
          // Its id as a translated answer's would be; no clock here: the failure is what the client needs from this stand-in.
          response = { id: `resp_${answerId}`, object: 'response', created_at: 0, status: 'in_progress', model, output: [], usage: null };
          text += frame({ type: 'response.created', sequence_number: ++sequence, response });
        }
        const failure = { ...response, status: 'failed', error: said ?? responseError(item.error), incomplete_details: null, output: [], usage: null };
        return text + frame({ type: 'response.failed', sequence_number: ++sequence, response: failure });
      }
      const event = item.event;
      if (typeof event.sequence_number === 'number') sequence = Math.max(sequence, event.sequence_number);
      if (event.type === 'response.created' && isRecord(event.response)) response = event.response;
      else if (event.type === 'response.failed') failed = true;
      else if (event.type === 'error') said = providerError(event) ?? said;
      // A provider's own event keeps its text and name (named after its type where it had none); the gateway's are named.
      return item.data === undefined ? sseFrame(JSON.stringify(event), event.type) : sseFrame(item.data, item.name);
    },
    passed(events) {
      sequence = Math.max(sequence, lastSequence(events));
    },
  };
}
