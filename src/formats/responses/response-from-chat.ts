/**
 * Chat Completions answer → Responses `response` object, and the pieces the stream translator
 * shares: ids, the response's echo of its request, output items for tool calls (a namespaced
 * function or a custom tool comes back under its own name), status and usage. Pure functions.
 */
import { contentText, firstChoice, reasoningText } from '../chat/answer.js';
import { chatUsage } from '../chat/usage.js';
import type { ChatCompletion } from '../chat/types.js';
import { isRecord } from '../json.js';
import type { Usage } from '../usage.js';
import type { ToolName } from './request-to-chat.js';
import type { OutputItem, ResponseObject, ResponsesRequest } from './types.js';
import { toResponsesUsage } from './usage.js';
import type { AnswerHints } from '../translation.js';
import { parseProviderJson } from '../json-limits.js';

/** What an answer needs of its request. */
export interface AnswerContext {
  readonly request: ResponsesRequest;
  /** Chat function name → the client's tool. */
  readonly tools: ReadonlyMap<string, ToolName>;
}

/** The response before its output: status in progress, the request's settings echoed as OpenAI does. */
export function responseShell(context: AnswerContext, base: string, model: string, createdAt: number): ResponseObject {
  const request = context.request;
  const reasoning = isRecord(request.reasoning) ? request.reasoning : {};
  return {
    id: `resp_${base}`,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    background: false,
    error: null,
    incomplete_details: null,
    instructions: typeof request.instructions === 'string' ? request.instructions : null,
    max_output_tokens: typeof request.max_output_tokens === 'number' ? request.max_output_tokens : null,
    model,
    output: [],
    parallel_tool_calls: request.parallel_tool_calls !== false,
    previous_response_id: null,
    reasoning: { effort: reasoning.effort ?? null, summary: reasoning.summary ?? null },
    // Nothing is stored: the translation is stateless.
    store: false,
    temperature: typeof request.temperature === 'number' ? request.temperature : null,
    text: isRecord(request.text) ? request.text : { format: { type: 'text' } },
    tool_choice: request.tool_choice ?? 'auto',
    tools: Array.isArray(request.tools) ? request.tools : [],
    top_p: typeof request.top_p === 'number' ? request.top_p : null,
    truncation: 'disabled',
    usage: null,
    metadata: isRecord(request.metadata) ? request.metadata : {},
  };
}

/**
 * A chat tool call → a `function_call` item, a `custom_tool_call` for a custom tool (its input
 * unwrapped), or a `tool_search_call` for the client-run tool search (its arguments an object).
 */
export function callItem(context: AnswerContext, base: string, index: number, callId: string, name: string, args: string, status: string): OutputItem {
  const tool = context.tools.get(name);
  if (tool?.search === true) return { type: 'tool_search_call', id: `tsc_${base}_${index}`, status, call_id: callId, execution: 'client', arguments: searchArguments(args, status) };
  // A finished call without arguments has "{}", as OpenAI writes it: clients JSON.parse them, and "" is no JSON.
  const item: OutputItem =
    tool?.custom === true
      ? { type: 'custom_tool_call', id: `ctc_${base}_${index}`, status, call_id: callId, name: tool.name, input: customInput(args) }
      : { type: 'function_call', id: `fc_${base}_${index}`, status, arguments: args === '' && status !== 'in_progress' ? '{}' : args, call_id: callId, name: tool?.name ?? name };
  // Codex runs a namespaced tool's call only under its namespace (its code mode's `exec` is a custom tool in one).
  if (tool?.namespace !== undefined) item.namespace = tool.namespace;
  return item;
}

/**
 * A tool search's arguments as the object Codex reads (`{query: string, limit?: positive integer}`:
 * anything else fails its search): text that is no JSON object is the query (a JSON string, its
 * text), a `limit` that is no positive integer is rounded or left out. A call the stream cut before
 * its arguments were whole has none.
 */
export function searchArguments(args: string, status: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = parseProviderJson(args);
  } catch {
    // Not JSON: cut short, or a model that wrote the query bare.
    return status === 'completed' && args !== '' ? { query: args } : {};
  }
  if (typeof parsed === 'string') return { query: parsed };
  if (!isRecord(parsed)) return { query: args };
  const { limit: given, ...rest } = parsed;
  if (rest.query !== undefined && typeof rest.query !== 'string') rest.query = typeof rest.query === 'object' ? JSON.stringify(rest.query) : String(rest.query);
  const limit = Math.round(typeof given === 'string' ? Number(given) : typeof given === 'number' ? given : Number.NaN);
  return Number.isSafeInteger(limit) && limit >= 1 ? { ...rest, limit: Math.min(limit, MAX_SEARCH_LIMIT) } : rest;
}

