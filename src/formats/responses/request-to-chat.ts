/**
 * OpenAI Responses request → Chat Completions request, for a provider that does not speak
 * Responses (DeepSeek, Anthropic through the hub, vLLM, Ollama, the mock). Stateless: the whole
 * conversation is in `input`. Pure: no I/O, no clock. What cannot be translated without changing
 * what the client gets is a 400 naming it; what has no meaning on the other side is dropped (and
 * hosted tools are named in the log). The README's Codex section lists the same tables.
 */
import { createHash } from 'node:crypto';
import { invalidRequest } from '../../errors.js';
import { chatUser, reasoningEffort } from '../chat/fields.js';
import type { ChatMessage, ChatRequest, ContentPart, ToolCall } from '../chat/types.js';
import { entryOf, isRecord, shown } from '../json.js';
import type { ResponsesRequest } from './types.js';

type Rule = { action: 'map'; to: string } | { action: 'drop'; why: string } | { action: 'refuse'; why: string };

const STATELESS = "it is stateless through this gateway: send the whole conversation in `input` (and `store: false`)";

/**
 * Every Responses parameter and what becomes of it. Parameters not listed are dropped: Codex and
 * the SDK add fields faster than any table, and a new one must not break every non-OpenAI key.
 */
export const RESPONSES_PARAMETERS: Readonly<Record<string, Rule>> = {
  model: { action: 'map', to: "model (after the key's model_map)" },
  input: { action: 'map', to: 'messages (see the input table)' },
  instructions: { action: 'map', to: 'a first system message' },
  tools: { action: 'map', to: 'function tools (see the tools table); hosted tools dropped and named in the log' },
  tool_choice: { action: 'map', to: 'tool_choice (a namespaced or custom tool by its function name; allowed_tools → its mode, the tools narrowed to those listed)' },
  parallel_tool_calls: { action: 'map', to: 'parallel_tool_calls (with tools)' },
  max_output_tokens: { action: 'map', to: 'max_completion_tokens (DeepSeek: max_tokens; Anthropic: max_tokens)' },
  temperature: { action: 'map', to: 'temperature' },
  top_p: { action: 'map', to: 'top_p' },
  reasoning: { action: 'map', to: "effort → reasoning_effort for OpenAI's reasoning models (o1, o3, o4, gpt-5), dropped for other chat models; Anthropic: thinking; summary dropped" },
  text: { action: 'map', to: 'format json_schema → response_format json_schema (Anthropic: output_config.format), json_object → json_object (Anthropic: 400); verbosity dropped' },
  user: { action: 'map', to: 'user (a digest when longer than 64 characters)' },
  safety_identifier: { action: 'map', to: 'user, when no user is given' },
  stream: { action: 'map', to: 'stream, with stream_options.include_usage' },
  store: { action: 'drop', why: 'nothing is stored: the translation is stateless' },
  include: { action: 'drop', why: 'encrypted reasoning and hosted-tool outputs are OpenAI\'s' },
  prompt_cache_key: { action: 'drop', why: "OpenAI's cache routing hint" },
  prompt_cache_retention: { action: 'drop', why: "OpenAI's cache retention" },
  client_metadata: { action: 'drop', why: "Codex's own tags" },
  metadata: { action: 'drop', why: "OpenAI's stored-response tags" },
  truncation: { action: 'drop', why: "OpenAI's server-side truncation" },
  service_tier: { action: 'drop', why: "OpenAI's tiers" },
  stream_options: { action: 'drop', why: 'obfuscation padding is OpenAI\'s' },
  top_logprobs: { action: 'drop', why: 'not translated' },
  context_management: { action: 'drop', why: "OpenAI's server-side compaction" },
  previous_response_id: { action: 'refuse', why: STATELESS },
  conversation: { action: 'refuse', why: STATELESS },
  background: { action: 'refuse', why: 'background responses are stored and polled; ' + STATELESS },
  prompt: { action: 'refuse', why: "stored prompt templates are OpenAI's" },
};

/** Tools only OpenAI runs or defines (hosted); left out for other providers, named in the log. */
const FUNCTION_TYPES = new Set(['function', 'namespace', 'custom']);

