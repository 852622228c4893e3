/**
 * Regressions from an adversarial review: what hostile or broken clients and upstreams sent, and
 * what the gateway must do instead of crashing, hanging, leaking or double-billing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startGateway, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, request, sseData } from './support/http.js';
import { openAIError, startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-hostileOPENAIkey-5150';
const DEEPSEEK_KEY = 'sk-hostileDEEPSEEKkey-6160';
const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] };
const deep = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

let openaiMock: MockUpstream;
let deepseekMock: MockUpstream;
let gateway: GatewayProcess;

before(async () => {
  openaiMock = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
  deepseekMock = await startOpenAIMock({ flavor: 'deepseek', apiKey: DEEPSEEK_KEY });
  gateway = await startGateway({
    keys: {
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl },
        vk_deepseek: { provider: 'deepseek', api_key: DEEPSEEK_KEY, base_url: deepseekMock.baseUrl },
      },
    },
  });
});

after(async () => {
  await gateway?.stop();
  await openaiMock?.close();
  await deepseekMock?.close();
});

async function alive(): Promise<void> {
  assert.equal((await chat(gateway.url, 'vk_openai', hello)).status, 200, 'the gateway still serves');
}

/** Strings of a parsed entry that hold half a surrogate pair: what jq refuses, with the rest of the log file. */
function loneSurrogates(value: unknown, found: string[] = []): string[] {
  if (typeof value === 'string') {
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value)) found.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) loneSurrogates(item, found);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) loneSurrogates([key, item], found);
  }
  return found;
}

describe('half a surrogate pair (valid JSON that jq refuses, with every entry after it)', () => {
  it('never reaches the log as an escape: a body holding one is logged as its text, any other string gets U+FFFD; a whole pair stays', async () => {
    const pad = 'x'.repeat(20_000); // a member of 16 KB or more is passed through unparsed: its bytes are checked when logged
    const bodies = [
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a\\ud800b"}]}`,
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${pad} \\udc00"}]}`,
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${pad} \\ud83d"}]}`,
      `{"model":"gpt-4o-mini\\ud800","messages":[{"role":"user","content":"hi"}]}`,
    ];
    for (const body of bodies) {
      const reply = await chat(gateway.url, 'vk_openai', body);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.deepEqual(loneSurrogates(entry), [], body.slice(-60));
      if (reply.status === 200) assert.equal(entry.request, body, 'logged as the text it came as');
    }
    // A whole pair, escaped as Python's json.dumps writes an emoji, is logged as JSON.
    const pair = await chat(gateway.url, 'vk_openai', `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${pad} \\ud83d\\ude00"}]}`);
    assert.equal((await waitForEntry(gateway.logFile, String(pair.headers['x-request-id']))).request.messages[0].content, `${pad} \u{1f600}`);
    // A provider's answer holding one.
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok \\ud800 and \\\\ud800"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}');
    });
    try {
      const answered = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(answered.status, 200);
      const entry = await waitForEntry(gateway.logFile, String(answered.headers['x-request-id']));
      assert.equal(entry.response.choices[0].message.content, 'ok \ufffd and \\ud800', 'the escape becomes U+FFFD; text that spells one stays');
    } finally {
      openaiMock.behave(null);
    }
    await alive();
  });
});

describe('deeply nested JSON', () => {
  it('a request nested 20,000 deep (40 KB) is refused with a 400 and logged as its text: a log reader stops at a depth (jq 1.6 at 256 levels)', async () => {
    const raw = `{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":${deep(20_000)}}`;
    const before = openaiMock.requests.length;
    const reply = await chat(gateway.url, 'vk_openai', raw);
    assert.equal(reply.status, 400);
    assert.equal(reply.json.error.message, 'The request body nests deeper than 128 levels.');
    assert.equal(reply.json.error.type, 'invalid_request_error');
    assert.equal(openaiMock.requests.length, before, 'nothing reached the provider');
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.equal(entry.status, 400);
    assert.equal(typeof entry.request, 'string');
    assert.equal(entry.request, raw);
    // Also where the provider would need it re-serialised (DeepSeek flattens text parts).
    const mapped = await chat(gateway.url, 'vk_deepseek', `{"model":"deepseek-chat","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"metadata":${deep(20_000)}}`);
    assert.equal(mapped.status, 400);
    assert.equal(mapped.json.error.message, 'The request body nests deeper than 128 levels.');
    await alive();
  });

  it('a request nested 100 deep is answered, and logged as it came', async () => {
    const raw = `{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"a":${deep(100)}}}`;
    const reply = await chat(gateway.url, 'vk_openai', raw);
    assert.equal(reply.status, 200);
    assert.ok(openaiMock.requests.at(-1)?.raw.includes(deep(100)));
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    let depth = 0;
    for (let value = entry.request.metadata.a; Array.isArray(value) && value.length > 0; value = value[0]) depth++;
    assert.equal(depth, 99);
  });

  it('an upstream answer nested past 128 levels, short or 20,000 deep, is a 502 and logged as one (the log would hold it, and jq stops at a depth)', async () => {
    for (const depth of [300, 20_000]) {
      openaiMock.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"[[[\\"[["},"finish_reason":"stop"}],"deep":${deep(depth)}}`);
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', hello);
        assert.equal(reply.status, 502, reply.text.slice(0, 300));
        assert.equal(reply.json.error.code, 'upstream_invalid_response');
        assert.match(reply.json.error.message, /nests deeper than 128 levels/);
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 502);
      } finally {
        openaiMock.behave(null);
      }
    }
    // Brackets inside strings are text: 200 levels of them pass.
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `"${deep(200)}\\` }, finish_reason: 'stop' }] }));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      assert.equal(reply.json.choices[0].message.content, `"${deep(200)}\\`);
    } finally {
      openaiMock.behave(null);
    }
    await alive();
  });
});

