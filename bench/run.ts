/**
 * `npm run bench`: the gateway against the least a Node proxy must do, on this machine, in one
 * run. Every target is measured in every round, rounds interleaved (these machines drift by ±30%
 * from minute to minute: only ratios within one run mean anything), and the median is kept.
 * Prints one table and writes it as JSON to bench/results/.
 *
 * Ratios and differences are computed within each round (a target against the proxy measured
 * minutes, not hours, apart) and the median over rounds is reported.
 *
 * Suites: `small` (small requests and streams, every target), `agent` (agent-sized bodies of
 * ~137 KB and ~1 MB on the three client APIs), `cores` (GATEWAY_WORKERS 1 and 2 against the proxy
 * in one and two processes), `memory`.
 *
 * Environment: BENCH_SUITES (small,agent,cores,memory), BENCH_ROUNDS (5), BENCH_DURATION_MS (2000),
 * BENCH_WARMUP_MS (500), BENCH_CONNECTIONS (50), BENCH_AGENT_CONNECTIONS (20), BENCH_MEMORY (0:
 * skip the memory suite), BENCH_PEAK_RUNS (5: fresh processes measured for each peak, median kept).
 *
 * "Logs as deployed": pretty entries to the log file and to stdout, stdout redirected to a file
 * (`logs to file`) or to a pipe drained by a reader process (`logs to pipe`), as a container
 * runtime or a shell redirection would have it.
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { agentConversation, chatBody, messagesBody, random, responsesBody } from './fixtures.js';
import type { LoadResult, LoadSpec } from './load.js';
import { freePort, refusingPort } from '../test/support/ports.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 2000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 500);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const AGENT_CONNECTIONS = Number(process.env.BENCH_AGENT_CONNECTIONS ?? 20);
const SUITES = new Set((process.env.BENCH_SUITES ?? 'small,agent,cores,memory').split(','));
const MEMORY = process.env.BENCH_MEMORY !== '0' && SUITES.has('memory');
const PEAK_RUNS = Number(process.env.BENCH_PEAK_RUNS ?? 5);

/** The reference for the logged rows: the minimal proxy writing each body to a file and to stdout. */
const LOGGING_PROXY = 'minimal proxy logging bodies';

const small = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say something short.' }], max_tokens: 32 });
const streamed = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Count to fifty.' }], max_tokens: 128 });
const slow = JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'Take your time.' }] });
// The same requests in Anthropic's Messages format, for the /v1/messages rows.
const smallMessages = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 32, system: 'You are terse.', messages: [{ role: 'user', content: 'Say something short.' }] });
const streamedMessages = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 128, stream: true, messages: [{ role: 'user', content: 'Count to fifty.' }] });
// And in the Responses format, as Codex sends it (store: false), for the /v1/responses rows.
const smallResponses = JSON.stringify({ model: 'gpt-4o-mini', instructions: 'You are terse.', input: 'Say something short.', max_output_tokens: 32, store: false });
const streamedResponses = JSON.stringify({ model: 'gpt-4o-mini', input: 'Count to fifty.', max_output_tokens: 128, stream: true, store: false });

// ---- processes ------------------------------------------------------------------------------

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
// Stopped by hand: the processes it started stop with it.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

/** Starts a process and resolves with the port it reports (stdout "ready <port>" or the gateway's stderr line). */
function start(args: string[], env: Record<string, string> = {}, stdout: 'pipe' | 'ignore' | number | Writable = 'pipe'): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', stdout, 'pipe'] });
    children.push(child);
    let out = '';
    const look = (text: string): void => {
      out += text;
      const match = /ready (\d+)|listening on http:\/\/\S+:(\d+)/.exec(out);
      if (match !== null) resolve({ child, port: Number(match[1] ?? match[2]) });
    };
    child.stdout?.setEncoding('utf8').on('data', look);
    child.stderr?.setEncoding('utf8').on('data', look);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${out}`)));
  });
}

/** Where a gateway's log goes: nowhere, or as deployed (the file, and stdout to a file or a pipe). */
type Logs = 'off' | 'file' | 'pipe';

interface Gateway {
  child: ChildProcess;
  port: number;
  /** The files its log grows (truncated between measurements: agent-sized entries fill a disk in minutes). */
  logFiles: string[];
  /** Those that hold the gateway's pretty entries, by destination, counted against the answers after each measurement. */
  entryFiles: Array<{ path: string; destination: 'file' | 'stdout' }>;
}

let gateways = 0;

/**
 * Real keys as long as the providers' own (an OpenAI project key is 164 characters, an Anthropic
 * key 108): whatever the gateway does per key character is measured as deployed.
 */
const OPENAI_KEY = `sk-proj-${'Bench0penAiKey'.repeat(12).slice(0, 156)}`;
const ANTHROPIC_KEY = `sk-ant-api03-${'BenchAnthropicKey'.repeat(6).slice(0, 95)}`;

function gatewayEnv(dir: string, upstreamPort: number, refusedPort: number): Record<string, string> {
  const keysFile = join(dir, 'keys.json');
  writeFileSync(
    keysFile,
    JSON.stringify({
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${upstreamPort}/v1`, api: ['chat', 'responses'] },
        // A first target that refuses connections, then the server: every request falls back.
        vk_fallback: {
          targets: [
            { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${refusedPort}/v1` },
            { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${upstreamPort}/v1` },
          ],
          // Never skipped: the row measures a fallback on every request, not a skipped target.
          circuit_breaker: { failures: 1_000_000_000, cooldown_ms: 1 },
        },
        // The same server as a chat-only OpenAI-compatible one: Responses requests are translated.
        vk_openai_chat: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${upstreamPort}/v1` },
        vk_anthropic: { provider: 'anthropic', api_key: ANTHROPIC_KEY, base_url: `http://127.0.0.1:${upstreamPort}` },
        // A rate limit that never refuses: the rows measure the check itself (here, or in Redis).
        vk_limited: { provider: 'openai', api_key: OPENAI_KEY, base_url: `http://127.0.0.1:${upstreamPort}/v1`, rate_limit: { requests_per_minute: 1_000_000_000 } },
      },
    }),
  );
  return { KEYS_FILE: keysFile, GATEWAY_PORT: '0', GATEWAY_HOST: '127.0.0.1' };
}

