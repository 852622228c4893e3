/**
 * A request shaped like Codex CLI's real first turn (docs/providers.md §7.7, a captured Codex
 * 0.169.0 request): `POST /v1/responses`, streamed, `store: false`,
 * `include: ["reasoning.encrypted_content"]`, `reasoning: {"summary": "auto"}`,
 * `prompt_cache_key`, `client_metadata` (JSON strings), two `developer` and two `user` message
 * items of `input_text` parts, eight `function` tools (`strict: false`), one `namespace` tool
 * holding several functions, and `{"type": "web_search", "external_web_access": false}`;
 * `tool_choice: "auto"`, `parallel_tool_calls: true`, no `instructions`, `max_output_tokens` or
 * `temperature`. Its headers as Codex sends them.
 */
import { prose } from './claude-code.js';

/** Codex's headers beside the key (which the caller adds as Authorization: Bearer). */
export const CODEX_HEADERS: Readonly<Record<string, string>> = {
  accept: 'text/event-stream',
  'content-type': 'application/json',
  originator: 'codex_cli_rs',
  'user-agent': 'codex_cli_rs/0.169.0 (Ubuntu 24.4.0; x86_64) xterm-256color',
  'session-id': '0199a6c1-7e2f-7c30-9d41-6a8b2f0e5c11',
  'thread-id': '0199a6c1-7e2f-7c30-9d41-6a8b2f0e5c12',
  'x-client-request-id': '0199a6c1-7e2f-7c30-9d41-6a8b2f0e5c13',
  'x-codex-window-id': '1',
  'x-codex-turn-metadata': '{"turn":1}',
  'x-codex-beta-features': '',
};

const FUNCTIONS = ['exec_command', 'write_stdin', 'update_plan', 'request_user_input', 'view_image', 'list_mcp_resources', 'read_mcp_resource', 'get_weather'];

function fn(name: string): Record<string, unknown> {
  return {
    type: 'function',
    name,
    description: prose(`${name}`, 600),
    strict: false,
    parameters: { type: 'object', properties: { [name === 'get_weather' ? 'city' : 'cmd']: { type: 'string', description: prose(`${name} argument`, 120) } }, required: [name === 'get_weather' ? 'city' : 'cmd'], additionalProperties: false },
  };
}

/** `model`: the model Codex was started with; `user`: the prompt. */
export function codexFirstTurn(model: string, user: string): Record<string, unknown> {
  return {
    model,
    input: [
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: prose('<permissions instructions>', 4000) }] },
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: prose('<collaboration_mode>', 3000) }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: `# AGENTS.md instructions for /work\n\n${prose('<INSTRUCTIONS>', 5000)}` }, { type: 'input_text', text: '<environment_context>\n  <cwd>/work</cwd>\n  <shell>bash</shell>\n</environment_context>' }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: user }] },
    ],
    tools: [
      ...FUNCTIONS.map(fn),
      { type: 'namespace', name: 'multi_agent_v1', description: 'Spawn and manage sub-agents.', tools: ['spawn_agent', 'send_input', 'wait', 'close_agent'].map(fn) },
      { type: 'web_search', external_web_access: false },
    ],
    tool_choice: 'auto',
    parallel_tool_calls: true,
    reasoning: { summary: 'auto' },
    store: false,
    stream: true,
    include: ['reasoning.encrypted_content'],
    prompt_cache_key: '0199a6c1-7e2f-7c30-9d41-6a8b2f0e5c12',
    client_metadata: { 'x-codex-turn-metadata': '{"turn":1,"sandbox":"workspace-write"}' },
  };
}