describe('a large answer nested deep (a million values a hundred levels in would be hundreds of MB indented)', () => {
  /** The most memory the process has held (VmHWM), in MB: what indenting such an answer whole took (585 MB for 2 MB). */
  const peakMb = (pid: number): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  const nested = `${'['.repeat(120)}${'0,'.repeat(799_999)}0${']'.repeat(120)}`;
  /** Where the logged response begins: on one line of its own in the indented entry. */
  const responseLine = (text: string, id: string): string | undefined => {
    const lines = text.split('\n');
    const at = lines.findIndex((line) => line === `  "request_id": "${id}",`);
    return at === -1 ? undefined : lines.slice(at).find((line) => line.startsWith('  "response": '));
  };
  let fresh: GatewayProcess;
  before(async () => {
    fresh = await startGateway({ keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl, api: ['chat', 'responses'] } } } });
  });
  after(() => fresh?.stop());

  it('is passed on whole, and logged in both destinations laid out as it is made, its growth checked as it goes: its response on one line, the rest indented, the memory bounded', async () => {
    const answer = `{"id":"chatcmpl-deep","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6},"deep":${nested}}`;
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answer);
    });
    try {
      const reply = await chat(fresh.url, 'vk_openai', hello);
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      assert.equal(reply.text, answer, 'passed on as it came');
      const id = String(reply.headers['x-request-id']);
      await waitForEntry(fresh.logFile, id);
      await waitFor(() => {
        const text = fresh.stdout();
        const at = text.indexOf(id);
        return at !== -1 && text.indexOf('\n}\n', at) !== -1;
      }, 'on stdout too, whole');
      for (const [where, text] of [['file', readFileSync(fresh.logFile, 'utf8')], ['stdout', fresh.stdout()]] as const) {
        const line = responseLine(text, id);
        assert.ok(line !== undefined, `${where}: the response on one line of an indented entry`);
        assert.equal(JSON.stringify((JSON.parse(`{${line.replace(/,$/, "")}}`) as { response: { deep: unknown } }).response.deep), nested, where);
      }
      assert.ok(peakMb(fresh.child.pid as number) < 250, `${peakMb(fresh.child.pid as number)} MB at most`);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('streamed (a Responses stream whose last event holds it), is logged the same way', async () => {
    const response = (status: string, extra: string): string => `{"id":"resp_deep","object":"response","created_at":1,"status":"${status}","model":"gpt-4o-mini","output":[]${extra}}`;
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":${response('in_progress', '')}}\n\n`);
      res.end(`event: response.completed\ndata: {"type":"response.completed","sequence_number":1,"response":${response('completed', `,"usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6},"deep":${nested}`)}}\n\n`);
    });
    try {
      const reply = await request(fresh.url, '/v1/responses', { method: 'POST', key: 'vk_openai', body: { model: 'gpt-4o-mini', input: 'Hello', stream: true } });
      assert.equal(reply.status, 200, reply.text.slice(0, 300));
      assert.match(reply.text, /event: response\.completed/);
      const id = String(reply.headers['x-request-id']);
      await waitForEntry(fresh.logFile, id);
      const line = responseLine(readFileSync(fresh.logFile, 'utf8'), id);
      assert.ok(line !== undefined, 'the response on one line of an indented entry');
      assert.equal(JSON.stringify((JSON.parse(`{${line.replace(/,$/, "")}}`) as { response: { deep: unknown } }).response.deep), nested);
      assert.ok(peakMb(fresh.child.pid as number) < 250, `${peakMb(fresh.child.pid as number)} MB at most`);
    } finally {
      openaiMock.behave(null);
    }
  });
});

