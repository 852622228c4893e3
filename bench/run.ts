/**
 * `npm run bench`: the gateway against the least a Node proxy must do, on this machine, in one
 * run. Every target is measured in every round, rounds interleaved (these machines drift by ±30%
 * from minute to minute: only ratios within one run mean anything), and the median is kept.
 * Prints one table and writes it as JSON to bench/results/.
 *
 * Ratios and differences are computed within each round (a target against the proxy measured
 * minutes, not hours, apart) and the median over rounds is reported.
 *
 * Environment: BENCH_ROUNDS (5), BENCH_DURATION_MS (2000), BENCH_WARMUP_MS (500),
 * BENCH_CONNECTIONS (50), BENCH_MEMORY (1: run the memory scenarios; 0: skip them), BENCH_PEAK_RUNS
 * (5: fresh processes measured for the peak with 1,000 streams, median kept).
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 2000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 500);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const MEMORY = process.env.BENCH_MEMORY !== '0';
const PEAK_RUNS = Number(process.env.BENCH_PEAK_RUNS ?? 5);

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

/** Starts a process and resolves with the port it reports (stdout "ready <port>" or the gateway's stderr line). */
function start(args: string[], env: Record<string, string> = {}, stdout: 'pipe' | 'ignore' = 'pipe'): Promise<{ child: ChildProcess; port: number }> {
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

/** A port nothing listens on: the first target of the fallback row, which refuses every connection. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function gatewayEnv(dir: string, upstreamPort: number, logs: boolean, refusedPort: number): Record<string, string> {
  const keysFile = join(dir, `keys-${logs ? 'logs' : 'nolog'}.json`);
  writeFileSync(
    keysFile,
    JSON.stringify({
      virtual_keys: {
        vk_openai: { provider: 'openai', api_key: 'sk-bench-openai', base_url: `http://127.0.0.1:${upstreamPort}/v1`, api: ['chat', 'responses'] },
        // A first target that refuses connections, then the server: every request falls back.
        vk_fallback: {
          targets: [
            { provider: 'openai', api_key: 'sk-bench-openai', base_url: `http://127.0.0.1:${refusedPort}/v1` },
            { provider: 'openai', api_key: 'sk-bench-openai', base_url: `http://127.0.0.1:${upstreamPort}/v1` },
          ],
          // Never skipped: the row measures a fallback on every request, not a skipped target.
          circuit_breaker: { failures: 1_000_000_000, cooldown_ms: 1 },
        },
        // The same server as a chat-only OpenAI-compatible one: Responses requests are translated.
        vk_openai_chat: { provider: 'openai', api_key: 'sk-bench-openai', base_url: `http://127.0.0.1:${upstreamPort}/v1` },
        vk_anthropic: { provider: 'anthropic', api_key: 'sk-ant-bench', base_url: `http://127.0.0.1:${upstreamPort}` },
        // A rate limit that never refuses: the rows measure the check itself (here, or in Redis).
        vk_limited: { provider: 'openai', api_key: 'sk-bench-openai', base_url: `http://127.0.0.1:${upstreamPort}/v1`, rate_limit: { requests_per_minute: 1_000_000_000 } },
      },
    }),
  );
  return {
    KEYS_FILE: keysFile,
    GATEWAY_PORT: '0',
    GATEWAY_HOST: '127.0.0.1',
    // "As shipped": pretty entries to stdout and to the file. Stdout goes to /dev/null so that no
    // reader's cost is charged to the gateway.
    LOG_FILE: logs ? join(dir, `interactions-${Date.now()}.json`) : 'off',
    LOG_CONSOLE: logs ? 'pretty' : 'off',
  };
}

async function startGateway(dir: string, upstreamPort: number, logs: boolean, extra: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  return start([join(ROOT, 'dist', 'main.js')], { ...gatewayEnv(dir, upstreamPort, logs, await closedPort()), ...extra }, 'ignore');
}

/** A redis-server for the shared-limits row (none installed: the row is left out). */
async function startRedis(dir: string): Promise<{ child: ChildProcess; port: number } | null> {
  const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((path) => existsSync(path));
  if (binary === undefined) return null;
  const port = await closedPort();
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

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'llm-gateway-bench-'));
  const upstream = await start([join(HERE, 'upstream.js'), '0']);
  const proxy = await start([join(HERE, 'proxy.js'), '0', String(upstream.port)]);
  const poolProxy = await start([join(HERE, 'proxy.js'), '0', String(upstream.port), 'pool']);
  const logged = await startGateway(dir, upstream.port, true);
  const quiet = await startGateway(dir, upstream.port, false);
  const redis = await startRedis(dir);
  const shared = redis === null ? null : await startGateway(dir, upstream.port, false, { REDIS_URL: `redis://127.0.0.1:${redis.port}/0` });

  const targets: Target[] = [
    { name: 'upstream direct', port: upstream.port, path: '/v1/chat/completions', key: 'sk-bench-openai' },
    { name: 'minimal proxy', port: proxy.port, path: '/v1/chat/completions', key: 'vk' },
    { name: 'gateway openai, logs on', port: logged.port, path: '/v1/chat/completions', key: 'vk_openai' },
    { name: 'gateway openai, logs off', port: quiet.port, path: '/v1/chat/completions', key: 'vk_openai' },
    { name: 'gateway anthropic, logs on', port: logged.port, path: '/v1/chat/completions', key: 'vk_anthropic' },
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
  ];
  const results = new Map<string, LoadResult[]>();
  const record = (scenario: Scenario, target: Target, result: LoadResult): void => {
    const key = `${scenario}|${target.name}`;
    results.set(key, [...(results.get(key) ?? []), result]);
  };

  const total = ROUNDS * Object.keys(SCENARIOS).length * targets.length;
  let done = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [scenario, setup] of Object.entries(SCENARIOS) as Array<[Scenario, (typeof SCENARIOS)[Scenario]]>) {
      // Rotate the order each round so no target always runs first (or right after another).
      const order = targets.map((_, i) => targets[(i + round) % targets.length] as Target);
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
        record(scenario, target, result);
        process.stderr.write(`\r${++done}/${total} measurements`);
      }
    }
  }
  process.stderr.write('\n');

  const proxyTarget = targets[1] as Target;
  const summary = (scenario: Scenario, target: Target) => {
    const list = results.get(`${scenario}|${target.name}`) ?? [];
    const base = results.get(`${scenario}|${proxyTarget.name}`) ?? [];
    // Per round: this target against the proxy of the same round; then the median over rounds.
    const perRound = <T>(f: (mine: LoadResult, proxy: LoadResult) => T): T[] => list.map((mine, i) => f(mine, base[i] as LoadResult));
    return {
      rps: median(list.map((r) => r.rps)),
      p50: median(list.map((r) => r.latency.p50)),
      p99: median(list.map((r) => r.latency.p99)),
      ttfb50: median(list.map((r) => r.ttfb.p50)),
      rpsRatio: median(perRound((mine, proxy) => mine.rps / proxy.rps)),
      p50Delta: median(perRound((mine, proxy) => mine.latency.p50 - proxy.latency.p50)),
      ttfbDelta: median(perRound((mine, proxy) => mine.ttfb.p50 - proxy.ttfb.p50)),
      errors: list.reduce((sum, r) => sum + r.errors, 0),
    };
  };
  const table = targets.map((target) => ({
    target: target.name,
    json50: summary('json50', target),
    json1: summary('json1', target),
    stream1: summary('stream1', target),
    stream50: summary('stream50', target),
  }));

  // ---- memory ----
  // The same scenarios against a fresh minimal proxy: a bare Node server's own growth (V8 sizing
  // its young generation up to 16 MB semi-spaces in the first tens of thousands of requests) is
  // the noise floor a leak check must read against.
  interface MemoryFigures {
    /** The median of PEAK_RUNS fresh processes (the peak depends on when V8 happens to collect). */
    peakMbWith1000Streams: number;
    peakRunsMb: number[];
    rssMbAfter10k: number;
    rssMbAfter100k: number;
  }
  const measureMemory = async (fresh: () => Promise<{ child: ChildProcess; port: number }>, key: string): Promise<MemoryFigures> => {
    const peaks: number[] = [];
    for (let run = 0; run < PEAK_RUNS; run++) {
      const streams = await fresh();
      await load({ url: `http://127.0.0.1:${streams.port}/v1/chat/completions`, key, body: slow, connections: 1000, warmupMs: 0, durationMs: 0, maxRequests: 1000, timeoutMs: 60_000 });
      peaks.push(memory(streams.child.pid as number).peakMb);
      streams.child.kill('SIGKILL');
    }
    const steady = await fresh();
    const url = `http://127.0.0.1:${steady.port}/v1/chat/completions`;
    await load({ url, key, body: small, connections: CONNECTIONS, warmupMs: 0, durationMs: 0, maxRequests: 10_000, timeoutMs: 10_000 });
    const after10k = memory(steady.child.pid as number).rssMb;
    await load({ url, key, body: small, connections: CONNECTIONS, warmupMs: 0, durationMs: 0, maxRequests: 90_000, timeoutMs: 10_000 });
    const after100k = memory(steady.child.pid as number).rssMb;
    steady.child.kill('SIGKILL');
    return { peakMbWith1000Streams: median(peaks), peakRunsMb: peaks, rssMbAfter10k: after10k, rssMbAfter100k: after100k };
  };
  let memoryResult: { gateway: MemoryFigures; proxy: MemoryFigures } | null = null;
  if (MEMORY) {
    process.stderr.write('memory: 1000 concurrent slow streams, then 10,000 and 100,000 requests (gateway, then proxy)…\n');
    const gateway = await measureMemory(() => startGateway(dir, upstream.port, true), 'vk_openai');
    const bare = await measureMemory(() => start([join(HERE, 'proxy.js'), '0', String(upstream.port)]), 'vk');
    memoryResult = { gateway, proxy: bare };
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
  const f = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : '–');
  const times = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}x` : '–');
  const signed = (value: number): string => `${value >= 0 ? '+' : ''}${value.toFixed(3)}`;

  const lines: string[] = [];
  lines.push(`llm-gateway benchmark: ${ROUNDS} rounds interleaved, ${DURATION_MS} ms per measurement after ${WARMUP_MS} ms warm-up; medians over rounds (ratios and differences taken within each round)`);
  lines.push(`machine: ${machine}; commit ${commit}`);
  lines.push('');
  lines.push(`| target | ${CONNECTIONS} conn req/s | vs proxy | p50 ms | p99 ms | 1 conn p50 ms | vs proxy ms | stream ttfb p50 ms | vs proxy ms | stream total p50 ms | ${CONNECTIONS} conn streams/s | vs proxy | errors |`);
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of table) {
    const errors = row.json50.errors + row.json1.errors + row.stream1.errors + row.stream50.errors;
    lines.push(
      `| ${row.target} | ${f(row.json50.rps)} | ${times(row.json50.rpsRatio)} | ${f(row.json50.p50, 2)} | ${f(row.json50.p99, 2)} | ${f(row.json1.p50, 3)} | ${signed(row.json1.p50Delta)} | ` +
        `${f(row.stream1.ttfb50, 3)} | ${signed(row.stream1.ttfbDelta)} | ${f(row.stream1.p50, 2)} | ${f(row.stream50.rps)} | ${times(row.stream50.rpsRatio)} | ${errors} |`,
    );
  }
  if (memoryResult !== null) {
    const { gateway: g, proxy: p } = memoryResult;
    lines.push('');
    lines.push('| memory | gateway (logs on) | minimal proxy |');
    lines.push('|---|---:|---:|');
    const runs = (figures: MemoryFigures): string => `${f(figures.peakMbWith1000Streams, 1)} MB (${figures.peakRunsMb.map((mb) => f(mb, 0)).join(', ')})`;
    lines.push(`| peak RSS, 1000 concurrent streams: median (each run) | ${runs(g)} | ${runs(p)} |`);
    lines.push(`| RSS after 10,000 requests | ${f(g.rssMbAfter10k, 1)} MB | ${f(p.rssMbAfter10k, 1)} MB |`);
    lines.push(`| RSS after 100,000 requests | ${f(g.rssMbAfter100k, 1)} MB | ${f(p.rssMbAfter100k, 1)} MB |`);
  }

  const row = (name: string) => table.find((candidate) => candidate.target === name) as (typeof table)[number];
  const plain = row('gateway openai, logs off');
  const shipped = row('gateway openai, logs on');
  const translated = row('gateway anthropic, logs off');
  /** A client API's pass-through req/s over the chat pass-through's, per round, median. */
  const vsChat = (api: 'messages' | 'responses', scenario: Scenario): number => {
    const mine = results.get(`${scenario}|gateway ${api} pass-through, logs off`) ?? [];
    const chat = results.get(`${scenario}|gateway openai, logs off`) ?? [];
    return median(mine.map((result, i) => result.rps / (chat[i] as LoadResult).rps));
  };
  const checks: Array<[string, boolean, string]> = [
    ['non-streamed req/s, logs off ≥ 0.90x', plain.json50.rpsRatio >= 0.9, times(plain.json50.rpsRatio)],
    ['non-streamed req/s, logs as shipped ≥ 0.70x', shipped.json50.rpsRatio >= 0.7, times(shipped.json50.rpsRatio)],
    ['anthropic translation req/s, logs off ≥ 0.80x', translated.json50.rpsRatio >= 0.8, times(translated.json50.rpsRatio)],
    ['added latency at 1 connection ≤ 0.1 ms p50', plain.json1.p50Delta <= 0.1, `${signed(plain.json1.p50Delta)} ms`],
    ['stream time to first byte ≤ 0.3 ms p50 above', plain.stream1.ttfbDelta <= 0.3, `${signed(plain.stream1.ttfbDelta)} ms`],
    ['unpaced streams/s ≥ 0.80x', plain.stream50.rpsRatio >= 0.8, times(plain.stream50.rpsRatio)],
    // Within noise of the chat pass-through: the two measured side by side in each round.
    ['Messages pass-through req/s ≥ 0.90x chat pass-through', vsChat('messages', 'json50') >= 0.9, times(vsChat('messages', 'json50'))],
    ['Messages pass-through streams/s ≥ 0.90x chat pass-through', vsChat('messages', 'stream50') >= 0.9, times(vsChat('messages', 'stream50'))],
    ['Responses pass-through req/s ≥ 0.90x chat pass-through', vsChat('responses', 'json50') >= 0.9, times(vsChat('responses', 'json50'))],
    ['Responses pass-through streams/s ≥ 0.90x chat pass-through', vsChat('responses', 'stream50') >= 0.9, times(vsChat('responses', 'stream50'))],
  ];
  if (memoryResult !== null) {
    const { gateway: g, proxy: p } = memoryResult;
    checks.push(['peak RSS with 1000 concurrent streams ≤ 150 MB', g.peakMbWith1000Streams <= 150, `${f(g.peakMbWith1000Streams, 1)} MB`]);
    // Growth beyond the bare proxy's own (V8's young generation growing to its working size) by
    // more than 10 MB would be the gateway's.
    const growth = g.rssMbAfter100k - g.rssMbAfter10k;
    const baseline = p.rssMbAfter100k - p.rssMbAfter10k;
    const mb = (value: number): string => `${value >= 0 ? '+' : ''}${f(value, 1)} MB`;
    checks.push(['RSS growth 10k→100k requests within 10 MB of the proxy\'s', growth - baseline <= 10, `${mb(growth)} (proxy ${mb(baseline)})`]);
  }
  lines.push('');
  for (const [what, ok, value] of checks) lines.push(`${ok ? 'PASS' : 'MISS'}  ${what}: ${value}`);
  if (shared !== null) {
    // Redis's cost per request: the same rate-limited key checked in Redis or in the process, per round.
    const local = results.get('json1|gateway rate-limited key, logs off') ?? [];
    const viaRedis = results.get('json1|gateway rate-limited key, Redis, logs off') ?? [];
    const added = median(viaRedis.map((result, i) => result.latency.p50 - (local[i] as LoadResult).latency.p50));
    const ratio = median((results.get('json50|gateway rate-limited key, Redis, logs off') ?? []).map((result, i) => result.rps / ((results.get('json50|gateway rate-limited key, logs off') ?? [])[i] as LoadResult).rps));
    lines.push(`INFO  a rate limit checked in Redis (REDIS_URL, on this machine) instead of in the process: ${signed(added)} ms p50 at 1 connection, ${times(ratio)} req/s at ${CONNECTIONS} connections`);
  }

  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const json = JSON.stringify({ date: new Date().toISOString(), commit, machine, rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, connections: CONNECTIONS, table, memory: memoryResult, checks, raw: Object.fromEntries(results) }, null, 2);
  writeFileSync(join(resultsDir, `${commit}-${Date.now()}.json`), json);
  writeFileSync(join(resultsDir, 'latest.json'), json);
  process.stderr.write(`results written to bench/results/latest.json\n`);
  redis?.child.kill('SIGKILL');
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
