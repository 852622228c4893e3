/**
 * Anthropic Messages request → OpenAI chat request, for a provider that speaks only Chat
 * Completions (OpenAI, DeepSeek, vLLM, Ollama, the mock). Pure: no I/O, no clock. What it cannot
 * translate without changing what the client gets is a 400 naming it; what has no meaning on the
 * other side is dropped. The README's Claude Code section lists the same tables.
 */
import { invalidRequest } from '../../errors.js';
import { entryOf, isRecord, shown } from '../json.js';
import { chatUser, reasoningEffort } from '../chat/fields.js';
import type { ChatMessage, ChatRequest, ContentPart, ToolCall } from '../chat/types.js';
import type { AnthropicRequest } from './types.js';
import { effortOfBudget } from './thinking-from-effort.js';
import { threadUnsupported } from './threads.js';

type Rule = { action: 'map'; to: string } | { action: 'drop'; why: string } | { action: 'refuse'; why: string };

/**
 * Every Messages parameter and what becomes of it. Parameters not listed are dropped: Anthropic
 * adds betas faster than any table, and Claude Code must keep working when it sends a new one
 * (the provider would not understand it anyway).
 */
export const MESSAGES_PARAMETERS: Readonly<Record<string, Rule>> = {
  model: { action: 'map', to: 'model (after the key\'s model_map)' },
  messages: { action: 'map', to: 'messages (see the content table)' },
  system: { action: 'map', to: 'a first system message (text blocks joined; cache_control removed)' },
  max_tokens: { action: 'map', to: 'max_completion_tokens (DeepSeek: max_tokens); 0, a cache warm-up, becomes 1' },
  stop_sequences: { action: 'map', to: 'stop' },
  temperature: { action: 'map', to: 'temperature' },
  top_p: { action: 'map', to: 'top_p' },
  stream: { action: 'map', to: 'stream, with stream_options.include_usage' },
  metadata: { action: 'map', to: "metadata.user_id → user (a digest when longer than OpenAI's 64 characters)" },
  tools: { action: 'map', to: 'function tools (input_schema → parameters; defer_loading, cache_control, strict, input_examples removed); server tools refused' },
  tool_choice: { action: 'map', to: 'auto → auto, any → required, tool → that function, none → none; disable_parallel_tool_use → parallel_tool_calls: false' },
  output_config: { action: 'map', to: "effort → reasoning_effort for OpenAI's reasoning models (o1, o3, o4, gpt-5), dropped for others; format → response_format json_schema" },
  output_format: { action: 'map', to: 'response_format json_schema (the structured-outputs beta name of output_config.format)' },
  thinking: { action: 'map', to: "without output_config.effort, reasoning_effort for OpenAI's reasoning models: budget_tokens under 2,048 low, under 4,096 medium, else high; adaptive high (Anthropic's default effort); dropped for others" },
  top_k: { action: 'drop', why: 'no Chat Completions equivalent' },
  context_management: { action: 'drop', why: "Anthropic's server-side context editing" },
  service_tier: { action: 'drop', why: "Anthropic's tiers do not map to OpenAI's" },
  container: { action: 'drop', why: "Anthropic's code-execution container" },
  cache_control: { action: 'drop', why: "Anthropic's prompt caching (OpenAI and DeepSeek cache on their own)" },
  speed: { action: 'drop', why: "Anthropic's fast mode" },
  inference_geo: { action: 'drop', why: "Anthropic's data residency" },
  diagnostics: { action: 'drop', why: "Anthropic's cache diagnostics" },
  mcp_servers: { action: 'refuse', why: 'remote MCP servers are run by Anthropic only' },
  thread: { action: 'refuse', why: 'message threads keep the history at Anthropic; a translation keeps none (400 thread_unsupported_request: the SDK sends the whole conversation instead)' },
};

/** Tool `type`s a client runs itself with a schema it sends; every other type is a tool Anthropic runs or defines. */
const CUSTOM_TOOL_TYPES = new Set([undefined, 'custom']);


function unsupported(param: string, why: string): never {
  throw invalidRequest(`${param}: not supported with this key's provider: ${why}.`, param, 'unsupported_parameter');
}

