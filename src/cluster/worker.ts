/**
 * A cluster worker: one instance whose keys come from the primary, whose log goes to it, whose
 * limits it decides, and whose /metrics asks it for the whole instance's.
 */
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { GatewayError } from '../errors.js';
import { createInstance, listenFailure } from '../instance.js';
import { doneWithin, formatsFor } from '../observe/log-sinks.js';
import { endOnUncaught } from '../observe/crash.js';
import { Metrics } from '../observe/metrics.js';
import { RELEASE_WITHIN_MS, shareLimits, type SharedLimiter } from '../policy/shared-limits.js';
import { warn } from '../observe/warn.js';
import { KeyFile } from '../policy/key-file.js';
import { limitsOf, type Admission, type KeyLimits, type KeyReport, type Limiter } from '../policy/limits.js';
import type { VirtualKey } from '../policy/keys.js';
import type { Registry } from '../providers/index.js';
import { PipeSink, pipeIndex } from './log-pipe.js';
import { isMessage, SNAPSHOT_PUSH_MS, SYNC_TIMEOUT_MS, type SpendRecord, type ToPrimary, type ToWorker } from './messages.js';
import { Queue } from '../queue.js';

/**
 * Hands a message to the IPC channel; false when there is none (the primary is gone). `sent` is
 * called once the message is written, or could not be.
 */
const sendToPrimary = (message: ToPrimary, sent: (err: Error | null) => void): boolean => {
  if (process.send === undefined || !process.connected) return false;
  // `sent` is called once: with an error when the channel is closed or the write fails at once;
  // a write that fails later (the primary gone mid-write) is not told apart by Node.
  process.send(message, undefined, undefined, sent);
  return true;
};

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
function primaryLimiter(): { limiter: Limiter; answered: (id: number, admission: Admission) => void; reported: (id: number, report: KeyReport) => void; flush: () => void } {
  let nextId = 1;
  // The spend of a key without limits (it only feeds /v1/usage) goes to the primary once per turn
  // of the event loop, in one message: one message each, the writes and wake-ups took a third of
  // two workers' small requests (docs/performance.md). A request the primary admitted settles
  // its hold at once, as its check was sent: every worker's next check sees it, as the client does.
  // Gathered ones go first, so the primary counts this worker's requests in order.
  let records: SpendRecord[] = [];
  let queued: NodeJS.Immediate | null = null;
  const flush = (): void => {
    if (queued !== null) clearImmediate(queued);
    queued = null;
    if (records.length === 0) return;
    send({ t: 'records', records });
    records = [];
  };
  /** Usage reports asked of the primary (a few, by key holders): by id. */
  const reports = new Map<number, (report: KeyReport | null) => void>();
  // The primary answers each worker's checks in the order they were sent (it decides each one as it
  // arrives), so the checks waiting form a queue. Not a Map: one entry added and removed per
  // request makes V8 replace its table every few requests, and the chain of replaced tables keeps
  // the requests they held alive into the old generation (see slot-list.ts).
  const pending = new Queue<PendingCheck>();
  /** Checks the primary did not answer in time since it last did (null: it answers): said once per streak, not per request. */
  let letThrough: number | null = null;
  return {
    limiter: {
      // The admission names the request (its ticket), so that its record can tell the primary which
      // reservation it settles: the primary gives back those of a worker that dies before settling.
      admit: (key, estimate, request) =>
        new Promise((resolve) => {
          const entry: PendingCheck = { id: nextId++, settle: null };
          // A primary that does not answer must not stop all traffic: the request goes through.
          const timer = setTimeout(() => {
            entry.settle = null; // its answer, if it ever comes, is dropped
            if (letThrough === null) warn(`the primary did not answer a limits check within ${ADMIT_TIMEOUT_MS / 1000} s; requests are let through unchecked until it does`);
            letThrough = (letThrough ?? 0) + 1;
            resolve({ error: null, headers: {}, ticket: request });
          }, ADMIT_TIMEOUT_MS);
          entry.settle = (admission) => {
            clearTimeout(timer);
            if (letThrough !== null) warn(`the primary answers limits checks again; ${letThrough} request${letThrough === 1 ? ' was' : 's were'} let through unchecked meanwhile`);
            letThrough = null;
            resolve(admission.error === null ? { ...admission, ticket: request } : admission);
          };
          pending.push(entry);
          flush();
          send({ t: 'admit', id: entry.id, key, estimate, request });
        }),
      record: (key, spent, reserved) => {
        records.push({ key, spent, reserved: reserved.charge, request: reserved.ticket });
        if (reserved.ticket !== null) flush();
        else queued ??= setImmediate(flush);
      },
      report: (key) =>
        new Promise((resolve, reject) => {
          const id = nextId++;
          const timer = setTimeout(() => reports.get(id)?.(null), ADMIT_TIMEOUT_MS);
          reports.set(id, (report) => {
            clearTimeout(timer);
            reports.delete(id);
            if (report === null) reject(new GatewayError(503, 'The usage of this virtual key could not be read in time; try again.', { code: 'usage_unavailable' }));
            else resolve(report);
          });
          flush();
          send({ t: 'report', id, key });
        }),
    },
    reported: (id, report) => reports.get(id)?.(report),
    flush,
    answered: (id, admission) => {
      // Answers come in order; a check passed over (it cannot happen over IPC) is dropped, and its
      // timer lets it through.
      while (pending.length > 0 && (pending.peek() as PendingCheck).id < id) pending.shift();
      if (pending.peek()?.id === id) pending.shift()?.settle?.(admission);
    },
  };
}