describe('keys that differ only in case', () => {
  it("are refused on every route: a Go server (Ollama) reads Model as model, one the gateway never checked or priced", async () => {
    const before = openaiMock.requests.length;
    const messages = [{ role: 'user', content: 'hi' }];
    const big = 'x'.repeat(70_000); // past the size where the body is scanned as bytes
    for (const [path, body, headers] of [
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, Model: 'gpt-evil' }, {}],
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: big }], MODEL: 'gpt-evil' }, {}],
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, stream: false, 'ſtream': true }, {}],
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, max_tokens: 10, 'max_to\u212Aens': 99999 }, {}],
      ['/v1/messages', { model: 'gpt-4o-mini', max_tokens: 10, messages, Model: 'gpt-evil' }, { 'x-api-key': 'vk_openai', 'anthropic-version': '2023-06-01' }],
      ['/v1/responses', { model: 'gpt-4o-mini', input: 'hi', Model: 'gpt-evil' }, {}],
      // Alone too: a Go server would read it after the field the gateway sets.
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, stream: true, Stream_options: { include_usage: false } }, {}],
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, Max_tokens: 99999 }, {}],
      // The answers asked for, which the output reservation multiplies.
      ['/v1/chat/completions', { model: 'gpt-4o-mini', messages, max_tokens: 1000, N: 64 }, {}],
    ] as const) {
      const reply = await request(gateway.url, path, { key: 'x-api-key' in headers ? null : 'vk_openai', headers, body });
      assert.equal(reply.status, 400, `${path}: ${reply.text.slice(0, 300)}`);
      assert.match(String(reply.json?.error?.message ?? ''), /(differ only in case|the API's own is "[a-z_]+"), and some servers read them as one/, reply.text);
    }
    assert.equal(openaiMock.requests.length, before, 'nothing reached the provider');
    // Keys in other cases that are no field the gateway reads go on as they came (the provider judges them).
    await request(gateway.url, '/v1/chat/completions', { key: 'vk_openai', body: { model: 'gpt-4o-mini', messages, Temperature: 0.5, some_Custom_field: 1 } });
    assert.equal(openaiMock.requests.length, before + 1);
    assert.match(openaiMock.requests.at(-1)?.raw ?? '', /"Temperature":0\.5,"some_Custom_field":1/);
  });
});

