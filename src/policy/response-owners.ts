/**
 * Whose stored response is whose. Several virtual keys often share one real key, and OpenAI
 * serves any stored response to any holder of the real key: the gateway must keep a virtual key
 * from reading, continuing, cancelling or deleting another's.
 *
 * The record of ownership lives with the response itself, at the provider: a response created
 * through the gateway with `store` on carries `metadata.llm_gateway_owner`, a digest of the
 * virtual key that created it (a client's own value under that name is replaced). Before a
 * request names a stored response (by id, or as `previous_response_id`), the gateway knows its
 * owner: remembered here (responses created or checked by this process), or read from the
 * response at the provider. So ownership survives restarts and holds across workers and
 * instances with nothing shared; a response without the tag (created outside the gateway) belongs
 * to no virtual key. This is a bounded cache, one per process, of what providers said.
 *
 * An owner is remembered for the server it was read from or created at (a target's `storage`: its
 * provider and base URL): any target's provider may say anything of any id (a team's own server
 * too), so what one said vouches only for requests to that same server.
 */
import { createHash } from 'node:crypto';

/** The metadata field that names a response's owner. */
export const OWNER_FIELD = 'llm_gateway_owner';

/** A virtual key's owner tag: a digest from which the key cannot be recovered. */
export function ownerTag(virtualKey: string): string {
  return createHash('sha256').update(`llm-gateway response owner\0${virtualKey}`).digest('hex').slice(0, 32);
}

/** The owner tag a stored response carries ('' when none: it was not created through the gateway). */
export function ownerOf(response: unknown): string {
  if (typeof response !== 'object' || response === null) return '';
  const metadata = (response as { metadata?: unknown }).metadata;
  if (typeof metadata !== 'object' || metadata === null) return '';
  const tag = (metadata as Record<string, unknown>)[OWNER_FIELD];
  return typeof tag === 'string' ? tag : '';
}

/**
 * The longest id remembered. Providers' ids are ~30–60 characters; a server that answers with
 * megabyte ids (a team's own may say anything) would otherwise grow every map that keeps them.
 * A longer id is not remembered: a response's owner is then read from the provider again, and
 * an item named by such an id is refused.
 */
export const MAX_REMEMBERED_ID_CHARS = 256;

/**
 * One provider account's items: whose each is, and each owner's in the order they were last named.
 * The owner that gives up its oldest when full is the one that holds the most, to within one item,
 * found without scanning every owner for each item (a scan of 10,000 keys per item held the loop a
 * second for one response of 20,000 items): the largest as items are added, kept while it has
 * given up at most one, sought again among all owners only then.
 */
class AccountItems {
  readonly owner = new Map<string, string>();
  readonly byOwner = new Map<string, Set<string>>();
  private largest: Set<string> | null = null;
  /** What `largest` held when it was found the largest. */
  private peak = 0;

  add(id: string, tag: string): void {
    this.owner.set(id, tag);
    let ids = this.byOwner.get(tag);
    if (ids === undefined) this.byOwner.set(tag, (ids = new Set()));
    ids.add(id);
    if (ids === this.largest) {
      this.peak = Math.max(this.peak, ids.size);
    } else if (this.largest === null || ids.size > this.largest.size) {
      this.largest = ids;
      this.peak = ids.size;
    }
  }

  /** The least recently named item of the owner holding the most. */
  forgetOne(): void {
    const ids = this.largest;
    const oldest = ids?.values().next().value;
    if (ids === null || oldest === undefined) return;
    const tag = this.owner.get(oldest) as string;
    ids.delete(oldest);
    this.owner.delete(oldest);
    if (ids.size === 0) this.byOwner.delete(tag);
    if (ids.size === 0 || ids.size < this.peak - 1) this.seekLargest();
  }

  private seekLargest(): void {
    this.largest = null;
    for (const ids of this.byOwner.values()) if (this.largest === null || ids.size > this.largest.size) this.largest = ids;
    this.peak = this.largest?.size ?? 0;
  }
}

