/**
 * OpenAI chat request → Anthropic Messages request. Pure: no I/O, no clock; every input it cannot
 * translate is a 400 GatewayError naming the parameter or message.
 */
import { invalidRequest } from '../../errors.js';
import { entryOf, isRecord, shown } from '../json.js';
import { parseJsonText, TooDeep, TooMany, type JsonSpent } from '../json-limits.js';
import { userDigest } from '../chat/fields.js';
import type { ChatMessage, ChatRequest } from '../chat/types.js';
import { anthropicSchema } from './output-schema.js';
import { anthropicEffort, thinkingFromEffort } from './thinking-from-effort.js';
import type {
  AnthropicMessage,
  AnthropicRequest,
  AnthropicTool,
  AnthropicToolChoice,
  ContentBlock,
  OutputConfig,
  ImageBlock,
  TextBlock,
  ToolResultBlock,
  ToolUseBlock,
} from './types.js';

type Rule =
  /** Translated by this module. */
  | { action: 'map'; to: string; refuse?: (value: unknown) => string | null }
  /** No Anthropic meaning and harmless to ignore: removed. */
  | { action: 'drop'; why: string }
  /** No Anthropic meaning, and ignoring it would change what the client gets: 400. */
  | { action: 'refuse'; why: string; unless?: (value: unknown) => boolean };

/**
 * Every OpenAI chat parameter and what happens to it with an `anthropic` key. A parameter not in
 * this table is refused with a 400 naming it (a typo must not silently pass). `null` counts as
 * absent. The README's Anthropic section lists the same table.
 */
export const PARAMETERS: Readonly<Record<string, Rule>> = {
  model: { action: 'map', to: 'model' },
  messages: { action: 'map', to: 'system + messages' },
  max_tokens: { action: 'map', to: 'max_tokens' },
  max_completion_tokens: { action: 'map', to: 'max_tokens (wins over max_tokens)' },
  temperature: { action: 'map', to: 'temperature, clamped to 1 (Anthropic accepts 0–1)' },
  top_p: { action: 'map', to: 'top_p (1, its no-op value, is not sent: newer Claude models refuse temperature and top_p together)' },
  top_k: { action: 'map', to: 'top_k (an Anthropic parameter, passed through)' },
  stop: { action: 'map', to: 'stop_sequences (a whitespace-only sequence is refused: Anthropic rejects it)' },
  stream: { action: 'map', to: 'stream' },
  stream_options: { action: 'map', to: 'used by the gateway (include_usage), not sent' },
  user: { action: 'map', to: 'metadata.user_id' },
  tools: { action: 'map', to: 'tools (name, description, input_schema)' },
  tool_choice: { action: 'map', to: 'tool_choice (auto/any/none/tool)' },
  parallel_tool_calls: { action: 'map', to: 'false → tool_choice.disable_parallel_tool_use' },
  thinking: { action: 'map', to: 'thinking (an Anthropic parameter, passed through)' },
  reasoning_effort: { action: 'map', to: 'thinking by model: adaptive with output_config.effort (Claude 4.6+), a budget_tokens (3.7–4.5), none (earlier)' },
  response_format: {
    action: 'map',
    to: 'json_schema → output_config.format; text → nothing',
    refuse: (value) => (isRecord(value) && (value.type === 'text' || value.type === 'json_schema') ? null : 'Anthropic has structured output only with a schema: send the format of type "json_schema", with its "name" and "schema"'),
  },
  n: { action: 'map', to: 'one choice', refuse: (value) => (value === 1 ? null : 'Anthropic returns one choice; "n" must be 1') },
  frequency_penalty: { action: 'drop', why: 'no Anthropic equivalent' },
  presence_penalty: { action: 'drop', why: 'no Anthropic equivalent' },
  seed: { action: 'drop', why: 'no Anthropic equivalent (best-effort in OpenAI too)' },
  store: { action: 'drop', why: 'OpenAI stored completions' },
  metadata: { action: 'drop', why: 'OpenAI stored-completion tags' },
  service_tier: { action: 'drop', why: "OpenAI's tiers do not map to Anthropic's" },
  prompt_cache_key: { action: 'drop', why: 'OpenAI cache routing hint' },
  prompt_cache_retention: { action: 'drop', why: "OpenAI's cache retention (Anthropic's is set per block, with cache_control)" },
  safety_identifier: { action: 'drop', why: 'OpenAI abuse-monitoring id' },
  verbosity: { action: 'drop', why: 'no Anthropic equivalent' },
  logprobs: { action: 'refuse', why: 'Anthropic returns no log probabilities', unless: (value) => value === false },
  top_logprobs: { action: 'refuse', why: 'Anthropic returns no log probabilities' },
  // An empty map biases nothing (clients that default it send {}).
  logit_bias: { action: 'refuse', why: 'Anthropic has no token biasing', unless: (value) => isRecord(value) && Object.keys(value).length === 0 },
  audio: { action: 'refuse', why: 'Anthropic has no audio output' },
  modalities: { action: 'refuse', why: 'Anthropic answers text only', unless: (value) => Array.isArray(value) && value.every((m) => m === 'text') },
  prediction: { action: 'refuse', why: 'no predicted outputs on Anthropic' },
  web_search_options: { action: 'refuse', why: 'not translated' },
  functions: { action: 'refuse', why: 'deprecated; use "tools"' },
  function_call: { action: 'refuse', why: 'deprecated; use "tool_choice"' },
};