describe('a gateway out of file descriptors', () => {
  it('answers 503 gateway_out_of_resources, says so on stderr, and counts nothing against the provider: no circuit opens', async () => {
    const limited = await startGateway({
      keys: { virtual_keys: { vk_two: { targets: [{ provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl }, { provider: 'openai', api_key: OPENAI_KEY, base_url: `${openaiMock.baseUrl}/` }], circuit_breaker: { failures: 1, cooldown_ms: 60_000 } } } },
      env: { LOG_CONSOLE: 'off', UPSTREAM_RETRIES: '0' },
      openFilesLimit: 100,
    });
    const port = Number(new URL(limited.url).port);
    let idle: Socket[] = [];
    try {
      // Idle clients until the gateway can accept no more (libuv closes what it cannot hold).
      const refused = new Set<Socket>();
      for (let i = 0; i < 150 && refused.size === 0; i++) {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        socket.once('close', () => refused.add(socket));
        idle.push(socket);
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      idle = idle.filter((socket) => !refused.has(socket));
      // One freed: a request gets in, and its connection to the provider finds no descriptor left.
      idle.pop()?.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const starved = await chat(limited.url, 'vk_two', hello);
      assert.equal(starved.status, 503, starved.text);
      assert.equal(starved.json.error.code, 'gateway_out_of_resources');
      assert.match(starved.json.error.message, /out of file descriptors \(EMFILE\)/);
      await waitFor(async () => /cannot open connections to providers: EMFILE/.test(limited.stderr()), 'the shortage said on stderr');
      for (const socket of idle.splice(0)) socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Its first target was not blamed: served by it, nothing skipped.
      const served = await chat(limited.url, 'vk_two', hello);
      assert.equal(served.status, 200, served.text);
      const entry = await waitForEntry(limited.logFile, String(served.headers['x-request-id']));
      assert.equal(entry.upstream.target, 0, JSON.stringify(entry.upstream));
      assert.equal(entry.upstream.skipped_targets, undefined);
    } finally {
      for (const socket of idle) socket.destroy();
      await limited.stop();
    }
  });
});

describe('upstream connections', () => {
  it('never sends a request twice once the provider has started answering it', async () => {
    await alive(); // warms the connection pool
    const before = openaiMock.requests.length;
    openaiMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"id":"partial"');
      setTimeout(() => req.socket.resetAndDestroy(), 20);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 502);
      assert.equal(reply.json.error.code, 'upstream_incomplete_response');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(openaiMock.requests.length - before, 1, 'exactly one upstream request');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('retries once, on a fresh connection, when a pooled connection turns out to be dead before any answer', async () => {
    await alive(); // the pool now holds a used keep-alive connection, which the next request reuses
    let resets = 0;
    openaiMock.behave(({ req }) => {
      if (resets > 0) return false;
      resets++;
      req.socket.resetAndDestroy(); // as if the provider had closed it just before our request
      return true;
    });
    try {
      const before = openaiMock.requests.length;
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 200, reply.text);
      assert.equal(resets, 1);
      assert.equal(openaiMock.requests.length - before, 2, 'the reset attempt and the retry');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('keeps the provider status of a huge error body (read cut at 1 MiB)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify(openAIError('x'.repeat(2 * 1024 * 1024), 'invalid_request_error')));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 400);
      // Only the first MiB was read: the client gets no more of it (nor does the log).
      assert.ok(reply.text.length <= 1024 * 1024, `${reply.text.length} bytes answered`);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.ok(JSON.stringify(entry).length <= 2 * 1024 * 1024, `${JSON.stringify(entry).length} bytes logged`);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('logs no piece of the real key a server puts in its request id', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': `req_${OPENAI_KEY.slice(0, -1)}` });
      res.end(JSON.stringify({ id: 'chatcmpl-r', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }] }));
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 200);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.equal(entry.upstream.request_id, 'req_[redacted]');
    } finally {
      openaiMock.behave(null);
    }
  });

  it('records DeepSeek\'s x-ds-trace-id as the upstream request id', async () => {
    const reply = await chat(gateway.url, 'vk_deepseek', { model: 'deepseek-chat', messages: [{ role: 'user', content: 'hi' }] });
    const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
    assert.match(entry.upstream.request_id, /^[0-9a-f-]{36}$/);
  });
});

