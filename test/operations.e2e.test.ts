/**
 * What an operator relies on, against the real process: graceful shutdown, cancellation when the
 * client leaves, upstream timeouts, key reload without restart, health and metrics.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readLogFile, startGateway, tempDir, waitFor, waitForEntry, type GatewayProcess } from './support/gateway.js';
import { chat, openStream, request, sseData } from './support/http.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';

const OPENAI_KEY = 'sk-proj-opsOPENAIkey-3344';
const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello ops' }] };
const chunkFrame = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-o', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: finish === null ? { content } : {}, finish_reason: finish }] })}\n\n`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let upstream: MockUpstream;
before(async () => {
  upstream = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
});
after(async () => {
  await upstream?.close();
});

function keysFor(extra: Record<string, unknown> = {}) {
  return { virtual_keys: { vk_openai: { name: 'team-openai', provider: 'openai', api_key: OPENAI_KEY, base_url: upstream.baseUrl }, vk_mock: { provider: 'mock' }, ...extra } };
}

/** A stream that sends one chunk every `everyMs`, `count` times, then finishes. */
function slowStream(count: number, everyMs: number) {
  return async ({ res }: { res: http.ServerResponse }) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 0; i < count && !res.destroyed; i++) {
      res.write(chunkFrame(`c${i} `));
      await sleep(everyMs);
    }
    if (res.destroyed) return;
    res.write(chunkFrame('', 'stop'));
    res.end('data: [DONE]\n\n');
  };
}

/** Reads a whole response, noting when its first byte arrived. */
function collect(res: http.IncomingMessage): Promise<{ text: string; firstAt: number }> {
  return new Promise((resolve, reject) => {
    let text = '';
    let firstAt = 0;
    res.setEncoding('utf8');
    res.on('data', (piece: string) => {
      if (firstAt === 0) firstAt = Date.now();
      text += piece;
    });
    res.on('end', () => resolve({ text, firstAt }));
    res.on('error', reject);
  });
}

