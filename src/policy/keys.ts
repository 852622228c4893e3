/**
 * keys.json → virtual keys. Validation reports every problem at once (with the file and the key
 * it concerns, never the key itself), so an operator fixes the file in one pass; a valid file is
 * also checked for what will not work (placeholder keys, a doubled /v1).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isRecord } from '../formats/json.js';
import { duplicateKeys } from '../formats/json-keys.js';
import type { Provider } from '../providers/types.js';
import type { ApiName } from '../formats/api.js';
import { API_NAMES, TARGET_APIS } from '../formats/apis.js';
import { FAILURES_TO_OPEN, OPEN_MS, type BreakerSettings } from './breaker.js';
import { createTarget, type Target } from './target.js';
import { modelMap, type ModelMap } from './model-map.js';
import { ConfigFileError, fieldPath, linesOf, maybeSecret, quoted } from '../config-file-error.js';
import { isPlaceholder } from './placeholder.js';
import { spendPeriod } from './limits.js';
import { guardsRealKey, NO_KEY, publishedKeyProblem, publishedKeyWarning } from './published-keys.js';
import { closestName } from '../closest-name.js';
import { keySpellings, manyKeysRedactor, MIN_KEY_LENGTH } from '../upstream/scrub.js';

/** Which models a virtual key may use: exact names and `prefix*` patterns. */
export interface ModelAllowlist {
  readonly patterns: readonly string[];
  allows(model: string): boolean;
}

export interface RateLimit {
  readonly requestsPerMinute: number | null;
  readonly tokensPerMinute: number | null;
}

export type BudgetPeriod = 'day' | 'month' | 'total';

/** A budget in tokens, in USD, or both (whichever is reached first refuses). */
export interface Budget {
  readonly maxTokens: number | null;
  readonly maxUsd: number | null;
  readonly period: BudgetPeriod;
}

export type Strategy = 'fallback' | 'weighted';

/**
 * The statuses a request moves on after, unless the key says others: the provider's trouble, not
 * the request's. A 401 or 403 is the target's real key refused (or not allowed the model): the
 * operator's to fix, and no reason to fail a request another target can serve.
 */
const DEFAULT_FALLBACK_ON: readonly number[] = [401, 403, 429, 500, 502, 503, 504, 529];
/** Statuses that say the request itself is wrong: another target would refuse it too. */
const NEVER_FALLBACK_ON = new Set([400, 404, 422]);

export interface VirtualKey {
  /** The virtual key as written in the file: a credential, shown only in the interactions log. */
  readonly id: string;
  /** The optional `name` from the file. */
  readonly name: string | null;
  /**
   * How the key is known everywhere but the interactions log (metrics, stderr): its name, else a
   * short prefix of its SHA-256 (`sha256:3f2a…`), from which a long random key cannot be recovered.
   */
  readonly label: string;
  /** SHA-256 of the virtual key: how it is known in state that is written to disk. */
  readonly digest: string;
  /** Where its requests go, in the order the file lists them: a provider, its base URL, real keys, model map. */
  readonly targets: readonly Target[];
  /**
   * Every real key of its targets (and credential in their base URLs), longest first: what a
   * request of this key may have sent to a provider (a fallback's target, another real key in
   * turn), and so what comes out of anything a provider sends back (a shared server may echo
   * another request's key).
   */
  readonly realKeys: readonly string[];
  /** How a request picks among several targets: in order, or the first by weight. */
  readonly strategy: Strategy;
  /** Statuses of a target's answer after which the request moves on to the next target. */
  readonly fallbackOn: ReadonlySet<number>;
  /** The wait for each attempt's response headers, when not UPSTREAM_TIMEOUT_MS (a slow target is left sooner). */
  readonly timeoutMs: number | null;
  /** null: every model is allowed. */
  readonly models: ModelAllowlist | null;
  readonly rateLimit: RateLimit | null;
  readonly budget: Budget | null;
}


/** A target's fields: at the top of a key with one, in each of `targets` otherwise. */
const TARGET_FIELDS = ['provider', 'api_key', 'api_keys', 'base_url', 'api', 'model_map', 'max_output_tokens'];
const KEY_FIELDS = ['name', ...TARGET_FIELDS, 'models', 'rate_limit', 'budget', 'targets', 'strategy', 'fallback_on', 'timeout_ms', 'circuit_breaker'];
const MAX_NAME_LENGTH = 100;
/** A virtual key shorter than this that guards a real provider key is warned about at start: one a person made up can be guessed (the README's `vk_` and 32 hex digits is 35). */
const SHORT_KEY = 20;

/** Never print a virtual key: at most its first 6 characters (a third of it when shorter), then `…`. */
export function maskKey(presented: string): string {
  return `${presented.slice(0, Math.min(6, Math.floor(presented.length / 3)))}…`;
}

