/**
 * An upstream's error answer → the error the client gets. Understands OpenAI's and DeepSeek's
 * `{"error":{message,type,param,code}}`, Anthropic's `{"type":"error","error":{type,message}}`,
 * the `{"error":"text"}` of some OpenAI-compatible servers, and plain text.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors.js';
import { isRecord } from '../formats/json.js';
import { THREAD_ERROR_CODES } from '../formats/messages/threads.js';
import { keySpellings, textWithoutKeys, withoutRuns } from './scrub.js';
import { parseProviderJson } from '../formats/json-limits.js';

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
    parsed = parseProviderJson(text);
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
    // Anthropic says what a client can do about a thread's refusal in details.error_code (a thread
    // not found: its SDK replays the conversation); those codes, and no other, go on with the error.
    const details = isRecord(error.details) ? stringOrNull(error.details.error_code) : null;
    const threadCode = details !== null && THREAD_ERROR_CODES.has(details) ? details : null;
    info.code = stringOrNull(error.code) ?? (typeof error.code === 'number' ? String(error.code) : threadCode);
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

/**
 * Masked keys the providers echo back: OpenAI `sk-VKMIs***wjh3` / `sk-proj-****abcd`, DeepSeek `****cd15`,
 * and other servers' and proxies' `sk-REA...1234`, `sk-abc…1234`, `sk-abXXXX1234` (a mask other than stars
 * only with the key's end after it: `sk-learn...` is text).
 * Linear in the text: the part before the stars is bounded (a masked key shows a few characters),
 * and a run of stars is tried only from its start. Unbounded, a provider's message of 64,000 stars
 * or `sk-sk-sk-…` (which a server may echo from a client's own field) took seconds to scrub, and
 * the event loop with it.
 */
const MASKED_KEY = /\bsk-[A-Za-z0-9_-]{0,64}(?:\*+[A-Za-z0-9_-]*|(?:\.{2,}|…+|•+|X{4,}|x{4,})[A-Za-z0-9_-]{2,})|(?<!\*)\*{4,}[A-Za-z0-9_-]{2,}/g;

/** Removes every trace of the real key(s) from text that may reach a client or a log: the key in any spelling, and masked keys. */
export function redactKey(text: string, apiKeys: string | readonly string[]): string {
  return textWithoutKeys(text, keySpellings(typeof apiKeys === 'string' ? [apiKeys] : apiKeys, 4)).replace(MASKED_KEY, '[redacted]');
}

/**
 * A provider's message (an error, a model list), where it may echo a real key cut short: as
 * redactKey, and any run of KEY_PIECE_CHARS characters or more of a real key goes too, with the
 * mask after it (the key less its last character, its first twenty and `...`, its secret part
 * without its `sk-…-` prefix). A few dozen searches per key: for short texts only on every
 * request (a request id: ~1 µs with one key), not for bodies.
 */
export function redactMessage(text: string, apiKeys: string | readonly string[]): string {
  const keys = typeof apiKeys === 'string' ? [apiKeys] : apiKeys;
  const redacted = redactKey(text, keys);
  const runs: Array<[number, number]> = [];
  for (const key of keys) keyPieces(redacted, key, runs);
  return runs.length === 0 ? redacted : withoutRuns(redacted, runs);
}

/** A run of a real key this long is the key, cut short or masked around it: past any provider's prefix (`sk-ant-api03-`: 13), into its secret. */
const KEY_PIECE_CHARS = 16;
/** Searched for at every ANCHOR_STEP characters of the key: any run of KEY_PIECE_CHARS holds one. */
const ANCHOR_CHARS = 12;
const ANCHOR_STEP = KEY_PIECE_CHARS - ANCHOR_CHARS + 1;
/** What masks the rest of a key after a shown part (`…1234`, `***abcd`, `...wjh3`), read where a run ends. */
const MASK_TAIL = /(?:[*•…]+|\.{2,})[A-Za-z0-9_-]*/y;