/** The upstream answers each chat request after `delayMs(content)`, with `late <its content>`. */
function lateAnswers(delayMs: (content: string) => number) {
  return async ({ res, recorded }: { res: http.ServerResponse; recorded: { json: any } }) => {
    const content = String(recorded.json.messages[0].content);
    await sleep(delayMs(content));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'chatcmpl-late', object: 'chat.completion', created: 1, model: 'gpt-4o', choices: [{ index: 0, message: { role: 'assistant', content: `late ${content}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  };
}

/** A raw keep-alive connection: what came back, when it closed, and chat requests to write on it. */
function rawConnection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.setEncoding('utf8').on('data', (piece: string) => (text += piece));
  const post = (content: string): string => {
    const body = JSON.stringify({ ...hello, messages: [{ role: 'user', content }] });
    return `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  };
  return { socket, closed, post, answers: () => text.split(/(?=HTTP\/1\.1 )/) };
}

describe('graceful shutdown', () => {
  it('on SIGTERM lets a slow stream finish, logs it, refuses new connections, answers /healthz 503, and exits 0', async () => {
    upstream.behave(slowStream(8, 100));
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off' } });
    try {
      // A stream on a connection that stays open: idle connections close at the signal, busy
      // ones carry on, so a health check sent on it after the signal sees the drain.
      const body = JSON.stringify({ ...hello, stream: true });
      const socket = net.connect(gateway.port, '127.0.0.1');
      let text = '';
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.setEncoding('utf8').on('data', (piece: string) => (text += piece));
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer vk_openai\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await waitFor(() => text.includes('c0 '), 'the first chunk');
      gateway.child.kill('SIGTERM');
      await waitFor(() => /SIGTERM/.test(gateway.stderr()), 'the shutdown message');
      socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');

      const refused = await request(gateway.url, '/healthz', { method: 'GET' }).then(
        () => 'accepted',
        (err: NodeJS.ErrnoException) => err.code,
      );
      assert.equal(refused, 'ECONNREFUSED', 'a new connection after the signal is refused');

      await closed;
      const [stream, health] = text.split(/(?=HTTP\/1\.1 503)/);
      assert.match(stream ?? '', /^HTTP\/1\.1 200/);
      assert.match(stream ?? '', /data: \[DONE\]/, 'the in-flight stream completed');
      assert.match(health ?? '', /^HTTP\/1\.1 503/, '/healthz answers 503 while draining');
      assert.match(health ?? '', /connection: close/i);
      assert.match(health ?? '', /\{"status":"shutting_down"\}/);

      assert.equal(await gateway.exited, 0);
      const entry = readLogFile(gateway.logFile).find((candidate) => candidate.stream === true);
      assert.equal(entry?.status, 200);
      assert.equal(entry?.response.choices[0].message.content, 'c0 c1 c2 c3 c4 c5 c6 c7 ');
    } finally {
      upstream.behave(null);
      await gateway.stop('SIGKILL');
    }
  });

  it('tells a client whose answers are still being prepared at SIGTERM that the connection closes after the last (connection: close), pipelined ones all answered', async () => {
    // Answered after the signal: said `keep-alive`, the connection would close just after, as the client sends its next request on it.
    upstream.behave(lateAnswers(() => 600));
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off' } });
    try {
      const calls = upstream.requests.length;
      const { socket, closed, post, answers: split } = rawConnection(gateway.port);
      // Two requests pipelined in one write: both reach the provider before the signal.
      socket.write(post('A') + post('B'));
      await waitFor(() => upstream.requests.length >= calls + 2, 'both upstream calls');
      gateway.child.kill('SIGTERM');
      await waitFor(() => /SIGTERM/.test(gateway.stderr()), 'the shutdown message');
      await closed;
      const answers = split();
      assert.equal(answers.length, 2, answers.join(''));
      assert.match(answers[0] ?? '', /^HTTP\/1\.1 200[^]*"content":"late A"/);
      assert.doesNotMatch(answers[0] ?? '', /connection: close/i, 'not the last: the one after it still comes');
      assert.match(answers[1] ?? '', /^HTTP\/1\.1 200[^]*\r\nconnection: close\r\n[^]*"content":"late B"/i);
      assert.doesNotMatch(answers[1] ?? '', /keep-alive/i);
      assert.equal(await gateway.exited, 0);
    } finally {
      upstream.behave(null);
      await gateway.stop('SIGKILL');
    }
  });

  it('a request sent after SIGTERM behind one still in flight on its connection is answered too, the last to say connection: close', async () => {
    upstream.behave(lateAnswers((content) => (content === 'A' ? 1500 : 300)));
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off' } });
    try {
      const calls = upstream.requests.length;
      const { socket, closed, post, answers: split } = rawConnection(gateway.port);
      socket.write(post('A'));
      await waitFor(() => upstream.requests.length >= calls + 1, 'the first upstream call');
      gateway.child.kill('SIGTERM');
      await waitFor(() => /SIGTERM/.test(gateway.stderr()), 'the shutdown message');
      socket.write(post('B')); // pipelined behind A, which was told it is the last
      await closed;
      const answers = split();
      assert.equal(answers.length, 2, answers.join(''));
      assert.match(answers[0] ?? '', /^HTTP\/1\.1 200[^]*"content":"late A"/);
      assert.doesNotMatch(answers[0] ?? '', /connection: close/i);
      assert.match(answers[1] ?? '', /^HTTP\/1\.1 200[^]*\r\nconnection: close\r\n[^]*"content":"late B"/i);
      assert.equal(await gateway.exited, 0);
    } finally {
      upstream.behave(null);
      await gateway.stop('SIGKILL');
    }
  });

  it('cancels what is left after GATEWAY_SHUTDOWN_TIMEOUT_MS, logs it as cut short, and still exits 0', async () => {
    upstream.behave(slowStream(1000, 50));
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off', GATEWAY_SHUTDOWN_TIMEOUT_MS: '300' } });
    try {
      const { res } = await openStream(gateway.url, 'vk_openai', { ...hello, stream: true });
      const body = collect(res);
      await sleep(100);
      gateway.child.kill('SIGTERM');
      const { text } = await body;
      const last = JSON.parse(sseData(text).at(-1) ?? '{}');
      assert.equal(last.error.code, 'gateway_shutting_down');
      assert.equal(await gateway.exited, 0);
      const [entry] = readLogFile(gateway.logFile);
      assert.equal(entry?.error.code, 'gateway_shutting_down');
      assert.match(entry?.response.choices[0].message.content, /^c0 c1 /);
      await waitFor(() => upstream.requests.at(-1)?.aborted === true, 'the upstream call aborted');
    } finally {
      upstream.behave(null);
      await gateway.stop('SIGKILL');
    }
  });
});

describe('a second signal during a shutdown', () => {
  for (const workers of ['1', '2']) {
    it(`ends the requests still in flight at once, logged as cut short, and exits (GATEWAY_WORKERS=${workers})`, async () => {
      upstream.behave(slowStream(1000, 50));
      // Without the second signal the stream would be given 60 s (and run its 50 s).
      const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off', GATEWAY_SHUTDOWN_TIMEOUT_MS: '60000', GATEWAY_WORKERS: workers } });
      try {
        const { res } = await openStream(gateway.url, 'vk_openai', { ...hello, stream: true });
        const body = collect(res);
        await sleep(200);
        gateway.child.kill('SIGINT');
        await waitFor(() => /SIGINT: /.test(gateway.stderr()), 'the shutdown message');
        await sleep(200);
        gateway.child.kill('SIGINT');
        const { text } = await body;
        const last = JSON.parse(sseData(text).at(-1) ?? '{}');
        assert.equal(last.error.code, 'gateway_shutting_down');
        assert.equal(await gateway.exited, 0);
        if (workers === '1') assert.match(gateway.stderr(), /SIGINT again: cancelling 1 request\(s\) still in flight/);
        const [entry] = readLogFile(gateway.logFile);
        assert.equal(entry?.error.code, 'gateway_shutting_down');
      } finally {
        upstream.behave(null);
        await gateway.stop('SIGKILL');
      }
    });
  }
});

describe('a stdout nobody reads (a log collector that stalled)', { concurrency: 2 }, () => {
  // The final flush waits 10 s for stdout, then a write is still stuck in the kernel on one of
  // libuv's threads: process.exit would join that thread, forever. The process ends by SIGTERM.
  for (const workers of ['1', '2']) {
    it(`does not keep the gateway from ending after SIGTERM (GATEWAY_WORKERS=${workers}): it ends by SIGTERM once the 10 s flush gives up, the file complete`, async () => {
      const shutdownMs = 200;
      const gateway = await startGateway({
        keys: { virtual_keys: { vk_mock: { provider: 'mock' } } },
        env: { GATEWAY_SHUTDOWN_TIMEOUT_MS: String(shutdownMs), GATEWAY_WORKERS: workers, KEYS_WATCH: 'off' },
        readStdout: false,
      });
      const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        if (gateway.child.exitCode !== null || gateway.child.signalCode !== null) resolve({ code: gateway.child.exitCode, signal: gateway.child.signalCode });
        gateway.child.once('exit', (code, signal) => resolve({ code, signal }));
      });
      try {
        // Entries of ~300 KB each: far more than the pipe (64 KiB) and what the test reads of it at first.
        const body = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] };
        for (let i = 0; i < 6; i++) assert.equal((await chat(gateway.url, 'vk_mock', body)).status, 200);
        await waitFor(() => readLogFile(gateway.logFile).length === 6, 'the entries in the file');
        const stoppedAt = Date.now();
        gateway.child.kill('SIGTERM');
        const limit = shutdownMs + 15_000;
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([ended, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), limit)))]);
        clearTimeout(timer);
        assert.notEqual(outcome, null, `the gateway still runs ${limit} ms after SIGTERM; stderr:\n${gateway.stderr()}`);
        assert.deepEqual(outcome, { code: null, signal: 'SIGTERM' }, 'it ends by the signal it was sent, not exit code 0');
        assert.ok(Date.now() - stoppedAt >= 10_000, 'after the 10 s the flush may take');
        assert.match(gateway.stderr(), /the log could not be flushed within 10000 ms/);
        assert.match(gateway.stderr(), /a write is still stuck \(see above\): ending by SIGTERM/);
        assert.equal(readLogFile(gateway.logFile).length, 6, 'the file, which could be written, has every entry');
      } finally {
        await gateway.stop('SIGKILL');
      }
    });
  }
});