/** Input items a provider other than OpenAI cannot use: hosted-tool calls and their outputs, OpenAI's compaction. */
const HOSTED_ITEMS = new Set([
  'web_search_call', 'file_search_call', 'code_interpreter_call', 'image_generation_call', 'computer_call', 'computer_call_output',
  'mcp_call', 'mcp_list_tools', 'mcp_approval_request', 'mcp_approval_response', 'tool_search_call', 'tool_search_output', 'compaction',
]);

/**
 * OpenAI's tool types that the client runs (a shell, a patch), with shapes of OpenAI's own: left
 * out, the model would silently lose its shell and the commands' history, so their tools and
 * records are refused (a function tool of the client's own works on any provider).
 */
const CLIENT_RUN_TYPES = new Set(['local_shell', 'shell', 'apply_patch', 'local_shell_call', 'local_shell_call_output', 'shell_call', 'shell_call_output', 'apply_patch_call', 'apply_patch_call_output']);

function clientRun(where: string, type: string): never {
  throw invalidRequest(
    `Invalid '${where}': "${type}" is a tool type of OpenAI's Responses API that this key's provider does not have. Declare the tool as a function (or a custom tool) instead, or use a key whose provider is OpenAI.`,
    where,
    'unsupported_tool',
  );
}

/** A client's tool, by the function name it has in chat. */
export interface ToolName {
  readonly name: string;
  /** The namespace it was declared in (its calls carry it back). */
  readonly namespace?: string;
  /** A custom (free-form input) tool: its calls come back as `custom_tool_call`. */
  readonly custom: boolean;
  /** The client-run `tool_search` (Codex's search of its MCP tools): its calls come back as `tool_search_call`. */
  readonly search?: boolean;
}

export interface ToChatOptions {
  /**
   * The chat request goes on to a provider's own API, whose translation decides what an effort
   * means for its models (Anthropic: thinking): it keeps the client's effort whatever the model.
   */
  readonly effortForEveryModel: boolean;
}

export interface ChatTranslation {
  readonly request: ChatRequest;
  /** Chat function name → the client's tool (only those that differ or are custom are needed, all are kept). */
  readonly tools: ReadonlyMap<string, ToolName>;
  /** Hosted tools left out, for the log. */
  readonly dropped: readonly string[];
  /** Where each chat message came from in the client's request. */
  readonly sources: readonly MessageSource[];
}

/** The part of a Responses request a chat message was made from: `input[3]`, `instructions`, or `input` (a string). */
export interface MessageSource {
  readonly at: string;
  /** A message item, whose content parts keep their places in the chat message. */
  readonly message: boolean;
}

/**
 * The client's name for a parameter of the chat request made from its request, so that a refusal
 * further down the chain (Anthropic's rules) names what the client sent: `messages[3].content[1]`
 * → `input[2].content[1]`; `names` for the top-level parameters that were renamed. Null: the
 * same name.
 */
export function clientParamOf(param: string, sources: readonly MessageSource[], names: Readonly<Record<string, string>>): string | null {
  if (param === 'messages') return 'input';
  const indexed = /^messages\[(\d+)\](.*)$/.exec(param);
  if (indexed === null) return Object.hasOwn(names, param) ? (names[param] as string) : null;
  const source = sources[Number(indexed[1])];
  if (source === undefined) return 'input';
  const rest = indexed[2] as string;
  // Tool calls joined into one assistant turn, or a tool output's images, are named by their item.
  return source.message && rest.startsWith('.content') ? `${source.at}${rest}` : source.at;
}

/** The one property a custom tool's function takes: its free-form input. */
const CUSTOM_PARAMETERS = { type: 'object', properties: { input: { type: 'string', description: 'The free-form input.' } }, required: ['input'], additionalProperties: false };

function unsupported(param: string, why: string): never {
  throw invalidRequest(`${param}: not supported with this key's provider: ${why}.`, param, 'unsupported_parameter');
}

function invalid(param: string, message: string, code = 'invalid_type'): never {
  throw invalidRequest(`Invalid '${param}': ${message}`, param, code);
}

/** An item's call id: a non-empty string, or a 400 naming it. */
function callIdOf(item: Record<string, unknown>, where: string): string {
  if (typeof item.call_id !== 'string' || item.call_id === '') invalid(`${where}.call_id`, 'expected a non-empty string.', 'missing_required_parameter');
  return item.call_id;
}