/** Adds to `runs` where `text` holds KEY_PIECE_CHARS or more of `key` in a row (with a mask after), found in time linear in the text per anchor. */
function keyPieces(text: string, key: string, runs: Array<[number, number]>): void {
  if (key.length < KEY_PIECE_CHARS + 4 || text.length < KEY_PIECE_CHARS) return; // short keys: whole or nothing (keySpellings)
  for (let from = 0; from + ANCHOR_CHARS <= key.length; from += ANCHOR_STEP) {
    const anchor = key.slice(from, from + ANCHOR_CHARS);
    // Past the end of the run just found: a run is found whole from any of its anchors.
    for (let at = text.indexOf(anchor), after = 0; at !== -1; at = text.indexOf(anchor, Math.max(at + 1, after))) {
      let start = at;
      for (let k = from; start > 0 && k > 0 && text[start - 1] === key[k - 1]; k--) start--;
      let end = at + ANCHOR_CHARS;
      for (let k = from + ANCHOR_CHARS; end < text.length && k < key.length && text[end] === key[k]; k++) end++;
      after = end;
      if (end - start < KEY_PIECE_CHARS) continue;
      MASK_TAIL.lastIndex = end;
      if (MASK_TAIL.test(text)) end = MASK_TAIL.lastIndex;
      runs.push([start, end]);
    }
  }
}

/** The provider's answer broke HTTP/1.1 (`err.code`: llhttp's name for how, HPE_…), in its head or later in its body. */
export function malformedAnswer(err: NodeJS.ErrnoException, url?: string): GatewayError {
  return new GatewayError(502, `The provider's answer is not valid HTTP (${err.code ?? 'parse error'}).`, { code: 'upstream_invalid_response', logDetail: url === undefined ? err.message : `${url}: ${err.message}` });
}

/** Deeper than this, a provider's JSON is not a model list or an error: left out, not walked. */
const MAX_REDACT_DEPTH = 64;

/** A copy of parsed JSON with the real key scrubbed from every string in it, names included. */
export function redactDeep(value: unknown, apiKeys: string | readonly string[], depth = 0): unknown {
  if (typeof value === 'string') return redactMessage(value, apiKeys);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_REDACT_DEPTH) return '[omitted: nested too deeply]';
  if (Array.isArray(value)) return value.map((item: unknown) => redactDeep(item, apiKeys, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) copy[redactMessage(name, apiKeys)] = redactDeep(item, apiKeys, depth + 1);
  return copy;
}

function redactOrNull(text: string | null, apiKeys: string | readonly string[]): string | null {
  return text === null ? null : redactMessage(text, apiKeys);
}

/** Every string a provider's error carries, scrubbed: what reaches a client or a log is only these. */
function redactInfo(info: UpstreamErrorInfo, apiKeys: string | readonly string[]): UpstreamErrorInfo {
  return {
    message: redactOrNull(info.message, apiKeys),
    type: redactOrNull(info.type, apiKeys),
    code: redactOrNull(info.code, apiKeys),
    param: redactOrNull(info.param, apiKeys),
  };
}

/**
 * The same error with the real key scrubbed from every string it carries (mid-stream errors
 * come from upstreams, in every field): message, type, code, param, headers and the log detail.
 */
export function redactError(error: GatewayError, apiKeys: string | readonly string[]): GatewayError {
  const scrub = (text: string): string => redactMessage(text, apiKeys);
  let headers: Record<string, string> | undefined;
  if (error.headers !== undefined) {
    headers = {};
    for (const name in error.headers) headers[name] = scrub(error.headers[name] as string);
  }
  const message = scrub(error.message);
  const type = scrub(error.type);
  const code = redactOrNull(error.code, apiKeys);
  const param = redactOrNull(error.param, apiKeys);
  const logDetail = error.logDetail === undefined ? undefined : scrub(error.logDetail);
  const same =
    message === error.message && type === error.type && code === error.code && param === error.param && logDetail === error.logDetail &&
    (headers === undefined || Object.keys(headers).every((name) => headers[name] === error.headers?.[name]));
  if (same) return error;
  return new GatewayError(error.status, message, { type, code, param, logDetail, ...(headers === undefined ? {} : { headers }), retryable: error.retryable });
}

/**
 * The provider's headers a client gets with its error, and what each may hold: seconds or an HTTP
 * date (retry-after), milliseconds (retry-after-ms). Anything else is no header an SDK can read,
 * and could carry what the provider echoed: dropped.
 */
