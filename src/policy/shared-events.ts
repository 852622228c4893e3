/**
 * Cool-downs and circuit breakers shared by instances through Redis: when a real key sits out (a
 * 429, a 401) or a target's breaker opens here, the other instances hear it on a pub/sub channel
 * within a round trip and skip that key or target too, instead of each finding out with a failed
 * request of its own. Each pause is also stored in Redis with its own expiry, so an instance
 * that starts, reloads its keys or reconnects reads the pauses already running. Decisions stay
 * local and synchronous (no Redis call on a request's path); only the news travels.
 *
 * Keys and targets are named by the virtual key's digest, and by digests of what they are (a real
 * key; a target's provider, URL and model map), not by their place in keys.json: an instance whose
 * file lists them in another order (a rolling deploy) applies each pause to the same one. Targets
 * alike in all that (other real keys only) are told apart by their order among themselves.
 */
import { createHash, randomUUID } from 'node:crypto';
import { isRecord } from '../formats/json.js';
import { RedisClient } from '../redis/client.js';
import { RedisReplyError } from '../redis/resp.js';
import type { RedisAddress } from '../redis/url.js';
import type { VirtualKey } from './keys.js';
import type { Target } from './target.js';
import type { SharedLimiter } from './shared-limits.js';
import { warn } from '../observe/warn.js';

/** The channel of one deployment: PUBLISH is not scoped by database, so the channel names it. */
function eventsChannel(db: number): string {
  return `llmgw:events:${db}`;
}

/** Where a running pause is stored (in the key's hash slot, like its limits), expiring when it ends. */
function coolKey(digest: string, target: string, real: string): string {
  return `llmgw:{${digest}}:cool:${target}:${real}`;
}

function openKey(digest: string, target: string): string {
  return `llmgw:{${digest}}:open:${target}`;
}

/** A name for a secret that says nothing of it: 16 hex digits of its SHA-256. */
function tag(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** A target's name, and its real keys', as the news and Redis give them. */
export interface Names {
  readonly target: string;
  readonly keys: readonly string[];
}

/** The names of a key's targets. Real keys stay out of a target's: adding one to rotate keeps its name. */
export function namesFor(targets: readonly Target[]): Map<Target, Names> {
  const names = new Map<Target, Names>();
  const seen = new Map<string, number>();
  for (const target of targets) {
    const what = `${target.storage}\n${target.modelMap?.text ?? ''}`;
    const alike = seen.get(what) ?? 0;
    seen.set(what, alike + 1);
    names.set(target, { target: tag(`${what}\n${alike}`), keys: target.keys.apiKeys.map(tag) });
  }
  return names;
}

interface Cooled {
  readonly t: 'cool';
  /** Who said it (an instance ignores its own news). */
  readonly from: string;
  readonly key: string;
  readonly target: string;
  /** The real key's name. */
  readonly real: string;
  readonly ms: number;
}

interface Opened {
  readonly t: 'open';
  readonly from: string;
  readonly key: string;
  readonly target: string;
  readonly ms: number;
}

type SharedEvent = Cooled | Opened;

/** The most a piece of news may ask: a key or target is never skipped longer than this on another's word. */
const MAX_PAUSE_MS = 3_600_000;

function readEvent(text: string): SharedEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isRecord(value) || typeof value.from !== 'string' || typeof value.key !== 'string') return null;
  const whole = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
  const named = (text: unknown): text is string => typeof text === 'string' && /^[0-9a-f]{16}$/.test(text);
  if (!named(value.target) || !whole(value.ms, MAX_PAUSE_MS)) return null;
  if (value.t === 'open') return value as unknown as Opened;
  if (value.t === 'cool' && named(value.real)) return value as unknown as Cooled;
  return null;
}

export class SharedEvents {
  private readonly id = randomUUID();
  private readonly subscriber: RedisClient;
  private readonly publisher: RedisClient;
  private readonly channel: string;
  /** The keys in use: their running pauses are read again whenever a connection comes back. */
  private keys: readonly VirtualKey[] = [];
  /** A refusal (an ACL without the channel or a command) is said once. */
  private refused = false;
  /** Each target's names, made once per key set loaded (hashing its real keys). */
  private readonly names = new WeakMap<Target, Names>();