describe('hostile streams', () => {
  it('a chat stream event named error ends the stream as an error, whatever its data says (OpenAI\'s SDK throws on it)', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (content: string): string => `data: ${JSON.stringify({ id: 'chatcmpl-e', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
      res.end(`${chunk('a')}event: error\ndata: {"message":"overloaded","code":"503"}\n\n${chunk('b')}data: [DONE]\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.equal(last.error?.message, 'overloaded', reply.text);
      assert.doesNotMatch(reply.text, /"content":"b"/, 'the stream ends there');
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.ok(entry.status >= 500, `logged as an error: ${entry.status}`);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('a stream that ends inside an event passes no fragment of it on: the client gets the events before it, then an error', async () => {
    const chunk = `data: ${JSON.stringify({ id: 'chatcmpl-f', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'a' }, finish_reason: null }] })}\n\n`;
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`${chunk}data: {"id":"chatcmpl-f","object":"chat.completi`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.ok(reply.text.startsWith(chunk), reply.text);
      assert.doesNotMatch(reply.text, /chat\.completi"?\n/, 'the fragment');
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.equal(last.error?.code, 'upstream_incomplete_stream', reply.text);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('an upstream line that never ends is cut at 16 MiB with an error event, not buffered forever', async () => {
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: ');
      const piece = 'z'.repeat(1024 * 1024);
      for (let i = 0; i < 20 && !res.destroyed; i++) {
        if (!res.write(piece)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.equal(JSON.parse(sseData(reply.text).at(-1) ?? '{}').error.code, 'upstream_event_too_large');
    } finally {
      openaiMock.behave(null);
    }
    await alive();
  });

  it('a translated answer whose parts would hold more than 64 Mi characters ends with an error event, not a gateway holding it all', async () => {
    // A Responses client's last events repeat the whole text, so its translation keeps it: bounded.
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = `data: ${JSON.stringify({ id: 'chatcmpl-big', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'x'.repeat(256 * 1024) }, finish_reason: null }] })}\n\n`;
      for (let i = 0; i < 280 && !res.destroyed; i++) {
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end('data: [DONE]\n\n');
    });
    try {
      const reply = await request(gateway.url, '/v1/responses', { key: 'vk_openai', body: { model: 'gpt-4o-mini', input: 'Write a lot.', stream: true } });
      assert.equal(reply.status, 200);
      const last = JSON.parse(sseData(reply.text).at(-1) ?? '{}');
      assert.equal(last.type, 'response.failed');
      // Codex's codes: anything but its few named ones is a server_error; the message says which.
      assert.equal(last.response.error.code, 'server_error');
      assert.match(last.response.error.message, /larger than the gateway translates/);
    } finally {
      openaiMock.behave(null);
    }
    await alive();
  });

  it('a slow client pauses the upstream (backpressure) instead of the gateway buffering everything', async () => {
    let written = 0;
    let finished = false;
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const frame = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'y'.repeat(4000) }, finish_reason: null }] })}\n\n`;
      for (let i = 0; i < 16_000 && !res.destroyed; i++) {
        written += frame.length;
        if (!res.write(frame)) await new Promise((resolve) => res.once('drain', resolve));
      }
      finished = true;
      res.end('data: [DONE]\n\n');
    });
    const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_openai', 'content-type': 'application/json' } });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.on('response', resolve).on('error', reject);
        req.end(JSON.stringify({ ...hello, stream: true }));
      });
      res.pause(); // the client reads nothing
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // 64 MB are on offer; socket buffers hold a few MB; a gateway without backpressure reads it all.
      assert.equal(finished, false, 'the upstream could not send everything');
      assert.ok(written < 32 * 1024 * 1024, `upstream wrote ${written} bytes to a client that reads nothing`);
    } finally {
      req.destroy();
      openaiMock.behave(null);
    }
  });

  it('a client that reads nothing of its stream for UPSTREAM_IDLE_TIMEOUT_MS is let go: connection closed, provider released, logged 408 client_stalled', async () => {
    const idleGateway = await startGateway({
      keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl } } },
      env: { LOG_CONSOLE: 'off', UPSTREAM_IDLE_TIMEOUT_MS: '4000' },
    });
    let providerReleased = false;
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const frame = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'y'.repeat(4000) }, finish_reason: null }] })}\n\n`;
      res.on('close', () => (providerReleased = true));
      while (!res.destroyed) if (!res.write(frame)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
    });
    const req = http.request(`${idleGateway.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_openai', 'content-type': 'application/json' } });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.on('response', resolve).on('error', reject);
        req.end(JSON.stringify({ ...hello, stream: true }));
      });
      res.pause(); // the client reads nothing, and never closes
      await waitFor(() => providerReleased, 'the provider connection to be released', 20_000);
      const entry = await waitForEntry(idleGateway.logFile, String(res.headers['x-request-id']));
      assert.equal(entry.status, 408);
      assert.equal(entry.error.code, 'client_stalled');
      // Not a second period: the bytes the kernel took right after the pause are not the client reading.
      // About 5.1 s with the fix, 8.1 s without: the limit leaves a busy machine 1.7 s.
      assert.ok(entry.duration_ms < 6_800, `let go within the period and a quarter, not two: ${entry.duration_ms} ms`);
      const metrics = await fetch(`${idleGateway.url}/metrics`).then((reply) => reply.text());
      assert.match(metrics, /^llm_gateway_requests_in_flight 0$/m, 'nothing in flight (the scrape is not counted)');
      // Reading again, the client finds its connection closed (a paused socket does not see it).
      let closed = false;
      res.socket.once('close', () => (closed = true));
      res.on('error', () => {}).resume();
      await waitFor(() => closed, 'the client to find its connection closed', 10_000);
    } finally {
      req.destroy();
      openaiMock.behave(null);
      await idleGateway.stop();
    }
  });

  it('a client that reads slowly but steadily, one large event at a time, is not taken for a stalled one', async () => {
    const idleGateway = await startGateway({
      keys: { virtual_keys: { vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: openaiMock.baseUrl } } },
      env: { LOG_CONSOLE: 'off', LOG_FILE: 'off', UPSTREAM_IDLE_TIMEOUT_MS: '1000' },
    });
    // Events of 8 MB: one takes the client ~4 s to read, far past the 1 s a client that reads nothing is given.
    openaiMock.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const frame = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'y'.repeat(8 * 1024 * 1024) }, finish_reason: null }] })}\n\n`;
      for (let i = 0; i < 2 && !res.destroyed; i++) if (!res.write(frame)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
      res.end('data: [DONE]\n\n');
    });
    const body = JSON.stringify({ ...hello, stream: true });
    const socket = net.connect({ port: idleGateway.port, host: '127.0.0.1' });
    try {
      // ~2 MB/s: at most 100 KB per 50 ms window, paused for the rest of it.
      let tail = '';
      let windowBytes = 0;
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()).once('end', () => resolve()));
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        tail = (tail + chunk.toString('latin1')).slice(-64);
        windowBytes += chunk.length;
        if (windowBytes >= 100 * 1024) socket.pause();
      });
      const window = setInterval(() => {
        windowBytes = 0;
        socket.resume();
      }, 50);
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ended, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))]);
      clearTimeout(timer);
      clearInterval(window);
      assert.match(tail, /data: \[DONE\]\n\n(\r\n0\r\n\r\n)?$/, `the stream reached its end (${JSON.stringify(tail)})`);
    } finally {
      socket.destroy();
      openaiMock.behave(null);
      await idleGateway.stop();
    }
  });

  it('scrubs the real key from a mid-stream error message', async () => {
    openaiMock.behave(({ req, res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`data: ${JSON.stringify(openAIError(`key ${String(req.headers.authorization)} was revoked`, 'server_error'))}\n\n`);
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.match(reply.text, /was revoked/);
      assert.doesNotMatch(reply.text, /hostileOPENAIkey/);
      const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
      assert.doesNotMatch(JSON.stringify(entry), /hostileOPENAIkey/);
    } finally {
      openaiMock.behave(null);
    }
  });

  it('a chunk with "error": null is a normal chunk', async () => {
    openaiMock.behave(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","error":null,"choices":[{"index":0,"delta":{"content":"fine"},"finish_reason":"stop"}]}\n\n`);
      res.end('data: [DONE]\n\n');
    });
    try {
      const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
      assert.deepEqual(sseData(reply.text).slice(-1), ['[DONE]']);
      assert.match(reply.text, /fine/);
    } finally {
      openaiMock.behave(null);
    }
  });
});