describe('a bug that escapes (an uncaught exception)', () => {
  /** A preload that throws outside any handler on SIGUSR2: what a bug in the gateway would do. */
  const bugOnSignal = new URL('./support/crash-on-signal.js', import.meta.url).href;
  const ended = (gateway: GatewayProcess, withinMs: number) =>
    new Promise<{ code: number | null; signal: NodeJS.Signals | null } | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), withinMs);
      gateway.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });

  it('writes the entries it holds, then exits 1, the error on stderr', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_mock: { provider: 'mock' } } }, env: { KEYS_WATCH: 'off', NODE_OPTIONS: `--import ${bugOnSignal}` } });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await chat(gateway.url, 'vk_mock', hello)).status, 200);
      // At once: the last entry still waits in its batch.
      const exit = ended(gateway, 15_000);
      gateway.child.kill('SIGUSR2');
      assert.deepEqual(await exit, { code: 1, signal: null });
      assert.match(gateway.stderr(), /uncaught exception \(a bug; please report it\), exiting: Error: a bug in the gateway/);
      assert.equal(readLogFile(gateway.logFile).length, 3, 'every entry in the file');
      assert.equal(gateway.stdout().match(/^\{$/gm)?.length, 3, 'and on stdout');
    } finally {
      await gateway.stop('SIGKILL');
    }
  });

  for (const workers of ['1', '2']) {
    it(`ends even with a stdout nobody reads (GATEWAY_WORKERS=${workers}): by SIGKILL once the 2 s flush gives up, the file complete`, async () => {
      const gateway = await startGateway({
        keys: { virtual_keys: { vk_mock: { provider: 'mock' } } },
        env: { KEYS_WATCH: 'off', GATEWAY_WORKERS: workers, NODE_OPTIONS: `--import ${bugOnSignal}` },
        readStdout: false,
      });
      try {
        // Entries of ~300 KB each: far more than the pipe holds.
        const body = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] };
        for (let i = 0; i < 4; i++) assert.equal((await chat(gateway.url, 'vk_mock', body)).status, 200);
        await waitFor(() => readLogFile(gateway.logFile).length === 4, 'the entries in the file');
        const exit = ended(gateway, 15_000);
        gateway.child.kill('SIGUSR2');
        if (workers === '1') {
          // While it writes what it can, it takes no new request.
          await waitFor(() => /uncaught exception/.test(gateway.stderr()), 'the crash said');
          const health = await request(gateway.url, '/healthz', { method: 'GET' }).then((reply) => reply.status, () => 'refused');
          assert.ok(health === 'refused' || health === 503, `healthz: ${health}`);
        }
        assert.deepEqual(await exit, { code: null, signal: 'SIGKILL' }, `it ends (Node's own exit would wait for the stuck write forever); stderr:\n${gateway.stderr()}`);
        assert.match(gateway.stderr(), /uncaught exception \(a bug; please report it\)/);
        assert.match(gateway.stderr(), /a write is still stuck \(see above\): ending by SIGKILL/);
        assert.equal(readLogFile(gateway.logFile).length, 4);
      } finally {
        await gateway.stop('SIGKILL');
      }
    });
  }
});

