/**
 * Agent-sized request bodies: one coding-agent conversation (a long system prompt, tool
 * definitions, turns of text, tool calls and tool results with file contents) written as a Chat
 * Completions, a Messages and a Responses body, the way Codex, Claude Code and the SDKs send
 * them. Deterministic: the same size gives the same bytes in every run.
 */

interface ToolCall {
  id: string;
  name: string;
  input: Record<string, unknown>;
  /** What the tool answered (a file, a command's output). */
  result: string;
}

interface Turn {
  user: string | null;
  text: string;
  calls: ToolCall[];
}

export interface Conversation {
  system: string;
  tools: Array<{ name: string; description: string; parameters: Record<string, unknown> }>;
  turns: Turn[];
  /** The question the request asks now. */
  last: string;
}

/** A small xorshift generator: the fixtures (and the tests' random documents) must not change between runs. */
export function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

const WORDS = ['request', 'stream', 'upstream', 'handler', 'config', 'const', 'return', 'await', 'value', 'error', 'token', 'buffer', 'length', 'client', 'server', 'entry', 'limit', 'budget', 'model', 'index', 'result', 'status', 'header', 'parse', 'string', 'number', 'object', 'array', 'function', 'import', 'export', 'interface', 'type', 'null', 'true', 'false', 'if', 'else', 'for', 'while', 'async', 'new', 'this', 'throw'];

function words(next: () => number, count: number): string {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(WORDS[Math.floor(next() * WORDS.length)] as string);
  return out.join(' ');
}

/** Something shaped like a source file: indented lines, quotes, braces, a non-ASCII character now and then. */
function sourceFile(next: () => number, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const indent = '  '.repeat(Math.floor(next() * 4));
    const kind = next();
    if (kind < 0.15) out.push(`${indent}// ${words(next, 8)} — "${words(next, 2)}"`);
    else if (kind < 0.3) out.push(`${indent}if (${words(next, 2)} === '${words(next, 1)}') {`);
    else if (kind < 0.4) out.push(`${indent}}`);
    else out.push(`${indent}const ${words(next, 1)}_${i} = ${words(next, 5)}(\`${words(next, 2)}\`);`);
  }
  return out.join('\n');
}

const TOOLS: Conversation['tools'] = [
  { name: 'read_file', description: 'Read a file from the workspace.', parameters: { type: 'object', properties: { path: { type: 'string', description: 'Path relative to the workspace root.' }, offset: { type: 'integer' }, limit: { type: 'integer' } }, required: ['path'] } },
  { name: 'run_command', description: 'Run a shell command in the workspace and return its output.', parameters: { type: 'object', properties: { command: { type: 'string' }, timeout_ms: { type: 'integer' } }, required: ['command'] } },
  { name: 'edit_file', description: 'Replace a unique string in a file.', parameters: { type: 'object', properties: { path: { type: 'string' }, old_string: { type: 'string' }, new_string: { type: 'string' } }, required: ['path', 'old_string', 'new_string'] } },
  { name: 'search', description: 'Search the workspace for a regular expression.', parameters: { type: 'object', properties: { pattern: { type: 'string' }, glob: { type: 'string' } }, required: ['pattern'] } },
];

/** A conversation whose Chat Completions body is about `bytes` long. */
export function agentConversation(bytes: number): Conversation {
  const next = random(bytes);
  const system = `You are a coding agent working in a repository. ${Array.from({ length: 60 }, () => `${words(next, 14)}.`).join(' ')}`;
  const conversation: Conversation = { system, tools: TOOLS, turns: [], last: 'Now run the tests again and tell me what still fails.' };
  // The body grows by each new message and its comma (they go before the last user message).
  let size = Buffer.byteLength(chatBody(conversation));
  for (let n = 0; size < bytes; n++) {
    const file = sourceFile(next, 40 + Math.floor(next() * 80));
    const turn: Turn = {
      user: n % 5 === 0 ? `Please ${words(next, 12)}.` : null,
      text: `I'll ${words(next, 10)}.`,
      calls: [
        { id: `call_${n}_a`, name: 'read_file', input: { path: `src/${words(next, 1)}/${words(next, 1)}.ts` }, result: file },
        ...(n % 3 === 0 ? [{ id: `call_${n}_b`, name: 'run_command', input: { command: 'npm test -- --reporter=dot' }, result: `> test\n${words(next, 30)}\n✔ ${n * 7} passing\n✖ 1 failing` }] : []),
      ],
    };
    conversation.turns.push(turn);
    for (const message of chatMessages(turn)) size += Buffer.byteLength(JSON.stringify(message)) + 1;
  }
  return conversation;
}

