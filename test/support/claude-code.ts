/**
 * A request shaped like Claude Code's real first turn (docs/providers.md §8.8, captured from
 * Claude Code 2.1.328): `POST /v1/messages?beta=true`, ~90 KB, `system` as three text blocks (two
 * cached), one user turn of nine text blocks (the last cached) followed by a `role: "system"`
 * message, twelve custom tools (JSON Schema with `$schema` and `additionalProperties`, one with
 * `defer_loading`), `metadata.user_id` holding a JSON string, `context_management`, streamed; its
 * headers as Claude Code sends them. The default model asks for adaptive thinking and 128,000
 * output tokens; `--model claude-sonnet-4-5` for thinking with a 31,999 budget and 32,000.
 */

/** Six betas, as Claude Code sends them (context management and deferred tools need theirs). */
export const CLAUDE_CODE_BETAS = 'claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14,thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20';

/** Claude Code's headers beside the key (which the caller adds as x-api-key or Authorization). */
export const CLAUDE_CODE_HEADERS: Readonly<Record<string, string>> = {
  accept: 'application/json',
  'content-type': 'application/json',
  'user-agent': 'claude-cli/2.1.328 (external, cli)',
  'x-app': 'cli',
  'x-claude-code-session-id': '7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b',
  'x-stainless-arch': 'x64',
  'x-stainless-lang': 'js',
  'x-stainless-os': 'Linux',
  'x-stainless-package-version': '0.70.0',
  'x-stainless-retry-count': '0',
  'x-stainless-runtime': 'node',
  'x-stainless-runtime-version': 'v24.11.0',
  'x-stainless-timeout': '600',
  'anthropic-dangerous-direct-browser-access': 'true',
  'anthropic-version': '2023-06-01',
  'anthropic-beta': CLAUDE_CODE_BETAS,
};

/** Deterministic prose of about `length` characters (instructions, tool manuals, file contents). */
export function prose(seed: string, length: number): string {
  const words = ['the', 'tool', 'runs', 'in', 'a', 'sandbox', 'and', 'returns', 'its', 'output;', 'use', 'absolute', 'paths,', 'never', 'guess', 'file', 'contents.', 'When', 'unsure,', 'read', 'first.'];
  let text = `${seed}: `;
  for (let i = 0; text.length < length; i++) text += `${words[(i * 7 + seed.length) % words.length]} `;
  return text.slice(0, length);
}

const TOOL_NAMES = ['Task', 'Bash', 'Glob', 'Grep', 'ExitPlanMode', 'Read', 'Edit', 'Write', 'NotebookEdit', 'WebFetch', 'TodoWrite', 'mcp__github__search_issues'];

function tool(name: string, index: number): Record<string, unknown> {
  const schema = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    type: 'object',
    additionalProperties: false,
    properties: {
      [index % 2 === 0 ? 'command' : 'file_path']: { type: 'string', description: prose(`${name} argument`, 200) },
      timeout: { type: 'number', description: 'Optional timeout in milliseconds (max 600000)' },
    },
    required: [index % 2 === 0 ? 'command' : 'file_path'],
  };
  const out: Record<string, unknown> = { name, description: prose(`${name} manual`, 4000), input_schema: schema };
  if (name.startsWith('mcp__')) out.defer_loading = true;
  return out;
}

export interface ClaudeCodeOptions {
  /** The default model (adaptive thinking, 128,000) or `--model claude-sonnet-4-5` (a thinking budget, 32,000). */
  readonly variant?: 'default' | 'sonnet';
}

export function claudeCodeFirstTurn(options: ClaudeCodeOptions = {}): Record<string, unknown> {
  const sonnet = options.variant === 'sonnet';
  const userBlocks = Array.from({ length: 9 }, (_, i) => {
    const block: Record<string, unknown> = { type: 'text', text: i === 8 ? 'Fix the failing test in src/parser.ts and explain the cause.' : `<system-reminder>\n${prose(`context ${i}`, 3000)}\n</system-reminder>` };
    if (i === 8) block.cache_control = { type: 'ephemeral' };
    return block;
  });
  const body: Record<string, unknown> = {
    model: sonnet ? 'claude-sonnet-4-5' : 'claude-opus-5-5',
    messages: [
      { role: 'user', content: userBlocks },
      { role: 'system', content: [{ type: 'text', text: 'Plan mode is off. Answer in the language of the user.', cache_control: { type: 'ephemeral' } }] },
    ],
    system: [
      { type: 'text', text: "You are Claude Code, Anthropic's official CLI for Claude." },
      { type: 'text', text: prose('instructions', 14000), cache_control: { type: 'ephemeral' } },
      { type: 'text', text: prose('environment', 2000), cache_control: { type: 'ephemeral' } },
    ],
    tools: TOOL_NAMES.map(tool),
    metadata: { user_id: JSON.stringify({ device_id: 'a'.repeat(64), account_uuid: '6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', session_id: '7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b' }) },
    max_tokens: sonnet ? 32000 : 128000,
    thinking: sonnet ? { type: 'enabled', budget_tokens: 31999, display: 'omitted' } : { type: 'adaptive', display: 'omitted' },
    context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
  };
  if (!sonnet) body.output_config = { effort: 'medium' };
  body.stream = true;
  return body;
}
