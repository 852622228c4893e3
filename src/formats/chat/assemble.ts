/**
 * Stream chunks → the equivalent `chat.completion`, so a streamed interaction is logged like a
 * non-streamed one: full content, reasoning, tool calls with complete arguments, finish_reason,
 * usage. Chunks come from upstreams, so every field is checked before it is used.
 */
import type { Assembler } from '../api.js';
import { isRecord } from '../json.js';
import { StreamedToolCalls } from './tool-calls.js';
import { contentText } from './answer.js';
import type { AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatUsage, ToolCall } from './types.js';

interface ChoiceState {
  content: string;
  hasContent: boolean;
  reasoning: string;
  hasReasoning: boolean;
  /** `reasoning`, where the server names it so. */
  reasoningAs: string | null;
  refusal: string | null;
  /** Which call each fragment belongs to, as the translators place them (Ollama numbers every call 0); made at the first. */
  placer: StreamedToolCalls<ToolCall> | null;
  /** The calls in the order they began. */
  toolCalls: ToolCall[];
  finishReason: string | null;
}

export class CompletionAssembler implements Assembler<ChatCompletionChunk, ChatCompletion> {
  private id = '';
  private created = 0;
  private model = '';
  private systemFingerprint: string | null | undefined;
  private usage: ChatUsage | null = null;
  private readonly choices = new Map<number, ChoiceState>();

  /** A chunk as the provider sent it: every field is checked before it is used. */
  add(chunk: ChatCompletionChunk | Record<string, unknown>): void {
    if (!isRecord(chunk)) return;
    if (this.id === '' && typeof chunk.id === 'string') this.id = chunk.id;
    if (this.created === 0 && typeof chunk.created === 'number') this.created = chunk.created;
    if (this.model === '' && typeof chunk.model === 'string') this.model = chunk.model;
    if (typeof chunk.system_fingerprint === 'string') this.systemFingerprint = chunk.system_fingerprint;
    if (isRecord(chunk.usage)) this.usage = chunk.usage as ChatUsage;
    if (!Array.isArray(chunk.choices)) return;
    for (const choice of chunk.choices) {
      if (!isRecord(choice)) continue;
      const index = typeof choice.index === 'number' ? choice.index : 0;
      const state = this.choice(index);
      if (typeof choice.finish_reason === 'string') state.finishReason = choice.finish_reason;
      const delta = choice.delta;
      if (!isRecord(delta)) continue;
      const text = contentText(delta.content);
      if (text !== null) {
        state.content += text;
        state.hasContent = true;
      }
      if (typeof delta.reasoning_content === 'string') {
        state.reasoning += delta.reasoning_content;
        state.hasReasoning = true;
      }
      // OpenRouter's and newer vLLM's name for it, logged as they sent it.
      if (typeof delta.reasoning === 'string') state.reasoningAs = (state.reasoningAs ?? '') + delta.reasoning;
      if (typeof delta.refusal === 'string') state.refusal = (state.refusal ?? '') + delta.refusal;
      if (Array.isArray(delta.tool_calls)) this.addToolCalls(state, delta.tool_calls);
    }
  }

  private choice(index: number): ChoiceState {
    let state = this.choices.get(index);
    if (state === undefined) {
      state = {
        content: '',
        hasContent: false,
        reasoning: '',
        hasReasoning: false,
        reasoningAs: null,
        refusal: null,
        placer: null,
        toolCalls: [],
        finishReason: null,
      };
      this.choices.set(index, state);
    }
    return state;
  }

  private addToolCalls(state: ChoiceState, deltas: unknown[]): void {
    const start = (id: string, name: string): ToolCall => {
      const call: ToolCall = { id, type: 'function', function: { name, arguments: '' } };
      state.toolCalls.push(call);
      return call;
    };
    for (const delta of deltas) {
      const placed = (state.placer ??= new StreamedToolCalls()).place(delta, start, () => '');
      if (placed === null) continue;
      const fn = placed.call.function;
      if (placed.lateId !== null && placed.call.id === '') placed.call.id = placed.lateId;
      fn.name = placed.callName;
      fn.arguments += placed.arguments;
    }
  }

  result(): ChatCompletion {
    const indexes = [...this.choices.keys()].sort((a, b) => a - b);
    const completion: ChatCompletion = {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.model,
      choices: indexes.map((index) => {
        const state = this.choices.get(index) as ChoiceState;
        const message: AssistantMessage = {
          role: 'assistant',
          content: state.hasContent ? state.content : null,
        };
        if (state.hasReasoning) message.reasoning_content = state.reasoning;
        if (state.reasoningAs !== null) message.reasoning = state.reasoningAs;
        if (state.refusal !== null) message.refusal = state.refusal;
        if (state.toolCalls.length > 0) message.tool_calls = state.toolCalls;
        return { index, message, finish_reason: state.finishReason };
      }),
      usage: this.usage,
    };
    if (this.systemFingerprint !== undefined) completion.system_fingerprint = this.systemFingerprint;
    return completion;
  }
}