describe('with one gateway', () => {
  let gateway: GatewayProcess;
  before(async () => {
    const narrow = { vk_narrow: { name: 'narrow', provider: 'openai', api_key: OPENAI_KEY, base_url: upstream.baseUrl, models: ['gpt-4o-mini'] } };
    gateway = await startGateway({ keys: keysFor(narrow), env: { LOG_CONSOLE: 'off', UPSTREAM_TIMEOUT_MS: '400', UPSTREAM_IDLE_TIMEOUT_MS: '400', UPSTREAM_RETRIES: '0' } });
  });
  after(async () => {
    await gateway?.stop();
  });

  describe('the client goes away', () => {
    it('mid-stream: the upstream call is aborted at once, and the entry says 499 with the partial answer', async () => {
      upstream.behave(slowStream(1000, 30));
      try {
        const { res, req } = await openStream(gateway.url, 'vk_openai', { ...hello, stream: true });
        const id = String(res.headers['x-request-id']);
        await new Promise<void>((resolve) => res.once('data', () => resolve()));
        await sleep(100);
        req.destroy();
        await waitFor(() => upstream.requests.at(-1)?.aborted === true, 'the upstream sees its request aborted', 2000);
        const entry = await waitForEntry(gateway.logFile, id);
        assert.equal(entry.status, 499);
        assert.equal(entry.error.code, 'client_closed_request');
        assert.match(entry.response.choices[0].message.content, /^c0 /);
      } finally {
        upstream.behave(null);
      }
    });

    it('before the answer: the upstream call is aborted and the entry says 499', async () => {
      upstream.behave(() => new Promise<void>(() => {})); // never answers
      try {
        const req = http.request(`${gateway.url}/chat/completions`, { method: 'POST', agent: false, headers: { authorization: 'Bearer vk_openai', 'content-type': 'application/json' } });
        req.on('error', () => {});
        req.end(JSON.stringify(hello));
        await waitFor(() => upstream.requests.length > 0 && upstream.requests.at(-1)?.aborted === false, 'the upstream got the request');
        const seen = upstream.requests.at(-1);
        await sleep(50);
        req.destroy();
        await waitFor(() => seen?.aborted === true, 'the upstream sees its request aborted', 2000);
        await waitFor(() => readLogFile(gateway.logFile).some((entry) => entry.status === 499 && entry.stream === false), 'a 499 entry');
      } finally {
        upstream.behave(null);
      }
    });
  });

  describe('timeouts', () => {
    it('no response headers within UPSTREAM_TIMEOUT_MS → 504, logged', async () => {
      upstream.behave(() => new Promise<void>(() => {}));
      try {
        const reply = await chat(gateway.url, 'vk_openai', hello);
        assert.equal(reply.status, 504);
        assert.equal(reply.json.error.code, 'upstream_timeout');
        assert.equal(reply.json.error.message, 'The provider sent no response within 400 ms (UPSTREAM_TIMEOUT_MS).');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.status, 504);
        assert.equal(entry.error.code, 'upstream_timeout');
        // One attempt, no answer: listed, with why (the README: "or none got an answer").
        assert.deepEqual(entry.upstream.attempts.map((attempt: { status: number | null; error: string | null }) => [attempt.status, attempt.error]), [[null, 'upstream_timeout']]);
        await waitFor(() => upstream.requests.at(-1)?.aborted === true, 'the upstream call abandoned');
      } finally {
        upstream.behave(null);
      }
    });

    it('a stream silent for UPSTREAM_IDLE_TIMEOUT_MS ends with an error event, logged', async () => {
      upstream.behave(({ res }) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunkFrame('only '));
      });
      try {
        const reply = await chat(gateway.url, 'vk_openai', { ...hello, stream: true });
        const data = sseData(reply.text);
        assert.equal(JSON.parse(data[0] ?? '{}').choices[0].delta.content, 'only ');
        assert.equal(JSON.parse(data.at(-1) ?? '{}').error.code, 'upstream_idle_timeout');
        const entry = await waitForEntry(gateway.logFile, String(reply.headers['x-request-id']));
        assert.equal(entry.error.code, 'upstream_idle_timeout');
        assert.equal(entry.response.choices[0].message.content, 'only ');
      } finally {
        upstream.behave(null);
      }
    });

    it('a non-stream body that stalls → 504, and an error body that stalls does not hang either', async () => {
      for (const status of [200, 500]) {
        upstream.behave(({ res }) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.write('{"id":');
        });
        const reply = await chat(gateway.url, 'vk_openai', hello);
        assert.equal(reply.status, 504, `status ${status}`);
        assert.equal(reply.json.error.code, 'upstream_idle_timeout');
      }
      upstream.behave(null);
    });
  });

  describe('health and metrics', () => {
    it('GET /healthz answers 200 {"status":"ok"} without a key and is not logged', async () => {
      const reply = await request(gateway.url, '/healthz', { method: 'GET' });
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.json, { status: 'ok' });
      assert.ok(reply.headers['x-request-id']);
      await sleep(50);
      assert.equal(readLogFile(gateway.logFile).some((entry) => entry.path === '/healthz'), false);
      assert.equal((await request(gateway.url, '/healthz', { method: 'POST' })).status, 405);
      const head = await request(gateway.url, '/healthz', { method: 'HEAD' });
      assert.deepEqual([head.status, head.text], [200, ''], 'HEAD, as some load balancers check');
    });

    it('every response carries x-gateway-overhead-ms', async () => {
      const replies = [
        await chat(gateway.url, 'vk_openai', hello),
        await chat(gateway.url, 'vk_openai', { ...hello, stream: true }),
        await chat(gateway.url, 'vk_mock', hello),
        await chat(gateway.url, 'nope', hello),
        await request(gateway.url, '/nowhere', { method: 'GET' }),
        await request(gateway.url, '/healthz', { method: 'GET' }),
        await request(gateway.url, '/metrics', { method: 'GET' }),
      ];
      for (const reply of replies) {
        const value = Number(reply.headers['x-gateway-overhead-ms']);
        assert.ok(Number.isFinite(value) && value >= 0 && value < 1000, `${reply.status}: ${String(reply.headers['x-gateway-overhead-ms'])}`);
      }
    });

    it('GET /metrics exposes requests, durations, overhead, upstream ttfb, tokens, in-flight, log failures and reloads', async () => {
      const before = await request(gateway.url, '/metrics', { method: 'GET' });
      const count = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}().*+?[\]\\|^$]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      const okSeries = 'llm_gateway_requests_total{provider="openai",key_name="team-openai",model="gpt-4o-mini",status="200"}';
      const tokens = 'llm_gateway_prompt_tokens_total{provider="openai",key_name="team-openai",model="gpt-4o-mini"}';
      for (let i = 0; i < 3; i++) assert.equal((await chat(gateway.url, 'vk_openai', hello)).status, 200);
      const reply = await request(gateway.url, '/metrics', { method: 'GET' });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      const text = reply.text;
      assert.equal(count(text, okSeries) - count(before.text, okSeries), 3);
      assert.equal(count(text, tokens) - count(before.text, tokens), 33, 'prompt tokens: 3 × 11');
      for (const name of [
        'llm_gateway_request_duration_seconds_bucket{provider="openai",le="+Inf"}',
        'llm_gateway_overhead_seconds_count{provider="openai"}',
        'llm_gateway_upstream_ttfb_seconds_count{provider="openai"}',
        'llm_gateway_completion_tokens_total{provider="openai",key_name="team-openai",model="gpt-4o-mini"}',
        'llm_gateway_requests_in_flight',
        'llm_gateway_log_write_failures_total',
        'llm_gateway_virtual_keys',
      ]) {
        assert.ok(text.includes(`\n${name} `), `missing ${name}`);
      }
      assert.ok(count(text, 'llm_gateway_request_duration_seconds_count{provider="openai"}') >= 3);
      assert.equal(count(text, 'llm_gateway_virtual_keys'), 3);
      assert.equal(count(text, 'llm_gateway_requests_in_flight'), 0, 'idle: the scrape itself is not counted (an alert on > 0 clears)');
      assert.match(text, /# TYPE llm_gateway_overhead_seconds histogram/);
      assert.match(text, /# TYPE llm_gateway_key_reloads_total counter/);
      // Unauthenticated requests are counted without their (unbounded, untrusted) key or model.
      await chat(gateway.url, 'vk_who', hello);
      assert.match((await request(gateway.url, '/metrics', { method: 'GET' })).text, /llm_gateway_requests_total\{provider="",key_name="",model="",status="401"\} \d+/);
    });

    it('GET /metrics names only models a provider has served: a client cannot fill the series cap with refused or unknown names', async () => {
      const refused = await chat(gateway.url, 'vk_narrow', { ...hello, model: 'junk-model-1' });
      assert.equal(refused.status, 404);
      upstream.behave(({ res }) => {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'The model `junk-model-2` does not exist', type: 'invalid_request_error', code: 'model_not_found' } }));
      });
      try {
        assert.equal((await chat(gateway.url, 'vk_openai', { ...hello, model: 'junk-model-2' })).status, 404);
      } finally {
        upstream.behave(null);
      }
      assert.equal((await chat(gateway.url, 'vk_narrow', hello)).status, 200);
      const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      assert.doesNotMatch(text, /junk-model/);
      assert.match(text, /llm_gateway_requests_total\{provider="openai",key_name="narrow",model="",status="404"\} \d+/);
      assert.match(text, /llm_gateway_requests_total\{provider="openai",key_name="team-openai",model="",status="404"\} \d+/);
      assert.match(text, /llm_gateway_requests_total\{provider="openai",key_name="narrow",model="gpt-4o-mini",status="200"\} \d+/);
      // The log still says what was asked.
      const entry = await waitForEntry(gateway.logFile, String(refused.headers['x-request-id']));
      assert.equal(entry.model, 'junk-model-1');
    });

    it('GET /metrics never shows a virtual key: a named key by its name, an unnamed one by a digest prefix', async () => {
      assert.equal((await chat(gateway.url, 'vk_mock', hello)).status, 200);
      const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      assert.match(text, /llm_gateway_requests_total\{provider="mock",key_name="sha256:[0-9a-f]{12}",model="gpt-4o-mini",status="200"\} \d+/);
      assert.doesNotMatch(text, /vk_/, 'no virtual key anywhere in the metrics');
    });
  });
});

