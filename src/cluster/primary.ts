/**
 * The cluster primary: it serves no request. It owns the log destinations (workers send it
 * rendered entries on pipes of their own, and entries from different workers never interleave),
 * holds the keys (it validates the file and hands workers the text it accepted), decides every key's limits,
 * answers /metrics for the whole instance, relays SIGTERM/SIGINT/SIGHUP to every worker, and
 * replaces a worker that dies.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.js';
import { usableCores } from '../cores.js';
import { limitsShown } from '../redis/url.js';
import type { Readable } from 'node:stream';
import type { LogFormat } from '../observe/log-render.js';
import { closeSinks, doneWithin, endProcess, FLUSH_DEADLINE_MS, formatsFor, logFileShown, NOTHING_HELD, savedAtExit, type LogSink } from '../observe/log-sinks.js';
import { Metrics } from '../observe/metrics.js';
import { RELEASE_WITHIN_MS } from '../policy/shared-limits.js';
import { warn } from '../observe/warn.js';
import { watchKeyFiles, type KeyFile } from '../policy/key-file.js';
import { NO_CHARGE, type Charge, type KeyLimits, type LimitState, type Spend } from '../policy/limits.js';
import type { SpendStore } from '../policy/spend-store.js';
import { InstanceMetrics } from './instance-metrics.js';
import { FrameReader, pipeIndex, workerStdio } from './log-pipe.js';
import { isMessage, type ToPrimary, type ToWorker } from './messages.js';

export interface PrimaryOptions {
  readonly config: Config;
  readonly keyFile: KeyFile;
  readonly keyCount: number;
  readonly sinks: LogSink[];
  /** The authority over every key's rate limits, budgets and spend, for all workers. */
  readonly limits: LimitState;
  readonly spend: SpendStore;
}

/** A request that died with its worker: its usage is unknown. */
const UNKNOWN_SPEND: Spend = { tokens: 0, usd: 0, usage: null, unpriced: false };

/** How many dead workers are remembered (for RELEASE_WITHIN_MS, while their reservations in Redis are released and counted). */
const MAX_DEAD_OWNERS = 64;

/** The longest pause before replacing a worker whose predecessors keep dying before they listen. */
const MAX_RESTART_DELAY_MS = 30_000;

class Primary {
  private readonly metrics = new Metrics();
  private readonly instanceMetrics: InstanceMetrics;
  private virtualKeys: number;
  /** Once stopping: what for (the signal), as workers are told it. */
  private stopping: string | null = null;
  /** Every initial worker has listened once. */
  private started = false;
  /** Replacements in a row that died before they listened. */
  private failedStarts = 0;
  private readonly ready = new WeakSet<Worker>();
  /**
   * What each worker's admitted requests hold against their keys' limits, by request id, until
   * their record comes: a worker that dies never sends it, and its holds are given back then.
   */
  private readonly holds = new Map<number, Map<string, { key: KeyLimits; estimate: Charge }>>();
  /** Each worker's mark on its reservations in Redis (its hello says it). */
  private readonly owners = new Map<number, string>();
  /**
   * The marks of workers that died within RELEASE_WITHIN_MS (an hour), the window in which their
   * reservations in Redis are released and counted: told to a live
   * worker at each death and to each worker that starts listening (a worker told may die before it
   * releases them; a release asked twice finds nothing the second time).
   */
  private deadOwners: Array<{ owner: string; diedAt: number }> = [];
  /** Workers' log pipes not yet read to their end: the log is closed only after the last. */
  private openPipes = 0;
  /** Entries lost in a pipe (a frame a worker died while writing), once per destination that would have had them. */
  private lostInPipes = 0;
  /** Called when the last open pipe ends (a stop waits for it). */
  private pipesEnded: () => void = () => {};

  constructor(private readonly options: PrimaryOptions) {
    this.virtualKeys = options.keyCount;
    this.instanceMetrics = new InstanceMetrics(() =>
      this.metrics.snapshot({ gauges: { llm_gateway_virtual_keys: this.virtualKeys }, counters: { llm_gateway_log_write_failures_total: this.logFailures() } }),
    );
  }