/** The metrics label of a key without a name: a digest prefix, stable across restarts. */
function digestLabel(id: string): string {
  return `sha256:${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

/** A key as named in messages on stderr: by its name, else (or when the name may be a real key pasted there) by its place in the file and a masked prefix. */
function describeKey(id: string, name: string | null, position: number): string {
  return name !== null && !maybeSecret(name) ? `virtual key "${name}"` : `virtual key #${position} (${maskKey(id)})`;
}

/** What an unknown field may have meant, and the fields known there: `did you mean "budget"? known: …`. */
function meaning(field: string, known: readonly string[]): string {
  const near = closestName(field, known);
  return `${near === null ? '' : `did you mean "${near}"? `}known: ${known.join(', ')}`;
}

function parseName(value: unknown, id: string, ids: ReadonlySet<string>, problems: string[]): string | null | undefined {
  if (value === undefined) return null;
  if (typeof value !== 'string' || value.trim() === '' || value.length > MAX_NAME_LENGTH || /[\x00-\x1f\x7f]/.test(value)) {
    problems.push(`"name" must be a non-empty string of at most ${MAX_NAME_LENGTH} characters without control characters`);
    return undefined;
  }
  // The name is printed where keys never are: it must not be one.
  if (value === id || ids.has(value)) {
    problems.push('"name" must not be a virtual key: names appear in metrics and on stderr, keys never do');
    return undefined;
  }
  return value;
}
const TOP_FIELDS = ['virtual_keys'];
const PERIODS: readonly BudgetPeriod[] = ['day', 'month', 'total'];

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

export function modelAllowlist(patterns: readonly string[]): ModelAllowlist {
  const exact = new Set(patterns.filter((pattern) => !pattern.endsWith('*')));
  const prefixes = patterns.filter((pattern) => pattern.endsWith('*')).map((pattern) => pattern.slice(0, -1));
  return { patterns, allows: (model) => exact.has(model) || prefixes.some((prefix) => model.startsWith(prefix)) };
}

/** Each parser returns the value, or pushes its problems and returns undefined. */
function parseApiKeys(entry: Record<string, unknown>, provider: Provider | undefined, where: string, problems: string[]): string[] | undefined {
  const single = entry.api_key;
  const several = entry.api_keys;
  if (single !== undefined && several !== undefined) {
    problems.push(`${where}: use either "api_key" or "api_keys", not both`);
    return undefined;
  }
  const keys: unknown[] = several !== undefined ? (Array.isArray(several) ? several : [several]) : single === undefined ? [] : [single];
  const field = several !== undefined ? 'api_keys' : 'api_key';
  if (several !== undefined && (!Array.isArray(several) || several.length === 0)) {
    problems.push(`${where}: "api_keys" must be a non-empty array of strings`);
    return undefined;
  }
  const before = problems.length;
  keys.forEach((key, index) => {
    const at = several !== undefined ? `"api_keys[${index}]"` : '"api_key"';
    if (typeof key !== 'string') problems.push(`${where}: ${at} must be a string`);
    else if (key !== key.trim()) problems.push(`${where}: ${at} has leading or trailing whitespace`);
    // It travels in a request header: a line break would inject one of its own.
    else if (/[^\x20-\x7e]/.test(key)) problems.push(`${where}: ${at} holds a control or non-ASCII character, which cannot travel in an HTTP header`);
    else if (key === '' && provider?.requiresApiKey === true) problems.push(`${where}: ${at} is empty; put the real ${provider.name} API key here`);
  });
  // Without a known provider, whether a key is needed is unknown: its own problem says enough.
  if (keys.length === 0 && provider?.requiresApiKey === true) {
    problems.push(`${where}: "${field}" is missing; put the real ${provider.name} API key here`);
  }
  if (several !== undefined && new Set(keys).size !== keys.length) problems.push(`${where}: "api_keys" lists the same key twice`);
  return problems.length > before ? undefined : (keys as string[]).filter((key) => key !== '');
}

function parseModelMap(value: unknown, where: string, problems: string[]): ModelMap | null | undefined {
  if (value === undefined) return null;
  if (!isRecord(value) || Object.keys(value).length === 0) {
    problems.push(`${where}: "model_map" must be an object of model names or "prefix*" patterns to the target's model names, like {"claude-*": "deepseek-flash"}`);
    return undefined;
  }
  const before = problems.length;
  for (const [pattern, model] of Object.entries(value)) {
    if (pattern === '' || pattern.slice(0, -1).includes('*')) problems.push(`${where}: "model_map" key ${quoted(pattern)} must be a model name or a "prefix*" pattern ("*" only at the end)`);
    if (typeof model !== 'string' || model === '') problems.push(`${where}: "model_map" ${quoted(pattern)} must map to a non-empty model name`);
  }
  return problems.length > before ? undefined : modelMap(value as Record<string, string>);
}

