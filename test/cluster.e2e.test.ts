/**
 * GATEWAY_WORKERS: several workers on one port. Log entries never interleave, /metrics answers
 * for the whole instance, SIGHUP and SIGTERM reach every worker, a dead worker is replaced.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { children, MAIN, parseJsonStream, readLogFile, startGateway, tempDir, waitFor, type GatewayProcess } from './support/gateway.js';
import { endWithFile } from './support/children.js';
import { chat, openStream, request } from './support/http.js';
import { freePort } from './support/ports.js';

function requestsTotal(metrics: string): number {
  let total = 0;
  for (const match of metrics.matchAll(/^llm_gateway_requests_total\{[^}]*\} (\d+)$/gm)) total += Number(match[1]);
  return total;
}

describe('several workers (GATEWAY_WORKERS=2)', () => {
  let gateway: GatewayProcess;
  let targetFile: string;

  before(async () => {
    // KEYS_WATCH=off: only SIGHUP reloads, so the SIGHUP test below proves the signal alone
    // reaches every worker (file-change reload in a cluster is tested further down).
    gateway = await startGateway({ keys: { virtual_keys: { vk_a: { provider: 'mock' } } }, env: { GATEWAY_WORKERS: '2', KEYS_WATCH: 'off', UPSTREAM_RETRIE: '0' } });
    targetFile = gateway.keysFile;
  });

  after(async () => {
    await gateway?.stop('SIGKILL');
  });

  it('starts two workers on one port, saying once that a variable set is a typo of a setting', async () => {
    assert.match(gateway.stderr(), /listening on http:\/\/\S+ with 1 virtual key \(2 workers\); log file: [^;]+; limits counted by this instance alone \(no REDIS_URL\)\n/);
    assert.equal((gateway.stderr().match(/UPSTREAM_RETRIE is not a setting of this gateway and is ignored: did you mean UPSTREAM_RETRIES\?/g) ?? []).length, 1);
    await waitFor(() => children(gateway.child.pid as number).length === 2, 'two worker processes');
  });

  it('writes whole entries from every worker, never interleaved, to the file and stdout', async () => {
    const big = 'x'.repeat(20_000); // entries far larger than a pipe's atomic write size
    const replies = await Promise.all(
      // Some agent-sized, with characters of every UTF-8 length: entries travel from the workers as bytes.
      Array.from({ length: 60 }, (_, i) => chat(gateway.url, 'vk_a', { model: 'm', stream: i % 2 === 0, messages: [{ role: 'user', content: `${i} ${i % 20 === 1 ? 'é — 😀 '.repeat(6_000) : big}` }] })),
    );
    assert.ok(replies.every((reply) => reply.status === 200));
    const ids = replies.map((reply) => String(reply.headers['x-request-id']));
    // Whole entries, not ids: an id stands near the top of its entry, whose body may still be on its way.
    await waitFor(() => parseJsonStream(gateway.stdout()).length >= 60, 'every entry on stdout, whole', 10_000);
    await waitFor(() => readLogFile(gateway.logFile).length >= 60, 'every entry in the file', 10_000);
    for (const text of [readFileSync(gateway.logFile, 'utf8'), gateway.stdout()]) {
      const entries = parseJsonStream(text) as Array<{ request_id: string }>;
      assert.equal(entries.map((entry) => `${JSON.stringify(entry, null, 2)}\n`).join(''), text, 'the text is exactly the whole entries, back to back');
      for (const id of ids) assert.equal(entries.filter((entry) => entry.request_id === id).length, 1);
    }
  });

  it('answers /metrics for the whole instance, whichever worker takes the scrape', async () => {
    const before = requestsTotal((await request(gateway.url, '/metrics', { method: 'GET' })).text);
    for (let i = 0; i < 20; i++) assert.equal((await chat(gateway.url, 'vk_a', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 200);
    // Fresh connections land on either worker; every scrape must count all 20.
    for (let i = 0; i < 6; i++) {
      const text = (await request(gateway.url, '/metrics', { method: 'GET' })).text;
      assert.equal(requestsTotal(text) - before, 20);
      assert.match(text, /^llm_gateway_virtual_keys 1$/m);
    }
  });

  it('fails a scrape the primary does not answer within its timeout (503 metrics_unavailable), rather than serving one worker\'s counters as the instance\'s', async () => {
    // One kept-alive connection: with the primary stopped, it still reaches its worker.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const scrape = (): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        http
          // As Prometheus says its timeout: the gateway waits half a second less.
          .get(`${gateway.url}/metrics`, { agent, headers: { 'x-prometheus-scrape-timeout-seconds': '2' } }, (res) => {
            let text = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          })
          .on('error', reject);
      });
    try {
      for (let i = 0; i < 4; i++) await chat(gateway.url, 'vk_a', { model: 'm', messages: [{ role: 'user', content: 'x' }] });
      const whole = await scrape();
      assert.equal(whole.status, 200);
      process.kill(gateway.child.pid as number, 'SIGSTOP');
      let stalled: { status: number; text: string };
      const asked = performance.now();
      let waited: number;
      try {
        stalled = await scrape();
        waited = performance.now() - asked;
      } finally {
        process.kill(gateway.child.pid as number, 'SIGCONT');
      }
      assert.equal(stalled.status, 503, stalled.text.slice(0, 300));
      // Its 2 s less half a second, not the 10 s a scrape without a timeout of its own waits.
      assert.ok(waited >= 1400 && waited < 6000, `answered after ${Math.round(waited)} ms: the scrape's own timeout less half a second`);
      assert.equal(JSON.parse(stalled.text).error.code, 'metrics_unavailable');
      const again = await scrape();
      assert.equal(again.status, 200);
      assert.ok(requestsTotal(again.text) >= requestsTotal(whole.text));
    } finally {
      agent.destroy();
    }
  });

  it('keeps the instance totals when a worker dies (counters never go down)', async () => {
    for (let i = 0; i < 10; i++) await chat(gateway.url, 'vk_a', { model: 'm', messages: [{ role: 'user', content: 'x' }] });
    const before = requestsTotal((await request(gateway.url, '/metrics', { method: 'GET' })).text);
    const [victim] = children(gateway.child.pid as number);
    process.kill(victim as number, 'SIGKILL');
    await waitFor(() => /starting a replacement/.test(gateway.stderr()), 'the replacement');
    await waitFor(() => children(gateway.child.pid as number).length === 2, 'two workers again', 10_000);
    const after = requestsTotal((await request(gateway.url, '/metrics', { method: 'GET' })).text);
    assert.ok(after >= before, `requests_total went from ${before} to ${after}`);
  });

  it('SIGHUP reaches every worker', async () => {
    writeFileSync(targetFile, JSON.stringify({ virtual_keys: { vk_b: { provider: 'mock' } } }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await chat(gateway.url, 'vk_b', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 401, 'not reloaded without the signal');
    gateway.child.kill('SIGHUP');
    await waitFor(() => /keys reloaded \(SIGHUP\): 1 virtual key in use by 2 workers/.test(gateway.stderr()), 'the reload message');
    assert.equal((gateway.stderr().match(/keys reloaded/g) ?? []).length, 1, 'reported once, by the primary');
    assert.match((await request(gateway.url, '/metrics', { method: 'GET' })).text, /^llm_gateway_key_reloads_total\{result="ok"\} 1$/m, 'counted once');
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (let i = 0; i < 12; i++) {
      assert.equal((await chat(gateway.url, 'vk_b', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 200, `request ${i}`);
      assert.equal((await chat(gateway.url, 'vk_a', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 401, `request ${i}`);
    }
  });

  it('replaces a worker that dies, even while the keys file on disk is broken', async () => {
    writeFileSync(targetFile, '{"virtual_keys": {'); // the primary's validated keys are what a replacement gets
    const [victim] = children(gateway.child.pid as number);
    assert.ok(victim !== undefined);
    const before = (gateway.stderr().match(/died \(SIGKILL\); starting a replacement/g) ?? []).length;
    process.kill(victim, 'SIGKILL');
    await waitFor(() => (gateway.stderr().match(/died \(SIGKILL\); starting a replacement/g) ?? []).length > before, 'the replacement message');
    await waitFor(() => {
      const now = children(gateway.child.pid as number);
      return now.length === 2 && !now.includes(victim);
    }, 'two workers again', 10_000);
    for (let i = 0; i < 10; i++) assert.equal((await chat(gateway.url, 'vk_b', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 200);
    assert.doesNotMatch(gateway.stderr(), /failed to start|stopping/);
  });

  it('SIGTERM reaches every worker: all exit, the log is complete, exit code 0', async () => {
    const workers = children(gateway.child.pid as number);
    const reply = await chat(gateway.url, 'vk_b', { model: 'm', messages: [{ role: 'user', content: 'last' }] });
    assert.equal(await gateway.stop('SIGTERM'), 0);
    assert.ok(readLogFile(gateway.logFile).some((entry) => entry.request_id === reply.headers['x-request-id']));
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), 'worker gone');
  });
});

describe('stopping a cluster', () => {
  it('drains once for a SIGTERM sent to the whole process group (systemd, Ctrl-C), and a worker that crashes flushes first and is replaced', async () => {
    // Streams get a first chunk at once and their end 0.8 s later; other requests their answer at once.
    const chunk = (content: string, finish: string | null): string => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
    const provider = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (piece: Buffer) => chunks.push(piece));
      req.on('end', () => {
        if ((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { stream?: boolean }).stream !== true) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'c2', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'now' }, finish_reason: 'stop' }], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk('first ', null));
        setTimeout(() => res.end(`${chunk('last', 'stop')}data: [DONE]\n\n`), 800);
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const crashOnCue = new URL('./support/crash-on-signal.js', import.meta.url).href;
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_s: { provider: 'openai', api_key: 'sk-stop', base_url: `http://127.0.0.1:${(provider.address() as AddressInfo).port}/v1` } } },
      env: { GATEWAY_WORKERS: '2', KEYS_WATCH: 'off', LOG_CONSOLE: 'off', NODE_OPTIONS: `--import ${crashOnCue}` },
    });
    const primary = gateway.child.pid as number;
    const ask = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    try {
      await waitFor(() => children(primary).length === 2, 'two workers');
      const reply = await chat(gateway.url, 'vk_s', ask);
      assert.equal(reply.status, 200);
      const [crashed] = children(primary);
      process.kill(crashed as number, 'SIGUSR2');
      await waitFor(() => /starting a replacement/.test(gateway.stderr()), 'the replacement');
      assert.match(gateway.stderr(), /llm-gateway: uncaught exception \(a bug; please report it\), exiting: Error: a bug in the gateway/);
      await waitFor(() => readLogFile(gateway.logFile).some((entry) => entry.request_id === reply.headers['x-request-id']), 'the entry logged');
      await waitFor(() => children(primary).length === 2 && !children(primary).includes(crashed as number), 'two workers again', 10_000);
      await waitFor(async () => (await chat(gateway.url, 'vk_s', ask)).status === 200, 'served again');
      // The replacement past Node's own start, where a SIGTERM kills it (Node catches it there to
      // end the process): its first line of JavaScript takes the primary's signals, SIGHUP among
      // them, which Node leaves alone until then.
      const catchesSighup = (pid: number): boolean => {
        const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
        return mask !== undefined && (BigInt(`0x${mask}`) & 1n) !== 0n;
      };
      await waitFor(() => children(primary).every(catchesSighup), 'both workers past their start');

      const { res } = await openStream(gateway.url, 'vk_s', { ...ask, stream: true });
      let text = '';
      res.setEncoding('utf8').on('data', (piece: string) => (text += piece));
      await waitFor(() => text.includes('first'), 'the first chunk');
      // As systemd stops a unit (KillMode=control-group), or Ctrl-C: every process of it gets the
      // signal, here the workers a little before the primary (at once, the kernel may merge a
      // worker's two SIGTERMs into one).
      for (const pid of children(primary)) process.kill(pid, 'SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 100));
      process.kill(primary, 'SIGTERM');
      await new Promise((resolve) => res.on('end', resolve));
      assert.match(text, /"content":"last"[\s\S]*data: \[DONE\]/, `the stream finished as the provider ended it: ${text}`);
      assert.doesNotMatch(text, /gateway_shutting_down/);
      assert.equal(await gateway.exited, 0);
      assert.doesNotMatch(gateway.stderr(), /SIGTERM again|died \(exit 0\)/, 'one stop, not a second one; no worker ended and replaced on its own');
      // A worker says its drain by its pid: two workers' lines alike would read as one said twice.
      assert.match(gateway.stderr(), /^llm-gateway: worker \d+: SIGTERM: no longer accepting connections; 1 request\(s\) in flight/m);
      assert.doesNotMatch(gateway.stderr(), /^llm-gateway: SIGTERM: no longer accepting/m);
    } finally {
      await gateway.stop('SIGKILL');
      provider.closeAllConnections();
      provider.close();
    }
  });
});

describe('a cluster stopped while its workers start', () => {
  it('stops at once: a worker that missed the stop (sent before it listened for messages) is told it when it says hello', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ virtual_keys: { vk_early_stop_4f9c2a7e1b3d5f60: { provider: 'mock' } } }));
    const env = { PATH: process.env.PATH ?? '', KEYS_FILE: join(dir, 'keys.json'), LOG_FILE: join(dir, 'log.json'), LOG_CONSOLE: 'off', KEYS_WATCH: 'off', GATEWAY_WORKERS: '2', GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: '0', GATEWAY_SHUTDOWN_TIMEOUT_MS: '1000' };
    const child = endWithFile(spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Forked, still loading their modules (a few hundred ms): the stop reaches them before they listen for it.
    await waitFor(() => children(child.pid as number).length === 2, 'two workers forked');
    child.kill('SIGTERM');
    const stopped = performance.now();
    assert.equal(await exited, 0, stderr);
    assert.ok(performance.now() - stopped < 5_000, `took ${Math.round(performance.now() - stopped)} ms: ${stderr}`);
    assert.doesNotMatch(stderr, /still running/);
  });
});

describe('a cluster with more workers than cores', () => {
  it('starts and serves, and says at start that the extra workers compete for the cores', async () => {
    const cores = availableParallelism();
    const gateway = await startGateway({ keys: { virtual_keys: { vk_a: { provider: 'mock' } } }, env: { GATEWAY_WORKERS: String(cores + 1), LOG_CONSOLE: 'off', KEYS_WATCH: 'off' } });
    try {
      assert.equal((await chat(gateway.url, 'vk_a', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 200);
      await waitFor(() => /GATEWAY_WORKERS=\d+ on \d+ cores?: workers beyond the cores compete for them/.test(gateway.stderr()), 'the warning');
      assert.match(gateway.stderr(), new RegExp(`GATEWAY_WORKERS=${cores + 1} on ${cores} cores?:`));
    } finally {
      await gateway.stop('SIGKILL');
    }
  });
});

describe('a cluster with the keys file watched', () => {
  it('reloads every worker on a file change, reporting and counting it once; SIGINT stops it with exit 0', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_a: { provider: 'mock' } } }, env: { GATEWAY_WORKERS: '2', LOG_CONSOLE: 'off' } });
    try {
      writeFileSync(gateway.keysFile, JSON.stringify({ virtual_keys: { vk_c: { provider: 'mock' } } }));
      await waitFor(() => /keys reloaded \(file changed\)/.test(gateway.stderr()), 'the reload');
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (let i = 0; i < 8; i++) assert.equal((await chat(gateway.url, 'vk_c', { model: 'm', messages: [{ role: 'user', content: 'x' }] })).status, 200);
      assert.equal((gateway.stderr().match(/keys reloaded/g) ?? []).length, 1);
      assert.match((await request(gateway.url, '/metrics', { method: 'GET' })).text, /^llm_gateway_key_reloads_total\{result="ok"\} 1$/m);
      assert.equal(await gateway.stop('SIGINT'), 0);
    } finally {
      await gateway.stop('SIGKILL');
    }
  });
});

describe('a cluster that cannot start', () => {
  it('exits 1 instead of forking workers forever when the port is taken', async () => {
    const holder = await startGateway({ keys: { virtual_keys: { vk: { provider: 'mock' } } } });
    try {
      const { runGatewayUntilExit } = await import('./support/gateway.js');
      const result = await runGatewayUntilExit({ KEYS_FILE: holder.keysFile, GATEWAY_PORT: String(holder.port), GATEWAY_WORKERS: '2' });
      assert.equal(result.code, 1, `stderr: ${result.stderr}`);
      assert.match(result.stderr, /EADDRINUSE|failed to start/);
    } finally {
      await holder.stop();
    }
  });
});

describe('limits with workers', () => {
  it('lets a request through when the primary answers its limits check late, and gives back nothing the late refusal never held', async () => {
    // Streams are held open; a request without `stream` gets its answer at once.
    const provider = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { stream?: boolean };
        if (body.stream === true) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }] })}\n\n`);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'c2', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'late' }, finish_reason: 'stop' }], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } }));
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(provider.address() as AddressInfo).port}/v1`;
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_late: { provider: 'openai', api_key: 'sk-late', base_url: baseUrl, budget: { max_tokens: 100_000, period: 'month' } } } },
      env: { LOG_CONSOLE: 'off', GATEWAY_WORKERS: '2', KEYS_WATCH: 'off' },
    });
    const usage = async () => (await request(gateway.url, '/v1/usage', { method: 'GET', headers: { authorization: 'Bearer vk_late' } })).json;
    // The primary hands new connections to the workers: while it is stopped only a connection a
    // worker already holds is served. One socket, kept alive, opened before the stop.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const onKeptSocket = (method: string, path: string, body?: unknown): Promise<{ status: number; text: string; reused: boolean }> =>
      new Promise((resolve, reject) => {
        const text = body === undefined ? undefined : JSON.stringify(body);
        const headers: Record<string, string> = { authorization: 'Bearer vk_late' };
        if (text !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
        const req = http.request(`${gateway.url}${path}`, { method, headers, agent }, (res) => {
          let answer = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: answer, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(text);
      });
    const primary = gateway.child.pid as number;
    let stopped = false;
    try {
      const streamed = { model: 'gpt-4o-mini', max_tokens: 40_000, stream: true, messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 0; i < 3; i++) {
        const { res, req } = await openStream(gateway.url, 'vk_late', streamed);
        assert.equal(res.statusCode, 200);
        res.on('error', () => {});
        req.on('error', () => {});
      }
      const held = (await usage()).in_flight.tokens as number;
      assert.ok(held > 100_000, `the three streams hold the budget: ${held}`);
      assert.equal((await onKeptSocket('GET', '/healthz')).status, 200, 'the kept socket is open on a worker');

      process.kill(primary, 'SIGSTOP');
      stopped = true;
      const late = onKeptSocket('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', max_tokens: 40_000, messages: [{ role: 'user', content: 'hi' }] });
      // Past the worker's 2 s wait for the primary's answer, with room for a busy machine.
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      process.kill(primary, 'SIGCONT');
      stopped = false;
      const answer = await late;
      assert.ok(answer.reused, 'sent on the socket a worker already held');
      assert.equal(answer.status, 200, `let through while the primary did not answer: ${answer.text}`);
      assert.match(JSON.parse(answer.text).choices[0].message.content, /late/);
      // Said once for the stall, not once per request.
      await waitFor(() => /the primary did not answer a limits check within 2 s; requests are let through unchecked until it does/.test(gateway.stderr()), 'the warning');

      // The primary refused that check when it came to it (the budget was held), so it holds
      // nothing for that request: its record gives nothing back, and the streams' holds stand.
      await waitFor(async () => (await usage()).requests === 1, 'the late request recorded', 5_000);
      const after = await usage();
      assert.equal(after.in_flight.tokens, held, `the streams still hold what they held: ${JSON.stringify(after)}`);
      assert.equal(after.usage.total_tokens, 10, 'the late request spent what its answer said');
      assert.equal((await chat(gateway.url, 'vk_late', { model: 'gpt-4o-mini', max_tokens: 40_000, messages: [{ role: 'user', content: 'hi' }] })).status, 429, 'the budget is still held');
    } finally {
      if (stopped) process.kill(primary, 'SIGCONT');
      agent.destroy();
      await gateway.stop('SIGKILL');
      provider.closeAllConnections();
      provider.close();
    }
  });

  it("gives back what a dead worker's requests in flight held: the key is not locked out of its budget and rate", async () => {
    // A provider that starts every stream and never ends it.
    const provider = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }] })}\n\n`);
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(provider.address() as AddressInfo).port}/v1`;
    const gateway = await startGateway({
      keys: { virtual_keys: { vk_held: { provider: 'openai', api_key: 'sk-held', base_url: baseUrl, budget: { max_tokens: 100_000, period: 'month' }, rate_limit: { tokens_per_minute: 1_000_000 } } } },
      // A port of its own: with every worker gone, an ephemeral one would not be the same again.
      env: { LOG_CONSOLE: 'off', GATEWAY_WORKERS: '2', KEYS_WATCH: 'off', GATEWAY_PORT: String(await freePort()) },
    });
    const usage = async () => (await request(gateway.url, '/v1/usage', { method: 'GET', headers: { authorization: 'Bearer vk_held' } })).json;
    try {
      const ask = { model: 'gpt-4o-mini', max_tokens: 40_000, stream: true, messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 0; i < 3; i++) {
        const { res, req } = await openStream(gateway.url, 'vk_held', ask);
        assert.equal(res.statusCode, 200);
        res.on('error', () => {});
        req.on('error', () => {});
      }
      const held = await usage();
      assert.ok(held.in_flight.tokens > 100_000, JSON.stringify(held));
      assert.equal((await chat(gateway.url, 'vk_held', ask)).status, 429, 'the budget is held by the three in flight');
      const workers = children(gateway.child.pid as number);
      for (const pid of workers) process.kill(pid, 'SIGKILL');
      await waitFor(() => (gateway.stderr().match(/starting a replacement/g) ?? []).length === 2, 'both replaced', 10_000).catch((err: Error) => {
        throw new Error(`${err.message}: workers ${workers.join(', ')}; stderr: ${gateway.stderr()}`);
      });
      // Until a new worker listens, the port refuses connections.
      await waitFor(() => usage().then((reply) => reply.requests !== undefined, () => false), 'a new worker listening', 10_000);
      const after = await usage();
      assert.deepEqual(after.in_flight, { tokens: 0, cost_usd: 0 }, 'nothing held by requests that died');
      assert.equal(after.requests, 3, 'each counted as a request (of no known usage)');
      assert.equal(after.budget.remaining_tokens, 100_000);
      assert.equal(after.rate_limit.tokens_per_minute.remaining, 1_000_000, 'the rate given back too');
    } finally {
      await gateway.stop('SIGKILL');
      provider.closeAllConnections();
      provider.close();
    }
  });
});

describe('a cluster whose primary is killed outright (SIGKILL) under load', () => {
  it('has its workers end on their own, none of them with an uncaught error from a message it could no longer send', async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_a: { provider: 'mock' } } }, env: { GATEWAY_WORKERS: '2', KEYS_WATCH: 'off', LOG_CONSOLE: 'off' } });
    // Small requests on kept-alive connections, as SDKs keep them: a worker serves on after its
    // primary is gone, and sends it each request's spend.
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const post = (): Promise<void> =>
      new Promise((resolve) => {
        const req = http.request(`${gateway.url}/v1/chat/completions`, { method: 'POST', agent, headers: { authorization: 'Bearer vk_a', 'content-type': 'application/json' } }, (res) => res.resume().on('end', resolve).on('error', resolve));
        req.on('error', () => resolve());
        req.end(body);
      });
    let killed = false;
    const load = Promise.all(
      Array.from({ length: 32 }, async () => {
        while (!killed) await post();
      }),
    );
    try {
      await waitFor(() => children(gateway.child.pid as number).length === 2, 'two worker processes');
      const workers = children(gateway.child.pid as number);
      await waitFor(() => readLogFile(gateway.logFile).length >= 20, 'traffic under way');
      gateway.child.kill('SIGKILL');
      await waitFor(() => workers.every((pid) => !existsSync(`/proc/${pid}`) || /^\S+ \S+ Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/\(.*\)/, 'x'))), 'the workers ended', 15_000);
      killed = true;
      await load;
      assert.doesNotMatch(gateway.stderr(), /uncaught/i);
    } finally {
      killed = true;
      agent.destroy();
      await gateway.stop('SIGKILL');
    }
  });
});

describe('a cluster under agent-sized traffic', () => {
  it("logs every entry: 200 requests of 400 KB, 32 at a time, none dropped on the way to the primary", async () => {
    const gateway = await startGateway({ keys: { virtual_keys: { vk_a: { provider: 'mock' } } }, env: { GATEWAY_WORKERS: '2', KEYS_WATCH: 'off', LOG_CONSOLE: 'off' } });
    try {
      const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(400_000) }] });
      const statuses: number[] = [];
      let sent = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (sent < 200) {
            sent++;
            statuses.push((await chat(gateway.url, 'vk_a', body)).status);
          }
        }),
      );
      assert.deepEqual(new Set(statuses), new Set([200]));
      gateway.child.kill('SIGTERM');
      assert.equal(await gateway.exited, 0);
      assert.doesNotMatch(gateway.stderr(), /not keeping up|dropping/);
      const file = readFileSync(gateway.logFile, 'utf8');
      assert.equal(file.match(/^}$/gm)?.length, 200, 'an entry for every request');
    } finally {
      await gateway.stop('SIGKILL');
    }
  });
});