// ---- content -------------------------------------------------------------------------------

/** The text of a string or of text blocks (`system`, a system message, a tool result). */
function textOf(content: unknown, where: string, joiner: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalidRequest(`${where}: must be a string or an array of text blocks`, where, 'invalid_type');
  return content
    .map((block: unknown, index) => {
      if (!isRecord(block) || block.type !== 'text' || typeof block.text !== 'string') {
        throw invalidRequest(`${where}.${index}: only text blocks are supported here`, `${where}.${index}`, 'invalid_content');
      }
      return block.text;
    })
    .join(joiner);
}

function imagePart(block: Record<string, unknown>, where: string): ContentPart {
  const source = isRecord(block.source) ? block.source : {};
  if (source.type === 'base64' && typeof source.media_type === 'string' && typeof source.data === 'string') {
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  }
  if (source.type === 'url' && typeof source.url === 'string') return { type: 'image_url', image_url: { url: source.url } };
  throw invalidRequest(`${where}: only base64 and URL images can be translated (a file id is Anthropic's own)`, where, 'invalid_content');
}

function documentPart(block: Record<string, unknown>, where: string): ContentPart {
  const source = isRecord(block.source) ? block.source : {};
  if (source.type === 'base64' && source.media_type === 'application/pdf' && typeof source.data === 'string') {
    const filename = typeof block.title === 'string' && block.title !== '' ? block.title : 'document.pdf';
    return { type: 'file', file: { filename, file_data: `data:application/pdf;base64,${source.data}` } };
  }
  // A custom-content document (its text as blocks, for citations) reads as its texts, line by line.
  const text = source.type === 'text' && typeof source.data === 'string' ? source.data : source.type === 'content' ? textOf(source.content, `${where}.source.content`, '\n') : null;
  if (text !== null) {
    // Its title and context say what the text is: kept before it, as a chat part has no place for them.
    const about = [block.title, block.context].filter((said): said is string => typeof said === 'string' && said !== '');
    return { type: 'text', text: about.length === 0 ? text : `${about.join('\n')}\n\n${text}` };
  }
  throw invalidRequest(`${where}: only base64 PDF, plain-text and text-content documents can be translated`, where, 'invalid_content');
}

/** A user turn's blocks other than tool results → chat content parts. */
function userPart(block: Record<string, unknown>, where: string): ContentPart | null {
  switch (block.type) {
    case 'text':
      if (typeof block.text !== 'string') throw invalidRequest(`${where}.text: Field required`, `${where}.text`, 'invalid_type');
      return { type: 'text', text: block.text };
    case 'image':
      return imagePart(block, where);
    case 'document':
      return documentPart(block, where);
    case 'thinking':
    case 'redacted_thinking':
      return null;
    default:
      throw invalidRequest(`${where}: content block type "${shown(block.type)}" cannot be translated for this key's provider`, where, 'invalid_content');
  }
}

/** Parts as chat content: one text part travels as a string, as most servers expect. */
function chatContent(parts: ContentPart[]): string | ContentPart[] {
  const only = parts[0];
  if (parts.length === 1 && only?.type === 'text' && typeof only.text === 'string') return only.text;
  return parts;
}

/**
 * A tool result → a tool message. Chat tool messages hold text only: a result's images go in a
 * user message after the tool messages. An error result says so in its text (chat has no flag).
 */
