/**
 * Chat Completions chunks → Messages stream events. One translator per stream (it keeps the open
 * content block, the tool-call numbering, the finish and the usage); otherwise pure.
 *
 * `message_start` goes out with the first chunk, its usage an estimate of the prompt (the
 * provider says the real count only at the end, and clients have broken on zeros). Each run of
 * reasoning, text, or one tool call's arguments is a content block, kept in order by
 * StreamBlocks; `message_delta` (stop_reason, the provider's usage) and `message_stop` follow the
 * provider's end, after its usage chunk.
 */
import { choiceZero, contentText, isAnswerChunk, reasoningText } from '../chat/answer.js';
import { NamedToolCalls } from '../chat/tool-calls.js';
import type { ChatCompletionChunk } from '../chat/types.js';
import { isRecord } from '../json.js';
import type { StreamItem, StreamTranslator } from '../stream.js';
import type { AnswerHints } from '../translation.js';
import { messageId, stopReason, toMessagesUsage } from './response-from-chat.js';
import { StreamBlocks, type Block } from './stream-blocks.js';
import type { MessagesEvent } from './types.js';

type Item = StreamItem<MessagesEvent>;

export function chatStreamToMessages(hints: AnswerHints): StreamTranslator<ChatCompletionChunk, MessagesEvent> {
  let started = false;
  const blocks = new StreamBlocks();
  /** Each tool call's block, started once its tool's name is known (a late fragment still finds its own). */
  const toolCalls = new NamedToolCalls<Block, Item[]>(
    {
      open: (id, name, held, out) => {
        const block = blocks.tool(id, name, out);
        blocks.letGo(held.length);
        if (held !== '') blocks.toolInput(block, held, out);
        return block;
      },
      hold: (chars) => blocks.reserve(chars),
    },
    (n) => `call_${hints.answerId}_${n}`,
  );
  /** Content deltas sent: the output estimate when the provider reports no usage. */
  let deltas = 0;
  let finish: unknown = null;
  let refused = false;
  let usage: unknown = null;

  const event = (data: MessagesEvent): Item => ({ kind: 'event', event: data });

  const start = (chunk: Record<string, unknown>, out: Item[]): void => {
    if (started) return;
    started = true;
    const message = {
      id: messageId(hints),
      type: 'message',
      role: 'assistant',
      model: typeof chunk.model === 'string' ? chunk.model : '',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: Math.max(1, hints.promptTokens), cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 },
    };
    out.push(event({ type: 'message_start', message }));
  };

  const text = (kind: 'thinking' | 'text', value: string, out: Item[]): void => {
    if (value === '') return;
    // A call named and waiting for its arguments comes before what follows it.
    toolCalls.openNamed(out);
    deltas++;
    blocks.text(kind, value, out);
  };

  /** One tool_calls fragment: a call's block starts once its name is known, its arguments are input_json_deltas. */
  const toolFragment = (fragment: unknown, out: Item[]): void => {
    const placed = toolCalls.place(fragment, out);
    if (placed === null || placed.arguments === '') return;
    deltas++;
    if (placed.opened !== null) blocks.toolInput(placed.opened, placed.arguments, out);
  };

  const translate = (chunk: ChatCompletionChunk): Item[] => {
    const out: Item[] = [];
    if (isAnswerChunk(chunk)) start(chunk, out);
    if (isRecord(chunk.usage)) usage = chunk.usage;
    const choice = choiceZero(chunk.choices);
    if (!isRecord(choice)) return out;
    const delta = isRecord(choice.delta) ? choice.delta : {};
    const reasoning = reasoningText(delta);
    if (reasoning !== null) text('thinking', reasoning, out);
    const content = contentText(delta.content);
    if (content !== null) text('text', content, out);
    if (typeof delta.refusal === 'string' && delta.refusal !== '') {
      refused = true;
      text('text', delta.refusal, out);
    }
    if (Array.isArray(delta.tool_calls)) for (const fragment of delta.tool_calls) toolFragment(fragment, out);
    if (typeof choice.finish_reason === 'string') finish = choice.finish_reason;
    return out;
  };

  const end = (): Item[] => {
    const out: Item[] = [];
    start({}, out);
    toolCalls.finish(out);
    blocks.finish(out);
    const delta = { stop_reason: refused ? 'refusal' : stopReason(finish, toolCalls.count > 0), stop_sequence: null };
    // No usage from the provider: the output is estimated and the input left as message_start
    // said (a client keeps what message_delta does not name), never zeros.
    const counts = usage === null ? { output_tokens: Math.max(1, deltas) } : toMessagesUsage(usage);
    out.push(event({ type: 'message_delta', delta, usage: counts }), event({ type: 'message_stop' }), { kind: 'end' });
    return out;
  };

  return (item) => {
    if (item.kind === 'event') return translate(item.event);
    if (item.kind === 'end') return end();
    return [item];
  };
}
