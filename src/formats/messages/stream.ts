/**
 * Messages streams from a provider: each event (`message_start`, `content_block_*`,
 * `message_delta`, `message_stop`, `ping`, `error`) read into an item, and the usage and end
 * watched. Anthropic names the event both in `event:` and in the data's `type`; the data is read.
 */
import { GatewayError } from '../../errors.js';
import type { StreamWatch } from '../api.js';
import { ERROR_STATUS, eventObject, foreignError, ForeignStreamError, typedEvent } from '../answer.js';
import { openAIStreamError } from '../chat/stream.js';
import { entryOf, isRecord } from '../json.js';
import type { SseEvent } from '../sse.js';
import type { StreamItem } from '../stream.js';
import type { Usage } from '../usage.js';
import type { MessagesEvent } from './types.js';
import { messagesUsage } from './usage.js';

/** Events that carry usage, the end or an error (OpenAI's shape too, from a server in front of a provider), and `ping` (it says nothing: a stream of pings and an error is a refusal, charged nothing); content deltas may pass as their bytes. */
export const MESSAGES_NOTABLE = /"type"\s*:\s*"(?:message_start|message_delta|message_stop|ping|error)"|event:\s*error\b|"error"\s*:\s*\{|"object"\s*:\s*"error"/;

function messagesStreamError(error: unknown): GatewayError {
  const detail = isRecord(error) ? error : {};
  const type = typeof detail.type === 'string' ? detail.type : 'api_error';
  const message = typeof detail.message === 'string' ? detail.message : 'The provider failed mid-stream.';
  return new GatewayError(entryOf(ERROR_STATUS, type) ?? 502, message, { type, code: type });
}

export function decodeMessagesEvent(event: SseEvent): Array<StreamItem<MessagesEvent>> {
  // Named an error, it is one: Anthropic's SDK goes by the name, whatever the data says (OpenAI's
  // shapes read as a chat stream reads them).
  if (event.event === 'error') {
    const found = eventObject(event.data);
    const foreign = found === null ? null : foreignError(found);
    return [{ kind: 'error', error: foreign !== null ? openAIStreamError(foreign) : messagesStreamError(found?.error) }];
  }
  const data = typedEvent(event.data);
  if (data instanceof GatewayError) return [{ kind: 'error', error: data }];
  if (data instanceof ForeignStreamError) return [{ kind: 'error', error: openAIStreamError(data.detail) }];
  if (data.type === 'error') return [{ kind: 'error', error: messagesStreamError(data.error) }];
  const item: StreamItem<MessagesEvent> = { kind: 'event', event: data as MessagesEvent, data: event.data };
  // message_stop is the last event: the stream's end as well.
  return data.type === 'message_stop' ? [item, { kind: 'end' }] : [item];
}

/**
 * Usage as Anthropic reports it: the input counts in `message_start`, the output count (running
 * total) in each `message_delta`, which newer API versions also repeat the input counts in.
 */
export function messagesStreamWatch(): StreamWatch<MessagesEvent> {
  let raw: Record<string, unknown> | null = null;
  let complete = false;
  let id: string | null = null;
  const merge = (usage: unknown): void => {
    if (!isRecord(usage)) return;
    raw ??= {};
    // Counts, and the split of cache writes by how long they are kept.
    for (const [field, value] of Object.entries(usage)) if (typeof value === 'number' || field === 'cache_creation') raw[field] = value;
  };
  return {
    see(event) {
      if (event.type === 'message_start' && isRecord(event.message)) {
        merge(event.message.usage);
        if (typeof event.message.id === 'string') id = event.message.id;
      }
      else if (event.type === 'message_delta') merge(event.usage);
      else if (event.type === 'message_stop') complete = true;
    },
    usage: (): Usage | null => messagesUsage(raw),
    rawUsage: () => raw,
    answerId: () => id,
    get complete() {
      return complete;
    },
  };
}
