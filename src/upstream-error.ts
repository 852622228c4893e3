/**
 * An upstream's error answer → the error the client gets. Understands OpenAI's and DeepSeek's
 * `{"error":{message,type,param,code}}`, Anthropic's `{"type":"error","error":{type,message}}`,
 * the `{"error":"text"}` of some OpenAI-compatible servers, and plain text.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from './errors.js';
import { isRecord } from './openai-types.js';

export interface UpstreamErrorInfo {
  message: string | null;
  type: string | null;
  code: string | null;
  param: string | null;
}

export function parseUpstreamError(body: Buffer): UpstreamErrorInfo {
  const text = body.toString('utf8').trim();
  const info: UpstreamErrorInfo = { message: null, type: null, code: null, param: null };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Plain-text errors (older DeepSeek 422s, proxies) are passed on; HTML error pages are not.
    if (text !== '' && !text.startsWith('<')) info.message = text.slice(0, 1000);
    return info;
  }
  if (!isRecord(parsed)) return info;
  const error = parsed.error;
  if (isRecord(error)) {
    info.message = stringOrNull(error.message);
    info.type = stringOrNull(error.type);
    info.code = stringOrNull(error.code) ?? (typeof error.code === 'number' ? String(error.code) : null);
    info.param = stringOrNull(error.param);
  } else if (typeof error === 'string') {
    info.message = error;
  } else {
    info.message = stringOrNull(parsed.message) ?? stringOrNull(parsed.detail);
  }
  return info;
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/** Masked keys the providers echo back: OpenAI `sk-VKMIs***wjh3` / `sk-proj-****abcd`, DeepSeek `****cd15`. */
const MASKED_KEY = /\bsk-[A-Za-z0-9_-]*\*+[A-Za-z0-9_-]*|\*{4,}[A-Za-z0-9_-]{2,}/g;

/** Removes every trace of the real key(s) from text that may reach a client or a log. */
export function redactKey(text: string, apiKeys: string | readonly string[]): string {
  let clean = text;
  for (const apiKey of typeof apiKeys === 'string' ? [apiKeys] : apiKeys) {
    if (apiKey.length >= 4 && clean.includes(apiKey)) clean = clean.split(apiKey).join('[redacted]');
  }
  return clean.replace(MASKED_KEY, '[redacted]');
}

/** The same error with the real key scrubbed from its message (mid-stream errors come from upstreams). */
export function redactError(error: GatewayError, apiKeys: string | readonly string[]): GatewayError {
  const message = redactKey(error.message, apiKeys);
  if (message === error.message) return error;
  return new GatewayError(error.status, message, { type: error.type, code: error.code, param: error.param, logDetail: error.logDetail });
}

const PASSED_HEADERS = ['retry-after', 'retry-after-ms'] as const;

/**
 * The client-facing error for an upstream error status. A rejected provider key (401/403) is
 * the operator's problem, not the client's: 500 `provider_auth_failed`, without the upstream
 * message (which echoes part of the key).
 */
export function upstreamError(status: number, body: Buffer, headers: IncomingHttpHeaders, apiKey: string | readonly string[]): GatewayError {
  const info = parseUpstreamError(body);
  const upstreamSays = info.message === null ? '' : redactKey(info.message, apiKey);
  if (status === 401 || status === 403) {
    return new GatewayError(
      500,
      `The provider rejected the gateway's API key for this virtual key (upstream status ${status}). The gateway operator must fix the key in the keys file.`,
      { type: 'server_error', code: 'provider_auth_failed', logDetail: `upstream ${status}: ${upstreamSays || '(no message)'}` },
    );
  }
  if (status < 400 || status > 599) {
    return new GatewayError(502, `The provider answered with an unexpected status ${status}.`, {
      code: 'upstream_bad_status',
      logDetail: upstreamSays,
    });
  }
  const passed: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string') passed[name] = value;
  }
  return new GatewayError(status, upstreamSays || `The provider answered with status ${status}.`, {
    ...(info.type === null ? {} : { type: info.type }),
    code: info.code,
    param: info.param,
    headers: passed,
  });
}
