/**
 * Several workers on one port with node:cluster. The primary serves no request: it owns the
 * log destinations (workers send it rendered entries, so entries from different workers never
 * interleave), holds the keys (it validates the file and hands workers the text it accepted),
 * answers /metrics for the whole instance by merging every worker's counters, relays
 * SIGTERM/SIGINT/SIGHUP to every worker, and replaces a worker that dies.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.js';
import { KeyFileError, keyWarnings, loadKeyFileText, parseKeyFile } from './policy/keys.js';
import type { Admission, BudgetStore, KeyLimits, LimitState, Limiter } from './policy/limits.js';
import { formatsFor, warn, type LogFormat, type LogSink, type RenderedBatch } from './observe/log.js';
import { Metrics, mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './observe/metrics.js';
import type { Registry } from './providers/index.js';
import { createInstance, listenFailure, watchKeysFile } from './instance.js';

/** Messages between primary and workers. */
type ToPrimary =
  | { t: 'hello' }
  | { t: 'admit'; id: number; key: KeyLimits; estimate: number }
  | { t: 'record'; key: KeyLimits; tokens: number; reserved: number }
  | { t: 'ready'; address: string }
  /** The worker could not listen: `message` is the one line to print (once, by the primary). */
  | { t: 'listen-failed'; message: string }
  | { t: 'log'; batch: Partial<Record<LogFormat, string>> }
  | { t: 'scrape'; id: number; snapshot: MetricsSnapshot }
  | { t: 'snapshot'; id: number | null; snapshot: MetricsSnapshot };
type ToWorker =
  | { t: 'keys'; text: string }
  | { t: 'snapshot'; id: number }
  | { t: 'metrics'; id: number; text: string }
  | { t: 'admitted'; id: number; admission: Admission };

/** How long a scrape waits for every worker's fresh counters (then uses their last ones). */
const SNAPSHOT_TIMEOUT_MS = 1000;
/** Workers also send their counters this often, so a worker that dies loses little. */
const SNAPSHOT_PUSH_MS = 5000;

