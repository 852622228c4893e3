/**
 * The benchmark's mock provider, in its own process: OpenAI (`/v1/chat/completions`, `/v1/responses`)
 * and Anthropic (`/v1/messages`) formats, JSON and streams, every answer precomputed so the upstream
 * costs as little as possible and the same for every target. A request whose body names the
 * model "slow" gets its stream paced (one chunk per BENCH_SLOW_CHUNK_MS), for the memory test.
 *
 *   node dist/bench/bench/upstream.js <port>      (prints "ready <port>" when listening)
 */
import http from 'node:http';

export const STREAM_CHUNKS = 50;
const SLOW_CHUNK_MS = Number(process.env.BENCH_SLOW_CHUNK_MS ?? 100);
const LATENCY_MS = Number(process.env.BENCH_UPSTREAM_LATENCY_MS ?? 0);

const created = 1730000000;
const usage = { prompt_tokens: 12, completion_tokens: STREAM_CHUNKS, total_tokens: 12 + STREAM_CHUNKS };

const openaiJson = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'The quick brown fox jumps over the lazy dog.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { ...usage, completion_tokens: 10, total_tokens: 22, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } },
    system_fingerprint: 'fp_bench',
  }),
);

// OpenAI pads each chunk with random characters by default (`obfuscation`, against side channels
// that read token lengths off packet sizes): every chunk differs from the one before in two strings.
const padding = (i: number): string => 'q7Zk2Xw9Lm'.slice(0, 1 + ((i * 7) % 10));
const chunk = (delta: object, finish: string | null, obfuscation: string): string =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_bench', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], obfuscation })}\n\n`;
const openaiEvents: Buffer[] = [
  Buffer.from(chunk({ role: 'assistant', content: '' }, null, padding(STREAM_CHUNKS))),
  ...Array.from({ length: STREAM_CHUNKS }, (_, i) => Buffer.from(chunk({ content: `word${i} ` }, null, padding(i)))),
  Buffer.from(chunk({}, 'stop', padding(STREAM_CHUNKS + 1)) + `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created, model: 'gpt-4o-mini-2024-07-18', choices: [], usage })}\n\n` + 'data: [DONE]\n\n'),
];

const anthropicJson = Buffer.from(
  JSON.stringify({
    id: 'msg_bench',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5-20250929',
    content: [{ type: 'text', text: 'The quick brown fox jumps over the lazy dog.' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 },
  }),
);

const event = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const anthropicEvents: Buffer[] = [
  Buffer.from(
    event('message_start', { message: { id: 'msg_bench', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }) +
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  ),
  ...Array.from({ length: STREAM_CHUNKS }, (_, i) => Buffer.from(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `word${i} ` } }))),
  Buffer.from(event('content_block_stop', { index: 0 }) + event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: STREAM_CHUNKS } }) + event('message_stop', {})),
];

const text = 'The quick brown fox jumps over the lazy dog.';
const responseObject = (status: string, output: object[], usageField: object | null): object => ({ id: 'resp_bench', object: 'response', created_at: created, status, model: 'gpt-4o-mini-2024-07-18', output, usage: usageField });
const message = (content: string): object => ({ type: 'message', id: 'msg_bench', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: content, annotations: [] }] });
const responsesUsage = (output: number): object => ({ input_tokens: 12, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 12 + output });
const responsesJson = Buffer.from(JSON.stringify(responseObject('completed', [message(text)], responsesUsage(10))));
let sequence = 0;
const responsesEvent = (type: string, data: object): string => event(type, { sequence_number: sequence++, ...data });
const streamedText = Array.from({ length: STREAM_CHUNKS }, (_, i) => `word${i} `).join('');
const responsesEvents: Buffer[] = [
  Buffer.from(
    responsesEvent('response.created', { response: responseObject('in_progress', [], null) }) +
      responsesEvent('response.in_progress', { response: responseObject('in_progress', [], null) }) +
      responsesEvent('response.output_item.added', { output_index: 0, item: { type: 'message', id: 'msg_bench', status: 'in_progress', role: 'assistant', content: [] } }) +
      responsesEvent('response.content_part.added', { item_id: 'msg_bench', output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
  ),
  ...Array.from({ length: STREAM_CHUNKS }, (_, i) => Buffer.from(responsesEvent('response.output_text.delta', { item_id: 'msg_bench', output_index: 0, content_index: 0, delta: `word${i} `, logprobs: [] }))),
  Buffer.from(
    responsesEvent('response.output_text.done', { item_id: 'msg_bench', output_index: 0, content_index: 0, text: streamedText, logprobs: [] }) +
      responsesEvent('response.content_part.done', { item_id: 'msg_bench', output_index: 0, content_index: 0, part: { type: 'output_text', text: streamedText, annotations: [] } }) +
      responsesEvent('response.output_item.done', { output_index: 0, item: message(streamedText) }) +
      responsesEvent('response.completed', { response: responseObject('completed', [message(streamedText)], responsesUsage(STREAM_CHUNKS)) }),
  ),
];

type Api = 'chat' | 'messages' | 'responses';
const JSON_ANSWERS: Record<Api, Buffer> = { chat: openaiJson, messages: anthropicJson, responses: responsesJson };
const STREAMS: Record<Api, Buffer[]> = { chat: openaiEvents, messages: anthropicEvents, responses: responsesEvents };

const jsonHeaders = (length: number) => ({ 'content-type': 'application/json', 'content-length': length, 'x-request-id': 'req_bench' });
const sseHeaders = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': 'req_bench' };

function answer(res: http.ServerResponse, api: Api, stream: boolean, slow: boolean): void {
  if (!stream) {
    const body = JSON_ANSWERS[api];
    res.writeHead(200, jsonHeaders(body.length));
    res.end(body);
    return;
  }
  const events = STREAMS[api];
  res.writeHead(200, sseHeaders);
  if (!slow) {
    // Unpaced: every event its own write, as a real provider flushes them, in one tick.
    for (let i = 0; i < events.length - 1; i++) res.write(events[i]);
    res.end(events[events.length - 1]);
    return;
  }
  let i = 0;
  const timer = setInterval(() => {
    if (res.destroyed) return clearInterval(timer);
    if (i === events.length - 1) {
      clearInterval(timer);
      res.end(events[i]);
    } else res.write(events[i++]);
  }, SLOW_CHUNK_MS);
}

const server = http.createServer({ keepAliveTimeout: 120_000, noDelay: true }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    const api: Api = req.url === '/v1/messages' ? 'messages' : req.url === '/v1/responses' ? 'responses' : 'chat';
    const stream = body.includes('"stream":true');
    const slow = body.includes('"model":"slow"');
    if (LATENCY_MS > 0) setTimeout(() => answer(res, api, stream, slow), LATENCY_MS);
    else answer(res, api, stream, slow);
  });
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready ${typeof address === 'object' && address !== null ? address.port : ''}\n`);
});