/** `api`: the API its base_url speaks, or several (preferred first); the hub must be reachable (chat or messages). */
function parseApi(value: unknown, provider: Provider | undefined, where: string, problems: string[]): ApiName[] | null | undefined {
  if (value === undefined) return null;
  const names = typeof value === 'string' ? [value] : value;
  const known = API_NAMES.map((name) => `"${name}"`).join(', ');
  if (!Array.isArray(names) || names.length === 0 || names.some((name) => typeof name !== 'string' || !API_NAMES.includes(name as ApiName)) || new Set(names).size !== names.length) {
    problems.push(`${where}: "api" must be one of ${known}, or a list of them without repeats: the APIs its base_url speaks`);
    return undefined;
  }
  const apis = names as ApiName[];
  if (!apis.includes('chat') && !apis.includes('messages')) {
    problems.push(`${where}: "api" must include "chat" or "messages": requests in other APIs are translated to one of them (a server with /responses speaks chat too: ["chat", "responses"])`);
    return undefined;
  }
  if (provider?.local !== undefined && apis.some((api) => !provider.apis.includes(api))) {
    problems.push(`${where}: the ${provider.name} provider answers in-process and speaks only ${provider.apis.join(', ')}`);
    return undefined;
  }
  return apis;
}

/**
 * The APIs a target speaks: what the key says; else the provider's own at its default base URL;
 * at a base URL of the key's own, only the provider's first (an OpenAI-compatible server is
 * assumed to speak chat, not Responses, unless the key says so).
 */
function spokenApis(declared: ApiName[] | null, provider: Provider, baseUrl: unknown): readonly ApiName[] {
  if (declared !== null) return declared;
  if (baseUrl === undefined || baseUrl === provider.defaultBaseUrl) return provider.apis;
  return provider.apis.slice(0, 1);
}

function parseMaxOutputTokens(value: unknown, where: string, problems: string[]): number | null | undefined {
  if (value === undefined) return null;
  if (!isPositiveInteger(value)) {
    problems.push(`${where}: "max_output_tokens" must be a positive integer (the most output tokens the target accepts)`);
    return undefined;
  }
  return value;
}