export interface RequestOptions {
  /** max_tokens when the client sets none (Anthropic requires it). */
  defaultMaxTokens: number;
}

function unsupported(param: string, why: string): never {
  throw invalidRequest(`Parameter "${param}" is not supported with an anthropic key: ${why}.`, param, 'unsupported_parameter');
}

function checkParameters(request: ChatRequest): void {
  for (const param of Object.keys(request)) {
    const value = request[param];
    if (value === null || value === undefined) continue;
    const rule = entryOf(PARAMETERS, param);
    if (rule === undefined) unsupported(param, 'it is not an OpenAI chat parameter the gateway knows');
    if (rule.action === 'refuse' && !(rule.unless?.(value) ?? false)) unsupported(param, rule.why);
    if (rule.action === 'map' && rule.refuse !== undefined) {
      const why = rule.refuse(value);
      if (why !== null) unsupported(param, why);
    }
  }
}

function requirePositiveInteger(value: unknown, param: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw invalidRequest(`"${param}" must be a positive integer.`, param, 'invalid_type');
  return value;
}

function requireNumber(value: unknown, param: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidRequest(`"${param}" must be a number.`, param, 'invalid_type');
  return value;
}

// ---- content -------------------------------------------------------------------------------

const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const DATA_URL = /^data:([^;,]+)((?:;[^;,]*)*);base64,(.*)$/s;

function withCacheControl<T extends TextBlock | ImageBlock>(block: T, part: Record<string, unknown>): T {
  // Clients that use Anthropic prompt caching through OpenAI's format put cache_control on parts.
  if (part.cache_control !== undefined) block.cache_control = part.cache_control;
  return block;
}

function imageBlock(part: Record<string, unknown>, where: string): ImageBlock {
  const image = part.image_url;
  const url = typeof image === 'string' ? image : isRecord(image) && typeof image.url === 'string' ? image.url : undefined;
  if (url === undefined) throw invalidRequest(`${where}: an image_url part needs image_url.url.`, where, 'invalid_content');
  if (url.startsWith('data:')) {
    const match = DATA_URL.exec(url);
    if (match === null) throw invalidRequest(`${where}: only base64 data: URLs are supported for images.`, where, 'invalid_content');
    // image/jpg is no registered type, but clients write it from a file's extension, and OpenAI takes it.
    const written = (match[1] as string).toLowerCase();
    const mediaType = written === 'image/jpg' ? 'image/jpeg' : written;
    if (mediaType === 'application/pdf') {
      return withCacheControl({ type: 'document', source: { type: 'base64', media_type: mediaType, data: match[3] as string } }, part);
    }
    if (!IMAGE_TYPES.has(mediaType)) {
      throw invalidRequest(`${where}: image type "${mediaType}" is not supported by Anthropic (jpeg, png, gif, webp).`, where, 'invalid_content');
    }
    return withCacheControl({ type: 'image', source: { type: 'base64', media_type: mediaType, data: match[3] as string } }, part);
  }
  if (/^https?:\/\//i.test(url)) return withCacheControl({ type: 'image', source: { type: 'url', url } }, part);
  throw invalidRequest(`${where}: an image URL must be https://, http:// or a base64 data: URL.`, where, 'invalid_content');
}

/**
 * A chat `file` part (a Responses `input_file` becomes one): a PDF or plain text given as a base64
 * data: URL is Anthropic's `document` block (a PDF as the same PDF sent as an image_url is, text
 * as its own text source), titled with the file's name.
 */
function fileBlock(part: Record<string, unknown>, where: string): ImageBlock {
  const file = isRecord(part.file) ? part.file : {};
  const match = typeof file.file_data === 'string' ? DATA_URL.exec(file.file_data) : null;
  const mediaType = match === null ? '' : (match[1] as string).toLowerCase();
  if (match === null || (mediaType !== 'application/pdf' && mediaType !== 'text/plain')) {
    const given = typeof file.file_id === 'string' ? 'a file id (OpenAI\'s Files API)' : 'this file';
    throw invalidRequest(`${where}: ${given} cannot be sent to Anthropic; send a PDF or plain text as file_data, a base64 data: URL (data:application/pdf;base64,…).`, where, 'invalid_content');
  }
  const data = match[3] as string;
  const block: ImageBlock =
    mediaType === 'text/plain'
      ? { type: 'document', source: { type: 'text', media_type: 'text/plain', data: Buffer.from(data, 'base64').toString('utf8') } }
      : { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data } };
  if (typeof file.filename === 'string' && file.filename !== '') block.title = file.filename;
  return withCacheControl(block, part);
}