/** `loopDelay`: preload bench/loop-delay.js, which reports the gateway's event-loop delay on SIGUSR2. */
async function startGateway(dir: string, upstreamPort: number, logs: Logs, extra: Record<string, string> = {}, loopDelay = false): Promise<Gateway> {
  const n = ++gateways;
  const env = { ...gatewayEnv(dir, upstreamPort, await refusingPort()), ...extra };
  const logFiles: string[] = [];
  let stdout: 'ignore' | number | Writable = 'ignore';
  let stdoutFd: number | null = null;
  if (logs === 'off') {
    Object.assign(env, { LOG_FILE: 'off', LOG_CONSOLE: 'off' });
  } else {
    const logFile = join(dir, `interactions-${n}.json`);
    Object.assign(env, { LOG_FILE: logFile, LOG_CONSOLE: 'pretty' });
    logFiles.push(logFile);
    if (logs === 'file') {
      // Appending, as `>>` would: truncating it between measurements is then safe.
      const stdoutFile = join(dir, `stdout-${n}.log`);
      stdoutFd = openSync(stdoutFile, 'a');
      stdout = stdoutFd;
      logFiles.push(stdoutFile);
    } else {
      // The reader a log shipper would be: a process that reads stdout as fast as it can.
      const reader = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] });
      children.push(reader);
      stdout = reader.stdin as Writable;
    }
  }
  const args = [...(loopDelay ? ['--import', pathToFileURL(join(HERE, 'loop-delay.js')).href] : []), join(ROOT, 'dist', 'main.js')];
  const started = await start(args, env, stdout);
  if (stdoutFd !== null) closeSync(stdoutFd);
  const entryFiles = logFiles.map((path, i) => ({ path, destination: i === 0 ? ('file' as const) : ('stdout' as const) }));
  return { ...started, logFiles, entryFiles };
}

/**
 * The minimal proxy that also writes each body to a log file and to stdout redirected to a file:
 * what logging every body as deployed costs at the least, the reference for the logged rows.
 */
async function startLoggingProxy(dir: string, upstreamPort: number, loopDelay = false): Promise<Gateway> {
  const n = ++gateways;
  const logFile = join(dir, `proxy-bodies-${n}.log`);
  const stdoutFile = join(dir, `proxy-stdout-${n}.log`);
  const stdoutFd = openSync(stdoutFile, 'a');
  const args = [...(loopDelay ? ['--import', pathToFileURL(join(HERE, 'loop-delay.js')).href] : []), join(HERE, 'proxy.js'), '0', String(upstreamPort)];
  const started = await start(args, { PROXY_LOG_FILE: logFile }, stdoutFd);
  closeSync(stdoutFd);
  return { ...started, logFiles: [logFile, stdoutFile], entryFiles: [] };
}

/** Empties a gateway's log files (after each measurement). */
function truncateLogs(gateway: Gateway | undefined): void {
  for (const file of gateway?.logFiles ?? []) truncateSync(file, 0);
}

/**
 * Answers without their entry, per destination, over every logged measurement: a gateway that
 * dropped entries (its log not keeping up) served faster than one that wrote them all.
 */
const unlogged = new Map<string, { answers: number; missing: number }>();

/** Counts a measurement's entries against its answers once the log has settled, then empties the files. */
async function countEntriesThenTruncate(gateway: Gateway | undefined, result: LoadResult): Promise<void> {
  for (const { path, destination } of gateway?.entryFiles ?? []) {
    const entries = await settledEntries(path);
    const sum = unlogged.get(destination) ?? { answers: 0, missing: 0 };
    unlogged.set(destination, { answers: sum.answers + result.answers, missing: sum.missing + Math.max(0, result.answers - entries) });
  }
  truncateLogs(gateway);
}

/** The pretty entries in a file (each ends with a line holding only `}`) once it stops growing. */
async function settledEntries(file: string): Promise<number> {
  let size = -1;
  for (let waited = 0; waited < 10_000 && statSync(file).size !== size; waited += 200) {
    size = statSync(file).size;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const end = Buffer.from('\n}\n');
  const chunk = Buffer.allocUnsafe(16 * 1024 * 1024);
  const fd = openSync(file, 'r');
  let entries = 0;
  try {
    // Each read starts two bytes back, so an end split across reads is found once.
    for (let position = 0, read = 0; (read = readSync(fd, chunk, 0, chunk.length, position)) > end.length - 1; position += read - (end.length - 1)) {
      for (let at = chunk.indexOf(end); at !== -1 && at + end.length <= read; at = chunk.indexOf(end, at + 1)) entries++;
    }
  } finally {
    closeSync(fd);
  }
  return entries;
}

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  /** CPU time the process used (user and system), milliseconds. */
  cpu: number;
}

/** The event-loop delay a gateway saw since the last call (it starts over). */
function loopDelay(gateway: Gateway): Promise<LoopDelay> {
  return new Promise((resolve) => {
    const stderr = gateway.child.stderr as Readable;
    let text = '';
    const onData = (chunk: string): void => {
      text += chunk;
      const match = /loop-delay (\{[^\n]*\})\n/.exec(text);
      if (match === null) return;
      stderr.off('data', onData);
      resolve(JSON.parse(match[1] as string) as LoopDelay);
    };
    stderr.on('data', onData);
    gateway.child.kill('SIGUSR2');
  });
}

