/**
 * Environment → one typed, validated Config. Defaults are stated here once; every variable is
 * documented in the README's configuration table.
 */
import { dirname, join } from 'node:path';
import { usableCores } from './cores.js';
import type { RedisFailurePolicy } from './policy/shared-limits.js';
import { parseRedisUrl, type RedisAddress } from './redis/url.js';
import type { UpstreamPolicy } from './upstream/types.js';
import { closestName } from './closest-name.js';

export interface Config {
  /** Variables set that look like a typo of a setting (said at start; they change nothing). */
  misspelt: readonly string[];
  keysFile: string;
  port: number;
  /** undefined = all interfaces (Node's default: `::` with IPv4 mapped, or 0.0.0.0). */
  host: string | undefined;
  /** null = file logging off. */
  logFile: string | null;
  /** Entries on stdout: indented (`pretty`), one line each (`json`), or none. */
  logConsole: 'pretty' | 'json' | 'off';
  /** Request and response bodies larger than this are logged as their head and size; null = whole. */
  logBodyMaxBytes: number | null;
  maxBodyBytes: number;
  /** The memory request bodies may take at once across the process (503 past it). */
  maxBodiesBytes: number;
  /** max_tokens sent to Anthropic when the client sets none (Anthropic requires one). */
  anthropicDefaultMaxTokens: number;
  /** How long in-flight requests may take to finish after SIGTERM/SIGINT. */
  shutdownTimeoutMs: number;
  /** Timeouts and retries of every call to a provider. */
  upstream: UpstreamPolicy;
  /** When set, GET /metrics requires `Authorization: Bearer <token>`. */
  metricsToken: string | null;
  /** A client must send its request headers within this, from connecting or from a request's first byte. */
  headersTimeoutMs: number;
  /** Worker processes (node:cluster); 1 = no cluster. */
  workers: number;
  /** Reload keys when the file changes (false: only on SIGHUP). */
  keysWatch: boolean;
  /** Spend per key (budgets), kept across restarts; null = in memory only. */
  stateFile: string | null;
  /** Prices added to or replacing the built-in table; null = the built-in table alone. */
  pricesFile: string | null;
  /** Limits, budgets, cool-downs and circuit breakers shared through Redis; null = per instance. */
  redis: { address: RedisAddress; timeoutMs: number; holdMs: number; failure: RedisFailurePolicy } | null;
  /** Origins browsers may call from (`*` = any); empty = CORS off. */
  corsOrigins: string[];
}