/** A dead worker's release that failed (Redis away) is tried again this often, for up to RELEASE_WITHIN_MS. */
const RELEASE_RETRY_MS = 5000;
/** How long a stopping worker's release of a dead worker's reservations may still take. */
const RELEASE_AT_STOP_MS = 2000;

/** The limits of the keys that have any. */
function withLimits(keys: readonly VirtualKey[]): KeyLimits[] {
  return keys.filter((key) => key.rateLimit !== null || key.budget !== null).map(limitsOf);
}

/** The keys file's text and PRICES_FILE's, as the primary sends them. */
type KeysText = { readonly text: string; readonly prices: string | null };

/** A worker: one instance whose keys come from the primary, whose log goes to it, and whose /metrics asks it. */
export async function runWorker(config: Config, registry: Registry): Promise<void> {
  // A message that cannot be written (ours, or Node's own acknowledgement of a connection handed
  // over) is an 'error' on the process, which node:cluster passes to its worker object: unheard
  // there, an uncaught one. A primary killed outright makes every write fail until the channel's
  // end is read, when Node ends the worker.
  cluster.worker?.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_IPC_CHANNEL_CLOSED' && err.code !== 'ECONNRESET') warn(`the channel to the primary process: ${err.message}`);
  });
  // Keys arrive as text the primary has validated; this parses them the same way.
  const keyFile = new KeyFile(config.keysFile, registry, config.pricesFile, '', null, 0);
  let nextId = 1;
  const waiting = new Map<number, (text: string) => void>();
  /** Item syncs waiting for the primary's answer, by id. */
  const syncs = new Map<number, () => void>();
  let syncCount = 0;
  const limits = primaryLimiter();
  let instance: ReturnType<typeof createInstance> | null = null;
  /** The keys with limits, as last loaded: what a dead worker's reservations can be held against. */
  let limited: KeyLimits[] = [];
  /** Set once Redis is set up (the primary asks only a worker that listens). */
  let releaseOwners = (_owners: readonly string[]): void => {};

  /**
   * The spend records still gathered, then the final counters (so the instance's totals keep this
   * worker's requests): sent after the records, the snapshot's callback says they are written too.
   */
  const lastReport = (): Promise<void> => {
    limits.flush();
    return new Promise<void>((resolve) => {
      if (instance === null || !sendToPrimary({ t: 'snapshot', id: null, snapshot: instance.snapshot() }, () => resolve())) resolve();
    });
  };
  // A bug that escaped: this worker's pending entries and spend reach the primary before it ends.
  endOnUncaught(
    (deadlineMs) => instance?.log.close(deadlineMs) ?? Promise.resolve(true),
    lastReport,
    () => {
      instance?.server.drain();
      instance?.server.http.close();
    },
  );

  /** The last keys the primary sent before the instance was made: a reload may follow the first at once. */
  let latestKeys: KeysText | null = null;
  const useKeys = (target: NonNullable<typeof instance>, text: KeysText): void => {
    const loaded = keyFile.parse(text.text, text.prices);
    limited = withLimits(loaded.keys);
    target.useKeys(loaded);
  };
  /** What the primary's stop does: before this worker serves, it only ends it. */
  let onStop = (_signal: string): void => process.exit(0);
  // SIGTERM, SIGINT and SIGHUP are ignored here from the start (worker-entry.ts): the primary's to take.

  // The first keys arrive as the answer to 'hello'; later ones are reloads.
  const firstKeys = new Promise<KeysText>((resolve) => {
    process.on('message', (message: unknown) => {
      if (!isMessage<ToWorker>(message)) return;
      if (message.t === 'keys') {
        if (instance === null) {
          latestKeys = message;
          resolve(message);
        } else useKeys(instance, message);
      } else if (message.t === 'stop') {
        onStop(message.signal);
      } else if (message.t === 'snapshot' && instance !== null) {
        send({ t: 'snapshot', id: message.id, snapshot: instance.snapshot() });
      } else if (message.t === 'metrics') {
        waiting.get(message.id)?.(message.text);
        waiting.delete(message.id);
      } else if (message.t === 'admitted') {
        limits.answered(message.id, message.admission);
      } else if (message.t === 'reported') {
        limits.reported(message.id, message.report);
      } else if (message.t === 'release') {
        releaseOwners(message.owners);
      } else if (message.t === 'items' && instance !== null) {
        for (const id of message.ids) instance.items.add(message.storage, id, message.tag);
      } else if (message.t === 'synced') {
        syncs.get(message.id)?.();
        syncs.delete(message.id);
      }
    });
  });
  // This worker's mark on its reservations in Redis: should it die, another releases them.
  const owner = randomBytes(6).toString('hex');
  send({ t: 'hello', owner });
  const first = await firstKeys;
  const { keys, prices } = keyFile.parse(first.text, first.prices);
  limited = withLimits(keys);

  // With Redis, each worker asks it directly; the primary's limits decide while Redis cannot.
  const metrics = new Metrics();
  const shared = config.redis === null ? null : shareLimits({ ...config.redis, local: limits.limiter, metrics, seedFrom: null, owner });
  // Dead workers' marks still to release: one pass at a time, one key at a time (a burst of scripts
  // on the connection admissions use would hold them up), tried again every 5 s while Redis fails.
  const toRelease = new Set<string>();
  /** The pass under way (null: none). */
  let releasing: Promise<void> | null = null;
  /** Set once this worker stops: a pass then makes one last try, never a wait for the next. */
  let stopping = false;
  const releaseAll = async (limiter: SharedLimiter): Promise<void> => {
    const giveUpAt = Date.now() + RELEASE_WITHIN_MS;
    try {
      while (toRelease.size > 0) {
        const owners = [...toRelease];
        let released = 0;
        let failure: unknown = null;
        for (const key of limited) {
          try {
            released += await limiter.releaseOwners(owners, key);
          } catch (err) {
            failure = err;
            break;
          }
        }
        if (released > 0) warn(`released ${released} reservation${released === 1 ? '' : 's'} in Redis of a worker that died (each counted as a request of unknown usage)`);
        if (failure === null) {
          for (const owner of owners) toRelease.delete(owner);
          send({ t: 'released', owners });
        } else if (stopping || Date.now() > giveUpAt) {
          warn(`the reservations in Redis of a worker that died could not be released (${failure instanceof Error ? failure.message : String(failure)}); they stop holding within REDIS_HOLD_MS (${Math.round((config.redis?.holdMs ?? 0) / 1000)} s), and their requests are not counted`);
          toRelease.clear();
        } else {
          await new Promise((resolve) => setTimeout(resolve, RELEASE_RETRY_MS).unref());
        }
      }
    } finally {
      releasing = null;
    }
  };
  releaseOwners = (owners) => {
    if (shared === null) return;
    for (const dead of owners) toRelease.add(dead);
    releasing ??= releaseAll(shared);
  };
  /**
   * Before a stop closes the connection to Redis, the release under way (the primary asks for one
   * at each death, so a stop right after a death finds it running) gets up to RELEASE_AT_STOP_MS:
   * cut short, the dead worker's holds would keep the budget from every instance until their holds end.
   */
  const released = async (): Promise<void> => {
    stopping = true;
    if (releasing !== null) await doneWithin(releasing, RELEASE_AT_STOP_MS);
  };
  const created = createInstance({
    config,
    keys,
    prices,
    keyFile: null,
    speaker: `worker ${process.pid}`,
    sinks: formatsFor(config).map((format, i) => new PipeSink(format, pipeIndex(i))),
    limiter: shared ?? limits.limiter,
    metrics,
    shared,
    beforeClosingRedis: released,
    reportsKeyCount: false,
    gatherMetrics: (local, waitMs) =>
      new Promise((resolve) => {
        const id = nextId++;
        // If the primary does not answer, the scrape fails: this worker's numbers alone, read as
        // the instance's, would look like counters reset (and jump back at the next scrape).
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve(null);
        }, waitMs);
        waiting.set(id, (text) => {
          clearTimeout(timer);
          resolve(text);
        });
        send({ t: 'scrape', id, snapshot: local });
      }),
  });
  // A client's next request (a Vercel AI SDK turn naming its items) may reach another worker,
  // sometimes before the items: a reference not known here waits for the primary to pass on what
  // it has (a second at most) before it is refused.
  created.items.onAdded = (storage, ids, tag) => send({ t: 'items', storage, ids, tag });
  created.items.catchUp = () =>
    new Promise<void>((resolve) => {
      const id = ++syncCount;
      const timer = setTimeout(() => {
        syncs.delete(id);
        resolve();
      }, SYNC_TIMEOUT_MS);
      syncs.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      send({ t: 'sync', id });
    });
  instance = created;
  // A reload that came while the instance was being made (the first keys are older than it).
  if (latestKeys !== null && latestKeys !== first) useKeys(created, latestKeys);
  setInterval(() => send({ t: 'snapshot', id: null, snapshot: created.snapshot() }), SNAPSHOT_PUSH_MS).unref();

  let listening = false;
  const stop = (signal: string): void => {
    // Stopped before it served (another worker could not listen): nothing to drain or report.
    if (!listening) process.exit(0);
    void created.shutdown(signal).then(() => {
      setTimeout(() => process.exit(0), 1000).unref();
      void lastReport().then(() => process.exit(0));
    });
  };
  onStop = stop;

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
