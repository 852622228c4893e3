/**
 * Chat Completions chunks → Responses stream events, each with its `sequence_number`. One
 * translator per stream (it keeps the open output item, the tool-call numbering, the finish and
 * the usage); otherwise pure.
 *
 * `response.created` and `response.in_progress` go out with the first chunk. Each run of
 * reasoning (a `reasoning` item with a summary), text or refusal (a `message` item), or one tool
 * call (a `function_call`, or a `custom_tool_call` whose input is sent whole when it is done:
 * it arrives JSON-encoded) is an output item: added, its deltas, its `.done` events, then
 * `response.output_item.done` with the complete item. Items go out one at a time, in order
 * (OneAtATime): a call's stays open until its arguments are whole, even when the server starts
 * the next call first, so its `.done` events carry them exact. After the provider's end comes
 * `response.completed` (or `response.incomplete` at a length limit) with every item and the
 * usage: the provider's, or an estimate when it sent none (Codex needs one).
 */
import { choiceZero, contentText, isAnswerChunk, reasoningText } from '../chat/answer.js';
import { OneAtATime, type Sequenced } from '../chat/one-at-a-time.js';
import { ArgumentsEnd, NamedToolCalls } from '../chat/tool-calls.js';
import type { ChatCompletionChunk } from '../chat/types.js';
import { chatUsage } from '../chat/usage.js';
import { isRecord } from '../json.js';
import type { StreamItem, StreamTranslator } from '../stream.js';
import type { AnswerHints } from '../translation.js';
import type { Usage } from '../usage.js';
import { callItem, customInput, finishedResponse, itemStatus, messageItem, reasoningItem, responseShell, type AnswerContext } from './response-from-chat.js';
import type { OutputItem, ResponseObject, ResponsesEvent } from './types.js';
import type { ToolName } from './request-to-chat.js';

type Item = StreamItem<ResponsesEvent>;

interface OpenItem extends Sequenced {
  readonly kind: 'reasoning' | 'text' | 'refusal' | 'call';
  /** Its output_index. */
  readonly index: number;
  /** Its item id, once added. */
  id: string;
  /** For a call: its call id, chat function name, and the client's tool it names (if any). */
  readonly callId?: string;
  name?: string;
  readonly tool?: ToolName;
  /** For a call: where its arguments end. */
  readonly end?: ArgumentsEnd;
}

/**
 * A call whose arguments stream as `function_call_arguments` deltas: not a custom tool's (its input
 * goes whole when done), nor a search's (an object, whole in its item: Codex reads the item alone).
 */
function streamsArguments(item: OpenItem): boolean {
  return item.tool?.custom !== true && item.tool?.search !== true;
}

