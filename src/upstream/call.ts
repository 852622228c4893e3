/**
 * One call to a target with the resilience a production gateway needs: the next real key in turn
 * (those the provider rate-limited or rejected sit out), and retries before any byte has reached
 * the client — for a connection failure in which nothing was sent, 429, 500, 502, 503, 504 or 529
 * only, with exponential backoff and jitter, honouring `retry-after` up to a cap. Every attempt
 * is recorded (its real key by index, its URL, what came back).
 */
import { Readable } from 'node:stream';
import type { Cancellation } from './cancel.js';
import { toGatewayError } from '../errors.js';
import { refusalOf, type Refusal } from './errors.js';
import type { HttpClient } from './http-client.js';
import { ERROR_BODY_LIMIT, readAll } from './read.js';
import { sendUpstream, type SendProgress } from './send.js';
import type { Endpoint, UpstreamPolicy, UpstreamRequest, UpstreamResponse } from './types.js';

const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504, 529]);
/** No real keys (a call's answer made on the first attempt allocates no set of them). */
const NO_KEYS: ReadonlySet<number> = new Set();
const BACKOFF_BASE_MS = 250;
/**
 * A 403's or 429's body is read to tell what it refuses (errors.ts, refusalOf), waiting at most this
 * long for its next bytes: one that does not come says nothing more, and the status decides alone.
 */
const REFUSAL_READ_MS = 2000;
/** A real key whose quota is used up sits out as long as a rejected one (policy/key-pool.ts). */
const QUOTA_COOLDOWN_MS = 300_000;
/** A used-up quota is answered x-should-retry: false unless another real key is free within this long (an SDK's retries span about that). */
const QUOTA_RETRY_WINDOW_MS = 60_000;

/** How calls reach providers: the client that holds the connections, and the policy they follow. */
export interface Upstream {
  readonly client: HttpClient;
  readonly policy: UpstreamPolicy;
}

/** One call to the provider, for the log: which real key (its index, never its value), where, what came back, how long. */
export interface UpstreamAttempt {
  api_key: number;
  /** Scheme, host and path (never a query string or a key). */
  url: string;
  status: number | null;
  /** The error code when no answer came (a connection failure). */
  error: string | null;
  duration_ms: number;
  /** Which of the key's targets it went to (a key with several). */
  target?: number;
}

/** Where a call records its attempts, and when it started waiting for the provider. */
export interface CallRecord {
  /** The virtual key the call is made for (null: none): its calls have connections of their own. */
  readonly virtualKey: string | null;
  upstreamStartedAt: number | null;
  readonly attempts: UpstreamAttempt[];
  /** Attempts written whole to the provider that got no answer (timed out, cut, the client gone): it may have run them. */
  unansweredSends: number;
}

/** A pool of real keys that take turns and sit out cool-downs (policy/key-pool.ts). */
export interface KeyTurns {
  readonly apiKeys: readonly string[];
  /** The index of the real key to use next: one not in `skip` while there is one. */
  pick(skip?: ReadonlySet<number>): number;
  /** Whether a real key other than `index`, and not in `skip`, is not cooling down (`withinMs`: or will not be within that long). */
  otherAvailable(index: number, skip?: ReadonlySet<number>, withinMs?: number): boolean;
  /** The provider answered `status` for key `index` (a 429 or 401/403 sends it into cool-down). */
  report(index: number, status: number, retryAfterMs: number | null): void;
}

export interface CallResult {
  readonly upstream: UpstreamResponse;
  /** What the final answer refused, where its body said (errors.ts, refusalOf): a model refusal is no failure of the target. */
  readonly refusal: Refusal;
}

/**
 * What a 403's or 429's body refuses, with the answer its body is kept in for the caller; a body
 * cut, or not whole within `ms` (a whole-read bound, not only an idle one: a body that drips a
 * byte at a time is not waited for), says nothing, and the status decides alone.
 */