/** OpenAI's (and DeepSeek's) longest function name. */
const MAX_FUNCTION_NAME = 64;

/**
 * A namespaced function's chat name: `namespace__name`, or, past 64 characters (an MCP server's
 * long name and its tool's: Codex sends them apart), its first 55 and a digest of the whole, so
 * that the tool and every call of it in the input get the same name.
 */
function flatName(namespace: string | undefined, name: string): string {
  if (namespace === undefined) return name;
  const joined = `${namespace}__${name}`;
  if (joined.length <= MAX_FUNCTION_NAME) return joined;
  return `${joined.slice(0, MAX_FUNCTION_NAME - 9)}_${createHash('sha256').update(joined).digest('hex').slice(0, 8)}`;
}

// ---- tools ---------------------------------------------------------------------------------

function customDescription(tool: Record<string, unknown>): string {
  const said = typeof tool.description === 'string' ? tool.description : '';
  const format = isRecord(tool.format) ? tool.format : {};
  let how = 'Put the whole free-form input in the "input" string.';
  if (format.type === 'grammar' && typeof format.definition === 'string') {
    how += ` It must follow this ${typeof format.syntax === 'string' ? format.syntax : ''} grammar:\n${format.definition}`;
  }
  return said === '' ? how : `${said}\n\n${how}`;
}

class ToolTable {
  readonly tools: Array<Record<string, unknown>> = [];
  readonly names = new Map<string, ToolName>();
  readonly dropped: string[] = [];
  /** Each function's description's first line, for a search's tool message. */
  private readonly summaries = new Map<string, string>();

  /**
   * Adds a tool (a namespace's functions each), returning the chat names it has. `loaded`: a tool
   * a client-run search loaded (tool_search_output).
   */
  add(tool: unknown, where: string, namespace?: string, loaded = false): string[] {
    if (!isRecord(tool)) invalid(where, 'expected an object.');
    if (typeof tool.type === 'string' && CLIENT_RUN_TYPES.has(tool.type)) clientRun(`${where}.type`, tool.type);
    if (tool.type === 'tool_search' && tool.execution === 'client' && namespace === undefined) {
      if (!loaded) this.addSearch(tool, where);
      return [];
    }
    if (!FUNCTION_TYPES.has(tool.type as string) || (namespace !== undefined && tool.type === 'namespace')) {
      this.dropped.push(typeof tool.type === 'string' ? tool.type : where);
      return [];
    }
    if (typeof tool.name !== 'string' || tool.name === '') invalid(`${where}.name`, 'expected a non-empty string.', 'missing_required_parameter');
    if (tool.type === 'namespace') {
      if (!Array.isArray(tool.tools)) invalid(`${where}.tools`, 'expected an array of tools.');
      return tool.tools.flatMap((inner: unknown, index) => this.add(inner, `${where}.tools[${index}]`, tool.name as string, loaded));
    }
    const name = flatName(namespace, tool.name);
    const known = this.names.get(name);
    const custom = tool.type === 'custom';
    // A search that loads again what the request has (declared, or loaded before): the same tool.
    if (loaded && known !== undefined && known.name === tool.name && known.namespace === namespace && known.custom === custom) return [name];
    if (known !== undefined) throw invalidRequest(`Invalid '${where}.name': two tools are called "${name}" for this key's provider (a namespace's tools are named namespace__name).`, `${where}.name`, 'invalid_value');
    this.names.set(name, namespace === undefined ? { name: tool.name, custom } : { name: tool.name, namespace, custom });
    const fn: Record<string, unknown> = { name };
    if (custom) {
      fn.description = customDescription(tool);
      fn.parameters = CUSTOM_PARAMETERS;
    } else {
      if (tool.parameters !== undefined && tool.parameters !== null && !isRecord(tool.parameters)) invalid(`${where}.parameters`, 'expected a JSON schema object.');
      if (typeof tool.description === 'string') fn.description = tool.description;
      fn.parameters = tool.parameters ?? { type: 'object', properties: {} };
      if (typeof tool.strict === 'boolean') fn.strict = tool.strict;
    }
    this.tools.push({ type: 'function', function: fn });
    if (typeof tool.description === 'string' && tool.description !== '') this.summaries.set(name, tool.description.split('\n')[0] as string);
    return [name];
  }