const DEFAULTS = {
  keysFile: 'keys.json',
  port: 8080,
  logFile: 'logs/llm_interactions.json',
  maxBodyBytes: 20 * 1024 * 1024,
  maxBodiesBytes: 1024 * 1024 * 1024,
  anthropicDefaultMaxTokens: 4096,
  shutdownTimeoutMs: 30_000,
  // The OpenAI SDK's own default request timeout: 10 minutes.
  upstreamTimeoutMs: 600_000,
  upstreamIdleTimeoutMs: 300_000,
  workers: 1,
  // Above nginx's keep-alive timeout (60 s), as the keep-alive timeout is.
  headersTimeoutMs: 66_000,
  upstreamRetries: 2,
  upstreamRetryMaxDelayMs: 20_000,
  // Retries and fallbacks together: as long as one attempt may wait for its headers.
  upstreamTotalTimeoutMs: 600_000,
  // A Redis on the same network answers in about a millisecond; a check waits at most this.
  redisTimeoutMs: 100,
  redisHoldMs: 120_000,
} as const;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads every variable, collects every problem, and throws them together. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  /** Every variable asked for: what a variable set is checked against for a typo. */
  const settings = new Set<string>();
  const text = (name: string): string | undefined => {
    settings.add(name);
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number, or = ''): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}${or}, got "${raw}"`);
      return fallback;
    }
    return value;
  };

  /** One of `options`, in any case (`JSON`, `Off`); anything else is reported as it was written. */
  const choice = <T extends string>(name: string, options: readonly T[], fallback: T): T => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = options.find((option) => option === raw.toLowerCase());
    if (value !== undefined) return value;
    const quoted = options.map((option) => `"${option}"`);
    problems.push(`${name} must be ${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1) ?? ''}, got "${raw}"`);
    return fallback;
  };

  const workers = (raw: string | undefined): number => {
    if (raw === undefined) return DEFAULTS.workers;
    if (raw.toLowerCase() === 'auto') return usableCores();
    return integer('GATEWAY_WORKERS', DEFAULTS.workers, 1, 1024, ' or "auto"');
  };

  const keysWatch = choice('KEYS_WATCH', ['on', 'off'], 'on');

  // Next to the interactions log by default (its folder), whether or not that log is on.
  const logFolder = dirname(text('LOG_FILE')?.toLowerCase() === 'off' ? DEFAULTS.logFile : (text('LOG_FILE') ?? DEFAULTS.logFile));
  const stateFile = text('STATE_FILE') ?? join(logFolder, 'gateway_state.json');
  const corsOrigins = (text('CORS_ORIGINS') ?? '')
    .split(',')
    .map((origin) => origin.trim().replace(/\/+$/, ''))
    .filter((origin) => origin !== '');
  for (const [i, origin] of corsOrigins.entries()) {
    if (origin === '*') continue;
    // Scheme, host and port only: no user, query or fragment, which URL would quietly drop (`https://a.com@evil.com` is evil.com).
    const url = /^https?:\/\/[^/\s@?#\\]+$/i.test(origin) ? urlOrNull(origin) : null;
    if (url === null) problems.push(`CORS_ORIGINS must list origins like https://app.example.com (or *), got "${origin}"`);
    // As a browser sends it in Origin: scheme and host in lower case, no default port.
    else corsOrigins[i] = url.origin;
  }

  const redisUrl = text('REDIS_URL');
  const redisAddress = redisUrl === undefined ? null : parseRedisUrl(redisUrl);
  // Never quoted back: the URL may hold a password.
  if (typeof redisAddress === 'string') problems.push(`REDIS_URL ${redisAddress}`);
  const redisFailure = choice<RedisFailurePolicy>('REDIS_FAILURE', ['open', 'closed'], 'open');
  const redisTimeoutMs = integer('REDIS_TIMEOUT_MS', DEFAULTS.redisTimeoutMs, 1, 60_000);
  const redisHoldMs = integer('REDIS_HOLD_MS', DEFAULTS.redisHoldMs, 1000, 3_600_000);

  const logFile = text('LOG_FILE') ?? DEFAULTS.logFile;
  const logConsole = choice('LOG_CONSOLE', ['pretty', 'json', 'off'], 'pretty');

  const config: Config = {
    keysFile: text('KEYS_FILE') ?? DEFAULTS.keysFile,
    port: integer('GATEWAY_PORT', DEFAULTS.port, 0, 65535),
    host: text('GATEWAY_HOST'),
    logFile: logFile.toLowerCase() === 'off' ? null : logFile,
    logConsole,
    logBodyMaxBytes: text('LOG_BODY_MAX_BYTES')?.toLowerCase() === 'off' ? null : text('LOG_BODY_MAX_BYTES') === undefined ? null : integer('LOG_BODY_MAX_BYTES', 0, 256, 2 ** 31),
    maxBodyBytes: integer('GATEWAY_MAX_BODY_BYTES', DEFAULTS.maxBodyBytes, 1, 2 ** 31),
    maxBodiesBytes: integer('GATEWAY_MAX_BODIES_BYTES', DEFAULTS.maxBodiesBytes, 1, 2 ** 42),
    anthropicDefaultMaxTokens: integer('ANTHROPIC_DEFAULT_MAX_TOKENS', DEFAULTS.anthropicDefaultMaxTokens, 1, 1_000_000),
    shutdownTimeoutMs: integer('GATEWAY_SHUTDOWN_TIMEOUT_MS', DEFAULTS.shutdownTimeoutMs, 0, 24 * 3600_000),
    upstream: {
      timeoutMs: integer('UPSTREAM_TIMEOUT_MS', DEFAULTS.upstreamTimeoutMs, 1, 24 * 3600_000),
      idleTimeoutMs: integer('UPSTREAM_IDLE_TIMEOUT_MS', DEFAULTS.upstreamIdleTimeoutMs, 1, 24 * 3600_000),
      // Attempts after the first; a provider asking (retry-after) for longer than the delay gets no retry.
      retries: integer('UPSTREAM_RETRIES', DEFAULTS.upstreamRetries, 0, 10),
      retryMaxDelayMs: integer('UPSTREAM_RETRY_MAX_DELAY_MS', DEFAULTS.upstreamRetryMaxDelayMs, 0, 3600_000),
      totalTimeoutMs: integer('UPSTREAM_TOTAL_TIMEOUT_MS', DEFAULTS.upstreamTotalTimeoutMs, 1, 24 * 3600_000),
    },
    metricsToken: text('METRICS_TOKEN') ?? null,
    // Node refuses a headers timeout above its request timeout (300 s).
    headersTimeoutMs: integer('GATEWAY_HEADERS_TIMEOUT_MS', DEFAULTS.headersTimeoutMs, 1000, 300_000),
    workers: workers(text('GATEWAY_WORKERS')),
    keysWatch: keysWatch !== 'off',
    stateFile: stateFile.toLowerCase() === 'off' ? null : stateFile,
    pricesFile: text('PRICES_FILE')?.toLowerCase() === 'off' ? null : (text('PRICES_FILE') ?? null),
    redis: redisAddress === null || typeof redisAddress === 'string' ? null : { address: redisAddress, timeoutMs: redisTimeoutMs, holdMs: redisHoldMs, failure: redisFailure },
    corsOrigins: corsOrigins,
    misspelt: [],
  };
  config.misspelt = misspelt(env, settings);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * Variables set that are no setting but a typo of one (`GATEWAY_WORKER`, `UPSTREAM_TIMEOUT`): each
 * would be ignored without a word, its default serving instead.
 */
function misspelt(env: Env, settings: ReadonlySet<string>): string[] {
  const known = [...settings];
  const found: string[] = [];
  for (const name of Object.keys(env)) {
    if (settings.has(name)) continue;
    // A unit left off (`UPSTREAM_TIMEOUT`), a plural made singular (`UPSTREAM_RETRY`), a word added
    // (`GATEWAY_HOSTNAME`) or a path named so (`KEYS_PATH`) is more than a typo's two edits, and the
    // nearest name by edits (`KEYS_WATCH`) would mislead.
    const path = name.replace(/_PATH$/i, '_FILE').toUpperCase();
    const unit = [`${name}_MS`, `${name}_BYTES`, name.replace(/Y$/, 'IES'), name.replace(/_?NAME$/, '')].find((named) => named !== name && settings.has(named));
    const meant = (path !== name.toUpperCase() && settings.has(path) ? path : null) ?? closestName(name, known) ?? unit ?? null;
    if (meant !== null) found.push(`${name} is not a setting of this gateway and is ignored: did you mean ${meant}?`);
  }
  return found;
}

function urlOrNull(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/** Whether `host` (GATEWAY_HOST) only accepts connections from this machine. */
export function isLoopback(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.toLowerCase().replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name) || /^::ffff:127\./.test(name);
}