/** The most tools a search is asked for (Codex reads `limit` as an unsigned integer; its own default is 8). */
const MAX_SEARCH_LIMIT = 100;

/** A custom tool's input from its function's arguments (`{"input": "…"}`); arguments that are not that are the input. */
export function customInput(args: string): string {
  return wrappedInput(args) ?? args;
}

/** The input in arguments that are the `{"input": "…"}` a custom tool's function asks for; null for any other text. */
function wrappedInput(args: string): string | null {
  try {
    const parsed: unknown = parseProviderJson(args);
    if (isRecord(parsed) && typeof parsed.input === 'string') return parsed.input;
  } catch {
    // not JSON: a model that wrote the input bare
  }
  return null;
}

export function reasoningItem(base: string, index: number, text: string): OutputItem {
  return { type: 'reasoning', id: `rs_${base}_${index}`, summary: [{ type: 'summary_text', text }] };
}

export function messageItem(base: string, index: number, text: string, refusal: boolean, status: string): OutputItem {
  const part = refusal ? { type: 'refusal', refusal: text } : { type: 'output_text', text, annotations: [], logprobs: [] };
  return { type: 'message', id: `msg_${base}_${index}`, status, role: 'assistant', content: [part] };
}

/** A finish reason → the response's status: a length limit or a filter leaves it incomplete. */
function finishStatus(finish: unknown): Pick<ResponseObject, 'status' | 'incomplete_details'> {
  if (finish === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

/** An item's status: cut by the length limit, the last items are incomplete, as OpenAI marks them. */
export function itemStatus(finish: unknown): string {
  return finish === 'length' ? 'incomplete' : 'completed';
}

/** The text of every output_text part, joined (the SDK's `output_text`). */
function outputText(output: readonly OutputItem[]): string {
  let text = '';
  for (const item of output) {
    if (item.type !== 'message' || !Array.isArray(item.content)) continue;
    for (const part of item.content as unknown[]) if (isRecord(part) && part.type === 'output_text' && typeof part.text === 'string') text += part.text;
  }
  return text;
}

/** The finished response: its output, status and usage (null when the provider reported none). */
export function finishedResponse(shell: ResponseObject, output: OutputItem[], finish: unknown, usage: Usage | null): ResponseObject {
  return { ...shell, ...finishStatus(finish), output, output_text: outputText(output), usage: usage === null ? null : toResponsesUsage(usage) };
}

/** A tool call's arguments as the JSON text Responses carries: as sent, or an object some OpenAI-compatible servers send, written. */
function argumentsText(args: unknown): string {
  if (typeof args === 'string') return args;
  return isRecord(args) ? JSON.stringify(args) : '';
}

/**
 * A completion (checked by `parseCompletion`) → the equivalent response. Without the provider's
 * usage, its counts are estimates (the prompt's from `hints`, the output's ~4 characters per
 * token), as a stream's are: a client reads no usage as no tokens.
 */
export function toResponse(completion: ChatCompletion, context: AnswerContext, hints: AnswerHints): ResponseObject {
  // The gateway's request id, not the provider's (messages/response-from-chat.ts messageId says why).
  const base = hints.answerId;
  const { choice, message } = firstChoice(completion);
  const output: OutputItem[] = [];
  const status = itemStatus(choice.finish_reason);
  const reasoning = reasoningText(message);
  if (reasoning !== null && reasoning !== '') output.push(reasoningItem(base, output.length, reasoning));
  const text = contentText(message.content);
  if (text !== null && text !== '') output.push(messageItem(base, output.length, text, false, status));
  if (typeof message.refusal === 'string' && message.refusal !== '') output.push(messageItem(base, output.length, message.refusal, true, status));
  const calls: unknown[] = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  calls.forEach((call, index) => {
    if (!isRecord(call)) return;
    const fn = isRecord(call.function) ? call.function : {};
    const callId = typeof call.id === 'string' && call.id !== '' ? call.id : `call_${base}_${index}`;
    output.push(callItem(context, base, output.length, callId, typeof fn.name === 'string' ? fn.name : '', argumentsText(fn.arguments), status));
  });
  const model = typeof completion.model === 'string' ? completion.model : context.request.model;
  const created = typeof completion.created === 'number' ? completion.created : 0;
  const reported = chatUsage(completion.usage);
  const said = (reasoning ?? '').length + (text ?? '').length + (typeof message.refusal === 'string' ? message.refusal.length : 0) + calls.reduce<number>((sum, call) => sum + (isRecord(call) && isRecord(call.function) ? argumentsText(call.function.arguments).length : 0), 0);
  const usage = reported ?? { input: Math.max(1, hints.promptTokens), output: Math.max(1, Math.ceil(said / 4)), cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 };
  return finishedResponse(responseShell(context, base, model, created), output, choice.finish_reason, usage);
}