describe('gateway overhead', () => {
  it('excludes the wait for the provider: a 300 ms provider adds 300 ms to the duration, not to the overhead', async () => {
    upstream.behave(async () => {
      await sleep(300);
      return false; // then the standard answer
    });
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off' } });
    try {
      const reply = await chat(gateway.url, 'vk_openai', hello);
      assert.equal(reply.status, 200);
      const overhead = Number(reply.headers['x-gateway-overhead-ms']);
      assert.ok(overhead >= 0 && overhead < 100, `x-gateway-overhead-ms ${overhead}`);
      const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"=]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      assert.ok(value('llm_gateway_request_duration_seconds_sum{provider="openai"}') >= 0.3);
      assert.ok(value('llm_gateway_upstream_ttfb_seconds_sum{provider="openai"}') >= 0.3);
      assert.ok(value('llm_gateway_overhead_seconds_sum{provider="openai"}') < 0.1);
    } finally {
      upstream.behave(null);
      await gateway.stop();
    }
  });
});

describe('log write failures', () => {
  it('count every entry lost in llm_gateway_log_write_failures_total (not each write: one holds every entry of 10 ms), and are warned about once per failure streak', async () => {
    const gateway = await startGateway({ keys: keysFor(), logFile: '/dev/full', env: { LOG_CONSOLE: 'off' } });
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal((await chat(gateway.url, 'vk_mock', hello)).status, 200);
        await sleep(20);
      }
      // Twenty at once: written together.
      await Promise.all(Array.from({ length: 20 }, () => chat(gateway.url, 'vk_mock', hello)));
      await waitFor(() => /cannot write the log to \/dev\/full/.test(gateway.stderr()), 'the warning');
      const lost = async (): Promise<number> => Number(/^llm_gateway_log_write_failures_total (\d+)$/m.exec((await request(gateway.url, '/metrics', { method: 'GET' })).text)?.[1]);
      await waitFor(async () => (await lost()) === 25, `25 entries lost, counted ${await lost()}`);
      assert.equal((gateway.stderr().match(/cannot write the log/g) ?? []).length, 1, 'one warning for the streak');
    } finally {
      await gateway.stop();
    }
  });
});

