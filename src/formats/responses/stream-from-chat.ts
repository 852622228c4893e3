/**
 * Chat Completions chunks → Responses stream events, each with its `sequence_number`. One
 * translator per stream (it keeps the open output item, the tool-call numbering, the finish and
 * the usage); otherwise pure.
 *
 * `response.created` and `response.in_progress` go out with the first chunk. Each run of
 * reasoning (a `reasoning` item with a summary), text or refusal (a `message` item), or one tool
 * call (a `function_call`, or a `custom_tool_call` whose input is sent whole when it is done:
 * it arrives JSON-encoded) is an output item: added, its deltas, its `.done` events, then
 * `response.output_item.done` with the complete item. After the provider's end comes
 * `response.completed` (or `response.incomplete` at a length limit) with every item and the
 * usage: the provider's, or an estimate when it sent none (Codex needs one).
 */
import { StreamedToolCalls } from '../chat/tool-calls.js';
import type { ChatCompletionChunk } from '../chat/types.js';
import { chatUsage } from '../chat/usage.js';
import { isRecord } from '../json.js';
import type { StreamItem, StreamTranslator } from '../stream.js';
import type { StreamHints } from '../translation.js';
import type { Usage } from '../usage.js';
import { callItem, customInput, finishedResponse, idBase, itemStatus, messageItem, reasoningItem, responseShell, type AnswerContext } from './response-from-chat.js';
import type { OutputItem, ResponseObject, ResponsesEvent } from './types.js';

type Item = StreamItem<ResponsesEvent>;

interface OpenItem {
  readonly kind: 'reasoning' | 'text' | 'refusal' | 'call';
  /** Its output_index. */
  readonly index: number;
  readonly id: string;
  text: string;
  /** For a call: its call id, chat function name, and whether it is a custom tool's. */
  readonly callId?: string;
  name?: string;
  readonly custom?: boolean;
}

