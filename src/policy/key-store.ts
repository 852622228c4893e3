/**
 * The keys in use, found by a SHA-256 digest of the key presented: a lookup's timing depends on
 * the digest, never on how many leading characters of a guessed key are right.
 */
import { digest, type VirtualKey } from './keys.js';

export class KeyStore {
  private byDigest: Map<string, VirtualKey>;
  /**
   * Keys already verified through their digest, by their value: the SHA-256 is a cost per
   * request. Only correct keys ever get here, so a wrong guess always takes the digest path, and
   * this lookup compares contents only on a full (seeded) hash match: its timing says nothing
   * about how close a guess is.
   */
  private verified = new Map<string, VirtualKey>();

  constructor(keys: Iterable<VirtualKey>) {
    this.byDigest = KeyStore.index(keys);
  }

  private static index(keys: Iterable<VirtualKey>): Map<string, VirtualKey> {
    const map = new Map<string, VirtualKey>();
    for (const key of keys) map.set(digest(key.id), key);
    return map;
  }

  get size(): number {
    return this.byDigest.size;
  }

  lookup(presented: string): VirtualKey | undefined {
    const known = this.verified.get(presented);
    if (known !== undefined) return known;
    const key = this.byDigest.get(digest(presented));
    if (key !== undefined) this.verified.set(presented, key);
    return key;
  }

  /** The key with this digest (how other instances name it). */
  byDigestOf(digest: string): VirtualKey | undefined {
    return this.byDigest.get(digest);
  }

  /** Swaps in a new set of keys at once; requests already running keep the key they resolved. */
  replace(keys: Iterable<VirtualKey>): void {
    this.byDigest = KeyStore.index(keys);
    this.verified = new Map();
  }
}