async function readRefusal(answer: UpstreamResponse, cancel: Cancellation, ms: number): Promise<{ answer: UpstreamResponse; refusal: Refusal }> {
  if (ms <= 0) return { answer, refusal: null };
  const late = setTimeout(() => answer.body.destroy(), ms);
  try {
    const body = await readAll(answer.body, { limit: ERROR_BODY_LIMIT, truncate: true, cancel, idleMs: ms });
    return { answer: { ...answer, body: Readable.from([body]) }, refusal: refusalOf(answer.status, body) };
  } catch (err) {
    if (cancel.cancelled) throw err;
    return { answer: { ...answer, body: Readable.from([]) }, refusal: null };
  } finally {
    clearTimeout(late);
  }
}

/** Exponential backoff with jitter (between half and all of 250 ms × 2^attempt), at least retry-after, at most the cap. */
export function backoffMs(attempt: number, retryAfter: number | null, maxDelayMs: number, random = Math.random): number {
  const exponential = BACKOFF_BASE_MS * 2 ** attempt;
  const jittered = exponential * (0.5 + random() / 2);
  return Math.min(maxDelayMs, Math.max(jittered, retryAfter ?? 0));
}

/** Milliseconds from a `retry-after` header (seconds or an HTTP date), or from `retry-after-ms`. */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | null {
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+(\.\d+)?$/.test(ms.trim())) return Number(ms);
  const value = headers['retry-after'];
  if (typeof value !== 'string') return null;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

function wait(ms: number, cancel: Cancellation): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ms <= 0) return resolve();
    const onCancel = (): void => {
      clearTimeout(timer);
      reject(cancel.reason);
    };
    const timer = setTimeout(() => {
      cancel.offCancel(onCancel);
      resolve();
    }, ms);
    cancel.onCancel(onCancel);
  });
}

/** How long an attempt waits for response headers, and the setting that said so (named in its 504). */
export interface HeadersWait {
  readonly ms: number;
  readonly setting: string;
}

/**
 * Calls `endpoint` with the request `build` makes for a real key (built again only when the key
 * changes), retrying as the policy says; resolves with the answer that is final: a success, an
 * error status not worth retrying, or the last attempt's.
 */