export function chatStreamToResponses(context: AnswerContext, hints: StreamHints): StreamTranslator<ChatCompletionChunk, ResponsesEvent> {
  let sequence = 0;
  let shell: ResponseObject | null = null;
  let base = 'gateway';
  const output: OutputItem[] = [];
  let open: OpenItem | null = null;
  /** Each tool call's item (a late fragment still finds its own). */
  const toolCalls = new StreamedToolCalls<OpenItem>();
  let deltas = 0;
  let finish: unknown = null;
  let usage: unknown = null;

  const emit = (out: Item[], type: string, fields: Record<string, unknown>): void => {
    out.push({ kind: 'event', event: { type, sequence_number: sequence++, ...fields } });
  };

  const start = (chunk: Record<string, unknown>, out: Item[]): void => {
    if (shell !== null) return;
    base = idBase(chunk.id);
    const model = typeof chunk.model === 'string' && chunk.model !== '' ? chunk.model : context.request.model;
    shell = responseShell(context, base, model, typeof chunk.created === 'number' ? chunk.created : 0);
    emit(out, 'response.created', { response: shell });
    emit(out, 'response.in_progress', { response: shell });
  };

  /** An item as done; the one open when the provider stopped at its length limit is incomplete. */
  const finished = (item: OpenItem): OutputItem => {
    const status = open === item ? itemStatus(finish) : 'completed';
    if (item.kind === 'reasoning') return reasoningItem(base, item.index, item.text);
    if (item.kind === 'call') return callItem(context, base, item.index, item.callId as string, item.name ?? '', item.text, status);
    return messageItem(base, item.index, item.text, item.kind === 'refusal', status);
  };

  const close = (out: Item[]): void => {
    const item = open;
    if (item === null) return;
    const done = finished(item);
    open = null;
    const at = { item_id: item.id, output_index: item.index };
    if (item.kind === 'reasoning') {
      emit(out, 'response.reasoning_summary_text.done', { ...at, summary_index: 0, text: item.text });
      emit(out, 'response.reasoning_summary_part.done', { ...at, summary_index: 0, part: { type: 'summary_text', text: item.text } });
    } else if (item.kind === 'call') {
      if (item.custom === true) {
        const input = customInput(item.text);
        if (input !== '') emit(out, 'response.custom_tool_call_input.delta', { ...at, delta: input });
        emit(out, 'response.custom_tool_call_input.done', { ...at, input });
      } else {
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

  const begin = (out: Item[], kind: OpenItem['kind'], call?: { callId: string; name: string; custom: boolean }): OpenItem => {
    close(out);
    const index = output.length;
    let added: OutputItem;
    if (kind === 'call' && call !== undefined) added = callItem(context, base, index, call.callId, call.name, '', 'in_progress');
    else if (kind === 'reasoning') added = { ...reasoningItem(base, index, ''), summary: [] };
    else added = { ...messageItem(base, index, '', false, 'in_progress'), content: [] };
    if (added.type === 'custom_tool_call') added.input = '';
    const item: OpenItem = { kind, index, id: added.id as string, text: '', ...call };
    output.push(added);
    open = item;
    emit(out, 'response.output_item.added', { output_index: index, item: added });
    const at = { item_id: item.id, output_index: index };
    if (kind === 'reasoning') emit(out, 'response.reasoning_summary_part.added', { ...at, summary_index: 0, part: { type: 'summary_text', text: '' } });
    else if (kind === 'text') emit(out, 'response.content_part.added', { ...at, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    else if (kind === 'refusal') emit(out, 'response.content_part.added', { ...at, content_index: 0, part: { type: 'refusal', refusal: '' } });
    return item;
  };

  const text = (out: Item[], kind: 'reasoning' | 'text' | 'refusal', value: string): void => {
    if (value === '') return;
    const current = open as OpenItem | null;
    const item = current !== null && current.kind === kind ? current : begin(out, kind);
    item.text += value;
    deltas++;
    // The most frequent event of all: built as one literal, no spreading.
    const event: ResponsesEvent =
      kind === 'text'
        ? { type: 'response.output_text.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, content_index: 0, delta: value, logprobs: [] }
        : kind === 'reasoning'
          ? { type: 'response.reasoning_summary_text.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, summary_index: 0, delta: value }
          : { type: 'response.refusal.delta', sequence_number: sequence++, item_id: item.id, output_index: item.index, content_index: 0, delta: value };
    out.push({ kind: 'event', event });
  };

  /** One tool_calls fragment: a call's first starts its item, its arguments are deltas (a custom tool's input is sent whole when done). */
  const toolFragment = (out: Item[], fragment: unknown): void => {
    const start = (callId: string, name: string): OpenItem => begin(out, 'call', { callId, name, custom: context.tools.get(name)?.custom === true });
    const placed = toolCalls.place(fragment, start, (n) => `call_${base}_${n}`);
    if (placed === null) return;
    const call = placed.call;
    if (!placed.started && (call.name ?? '') === '' && placed.name !== null) call.name = placed.name;
    if (placed.arguments === '') return;
    call.text += placed.arguments;
    deltas++;
    if (call === open && call.custom !== true) emit(out, 'response.function_call_arguments.delta', { item_id: call.id, output_index: call.index, delta: placed.arguments });
    // A fragment of a call already done changes only the final response's item.
    else if (call !== open) output[call.index] = finished(call);
  };

  const translate = (chunk: ChatCompletionChunk): Item[] => {
    const out: Item[] = [];
    start(chunk, out);
    if (isRecord(chunk.usage)) usage = chunk.usage;
    const choice: unknown = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
    if (!isRecord(choice)) return out;
    const delta = isRecord(choice.delta) ? choice.delta : {};
    if (typeof delta.reasoning_content === 'string') text(out, 'reasoning', delta.reasoning_content);
    if (typeof delta.content === 'string') text(out, 'text', delta.content);
    if (typeof delta.refusal === 'string') text(out, 'refusal', delta.refusal);
    if (Array.isArray(delta.tool_calls)) for (const fragment of delta.tool_calls) toolFragment(out, fragment);
    if (typeof choice.finish_reason === 'string') finish = choice.finish_reason;
    return out;
  };

  const end = (): Item[] => {
    const out: Item[] = [];
    start({}, out);
    close(out);
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