function toolMessage(block: Record<string, unknown>, where: string, images: ContentPart[]): ChatMessage {
  if (typeof block.tool_use_id !== 'string' || block.tool_use_id === '') throw invalidRequest(`${where}.tool_use_id: Field required`, `${where}.tool_use_id`, 'missing_required_parameter');
  const texts: string[] = [];
  const content = block.content;
  if (typeof content === 'string') texts.push(content);
  else if (Array.isArray(content)) {
    content.forEach((inner: unknown, index) => {
      const at = `${where}.content.${index}`;
      if (!isRecord(inner)) throw invalidRequest(`${at}: must be a content block`, at, 'invalid_type');
      // Claude Code's tool search answers with references to the tools it loads; a chat provider
      // was sent every tool from the start (defer_loading removed), so a line saying so is all of it.
      if (inner.type === 'tool_reference') {
        if (typeof inner.tool_name !== 'string') throw invalidRequest(`${at}.tool_name: Field required`, `${at}.tool_name`, 'invalid_type');
        texts.push(`Tool loaded: ${inner.tool_name}`);
        return;
      }
      const part = userPart(inner, at);
      if (part === null) return;
      if (part.type === 'text') texts.push(part.text as string);
      else images.push(part);
    });
  } else if (content !== undefined && content !== null) {
    throw invalidRequest(`${where}.content: must be a string or an array of blocks`, `${where}.content`, 'invalid_type');
  }
  let text = texts.join('\n');
  if (block.is_error === true) text = `Error: ${text}`;
  return { role: 'tool', tool_call_id: block.tool_use_id, content: text };
}

/** One message's content, with where it stands in the request (for errors). */
interface Said {
  readonly content: unknown;
  readonly where: string;
}

/** Each block of a message, with its path; a string content is one text, given whole. */
function eachBlock({ content, where }: Said, visit: (block: Record<string, unknown>, at: string) => void, onString: (text: string) => void): void {
  if (typeof content === 'string') return onString(content);
  if (!Array.isArray(content)) throw invalidRequest(`${where}.content: must be a string or an array of blocks`, `${where}.content`, 'invalid_type');
  content.forEach((block: unknown, index) => {
    const at = `${where}.content.${index}`;
    if (!isRecord(block)) throw invalidRequest(`${at}: must be a content block`, at, 'invalid_type');
    visit(block, at);
  });
}

/**
 * A user turn (consecutive user messages, which Anthropic takes as one): its tool results first,
 * as tool messages in order, then the rest as one user message.
 */
function userMessages(run: readonly Said[]): ChatMessage[] {
  const tools: ChatMessage[] = [];
  const parts: ContentPart[] = [];
  const images: ContentPart[] = [];
  const visit = (block: Record<string, unknown>, at: string): void => {
    if (block.type === 'tool_result') tools.push(toolMessage(block, at, images));
    else {
      const part = userPart(block, at);
      if (part !== null) parts.push(part);
    }
  };
  for (const said of run) eachBlock(said, visit, (text) => parts.push({ type: 'text', text }));
  for (const image of images) parts.push(image);
  if (parts.length > 0) tools.push({ role: 'user', content: chatContent(parts) });
  return tools;
}

function toolCall(block: Record<string, unknown>, where: string): ToolCall {
  if (typeof block.id !== 'string' || typeof block.name !== 'string') throw invalidRequest(`${where}: a tool_use block needs "id" and "name"`, where, 'invalid_type');
  if (block.input !== undefined && !isRecord(block.input)) throw invalidRequest(`${where}.input: Input should be a valid dictionary`, `${where}.input`, 'invalid_type');
  return { id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } };
}

/**
 * An assistant turn (consecutive assistant messages, which Anthropic takes as one): its text, its
 * tool calls, and its thinking as `reasoning_content` (the field DeepSeek answers with, and
 * requires back after tool calls in its thinking mode; providers that refuse the field do not get
 * it: see the openai provider). Redacted thinking is opaque to every other provider: dropped.
 */
function assistantMessage(run: readonly Said[]): ChatMessage | null {
  /** Each message's text and thinking: its blocks joined as they stand, the messages apart by a blank line. */
  const texts: string[] = [];
  const thoughts: string[] = [];
  let spoken = false;
  const calls: ToolCall[] = [];
  for (const said of run) {
    let text = '';
    let thought = '';
    eachBlock(
      said,
      (block, at) => {
        if (block.type === 'text' && typeof block.text === 'string') text += block.text;
        else if (block.type === 'tool_use') calls.push(toolCall(block, at));
        else if (block.type === 'thinking') thought += typeof block.thinking === 'string' ? block.thinking : '';
        else if (block.type !== 'redacted_thinking') {
          throw invalidRequest(`${at}: content block type "${shown(block.type)}" cannot be translated for this key's provider`, at, 'invalid_content');
        }
      },
      (whole) => {
        text += whole;
        spoken = true;
      },
    );
    if (text !== '') texts.push(text);
    if (thought !== '') thoughts.push(thought);
  }
  const text = texts.join('\n\n');
  const reasoning = thoughts.join('\n\n');
  if (text === '' && calls.length === 0 && !spoken) return null;
  const message: ChatMessage = { role: 'assistant', content: text === '' && calls.length > 0 ? null : text };
  if (reasoning !== '') message.reasoning_content = reasoning;
  if (calls.length > 0) message.tool_calls = calls;
  return message;
}

