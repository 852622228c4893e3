/**
 * Limits shared by every gateway instance through Redis (REDIS_URL): rate buckets, budgets in
 * tokens and USD, and every key's spend. Each check-and-reserve is one Lua script, so two
 * instances can never both take the last of a budget or a minute's requests; buckets and period
 * counters expire on their own. Each admitted request holds a reservation named by its id; its
 * settlement deletes the reservation and applies only if it was there, so settling twice
 * counts once.
 *
 * Redis down or slow: a check that gets no answer within REDIS_TIMEOUT_MS is decided by
 * REDIS_FAILURE: `open` (the default) asks this instance's own authority (the local limits every
 * request also feeds), `closed` refuses with 503. Spend recorded while Redis is down is sent when
 * it returns (up to a bound), so the shared counters catch up.
 */
import { randomUUID } from 'node:crypto';
import type { Metrics } from '../observe/metrics.js';
import { warn } from '../observe/warn.js';
import { RedisClient, RedisUnavailable } from '../redis/client.js';
import type { RedisAddress } from '../redis/url.js';
import { RedisReplyError, type RespValue } from '../redis/resp.js';
import { SlotList } from '../slot-list.js';
import { redisKeys, runScript, seededKey, settledKey } from './limit-scripts.js';
import {
  budgetError,
  budgetMax,
  describeBucket,
  periodEnd,
  periodId,
  periodStart,
  rateError,
  refillMs,
  spendPeriod,
  type Admission,
  type BucketState,
  type Charge,
  type KeyLimits,
  type KeyReport,
  type Lease,
  type Limiter,
  type Reservation,
  type Spend,
} from './limits.js';
import type { KeySpend, SpendStore } from './spend-store.js';

export type RedisFailurePolicy = 'open' | 'closed';

/**
 * A dead worker's reservations are released, and its requests counted, for this long after it
 * died (while Redis cannot be reached, the release is tried again); after it, they are left as they are.
 */
export const RELEASE_WITHIN_MS = 3_600_000;
/** A reservation is forgotten this long after it was made (it stops holding budget long before: holdMs). */
const KEEP_MS = 86_400_000;
/** Reservations renewed by one script call, at most (~1 ms of Redis's time; more are several calls, one after another). */
const RENEW_BATCH = 500;
/** Spend counters outlive their period by this, for the usage route's last look. */
const SPEND_GRACE_MS = { day: 86_400_000, month: 7 * 86_400_000 } as const;
/** A marker of what Redis has counted, kept without expiry (checkCounting). */
const COUNTING_KEY = 'llmgw:counting';

/** How often an outage on a live connection is probed. */
const PROBE_MS = 1000;
/** Settlements waiting for Redis to come back, at most. */
const MAX_BACKLOG = 10_000;

/** How long a period's counters are kept: to its end plus a grace; 0 for `total` (kept). */
function spendTtl(key: KeyLimits, now: Date): number {
  const period = spendPeriod(key);
  const end = periodEnd(period, now);
  return end === null || period === 'total' ? 0 : end.getTime() - now.getTime() + SPEND_GRACE_MS[period];
}

function num(value: RespValue | undefined): number | null {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || value === '') return null;
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : null;
}

/** A budget Redis found used up: in which period, of which limit, at what spend. */
interface UsedUp {
  readonly period: string;
  readonly kind: 'tokens' | 'usd';
  readonly max: number;
  readonly spent: number;
}

class Timeout extends Error {}

/** A check not sent: Redis is out, and probed until it answers (nothing sent, nothing failed). */
class StillOut extends RedisUnavailable {}

/**
 * `work`, or a Timeout after `ms`. The timeout waits for the loop's I/O first (setImmediate): after
 * the process itself stalled (a long collection, a CPU quota), its timers run before the reply
 * already waiting on the socket is read, and a healthy Redis was reported out.
 */
export function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => (immediate = setImmediate(() => reject(new Timeout(`no answer from Redis within ${ms} ms`)))), ms);
  });
  return Promise.race([work, deadline]).finally(() => {
    clearTimeout(timer);
    if (immediate !== undefined) clearImmediate(immediate);
  });
}

/** A reply of a shape the scripts never give: whatever answered was not them (counted as an error reply). */
class UnexpectedReply extends RedisReplyError {}

