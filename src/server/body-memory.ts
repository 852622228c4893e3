/**
 * The memory request bodies take across the process, capped (`GATEWAY_MAX_BODIES_BYTES`): a body
 * counts as its bytes arrive until its request's handler is done, and a body that would take the
 * total past the cap is refused with a 503 before more of it is read. Without it, clients holding a
 * key could send enough large bodies at once to run the process out of memory. Counted as they
 * arrive, not as declared: a client that declares bodies and sends nothing holds nothing. A body of
 * 64 KiB or less is counted and never refused (small requests keep flowing while large bodies fill
 * the cap), and a body alone is always taken (the cap may be below `GATEWAY_MAX_BODY_BYTES`).
 */
export class BodyMemory {
  private held = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes counted now. */
  get bytes(): number {
    return this.held;
  }

  /** One request's part of it (server.ts: released when the request's handler is done). */
  share(): BodyShare {
    return new BodyShare(this);
  }

  /** @internal BodyShare's (holding `own` already): false when `bytes` more would pass the cap while others hold some, and may be refused. */
  take(bytes: number, refusable: boolean, own: number): boolean {
    if (refusable && !this.fits(bytes, own)) return false;
    this.held += bytes;
    return true;
  }

  /** @internal BodyShare's: whether `bytes` more would be taken now. */
  fits(bytes: number, own: number): boolean {
    return !(this.held > own && this.held + bytes > this.maxBytes);
  }

  /** @internal */
  give(bytes: number): void {
    this.held -= bytes;
  }
}

export class BodyShare {
  private bytes = 0;

  constructor(private readonly memory: BodyMemory) {}

  /** Counts `bytes` more of this request's body; false (nothing counted) when that would pass the cap and `refusable`. */
  take(bytes: number, refusable = true): boolean {
    if (!this.memory.take(bytes, refusable, this.bytes)) return false;
    this.bytes += bytes;
    return true;
  }

  /** Whether `bytes` more would be counted now (a body of that size not refused). */
  fits(bytes: number): boolean {
    return this.memory.fits(bytes, this.bytes);
  }

  /** Gives back all it took (again: nothing). */
  release(): void {
    this.memory.give(this.bytes);
    this.bytes = 0;
  }
}
