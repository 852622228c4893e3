/**
 * What a Messages client sees of a stream: each event with its `event:` line (the SDKs dispatch
 * on it), nothing more at the end (`message_stop` was the last event), and a failure as an
 * `error` event in Anthropic's shape.
 */
import type { StreamOutput } from '../api.js';
import { sseFrame } from '../sse.js';
import { messagesErrorBody } from './errors.js';
import type { MessagesEvent } from './types.js';

export const messagesStreamOutput: StreamOutput<MessagesEvent> = {
  frame(item) {
    if (item.kind === 'end') return '';
    if (item.kind === 'error') return sseFrame(JSON.stringify(messagesErrorBody(item.error)), 'error');
    return sseFrame(item.data ?? JSON.stringify(item.event), item.event.type);
  },
};