/** The refusal of a request whose key's limits cannot be checked (REDIS_FAILURE=closed). */
const LIMITS_UNAVAILABLE = { status: 503, message: 'The limits of this virtual key cannot be checked right now; try again shortly.', type: 'api_error', code: 'limits_unavailable', headers: { 'retry-after': '1' } } as const;

export interface SharedLimiterOptions {
  readonly client: RedisClient;
  /** This instance's own authority: what every request also feeds, and what decides while Redis cannot. */
  readonly local: Limiter;
  readonly timeoutMs: number;
  /**
   * A reservation stops holding budget this long after it was made or last renewed (REDIS_HOLD_MS):
   * its instance renews it every third of that while the request runs, so only the holds of an
   * instance that died (killed outright: no settlement came) end this way.
   */
  readonly holdMs: number;
  readonly failure: RedisFailurePolicy;
  readonly metrics: Metrics;
  /**
   * A cluster worker's own mark, which starts its reservations' names: when it dies, another
   * worker releases them (releaseOwners). Null in a single process, whose death is the instance's.
   */
  readonly owner?: string | null;
  /** Whether the state file's spend still waits to be added to Redis (this run never managed to): what is not settled is added with it at the next start. */
  readonly migrationPending?: () => boolean;
}

interface Settlement {
  readonly key: KeyLimits;
  readonly spent: Spend;
  readonly reserved: Reservation;
  readonly at: Date;
  /** false: a release (the request was refused): its reservation goes, nothing is counted. */
  readonly counts: boolean;
}

export class SharedLimiter implements Limiter {
  /**
   * Redis cannot be used (not connected, or its last answer was an error or came too late): said
   * once when it begins and once when an answer comes again; /healthz says so meanwhile.
   */
  private outage = false;
  /** The outage began with a reply that came too late (not a refusal for Redis's state). */
  private outageOfReplies = false;
  /** The last failure was a reply in a shape the scripts never give. */
  private wrongReplies = false;
  /** Out on a live connection, the last probe was answered, however late: the connection delivers (held settlements go). */
  private repliesLate = false;
  /** The probe sent last has had no reply yet. */
  private probeUnanswered = false;
  /** Probes sent: which one is the last. */
  private probesSent = 0;
  /** Shutting down: nothing is held back any more (there is no later). */
  private closing = false;
  /** While an outage lasts: a write a second to see whether Redis answers in time again (null: none). */
  private probe: NodeJS.Timeout | null = null;
  private readonly backlog: Settlement[] = [];
  /** Settlements sent and not yet answered, and who waits for the last answer (a shutdown). */
  private unanswered = 0;
  private whenAnswered: Array<() => void> = [];
  /** Told each time the connection comes up (the shared events read what is running). */
  private readonly connectedListeners: Array<() => void> = [];
  /** Reservations of requests still running, renewed every third of the hold (started with the first). */
  private readonly leases = new SlotList<Lease>();
  private renewer: NodeJS.Timeout | null = null;
  /** A renewal pass is under way: the next tick waits for it to end. */
  private renewing = false;
  /**
   * Keys Redis last found past their budget, by digest: while Redis is out, the instance deciding
   * alone refuses them too for the rest of that period (its own counts know only its own spend,
   * and a budget every instance had used up opened again on each). Forgotten when Redis admits one.
   */
  private readonly usedUp = new Map<string, UsedUp>();
  /** The marker of Redis's counts this process last saw: a later connection that finds another says they were lost. */
  private countingSeen: string | null = null;
  /** Redis refused to read the marker (said once). */
  private countingRefused = false;

  constructor(private readonly options: SharedLimiterOptions) {}

  onConnected(listener: () => void): void {
    this.connectedListeners.push(listener);
  }

  get client(): RedisClient {
    return this.options.client;
  }

  /** Limits are shared right now: connected, and the last call answered. */
  get healthy(): boolean {
    return this.options.client.isReady && !this.outage;
  }

  /** The client's state changed (it calls this): an outage begins or ends; settlements waiting are sent. */
  connectionChanged(error: Error | null): void {
    if (error !== null) return this.failed(error);
    this.answered();
    // Settlements kept while a connection closed when idle was made again (no outage): sent now.
    this.flush();
    this.checkCounting();
    for (const listener of this.connectedListeners) listener();
  }