function translateMessages(request: AnthropicRequest): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (request.system !== undefined && request.system !== null) {
    const system = textOf(request.system, 'system', '\n\n');
    if (system !== '') out.push({ role: 'system', content: system });
  }
  const messages = request.messages;
  for (let index = 0; index < messages.length; ) {
    const message = messages[index] as (typeof messages)[number];
    const where = `messages.${index}`;
    if (message.role === 'user' || message.role === 'assistant') {
      // Consecutive messages of one role are one turn to Anthropic: translated apart, an assistant
      // turn's calls would be split from the results that answer them.
      const run: Said[] = [];
      for (; index < messages.length && messages[index]?.role === message.role; index++) run.push({ content: messages[index]?.content, where: `messages.${index}` });
      if (message.role === 'user') {
        // One push each: a spread of 150,000 blocks' messages overflows the call stack.
        for (const each of userMessages(run)) out.push(each);
      } else {
        const assistant = assistantMessage(run);
        if (assistant !== null) out.push(assistant);
      }
      continue;
    }
    if (message.role !== 'system') throw invalidRequest(`${where}.role: Input should be 'user', 'assistant' or 'system'`, `${where}.role`, 'invalid_value');
    // Where it stands: instructions given mid-conversation stay mid-conversation.
    out.push({ role: 'system', content: textOf(message.content, `${where}.content`, '\n\n') });
    index++;
  }
  return out;
}

// ---- tools ---------------------------------------------------------------------------------

function translateTools(tools: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(tools)) throw invalidRequest('tools: must be an array', 'tools', 'invalid_type');
  const serverTools: string[] = [];
  const out = tools.map((tool: unknown, index) => {
    const at = `tools.${index}`;
    if (!isRecord(tool)) throw invalidRequest(`${at}: must be an object`, at, 'invalid_type');
    if (!CUSTOM_TOOL_TYPES.has(tool.type as string | undefined)) {
      serverTools.push(`${typeof tool.name === 'string' ? tool.name : at} (${shown(tool.type)})`);
      return {};
    }
    if (typeof tool.name !== 'string' || tool.name === '') throw invalidRequest(`${at}.name: Field required`, `${at}.name`, 'missing_required_parameter');
    if (tool.input_schema !== undefined && !isRecord(tool.input_schema)) throw invalidRequest(`${at}.input_schema: Input should be an object`, `${at}.input_schema`, 'invalid_type');
    const fn: Record<string, unknown> = { name: tool.name, parameters: tool.input_schema ?? { type: 'object', properties: {} } };
    if (typeof tool.description === 'string') fn.description = tool.description;
    return { type: 'function', function: fn };
  });
  if (serverTools.length > 0) {
    throw invalidRequest(`tools: ${serverTools.join(', ')}: only Anthropic runs these tools; remove them for this key's provider`, 'tools', 'unsupported_tool');
  }
  return out;
}

function translateToolChoice(choice: unknown): { toolChoice: unknown; parallel: boolean } {
  if (!isRecord(choice)) throw invalidRequest('tool_choice: must be an object with a "type"', 'tool_choice', 'invalid_type');
  const parallel = choice.disable_parallel_tool_use !== true;
  switch (choice.type) {
    case 'auto':
      return { toolChoice: 'auto', parallel };
    case 'any':
      return { toolChoice: 'required', parallel };
    case 'none':
      return { toolChoice: 'none', parallel };
    case 'tool':
      if (typeof choice.name !== 'string') throw invalidRequest('tool_choice.name: Field required', 'tool_choice.name', 'missing_required_parameter');
      return { toolChoice: { type: 'function', function: { name: choice.name } }, parallel };
    default:
      throw invalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", 'tool_choice.type', 'invalid_value');
  }
}

