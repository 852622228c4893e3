/**
 * OpenAI and every OpenAI-compatible upstream (DeepSeek, vLLM, Ollama, Azure's v1 API…).
 * Translation is the identity: the client's bytes go up unchanged unless the gateway must ask
 * for stream usage, and the upstream's bytes come back unchanged.
 */
import { GatewayError } from '../errors.js';
import { isRecord, type ChatCompletion, type ChatRequest } from '../openai-types.js';
import type { PrepareInput, Provider, StreamOptions, StreamOutput, StreamTranslator, TranslatedResponse, UpstreamCall } from './types.js';

export interface OpenAICompatibleOptions {
  name: string;
  defaultBaseUrl: string;
  /** Provider-specific rewrite of the request; returns null when nothing must change. */
  rewrite?: (request: ChatRequest) => ChatRequest | null;
}

const STREAM_USAGE_FIELD = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * The body to send: the client's own bytes when possible. For streams the gateway always asks
 * for usage (so every log entry has token counts); when the client sent no `stream_options`,
 * the field is spliced in after the opening brace instead of re-serialising the whole body.
 */
export function upstreamBody(request: ChatRequest, raw: Buffer, rewritten: ChatRequest | null): Buffer | string {
  const options = request.stream_options;
  const needsUsage = request.stream === true && !(isRecord(options) && options.include_usage === true);
  if (rewritten === null && !needsUsage) return raw;
  if (rewritten === null && !('stream_options' in request)) {
    const brace = raw.indexOf(0x7b /* { */);
    return Buffer.concat([raw.subarray(0, brace + 1), STREAM_USAGE_FIELD, raw.subarray(brace + 1)]);
  }
  const body = rewritten ?? { ...request };
  if (needsUsage) body.stream_options = { ...(isRecord(options) ? options : {}), include_usage: true };
  return JSON.stringify(body);
}

export function parseCompletion(body: Buffer): ChatCompletion {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalidAnswer('its answer is not JSON');
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.choices)) throw invalidAnswer('its answer has no `choices` array');
  return parsed as ChatCompletion;
}

function invalidAnswer(why: string): GatewayError {
  return new GatewayError(502, `The provider sent an answer the gateway cannot read: ${why}.`, { code: 'upstream_invalid_response' });
}

/** OpenAI stream chunks pass through byte for byte; only the usage the client did not ask for is held back. */
export function passThroughStream(options: StreamOptions): StreamTranslator {
  return {
    event(event): StreamOutput[] {
      const data = event.data;
      if (data === '[DONE]') return [{ kind: 'done' }];
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        return [{ kind: 'error', error: invalidAnswer('a stream event is not JSON') }];
      }
      if (!isRecord(chunk)) return [{ kind: 'error', error: invalidAnswer('a stream event is not an object') }];
      if (chunk.error !== undefined && chunk.error !== null) return [{ kind: 'error', error: midStreamError(chunk.error) }];
      if (!options.clientWantsUsage && isRecord(chunk.usage)) {
        // Usage-only chunk (OpenAI) → log only; usage on a content chunk (DeepSeek) → strip it.
        if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return [{ kind: 'chunk', chunk, data: null }];
        const { usage: _usage, ...visible } = chunk;
        return [{ kind: 'chunk', chunk, data: JSON.stringify(visible) }];
      }
      return [{ kind: 'chunk', chunk, data }];
    },
  };
}

function midStreamError(error: unknown): GatewayError {
  const detail = isRecord(error) ? error : {};
  const message = typeof detail.message === 'string' ? detail.message : typeof error === 'string' ? error : 'The provider failed mid-stream.';
  return new GatewayError(502, message, {
    type: typeof detail.type === 'string' ? detail.type : 'server_error',
    code: typeof detail.code === 'string' ? detail.code : 'upstream_stream_error',
  });
}

export function createOpenAICompatible(options: OpenAICompatibleOptions): Provider {
  const rewrite = options.rewrite;
  return {
    name: options.name,
    defaultBaseUrl: options.defaultBaseUrl,
    chatPath: '/chat/completions',
    requiresApiKey: true,
    prepare({ request, raw, apiKey }: PrepareInput): UpstreamCall {
      const rewritten = rewrite === undefined ? null : rewrite(request);
      return { body: upstreamBody(request, raw, rewritten), headers: { authorization: `Bearer ${apiKey}` } };
    },
    translateResponse(body: Buffer): TranslatedResponse {
      return { body, completion: parseCompletion(body) };
    },
    streamTranslator: passThroughStream,
  };
}

export const openai: Provider = createOpenAICompatible({ name: 'openai', defaultBaseUrl: 'https://api.openai.com/v1' });