  /**
   * Whether Redis still holds what it counted: a marker made at the first connection, with no
   * expiry, is gone after a restart without persistence, a FLUSHALL or a failover to an empty
   * replica. Every key's budget and limits then start over from zero, which is said.
   */
  private checkCounting(): void {
    const client = this.options.client;
    // Set by whichever instance came first (a random value), then read: another instance that set
    // it again after a loss must not keep this one from seeing a value other than the one it saw.
    client.send(['SET', COUNTING_KEY, randomUUID(), 'NX']).catch(() => {});
    client.send(['GET', COUNTING_KEY]).then(
      (marker) => {
        if (typeof marker !== 'string') return;
        if (this.countingSeen !== null && marker !== this.countingSeen) {
          warn(`Redis (${client.name}) no longer holds what it counted (restarted without persistence, flushed, or a failover to a replica that had none of it): every key's budget, spend and limits start over from zero in Redis`);
        }
        this.countingSeen = marker;
      },
      (err: Error) => {
        // An outage (or Redis loading, busy): nothing is known. An ACL's refusal would hide every loss: said once.
        if (!(err instanceof RedisReplyError) || err.kind !== 'NOPERM' || this.countingRefused) return;
        this.countingRefused = true;
        warn(`Redis refused GET of ${COUNTING_KEY} (${err.message}): a Redis that loses what it counted (a restart without persistence, a flush, a failover to an empty replica) cannot be noticed; give the gateway's Redis user the README's ACL rules (+get)`);
      },
    );
  }

  /** Out on a connection still up (replies too late, writes refused for its state): until the probe finds Redis back. */
  private get stillOut(): boolean {
    return this.outage && this.probe !== null && !this.wrongReplies;
  }

  /** Redis answered: an outage is over, and what waited for it is sent. */
  private answered(): void {
    this.wrongReplies = false;
    if (!this.outage) return;
    this.outage = false;
    this.stopProbing();
    warn(`Redis (${this.options.client.name}) is back: limits are shared again`);
    this.flush();
  }

  private failed(error: Error): void {
    if (error instanceof StillOut) return; // no call was made: nothing failed again
    this.options.metrics.redisError(error instanceof Timeout ? 'timeout' : error instanceof RedisReplyError ? 'error' : 'unavailable');
    this.wrongReplies = error instanceof UnexpectedReply;
    if (this.outage) return;
    this.outage = true;
    this.repliesLate = false;
    this.outageOfReplies = error instanceof Timeout;
    const policy = this.options.failure === 'open' ? "each instance applies limits alone (REDIS_FAILURE=open): a key's limits may be exceeded by up to the number of instances" : 'requests of keys with limits are refused with 503 (REDIS_FAILURE=closed)';
    warn(`Redis (${this.options.client.name}) cannot be used (${error.message}); until it returns, ${policy}`);
    // Slow, or refusing writes for its state: a write shows when that is over. A refusal of the
    // scripts themselves (NOPERM) is not, whatever a write says: only a script's answer ends it.
    if (error instanceof Timeout || (error instanceof RedisReplyError && error.passing)) this.probeUntilBack();
  }

  private deliversLate(): void {
    if (!this.outage || this.repliesLate) return;
    this.repliesLate = true;
    this.flush();
  }

  private stopProbing(): void {
    if (this.probe !== null) clearInterval(this.probe);
    this.probe = null;
    this.probeUnanswered = false;
  }

  /**
   * An outage on a connection that stayed up (a reply that came too late, a write refused for
   * Redis's state) would otherwise end only with this process's next limit check, settlement or
   * report: an idle worker said Redis was down long after it was back. A lost connection ends its
   * outage by itself when it is made again.
   */
  private probeUntilBack(): void {
    if (this.probe !== null) return;
    this.probe = setInterval(() => {
      const client = this.options.client;
      // A reply in a shape the scripts never give: only a script's answer in the right one ends that.
      if (!client.isReady || this.wrongReplies) return;
      // The last probe still unanswered: the connection has gone quiet again (a slow Redis that
      // then hangs, a network that starts dropping), so settlements without a marker wait again.
      if (this.probeUnanswered) this.repliesLate = false;
      const probe = client.sendWriteProbe();
      const sent = ++this.probesSent;
      this.probeUnanswered = true;
      // Answered, however late, even refused (an ACL without SET): the connection delivers, so
      // what waited for it can go. Only the last one's answer says the last one was answered.
      const replied = (): void => {
        if (sent === this.probesSent) this.probeUnanswered = false;
        this.deliversLate();
      };
      probe.then(replied, (err: unknown) => {
        if (err instanceof RedisReplyError) replied();
      });
      withDeadline(probe, this.options.timeoutMs).then(
        () => this.answered(),
        // Refused in time for anything but Redis's state (an ACL without SET): the probe cannot
        // tell. Out for late replies, Redis answering in time is back; out for its state (which
        // Redis checks after permissions), the checks themselves go to it again and say.
        (err: Error) => {
          if (!(err instanceof RedisReplyError) || err.passing) return;
          if (this.outageOfReplies) this.answered();
          else this.stopProbing();
        },
      );
    }, PROBE_MS);
    this.probe.unref();
  }