/** Anthropic rejects text blocks that are empty or only whitespace ("must contain non-whitespace text"). */
function isBlank(text: string): boolean {
  return text.trim() === '';
}

/** OpenAI content (string, parts, null) → Anthropic blocks; blank text is dropped (Anthropic rejects it). */
function blocks(content: unknown, where: string, allowImages: boolean): Array<TextBlock | ImageBlock> {
  if (content === null || content === undefined) return [];
  if (typeof content === 'string') return isBlank(content) ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw invalidRequest(`${where}.content must be a string or an array of content parts.`, `${where}.content`, 'invalid_type');
  const out: Array<TextBlock | ImageBlock> = [];
  content.forEach((part: unknown, index) => {
    const at = `${where}.content[${index}]`;
    if (!isRecord(part)) throw invalidRequest(`${at} must be a content part object.`, at, 'invalid_type');
    if (part.type === 'text' || part.type === 'refusal') {
      const text = part.type === 'text' ? part.text : part.refusal;
      if (typeof text !== 'string') throw invalidRequest(`${at} needs a string "${shown(part.type)}".`, at, 'invalid_type');
      if (!isBlank(text)) out.push(withCacheControl({ type: 'text', text }, part));
    } else if (part.type === 'image_url' && allowImages) {
      out.push(imageBlock(part, at));
    } else if (part.type === 'file' && allowImages) {
      out.push(fileBlock(part, at));
    } else {
      throw invalidRequest(`${at}: content part type "${shown(part.type)}" is not supported with an anthropic key here.`, at, 'invalid_content');
    }
  });
  return out;
}

/**
 * Anthropic tool ids must match ^[a-zA-Z0-9_-]+$. Every id is encoded the same way on both sides
 * (tool_use and tool_result), one-to-one so that two ids never become one: `_` is doubled and
 * any other character becomes `_<hex>_` (`call.1` → `call_2e_1`).
 */
export function toolId(id: string): string {
  return id.replace(/[^a-zA-Z0-9-]/g, (c) => (c === '_' ? '__' : `_${(c.codePointAt(0) as number).toString(16)}_`));
}