describe('metrics token', () => {
  it('METRICS_TOKEN requires Authorization: Bearer on /metrics', async () => {
    // Any text an operator chose, spaces included.
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off', METRICS_TOKEN: 'scrape secret' } });
    try {
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET' })).status, 401);
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET', key: 'wrong' })).status, 401);
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET', key: 'scrape' })).status, 401);
      const ok = await request(gateway.url, '/metrics', { method: 'GET', key: 'scrape secret' });
      assert.equal(ok.status, 200);
      assert.match(ok.text, /llm_gateway_requests_total/);
      // The scheme in any case and any spacing, as HTTP allows it and virtual keys are read.
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET', headers: { authorization: 'bearer  scrape secret ' } })).status, 200);
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET', headers: { authorization: 'Bearer scrape secretX' } })).status, 401);
      assert.equal((await request(gateway.url, '/metrics', { method: 'GET', headers: { authorization: 'Bearer scrape  secret' } })).status, 401);
    } finally {
      await gateway.stop();
    }
  });

  it('without METRICS_TOKEN, a gateway listening beyond loopback refuses /metrics (403) and says so at start', async () => {
    const open = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off', GATEWAY_HOST: '0.0.0.0' } });
    try {
      const refused = await request(open.url, '/metrics', { method: 'GET' });
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error.code, 'metrics_token_required');
      assert.doesNotMatch(refused.text, /llm_gateway_/);
      assert.match(open.stderr(), /GET \/metrics answers 403 on this address until METRICS_TOKEN is set/);
      assert.equal((await chat(open.url, 'vk_mock', hello)).status, 200, 'everything else is served');
    } finally {
      await open.stop();
    }
    const withToken = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off', GATEWAY_HOST: '0.0.0.0', METRICS_TOKEN: 'scrape-secret' } });
    try {
      assert.equal((await request(withToken.url, '/metrics', { method: 'GET', key: 'scrape-secret' })).status, 200);
      assert.doesNotMatch(withToken.stderr(), /METRICS_TOKEN is set/);
    } finally {
      await withToken.stop();
    }
  });
});

