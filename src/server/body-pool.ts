/**
 * Memory for large request bodies, used again from one request to the next.
 *
 * Why: an agent's body (100 KB–1 MB) lives as long as its request, long enough for V8 to promote
 * its ArrayBuffer; promoted buffers are freed only by full collections, which their external
 * memory then brings on every few dozen requests, and fresh memory costs page faults besides
 * (docs/performance.md). Memory taken here is allocated once and kept.
 *
 * The rule that keeps one client's bytes from reaching another: a body goes back to the pool only
 * when its last holder lets go, and nothing may read its bytes after letting go. Its holders are
 * the request that read it (until its answer is done with it), each upstream write of it (until
 * the socket reports the write finished, or failed), and the log while an entry's pieces view it
 * (until every destination has written the entry's batch, failed to, or dropped it; a worker's
 * one destination per format is its pipe to the primary).
 */

/** Bodies from this size up come from the pool (smaller ones arrive in one piece and are kept as read). */
export const POOLED_MIN_BYTES = 64 * 1024;
/** Larger bodies are rare and allocated as before. */
export const POOLED_MAX_BYTES = 4 * 1024 * 1024;
/** Idle memory the pool keeps at most: what a burst of large bodies leaves behind. */
const POOL_IDLE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The size class a body of `length` bytes is given: rounded up to a quarter of its power of two
 * (at most a quarter more than it needs), so that bodies of similar sizes share buffers.
 */
export function sizeClass(length: number): number {
  const quarter = 2 ** Math.max(0, Math.floor(Math.log2(length)) - 2);
  return Math.ceil(length / quarter) * quarter;
}

/** A body in pooled memory; whatever reads its bytes holds it (upstream/http-client.ts: `Holder`). */
export class PooledBody {
  /** The request that read it holds it from the start. */
  private holders = 1;

  constructor(
    /** The whole buffer: the body is its first `length` bytes. */
    readonly memory: Buffer,
    private readonly pool: BodyPool,
  ) {}

  hold(): void {
    if (this.holders <= 0) throw new Error('a pooled body was held after its release');
    this.holders++;
  }

  release(): void {
    if (this.holders <= 0) return;
    if (--this.holders === 0) this.pool.give(this.memory);
  }
}

export class BodyPool {
  /** Free buffers by size class, the most recently used last (its pages are the likeliest in memory). */
  private readonly free = new Map<number, Buffer[]>();
  private idleBytes = 0;

  constructor(private readonly maxIdleBytes = POOL_IDLE_MAX_BYTES) {}

  /** Memory for a body of `length` bytes, or null when the pool does not serve that size. */
  take(length: number): PooledBody | null {
    if (length < POOLED_MIN_BYTES || length > POOLED_MAX_BYTES) return null;
    const size = sizeClass(length);
    const memory = this.free.get(size)?.pop();
    if (memory === undefined) return new PooledBody(Buffer.allocUnsafeSlow(size), this);
    this.idleBytes -= size;
    return new PooledBody(memory, this);
  }

  /** Bytes kept for later bodies. */
  get idle(): number {
    return this.idleBytes;
  }

  /** Called by the body's last holder. */
  give(memory: Buffer): void {
    if (this.idleBytes + memory.length > this.maxIdleBytes) return; // left to the garbage collector
    let list = this.free.get(memory.length);
    if (list === undefined) this.free.set(memory.length, (list = []));
    list.push(memory);
    this.idleBytes += memory.length;
  }
}
