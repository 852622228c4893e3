/**
 * Responses streams from a provider: each event read into an item, its usage and end watched.
 * The stream ends after its terminal event (`response.completed`, `response.incomplete`, or
 * `response.failed`, a failure): there is no `[DONE]`. An `error` event says why a
 * `response.failed` follows; it goes to the client as it came.
 */
import type { StreamWatch } from '../api.js';
import { GatewayError } from '../../errors.js';
import { eventObject, ForeignStreamError, typedEvent } from '../answer.js';
import { openAIStreamError } from '../chat/stream.js';
import { isRecord } from '../json.js';
import type { SseEvent } from '../sse.js';
import type { StreamItem } from '../stream.js';
import type { Usage } from '../usage.js';
import { outputItemIds } from './answer.js';
import { failedError } from './errors.js';
import type { ResponsesEvent } from './types.js';
import { responsesUsage } from './usage.js';

/** Events that carry the response id, usage, the end or a failure (chat's error shape too); deltas may pass as their bytes. */
export const RESPONSES_NOTABLE = /"type"\s*:\s*"(?:response\.(?:created|completed|incomplete|failed)|error)"|event:\s*error\b|"error"\s*:\s*\{|"object"\s*:\s*"error"/;

export function isTerminal(type: string): boolean {
  return type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed';
}

export function decodeResponsesEvent(event: SseEvent): Array<StreamItem<ResponsesEvent>> {
  // Named an error, it is one whatever its data says (OpenAI's SDK goes by the name): read as
  // OpenAI's own error event, `{"type": "error", "code", "message"}`, so its cause is kept.
  if (event.event === 'error') {
    const found = eventObject(event.data);
    if (found !== null && found.type !== 'error') {
      const error: ResponsesEvent = { ...(isRecord(found.error) ? found.error : found), type: 'error' };
      return [{ kind: 'event', event: error, data: JSON.stringify(error), name: 'error' }];
    }
  }
  const data = typedEvent(event.data);
  if (data instanceof GatewayError) return [{ kind: 'error', error: data }];
  // Chat's error shape (`{"error": {…}}`, vLLM's `{"object": "error"}`) from a server that also serves Responses.
  if (data instanceof ForeignStreamError) return [{ kind: 'error', error: openAIStreamError(data.detail) }];
  // Named as the provider named it, or after its type where it did not (SDKs read events by name).
  const item: StreamItem<ResponsesEvent> = { kind: 'event', event: data as ResponsesEvent, data: event.data, name: event.event ?? data.type };
  // The client gets the provider's own response.failed; the error after it ends the stream for the gateway.
  if (data.type === 'response.failed') return [item, { kind: 'error', error: failedError(data.response) }];
  return isTerminal(data.type) ? [item, { kind: 'end' }] : [item];
}

/** The response's id from `response.created`, usage from the terminal event's response; complete once it came. */
export function responsesStreamWatch(): StreamWatch<ResponsesEvent> {
  let usage: Usage | null = null;
  let raw: unknown = null;
  let complete = false;
  let id: string | null = null;
  let items: readonly string[] = [];
  let failure: GatewayError | null = null;
  return {
    see(event) {
      // OpenAI's error event carries its code at the top; some servers nest it under `error`.
      if (event.type === 'error') failure = failedError({ error: isRecord(event.error) ? event.error : event });
      if (event.type === 'response.created' && isRecord(event.response) && typeof event.response.id === 'string') id = event.response.id;
      if (!isTerminal(event.type)) return;
      if (isRecord(event.response)) {
        raw = event.response.usage ?? null;
        usage = responsesUsage(raw);
        items = outputItemIds(event.response);
      }
      complete = true;
    },
    usage: () => usage,
    rawUsage: () => raw,
    answerId: () => id,
    answerItems: () => items,
    failure: () => failure,
    get complete() {
      return complete;
    },
  };
}