  /**
   * A script's reply, or a failure the caller's policy applies to: a reply of a shape the script
   * never gives (`expected` says no; something else answers on that port) counts as an error reply.
   */
  private async call(which: 'admit' | 'report', keys: readonly string[], args: readonly (string | number)[], expected: (reply: RespValue[]) => boolean): Promise<RespValue[]> {
    // Out on a connection still up (replies too late, writes refused for its state): the probe
    // finds Redis back; until then a check goes to the policy at once, not after another wait.
    if (this.stillOut) throw new StillOut('Redis is out until its probe is answered in time');
    // The moment an idle connection is made again: decided by the policy, with no outage said.
    if (this.options.client.remakingIdle) throw new StillOut('the connection to Redis is being made again');
    const started = performance.now();
    const reply = await withDeadline(runScript(this.options.client, which, keys, args), this.options.timeoutMs);
    this.options.metrics.redisCall(which, (performance.now() - started) / 1000);
    if (!Array.isArray(reply) || !expected(reply)) throw new UnexpectedReply(`unexpected reply from the ${which} script`);
    this.answered();
    return reply;
  }

  async admit(key: KeyLimits, estimate: Charge, request: string): Promise<Admission> {
    const owner = this.options.owner ?? null;
    const id = owner === null ? request : `${owner}:${request}`;
    const now = new Date();
    const [bucket, spend, held] = redisKeys(key.digest, periodId(spendPeriod(key), now));
    const budget = key.budget;
    const rpm = key.rateLimit?.requestsPerMinute ?? 0;
    const tpm = key.rateLimit?.tokensPerMinute ?? 0;
    // The outcomes the script gives for this key's limits: any other is no answer.
    const expected = (reply: RespValue[]): boolean => {
      const outcome = reply[0];
      return outcome === 'ok' || (outcome === 'requests' && rpm > 0) || (outcome === 'tokens' && tpm > 0) || (outcome === 'budget_tokens' && (budget?.maxTokens ?? 0) > 0) || (outcome === 'budget_usd' && (budget?.maxUsd ?? 0) > 0);
    };
    let reply: RespValue[];
    try {
      reply = await this.call('admit', [bucket, spend, held], [rpm, tpm, budget?.maxTokens ?? 0, budget?.maxUsd ?? 0, estimate.tokens, estimate.usd, id, this.options.holdMs, KEEP_MS, budget === null ? 0 : 1], expected);
    } catch (err) {
      this.failed(err as Error);
      this.options.metrics.redisFallback(this.options.failure);
      // Sent but unanswered, the script may have run and reserved: the ticket stays, and its settlement (or release) counts once.
      const sent = !(err instanceof RedisUnavailable && !err.sent);
      // Refused here after all: what Redis may still reserve when it runs the admission is released
      // behind it (on the same connection, or from the backlog), or it would hold the budget until its hold ended.
      const release = (): void => this.settle({ key, spent: { tokens: 0, usd: 0, usage: null, unpriced: false }, reserved: { charge: estimate, where: 'unsure', ticket: id }, at: now, counts: false });
      if (this.options.failure === 'closed') {
        if (sent) release();
        return { headers: {}, error: LIMITS_UNAVAILABLE };
      }
      const known = this.usedUp.get(key.digest);
      if (known !== undefined && budget !== null && known.period === periodId(spendPeriod(key), now) && known.max === budgetMax(budget, known.kind)) {
        if (sent) release();
        return { headers: {}, error: budgetError(budget, known.kind, known.spent, 0, now.getTime()) };
      }
      const local = await this.options.local.admit(key, estimate, id);
      if (!sent) return local;
      if (local.error !== null) {
        release();
        return local;
      }
      // Redis may run the admission late and reserve: renewed like any other, a settlement ends it.
      // (Only a budget counts what requests hold: a key with rate limits alone needs no renewal.)
      return { ...local, where: 'unsure', ticket: id, lease: budget === null ? null : this.lease(held, id) };
    }
    const [outcome, requestsLevel, tokensLevel, spent, heldNow] = reply;
    const headers = rateHeaders(key, num(requestsLevel), num(tokensLevel));
    const date = now.getTime();
    switch (outcome) {
      case 'ok':
        this.usedUp.delete(key.digest);
        return { headers, error: null, where: 'shared', ticket: id, lease: budget === null ? null : this.lease(held, id) };
      case 'requests':
      case 'tokens': {
        const limit = (outcome === 'requests' ? rpm : tpm) as number;
        const level = num(outcome === 'requests' ? requestsLevel : tokensLevel) ?? 0;
        return { headers, error: rateError(outcome, limit, refillMs(level, limit, 1), headers) };
      }
      default: {
        // A budget's outcome (`expected` let none through for a key without one): never admitted unchecked.
        if (budget === null) return { headers: {}, error: LIMITS_UNAVAILABLE };
        const kind = outcome === 'budget_usd' ? 'usd' : 'tokens';
        const spentNow = num(spent) ?? 0;
        if (spentNow >= budgetMax(budget, kind)) this.usedUp.set(key.digest, { period: periodId(spendPeriod(key), now), kind, max: budgetMax(budget, kind), spent: spentNow });
        return { headers: {}, error: budgetError(budget, kind, spentNow, num(heldNow) ?? 0, date) };
      }
    }
  }