/**
 * Whose output items are whose: the ids of the output items (messages, reasoning, tool calls) of
 * the responses keys stored, as this process saw them created, per provider account. Unlike a
 * response, an item cannot be read back from the provider by its id, so a forgotten one is refused.
 * An id named again moves to the back of its owner's, and when an account holds `capacity` items
 * the key holding the most gives up its least recently named: a key that stores many cannot push
 * out another's conversation. An id once a key's is never another's while remembered (a provider
 * that repeated one cannot hand it over).
 */
export class ItemOwners {
  private readonly byStorage = new Map<string, AccountItems>();
  /** One string per owner tag, however many items it owns. */
  private readonly tags = new Map<string, string>();

  /** Told of the items this process saw created (a cluster worker tells its primary, which tells the others). */
  onAdded: ((storage: string, ids: readonly string[], tag: string) => void) | null = null;
  /** Resolves once items other processes saw created before now are known here too (a cluster worker's; null: none). */
  catchUp: (() => Promise<void>) | null = null;

  constructor(private readonly capacity = 200_000) {}

  /** The output items of one response this process saw created, said to `onAdded`. */
  addAll(storage: string, ids: readonly string[], tag: string): void {
    const kept = ids.filter((id) => id.length <= MAX_REMEMBERED_ID_CHARS);
    if (kept.length === 0) return;
    for (const id of kept) this.add(storage, id, tag);
    this.onAdded?.(storage, kept, tag);
  }

  /** The owner tag of item `id` in `storage`, when this process knows it; a known one is kept longest. */
  get(storage: string, id: string): string | undefined {
    const account = this.byStorage.get(storage);
    const tag = account?.owner.get(id);
    if (account !== undefined && tag !== undefined) {
      const ids = account.byOwner.get(tag) as Set<string>;
      ids.delete(id);
      ids.add(id);
    }
    return tag;
  }

  add(storage: string, id: string, tag: string): void {
    if (id.length > MAX_REMEMBERED_ID_CHARS) return;
    let account = this.byStorage.get(storage);
    if (account === undefined) this.byStorage.set(storage, (account = new AccountItems()));
    if (account.owner.has(id)) return;
    let shared = this.tags.get(tag);
    if (shared === undefined) this.tags.set(tag, (shared = tag));
    account.add(id, shared);
    // A reference to the one forgotten is then refused.
    if (account.owner.size > this.capacity) account.forgetOne();
  }
}

export class ResponseOwners {
  /**
   * Each response's owner tag and, for those this process saw answered, the tokens of the
   * conversation it closes (its usage: prompt and output; 0: not known): what a request continuing
   * it makes the provider read beside its own bytes, held against the key's limits while it runs.
   */
  private readonly owners = new Map<string, { readonly tag: string; context: number }>();
  /** The output items of the responses whose owners are here. */
  readonly items: ItemOwners;

  constructor(private readonly capacity = 100_000, itemCapacity = 200_000) {
    this.items = new ItemOwners(itemCapacity);
  }

  /** The owner tag of response `id` in the provider account `storage`, when this process knows it. */
  get(storage: string, id: string): string | undefined {
    return this.owners.get(`${storage} ${id}`)?.tag;
  }

  set(storage: string, id: string, tag: string): void {
    if (id.length > MAX_REMEMBERED_ID_CHARS) return;
    const at = `${storage} ${id}`;
    const was = this.owners.get(at);
    this.owners.delete(at);
    this.owners.set(at, { tag, context: was?.tag === tag ? was.context : 0 });
    // Oldest first out: a forgotten id is read again from the provider.
    if (this.owners.size > this.capacity) this.owners.delete(this.owners.keys().next().value as string);
  }

  /** The tokens of the conversation response `id` closes, when this process saw it answered and it is `tag`'s (0: not known, or another's). */
  context(storage: string, id: string, tag: string): number {
    const known = this.owners.get(`${storage} ${id}`);
    return known?.tag === tag ? known.context : 0;
  }

  /** Remembers the tokens of the conversation a response whose owner is known closes. */
  setContext(storage: string, id: string, tokens: number): void {
    const known = this.owners.get(`${storage} ${id}`);
    if (known !== undefined) known.context = tokens;
  }

  delete(storage: string, id: string): void {
    this.owners.delete(`${storage} ${id}`);
  }

  get size(): number {
    return this.owners.size;
  }
}
