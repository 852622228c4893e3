/**
 * One call to the key's provider, with the resilience a production gateway needs: the next real
 * key in turn (those the provider rate-limited or rejected sit out), and retries before any byte
 * has reached the client — for a connection failure, 429, 500, 502, 503, 504 or 529 only, with
 * exponential backoff and jitter, honouring `retry-after` up to a cap.
 */
import type { Cancellation } from './cancel.js';
import { invalidRequest, toGatewayError } from '../errors.js';
import type { Interaction } from '../observe/interaction.js';
import { otherKeyAvailable, pickKey, reportStatus, retryAfterMs } from '../policy/key-pool.js';
import type { VirtualKey } from '../policy/keys.js';
import type { ChatRequest } from '../formats/chat/types.js';
import type { UpstreamCall } from '../providers/types.js';
import { sendUpstream, type UpstreamResponse } from './send.js';

export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504, 529]);
const BACKOFF_BASE_MS = 250;

export interface RetryPolicy {
  /** Attempts after the first (UPSTREAM_RETRIES). */
  readonly retries: number;
  /** The longest wait before a retry (UPSTREAM_RETRY_MAX_DELAY_MS). */
  readonly maxDelayMs: number;
  readonly timeoutMs: number;
}

/** Exponential backoff with jitter (between half and all of 250 ms × 2^attempt), at least retry-after, at most the cap. */
export function backoffMs(attempt: number, retryAfter: number | null, maxDelayMs: number, random = Math.random): number {
  const exponential = BACKOFF_BASE_MS * 2 ** attempt;
  const jittered = exponential * (0.5 + random() / 2);
  return Math.min(maxDelayMs, Math.max(jittered, retryAfter ?? 0));
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

function prepare(key: VirtualKey, request: ChatRequest, raw: Buffer, apiKey: string): UpstreamCall {
  try {
    return key.provider.prepare({ request, raw, apiKey });
  } catch (err) {
    // JSON nested deeper than the stack allows cannot be re-serialised: the client's problem.
    if (err instanceof RangeError) throw invalidRequest('The request body is nested too deeply to process.', null, 'invalid_body');
    throw err;
  }
}

export interface ProviderAnswer {
  readonly upstream: UpstreamResponse;
  /** The real key that got this answer (for scrubbing it from anything the provider says). */
  readonly apiKey: string;
}

export async function callProvider(key: VirtualKey, request: ChatRequest, raw: Buffer, cancel: Cancellation, interaction: Interaction, policy: RetryPolicy): Promise<ProviderAnswer> {
  const provider = key.provider;
  if (provider.answerLocally !== undefined) {
    interaction.upstreamStartedAt = performance.now();
    return { upstream: provider.answerLocally(request), apiKey: '' };
  }
  const target = key.target as NonNullable<VirtualKey['target']>;
  let call: UpstreamCall | null = null;
  let callKey = -1;
  for (let attempt = 0; ; attempt++) {
    const index = pickKey(key);
    const apiKey = key.apiKeys[index] as string;
    if (call === null || index !== callKey) {
      call = prepare(key, request, raw, apiKey);
      callKey = index;
    }
    const started = performance.now();
    interaction.upstreamStartedAt ??= started; // retries and their waits count as the provider's time
    const lastChance = attempt >= policy.retries;
    let upstream: UpstreamResponse;
    try {
      upstream = await sendUpstream(target, call, cancel, policy.timeoutMs);
    } catch (err) {
      const error = toGatewayError(err);
      interaction.attempts.push({ api_key: index, url: target.url, status: null, error: error.code, duration_ms: Math.round(performance.now() - started) });
      // Only a failure in which nothing reached the provider is tried again (never a reset after
      // the request was written: it may have been processed and billed).
      if (!error.retryable || lastChance || cancel.cancelled) throw err;
      await wait(backoffMs(attempt, null, policy.maxDelayMs), cancel);
      continue;
    }
    const status = upstream.status;
    const retryAfter = retryAfterMs(upstream.headers);
    const elapsed = Math.round(performance.now() - started);
    if (upstream.resent === true) interaction.attempts.push({ api_key: index, url: target.url, status: null, error: 'stale_connection', duration_ms: elapsed });
    reportStatus(key, index, status, retryAfter);
    interaction.attempts.push({ api_key: index, url: target.url, status, error: null, duration_ms: elapsed });
    // Another real key that is not cooling down: a rate-limited or rejected key hands over at once
    // (the provider did not process the request), whatever its retry-after says.
    const handOver = (status === 429 || status === 401 || status === 403) && otherKeyAvailable(key, index);
    const retry = handOver || (RETRYABLE_STATUSES.has(status) && (retryAfter === null || retryAfter <= policy.maxDelayMs));
    if (!retry || lastChance) return { upstream, apiKey };
    upstream.abort(); // its answer is not needed: another attempt follows
    await wait(handOver ? 0 : backoffMs(attempt, retryAfter, policy.maxDelayMs), cancel);
  }
}

