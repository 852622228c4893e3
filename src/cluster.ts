/**
 * Several workers on one port with node:cluster. The primary serves no request: it owns the
 * log destinations (workers send it rendered entries, so entries from different workers never
 * interleave), answers /metrics for the whole instance by merging every worker's snapshot,
 * watches the keys file, relays SIGTERM/SIGINT/SIGHUP to every worker, and replaces a worker
 * that dies.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.js';
import { KeyFileError, loadKeyFile } from './keys.js';
import { warn, type LogSink } from './log.js';
import { Metrics, mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './metrics.js';
import type { Registry } from './providers/index.js';
import { createInstance, watchKeysFile } from './instance.js';

/** Messages between primary and workers. */
type ToPrimary =
  | { t: 'ready'; address: string }
  | { t: 'log'; data: string }
  | { t: 'metrics'; id: number; snapshot: MetricsSnapshot }
  | { t: 'snapshot'; id: number; snapshot: MetricsSnapshot };
type ToWorker = { t: 'reload'; why: string } | { t: 'snapshot'; id: number } | { t: 'metrics'; id: number; text: string };

const SNAPSHOT_TIMEOUT_MS = 1000;

function isMessage<T extends { t: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

/** The primary: forks `config.workers` workers and coordinates them. Resolves never; exits the process. */
export async function runPrimary(config: Config, registry: Registry, sinks: LogSink[], keyCount: number): Promise<void> {
  const metrics = new Metrics();
  let virtualKeys = keyCount;
  let stopping = false;
  let nextId = 1;
  const ready = new WeakSet<Worker>();
  const pendingSnapshots = new Map<number, { wanted: number; got: MetricsSnapshot[]; done: () => void }>();

  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
  const send = (worker: Worker, message: ToWorker): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const failures = (): number => sinks.reduce((sum, sink) => sum + sink.failures, 0);

  /** Merges the scraped worker's snapshot, every other worker's (those answering within a second) and the primary's own. */
  const gather = (scraped: Worker, first: MetricsSnapshot): Promise<string> =>
    new Promise((resolve) => {
      const id = nextId++;
      const others = workers().filter((worker) => worker !== scraped);
      const entry = {
        wanted: others.length,
        got: [first] as MetricsSnapshot[],
        done: () => {
          clearTimeout(timer);
          pendingSnapshots.delete(id);
          const own = metrics.snapshot({ gauges: { llm_gateway_virtual_keys: virtualKeys }, counters: { llm_gateway_log_write_failures_total: failures() } });
          resolve(renderPrometheus(mergeSnapshots([...entry.got, own])));
        },
      };
      const timer = setTimeout(entry.done, SNAPSHOT_TIMEOUT_MS);
      pendingSnapshots.set(id, entry);
      for (const worker of others) send(worker, { t: 'snapshot', id });
      if (others.length === 0) entry.done();
    });

  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (message: unknown) => {
      if (!isMessage<ToPrimary>(message)) return;
      switch (message.t) {
        case 'ready':
          ready.add(worker);
          break;
        case 'log': {
          const data = Buffer.from(message.data);
          for (const sink of sinks) sink.write(data);
          break;
        }
        case 'metrics': {
          // A worker was scraped: it sent its own snapshot; gather the others'.
          void gather(worker, message.snapshot).then((text) => send(worker, { t: 'metrics', id: message.id, text }));
          break;
        }
        case 'snapshot': {
          const pending = pendingSnapshots.get(message.id);
          if (pending === undefined) break;
          pending.got.push(message.snapshot);
          if (pending.got.length > pending.wanted) pending.done();
          break;
        }
      }
    });
    return worker;
  };

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    if (!ready.has(worker)) {
      // It died before listening (port in use, …): forking again would loop forever.
      warn(`a worker failed to start (exit ${code ?? signal}); stopping`);
      stopping = true;
      for (const other of workers()) other.process.kill('SIGTERM');
      void Promise.all(sinks.map((sink) => sink.close())).then(() => process.exit(1));
      return;
    }
    warn(`worker ${worker.process.pid ?? '?'} died (${signal ?? `exit ${code}`}); starting a replacement`);
    fork();
  });

  const reload = async (why: string): Promise<void> => {
    // The primary validates once and reports once; workers then load the same file.
    try {
      virtualKeys = (await loadKeyFile(config.keysFile, registry)).length;
      metrics.keyReload('ok');
      warn(`keys reloaded (${why}): ${virtualKeys} virtual key${virtualKeys === 1 ? '' : 's'} in use by ${workers().length} workers`);
      for (const worker of workers()) send(worker, { t: 'reload', why });
    } catch (err) {
      metrics.keyReload('error');
      warn(`keys NOT reloaded (${why}); workers keep the previous keys:\n${err instanceof KeyFileError ? err.message : (err as Error).message}`);
    }
  };

  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    warn(`${signal}: stopping ${workers().length} workers`);
    for (const worker of workers()) worker.process.kill('SIGTERM');
    // Workers finish their requests (within GATEWAY_SHUTDOWN_TIMEOUT_MS) and flush their entries to us.
    const hardStop = setTimeout(() => {
      for (const worker of workers()) worker.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs + 15_000);
    hardStop.unref();
    const check = (): void => {
      if (workers().length > 0) return;
      void Promise.race([Promise.all(sinks.map((sink) => sink.close())), new Promise((resolve) => setTimeout(resolve, 10_000))]).then(() => process.exit(0));
    };
    cluster.on('exit', check);
    check();
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void reload('SIGHUP'));
  watchKeysFile(config.keysFile, () => void reload('file changed'));

  for (let i = 0; i < config.workers; i++) fork();
  // Report the address once, when the first worker listens.
  await new Promise<void>((resolve) => {
    const onMessage = (_worker: Worker, message: unknown): void => {
      if (isMessage<ToPrimary>(message) && message.t === 'ready') {
        cluster.off('message', onMessage);
        warn(
          `listening on http://${message.address} with ${virtualKeys} virtual key${virtualKeys === 1 ? '' : 's'} ` +
            `(${config.workers} workers); log file: ${config.logFile ?? 'off'}`,
        );
        resolve();
      }
    };
    cluster.on('message', onMessage);
  });
}

