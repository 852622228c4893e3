/**
 * The whole instance's metrics, in the cluster primary: every worker's counters (fresh when they
 * answer a scrape in time, else the last they sent), those of workers that died (so totals never
 * go down), and the primary's own.
 */
import { mergeSnapshots, renderPrometheus, type MetricsSnapshot } from '../observe/metrics.js';
import { SNAPSHOT_TIMEOUT_MS } from './messages.js';

interface Scrape {
  readonly waiting: Set<number>;
  readonly fresh: Map<number, MetricsSnapshot>;
  done(): void;
}

/** Counters and histograms only: a dead worker's gauges (in flight) no longer hold. */
function withoutGauges(snapshot: MetricsSnapshot): MetricsSnapshot {
  return { counters: snapshot.counters, histograms: snapshot.histograms, gauges: {} };
}

export class InstanceMetrics {
  /** The last counters each live worker sent. */
  private readonly latest = new Map<number, MetricsSnapshot>();
  /** The sum of those of workers that died. */
  private retired: MetricsSnapshot = { counters: {}, histograms: {}, gauges: {} };
  private readonly scrapes = new Map<number, Scrape>();
  /** The series each counter's sum has let in (mergeSnapshots), so one once shown is never folded later. */
  private readonly admitted = new Map<string, Set<string>>();
  private nextId = 1;

  constructor(
    /** The primary's own counters and gauges, at scrape time. */
    private readonly own: () => MetricsSnapshot,
  ) {}

  /**
   * The text for a scrape that `scraped` took (with its `first` counters): asks every other live
   * worker (`ask`) and answers when all have, or after SNAPSHOT_TIMEOUT_MS with what it has.
   */
  gather(scraped: number, first: MetricsSnapshot, live: () => number[], ask: (worker: number, id: number) => void): Promise<string> {
    this.latest.set(scraped, first);
    return new Promise((resolve) => {
      const id = this.nextId++;
      const others = live().filter((worker) => worker !== scraped);
      const scrape: Scrape = {
        waiting: new Set(others),
        fresh: new Map([[scraped, first]]),
        done: () => {
          clearTimeout(timer);
          this.scrapes.delete(id);
          const parts = live()
            .map((worker) => scrape.fresh.get(worker) ?? this.latest.get(worker))
            .filter((part): part is MetricsSnapshot => part !== undefined);
          resolve(renderPrometheus(mergeSnapshots([...parts, this.retired, this.own()], this.admitted)));
        },
      };
      const timer = setTimeout(scrape.done, SNAPSHOT_TIMEOUT_MS);
      this.scrapes.set(id, scrape);
      for (const worker of others) ask(worker, id);
      if (others.length === 0) scrape.done();
    });
  }

  /** A worker sent its counters (`id`: the scrape that asked, or null when it reports on its own). */
  received(worker: number, id: number | null, snapshot: MetricsSnapshot): void {
    this.latest.set(worker, snapshot);
    const scrape = id === null ? undefined : this.scrapes.get(id);
    if (scrape === undefined) return;
    scrape.fresh.set(worker, snapshot);
    this.answered(scrape, worker);
  }

  /** A worker died: its counters are kept, and no scrape waits for it. */
  retire(worker: number): void {
    const last = this.latest.get(worker);
    if (last !== undefined) this.retired = mergeSnapshots([this.retired, withoutGauges(last)], this.admitted);
    this.latest.delete(worker);
    for (const scrape of this.scrapes.values()) this.answered(scrape, worker);
  }

  private answered(scrape: Scrape, worker: number): void {
    scrape.waiting.delete(worker);
    if (scrape.waiting.size === 0) scrape.done();
  }
}