/** A redis-server for the shared-limits row (none installed: the row is left out). */
async function startRedis(dir: string): Promise<{ child: ChildProcess; port: number } | null> {
  const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((path) => existsSync(path));
  if (binary === undefined) return null;
  const port = await freePort();
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (/Ready to accept connections/.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  return { child, port };
}

/**
 * The targets in a new order each round (a shuffle seeded by the round: the same in every run), so
 * that no target always runs first or right after the same other one. A rotation kept each
 * target's predecessor: the agent suite's logs-off rows always ran right after a logged one.
 */
function roundOrder<T>(targets: readonly T[], round: number): T[] {
  const next = random(Math.imul(round + 1, 0x9e3779b1));
  for (let i = 0; i < 8; i++) next(); // xorshift's first draws from a small seed are small
  const order = [...targets];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j] as T, order[i] as T];
  }
  return order;
}

function load(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(HERE, 'load.js'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load exited ${code}`))));
  });
}

function memory(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

// ---- the run ---------------------------------------------------------------------------------

interface Target {
  name: string;
  port: number;
  path: string;
  key: string;
  /** The client API it is sent (chat by default). */
  api?: 'messages' | 'responses';
  /** The gateway (or probed proxy) behind it, for its event-loop delay and its log files. */
  gateway?: Gateway;
}

type Scenario = 'json50' | 'json1' | 'stream1' | 'stream50';
const SCENARIOS: Record<Scenario, { body: string; messages: string; responses: string; connections: number }> = {
  json50: { body: small, messages: smallMessages, responses: smallResponses, connections: CONNECTIONS },
  json1: { body: small, messages: smallMessages, responses: smallResponses, connections: 1 },
  stream1: { body: streamed, messages: streamedMessages, responses: streamedResponses, connections: 1 },
  stream50: { body: streamed, messages: streamedMessages, responses: streamedResponses, connections: CONNECTIONS },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : (sorted[Math.floor((sorted.length - 1) / 2)] as number);
}

/** Per round: `mine` against `base` of the same round; the median over rounds. */
function ratio(mine: LoadResult[], base: LoadResult[]): number {
  return median(mine.map((result, i) => result.rps / ((base[i] as LoadResult | undefined)?.rps ?? NaN)));
}

type Api = 'chat' | 'messages' | 'responses';
const API_PATHS: Record<Api, string> = { chat: '/v1/chat/completions', messages: '/v1/messages', responses: '/v1/responses' };
const AGENT_FIXTURES = [
  { name: '137 KB', bytes: 137_000 },
  { name: '1 MB', bytes: 1_000_000 },
] as const;

/** Writes the agent fixtures (the same conversation in each API; and a `slow` one for the memory suite) and returns their files. */
function writeFixtures(dir: string): Array<{ name: string; files: Record<Api, string>; slowChat: string; sizes: Record<Api, number> }> {
  return AGENT_FIXTURES.map(({ name, bytes }) => {
    const conversation = agentConversation(bytes);
    const bodies: Record<Api, string> = { chat: chatBody(conversation), messages: messagesBody(conversation), responses: responsesBody(conversation) };
    const files = {} as Record<Api, string>;
    const sizes = {} as Record<Api, number>;
    for (const api of ['chat', 'messages', 'responses'] as const) {
      files[api] = join(dir, `agent-${bytes}-${api}.json`);
      writeFileSync(files[api], bodies[api]);
      sizes[api] = Buffer.byteLength(bodies[api]);
    }
    const slowChat = join(dir, `agent-${bytes}-slow.json`);
    writeFileSync(slowChat, chatBody(conversation, 'slow'));
    return { name, files, slowChat, sizes };
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'llm-gateway-bench-'));
  const upstream = await start([join(HERE, 'upstream.js'), '0']);
  const proxy = await start([join(HERE, 'proxy.js'), '0', String(upstream.port)]);
  const lines: string[] = [];
  const checks: Array<[string, boolean, string]> = [];
  const json: Record<string, unknown> = {};
  const f = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : '–');
  const times = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}x` : '–');
  const signed = (value: number): string => `${value >= 0 ? '+' : ''}${value.toFixed(3)}`;
  const check = (what: string, value: number, ok: boolean, shown = times(value)): void => void checks.push([what, ok, shown]);

  // ---- small requests and streams ----
  if (SUITES.has('small')) {
    const poolProxy = await start([join(HERE, 'proxy.js'), '0', String(upstream.port), 'pool']);
    const loggingProxy = await startLoggingProxy(dir, upstream.port);
    const toFile = await startGateway(dir, upstream.port, 'file');
    const toPipe = await startGateway(dir, upstream.port, 'pipe');
    const quiet = await startGateway(dir, upstream.port, 'off');
    const redis = await startRedis(dir);
    const shared = redis === null ? null : await startGateway(dir, upstream.port, 'off', { REDIS_URL: `redis://127.0.0.1:${redis.port}/0` });

    const targets: Target[] = [
      { name: 'upstream direct', port: upstream.port, path: '/v1/chat/completions', key: OPENAI_KEY },
      { name: 'minimal proxy', port: proxy.port, path: '/v1/chat/completions', key: 'vk' },
      { name: 'gateway openai, logs to file', port: toFile.port, path: '/v1/chat/completions', key: 'vk_openai', gateway: toFile },
      { name: 'gateway openai, logs to pipe', port: toPipe.port, path: '/v1/chat/completions', key: 'vk_openai', gateway: toPipe },
      { name: 'gateway openai, logs off', port: quiet.port, path: '/v1/chat/completions', key: 'vk_openai' },
      { name: 'gateway anthropic, logs to file', port: toFile.port, path: '/v1/chat/completions', key: 'vk_anthropic', gateway: toFile },
      { name: 'gateway anthropic, logs off', port: quiet.port, path: '/v1/chat/completions', key: 'vk_anthropic' },
      { name: 'gateway messages pass-through, logs off', port: quiet.port, path: '/v1/messages', key: 'vk_anthropic', api: 'messages' },
      { name: 'gateway messages → chat, logs off', port: quiet.port, path: '/v1/messages', key: 'vk_openai', api: 'messages' },
      { name: 'gateway responses pass-through, logs off', port: quiet.port, path: '/v1/responses', key: 'vk_openai', api: 'responses' },
      { name: 'gateway responses → chat, logs off', port: quiet.port, path: '/v1/responses', key: 'vk_openai_chat', api: 'responses' },
      { name: 'gateway fallback (first target refuses), logs off', port: quiet.port, path: '/v1/chat/completions', key: 'vk_fallback' },
      { name: 'gateway rate-limited key, logs off', port: quiet.port, path: '/v1/chat/completions', key: 'vk_limited' },
      ...(shared === null ? [] : [{ name: 'gateway rate-limited key, Redis, logs off', port: shared.port, path: '/v1/chat/completions', key: 'vk_limited' }]),
      // Not a target: the same minimal proxy on the gateway's own client, for reference.
      { name: 'minimal proxy on the gateway client', port: poolProxy.port, path: '/v1/chat/completions', key: 'vk' },
      // Nor this: the least that logging every body costs, for the logged rows.
      { name: LOGGING_PROXY, port: loggingProxy.port, path: '/v1/chat/completions', key: 'vk', gateway: loggingProxy },
    ];
    const results = new Map<string, LoadResult[]>();
    const runs = (scenario: Scenario, name: string): LoadResult[] => results.get(`${scenario}|${name}`) ?? [];
    const total = ROUNDS * Object.keys(SCENARIOS).length * targets.length;
    let done = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [scenario, setup] of Object.entries(SCENARIOS) as Array<[Scenario, (typeof SCENARIOS)[Scenario]]>) {
        const order = roundOrder(targets, round);
        for (const target of order) {
          const result = await load({
            url: `http://127.0.0.1:${target.port}${target.path}`,
            key: target.key,
            body: target.api === undefined ? setup.body : setup[target.api],
            connections: setup.connections,
            warmupMs: WARMUP_MS,
            durationMs: DURATION_MS,
            timeoutMs: 10_000,
          });
          await countEntriesThenTruncate(target.gateway, result);
          results.set(`${scenario}|${target.name}`, [...runs(scenario, target.name), result]);
          process.stderr.write(`\rsmall: ${++done}/${total} measurements`);
        }
      }
    }
    process.stderr.write('\n');

    const proxyName = 'minimal proxy';
    const summary = (scenario: Scenario, name: string) => {
      const list = runs(scenario, name);
      const base = runs(scenario, proxyName);
      const perRound = (pick: (r: LoadResult) => number): number => median(list.map((mine, i) => pick(mine) - pick(base[i] as LoadResult)));
      return {
        rps: median(list.map((r) => r.rps)),
        p50: median(list.map((r) => r.latency.p50)),
        p99: median(list.map((r) => r.latency.p99)),
        ttfb50: median(list.map((r) => r.ttfb.p50)),
        rpsRatio: ratio(list, base),
        p50Delta: perRound((r) => r.latency.p50),
        ttfbDelta: perRound((r) => r.ttfb.p50),
        errors: list.reduce((sum, r) => sum + r.errors, 0),
      };
    };
    const table = targets.map((target) => ({
      target: target.name,
      json50: summary('json50', target.name),
      json1: summary('json1', target.name),
      stream1: summary('stream1', target.name),
      stream50: summary('stream50', target.name),
    }));
    json.small = { table, raw: Object.fromEntries(results) };
    lines.push(`| target | ${CONNECTIONS} conn req/s | vs proxy | p50 ms | p99 ms | 1 conn p50 ms | vs proxy ms | stream ttfb p50 ms | vs proxy ms | stream total p50 ms | ${CONNECTIONS} conn streams/s | vs proxy | errors |`);
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of table) {
      const errors = row.json50.errors + row.json1.errors + row.stream1.errors + row.stream50.errors;
      lines.push(
        `| ${row.target} | ${f(row.json50.rps)} | ${times(row.json50.rpsRatio)} | ${f(row.json50.p50, 2)} | ${f(row.json50.p99, 2)} | ${f(row.json1.p50, 3)} | ${signed(row.json1.p50Delta)} | ` +
          `${f(row.stream1.ttfb50, 3)} | ${signed(row.stream1.ttfbDelta)} | ${f(row.stream1.p50, 2)} | ${f(row.stream50.rps)} | ${times(row.stream50.rpsRatio)} | ${errors} |`,
      );
    }
    lines.push('');
    const row = (name: string) => table.find((candidate) => candidate.target === name) as (typeof table)[number];
    const plain = row('gateway openai, logs off');
    const filed = row('gateway openai, logs to file');
    const piped = row('gateway openai, logs to pipe');
    const translated = row('gateway anthropic, logs off');
    /** A client API's pass-through req/s over the chat pass-through's, per round, median. */
    const vsChat = (api: 'messages' | 'responses', scenario: Scenario): number => ratio(runs(scenario, `gateway ${api} pass-through, logs off`), runs(scenario, 'gateway openai, logs off'));
    check('small requests req/s, logs off ≥ 0.90x', plain.json50.rpsRatio, plain.json50.rpsRatio >= 0.9);
    check('small requests req/s, logs to file ≥ 0.90x', filed.json50.rpsRatio, filed.json50.rpsRatio >= 0.9);
    check('small requests req/s, logs to pipe ≥ 0.90x', piped.json50.rpsRatio, piped.json50.rpsRatio >= 0.9);
    check('anthropic translation req/s, logs off ≥ 0.80x', translated.json50.rpsRatio, translated.json50.rpsRatio >= 0.8);
    check('added latency at 1 connection ≤ 0.1 ms p50', plain.json1.p50Delta, plain.json1.p50Delta <= 0.1, `${signed(plain.json1.p50Delta)} ms`);
    check('stream time to first byte ≤ 0.3 ms p50 above', plain.stream1.ttfbDelta, plain.stream1.ttfbDelta <= 0.3, `${signed(plain.stream1.ttfbDelta)} ms`);
    check('unpaced streams/s, logs off ≥ 0.85x', plain.stream50.rpsRatio, plain.stream50.rpsRatio >= 0.85);
    check('unpaced streams/s, logs to file ≥ 0.85x', filed.stream50.rpsRatio, filed.stream50.rpsRatio >= 0.85);
    check('unpaced streams/s, logs to pipe ≥ 0.85x', piped.stream50.rpsRatio, piped.stream50.rpsRatio >= 0.85);
    // Within noise of the chat pass-through: the two measured side by side in each round.
    for (const api of ['messages', 'responses'] as const) {
      const name = api === 'messages' ? 'Messages' : 'Responses';
      check(`${name} pass-through req/s ≥ 0.90x chat pass-through`, vsChat(api, 'json50'), vsChat(api, 'json50') >= 0.9);
      check(`${name} pass-through streams/s ≥ 0.90x chat pass-through`, vsChat(api, 'stream50'), vsChat(api, 'stream50') >= 0.9);
    }
    if (shared !== null) {
      // Redis's cost per request: the same rate-limited key checked in Redis or in the process, per round.
      const local = runs('json1', 'gateway rate-limited key, logs off');
      const viaRedis = runs('json1', 'gateway rate-limited key, Redis, logs off');
      const added = median(viaRedis.map((result, i) => result.latency.p50 - (local[i] as LoadResult).latency.p50));
      const redisRatio = ratio(runs('json50', 'gateway rate-limited key, Redis, logs off'), runs('json50', 'gateway rate-limited key, logs off'));
      lines.push(`a rate limit checked in Redis (REDIS_URL, on this machine) instead of in the process: ${signed(added)} ms p50 at 1 connection, ${times(redisRatio)} req/s at ${CONNECTIONS} connections`);
      lines.push('');
    }
    const logged = row(LOGGING_PROXY);
    const vsLogging = (name: string, scenario: Scenario): string => times(ratio(runs(scenario, name), runs(scenario, LOGGING_PROXY)));
    lines.push(`logs as deployed against the ${LOGGING_PROXY} (${times(logged.json50.rpsRatio)} of the proxy's requests/s, ${times(logged.stream50.rpsRatio)} of its streams): requests/s ${vsLogging('gateway openai, logs to file', 'json50')} (to file), ${vsLogging('gateway openai, logs to pipe', 'json50')} (to pipe); streams/s ${vsLogging('gateway openai, logs to file', 'stream50')}, ${vsLogging('gateway openai, logs to pipe', 'stream50')}`);
    lines.push('');
    for (const child of [poolProxy.child, loggingProxy.child, toFile.child, toPipe.child, quiet.child, shared?.child, redis?.child]) child?.kill('SIGKILL');
  }

  // ---- agent-sized requests ----
  const fixtures = SUITES.has('agent') || SUITES.has('cores') || MEMORY ? writeFixtures(dir) : [];
  if (SUITES.has('agent')) {
    const quiet = await startGateway(dir, upstream.port, 'off', {}, true);
    const toFile = await startGateway(dir, upstream.port, 'file', {}, true);
    const toPipe = await startGateway(dir, upstream.port, 'pipe', {}, true);
    const passKeys: Record<Api, string> = { chat: 'vk_openai', messages: 'vk_anthropic', responses: 'vk_openai' };
    // The proxy again, with the same event-loop delay probe: on two shared cores, a process waits for the CPU too.
    const probedProxy = await start(['--import', pathToFileURL(join(HERE, 'loop-delay.js')).href, join(HERE, 'proxy.js'), '0', String(upstream.port)]);
    const loggingProxy = await startLoggingProxy(dir, upstream.port, true);
    // The proxy with each API's body on its path: every row is taken against the proxy serving its client's API.
    const proxyRow = (api: Api): string => (api === 'chat' ? 'minimal proxy' : `minimal proxy, ${api}`);
    const targets: Target[] = (['chat', 'messages', 'responses'] as const).map((api) => ({
      name: proxyRow(api),
      port: probedProxy.port,
      path: API_PATHS[api],
      key: 'vk',
      api: api === 'chat' ? undefined : api,
      gateway: { ...probedProxy, logFiles: [], entryFiles: [] },
    }));
    const loggingProxyRow = (api: Api): string => `${LOGGING_PROXY}${api === 'chat' ? '' : `, ${api}`}`;
    for (const api of ['chat', 'messages', 'responses'] as const) {
      targets.push({ name: loggingProxyRow(api), port: loggingProxy.port, path: API_PATHS[api], key: 'vk', api: api === 'chat' ? undefined : api, gateway: loggingProxy });
    }
    for (const api of ['chat', 'messages', 'responses'] as const) {
      for (const [logs, gateway] of [['logs off', quiet], ['logs to file', toFile], ['logs to pipe', toPipe]] as const) {
        targets.push({ name: `${api} pass-through, ${logs}`, port: gateway.port, path: API_PATHS[api], key: passKeys[api], api: api === 'chat' ? undefined : api, gateway });
      }
    }
    targets.push(
      { name: 'chat → messages (anthropic key), logs off', port: quiet.port, path: API_PATHS.chat, key: 'vk_anthropic', gateway: quiet },
      { name: 'messages → chat (openai key), logs off', port: quiet.port, path: API_PATHS.messages, key: 'vk_openai', api: 'messages', gateway: quiet },
      { name: 'responses → chat (chat-only key), logs off', port: quiet.port, path: API_PATHS.responses, key: 'vk_openai_chat', api: 'responses', gateway: quiet },
    );

    // What one request's entry weighs, in each destination (the file; stdout gets the same bytes).
    const logged: Array<{ fixture: string; api: Api; requestBytes: number; entryBytes: number }> = [];
    for (const fixture of fixtures) {
      for (const api of ['chat', 'messages', 'responses'] as const) {
        const file = toFile.logFiles[0] as string;
        truncateLogs(toFile);
        await load({ url: `http://127.0.0.1:${toFile.port}${API_PATHS[api]}`, key: passKeys[api], body: '', bodyFile: fixture.files[api], connections: 1, warmupMs: 0, durationMs: 0, maxRequests: 1, timeoutMs: 30_000 });
        await new Promise((resolve) => setTimeout(resolve, 300)); // written in batches
        logged.push({ fixture: fixture.name, api, requestBytes: fixture.sizes[api], entryBytes: statSync(file).size });
      }
    }
    truncateLogs(toFile);

    const results = new Map<string, { load: LoadResult; delay: LoopDelay | null; cpuPerRequest: number }[]>();
    const total = ROUNDS * fixtures.length * targets.length;
    let done = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const fixture of fixtures) {
        const order = roundOrder(targets, round);
        for (const target of order) {
          if (target.gateway !== undefined) await loopDelay(target.gateway); // starts over
          const started = performance.now();
          const result = await load({
            url: `http://127.0.0.1:${target.port}${target.path}`,
            key: target.key,
            body: '',
            bodyFile: fixture.files[target.api ?? 'chat'],
            connections: AGENT_CONNECTIONS,
            warmupMs: WARMUP_MS,
            durationMs: DURATION_MS,
            timeoutMs: 30_000,
          });
          const delay = target.gateway === undefined ? null : await loopDelay(target.gateway);
          // Per request: the CPU of the whole window (the load's start and warm-up too) over the requests the measured rate gives it.
          const cpuPerRequest = delay === null ? NaN : delay.cpu / ((result.rps * (performance.now() - started)) / 1000);
          await countEntriesThenTruncate(target.gateway, result);
          const key = `${fixture.name}|${target.name}`;
          results.set(key, [...(results.get(key) ?? []), { load: result, delay, cpuPerRequest }]);
          process.stderr.write(`\ragent: ${++done}/${total} measurements`);
        }
      }
    }
    process.stderr.write('\n');
    const runs = (fixture: string, name: string): LoadResult[] => (results.get(`${fixture}|${name}`) ?? []).map((r) => r.load);
    const delayP99 = (fixture: string, name: string): number => median((results.get(`${fixture}|${name}`) ?? []).map((r) => r.delay?.p99 ?? NaN));
    const apiOf = (name: string): Api => targets.find((target) => target.name === name)?.api ?? 'chat';
    const rowOf = (fixture: string, name: string) => ({
      rps: median(runs(fixture, name).map((r) => r.rps)),
      ratio: ratio(runs(fixture, name), runs(fixture, proxyRow(apiOf(name)))),
      p50: median(runs(fixture, name).map((r) => r.latency.p50)),
      delayP99: delayP99(fixture, name),
      cpuPerRequest: median((results.get(`${fixture}|${name}`) ?? []).map((r) => r.cpuPerRequest)),
      errors: runs(fixture, name).reduce((sum, r) => sum + r.errors, 0),
    });
    const table = targets.map((target) => ({ target: target.name, ...Object.fromEntries(fixtures.map((fixture) => [fixture.name, rowOf(fixture.name, target.name)])) }));
    json.agent = { connections: AGENT_CONNECTIONS, table, logged, raw: Object.fromEntries(results) };
    lines.push(`Agent-sized requests (a coding agent's conversation: system prompt, tools, tool calls and results; streamed), ${AGENT_CONNECTIONS} connections; each row against the proxy forwarding its client API's body to that API's path:`);
    lines.push('');
    lines.push(`| target | ${fixtures.map((x) => `${x.name} req/s | vs proxy | p50 ms | loop delay p99 ms | CPU ms/req`).join(' | ')} | errors |`);
    lines.push(`|---|${fixtures.map(() => '---:|---:|---:|---:|---:').join('|')}|---:|`);
    for (const target of targets) {
      const cells = fixtures.map((fixture) => {
        const r = rowOf(fixture.name, target.name);
        return `${f(r.rps)} | ${times(r.ratio)} | ${f(r.p50, 1)} | ${f(r.delayP99, 1)} | ${f(r.cpuPerRequest, 2)}`;
      });
      const errors = fixtures.reduce((sum, fixture) => sum + rowOf(fixture.name, target.name).errors, 0);
      lines.push(`| ${target.name} | ${cells.join(' | ')} | ${errors} |`);
    }
    lines.push('');
    lines.push(`Logged rows against the ${LOGGING_PROXY} (each body appended as it came to a file and to stdout redirected to a file: the least that logging every body costs):`);
    lines.push('');
    lines.push(`| target | ${fixtures.map((x) => `${x.name} vs logging proxy`).join(' | ')} |`);
    lines.push(`|---|${fixtures.map(() => '---:').join('|')}|`);
    for (const api of ['chat', 'messages', 'responses'] as const) {
      for (const logs of ['logs to file', 'logs to pipe'] as const) {
        const name = `${api} pass-through, ${logs}`;
        lines.push(`| ${name} | ${fixtures.map((fixture) => times(ratio(runs(fixture.name, name), runs(fixture.name, loggingProxyRow(api))))).join(' | ')} |`);
      }
    }
    lines.push('');
    lines.push('| logged per request | request body | entry (each destination) |');
    lines.push('|---|---:|---:|');
    for (const entry of logged) lines.push(`| ${entry.fixture} ${entry.api} | ${entry.requestBytes} B | ${entry.entryBytes} B |`);
    lines.push('');
    for (const fixture of fixtures) {
      for (const api of ['chat', 'messages', 'responses'] as const) {
        for (const [logs, goal] of [['logs off', 0.9], ['logs to file', 0.75], ['logs to pipe', 0.75]] as const) {
          const r = rowOf(fixture.name, `${api} pass-through, ${logs}`);
          check(`${fixture.name} ${api} pass-through req/s, ${logs} ≥ ${goal.toFixed(2)}x`, r.ratio, r.ratio >= goal);
        }
      }
    }
    const isProxy = (t: Target): boolean => t.name.startsWith('minimal proxy');
    const gatewayRows = targets.filter((t) => t.gateway !== undefined && !isProxy(t));
    const worst = Math.max(...fixtures.flatMap((fixture) => gatewayRows.map((t) => delayP99(fixture.name, t.name))));
    const proxyWorst = Math.max(...fixtures.flatMap((fixture) => targets.filter(isProxy).map((t) => delayP99(fixture.name, t.name))));
    check('event-loop delay p99 during agent-sized requests ≤ 10 ms (worst gateway row)', worst, worst <= 10, `${f(worst, 1)} ms (proxy's worst ${f(proxyWorst, 1)} ms)`);
    for (const child of [quiet.child, toFile.child, toPipe.child, probedProxy.child, loggingProxy.child]) child.kill('SIGKILL');
  }

  // ---- cores ----
  if (SUITES.has('cores')) {
    const fixture = fixtures[0];
    const rows: Array<{ processes: number; gateway: Gateway; proxy: { child: ChildProcess; port: number } }> = [];
    for (const processes of [1, 2]) {
      rows.push({
        processes,
        gateway: await startGateway(dir, upstream.port, 'file', { GATEWAY_WORKERS: String(processes) }),
        proxy: await start([join(HERE, 'proxy.js'), '0', String(upstream.port)], { PROXY_PROCESSES: String(processes) }),
      });
    }
    const scenarios = [
      { name: `small, ${CONNECTIONS} conn`, body: small, bodyFile: undefined, connections: CONNECTIONS },
      ...(fixture === undefined ? [] : [{ name: `${fixture.name} chat, ${AGENT_CONNECTIONS} conn`, body: '', bodyFile: fixture.files.chat, connections: AGENT_CONNECTIONS }]),
    ];
    const results = new Map<string, LoadResult[]>();
    let done = 0;
    const total = ROUNDS * scenarios.length * rows.length * 2;
    for (let round = 0; round < ROUNDS; round++) {
      for (const scenario of scenarios) {
        for (const row of rows) {
          for (const [who, port] of [['gateway', row.gateway.port], ['proxy', row.proxy.port]] as const) {
            const result = await load({ url: `http://127.0.0.1:${port}/v1/chat/completions`, key: who === 'gateway' ? 'vk_openai' : 'vk', body: scenario.body, ...(scenario.bodyFile === undefined ? {} : { bodyFile: scenario.bodyFile }), connections: scenario.connections, warmupMs: WARMUP_MS, durationMs: DURATION_MS, timeoutMs: 30_000 });
            if (who === 'gateway') await countEntriesThenTruncate(row.gateway, result);
            const key = `${scenario.name}|${row.processes}|${who}`;
            results.set(key, [...(results.get(key) ?? []), result]);
            process.stderr.write(`\rcores: ${++done}/${total} measurements`);
          }
        }
      }
    }
    process.stderr.write('\n');
    json.cores = Object.fromEntries(results);
    lines.push('Cores: the gateway with GATEWAY_WORKERS=1 and 2 (logs to file) against the minimal proxy in one and two processes:');
    lines.push('');
    lines.push('| scenario | processes | gateway req/s | proxy req/s | vs proxy |');
    lines.push('|---|---:|---:|---:|---:|');
    for (const scenario of scenarios) {
      for (const row of rows) {
        const mine = results.get(`${scenario.name}|${row.processes}|gateway`) ?? [];
        const base = results.get(`${scenario.name}|${row.processes}|proxy`) ?? [];
        lines.push(`| ${scenario.name} | ${row.processes} | ${f(median(mine.map((r) => r.rps)))} | ${f(median(base.map((r) => r.rps)))} | ${times(ratio(mine, base))} |`);
      }
    }
    lines.push('');
    for (const row of rows) {
      row.gateway.child.kill('SIGKILL');
      row.proxy.child.kill('SIGKILL');
    }
  }

  // ---- memory ----
  if (MEMORY) {
    // The same scenarios against a fresh minimal proxy: a bare Node server's own growth (V8 sizing
    // its young generation up to 16 MB semi-spaces in the first tens of thousands of requests) is
    // the noise floor a leak check must read against.
    interface MemoryFigures {
      /** The median of PEAK_RUNS fresh processes (the peak depends on when V8 happens to collect). */
      peakMbWith1000Streams: number;
      peakRunsMb: number[];
      /** Per agent fixture: the peak with 200 of its requests in flight (slow streams), median of fresh processes. */
      peakMbWith200Agents: Record<string, number>;
      rssMbAfter10k: number;
      rssMbAfter100k: number;
    }
    const peak = async (fresh: () => Promise<{ child: ChildProcess; port: number }>, spec: Omit<LoadSpec, 'url'>): Promise<number[]> => {
      const peaks: number[] = [];
      for (let run = 0; run < PEAK_RUNS; run++) {
        const server = await fresh();
        await load({ url: `http://127.0.0.1:${server.port}/v1/chat/completions`, ...spec });
        peaks.push(memory(server.child.pid as number).peakMb);
        server.child.kill('SIGKILL');
      }
      return peaks;
    };
    const measureMemory = async (fresh: () => Promise<{ child: ChildProcess; port: number }>, key: string): Promise<MemoryFigures> => {
      const peaks = await peak(fresh, { key, body: slow, connections: 1000, warmupMs: 0, durationMs: 0, maxRequests: 1000, timeoutMs: 60_000 });
      const peakMbWith200Agents: Record<string, number> = {};
      for (const fixture of fixtures) {
        peakMbWith200Agents[fixture.name] = median(await peak(fresh, { key, body: '', bodyFile: fixture.slowChat, connections: 200, warmupMs: 0, durationMs: 0, maxRequests: 200, timeoutMs: 60_000 }));
      }
      const steady = await fresh();
      const url = `http://127.0.0.1:${steady.port}/v1/chat/completions`;
      await load({ url, key, body: small, connections: CONNECTIONS, warmupMs: 0, durationMs: 0, maxRequests: 10_000, timeoutMs: 10_000 });
      const after10k = memory(steady.child.pid as number).rssMb;
      await load({ url, key, body: small, connections: CONNECTIONS, warmupMs: 0, durationMs: 0, maxRequests: 90_000, timeoutMs: 10_000 });
      const after100k = memory(steady.child.pid as number).rssMb;
      steady.child.kill('SIGKILL');
      return { peakMbWith1000Streams: median(peaks), peakRunsMb: peaks, peakMbWith200Agents, rssMbAfter10k: after10k, rssMbAfter100k: after100k };
    };
    process.stderr.write('memory: 1000 concurrent slow streams, 200 agent-sized requests in flight, then 10,000 and 100,000 requests (gateway, then proxy)…\n');
    const g = await measureMemory(() => startGateway(dir, upstream.port, 'file'), 'vk_openai');
    const p = await measureMemory(() => start([join(HERE, 'proxy.js'), '0', String(upstream.port)]), 'vk');
    json.memory = { gateway: g, proxy: p };
    lines.push('| memory | gateway (logs to file) | minimal proxy |');
    lines.push('|---|---:|---:|');
    const runs = (figures: MemoryFigures): string => `${f(figures.peakMbWith1000Streams, 1)} MB (${figures.peakRunsMb.map((mb) => f(mb, 0)).join(', ')})`;
    lines.push(`| peak RSS, 1000 concurrent streams: median (each run) | ${runs(g)} | ${runs(p)} |`);
    for (const fixture of fixtures) lines.push(`| peak RSS, 200 requests of ${fixture.name} in flight | ${f(g.peakMbWith200Agents[fixture.name] ?? NaN, 1)} MB | ${f(p.peakMbWith200Agents[fixture.name] ?? NaN, 1)} MB |`);
    lines.push(`| RSS after 10,000 requests | ${f(g.rssMbAfter10k, 1)} MB | ${f(p.rssMbAfter10k, 1)} MB |`);
    lines.push(`| RSS after 100,000 requests | ${f(g.rssMbAfter100k, 1)} MB | ${f(p.rssMbAfter100k, 1)} MB |`);
    lines.push('');
    check('peak RSS with 1000 concurrent streams ≤ 150 MB', g.peakMbWith1000Streams, g.peakMbWith1000Streams <= 150, `${f(g.peakMbWith1000Streams, 1)} MB`);
    for (const fixture of fixtures) {
      const mb = g.peakMbWith200Agents[fixture.name] ?? NaN;
      check(`peak RSS with 200 requests of ${fixture.name} in flight ≤ 300 MB`, mb, mb <= 300, `${f(mb, 1)} MB (proxy ${f(p.peakMbWith200Agents[fixture.name] ?? NaN, 1)} MB)`);
    }
    // Growth beyond the bare proxy's own (V8's young generation growing to its working size) by
    // more than 10 MB would be the gateway's.
    const growth = g.rssMbAfter100k - g.rssMbAfter10k;
    const baseline = p.rssMbAfter100k - p.rssMbAfter10k;
    const mb = (value: number): string => `${value >= 0 ? '+' : ''}${f(value, 1)} MB`;
    check("RSS growth 10k→100k requests within 10 MB of the proxy's", growth - baseline, growth - baseline <= 10, `${mb(growth)} (proxy ${mb(baseline)})`);
  }

  // ---- report ----
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const header = [
    `llm-gateway benchmark: ${ROUNDS} rounds interleaved, ${DURATION_MS} ms per measurement after ${WARMUP_MS} ms warm-up; medians over rounds (ratios and differences taken within each round)`,
    `machine: ${machine}; commit ${commit}; suites: ${[...SUITES].join(', ')}`,
    '',
  ];
  for (const [destination, { answers, missing }] of unlogged) {
    check(`every answer of the logged rows has its entry (${destination})`, missing, missing === 0, `${missing} of ${answers} without one`);
  }
  for (const [what, ok, value] of checks) lines.push(`${ok ? 'PASS' : 'MISS'}  ${what}: ${value}`);
  const text = [...header, ...lines].join('\n');
  process.stdout.write(`${text}\n`);
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const report = JSON.stringify({ date: new Date().toISOString(), commit, machine, suites: [...SUITES], rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, connections: CONNECTIONS, ...json, checks }, null, 2);
  writeFileSync(join(resultsDir, `${commit}-${Date.now()}.json`), report);
  writeFileSync(join(resultsDir, 'latest.json'), report);
  process.stderr.write(`results written to bench/results/latest.json\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