describe('keys change without a restart', () => {
  it('reloads on file change (written in place or replaced by rename) and on SIGHUP; an invalid file keeps the previous keys', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_old: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off' } });
    try {
      assert.equal((await chat(gateway.url, 'vk_old', hello)).status, 200);
      assert.equal((await chat(gateway.url, 'vk_new', hello)).status, 401);

      // Written in place.
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_new: { provider: 'mock' } } }));
      await waitFor(() => /keys reloaded \(file changed\): 1 virtual key in use/.test(gateway.stderr()), 'a reload message');
      assert.equal((await chat(gateway.url, 'vk_new', hello)).status, 200, 'a new key works');
      assert.equal((await chat(gateway.url, 'vk_old', hello)).status, 401, 'a removed key gets 401');

      // An invalid file: the previous keys stay, every problem is reported.
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_a: { provider: 'nope' }, vk_b: { provider: 'openai' } } }));
      await waitFor(() => /keys NOT reloaded/.test(gateway.stderr()), 'a refusal message');
      assert.match(gateway.stderr(), /virtual key #1 \(v…\): unknown provider "nope"/);
      assert.match(gateway.stderr(), /virtual key #2 \(v…\): "api_key" is missing; put the real openai API key here/);
      assert.equal((await chat(gateway.url, 'vk_new', hello)).status, 200, 'previous keys still work');
      // Said once: other files changing in the folder (stderr redirected there, a log) do not say it again.
      for (let i = 0; i < 3; i++) {
        writeFileSync(join(gateway.dir, 'gateway.err'), `line ${i}\n`, { flag: 'a' });
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      assert.equal(gateway.stderr().match(/keys NOT reloaded/g)?.length, 1, gateway.stderr());
      // Back as in use, then the same mistake again: said again.
      const invalid = readFileSync(gateway.keysFile, 'utf8');
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_new: { provider: 'mock' } } }));
      // Said, since stderr's last word was the refusal (an edit undone, a redeploy of what runs).
      await waitFor(() => /keys file back as it is in use \(file changed\): the 1 virtual key in use stay/.test(gateway.stderr()), 'the mistake undone, said');
      writeFileSync(gateway.keysFile, invalid);
      await waitFor(() => gateway.stderr().match(/keys NOT reloaded/g)?.length === 2, 'the refusal said again');

      // Replaced the way editors and deploy tools do it: a new file renamed over the old one.
      const temp = join(gateway.dir, 'keys.json.tmp');
      writeFileSync(temp, JSON.stringify({ virtual_keys: { vk_renamed: { provider: 'mock' }, vk_two: { provider: 'mock' } } }));
      renameSync(temp, gateway.keysFile);
      await waitFor(() => /: 2 virtual keys in use/.test(gateway.stderr()), 'a reload after rename');
      assert.equal((await chat(gateway.url, 'vk_renamed', hello)).status, 200);

      // SIGHUP.
      const reloadsBefore = (gateway.stderr().match(/keys reloaded \(SIGHUP\)/g) ?? []).length;
      gateway.child.kill('SIGHUP');
      await waitFor(() => (gateway.stderr().match(/keys reloaded \(SIGHUP\)/g) ?? []).length > reloadsBefore, 'a SIGHUP reload');
      const metrics = await request(gateway.url, '/metrics', { method: 'GET' });
      assert.match(metrics.text, /llm_gateway_key_reloads_total\{result="ok"\} [3-9]/);
      assert.match(metrics.text, /llm_gateway_key_reloads_total\{result="error"\} [1-9]/);
      assert.doesNotMatch(gateway.stderr(), /"provider": "mock"/, 'never the file content');
    } finally {
      await gateway.stop();
    }
  });

  it('reloads a keys file mounted the Kubernetes way (a ..data symlink swapped to a new folder)', async () => {
    const dir = tempDir();
    const first = join(dir, '..2026_1');
    mkdirSync(first);
    writeFileSync(join(first, 'keys.json'), JSON.stringify({ virtual_keys: { vk_v1: { provider: 'mock' } } }));
    symlinkSync('..2026_1', join(dir, '..data'));
    symlinkSync('..data/keys.json', join(dir, 'keys.json'));
    const gateway = await startGateway({ keys: '{}', env: { LOG_CONSOLE: 'off', KEYS_FILE: join(dir, 'keys.json') } });
    try {
      assert.equal((await chat(gateway.url, 'vk_v1', hello)).status, 200);
      const second = join(dir, '..2026_2');
      mkdirSync(second);
      writeFileSync(join(second, 'keys.json'), JSON.stringify({ virtual_keys: { vk_v2: { provider: 'mock' } } }));
      symlinkSync('..2026_2', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // the atomic swap kubelet does
      await waitFor(() => /keys reloaded \(file changed\)/.test(gateway.stderr()), 'a reload');
      assert.equal((await chat(gateway.url, 'vk_v2', hello)).status, 200);
      assert.equal((await chat(gateway.url, 'vk_v1', hello)).status, 401);
    } finally {
      await gateway.stop();
    }
  });

  it('notices its folder replaced (rm -rf conf && mkdir conf && cp keys.json conf/) and applies later edits in the new one, without SIGHUP', async () => {
    const dir = tempDir();
    const conf = join(dir, 'conf');
    const keysFile = join(conf, 'keys.json');
    mkdirSync(conf);
    writeFileSync(keysFile, JSON.stringify({ virtual_keys: { vk_v1: { provider: 'mock' } } }));
    const gateway = await startGateway({ keys: '{}', env: { LOG_CONSOLE: 'off', KEYS_FILE: keysFile } });
    try {
      assert.equal((await chat(gateway.url, 'vk_v1', hello)).status, 200);
      rmSync(conf, { recursive: true });
      mkdirSync(conf);
      writeFileSync(keysFile, JSON.stringify({ virtual_keys: { vk_v2: { provider: 'mock' } } }));
      await waitFor(async () => (await chat(gateway.url, 'vk_v2', hello)).status === 200, 'the key of the new folder');
      // The edit that matters: the old folder's watch sees nothing of the new one.
      writeFileSync(keysFile, JSON.stringify({ virtual_keys: { vk_v3: { provider: 'mock' } } }));
      await waitFor(async () => (await chat(gateway.url, 'vk_v3', hello)).status === 200, 'an edit in the new folder');
      assert.equal((await chat(gateway.url, 'vk_v2', hello)).status, 401);
    } finally {
      await gateway.stop();
    }
  });

  it('notices a symlink above it swapped (Capistrano: current -> releases/N) and applies later edits, without SIGHUP', async () => {
    const dir = tempDir();
    const release = (n: number, key: string): void => {
      mkdirSync(join(dir, 'releases', String(n), 'config'), { recursive: true });
      writeFileSync(join(dir, 'releases', String(n), 'config', 'keys.json'), JSON.stringify({ virtual_keys: { [key]: { provider: 'mock' } } }));
    };
    release(1, 'vk_r1');
    symlinkSync('releases/1', join(dir, 'current'));
    const keysFile = join(dir, 'current', 'config', 'keys.json');
    const gateway = await startGateway({ keys: '{}', env: { LOG_CONSOLE: 'off', KEYS_FILE: keysFile } });
    try {
      assert.equal((await chat(gateway.url, 'vk_r1', hello)).status, 200);
      release(2, 'vk_r2');
      symlinkSync('releases/2', join(dir, 'current.tmp'));
      renameSync(join(dir, 'current.tmp'), join(dir, 'current')); // ln -s releases/2 current.tmp && mv -T current.tmp current
      await waitFor(async () => (await chat(gateway.url, 'vk_r2', hello)).status === 200, 'the key of the new release');
      assert.equal((await chat(gateway.url, 'vk_r1', hello)).status, 401);
      writeFileSync(keysFile, JSON.stringify({ virtual_keys: { vk_r2b: { provider: 'mock' } } }));
      await waitFor(async () => (await chat(gateway.url, 'vk_r2b', hello)).status === 200, 'an edit in the new release');
    } finally {
      await gateway.stop();
    }
  });

  it('applies a change within moments while another file in its folder is written every 10 ms (stdout redirected beside keys.json)', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_keep: { provider: 'mock' }, vk_leaked: { provider: 'mock' } } }, env: { LOG_CONSOLE: 'off' } });
    const out = join(gateway.dir, 'gateway.out');
    const writer = setInterval(() => appendFileSync(out, 'a line\n'), 10);
    try {
      await sleep(300);
      assert.equal((await chat(gateway.url, 'vk_leaked', hello)).status, 200);
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_keep: { provider: 'mock' } } }));
      const sizeAtChange = statSync(out).size;
      await waitFor(async () => (await chat(gateway.url, 'vk_leaked', hello)).status === 401, 'the removed key refused while the writes go on', 2000);
      assert.ok(statSync(out).size > sizeAtChange, 'the folder kept changing meanwhile');
      assert.equal((await chat(gateway.url, 'vk_keep', hello)).status, 200);
    } finally {
      clearInterval(writer);
      await gateway.stop();
    }
  });

  it('an in-flight request finishes with the key it started with', async () => {
    upstream.behave(slowStream(6, 80));
    const gateway = await startGateway({ keys: keysFor(), env: { LOG_CONSOLE: 'off' } });
    try {
      const { res } = await openStream(gateway.url, 'vk_openai', { ...hello, stream: true });
      const body = collect(res);
      await sleep(100);
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_other: { provider: 'mock' } } }));
      await waitFor(() => /keys reloaded/.test(gateway.stderr()), 'the reload');
      assert.equal((await chat(gateway.url, 'vk_openai', hello)).status, 401);
      const { text } = await body;
      assert.equal(sseData(text).at(-1), '[DONE]');
    } finally {
      upstream.behave(null);
      await gateway.stop();
    }
  });
});