export function chatStreamToResponses(context: AnswerContext, hints: AnswerHints): StreamTranslator<ChatCompletionChunk, ResponsesEvent> {
  let sequence = 0;
  let shell: ResponseObject | null = null;
  // The gateway's request id, not the provider's (messages/response-from-chat.ts messageId says why).
  const base = hints.answerId;
  const output: OutputItem[] = [];
  /** The provider's stream ended: the items stopped now are the ones its finish cut. */
  let ended = false;
  /** Items added so far: the next one's output_index. */
  let count = 0;
  let deltas = 0;
  let finish: unknown = null;
  let usage: unknown = null;

  const emit = (out: Item[], type: string, fields: Record<string, unknown>): void => {
    out.push({ kind: 'event', event: { type, sequence_number: sequence++, ...fields } });
  };

  const start = (chunk: Record<string, unknown>, out: Item[]): void => {
    if (shell !== null) return;
    const model = typeof chunk.model === 'string' && chunk.model !== '' ? chunk.model : context.request.model;
    shell = responseShell(context, base, model, typeof chunk.created === 'number' ? chunk.created : 0);
    emit(out, 'response.created', { response: shell });
    emit(out, 'response.in_progress', { response: shell });
  };

  /** An item as done; one still open when the provider stopped at its length limit is incomplete. */
  const finished = (item: OpenItem): OutputItem => {
    const status = ended ? itemStatus(finish) : 'completed';
    if (item.kind === 'reasoning') return reasoningItem(base, item.index, item.text);
    if (item.kind === 'call') return callItem(context, base, item.index, item.callId as string, item.name ?? '', item.text, status);
    return messageItem(base, item.index, item.text, item.kind === 'refusal', status);
  };

  /** An item's turn: `output_item.added`, and the empty part its deltas fill. */
  const open = (item: OpenItem, out: Item[]): void => {
    const index = item.index;
    let added: OutputItem;
    if (item.kind === 'call') added = callItem(context, base, index, item.callId as string, item.name ?? '', '', 'in_progress');
    else if (item.kind === 'reasoning') added = { ...reasoningItem(base, index, ''), summary: [] };
    else added = { ...messageItem(base, index, '', false, 'in_progress'), content: [] };
    if (added.type === 'custom_tool_call') added.input = '';
    item.id = added.id as string;
    emit(out, 'response.output_item.added', { output_index: index, item: added });
    const at = { item_id: item.id, output_index: index };
    if (item.kind === 'reasoning') emit(out, 'response.reasoning_summary_part.added', { ...at, summary_index: 0, part: { type: 'summary_text', text: '' } });
    else if (item.kind === 'text') emit(out, 'response.content_part.added', { ...at, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    else if (item.kind === 'refusal') emit(out, 'response.content_part.added', { ...at, content_index: 0, part: { type: 'refusal', refusal: '' } });
  };

  const delta = (item: OpenItem, value: string, out: Item[]): void => {
    if (item.kind === 'call') {
      if (streamsArguments(item)) emit(out, 'response.function_call_arguments.delta', { item_id: item.id, output_index: item.index, delta: value });
      return;
    }
    // The most frequent event of all: built as one literal, no spreading.
    const event: ResponsesEvent =
      item.kind === 'text'
        ? { type: 'response.output_text.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, content_index: 0, delta: value, logprobs: [] }
        : item.kind === 'reasoning'
          ? { type: 'response.reasoning_summary_text.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, summary_index: 0, delta: value }
          : { type: 'response.refusal.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, content_index: 0, delta: value };
    out.push({ kind: 'event', event });
  };

  const close = (item: OpenItem, out: Item[]): void => {
    // A custom tool's input, or a search's arguments, stays as it came.
    if (item.kind === 'call' && item.text === '' && streamsArguments(item)) {
      // No arguments came: "{}", as OpenAI streams it (clients JSON.parse what the deltas make).
      item.text = '{}';
      emit(out, 'response.function_call_arguments.delta', { item_id: item.id, output_index: item.index, delta: item.text });
    }
    const done = finished(item);
    const at = { item_id: item.id, output_index: item.index };
    if (item.kind === 'reasoning') {
      emit(out, 'response.reasoning_summary_text.done', { ...at, summary_index: 0, text: item.text });
      emit(out, 'response.reasoning_summary_part.done', { ...at, summary_index: 0, part: { type: 'summary_text', text: item.text } });
    } else if (item.kind === 'call') {
      if (item.tool?.custom === true) {
        const input = customInput(item.text);
        if (input !== '') emit(out, 'response.custom_tool_call_input.delta', { ...at, delta: input });
        emit(out, 'response.custom_tool_call_input.done', { ...at, input });
      } else if (streamsArguments(item)) {
        emit(out, 'response.function_call_arguments.done', { ...at, arguments: item.text });
      }
    } else {
      const part = (done.content as unknown[])[0];
      if (item.kind === 'text') emit(out, 'response.output_text.done', { ...at, content_index: 0, text: item.text, logprobs: [] });
      else emit(out, 'response.refusal.done', { ...at, content_index: 0, refusal: item.text });
      emit(out, 'response.content_part.done', { ...at, content_index: 0, part });
    }
    output[item.index] = done;
    emit(out, 'response.output_item.done', { output_index: item.index, item: done });
  };

  /**
   * Nothing more can come for an item: a call's arguments are a whole JSON object; a custom tool's,
   * the `{"input": "…"}` its function asks for (its input is free text: one a model wrote bare may
   * go on until the stream ends).
   */
  const whole = (item: OpenItem): boolean => {
    if (item.end === undefined) return true;
    const args = item.end.whole(item.text);
    return args !== null && (item.tool?.custom !== true || typeof args.input === 'string');
  };

  // Every item's last events (output_text.done, output_item.done, response.completed) repeat its whole text.
  const items = new OneAtATime<OpenItem, ResponsesEvent>({ start: open, delta, stop: close, whole, keeps: () => true, retains: () => true });

  const begin = (out: Item[], kind: OpenItem['kind'], call?: { callId: string; name: string; tool: ToolName | undefined; end: ArgumentsEnd }): OpenItem => {
    const item: OpenItem = { kind, index: count++, id: '', text: '', state: 'waiting', ...call };
    items.add(item, out);
    return item;
  };

  const text = (out: Item[], kind: 'reasoning' | 'text' | 'refusal', value: string): void => {
    if (value === '') return;
    // A call named and waiting for its arguments comes before what follows it.
    toolCalls.openNamed(out);
    const last = items.last;
    const item = last !== null && last.kind === kind ? last : begin(out, kind);
    deltas++;
    items.content(item, value, out);
  };

  /**
   * Each tool call's item, added once its tool's name is known (its type, function_call or
   * custom_tool_call, depends on it; a late fragment still finds its own).
   */
  const toolCalls = new NamedToolCalls<OpenItem, Item[]>(
    {
      open: (callId, name, held, out) => {
        const item = begin(out, 'call', { callId, name, tool: context.tools.get(name), end: new ArgumentsEnd() });
        items.letGo(held.length);
        if (held !== '') {
          item.end?.feed(held);
          items.content(item, held, out);
        }
        return item;
      },
      hold: (chars) => items.reserve(chars),
    },
    (n) => `call_${base}_${n}`,
  );

  /** One tool_calls fragment: its arguments are deltas (a custom tool's input is sent whole when done). */
  const toolFragment = (out: Item[], fragment: unknown): void => {
    const placed = toolCalls.place(fragment, out);
    if (placed === null || placed.arguments === '') return;
    deltas++;
    const item = placed.opened;
    if (item === null) return;
    item.end?.feed(placed.arguments);
    items.content(item, placed.arguments, out);
  };

  const translate = (chunk: ChatCompletionChunk): Item[] => {
    const out: Item[] = [];
    if (isAnswerChunk(chunk)) start(chunk, out);
    if (isRecord(chunk.usage)) usage = chunk.usage;
    const choice = choiceZero(chunk.choices);
    if (!isRecord(choice)) return out;
    const delta = isRecord(choice.delta) ? choice.delta : {};
    const reasoning = reasoningText(delta);
    if (reasoning !== null) text(out, 'reasoning', reasoning);
    const content = contentText(delta.content);
    if (content !== null) text(out, 'text', content);
    if (typeof delta.refusal === 'string') text(out, 'refusal', delta.refusal);
    if (Array.isArray(delta.tool_calls)) for (const fragment of delta.tool_calls) toolFragment(out, fragment);
    if (typeof choice.finish_reason === 'string') finish = choice.finish_reason;
    return out;
  };

  const end = (): Item[] => {
    const out: Item[] = [];
    start({}, out);
    ended = true;
    toolCalls.finish(out);
    items.finish(out);
    // No usage from the provider: the prompt as estimated, one token per delta.
    const counted: Usage = chatUsage(usage) ?? { input: Math.max(1, hints.promptTokens), output: Math.max(1, deltas), cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 };
    const response = finishedResponse(shell as unknown as ResponseObject, output, finish, counted);
    emit(out, response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
    out.push({ kind: 'end' });
    return out;
  };

  return (item) => {
    if (item.kind === 'event') return translate(item.event);
    if (item.kind === 'end') return end();
    return [item];
  };
}