/** `spent`: what the request's tool calls' arguments parsed so far used of the body's limits (they share them). */
function toolUses(message: ChatMessage, where: string, spent: JsonSpent): ToolUseBlock[] {
  const calls: unknown = message.tool_calls;
  if (calls === undefined || calls === null) return [];
  if (!Array.isArray(calls)) throw invalidRequest(`${where}.tool_calls must be an array.`, `${where}.tool_calls`, 'invalid_type');
  return calls.map((call: unknown, index): ToolUseBlock => {
    const at = `${where}.tool_calls[${index}]`;
    if (!isRecord(call) || typeof call.id !== 'string' || !isRecord(call.function) || typeof call.function.name !== 'string') {
      throw invalidRequest(`${at} must have a string "id" and "function.name".`, at, 'invalid_type');
    }
    const args = call.function.arguments ?? '';
    if (typeof args !== 'string') throw invalidRequest(`${at}.function.arguments must be a JSON string.`, `${at}.function.arguments`, 'invalid_type');
    let input: unknown = {};
    if (args.trim() !== '') {
      try {
        input = parseJsonText(args, spent);
      } catch (err) {
        const why = err instanceof TooDeep ? `nests deeper than ${err.max} levels` : err instanceof TooMany ? `holds more than ${err.max} ${err.what} (with the request's earlier tool calls' arguments)` : 'is not valid JSON';
        throw invalidRequest(`${at}.function.arguments ${why}; Anthropic needs the tool input as an object.`, `${at}.function.arguments`, 'invalid_tool_arguments');
      }
    }
    if (!isRecord(input)) throw invalidRequest(`${at}.function.arguments must encode a JSON object.`, `${at}.function.arguments`, 'invalid_tool_arguments');
    return { type: 'tool_use', id: toolId(call.id), name: call.function.name, input };
  });
}

function toolResult(message: ChatMessage, where: string): ToolResultBlock {
  if (typeof message.tool_call_id !== 'string' || message.tool_call_id === '') {
    throw invalidRequest(`${where}: a tool message needs "tool_call_id".`, `${where}.tool_call_id`, 'missing_required_parameter');
  }
  const result: ToolResultBlock = { type: 'tool_result', tool_use_id: toolId(message.tool_call_id) };
  if (typeof message.content === 'string') {
    if (message.content !== '') result.content = message.content;
  } else {
    const content = blocks(message.content, where, true);
    if (content.length > 0) result.content = content;
  }
  return result;
}

// ---- messages ------------------------------------------------------------------------------

interface Turn {
  role: 'user' | 'assistant';
  blocks: ContentBlock[];
}

/** The user turn put before a conversation that opens with the assistant, after only a system prompt, and for a last user message left empty. */
const OPENING_USER_TEXT = '.';

function translateMessages(messages: ChatMessage[]): { system: TextBlock[]; turns: AnthropicMessage[] } {
  const system: TextBlock[] = [];
  const spent: JsonSpent = { containers: 0, values: 0 };
  const turns: Turn[] = [];
  const push = (role: Turn['role'], content: ContentBlock[]): void => {
    if (content.length === 0) return;
    const last = turns.at(-1);
    // One push each: a spread of 150,000 blocks overflows the call stack.
    if (last !== undefined && last.role === role) for (const block of content) last.blocks.push(block);
    else turns.push({ role, blocks: content });
  };

  messages.forEach((message, index) => {
    const where = `messages[${index}]`;
    switch (message.role) {
      case 'system':
      case 'developer':
        // Wherever they stand, system and developer messages become the top-level system prompt.
        for (const block of blocks(message.content, where, false)) system.push(block as TextBlock);
        break;
      case 'user':
        push('user', blocks(message.content, where, true));
        break;
      case 'assistant': {
        const content = blocks(message.content, where, false);
        // An answer the model refused is its content (OpenAI returns it as `refusal`, content null).
        if (content.length === 0 && typeof message.refusal === 'string' && message.refusal.trim() !== '') content.push({ type: 'text', text: message.refusal });
        push('assistant', [...content, ...toolUses(message, where, spent)]);
        break;
      }
      case 'tool':
        push('user', [toolResult(message, where)]);
        break;
      default:
        throw invalidRequest(`${where}: role "${message.role}" is not supported (system, developer, user, assistant, tool).`, `${where}.role`, 'invalid_value');
    }
  });

  if (turns.length === 0) {
    if (system.length === 0) throw invalidRequest('"messages" holds no content to send (only empty content).', 'messages', 'invalid_value');
    // Only a system prompt (a script that writes its whole instruction there): OpenAI answers it,
    // Anthropic needs a user turn to answer.
    turns.push({ role: 'user', blocks: [{ type: 'text', text: OPENING_USER_TEXT }] });
  }
  // A last user message left with nothing (only whitespace) would make the answer before it a
  // prefill, which the model continues instead of answering: it keeps its place as a minimal turn.
  const final = messages.findLast((message) => message.role !== 'system' && message.role !== 'developer');
  if (final?.role === 'user' && turns.at(-1)?.role === 'assistant') turns.push({ role: 'user', blocks: [{ type: 'text', text: OPENING_USER_TEXT }] });
  // Anthropic refuses a conversation that opens with the assistant (a chat app's greeting, or
  // history trimmed from the front), which OpenAI serves: a minimal user turn goes before it.
  if (turns[0]?.role !== 'user') turns.unshift({ role: 'user', blocks: [{ type: 'text', text: OPENING_USER_TEXT }] });

  // Anthropic wants tool results first in their user turn, and rejects a final assistant turn (prefill) ending in whitespace.
  for (const turn of turns) {
    if (turn.role === 'user' && turn.blocks.some((block) => block.type === 'tool_result')) {
      turn.blocks.sort((a, b) => Number(b.type === 'tool_result') - Number(a.type === 'tool_result'));
    }
  }
  const last = turns.at(-1) as Turn;
  if (last.role === 'assistant') {
    // Trailing whitespace of the prefill, across as many trailing text blocks as it spans.
    for (let tail = last.blocks.at(-1); tail?.type === 'text'; tail = last.blocks.at(-1)) {
      tail.text = tail.text.trimEnd();
      if (tail.text !== '') break;
      last.blocks.pop();
    }
    if (last.blocks.length === 0) turns.pop();
  }

  return {
    system,
    turns: turns.map(({ role, blocks: content }) => {
      const only = content[0];
      // A lone plain text block travels as a string, as the client most likely sent it.
      if (content.length === 1 && only?.type === 'text' && only.cache_control === undefined) return { role, content: only.text };
      return { role, content };
    }),
  };
}

