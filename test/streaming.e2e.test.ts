/**
 * Streaming end to end: events forwarded as they complete (never buffered), usage always asked
 * upstream but shown only to clients that asked, upstream failures before and during a stream,
 * and the assembled log entry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, openStream, sseData } from './support/http.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-streamOPENAIkey4455';
const DEEPSEEK_KEY = 'sk-streamDEEPSEEKkey6677';

let openaiMock: MockUpstream;
let deepseekMock: MockUpstream;
let gateway: GatewayProcess;

const ask = (text: string, extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: text }], ...extra });
const chunkFrame = (delta: unknown, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 1730000000, model: 'gpt-4o', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;

before(async () => {
  openaiMock = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  deepseekMock = await startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY });
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl },
        vk_deepseek: { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseekMock.baseUrl },
        vk_mock: { provider: 'mock' },
      },
    },
    env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' },
  });
});

after(async () => {
  await gateway?.stop();
  await openaiMock?.close();
  await deepseekMock?.close();
});

describe('streaming', () => {
  it('streams OpenAI chunks unchanged with SSE headers, and holds back the usage chunk nobody asked for', async () => {
    openaiMock.requests.length = 0;
    const reply = await chat(gateway.url, 'vk_openai', ask('Hi there'));
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(reply.headers['cache-control'], 'no-cache');
    assert.equal(reply.headers['x-accel-buffering'], 'no');
    assert.ok(reply.headers['x-request-id']);

    // The gateway asked the upstream for usage although the client did not.
    assert.deepEqual(openaiMock.requests[0]?.json.stream_options, { include_usage: true });

    const data = sseData(reply.text);
    assert.equal(data.at(-1), '[DONE]');
    const chunks = data.slice(0, -1).map((text) => JSON.parse(text));
    assert.ok(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.choices.length === 1), 'no usage-only chunk');
    assert.equal(chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'openai says: Hi there');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');

    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.stream, true);
    assert.equal(entry.status, 200);
    assert.ok(entry.ttfb_ms > 0 && entry.ttfb_ms <= entry.duration_ms, `ttfb ${entry.ttfb_ms} within duration ${entry.duration_ms}`);
    assert.deepEqual(entry.usage, { input_tokens: 11, output_tokens: 7, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0 });
    // The provider's own usage object stays in the assembled answer.
    assert.deepEqual(entry.response.usage, { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, prompt_tokens_details: { cached_tokens: 0 } });
    assert.equal(entry.response.object, 'chat.completion');
    assert.equal(entry.response.choices[0].message.content, 'openai says: Hi there');
    assert.equal(entry.response.choices[0].finish_reason, 'stop');
    assert.equal(entry.request.stream, true);
    assert.equal(entry.request.stream_options, undefined, 'the log shows what the client sent');
    assert.match(entry.upstream.request_id, /^req_[0-9a-f]{32}$/);
  });

  it('passes the usage chunk to a client that asked for it', async () => {
    const reply = await chat(gateway.url, 'vk_openai', ask('Count', { stream_options: { include_usage: true } }));
    const data = sseData(reply.text);
    const usageChunk = JSON.parse(data.at(-2) ?? '{}');
    assert.deepEqual(usageChunk.choices, []);
    assert.equal(usageChunk.usage.total_tokens, 18);
  });

  it('DeepSeek: keep-alive comments, reasoning_content and usage on the final chunk', async () => {
    const reply = await chat(gateway.url, 'vk_deepseek', { ...ask('Why?'), model: 'deepseek-reasoner' });
    assert.equal(reply.status, 200);
    assert.ok(reply.text.startsWith(': keep-alive\n\n'), 'keep-alive passed on');
    const chunks = sseData(reply.text).slice(0, -1).map((text) => JSON.parse(text));
    assert.equal(chunks.map((chunk) => chunk.choices[0].delta.reasoning_content ?? '').join(''), 'Thinking about it.');
    assert.equal(chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'deepseek says: Why?');
    assert.ok(chunks.every((chunk) => chunk.usage === undefined), 'usage stripped for a client that did not ask');

    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.response.choices[0].message.reasoning_content, 'Thinking about it.');
    // DeepSeek's own fields stay in the assembled answer's usage; the log's usage is the normalised one.
    assert.equal(entry.response.usage.prompt_cache_miss_tokens, 11);
    assert.deepEqual(entry.usage, { input_tokens: 11, output_tokens: 7, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 3 });

    const asked = await chat(gateway.url, 'vk_deepseek', { ...ask('Why?', { stream_options: { include_usage: true } }), model: 'deepseek-chat' });
    const last = JSON.parse(sseData(asked.text).at(-2) ?? '{}');
    assert.equal(last.choices[0].finish_reason, 'stop');
    assert.equal(last.usage.prompt_cache_hit_tokens, 0);
  });

  it('forwards the first chunk while the upstream is still sending (no buffering)', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkFrame({ role: 'assistant', content: 'first' }));
      await released; // the rest only comes once the client proved it got the first chunk
      res.write(chunkFrame({ content: ' second' }));
      res.write(chunkFrame({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
    try {
      const { res } = await openStream(gateway.url, 'vk_openai', ask('slow'));
      let text = '';
      const firstChunk = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('first chunk not forwarded while the upstream was waiting')), 5000);
        res.setEncoding('utf8').on('data', (piece: string) => {
          text += piece;
          if (text.includes('first')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      await firstChunk;
      assert.doesNotMatch(text, /second/);
      release();
      await new Promise((resolve) => res.on('end', resolve));
      assert.match(text, /second/);
      assert.ok(text.endsWith('data: [DONE]\n\n'));
    } finally {
      release();
      openaiMock.behave(null);
    }
  });

  it('sends its head alone when the first event is slow to come (a model thinking before its first chunk), as the provider did: an SDK\'s timeout runs until the head; an error after it is an error event', async () => {
    let release!: (frames: string) => void;
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      // The first event only once the client has its head.
      res.end(await new Promise<string>((resolve) => (release = resolve)));
    });
    try {
      for (const [frames, ends] of [[`${chunkFrame({ role: 'assistant', content: 'thought' })}${chunkFrame({}, 'stop')}data: [DONE]\n\n`, /"thought"[^]*data: \[DONE\]\n\n$/], [`data: ${JSON.stringify(openAIError('Rate limit reached', 'rate_limit_error', 'rate_limit_exceeded'))}\n\n`, /"Rate limit reached"/]] as const) {
        const noHead = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no head while the first event was held')), 20_000).unref());
        const { res } = await Promise.race([openStream(gateway.url, 'vk_openai', ask('think first')), noHead]);
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
        let text = '';
        res.setEncoding('utf8').on('data', (piece: string) => (text += piece));
        release(frames);
        await new Promise((resolve) => res.on('end', resolve));
        assert.match(text, ends);
        const entry = await waitForEntry(gateway.logFile, String(res.headers['x-request-id']));
        assert.equal(entry.status, frames.includes('Rate limit') ? 429 : 200);
        assert.ok(entry.ttfb_ms >= 4500, `the first byte is the first event's, not the head's: ${entry.ttfb_ms} ms`);
      }
    } finally {
      openaiMock.behave(null);
    }
  });

  it('reassembles frames split at every byte with \\r\\n line ends', async () => {
    const body = [chunkFrame({ role: 'assistant', content: 'Hé' }), chunkFrame({ content: 'llo 世界' }), chunkFrame({}, 'stop'), 'data: [DONE]\n\n'].join('').replaceAll('\n', '\r\n');
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const bytes = Buffer.from(body);
      for (let i = 0; i < bytes.length; i += 7) {
        res.write(bytes.subarray(i, i + 7));
        await new Promise((resolve) => setImmediate(resolve));
      }
      res.end();
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('split'));
      const data = sseData(reply.text);
      assert.equal(data.length, 4);
      assert.equal(data.slice(0, -1).map((text) => JSON.parse(text).choices[0].delta.content ?? '').join(''), 'Héllo 世界');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.response.choices[0].message.content, 'Héllo 世界');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('logs the answer in order when reads mix forwarded events and events cut in half', async () => {
    // \n line ends take the byte-range path: whole plain events are forwarded as bytes (and
    // assembled at once), a cut event waits in the parser; the log must still read in order.
    const words = Array.from({ length: 40 }, (_, i) => `wörd${i} `);
    const events = [chunkFrame({ role: 'assistant', content: '' }), ...words.map((word) => chunkFrame({ content: word })), chunkFrame({}, 'stop'), 'data: [DONE]\n\n'];
    // Reads of three events, the third cut in half: two forwarded as bytes, one parked; the
    // read with its second half leaves the parser idle again for the next group.
    const reads: Buffer[] = [];
    for (let i = 0; i < events.length; i += 3) {
      const group = Buffer.from(events.slice(i, i + 3).join(''));
      const cut = group.length - Math.floor(Buffer.byteLength(events[Math.min(i + 2, events.length - 1)] as string) / 2);
      reads.push(group.subarray(0, cut), group.subarray(cut));
    }
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const read of reads) {
        res.write(read);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      res.end();
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('mixed'));
      const data = sseData(reply.text);
      assert.equal(data.at(-1), '[DONE]');
      assert.equal(data.slice(0, -1).map((text) => JSON.parse(text).choices[0].delta.content ?? '').join(''), words.join(''));
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.response.choices[0].message.content, words.join(''));
      assert.equal(entry.response.choices[0].finish_reason, 'stop');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('answers an upstream error status on a stream request as a normal JSON error', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '2' });
      res.end(JSON.stringify(openAIError('Rate limit reached', 'requests', 'rate_limit_exceeded')));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(reply.status, 429);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.equal(reply.headers['retry-after'], '2');
      assert.equal(reply.json.error.code, 'rate_limit_exceeded');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('ends the client stream with an error event when the upstream dies mid-stream', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkFrame({ role: 'assistant', content: 'partial' }));
      setTimeout(() => res.socket?.destroy(), 30);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(reply.status, 200);
      const data = sseData(reply.text);
      assert.equal(JSON.parse(data[0] ?? '{}').choices[0].delta.content, 'partial');
      const last = JSON.parse(data.at(-1) ?? '{}');
      assert.equal(last.error.code, 'upstream_connection_lost');
      assert.equal(typeof last.error.message, 'string');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.error.code, 'upstream_connection_lost');
      assert.equal(entry.response.choices[0].message.content, 'partial');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('passes an upstream error event on and ends the stream', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkFrame({ role: 'assistant', content: 'a' }));
      res.write(`data: ${JSON.stringify(openAIError('The server had an error while processing your request.', 'server_error'))}\n\n`);
      // the upstream leaves the connection open: the gateway must end the client's stream anyway
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('x'));
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.equal(last.error.message, 'The server had an error while processing your request.');
      assert.equal(last.error.type, 'server_error');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('completes a stream that ends after its finish chunk without [DONE], and flags one that ends early', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(chunkFrame({ role: 'assistant', content: 'ok' }) + chunkFrame({}, 'stop'));
    });
    try {
      const complete = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(sseData(complete.text).at(-1), '[DONE]');
      openaiMock.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(chunkFrame({ role: 'assistant', content: 'cut' }));
      });
      const early = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(JSON.parse(sseData(early.text).at(-1) ?? '{}').error.code, 'upstream_incomplete_stream');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('logs streamed tool calls with their complete arguments', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkFrame({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }));
      res.write(chunkFrame({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
      res.write(chunkFrame({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
      res.write(chunkFrame({}, 'tool_calls'));
      res.end('data: [DONE]\n\n');
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('weather?'));
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      const message = entry.response.choices[0].message;
      assert.equal(message.content, null);
      assert.deepEqual(message.tool_calls, [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
      assert.equal(entry.response.choices[0].finish_reason, 'tool_calls');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('refuses an upstream that answers a stream request without an event stream (502)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":"x","object":"chat.completion","choices":[]}');
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_invalid_response');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('takes an event stream whose media type is written in another case (Text/Event-Stream)', async () => {
    const chunk = { id: 'chatcmpl-case', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { content: 'cased' }, finish_reason: 'stop' }] };
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'Text/Event-Stream; charset=utf-8' });
      res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', ask('x'));
      assert.equal(reply.status, 200);
      assert.match(reply.text, /"content":"cased"/);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('relays a whole stream that arrives in one read: plain events as bytes, the rest translated, the log assembled', async () => {
    const usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
    const base = { id: 'chatcmpl-one', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o' };
    const events = [
      { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage: null },
      { ...base, choices: [{ index: 0, delta: { content: 'one ' }, finish_reason: null }], usage: null },
      { ...base, choices: [{ index: 0, delta: { content: 'read ' }, finish_reason: null }], usage: null },
      { ...base, choices: [{ index: 0, delta: { content: 'only' }, finish_reason: null }], usage: null },
      { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: null },
      { ...base, choices: [], usage },
    ];
    const whole = events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join('') + 'data: [DONE]\n\n';
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(whole);
    });
    const quiet = await startGateway({
      keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl } } },
      logFile: 'off',
      env: { LOG_CONSOLE: 'off' },
    });
    try {
      for (const [gw, logged] of [[gateway, true], [quiet, false]] as const) {
        const reply = await chat(gw.url, 'vk_openai', ask('one read'));
        const data = sseData(reply.text);
        assert.equal(data.at(-1), '[DONE]');
        const chunks = data.slice(0, -1).map((text) => JSON.parse(text));
        assert.equal(chunks.length, 5, 'the usage chunk nobody asked for is held back');
        assert.equal(chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'one read only');
        assert.equal(data[1], JSON.stringify(events[1]), 'plain events go out byte for byte');
        if (logged) {
          const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
          assert.equal(entry.response.choices[0].message.content, 'one read only');
          assert.equal(entry.response.choices[0].finish_reason, 'stop');
          assert.deepEqual(entry.usage, { input_tokens: 5, output_tokens: 3, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0 });
          assert.deepEqual(entry.response.usage, usage);
        }
      }
    } finally {
      openaiMock.behave(null);
      await quiet.stop();
    }
  });

  it('streams from the mock provider, with usage in the log', async () => {
    const reply = await chat(gateway.url, 'vk_mock', ask('stream me'));
    const chunks = sseData(reply.text).slice(0, -1).map((text) => JSON.parse(text));
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join(''), 'Echo: stream me');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.ok(entry.usage.input_tokens > 0 && entry.usage.output_tokens > 0);
  });

  it('the mock echoes at most 4,096 characters, cut with "…", in at most 64 content events', async () => {
    // A reviewer's 2 MB of one-letter words came back as 184 MB of events, one per word.
    const words = 'a '.repeat(100_000);
    const echo = `Echo: ${words.trim().slice(0, 4096)}…`;
    const reply = await chat(gateway.url, 'vk_mock', ask(words));
    assert.equal(reply.status, 200);
    const chunks = sseData(reply.text).slice(0, -1).map((text) => JSON.parse(text));
    const contents = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').filter((content: string) => content !== '');
    assert.equal(contents.join(''), echo);
    assert.ok(contents.length <= 64, `${contents.length} content events`);
    assert.ok(reply.text.length < 32 * 1024, `${reply.text.length} bytes streamed`);

    const whole = await chat(gateway.url, 'vk_mock', { ...ask(words), stream: false });
    assert.equal(whole.json.choices[0].message.content, echo);

    // The cut never splits a character of two UTF-16 units (an emoji): it goes before it.
    const emoji = await chat(gateway.url, 'vk_mock', { ...ask(`${'x'.repeat(4095)}😀 more`), stream: false });
    assert.equal(emoji.json.choices[0].message.content, `Echo: ${'x'.repeat(4095)}…`);

    // A short message still streams one event per word.
    const short = await chat(gateway.url, 'vk_mock', ask('one two three'));
    const pieces = sseData(short.text).slice(0, -1).map((text) => JSON.parse(text).choices[0]?.delta.content ?? '').filter((content: string) => content !== '');
    assert.deepEqual(pieces, ['Echo: ', 'one ', 'two ', 'three']);
  });
});
