/**
 * What one request to a client API did, gathered as it happens: it becomes exactly one log entry
 * and one metrics observation. Times are performance.now() values.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayError } from '../errors.js';
import { tooCostly } from '../formats/json-limits.js';
import { skipSpace } from '../formats/json-tokens.js';
import { keptUsage, promptTokens, toLoggedUsage, type Usage } from '../formats/usage.js';
import type { RequestContext } from '../server/context.js';
import type { CallRecord, UpstreamAttempt } from '../upstream/call.js';
import { redactMessage } from '../upstream/errors.js';
import type { RelayRecord } from '../upstream/relay.js';
import type { Holder } from '../upstream/http-client.js';
import { UNSEEN_BODY_MAX_BYTES } from './log-caps.js';
import { loggedRequest, type LogEntry } from './log-render.js';
import type { RequestObservation, TargetOutcome } from './metrics.js';
import type { Target } from '../policy/target.js';
import type { Price } from '../prices/table.js';

/** Ids providers put on their answers: OpenAI `x-request-id`, Anthropic `request-id`, DeepSeek `x-ds-trace-id`. */
const UPSTREAM_ID_HEADERS = ['x-request-id', 'request-id', 'x-ds-trace-id'] as const;

function ms(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** An attempt written whole that got no answer: the provider read its prompt, priced at its model's price (null: none). */
export interface UnansweredSend {
  readonly provider: string;
  readonly model: string;
  readonly price: Price | null;
}

export class Interaction implements CallRecord, RelayRecord {
  /** The virtual key (the interactions log is the one place it appears); an unknown one masked. */
  virtualKey: string | null = null;
  /** The key's name or digest label: what metrics show. */
  keyName: string | null = null;
  /** True once the virtual key matched: only then is it a metrics label. */
  authenticated = false;
  provider: string | null = null;
  /** The model the client asked for, and the one the target was asked for (the key's model map). */
  model: string | null = null;
  upstreamModel: string | null = null;
  stream = false;
  request: unknown = null;
  /** The client's body as read, made into `request` only when an entry is made (no check of its bytes with logs off); `holder`: the pooled memory it is in. */
  private requestRead: { readonly raw: Buffer; readonly picked: unknown; readonly holder: Holder | null; readonly refused: boolean } | null = null;
  response: unknown = null;
  /** The one normalised usage. */
  usage: Usage | null = null;
  /** The usage is the provider's count for the whole answer (its stream's end came, even a failure's), not a count so far. */
  usageFinal = false;
  /** The price of the model the serving target was asked for (null: none in the table, or no target yet). */
  price: Price | null = null;
  /** What the request cost in USD, as charged to its key (null: tokens of a model without a price). */
  costUsd: number | null = 0;
  error: GatewayError | null = null;
  status = 0;
  firstByteAt: number | null = null;
  upstreamStatus: number | null = null;
  upstreamRequestId: string | null = null;
  /** When the gateway started waiting for the provider, got its headers, and got its last byte. */
  upstreamStartedAt: number | null = null;
  unansweredSends = 0;
  /** The model (and its price) each unanswered send was made for, as far as they are attributed (a key's targets differ). */
  private readonly sendModels: UnansweredSend[] = [];
  /** Every call made to the provider for this request (more than one after retries). */
  readonly attempts: UpstreamAttempt[] = [];
  /** The virtual key holds several real keys: their indexes appear in the log. */
  severalKeys = false;
  /** Events relayed to the client (for a usage estimate when a stream is cut short). */
  streamedEvents = 0;
  /** The size of the provider's answer: its body read whole, or its stream's bytes (the log lays a large one out with its growth bounded). */
  answerBytes = 0;
  /** A whole answer that said no usage: its output estimated from its size (~4 bytes per token). */
  unreportedOutput = 0;
  /** The provider's 2xx answer was an error body (some servers and proxies): nothing generated, nothing charged. */
  answeredWithError = false;
  upstreamRespondedAt: number | null = null;
  upstreamEndedAt: number | null = null;
  /** Tools the translation left out (hosted tools only OpenAI runs). */
  droppedTools: readonly string[] = [];
  /** The provider's own usage object, kept where its answer was translated. */
  providerUsage: unknown = null;
  /** For a key with several targets: the one that served (its index), and what each one tried did. */
  target: number | null = null;
  readonly targetOutcomes: TargetOutcome[] = [];
  /** Moves to a next target. */
  fallbacks = 0;

  constructor(readonly context: RequestContext) {}

  /** The request goes to `target` now; `several`: the key has other targets (the log and metrics name which). */
  serving(target: Target, several: boolean): void {
    this.provider = target.provider.name;
    // What an earlier target answered is not this one's: the log names the target beside its own answer (or none).
    this.upstreamStatus = null;
    this.upstreamRequestId = null;
    this.upstreamRespondedAt = null;
    this.severalKeys = target.keys.apiKeys.length > 1;
    // Nor is what an earlier target's answer set, when it was its error after all (moved on from).
    this.error = null;
    this.answeredWithError = false;
    this.usage = null;
    this.usageFinal = false;
    this.providerUsage = null;
    this.response = null;
    this.streamedEvents = 0;
    this.answerBytes = 0;
    this.unreportedOutput = 0;
    this.upstreamEndedAt = null;
    if (several) this.target = target.index;
  }

  /** The last attempt's answer, a 200, held the provider's error: its log entry says which; returned (null: none). */
  declined(error: GatewayError): UpstreamAttempt | null {
    const attempt = this.attempts.at(-1);
    if (attempt === undefined) return null;
    attempt.error = error.code ?? error.type;
    return attempt;
  }

  /** The unanswered sends so far not attributed went to the target now served (its provider, model and price). */
  attributeSends(): void {
    const send = this.servedModel();
    while (this.sendModels.length < this.unansweredSends) this.sendModels.push(send);
  }

  /** What the `i`-th unanswered send asked for (the answering target's model where none was attributed). */
  unansweredSend(i: number): UnansweredSend {
    return this.sendModels[i] ?? this.servedModel();
  }

  private servedModel(): UnansweredSend {
    return { provider: this.provider ?? '', model: this.upstreamModel ?? this.model ?? '', price: this.price };
  }

  fellBack(): void {
    this.fallbacks++;
  }

  targetOutcome(target: Target, outcome: TargetOutcome['outcome']): void {
    this.targetOutcomes.push({ target: target.index, provider: target.provider.name, outcome });
  }

  /** Attempts from `from` on went to target `index`. */
  tagAttempts(from: number, index: number): void {
    for (let i = from; i < this.attempts.length; i++) (this.attempts[i] as UpstreamAttempt).target = index;
  }

  /**
   * The client's body read by `parse`, and kept for the log: what `body` picks of the result (or
   * the client's bytes, for a large body); one `parse` refused is logged as JSON where it is JSON
   * (a body the API's checks refused: `jq '.request.model'` still reads it), as its text where it
   * is not: nothing is lost. `holder`: the pooled memory the bytes are in, which the log holds
   * while its entry views them.
   */
  readRequest<T>(raw: Buffer, parse: (raw: Buffer) => T, body: (parsed: T) => unknown = (parsed) => parsed, holder: Holder | null = null): T {
    let parsed: T;
    try {
      parsed = parse(raw);
    } catch (err) {
      // Logged as JSON only where it is an object or an array (a `null` would read as a body never
      // read, a string as text) that a log reader can take (nested within MAX_DEPTH); one over the
      // cap of a request no provider saw is logged as the head of its text anyway.
      if (raw.length <= UNSEEN_BODY_MAX_BYTES && opensContainer(raw) && tooCostly(raw) === null) this.requestRead = { raw, picked: null, holder, refused: true };
      else this.request = raw.toString('utf8');
      throw err;
    }
    this.requestRead = { raw, picked: body(parsed), holder, refused: false };
    return parsed;
  }

  /** `apiKeys`: scrubbed from the provider's request id, which the log shows (pieces too: a server may put a key, cut short, in it). */
  upstreamAnswered(status: number, headers: IncomingHttpHeaders, now: number, apiKeys: readonly string[]): void {
    this.upstreamStatus = status;
    this.upstreamRespondedAt = now;
    for (const name of UPSTREAM_ID_HEADERS) {
      const value = headers[name];
      if (typeof value === 'string') {
        this.upstreamRequestId = redactMessage(value, apiKeys);
        return;
      }
    }
  }

  /**
   * Time spent in the gateway itself up to `now`: everything except the wait for the provider
   * (from sending the request to its last byte, or to `now` if it is still answering).
   */
  overheadMs(now: number): number {
    const total = now - this.context.startedAt;
    if (this.upstreamStartedAt === null) return total;
    const waited = (this.upstreamEndedAt ?? now) - this.upstreamStartedAt;
    return Math.max(0, total - waited);
  }

  /** `responseBody`: the error body the client got (null when it got none, or saw a stream begin). */
  failed(error: GatewayError, responseBody: unknown): void {
    this.error = error;
    this.status = error.status;
    if (responseBody !== null) this.response = responseBody;
  }

  observation(now: number): RequestObservation {
    const usage = this.usage;
    return {
      provider: this.provider ?? '',
      keyName: this.authenticated ? (this.keyName ?? '') : '',
      model: this.authenticated ? (this.model ?? '') : '',
      modelServed: this.upstreamStatus !== null && this.upstreamStatus >= 200 && this.upstreamStatus < 300,
      status: this.status,
      durationSeconds: (now - this.context.startedAt) / 1000,
      upstreamTtfbSeconds: this.upstreamStartedAt !== null && this.upstreamRespondedAt !== null ? (this.upstreamRespondedAt - this.upstreamStartedAt) / 1000 : null,
      overheadSeconds: this.overheadMs(now) / 1000,
      promptTokens: usage === null ? 0 : promptTokens(usage),
      completionTokens: usage === null ? 0 : usage.output,
      targets: this.targetOutcomes,
      fallbacks: this.fallbacks,
      upstreamModel: this.upstreamModel ?? this.model ?? '',
      costUsd: this.authenticated ? this.costUsd : 0,
    };
  }

  private upstreamEntry(): LogEntry['upstream'] {
    if (this.upstreamStatus === null && this.attempts.length === 0) return null;
    const entry: NonNullable<LogEntry['upstream']> = { status: this.upstreamStatus, request_id: this.upstreamRequestId };
    if (this.target !== null) entry.target = this.target;
    if (this.upstreamModel !== null) entry.model = this.upstreamModel;
    const last = this.attempts.at(-1);
    if (last !== undefined) entry.url = last.url;
    if (this.severalKeys && last !== undefined) entry.api_key = last.api_key;
    // Every attempt when the final answer does not tell the whole story: retries, no answer at
    // all, or an answer the client never got (it left during a backoff).
    if (this.attempts.length > 1 || (last !== undefined && (last.status === null || last.status !== this.upstreamStatus))) entry.attempts = this.attempts;
    if (this.droppedTools.length > 0) entry.dropped_tools = this.droppedTools;
    if (this.providerUsage !== null && this.providerUsage !== undefined) entry.usage = keptUsage(this.providerUsage);
    const skipped = this.targetOutcomes.filter((outcome) => outcome.outcome === 'skipped' || outcome.outcome === 'circuit_open').map((outcome) => outcome.target);
    if (skipped.length > 0) entry.skipped_targets = skipped;
    return entry;
  }

  toEntry(now: number): LogEntry {
    const context = this.context;
    const error = this.error;
    // Built in the documented field order; undefined fields are left out by JSON.stringify.
    return {
      timestamp: new Date(Date.now() - (now - context.startedAt)).toISOString(),
      request_id: context.id,
      virtual_key: this.virtualKey,
      key_name: this.keyName,
      provider: this.provider,
      model: this.model,
      method: context.method,
      path: context.path,
      status: this.status,
      duration_ms: ms(now - context.startedAt),
      stream: this.stream,
      ttfb_ms: this.stream ? (this.firstByteAt === null ? null : ms(this.firstByteAt - context.startedAt)) : undefined,
      usage: this.usage === null ? null : toLoggedUsage(this.usage),
      cost_usd: this.costUsd,
      request: this.requestRead === null ? this.request : loggedRequest(this.requestRead.raw, this.requestRead.picked, this.requestRead.holder, this.requestRead.refused),
      response: this.response,
      error: error === null ? undefined : { message: error.message, type: error.type, code: error.code, detail: error.logDetail },
      upstream: this.upstreamEntry(),
    };
  }
}

/** Whether the bytes' first character past whitespace opens an object or an array. */
function opensContainer(raw: Buffer): boolean {
  const first = raw[skipSpace(raw, 0)];
  return first === 0x7b || first === 0x5b;
}