  record(key: KeyLimits, spent: Spend, reserved: Reservation): void {
    if (reserved.lease != null) this.leases.delete(reserved.lease);
    // This instance's own authority counts every request too: it decides while Redis cannot, and
    // its state file keeps the spend. A request Redis admitted holds nothing here.
    if (reserved.where === 'shared') this.options.local.record(key, { ...spent, decidedElsewhere: true }, { charge: { tokens: 0, usd: 0 }, where: 'none', ticket: null });
    else this.options.local.record(key, spent, reserved);
    this.settle({ key, spent, reserved, at: new Date(), counts: true });
  }

  /** Keeps `ticket` (in the hash `place`) holding for as long as its request runs. */
  private lease(place: string, ticket: string): Lease {
    const lease: Lease = { slot: -1, place, ticket, since: performance.now() };
    this.leases.add(lease);
    if (this.renewer === null) {
      this.renewer = setInterval(() => void this.renew(), Math.max(1, Math.floor(this.options.holdMs / 3)));
      this.renewer.unref();
    }
    return lease;
  }

  /**
   * Renews the reservations of requests still running, but for those made within the last renewal
   * period (they hold long enough): one script call at a time, each for at most RENEW_BATCH of
   * them, so that tens of thousands of streams in flight never hold Redis (and the admissions
   * queued behind) for more than one call's work. Skipped while Redis is out: a renewal lost to an
   * outage longer than the hold lets them stop holding, never counting (the settlement still finds them).
   */
  private async renew(): Promise<void> {
    if (this.renewing || this.leases.size === 0 || !this.healthy) return;
    this.renewing = true;
    try {
      const now = performance.now();
      const due = new Map<string, string[]>();
      for (const lease of this.leases.snapshot()) {
        // Redis has forgotten it by now; a request that never settles must not be renewed forever.
        if (now - lease.since > KEEP_MS) this.leases.delete(lease);
        else if (now - lease.since >= this.options.holdMs / 3) {
          const tickets = due.get(lease.place);
          if (tickets === undefined) due.set(lease.place, [lease.ticket]);
          else tickets.push(lease.ticket);
        }
      }
      for (const [place, tickets] of due) {
        for (let at = 0; at < tickets.length; at += RENEW_BATCH) {
          if (!this.healthy) return;
          const started = performance.now();
          await withDeadline(runScript(this.options.client, 'renew', [place], [this.options.holdMs, ...tickets.slice(at, at + RENEW_BATCH)]), this.options.timeoutMs * 10);
          this.options.metrics.redisCall('renew', (performance.now() - started) / 1000);
        }
      }
    } catch (err) {
      this.failed(err as Error);
    } finally {
      this.renewing = false;
    }
  }