describe('hostile HTTP', () => {
  function raw(write: (socket: Socket) => void): Promise<string> {
    return new Promise((resolve) => {
      const socket = net.connect(gateway.port, '127.0.0.1', () => write(socket));
      let text = '';
      socket.setEncoding('utf8').on('data', (piece: string) => (text += piece));
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
    });
  }

  it('garbage pipelined behind a stream is answered after the whole stream, never inside it', async () => {
    const body = JSON.stringify({ ...hello, stream: true });
    const text = await raw((socket) =>
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}GARBAGE\r\n\r\n`),
    );
    const end = text.indexOf('data: [DONE]\n\n\r\n0\r\n\r\n');
    assert.ok(end > 0, 'the stream is complete, with its last chunk');
    assert.equal(text.indexOf('HTTP/1.1 400'), end + 'data: [DONE]\n\n\r\n0\r\n\r\n'.length, 'the 400 follows the stream');
    await alive();
  });

  it('answers malformed HTTP with 400 and oversized headers with 431, each with an x-request-id', async () => {
    const bad = await raw((socket) => socket.write('BLAH /\r\n\r\n'));
    assert.match(bad, /^HTTP\/1\.1 400/);
    assert.match(bad, /x-request-id: [0-9a-f-]{36}/);
    const huge = await raw((socket) => socket.write(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`));
    assert.match(huge, /^HTTP\/1\.1 431/);
    assert.match(huge, /x-request-id: /);
    assert.equal(JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4)).error.code, 'headers_too_large');
  });

  it("answers what Node cannot parse of a Messages request (or one in Anthropic's style) in Anthropic's error shape, with its request-id", async () => {
    const bodyOf = (text: string) => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    const anthropic = (text: string, status: number) => {
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status}`));
      assert.match(text, /\r\nrequest-id: [0-9a-f-]{36}\r\n/);
      const body = bodyOf(text);
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'invalid_request_error');
      assert.equal(typeof body.error.message, 'string');
    };
    anthropic(await raw((socket) => socket.write(`POST /v1/messages?beta=true HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)), 431);
    anthropic(await raw((socket) => socket.write('POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n')), 400);
    anthropic(await raw((socket) => socket.write('POST /v1/messages/count_tokens HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n')), 400);
    anthropic(await raw((socket) => socket.write(`POST /anything HTTP/1.1\r\nhost: x\r\nanthropic-version: 2023-06-01\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)), 431);
    anthropic(await raw((socket) => socket.write('\r\nPOST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n')), 400);
    anthropic(await raw((socket) => socket.write('POST http://x/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n')), 400);
    // Behind a request answered first, in the same read: the failing one's route decides.
    const behind = await raw((socket) => socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nPOST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n'));
    anthropic(behind.slice(behind.indexOf('HTTP/1.1 400')), 400);
    // Not a Messages route, nor its style: OpenAI's shape, as before, also behind a Messages request in the same read.
    const openai = (text: string) => {
      const answer = text.slice(text.indexOf('HTTP/1.1 400'));
      assert.equal(bodyOf(answer).error.code, 'bad_http_request');
      assert.doesNotMatch(answer, /\r\nrequest-id:/);
    };
    openai(await raw((socket) => socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n')));
    const count = JSON.stringify({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] });
    const messagesFirst = `POST /v1/messages/count_tokens HTTP/1.1\r\nhost: x\r\nx-api-key: vk_nobody\r\ncontent-type: application/json\r\ncontent-length: ${count.length}\r\n\r\n${count}`;
    openai(await raw((socket) => socket.write(`${messagesFirst}POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n`)));
    openai(await raw((socket) => socket.write(`${messagesFirst}GET /v1/models HTTP/1.2\r\nhost: x\r\n\r\n`)));
    openai(await raw((socket) => socket.write(`${messagesFirst}OPTIONS * HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n`)));
    await alive();
  });

  it("answers a client still sending a large body its 401 or 413, not a reset (the rest is read and dropped, the connection kept); a body declared past 64 MiB is not waited for", async () => {
    /** What an SDK does: the whole body written at once, the answer read when it comes. */
    const send = (key: string, bytes: number): Promise<{ status: number; connection: string | undefined; text: string } | string> =>
      new Promise((resolve) => {
        const body = Buffer.from(JSON.stringify({ ...hello, messages: [{ role: 'user', content: 'x'.repeat(bytes) }] }));
        const req = http.request({ host: '127.0.0.1', port: gateway.port, method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (piece: string) => (text += piece));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, text }));
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(`failed: ${err.code ?? err.message}`));
        req.end(body);
      });
    for (const [key, bytes, status, code] of [['vk_nobody', 8_000_000, 401, 'invalid_api_key'], ['vk_openai', 21 * 1024 * 1024, 413, 'request_too_large']] as const) {
      const reply = await send(key, bytes);
      assert.ok(typeof reply !== 'string', `${status}: ${String(reply)}`);
      assert.equal(reply.status, status);
      assert.equal(JSON.parse(reply.text).error.code, code);
      assert.equal(reply.connection, 'keep-alive');
    }
    const declared = await raw((socket) => socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_nobody\r\ncontent-length: ${65 * 1024 * 1024}\r\n\r\n{`));
    assert.match(declared, /^HTTP\/1\.1 401 /);
    assert.match(declared, /\r\nconnection: close\r\n/i);
    await alive();
  });

  it('garbage in the body of a request already answered (its rest being dropped) closes the connection without a second answer', async () => {
    const text = await new Promise<string>((resolve) => {
      const socket = net.connect(gateway.port, '127.0.0.1', () => socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_nobody\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n'));
      let read = '';
      socket.setEncoding('utf8').on('data', (piece: string) => {
        read += piece;
        if (/\r\n\r\n\{[^]*\}$/.test(read)) socket.write('ZZZ\r\n'); // once the 401 is in
      });
      socket.on('close', () => resolve(read));
      socket.on('error', () => resolve(read));
    });
    assert.match(text, /^HTTP\/1\.1 401 /);
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, text);
    await alive();
  });

  it('streams through /chat/completions as well as /v1/chat/completions', async () => {
    const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true }, '/chat/completions');
    assert.equal(reply.status, 200);
    assert.equal(sseData(reply.text).at(-1), '[DONE]');
  });
});