function parseModels(value: unknown, where: string, problems: string[]): ModelAllowlist | null | undefined {
  if (value === undefined) return null;
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${where}: "models" must be a non-empty array of model names or "prefix*" patterns`);
    return undefined;
  }
  const before = problems.length;
  value.forEach((pattern: unknown, index) => {
    if (typeof pattern !== 'string' || pattern === '') problems.push(`${where}: "models[${index}]" must be a non-empty string`);
    else if (pattern.slice(0, -1).includes('*')) problems.push(`${where}: "models[${index}]" may use "*" only at the end ("gpt-4.1-*"), got ${quoted(pattern)}`);
  });
  return problems.length > before ? undefined : modelAllowlist(value as string[]);
}

function parseRateLimit(value: unknown, where: string, problems: string[]): RateLimit | null | undefined {
  if (value === undefined) return null;
  if (!isRecord(value)) {
    problems.push(`${where}: "rate_limit" must be an object like {"requests_per_minute": 60, "tokens_per_minute": 100000}`);
    return undefined;
  }
  const before = problems.length;
  for (const field of Object.keys(value)) {
    if (field !== 'requests_per_minute' && field !== 'tokens_per_minute') problems.push(`${where}: unknown field in "rate_limit": ${quoted(field)} (${meaning(field, ['requests_per_minute', 'tokens_per_minute'])})`);
  }
  for (const field of ['requests_per_minute', 'tokens_per_minute'] as const) {
    if (value[field] !== undefined && !isPositiveInteger(value[field])) problems.push(`${where}: "rate_limit.${field}" must be a positive integer`);
  }
  if (value.requests_per_minute === undefined && value.tokens_per_minute === undefined) {
    problems.push(`${where}: "rate_limit" needs "requests_per_minute" or "tokens_per_minute"`);
  }
  if (problems.length > before) return undefined;
  return {
    requestsPerMinute: (value.requests_per_minute as number | undefined) ?? null,
    tokensPerMinute: (value.tokens_per_minute as number | undefined) ?? null,
  };
}

function parseBudget(value: unknown, where: string, problems: string[]): Budget | null | undefined {
  if (value === undefined) return null;
  const example = '{"max_usd": 50, "period": "month"} (or "max_tokens", or both)';
  if (!isRecord(value)) {
    problems.push(`${where}: "budget" must be an object like ${example}`);
    return undefined;
  }
  const before = problems.length;
  for (const field of Object.keys(value)) {
    if (field !== 'max_tokens' && field !== 'max_usd' && field !== 'period') problems.push(`${where}: unknown field in "budget": ${quoted(field)} (${meaning(field, ['max_tokens', 'max_usd', 'period'])})`);
  }
  const { max_tokens: maxTokens, max_usd: maxUsd } = value;
  if (maxTokens === undefined && maxUsd === undefined) problems.push(`${where}: "budget" needs "max_tokens" or "max_usd", like ${example}`);
  if (maxTokens !== undefined && !isPositiveInteger(maxTokens)) problems.push(`${where}: "budget.max_tokens" must be a positive integer`);
  if (maxUsd !== undefined && (typeof maxUsd !== 'number' || !Number.isFinite(maxUsd) || maxUsd <= 0)) problems.push(`${where}: "budget.max_usd" must be a positive number of US dollars`);
  if (!PERIODS.includes(value.period as BudgetPeriod)) problems.push(`${where}: "budget.period" must be "day", "month" or "total"`);
  if (problems.length > before) return undefined;
  return { maxTokens: (maxTokens as number | undefined) ?? null, maxUsd: (maxUsd as number | undefined) ?? null, period: value.period as BudgetPeriod };
}

/** One target: a provider at a base URL with its real keys, APIs, model map and output limit. */
function parseTarget(
  entry: Record<string, unknown>,
  index: number,
  registry: Readonly<Record<string, Provider>>,
  where: string,
  problems: string[],
  breaker: BreakerSettings = DEFAULT_BREAKER,
): Target | undefined {
  const before = problems.length;
  const supported = Object.keys(registry).join(', ');
  let provider: Provider | undefined;
  if (typeof entry.provider !== 'string' || entry.provider === '') {
    problems.push(`${where}: "provider" is required (supported: ${supported})`);
  } else if (!Object.hasOwn(registry, entry.provider)) {
    const near = closestName(entry.provider, Object.keys(registry));
    problems.push(`${where}: unknown provider ${quoted(entry.provider)} (${near === null ? '' : `did you mean "${near}"? `}supported: ${supported})`);
  } else {
    provider = registry[entry.provider];
  }
  const apiKeys = parseApiKeys(entry, provider, where, problems);
  const baseUrl = entry.base_url;
  if (baseUrl !== undefined) {
    const problem = checkBaseUrl(baseUrl) ?? plainHttpToProvider(baseUrl as string, registry);
    if (problem !== null) problems.push(`${where}: "base_url" ${problem}`);
  }
  const map = parseModelMap(entry.model_map, where, problems);
  const apis = parseApi(entry.api, provider, where, problems);
  const foreign = apis?.find((api) => provider !== undefined && !provider.apis.includes(api));
  if (foreign !== undefined && provider !== undefined && baseUrl === undefined) {
    problems.push(`${where}: "api": "${foreign}" says its base_url speaks that API, which is not ${provider.name}'s own: give "base_url" (e.g. the provider's ${foreign}-compatible endpoint)`);
  }
  const maxOutputTokens = parseMaxOutputTokens(entry.max_output_tokens, where, problems);
  const weight = entry.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) problems.push(`${where}: "weight" must be a positive number (its share of requests with "strategy": "weighted")`);
  if (provider === undefined || apiKeys === undefined || map === undefined || apis === undefined || maxOutputTokens === undefined || problems.length > before) return undefined;
  const url = typeof baseUrl === 'string' ? baseUrl : provider.defaultBaseUrl;
  return createTarget(provider, apiKeys, url, spokenApis(apis, provider, baseUrl), { index, modelMap: map, maxOutputTokens, weight: weight as number, breaker });
}

/** `targets`: a non-empty list of targets, each named by its index in problems; no target field beside it. */
function parseTargets(entry: Record<string, unknown>, registry: Readonly<Record<string, Provider>>, where: string, problems: string[], breaker: BreakerSettings): Target[] | undefined {
  const misplaced = TARGET_FIELDS.filter((field) => field in entry);
  if (misplaced.length > 0) problems.push(`${where}: ${misplaced.map((field) => `"${field}"`).join(', ')} belong${misplaced.length === 1 ? 's' : ''} inside each of "targets", not beside it`);
  const list = entry.targets;
  if (!Array.isArray(list) || list.length === 0) {
    problems.push(`${where}: "targets" must be a non-empty array of targets like {"provider": "openai", "api_key": "sk-…"}`);
    return undefined;
  }
  const targets: Target[] = [];
  const before = problems.length;
  list.forEach((item: unknown, index) => {
    const at = `${where}: targets[${index}]`;
    if (!isRecord(item)) {
      problems.push(`${at} must be an object like {"provider": "openai", "api_key": "sk-…"}`);
      return;
    }
    for (const field of Object.keys(item)) {
      if (!TARGET_FIELDS.includes(field) && field !== 'weight') problems.push(`${at}: unknown field ${quoted(field)} (${meaning(field, [...TARGET_FIELDS, 'weight'])})`);
    }
    const target = parseTarget(item, index, registry, at, problems, breaker);
    if (target !== undefined) targets.push(target);
  });
  if (!Number.isFinite(targets.reduce((sum, target) => sum + target.weight, 0))) problems.push(`${where}: the targets' weights add up to more than a number can hold: use smaller ones`);
  return problems.length > before || misplaced.length > 0 ? undefined : targets;
}

const DEFAULT_BREAKER: BreakerSettings = { failures: FAILURES_TO_OPEN, openMs: OPEN_MS };

