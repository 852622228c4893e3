/**
 * One serving process: keys, log, metrics and the HTTP server wired together, with key reload
 * and graceful shutdown. `main.ts` runs one alone, or one per cluster worker.
 */
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import type { Cancellation } from './upstream/cancel.js';
import { isLoopback, type Config } from './config.js';
import { GatewayError } from './errors.js';
import { KeyFileError, KeyStore, keyWarnings, loadKeyFileText, type VirtualKey } from './policy/keys.js';
import type { Limiter } from './policy/limits.js';
import { InteractionLog, warn, type LogSink } from './observe/log.js';
import { Metrics, mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './observe/metrics.js';
import type { Registry } from './providers/index.js';
import { createGatewayServer, type GatewayServer } from './server/server.js';
import { SlotList } from './slot-list.js';

export interface InstanceOptions {
  readonly config: Config;
  readonly registry: Registry;
  readonly keys: VirtualKey[];
  /** The text the keys came from, to tell a real change from a touch. */
  readonly keysText?: string;
  readonly sinks: LogSink[];
  /** Where per-key limits are decided (this process, or the cluster primary). */
  readonly limiter: Limiter;
  /** In a cluster, /metrics is answered for every worker: this gathers the others' snapshots. */
  readonly gatherMetrics?: (local: MetricsSnapshot) => Promise<string>;
  /** Whether this process reports the virtual-keys gauge (in a cluster only the primary does). */
  readonly reportsKeyCount?: boolean;
}

export interface Instance {
  readonly server: GatewayServer;
  readonly keys: KeyStore;
  readonly log: InteractionLog;
  /** Starts listening; resolves with a printable address. */
  listen(): Promise<string>;
  /**
   * Re-reads the keys file; on any problem keeps the current keys and reports every problem.
   * With `onlyIfChanged`, a file whose text is what was loaded last is left alone, silently.
   */
  reloadKeys(why: string, onlyIfChanged?: boolean): Promise<boolean>;
  /** Swaps in keys validated elsewhere (a cluster worker gets them from its primary). */
  useKeys(keys: VirtualKey[]): void;
  /** Reopens the log file (after rotation). */
  reopenLog(): void;
  /** This process's metrics as plain data. */
  snapshot(): MetricsSnapshot;
  /** Graceful shutdown (stop accepting, let requests finish, cancel the rest, flush the log). */
  shutdown(signal: string): Promise<void>;
}

export function shutdownCancelled(): GatewayError {
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

export function createInstance(options: InstanceOptions): Instance {
  const { config } = options;
  const keys = new KeyStore(options.keys);
  const log = new InteractionLog(options.sinks);
  const metrics = new Metrics();
  const inFlight = new SlotList<Cancellation>();

  const snapshot = (): MetricsSnapshot =>
    metrics.snapshot({
      gauges: {
        llm_gateway_requests_in_flight: server.activeRequests(),
        ...(options.reportsKeyCount === false ? {} : { llm_gateway_virtual_keys: keys.size }),
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
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    upstreamIdleTimeoutMs: config.upstreamIdleTimeoutMs,
    upstreamRetries: config.upstreamRetries,
    upstreamRetryMaxDelayMs: config.upstreamRetryMaxDelayMs,
    metricsToken: config.metricsToken,
    metricsOpen: isLoopback(config.host),
    headersTimeoutMs: config.headersTimeoutMs,
    renderMetrics: () => (options.gatherMetrics === undefined ? Promise.resolve(renderPrometheus(mergeSnapshots([snapshot()]))) : options.gatherMetrics(snapshot())),
  });

  let reloading: Promise<boolean> = Promise.resolve(true);
  let loadedText = options.keysText;
  const reloadKeys = (why: string, onlyIfChanged = false): Promise<boolean> => {
    // One reload at a time, in order: the last one reads the file as it finally is.
    reloading = reloading.then(async () => {
      try {
        const loaded = await loadKeyFileText(config.keysFile, options.registry);
        if (onlyIfChanged && loaded.text === loadedText) return true;
        keys.replace(loaded.keys);
        loadedText = loaded.text;
        metrics.keyReload('ok');
        warn(`keys reloaded (${why}): ${keys.size} virtual key${keys.size === 1 ? '' : 's'} in use`);
        for (const warning of keyWarnings(loaded.keys)) warn(warning);
        return true;
      } catch (err) {
        metrics.keyReload('error');
        const message = err instanceof KeyFileError ? err.message : (err as Error).message;
        warn(`keys NOT reloaded (${why}); still using the previous ${keys.size}:\n${message}`);
        return false;
      }
    });
    return reloading;
  };

  let stopping: Promise<void> | null = null;
  const shutdown = (signal: string): Promise<void> => {
    stopping ??= (async () => {
      const http = server.http;
      warn(`${signal}: no longer accepting connections; ${server.activeRequests()} request(s) in flight get up to ${config.shutdownTimeoutMs} ms to finish`);
      server.drain(); // from now on every response closes its connection, and /healthz says 503
      // Stop accepting, but keep open connections: http.Server#close would also drop idle
      // keep-alive connections at once, and a proxy (nginx) sending on one just then gets a
      // reset it cannot retry a POST on. Requests still arriving on them are served with
      // `connection: close`; a connection idle while no request has arrived for a while is closed.
      const allClosed = new Promise<void>((resolve) => net.Server.prototype.close.call(http, () => resolve()));
      const sweep = setInterval(() => {
        if (server.activeRequests() === 0 && server.quietFor() >= QUIET_MS) server.closeIdleConnections();
      }, 50);
      const finished = await Promise.race([allClosed.then(() => true), sleep(config.shutdownTimeoutMs).then(() => false)]);
      clearInterval(sweep);
      if (!finished) {
        warn(`shutdown timeout: cancelling ${server.activeRequests()} request(s) still in flight`);
        server.cancelAll(shutdownCancelled());
        await Promise.race([server.whenIdle(), sleep(2000)]);
        http.closeAllConnections();
      }
      await Promise.race([server.whenIdle(), sleep(1000)]); // every handler has recorded its entry
      await log.close();
    })();
    return stopping;
  };

  return {
    server,
    keys,
    log,
    snapshot,
    reloadKeys,
    useKeys: (list) => keys.replace(list),
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

/**
 * Calls `onChange` (debounced) when anything changes in the keys file's folder, or in the folder
 * of the file it links to. Folders, not the file: editors and deploy tools replace the file (a
 * rename), and Kubernetes swaps a `..data` symlink; a watch on the old inode sees neither. The
 * caller compares contents, so unrelated changes in the folder cost a read and nothing else.
 */
export function watchKeysFile(file: string, onChange: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(onChange, 100);
  };
  const folders = new Set([dirname(resolve(file))]);
  try {
    folders.add(dirname(realpathSync(file)));
  } catch {
    // not there (yet), or not a link: the folder of the path is enough
  }
  const watchers: FSWatcher[] = [];
  for (const folder of folders) {
    try {
      const watcher = watch(folder, { persistent: false }, changed);
      watcher.on('error', (err) => warn(`stopped watching ${folder} (${err.message}); reload keys with SIGHUP`));
      watchers.push(watcher);
    } catch (err) {
      warn(`cannot watch ${folder} for changes to ${file} (${(err as Error).message}); reload keys with SIGHUP`);
    }
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}