const PASSED_HEADERS = [
  ['retry-after', /^(?:\d{1,10}|[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT)$/],
  ['retry-after-ms', /^\d{1,12}(?:\.\d{1,6})?$/],
] as const;

/** The provider refused the gateway's real key (401/403): the operator's problem, told without the provider's message (which echoes part of the key). */
function providerAuthFailed(status: number, logDetail: string): GatewayError {
  return new GatewayError(
    500,
    `The provider rejected the gateway's API key for this virtual key (upstream status ${status}). The gateway operator must fix the key in the keys file.`,
    // The official SDKs retry a 5xx twice unless told not to: each retry would fail the same way.
    { type: 'server_error', code: 'provider_auth_failed', logDetail, headers: { 'x-should-retry': 'false' } },
  );
}

export type Refusal = 'model' | 'quota' | null;

/**
 * What a 403 or 429 refuses, where its body says more than its status: the model, not the real key
 * (OpenAI's 403 `model_not_found`, a project not given access to a model: the key still serves
 * others, so it sits out no cool-down, and the client is told as of a model it may not use, 404);
 * or the key's quota, not its rate (OpenAI's 429 `insufficient_quota`: no retry in seconds will
 * pass, so neither the gateway nor the client's SDK retries it). Null for any other answer.
 */
export function refusalOf(status: number, body: Buffer): Refusal {
  return status === 403 || status === 429 ? refusalIn(status, parseUpstreamError(body)) : null;
}

function refusalIn(status: number, info: UpstreamErrorInfo): Refusal {
  if (status === 403) return info.code === 'model_not_found' ? 'model' : null;
  if (status === 429) return info.code === 'insufficient_quota' || info.type === 'insufficient_quota' ? 'quota' : null;
  return null;
}

/** A provider's error in a stream (already scrubbed), as a client may see it: one that says 401 or 403 is told as a refused key is. */
export function streamedUpstreamError(error: GatewayError): GatewayError {
  if (error.status !== 401 && error.status !== 403) return error;
  return providerAuthFailed(error.status, `upstream stream error ${error.status}: ${error.message}`);
}

/**
 * The client-facing error for an upstream error status. A rejected provider key (401/403) is
 * the operator's problem, not the client's: 500 `provider_auth_failed`, without the upstream
 * message (which echoes part of the key).
 */
export function upstreamError(status: number, body: Buffer, headers: IncomingHttpHeaders, apiKey: string | readonly string[], url?: string, noRetry = false): GatewayError {
  const info = redactInfo(parseUpstreamError(body), apiKey);
  const upstreamSays = info.message ?? '';
  const from = url === undefined ? '' : ` from ${url}`;
  if (refusalIn(status, info) === 'model') {
    // The provider's message names the operator's project: the client is told what it can do.
    return new GatewayError(404, "The provider does not give this key's account access to the model asked for; use another model.", {
      type: 'invalid_request_error',
      code: 'model_not_found',
      param: 'model',
      logDetail: `upstream 403${from}: ${upstreamSays || '(no message)'}`,
    });
  }
  if (status === 401 || status === 403) return providerAuthFailed(status, `upstream ${status}${from}: ${upstreamSays || '(no message)'}`);
  // 499 is the gateway's own word for a client that left: a provider's would read as that, and go unanswered.
  if (status < 400 || status > 599 || status === 499) {
    return new GatewayError(502, `The provider answered with an unexpected status ${status}.`, {
      code: 'upstream_bad_status',
      logDetail: `upstream ${status}${from}: ${upstreamSays || '(no message)'}`,
    });
  }
  const passed: Record<string, string> = {};
  for (const [name, shape] of PASSED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string' && shape.test(value.trim())) passed[name] = value.trim();
  }
  // The official SDKs and Claude Code retry a 429 unless told not to (the call's verdict, upstream/call.ts: never the provider's).
  if (noRetry) passed['x-should-retry'] = 'false';
  return new GatewayError(status, upstreamSays || `The provider answered with status ${status}.`, {
    ...(info.type === null ? {} : { type: info.type }),
    code: info.code,
    param: info.param,
    headers: passed,
    // Which URL answered: a bare 404 from a base_url with a doubled /v1 says nothing else.
    logDetail: `upstream ${status}${from}`,
  });
}