  private settle(settlement: Settlement): void {
    const { key, spent, reserved, at, counts } = settlement;
    const mode = reserved.where === 'shared' ? 'held' : reserved.where === 'unsure' ? 'unsure' : 'none';
    // One that counts each time it arrives (no marker) waits while Redis is out on a connection
    // that has not delivered a reply since: a network that drops everything would lose it with
    // the connection. A connection that answers, however late, takes it (flushed then).
    if (!this.options.client.isReady || (mode === 'none' && this.stillOut && !this.repliesLate && !this.closing)) {
      this.keep(settlement);
      return;
    }
    const ticket = reserved.ticket ?? '';
    const [bucket, spend, held] = redisKeys(key.digest, periodId(spendPeriod(key), at));
    const usage = spent.usage;
    const args = [
      ticket,
      key.rateLimit?.requestsPerMinute ?? 0,
      key.rateLimit?.tokensPerMinute ?? 0,
      spent.tokens,
      spent.usd,
      usage?.input ?? 0,
      usage?.output ?? 0,
      usage?.cacheRead ?? 0,
      usage?.cacheWrite ?? 0,
      usage?.reasoning ?? 0,
      spent.unpriced ? 1 : 0,
      spendTtl(key, at),
      mode,
      counts ? 1 : 0,
    ];
    const started = performance.now();
    this.unanswered++;
    runScript(this.options.client, 'settle', [bucket, spend, held, settledKey(key.digest, ticket)], args).then(
      (reply) => {
        this.options.metrics.redisCall('settle', (performance.now() - started) / 1000);
        // The script says 1 (settled) or 0 (settled before): anything else is not the script's answer.
        if (reply !== 0 && reply !== 1) this.failed(new UnexpectedReply('unexpected reply from the settle script'));
        // An outage of replies in the wrong shape ends only with an admission or a report in the
        // right one: a server that answers every call with 0 or 1 would end it once per request.
        // Nor does a reply later than a limits check may wait: a Redis that slow is still out (each
        // late reply ended the outage, and the next check's timeout began another, twice a request).
        else if (!this.wrongReplies && performance.now() - started <= this.options.timeoutMs) this.answered();
      },
      (err: Error) => {
        this.failed(err);
        if (err instanceof RedisReplyError) {
          // Refused for Redis's state (out of memory, a demoted node): no count was written (every
          // write is refused in that state), and it will be once Redis takes writes again. Refused
          // for itself (a permission): it never will.
          if (err.passing) this.keep(settlement);
          else this.options.metrics.redisError('settlement_lost');
          return;
        }
        // Never sent: safe to send again. Sent without an answer: again only if it counts once however often it arrives.
        if ((err instanceof RedisUnavailable && !err.sent) || mode !== 'none') this.keep(settlement);
        else this.options.metrics.redisError('settlement_lost');
      },
    )
      // Counted once its handlers ran: one that failed is in the backlog by then (a shutdown says so).
      .finally(() => this.answeredSettlement());
  }

  private keep(settlement: Settlement): void {
    if (this.backlog.length >= MAX_BACKLOG) {
      this.options.metrics.redisError('backlog_full');
      return;
    }
    this.backlog.push(settlement);
  }

  private flush(): void {
    for (const settlement of this.backlog.splice(0)) this.settle(settlement);
  }

  private answeredSettlement(): void {
    if (--this.unanswered > 0) return;
    for (const resolve of this.whenAnswered.splice(0)) resolve();
  }