  /**
   * `shared`: the shared limits, whose connection sends the news and reads the pauses; `lookup`:
   * the key with a digest, among the keys in use.
   */
  constructor(
    address: RedisAddress,
    shared: SharedLimiter,
    private readonly lookup: (digest: string) => VirtualKey | undefined,
  ) {
    this.channel = eventsChannel(address.db);
    this.publisher = shared.client;
    shared.onConnected(() => this.recall(this.keys));
    this.subscriber = new RedisClient({
      address,
      connectTimeoutMs: 5000,
      staleMs: 5000,
      // Back after an outage: news was missed meanwhile, what it started is read instead.
      onState: (error) => {
        if (error === null) this.recall(this.keys);
      },
      subscribe: { channels: [this.channel], onMessage: (_channel, message) => this.heard(message), onRefused: (error) => this.refusal(`the channel ${this.channel}`, error) },
    });
    this.subscriber.connect();
  }

  /** Announces what these keys' pools and breakers start, and applies the pauses already running (called for every key set loaded). */
  attach(keys: readonly VirtualKey[]): void {
    this.keys = keys;
    for (const key of keys) {
      for (const target of key.targets) {
        const named = this.namesOf(key, target);
        target.keys.onCooled = (index, ms) => {
          const real = named.keys[index] as string;
          this.say({ t: 'cool', from: this.id, key: key.digest, target: named.target, real, ms: Math.round(ms) }, coolKey(key.digest, named.target, real));
        };
        target.breaker.onOpened = (ms) => this.say({ t: 'open', from: this.id, key: key.digest, target: named.target, ms: Math.round(ms) }, openKey(key.digest, named.target));
      }
    }
    this.recall(keys);
  }

  private namesOf(key: VirtualKey, target: Target): Names {
    let named = this.names.get(target);
    if (named === undefined) {
      for (const [each, names] of namesFor(key.targets)) this.names.set(each, names);
      named = this.names.get(target) as Names;
    }
    return named;
  }

  private say(event: SharedEvent, stored: string): void {
    // News that cannot be sent is lost: each instance still finds out for itself. Both go in one round trip.
    const refused = (what: string) => (err: Error) => {
      if (err instanceof RedisReplyError) this.refusal(what, err);
    };
    this.publisher.send(['PUBLISH', this.channel, JSON.stringify(event)]).catch(refused(`PUBLISH to ${this.channel}`));
    const ms = Math.min(event.ms, MAX_PAUSE_MS);
    if (ms >= 1) this.publisher.send(['SET', stored, '1', 'PX', ms]).catch(refused('SET'));
  }

  /**
   * Applies the pauses running in Redis to these keys (their remaining time, by Redis's clock):
   * one PTTL per real key and breaker that can matter, pipelined. A key with one target and one
   * real key has nothing to skip to, so nothing is read for it.
   */
  private recall(keys: readonly VirtualKey[]): void {
    if (!this.publisher.isReady) return; // its connection coming up calls this again
    for (const key of keys) {
      const several = key.targets.length > 1;
      for (const target of key.targets) {
        const named = this.namesOf(key, target);
        if (several) this.remaining(openKey(key.digest, named.target), (ms) => target.breaker.openFor(ms));
        if (several || named.keys.length > 1) named.keys.forEach((real, index) => this.remaining(coolKey(key.digest, named.target, real), (ms) => target.keys.coolFor(index, ms)));
      }
    }
  }

  private remaining(stored: string, apply: (ms: number) => void): void {
    this.publisher.send(['PTTL', stored]).then(
      (reply) => {
        // -2: no such pause (over, or never started); -1 cannot happen (each is set with an expiry).
        if (typeof reply === 'number' && reply > 0) apply(Math.min(reply, MAX_PAUSE_MS));
      },
      (err: Error) => {
        if (err instanceof RedisReplyError) this.refusal('PTTL', err);
      },
    );
  }

  private refusal(what: string, error: RedisReplyError): void {
    if (this.refused) return;
    this.refused = true;
    warn(`Redis refused ${what} (${error.message}): real-key cool-downs and open circuits are not fully shared between instances; give the gateway's Redis user the README's ACL rules (&${this.channel}, +publish, +subscribe, +set, +pttl)`);
  }

  private heard(text: string): void {
    const event = readEvent(text);
    if (event === null || event.from === this.id) return;
    const key = this.lookup(event.key);
    const target = key?.targets.find((candidate) => this.namesOf(key, candidate).target === event.target);
    if (key === undefined || target === undefined) return;
    if (event.t === 'open') return target.breaker.openFor(event.ms);
    const index = this.namesOf(key, target).keys.indexOf(event.real);
    if (index !== -1) target.keys.coolFor(index, event.ms);
  }

  close(): void {
    this.subscriber.close();
  }
}
