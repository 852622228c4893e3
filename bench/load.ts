/**
 * The load generator, in its own process: `connections` keep-alive connections on `node:http`,
 * each sending the next request as soon as the previous answer ended (closed loop). A warm-up,
 * then a fixed duration (or a fixed number of requests); every request has a timeout, so a run
 * always stops. Prints one JSON result line.
 *
 *   node dist/bench/bench/load.js '<LoadSpec as JSON>'
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';

export interface LoadSpec {
  url: string;
  key: string;
  body: string;
  /** Read the body from this file instead (agent-sized bodies exceed what one argument may hold). */
  bodyFile?: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** Stop after this many measured requests instead of after durationMs. */
  maxRequests?: number;
  timeoutMs: number;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  /** Milliseconds from sending to the end of the response. */
  latency: Percentiles;
  /** Milliseconds from sending to the first byte of the body. */
  ttfb: Percentiles;
  /** Responses received whole in the whole run, warm-up and stragglers included: each has a log entry. */
  answers: number;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: NaN, p90: NaN, p99: NaN, mean: NaN };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), mean: values.reduce((a, b) => a + b, 0) / values.length };
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections, maxFreeSockets: spec.connections });
  const body = spec.bodyFile === undefined ? Buffer.from(spec.body) : readFileSync(spec.bodyFile);
  const headers = { authorization: `Bearer ${spec.key}`, 'content-type': 'application/json', 'content-length': body.length };
  const latencies: number[] = [];
  const ttfbs: number[] = [];
  let errors = 0;
  // With no warm-up every request counts, from the first one sent.
  let measuring = spec.warmupMs <= 0;
  let stopped = false;
  let measured = 0;
  /**
   * Requests sent while measuring: a count-bounded run sends exactly maxRequests of them (failed
   * ones included, never replaced) and measures only those, not the warm-up's stragglers.
   */
  let sent = 0;
  let answers = 0;
  const started = performance.now();
  let measureStart = started;
  let measureEnd = started;

  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const counted = measuring && spec.maxRequests !== undefined;
      if (counted) sent++;
      const t0 = performance.now();
      let first = 0;
      let done = false;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (measuring && !stopped && (spec.maxRequests === undefined || counted)) {
          if (ok) {
            latencies.push(performance.now() - t0);
            ttfbs.push(first - t0);
            measured++;
            if (spec.maxRequests !== undefined && measured >= spec.maxRequests) stop();
          } else {
            errors++;
            // A target that fails every request (not listening, crashing) must not keep a
            // count-bounded run going until its hard stop.
            if (errors > 100 && errors > measured) stop();
          }
        }
        resolve();
      };
      const req = http.request({ agent, hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, (res) => {
        res.on('data', () => {
          if (first === 0) first = performance.now();
        });
        res.on('end', () => {
          answers++;
          finish(res.statusCode === 200);
        });
        res.on('error', () => finish(false));
      });
      const timer = setTimeout(() => {
        req.destroy();
        finish(false);
      }, spec.timeoutMs);
      req.on('error', () => finish(false));
      req.end(body);
    });

  // The measured window ends when the time (or the request count) is up; answers still in flight
  // then are neither counted nor timed.
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    measureEnd = performance.now();
  };
  // A count-bounded run sends no more than its count: with 1,000 connections and 1,000 requests
  // that is 1,000 concurrent requests, not a second wave started as the first one ends.
  const more = (): boolean => !stopped && !(spec.maxRequests !== undefined && measuring && sent >= spec.maxRequests);
  const loop = async (): Promise<void> => {
    while (more()) await one();
  };

  const warm = setTimeout(() => {
    if (measuring) return;
    measuring = true;
    measureStart = performance.now();
  }, spec.warmupMs);
  const hardStop = setTimeout(stop, spec.maxRequests === undefined ? spec.warmupMs + spec.durationMs : spec.warmupMs + 10 * 60_000);
  await Promise.all(Array.from({ length: spec.connections }, loop));
  stop(); // every request sent has ended (some may have failed, so the count was not reached)
  clearTimeout(warm);
  clearTimeout(hardStop);
  agent.destroy();
  const seconds = (measureEnd - measureStart) / 1000;
  return { requests: measured, errors, seconds, rps: measured / seconds, latency: percentiles(latencies), ttfb: percentiles(ttfbs), answers };
}

if (process.argv[2] !== undefined) {
  run(JSON.parse(process.argv[2]) as LoadSpec).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (err: unknown) => {
      process.stderr.write(`load: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