  /**
   * For a shutdown: sends what was held back (there is no later), then resolves once every
   * settlement sent has its answer, or after `ms`. A shutdown waits for it before it closes the
   * connection (closed first, the last requests' holds would keep the key's budget from every
   * instance until their holds ended, and their spend would never be counted in Redis).
   */
  settled(ms: number): Promise<void> {
    this.closing = true;
    if (this.options.client.isReady) this.flush();
    if (this.unanswered === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      // A stop that waits on a stalled Redis says so, and for how long (its own message said only the requests' wait).
      const after = Math.min(1000, Math.round(ms / 3));
      const said = setTimeout(() => warn(`waiting up to ${ms - after} ms more for Redis to answer ${this.unanswered} settlement(s) before closing (10 × REDIS_TIMEOUT_MS)`), after);
      this.whenAnswered.push(() => {
        clearTimeout(timer);
        clearTimeout(said);
        resolve();
      });
    });
  }

  /** Settlements still waiting for Redis (said at shutdown: they are lost with the process). */
  get waiting(): number {
    return this.backlog.length;
  }

  /** Whether the state file's spend, these settlements' included, is still to be added to Redis at the next start. */
  get migrationPending(): boolean {
    return this.options.migrationPending?.() ?? false;
  }

  /**
   * Releases what workers that died (`owners`: their marks) held against `key`'s limits in Redis: their
   * requests count as of unknown usage, as the primary counts those it admitted. Without this, a
   * worker killed outright (an OOM kill) left its reservations holding the budget until their holds ended.
   * Resolves with how many; rejects when Redis could not be asked or refused (the caller tries again).
   * Asking twice is harmless: a reservation released is gone, and counts once.
   */
  async releaseOwners(owners: readonly string[], key: KeyLimits): Promise<number> {
    const now = new Date();
    const [bucket, spend, held] = redisKeys(key.digest, periodId(spendPeriod(key), now));
    const reply = await withDeadline(runScript(this.options.client, 'releaseOwner', [held, bucket, spend], [owners.join(' '), key.rateLimit?.requestsPerMinute ?? 0, key.rateLimit?.tokensPerMinute ?? 0, spendTtl(key, now)]), this.options.timeoutMs * 10);
    if (typeof reply !== 'number') throw new UnexpectedReply('unexpected reply from the release script');
    return reply;
  }

  async report(key: KeyLimits): Promise<KeyReport> {
    const now = new Date();
    const period = spendPeriod(key);
    const [bucket, spend, held] = redisKeys(key.digest, periodId(period, now));
    let reply: RespValue[];
    try {
      reply = await this.call('report', [bucket, spend, held], [key.rateLimit?.requestsPerMinute ?? 0, key.rateLimit?.tokensPerMinute ?? 0, KEEP_MS], (answer) => answer.length >= 5 && Array.isArray(answer[0]));
    } catch (err) {
      this.failed(err as Error);
      return { ...(await this.options.local.report(key)), partial: true };
    }
    const [fields, requestsLevel, tokensLevel, heldTokens, heldUsd] = reply;
    const spendFields: Record<string, number> = {};
    if (Array.isArray(fields)) for (let i = 0; i + 1 < fields.length; i += 2) spendFields[String(fields[i])] = num(fields[i + 1]) ?? 0;
    const field = (name: keyof KeySpend): number => spendFields[name] ?? 0;
    const bucketState = (limit: number | null | undefined, level: number | null): BucketState | null =>
      limit == null ? null : { limit, remaining: Math.max(0, Math.floor(level ?? limit)), reset_seconds: Math.ceil(refillMs(level ?? limit, limit, limit)) / 1000 };
    return {
      period,
      periodStart: periodStart(period, now)?.toISOString() ?? null,
      periodEnd: periodEnd(period, now)?.toISOString() ?? null,
      spend: {
        period: periodId(period, now),
        requests: field('requests'),
        tokens: field('tokens'),
        usd: field('usd'),
        input_tokens: field('input_tokens'),
        output_tokens: field('output_tokens'),
        cache_read_tokens: field('cache_read_tokens'),
        cache_write_tokens: field('cache_write_tokens'),
        reasoning_tokens: field('reasoning_tokens'),
        unpriced_requests: field('unpriced_requests'),
      },
      inFlight: { tokens: num(heldTokens) ?? 0, usd: num(heldUsd) ?? 0 },
      budget: key.budget,
      requestsPerMinute: bucketState(key.rateLimit?.requestsPerMinute, num(requestsLevel)),
      tokensPerMinute: bucketState(key.rateLimit?.tokensPerMinute, num(tokensLevel)),
    };
  }
}

/** OpenAI's `x-ratelimit-*` headers from the levels after admission. */
function rateHeaders(key: KeyLimits, requests: number | null, tokens: number | null): Record<string, string> {
  const headers: Record<string, string> = {};
  const rpm = key.rateLimit?.requestsPerMinute ?? null;
  const tpm = key.rateLimit?.tokensPerMinute ?? null;
  if (rpm !== null && requests !== null) describeBucket(headers, 'requests', rpm, requests);
  if (tpm !== null && tokens !== null) describeBucket(headers, 'tokens', tpm, tokens);
  return headers;
}

/**
 * The state file's spend, the first time Redis is used: each key's current period is added to
 * what Redis counts for it, once per key and period however many instances (or restarts) try
 * (the first to get there adds its file's; the others' are not added on top). Returns how many
 * were added.
 */
