/**
 * Beyond one machine: the shipped examples/nginx.conf in front of two gateway instances sharing
 * one Redis. A stream must pass through nginx event by event (no buffering), both instances
 * serve, and a key's rate limit holds for the pair. Needs an nginx binary and redis-server
 * (.ci/run installs Debian's); skipped, saying so, where there is none.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { endWithFile } from './support/children.js';
import { ROOT, readLogFile, startGateway, tempDir, waitFor, type GatewayProcess } from './support/gateway.js';
import { chat, openStream, request, sseData } from './support/http.js';
import { freePort } from './support/ports.js';
import { startOpenAIMock, type MockUpstream } from './support/mock-openai.js';
import { NO_REDIS, startRedis, type TestRedis } from './support/redis.js';

const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find((path) => existsSync(path)) ?? (spawnSync('which', ['nginx']).stdout?.toString().trim() || null);
const OPENAI_KEY = 'sk-proj-nginxOPENAIkey-9911';

const chunkFrame = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-n', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: finish === null ? { content } : {}, finish_reason: finish }] })}\n\n`;

/** examples/nginx.conf with this test's ports, nothing else changed (its files go in the prefix's logs/, as the README runs it). */
function configFor(listen: number, gateways: number[]): string {
  const shipped = readFileSync(join(ROOT, 'examples', 'nginx.conf'), 'utf8');
  const servers = [...shipped.matchAll(/^\s*server 127\.0\.0\.1:(\d+) .*;$/gm)];
  assert.equal(servers.length, 2, 'the example lists two gateway instances');
  let conf = shipped.replace(/listen 8000;/, `listen 127.0.0.1:${listen};`);
  gateways.forEach((port, i) => {
    const line = (servers[i] as RegExpMatchArray)[0];
    conf = conf.replace(line, line.replace(`127.0.0.1:${(servers[i] as RegExpMatchArray)[1]}`, `127.0.0.1:${port}`));
  });
  return conf;
}