// ---- the request ---------------------------------------------------------------------------

function userId(metadata: unknown): string | null {
  if (metadata === undefined || metadata === null) return null;
  if (!isRecord(metadata)) throw invalidRequest('metadata: Input should be an object', 'metadata', 'invalid_type');
  if (metadata.user_id !== undefined && metadata.user_id !== null && typeof metadata.user_id !== 'string') {
    throw invalidRequest('metadata.user_id: Input should be a string', 'metadata.user_id', 'invalid_type');
  }
  if (typeof metadata.user_id !== 'string' || metadata.user_id === '') return null;
  return chatUser(metadata.user_id);
}

function applyOutputConfig(out: ChatRequest, request: AnthropicRequest): void {
  const config = isRecord(request.output_config) ? request.output_config : {};
  const thinkingOff = isRecord(request.thinking) && request.thinking.type === 'disabled';
  // GPT-5.1 and later reason only when asked: a client's thinking is its ask (Claude Code sends a budget).
  const effort = reasoningEffort(config.effort ?? effortOfThinking(request.thinking), out.model);
  if (effort !== undefined && !thinkingOff) out.reasoning_effort = effort;
  const format = config.format ?? request.output_format;
  if (isRecord(format) && format.type === 'json_schema' && isRecord(format.schema)) {
    out.response_format = { type: 'json_schema', json_schema: { name: 'response', schema: format.schema } };
  }
}

/** A client's thinking as an effort level: its budget's level; adaptive as Anthropic's default effort. */
function effortOfThinking(thinking: unknown): string | undefined {
  if (!isRecord(thinking)) return undefined;
  if (thinking.type === 'adaptive') return 'high';
  if (thinking.type !== 'enabled' || typeof thinking.budget_tokens !== 'number') return undefined;
  return effortOfBudget(thinking.budget_tokens);
}

function optionalNumber(value: unknown, param: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidRequest(`${param}: Input should be a valid number`, param, 'invalid_type');
  return value;
}

export function toChatRequest(request: AnthropicRequest): ChatRequest {
  if (request.thread !== undefined && request.thread !== null) throw threadUnsupported("its provider is reached through a translation, which keeps no conversation's history");
  for (const param of Object.keys(request)) {
    const rule = entryOf(MESSAGES_PARAMETERS, param);
    if (rule?.action === 'refuse' && request[param] !== undefined && request[param] !== null) unsupported(param, rule.why);
  }
  const out: ChatRequest = { model: request.model, messages: translateMessages(request) };
  out.max_completion_tokens = Math.max(1, request.max_tokens);
  const temperature = optionalNumber(request.temperature, 'temperature');
  if (temperature !== undefined) out.temperature = temperature;
  const topP = optionalNumber(request.top_p, 'top_p');
  if (topP !== undefined) out.top_p = topP;
  const stop = request.stop_sequences;
  if (stop !== undefined && stop !== null) {
    if (!Array.isArray(stop) || !stop.every((entry) => typeof entry === 'string')) throw invalidRequest('stop_sequences: Input should be a valid list of strings', 'stop_sequences', 'invalid_type');
    if (stop.length > 0) out.stop = stop;
  }
  if (request.stream === true) out.stream = true;
  const user = userId(request.metadata);
  if (user !== null) out.user = user;
  applyOutputConfig(out, request);

  if (request.tools !== undefined && request.tools !== null) {
    const tools = translateTools(request.tools);
    if (tools.length > 0) {
      out.tools = tools;
      // OpenAI refuses tool_choice without tools, as Anthropic does; Anthropic's is ignored then.
      if (request.tool_choice !== undefined && request.tool_choice !== null) {
        const { toolChoice, parallel } = translateToolChoice(request.tool_choice);
        out.tool_choice = toolChoice;
        if (!parallel) out.parallel_tool_calls = false;
      }
    }
  }
  return out;
}