// ---- tools ---------------------------------------------------------------------------------

function translateTools(tools: unknown): AnthropicTool[] {
  if (!Array.isArray(tools)) throw invalidRequest('"tools" must be an array.', 'tools', 'invalid_type');
  return tools.map((tool: unknown, index): AnthropicTool => {
    const at = `tools[${index}]`;
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function) || typeof tool.function.name !== 'string') {
      throw invalidRequest(`${at} must be {"type": "function", "function": {"name", "description", "parameters"}}.`, at, 'invalid_type');
    }
    const fn = tool.function;
    const out: AnthropicTool = { name: fn.name as string, input_schema: fn.parameters ?? { type: 'object', properties: {} } };
    if (typeof fn.description === 'string') out.description = fn.description;
    return out;
  });
}

function translateToolChoice(choice: unknown): AnthropicToolChoice | undefined {
  if (choice === undefined || choice === null) return undefined;
  if (choice === 'auto') return { type: 'auto' };
  if (choice === 'required') return { type: 'any' };
  if (choice === 'none') return { type: 'none' };
  if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return { type: 'tool', name: choice.function.name };
  }
  throw invalidRequest('"tool_choice" must be "auto", "required", "none" or {"type": "function", "function": {"name"}}.', 'tool_choice', 'invalid_value');
}

// ---- the request ---------------------------------------------------------------------------

/** Anthropic's `metadata.user_id` holds at most 256 characters (its SDK's limit). */
const MAX_ANTHROPIC_USER_LENGTH = 256;
const EMAIL = /[^\s@]+@[^\s@]+\.[^\s@]+/;
const PHONE = /^\+?[\d\s().-]{7,}$/;

/**
 * A chat client's `user` as Anthropic's `metadata.user_id`, which must hold no personal data: an
 * email address or a phone number (OpenAI's `user` often is one) goes as its digest, as does an
 * id longer than Anthropic takes.
 */
function anthropicUserId(id: string): string {
  return id.length > MAX_ANTHROPIC_USER_LENGTH || EMAIL.test(id) || PHONE.test(id) ? userDigest(id) : id;
}

function callsTools(turn: AnthropicMessage | undefined): boolean {
  return turn !== undefined && Array.isArray(turn.content) && turn.content.some((block) => block.type === 'tool_use');
}

/** The request makes the model call a tool (`required`, or a named function), which Anthropic refuses with thinking on. */
function forcesTool(request: ChatRequest): boolean {
  const choice = request.tool_choice;
  return Array.isArray(request.tools) && request.tools.length > 0 && (choice === 'required' || (isRecord(choice) && choice.type === 'function'));
}