describe('the process', () => {
  it('is still the one that started', async () => {
    await waitFor(() => gateway.child.exitCode === null, 'alive');
    assert.equal(gateway.child.exitCode, null);
    assert.doesNotMatch(gateway.stderr(), /unexpected error/);
  });
});

describe('a real key the gateway itself makes whole', () => {
  // The providers' keys, which a hostile provider sends back in pieces the byte scrubber never
  // sees whole: split between stream events or content blocks, or spelled with an escape inside
  // a tool call's JSON arguments.
  const KEY = 'sk-proj-assembledOPENAIkey-7170';
  const ANTHROPIC_KEY = 'sk-ant-api03-assembledANTHROPICkey-8180';
  let provider: http.Server;
  let split: GatewayProcess;
  /** Logs bodies cut at 1 KiB: a stream of 16 MiB is logged as the head of what was assembled. */
  let cut: GatewayProcess;
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

  before(async () => {
    provider = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (part: Buffer) => chunks.push(part));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { stream?: boolean; messages?: Array<{ content: unknown }> };
        if (req.url?.startsWith('/v1/messages') === true) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: `key: ${ANTHROPIC_KEY.slice(0, 12)}` }, { type: 'text', text: ANTHROPIC_KEY.slice(12) }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 5, output_tokens: 5 } }));
          return;
        }
        if (body.stream === true) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(chunk({ role: 'assistant', content: `key: ${KEY.slice(0, 12)}` }) + chunk({ content: KEY.slice(12) }));
          // "long": past what the log assembles (16 MiB of events under LOG_BODY_MAX_BYTES=1024).
          if (body.messages?.[0]?.content === 'long') for (let i = 0; i < 300; i++) res.write(chunk({ content: 'x'.repeat(60_000) }));
          res.end(chunk({}, 'stop') + 'data: [DONE]\n\n');
          return;
        }
        // A tool call whose arguments spell the key's first letter as \u0073: decoded, they hold it whole.
        const args = `{"k":"\\u0073${KEY.slice(1)}"}`;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'c2', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: args } }] }, finish_reason: 'tool_calls' }], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } }));
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const port = (provider.address() as { port: number }).port;
    split = await startGateway({
      keys: {
        virtual_keys: {
          vk_whole_chat: { provider: 'openai', api_key: KEY, base_url: `http://127.0.0.1:${port}/v1` },
          vk_whole_claude: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: `http://127.0.0.1:${port}` },
        },
      },
    });
    cut = await startGateway({
      keys: { virtual_keys: { vk_whole_chat: { provider: 'openai', api_key: KEY, base_url: `http://127.0.0.1:${port}/v1` } } },
      env: { LOG_BODY_MAX_BYTES: '1024' },
    });
  });

  after(async () => {
    await split?.stop();
    await cut?.stop();
    provider?.closeAllConnections();
    provider?.close();
  });

  const leaks = (text: string): boolean => text.includes(KEY) || text.includes(ANTHROPIC_KEY);

  it('takes it out of the log\'s assembled answer, a translated stream\'s joined text, joined content blocks and decoded tool arguments', async () => {
    const cases: Array<[string, () => Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }>]> = [
      ['chat stream passed through (the log assembles it)', () => chat(split.url, 'vk_whole_chat', { ...hello, stream: true })],
      ['Responses → chat stream (the .done events join it)', () => request(split.url, '/v1/responses', { key: 'vk_whole_chat', body: { model: 'gpt-4o-mini', input: 'hi', stream: true } })],
      ['chat → Messages (two text blocks joined)', () => chat(split.url, 'vk_whole_claude', { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] })],
      ['Messages → chat (tool arguments decoded into input)', () => request(split.url, '/v1/messages', { key: null, headers: { 'x-api-key': 'vk_whole_chat', 'anthropic-version': '2023-06-01' }, body: { model: 'gpt-4o-mini', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] } })],
    ];
    for (const [name, send] of cases) {
      const reply = await send();
      assert.equal(reply.status, 200, `${name}: ${reply.text}`);
      assert.ok(!leaks(reply.text), `${name}: the client's bytes hold no real key: ${reply.text}`);
      const entry = await waitForEntry(split.logFile, String(reply.headers['x-request-id']));
      assert.ok(!leaks(JSON.stringify(entry)), `${name}: the log entry holds no real key: ${JSON.stringify(entry.response)}`);
      assert.match(JSON.stringify(entry.response), /\[redacted\]/, `${name}: the key's place is marked in the log`);
      // Passed through, the client gets the provider's pieces as they came (its own SDK joins them).
      if (!name.includes('passed through')) assert.match(reply.text, /\[redacted\]/, `${name}: the key's place is marked`);
    }
    assert.ok(!leaks(readFileSync(split.logFile, 'utf8')) && !leaks(split.stdout()), 'nor does any log line');
  });

  it('takes it out of the head of a stream too long to assemble for the log', async () => {
    const reply = await chat(cut.url, 'vk_whole_chat', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }], stream: true });
    assert.equal(reply.status, 200);
    assert.ok(reply.text.length > 16 * 1024 * 1024, 'the client got the whole stream');
    const entry = await waitForEntry(cut.logFile, String(reply.headers['x-request-id']));
    const logged = entry.response as { truncated: boolean; original_bytes: number; head: string };
    assert.equal(logged.truncated, true);
    assert.ok(logged.original_bytes > 16 * 1024 * 1024, `the stream's size: ${logged.original_bytes}`);
    assert.ok(!leaks(logged.head), `the head holds no real key: ${logged.head.slice(0, 300)}`);
    assert.match(logged.head, /key: \[redacted\]x/, "the key's place is marked");
    assert.ok(!leaks(readFileSync(cut.logFile, 'utf8')) && !leaks(cut.stdout()), 'nor does any log line');
  });
});