export async function seedSpend(client: RedisClient, entries: Iterable<readonly [string, KeySpend]>, now = new Date()): Promise<number> {
  const work: Array<Promise<RespValue>> = [];
  for (const [digest, spend] of entries) {
    const kind = spend.period === 'total' ? 'total' : spend.period.startsWith('day:') ? 'day' : 'month';
    if (spend.period !== periodId(kind, now)) continue;
    const end = periodEnd(kind, now);
    const ttl = end === null || kind === 'total' ? 0 : end.getTime() - now.getTime() + SPEND_GRACE_MS[kind];
    const fields = Object.entries(spend)
      .filter(([name]) => name !== 'period')
      .flatMap(([name, value]) => [name, name === 'usd' ? String(value) : String(Math.round(value as number))]);
    // Pipelined: one round trip for all of them.
    work.push(runScript(client, 'seed', [redisKeys(digest, spend.period)[1], seededKey(digest, spend.period)], [ttl, ...fields]));
  }
  return (await Promise.all(work)).filter((reply) => reply === 1).length;
}

interface Migration {
  readonly entries: Array<[string, KeySpend]>;
  /** Marks the file as counted in Redis: only once the spend was added there. */
  readonly done: () => void;
}

/**
 * What the state file held at start, unless Redis counts it already (the file was written after
 * an earlier migration). The file says it is counted in Redis only once the migration worked: a
 * file written by an instance that never reached Redis keeps its spend to migrate at the next start.
 */
function spendToMigrate(store: SpendStore | null): Migration | null {
  if (store === null || store.countedInRedis) return null;
  return { entries: store.entries(), done: () => store.markCountedInRedis() };
}

/** Retries the migration every 5 s until it worked (or the process ends). */
function seedUntilDone(client: RedisClient, entries: Array<[string, KeySpend]>, done: () => void): void {
  if (!client.isReady) {
    setTimeout(() => seedUntilDone(client, entries, done), 5000).unref();
    return;
  }
  seedSpend(client, entries).then(
    (count) => {
      if (count > 0) warn(`Redis: the spend of ${count} key${count === 1 ? '' : 's'} in the state file was added to what Redis counts (once for each key and period)`);
      done();
    },
    (err: Error) => {
      warn(`Redis: the state file's spend could not be added to Redis yet (${err.message}); trying again in 5 s`);
      setTimeout(() => seedUntilDone(client, entries, done), 5000).unref();
    },
  );
}

/**
 * Connects to Redis and shares limits through it: the limiter to use (its client is there too,
 * for /healthz and the shared events). `seedFrom`: the state file's spend, migrated once Redis is
 * first up (by the process that holds the state file).
 */
export function shareLimits(options: {
  readonly address: RedisAddress;
  readonly timeoutMs: number;
  readonly holdMs: number;
  readonly failure: RedisFailurePolicy;
  readonly local: Limiter;
  readonly metrics: Metrics;
  readonly seedFrom: SpendStore | null;
  readonly owner?: string | null;
}): SharedLimiter {
  let limiter: SharedLimiter | null = null;
  let seeding = false;
  const migration = spendToMigrate(options.seedFrom);
  const client: RedisClient = new RedisClient({
    address: options.address,
    connectTimeoutMs: Math.max(1000, options.timeoutMs * 10),
    staleMs: Math.max(1000, options.timeoutMs * 10),
    onState: (error) => {
      limiter?.connectionChanged(error);
      if (error === null && migration !== null && !seeding) {
        seeding = true;
        seedUntilDone(client, migration.entries, migration.done);
      }
    },
  });
  const migrationPending = (): boolean => options.seedFrom?.countedInRedis === false;
  limiter = new SharedLimiter({ client, local: options.local, timeoutMs: options.timeoutMs, holdMs: options.holdMs, failure: options.failure, metrics: options.metrics, owner: options.owner ?? null, migrationPending });
  client.connect();
  return limiter;
}

/** A cluster primary holds the state file but serves nothing: it only migrates the spend, then lets go of Redis. */
export function seedWhenUp(address: RedisAddress, store: SpendStore): void {
  const migration = spendToMigrate(store);
  if (migration === null) return;
  let seeding = false;
  const client: RedisClient = new RedisClient({
    address,
    connectTimeoutMs: 5000,
    staleMs: 5000,
    onState: (error) => {
      if (error !== null || seeding) return;
      seeding = true;
      seedUntilDone(client, migration.entries, () => {
        migration.done();
        client.close();
      });
    },
  });
  client.connect();
}