  /** What a client-run search found, as its tool message says it: the functions it loaded. */
  searchResult(names: readonly string[]): string {
    if (names.length === 0) return 'No tools found.';
    const lines = [...new Set(names)].map((name) => {
      const summary = this.summaries.get(name);
      return summary === undefined ? `- ${name}` : `- ${name}: ${summary}`;
    });
    return `Tools found, which can be called now:\n${lines.join('\n')}`;
  }

  /** A client-run tool search: a function the client runs, whose results (tool_search_output) load more tools. */
  private addSearch(tool: Record<string, unknown>, where: string): void {
    if (this.names.has(SEARCH_NAME)) throw invalidRequest(`Invalid '${where}': two tools are called "${SEARCH_NAME}".`, where, 'invalid_value');
    if (tool.parameters !== undefined && tool.parameters !== null && !isRecord(tool.parameters)) invalid(`${where}.parameters`, 'expected a JSON schema object.');
    this.names.set(SEARCH_NAME, { name: SEARCH_NAME, custom: false, search: true });
    const fn: Record<string, unknown> = { name: SEARCH_NAME, description: typeof tool.description === 'string' ? tool.description : SEARCH_DESCRIPTION, parameters: tool.parameters ?? SEARCH_PARAMETERS };
    this.tools.push({ type: 'function', function: fn });
  }
}

/** The chat function a client-run `tool_search` becomes. */
const SEARCH_NAME = 'tool_search';
const SEARCH_DESCRIPTION = 'Searches for more tools; the ones found can be called next.';
const SEARCH_PARAMETERS = { type: 'object', properties: { query: { type: 'string', description: 'What the tools are for.' } }, required: ['query'], additionalProperties: false };

/** An item of a client-run tool search (Codex runs its own over its MCP tools); one OpenAI ran is its own record. */
function clientSearch(item: Record<string, unknown>): boolean {
  return item.execution === 'client';
}

function chatToolChoice(choice: unknown, table: ToolTable, out: ChatRequest): void {
  if (choice === 'none' || choice === 'auto' || choice === 'required') {
    out.tool_choice = choice;
    return;
  }
  if (!isRecord(choice)) invalid('tool_choice', "expected 'none', 'auto', 'required' or an object.", 'invalid_value');
  const named = (name: unknown, namespace: unknown): string => {
    const flat = typeof name === 'string' ? flatName(typeof namespace === 'string' ? namespace : undefined, name) : '';
    if (!table.names.has(flat)) invalid('tool_choice.name', `no tool called "${shown(name)}" in tools.`, 'invalid_value');
    return flat;
  };
  switch (choice.type) {
    case 'function':
    case 'custom':
      out.tool_choice = { type: 'function', function: { name: named(choice.name, choice.namespace) } };
      return;
    case 'allowed_tools': {
      const allowed = Array.isArray(choice.tools) ? choice.tools : [];
      const names = new Set(allowed.map((tool: unknown) => (isRecord(tool) ? named(tool.name, tool.namespace) : '')));
      out.tools = (out.tools as Array<Record<string, unknown>>).filter((tool) => names.has((tool.function as { name: string }).name));
      out.tool_choice = choice.mode === 'required' ? 'required' : 'auto';
      return;
    }
    default:
      unsupported('tool_choice', `"${shown(choice.type)}" is a tool only OpenAI runs`);
  }
}

// ---- input ---------------------------------------------------------------------------------

function textOfParts(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) invalid(`${where}`, 'expected a string or an array of content parts.');
  return content
    .map((part: unknown, index) => {
      if (!isRecord(part) || typeof part.text !== 'string') invalid(`${where}[${index}]`, 'only text parts can be translated here.', 'invalid_content');
      return part.text;
    })
    .join('');
}