/** `circuit_breaker`: {"failures", "cooldown_ms"}: failures in a row that open a target's circuit, and how long it stays open. */
function parseBreaker(value: unknown, where: string, problems: string[]): BreakerSettings {
  if (value === undefined) return DEFAULT_BREAKER;
  const fields = isRecord(value) ? Object.keys(value) : [];
  const failures = isRecord(value) ? (value.failures ?? FAILURES_TO_OPEN) : null;
  const openMs = isRecord(value) ? (value.cooldown_ms ?? OPEN_MS) : null;
  if (!isRecord(value) || fields.some((field) => field !== 'failures' && field !== 'cooldown_ms') || !isPositiveInteger(failures) || !isPositiveInteger(openMs)) {
    problems.push(`${where}: "circuit_breaker" must be {"failures": <positive integer>, "cooldown_ms": <positive integer>} (defaults ${FAILURES_TO_OPEN} and ${OPEN_MS})`);
    return DEFAULT_BREAKER;
  }
  return { failures: failures as number, openMs: openMs as number };
}

function parseStrategy(value: unknown, where: string, problems: string[]): Strategy | undefined {
  if (value === undefined) return 'fallback';
  if (value === 'fallback' || value === 'weighted') return value;
  problems.push(`${where}: "strategy" must be "fallback" (targets in order) or "weighted" (the first by weight, the others in order)`);
  return undefined;
}

function parseFallbackOn(value: unknown, where: string, problems: string[]): ReadonlySet<number> | undefined {
  if (value === undefined) return new Set(DEFAULT_FALLBACK_ON);
  const valid = Array.isArray(value) && value.every((status) => Number.isInteger(status) && status >= 400 && status <= 599 && !NEVER_FALLBACK_ON.has(status));
  if (!valid) {
    problems.push(`${where}: "fallback_on" must be a list of HTTP statuses from 401 to 599, without 400, 404 and 422 (the request itself is wrong: another target would refuse it too), like [429, 503]`);
    return undefined;
  }
  return new Set(value as number[]);
}

