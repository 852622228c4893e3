/**
 * Environment → one typed, validated Config. Defaults are stated here once; every variable is
 * documented in the README's configuration table.
 */

export interface Config {
  keysFile: string;
  port: number;
  /** undefined = all interfaces (Node's default: `::` with IPv4 mapped, or 0.0.0.0). */
  host: string | undefined;
  /** null = file logging off. */
  logFile: string | null;
  logConsole: 'pretty' | 'off';
  maxBodyBytes: number;
  /** max_tokens sent to Anthropic when the client sets none (Anthropic requires one). */
  anthropicDefaultMaxTokens: number;
}

export const DEFAULTS = {
  keysFile: 'keys.json',
  port: 8080,
  logFile: 'logs/llm_interactions.json',
  maxBodyBytes: 20 * 1024 * 1024,
  anthropicDefaultMaxTokens: 4096,
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
  const text = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };

  const logFile = text('LOG_FILE') ?? DEFAULTS.logFile;
  const logConsole = text('LOG_CONSOLE') ?? 'pretty';
  if (logConsole !== 'pretty' && logConsole !== 'off') {
    problems.push(`LOG_CONSOLE must be "pretty" or "off", got "${logConsole}"`);
  }

  const config: Config = {
    keysFile: text('KEYS_FILE') ?? DEFAULTS.keysFile,
    port: integer('GATEWAY_PORT', DEFAULTS.port, 0, 65535),
    host: text('GATEWAY_HOST'),
    logFile: logFile.toLowerCase() === 'off' ? null : logFile,
    logConsole: logConsole === 'off' ? 'off' : 'pretty',
    maxBodyBytes: integer('GATEWAY_MAX_BODY_BYTES', DEFAULTS.maxBodyBytes, 1, 2 ** 31),
    anthropicDefaultMaxTokens: integer('ANTHROPIC_DEFAULT_MAX_TOKENS', DEFAULTS.anthropicDefaultMaxTokens, 1, 1_000_000),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