/** An input content part → a chat content part. */
function chatPart(part: unknown, where: string): ContentPart {
  if (!isRecord(part)) invalid(where, 'expected a content part object.');
  switch (part.type) {
    case 'input_text':
    case 'output_text':
    case 'text':
      if (typeof part.text !== 'string') invalid(`${where}.text`, 'expected a string.');
      return { type: 'text', text: part.text };
    case 'input_image': {
      if (typeof part.image_url !== 'string') unsupported(where, 'only images given by URL or data URL can be translated (a file id is OpenAI\'s)');
      const image: { url: string; detail?: string } = { url: part.image_url };
      if (part.detail === 'low' || part.detail === 'high' || part.detail === 'auto') image.detail = part.detail;
      return { type: 'image_url', image_url: image };
    }
    case 'input_file': {
      const file: Record<string, unknown> = {};
      if (typeof part.file_data === 'string') file.file_data = part.file_data;
      else if (typeof part.file_id === 'string') file.file_id = part.file_id;
      else unsupported(where, 'only files given as file_data or file_id can be translated');
      if (typeof part.filename === 'string') file.filename = part.filename;
      return { type: 'file', file };
    }
    default:
      throw invalidRequest(`Invalid '${where}.type': "${shown(part.type)}" cannot be translated for this key's provider.`, `${where}.type`, 'invalid_content');
  }
}

/** Parts as chat content: one text part travels as a string, as most servers expect. */
function chatContent(content: unknown, where: string): string | ContentPart[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) invalid(where, 'expected a string or an array of content parts.');
  const parts = content.map((part: unknown, index) => chatPart(part, `${where}[${index}]`));
  const only = parts[0];
  return parts.length === 1 && only?.type === 'text' && typeof only.text === 'string' ? only.text : parts;
}

/** Builds the chat messages of an input, item by item. */
class Conversation {
  /** `searches`: each client-run search output's tool message, by where it stands (`input[3]`). */
  constructor(private readonly searches: ReadonlyMap<string, string> = new Map()) {}

  readonly messages: ChatMessage[] = [];
  /** Where each message came from, by index. */
  readonly sources: MessageSource[] = [];
  /** Reasoning summaries waiting for the assistant turn they belong to (DeepSeek wants them back as reasoning_content). */
  private reasoning = '';
  /** Images and files from tool outputs: chat tool messages hold text, so they follow the tool messages. */
  private attachments: ContentPart[] = [];
  /** The tool output the first waiting attachment came from. */
  private attachmentsFrom = '';
  /** Calls of the last assistant turn whose outputs have not come yet. */
  private readonly awaiting = new Set<string>();
  /**
   * User and system messages that came between calls and their outputs: chat providers refuse
   * anything but the tool messages after an assistant's calls, so they follow the last output.
   */
  private held: Array<{ message: ChatMessage; at: string }> = [];

  push(message: ChatMessage, at: string, fromMessage = false): void {
    if (message.role !== 'tool') this.flushAttachments();
    this.messages.push(message);
    this.sources.push({ at, message: fromMessage });
    if (message.role === 'tool' && typeof message.tool_call_id === 'string' && this.awaiting.delete(message.tool_call_id) && this.awaiting.size === 0) this.releaseHeld();
  }

  /** A user or system message, held while calls await their outputs. */
  private pushAsked(message: ChatMessage, at: string): void {
    if (this.awaiting.size > 0) this.held.push({ message, at });
    else this.push(message, at, true);
  }

  private releaseHeld(): void {
    const held = this.held;
    this.held = [];
    for (const { message, at } of held) this.push(message, at, true);
  }

  /** After the last item: attachments still waiting, and messages held for outputs that never came. */
  finish(): void {
    this.awaiting.clear();
    this.flushAttachments();
    this.releaseHeld();
  }

  flushAttachments(): void {
    if (this.attachments.length === 0) return;
    const parts = this.attachments;
    this.attachments = [];
    this.messages.push({ role: 'user', content: parts });
    this.sources.push({ at: this.attachmentsFrom, message: false });
  }

