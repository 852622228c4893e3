/**
 * One serving process: keys, log, metrics, the upstream client and the HTTP server wired
 * together, with key reload and graceful shutdown. `main.ts` runs one alone, or one per cluster
 * worker.
 */
import net from 'node:net';
import { isLoopback, type Config } from './config.js';
import { GatewayError } from './errors.js';
import { createRouter } from './formats/router.js';
import { ResponseOwners, type ItemOwners } from './policy/response-owners.js';
import { ModelLists } from './surfaces/models.js';
import { InteractionLog } from './observe/log.js';
import type { LogSink } from './observe/log-sinks.js';
import { Turns } from './turns.js';
import { Metrics, mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './observe/metrics.js';
import { warn } from './observe/warn.js';
import type { KeyFile } from './policy/key-file.js';
import { KeyStore } from './policy/key-store.js';
import type { VirtualKey } from './policy/keys.js';
import type { Limiter } from './policy/limits.js';
import { BodyMemory } from './server/body-memory.js';
import { BodyPool } from './server/body-pool.js';
import { createGatewayServer, type GatewayServer } from './server/server.js';
import { Prices } from './prices/prices.js';
import type { PriceTable } from './prices/table.js';
import { SlotList } from './slot-list.js';
import type { Cancellation } from './upstream/cancel.js';
import { HttpClient } from './upstream/http-client.js';
import type { SharedLimiter } from './policy/shared-limits.js';
import { SharedEvents } from './policy/shared-events.js';

export interface InstanceOptions {
  readonly config: Config;
  readonly keys: VirtualKey[];
  /** The price table (the built-in one with PRICES_FILE over it). */
  readonly prices: PriceTable;
  /** The keys file, for reloads (null in a cluster worker: its primary reloads, and sends the keys). */
  readonly keyFile: KeyFile | null;
  readonly sinks: LogSink[];
  /** Where per-key limits are decided (this process, or the cluster primary). */
  readonly limiter: Limiter;
  /** In a cluster, /metrics is answered for every worker: this gathers the others' snapshots, waiting `waitMs` at most (null: the primary did not answer). */
  readonly gatherMetrics?: (local: MetricsSnapshot, waitMs: number) => Promise<string | null>;
  /** Whether this process reports the virtual-keys gauge (in a cluster only the primary does). */
  readonly reportsKeyCount?: boolean;
  /** Its metrics, when something made before it (the shared limiter) records into them too. */
  readonly metrics?: Metrics;
  /** Limits shared through Redis (for /healthz, metrics and the shared events), when they are. */
  readonly shared?: SharedLimiter | null;
  /** What a stop waits for, past the drain, before it closes the connection to Redis (a worker's release of a dead one's holds). */
  readonly beforeClosingRedis?: () => Promise<void>;
  /** Who says a stop's progress on stderr, where several processes say it (a cluster worker: `worker <pid>`). */
  readonly speaker?: string;
}

export interface Instance {
  readonly server: GatewayServer;
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  /** Whose stored responses' output items are whose (a cluster worker shares what it learns with the others). */
  readonly items: ItemOwners;
  /** Starts listening; resolves with a printable address. */
  listen(): Promise<string>;
  /**
   * Re-reads the keys file; on any problem keeps the current keys and reports every problem.
   * With `onlyIfChanged`, a file whose text is what was loaded last is left alone, silently.
   */
  reloadKeys(why: string, onlyIfChanged: boolean): Promise<void>;
  /** Swaps in keys and prices validated elsewhere (a cluster worker gets them from its primary). */
  useKeys(loaded: { keys: VirtualKey[]; prices: PriceTable }): void;
  /** Reopens the log file (after rotation). */
  reopenLog(): void;
  /** This process's metrics as plain data. */
  snapshot(): MetricsSnapshot;
  /**
   * Graceful shutdown (stop accepting, let requests finish, cancel the rest, flush the log).
   * False when the log could not be flushed in time: end the process with endProcess.
   */
  shutdown(signal: string): Promise<boolean>;
}

function shutdownCancelled(): GatewayError {
  return new GatewayError(503, 'The gateway is shutting down and could not finish this request in time.', { code: 'gateway_shutting_down' });
}

/** Why the server could not listen, in one line that names the variable to change. */
export function listenFailure(config: Pick<Config, 'host' | 'port'>, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const where = config.host === undefined ? `port ${config.port} (all interfaces)` : `${config.host}:${config.port}`;
  if (code === 'EADDRINUSE') return `cannot listen on ${where}: the port is already in use (EADDRINUSE); stop what uses it or set GATEWAY_PORT to another port`;
  if (code === 'EACCES') return `cannot listen on ${where}: permission denied (EACCES); ports below 1024 need privileges, set GATEWAY_PORT to a higher port`;
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return `cannot listen on ${where}: this machine has no such address (${code}); check GATEWAY_HOST`;
  return `cannot listen on ${where} (${code ?? (err as Error).message}); check GATEWAY_HOST and GATEWAY_PORT`;
}

/** During shutdown, idle connections are closed once no request has arrived for this long. */
const QUIET_MS = 250;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Stops accepting, lets the requests in flight finish for up to `timeoutMs`, then cancels the
 * rest; resolves once every handler has recorded its entry.
 */
async function drain(server: GatewayServer, timeoutMs: number, signal: string, hurry: Promise<string>, speaker: string | undefined): Promise<void> {
  const http = server.http;
  const who = speaker === undefined ? '' : `${speaker}: `;
  warn(`${who}${signal}: no longer accepting connections; ${server.activeRequests()} request(s) in flight get up to ${timeoutMs} ms to finish (a second ${signal} ends them now)`);
  server.drain(); // from now on every response closes its connection, and /healthz says 503
  // Stop accepting, but keep open connections: http.Server#close would also drop idle
  // keep-alive connections at once, and a proxy (nginx) sending on one just then gets a
  // reset it cannot retry a POST on. Requests still arriving on them are served with
  // `connection: close`; a connection idle while no request has arrived for a while is closed.
  const allClosed = new Promise<void>((resolve) => net.Server.prototype.close.call(http, () => resolve()));
  const sweep = setInterval(() => {
    if (server.activeRequests() === 0 && server.quietFor() >= QUIET_MS) server.closeIdleConnections();
  }, 50);
  const finished = await Promise.race([allClosed.then(() => true), sleep(timeoutMs).then(() => 'shutdown timeout'), hurry]);
  clearInterval(sweep);
  if (finished !== true) {
    warn(`${who}${finished}: cancelling ${server.activeRequests()} request(s) still in flight`);
    server.cancelAll(shutdownCancelled());
    await Promise.race([server.whenIdle(), sleep(2000)]);
    http.closeAllConnections();
  }
  await Promise.race([server.whenIdle(), sleep(1000)]); // every handler has recorded its entry
}

export function createInstance(options: InstanceOptions): Instance {
  const { config } = options;
  const keys = new KeyStore(options.keys);
  const prices = new Prices(options.prices);
  const log = new InteractionLog(options.sinks, config.logBodyMaxBytes);
  const metrics = options.metrics ?? new Metrics();
  const shared = options.shared ?? null;
  // With Redis, real-key cool-downs and open circuits are shared with the other instances (announced and stored).
  const events = shared === null || config.redis === null ? null : new SharedEvents(config.redis.address, shared, (digest) => keys.byDigestOf(digest));
  events?.attach(options.keys);
  const inFlight = new SlotList<Cancellation>();
  const client = new HttpClient();
  const owners = new ResponseOwners();

  /** `scraping`: taken for the /metrics request this process is serving, which is not one of the requests it reports. */
  const snapshot = (scraping = false): MetricsSnapshot =>
    metrics.snapshot({
      gauges: {
        llm_gateway_requests_in_flight: server.activeRequests() - (scraping ? 1 : 0),
        ...(options.reportsKeyCount === false ? {} : { llm_gateway_virtual_keys: keys.size }),
        ...(shared === null ? {} : { llm_gateway_redis_up: shared.healthy ? 1 : 0 }),
      },
      counters: { llm_gateway_log_write_failures_total: log.failures },
    });

  const server = createGatewayServer({
    keys,
    log,
    metrics,
    inFlight,
    limiter: options.limiter,
    corsOrigins: config.corsOrigins,
    maxBodyBytes: config.maxBodyBytes,
    bodyPool: new BodyPool(),
    bodyMemory: new BodyMemory(config.maxBodiesBytes),
    upstream: { client, policy: config.upstream },
    owners,
    modelLists: new ModelLists(),
    turns: new Turns(),
    prices,
    router: createRouter({ anthropicDefaultMaxTokens: config.anthropicDefaultMaxTokens, now: () => Math.floor(Date.now() / 1000) }),
    metricsToken: config.metricsToken,
    redisDown: () => (shared === null ? null : !shared.healthy),
    metricsOpen: isLoopback(config.host),
    headersTimeoutMs: config.headersTimeoutMs,
    renderMetrics: (waitMs) => (options.gatherMetrics === undefined ? Promise.resolve(renderPrometheus(mergeSnapshots([snapshot(true)]))) : options.gatherMetrics(snapshot(true), waitMs)),
  });

  const reloadKeys = async (why: string, onlyIfChanged: boolean): Promise<void> => {
    if (options.keyFile === null) return;
    const result = await options.keyFile.reload(why, { onlyIfChanged });
    if (result.outcome === 'reloaded') {
      keys.replace(result.keys);
      prices.replace(result.prices);
      events?.attach(result.keys);
    }
    if (result.outcome !== 'unchanged') metrics.keyReload(result.outcome === 'reloaded' ? 'ok' : 'error');
  };

  let stopping: Promise<boolean> | null = null;
  /** Ends the wait for requests in flight at once: a second signal (an operator who will not wait). */
  let hurry: (why: string) => void = () => {};
  const hurried = new Promise<string>((resolve) => (hurry = resolve));
  const shutdown = (signal: string): Promise<boolean> => {
    if (stopping !== null) hurry(`${signal} again`);
    stopping ??= drain(server, config.shutdownTimeoutMs, signal, hurried, options.speaker).then(async () => {
      client.close();
      if (shared !== null && config.redis !== null) await Promise.all([shared.settled(config.redis.timeoutMs * 10), options.beforeClosingRedis?.()]);
      if (shared !== null && shared.waiting > 0) {
        warn(
          shared.migrationPending
            ? `${shared.waiting} settlement(s) were still waiting for Redis at shutdown: the state file's spend, theirs included, was not added to Redis yet: the next start that reaches it adds it, once for each key and period`
            : `${shared.waiting} settlement(s) were still waiting for Redis at shutdown: Redis may never count their spend (this instance's state file keeps that of keys with a budget)`,
        );
      }
      shared?.client.close();
      events?.close();
      return log.close();
    });
    return stopping;
  };

  return {
    server,
    keys,
    log,
    items: owners.items,
    snapshot,
    reloadKeys,
    useKeys: (loaded) => {
      keys.replace(loaded.keys);
      prices.replace(loaded.prices);
      events?.attach(loaded.keys);
    },
    reopenLog: () => log.reopen(),
    shutdown,
    listen: () =>
      new Promise((resolve, reject) => {
        const http = server.http;
        http.once('error', reject);
        http.listen(config.port, config.host, () => {
          http.off('error', reject);
          const address = http.address();
          resolve(typeof address === 'object' && address !== null ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address));
        });
      }),
  };
}