/** Sends rendered entries to the primary, which writes them: whole batches, never interleaved. */
class PrimarySink implements LogSink {
  private sending = 0;
  private idle: Array<() => void> = [];
  failures = 0;

  write(data: Buffer): void {
    if (process.send === undefined || !process.connected) {
      this.failures++;
      return;
    }
    this.sending++;
    process.send({ t: 'log', data: data.toString() } satisfies ToPrimary, undefined, undefined, (err) => {
      if (err !== null) this.failures++;
      if (--this.sending === 0) {
        const waiting = this.idle;
        this.idle = [];
        for (const resolve of waiting) resolve();
      }
    });
  }

  flush(): Promise<void> {
    if (this.sending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  close(): Promise<void> {
    return this.flush();
  }
}

/** A worker: one instance whose log goes to the primary and whose /metrics asks the primary. */
export async function runWorker(config: Config, registry: Registry): Promise<void> {
  let nextId = 1;
  const waiting = new Map<number, (text: string) => void>();
  let keys;
  try {
    keys = await loadKeyFile(config.keysFile, registry);
  } catch (err) {
    warn(`worker cannot load keys: ${(err as Error).message}`);
    process.exit(1);
  }
  const instance = createInstance({
    config,
    registry,
    keys,
    sinks: [new PrimarySink()],
    reportsKeyCount: false,
    gatherMetrics: (local) =>
      new Promise((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        process.send?.({ t: 'metrics', id, snapshot: local } satisfies ToPrimary);
      }),
  });

  process.on('message', (message: unknown) => {
    if (!isMessage<ToWorker>(message)) return;
    if (message.t === 'reload') void instance.reloadKeys(message.why);
    else if (message.t === 'snapshot') process.send?.({ t: 'snapshot', id: message.id, snapshot: instance.snapshot() } satisfies ToPrimary);
    else if (message.t === 'metrics') {
      waiting.get(message.id)?.(message.text);
      waiting.delete(message.id);
    }
  });

  const stop = (signal: string): void => {
    void instance.shutdown(signal).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary coordinates reloads; a SIGHUP sent to the whole process group must not kill a worker.
  process.on('SIGHUP', () => {});

  const address = await instance.listen();
  process.send?.({ t: 'ready', address } satisfies ToPrimary);
}

export const isPrimary = (): boolean => cluster.isPrimary;