  item(item: unknown, where: string): void {
    if (!isRecord(item)) invalid(where, 'expected an input item object.');
    // OpenAI's `type` is optional on a message and on a reference (an id alone).
    const type = item.type ?? (typeof item.role === 'string' ? 'message' : typeof item.id === 'string' ? 'item_reference' : undefined);
    switch (type) {
      case 'message':
        return this.message(item, where);
      case 'function_call':
      case 'custom_tool_call':
        return this.call(item, where);
      case 'function_call_output':
      case 'custom_tool_call_output':
        return this.output(item, where);
      case 'reasoning':
        this.reasoning += reasoningText(item);
        return;
      case 'additional_tools':
        return; // its tools joined the request's (toChatRequest)
      case 'tool_search_call':
        if (!clientSearch(item)) return; // an OpenAI-run search: nothing to send elsewhere
        return this.joinCall({ id: callIdOf(item, where), type: 'function', function: { name: SEARCH_NAME, arguments: typeof item.arguments === 'string' ? item.arguments : JSON.stringify(item.arguments ?? {}) } }, where);
      case 'tool_search_output':
        if (!clientSearch(item)) return;
        // Its tools joined the request's (toChatRequest).
        this.push({ role: 'tool', tool_call_id: callIdOf(item, where), content: this.searches.get(where) ?? 'No tools found.' }, where);
        return;
      case 'item_reference':
        // A reasoning item (the Vercel AI SDK, storing by default, refers back to the ones a
        // translated answer held): its text was never kept, and reasoning is only ever a hint to a
        // chat provider (OpenAI's is left out anyway), so it is left out. Anything else is content.
        if (typeof item.id === 'string' && item.id.startsWith('rs_')) return;
        // Named, with the client setting that stops it: the AI SDK sends these while it stores.
        unsupported(where, `an item_reference (to ${shown(item.id)}) names an item this key's provider never stored; ${STATELESS} (the Vercel AI SDK: providerOptions.openai.store = false)`);
        break;
      default:
        if (typeof type === 'string' && HOSTED_ITEMS.has(type)) return; // an OpenAI-run tool's record: nothing to send elsewhere
        if (typeof type === 'string' && CLIENT_RUN_TYPES.has(type)) clientRun(`${where}.type`, type);
        throw invalidRequest(`Invalid '${where}.type': "${shown(type)}" cannot be translated for this key's provider.`, `${where}.type`, 'invalid_value');
    }
  }

  private message(item: Record<string, unknown>, where: string): void {
    switch (item.role) {
      case 'user':
        this.pushAsked({ role: 'user', content: chatContent(item.content, `${where}.content`) }, where);
        return;
      case 'system':
      case 'developer':
        // Where it stands: instructions given mid-conversation stay mid-conversation.
        this.pushAsked({ role: 'system', content: textOfParts(item.content, `${where}.content`) }, where);
        return;
      case 'assistant': {
        const text = Array.isArray(item.content)
          ? item.content.map((part: unknown) => (isRecord(part) ? (typeof part.text === 'string' ? part.text : typeof part.refusal === 'string' ? part.refusal : '') : '')).join('')
          : textOfParts(item.content, `${where}.content`);
        const last = this.messages[this.messages.length - 1];
        // Text between a turn's calls (a model writes, calls, writes, calls) stays in that turn: a
        // second assistant message before the calls' outputs is refused by OpenAI and DeepSeek.
        if (last?.role === 'assistant' && last.tool_calls !== undefined) {
          const before = typeof last.content === 'string' ? last.content : '';
          last.content = joined(before, text) || null;
          this.joinReasoning(last);
          return;
        }
        this.push(this.withReasoning({ role: 'assistant', content: text }), where, true);
        return;
      }
      default:
        throw invalidRequest(`Invalid '${where}.role': expected 'user', 'assistant', 'system' or 'developer'.`, `${where}.role`, 'invalid_value');
    }
  }

  private withReasoning(message: ChatMessage): ChatMessage {
    this.joinReasoning(message);
    return message;
  }

  /** Reasoning that came within a turn joins that turn's message. */
  private joinReasoning(message: ChatMessage): void {
    if (this.reasoning === '') return;
    message.reasoning_content = joined(typeof message.reasoning_content === 'string' ? message.reasoning_content : '', this.reasoning);
    this.reasoning = '';
  }