function isMessage<T extends { t: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

/** Counters and histograms only: a dead worker's gauges (in flight) no longer hold. */
function withoutGauges(snapshot: MetricsSnapshot): MetricsSnapshot {
  return { counters: snapshot.counters, histograms: snapshot.histograms, gauges: {} };
}

export interface PrimaryOptions {
  readonly config: Config;
  readonly registry: Registry;
  readonly sinks: LogSink[];
  /** The keys file's text as validated at start. */
  readonly keysText: string;
  readonly keyCount: number;
  /** The authority over every key's rate limits and budgets, for all workers. */
  readonly limits: LimitState;
  readonly budgets: BudgetStore;
}

/** The primary: forks `config.workers` workers and coordinates them. */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const { config, registry, sinks } = options;
  const metrics = new Metrics();
  let keysText = options.keysText;
  let virtualKeys = options.keyCount;
  let stopping = false;
  let started = false; // every initial worker has listened once
  let failedStarts = 0;
  let nextId = 1;
  const ready = new WeakSet<Worker>();
  /** The last counters each live worker sent, and the sum of those of workers that died. */
  const latest = new Map<number, MetricsSnapshot>();
  let retired: MetricsSnapshot = { counters: {}, histograms: {}, gauges: {} };
  const scrapes = new Map<number, { waiting: Set<number>; fresh: Map<number, MetricsSnapshot>; done: () => void }>();

  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
  const send = (worker: Worker, message: ToWorker): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const failures = (): number => sinks.reduce((sum, sink) => sum + sink.failures, 0);

  /** Every worker's counters (fresh where they answer in time), the dead ones', and the primary's own. */
  const gather = (scraped: Worker, first: MetricsSnapshot): Promise<string> =>
    new Promise((resolve) => {
      const id = nextId++;
      const others = workers().filter((worker) => worker !== scraped);
      const entry = {
        waiting: new Set(others.map((worker) => worker.id)),
        fresh: new Map<number, MetricsSnapshot>([[scraped.id, first]]),
        done: () => {
          clearTimeout(timer);
          scrapes.delete(id);
          const parts = workers().map((worker) => entry.fresh.get(worker.id) ?? latest.get(worker.id)).filter((part): part is MetricsSnapshot => part !== undefined);
          const own = metrics.snapshot({ gauges: { llm_gateway_virtual_keys: virtualKeys }, counters: { llm_gateway_log_write_failures_total: failures() } });
          resolve(renderPrometheus(mergeSnapshots([...parts, retired, own])));
        },
      };
      const timer = setTimeout(entry.done, SNAPSHOT_TIMEOUT_MS);
      scrapes.set(id, entry);
      for (const worker of others) send(worker, { t: 'snapshot', id });
      if (others.length === 0) entry.done();
    });

  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (message: unknown) => {
      if (!isMessage<ToPrimary>(message)) return;
      switch (message.t) {
        case 'hello':
          send(worker, { t: 'keys', text: keysText });
          break;
        case 'admit':
          send(worker, { t: 'admitted', id: message.id, admission: options.limits.admit(message.key, message.estimate) });
          break;
        case 'record':
          options.limits.record(message.key, message.tokens, message.reserved);
          break;
        case 'ready':
          ready.add(worker);
          failedStarts = 0;
          break;
        case 'listen-failed':
          // Every worker would say the same: the first says it, and the instance stops.
          if (!started && !stopping) {
            process.stderr.write(`llm-gateway: ${message.message}\n`);
            stop('startup failure', 1, true);
          }
          break;
        case 'log': {
          const batch: RenderedBatch = {};
          for (const [format, text] of Object.entries(message.batch) as Array<[LogFormat, string]>) batch[format] = Buffer.from(text);
          for (const sink of sinks) sink.write(batch);
          break;
        }
        case 'scrape':
          latest.set(worker.id, message.snapshot);
          void gather(worker, message.snapshot).then((text) => send(worker, { t: 'metrics', id: message.id, text }));
          break;
        case 'snapshot': {
          latest.set(worker.id, message.snapshot);
          const scrape = message.id === null ? undefined : scrapes.get(message.id);
          if (scrape === undefined) break;
          scrape.fresh.set(worker.id, message.snapshot);
          scrape.waiting.delete(worker.id);
          if (scrape.waiting.size === 0) scrape.done();
          break;
        }
      }
    });
    return worker;
  };

  cluster.on('exit', (worker, code, signal) => {
    const last = latest.get(worker.id);
    if (last !== undefined) retired = mergeSnapshots([retired, withoutGauges(last)]);
    latest.delete(worker.id);
    for (const scrape of scrapes.values()) {
      scrape.waiting.delete(worker.id);
      if (scrape.waiting.size === 0) scrape.done();
    }
    if (stopping) return;
    if (!started && !ready.has(worker)) {
      // An initial worker that cannot even listen (port in use, …): forking again would loop forever.
      warn(`a worker failed to start (exit ${code ?? signal}); stopping`);
      stop('startup failure', 1);
      return;
    }
    // Later deaths are replaced, with a growing pause if replacements keep dying before they listen.
    if (!ready.has(worker)) failedStarts++;
    const delay = failedStarts === 0 ? 0 : Math.min(30_000, 500 * 2 ** (failedStarts - 1));
    warn(`worker ${worker.process.pid ?? '?'} died (${signal ?? `exit ${code}`}); starting a replacement${delay > 0 ? ` in ${delay} ms` : ''}`);
    setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  });

  const reload = async (why: string): Promise<void> => {
    // The primary validates once and reports once; workers get the very text it accepted.
    try {
      const loaded = await loadKeyFileText(config.keysFile, registry);
      if (why === 'file changed' && loaded.text === keysText) return;
      keysText = loaded.text;
      virtualKeys = loaded.keys.length;
      metrics.keyReload('ok');
      warn(`keys reloaded (${why}): ${virtualKeys} virtual key${virtualKeys === 1 ? '' : 's'} in use by ${workers().length} workers`);
      for (const warning of keyWarnings(loaded.keys)) warn(warning);
      for (const worker of workers()) send(worker, { t: 'keys', text: keysText });
    } catch (err) {
      metrics.keyReload('error');
      warn(`keys NOT reloaded (${why}); workers keep the previous keys:\n${err instanceof KeyFileError ? err.message : (err as Error).message}`);
    }
  };

  const stop = (signal: string, exitCode = 0, quiet = false): void => {
    if (stopping) return;
    stopping = true;
    if (!quiet) warn(`${signal}: stopping ${workers().length} workers`);
    for (const worker of workers()) worker.process.kill('SIGTERM');
    // Workers finish their requests (within GATEWAY_SHUTDOWN_TIMEOUT_MS) and flush their entries to us.
    const hardStop = setTimeout(() => {
      for (const worker of workers()) worker.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs + 15_000);
    hardStop.unref();
    const check = (): void => {
      if (workers().length > 0) return;
      const closing = Promise.all([...sinks.map((sink) => sink.close()), options.budgets.save()]);
      void Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 10_000))]).then(() => process.exit(exitCode));
    };
    cluster.on('exit', check);
    check();
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    for (const sink of sinks) sink.reopen?.();
    void reload('SIGHUP');
  });
  if (config.keysWatch) watchKeysFile(config.keysFile, () => void reload('file changed'));

  for (let i = 0; i < config.workers; i++) fork();
  // Report the address once, when the first worker listens; the start is over when all have.
  await new Promise<void>((resolve) => {
    let listening = 0;
    const onMessage = (_worker: Worker, message: unknown): void => {
      if (!isMessage<ToPrimary>(message) || message.t !== 'ready') return;
      if (++listening === 1) {
        warn(`listening on http://${message.address} with ${virtualKeys} virtual key${virtualKeys === 1 ? '' : 's'} (${config.workers} workers); log file: ${config.logFile ?? 'off'}`);
      }
      if (listening === config.workers) {
        started = true;
        cluster.off('message', onMessage);
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

  constructor(readonly formats: readonly LogFormat[]) {}

  write(batch: RenderedBatch): void {
    if (process.send === undefined || !process.connected) {
      this.failures++;
      return;
    }
    const texts: Partial<Record<LogFormat, string>> = {};
    for (const format of this.formats) texts[format] = batch[format]?.toString();
    this.sending++;
    process.send({ t: 'log', batch: texts } satisfies ToPrimary, undefined, undefined, (err) => {
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

function send(message: ToPrimary): void {
  if (process.connected) process.send?.(message);
}

/** How long a worker waits for the primary's limits decision before letting the request through. */
const ADMIT_TIMEOUT_MS = 2000;

/** A limits check sent to the primary; `settle` is null once its timer let the request through. */
interface PendingCheck {
  readonly id: number;
  settle: ((admission: Admission) => void) | null;
}

/** Limits decided by the primary: one decision for the whole instance. */
function primaryLimiter(): { limiter: Limiter; answered: (id: number, admission: Admission) => void } {
  let nextId = 1;
  // The primary answers each worker's checks in the order they were sent (it decides each one as it
  // arrives), so the checks waiting form a queue. Not a Map: one entry added and removed per
  // request makes V8 replace its table every few requests, and the chain of replaced tables keeps
  // the requests they held alive into the old generation (see slot-list.ts).
  const pending: PendingCheck[] = [];
  return {
    limiter: {
      admit: (key, estimate) =>
        new Promise((resolve) => {
          const entry: PendingCheck = { id: nextId++, settle: null };
          // A primary that does not answer must not stop all traffic: the request goes through.
          const timer = setTimeout(() => {
            entry.settle = null; // its answer, if it ever comes, is dropped
            warn('the primary did not answer a limits check in time; the request was let through');
            resolve({ error: null, headers: {} });
          }, ADMIT_TIMEOUT_MS);
          entry.settle = (admission) => {
            clearTimeout(timer);
            resolve(admission);
          };
          pending.push(entry);
          send({ t: 'admit', id: entry.id, key, estimate });
        }),
      record: (key, tokens, reserved) => send({ t: 'record', key, tokens, reserved }),
    },
    answered: (id, admission) => {
      // Answers come in order; a check passed over (it cannot happen over IPC) is dropped, and its
      // timer lets it through.
      while (pending.length > 0 && (pending[0] as PendingCheck).id < id) pending.shift();
      if (pending[0]?.id === id) pending.shift()?.settle?.(admission);
    },
  };
}

/** A worker: one instance whose keys come from the primary, whose log goes to it, and whose /metrics asks it. */
export async function runWorker(config: Config, registry: Registry): Promise<void> {
  let nextId = 1;
  const waiting = new Map<number, (text: string) => void>();
  const limits = primaryLimiter();
  let instance: ReturnType<typeof createInstance> | null = null;

  // The first keys arrive as the answer to 'hello'; later ones are reloads.
  const firstKeys = new Promise<string>((resolve) => {
    process.on('message', (message: unknown) => {
      if (!isMessage<ToWorker>(message)) return;
      if (message.t === 'keys') {
        if (instance === null) resolve(message.text);
        else instance.useKeys(parseKeyFile(message.text, config.keysFile, registry));
      } else if (message.t === 'snapshot' && instance !== null) {
        send({ t: 'snapshot', id: message.id, snapshot: instance.snapshot() });
      } else if (message.t === 'metrics') {
        waiting.get(message.id)?.(message.text);
        waiting.delete(message.id);
      } else if (message.t === 'admitted') {
        limits.answered(message.id, message.admission);
      }
    });
  });
  send({ t: 'hello' });
  const keys = parseKeyFile(await firstKeys, config.keysFile, registry);

  const created = createInstance({
    config,
    registry,
    keys,
    sinks: [new PrimarySink(formatsFor(config))],
    limiter: limits.limiter,
    reportsKeyCount: false,
    gatherMetrics: (local) =>
      new Promise((resolve) => {
        const id = nextId++;
        // If the primary does not answer, this worker's own numbers are better than a hung scrape.
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve(renderPrometheus(local));
        }, SNAPSHOT_TIMEOUT_MS * 3);
        waiting.set(id, (text) => {
          clearTimeout(timer);
          resolve(text);
        });
        send({ t: 'scrape', id, snapshot: local });
      }),
  });
  instance = created;
  setInterval(() => send({ t: 'snapshot', id: null, snapshot: created.snapshot() }), SNAPSHOT_PUSH_MS).unref();

  let listening = false;
  const stop = (signal: string): void => {
    // Stopped before it served (another worker could not listen): nothing to drain or report.
    if (!listening) process.exit(0);
    void created.shutdown(signal).then(() => {
      // Final counters, so the instance's totals keep this worker's requests.
      if (!process.connected || process.send === undefined) process.exit(0);
      process.send({ t: 'snapshot', id: null, snapshot: created.snapshot() } satisfies ToPrimary, undefined, undefined, () => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary coordinates reloads; a SIGHUP sent to the whole process group must not kill a worker.
  process.on('SIGHUP', () => {});

  let address: string;
  try {
    address = await created.listen();
  } catch (err) {
    // The primary prints it once for all workers; the instance does not start.
    if (process.connected) process.send?.({ t: 'listen-failed', message: listenFailure(config, err) } satisfies ToPrimary, undefined, undefined, () => process.exit(1));
    else process.exit(1);
    return;
  }
  listening = true;
  send({ t: 'ready', address });
}

export const isPrimary = (): boolean => cluster.isPrimary;