/** One turn as Chat Completions messages. */
function chatMessages(turn: Turn): unknown[] {
  return [
    ...(turn.user === null ? [] : [{ role: 'user', content: turn.user }]),
    { role: 'assistant', content: turn.text, tool_calls: turn.calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.input) } })) },
    ...turn.calls.map((call) => ({ role: 'tool', tool_call_id: call.id, content: call.result })),
  ];
}

/** As the OpenAI SDKs send it: system message, user and assistant turns, tool calls, tool messages. */
export function chatBody(c: Conversation, model = 'gpt-4o-mini'): string {
  const messages: unknown[] = [{ role: 'system', content: c.system }];
  for (const turn of c.turns) messages.push(...chatMessages(turn));
  messages.push({ role: 'user', content: c.last });
  return JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, max_tokens: 4096, tools: c.tools.map((tool) => ({ type: 'function', function: tool })), messages });
}

/** As Claude Code sends it: system blocks, tool_use and tool_result blocks, a large max_tokens. */
export function messagesBody(c: Conversation, model = 'claude-sonnet-4-5'): string {
  const messages: Array<{ role: string; content: unknown[] }> = [];
  const user = (blocks: unknown[]): void => {
    const last = messages.at(-1);
    if (last?.role === 'user') last.content.push(...blocks);
    else messages.push({ role: 'user', content: blocks });
  };
  for (const turn of c.turns) {
    if (turn.user !== null) user([{ type: 'text', text: turn.user }]);
    if (messages.length === 0) user([{ type: 'text', text: 'Go on.' }]);
    messages.push({ role: 'assistant', content: [{ type: 'text', text: turn.text }, ...turn.calls.map((call) => ({ type: 'tool_use', id: call.id, name: call.name, input: call.input }))] });
    user(turn.calls.map((call) => ({ type: 'tool_result', tool_use_id: call.id, content: call.result })));
  }
  user([{ type: 'text', text: c.last, cache_control: { type: 'ephemeral' } }]);
  return JSON.stringify({
    model,
    max_tokens: 32000,
    stream: true,
    system: [{ type: 'text', text: c.system, cache_control: { type: 'ephemeral' } }],
    tools: c.tools.map((tool) => ({ name: tool.name, description: tool.description, input_schema: tool.parameters })),
    messages,
    metadata: { user_id: 'user_bench_session_0' },
  });
}

/** As Codex sends it: instructions, input items (messages, function calls and outputs), store false. */
export function responsesBody(c: Conversation, model = 'gpt-4o-mini'): string {
  const input: unknown[] = [];
  for (const turn of c.turns) {
    if (turn.user !== null) input.push({ type: 'message', role: 'user', content: [{ type: 'input_text', text: turn.user }] });
    input.push({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: turn.text }] });
    for (const call of turn.calls) input.push({ type: 'function_call', call_id: call.id, name: call.name, arguments: JSON.stringify(call.input) });
    for (const call of turn.calls) input.push({ type: 'function_call_output', call_id: call.id, output: call.result });
  }
  input.push({ type: 'message', role: 'user', content: [{ type: 'input_text', text: c.last }] });
  return JSON.stringify({
    model,
    instructions: c.system,
    input,
    tools: c.tools.map((tool) => ({ type: 'function', name: tool.name, description: tool.description, strict: false, parameters: tool.parameters })),
    tool_choice: 'auto',
    parallel_tool_calls: false,
    store: false,
    stream: true,
    include: [],
    prompt_cache_key: 'bench-session-0',
  });
}
