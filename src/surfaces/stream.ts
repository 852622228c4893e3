/**
 * One stream's way from the provider's events to the client's frames: decoded in the provider's
 * API, watched for usage and completeness, translated, framed in the client's API, and assembled
 * for the log. The relay (upstream/relay.ts) moves the bytes; this decides what they say.
 */
import type { ApiTypes, Assembler, StreamOutput } from '../formats/api.js';
import { ForeignStreamError, typedEvent } from '../formats/answer.js';
import { isRecord } from '../formats/json.js';
import { GatewayError } from '../errors.js';
import { JsonSeries } from '../formats/json-series.js';
import type { Route } from '../formats/router.js';
import { sseFrame } from '../formats/sse.js';
import type { StreamItem } from '../formats/stream.js';
import type { AnswerHints, WayBack } from '../formats/translation.js';
import type { Usage } from '../formats/usage.js';
import { cutStream, MAX_ASSEMBLED_STREAM_BYTES } from '../observe/log-caps.js';
import { incompleteStream, type StreamPipeline, type StreamStep } from '../upstream/relay.js';

/** The name of an event a provider sent without one, from its data's `type` (as the API names its events). */
function nameOf(data: string): string | undefined {
  const event = typedEvent(data);
  return event instanceof GatewayError || event instanceof ForeignStreamError ? undefined : event.type;
}

/** Event types that say the provider failed, or nothing at all (Anthropic's `ping`): a stream of nothing else is a refusal. */
const NO_ANSWER_TYPES: ReadonlySet<unknown> = new Set(['error', 'response.failed', 'ping']);

/** A pipeline that also tells, once the stream is over, what it used and what the client got. */
export interface ObservedStream extends StreamPipeline {
  usage(): Usage | null;
  /** The provider's own usage object, as it reported it. */
  rawUsage(): unknown;
  /** The stream's end came (its usage is the whole answer's). */
  complete(): boolean;
  /**
   * The answer as the client would have got it whole, for the log (null when no log is kept).
   * `clean` sees it before a stream too long to keep whole is cut to text.
   */
  response(clean: <T>(answer: T) => T): unknown;
  /** The provider's id for the answer, when its stream said it. */
  answerId(): string | null;
  answerItems(): readonly string[];
  /** Every event of the stream was the provider's error: a refusal, as an error status would be (nothing to charge). */
  refused(): boolean;
}

/**
 * `renamed`: where the key's model map sent the request to another model, the client API's
 * events that name the model, named after the one it asked for (api.ts: `namedAfter`).
 */
export function streamPipeline<C extends ApiTypes>(
  route: Route<C>,
  back: WayBack<C, ApiTypes>,
  output: StreamOutput<C['event']>,
  logged: Assembler<C['event'], C['response']> | null,
  hints: AnswerHints,
  assembledLimit = MAX_ASSEMBLED_STREAM_BYTES,
  renamed: ((event: C['event']) => C['event'] | null) | null = null,
  onComplete: (() => void) | null = null,
): ObservedStream {
  const target = route.target;
  /** Null once the events seen exceed `assembledLimit`: the log keeps what was assembled until then. */
  let assembler = logged;
  let streamedBytes = 0;
  const watch = target.streamWatch();
  const translate = back.stream(hints);
  const passThrough = route.translation.identity;
  // Events forwarded as bytes are parsed only for the log's answer, and mostly repeat each other.
  const forwardedEvents = new JsonSeries();
  /** Whether any event came, and whether every one was the provider's error (a refusal: nothing generated). */
  let began = false;
  let onlyErrors = true;

  /** Counts an event's bytes against the limit; only where a log entry is assembled at all. */
  const seen = (data: string): void => {
    if (logged === null) return;
    streamedBytes += Buffer.byteLength(data);
    if (assembler !== null && streamedBytes > assembledLimit) assembler = null;
  };

  /** Translated items → frames; stops at the end or an error. */
  const deliver = (items: Array<StreamItem<C['event']>>, step: { text: string }): StreamStep | null => {
    for (const given of items) {
      if (given.kind === 'error') return { text: step.text, error: given.error };
      // Renamed, it is framed from the event, not from the provider's text.
      const event = given.kind === 'event' && renamed !== null ? renamed(given.event) : null;
      const item: StreamItem<C['event']> = event === null ? given : { kind: 'event', event };
      if (item.kind === 'event') assembler?.add(item.event);
      step.text += output.frame(item);
      if (item.kind === 'end') return { text: step.text, done: true };
    }
    return null;
  };

  return {
    passThrough,
    notable: target.notable,
    namedEvents: target.namedEvents,
    assembling: logged !== null,
    event(event) {
      began = true;
      // Passing through, an event that says nothing the gateway reads goes out as it came; one
      // named error is read whatever its data says (the client's SDK goes by the name).
      if (passThrough && event.event !== 'error' && !target.notable.test(event.data)) {
        onlyErrors = false;
        this.forwarded(event.data);
        output.passed?.(event.data);
        return { text: sseFrame(event.data, event.event ?? (target.namedEvents ? nameOf(event.data) : undefined)) };
      }
      seen(event.data);
      const step = { text: '' };
      for (const item of target.decodeEvent(event)) {
        // (A Responses provider's error is an event of its own, and so is the response.failed after it.)
        const type = item.kind === 'event' ? (item.event as { type?: unknown }).type : undefined;
        if (item.kind === 'event' && !NO_ANSWER_TYPES.has(type)) onlyErrors = false;
        if (item.kind === 'event') {
          watch.see(item.event);
          // Told once, before the event that completed the answer is framed for the client.
          if (onComplete !== null && watch.complete) {
            const told = onComplete;
            onComplete = null;
            told();
          }
        }
        // A chat provider's [DONE] before any choice finished: passed through, the client sees
        // what the provider sent; translated, it would become a finished answer (end_turn,
        // completed) of whatever came, so it is the cut stream it is.
        else if (item.kind === 'end' && !passThrough && !watch.complete) return { text: step.text, error: incompleteStream() };
        const over = deliver(translate(item) as Array<StreamItem<C['event']>>, step);
        if (over !== null) return over;
        // Passed on, a ping says nothing: held back until something follows it (relay.ts).
        if (passThrough && type === 'ping') return { text: step.text, silent: true };
      }
      return step;
    },
    forwarded(data) {
      seen(data);
      if (assembler === null) return;
      if (assembler.reads !== undefined && !assembler.reads.test(data)) return;
      try {
        const event: unknown = forwardedEvents.parse(data);
        if (isRecord(event)) assembler.add(event as C['event']);
      } catch {
        // it went to the client as the provider sent it; the log keeps what parses
      }
    },
    finish() {
      if (!watch.complete) return null;
      const step = { text: '' };
      deliver(translate({ kind: 'end' }) as Array<StreamItem<C['event']>>, step);
      return step.text;
    },
    passed: (bytes) => {
      began = true;
      onlyErrors = false;
      output.passed?.(bytes);
    },
    failure: (error) => output.frame({ kind: 'error', error }),
    usage: () => watch.usage(),
    rawUsage: () => watch.rawUsage(),
    complete: () => watch.complete,
    said: () => watch.failure?.() ?? null,
    answerId: () => watch.answerId?.() ?? null,
    answerItems: () => watch.answerItems?.() ?? [],
    refused: () => began && onlyErrors,
    response: (clean) => {
      if (logged === null) return null;
      return assembler === null ? cutStream(clean(logged.result()), streamedBytes) : clean(logged.result());
    },
  };
}