export function toAnthropicRequest(request: ChatRequest, options: RequestOptions): AnthropicRequest {
  checkParameters(request);
  const { system, turns } = translateMessages(request.messages);

  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  const out: AnthropicRequest = {
    model: request.model,
    max_tokens:
      maxTokens === undefined || maxTokens === null
        ? options.defaultMaxTokens
        : requirePositiveInteger(maxTokens, request.max_completion_tokens !== undefined && request.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens'),
    messages: turns,
  };
  if (system.length > 0) out.system = system;

  if (request.temperature !== undefined && request.temperature !== null) out.temperature = Math.min(requireNumber(request.temperature, 'temperature'), 1);
  if (request.top_p !== undefined && request.top_p !== null && request.top_p !== 1) out.top_p = requireNumber(request.top_p, 'top_p');
  if (request.top_k !== undefined && request.top_k !== null) out.top_k = requirePositiveInteger(request.top_k, 'top_k');

  const stop = request.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || !list.every((entry) => typeof entry === 'string')) throw invalidRequest('"stop" must be a string or an array of strings.', 'stop', 'invalid_type');
    const blank = list.findIndex((entry) => isBlank(entry));
    if (blank !== -1) {
      // Dropping it would silently change where the answer stops.
      throw invalidRequest(`"stop[${blank}]" is only whitespace, which Anthropic does not accept as a stop sequence.`, 'stop', 'unsupported_value');
    }
    if (list.length > 0) out.stop_sequences = list;
  }

  if (request.stream === true) out.stream = true;
  if (typeof request.user === 'string' && request.user !== '') out.metadata = { user_id: anthropicUserId(request.user) };
  const config: OutputConfig = {};
  if (request.thinking !== undefined && request.thinking !== null) {
    out.thinking = request.thinking;
    // max_tokens must exceed the thinking budget; without one from the client, the answer keeps
    // the default's room beside it (a budget of 4,000 under a max_tokens of 4,096 left 96).
    const budget = isRecord(request.thinking) ? request.thinking.budget_tokens : undefined;
    if ((maxTokens === undefined || maxTokens === null) && typeof budget === 'number') out.max_tokens = budget + options.defaultMaxTokens;
    // The client chose its thinking; an effort still steers adaptive thinking.
    const effort = isRecord(request.thinking) && request.thinking.type === 'adaptive' ? anthropicEffort(request.reasoning_effort) : undefined;
    if (effort !== undefined) config.effort = effort;
  } else if (request.reasoning_effort !== undefined && request.reasoning_effort !== null) {
    const mapped = thinkingFromEffort(request.reasoning_effort, out.model, maxTokens === undefined || maxTokens === null ? null : out.max_tokens, options.defaultMaxTokens);
    // With thinking on, Anthropic wants a tool-calling turn's thinking block back before its
    // results, signature and all, and chat has no place for it: such a turn goes on without thinking.
    // Nor does it take thinking with a forced tool (LangChain's structured output by function calling).
    if (!callsTools(turns.findLast((turn) => turn.role === 'assistant')) && !forcesTool(request)) {
      out.max_tokens = mapped.maxTokens;
      if (mapped.thinking !== undefined) out.thinking = mapped.thinking;
    }
    // An effort steers the whole answer, thinking or not (Claude 4.6 and later take it alone).
    if (mapped.effort !== undefined) config.effort = mapped.effort;
  }
  const format = request.response_format;
  if (isRecord(format) && format.type === 'json_schema') {
    const schema = isRecord(format.json_schema) ? format.json_schema.schema : undefined;
    if (!isRecord(schema)) throw invalidRequest('"response_format" json_schema needs "json_schema.schema", a JSON schema object.', 'response_format', 'invalid_value');
    // Anthropic's format is the schema alone: its name and description are OpenAI's, and it is always strict.
    config.format = { type: 'json_schema', schema: anthropicSchema(schema) as Record<string, unknown> };
  }
  if (config.effort !== undefined || config.format !== undefined) out.output_config = config;

  if (request.tools !== undefined && request.tools !== null) {
    const tools = translateTools(request.tools);
    if (tools.length > 0) out.tools = tools;
  }
  let toolChoice = translateToolChoice(request.tool_choice);
  // Anthropic refuses tool_choice without tools; OpenAI ignores it, so the gateway does too.
  if (out.tools !== undefined) {
    if (request.parallel_tool_calls === false && toolChoice?.type !== 'none') {
      toolChoice = { ...(toolChoice ?? { type: 'auto' }), disable_parallel_tool_use: true };
    }
    if (toolChoice !== undefined) out.tool_choice = toolChoice;
  }
  return out;
}
