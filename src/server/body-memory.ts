/**
 * The memory request bodies take across the process, capped (`GATEWAY_MAX_BODIES_BYTES`): a body
 * counts from when it is read until its request's handler is done (a declared length at once, a
 * chunked one as it comes), and a body that would take the total past the cap is refused with a
 * 503 before more of it is read. Without it, clients holding a key could send enough large bodies
 * at once to run the process out of memory. A body alone is always taken (the cap may be below
 * `GATEWAY_MAX_BODY_BYTES`).
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

  /** @internal BodyShare's: false when `bytes` more would pass the cap. */
  take(bytes: number): boolean {
    if (this.held > 0 && this.held + bytes > this.maxBytes) return false;
    this.held += bytes;
    return true;
  }

  /** @internal */
  give(bytes: number): void {
    this.held -= bytes;
  }
}

export class BodyShare {
  private bytes = 0;

  constructor(private readonly memory: BodyMemory) {}

  /** Counts `bytes` more of this request's body; false (nothing counted) when that would pass the cap. */
  take(bytes: number): boolean {
    if (!this.memory.take(bytes)) return false;
    this.bytes += bytes;
    return true;
  }

  /** Gives back all it took (again: nothing). */
  release(): void {
    this.memory.give(this.bytes);
    this.bytes = 0;
  }
}