/** Validates the file's text and builds the keys; throws ConfigFileError listing every problem. */
export function parseKeyFile(text: string, file: string, registry: Readonly<Record<string, Provider>>): VirtualKey[] {
  // Some Windows editors start a UTF-8 file with a byte order mark, which JSON.parse refuses.
  const json = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let root: unknown;
  try {
    root = JSON.parse(json);
  } catch (err) {
    // Only the position: newer V8 messages quote the text around it, which may be an api_key.
    const position = /position (\d+)/.exec((err as Error).message);
    if (json.trim() === '') throw new ConfigFileError(file, ['the file is empty: it must hold a JSON object, {"virtual_keys": {…}} (see keys.example.json)']);
    throw new ConfigFileError(file, [position === null ? 'not valid JSON' : `not valid JSON (${lineAndColumn(json, Number(position[1]))})`]);
  }
  if (!isRecord(root)) throw new ConfigFileError(file, ['the file must hold a JSON object: {"virtual_keys": {…}}']);

  const problems: string[] = [];
  const raw = Buffer.from(json, 'utf8');
  /** Fields written twice inside each virtual key, by key: reported where the key is named. */
  const doubledFields = new Map<string, string[]>();
  for (const duplicate of duplicateKeys(raw)) {
    const [top, id, ...below] = duplicate.path;
    if (top === 'virtual_keys' && id === undefined) {
      // JSON keeps the last silently: a block with its allowlist and budget would vanish unseen.
      problems.push(`"virtual_keys": the virtual key ${maskKey(duplicate.key)} is defined twice ${linesOf(raw, duplicate)}; keep one`);
    } else if (top === 'virtual_keys' && typeof id === 'string') {
      const doubled = doubledFields.get(id) ?? [];
      doubled.push(`"${fieldPath([...below, duplicate.key])}" is written twice ${linesOf(raw, duplicate)}; keep one`);
      doubledFields.set(id, doubled);
    } else {
      problems.push(`"${fieldPath([...duplicate.path, duplicate.key])}" is written twice ${linesOf(raw, duplicate)}; keep one`);
    }
  }
  for (const field of Object.keys(root)) {
    if (!TOP_FIELDS.includes(field)) problems.push(`unknown top-level field ${quoted(field)} (expected only "virtual_keys")`);
  }
  const entries = root.virtual_keys;
  if (!isRecord(entries)) {
    problems.push('"virtual_keys" must be an object mapping each virtual key to {"provider", "api_key", "base_url"}');
    throw new ConfigFileError(file, problems);
  }
  const names = Object.keys(entries);
  if (names.length === 0) problems.push('"virtual_keys" is empty: define at least one virtual key');

  const ids = new Set(names);
  const keys: VirtualKey[] = [];
  /** Every key whose targets could be read, with its place in the file: checked against all of the file's real keys at the end. */
  const named: Array<{ id: string; name: string | null; position: number; targets: readonly Target[] }> = [];
  let position = 0;
  for (const id of names) {
    position++;
    const entry = entries[id];
    const before = problems.length;
    const nameProblems: string[] = [];
    const name = parseName(isRecord(entry) ? entry.name : undefined, id, ids, nameProblems);
    const where = describeKey(id, name ?? null, position);
    for (const problem of nameProblems) problems.push(`${where}: ${problem}`);
    for (const problem of doubledFields.get(id) ?? []) problems.push(`${where}: ${problem}`);
    if (id.trim() === '' || /[\s\x00-\x1f\x7f]/.test(id)) {
      problems.push(`${where}: a virtual key must be non-empty, without spaces or control characters (it travels in an HTTP header)`);
    } else if (/[^\x21-\x7e]/.test(id)) {
      // Header values are bytes: clients refuse such a key, or send it mangled, and it never matches.
      problems.push(`${where}: the virtual key holds a non-ASCII character, which cannot travel in an HTTP header`);
    }
    if (!isRecord(entry)) {
      problems.push(`${where}: must be an object like {"provider": "openai", "api_key": "sk-…"}`);
      continue;
    }
    for (const field of Object.keys(entry)) {
      if (!KEY_FIELDS.includes(field)) problems.push(`${where}: unknown field ${quoted(field)} (${meaning(field, KEY_FIELDS)})`);
    }

    const breaker = parseBreaker(entry.circuit_breaker, where, problems);
    let targets: Target[] | undefined;
    if (entry.targets === undefined) {
      const routing = ['strategy', 'fallback_on', 'circuit_breaker'].filter((field) => field in entry);
      if (routing.length > 0) problems.push(`${where}: ${routing.map((field) => `"${field}"`).join(', ')} only mean${routing.length === 1 ? 's' : ''} something for a key with several "targets"`);
      const target = parseTarget(entry, 0, registry, where, problems, breaker);
      targets = target === undefined ? undefined : [target];
    } else {
      targets = parseTargets(entry, registry, where, problems, breaker);
    }
    const strategy = parseStrategy(entry.strategy, where, problems);
    const fallbackOn = parseFallbackOn(entry.fallback_on, where, problems);
    const timeoutMs = entry.timeout_ms === undefined ? null : entry.timeout_ms;
    if (entry.timeout_ms !== undefined && !isPositiveInteger(timeoutMs)) problems.push(`${where}: "timeout_ms" must be a positive integer (milliseconds to wait for each attempt's response headers)`);
    const models = parseModels(entry.models, where, problems);
    const rateLimit = parseRateLimit(entry.rate_limit, where, problems);
    const budget = parseBudget(entry.budget, where, problems);
    if (targets !== undefined) named.push({ id, name: name ?? null, position, targets });
    const published = targets === undefined ? null : publishedKeyProblem(id, targets);
    if (published !== null) problems.push(`${where}: ${published}`);

    if (
      name === undefined || targets === undefined || strategy === undefined || fallbackOn === undefined || models === undefined ||
      rateLimit === undefined || budget === undefined || problems.length > before
    ) {
      continue;
    }
    const realKeys = [...new Set(targets.flatMap((target) => target.secrets))].sort((a, b) => b.length - a.length);
    keys.push({ id, name: name ?? null, label: name ?? digestLabel(id), digest: digest(id), targets, realKeys, strategy, fallbackOn, timeoutMs: timeoutMs as number | null, models, rateLimit, budget });
  }
  // First: of a file with more problems than are listed, these are the ones never to miss (a
  // concat: spread as arguments, 150,000 of them overflowed the stack).
  const all = realKeysInPlainSight(named).concat(problems);
  if (all.length > 0) {
    const listed = all.slice(0, MAX_LISTED_PROBLEMS);
    throw new ConfigFileError(file, withoutFileKeys(listed, entries), all.length - listed.length);
  }
  return keys;
}

/** Problems listed at most: a file generated with one mistake in each of its 200,000 entries gets a message one can read. */
const MAX_LISTED_PROBLEMS = 100;

/**
 * Problems with every real key the file holds (any `api_key` or `api_keys` value, valid or not)
 * taken out: a key pasted into another field (`provider`, a model pattern, a field's name) is
 * quoted there, and only keys of a known shape are recognised by their looks (maybeSecret).
 */
function withoutFileKeys(problems: readonly string[], entries: Record<string, unknown>): string[] {
  const found: string[] = [];
  const collect = (holder: unknown): void => {
    if (!isRecord(holder)) return;
    if (typeof holder.api_key === 'string') found.push(holder.api_key);
    if (Array.isArray(holder.api_keys)) for (const key of holder.api_keys) if (typeof key === 'string') found.push(key);
  };
  for (const entry of Object.values(entries)) {
    collect(entry);
    if (isRecord(entry) && Array.isArray(entry.targets)) entry.targets.forEach(collect);
  }
  const redact = manyKeysRedactor(keySpellings(found));
  return problems.map(redact);
}