  async run(): Promise<void> {
    const { config } = this.options;
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    process.on('SIGTERM', () => this.signalled('SIGTERM'));
    process.on('SIGINT', () => this.signalled('SIGINT'));
    process.on('SIGHUP', () => {
      for (const sink of this.options.sinks) sink.reopen?.();
      void this.reload('SIGHUP', false);
    });
    if (config.keysWatch) {
      watchKeyFiles(config.pricesFile === null ? [config.keysFile] : [config.keysFile, config.pricesFile], () => void this.reload('file changed', true));
    }
    // Each starts at worker-entry.js, which ignores the signals the primary takes before anything
    // loads; its log entries come on pipes after the IPC channel (log-pipe.ts). Messages are
    // structured clones: a counter JSON cannot write (Infinity, NaN) arrives as it was.
    cluster.setupPrimary({ serialization: 'advanced', stdio: workerStdio(formatsFor(config)), exec: fileURLToPath(new URL('./worker-entry.js', import.meta.url)) });
    for (let i = 0; i < config.workers; i++) this.fork();
    await this.listening();
  }

  private workers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
  }

  private send(worker: Worker, message: ToWorker): void {
    if (worker.isConnected()) worker.send(message);
  }

  private logFailures(): number {
    return this.options.sinks.reduce((sum, sink) => sum + sink.failures, this.lostInPipes);
  }

  private fork(): void {
    const worker = cluster.fork();
    formatsFor(this.options.config).forEach((format, i) => this.readLog(worker.process.stdio[pipeIndex(i)] as Readable | null, format));
    worker.on('message', (message: unknown) => {
      if (isMessage<ToPrimary>(message)) this.received(worker, message);
    });
    // Node itself writes to a worker (its answer to a listen request, say), and a worker that has
    // already exited makes that write fail: unhandled, the error would crash the primary. The
    // worker's exit is handled on 'exit'; anything else is worth a line.
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ERR_IPC_CHANNEL_CLOSED' && this.stopping === null) warn(`worker ${worker.process.pid ?? '?'}: ${err.message}`);
    });
  }

  private received(worker: Worker, message: ToPrimary): void {
    const { limits } = this.options;
    switch (message.t) {
      case 'hello':
        if (typeof message.owner === 'string') this.owners.set(worker.id, message.owner);
        // Stopping already: a worker that was still starting missed the stop (sent before it listened for messages).
        if (this.stopping !== null) return this.send(worker, { t: 'stop', signal: this.stopping });
        return this.send(worker, { t: 'keys', text: this.options.keyFile.text, prices: this.options.keyFile.pricesText });
      case 'admit': {
        const admission = limits.admit(message.key, message.estimate);
        if (admission.error === null) this.holdsOf(worker).set(message.request, { key: message.key, estimate: message.estimate });
        return this.send(worker, { t: 'admitted', id: message.id, admission });
      }
      case 'records': {
        const holds = this.holds.get(worker.id);
        for (const record of message.records) {
          // What it gives back is what the primary holds for it: nothing for a request it never
          // admitted (the worker let it through when the primary's answer was late, and the answer
          // was a refusal).
          const held = record.request === null || holds?.delete(record.request) === true;
          limits.record(record.key, record.spent, held ? record.reserved : NO_CHARGE);
        }
        return;
      }
      case 'report':
        return this.send(worker, { t: 'reported', id: message.id, report: limits.report(message.key) });
      case 'ready':
        this.ready.add(worker);
        this.failedStarts = 0;
        this.releaseDeadOwners();
        return;
      case 'listen-failed':
        // Every worker would say the same: the first says it, and the instance stops.
        if (!this.started && this.stopping === null) {
          process.stderr.write(`llm-gateway: ${message.message}\n`);
          this.stop('startup failure', 1, true);
        }
        return;
      case 'scrape': {
        const live = (): number[] => this.workers().map((each) => each.id);
        const ask = (id: number, scrape: number): void => {
          const each = cluster.workers?.[id];
          if (each !== undefined) this.send(each, { t: 'snapshot', id: scrape });
        };
        void this.instanceMetrics.gather(worker.id, message.snapshot, live, ask).then((text) => this.send(worker, { t: 'metrics', id: message.id, text }));
        return;
      }
      case 'snapshot':
        return this.instanceMetrics.received(worker.id, message.id, message.snapshot);
      case 'released': {
        const released = new Set(message.owners);
        this.deadOwners = this.deadOwners.filter((dead) => !released.has(dead.owner));
        return;
      }
      case 'items':
        for (const other of this.workers()) if (other !== worker && this.ready.has(other)) this.send(other, message);
        return;
      case 'sync':
        // Answered in the loop's next turn: by then every worker's message that was waiting when
        // this one came (the items of an answer its client has already read) has been read and
        // passed on, ahead of the answer on this worker's channel.
        setImmediate(() => this.send(worker, { t: 'synced', id: message.id }));
        return;
    }
  }

  /** Passes a worker's entries of one format to the destinations, whole frames at a time, until its pipe ends. */
  private readLog(pipe: Readable | null, format: LogFormat): void {
    if (pipe === null) return;
    const reader = new FrameReader();
    this.openPipes++;
    pipe.on('data', (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        const batch = { entries: frame.entries, text: { [format]: frame.pieces }, heldBytes: 0, done: NOTHING_HELD };
        for (const sink of this.options.sinks) sink.write(batch);
      }
    });
    // A worker killed outright: its pipe ends (or resets) after what it wrote.
    pipe.on('error', () => {});
    pipe.once('close', () => {
      // Lost to every destination of its format, each of which counts its own losses.
      this.lostInPipes += reader.unfinished * this.options.sinks.filter((sink) => sink.formats.includes(format)).length;
      if (--this.openPipes === 0) this.pipesEnded();
    });
  }

  private holdsOf(worker: Worker): Map<string, { key: KeyLimits; estimate: Charge }> {
    let holds = this.holds.get(worker.id);
    if (holds === undefined) this.holds.set(worker.id, (holds = new Map()));
    return holds;
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    this.instanceMetrics.retire(worker.id);
    // Its requests in flight died with it: each counts as a request of no known usage, and what it
    // held goes back (held on, it would keep the key's budget or rate from every later request).
    for (const { key, estimate } of this.holds.get(worker.id)?.values() ?? []) this.options.limits.record(key, UNKNOWN_SPEND, estimate);
    this.holds.delete(worker.id);
    // What it held in Redis (its own admissions there) is released by a worker that lives.
    const owner = this.owners.get(worker.id);
    this.owners.delete(worker.id);
    if (owner !== undefined && this.options.config.redis !== null) {
      this.deadOwners.push({ owner, diedAt: Date.now() });
      this.releaseDeadOwners();
    }
    if (this.stopping !== null) return;
    if (!this.started && !this.ready.has(worker)) {
      // An initial worker that cannot even listen: forking again would loop forever.
      warn(`a worker failed to start (exit ${code ?? signal}); stopping`);
      this.stop('startup failure', 1);
      return;
    }
    // Later deaths are replaced, with a growing pause if replacements keep dying before they listen.
    if (!this.ready.has(worker)) this.failedStarts++;
    const delay = this.failedStarts === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** (this.failedStarts - 1));
    warn(`worker ${worker.process.pid ?? '?'} died (${signal ?? `exit ${code}`}); starting a replacement${delay > 0 ? ` in ${delay} ms` : ''}`);
    setTimeout(() => {
      if (this.stopping === null) this.fork();
    }, delay);
  }

  /** Tells a live worker that has listened to release the reservations of workers that died (none live: the next that listens). */
  private releaseDeadOwners(): void {
    const since = Date.now() - RELEASE_WITHIN_MS;
    this.deadOwners = this.deadOwners.filter((dead) => dead.diedAt > since).slice(-MAX_DEAD_OWNERS);
    if (this.deadOwners.length === 0) return;
    const live = this.workers().find((worker) => this.ready.has(worker) && !worker.isDead() && worker.isConnected());
    if (live !== undefined) this.send(live, { t: 'release', owners: this.deadOwners.map((dead) => dead.owner) });
  }

  /** The primary validates once and reports once; workers get the very text it accepted. */
  private async reload(why: string, onlyIfChanged: boolean): Promise<void> {
    const result = await this.options.keyFile.reload(why, { onlyIfChanged, where: `by ${this.workers().length} workers` });
    if (result.outcome === 'unchanged') return;
    this.metrics.keyReload(result.outcome === 'reloaded' ? 'ok' : 'error');
    if (result.outcome !== 'reloaded') return;
    this.virtualKeys = result.keys.length;
    for (const worker of this.workers()) this.send(worker, { t: 'keys', text: result.text, prices: result.pricesText });
  }

  /** A stop, or a second signal during one: the workers then end the requests they still serve now. */
  private signalled(signal: NodeJS.Signals): void {
    if (this.stopping === null) return this.stop(signal);
    for (const worker of this.workers()) this.send(worker, { t: 'stop', signal });
  }

  private stop(signal: string, exitCode = 0, quiet = false): void {
    if (this.stopping !== null) return;
    this.stopping = signal;
    const { config, sinks, spend } = this.options;
    if (!quiet) warn(`${signal}: stopping ${this.workers().length} workers`);
    // Workers finish their requests (within GATEWAY_SHUTDOWN_TIMEOUT_MS) and flush their entries to us.
    for (const worker of this.workers()) this.send(worker, { t: 'stop', signal });
    // Past the drain, a worker waits for Redis to answer its last settlements (10 × REDIS_TIMEOUT_MS).
    const settling = config.redis === null ? 0 : config.redis.timeoutMs * 10;
    const hardStop = setTimeout(() => {
      const left = this.workers();
      if (left.length > 0) warn(`${left.length} worker(s) still running ${config.shutdownTimeoutMs + settling + 15_000} ms after the stop: killed (SIGKILL)`);
      for (const worker of left) worker.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs + settling + 15_000);
    hardStop.unref();
    let closing = false;
    const check = (): void => {
      if (closing || this.workers().length > 0) return;
      closing = true;
      // What the workers wrote before they ended is read first (a pipe ends at once after it),
      // within the one FLUSH_DEADLINE_MS the final flush has; a stuck write is then not waited for.
      const deadline = Date.now() + FLUSH_DEADLINE_MS;
      const read = this.openPipes === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.pipesEnded = resolve));
      void doneWithin(read, FLUSH_DEADLINE_MS)
        .then(() => Promise.all([closeSinks(sinks, Math.max(0, deadline - Date.now()), FLUSH_DEADLINE_MS), savedAtExit(spend.save())]))
        .then(([flushed, saved]) => endProcess(exitCode, flushed && saved, signal));
    };
    // Node drops a worker from cluster.workers at the later of its 'exit' and 'disconnect': checked
    // on 'exit' alone, a last worker whose channel closed after it exited was never seen gone, and
    // the primary ran out of work and ended with code 0 before closing the log and saving spend.
    cluster.on('exit', check);
    cluster.on('disconnect', check);
    check();
  }

  /**
   * Reports the address once every initial worker listens: the start is over then (until then, a
   * worker that dies stops the instance, since it may be one that cannot start).
   */
  private listening(): Promise<void> {
    const { config } = this.options;
    return new Promise((resolve) => {
      let count = 0;
      const onMessage = (_worker: Worker, message: unknown): void => {
        if (!isMessage<ToPrimary>(message) || message.t !== 'ready') return;
        if (++count === config.workers) {
          const keys = `${this.virtualKeys} virtual key${this.virtualKeys === 1 ? '' : 's'}`;
          warn(`listening on http://${message.address} with ${keys} (${config.workers} workers); log file: ${logFileShown(config.logFile, this.options.sinks)}; limits ${limitsShown(config.redis?.address ?? null)}`);
          const cores = usableCores();
          if (config.workers > cores) warn(`GATEWAY_WORKERS=${config.workers} on ${cores} core${cores === 1 ? '' : 's'}: workers beyond the cores compete for them and serve less, not more ("auto" starts one per core)`);
          this.started = true;
          cluster.off('message', onMessage);
          resolve();
        }
      };
      cluster.on('message', onMessage);
    });
  }
}

/** Forks `config.workers` workers and coordinates them. */
export function runPrimary(options: PrimaryOptions): Promise<void> {
  return new Primary(options).run();
}
