/**
 * Relays an upstream event stream to the client as OpenAI chunks. Every event is written the
 * moment it is complete (events completed by the same read share one write), backpressure from a
 * slow client pauses the upstream, and the client's stream always ends: with `[DONE]`, or with an
 * OpenAI-style error event when the upstream fails mid-stream.
 */
import type { ServerResponse } from 'node:http';
import { CompletionAssembler } from './assemble.js';
import { GatewayError, toGatewayError } from './errors.js';
import type { Interaction } from './interaction.js';
import type { StreamOutput, StreamTranslator } from './providers/types.js';
import { SSE_DONE, SSE_HEADERS, SseParser, sseFrame, type SseEvent } from './sse.js';
import type { UpstreamResponse } from './upstream.js';

const KEEP_ALIVE = ': keep-alive\n\n';

function errorFrame(error: GatewayError): string {
  return sseFrame(JSON.stringify(error.toBody()));
}

/** Resolves once the client's stream is over, whichever way it ended; never rejects. */
export function relayStream(
  upstream: UpstreamResponse,
  res: ServerResponse,
  translator: StreamTranslator,
  interaction: Interaction,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const parser = new SseParser();
    const assembler = new CompletionAssembler();
    const body = upstream.body;
    let over = false;

    res.writeHead(200, SSE_HEADERS);
    interaction.status = 200;

    const finish = (): void => {
      over = true;
      interaction.response = assembler.result();
      interaction.usage = assembler.getUsage();
      signal.removeEventListener('abort', onClientGone);
      resolve();
    };
    const end = (tail: string): void => {
      if (over) return;
      if (interaction.firstByteAt === null) interaction.firstByteAt = performance.now();
      res.end(tail);
      finish();
      // The rest of the upstream body (if any) is read and dropped so its connection can be reused.
      body.resume();
    };
    const fail = (error: GatewayError, text = ''): void => {
      interaction.error = error;
      end(text + errorFrame(error));
    };
    const resume = (): void => {
      body.resume();
    };
    const write = (text: string): void => {
      if (interaction.firstByteAt === null) interaction.firstByteAt = performance.now();
      if (!res.write(text)) {
        body.pause();
        res.once('drain', resume);
      }
    };

    /** Translates events; returns true when the stream is over. */
    const handle = (events: SseEvent[]): boolean => {
      let text = '';
      for (const event of events) {
        let outputs: StreamOutput[];
        try {
          outputs = translator.event(event);
        } catch (err) {
          outputs = [{ kind: 'error', error: toGatewayError(err) }];
        }
        for (const output of outputs) {
          if (output.kind === 'chunk') {
            assembler.add(output.chunk);
            if (output.data !== null) text += sseFrame(output.data);
          } else if (output.kind === 'done') {
            end(text + SSE_DONE);
            return true;
          } else {
            fail(output.error, text);
            return true;
          }
        }
      }
      if (text !== '') write(text);
      return false;
    };

    const onData = (chunk: Buffer): void => {
      if (over) return;
      const comments = parser.comments;
      const events = parser.push(chunk);
      if (events.length === 0) {
        // Upstream keep-alives (DeepSeek queues) are passed on so the client's idle timers see life.
        if (parser.comments !== comments) write(KEEP_ALIVE);
        return;
      }
      handle(events);
    };
    const onEnd = (): void => {
      if (over) return;
      if (handle(parser.end())) return;
      // Some OpenAI-compatible servers close after the last chunk without `[DONE]`.
      if (assembler.finished) end(SSE_DONE);
      else fail(new GatewayError(502, 'The provider ended the stream before the answer was complete.', { code: 'upstream_incomplete_stream' }));
    };
    const onClose = (): void => {
      if (over || signal.aborted) return;
      fail(new GatewayError(502, 'The connection to the provider was lost mid-stream.', { code: 'upstream_connection_lost' }));
    };
    function onClientGone(): void {
      if (over) return;
      interaction.status = 499;
      upstream.abort();
      finish();
    }

    signal.addEventListener('abort', onClientGone, { once: true });
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('close', onClose);
  });
}