/**
 * A virtual key or a name that is one of the file's real provider keys (an app's OPENAI_API_KEY
 * kept as its virtual key): clients would hold the real key, and the log, metrics and /v1/usage
 * would show it. Named by position and masked: the message itself goes to stderr.
 */
function realKeysInPlainSight(named: ReadonlyArray<{ id: string; name: string | null; position: number; targets: readonly Target[] }>): string[] {
  const real = new Set(named.flatMap((key) => key.targets.flatMap((target) => target.keys.apiKeys)).filter((apiKey) => !isPlaceholder(apiKey)));
  const problems: string[] = [];
  for (const { id, name, position } of named) {
    const where = describeKey(id, null, position);
    if (real.has(id)) problems.push(`${where}: the virtual key is one of this file's real provider keys: clients would hold it, and every log entry would show it; give the key its own (vk_$(openssl rand -hex 16))`);
    if (name !== null && real.has(name)) problems.push(`${where}: "name" is one of this file's real provider keys: names appear in the log, metrics and /v1/usage`);
  }
  return problems;
}

/**
 * What a valid keys file may still hold that will not work: placeholder keys left from the
 * example, and a base_url that already ends in what the gateway appends (/v1 for Anthropic,
 * /chat/completions) or leaves out OpenAI's /v1.
 * `keys` are in file order (a valid file: every entry), so positions match the file.
 */
export function keyWarnings(keys: readonly VirtualKey[]): string[] {
  const warnings: string[] = [];
  const fileGuardsRealKeys = keys.some((key) => guardsRealKey(key.targets));
  keys.forEach((key, index) => {
    const where = describeKey(key.id, key.name, index + 1);
    if (key.name !== null && maybeSecret(key.name)) {
      warnings.push(`${where}: its "name" looks like a provider key, and names appear in the log, metrics and /v1/usage: give it a plain name`);
    }
    const published = publishedKeyWarning(key.id, key.targets, fileGuardsRealKeys);
    if (published !== null) warnings.push(`${where}: ${published}`);
    if (key.id.length < SHORT_KEY && guardsRealKey(key.targets)) {
      warnings.push(`${where} is ${key.id.length} characters long and guards a real provider key: a short virtual key can be guessed; use a long random one (echo vk_$(openssl rand -hex 16))`);
    }
    for (const target of key.targets) warnings.push(...targetWarnings(target, key.targets.length > 1 ? `${where}: targets[${target.index}]` : where));
  });
  return warnings;
}

/** Each key's spend period by digest, as limits.ts counts it. */
export function spendPeriods(keys: readonly VirtualKey[]): Map<string, BudgetPeriod> {
  return new Map(keys.map((key) => [key.digest, spendPeriod(key)]));
}

const PERIOD_WORDS: Record<BudgetPeriod, string> = { day: 'per day (UTC)', month: 'per calendar month (UTC)', total: 'in total' };

/**
 * Keys a reload gave a budget counted in another period than their spend was (a period changed, a
 * `day` or `total` budget added): spend is counted in one period, so what was spent meanwhile is
 * not in the new one's count, which the operator is told rather than left to find in /v1/usage.
 */
export function periodWarnings(before: ReadonlyMap<string, BudgetPeriod>, after: readonly VirtualKey[]): string[] {
  const warnings: string[] = [];
  after.forEach((key, index) => {
    const was = before.get(key.digest);
    if (key.budget === null || was === undefined || was === key.budget.period) return;
    warnings.push(`${describeKey(key.id, key.name, index + 1)}: its budget now counts ${PERIOD_WORDS[key.budget.period]}, and its spend was counted ${PERIOD_WORDS[was]} until this reload: what it spent while so counted is not in the budget's count (spend is counted in one period, the budget's, else the calendar month)`);
  });
  return warnings;
}

function targetWarnings(target: Target, where: string): string[] {
  const warnings: string[] = [];
  const { provider, keys: pool, endpoints } = target;
  const placeholders = pool.apiKeys.filter(isPlaceholder).length;
  if (placeholders > 0) {
    // Nothing of the value is printed: a real key this misjudged must not reach stderr.
    const which = pool.apiKeys.length === 1 ? '"api_key"' : `${placeholders} of its "api_keys"`;
    warnings.push(`${where}: ${which} ${placeholders === 1 ? 'looks' : 'look'} like a placeholder, not a real ${provider.name} key; its requests will fail until the keys file holds a real one`);
  }
  // A self-hosted server's dummy key (`none`, `ollama`) is no secret; a short real one is not scrubbed.
  const short = pool.apiKeys.filter((key) => key.length < MIN_KEY_LENGTH && !isPlaceholder(key) && !NO_KEY.test(key)).length;
  if (short > 0 && provider.local === undefined) {
    const which = pool.apiKeys.length === 1 ? '"api_key" is' : `${short} of its "api_keys" are`;
    warnings.push(`${where}: ${which} shorter than ${MIN_KEY_LENGTH} characters: a key this short is not taken out of what the provider sends back (it would mangle ordinary text); use a longer one`);
  }
  const urlWarning = baseUrlWarning(endpoints);
  if (urlWarning !== null) warnings.push(`${where}: ${urlWarning}`);
  const plain = Object.values(endpoints).find((endpoint) => endpoint.kind === 'http' && !endpoint.https && isPublicHost(endpoint.hostname));
  if (plain !== undefined && plain.kind === 'http') {
    warnings.push(`${where}: "base_url" is plain http:// to ${plain.hostname}: its key and every conversation cross the network unencrypted; use https://`);
  }
  return warnings;
}

