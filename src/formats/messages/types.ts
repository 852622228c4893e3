/**
 * The Anthropic Messages API shapes the translators produce and read (docs/providers.md, Anthropic).
 */

export interface TextBlock {
  type: 'text';
  text: string;
  cache_control?: unknown;
}

export interface ImageBlock {
  type: 'image' | 'document';
  source: { type: 'base64'; media_type: string; data: string } | { type: 'text'; media_type: 'text/plain'; data: string } | { type: 'url'; url: string };
  /** A document's title. */
  title?: string;
  cache_control?: unknown;
}

export interface ToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

export interface ToolResultBlock {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | Array<TextBlock | ImageBlock>;
  is_error?: boolean;
}

export type ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock;

export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: string | ContentBlock[];
}

export interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: unknown;
}

export type AnthropicToolChoice =
  | { type: 'auto' | 'any' | 'none'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean };

/** A message as a client may send it: `user`, `assistant`, or (newer models) `system` mid-conversation. */
export interface MessageParam {
  role: string;
  content: unknown;
}

/**
 * A Messages request: what the chat translation produces, and what a client sends (only the
 * fields the gateway reads are typed; everything else travels untouched).
 */
export interface AnthropicRequest {
  model: string;
  max_tokens: number;
  messages: MessageParam[];
  system?: TextBlock[];
  stop_sequences?: string[];
  temperature?: number;
  top_p?: number;
  top_k?: number;
  stream?: boolean;
  tools?: AnthropicTool[];
  tool_choice?: AnthropicToolChoice;
  metadata?: { user_id: string };
  thinking?: unknown;
  [field: string]: unknown;
}

/** Anthropic's output settings: the effort of adaptive thinking, structured output by a JSON schema. */
export interface OutputConfig {
  effort?: string;
  format?: { type: 'json_schema'; schema: Record<string, unknown> };
}

/** A response content block as Anthropic sends it (only the fields read are typed). */
export interface ResponseBlock {
  type: string;
  text?: string;
  thinking?: string;
  signature?: string;
  id?: string;
  name?: string;
  input?: unknown;
  [field: string]: unknown;
}

export interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  [field: string]: unknown;
}

export interface AnthropicResponse {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: ResponseBlock[];
  stop_reason: string | null;
  stop_sequence: string | null;
  usage: AnthropicUsage;
  [field: string]: unknown;
}

/** A stream event's data; `type` names it (message_start, content_block_delta, …). */
export interface MessagesEvent {
  type: string;
  [field: string]: unknown;
}

/**
 * The signature of thinking the gateway made from another provider's reasoning (`reasoning_content`):
 * not Anthropic's (it signs nothing), but not empty, as clients such as the Vercel AI SDK drop
 * thinking without one and then cannot send it back (DeepSeek's thinking mode requires it after
 * tool calls). Coming back, the thinking's text is what is read; the signature is not.
 */
export const UNSIGNED_THINKING = 'llm-gateway:unsigned';
