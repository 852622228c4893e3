/**
 * OpenAI and every OpenAI-compatible upstream (DeepSeek, vLLM, Ollama, Azure's v1 API…).
 * Translation is the identity: the client's bytes go up unchanged unless the gateway must ask
 * for stream usage, and the upstream's bytes come back unchanged.
 */
import { GatewayError } from '../errors.js';
import { invalidAnswer, parseAnswer } from './answer.js';
import { isRecord, type ChatCompletion, type ChatRequest, type Usage } from '../formats/chat/types.js';
import type { ModelList, PrepareInput, Provider, StreamOptions, StreamOutput, StreamTranslator, TranslatedResponse, UpstreamCall } from './types.js';

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
  return parseAnswer(body, 'answer', 'choices') as ChatCompletion;
}

/**
 * A pass-through answer: the upstream's bytes go to the client as they are, once they parse as a
 * whole completion. Only a full parse tells: a body cut short by a wrong content-length still
 * starts like one, and must not reach a client as a 200.
 */
export function passThroughResponse(body: Buffer): TranslatedResponse {
  const completion = parseCompletion(body);
  return { body, usage: isRecord(completion.usage) ? (completion.usage as Usage) : null, completion: () => completion };
}

/**
 * OpenAI stream chunks pass through byte for byte; only the usage the client did not ask for is
 * held back. With no log to assemble, a chunk is parsed only when it may matter: an error, or a
 * usage object (a key match: quotes inside JSON strings are escaped, so content cannot match).
 */
export function passThroughStream(options: StreamOptions): StreamTranslator {
  return {
    passThrough: true,
    event(event): StreamOutput[] {
      const data = event.data;
      if (data === '[DONE]') return [{ kind: 'done' }];
      if (!options.assemble && !data.includes('"error"') && !USAGE_OBJECT.test(data)) {
        return [{ kind: 'chunk', chunk: null, data, finish: FINISH.test(data) }];
      }
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        return [{ kind: 'error', error: invalidAnswer('a stream event is not JSON') }];
      }
      if (!isRecord(chunk)) return [{ kind: 'error', error: invalidAnswer('a stream event is not an object') }];
      if (chunk.error !== undefined && chunk.error !== null) return [{ kind: 'error', error: midStreamError(chunk.error) }];
      // vLLM and other OpenAI-compatible servers send a bare error object mid-stream.
      if (chunk.object === 'error') return [{ kind: 'error', error: midStreamError(chunk) }];
      const finish = Array.isArray(chunk.choices) && chunk.choices.some((choice: unknown) => isRecord(choice) && typeof choice.finish_reason === 'string');
      if (!options.clientWantsUsage && isRecord(chunk.usage)) {
        // Usage-only chunk (OpenAI) → log only; usage on a content chunk (DeepSeek) → strip it.
        if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return [{ kind: 'chunk', chunk, data: null, finish }];
        const { usage: _usage, ...visible } = chunk;
        return [{ kind: 'chunk', chunk, data: JSON.stringify(visible), finish }];
      }
      return [{ kind: 'chunk', chunk, data, finish }];
    },
  };
}

const USAGE_OBJECT = /"usage"\s*:\s*\{/;
const FINISH = /"finish_reason"\s*:\s*"/;

function midStreamError(error: unknown): GatewayError {
  const detail = isRecord(error) ? error : {};
  const message = typeof detail.message === 'string' ? detail.message : typeof error === 'string' ? error : 'The provider failed mid-stream.';
  return new GatewayError(502, message, {
    type: typeof detail.type === 'string' ? detail.type : 'server_error',
    code: typeof detail.code === 'string' ? detail.code : 'upstream_stream_error',
    param: typeof detail.param === 'string' ? detail.param : null,
  });
}

/** An OpenAI-format model list, checked for its shape; passed on as it is. */
export function openAIModels(body: Buffer): ModelList {
  const parsed = parseAnswer(body, 'model list', 'data');
  const data = (parsed.data as unknown[]).filter((model: unknown): model is Record<string, unknown> => isRecord(model) && typeof model.id === 'string');
  return {
    object: 'list',
    data: data.map((model) => ({
      ...model,
      id: model.id as string,
      object: 'model',
      created: typeof model.created === 'number' ? model.created : 0,
      owned_by: typeof model.owned_by === 'string' ? model.owned_by : 'system',
    })),
  };
}

const bearer = (apiKey: string): Record<string, string> => ({ authorization: `Bearer ${apiKey}` });

export function createOpenAICompatible(options: OpenAICompatibleOptions): Provider {
  const rewrite = options.rewrite;
  return {
    name: options.name,
    defaultBaseUrl: options.defaultBaseUrl,
    chatPath: '/chat/completions',
    modelsPath: '/models',
    requiresApiKey: true,
    authHeaders: bearer,
    translateModels: openAIModels,
    prepare({ request, raw, apiKey }: PrepareInput): UpstreamCall {
      const rewritten = rewrite === undefined ? null : rewrite(request);
      return { body: upstreamBody(request, raw, rewritten), headers: bearer(apiKey) };
    },
    translateResponse: passThroughResponse,
    streamTranslator: passThroughStream,
  };
}

export const openai: Provider = createOpenAICompatible({ name: 'openai', defaultBaseUrl: 'https://api.openai.com/v1' });