export async function callWithRetries(
  upstream: Upstream,
  keys: KeyTurns,
  endpoint: Endpoint,
  build: (apiKey: string) => UpstreamRequest,
  cancel: Cancellation,
  record: CallRecord,
  /** performance.now() after which no retry starts and no attempt waits for headers (the request's overall bound). */
  deadline = Infinity,
  /** This call's wait for response headers, when not the policy's (a key's `timeout_ms`), and the setting its 504 names. */
  headersWait: HeadersWait = { ms: upstream.policy.timeoutMs, setting: 'UPSTREAM_TIMEOUT_MS' },
  /** Attempts after the first, when not the policy's (a key's targets before its last get none: the next target is the retry). */
  retries = upstream.policy.retries,
  /** A hand-over to another real key is no retry (a key's targets before its last: one attempt per real key). */
  freeHandOvers = false,
): Promise<CallResult> {
  const policy = upstream.policy;
  let request: UpstreamRequest | null = null;
  let requestKey = -1;
  /** Real keys that refused the model in this call (other projects may have it): not asked again. */
  let refusedModel: ReadonlySet<number> = NO_KEYS;
  /** The last rate limit met in this call, read whole: the answer rather than a later model refusal (a key that has the model is only cooling). */
  let rateLimited: UpstreamResponse | null = null;
  for (let attempt = 0; ; attempt++) {
    const index = keys.pick(refusedModel);
    const apiKey = keys.apiKeys[index] ?? '';
    if (request === null || index !== requestKey) {
      // Each virtual key and real key its own connections: a provider's answer out of turn (HTTP/1.1
      // names no request) reaches no other tenant's request, though tenants often share a real key.
      request = { ...build(apiKey), partition: record.virtualKey === null ? apiKey : `${apiKey} ${record.virtualKey}` };
      requestKey = index;
    }
    const started = performance.now();
    record.upstreamStartedAt ??= started; // retries and their waits count as the provider's time
    const lastChance = attempt >= retries;
    // The overall bound holds for the attempt under way too: its wait for headers ends with it.
    const left = Math.max(0, Math.round(deadline - started));
    const bounded = left < headersWait.ms;
    let answer: UpstreamResponse;
    const progress: SendProgress = { sent: false };
    try {
      // Bounded, the wait is what was left: the 504 names the bound itself, not only the remainder.
      answer = await sendUpstream(upstream.client, endpoint, request, cancel, bounded ? left : headersWait.ms, bounded ? `UPSTREAM_TOTAL_TIMEOUT_MS: ${policy.totalTimeoutMs} ms since the request arrived` : headersWait.setting, progress);
    } catch (err) {
      const error = toGatewayError(err);
      record.attempts.push({ api_key: index, url: endpoint.url, status: null, error: error.code, duration_ms: Math.round(performance.now() - started) });
      if (progress.sent) record.unansweredSends++;
      // Only a failure in which nothing reached the provider is tried again (never a reset after
      // the request was written: it may have been processed and billed).
      const delay = backoffMs(attempt, null, policy.retryMaxDelayMs);
      if (!error.retryable || lastChance || cancel.cancelled || performance.now() + delay >= deadline) throw err;
      await wait(delay, cancel);
      continue;
    }
    const status = answer.status;
    const retryAfter = retryAfterMs(answer.headers);
    const elapsed = Math.round(performance.now() - started);
    if (answer.resent === true) record.attempts.push({ api_key: index, url: endpoint.url, status: null, error: 'stale_connection', duration_ms: elapsed });
    record.attempts.push({ api_key: index, url: endpoint.url, status, error: null, duration_ms: elapsed });
    // A 403 may refuse the model rather than the key (which serves other models: no cool-down), a
    // 429 the key's quota rather than its rate (it sits out long, and is not retried on it): their
    // bodies, small, are read to tell, and kept for the caller.
    let refusal: Refusal = null;
    if (status === 403 || status === 429) ({ answer, refusal } = await readRefusal(answer, cancel, Math.min(REFUSAL_READ_MS, policy.idleTimeoutMs, Math.ceil(deadline - performance.now()))));
    if (refusal === 'model') refusedModel = new Set([...refusedModel, index]);
    else keys.report(index, status, refusal === 'quota' ? QUOTA_COOLDOWN_MS : retryAfter);
    if (status === 429 && refusal === null) rateLimited = answer;
    // Another real key that is not cooling down (nor refused the model): a rate-limited or rejected
    // key hands over at once (the provider did not process the request), whatever its retry-after says.
    // After a model refusal, a key not asked for it yet is asked even while it cools (it may have the
    // model: its 429 and retry-after, rather than a 404, is then the answer).
    const handOver = (status === 429 || status === 401 || status === 403) && (keys.otherAvailable(index, refusedModel) || (refusal === 'model' && refusedModel.size < keys.apiKeys.length));
    const retry = handOver || (RETRYABLE_STATUSES.has(status) && refusal !== 'quota' && (retryAfter === null || retryAfter <= policy.retryMaxDelayMs));
    const delay = handOver ? 0 : backoffMs(attempt, retryAfter, policy.retryMaxDelayMs);
    // Bounded by the keys: a 429 with `retry-after: 0` cools nothing, and two keys could take turns
    // for ever. A model refusal is bounded by them too, each asked once (refusedModel), whatever the retries.
    const freeHandOver = handOver && (refusal === 'model' || (freeHandOvers && attempt + 1 < keys.apiKeys.length));
    if (!retry || (lastChance && !freeHandOver) || performance.now() + delay >= deadline) {
      // A used-up quota and no other real key free within a minute: the client's SDK is told not to retry.
      if (refusal === 'quota' && !keys.otherAvailable(index, refusedModel, QUOTA_RETRY_WINDOW_MS)) answer = { ...answer, noRetry: true };
      // A model refused here, and a key that may have it rate-limited: its 429 (and retry-after) is the answer.
      if (refusal === 'model' && rateLimited !== null) return { upstream: rateLimited, refusal: null };
      return { upstream: answer, refusal };
    }
    answer.abort(); // its answer is not needed: another attempt follows
    await wait(delay, cancel);
  }
}
