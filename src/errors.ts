/**
 * One error type for everything the gateway answers with a failure, and the one function that
 * renders it as OpenAI's error body. Callers branch on `code`, never on `message`.
 */

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | (string & {}); // upstream types (e.g. "insufficient_quota") are passed on as they came

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface GatewayErrorOptions {
  type?: ErrorType;
  code?: string | null;
  param?: string | null;
  /** Extra response headers, e.g. `retry-after` or `allow`. */
  headers?: Record<string, string>;
  /** What operators need and clients must not see (an upstream host, a parse error); logged only. */
  logDetail?: string;
  /** A failure in which nothing reached the provider, so trying again cannot bill twice. */
  retryable?: boolean;
}

export class GatewayError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string> | undefined;
  readonly logDetail: string | undefined;
  readonly retryable: boolean;

  constructor(status: number, message: string, options: GatewayErrorOptions = {}) {
    super(message);
    this.name = 'GatewayError';
    this.status = status;
    this.type = options.type ?? defaultType(status);
    this.code = options.code ?? null;
    this.param = options.param ?? null;
    this.headers = options.headers;
    this.logDetail = options.logDetail;
    this.retryable = options.retryable ?? false;
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** The same error answered with another status (its type kept). */
  withStatus(status: number): GatewayError {
    return this.with({ status });
  }

  /** The same error with some parts changed: every other part is kept, one added later included. */
  with(changes: { readonly status?: number; readonly message?: string; readonly param?: string }): GatewayError {
    return new GatewayError(changes.status ?? this.status, changes.message ?? this.message, {
      type: this.type,
      code: this.code,
      param: changes.param ?? this.param,
      ...(this.headers === undefined ? {} : { headers: this.headers }),
      ...(this.logDetail === undefined ? {} : { logDetail: this.logDetail }),
      retryable: this.retryable,
    });
  }
}

function defaultType(status: number): ErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** Anything thrown that is not a GatewayError is a bug: the client gets a bare 500, never a stack. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError(500, 'The gateway hit an unexpected error. The request id identifies it in the logs.', {
    code: 'internal_error',
    logDetail: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
}

export function invalidRequest(message: string, param: string | null = null, code = 'invalid_request'): GatewayError {
  return new GatewayError(400, message, { param, code });
}

/** How providers word a prompt larger than the model's context (OpenAI, DeepSeek, vLLM, Anthropic). */
const CONTEXT_TOO_LONG = /context.{0,20}(length|window).{0,40}(exceed|too)|exceed.{0,40}context|prompt is too long|maximum context length|too many (input )?tokens/i;

/** Whether an error is a provider saying the prompt does not fit the model's context: agents compact on it. */
export function isContextOverflow(error: GatewayError): boolean {
  return /context_length_exceeded/.test(`${error.code ?? ''} ${error.type}`) || (error.status === 400 && CONTEXT_TOO_LONG.test(error.message));
}

/**
 * The code OpenAI gives for what clients act on (LangChain raises its context overflow on
 * `context_length_exceeded`; Codex stops on it and on `insufficient_quota`, and waits on
 * `rate_limit_exceeded`), whatever the provider said it in (Anthropic's errors carry only a type,
 * its overflow only words); null for anything else. A quota is checked before a 429.
 */
export function openAiCode(error: GatewayError): 'context_length_exceeded' | 'insufficient_quota' | 'rate_limit_exceeded' | null {
  const said = `${error.code ?? ''} ${error.type}`;
  if (isContextOverflow(error)) return 'context_length_exceeded';
  if (/insufficient_quota|billing/.test(said) || error.status === 402) return 'insufficient_quota';
  if (error.status === 429 || /rate_limit/.test(said)) return 'rate_limit_exceeded';
  return null;
}

/** An error as an OpenAI client's body (Chat Completions, Responses), with OpenAI's code where the provider gave none. */
export function openAiErrorBody(error: GatewayError): ErrorBody {
  const body = error.toBody();
  if (body.error.code === null) body.error.code = openAiCode(error);
  return body;
}