  /**
   * A call joins the assistant turn right before it (parallel calls are one chat message; so are
   * calls with text or reasoning between them: every item up to the calls' outputs is one turn).
   */
  private call(item: Record<string, unknown>, where: string): void {
    const callId = callIdOf(item, where);
    if (typeof item.name !== 'string' || item.name === '') invalid(`${where}.name`, 'expected a non-empty string.', 'missing_required_parameter');
    const name = flatName(typeof item.namespace === 'string' ? item.namespace : undefined, item.name);
    let args: string;
    if (item.type === 'custom_tool_call') args = JSON.stringify({ input: typeof item.input === 'string' ? item.input : '' });
    else args = typeof item.arguments === 'string' ? item.arguments : JSON.stringify(item.arguments ?? {});
    this.joinCall({ id: callId, type: 'function', function: { name, arguments: args } }, where);
  }

  private joinCall(call: ToolCall, where: string): void {
    this.awaiting.add(call.id);
    const last = this.messages[this.messages.length - 1];
    if (last?.role === 'assistant') {
      // Pushed, not copied: a run of 60,000 calls copied the array each time (33 s of a blocked loop).
      if (last.tool_calls === undefined) last.tool_calls = [call];
      else last.tool_calls.push(call);
      if (last.content === '') last.content = null;
      this.joinReasoning(last);
      return;
    }
    this.push(this.withReasoning({ role: 'assistant', content: null, tool_calls: [call] }), where);
  }

  private output(item: Record<string, unknown>, where: string): void {
    const callId = callIdOf(item, where);
    const output = item.output;
    let text = '';
    if (typeof output === 'string') text = output;
    else if (Array.isArray(output)) {
      output.forEach((part: unknown, index) => {
        const translated = chatPart(part, `${where}.output[${index}]`);
        if (translated.type === 'text') text += translated.text as string;
        else {
          if (this.attachments.length === 0) this.attachmentsFrom = where;
          this.attachments.push(translated);
        }
      });
    } else if (output !== undefined && output !== null) text = JSON.stringify(output);
    this.push({ role: 'tool', tool_call_id: callId, content: text }, where);
  }
}

/** Two items' texts in one message, apart as they were. */
function joined(before: string, after: string): string {
  return before === '' || after === '' ? before + after : `${before}\n\n${after}`;
}

function reasoningText(item: Record<string, unknown>): string {
  // The reasoning itself where it came (reasoning_text parts), else its summary: not both, which
  // would say the same twice. Parts apart by a blank line, as summaries are shown.
  const texts = (list: unknown): string[] => (Array.isArray(list) ? list : []).flatMap((part: unknown) => (isRecord(part) && typeof part.text === 'string' && part.text !== '' ? [part.text] : []));
  const content = texts(item.content);
  return (content.length > 0 ? content : texts(item.summary)).join('\n\n');
}

// ---- the request ---------------------------------------------------------------------------

function optionalNumber(value: unknown, param: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid(param, 'expected a number.');
  return value;
}

function applyText(text: unknown, out: ChatRequest): void {
  if (text === undefined || text === null) return;
  if (!isRecord(text)) invalid('text', 'expected an object.');
  const format = text.format;
  if (format === undefined || format === null) return;
  if (!isRecord(format)) invalid('text.format', 'expected an object.');
  if (format.type === 'text') return;
  if (format.type === 'json_object') {
    out.response_format = { type: 'json_object' };
    return;
  }
  if (format.type !== 'json_schema') invalid('text.format.type', "expected 'text', 'json_object' or 'json_schema'.", 'invalid_value');
  if (typeof format.name !== 'string' || !isRecord(format.schema)) invalid('text.format', 'json_schema needs "name" and "schema".', 'missing_required_parameter');
  const schema: Record<string, unknown> = { name: format.name, schema: format.schema };
  if (typeof format.strict === 'boolean') schema.strict = format.strict;
  if (typeof format.description === 'string') schema.description = format.description;
  out.response_format = { type: 'json_schema', json_schema: schema };
}