/** The API paths the gateway appends to a base URL: one already at its end is written twice. */
const APPENDED = Object.values(TARGET_APIS).map((api) => api.path);

/** A base_url that will not reach the API (the same for each of a target's endpoints: one warning). */
function baseUrlWarning(endpoints: Target['endpoints']): string | null {
  for (const [api, endpoint] of Object.entries(endpoints)) {
    if (endpoint.kind !== 'http') return null;
    const appended = TARGET_APIS[api as ApiName].path;
    const base = endpoint.url.slice(0, -appended.length);
    const doubled = APPENDED.find((path) => base.endsWith(path));
    if (doubled !== undefined) return `requests go to ${endpoint.url}: "base_url" already ends in ${doubled}, and the gateway appends ${appended}; drop the ${doubled}`;
    if (/\/v1\/v1\//.test(endpoint.url)) return `requests go to ${endpoint.url}: "base_url" already ends in /v1, and the gateway appends ${appended}; drop the /v1`;
    // Other OpenAI-compatible servers use other paths (/api/v1, /openai/v1); OpenAI's own has one.
    if (endpoint.hostname === 'api.openai.com' && !/^\/v1\//.test(endpoint.path)) {
      return `requests go to ${endpoint.url}: OpenAI's API is under /v1; make "base_url" https://api.openai.com/v1`;
    }
  }
  return null;
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position).split('\n');
  return `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`;
}

/** A provider's own API host over plain http: the real key would cross the internet unencrypted before any answer. */
function plainHttpToProvider(value: string, registry: Readonly<Record<string, Provider>>): string | null {
  const url = new URL(value);
  if (url.protocol !== 'http:') return null;
  // A name with its root's dot (api.openai.com.) is the same host.
  const host = url.hostname.replace(/\.$/, '');
  const own = Object.values(registry).some((provider) => URL.canParse(provider.defaultBaseUrl) && new URL(provider.defaultBaseUrl).hostname === host);
  return own ? `would send the real key to ${host} unencrypted: use https://` : null;
}

/** A host reached over the internet rather than on this machine or a private network (where plain http may be how a local server is served). */
function isPublicHost(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(name); // an IPv4 address in IPv6 form, as URL writes it
  if (mapped !== null) {
    const [high, low] = [parseInt(mapped[1] as string, 16), parseInt(mapped[2] as string, 16)];
    return isPublicHost(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`);
  }
  if (name.includes(':')) return !/^(?:::1$|f[cd]|fe[89ab])/.test(name); // IPv6: loopback, unique local, link-local
  if (!name.includes('.')) return false; // localhost, a container's service name
  if (/^(?:127|10|0)\.|^192\.168\.|^169\.254\.|^172\.(?:1[6-9]|2\d|3[01])\.|^100\.(?:6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./.test(name)) return false;
  return !/\.(?:local|localhost|internal|lan|home\.arpa|svc|cluster\.local)$/.test(name);
}

function checkBaseUrl(value: unknown): string | null {
  if (typeof value !== 'string') return 'must be a string URL';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `is not a URL: ${quoted(value)}`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `must be an http:// or https:// URL, got ${quoted(value)}`;
  if (url.username !== '' || url.password !== '') return 'must not contain credentials; put the key in "api_key"';
  if (url.hash !== '') return 'must not contain a #fragment';
  return null;
}

/**
 * Reads and validates a keys file, returning the keys and the text they came from (a cluster
 * primary hands the very text it accepted to its workers). A missing file says how to create one.
 */
export async function loadKeyFileText(file: string, registry: Readonly<Record<string, Provider>>): Promise<{ keys: VirtualKey[]; text: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigFileError(file, [
        `file not found (looked at ${resolve(file)}). Create it from the example: cp keys.example.json ${file}, ` +
          'then replace the placeholder api_key values with your provider keys (or set KEYS_FILE to another file).',
      ]);
    }
    throw new ConfigFileError(file, [`cannot be read (${(err as Error).message})`]);
  }
  return { keys: parseKeyFile(text, file, registry), text };
}

/** SHA-256 of a virtual key, base64: how it is known in state written to disk, and looked up. */
export function digest(presented: string): string {
  return createHash('sha256').update(presented).digest('base64');
}