describe('nginx in front of two gateway instances', { skip: NGINX === null ? 'nginx is not installed (.ci/run installs it)' : NO_REDIS }, () => {
  let upstream: MockUpstream;
  let redis: TestRedis;
  const gateways: GatewayProcess[] = [];
  let nginx: ChildProcess;
  let nginxUrl = '';
  let nginxErr = '';
  let nginxPrefix = '';

  before(async () => {
    upstream = await startOpenAIMock({ flavor: 'openai', apiKey: OPENAI_KEY });
    redis = await startRedis();
    for (let i = 0; i < 2; i++) {
      gateways.push(
        await startGateway({
          keys: {
            virtual_keys: {
              vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: upstream.baseUrl },
              vk_mock: { provider: 'mock' },
              vk_limited: { provider: 'mock', rate_limit: { requests_per_minute: 4 } },
            },
          },
          env: { LOG_CONSOLE: 'off', REDIS_URL: redis.url() },
        }),
      );
    }
    const prefix = tempDir();
    nginxPrefix = prefix;
    mkdirSync(join(prefix, 'logs'));
    const port = await freePort();
    writeFileSync(join(prefix, 'nginx.conf'), configFor(port, gateways.map((gateway) => gateway.port)));
    // As the README starts it (daemon off only to keep it this test's child).
    nginx = endWithFile(spawn(NGINX as string, ['-p', prefix, '-e', 'logs/nginx-error.log', '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    nginx.stderr?.setEncoding('utf8').on('data', (text: string) => (nginxErr += text));
    nginxUrl = `http://127.0.0.1:${port}`;
    await waitFor(() => {
      const probe = spawnSync(process.execPath, ['-e', `require('net').connect(${port}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`]);
      return probe.status === 0;
    }, `nginx to listen (${nginxErr})`, 10_000);
  });

  after(async () => {
    nginx?.kill('SIGQUIT');
    for (const gateway of gateways) await gateway.stop();
    await upstream?.close();
    await redis?.stop();
  });

  it('holds a key\'s rate limit for both instances together (shared through Redis)', async () => {
    for (const gateway of gateways) await waitFor(async () => /"redis":"ok"/.test((await request(gateway.url, '/healthz', { method: 'GET' })).text), 'Redis connected');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await chat(nginxUrl, 'vk_limited', { model: 'm', messages: [{ role: 'user', content: 'hi' }] })).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429, 429, 429], 'four a minute, whichever instance nginx picks');
    const served = (): number[] => gateways.map((gateway) => readLogFile(gateway.logFile).filter((entry) => entry.status === 200 && entry.virtual_key === 'vk_limited').length);
    await waitFor(() => served().reduce((sum, count) => sum + count) === 4, 'the four entries written');
    assert.ok(served().every((count) => count > 0), `both instances served some: ${served().join(', ')}`);
  });

  it('streams event by event through nginx: the first chunk arrives while the upstream is still sending', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    upstream.behave(async ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkFrame('first'));
      await released;
      res.write(chunkFrame(' second'));
      res.write(chunkFrame('', 'stop'));
      res.end('data: [DONE]\n\n');
    });
    try {
      const { res } = await openStream(nginxUrl, 'vk_openai', { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
      let text = '';
      res.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the first chunk did not come through nginx while the upstream waited')), 5000);
        res.on('data', (piece: string) => {
          text += piece;
          if (text.includes('first')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      assert.doesNotMatch(text, /second/);
      release();
      await new Promise((resolve) => res.on('end', resolve));
      assert.equal(sseData(text).at(-1), '[DONE]');
    } finally {
      release();
      upstream.behave(null);
    }
  });

  it('spreads requests over both instances, each logging its own', async () => {
    for (let i = 0; i < 12; i++) {
      const reply = await chat(nginxUrl, 'vk_mock', { model: 'm', messages: [{ role: 'user', content: `n${i}` }] });
      assert.equal(reply.status, 200);
      assert.equal(reply.json.choices[0].message.content, `Echo: n${i}`);
    }
    await waitFor(() => gateways.every((gateway) => readLogFile(gateway.logFile).length > 0), 'entries in both logs');
  });

  it('refuses /metrics, however it is spelled: the instances serve it without a token to nginx, which asks from their loopback address', async () => {
    assert.equal((await request((gateways[0] as GatewayProcess).url, '/metrics', { method: 'GET' })).status, 200, 'served to a local asker');
    for (const path of ['/metrics', '/metrics?x=1', '/%6detrics', '//metrics', '/v1/../metrics']) {
      const reply = await request(nginxUrl, path, { method: 'GET' });
      assert.equal(reply.status, 403, path);
      assert.doesNotMatch(reply.text, /llm_gateway_/, path);
    }
  });

  it('loses no request when one instance is stopped (SIGTERM) under continuous traffic', async () => {
    const statuses = new Map<number, number>();
    let running = true;
    const client = async (): Promise<void> => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        while (running) {
          const status = await new Promise<number>((resolve) => {
            const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
            const req = http.request(`${nginxUrl}/chat/completions`, { method: 'POST', agent, headers: { authorization: 'Bearer vk_mock', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
              res.on('error', () => resolve(-1));
            });
            req.on('error', () => resolve(-1));
            req.end(body);
          });
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      } finally {
        agent.destroy();
      }
    };
    const clients = Array.from({ length: 12 }, client);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const stopped = (gateways[0] as GatewayProcess).stop('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 800));
    running = false;
    await Promise.all(clients);
    assert.equal(await stopped, 0);
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    assert.ok(total > 100, `enough traffic (${total} requests)`);
    const errorLog = (): string => {
      try {
        return readFileSync(join(nginxPrefix, 'logs', 'nginx-error.log'), 'utf8').split('\n').slice(-10).join('\n');
      } catch {
        return '(no error.log)';
      }
    };
    // HTTP/1.1 cannot rule out one race (the README says so): nginx sending a POST on a keep-alive
    // connection the stopping instance is closing, which it may not resend. Seen about once in 20
    // runs on a quiet machine, and on a busy one (CI) up to three at once, nginx's workers each
    // reusing a connection of their own (docs/performance.md): up to three 502s, each with that
    // reset in nginx's log, are that race; anything else, or more, is a failure.
    const failed = [...statuses].filter(([status]) => status !== 200);
    const resets = errorLog().match(/Connection reset by peer\) while reading response header/g)?.length ?? 0;
    const race = failed.length === 1 && failed[0]?.[0] === 502 && failed[0][1] <= 3 && resets >= failed[0][1];
    assert.ok(failed.length === 0 || race, `every request answered 200: ${JSON.stringify(Object.fromEntries(statuses))}; nginx: ${nginxErr}; error.log: ${errorLog()}`);
  });

  it('ships SSE-safe proxy settings (the gateway\'s x-accel-buffering header would hide their absence above)', () => {
    const conf = readFileSync(join(ROOT, 'examples', 'nginx.conf'), 'utf8');
    for (const directive of ['proxy_buffering off;', 'proxy_http_version 1.1;', 'proxy_set_header Connection "";', 'proxy_request_buffering off;']) {
      assert.ok(conf.includes(directive), directive);
    }
    const readTimeout = Number(/proxy_read_timeout (\d+)s;/.exec(conf)?.[1]);
    assert.ok(readTimeout > 600, 'nginx waits longer than the gateway\'s own 10-minute upstream timeout');
  });
});
