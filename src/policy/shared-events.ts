/**
 * Cool-downs and circuit breakers shared by instances through Redis pub/sub: when a real key
 * sits out (a 429, a 401) or a target's breaker opens here, the other instances hear it within
 * a round trip and skip that key or target too, instead of each finding out with a failed
 * request of its own. Decisions stay local and synchronous (no Redis call on a request's path);
 * only the news travels. An instance that (re)connects hears what happens from then on: the
 * cool-downs already running elsewhere end by themselves within minutes.
 *
 * Keys and targets are named by the virtual key's digest and their index in keys.json: every
 * instance must load the same keys file.
 */
import { randomUUID } from 'node:crypto';
import { isRecord } from '../formats/json.js';
import { RedisClient } from '../redis/client.js';
import { RedisReplyError } from '../redis/resp.js';
import type { RedisAddress } from '../redis/url.js';
import type { VirtualKey } from './keys.js';
import { warn } from '../observe/warn.js';

/** The channel of one deployment: PUBLISH is not scoped by database, so the channel names it. */
export function eventsChannel(db: number): string {
  return `llmgw:events:${db}`;
}

interface Cooled {
  readonly t: 'cool';
  /** Who said it (an instance ignores its own news). */
  readonly from: string;
  readonly key: string;
  readonly target: number;
  readonly index: number;
  readonly ms: number;
}

interface Opened {
  readonly t: 'open';
  readonly from: string;
  readonly key: string;
  readonly target: number;
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
  if (!whole(value.target, 1000) || !whole(value.ms, MAX_PAUSE_MS)) return null;
  if (value.t === 'open') return value as unknown as Opened;
  if (value.t === 'cool' && whole(value.index, 1000)) return value as unknown as Cooled;
  return null;
}

export class SharedEvents {
  private readonly id = randomUUID();
  private readonly subscriber: RedisClient;
  private readonly channel: string;
  /** A refusal (an ACL without the channel) is said once. */
  private refused = false;

  /**
   * `publisher`: a connection to send on (the shared limits' own); `lookup`: the key with a
   * digest, among the keys in use.
   */
  constructor(
    address: RedisAddress,
    private readonly publisher: RedisClient,
    private readonly lookup: (digest: string) => VirtualKey | undefined,
  ) {
    this.channel = eventsChannel(address.db);
    this.subscriber = new RedisClient({
      address,
      connectTimeoutMs: 5000,
      staleMs: 5000,
      subscribe: { channels: [this.channel], onMessage: (_channel, message) => this.heard(message), onRefused: (error) => this.refusal(error) },
    });
    this.subscriber.connect();
  }

  /** Announces what these keys' pools and breakers start (called for every key set loaded). */
  attach(keys: readonly VirtualKey[]): void {
    for (const key of keys) {
      for (const target of key.targets) {
        target.keys.onCooled = (index, ms) => this.say({ t: 'cool', from: this.id, key: key.digest, target: target.index, index, ms: Math.round(ms) });
        target.breaker.onOpened = (ms) => this.say({ t: 'open', from: this.id, key: key.digest, target: target.index, ms: Math.round(ms) });
      }
    }
  }

  private say(event: SharedEvent): void {
    // News that cannot be sent is lost: each instance still finds out for itself.
    this.publisher.send(['PUBLISH', this.channel, JSON.stringify(event)]).catch((err: Error) => {
      if (err instanceof RedisReplyError) this.refusal(err);
    });
  }

  private refusal(error: RedisReplyError): void {
    if (this.refused) return;
    this.refused = true;
    warn(`Redis refused the channel ${this.channel} (${error.message}): real-key cool-downs and open circuits are not shared between instances; give the gateway's Redis user the channel (&${this.channel})`);
  }

  private heard(text: string): void {
    const event = readEvent(text);
    if (event === null || event.from === this.id) return;
    const target = this.lookup(event.key)?.targets[event.target];
    if (target === undefined) return;
    if (event.t === 'cool') target.keys.coolFor(event.index, event.ms);
    else target.breaker.openFor(event.ms);
  }

  close(): void {
    this.subscriber.close();
  }
}