export function toChatRequest(request: ResponsesRequest, options: ToChatOptions = { effortForEveryModel: false }): ChatTranslation {
  for (const param of Object.keys(request)) {
    const rule = entryOf(RESPONSES_PARAMETERS, param);
    if (rule?.action === 'refuse' && request[param] !== undefined && request[param] !== null && request[param] !== false) unsupported(param, rule.why);
  }
  const table = new ToolTable();
  const searches = new Map<string, string>();
  if (request.tools !== undefined && request.tools !== null) {
    if (!Array.isArray(request.tools)) invalid('tools', 'expected an array of tools.');
    request.tools.forEach((tool: unknown, index) => table.add(tool, `tools[${index}]`));
  }
  // Codex's newer models declare their tools in an input item instead (`additional_tools`, with
  // the developer's messages): tools as the `tools` parameter's, for chat's one list.
  if (Array.isArray(request.input)) {
    request.input.forEach((item: unknown, index) => {
      if (!isRecord(item) || item.type !== 'additional_tools') return;
      if (!Array.isArray(item.tools)) invalid(`input[${index}].tools`, 'expected an array of tools.');
      item.tools.forEach((tool: unknown, at) => table.add(tool, `input[${index}].tools[${at}]`));
    });
    // Tools a client-run search loaded can be called from then on: functions of the request too
    // (Responses loads them into the model's context; chat has its one list).
    request.input.forEach((item: unknown, index) => {
      if (!isRecord(item) || item.type !== 'tool_search_output' || !clientSearch(item)) return;
      if (item.tools !== undefined && !Array.isArray(item.tools)) invalid(`input[${index}].tools`, 'expected an array of tools.');
      const names = ((item.tools ?? []) as unknown[]).flatMap((tool, at) => table.add(tool, `input[${index}].tools[${at}]`, undefined, true));
      searches.set(`input[${index}]`, table.searchResult(names));
    });
  }
  const conversation = new Conversation(searches);
  if (request.instructions !== undefined && request.instructions !== null) {
    if (typeof request.instructions !== 'string') invalid('instructions', 'expected a string.');
    if (request.instructions !== '') conversation.push({ role: 'system', content: request.instructions }, 'instructions');
  }
  const input = request.input;
  if (input === undefined || input === null) throw invalidRequest("Missing required parameter: 'input'.", 'input', 'missing_required_parameter');
  if (typeof input === 'string') conversation.push({ role: 'user', content: input }, 'input');
  else input.forEach((item, index) => conversation.item(item, `input[${index}]`));
  conversation.finish();
  if (conversation.messages.length === 0) throw invalidRequest("Invalid 'input': there is no message to send.", 'input', 'invalid_value');

  const out: ChatRequest = { model: request.model, messages: conversation.messages };
  if (typeof request.max_output_tokens === 'number') out.max_completion_tokens = request.max_output_tokens;
  const temperature = optionalNumber(request.temperature, 'temperature');
  if (temperature !== undefined) out.temperature = temperature;
  const topP = optionalNumber(request.top_p, 'top_p');
  if (topP !== undefined) out.top_p = topP;
  if (request.stream === true) out.stream = true;
  const user = typeof request.user === 'string' && request.user !== '' ? request.user : typeof request.safety_identifier === 'string' && request.safety_identifier !== '' ? request.safety_identifier : null;
  if (user !== null) out.user = chatUser(user);
  if (request.reasoning !== undefined && request.reasoning !== null) {
    if (!isRecord(request.reasoning)) invalid('reasoning', 'expected an object.');
    const effort = options.effortForEveryModel ? request.reasoning.effort : reasoningEffort(request.reasoning.effort, out.model);
    if (effort !== undefined && effort !== null) out.reasoning_effort = effort;
  }
  applyText(request.text, out);
  if (table.tools.length > 0) {
    out.tools = table.tools;
    if (request.tool_choice !== undefined && request.tool_choice !== null) chatToolChoice(request.tool_choice, table, out);
    if (typeof request.parallel_tool_calls === 'boolean') out.parallel_tool_calls = request.parallel_tool_calls;
  } else if (request.tool_choice !== undefined && request.tool_choice !== null && request.tool_choice !== 'auto' && request.tool_choice !== 'none') {
    // No tool left to choose (every one was OpenAI's own): a choice that needs one cannot be kept.
    if (request.tool_choice === 'required') unsupported('tool_choice', '"required", but every tool of the request is one only OpenAI runs');
    chatToolChoice(request.tool_choice, table, out);
  }
  return { request: out, tools: table.names, dropped: table.dropped, sources: conversation.sources };
}
